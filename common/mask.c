/*  mask.c — masking names and phone numbers, and UTF-8 helpers (mask.h).

    Masking works on code points, not bytes, so a Chinese name keeps its
    first character whole and the output stays valid UTF-8 (it goes into
    JSON, and jansson refuses anything else). Everything is one pass over
    the input with no allocation: these run on every log line. */

#include "civicbus/mask.h"

#include <string.h>

//  Bounded output: appends whole characters while they fit, keeping room for
//  the NUL terminator; once one does not fit, nothing more is written, so a
//  truncated result is a clean prefix.
typedef struct {
    char *out;
    size_t cap;
    size_t used;
    bool full;
} s_writer_t;

/* ---- private ---- */

static bool
s_writer_init (s_writer_t *self, char *out, size_t cap)
{
    self->out = out;
    self->cap = cap;
    self->used = 0;
    self->full = !out || cap == 0;
    if (!self->full)
        out [0] = '\0';
    return !self->full;
}

static void
s_put (s_writer_t *self, const char *bytes, size_t n)
{
    if (self->full)
        return;
    if (self->used + n >= self->cap) {
        self->full = true;
        return;
    }
    memcpy (self->out + self->used, bytes, n);
    self->used += n;
    self->out [self->used] = '\0';
}

static void
s_put_star (s_writer_t *self)
{
    s_put (self, "*", 1);
}

//  Length of the unit at s: a well-formed character, or one invalid byte.
static size_t
s_unit_len (const char *s, size_t len, bool *valid)
{
    uint32_t cp;
    size_t n = cb_utf8_decode (s, len, &cp);
    *valid = n > 0;
    return n ? n : 1;
}

static bool
s_is_digit (char c)
{
    return c >= '0' && c <= '9';
}

static bool
s_is_phone_separator (char c)
{
    return c == '+' || c == '-' || c == ' ' || c == '(' || c == ')' || c == '.';
}

//  Matches a mainland mobile at `s` (caller checked no digit precedes it):
//  1[3-9]d d{4} d{4}, groups joined directly or all by one '-' or ' ', and no
//  digit right after. Returns the match length and sets the offsets of the
//  middle group, or 0.
static size_t
s_match_mobile (const char *s, size_t len, size_t *middle_at)
{
    for (int variant = 0; variant < 3; variant++) {
        char sep = variant == 0 ? 0 : variant == 1 ? '-' : ' ';
        size_t gap = sep ? 1 : 0;
        size_t total = 11 + 2 * gap;
        if (len < total)
            continue;
        bool ok = s [0] == '1' && s [1] >= '3' && s [1] <= '9';
        size_t at = 0;
        for (int group = 0; ok && group < 3; group++) {
            size_t width = group == 0 ? 3 : 4;
            if (group > 0) {
                if (sep && s [at] != sep)
                    ok = false;
                at += gap;
            }
            for (size_t i = 0; ok && i < width; i++)
                if (!s_is_digit (s [at + i]))
                    ok = false;
            if (group == 1)
                *middle_at = at;
            at += width;
        }
        if (ok && (at == len || !s_is_digit (s [at])))
            return total;
    }
    return 0;
}

/* ---- public: UTF-8 ---- */

size_t
cb_utf8_decode (const char *s, size_t len, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *) s;
    if (len == 0)
        return 0;
    unsigned c = p [0];
    size_t n;
    uint32_t min, value;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    else
    if (c >= 0xC2 && c <= 0xDF) { n = 2; min = 0x80; value = c & 0x1F; }
    else
    if (c >= 0xE0 && c <= 0xEF) { n = 3; min = 0x800; value = c & 0x0F; }
    else
    if (c >= 0xF0 && c <= 0xF4) { n = 4; min = 0x10000; value = c & 0x07; }
    else
        return 0;
    if (n > len)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p [i] & 0xC0) != 0x80)
            return 0;
        value = (value << 6) | (p [i] & 0x3F);
    }
    if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF))
        return 0;
    *cp = value;
    return n;
}

bool
cb_utf8_valid (const char *s, size_t len)
{
    size_t at = 0;
    uint32_t cp;
    while (at < len) {
        size_t n = cb_utf8_decode (s + at, len - at, &cp);
        if (n == 0)
            return false;
        at += n;
    }
    return true;
}

size_t
cb_utf8_length (const char *s, size_t len)
{
    size_t at = 0, count = 0;
    bool valid;
    while (at < len) {
        at += s_unit_len (s + at, len - at, &valid);
        count++;
    }
    return count;
}

/* ---- public: masking ---- */

void
cb_mask_phone (const char *in, char *out, size_t cap)
{
    s_writer_t writer;
    if (!s_writer_init (&writer, out, cap) || !in)
        return;
    size_t len = strlen (in);
    bool valid;

    //  First pass: count the symbols (non-separators) and look at the first
    //  three, to recognise a mobile behind the country code.
    size_t symbols = 0;
    char head [3] = { 0, 0, 0 };
    for (size_t at = 0; at < len; ) {
        size_t n = s_unit_len (in + at, len - at, &valid);
        if (!(n == 1 && s_is_phone_separator (in [at]))) {
            if (symbols < 3)
                head [symbols] = n == 1 ? in [at] : 0;
            symbols++;
        }
        at += n;
    }
    size_t keep_head, keep_tail;
    if (symbols == 11) {
        keep_head = 3;
        keep_tail = 4;
    }
    else
    if (symbols == 13 && head [0] == '8' && head [1] == '6' && head [2] == '1') {
        keep_head = 5;          //  "86" + the mobile's 3
        keep_tail = 4;
    }
    else {
        keep_head = symbols / 4;
        keep_tail = symbols / 4;
    }

    //  Second pass: write, showing only digits at either end.
    size_t index = 0;
    for (size_t at = 0; at < len; ) {
        size_t n = s_unit_len (in + at, len - at, &valid);
        if (n == 1 && s_is_phone_separator (in [at]))
            s_put (&writer, in + at, 1);
        else {
            bool shown = index < keep_head || index >= symbols - keep_tail;
            if (shown && n == 1 && s_is_digit (in [at]))
                s_put (&writer, in + at, 1);
            else
                s_put_star (&writer);
            index++;
        }
        at += n;
    }
}

void
cb_mask_name (const char *in, char *out, size_t cap)
{
    s_writer_t writer;
    if (!s_writer_init (&writer, out, cap) || !in)
        return;
    size_t len = strlen (in);
    bool first_valid;
    size_t first_len = s_unit_len (in, len, &first_valid);
    if (len == 0)
        return;
    bool alone = first_len >= len;
    if (first_valid && !alone)
        s_put (&writer, in, first_len);
    else
        s_put_star (&writer);
    bool valid;
    for (size_t at = first_len; at < len; at += s_unit_len (in + at, len - at, &valid))
        s_put_star (&writer);
}

void
cb_mask_text (const char *in, char *out, size_t cap)
{
    s_writer_t writer;
    if (!s_writer_init (&writer, out, cap) || !in)
        return;
    size_t len = strlen (in);
    bool valid;
    size_t at = 0;
    while (at < len && !writer.full) {
        if (!s_is_digit (in [at])) {
            size_t n = s_unit_len (in + at, len - at, &valid);
            s_put (&writer, in + at, n);
            at += n;
            continue;
        }
        //  At the start of a digit run (the previous byte is not a digit).
        size_t middle_at = 0;
        size_t match = s_match_mobile (in + at, len - at, &middle_at);
        if (match) {
            s_put (&writer, in + at, middle_at);
            s_put (&writer, "****", 4);
            s_put (&writer, in + at + middle_at + 4, match - middle_at - 4);
            at += match;
        }
        else {
            //  Not a mobile: copy the whole run, so that no match starts
            //  inside a longer number.
            size_t end = at;
            while (end < len && s_is_digit (in [end]))
                end++;
            s_put (&writer, in + at, end - at);
            at = end;
        }
    }
}
