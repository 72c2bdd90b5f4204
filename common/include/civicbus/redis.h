/*  redis.h — one Redis connection with timeouts, reconnect and scripts.

    Errors are values: a call that cannot reach Redis returns NULL (or -1)
    and cb_redis_error() says why; the next call reconnects. Nothing here
    retries a command by itself: a write whose answer was lost may or may not
    have happened, and only the caller knows whether repeating it is safe
    (in civicbus it is: every write is idempotent, DESIGN.md §3).

    Scripts are run with EVALSHA; on NOSCRIPT (after a Redis restart or a
    failover the script cache is empty) the script is loaded and run again,
    which is safe because NOSCRIPT means it did not run. A connection
    remembers the SHA-1 of each script it loaded (up to 32, by the address
    of its text), so a cb_script_t made afresh for each call costs one
    SCRIPT LOAD per connection, not one per call; it forgets them when it
    reconnects or reads a NOSCRIPT reply.

    One cb_redis_t belongs to one thread. */

#ifndef CIVICBUS_REDIS_H
#define CIVICBUS_REDIS_H

#include <stddef.h>
#include <stdbool.h>
#include <hiredis/hiredis.h>

typedef struct _cb_redis_t cb_redis_t;

typedef struct {
    const char *source;      //  the Lua text (static storage)
    char sha [41];           //  filled on first use
} cb_script_t;

#define CB_SCRIPT(text) { (text), "" }

//  Parses redis://[:password@]host[:port][/db] (also user:password@), or
//  unix://[:password@]/path/to/redis.sock[?db=N] for a Redis on the same
//  host (its Unix socket: no TCP port at all, and file permissions decide who may connect; a write to a Redis that went
//  away raises SIGPIPE there, which services ignore, see service.h). Does
//  not connect.
//  Returns NULL for a URL it cannot read; *err says why.
cb_redis_t *cb_redis_new (const char *url, int timeout_ms, char *err, size_t errcap);
void cb_redis_destroy (cb_redis_t **self_p);

//  Connects now (AUTH and SELECT as the URL says). 0 or -1.
int cb_redis_connect (cb_redis_t *self);
//  Tries to connect until it succeeds or `total_ms` milliseconds
//  passes (total_ms from now), backing off from 50 ms to 1 s. 0 or -1.
int cb_redis_connect_retry (cb_redis_t *self, int total_ms);
bool cb_redis_connected (const cb_redis_t *self);
const char *cb_redis_error (const cb_redis_t *self);
//  "host:port", or the socket's path, for logs (never the password).
const char *cb_redis_where (const cb_redis_t *self);

//  Runs one command (printf-style as hiredis's redisCommand). Returns the
//  reply (caller frees with freeReplyObject) or NULL when the connection
//  failed. A Redis error reply is returned as a reply of type
//  REDIS_REPLY_ERROR, not NULL: the caller decides what it means.
redisReply *cb_redis_command (cb_redis_t *self, const char *fmt, ...);
redisReply *cb_redis_argv (cb_redis_t *self, int argc, const char **argv, const size_t *lens);

//  Pipelining: append commands, then read their replies in order. A failure
//  while reading drops the connection; the remaining replies are lost.
int cb_redis_append_argv (cb_redis_t *self, int argc, const char **argv, const size_t *lens);
int cb_redis_append (cb_redis_t *self, const char *fmt, ...);
redisReply *cb_redis_get_reply (cb_redis_t *self);

//  EVALSHA script with numkeys keys followed by args (argv holds keys then
//  args; lens may be NULL for C strings). Loads the script on NOSCRIPT.
redisReply *cb_redis_eval (cb_redis_t *self, cb_script_t *script, int numkeys,
                           int argc, const char **argv, const size_t *lens);
//  Appends an EVALSHA to the pipeline. A script this connection does not
//  know yet is loaded first (SCRIPT LOAD, a round trip of its own: append
//  nothing before it that you have not read, or load it beforehand with
//  cb_redis_script_load). NOSCRIPT can then happen inside a pipeline only
//  right after a Redis restart: the reply is a NOSCRIPT error and the
//  caller runs it again with cb_redis_eval.
int cb_redis_append_eval (cb_redis_t *self, cb_script_t *script, int numkeys,
                          int argc, const char **argv, const size_t *lens);
int cb_redis_script_load (cb_redis_t *self, cb_script_t *script);
//  True for an error reply that starts with `prefix` ("NOSCRIPT", "BUSY").
bool cb_reply_is_error (const redisReply *reply, const char *prefix);

#endif
