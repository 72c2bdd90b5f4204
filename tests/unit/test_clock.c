/*  test_clock.c — the settable clock and ISO 8601 in Asia/Shanghai. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "civicbus/clock.h"

static void
test_format_is_shanghai_time (void **state)
{
    (void) state;
    char buf [40];
    //  2026-09-30T08:00:00Z is 16:00 in Shanghai.
    int64_t ms = 1790755200000LL;
    assert_string_equal (cb_time_format_iso (ms, buf, sizeof buf), "2026-09-30T16:00:00+08:00");
    assert_string_equal (cb_time_format_iso (0, buf, sizeof buf), "1970-01-01T08:00:00+08:00");
    //  Just before midnight UTC is the next morning in Shanghai.
    assert_string_equal (cb_time_format_iso (1798761599000LL, buf, sizeof buf),
                         "2027-01-01T07:59:59+08:00");
}

static void
test_parse_forms (void **state)
{
    (void) state;
    int64_t ms = 0;
    assert_int_equal (cb_time_parse_iso ("2026-09-30T16:00+08:00", &ms), 0);
    assert_int_equal (ms, 1790755200000LL);
    assert_int_equal (cb_time_parse_iso ("2026-09-30T08:00:00Z", &ms), 0);
    assert_int_equal (ms, 1790755200000LL);
    assert_int_equal (cb_time_parse_iso ("2026-09-30T16:00:00.250+0800", &ms), 0);
    assert_int_equal (ms, 1790755200250LL);
    assert_int_equal (cb_time_parse_iso ("2026-09-30T16:00:00", &ms), 0);
    assert_int_equal (ms, 1790755200000LL);
    assert_int_equal (cb_time_parse_iso ("2026-09-30", &ms), 0);
    assert_int_equal (ms, 1790755200000LL - 16 * 3600 * 1000LL);
    assert_int_equal (cb_time_parse_iso ("2026-09-30T03:00-05:00", &ms), 0);
    assert_int_equal (ms, 1790755200000LL);
}

static void
test_parse_rejects (void **state)
{
    (void) state;
    int64_t ms = 42;
    const char *bad [] = { "", "2026", "2026-13-01", "2026-02-30", "2026-09-30T25:00",
                           "2026-09-30T16:00+8", "2026-09-30T16:00:00.Z", "2026-09-30x",
                           "2026-09-30T16:60", "yesterday", NULL };
    for (int i = 0; bad [i]; i++)
        assert_int_equal (cb_time_parse_iso (bad [i], &ms), -1);
    assert_int_equal (cb_time_parse_iso (NULL, &ms), -1);
    assert_int_equal (ms, 42);
}

static void
test_round_trip (void **state)
{
    (void) state;
    char buf [40];
    for (int64_t ms = 1767196800000LL; ms < 1798732800000LL; ms += 7777777000LL) {
        int64_t back = 0;
        assert_int_equal (cb_time_parse_iso (cb_time_format_iso (ms, buf, sizeof buf), &back), 0);
        assert_int_equal (back, ms);
    }
}

static void
test_local_date (void **state)
{
    (void) state;
    //  16:00 UTC on 2026-11-29 is already 2026-11-30 in Shanghai.
    int64_t ms = 0;
    assert_int_equal (cb_time_parse_iso ("2026-11-29T16:00:00Z", &ms), 0);
    assert_int_equal (cb_time_local_yyyymmdd (ms), 20261130);
    assert_int_equal (cb_time_local_yyyymmdd (ms - 1), 20261129);
}

static void
test_settable_clock (void **state)
{
    (void) state;
    int64_t real = cb_clock_now_ms ();
    assert_true (real > 1700000000000LL);
    cb_clock_set_ms (1790755200000LL);
    assert_int_equal (cb_clock_now_ms (), 1790755200000LL);
    cb_clock_advance_ms (1500);
    assert_int_equal (cb_clock_now_ms (), 1790755201500LL);
    cb_clock_set_ms (0);
    assert_true (cb_clock_now_ms () >= real);
    int64_t a = cb_clock_mono_ms (), b = cb_clock_mono_ms ();
    assert_true (b >= a);
}

static void
test_clock_file_moves_running_clock (void **state)
{
    (void) state;
    char path [] = "/tmp/cbtest-clock-XXXXXX";
    int fd = mkstemp (path);
    assert_true (fd >= 0);
    close (fd);
    setenv ("CIVICBUS_CLOCK_FILE", path, 1);
    FILE *file = fopen (path, "w");
    fprintf (file, "%lld\n", 3600000LL);
    fclose (file);
    int64_t real = 0;
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    real = (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t now = cb_clock_now_ms ();
    assert_true (now - real >= 3600000 - 1000 && now - real <= 3600000 + 1000);
    //  A rewrite is picked up within the re-read interval (bounded wait).
    file = fopen (path, "w");
    fprintf (file, "%lld\n", 7200000LL);
    fclose (file);
    int64_t moved = 0;
    for (int i = 0; i < 200 && moved < real + 7200000 - 1000; i++) {
        struct timespec nap = { 0, 10 * 1000000L };
        nanosleep (&nap, NULL);
        moved = cb_clock_now_ms ();
    }
    assert_true (moved >= real + 7200000 - 1000);
    unsetenv ("CIVICBUS_CLOCK_FILE");
    unlink (path);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_format_is_shanghai_time),
        cmocka_unit_test (test_parse_forms),
        cmocka_unit_test (test_parse_rejects),
        cmocka_unit_test (test_round_trip),
        cmocka_unit_test (test_local_date),
        cmocka_unit_test (test_settable_clock),
        cmocka_unit_test (test_clock_file_moves_running_clock),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
