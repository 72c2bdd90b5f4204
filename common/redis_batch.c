/*  redis_batch.c — pipelined Redis work from many threads on one connection
    (see redis_batch.h).

    The queue is a singly linked list under one mutex; a submit is a push
    and a signal, O(1). The writer takes the whole list (up to max_jobs) at
    once, so the lock is held for a pointer walk, never across I/O. Replies
    of one round are read into one array that grows to the largest round
    seen and is reused. */

#include "civicbus/redis_batch.h"
#include "civicbus/log.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SCRIPTS_MAX 16

struct _redis_batch_t {
    cb_redis_t *redis;                  //  the writer thread's only
    size_t max_jobs;
    cb_script_t *scripts [S_SCRIPTS_MAX];
    size_t n_scripts;
    bool scripts_loaded;                //  writer thread only
    pthread_mutex_t lock;
    pthread_cond_t wake;
    redis_batch_job_t *head, *tail;     //  queued, oldest first (under lock)
    size_t queued;
    bool stopping;                      //  under lock
    bool started;
    pthread_t thread;
    redisReply **replies;               //  writer thread only
    size_t replies_cap;
    atomic_ullong rounds, jobs, commands;
};

/* ---- private ---- */

//  Connects and loads the scripts when needed. 0, or -1 with the reason in
//  cb_redis_error.
static int
s_ready (redis_batch_t *self)
{
    if (!cb_redis_connected (self->redis)) {
        self->scripts_loaded = false;
        if (cb_redis_connect (self->redis))
            return -1;
    }
    for (size_t i = 0; !self->scripts_loaded && i < self->n_scripts; i++)
        if (cb_redis_script_load (self->redis, self->scripts [i]))
            return -1;
    self->scripts_loaded = true;
    return 0;
}

static int
s_replies_fit (redis_batch_t *self, size_t n)
{
    if (n <= self->replies_cap)
        return 0;
    size_t cap = self->replies_cap ? self->replies_cap : 64;
    while (cap < n)
        cap *= 2;
    redisReply **replies = realloc (self->replies, cap * sizeof *replies);
    if (!replies)
        return -1;
    self->replies = replies;
    self->replies_cap = cap;
    return 0;
}

//  One round: appends every job's commands, reads every reply, hands them
//  out. Jobs that ask AGAIN are returned as a list, in their order.
static redis_batch_job_t *
s_round (redis_batch_t *self, redis_batch_job_t *round)
{
    bool failed = s_ready (self) != 0;
    size_t total = 0, n_jobs = 0;
    for (redis_batch_job_t *job = round; job; job = job->next) {
        job->appended = failed ? -1 : job->append (job, self->redis);
        if (job->appended < 0)
            failed = !cb_redis_connected (self->redis);
        else {
            total += (size_t) job->appended;
            n_jobs++;
        }
    }
    //  Replies are read only while the connection holds; a lost connection
    //  loses every reply after it (hiredis drops the context).
    if (!failed && s_replies_fit (self, total)) {
        //  Out of memory: nobody gets replies, and the unread ones would
        //  answer the next round's commands, so the connection starts over.
        failed = true;
        total = 0;
        cb_redis_connect (self->redis);
    }
    size_t got = 0;
    while (!failed && got < total) {
        redisReply *reply = cb_redis_get_reply (self->redis);
        if (!reply)
            failed = true;
        else {
            if (cb_reply_is_error (reply, "NOSCRIPT"))
                self->scripts_loaded = false;
            self->replies [got++] = reply;
        }
    }
    for (size_t i = got; i < total; i++)
        self->replies [i] = NULL;
    if (total) {
        atomic_fetch_add_explicit (&self->rounds, 1, memory_order_relaxed);
        atomic_fetch_add_explicit (&self->jobs, n_jobs, memory_order_relaxed);
        atomic_fetch_add_explicit (&self->commands, total, memory_order_relaxed);
    }
    char why [256];
    snprintf (why, sizeof why, "%s", failed ? cb_redis_error (self->redis) : "");

    redis_batch_job_t *again = NULL, **again_tail = &again;
    size_t at = 0;
    redis_batch_job_t *job = round;
    while (job) {
        redis_batch_job_t *next = job->next;
        size_t n = job->appended > 0 && total ? (size_t) job->appended : 0;
        bool job_failed = job->appended < 0 || at + n > got || (failed && total == 0);
        job->next = NULL;
        int rc = job->reply (job, n ? self->replies + at : NULL, n, job_failed,
                             job_failed ? (why [0] ? why : "redis unavailable") : NULL);
        if (rc == REDIS_BATCH_AGAIN) {
            *again_tail = job;
            again_tail = &job->next;
        }
        at += n;
        job = next;
    }
    for (size_t i = 0; i < got; i++)
        freeReplyObject (self->replies [i]);
    return again;
}

static void *
s_writer (void *arg)
{
    redis_batch_t *self = arg;
    redis_batch_job_t *again = NULL;
    pthread_mutex_lock (&self->lock);
    while (true) {
        while (!self->head && !again && !self->stopping)
            pthread_cond_wait (&self->wake, &self->lock);
        if (!self->head && !again)
            break;                  //  stopping, and nothing left
        //  The jobs that asked AGAIN go first: they are the oldest.
        redis_batch_job_t *round = again, **tail = &round;
        size_t taken = 0;
        while (*tail) {
            tail = &(*tail)->next;
            taken++;
        }
        while (self->head && taken < self->max_jobs) {
            redis_batch_job_t *job = self->head;
            self->head = job->next;
            job->next = NULL;
            *tail = job;
            tail = &job->next;
            taken++;
            self->queued--;
        }
        if (!self->head)
            self->tail = NULL;
        pthread_mutex_unlock (&self->lock);
        again = s_round (self, round);
        pthread_mutex_lock (&self->lock);
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

/* ---- public ---- */

redis_batch_t *
redis_batch_new (const char *redis_url, int timeout_ms, size_t max_jobs)
{
    assert (redis_url);
    redis_batch_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    char err [256] = "";
    self->redis = cb_redis_new (redis_url, timeout_ms, err, sizeof err);
    if (!self->redis) {
        cb_log (CB_LOG_ERROR, "redis batch: bad URL", "error", err [0] ? err : "out of memory",
                NULL);
        free (self);
        return NULL;
    }
    self->max_jobs = max_jobs ? max_jobs : 1;
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    atomic_init (&self->rounds, 0);
    atomic_init (&self->jobs, 0);
    atomic_init (&self->commands, 0);
    return self;
}

void
redis_batch_destroy (redis_batch_t **self_p)
{
    assert (self_p);
    redis_batch_t *self = *self_p;
    if (!self)
        return;
    redis_batch_stop (self);
    pthread_mutex_destroy (&self->lock);
    pthread_cond_destroy (&self->wake);
    cb_redis_destroy (&self->redis);
    free (self->replies);
    free (self);
    *self_p = NULL;
}

int
redis_batch_script (redis_batch_t *self, cb_script_t *script)
{
    assert (self && script && !self->started);
    if (self->n_scripts >= S_SCRIPTS_MAX)
        return -1;
    self->scripts [self->n_scripts++] = script;
    return 0;
}

int
redis_batch_start (redis_batch_t *self)
{
    assert (self && !self->started);
    if (pthread_create (&self->thread, NULL, s_writer, self))
        return -1;
    self->started = true;
    return 0;
}

int
redis_batch_submit (redis_batch_t *self, redis_batch_job_t *job)
{
    assert (self && job && job->append && job->reply);
    job->next = NULL;
    job->appended = 0;
    pthread_mutex_lock (&self->lock);
    if (self->stopping) {
        pthread_mutex_unlock (&self->lock);
        return -1;
    }
    if (self->tail)
        self->tail->next = job;
    else
        self->head = job;
    self->tail = job;
    //  Only the first job of a round wakes the writer; later ones ride along.
    bool wake = self->queued++ == 0;
    pthread_mutex_unlock (&self->lock);
    if (wake)
        pthread_cond_signal (&self->wake);
    return 0;
}

void
redis_batch_stop (redis_batch_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    bool started = self->started && !self->stopping;
    self->stopping = true;
    pthread_mutex_unlock (&self->lock);
    if (!started)
        return;
    pthread_cond_signal (&self->wake);
    pthread_join (self->thread, NULL);
}

void
redis_batch_stats (redis_batch_t *self, uint64_t *rounds, uint64_t *jobs, uint64_t *commands)
{
    assert (self);
    if (rounds)
        *rounds = atomic_load_explicit (&self->rounds, memory_order_relaxed);
    if (jobs)
        *jobs = atomic_load_explicit (&self->jobs, memory_order_relaxed);
    if (commands)
        *commands = atomic_load_explicit (&self->commands, memory_order_relaxed);
}
