/*  ticket_effects.h — the one place that carries a state-machine outcome's
    clock effects into the ticket and its change: deadlines started, ended,
    extended, paused and resumed (sla.h), the light, and the timers armed,
    moved or cancelled in the same compare-and-set (timers.h).

    Every writer that runs the state machine (the dispatcher's routing and
    department replies, the console's operator actions) calls this after
    ticket_apply_event and before ticket_store_apply, with `before` the
    stored ticket and `after` the changed one. It is pure: no I/O, no clock.

    The effects, in this order (ticket_fsm.h: stop before start):
    - TFX_STOP_TIMERS: every running or paused deadline ends: finished_ms =
      now, due/warn/remaining kept, so KPIs can tell on time from late
      (sla_light_at of a finished deadline is its light when it ended). The
      ticket's light is left as it was.
    - TFX_START_SIGN / _RESOLVE / _VERIFY, and TICKET_EFFECTS_START_ACCEPT
      (not a state-machine effect: the dispatcher starts the accept clock of
      a ticket it leaves for the operators; it counts from created_ms, the
      moment the ticket was received): the stage's deadline from the ticket's
      policy and urgency (sla_stage_deadline) replaces the stage's entry in
      after->deadlines (a reopened ticket's new resolve clock replaces the
      old one). A stage without a limit gets an entry with started_ms only.
      The light turns green: a new clock. An accept clock already running
      is left alone (a second HOLD of the same ticket does not restart it).
    - TFX_PAUSE_CLOCK: sla_pause on every running deadline (suspension).
    - TFX_RESUME_CLOCK: sla_resume on every paused deadline; the light is
      that of the resumed deadline now (it continues the old clock, so a
      warning or overdue already sent is not sent again).
    - TFX_EXTEND_RESOLVE: sla_extend on the resolve deadline (running or
      paused) by after->extension_days, clamped to the policy's
      sla_extension_max_days (the request was accepted by the state machine,
      which knows only its own 1..30; the clamp is reported, not refused).
      The light turns green and the moved deadline gets new timers, so its
      warning and overdue come again at the new instants.
    Then timers_schedule_ops (before, after) adds the timer writes.

    Without policies (none loaded, citydata.h) no clock starts, moves or
    pauses; stops still end the running deadlines and cancel their timers.

    The escalation level (督办 cards) is not touched here: it belongs to the
    ticket, not to a stage, and stays when the next stage starts (so a
    later stage's ladder only fires its steps above the level reached). */

#ifndef CIVICBUS_TICKET_EFFECTS_H
#define CIVICBUS_TICKET_EFFECTS_H

#include <stdbool.h>
#include <stdint.h>
#include "civicbus/sla.h"
#include "civicbus/ticket_fsm.h"
#include "civicbus/ticket_store.h"
#include "civicbus/workcal.h"

//  Start the accept clock (from created_ms). Outside the TFX_* bits.
#define TICKET_EFFECTS_START_ACCEPT (1u << 24)

//  What was done, for logs and event payloads. Stage bits are 1 << Stage.
typedef struct {
    uint32_t started;             //  stages whose clock started
    uint32_t finished;            //  stages whose clock ended
    uint32_t paused;              //  stages paused
    uint32_t resumed;             //  stages resumed
    int extension_days;           //  EXTEND_RESOLVE: working days applied (0: none)
    int extension_asked;          //  ... the days asked, when more than the policy grants; else 0
    bool no_policies;             //  a clock had to start or move, but no policies are loaded
} ticket_effects_report_t;

//  Carries `effects` (TFX_* bits, plus TICKET_EFFECTS_START_ACCEPT) into
//  `after` at `now_ms` and adds the timer writes to `ops` (see the top).
//  `before` is the stored ticket (NULL for one not stored yet); `policies`
//  may be NULL (none loaded); `cal` must not be NULL; `report` may be NULL.
//  Returns 0, or -1 when out of memory or for an `after` without a ticket
//  id (the change must then be abandoned: `after` may be half changed).
int ticket_effects_apply (const cb_ticket_t *before, cb_ticket_t *after, uint32_t effects,
                          const sla_policies_t *policies, const workcal_t *cal, int64_t now_ms,
                          ts_ops_t *ops, ticket_effects_report_t *report);

//  The ts_ops_fn of ticket_store_transition (ticket_store.h): pass a
//  ticket_effects_arg_t as its arg. Applies the outcome's effects with the
//  arg's policies, calendar and now; the report lands in the arg.
typedef struct {
    const sla_policies_t *policies;   //  may be NULL
    const workcal_t *cal;
    int64_t now_ms;
    ticket_effects_report_t report;
} ticket_effects_arg_t;

int ticket_effects_ops_fn (const cb_ticket_t *before, cb_ticket_t *after,
                           const ticket_outcome_t *outcome, ts_ops_t *ops, void *arg);

//  The deadline of `stage` in `ticket` (the last entry for it), or NULL.
const Civicbus__V1__Deadline *ticket_effects_deadline (const cb_ticket_t *ticket,
                                                       Civicbus__V1__Stage stage);

#endif
