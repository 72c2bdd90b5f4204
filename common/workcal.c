/*  workcal.c — working-time calendars (see workcal.h for the rules).

    Everything is computed from one function, F(t): the office time elapsed
    from the first listed day's midnight to instant t (negative before it).
    F is continuous and non-decreasing, so
        working_time_between (a, b)  = F(b) - F(a)
        add_working_time (s, d)      = the smallest t with F(t) >= F(s) + d
    which gives the closing-time rule, the round trip and monotonicity by
    construction instead of by careful loops.

    F is cheap: the listed years are precomputed into a running total per
    day (binary search to invert); beyond them every day follows its weekday,
    so whole weeks are skipped by division. Days are numbered from
    1970-01-01 in Asia/Shanghai civil time. */

#include "civicbus/workcal.h"
#include "civicbus/clock.h"

#include <jansson.h>
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DAY_MS        86400000LL
#define S_MIN_DAY       (-25567LL)      //  1900-01-01
#define S_END_DAY       2932897LL       //  10000-01-01, first day not supported
#define S_MIN_MS        (S_MIN_DAY * S_DAY_MS - CB_SHANGHAI_OFFSET_MS)
#define S_END_MS        (S_END_DAY * S_DAY_MS - CB_SHANGHAI_OFFSET_MS)
#define S_MAX_SPAN_DAYS (100 * 366)     //  listed dates must lie within this
#define S_MAX_RANGE_DAYS 366            //  longest holiday range
#define S_PROFILE_OFF   (-1)            //  a holiday: no office hours

typedef struct {
    int32_t open_ms;                    //  since local midnight
    int32_t close_ms;
} s_interval_t;

struct _workcal_t {
    char *name;
    //  Office hours per weekday, 0 = Monday .. 6 = Sunday.
    s_interval_t hours [7][WORKCAL_MAX_INTERVALS];
    int hours_count [7];
    int64_t weekday_ms [7];             //  office time of each weekday
    int64_t week_ms;                    //  of a week without holidays
    int64_t standard_day_ms;
    //  The listed years: days [first_day, first_day + day_count).
    int64_t first_day;
    int64_t day_count;
    int8_t *day_profile;                //  weekday whose hours apply, or S_PROFILE_OFF
    int64_t *cumulative_ms;             //  day_count + 1 running totals; [0] = 0
};

//  One holiday or adjusted working day entry, parsed before the calendar's
//  range is known.
typedef struct {
    int64_t from_day;
    int64_t to_day;                     //  inclusive
    int profile;                        //  S_PROFILE_OFF or a weekday
    bool adjusted;
    const char *field;                  //  "holidays" or "adjusted_working_days"
    size_t index;
} s_entry_t;

static const char *s_weekday_keys [7] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
static const char *s_weekday_names [7] = {
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"
};

//  The built-in calendar: the same data as deploy/config/calendar-cn-2026.json
//  (a unit test holds them equal), parsed by the same code as a file.
static const char s_default_json [] =
    "{\"name\": \"cn-2026\", \"timezone\": \"Asia/Shanghai\","
    " \"source\": \"State Council General Office notice, 2025-11-04\","
    " \"office_hours\": {"
    "   \"mon\": [\"08:30-12:00\", \"14:00-17:30\"],"
    "   \"tue\": [\"08:30-12:00\", \"14:00-17:30\"],"
    "   \"wed\": [\"08:30-12:00\", \"14:00-17:30\"],"
    "   \"thu\": [\"08:30-12:00\", \"14:00-17:30\"],"
    "   \"fri\": [\"08:30-12:00\", \"14:00-17:30\"],"
    "   \"sat\": [], \"sun\": []},"
    " \"holidays\": ["
    "   {\"name\": \"New Year\", \"from\": \"2026-01-01\", \"to\": \"2026-01-03\"},"
    "   {\"name\": \"Spring Festival\", \"from\": \"2026-02-15\", \"to\": \"2026-02-23\"},"
    "   {\"name\": \"Qingming\", \"from\": \"2026-04-04\", \"to\": \"2026-04-06\"},"
    "   {\"name\": \"Labour Day\", \"from\": \"2026-05-01\", \"to\": \"2026-05-05\"},"
    "   {\"name\": \"Dragon Boat\", \"from\": \"2026-06-19\", \"to\": \"2026-06-21\"},"
    "   {\"name\": \"Mid-Autumn\", \"from\": \"2026-09-25\", \"to\": \"2026-09-27\"},"
    "   {\"name\": \"National Day\", \"from\": \"2026-10-01\", \"to\": \"2026-10-07\"}],"
    " \"adjusted_working_days\": ["
    "   {\"date\": \"2026-01-04\", \"hours_of\": \"mon\"},"
    "   {\"date\": \"2026-02-14\", \"hours_of\": \"mon\"},"
    "   {\"date\": \"2026-02-28\", \"hours_of\": \"mon\"},"
    "   {\"date\": \"2026-05-09\", \"hours_of\": \"mon\"},"
    "   {\"date\": \"2026-09-20\", \"hours_of\": \"mon\"},"
    "   {\"date\": \"2026-10-10\", \"hours_of\": \"mon\"}]}";

/* ---- private ---- */

static int
s_fail (char *err, size_t errcap, const char *format, ...)
{
    if (err && errcap > 0) {
        va_list args;
        va_start (args, format);
        vsnprintf (err, errcap, format, args);
        va_end (args);
    }
    return -1;
}

//  Floor division, so days and weekdays are right before 1970 too.
static int64_t
s_floor_div (int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

//  0 = Monday; day 0 (1970-01-01) was a Thursday.
static int
s_weekday_of (int64_t day)
{
    return (int) (day + 3 - s_floor_div (day + 3, 7) * 7);
}

static int64_t
s_day_of (int64_t ms)
{
    return s_floor_div (ms + CB_SHANGHAI_OFFSET_MS, S_DAY_MS);
}

static int64_t
s_day_start_ms (int64_t day)
{
    return day * S_DAY_MS - CB_SHANGHAI_OFFSET_MS;
}

//  "YYYY-MM-DD" -> day number; the clock module's parser rejects dates that
//  do not exist (2026-02-30).
static int
s_parse_date (const char *text, int64_t *day)
{
    if (strlen (text) != 10 || text [4] != '-' || text [7] != '-')
        return -1;
    int64_t midnight_ms;
    if (cb_time_parse_iso (text, &midnight_ms))
        return -1;
    *day = s_day_of (midnight_ms);
    return 0;
}

static int
s_parse_weekday (const char *text)
{
    for (int weekday = 0; weekday < 7; weekday++)
        if (strcmp (text, s_weekday_keys [weekday]) == 0)
            return weekday;
    return -1;
}

//  "HH:MM", 00:00 .. 24:00 -> ms since midnight.
static int
s_parse_clock (const char *text, int32_t *ms)
{
    for (int i = 0; i < 5; i++)
        if (i == 2 ? text [i] != ':' : (text [i] < '0' || text [i] > '9'))
            return -1;
    int hour = (text [0] - '0') * 10 + (text [1] - '0');
    int minute = (text [3] - '0') * 10 + (text [4] - '0');
    if (hour > 24 || minute > 59 || (hour == 24 && minute > 0))
        return -1;
    *ms = (hour * 60 + minute) * 60000;
    return 0;
}

static int
s_parse_office_hours (workcal_t *self, json_t *office_hours, char *err, size_t errcap)
{
    if (!json_is_object (office_hours))
        return s_fail (err, errcap, "office_hours: must be an object with keys mon..sun");
    const char *key;
    json_t *intervals;
    json_object_foreach (office_hours, key, intervals) {
        int weekday = s_parse_weekday (key);
        if (weekday < 0)
            return s_fail (err, errcap, "office_hours.%s: not a weekday (mon, tue, wed, thu, fri, sat, sun)", key);
        if (!json_is_array (intervals))
            return s_fail (err, errcap, "office_hours.%s: must be a list of \"HH:MM-HH:MM\"", key);
        if (json_array_size (intervals) > WORKCAL_MAX_INTERVALS)
            return s_fail (err, errcap, "office_hours.%s: more than %d intervals", key, WORKCAL_MAX_INTERVALS);
        size_t index;
        json_t *item;
        json_array_foreach (intervals, index, item) {
            const char *text = json_string_value (item);
            s_interval_t interval;
            if (!text || strlen (text) != 11 || text [5] != '-'
            ||  s_parse_clock (text, &interval.open_ms)
            ||  s_parse_clock (text + 6, &interval.close_ms))
                return s_fail (err, errcap, "office_hours.%s[%zu]: not an interval \"HH:MM-HH:MM\"", key, index);
            if (interval.open_ms >= interval.close_ms)
                return s_fail (err, errcap, "office_hours.%s[%zu]: '%s' closes before it opens", key, index, text);
            if (index > 0 && interval.open_ms < self->hours [weekday][index - 1].close_ms)
                return s_fail (err, errcap, "office_hours.%s[%zu]: '%s' overlaps or precedes the interval before it",
                               key, index, text);
            self->hours [weekday][index] = interval;
            self->hours_count [weekday] = (int) index + 1;
            self->weekday_ms [weekday] += interval.close_ms - interval.open_ms;
        }
    }
    for (int weekday = 0; weekday < 7; weekday++) {
        self->week_ms += self->weekday_ms [weekday];
        if (self->weekday_ms [weekday] > self->standard_day_ms)
            self->standard_day_ms = self->weekday_ms [weekday];
    }
    if (self->weekday_ms [0] > 0)
        self->standard_day_ms = self->weekday_ms [0];
    return 0;
}

//  Checks that `object` has only `allowed` keys (NULL-terminated).
static int
s_check_keys (json_t *object, const char *const *allowed, const char *where, char *err, size_t errcap)
{
    const char *key;
    json_t *value;
    json_object_foreach (object, key, value) {
        bool known = false;
        for (int i = 0; allowed [i] && !known; i++)
            known = strcmp (key, allowed [i]) == 0;
        if (!known)
            return s_fail (err, errcap, "%s: unknown key '%s'", where, key);
        if (strcmp (key, "name") == 0 || strcmp (key, "description") == 0 || strcmp (key, "source") == 0)
            if (!json_is_string (value))
                return s_fail (err, errcap, "%s.%s: must be a string", where, key);
    }
    return 0;
}

//  Reads the date at `value` (a string) into *day; `where` names it.
static int
s_read_date (json_t *value, int64_t *day, const char *where, char *err, size_t errcap)
{
    const char *text = json_string_value (value);
    if (!text)
        return s_fail (err, errcap, "%s: must be a date \"YYYY-MM-DD\"", where);
    if (s_parse_date (text, day))
        return s_fail (err, errcap, "%s: '%s' is not a date", where, text);
    if (*day < S_MIN_DAY || *day >= S_END_DAY)
        return s_fail (err, errcap, "%s: '%s' is outside the years 1900..9999", where, text);
    return 0;
}

static int
s_parse_holiday (json_t *item, s_entry_t *entry, char *err, size_t errcap)
{
    char where [64], sub [80];
    snprintf (where, sizeof where, "holidays[%zu]", entry->index);
    entry->profile = S_PROFILE_OFF;
    if (json_is_string (item)) {
        if (s_read_date (item, &entry->from_day, where, err, errcap))
            return -1;
        entry->to_day = entry->from_day;
        return 0;
    }
    static const char *const allowed [] = { "name", "date", "from", "to", NULL };
    if (!json_is_object (item))
        return s_fail (err, errcap, "%s: must be a date or an object {\"from\", \"to\"} or {\"date\"}", where);
    if (s_check_keys (item, allowed, where, err, errcap))
        return -1;
    json_t *date = json_object_get (item, "date");
    json_t *from = json_object_get (item, "from");
    json_t *to = json_object_get (item, "to");
    if (date) {
        if (from || to)
            return s_fail (err, errcap, "%s: has \"date\" and \"from\"/\"to\"; use one", where);
        snprintf (sub, sizeof sub, "%s.date", where);
        if (s_read_date (date, &entry->from_day, sub, err, errcap))
            return -1;
        entry->to_day = entry->from_day;
        return 0;
    }
    if (!from || !to)
        return s_fail (err, errcap, "%s: needs \"date\", or both \"from\" and \"to\"", where);
    snprintf (sub, sizeof sub, "%s.from", where);
    if (s_read_date (from, &entry->from_day, sub, err, errcap))
        return -1;
    snprintf (sub, sizeof sub, "%s.to", where);
    if (s_read_date (to, &entry->to_day, sub, err, errcap))
        return -1;
    if (entry->to_day < entry->from_day)
        return s_fail (err, errcap, "%s: \"to\" %s is before \"from\" %s", where,
                       json_string_value (to), json_string_value (from));
    if (entry->to_day - entry->from_day >= S_MAX_RANGE_DAYS)
        return s_fail (err, errcap, "%s: longer than %d days", where, S_MAX_RANGE_DAYS);
    return 0;
}

static int
s_parse_adjusted (const workcal_t *self, json_t *item, s_entry_t *entry, char *err, size_t errcap)
{
    char where [64], sub [80];
    snprintf (where, sizeof where, "adjusted_working_days[%zu]", entry->index);
    entry->adjusted = true;
    entry->profile = 0;                 //  Monday's hours unless told
    json_t *date = item;
    if (json_is_object (item)) {
        static const char *const allowed [] = { "name", "date", "hours_of", NULL };
        if (s_check_keys (item, allowed, where, err, errcap))
            return -1;
        json_t *hours_of = json_object_get (item, "hours_of");
        if (hours_of) {
            const char *text = json_string_value (hours_of);
            entry->profile = text ? s_parse_weekday (text) : -1;
            if (entry->profile < 0)
                return s_fail (err, errcap, "%s.hours_of: must be a weekday (mon..sun)", where);
            if (self->weekday_ms [entry->profile] == 0)
                return s_fail (err, errcap, "%s.hours_of: '%s' has no office hours", where, text);
        }
        date = json_object_get (item, "date");
        if (!date)
            return s_fail (err, errcap, "%s: needs \"date\"", where);
        snprintf (sub, sizeof sub, "%s.date", where);
    }
    else
    if (json_is_string (item))
        snprintf (sub, sizeof sub, "%s", where);
    else
        return s_fail (err, errcap, "%s: must be a date or an object {\"date\", \"hours_of\"}", where);

    if (self->weekday_ms [0] == 0 && entry->profile == 0)
        return s_fail (err, errcap, "%s: Monday has no office hours; say \"hours_of\"", where);
    if (s_read_date (date, &entry->from_day, sub, err, errcap))
        return -1;
    entry->to_day = entry->from_day;
    int weekday = s_weekday_of (entry->from_day);
    if (self->weekday_ms [weekday] > 0)
        return s_fail (err, errcap, "%s: %s is a %s, already a working day", where,
                       json_string_value (date), s_weekday_names [weekday]);
    return 0;
}

//  Lays the entries over the whole years they touch and precomputes the
//  running totals. Entries are valid; only conflicts between them remain.
static int
s_build_days (workcal_t *self, const s_entry_t *entries, size_t count, char *err, size_t errcap)
{
    int64_t min_day = S_END_DAY, max_day = S_MIN_DAY;
    for (size_t i = 0; i < count; i++) {
        if (entries [i].from_day < min_day)
            min_day = entries [i].from_day;
        if (entries [i].to_day > max_day)
            max_day = entries [i].to_day;
    }
    if (count > 0) {
        if (max_day - min_day > S_MAX_SPAN_DAYS)
            return s_fail (err, errcap, "holidays and adjusted_working_days span more than 100 years");
        char text [16];
        int first_year = cb_time_local_yyyymmdd (s_day_start_ms (min_day)) / 10000;
        int last_year = cb_time_local_yyyymmdd (s_day_start_ms (max_day)) / 10000;
        int64_t end_day;
        snprintf (text, sizeof text, "%04d-01-01", first_year);
        int rc = s_parse_date (text, &self->first_day);
        snprintf (text, sizeof text, "%04d-01-01", last_year + 1);
        rc |= s_parse_date (text, &end_day);
        if (rc)                         //  only year 10000, refused above
            return s_fail (err, errcap, "dates beyond 9999");
        self->day_count = end_day - self->first_day;
    }
    self->day_profile = malloc ((size_t) self->day_count + 1);
    self->cumulative_ms = malloc (((size_t) self->day_count + 1) * sizeof (int64_t));
    //  Which entry set each day, to name both sides of a conflict.
    int32_t *set_by = malloc (((size_t) self->day_count + 1) * sizeof (int32_t));
    int rc = 0;
    if (!self->day_profile || !self->cumulative_ms || !set_by) {
        rc = s_fail (err, errcap, "out of memory");
        goto cleanup;
    }
    for (int64_t i = 0; i < self->day_count; i++) {
        self->day_profile [i] = (int8_t) s_weekday_of (self->first_day + i);
        set_by [i] = -1;
    }
    //  Holidays first, so an adjusted day that is also a holiday is caught
    //  whatever the order in the file.
    for (int pass = 0; pass < 2 && rc == 0; pass++)
        for (size_t e = 0; e < count && rc == 0; e++) {
            const s_entry_t *entry = &entries [e];
            if (entry->adjusted != (pass == 1))
                continue;
            for (int64_t day = entry->from_day; day <= entry->to_day; day++) {
                int64_t i = day - self->first_day;
                if (entry->adjusted && set_by [i] >= 0) {
                    const s_entry_t *other = &entries [set_by [i]];
                    if (!other->adjusted)
                        rc = s_fail (err, errcap, "%s[%zu]: the date is also a holiday (%s[%zu])",
                                     entry->field, entry->index, other->field, other->index);
                    else
                    if (other->profile != entry->profile)
                        rc = s_fail (err, errcap, "%s[%zu]: the date is listed with other hours in %s[%zu]",
                                     entry->field, entry->index, other->field, other->index);
                    break;
                }
                self->day_profile [i] = (int8_t) entry->profile;
                set_by [i] = (int32_t) e;
            }
        }
    if (rc == 0) {
        self->cumulative_ms [0] = 0;
        for (int64_t i = 0; i < self->day_count; i++) {
            int profile = self->day_profile [i];
            self->cumulative_ms [i + 1] = self->cumulative_ms [i]
                + (profile == S_PROFILE_OFF ? 0 : self->weekday_ms [profile]);
        }
    }
cleanup:
    free (set_by);
    return rc;
}

static int
s_parse_calendar (workcal_t *self, json_t *root, char *err, size_t errcap)
{
    if (!json_is_object (root))
        return s_fail (err, errcap, "calendar: must be a JSON object");
    static const char *const allowed [] = {
        "name", "description", "source", "timezone", "office_hours",
        "holidays", "adjusted_working_days", NULL
    };
    if (s_check_keys (root, allowed, "calendar", err, errcap))
        return -1;
    const char *name = json_string_value (json_object_get (root, "name"));
    if (!name || !*name)
        return s_fail (err, errcap, "name: required, a non-empty string");
    const char *timezone = json_string_value (json_object_get (root, "timezone"));
    if (!timezone)
        return s_fail (err, errcap, "timezone: required, \"Asia/Shanghai\"");
    if (strcmp (timezone, "Asia/Shanghai") != 0)
        return s_fail (err, errcap, "timezone: '%s' is not supported; only \"Asia/Shanghai\"", timezone);
    json_t *office_hours = json_object_get (root, "office_hours");
    if (!office_hours)
        return s_fail (err, errcap, "office_hours: required");
    if (s_parse_office_hours (self, office_hours, err, errcap))
        return -1;

    json_t *holidays = json_object_get (root, "holidays");
    json_t *adjusted = json_object_get (root, "adjusted_working_days");
    if (holidays && !json_is_array (holidays))
        return s_fail (err, errcap, "holidays: must be a list");
    if (adjusted && !json_is_array (adjusted))
        return s_fail (err, errcap, "adjusted_working_days: must be a list");
    size_t count = json_array_size (holidays) + json_array_size (adjusted);
    s_entry_t *entries = calloc (count + 1, sizeof (s_entry_t));
    if (!entries)
        return s_fail (err, errcap, "out of memory");
    int rc = 0;
    size_t at = 0, index;
    json_t *item;
    json_array_foreach (holidays, index, item) {
        entries [at] = (s_entry_t) { .field = "holidays", .index = index };
        if ((rc = s_parse_holiday (item, &entries [at++], err, errcap)))
            break;
    }
    if (rc == 0)
        json_array_foreach (adjusted, index, item) {
            entries [at] = (s_entry_t) { .field = "adjusted_working_days", .index = index };
            if ((rc = s_parse_adjusted (self, item, &entries [at++], err, errcap)))
                break;
        }
    if (rc == 0)
        rc = s_build_days (self, entries, count, err, errcap);
    free (entries);
    if (rc == 0 && !(self->name = strdup (name)))
        rc = s_fail (err, errcap, "out of memory");
    return rc;
}

static int
s_profile_of (const workcal_t *self, int64_t day)
{
    int64_t index = day - self->first_day;
    if (index >= 0 && index < self->day_count)
        return self->day_profile [index];
    return s_weekday_of (day);
}

//  Office time on a day of `profile` before `time_of_day_ms`.
static int64_t
s_work_before (const workcal_t *self, int profile, int64_t time_of_day_ms)
{
    if (profile == S_PROFILE_OFF)
        return 0;
    int64_t total = 0;
    for (int i = 0; i < self->hours_count [profile]; i++) {
        const s_interval_t *interval = &self->hours [profile][i];
        if (time_of_day_ms >= interval->close_ms)
            total += interval->close_ms - interval->open_ms;
        else {
            if (time_of_day_ms > interval->open_ms)
                total += time_of_day_ms - interval->open_ms;
            break;
        }
    }
    return total;
}

//  Office time of the days [from_day, to_day), which all follow their own
//  weekday (they lie outside the listed years). O(1): whole weeks at once.
static int64_t
s_plain_ms (const workcal_t *self, int64_t from_day, int64_t to_day)
{
    int64_t weeks = (to_day - from_day) / 7;
    int64_t total = weeks * self->week_ms;
    for (int64_t day = from_day + weeks * 7; day < to_day; day++)
        total += self->weekday_ms [s_weekday_of (day)];
    return total;
}

//  F at the midnight that starts `day`: office time since the first listed
//  day's midnight, negative before it.
static int64_t
s_elapsed_at_day (const workcal_t *self, int64_t day)
{
    int64_t end_day = self->first_day + self->day_count;
    if (day < self->first_day)
        return -s_plain_ms (self, day, self->first_day);
    if (day <= end_day)
        return self->cumulative_ms [day - self->first_day];
    return self->cumulative_ms [self->day_count] + s_plain_ms (self, end_day, day);
}

//  F(ms), with ms clamped to the supported years.
static int64_t
s_elapsed (const workcal_t *self, int64_t ms)
{
    ms = ms < S_MIN_MS ? S_MIN_MS : ms > S_END_MS ? S_END_MS : ms;
    int64_t day = s_day_of (ms);
    return s_elapsed_at_day (self, day)
         + s_work_before (self, s_profile_of (self, day), ms - s_day_start_ms (day));
}

//  The instant at which `remaining_ms` (> 0 and at most the day's office
//  time) of `day`'s office hours have passed.
static int64_t
s_instant_in_day (const workcal_t *self, int64_t day, int64_t remaining_ms)
{
    int profile = s_profile_of (self, day);
    assert (profile != S_PROFILE_OFF);
    for (int i = 0; i < self->hours_count [profile]; i++) {
        const s_interval_t *interval = &self->hours [profile][i];
        int64_t length = interval->close_ms - interval->open_ms;
        if (remaining_ms <= length)
            return s_day_start_ms (day) + interval->open_ms + remaining_ms;
        remaining_ms -= length;
    }
    assert (!"remaining time beyond the day's office hours");
    return INT64_MAX;
}

//  From the midnight starting `day`, over days that follow their own weekday,
//  the instant at which `remaining_ms` (> 0) of office time have passed.
//  Whole weeks are skipped by division, then at most seven days are walked.
static int64_t
s_plain_locate (const workcal_t *self, int64_t day, int64_t remaining_ms)
{
    if (self->week_ms == 0)
        return INT64_MAX;               //  no office time ever again
    int64_t weeks = (remaining_ms - 1) / self->week_ms;
    if (weeks > (S_END_DAY - day) / 7)
        return INT64_MAX;
    day += weeks * 7;
    remaining_ms -= weeks * self->week_ms;
    while (remaining_ms > self->weekday_ms [s_weekday_of (day)]) {
        remaining_ms -= self->weekday_ms [s_weekday_of (day)];
        day++;
    }
    if (day >= S_END_DAY)
        return INT64_MAX;
    return s_instant_in_day (self, day, remaining_ms);
}

//  The smallest instant t with F(t) >= target, where target > F(start) and
//  start lies on `from_day`.
static int64_t
s_locate (const workcal_t *self, int64_t target, int64_t from_day)
{
    const int64_t *cumulative = self->cumulative_ms;
    if (target <= 0) {
        //  Reached before the listed years begin, so the start lies before
        //  them too (F(start) < target <= F(first_day) = 0).
        assert (from_day < self->first_day);
        return s_plain_locate (self, from_day, target - s_elapsed_at_day (self, from_day));
    }
    if (target <= cumulative [self->day_count]) {
        //  Binary search: the first day whose running total reaches target.
        int64_t low = 1, high = self->day_count;
        while (low < high) {
            int64_t middle = low + (high - low) / 2;
            if (cumulative [middle] >= target)
                high = middle;
            else
                low = middle + 1;
        }
        return s_instant_in_day (self, self->first_day + low - 1, target - cumulative [low - 1]);
    }
    return s_plain_locate (self, self->first_day + self->day_count,
                           target - cumulative [self->day_count]);
}

/* ---- public ---- */

workcal_t *
workcal_new_default (void)
{
    return workcal_from_json (s_default_json, sizeof s_default_json - 1, NULL, 0);
}

workcal_t *
workcal_from_json (const char *text, size_t len, char *err, size_t errcap)
{
    if (err && errcap > 0)
        *err = '\0';
    if (!text)
        return s_fail (err, errcap, "calendar: no text"), NULL;
    json_error_t error;
    json_t *root = json_loadb (text, len, JSON_REJECT_DUPLICATES, &error);
    if (!root) {
        s_fail (err, errcap, "calendar: not JSON: %s (line %d, column %d)",
                error.text, error.line, error.column);
        return NULL;
    }
    workcal_t *self = calloc (1, sizeof (workcal_t));
    if (!self)
        s_fail (err, errcap, "out of memory");
    else
    if (s_parse_calendar (self, root, err, errcap))
        workcal_destroy (&self);
    json_decref (root);
    return self;
}

void
workcal_destroy (workcal_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        workcal_t *self = *self_p;
        free (self->name);
        free (self->day_profile);
        free (self->cumulative_ms);
        free (self);
        *self_p = NULL;
    }
}

const char *
workcal_name (const workcal_t *cal)
{
    assert (cal);
    return cal->name;
}

int64_t
workcal_standard_day_ms (const workcal_t *cal)
{
    assert (cal);
    return cal->standard_day_ms;
}

int64_t
add_working_time (int64_t start_ms, int64_t duration_ms, const workcal_t *cal)
{
    assert (cal);
    if (duration_ms <= 0)
        return start_ms;
    if (start_ms >= S_END_MS)
        return INT64_MAX;
    int64_t from_ms = start_ms < S_MIN_MS ? S_MIN_MS : start_ms;
    int64_t origin = s_elapsed (cal, from_ms);
    if (origin > 0 && duration_ms > INT64_MAX - origin)
        return INT64_MAX;
    int64_t due_ms = s_locate (cal, origin + duration_ms, s_day_of (from_ms));
    return due_ms >= S_END_MS ? INT64_MAX : due_ms;
}

int64_t
working_time_between (int64_t a_ms, int64_t b_ms, const workcal_t *cal)
{
    assert (cal);
    if (b_ms <= a_ms)
        return 0;
    return s_elapsed (cal, b_ms) - s_elapsed (cal, a_ms);
}

int64_t
add_working_days (int64_t start_ms, int days, const workcal_t *cal)
{
    assert (cal);
    if (days <= 0)
        return start_ms;
    if (cal->standard_day_ms == 0)
        return INT64_MAX;
    return add_working_time (start_ms, days * cal->standard_day_ms, cal);
}

bool
workcal_is_working_day (const workcal_t *cal, int yyyymmdd)
{
    assert (cal);
    if (yyyymmdd < 10101 || yyyymmdd > 99991231)
        return false;
    char text [16];
    snprintf (text, sizeof text, "%04d-%02d-%02d",
              yyyymmdd / 10000, yyyymmdd / 100 % 100, yyyymmdd % 100);
    int64_t day;
    if (s_parse_date (text, &day))
        return false;
    int profile = s_profile_of (cal, day);
    return profile != S_PROFILE_OFF && cal->weekday_ms [profile] > 0;
}

int
workcal_due (const workcal_t *cal, int64_t start_ms, const char *unit,
             double amount, int64_t *due_ms)
{
    assert (cal);
    assert (due_ms);
    if (!unit || !isfinite (amount) || amount < 0 || amount > 1e9)
        return -1;
    bool working;
    double unit_ms;
    if (strcmp (unit, "working-hours") == 0) {
        working = true;
        unit_ms = 3600000.0;
    }
    else
    if (strcmp (unit, "working-days") == 0) {
        working = true;
        unit_ms = (double) cal->standard_day_ms;
    }
    else
    if (strcmp (unit, "hours") == 0) {
        working = false;
        unit_ms = 3600000.0;
    }
    else
    if (strcmp (unit, "days") == 0) {
        working = false;
        unit_ms = (double) S_DAY_MS;
    }
    else
        return -1;

    int64_t amount_ms = llround (amount * unit_ms);
    int64_t due;
    if (!working)
        due = start_ms > INT64_MAX - amount_ms ? INT64_MAX : start_ms + amount_ms;
    else
    if (amount > 0 && cal->standard_day_ms == 0)
        due = INT64_MAX;
    else
        due = add_working_time (start_ms, amount_ms, cal);
    *due_ms = due;
    return due == INT64_MAX ? -2 : 0;
}
