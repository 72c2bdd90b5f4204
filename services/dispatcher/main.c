/*  civicbus-dispatcher — takes each doorbell from the intake, loads the
    ticket, accepts it and routes it by the dispatch catalogue, and stores
    the DISPATCHED ticket with its pending dispatch records in one
    compare-and-set change (DESIGN.md, "dispatcher"). Sweeps the inbox for
    doorbells it missed. Active/standby: only the holder of the Redis lease
    `lease:dispatcher` binds its sockets and acts.

    configure -> connect Redis -> (standby: try the lease every lease/3)
              -> active: bind PULL doorbell, ROUTER adapters, PUB events;
                 sweep; loop { doorbells, sweep every CIVICBUS_SWEEP_MS,
                 renew every lease/3 } -> on a failed renewal, unbind and
                 go back to standby -> on SIGTERM release the lease, stop.

    Why a paused or partitioned old holder cannot double-dispatch: the lease
    only decides who *tries*. Before each ticket the holder checks its local
    lease deadline (lease.h: counted from before the last successful renewal
    was sent, so Redis expires the key no earlier) and renews when due. A
    process frozen past that deadline (GC-like stall, SIGSTOP, a slow disk)
    may still be in the middle of handling one ticket when it wakes up; its
    write is then a compare-and-set on the ticket version it loaded
    (ticket_store_apply). If the new holder dispatched the ticket meanwhile,
    the version moved and the old write fails with TS_CONFLICT; on reload
    the old holder sees DISPATCHED and leaves it. Both writers cannot
    succeed from one version, so each ticket gets one "dispatch" event and
    one set of dispatch records: at worst the old holder loses the race.

    Time limits (deadlines.c): every change that goes through the state
    machine carries its clock effects (ticket_effects.h) in the same
    compare-and-set, and the timer loop fires warnings, overdue events and
    escalations exactly once (timers.h).

    The ROUTER socket for the department adapters is bound with the others
    so adapters can connect to the active dispatcher, with CURVE and our
    own ZAP handler (departments.c); orders go out from dspq:{bNN}
    (delivery.c) and replies come back through the state machine
    (replies.c). docs/PROTOCOL.md is the contract.

    Without a server certificate (CIVICBUS_DISPATCHER_CERT) the dispatcher
    still accepts and routes tickets but does not open the adapter socket
    at all (logged at error on every activation) unless
    CIVICBUS_ALLOW_PLAINTEXT=true, which opens it without CURVE and trusts
    the department an adapter claims: for tests and local demos only. A
    certificate file that is set but cannot be read stops the start
    (exit 2). */

#include "civicbus/bus.h"
#include "civicbus/citydata.h"
#include "civicbus/clock.h"
#include "civicbus/codec.h"
#include "civicbus/config.h"
#include "civicbus/dispatch.h"
#include "civicbus/lease.h"
#include "civicbus/log.h"
#include "civicbus/redis.h"
#include "civicbus/service.h"
#include "civicbus/ticket_effects.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_store.h"
#include "dispatcher.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEASE_KEY            "lease:dispatcher"
#define SWEEP_PER_BUCKET     32      //  bounds one sweep to 64 x 32 tickets
#define SWEEP_MIN_AGE_MS     1000    //  younger entries still have a doorbell in flight
#define DOORBELLS_PER_TURN   16      //  then the loop sends their orders, reads the adapters, ...
#define SWEEP_PER_TURN       256     //  swept tickets handled per loop turn
#define CONFLICT_TRIES       5       //  reload-and-decide rounds per ticket
#define REFRESH_MS           3000    //  citydata version check
#define STATS_MS             30000
#define POLL_MS              100

static const cb_setting_t s_settings [] = {
    { "CIVICBUS_DISPATCHER_ID", "", CB_SETTING_STRING, 0, 0,
      "this instance's lease holder id (default hostname-pid); unique per process" },
    { "CIVICBUS_DOORBELL_BIND", "tcp://127.0.0.1:5551", CB_SETTING_ENDPOINTS, 0, 0,
      "PULL endpoint the intake rings (bound only while active)" },
    { "CIVICBUS_ADAPTER_BIND", "tcp://127.0.0.1:5552", CB_SETTING_ENDPOINTS, 0, 0,
      "ROUTER endpoint for department adapters (bound only while active)" },
    { "CIVICBUS_EVENTS_BIND", "tcp://127.0.0.1:5553", CB_SETTING_ENDPOINTS, 0, 0,
      "PUB endpoint for ticket events, topic ticket.<event> (bound only while active)" },
    { "CIVICBUS_LEASE_MS", "3000", CB_SETTING_INT, 300, 600000,
      "lease time: a standby takes over this long after the active one died" },
    { "CIVICBUS_SWEEP_MS", "2000", CB_SETTING_INT, 50, 600000,
      "how often the inbox is swept for missed doorbells" },
    { "CIVICBUS_DISPATCHER_CERT", "", CB_SETTING_STRING, 0, 0,
      "the server's secret certificate file (civicbus certs new dispatcher); shared by active and standby" },
    { "CIVICBUS_ALLOW_PLAINTEXT", "false", CB_SETTING_BOOL, 0, 0,
      "tests only: without a certificate, open the adapter socket without CURVE" },
    { "CIVICBUS_HEARTBEAT_MS", "1000", CB_SETTING_INT, 50, 60000,
      "heartbeat interval to adapters; three silent intervals mean an adapter is gone" },
    { "CIVICBUS_ACK_TIMEOUT_MS", "5000", CB_SETTING_INT, 50, 600000,
      "an order not acknowledged within this (times the backoff) is sent again" },
    { "CIVICBUS_TIMER_MS", "20", CB_SETTING_INT, 10, 60000,
      "how often due time-limit timers are claimed and fired" },
    { "CIVICBUS_TIMER_VISIBILITY_MS", "10000", CB_SETTING_INT, 500, 3600000,
      "a claimed timer whose effect was not stored (a crash) fires again after this" },
    { "CIVICBUS_TIMER_BATCH", "8", CB_SETTING_INT, 1, 1000,
      "timers claimed per bucket (of 64) per turn" },
    CB_SETTINGS_COMMON,
    { .name = NULL }
};

static const cb_service_info_t s_info = {
    "dispatcher",
    "Accepts and routes new tickets by the dispatch catalogue and records the\n"
    "pending dispatch per department. Run two for availability: the one holding\n"
    "the Redis lease acts, the other waits and takes over when it lapses.",
    NULL,
    s_settings
};

/* ---- private: sockets and the lease ---- */

static void
s_close_sockets (self_t *self)
{
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->doorbell);
    zsock_destroy (&self->adapters);
    zsock_destroy (&self->events);
    zsock_destroy (&self->zap);
    departments_forget_all (self);
}

static int
s_open_sockets (self_t *self)
{
    self->doorbell = cb_bus_pull_new (cb_config_str (self->config, "CIVICBUS_DOORBELL_BIND"));
    self->events = cb_bus_pub_new (cb_config_str (self->config, "CIVICBUS_EVENTS_BIND"));
    bool adapters_ok = true;
    if (self->protocol) {
        //  The ZAP handler first: a CURVE handshake that finds none would
        //  be let through by libzmq.
        adapters_ok = departments_zap_open (self) == 0;
        if (adapters_ok) {
            self->adapters = departments_router_new (
                self, cb_config_str (self->config, "CIVICBUS_ADAPTER_BIND"));
            adapters_ok = self->adapters != NULL;
        }
    }
    else
        cb_log (CB_LOG_ERROR, "no CIVICBUS_DISPATCHER_CERT: the adapter socket stays closed, "
                "no order reaches a department", NULL);
    if (self->doorbell && self->events && adapters_ok) {
        self->poller = zpoller_new (self->doorbell, NULL);
        if (self->poller && self->adapters)
            zpoller_add (self->poller, self->adapters);
        if (self->poller && self->zap)
            zpoller_add (self->poller, self->zap);
    }
    if (!self->poller) {
        s_close_sockets (self);
        return -1;
    }
    return 0;
}

//  Stops acting at once: no socket stays bound, so the intake's doorbells go
//  to the new holder and adapters reconnect there.
static void
s_step_down (self_t *self, const char *why)
{
    if (!self->active)
        return;
    self->active = false;
    s_close_sockets (self);
    cb_log (CB_LOG_WARN, "lost the lease: standing by", "dispatcher", self->id, "why", why, NULL);
    self->next_lease_ms = cb_clock_mono_ms () + self->lease_ms / 3;
}

//  True while this process may act. Renews when due (every lease/3, or
//  sooner when the local deadline came close because a turn ran long).
bool
dispatcher_may_act (self_t *self)
{
    if (!self->active)
        return false;
    int64_t now = cb_clock_mono_ms ();
    if (now >= self->next_lease_ms || lease_remaining_ms (self->lease) < self->lease_ms / 3) {
        int rc = lease_renew (self->lease);
        if (rc != 1) {
            s_step_down (self, rc == 0 ? "another dispatcher holds it, or it lapsed"
                                       : "redis did not answer the renewal");
            return false;
        }
        self->next_lease_ms = now + self->lease_ms / 3;
    }
    return true;
}

static void s_sweep (self_t *self, int64_t min_age_ms);

//  Standby: one try at the lease; binds and sweeps when it is ours.
static void
s_try_lease (self_t *self)
{
    int64_t now = cb_clock_mono_ms ();
    self->next_lease_ms = now + self->lease_ms / 3;
    int rc = lease_acquire (self->lease);
    if (rc < 0) {
        if (now >= self->next_redis_warn_ms) {
            cb_log (CB_LOG_WARN, "redis unreachable: cannot take the lease",
                    "redis", cb_redis_where (self->redis), "error", cb_redis_error (self->redis),
                    NULL);
            self->next_redis_warn_ms = now + 5000;
        }
        return;
    }
    if (rc == 0)
        return;
    if (s_open_sockets (self)) {
        //  Another process still has our ports (or the old us is closing
        //  them): give the lease back so a standby that can bind takes it.
        cb_log (CB_LOG_ERROR, "holding the lease but cannot bind: giving it back",
                "dispatcher", self->id, NULL);
        lease_release (self->lease);
        return;
    }
    self->active = true;
    self->next_lease_ms = now + self->lease_ms / 3;
    cb_log (CB_LOG_INFO, "active: holding the lease", "dispatcher", self->id,
            "doorbell", cb_config_str (self->config, "CIVICBUS_DOORBELL_BIND"), NULL);
    citydata_refresh (self->citydata, self->redis);
    self->next_refresh_ms = now + REFRESH_MS;
    //  Timers the old holder left due fire at once.
    self->next_timers_ms = now;
    //  Everything in the inbox may have lost its doorbell to the old holder.
    s_sweep (self, 0);
}

/* ---- private: handling one ticket ---- */

//  Tells subscribers (console, notifier) what was stored: topic
//  "ticket.<event>", an Envelope with the TicketEvent.
void
dispatcher_publish (self_t *self, const cb_ticket_t *after, const ts_event_t *events,
                    size_t n_events)
{
    for (size_t i = 0; i < n_events && self->events; i++) {
        const ts_event_t *in = &events [i];
        Civicbus__V1__Actor actor = CIVICBUS__V1__ACTOR__INIT;
        actor.kind = in->actor->kind;
        actor.id = (char *) (in->actor->id ? in->actor->id : "");
        actor.name = (char *) (in->actor->name ? in->actor->name : "");
        Civicbus__V1__TicketEvent ev = CIVICBUS__V1__TICKET_EVENT__INIT;
        ev.ticket_id = after->id;
        ev.sequence = after->event_count - (int32_t) n_events + (int32_t) i + 1;
        ev.type = (char *) in->type;
        ev.actor = &actor;
        ev.time_ms = after->updated_ms;
        ev.from_state = in->from;
        ev.to_state = in->to;
        ev.note = (char *) (in->note ? in->note : "");
        if (in->payload_json) {
            ev.payload.data = (uint8_t *) in->payload_json;
            ev.payload.len = strlen (in->payload_json);
        }
        char topic [64];
        snprintf (topic, sizeof topic, "ticket.%s", in->type);
        zframe_t *frame = zframe_new (topic, strlen (topic));
        if (frame && cb_bus_send (self->events, frame, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_TICKET_EVENT,
                                  after->id, &ev.base))
            cb_log (CB_LOG_DEBUG, "event not published", "ticket", after->id, NULL);
        zframe_destroy (&frame);
    }
}

//  The clock effects of a plan (ticket_effects.h): routed, the accept clock
//  ends and the sign clock starts; accepted with no owner, the accept clock
//  ends; held for the operators, the accept clock starts (from reception).
static int
s_plan_clocks (self_t *self, const cb_ticket_t *before, dispatch_plan_t *plan, int64_t now_ms)
{
    uint32_t effects = plan->verdict == DISPATCH_ROUTED ? TFX_STOP_TIMERS | TFX_START_SIGN
                     : plan->verdict == DISPATCH_NO_OWNER ? TFX_STOP_TIMERS
                     : plan->verdict == DISPATCH_HOLD ? TICKET_EFFECTS_START_ACCEPT : 0;
    if (!effects || !plan->after || !plan->ops)
        return 0;
    return deadlines_apply_effects (self, before, plan->after, effects, now_ms, plan->ops);
}

//  A RECEIVED ticket the intake sent for review (review_required) is
//  skipped by dispatch_plan, but it waits in the operators' queue, so its
//  accept clock runs: stored once, with the inbox entry's removal, as a
//  change without a history event. 0 (done or nothing to do), or -1 when
//  it could not be stored (the caller leaves the inbox entry).
static int
s_review_clock (self_t *self, const cb_ticket_t *before, int64_t now_ms)
{
    if (before->state != CIVICBUS__V1__TICKET_STATE__RECEIVED || !before->review_required
    ||  ticket_effects_deadline (before, CIVICBUS__V1__STAGE__STAGE_ACCEPT))
        return 0;
    citydata_snapshot_t *snap = citydata_acquire (self->citydata);
    bool timed = snap->policies != NULL;
    citydata_release (self->citydata, &snap);
    if (!timed)
        return 0;
    cb_ticket_t *after = ticket_clone (before);
    ts_ops_t *ops = ts_ops_new ();
    char inbox_key [32];
    ts_bucket_key (inbox_key, sizeof inbox_key, "inbox", ticket_id_bucket (before->id));
    int rc = after && ops && ts_ops_zrem (ops, inbox_key, before->id) == 0
          && deadlines_apply_effects (self, before, after, TICKET_EFFECTS_START_ACCEPT, now_ms,
                                      ops) == 0 ? TS_OK : TS_ERROR;
    if (rc == TS_OK)
        rc = ticket_store_apply (self->store, before, after, NULL, 0, ops);
    ts_ops_destroy (&ops);
    if (after)
        civicbus__v1__ticket__free_unpacked (after, NULL);
    //  A conflict means someone acted on it meanwhile: the skip stands.
    return rc == TS_OK || rc == TS_CONFLICT || rc == TS_NOT_FOUND ? 0 : -1;
}

static void
s_inbox_remove (self_t *self, const char *inbox_key, const char *id)
{
    redisReply *reply = cb_redis_command (self->redis, "ZREM %s %s", inbox_key, id);
    if (reply)
        freeReplyObject (reply);
}

//  A plan's change is stored: counted, announced, its orders sent soon.
//  One line per dispatch is debug (a line per ticket costs real CPU at
//  campaign rates; the console and /metrics show them); a ticket left to
//  the operators is info: somebody must act.
static void
s_plan_stored (self_t *self, const char *id, const dispatch_plan_t *plan)
{
    if (plan->verdict == DISPATCH_ROUTED) {
        self->stats.dispatched++;
        delivery_dispatched (self, id);
        cb_log (CB_LOG_DEBUG, "dispatched", "ticket", id,
                "department", plan->route.department, "policy", plan->route.policy, NULL);
    }
    else {
        self->stats.review++;
        cb_log (CB_LOG_INFO, "waits for an operator", "ticket", id,
                "state", ticket_state_name (plan->after->state), "why", plan->reason, NULL);
    }
    dispatcher_publish (self, plan->after, plan->events, plan->n_events);
}

//  Decides and stores ticket `id` (a ticket id); reloads and decides again
//  when someone else changed it in between. With `loaded`, the first try
//  uses what a batch already loaded: `before` (owned from here on, NULL
//  unless `load_rc` is TS_OK) and `load_rc`, ticket_store_load's answer.
//  Leaves the inbox entry when Redis fails, so a later sweep retries.
static void
s_handle_one (self_t *self, const char *id, bool loaded, cb_ticket_t *before, int load_rc)
{
    char inbox_key [32];
    ts_bucket_key (inbox_key, sizeof inbox_key, "inbox", ticket_id_bucket (id));

    for (int attempt = 0; attempt < CONFLICT_TRIES; attempt++) {
        bool preloaded = attempt == 0 && loaded;
        if (!dispatcher_may_act (self)) {
            if (preloaded && before)
                civicbus__v1__ticket__free_unpacked (before, NULL);
            return;
        }
        int rc = load_rc;
        if (!preloaded) {
            before = NULL;
            rc = ticket_store_load (self->store, id, &before);
        }
        if (rc == TS_NOT_FOUND) {
            cb_log (CB_LOG_WARN, "no such ticket: doorbell and inbox entry dropped", "ticket", id, NULL);
            s_inbox_remove (self, inbox_key, id);
            return;
        }
        if (rc == TS_ERROR) {
            //  Stored bytes that do not decode: retrying cannot help, and a
            //  sweep would find it forever. An operator must look (logged).
            cb_log (CB_LOG_ERROR, "ticket does not load: removed from the inbox", "ticket", id, NULL);
            s_inbox_remove (self, inbox_key, id);
            return;
        }
        if (rc != TS_OK) {
            self->stats.unavailable++;
            return;
        }
        citydata_snapshot_t *snap = citydata_acquire (self->citydata);
        dispatch_plan_t plan;
        int64_t now_ms = cb_clock_now_ms ();
        rc = dispatch_plan (&plan, before, snap->catalog, snap->grids, &self->actor, now_ms);
        citydata_release (self->citydata, &snap);
        if (rc == 0 && s_plan_clocks (self, before, &plan, now_ms)) {
            dispatch_plan_reset (&plan);
            rc = -1;
        }
        if (rc) {
            cb_log (CB_LOG_ERROR, "could not plan the dispatch (left in the inbox)",
                    "ticket", id, NULL);
            civicbus__v1__ticket__free_unpacked (before, NULL);
            return;
        }
        if (plan.verdict == DISPATCH_SKIP && s_review_clock (self, before, now_ms)) {
            //  The accept clock could not be armed now: the inbox entry stays
            //  and a later sweep tries again.
            dispatch_plan_reset (&plan);
            civicbus__v1__ticket__free_unpacked (before, NULL);
            return;
        }
        if (plan.verdict == DISPATCH_SKIP) {
            self->stats.skipped++;
            cb_log (CB_LOG_DEBUG, "nothing to do", "ticket", id, "why", plan.reason, NULL);
            s_inbox_remove (self, inbox_key, id);
            dispatch_plan_reset (&plan);
            civicbus__v1__ticket__free_unpacked (before, NULL);
            return;
        }
        if (!dispatcher_may_act (self)) {
            dispatch_plan_reset (&plan);
            civicbus__v1__ticket__free_unpacked (before, NULL);
            return;
        }
        rc = ticket_store_apply (self->store, before, plan.after, plan.events, plan.n_events,
                                 plan.ops);
        if (rc == TS_OK)
            s_plan_stored (self, id, &plan);
        else
        if (rc == TS_CONFLICT)
            self->stats.conflicts++;
        else
        if (rc == TS_NOT_FOUND)
            s_inbox_remove (self, inbox_key, id);
        else
            self->stats.unavailable++;
        dispatch_plan_reset (&plan);
        civicbus__v1__ticket__free_unpacked (before, NULL);
        if (rc != TS_CONFLICT)
            return;
    }
    cb_log (CB_LOG_WARN, "ticket keeps changing under the dispatcher: left for the sweep",
            "ticket", id, NULL);
}

//  Loads, decides, stores (s_handle_one).
void
dispatcher_handle_ticket (self_t *self, const char *id)
{
    if (ticket_id_bucket (id) < 0) {
        cb_log (CB_LOG_WARN, "doorbell for something that is not a ticket id", "id", id, NULL);
        return;
    }
    self->stats.handled++;
    s_handle_one (self, id, false, NULL, TS_OK);
}

//  One ticket of a routing batch.
typedef struct {
    size_t change;                      //  its change + 1 in the batch, 0: none
    bool alone;                         //  settled by s_handle_one afterwards
    bool reload;                        //  ... which loads it again (a conflict)
    dispatch_plan_t plan;
} s_routed_t;

//  Handles many tickets with two round trips in all: loaded in one
//  pipeline (ticket_store_load_many), planned, and every change stored in
//  one pipeline (ticket_store_apply_many; each is still its own
//  compare-and-set). What the batch does not settle goes through
//  s_handle_one one at a time: a ticket that did not load or whose plan
//  failed or has nothing to store (SKIP: the inbox entry, the review
//  clock), with what the batch loaded; a version conflict, loaded again.
//  An id given twice is handled once.
static void
s_handle_batch (self_t *self, const char *const *ids, size_t n)
{
    if (n == 0 || !dispatcher_may_act (self))
        return;
    s_routed_t *items = calloc (n, sizeof *items);
    ts_change_t *changes = calloc (n, sizeof *changes);
    cb_ticket_t **tickets = calloc (n, sizeof *tickets);
    int *loaded = calloc (n, sizeof *loaded);
    if (!items || !changes || !tickets || !loaded) {
        free (items); free (changes); free (tickets); free (loaded);
        for (size_t i = 0; i < n; i++)
            dispatcher_handle_ticket (self, ids [i]);
        return;
    }
    ticket_store_load_many (self->store, ids, n, tickets, loaded);
    citydata_snapshot_t *snap = citydata_acquire (self->citydata);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        s_routed_t *item = &items [i];
        bool repeated = false;
        for (size_t j = 0; j < i && !repeated; j++)
            repeated = strcmp (ids [j], ids [i]) == 0;
        if (repeated || loaded [i] != TS_OK) {
            item->alone = !repeated;
            self->stats.handled += !repeated;
            continue;
        }
        int64_t now_ms = cb_clock_now_ms ();
        int rc = dispatch_plan (&item->plan, tickets [i], snap->catalog, snap->grids,
                                &self->actor, now_ms);
        if (rc == 0 && s_plan_clocks (self, tickets [i], &item->plan, now_ms))
            rc = -1;
        self->stats.handled++;
        if (rc || item->plan.verdict == DISPATCH_SKIP) {
            dispatch_plan_reset (&item->plan);
            item->alone = true;
            continue;
        }
        changes [count] = (ts_change_t) { tickets [i], item->plan.after, item->plan.events,
                                          item->plan.n_events, item->plan.ops, TS_ERROR };
        item->change = ++count;
    }
    citydata_release (self->citydata, &snap);
    if (count && (!dispatcher_may_act (self)
              ||  ticket_store_apply_many (self->store, changes, count) == TS_ERROR))
        for (size_t k = 0; k < count; k++)
            changes [k].result = TS_ERROR;
    for (size_t i = 0; i < n; i++) {
        s_routed_t *item = &items [i];
        if (item->change) {
            int rc = changes [item->change - 1].result;
            if (rc == TS_OK)
                s_plan_stored (self, ids [i], &item->plan);
            else
            if (rc == TS_CONFLICT) {
                self->stats.conflicts++;
                item->alone = item->reload = true;
            }
            else
            if (rc == TS_NOT_FOUND)
                s_inbox_remove (self, item->plan.inbox_key, ids [i]);
            else
                self->stats.unavailable++;  //  left in the inbox: a sweep retries
            dispatch_plan_reset (&item->plan);
        }
        if (tickets [i] && !(item->alone && !item->reload))
            civicbus__v1__ticket__free_unpacked (tickets [i], NULL);
    }
    for (size_t i = 0; i < n; i++)
        if (items [i].alone)
            s_handle_one (self, ids [i], !items [i].reload,
                          items [i].reload ? NULL : tickets [i], loaded [i]);
    free (items); free (changes); free (tickets); free (loaded);
}

/* ---- private: doorbells and sweeps ---- */

static void
s_take_doorbells (self_t *self)
{
    char ids [DOORBELLS_PER_TURN][CB_TICKET_ID_MAX];
    const char *batch [DOORBELLS_PER_TURN];
    size_t n = 0;
    for (int taken = 0; taken < DOORBELLS_PER_TURN && self->active
                        && (zsock_events (self->doorbell) & ZMQ_POLLIN); taken++) {
        cb_error_t err;
        Civicbus__V1__Envelope *env = cb_bus_recv (self->doorbell, NULL, &err);
        if (!env) {
            cb_log (CB_LOG_WARN, "bad doorbell frame dropped", "error", err.message, NULL);
            continue;
        }
        Civicbus__V1__Doorbell *bell = envelope_payload_unpack (
            env, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DOORBELL, &err);
        if (bell) {
            self->stats.doorbells++;
            if (ticket_id_bucket (bell->ticket_id) >= 0
            &&  strlen (bell->ticket_id) < CB_TICKET_ID_MAX) {
                memcpy (ids [n], bell->ticket_id, strlen (bell->ticket_id) + 1);
                batch [n] = ids [n];
                n++;
            }
            else
                dispatcher_handle_ticket (self, bell->ticket_id);   //  logs what it is
            protobuf_c_message_free_unpacked (&bell->base, NULL);
        }
        else
            cb_log (CB_LOG_WARN, "doorbell payload dropped", "error", err.message, NULL);
        protobuf_c_message_free_unpacked (&env->base, NULL);
    }
    s_handle_batch (self, batch, n);
}

//  Inbox entries older than min_age_ms, at most SWEEP_PER_BUCKET per bucket,
//  read with one pipelined round trip for all 64 buckets (ZRANGEBYSCORE is
//  O(log N + M) per bucket), then handled one by one. When a bucket had
//  more, the next sweep comes at once instead of after CIVICBUS_SWEEP_MS.
static void
s_sweep (self_t *self, int64_t min_age_ms)
{
    int64_t cutoff = cb_clock_now_ms () - min_age_ms;
    self->next_sweep_ms = cb_clock_mono_ms () + self->sweep_ms;
    char key [32];
    int appended = 0;
    for (int b = 0; b < CB_BUCKETS; b++) {
        ts_bucket_key (key, sizeof key, "inbox", b);
        if (cb_redis_append (self->redis, "ZRANGEBYSCORE %s -inf %lld LIMIT 0 %d",
                             key, (long long) cutoff, SWEEP_PER_BUCKET))
            break;
        appended++;
    }
    zlist_t *ids = zlist_new ();
    if (!ids)
        return;
    zlist_autofree (ids);
    bool more = false;
    for (int b = 0; b < appended; b++) {
        redisReply *reply = cb_redis_get_reply (self->redis);
        if (!reply)
            break;          //  the connection dropped: the rest are lost
        if (reply->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i < reply->elements; i++)
                if (reply->element [i]->type == REDIS_REPLY_STRING)
                    zlist_append (ids, reply->element [i]->str);
            more |= reply->elements >= SWEEP_PER_BUCKET;
        }
        freeReplyObject (reply);
    }
    //  When Redis went away mid-way, what was read is handled and the next
    //  sweep finds the rest.
    size_t found = zlist_size (ids);
    if (found) {
        char count [24];
        snprintf (count, sizeof count, "%zu", found);
        cb_log (CB_LOG_INFO, "sweep found tickets whose doorbell was missed",
                "count", count, NULL);
    }
    //  At most SWEEP_PER_TURN per loop turn, like the doorbells: a big
    //  backlog (a takeover, a long outage) must not keep the adapters'
    //  ACKs and heartbeats waiting; the rest come with the next turn.
    const char *batch [SWEEP_PER_TURN];
    size_t taken = 0;
    for (char *id = zlist_first (ids); id; id = zlist_next (ids)) {
        if (taken == SWEEP_PER_TURN) {
            more = true;
            break;
        }
        self->stats.swept++;
        batch [taken++] = id;
    }
    if (self->active)
        s_handle_batch (self, batch, taken);
    zlist_destroy (&ids);
    if (more)
        self->next_sweep_ms = cb_clock_mono_ms ();
}

static void
s_log_stats (self_t *self)
{
    stats_t *s = &self->stats;
    cb_logf (CB_LOG_INFO, "stats: active=%d doorbells=%llu handled=%llu dispatched=%llu "
             "review=%llu skipped=%llu conflicts=%llu swept=%llu unavailable=%llu "
             "orders_sent=%llu orders_acked=%llu replies=%llu replies_refused=%llu "
             "timers_fired=%llu timers_discarded=%llu timers_late_max_ms=%lld",
             self->active, (unsigned long long) s->doorbells, (unsigned long long) s->handled,
             (unsigned long long) s->dispatched, (unsigned long long) s->review,
             (unsigned long long) s->skipped, (unsigned long long) s->conflicts,
             (unsigned long long) s->swept, (unsigned long long) s->unavailable,
             (unsigned long long) s->orders_sent, (unsigned long long) s->orders_acked,
             (unsigned long long) s->replies, (unsigned long long) s->replies_refused,
             (unsigned long long) s->timers_fired, (unsigned long long) s->timers_dropped,
             (long long) s->timers_late_max_ms);
    //  The same numbers for dashboards, kept two stats periods.
    char key [192];
    snprintf (key, sizeof key, "stats:dispatcher:%s", self->id);
    if (cb_redis_append (self->redis, "HSET %s active %d handled %llu dispatched %llu "
                         "review %llu conflicts %llu skipped %llu updated_ms %lld", key,
                         self->active, (unsigned long long) s->handled,
                         (unsigned long long) s->dispatched, (unsigned long long) s->review,
                         (unsigned long long) s->conflicts, (unsigned long long) s->skipped,
                         (long long) cb_clock_now_ms ()) == 0
    &&  cb_redis_append (self->redis, "PEXPIRE %s %d", key, 2 * STATS_MS) == 0) {
        for (int i = 0; i < 2; i++) {
            redisReply *reply = cb_redis_get_reply (self->redis);
            if (!reply)
                break;
            freeReplyObject (reply);
        }
    }
}

/* ---- private: life ---- */

static int
s_connect_redis (self_t *self)
{
    while (!cb_service_stopping ()) {
        if (cb_redis_connect_retry (self->redis, 2000) == 0)
            return 0;
        cb_log (CB_LOG_WARN, "waiting for redis", "redis", cb_redis_where (self->redis),
                "error", cb_redis_error (self->redis), NULL);
    }
    return -1;
}

static void
s_run (self_t *self)
{
    while (!cb_service_stopping ()) {
        int64_t now = cb_clock_mono_ms ();
        if (now >= self->next_stats_ms) {
            s_log_stats (self);
            self->next_stats_ms = now + STATS_MS;
        }
        if (!self->active) {
            if (now >= self->next_lease_ms)
                s_try_lease (self);
            if (!self->active) {
                int64_t wait = self->next_lease_ms - cb_clock_mono_ms ();
                zclock_sleep ((int) (wait < 0 ? 0 : wait > 50 ? 50 : wait));
            }
            continue;
        }
        if (!dispatcher_may_act (self))
            continue;
        if (now >= self->next_refresh_ms) {
            citydata_refresh (self->citydata, self->redis);
            self->next_refresh_ms = now + REFRESH_MS;
        }
        int64_t until_sweep = self->next_sweep_ms - now;
        if (self->next_timers_ms - now < until_sweep)
            until_sweep = self->next_timers_ms - now;
        //  Orders a sweep or a timer routed after this turn's delivery go
        //  out at once, not after the next poll (delivery_dispatched).
        if (self->adapters && self->next_send_ms - now < until_sweep)
            until_sweep = self->next_send_ms - now;
        int timeout = until_sweep < 0 ? 0 : until_sweep > POLL_MS ? POLL_MS : (int) until_sweep;
        //  Every socket that has input gets its turn (zpoller names only
        //  the first): a doorbell backlog must not starve the adapters'
        //  ACKs and heartbeats (s_take_doorbells takes a bounded batch).
        zpoller_wait (self->poller, timeout);
        if (self->doorbell && (zsock_events (self->doorbell) & ZMQ_POLLIN))
            s_take_doorbells (self);
        if (self->active && self->zap && (zsock_events (self->zap) & ZMQ_POLLIN))
            departments_take_zap (self);
        if (self->active && self->adapters && (zsock_events (self->adapters) & ZMQ_POLLIN))
            departments_take_messages (self);
        if (self->active && self->adapters) {
            departments_tick (self);
            if (self->active && cb_clock_mono_ms () >= self->next_send_ms)
                delivery_send_due (self);
        }
        if (self->active && cb_clock_mono_ms () >= self->next_sweep_ms)
            s_sweep (self, SWEEP_MIN_AGE_MS);
        if (self->active && cb_clock_mono_ms () >= self->next_timers_ms)
            deadlines_tick (self);
    }
}

int
main (int argc, char **argv)
{
    cb_config_t *config = NULL;
    int rc = cb_service_start (&s_info, argc, argv, &config);
    if (rc)
        return rc < 0 ? 2 : 0;

    self_t self_storage = { 0 };
    self_t *self = &self_storage;
    self->config = config;
    self->lease_ms = (int) cb_config_int (config, "CIVICBUS_LEASE_MS");
    self->sweep_ms = (int) cb_config_int (config, "CIVICBUS_SWEEP_MS");
    self->heartbeat_ms = (int) cb_config_int (config, "CIVICBUS_HEARTBEAT_MS");
    self->ack_timeout_ms = (int) cb_config_int (config, "CIVICBUS_ACK_TIMEOUT_MS");
    self->timer_ms = (int) cb_config_int (config, "CIVICBUS_TIMER_MS");
    self->timer_visibility_ms = (int) cb_config_int (config, "CIVICBUS_TIMER_VISIBILITY_MS");
    self->timer_batch = (int) cb_config_int (config, "CIVICBUS_TIMER_BATCH");
    const char *cert = cb_config_str (config, "CIVICBUS_DISPATCHER_CERT");
    if (cert && *cert) {
        self->cert = zcert_load (cert);
        if (!self->cert || strcmp (zcert_secret_txt (self->cert),
                                   "0000000000000000000000000000000000000000") == 0) {
            fprintf (stderr, "civicbus-dispatcher: bad configuration: CIVICBUS_DISPATCHER_CERT: "
                     "%s is not a readable secret certificate (the .cert_secret file of "
                     "'civicbus certs new dispatcher')\n", cert);
            zcert_destroy (&self->cert);
            cb_config_destroy (&config);
            return 2;
        }
        self->protocol = true;
    }
    else
    if (cb_config_bool (config, "CIVICBUS_ALLOW_PLAINTEXT")) {
        self->plaintext = true;
        self->protocol = true;
    }
    const char *id = cb_config_str (config, "CIVICBUS_DISPATCHER_ID");
    if (id && *id)
        snprintf (self->id, sizeof self->id, "%s", id);
    else {
        char host [64] = "localhost";
        gethostname (host, sizeof host - 1);
        snprintf (self->id, sizeof self->id, "%s-%d", host, (int) getpid ());
    }
    self->next_stats_ms = cb_clock_mono_ms () + STATS_MS;
    self->actor = (ticket_actor_t) { CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM, self->id,
                                     "dispatcher" };

    char err [256];
    self->redis = cb_redis_new (cb_config_str (config, "CIVICBUS_REDIS_URL"),
                                (int) cb_config_int (config, "CIVICBUS_REDIS_TIMEOUT_MS"),
                                err, sizeof err);
    if (!self->redis) {
        fprintf (stderr, "civicbus-dispatcher: bad configuration: CIVICBUS_REDIS_URL: %s\n", err);
        cb_config_destroy (&config);
        return 2;
    }
    self->store = ticket_store_new (self->redis);
    self->citydata = citydata_new ();
    self->lease = lease_new (self->redis, LEASE_KEY, self->id, self->lease_ms);
    rc = 0;
    if (!self->store || !self->citydata || !self->lease || departments_new (self)) {
        cb_log (CB_LOG_ERROR, "out of memory at start", NULL);
        rc = 1;
    }
    if (rc == 0 && s_connect_redis (self) == 0) {
        citydata_refresh (self->citydata, self->redis);
        cb_log (CB_LOG_INFO, "ready", "dispatcher", self->id, "redis", cb_redis_where (self->redis),
                "adapters", self->cert ? "curve" : self->plaintext ? "plaintext" : "off", NULL);
        s_run (self);
    }

    //  Stop: give the lease back at once so a standby need not wait for it
    //  to lapse (compare-and-delete: never someone else's).
    if (self->active) {
        lease_release (self->lease);
        self->active = false;
        cb_log (CB_LOG_INFO, "released the lease", "dispatcher", self->id, NULL);
    }
    s_close_sockets (self);
    s_log_stats (self);
    departments_destroy (self);
    zcert_destroy (&self->cert);
    lease_destroy (&self->lease);
    citydata_destroy (&self->citydata);
    ticket_store_destroy (&self->store);
    cb_redis_destroy (&self->redis);
    cb_log (CB_LOG_INFO, "stopped", NULL);
    cb_config_destroy (&config);
    zsys_shutdown ();
    return rc;
}
