/*  test_timers.c — time-limit timers (common/timers.c) against a real
    redis-server: member text, which timers a ticket has, arming, moving and
    cancelling them in the ticket's compare-and-set, claiming (one claimer,
    two racing claimers on their own connections: nothing claimed twice,
    nothing lost), completion with the effect, requeue after a claimer
    "crashed", stale generations, and 100,000 timers added and claimed (the
    rate is printed, not asserted). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "civicbus/timers.h"
#include "civicbus/clock.h"
#include "civicbus/pbutil.h"
#include "test_redis.h"

#define HOUR_MS 3600000LL

typedef struct {
    test_redis_t server;
    cb_redis_t *redis;
    ticket_store_t *store;
    workcal_t *cal;
    sla_policies_t *sla;
} fixture_t;

static const ticket_actor_t s_system = { CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM, "timers-test", NULL };

//  Policies for these tests: sign 1 working day, warn at 80%, the usual
//  three-step ladder; an urgent sign in calendar hours.
static const char s_policies [] =
    "{\"version\": \"t1\", \"default\": \"std\","
    " \"escalation\": ["
    "   {\"after\": {\"working_hours\": 0}, \"level\": 1, \"card\": \"yellow\", \"notify\": \"community\"},"
    "   {\"after\": {\"working_days\": 1}, \"level\": 2, \"card\": \"red\", \"notify\": \"street\"},"
    "   {\"after\": {\"working_days\": 3}, \"level\": 3, \"card\": \"red\", \"notify\": \"district\"}],"
    " \"policies\": {\"std\": {"
    "   \"sign\": {\"limit\": {\"working_days\": 1}},"
    "   \"resolve\": {\"limit\": {\"working_days\": 5}},"
    "   \"urgent\": {\"sign\": {\"limit\": {\"hours\": 2}}}}}}";

/* ---- helpers ---- */

static int64_t
s_at (const char *iso)
{
    int64_t ms = 0;
    assert_int_equal (cb_time_parse_iso (iso, &ms), 0);
    return ms;
}

static int
s_setup (void **state)
{
    fixture_t *f = calloc (1, sizeof *f);
    if (!f || test_redis_start (&f->server))
        return -1;
    char err [256];
    f->redis = cb_redis_new (f->server.url, 5000, err, sizeof err);
    f->store = f->redis ? ticket_store_new (f->redis) : NULL;
    f->cal = workcal_new_default ();
    f->sla = sla_from_json (s_policies, strlen (s_policies), err, sizeof err);
    *state = f;
    return f->store && f->cal && f->sla ? 0 : -1;
}

static int
s_teardown (void **state)
{
    fixture_t *f = *state;
    ticket_store_destroy (&f->store);
    cb_redis_destroy (&f->redis);
    test_redis_stop (&f->server);
    workcal_destroy (&f->cal);
    sla_destroy (&f->sla);
    free (f);
    return 0;
}

static int
s_flush (void **state)
{
    fixture_t *f = *state;
    redisReply *reply = cb_redis_command (f->redis, "FLUSHALL");
    int rc = reply && reply->type == REDIS_REPLY_STATUS ? 0 : -1;
    freeReplyObject (reply);
    return rc;
}

//  A stored ticket (RECEIVED, version 1) with policy "std".
static cb_ticket_t *
s_create (fixture_t *f, const char *idem)
{
    cb_ticket_t *t = calloc (1, sizeof *t);
    civicbus__v1__ticket__init (t);
    pb_set_string (&t->category, "urban.facility.public.manhole");
    pb_set_string (&t->description, "井盖破损");
    pb_set_string (&t->policy, "std");
    char id [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, t, "320105", idem, 3600, &s_system,
                                           s_at ("2026-09-30T15:00+08:00"), id, sizeof id), TS_OK);
    return t;
}

//  Sets (replaces or appends) the ticket's deadline for d.stage.
static void
s_set_deadline (cb_ticket_t *t, const Civicbus__V1__Deadline *d)
{
    for (size_t i = 0; i < t->n_deadlines; i++)
        if (t->deadlines [i]->stage == d->stage) {
            *t->deadlines [i] = *d;
            return;
        }
    Civicbus__V1__Deadline **v = realloc (t->deadlines, (t->n_deadlines + 1) * sizeof *v);
    assert_non_null (v);
    t->deadlines = v;
    v [t->n_deadlines] = malloc (sizeof **v);
    assert_non_null (v [t->n_deadlines]);
    *v [t->n_deadlines] = *d;
    t->n_deadlines++;
}

//  Stores `after` over `*before` with the timer changes and `extra` ops;
//  *before becomes the stored ticket. Returns the store's result.
static int
s_store (fixture_t *f, cb_ticket_t **before, cb_ticket_t *after, ts_ops_t *extra,
         size_t *ops_count)
{
    ts_ops_t *ops = extra ? extra : ts_ops_new ();
    assert_int_equal (timers_schedule_ops (ops, *before, after, f->sla, f->cal), 0);
    if (ops_count)
        *ops_count = ts_ops_count (ops);
    ts_event_t ev = { "progress", &s_system, after->state, after->state, "timers", NULL };
    int rc = ticket_store_apply (f->store, *before, after, &ev, 1, ops);
    ts_ops_destroy (&ops);
    if (rc == TS_OK) {
        civicbus__v1__ticket__free_unpacked (*before, NULL);
        *before = ticket_clone (after);
    }
    return rc;
}

//  The score of `member` in `key`, or -1 when absent.
static int64_t
s_score (fixture_t *f, const char *key, const char *member)
{
    redisReply *reply = cb_redis_command (f->redis, "ZSCORE %s %s", key, member);
    assert_non_null (reply);
    int64_t score = reply->type == REDIS_REPLY_STRING ? strtoll (reply->str, NULL, 10) : -1;
    freeReplyObject (reply);
    return score;
}

static long long
s_zcard (fixture_t *f, const char *key)
{
    redisReply *reply = cb_redis_command (f->redis, "ZCARD %s", key);
    assert_non_null (reply);
    long long n = reply->integer;
    freeReplyObject (reply);
    return n;
}

static void
s_member (const char *id, const char *stage, const char *kind, int64_t gen, char *buf, size_t cap)
{
    snprintf (buf, cap, "%s|%s|%s|%lld", id, stage, kind, (long long) gen);
}

/* ---- members ---- */

static void
test_member_text (void **state)
{
    (void) state;
    cb_timer_t t = { .stage = CIVICBUS__V1__STAGE__STAGE_SIGN, .kind = TIMER_ESCALATE,
                     .level = 2, .generation = 1791446400000LL };
    snprintf (t.ticket_id, sizeof t.ticket_id, "320105-20260930-000000065");
    char buf [TIMER_MEMBER_MAX];
    assert_int_equal (timer_member (&t, buf, sizeof buf), 0);
    assert_string_equal (buf, "320105-20260930-000000065|sign|escalate-2|1791446400000");
    cb_timer_t back;
    assert_int_equal (timer_parse (buf, &back), 0);
    assert_string_equal (back.ticket_id, t.ticket_id);
    assert_int_equal (back.stage, t.stage);
    assert_int_equal (back.kind, TIMER_ESCALATE);
    assert_int_equal (back.level, 2);
    assert_int_equal (back.generation, t.generation);
    assert_int_equal (back.at_ms, 0);
    t.kind = TIMER_WARN;
    t.stage = CIVICBUS__V1__STAGE__STAGE_VERIFY;
    assert_int_equal (timer_member (&t, buf, sizeof buf), 0);
    assert_string_equal (buf, "320105-20260930-000000065|verify|warn|1791446400000");
    assert_int_equal (timer_parse (buf, &back), 0);
    assert_int_equal (back.kind, TIMER_WARN);
    assert_int_equal (back.level, 0);
    //  Too small a buffer, a bad level, no stage.
    assert_int_equal (timer_member (&t, buf, 20), -1);
    t.kind = TIMER_ESCALATE;
    t.level = 5;
    assert_int_equal (timer_member (&t, buf, sizeof buf), -1);
    t.level = 1;
    t.stage = CIVICBUS__V1__STAGE__STAGE_UNSPECIFIED;
    assert_int_equal (timer_member (&t, buf, sizeof buf), -1);

    const char *bad [] = {
        "", "x", "a|sign|due", "a|sign|due|1|2", "|sign|due|1", "a|sigh|due|1",
        "a|sign|late|1", "a|sign|escalate-0|1", "a|sign|escalate-5|1", "a|sign|escalate-12|1",
        "a|sign|due|", "a|sign|due|-5", "a|sign|due|12x", "a|sign|due|0",
        "0123456789012345678901234567890123456789012345678901234567890|sign|due|1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        if (timer_parse (bad [i], &back) == 0)
            fail_msg ("'%s' parsed as a timer", bad [i]);
    assert_int_equal (timer_parse (NULL, &back), -1);
}

static void
test_timers_for_ticket (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t t = CIVICBUS__V1__TICKET__INIT;
    t.id = "320105-20260930-000000065";
    t.policy = "std";
    t.state = CIVICBUS__V1__TICKET_STATE__DISPATCHED;
    Civicbus__V1__Deadline d = CIVICBUS__V1__DEADLINE__INIT, *list [1] = { &d };
    assert_int_equal (sla_stage_deadline (f->sla, "std", CIVICBUS__V1__STAGE__STAGE_SIGN,
                                          t.urgency, s_at ("2026-09-30T16:00+08:00"), f->cal, &d),
                      SLA_OK);
    t.deadlines = list;
    t.n_deadlines = 1;
    cb_timer_t out [16];
    size_t n = timers_for_ticket (&t, f->sla, f->cal, out, 16);
    assert_int_equal (n, 5);
    assert_int_equal (out [0].kind, TIMER_WARN);
    assert_int_equal (out [0].at_ms, s_at ("2026-10-08T14:36+08:00"));
    assert_int_equal (out [1].kind, TIMER_DUE);
    assert_int_equal (out [1].at_ms, s_at ("2026-10-08T16:00+08:00"));
    assert_int_equal (out [2].kind, TIMER_ESCALATE);
    assert_int_equal (out [2].level, 1);
    assert_int_equal (out [2].at_ms, out [1].at_ms);
    assert_int_equal (out [3].level, 2);
    assert_int_equal (out [3].at_ms, s_at ("2026-10-09T16:00+08:00"));
    assert_int_equal (out [4].level, 3);
    assert_int_equal (out [4].at_ms, s_at ("2026-10-12T16:00+08:00"));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal (out [i].generation, d.due_ms);
        assert_string_equal (out [i].ticket_id, t.id);
    }
    //  The count is returned even when cap is smaller.
    assert_int_equal (timers_for_ticket (&t, f->sla, f->cal, out, 2), 5);
    //  Paused, final, or without a limit: none.
    t.state = CIVICBUS__V1__TICKET_STATE__CLOSED;
    assert_int_equal (timers_for_ticket (&t, f->sla, f->cal, out, 16), 0);
    t.state = CIVICBUS__V1__TICKET_STATE__SUSPENDED;
    assert_int_equal (sla_pause (f->sla, "std", t.urgency, &d, s_at ("2026-10-08T09:00+08:00"),
                                 f->cal), SLA_OK);
    assert_int_equal (timers_for_ticket (&t, f->sla, f->cal, out, 16), 0);
    //  warn == due (share 1) gives no warn timer.
    d.due_ms = d.warn_ms = s_at ("2026-10-08T16:00+08:00");
    d.remaining_ms = 0;
    n = timers_for_ticket (&t, f->sla, f->cal, out, 16);
    assert_int_equal (n, 4);
    assert_int_equal (out [0].kind, TIMER_DUE);
}

/* ---- arming, moving, cancelling ---- */

static void
test_schedule_move_cancel (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_create (f, "timers:schedule");
    int bucket = ticket_id_bucket (t->id);
    char tmr [32], tmrf [32], m [TIMER_MEMBER_MAX];
    snprintf (tmr, sizeof tmr, "tmr:{b%02d}", bucket);
    snprintf (tmrf, sizeof tmrf, "tmrf:{b%02d}", bucket);

    //  Start the sign clock: five timers armed with the change.
    cb_ticket_t *after = ticket_clone (t);
    Civicbus__V1__Deadline d = CIVICBUS__V1__DEADLINE__INIT;
    sla_stage_deadline (f->sla, "std", CIVICBUS__V1__STAGE__STAGE_SIGN, after->urgency,
                        s_at ("2026-09-30T16:00+08:00"), f->cal, &d);
    s_set_deadline (after, &d);
    size_t ops = 0;
    assert_int_equal (s_store (f, &t, after, NULL, &ops), TS_OK);
    assert_int_equal (ops, 5);
    assert_int_equal (s_zcard (f, tmr), 5);
    s_member (t->id, "sign", "warn", d.due_ms, m, sizeof m);
    assert_int_equal (s_score (f, tmr, m), d.warn_ms);
    s_member (t->id, "sign", "escalate-3", d.due_ms, m, sizeof m);
    assert_int_equal (s_score (f, tmr, m), s_at ("2026-10-12T16:00+08:00"));
    civicbus__v1__ticket__free_unpacked (after, NULL);

    //  A change that leaves the deadline alone touches no timer.
    after = ticket_clone (t);
    pb_set_string (&after->description, "井盖破损，有人差点掉下去");
    assert_int_equal (s_store (f, &t, after, NULL, &ops), TS_OK);
    assert_int_equal (ops, 0);
    assert_int_equal (s_zcard (f, tmr), 5);
    civicbus__v1__ticket__free_unpacked (after, NULL);

    //  A claimed (in-flight) warn timer of this generation ...
    cb_timer_t claimed [8];
    size_t n = 0;
    assert_int_equal (timers_claim (f->redis, bucket, d.warn_ms, 60000, 8, claimed, &n), 0);
    assert_int_equal (n, 1);
    assert_int_equal (claimed [0].kind, TIMER_WARN);
    assert_int_equal (s_zcard (f, tmrf), 1);

    //  ... and the deadline moves (urgent now: 2 calendar hours). The old
    //  generation leaves tmr and tmrf, the new one is armed.
    after = ticket_clone (t);
    after->urgency = CIVICBUS__V1__URGENCY__URGENCY_URGENT;
    Civicbus__V1__Deadline moved = CIVICBUS__V1__DEADLINE__INIT;
    sla_stage_deadline (f->sla, "std", CIVICBUS__V1__STAGE__STAGE_SIGN, after->urgency,
                        s_at ("2026-09-30T16:00+08:00"), f->cal, &moved);
    assert_int_not_equal (moved.due_ms, d.due_ms);
    s_set_deadline (after, &moved);
    assert_int_equal (s_store (f, &t, after, NULL, NULL), TS_OK);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    assert_int_equal (s_zcard (f, tmrf), 0);
    assert_int_equal (s_zcard (f, tmr), 5);
    s_member (t->id, "sign", "due", d.due_ms, m, sizeof m);
    assert_int_equal (s_score (f, tmr, m), -1);
    s_member (t->id, "sign", "due", moved.due_ms, m, sizeof m);
    assert_int_equal (s_score (f, tmr, m), s_at ("2026-09-30T18:00+08:00"));
    //  The claimed old-generation timer is stale on the stored ticket.
    assert_int_equal (timers_verdict (t, &claimed [0]), TIMER_STALE);

    //  An extension of a working day: warn (17:36) and due (18:00) were
    //  both after office hours, so both move to Oct 8 17:30 and only due
    //  and the escalations are armed, with the new generation.
    after = ticket_clone (t);
    Civicbus__V1__Deadline extended = moved;
    assert_int_equal (sla_extend (&extended, 1, f->cal), SLA_OK);
    assert_int_equal (extended.due_ms, s_at ("2026-10-08T17:30+08:00"));
    assert_int_equal (extended.warn_ms, extended.due_ms);
    s_set_deadline (after, &extended);
    assert_int_equal (s_store (f, &t, after, NULL, NULL), TS_OK);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    assert_int_equal (s_zcard (f, tmr), 4);
    s_member (t->id, "sign", "warn", moved.due_ms, m, sizeof m);
    assert_int_equal (s_score (f, tmr, m), -1);
    s_member (t->id, "sign", "due", extended.due_ms, m, sizeof m);
    assert_int_equal (s_score (f, tmr, m), extended.due_ms);

    //  Suspension pauses the clock: every timer goes.
    after = ticket_clone (t);
    Civicbus__V1__Deadline paused = extended;
    assert_int_equal (sla_pause (f->sla, "std", after->urgency, &paused,
                                 s_at ("2026-09-30T17:00+08:00"), f->cal), SLA_OK);
    s_set_deadline (after, &paused);
    assert_int_equal (s_store (f, &t, after, NULL, NULL), TS_OK);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    assert_int_equal (s_zcard (f, tmr), 0);

    //  Resuming arms a new generation.
    after = ticket_clone (t);
    Civicbus__V1__Deadline resumed = paused;
    assert_int_equal (sla_resume (f->sla, "std", after->urgency, &resumed,
                                  s_at ("2026-10-08T09:00+08:00"), f->cal), SLA_OK);
    s_set_deadline (after, &resumed);
    assert_int_equal (s_store (f, &t, after, NULL, NULL), TS_OK);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    //  (the resumed deadline has its yellow tail again: 5 timers)
    assert_int_equal (s_zcard (f, tmr), 5);
    s_member (t->id, "sign", "due", resumed.due_ms, m, sizeof m);
    assert_int_equal (s_score (f, tmr, m), resumed.due_ms);
    assert_int_equal (resumed.due_ms, s_at ("2026-10-08T09:00+08:00") + extended.due_ms
                                      - s_at ("2026-09-30T17:00+08:00"));

    //  Cancel (the stage ended): a change built with timers_cancel_ops.
    ts_ops_t *cancel = ts_ops_new ();
    assert_int_equal (timers_cancel_ops (cancel, t), 0);
    assert_int_equal (ts_ops_count (cancel), 2 * TIMERS_PER_DEADLINE);
    after = ticket_clone (t);
    after->state = CIVICBUS__V1__TICKET_STATE__IN_PROGRESS;
    ts_event_t ev = { "sign", &s_system, t->state, after->state, NULL, NULL };
    assert_int_equal (ticket_store_apply (f->store, t, after, &ev, 1, cancel), TS_OK);
    ts_ops_destroy (&cancel);
    assert_int_equal (s_zcard (f, tmr), 0);
    assert_int_equal (s_zcard (f, tmrf), 0);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

/* ---- claiming, completing, requeue ---- */

static void
test_claim_complete_requeue (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_create (f, "timers:claim");
    int bucket = ticket_id_bucket (t->id);
    char tmr [32], tmrf [32];
    snprintf (tmr, sizeof tmr, "tmr:{b%02d}", bucket);
    snprintf (tmrf, sizeof tmrf, "tmrf:{b%02d}", bucket);
    cb_ticket_t *after = ticket_clone (t);
    Civicbus__V1__Deadline d = CIVICBUS__V1__DEADLINE__INIT;
    sla_stage_deadline (f->sla, "std", CIVICBUS__V1__STAGE__STAGE_SIGN, after->urgency,
                        s_at ("2026-09-30T16:00+08:00"), f->cal, &d);
    s_set_deadline (after, &d);
    assert_int_equal (s_store (f, &t, after, NULL, NULL), TS_OK);
    civicbus__v1__ticket__free_unpacked (after, NULL);

    //  Nothing before the warning.
    cb_timer_t got [8];
    size_t n = 99;
    assert_int_equal (timers_claim (f->redis, bucket, d.warn_ms - 1, 30000, 8, got, &n), 0);
    assert_int_equal (n, 0);

    //  At the due instant, warn, due and escalate-1 (due + 0) are due.
    assert_int_equal (timers_claim (f->redis, bucket, d.due_ms, 30000, 8, got, &n), 0);
    assert_int_equal (n, 3);
    assert_int_equal (got [0].kind, TIMER_WARN);
    assert_int_equal (got [0].at_ms, d.warn_ms);
    assert_int_equal (s_zcard (f, tmr), 2);
    assert_int_equal (s_zcard (f, tmrf), 3);
    //  Claimed once: a second claim at the same time gets nothing.
    assert_int_equal (timers_claim (f->redis, bucket, d.due_ms, 30000, 8, got + 3, &n), 0);
    assert_int_equal (n, 0);

    //  The warn fires: its effect (yellow light) and its completion commit
    //  together; afterwards the verdict on the stored ticket is DONE.
    assert_int_equal (timers_verdict (t, &got [0]), TIMER_APPLY);
    after = ticket_clone (t);
    after->light = CIVICBUS__V1__LIGHT__LIGHT_YELLOW;
    ts_ops_t *ops = ts_ops_new ();
    assert_int_equal (timers_complete_ops (ops, &got [0]), 0);
    assert_int_equal (s_store (f, &t, after, ops, NULL), TS_OK);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    assert_int_equal (s_zcard (f, tmrf), 2);
    assert_int_equal (timers_verdict (t, &got [0]), TIMER_DONE);
    //  The due and escalate-1 timers still apply; the claimer "crashes"
    //  before completing them.
    assert_int_equal (timers_verdict (t, &got [1]), TIMER_APPLY);
    assert_int_equal (timers_verdict (t, &got [2]), TIMER_APPLY);

    //  Requeue: not before the visibility ends, then back to tmr.
    size_t moved = 99;
    assert_int_equal (timers_requeue_expired (f->redis, d.due_ms + 29999, &moved), 0);
    assert_int_equal (moved, 0);
    assert_int_equal (timers_requeue_expired (f->redis, d.due_ms + 30000, &moved), 0);
    assert_int_equal (moved, 2);
    assert_int_equal (s_zcard (f, tmrf), 0);
    assert_int_equal (s_zcard (f, tmr), 4);
    //  Another claimer gets them again, due "now".
    cb_timer_t again [8];
    assert_int_equal (timers_claim (f->redis, bucket, d.due_ms + 30000, 30000, 8, again, &n), 0);
    assert_int_equal (n, 2);
    assert_int_equal (again [0].at_ms, d.due_ms + 30000);

    //  Escalation applied with its completion; a second copy of the same
    //  timer (the "slow first claimer") then finds it DONE.
    after = ticket_clone (t);
    after->light = CIVICBUS__V1__LIGHT__LIGHT_RED;
    after->escalation_level = 1;
    ops = ts_ops_new ();
    assert_int_equal (timers_complete_ops (ops, &again [0]), 0);
    assert_int_equal (timers_complete_ops (ops, &again [1]), 0);
    assert_int_equal (s_store (f, &t, after, ops, NULL), TS_OK);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    assert_int_equal (timers_verdict (t, &got [1]), TIMER_DONE);
    assert_int_equal (timers_verdict (t, &got [2]), TIMER_DONE);
    assert_int_equal (s_zcard (f, tmrf), 0);

    //  A stale claim is discarded.
    assert_int_equal (timers_claim (f->redis, bucket, INT64_MAX / 4, 30000, 8, got, &n), 0);
    assert_int_equal (n, 2);                        //  escalate-2 and -3
    assert_int_equal (timers_verdict (t, &got [0]), TIMER_APPLY);
    t->state = CIVICBUS__V1__TICKET_STATE__CANCELLED;
    assert_int_equal (timers_verdict (t, &got [0]), TIMER_STALE);
    assert_int_equal (timers_verdict (NULL, &got [0]), TIMER_STALE);
    assert_int_equal (timers_discard (f->redis, &got [0]), 0);
    assert_int_equal (timers_discard (f->redis, &got [1]), 0);
    size_t armed = 9, in_flight = 9;
    assert_int_equal (timers_count (f->redis, &armed, &in_flight), 0);
    assert_int_equal (armed, 0);
    assert_int_equal (in_flight, 0);

    //  A member that is not a timer is dropped, not returned forever.
    redisReply *reply = cb_redis_command (f->redis, "ZADD %s 1 garbage", tmr);
    freeReplyObject (reply);
    assert_int_equal (timers_claim (f->redis, bucket, 10, 30000, 8, got, &n), 0);
    assert_int_equal (n, 0);
    assert_int_equal (s_zcard (f, tmrf), 0);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

/* ---- many timers, two claimers ---- */

//  Adds `count` timers spread over all buckets, due at 1..count ms,
//  pipelined 1000 at a time. Ticket ids are made up but well formed.
static void
s_add_many (fixture_t *f, int count)
{
    char member [TIMER_MEMBER_MAX], id [CB_TICKET_ID_MAX], key [32];
    for (int i = 0; i < count; i++) {
        int bucket = i % CB_BUCKETS;
        assert_int_equal (ticket_id_format (id, sizeof id, "320105", 20260930,
                                            i / CB_BUCKETS + 1, bucket), 0);
        s_member (id, "sign", "due", 1000 + i, member, sizeof member);
        snprintf (key, sizeof key, "tmr:{b%02d}", bucket);
        assert_int_equal (cb_redis_append (f->redis, "ZADD %s %d %s", key, i + 1, member), 0);
        if ((i + 1) % 1000 == 0 || i + 1 == count) {
            for (int k = i / 1000 * 1000; k <= i; k++) {
                redisReply *reply = cb_redis_get_reply (f->redis);
                assert_non_null (reply);
                assert_int_equal (reply->type, REDIS_REPLY_INTEGER);
                freeReplyObject (reply);
            }
        }
    }
}

//  Calls of `command` Redis has run so far (INFO commandstats: "evalsha",
//  "script|load").
static long long
s_command_calls (fixture_t *f, const char *command)
{
    redisReply *reply = cb_redis_command (f->redis, "INFO commandstats");
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_STRING);
    char field [64];
    snprintf (field, sizeof field, "cmdstat_%s:calls=", command);
    const char *at = strstr (reply->str, field);
    long long calls = at ? atoll (at + strlen (field)) : 0;
    freeReplyObject (reply);
    return calls;
}

static long long
s_script_calls (fixture_t *f)
{
    return s_command_calls (f, "evalsha");
}

//  An idle tick reads each bucket and runs no script; a tick with one
//  bucket due runs the claim script there only, and claims what is due.
static void
test_claim_all_scripts_only_where_due (void **state)
{
    fixture_t *f = *state;
    s_add_many (f, 3 * CB_BUCKETS);         //  due at 1 .. 192, bucket = (due - 1) % 64
    long long before = s_script_calls (f);
    cb_timer_t *timers = NULL;
    size_t n = 99;
    assert_int_equal (timers_claim_all (f->redis, 0, 60000, 8, &timers, &n), 0);
    assert_int_equal (n, 0);
    assert_null (timers);
    assert_int_equal (s_script_calls (f), before);

    //  At 1 only bucket 0 has a due timer.
    assert_int_equal (timers_claim_all (f->redis, 1, 60000, 8, &timers, &n), 0);
    assert_int_equal (n, 1);
    assert_int_equal (timers [0].at_ms, 1);
    assert_int_equal (ticket_id_bucket (timers [0].ticket_id), 0);
    free (timers);
    assert_int_equal (s_script_calls (f), before + 1);

    //  At 70: due 2 .. 64 in buckets 1 .. 63 and 65 .. 70 in buckets 0 .. 5,
    //  so every bucket: 69 timers in 64 scripts.
    assert_int_equal (timers_claim_all (f->redis, 70, 60000, 8, &timers, &n), 0);
    assert_int_equal (n, 69);
    free (timers);
    assert_int_equal (s_script_calls (f), before + 1 + CB_BUCKETS);
}

//  The claim script is loaded once per connection, not on every tick; after
//  Redis lost its scripts (SCRIPT FLUSH, as after a restart) a tick still
//  claims what is due (each bucket's NOSCRIPT is claimed on its own).
static void
test_claim_all_loads_its_script_once (void **state)
{
    fixture_t *f = *state;
    s_add_many (f, 3 * CB_BUCKETS);
    cb_timer_t *timers = NULL;
    size_t n = 0;
    assert_int_equal (timers_claim_all (f->redis, 10, 60000, 8, &timers, &n), 0);
    assert_int_equal (n, 10);
    free (timers);
    long long loads = s_command_calls (f, "script|load");
    assert_int_equal (timers_claim_all (f->redis, 20, 60000, 8, &timers, &n), 0);
    assert_int_equal (n, 10);
    free (timers);
    assert_int_equal (s_command_calls (f, "script|load"), loads);

    redisReply *reply = cb_redis_command (f->redis, "SCRIPT FLUSH");
    freeReplyObject (reply);
    assert_int_equal (timers_claim_all (f->redis, 30, 60000, 8, &timers, &n), 0);
    assert_int_equal (n, 10);
    for (size_t i = 0; i < n; i++)
        assert_true (timers [i].at_ms > 20 && timers [i].at_ms <= 30);
    free (timers);
    assert_int_equal (s_command_calls (f, "script|load"), loads + 1);
    assert_int_equal (timers_claim_all (f->redis, 40, 60000, 8, &timers, &n), 0);
    assert_int_equal (n, 10);
    free (timers);
    assert_int_equal (s_command_calls (f, "script|load"), loads + 1);
}

typedef struct {
    const char *url;
    int64_t now;
    char **members;          //  what this claimer got
    size_t count, cap;
    int failed;
} s_claimer_t;

static void *
s_claimer (void *arg)
{
    s_claimer_t *c = arg;
    char err [128];
    cb_redis_t *redis = cb_redis_new (c->url, 5000, err, sizeof err);
    if (!redis) {
        c->failed = 1;
        return NULL;
    }
    //  Small batches so the two claimers interleave many times.
    for (;;) {
        cb_timer_t *timers = NULL;
        size_t n = 0;
        if (timers_claim_all (redis, c->now, 60000, 7, &timers, &n)) {
            c->failed = 1;
            break;
        }
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            if (c->count == c->cap) {
                c->cap = c->cap ? c->cap * 2 : 1024;
                c->members = realloc (c->members, c->cap * sizeof *c->members);
            }
            char member [TIMER_MEMBER_MAX];
            timer_member (&timers [i], member, sizeof member);
            c->members [c->count++] = strdup (member);
        }
        free (timers);
    }
    cb_redis_destroy (&redis);
    return NULL;
}

static int
s_strcmp (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
test_two_claimers (void **state)
{
    fixture_t *f = *state;
    const int count = 20000;
    s_add_many (f, count);
    s_claimer_t c [2] = { { .url = f->server.url, .now = count },
                          { .url = f->server.url, .now = count } };
    pthread_t threads [2];
    for (int i = 0; i < 2; i++)
        assert_int_equal (pthread_create (&threads [i], NULL, s_claimer, &c [i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join (threads [i], NULL);
    assert_int_equal (c [0].failed + c [1].failed, 0);
    //  Every timer claimed, none twice.
    size_t total = c [0].count + c [1].count;
    assert_int_equal (total, (size_t) count);
    char **all = malloc (total * sizeof *all);
    memcpy (all, c [0].members, c [0].count * sizeof *all);
    memcpy (all + c [0].count, c [1].members, c [1].count * sizeof *all);
    qsort (all, total, sizeof *all, s_strcmp);
    for (size_t i = 1; i < total; i++)
        if (strcmp (all [i - 1], all [i]) == 0)
            fail_msg ("claimed twice: %s", all [i]);
    printf ("two claimers: %zu and %zu of %d timers, none twice\n", c [0].count, c [1].count,
            count);
    //  Both really took part (each claim_all takes up to 7 x 64).
    assert_true (c [0].count > 0 && c [1].count > 0);
    size_t armed = 1, in_flight = 0;
    assert_int_equal (timers_count (f->redis, &armed, &in_flight), 0);
    assert_int_equal (armed, 0);
    assert_int_equal (in_flight, (size_t) count);
    for (size_t i = 0; i < total; i++)
        free (all [i]);
    free (all);
    free (c [0].members);
    free (c [1].members);
}

static void
test_hundred_thousand (void **state)
{
    fixture_t *f = *state;
    const int count = 100000;
    int64_t t0 = cb_clock_mono_ms ();
    s_add_many (f, count);
    int64_t t1 = cb_clock_mono_ms ();
    //  Claim in due order: at "now" = count / 2 exactly half are due.
    size_t claimed = 0, rounds = 0;
    int64_t last_due = 0;
    for (;;) {
        cb_timer_t *timers = NULL;
        size_t n = 0;
        assert_int_equal (timers_claim_all (f->redis, count / 2, 60000, TIMERS_BATCH_MAX,
                                            &timers, &n), 0);
        for (size_t i = 0; i < n; i++) {
            assert_true (timers [i].at_ms <= count / 2);
            if (timers [i].at_ms > last_due)
                last_due = timers [i].at_ms;
        }
        free (timers);
        claimed += n;
        rounds++;
        if (n == 0)
            break;
    }
    assert_int_equal (claimed, (size_t) count / 2);
    assert_int_equal (last_due, count / 2);
    for (;;) {
        cb_timer_t *timers = NULL;
        size_t n = 0;
        assert_int_equal (timers_claim_all (f->redis, count, 60000, TIMERS_BATCH_MAX,
                                            &timers, &n), 0);
        free (timers);
        claimed += n;
        rounds++;
        if (n == 0)
            break;
    }
    int64_t t2 = cb_clock_mono_ms ();
    assert_int_equal (claimed, (size_t) count);
    size_t armed = 1, in_flight = 0, moved = 0;
    assert_int_equal (timers_count (f->redis, &armed, &in_flight), 0);
    assert_int_equal (armed, 0);
    assert_int_equal (in_flight, (size_t) count);
    //  A crash of everything: all of them come back, 1000 per bucket per call.
    size_t back = 0;
    do {
        assert_int_equal (timers_requeue_expired (f->redis, count + 60000, &moved), 0);
        back += moved;
    } while (moved > 0);
    assert_int_equal (back, (size_t) count);
    int64_t t3 = cb_clock_mono_ms ();
    printf ("100000 timers: added in %lld ms (%.0f/s), claimed in %lld ms (%.0f/s, %zu round "
            "trips), requeued in %lld ms\n",
            (long long) (t1 - t0), count * 1000.0 / (double) (t1 - t0 + 1),
            (long long) (t2 - t1), count * 1000.0 / (double) (t2 - t1 + 1), rounds,
            (long long) (t3 - t2));
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_member_text),
        cmocka_unit_test (test_timers_for_ticket),
        cmocka_unit_test_setup (test_schedule_move_cancel, s_flush),
        cmocka_unit_test_setup (test_claim_complete_requeue, s_flush),
        cmocka_unit_test_setup (test_two_claimers, s_flush),
        cmocka_unit_test_setup (test_hundred_thousand, s_flush),
        cmocka_unit_test_setup (test_claim_all_scripts_only_where_due, s_flush),
        cmocka_unit_test_setup (test_claim_all_loads_its_script_once, s_flush),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
