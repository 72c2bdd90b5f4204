/*  civicbus-notifier — tells people what happened to their tickets: status
    pushes back to the 12345 hotline, SMS to reporters, reminders to
    departments, alerts to supervisors, webhooks (docs/NOTIFIER.md).

    Design, in the order work flows:

    1. Outbox. The ticket store adds every stored event to ntfq:{bNN} as
       "ID#SEQ" in the same script that stores it, so no event can be stored
       without its notifications being owed. The main thread reads the
       outbox of all 64 buckets (one pipelined round trip) every
       CIVICBUS_NOTIFIER_POLL_MS, sooner when something rings the optional
       ZeroMQ PULL doorbell on CIVICBUS_NOTIFIER_BIND.
    2. Fan-out. For each event it loads the ticket and its history and asks
       notify_rules_decide() (pure, common/notify_rules.c) who hears what;
       then ONE script (notify_queue_fanout) creates the deliveries
       (dlv:{bNN}:DID records and dlvq:{bNN} entries, with deterministic
       DIDs, each only if it does not exist) and removes the outbox member.
       A ticket's events are fanned out in sequence order (the script
       refuses a later one while an earlier one waits).
    3. Claim. The main thread claims due deliveries (a script pushes their
       score to now + CIVICBUS_NOTIFIER_VISIBILITY_MS and tags them with a
       claim token) into a small in-memory queue; two notifiers never hold
       one delivery at once, and a notifier that dies holding some leaves
       them to be claimed again after the timeout: at least once.
    4. Send. CIVICBUS_NOTIFIER_WORKERS threads, each with its own Redis
       connection and libcurl handle, send (send.c; every request carries
       the DID as its idempotency key and is bounded by
       CIVICBUS_NOTIFIER_TIMEOUT_MS), then acknowledge (delete) or record
       the failure: attempt+1 and a retry after exponential backoff with
       jitter (CIVICBUS_NOTIFIER_BACKOFF_MS doubling up to
       CIVICBUS_NOTIFIER_BACKOFF_MAX_MS), or after
       CIVICBUS_NOTIFIER_MAX_ATTEMPTS a dead letter (dead:{bNN}; the record
       stays with its last error; `civicbus dead-letters replay` sends it
       again). A 4xx answer (not 408/429) is a dead letter at once.
       Hotline pushes of one ticket go in order: only the oldest
       unacknowledged one is ever in dlvq (hlq:{bNN}:ID holds the rest).
    5. Stop. On SIGTERM the main thread stops claiming and gives back what
       it claimed but did not start (due again at once); workers finish
       their current send, and after CIVICBUS_NOTIFIER_STOP_MS any send
       still running is aborted (its claim lapses and it is retried).

    Counters (delivered, retried, dead per channel; events fanned out) are
    logged every CIVICBUS_NOTIFIER_METRICS_S seconds. */

#include "notifier.h"
#include "civicbus/service.h"
#include "civicbus/file.h"
#include "civicbus/log.h"
#include "civicbus/clock.h"
#include "civicbus/redis.h"
#include "civicbus/ticket_store.h"
#include "civicbus/ticket_id.h"

#include <czmq.h>
#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const cb_setting_t s_settings [] = {
    { "CIVICBUS_NOTIFIER_CONFIG", "", CB_SETTING_STRING, 0, 0,
      "the notifier's JSON file (templates, webhooks, supervisors, gateways); empty: nobody is told" },
    { "CIVICBUS_NOTIFIER_BIND", "tcp://127.0.0.1:5554", CB_SETTING_STRING, 0, 0,
      "ZeroMQ PULL doorbell that wakes the notifier early (empty: none, poll only)" },
    { "CIVICBUS_NOTIFIER_ID", "", CB_SETTING_STRING, 0, 0,
      "this notifier's name in claims and logs (default hostname-pid)" },
    { "CIVICBUS_NOTIFIER_POLL_MS", "200", CB_SETTING_INT, 10, 60000,
      "how often the outbox and the delivery queue are read" },
    { "CIVICBUS_NOTIFIER_WORKERS", "4", CB_SETTING_INT, 1, 256,
      "sending threads" },
    { "CIVICBUS_NOTIFIER_TIMEOUT_MS", "10000", CB_SETTING_INT, 100, 300000,
      "bound on one HTTP request or SMTP session" },
    { "CIVICBUS_NOTIFIER_VISIBILITY_MS", "60000", CB_SETTING_INT, 200, 3600000,
      "a claimed delivery is claimable again after this (must exceed 2x the timeout)" },
    { "CIVICBUS_NOTIFIER_MAX_ATTEMPTS", "8", CB_SETTING_INT, 1, 1000,
      "failed attempts before a delivery becomes a dead letter" },
    { "CIVICBUS_NOTIFIER_BACKOFF_MS", "1000", CB_SETTING_INT, 1, 3600000,
      "first retry delay; doubles per attempt, with jitter" },
    { "CIVICBUS_NOTIFIER_BACKOFF_MAX_MS", "600000", CB_SETTING_INT, 1, 86400000,
      "cap on the retry delay" },
    { "CIVICBUS_NOTIFIER_STOP_MS", "5000", CB_SETTING_INT, 0, 600000,
      "on SIGTERM, sends still running after this are aborted (and retried later)" },
    { "CIVICBUS_NOTIFIER_METRICS_S", "30", CB_SETTING_INT, 1, 86400,
      "how often the counters are logged" },
    CB_SETTINGS_COMMON,
    { NULL }
};

#define S_OUTBOX_PER_BUCKET 64      //  events read per bucket per pass
#define S_QUEUE_PER_WORKER  4       //  claimed but not yet started, per worker

typedef struct {
    notify_record_t rec;
    char token [96];
} s_item_t;

typedef struct {
    atomic_long delivered [NOTIFY_CHANNEL_COUNT];
    atomic_long retried [NOTIFY_CHANNEL_COUNT];
    atomic_long dead [NOTIFY_CHANNEL_COUNT];
    atomic_long fanned, created, claimed;
} s_stats_t;

typedef struct {
    cb_config_t *config;
    notify_rules_t *rules;
    char id [64];
    int poll_ms, timeout_ms, max_attempts, stop_ms;
    int64_t visibility_ms, backoff_ms, backoff_max_ms;

    //  The work queue between the claimer (main) and the workers.
    pthread_mutex_t lock;
    pthread_cond_t has_work;        //  workers wait on it
    pthread_cond_t wake;            //  main waits on it: room, a doorbell, stop
    s_item_t *items;
    size_t head, count, cap;
    bool stopping;                  //  under lock: workers exit after their item
    bool rung;                      //  under lock: the doorbell rang
    int workers_alive;              //  under lock
    atomic_int abandon;             //  abort running transfers (stop deadline passed)

    pthread_t *workers;
    int n_workers;
    pthread_t doorbell;
    bool doorbell_running;
    s_stats_t stats;
    uint64_t claim_counter;
} self_t;

/* ---- private: the work queue ---- */

static bool
s_queue_push (self_t *self, s_item_t *item)
{
    pthread_mutex_lock (&self->lock);
    bool ok = self->count < self->cap;
    if (ok) {
        self->items [(self->head + self->count) % self->cap] = *item;
        self->count++;
        pthread_cond_signal (&self->has_work);
    }
    pthread_mutex_unlock (&self->lock);
    return ok;
}

static size_t
s_queue_room (self_t *self)
{
    pthread_mutex_lock (&self->lock);
    size_t room = self->cap - self->count;
    pthread_mutex_unlock (&self->lock);
    return room;
}

//  Waits for an item; false when stopping.
static bool
s_queue_pop (self_t *self, s_item_t *item)
{
    pthread_mutex_lock (&self->lock);
    while (!self->stopping && self->count == 0)
        pthread_cond_wait (&self->has_work, &self->lock);
    bool ok = !self->stopping && self->count > 0;
    if (ok) {
        *item = self->items [self->head];
        self->head = (self->head + 1) % self->cap;
        self->count--;
        if (self->count <= self->cap / 2)
            pthread_cond_signal (&self->wake);
    }
    pthread_mutex_unlock (&self->lock);
    return ok;
}

/* ---- private: workers ---- */

static int64_t
s_backoff (const self_t *self, int attempt)
{
    int64_t delay = self->backoff_ms;
    for (int i = 1; i < attempt && delay < self->backoff_max_ms; i++)
        delay *= 2;
    if (delay > self->backoff_max_ms)
        delay = self->backoff_max_ms;
    //  "Equal jitter": half fixed, half random, so retries of many failed
    //  deliveries spread out instead of arriving together.
    int64_t half = delay / 2;
    uint32_t spread = half > 0 ? (uint32_t) (half < UINT32_MAX ? half : UINT32_MAX) : 1;
    return half + (int64_t) randombytes_uniform (spread);
}

static cb_redis_t *
s_connect (const self_t *self)
{
    char err [256] = "";
    cb_redis_t *redis = cb_redis_new (cb_config_str (self->config, "CIVICBUS_REDIS_URL"),
                                      (int) cb_config_int (self->config, "CIVICBUS_REDIS_TIMEOUT_MS"),
                                      err, sizeof err);
    if (!redis)
        cb_log (CB_LOG_ERROR, "bad Redis URL", "error", err, NULL);
    return redis;
}

static void
s_deliver (self_t *self, notify_queue_t *queue, sender_t *sender, s_item_t *item)
{
    notify_record_t *rec = &item->rec;
    char err [400] = "";
    int channel = rec->channel >= 0 && rec->channel < NOTIFY_CHANNEL_COUNT ? rec->channel : 0;
    int rc = sender_send (sender, rec, err, sizeof err);
    int64_t now = cb_clock_now_ms ();
    if (rc == SEND_OK) {
        if (notify_queue_ack (queue, rec->did, now) == NQ_OK)
            atomic_fetch_add (&self->stats.delivered [channel], 1);
        else
            cb_log (CB_LOG_WARN, "sent but not acknowledged in Redis: it will be sent again",
                    "delivery", rec->did, NULL);
        cb_log (CB_LOG_DEBUG, "delivered", "delivery", rec->did, NULL);
        return;
    }
    int max = rc == SEND_PERMANENT ? rec->attempt + 1 : self->max_attempts;
    int attempt = 0;
    int outcome = notify_queue_fail (queue, rec->did, item->token, err,
                                     now + s_backoff (self, rec->attempt + 1), max, now, &attempt);
    char attempts [16];
    snprintf (attempts, sizeof attempts, "%d", attempt);
    if (outcome == NQ_DEAD) {
        atomic_fetch_add (&self->stats.dead [channel], 1);
        cb_log (CB_LOG_WARN, "dead letter", "delivery", rec->did, "channel",
                notify_channel_name (rec->channel), "attempts", attempts, "error", err, NULL);
    }
    else
    if (outcome == NQ_RETRY) {
        atomic_fetch_add (&self->stats.retried [channel], 1);
        cb_log (CB_LOG_INFO, "delivery failed, will retry", "delivery", rec->did,
                "attempts", attempts, "error", err, NULL);
    }
}

static void *
s_worker (void *arg)
{
    self_t *self = arg;
    cb_redis_t *redis = s_connect (self);
    notify_queue_t *queue = redis ? notify_queue_new (redis) : NULL;
    sender_t *sender = sender_new (self->rules, self->timeout_ms, &self->abandon);
    s_item_t item;
    while (s_queue_pop (self, &item)) {
        if (queue && sender)
            s_deliver (self, queue, sender, &item);
        notify_record_clear (&item.rec);
    }
    sender_destroy (&sender);
    notify_queue_destroy (&queue);
    cb_redis_destroy (&redis);
    pthread_mutex_lock (&self->lock);
    self->workers_alive--;
    pthread_cond_broadcast (&self->wake);
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

/* ---- private: the doorbell ---- */

static void *
s_doorbell (void *arg)
{
    self_t *self = arg;
    const char *bind = cb_config_str (self->config, "CIVICBUS_NOTIFIER_BIND");
    zsock_t *pull = zsock_new (ZMQ_PULL);
    if (pull) {
        zsock_set_rcvtimeo (pull, 200);
        zsock_set_linger (pull, 0);
        zsock_set_maxmsgsize (pull, 65536);
        if (zsock_attach (pull, bind, true)) {
            cb_log (CB_LOG_WARN, "cannot bind the doorbell: polling only", "bind", bind, NULL);
            zsock_destroy (&pull);
        }
    }
    while (pull) {
        pthread_mutex_lock (&self->lock);
        bool stopping = self->stopping;
        pthread_mutex_unlock (&self->lock);
        if (stopping || cb_service_stopping ())
            break;
        zmsg_t *msg = zmsg_recv (pull);
        if (msg) {
            zmsg_destroy (&msg);
            pthread_mutex_lock (&self->lock);
            self->rung = true;
            pthread_cond_signal (&self->wake);
            pthread_mutex_unlock (&self->lock);
        }
    }
    zsock_destroy (&pull);
    return NULL;
}

/* ---- private: fan-out and claims (main thread) ---- */

//  Fans out what the outbox holds. Returns the number of events handled,
//  or -1 when Redis is away.
static int
s_fanout_pass (self_t *self, cb_redis_t *redis, ticket_store_t *store, notify_queue_t *queue)
{
    notify_outbox_entry_t *entries = NULL;
    size_t count = 0;
    if (notify_queue_outbox (queue, S_OUTBOX_PER_BUCKET, &entries, &count) != NQ_OK)
        return -1;
    (void) redis;
    int handled = 0;
    cb_ticket_t *ticket = NULL;
    cb_event_t **history = NULL;
    size_t n_history = 0;
    char loaded [64] = "", blocked [64] = "";
    for (size_t i = 0; i < count && !cb_service_stopping (); i++) {
        notify_outbox_entry_t *e = &entries [i];
        if (strcmp (blocked, e->ticket_id) == 0)
            continue;           //  an earlier event of this ticket must go first
        if (strcmp (loaded, e->ticket_id) != 0) {
            if (ticket)
                civicbus__v1__ticket__free_unpacked (ticket, NULL);
            ticket_store_free_events (history, n_history);
            ticket = NULL;
            history = NULL;
            n_history = 0;
            loaded [0] = 0;
            int rc = ticket_store_load (store, e->ticket_id, &ticket);
            if (rc == TS_OK)
                rc = ticket_store_history (store, e->ticket_id, &history, &n_history);
            if (rc == TS_UNAVAILABLE)
                break;
            if (rc != TS_OK) {
                cb_log (CB_LOG_WARN, "outbox event of a ticket that does not load: dropped",
                        "event", e->member, NULL);
                notify_queue_discard (queue, e);
                continue;
            }
            snprintf (loaded, sizeof loaded, "%s", e->ticket_id);
        }
        size_t index = n_history;
        if (e->seq >= 1 && (size_t) e->seq <= n_history && history [e->seq - 1]->sequence == e->seq)
            index = (size_t) e->seq - 1;
        for (size_t k = 0; index == n_history && k < n_history; k++)
            if (history [k]->sequence == e->seq)
                index = k;
        if (index == n_history) {
            cb_log (CB_LOG_WARN, "outbox event not in the ticket's history: dropped",
                    "event", e->member, NULL);
            notify_queue_discard (queue, e);
            continue;
        }
        notify_plan_t plan = { 0 };
        if (notify_rules_decide (self->rules, ticket, history, n_history, index, &plan) < 0) {
            notify_plan_reset (&plan);
            snprintf (blocked, sizeof blocked, "%s", e->ticket_id);
            continue;
        }
        int created = 0;
        int rc = notify_queue_fanout (queue, e, &plan, cb_clock_now_ms (), &created);
        notify_plan_reset (&plan);
        if (rc == NQ_UNAVAILABLE)
            break;
        if (rc == NQ_OK) {
            atomic_fetch_add (&self->stats.fanned, 1);
            atomic_fetch_add (&self->stats.created, created);
            handled++;
        }
        else
        if (rc != NQ_DONE_ELSEWHERE)
            snprintf (blocked, sizeof blocked, "%s", e->ticket_id);
    }
    if (ticket)
        civicbus__v1__ticket__free_unpacked (ticket, NULL);
    ticket_store_free_events (history, n_history);
    free (entries);
    return handled;
}

//  Claims as many due deliveries as the work queue has room for. Returns
//  how many, or -1 when Redis is away.
static int
s_claim_pass (self_t *self, notify_queue_t *queue, int *cursor)
{
    size_t room = s_queue_room (self);
    if (room == 0)
        return 0;
    s_item_t item;
    memset (&item, 0, sizeof item);
    snprintf (item.token, sizeof item.token, "%s:%llu", self->id,
              (unsigned long long) ++self->claim_counter);
    notify_record_t *records = NULL;
    size_t count = 0;
    int rc = notify_queue_claim (queue, cb_clock_now_ms (), self->visibility_ms, item.token,
                                 room, cursor, &records, &count);
    if (rc < 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        item.rec = records [i];
        if (!s_queue_push (self, &item)) {
            //  Cannot happen (only main pushes and it measured the room);
            //  the claim lapses and someone sends it later.
            continue;           //  freed with the array below
        }
        memset (&records [i], 0, sizeof records [i]);    //  ownership moved
    }
    notify_records_free (records, count);
    atomic_fetch_add (&self->stats.claimed, (long) count);
    return (int) count;
}

static void
s_log_metrics (self_t *self, notify_queue_t *queue)
{
    char fields [NOTIFY_CHANNEL_COUNT * 3 + 6][2][40];
    const char *argv [2 * (NOTIFY_CHANNEL_COUNT * 3 + 6) + 1];
    size_t n = 0;
    for (int c = 0; c < NOTIFY_CHANNEL_COUNT; c++) {
        const char *kinds [] = { "delivered", "retried", "dead" };
        atomic_long *values [] = { &self->stats.delivered [c], &self->stats.retried [c],
                                   &self->stats.dead [c] };
        for (int k = 0; k < 3; k++) {
            snprintf (fields [n][0], 40, "%s_%s", kinds [k], notify_channel_name (c));
            snprintf (fields [n][1], 40, "%ld", atomic_load (values [k]));
            n++;
        }
    }
    snprintf (fields [n][0], 40, "events_fanned_out");
    snprintf (fields [n++][1], 40, "%ld", atomic_load (&self->stats.fanned));
    snprintf (fields [n][0], 40, "deliveries_created");
    snprintf (fields [n++][1], 40, "%ld", atomic_load (&self->stats.created));
    int64_t outbox = 0, pending = 0, dead = 0;
    if (notify_queue_depth (queue, &outbox, &pending, &dead) == NQ_OK) {
        snprintf (fields [n][0], 40, "outbox");
        snprintf (fields [n++][1], 40, "%lld", (long long) outbox);
        snprintf (fields [n][0], 40, "pending");
        snprintf (fields [n++][1], 40, "%lld", (long long) pending);
        snprintf (fields [n][0], 40, "dead_letters");
        snprintf (fields [n++][1], 40, "%lld", (long long) dead);
    }
    for (size_t i = 0; i < n; i++) {
        argv [2 * i] = fields [i][0];
        argv [2 * i + 1] = fields [i][1];
    }
    //  cb_log takes varargs; the list is fixed in size, so spell it out.
    const char *a [2 * (NOTIFY_CHANNEL_COUNT * 3 + 6)] = { NULL };
    for (size_t i = 0; i < 2 * n; i++)
        a [i] = argv [i];
    cb_log (CB_LOG_INFO, "metrics", a [0], a [1], a [2], a [3], a [4], a [5], a [6], a [7],
            a [8], a [9], a [10], a [11], a [12], a [13], a [14], a [15], a [16], a [17],
            a [18], a [19], a [20], a [21], a [22], a [23], a [24], a [25], a [26], a [27],
            a [28], a [29], a [30], a [31], a [32], a [33], a [34], a [35], NULL);
}

//  Waits until a worker made room, the doorbell rang, or `ms` passed.
static void
s_wait (self_t *self, int ms)
{
    struct timespec until;
    clock_gettime (CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long) (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock (&self->lock);
    if (!self->rung)
        pthread_cond_timedwait (&self->wake, &self->lock, &until);
    pthread_mutex_unlock (&self->lock);
}

/* ---- private: start and stop ---- */

static notify_rules_t *
s_load_rules (const char *path)
{
    char err [512] = "";
    if (!path || !*path) {
        cb_log (CB_LOG_WARN, "CIVICBUS_NOTIFIER_CONFIG is not set: no rules, nobody is told", NULL);
        return notify_rules_new ("{}", 2, err, sizeof err);
    }
    size_t len = 0;
    char *text = cb_file_read (path, 16u * 1024 * 1024, &len, err, sizeof err);
    if (!text) {
        cb_log (CB_LOG_ERROR, "cannot read the notifier configuration", "file", path,
                "error", err, NULL);
        return NULL;
    }
    notify_rules_t *rules = notify_rules_new (text, len, err, sizeof err);
    free (text);
    if (!rules)
        cb_log (CB_LOG_ERROR, "bad notifier configuration", "file", path, "error", err, NULL);
    return rules;
}

//  Gives back what was claimed but never started.
static void
s_release_queued (self_t *self, notify_queue_t *queue)
{
    pthread_mutex_lock (&self->lock);
    size_t released = 0;
    while (self->count > 0) {
        s_item_t *item = &self->items [self->head];
        if (queue && notify_queue_release (queue, item->rec.did, item->token,
                                           cb_clock_now_ms ()) == NQ_OK)
            released++;
        notify_record_clear (&item->rec);
        self->head = (self->head + 1) % self->cap;
        self->count--;
    }
    pthread_mutex_unlock (&self->lock);
    if (released) {
        char text [24];
        snprintf (text, sizeof text, "%zu", released);
        cb_log (CB_LOG_INFO, "claimed deliveries given back", "count", text, NULL);
    }
}

static void
s_stop_workers (self_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->stopping = true;
    pthread_cond_broadcast (&self->has_work);
    //  Wait for running sends up to the deadline, then abort them.
    struct timespec until;
    clock_gettime (CLOCK_MONOTONIC, &until);
    until.tv_sec += self->stop_ms / 1000;
    until.tv_nsec += (long) (self->stop_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (self->workers_alive > 0)
        if (pthread_cond_timedwait (&self->wake, &self->lock, &until) == ETIMEDOUT)
            break;
    if (self->workers_alive > 0) {
        cb_log (CB_LOG_WARN, "stop deadline passed: aborting sends in flight (retried later)", NULL);
        atomic_store (&self->abandon, 1);
    }
    pthread_mutex_unlock (&self->lock);
    for (int i = 0; i < self->n_workers; i++)
        pthread_join (self->workers [i], NULL);
    if (self->doorbell_running)
        pthread_join (self->doorbell, NULL);
}

static int
s_run (self_t *self)
{
    cb_redis_t *redis = s_connect (self);
    if (!redis)
        return 2;
    if (cb_redis_connect_retry (redis, 10000))
        cb_log (CB_LOG_WARN, "Redis not answering yet; will keep trying", "redis",
                cb_redis_where (redis), NULL);
    ticket_store_t *store = ticket_store_new (redis);
    notify_queue_t *queue = notify_queue_new (redis);
    if (!store || !queue) {
        ticket_store_destroy (&store);
        notify_queue_destroy (&queue);
        cb_redis_destroy (&redis);
        return 2;
    }
    for (int i = 0; i < self->n_workers; i++) {
        if (pthread_create (&self->workers [i], NULL, s_worker, self) != 0) {
            self->n_workers = i;
            break;
        }
        pthread_mutex_lock (&self->lock);
        self->workers_alive++;
        pthread_mutex_unlock (&self->lock);
    }
    const char *bind = cb_config_str (self->config, "CIVICBUS_NOTIFIER_BIND");
    if (bind && *bind)
        self->doorbell_running = pthread_create (&self->doorbell, NULL, s_doorbell, self) == 0;

    char workers [16];
    snprintf (workers, sizeof workers, "%d", self->n_workers);
    cb_log (CB_LOG_INFO, "ready", "notifier", self->id, "workers", workers,
            "redis", cb_redis_where (redis), NULL);

    int cursor = 0;
    int64_t next_fanout = 0, next_metrics = cb_clock_mono_ms ()
        + cb_config_int (self->config, "CIVICBUS_NOTIFIER_METRICS_S") * 1000;
    while (!cb_service_stopping ()) {
        int64_t mono = cb_clock_mono_ms ();
        bool busy = false;
        pthread_mutex_lock (&self->lock);
        bool rung = self->rung;
        self->rung = false;
        pthread_mutex_unlock (&self->lock);
        if (rung || mono >= next_fanout) {
            int handled = s_fanout_pass (self, redis, store, queue);
            next_fanout = mono + self->poll_ms;
            //  A full page from some bucket: there is more, go again now.
            busy = handled >= S_OUTBOX_PER_BUCKET;
            if (handled > 0)
                next_fanout = mono;     //  new deliveries: claim, then look again soon
        }
        int claimed = s_claim_pass (self, queue, &cursor);
        if (claimed > 0 && s_queue_room (self) == 0)
            busy = true;
        if (mono >= next_metrics) {
            s_log_metrics (self, queue);
            next_metrics = mono + cb_config_int (self->config, "CIVICBUS_NOTIFIER_METRICS_S") * 1000;
        }
        if (!busy && claimed <= 0)
            s_wait (self, self->poll_ms);
        else
        if (!busy)
            s_wait (self, 20);
    }
    cb_log (CB_LOG_INFO, "stopping", "notifier", self->id, NULL);
    pthread_mutex_lock (&self->lock);
    self->stopping = true;
    pthread_mutex_unlock (&self->lock);
    s_release_queued (self, queue);
    s_stop_workers (self);
    s_log_metrics (self, queue);
    notify_queue_destroy (&queue);
    ticket_store_destroy (&store);
    cb_redis_destroy (&redis);
    return 0;
}

int
main (int argc, char **argv)
{
    const cb_service_info_t info = {
        "notifier",
        "Tells people what happened: hotline push-back, SMS to reporters, reminders to\n"
        "departments, supervisor alerts and webhooks, from the Redis outbox, with\n"
        "retries, backoff and dead letters (docs/NOTIFIER.md).",
        NULL,
        s_settings
    };
    cb_config_t *config;
    int rc = cb_service_start (&info, argc, argv, &config);
    if (rc)
        return rc < 0 ? 2 : 0;
    self_t *self = calloc (1, sizeof *self);
    if (!self || sodium_init () < 0 || curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free (self);
        cb_config_destroy (&config);
        return 2;
    }
    self->config = config;
    self->poll_ms = (int) cb_config_int (config, "CIVICBUS_NOTIFIER_POLL_MS");
    self->timeout_ms = (int) cb_config_int (config, "CIVICBUS_NOTIFIER_TIMEOUT_MS");
    self->visibility_ms = cb_config_int (config, "CIVICBUS_NOTIFIER_VISIBILITY_MS");
    self->max_attempts = (int) cb_config_int (config, "CIVICBUS_NOTIFIER_MAX_ATTEMPTS");
    self->backoff_ms = cb_config_int (config, "CIVICBUS_NOTIFIER_BACKOFF_MS");
    self->backoff_max_ms = cb_config_int (config, "CIVICBUS_NOTIFIER_BACKOFF_MAX_MS");
    self->stop_ms = (int) cb_config_int (config, "CIVICBUS_NOTIFIER_STOP_MS");
    self->n_workers = (int) cb_config_int (config, "CIVICBUS_NOTIFIER_WORKERS");
    const char *id = cb_config_str (config, "CIVICBUS_NOTIFIER_ID");
    if (id && *id)
        snprintf (self->id, sizeof self->id, "%s", id);
    else {
        char host [40] = "notifier";
        gethostname (host, sizeof host - 1);
        snprintf (self->id, sizeof self->id, "%s-%d", host, (int) getpid ());
    }
    rc = 0;
    if (self->visibility_ms < 2 * (int64_t) self->timeout_ms) {
        fprintf (stderr, "CIVICBUS_NOTIFIER_VISIBILITY_MS: %lld must be at least twice "
                 "CIVICBUS_NOTIFIER_TIMEOUT_MS (%d), or a slow send would be claimed twice\n",
                 (long long) self->visibility_ms, self->timeout_ms);
        rc = 2;
    }
    if (rc == 0)
        self->rules = s_load_rules (cb_config_str (config, "CIVICBUS_NOTIFIER_CONFIG"));
    if (rc == 0 && !self->rules) {
        fprintf (stderr, "CIVICBUS_NOTIFIER_CONFIG: the configuration is not usable (see the log)\n");
        rc = 2;
    }
    self->cap = (size_t) self->n_workers * S_QUEUE_PER_WORKER;
    self->items = calloc (self->cap, sizeof *self->items);
    self->workers = calloc ((size_t) self->n_workers, sizeof *self->workers);
    if (rc == 0 && (!self->items || !self->workers))
        rc = 2;
    if (rc == 0) {
        pthread_condattr_t attr;
        pthread_condattr_init (&attr);
        pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
        pthread_mutex_init (&self->lock, NULL);
        pthread_cond_init (&self->has_work, &attr);
        pthread_cond_init (&self->wake, &attr);
        pthread_condattr_destroy (&attr);
        rc = s_run (self);
        pthread_cond_destroy (&self->has_work);
        pthread_cond_destroy (&self->wake);
        pthread_mutex_destroy (&self->lock);
    }
    notify_rules_destroy (&self->rules);
    free (self->items);
    free (self->workers);
    free (self);
    curl_global_cleanup ();
    cb_config_destroy (&config);
    return rc;
}
