/*  test_lease.c — the Redis lease against a real redis-server: one holder at
    a time, holder-checked renew and release, expiry, and Redis going away.
    Expiry is made to happen by Redis itself (PEXPIRE 1 and a bounded poll),
    never by sleeping. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/lease.h"
#include "civicbus/clock.h"
#include "test_redis.h"

typedef struct {
    test_redis_t server;
    cb_redis_t *redis_a;        //  one connection per "process"
    cb_redis_t *redis_b;
    cb_redis_t *admin;
} fixture_t;

static int
s_group_setup (void **state)
{
    static fixture_t fixture;
    memset (&fixture, 0, sizeof fixture);
    if (test_redis_start (&fixture.server))
        return -1;
    *state = &fixture;
    return 0;
}

static int
s_group_teardown (void **state)
{
    fixture_t *fixture = *state;
    test_redis_stop (&fixture->server);
    return 0;
}

static int
s_setup (void **state)
{
    fixture_t *fixture = *state;
    char err [128];
    fixture->redis_a = cb_redis_new (fixture->server.url, 500, err, sizeof err);
    fixture->redis_b = cb_redis_new (fixture->server.url, 500, err, sizeof err);
    fixture->admin = cb_redis_new (fixture->server.url, 500, err, sizeof err);
    if (!fixture->redis_a || !fixture->redis_b || !fixture->admin)
        return -1;
    redisReply *reply = cb_redis_command (fixture->admin, "FLUSHALL");
    if (!reply)
        return -1;
    freeReplyObject (reply);
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fixture = *state;
    cb_redis_destroy (&fixture->redis_a);
    cb_redis_destroy (&fixture->redis_b);
    cb_redis_destroy (&fixture->admin);
    return 0;
}

//  PTTL of the lease key, or -2 when it does not exist.
static long long
s_pttl (fixture_t *fixture)
{
    redisReply *reply = cb_redis_command (fixture->admin, "PTTL lease:test");
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_INTEGER);
    long long pttl = reply->integer;
    freeReplyObject (reply);
    return pttl;
}

static void
s_admin (fixture_t *fixture, const char *command)
{
    redisReply *reply = cb_redis_command (fixture->admin, command);
    assert_non_null (reply);
    assert_int_not_equal (reply->type, REDIS_REPLY_ERROR);
    freeReplyObject (reply);
}

/* ---- tests ---- */

static void
test_new_refuses_bad_arguments (void **state)
{
    fixture_t *fixture = *state;
    assert_null (lease_new (fixture->redis_a, "", "a", 1000));
    assert_null (lease_new (fixture->redis_a, "lease:test", "", 1000));
    assert_null (lease_new (fixture->redis_a, "lease:test", NULL, 1000));
    assert_null (lease_new (fixture->redis_a, "lease:test", "a", 0));
    lease_t *lease = lease_new (fixture->redis_a, "lease:test", "a", 1000);
    assert_non_null (lease);
    assert_string_equal (lease_holder_id (lease), "a");
    assert_int_equal (lease_ttl_ms (lease), 1000);
    assert_false (lease_held (lease));
    lease_destroy (&lease);
    assert_null (lease);
    lease_destroy (&lease);
}

static void
test_one_holder_at_a_time (void **state)
{
    fixture_t *fixture = *state;
    lease_t *a = lease_new (fixture->redis_a, "lease:test", "dispatcher-a", 30000);
    lease_t *b = lease_new (fixture->redis_b, "lease:test", "dispatcher-b", 30000);
    char holder [64];

    assert_int_equal (lease_holder (a, holder, sizeof holder), 0);
    assert_int_equal (lease_acquire (a), 1);
    assert_true (lease_held (a));
    assert_true (lease_remaining_ms (a) > 0 && lease_remaining_ms (a) <= 30000);
    long long pttl = s_pttl (fixture);
    assert_true (pttl > 0 && pttl <= 30000);

    //  b cannot take it, renew it or release it
    assert_int_equal (lease_acquire (b), 0);
    assert_false (lease_held (b));
    assert_int_equal (lease_renew (b), 0);
    assert_int_equal (lease_release (b), 0);
    assert_int_equal (lease_holder (b, holder, sizeof holder), 1);
    assert_string_equal (holder, "dispatcher-a");

    //  a acquiring again keeps it (a restart with the same id)
    assert_int_equal (lease_acquire (a), 1);
    assert_int_equal (lease_renew (a), 1);
    assert_true (lease_held (a));

    //  a releases: b may take it, a cannot renew any more
    assert_int_equal (lease_release (a), 1);
    assert_false (lease_held (a));
    assert_int_equal (lease_holder (a, holder, sizeof holder), 0);
    assert_int_equal (lease_acquire (b), 1);
    assert_int_equal (lease_renew (a), 0);
    assert_false (lease_held (a));
    assert_int_equal (lease_holder (a, holder, sizeof holder), 1);
    assert_string_equal (holder, "dispatcher-b");
    lease_destroy (&a);
    lease_destroy (&b);
}

static void
test_renew_extends_the_ttl (void **state)
{
    fixture_t *fixture = *state;
    lease_t *a = lease_new (fixture->redis_a, "lease:test", "a", 60000);
    assert_int_equal (lease_acquire (a), 1);
    s_admin (fixture, "PEXPIRE lease:test 5000");
    assert_true (s_pttl (fixture) <= 5000);
    assert_int_equal (lease_renew (a), 1);
    assert_true (s_pttl (fixture) > 5000);
    lease_destroy (&a);
}

static void
test_lapsed_lease_goes_to_the_standby (void **state)
{
    fixture_t *fixture = *state;
    lease_t *a = lease_new (fixture->redis_a, "lease:test", "a", 60000);
    lease_t *b = lease_new (fixture->redis_b, "lease:test", "b", 60000);
    assert_int_equal (lease_acquire (a), 1);
    assert_int_equal (lease_acquire (b), 0);

    //  Let Redis expire the key (as it would when a dies), polling b with a
    //  deadline the way a standby does.
    s_admin (fixture, "PEXPIRE lease:test 1");
    int64_t deadline = cb_clock_mono_ms () + 5000;
    int rc = 0;
    while (rc != 1 && cb_clock_mono_ms () < deadline)
        rc = lease_acquire (b);
    assert_int_equal (rc, 1);
    assert_true (lease_held (b));

    //  The old holder finds out at its next renewal and must stop.
    assert_true (lease_held (a));
    assert_int_equal (lease_renew (a), 0);
    assert_false (lease_held (a));
    assert_int_equal (lease_remaining_ms (a), 0);
    char holder [16];
    assert_int_equal (lease_holder (a, holder, sizeof holder), 1);
    assert_string_equal (holder, "b");
    lease_destroy (&a);
    lease_destroy (&b);
}

static void
test_redis_gone_means_not_held (void **state)
{
    fixture_t *fixture = *state;
    lease_t *a = lease_new (fixture->redis_a, "lease:test", "a", 60000);
    assert_int_equal (lease_acquire (a), 1);
    test_redis_kill (&fixture->server, 1);
    assert_int_equal (lease_renew (a), -1);
    assert_false (lease_held (a));
    assert_int_equal (lease_acquire (a), -1);
    assert_false (lease_held (a));
    char holder [16];
    assert_int_equal (lease_holder (a, holder, sizeof holder), -1);
    assert_int_equal (lease_release (a), -1);

    //  Back (AOF kept the key with its ttl): a can renew what is its own.
    assert_int_equal (test_redis_restart (&fixture->server), 0);
    int64_t deadline = cb_clock_mono_ms () + 10000;
    int rc = -1;
    while (rc == -1 && cb_clock_mono_ms () < deadline)
        rc = lease_acquire (a);
    assert_int_equal (rc, 1);
    assert_true (lease_held (a));
    assert_int_equal (lease_release (a), 1);
    lease_destroy (&a);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_new_refuses_bad_arguments, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_one_holder_at_a_time, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_renew_extends_the_ttl, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_lapsed_lease_goes_to_the_standby, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_redis_gone_means_not_held, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, s_group_setup, s_group_teardown);
}
