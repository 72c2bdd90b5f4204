/*  ticket_json.h — the native JSON API's ticket: the request body of
    POST /v1/tickets in, a ticket and its events out (jansson).

    THE REQUEST BODY (every rule checked before anything is built):

    {
      "source":       "hotline" | "grid_worker" | "app" | "web" | "sensor" | "open311"   required
      "external_id":  the sender's own reference: 1..64 visible ASCII characters
                      (0x21..0x7E), no spaces                                           optional
      "request_type": "consult" | "help" | "complaint" | "report" | "suggestion",
                      or 咨询 | 求助 | 投诉 | 举报 | 建议                                   required
      "category":     dispatch catalogue code, [A-Za-z0-9._-]{1,63}                     required
      "urgency":      "normal" | "urgent"                                  optional, default normal
      "description":  1..4000 characters (Unicode code points, not bytes), not only
                      whitespace (ASCII or Unicode spaces such as U+3000); no control
                      characters except tab, CR and LF                                  required
      "location": {                                                                     required
          "lat": number -90..90,  "lon": number -180..180     (both or neither)
          "address":   1..200 characters, no control characters
          "grid_code": [A-Za-z0-9._-]{1,64}
      }               with at least one of: lat+lon, grid_code, address
      "reporter": {                                                                     optional
          "name":  1..50 characters, no control characters
          "phone": 5..20 characters of digits, '+', '-', ' ', with at least 5 digits
      }
      "attachments":  at most 10 http:// or https:// URLs with a host, each at most
                      1024 bytes, no spaces or control characters                      optional
    }

    Decisions, so clients can rely on them:
    - Unknown fields are REJECTED ("unknown_field"), at the top level and inside
      location and reporter, so that a typo ("descripton") is caught rather than
      silently losing data.
    - null counts as absent: {"external_id": null} is the same as no
      external_id; null for a required field is "missing_field".
    - Empty strings are refused where a value is optional (omit it instead), so
      that "" never becomes a deduplication key.
    - No string may contain a NUL character (\u0000): "bad_value".
    - Duplicate keys are refused, and nesting deeper than TICKET_JSON_MAX_DEPTH
      levels (the body itself is level 1) is refused: "malformed_json".
    - The caller enforces the body's byte limit before calling.

    ERRORS: err->code is one of
        "malformed_json"  not JSON (syntax, invalid UTF-8, truncated, duplicate
                          key, too deep); err->message has the position
        "not_object"      the body is JSON but not an object
        "missing_field"   a required field is absent (or null)
        "wrong_type"      e.g. a string where a number belongs
        "bad_value"       right type, value not allowed
        "too_long"        a string, or the attachment list, is over its limit
        "unknown_field"   a field this API does not have
        "no_memory"       allocation failed (not the client's fault)
    and err->field is the dotted path: "location.lat", "reporter.phone",
    "attachments[2]" ("" when it concerns the whole body). */

#ifndef CIVICBUS_TICKET_JSON_H
#define CIVICBUS_TICKET_JSON_H

#include <stddef.h>
#include <jansson.h>
#include "civicbus/error.h"
#include "civicbus/v1/civicbus.pb-c.h"

#define TICKET_JSON_MAX_DEPTH        8
#define TICKET_DESCRIPTION_MAX       4000   //  code points
#define TICKET_ADDRESS_MAX           200    //  code points
#define TICKET_EXTERNAL_ID_MAX       64     //  bytes (ASCII)
#define TICKET_CATEGORY_MAX          63     //  bytes, as the catalogue allows (CATALOG_CODE_MAX - 1)
#define TICKET_GRID_CODE_MAX         64
#define TICKET_REPORTER_NAME_MAX     50     //  code points
#define TICKET_PHONE_MIN             5
#define TICKET_PHONE_MAX             20
#define TICKET_ATTACHMENTS_MAX       10
#define TICKET_ATTACHMENT_URL_MAX    1024   //  bytes

//  ticket_to_json flags.
#define TICKET_JSON_MASK_PERSONAL    (1u << 0)  //  reporter masked: "张*", "138****5678"
#define TICKET_JSON_NO_PERSONAL      (1u << 1)  //  no reporter at all (wins over MASK)

//  Validates a request body (`len` bytes at `body`, need not be
//  NUL-terminated) and builds the ticket it asks for. Returns 0 and sets *out
//  to a fresh Ticket with source, external_id, request_type, category,
//  urgency, description, location (has_point set when lat/lon were given),
//  reporter (NULL when absent) and attachment_urls; everything else is left
//  at its default (state UNSPECIFIED, no id, no times: the store sets them).
//  The caller frees it with civicbus__v1__ticket__free_unpacked (t, NULL).
//  Returns -1 with *out NULL and `err` filled (see ERRORS above) otherwise;
//  nothing is allocated then.
int ticket_from_request_json (const char *body, size_t len,
                              Civicbus__V1__Ticket **out, cb_error_t *err);

//  The ticket as the API shows it:
//    id, source, external_id, request_type, category, urgency, description,
//    location {lat, lon (only when has_point), address, grid_code,
//              grid_path [], ungridded},
//    reporter {name, phone}          (when the ticket has one; see flags),
//    attachments [], state ("DISPATCHED"), department, co_handlers [],
//    deadlines [{stage, due, warn, started, finished (a stage that ended),
//    remaining_ms (while suspended)}],
//    light, escalation_level, rework_count, version, created, updated,
//  and only when set: merged_into, reject_reason, resolution, satisfaction,
//  policy, extension_pending + extension_days, suspension_pending,
//  needs_review, review_reason, review_required, probable_duplicate_of,
//  merged_from [{ticket_id, merged, reporter (masked as above)}],
//  sensor_fold {type, fold_id, event_count, first_seen, last_seen,
//  first_device_id, confidence}, sender_deadlines [{stage, due}].
//  Times are ISO 8601 in Asia/Shanghai ("2026-09-30T16:00:00+08:00"), null
//  when 0 (or outside the years 1970..9999). With TICKET_JSON_MASK_PERSONAL
//  or TICKET_JSON_NO_PERSONAL, mobile numbers inside the description are
//  masked too. Strings that are not valid UTF-8 appear with U+FFFD in place
//  of the bad bytes. Returns a new reference, or NULL when memory ran out.
json_t *ticket_to_json (const Civicbus__V1__Ticket *t, unsigned flags);
//  The compact form a new ticket's 201 carries (the whole ticket is a GET
//  away): id, state, version, source, request_type, category, created,
//  location {grid_code, grid_path, ungridded}, reporter {name, phone}
//  (masked or left out as `flags` say) and probable_duplicate_of when set.
//  Returns a new reference, or NULL when memory ran out.
json_t *ticket_created_to_json (const Civicbus__V1__Ticket *t, unsigned flags);

//  One history entry: {ticket_id, sequence, type, actor {kind, id, name},
//  time, from, to, note, payload}. actor.kind is "system", "operator",
//  "department", "reporter", "supervisor" or "unspecified"; from and to are
//  state names; payload is the parsed JSON when the bytes are valid JSON,
//  otherwise a string, and absent when empty. Returns a new reference, or
//  NULL when memory ran out.
json_t *ticket_event_to_json (const Civicbus__V1__TicketEvent *ev);

//  Enum names as the JSON API spells them. *_name returns NULL for a value
//  not in civicbus.proto; *_from_name returns -1 for an unknown name (and
//  for "unspecified", which is never valid input).
//  Source: "unspecified", "hotline", "grid_worker", "app", "web", "sensor", "open311".
const char *cb_source_name (int source);
int cb_source_from_name (const char *name);
//  RequestType: "unspecified", "consult", "help", "complaint", "report",
//  "suggestion"; from_name also takes 咨询, 求助, 投诉, 举报, 建议.
const char *cb_request_type_name (int request_type);
int cb_request_type_from_name (const char *name);
//  Urgency: "normal", "urgent".
const char *cb_urgency_name (int urgency);
int cb_urgency_from_name (const char *name);
//  Stage: "unspecified", "accept", "sign", "resolve", "verify".
const char *cb_stage_name (int stage);
int cb_stage_from_name (const char *name);
//  Light: "green", "yellow", "red".
const char *cb_light_name (int light);
int cb_light_from_name (const char *name);

#endif
