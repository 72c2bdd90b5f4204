/*  lease.c — a holder-checked lease in Redis (see lease.h for the protocol
    and the local deadline that makes "never two holders" hold for the
    holder's own actions). */

#include "civicbus/lease.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  KEYS[1] lease, ARGV[1] holder, ARGV[2] ttl ms.
//  Take the lease when free; keep it when it is already ours.
static const char s_acquire_lua [] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end\n"
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1\n"
    "end\n"
    "return 0\n";

static const char s_renew_lua [] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1\n"
    "end\n"
    "return 0\n";

static const char s_release_lua [] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1]) return 1\n"
    "end\n"
    "return 0\n";

struct _lease_t {
    cb_redis_t *redis;
    char *key;
    char *holder;
    int ttl_ms;
    int64_t valid_until;        //  monotonic ms; 0 when not held
    cb_script_t acquire_script;
    cb_script_t renew_script;
    cb_script_t release_script;
};

/* ---- private ---- */

//  Runs one of the scripts; 1 or 0 from the script, -1 when Redis failed.
static int
s_run (lease_t *self, cb_script_t *script, const char *what)
{
    char ttl [16];
    snprintf (ttl, sizeof ttl, "%d", self->ttl_ms);
    const char *argv [] = { self->key, self->holder, ttl };
    redisReply *reply = cb_redis_eval (self->redis, script, 1, 3, argv, NULL);
    if (!reply)
        return -1;
    int rc = -1;
    if (reply->type == REDIS_REPLY_INTEGER)
        rc = reply->integer == 1 ? 1 : 0;
    else
        cb_log (CB_LOG_WARN, "lease script failed", "lease", self->key, "during", what,
                "error", reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply",
                NULL);
    freeReplyObject (reply);
    return rc;
}

//  acquire and renew: the deadline counts from before the request was sent,
//  because Redis starts the ttl no earlier than that.
static int
s_take (lease_t *self, cb_script_t *script, const char *what)
{
    int64_t sent = cb_clock_mono_ms ();
    int rc = s_run (self, script, what);
    self->valid_until = rc == 1 ? sent + self->ttl_ms : 0;
    return rc;
}

/* ---- public ---- */

lease_t *
lease_new (cb_redis_t *redis, const char *key, const char *holder_id, int ttl_ms)
{
    assert (redis);
    if (!key || !*key || !holder_id || !*holder_id || ttl_ms < 3)
        return NULL;
    lease_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->redis = redis;
    self->key = strdup (key);
    self->holder = strdup (holder_id);
    self->ttl_ms = ttl_ms;
    self->acquire_script = (cb_script_t) CB_SCRIPT (s_acquire_lua);
    self->renew_script = (cb_script_t) CB_SCRIPT (s_renew_lua);
    self->release_script = (cb_script_t) CB_SCRIPT (s_release_lua);
    if (!self->key || !self->holder)
        lease_destroy (&self);
    return self;
}

void
lease_destroy (lease_t **self_p)
{
    assert (self_p);
    lease_t *self = *self_p;
    if (self) {
        free (self->key);
        free (self->holder);
        free (self);
        *self_p = NULL;
    }
}

int
lease_acquire (lease_t *self)
{
    assert (self);
    return s_take (self, &self->acquire_script, "acquire");
}

int
lease_renew (lease_t *self)
{
    assert (self);
    return s_take (self, &self->renew_script, "renew");
}

int
lease_release (lease_t *self)
{
    assert (self);
    self->valid_until = 0;
    return s_run (self, &self->release_script, "release");
}

int64_t
lease_remaining_ms (const lease_t *self)
{
    assert (self);
    if (!self->valid_until)
        return 0;
    int64_t left = self->valid_until - cb_clock_mono_ms ();
    return left > 0 ? left : 0;
}

bool
lease_held (const lease_t *self)
{
    return lease_remaining_ms (self) > 0;
}

int
lease_holder (lease_t *self, char *buf, size_t cap)
{
    assert (self && buf && cap);
    buf [0] = 0;
    redisReply *reply = cb_redis_command (self->redis, "GET %s", self->key);
    if (!reply)
        return -1;
    int rc = -1;
    if (reply->type == REDIS_REPLY_NIL)
        rc = 0;
    else
    if (reply->type == REDIS_REPLY_STRING) {
        snprintf (buf, cap, "%s", reply->str);
        rc = 1;
    }
    freeReplyObject (reply);
    return rc;
}

const char *
lease_holder_id (const lease_t *self)
{
    assert (self);
    return self->holder;
}

int
lease_ttl_ms (const lease_t *self)
{
    assert (self);
    return self->ttl_ms;
}
