/*  writer.c — every new ticket's Redis work, pipelined across requests
    (common/redis_batch.h): the duplicate search, the candidates' states,
    the create script, the duplicate index and KPI counters, and for a
    repeat the first ticket. One writer thread owns one connection and
    sends whatever all requests have queued as one batch per round, so
    Redis pays one read, one write and one AOF write per batch instead of
    per ticket, and no HTTP thread sleeps on Redis.

    A job walks through stages, one round trip each, with everybody else's
    jobs of that round:
        FIND    the duplicate search (only when duplicates are on and the
                ticket takes part), and the id's number from the day
                counter (ts_seq_append)                   -> CHECK or CREATE
        CHECK   HGET st of each candidate: the first open one is the
                parent; final or gone ones before it leave the index
                                                        -> CREATE
        CREATE  those removals, the create script (which also counts the
                report in the repeat-report rate) and, for an unflagged
                report, its entry in the duplicate index under the id the
                create gives it, before the answer (so the next report
                finds it)                                 -> LOAD, done
        AFTER   the index entry after all, when FIND got no number
                                                        -> done
        LOAD    a repeat: the first ticket              -> done
    A job is done when its result is known; then (on the writer thread) the
    doorbell of a created ticket is rung, counters counted, and the
    submitter's `done` called. Failures mean what they meant before: the
    duplicate steps are best effort (logged, the ticket stored unflagged);
    the create's failure is 503 with the breaker opened. */

#include "intake.h"
#include "civicbus/bus.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_json.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A NOSCRIPT (Redis restarted between rounds) is retried this often.
#define S_NOSCRIPT_TRIES 3

typedef enum { S_FIND, S_CHECK, S_CREATE, S_AFTER, S_LOAD } s_stage_t;

typedef struct {
    redis_batch_job_t job;          //  first: a job pointer is an s_job_t pointer
    intake_t *intake;
    intake_writer_t *writer;        //  all its rounds on this one
    cb_ticket_t *t;
    apikey_info_t key;
    char idem [256];
    int idem_ttl_s;
    bool check_same;
    s_stage_t stage;
    int noscript;
    char candidates [DUP_CANDIDATES][CB_TICKET_ID_MAX];
    bool candidate_valid [DUP_CANDIDATES];
    int n_candidates;
    int drops [DUP_CANDIDATES];     //  candidates to drop from the index
    int n_drops;
    ts_create_t *create;
    int64_t now_ms;                 //  the create's time, fixed when FIND takes its number
    long long seq;                  //  the id's number from FIND, or 0
    dup_add_t add;                  //  the index entry (CREATE or AFTER)
    bool add_pending;               //  `add` is prepared and not yet written
    char id [CB_TICKET_ID_MAX];
    intake_submit_t *out;
    intake_submit_done_fn *done;
    void *done_arg;
} s_job_t;

/* ---- private ---- */

static bool
s_dups_on (const s_job_t *job)
{
    return job->intake->duplicates != NULL;
}

//  People's reports count in the repeat-report rate while duplicates are
//  looked for; sensors fold their repeats instead (sensors.h).
static bool
s_counts_in_kpi (const s_job_t *job)
{
    return s_dups_on (job) && job->t->source != CIVICBUS__V1__SOURCE__SOURCE_SENSOR;
}

static bool
s_flagged (const s_job_t *job)
{
    return job->t->probable_duplicate_of && *job->t->probable_duplicate_of;
}

//  An unflagged report goes into the duplicate index; a flagged one does
//  not: later reports point at the original.
static bool
s_gets_indexed (const s_job_t *job)
{
    return s_counts_in_kpi (job) && !s_flagged (job);
}

static void
s_ring (intake_t *intake, intake_writer_t *writer, const char *id)
{
    Civicbus__V1__Doorbell doorbell = CIVICBUS__V1__DOORBELL__INIT;
    doorbell.ticket_id = (char *) id;
    doorbell.reason = (char *) "received";
    if (!writer->doorbell
    ||  cb_bus_send (writer->doorbell, NULL, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DOORBELL, id,
                     &doorbell.base)) {
        httpd_count (intake->httpd, intake->count_doorbells_dropped);
        cb_log (CB_LOG_DEBUG, "doorbell not sent", "ticket", id, NULL);
    }
}

//  The job's result is known: tell the submitter and forget the job.
static int
s_finish (s_job_t *job, intake_submit_result_t result)
{
    intake_t *intake = job->intake;
    const cb_ticket_t *t = job->t;
    job->out->result = result;
    if (result == INTAKE_SUBMIT_CREATED) {
        //  The doorbell after the store (Redis confirmed it), from this
        //  thread, back to back with the round's others.
        s_ring (intake, job->writer, job->id);
        httpd_count (intake->httpd, intake->count_created);
        if (t->location && t->location->ungridded)
            httpd_count (intake->httpd, intake->count_ungridded);
        //  debug: one line per ticket costs a fifth of the CPU at campaign
        //  rates (bench/README.md); /metrics counts them.
        cb_log (CB_LOG_DEBUG, "ticket stored", "ticket", job->id,
                "source", cb_source_name (t->source) ? cb_source_name (t->source) : "",
                "category", t->category ? t->category : "",
                "grid", t->location && t->location->grid_code ? t->location->grid_code : "",
                "ungridded", t->location && t->location->ungridded ? "true" : "false",
                "key", job->key.name, NULL);
    }
    else
    if (result == INTAKE_SUBMIT_REPEAT) {
        httpd_count (intake->httpd, intake->count_repeated);
        cb_log (CB_LOG_INFO, "repeat answered with the first ticket", "ticket", job->id,
                "key", job->key.name, NULL);
    }
    ts_create_destroy (&job->create);
    intake_submit_done_fn *done = job->done;
    intake_submit_t *out = job->out;
    void *arg = job->done_arg;
    free (job);
    done (out, arg);                //  may free the ticket: the job is gone first
    return REDIS_BATCH_DONE;
}

static int
s_unavailable (s_job_t *job, const char *what, const char *why)
{
    httpd_redis_failed (job->intake->httpd);
    cb_log (CB_LOG_WARN, "redis unavailable", "during", what, "error", why ? why : "", NULL);
    job->out->unavailable = what;
    return s_finish (job, INTAKE_SUBMIT_UNAVAILABLE);
}

static int
s_failed (s_job_t *job, const char *fmt, const char *detail)
{
    cb_error_set (&job->out->err, "internal", "", fmt, detail);
    return s_finish (job, INTAKE_SUBMIT_FAILED);
}

//  A script met NOSCRIPT (Redis restarted): the batcher reloads its
//  scripts before the next round, where this job runs it again.
static bool
s_retry_noscript (s_job_t *job, const redisReply *reply)
{
    return cb_reply_is_error (reply, "NOSCRIPT") && job->noscript++ < S_NOSCRIPT_TRIES;
}

//  Builds the create (once): the script's arguments, the KPI count, the
//  number FIND took and, for an unflagged report that takes part, its
//  duplicate-index entry under the id it will get. 0, or -1 when out of
//  memory.
static int
s_create_prepare (s_job_t *job)
{
    intake_t *intake = job->intake;
    ticket_actor_t actor = { CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER, job->key.name, NULL };
    job->create = ts_create_new (job->t, intake->district, job->idem, job->idem_ttl_s, &actor,
                                 job->now_ms ? job->now_ms : cb_clock_now_ms ());
    if (!job->create)
        return -1;
    int rc = 0;
    if (s_counts_in_kpi (job)) {
        char area [96];
        dup_kpi_area (job->t, area, sizeof area);
        rc |= ts_create_count_kpi (job->create, area, s_flagged (job), DUP_KPI_TTL_S);
    }
    char id [CB_TICKET_ID_MAX] = "";
    if (rc == 0 && job->seq && ts_create_use_seq (job->create, job->seq, id, sizeof id))
        job->seq = 0;                   //  cannot happen with a valid district: the script numbers it
    if (rc == 0 && s_gets_indexed (job)) {
        char *saved = job->t->id;
        job->t->id = id;                //  the id it will have (none yet without a number)
        job->add_pending = *id && dup_add_prepare (job->t, &job->add);
        job->t->id = saved;
    }
    if (rc)
        ts_create_destroy (&job->create);
    return rc ? -1 : 0;
}

static int
s_append (redis_batch_job_t *base, cb_redis_t *redis)
{
    s_job_t *job = (s_job_t *) base;
    intake_t *intake = job->intake;
    intake_writer_t *writer = job->writer;
    switch (job->stage) {
        case S_FIND: {
            if (!job->now_ms)
                job->now_ms = cb_clock_now_ms ();
            if (dup_find_append (intake->duplicates, redis, &writer->dup_scripts, job->t,
                                 job->now_ms))
                return -1;
            int n = ts_seq_append (redis, job->idem, job->now_ms);
            return n < 0 ? -1 : 1 + n;
        }
        case S_CHECK: {
            int n = 0;
            for (int i = 0; i < job->n_candidates; i++) {
                char key [128];
                job->candidate_valid [i] = ts_key (key, sizeof key, "t", job->candidates [i]) == 0;
                if (job->candidate_valid [i]) {
                    if (cb_redis_append (redis, "HGET %s st", key))
                        return -1;
                    n++;
                }
            }
            return n;
        }
        case S_CREATE: {
            for (int i = 0; i < job->n_drops; i++)
                if (dup_drop_append (redis, &writer->dup_scripts, job->t,
                                     job->candidates [job->drops [i]]))
                    return -1;
            if (!job->create && s_create_prepare (job))
                return job->n_drops;        //  out of memory: the reply says so
            if (ts_create_append (job->create, redis, &writer->create_script))
                return -1;
            //  The index entry rides with the create: after it in the
            //  pipeline, so a repeat (which stores nothing) leaves an entry
            //  of an id that does not exist, which the next search that
            //  meets it drops (CHECK: gone).
            if (job->add_pending && job->seq)
                return dup_add_append (redis, &writer->dup_scripts, &job->add)
                     ? -1 : job->n_drops + 2;
            return job->n_drops + 1;
        }
        case S_AFTER:
            return dup_add_append (redis, &writer->dup_scripts, &job->add) ? -1 : 1;
        case S_LOAD: {
            char key [128];
            if (ts_key (key, sizeof key, "t", job->id))
                return 0;
            return cb_redis_append (redis, "HGET %s pb", key) ? -1 : 1;
        }
    }
    return -1;
}

static int
s_reply_find (s_job_t *job, redisReply **replies, size_t n_replies, bool failed, const char *why)
{
    if (!failed && s_retry_noscript (job, replies [0]))
        return REDIS_BATCH_AGAIN;
    if (!failed && n_replies > 1)
        job->seq = ts_seq_reply (replies + 1, n_replies - 1);
    int n = failed ? -1 : dup_find_candidates (replies [0], job->candidates, DUP_CANDIDATES);
    if (n < 0)
        cb_log (CB_LOG_WARN, "duplicate check failed; stored unflagged", "error",
                failed ? (why ? why : "no reply") : replies [0]->type == REDIS_REPLY_ERROR ? replies [0]->str : "?",
                NULL);
    job->n_candidates = n > 0 ? n : 0;
    job->stage = job->n_candidates ? S_CHECK : S_CREATE;
    return REDIS_BATCH_AGAIN;
}

static int
s_reply_check (s_job_t *job, redisReply **replies, bool failed, const char *why)
{
    job->stage = S_CREATE;
    if (failed) {
        cb_log (CB_LOG_WARN, "duplicate check failed; stored unflagged", "error", why, NULL);
        return REDIS_BATCH_AGAIN;
    }
    const char *parent = NULL;
    size_t at = 0;
    for (int i = 0; i < job->n_candidates && !parent; i++) {
        //  Not a ticket id, or no such ticket: gone. An unreadable state
        //  (an error reply) is neither open nor gone: skipped, as before.
        const redisReply *reply = job->candidate_valid [i] ? replies [at++] : NULL;
        bool gone = !reply || reply->type == REDIS_REPLY_NIL;
        bool final = reply && reply->type == REDIS_REPLY_STRING
                  && ticket_state_is_final ((cb_state_t) atoi (reply->str));
        if (reply && reply->type == REDIS_REPLY_STRING && !final)
            parent = job->candidates [i];
        else
        if (gone || final)
            job->drops [job->n_drops++] = i;
    }
    if (parent) {
        intake_t *intake = job->intake;
        int radius = 0, window = 0;
        dup_index_limits (intake->duplicates, &radius, &window);
        if (dup_flag (job->t, parent, radius, window, intake->duplicate_hold) == 0)
            httpd_count (intake->httpd, intake->count_duplicates);
    }
    return REDIS_BATCH_AGAIN;
}

//  The index entry was not written (`reply`, NULL when none came, or the
//  connection failed: `why`): the ticket is stored, unindexed (best
//  effort, as every duplicate step).
static void
s_add_failed (s_job_t *job, const redisReply *reply, const char *why)
{
    cb_log (CB_LOG_WARN, "duplicate index not updated", "ticket", job->id, "error",
            why ? why : reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply",
            NULL);
}

static int
s_reply_create (s_job_t *job, redisReply **replies, size_t n, bool failed, const char *why)
{
    //  After the index removals: the create, then the index entry if sent.
    //  When the connection failed after the create's reply came, the
    //  ticket is stored and answered as such (its index entry is lost).
    size_t at = (size_t) job->n_drops;
    bool add_sent = job->add_pending && job->seq;
    redisReply *reply = job->create && at < n ? replies [at] : NULL;
    if (!reply && failed)
        return s_unavailable (job, "store", why);
    if (!job->create)
        return s_failed (job, "%s", "out of memory");
    if (!reply)
        return s_failed (job, "%s", "internal error");
    if (s_retry_noscript (job, reply))
        return REDIS_BATCH_AGAIN;
    job->n_drops = 0;                       //  done, whatever came of them
    int rc = ts_create_reply (job->create, job->t, reply, job->id, sizeof job->id);
    if (rc == TS_OK) {
        if (add_sent) {
            const redisReply *added = at + 1 < n ? replies [at + 1] : NULL;
            if (added && added->type != REDIS_REPLY_ERROR)
                job->add_pending = false;           //  written
            else
            if (!added || !cb_reply_is_error (added, "NOSCRIPT")) {
                s_add_failed (job, added, NULL);
                job->add_pending = false;
            }
            //  NOSCRIPT: the batcher reloads its scripts; AFTER sends it again.
        }
        else
        if (s_gets_indexed (job))
            //  FIND took no number: the entry needs the id the create gave.
            job->add_pending = dup_add_prepare (job->t, &job->add);
        if (job->add_pending) {
            job->stage = S_AFTER;
            return REDIS_BATCH_AGAIN;
        }
        return s_finish (job, INTAKE_SUBMIT_CREATED);
    }
    if (rc == TS_REPEAT) {
        job->stage = S_LOAD;
        return REDIS_BATCH_AGAIN;
    }
    if (rc == TS_UNAVAILABLE)
        return s_unavailable (job, "store", reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    return s_failed (job, "%s", "the ticket could not be stored");
}

static int
s_reply_after (s_job_t *job, redisReply **replies, size_t n, bool failed, const char *why)
{
    if (failed || n < 1 || replies [0]->type == REDIS_REPLY_ERROR)
        s_add_failed (job, n ? replies [0] : NULL, failed ? why : NULL);
    return s_finish (job, INTAKE_SUBMIT_CREATED);
}

static int
s_reply_load (s_job_t *job, redisReply **replies, size_t n, bool failed, const char *why)
{
    if (failed)
        return s_unavailable (job, "load", why);
    const redisReply *reply = n ? replies [0] : NULL;
    if (reply && cb_reply_is_error (reply, "LOADING"))
        return s_unavailable (job, "load", reply->str);
    cb_ticket_t *first = reply && reply->type == REDIS_REPLY_STRING
        ? civicbus__v1__ticket__unpack (NULL, reply->len, (const uint8_t *) reply->str) : NULL;
    if (!first)
        return s_failed (job, "the first ticket (%s) of this idempotency key cannot be read",
                         job->id);
    job->out->first = first;
    if (job->check_same && !intake_same_request (first, job->t))
        return s_finish (job, INTAKE_SUBMIT_KEY_REUSED);
    return s_finish (job, INTAKE_SUBMIT_REPEAT);
}

static int
s_reply (redis_batch_job_t *base, redisReply **replies, size_t n, bool failed, const char *why)
{
    s_job_t *job = (s_job_t *) base;
    switch (job->stage) {
        case S_FIND:   return s_reply_find (job, replies, n, failed || n < 1, why);
        case S_CHECK:  return s_reply_check (job, replies, failed, why);
        case S_CREATE: return s_reply_create (job, replies, n, failed, why);
        case S_AFTER:  return s_reply_after (job, replies, n, failed, why);
        case S_LOAD:   return s_reply_load (job, replies, n, failed, why);
    }
    return s_failed (job, "%s", "internal error");
}

/* ---- public ---- */

int
intake_writer_start (intake_t *intake, const char *redis_url, int timeout_ms,
                     const char *doorbell_endpoints, int n_writers)
{
    intake->writers = calloc ((size_t) n_writers, sizeof *intake->writers);
    if (!intake->writers)
        return -1;
    intake->n_writers = (size_t) n_writers;
    atomic_init (&intake->next_writer, 0);
    for (size_t i = 0; i < intake->n_writers; i++) {
        intake_writer_t *writer = &intake->writers [i];
        writer->create_script = (cb_script_t) CB_SCRIPT (ticket_store_create_source ());
        dup_scripts_init (&writer->dup_scripts);
        writer->batch = redis_batch_new (redis_url, timeout_ms, INTAKE_BATCH_MAX);
        if (!writer->batch)
            return -1;
        //  Without a doorbell socket the intake still works: the
        //  dispatcher's sweep finds every stored ticket, only later.
        writer->doorbell = cb_bus_push_new (doorbell_endpoints);
        if (redis_batch_script (writer->batch, &writer->create_script)
        ||  redis_batch_script (writer->batch, &writer->dup_scripts.find)
        ||  redis_batch_script (writer->batch, &writer->dup_scripts.add)
        ||  redis_batch_script (writer->batch, &writer->dup_scripts.drop)
        ||  redis_batch_start (writer->batch))
            return -1;
    }
    return 0;
}

void
intake_writer_stop (intake_t *intake)
{
    for (size_t i = 0; i < intake->n_writers; i++)
        if (intake->writers [i].batch)
            redis_batch_stop (intake->writers [i].batch);     //  in-flight batches finish
    for (size_t i = 0; i < intake->n_writers; i++) {
        redis_batch_destroy (&intake->writers [i].batch);
        zsock_destroy (&intake->writers [i].doorbell);
    }
    free (intake->writers);
    intake->writers = NULL;
    intake->n_writers = 0;
}

void
intake_writer_submit (intake_t *intake, const apikey_info_t *key, cb_ticket_t *t,
                      const char *idem_key, int idem_ttl_s, bool check_same,
                      intake_submit_t *out, intake_submit_done_fn *done, void *arg)
{
    s_job_t *job = calloc (1, sizeof *job);
    if (!job) {
        out->result = INTAKE_SUBMIT_FAILED;
        cb_error_set (&out->err, "internal", "", "out of memory");
        done (out, arg);
        return;
    }
    job->job = (redis_batch_job_t) { .append = s_append, .reply = s_reply };
    job->intake = intake;
    //  In turn over the writers: while one waits for its round's replies,
    //  another sends (one connection is one round in flight at a time).
    unsigned turn = atomic_fetch_add_explicit (&intake->next_writer, 1, memory_order_relaxed);
    job->writer = &intake->writers [turn % intake->n_writers];
    job->t = t;
    job->key = *key;
    snprintf (job->idem, sizeof job->idem, "%s", idem_key);
    job->idem_ttl_s = idem_ttl_s;
    job->check_same = check_same;
    job->stage = s_dups_on (job) && dup_applies (t) ? S_FIND : S_CREATE;
    job->out = out;
    job->done = done;
    job->done_arg = arg;
    if (redis_batch_submit (job->writer->batch, &job->job)) {
        free (job);
        out->result = INTAKE_SUBMIT_UNAVAILABLE;
        out->unavailable = "stopping";
        done (out, arg);
    }
}
