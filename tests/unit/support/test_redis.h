/*  test_redis.h — a real redis-server for unit tests that need one.

    Starts REDIS_SERVER (environment, else redis-server on PATH) on a free
    127.0.0.1 port with its own temporary directory and AOF on, waits (with a
    deadline) until it answers PING, and kills it and removes the directory
    at stop. Tests that use Redis call test_redis_start() in their group
    setup and test_redis_stop() in teardown. */

#ifndef CIVICBUS_TEST_REDIS_H
#define CIVICBUS_TEST_REDIS_H

#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char dir [256];
    char url [64];       //  "redis://127.0.0.1:PORT/0"
    char unix_url [300]; //  "unix://DIR/redis.sock?db=0": the same server's Unix socket
} test_redis_t;

//  0 on success; -1 (with a message on stderr) when it could not start.
int test_redis_start (test_redis_t *self);
//  Kills the server (SIGKILL when `hard`, else SIGTERM) and waits for it;
//  the data directory stays, so test_redis_restart brings the data back.
void test_redis_kill (test_redis_t *self, int hard);
//  Starts it again on the same port and directory (AOF reload).
int test_redis_restart (test_redis_t *self);
//  Kills it and removes its directory.
void test_redis_stop (test_redis_t *self);
//  A free TCP port on 127.0.0.1 (bind to 0 and read it back).
int test_free_port (void);

#endif
