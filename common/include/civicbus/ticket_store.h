/*  ticket_store.h — tickets in Redis: create, load, history, and a
    compare-and-set change, each one script in one round trip.

    Layout (all keys of a ticket carry its bucket's hash tag {bNN}, so one
    script touches one Cluster slot; see docs/ARCHITECTURE.md):

        t:{bNN}:ID              hash  pb (Ticket), v (version), st (state)
        ev:{bNN}:ID             list  TicketEvent, oldest first
        idem:{bNN}:KEY          string ID, with a TTL
        seq:{bNN}:YYYYMMDD      counter behind the ids of that day
        inbox:{bNN}             zset  ID -> received ms: doorbell not yet handled
        opq:{bNN}               zset  ID -> ms: operators' queue (needs_review)
        idx:{bNN}:all           zset  ID -> created ms
        idx:{bNN}:st:STATE      zset  ID -> created ms
        idx:{bNN}:dept:DEPT     zset  ID -> created ms (primary department)
        idx:{bNN}:grid:CODE     zset  ID -> created ms (every code of the path)
        ntfq:{bNN}              zset  "ID#SEQ" -> ms: every stored event, the
                                      notifier's outbox (it fans each out to
                                      the people who must hear of it)

    The store keeps the idx:*, opq and ntfq sets true on every write: callers never
    touch them. Callers add their own keys of the same bucket (dispatch
    records, timers) to a change through ts_ops_t, so they commit atomically
    with the ticket. */

#ifndef CIVICBUS_TICKET_STORE_H
#define CIVICBUS_TICKET_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "civicbus/redis.h"
#include "civicbus/ticket_fsm.h"

typedef Civicbus__V1__TicketEvent cb_event_t;

//  Results. Negative: the store could not answer; positive: an answer other
//  than plain success.
enum {
    TS_OK = 0,
    TS_REPEAT = 1,         //  create: the idempotency key was seen; id of the first
    TS_NOT_FOUND = 2,      //  no such ticket
    TS_CONFLICT = 3,       //  apply: the version moved; reload and decide again
    TS_REFUSED = 4,        //  transition: the state machine said no (see outcome)
    TS_ERROR = -1,         //  bad reply or encoding failure (a bug or corruption)
    TS_UNAVAILABLE = -2,   //  Redis unreachable: answer 503 / retry later
};

typedef struct _ticket_store_t ticket_store_t;
typedef struct _ts_ops_t ts_ops_t;

//  One history entry to append with a change.
typedef struct {
    const char *type;                //  "accept", "dispatch", ... (ticket_event_name)
    const ticket_actor_t *actor;
    cb_state_t from, to;
    const char *note;                //  may be NULL; masked by the caller if it holds personal data
    const char *payload_json;        //  may be NULL
} ts_event_t;

//  The store uses `redis` (it does not own it) from the calling thread only.
ticket_store_t *ticket_store_new (cb_redis_t *redis);
void ticket_store_destroy (ticket_store_t **self_p);

//  Stores a new ticket as RECEIVED with version 1, its first event
//  ("received"), the idempotency key (`idem_key`, kept `idem_ttl_s` seconds),
//  the inbox entry and the indexes, in one script. The bucket comes from
//  idem_key. On TS_OK the ticket's id, state, version, created_ms, updated_ms
//  and event_count are set. On TS_REPEAT `id_out` holds the first ticket's id
//  and nothing was written. `district` prefixes the id (digits only).
int ticket_store_create (ticket_store_t *self, cb_ticket_t *ticket, const char *district,
                         const char *idem_key, int idem_ttl_s, const ticket_actor_t *actor,
                         int64_t now_ms, char *id_out, size_t id_cap);

//  The create split in three, so that many creates share one pipeline
//  (common/redis_batch.h); ticket_store_create is new, one EVALSHA, reply.
typedef struct _ts_create_t ts_create_t;
//  The create script's Lua text (register a cb_script_t of it with the
//  batcher, which loads it).
const char *ticket_store_create_source (void);
//  Everything ticket_store_create does before its round trip: sets the
//  ticket's state, version, times and event count, and builds the script's
//  keys and arguments. NULL when out of memory.
ts_create_t *ts_create_new (cb_ticket_t *ticket, const char *district, const char *idem_key,
                            int idem_ttl_s, const ticket_actor_t *actor, int64_t now_ms);
//  Also counts the report in the repeat-report rate (duplicates.h), in the
//  same script, so a stored report is counted exactly once: the ticket's
//  day (Asia/Shanghai) and bucket,
//      kpi:{bNN}:reports:YYYYMMDD   hash  area -> reports created
//      kpi:{bNN}:dup:YYYYMMDD       hash  area -> of them flagged (`duplicate`)
//  each kept `ttl_s` from the first count of its newest area (the expiry
//  is set when an area's field is created, not on every count). A repeat
//  (TS_REPEAT) counts nothing. Call before ts_create_append. 0 or -1.
int ts_create_count_kpi (ts_create_t *self, const char *area, bool duplicate, int ttl_s);
//  The id's number taken ahead of the create, so the caller knows the id
//  and can pipeline writes naming it with the create (the intake's
//  duplicate index): ts_seq_append appends the day counter's INCR (and its
//  expiry) for a create with `idem_key` at `now_ms` and returns how many
//  commands (2) or -1; ts_seq_reply reads the number from their replies
//  (0 when there is none); ts_create_use_seq makes the create (built with
//  the same idem_key and now_ms) use it and writes the id it will have into
//  `id_out`. A repeat (TS_REPEAT) leaves the number unused: ids may have
//  gaps. 0 or -1.
int ts_seq_append (cb_redis_t *redis, const char *idem_key, int64_t now_ms);
long long ts_seq_reply (redisReply **replies, size_t n);
int ts_create_use_seq (ts_create_t *self, long long seq, char *id_out, size_t id_cap);
void ts_create_destroy (ts_create_t **self_p);
//  Appends the script call (EVALSHA of `script`, whose sha is loaded) to
//  the pipeline of `redis`. 0 or -1.
int ts_create_append (ts_create_t *self, cb_redis_t *redis, cb_script_t *script);
//  Reads its reply as ticket_store_create does: TS_OK (the ticket's id is
//  set), TS_REPEAT (`id_out` holds the first ticket's id), TS_UNAVAILABLE
//  (Redis refused: OOM, LOADING, MISCONF, BUSY), TS_ERROR. A NOSCRIPT
//  reply is the caller's to retry, not this function's.
int ts_create_reply (ts_create_t *self, cb_ticket_t *ticket, const redisReply *reply,
                     char *id_out, size_t id_cap);

//  Loads a ticket (caller frees with civicbus__v1__ticket__free_unpacked).
//  TS_OK, TS_NOT_FOUND (also for text that is not a ticket id), TS_UNAVAILABLE.
int ticket_store_load (ticket_store_t *self, const char *id, cb_ticket_t **ticket);
//  Loads many tickets in one round trip: tickets [i] and results [i] are
//  what ticket_store_load gives for ids [i]. Returns TS_OK, or
//  TS_UNAVAILABLE when Redis did not answer them all (the unanswered ones'
//  results are TS_UNAVAILABLE).
int ticket_store_load_many (ticket_store_t *self, const char *const *ids, size_t n,
                            cb_ticket_t **tickets, int *results);
//  Loads the history, oldest first; free with ticket_store_free_events.
int ticket_store_history (ticket_store_t *self, const char *id, cb_event_t ***events,
                          size_t *count);
void ticket_store_free_events (cb_event_t **events, size_t count);

//  Stores `after` in place of `before` if the stored version is still
//  before->version, with `events` appended (sequence numbers assigned), the
//  indexes moved, and `ops` run, all in one script. Sets after->version and
//  after->event_count. TS_OK, TS_CONFLICT, TS_NOT_FOUND, TS_UNAVAILABLE.
int ticket_store_apply (ticket_store_t *self, const cb_ticket_t *before, cb_ticket_t *after,
                        const ts_event_t *events, size_t n_events, ts_ops_t *ops);

//  One change of a batch for ticket_store_apply_many.
typedef struct {
    const cb_ticket_t *before;
    cb_ticket_t *after;
    const ts_event_t *events;
    size_t n_events;
    ts_ops_t *ops;                   //  may be NULL
    int result;                      //  out: what ticket_store_apply would return
} ts_change_t;

//  Many ticket_store_apply in one round trip. Each change is still its own
//  compare-and-set script, independent of the others (two changes of one
//  ticket in a batch: the second finds TS_CONFLICT). Sets every result.
//  Returns TS_OK, TS_ERROR (out of memory: no result set, nothing sent) or
//  TS_UNAVAILABLE when Redis did not answer every change (those results
//  are TS_UNAVAILABLE: stored or not, reload and decide again, as after a
//  single apply without its reply).
int ticket_store_apply_many (ticket_store_t *self, ts_change_t *changes, size_t n);

//  Load, run the state machine, store; repeats on a version conflict (up to
//  `tries`, at least 1). On TS_OK, *after (if not NULL) gets the stored
//  ticket (caller frees). TS_REFUSED fills outcome->code and ->reason.
//  `ops_for` (may be NULL) runs once the outcome is known, before the store:
//  it may change `after` further (deadlines, lights: the effects of the
//  outcome) and add keys to the change; returning -1 abandons the change
//  (TS_ERROR).
typedef int (ts_ops_fn) (const cb_ticket_t *before, cb_ticket_t *after,
                         const ticket_outcome_t *outcome, ts_ops_t *ops, void *arg);
int ticket_store_transition (ticket_store_t *self, const char *id, const ticket_input_t *input,
                             const ticket_actor_t *actor, int64_t now_ms, int tries,
                             ts_ops_fn *ops_for, void *ops_arg,
                             ticket_outcome_t *outcome, cb_ticket_t **after);

//  Extra writes of a change, all in the ticket's bucket.
ts_ops_t *ts_ops_new (void);
void ts_ops_destroy (ts_ops_t **self_p);
int ts_ops_zadd (ts_ops_t *self, const char *key, int64_t score, const char *member);
int ts_ops_zrem (ts_ops_t *self, const char *key, const char *member);
int ts_ops_hset (ts_ops_t *self, const char *key, const char *field, const char *value);
int ts_ops_hdel (ts_ops_t *self, const char *key, const char *field);
int ts_ops_del (ts_ops_t *self, const char *key);
//  SADD key member (the dispatcher records applied reply ids: rep:{bNN}:ID).
int ts_ops_sadd (ts_ops_t *self, const char *key, const char *member);
size_t ts_ops_count (const ts_ops_t *self);

//  A deep copy (pack and unpack), freed with civicbus__v1__ticket__free_unpacked.
cb_ticket_t *ticket_clone (const cb_ticket_t *ticket);

//  Key names: "t:{b07}:ID" and the like, for a ticket id. 0, or -1 when `id`
//  is not a ticket id.
int ts_key (char *buf, size_t cap, const char *prefix, const char *id);
//  "inbox:{b07}", "opq:{b07}", ... for a bucket.
void ts_bucket_key (char *buf, size_t cap, const char *prefix, int bucket);

#endif
