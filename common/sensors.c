/*  sensors.c — sensor and camera events: configuration, validation, the
    ticket of a new fold, and the fold scripts (see sensors.h).

    Why one script per event and not per batch: events of a request may be
    of many types, and each type's keys sit in their own slot; a script may
    touch one slot only. The scripts of a request are pipelined, so a batch
    of 1,000 events costs one round trip. */

#include "civicbus/sensors.h"
#include "civicbus/clock.h"
#include "civicbus/pbutil.h"
#include "civicbus/ticket_json.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _sensor_config_t {
    json_t *root;                       //  owns the strings the types point at
    sensor_type_t *types;
    size_t count;
};

struct _sensor_folds_t {
    cb_script_t fold;                   //  sha filled by prepare; calls use copies
    cb_script_t set_ticket;
    cb_script_t close;
};

//  KEYS geo, act, seq. ARGV lon lat radius window_ms event_ms now_ms device
//  hash_prefix ttl_ms. Returns {created, fold, ticket, count, first, last}.
static const char s_fold_lua [] =
    "local win, ev, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local pre = ARGV[8]\n"
    "local idle = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - win), 'LIMIT', 0, 100)\n"
    "for _, f in ipairs(idle) do\n"
    "  redis.call('ZREM', KEYS[1], f); redis.call('ZREM', KEYS[2], f); redis.call('DEL', pre .. f)\n"
    "end\n"
    "local near = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],\n"
    "                        'BYRADIUS', ARGV[3], 'm', 'ASC', 'COUNT', 8)\n"
    "for _, f in ipairs(near) do\n"
    "  local h = pre .. f\n"
    "  local v = redis.call('HMGET', h, 'first', 'last', 'ticket')\n"
    "  if v[1] then\n"
    "    local first, last = tonumber(v[1]), tonumber(v[2])\n"
    "    if ev >= first - win and ev <= last + win then\n"
    "      local n = redis.call('HINCRBY', h, 'count', 1)\n"
    "      if ev < first then first = ev; redis.call('HSET', h, 'first', ev) end\n"
    "      if ev > last then last = ev; redis.call('HSET', h, 'last', ev) end\n"
    "      redis.call('ZADD', KEYS[2], now, f)\n"
    "      redis.call('PEXPIRE', h, ARGV[9])\n"
    "      return {0, f, v[3] or '', n, tostring(first), tostring(last)}\n"
    "    end\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[1], f); redis.call('ZREM', KEYS[2], f)\n"
    "  end\n"
    "end\n"
    "local f = tostring(redis.call('INCR', KEYS[3]))\n"
    "local h = pre .. f\n"
    "redis.call('HSET', h, 'count', 1, 'first', ev, 'last', ev, 'ticket', '', 'device', ARGV[7])\n"
    "redis.call('PEXPIRE', h, ARGV[9])\n"
    "redis.call('GEOADD', KEYS[1], ARGV[1], ARGV[2], f)\n"
    "redis.call('ZADD', KEYS[2], now, f)\n"
    "return {1, f, '', 1, tostring(ev), tostring(ev)}\n";

//  KEYS hash. ARGV ticket ttl_ms.
static const char s_set_ticket_lua [] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'ticket', ARGV[1])\n"
    "return 1\n";

//  KEYS geo, act, hash. ARGV fold.
static const char s_close_lua [] =
    "redis.call('ZREM', KEYS[1], ARGV[1]); redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "redis.call('DEL', KEYS[3])\n"
    "return 1\n";

/* ---- private ---- */

static bool
s_type_name_valid (const char *name)
{
    size_t len = strlen (name);
    if (len < 1 || len > SENSOR_TYPE_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((name [i] >= 'a' && name [i] <= 'z') || (name [i] >= '0' && name [i] <= '9')
              || name [i] == '_'))
            return false;
    return true;
}

static bool
s_visible_ascii (const char *text, size_t min, size_t max)
{
    size_t len = strlen (text);
    if (len < min || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) text [i] <= 0x20 || (unsigned char) text [i] > 0x7E)
            return false;
    return true;
}

static void
s_keys (const char *type, char *geo, char *act, char *seq, char *prefix, size_t cap)
{
    snprintf (geo, cap, "sgeo:{s:%s}", type);
    snprintf (act, cap, "sact:{s:%s}", type);
    snprintf (seq, cap, "sseq:{s:%s}", type);
    snprintf (prefix, cap, "sfold:{s:%s}:", type);
}

static int64_t
s_ttl_ms (int window_s)
{
    return (int64_t) window_s * 1000 + 3600 * 1000;
}

static int64_t
s_reply_int (const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return atoll (r->str);
    return 0;
}

static int
s_fold_reply (const redisReply *reply, sensor_fold_t *out)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 6)
        return -1;
    memset (out, 0, sizeof *out);
    out->created = s_reply_int (reply->element [0]) == 1;
    snprintf (out->fold_id, sizeof out->fold_id, "%s",
              reply->element [1]->type == REDIS_REPLY_STRING ? reply->element [1]->str : "");
    snprintf (out->ticket_id, sizeof out->ticket_id, "%s",
              reply->element [2]->type == REDIS_REPLY_STRING ? reply->element [2]->str : "");
    out->count = s_reply_int (reply->element [3]);
    out->first_ms = s_reply_int (reply->element [4]);
    out->last_ms = s_reply_int (reply->element [5]);
    return out->fold_id [0] ? 0 : -1;
}

/* ---- public: configuration ---- */

sensor_config_t *
sensor_config_new (const char *json_text, size_t len, char *err, size_t cap)
{
    json_error_t parse_error;
    json_t *root = json_loadb (json_text, len, JSON_REJECT_DUPLICATES, &parse_error);
    if (!root) {
        snprintf (err, cap, "not JSON: %s (line %d)", parse_error.text, parse_error.line);
        return NULL;
    }
    sensor_config_t *self = calloc (1, sizeof *self);
    json_t *types = json_object_get (root, "types");
    if (!self)
        goto failed;
    self->root = root;
    const char *key;
    json_t *value;
    json_object_foreach (root, key, value)
        if (strcmp (key, "types")) {
            snprintf (err, cap, "%s: unknown field", key);
            goto failed;
        }
    if (!json_is_object (types) || json_object_size (types) == 0) {
        snprintf (err, cap, "types: an object of at least one type");
        goto failed;
    }
    self->types = calloc (json_object_size (types), sizeof *self->types);
    if (!self->types) {
        snprintf (err, cap, "out of memory");
        goto failed;
    }
    json_object_foreach (types, key, value) {
        sensor_type_t *t = &self->types [self->count];
        if (!s_type_name_valid (key)) {
            snprintf (err, cap, "types.%s: a type name is 1..32 of a-z 0-9 _", key);
            goto failed;
        }
        if (!json_is_object (value)) {
            snprintf (err, cap, "types.%s: an object", key);
            goto failed;
        }
        const char *field;
        json_t *v;
        json_object_foreach (value, field, v) {
            static const char *const known [] = { "category", "radius_m", "window_s",
                "auto_accept_confidence", "request_type", "label", NULL };
            bool ok = false;
            for (size_t i = 0; known [i]; i++)
                ok |= strcmp (known [i], field) == 0;
            if (!ok) {
                snprintf (err, cap, "types.%s.%s: unknown field", key, field);
                goto failed;
            }
        }
        t->name = key;
        t->category = json_string_value (json_object_get (value, "category"));
        if (!t->category || !*t->category) {
            snprintf (err, cap, "types.%s.category: missing", key);
            goto failed;
        }
        json_t *radius = json_object_get (value, "radius_m");
        json_t *window = json_object_get (value, "window_s");
        json_t *threshold = json_object_get (value, "auto_accept_confidence");
        t->radius_m = radius ? (int) json_integer_value (radius) : 0;
        if (!json_is_integer (radius) || t->radius_m < 1 || t->radius_m > 10000) {
            snprintf (err, cap, "types.%s.radius_m: an integer 1..10000", key);
            goto failed;
        }
        t->window_s = window ? (int) json_integer_value (window) : 0;
        if (!json_is_integer (window) || t->window_s < 1 || t->window_s > 30 * 86400) {
            snprintf (err, cap, "types.%s.window_s: an integer 1..2592000", key);
            goto failed;
        }
        t->threshold = threshold ? json_number_value (threshold) : -1;
        if (!json_is_number (threshold) || t->threshold < 0 || t->threshold > 1) {
            snprintf (err, cap, "types.%s.auto_accept_confidence: a number 0..1", key);
            goto failed;
        }
        json_t *rt = json_object_get (value, "request_type");
        t->request_type = rt ? cb_request_type_from_name (json_string_value (rt))
                             : CIVICBUS__V1__REQUEST_TYPE__REPORT;
        if (t->request_type <= 0) {
            snprintf (err, cap, "types.%s.request_type: consult, help, complaint, report "
                      "or suggestion", key);
            goto failed;
        }
        json_t *label = json_object_get (value, "label");
        t->label = label ? json_string_value (label) : key;
        if (!t->label || !*t->label) {
            snprintf (err, cap, "types.%s.label: a non-empty string", key);
            goto failed;
        }
        self->count++;
    }
    return self;
failed:
    if (self)
        sensor_config_destroy (&self);
    else
        json_decref (root);
    return NULL;
}

void
sensor_config_destroy (sensor_config_t **self_p)
{
    assert (self_p);
    sensor_config_t *self = *self_p;
    if (self) {
        json_decref (self->root);
        free (self->types);
        free (self);
        *self_p = NULL;
    }
}

const sensor_type_t *
sensor_config_type (const sensor_config_t *self, const char *name)
{
    for (size_t i = 0; self && name && i < self->count; i++)
        if (strcmp (self->types [i].name, name) == 0)
            return &self->types [i];
    return NULL;
}

size_t
sensor_config_count (const sensor_config_t *self)
{
    return self ? self->count : 0;
}

/* ---- public: one event ---- */

int
sensor_event_parse (const sensor_config_t *config, json_t *item, int64_t now_ms,
                    sensor_event_t *ev, cb_error_t *err)
{
    memset (ev, 0, sizeof *ev);
    if (!json_is_object (item)) {
        cb_error_set (err, "not_object", "", "an event is a JSON object");
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach (item, key, value) {
        static const char *const known [] = { "type", "location", "confidence", "time",
                                              "device_id", "image_url", NULL };
        bool ok = false;
        for (size_t i = 0; known [i]; i++)
            ok |= strcmp (known [i], key) == 0;
        if (!ok) {
            cb_error_set (err, "unknown_field", key, "an event has no field '%s'", key);
            return -1;
        }
    }
    json_t *type = json_object_get (item, "type");
    if (!json_is_string (type)) {
        cb_error_set (err, type ? "wrong_type" : "missing_field", "type", "type is required");
        return -1;
    }
    ev->type = sensor_config_type (config, json_string_value (type));
    if (!ev->type) {
        cb_error_set (err, "unknown_type", "type", "event type '%s' is not configured",
                      json_string_value (type));
        return -1;
    }
    json_t *location = json_object_get (item, "location");
    json_t *lat = json_object_get (location, "lat"), *lon = json_object_get (location, "lon");
    if (!json_is_object (location) || json_object_size (location) != 2
    ||  !json_is_number (lat) || !json_is_number (lon)) {
        cb_error_set (err, location ? "bad_value" : "missing_field", "location",
                      "location is {\"lat\": number, \"lon\": number}");
        return -1;
    }
    ev->lat = json_number_value (lat);
    ev->lon = json_number_value (lon);
    //  GEO's own limits: latitude +-85.05112878.
    if (!(ev->lat >= -85.05112878 && ev->lat <= 85.05112878 && ev->lon >= -180 && ev->lon <= 180)) {
        cb_error_set (err, "bad_value", "location", "lat -85.05..85.05, lon -180..180");
        return -1;
    }
    json_t *confidence = json_object_get (item, "confidence");
    if (!json_is_number (confidence)) {
        cb_error_set (err, confidence ? "wrong_type" : "missing_field", "confidence",
                      "confidence is a number 0..1");
        return -1;
    }
    ev->confidence = json_number_value (confidence);
    if (!(ev->confidence >= 0 && ev->confidence <= 1)) {
        cb_error_set (err, "bad_value", "confidence", "confidence is a number 0..1");
        return -1;
    }
    json_t *time = json_object_get (item, "time");
    if (!json_is_string (time) || cb_time_parse_iso (json_string_value (time), &ev->time_ms)) {
        cb_error_set (err, time ? "bad_value" : "missing_field", "time",
                      "time is ISO 8601, e.g. 2026-11-29T08:15:00+08:00");
        return -1;
    }
    if (ev->time_ms > now_ms + SENSOR_FUTURE_MS) {
        cb_error_set (err, "bad_value", "time", "time is more than 5 minutes ahead of ours");
        return -1;
    }
    if (ev->time_ms < now_ms - (int64_t) ev->type->window_s * 1000 - 86400000LL) {
        cb_error_set (err, "too_old", "time", "the event is older than its type's window and "
                      "a day");
        return -1;
    }
    json_t *device = json_object_get (item, "device_id");
    if (!json_is_string (device) || !s_visible_ascii (json_string_value (device), 1,
                                                       SENSOR_DEVICE_MAX)) {
        cb_error_set (err, device ? "bad_value" : "missing_field", "device_id",
                      "device_id is 1..64 visible ASCII characters");
        return -1;
    }
    snprintf (ev->device_id, sizeof ev->device_id, "%s", json_string_value (device));
    json_t *image = json_object_get (item, "image_url");
    if (image && !json_is_null (image)) {
        const char *url = json_string_value (image);
        if (!url || !s_visible_ascii (url, 8, sizeof ev->image_url - 1)
        ||  (strncmp (url, "http://", 7) && strncmp (url, "https://", 8))) {
            cb_error_set (err, "bad_value", "image_url", "image_url is an http(s) URL of at "
                          "most 1024 bytes");
            return -1;
        }
        snprintf (ev->image_url, sizeof ev->image_url, "%s", url);
    }
    return 0;
}

cb_ticket_t *
sensor_ticket_new (const sensor_event_t *ev, const char *fold_id)
{
    assert (ev && ev->type && fold_id);
    cb_ticket_t *t = malloc (sizeof *t);
    if (!t)
        return NULL;
    civicbus__v1__ticket__init (t);
    t->source = CIVICBUS__V1__SOURCE__SOURCE_SENSOR;
    t->request_type = ev->type->request_type;
    t->location = malloc (sizeof *t->location);
    t->sensor_fold = malloc (sizeof *t->sensor_fold);
    if (!t->location || !t->sensor_fold) {
        free (t->location);
        free (t->sensor_fold);
        t->location = NULL;
        t->sensor_fold = NULL;
        civicbus__v1__ticket__free_unpacked (t, NULL);
        return NULL;
    }
    civicbus__v1__location__init (t->location);
    civicbus__v1__sensor_fold__init (t->sensor_fold);
    t->location->lat = ev->lat;
    t->location->lon = ev->lon;
    t->location->has_point = true;
    t->sensor_fold->event_count = 1;
    t->sensor_fold->first_seen_ms = ev->time_ms;
    t->sensor_fold->last_seen_ms = ev->time_ms;
    t->sensor_fold->confidence = ev->confidence;
    char external [96], description [256], reason [160];
    snprintf (external, sizeof external, "sensor-fold:%s:%s", ev->type->name, fold_id);
    snprintf (description, sizeof description, "%s (%s, device %s, confidence %.2f)",
              ev->type->label, ev->type->name, ev->device_id, ev->confidence);
    int rc = pb_set_string (&t->category, ev->type->category)
           | pb_set_string (&t->external_id, external)
           | pb_set_string (&t->description, description)
           | pb_set_string (&t->sensor_fold->type, ev->type->name)
           | pb_set_string (&t->sensor_fold->fold_id, fold_id)
           | pb_set_string (&t->sensor_fold->first_device_id, ev->device_id);
    if (ev->image_url [0])
        rc |= pb_strv_push (&t->n_attachment_urls, &t->attachment_urls, ev->image_url);
    if (ev->confidence < ev->type->threshold) {
        snprintf (reason, sizeof reason, "sensor confidence %.2f is below %.2f for %s: "
                  "confirm or reject", ev->confidence, ev->type->threshold, ev->type->name);
        t->needs_review = true;
        t->review_required = true;
        rc |= pb_set_string (&t->review_reason, reason);
    }
    if (rc) {
        civicbus__v1__ticket__free_unpacked (t, NULL);
        return NULL;
    }
    return t;
}

bool
sensor_fold_merge_counts (cb_ticket_t *t, int64_t count, int64_t first_ms, int64_t last_ms)
{
    assert (t);
    Civicbus__V1__SensorFold *fold = t->sensor_fold;
    if (!fold)
        return false;
    bool changed = false;
    if (count > fold->event_count) {
        fold->event_count = count;
        changed = true;
    }
    if (first_ms && (first_ms < fold->first_seen_ms || !fold->first_seen_ms)) {
        fold->first_seen_ms = first_ms;
        changed = true;
    }
    if (last_ms > fold->last_seen_ms) {
        fold->last_seen_ms = last_ms;
        changed = true;
    }
    return changed;
}

/* ---- public: folding ---- */

sensor_folds_t *
sensor_folds_new (void)
{
    sensor_folds_t *self = calloc (1, sizeof *self);
    if (self) {
        self->fold = (cb_script_t) CB_SCRIPT (s_fold_lua);
        self->set_ticket = (cb_script_t) CB_SCRIPT (s_set_ticket_lua);
        self->close = (cb_script_t) CB_SCRIPT (s_close_lua);
    }
    return self;
}

void
sensor_folds_destroy (sensor_folds_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

int
sensor_folds_prepare (sensor_folds_t *self, cb_redis_t *redis)
{
    return cb_redis_script_load (redis, &self->fold) || cb_redis_script_load (redis, &self->set_ticket)
        || cb_redis_script_load (redis, &self->close) ? -1 : 0;
}

int
sensor_folds_fold (sensor_folds_t *self, cb_redis_t *redis, const sensor_event_t *ev,
                   size_t n, int64_t now_ms, sensor_fold_t *out)
{
    assert (self && redis && (ev || n == 0) && (out || n == 0));
    //  Not loaded by sensor_folds_prepare (Redis was away): the first
    //  append loads it, once per connection (redis.h).
    cb_script_t script = self->fold;
    char args [12][96];
    const char *argv [12];
    for (size_t i = 0; i < 12; i++)
        argv [i] = args [i];
    for (size_t i = 0; i < n; i++) {
        const sensor_type_t *type = ev [i].type;
        s_keys (type->name, args [0], args [1], args [2], args [10], sizeof args [0]);
        snprintf (args [3], sizeof args [3], "%.7f", ev [i].lon);
        snprintf (args [4], sizeof args [4], "%.7f", ev [i].lat);
        snprintf (args [5], sizeof args [5], "%d", type->radius_m);
        snprintf (args [6], sizeof args [6], "%lld", (long long) type->window_s * 1000);
        snprintf (args [7], sizeof args [7], "%lld", (long long) ev [i].time_ms);
        snprintf (args [8], sizeof args [8], "%lld", (long long) now_ms);
        snprintf (args [9], sizeof args [9], "%s", ev [i].device_id);
        snprintf (args [11], sizeof args [11], "%lld", (long long) s_ttl_ms (type->window_s));
        if (cb_redis_append_eval (redis, &script, 3, 12, argv, NULL))
            return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return -1;              //  the connection is gone with the rest
        if (cb_reply_is_error (reply, "NOSCRIPT")) {
            //  Redis restarted between the load and the pipeline: run it alone.
            freeReplyObject (reply);
            reply = NULL;
            rc = sensor_folds_fold (self, redis, &ev [i], 1, now_ms, &out [i]);
            continue;
        }
        if (s_fold_reply (reply, &out [i]))
            rc = -1;
        freeReplyObject (reply);
    }
    return rc;
}

int
sensor_folds_set_ticket (sensor_folds_t *self, cb_redis_t *redis, const char *type,
                         const char *fold_id, const char *ticket_id, int window_s)
{
    (void) window_s;
    char geo [96], act [96], seq [96], prefix [96], hash [128];
    s_keys (type, geo, act, seq, prefix, sizeof geo);
    snprintf (hash, sizeof hash, "%s%s", prefix, fold_id);
    cb_script_t script = self->set_ticket;
    const char *argv [] = { hash, ticket_id };
    redisReply *reply = cb_redis_eval (redis, &script, 1, 2, argv, NULL);
    int rc = reply && reply->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (reply)
        freeReplyObject (reply);
    return rc;
}

int
sensor_folds_close (sensor_folds_t *self, cb_redis_t *redis, const char *type,
                    const char *fold_id)
{
    char geo [96], act [96], seq [96], prefix [96], hash [128];
    s_keys (type, geo, act, seq, prefix, sizeof geo);
    snprintf (hash, sizeof hash, "%s%s", prefix, fold_id);
    cb_script_t script = self->close;
    const char *argv [] = { geo, act, hash, fold_id };
    redisReply *reply = cb_redis_eval (redis, &script, 3, 4, argv, NULL);
    int rc = reply && reply->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (reply)
        freeReplyObject (reply);
    return rc;
}

int
sensor_folds_read (sensor_folds_t *self, cb_redis_t *redis, const char *type,
                   const char *fold_id, int64_t *count, int64_t *first_ms, int64_t *last_ms)
{
    (void) self;
    redisReply *reply = cb_redis_command (redis, "HMGET sfold:{s:%s}:%s count first last",
                                          type, fold_id);
    int rc = -1;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3) {
        if (reply->element [0]->type != REDIS_REPLY_STRING)
            rc = 1;
        else {
            *count = s_reply_int (reply->element [0]);
            *first_ms = s_reply_int (reply->element [1]);
            *last_ms = s_reply_int (reply->element [2]);
            rc = 0;
        }
    }
    if (reply)
        freeReplyObject (reply);
    return rc;
}
