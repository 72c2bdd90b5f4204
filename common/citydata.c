/*  citydata.c — grids and catalogue in Redis, cached as swappable
    snapshots (see citydata.h). */

#include "civicbus/citydata.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"

#include <assert.h>
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
};

/* ---- private ---- */

static void
s_snap_free (s_snap_t *snap)
{
    grid_index_destroy (&snap->pub.grids);
    catalog_destroy (&snap->pub.catalog);
    free (snap);
}

static int
s_store (cb_redis_t *redis, const char *what, const char *text, size_t len, size_t count,
         int64_t *version, char *err, size_t errcap)
{
    char key [32];
    snprintf (key, sizeof key, "cfg:%s", what);
    //  One script: bump the version and store the text together, so a reader
    //  never sees a new version with old text.
    static const char lua [] =
        "local v = redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
        "redis.call('HSET', KEYS[1], 'json', ARGV[1], 'loaded_ms', ARGV[2], 'count', ARGV[3])\n"
        "return v\n";
    cb_script_t script = CB_SCRIPT (lua);
    char now [32], n [32];
    snprintf (now, sizeof now, "%lld", (long long) cb_clock_now_ms ());
    snprintf (n, sizeof n, "%zu", count);
    const char *argv [] = { key, text, now, n };
    size_t lens [] = { strlen (key), len, strlen (now), strlen (n) };
    redisReply *reply = cb_redis_eval (redis, &script, 1, 4, argv, lens);
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
    self->current = calloc (1, sizeof (s_snap_t));
    if (!self->current) {
        free (self);
        return NULL;
    }
    self->current->refs = 1;
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
        "redis.call('HGET','cfg:catalog','version') or '0'}");
    if (!reply)
        return -1;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        freeReplyObject (reply);
        return -1;
    }
    int64_t grids_v = strtoll (reply->element [0]->str, NULL, 10);
    int64_t catalog_v = strtoll (reply->element [1]->str, NULL, 10);
    freeReplyObject (reply);

    pthread_mutex_lock (&self->lock);
    s_snap_t *cur = self->current;
    bool grids_changed = grids_v != cur->pub.grids_version;
    bool catalog_changed = catalog_v != cur->pub.catalog_version;
    pthread_mutex_unlock (&self->lock);
    if (!grids_changed && !catalog_changed)
        return 0;

    //  Parse both, outside the lock (readers keep the old pair meanwhile), so
    //  every snapshot owns its objects outright: no sharing between them.
    //  Changes are rare; parsing the demo city takes milliseconds.
    s_snap_t *next = calloc (1, sizeof *next);
    if (!next)
        return -1;
    next->refs = 1;
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
    if (rc < 0) {
        //  Keep serving with the previous pair.
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
    cb_log (CB_LOG_INFO, "city data loaded", NULL);
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
