/*  test_citydata.c — grids and catalogue stored in Redis after validation,
    cached as snapshots, reloaded when their version moves, and a reader's
    snapshot stays valid while a reload swaps in a new one; time-limit
    policies and the calendar ride in the same snapshots. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/citydata.h"
#include "test_redis.h"

typedef struct {
    test_redis_t server;
    cb_redis_t *redis;
    char *grids;
    size_t grids_len;
    char *catalog;
    size_t catalog_len;
} fixture_t;

static char *
s_read (const char *name, size_t *len)
{
    const char *root = getenv ("CIVICBUS_SOURCE_DIR");
    char path [512];
    snprintf (path, sizeof path, "%s/deploy/config/%s", root ? root : CIVICBUS_SOURCE_DIR, name);
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    fseek (file, 0, SEEK_END);
    long size = ftell (file);
    fseek (file, 0, SEEK_SET);
    char *text = malloc ((size_t) size + 1);
    if (text && fread (text, 1, (size_t) size, file) != (size_t) size) {
        free (text);
        text = NULL;
    }
    if (text)
        text [size] = 0;
    fclose (file);
    *len = (size_t) size;
    return text;
}

static int
s_setup (void **state)
{
    fixture_t *f = calloc (1, sizeof *f);
    if (!f || test_redis_start (&f->server))
        return -1;
    char err [256];
    f->redis = cb_redis_new (f->server.url, 2000, err, sizeof err);
    f->grids = s_read ("grids.geojson", &f->grids_len);
    f->catalog = s_read ("catalog.json", &f->catalog_len);
    *state = f;
    return f->redis && f->grids && f->catalog ? 0 : -1;
}

static int
s_teardown (void **state)
{
    fixture_t *f = *state;
    cb_redis_destroy (&f->redis);
    test_redis_stop (&f->server);
    free (f->grids);
    free (f->catalog);
    free (f);
    return 0;
}

static void
test_store_refresh_and_swap (void **state)
{
    fixture_t *f = *state;
    citydata_t *city = citydata_new ();
    //  Nothing loaded yet: an empty snapshot, no reload.
    assert_int_equal (citydata_refresh (city, f->redis), 0);
    citydata_snapshot_t *empty = citydata_acquire (city);
    assert_null (empty->grids);
    assert_null (empty->catalog);

    int64_t version = 0;
    char err [256];
    assert_int_equal (citydata_store_grids (f->redis, f->grids, f->grids_len, &version, err, sizeof err), 0);
    assert_int_equal (version, 1);
    assert_int_equal (citydata_store_catalog (f->redis, f->catalog, f->catalog_len, &version, err, sizeof err), 0);
    assert_int_equal (citydata_refresh (city, f->redis), 1);
    assert_int_equal (citydata_refresh (city, f->redis), 0);

    citydata_snapshot_t *snap = citydata_acquire (city);
    assert_non_null (snap->grids);
    assert_non_null (snap->catalog);
    assert_true (grid_index_count (snap->grids) >= 600);
    assert_int_equal (snap->grids_version, 1);
    //  The old empty snapshot is still ours to read until released.
    assert_null (empty->grids);
    citydata_release (city, &empty);
    assert_null (empty);

    //  A new version is picked up; the reader keeps its old pair.
    assert_int_equal (citydata_store_grids (f->redis, f->grids, f->grids_len, &version, err, sizeof err), 0);
    assert_int_equal (version, 2);
    assert_int_equal (citydata_refresh (city, f->redis), 1);
    grid_hit_t hit;
    double lat, lon;
    const char *code = "320105001001001";
    assert_int_equal (grid_index_centroid (snap->grids, code, &lat, &lon), 0);
    assert_int_equal (grid_index_locate (snap->grids, lat, lon, &hit), 0);
    assert_string_equal (hit.code, code);
    citydata_release (city, &snap);
    snap = citydata_acquire (city);
    assert_int_equal (snap->grids_version, 2);
    citydata_release (city, &snap);
    citydata_destroy (&city);
    citydata_destroy (&city);
    assert_null (city);
}

static void
test_bad_files_never_reach_redis (void **state)
{
    fixture_t *f = *state;
    int64_t before = 0, version = 0;
    char *text = citydata_fetch (f->redis, "grids", &before);
    free (text);
    char err [256] = "";
    const char *broken = "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\"}]}";
    assert_int_equal (citydata_store_grids (f->redis, broken, strlen (broken), &version, err, sizeof err), -1);
    assert_true (strlen (err) > 0);
    const char *bad_catalog = "{\"version\": 3}";
    err [0] = 0;
    assert_int_equal (citydata_store_catalog (f->redis, bad_catalog, strlen (bad_catalog), &version,
                                              err, sizeof err), -1);
    assert_true (strlen (err) > 0);
    int64_t after = 0;
    text = citydata_fetch (f->redis, "grids", &after);
    free (text);
    assert_int_equal (after, before);
}

//  Writes cfg:WHAT the way the CLI does (json + bumped version).
static void
s_put_cfg (cb_redis_t *redis, const char *what, const char *text, size_t len)
{
    const char *argv [] = { "HINCRBY", what, "version", "1" };
    redisReply *reply = cb_redis_argv (redis, 4, argv, NULL);
    assert_non_null (reply);
    freeReplyObject (reply);
    const char *argv2 [] = { "HSET", what, "json", text };
    size_t lens [] = { 4, strlen (what), 4, len };
    reply = cb_redis_argv (redis, 4, argv2, lens);
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_INTEGER);
    freeReplyObject (reply);
}

static void
test_policies_and_calendar (void **state)
{
    fixture_t *f = *state;
    citydata_t *city = citydata_new ();
    citydata_refresh (city, f->redis);
    citydata_snapshot_t *snap = citydata_acquire (city);
    //  Nothing loaded: no policies, the built-in 2026 calendar.
    assert_null (snap->policies);
    assert_non_null (snap->calendar);
    assert_string_equal (workcal_name (snap->calendar), "cn-2026");
    assert_int_equal (snap->sla_version, 0);
    assert_int_equal (snap->calendar_version, 0);
    citydata_release (city, &snap);

    size_t len = 0;
    char *sla = s_read ("sla.json", &len);
    assert_non_null (sla);
    s_put_cfg (f->redis, "cfg:sla", sla, len);
    free (sla);
    assert_int_equal (citydata_refresh (city, f->redis), 1);
    snap = citydata_acquire (city);
    assert_non_null (snap->policies);
    assert_int_equal (snap->sla_version, 1);
    assert_true (sla_has_policy (snap->policies, "urban-4h"));
    assert_string_equal (workcal_name (snap->calendar), "cn-2026");

    //  A calendar of our own replaces the built-in one; the reader keeps its set.
    const char *cal = "{\"name\": \"seven-days\", \"timezone\": \"Asia/Shanghai\","
        " \"office_hours\": {\"mon\": [\"09:00-17:00\"], \"tue\": [\"09:00-17:00\"],"
        " \"wed\": [\"09:00-17:00\"], \"thu\": [\"09:00-17:00\"], \"fri\": [\"09:00-17:00\"],"
        " \"sat\": [\"09:00-17:00\"], \"sun\": [\"09:00-17:00\"]}}";
    s_put_cfg (f->redis, "cfg:calendar", cal, strlen (cal));
    assert_int_equal (citydata_refresh (city, f->redis), 1);
    assert_string_equal (workcal_name (snap->calendar), "cn-2026");
    citydata_release (city, &snap);
    snap = citydata_acquire (city);
    assert_string_equal (workcal_name (snap->calendar), "seven-days");
    assert_int_equal (snap->calendar_version, 1);
    assert_non_null (snap->policies);
    citydata_release (city, &snap);

    //  Broken policies in Redis (written behind the CLI's back): the
    //  previous set stays in use.
    s_put_cfg (f->redis, "cfg:sla", "{\"version\": 1}", 14);
    assert_int_equal (citydata_refresh (city, f->redis), -1);
    snap = citydata_acquire (city);
    assert_non_null (snap->policies);
    assert_int_equal (snap->sla_version, 1);
    citydata_release (city, &snap);
    citydata_destroy (&city);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_store_refresh_and_swap),
        cmocka_unit_test (test_bad_files_never_reach_redis),
        cmocka_unit_test (test_policies_and_calendar),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
