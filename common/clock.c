/*  clock.c — settable clock and ISO 8601 in Asia/Shanghai (see clock.h).

    The fixed time and offset are process-wide on purpose: a clock is the one
    piece of global state a test must be able to move. They are atomics so a
    test thread may move it while service threads read it. */

#include "civicbus/clock.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <time.h>
#include <sys/stat.h>

static _Atomic int64_t s_fixed_ms;
static _Atomic int64_t s_file_checked_ms;   //  monotonic ms of the last look at the clock file
static _Atomic int64_t s_file_mtime_ns;
static _Atomic int64_t s_offset_ms;
static atomic_int s_offset_read;

/* ---- private ---- */

static void
s_read_offset (void)
{
    if (atomic_exchange (&s_offset_read, 1))
        return;
    const char *env = getenv ("CIVICBUS_CLOCK_OFFSET_MS");
    if (env && *env)
        atomic_store (&s_offset_ms, strtoll (env, NULL, 10));
}

//  Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
//  algorithm); avoids timegm() and the process time zone.
static int64_t
s_days_from_civil (int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned) (y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t) doe - 719468;
}

static void
s_civil_from_days (int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned) (z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = (int) (doy - (153 * mp + 2) / 5 + 1);
    *m = (int) (mp < 10 ? mp + 3 : mp - 9);
    *y = (int) ((int64_t) yoe + era * 400 + (*m <= 2));
}

static int
s_digits (const char **p, int n, int *value)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit ((unsigned char) (*p) [i]))
            return -1;
        v = v * 10 + ((*p) [i] - '0');
    }
    *p += n;
    *value = v;
    return 0;
}

//  CIVICBUS_CLOCK_FILE names a file holding an offset in milliseconds that
//  tests rewrite to move a running service's clock (time limits, timers).
//  It is looked at no more than every 50 ms, and read only when it changed.
static void
s_read_clock_file (void)
{
    const char *path = getenv ("CIVICBUS_CLOCK_FILE");
    if (!path || !*path)
        return;
    int64_t mono = cb_clock_mono_ms ();
    int64_t last = atomic_load (&s_file_checked_ms);
    if (last && mono - last < 50)
        return;
    atomic_store (&s_file_checked_ms, mono);
    struct stat st;
    if (stat (path, &st) != 0)
        return;
    int64_t mtime = (int64_t) st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec + st.st_size;
    if (mtime == atomic_load (&s_file_mtime_ns))
        return;
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    long long offset = 0;
    if (fscanf (file, "%lld", &offset) == 1) {
        atomic_store (&s_offset_ms, offset);
        atomic_store (&s_file_mtime_ns, mtime);
    }
    fclose (file);
}

/* ---- public ---- */

int64_t
cb_clock_now_ms (void)
{
    int64_t fixed = atomic_load (&s_fixed_ms);
    if (fixed)
        return fixed;
    s_read_offset ();
    s_read_clock_file ();
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load (&s_offset_ms);
}

int64_t
cb_clock_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
cb_clock_set_ms (int64_t ms)
{
    atomic_store (&s_fixed_ms, ms);
}

void
cb_clock_advance_ms (int64_t delta_ms)
{
    if (atomic_load (&s_fixed_ms))
        atomic_fetch_add (&s_fixed_ms, delta_ms);
    else {
        s_read_offset ();
        atomic_fetch_add (&s_offset_ms, delta_ms);
    }
}

char *
cb_time_format_iso (int64_t ms, char *buf, size_t cap)
{
    //  Years 0000..9999 only: keeps the arithmetic far from overflow.
    const int64_t lowest = -62167219200000LL, highest = 253402300799999LL;
    if (ms < lowest)
        ms = lowest;
    if (ms > highest - CB_SHANGHAI_OFFSET_MS)
        ms = highest - CB_SHANGHAI_OFFSET_MS;
    int64_t local = ms + CB_SHANGHAI_OFFSET_MS;
    int64_t secs = local >= 0 ? local / 1000 : (local - 999) / 1000;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int64_t sod = secs - days * 86400;
    int y, m, d;
    s_civil_from_days (days, &y, &m, &d);
    snprintf (buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d+08:00", y, m, d,
              (int) (sod / 3600), (int) (sod / 60 % 60), (int) (sod % 60));
    return buf;
}

int
cb_time_parse_iso (const char *text, int64_t *ms)
{
    if (!text)
        return -1;
    const char *p = text;
    int y, mo, d, h = 0, mi = 0, s = 0, frac_ms = 0;
    if (s_digits (&p, 4, &y) || *p++ != '-' || s_digits (&p, 2, &mo)
    ||  *p++ != '-' || s_digits (&p, 2, &d))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31)
        return -1;
    int64_t offset_ms = CB_SHANGHAI_OFFSET_MS;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (s_digits (&p, 2, &h) || *p++ != ':' || s_digits (&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (s_digits (&p, 2, &s))
                return -1;
            if (*p == '.' || *p == ',') {
                p++;
                int scale = 100, n = 0;
                while (isdigit ((unsigned char) *p)) {
                    if (n++ < 3) {
                        frac_ms += (*p - '0') * scale;
                        scale /= 10;
                    }
                    p++;
                }
                if (n == 0)
                    return -1;
            }
        }
        if (h > 24 || mi > 59 || s > 60 || (h == 24 && (mi || s)))
            return -1;
        if (*p == 'Z' || *p == 'z') {
            offset_ms = 0;
            p++;
        }
        else
        if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
            if (s_digits (&p, 2, &oh))
                return -1;
            if (*p == ':')
                p++;
            if (isdigit ((unsigned char) *p) && s_digits (&p, 2, &om))
                return -1;
            if (oh > 18 || om > 59)
                return -1;
            offset_ms = sign * ((int64_t) oh * 3600 + om * 60) * 1000;
        }
    }
    if (*p != '\0')
        return -1;
    //  Reject dates that do not exist (2026-02-30) by a round trip.
    int64_t days = s_days_from_civil (y, (unsigned) mo, (unsigned) d);
    int cy, cm, cd;
    s_civil_from_days (days, &cy, &cm, &cd);
    if (cy != y || cm != mo || cd != d)
        return -1;
    *ms = ((days * 86400 + (int64_t) h * 3600 + mi * 60 + s) * 1000 + frac_ms) - offset_ms;
    return 0;
}

int
cb_time_local_yyyymmdd (int64_t ms)
{
    int64_t local = ms + CB_SHANGHAI_OFFSET_MS;
    int64_t days = local >= 0 ? local / 86400000 : (local - 86399999) / 86400000;
    int y, m, d;
    s_civil_from_days (days, &y, &m, &d);
    return y * 10000 + m * 100 + d;
}
