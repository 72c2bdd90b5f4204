/*  hotline.h — the 12345 hotline exchange's pure parts (docs/HOTLINE.md):
    the inbound ticket body, the follow-up bodies (supplement, urge,
    withdraw), the hotline number, and the request authentication check
    (signature and timestamp; the nonce's freshness is the caller's, in
    Redis). No I/O and no clock: the caller passes `now`.

    THE TICKET BODY (POST /hotline/v1/tickets):
    {
      "number":       the hotline's own ticket number (工单编号), 1..64 of
                      [A-Za-z0-9_-]                                       required
      "category":     dispatch catalogue code                              required
      "request_type": consult|help|complaint|report|suggestion or 咨询..  required
      "urgency":      normal|urgent                                        optional
      "description":  1..4000 characters                                   required
      "location":     {lat, lon, address, grid_code} as ticket_json.h      required
      "citizen":      {name, phone}                                        optional
      "attachments":  URLs as ticket_json.h                                optional
      "deadlines":    {"accept"|"sign"|"resolve"|"verify": ISO 8601 time}   optional
    }
    Unknown fields are refused. The ticket gets source hotline and
    external_id = number; the hotline's deadlines are kept as sent in
    sender_deadlines (our own time-limit policy governs the clocks; the
    hotline's limits are shown to operators next to ours).

    Errors use the codes of ticket_json.h with the field named as the
    hotline spells it ("citizen.phone", "deadlines.resolve"). */

#ifndef CIVICBUS_HOTLINE_H
#define CIVICBUS_HOTLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "civicbus/error.h"
#include "civicbus/ticket_fsm.h"

#define HOTLINE_NUMBER_MAX      64          //  bytes
#define HOTLINE_NONCE_MIN       8
#define HOTLINE_NONCE_MAX       64
#define HOTLINE_SKEW_S          300         //  a timestamp further off is refused
#define HOTLINE_NONCE_TTL_S     600         //  a nonce is remembered this long (> 2 x skew)
#define HOTLINE_TEXT_MAX        2000        //  code points of a follow-up text
#define HOTLINE_ACTOR_ID        "hotline"   //  the REPORTER actor of follow-ups

//  True for 1..64 characters of [A-Za-z0-9_-] (no encoding can change it
//  on its way through a URL, so the signed path is the path we see).
bool hotline_number_valid (const char *number);

//  "ext:hotline:NUMBER", the idempotency key of the hotline's ticket (the
//  intake's key for source hotline and external_id NUMBER, so the native
//  API and the hotline door agree). Its bucket is cb_bucket_for_key of it,
//  and idem:{bNN}:ext:hotline:NUMBER holds the ticket id: the lookup by
//  number. 0, or -1 when it does not fit.
int hotline_idempotency_key (char *buf, size_t cap, const char *number);

//  Validates the ticket body (`len` bytes) and builds the ticket. 0 with
//  *out set (free with civicbus__v1__ticket__free_unpacked), or -1 with
//  `err` filled and *out NULL.
int hotline_ticket_from_json (const char *body, size_t len, cb_ticket_t **out,
                              cb_error_t *err);

//  The follow-ups: "supplement" (补充, TEV_SUPPLEMENT), "urge" (催办,
//  TEV_URGE), "withdraw" (撤单, TEV_CANCEL). -1 for another name.
int hotline_action_event (const char *action);

//  A follow-up body: {"text": 1..2000 characters} (required for
//  supplement, optional otherwise; "{}" and an empty body are no text).
//  Unknown fields are refused. 0 with *text a heap copy or NULL (caller
//  frees), or -1 with `err` filled.
int hotline_action_from_json (const char *body, size_t len, const char *action, char **text,
                              cb_error_t *err);

//  What hotline_check_request found.
typedef enum {
    HOTLINE_AUTH_OK = 0,
    HOTLINE_AUTH_MISSING,       //  "signature_missing": a header is absent
    HOTLINE_AUTH_BAD_TIMESTAMP, //  "timestamp_invalid": not Unix seconds
    HOTLINE_AUTH_SKEW,          //  "timestamp_skew": more than HOTLINE_SKEW_S off
    HOTLINE_AUTH_BAD_NONCE,     //  "nonce_invalid": not 8..64 of [A-Za-z0-9_-]
    HOTLINE_AUTH_BAD_SIGNATURE, //  "signature_invalid"
} hotline_auth_t;

//  Checks one request's signature headers (NULL when absent) against the
//  shared secret, the method, the path (as on the request line) and the
//  body, at `now_s` (Unix seconds). Constant time in the signature.
hotline_auth_t hotline_check_request (const void *secret, size_t secret_len,
                                      const char *method, const char *path,
                                      const char *timestamp, const char *nonce,
                                      const char *signature, const void *body,
                                      size_t body_len, int64_t now_s);

//  The error code of a result ("signature_missing", ...; "ok").
const char *hotline_auth_code (hotline_auth_t result);
//  A sentence for people.
const char *hotline_auth_message (hotline_auth_t result);

#endif
