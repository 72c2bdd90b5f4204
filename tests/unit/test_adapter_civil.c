/*  test_adapter_civil.c — the civil-affairs (民政) adapter's mapping
    (services/adapter-civil/mapping.c, compiled in here): service types
    from deploy/config/adapters/civil.json, the case body (a callback
    number, never the reporter's name, also not inside the description),
    and every event, good and bad. */

#include "civicbus/adapter.h"
#include "../../services/adapter-civil/mapping.c"
#include "test_adapter_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static civil_tables_t *
s_civil (const char *json, cb_error_t *err)
{
    return test_adapter_load (&civil_mapping, json, err);
}

static civil_tables_t *
s_civil_file (void)
{
    json_t *config = test_adapter_config_file ("adapters/civil.json");
    cb_error_t err;
    civil_tables_t *t = civil_mapping.load (config, &err);
    json_decref (config);
    assert_non_null (t);
    return t;
}

//  The case body for a ticket with this reporter and description.
static json_t *
s_case (civil_tables_t *t, const char *name, const char *phone, const char *description)
{
    Civicbus__V1__Reporter reporter = CIVICBUS__V1__REPORTER__INIT;
    reporter.name = (char *) name;
    reporter.phone = (char *) phone;
    char *path [] = { "320105", "320105002", "320105002005", "320105002005003" };
    Civicbus__V1__Location where = CIVICBUS__V1__LOCATION__INIT;
    where.grid_code = path [3];
    where.grid_path = path;
    where.n_grid_path = 4;
    where.has_point = true;
    where.lat = 32.01;
    where.lon = 118.71;
    Civicbus__V1__Ticket ticket = CIVICBUS__V1__TICKET__INIT;
    ticket.id = (char *) "320105-20261129-000000128";
    ticket.category = (char *) "civil.assistance.subsistence";
    ticket.request_type = CIVICBUS__V1__REQUEST_TYPE__HELP;
    ticket.description = (char *) description;
    ticket.location = &where;
    ticket.reporter = name || phone ? &reporter : NULL;
    Civicbus__V1__DispatchOrder order = CIVICBUS__V1__DISPATCH_ORDER__INIT;
    order.dispatch_id = (char *) "320105-20261129-000000128/civil/2";
    order.attempt = 3;
    order.primary = true;
    order.ticket = &ticket;
    order.sign_due_ms = 1795000000000;
    return test_adapter_order_body (&civil_mapping, t, &order);
}

/* ---- tests ---- */

static void
test_service_types (void **state)
{
    (void) state;
    civil_tables_t *t = s_civil_file ();
    const char *name;
    assert_string_equal (civil_service_type (t, "civil.assistance.subsistence", &name),
                         "SUBSISTENCE");
    assert_string_equal (name, "最低生活保障");
    //  The longest dotted prefix.
    assert_string_equal (civil_service_type (t, "civil.assistance.temporary", NULL),
                         "SOCIAL_ASSISTANCE");
    assert_string_equal (civil_service_type (t, "civil.elderly.care", NULL), "ELDERLY_CARE");
    //  A prefix matches at a dot only.
    assert_string_equal (civil_service_type (t, "civil.elderlyx", NULL), "GENERAL");
    assert_string_equal (civil_service_type (t, "general.other", &name), "GENERAL");
    assert_string_equal (name, "综合民政事务");
    assert_string_equal (civil_service_type (t, NULL, NULL), "GENERAL");
    civil_mapping.unload (t);

    cb_error_t err;
    t = s_civil (NULL, &err);
    assert_non_null (t);
    assert_string_equal (civil_service_type (t, "civil.elderly.care", NULL), "GENERAL");
    civil_mapping.unload (t);

    assert_null (s_civil ("[]", &err));
    assert_null (s_civil ("{\"service_types\": []}", &err));
    assert_string_equal (err.field, "service_types");
    assert_null (s_civil ("{\"service_types\": {\"civil\": {\"code\": \"X\"}}}", &err));
    assert_string_equal (err.field, "service_types.civil");
    assert_null (s_civil ("{\"default\": {\"code\": \"\", \"name\": \"x\"}}", &err));
    assert_string_equal (err.field, "default");
}

static void
test_case_has_callback_number_and_no_name (void **state)
{
    (void) state;
    civil_tables_t *t = s_civil_file ();
    json_t *body = s_case (t, "张三丰", "13812345678",
                           "张三丰老人独居，生活困难，邻居电话13987654321");
    assert_string_equal (json_string_value (json_object_get (body, "request_no")),
                         "320105-20261129-000000128/civil/2");
    assert_string_equal (json_string_value (json_object_get (body, "ticket_no")),
                         "320105-20261129-000000128");
    assert_int_equal (json_integer_value (json_object_get (body, "attempt")), 3);
    assert_string_equal (json_string_value (json_object_get (body, "service_type")), "SUBSISTENCE");
    assert_string_equal (json_string_value (json_object_get (body, "request_type")), "help");
    assert_true (json_is_true (json_object_get (body, "lead")));
    const json_t *callback = json_object_get (body, "callback");
    assert_true (json_is_true (json_object_get (callback, "available")));
    assert_string_equal (json_string_value (json_object_get (callback, "phone")), "13812345678");
    //  The name nowhere; another number in the text masked.
    assert_string_equal (json_string_value (json_object_get (body, "summary")),
                         "张**老人独居，生活困难，邻居电话139****4321");
    char *dumped = json_dumps (body, 0);
    assert_non_null (dumped);
    assert_null (strstr (dumped, "张三丰"));
    assert_null (strstr (dumped, "\"name\""));
    free (dumped);
    const json_t *area = json_object_get (body, "area");
    assert_string_equal (json_string_value (json_object_get (area, "street_code")), "320105002");
    assert_string_equal (json_string_value (json_object_get (area, "community_code")),
                         "320105002005");
    assert_string_equal (json_string_value (json_object_get (area, "grid_code")),
                         "320105002005003");
    assert_true (strlen (json_string_value (json_object_get (body, "sign_by"))) > 10);
    json_decref (body);

    //  A masked phone is no callback number; no reporter is anonymous.
    body = s_case (t, "张*", "138****5678", "独居老人需要帮助");
    callback = json_object_get (body, "callback");
    assert_true (json_is_false (json_object_get (callback, "available")));
    assert_string_equal (json_string_value (json_object_get (callback, "reason")), "masked");
    assert_null (json_object_get (callback, "phone"));
    json_decref (body);
    body = s_case (t, NULL, NULL, "独居老人需要帮助");
    callback = json_object_get (body, "callback");
    assert_string_equal (json_string_value (json_object_get (callback, "reason")), "anonymous");
    json_decref (body);
    //  A one-character name is not searched for in the text.
    body = s_case (t, "李", "010-12345678", "李子树倒了");
    assert_string_equal (json_string_value (json_object_get (body, "summary")), "李子树倒了");
    assert_string_equal (json_string_value (json_object_get (json_object_get (body, "callback"),
                                                             "phone")), "010-12345678");
    json_decref (body);

    Civicbus__V1__DispatchOrder order = CIVICBUS__V1__DISPATCH_ORDER__INIT;
    order.dispatch_id = (char *) "x/civil/1";
    test_adapter_refuses_order (&civil_mapping, t, &order);
    civil_mapping.unload (t);
}

static int
s_answer_of (const char *text, cb_dept_answer_t *answer, cb_error_t *err, json_t **keep)
{
    return test_adapter_answer_of (&civil_mapping, text, answer, err, keep);
}

static void
test_events_become_replies (void **state)
{
    (void) state;
    static const cb_adapter_word_t events [] = {
        { "ACCEPT", CIVICBUS__V1__REPLY_KIND__REPLY_SIGN },
        { "RETURN", CIVICBUS__V1__REPLY_KIND__REPLY_RETURN },
        { "SUSPEND", CIVICBUS__V1__REPLY_KIND__REPLY_SUSPEND },
        { "VISIT", CIVICBUS__V1__REPLY_KIND__REPLY_PROGRESS },
        { "COMPLETE", CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE },
    };
    cb_dept_answer_t a;
    cb_error_t err;
    json_t *body;
    for (size_t i = 0; i < sizeof events / sizeof events [0]; i++) {
        char text [256];
        snprintf (text, sizeof text, "{\"request_no\": \"T/civil/2\", \"event\": \"%s\", "
                  "\"remark\": \"已处理\", \"event_id\": \"CE-%zu\", \"worker\": \"社工小王\"}",
                  events [i].word, i);
        assert_int_equal (s_answer_of (text, &a, &err, &body), 0);
        assert_int_equal (a.kind, events [i].kind);
        assert_string_equal (a.dispatch_id, "T/civil/2");
        assert_string_equal (a.staff_name, "社工小王");
        json_decref (body);
    }
    assert_int_equal (s_answer_of ("{\"request_no\": \"T/civil/2\", \"event\": \"EXTEND\", "
                                   "\"remark\": \"需入户核查\", \"extend_days\": 10, "
                                   "\"files\": [\"https://x/a.pdf\"], "
                                   "\"occurred_at\": \"2026-11-29T10:00:00+08:00\"}",
                                   &a, &err, &body), 0);
    assert_int_equal (a.kind, CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION);
    assert_int_equal (a.extension_days, 10);
    assert_int_equal (a.n_attachment_urls, 1);
    assert_true (a.time_ms > 0);
    json_decref (body);

    static const test_adapter_bad_answer_t bad [] = {
        { "{\"event\": \"ACCEPT\"}", "request_no" },
        { "{\"request_no\": \"T/c/1\"}", "event" },
        { "{\"request_no\": \"T/c/1\", \"event\": \"accept\"}", "event" },
        { "{\"request_no\": \"T/c/1\", \"event\": \"COMPLETE\"}", "remark" },
        { "{\"request_no\": \"T/c/1\", \"event\": \"EXTEND\", \"remark\": \"x\"}", "extend_days" },
        { "{\"request_no\": \"T/c/1\", \"event\": \"EXTEND\", \"remark\": \"x\", "
          "\"extend_days\": 31}", "extend_days" },
        { "{\"request_no\": \"T/c/1\", \"event\": \"ACCEPT\", \"files\": {}}", "files" },
        { "{\"request_no\": \"T/c/1\", \"event\": \"ACCEPT\", \"occurred_at\": \"soon\"}",
          "occurred_at" },
    };
    test_adapter_refuses_answers (&civil_mapping, bad, sizeof bad / sizeof bad [0]);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_service_types),
        cmocka_unit_test (test_case_has_callback_number_and_no_name),
        cmocka_unit_test (test_events_become_replies),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
