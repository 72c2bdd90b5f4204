/*  notify_queue.h — the notifier's queues in Redis: the outbox of events
    (written by the ticket store), the deliveries made from them, their
    claims, retries and dead letters. Every change is one Lua script on one
    bucket's slot.

        ntfq:{bNN}        zset  "ID#SEQ" -> ms   events not yet fanned out
                                                (ticket_store.h adds them)
        dlv:{bNN}:DID     hash  channel, recipient, template, subject, body,
                                attempt, ticket, seq, created; while claimed
                                `claim` (the claimer's token); after failures
                                `error`, `last_ms`; when dead `dead_ms`
        dlvq:{bNN}        zset  DID -> due ms    deliveries to send
        dead:{bNN}        zset  DID -> ms        dead letters (record kept)
        hlq:{bNN}:ID      zset  DID -> seq       a hotline ticket's pushes
                                                not yet acknowledged; only
                                                the lowest is in dlvq

    Fan-out (notify_queue_fanout): one script creates the deliveries of one
    event, each only if its record does not exist yet (a repeat changes
    nothing), and removes the outbox member. It refuses (NQ_BLOCKED) while
    an earlier event of the same ticket is still in the outbox, so a
    ticket's events are fanned out in sequence order, which the hotline's
    in-order pushes rely on.

    Claims (notify_queue_claim): due entries get their score pushed to now
    + the visibility timeout and the record gets the claimer's token, so two
    notifiers never hold the same delivery at once; a notifier that dies
    holding one leaves it to be claimed again once the timeout passes:
    at-least-once, with the DID as every request's idempotency key.

    Hotline order: a ticket's hotline deliveries wait in hlq; only the
    lowest sequence is in dlvq. Acknowledging it schedules the next. A dead
    hotline delivery stays at the head (so nothing after it overtakes it)
    until `civicbus dead-letters replay` sends it again. */

#ifndef CIVICBUS_NOTIFY_QUEUE_H
#define CIVICBUS_NOTIFY_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include "civicbus/redis.h"
#include "civicbus/notify_rules.h"

//  Results (negative: Redis could not answer).
enum {
    NQ_OK = 0,
    NQ_DONE_ELSEWHERE = 1,   //  fanout: the event was already fanned out
    NQ_BLOCKED = 2,          //  fanout: an earlier event of the ticket waits first
    NQ_RETRY = 3,            //  fail: scheduled again
    NQ_DEAD = 4,             //  fail: became a dead letter
    NQ_GONE = 5,             //  fail/release: no such record, or claimed by someone else since
    NQ_ERROR = -1,           //  a bad reply (a bug)
    NQ_UNAVAILABLE = -2,     //  Redis unreachable
};

//  A delivery as stored.
typedef struct {
    char did [NOTIFY_DID_MAX];
    int bucket;
    notify_channel_t channel;   //  -1 cast when the stored name is unknown
    char *recipient;
    char *template_name;
    char *subject;
    char *body;
    char *ticket_id;
    char *error;                //  last error ("" when none)
    int seq;
    int attempt;                //  failed attempts so far
    int64_t created_ms;
    int64_t dead_ms;            //  0 unless dead
} notify_record_t;

//  An outbox entry: "ID#SEQ" of bucket.
typedef struct {
    char member [NOTIFY_DID_MAX];
    char ticket_id [64];
    int seq;
    int bucket;
} notify_outbox_entry_t;

typedef struct _notify_queue_t notify_queue_t;

//  Uses `redis` (not owned) from the calling thread only.
notify_queue_t *notify_queue_new (cb_redis_t *redis);
void notify_queue_destroy (notify_queue_t **self_p);

//  Reads up to `per_bucket` oldest outbox entries of every bucket (one
//  pipelined round trip), sorted by ticket and sequence, into a new array
//  (caller frees). Malformed members are skipped. NQ_OK or NQ_UNAVAILABLE.
int notify_queue_outbox (notify_queue_t *self, size_t per_bucket,
                         notify_outbox_entry_t **entries, size_t *count);

//  Creates the plan's deliveries for `entry` and removes it from the
//  outbox, in one script; *created gets the number of new records. NQ_OK,
//  NQ_DONE_ELSEWHERE, NQ_BLOCKED, NQ_UNAVAILABLE, NQ_ERROR.
int notify_queue_fanout (notify_queue_t *self, const notify_outbox_entry_t *entry,
                         const notify_plan_t *plan, int64_t now_ms, int *created);

//  Removes an outbox entry that can never be fanned out (its ticket or
//  event is gone). NQ_OK or NQ_UNAVAILABLE.
int notify_queue_discard (notify_queue_t *self, const notify_outbox_entry_t *entry);

//  Claims up to `max` due deliveries (due score <= now_ms) across the
//  buckets, starting at bucket *cursor (advanced, for fairness), each for
//  `visibility_ms` under `token`. Returns the count (0..max) with a new
//  array in *records (free with notify_records_free), or NQ_UNAVAILABLE.
int notify_queue_claim (notify_queue_t *self, int64_t now_ms, int64_t visibility_ms,
                        const char *token, size_t max, int *cursor,
                        notify_record_t **records, size_t *count);

//  The delivery was accepted by its receiver: delete it (and, for the
//  hotline, schedule the ticket's next push at now_ms). NQ_OK or
//  NQ_UNAVAILABLE (the claim then lapses and it is sent again: at least once).
int notify_queue_ack (notify_queue_t *self, const char *did, int64_t now_ms);

//  The attempt failed with `error`: attempt+1, then either due again at
//  retry_at_ms (NQ_RETRY) or, when attempt reaches max_attempts, a dead
//  letter (NQ_DEAD). NQ_GONE when the record is gone or no longer claimed
//  by `token`; *attempt gets the new count when not NULL.
int notify_queue_fail (notify_queue_t *self, const char *did, const char *token,
                       const char *error, int64_t retry_at_ms, int max_attempts,
                       int64_t now_ms, int *attempt);

//  Gives a claimed delivery back unsent (a stopping notifier): due at
//  now_ms again if `token` still holds it. NQ_OK, NQ_GONE, NQ_UNAVAILABLE.
int notify_queue_release (notify_queue_t *self, const char *did, const char *token,
                          int64_t now_ms);

//  Dead letters of every bucket, oldest first, at most `limit`. NQ_OK or
//  NQ_UNAVAILABLE; free with notify_records_free.
int notify_queue_dead_list (notify_queue_t *self, size_t limit, notify_record_t **records,
                            size_t *count);

//  Moves a dead letter (`did`), or every dead letter (`did` NULL), back to
//  the delivery queue due at now_ms with attempt 0. Returns how many moved
//  (0 when `did` is not a dead letter) or NQ_UNAVAILABLE / NQ_ERROR (a DID
//  that is not "ID#..." with a ticket id).
int notify_queue_replay (notify_queue_t *self, const char *did, int64_t now_ms);

//  Sizes summed over the buckets: events in the outbox, deliveries waiting
//  (and claimed), dead letters. NQ_OK or NQ_UNAVAILABLE.
int notify_queue_depth (notify_queue_t *self, int64_t *outbox, int64_t *pending,
                        int64_t *dead);

//  The bucket of a delivery id (that of its ticket id), or -1.
int notify_did_bucket (const char *did);

void notify_records_free (notify_record_t *records, size_t count);
//  Frees one record's strings and zeroes it (the record itself is the
//  caller's: an array slot, a queue item).
void notify_record_clear (notify_record_t *rec);

#endif
