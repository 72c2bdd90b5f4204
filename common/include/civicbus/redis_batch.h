/*  redis_batch.h — many threads' Redis work on one connection, pipelined:
    a writer thread takes every job queued since its last round, appends
    their commands to one pipeline, sends them in one write, reads the
    replies in order and hands each job its own.

    Why: with one blocking connection per thread Redis sees one command per
    event-loop turn and pays a read, a write and an AOF write for each; the
    threads sleep in read(). Pipelined, Redis pays them once per round, and
    nobody waits but the writer (bench/README.md, "Intake throughput").

    A job may need several round trips whose commands depend on earlier
    replies (look something up, then write): its reply callback returns
    REDIS_BATCH_AGAIN and the job appends again in the next round, along
    with everybody else's. Jobs of one round run in submission order, so a
    job's writes are on Redis before any later job's commands run.

    Scripts: a pipeline cannot stop to SCRIPT LOAD, so scripts a job runs
    (cb_redis_append_eval) are registered with redis_batch_script and loaded
    by the writer whenever it (re)connects and after a NOSCRIPT reply (Redis
    restarted or failed over); the job that met NOSCRIPT answers AGAIN.

    Use:
        typedef struct { redis_batch_job_t job; ...; } my_job_t;   //  job first
        my->job = (redis_batch_job_t) { .append = s_append, .reply = s_reply };
        redis_batch_submit (batch, &my->job);
    The caller owns the job's memory (as libuv's requests: submitting never
    allocates) until the reply callback returns REDIS_BATCH_DONE; callbacks
    run on the writer thread, one at a time. */

#ifndef CIVICBUS_REDIS_BATCH_H
#define CIVICBUS_REDIS_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "civicbus/redis.h"

typedef struct _redis_batch_t redis_batch_t;
typedef struct _redis_batch_job_t redis_batch_job_t;

//  What a reply callback returns.
#define REDIS_BATCH_DONE    0       //  finished: the batcher forgets the job
#define REDIS_BATCH_AGAIN   1       //  append again in the next round

//  Appends this round's commands of `job` to `redis`'s pipeline
//  (cb_redis_append, cb_redis_append_argv, cb_redis_append_eval) and
//  returns how many it appended (0 is allowed: the reply callback then gets
//  none), or -1 when appending failed (its reply callback sees `failed`).
typedef int (redis_batch_append_fn) (redis_batch_job_t *job, cb_redis_t *redis);

//  The round's replies of `job`, in order: `n` of them, borrowed (freed
//  after the call). `failed`: the connection failed or could not be made
//  before every reply came; the missing ones are NULL and `why` says why.
//  Returns REDIS_BATCH_DONE or REDIS_BATCH_AGAIN.
typedef int (redis_batch_reply_fn) (redis_batch_job_t *job, redisReply **replies, size_t n,
                                    bool failed, const char *why);

struct _redis_batch_job_t {
    redis_batch_append_fn *append;
    redis_batch_reply_fn *reply;
    //  The batcher's own: never touched by the caller.
    redis_batch_job_t *next;
    int appended;
};

//  A batcher with its own connection to `redis_url` (replies wait at most
//  `timeout_ms`), taking at most `max_jobs` jobs per round (at least 1).
//  Nothing connects and no thread runs until redis_batch_start. NULL for a
//  URL it cannot read (logged) or when out of memory.
redis_batch_t *redis_batch_new (const char *redis_url, int timeout_ms, size_t max_jobs);
//  Stops (as redis_batch_stop) and frees; safe twice, sets *self_p to NULL.
void redis_batch_destroy (redis_batch_t **self_p);
//  Registers a script the jobs run (caller keeps it alive; the writer fills
//  its sha). Before redis_batch_start; 0, or -1 past 16 scripts.
int redis_batch_script (redis_batch_t *self, cb_script_t *script);
//  Starts the writer thread. 0 or -1.
int redis_batch_start (redis_batch_t *self);
//  Queues a job (any thread; before redis_batch_start too: it runs in the
//  first round). 0, or -1 once stopping (the job was not taken: its
//  callbacks will not run).
int redis_batch_submit (redis_batch_t *self, redis_batch_job_t *job);
//  Refuses new jobs, lets the writer finish every job it holds (including
//  the rounds they ask AGAIN for), and joins it. Safe when not started
//  (jobs queued then never run: their callbacks are not called).
void redis_batch_stop (redis_batch_t *self);
//  Counters since start: rounds sent, jobs appended over all rounds (a job
//  counts once per round it took part in), commands sent. Any thread;
//  each value is read atomically, not the three together.
void redis_batch_stats (redis_batch_t *self, uint64_t *rounds, uint64_t *jobs,
                        uint64_t *commands);

#endif
