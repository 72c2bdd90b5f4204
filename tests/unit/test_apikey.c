/*  test_apikey.c — API keys against a real redis-server: create, list,
    revoke, verify, the cache's expiry and the per-key token bucket. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/apikey.h"
#include "civicbus/clock.h"
#include "test_redis.h"

typedef struct {
    test_redis_t server;
    cb_redis_t *redis;
} fixture_t;

/* ---- helpers ---- */

static int
s_setup (void **state)
{
    fixture_t *f = calloc (1, sizeof *f);
    if (!f || test_redis_start (&f->server))
        return -1;
    char err [256];
    f->redis = cb_redis_new (f->server.url, 2000, err, sizeof err);
    if (!f->redis)
        return -1;
    *state = f;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *f = *state;
    cb_redis_destroy (&f->redis);
    test_redis_stop (&f->server);
    free (f);
    return 0;
}

//  Each test starts with an empty database and the real clock.
static int
s_flush (void **state)
{
    fixture_t *f = *state;
    cb_clock_set_ms (0);
    redisReply *reply = cb_redis_command (f->redis, "FLUSHALL");
    if (!reply)
        return -1;
    freeReplyObject (reply);
    return 0;
}

static long long
s_hlen (cb_redis_t *redis, const char *key)
{
    redisReply *reply = cb_redis_command (redis, "HLEN %s", key);
    assert_non_null (reply);
    long long n = reply->integer;
    freeReplyObject (reply);
    return n;
}

static void
s_create (cb_redis_t *redis, const char *name, apikey_role_t role, int rate, char *secret)
{
    char err [256] = "";
    int rc = apikey_create (redis, name, role, rate, secret, APIKEY_SECRET_MAX, err, sizeof err);
    if (rc)
        fail_msg ("apikey_create %s: %s", name, err);
}

/* ---- tests ---- */

static void
test_role_names (void **state)
{
    (void) state;
    const char *names [] = { "reporter_app", "hotline", "operator", "admin", "sensor" };
    apikey_role_t roles [] = { APIKEY_ROLE_REPORTER_APP, APIKEY_ROLE_HOTLINE, APIKEY_ROLE_OPERATOR,
                               APIKEY_ROLE_ADMIN, APIKEY_ROLE_SENSOR };
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal (apikey_role_from_name (names [i]), roles [i]);
        assert_string_equal (apikey_role_name (roles [i]), names [i]);
    }
    assert_int_equal (apikey_role_from_name ("Operator"), APIKEY_ROLE_NONE);
    assert_int_equal (apikey_role_from_name (""), APIKEY_ROLE_NONE);
    assert_int_equal (apikey_role_from_name (NULL), APIKEY_ROLE_NONE);
    assert_string_equal (apikey_role_name (APIKEY_ROLE_NONE), "none");
    assert_string_equal (apikey_role_name (APIKEY_ROLE_ADMIN | APIKEY_ROLE_HOTLINE), "none");
    assert_true (apikey_role_sees_personal_data (APIKEY_ROLE_OPERATOR));
    assert_true (apikey_role_sees_personal_data (APIKEY_ROLE_ADMIN));
    assert_true (apikey_role_sees_personal_data (APIKEY_ROLE_HOTLINE));
    assert_false (apikey_role_sees_personal_data (APIKEY_ROLE_REPORTER_APP));
    assert_false (apikey_role_sees_personal_data (APIKEY_ROLE_SENSOR));
    assert_false (apikey_role_sees_personal_data (APIKEY_ROLE_NONE));
}

static void
test_create_stores_only_the_hash (void **state)
{
    fixture_t *f = *state;
    char secret [APIKEY_SECRET_MAX];
    s_create (f->redis, "app.one", APIKEY_ROLE_REPORTER_APP, 20, secret);
    assert_int_equal (strlen (secret), 47);
    assert_memory_equal (secret, "cbk_", 4);
    assert_int_equal (strspn (secret + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                          "0123456789-_"), 43);

    char hex [APIKEY_HASH_HEX_SIZE];
    apikey_hash_secret (secret, hex, sizeof hex);
    assert_int_equal (strlen (hex), 64);
    redisReply *reply = cb_redis_command (f->redis, "HGET apikey:names app.one");
    assert_int_equal (reply->type, REDIS_REPLY_STRING);
    assert_string_equal (reply->str, hex);
    freeReplyObject (reply);
    reply = cb_redis_command (f->redis, "HMGET apikey:%s name role rate", hex);
    assert_string_equal (reply->element [0]->str, "app.one");
    assert_string_equal (reply->element [1]->str, "reporter_app");
    assert_string_equal (reply->element [2]->str, "20");
    freeReplyObject (reply);
    //  The secret itself is nowhere in Redis.
    reply = cb_redis_command (f->redis, "KEYS *%s*", secret + 4);
    assert_int_equal (reply->elements, 0);
    freeReplyObject (reply);

    //  Two keys never share a secret.
    char other [APIKEY_SECRET_MAX];
    s_create (f->redis, "app.two", APIKEY_ROLE_REPORTER_APP, 0, other);
    assert_string_not_equal (secret, other);
}

static void
test_create_refuses (void **state)
{
    fixture_t *f = *state;
    char secret [APIKEY_SECRET_MAX], err [256];
    s_create (f->redis, "hotline-12345", APIKEY_ROLE_HOTLINE, 0, secret);
    assert_int_equal (apikey_create (f->redis, "hotline-12345", APIKEY_ROLE_OPERATOR, 0, secret,
                                     sizeof secret, err, sizeof err), -1);
    assert_non_null (strstr (err, "exists"));
    const char *bad_names [] = { "", "has space", "slash/no", "中文",
        "x123456789012345678901234567890123456789012345678901234567890123", NULL };
    for (int i = 0; bad_names [i]; i++)
        assert_int_equal (apikey_create (f->redis, bad_names [i], APIKEY_ROLE_ADMIN, 0, secret,
                                         sizeof secret, err, sizeof err), -1);
    assert_int_equal (apikey_create (f->redis, "ok", APIKEY_ROLE_NONE, 0, secret, sizeof secret,
                                     err, sizeof err), -1);
    assert_int_equal (apikey_create (f->redis, "ok", APIKEY_ROLE_ADMIN | APIKEY_ROLE_OPERATOR, 0,
                                     secret, sizeof secret, err, sizeof err), -1);
    assert_int_equal (apikey_create (f->redis, "ok", APIKEY_ROLE_ADMIN, -1, secret, sizeof secret,
                                     err, sizeof err), -1);
    assert_int_equal (apikey_create (f->redis, "ok", APIKEY_ROLE_ADMIN, 0, secret, 20,
                                     err, sizeof err), -1);
    //  Nothing of the refused ones reached Redis.
    assert_int_equal (s_hlen (f->redis, "apikey:names"), 1);
    redisReply *reply = cb_redis_command (f->redis, "KEYS apikey:*");
    assert_int_equal (reply->elements, 2);
    freeReplyObject (reply);
}

static void
test_verify (void **state)
{
    fixture_t *f = *state;
    char secret [APIKEY_SECRET_MAX];
    int64_t before = cb_clock_now_ms ();
    s_create (f->redis, "ops", APIKEY_ROLE_OPERATOR, 7, secret);
    apikey_info_t info;
    assert_int_equal (apikey_verify (f->redis, secret, &info), 0);
    assert_string_equal (info.name, "ops");
    assert_int_equal (info.role, APIKEY_ROLE_OPERATOR);
    assert_int_equal (info.rate_per_s, 7);
    assert_true (info.created_ms >= before && info.created_ms <= cb_clock_now_ms ());

    //  One changed character, a missing prefix, wrong lengths, junk.
    char wrong [APIKEY_SECRET_MAX];
    strcpy (wrong, secret);
    wrong [10] = wrong [10] == 'A' ? 'B' : 'A';
    assert_int_equal (apikey_verify (f->redis, wrong, &info), 1);
    assert_int_equal (apikey_verify (f->redis, secret + 4, &info), 1);
    strcpy (wrong, secret);
    wrong [46] = 0;
    assert_int_equal (apikey_verify (f->redis, wrong, &info), 1);
    strcpy (wrong, secret);
    strcat (wrong, "A");
    assert_int_equal (apikey_verify (f->redis, wrong, &info), 1);
    strcpy (wrong, secret);
    wrong [20] = '+';
    assert_int_equal (apikey_verify (f->redis, wrong, &info), 1);
    assert_int_equal (apikey_verify (f->redis, "", &info), 1);
    assert_int_equal (apikey_verify (f->redis, NULL, &info), 1);

    //  A record with a role this version does not know is not a key.
    char hex [APIKEY_HASH_HEX_SIZE];
    apikey_hash_secret (secret, hex, sizeof hex);
    redisReply *reply = cb_redis_command (f->redis, "HSET apikey:%s role superuser", hex);
    freeReplyObject (reply);
    assert_int_equal (apikey_verify (f->redis, secret, &info), 1);
}

static void
test_list_and_revoke (void **state)
{
    fixture_t *f = *state;
    char s1 [APIKEY_SECRET_MAX], s2 [APIKEY_SECRET_MAX], s3 [APIKEY_SECRET_MAX];
    s_create (f->redis, "zeta", APIKEY_ROLE_SENSOR, 100, s1);
    s_create (f->redis, "alpha", APIKEY_ROLE_ADMIN, 0, s2);
    s_create (f->redis, "mid", APIKEY_ROLE_HOTLINE, 5, s3);
    apikey_info_t *list = NULL;
    size_t count = 0;
    assert_int_equal (apikey_list (f->redis, &list, &count), 0);
    assert_int_equal (count, 3);
    assert_string_equal (list [0].name, "alpha");
    assert_int_equal (list [0].role, APIKEY_ROLE_ADMIN);
    assert_string_equal (list [1].name, "mid");
    assert_int_equal (list [1].rate_per_s, 5);
    assert_string_equal (list [2].name, "zeta");
    assert_int_equal (list [2].role, APIKEY_ROLE_SENSOR);
    free (list);

    apikey_info_t info;
    assert_int_equal (apikey_revoke (f->redis, "mid"), 0);
    assert_int_equal (apikey_verify (f->redis, s3, &info), 1);
    assert_int_equal (apikey_verify (f->redis, s1, &info), 0);
    assert_int_equal (apikey_revoke (f->redis, "mid"), 1);
    assert_int_equal (apikey_revoke (f->redis, "never"), 1);
    assert_int_equal (apikey_revoke (f->redis, "bad name"), 1);
    assert_int_equal (apikey_list (f->redis, &list, &count), 0);
    assert_int_equal (count, 2);
    free (list);

    //  The name is free again, with a new secret.
    char s4 [APIKEY_SECRET_MAX];
    s_create (f->redis, "mid", APIKEY_ROLE_OPERATOR, 0, s4);
    assert_int_equal (apikey_verify (f->redis, s4, &info), 0);
    assert_int_equal (info.role, APIKEY_ROLE_OPERATOR);
    assert_int_equal (apikey_verify (f->redis, s3, &info), 1);

    //  Empty database: an empty list.
    redisReply *reply = cb_redis_command (f->redis, "FLUSHALL");
    freeReplyObject (reply);
    assert_int_equal (apikey_list (f->redis, &list, &count), 0);
    assert_int_equal (count, 0);
    free (list);
}

static void
test_stale_name_is_reclaimed (void **state)
{
    fixture_t *f = *state;
    //  A revoke that crashed between its two writes: a name pointing at a
    //  record that is gone.
    redisReply *reply = cb_redis_command (f->redis, "HSET apikey:names ghost %s",
        "0000000000000000000000000000000000000000000000000000000000000000");
    freeReplyObject (reply);
    apikey_info_t *list = NULL;
    size_t count = 0;
    assert_int_equal (apikey_list (f->redis, &list, &count), 0);
    assert_int_equal (count, 0);
    free (list);
    char secret [APIKEY_SECRET_MAX];
    s_create (f->redis, "ghost", APIKEY_ROLE_ADMIN, 0, secret);
    apikey_info_t info;
    assert_int_equal (apikey_verify (f->redis, secret, &info), 0);
    assert_string_equal (info.name, "ghost");
}

static void
test_redis_down_is_not_unknown (void **state)
{
    fixture_t *f = *state;
    char secret [APIKEY_SECRET_MAX];
    s_create (f->redis, "ops", APIKEY_ROLE_OPERATOR, 0, secret);
    apikey_cache_t *cache = apikey_cache_new (5000);
    assert_non_null (cache);
    apikey_info_t info;
    assert_int_equal (apikey_cache_verify (cache, f->redis, secret, &info), 0);

    test_redis_kill (&f->server, 0);
    assert_int_equal (apikey_verify (f->redis, secret, &info), -1);
    apikey_info_t *list = NULL;
    size_t count = 0;
    assert_int_equal (apikey_list (f->redis, &list, &count), -1);
    assert_int_equal (apikey_revoke (f->redis, "ops"), -1);
    char other [APIKEY_SECRET_MAX], err [256] = "";
    assert_int_equal (apikey_create (f->redis, "new", APIKEY_ROLE_ADMIN, 0, other, sizeof other,
                                     err, sizeof err), -1);
    assert_true (strlen (err) > 0);
    //  The cache still answers for a fresh entry, and -1 once it expired.
    memset (&info, 0, sizeof info);
    assert_int_equal (apikey_cache_verify (cache, f->redis, secret, &info), 0);
    assert_string_equal (info.name, "ops");
    cb_clock_set_ms (cb_clock_now_ms () + 6000);
    assert_int_equal (apikey_cache_verify (cache, f->redis, secret, &info), -1);
    //  A malformed secret needs no Redis to be refused.
    assert_int_equal (apikey_cache_verify (cache, f->redis, "cbk_short", &info), 1);

    assert_int_equal (test_redis_restart (&f->server), 0);
    assert_int_equal (apikey_cache_verify (cache, f->redis, secret, &info), 0);
    apikey_cache_destroy (&cache);
    apikey_cache_destroy (&cache);
    assert_null (cache);
}

static void
test_cache_ttl (void **state)
{
    fixture_t *f = *state;
    cb_clock_set_ms (1800000000000LL);
    char secret [APIKEY_SECRET_MAX], unknown [APIKEY_SECRET_MAX];
    s_create (f->redis, "app", APIKEY_ROLE_REPORTER_APP, 0, secret);
    s_create (f->redis, "later", APIKEY_ROLE_REPORTER_APP, 0, unknown);
    assert_int_equal (apikey_revoke (f->redis, "later"), 0);

    apikey_cache_t *cache = apikey_cache_new (2000);
    apikey_info_t info;
    assert_int_equal (apikey_cache_verify (cache, f->redis, secret, &info), 0);
    assert_int_equal (apikey_cache_verify (cache, f->redis, unknown, &info), 1);
    //  Revoked in Redis, still served from the cache until the TTL passes.
    assert_int_equal (apikey_revoke (f->redis, "app"), 0);
    cb_clock_advance_ms (1999);
    assert_int_equal (apikey_cache_verify (cache, f->redis, secret, &info), 0);
    assert_string_equal (info.name, "app");
    cb_clock_advance_ms (1);
    assert_int_equal (apikey_cache_verify (cache, f->redis, secret, &info), 1);

    //  A cached "unknown" expires the same way.
    assert_int_equal (apikey_cache_verify (cache, f->redis, unknown, &info), 1);
    char hex [APIKEY_HASH_HEX_SIZE];
    apikey_hash_secret (unknown, hex, sizeof hex);
    redisReply *reply = cb_redis_command (f->redis,
        "HSET apikey:%s name later role admin rate 0 created_ms 1", hex);
    freeReplyObject (reply);
    assert_int_equal (apikey_cache_verify (cache, f->redis, unknown, &info), 1);
    cb_clock_advance_ms (2000);
    assert_int_equal (apikey_cache_verify (cache, f->redis, unknown, &info), 0);
    assert_int_equal (info.role, APIKEY_ROLE_ADMIN);
    apikey_cache_destroy (&cache);

    //  TTL 0: no caching at all.
    cache = apikey_cache_new (0);
    assert_int_equal (apikey_cache_verify (cache, f->redis, unknown, &info), 0);
    reply = cb_redis_command (f->redis, "DEL apikey:%s", hex);
    freeReplyObject (reply);
    assert_int_equal (apikey_cache_verify (cache, f->redis, unknown, &info), 1);
    apikey_cache_destroy (&cache);
}

static void
test_cache_survives_many_secrets (void **state)
{
    fixture_t *f = *state;
    char secret [APIKEY_SECRET_MAX];
    s_create (f->redis, "real", APIKEY_ROLE_OPERATOR, 0, secret);
    apikey_cache_t *cache = apikey_cache_new (60000);
    apikey_info_t info;
    //  More distinct wrong secrets than the table has slots: it must neither
    //  hang nor forget how to answer.
    char junk [APIKEY_SECRET_MAX];
    for (int i = 0; i < 5000; i++) {
        snprintf (junk, sizeof junk, "cbk_%043d", i);
        assert_int_equal (apikey_cache_verify (cache, f->redis, junk, &info), 1);
    }
    assert_int_equal (apikey_cache_verify (cache, f->redis, secret, &info), 0);
    assert_string_equal (info.name, "real");
    apikey_cache_destroy (&cache);
}

static void
test_token_bucket (void **state)
{
    (void) state;
    apikey_cache_t *cache = apikey_cache_new (1000);
    apikey_info_t limited = { .name = "limited", .role = APIKEY_ROLE_REPORTER_APP, .rate_per_s = 3 };
    apikey_info_t other = { .name = "other", .role = APIKEY_ROLE_REPORTER_APP, .rate_per_s = 1 };
    apikey_info_t free_key = { .name = "free", .role = APIKEY_ROLE_ADMIN, .rate_per_s = 0 };
    int64_t t = 1800000000000LL;
    //  A burst of one second's worth, then refused.
    assert_true (apikey_cache_allow (cache, &limited, t));
    assert_true (apikey_cache_allow (cache, &limited, t));
    assert_true (apikey_cache_allow (cache, &limited, t));
    assert_false (apikey_cache_allow (cache, &limited, t));
    assert_false (apikey_cache_allow (cache, &limited, t + 300));
    //  Buckets are per key.
    assert_true (apikey_cache_allow (cache, &other, t));
    assert_false (apikey_cache_allow (cache, &other, t + 10));
    //  One token every 333 ms.
    assert_true (apikey_cache_allow (cache, &limited, t + 334));
    assert_false (apikey_cache_allow (cache, &limited, t + 400));
    assert_true (apikey_cache_allow (cache, &limited, t + 667));
    //  A long pause refills to the burst, never beyond.
    int allowed = 0;
    for (int i = 0; i < 10; i++)
        allowed += apikey_cache_allow (cache, &limited, t + 60000);
    assert_int_equal (allowed, 3);
    //  A clock that steps back does not mint tokens.
    assert_false (apikey_cache_allow (cache, &limited, t));
    //  Unlimited keys are never refused.
    for (int i = 0; i < 1000; i++)
        assert_true (apikey_cache_allow (cache, &free_key, t));
    apikey_cache_destroy (&cache);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_role_names),
        cmocka_unit_test_setup (test_create_stores_only_the_hash, s_flush),
        cmocka_unit_test_setup (test_create_refuses, s_flush),
        cmocka_unit_test_setup (test_verify, s_flush),
        cmocka_unit_test_setup (test_list_and_revoke, s_flush),
        cmocka_unit_test_setup (test_stale_name_is_reclaimed, s_flush),
        cmocka_unit_test_setup (test_redis_down_is_not_unknown, s_flush),
        cmocka_unit_test_setup (test_cache_ttl, s_flush),
        cmocka_unit_test_setup (test_cache_survives_many_secrets, s_flush),
        cmocka_unit_test (test_token_bucket),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
