/*  hotline.c — the 12345 hotline exchange's pure parts: the inbound ticket
    body (translated into the native request body, so one validator,
    ticket_json.c, decides what a ticket may hold), follow-up bodies, and
    the signature and timestamp check (hmac_sign.c computes the MAC). */

#include "civicbus/hotline.h"
#include "civicbus/clock.h"
#include "civicbus/hmac_sign.h"
#include "civicbus/pbutil.h"
#include "civicbus/ticket_json.h"

#include <jansson.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static bool
s_token_valid (const char *text, size_t min, size_t max)
{
    if (!text)
        return false;
    size_t len = strlen (text);
    if (len < min || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = text [i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_' || c == '-'))
            return false;
    }
    return true;
}

//  ticket_json names the native fields; the hotline's are "number" and
//  "citizen".
static void
s_rename_field (cb_error_t *err)
{
    char field [sizeof err->field];
    if (strcmp (err->field, "external_id") == 0)
        snprintf (field, sizeof field, "number");
    else
    if (strncmp (err->field, "reporter", 8) == 0)
        snprintf (field, sizeof field, "citizen%s", err->field + 8);
    else
        return;
    snprintf (err->field, sizeof err->field, "%s", field);
}

//  UTF-8 code points in `text`.
static size_t
s_code_points (const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

//  deadlines {"accept": ISO, ...} into t->sender_deadlines. 0, 1 with err,
//  -1 when out of memory.
static int
s_deadlines (json_t *deadlines, cb_ticket_t *t, cb_error_t *err)
{
    if (!json_is_object (deadlines)) {
        cb_error_set (err, "wrong_type", "deadlines", "deadlines is an object of stage: time");
        return 1;
    }
    size_t n = json_object_size (deadlines);
    if (n == 0)
        return 0;
    t->sender_deadlines = calloc (n, sizeof *t->sender_deadlines);
    if (!t->sender_deadlines)
        return -1;
    const char *stage;
    json_t *value;
    json_object_foreach (deadlines, stage, value) {
        int code = cb_stage_from_name (stage);
        char field [64];
        snprintf (field, sizeof field, "deadlines.%s", stage);
        if (code <= 0) {
            cb_error_set (err, "unknown_field", field,
                          "a deadline's stage is accept, sign, resolve or verify");
            return 1;
        }
        int64_t due = 0;
        if (!json_is_string (value) || cb_time_parse_iso (json_string_value (value), &due)) {
            cb_error_set (err, json_is_string (value) ? "bad_value" : "wrong_type", field,
                          "a deadline is an ISO 8601 time such as 2026-11-30T18:00:00+08:00");
            return 1;
        }
        Civicbus__V1__Deadline *d = malloc (sizeof *d);
        if (!d)
            return -1;
        civicbus__v1__deadline__init (d);
        d->stage = code;
        d->due_ms = due;
        t->sender_deadlines [t->n_sender_deadlines++] = d;
    }
    return 0;
}

/* ---- public ---- */

bool
hotline_number_valid (const char *number)
{
    return s_token_valid (number, 1, HOTLINE_NUMBER_MAX);
}

int
hotline_idempotency_key (char *buf, size_t cap, const char *number)
{
    int n = snprintf (buf, cap, "ext:hotline:%s", number ? number : "");
    return n > 0 && (size_t) n < cap ? 0 : -1;
}

int
hotline_ticket_from_json (const char *body, size_t len, cb_ticket_t **out, cb_error_t *err)
{
    assert (out);
    *out = NULL;
    json_error_t parse_error;
    json_t *root = json_loadb (body, len, JSON_REJECT_DUPLICATES, &parse_error);
    if (!root) {
        cb_error_set (err, "malformed_json", NULL, "%s (line %d, column %d)", parse_error.text,
                      parse_error.line, parse_error.column);
        return -1;
    }
    int rc = -1;
    json_t *native = json_object ();
    json_t *deadlines = NULL;
    if (!json_is_object (root)) {
        cb_error_set (err, "not_object", NULL, "the body must be a JSON object");
        goto done;
    }
    if (!native) {
        cb_error_set (err, "no_memory", NULL, "out of memory");
        goto done;
    }
    const char *name;
    json_t *value;
    json_object_foreach (root, name, value) {
        const char *as = NULL;
        if (strcmp (name, "number") == 0) {
            if (json_is_string (value) && !hotline_number_valid (json_string_value (value))) {
                cb_error_set (err, "bad_value", "number",
                              "the hotline number is 1..64 of A-Z a-z 0-9 _ -");
                goto done;
            }
            as = "external_id";
        }
        else
        if (strcmp (name, "citizen") == 0)
            as = "reporter";
        else
        if (strcmp (name, "deadlines") == 0) {
            deadlines = json_is_null (value) ? NULL : value;
            continue;
        }
        else
        if (strcmp (name, "category") == 0 || strcmp (name, "request_type") == 0
        ||  strcmp (name, "urgency") == 0 || strcmp (name, "description") == 0
        ||  strcmp (name, "location") == 0 || strcmp (name, "attachments") == 0)
            as = name;
        else {
            cb_error_set (err, "unknown_field", name, "the hotline ticket has no field '%s'",
                          name);
            goto done;
        }
        if (json_object_set (native, as, value)) {
            cb_error_set (err, "no_memory", NULL, "out of memory");
            goto done;
        }
    }
    if (!json_object_get (native, "external_id")) {
        cb_error_set (err, "missing_field", "number", "the hotline's ticket number is required");
        goto done;
    }
    if (json_object_set_new (native, "source", json_string ("hotline"))) {
        cb_error_set (err, "no_memory", NULL, "out of memory");
        goto done;
    }
    char *text = json_dumps (native, JSON_COMPACT);
    if (!text) {
        cb_error_set (err, "no_memory", NULL, "out of memory");
        goto done;
    }
    cb_ticket_t *t = NULL;
    int parsed = ticket_from_request_json (text, strlen (text), &t, err);
    free (text);
    if (parsed) {
        s_rename_field (err);
        goto done;
    }
    int d = deadlines ? s_deadlines (deadlines, t, err) : 0;
    if (d) {
        if (d < 0)
            cb_error_set (err, "no_memory", NULL, "out of memory");
        civicbus__v1__ticket__free_unpacked (t, NULL);
        goto done;
    }
    *out = t;
    rc = 0;
done:
    json_decref (native);
    json_decref (root);
    return rc;
}

int
hotline_action_event (const char *action)
{
    if (!action)
        return -1;
    if (strcmp (action, "supplement") == 0)
        return TEV_SUPPLEMENT;
    if (strcmp (action, "urge") == 0)
        return TEV_URGE;
    if (strcmp (action, "withdraw") == 0)
        return TEV_CANCEL;
    return -1;
}

int
hotline_action_from_json (const char *body, size_t len, const char *action, char **text,
                          cb_error_t *err)
{
    assert (text);
    *text = NULL;
    bool required = action && strcmp (action, "supplement") == 0;
    json_t *root = NULL;
    if (len > 0) {
        json_error_t parse_error;
        root = json_loadb (body, len, JSON_REJECT_DUPLICATES, &parse_error);
        if (!root) {
            cb_error_set (err, "malformed_json", NULL, "%s (line %d, column %d)",
                          parse_error.text, parse_error.line, parse_error.column);
            return -1;
        }
        if (!json_is_object (root)) {
            json_decref (root);
            cb_error_set (err, "not_object", NULL, "the body must be a JSON object");
            return -1;
        }
    }
    int rc = 0;
    const char *name;
    json_t *value;
    json_object_foreach (root, name, value) {
        if (strcmp (name, "text")) {
            cb_error_set (err, "unknown_field", name, "a follow-up has only \"text\"");
            rc = -1;
            break;
        }
    }
    json_t *value_text = root ? json_object_get (root, "text") : NULL;
    if (rc == 0 && value_text && !json_is_null (value_text)) {
        const char *s = json_string_value (value_text);
        if (!s) {
            cb_error_set (err, "wrong_type", "text", "text is a string");
            rc = -1;
        }
        else
        if (s_code_points (s) > HOTLINE_TEXT_MAX) {
            cb_error_set (err, "too_long", "text", "text is at most %d characters",
                          HOTLINE_TEXT_MAX);
            rc = -1;
        }
        else
        if (*s && !(*text = strdup (s))) {
            cb_error_set (err, "no_memory", NULL, "out of memory");
            rc = -1;
        }
    }
    if (rc == 0 && required && !*text) {
        cb_error_set (err, "missing_field", "text", "a supplement needs its text");
        rc = -1;
    }
    if (rc) {
        free (*text);
        *text = NULL;
    }
    json_decref (root);
    return rc;
}

hotline_auth_t
hotline_check_request (const void *secret, size_t secret_len, const char *method,
                       const char *path, const char *timestamp, const char *nonce,
                       const char *signature, const void *body, size_t body_len,
                       int64_t now_s)
{
    if (!timestamp || !nonce || !signature || !*signature)
        return HOTLINE_AUTH_MISSING;
    errno = 0;
    char *end = NULL;
    long long ts = strtoll (timestamp, &end, 10);
    if (errno || end == timestamp || *end || *timestamp == '-' || *timestamp == '+'
    ||  strlen (timestamp) > 12)
        return HOTLINE_AUTH_BAD_TIMESTAMP;
    if (ts > now_s + HOTLINE_SKEW_S || ts < now_s - HOTLINE_SKEW_S)
        return HOTLINE_AUTH_SKEW;
    if (!s_token_valid (nonce, HOTLINE_NONCE_MIN, HOTLINE_NONCE_MAX))
        return HOTLINE_AUTH_BAD_NONCE;
    if (!hmac_verify_hotline (secret, secret_len, method, path, timestamp, nonce, body,
                              body_len, signature))
        return HOTLINE_AUTH_BAD_SIGNATURE;
    return HOTLINE_AUTH_OK;
}

const char *
hotline_auth_code (hotline_auth_t result)
{
    switch (result) {
        case HOTLINE_AUTH_OK:            return "ok";
        case HOTLINE_AUTH_MISSING:       return "signature_missing";
        case HOTLINE_AUTH_BAD_TIMESTAMP: return "timestamp_invalid";
        case HOTLINE_AUTH_SKEW:          return "timestamp_skew";
        case HOTLINE_AUTH_BAD_NONCE:     return "nonce_invalid";
        default:                         return "signature_invalid";
    }
}

const char *
hotline_auth_message (hotline_auth_t result)
{
    switch (result) {
        case HOTLINE_AUTH_OK:
            return "ok";
        case HOTLINE_AUTH_MISSING:
            return "the request needs X-Hotline-Timestamp, X-Hotline-Nonce and X-Hotline-Signature";
        case HOTLINE_AUTH_BAD_TIMESTAMP:
            return "X-Hotline-Timestamp is Unix seconds";
        case HOTLINE_AUTH_SKEW:
            return "X-Hotline-Timestamp is more than 5 minutes from our clock";
        case HOTLINE_AUTH_BAD_NONCE:
            return "X-Hotline-Nonce is 8..64 of A-Z a-z 0-9 _ -";
        default:
            return "X-Hotline-Signature does not match the request (method, path, "
                   "timestamp, nonce, body)";
    }
}
