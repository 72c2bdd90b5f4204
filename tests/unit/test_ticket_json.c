/*  test_ticket_json.c — the POST /v1/tickets body, tickets and events as
    JSON, and the masking of personal data.

    Every validation rule is exercised with the error code and the field
    path it must produce; then the hostile inputs (invalid UTF-8, truncated
    bodies, 100,000 '[' characters, duplicate keys, every field with every
    wrong type) and the round trip request -> Ticket -> JSON. */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "civicbus/clock.h"
#include "civicbus/mask.h"
#include "civicbus/ticket_json.h"
#include "civicbus/pbutil.h"

//  A complete, valid body; cases below break one thing at a time.
#define S_GOOD_BODY \
    "{\"source\": \"hotline\", \"external_id\": \"SD12345-20260930-0001\"," \
    " \"request_type\": \"complaint\", \"category\": \"urban.litter\"," \
    " \"urgency\": \"urgent\", \"description\": \"路边垃圾堆积三天了，请尽快处理\"," \
    " \"location\": {\"lat\": 31.2304, \"lon\": 121.4737, \"address\": \"南京西路1号\"," \
    "               \"grid_code\": \"310105001001\"}," \
    " \"reporter\": {\"name\": \"张三\", \"phone\": \"13812345678\"}," \
    " \"attachments\": [\"https://img.example.cn/a.jpg\", \"http://img.example.cn/b.png\"]}"

/* ---- helpers ---- */

static Civicbus__V1__Ticket *
s_parse_ok (const char *body)
{
    Civicbus__V1__Ticket *ticket = NULL;
    cb_error_t err;
    cb_error_clear (&err);
    int rc = ticket_from_request_json (body, strlen (body), &ticket, &err);
    if (rc != 0)
        fail_msg ("refused: %s %s: %s\nbody: %.300s", err.code, err.field, err.message, body);
    assert_non_null (ticket);
    return ticket;
}

//  Parses `len` bytes of `body`, expects refusal with `code` on `field`.
static void
s_expect_error_n (const char *body, size_t len, const char *code, const char *field)
{
    Civicbus__V1__Ticket *ticket = (Civicbus__V1__Ticket *) 1;
    cb_error_t err;
    cb_error_clear (&err);
    int rc = ticket_from_request_json (body, len, &ticket, &err);
    if (rc != -1 || strcmp (err.code, code) || (field && strcmp (err.field, field)))
        fail_msg ("expected %s on '%s', got rc %d %s on '%s' (%s)\nbody: %.300s",
                  code, field ? field : "*", rc, err.code, err.field, err.message, body);
    assert_null (ticket);
    assert_true (strlen (err.message) > 0);
}

static void
s_expect_error (const char *body, const char *code, const char *field)
{
    s_expect_error_n (body, strlen (body), code, field);
}

//  A valid body with `location` and extra top-level members `extra` (JSON
//  text starting with ',' or empty).
static char *
s_body_with (const char *location, const char *extra)
{
    char *body;
    int rc = asprintf (&body,
        "{\"source\": \"app\", \"request_type\": \"help\", \"category\": \"civil.elderly\","
        " \"description\": \"独居老人需要帮助\", \"location\": %s%s}", location, extra);
    assert_true (rc > 0);
    return body;
}

static void
s_expect_extra_error (const char *extra, const char *code, const char *field)
{
    char *body = s_body_with ("{\"grid_code\": \"G1\"}", extra);
    s_expect_error (body, code, field);
    free (body);
}

static void
s_expect_location_error (const char *location, const char *code, const char *field)
{
    char *body = s_body_with (location, "");
    s_expect_error (body, code, field);
    free (body);
}

//  A body of the required fields only, with `member` replaced (or added):
//  `member` is `"key": value`.
static char *
s_body_replacing (const char *key, const char *value)
{
    const char *keys [] = { "source", "request_type", "category", "description", "location" };
    const char *values [] = { "\"web\"", "\"report\"", "\"market.price\"",
                              "\"价格欺诈\"", "{\"address\": \"XX路\"}" };
    char *body = strdup ("{");
    bool replaced = false;
    for (size_t i = 0; i < 5; i++) {
        const char *v = values [i];
        if (strcmp (keys [i], key) == 0) {
            v = value;
            replaced = true;
        }
        char *next;
        assert_true (asprintf (&next, "%s%s\"%s\": %s", body, i ? ", " : "", keys [i], v) > 0);
        free (body);
        body = next;
    }
    char *next;
    if (replaced)
        assert_true (asprintf (&next, "%s}", body) > 0);
    else
        assert_true (asprintf (&next, "%s, \"%s\": %s}", body, key, value) > 0);
    free (body);
    return next;
}

static void
s_expect_field_error (const char *key, const char *value, const char *code, const char *field)
{
    char *body = s_body_replacing (key, value);
    s_expect_error (body, code, field);
    free (body);
}

static char *
s_repeat (const char *unit, size_t times)
{
    size_t unit_len = strlen (unit);
    char *text = malloc (unit_len * times + 1);
    for (size_t i = 0; i < times; i++)
        memcpy (text + i * unit_len, unit, unit_len);
    text [unit_len * times] = '\0';
    return text;
}

/* ---- accepted requests ---- */

static void
test_full_request_builds_every_field (void **state)
{
    (void) state;
    Civicbus__V1__Ticket *t = s_parse_ok (S_GOOD_BODY);
    assert_int_equal (t->source, CIVICBUS__V1__SOURCE__SOURCE_HOTLINE);
    assert_string_equal (t->external_id, "SD12345-20260930-0001");
    assert_int_equal (t->request_type, CIVICBUS__V1__REQUEST_TYPE__COMPLAINT);
    assert_string_equal (t->category, "urban.litter");
    assert_int_equal (t->urgency, CIVICBUS__V1__URGENCY__URGENCY_URGENT);
    assert_string_equal (t->description, "路边垃圾堆积三天了，请尽快处理");
    assert_non_null (t->location);
    assert_true (t->location->has_point);
    assert_true (t->location->lat == 31.2304);
    assert_true (t->location->lon == 121.4737);
    assert_string_equal (t->location->address, "南京西路1号");
    assert_string_equal (t->location->grid_code, "310105001001");
    assert_non_null (t->reporter);
    assert_string_equal (t->reporter->name, "张三");
    assert_string_equal (t->reporter->phone, "13812345678");
    assert_int_equal (t->n_attachment_urls, 2);
    assert_string_equal (t->attachment_urls [0], "https://img.example.cn/a.jpg");
    assert_string_equal (t->attachment_urls [1], "http://img.example.cn/b.png");
    //  Lifecycle fields are left for the store.
    assert_int_equal (t->state, CIVICBUS__V1__TICKET_STATE__TICKET_STATE_UNSPECIFIED);
    assert_string_equal (t->id, "");
    assert_int_equal (t->version, 0);
    assert_int_equal (t->created_ms, 0);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_minimal_request_gets_defaults (void **state)
{
    (void) state;
    char *body = s_body_with ("{\"grid_code\": \"310105001001\"}", "");
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    assert_int_equal (t->source, CIVICBUS__V1__SOURCE__SOURCE_APP);
    assert_int_equal (t->request_type, CIVICBUS__V1__REQUEST_TYPE__HELP);
    assert_int_equal (t->urgency, CIVICBUS__V1__URGENCY__URGENCY_NORMAL);
    assert_string_equal (t->external_id, "");
    assert_false (t->location->has_point);
    assert_string_equal (t->location->address, "");
    assert_null (t->reporter);
    assert_int_equal (t->n_attachment_urls, 0);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);

    //  null is absent; an empty reporter object gives no reporter.
    body = s_body_with ("{\"address\": \"XX路\", \"lat\": null, \"lon\": null}",
                        ", \"external_id\": null, \"urgency\": null, \"reporter\": {},"
                        " \"attachments\": []");
    t = s_parse_ok (body);
    assert_false (t->location->has_point);
    assert_string_equal (t->location->address, "XX路");
    assert_null (t->reporter);
    assert_int_equal (t->urgency, CIVICBUS__V1__URGENCY__URGENCY_NORMAL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);

    //  A reporter with only a phone.
    body = s_body_with ("{\"lat\": 0, \"lon\": 0}", ", \"reporter\": {\"phone\": \"+86 21-6321 0000\"}");
    t = s_parse_ok (body);
    assert_true (t->location->has_point);
    assert_non_null (t->reporter);
    assert_string_equal (t->reporter->name, "");
    assert_string_equal (t->reporter->phone, "+86 21-6321 0000");
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
}

static void
test_every_enum_name_is_accepted (void **state)
{
    (void) state;
    const char *sources [] = { "hotline", "grid_worker", "app", "web", "sensor", "open311" };
    for (int i = 0; i < 6; i++) {
        char value [32];
        snprintf (value, sizeof value, "\"%s\"", sources [i]);
        char *body = s_body_replacing ("source", value);
        Civicbus__V1__Ticket *t = s_parse_ok (body);
        assert_int_equal (t->source, i + 1);
        civicbus__v1__ticket__free_unpacked (t, NULL);
        free (body);
    }
    const char *types [] = { "consult", "help", "complaint", "report", "suggestion" };
    const char *chinese [] = { "咨询", "求助", "投诉", "举报", "建议" };
    for (int i = 0; i < 5; i++) {
        for (int lang = 0; lang < 2; lang++) {
            char value [32];
            snprintf (value, sizeof value, "\"%s\"", lang ? chinese [i] : types [i]);
            char *body = s_body_replacing ("request_type", value);
            Civicbus__V1__Ticket *t = s_parse_ok (body);
            assert_int_equal (t->request_type, i + 1);
            civicbus__v1__ticket__free_unpacked (t, NULL);
            free (body);
        }
    }
    char *body = s_body_replacing ("urgency", "\"normal\"");
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    assert_int_equal (t->urgency, CIVICBUS__V1__URGENCY__URGENCY_NORMAL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
}

/* ---- refused requests: one rule at a time ---- */

static void
test_required_fields (void **state)
{
    (void) state;
    const char *required [] = { "source", "request_type", "category", "description", "location" };
    for (int i = 0; i < 5; i++) {
        //  Absent (null counts as absent).
        char *body = s_body_replacing (required [i], "null");
        s_expect_error (body, "missing_field", required [i]);
        free (body);
    }
    s_expect_error ("{}", "missing_field", "source");
    s_expect_location_error ("{}", "missing_field", "location");
    s_expect_location_error ("{\"lat\": 1}", "missing_field", "location.lon");
    s_expect_location_error ("{\"lon\": 1, \"address\": \"X\"}", "missing_field", "location.lat");
    s_expect_location_error ("{\"lat\": null, \"lon\": null}", "missing_field", "location");
}

static void
test_enum_values (void **state)
{
    (void) state;
    s_expect_field_error ("source", "\"phone\"", "bad_value", "source");
    s_expect_field_error ("source", "\"Hotline\"", "bad_value", "source");
    s_expect_field_error ("source", "\"unspecified\"", "bad_value", "source");
    s_expect_field_error ("source", "\"\"", "bad_value", "source");
    s_expect_field_error ("request_type", "\"question\"", "bad_value", "request_type");
    s_expect_field_error ("request_type", "\"咨\"", "bad_value", "request_type");
    s_expect_field_error ("urgency", "\"high\"", "bad_value", "urgency");
    s_expect_field_error ("urgency", "\"URGENT\"", "bad_value", "urgency");
}

static void
test_category_rules (void **state)
{
    (void) state;
    s_expect_field_error ("category", "\"\"", "bad_value", "category");
    s_expect_field_error ("category", "\"urban litter\"", "bad_value", "category");
    s_expect_field_error ("category", "\"城管\"", "bad_value", "category");
    s_expect_field_error ("category", "\"a/b\"", "bad_value", "category");
    s_expect_field_error ("category",
        "\"urban.event.other.illegal_construction.abcdefghijklmnopqrstuvwxy\"", "too_long", "category");
    char *body = s_body_replacing ("category",
        "\"urban.event.other.illegal_construction.abcdefghijklmnopqrstuvwx\"");
    Civicbus__V1__Ticket *t = s_parse_ok (body);     //  exactly 63
    assert_int_equal (strlen (t->category), 63);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
}

static void
test_description_counts_characters_not_bytes (void **state)
{
    (void) state;
    //  4,000 Chinese characters are 12,000 bytes and allowed.
    char *text = s_repeat ("垃", 4000);
    char *value;
    assert_true (asprintf (&value, "\"%s\"", text) > 0);
    char *body = s_body_replacing ("description", value);
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    assert_int_equal (strlen (t->description), 12000);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
    free (value);
    free (text);
    //  4,001 are too long.
    text = s_repeat ("垃", 4001);
    assert_true (asprintf (&value, "\"%s\"", text) > 0);
    s_expect_field_error ("description", value, "too_long", "description");
    free (value);
    free (text);
    //  A character outside the BMP, written as a surrogate pair, counts once.
    text = s_repeat ("\\ud83d\\ude00", 4000);
    assert_true (asprintf (&value, "\"%s\"", text) > 0);
    body = s_body_replacing ("description", value);
    t = s_parse_ok (body);
    assert_int_equal (strlen (t->description), 16000);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
    free (value);
    free (text);
}

static void
test_description_content (void **state)
{
    (void) state;
    s_expect_field_error ("description", "\"\"", "bad_value", "description");
    s_expect_field_error ("description", "\"   \\t\\n \"", "bad_value", "description");
    //  Ideographic spaces (U+3000) are whitespace too.
    s_expect_field_error ("description", "\"\u3000\u3000\"", "bad_value", "description");
    s_expect_field_error ("description", "\"bell \\u0007\"", "bad_value", "description");
    s_expect_field_error ("description", "\"nul \\u0000 inside\"", "bad_value", "description");
    //  Lines and tabs are fine.
    char *body = s_body_replacing ("description", "\"第一行\\n第二行\\t完\"");
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    assert_string_equal (t->description, "第一行\n第二行\t完");
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
}

static void
test_external_id_rules (void **state)
{
    (void) state;
    s_expect_extra_error (", \"external_id\": \"\"", "bad_value", "external_id");
    s_expect_extra_error (", \"external_id\": \"has space\"", "bad_value", "external_id");
    s_expect_extra_error (", \"external_id\": \"工单1\"", "bad_value", "external_id");
    s_expect_extra_error (", \"external_id\": \"a\\u0000b\"", "bad_value", "external_id");
    char *id = s_repeat ("x", 65);
    char *extra;
    assert_true (asprintf (&extra, ", \"external_id\": \"%s\"", id) > 0);
    s_expect_extra_error (extra, "too_long", "external_id");
    free (extra);
    id [64] = '\0';
    assert_true (asprintf (&extra, ", \"external_id\": \"%s\"", id) > 0);
    char *body = s_body_with ("{\"grid_code\": \"G1\"}", extra);
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    assert_string_equal (t->external_id, id);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
    free (extra);
    free (id);
}

static void
test_location_rules (void **state)
{
    (void) state;
    s_expect_location_error ("{\"lat\": 90.0001, \"lon\": 0}", "bad_value", "location.lat");
    s_expect_location_error ("{\"lat\": -91, \"lon\": 0}", "bad_value", "location.lat");
    s_expect_location_error ("{\"lat\": 0, \"lon\": 180.5}", "bad_value", "location.lon");
    s_expect_location_error ("{\"lat\": 0, \"lon\": -181}", "bad_value", "location.lon");
    s_expect_location_error ("{\"lat\": 0, \"lon\": 1e308}", "bad_value", "location.lon");
    //  Too big to be a double at all: jansson refuses the number.
    s_expect_location_error ("{\"lat\": 0, \"lon\": 1e999}", "malformed_json", "");
    s_expect_location_error ("{\"address\": \"\"}", "bad_value", "location.address");
    s_expect_location_error ("{\"address\": \"a\\u0001b\"}", "bad_value", "location.address");
    s_expect_location_error ("{\"address\": \"a\\u0000b\"}", "bad_value", "location.address");
    s_expect_location_error ("{\"grid_code\": \"\"}", "bad_value", "location.grid_code");
    s_expect_location_error ("{\"grid_code\": \"G 1\"}", "bad_value", "location.grid_code");
    s_expect_location_error ("{\"grid_code\": \"G1\", \"floor\": 3}", "unknown_field", "location.floor");

    char *address = s_repeat ("路", 201);
    char *location;
    assert_true (asprintf (&location, "{\"address\": \"%s\"}", address) > 0);
    s_expect_location_error (location, "too_long", "location.address");
    free (location);
    free (address);
    char *code = s_repeat ("1", 65);
    assert_true (asprintf (&location, "{\"grid_code\": \"%s\"}", code) > 0);
    s_expect_location_error (location, "too_long", "location.grid_code");
    free (location);
    free (code);

    //  The edges are inside.
    char *body = s_body_with ("{\"lat\": -90, \"lon\": 180}", "");
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    assert_true (t->location->lat == -90 && t->location->lon == 180);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
    address = s_repeat ("路", 200);
    assert_true (asprintf (&location, "{\"address\": \"%s\"}", address) > 0);
    body = s_body_with (location, "");
    t = s_parse_ok (body);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
    free (location);
    free (address);
}

static void
test_reporter_rules (void **state)
{
    (void) state;
    s_expect_extra_error (", \"reporter\": {\"name\": \"\"}", "bad_value", "reporter.name");
    s_expect_extra_error (", \"reporter\": {\"name\": \"  \"}", "bad_value", "reporter.name");
    s_expect_extra_error (", \"reporter\": {\"name\": \"张\\n三\"}", "bad_value", "reporter.name");
    s_expect_extra_error (", \"reporter\": {\"name\": \"张\\u0000\"}", "bad_value", "reporter.name");
    s_expect_extra_error (", \"reporter\": {\"phone\": \"1234\"}", "bad_value", "reporter.phone");
    s_expect_extra_error (", \"reporter\": {\"phone\": \"138-1234-567x\"}", "bad_value", "reporter.phone");
    s_expect_extra_error (", \"reporter\": {\"phone\": \"12-34\"}", "bad_value", "reporter.phone");
    s_expect_extra_error (", \"reporter\": {\"phone\": \"123456789012345678901\"}",
                          "too_long", "reporter.phone");
    s_expect_extra_error (", \"reporter\": {\"phone\": \"13812345678\", \"id_card\": \"x\"}",
                          "unknown_field", "reporter.id_card");
    char *name = s_repeat ("欧", 51);
    char *extra;
    assert_true (asprintf (&extra, ", \"reporter\": {\"name\": \"%s\"}", name) > 0);
    s_expect_extra_error (extra, "too_long", "reporter.name");
    free (extra);
    free (name);
    //  Edges that pass: 50 characters, 5 digits, 20 characters.
    name = s_repeat ("欧", 50);
    assert_true (asprintf (&extra, ", \"reporter\": {\"name\": \"%s\", \"phone\": \"12345\"}", name) > 0);
    char *body = s_body_with ("{\"grid_code\": \"G1\"}", extra);
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    assert_string_equal (t->reporter->phone, "12345");
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
    free (extra);
    free (name);
    body = s_body_with ("{\"grid_code\": \"G1\"}", ", \"reporter\": {\"phone\": \"+86 138-1234-5678 00\"}");
    t = s_parse_ok (body);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
}

static void
test_attachment_rules (void **state)
{
    (void) state;
    s_expect_extra_error (", \"attachments\": [\"https://a.cn/1\", \"ftp://a.cn/2\"]",
                          "bad_value", "attachments[1]");
    s_expect_extra_error (", \"attachments\": [\"https://a.cn/1\", \"https://a.cn/2\", \"https://a b\"]",
                          "bad_value", "attachments[2]");
    s_expect_extra_error (", \"attachments\": [\"https://\"]", "bad_value", "attachments[0]");
    s_expect_extra_error (", \"attachments\": [\"https:///path\"]", "bad_value", "attachments[0]");
    s_expect_extra_error (", \"attachments\": [\"https://a.cn/\\u0001\"]", "bad_value", "attachments[0]");
    s_expect_extra_error (", \"attachments\": [\"https://a.cn/\\u0000\"]", "bad_value", "attachments[0]");
    s_expect_extra_error (", \"attachments\": [\"javascript:alert(1)\"]", "bad_value", "attachments[0]");
    s_expect_extra_error (", \"attachments\": [\"\"]", "bad_value", "attachments[0]");
    s_expect_extra_error (", \"attachments\": [\"https://a.cn/\", 7]", "wrong_type", "attachments[1]");
    s_expect_extra_error (", \"attachments\": [null]", "wrong_type", "attachments[0]");

    //  Eleven items: too many. Ten: fine.
    char *items = s_repeat ("\"https://a.cn/x\",", 11);
    items [strlen (items) - 1] = '\0';
    char *extra;
    assert_true (asprintf (&extra, ", \"attachments\": [%s]", items) > 0);
    s_expect_extra_error (extra, "too_long", "attachments");
    free (extra);
    items [strlen (items) - strlen (",\"https://a.cn/x\"")] = '\0';
    assert_true (asprintf (&extra, ", \"attachments\": [%s]", items) > 0);
    char *body = s_body_with ("{\"grid_code\": \"G1\"}", extra);
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    assert_int_equal (t->n_attachment_urls, 10);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
    free (extra);
    free (items);

    //  1,024 bytes is the longest URL.
    char *path = s_repeat ("p", 1024 - strlen ("https://a.cn/"));
    assert_true (asprintf (&extra, ", \"attachments\": [\"HTTPS://a.cn/%s\"]", path) > 0);
    body = s_body_with ("{\"grid_code\": \"G1\"}", extra);
    t = s_parse_ok (body);
    assert_int_equal (strlen (t->attachment_urls [0]), 1024);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (body);
    free (extra);
    assert_true (asprintf (&extra, ", \"attachments\": [\"https://a.cn/%sq\"]", path) > 0);
    s_expect_extra_error (extra, "too_long", "attachments[0]");
    free (extra);
    free (path);
}

static void
test_unknown_fields_are_refused (void **state)
{
    (void) state;
    s_expect_extra_error (", \"descripton\": \"typo\"", "unknown_field", "descripton");
    s_expect_extra_error (", \"state\": \"CLOSED\"", "unknown_field", "state");
    s_expect_extra_error (", \"id\": \"x\"", "unknown_field", "id");
    //  A very long Chinese key: the path is cut on a character boundary.
    char *key = s_repeat ("键", 60);
    char *extra;
    assert_true (asprintf (&extra, ", \"%s\": 1", key) > 0);
    char *body = s_body_with ("{\"grid_code\": \"G1\"}", extra);
    Civicbus__V1__Ticket *t = NULL;
    cb_error_t err;
    assert_int_equal (ticket_from_request_json (body, strlen (body), &t, &err), -1);
    assert_string_equal (err.code, "unknown_field");
    assert_true (strlen (err.field) > 0);
    assert_true (cb_utf8_valid (err.field, strlen (err.field)));
    assert_true (cb_utf8_valid (err.message, strlen (err.message)));
    assert_int_equal (strncmp (err.field, key, strlen (err.field)), 0);
    free (body);
    free (extra);
    free (key);
}

static void
test_wrong_type_for_every_field (void **state)
{
    (void) state;
    //  Every field, with every JSON type it must not have.
    const char *wrong_scalars [] = { "1", "2.5", "true", "[]", "{}", "[\"x\"]" };
    const char *string_fields [] = { "source", "request_type", "category", "urgency",
                                     "description", "external_id" };
    for (size_t f = 0; f < 6; f++)
        for (size_t w = 0; w < 6; w++)
            s_expect_field_error (string_fields [f], wrong_scalars [w], "wrong_type",
                                  string_fields [f]);
    const char *not_objects [] = { "1", "\"x\"", "true", "[]", "[{}]" };
    for (size_t w = 0; w < 5; w++) {
        s_expect_field_error ("location", not_objects [w], "wrong_type", "location");
        s_expect_field_error ("reporter", not_objects [w], "wrong_type", "reporter");
    }
    const char *not_arrays [] = { "1", "\"https://a.cn/x\"", "true", "{}" };
    for (size_t w = 0; w < 4; w++)
        s_expect_field_error ("attachments", not_arrays [w], "wrong_type", "attachments");
    const char *not_numbers [] = { "\"31.2\"", "true", "[]", "{}" };
    for (size_t w = 0; w < 4; w++) {
        char location [64];
        snprintf (location, sizeof location, "{\"lat\": %s, \"lon\": 1}", not_numbers [w]);
        s_expect_location_error (location, "wrong_type", "location.lat");
        snprintf (location, sizeof location, "{\"lat\": 1, \"lon\": %s}", not_numbers [w]);
        s_expect_location_error (location, "wrong_type", "location.lon");
    }
    const char *not_strings [] = { "1", "false", "[]", "{}" };
    for (size_t w = 0; w < 4; w++) {
        char text [96];
        snprintf (text, sizeof text, "{\"address\": %s}", not_strings [w]);
        s_expect_location_error (text, "wrong_type", "location.address");
        snprintf (text, sizeof text, "{\"address\": \"x\", \"grid_code\": %s}", not_strings [w]);
        s_expect_location_error (text, "wrong_type", "location.grid_code");
        snprintf (text, sizeof text, ", \"reporter\": {\"name\": %s}", not_strings [w]);
        s_expect_extra_error (text, "wrong_type", "reporter.name");
        snprintf (text, sizeof text, ", \"reporter\": {\"phone\": %s}", not_strings [w]);
        s_expect_extra_error (text, "wrong_type", "reporter.phone");
    }
}

/* ---- refused bodies: not JSON, or hostile JSON ---- */

static void
test_not_an_object (void **state)
{
    (void) state;
    s_expect_error ("[]", "not_object", "");
    s_expect_error ("\"ticket\"", "not_object", "");
    s_expect_error ("42", "not_object", "");
    s_expect_error ("null", "not_object", "");
}

static void
test_malformed_json (void **state)
{
    (void) state;
    s_expect_error ("", "malformed_json", "");
    s_expect_error ("   ", "malformed_json", "");
    s_expect_error ("{", "malformed_json", "");
    s_expect_error ("{\"source\": hotline}", "malformed_json", "");
    s_expect_error ("{\"source\": \"hotline\",}", "malformed_json", "");
    s_expect_error ("{} {}", "malformed_json", "");
    s_expect_error ("{'source': 'app'}", "malformed_json", "");
    //  A key with a NUL in it.
    s_expect_error ("{\"a\\u0000b\": 1}", "malformed_json", "");
    //  A NULL body with a length is refused; a NULL body of length 0 is empty.
    Civicbus__V1__Ticket *t;
    cb_error_t err;
    assert_int_equal (ticket_from_request_json (NULL, 5, &t, &err), -1);
    assert_string_equal (err.code, "malformed_json");
    assert_int_equal (ticket_from_request_json (NULL, 0, &t, &err), -1);
    assert_string_equal (err.code, "malformed_json");
    //  A NULL error pointer is allowed.
    assert_int_equal (ticket_from_request_json ("[]", 2, &t, NULL), -1);
    assert_null (t);
}

static void
test_invalid_utf8_is_refused (void **state)
{
    (void) state;
    const char *bodies [] = {
        "{\"source\": \"\xFF\"}",                 //  not UTF-8 at all
        "{\"source\": \"\xC3\"}",                 //  truncated sequence
        "{\"source\": \"\xC0\xAF\"}",             //  overlong '/'
        "{\"source\": \"\xED\xA0\x80\"}",         //  a surrogate, encoded
        "{\"source\": \"\xF4\x90\x80\x80\"}",     //  above U+10FFFF
        "{\"\xFE\": 1}",                          //  in a key
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies [0]; i++) {
        Civicbus__V1__Ticket *t;
        cb_error_t err;
        assert_int_equal (ticket_from_request_json (bodies [i], strlen (bodies [i]), &t, &err), -1);
        assert_string_equal (err.code, "malformed_json");
        //  The answer itself is valid UTF-8, so it can go back as JSON.
        assert_true (cb_utf8_valid (err.message, strlen (err.message)));
    }
    //  A lone surrogate escape is refused by jansson too.
    s_expect_field_error ("description", "\"\\ud800\"", "malformed_json", "");
}

static void
test_truncated_bodies (void **state)
{
    (void) state;
    const char *body = S_GOOD_BODY;
    size_t len = strlen (body);
    //  Exact-size copies, so AddressSanitizer catches any read past the end.
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc (cut ? cut : 1);
        memcpy (copy, body, cut);
        s_expect_error_n (copy, cut, "malformed_json", "");
        free (copy);
    }
    char *copy = malloc (len);
    memcpy (copy, body, len);
    Civicbus__V1__Ticket *t;
    assert_int_equal (ticket_from_request_json (copy, len, &t, NULL), 0);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    free (copy);
}

static void
test_deep_nesting (void **state)
{
    (void) state;
    //  100,000 '[': jansson's own depth cap answers, no stack overflow.
    char *deep = s_repeat ("[", 100000);
    s_expect_error (deep, "malformed_json", "");
    free (deep);
    deep = s_repeat ("{\"a\":", 100000);
    s_expect_error (deep, "malformed_json", "");
    free (deep);

    //  Our cap: 8 levels pass the depth check (and then fail on the type),
    //  9 levels are refused. The body is level 1, attachments level 2.
    char *inner = s_repeat ("[", 6);
    char *closing = s_repeat ("]", 6);
    char *extra;
    assert_true (asprintf (&extra, ", \"attachments\": [%s%s]", inner, closing) > 0);
    s_expect_extra_error (extra, "wrong_type", "attachments[0]");
    free (extra);
    assert_true (asprintf (&extra, ", \"attachments\": [[%s%s]]", inner, closing) > 0);
    s_expect_extra_error (extra, "malformed_json", "");
    free (extra);
    free (inner);
    free (closing);
    //  Deep inside an unknown field: still refused for depth first.
    s_expect_extra_error (", \"x\": [[[[[[[[[[1]]]]]]]]]]", "malformed_json", "");
}

static void
test_duplicate_keys (void **state)
{
    (void) state;
    s_expect_extra_error (", \"source\": \"web\"", "malformed_json", "");
    s_expect_location_error ("{\"lat\": 1, \"lon\": 2, \"lat\": 3}", "malformed_json", "");
    s_expect_extra_error (", \"reporter\": {\"name\": \"张三\", \"name\": \"李四\"}", "malformed_json", "");
    Civicbus__V1__Ticket *t;
    cb_error_t err;
    const char *body = "{\"a\": 1, \"a\": 2}";
    assert_int_equal (ticket_from_request_json (body, strlen (body), &t, &err), -1);
    assert_non_null (strstr (err.message, "duplicate"));
}

/* ---- JSON out ---- */

static void
test_round_trip_request_ticket_json (void **state)
{
    (void) state;
    Civicbus__V1__Ticket *t = s_parse_ok (S_GOOD_BODY);
    json_t *json = ticket_to_json (t, 0);
    assert_non_null (json);
    assert_string_equal (json_string_value (json_object_get (json, "source")), "hotline");
    assert_string_equal (json_string_value (json_object_get (json, "external_id")),
                         "SD12345-20260930-0001");
    assert_string_equal (json_string_value (json_object_get (json, "request_type")), "complaint");
    assert_string_equal (json_string_value (json_object_get (json, "category")), "urban.litter");
    assert_string_equal (json_string_value (json_object_get (json, "urgency")), "urgent");
    assert_string_equal (json_string_value (json_object_get (json, "description")),
                         "路边垃圾堆积三天了，请尽快处理");
    json_t *location = json_object_get (json, "location");
    assert_true (json_real_value (json_object_get (location, "lat")) == 31.2304);
    assert_true (json_real_value (json_object_get (location, "lon")) == 121.4737);
    assert_string_equal (json_string_value (json_object_get (location, "address")), "南京西路1号");
    assert_string_equal (json_string_value (json_object_get (location, "grid_code")), "310105001001");
    assert_int_equal (json_array_size (json_object_get (location, "grid_path")), 0);
    assert_true (json_is_false (json_object_get (location, "ungridded")));
    json_t *reporter = json_object_get (json, "reporter");
    assert_string_equal (json_string_value (json_object_get (reporter, "name")), "张三");
    assert_string_equal (json_string_value (json_object_get (reporter, "phone")), "13812345678");
    json_t *attachments = json_object_get (json, "attachments");
    assert_int_equal (json_array_size (attachments), 2);
    assert_string_equal (json_string_value (json_array_get (attachments, 1)),
                         "http://img.example.cn/b.png");
    assert_true (json_is_null (json_object_get (json, "created")));
    assert_null (json_object_get (json, "merged_into"));

    //  Feed the output back as a request: the same ticket comes out.
    json_t *again = json_pack ("{s:O, s:O, s:O, s:O, s:O, s:O, s:{s:O, s:O, s:O, s:O}, s:O, s:O}",
        "source", json_object_get (json, "source"),
        "external_id", json_object_get (json, "external_id"),
        "request_type", json_object_get (json, "request_type"),
        "category", json_object_get (json, "category"),
        "urgency", json_object_get (json, "urgency"),
        "description", json_object_get (json, "description"),
        "location", "lat", json_object_get (location, "lat"),
                    "lon", json_object_get (location, "lon"),
                    "address", json_object_get (location, "address"),
                    "grid_code", json_object_get (location, "grid_code"),
        "reporter", reporter,
        "attachments", attachments);
    assert_non_null (again);
    char *text = json_dumps (again, JSON_COMPACT);
    Civicbus__V1__Ticket *t2 = s_parse_ok (text);
    size_t len1 = civicbus__v1__ticket__get_packed_size (t);
    size_t len2 = civicbus__v1__ticket__get_packed_size (t2);
    assert_int_equal (len1, len2);
    uint8_t *bytes1 = malloc (len1), *bytes2 = malloc (len2);
    civicbus__v1__ticket__pack (t, bytes1);
    civicbus__v1__ticket__pack (t2, bytes2);
    assert_memory_equal (bytes1, bytes2, len1);
    free (bytes1);
    free (bytes2);
    free (text);
    json_decref (again);
    civicbus__v1__ticket__free_unpacked (t2, NULL);
    json_decref (json);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_personal_data_masked_or_omitted (void **state)
{
    (void) state;
    char *body = s_body_with ("{\"grid_code\": \"G1\"}",
        ", \"reporter\": {\"name\": \"欧阳娜娜\", \"phone\": \"13812345678\"}");
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    free (body);
    //  A phone number in the description is personal too.
    free (t->description);
    t->description = strdup ("请回电13987654321，谢谢");

    json_t *json = ticket_to_json (t, TICKET_JSON_MASK_PERSONAL);
    json_t *reporter = json_object_get (json, "reporter");
    assert_string_equal (json_string_value (json_object_get (reporter, "name")), "欧***");
    assert_string_equal (json_string_value (json_object_get (reporter, "phone")), "138****5678");
    assert_string_equal (json_string_value (json_object_get (json, "description")),
                         "请回电139****4321，谢谢");
    json_decref (json);

    json = ticket_to_json (t, TICKET_JSON_NO_PERSONAL);
    assert_null (json_object_get (json, "reporter"));
    assert_string_equal (json_string_value (json_object_get (json, "description")),
                         "请回电139****4321，谢谢");
    char *dump = json_dumps (json, 0);
    assert_null (strstr (dump, "欧阳"));
    assert_null (strstr (dump, "5678"));
    free (dump);
    json_decref (json);

    json = ticket_to_json (t, 0);
    assert_string_equal (json_string_value (json_object_get (json, "description")),
                         "请回电13987654321，谢谢");
    json_decref (json);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

//  The 201's compact form: the fields it promises, the grid path, and the
//  reporter masked or left out as the flags say; no description at all.
static void
test_created_json_is_compact (void **state)
{
    (void) state;
    char *body = s_body_with ("{\"grid_code\": \"G1\"}",
        ", \"reporter\": {\"name\": \"欧阳娜娜\", \"phone\": \"13812345678\"}");
    Civicbus__V1__Ticket *t = s_parse_ok (body);
    free (body);
    assert_int_equal (pb_set_string (&t->id, "320105-20260930-000000071"), 0);
    t->state = CIVICBUS__V1__TICKET_STATE__RECEIVED;
    t->created_ms = 1790755200000LL;
    t->version = 1;
    pb_strv_push (&t->location->n_grid_path, &t->location->grid_path, "320105");
    pb_strv_push (&t->location->n_grid_path, &t->location->grid_path, "G1");

    json_t *json = ticket_created_to_json (t, TICKET_JSON_MASK_PERSONAL);
    assert_non_null (json);
    assert_string_equal (json_string_value (json_object_get (json, "id")), t->id);
    assert_string_equal (json_string_value (json_object_get (json, "state")), "RECEIVED");
    assert_int_equal (json_integer_value (json_object_get (json, "version")), 1);
    assert_string_equal (json_string_value (json_object_get (json, "created")),
                         "2026-09-30T16:00:00+08:00");
    json_t *where = json_object_get (json, "location");
    assert_string_equal (json_string_value (json_object_get (where, "grid_code")), "G1");
    assert_int_equal (json_array_size (json_object_get (where, "grid_path")), 2);
    assert_null (json_object_get (where, "lat"));
    assert_null (json_object_get (json, "description"));
    assert_null (json_object_get (json, "probable_duplicate_of"));
    json_t *reporter = json_object_get (json, "reporter");
    assert_string_equal (json_string_value (json_object_get (reporter, "name")), "欧***");
    assert_string_equal (json_string_value (json_object_get (reporter, "phone")), "138****5678");
    json_decref (json);

    assert_int_equal (pb_set_string (&t->probable_duplicate_of, "320105-20260930-000000007"), 0);
    json = ticket_created_to_json (t, 0);
    reporter = json_object_get (json, "reporter");
    assert_string_equal (json_string_value (json_object_get (reporter, "phone")), "13812345678");
    assert_string_equal (json_string_value (json_object_get (json, "probable_duplicate_of")),
                         "320105-20260930-000000007");
    json_decref (json);
    json = ticket_created_to_json (t, TICKET_JSON_NO_PERSONAL);
    assert_null (json_object_get (json, "reporter"));
    json_decref (json);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_lifecycle_fields_in_json (void **state)
{
    (void) state;
    Civicbus__V1__Ticket t = CIVICBUS__V1__TICKET__INIT;
    Civicbus__V1__Location location = CIVICBUS__V1__LOCATION__INIT;
    char *path [] = { "310105", "310105001", "310105001001" };
    location.grid_path = path;
    location.n_grid_path = 3;
    location.grid_code = "310105001001";
    location.ungridded = 0;
    char *co [] = { "police", "civil" };
    Civicbus__V1__Deadline sign = CIVICBUS__V1__DEADLINE__INIT;
    sign.stage = CIVICBUS__V1__STAGE__STAGE_SIGN;
    sign.due_ms = 1790000000000LL;          //  2026-09-21T22:13:20+08:00
    sign.warn_ms = 1789999000000LL;
    sign.started_ms = 1789990000000LL;
    Civicbus__V1__Deadline resolve = CIVICBUS__V1__DEADLINE__INIT;
    resolve.stage = CIVICBUS__V1__STAGE__STAGE_RESOLVE;
    resolve.remaining_ms = 3600000;
    Civicbus__V1__Deadline *deadlines [] = { &sign, &resolve };
    t.id = "310105-20260921-000001";
    t.source = CIVICBUS__V1__SOURCE__SOURCE_SENSOR;
    t.request_type = CIVICBUS__V1__REQUEST_TYPE__REPORT;
    t.location = &location;
    t.state = CIVICBUS__V1__TICKET_STATE__SUSPENDED;
    t.department = "urban";
    t.co_handlers = co;
    t.n_co_handlers = 2;
    t.deadlines = deadlines;
    t.n_deadlines = 2;
    t.light = CIVICBUS__V1__LIGHT__LIGHT_RED;
    t.escalation_level = 2;
    t.rework_count = 1;
    t.version = 9;
    t.created_ms = 1789990000000LL;
    t.updated_ms = 1790000000000LL;
    t.policy = "urban-5d";
    t.resolution = "已处置";
    t.satisfaction = 4;
    t.extension_pending = 1;
    t.extension_days = 5;
    t.suspension_pending = 1;

    json_t *json = ticket_to_json (&t, 0);
    assert_non_null (json);
    assert_string_equal (json_string_value (json_object_get (json, "state")), "SUSPENDED");
    assert_string_equal (json_string_value (json_object_get (json, "source")), "sensor");
    assert_string_equal (json_string_value (json_object_get (json, "request_type")), "report");
    assert_string_equal (json_string_value (json_object_get (json, "light")), "red");
    assert_string_equal (json_string_value (json_object_get (json, "department")), "urban");
    assert_int_equal (json_array_size (json_object_get (json, "co_handlers")), 2);
    assert_int_equal (json_integer_value (json_object_get (json, "escalation_level")), 2);
    assert_int_equal (json_integer_value (json_object_get (json, "rework_count")), 1);
    assert_int_equal (json_integer_value (json_object_get (json, "version")), 9);
    assert_string_equal (json_string_value (json_object_get (json, "updated")),
                         "2026-09-21T22:13:20+08:00");
    assert_string_equal (json_string_value (json_object_get (json, "policy")), "urban-5d");
    assert_string_equal (json_string_value (json_object_get (json, "resolution")), "已处置");
    assert_int_equal (json_integer_value (json_object_get (json, "satisfaction")), 4);
    assert_true (json_is_true (json_object_get (json, "extension_pending")));
    assert_int_equal (json_integer_value (json_object_get (json, "extension_days")), 5);
    assert_true (json_is_true (json_object_get (json, "suspension_pending")));
    assert_null (json_object_get (json, "reject_reason"));
    assert_null (json_object_get (json, "merged_into"));
    assert_null (json_object_get (json, "reporter"));
    json_t *loc = json_object_get (json, "location");
    assert_null (json_object_get (loc, "lat"));     //  no point
    assert_string_equal (json_string_value (json_array_get (json_object_get (loc, "grid_path"), 2)),
                         "310105001001");
    json_t *list = json_object_get (json, "deadlines");
    assert_int_equal (json_array_size (list), 2);
    json_t *first = json_array_get (list, 0);
    assert_string_equal (json_string_value (json_object_get (first, "stage")), "sign");
    assert_string_equal (json_string_value (json_object_get (first, "due")), "2026-09-21T22:13:20+08:00");
    assert_string_equal (json_string_value (json_object_get (first, "warn")), "2026-09-21T21:56:40+08:00");
    assert_true (json_is_integer (json_object_get (first, "remaining_ms")));   //  suspended
    json_t *second = json_array_get (list, 1);
    assert_string_equal (json_string_value (json_object_get (second, "stage")), "resolve");
    assert_true (json_is_null (json_object_get (second, "due")));
    assert_int_equal (json_integer_value (json_object_get (second, "remaining_ms")), 3600000);
    json_decref (json);

    //  Not suspended, nothing remaining: no remaining_ms. Final states show
    //  their reason and target.
    t.state = CIVICBUS__V1__TICKET_STATE__MERGED;
    t.merged_into = "310105-20260921-000000";
    t.reject_reason = "重复";
    resolve.remaining_ms = 0;
    t.extension_pending = 0;
    json = ticket_to_json (&t, 0);
    assert_string_equal (json_string_value (json_object_get (json, "state")), "MERGED");
    assert_string_equal (json_string_value (json_object_get (json, "merged_into")),
                         "310105-20260921-000000");
    assert_string_equal (json_string_value (json_object_get (json, "reject_reason")), "重复");
    assert_null (json_object_get (json, "extension_pending"));
    assert_null (json_object_get (json_array_get (json_object_get (json, "deadlines"), 0),
                                  "remaining_ms"));
    json_decref (json);
}

static void
test_json_out_survives_bad_data (void **state)
{
    (void) state;
    //  A ticket decoded from the wire may hold anything: invalid UTF-8,
    //  unknown enum values, NaN coordinates, absurd times, NULL deadlines.
    Civicbus__V1__Ticket t = CIVICBUS__V1__TICKET__INIT;
    Civicbus__V1__Location location = CIVICBUS__V1__LOCATION__INIT;
    Civicbus__V1__Reporter reporter = CIVICBUS__V1__REPORTER__INIT;
    Civicbus__V1__Deadline odd = CIVICBUS__V1__DEADLINE__INIT;
    Civicbus__V1__Deadline *deadlines [] = { &odd, NULL };
    location.has_point = 1;
    location.lat = NAN;
    location.lon = INFINITY;
    reporter.name = "\xFF\xFE";
    reporter.phone = "\xE4\xB8";
    odd.stage = (Civicbus__V1__Stage) 99;
    odd.due_ms = INT64_MAX;
    odd.warn_ms = INT64_MIN;
    t.department = "dept\xC0\xAF";
    t.source = (Civicbus__V1__Source) 77;
    t.state = (Civicbus__V1__TicketState) 1234;
    t.light = (Civicbus__V1__Light) -3;
    t.location = &location;
    t.reporter = &reporter;
    t.deadlines = deadlines;
    t.n_deadlines = 2;
    t.created_ms = -5;
    t.updated_ms = INT64_MAX;
    for (unsigned flags = 0; flags < 4; flags++) {
        json_t *json = ticket_to_json (&t, flags);
        assert_non_null (json);
        assert_string_equal (json_string_value (json_object_get (json, "department")),
                             "dept\xEF\xBF\xBD\xEF\xBF\xBD");
        assert_true (json_is_null (json_object_get (json, "source")));
        assert_true (json_is_null (json_object_get (json, "light")));
        assert_true (json_is_null (json_object_get (json, "created")));
        assert_true (json_is_null (json_object_get (json, "updated")));
        json_t *loc = json_object_get (json, "location");
        assert_true (json_is_null (json_object_get (loc, "lat")));
        assert_true (json_is_null (json_object_get (loc, "lon")));
        json_t *deadline = json_array_get (json_object_get (json, "deadlines"), 0);
        assert_true (json_is_null (json_object_get (deadline, "stage")));
        assert_true (json_is_null (json_object_get (deadline, "due")));
        assert_true (json_is_null (json_object_get (deadline, "warn")));
        char *dump = json_dumps (json, 0);
        assert_non_null (dump);
        assert_true (cb_utf8_valid (dump, strlen (dump)));
        free (dump);
        json_decref (json);
    }
}

static void
test_event_to_json (void **state)
{
    (void) state;
    Civicbus__V1__TicketEvent ev = CIVICBUS__V1__TICKET_EVENT__INIT;
    Civicbus__V1__Actor actor = CIVICBUS__V1__ACTOR__INIT;
    actor.kind = CIVICBUS__V1__ACTOR_KIND__ACTOR_DEPARTMENT;
    actor.id = "urban";
    actor.name = "城管局";
    ev.ticket_id = "310105-20260921-000001";
    ev.sequence = 3;
    ev.type = "sign";
    ev.actor = &actor;
    ev.time_ms = 1790000000000LL;
    ev.from_state = CIVICBUS__V1__TICKET_STATE__DISPATCHED;
    ev.to_state = CIVICBUS__V1__TICKET_STATE__IN_PROGRESS;
    ev.note = "已签收";
    const char *payload = "{\"dispatch_id\": \"d-1\", \"attempt\": 2}";
    ev.payload.data = (uint8_t *) payload;
    ev.payload.len = strlen (payload);

    json_t *json = ticket_event_to_json (&ev);
    assert_non_null (json);
    assert_string_equal (json_string_value (json_object_get (json, "ticket_id")), ev.ticket_id);
    assert_int_equal (json_integer_value (json_object_get (json, "sequence")), 3);
    assert_string_equal (json_string_value (json_object_get (json, "type")), "sign");
    json_t *who = json_object_get (json, "actor");
    assert_string_equal (json_string_value (json_object_get (who, "kind")), "department");
    assert_string_equal (json_string_value (json_object_get (who, "id")), "urban");
    assert_string_equal (json_string_value (json_object_get (who, "name")), "城管局");
    assert_string_equal (json_string_value (json_object_get (json, "time")), "2026-09-21T22:13:20+08:00");
    assert_string_equal (json_string_value (json_object_get (json, "from")), "DISPATCHED");
    assert_string_equal (json_string_value (json_object_get (json, "to")), "IN_PROGRESS");
    assert_string_equal (json_string_value (json_object_get (json, "note")), "已签收");
    json_t *detail = json_object_get (json, "payload");
    assert_true (json_is_object (detail));
    assert_int_equal (json_integer_value (json_object_get (detail, "attempt")), 2);
    json_decref (json);

    //  Not JSON: kept as a string (invalid bytes replaced). Empty: absent.
    ev.payload.data = (uint8_t *) "plain \xFF text";
    ev.payload.len = 12;
    actor.kind = (Civicbus__V1__ActorKind) 42;
    json = ticket_event_to_json (&ev);
    assert_string_equal (json_string_value (json_object_get (json, "payload")),
                         "plain \xEF\xBF\xBD text");
    assert_string_equal (json_string_value (json_object_get (json_object_get (json, "actor"), "kind")),
                         "unspecified");
    json_decref (json);
    ev.payload.len = 0;
    ev.actor = NULL;
    json = ticket_event_to_json (&ev);
    assert_null (json_object_get (json, "payload"));
    assert_true (json_is_object (json_object_get (json, "actor")));
    json_decref (json);
}

static void
test_enum_helpers (void **state)
{
    (void) state;
    for (int i = 1; i <= 6; i++)
        assert_int_equal (cb_source_from_name (cb_source_name (i)), i);
    assert_string_equal (cb_source_name (2), "grid_worker");
    assert_null (cb_source_name (7));
    assert_null (cb_source_name (-1));
    assert_int_equal (cb_source_from_name ("unspecified"), -1);
    assert_int_equal (cb_source_from_name (NULL), -1);
    for (int i = 1; i <= 5; i++)
        assert_int_equal (cb_request_type_from_name (cb_request_type_name (i)), i);
    assert_int_equal (cb_request_type_from_name ("投诉"), CIVICBUS__V1__REQUEST_TYPE__COMPLAINT);
    assert_int_equal (cb_request_type_from_name ("建议"), CIVICBUS__V1__REQUEST_TYPE__SUGGESTION);
    assert_int_equal (cb_request_type_from_name ("unspecified"), -1);
    assert_string_equal (cb_urgency_name (1), "urgent");
    assert_int_equal (cb_urgency_from_name ("normal"), 0);
    assert_int_equal (cb_urgency_from_name ("urgent"), 1);
    assert_null (cb_urgency_name (2));
    for (int i = 1; i <= 4; i++)
        assert_int_equal (cb_stage_from_name (cb_stage_name (i)), i);
    assert_string_equal (cb_stage_name (4), "verify");
    assert_int_equal (cb_stage_from_name ("unspecified"), -1);
    for (int i = 0; i <= 2; i++)
        assert_int_equal (cb_light_from_name (cb_light_name (i)), i);
    assert_string_equal (cb_light_name (1), "yellow");
    assert_int_equal (cb_light_from_name ("blue"), -1);
}

/* ---- masking ---- */

static void
test_mask_phone (void **state)
{
    (void) state;
    char out [64];
    struct { const char *in, *want; } cases [] = {
        { "13812345678",          "138****5678" },
        { "138-1234-5678",        "138-****-5678" },
        { "138 1234 5678",        "138 **** 5678" },
        { "+86 13812345678",      "+86 138****5678" },
        { "8613812345678",        "86138****5678" },
        { "02163210000",          "021****0000" },        //  11 digits with area code
        { "63210000",             "63****00" },           //  8: a quarter each end
        { "021-6321 0000",        "021-**** 0000" },       //  11 symbols
        { "1234567890",           "12******90" },
        { "12345",                "1***5" },
        { "1234",                 "1**4" },
        { "123",                  "***" },
        { "1",                    "*" },
        { "",                     "" },
        { "abcdefghijk",          "***********" },        //  letters never show
        { "电话13812345678",       "**1*******678" },      //  13 symbols, not +86
        { "\xFF\xFE" "12345678901", "**1*******901" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        cb_mask_phone (cases [i].in, out, sizeof out);
        if (strcmp (out, cases [i].want))
            fail_msg ("mask_phone(%s) = %s, want %s", cases [i].in, out, cases [i].want);
    }
    cb_mask_phone (NULL, out, sizeof out);
    assert_string_equal (out, "");
    //  Truncated to the buffer, always terminated.
    char small [5];
    cb_mask_phone ("13812345678", small, sizeof small);
    assert_string_equal (small, "138*");
    cb_mask_phone ("13812345678", small, 0);     //  writes nothing, no crash
    cb_mask_phone ("13812345678", NULL, 10);
}

static void
test_mask_name (void **state)
{
    (void) state;
    char out [64];
    struct { const char *in, *want; } cases [] = {
        { "张三",       "张*" },
        { "欧阳娜娜",    "欧***" },
        { "李",         "*" },
        { "Li Lei",     "L*****" },
        { "A",          "*" },
        { "",           "" },
        { "\xFF张三",    "***" },       //  an invalid first byte never shows
        { "张\xFF",      "张*" },
        { "\xE5\xBC",   "**" },         //  a cut character: two invalid bytes
        { "😀bc",       "😀**" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        cb_mask_name (cases [i].in, out, sizeof out);
        if (strcmp (out, cases [i].want))
            fail_msg ("mask_name(%s) = %s, want %s", cases [i].in, out, cases [i].want);
        assert_true (cb_utf8_valid (out, strlen (out)));
    }
    cb_mask_name (NULL, out, sizeof out);
    assert_string_equal (out, "");
    //  Never half a character: 3 bytes of room hold no 3-byte character
    //  plus terminator, so nothing is written.
    char small [3];
    cb_mask_name ("张三", small, sizeof small);
    assert_string_equal (small, "");
    char four [4];
    cb_mask_name ("张三", four, sizeof four);
    assert_string_equal (four, "张");
}

static void
test_mask_text (void **state)
{
    (void) state;
    char out [128];
    struct { const char *in, *want; } cases [] = {
        { "请回电13812345678谢谢",         "请回电138****5678谢谢" },
        { "13812345678",                   "138****5678" },
        { "a 138-1234-5678 b",             "a 138-****-5678 b" },
        { "call 138 1234 5678.",           "call 138 **** 5678." },
        { "两个号码15900001111和18622223333", "两个号码159****1111和186****3333" },
        { "138123456789",                  "138123456789" },       //  12 digits: not a mobile
        { "订单2138123456789",              "订单2138123456789" },   //  inside a longer run
        { "12812345678",                   "12812345678" },         //  12x is not mobile
        { "138-1234 5678",                 "138-1234 5678" },       //  mixed separators
        { "1381234567",                    "1381234567" },          //  10 digits
        { "no numbers",                    "no numbers" },
        { "",                              "" },
        { "\xFF" "13812345678",            "\xFF" "138****5678" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        cb_mask_text (cases [i].in, out, sizeof out);
        if (strcmp (out, cases [i].want))
            fail_msg ("mask_text(%s) = %s, want %s", cases [i].in, out, cases [i].want);
    }
    cb_mask_text (NULL, out, sizeof out);
    assert_string_equal (out, "");
    //  Truncation never reveals the hidden digits.
    char small [8];
    cb_mask_text ("13812345678", small, sizeof small);
    assert_null (strstr (small, "1234"));
    assert_string_equal (small, "138****");
}

static void
test_utf8_helpers (void **state)
{
    (void) state;
    uint32_t cp;
    assert_int_equal (cb_utf8_decode ("A", 1, &cp), 1);
    assert_int_equal (cp, 'A');
    assert_int_equal (cb_utf8_decode ("张", 3, &cp), 3);
    assert_int_equal (cp, 0x5F20);
    assert_int_equal (cb_utf8_decode ("张", 2, &cp), 0);          //  cut
    assert_int_equal (cb_utf8_decode ("\xC0\x80", 2, &cp), 0);    //  overlong
    assert_int_equal (cb_utf8_decode ("\xED\xA0\x80", 3, &cp), 0);//  surrogate
    assert_int_equal (cb_utf8_decode ("\xF4\x90\x80\x80", 4, &cp), 0);
    assert_int_equal (cb_utf8_decode ("\xF0\x9F\x98\x80", 4, &cp), 4);
    assert_int_equal (cp, 0x1F600);
    assert_int_equal (cb_utf8_decode ("", 0, &cp), 0);
    assert_true (cb_utf8_valid ("张三 abc", strlen ("张三 abc")));
    assert_false (cb_utf8_valid ("ab\x80", 3));
    assert_int_equal (cb_utf8_length ("张三 abc", strlen ("张三 abc")), 6);
    assert_int_equal (cb_utf8_length ("\xFF\xFF", 2), 2);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_full_request_builds_every_field),
        cmocka_unit_test (test_minimal_request_gets_defaults),
        cmocka_unit_test (test_every_enum_name_is_accepted),
        cmocka_unit_test (test_required_fields),
        cmocka_unit_test (test_enum_values),
        cmocka_unit_test (test_category_rules),
        cmocka_unit_test (test_description_counts_characters_not_bytes),
        cmocka_unit_test (test_description_content),
        cmocka_unit_test (test_external_id_rules),
        cmocka_unit_test (test_location_rules),
        cmocka_unit_test (test_reporter_rules),
        cmocka_unit_test (test_attachment_rules),
        cmocka_unit_test (test_unknown_fields_are_refused),
        cmocka_unit_test (test_wrong_type_for_every_field),
        cmocka_unit_test (test_not_an_object),
        cmocka_unit_test (test_malformed_json),
        cmocka_unit_test (test_invalid_utf8_is_refused),
        cmocka_unit_test (test_truncated_bodies),
        cmocka_unit_test (test_deep_nesting),
        cmocka_unit_test (test_duplicate_keys),
        cmocka_unit_test (test_round_trip_request_ticket_json),
        cmocka_unit_test (test_personal_data_masked_or_omitted),
        cmocka_unit_test (test_lifecycle_fields_in_json),
        cmocka_unit_test (test_json_out_survives_bad_data),
        cmocka_unit_test (test_event_to_json),
        cmocka_unit_test (test_enum_helpers),
        cmocka_unit_test (test_mask_phone),
        cmocka_unit_test (test_created_json_is_compact),
        cmocka_unit_test (test_mask_name),
        cmocka_unit_test (test_mask_text),
        cmocka_unit_test (test_utf8_helpers),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
