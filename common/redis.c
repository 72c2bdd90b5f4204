/*  redis.c — a hiredis connection with timeouts, reconnect, Lua scripts.
    (see redis.h). */

#include "civicbus/redis.h"
#include "civicbus/clock.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

#define S_KNOWN_MAX 32                  //  scripts a connection remembers (civicbus has 21)

struct _cb_redis_t {
    redisContext *ctx;
    char host [256];
    char socket [108];              //  a Unix socket's path (unix://), else ""
    int port;
    int db;
    char user [128];
    char password [256];
    int timeout_ms;
    char where [280];
    char error [1024];
    //  The SHA-1s this connection has loaded, by script text (static
    //  storage, so its address names it): a script handed over afresh
    //  (CB_SCRIPT on the stack) needs no SCRIPT LOAD round trip after the
    //  first. Forgotten on reconnect and on any NOSCRIPT reply (Redis
    //  restarted or flushed its scripts).
    struct {
        const char *source;
        char sha [41];
    } known [S_KNOWN_MAX];
    int n_known;
};

/* ---- private ---- */

//  Fills script->sha from what this connection loaded before: true, or
//  false when it does not know the script.
static bool
s_known_sha (cb_redis_t *self, cb_script_t *script)
{
    for (int i = 0; i < self->n_known; i++)
        if (self->known [i].source == script->source) {
            memcpy (script->sha, self->known [i].sha, sizeof script->sha);
            return true;
        }
    return false;
}

static void
s_remember_sha (cb_redis_t *self, const cb_script_t *script)
{
    int i = 0;
    while (i < self->n_known && self->known [i].source != script->source)
        i++;
    if (i == S_KNOWN_MAX)
        i = S_KNOWN_MAX - 1;        //  full: the newest replaces the last
    else
    if (i == self->n_known)
        self->n_known++;
    self->known [i].source = script->source;
    memcpy (self->known [i].sha, script->sha, sizeof script->sha);
}

//  The script's SHA-1, known or loaded now: 0 or -1.
static int
s_script_sha (cb_redis_t *self, cb_script_t *script)
{
    if (script->sha [0] || s_known_sha (self, script))
        return 0;
    return cb_redis_script_load (self, script);
}

static void
s_drop (cb_redis_t *self, const char *why)
{
    if (why)
        snprintf (self->error, sizeof self->error, "redis %s: %s", self->where, why);
    if (self->ctx) {
        redisFree (self->ctx);
        self->ctx = NULL;
    }
    self->n_known = 0;              //  the next server may not have them
}

static int
s_ensure (cb_redis_t *self)
{
    if (self->ctx)
        return 0;
    return cb_redis_connect (self);
}

static bool
s_reply_ok (cb_redis_t *self, redisReply *reply, const char *what)
{
    if (!reply) {
        s_drop (self, self->ctx && self->ctx->errstr [0] ? self->ctx->errstr : "connection lost");
        return false;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf (self->error, sizeof self->error, "redis %s: %s failed: %s", self->where,
                  what, reply->str);
        freeReplyObject (reply);
        return false;
    }
    freeReplyObject (reply);
    return true;
}

/* ---- public ---- */

//  unix://[[user]:password@]/path[?db=N]: the rest of a URL after its
//  credentials. 0, or -1 with *err set.
static int
s_parse_unix (cb_redis_t *self, const char *p, char *err, size_t errcap)
{
    size_t pathlen = strcspn (p, "?");
    if (*p != '/' || pathlen >= sizeof self->socket) {
        snprintf (err, errcap, "a unix:// Redis URL needs an absolute socket path (at most %zu bytes)",
                  sizeof self->socket - 1);
        return -1;
    }
    memcpy (self->socket, p, pathlen);
    p += pathlen;
    if (*p == '?') {
        char *end;
        long db = strncmp (p, "?db=", 4) == 0 ? strtol (p + 4, &end, 10) : -1;
        if (db < 0 || db > 15 || end == p + 4 || *end) {
            snprintf (err, errcap, "a unix:// Redis URL takes only ?db=N (0-15)");
            return -1;
        }
        self->db = (int) db;
    }
    snprintf (self->where, sizeof self->where, "%s", self->socket);
    return 0;
}

cb_redis_t *
cb_redis_new (const char *url, int timeout_ms, char *err, size_t errcap)
{
    cb_redis_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->port = 6379;
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
    const char *p = url;
    bool unix_socket = p && strncmp (p, "unix://", 7) == 0;
    if (!p || (!unix_socket && strncmp (p, "redis://", 8) != 0)) {
        snprintf (err, errcap, "'%s' is not a redis:// or unix:// URL", url ? url : "(null)");
        free (self);
        return NULL;
    }
    p += unix_socket ? 7 : 8;
    const char *at = strchr (p, '@');
    if (unix_socket && p [0] == '/')
        at = NULL;                  //  no credentials: an '@' is the socket path's
    if (at) {
        const char *colon = memchr (p, ':', (size_t) (at - p));
        if (colon) {
            snprintf (self->user, sizeof self->user, "%.*s", (int) (colon - p), p);
            snprintf (self->password, sizeof self->password, "%.*s", (int) (at - colon - 1), colon + 1);
        }
        else
            snprintf (self->password, sizeof self->password, "%.*s", (int) (at - p), p);
        p = at + 1;
    }
    if (unix_socket) {
        if (s_parse_unix (self, p, err, errcap)) {
            sodium_memzero (self->password, sizeof self->password);
            free (self);
            return NULL;
        }
        return self;
    }
    size_t hostlen = strcspn (p, ":/");
    if (hostlen == 0 || hostlen >= sizeof self->host) {
        snprintf (err, errcap, "redis URL has no host");
        free (self);
        return NULL;
    }
    memcpy (self->host, p, hostlen);
    p += hostlen;
    if (*p == ':') {
        char *end;
        long port = strtol (p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
            snprintf (err, errcap, "redis URL has a bad port");
            free (self);
            return NULL;
        }
        self->port = (int) port;
        p = end;
    }
    if (*p == '/' && p [1]) {
        char *end;
        long db = strtol (p + 1, &end, 10);
        if (*end || db < 0 || db > 15) {
            snprintf (err, errcap, "redis URL has a bad database number");
            free (self);
            return NULL;
        }
        self->db = (int) db;
    }
    snprintf (self->where, sizeof self->where, "%s:%d", self->host, self->port);
    return self;
}

void
cb_redis_destroy (cb_redis_t **self_p)
{
    assert (self_p);
    cb_redis_t *self = *self_p;
    if (self) {
        s_drop (self, NULL);
        sodium_memzero (self->password, sizeof self->password);
        free (self);
        *self_p = NULL;
    }
}

int
cb_redis_connect (cb_redis_t *self)
{
    s_drop (self, NULL);
    struct timeval tv = { self->timeout_ms / 1000, (self->timeout_ms % 1000) * 1000 };
    redisContext *ctx = self->socket [0] ? redisConnectUnixWithTimeout (self->socket, tv)
                                         : redisConnectWithTimeout (self->host, self->port, tv);
    if (!ctx) {
        snprintf (self->error, sizeof self->error, "redis %s: out of memory", self->where);
        return -1;
    }
    if (ctx->err) {
        snprintf (self->error, sizeof self->error, "redis %s: %s", self->where, ctx->errstr);
        redisFree (ctx);
        return -1;
    }
    redisSetTimeout (ctx, tv);
    if (!self->socket [0])
        redisEnableKeepAlive (ctx);
    self->ctx = ctx;
    if (self->password [0]) {
        redisReply *reply = self->user [0]
            ? redisCommand (ctx, "AUTH %s %s", self->user, self->password)
            : redisCommand (ctx, "AUTH %s", self->password);
        if (!s_reply_ok (self, reply, "AUTH")) {
            s_drop (self, NULL);
            return -1;
        }
    }
    if (self->db) {
        redisReply *reply = redisCommand (ctx, "SELECT %d", self->db);
        if (!s_reply_ok (self, reply, "SELECT")) {
            s_drop (self, NULL);
            return -1;
        }
    }
    self->error [0] = 0;
    return 0;
}

int
cb_redis_connect_retry (cb_redis_t *self, int total_ms)
{
    int64_t deadline = cb_clock_mono_ms () + total_ms;
    int backoff = 50;
    while (true) {
        if (cb_redis_connect (self) == 0)
            return 0;
        int64_t left = deadline - cb_clock_mono_ms ();
        if (left <= 0)
            return -1;
        int wait = backoff < left ? backoff : (int) left;
        struct timespec ts = { wait / 1000, (long) (wait % 1000) * 1000000L };
        nanosleep (&ts, NULL);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
}

bool
cb_redis_connected (const cb_redis_t *self)
{
    return self->ctx != NULL;
}

const char *
cb_redis_error (const cb_redis_t *self)
{
    return self->error [0] ? self->error : "no error";
}

const char *
cb_redis_where (const cb_redis_t *self)
{
    return self->where;
}

redisReply *
cb_redis_command (cb_redis_t *self, const char *fmt, ...)
{
    if (s_ensure (self))
        return NULL;
    va_list ap;
    va_start (ap, fmt);
    redisReply *reply = redisvCommand (self->ctx, fmt, ap);
    va_end (ap);
    if (!reply)
        s_drop (self, self->ctx->errstr [0] ? self->ctx->errstr : "connection lost");
    return reply;
}

redisReply *
cb_redis_argv (cb_redis_t *self, int argc, const char **argv, const size_t *lens)
{
    if (s_ensure (self))
        return NULL;
    redisReply *reply = redisCommandArgv (self->ctx, argc, argv, lens);
    if (!reply)
        s_drop (self, self->ctx->errstr [0] ? self->ctx->errstr : "connection lost");
    return reply;
}

int
cb_redis_append_argv (cb_redis_t *self, int argc, const char **argv, const size_t *lens)
{
    if (s_ensure (self))
        return -1;
    if (redisAppendCommandArgv (self->ctx, argc, argv, lens) != REDIS_OK) {
        s_drop (self, "out of memory while pipelining");
        return -1;
    }
    return 0;
}

int
cb_redis_append (cb_redis_t *self, const char *fmt, ...)
{
    if (s_ensure (self))
        return -1;
    va_list ap;
    va_start (ap, fmt);
    int rc = redisvAppendCommand (self->ctx, fmt, ap);
    va_end (ap);
    if (rc != REDIS_OK) {
        s_drop (self, "out of memory while pipelining");
        return -1;
    }
    return 0;
}

redisReply *
cb_redis_get_reply (cb_redis_t *self)
{
    if (!self->ctx)
        return NULL;
    void *reply = NULL;
    if (redisGetReply (self->ctx, &reply) != REDIS_OK || !reply) {
        s_drop (self, self->ctx->errstr [0] ? self->ctx->errstr : "connection lost");
        return NULL;
    }
    if (cb_reply_is_error (reply, "NOSCRIPT"))
        self->n_known = 0;          //  Redis lost its scripts: load them again
    return reply;
}

int
cb_redis_script_load (cb_redis_t *self, cb_script_t *script)
{
    redisReply *reply = cb_redis_command (self, "SCRIPT LOAD %s", script->source);
    if (!reply)
        return -1;
    int rc = -1;
    if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy (script->sha, reply->str, 40);
        script->sha [40] = 0;
        s_remember_sha (self, script);
        rc = 0;
    }
    else
        snprintf (self->error, sizeof self->error, "redis %s: SCRIPT LOAD failed: %s",
                  self->where, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    freeReplyObject (reply);
    return rc;
}

static redisReply *
s_evalsha (cb_redis_t *self, cb_script_t *script, int numkeys, int argc,
           const char **argv, const size_t *lens, bool append)
{
    const char *stack_argv [32];
    size_t stack_lens [32];
    const char **av = stack_argv;
    size_t *al = stack_lens;
    if (argc + 3 > 32) {
        av = malloc ((size_t) (argc + 3) * sizeof *av);
        al = malloc ((size_t) (argc + 3) * sizeof *al);
        if (!av || !al) {
            free (av == stack_argv ? NULL : av);
            free (al == stack_lens ? NULL : al);
            snprintf (self->error, sizeof self->error, "out of memory");
            return NULL;
        }
    }
    char nk [16];
    snprintf (nk, sizeof nk, "%d", numkeys);
    av [0] = "EVALSHA"; al [0] = 7;
    av [1] = script->sha; al [1] = 40;
    av [2] = nk; al [2] = strlen (nk);
    for (int i = 0; i < argc; i++) {
        av [i + 3] = argv [i];
        al [i + 3] = lens ? lens [i] : strlen (argv [i]);
    }
    redisReply *reply = NULL;
    if (append)
        reply = cb_redis_append_argv (self, argc + 3, av, al) == 0 ? (redisReply *) 1 : NULL;
    else
        reply = cb_redis_argv (self, argc + 3, av, al);
    if (av != stack_argv) {
        free (av);
        free (al);
    }
    return reply;
}

redisReply *
cb_redis_eval (cb_redis_t *self, cb_script_t *script, int numkeys,
               int argc, const char **argv, const size_t *lens)
{
    //  Redis names a script by its SHA-1; we learn it from SCRIPT LOAD.
    if (s_script_sha (self, script))
        return NULL;
    redisReply *reply = s_evalsha (self, script, numkeys, argc, argv, lens, false);
    if (reply && cb_reply_is_error (reply, "NOSCRIPT")) {
        freeReplyObject (reply);
        if (cb_redis_script_load (self, script))
            return NULL;
        reply = s_evalsha (self, script, numkeys, argc, argv, lens, false);
    }
    return reply;
}

int
cb_redis_append_eval (cb_redis_t *self, cb_script_t *script, int numkeys,
                      int argc, const char **argv, const size_t *lens)
{
    if (s_script_sha (self, script))
        return -1;
    return s_evalsha (self, script, numkeys, argc, argv, lens, true) ? 0 : -1;
}

bool
cb_reply_is_error (const redisReply *reply, const char *prefix)
{
    return reply && reply->type == REDIS_REPLY_ERROR && reply->str
        && strncmp (reply->str, prefix, strlen (prefix)) == 0;
}
