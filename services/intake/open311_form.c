/*  open311_form.c — application/x-www-form-urlencoded bodies, the only
    body Open311 POSTs use. libmicrohttpd has a post processor, but it
    streams into callbacks and says nothing about malformed escapes; the
    body is already whole in memory (httpd, with its size limit), so a
    strict one-pass decoder is shorter and refuses what it cannot read. */

#include "open311.h"
#include "civicbus/mask.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static int
s_hex (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

//  Decodes `len` bytes into a fresh string. 0; 1 with err; -1 out of memory.
static int
s_decode (const char *text, size_t len, bool is_name, char **out, char *err, size_t errcap)
{
    char *buf = malloc (len + 1);
    if (!buf)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text [i];
        if (c == '+')
            c = ' ';
        else
        if (c == '%') {
            int hi = i + 2 < len ? s_hex (text [i + 1]) : -1;
            int lo = i + 2 < len ? s_hex (text [i + 2]) : -1;
            hi = hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
            if (hi < 0) {
                snprintf (err, errcap, "a '%%' must be followed by two hexadecimal digits");
                free (buf);
                return 1;
            }
            c = (char) hi;
            i += 2;
        }
        unsigned char u = (unsigned char) c;
        if (u < 0x20 || u == 0x7F) {
            bool allowed = !is_name && (c == '\t' || c == '\r' || c == '\n');
            if (!allowed) {
                snprintf (err, errcap, "control characters are not allowed in %s",
                          is_name ? "field names" : "values");
                free (buf);
                return 1;
            }
        }
        buf [n++] = c;
    }
    buf [n] = 0;
    if (!cb_utf8_valid (buf, n)) {
        snprintf (err, errcap, "the form is not UTF-8 (send charset=utf-8 text)");
        free (buf);
        return 1;
    }
    *out = buf;
    return 0;
}

/* ---- public ---- */

int
open311_form_parse (const char *body, size_t len, open311_form_t *form, char *err, size_t errcap)
{
    form->fields = NULL;
    form->count = 0;
    size_t pairs = 1;
    for (size_t i = 0; i < len; i++)
        pairs += body [i] == '&';
    form->fields = calloc (pairs, sizeof (open311_field_t));
    if (!form->fields)
        return -1;
    size_t start = 0;
    while (start <= len) {
        const char *amp = memchr (body + start, '&', len - start);
        size_t end = amp ? (size_t) (amp - body) : len;
        if (end > start) {
            const char *pair = body + start;
            size_t pair_len = end - start;
            const char *eq = memchr (pair, '=', pair_len);
            size_t name_len = eq ? (size_t) (eq - pair) : pair_len;
            open311_field_t *field = &form->fields [form->count];
            int rc = s_decode (pair, name_len, true, &field->name, err, errcap);
            if (rc == 0) {
                rc = eq ? s_decode (eq + 1, pair_len - name_len - 1, false, &field->value,
                                    err, errcap)
                        : s_decode ("", 0, false, &field->value, err, errcap);
                if (rc) {
                    free (field->name);
                    field->name = NULL;
                }
            }
            if (rc)
                return rc;
            form->count++;
        }
        start = end + 1;
    }
    return 0;
}

void
open311_form_reset (open311_form_t *form)
{
    for (size_t i = 0; i < form->count; i++) {
        free (form->fields [i].name);
        free (form->fields [i].value);
    }
    free (form->fields);
    form->fields = NULL;
    form->count = 0;
}

const char *
open311_form_get (const open311_form_t *form, const char *name)
{
    for (size_t i = 0; i < form->count; i++)
        if (strcmp (form->fields [i].name, name) == 0)
            return form->fields [i].value;
    return NULL;
}
