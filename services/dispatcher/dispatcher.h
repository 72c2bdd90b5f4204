/*  dispatcher.h — the dispatcher's state and the parts in its other files:
    main.c (life, lease, doorbells, sweeps), departments.c (CURVE and the
    ZAP handler, live adapters, the ROUTER's messages), delivery.c (orders
    from dspq:{bNN} to adapters, their ACKs), replies.c (department replies
    through the state machine), deadlines.c (time-limit timers: warning,
    overdue, escalation). One thread: everything runs in main's loop. */

#ifndef CIVICBUS_DISPATCHER_H
#define CIVICBUS_DISPATCHER_H

#include "civicbus/citydata.h"
#include "civicbus/config.h"
#include "civicbus/dispatch.h"
#include "civicbus/lease.h"
#include "civicbus/redis.h"
#include "civicbus/ticket_store.h"

#include <czmq.h>

typedef struct {
    uint64_t doorbells;      //  doorbells received
    uint64_t handled;        //  tickets looked at (doorbell or sweep)
    uint64_t dispatched;     //  stored as DISPATCHED
    uint64_t review;         //  stored for the operators (hold or no owner)
    uint64_t skipped;        //  redeliveries of handled tickets
    uint64_t conflicts;      //  compare-and-set lost: reloaded
    uint64_t swept;          //  tickets found by sweeps
    uint64_t unavailable;    //  left in the inbox because Redis failed
    uint64_t orders_sent;    //  DispatchOrders sent to adapters
    uint64_t orders_acked;   //  ... acknowledged
    uint64_t replies;        //  department replies stored
    uint64_t replies_refused;//  ... refused by the state machine
    uint64_t timers_fired;   //  timer effects stored (warning, overdue, escalation)
    uint64_t timers_dropped; //  claimed timers discarded (stale, done)
    int64_t timers_late_max_ms; //  worst firing lateness seen (now - due) since start
} stats_t;

//  A live adapter: said HELLO on this connection and is not silent.
typedef struct {
    char routing [64];           //  hex of the ROUTER routing id (the hash key)
    zframe_t *identity;          //  the routing id frame
    char department [64];        //  from the ZAP User-Id (or HELLO in plaintext mode)
    char key [41];               //  its public key, Z85 ("" in plaintext mode)
    char adapter_id [128];
    int capacity;
    int in_flight;               //  orders sent, not yet answered
    int64_t last_seen_ms;        //  mono
} adapter_t;

//  An order sent and not yet answered (in memory only: after a takeover
//  the dspq scores say what to resend).
//  How often an order was sent, and to whom last (for "another adapter").
typedef struct {
    int count;
    char last_routing [64];
} attempts_t;

typedef struct {
    char member [DISPATCH_ID_MAX];       //  "ID|dept", the hash key
    char dispatch_id [DISPATCH_ID_MAX];
    char routing [64];                   //  the adapter it went to
    int attempt;
} flight_t;

//  delivery.c's own state (turns, answers waiting to be recorded).
typedef struct _delivery_t delivery_t;

typedef struct {
    const cb_config_t *config;
    char id [128];
    int lease_ms;
    int sweep_ms;
    int heartbeat_ms;
    int ack_timeout_ms;
    int timer_ms;                //  timer loop period
    int timer_visibility_ms;     //  a claimed timer not completed returns after this
    int timer_batch;             //  timers claimed per bucket per turn
    cb_redis_t *redis;
    ticket_store_t *store;
    citydata_t *citydata;
    lease_t *lease;
    ticket_actor_t actor;
    zcert_t *cert;               //  server certificate; NULL in plaintext mode
    bool plaintext;              //  CIVICBUS_ALLOW_PLAINTEXT without a certificate
    bool protocol;               //  false: no certificate and no plaintext: no ROUTER
    //  sockets exist only while active
    zsock_t *doorbell;
    zsock_t *adapters;
    zsock_t *events;
    zsock_t *zap;
    zpoller_t *poller;
    bool active;
    int64_t next_lease_ms;       //  mono: next acquire try (standby) or renewal (active)
    int64_t next_sweep_ms;
    int64_t next_refresh_ms;
    int64_t next_stats_ms;
    int64_t next_redis_warn_ms;
    int64_t next_keys_ms;        //  adapters:keys refresh
    int64_t keys_forced_ms;      //  last refresh forced by an unknown key
    int64_t next_beat_ms;
    int64_t next_send_ms;
    int64_t next_timers_ms;      //  mono: next timer turn
    int64_t next_requeue_ms;     //  mono: next return of lapsed timer claims
    zhashx_t *keys;              //  Z85 public key -> department (char *)
    zhashx_t *live;              //  routing hex -> adapter_t *
    zhashx_t *flights;           //  dspq member -> flight_t *
    zhashx_t *attempts;          //  dspq member -> attempts_t *
    delivery_t *delivery;        //  delivery.c's own state
    stats_t stats;
} self_t;

/* ---- main.c ---- */

//  True while this process holds the lease (renews when due).
bool dispatcher_may_act (self_t *self);
//  Loads, plans and stores one ticket from the inbox (or a RETURNED one):
//  accept, route, dispatch, or the operators' queue.
void dispatcher_handle_ticket (self_t *self, const char *id);
//  Publishes stored events on the PUB socket, topic "ticket.<type>".
void dispatcher_publish (self_t *self, const cb_ticket_t *after, const ts_event_t *events,
                         size_t n_events);

/* ---- departments.c ---- */

//  Makes the key cache and the live table. 0 or -1.
int departments_new (self_t *self);
void departments_destroy (self_t *self);
//  The ROUTER (CURVE server, or plaintext) and the ZAP handler; NULL/-1
//  on failure. Called when becoming active.
zsock_t *departments_router_new (self_t *self, const char *endpoint);
int departments_zap_open (self_t *self);
//  Drops every live adapter and flight (stepping down).
void departments_forget_all (self_t *self);
//  Answers pending ZAP requests.
void departments_take_zap (self_t *self);
//  Reads what the adapters sent.
void departments_take_messages (self_t *self);
//  Heartbeats out, silent adapters dropped, key cache refreshed.
void departments_tick (self_t *self);
//  The live adapter of `department` with the fewest orders in flight and
//  room for one more, preferring one other than `avoid_routing` (may be
//  NULL). NULL when none.
adapter_t *departments_pick (self_t *self, const char *department, const char *avoid_routing);
//  Sends an envelope to an adapter; 0 or -1 (gone or full: the next
//  heartbeat tick drops an adapter that cannot be reached).
int departments_send (self_t *self, adapter_t *adapter, Civicbus__V1__EnvelopeType type,
                      const char *trace, const ProtobufCMessage *msg);
//  True when any adapter is live.
bool departments_any_live (self_t *self);
//  True when a live adapter serves `department` (with room or not).
bool departments_serves (self_t *self, const char *department);

/* ---- delivery.c ---- */

//  Makes and frees the delivery's state (departments_new and _destroy
//  call them). 0 or -1.
int delivery_new (self_t *self);
void delivery_destroy (self_t *self);
//  A new dispatch of `ticket_id` was stored: its bucket is read in the
//  next delivery turn, this loop turn's or, for a dispatch made after it
//  (a sweep, a timer), the next loop turn's, which comes without waiting.
void delivery_dispatched (self_t *self, const char *ticket_id);
//  Records the ACKs and refusals taken since the last call, in one
//  pipelined batch (delivery_send_due calls it after sending, departments.c
//  before a department reply, so histories keep their order).
void delivery_record_answers (self_t *self);
//  Forgets answers not recorded yet (stepping down: the successor's
//  resends bring them again).
void delivery_forget_answers (self_t *self);

//  Makes the next delivery turn (in this loop turn) read every bucket
//  (a HELLO, an adapter gone, a slot freed while orders wait for room).
void delivery_soon (self_t *self);
//  Sends due orders from dspq:{bNN} to live adapters, then records the
//  answers taken since; sets next_send_ms.
void delivery_send_due (self_t *self);
//  An ACK / NACK for a dispatch id from `adapter`.
void delivery_on_ack (self_t *self, adapter_t *adapter, const char *dispatch_id);
void delivery_on_nack (self_t *self, adapter_t *adapter, const Civicbus__V1__Nack *nack);
//  The adapter is gone: its orders go out again at once.
void delivery_adapter_gone (self_t *self, adapter_t *adapter);

/* ---- deadlines.c ---- */

//  One timer turn: requeue lapsed claims, claim what is due, store each
//  timer's effect (or discard it). Sets next_timers_ms.
void deadlines_tick (self_t *self);

//  Carries an outcome's clock effects into `after` and `ops` with the
//  current policies and calendar (ticket_effects.h); logs a clamped
//  extension. 0 or -1 (abandon the change).
int deadlines_apply_effects (self_t *self, const cb_ticket_t *before, cb_ticket_t *after,
                             uint32_t effects, int64_t now_ms, ts_ops_t *ops);

/* ---- replies.c ---- */

//  Applies a department reply and answers the adapter with ACK or NACK.
void replies_take (self_t *self, adapter_t *adapter, const Civicbus__V1__DepartmentReply *reply);

#endif
