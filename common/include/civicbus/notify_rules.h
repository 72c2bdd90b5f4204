/*  notify_rules.h — who hears what about a ticket, and in which words: the
    notifier's configuration (deploy/config/notifier.json, docs/NOTIFIER.md)
    and one pure function from (configuration, ticket, one event of its
    history) to the deliveries that event causes.

    Who hears what (notify_rules_decide):
    - the reporter, by SMS to reporter.phone (Chinese templates), on
      "accept", "reject", "resolve" (the primary department's, which
      changes the state; a co-handler's note does not) and "verify" (closure,
      with the follow-up question); only when the ticket has a phone;
    - the reporters of tickets merged into it (merged_from[].reporter.phone,
      并单), by SMS in the same words, on "resolve" and "verify": a merged
      reporter hears the parent's outcome;
    - the 12345 hotline, for tickets whose source is hotline and when a
      hotline callback is configured: acceptance and rejection, dispatch and
      reassignment (with the department), every department reply (sign,
      return, requests, progress, resolve), the extension and suspension
      decisions, resume, closure (verify), reopen, merge, cancel and the
      follow-up result. These go in order per ticket (the queue's part);
    - the department (departments.CODE: email and/or phone) on "urge" and
      "warning";
    - supervisors (supervisors[]: level, area, email and/or phone) on
      "escalate" and "overdue": those whose level is 0 (every level) or the
      ticket's escalation level at that event, and whose area is "" (the
      whole city) or one of the ticket's grid path codes, or a prefix of its
      grid code. The level at an event is the payload's "level" when it has
      one, else the number of "escalate" events up to and including it;
      an "overdue" at level 0 goes to level 1 (grid);
    - webhook subscribers whose filters all match: events (names, or "*" for
      every event including names this version does not know), departments
      (the ticket's, or the department named in the event's payload), areas
      (as for supervisors). An absent or empty filter matches everything,
      except events, whose default is "*".
    Unknown event names are not an error: only "*" webhooks hear of them.

    Personal data: the reporter's phone appears in the reporter's own SMS
    delivery only (as its recipient); webhook and hotline bodies carry the
    ticket masked (ticket_json.h TICKET_JSON_MASK_PERSONAL), event notes and
    every mobile number in the body masked (cb_mask_text), and the reporter's
    phone in any other spelling replaced by its mask.

    Delivery ids are deterministic: "ID#SEQ#CHANNEL#HHHHHHHH" (the last part
    is FNV-1a of the recipient, 8 hex digits), so fanning the same event out
    twice makes the same ids, and receivers dedupe on them. */

#ifndef CIVICBUS_NOTIFY_RULES_H
#define CIVICBUS_NOTIFY_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "civicbus/ticket_store.h"

typedef enum {
    NOTIFY_SMS = 0,
    NOTIFY_EMAIL,
    NOTIFY_WEBHOOK,
    NOTIFY_HOTLINE,
    NOTIFY_CHANNEL_COUNT
} notify_channel_t;

//  Longest delivery id: ticket id, '#', sequence, '#', channel, '#', 8 hex.
#define NOTIFY_DID_MAX 96

//  "sms", "email", "webhook", "hotline"; NULL for anything else.
const char *notify_channel_name (notify_channel_t channel);
//  Inverse; -1 for an unknown name.
int notify_channel_from_name (const char *name);

//  One message to send.
typedef struct {
    notify_channel_t channel;
    char did [NOTIFY_DID_MAX];  //  the idempotency key, see above
    char *recipient;            //  phone, e-mail address, webhook name, or "12345"
    char *template_name;        //  "sms.accept", "email.*", "webhook", "hotline.resolve"
    char *subject;              //  e-mail only ("" otherwise)
    char *body;                 //  text (sms, email) or JSON (webhook, hotline)
} notify_delivery_t;

//  The deliveries one event causes (owned; notify_plan_reset frees them).
typedef struct {
    notify_delivery_t *items;
    size_t count, cap;
} notify_plan_t;

//  Where and how to send, from the configuration (secrets resolved from
//  the environment when the file names a *_env variable).
typedef struct {
    const char *name;           //  subscription name: the recipient of its deliveries
    const char *url;
    const char *secret;
} notify_webhook_t;

typedef struct {
    const char *hotline_url;    //  NULL: no hotline push-back configured
    const char *hotline_secret;
    const char *sms_url;        //  NULL: SMS deliveries fail (and dead-letter)
    const char *sms_token;
    const char *smtp_url;       //  smtp://host:port; NULL: e-mail deliveries fail
    const char *smtp_from;
    const char *smtp_username;  //  NULL: no AUTH
    const char *smtp_password;
} notify_endpoints_t;

typedef struct _notify_rules_t notify_rules_t;

//  Reads and validates the configuration (JSON text of `len` bytes). On an
//  error returns NULL and writes a sentence naming the field to `err`, e.g.
//  "webhooks[1].url: missing" or "templates.sms.accept: unknown placeholder
//  {tiket_id}". Values "X_env": "NAME" are read from the environment here
//  (the only I/O); a named variable that is unset is an error.
notify_rules_t *notify_rules_new (const char *json_text, size_t len, char *err, size_t errcap);
void notify_rules_destroy (notify_rules_t **self_p);

//  The endpoints (valid while the rules live).
const notify_endpoints_t *notify_rules_endpoints (const notify_rules_t *self);
//  The webhook subscription called `name`, or NULL.
const notify_webhook_t *notify_rules_webhook (const notify_rules_t *self, const char *name);
size_t notify_rules_webhook_count (const notify_rules_t *self);

//  Decides the deliveries of history [index] (an event of `ticket`; the
//  earlier entries give the escalation level at that event) and appends
//  them, rendered, to `plan`. Pure: no I/O, no clock. Returns the number
//  appended (0 is normal: nobody needs to hear), or -1 when memory ran out
//  (the plan then holds what was appended before).
int notify_rules_decide (const notify_rules_t *self, const cb_ticket_t *ticket,
                         cb_event_t *const *history, size_t n_history, size_t index,
                         notify_plan_t *plan);

//  Frees every delivery and empties the plan (safe on an empty plan).
void notify_plan_reset (notify_plan_t *plan);

//  Renders `template` for the event into `out` (at most `cap` bytes with the
//  NUL; text is cut at a UTF-8 boundary). Placeholders: {ticket_id}
//  {external_id} {category} {department} (its configured name, else the
//  code) {department_code} {state} (Chinese label) {state_code} {event}
//  {event_label} (Chinese) {time} {due} (the running stage's deadline)
//  {resolution} {reason} (reject or return reason) {note} (masked)
//  {level} {address} {satisfaction} {extension_days}. Unknown placeholders
//  stay as they are (notify_rules_new refuses them in configured templates).
void notify_rules_render (const notify_rules_t *self, const char *template_text,
                          const cb_ticket_t *ticket, const cb_event_t *event, int level,
                          char *out, size_t cap);

//  Writes the delivery id for (ticket, seq, channel, recipient).
void notify_delivery_id (char *buf, size_t cap, const char *ticket_id, int seq,
                         notify_channel_t channel, const char *recipient);

//  True for the event names this version knows: ticket_event_name()'s,
//  "received", "warning" and "overdue".
bool notify_event_known (const char *name);

#endif
