/*  ticket_fsm.c — the ticket lifecycle state machine (see ticket_fsm.h).

    One table says, per event, who may send it and in which states; one
    function per event then checks its inputs and edits the ticket. Every
    handler validates everything before it changes anything, and does its
    one fallible step (an allocation) before any infallible edit, so a
    refusal — even out of memory — leaves the ticket exactly as it was. */

#include "civicbus/ticket_fsm.h"
#include "civicbus/pbutil.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define S_STATE(name) CIVICBUS__V1__TICKET_STATE__##name
#define S_ACTOR(name) CIVICBUS__V1__ACTOR_KIND__ACTOR_##name

//  Bits over TicketState and ActorKind values, for the rule table.
#define SB(name)  (1u << S_STATE (name))
#define AB(name)  (1u << S_ACTOR (name))

#define S_OPEN_BEFORE_SIGN  (SB (RECEIVED) | SB (ACCEPTED) | SB (DISPATCHED) | SB (RETURNED))
#define S_OPEN_STATES       (S_OPEN_BEFORE_SIGN | SB (IN_PROGRESS) | SB (RESOLVED) | SB (SUSPENDED))
#define S_APPROVERS         (AB (OPERATOR) | AB (SUPERVISOR))

typedef struct {
    const char *name;       //  history event type
    const char *verb;       //  "cannot <verb> a ticket ..."
    uint32_t actors;        //  AB() bits of actor kinds that may send it
    uint32_t states;        //  SB() bits where it applies (primary, if a department's)
    uint32_t co_states;     //  SB() bits where a co-handler may send it; 0: never
} s_rule_t;

static const s_rule_t s_rules [TEV_COUNT] = {
    [TEV_ACCEPT]             = { "accept", "accept",
                                 AB (SYSTEM) | AB (OPERATOR), SB (RECEIVED), 0 },
    [TEV_REJECT]             = { "reject", "reject",
                                 AB (SYSTEM) | AB (OPERATOR), SB (RECEIVED), 0 },
    [TEV_DISPATCH]           = { "dispatch", "dispatch",
                                 AB (SYSTEM) | AB (OPERATOR), SB (ACCEPTED) | SB (RETURNED), 0 },
    [TEV_REASSIGN]           = { "reassign", "reassign",
                                 AB (OPERATOR), SB (DISPATCHED) | SB (IN_PROGRESS) | SB (RETURNED), 0 },
    [TEV_SIGN]               = { "sign", "sign",
                                 AB (DEPARTMENT), SB (DISPATCHED),
                                 SB (DISPATCHED) | SB (IN_PROGRESS) },
    [TEV_RETURN]             = { "return", "return",
                                 AB (DEPARTMENT), SB (DISPATCHED) | SB (IN_PROGRESS), 0 },
    [TEV_REQUEST_EXTENSION]  = { "request_extension", "request an extension for",
                                 AB (DEPARTMENT), SB (IN_PROGRESS), 0 },
    [TEV_APPROVE_EXTENSION]  = { "approve_extension", "approve an extension for",
                                 S_APPROVERS, SB (IN_PROGRESS), 0 },
    [TEV_REFUSE_EXTENSION]   = { "refuse_extension", "refuse an extension for",
                                 S_APPROVERS, SB (IN_PROGRESS), 0 },
    [TEV_REQUEST_SUSPENSION] = { "request_suspension", "request suspension of",
                                 AB (DEPARTMENT), SB (IN_PROGRESS), 0 },
    [TEV_APPROVE_SUSPENSION] = { "approve_suspension", "suspend",
                                 S_APPROVERS, SB (IN_PROGRESS), 0 },
    [TEV_REFUSE_SUSPENSION]  = { "refuse_suspension", "refuse suspension of",
                                 S_APPROVERS, SB (IN_PROGRESS), 0 },
    [TEV_RESUME]             = { "resume", "resume",
                                 S_APPROVERS | AB (DEPARTMENT), SB (SUSPENDED), 0 },
    [TEV_PROGRESS]           = { "progress", "report progress on",
                                 AB (DEPARTMENT), SB (IN_PROGRESS),
                                 SB (DISPATCHED) | SB (IN_PROGRESS) },
    [TEV_RESOLVE]            = { "resolve", "resolve",
                                 AB (DEPARTMENT), SB (IN_PROGRESS),
                                 SB (DISPATCHED) | SB (IN_PROGRESS) },
    [TEV_VERIFY]             = { "verify", "close",
                                 S_APPROVERS, SB (RESOLVED), 0 },
    [TEV_REOPEN]             = { "reopen", "reopen",
                                 S_APPROVERS, SB (RESOLVED) | SB (CLOSED), 0 },
    [TEV_MERGE]              = { "merge", "merge",
                                 AB (SYSTEM) | AB (OPERATOR), S_OPEN_BEFORE_SIGN, 0 },
    [TEV_CANCEL]             = { "cancel", "cancel",
                                 AB (REPORTER) | AB (OPERATOR), S_OPEN_BEFORE_SIGN, 0 },
    [TEV_FOLLOW_UP]          = { "follow_up", "record a follow-up on",
                                 AB (OPERATOR), SB (CLOSED), 0 },
    [TEV_ESCALATE]           = { "escalate", "escalate",
                                 AB (SYSTEM) | AB (SUPERVISOR), S_OPEN_STATES, 0 },
    [TEV_URGE]               = { "urge", "urge",
                                 AB (SYSTEM) | AB (OPERATOR) | AB (REPORTER), S_OPEN_STATES, 0 },
    [TEV_SUPPLEMENT]         = { "supplement", "supplement",
                                 AB (REPORTER) | AB (OPERATOR), S_OPEN_STATES, 0 },
};

//  Indexed by TicketState value; [0] is TICKET_STATE_UNSPECIFIED.
static const char *const s_state_names [] = {
    NULL, "RECEIVED", "ACCEPTED", "DISPATCHED", "IN_PROGRESS", "RESOLVED",
    "CLOSED", "REJECTED", "RETURNED", "SUSPENDED", "MERGED", "CANCELLED"
};
#define S_STATE_COUNT ((int) (sizeof (s_state_names) / sizeof (s_state_names [0])))

//  How a department actor stands to the ticket.
typedef enum {
    S_ROLE_NONE = 0,        //  not a department actor
    S_ROLE_PRIMARY,         //  ticket->department
    S_ROLE_CO_HANDLER,      //  one of ticket->co_handlers
    S_ROLE_STRANGER         //  neither
} s_role_t;

//  What a handler sees: the checked request.
typedef struct {
    cb_ticket_t *ticket;
    const ticket_input_t *input;
    const ticket_actor_t *actor;
    s_role_t role;
    ticket_outcome_t *out;
} s_request_t;

/* ---- private ---- */

//  The protobuf-c enums may be unsigned underneath; compare as int so a
//  stray negative value is out of range, not a huge shift.
static uint32_t
s_state_bit (cb_state_t state)
{
    int value = (int) state;
    return value > 0 && value < S_STATE_COUNT ? 1u << value : 0;
}

static uint32_t
s_actor_bit (Civicbus__V1__ActorKind kind)
{
    int value = (int) kind;
    return value > 0 && value <= (int) S_ACTOR (SUPERVISOR) ? 1u << value : 0;
}

static const char *
s_actor_phrase (Civicbus__V1__ActorKind kind)
{
    switch (kind) {
        case S_ACTOR (SYSTEM):     return "the system";
        case S_ACTOR (OPERATOR):   return "an operator";
        case S_ACTOR (DEPARTMENT): return "a department";
        case S_ACTOR (REPORTER):   return "a reporter";
        case S_ACTOR (SUPERVISOR): return "a supervisor";
        default:                   return "an unidentified actor";
    }
}

static const char *
s_text (const char *value)
{
    return value ? value : "";
}

//  A required text that is NULL, empty or only white space is missing.
static bool
s_is_blank (const char *value)
{
    for (const char *p = s_text (value); *p; p++)
        if (!isspace ((unsigned char) *p))
            return false;
    return true;
}

__attribute__ ((format (printf, 3, 4)))
static int
s_refuse (ticket_outcome_t *out, const char *code, const char *format, ...)
{
    out->code = code;
    out->to = out->from;
    out->effects = TFX_NONE;
    va_list args;
    va_start (args, format);
    vsnprintf (out->reason, sizeof (out->reason), format, args);
    va_end (args);
    return -1;
}

//  "only in ACCEPTED, RETURNED": where the event would have applied.
static void
s_list_states (uint32_t states, char *buf, size_t cap)
{
    size_t used = 0;
    buf [0] = '\0';
    for (int state = 1; state < S_STATE_COUNT && used < cap; state++)
        if (states & (1u << state)) {
            int written = snprintf (buf + used, cap - used, "%s%s",
                                    used ? ", " : "", s_state_names [state]);
            if (written < 0)
                break;
            used += (size_t) written;
        }
}

static int
s_refuse_state (s_request_t *req, uint32_t allowed_states)
{
    const s_rule_t *rule = &s_rules [req->input->kind];
    cb_state_t state = req->ticket->state;
    if (ticket_state_is_final (state))
        return s_refuse (req->out, TICKET_CODE_FINAL_STATE,
                         "cannot %s a ticket in state %s: the ticket is final",
                         rule->verb, ticket_state_name (state));
    char allowed [120];
    s_list_states (allowed_states, allowed, sizeof (allowed));
    return s_refuse (req->out, TICKET_CODE_WRONG_STATE,
                     "cannot %s a ticket in state %s (only in %s)",
                     rule->verb, ticket_state_name (state), allowed);
}

static int
s_refuse_no_memory (s_request_t *req)
{
    return s_refuse (req->out, TICKET_CODE_NO_MEMORY,
                     "out of memory while applying %s; nothing changed",
                     s_rules [req->input->kind].name);
}

static int
s_require_text (s_request_t *req, const char *what)
{
    if (!s_is_blank (req->input->text))
        return 0;
    return s_refuse (req->out, TICKET_CODE_MISSING_FIELD,
                     "%s (text) is required to %s a ticket",
                     what, s_rules [req->input->kind].verb);
}

static s_role_t
s_department_role (const cb_ticket_t *ticket, const char *department)
{
    if (s_is_blank (department))
        return S_ROLE_STRANGER;
    if (!pb_string_is_empty (ticket->department)
    &&  strcmp (ticket->department, department) == 0)
        return S_ROLE_PRIMARY;
    if (pb_strv_contains (ticket->n_co_handlers, ticket->co_handlers, department))
        return S_ROLE_CO_HANDLER;
    return S_ROLE_STRANGER;
}

//  Who hears of an urge, supplement or escalation: the department while it
//  holds the ticket, else the operators (who accept, dispatch and verify).
static uint32_t
s_holder_effect (cb_state_t state)
{
    if (state == S_STATE (DISPATCHED) || state == S_STATE (IN_PROGRESS)
    ||  state == S_STATE (SUSPENDED))
        return TFX_NOTIFY_DEPARTMENT;
    return TFX_NOTIFY_OPERATORS;
}

//  A pending request belongs to the department that made it; when the
//  ticket leaves that department or is resolved, the request lapses like a
//  refusal. An approved extension (not pending) stays on record.
static void
s_lapse_requests (cb_ticket_t *ticket)
{
    if (ticket->extension_pending) {
        ticket->extension_pending = false;
        ticket->extension_days = 0;
    }
    ticket->suspension_pending = false;
}

static void
s_to (s_request_t *req, cb_state_t to, uint32_t effects)
{
    req->out->to = to;
    req->out->effects = effects;
}

/* ---- the events ---- */

static int
s_accept (s_request_t *req)
{
    s_to (req, S_STATE (ACCEPTED), TFX_STOP_TIMERS | TFX_ROUTE | TFX_NOTIFY_REPORTER);
    return 0;
}

static int
s_reject (s_request_t *req)
{
    if (s_require_text (req, "a reason"))
        return -1;
    if (pb_set_string (&req->ticket->reject_reason, req->input->text))
        return s_refuse_no_memory (req);
    s_to (req, S_STATE (REJECTED), TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER);
    return 0;
}

//  DISPATCH and REASSIGN: check the target and co-handlers, then set both.
static int
s_dispatch (s_request_t *req)
{
    cb_ticket_t *ticket = req->ticket;
    const ticket_input_t *input = req->input;
    const char *verb = s_rules [input->kind].verb;
    const char *department = input->department;

    if (s_is_blank (department))
        return s_refuse (req->out, TICKET_CODE_MISSING_FIELD,
                         "a department is required to %s a ticket", verb);
    if (pb_strv_contains (ticket->n_excluded_departments,
                          ticket->excluded_departments, department))
        return s_refuse (req->out, TICKET_CODE_EXCLUDED,
                         "department %s returned this ticket before and is excluded",
                         department);
    if (input->kind == TEV_REASSIGN
    &&  strcmp (s_text (ticket->department), department) == 0)
        return s_refuse (req->out, TICKET_CODE_BAD_VALUE,
                         "cannot reassign: the ticket is already with department %s",
                         department);
    //  Validating the co-handlers is O(n^2); lists are a handful long.
    const char **co = input->co_handlers;
    for (size_t i = 0; co && co [i]; i++) {
        if (s_is_blank (co [i]))
            return s_refuse (req->out, TICKET_CODE_BAD_VALUE,
                             "co-handler %zu is empty", i + 1);
        if (strcmp (co [i], department) == 0)
            return s_refuse (req->out, TICKET_CODE_BAD_VALUE,
                             "department %s cannot be both primary and co-handler",
                             department);
        for (size_t j = 0; j < i; j++)
            if (strcmp (co [i], co [j]) == 0)
                return s_refuse (req->out, TICKET_CODE_BAD_VALUE,
                                 "co-handler %s is listed twice", co [i]);
    }
    //  Build the new list aside, then set the department (the last step
    //  that can fail), then swap the list in.
    size_t n_new = 0;
    char **new_co = NULL;
    if (pb_strv_set (&n_new, &new_co, (const char *const *) co))
        return s_refuse_no_memory (req);
    if (pb_set_string (&ticket->department, department)) {
        pb_strv_clear (&n_new, &new_co);
        return s_refuse_no_memory (req);
    }
    pb_strv_clear (&ticket->n_co_handlers, &ticket->co_handlers);
    ticket->n_co_handlers = n_new;
    ticket->co_handlers = new_co;
    s_lapse_requests (ticket);

    uint32_t effects = TFX_SEND_DISPATCH | TFX_START_SIGN;
    if (input->kind == TEV_REASSIGN) {
        effects |= TFX_STOP_TIMERS;
        if (req->out->from == S_STATE (DISPATCHED) || req->out->from == S_STATE (IN_PROGRESS))
            effects |= TFX_CANCEL_DISPATCH;
    }
    s_to (req, S_STATE (DISPATCHED), effects);
    return 0;
}

static int
s_sign (s_request_t *req)
{
    if (req->role == S_ROLE_CO_HANDLER)
        s_to (req, req->out->from, TFX_NONE);
    else
        s_to (req, S_STATE (IN_PROGRESS), TFX_STOP_TIMERS | TFX_START_RESOLVE);
    return 0;
}

static int
s_return (s_request_t *req)
{
    cb_ticket_t *ticket = req->ticket;
    if (s_require_text (req, "a reason"))
        return -1;
    if (!pb_strv_contains (ticket->n_excluded_departments,
                           ticket->excluded_departments, ticket->department)
    &&  pb_strv_push (&ticket->n_excluded_departments,
                      &ticket->excluded_departments, ticket->department))
        return s_refuse_no_memory (req);
    uint32_t effects = TFX_STOP_TIMERS | TFX_ROUTE;
    if (ticket->n_co_handlers > 0)
        effects |= TFX_CANCEL_DISPATCH;
    pb_set_string (&ticket->department, NULL);     //  cannot fail: no copy
    pb_strv_clear (&ticket->n_co_handlers, &ticket->co_handlers);
    s_lapse_requests (ticket);
    s_to (req, S_STATE (RETURNED), effects);
    return 0;
}

static int
s_request_extension (s_request_t *req)
{
    cb_ticket_t *ticket = req->ticket;
    int32_t days = req->input->days;
    if (ticket->extension_pending)
        return s_refuse (req->out, TICKET_CODE_WRONG_STATE,
                         "cannot request an extension: a request for %d days is already pending",
                         (int) ticket->extension_days);
    if (days < TICKET_EXTENSION_DAYS_MIN || days > TICKET_EXTENSION_DAYS_MAX)
        return s_refuse (req->out, TICKET_CODE_BAD_VALUE,
                         "an extension must be %d to %d days, not %d",
                         TICKET_EXTENSION_DAYS_MIN, TICKET_EXTENSION_DAYS_MAX, (int) days);
    ticket->extension_pending = true;
    ticket->extension_days = days;
    s_to (req, req->out->from, TFX_NOTIFY_OPERATORS);
    return 0;
}

static int
s_decide_extension (s_request_t *req)
{
    cb_ticket_t *ticket = req->ticket;
    if (!ticket->extension_pending)
        return s_refuse (req->out, TICKET_CODE_WRONG_STATE,
                         "cannot %s a ticket: no extension request is pending",
                         s_rules [req->input->kind].verb);
    ticket->extension_pending = false;
    if (req->input->kind == TEV_APPROVE_EXTENSION)
        s_to (req, req->out->from, TFX_EXTEND_RESOLVE | TFX_NOTIFY_DEPARTMENT);
    else {
        ticket->extension_days = 0;
        s_to (req, req->out->from, TFX_NOTIFY_DEPARTMENT);
    }
    return 0;
}

static int
s_request_suspension (s_request_t *req)
{
    if (req->ticket->suspension_pending)
        return s_refuse (req->out, TICKET_CODE_WRONG_STATE,
                         "cannot request suspension: a request is already pending");
    if (s_require_text (req, "a reason"))
        return -1;
    req->ticket->suspension_pending = true;
    s_to (req, req->out->from, TFX_NOTIFY_OPERATORS);
    return 0;
}

static int
s_decide_suspension (s_request_t *req)
{
    cb_ticket_t *ticket = req->ticket;
    if (!ticket->suspension_pending)
        return s_refuse (req->out, TICKET_CODE_WRONG_STATE,
                         "cannot %s a ticket: no suspension request is pending",
                         s_rules [req->input->kind].verb);
    ticket->suspension_pending = false;
    if (req->input->kind == TEV_APPROVE_SUSPENSION) {
        ticket->state_before_suspend = req->out->from;
        s_to (req, S_STATE (SUSPENDED), TFX_PAUSE_CLOCK | TFX_NOTIFY_DEPARTMENT);
    }
    else
        s_to (req, req->out->from, TFX_NOTIFY_DEPARTMENT);
    return 0;
}

static int
s_resume (s_request_t *req)
{
    cb_ticket_t *ticket = req->ticket;
    //  Only IN_PROGRESS can be suspended; anything else in the field is not
    //  ours and must not send the ticket somewhere odd.
    cb_state_t to = ticket->state_before_suspend == S_STATE (IN_PROGRESS)
                  ? ticket->state_before_suspend : S_STATE (IN_PROGRESS);
    ticket->state_before_suspend = S_STATE (TICKET_STATE_UNSPECIFIED);
    uint32_t effects = TFX_RESUME_CLOCK;
    if (req->role != S_ROLE_PRIMARY)
        effects |= TFX_NOTIFY_DEPARTMENT;
    s_to (req, to, effects);
    return 0;
}

static int
s_progress (s_request_t *req)
{
    if (s_require_text (req, "a note"))
        return -1;
    s_to (req, req->out->from,
          req->role == S_ROLE_CO_HANDLER ? TFX_NOTIFY_DEPARTMENT : TFX_NONE);
    return 0;
}

static int
s_resolve (s_request_t *req)
{
    if (s_require_text (req, "a result"))
        return -1;
    if (req->role == S_ROLE_CO_HANDLER) {
        //  The co-handler's part is done; the primary resolves the ticket.
        s_to (req, req->out->from, TFX_NOTIFY_DEPARTMENT);
        return 0;
    }
    if (pb_set_string (&req->ticket->resolution, req->input->text))
        return s_refuse_no_memory (req);
    s_lapse_requests (req->ticket);
    s_to (req, S_STATE (RESOLVED),
          TFX_STOP_TIMERS | TFX_START_VERIFY | TFX_NOTIFY_REPORTER);
    return 0;
}

static int
s_verify (s_request_t *req)
{
    s_to (req, S_STATE (CLOSED), TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER);
    return 0;
}

static int
s_reopen (s_request_t *req)
{
    cb_ticket_t *ticket = req->ticket;
    if (s_require_text (req, "a reason"))
        return -1;
    if (ticket->rework_count < 0 || ticket->rework_count == INT32_MAX)
        return s_refuse (req->out, TICKET_CODE_BAD_VALUE,
                         "cannot reopen: rework count %d is out of range",
                         (int) ticket->rework_count);
    ticket->rework_count++;
    pb_set_string (&ticket->resolution, NULL);     //  cannot fail: no copy
    ticket->satisfaction = 0;
    s_to (req, S_STATE (IN_PROGRESS), TFX_STOP_TIMERS | TFX_START_RESOLVE
                                    | TFX_NOTIFY_DEPARTMENT | TFX_NOTIFY_REPORTER);
    return 0;
}

static int
s_merge (s_request_t *req)
{
    const char *target = req->input->target_id;
    if (s_is_blank (target))
        return s_refuse (req->out, TICKET_CODE_MISSING_FIELD,
                         "a target ticket id is required to merge a ticket");
    if (strcmp (target, s_text (req->ticket->id)) == 0)
        return s_refuse (req->out, TICKET_CODE_BAD_VALUE,
                         "cannot merge ticket %s into itself", target);
    if (pb_set_string (&req->ticket->merged_into, target))
        return s_refuse_no_memory (req);
    uint32_t effects = TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER;
    if (req->out->from == S_STATE (DISPATCHED))
        effects |= TFX_CANCEL_DISPATCH;
    s_to (req, S_STATE (MERGED), effects);
    return 0;
}

static int
s_cancel (s_request_t *req)
{
    uint32_t effects = TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER;
    if (req->out->from == S_STATE (DISPATCHED))
        effects |= TFX_CANCEL_DISPATCH;
    s_to (req, S_STATE (CANCELLED), effects);
    return 0;
}

static int
s_follow_up (s_request_t *req)
{
    int32_t satisfaction = req->input->satisfaction;
    if (req->ticket->satisfaction != 0)
        return s_refuse (req->out, TICKET_CODE_WRONG_STATE,
                         "cannot record a follow-up: satisfaction %d is already recorded",
                         (int) req->ticket->satisfaction);
    if (satisfaction < TICKET_SATISFACTION_MIN || satisfaction > TICKET_SATISFACTION_MAX)
        return s_refuse (req->out, TICKET_CODE_BAD_VALUE,
                         "satisfaction must be %d to %d, not %d",
                         TICKET_SATISFACTION_MIN, TICKET_SATISFACTION_MAX, (int) satisfaction);
    req->ticket->satisfaction = satisfaction;
    s_to (req, req->out->from, TFX_NONE);
    return 0;
}

static int
s_escalate (s_request_t *req)
{
    cb_ticket_t *ticket = req->ticket;
    //  At the top of the ladder the level stays, but the supervisors are
    //  told again: an overdue ticket at district level still needs eyes.
    if (ticket->escalation_level < 0)
        ticket->escalation_level = 0;
    if (ticket->escalation_level < TICKET_ESCALATION_MAX)
        ticket->escalation_level++;
    else
        ticket->escalation_level = TICKET_ESCALATION_MAX;
    s_to (req, req->out->from, TFX_NOTIFY_SUPERVISOR | s_holder_effect (req->out->from));
    return 0;
}

static int
s_urge (s_request_t *req)
{
    s_to (req, req->out->from, s_holder_effect (req->out->from));
    return 0;
}

static int
s_supplement (s_request_t *req)
{
    if (s_require_text (req, "a note"))
        return -1;
    s_to (req, req->out->from, s_holder_effect (req->out->from));
    return 0;
}

typedef int (s_handler_fn) (s_request_t *req);

static s_handler_fn *const s_handlers [TEV_COUNT] = {
    [TEV_ACCEPT]             = s_accept,
    [TEV_REJECT]             = s_reject,
    [TEV_DISPATCH]           = s_dispatch,
    [TEV_REASSIGN]           = s_dispatch,
    [TEV_SIGN]               = s_sign,
    [TEV_RETURN]             = s_return,
    [TEV_REQUEST_EXTENSION]  = s_request_extension,
    [TEV_APPROVE_EXTENSION]  = s_decide_extension,
    [TEV_REFUSE_EXTENSION]   = s_decide_extension,
    [TEV_REQUEST_SUSPENSION] = s_request_suspension,
    [TEV_APPROVE_SUSPENSION] = s_decide_suspension,
    [TEV_REFUSE_SUSPENSION]  = s_decide_suspension,
    [TEV_RESUME]             = s_resume,
    [TEV_PROGRESS]           = s_progress,
    [TEV_RESOLVE]            = s_resolve,
    [TEV_VERIFY]             = s_verify,
    [TEV_REOPEN]             = s_reopen,
    [TEV_MERGE]              = s_merge,
    [TEV_CANCEL]             = s_cancel,
    [TEV_FOLLOW_UP]          = s_follow_up,
    [TEV_ESCALATE]           = s_escalate,
    [TEV_URGE]               = s_urge,
    [TEV_SUPPLEMENT]         = s_supplement,
};

/* ---- public ---- */

int
ticket_apply_event (cb_ticket_t *ticket, const ticket_input_t *input,
                    const ticket_actor_t *actor, int64_t now_ms,
                    ticket_outcome_t *out)
{
    assert (ticket && input && actor && out);
    memset (out, 0, sizeof (*out));
    out->from = out->to = ticket->state;

    //  The kind may come from a decoded name or a wire value: refuse, not assert.
    if ((unsigned) input->kind >= TEV_COUNT)
        return s_refuse (out, TICKET_CODE_BAD_VALUE,
                         "unknown event kind %d", (int) input->kind);
    const s_rule_t *rule = &s_rules [input->kind];
    s_request_t req = { ticket, input, actor, S_ROLE_NONE, out };

    if (!(rule->actors & s_actor_bit (actor->kind)))
        return s_refuse (out, TICKET_CODE_NOT_ALLOWED, "%s cannot %s a ticket",
                         s_actor_phrase (actor->kind), rule->verb);

    bool is_department = actor->kind == S_ACTOR (DEPARTMENT);
    uint32_t state_bit = s_state_bit (ticket->state);
    uint32_t any_role_states = rule->states | (is_department ? rule->co_states : 0);
    if (!(any_role_states & state_bit))
        return s_refuse_state (&req, any_role_states);

    if (is_department) {
        req.role = s_department_role (ticket, actor->id);
        if (req.role == S_ROLE_STRANGER) {
            if (s_is_blank (actor->id))
                return s_refuse (out, TICKET_CODE_NOT_ALLOWED,
                                 "a department without an id cannot %s a ticket",
                                 rule->verb);
            return s_refuse (out, TICKET_CODE_NOT_ALLOWED,
                             "department %s cannot %s a ticket that is not dispatched to it",
                             actor->id, rule->verb);
        }
        if (req.role == S_ROLE_CO_HANDLER && !rule->co_states)
            return s_refuse (out, TICKET_CODE_NOT_PRIMARY,
                             "department %s is a co-handler; only the primary department %s can %s this ticket",
                             actor->id, s_text (ticket->department), rule->verb);
        uint32_t role_states = req.role == S_ROLE_CO_HANDLER ? rule->co_states : rule->states;
        if (!(role_states & state_bit))
            return s_refuse_state (&req, role_states);
    }
    if (s_handlers [input->kind] (&req) != 0)
        return -1;
    ticket->state = out->to;
    ticket->updated_ms = now_ms;
    return 0;
}

const char *
ticket_event_name (ticket_event_kind_t kind)
{
    return (unsigned) kind < TEV_COUNT ? s_rules [kind].name : NULL;
}

int
ticket_event_from_name (const char *name)
{
    if (!name)
        return -1;
    for (int kind = 0; kind < TEV_COUNT; kind++)
        if (strcmp (s_rules [kind].name, name) == 0)
            return kind;
    return -1;
}

const char *
ticket_state_name (cb_state_t state)
{
    return s_state_bit (state) ? s_state_names [state] : "UNKNOWN";
}

int
ticket_state_from_name (const char *name)
{
    if (!name)
        return -1;
    for (int state = 1; state < S_STATE_COUNT; state++)
        if (strcmp (s_state_names [state], name) == 0)
            return state;
    return -1;
}

bool
ticket_state_is_final (cb_state_t state)
{
    return state == S_STATE (CLOSED) || state == S_STATE (REJECTED)
        || state == S_STATE (MERGED) || state == S_STATE (CANCELLED);
}
