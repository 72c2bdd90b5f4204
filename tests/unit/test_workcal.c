/*  test_workcal.c — working-time calendars (common/workcal.c).

    Hand-computed cases on the real 2026 mainland calendar (Spring Festival,
    National Day, year boundaries, starts outside office hours, limits ending
    exactly at a closing time), a minute-by-minute reference that knows the
    2026 notice on its own and is compared on thousands of seeded random
    cases, the round-trip and monotonicity properties, JSON errors, and the
    equality of the built-in calendar with deploy/config/calendar-cn-2026.json. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/workcal.h"
#include "civicbus/clock.h"

#define HOUR_MS   3600000LL
#define MINUTE_MS 60000LL
#define DAY_MS    86400000LL

/* ---- helpers ---- */

//  An ISO time, which must parse.
static int64_t
s_at (const char *iso)
{
    int64_t ms = 0;
    assert_int_equal (cb_time_parse_iso (iso, &ms), 0);
    return ms;
}

#define assert_iso(ms, expected) do {                                       \
        char iso_buf_ [40];                                                 \
        assert_string_equal (cb_time_format_iso ((ms), iso_buf_, sizeof iso_buf_), (expected)); \
    } while (0)

//  add_working_time from an ISO start, formatted.
#define assert_add(cal, start_iso, duration_ms, expected)                   \
    assert_iso (add_working_time (s_at (start_iso), (duration_ms), (cal)), (expected))

static int
s_setup (void **state)
{
    *state = workcal_new_default ();
    return *state ? 0 : -1;
}

static int
s_teardown (void **state)
{
    workcal_t *cal = *state;
    workcal_destroy (&cal);
    return 0;
}

//  Seeded xorshift64*: the same pseudo-random cases on every run.
static uint64_t
s_next_random (uint64_t *seed)
{
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    return *seed * 2685821657736338717ULL;
}

static int64_t
s_random_between (uint64_t *seed, int64_t low, int64_t high)
{
    return low + (int64_t) (s_next_random (seed) % (uint64_t) (high - low + 1));
}

//  The reference: the 2026 notice as in /work/shared/calendars/cn-2026.md,
//  kept apart from the code under test, asked one minute at a time.
static bool
s_reference_is_working_day (int yyyymmdd, int weekday)
{
    static const int holidays [][2] = {
        { 20260101, 20260103 }, { 20260215, 20260223 }, { 20260404, 20260406 },
        { 20260501, 20260505 }, { 20260619, 20260621 }, { 20260925, 20260927 },
        { 20261001, 20261007 }
    };
    static const int adjusted [] = {
        20260104, 20260214, 20260228, 20260509, 20260920, 20261010
    };
    for (size_t i = 0; i < sizeof holidays / sizeof holidays [0]; i++)
        if (yyyymmdd >= holidays [i][0] && yyyymmdd <= holidays [i][1])
            return false;
    for (size_t i = 0; i < sizeof adjusted / sizeof adjusted [0]; i++)
        if (yyyymmdd == adjusted [i])
            return true;
    return weekday < 5;
}

//  Is the minute starting at `ms` (a whole minute) office time?
static bool
s_reference_is_office_minute (int64_t ms)
{
    int64_t local_minutes = (ms + CB_SHANGHAI_OFFSET_MS) / MINUTE_MS;
    int64_t day = local_minutes / 1440;
    int minute_of_day = (int) (local_minutes % 1440);
    int weekday = (int) ((day + 3) % 7);    //  1970-01-01 was a Thursday
    if (!s_reference_is_working_day (cb_time_local_yyyymmdd (ms), weekday))
        return false;
    return (minute_of_day >= 8 * 60 + 30 && minute_of_day < 12 * 60)
        || (minute_of_day >= 14 * 60 && minute_of_day < 17 * 60 + 30);
}

static int64_t
s_reference_add (int64_t start_ms, int64_t minutes)
{
    int64_t t = start_ms;
    while (minutes > 0) {
        if (s_reference_is_office_minute (t))
            minutes--;
        t += MINUTE_MS;
    }
    //  t is now the end of the last minute counted: the earliest instant.
    return t;
}

static int64_t
s_reference_between (int64_t a_ms, int64_t b_ms)
{
    int64_t total = 0;
    for (int64_t t = a_ms; t < b_ms; t += MINUTE_MS)
        total += s_reference_is_office_minute (t) ? MINUTE_MS : 0;
    return total;
}

static char *
s_read_text_file (const char *path, size_t *len)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    char *text = NULL;
    if (fseek (file, 0, SEEK_END) == 0) {
        long size = ftell (file);
        if (size >= 0 && fseek (file, 0, SEEK_SET) == 0 && (text = malloc ((size_t) size + 1))) {
            *len = fread (text, 1, (size_t) size, file);
            text [*len] = '\0';
        }
    }
    fclose (file);
    return text;
}

/* ---- tests ---- */

static void
test_default_calendar (void **state)
{
    workcal_t *cal = *state;
    assert_string_equal (workcal_name (cal), "cn-2026");
    assert_int_equal (workcal_standard_day_ms (cal), 7 * HOUR_MS);
}

static void
test_is_working_day (void **state)
{
    workcal_t *cal = *state;
    //  New Year: 01-01..03 off, Sunday 01-04 works.
    assert_false (workcal_is_working_day (cal, 20260101));
    assert_false (workcal_is_working_day (cal, 20260102));
    assert_false (workcal_is_working_day (cal, 20260103));
    assert_true (workcal_is_working_day (cal, 20260104));
    assert_true (workcal_is_working_day (cal, 20260105));
    //  Spring Festival: Saturdays 02-14 and 02-28 work, 02-15..23 off.
    assert_true (workcal_is_working_day (cal, 20260213));
    assert_true (workcal_is_working_day (cal, 20260214));
    for (int date = 20260215; date <= 20260223; date++)
        assert_false (workcal_is_working_day (cal, date));
    assert_true (workcal_is_working_day (cal, 20260224));
    assert_true (workcal_is_working_day (cal, 20260228));
    assert_false (workcal_is_working_day (cal, 20260301));
    //  National Day: Sunday 09-20 and Saturday 10-10 work, 10-01..07 off.
    assert_false (workcal_is_working_day (cal, 20260919));
    assert_true (workcal_is_working_day (cal, 20260920));
    for (int date = 20261001; date <= 20261007; date++)
        assert_false (workcal_is_working_day (cal, date));
    assert_true (workcal_is_working_day (cal, 20261008));
    assert_true (workcal_is_working_day (cal, 20261010));
    assert_false (workcal_is_working_day (cal, 20261011));
    //  Others: Qingming Monday, Labour Day Saturday 05-09, an ordinary week.
    assert_false (workcal_is_working_day (cal, 20260406));
    assert_true (workcal_is_working_day (cal, 20260509));
    assert_true (workcal_is_working_day (cal, 20260311));
    assert_false (workcal_is_working_day (cal, 20260314));
    //  Outside the listed year: weekdays work, weekends do not.
    assert_true (workcal_is_working_day (cal, 20270101));
    assert_false (workcal_is_working_day (cal, 20270102));
    assert_true (workcal_is_working_day (cal, 20251231));
    assert_false (workcal_is_working_day (cal, 20251227));
    //  Dates that do not exist.
    assert_false (workcal_is_working_day (cal, 20260230));
    assert_false (workcal_is_working_day (cal, 20261301));
    assert_false (workcal_is_working_day (cal, 0));
    assert_false (workcal_is_working_day (cal, -20260105));
}

static void
test_whole_years (void **state)
{
    workcal_t *cal = *state;
    //  2026: 261 weekdays - 19 weekday holidays + 6 adjusted days = 248.
    assert_int_equal (working_time_between (s_at ("2026-01-01"), s_at ("2027-01-01"), cal),
                      248 * 7 * HOUR_MS);
    int days = 0;
    for (int month = 1; month <= 12; month++)
        for (int day = 1; day <= 31; day++)
            days += workcal_is_working_day (cal, 20260000 + month * 100 + day);
    assert_int_equal (days, 248);
    //  Outside it: January 2027 and December 2025 count their weekdays.
    assert_int_equal (working_time_between (s_at ("2027-01-01"), s_at ("2027-02-01"), cal),
                      21 * 7 * HOUR_MS);
    assert_int_equal (working_time_between (s_at ("2025-12-01"), s_at ("2026-01-01"), cal),
                      23 * 7 * HOUR_MS);
    //  Empty and reversed intervals.
    assert_int_equal (working_time_between (s_at ("2026-03-02T10:00"), s_at ("2026-03-02T10:00"), cal), 0);
    assert_int_equal (working_time_between (s_at ("2026-03-03T10:00"), s_at ("2026-03-02T10:00"), cal), 0);
}

static void
test_spring_festival (void **state)
{
    workcal_t *cal = *state;
    //  Friday 02-13 16:00: 1.5 h, then Saturday 02-14 works with Monday's hours.
    assert_add (cal, "2026-02-13T16:00+08:00", 3 * HOUR_MS, "2026-02-14T10:00:00+08:00");
    //  Saturday 02-14 17:00: 0.5 h, then nine days off, Tuesday 02-24.
    assert_add (cal, "2026-02-14T17:00+08:00", 1 * HOUR_MS, "2026-02-24T09:00:00+08:00");
    //  Started inside the holiday: counting begins on 02-24 at 08:30.
    assert_add (cal, "2026-02-18T10:00+08:00", 2 * HOUR_MS, "2026-02-24T10:30:00+08:00");
    //  Friday 02-27 17:00 + 1 h: Saturday 02-28 works.
    assert_add (cal, "2026-02-27T17:00+08:00", 1 * HOUR_MS, "2026-02-28T09:00:00+08:00");
    //  Saturday 02-28 17:00 + 1 h: Sunday 03-01 does not, Monday 03-02.
    assert_add (cal, "2026-02-28T17:00+08:00", 1 * HOUR_MS, "2026-03-02T09:00:00+08:00");
    //  Friday 10:00 + 5 working days: 02-14, 02-24, 25, 26, 27.
    assert_iso (add_working_days (s_at ("2026-02-13T10:00"), 5, cal), "2026-02-27T10:00:00+08:00");
    //  The whole festival fortnight holds 5 working days and 1.5 h.
    assert_int_equal (working_time_between (s_at ("2026-02-13T16:00"), s_at ("2026-02-28T00:00"), cal),
                      (int64_t) (1.5 * HOUR_MS) + 5 * 7 * HOUR_MS);
}

static void
test_national_day (void **state)
{
    workcal_t *cal = *state;
    //  Wednesday 09-30 16:00 + 8 h: 16:00-17:30 is 1.5 h; 10-01..07 off;
    //  Thursday 10-08: 08:30-12:00 is 3.5 h (5 h), 14:00-17:00 is 3 h (8 h).
    assert_add (cal, "2026-09-30T16:00+08:00", 8 * HOUR_MS, "2026-10-08T17:00:00+08:00");
    assert_int_equal (working_time_between (s_at ("2026-09-30T16:00+08:00"),
                                            s_at ("2026-10-08T17:00+08:00"), cal), 8 * HOUR_MS);
    //  Same instant written in UTC.
    assert_add (cal, "2026-09-30T08:00Z", 8 * HOUR_MS, "2026-10-08T17:00:00+08:00");
    //  Friday 09-18 10:00 + 1 working day: Saturday off, Sunday 09-20 works.
    assert_iso (add_working_days (s_at ("2026-09-18T10:00"), 1, cal), "2026-09-20T10:00:00+08:00");
    //  Mid-Autumn: Thursday 09-24 17:00 + 1 h: 09-25..27 off, Monday 09-28.
    assert_add (cal, "2026-09-24T17:00+08:00", 1 * HOUR_MS, "2026-09-28T09:00:00+08:00");
    //  Friday 10-09 17:00 + 1 h: Saturday 10-10 works.
    assert_add (cal, "2026-10-09T17:00+08:00", 1 * HOUR_MS, "2026-10-10T09:00:00+08:00");
    //  Saturday 10-10 closing + 1 h: Sunday off, Monday 10-12.
    assert_add (cal, "2026-10-10T17:30+08:00", 1 * HOUR_MS, "2026-10-12T09:30:00+08:00");
    //  Started during the holiday week, e.g. 10-03 10:00.
    assert_add (cal, "2026-10-03T10:00+08:00", 1 * HOUR_MS, "2026-10-08T09:30:00+08:00");
    //  30 working days from Tuesday 09-01 09:00 cross both holidays: 10-19.
    assert_iso (add_working_days (s_at ("2026-09-01T09:00"), 30, cal), "2026-10-19T09:00:00+08:00");
}

static void
test_starts_outside_office_hours (void **state)
{
    workcal_t *cal = *state;
    //  Night before: counting starts at 08:30.
    assert_add (cal, "2026-03-02T03:00+08:00", 1 * HOUR_MS, "2026-03-02T09:30:00+08:00");
    //  Night after: next morning.
    assert_add (cal, "2026-03-02T20:00+08:00", 1 * HOUR_MS, "2026-03-03T09:30:00+08:00");
    assert_add (cal, "2026-03-02T23:59:59+08:00", 30 * MINUTE_MS, "2026-03-03T09:00:00+08:00");
    //  Lunch break: counting starts at 14:00.
    assert_add (cal, "2026-03-02T13:00+08:00", 1 * HOUR_MS, "2026-03-02T15:00:00+08:00");
    assert_add (cal, "2026-03-02T12:00+08:00", 1 * HOUR_MS, "2026-03-02T15:00:00+08:00");
    //  Weekend: Monday.
    assert_add (cal, "2026-03-07T10:00+08:00", 1 * HOUR_MS, "2026-03-09T09:30:00+08:00");
    assert_add (cal, "2026-03-08T18:00+08:00", 4 * HOUR_MS, "2026-03-09T14:30:00+08:00");
    //  Holiday: Qingming Monday 04-06, Tuesday 04-07 opens.
    assert_add (cal, "2026-04-04T09:00+08:00", 3 * HOUR_MS, "2026-04-07T11:30:00+08:00");
    //  Labour Day: 05-01..05 off, Wednesday 05-06.
    assert_add (cal, "2026-04-30T17:29+08:00", 2 * MINUTE_MS, "2026-05-06T08:31:00+08:00");
    //  Nothing of a night or a holiday counts.
    assert_int_equal (working_time_between (s_at ("2026-03-02T17:30"), s_at ("2026-03-03T08:30"), cal), 0);
    assert_int_equal (working_time_between (s_at ("2026-03-02T12:00"), s_at ("2026-03-02T14:00"), cal), 0);
    assert_int_equal (working_time_between (s_at ("2026-10-01"), s_at ("2026-10-08T08:30"), cal), 0);
}

static void
test_limit_ends_at_closing_time (void **state)
{
    workcal_t *cal = *state;
    //  A morning's 3.5 h from the opening ends at 12:00, not at 14:00.
    assert_add (cal, "2026-03-02T08:30+08:00", (int64_t) (3.5 * HOUR_MS), "2026-03-02T12:00:00+08:00");
    assert_add (cal, "2026-03-02T10:00+08:00", 2 * HOUR_MS, "2026-03-02T12:00:00+08:00");
    //  Started before opening, still ends at 12:00.
    assert_add (cal, "2026-03-02T07:00+08:00", (int64_t) (3.5 * HOUR_MS), "2026-03-02T12:00:00+08:00");
    //  A day's 7 h ends at 17:30, not the next 08:30.
    assert_add (cal, "2026-03-02T08:30+08:00", 7 * HOUR_MS, "2026-03-02T17:30:00+08:00");
    assert_add (cal, "2026-03-02T15:00+08:00", (int64_t) (2.5 * HOUR_MS), "2026-03-02T17:30:00+08:00");
    //  Ending at 17:30 before a holiday does not jump over it.
    assert_add (cal, "2026-09-30T16:00+08:00", (int64_t) (1.5 * HOUR_MS), "2026-09-30T17:30:00+08:00");
    //  One millisecond more does.
    assert_iso (add_working_time (s_at ("2026-09-30T16:00"), (int64_t) (1.5 * HOUR_MS) + 1, cal),
                "2026-10-08T08:30:00+08:00");
    assert_int_equal (add_working_time (s_at ("2026-09-30T16:00"), (int64_t) (1.5 * HOUR_MS) + 1, cal),
                      s_at ("2026-10-08T08:30") + 1);
    //  Starting at 12:00 sharp with 1 ms: 14:00:00.001.
    assert_int_equal (add_working_time (s_at ("2026-03-02T12:00"), 1, cal), s_at ("2026-03-02T14:00") + 1);
    //  Millisecond edges of the intervals.
    assert_int_equal (working_time_between (s_at ("2026-03-02T08:30"), s_at ("2026-03-02T08:30") + 1, cal), 1);
    assert_int_equal (working_time_between (s_at ("2026-03-02T08:30") - 1, s_at ("2026-03-02T08:30"), cal), 0);
    assert_int_equal (working_time_between (s_at ("2026-03-02T12:00") - 1, s_at ("2026-03-02T12:00") + 1, cal), 1);
    assert_int_equal (working_time_between (s_at ("2026-03-02T14:00") - 1, s_at ("2026-03-02T14:00") + 2, cal), 2);
    assert_int_equal (working_time_between (s_at ("2026-03-02T17:30") - 3, s_at ("2026-03-02T17:30") + 3, cal), 3);
}

static void
test_zero_and_negative_durations (void **state)
{
    workcal_t *cal = *state;
    int64_t inside = s_at ("2026-03-02T10:00");
    int64_t night = s_at ("2026-03-02T22:00");
    int64_t holiday = s_at ("2026-10-02T10:00");
    assert_int_equal (add_working_time (inside, 0, cal), inside);
    assert_int_equal (add_working_time (night, 0, cal), night);
    assert_int_equal (add_working_time (holiday, 0, cal), holiday);
    assert_int_equal (add_working_time (night, -HOUR_MS, cal), night);
    assert_int_equal (add_working_days (night, 0, cal), night);
    assert_int_equal (add_working_days (night, -3, cal), night);
}

static void
test_year_boundary (void **state)
{
    workcal_t *cal = *state;
    //  Thursday 2026-12-31 16:00 + 4 h: 1.5 h, then Friday 2027-01-01 is a
    //  working day on this calendar (2027's notice is not loaded).
    assert_add (cal, "2026-12-31T16:00+08:00", 4 * HOUR_MS, "2027-01-01T11:00:00+08:00");
    assert_add (cal, "2026-12-31T17:00+08:00", 7 * HOUR_MS, "2027-01-01T17:00:00+08:00");
    //  0.5 + 7 h on Friday, weekend, 2.5 h on Monday 2027-01-04.
    assert_add (cal, "2026-12-31T17:00+08:00", 10 * HOUR_MS, "2027-01-04T11:00:00+08:00");
    assert_iso (add_working_days (s_at ("2026-12-30T09:00"), 3, cal), "2027-01-04T09:00:00+08:00");
    //  Into 2026 from 2025: 01-01..03 off, Sunday 01-04 works.
    assert_add (cal, "2025-12-31T17:00+08:00", 1 * HOUR_MS, "2026-01-04T09:00:00+08:00");
    assert_iso (add_working_days (s_at ("2025-12-30T11:00"), 2, cal), "2026-01-04T11:00:00+08:00");
    //  Between counts across both boundaries.
    assert_int_equal (working_time_between (s_at ("2025-12-31T00:00"), s_at ("2026-01-05T00:00"), cal),
                      2 * 7 * HOUR_MS);
    //  The boundary instant is Shanghai midnight, i.e. 16:00 UTC.
    assert_int_equal (working_time_between (s_at ("2026-12-31T16:00Z"), s_at ("2027-01-01T01:00Z"), cal),
                      30 * MINUTE_MS);
}

static void
test_working_days (void **state)
{
    workcal_t *cal = *state;
    //  Inside office hours: the same clock time N working days later.
    assert_iso (add_working_days (s_at ("2026-03-03T10:00"), 1, cal), "2026-03-04T10:00:00+08:00");
    assert_iso (add_working_days (s_at ("2026-03-03T10:00"), 5, cal), "2026-03-10T10:00:00+08:00");
    assert_iso (add_working_days (s_at ("2026-03-03T15:45"), 2, cal), "2026-03-05T15:45:00+08:00");
    //  Received after hours: ends at the close of the Nth working day.
    assert_iso (add_working_days (s_at ("2026-03-02T20:00"), 1, cal), "2026-03-03T17:30:00+08:00");
    assert_iso (add_working_days (s_at ("2026-03-06T19:00"), 1, cal), "2026-03-09T17:30:00+08:00");
    //  From the opening: the same day's close.
    assert_iso (add_working_days (s_at ("2026-03-02T08:30"), 1, cal), "2026-03-02T17:30:00+08:00");
    //  From the lunch break: counting starts at 14:00, and the seven hours
    //  are used up at the next day's 12:00 (the earliest instant, the same
    //  office time as 14:00).
    assert_iso (add_working_days (s_at ("2026-03-02T13:00"), 1, cal), "2026-03-03T12:00:00+08:00");
    //  Labour Day: 15 working days from 04-30 10:00 is 05-25 10:00.
    assert_iso (add_working_days (s_at ("2026-04-30T10:00"), 15, cal), "2026-05-25T10:00:00+08:00");
    //  N working days are N standard days of office time.
    int64_t start = s_at ("2026-09-29T11:11");
    assert_int_equal (working_time_between (start, add_working_days (start, 10, cal), cal), 70 * HOUR_MS);
}

static void
test_due_units (void **state)
{
    workcal_t *cal = *state;
    int64_t start = s_at ("2026-09-30T16:00");
    int64_t due = 0;
    assert_int_equal (workcal_due (cal, start, "working-hours", 8, &due), 0);
    assert_iso (due, "2026-10-08T17:00:00+08:00");
    assert_int_equal (workcal_due (cal, start, "working-hours", 0.25, &due), 0);
    assert_iso (due, "2026-09-30T16:15:00+08:00");
    assert_int_equal (workcal_due (cal, start, "working-days", 1, &due), 0);
    assert_iso (due, "2026-10-08T16:00:00+08:00");
    assert_int_equal (due, add_working_days (start, 1, cal));
    assert_int_equal (workcal_due (cal, start, "working-days", 0.5, &due), 0);
    assert_iso (due, "2026-10-08T10:30:00+08:00");
    assert_int_equal (workcal_due (cal, start, "hours", 8, &due), 0);
    assert_iso (due, "2026-10-01T00:00:00+08:00");
    assert_int_equal (workcal_due (cal, start, "days", 2, &due), 0);
    assert_iso (due, "2026-10-02T16:00:00+08:00");
    assert_int_equal (workcal_due (cal, start, "working-hours", 0, &due), 0);
    assert_int_equal (due, start);
    //  Refused: unknown unit, bad amounts; *due_ms untouched.
    due = 42;
    assert_int_equal (workcal_due (cal, start, "weeks", 1, &due), -1);
    assert_int_equal (workcal_due (cal, start, NULL, 1, &due), -1);
    assert_int_equal (workcal_due (cal, start, "hours", -1, &due), -1);
    assert_int_equal (workcal_due (cal, start, "hours", 0.0 / 0.0, &due), -1);
    assert_int_equal (workcal_due (cal, start, "hours", 1e300, &due), -1);
    assert_int_equal (due, 42);
}

static void
test_against_reference (void **state)
{
    workcal_t *cal = *state;
    //  Whole-minute starts from mid-2025 to mid-2027 and durations up to
    //  three working days, checked against the minute-by-minute reference.
    uint64_t seed = 20261001;
    int64_t low = s_at ("2025-06-01") / MINUTE_MS;
    int64_t high = s_at ("2027-06-30") / MINUTE_MS;
    for (int i = 0; i < 600; i++) {
        int64_t start = s_random_between (&seed, low, high) * MINUTE_MS;
        int64_t minutes = s_random_between (&seed, 1, 3 * 7 * 60);
        int64_t expected = s_reference_add (start, minutes);
        int64_t due = add_working_time (start, minutes * MINUTE_MS, cal);
        if (due != expected) {
            char a [40], b [40], c [40];
            fail_msg ("start %s + %lld min: got %s, reference %s",
                      cb_time_format_iso (start, a, sizeof a), (long long) minutes,
                      cb_time_format_iso (due, b, sizeof b), cb_time_format_iso (expected, c, sizeof c));
        }
        int64_t end = start + s_random_between (&seed, 0, 5 * 1440) * MINUTE_MS;
        assert_int_equal (working_time_between (start, end, cal), s_reference_between (start, end));
    }
}

static void
test_random_properties (void **state)
{
    workcal_t *cal = *state;
    uint64_t seed = 12345;
    int64_t low = s_at ("2024-01-01");
    int64_t high = s_at ("2029-12-31");
    for (int i = 0; i < 20000; i++) {
        int64_t start = s_random_between (&seed, low, high);
        //  Mostly short limits, some up to 60 working days.
        int64_t duration = (i % 4 == 0)
            ? s_random_between (&seed, 1, 60 * 7 * HOUR_MS)
            : s_random_between (&seed, 1, 8 * HOUR_MS);
        int64_t due = add_working_time (start, duration, cal);
        //  The round trip is exact.
        assert_int_equal (working_time_between (start, due, cal), duration);
        assert_true (due > start);
        //  The earliest such instant: the millisecond before it was office time.
        assert_int_equal (working_time_between (due - 1, due, cal), 1);
        //  Monotonic in the duration and in the start.
        int64_t more = s_random_between (&seed, 0, 3 * HOUR_MS);
        assert_true (add_working_time (start, duration + more, cal) >= due);
        int64_t later = start + s_random_between (&seed, 0, 3 * DAY_MS);
        assert_true (add_working_time (later, duration, cal) >= due);
        //  Additive: two steps equal one.
        int64_t first = s_random_between (&seed, 1, duration);
        assert_int_equal (add_working_time (add_working_time (start, first, cal), duration - first, cal), due);
        //  Between is additive over a split point.
        int64_t middle = start + (due - start) / 3;
        assert_int_equal (working_time_between (start, middle, cal)
                          + working_time_between (middle, due, cal), duration);
    }
}

static void
test_far_from_the_listed_year (void **state)
{
    workcal_t *cal = *state;
    //  2100: plain weeks. Friday 2100-01-01 10:00 + 30 working days.
    int64_t start = s_at ("2100-01-01T10:00");
    int64_t due = add_working_days (start, 30, cal);
    assert_iso (due, "2100-02-12T10:00:00+08:00");
    assert_int_equal (working_time_between (start, due, cal), 30 * 7 * HOUR_MS);
    //  A long limit from 1999 into 2026 round-trips.
    start = s_at ("1999-05-05T09:00");
    int64_t duration = 5000 * 7 * HOUR_MS + 123;
    due = add_working_time (start, duration, cal);
    assert_int_equal (working_time_between (start, due, cal), duration);
    //  A whole number of plain weeks, after and before the listed year:
    //  ends at Thursday's close, not at Friday's opening.
    assert_add (cal, "2027-01-01T08:30+08:00", 35 * HOUR_MS, "2027-01-07T17:30:00+08:00");
    assert_add (cal, "2027-01-01T00:00+08:00", 70 * HOUR_MS, "2027-01-14T17:30:00+08:00");
    assert_add (cal, "2025-12-01T00:00+08:00", 35 * HOUR_MS, "2025-12-05T17:30:00+08:00");
    assert_add (cal, "2025-11-28T00:00+08:00", 35 * HOUR_MS, "2025-12-04T17:30:00+08:00");
    //  Before 1970 (negative day numbers): 1969-12-27 was a Saturday.
    assert_false (workcal_is_working_day (cal, 19691227));
    assert_false (workcal_is_working_day (cal, 19691228));
    assert_true (workcal_is_working_day (cal, 19691229));
    assert_true (workcal_is_working_day (cal, 19691231));
    assert_int_equal (working_time_between (s_at ("1969-12-27"), s_at ("1969-12-29"), cal), 0);
    assert_int_equal (working_time_between (s_at ("1969-12-27"), s_at ("1970-01-03"), cal), 5 * 7 * HOUR_MS);
    assert_add (cal, "1969-12-26T17:00+08:00", HOUR_MS, "1969-12-29T09:00:00+08:00");
    //  Before 1900 counts as 1900-01-01 (a Monday).
    assert_iso (add_working_time (s_at ("1800-06-01"), HOUR_MS, cal), "1900-01-01T09:30:00+08:00");
    //  Never: durations that would end after 9999, or start beyond it.
    assert_int_equal (add_working_time (start, INT64_MAX, cal), INT64_MAX);
    assert_int_equal (add_working_time (s_at ("9999-12-31T17:00"), HOUR_MS, cal), INT64_MAX);
    assert_int_equal (add_working_time (INT64_MAX - 1, HOUR_MS, cal), INT64_MAX);
    assert_int_equal (add_working_days (s_at ("9999-12-31T09:00"), 2, cal), INT64_MAX);
    //  Extreme instants do not overflow the count.
    assert_true (working_time_between (INT64_MIN, INT64_MAX, cal) > 0);
    assert_int_equal (working_time_between (INT64_MIN, INT64_MIN + DAY_MS, cal), 0);
}

static void
test_speed (void **state)
{
    workcal_t *cal = *state;
    //  Thirty working days must be a few index lookups, not a walk: 100,000
    //  of them in well under a second even under sanitizers.
    int64_t start = s_at ("2026-01-05T10:00");
    int64_t before = cb_clock_mono_ms ();
    int64_t checksum = 0;
    for (int i = 0; i < 100000; i++)
        checksum += add_working_days (start + (int64_t) i * 37 * MINUTE_MS, 30, cal) & 1;
    int64_t elapsed = cb_clock_mono_ms () - before;
    assert_true (checksum >= 0);
    assert_true (elapsed < 2000);
}

static void
test_default_equals_file (void **state)
{
    workcal_t *cal = *state;
    char path [4096];
    const char *source_dir = getenv ("CIVICBUS_SOURCE_DIR");
    const char *relative = "deploy/config/calendar-cn-2026.json";
    char *text = NULL;
    size_t len = 0;
    if (source_dir && *source_dir) {
        snprintf (path, sizeof path, "%s/%s", source_dir, relative);
        text = s_read_text_file (path, &len);
    }
#ifdef CIVICBUS_SOURCE_DIR
    if (!text) {
        snprintf (path, sizeof path, "%s/%s", CIVICBUS_SOURCE_DIR, relative);
        text = s_read_text_file (path, &len);
    }
#endif
    const char *prefixes [] = { "", "../", "../../", "../../../" };
    for (size_t i = 0; !text && i < sizeof prefixes / sizeof prefixes [0]; i++) {
        snprintf (path, sizeof path, "%s%s", prefixes [i], relative);
        text = s_read_text_file (path, &len);
    }
    if (!text)
        fail_msg ("cannot find %s (set CIVICBUS_SOURCE_DIR)", relative);

    char err [256];
    workcal_t *loaded = workcal_from_json (text, len, err, sizeof err);
    free (text);
    if (!loaded)
        fail_msg ("%s: %s", path, err);
    assert_string_equal (workcal_name (loaded), workcal_name (cal));
    assert_int_equal (workcal_standard_day_ms (loaded), workcal_standard_day_ms (cal));
    //  Every half hour from 2025-12 to 2027-01 holds the same office time,
    //  and every day is the same kind of day.
    int64_t from = s_at ("2025-12-01");
    int64_t to = s_at ("2027-02-01");
    for (int64_t t = from; t < to; t += 30 * MINUTE_MS)
        assert_int_equal (working_time_between (t, t + 30 * MINUTE_MS, loaded),
                          working_time_between (t, t + 30 * MINUTE_MS, cal));
    for (int64_t t = from; t < to; t += DAY_MS) {
        int date = cb_time_local_yyyymmdd (t);
        assert_int_equal (workcal_is_working_day (loaded, date), workcal_is_working_day (cal, date));
    }
    //  And both agree with the reference over the year.
    for (int64_t t = s_at ("2026-01-01"); t < s_at ("2027-01-01"); t += 30 * MINUTE_MS)
        assert_int_equal (working_time_between (t, t + 30 * MINUTE_MS, loaded),
                          s_reference_is_office_minute (t) ? 30 * MINUTE_MS : 0);
    workcal_destroy (&loaded);
    assert_null (loaded);
    workcal_destroy (&loaded);          //  safe twice
}

//  Parses `json`, which must fail with exactly `expected`.
static void
s_expect_error (const char *json, const char *expected)
{
    char err [256] = "unchanged";
    workcal_t *cal = workcal_from_json (json, strlen (json), err, sizeof err);
    if (cal) {
        workcal_destroy (&cal);
        fail_msg ("accepted: %s", json);
    }
    if (strcmp (err, expected) != 0)
        fail_msg ("for %s\n  got      \"%s\"\n  expected \"%s\"", json, err, expected);
}

#define HEAD "{\"name\": \"t\", \"timezone\": \"Asia/Shanghai\", "
#define HOURS "\"office_hours\": {\"mon\": [\"08:30-12:00\", \"14:00-17:30\"], \"fri\": [\"09:00-12:00\"]}"

static void
test_json_errors (void **state)
{
    (void) state;
    //  Not JSON at all: jansson's words, with where it stopped.
    const char *texts [] = { "", "{\"name\": ", "{\"name\": \"x\"} trailing", "\xff\xfe" };
    for (size_t i = 0; i < sizeof texts / sizeof texts [0]; i++) {
        char err [256] = "";
        assert_null (workcal_from_json (texts [i], strlen (texts [i]), err, sizeof err));
        assert_non_null (strstr (err, "calendar: not JSON: "));
        assert_non_null (strstr (err, "(line "));
    }
}

static void
test_json_field_errors (void **state)
{
    (void) state;
    s_expect_error ("[]", "calendar: must be a JSON object");
    s_expect_error ("{\"timezone\": \"Asia/Shanghai\", " HOURS "}", "name: required, a non-empty string");
    s_expect_error ("{\"name\": \"\", \"timezone\": \"Asia/Shanghai\", " HOURS "}",
                    "name: required, a non-empty string");
    s_expect_error ("{\"name\": \"t\", " HOURS "}", "timezone: required, \"Asia/Shanghai\"");
    s_expect_error ("{\"name\": \"t\", \"timezone\": \"Europe/Paris\", " HOURS "}",
                    "timezone: 'Europe/Paris' is not supported; only \"Asia/Shanghai\"");
    s_expect_error (HEAD "\"holidays\": []}", "office_hours: required");
    s_expect_error (HEAD "\"office_hours\": []}", "office_hours: must be an object with keys mon..sun");
    s_expect_error (HEAD "\"office_hours\": {\"monday\": []}}",
                    "office_hours.monday: not a weekday (mon, tue, wed, thu, fri, sat, sun)");
    s_expect_error (HEAD "\"office_hours\": {\"mon\": \"08:30-12:00\"}}",
                    "office_hours.mon: must be a list of \"HH:MM-HH:MM\"");
    s_expect_error (HEAD "\"office_hours\": {\"tue\": [\"08:30-12:00\", \"8:30-12:00\"]}}",
                    "office_hours.tue[1]: not an interval \"HH:MM-HH:MM\"");
    s_expect_error (HEAD "\"office_hours\": {\"tue\": [\"08:30-25:00\"]}}",
                    "office_hours.tue[0]: not an interval \"HH:MM-HH:MM\"");
    s_expect_error (HEAD "\"office_hours\": {\"tue\": [\"08:60-12:00\"]}}",
                    "office_hours.tue[0]: not an interval \"HH:MM-HH:MM\"");
    s_expect_error (HEAD "\"office_hours\": {\"tue\": [8]}}",
                    "office_hours.tue[0]: not an interval \"HH:MM-HH:MM\"");
    s_expect_error (HEAD "\"office_hours\": {\"wed\": [\"12:00-08:30\"]}}",
                    "office_hours.wed[0]: '12:00-08:30' closes before it opens");
    s_expect_error (HEAD "\"office_hours\": {\"wed\": [\"09:00-09:00\"]}}",
                    "office_hours.wed[0]: '09:00-09:00' closes before it opens");
    s_expect_error (HEAD "\"office_hours\": {\"thu\": [\"08:30-12:00\", \"11:00-17:30\"]}}",
                    "office_hours.thu[1]: '11:00-17:30' overlaps or precedes the interval before it");
    s_expect_error (HEAD "\"office_hours\": {\"thu\": [\"01:00-02:00\", \"03:00-04:00\", \"05:00-06:00\","
                    " \"07:00-08:00\", \"09:00-10:00\", \"11:00-12:00\", \"13:00-14:00\", \"15:00-16:00\","
                    " \"17:00-18:00\"]}}",
                    "office_hours.thu: more than 8 intervals");
    s_expect_error (HEAD HOURS ", \"holiday\": []}", "calendar: unknown key 'holiday'");
    s_expect_error (HEAD HOURS ", \"holidays\": {}}", "holidays: must be a list");
    s_expect_error (HEAD HOURS ", \"adjusted_working_days\": \"2026-02-14\"}",
                    "adjusted_working_days: must be a list");
    //  The example of the brief: the fourth holiday is not a date.
    s_expect_error (HEAD HOURS ", \"holidays\": [\"2026-01-01\", \"2026-01-02\", \"2026-01-03\", \"2026-02-30\"]}",
                    "holidays[3]: '2026-02-30' is not a date");
    s_expect_error (HEAD HOURS ", \"holidays\": [\"2026-1-1\"]}", "holidays[0]: '2026-1-1' is not a date");
    s_expect_error (HEAD HOURS ", \"holidays\": [\"2026-01-01T00:00\"]}",
                    "holidays[0]: '2026-01-01T00:00' is not a date");
    s_expect_error (HEAD HOURS ", \"holidays\": [20260101]}",
                    "holidays[0]: must be a date or an object {\"from\", \"to\"} or {\"date\"}");
    s_expect_error (HEAD HOURS ", \"holidays\": [{\"from\": \"2026-10-01\", \"to\": \"2026-10-32\"}]}",
                    "holidays[0].to: '2026-10-32' is not a date");
    s_expect_error (HEAD HOURS ", \"holidays\": [{\"from\": 1, \"to\": \"2026-10-07\"}]}",
                    "holidays[0].from: must be a date \"YYYY-MM-DD\"");
    s_expect_error (HEAD HOURS ", \"holidays\": [{\"from\": \"2026-10-07\", \"to\": \"2026-10-01\"}]}",
                    "holidays[0]: \"to\" 2026-10-01 is before \"from\" 2026-10-07");
    s_expect_error (HEAD HOURS ", \"holidays\": [{\"from\": \"2026-10-07\"}]}",
                    "holidays[0]: needs \"date\", or both \"from\" and \"to\"");
    s_expect_error (HEAD HOURS ", \"holidays\": [{\"date\": \"2026-10-07\", \"to\": \"2026-10-08\"}]}",
                    "holidays[0]: has \"date\" and \"from\"/\"to\"; use one");
    s_expect_error (HEAD HOURS ", \"holidays\": [{\"date\": \"2026-10-07\", \"nmae\": \"x\"}]}",
                    "holidays[0]: unknown key 'nmae'");
    s_expect_error (HEAD HOURS ", \"holidays\": [{\"date\": \"2026-10-07\", \"name\": 7}]}",
                    "holidays[0].name: must be a string");
    s_expect_error (HEAD HOURS ", \"holidays\": [{\"from\": \"2026-01-01\", \"to\": \"2027-06-01\"}]}",
                    "holidays[0]: longer than 366 days");
    s_expect_error (HEAD HOURS ", \"holidays\": [\"1899-12-31\"]}",
                    "holidays[0]: '1899-12-31' is outside the years 1900..9999");
    s_expect_error (HEAD HOURS ", \"holidays\": [\"2000-01-01\", \"2101-01-01\"]}",
                    "holidays and adjusted_working_days span more than 100 years");
    //  Adjusted working days.
    s_expect_error (HEAD HOURS ", \"adjusted_working_days\": [\"2026-01-05\"]}",
                    "adjusted_working_days[0]: 2026-01-05 is a Monday, already a working day");
    s_expect_error (HEAD HOURS ", \"adjusted_working_days\": [{\"date\": \"2026-02-14\", \"hours_of\": \"sat\"}]}",
                    "adjusted_working_days[0].hours_of: 'sat' has no office hours");
    s_expect_error (HEAD HOURS ", \"adjusted_working_days\": [{\"date\": \"2026-02-14\", \"hours_of\": \"monday\"}]}",
                    "adjusted_working_days[0].hours_of: must be a weekday (mon..sun)");
    s_expect_error (HEAD HOURS ", \"adjusted_working_days\": [{\"hours_of\": \"mon\"}]}",
                    "adjusted_working_days[0]: needs \"date\"");
    s_expect_error (HEAD HOURS ", \"adjusted_working_days\": [{\"date\": \"2026-02-31\"}]}",
                    "adjusted_working_days[0].date: '2026-02-31' is not a date");
    s_expect_error (HEAD HOURS ", \"adjusted_working_days\": [true]}",
                    "adjusted_working_days[0]: must be a date or an object {\"date\", \"hours_of\"}");
    s_expect_error (HEAD HOURS ", \"adjusted_working_days\": [\"2026-02-14\", {\"date\": \"2026-02-14\","
                    " \"hours_of\": \"fri\"}]}",
                    "adjusted_working_days[1]: the date is listed with other hours in adjusted_working_days[0]");
    //  Conflict with a holiday, whichever comes first in the file.
    s_expect_error (HEAD HOURS ", \"adjusted_working_days\": [\"2026-02-28\", \"2026-02-14\"],"
                    " \"holidays\": [\"2026-01-01\", {\"from\": \"2026-02-14\", \"to\": \"2026-02-23\"}]}",
                    "adjusted_working_days[1]: the date is also a holiday (holidays[1])");
    s_expect_error ("{\"name\": \"t\", \"timezone\": \"Asia/Shanghai\", \"office_hours\": {\"tue\": [\"08:30-12:00\"]},"
                    " \"adjusted_working_days\": [\"2026-02-14\"]}",
                    "adjusted_working_days[0]: Monday has no office hours; say \"hours_of\"");
    //  Duplicate keys are refused by the JSON reader.
    char err [256];
    const char *duplicate = HEAD HOURS ", \"holidays\": [], \"holidays\": []}";
    assert_null (workcal_from_json (duplicate, strlen (duplicate), err, sizeof err));
    assert_non_null (strstr (err, "duplicate"));
}

static void
test_json_error_buffers (void **state)
{
    (void) state;
    //  (\x7d is a closing brace: one in a string literal confuses simple code readers.)
    const char *bad = HEAD HOURS ", \"holidays\": [\"2026-02-30\"]\x7d";
    //  No buffer, a zero-size one, and a short one that is truncated.
    assert_null (workcal_from_json (bad, strlen (bad), NULL, 0));
    char tiny [8] = "xxxxxxx";
    assert_null (workcal_from_json (bad, strlen (bad), tiny, 0));
    assert_string_equal (tiny, "xxxxxxx");
    assert_null (workcal_from_json (bad, strlen (bad), tiny, sizeof tiny));
    assert_string_equal (tiny, "holiday");
    //  The length is honoured: the text need not be NUL-terminated.
    const char *good = HEAD HOURS "\x7dgarbage";
    char err [256];
    workcal_t *cal = workcal_from_json (good, strlen (good) - strlen ("garbage"), err, sizeof err);
    assert_non_null (cal);
    workcal_destroy (&cal);
    assert_null (workcal_from_json (good, strlen (good), err, sizeof err));
    assert_null (workcal_from_json (NULL, 0, err, sizeof err));
    assert_string_equal (err, "calendar: no text");
}

static void
test_json_custom_calendar (void **state)
{
    (void) state;
    //  Saturday morning office, a short Friday, single-date holidays in both
    //  forms, a Sunday that works with Friday's hours, and no Monday.
    const char *json =
        "{\"name\": \"district-x\", \"timezone\": \"Asia/Shanghai\","
        " \"description\": \"test\","
        " \"office_hours\": {\"tue\": [\"09:00-12:00\", \"13:00-18:00\"],"
        "   \"wed\": [\"09:00-12:00\", \"13:00-18:00\"], \"thu\": [\"09:00-12:00\", \"13:00-18:00\"],"
        "   \"fri\": [\"09:00-12:00\"], \"sat\": [\"09:00-11:00\"], \"sun\": [], \"mon\": []},"
        " \"holidays\": [\"2030-05-01\", {\"date\": \"2030-05-02\", \"name\": \"x\"}],"
        " \"adjusted_working_days\": [{\"date\": \"2030-05-05\", \"hours_of\": \"fri\"}, \"2030-05-06\"]}";
    char err [256];
    workcal_t *cal = workcal_from_json (json, strlen (json), err, sizeof err);
    assert_null (cal);                  //  Monday 05-06 has no hours to follow
    assert_string_equal (err, "adjusted_working_days[1]: Monday has no office hours; say \"hours_of\"");

    json =
        "{\"name\": \"district-x\", \"timezone\": \"Asia/Shanghai\","
        " \"office_hours\": {\"tue\": [\"09:00-12:00\", \"13:00-18:00\"],"
        "   \"wed\": [\"09:00-12:00\", \"13:00-18:00\"], \"thu\": [\"09:00-12:00\", \"13:00-18:00\"],"
        "   \"fri\": [\"09:00-12:00\"], \"sat\": [\"09:00-11:00\"], \"sun\": [], \"mon\": []},"
        " \"holidays\": [\"2030-05-01\", {\"date\": \"2030-05-02\", \"name\": \"x\"}],"
        " \"adjusted_working_days\": [{\"date\": \"2030-05-05\", \"hours_of\": \"fri\"},"
        "   {\"date\": \"2030-05-06\", \"hours_of\": \"tue\"}]}";
    cal = workcal_from_json (json, strlen (json), err, sizeof err);
    if (!cal)
        fail_msg ("%s", err);
    assert_string_equal (workcal_name (cal), "district-x");
    //  Monday is closed, so the standard day is the longest: 8 h.
    assert_int_equal (workcal_standard_day_ms (cal), 8 * HOUR_MS);
    //  2030-04-30 is a Tuesday; 05-01 Wed and 05-02 Thu are holidays;
    //  Friday 05-03 09:00-12:00; Saturday 05-04 09:00-11:00; Sunday 05-05
    //  with Friday's hours; Monday 05-06 with Tuesday's.
    assert_false (workcal_is_working_day (cal, 20300501));
    assert_true (workcal_is_working_day (cal, 20300504));
    assert_true (workcal_is_working_day (cal, 20300505));
    assert_true (workcal_is_working_day (cal, 20300506));
    assert_false (workcal_is_working_day (cal, 20300513));   //  an ordinary Monday
    assert_add (cal, "2030-04-30T17:00+08:00", 2 * HOUR_MS, "2030-05-03T10:00:00+08:00");
    assert_add (cal, "2030-05-03T11:00+08:00", 4 * HOUR_MS, "2030-05-05T10:00:00+08:00");
    assert_add (cal, "2030-05-05T11:00+08:00", 5 * HOUR_MS, "2030-05-06T14:00:00+08:00");
    assert_int_equal (working_time_between (s_at ("2030-05-01"), s_at ("2030-05-08"), cal),
                      (3 + 2 + 3 + 8 + 8) * HOUR_MS);
    //  Outside 2030 the weekday hours hold, Saturday mornings included.
    assert_int_equal (working_time_between (s_at ("2031-01-06"), s_at ("2031-01-13"), cal),
                      (0 + 8 + 8 + 8 + 3 + 2 + 0) * HOUR_MS);
    workcal_destroy (&cal);
    workcal_destroy (&cal);
    assert_null (cal);

    //  The standard working day is Monday's, even when another day is longer.
    json = "{\"name\": \"short-monday\", \"timezone\": \"Asia/Shanghai\","
           " \"office_hours\": {\"mon\": [\"09:00-12:00\"], \"tue\": [\"09:00-18:00\"]}}";
    cal = workcal_from_json (json, strlen (json), err, sizeof err);
    assert_non_null (cal);
    assert_int_equal (workcal_standard_day_ms (cal), 3 * HOUR_MS);
    //  Monday 2026-03-02 09:00 + 1 working day (3 h) = Monday 12:00.
    assert_iso (add_working_days (s_at ("2026-03-02T09:00"), 1, cal), "2026-03-02T12:00:00+08:00");
    assert_iso (add_working_days (s_at ("2026-03-02T09:00"), 2, cal), "2026-03-03T12:00:00+08:00");
    workcal_destroy (&cal);
}

static void
test_calendar_without_office_hours (void **state)
{
    (void) state;
    const char *json = "{\"name\": \"closed\", \"timezone\": \"Asia/Shanghai\", \"office_hours\": {}}";
    char err [256];
    workcal_t *cal = workcal_from_json (json, strlen (json), err, sizeof err);
    assert_non_null (cal);
    int64_t start = s_at ("2026-03-02T10:00");
    assert_int_equal (add_working_time (start, 1, cal), INT64_MAX);
    assert_int_equal (add_working_days (start, 1, cal), INT64_MAX);
    assert_int_equal (add_working_time (start, 0, cal), start);
    assert_int_equal (working_time_between (start, start + 365 * DAY_MS, cal), 0);
    assert_false (workcal_is_working_day (cal, 20260302));
    int64_t due = 0;
    assert_int_equal (workcal_due (cal, start, "working-hours", 1, &due), -2);
    assert_int_equal (due, INT64_MAX);
    assert_int_equal (workcal_due (cal, start, "working-days", 1, &due), -2);
    assert_int_equal (workcal_due (cal, start, "hours", 1, &due), 0);
    assert_int_equal (due, start + HOUR_MS);
    workcal_destroy (&cal);

    //  Holidays only, but every weekday closed: the listed year has no
    //  office time either, and a limit starting before it never ends.
    json = "{\"name\": \"closed\", \"timezone\": \"Asia/Shanghai\", \"office_hours\": {\"sun\": []},"
           " \"holidays\": [\"2026-05-01\"]}";
    cal = workcal_from_json (json, strlen (json), err, sizeof err);
    assert_non_null (cal);
    assert_int_equal (add_working_time (s_at ("2025-03-02T10:00"), HOUR_MS, cal), INT64_MAX);
    assert_int_equal (add_working_time (s_at ("2026-03-02T10:00"), HOUR_MS, cal), INT64_MAX);
    workcal_destroy (&cal);
}

static void
test_around_the_clock_calendar (void **state)
{
    (void) state;
    //  A 24-hour service desk: 00:00-24:00 every day, one holiday.
    const char *json =
        "{\"name\": \"24x7\", \"timezone\": \"Asia/Shanghai\", \"office_hours\": {"
        " \"mon\": [\"00:00-24:00\"], \"tue\": [\"00:00-24:00\"], \"wed\": [\"00:00-24:00\"],"
        " \"thu\": [\"00:00-24:00\"], \"fri\": [\"00:00-24:00\"], \"sat\": [\"00:00-24:00\"],"
        " \"sun\": [\"00:00-24:00\"]}, \"holidays\": [\"2026-10-01\"]}";
    char err [256];
    workcal_t *cal = workcal_from_json (json, strlen (json), err, sizeof err);
    if (!cal)
        fail_msg ("%s", err);
    //  Ends at 24:00, i.e. the next midnight, then skips the holiday.
    assert_add (cal, "2026-09-30T12:00+08:00", 12 * HOUR_MS, "2026-10-01T00:00:00+08:00");
    assert_add (cal, "2026-09-30T12:00+08:00", 13 * HOUR_MS, "2026-10-02T01:00:00+08:00");
    assert_int_equal (working_time_between (s_at ("2026-09-01"), s_at ("2026-11-01"), cal), 60 * DAY_MS);
    //  Elsewhere it equals calendar time.
    int64_t start = s_at ("2027-03-03T03:03:03");
    assert_int_equal (add_working_time (start, 1000 * HOUR_MS, cal), start + 1000 * HOUR_MS);
    workcal_destroy (&cal);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_default_calendar, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_is_working_day, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_whole_years, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_spring_festival, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_national_day, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_starts_outside_office_hours, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_limit_ends_at_closing_time, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_zero_and_negative_durations, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_year_boundary, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_working_days, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_due_units, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_against_reference, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_random_properties, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_far_from_the_listed_year, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_speed, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_default_equals_file, s_setup, s_teardown),
        cmocka_unit_test (test_json_errors),
        cmocka_unit_test (test_json_field_errors),
        cmocka_unit_test (test_json_error_buffers),
        cmocka_unit_test (test_json_custom_calendar),
        cmocka_unit_test (test_calendar_without_office_hours),
        cmocka_unit_test (test_around_the_clock_calendar),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
