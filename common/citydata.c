/*  citydata.c — grids, catalogue, time-limit policies and calendar in
    Redis, cached as swappable snapshots (see citydata.h). */

#include "civicbus/citydata.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"

#include <assert.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    citydata_snapshot_t pub;   //  first: the public view
    int refs;
} s_snap_t;

struct _citydata_t {
    pthread_mutex_t lock;
    s_snap_t *current;
    bool warned_no_sla;        //  "no policies" is said once, not every refresh
};

/* ---- private ---- */

static void
s_snap_free (s_snap_t *snap)
{
    grid_index_destroy (&snap->pub.grids);
    catalog_destroy (&snap->pub.catalog);
    sla_destroy (&snap->pub.policies);
    workcal_destroy (&snap->pub.calendar);
    free (snap);
}

//  A snapshot with the built-in calendar and nothing else; NULL out of memory.
static s_snap_t *
s_snap_new (void)
{
    s_snap_t *snap = calloc (1, sizeof *snap);
    if (!snap)
        return NULL;
    snap->refs = 1;
    snap->pub.calendar = workcal_new_default ();
    if (!snap->pub.calendar) {
        free (snap);
        return NULL;
    }
    return snap;
}

static int
s_store (cb_redis_t *redis, const char *what, const char *text, size_t len, size_t count,
         int64_t *version, char *err, size_t errcap)
{
    char n [32];
    snprintf (n, sizeof n, "%zu", count);
    const char *fields [] = { "count", n };
    return citydata_store_text (redis, what, text, len, fields, 1, version, err, errcap);
}

/* ---- public ---- */

int
citydata_store_grids (cb_redis_t *redis, const char *text, size_t len,
                      int64_t *version, char *err, size_t errcap)
{
    grid_index_t *grids = grid_index_from_geojson (text, len, err, errcap);
    if (!grids)
        return -1;
    size_t count = grid_index_count (grids);
    grid_index_destroy (&grids);
    return s_store (redis, "grids", text, len, count, version, err, errcap);
}

int
citydata_store_catalog (cb_redis_t *redis, const char *text, size_t len,
                        int64_t *version, char *err, size_t errcap)
{
    catalog_t *catalog = catalog_from_json (text, len, err, errcap);
    if (!catalog)
        return -1;
    size_t count = catalog_category_count (catalog);
    catalog_destroy (&catalog);
    return s_store (redis, "catalog", text, len, count, version, err, errcap);
}

char *
citydata_fetch (cb_redis_t *redis, const char *what, int64_t *version)
{
    redisReply *reply = cb_redis_command (redis, "HMGET cfg:%s json version", what);
    char *text = NULL;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [0]->type == REDIS_REPLY_STRING) {
        text = malloc (reply->element [0]->len + 1);
        if (text) {
            memcpy (text, reply->element [0]->str, reply->element [0]->len);
            text [reply->element [0]->len] = 0;
        }
        if (version && reply->element [1]->type == REDIS_REPLY_STRING)
            *version = strtoll (reply->element [1]->str, NULL, 10);
    }
    if (reply)
        freeReplyObject (reply);
    return text;
}

citydata_t *
citydata_new (void)
{
    citydata_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->current = s_snap_new ();
    if (!self->current) {
        free (self);
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

void
citydata_destroy (citydata_t **self_p)
{
    assert (self_p);
    citydata_t *self = *self_p;
    if (self) {
        //  Readers must have released their snapshots by now.
        if (self->current && --self->current->refs == 0)
            s_snap_free (self->current);
        pthread_mutex_destroy (&self->lock);
        free (self);
        *self_p = NULL;
    }
}

int
citydata_refresh (citydata_t *self, cb_redis_t *redis)
{
    redisReply *reply = cb_redis_command (redis, "EVAL %s 0",
        "return {redis.call('HGET','cfg:grids','version') or '0',"
        "redis.call('HGET','cfg:catalog','version') or '0',"
        "redis.call('HGET','cfg:sla','version') or '0',"
        "redis.call('HGET','cfg:calendar','version') or '0'}");
    if (!reply)
        return -1;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        freeReplyObject (reply);
        return -1;
    }
    int64_t versions [4];
    for (int i = 0; i < 4; i++)
        versions [i] = reply->element [i]->type == REDIS_REPLY_STRING
                     ? strtoll (reply->element [i]->str, NULL, 10) : 0;
    freeReplyObject (reply);

    pthread_mutex_lock (&self->lock);
    s_snap_t *cur = self->current;
    bool changed = versions [0] != cur->pub.grids_version
                || versions [1] != cur->pub.catalog_version
                || versions [2] != cur->pub.sla_version
                || versions [3] != cur->pub.calendar_version;
    pthread_mutex_unlock (&self->lock);
    if (versions [2] == 0 && !self->warned_no_sla) {
        self->warned_no_sla = true;
        cb_log (CB_LOG_WARN, "no time-limit policies loaded (cfg:sla): tickets get no "
                "deadlines until 'civicbus sla load FILE'", NULL);
    }
    if (!changed)
        return 0;

    //  Parse everything, outside the lock (readers keep the old set
    //  meanwhile), so every snapshot owns its objects outright: no sharing
    //  between them. Changes are rare; parsing the demo city takes
    //  milliseconds.
    s_snap_t *next = s_snap_new ();
    if (!next)
        return -1;
    char err [512] = "";
    int rc = 1;
    char *text = citydata_fetch (redis, "grids", &next->pub.grids_version);
    if (text) {
        next->pub.grids = grid_index_from_geojson (text, strlen (text), err, sizeof err);
        if (!next->pub.grids) {
            cb_log (CB_LOG_ERROR, "stored grids do not load", "error", err, NULL);
            rc = -1;
        }
    }
    free (text);
    text = citydata_fetch (redis, "catalog", &next->pub.catalog_version);
    if (text) {
        next->pub.catalog = catalog_from_json (text, strlen (text), err, sizeof err);
        if (!next->pub.catalog) {
            cb_log (CB_LOG_ERROR, "stored catalogue does not load", "error", err, NULL);
            rc = -1;
        }
    }
    free (text);
    text = citydata_fetch (redis, "sla", &next->pub.sla_version);
    if (text) {
        next->pub.policies = sla_from_json (text, strlen (text), err, sizeof err);
        if (!next->pub.policies) {
            cb_log (CB_LOG_ERROR, "stored time-limit policies do not load", "error", err, NULL);
            rc = -1;
        }
    }
    free (text);
    text = citydata_fetch (redis, "calendar", &next->pub.calendar_version);
    if (text) {
        workcal_t *calendar = workcal_from_json (text, strlen (text), err, sizeof err);
        if (calendar) {
            workcal_destroy (&next->pub.calendar);
            next->pub.calendar = calendar;
        }
        else {
            cb_log (CB_LOG_ERROR, "stored calendar does not load", "error", err, NULL);
            rc = -1;
        }
    }
    free (text);
    if (rc < 0) {
        //  Keep serving with the previous set.
        s_snap_free (next);
        return -1;
    }
    pthread_mutex_lock (&self->lock);
    cur = self->current;
    self->current = next;
    bool free_old = --cur->refs == 0;
    pthread_mutex_unlock (&self->lock);
    if (free_old)
        s_snap_free (cur);
    char sla_v [24], cal_v [24];
    snprintf (sla_v, sizeof sla_v, "%lld", (long long) next->pub.sla_version);
    snprintf (cal_v, sizeof cal_v, "%lld", (long long) next->pub.calendar_version);
    cb_log (CB_LOG_INFO, "city data loaded", "sla_version", sla_v,
            "calendar", workcal_name (next->pub.calendar), "calendar_version", cal_v, NULL);
    return 1;
}

citydata_snapshot_t *
citydata_acquire (citydata_t *self)
{
    pthread_mutex_lock (&self->lock);
    s_snap_t *snap = self->current;
    snap->refs++;
    pthread_mutex_unlock (&self->lock);
    return &snap->pub;
}

void
citydata_release (citydata_t *self, citydata_snapshot_t **snap_p)
{
    if (!snap_p || !*snap_p)
        return;
    s_snap_t *snap = (s_snap_t *) *snap_p;
    pthread_mutex_lock (&self->lock);
    bool last = --snap->refs == 0;
    pthread_mutex_unlock (&self->lock);
    if (last)
        s_snap_free (snap);
    *snap_p = NULL;
}

int
citydata_store_text (cb_redis_t *redis, const char *what, const char *text, size_t len,
                     const char *const *fields, size_t n_fields,
                     int64_t *version, char *err, size_t errcap)
{
    assert (n_fields <= CITYDATA_STORE_FIELDS_MAX);
    char key [32];
    snprintf (key, sizeof key, "cfg:%s", what);
    //  One script: bump the version and store the text together, so a reader
    //  never sees a new version with old text.
    static const char lua [] =
        "local v = redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
        "redis.call('HSET', KEYS[1], 'json', ARGV[1], 'loaded_ms', ARGV[2], unpack(ARGV, 3))\n"
        "return v\n";
    cb_script_t script = CB_SCRIPT (lua);
    char now [32];
    snprintf (now, sizeof now, "%lld", (long long) cb_clock_now_ms ());
    const char *argv [3 + 2 * CITYDATA_STORE_FIELDS_MAX] = { key, text, now };
    size_t lens [3 + 2 * CITYDATA_STORE_FIELDS_MAX] = { strlen (key), len, strlen (now) };
    for (size_t i = 0; i < 2 * n_fields; i++) {
        argv [3 + i] = fields [i];
        lens [3 + i] = strlen (fields [i]);
    }
    redisReply *reply = cb_redis_eval (redis, &script, 1, (int) (3 + 2 * n_fields), argv, lens);
    if (!reply) {
        snprintf (err, errcap, "%s", cb_redis_error (redis));
        return -1;
    }
    int rc = -1;
    if (reply->type == REDIS_REPLY_INTEGER) {
        *version = reply->integer;
        rc = 0;
    }
    else
        snprintf (err, errcap, "redis refused the %s: %s", what,
                  reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    freeReplyObject (reply);
    return rc;
}
