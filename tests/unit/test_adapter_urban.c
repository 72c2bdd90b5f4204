/*  test_adapter_urban.c — the urban-management (城管) adapter's mapping
    (services/adapter-urban/mapping.c, compiled in here: it is not part of
    the library): the GB/T 30428 table of deploy/config/adapters/urban.json
    against the catalogue, the case body, and every feedback action, good
    and bad. */

#include "civicbus/adapter.h"
#include "../../services/adapter-urban/mapping.c"
#include "test_adapter_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static urban_tables_t *
s_urban (const char *json)
{
    cb_error_t err;
    return test_adapter_load (&urban_mapping, json, &err);
}

static const char *
s_load_error (const char *json)
{
    static char field [64];
    cb_error_t err;
    void *t = test_adapter_load (&urban_mapping, json, &err);
    assert_null (t);
    snprintf (field, sizeof field, "%s", err.field);
    return field;
}

/* ---- tests ---- */

//  Every catalogue category with gbt30428 data has an entry with the same
//  type, class and subclass names, so the urban system gets what the
//  catalogue says.
static void
test_table_agrees_with_the_catalogue (void **state)
{
    (void) state;
    json_t *config = test_adapter_config_file ("adapters/urban.json");
    cb_error_t err;
    cb_error_clear (&err);
    urban_tables_t *t = urban_mapping.load (config, &err);
    json_decref (config);
    assert_non_null (t);

    json_t *catalog = test_adapter_config_file ("catalog.json");
    size_t index, checked = 0;
    json_t *category;
    json_array_foreach (json_object_get (catalog, "categories"), index, category) {
        const json_t *g = json_object_get (category, "gbt30428");
        if (!g)
            continue;
        const char *code = json_string_value (json_object_get (category, "code"));
        urban_class_t c;
        urban_class_of (t, code, &c);
        assert_string_equal (c.type, json_string_value (json_object_get (g, "kind")));
        assert_string_equal (c.class_name, json_string_value (json_object_get (g, "class")));
        assert_string_equal (c.subclass_name, json_string_value (json_object_get (g, "subclass")));
        assert_int_equal (strlen (c.subclass_code), 4);
        assert_memory_equal (c.subclass_code, c.class_code, 2);
        checked++;
    }
    json_decref (catalog);
    assert_true (checked >= 28);

    urban_class_t c;
    urban_class_of (t, "urban.facility.public.manhole", &c);
    assert_string_equal (c.type, "facility");
    assert_string_equal (c.class_code, "01");
    assert_string_equal (c.subclass_code, "0101");
    urban_class_of (t, "urban.event.street.stall", &c);
    assert_string_equal (c.type, "event");
    assert_string_equal (c.class_code, "05");
    assert_string_equal (c.class_name, "街面秩序");
    //  A co-handled order of another department's category: the default.
    urban_class_of (t, "police.public_order.noise_night", &c);
    assert_string_equal (c.class_name, "其他");
    assert_string_equal (c.subclass_code, "0699");
    urban_class_of (t, NULL, &c);
    assert_string_equal (c.subclass_code, "0699");
    urban_mapping.unload (t);
}

static void
test_defaults_and_bad_files (void **state)
{
    (void) state;
    urban_tables_t *t = s_urban (NULL);
    assert_non_null (t);
    urban_class_t c;
    urban_class_of (t, "urban.facility.public.manhole", &c);
    assert_string_equal (c.type, "event");
    assert_string_equal (c.subclass_name, "其他事件");
    urban_mapping.unload (t);

    //  A city's own class codes.
    t = s_urban ("{\"classes\": {\"facility\": {\"公用设施\": \"11\"}}, \"categories\": "
                 "{\"x.y\": {\"type\": \"facility\", \"class\": \"公用设施\", "
                 "\"subclass\": \"井盖\", \"subclass_code\": \"1107\"}}}");
    assert_non_null (t);
    urban_class_of (t, "x.y", &c);
    assert_string_equal (c.class_code, "11");
    assert_string_equal (c.subclass_code, "1107");
    urban_mapping.unload (t);

    assert_string_equal (s_load_error ("[]"), "");
    assert_string_equal (s_load_error ("{\"classes\": {\"thing\": {}}}"), "classes");
    assert_string_equal (s_load_error ("{\"classes\": {\"event\": {\"街面秩序\": \"5\"}}}"),
                         "classes");
    assert_string_equal (s_load_error ("{\"categories\": []}"), "categories");
    assert_string_equal (s_load_error ("{\"categories\": {\"a\": {\"type\": \"event\", "
                                       "\"class\": \"公用设施\", \"subclass\": \"x\", "
                                       "\"subclass_code\": \"0101\"}}}"), "categories.a");
    assert_string_equal (s_load_error ("{\"categories\": {\"a\": {\"type\": \"event\", "
                                       "\"class\": \"街面秩序\", \"subclass\": \"x\", "
                                       "\"subclass_code\": \"0101\"}}}"), "categories.a");
    assert_string_equal (s_load_error ("{\"categories\": {\"a\": {\"type\": \"event\", "
                                       "\"class\": \"街面秩序\", \"subclass\": \"\", "
                                       "\"subclass_code\": \"0501\"}}}"), "categories.a");
    assert_string_equal (s_load_error ("{\"default\": {\"type\": \"both\"}}"), "default");
}

static void
test_case_carries_codes_grid_and_location (void **state)
{
    (void) state;
    json_t *config = test_adapter_config_file ("adapters/urban.json");
    cb_error_t err;
    urban_tables_t *t = urban_mapping.load (config, &err);
    json_decref (config);
    assert_non_null (t);

    char *path [] = { "320105", "320105001", "320105001001", "320105001001001" };
    Civicbus__V1__Location where = CIVICBUS__V1__LOCATION__INIT;
    where.has_point = true;
    where.lat = 32.02;
    where.lon = 118.73;
    where.address = (char *) "江东中路100号";
    where.grid_code = path [3];
    where.grid_path = path;
    where.n_grid_path = 4;
    Civicbus__V1__Reporter reporter = CIVICBUS__V1__REPORTER__INIT;
    reporter.name = (char *) "张*";
    reporter.phone = (char *) "138****5678";
    char *photos [] = { "https://x/1.jpg" };
    Civicbus__V1__Ticket ticket = CIVICBUS__V1__TICKET__INIT;
    ticket.id = (char *) "320105-20261129-000000064";
    ticket.category = (char *) "urban.facility.public.manhole";
    ticket.description = (char *) "井盖缺失，很危险";
    ticket.source = CIVICBUS__V1__SOURCE__SOURCE_GRID_WORKER;
    ticket.request_type = CIVICBUS__V1__REQUEST_TYPE__REPORT;
    ticket.location = &where;
    ticket.reporter = &reporter;
    ticket.attachment_urls = photos;
    ticket.n_attachment_urls = 1;
    ticket.created_ms = 1795000000000;
    Civicbus__V1__DispatchOrder order = CIVICBUS__V1__DISPATCH_ORDER__INIT;
    order.dispatch_id = (char *) "320105-20261129-000000064/urban/2";
    order.attempt = 1;
    order.primary = false;
    order.ticket = &ticket;
    order.resolve_due_ms = 1795000000000 + 4 * 3600000;
    json_t *body = test_adapter_order_body (&urban_mapping, t, &order);
    assert_string_equal (json_string_value (json_object_get (body, "case_key")), order.dispatch_id);
    assert_string_equal (json_string_value (json_object_get (body, "case_no")), ticket.id);
    assert_string_equal (json_string_value (json_object_get (body, "role")), "assist");
    const json_t *g = json_object_get (body, "gbt30428");
    assert_string_equal (json_string_value (json_object_get (g, "type")), "facility");
    assert_string_equal (json_string_value (json_object_get (g, "type_name")), "部件");
    assert_string_equal (json_string_value (json_object_get (g, "class_code")), "01");
    assert_string_equal (json_string_value (json_object_get (g, "class_name")), "公用设施");
    assert_string_equal (json_string_value (json_object_get (g, "subclass_code")), "0101");
    assert_string_equal (json_string_value (json_object_get (g, "subclass_name")), "井盖破损");
    assert_string_equal (json_string_value (json_object_get (body, "grid_code")), path [3]);
    assert_int_equal (json_array_size (json_object_get (body, "grid_path")), 4);
    const json_t *loc = json_object_get (body, "location");
    assert_true (json_real_value (json_object_get (loc, "lng")) == 118.73);
    assert_true (json_real_value (json_object_get (loc, "lat")) == 32.02);
    assert_string_equal (json_string_value (json_object_get (loc, "address")), "江东中路100号");
    assert_string_equal (json_string_value (json_object_get (body, "source")), "grid_worker");
    assert_string_equal (json_string_value (json_object_get (body, "request_type")), "report");
    assert_string_equal (json_string_value (json_object_get (body, "sign_deadline")), "");
    assert_true (strlen (json_string_value (json_object_get (body, "handle_deadline"))) > 10);
    assert_int_equal (json_array_size (json_object_get (body, "photos")), 1);
    //  The urban system is never given the reporter.
    assert_null (json_object_get (body, "reporter"));
    char *dumped = json_dumps (body, 0);
    assert_non_null (dumped);
    assert_null (strstr (dumped, "5678"));
    assert_null (strstr (dumped, "张"));
    free (dumped);
    json_decref (body);

    //  Without a point: no lng/lat, still a case.
    where.has_point = false;
    body = test_adapter_order_body (&urban_mapping, t, &order);
    assert_null (json_object_get (json_object_get (body, "location"), "lng"));
    json_decref (body);

    order.ticket = NULL;
    test_adapter_refuses_order (&urban_mapping, t, &order);
    urban_mapping.unload (t);
}

static int
s_answer_of (const char *text, cb_dept_answer_t *answer, cb_error_t *err, json_t **keep)
{
    return test_adapter_answer_of (&urban_mapping, text, answer, err, keep);
}

static void
test_feedback_becomes_replies (void **state)
{
    (void) state;
    static const cb_adapter_word_t actions [] = {
        { "sign", CIVICBUS__V1__REPLY_KIND__REPLY_SIGN },
        { "签收", CIVICBUS__V1__REPLY_KIND__REPLY_SIGN },
        { "return", CIVICBUS__V1__REPLY_KIND__REPLY_RETURN },
        { "退回", CIVICBUS__V1__REPLY_KIND__REPLY_RETURN },
        { "hang", CIVICBUS__V1__REPLY_KIND__REPLY_SUSPEND },
        { "挂账", CIVICBUS__V1__REPLY_KIND__REPLY_SUSPEND },
        { "progress", CIVICBUS__V1__REPLY_KIND__REPLY_PROGRESS },
        { "进展", CIVICBUS__V1__REPLY_KIND__REPLY_PROGRESS },
        { "finish", CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE },
        { "办结", CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE },
    };
    cb_dept_answer_t a;
    cb_error_t err;
    json_t *body;
    for (size_t i = 0; i < sizeof actions / sizeof actions [0]; i++) {
        char text [256];
        snprintf (text, sizeof text, "{\"case_key\": \"T/urban/2\", \"action\": \"%s\", "
                  "\"opinion\": \"意见\", \"feedback_id\": \"FB-%zu\"}", actions [i].word, i);
        assert_int_equal (s_answer_of (text, &a, &err, &body), 0);
        assert_int_equal (a.kind, actions [i].kind);
        assert_string_equal (a.dispatch_id, "T/urban/2");
        assert_string_equal (a.text, "意见");
        assert_non_null (a.answer_id);
        json_decref (body);
    }
    assert_int_equal (s_answer_of ("{\"case_key\": \"T/urban/2\", \"action\": \"延期\", "
                                   "\"opinion\": \"需协调\", \"delay_days\": 7, \"handler\": \"李队\", "
                                   "\"time\": \"2026-11-29T10:00:00+08:00\"}", &a, &err, &body), 0);
    assert_int_equal (a.kind, CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION);
    assert_int_equal (a.extension_days, 7);
    assert_string_equal (a.staff_name, "李队");
    assert_true (a.time_ms > 0);
    json_decref (body);
    assert_int_equal (s_answer_of ("{\"case_key\": \"T/urban/2\", \"action\": \"sign\", "
                                   "\"images\": [\"https://x/1.jpg\", \"https://x/2.jpg\"], "
                                   "\"time\": 1234}", &a, &err, &body), 0);
    assert_int_equal (a.n_attachment_urls, 2);
    assert_int_equal (a.time_ms, 1234);
    assert_null (a.text);
    json_decref (body);

    static const test_adapter_bad_answer_t bad [] = {
        { "{\"action\": \"sign\"}", "case_key" },
        { "{\"case_key\": \"T/u/1\"}", "action" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"done\"}", "action" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"return\"}", "opinion" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"finish\", \"opinion\": \"\"}", "opinion" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"delay\", \"opinion\": \"x\"}", "delay_days" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"delay\", \"opinion\": \"x\", \"delay_days\": 0}",
          "delay_days" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"delay\", \"opinion\": \"x\", \"delay_days\": 61}",
          "delay_days" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"sign\", \"delay_days\": \"3\"}", "delay_days" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"sign\", \"images\": \"x\"}", "images" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"sign\", \"images\": [1]}", "images" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"sign\", \"time\": \"yesterday\"}", "time" },
        { "{\"case_key\": \"T/u/1\", \"action\": \"sign\", \"time\": true}", "time" },
    };
    test_adapter_refuses_answers (&urban_mapping, bad, sizeof bad / sizeof bad [0]);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_table_agrees_with_the_catalogue),
        cmocka_unit_test (test_defaults_and_bad_files),
        cmocka_unit_test (test_case_carries_codes_grid_and_location),
        cmocka_unit_test (test_feedback_becomes_replies),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
