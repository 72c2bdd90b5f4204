/*  test_ticket_store.c — the ticket store against a real redis-server:
    create with idempotency, load, history, compare-and-set, the indexes the
    store maintains, extra ops, and what happens while Redis is away. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/ticket_store.h"
#include "civicbus/duplicates.h"
#include "civicbus/ticket_id.h"
#include "civicbus/pbutil.h"
#include "test_redis.h"

typedef struct {
    test_redis_t server;
    cb_redis_t *redis;
    ticket_store_t *store;
} fixture_t;

static const ticket_actor_t s_app = { CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER, "demo-app", "Demo app" };
static const ticket_actor_t s_system = { CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM, "dispatcher", NULL };
static const int64_t s_now = 1790755200000LL;     //  2026-09-30T16:00+08:00

static int
s_setup (void **state)
{
    fixture_t *f = calloc (1, sizeof *f);
    if (!f || test_redis_start (&f->server))
        return -1;
    char err [256];
    f->redis = cb_redis_new (f->server.url, 2000, err, sizeof err);
    f->store = f->redis ? ticket_store_new (f->redis) : NULL;
    *state = f;
    return f->store ? 0 : -1;
}

static int
s_teardown (void **state)
{
    fixture_t *f = *state;
    ticket_store_destroy (&f->store);
    cb_redis_destroy (&f->redis);
    test_redis_stop (&f->server);
    free (f);
    return 0;
}

static cb_ticket_t *
s_new_ticket (const char *category)
{
    cb_ticket_t *t = calloc (1, sizeof *t);
    civicbus__v1__ticket__init (t);
    t->source = CIVICBUS__V1__SOURCE__SOURCE_APP;
    t->request_type = CIVICBUS__V1__REQUEST_TYPE__COMPLAINT;
    pb_set_string (&t->category, category);
    pb_set_string (&t->description, "路灯不亮，晚上很黑");
    t->location = calloc (1, sizeof *t->location);
    civicbus__v1__location__init (t->location);
    t->location->has_point = true;
    t->location->lat = 32.0;
    t->location->lon = 118.7;
    pb_set_string (&t->location->grid_code, "320105001001001");
    pb_strv_push (&t->location->n_grid_path, &t->location->grid_path, "320105");
    pb_strv_push (&t->location->n_grid_path, &t->location->grid_path, "320105001");
    pb_strv_push (&t->location->n_grid_path, &t->location->grid_path, "320105001001");
    pb_strv_push (&t->location->n_grid_path, &t->location->grid_path, "320105001001001");
    t->reporter = calloc (1, sizeof *t->reporter);
    civicbus__v1__reporter__init (t->reporter);
    pb_set_string (&t->reporter->name, "张三");
    pb_set_string (&t->reporter->phone, "13812345678");
    return t;
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
test_create_load_history (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_new_ticket ("U0101");
    char id [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, t, "320105", "app:key-1", 3600, &s_app,
                                           s_now, id, sizeof id), TS_OK);
    assert_string_equal (t->id, id);
    assert_int_equal (strncmp (id, "320105-20260930-", 16), 0);
    assert_int_equal (ticket_id_bucket (id), cb_bucket_for_key ("app:key-1"));
    assert_int_equal (t->state, CIVICBUS__V1__TICKET_STATE__RECEIVED);
    assert_int_equal (t->version, 1);

    cb_ticket_t *loaded = NULL;
    assert_int_equal (ticket_store_load (f->store, id, &loaded), TS_OK);
    assert_string_equal (loaded->id, id);
    assert_string_equal (loaded->category, "U0101");
    assert_string_equal (loaded->reporter->phone, "13812345678");
    assert_int_equal (loaded->created_ms, s_now);
    assert_int_equal (loaded->version, 1);

    cb_event_t **events;
    size_t count;
    assert_int_equal (ticket_store_history (f->store, id, &events, &count), TS_OK);
    assert_int_equal (count, 1);
    assert_string_equal (events [0]->ticket_id, id);
    assert_string_equal (events [0]->type, "received");
    assert_int_equal (events [0]->sequence, 1);
    assert_string_equal (events [0]->actor->id, "demo-app");
    assert_int_equal (events [0]->to_state, CIVICBUS__V1__TICKET_STATE__RECEIVED);
    ticket_store_free_events (events, count);

    //  Inbox and indexes in the ticket's bucket.
    char key [64];
    ts_bucket_key (key, sizeof key, "inbox", ticket_id_bucket (id));
    assert_int_equal (s_zcard (f, key), 1);
    snprintf (key, sizeof key, "idx:{b%02d}:st:RECEIVED", ticket_id_bucket (id));
    assert_int_equal (s_zcard (f, key), 1);
    snprintf (key, sizeof key, "idx:{b%02d}:grid:320105001", ticket_id_bucket (id));
    assert_int_equal (s_zcard (f, key), 1);

    civicbus__v1__ticket__free_unpacked (loaded, NULL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_idempotent_repeat (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_new_ticket ("U0102");
    char first [CB_TICKET_ID_MAX], again [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, t, "320105", "hotline:GD-0001", 3600, &s_app,
                                           s_now, first, sizeof first), TS_OK);
    cb_ticket_t *u = s_new_ticket ("U0102");
    assert_int_equal (ticket_store_create (f->store, u, "320105", "hotline:GD-0001", 3600, &s_app,
                                           s_now + 5, again, sizeof again), TS_REPEAT);
    assert_string_equal (first, again);
    //  Nothing new was written: the repeat did not get an id.
    assert_true (pb_string_is_empty (u->id));
    //  Different keys give different ids, also in the same bucket.
    cb_ticket_t *v = s_new_ticket ("U0102");
    char other [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, v, "320105", "hotline:GD-0002", 3600, &s_app,
                                           s_now, other, sizeof other), TS_OK);
    assert_string_not_equal (first, other);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    civicbus__v1__ticket__free_unpacked (u, NULL);
    civicbus__v1__ticket__free_unpacked (v, NULL);
}

static int
s_add_dispatch_ops (const cb_ticket_t *before, cb_ticket_t *after, const ticket_outcome_t *outcome,
                    ts_ops_t *ops, void *arg)
{
    (void) outcome;
    (void) arg;
    assert_int_equal (before->state, CIVICBUS__V1__TICKET_STATE__ACCEPTED);
    char key [96];
    ts_key (key, sizeof key, "dsp", after->id);
    ts_ops_hset (ops, key, after->department, "d-1");
    //  The callback may change the ticket further before it is stored.
    after->escalation_level = 1;
    return 0;
}

static void
test_apply_cas_and_indexes (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_new_ticket ("U0103");
    char id [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, t, "320105", "app:cas", 3600, &s_app,
                                           s_now, id, sizeof id), TS_OK);
    int bucket = ticket_id_bucket (id);

    ticket_input_t accept = { .kind = TEV_ACCEPT };
    ticket_outcome_t outcome;
    cb_ticket_t *after = NULL;
    assert_int_equal (ticket_store_transition (f->store, id, &accept, &s_system, s_now + 1000, 3,
                                               NULL, NULL, &outcome, &after), TS_OK);
    assert_int_equal (after->state, CIVICBUS__V1__TICKET_STATE__ACCEPTED);
    assert_int_equal (after->version, 2);
    civicbus__v1__ticket__free_unpacked (after, NULL);

    ticket_input_t dispatch = { .kind = TEV_DISPATCH, .department = "urban" };
    assert_int_equal (ticket_store_transition (f->store, id, &dispatch, &s_system, s_now + 2000, 3,
                                               s_add_dispatch_ops, NULL, &outcome, &after), TS_OK);
    assert_int_equal (after->state, CIVICBUS__V1__TICKET_STATE__DISPATCHED);
    assert_int_equal (after->version, 3);
    assert_int_equal (after->event_count, 3);
    assert_int_equal (after->escalation_level, 1);
    civicbus__v1__ticket__free_unpacked (after, NULL);

    char key [96];
    snprintf (key, sizeof key, "idx:{b%02d}:st:RECEIVED", bucket);
    long long received = s_zcard (f, key);
    snprintf (key, sizeof key, "idx:{b%02d}:st:DISPATCHED", bucket);
    assert_int_equal (s_zcard (f, key), 1);
    snprintf (key, sizeof key, "idx:{b%02d}:dept:urban", bucket);
    assert_int_equal (s_zcard (f, key), 1);
    ts_key (key, sizeof key, "dsp", id);
    redisReply *reply = cb_redis_command (f->redis, "HGET %s urban", key);
    assert_non_null (reply);
    assert_string_equal (reply->str, "d-1");
    freeReplyObject (reply);
    (void) received;
    //  Every stored event is in the notifier's outbox.
    snprintf (key, sizeof key, "ntfq:{b%02d}", bucket);
    char member [96];
    for (int seq = 1; seq <= 3; seq++) {
        snprintf (member, sizeof member, "%s#%d", id, seq);
        reply = cb_redis_command (f->redis, "ZSCORE %s %s", key, member);
        assert_non_null (reply);
        assert_int_equal (reply->type, REDIS_REPLY_STRING);
        freeReplyObject (reply);
    }

    //  A refusal stores nothing.
    ticket_input_t close = { .kind = TEV_VERIFY };
    ticket_actor_t dept = { CIVICBUS__V1__ACTOR_KIND__ACTOR_DEPARTMENT, "urban", NULL };
    assert_int_equal (ticket_store_transition (f->store, id, &close, &dept, s_now + 3000, 3,
                                               NULL, NULL, &outcome, &after), TS_REFUSED);
    assert_null (after);
    assert_true (strlen (outcome.reason) > 0);

    //  A stale version conflicts.
    cb_ticket_t *before = NULL, *changed = NULL;
    assert_int_equal (ticket_store_load (f->store, id, &before), TS_OK);
    changed = ticket_clone (before);
    before->version = 1;
    assert_int_equal (ticket_store_apply (f->store, before, changed, NULL, 0, NULL), TS_CONFLICT);
    assert_int_equal (changed->version, 1);
    civicbus__v1__ticket__free_unpacked (before, NULL);
    civicbus__v1__ticket__free_unpacked (changed, NULL);

    cb_event_t **events;
    size_t count;
    assert_int_equal (ticket_store_history (f->store, id, &events, &count), TS_OK);
    assert_int_equal (count, 3);
    assert_string_equal (events [1]->type, "accept");
    assert_string_equal (events [2]->type, "dispatch");
    assert_int_equal (events [2]->sequence, 3);
    assert_int_equal (events [2]->from_state, CIVICBUS__V1__TICKET_STATE__ACCEPTED);
    ticket_store_free_events (events, count);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_operator_queue_follows_flags (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_new_ticket ("X9999");
    char id [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, t, "320105", "app:review", 3600, &s_app,
                                           s_now, id, sizeof id), TS_OK);
    char key [64];
    ts_bucket_key (key, sizeof key, "opq", ticket_id_bucket (id));
    assert_int_equal (s_zcard (f, key), 0);
    cb_ticket_t *after = ticket_clone (t);
    after->needs_review = true;
    pb_set_string (&after->review_reason, "unknown category X9999");
    ts_event_t ev = { "review", &s_system, after->state, after->state, "unknown category", NULL };
    assert_int_equal (ticket_store_apply (f->store, t, after, &ev, 1, NULL), TS_OK);
    assert_int_equal (s_zcard (f, key), 1);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_not_found_and_bad_ids (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = NULL;
    assert_int_equal (ticket_store_load (f->store, "320105-20260930-999999999", &t), TS_NOT_FOUND);
    assert_int_equal (ticket_store_load (f->store, "../../etc", &t), TS_NOT_FOUND);
    assert_null (t);
    cb_event_t **events;
    size_t count;
    assert_int_equal (ticket_store_history (f->store, "nope", &events, &count), TS_NOT_FOUND);
}

//  fsync every write, so a kill -9 right after the answer loses nothing.
static void
s_fsync_always (fixture_t *f)
{
    redisReply *reply = cb_redis_command (f->redis, "CONFIG SET appendfsync always");
    assert_non_null (reply);
    freeReplyObject (reply);
}

static void
test_unavailable_then_recovers (void **state)
{
    fixture_t *f = *state;
    s_fsync_always (f);
    cb_ticket_t *t = s_new_ticket ("U0104");
    char id [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, t, "320105", "app:durable", 3600, &s_app,
                                           s_now, id, sizeof id), TS_OK);
    test_redis_kill (&f->server, 1);
    cb_ticket_t *loaded = NULL;
    assert_int_equal (ticket_store_load (f->store, id, &loaded), TS_UNAVAILABLE);
    cb_ticket_t *u = s_new_ticket ("U0104");
    char other [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, u, "320105", "app:while-down", 3600, &s_app,
                                           s_now, other, sizeof other), TS_UNAVAILABLE);
    assert_int_equal (test_redis_restart (&f->server), 0);
    //  Scripts are gone after a restart: NOSCRIPT is handled transparently.
    assert_int_equal (ticket_store_load (f->store, id, &loaded), TS_OK);
    assert_string_equal (loaded->id, id);
    assert_int_equal (ticket_store_create (f->store, u, "320105", "app:while-down", 3600, &s_app,
                                           s_now, other, sizeof other), TS_OK);
    civicbus__v1__ticket__free_unpacked (loaded, NULL);
    civicbus__v1__ticket__free_unpacked (u, NULL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

//  Creates a ticket with idempotency key `key`; returns it (caller frees).
static cb_ticket_t *
s_created (fixture_t *f, const char *key)
{
    cb_ticket_t *t = s_new_ticket ("U0105");
    char id [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, t, "320105", key, 3600, &s_app, s_now, id,
                                           sizeof id), TS_OK);
    return t;
}

static void
test_load_many (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *a = s_created (f, "app:many-load-a");
    cb_ticket_t *b = s_created (f, "app:many-load-b");
    const char *ids [] = { a->id, "not-a-ticket", b->id, "320105-20260930-999999999" };
    cb_ticket_t *loaded [4];
    int results [4];
    assert_int_equal (ticket_store_load_many (f->store, ids, 4, loaded, results), TS_OK);
    assert_int_equal (results [0], TS_OK);
    assert_int_equal (results [1], TS_NOT_FOUND);
    assert_int_equal (results [2], TS_OK);
    assert_int_equal (results [3], TS_NOT_FOUND);
    assert_string_equal (loaded [0]->id, a->id);
    assert_string_equal (loaded [2]->id, b->id);
    assert_null (loaded [1]);
    assert_null (loaded [3]);
    //  The connection is still in step: a plain load after the pipeline.
    cb_ticket_t *again = NULL;
    assert_int_equal (ticket_store_load (f->store, b->id, &again), TS_OK);
    assert_string_equal (again->id, b->id);
    civicbus__v1__ticket__free_unpacked (again, NULL);
    civicbus__v1__ticket__free_unpacked (loaded [0], NULL);
    civicbus__v1__ticket__free_unpacked (loaded [2], NULL);
    civicbus__v1__ticket__free_unpacked (a, NULL);
    civicbus__v1__ticket__free_unpacked (b, NULL);
}

//  A change that turns the light yellow with one "warning" event and one
//  extra write (ZADD marks MEMBER in `key`).
static ts_change_t
s_yellow (cb_ticket_t *before, ts_event_t *ev, ts_ops_t *ops, const char *key)
{
    cb_ticket_t *after = ticket_clone (before);
    after->light = CIVICBUS__V1__LIGHT__LIGHT_YELLOW;
    after->updated_ms = s_now + 5000;
    *ev = (ts_event_t) { "warning", &s_system, before->state, before->state, NULL, NULL };
    assert_int_equal (ts_ops_zadd (ops, key, 1, before->id), 0);
    return (ts_change_t) { before, after, ev, 1, ops, -99 };
}

static void
test_apply_many (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *a = s_created (f, "app:many-apply-a");
    cb_ticket_t *b = s_created (f, "app:many-apply-b");
    cb_ticket_t *c = s_created (f, "app:many-apply-c");
    cb_ticket_t *stale = ticket_clone (b);
    stale->version = 7;             //  not what Redis holds
    char ka [64], kb [64], kc [64];
    ts_key (ka, sizeof ka, "mark", a->id);
    ts_key (kb, sizeof kb, "mark", b->id);
    ts_key (kc, sizeof kc, "mark", c->id);
    ts_event_t events [4];
    ts_ops_t *ops [4] = { ts_ops_new (), ts_ops_new (), ts_ops_new (), ts_ops_new () };
    ts_change_t batch [4] = {
        s_yellow (a, &events [0], ops [0], ka),
        s_yellow (stale, &events [1], ops [1], kb),
        s_yellow (c, &events [2], ops [2], kc),
        s_yellow (c, &events [3], ops [3], kc),     //  the same ticket again
    };
    assert_int_equal (ticket_store_apply_many (f->store, batch, 4), TS_OK);
    assert_int_equal (batch [0].result, TS_OK);
    assert_int_equal (batch [1].result, TS_CONFLICT);
    assert_int_equal (batch [2].result, TS_OK);
    assert_int_equal (batch [3].result, TS_CONFLICT);
    assert_int_equal (batch [0].after->version, 2);
    assert_int_equal (batch [0].after->event_count, 2);
    assert_int_equal (batch [1].after->version, 7);    //  given back on a conflict
    assert_int_equal (batch [3].after->version, 1);

    //  What was stored, with its event and extra write; what conflicted, not.
    const char *ids [] = { a->id, b->id, c->id };
    cb_ticket_t *loaded [3];
    int results [3];
    assert_int_equal (ticket_store_load_many (f->store, ids, 3, loaded, results), TS_OK);
    assert_int_equal (loaded [0]->light, CIVICBUS__V1__LIGHT__LIGHT_YELLOW);
    assert_int_equal (loaded [0]->version, 2);
    assert_int_not_equal (loaded [1]->light, CIVICBUS__V1__LIGHT__LIGHT_YELLOW);
    assert_int_equal (loaded [1]->version, 1);
    assert_int_equal (loaded [2]->version, 2);
    assert_int_equal (s_zcard (f, ka), 1);
    assert_int_equal (s_zcard (f, kb), 0);
    assert_int_equal (s_zcard (f, kc), 1);
    cb_event_t **history;
    size_t count;
    assert_int_equal (ticket_store_history (f->store, c->id, &history, &count), TS_OK);
    assert_int_equal (count, 2);                    //  received, one warning
    assert_string_equal (history [1]->type, "warning");
    ticket_store_free_events (history, count);

    for (int i = 0; i < 3; i++)
        civicbus__v1__ticket__free_unpacked (loaded [i], NULL);
    for (int i = 0; i < 4; i++) {
        civicbus__v1__ticket__free_unpacked (batch [i].after, NULL);
        ts_ops_destroy (&ops [i]);
    }
    civicbus__v1__ticket__free_unpacked (stale, NULL);
    civicbus__v1__ticket__free_unpacked (a, NULL);
    civicbus__v1__ticket__free_unpacked (b, NULL);
    civicbus__v1__ticket__free_unpacked (c, NULL);
}

static void
test_many_while_down_and_after_restart (void **state)
{
    fixture_t *f = *state;
    s_fsync_always (f);
    cb_ticket_t *a = s_created (f, "app:many-restart-a");
    ts_event_t ev;
    ts_ops_t *ops = ts_ops_new ();
    char key [64];
    ts_key (key, sizeof key, "mark", a->id);
    ts_change_t batch [1] = { s_yellow (a, &ev, ops, key) };
    assert_int_equal (ticket_store_apply_many (f->store, batch, 0), TS_OK);     //  empty: fine
    //  The apply script is loaded (and its sha known) before the restart.
    cb_ticket_t *warm = s_created (f, "app:many-restart-warm");
    cb_ticket_t *warm_after = ticket_clone (warm);
    assert_int_equal (ticket_store_apply (f->store, warm, warm_after, NULL, 0, NULL), TS_OK);

    test_redis_kill (&f->server, 1);
    const char *ids [] = { a->id };
    cb_ticket_t *loaded [1];
    int results [1];
    assert_int_equal (ticket_store_load_many (f->store, ids, 1, loaded, results), TS_UNAVAILABLE);
    assert_int_equal (results [0], TS_UNAVAILABLE);
    assert_int_equal (ticket_store_apply_many (f->store, batch, 1), TS_UNAVAILABLE);
    assert_int_equal (batch [0].result, TS_UNAVAILABLE);
    assert_int_equal (batch [0].after->version, 1);

    //  Back, without its scripts: NOSCRIPT is met inside the pipeline and
    //  the change is run again on its own.
    assert_int_equal (test_redis_restart (&f->server), 0);
    assert_int_equal (ticket_store_apply_many (f->store, batch, 1), TS_OK);
    assert_int_equal (batch [0].result, TS_OK);
    assert_int_equal (batch [0].after->version, 2);
    assert_int_equal (ticket_store_load_many (f->store, ids, 1, loaded, results), TS_OK);
    assert_int_equal (loaded [0]->light, CIVICBUS__V1__LIGHT__LIGHT_YELLOW);
    assert_int_equal (s_zcard (f, key), 1);

    civicbus__v1__ticket__free_unpacked (loaded [0], NULL);
    civicbus__v1__ticket__free_unpacked (batch [0].after, NULL);
    civicbus__v1__ticket__free_unpacked (warm_after, NULL);
    civicbus__v1__ticket__free_unpacked (warm, NULL);
    civicbus__v1__ticket__free_unpacked (a, NULL);
    ts_ops_destroy (&ops);
}

//  Creates through the pipelined path with the report counted in the
//  repeat-report rate (as the intake's writer does); the create's result.
static int
s_create_counted (fixture_t *f, const char *idem, bool duplicate, char *id, size_t cap)
{
    static cb_script_t script;
    script = (cb_script_t) CB_SCRIPT (ticket_store_create_source ());
    assert_int_equal (cb_redis_script_load (f->redis, &script), 0);
    cb_ticket_t *t = s_new_ticket ("U0109");
    ts_create_t *create = ts_create_new (t, "320105", idem, 3600, &s_app, s_now);
    assert_non_null (create);
    char area [64];
    dup_kpi_area (t, area, sizeof area);
    assert_string_equal (area, "320105001");
    assert_int_equal (ts_create_count_kpi (create, area, duplicate, DUP_KPI_TTL_S), 0);
    assert_int_equal (ts_create_append (create, f->redis, &script), 0);
    redisReply *reply = cb_redis_get_reply (f->redis);
    assert_non_null (reply);
    int rc = ts_create_reply (create, t, reply, id, cap);
    freeReplyObject (reply);
    ts_create_destroy (&create);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    return rc;
}

//  The create script counts each stored report once, in its bucket's
//  hashes; a repeat counts nothing; dup_kpi_read sums every bucket and the
//  unbucketed hashes older versions wrote.
static void
test_create_counts_kpi (void **state)
{
    fixture_t *f = *state;
    redisReply *reply = cb_redis_command (f->redis, "FLUSHALL");
    freeReplyObject (reply);
    char id [CB_TICKET_ID_MAX], id2 [CB_TICKET_ID_MAX], again [CB_TICKET_ID_MAX];
    assert_int_equal (s_create_counted (f, "app:kpi-1", false, id, sizeof id), TS_OK);
    assert_int_equal (s_create_counted (f, "app:kpi-2", true, id2, sizeof id2), TS_OK);
    assert_int_equal (s_create_counted (f, "app:kpi-1", false, again, sizeof again), TS_REPEAT);
    assert_string_equal (again, id);

    char key [64];
    snprintf (key, sizeof key, "kpi:{b%02d}:reports:20260930", ticket_id_bucket (id));
    reply = cb_redis_command (f->redis, "HGET %s 320105001", key);
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_STRING);
    //  Both reports are in this bucket's hash only when they share it.
    assert_int_equal (atoi (reply->str), ticket_id_bucket (id) == ticket_id_bucket (id2) ? 2 : 1);
    freeReplyObject (reply);
    reply = cb_redis_command (f->redis, "TTL %s", key);
    assert_true (reply->integer > 399 * 86400);
    freeReplyObject (reply);
    snprintf (key, sizeof key, "kpi:{b%02d}:dup:20260930", ticket_id_bucket (id2));
    reply = cb_redis_command (f->redis, "HGET %s 320105001", key);
    assert_int_equal (reply->type, REDIS_REPLY_STRING);
    assert_string_equal (reply->str, "1");
    freeReplyObject (reply);
    reply = cb_redis_command (f->redis, "TTL %s", key);
    assert_true (reply->integer > 399 * 86400);
    freeReplyObject (reply);

    json_t *kpi = NULL;
    assert_int_equal (dup_kpi_read (f->redis, 20260930, &kpi), 0);
    assert_int_equal (json_integer_value (json_object_get (kpi, "reports")), 2);
    assert_int_equal (json_integer_value (json_object_get (kpi, "duplicates")), 1);
    json_decref (kpi);

    //  Counts an older version left in the unbucketed hashes add in.
    reply = cb_redis_command (f->redis, "HSET kpi:reports:20260930 320105001 5 320105002 3");
    freeReplyObject (reply);
    reply = cb_redis_command (f->redis, "HSET kpi:dup:20260930 320105002 1");
    freeReplyObject (reply);
    assert_int_equal (dup_kpi_read (f->redis, 20260930, &kpi), 0);
    assert_int_equal (json_integer_value (json_object_get (kpi, "reports")), 10);
    assert_int_equal (json_integer_value (json_object_get (kpi, "duplicates")), 2);
    json_t *areas = json_object_get (kpi, "areas");
    assert_int_equal (json_array_size (areas), 2);
    json_t *first = json_array_get (areas, 0);
    assert_string_equal (json_string_value (json_object_get (first, "area")), "320105001");
    assert_int_equal (json_integer_value (json_object_get (first, "reports")), 7);
    assert_int_equal (json_integer_value (json_object_get (first, "duplicates")), 1);
    json_decref (kpi);

    //  Another day: nothing, not an error.
    assert_int_equal (dup_kpi_read (f->redis, 20261001, &kpi), 0);
    assert_int_equal (json_integer_value (json_object_get (kpi, "reports")), 0);
    assert_int_equal (json_array_size (json_object_get (kpi, "areas")), 0);
    json_decref (kpi);
}

//  A number taken ahead (ts_seq_append, as the intake's search round does)
//  names the ticket the create then stores; a repeat leaves its number
//  unused, and the script's own numbering goes on after the taken ones.
static void
test_create_with_number_taken_ahead (void **state)
{
    fixture_t *f = *state;
    cb_script_t script = CB_SCRIPT (ticket_store_create_source ());
    assert_int_equal (cb_redis_script_load (f->redis, &script), 0);
    const char *idem = "app:ahead-1";
    long long seqs [2];
    for (int round = 0; round < 2; round++) {
        assert_int_equal (ts_seq_append (f->redis, idem, s_now), 2);
        redisReply *replies [2] = { cb_redis_get_reply (f->redis), cb_redis_get_reply (f->redis) };
        seqs [round] = ts_seq_reply (replies, 2);
        assert_true (seqs [round] > 0);
        freeReplyObject (replies [0]);
        freeReplyObject (replies [1]);

        cb_ticket_t *t = s_new_ticket ("U0110");
        ts_create_t *create = ts_create_new (t, "320105", idem, 3600, &s_app, s_now);
        char predicted [CB_TICKET_ID_MAX], id [CB_TICKET_ID_MAX];
        assert_int_equal (ts_create_use_seq (create, seqs [round], predicted, sizeof predicted), 0);
        assert_int_equal (ticket_id_bucket (predicted), cb_bucket_for_key (idem));
        assert_int_equal (ts_create_append (create, f->redis, &script), 0);
        redisReply *reply = cb_redis_get_reply (f->redis);
        int rc = ts_create_reply (create, t, reply, id, sizeof id);
        freeReplyObject (reply);
        if (round == 0) {
            assert_int_equal (rc, TS_OK);
            assert_string_equal (id, predicted);
            cb_ticket_t *loaded = NULL;
            assert_int_equal (ticket_store_load (f->store, predicted, &loaded), TS_OK);
            assert_string_equal (loaded->id, predicted);
            civicbus__v1__ticket__free_unpacked (loaded, NULL);
        }
        else {
            //  The repeat answers with the first id; its number stays unused.
            assert_int_equal (rc, TS_REPEAT);
            assert_string_not_equal (id, predicted);
            cb_ticket_t *none = NULL;
            assert_int_equal (ticket_store_load (f->store, predicted, &none), TS_NOT_FOUND);
        }
        ts_create_destroy (&create);
        civicbus__v1__ticket__free_unpacked (t, NULL);
    }
    assert_int_equal (seqs [1], seqs [0] + 1);
    //  The counter expires like the script's own (three days).
    char key [64];
    snprintf (key, sizeof key, "seq:{b%02d}:20260930", cb_bucket_for_key (idem));
    redisReply *reply = cb_redis_command (f->redis, "TTL %s", key);
    assert_true (reply->integer > 2 * 86400 && reply->integer <= 3 * 86400);
    freeReplyObject (reply);
    //  A create without a taken number numbers itself after them.
    char other [32] = "";
    for (int i = 2; i < 10000; i++) {          //  another key of the same bucket
        snprintf (other, sizeof other, "app:ahead-%d", i);
        if (cb_bucket_for_key (other) == cb_bucket_for_key (idem))
            break;
    }
    assert_int_equal (cb_bucket_for_key (other), cb_bucket_for_key (idem));
    cb_ticket_t *t = s_new_ticket ("U0110");
    char id [CB_TICKET_ID_MAX], expected [CB_TICKET_ID_MAX];
    assert_int_equal (ticket_store_create (f->store, t, "320105", other, 3600, &s_app,
                                           s_now, id, sizeof id), TS_OK);
    assert_int_equal (ticket_id_format (expected, sizeof expected, "320105", 20260930,
                                        seqs [1] + 1, cb_bucket_for_key (idem)), 0);
    assert_string_equal (id, expected);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_create_load_history),
        cmocka_unit_test (test_idempotent_repeat),
        cmocka_unit_test (test_apply_cas_and_indexes),
        cmocka_unit_test (test_operator_queue_follows_flags),
        cmocka_unit_test (test_not_found_and_bad_ids),
        cmocka_unit_test (test_unavailable_then_recovers),
        cmocka_unit_test (test_load_many),
        cmocka_unit_test (test_apply_many),
        cmocka_unit_test (test_many_while_down_and_after_restart),
        cmocka_unit_test (test_create_counts_kpi),
        cmocka_unit_test (test_create_with_number_taken_ahead),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
