/*  dispatch.h — the dispatcher's decision for one ticket from its inbox, as
    a pure function: given the ticket and the current catalogue (and grids),
    accept it and route it, accept it for the operators, hold it for the
    operators, or leave it alone, and build the one store change that says so
    (the new ticket, its history events and the extra keys: inbox entry,
    dispatch records, dispatch queue).

    The service (services/dispatcher) loads the ticket, calls dispatch_plan,
    stores the plan with ticket_store_apply (compare-and-set on the version:
    a conflict means someone else changed the ticket; reload and plan again)
    and publishes the events. Nothing here does I/O or reads a clock, so the
    rules are unit tested without Redis (tests/unit/test_dispatch.c).

    The decision, for a RECEIVED ticket:
    - review_required (set by the intake: a probable duplicate, a sensor
      event below its type's confidence threshold): SKIP, never accepted
      automatically; it waits in the operators' queue (needs_review) and
      only the inbox entry goes.
    - no catalogue loaded, or a category the catalogue does not know:
      HOLD: it stays RECEIVED with needs_review set and the reason in
      review_reason, so it waits in the operators' queue (opq:{bNN}).
    - a location in no grid (no grid path) routes by the catalogue's
      fallback department (issue 3: "a point inside no grid ... routed by the
      catalogue's fallback rule"); without a fallback the location is not
      usable: HOLD.
    - otherwise ACCEPT (actor SYSTEM) and route with catalog_route (grid
      path, request type, excluded departments): a department found gives
      ROUTED (ACCEPT then DISPATCH, with co-handlers and the rule's time-limit
      policy); none gives NO_OWNER: ACCEPTED, needs_review, "no department
      owns category X in area Y".
    A RETURNED ticket (a department handed it back, 退单) is routed the same
    way without the ACCEPT (DISPATCH only, its excluded departments
    skipped); no owner leaves it RETURNED, which is in the operators' queue
    already. Any other state is SKIP: the doorbell was a redelivery of work
    already done, and only the inbox entry goes.

    Keys a change writes, all in the ticket's bucket {bNN} (ticket_store.h):
        inbox:{bNN}       ZREM id                 the doorbell is answered
        dsp:{bNN}:ID      HSET dept dispatch_id   pending dispatch record per
                                                 department (primary, co-handlers)
        dspq:{bNN}        ZADD now "ID|dept"      orders waiting to be sent to an
                                                 adapter (the department protocol)
    A dispatch id is "ID/dept/version", version being the ticket version the
    change creates: unique per dispatch, since every dispatch is a change. */

#ifndef CIVICBUS_DISPATCH_H
#define CIVICBUS_DISPATCH_H

#include <stddef.h>
#include <stdint.h>
#include "civicbus/catalog.h"
#include "civicbus/grid_index.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_store.h"

//  Bytes, with NUL, of a dispatch id ("ID/dept/version") and a dspq member.
#define DISPATCH_ID_MAX     (CB_TICKET_ID_MAX + CATALOG_CODE_MAX + 24)
#define DISPATCH_REASON_MAX 256

typedef enum {
    DISPATCH_SKIP = 0,      //  nothing to store: drop the inbox entry only
    DISPATCH_ROUTED,        //  accepted (when RECEIVED) and dispatched
    DISPATCH_NO_OWNER,      //  accepted (when RECEIVED), no department: operators' queue
    DISPATCH_HOLD,          //  stays RECEIVED, needs_review: operators' queue
} dispatch_verdict_t;

//  A plan: what to store for one ticket. Fill it with dispatch_plan, store
//  it (after, events, ops), then free it with dispatch_plan_reset.
typedef struct {
    dispatch_verdict_t verdict;
    cb_ticket_t *after;                 //  the ticket to store; NULL for SKIP
    ts_event_t events [2];              //  "accept", "dispatch" (as the verdict needs)
    size_t n_events;
    ts_ops_t *ops;                      //  the extra writes; NULL for SKIP
    catalog_route_t route;              //  ROUTED: department, co-handlers, policy, rule
    size_t n_dispatches;                //  ROUTED: 1 + co-handlers
    char dispatch_ids [1 + CATALOG_CO_HANDLERS_MAX][DISPATCH_ID_MAX];
    char reason [DISPATCH_REASON_MAX];  //  HOLD, NO_OWNER, SKIP: why, for people and logs
    char inbox_key [32];                //  "inbox:{bNN}" of the ticket
    char payload [1024];                //  the dispatch event's JSON detail
} dispatch_plan_t;

//  Decides what to do with `ticket` (as loaded from the store) using
//  `catalog` (NULL: none loaded) and `grids` (NULL: none loaded; used only
//  to locate a ticket that has a point but no grid path yet, e.g. one
//  taken in before the grids were loaded). `actor` is the system actor
//  named in the events and must outlive the plan; `now_ms` is the time of
//  the change. Returns 0 with *plan filled (any verdict), or -1 when memory
//  ran out or the state machine refused a step the checks above should have
//  made safe (a bug, logged); *plan holds nothing to free then.
int dispatch_plan (dispatch_plan_t *plan, const cb_ticket_t *ticket,
                   const catalog_t *catalog, const grid_index_t *grids,
                   const ticket_actor_t *actor, int64_t now_ms);

//  Frees what a plan holds (after, ops) and zeroes it; safe twice.
void dispatch_plan_reset (dispatch_plan_t *plan);

//  "routed", "no_owner", "hold", "skip" for logs.
const char *dispatch_verdict_name (dispatch_verdict_t verdict);

//  Writes the dspq member "ID|dept" for a pending order. 0, or -1 when it
//  does not fit.
int dispatch_queue_member (char *buf, size_t cap, const char *ticket_id, const char *department);

/* ---- the department protocol (docs/PROTOCOL.md) ---- */

//  History event types the dispatcher writes that are not state-machine
//  events: stored with from == to (ticket_store_apply).
#define DISPATCH_EVENT_DELIVERED "delivered"        //  an adapter ACKed the order
#define DISPATCH_EVENT_REFUSED   "delivery_refused" //  the department's system refused it

//  Splits a dispatch id "ID/dept/version" into the ticket id and the
//  department. 0, or -1 when it is not one (or does not fit).
int dispatch_id_parse (const char *dispatch_id, char *ticket_id, size_t ticket_cap,
                       char *department, size_t department_cap);

//  The state-machine event for a department reply kind (sign -> TEV_SIGN,
//  return -> TEV_RETURN, extension -> TEV_REQUEST_EXTENSION, suspend ->
//  TEV_REQUEST_SUSPENSION, progress -> TEV_PROGRESS, resolve ->
//  TEV_RESOLVE), or -1 for REPLY_UNSPECIFIED and unknown values.
int dispatch_reply_event (Civicbus__V1__ReplyKind kind);

//  The ticket as a department's order carries it: a deep copy, with the
//  reporter's name and phone masked (mask.h) and phone numbers in the
//  description masked when `masks_personal_data` (the catalogue's flag for
//  that department). NULL when out of memory. Free with
//  civicbus__v1__ticket__free_unpacked.
cb_ticket_t *dispatch_order_ticket (const cb_ticket_t *ticket, bool masks_personal_data);

/* ---- dispatches made by hand (the console) ---- */

//  The extra keys of an operator's change, so a hand-made dispatch leaves
//  exactly the records dispatch_plan leaves. With TFX_CANCEL_DISPATCH or
//  TFX_SEND_DISPATCH in `effects` (the state machine's outcome), the old
//  assignment's records go: dsp:{bNN}:ID is deleted and the dspq entries of
//  `before`'s department and co-handlers are removed (orders not sent yet
//  must not go out). With TFX_SEND_DISPATCH, one dsp record and one dspq
//  entry (due now_ms) for each department of `after`, primary first, with
//  dispatch ids "ID/dept/VERSION", VERSION = before->version + 1 (the
//  version the change creates), written into ids [0..*n_ids). Other effects
//  add nothing. 0, or -1 when out of memory or more than ids_cap
//  departments.
int dispatch_manual_ops (ts_ops_t *ops, const cb_ticket_t *before, const cb_ticket_t *after,
                         uint32_t effects, int64_t now_ms,
                         char ids [][DISPATCH_ID_MAX], size_t ids_cap, size_t *n_ids);

#endif
