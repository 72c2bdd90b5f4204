/*  ticket_json.c — request body -> Ticket, Ticket and TicketEvent -> JSON
    (see ticket_json.h for the rules and the error codes).

    Validation and construction are two separate steps on purpose: the
    first walks the parsed body and collects borrowed pointers into an
    s_request_t, failing on the first broken rule; only a body that passed
    every rule is copied into a Ticket. So a refused request allocates
    nothing that could leak, and no half-built ticket exists.

    jansson already refuses invalid UTF-8 and caps nesting at 2048 levels
    (its parser recurses, and the cap keeps that off the end of the stack);
    we parse with JSON_ALLOW_NUL so that a "\u0000" is reported against the
    field it appears in, and check our own tighter depth afterwards. */

#include "civicbus/ticket_json.h"
#include "civicbus/clock.h"
#include "civicbus/mask.h"
#include "civicbus/ticket_fsm.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

//  A body that passed every rule: pointers borrowed from the parsed JSON.
typedef struct {
    int source;
    int request_type;
    int urgency;
    const char *external_id;        //  NULL when absent
    const char *category;
    const char *description;
    bool has_point;
    double lat, lon;
    const char *address;            //  NULL when absent
    const char *grid_code;          //  NULL when absent
    bool has_reporter;
    const char *reporter_name;      //  NULL when absent
    const char *reporter_phone;     //  NULL when absent
    json_t *attachments;            //  NULL when absent; strings, checked
} s_request_t;

//  What a string field may contain, beyond being valid UTF-8 without NUL.
typedef enum {
    S_TEXT_ANY,             //  anything
    S_TEXT_NO_CONTROL,      //  no C0/C1 control characters, no DEL
    S_TEXT_MULTILINE,       //  like NO_CONTROL but tab, CR, LF allowed
} s_text_rule_t;

static const char *const s_source_names [] = {
    "unspecified", "hotline", "grid_worker", "app", "web", "sensor", "open311",
};
static const char *const s_request_type_names [] = {
    "unspecified", "consult", "help", "complaint", "report", "suggestion",
};
static const char *const s_request_type_chinese [] = {
    NULL, "咨询", "求助", "投诉", "举报", "建议",
};
static const char *const s_urgency_names [] = { "normal", "urgent" };
static const char *const s_stage_names [] = {
    "unspecified", "accept", "sign", "resolve", "verify",
};
static const char *const s_light_names [] = { "green", "yellow", "red" };
static const char *const s_actor_kind_names [] = {
    "unspecified", "system", "operator", "department", "reporter", "supervisor",
};

#define S_COUNT(table) ((int) (sizeof (table) / sizeof ((table) [0])))

//  Largest time we format: 9999-12-31T23:59:59.999 in Asia/Shanghai. Also
//  keeps cb_time_format_iso away from int64 overflow.
#define S_TIME_MAX_MS 253402271999999LL

/* ---- private: enum names ---- */

static const char *
s_name_of (const char *const *table, int count, int value)
{
    return value >= 0 && value < count ? table [value] : NULL;
}

//  Index of `name` in table, ignoring index `skip` ("unspecified"), or -1.
static int
s_index_of (const char *const *table, int count, int skip, const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < count; i++)
        if (i != skip && table [i] && strcmp (table [i], name) == 0)
            return i;
    return -1;
}

/* ---- private: checking text ---- */

static bool
s_is_code_char (char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static bool
s_is_unicode_space (uint32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0
        || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200B)
        || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F
        || cp == 0x3000 || cp == 0xFEFF;
}

static bool
s_is_control (uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

//  Checks decoded text (jansson guarantees valid UTF-8) against `rule`,
//  counting code points into *count and noting whether any is not a space.
//  Returns false on a forbidden character.
static bool
s_scan_text (const char *text, size_t len, s_text_rule_t rule,
             size_t *count, bool *has_visible)
{
    *count = 0;
    *has_visible = false;
    size_t at = 0;
    while (at < len) {
        uint32_t cp = 0xFFFD;
        size_t n = cb_utf8_decode (text + at, len - at, &cp);
        if (n == 0)
            n = 1;              //  cannot happen after jansson; stay safe
        if (rule != S_TEXT_ANY && s_is_control (cp)) {
            bool allowed = rule == S_TEXT_MULTILINE
                        && (cp == '\t' || cp == '\n' || cp == '\r');
            if (!allowed)
                return false;
        }
        if (!s_is_unicode_space (cp))
            *has_visible = true;
        (*count)++;
        at += n;
    }
    return true;
}

//  http:// or https:// (scheme in any case), then a non-empty host, and no
//  byte that is a space or a control character anywhere.
static bool
s_url_ok (const char *url, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) url [i];
        if (c <= 0x20 || c == 0x7F)
            return false;
    }
    size_t scheme_len;
    if (len >= 7 && strncasecmp (url, "http://", 7) == 0)
        scheme_len = 7;
    else
    if (len >= 8 && strncasecmp (url, "https://", 8) == 0)
        scheme_len = 8;
    else
        return false;
    //  The host is what comes before the first '/', '?' or '#'.
    const char *host = url + scheme_len;
    size_t host_len = strcspn (host, "/?#");
    return host_len > 0 && host [0] != ':' && host [0] != '@';
}

/* ---- private: walking the body ---- */

//  True when `json` nests deeper than `max` levels, counting itself as
//  `level`. Stops descending past `max`, so recursion is bounded by max + 1
//  frames whatever the input.
static bool
s_too_deep (json_t *json, int level, int max)
{
    if (level > max)
        return true;
    if (json_is_object (json)) {
        const char *key;
        json_t *value;
        json_object_foreach (json, key, value)
            if (s_too_deep (value, level + 1, max))
                return true;
    }
    else
    if (json_is_array (json)) {
        size_t index;
        json_t *value;
        json_array_foreach (json, index, value)
            if (s_too_deep (value, level + 1, max))
                return true;
    }
    return false;
}

//  Fails with "unknown_field" on the first key of `object` not in `known`
//  (NULL-terminated). `prefix` is the object's path ("" at the top).
static int
s_check_known_keys (json_t *object, const char *const *known,
                    const char *prefix, cb_error_t *err)
{
    const char *key;
    json_t *value;
    json_object_foreach (object, key, value) {
        bool found = false;
        for (size_t i = 0; known [i] && !found; i++)
            found = strcmp (key, known [i]) == 0;
        if (!found) {
            char path [128];
            snprintf (path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
            //  A long key was cut; do not leave half a character behind.
            size_t len = strlen (path);
            while (len > 0 && !cb_utf8_valid (path, len))
                path [--len] = '\0';
            cb_error_set (err, "unknown_field", path,
                          "'%s' is not a field of this API", path);
            return -1;
        }
    }
    return 0;
}

//  The value at `key`, or NULL when absent or null.
static json_t *
s_member (json_t *object, const char *key)
{
    json_t *value = json_object_get (object, key);
    return json_is_null (value) ? NULL : value;
}

//  Reads an optional string member. Returns 1 and sets *text, *len when
//  present; 0 when absent (or null); -1 with `err` filled when it is not a
//  string, contains NUL, breaks `rule`, or has more than `max_chars` code
//  points. *count gets the number of code points.
static int
s_get_text (json_t *object, const char *key, const char *path,
            s_text_rule_t rule, size_t max_chars,
            const char **text, size_t *count, cb_error_t *err)
{
    json_t *value = s_member (object, key);
    if (!value)
        return 0;
    if (!json_is_string (value)) {
        cb_error_set (err, "wrong_type", path, "%s must be a string", path);
        return -1;
    }
    const char *value_text = json_string_value (value);
    size_t len = json_string_length (value);
    if (strlen (value_text) != len) {
        cb_error_set (err, "bad_value", path, "%s contains a NUL character", path);
        return -1;
    }
    bool has_visible;
    if (!s_scan_text (value_text, len, rule, count, &has_visible)) {
        cb_error_set (err, "bad_value", path,
                      "%s contains a control character", path);
        return -1;
    }
    if (*count > max_chars) {
        cb_error_set (err, "too_long", path,
                      "%s has %zu characters, at most %zu are allowed",
                      path, *count, max_chars);
        return -1;
    }
    *text = value_text;
    return 1;
}

//  A required string member: like s_get_text (1 when present, -1 on error),
//  but absent is "missing_field".
static int
s_require_text (json_t *object, const char *key, const char *path,
                s_text_rule_t rule, size_t max_chars,
                const char **text, size_t *count, cb_error_t *err)
{
    int rc = s_get_text (object, key, path, rule, max_chars, text, count, err);
    if (rc == 0) {
        cb_error_set (err, "missing_field", path, "%s is required", path);
        return -1;
    }
    return rc;
}

//  Reads an enum given by name (through `from_name`). A required one must
//  be there; an optional one, when absent, leaves *value alone.
static int
s_get_enum (json_t *object, const char *key, bool required,
            int (*from_name) (const char *), const char *allowed,
            int *value, cb_error_t *err)
{
    const char *text = NULL;
    size_t count;
    int rc = required
           ? s_require_text (object, key, key, S_TEXT_ANY, SIZE_MAX, &text, &count, err)
           : s_get_text (object, key, key, S_TEXT_ANY, SIZE_MAX, &text, &count, err);
    if (rc != 1)
        return rc == 0 ? 0 : -1;
    int found = from_name (text);
    if (found < 0) {
        cb_error_set (err, "bad_value", key, "%s must be one of %s", key, allowed);
        return -1;
    }
    *value = found;
    return 0;
}

//  A code: 1..max of [A-Za-z0-9._-].
static int
s_check_code (const char *text, const char *path, size_t max, cb_error_t *err)
{
    size_t len = strlen (text);
    bool ok = len > 0;
    for (size_t i = 0; i < len && ok; i++)
        ok = s_is_code_char (text [i]);
    if (!ok) {
        cb_error_set (err, "bad_value", path,
                      "%s must be 1 to %zu of A-Z a-z 0-9 . _ -", path, max);
        return -1;
    }
    if (len > max) {
        cb_error_set (err, "too_long", path,
                      "%s is %zu characters, at most %zu are allowed", path, len, max);
        return -1;
    }
    return 0;
}

static int
s_get_coordinate (json_t *location, const char *key, const char *path,
                  double limit, double *value, bool *present, cb_error_t *err)
{
    json_t *member = s_member (location, key);
    *present = member != NULL;
    if (!member)
        return 0;
    if (!json_is_number (member)) {
        cb_error_set (err, "wrong_type", path, "%s must be a number", path);
        return -1;
    }
    *value = json_number_value (member);
    if (!isfinite (*value) || *value < -limit || *value > limit) {
        cb_error_set (err, "bad_value", path,
                      "%s must be between %g and %g", path, -limit, limit);
        return -1;
    }
    return 0;
}

static int
s_check_location (json_t *body, s_request_t *req, cb_error_t *err)
{
    static const char *const known [] = { "lat", "lon", "address", "grid_code", NULL };
    json_t *location = s_member (body, "location");
    if (!location) {
        cb_error_set (err, "missing_field", "location", "location is required");
        return -1;
    }
    if (!json_is_object (location)) {
        cb_error_set (err, "wrong_type", "location", "location must be an object");
        return -1;
    }
    if (s_check_known_keys (location, known, "location", err))
        return -1;
    bool has_lat, has_lon;
    if (s_get_coordinate (location, "lat", "location.lat", 90, &req->lat, &has_lat, err)
    ||  s_get_coordinate (location, "lon", "location.lon", 180, &req->lon, &has_lon, err))
        return -1;
    if (has_lat != has_lon) {
        const char *missing = has_lat ? "location.lon" : "location.lat";
        cb_error_set (err, "missing_field", missing,
                      "location.lat and location.lon go together");
        return -1;
    }
    req->has_point = has_lat;

    size_t count;
    int rc = s_get_text (location, "address", "location.address", S_TEXT_NO_CONTROL,
                         TICKET_ADDRESS_MAX, &req->address, &count, err);
    if (rc == -1)
        return -1;
    if (rc == 1 && count == 0) {
        cb_error_set (err, "bad_value", "location.address",
                      "location.address must not be empty; omit it instead");
        return -1;
    }
    rc = s_get_text (location, "grid_code", "location.grid_code", S_TEXT_ANY,
                     TICKET_GRID_CODE_MAX, &req->grid_code, &count, err);
    if (rc == -1)
        return -1;
    if (rc == 1 && s_check_code (req->grid_code, "location.grid_code",
                                 TICKET_GRID_CODE_MAX, err))
        return -1;
    if (!req->has_point && !req->address && !req->grid_code) {
        cb_error_set (err, "missing_field", "location",
                      "location needs lat and lon, a grid_code or an address");
        return -1;
    }
    return 0;
}

static int
s_check_reporter (json_t *body, s_request_t *req, cb_error_t *err)
{
    static const char *const known [] = { "name", "phone", NULL };
    json_t *reporter = s_member (body, "reporter");
    if (!reporter)
        return 0;
    if (!json_is_object (reporter)) {
        cb_error_set (err, "wrong_type", "reporter", "reporter must be an object");
        return -1;
    }
    if (s_check_known_keys (reporter, known, "reporter", err))
        return -1;
    req->has_reporter = true;

    size_t count;
    int rc = s_get_text (reporter, "name", "reporter.name", S_TEXT_NO_CONTROL,
                         TICKET_REPORTER_NAME_MAX, &req->reporter_name, &count, err);
    if (rc == -1)
        return -1;
    bool has_visible = false;
    if (rc == 1)
        s_scan_text (req->reporter_name, strlen (req->reporter_name),
                     S_TEXT_ANY, &count, &has_visible);
    if (rc == 1 && !has_visible) {
        cb_error_set (err, "bad_value", "reporter.name",
                      "reporter.name must not be empty; omit it instead");
        return -1;
    }
    rc = s_get_text (reporter, "phone", "reporter.phone", S_TEXT_ANY,
                     TICKET_PHONE_MAX, &req->reporter_phone, &count, err);
    if (rc == -1)
        return -1;
    if (rc == 1) {
        const char *phone = req->reporter_phone;
        size_t digits = 0;
        bool ok = true;
        for (const char *p = phone; *p && ok; p++) {
            if (*p >= '0' && *p <= '9')
                digits++;
            else
                ok = *p == '+' || *p == '-' || *p == ' ';
        }
        if (!ok || count < TICKET_PHONE_MIN || digits < TICKET_PHONE_MIN) {
            cb_error_set (err, "bad_value", "reporter.phone",
                          "reporter.phone must be %d to %d of digits, '+', '-', ' ' "
                          "with at least %d digits",
                          TICKET_PHONE_MIN, TICKET_PHONE_MAX, TICKET_PHONE_MIN);
            return -1;
        }
    }
    return 0;
}

static int
s_check_attachments (json_t *body, s_request_t *req, cb_error_t *err)
{
    json_t *list = s_member (body, "attachments");
    if (!list)
        return 0;
    if (!json_is_array (list)) {
        cb_error_set (err, "wrong_type", "attachments",
                      "attachments must be an array of URLs");
        return -1;
    }
    if (json_array_size (list) > TICKET_ATTACHMENTS_MAX) {
        cb_error_set (err, "too_long", "attachments",
                      "attachments has %zu items, at most %d are allowed",
                      json_array_size (list), TICKET_ATTACHMENTS_MAX);
        return -1;
    }
    size_t index;
    json_t *item;
    json_array_foreach (list, index, item) {
        char path [48];
        snprintf (path, sizeof path, "attachments[%zu]", index);
        if (!json_is_string (item)) {
            cb_error_set (err, "wrong_type", path, "%s must be a string", path);
            return -1;
        }
        const char *url = json_string_value (item);
        size_t len = json_string_length (item);
        if (len > TICKET_ATTACHMENT_URL_MAX) {
            cb_error_set (err, "too_long", path, "%s is %zu bytes, at most %d are allowed",
                          path, len, TICKET_ATTACHMENT_URL_MAX);
            return -1;
        }
        if (strlen (url) != len || !s_url_ok (url, len)) {
            cb_error_set (err, "bad_value", path,
                          "%s must be an http:// or https:// URL without spaces "
                          "or control characters", path);
            return -1;
        }
    }
    req->attachments = list;
    return 0;
}

//  Every rule of the request body, in a fixed order so that the same body
//  always gets the same error.
static int
s_check_request (json_t *body, s_request_t *req, cb_error_t *err)
{
    static const char *const known [] = {
        "source", "external_id", "request_type", "category", "urgency",
        "description", "location", "reporter", "attachments", NULL
    };
    memset (req, 0, sizeof *req);
    if (s_check_known_keys (body, known, "", err))
        return -1;

    if (s_get_enum (body, "source", true, cb_source_from_name,
                    "hotline, grid_worker, app, web, sensor, open311",
                    &req->source, err))
        return -1;

    size_t count;
    int rc = s_get_text (body, "external_id", "external_id", S_TEXT_ANY,
                         TICKET_EXTERNAL_ID_MAX, &req->external_id, &count, err);
    if (rc == -1)
        return -1;
    if (rc == 1) {
        bool ok = count > 0;
        for (const char *p = req->external_id; *p && ok; p++)
            ok = *p >= 0x21 && *p <= 0x7E;
        if (!ok) {
            cb_error_set (err, "bad_value", "external_id",
                          "external_id must be 1 to %d visible ASCII characters",
                          TICKET_EXTERNAL_ID_MAX);
            return -1;
        }
    }

    if (s_get_enum (body, "request_type", true, cb_request_type_from_name,
                    "consult, help, complaint, report, suggestion "
                    "(or 咨询, 求助, 投诉, 举报, 建议)",
                    &req->request_type, err))
        return -1;

    if (s_require_text (body, "category", "category", S_TEXT_ANY, TICKET_CATEGORY_MAX,
                        &req->category, &count, err) != 1
    ||  s_check_code (req->category, "category", TICKET_CATEGORY_MAX, err))
        return -1;

    req->urgency = CIVICBUS__V1__URGENCY__URGENCY_NORMAL;
    if (s_get_enum (body, "urgency", false, cb_urgency_from_name, "normal, urgent",
                    &req->urgency, err))
        return -1;

    if (s_require_text (body, "description", "description", S_TEXT_MULTILINE,
                        TICKET_DESCRIPTION_MAX, &req->description, &count, err) != 1)
        return -1;
    bool has_visible;
    s_scan_text (req->description, strlen (req->description), S_TEXT_ANY,
                 &count, &has_visible);
    if (!has_visible) {
        cb_error_set (err, "bad_value", "description",
                      "description must not be empty or only whitespace");
        return -1;
    }

    if (s_check_location (body, req, err)
    ||  s_check_reporter (body, req, err)
    ||  s_check_attachments (body, req, err))
        return -1;
    return 0;
}

/* ---- private: building the ticket ---- */

//  A heap copy for a protobuf-c string field; "" stays the shared empty
//  string, which free_unpacked knows not to free. NULL when out of memory.
static char *
s_field_copy (const char *text)
{
    if (!text || !*text)
        return (char *) protobuf_c_empty_string;
    return strdup (text);
}

static Civicbus__V1__Ticket *
s_build_ticket (const s_request_t *req)
{
    Civicbus__V1__Ticket *t = malloc (sizeof *t);
    if (!t)
        return NULL;
    civicbus__v1__ticket__init (t);
    t->source = req->source;
    t->request_type = req->request_type;
    t->urgency = req->urgency;
    if (!(t->external_id = s_field_copy (req->external_id))
    ||  !(t->category = s_field_copy (req->category))
    ||  !(t->description = s_field_copy (req->description)))
        goto failed;

    t->location = malloc (sizeof *t->location);
    if (!t->location)
        goto failed;
    civicbus__v1__location__init (t->location);
    t->location->has_point = req->has_point;
    t->location->lat = req->has_point ? req->lat : 0;
    t->location->lon = req->has_point ? req->lon : 0;
    if (!(t->location->address = s_field_copy (req->address))
    ||  !(t->location->grid_code = s_field_copy (req->grid_code)))
        goto failed;

    if (req->has_reporter && (req->reporter_name || req->reporter_phone)) {
        t->reporter = malloc (sizeof *t->reporter);
        if (!t->reporter)
            goto failed;
        civicbus__v1__reporter__init (t->reporter);
        if (!(t->reporter->name = s_field_copy (req->reporter_name))
        ||  !(t->reporter->phone = s_field_copy (req->reporter_phone)))
            goto failed;
    }

    size_t count = req->attachments ? json_array_size (req->attachments) : 0;
    if (count > 0) {
        t->attachment_urls = calloc (count, sizeof (char *));
        if (!t->attachment_urls)
            goto failed;
        for (size_t i = 0; i < count; i++) {
            char *url = s_field_copy (json_string_value (json_array_get (req->attachments, i)));
            if (!url)
                goto failed;
            t->attachment_urls [t->n_attachment_urls++] = url;
        }
    }
    return t;

failed:
    //  Every field is either its default or a heap copy, and the counts
    //  match the copies made, so free_unpacked frees exactly what exists.
    civicbus__v1__ticket__free_unpacked (t, NULL);
    return NULL;
}

/* ---- private: JSON out ---- */

//  A JSON string of `len` bytes of text; bytes that are not valid UTF-8
//  become U+FFFD. NULL only when memory ran out.
static json_t *
s_text (const char *text, size_t len)
{
    if (!text)
        return json_string ("");
    if (cb_utf8_valid (text, len) && memchr (text, '\0', len) == NULL)
        return json_stringn (text, len);
    char *clean = malloc (len * 3 + 1);
    if (!clean)
        return NULL;
    size_t out = 0, at = 0;
    while (at < len) {
        uint32_t cp;
        size_t n = cb_utf8_decode (text + at, len - at, &cp);
        if (n == 0 || (n == 1 && text [at] == '\0')) {
            memcpy (clean + out, "\xEF\xBF\xBD", 3);
            out += 3;
            at += 1;
        }
        else {
            memcpy (clean + out, text + at, n);
            out += n;
            at += n;
        }
    }
    json_t *result = json_stringn (clean, out);
    free (clean);
    return result;
}

static json_t *
s_string (const char *text)
{
    return s_text (text, text ? strlen (text) : 0);
}

//  A name from a table, or null for a value the table does not have.
static json_t *
s_enum (const char *name)
{
    return name ? json_string (name) : json_null ();
}

//  jansson refuses NaN and infinities (JSON has no such numbers): null.
static json_t *
s_number (double value)
{
    return isfinite (value) ? json_real (value) : json_null ();
}

static json_t *
s_time (int64_t ms)
{
    if (ms <= 0 || ms > S_TIME_MAX_MS)
        return json_null ();
    char buf [40];
    return json_string (cb_time_format_iso (ms, buf, sizeof buf));
}

static json_t *
s_string_array (char **items, size_t count)
{
    json_t *array = json_array ();
    for (size_t i = 0; array && i < count; i++)
        if (json_array_append_new (array, s_string (items [i]))) {
            json_decref (array);
            return NULL;
        }
    return array;
}

//  Sets key to value (stealing it). Returns -1 when value is NULL (memory
//  ran out building it) or the set failed; the caller gives up then.
static int
s_set (json_t *object, const char *key, json_t *value)
{
    if (!value)
        return -1;
    return json_object_set_new (object, key, value);
}

//  A masked copy of `text` made by `mask` (the output never grows). NULL
//  when memory ran out.
static char *
s_masked (const char *text, void (*mask) (const char *, char *, size_t))
{
    size_t cap = strlen (text) + 1;
    char *out = malloc (cap);
    if (out)
        mask (text, out, cap);
    return out;
}

static json_t *
s_location_to_json (const Civicbus__V1__Location *loc)
{
    json_t *json = json_object ();
    if (!json)
        return NULL;
    int rc = 0;
    if (loc->has_point) {
        rc |= s_set (json, "lat", s_number (loc->lat));
        rc |= s_set (json, "lon", s_number (loc->lon));
    }
    rc |= s_set (json, "address", s_string (loc->address));
    rc |= s_set (json, "grid_code", s_string (loc->grid_code));
    rc |= s_set (json, "grid_path", s_string_array (loc->grid_path, loc->n_grid_path));
    rc |= s_set (json, "ungridded", json_boolean (loc->ungridded));
    if (rc) {
        json_decref (json);
        return NULL;
    }
    return json;
}

static json_t *
s_reporter_to_json (const Civicbus__V1__Reporter *reporter, bool masked)
{
    json_t *json = json_object ();
    if (!json)
        return NULL;
    const char *name = reporter->name ? reporter->name : "";
    const char *phone = reporter->phone ? reporter->phone : "";
    int rc = 0;
    if (masked) {
        char *masked_name = s_masked (name, cb_mask_name);
        char *masked_phone = s_masked (phone, cb_mask_phone);
        rc |= s_set (json, "name", masked_name ? s_string (masked_name) : NULL);
        rc |= s_set (json, "phone", masked_phone ? s_string (masked_phone) : NULL);
        free (masked_name);
        free (masked_phone);
    }
    else {
        rc |= s_set (json, "name", s_string (name));
        rc |= s_set (json, "phone", s_string (phone));
    }
    if (rc) {
        json_decref (json);
        return NULL;
    }
    return json;
}

static json_t *
s_deadlines_to_json (const Civicbus__V1__Ticket *t)
{
    json_t *array = json_array ();
    for (size_t i = 0; array && i < t->n_deadlines; i++) {
        const Civicbus__V1__Deadline *deadline = t->deadlines [i];
        json_t *json = json_object ();
        int rc = json ? 0 : -1;
        if (json && deadline) {
            rc |= s_set (json, "stage", s_enum (cb_stage_name (deadline->stage)));
            rc |= s_set (json, "due", s_time (deadline->due_ms));
            rc |= s_set (json, "warn", s_time (deadline->warn_ms));
            if (deadline->started_ms)
                rc |= s_set (json, "started", s_time (deadline->started_ms));
            if (deadline->finished_ms)
                rc |= s_set (json, "finished", s_time (deadline->finished_ms));
            if (t->state == CIVICBUS__V1__TICKET_STATE__SUSPENDED
            ||  deadline->remaining_ms != 0)
                rc |= s_set (json, "remaining_ms", json_integer (deadline->remaining_ms));
        }
        if (rc || json_array_append_new (array, json)) {
            json_decref (array);
            return NULL;
        }
    }
    return array;
}

//  merged_from: [{ticket_id, merged, reporter? (masked as the ticket's)}].
static json_t *
s_merged_to_json (const Civicbus__V1__Ticket *t, bool masked, bool no_personal)
{
    json_t *array = json_array ();
    for (size_t i = 0; array && i < t->n_merged_from; i++) {
        const Civicbus__V1__MergedReport *m = t->merged_from [i];
        json_t *json = json_object ();
        int rc = json ? 0 : -1;
        if (json && m) {
            rc |= s_set (json, "ticket_id", s_string (m->ticket_id));
            rc |= s_set (json, "merged", s_time (m->merged_ms));
            if (m->reporter && !no_personal)
                rc |= s_set (json, "reporter", s_reporter_to_json (m->reporter, masked));
        }
        if (rc || json_array_append_new (array, json)) {
            json_decref (array);
            return NULL;
        }
    }
    return array;
}

static json_t *
s_fold_to_json (const Civicbus__V1__SensorFold *fold)
{
    return json_pack ("{s:o*, s:o*, s:I, s:o*, s:o*, s:o*, s:f}",
                      "type", s_string (fold->type), "fold_id", s_string (fold->fold_id),
                      "event_count", (json_int_t) fold->event_count,
                      "first_seen", s_time (fold->first_seen_ms),
                      "last_seen", s_time (fold->last_seen_ms),
                      "first_device_id", s_string (fold->first_device_id),
                      "confidence", fold->confidence);
}

static json_t *
s_sender_deadlines_to_json (const Civicbus__V1__Ticket *t)
{
    json_t *array = json_array ();
    for (size_t i = 0; array && i < t->n_sender_deadlines; i++) {
        const Civicbus__V1__Deadline *deadline = t->sender_deadlines [i];
        json_t *json = deadline ? json_pack ("{s:o*, s:o*}",
                                             "stage", s_enum (cb_stage_name (deadline->stage)),
                                             "due", s_time (deadline->due_ms)) : NULL;
        if (!json || json_array_append_new (array, json)) {
            json_decref (array);
            return NULL;
        }
    }
    return array;
}

/* ---- public: enum names ---- */

const char *
cb_source_name (int source)
{
    return s_name_of (s_source_names, S_COUNT (s_source_names), source);
}

int
cb_source_from_name (const char *name)
{
    return s_index_of (s_source_names, S_COUNT (s_source_names), 0, name);
}

const char *
cb_request_type_name (int request_type)
{
    return s_name_of (s_request_type_names, S_COUNT (s_request_type_names), request_type);
}

int
cb_request_type_from_name (const char *name)
{
    int found = s_index_of (s_request_type_names, S_COUNT (s_request_type_names), 0, name);
    if (found < 0)
        found = s_index_of (s_request_type_chinese, S_COUNT (s_request_type_chinese), 0, name);
    return found;
}

const char *
cb_urgency_name (int urgency)
{
    return s_name_of (s_urgency_names, S_COUNT (s_urgency_names), urgency);
}

int
cb_urgency_from_name (const char *name)
{
    return s_index_of (s_urgency_names, S_COUNT (s_urgency_names), -1, name);
}

const char *
cb_stage_name (int stage)
{
    return s_name_of (s_stage_names, S_COUNT (s_stage_names), stage);
}

int
cb_stage_from_name (const char *name)
{
    return s_index_of (s_stage_names, S_COUNT (s_stage_names), 0, name);
}

const char *
cb_light_name (int light)
{
    return s_name_of (s_light_names, S_COUNT (s_light_names), light);
}

int
cb_light_from_name (const char *name)
{
    return s_index_of (s_light_names, S_COUNT (s_light_names), -1, name);
}

/* ---- public: request in ---- */

int
ticket_from_request_json (const char *body, size_t len,
                          Civicbus__V1__Ticket **out, cb_error_t *err)
{
    assert (out);
    *out = NULL;
    if (!body && len > 0) {
        cb_error_set (err, "malformed_json", NULL, "no body");
        return -1;
    }
    json_error_t parse_error;
    json_t *root = json_loadb (body ? body : "", len,
                               JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                               &parse_error);
    if (!root) {
        cb_error_set (err, "malformed_json", NULL, "%s (line %d, column %d)",
                      parse_error.text, parse_error.line, parse_error.column);
        return -1;
    }
    int rc = -1;
    s_request_t req;
    if (!json_is_object (root))
        cb_error_set (err, "not_object", NULL, "the body must be a JSON object");
    else
    if (s_too_deep (root, 1, TICKET_JSON_MAX_DEPTH))
        cb_error_set (err, "malformed_json", NULL,
                      "JSON nested deeper than %d levels", TICKET_JSON_MAX_DEPTH);
    else
    if (s_check_request (root, &req, err) == 0) {
        *out = s_build_ticket (&req);
        if (*out)
            rc = 0;
        else
            cb_error_set (err, "no_memory", NULL, "out of memory building the ticket");
    }
    json_decref (root);
    return rc;
}

/* ---- public: JSON out ---- */

json_t *
ticket_created_to_json (const Civicbus__V1__Ticket *t, unsigned flags)
{
    assert (t);
    json_t *json = json_object ();
    if (!json)
        return NULL;
    int rc = 0;
    rc |= s_set (json, "id", s_string (t->id));
    rc |= s_set (json, "state", json_string (ticket_state_name (t->state)));
    rc |= s_set (json, "version", json_integer (t->version));
    rc |= s_set (json, "source", s_enum (cb_source_name (t->source)));
    rc |= s_set (json, "request_type", s_enum (cb_request_type_name (t->request_type)));
    rc |= s_set (json, "category", t->category ? s_string (t->category) : json_null ());
    rc |= s_set (json, "created", s_time (t->created_ms));
    const Civicbus__V1__Location *loc = t->location;
    if (loc) {
        json_t *where = json_object ();
        rc |= s_set (json, "location", where);
        if (where) {
            rc |= s_set (where, "grid_code", s_string (loc->grid_code));
            rc |= s_set (where, "grid_path", s_string_array (loc->grid_path, loc->n_grid_path));
            rc |= s_set (where, "ungridded", json_boolean (loc->ungridded));
        }
    }
    if (t->reporter && !(flags & TICKET_JSON_NO_PERSONAL))
        rc |= s_set (json, "reporter",
                     s_reporter_to_json (t->reporter, flags & TICKET_JSON_MASK_PERSONAL));
    if (t->probable_duplicate_of && *t->probable_duplicate_of)
        rc |= s_set (json, "probable_duplicate_of", s_string (t->probable_duplicate_of));
    if (rc) {
        json_decref (json);
        return NULL;
    }
    return json;
}

json_t *
ticket_to_json (const Civicbus__V1__Ticket *t, unsigned flags)
{
    assert (t);
    bool no_personal = flags & TICKET_JSON_NO_PERSONAL;
    bool masked = no_personal || (flags & TICKET_JSON_MASK_PERSONAL);
    json_t *json = json_object ();
    if (!json)
        return NULL;
    int rc = 0;
    rc |= s_set (json, "id", s_string (t->id));
    rc |= s_set (json, "source", s_enum (cb_source_name (t->source)));
    rc |= s_set (json, "external_id", s_string (t->external_id));
    rc |= s_set (json, "request_type", s_enum (cb_request_type_name (t->request_type)));
    rc |= s_set (json, "category", s_string (t->category));
    rc |= s_set (json, "urgency", s_enum (cb_urgency_name (t->urgency)));
    if (masked && t->description) {
        char *description = s_masked (t->description, cb_mask_text);
        rc |= s_set (json, "description", description ? s_string (description) : NULL);
        free (description);
    }
    else
        rc |= s_set (json, "description", s_string (t->description));
    if (t->location)
        rc |= s_set (json, "location", s_location_to_json (t->location));
    if (t->reporter && !no_personal)
        rc |= s_set (json, "reporter", s_reporter_to_json (t->reporter, masked));
    rc |= s_set (json, "attachments",
                 s_string_array (t->attachment_urls, t->n_attachment_urls));
    rc |= s_set (json, "state", json_string (ticket_state_name (t->state)));
    rc |= s_set (json, "department", s_string (t->department));
    rc |= s_set (json, "co_handlers", s_string_array (t->co_handlers, t->n_co_handlers));
    rc |= s_set (json, "deadlines", s_deadlines_to_json (t));
    rc |= s_set (json, "light", s_enum (cb_light_name (t->light)));
    rc |= s_set (json, "escalation_level", json_integer (t->escalation_level));
    rc |= s_set (json, "rework_count", json_integer (t->rework_count));
    rc |= s_set (json, "version", json_integer (t->version));
    rc |= s_set (json, "created", s_time (t->created_ms));
    rc |= s_set (json, "updated", s_time (t->updated_ms));
    if (t->merged_into && *t->merged_into)
        rc |= s_set (json, "merged_into", s_string (t->merged_into));
    if (t->reject_reason && *t->reject_reason)
        rc |= s_set (json, "reject_reason", s_string (t->reject_reason));
    if (t->resolution && *t->resolution)
        rc |= s_set (json, "resolution", s_string (t->resolution));
    if (t->satisfaction)
        rc |= s_set (json, "satisfaction", json_integer (t->satisfaction));
    if (t->policy && *t->policy)
        rc |= s_set (json, "policy", s_string (t->policy));
    if (t->extension_pending) {
        rc |= s_set (json, "extension_pending", json_true ());
        rc |= s_set (json, "extension_days", json_integer (t->extension_days));
    }
    if (t->suspension_pending)
        rc |= s_set (json, "suspension_pending", json_true ());
    //  Issue 6: review, duplicates, merges, sensor folds, the sender's deadlines.
    if (t->needs_review)
        rc |= s_set (json, "needs_review", json_true ());
    if (t->review_reason && *t->review_reason)
        rc |= s_set (json, "review_reason", s_string (t->review_reason));
    if (t->review_required)
        rc |= s_set (json, "review_required", json_true ());
    if (t->probable_duplicate_of && *t->probable_duplicate_of)
        rc |= s_set (json, "probable_duplicate_of", s_string (t->probable_duplicate_of));
    if (t->n_merged_from)
        rc |= s_set (json, "merged_from", s_merged_to_json (t, masked, no_personal));
    if (t->sensor_fold)
        rc |= s_set (json, "sensor_fold", s_fold_to_json (t->sensor_fold));
    if (t->n_sender_deadlines)
        rc |= s_set (json, "sender_deadlines", s_sender_deadlines_to_json (t));
    if (rc) {
        json_decref (json);
        return NULL;
    }
    return json;
}

json_t *
ticket_event_to_json (const Civicbus__V1__TicketEvent *ev)
{
    assert (ev);
    json_t *json = json_object ();
    if (!json)
        return NULL;
    int rc = 0;
    rc |= s_set (json, "ticket_id", s_string (ev->ticket_id));
    rc |= s_set (json, "sequence", json_integer (ev->sequence));
    rc |= s_set (json, "type", s_string (ev->type));
    json_t *actor = json_object ();
    if (actor && ev->actor) {
        const char *kind = s_name_of (s_actor_kind_names, S_COUNT (s_actor_kind_names),
                                      ev->actor->kind);
        rc |= s_set (actor, "kind", json_string (kind ? kind : "unspecified"));
        rc |= s_set (actor, "id", s_string (ev->actor->id));
        rc |= s_set (actor, "name", s_string (ev->actor->name));
    }
    rc |= s_set (json, "actor", actor);
    rc |= s_set (json, "time", s_time (ev->time_ms));
    rc |= s_set (json, "from", json_string (ticket_state_name (ev->from_state)));
    rc |= s_set (json, "to", json_string (ticket_state_name (ev->to_state)));
    rc |= s_set (json, "note", s_string (ev->note));
    if (ev->payload.len > 0 && ev->payload.data) {
        json_t *payload = json_loadb ((const char *) ev->payload.data, ev->payload.len,
                                      JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        if (!payload)
            payload = s_text ((const char *) ev->payload.data, ev->payload.len);
        rc |= s_set (json, "payload", payload);
    }
    if (rc) {
        json_decref (json);
        return NULL;
    }
    return json;
}
