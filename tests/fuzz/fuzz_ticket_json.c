/*  fuzz_ticket_json.c — libFuzzer target for the POST /v1/tickets body
    decoder and the ticket JSON encoder (ticket_json.h), plus the masking
    helpers (mask.h), which see the same hostile text.

    Properties checked, beyond "no crash, no leak, no undefined behaviour":
    a refusal carries a code and valid UTF-8; an accepted body gives a ticket
    whose JSON, fed back as a request, is accepted and gives the same ticket
    (byte for byte once encoded); masks never overflow their buffer and
    never emit invalid UTF-8. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "civicbus/mask.h"
#include "civicbus/ticket_json.h"

static void
s_check_masks (const uint8_t *data, size_t size)
{
    char *text = malloc (size + 1);
    if (!text)
        return;
    memcpy (text, data, size);
    text [size] = '\0';
    //  A small buffer exercises truncation; exact-size heap buffers let
    //  AddressSanitizer catch a write past the end.
    size_t caps [] = { 1, 7, size + 1 };
    for (size_t i = 0; i < 3; i++) {
        char *out = malloc (caps [i]);
        if (!out)
            break;
        cb_mask_name (text, out, caps [i]);
        if (strlen (out) >= caps [i] || !cb_utf8_valid (out, strlen (out)))
            abort ();
        cb_mask_phone (text, out, caps [i]);
        if (strlen (out) >= caps [i] || !cb_utf8_valid (out, strlen (out)))
            abort ();
        cb_mask_text (text, out, caps [i]);
        if (strlen (out) >= caps [i])
            abort ();
        free (out);
    }
    free (text);
}

//  Encodes a ticket for comparison.
static uint8_t *
s_pack (const Civicbus__V1__Ticket *t, size_t *len)
{
    *len = civicbus__v1__ticket__get_packed_size (t);
    uint8_t *bytes = malloc (*len ? *len : 1);
    if (!bytes)
        abort ();
    civicbus__v1__ticket__pack (t, bytes);
    return bytes;
}

static void
s_copy_if_set (json_t *to, const char *key, json_t *value)
{
    if (value && !(json_is_string (value) && json_string_length (value) == 0))
        json_object_set (to, key, value);
}

//  The request that would produce `shown` (a ticket_to_json result).
static json_t *
s_request_from (json_t *shown)
{
    json_t *request = json_object ();
    const char *top [] = { "source", "external_id", "request_type", "category",
                           "urgency", "description", "attachments" };
    for (size_t i = 0; i < 7; i++)
        s_copy_if_set (request, top [i], json_object_get (shown, top [i]));
    json_t *shown_location = json_object_get (shown, "location");
    json_t *location = json_object ();
    const char *location_keys [] = { "lat", "lon", "address", "grid_code" };
    for (size_t i = 0; i < 4; i++)
        s_copy_if_set (location, location_keys [i], json_object_get (shown_location, location_keys [i]));
    json_object_set_new (request, "location", location);
    json_t *shown_reporter = json_object_get (shown, "reporter");
    if (shown_reporter) {
        json_t *reporter = json_object ();
        s_copy_if_set (reporter, "name", json_object_get (shown_reporter, "name"));
        s_copy_if_set (reporter, "phone", json_object_get (shown_reporter, "phone"));
        json_object_set_new (request, "reporter", reporter);
    }
    return request;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_check_masks (data, size);

    Civicbus__V1__Ticket *ticket = NULL;
    cb_error_t err;
    cb_error_clear (&err);
    if (ticket_from_request_json ((const char *) data, size, &ticket, &err)) {
        if (ticket || err.code [0] == '\0'
        ||  !cb_utf8_valid (err.message, strlen (err.message))
        ||  !cb_utf8_valid (err.field, strlen (err.field)))
            abort ();
        return 0;
    }
    for (unsigned flags = 0; flags < 4; flags++) {
        json_t *json = ticket_to_json (ticket, flags);
        if (!json)
            abort ();
        char *text = json_dumps (json, JSON_COMPACT);
        if (!text)
            abort ();
        free (text);
        json_decref (json);
    }

    //  Round trip: the JSON of the ticket, sent back as a request.
    json_t *shown = ticket_to_json (ticket, 0);
    json_t *request = s_request_from (shown);
    char *body = json_dumps (request, JSON_COMPACT);
    if (!body)
        abort ();
    Civicbus__V1__Ticket *again = NULL;
    if (ticket_from_request_json (body, strlen (body), &again, &err))
        abort ();
    size_t len1, len2;
    uint8_t *bytes1 = s_pack (ticket, &len1);
    uint8_t *bytes2 = s_pack (again, &len2);
    if (len1 != len2 || memcmp (bytes1, bytes2, len1))
        abort ();
    free (bytes1);
    free (bytes2);
    free (body);
    json_decref (request);
    json_decref (shown);
    civicbus__v1__ticket__free_unpacked (again, NULL);
    civicbus__v1__ticket__free_unpacked (ticket, NULL);
    return 0;
}
