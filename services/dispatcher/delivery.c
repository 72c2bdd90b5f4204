/*  delivery.c — orders from dspq:{bNN} to the departments' adapters, and
    what their ACKs and NACKs change (docs/PROTOCOL.md, "Dispatch delivery").

    A delivery turn reads due entries (ZRANGEBYSCORE, O(log N + M) per
    bucket, pipelined): only the buckets that got a new dispatch since the
    last turn (delivery_dispatched: the turn comes in the same loop turn
    that stored it, so an order waits for no timer), and every bucket every
    SEND_MS, after a HELLO or a lost adapter, and after an ACK when the
    last turn left orders waiting for room. Each due entry goes to a live
    adapter of its department with room for it, preferring one other than
    the adapter that had it last; then, for all the orders of the turn at
    once, one pipelined read of their dispatch records, one of their
    tickets (ticket_store_load_many), the sends, and one pipeline of the
    new scores. So a turn costs four round trips however many orders it
    sends (it was three per order).

    Sending pushes the entry's score to now + ack timeout x backoff (1, 2,
    4, 8), so an order whose ACK never comes is due again and goes out once
    more, to another adapter when there is one. The entry stays in Redis
    until an ACK, so a dispatcher that dies loses nothing: its successor
    finds the entries due. Attempt numbers live in memory and start again
    at 1 after a takeover; adapters deduplicate by dispatch_id, so the
    number is for logs and the department's information only.

    Room: an entry whose department has live adapters that are all full
    stays where it is, due (no write): the next ACK frees a slot and brings
    a turn. So that such entries cannot hide other departments' orders
    behind them, a bucket whose read was all due entries and held some that
    waited reads twice as many the next turn (up to DUE_MAX; beyond that
    they step aside like the next case). An entry whose department has no
    live adapter at all steps aside for NO_ADAPTER_MS (its score moves on),
    so it never blocks the entries behind it; a HELLO brings a full turn.

    ACK: the entry leaves dspq, dspd:{bNN}:ID records the attempt, and a
    "delivered" event lands in the history, in one compare-and-set (done
    once: an ACK for an entry already gone changes nothing). NACK
    department_refused: the same change with a "delivery_refused" event and
    the ticket flagged for the operators. The ACKs of one loop turn are
    recorded together (delivery_record_answers), after that turn's orders
    went out: one pipelined load, one pipelined check of the records, one
    pipeline of compare-and-sets. Other NACKs: sent again soon. */

#include "dispatcher.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/pbutil.h"
#include "civicbus/ticket_id.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define SEND_MS          100     //  every bucket read at least this often
#define NO_ADAPTER_MS    1000    //  an entry nobody can take now waits this long
#define DUE_PER_BUCKET   32      //  due entries read per bucket and turn ...
#define DUE_MAX          1024    //  ... growing to this past entries waiting for room
#define CONFLICT_TRIES   5
#define BACKOFF_MAX      8

//  The delivery's own state (self->delivery).
struct _delivery_t {
    uint64_t dirty;              //  buckets with a new dispatch since the last turn
    bool everything;             //  the next turn reads every bucket
    bool waiting;                //  the last turn left due orders waiting for room
    int64_t next_full_ms;        //  mono: the next turn that reads every bucket
    int window [CB_BUCKETS];     //  due entries read per bucket
    zlist_t *answers;            //  s_answer_t *: answered orders to record
};

//  An answered order whose record waits for delivery_record_answers.
typedef struct {
    char dispatch_id [DISPATCH_ID_MAX];
    char ticket_id [CB_TICKET_ID_MAX];
    char department [CATALOG_CODE_MAX];
    char adapter_id [128];
    char reason [DISPATCH_REASON_MAX];
    int attempt;
    bool refused;
    int conflicts;
} s_answer_t;

//  One due entry of a turn.
typedef struct {
    char *member;                //  "ID|dept" (points into the turn's replies)
    char ticket_id [CB_TICKET_ID_MAX];
    char department [CATALOG_CODE_MAX];
    adapter_t *adapter;          //  chosen for it (NULL: not sent this turn)
    char dispatch_id [DISPATCH_ID_MAX];
    cb_ticket_t *ticket;
    bool forget;                 //  its entry goes (no ticket id, no dispatch record)
} s_due_t;

/* ---- private ---- */

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

//  Appends the entry's new score (ZADD XX: an entry an ACK removed
//  meanwhile stays removed). The caller reads the reply.
static int
s_append_reschedule (self_t *self, const char *member, int64_t due_ms)
{
    char queue [32], score [24];
    s_queue_of (member, queue, sizeof queue);
    snprintf (score, sizeof score, "%lld", (long long) due_ms);
    return cb_redis_append (self->redis, "ZADD %s XX %s %s", queue, score, member);
}

static int
s_append_forget (self_t *self, const char *member)
{
    char queue [32];
    s_queue_of (member, queue, sizeof queue);
    zhashx_delete (self->attempts, member);
    return cb_redis_append (self->redis, "ZREM %s %s", queue, member);
}

//  Reads the replies of `count` appended writes (their outcome changes
//  nothing here: a lost write leaves the entry due, and it goes again).
static void
s_drain (self_t *self, int count)
{
    for (int i = 0; i < count; i++) {
        redisReply *reply = cb_redis_get_reply (self->redis);
        if (!reply)
            return;
        freeReplyObject (reply);
    }
}

static void
s_reschedule (self_t *self, const char *member, int64_t due_ms)
{
    if (s_append_reschedule (self, member, due_ms) == 0)
        s_drain (self, 1);
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

//  Splits "ID|dept" into the due entry. 0, or -1 when malformed.
static int
s_parse_member (s_due_t *due)
{
    const char *member = due->member;
    const char *bar = strchr (member, '|');
    if (!bar || bar == member || !bar [1] || (size_t) (bar - member) >= sizeof due->ticket_id
    ||  strlen (bar + 1) >= sizeof due->department)
        return -1;
    memcpy (due->ticket_id, member, (size_t) (bar - member));
    due->ticket_id [bar - member] = 0;
    snprintf (due->department, sizeof due->department, "%s", bar + 1);
    return 0;
}

//  Gives back the slot a due entry was promised and leaves it due.
static void
s_unpick (s_due_t *due)
{
    if (due->adapter && due->adapter->in_flight > 0)
        due->adapter->in_flight--;
    due->adapter = NULL;
}

//  Sends the order of one due entry whose dispatch id and ticket are in
//  hand. Appends its new score (or its removal) to the pipeline; returns
//  how many writes it appended (0 or 1), or -1 when the pipeline broke.
static int
s_send_order (self_t *self, s_due_t *due)
{
    cb_ticket_t *ticket = due->ticket;
    adapter_t *adapter = due->adapter;
    citydata_snapshot_t *snap = citydata_acquire (self->citydata);
    const catalog_department_t *dept = snap && snap->catalog
                                     ? catalog_department (snap->catalog, due->department) : NULL;
    //  A department the catalogue does not know gets the masked form.
    bool mask = dept ? dept->masks_personal_data : true;
    citydata_release (self->citydata, &snap);
    cb_ticket_t *copy = dispatch_order_ticket (ticket, mask);
    attempts_t *tries = zhashx_lookup (self->attempts, due->member);
    if (copy && !tries) {
        tries = calloc (1, sizeof *tries);
        if (tries)
            zhashx_insert (self->attempts, due->member, tries);
    }
    if (!copy || !tries) {
        if (copy)
            civicbus__v1__ticket__free_unpacked (copy, NULL);
        s_unpick (due);
        return 0;
    }
    Civicbus__V1__DispatchOrder order = CIVICBUS__V1__DISPATCH_ORDER__INIT;
    order.dispatch_id = due->dispatch_id;
    order.attempt = tries->count + 1;
    order.department = due->department;
    order.primary = ticket->department && strcmp (ticket->department, due->department) == 0;
    order.ticket = copy;
    order.sign_due_ms = s_deadline (ticket, CIVICBUS__V1__STAGE__STAGE_SIGN);
    order.resolve_due_ms = s_deadline (ticket, CIVICBUS__V1__STAGE__STAGE_RESOLVE);
    int rc = departments_send (self, adapter, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DISPATCH_ORDER,
                               due->dispatch_id, &order.base);
    civicbus__v1__ticket__free_unpacked (copy, NULL);
    if (rc) {
        cb_log (CB_LOG_WARN, "order not sent: adapter unreachable", "dispatch_id", due->dispatch_id,
                "adapter", adapter->adapter_id, NULL);
        s_unpick (due);
        return 0;
    }
    tries->count++;
    snprintf (tries->last_routing, sizeof tries->last_routing, "%s", adapter->routing);
    flight_t *flight = calloc (1, sizeof *flight);
    if (flight) {
        snprintf (flight->member, sizeof flight->member, "%s", due->member);
        snprintf (flight->dispatch_id, sizeof flight->dispatch_id, "%s", due->dispatch_id);
        snprintf (flight->routing, sizeof flight->routing, "%s", adapter->routing);
        flight->attempt = tries->count;
        zhashx_update (self->flights, due->member, flight);
    }
    else
        s_unpick (due);           //  untracked: the ack timeout resends it
    self->stats.orders_sent++;
    char attempt [16];
    snprintf (attempt, sizeof attempt, "%d", tries->count);
    cb_log (CB_LOG_INFO, "order sent", "dispatch_id", due->dispatch_id, "adapter",
            adapter->adapter_id, "attempt", attempt, NULL);
    int factor = 1;
    for (int i = 1; i < tries->count && factor < BACKOFF_MAX; i++)
        factor *= 2;
    return s_append_reschedule (self, due->member,
                                cb_clock_now_ms () + (int64_t) self->ack_timeout_ms * factor)
           ? -1 : 1;
}

//  Fetches the dispatch records and tickets of the entries that got an
//  adapter (two round trips), sends their orders, and writes their new
//  scores (one more). Entries Redis did not answer for stay due.
static void
s_send_picked (self_t *self, s_due_t *dues, size_t n)
{
    const char **ids = calloc (n ? n : 1, sizeof *ids);
    cb_ticket_t **tickets = calloc (n ? n : 1, sizeof *tickets);
    int *results = calloc (n ? n : 1, sizeof *results);
    size_t *which = calloc (n ? n : 1, sizeof *which);
    if (!ids || !tickets || !results || !which) {
        for (size_t i = 0; i < n; i++)
            s_unpick (&dues [i]);
        goto done;
    }
    //  The dispatch records: withdrawn ones (re-dispatched, merged,
    //  cancelled) are gone, and their entries with them.
    int writes = 0;
    size_t asked = 0;
    bool lost = false;
    for (size_t i = 0; i < n && !lost; i++) {
        char dsp_key [96];
        if (!dues [i].adapter)
            continue;
        if (ts_key (dsp_key, sizeof dsp_key, "dsp", dues [i].ticket_id)) {
            cb_log (CB_LOG_WARN, "dispatch queue entry without a ticket id removed", "member",
                    dues [i].member, NULL);
            s_unpick (&dues [i]);
            dues [i].forget = true;
        }
        else
        if (cb_redis_append (self->redis, "HGET %s %s", dsp_key, dues [i].department) == 0)
            which [asked++] = i;
        else
            lost = true;
    }
    size_t picked = 0;
    for (size_t k = 0; k < asked; k++) {
        s_due_t *due = &dues [which [k]];
        redisReply *reply = lost ? NULL : cb_redis_get_reply (self->redis);
        if (!reply) {
            lost = true;
            s_unpick (due);
            continue;
        }
        if (reply->type == REDIS_REPLY_STRING && reply->len < sizeof due->dispatch_id) {
            snprintf (due->dispatch_id, sizeof due->dispatch_id, "%s", reply->str);
            ids [picked] = due->ticket_id;
            which [picked++] = which [k];
        }
        else
        if (reply->type == REDIS_REPLY_NIL) {
            s_unpick (due);
            due->forget = true;
        }
        else
            s_unpick (due);      //  an error reply: it stays due
        freeReplyObject (reply);
    }
    for (size_t i = 0; !lost && i < n; i++)
        if (dues [i].forget) {
            if (s_append_forget (self, dues [i].member) == 0)
                writes++;
            else
                lost = true;
        }
    s_drain (self, writes);
    writes = 0;
    for (size_t i = 0; lost && i < n; i++)
        s_unpick (&dues [i]);
    if (lost)
        goto done;
    ticket_store_load_many (self->store, ids, picked, tickets, results);
    for (size_t k = 0; k < picked; k++) {
        s_due_t *due = &dues [which [k]];
        due->ticket = tickets [k];
        if (lost || results [k] == TS_UNAVAILABLE || results [k] == TS_ERROR || !self->active)
            s_unpick (due);      //  it stays due
        else
        if (results [k] == TS_NOT_FOUND || !s_holds (due->ticket, due->department)) {
            //  The department no longer holds it: nothing to send, ever.
            s_unpick (due);
            if (s_append_forget (self, due->member) == 0)
                writes++;
            else
                lost = true;
        }
        else {
            int rc = s_send_order (self, due);
            if (rc < 0)
                lost = true;
            else
                writes += rc;
        }
    }
    s_drain (self, writes);
    for (size_t k = 0; k < picked; k++)
        if (tickets [k])
            civicbus__v1__ticket__free_unpacked (tickets [k], NULL);
done:
    free (ids);
    free (tickets);
    free (results);
    free (which);
}

//  The history change for a batch of answered orders: "delivered", or
//  "delivery_refused" with the ticket flagged for the operators. Once
//  only: when the dspq entry or the dispatch record is gone, another ACK
//  (or a return, a re-dispatch) did it already. One round of at most one
//  change per ticket; returns the answers to try again (conflicts, and
//  second answers of one ticket), NULL when none.
static zlist_t *
s_record_round (self_t *self, zlist_t *answers)
{
    size_t n = zlist_size (answers);
    s_answer_t **batch = calloc (n, sizeof *batch);
    const char **ids = calloc (n, sizeof *ids);
    cb_ticket_t **befores = calloc (n, sizeof *befores);
    int *results = calloc (n, sizeof *results);
    ts_change_t *changes = calloc (n, sizeof *changes);
    ts_event_t *events = calloc (n, sizeof *events);
    char (*payloads) [512] = calloc (n, sizeof *payloads);
    char (*whys) [DISPATCH_REASON_MAX + CATALOG_CODE_MAX + 40] = calloc (n, sizeof *whys);
    zlist_t *again = zlist_new ();
    ticket_actor_t *actors = calloc (n, sizeof *actors);
    size_t m = 0, n_changes = 0;
    if (!batch || !ids || !befores || !results || !changes || !events || !payloads || !whys
    ||  !again || !actors) {
        //  Out of memory: the answers are dropped; the ack timeout resends
        //  the orders and the adapters ACK them again from their journals.
        for (s_answer_t *a = zlist_pop (answers); a; a = zlist_pop (answers))
            free (a);
        goto done;
    }
    for (s_answer_t *a = zlist_pop (answers); a; a = zlist_pop (answers)) {
        bool seen = false;
        for (size_t j = 0; j < m && !seen; j++)
            seen = strcmp (ids [j], a->ticket_id) == 0;
        if (seen)
            zlist_append (again, a);     //  its ticket's change comes first
        else {
            batch [m] = a;
            ids [m] = a->ticket_id;
            m++;
        }
    }
    if (!dispatcher_may_act (self) || ticket_store_load_many (self->store, ids, m, befores, results) != TS_OK)
        goto drop;
    //  Both checks after the load: a change in between moves the version,
    //  and the compare-and-set below fails.
    for (size_t i = 0; i < m; i++) {
        char dsp_key [96], queue [32], member [DISPATCH_ID_MAX];
        if (results [i] != TS_OK)
            continue;
        ts_bucket_key (queue, sizeof queue, "dspq", ticket_id_bucket (ids [i]));
        if (ts_key (dsp_key, sizeof dsp_key, "dsp", ids [i])
        ||  dispatch_queue_member (member, sizeof member, ids [i], batch [i]->department)) {
            results [i] = TS_NOT_FOUND;
            continue;
        }
        //  A failed append dropped the connection: nothing is left to read.
        if (cb_redis_append (self->redis, "HGET %s %s", dsp_key, batch [i]->department)
        ||  cb_redis_append (self->redis, "ZSCORE %s %s", queue, member))
            goto drop;
    }
    for (size_t i = 0; i < m; i++) {
        if (results [i] != TS_OK)
            continue;
        redisReply *current = cb_redis_get_reply (self->redis);
        redisReply *queued = current ? cb_redis_get_reply (self->redis) : NULL;
        bool ours = current && current->type == REDIS_REPLY_STRING
                 && strcmp (current->str, batch [i]->dispatch_id) == 0;
        bool pending = queued && queued->type == REDIS_REPLY_STRING;
        if (current)
            freeReplyObject (current);
        if (queued)
            freeReplyObject (queued);
        if (!queued)
            goto drop;           //  the connection broke: the rest are lost
        if (!ours || !pending)
            continue;
        s_answer_t *a = batch [i];
        cb_ticket_t *before = befores [i];
        cb_ticket_t *after = ticket_clone (before);
        ts_ops_t *ops = ts_ops_new ();
        char queue [32], dspd_key [96], member [DISPATCH_ID_MAX], text [24];
        ts_bucket_key (queue, sizeof queue, "dspq", ticket_id_bucket (a->ticket_id));
        int rc = after && ops ? 0 : -1;
        rc |= ts_key (dspd_key, sizeof dspd_key, "dspd", a->ticket_id);
        rc |= dispatch_queue_member (member, sizeof member, a->ticket_id, a->department);
        snprintf (text, sizeof text, "%d", a->attempt);
        json_t *detail = json_pack ("{s:s, s:i, s:s}", "dispatch_id", a->dispatch_id,
                                    "attempt", a->attempt, "adapter", a->adapter_id);
        char *dumped = detail ? json_dumps (detail, JSON_COMPACT) : NULL;
        snprintf (payloads [i], sizeof payloads [i], "%s", dumped ? dumped : "{}");
        free (dumped);
        json_decref (detail);
        if (rc == 0) {
            after->updated_ms = cb_clock_now_ms ();
            rc |= ts_ops_zrem (ops, queue, member);
            rc |= ts_ops_hset (ops, dspd_key, a->department, text);
            if (a->refused) {
                snprintf (whys [i], sizeof whys [i], "department %s refused the order: %s",
                          a->department, a->reason);
                after->needs_review = true;
                rc |= pb_set_string (&after->review_reason, whys [i]);
            }
        }
        if (rc) {
            ts_ops_destroy (&ops);
            if (after)
                civicbus__v1__ticket__free_unpacked (after, NULL);
            continue;
        }
        actors [i] = (ticket_actor_t) { CIVICBUS__V1__ACTOR_KIND__ACTOR_DEPARTMENT, a->department,
                                        a->adapter_id };
        events [i] = (ts_event_t) { a->refused ? DISPATCH_EVENT_REFUSED : DISPATCH_EVENT_DELIVERED,
                                    &actors [i], before->state, before->state,
                                    a->refused ? a->reason : NULL, payloads [i] };
        changes [n_changes++] = (ts_change_t) { before, after, &events [i], 1, ops, TS_OK };
    }
    if (n_changes && dispatcher_may_act (self))
        ticket_store_apply_many (self->store, changes, n_changes);
    else
        for (size_t c = 0; c < n_changes; c++)
            changes [c].result = TS_UNAVAILABLE;
    for (size_t c = 0; c < n_changes; c++) {
        ts_change_t *change = &changes [c];
        size_t i = (size_t) (change->events - events);
        if (change->result == TS_OK) {
            if (!batch [i]->refused)
                self->stats.orders_acked++;
            dispatcher_publish (self, change->after, change->events, 1);
        }
        else
        if (change->result == TS_CONFLICT) {
            self->stats.conflicts++;
            if (++batch [i]->conflicts < CONFLICT_TRIES) {
                zlist_append (again, batch [i]);
                batch [i] = NULL;
            }
        }
    }
drop:
    for (size_t c = 0; c < n_changes; c++) {
        ts_ops_destroy (&changes [c].ops);
        civicbus__v1__ticket__free_unpacked (changes [c].after, NULL);
    }
    for (size_t i = 0; i < m; i++) {
        free (batch [i]);
        if (befores [i])
            civicbus__v1__ticket__free_unpacked (befores [i], NULL);
    }
done:
    free (batch);
    free (ids);
    free (befores);
    free (results);
    free (changes);
    free (events);
    free (payloads);
    free (whys);
    free (actors);
    if (again && zlist_size (again) == 0)
        zlist_destroy (&again);
    return again;
}

static void
s_answered (self_t *self, adapter_t *adapter, const char *dispatch_id, const char *ticket_id,
            const char *department, int attempt, bool refused, const char *reason)
{
    s_answer_t *a = calloc (1, sizeof *a);
    if (!a)
        return;                  //  the ack timeout resends; the adapter ACKs again
    snprintf (a->dispatch_id, sizeof a->dispatch_id, "%s", dispatch_id);
    snprintf (a->ticket_id, sizeof a->ticket_id, "%s", ticket_id);
    snprintf (a->department, sizeof a->department, "%s", department);
    snprintf (a->adapter_id, sizeof a->adapter_id, "%s", adapter->adapter_id);
    snprintf (a->reason, sizeof a->reason, "%s", reason ? reason : "");
    a->attempt = attempt;
    a->refused = refused;
    if (zlist_append (self->delivery->answers, a))
        free (a);
    self->next_send_ms = 0;       //  recorded at the end of this loop turn's delivery turn
}

/* ---- public ---- */

int
delivery_new (self_t *self)
{
    delivery_t *d = calloc (1, sizeof *d);
    if (!d)
        return -1;
    d->answers = zlist_new ();
    if (!d->answers) {
        free (d);
        return -1;
    }
    for (int b = 0; b < CB_BUCKETS; b++)
        d->window [b] = DUE_PER_BUCKET;
    self->delivery = d;
    return 0;
}

void
delivery_destroy (self_t *self)
{
    delivery_t *d = self->delivery;
    if (!d)
        return;
    delivery_forget_answers (self);
    zlist_destroy (&d->answers);
    free (d);
    self->delivery = NULL;
}

void
delivery_forget_answers (self_t *self)
{
    delivery_t *d = self->delivery;
    if (d && d->answers)
        for (s_answer_t *a = zlist_pop (d->answers); a; a = zlist_pop (d->answers))
            free (a);
}

void
delivery_soon (self_t *self)
{
    self->delivery->everything = true;
    self->next_send_ms = 0;
}

void
delivery_dispatched (self_t *self, const char *ticket_id)
{
    int bucket = ticket_id_bucket (ticket_id);
    if (bucket < 0) {
        delivery_soon (self);
        return;
    }
    self->delivery->dirty |= (uint64_t) 1 << bucket;
    self->next_send_ms = 0;
}

//  One delivery turn (delivery_send_due).
static void
s_send_turn (self_t *self)
{
    delivery_t *d = self->delivery;
    int64_t mono = cb_clock_mono_ms ();
    bool full = d->everything || mono >= d->next_full_ms;
    uint64_t buckets = full ? ~(uint64_t) 0 : d->dirty;
    d->dirty = 0;
    d->everything = false;
    if (full)
        d->next_full_ms = mono + SEND_MS;
    self->next_send_ms = d->next_full_ms;
    if (!buckets || !departments_any_live (self))
        return;
    char key [32], now [24];
    snprintf (now, sizeof now, "%lld", (long long) cb_clock_now_ms ());
    int read [CB_BUCKETS], n_read = 0;
    for (int b = 0; b < CB_BUCKETS; b++) {
        if (!(buckets & ((uint64_t) 1 << b)))
            continue;
        ts_bucket_key (key, sizeof key, "dspq", b);
        if (cb_redis_append (self->redis, "ZRANGEBYSCORE %s -inf %s LIMIT 0 %d", key, now,
                             d->window [b]))
            break;
        read [n_read++] = b;
    }
    redisReply *replies [CB_BUCKETS] = { NULL };
    size_t total = 0;
    for (int k = 0; k < n_read; k++) {
        replies [k] = cb_redis_get_reply (self->redis);
        if (!replies [k])
            break;
        if (replies [k]->type == REDIS_REPLY_ARRAY)
            total += replies [k]->elements;
    }
    s_due_t *dues = total ? calloc (total, sizeof *dues) : NULL;
    size_t n = 0;
    int writes = 0;
    bool waiting = false;
    for (int k = 0; dues && k < n_read && replies [k]; k++) {
        int b = read [k];
        redisReply *reply = replies [k];
        if (reply->type != REDIS_REPLY_ARRAY)
            continue;
        bool filled = (int) reply->elements >= d->window [b];
        bool crowded = filled && d->window [b] >= DUE_MAX;
        int busy = 0;
        for (size_t i = 0; i < reply->elements; i++) {
            if (reply->element [i]->type != REDIS_REPLY_STRING)
                continue;
            s_due_t *due = &dues [n];
            due->member = reply->element [i]->str;
            if (s_parse_member (due)) {
                cb_log (CB_LOG_WARN, "malformed dispatch queue entry removed", "member",
                        due->member, NULL);
                if (s_append_forget (self, due->member) == 0)
                    writes++;
                continue;
            }
            //  Due while still in flight: its ACK did not come in time.
            if (zhashx_lookup (self->flights, due->member)) {
                s_land (self, due->member);
                cb_log (CB_LOG_INFO, "no ACK in time: sending again", "ticket", due->ticket_id,
                        "department", due->department, NULL);
            }
            attempts_t *tries = zhashx_lookup (self->attempts, due->member);
            due->adapter = departments_pick (self, due->department,
                                             tries ? tries->last_routing : NULL);
            if (due->adapter) {
                due->adapter->in_flight++;       //  promised; s_unpick gives it back
                n++;
            }
            else
            if (!departments_serves (self, due->department) || crowded) {
                //  Nobody can take it now: step aside, so the entries behind
                //  it (other departments') are not blocked at the head of
                //  the queue. A HELLO brings a full turn at once.
                if (s_append_reschedule (self, due->member, cb_clock_now_ms () + NO_ADAPTER_MS) == 0)
                    writes++;
            }
            else {
                busy++;                          //  stays due; an ACK brings a turn
                waiting = true;
            }
        }
        d->window [b] = busy && filled ? (d->window [b] * 2 > DUE_MAX ? DUE_MAX : d->window [b] * 2)
                                       : DUE_PER_BUCKET;
    }
    s_drain (self, writes);
    //  Entries of buckets not read this turn may still wait for room.
    d->waiting = waiting || (d->waiting && !full);
    if (n && self->active)
        s_send_picked (self, dues, n);
    else
        for (size_t i = 0; i < n; i++)
            s_unpick (&dues [i]);
    free (dues);              //  its members point into the replies
    for (int k = 0; k < n_read; k++)
        if (replies [k])
            freeReplyObject (replies [k]);
}

void
delivery_send_due (self_t *self)
{
    s_send_turn (self);
    //  The ACKs read in this loop turn are recorded after the new orders
    //  went out: bookkeeping never delays a delivery.
    if (self->active)
        delivery_record_answers (self);
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
    s_answered (self, adapter, dispatch_id, ticket_id, department, attempt, false, NULL);
    //  The adapter has room again: what waits for room goes out now.
    if (self->delivery->waiting)
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
    if (self->delivery->waiting)
        delivery_soon (self);
    if (strcmp (nack->code, "department_refused") == 0) {
        zhashx_delete (self->attempts, member);
        s_answered (self, adapter, nack->ref, ticket_id, department, attempt ? attempt : 1, true,
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
delivery_record_answers (self_t *self)
{
    delivery_t *d = self->delivery;
    if (!d || zlist_size (d->answers) == 0)
        return;
    zlist_t *answers = d->answers;
    d->answers = zlist_new ();
    if (!d->answers) {
        d->answers = answers;
        delivery_forget_answers (self);
        return;
    }
    while (answers) {
        zlist_t *again = s_record_round (self, answers);
        zlist_destroy (&answers);
        answers = again;
    }
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
    int writes = 0;
    for (char *member = zlist_first (members); member; member = zlist_next (members)) {
        zhashx_delete (self->flights, member);
        if (s_append_reschedule (self, member, now) == 0)
            writes++;
    }
    s_drain (self, writes);
    adapter->in_flight = 0;
    zlist_destroy (&members);
    delivery_soon (self);
}
