/*  workcal.h — working-time calendars: time limits that count office hours.

    A 12345 time limit such as "sign within 1 working day" or "resolve in 4
    working hours" counts only office time on the city's calendar: office
    hours per weekday, minus public holidays, plus the adjusted working
    weekends (调休上班) of the State Council's yearly notice. This module turns
    such limits into instants and back. It is pure: no I/O, no clock; the only
    input is the JSON text the caller hands in.

    Time: every instant is Unix milliseconds. Civil time is Asia/Shanghai, a
    fixed UTC+8 (CB_SHANGHAI_OFFSET_MS in civicbus/clock.h); the process TZ is
    never read.

    Which hours a day has:
      - a listed holiday has none;
      - a listed adjusted working day has the office hours of the weekday it
        follows (normally Monday's);
      - every other day has its own weekday's office hours.
    Days outside the years the calendar lists (e.g. 2027 for cn-2026) have no
    holidays and no adjustments: each follows its own weekday's hours, which
    for a normal calendar means weekends off and weekdays on. Load the next
    year's notice when it is published (each November).

    Counting rules (add_working_time):
      - counting starts at `start`, or at the next opening when `start` is
        outside office hours (night, lunch break, weekend, holiday);
      - the result is the EARLIEST instant at which the duration has elapsed,
        so a limit that ends exactly at a closing time (12:00, 17:30) returns
        that closing time, not the next opening;
      - a duration <= 0 returns `start` unchanged, inside or outside office
        hours (nothing has to elapse);
      - INT64_MAX means "never": the calendar has no office time left to
        count (e.g. no office hours at all), or the result would fall after
        9999-12-31. Instants before 1900-01-01 count as 1900-01-01 and
        after 9999-12-31 as its end (working_time_between).
    These make working_time_between (s, add_working_time (s, d)) == d for
    every d > 0, and both functions monotonic.

    "N working days" (add_working_days) is N times the standard working day
    (Monday's office hours, 7 h on cn-2026) of office time. For a start inside
    office hours, on days of equal hours, this is the same clock time N
    working days later, the usual 12345 practice (signed Tuesday 10:00, 5
    working days -> due at 10:00 on the fifth working day after, holidays
    skipped). For a start outside office hours counting begins at the next
    opening, so the limit ends at the close of the Nth working day (received
    Monday 20:00, 1 working day -> Tuesday 17:30; received at 13:00 in the
    lunch break -> the next day's 12:00, which has the same office time as
    14:00). Unlike "end of the Nth following working day", it does not grant
    a ticket received at 08:31 nearly a day more than one received at 08:29,
    and it agrees with working_time_between, which the time-limit lights use.

    Cost: the calendar precomputes each listed day's office time and running
    totals, so every call is O(log days) plus a few interval steps; days past
    the listed years are skipped a week at a time. Thirty working days take
    well under a microsecond.

    JSON format (deploy/config/calendar-cn-2026.json is the real example):

    {
      "name": "cn-2026",                          required, non-empty string
      "timezone": "Asia/Shanghai",                required, the only one supported
      "description": "...", "source": "...",      optional, ignored
      "office_hours": {                           required; keys "mon".."sun",
        "mon": ["08:30-12:00", "14:00-17:30"],    a missing key is a closed day;
        ...                                       "HH:MM-HH:MM", 00:00..24:00,
        "sat": [], "sun": []                      ascending, not overlapping,
      },                                          at most WORKCAL_MAX_INTERVALS
      "holidays": [                               optional; days off:
        "2026-04-05",                             a date,
        {"date": "2026-04-05", "name": "..."},    or one date with a name,
        {"from": "2026-10-01", "to": "2026-10-07",
         "name": "National Day"}                  or an inclusive range (<= 366 days)
      ],
      "adjusted_working_days": [                  optional; days that would be off
        "2026-02-14",                             but work, with Monday's hours,
        {"date": "2026-10-10", "hours_of": "mon", or another weekday's ("mon".."sun")
         "name": "National Day"}
      ]
    }
    Unknown keys are refused (a typo must not silently drop holidays). A date
    may not be both a holiday and an adjusted working day; an adjusted
    working day must be a day its own weekday leaves closed; all listed dates
    must lie within 100 years. */

#ifndef CIVICBUS_WORKCAL_H
#define CIVICBUS_WORKCAL_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

//  Most office-hour intervals one weekday may have.
#define WORKCAL_MAX_INTERVALS 8

typedef struct _workcal_t workcal_t;

//  The built-in mainland China 2026 calendar (the State Council notice of
//  2025-11-04; office hours 08:30-12:00 and 14:00-17:30 Monday to Friday),
//  identical to deploy/config/calendar-cn-2026.json, so services work without
//  a calendar file. Returns NULL only when out of memory.
workcal_t *workcal_new_default (void);

//  Parses a calendar in the JSON format above from `text` (`len` bytes, need
//  not be NUL-terminated). Returns the calendar, or NULL with a message in
//  `err` (if errcap > 0) naming the bad field, e.g.
//  "holidays[3]: '2026-02-30' is not a date".
workcal_t *workcal_from_json (const char *text, size_t len, char *err, size_t errcap);

//  Destroys the calendar and sets *self_p to NULL; safe to call twice.
void workcal_destroy (workcal_t **self_p);

//  The calendar's "name".
const char *workcal_name (const workcal_t *cal);

//  The office time of a standard working day in ms (Monday's hours, or the
//  longest weekday's if Monday is closed): the unit of "working days".
int64_t workcal_standard_day_ms (const workcal_t *cal);

//  The instant when `duration_ms` of office time has elapsed counting from
//  `start_ms` (rules in the header comment). INT64_MAX means never.
int64_t add_working_time (int64_t start_ms, int64_t duration_ms, const workcal_t *cal);

//  The office time in [a_ms, b_ms), in ms; 0 when b_ms <= a_ms.
int64_t working_time_between (int64_t a_ms, int64_t b_ms, const workcal_t *cal);

//  `days` working days after `start_ms`: add_working_time with days times
//  workcal_standard_day_ms (see the header comment for why). days <= 0
//  returns start_ms; INT64_MAX means never.
int64_t add_working_days (int64_t start_ms, int days, const workcal_t *cal);

//  True when the Asia/Shanghai date `yyyymmdd` (e.g. 20261010) has office
//  hours. False for a date that does not exist (20260230).
bool workcal_is_working_day (const workcal_t *cal, int yyyymmdd);

//  The due instant of a limit of `amount` `unit`s from `start_ms`, for
//  `civicbus calendar due` and SLA policies. Units: "working-hours",
//  "working-days" (fractions allowed: 0.5 = half a standard day),
//  "hours" and "days" (calendar time, holidays ignored). The amount is
//  rounded to the millisecond. Returns 0 and sets *due_ms; -1 for an unknown
//  unit or an amount that is negative, not finite or above 10^9
//  (*due_ms untouched); -2 when the limit never ends on this calendar
//  (*due_ms = INT64_MAX).
int workcal_due (const workcal_t *cal, int64_t start_ms, const char *unit,
                 double amount, int64_t *due_ms);

#endif
