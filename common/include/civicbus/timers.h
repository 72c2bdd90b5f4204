/*  timers.h — time-limit timers in Redis: armed with the ticket change that
    sets a deadline, claimed atomically when due, completed with the change
    that carries out their effect.

    Keys (per bucket, the ticket's hash tag, so every script is one slot):
        tmr:{bNN}    zset  member -> due ms      armed timers
        tmrf:{bNN}   zset  member -> ms          claimed, in flight until then
    A member is "TICKETID|STAGE|KIND|GEN":
        STAGE   accept, sign, resolve, verify
        KIND    warn (the light turns yellow), due (red, overdue),
                escalate-N (the escalation step that brings the ticket to
                level N, sla.h)
        GEN     the deadline's due_ms when the timer was armed (the
                generation): a deadline that moves (extension, suspension,
                restart of the stage) gets new members, and a timer of the
                old generation is recognisably stale.

    Which timers a ticket has is a pure function of the stored ticket
    (timers_for_ticket: its running deadlines, policy and urgency), so the
    members to remove when a deadline changes are computed from the ticket
    as it was before the change, with no extra set to maintain: every
    possible member of a running deadline that moved or ended (warn, due,
    escalate-1..4 with its GEN) is removed. Because the change is
    stored with compare-and-set on the version, "the ticket before" is
    exactly what Redis holds, and tmr always equals the timers of the stored
    ticket minus those already fired. Cost: a change that moves deadlines
    adds at most 6 ZREM pairs per running deadline and 6 ZADDs, each
    O(log N); a change that does not move them adds nothing.

    Exactly once. "Fires once" means "its effect is stored once":
     1. Claiming is one script per bucket: due members move from tmr to tmrf
        (scored now + visibility) and are returned, atomically, so two
        claimers (two threads, or the active and a standby dispatcher after a
        failover) never both receive one member from tmr.
     2. The handler loads the ticket and asks timers_verdict(): APPLY only if
        the ticket is open, its deadline for the stage is running with
        due_ms == GEN, and the effect is not yet on the ticket (warn: light
        still green; due: light not red; escalate-N: escalation_level < N).
     3. It stores the effect with ticket_store_apply (compare-and-set on the
        version) and timers_complete_ops() in the same change, which removes
        the member from tmrf and tmr. Effect and completion commit together
        or not at all.
     4. A claimer that dies between 1 and 3 leaves the member in tmrf; after
        the visibility timeout timers_requeue_expired() puts it back in tmr
        (ZADD NX, due now) and another claimer gets it. If the first claimer
        was only slow and does commit, the member is claimed a second time,
        but the second handler finds the effect already on the ticket (2:
        DONE) or the version moved (3: TS_CONFLICT, reload, DONE) and only
        discards it: the effect is still stored once.
     5. Stale or done timers are dropped with timers_discard().
    So no timer is lost (a member leaves tmr/tmrf only by completion with its
    effect, by discard after a verdict, or by a change that removes the
    deadline) and no effect is stored twice (the verdict reads the stored
    ticket and the CAS rejects a decision made on an older one).

    Claims and requeues are pipelined across all CB_BUCKETS buckets: one
    round trip per sweep. */

#ifndef CIVICBUS_TIMERS_H
#define CIVICBUS_TIMERS_H

#include <stddef.h>
#include <stdint.h>
#include "civicbus/redis.h"
#include "civicbus/sla.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_store.h"
#include "civicbus/workcal.h"

//  Timers of one deadline: warn, due and up to SLA_MAX_STEPS escalations.
#define TIMERS_PER_DEADLINE (2 + SLA_MAX_STEPS)
//  Longest member text, with its NUL.
#define TIMER_MEMBER_MAX (CB_TICKET_ID_MAX + 64)
//  Most members one claim or requeue script moves per bucket.
#define TIMERS_BATCH_MAX 1000

typedef enum {
    TIMER_WARN = 0,
    TIMER_DUE = 1,
    TIMER_ESCALATE = 2,
} timer_kind_t;

typedef struct {
    char ticket_id [CB_TICKET_ID_MAX];
    Civicbus__V1__Stage stage;
    timer_kind_t kind;
    int level;                   //  TIMER_ESCALATE: 1..4; else 0
    int64_t generation;          //  the deadline's due_ms when armed
    int64_t at_ms;               //  when it is due (the tmr score)
} cb_timer_t;

//  What a handler should do with a claimed timer (timers_verdict).
typedef enum {
    TIMER_APPLY = 0,             //  carry out the effect, then complete in the same change
    TIMER_DONE = 1,              //  the effect is already on the ticket: discard
    TIMER_STALE = 2,             //  the deadline moved or ended, or the ticket is final: discard
} timer_verdict_t;

//  "320105-20260930-000000065|sign|escalate-2|1791446400000" into buf.
//  0, or -1 when it does not fit or the timer is malformed.
int timer_member (const cb_timer_t *timer, char *buf, size_t cap);
//  The inverse; at_ms is set to 0. 0, or -1 for text that is not a member.
int timer_parse (const char *member, cb_timer_t *timer);

//  The timers the ticket should have armed: for each running deadline (sla.h)
//  of an open ticket, warn (when warn_ms < due_ms), due, and one escalate-N
//  per escalation step of its policy, stage and urgency. Writes at most
//  `cap` into out and returns how many there are (may exceed cap).
size_t timers_for_ticket (const cb_ticket_t *ticket, const sla_policies_t *policies,
                          const workcal_t *cal, cb_timer_t *out, size_t cap);

//  Adds to `ops` the timer writes of a change from `before` (the stored
//  ticket; NULL for a new one) to `after`: for each running deadline of
//  `before` that `after` does not keep unchanged (same stage and due_ms),
//  removes from tmr and tmrf every member it may have armed (warn, due,
//  escalate-1..4 of its generation); adds `after`'s timers that `before` did
//  not have. A deadline kept unchanged keeps its timers as armed (some may
//  have fired; a policy reloaded since applies to deadlines armed after it).
//  A change that moves no deadline adds no op. Commit `ops` with
//  ticket_store_apply (before, after, ..., ops). 0, or -1 out of memory or
//  for an `after` without a ticket id.
int timers_schedule_ops (ts_ops_t *ops, const cb_ticket_t *before, const cb_ticket_t *after,
                         const sla_policies_t *policies, const workcal_t *cal);

//  Adds the removal of every timer `before`'s running deadlines may have
//  (for a change that stops or pauses all clocks). 0 or -1.
int timers_cancel_ops (ts_ops_t *ops, const cb_ticket_t *before);

//  Adds the completion of a claimed timer to the change that stores its
//  effect: ZREM from tmrf and tmr of its bucket. 0 or -1.
int timers_complete_ops (ts_ops_t *ops, const cb_timer_t *timer);

//  Should this claimed timer act on this (freshly loaded) ticket? See the
//  header comment, step 2. `ticket` may be NULL (deleted): STALE.
timer_verdict_t timers_verdict (const cb_ticket_t *ticket, const cb_timer_t *timer);

//  Claims up to `max` (1..TIMERS_BATCH_MAX) timers of `bucket` due at
//  `now_ms` (score <= now), oldest first, moving them to tmrf until
//  now_ms + visibility_ms. Fills out [0 .. *count-1] (at_ms = the original
//  due time). 0, or -1 when Redis failed (nothing was claimed, or, if the
//  reply was lost, the claimed ones come back through requeue). Members
//  that do not parse are dropped from tmrf and logged.
int timers_claim (cb_redis_t *redis, int bucket, int64_t now_ms, int64_t visibility_ms,
                  int max, cb_timer_t *out, size_t *count);

//  The same for every bucket: one pipelined round trip of plain reads finds
//  the buckets with anything due, a second runs the claim script in those
//  only (an idle tick runs no script); up to `max_per_bucket` from each. *timers is a malloc'd array (free() it; NULL
//  when *count is 0). 0 or -1 (then *timers is NULL and *count 0; what the
//  buckets that answered had claimed comes back through requeue).
int timers_claim_all (cb_redis_t *redis, int64_t now_ms, int64_t visibility_ms,
                      int max_per_bucket, cb_timer_t **timers, size_t *count);

//  Moves in-flight timers whose visibility ended (tmrf score <= now_ms) back
//  to tmr, due at now_ms (ZADD NX: an armed copy keeps its score), up to
//  TIMERS_BATCH_MAX per bucket per call, all buckets pipelined. Sets *moved
//  (may be NULL). 0 or -1.
int timers_requeue_expired (cb_redis_t *redis, int64_t now_ms, size_t *moved);

//  Drops a claimed timer that is STALE or DONE (ZREM from tmrf and tmr). 0 or -1.
int timers_discard (cb_redis_t *redis, const cb_timer_t *timer);

//  Armed and in-flight timers over all buckets (pipelined ZCARDs). 0 or -1.
int timers_count (cb_redis_t *redis, size_t *armed, size_t *in_flight);

#endif
