/*  test_hmac_sign.c — the hotline and webhook signatures: known vectors
    (computed independently with Python's hmac module), verification that
    accepts upper-case hex and refuses any change to any signed part, and
    bad signature texts. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/hmac_sign.h"

static const char s_body [] = "{\"ticket\":\"\xe5\xb7\xa5\"}";
static const char s_secret [] = "s3cret-12345";
static const char s_hotline_vector [] =
    "14041ee81664d2f4ee05c5e53f9742e77410387ca80af5b154b9cb83fdcaeeb5";

static void
test_hotline_known_vector (void **state)
{
    (void) state;
    char hex [HMAC_SIGN_HEX_SIZE];
    assert_int_equal (hmac_sign_hotline (s_secret, strlen (s_secret), "POST",
                                         "/callback/v1/status?x=1", "1790755200", "n-0001",
                                         s_body, strlen (s_body), hex), 0);
    assert_string_equal (hex, s_hotline_vector);
}

static void
test_hotline_long_key_empty_body (void **state)
{
    (void) state;
    char key [100];
    memset (key, 'k', sizeof key);
    char hex [HMAC_SIGN_HEX_SIZE];
    assert_int_equal (hmac_sign_hotline (key, sizeof key, "GET", "/", "1", "n", NULL, 0, hex), 0);
    assert_string_equal (hex, "67100b2563568ff348dcb4c6084e5140f73908c75a8636ff7eae855b0257b62f");
    assert_true (hmac_verify_hotline (key, sizeof key, "GET", "/", "1", "n", NULL, 0, hex));
}

static void
test_hotline_verify_accepts_both_cases (void **state)
{
    (void) state;
    char upper [HMAC_SIGN_HEX_SIZE];
    for (size_t i = 0; i < sizeof upper; i++)
        upper [i] = (char) (s_hotline_vector [i] >= 'a' && s_hotline_vector [i] <= 'f'
                            ? s_hotline_vector [i] - 32 : s_hotline_vector [i]);
    assert_true (hmac_verify_hotline (s_secret, strlen (s_secret), "POST",
                                      "/callback/v1/status?x=1", "1790755200", "n-0001",
                                      s_body, strlen (s_body), s_hotline_vector));
    assert_true (hmac_verify_hotline (s_secret, strlen (s_secret), "POST",
                                      "/callback/v1/status?x=1", "1790755200", "n-0001",
                                      s_body, strlen (s_body), upper));
}

static void
test_hotline_verify_refuses_any_change (void **state)
{
    (void) state;
    const char *v = s_hotline_vector;
    size_t n = strlen (s_body);
    assert_false (hmac_verify_hotline ("s3cret-12346", 12, "POST", "/callback/v1/status?x=1",
                                       "1790755200", "n-0001", s_body, n, v));
    assert_false (hmac_verify_hotline (s_secret, 12, "PUT", "/callback/v1/status?x=1",
                                       "1790755200", "n-0001", s_body, n, v));
    assert_false (hmac_verify_hotline (s_secret, 12, "POST", "/callback/v1/status?x=2",
                                       "1790755200", "n-0001", s_body, n, v));
    assert_false (hmac_verify_hotline (s_secret, 12, "POST", "/callback/v1/status?x=1",
                                       "1790755201", "n-0001", s_body, n, v));
    assert_false (hmac_verify_hotline (s_secret, 12, "POST", "/callback/v1/status?x=1",
                                       "1790755200", "n-0002", s_body, n, v));
    assert_false (hmac_verify_hotline (s_secret, 12, "POST", "/callback/v1/status?x=1",
                                       "1790755200", "n-0001", s_body, n - 1, v));
    //  Moving a separator changes the signed string: "a\nb" vs "a" "\n" "b".
    assert_false (hmac_verify_hotline (s_secret, 12, "POST\n/callback/v1/status?x=1", "",
                                       "1790755200", "n-0001", s_body, n, v));
}

static void
test_bad_signature_texts (void **state)
{
    (void) state;
    char truncated [64];
    memcpy (truncated, s_hotline_vector, 63);
    truncated [63] = 0;
    char nonhex [HMAC_SIGN_HEX_SIZE];
    memcpy (nonhex, s_hotline_vector, sizeof nonhex);
    nonhex [10] = 'g';
    char longer [80];
    snprintf (longer, sizeof longer, "%s00", s_hotline_vector);
    const char *bad [] = { NULL, "", truncated, nonhex, longer };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        assert_false (hmac_verify_hotline (s_secret, strlen (s_secret), "POST",
                                           "/callback/v1/status?x=1", "1790755200", "n-0001",
                                           s_body, strlen (s_body), bad [i]));
    assert_false (hmac_verify_hotline (s_secret, strlen (s_secret), NULL, "/", "1", "n",
                                       NULL, 0, s_hotline_vector));
}

static void
test_webhook_known_vector_and_verify (void **state)
{
    (void) state;
    char hex [HMAC_SIGN_HEX_SIZE];
    assert_int_equal (hmac_sign_webhook ("whsec", 5, "1790755200", "{\"a\":1}", 7, hex), 0);
    assert_string_equal (hex, "784ecd00b6131e538cbb2fcbe5a214f260faab29a20b2df853b48832a13f9769");
    assert_true (hmac_verify_webhook ("whsec", 5, "1790755200", "{\"a\":1}", 7, hex));
    assert_false (hmac_verify_webhook ("whsec", 5, "1790755201", "{\"a\":1}", 7, hex));
    assert_false (hmac_verify_webhook ("whsed", 5, "1790755200", "{\"a\":1}", 7, hex));
    assert_false (hmac_verify_webhook ("whsec", 5, "1790755200", "{\"a\":2}", 7, hex));
    assert_false (hmac_verify_webhook ("whsec", 5, NULL, "{\"a\":1}", 7, hex));
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_hotline_known_vector),
        cmocka_unit_test (test_hotline_long_key_empty_body),
        cmocka_unit_test (test_hotline_verify_accepts_both_cases),
        cmocka_unit_test (test_hotline_verify_refuses_any_change),
        cmocka_unit_test (test_bad_signature_texts),
        cmocka_unit_test (test_webhook_known_vector_and_verify),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
