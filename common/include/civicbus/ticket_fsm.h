/*  ticket_fsm.h — the ticket lifecycle, one pure function (DESIGN.md §4).

    ticket_apply_event() is the only code in civicbus that changes a ticket's
    lifecycle fields (state, department, co-handlers, exclusions, extension and
    suspension flags, rework count, merge target, reject reason, resolution,
    satisfaction, escalation level). It does no I/O and reads no clock: the
    caller passes `now_ms`, stores the changed ticket with compare-and-set on
    its version, and carries out the returned effects (timers, dispatches,
    notifications) after the store succeeded.

    States (civicbus.proto TicketState):
        RECEIVED -> ACCEPTED -> DISPATCHED -> IN_PROGRESS -> RESOLVED -> CLOSED
    side paths REJECTED, RETURNED, SUSPENDED, MERGED, CANCELLED, reopen.
    Final: CLOSED, REJECTED, MERGED, CANCELLED. "Open" below means any state
    that is not final. CLOSED still takes REOPEN and FOLLOW_UP.

    Who may act (ticket_actor_t.kind):
    - SYSTEM (rules, timers, the dispatcher): ACCEPT, REJECT, DISPATCH, MERGE
      (automatic duplicate merging, DESIGN.md "dispatcher"), ESCALATE, URGE.
    - OPERATOR (command center): ACCEPT, REJECT, DISPATCH, REASSIGN, the
      extension and suspension decisions, RESUME, VERIFY, REOPEN, MERGE,
      CANCEL (for the reporter), FOLLOW_UP, URGE, SUPPLEMENT. Never SIGN,
      RETURN, PROGRESS, RESOLVE or the requests: those are the department's.
    - SUPERVISOR: the extension and suspension decisions, RESUME, VERIFY,
      REOPEN, ESCALATE.
    - DEPARTMENT (actor.id = department code): SIGN, RETURN, REQUEST_EXTENSION,
      REQUEST_SUSPENSION, RESUME, PROGRESS, RESOLVE, and only on a ticket whose
      `department` is actor.id (the primary, 主办). A co-handler (协办, actor.id
      in co_handlers) may send SIGN, PROGRESS and RESOLVE: they are accepted
      as notes for the history, change nothing but updated_ms (out->from ==
      out->to), and a co-handler's RESOLVE does not set the resolution; it
      tells the primary department (TFX_NOTIFY_DEPARTMENT), who resolves the
      ticket for everyone. A co-handler's RETURN, REQUEST_EXTENSION,
      REQUEST_SUSPENSION or RESUME is refused with "not_primary". Any other
      department is refused with "not_allowed".
    - REPORTER: CANCEL (before IN_PROGRESS), URGE, SUPPLEMENT. The caller has
      already checked that this reporter owns the ticket.
    - ACTOR_UNSPECIFIED: nothing.

    Checks run in this order, and the first failing one is the refusal:
    event kind known ("bad_value"); actor kind may send the event
    ("not_allowed"); state ("final_state" for a final state, else
    "wrong_state"; for a department, the states where a primary or a
    co-handler may send it); department identity ("not_allowed" for a
    department that neither owns nor co-handles the ticket, "not_primary");
    the state again for the department's role ("wrong_state", e.g. a primary
    PROGRESS before signing); then the input fields ("missing_field",
    "bad_value", "excluded"). A required text that is only white space counts
    as missing. */

#ifndef CIVICBUS_TICKET_FSM_H
#define CIVICBUS_TICKET_FSM_H

#include <stdint.h>
#include <stdbool.h>
#include "civicbus/v1/civicbus.pb-c.h"

typedef Civicbus__V1__Ticket cb_ticket_t;
typedef Civicbus__V1__TicketState cb_state_t;

//  Limits the state machine enforces.
#define TICKET_EXTENSION_DAYS_MIN   1
#define TICKET_EXTENSION_DAYS_MAX   30
#define TICKET_SATISFACTION_MIN     1
#define TICKET_SATISFACTION_MAX     5
//  The escalation ladder grid -> community -> street -> district has four
//  rungs: escalation_level stops at 4 (district).
#define TICKET_ESCALATION_MAX       4

//  What happened to a ticket. The names are the event types written to the
//  history (ticket_event_name()). Each line: state change, who, inputs,
//  effects (TFX_ without the prefix). "holder" is NOTIFY_DEPARTMENT while a
//  department holds the ticket (DISPATCHED, IN_PROGRESS, SUSPENDED) and
//  NOTIFY_OPERATORS otherwise.
typedef enum {
    //  立案: RECEIVED -> ACCEPTED (system, operator).
    //  STOP_TIMERS | ROUTE | NOTIFY_REPORTER.
    TEV_ACCEPT = 0,
    //  不予受理: RECEIVED -> REJECTED (system, operator); text = reason,
    //  required, stored in reject_reason. STOP_TIMERS | NOTIFY_REPORTER.
    TEV_REJECT,
    //  派单: ACCEPTED|RETURNED -> DISPATCHED (system, operator); department
    //  required and not in excluded_departments ("excluded"); co_handlers
    //  optional, each non-empty, distinct, not the department ("bad_value").
    //  Sets department and replaces co_handlers. SEND_DISPATCH | START_SIGN.
    TEV_DISPATCH,
    //  改派: DISPATCHED|IN_PROGRESS|RETURNED -> DISPATCHED (operator); inputs
    //  as DISPATCH, and the department must differ from the current one
    //  ("bad_value"). A pending extension or suspension request lapses.
    //  STOP_TIMERS | SEND_DISPATCH | START_SIGN, plus CANCEL_DISPATCH from
    //  DISPATCHED or IN_PROGRESS (withdraw the old department's order).
    TEV_REASSIGN,
    //  签收: DISPATCHED -> IN_PROGRESS (the primary department).
    //  STOP_TIMERS | START_RESOLVE (the sign clock ends, the resolve clock
    //  starts). A co-handler's SIGN (DISPATCHED, IN_PROGRESS): a note, NONE.
    TEV_SIGN,
    //  退单: DISPATCHED|IN_PROGRESS -> RETURNED (the primary department);
    //  text = reason, required. Appends the department to
    //  excluded_departments, clears department and co_handlers, lapses
    //  pending requests. STOP_TIMERS | ROUTE, plus CANCEL_DISPATCH when there
    //  were co-handlers (their orders are withdrawn).
    TEV_RETURN,
    //  延期申请: IN_PROGRESS, overlay (primary department); days 1..30
    //  ("bad_value"); refused "wrong_state" while one is pending. Sets
    //  extension_pending and extension_days. NOTIFY_OPERATORS.
    TEV_REQUEST_EXTENSION,
    //  IN_PROGRESS with a pending request, else "wrong_state" (operator,
    //  supervisor). Clears extension_pending, keeps extension_days.
    //  EXTEND_RESOLVE | NOTIFY_DEPARTMENT.
    TEV_APPROVE_EXTENSION,
    //  IN_PROGRESS with a pending request (operator, supervisor). Clears
    //  extension_pending and extension_days. NOTIFY_DEPARTMENT.
    TEV_REFUSE_EXTENSION,
    //  挂账申请: IN_PROGRESS, overlay (primary department); text = reason,
    //  required; refused "wrong_state" while one is pending. Sets
    //  suspension_pending. NOTIFY_OPERATORS.
    TEV_REQUEST_SUSPENSION,
    //  IN_PROGRESS with a pending request -> SUSPENDED (operator,
    //  supervisor). Clears suspension_pending, state_before_suspend =
    //  IN_PROGRESS. PAUSE_CLOCK | NOTIFY_DEPARTMENT.
    TEV_APPROVE_SUSPENSION,
    //  IN_PROGRESS with a pending request (operator, supervisor). Clears
    //  suspension_pending. NOTIFY_DEPARTMENT.
    TEV_REFUSE_SUSPENSION,
    //  SUSPENDED -> state_before_suspend, IN_PROGRESS when that is unset
    //  (operator, supervisor, the primary department); clears
    //  state_before_suspend. RESUME_CLOCK, plus NOTIFY_DEPARTMENT unless the
    //  department itself resumed.
    TEV_RESUME,
    //  进展: IN_PROGRESS, no state change (primary department; a co-handler
    //  also in DISPATCHED); text required. NONE; a co-handler's note
    //  NOTIFY_DEPARTMENT (the primary hears of it).
    TEV_PROGRESS,
    //  办结: IN_PROGRESS -> RESOLVED (the primary department); text = result,
    //  required, stored in resolution; pending requests lapse.
    //  STOP_TIMERS | START_VERIFY | NOTIFY_REPORTER. A co-handler's RESOLVE
    //  (DISPATCHED, IN_PROGRESS): a note, NOTIFY_DEPARTMENT.
    TEV_RESOLVE,
    //  核查结案: RESOLVED -> CLOSED (operator, supervisor).
    //  STOP_TIMERS | NOTIFY_REPORTER.
    TEV_VERIFY,
    //  重办: RESOLVED|CLOSED -> IN_PROGRESS (operator, supervisor); text =
    //  why, required. rework_count+1, resolution and satisfaction cleared.
    //  STOP_TIMERS | START_RESOLVE | NOTIFY_DEPARTMENT | NOTIFY_REPORTER.
    TEV_REOPEN,
    //  并单: RECEIVED|ACCEPTED|DISPATCHED|RETURNED -> MERGED (operator,
    //  system); target_id required, not the ticket's own id ("bad_value");
    //  stored in merged_into. STOP_TIMERS | NOTIFY_REPORTER, plus
    //  CANCEL_DISPATCH from DISPATCHED.
    TEV_MERGE,
    //  撤回: RECEIVED|ACCEPTED|DISPATCHED|RETURNED -> CANCELLED (reporter,
    //  operator); text optional. STOP_TIMERS | NOTIFY_REPORTER, plus
    //  CANCEL_DISPATCH from DISPATCHED.
    TEV_CANCEL,
    //  回访: CLOSED, once (operator); satisfaction 1..5 ("bad_value"); a
    //  second follow-up is "wrong_state". Sets satisfaction. NONE.
    TEV_FOLLOW_UP,
    //  督办: any open state (system, supervisor). escalation_level+1, capped
    //  at TICKET_ESCALATION_MAX (at the cap it is accepted and stays: the
    //  supervisors are alerted again). NOTIFY_SUPERVISOR | holder.
    TEV_ESCALATE,
    //  催办: any open state, no change (system, operator, reporter). holder.
    TEV_URGE,
    //  补充: any open state, note only (reporter, operator); text required.
    //  holder.
    TEV_SUPPLEMENT,
    TEV_COUNT
} ticket_event_kind_t;

typedef struct {
    Civicbus__V1__ActorKind kind;
    const char *id;          //  key name, department code, operator id
    const char *name;        //  for the history; may be NULL
} ticket_actor_t;

typedef struct {
    ticket_event_kind_t kind;
    const char *department;  //  DISPATCH, REASSIGN: the target department
    const char **co_handlers;//  DISPATCH, REASSIGN: NULL-terminated, may be NULL
    const char *text;        //  reason, result or note
    int32_t days;            //  REQUEST_EXTENSION
    const char *target_id;   //  MERGE
    int32_t satisfaction;    //  FOLLOW_UP, 1..5
} ticket_input_t;

//  Effects the caller carries out after storing the change (a bit set).
//  Carry out CANCEL_DISPATCH and STOP_TIMERS before any START_*: a set such
//  as SIGN's (STOP_TIMERS | START_RESOLVE) means "end the running stage,
//  then start the next".
enum {
    TFX_NONE             = 0,
    TFX_ROUTE            = 1 << 0,  //  find the owning department and dispatch (after ACCEPT, RETURN)
    TFX_SEND_DISPATCH    = 1 << 1,  //  send DispatchOrders to department + co-handlers
    TFX_START_SIGN       = 1 << 2,  //  start the sign clock
    TFX_START_RESOLVE    = 1 << 3,  //  start the resolve clock
    TFX_START_VERIFY     = 1 << 4,  //  start the verify clock
    TFX_STOP_TIMERS      = 1 << 5,  //  cancel every stage timer of the ticket
    TFX_EXTEND_RESOLVE   = 1 << 6,  //  move the resolve deadline by `days`
    TFX_PAUSE_CLOCK      = 1 << 7,  //  suspension: keep what is left, stop timers
    TFX_RESUME_CLOCK     = 1 << 8,  //  restart the paused clock with what was left
    TFX_NOTIFY_REPORTER  = 1 << 9,  //  tell the reporter
    TFX_NOTIFY_DEPARTMENT= 1 << 10, //  tell the (primary) department (reminder, decision)
    TFX_NOTIFY_SUPERVISOR= 1 << 11, //  tell the supervisors (escalation)
    TFX_NOTIFY_OPERATORS = 1 << 12, //  put it in the operators' queue (no owner found, requests)
    TFX_CANCEL_DISPATCH  = 1 << 13, //  withdraw pending dispatches to departments
};

//  Refusal codes (ticket_outcome_t.code). Compare with strcmp.
#define TICKET_CODE_WRONG_STATE     "wrong_state"    //  event not possible in this state
#define TICKET_CODE_FINAL_STATE     "final_state"    //  the ticket is closed, rejected, merged or cancelled
#define TICKET_CODE_NOT_ALLOWED     "not_allowed"    //  this actor may not do this (to this ticket)
#define TICKET_CODE_NOT_PRIMARY     "not_primary"    //  a co-handler tried what only the primary may do
#define TICKET_CODE_MISSING_FIELD   "missing_field"  //  a required input is absent or blank
#define TICKET_CODE_BAD_VALUE       "bad_value"      //  an input is out of range or contradictory
#define TICKET_CODE_EXCLUDED        "excluded"       //  the department returned this ticket before
#define TICKET_CODE_NO_MEMORY       "no_memory"      //  out of memory; nothing changed, retry later

typedef struct {
    cb_state_t from;
    cb_state_t to;           //  == from for notes and overlays
    uint32_t effects;        //  TFX_* bits
    char reason[160];        //  refusal: why, for people ("" on success)
    const char *code;        //  refusal: TICKET_CODE_* (static); NULL on success
} ticket_outcome_t;

//  Applies `input` by `actor` at `now_ms` to `ticket`. On success returns 0,
//  changes the ticket's lifecycle fields in place (strings are replaced with
//  heap copies the default protobuf-c allocator frees, see pbutil.h), sets
//  updated_ms, and fills `out` (from, to, effects). On refusal returns -1,
//  leaves the ticket exactly as it was (also when out of memory), and fills
//  out->from = out->to = the current state, out->code and out->reason.
//  Never touches the version: the store bumps it. Reads nothing but its
//  arguments; input strings are copied, not kept. All four pointers must be
//  non-NULL.
int ticket_apply_event (cb_ticket_t *ticket, const ticket_input_t *input,
                        const ticket_actor_t *actor, int64_t now_ms,
                        ticket_outcome_t *out);

//  "accept", "reject", "dispatch", "reassign", "sign", "return",
//  "request_extension", "approve_extension", "refuse_extension",
//  "request_suspension", "approve_suspension", "refuse_suspension",
//  "resume", "progress", "resolve", "verify", "reopen", "merge", "cancel",
//  "follow_up", "escalate", "urge", "supplement" (the history's event type),
//  or NULL for anything else.
const char *ticket_event_name (ticket_event_kind_t kind);
//  Inverse of ticket_event_name (exact, case-sensitive); returns -1 for an
//  unknown name or NULL.
int ticket_event_from_name (const char *name);
//  "RECEIVED", ... "CANCELLED" (the proto's names) for logs and JSON;
//  "UNKNOWN" for TICKET_STATE_UNSPECIFIED and anything else.
const char *ticket_state_name (cb_state_t state);
//  Inverse (exact, case-sensitive); returns -1 for an unknown name or NULL.
int ticket_state_from_name (const char *name);
//  True for CLOSED, REJECTED, MERGED, CANCELLED.
bool ticket_state_is_final (cb_state_t state);

#endif
