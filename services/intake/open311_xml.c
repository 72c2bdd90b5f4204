/*  open311_xml.c — the XML spelling of an Open311 answer, written from the
    JSON one (open311.h says the mapping). A small writer of our own: the
    answers are flat records, and a library (libxml2) would add a
    dependency for what is forty lines of escaping and recursion. */

#include "open311.h"
#include "civicbus/mask.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *text;
    size_t len, cap;
    bool failed;
} s_buf_t;

/* ---- private ---- */

static void
s_put (s_buf_t *buf, const char *text, size_t len)
{
    if (buf->failed)
        return;
    if (buf->len + len + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 1024;
        while (cap < buf->len + len + 1)
            cap *= 2;
        char *grown = realloc (buf->text, cap);
        if (!grown) {
            buf->failed = true;
            return;
        }
        buf->text = grown;
        buf->cap = cap;
    }
    memcpy (buf->text + buf->len, text, len);
    buf->len += len;
    buf->text [buf->len] = 0;
}

static void
s_puts (s_buf_t *buf, const char *text)
{
    s_put (buf, text, strlen (text));
}

//  Escaped text; characters XML 1.0 forbids (controls but tab, CR, LF;
//  U+FFFE, U+FFFF; bad UTF-8) are dropped.
static void
s_text (s_buf_t *buf, const char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = cb_utf8_decode (text + i, len - i, &cp);
        if (n == 0) {
            i++;
            continue;
        }
        if ((cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0xFFFE || cp == 0xFFFF)
            ;
        else
        if (cp == '&')
            s_puts (buf, "&amp;");
        else
        if (cp == '<')
            s_puts (buf, "&lt;");
        else
        if (cp == '>')
            s_puts (buf, "&gt;");
        else
        if (cp == '"')
            s_puts (buf, "&quot;");
        else
        if (cp == '\'')
            s_puts (buf, "&apos;");
        else
            s_put (buf, text + i, n);
        i += n;
    }
}

static const char *
s_singular (const char *name, char *buf, size_t cap)
{
    static const char *const pairs [][2] = {
        { "attributes", "attribute" }, { "values", "value" }, { "endpoints", "endpoint" },
        { "formats", "format" }, { "errors", "error" }, { "services", "service" },
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs [0]; i++)
        if (strcmp (name, pairs [i][0]) == 0)
            return pairs [i][1];
    size_t len = strlen (name);
    snprintf (buf, cap, "%.*s", (int) (len > 1 && name [len - 1] == 's' ? len - 1 : len), name);
    return buf;
}

static void s_element (s_buf_t *buf, const char *name, const json_t *value);

//  The members of an object as elements, in insertion order (jansson keeps it).
static void
s_members (s_buf_t *buf, const json_t *object)
{
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) object, key, value)
        s_element (buf, key, value);
}

static void
s_element (s_buf_t *buf, const char *name, const json_t *value)
{
    s_puts (buf, "<");
    s_puts (buf, name);
    if (json_is_null (value)) {
        s_puts (buf, "/>");
        return;
    }
    s_puts (buf, ">");
    char number [64];
    if (json_is_string (value))
        s_text (buf, json_string_value (value), json_string_length (value));
    else
    if (json_is_true (value))
        s_puts (buf, "true");
    else
    if (json_is_false (value))
        s_puts (buf, "false");
    else
    if (json_is_integer (value)) {
        snprintf (number, sizeof number, "%" JSON_INTEGER_FORMAT, json_integer_value (value));
        s_puts (buf, number);
    }
    else
    if (json_is_real (value)) {
        snprintf (number, sizeof number, "%.15g", json_real_value (value));
        s_puts (buf, number);
    }
    else
    if (json_is_object (value))
        s_members (buf, value);
    else
    if (json_is_array (value)) {
        char singular [64];
        const char *item = s_singular (name, singular, sizeof singular);
        size_t index;
        json_t *entry;
        json_array_foreach (value, index, entry)
            s_element (buf, item, entry);
    }
    s_puts (buf, "</");
    s_puts (buf, name);
    s_puts (buf, ">");
}

/* ---- public ---- */

char *
open311_xml_write (const json_t *json, const char *root, const char *item, size_t *len)
{
    s_buf_t buf = { NULL, 0, 0, false };
    s_puts (&buf, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    s_puts (&buf, root);
    s_puts (&buf, ">");
    if (json_is_array (json)) {
        size_t index;
        json_t *entry;
        json_array_foreach (json, index, entry)
            s_element (&buf, item, entry);
    }
    else
    if (json_is_object (json))
        s_members (&buf, json);
    s_puts (&buf, "</");
    s_puts (&buf, root);
    s_puts (&buf, ">\n");
    if (buf.failed) {
        free (buf.text);
        return NULL;
    }
    *len = buf.len;
    return buf.text;
}
