/*  test_notify_rules.c — who hears what: every event type against one
    configuration (reporter SMS, hotline push-back, department reminders,
    supervisors by level and area, webhook filters, unknown events), the
    Chinese texts, deterministic delivery ids, masking of personal data, and
    configuration errors that name the field. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/notify_rules.h"
#include "civicbus/pbutil.h"

static const char s_config [] =
    "{\"hotline\": {\"url\": \"http://127.0.0.1:9/cb\", \"secret\": \"hs\"},"
    " \"sms\": {\"url\": \"http://127.0.0.1:9/sms\", \"token\": \"t\"},"
    " \"smtp\": {\"url\": \"smtp://127.0.0.1:25\", \"from\": \"cb@city.example\"},"
    " \"departments\": {\"urban\": {\"name\": \"城管局\", \"email\": \"urban@city.example\"}},"
    " \"supervisors\": ["
    "   {\"name\": \"grid boss\", \"level\": 1, \"area\": \"320105001\", \"email\": \"g1@city.example\"},"
    "   {\"name\": \"street boss\", \"level\": 2, \"area\": \"320105\", \"phone\": \"13900000002\"},"
    "   {\"name\": \"other area\", \"level\": 1, \"area\": \"320106\", \"email\": \"x@city.example\"},"
    "   {\"name\": \"watch all\", \"level\": 0, \"email\": \"all@city.example\"}],"
    " \"webhooks\": ["
    "   {\"name\": \"all\", \"url\": \"http://127.0.0.1:9/a\", \"secret\": \"s1\"},"
    "   {\"name\": \"resolves\", \"url\": \"http://127.0.0.1:9/r\", \"secret\": \"s2\","
    "    \"events\": [\"resolve\", \"verify\"]},"
    "   {\"name\": \"police\", \"url\": \"http://127.0.0.1:9/p\", \"secret\": \"s3\","
    "    \"departments\": [\"police\"]},"
    "   {\"name\": \"area\", \"url\": \"http://127.0.0.1:9/x\", \"secret\": \"s4\","
    "    \"events\": [\"dispatch\"], \"areas\": [\"320105001\"]}],"
    " \"templates\": {\"hotline\": {\"resolve\": \"办结：{resolution}\"}}}";

typedef struct {
    notify_rules_t *rules;
    cb_ticket_t *ticket;
    cb_event_t *events [8];
    size_t n_events;
    notify_plan_t plan;
} fixture_t;

static int
s_setup (void **state)
{
    fixture_t *f = calloc (1, sizeof *f);
    char err [256] = "";
    f->rules = notify_rules_new (s_config, strlen (s_config), err, sizeof err);
    if (!f->rules) {
        fprintf (stderr, "config: %s\n", err);
        return -1;
    }
    cb_ticket_t *t = calloc (1, sizeof *t);
    civicbus__v1__ticket__init (t);
    pb_set_string (&t->id, "320105-20261129-000000071");
    t->source = CIVICBUS__V1__SOURCE__SOURCE_HOTLINE;
    pb_set_string (&t->external_id, "HL-2026-0001");
    pb_set_string (&t->category, "city.litter");
    pb_set_string (&t->description, "垃圾没人清理，请回电13812345678");
    pb_set_string (&t->department, "urban");
    t->state = CIVICBUS__V1__TICKET_STATE__IN_PROGRESS;
    t->location = calloc (1, sizeof *t->location);
    civicbus__v1__location__init (t->location);
    pb_set_string (&t->location->grid_code, "32010500101");
    pb_strv_push (&t->location->n_grid_path, &t->location->grid_path, "320105");
    pb_strv_push (&t->location->n_grid_path, &t->location->grid_path, "320105001");
    pb_strv_push (&t->location->n_grid_path, &t->location->grid_path, "32010500101");
    t->reporter = calloc (1, sizeof *t->reporter);
    civicbus__v1__reporter__init (t->reporter);
    pb_set_string (&t->reporter->name, "张三");
    pb_set_string (&t->reporter->phone, "13812345678");
    f->ticket = t;
    *state = f;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *f = *state;
    notify_plan_reset (&f->plan);
    for (size_t i = 0; i < f->n_events; i++)
        civicbus__v1__ticket_event__free_unpacked (f->events [i], NULL);
    civicbus__v1__ticket__free_unpacked (f->ticket, NULL);
    notify_rules_destroy (&f->rules);
    notify_rules_destroy (&f->rules);       //  safe twice
    free (f);
    return 0;
}

//  Appends an event to the fixture's history.
static cb_event_t *
s_event (fixture_t *f, const char *type, int from, int to, const char *note, const char *payload)
{
    cb_event_t *ev = calloc (1, sizeof *ev);
    civicbus__v1__ticket_event__init (ev);
    pb_set_string (&ev->ticket_id, f->ticket->id);
    ev->sequence = (int32_t) f->n_events + 1;
    pb_set_string (&ev->type, type);
    ev->from_state = from;
    ev->to_state = to;
    ev->time_ms = 1790755200000LL;
    pb_set_string (&ev->note, note ? note : "");
    if (payload) {
        ev->payload.data = (uint8_t *) strdup (payload);
        ev->payload.len = strlen (payload);
    }
    f->events [f->n_events++] = ev;
    return ev;
}

//  Decides the last event; returns the number of deliveries.
static int
s_decide (fixture_t *f)
{
    notify_plan_reset (&f->plan);
    return notify_rules_decide (f->rules, f->ticket, f->events, f->n_events, f->n_events - 1,
                                &f->plan);
}

static const notify_delivery_t *
s_find (const fixture_t *f, notify_channel_t channel, const char *recipient)
{
    for (size_t i = 0; i < f->plan.count; i++)
        if (f->plan.items [i].channel == channel
        &&  strcmp (f->plan.items [i].recipient, recipient) == 0)
            return &f->plan.items [i];
    return NULL;
}

static void
s_assert_no_full_phone (const fixture_t *f)
{
    for (size_t i = 0; i < f->plan.count; i++) {
        const notify_delivery_t *d = &f->plan.items [i];
        if (d->channel == NOTIFY_SMS && strcmp (d->recipient, "13812345678") == 0)
            continue;           //  the reporter's own SMS
        assert_null (strstr (d->body, "13812345678"));
        assert_null (strstr (d->recipient, "13812345678"));
    }
}

enum { RECEIVED = 1, ACCEPTED, DISPATCHED, IN_PROGRESS, RESOLVED, CLOSED, REJECTED };

static void
test_accept_tells_reporter_hotline_and_all_webhook (void **state)
{
    fixture_t *f = *state;
    s_event (f, "accept", RECEIVED, ACCEPTED, NULL, NULL);
    assert_int_equal (s_decide (f), 3);
    const notify_delivery_t *sms = s_find (f, NOTIFY_SMS, "13812345678");
    assert_non_null (sms);
    assert_non_null (strstr (sms->body, "已受理"));
    assert_non_null (strstr (sms->body, "320105-20261129-000000071"));
    assert_string_equal (sms->template_name, "sms.accept");
    assert_string_equal (sms->did, "320105-20261129-000000071#1#sms#a3e82b2f");   //  FNV-1a
    assert_non_null (s_find (f, NOTIFY_HOTLINE, "12345"));
    assert_non_null (s_find (f, NOTIFY_WEBHOOK, "all"));
    s_assert_no_full_phone (f);
}

static void
test_delivery_ids_are_deterministic (void **state)
{
    (void) state;
    char a [NOTIFY_DID_MAX], b [NOTIFY_DID_MAX], c [NOTIFY_DID_MAX];
    notify_delivery_id (a, sizeof a, "320105-20261129-000000071", 4, NOTIFY_SMS, "13812345678");
    notify_delivery_id (b, sizeof b, "320105-20261129-000000071", 4, NOTIFY_SMS, "13812345678");
    notify_delivery_id (c, sizeof c, "320105-20261129-000000071", 4, NOTIFY_SMS, "13812345679");
    assert_string_equal (a, b);
    assert_string_not_equal (a, c);
    assert_int_equal (strncmp (a, "320105-20261129-000000071#4#sms#", 32), 0);
    assert_int_equal (strlen (a), 32 + 8);
    assert_null (strstr (a, "1381234"));        //  the phone is hashed, not shown
}

static void
test_reject_gives_reason_in_chinese (void **state)
{
    fixture_t *f = *state;
    pb_set_string (&f->ticket->reject_reason, "不属于受理范围");
    s_event (f, "reject", RECEIVED, REJECTED, "不属于受理范围", NULL);
    s_decide (f);
    const notify_delivery_t *sms = s_find (f, NOTIFY_SMS, "13812345678");
    assert_non_null (sms);
    assert_non_null (strstr (sms->body, "不予受理"));
    assert_non_null (strstr (sms->body, "不属于受理范围"));
    const notify_delivery_t *hl = s_find (f, NOTIFY_HOTLINE, "12345");
    assert_non_null (hl);
    assert_non_null (strstr (hl->body, "\"reason\""));
}

static void
test_dispatch_tells_hotline_with_department (void **state)
{
    fixture_t *f = *state;
    s_event (f, "dispatch", ACCEPTED, DISPATCHED, NULL,
             "{\"department\":\"urban\",\"policy\":\"p\"}");
    s_decide (f);
    assert_null (s_find (f, NOTIFY_SMS, "13812345678"));       //  not a reporter event
    const notify_delivery_t *hl = s_find (f, NOTIFY_HOTLINE, "12345");
    assert_non_null (hl);
    assert_non_null (strstr (hl->body, "\"department\":\"urban\""));
    assert_non_null (strstr (hl->body, "城管局"));
    assert_non_null (strstr (hl->body, "\"hotline_ticket_id\":\"HL-2026-0001\""));
    assert_non_null (strstr (hl->body, "\"sequence\":1"));
    assert_non_null (s_find (f, NOTIFY_WEBHOOK, "area"));      //  dispatch + area filter
    assert_null (s_find (f, NOTIFY_WEBHOOK, "resolves"));
    assert_null (s_find (f, NOTIFY_WEBHOOK, "police"));        //  another department
}

static void
test_resolve_and_verify (void **state)
{
    fixture_t *f = *state;
    pb_set_string (&f->ticket->resolution, "已清理完毕");
    s_event (f, "resolve", IN_PROGRESS, RESOLVED, "已清理完毕", NULL);
    s_decide (f);
    const notify_delivery_t *sms = s_find (f, NOTIFY_SMS, "13812345678");
    assert_non_null (sms);
    assert_non_null (strstr (sms->body, "城管局办结：已清理完毕"));
    const notify_delivery_t *hl = s_find (f, NOTIFY_HOTLINE, "12345");
    assert_non_null (strstr (hl->body, "办结：已清理完毕"));      //  configured template
    assert_non_null (s_find (f, NOTIFY_WEBHOOK, "resolves"));

    s_event (f, "verify", RESOLVED, CLOSED, NULL, NULL);
    s_decide (f);
    sms = s_find (f, NOTIFY_SMS, "13812345678");
    assert_non_null (sms);
    assert_non_null (strstr (sms->body, "结案"));
    assert_non_null (strstr (sms->body, "满意"));                 //  the follow-up question
    assert_non_null (s_find (f, NOTIFY_HOTLINE, "12345"));
}

//  Issue 6: reporters of merged tickets (并单) hear the parent's outcome,
//  and nothing else; their phones appear in no other delivery.
static void
test_merged_reporters_hear_the_outcome (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = f->ticket;
    const char *phones [] = { "13900001111", "13812345678", "" };
    t->merged_from = calloc (3, sizeof *t->merged_from);
    for (size_t i = 0; i < 3; i++) {
        Civicbus__V1__MergedReport *m = calloc (1, sizeof *m);
        civicbus__v1__merged_report__init (m);
        pb_set_string (&m->ticket_id, "320105-20261129-000000135");
        m->reporter = calloc (1, sizeof *m->reporter);
        civicbus__v1__reporter__init (m->reporter);
        pb_set_string (&m->reporter->phone, phones [i]);
        t->merged_from [t->n_merged_from++] = m;
    }
    s_event (f, "accept", RECEIVED, ACCEPTED, NULL, NULL);
    s_decide (f);
    assert_null (s_find (f, NOTIFY_SMS, "13900001111"));
    pb_set_string (&t->resolution, "已清理完毕");
    s_event (f, "resolve", IN_PROGRESS, RESOLVED, "已清理完毕", NULL);
    s_decide (f);
    const notify_delivery_t *merged = s_find (f, NOTIFY_SMS, "13900001111");
    assert_non_null (merged);
    assert_non_null (strstr (merged->body, "已清理完毕"));
    //  the parent's reporter once (the same phone merged in is not told twice)
    size_t to_parent = 0;
    for (size_t i = 0; i < f->plan.count; i++)
        if (f->plan.items [i].channel == NOTIFY_SMS
        &&  strcmp (f->plan.items [i].recipient, "13812345678") == 0)
            to_parent++;
    assert_int_equal (to_parent, 1);
    for (size_t i = 0; i < f->plan.count; i++)
        if (f->plan.items [i].channel != NOTIFY_SMS)
            assert_null (strstr (f->plan.items [i].body, "13900001111"));
    s_event (f, "verify", RESOLVED, CLOSED, NULL, NULL);
    s_decide (f);
    assert_non_null (s_find (f, NOTIFY_SMS, "13900001111"));
}

static void
test_co_handler_resolve_is_not_for_reporter (void **state)
{
    fixture_t *f = *state;
    s_event (f, "resolve", IN_PROGRESS, IN_PROGRESS, "协办部分已完成", NULL);
    s_decide (f);
    assert_null (s_find (f, NOTIFY_SMS, "13812345678"));
    assert_non_null (s_find (f, NOTIFY_HOTLINE, "12345"));       //  a department reply
}

static void
test_department_hears_reminders (void **state)
{
    fixture_t *f = *state;
    const char *types [] = { "urge", "warning" };
    for (size_t i = 0; i < 2; i++) {
        s_event (f, types [i], IN_PROGRESS, IN_PROGRESS, NULL, NULL);
        s_decide (f);
        const notify_delivery_t *mail = s_find (f, NOTIFY_EMAIL, "urban@city.example");
        assert_non_null (mail);
        assert_non_null (strstr (mail->subject, "320105-20261129-000000071"));
        assert_null (s_find (f, NOTIFY_SMS, "13812345678"));
        assert_null (s_find (f, NOTIFY_HOTLINE, "12345"));
        assert_null (s_find (f, NOTIFY_EMAIL, "g1@city.example"));
    }
}

static void
test_supervisors_by_level_and_area (void **state)
{
    fixture_t *f = *state;
    s_event (f, "overdue", IN_PROGRESS, IN_PROGRESS, NULL, NULL);
    s_decide (f);                     //  overdue at level 0 goes to level 1
    assert_non_null (s_find (f, NOTIFY_EMAIL, "g1@city.example"));
    assert_non_null (s_find (f, NOTIFY_EMAIL, "all@city.example"));
    assert_null (s_find (f, NOTIFY_EMAIL, "x@city.example"));    //  other area
    assert_null (s_find (f, NOTIFY_SMS, "13900000002"));         //  level 2
    assert_null (s_find (f, NOTIFY_EMAIL, "urban@city.example"));

    s_event (f, "escalate", IN_PROGRESS, IN_PROGRESS, NULL, NULL);
    s_decide (f);                     //  first escalation: level 1
    assert_non_null (s_find (f, NOTIFY_EMAIL, "g1@city.example"));
    assert_null (s_find (f, NOTIFY_SMS, "13900000002"));
    s_event (f, "escalate", IN_PROGRESS, IN_PROGRESS, NULL, NULL);
    s_decide (f);                     //  second: level 2
    assert_null (s_find (f, NOTIFY_EMAIL, "g1@city.example"));
    const notify_delivery_t *sms = s_find (f, NOTIFY_SMS, "13900000002");
    assert_non_null (sms);
    assert_non_null (strstr (sms->body, "第2级"));
    assert_non_null (s_find (f, NOTIFY_EMAIL, "all@city.example"));
    //  A payload's level wins over counting.
    s_event (f, "overdue", IN_PROGRESS, IN_PROGRESS, NULL, "{\"level\":1}");
    s_decide (f);
    assert_non_null (s_find (f, NOTIFY_EMAIL, "g1@city.example"));
    assert_null (s_find (f, NOTIFY_SMS, "13900000002"));
}

static void
test_unknown_event_only_star_webhooks (void **state)
{
    fixture_t *f = *state;
    s_event (f, "satellite_photo", IN_PROGRESS, IN_PROGRESS, NULL, NULL);
    assert_int_equal (s_decide (f), 1);
    assert_non_null (s_find (f, NOTIFY_WEBHOOK, "all"));
}

static void
test_received_on_non_hotline_ticket (void **state)
{
    fixture_t *f = *state;
    f->ticket->source = CIVICBUS__V1__SOURCE__SOURCE_APP;
    s_event (f, "accept", RECEIVED, ACCEPTED, NULL, NULL);
    s_decide (f);
    assert_null (s_find (f, NOTIFY_HOTLINE, "12345"));         //  not the hotline's ticket
    assert_non_null (s_find (f, NOTIFY_SMS, "13812345678"));
    //  No phone: no SMS.
    pb_set_string (&f->ticket->reporter->phone, "");
    s_decide (f);
    assert_int_equal (f->plan.count, 1);
    assert_non_null (s_find (f, NOTIFY_WEBHOOK, "all"));
}

static void
test_webhook_body_is_masked (void **state)
{
    fixture_t *f = *state;
    //  A landline the text masker does not know, also in a note.
    pb_set_string (&f->ticket->reporter->phone, "025-8765-4321");
    s_event (f, "supplement", IN_PROGRESS, IN_PROGRESS, "另一个号码 13987654321，座机025-8765-4321",
             NULL);
    s_decide (f);
    const notify_delivery_t *w = s_find (f, NOTIFY_WEBHOOK, "all");
    assert_non_null (w);
    assert_null (strstr (w->body, "13987654321"));
    assert_null (strstr (w->body, "13812345678"));      //  description's number
    assert_null (strstr (w->body, "025-8765-4321"));
    assert_null (strstr (w->body, "张三"));
    assert_non_null (strstr (w->body, "139****4321"));
    assert_non_null (strstr (w->body, "\"delivery_id\":\"320105-20261129-000000071#1#webhook#"));
}

static void
test_render_placeholders (void **state)
{
    fixture_t *f = *state;
    cb_event_t *ev = s_event (f, "approve_extension", IN_PROGRESS, IN_PROGRESS, "同意", NULL);
    f->ticket->extension_days = 5;
    char out [256];
    notify_rules_render (f->rules, "{ticket_id}|{state}|{event_label}|{extension_days}|{x}|{time}",
                         f->ticket, ev, 0, out, sizeof out);
    assert_string_equal (out, "320105-20261129-000000071|办理中|同意延期|5|{x}|2026-09-30 16:00");
    //  Cut at a character boundary.
    notify_rules_render (f->rules, "工单工单", f->ticket, ev, 0, out, 8);
    assert_string_equal (out, "工单");
}

static void
s_expect_error (const char *json, const char *expected)
{
    char err [256] = "";
    notify_rules_t *rules = notify_rules_new (json, strlen (json), err, sizeof err);
    assert_null (rules);
    if (!strstr (err, expected))
        fail_msg ("error '%s' does not contain '%s'", err, expected);
}

static void
test_config_errors_name_the_field (void **state)
{
    (void) state;
    s_expect_error ("{", "not JSON");
    s_expect_error ("{\"webhooks\": [{\"name\": \"a\", \"secret\": \"s\"}]}", "webhooks[0].url: missing");
    s_expect_error ("{\"webhooks\": [{\"name\": \"a\", \"url\": \"ftp://x\", \"secret\": \"s\"}]}",
                    "webhooks[0].url");
    s_expect_error ("{\"webhooks\": [{\"name\": \"a\", \"url\": \"http://x/\"}]}",
                    "webhooks[0].secret: missing");
    s_expect_error ("{\"webhooks\": [{\"name\": \"a\", \"url\": \"http://x/\", \"secret\": \"s\","
                    " \"events\": [\"acept\"]}]}", "webhooks[0].events[0]: unknown event 'acept'");
    s_expect_error ("{\"webhooks\": [{\"name\": \"a\", \"url\": \"http://x/\", \"secret\": \"s\"},"
                    " {\"name\": \"a\", \"url\": \"http://y/\", \"secret\": \"s\"}]}",
                    "webhooks[1].name: 'a' is used twice");
    s_expect_error ("{\"templates\": {\"sms\": {\"accept\": \"{tiket_id}\"}}}",
                    "templates.sms.accept: unknown placeholder {tiket_id}");
    s_expect_error ("{\"templates\": {\"fax\": {}}}", "templates.fax: unknown field");
    s_expect_error ("{\"supervisors\": [{\"name\": \"a\", \"level\": 9, \"email\": \"a@b\"}]}",
                    "supervisors[0].level");
    s_expect_error ("{\"supervisors\": [{\"name\": \"a\"}]}", "supervisors[0]: needs an email or a phone");
    s_expect_error ("{\"hotline\": {\"url\": \"http://x/\", \"secret_env\": \"CB_TEST_NO_SUCH_VAR\"}}",
                    "hotline.secret_env: the environment variable CB_TEST_NO_SUCH_VAR is not set");
    s_expect_error ("{\"smtp\": {\"url\": \"http://x\", \"from\": \"a@b\"}}", "smtp.url");
    s_expect_error ("{\"colour\": 1}", "colour: unknown field");
}

static void
test_secret_from_environment (void **state)
{
    (void) state;
    setenv ("CB_TEST_HOTLINE_SECRET", "from-env", 1);
    const char *json = "{\"hotline\": {\"url\": \"http://x/\", \"secret_env\": \"CB_TEST_HOTLINE_SECRET\"}}";
    char err [256] = "";
    notify_rules_t *rules = notify_rules_new (json, strlen (json), err, sizeof err);
    assert_non_null (rules);
    assert_string_equal (notify_rules_endpoints (rules)->hotline_secret, "from-env");
    assert_null (notify_rules_endpoints (rules)->sms_url);
    assert_null (notify_rules_webhook (rules, "all"));
    notify_rules_destroy (&rules);
    assert_null (rules);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_accept_tells_reporter_hotline_and_all_webhook, s_setup, s_teardown),
        cmocka_unit_test (test_delivery_ids_are_deterministic),
        cmocka_unit_test_setup_teardown (test_reject_gives_reason_in_chinese, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_dispatch_tells_hotline_with_department, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_resolve_and_verify, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_merged_reporters_hear_the_outcome, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_co_handler_resolve_is_not_for_reporter, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_department_hears_reminders, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_supervisors_by_level_and_area, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_unknown_event_only_star_webhooks, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_received_on_non_hotline_ticket, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_webhook_body_is_masked, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_render_placeholders, s_setup, s_teardown),
        cmocka_unit_test (test_config_errors_name_the_field),
        cmocka_unit_test (test_secret_from_environment),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
