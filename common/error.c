/*  error.c — filling the shared error value (see error.h).

    These strings end up in JSON answers and logs, and jansson refuses
    invalid UTF-8, so the result is always valid UTF-8: truncation (silent,
    keeping the struct fixed-size and stack-friendly) never cuts a character
    in half, and a stray invalid byte in the input (a parser quoting the bad
    bytes it choked on) becomes '?'. */

#include "civicbus/error.h"
#include "civicbus/mask.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- private ---- */

//  Drops an incomplete UTF-8 sequence left at the end of `text` by
//  truncation. Looks back at most 3 bytes: O(1).
static void
s_trim_partial_utf8 (char *text)
{
    size_t len = strlen (text);
    size_t back = 0;
    while (back < len && back < 4) {
        unsigned char c = (unsigned char) text [len - 1 - back];
        if ((c & 0xC0) != 0x80) {
            size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (need > back + 1)
                text [len - 1 - back] = '\0';
            return;
        }
        back++;
    }
}

//  Replaces each byte that does not start a well-formed character with '?'.
static void
s_replace_invalid_utf8 (char *text)
{
    size_t len = strlen (text);
    size_t at = 0;
    while (at < len) {
        uint32_t cp;
        size_t n = cb_utf8_decode (text + at, len - at, &cp);
        if (n == 0) {
            text [at] = '?';
            n = 1;
        }
        at += n;
    }
}

static void
s_make_valid (char *text, int full_len, size_t cap)
{
    if (full_len >= (int) cap)
        s_trim_partial_utf8 (text);
    s_replace_invalid_utf8 (text);
}

static void
s_copy (char *dest, size_t cap, const char *src)
{
    int full = snprintf (dest, cap, "%s", src ? src : "");
    s_make_valid (dest, full, cap);
}

/* ---- public ---- */

void
cb_error_set (cb_error_t *err, const char *code, const char *field,
              const char *fmt, ...)
{
    if (!err)
        return;
    s_copy (err->code, sizeof err->code, code);
    s_copy (err->field, sizeof err->field, field);
    err->message [0] = '\0';
    if (fmt) {
        va_list args;
        va_start (args, fmt);
        int full = vsnprintf (err->message, sizeof err->message, fmt, args);
        va_end (args);
        s_make_valid (err->message, full, sizeof err->message);
    }
}

void
cb_error_clear (cb_error_t *err)
{
    if (err)
        memset (err, 0, sizeof *err);
}
