/*  test_hotline.c — the 12345 exchange's pure parts: the ticket body, the
    follow-up bodies, and the signature/timestamp check with a signature
    computed here independently of hotline.c's path through hmac_sign. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "civicbus/hmac_sign.h"
#include "civicbus/hotline.h"

static const char s_body [] =
    "{\"number\":\"GD-20261129-0001\",\"category\":\"urban.event.street.stall\","
    "\"request_type\":\"投诉\",\"urgency\":\"urgent\",\"description\":\"占道经营\","
    "\"location\":{\"lat\":31.98,\"lon\":118.7,\"address\":\"应天大街1号\"},"
    "\"citizen\":{\"name\":\"张三\",\"phone\":\"13812345678\"},"
    "\"deadlines\":{\"sign\":\"2026-11-30T09:00:00+08:00\","
    "\"resolve\":\"2026-12-05T18:00:00+08:00\"}}";

static void
test_ticket_body (void **state)
{
    (void) state;
    cb_ticket_t *t = NULL;
    cb_error_t err;
    assert_int_equal (hotline_ticket_from_json (s_body, strlen (s_body), &t, &err), 0);
    assert_int_equal (t->source, CIVICBUS__V1__SOURCE__SOURCE_HOTLINE);
    assert_string_equal (t->external_id, "GD-20261129-0001");
    assert_int_equal (t->request_type, CIVICBUS__V1__REQUEST_TYPE__COMPLAINT);
    assert_int_equal (t->urgency, CIVICBUS__V1__URGENCY__URGENCY_URGENT);
    assert_string_equal (t->reporter->phone, "13812345678");
    assert_int_equal (t->n_sender_deadlines, 2);
    assert_int_equal (t->sender_deadlines [0]->stage, CIVICBUS__V1__STAGE__STAGE_SIGN);
    //  2026-11-30T01:00:00Z
    assert_int_equal (t->sender_deadlines [0]->due_ms, 1796000400000LL);
    assert_int_equal (t->sender_deadlines [1]->stage, CIVICBUS__V1__STAGE__STAGE_RESOLVE);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
s_refused (const char *body, const char *code, const char *field)
{
    cb_ticket_t *t = NULL;
    cb_error_t err;
    assert_int_equal (hotline_ticket_from_json (body, strlen (body), &t, &err), -1);
    assert_null (t);
    assert_string_equal (err.code, code);
    assert_string_equal (err.field, field);
}

static void
test_ticket_body_refusals (void **state)
{
    (void) state;
    s_refused ("[]", "not_object", "");
    s_refused ("{\"number\":", "malformed_json", "");
    s_refused ("{\"category\":\"x\",\"request_type\":\"help\",\"description\":\"d\","
               "\"location\":{\"address\":\"a\"}}", "missing_field", "number");
    s_refused ("{\"number\":\"a b\"}", "bad_value", "number");
    s_refused ("{\"number\":\"N1\",\"source\":\"app\"}", "unknown_field", "source");
    s_refused ("{\"number\":\"N1\",\"category\":\"x\",\"request_type\":\"help\","
               "\"description\":\"d\",\"location\":{\"address\":\"a\"},"
               "\"citizen\":{\"phone\":\"12\"}}", "bad_value", "citizen.phone");
    s_refused ("{\"number\":\"N1\",\"category\":\"x\",\"request_type\":\"help\","
               "\"description\":\"d\",\"location\":{\"address\":\"a\"},"
               "\"deadlines\":{\"resolve\":\"tomorrow\"}}", "bad_value", "deadlines.resolve");
    s_refused ("{\"number\":\"N1\",\"category\":\"x\",\"request_type\":\"help\","
               "\"description\":\"d\",\"location\":{\"address\":\"a\"},"
               "\"deadlines\":{\"lunch\":\"2026-11-30\"}}", "unknown_field", "deadlines.lunch");
}

static void
test_numbers_and_keys (void **state)
{
    (void) state;
    assert_true (hotline_number_valid ("GD_2026-1"));
    assert_false (hotline_number_valid (""));
    assert_false (hotline_number_valid ("a/b"));
    assert_false (hotline_number_valid ("工单1"));
    char key [80];
    assert_int_equal (hotline_idempotency_key (key, sizeof key, "N1"), 0);
    assert_string_equal (key, "ext:hotline:N1");
    assert_int_equal (hotline_idempotency_key (key, 5, "N1"), -1);
}

static void
test_actions (void **state)
{
    (void) state;
    assert_int_equal (hotline_action_event ("supplement"), TEV_SUPPLEMENT);
    assert_int_equal (hotline_action_event ("urge"), TEV_URGE);
    assert_int_equal (hotline_action_event ("withdraw"), TEV_CANCEL);
    assert_int_equal (hotline_action_event ("close"), -1);
    char *text = NULL;
    cb_error_t err;
    const char *b = "{\"text\":\"又堆了\"}";
    assert_int_equal (hotline_action_from_json (b, strlen (b), "supplement", &text, &err), 0);
    assert_string_equal (text, "又堆了");
    free (text);
    assert_int_equal (hotline_action_from_json ("", 0, "urge", &text, &err), 0);
    assert_null (text);
    assert_int_equal (hotline_action_from_json ("{}", 2, "supplement", &text, &err), -1);
    assert_string_equal (err.code, "missing_field");
    b = "{\"note\":\"x\"}";
    assert_int_equal (hotline_action_from_json (b, strlen (b), "urge", &text, &err), -1);
    assert_string_equal (err.code, "unknown_field");
    b = "{\"text\":5}";
    assert_int_equal (hotline_action_from_json (b, strlen (b), "withdraw", &text, &err), -1);
    assert_string_equal (err.code, "wrong_type");
}

static void
test_signature_check (void **state)
{
    (void) state;
    const char secret [] = "s3cret";
    const char body [] = "{\"a\":1}";
    char sig [HMAC_SIGN_HEX_SIZE];
    //  The signed text, built by hand: METHOD \n PATH \n TS \n NONCE \n BODY
    const char *parts [] = { "POST\n/hotline/v1/tickets\n1800000000\nnonce-0001\n", body };
    size_t lens [] = { strlen (parts [0]), strlen (body) };
    assert_int_equal (hmac_sign_parts (secret, 6, (const void *const *) parts, lens, 2, sig), 0);
    int64_t now = 1800000000;
    assert_int_equal (hotline_check_request (secret, 6, "POST", "/hotline/v1/tickets",
                                             "1800000000", "nonce-0001", sig, body,
                                             strlen (body), now), HOTLINE_AUTH_OK);
    //  299 s off either way is fine, 301 is not
    assert_int_equal (hotline_check_request (secret, 6, "POST", "/hotline/v1/tickets",
                                             "1800000000", "nonce-0001", sig, body,
                                             strlen (body), now + 299), HOTLINE_AUTH_OK);
    assert_int_equal (hotline_check_request (secret, 6, "POST", "/hotline/v1/tickets",
                                             "1800000000", "nonce-0001", sig, body,
                                             strlen (body), now - 301), HOTLINE_AUTH_SKEW);
    assert_int_equal (hotline_check_request (secret, 6, "POST", "/hotline/v1/tickets",
                                             "1800000000", "nonce-0001", sig, "{\"a\":2}", 7,
                                             now), HOTLINE_AUTH_BAD_SIGNATURE);
    assert_int_equal (hotline_check_request (secret, 6, "POST", "/hotline/v1/ticket",
                                             "1800000000", "nonce-0001", sig, body,
                                             strlen (body), now), HOTLINE_AUTH_BAD_SIGNATURE);
    assert_int_equal (hotline_check_request ("other!", 6, "POST", "/hotline/v1/tickets",
                                             "1800000000", "nonce-0001", sig, body,
                                             strlen (body), now), HOTLINE_AUTH_BAD_SIGNATURE);
    assert_int_equal (hotline_check_request (secret, 6, "POST", "/hotline/v1/tickets",
                                             NULL, "nonce-0001", sig, body, strlen (body), now),
                      HOTLINE_AUTH_MISSING);
    assert_int_equal (hotline_check_request (secret, 6, "POST", "/hotline/v1/tickets",
                                             "18e8", "nonce-0001", sig, body, strlen (body),
                                             now), HOTLINE_AUTH_BAD_TIMESTAMP);
    assert_int_equal (hotline_check_request (secret, 6, "POST", "/hotline/v1/tickets",
                                             "1800000000", "short", sig, body, strlen (body),
                                             now), HOTLINE_AUTH_BAD_NONCE);
    assert_string_equal (hotline_auth_code (HOTLINE_AUTH_SKEW), "timestamp_skew");
    assert_string_equal (hotline_auth_code (HOTLINE_AUTH_BAD_SIGNATURE), "signature_invalid");
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_ticket_body),
        cmocka_unit_test (test_ticket_body_refusals),
        cmocka_unit_test (test_numbers_and_keys),
        cmocka_unit_test (test_actions),
        cmocka_unit_test (test_signature_check),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
