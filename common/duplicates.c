/*  duplicates.c — probable duplicates among people's reports: a per-category
    GEO index of open tickets searched at creation, the merge record on the
    parent, and the repeat-report rate counters (see duplicates.h).

    Costs: a search is one script (GEOSEARCH is O(N+log M) for N points in
    the radius' bounding box; COUNT bounds the answer) plus one ticket load
    per candidate examined (usually one). */

#include "civicbus/duplicates.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/pbutil.h"
#include "civicbus/ticket_id.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _dup_index_t {
    int radius_m;
    int window_s;
};

//  Drops entries older than the window, then the nearest COUNT ids.
static const char s_find_lua [] =
    "local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4], 'LIMIT', 0, 200)\n"
    "for _, id in ipairs(old) do\n"
    "  redis.call('ZREM', KEYS[1], id)\n"
    "  redis.call('ZREM', KEYS[2], id)\n"
    "end\n"
    "return redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],\n"
    "                  'BYRADIUS', ARGV[3], 'm', 'ASC', 'COUNT', ARGV[5])\n";

static const char s_add_lua [] =
    "redis.call('GEOADD', KEYS[1], ARGV[1], ARGV[2], ARGV[3])\n"
    "redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])\n"
    "return 1\n";

static const char s_drop_lua [] =
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* ---- private ---- */

static void
s_keys (const char *category, char *geo, char *times, size_t cap)
{
    snprintf (geo, cap, "dupgeo:{d:%s}", category);
    snprintf (times, cap, "dupt:{d:%s}", category);
}

static const char *
s_street (const cb_ticket_t *t)
{
    const Civicbus__V1__Location *where = t->location;
    if (!where || where->n_grid_path == 0)
        return "ungridded";
    return where->n_grid_path >= 2 ? where->grid_path [1] : where->grid_path [0];
}

/* ---- public: the index ---- */

dup_index_t *
dup_index_new (int radius_m, int window_s)
{
    if (radius_m < 1 || radius_m > 100000 || window_s < 1)
        return NULL;
    dup_index_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->radius_m = radius_m;
    self->window_s = window_s;
    return self;
}

void
dup_index_destroy (dup_index_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

void
dup_index_limits (const dup_index_t *self, int *radius_m, int *window_s)
{
    assert (self && radius_m && window_s);
    *radius_m = self->radius_m;
    *window_s = self->window_s;
}

bool
dup_applies (const cb_ticket_t *t)
{
    return t && t->source != CIVICBUS__V1__SOURCE__SOURCE_SENSOR
        && !pb_string_is_empty (t->category) && t->location && t->location->has_point;
}

int
dup_add_prepare (const cb_ticket_t *t, dup_add_t *a)
{
    assert (t && a);
    if (!dup_applies (t) || pb_string_is_empty (t->id) || strlen (t->id) >= sizeof a->id)
        return 0;
    s_keys (t->category, a->geo, a->times, sizeof a->geo);
    snprintf (a->lon, sizeof a->lon, "%.7f", t->location->lon);
    snprintf (a->lat, sizeof a->lat, "%.7f", t->location->lat);
    snprintf (a->created, sizeof a->created, "%lld", (long long) t->created_ms);
    snprintf (a->id, sizeof a->id, "%s", t->id);
    return 1;
}

/* ---- public: the index, split for pipelining ---- */

void
dup_scripts_init (dup_scripts_t *scripts)
{
    assert (scripts);
    scripts->find = (cb_script_t) CB_SCRIPT (s_find_lua);
    scripts->add = (cb_script_t) CB_SCRIPT (s_add_lua);
    scripts->drop = (cb_script_t) CB_SCRIPT (s_drop_lua);
}

int
dup_find_append (const dup_index_t *self, cb_redis_t *redis, dup_scripts_t *scripts,
                 const cb_ticket_t *t, int64_t now_ms)
{
    assert (self && redis && scripts && dup_applies (t));
    char geo [128], times [128], lon [32], lat [32], radius [16], cutoff [24], count [8];
    s_keys (t->category, geo, times, sizeof geo);
    snprintf (lon, sizeof lon, "%.7f", t->location->lon);
    snprintf (lat, sizeof lat, "%.7f", t->location->lat);
    snprintf (radius, sizeof radius, "%d", self->radius_m);
    snprintf (cutoff, sizeof cutoff, "%lld", (long long) (now_ms - self->window_s * 1000LL));
    snprintf (count, sizeof count, "%d", DUP_CANDIDATES);
    const char *argv [] = { geo, times, lon, lat, radius, cutoff, count };
    return cb_redis_append_eval (redis, &scripts->find, 2, 7, argv, NULL);
}

int
dup_find_candidates (const redisReply *reply, char ids [][CB_TICKET_ID_MAX], size_t cap)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < reply->elements && n < cap; i++) {
        const redisReply *e = reply->element [i];
        if (e->type == REDIS_REPLY_STRING && e->len < CB_TICKET_ID_MAX)
            snprintf (ids [n++], CB_TICKET_ID_MAX, "%s", e->str);
    }
    return (int) n;
}

int
dup_drop_append (cb_redis_t *redis, dup_scripts_t *scripts, const cb_ticket_t *t,
                 const char *id)
{
    assert (redis && scripts && t && t->category && id);
    char geo [128], times [128];
    s_keys (t->category, geo, times, sizeof geo);
    const char *argv [] = { geo, times, id };
    return cb_redis_append_eval (redis, &scripts->drop, 2, 3, argv, NULL);
}

int
dup_add_append (cb_redis_t *redis, dup_scripts_t *scripts, const dup_add_t *a)
{
    assert (redis && scripts && a);
    const char *argv [] = { a->geo, a->times, a->lon, a->lat, a->id, a->created };
    return cb_redis_append_eval (redis, &scripts->add, 2, 6, argv, NULL);
}

int
dup_flag (cb_ticket_t *t, const char *parent_id, int radius_m, int window_s, bool hold)
{
    assert (t && parent_id);
    char reason [256];
    snprintf (reason, sizeof reason,
              "probable duplicate of %s (same category within %d m and %d h); merge or accept",
              parent_id, radius_m, window_s / 3600);
    t->needs_review = hold;
    t->review_required = hold;
    return pb_set_string (&t->probable_duplicate_of, parent_id)
        || pb_set_string (&t->review_reason, reason) ? -1 : 0;
}

/* ---- public: the repeat-report rate ---- */

void
dup_kpi_area (const cb_ticket_t *t, char *buf, size_t cap)
{
    snprintf (buf, cap, "%s", s_street (t));
}

static json_t *
s_rate (json_t *object, long long reports, long long dups)
{
    json_object_set_new (object, "reports", json_integer (reports));
    json_object_set_new (object, "duplicates", json_integer (dups));
    json_object_set_new (object, "rate", json_real (reports ? (double) dups / (double) reports : 0));
    return object;
}

//  Adds a HGETALL's counts (area -> n) to by_area's [reports, dups] pairs,
//  at `slot` (0 reports, 1 dups). 0, or -1 for a reply of the wrong kind.
static int
s_kpi_add (json_t *by_area, const redisReply *reply, size_t slot)
{
    if (reply->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const char *area = reply->element [i]->str;
        long long n = atoll (reply->element [i + 1]->str);
        json_t *pair = json_object_get (by_area, area);
        if (!pair) {
            pair = json_pack ("[I, I]", 0LL, 0LL);
            if (!pair || json_object_set_new (by_area, area, pair))
                return -1;
        }
        json_array_set_new (pair, slot, json_integer (json_integer_value (
                                json_array_get (pair, slot)) + n));
    }
    return 0;
}

int
dup_kpi_read (cb_redis_t *redis, int yyyymmdd, json_t **out)
{
    assert (redis && out);
    *out = NULL;
    //  Every bucket's two hashes (ts_create_count_kpi), and the two
    //  unbucketed ones that versions before 2026-11-29 wrote, in one round
    //  trip; read all replies before judging any, so the pipeline stays in step.
    enum { N = 2 * CB_BUCKETS + 2 };       //  reports and dups alternate
    for (int b = 0; b < CB_BUCKETS; b++)
        if (cb_redis_append (redis, "HGETALL kpi:{b%02d}:reports:%08d", b, yyyymmdd)
        ||  cb_redis_append (redis, "HGETALL kpi:{b%02d}:dup:%08d", b, yyyymmdd))
            return -1;
    if (cb_redis_append (redis, "HGETALL kpi:reports:%08d", yyyymmdd)
    ||  cb_redis_append (redis, "HGETALL kpi:dup:%08d", yyyymmdd))
        return -1;
    json_t *by_area = json_object ();           //  area -> [reports, dups]
    int rc = by_area ? 0 : -1;
    for (int i = 0; i < N; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply) {
            json_decref (by_area);
            return -1;                          //  the connection is gone
        }
        if (rc == 0)
            rc = s_kpi_add (by_area, reply, (size_t) (i % 2));
        freeReplyObject (reply);
    }
    if (rc) {
        json_decref (by_area);
        return -1;
    }
    char date [16];
    snprintf (date, sizeof date, "%04d-%02d-%02d", yyyymmdd / 10000, yyyymmdd / 100 % 100,
              yyyymmdd % 100);
    json_t *root = json_pack ("{s:s}", "date", date);
    json_t *areas = json_array ();
    if (!root || !areas) {
        json_decref (by_area);
        json_decref (root);
        json_decref (areas);
        return -1;
    }
    long long total_reports = 0, total_dups = 0;
    //  Sorted by area code, so answers compare.
    const char *keys [1024];
    size_t n_keys = 0;
    const char *key;
    json_t *pair;
    json_object_foreach (by_area, key, pair)
        if (n_keys < 1024)
            keys [n_keys++] = key;
    for (size_t i = 1; i < n_keys; i++)
        for (size_t j = i; j > 0 && strcmp (keys [j - 1], keys [j]) > 0; j--) {
            const char *swap = keys [j];
            keys [j] = keys [j - 1];
            keys [j - 1] = swap;
        }
    for (size_t i = 0; i < n_keys; i++) {
        pair = json_object_get (by_area, keys [i]);
        long long r = json_integer_value (json_array_get (pair, 0));
        long long d = json_integer_value (json_array_get (pair, 1));
        total_reports += r;
        total_dups += d;
        json_array_append_new (areas, s_rate (json_pack ("{s:s}", "area", keys [i]), r, d));
    }
    s_rate (root, total_reports, total_dups);
    json_object_set_new (root, "areas", areas);
    json_decref (by_area);
    *out = root;
    return 0;
}

/* ---- public: merges ---- */

int
dup_merge_record (cb_ticket_t *parent, const cb_ticket_t *child, int64_t now_ms)
{
    assert (parent && child);
    for (size_t i = 0; i < parent->n_merged_from; i++)
        if (parent->merged_from [i] && parent->merged_from [i]->ticket_id
        &&  child->id && strcmp (parent->merged_from [i]->ticket_id, child->id) == 0)
            return 1;
    Civicbus__V1__MergedReport **list = realloc (parent->merged_from,
        (parent->n_merged_from + 1) * sizeof *list);
    if (!list)
        return -1;
    parent->merged_from = list;
    Civicbus__V1__MergedReport *m = calloc (1, sizeof *m);
    if (!m)
        return -1;
    civicbus__v1__merged_report__init (m);
    m->merged_ms = now_ms;
    if (pb_set_string (&m->ticket_id, child->id)) {
        free (m);
        return -1;
    }
    if (child->reporter) {
        m->reporter = calloc (1, sizeof *m->reporter);
        if (m->reporter) {
            civicbus__v1__reporter__init (m->reporter);
            if (pb_set_string (&m->reporter->name, child->reporter->name)
            ||  pb_set_string (&m->reporter->phone, child->reporter->phone)) {
                civicbus__v1__merged_report__free_unpacked (m, NULL);
                return -1;
            }
        }
        else {
            civicbus__v1__merged_report__free_unpacked (m, NULL);
            return -1;
        }
    }
    parent->merged_from [parent->n_merged_from++] = m;
    return 0;
}

int
dup_note_merged_from (ticket_store_t *store, const char *parent_id, const char *child_id,
                      const ticket_actor_t *actor, int64_t now_ms, int tries)
{
    assert (store && parent_id && child_id && actor);
    cb_ticket_t *child = NULL;
    int rc = ticket_store_load (store, child_id, &child);
    if (rc != TS_OK)
        return rc;
    char payload [128];
    snprintf (payload, sizeof payload, "{\"ticket\":\"%s\"}", child_id);
    rc = TS_CONFLICT;
    for (int attempt = 0; attempt < (tries < 1 ? 1 : tries) && rc == TS_CONFLICT; attempt++) {
        cb_ticket_t *before = NULL;
        rc = ticket_store_load (store, parent_id, &before);
        if (rc != TS_OK)
            break;
        cb_ticket_t *after = ticket_clone (before);
        int added = after ? dup_merge_record (after, child, now_ms) : -1;
        if (added < 0)
            rc = TS_ERROR;
        else
        if (added == 1)
            rc = TS_OK;             //  recorded before: nothing to add
        else {
            after->updated_ms = now_ms;
            ts_event_t ev = { "merged_from", actor, before->state, before->state, NULL, payload };
            rc = ticket_store_apply (store, before, after, &ev, 1, NULL);
        }
        if (after)
            civicbus__v1__ticket__free_unpacked (after, NULL);
        civicbus__v1__ticket__free_unpacked (before, NULL);
    }
    civicbus__v1__ticket__free_unpacked (child, NULL);
    return rc;
}
