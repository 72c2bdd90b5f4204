/*  clock.h — the time every service reads, settable by tests, and ISO 8601.

    Production code asks cb_clock_now_ms() for "now". A test (or a fault test
    through the CIVICBUS_CLOCK_OFFSET_MS environment variable) can fix or shift
    the clock, so time limits and timers are tested without waiting. The civil
    time zone is Asia/Shanghai: UTC+8 all year (no daylight saving since 1991),
    so conversions use a fixed offset rather than the process's TZ. */

#ifndef CIVICBUS_CLOCK_H
#define CIVICBUS_CLOCK_H

#include <stdint.h>
#include <stddef.h>

#define CB_SHANGHAI_OFFSET_MS (8LL * 3600 * 1000)

//  Milliseconds since the Unix epoch: the fixed time if one is set, else the
//  real time plus the offset (CIVICBUS_CLOCK_OFFSET_MS, read once; or, when
//  CIVICBUS_CLOCK_FILE names a file, the offset written in it, re-read when
//  the file changes: integration tests move a running service's clock so).
int64_t cb_clock_now_ms (void);
//  A monotonic reading for measuring intervals and timeouts; never fixed.
int64_t cb_clock_mono_ms (void);
//  Tests: fix the clock at `ms` (0 returns to real time).
void cb_clock_set_ms (int64_t ms);
//  Tests: move a fixed clock forward (or the offset, when not fixed).
void cb_clock_advance_ms (int64_t delta_ms);

//  Formats `ms` as "2026-09-30T16:00:00+08:00" (Asia/Shanghai) into buf
//  (at least 32 bytes). Returns buf.
char *cb_time_format_iso (int64_t ms, char *buf, size_t cap);
//  Parses ISO 8601 date-times: "2026-09-30T16:00+08:00", "...:05Z",
//  "2026-09-30T16:00:05.123+0800", "2026-09-30" (midnight Asia/Shanghai),
//  and a local time without zone (taken as Asia/Shanghai). Returns 0 and sets
//  *ms, or -1 when the text is not such a time.
int cb_time_parse_iso (const char *text, int64_t *ms);
//  The Asia/Shanghai calendar date of `ms` as YYYYMMDD (e.g. 20261129).
int cb_time_local_yyyymmdd (int64_t ms);

#endif
