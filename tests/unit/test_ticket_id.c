/*  test_ticket_id.c — ids are readable, sortable, carry their bucket. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/ticket_id.h"

static void
test_format_and_bucket (void **state)
{
    (void) state;
    char id [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_id_format (id, sizeof id, "320105", 20261129, 73, 39), 0);
    assert_string_equal (id, "320105-20261129-000004711");
    assert_int_equal (ticket_id_bucket (id), 39);
    for (int bucket = 0; bucket < CB_BUCKETS; bucket++) {
        assert_int_equal (ticket_id_format (id, sizeof id, "320105", 20261129, 12345, bucket), 0);
        assert_int_equal (ticket_id_bucket (id), bucket);
    }
}

static void
test_sortable_within_a_day (void **state)
{
    (void) state;
    char a [CB_TICKET_ID_MAX], b [CB_TICKET_ID_MAX];
    ticket_id_format (a, sizeof a, "320105", 20261129, 9, 63);
    ticket_id_format (b, sizeof b, "320105", 20261129, 10, 0);
    assert_true (strcmp (a, b) < 0);
    ticket_id_format (b, sizeof b, "320105", 20261130, 1, 0);
    assert_true (strcmp (a, b) < 0);
}

static void
test_rejects (void **state)
{
    (void) state;
    char id [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_id_format (id, sizeof id, "32a105", 20261129, 1, 1), -1);
    assert_int_equal (ticket_id_format (id, sizeof id, "", 20261129, 1, 1), -1);
    assert_int_equal (ticket_id_format (id, sizeof id, "320105", 20261129, 1, 64), -1);
    assert_int_equal (ticket_id_format (id, 10, "320105", 20261129, 1, 1), -1);
    const char *bad [] = { "", "320105", "320105-2026112-000000001", "320105-20261129-00001",
                           "320105-20261129-000000001x", "../etc/passwd", "x-20261129-000000001",
                           "320105-20261129-0000000000000000001", NULL };
    for (int i = 0; bad [i]; i++)
        assert_int_equal (ticket_id_bucket (bad [i]), -1);
    assert_int_equal (ticket_id_bucket (NULL), -1);
}

static void
test_bucket_tag_and_key_hash (void **state)
{
    (void) state;
    char tag [CB_BUCKET_TAG_MAX];
    cb_bucket_tag (7, tag, sizeof tag);
    assert_string_equal (tag, "{b07}");
    //  Stable across runs and spread over the buckets.
    assert_int_equal (cb_bucket_for_key ("hotline:GD-2026-0001"), cb_bucket_for_key ("hotline:GD-2026-0001"));
    int seen [CB_BUCKETS] = { 0 };
    char key [32];
    for (int i = 0; i < 6400; i++) {
        snprintf (key, sizeof key, "key-%d", i);
        int b = cb_bucket_for_key (key);
        assert_true (b >= 0 && b < CB_BUCKETS);
        seen [b]++;
    }
    for (int b = 0; b < CB_BUCKETS; b++)
        assert_true (seen [b] > 40 && seen [b] < 180);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_format_and_bucket),
        cmocka_unit_test (test_sortable_within_a_day),
        cmocka_unit_test (test_rejects),
        cmocka_unit_test (test_bucket_tag_and_key_hash),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
