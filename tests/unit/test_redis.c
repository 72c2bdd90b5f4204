/*  test_redis.c — the Redis wrapper: URL parsing, errors as values,
    pipelining, scripts and NOSCRIPT after a restart. */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/redis.h"
#include "test_redis.h"

static void
test_url_parsing (void **state)
{
    (void) state;
    char err [128];
    cb_redis_t *redis = cb_redis_new ("redis://:s3cret@10.1.2.3:6390/2", 100, err, sizeof err);
    assert_non_null (redis);
    assert_string_equal (cb_redis_where (redis), "10.1.2.3:6390");
    cb_redis_destroy (&redis);
    cb_redis_destroy (&redis);
    assert_null (redis);
    redis = cb_redis_new ("redis://localhost", 100, err, sizeof err);
    assert_non_null (redis);
    assert_string_equal (cb_redis_where (redis), "localhost:6379");
    cb_redis_destroy (&redis);
    redis = cb_redis_new ("unix:///run/redis/redis.sock", 100, err, sizeof err);
    assert_non_null (redis);
    assert_string_equal (cb_redis_where (redis), "/run/redis/redis.sock");
    cb_redis_destroy (&redis);
    redis = cb_redis_new ("unix://:s3cret@/tmp/a@b.sock?db=3", 100, err, sizeof err);
    assert_non_null (redis);
    assert_string_equal (cb_redis_where (redis), "/tmp/a@b.sock");
    cb_redis_destroy (&redis);
    const char *bad [] = { "http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h:1/99",
                           "redis://h:12x", "unix://", "unix://relative.sock",
                           "unix:///x.sock?db=16", "unix:///x.sock?db=", "unix:///x.sock?timeout=1",
                           NULL };
    for (int i = 0; bad [i]; i++) {
        err [0] = 0;
        assert_null (cb_redis_new (bad [i], 100, err, sizeof err));
        assert_true (strlen (err) > 0);
    }
}

static void
test_unreachable_is_a_value (void **state)
{
    (void) state;
    char err [128];
    int port = test_free_port ();
    char url [64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d", port);
    cb_redis_t *redis = cb_redis_new (url, 200, err, sizeof err);
    assert_non_null (redis);
    assert_int_equal (cb_redis_connect (redis), -1);
    assert_false (cb_redis_connected (redis));
    assert_null (cb_redis_command (redis, "PING"));
    assert_non_null (strstr (cb_redis_error (redis), "refused"));
    assert_int_equal (cb_redis_connect_retry (redis, 120), -1);
    cb_redis_destroy (&redis);
}

//  The transports test_commands_pipeline_scripts runs over (its state).
static const bool s_over_tcp = false, s_over_unix_socket = true;

//  Commands, errors, a pipeline and a script over TCP or over the server's
//  Unix socket (*state), and the script reloaded after a restart.
static void
test_commands_pipeline_scripts (void **state)
{
    bool unix_socket = *(const bool *) *state;
    test_redis_t server;
    assert_int_equal (test_redis_start (&server), 0);
    char err [128];
    cb_redis_t *redis = cb_redis_new (unix_socket ? server.unix_url : server.url, 2000, err,
                                      sizeof err);
    assert_non_null (redis);
    assert_int_equal (cb_redis_connect_retry (redis, 5000), 0);

    redisReply *reply = cb_redis_command (redis, "SET %s %s", "k", "v");
    assert_non_null (reply);
    freeReplyObject (reply);
    //  An error reply is a reply, not NULL.
    reply = cb_redis_command (redis, "INCR k");
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_ERROR);
    assert_true (cb_reply_is_error (reply, "ERR"));
    freeReplyObject (reply);

    for (int i = 0; i < 100; i++)
        assert_int_equal (cb_redis_append (redis, "RPUSH list %d", i), 0);
    for (int i = 0; i < 100; i++) {
        reply = cb_redis_get_reply (redis);
        assert_non_null (reply);
        assert_int_equal (reply->integer, i + 1);
        freeReplyObject (reply);
    }

    cb_script_t script = CB_SCRIPT ("return redis.call('LLEN', KEYS[1]) + tonumber(ARGV[1])");
    const char *argv [] = { "list", "5" };
    reply = cb_redis_eval (redis, &script, 1, 2, argv, NULL);
    assert_non_null (reply);
    assert_int_equal (reply->integer, 105);
    freeReplyObject (reply);
    assert_int_equal (strlen (script.sha), 40);

    //  After a restart the script cache is empty: eval reloads it.
    assert_int_equal (test_redis_restart (&server), 0);
    reply = cb_redis_eval (redis, &script, 1, 2, argv, NULL);
    if (!reply)   //  the first call after a restart finds the old socket dead
        reply = cb_redis_eval (redis, &script, 1, 2, argv, NULL);
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_INTEGER);
    freeReplyObject (reply);

    cb_redis_destroy (&redis);
    test_redis_stop (&server);
}

//  Over a Unix socket, the database from the URL, and a missing socket.
static void
test_unix_socket (void **state)
{
    (void) state;
    //  ?db= selects the database, as /N does over TCP.
    test_redis_t server;
    assert_int_equal (test_redis_start (&server), 0);
    char err [128], url [320];
    snprintf (url, sizeof url, "unix://%s/redis.sock?db=3", server.dir);
    cb_redis_t *by_socket = cb_redis_new (url, 2000, err, sizeof err);
    snprintf (url, sizeof url, "redis://127.0.0.1:%d/3", server.port);
    cb_redis_t *by_tcp = cb_redis_new (url, 2000, err, sizeof err);
    redisReply *reply = cb_redis_command (by_socket, "SET where socket");
    assert_non_null (reply);
    freeReplyObject (reply);
    reply = cb_redis_command (by_tcp, "GET where");
    assert_non_null (reply);
    assert_string_equal (reply->str, "socket");
    freeReplyObject (reply);
    cb_redis_destroy (&by_socket);
    cb_redis_destroy (&by_tcp);

    //  No socket there: an error value naming the path, not a crash.
    snprintf (url, sizeof url, "unix://%s/nothing.sock", server.dir);
    cb_redis_t *none = cb_redis_new (url, 200, err, sizeof err);
    assert_non_null (none);
    assert_int_equal (cb_redis_connect (none), -1);
    assert_null (cb_redis_command (none, "PING"));
    assert_non_null (strstr (cb_redis_error (none), "nothing.sock"));
    cb_redis_destroy (&none);
    test_redis_stop (&server);
}

//  SCRIPT LOADs Redis has run so far (INFO commandstats).
static long long
s_script_loads (cb_redis_t *redis)
{
    redisReply *reply = cb_redis_command (redis, "INFO commandstats");
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_STRING);
    const char *at = strstr (reply->str, "cmdstat_script|load:calls=");
    long long calls = at ? atoll (at + strlen ("cmdstat_script|load:calls=")) : 0;
    freeReplyObject (reply);
    return calls;
}

static const char s_sum_lua [] = "return tonumber(ARGV[1]) + tonumber(ARGV[2])";

//  A script made afresh for every call (CB_SCRIPT on the stack) is loaded
//  once per connection; after SCRIPT FLUSH the pipelined call answers
//  NOSCRIPT once and the connection loads it again.
static void
test_fresh_scripts_load_once (void **state)
{
    (void) state;
    test_redis_t server;
    assert_int_equal (test_redis_start (&server), 0);
    char err [128];
    cb_redis_t *redis = cb_redis_new (server.url, 2000, err, sizeof err);
    assert_non_null (redis);
    long long loads = s_script_loads (redis);
    const char *argv [] = { "2", "3" };
    for (int i = 0; i < 5; i++) {
        cb_script_t script = CB_SCRIPT (s_sum_lua);
        redisReply *reply = cb_redis_eval (redis, &script, 0, 2, argv, NULL);
        assert_non_null (reply);
        assert_int_equal (reply->integer, 5);
        freeReplyObject (reply);
        cb_script_t piped = CB_SCRIPT (s_sum_lua);
        assert_int_equal (cb_redis_append_eval (redis, &piped, 0, 2, argv, NULL), 0);
        reply = cb_redis_get_reply (redis);
        assert_non_null (reply);
        assert_int_equal (reply->integer, 5);
        freeReplyObject (reply);
    }
    assert_int_equal (s_script_loads (redis), loads + 1);

    redisReply *reply = cb_redis_command (redis, "SCRIPT FLUSH");
    freeReplyObject (reply);
    cb_script_t script = CB_SCRIPT (s_sum_lua);
    assert_int_equal (cb_redis_append_eval (redis, &script, 0, 2, argv, NULL), 0);
    reply = cb_redis_get_reply (redis);
    assert_true (cb_reply_is_error (reply, "NOSCRIPT"));
    freeReplyObject (reply);
    for (int i = 0; i < 2; i++) {
        cb_script_t again = CB_SCRIPT (s_sum_lua);
        assert_int_equal (cb_redis_append_eval (redis, &again, 0, 2, argv, NULL), 0);
        reply = cb_redis_get_reply (redis);
        assert_non_null (reply);
        assert_int_equal (reply->type, REDIS_REPLY_INTEGER);
        assert_int_equal (reply->integer, 5);
        freeReplyObject (reply);
    }
    assert_int_equal (s_script_loads (redis), loads + 2);

    //  A new connection (here: after a restart) loads it again.
    assert_int_equal (test_redis_restart (&server), 0);
    cb_script_t after = CB_SCRIPT (s_sum_lua);
    reply = cb_redis_eval (redis, &after, 0, 2, argv, NULL);
    if (!reply)   //  the first call after a restart finds the old socket dead
        reply = cb_redis_eval (redis, &after, 0, 2, argv, NULL);
    assert_non_null (reply);
    assert_int_equal (reply->integer, 5);
    freeReplyObject (reply);
    assert_int_equal (s_script_loads (redis), 1);   //  a new server's count

    cb_redis_destroy (&redis);
    test_redis_stop (&server);
}

int
main (void)
{
    //  Writing to a socket whose server went away raises SIGPIPE; the
    //  services ignore it (cb_service_install_signals), so do these tests.
    signal (SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_url_parsing),
        cmocka_unit_test (test_unreachable_is_a_value),
        { "test_commands_pipeline_scripts over TCP", test_commands_pipeline_scripts,
          NULL, NULL, (void *) &s_over_tcp },
        { "test_commands_pipeline_scripts over a Unix socket", test_commands_pipeline_scripts,
          NULL, NULL, (void *) &s_over_unix_socket },
        cmocka_unit_test (test_unix_socket),
        cmocka_unit_test (test_fresh_scripts_load_once),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
