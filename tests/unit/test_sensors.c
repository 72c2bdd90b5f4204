/*  test_sensors.c — sensor types from JSON (errors name the field), event
    validation, the ticket a new fold opens (review below the threshold),
    and the counter merge; plus the pure parts of duplicates.h (the flag,
    the merge record, the KPI area). Folding itself needs Redis: see
    tests/integration/test_sensors.py. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "civicbus/duplicates.h"
#include "civicbus/pbutil.h"
#include "civicbus/sensors.h"

static const char s_config [] =
    "{\"types\": {\"illegal_parking\": {\"category\": \"urban.event.street.parking_motor\","
    " \"radius_m\": 30, \"window_s\": 1800, \"auto_accept_confidence\": 0.8, \"label\": \"违章停车\"}}}";

#define NOW 1796000400000LL     //  2026-11-30T09:00:00+08:00

static void
s_config_error (const char *json, const char *expect)
{
    char err [256] = "";
    sensor_config_t *c = sensor_config_new (json, strlen (json), err, sizeof err);
    assert_null (c);
    if (!strstr (err, expect))
        fail_msg ("error '%s' does not name '%s'", err, expect);
}

static void
test_config (void **state)
{
    (void) state;
    char err [256] = "";
    sensor_config_t *c = sensor_config_new (s_config, strlen (s_config), err, sizeof err);
    assert_non_null (c);
    assert_int_equal (sensor_config_count (c), 1);
    const sensor_type_t *t = sensor_config_type (c, "illegal_parking");
    assert_non_null (t);
    assert_int_equal (t->radius_m, 30);
    assert_int_equal (t->window_s, 1800);
    assert_int_equal (t->request_type, CIVICBUS__V1__REQUEST_TYPE__REPORT);
    assert_null (sensor_config_type (c, "fire"));
    sensor_config_destroy (&c);
    sensor_config_destroy (&c);
    assert_null (c);
    s_config_error ("{\"types\": {}}", "types");
    s_config_error ("{\"types\": {\"Bad-Name\": {}}}", "types.Bad-Name");
    s_config_error ("{\"types\": {\"a\": {\"category\": \"x\", \"radius_m\": 0, \"window_s\": 1,"
                    " \"auto_accept_confidence\": 0.5}}}", "types.a.radius_m");
    s_config_error ("{\"types\": {\"a\": {\"category\": \"x\", \"radius_m\": 5, \"window_s\": 1,"
                    " \"auto_accept_confidence\": 1.5}}}", "types.a.auto_accept_confidence");
    s_config_error ("{\"types\": {\"a\": {\"category\": \"x\", \"radius_m\": 5, \"window_s\": 1,"
                    " \"auto_accept_confidence\": 0.5, \"colour\": 1}}}", "types.a.colour");
    s_config_error ("{\"types\": {\"a\": {\"radius_m\": 5, \"window_s\": 1,"
                    " \"auto_accept_confidence\": 0.5}}}", "types.a.category");
    s_config_error ("[", "not JSON");
}

static int
s_parse (sensor_config_t *c, const char *json, sensor_event_t *ev, cb_error_t *err)
{
    json_t *item = json_loads (json, 0, NULL);
    assert_non_null (item);
    int rc = sensor_event_parse (c, item, NOW, ev, err);
    json_decref (item);
    return rc;
}

static void
test_events (void **state)
{
    (void) state;
    char errbuf [256];
    sensor_config_t *c = sensor_config_new (s_config, strlen (s_config), errbuf, sizeof errbuf);
    sensor_event_t ev;
    cb_error_t err;
    assert_int_equal (s_parse (c, "{\"type\": \"illegal_parking\", \"location\": {\"lat\": 31.98,"
                               " \"lon\": 118.7}, \"confidence\": 0.93, \"time\":"
                               " \"2026-11-30T08:59:00+08:00\", \"device_id\": \"cam-7\","
                               " \"image_url\": \"https://img.example/1.jpg\"}", &ev, &err), 0);
    assert_int_equal (ev.time_ms, NOW - 60000);
    assert_string_equal (ev.device_id, "cam-7");
    assert_string_equal (ev.image_url, "https://img.example/1.jpg");

    cb_ticket_t *t = sensor_ticket_new (&ev, "42");
    assert_non_null (t);
    assert_int_equal (t->source, CIVICBUS__V1__SOURCE__SOURCE_SENSOR);
    assert_string_equal (t->category, "urban.event.street.parking_motor");
    assert_string_equal (t->external_id, "sensor-fold:illegal_parking:42");
    assert_false (t->needs_review);
    assert_int_equal (t->sensor_fold->event_count, 1);
    assert_int_equal (t->n_attachment_urls, 1);
    assert_true (sensor_fold_merge_counts (t, 5, NOW - 120000, NOW));
    assert_int_equal (t->sensor_fold->event_count, 5);
    assert_int_equal (t->sensor_fold->first_seen_ms, NOW - 120000);
    assert_int_equal (t->sensor_fold->last_seen_ms, NOW);
    assert_false (sensor_fold_merge_counts (t, 3, NOW - 60000, NOW - 1));   //  never backwards
    civicbus__v1__ticket__free_unpacked (t, NULL);

    //  below the threshold: review
    ev.confidence = 0.5;
    t = sensor_ticket_new (&ev, "43");
    assert_true (t->needs_review);
    assert_true (t->review_required);
    assert_non_null (strstr (t->review_reason, "0.50"));
    civicbus__v1__ticket__free_unpacked (t, NULL);

    struct { const char *json, *code, *field; } bad [] = {
        { "[1]", "not_object", "" },
        { "{\"type\": \"fire\"}", "unknown_type", "type" },
        { "{\"type\": \"illegal_parking\", \"location\": {\"lat\": 95, \"lon\": 1}, "
          "\"confidence\": 1, \"time\": \"2026-11-30T08:59:00+08:00\", \"device_id\": \"d\"}",
          "bad_value", "location" },
        { "{\"type\": \"illegal_parking\", \"location\": {\"lat\": 31, \"lon\": 118}, "
          "\"confidence\": 1.2, \"time\": \"2026-11-30T08:59:00+08:00\", \"device_id\": \"d\"}",
          "bad_value", "confidence" },
        { "{\"type\": \"illegal_parking\", \"location\": {\"lat\": 31, \"lon\": 118}, "
          "\"confidence\": 1, \"time\": \"2026-11-30T09:10:00+08:00\", \"device_id\": \"d\"}",
          "bad_value", "time" },
        { "{\"type\": \"illegal_parking\", \"location\": {\"lat\": 31, \"lon\": 118}, "
          "\"confidence\": 1, \"time\": \"2026-11-20T09:00:00+08:00\", \"device_id\": \"d\"}",
          "too_old", "time" },
        { "{\"type\": \"illegal_parking\", \"location\": {\"lat\": 31, \"lon\": 118}, "
          "\"confidence\": 1, \"time\": \"2026-11-30T08:59:00+08:00\", \"device_id\": \"a b\"}",
          "bad_value", "device_id" },
        { "{\"type\": \"illegal_parking\", \"speed\": 3}", "unknown_field", "speed" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        assert_int_equal (s_parse (c, bad [i].json, &ev, &err), -1);
        assert_string_equal (err.code, bad [i].code);
        assert_string_equal (err.field, bad [i].field);
    }
    sensor_config_destroy (&c);
}

static cb_ticket_t *
s_person (const char *id, const char *phone)
{
    cb_ticket_t *t = calloc (1, sizeof *t);
    civicbus__v1__ticket__init (t);
    pb_set_string (&t->id, id);
    t->source = CIVICBUS__V1__SOURCE__SOURCE_APP;
    pb_set_string (&t->category, "urban.event.street.stall");
    t->location = calloc (1, sizeof *t->location);
    civicbus__v1__location__init (t->location);
    t->location->has_point = true;
    t->reporter = calloc (1, sizeof *t->reporter);
    civicbus__v1__reporter__init (t->reporter);
    pb_set_string (&t->reporter->phone, phone);
    return t;
}

static void
test_duplicate_parts (void **state)
{
    (void) state;
    cb_ticket_t *parent = s_person ("320105-20261130-000000001", "13800000001");
    cb_ticket_t *child = s_person ("320105-20261130-000000002", "13900000002");
    assert_true (dup_applies (child));
    child->source = CIVICBUS__V1__SOURCE__SOURCE_SENSOR;
    assert_false (dup_applies (child));
    child->source = CIVICBUS__V1__SOURCE__SOURCE_HOTLINE;

    cb_ticket_t *passing = s_person ("320105-20261130-000000003", "13900000003");
    assert_int_equal (dup_flag (passing, parent->id, 100, 172800, false), 0);
    assert_string_equal (passing->probable_duplicate_of, parent->id);
    assert_false (passing->needs_review || passing->review_required);
    civicbus__v1__ticket__free_unpacked (passing, NULL);
    assert_int_equal (dup_flag (child, parent->id, 100, 172800, true), 0);
    assert_string_equal (child->probable_duplicate_of, parent->id);
    assert_true (child->needs_review && child->review_required);
    assert_non_null (strstr (child->review_reason, "100 m and 48 h"));

    assert_int_equal (dup_merge_record (parent, child, NOW), 0);
    assert_int_equal (dup_merge_record (parent, child, NOW), 1);     //  once
    assert_int_equal (parent->n_merged_from, 1);
    assert_string_equal (parent->merged_from [0]->ticket_id, child->id);
    assert_string_equal (parent->merged_from [0]->reporter->phone, "13900000002");

    char area [64];
    dup_kpi_area (parent, area, sizeof area);
    assert_string_equal (area, "ungridded");
    pb_strv_push (&parent->location->n_grid_path, &parent->location->grid_path, "320105");
    pb_strv_push (&parent->location->n_grid_path, &parent->location->grid_path, "320105006");
    pb_strv_push (&parent->location->n_grid_path, &parent->location->grid_path, "320105006010");
    dup_kpi_area (parent, area, sizeof area);
    assert_string_equal (area, "320105006");

    dup_index_t *index = dup_index_new (100, 3600);
    int radius = 0, window = 0;
    dup_index_limits (index, &radius, &window);
    assert_int_equal (radius, 100);
    assert_int_equal (window, 3600);
    dup_index_destroy (&index);
    dup_index_destroy (&index);
    assert_null (dup_index_new (0, 10));
    civicbus__v1__ticket__free_unpacked (parent, NULL);
    civicbus__v1__ticket__free_unpacked (child, NULL);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_config),
        cmocka_unit_test (test_events),
        cmocka_unit_test (test_duplicate_parts),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
