/*  notify_queue.c — the notifier's queues in Redis (see notify_queue.h for
    the layout and the guarantees). Each operation is one Lua script on one
    bucket; scans over the 64 buckets are pipelined, one round trip. */

#include "civicbus/notify_queue.h"
#include "civicbus/ticket_id.h"
#include "civicbus/log.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- scripts ---- */

//  KEYS ntfq, dlvq. ARGV tag, member, ticket id, seq, now, n, then six per
//  delivery: did, channel, recipient, template, subject, body.
static const char s_fanout_lua [] =
    "if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return {0, 0} end\n"
    "local tag, id, seq, now = ARGV[1], ARGV[3], tonumber(ARGV[4]), ARGV[5]\n"
    "for k = 1, seq - 1 do\n"
    "  if redis.call('ZSCORE', KEYS[1], id .. '#' .. k) then return {-1, k} end\n"
    "end\n"
    "local made = 0\n"
    "for i = 0, tonumber(ARGV[6]) - 1 do\n"
    "  local b = 7 + i * 6\n"
    "  local did, channel = ARGV[b], ARGV[b + 1]\n"
    "  local key = 'dlv:' .. tag .. ':' .. did\n"
    "  if redis.call('EXISTS', key) == 0 then\n"
    "    redis.call('HSET', key, 'channel', channel, 'recipient', ARGV[b + 2],\n"
    "      'template', ARGV[b + 3], 'subject', ARGV[b + 4], 'body', ARGV[b + 5],\n"
    "      'attempt', 0, 'ticket', id, 'seq', seq, 'created', now)\n"
    "    made = made + 1\n"
    "    if channel == 'hotline' then\n"
    "      local hl = 'hlq:' .. tag .. ':' .. id\n"
    "      redis.call('ZADD', hl, seq, did)\n"
    "      if redis.call('ZRANGE', hl, 0, 0)[1] == did then redis.call('ZADD', KEYS[2], now, did) end\n"
    "    else\n"
    "      redis.call('ZADD', KEYS[2], now, did)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('ZREM', KEYS[1], ARGV[2])\n"
    "return {1, made}\n";

//  KEYS dlvq. ARGV tag, now, until, max, token. Returns did and 8 fields per claim.
static const char s_claim_lua [] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))\n"
    "local out = {}\n"
    "for _, did in ipairs(due) do\n"
    "  local key = 'dlv:' .. ARGV[1] .. ':' .. did\n"
    "  local r = redis.call('HMGET', key, 'channel', 'recipient', 'template', 'subject',\n"
    "                       'body', 'attempt', 'ticket', 'seq')\n"
    "  if r[1] then\n"
    "    redis.call('ZADD', KEYS[1], ARGV[3], did)\n"
    "    redis.call('HSET', key, 'claim', ARGV[5])\n"
    "    out[#out + 1] = did\n"
    "    for j = 1, 8 do out[#out + 1] = r[j] or '' end\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[1], did)\n"
    "  end\n"
    "end\n"
    "return out\n";

//  KEYS dlvq, dead. ARGV tag, did, now.
static const char s_ack_lua [] =
    "local key = 'dlv:' .. ARGV[1] .. ':' .. ARGV[2]\n"
    "local r = redis.call('HMGET', key, 'channel', 'ticket')\n"
    "redis.call('DEL', key)\n"
    "redis.call('ZREM', KEYS[1], ARGV[2])\n"
    "redis.call('ZREM', KEYS[2], ARGV[2])\n"
    "if r[1] == 'hotline' and r[2] then\n"
    "  local hl = 'hlq:' .. ARGV[1] .. ':' .. r[2]\n"
    "  redis.call('ZREM', hl, ARGV[2])\n"
    "  local head = redis.call('ZRANGE', hl, 0, 0)[1]\n"
    "  if head and not redis.call('ZSCORE', KEYS[2], head) then\n"
    "    redis.call('ZADD', KEYS[1], 'NX', ARGV[3], head)\n"
    "  end\n"
    "end\n"
    "if r[1] then return 1 end\n"
    "return 0\n";

//  KEYS dlvq, dead. ARGV tag, did, token, error, retry_at, max_attempts, now.
static const char s_fail_lua [] =
    "local key = 'dlv:' .. ARGV[1] .. ':' .. ARGV[2]\n"
    "local r = redis.call('HMGET', key, 'claim', 'attempt')\n"
    "if not r[2] or r[1] ~= ARGV[3] then return {-1, 0} end\n"
    "local attempt = tonumber(r[2]) + 1\n"
    "redis.call('HSET', key, 'attempt', attempt, 'error', ARGV[4], 'last_ms', ARGV[7])\n"
    "redis.call('HDEL', key, 'claim')\n"
    "if attempt >= tonumber(ARGV[6]) then\n"
    "  redis.call('ZREM', KEYS[1], ARGV[2])\n"
    "  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[2])\n"
    "  redis.call('HSET', key, 'dead_ms', ARGV[7])\n"
    "  return {0, attempt}\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])\n"
    "return {1, attempt}\n";

//  KEYS dlvq. ARGV tag, did, token, now.
static const char s_release_lua [] =
    "local key = 'dlv:' .. ARGV[1] .. ':' .. ARGV[2]\n"
    "if redis.call('HGET', key, 'claim') ~= ARGV[3] then return 0 end\n"
    "redis.call('HDEL', key, 'claim')\n"
    "redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[2])\n"
    "return 1\n";

//  KEYS dlvq, dead. ARGV tag, now, did ('' = all), limit.
static const char s_replay_lua [] =
    "local list\n"
    "if ARGV[3] ~= '' then list = {ARGV[3]}\n"
    "else list = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[4]) - 1) end\n"
    "local n = 0\n"
    "for _, did in ipairs(list) do\n"
    "  if redis.call('ZREM', KEYS[2], did) == 1 then\n"
    "    local key = 'dlv:' .. ARGV[1] .. ':' .. did\n"
    "    if redis.call('EXISTS', key) == 1 then\n"
    "      redis.call('HSET', key, 'attempt', 0)\n"
    "      redis.call('HDEL', key, 'dead_ms', 'claim')\n"
    "      redis.call('ZADD', KEYS[1], ARGV[2], did)\n"
    "      n = n + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return n\n";

#define S_REPLAY_BATCH 500

struct _notify_queue_t {
    cb_redis_t *redis;
    cb_script_t fanout, claim, ack, fail, release, replay;
};

/* ---- private ---- */

static int
s_unavailable (notify_queue_t *self, const char *what)
{
    cb_log (CB_LOG_WARN, "redis unavailable", "during", what, "error",
            cb_redis_error (self->redis), NULL);
    return NQ_UNAVAILABLE;
}

static bool
s_reply_unavailable (const redisReply *reply)
{
    return cb_reply_is_error (reply, "LOADING") || cb_reply_is_error (reply, "BUSY")
        || cb_reply_is_error (reply, "MISCONF") || cb_reply_is_error (reply, "OOM")
        || cb_reply_is_error (reply, "NOSCRIPT");
}

static void
s_keys (int bucket, char *dlvq, char *dead, size_t cap)
{
    ts_bucket_key (dlvq, cap, "dlvq", bucket);
    if (dead)
        ts_bucket_key (dead, cap, "dead", bucket);
}

//  Splits "ID#SEQ"; 0 or -1.
static int
s_parse_member (const char *member, size_t len, int bucket, notify_outbox_entry_t *e)
{
    if (len == 0 || len >= sizeof e->member)
        return -1;
    memcpy (e->member, member, len);
    e->member [len] = 0;
    char *hash = strrchr (e->member, '#');
    if (!hash || (size_t) (hash - e->member) >= sizeof e->ticket_id)
        return -1;
    memcpy (e->ticket_id, e->member, (size_t) (hash - e->member));
    e->ticket_id [hash - e->member] = 0;
    char *end = NULL;
    long seq = strtol (hash + 1, &end, 10);
    if (!end || *end || seq < 1 || seq > 1000000000L)
        return -1;
    e->seq = (int) seq;
    e->bucket = bucket;
    return ticket_id_bucket (e->ticket_id) == bucket ? 0 : -1;
}

static int
s_compare_entries (const void *a, const void *b)
{
    const notify_outbox_entry_t *x = a, *y = b;
    int c = strcmp (x->ticket_id, y->ticket_id);
    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static char *
s_dup (const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_STRING)
        return strndup (r->str, r->len);
    return strdup ("");
}

static int64_t
s_int (const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_STRING)
        return strtoll (r->str, NULL, 10);
    if (r && r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    return 0;
}

static int
s_fill_record (notify_record_t *rec, const char *did, int bucket, redisReply *const *f)
{
    //  f: channel, recipient, template, subject, body, attempt, ticket, seq
    memset (rec, 0, sizeof *rec);
    snprintf (rec->did, sizeof rec->did, "%s", did);
    rec->bucket = bucket;
    rec->channel = (notify_channel_t) (f [0] && f [0]->type == REDIS_REPLY_STRING
                   ? notify_channel_from_name (f [0]->str) : -1);
    rec->recipient = s_dup (f [1]);
    rec->template_name = s_dup (f [2]);
    rec->subject = s_dup (f [3]);
    rec->body = s_dup (f [4]);
    rec->attempt = (int) s_int (f [5]);
    rec->ticket_id = s_dup (f [6]);
    rec->seq = (int) s_int (f [7]);
    rec->error = strdup ("");
    if (!rec->recipient || !rec->template_name || !rec->subject || !rec->body
    ||  !rec->ticket_id || !rec->error)
        return -1;
    return 0;
}

void
notify_record_clear (notify_record_t *rec)
{
    free (rec->recipient);
    free (rec->template_name);
    free (rec->subject);
    free (rec->body);
    free (rec->ticket_id);
    free (rec->error);
    memset (rec, 0, sizeof *rec);
}

static int
s_push_record (notify_record_t **list, size_t *count, size_t *cap)
{
    if (*count == *cap) {
        size_t n = *cap ? *cap * 2 : 16;
        notify_record_t *grown = realloc (*list, n * sizeof *grown);
        if (!grown)
            return -1;
        *list = grown;
        *cap = n;
    }
    return 0;
}

/* ---- public ---- */

notify_queue_t *
notify_queue_new (cb_redis_t *redis)
{
    assert (redis);
    notify_queue_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->redis = redis;
    self->fanout = (cb_script_t) CB_SCRIPT (s_fanout_lua);
    self->claim = (cb_script_t) CB_SCRIPT (s_claim_lua);
    self->ack = (cb_script_t) CB_SCRIPT (s_ack_lua);
    self->fail = (cb_script_t) CB_SCRIPT (s_fail_lua);
    self->release = (cb_script_t) CB_SCRIPT (s_release_lua);
    self->replay = (cb_script_t) CB_SCRIPT (s_replay_lua);
    return self;
}

void
notify_queue_destroy (notify_queue_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

int
notify_did_bucket (const char *did)
{
    if (!did)
        return -1;
    const char *hash = strchr (did, '#');
    char id [64];
    if (!hash || (size_t) (hash - did) >= sizeof id)
        return -1;
    memcpy (id, did, (size_t) (hash - did));
    id [hash - did] = 0;
    return ticket_id_bucket (id);
}

void
notify_records_free (notify_record_t *records, size_t count)
{
    for (size_t i = 0; records && i < count; i++)
        notify_record_clear (&records [i]);
    free (records);
}

int
notify_queue_outbox (notify_queue_t *self, size_t per_bucket,
                     notify_outbox_entry_t **entries, size_t *count)
{
    *entries = NULL;
    *count = 0;
    char key [32];
    for (int b = 0; b < CB_BUCKETS; b++) {
        ts_bucket_key (key, sizeof key, "ntfq", b);
        if (cb_redis_append (self->redis, "ZRANGE %s 0 %d", key, (int) per_bucket - 1))
            return s_unavailable (self, "outbox");
    }
    notify_outbox_entry_t *list = NULL;
    size_t n = 0, cap = 0;
    int rc = NQ_OK;
    for (int b = 0; b < CB_BUCKETS; b++) {
        redisReply *reply = cb_redis_get_reply (self->redis);
        if (!reply) {
            free (list);
            return s_unavailable (self, "outbox");
        }
        for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements && rc == NQ_OK; i++) {
            redisReply *item = reply->element [i];
            if (n == cap) {
                size_t grown_cap = cap ? cap * 2 : 64;
                notify_outbox_entry_t *grown = realloc (list, grown_cap * sizeof *grown);
                if (!grown) {
                    rc = NQ_ERROR;
                    break;
                }
                list = grown;
                cap = grown_cap;
            }
            if (item->type == REDIS_REPLY_STRING
            &&  s_parse_member (item->str, item->len, b, &list [n]) == 0)
                n++;
            else
                cb_log (CB_LOG_WARN, "malformed outbox member skipped", "key", key, NULL);
        }
        freeReplyObject (reply);
    }
    if (rc != NQ_OK) {
        free (list);
        return rc;
    }
    if (n > 1)
        qsort (list, n, sizeof *list, s_compare_entries);
    *entries = list;
    *count = n;
    return NQ_OK;
}

int
notify_queue_fanout (notify_queue_t *self, const notify_outbox_entry_t *entry,
                     const notify_plan_t *plan, int64_t now_ms, int *created)
{
    *created = 0;
    size_t argc = 2 + 6 + plan->count * 6;
    const char **argv = calloc (argc, sizeof *argv);
    size_t *lens = calloc (argc, sizeof *lens);
    if (!argv || !lens) {
        free (argv);
        free (lens);
        return NQ_ERROR;
    }
    char ntfq [32], dlvq [32], tag [CB_BUCKET_TAG_MAX], seq [16], now [24], n [16];
    ts_bucket_key (ntfq, sizeof ntfq, "ntfq", entry->bucket);
    ts_bucket_key (dlvq, sizeof dlvq, "dlvq", entry->bucket);
    cb_bucket_tag (entry->bucket, tag, sizeof tag);
    snprintf (seq, sizeof seq, "%d", entry->seq);
    snprintf (now, sizeof now, "%lld", (long long) now_ms);
    snprintf (n, sizeof n, "%zu", plan->count);
    size_t a = 0;
    argv [a++] = ntfq; argv [a++] = dlvq;
    argv [a++] = tag; argv [a++] = entry->member; argv [a++] = entry->ticket_id;
    argv [a++] = seq; argv [a++] = now; argv [a++] = n;
    for (size_t i = 0; i < plan->count; i++) {
        const notify_delivery_t *d = &plan->items [i];
        argv [a++] = d->did;
        argv [a++] = notify_channel_name (d->channel);
        argv [a++] = d->recipient;
        argv [a++] = d->template_name;
        argv [a++] = d->subject;
        argv [a++] = d->body;
    }
    for (size_t i = 0; i < argc; i++)
        lens [i] = strlen (argv [i]);
    redisReply *reply = cb_redis_eval (self->redis, &self->fanout, 2, (int) argc, argv, lens);
    free (argv);
    free (lens);
    if (!reply)
        return s_unavailable (self, "fanout");
    int rc = NQ_ERROR;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [0]->type == REDIS_REPLY_INTEGER) {
        long long code = reply->element [0]->integer;
        rc = code == 1 ? NQ_OK : code == 0 ? NQ_DONE_ELSEWHERE : NQ_BLOCKED;
        if (code == 1)
            *created = (int) reply->element [1]->integer;
    }
    else {
        if (s_reply_unavailable (reply))
            rc = NQ_UNAVAILABLE;
        cb_log (CB_LOG_ERROR, "unexpected reply from fanout script", "event", entry->member,
                "reply", reply->type == REDIS_REPLY_ERROR ? reply->str : "?", NULL);
    }
    freeReplyObject (reply);
    return rc;
}

int
notify_queue_discard (notify_queue_t *self, const notify_outbox_entry_t *entry)
{
    char ntfq [32];
    ts_bucket_key (ntfq, sizeof ntfq, "ntfq", entry->bucket);
    redisReply *reply = cb_redis_command (self->redis, "ZREM %s %s", ntfq, entry->member);
    if (!reply)
        return s_unavailable (self, "discard");
    freeReplyObject (reply);
    return NQ_OK;
}

int
notify_queue_claim (notify_queue_t *self, int64_t now_ms, int64_t visibility_ms,
                    const char *token, size_t max, int *cursor,
                    notify_record_t **records, size_t *count)
{
    *records = NULL;
    *count = 0;
    if (max == 0)
        return 0;
    //  Which buckets have anything due? One pipelined round trip; then
    //  claim only from those, starting at the cursor.
    char dlvq [32], now [24], until [24], limit [24], tag [CB_BUCKET_TAG_MAX];
    snprintf (now, sizeof now, "%lld", (long long) now_ms);
    snprintf (until, sizeof until, "%lld", (long long) (now_ms + visibility_ms));
    int start = *cursor >= 0 && *cursor < CB_BUCKETS ? *cursor : 0;
    for (int i = 0; i < CB_BUCKETS; i++) {
        s_keys ((start + i) % CB_BUCKETS, dlvq, NULL, sizeof dlvq);
        if (cb_redis_append (self->redis, "ZRANGEBYSCORE %s -inf %s LIMIT 0 1", dlvq, now))
            return s_unavailable (self, "claim");
    }
    bool due [CB_BUCKETS] = { false };
    for (int i = 0; i < CB_BUCKETS; i++) {
        redisReply *reply = cb_redis_get_reply (self->redis);
        if (!reply)
            return s_unavailable (self, "claim");
        due [i] = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0;
        freeReplyObject (reply);
    }
    notify_record_t *list = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    int last = start;
    for (int i = 0; i < CB_BUCKETS && n < max && rc == 0; i++) {
        if (!due [i])
            continue;
        int bucket = (start + i) % CB_BUCKETS;
        last = bucket;
        s_keys (bucket, dlvq, NULL, sizeof dlvq);
        cb_bucket_tag (bucket, tag, sizeof tag);
        snprintf (limit, sizeof limit, "%zu", max - n);
        const char *argv [] = { dlvq, tag, now, until, limit, token };
        redisReply *reply = cb_redis_eval (self->redis, &self->claim, 1, 6, argv, NULL);
        if (!reply) {
            rc = s_unavailable (self, "claim");
            break;
        }
        if (reply->type == REDIS_REPLY_ARRAY) {
            for (size_t k = 0; k + 9 <= reply->elements; k += 9) {
                if (s_push_record (&list, &n, &cap)) {
                    rc = NQ_ERROR;
                    break;
                }
                redisReply *did = reply->element [k];
                if (s_fill_record (&list [n], did->type == REDIS_REPLY_STRING ? did->str : "",
                                   bucket, reply->element + k + 1)) {
                    notify_record_clear (&list [n]);
                    rc = NQ_ERROR;
                    break;
                }
                n++;
            }
        }
        else
            cb_log (CB_LOG_ERROR, "unexpected reply from claim script", "reply",
                    reply->type == REDIS_REPLY_ERROR ? reply->str : "?", NULL);
        freeReplyObject (reply);
    }
    //  Next time, begin after the last bucket served, so one busy bucket
    //  cannot starve the others.
    *cursor = (last + 1) % CB_BUCKETS;
    if (rc < 0 && n == 0) {
        notify_records_free (list, n);
        return rc;
    }
    //  Claimed records are handed out even when a later bucket failed:
    //  they are ours now.
    *records = list;
    *count = n;
    return (int) n;
}

int
notify_queue_ack (notify_queue_t *self, const char *did, int64_t now_ms)
{
    int bucket = notify_did_bucket (did);
    if (bucket < 0)
        return NQ_ERROR;
    char dlvq [32], dead [32], tag [CB_BUCKET_TAG_MAX], now [24];
    s_keys (bucket, dlvq, dead, sizeof dlvq);
    cb_bucket_tag (bucket, tag, sizeof tag);
    snprintf (now, sizeof now, "%lld", (long long) now_ms);
    const char *argv [] = { dlvq, dead, tag, did, now };
    redisReply *reply = cb_redis_eval (self->redis, &self->ack, 2, 5, argv, NULL);
    if (!reply)
        return s_unavailable (self, "ack");
    int rc = reply->type == REDIS_REPLY_INTEGER ? NQ_OK
           : s_reply_unavailable (reply) ? NQ_UNAVAILABLE : NQ_ERROR;
    freeReplyObject (reply);
    return rc;
}

int
notify_queue_fail (notify_queue_t *self, const char *did, const char *token,
                   const char *error, int64_t retry_at_ms, int max_attempts,
                   int64_t now_ms, int *attempt)
{
    int bucket = notify_did_bucket (did);
    if (bucket < 0)
        return NQ_ERROR;
    char dlvq [32], dead [32], tag [CB_BUCKET_TAG_MAX], now [24], retry [24], max [16];
    s_keys (bucket, dlvq, dead, sizeof dlvq);
    cb_bucket_tag (bucket, tag, sizeof tag);
    snprintf (now, sizeof now, "%lld", (long long) now_ms);
    snprintf (retry, sizeof retry, "%lld", (long long) retry_at_ms);
    snprintf (max, sizeof max, "%d", max_attempts < 1 ? 1 : max_attempts);
    const char *argv [] = { dlvq, dead, tag, did, token, error ? error : "", retry, max, now };
    redisReply *reply = cb_redis_eval (self->redis, &self->fail, 2, 9, argv, NULL);
    if (!reply)
        return s_unavailable (self, "fail");
    int rc = NQ_ERROR;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        long long code = reply->element [0]->integer;
        rc = code == 1 ? NQ_RETRY : code == 0 ? NQ_DEAD : NQ_GONE;
        if (attempt)
            *attempt = (int) reply->element [1]->integer;
    }
    else
    if (s_reply_unavailable (reply))
        rc = NQ_UNAVAILABLE;
    freeReplyObject (reply);
    return rc;
}

int
notify_queue_release (notify_queue_t *self, const char *did, const char *token, int64_t now_ms)
{
    int bucket = notify_did_bucket (did);
    if (bucket < 0)
        return NQ_ERROR;
    char dlvq [32], tag [CB_BUCKET_TAG_MAX], now [24];
    s_keys (bucket, dlvq, NULL, sizeof dlvq);
    cb_bucket_tag (bucket, tag, sizeof tag);
    snprintf (now, sizeof now, "%lld", (long long) now_ms);
    const char *argv [] = { dlvq, tag, did, token, now };
    redisReply *reply = cb_redis_eval (self->redis, &self->release, 1, 5, argv, NULL);
    if (!reply)
        return s_unavailable (self, "release");
    int rc = reply->type == REDIS_REPLY_INTEGER ? (reply->integer ? NQ_OK : NQ_GONE) : NQ_ERROR;
    freeReplyObject (reply);
    return rc;
}

int
notify_queue_dead_list (notify_queue_t *self, size_t limit, notify_record_t **records,
                        size_t *count)
{
    *records = NULL;
    *count = 0;
    char dead [32];
    for (int b = 0; b < CB_BUCKETS; b++) {
        ts_bucket_key (dead, sizeof dead, "dead", b);
        if (cb_redis_append (self->redis, "ZRANGE %s 0 %d WITHSCORES", dead,
                             (int) (limit ? limit : 1) - 1))
            return s_unavailable (self, "dead letters");
    }
    notify_record_t *list = NULL;
    size_t n = 0, cap = 0;
    int rc = NQ_OK;
    for (int b = 0; b < CB_BUCKETS; b++) {
        redisReply *reply = cb_redis_get_reply (self->redis);
        if (!reply) {
            notify_records_free (list, n);
            return s_unavailable (self, "dead letters");
        }
        for (size_t i = 0; rc == NQ_OK && reply->type == REDIS_REPLY_ARRAY
                           && i + 1 < reply->elements; i += 2) {
            if (s_push_record (&list, &n, &cap)) {
                rc = NQ_ERROR;
                break;
            }
            memset (&list [n], 0, sizeof list [n]);
            snprintf (list [n].did, sizeof list [n].did, "%s", reply->element [i]->str);
            list [n].bucket = b;
            list [n].dead_ms = s_int (reply->element [i + 1]);
            n++;
        }
        freeReplyObject (reply);
    }
    //  The records, one pipelined HMGET each.
    char key [160];
    for (size_t i = 0; rc == NQ_OK && i < n; i++) {
        char tag [CB_BUCKET_TAG_MAX];
        cb_bucket_tag (list [i].bucket, tag, sizeof tag);
        snprintf (key, sizeof key, "dlv:%s:%s", tag, list [i].did);
        if (cb_redis_append (self->redis, "HMGET %s channel recipient template subject body "
                             "attempt ticket seq error created", key))
            rc = NQ_UNAVAILABLE;
    }
    for (size_t i = 0; rc == NQ_OK && i < n; i++) {
        redisReply *reply = cb_redis_get_reply (self->redis);
        if (!reply) {
            rc = NQ_UNAVAILABLE;
            break;
        }
        int64_t dead_ms = list [i].dead_ms;
        char did [NOTIFY_DID_MAX];
        snprintf (did, sizeof did, "%s", list [i].did);
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 10) {
            if (s_fill_record (&list [i], did, list [i].bucket, reply->element))
                rc = NQ_ERROR;
            free (list [i].error);
            list [i].error = s_dup (reply->element [8]);
            list [i].created_ms = s_int (reply->element [9]);
            list [i].dead_ms = dead_ms;
        }
        freeReplyObject (reply);
    }
    if (rc != NQ_OK) {
        notify_records_free (list, n);
        return rc == NQ_UNAVAILABLE ? s_unavailable (self, "dead letters") : rc;
    }
    //  Oldest first across the buckets, at most `limit`.
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && list [j - 1].dead_ms > list [j].dead_ms; j--) {
            notify_record_t tmp = list [j];
            list [j] = list [j - 1];
            list [j - 1] = tmp;
        }
    while (limit && n > limit)
        notify_record_clear (&list [--n]);
    *records = list;
    *count = n;
    return NQ_OK;
}

int
notify_queue_replay (notify_queue_t *self, const char *did, int64_t now_ms)
{
    char dlvq [32], dead [32], tag [CB_BUCKET_TAG_MAX], now [24], limit [24];
    snprintf (now, sizeof now, "%lld", (long long) now_ms);
    snprintf (limit, sizeof limit, "%d", S_REPLAY_BATCH);
    int from = 0, to = CB_BUCKETS;
    if (did) {
        from = notify_did_bucket (did);
        if (from < 0)
            return NQ_ERROR;
        to = from + 1;
    }
    int moved = 0;
    for (int b = from; b < to; b++) {
        s_keys (b, dlvq, dead, sizeof dlvq);
        cb_bucket_tag (b, tag, sizeof tag);
        const char *argv [] = { dlvq, dead, tag, now, did ? did : "", limit };
        for (;;) {
            redisReply *reply = cb_redis_eval (self->redis, &self->replay, 2, 6, argv, NULL);
            if (!reply)
                return s_unavailable (self, "replay");
            long long n = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
            freeReplyObject (reply);
            if (n < 0)
                return NQ_ERROR;
            moved += (int) n;
            if (did || n < S_REPLAY_BATCH)
                break;
        }
    }
    return moved;
}

int
notify_queue_depth (notify_queue_t *self, int64_t *outbox, int64_t *pending, int64_t *dead)
{
    *outbox = *pending = *dead = 0;
    static const char *const prefixes [] = { "ntfq", "dlvq", "dead" };
    char key [32];
    for (int b = 0; b < CB_BUCKETS; b++)
        for (int p = 0; p < 3; p++) {
            ts_bucket_key (key, sizeof key, prefixes [p], b);
            if (cb_redis_append (self->redis, "ZCARD %s", key))
                return s_unavailable (self, "depth");
        }
    int64_t *sums [] = { outbox, pending, dead };
    for (int b = 0; b < CB_BUCKETS; b++)
        for (int p = 0; p < 3; p++) {
            redisReply *reply = cb_redis_get_reply (self->redis);
            if (!reply)
                return s_unavailable (self, "depth");
            if (reply->type == REDIS_REPLY_INTEGER)
                *sums [p] += reply->integer;
            freeReplyObject (reply);
        }
    return NQ_OK;
}
