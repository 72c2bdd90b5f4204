/*  test_adapter.c — the pure parts of the adapter library (reply ids,
    status classification, bearer tokens, the journal), of the dispatcher's
    protocol helpers (dispatch.h), and the police mapping
    (services/adapter-police/mapping.c, compiled in here: it is not part
    of libcivicbus). */

#include "civicbus/adapter.h"
#include "civicbus/dispatch.h"
#include "../../services/adapter-police/mapping.c"
#include "test_adapter_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- reply ids ---- */

static cb_dept_answer_t
s_answer (const char *dispatch_id, Civicbus__V1__ReplyKind kind, const char *text, int64_t time_ms)
{
    cb_dept_answer_t a;
    memset (&a, 0, sizeof a);
    a.dispatch_id = dispatch_id;
    a.kind = kind;
    a.text = text;
    a.time_ms = time_ms;
    return a;
}

static void
test_reply_id_uses_the_department_answer_id (void **state)
{
    (void) state;
    cb_dept_answer_t a = s_answer ("320105-20261129-000000064/police/2",
                                   CIVICBUS__V1__REPLY_KIND__REPLY_SIGN, "ok", 5);
    a.answer_id = "PS-77";
    char id [CB_ADAPTER_REPLY_ID_MAX];
    assert_int_equal (cb_adapter_reply_id (id, sizeof id, "police", &a), 0);
    assert_string_equal (id, "police:PS-77");
    char small [8];
    assert_int_equal (cb_adapter_reply_id (small, sizeof small, "police", &a), -1);
}

static void
test_reply_id_hash_is_stable_and_distinguishes_fields (void **state)
{
    (void) state;
    const char *d = "320105-20261129-000000064/police/2";
    cb_dept_answer_t a = s_answer (d, CIVICBUS__V1__REPLY_KIND__REPLY_PROGRESS, "到达现场", 1000);
    char first [CB_ADAPTER_REPLY_ID_MAX], again [CB_ADAPTER_REPLY_ID_MAX], other [CB_ADAPTER_REPLY_ID_MAX];
    assert_int_equal (cb_adapter_reply_id (first, sizeof first, "police", &a), 0);
    assert_int_equal (cb_adapter_reply_id (again, sizeof again, "police", &a), 0);
    assert_string_equal (first, again);
    assert_int_equal (strlen (first), strlen ("police:h") + 32);
    assert_memory_equal (first, "police:h", 8);

    cb_dept_answer_t b = a;
    b.kind = CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE;
    assert_int_equal (cb_adapter_reply_id (other, sizeof other, "police", &b), 0);
    assert_string_not_equal (first, other);
    b = a;
    b.time_ms = 1001;
    assert_int_equal (cb_adapter_reply_id (other, sizeof other, "police", &b), 0);
    assert_string_not_equal (first, other);
    b = a;
    b.text = "到达现场 ";
    assert_int_equal (cb_adapter_reply_id (other, sizeof other, "police", &b), 0);
    assert_string_not_equal (first, other);
    //  Length prefixes: moving a character from the id into the text differs.
    cb_dept_answer_t x = s_answer ("ab/c/1", CIVICBUS__V1__REPLY_KIND__REPLY_SIGN, "x", 0);
    cb_dept_answer_t y = s_answer ("ab/c/", CIVICBUS__V1__REPLY_KIND__REPLY_SIGN, "1x", 0);
    assert_int_equal (cb_adapter_reply_id (first, sizeof first, "p", &x), 0);
    assert_int_equal (cb_adapter_reply_id (other, sizeof other, "p", &y), 0);
    assert_string_not_equal (first, other);
    //  No dispatch id, no reply id.
    cb_dept_answer_t none = s_answer (NULL, CIVICBUS__V1__REPLY_KIND__REPLY_SIGN, "x", 0);
    assert_int_equal (cb_adapter_reply_id (first, sizeof first, "p", &none), -1);
}

static void
test_ticket_of_and_dispatch_id_parse (void **state)
{
    (void) state;
    char ticket [64], dept [64];
    assert_int_equal (cb_adapter_ticket_of (ticket, sizeof ticket,
                                            "320105-20261129-000000064/police/2"), 0);
    assert_string_equal (ticket, "320105-20261129-000000064");
    assert_int_equal (cb_adapter_ticket_of (ticket, sizeof ticket, "no-slash"), -1);
    assert_int_equal (cb_adapter_ticket_of (ticket, sizeof ticket, "/police/2"), -1);

    assert_int_equal (dispatch_id_parse ("320105-20261129-000000064/police/2", ticket,
                                         sizeof ticket, dept, sizeof dept), 0);
    assert_string_equal (ticket, "320105-20261129-000000064");
    assert_string_equal (dept, "police");
    assert_int_equal (dispatch_id_parse ("320105-20261129-000000064/police", ticket,
                                         sizeof ticket, dept, sizeof dept), -1);
    assert_int_equal (dispatch_id_parse ("320105-20261129-000000064//2", ticket,
                                         sizeof ticket, dept, sizeof dept), -1);
    assert_int_equal (dispatch_id_parse ("not-a-ticket/police/2", ticket,
                                         sizeof ticket, dept, sizeof dept), -1);
}

static void
test_statuses_and_kinds (void **state)
{
    (void) state;
    assert_int_equal (cb_adapter_classify_status (200), CB_DEPT_ACCEPTED);
    assert_int_equal (cb_adapter_classify_status (201), CB_DEPT_ACCEPTED);
    assert_int_equal (cb_adapter_classify_status (409), CB_DEPT_ACCEPTED);
    assert_int_equal (cb_adapter_classify_status (400), CB_DEPT_REFUSED);
    assert_int_equal (cb_adapter_classify_status (422), CB_DEPT_REFUSED);
    assert_int_equal (cb_adapter_classify_status (408), CB_DEPT_UNAVAILABLE);
    assert_int_equal (cb_adapter_classify_status (429), CB_DEPT_UNAVAILABLE);
    assert_int_equal (cb_adapter_classify_status (503), CB_DEPT_UNAVAILABLE);
    assert_int_equal (cb_adapter_classify_status (0), CB_DEPT_UNAVAILABLE);
    assert_int_equal (cb_adapter_classify_status (302), CB_DEPT_UNAVAILABLE);

    assert_int_equal (cb_adapter_status_for_nack ("wrong_state"), 409);
    assert_int_equal (cb_adapter_status_for_nack ("not_allowed"), 409);
    assert_int_equal (cb_adapter_status_for_nack ("missing_field"), 422);
    assert_int_equal (cb_adapter_status_for_nack ("bad_value"), 422);
    assert_int_equal (cb_adapter_status_for_nack ("unavailable"), 503);

    for (int k = 1; k <= 6; k++) {
        const char *name = cb_adapter_reply_kind_name ((Civicbus__V1__ReplyKind) k);
        assert_non_null (name);
        assert_int_equal (cb_adapter_reply_kind_from_name (name), k);
    }
    assert_null (cb_adapter_reply_kind_name (CIVICBUS__V1__REPLY_KIND__REPLY_UNSPECIFIED));
    assert_int_equal (cb_adapter_reply_kind_from_name ("sing"), 0);
    assert_int_equal (dispatch_reply_event (CIVICBUS__V1__REPLY_KIND__REPLY_SIGN), TEV_SIGN);
    assert_int_equal (dispatch_reply_event (CIVICBUS__V1__REPLY_KIND__REPLY_RETURN), TEV_RETURN);
    assert_int_equal (dispatch_reply_event (CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION),
                      TEV_REQUEST_EXTENSION);
    assert_int_equal (dispatch_reply_event (CIVICBUS__V1__REPLY_KIND__REPLY_SUSPEND),
                      TEV_REQUEST_SUSPENSION);
    assert_int_equal (dispatch_reply_event (CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE), TEV_RESOLVE);
    assert_int_equal (dispatch_reply_event (CIVICBUS__V1__REPLY_KIND__REPLY_UNSPECIFIED), -1);
}

static void
test_bearer (void **state)
{
    (void) state;
    assert_true (sodium_init () >= 0);
    assert_true (cb_adapter_bearer_ok ("s3cret", "Bearer s3cret"));
    assert_false (cb_adapter_bearer_ok ("s3cret", "Bearer s3cre"));
    assert_false (cb_adapter_bearer_ok ("s3cret", "Bearer s3cret "));
    assert_false (cb_adapter_bearer_ok ("s3cret", "bearer s3cret"));
    assert_false (cb_adapter_bearer_ok ("s3cret", "s3cret"));
    assert_false (cb_adapter_bearer_ok ("s3cret", NULL));
    assert_false (cb_adapter_bearer_ok ("", "Bearer "));
    assert_false (cb_adapter_bearer_ok (NULL, "Bearer x"));
}

/* ---- the journal ---- */

static void
s_tmpdir (char *buf, size_t cap)
{
    snprintf (buf, cap, "/tmp/test_adapter-XXXXXX");
    assert_non_null (mkdtemp (buf));
}

static void
s_rmdir (const char *dir)
{
    char cmd [600];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal (system (cmd), 0);
}

static void
test_journal_survives_reopen_and_skips_torn_lines (void **state)
{
    (void) state;
    char dir [256];
    s_tmpdir (dir, sizeof dir);
    cb_error_t err;
    cb_journal_t *j = cb_journal_open (dir, "police-1", 100, &err);
    assert_non_null (j);
    assert_false (cb_journal_has (j, "T1/police/2"));
    assert_int_equal (cb_journal_add (j, "T1/police/2", 10), 0);
    assert_int_equal (cb_journal_add (j, "T1/police/2", 11), 0);     //  no-op
    assert_int_equal (cb_journal_add (j, "T2/police/3", 12), 0);
    assert_int_equal (cb_journal_add (j, "bad id", 13), -1);
    assert_int_equal (cb_journal_add (j, "", 13), -1);
    assert_int_equal (cb_journal_size (j), 2);
    cb_journal_destroy (&j);
    cb_journal_destroy (&j);
    assert_null (j);

    //  A crash mid-write leaves a line without its newline.
    char path [512];
    snprintf (path, sizeof path, "%s/journal-police-1.log", dir);
    FILE *f = fopen (path, "a");
    assert_non_null (f);
    fputs ("T3/police/4 1", f);
    fclose (f);
    j = cb_journal_open (dir, "police-1", 100, &err);
    assert_non_null (j);
    assert_true (cb_journal_has (j, "T1/police/2"));
    assert_true (cb_journal_has (j, "T2/police/3"));
    assert_false (cb_journal_has (j, "T3/police/4"));
    assert_int_equal (cb_journal_size (j), 2);
    //  Another adapter's journal in the same directory is separate.
    cb_journal_t *other = cb_journal_open (dir, "police-2", 100, &err);
    assert_non_null (other);
    assert_false (cb_journal_has (other, "T1/police/2"));
    cb_journal_destroy (&other);
    cb_journal_destroy (&j);
    s_rmdir (dir);
}

//  A batch is one write and one fsync; what it holds counts like single adds.
static void
test_journal_batch_records_each_once (void **state)
{
    (void) state;
    char dir [256];
    s_tmpdir (dir, sizeof dir);
    cb_error_t err;
    cb_journal_t *j = cb_journal_open (dir, "batch", 100, &err);
    assert_non_null (j);
    assert_int_equal (cb_journal_add (j, "T1/police/2", 10), 0);
    //  One already present, one repeated within the batch, two new.
    const char *batch [] = { "T1/police/2", "T2/police/3", "T3/police/4", "T2/police/3" };
    assert_int_equal (cb_journal_add_many (j, batch, 4, 20), 0);
    assert_int_equal (cb_journal_size (j), 3);
    assert_true (cb_journal_has (j, "T2/police/3"));
    assert_true (cb_journal_has (j, "T3/police/4"));
    //  An empty batch is fine; one unusable id refuses the whole batch.
    assert_int_equal (cb_journal_add_many (j, NULL, 0, 30), 0);
    const char *bad [] = { "T4/police/5", "bad id" };
    assert_int_equal (cb_journal_add_many (j, bad, 2, 30), -1);
    assert_false (cb_journal_has (j, "T4/police/5"));
    cb_journal_destroy (&j);

    //  On disk: every id once, nothing of the refused batch.
    char path [512];
    snprintf (path, sizeof path, "%s/journal-batch.log", dir);
    FILE *f = fopen (path, "r");
    assert_non_null (f);
    int lines = 0;
    for (int c = fgetc (f); c != EOF; c = fgetc (f))
        lines += c == '\n';
    fclose (f);
    assert_int_equal (lines, 3);
    j = cb_journal_open (dir, "batch", 100, &err);
    assert_non_null (j);
    assert_int_equal (cb_journal_size (j), 3);
    assert_true (cb_journal_has (j, "T1/police/2"));
    assert_true (cb_journal_has (j, "T3/police/4"));
    assert_false (cb_journal_has (j, "T4/police/5"));
    cb_journal_destroy (&j);
    s_rmdir (dir);
}

static void
test_journal_is_bounded (void **state)
{
    (void) state;
    char dir [256];
    s_tmpdir (dir, sizeof dir);
    cb_error_t err;
    cb_journal_t *j = cb_journal_open (dir, "a", 16, &err);
    assert_non_null (j);
    char id [64];
    for (int i = 0; i < 100; i++) {
        snprintf (id, sizeof id, "T%d/police/1", i);
        assert_int_equal (cb_journal_add (j, id, 1000 + i), 0);
        assert_true (cb_journal_size (j) <= 16);
    }
    //  The newest survive, the oldest went.
    assert_true (cb_journal_has (j, "T99/police/1"));
    assert_false (cb_journal_has (j, "T0/police/1"));
    cb_journal_destroy (&j);
    //  The file was compacted too: reopening finds at most the bound.
    j = cb_journal_open (dir, "a", 16, &err);
    assert_non_null (j);
    assert_true (cb_journal_size (j) <= 16);
    assert_true (cb_journal_has (j, "T99/police/1"));
    char path [512];
    snprintf (path, sizeof path, "%s/journal-a.log", dir);
    FILE *f = fopen (path, "r");
    assert_non_null (f);
    int lines = 0;
    for (int c = fgetc (f); c != EOF; c = fgetc (f))
        lines += c == '\n';
    fclose (f);
    assert_true (lines <= 16);
    cb_journal_destroy (&j);
    s_rmdir (dir);
}

static void
test_journal_reports_a_bad_dir (void **state)
{
    (void) state;
    cb_error_t err;
    cb_error_clear (&err);
    assert_null (cb_journal_open ("/proc/no/such/dir", "a", 16, &err));
    assert_string_equal (err.code, "io");
}

/* ---- the police mapping ---- */

static police_tables_t *
s_police (const char *json)
{
    cb_error_t err;
    return test_adapter_load (&police_mapping, json, &err);
}

static void
test_police_incident_types (void **state)
{
    (void) state;
    json_t *config = test_adapter_config_file ("adapters/police.json");
    cb_error_t err;
    police_tables_t *t = police_mapping.load (config, &err);
    json_decref (config);
    assert_non_null (t);
    //  Exact beats prefix; the longest prefix wins; the default otherwise.
    assert_string_equal (police_incident_type (t, "police.public_order.fight"), "FIGHT");
    assert_string_equal (police_incident_type (t, "police.public_order.other"), "PUBLIC_ORDER");
    assert_string_equal (police_incident_type (t, "police.traffic.congestion"), "TRAFFIC");
    assert_string_equal (police_incident_type (t, "urban.event.street.parking_motor"),
                         "ILLEGAL_PARKING");
    assert_string_equal (police_incident_type (t, "urban.event.street.stall"), "PUBLIC_ORDER");
    assert_string_equal (police_incident_type (t, "civil.elderly.care"), "OTHER");
    assert_string_equal (police_incident_type (t, NULL), "OTHER");
    police_mapping.unload (t);

    //  Built-in defaults without a file; bad files are refused with the field.
    t = s_police (NULL);
    assert_non_null (t);
    assert_string_equal (police_incident_type (t, "police.public_order.fight"), "OTHER");
    police_mapping.unload (t);
    assert_null (s_police ("{\"incident_types\": [1]}"));
    assert_null (s_police ("{\"incident_types\": {\"police.*\": \"\"}}"));
    assert_null (s_police ("[]"));
}

static void
test_police_order_carries_type_and_phone (void **state)
{
    (void) state;
    police_tables_t *t = s_police ("{\"incident_types\": {\"police.*\": \"POLICE\"}, "
                                   "\"priority\": {\"urgent\": \"P0\", \"normal\": \"P4\"}}");
    assert_non_null (t);
    Civicbus__V1__Reporter reporter = CIVICBUS__V1__REPORTER__INIT;
    reporter.name = (char *) "张三";
    reporter.phone = (char *) "13812345678";
    Civicbus__V1__Ticket ticket = CIVICBUS__V1__TICKET__INIT;
    ticket.id = (char *) "320105-20261129-000000064";
    ticket.category = (char *) "police.fraud.telecom";
    ticket.description = (char *) "接到诈骗电话";
    ticket.urgency = CIVICBUS__V1__URGENCY__URGENCY_URGENT;
    ticket.reporter = &reporter;
    Civicbus__V1__DispatchOrder order = CIVICBUS__V1__DISPATCH_ORDER__INIT;
    order.dispatch_id = (char *) "320105-20261129-000000064/police/2";
    order.attempt = 2;
    order.primary = true;
    order.ticket = &ticket;
    json_t *body = test_adapter_order_body (&police_mapping, t, &order);
    assert_string_equal (json_string_value (json_object_get (body, "incident_key")), order.dispatch_id);
    assert_string_equal (json_string_value (json_object_get (body, "incident_type")), "POLICE");
    assert_string_equal (json_string_value (json_object_get (body, "priority")), "P0");
    assert_int_equal (json_integer_value (json_object_get (body, "attempt")), 2);
    assert_true (json_is_true (json_object_get (body, "lead")));
    json_t *caller = json_object_get (body, "caller");
    assert_string_equal (json_string_value (json_object_get (caller, "phone")), "13812345678");
    assert_string_equal (json_string_value (json_object_get (caller, "name")), "张三");
    json_decref (body);

    order.ticket = NULL;
    test_adapter_refuses_order (&police_mapping, t, &order);
    police_mapping.unload (t);
}

static int
s_answer_of (const char *text, cb_dept_answer_t *answer, cb_error_t *err, json_t **keep)
{
    return test_adapter_answer_of (&police_mapping, text, answer, err, keep);
}

static void
test_police_status_calls_become_replies (void **state)
{
    (void) state;
    cb_dept_answer_t a;
    cb_error_t err;
    json_t *body;
    assert_int_equal (s_answer_of ("{\"incident_key\": \"T/police/2\", \"status\": \"ACCEPTED\", "
                                   "\"status_id\": \"PS-1\", \"officer\": \"王警官\", "
                                   "\"at\": \"2026-11-29T10:00:00+08:00\"}", &a, &err, &body), 0);
    assert_int_equal (a.kind, CIVICBUS__V1__REPLY_KIND__REPLY_SIGN);
    assert_string_equal (a.dispatch_id, "T/police/2");
    assert_string_equal (a.answer_id, "PS-1");
    assert_string_equal (a.staff_name, "王警官");
    assert_true (a.time_ms > 0);
    json_decref (body);

    assert_int_equal (s_answer_of ("{\"incident_key\": \"T/police/2\", \"status\": \"NEED_TIME\", "
                                   "\"extra_days\": 5, \"note\": \"协调中\"}", &a, &err, &body), 0);
    assert_int_equal (a.kind, CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION);
    assert_int_equal (a.extension_days, 5);
    assert_string_equal (a.text, "协调中");
    assert_null (a.answer_id);
    json_decref (body);

    assert_int_equal (s_answer_of ("{\"incident_key\": \"T/police/2\", \"status\": \"CLOSED\", "
                                   "\"note\": \"done\", \"photos\": [\"https://x/1.jpg\", "
                                   "\"https://x/2.jpg\"], \"at\": 1234}", &a, &err, &body), 0);
    assert_int_equal (a.kind, CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE);
    assert_int_equal (a.n_attachment_urls, 2);
    assert_string_equal (a.attachment_urls [1], "https://x/2.jpg");
    assert_int_equal (a.time_ms, 1234);
    json_decref (body);

    static const test_adapter_bad_answer_t bad [] = {
        { "{\"status\": \"ACCEPTED\"}", "incident_key" },
        { "{\"incident_key\": \"T/p/1\"}", "status" },
        { "{\"incident_key\": \"T/p/1\", \"status\": \"DONE\"}", "status" },
        { "{\"incident_key\": \"T/p/1\", \"status\": \"NEED_TIME\"}", "extra_days" },
        { "{\"incident_key\": \"T/p/1\", \"status\": \"NEED_TIME\", \"extra_days\": \"5\"}", "extra_days" },
        { "{\"incident_key\": \"T/p/1\", \"status\": \"CLOSED\", \"photos\": \"x\"}", "photos" },
        { "{\"incident_key\": \"T/p/1\", \"status\": \"CLOSED\", \"photos\": [1]}", "photos" },
        { "{\"incident_key\": \"T/p/1\", \"status\": \"CLOSED\", \"at\": \"yesterday\"}", "at" },
    };
    test_adapter_refuses_answers (&police_mapping, bad, sizeof bad / sizeof bad [0]);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_reply_id_uses_the_department_answer_id),
        cmocka_unit_test (test_reply_id_hash_is_stable_and_distinguishes_fields),
        cmocka_unit_test (test_ticket_of_and_dispatch_id_parse),
        cmocka_unit_test (test_statuses_and_kinds),
        cmocka_unit_test (test_bearer),
        cmocka_unit_test (test_journal_survives_reopen_and_skips_torn_lines),
        cmocka_unit_test (test_journal_batch_records_each_once),
        cmocka_unit_test (test_journal_is_bounded),
        cmocka_unit_test (test_journal_reports_a_bad_dir),
        cmocka_unit_test (test_police_incident_types),
        cmocka_unit_test (test_police_order_carries_type_and_phone),
        cmocka_unit_test (test_police_status_calls_become_replies),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
