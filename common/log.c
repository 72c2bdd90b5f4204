/*  log.c — JSON-lines logging on stderr (see log.h).

    The service name and level are set once at start and only read after, so
    the two statics are the one exception to "no static mutable state". */

#include "civicbus/log.h"
#include "civicbus/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <ctype.h>

static char s_service [48] = "civicbus";
static volatile int s_level = CB_LOG_INFO;

static const char *s_level_names [] = { "debug", "info", "warn", "error" };

/* ---- private ---- */

typedef struct {
    char *data;
    size_t len, cap;
} s_buf_t;

static void
s_put (s_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap)
        n = b->cap > b->len + 1 ? b->cap - b->len - 1 : 0;
    memcpy (b->data + b->len, s, n);
    b->len += n;
    b->data [b->len] = 0;
}

//  Appends `s` as JSON string content, escaping what JSON requires and
//  masking 11-digit mainland mobile numbers (1[3-9]x xxxx xxxx) as 138****5678.
static void
s_put_escaped (s_buf_t *b, const char *s)
{
    size_t n = strlen (s);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s [i];
        if (c == '1' && i + 11 <= n && (i == 0 || !isdigit ((unsigned char) s [i - 1]))
        &&  s [i + 1] >= '3' && s [i + 1] <= '9' && !isdigit ((unsigned char) s [i + 11])) {
            size_t k = 2;
            while (k < 11 && isdigit ((unsigned char) s [i + k]))
                k++;
            if (k == 11) {
                s_put (b, s + i, 3);
                s_put (b, "****", 4);
                s_put (b, s + i + 7, 4);
                i += 10;
                continue;
            }
        }
        if (c == '"' || c == '\\') {
            char esc [2] = { '\\', (char) c };
            s_put (b, esc, 2);
        }
        else
        if (c < 0x20) {
            char esc [8];
            snprintf (esc, sizeof esc, "\\u%04x", c);
            s_put (b, esc, 6);
        }
        else
            s_put (b, (const char *) &c, 1);
    }
}

static void
s_write_line (cb_log_level_t level, const char *msg, va_list fields)
{
    char storage [4096];
    s_buf_t b = { storage, 0, sizeof storage };
    char ts [40];
    cb_time_format_iso (cb_clock_now_ms (), ts, sizeof ts);
    s_put (&b, "{\"ts\":\"", 7);
    s_put (&b, ts, strlen (ts));
    s_put (&b, "\",\"level\":\"", 11);
    s_put (&b, s_level_names [level], strlen (s_level_names [level]));
    s_put (&b, "\",\"service\":\"", 13);
    s_put_escaped (&b, s_service);
    s_put (&b, "\",\"pid\":", 8);
    char pid [16];
    snprintf (pid, sizeof pid, "%d", (int) getpid ());
    s_put (&b, pid, strlen (pid));
    s_put (&b, ",\"msg\":\"", 8);
    s_put_escaped (&b, msg ? msg : "");
    s_put (&b, "\"", 1);
    if (fields) {
        const char *key;
        while ((key = va_arg (fields, const char *))) {
            const char *value = va_arg (fields, const char *);
            s_put (&b, ",\"", 2);
            s_put_escaped (&b, key);
            s_put (&b, "\":\"", 3);
            s_put_escaped (&b, value ? value : "");
            s_put (&b, "\"", 1);
        }
    }
    //  Always end the line, even when a huge message was cut.
    if (b.len > b.cap - 3)
        b.len = b.cap - 3;
    memcpy (b.data + b.len, "}\n", 3);
    b.len += 2;
    ssize_t rc = write (STDERR_FILENO, b.data, b.len);
    (void) rc;
}

/* ---- public ---- */

int
cb_log_level_from_name (const char *name)
{
    for (int i = 0; name && i < 4; i++)
        if (strcasecmp (name, s_level_names [i]) == 0)
            return i;
    if (name && strcasecmp (name, "warning") == 0)
        return CB_LOG_WARN;
    return -1;
}

void
cb_log_init (const char *service)
{
    if (service)
        snprintf (s_service, sizeof s_service, "%s", service);
    int level = cb_log_level_from_name (getenv ("CIVICBUS_LOG_LEVEL"));
    if (level >= 0)
        s_level = level;
}

void
cb_log_set_level (cb_log_level_t level)
{
    s_level = level;
}

cb_log_level_t
cb_log_level (void)
{
    return (cb_log_level_t) s_level;
}

void
cb_log (cb_log_level_t level, const char *msg, ...)
{
    if ((int) level < s_level || level > CB_LOG_ERROR)
        return;
    va_list ap;
    va_start (ap, msg);
    s_write_line (level, msg, ap);
    va_end (ap);
}

static void
s_write_plain (cb_log_level_t level, const char *msg, ...)
{
    va_list ap;
    va_start (ap, msg);
    s_write_line (level, msg, ap);
    va_end (ap);
}

void
cb_logf (cb_log_level_t level, const char *fmt, ...)
{
    if ((int) level < s_level || level > CB_LOG_ERROR)
        return;
    char msg [2048];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    s_write_plain (level, msg, NULL);
}
