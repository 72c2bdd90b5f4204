/*  lease.h — a lease in Redis that lets exactly one of several processes act
    (the active dispatcher; a standby waits until the lease lapses).

    The lease is one string key whose value is the holder's id:
        acquire   SET key id NX PX ttl         (or, when the value is already
                                                our id, PEXPIRE: a restarted
                                                process with the same id)
        renew     if GET key == id then PEXPIRE key ttl      (one script)
        release   if GET key == id then DEL key              (one script)
    Every write compares the holder id inside Redis, so a process can never
    extend or drop a lease that another holds. Holder ids must be unique
    among the processes that compete (the dispatcher's default is
    hostname-pid).

    The holder also keeps a local deadline: the monotonic time at which it
    *sent* the last successful acquire or renew, plus the ttl. Redis expires
    the key no earlier than that, so while lease_remaining_ms() > 0 no other
    process can hold the lease (clock rates assumed equal; the caller keeps a
    margin). A process that was paused past its deadline sees 0 and must
    stop acting before it renews. */

#ifndef CIVICBUS_LEASE_H
#define CIVICBUS_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "civicbus/redis.h"

typedef struct _lease_t lease_t;

//  A lease named `key` for holder `holder_id`, `ttl_ms` long (at least 3 ms).
//  Uses `redis` (not owned) from the calling thread. NULL when out of
//  memory or when key or holder is empty.
lease_t *lease_new (cb_redis_t *redis, const char *key, const char *holder_id, int ttl_ms);
//  Destroys the object (it does not release the lease: call lease_release
//  first for a clean stop). Safe twice; sets *self_p to NULL.
void lease_destroy (lease_t **self_p);

//  Tries to take the lease. 1 when we hold it now, 0 when another holder
//  has it, -1 when Redis could not answer (we hold nothing then).
int lease_acquire (lease_t *self);
//  Extends our lease by ttl from now. 1 when extended, 0 when the lease is
//  no longer ours (it lapsed, another holder took it), -1 when Redis could
//  not answer. On 0 and -1 the local view is "not held": stop acting.
int lease_renew (lease_t *self);
//  Gives the lease up if we hold it. 1 released, 0 it was not ours, -1
//  Redis could not answer. The local view is "not held" afterwards.
int lease_release (lease_t *self);

//  Milliseconds left of our lease by the local deadline (0 when not held).
int64_t lease_remaining_ms (const lease_t *self);
//  True when lease_remaining_ms() > 0.
bool lease_held (const lease_t *self);
//  Reads the current holder's id into buf. 1 when there is a holder, 0 when
//  none, -1 when Redis could not answer.
int lease_holder (lease_t *self, char *buf, size_t cap);
//  The id this object acquires with, and the ttl.
const char *lease_holder_id (const lease_t *self);
int lease_ttl_ms (const lease_t *self);

#endif
