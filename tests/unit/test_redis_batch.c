/*  test_redis_batch.c — the pipelining batcher against a real Redis: jobs
    queued together share one round, jobs from many threads all land,
    multi-round jobs see their earlier replies, NOSCRIPT after a script
    flush is retried, an unreachable Redis is a value every job sees, and
    stop finishes what was queued. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/redis_batch.h"
#include "test_redis.h"

//  Counts finished jobs; the test waits for a number of them.
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int failed;
    char why [256];
} s_tally_t;

static void
s_tally_init (s_tally_t *tally)
{
    memset (tally, 0, sizeof *tally);
    pthread_mutex_init (&tally->lock, NULL);
    pthread_cond_init (&tally->cond, NULL);
}

static void
s_tally_add (s_tally_t *tally, bool failed, const char *why)
{
    pthread_mutex_lock (&tally->lock);
    tally->done++;
    if (failed) {
        tally->failed++;
        snprintf (tally->why, sizeof tally->why, "%s", why ? why : "");
    }
    pthread_cond_broadcast (&tally->cond);
    pthread_mutex_unlock (&tally->lock);
}

static void
s_tally_wait (s_tally_t *tally, int n)
{
    pthread_mutex_lock (&tally->lock);
    while (tally->done < n)
        pthread_cond_wait (&tally->cond, &tally->lock);
    pthread_mutex_unlock (&tally->lock);
}

static void
s_tally_destroy (s_tally_t *tally)
{
    pthread_mutex_destroy (&tally->lock);
    pthread_cond_destroy (&tally->cond);
}

/* ---- a one-round job: INCR a counter, remember the value ---- */

typedef struct {
    redis_batch_job_t job;
    s_tally_t *tally;
    long long value;
} s_incr_t;

static int
s_incr_append (redis_batch_job_t *job, cb_redis_t *redis)
{
    (void) job;
    return cb_redis_append (redis, "INCR counter") ? -1 : 1;
}

static int
s_incr_reply (redis_batch_job_t *job, redisReply **replies, size_t n, bool failed,
              const char *why)
{
    s_incr_t *incr = (s_incr_t *) job;
    if (!failed && n == 1 && replies [0]->type == REDIS_REPLY_INTEGER)
        incr->value = replies [0]->integer;
    s_tally_add (incr->tally, failed, why);
    return REDIS_BATCH_DONE;
}

/* ---- a two-round job: GET a key, then SET another to its value + 1 ---- */

typedef struct {
    redis_batch_job_t job;
    s_tally_t *tally;
    int round;
    char source [32], target [32];
    long long seen;
} s_copy_t;

static int
s_copy_append (redis_batch_job_t *job, cb_redis_t *redis)
{
    s_copy_t *copy = (s_copy_t *) job;
    if (copy->round == 0)
        return cb_redis_append (redis, "GET %s", copy->source) ? -1 : 1;
    return cb_redis_append (redis, "SET %s %lld", copy->target, copy->seen + 1) ? -1 : 1;
}

static int
s_copy_reply (redis_batch_job_t *job, redisReply **replies, size_t n, bool failed,
              const char *why)
{
    s_copy_t *copy = (s_copy_t *) job;
    if (failed || n != 1) {
        s_tally_add (copy->tally, true, why);
        return REDIS_BATCH_DONE;
    }
    if (copy->round++ == 0) {
        copy->seen = replies [0]->type == REDIS_REPLY_STRING ? atoll (replies [0]->str) : -1;
        return REDIS_BATCH_AGAIN;
    }
    s_tally_add (copy->tally, false, NULL);
    return REDIS_BATCH_DONE;
}

/* ---- a script job, retrying once on NOSCRIPT ---- */

typedef struct {
    redis_batch_job_t job;
    s_tally_t *tally;
    cb_script_t *script;
    int noscripts;
    long long result;
} s_script_job_t;

static int
s_script_append (redis_batch_job_t *job, cb_redis_t *redis)
{
    s_script_job_t *sj = (s_script_job_t *) job;
    const char *argv [] = { "counter", "40" };
    return cb_redis_append_eval (redis, sj->script, 1, 2, argv, NULL) ? -1 : 1;
}

static int
s_script_reply (redis_batch_job_t *job, redisReply **replies, size_t n, bool failed,
                const char *why)
{
    s_script_job_t *sj = (s_script_job_t *) job;
    if (!failed && n == 1 && cb_reply_is_error (replies [0], "NOSCRIPT") && sj->noscripts++ < 2)
        return REDIS_BATCH_AGAIN;
    if (!failed && n == 1 && replies [0]->type == REDIS_REPLY_INTEGER)
        sj->result = replies [0]->integer;
    s_tally_add (sj->tally, failed || sj->result == 0, why);
    return REDIS_BATCH_DONE;
}

static long long
s_get_int (cb_redis_t *redis, const char *key)
{
    redisReply *reply = cb_redis_command (redis, "GET %s", key);
    assert_non_null (reply);
    long long value = reply->type == REDIS_REPLY_STRING ? atoll (reply->str) : -1;
    freeReplyObject (reply);
    return value;
}

/* ---- tests ---- */

static void
test_queued_jobs_share_one_round (void **state)
{
    test_redis_t *server = *state;
    redis_batch_t *batch = redis_batch_new (server->url, 2000, 256);
    assert_non_null (batch);
    s_tally_t tally;
    s_tally_init (&tally);
    enum { N = 100 };
    s_incr_t jobs [N];
    //  Queued before the writer runs: all of them go in its first round.
    for (int i = 0; i < N; i++) {
        jobs [i] = (s_incr_t) { { .append = s_incr_append, .reply = s_incr_reply }, &tally, 0 };
        assert_int_equal (redis_batch_submit (batch, &jobs [i].job), 0);
    }
    assert_int_equal (redis_batch_start (batch), 0);
    s_tally_wait (&tally, N);
    assert_int_equal (tally.failed, 0);
    //  In submission order: the values are 1..N.
    for (int i = 0; i < N; i++)
        assert_int_equal (jobs [i].value, i + 1);
    uint64_t rounds = 0, jobs_sent = 0, commands = 0;
    redis_batch_stats (batch, &rounds, &jobs_sent, &commands);
    assert_int_equal (rounds, 1);
    assert_int_equal (jobs_sent, N);
    assert_int_equal (commands, N);
    redis_batch_destroy (&batch);
    redis_batch_destroy (&batch);
    assert_null (batch);
    s_tally_destroy (&tally);
}

typedef struct {
    redis_batch_t *batch;
    s_tally_t *tally;
    s_incr_t jobs [250];
} s_submitter_t;

static void *
s_submit_all (void *arg)
{
    s_submitter_t *submitter = arg;
    for (int i = 0; i < 250; i++) {
        submitter->jobs [i] = (s_incr_t) { { .append = s_incr_append, .reply = s_incr_reply },
                                           submitter->tally, 0 };
        if (redis_batch_submit (submitter->batch, &submitter->jobs [i].job))
            s_tally_add (submitter->tally, true, "refused");
    }
    return NULL;
}

static void
test_many_threads_and_many_rounds (void **state)
{
    test_redis_t *server = *state;
    char err [128];
    cb_redis_t *check = cb_redis_new (server->url, 2000, err, sizeof err);
    assert_int_equal (cb_redis_connect_retry (check, 5000), 0);
    redisReply *reply = cb_redis_command (check, "FLUSHALL");
    freeReplyObject (reply);
    reply = cb_redis_command (check, "SET source 41");
    freeReplyObject (reply);

    //  At most 16 jobs a round: 1,000 jobs need at least 63 rounds.
    redis_batch_t *batch = redis_batch_new (server->url, 2000, 16);
    assert_int_equal (redis_batch_start (batch), 0);
    s_tally_t tally;
    s_tally_init (&tally);
    s_submitter_t *submitters = calloc (4, sizeof *submitters);
    pthread_t threads [4];
    for (int i = 0; i < 4; i++) {
        submitters [i].batch = batch;
        submitters [i].tally = &tally;
        assert_int_equal (pthread_create (&threads [i], NULL, s_submit_all, &submitters [i]), 0);
    }
    s_copy_t copy = { { .append = s_copy_append, .reply = s_copy_reply }, &tally, 0,
                      "source", "target", 0 };
    assert_int_equal (redis_batch_submit (batch, &copy.job), 0);
    for (int i = 0; i < 4; i++)
        pthread_join (threads [i], NULL);
    s_tally_wait (&tally, 1001);
    assert_int_equal (tally.failed, 0);
    assert_int_equal (s_get_int (check, "counter"), 1000);
    //  The two-round job saw its first reply in its second round.
    assert_int_equal (copy.round, 2);
    assert_int_equal (s_get_int (check, "target"), 42);
    uint64_t rounds = 0, jobs_sent = 0, commands = 0;
    redis_batch_stats (batch, &rounds, &jobs_sent, &commands);
    assert_true (rounds >= 63);
    assert_int_equal (jobs_sent, 1002);        //  the copy job took part twice
    assert_int_equal (commands, 1002);
    redis_batch_destroy (&batch);
    free (submitters);
    s_tally_destroy (&tally);
    cb_redis_destroy (&check);
}

static void
test_noscript_is_retried_after_a_reload (void **state)
{
    test_redis_t *server = *state;
    char err [128];
    cb_redis_t *check = cb_redis_new (server->url, 2000, err, sizeof err);
    assert_int_equal (cb_redis_connect_retry (check, 5000), 0);
    redisReply *reply = cb_redis_command (check, "SET counter 2");
    freeReplyObject (reply);

    cb_script_t script = CB_SCRIPT ("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    redis_batch_t *batch = redis_batch_new (server->url, 2000, 64);
    assert_int_equal (redis_batch_script (batch, &script), 0);
    assert_int_equal (redis_batch_start (batch), 0);
    s_tally_t tally;
    s_tally_init (&tally);
    s_script_job_t first = { { .append = s_script_append, .reply = s_script_reply },
                             &tally, &script, 0, 0 };
    assert_int_equal (redis_batch_submit (batch, &first.job), 0);
    s_tally_wait (&tally, 1);
    assert_int_equal (first.result, 42);
    assert_int_equal (first.noscripts, 0);
    assert_int_equal (strlen (script.sha), 40);

    //  The cache empties (as after a restart): NOSCRIPT once, then loaded.
    reply = cb_redis_command (check, "SCRIPT FLUSH");
    freeReplyObject (reply);
    s_script_job_t second = { { .append = s_script_append, .reply = s_script_reply },
                              &tally, &script, 0, 0 };
    assert_int_equal (redis_batch_submit (batch, &second.job), 0);
    s_tally_wait (&tally, 2);
    assert_int_equal (tally.failed, 0);
    assert_int_equal (second.noscripts, 1);
    assert_int_equal (second.result, 82);
    redis_batch_destroy (&batch);
    s_tally_destroy (&tally);
    cb_redis_destroy (&check);
}

static void
test_unreachable_redis_fails_every_job (void **state)
{
    (void) state;
    char url [64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d", test_free_port ());
    redis_batch_t *batch = redis_batch_new (url, 200, 8);
    assert_non_null (batch);
    assert_int_equal (redis_batch_start (batch), 0);
    s_tally_t tally;
    s_tally_init (&tally);
    s_incr_t jobs [20];
    for (int i = 0; i < 20; i++) {
        jobs [i] = (s_incr_t) { { .append = s_incr_append, .reply = s_incr_reply }, &tally, 0 };
        assert_int_equal (redis_batch_submit (batch, &jobs [i].job), 0);
    }
    //  Stop finishes what was queued: every job has had its callback.
    redis_batch_stop (batch);
    assert_int_equal (tally.done, 20);
    assert_int_equal (tally.failed, 20);
    assert_non_null (strstr (tally.why, "refused"));
    s_incr_t late = { { .append = s_incr_append, .reply = s_incr_reply }, &tally, 0 };
    assert_int_equal (redis_batch_submit (batch, &late.job), -1);
    uint64_t rounds = 1;
    redis_batch_stats (batch, &rounds, NULL, NULL);
    assert_int_equal (rounds, 0);
    redis_batch_destroy (&batch);
    assert_null (redis_batch_new ("http://nope", 200, 8));
    s_tally_destroy (&tally);
}

static int
s_setup (void **state)
{
    test_redis_t *server = calloc (1, sizeof *server);
    if (!server || test_redis_start (server)) {
        free (server);
        return -1;
    }
    *state = server;
    return 0;
}

static int
s_teardown (void **state)
{
    test_redis_t *server = *state;
    test_redis_stop (server);
    free (server);
    return 0;
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_queued_jobs_share_one_round),
        cmocka_unit_test (test_many_threads_and_many_rounds),
        cmocka_unit_test (test_noscript_is_retried_after_a_reload),
        cmocka_unit_test (test_unreachable_redis_fails_every_job),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
