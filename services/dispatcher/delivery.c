/*  delivery.c — orders from dspq:{bNN} to the departments' adapters, and
    what their ACKs and NACKs change (docs/PROTOCOL.md, "Dispatch delivery").

    Every SEND_MS, and SEND_SOON_MS after a new dispatch or an ACK (so an
    order does not wait for the next turn), the due entries of all 64 queues are read in one
    pipelined round trip (ZRANGEBYSCORE, O(log N + M) per bucket, at most
    DUE_PER_BUCKET each), and each is sent to a live adapter of its
    department with room for it, preferring one other than the adapter that
    had it last. Sending pushes the entry's score to now + ack timeout x
    backoff (1, 2, 4, 8), so an order whose ACK never comes is due again
    and goes out once more, to another adapter when there is one. The
    entry stays in Redis until an ACK, so a dispatcher that dies loses
    nothing: its successor finds the entries due.

    Cost: per order sent, three round trips (HGET the dispatch record, load
    the ticket, ZADD the new score). Attempt numbers live in memory and
    start again at 1 after a takeover; adapters deduplicate by dispatch_id,
    so the number is for logs and the department's information only.

    ACK: the entry leaves dspq, dspd:{bNN}:ID records the attempt, and a
    "delivered" event lands in the history, in one compare-and-set (done
    once: an ACK for an entry already gone changes nothing). NACK
    department_refused: the same change with a "delivery_refused" event and
    the ticket flagged for the operators. Other NACKs: sent again soon. */

#include "dispatcher.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/pbutil.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define SEND_MS          100
#define SEND_SOON_MS     5       //  after a new dispatch or a freed slot
#define NO_ADAPTER_MS    1000    //  an entry nobody can take now waits this long
#define DUE_PER_BUCKET   32
#define CONFLICT_TRIES   5
#define BACKOFF_MAX      8

/* ---- private ---- */

static void
s_command (self_t *self, const char *fmt, const char *a, const char *b)
{
    redisReply *reply = cb_redis_command (self->redis, fmt, a, b);
    if (reply)
        freeReplyObject (reply);
}

//  "dspq:{bNN}" of a member "ID|dept".
static void
s_queue_of (const char *member, char *queue, size_t cap)
{
    char id [CB_TICKET_ID_MAX];
    size_t len = strcspn (member, "|");
    if (len >= sizeof id)
        len = sizeof id - 1;
    memcpy (id, member, len);
    id [len] = 0;
    int bucket = ticket_id_bucket (id);
    ts_bucket_key (queue, cap, "dspq", bucket < 0 ? 0 : bucket);
}

static void
s_reschedule (self_t *self, const char *member, int64_t due_ms)
{
    char queue [32], score [24];
    s_queue_of (member, queue, sizeof queue);
    snprintf (score, sizeof score, "%lld", (long long) due_ms);
    redisReply *reply = cb_redis_command (self->redis, "ZADD %s XX %s %s", queue, score, member);
    if (reply)
        freeReplyObject (reply);
}

static void
s_forget_member (self_t *self, const char *member)
{
    char queue [32];
    s_queue_of (member, queue, sizeof queue);
    s_command (self, "ZREM %s %s", queue, member);
    zhashx_delete (self->attempts, member);
}

//  Ends a flight (the adapter answered, or it is gone). Returns the attempt.
static int
s_land (self_t *self, const char *member)
{
    flight_t *flight = zhashx_lookup (self->flights, member);
    if (!flight)
        return 0;
    int attempt = flight->attempt;
    adapter_t *adapter = zhashx_lookup (self->live, flight->routing);
    if (adapter && adapter->in_flight > 0)
        adapter->in_flight--;
    zhashx_delete (self->flights, member);
    return attempt;
}

static int64_t
s_deadline (const cb_ticket_t *ticket, Civicbus__V1__Stage stage)
{
    for (size_t i = 0; i < ticket->n_deadlines; i++)
        if (ticket->deadlines [i]->stage == stage)
            return ticket->deadlines [i]->due_ms;
    return 0;
}

static bool
s_holds (const cb_ticket_t *ticket, const char *department)
{
    cb_state_t st = ticket->state;
    if (st != CIVICBUS__V1__TICKET_STATE__DISPATCHED && st != CIVICBUS__V1__TICKET_STATE__IN_PROGRESS
    &&  st != CIVICBUS__V1__TICKET_STATE__SUSPENDED)
        return false;
    return (ticket->department && strcmp (ticket->department, department) == 0)
        || pb_strv_contains (ticket->n_co_handlers, ticket->co_handlers, department);
}

//  Sends one due entry. Returns true when something was sent.
static bool
s_send_one (self_t *self, const char *member)
{
    char ticket_id [CB_TICKET_ID_MAX], department [CATALOG_CODE_MAX];
    const char *bar = strchr (member, '|');
    if (!bar || (size_t) (bar - member) >= sizeof ticket_id || strlen (bar + 1) >= sizeof department
    ||  bar == member || !bar [1]) {
        cb_log (CB_LOG_WARN, "malformed dispatch queue entry removed", "member", member, NULL);
        s_forget_member (self, member);
        return false;
    }
    memcpy (ticket_id, member, (size_t) (bar - member));
    ticket_id [bar - member] = 0;
    snprintf (department, sizeof department, "%s", bar + 1);

    //  Due while still in flight: its ACK did not come in time.
    attempts_t *tries = zhashx_lookup (self->attempts, member);
    if (zhashx_lookup (self->flights, member)) {
        s_land (self, member);
        cb_log (CB_LOG_INFO, "no ACK in time: sending again", "ticket", ticket_id,
                "department", department, NULL);
    }
    adapter_t *adapter = departments_pick (self, department, tries ? tries->last_routing : NULL);
    if (!adapter) {
        //  No live adapter of the department has room: step aside, so the
        //  entries behind this one (other departments') are not blocked at
        //  the head of the queue. A HELLO or a freed slot sends again at once.
        s_reschedule (self, member, cb_clock_now_ms () + NO_ADAPTER_MS);
        return false;
    }

    char dsp_key [96], dispatch_id [DISPATCH_ID_MAX];
    if (ts_key (dsp_key, sizeof dsp_key, "dsp", ticket_id))
        return false;
    redisReply *reply = cb_redis_command (self->redis, "HGET %s %s", dsp_key, department);
    if (!reply)
        return false;
    bool have = reply->type == REDIS_REPLY_STRING && reply->len < sizeof dispatch_id;
    if (have)
        snprintf (dispatch_id, sizeof dispatch_id, "%s", reply->str);
    freeReplyObject (reply);
    if (!have) {
        //  Withdrawn (re-dispatched, merged, cancelled): nothing to send.
        s_forget_member (self, member);
        return false;
    }
    cb_ticket_t *ticket = NULL;
    int rc = ticket_store_load (self->store, ticket_id, &ticket);
    if (rc == TS_NOT_FOUND || (rc == TS_OK && !s_holds (ticket, department))) {
        s_forget_member (self, member);
        if (ticket)
            civicbus__v1__ticket__free_unpacked (ticket, NULL);
        return false;
    }
    if (rc != TS_OK)
        return false;

    citydata_snapshot_t *snap = citydata_acquire (self->citydata);
    const catalog_department_t *dept = snap && snap->catalog
                                     ? catalog_department (snap->catalog, department) : NULL;
    //  A department the catalogue does not know gets the masked form.
    bool mask = dept ? dept->masks_personal_data : true;
    citydata_release (self->citydata, &snap);
    cb_ticket_t *copy = dispatch_order_ticket (ticket, mask);
    if (!copy) {
        civicbus__v1__ticket__free_unpacked (ticket, NULL);
        return false;
    }
    if (!tries) {
        tries = calloc (1, sizeof *tries);
        if (!tries) {
            civicbus__v1__ticket__free_unpacked (copy, NULL);
            civicbus__v1__ticket__free_unpacked (ticket, NULL);
            return false;
        }
        zhashx_insert (self->attempts, member, tries);
    }
    Civicbus__V1__DispatchOrder order = CIVICBUS__V1__DISPATCH_ORDER__INIT;
    order.dispatch_id = dispatch_id;
    order.attempt = tries->count + 1;
    order.department = department;
    order.primary = ticket->department && strcmp (ticket->department, department) == 0;
    order.ticket = copy;
    order.sign_due_ms = s_deadline (ticket, CIVICBUS__V1__STAGE__STAGE_SIGN);
    order.resolve_due_ms = s_deadline (ticket, CIVICBUS__V1__STAGE__STAGE_RESOLVE);
    rc = departments_send (self, adapter, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DISPATCH_ORDER,
                           dispatch_id, &order.base);
    civicbus__v1__ticket__free_unpacked (copy, NULL);
    civicbus__v1__ticket__free_unpacked (ticket, NULL);
    if (rc) {
        cb_log (CB_LOG_WARN, "order not sent: adapter unreachable", "dispatch_id", dispatch_id,
                "adapter", adapter->adapter_id, NULL);
        return false;
    }
    tries->count++;
    snprintf (tries->last_routing, sizeof tries->last_routing, "%s", adapter->routing);
    flight_t *flight = calloc (1, sizeof *flight);
    if (flight) {
        snprintf (flight->member, sizeof flight->member, "%s", member);
        snprintf (flight->dispatch_id, sizeof flight->dispatch_id, "%s", dispatch_id);
        snprintf (flight->routing, sizeof flight->routing, "%s", adapter->routing);
        flight->attempt = tries->count;
        zhashx_update (self->flights, member, flight);
        adapter->in_flight++;
    }
    int factor = 1;
    for (int i = 1; i < tries->count && factor < BACKOFF_MAX; i++)
        factor *= 2;
    s_reschedule (self, member, cb_clock_now_ms () + (int64_t) self->ack_timeout_ms * factor);
    self->stats.orders_sent++;
    char attempt [16];
    snprintf (attempt, sizeof attempt, "%d", tries->count);
    cb_log (CB_LOG_INFO, "order sent", "dispatch_id", dispatch_id, "adapter", adapter->adapter_id,
            "attempt", attempt, NULL);
    return true;
}

//  The history change for an answered order: "delivered" (refused ==
//  false) or "delivery_refused" with the ticket flagged for the operators.
//  Once only: when the dspq entry is gone, another ACK did it already.
static void
s_record (self_t *self, adapter_t *adapter, const char *dispatch_id, const char *ticket_id,
          const char *department, int attempt, bool refused, const char *reason)
{
    char member [DISPATCH_ID_MAX], queue [32], dsp_key [96], dspd_key [96];
    if (dispatch_queue_member (member, sizeof member, ticket_id, department)
    ||  ts_key (dsp_key, sizeof dsp_key, "dsp", ticket_id)
    ||  ts_key (dspd_key, sizeof dspd_key, "dspd", ticket_id))
        return;
    ts_bucket_key (queue, sizeof queue, "dspq", ticket_id_bucket (ticket_id));
    ticket_actor_t actor = { CIVICBUS__V1__ACTOR_KIND__ACTOR_DEPARTMENT, department,
                             adapter->adapter_id };
    for (int round = 0; round < CONFLICT_TRIES; round++) {
        if (!dispatcher_may_act (self))
            return;
        cb_ticket_t *before = NULL;
        if (ticket_store_load (self->store, ticket_id, &before) != TS_OK)
            return;
        //  Both checks after the load: a change in between moves the
        //  version, and the compare-and-set below fails.
        redisReply *current = cb_redis_command (self->redis, "HGET %s %s", dsp_key, department);
        redisReply *queued = current ? cb_redis_command (self->redis, "ZSCORE %s %s", queue, member)
                                     : NULL;
        bool ours = current && current->type == REDIS_REPLY_STRING
                 && strcmp (current->str, dispatch_id) == 0;
        bool pending = queued && queued->type == REDIS_REPLY_STRING;
        if (current)
            freeReplyObject (current);
        if (queued)
            freeReplyObject (queued);
        if (!ours || !pending) {
            civicbus__v1__ticket__free_unpacked (before, NULL);
            return;
        }
        cb_ticket_t *after = ticket_clone (before);
        ts_ops_t *ops = ts_ops_new ();
        int rc = after && ops ? 0 : -1;
        char text [24], payload [512];
        snprintf (text, sizeof text, "%d", attempt);
        json_t *detail = json_pack ("{s:s, s:i, s:s}", "dispatch_id", dispatch_id,
                                    "attempt", attempt, "adapter", adapter->adapter_id);
        char *dumped = detail ? json_dumps (detail, JSON_COMPACT) : NULL;
        snprintf (payload, sizeof payload, "%s", dumped ? dumped : "{}");
        free (dumped);
        json_decref (detail);
        if (rc == 0) {
            after->updated_ms = cb_clock_now_ms ();
            rc |= ts_ops_zrem (ops, queue, member);
            rc |= ts_ops_hset (ops, dspd_key, department, text);
            if (refused) {
                char why [DISPATCH_REASON_MAX];
                snprintf (why, sizeof why, "department %s refused the order: %s", department,
                          reason ? reason : "");
                after->needs_review = true;
                rc |= pb_set_string (&after->review_reason, why);
            }
        }
        ts_event_t ev = { refused ? DISPATCH_EVENT_REFUSED : DISPATCH_EVENT_DELIVERED, &actor,
                          before->state, before->state, refused ? reason : NULL, payload };
        if (rc == 0)
            rc = ticket_store_apply (self->store, before, after, &ev, 1, ops);
        else
            rc = TS_ERROR;
        if (rc == TS_OK) {
            if (!refused)
                self->stats.orders_acked++;
            dispatcher_publish (self, after, &ev, 1);
        }
        ts_ops_destroy (&ops);
        if (after)
            civicbus__v1__ticket__free_unpacked (after, NULL);
        civicbus__v1__ticket__free_unpacked (before, NULL);
        if (rc != TS_CONFLICT)
            return;
        self->stats.conflicts++;
    }
}

/* ---- public ---- */

void
delivery_soon (self_t *self)
{
    int64_t soon = cb_clock_mono_ms () + SEND_SOON_MS;
    if (self->next_send_ms > soon)
        self->next_send_ms = soon;
}

void
delivery_send_due (self_t *self)
{
    self->next_send_ms = cb_clock_mono_ms () + SEND_MS;
    if (!departments_any_live (self))
        return;
    char key [32], now [24];
    snprintf (now, sizeof now, "%lld", (long long) cb_clock_now_ms ());
    int appended = 0;
    for (int b = 0; b < CB_BUCKETS; b++) {
        ts_bucket_key (key, sizeof key, "dspq", b);
        if (cb_redis_append (self->redis, "ZRANGEBYSCORE %s -inf %s LIMIT 0 %d", key, now,
                             DUE_PER_BUCKET))
            break;
        appended++;
    }
    zlist_t *due = zlist_new ();
    if (!due)
        return;
    zlist_autofree (due);
    for (int b = 0; b < appended; b++) {
        redisReply *reply = cb_redis_get_reply (self->redis);
        if (!reply)
            break;
        if (reply->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < reply->elements; i++)
                if (reply->element [i]->type == REDIS_REPLY_STRING)
                    zlist_append (due, reply->element [i]->str);
        freeReplyObject (reply);
    }
    for (char *member = zlist_first (due); member && self->active; member = zlist_next (due))
        if (dispatcher_may_act (self))
            s_send_one (self, member);
    zlist_destroy (&due);
}

void
delivery_on_ack (self_t *self, adapter_t *adapter, const char *dispatch_id)
{
    char ticket_id [CB_TICKET_ID_MAX], department [CATALOG_CODE_MAX], member [DISPATCH_ID_MAX];
    if (dispatch_id_parse (dispatch_id, ticket_id, sizeof ticket_id, department, sizeof department)
    ||  dispatch_queue_member (member, sizeof member, ticket_id, department)) {
        cb_log (CB_LOG_WARN, "ACK for something that is not a dispatch id", "ref", dispatch_id,
                "adapter", adapter->adapter_id, NULL);
        return;
    }
    if (strcmp (department, adapter->department) != 0) {
        cb_log (CB_LOG_WARN, "ACK for another department's order ignored", "dispatch_id",
                dispatch_id, "department", adapter->department, NULL);
        return;
    }
    int attempt = s_land (self, member);
    attempts_t *tries = zhashx_lookup (self->attempts, member);
    if (!attempt)
        attempt = tries ? tries->count : 1;
    zhashx_delete (self->attempts, member);
    s_record (self, adapter, dispatch_id, ticket_id, department, attempt, false, NULL);
    //  The adapter has room again: what waits for it goes out now.
    delivery_soon (self);
}

void
delivery_on_nack (self_t *self, adapter_t *adapter, const Civicbus__V1__Nack *nack)
{
    char ticket_id [CB_TICKET_ID_MAX], department [CATALOG_CODE_MAX], member [DISPATCH_ID_MAX];
    if (dispatch_id_parse (nack->ref, ticket_id, sizeof ticket_id, department, sizeof department)
    ||  dispatch_queue_member (member, sizeof member, ticket_id, department)
    ||  strcmp (department, adapter->department) != 0) {
        cb_log (CB_LOG_WARN, "NACK from an adapter", "ref", nack->ref, "code", nack->code,
                "reason", nack->reason, "adapter", adapter->adapter_id, NULL);
        return;
    }
    int attempt = s_land (self, member);
    cb_log (CB_LOG_WARN, "order not delivered", "dispatch_id", nack->ref, "code", nack->code,
            "reason", nack->reason, "adapter", adapter->adapter_id, NULL);
    if (strcmp (nack->code, "department_refused") == 0) {
        zhashx_delete (self->attempts, member);
        s_record (self, adapter, nack->ref, ticket_id, department, attempt ? attempt : 1, true,
                  nack->reason);
        return;
    }
    //  Unavailable or busy: again soon, with backoff, preferably elsewhere.
    attempts_t *tries = zhashx_lookup (self->attempts, member);
    int factor = 1;
    for (int i = 1; tries && i < tries->count && factor < BACKOFF_MAX; i++)
        factor *= 2;
    int64_t wait = (int64_t) 250 * factor;
    if (wait > self->ack_timeout_ms)
        wait = self->ack_timeout_ms;
    s_reschedule (self, member, cb_clock_now_ms () + wait);
}

void
delivery_adapter_gone (self_t *self, adapter_t *adapter)
{
    zlist_t *members = zlist_new ();
    if (!members)
        return;
    zlist_autofree (members);
    for (flight_t *f = zhashx_first (self->flights); f; f = zhashx_next (self->flights))
        if (strcmp (f->routing, adapter->routing) == 0)
            zlist_append (members, f->member);
    int64_t now = cb_clock_now_ms ();
    for (char *member = zlist_first (members); member; member = zlist_next (members)) {
        zhashx_delete (self->flights, member);
        s_reschedule (self, member, now);
    }
    adapter->in_flight = 0;
    zlist_destroy (&members);
    self->next_send_ms = 0;
}
