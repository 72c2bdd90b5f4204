/*  actions.c — POST /v1/tickets/{id}/actions: what an operator does to a
    ticket, through the state machine (ticket_apply_event), stored with
    compare-and-set (ticket_store_apply, retried on a version conflict), in
    the history under the operator's name.

    Body: {"action": NAME, ...fields}; unknown fields are refused so a typo
    is caught. The actions and their fields (? optional):
        accept              department?, co_handlers?
        reject              reason
        dispatch            department, co_handlers?
        reassign            department, co_handlers?, reason?
        approve_extension, refuse_extension     reason?
        approve_suspension, refuse_suspension   reason?
        resume, verify      note?
        reopen              reason
        merge               into
        cancel              reason?
        follow_up           satisfaction (1..5), note?
        urge, supplement    note (supplement: required by the state machine)
        escalate            note?  (the state machine allows supervisors and
                                   the system only: operators get 409)
    The actor is OPERATOR with id = the key's name and name = the
    X-Operator-Name header (UTF-8, 1..64 bytes, no control characters) or
    the key's name. Operator names are not personal data: not masked.

    Answers: 200 with the stored ticket and its history; 400 for a body
    that is not an object of known fields of the right types (the field
    named); 404 for an unknown ticket; 409 {"error": {"code": the state
    machine's code, "field", "message": its reason}} whenever the state
    machine refuses (wrong or final state, not allowed, a missing or bad
    value such as satisfaction 0 or 6, an excluded department) — the body
    was well-formed, the ticket's state says no; 422 for a department the
    catalogue does not know or a merge target that does not exist; 409
    "target_closed" for a merge into a closed ticket.

    Decisions:
    - accept leaves the ticket ACCEPTED in the operators' queue
      (needs_review, "accepted by NAME; choose a department") unless the body
      names a department: then ACCEPT and DISPATCH are one change. The
      console does not route by the catalogue itself: a ticket waits for
      review because the catalogue could not route it, and re-routing is the
      dispatcher's rule (dispatch_plan), not a second copy here.
    - dispatch and reassign write the dispatch records the dispatcher
      writes (dispatch_manual_ops: dsp:{bNN}:ID, dspq:{bNN}); reassign,
      merge and cancel withdraw the old department's pending records. The
      withdrawal message to a department that already has the order is the
      dispatcher's (TFX_CANCEL_DISPATCH).
    - merge records "merge" on the merged ticket, then on the target a
      "merged_from" event (same state) and the merged ticket (with its
      reporter, who hears of the outcome) in the target's merged_from. The two tickets may
      live in different buckets, so these are two changes: if the second
      fails the merge stands and the failure is logged.
    - Time-limit effects (START_*, STOP_TIMERS, EXTEND_RESOLVE, PAUSE/RESUME)
      go into the same change through ticket_effects_apply, with the
      policies and calendar of the current citydata snapshot: deadlines,
      light and timers move with the action. An extension longer than the
      policy grants is clamped and the clamp is in the event payload. */

#include "console.h"
#include "civicbus/catalog.h"
#include "civicbus/clock.h"
#include "civicbus/dispatch.h"
#include "civicbus/duplicates.h"
#include "civicbus/log.h"
#include "civicbus/mask.h"
#include "civicbus/pbutil.h"
#include "civicbus/ticket_effects.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TRIES 5
#define S_OPERATOR_NAME_MAX 64
#define S_TEXT_MAX 2000                 //  bytes of a reason or note

//  Fields an action may carry (a bit each).
enum {
    F_REASON = 1 << 0, F_NOTE = 1 << 1, F_DEPARTMENT = 1 << 2, F_CO_HANDLERS = 1 << 3,
    F_INTO = 1 << 4, F_SATISFACTION = 1 << 5,
};

typedef struct {
    const char *name;
    ticket_event_kind_t kind;
    unsigned fields;
} s_action_t;

static const s_action_t s_actions [] = {
    { "accept", TEV_ACCEPT, F_DEPARTMENT | F_CO_HANDLERS },
    { "reject", TEV_REJECT, F_REASON },
    { "dispatch", TEV_DISPATCH, F_DEPARTMENT | F_CO_HANDLERS },
    { "reassign", TEV_REASSIGN, F_DEPARTMENT | F_CO_HANDLERS | F_REASON },
    { "approve_extension", TEV_APPROVE_EXTENSION, F_REASON },
    { "refuse_extension", TEV_REFUSE_EXTENSION, F_REASON },
    { "approve_suspension", TEV_APPROVE_SUSPENSION, F_REASON },
    { "refuse_suspension", TEV_REFUSE_SUSPENSION, F_REASON },
    { "resume", TEV_RESUME, F_NOTE },
    { "verify", TEV_VERIFY, F_NOTE },
    { "reopen", TEV_REOPEN, F_REASON },
    { "merge", TEV_MERGE, F_INTO },
    { "cancel", TEV_CANCEL, F_REASON },
    { "follow_up", TEV_FOLLOW_UP, F_SATISFACTION | F_NOTE },
    { "urge", TEV_URGE, F_NOTE },
    { "supplement", TEV_SUPPLEMENT, F_NOTE },
    { "escalate", TEV_ESCALATE, F_NOTE },
};
#define S_ACTION_N (sizeof s_actions / sizeof s_actions [0])

static const char *const s_field_names [] = {
    "reason", "note", "department", "co_handlers", "into", "satisfaction", NULL
};

//  One parsed request.
typedef struct {
    const s_action_t *action;
    ticket_input_t input;
    const char *co [CATALOG_CO_HANDLERS_MAX + 1];   //  input.co_handlers, NULL-terminated
    ticket_actor_t actor;
    char operator_name [S_OPERATOR_NAME_MAX + 1];
    cb_error_t err;                     //  400: what is wrong
} s_request_t;

/* ---- private: the body ---- */

static bool
s_text_ok (const char *text, size_t max)
{
    size_t len = strlen (text);
    if (len > max || !cb_utf8_valid (text, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) text [i] < 0x20 && text [i] != '\n' && text [i] != '\t'
        &&  text [i] != '\r')
            return false;
    return true;
}

//  A string field, or NULL when absent or null. -1 (err set) for another type.
static int
s_string (json_t *body, const char *name, size_t max, const char **out, cb_error_t *err)
{
    json_t *value = json_object_get (body, name);
    *out = NULL;
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_string (value)) {
        cb_error_set (err, "wrong_type", name, "%s must be a string", name);
        return -1;
    }
    if (!s_text_ok (json_string_value (value), max)
    ||  strlen (json_string_value (value)) != json_string_length (value)) {
        cb_error_set (err, "bad_value", name, "%s must be at most %zu bytes of text without "
                      "control characters", name, max);
        return -1;
    }
    *out = json_string_value (value);
    return 0;
}

//  Validates the body against the action's fields and fills the input;
//  strings point into `body`. 0, or -1 with req->err set.
static int
s_parse (s_request_t *req, json_t *body)
{
    cb_error_t *err = &req->err;
    if (!json_is_object (body)) {
        cb_error_set (err, "not_object", "", "the body must be a JSON object");
        return -1;
    }
    json_t *name = json_object_get (body, "action");
    if (!name || json_is_null (name)) {
        cb_error_set (err, "missing_field", "action", "say which action: {\"action\": ...}");
        return -1;
    }
    if (!json_is_string (name)) {
        cb_error_set (err, "wrong_type", "action", "action must be a string");
        return -1;
    }
    for (size_t i = 0; i < S_ACTION_N && !req->action; i++)
        if (strcmp (s_actions [i].name, json_string_value (name)) == 0)
            req->action = &s_actions [i];
    if (!req->action) {
        cb_error_set (err, "bad_value", "action", "unknown action; the actions are accept, "
                      "reject, dispatch, reassign, approve_extension, refuse_extension, "
                      "approve_suspension, refuse_suspension, resume, verify, reopen, merge, "
                      "cancel, follow_up, urge, supplement, escalate");
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach (body, key, value) {
        if (strcmp (key, "action") == 0)
            continue;
        int bit = -1;
        for (int i = 0; s_field_names [i]; i++)
            if (strcmp (key, s_field_names [i]) == 0)
                bit = i;
        if (bit < 0 || !(req->action->fields & (1u << bit))) {
            cb_error_set (err, "unknown_field", key, "action %s takes no field '%s'",
                          req->action->name, key);
            return -1;
        }
    }
    ticket_input_t *in = &req->input;
    in->kind = req->action->kind;
    const char *reason, *note;
    if (s_string (body, "reason", S_TEXT_MAX, &reason, err)
    ||  s_string (body, "note", S_TEXT_MAX, &note, err)
    ||  s_string (body, "department", CATALOG_CODE_MAX - 1, &in->department, err)
    ||  s_string (body, "into", CB_TICKET_ID_MAX - 1, &in->target_id, err))
        return -1;
    in->text = reason ? reason : note;
    json_t *co = json_object_get (body, "co_handlers");
    if (co && !json_is_null (co)) {
        if (!json_is_array (co)) {
            cb_error_set (err, "wrong_type", "co_handlers", "co_handlers must be a list of "
                          "department codes");
            return -1;
        }
        if (json_array_size (co) > CATALOG_CO_HANDLERS_MAX) {
            cb_error_set (err, "too_long", "co_handlers", "at most %d co-handlers",
                          CATALOG_CO_HANDLERS_MAX);
            return -1;
        }
        size_t i;
        json_t *item;
        json_array_foreach (co, i, item) {
            if (!json_is_string (item)) {
                cb_error_set (err, "wrong_type", "co_handlers", "co_handlers[%zu] must be a "
                              "string", i);
                return -1;
            }
            req->co [i] = json_string_value (item);
        }
        in->co_handlers = req->co;
    }
    json_t *satisfaction = json_object_get (body, "satisfaction");
    if (satisfaction && !json_is_null (satisfaction)) {
        if (!json_is_integer (satisfaction)) {
            cb_error_set (err, "wrong_type", "satisfaction", "satisfaction must be a whole "
                          "number from %d to %d", TICKET_SATISFACTION_MIN,
                          TICKET_SATISFACTION_MAX);
            return -1;
        }
        json_int_t n = json_integer_value (satisfaction);
        //  Out-of-range values go to the state machine, which refuses them;
        //  only what does not fit an int32 is refused here.
        in->satisfaction = n < -1000 || n > 1000 ? -1 : (int32_t) n;
    }
    return 0;
}

//  The operator: X-Operator-Name or the key's name. 0, or -1 with err set.
static int
s_actor (s_request_t *req, httpd_request_t *http)
{
    const apikey_info_t *key = httpd_request_key (http);
    const char *name = httpd_request_header (http, "X-Operator-Name");
    if (name) {
        size_t len = strlen (name);
        if (len == 0 || len > S_OPERATOR_NAME_MAX || !s_text_ok (name, S_OPERATOR_NAME_MAX)
        ||  strpbrk (name, "\r\n\t")) {
            cb_error_set (&req->err, "bad_value", "X-Operator-Name", "X-Operator-Name must be "
                          "1 to %d bytes of UTF-8 text", S_OPERATOR_NAME_MAX);
            return -1;
        }
    }
    snprintf (req->operator_name, sizeof req->operator_name, "%s", name ? name : key->name);
    req->actor = (ticket_actor_t) { CIVICBUS__V1__ACTOR_KIND__ACTOR_OPERATOR, key->name,
                                    req->operator_name };
    return 0;
}

//  Which field a state-machine refusal is about, for the error's "field".
static const char *
s_refusal_field (const s_request_t *req, const char *code)
{
    if (strcmp (code, TICKET_CODE_MISSING_FIELD) && strcmp (code, TICKET_CODE_BAD_VALUE)
    &&  strcmp (code, TICKET_CODE_EXCLUDED))
        return "";
    unsigned fields = req->action->fields;
    return fields & F_SATISFACTION ? "satisfaction"
         : fields & F_INTO ? "into"
         : fields & F_DEPARTMENT ? "department"
         : fields & F_REASON ? "reason" : "note";
}

/* ---- private: the change ---- */

typedef struct {
    cb_ticket_t *before, *after;
    ts_event_t events [2];
    size_t n_events;
    ts_ops_t *ops;
    ticket_outcome_t outcome;           //  of the action itself
    char ids [1 + CATALOG_CO_HANDLERS_MAX][DISPATCH_ID_MAX];
    size_t n_ids;
    char payload [1024];
    char review_reason [160];
    ticket_effects_report_t clock;      //  what the action did to the deadlines
} s_change_t;

static void
s_change_reset (s_change_t *change)
{
    if (change->before)
        civicbus__v1__ticket__free_unpacked (change->before, NULL);
    if (change->after)
        civicbus__v1__ticket__free_unpacked (change->after, NULL);
    ts_ops_destroy (&change->ops);
    memset (change, 0, sizeof *change);
}

//  The event's detail: what the operator chose.
static void
s_payload (s_change_t *change, const s_request_t *req)
{
    const cb_ticket_t *t = change->after;
    json_t *root = json_object ();
    if (!root)
        return;
    if (change->n_ids) {
        json_t *co = json_array ();
        json_t *ids = json_array ();
        for (size_t i = 0; co && i < t->n_co_handlers; i++)
            json_array_append_new (co, json_string (t->co_handlers [i]));
        for (size_t i = 0; ids && i < change->n_ids; i++)
            json_array_append_new (ids, json_string (change->ids [i]));
        json_object_set_new (root, "department", json_string (t->department));
        json_object_set_new (root, "co_handlers", co ? co : json_null ());
        json_object_set_new (root, "dispatch_ids", ids ? ids : json_null ());
        json_object_set_new (root, "by_hand", json_true ());
    }
    if (req->input.kind == TEV_MERGE)
        json_object_set_new (root, "into", json_string (req->input.target_id));
    if (req->input.kind == TEV_FOLLOW_UP)
        json_object_set_new (root, "satisfaction", json_integer (req->input.satisfaction));
    if (change->clock.extension_days) {
        json_object_set_new (root, "extension_days", json_integer (change->clock.extension_days));
        if (change->clock.extension_asked)
            json_object_set_new (root, "extension_asked", json_integer (change->clock.extension_asked));
    }
    change->payload [0] = 0;
    if (json_object_size (root)) {
        char *text = json_dumps (root, JSON_COMPACT);
        if (text && strlen (text) < sizeof change->payload)
            snprintf (change->payload, sizeof change->payload, "%s", text);
        free (text);
    }
    json_decref (root);
}

//  One state-machine step on change->after, recorded as an event.
static int
s_step (s_change_t *change, const ticket_input_t *input, const s_request_t *req,
        int64_t now_ms, ticket_outcome_t *out)
{
    if (ticket_apply_event (change->after, input, &req->actor, now_ms, out))
        return -1;
    ts_event_t *ev = &change->events [change->n_events++];
    ev->type = ticket_event_name (input->kind);
    ev->actor = &req->actor;
    ev->from = out->from;
    ev->to = out->to;
    ev->note = input->text;
    return 0;
}

//  Builds the change for the loaded change->before. 0; 1 when the state
//  machine refused (change->outcome); -1 when out of memory.
static int
s_plan (s_change_t *change, const s_request_t *req, const citydata_snapshot_t *snap,
        int64_t now_ms)
{
    change->after = ticket_clone (change->before);
    change->ops = ts_ops_new ();
    if (!change->after || !change->ops)
        return -1;
    const ticket_input_t *in = &req->input;
    bool accept_and_dispatch = in->kind == TEV_ACCEPT && in->department;
    ticket_input_t accept = { .kind = TEV_ACCEPT, .text = in->text };
    if (s_step (change, accept_and_dispatch ? &accept : in, req, now_ms, &change->outcome))
        return 1;
    uint32_t effects = change->outcome.effects;
    if (accept_and_dispatch) {
        ticket_input_t dispatch = *in;
        dispatch.kind = TEV_DISPATCH;
        ticket_outcome_t second;
        if (s_step (change, &dispatch, req, now_ms, &second)) {
            change->outcome = second;
            return 1;
        }
        effects |= second.effects;
    }
    cb_ticket_t *after = change->after;
    if (effects & TFX_SEND_DISPATCH) {
        //  Someone owns it now: out of review, as the dispatcher leaves it.
        after->needs_review = false;
        if (pb_set_string (&after->review_reason, NULL))
            return -1;
    }
    else
    if (in->kind == TEV_ACCEPT) {
        snprintf (change->review_reason, sizeof change->review_reason,
                  "accepted by %s; choose a department", req->operator_name);
        after->needs_review = true;
        if (pb_set_string (&after->review_reason, change->review_reason))
            return -1;
    }
    if (dispatch_manual_ops (change->ops, change->before, after, effects, now_ms, change->ids,
                             1 + CATALOG_CO_HANDLERS_MAX, &change->n_ids))
        return -1;
    if (ticket_effects_apply (change->before, after, effects, snap->policies, snap->calendar,
                              now_ms, change->ops, &change->clock))
        return -1;
    s_payload (change, req);
    if (change->payload [0])
        change->events [change->n_events - 1].payload_json = change->payload;
    return 0;
}

//  The merge target's side (common/duplicates.c): the merged ticket joins
//  its merged_from list, with its reporter, who hears of the target's
//  outcome (notify_rules), and its history gets a "merged_from" event (same
//  state). Logged, not answered: the merge itself is stored already.
static void
s_note_merged_from (console_t *console, const s_request_t *req, const cb_ticket_t *source,
                    int64_t now_ms)
{
    int rc = dup_note_merged_from (console->store, req->input.target_id, source->id,
                                   &req->actor, now_ms, S_TRIES);
    if (rc != TS_OK)
        cb_log (CB_LOG_ERROR, "merge stored, but the target does not record it",
                "ticket", source->id, "into", req->input.target_id, NULL);
}

/* ---- private: checks before the change ---- */

//  Departments named in the body must be in the catalogue. 0, or an answer
//  was queued (its result in *result).
static bool
s_departments_known (console_t *console, httpd_request_t *http, const s_request_t *req,
                     int *result)
{
    const ticket_input_t *in = &req->input;
    if (!in->department && !in->co_handlers)
        return true;
    citydata_snapshot_t *snap = citydata_acquire (console->citydata);
    const char *unknown = NULL, *field = "department";
    bool loaded = snap->catalog != NULL;
    if (loaded && in->department && !catalog_department (snap->catalog, in->department))
        unknown = in->department;
    for (size_t i = 0; loaded && !unknown && in->co_handlers && in->co_handlers [i]; i++)
        if (!catalog_department (snap->catalog, in->co_handlers [i])) {
            unknown = in->co_handlers [i];
            field = "co_handlers";
        }
    citydata_release (console->citydata, &snap);
    if (!loaded)
        *result = httpd_reply_unavailable (http, "no dispatch catalogue is loaded");
    else
    if (unknown)
        *result = httpd_reply_error (http, 422, "unknown_department", field,
                                     "department '%s' is not in the dispatch catalogue",
                                     unknown);
    return loaded && !unknown;
}

//  A merge target must exist and be open (the state machine checks that it
//  is another ticket).
static bool
s_target_usable (console_t *console, httpd_request_t *http, const s_request_t *req,
                 const char *id, int *result)
{
    const char *target = req->input.target_id;
    if (req->input.kind != TEV_MERGE || !target || strcmp (target, id) == 0)
        return true;
    cb_ticket_t *t = NULL;
    int rc = ticket_id_bucket (target) < 0 ? TS_NOT_FOUND
                                           : ticket_store_load (console->store, target, &t);
    if (rc == TS_NOT_FOUND)
        *result = httpd_reply_error (http, 422, "unknown_ticket", "into",
                                     "no ticket %s to merge into", target);
    else
    if (rc != TS_OK)
        *result = console_reply_store_error (console, http, rc, "load");
    else
    if (ticket_state_is_final (t->state)) {
        *result = httpd_reply_error (http, MHD_HTTP_CONFLICT, "target_closed", "into",
                                     "ticket %s is %s: merge into an open ticket", target,
                                     ticket_state_name (t->state));
        rc = TS_ERROR;
    }
    if (t)
        civicbus__v1__ticket__free_unpacked (t, NULL);
    return rc == TS_OK;
}

/* ---- public ---- */

int
console_ticket_action (httpd_request_t *http, void *arg)
{
    console_t *console = arg;
    const char *id = httpd_request_param (http, "id");
    s_request_t req;
    memset (&req, 0, sizeof req);
    cb_error_clear (&req.err);
    size_t len = 0;
    const char *text = httpd_request_body (http, &len);
    json_error_t jerr;
    json_t *body = json_loadb (text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!body)
        cb_error_set (&req.err, "malformed_json", "", "not JSON: %s (line %d, column %d)",
                      jerr.text, jerr.line, jerr.column);
    if (!body || s_parse (&req, body) || s_actor (&req, http)) {
        json_decref (body);
        return httpd_reply_error (http, MHD_HTTP_BAD_REQUEST, req.err.code, req.err.field,
                                  "%s", req.err.message);
    }
    int result = 0;
    if (ticket_id_bucket (id) < 0)
        result = console_reply_store_error (console, http, TS_NOT_FOUND, "load");
    else
    if (httpd_redis_down (console->httpd))
        result = httpd_reply_unavailable (http, "breaker open");
    else
    if (s_departments_known (console, http, &req, &result)
    &&  s_target_usable (console, http, &req, id, &result)) {
        int64_t now_ms = cb_clock_now_ms ();
        s_change_t change;
        memset (&change, 0, sizeof change);
        int rc = TS_CONFLICT;
        for (int attempt = 0; attempt < S_TRIES && rc == TS_CONFLICT; attempt++) {
            s_change_reset (&change);
            rc = ticket_store_load (console->store, id, &change.before);
            if (rc != TS_OK)
                break;
            citydata_snapshot_t *snap = citydata_acquire (console->citydata);
            int planned = s_plan (&change, &req, snap, now_ms);
            citydata_release (console->citydata, &snap);
            if (planned)
                rc = planned > 0 ? TS_REFUSED : TS_ERROR;
            else
                rc = ticket_store_apply (console->store, change.before, change.after,
                                         change.events, change.n_events, change.ops);
        }
        if (rc == TS_REFUSED) {
            httpd_count (console->httpd, console->count_refused);
            result = httpd_reply_error (http, MHD_HTTP_CONFLICT, change.outcome.code,
                                        s_refusal_field (&req, change.outcome.code), "%s",
                                        change.outcome.reason);
        }
        else
        if (rc != TS_OK)
            result = console_reply_store_error (console, http, rc,
                                                rc == TS_CONFLICT ? "busy ticket" : "store");
        else {
            httpd_count (console->httpd, console->count_actions);
            cb_log (CB_LOG_INFO, "operator action", "ticket", id,
                    "action", req.action->name, "operator", req.operator_name,
                    "key", req.actor.id, "to", ticket_state_name (change.after->state), NULL);
            if (req.input.kind == TEV_MERGE)
                s_note_merged_from (console, &req, change.after, now_ms);
            cb_event_t **events = NULL;
            size_t n_events = 0;
            json_t *json = NULL;
            if (ticket_store_history (console->store, id, &events, &n_events) == TS_OK)
                json = ticket_view_json (change.after, events, n_events, 0);
            ticket_store_free_events (events, n_events);
            result = json ? httpd_reply_json (http, MHD_HTTP_OK, json)
                          : httpd_reply_error (http, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                                               "", "the action is stored; reading it back "
                                               "failed");
        }
        s_change_reset (&change);
    }
    json_decref (body);
    return result;
}
