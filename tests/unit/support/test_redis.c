/*  test_redis.c — start and stop a real redis-server for unit tests. */

#include "test_redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

static void
s_sleep_ms (int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    nanosleep (&ts, NULL);
}

int
test_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0 };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = -1;
    if (bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0
    &&  getsockname (fd, (struct sockaddr *) &addr, &len) == 0)
        port = ntohs (addr.sin_port);
    close (fd);
    return port;
}

static int
s_spawn (test_redis_t *self)
{
    const char *server = getenv ("REDIS_SERVER");
    if (!server || !*server)
        server = "redis-server";
    char port [16];
    snprintf (port, sizeof port, "%d", self->port);
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        //  Quiet child: redis logs go to its directory.
        char log [300];
        snprintf (log, sizeof log, "%s/redis.log", self->dir);
        if (!freopen (log, "a", stdout) || !freopen (log, "a", stderr))
            _exit (126);
        char sock [300];
        snprintf (sock, sizeof sock, "%s/redis.sock", self->dir);
        execlp (server, server, "--bind", "127.0.0.1", "--port", port, "--dir", self->dir,
                "--unixsocket", sock, "--unixsocketperm", "700",
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--maxmemory-policy", "noeviction", "--daemonize", "no", (char *) NULL);
        _exit (127);
    }
    self->pid = pid;
    //  Wait until it answers PING: at most ~20 s, checking every 20 ms.
    for (int i = 0; i < 1000; i++) {
        struct timeval tv = { 0, 200000 };
        redisContext *ctx = redisConnectWithTimeout ("127.0.0.1", self->port, tv);
        if (ctx && !ctx->err) {
            redisReply *reply = redisCommand (ctx, "PING");
            int ok = reply && reply->type == REDIS_REPLY_STATUS;
            if (reply)
                freeReplyObject (reply);
            redisFree (ctx);
            if (ok)
                return 0;
        }
        else
        if (ctx)
            redisFree (ctx);
        int status;
        if (waitpid (pid, &status, WNOHANG) == pid) {
            fprintf (stderr, "test_redis: %s exited at start (see %s/redis.log)\n", server, self->dir);
            self->pid = 0;
            return -1;
        }
        s_sleep_ms (20);
    }
    fprintf (stderr, "test_redis: redis did not answer on port %d\n", self->port);
    return -1;
}

int
test_redis_start (test_redis_t *self)
{
    memset (self, 0, sizeof *self);
    snprintf (self->dir, sizeof self->dir, "/tmp/civicbus-unit-redis-XXXXXX");
    if (!mkdtemp (self->dir)) {
        fprintf (stderr, "test_redis: mkdtemp: %s\n", strerror (errno));
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        self->port = test_free_port ();
        snprintf (self->url, sizeof self->url, "redis://127.0.0.1:%d/0", self->port);
        snprintf (self->unix_url, sizeof self->unix_url, "unix://%s/redis.sock?db=0", self->dir);
        if (self->port > 0 && s_spawn (self) == 0)
            return 0;
    }
    return -1;
}

void
test_redis_kill (test_redis_t *self, int hard)
{
    if (self->pid > 0) {
        kill (self->pid, hard ? SIGKILL : SIGTERM);
        waitpid (self->pid, NULL, 0);
        self->pid = 0;
    }
}

int
test_redis_restart (test_redis_t *self)
{
    test_redis_kill (self, 0);
    return s_spawn (self);
}

void
test_redis_stop (test_redis_t *self)
{
    test_redis_kill (self, 1);
    if (self->dir [0]) {
        char cmd [320];
        snprintf (cmd, sizeof cmd, "rm -rf '%s'", self->dir);
        if (system (cmd) != 0)
            fprintf (stderr, "test_redis: could not remove %s\n", self->dir);
        self->dir [0] = 0;
    }
}
