/*  ticket_store.c — tickets in Redis (see ticket_store.h for the layout).

    Two Lua scripts do all writes of a ticket:
    - create: idempotency check, id allocation (the bucket's day counter),
      ticket, first event, inbox, indexes, and when asked the report's
      count in the repeat-report rate (ts_create_count_kpi). The id's
      number may come from an earlier INCR of the same counter
      (ts_seq_append, ts_create_use_seq), so a caller knows the id before
      the create and can pipeline writes that name it with the create.
      The id is made inside the script, so the ticket and event are sent
      without it and the script prepends the id field (protobuf field 1,
      wire type 2; a later duplicate of a field would win, and there is
      none). Keys derived from the new id are not in KEYS; they share the
      bucket's hash tag, hence the slot, of the declared ones, which Redis
      Cluster accepts.
    - apply: compare-and-set on the version field, then the new ticket, the
      events and a list of simple operations on keys of the same bucket.
    Reads are one HGET or LRANGE. */

#include "civicbus/ticket_store.h"
#include "civicbus/ticket_id.h"
#include "civicbus/log.h"
#include "civicbus/clock.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- scripts ---- */

static const char s_create_lua [] =
    "local existing = redis.call('GET', KEYS[1])\n"
    "if existing then return {0, existing} end\n"
    "local seq = tonumber(ARGV[10])\n"
    "if seq == 0 then\n"
    "  seq = redis.call('INCR', KEYS[2])\n"
    "  if seq == 1 then redis.call('EXPIRE', KEYS[2], 259200) end\n"
    "end\n"
    "local id = ARGV[2] .. '-' .. ARGV[3] .. '-' .. string.format('%09d', seq * 64 + tonumber(ARGV[4]))\n"
    "local head = '\\10' .. string.char(#id) .. id\n"
    "local tag = ARGV[1]\n"
    "redis.call('HSET', 't:' .. tag .. ':' .. id, 'pb', head .. ARGV[7], 'v', 1, 'st', ARGV[9])\n"
    "redis.call('RPUSH', 'ev:' .. tag .. ':' .. id, head .. ARGV[8])\n"
    "redis.call('SET', KEYS[1], id, 'EX', ARGV[5])\n"
    "redis.call('ZADD', 'ntfq:' .. tag, ARGV[6], id .. '#1')\n"
    "for i = 3, #KEYS do redis.call('ZADD', KEYS[i], ARGV[6], id) end\n"
    "if ARGV[11] ~= '' then\n"
    "  local k = 'kpi:' .. tag .. ':reports:' .. ARGV[3]\n"
    "  if redis.call('HINCRBY', k, ARGV[11], 1) == 1 then redis.call('EXPIRE', k, ARGV[13]) end\n"
    "  if ARGV[12] == '1' then\n"
    "    k = 'kpi:' .. tag .. ':dup:' .. ARGV[3]\n"
    "    if redis.call('HINCRBY', k, ARGV[11], 1) == 1 then redis.call('EXPIRE', k, ARGV[13]) end\n"
    "  end\n"
    "end\n"
    "return {1, id}\n";

static const char s_apply_lua [] =
    "local cur = redis.call('HGET', KEYS[1], 'v')\n"
    "if not cur then return {-1, 0} end\n"
    "if cur ~= ARGV[1] then return {0, tonumber(cur)} end\n"
    "local nv = tonumber(cur) + 1\n"
    "redis.call('HSET', KEYS[1], 'pb', ARGV[2], 'v', nv, 'st', ARGV[3])\n"
    "local n = tonumber(ARGV[4])\n"
    "for i = 1, n do redis.call('RPUSH', KEYS[2], ARGV[4 + i]) end\n"
    "local i = 5 + n\n"
    "while i <= #ARGV do\n"
    "  local op, k, a, b = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]\n"
    "  if op == 'zadd' then redis.call('ZADD', k, a, b)\n"
    "  elseif op == 'zrem' then redis.call('ZREM', k, b)\n"
    "  elseif op == 'hset' then redis.call('HSET', k, a, b)\n"
    "  elseif op == 'hdel' then redis.call('HDEL', k, a)\n"
    "  elseif op == 'del' then redis.call('DEL', k)\n"
    "  elseif op == 'sadd' then redis.call('SADD', k, b)\n"
    "  else return redis.error_reply('civicbus: unknown op ' .. op) end\n"
    "  i = i + 4\n"
    "end\n"
    "return {1, nv}\n";

struct _ticket_store_t {
    cb_redis_t *redis;
    cb_script_t create_script;
    cb_script_t apply_script;
};

typedef struct {
    char *op;
    char *key;
    char *a;
    char *b;
} s_op_t;

struct _ts_ops_t {
    s_op_t *ops;
    size_t count, cap;
};

//  A growing array of owned strings for building script arguments.
typedef struct {
    char **v;
    size_t *lens;
    size_t count, cap;
} s_args_t;

/* ---- private ---- */

static int
s_args_push (s_args_t *args, const void *data, size_t len)
{
    if (args->count == args->cap) {
        size_t cap = args->cap ? args->cap * 2 : 32;
        char **v = realloc (args->v, cap * sizeof *v);
        if (!v)
            return -1;
        args->v = v;
        size_t *lens = realloc (args->lens, cap * sizeof *lens);
        if (!lens)
            return -1;
        args->lens = lens;
        args->cap = cap;
    }
    char *copy = malloc (len + 1);
    if (!copy)
        return -1;
    if (len)
        memcpy (copy, data, len);
    copy [len] = 0;
    args->v [args->count] = copy;
    args->lens [args->count] = len;
    args->count++;
    return 0;
}

static int
s_args_str (s_args_t *args, const char *s)
{
    return s_args_push (args, s, strlen (s));
}

static int
s_args_int (s_args_t *args, int64_t n)
{
    char text [32];
    snprintf (text, sizeof text, "%lld", (long long) n);
    return s_args_str (args, text);
}

static void
s_args_free (s_args_t *args)
{
    for (size_t i = 0; i < args->count; i++)
        free (args->v [i]);
    free (args->v);
    free (args->lens);
    memset (args, 0, sizeof *args);
}

static int
s_pack (const ProtobufCMessage *msg, s_args_t *args)
{
    size_t len = protobuf_c_message_get_packed_size (msg);
    uint8_t *buf = malloc (len ? len : 1);
    if (!buf)
        return -1;
    protobuf_c_message_pack (msg, buf);
    int rc = s_args_push (args, buf, len);
    free (buf);
    return rc;
}

static bool
s_needs_operator (const cb_ticket_t *t)
{
    return t && !ticket_state_is_final (t->state)
        && (t->needs_review || t->extension_pending || t->suspension_pending
            || t->state == CIVICBUS__V1__TICKET_STATE__RETURNED
            || t->state == CIVICBUS__V1__TICKET_STATE__RESOLVED);
}

//  Index keys (without bucket tag prefix) a ticket belongs to, each written
//  into names[i] as "st:DISPATCHED", "dept:urban", "grid:320105001".
static size_t
s_index_names (const cb_ticket_t *t, char names [][96], size_t cap)
{
    size_t n = 0;
    if (!t)
        return 0;
    snprintf (names [n++], 96, "st:%s", ticket_state_name (t->state));
    if (t->department && t->department [0] && n < cap)
        snprintf (names [n++], 96, "dept:%s", t->department);
    if (t->location)
        for (size_t i = 0; i < t->location->n_grid_path && n < cap; i++)
            snprintf (names [n++], 96, "grid:%s", t->location->grid_path [i]);
    return n;
}

static bool
s_contains (char names [][96], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp (names [i], name) == 0)
            return true;
    return false;
}

static int
s_make_event (cb_event_t *ev, const char *ticket_id, int32_t seq, const ts_event_t *in,
              int64_t now_ms, Civicbus__V1__Actor *actor)
{
    civicbus__v1__ticket_event__init (ev);
    civicbus__v1__actor__init (actor);
    ev->ticket_id = (char *) (ticket_id ? ticket_id : "");
    ev->sequence = seq;
    ev->type = (char *) (in->type ? in->type : "");
    if (in->actor) {
        actor->kind = in->actor->kind;
        actor->id = (char *) (in->actor->id ? in->actor->id : "");
        actor->name = (char *) (in->actor->name ? in->actor->name : "");
        ev->actor = actor;
    }
    ev->time_ms = now_ms;
    ev->from_state = in->from;
    ev->to_state = in->to;
    ev->note = (char *) (in->note ? in->note : "");
    if (in->payload_json) {
        ev->payload.data = (uint8_t *) in->payload_json;
        ev->payload.len = strlen (in->payload_json);
    }
    return 0;
}

static int
s_unavailable (ticket_store_t *self, const char *what)
{
    cb_log (CB_LOG_WARN, "redis unavailable", "during", what, "error",
            cb_redis_error (self->redis), NULL);
    return TS_UNAVAILABLE;
}

//  The next reply of a pipeline while *rc is TS_OK; NULL once the
//  connection failed, which is logged the first time and makes *rc
//  TS_UNAVAILABLE (every later reply of the pipeline is lost with it).
static redisReply *
s_next_reply (ticket_store_t *self, int *rc, const char *what)
{
    redisReply *reply = *rc == TS_OK ? cb_redis_get_reply (self->redis) : NULL;
    if (!reply) {
        if (*rc == TS_OK)
            s_unavailable (self, what);
        *rc = TS_UNAVAILABLE;
    }
    return reply;
}

//  An apply that did not happen: `after` gets back the version and event
//  count of `before`.
static void
s_apply_undone (const cb_ticket_t *before, cb_ticket_t *after)
{
    after->version = before->version;
    after->event_count = before->event_count;
}

/* ---- public: keys ---- */

cb_ticket_t *
ticket_clone (const cb_ticket_t *ticket)
{
    size_t len = civicbus__v1__ticket__get_packed_size (ticket);
    uint8_t *buf = malloc (len ? len : 1);
    if (!buf)
        return NULL;
    civicbus__v1__ticket__pack (ticket, buf);
    cb_ticket_t *copy = civicbus__v1__ticket__unpack (NULL, len, buf);
    free (buf);
    return copy;
}

int
ts_key (char *buf, size_t cap, const char *prefix, const char *id)
{
    int bucket = ticket_id_bucket (id);
    if (bucket < 0)
        return -1;
    int n = snprintf (buf, cap, "%s:{b%02d}:%s", prefix, bucket, id);
    return n > 0 && (size_t) n < cap ? 0 : -1;
}

void
ts_bucket_key (char *buf, size_t cap, const char *prefix, int bucket)
{
    snprintf (buf, cap, "%s:{b%02d}", prefix, bucket);
}

/* ---- public: ops ---- */

ts_ops_t *
ts_ops_new (void)
{
    return calloc (1, sizeof (ts_ops_t));
}

void
ts_ops_destroy (ts_ops_t **self_p)
{
    assert (self_p);
    ts_ops_t *self = *self_p;
    if (self) {
        for (size_t i = 0; i < self->count; i++) {
            free (self->ops [i].op);
            free (self->ops [i].key);
            free (self->ops [i].a);
            free (self->ops [i].b);
        }
        free (self->ops);
        free (self);
        *self_p = NULL;
    }
}

static int
s_ops_add (ts_ops_t *self, const char *op, const char *key, const char *a, const char *b)
{
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 8;
        s_op_t *ops = realloc (self->ops, cap * sizeof *ops);
        if (!ops)
            return -1;
        self->ops = ops;
        self->cap = cap;
    }
    s_op_t *o = &self->ops [self->count];
    o->op = strdup (op);
    o->key = strdup (key);
    o->a = strdup (a ? a : "");
    o->b = strdup (b ? b : "");
    if (!o->op || !o->key || !o->a || !o->b) {
        free (o->op); free (o->key); free (o->a); free (o->b);
        return -1;
    }
    self->count++;
    return 0;
}

int
ts_ops_zadd (ts_ops_t *self, const char *key, int64_t score, const char *member)
{
    char text [32];
    snprintf (text, sizeof text, "%lld", (long long) score);
    return s_ops_add (self, "zadd", key, text, member);
}

int
ts_ops_zrem (ts_ops_t *self, const char *key, const char *member)
{
    return s_ops_add (self, "zrem", key, "", member);
}

int
ts_ops_hset (ts_ops_t *self, const char *key, const char *field, const char *value)
{
    return s_ops_add (self, "hset", key, field, value);
}

int
ts_ops_hdel (ts_ops_t *self, const char *key, const char *field)
{
    return s_ops_add (self, "hdel", key, field, "");
}

int
ts_ops_del (ts_ops_t *self, const char *key)
{
    return s_ops_add (self, "del", key, "", "");
}

int
ts_ops_sadd (ts_ops_t *self, const char *key, const char *member)
{
    return s_ops_add (self, "sadd", key, "", member);
}

size_t
ts_ops_count (const ts_ops_t *self)
{
    return self ? self->count : 0;
}

/* ---- public: store ---- */

ticket_store_t *
ticket_store_new (cb_redis_t *redis)
{
    assert (redis);
    ticket_store_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->redis = redis;
    self->create_script = (cb_script_t) CB_SCRIPT (s_create_lua);
    self->apply_script = (cb_script_t) CB_SCRIPT (s_apply_lua);
    return self;
}

void
ticket_store_destroy (ticket_store_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

/* ---- public: create, whole or split for pipelining ---- */

//  The create script's arguments after the keys, by position (ARGV[i]).
enum {
    S_ARG_SEQ = 10,                 //  "0": the script takes the next number
    S_ARG_KPI_AREA,                 //  "": not counted
    S_ARG_KPI_DUP,                  //  "1": counted as a duplicate too
    S_ARG_KPI_TTL,
};

//  A day's id counter lives three days (s_create_lua has the same number,
//  as a literal: bench/run reads the script's text out of this file).
#define S_SEQ_TTL_S 259200

struct _ts_create_t {
    s_args_t args;                  //  keys, then arguments
    int numkeys;
    char district [16];
    int bucket, yyyymmdd;
};

const char *
ticket_store_create_source (void)
{
    return s_create_lua;
}

//  The day counter behind the ids of a create with `idem_key` at `now_ms`.
static void
s_seq_key (const char *idem_key, int64_t now_ms, char *buf, size_t cap)
{
    char tag [CB_BUCKET_TAG_MAX];
    cb_bucket_tag (cb_bucket_for_key (idem_key), tag, sizeof tag);
    snprintf (buf, cap, "seq:%s:%08d", tag, cb_time_local_yyyymmdd (now_ms));
}

ts_create_t *
ts_create_new (cb_ticket_t *ticket, const char *district, const char *idem_key, int idem_ttl_s,
               const ticket_actor_t *actor, int64_t now_ms)
{
    assert (ticket && district && idem_key);
    ts_create_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    int bucket = cb_bucket_for_key (idem_key);
    char tag [CB_BUCKET_TAG_MAX];
    cb_bucket_tag (bucket, tag, sizeof tag);

    //  The script adds the id; the ticket goes without it.
    char *saved_id = ticket->id;
    ticket->id = (char *) "";
    ticket->state = CIVICBUS__V1__TICKET_STATE__RECEIVED;
    ticket->version = 1;
    ticket->created_ms = now_ms;
    ticket->updated_ms = now_ms;
    ticket->event_count = 1;

    cb_event_t ev;
    Civicbus__V1__Actor ev_actor;
    ts_event_t first = { "received", actor, CIVICBUS__V1__TICKET_STATE__TICKET_STATE_UNSPECIFIED,
                         CIVICBUS__V1__TICKET_STATE__RECEIVED, NULL, NULL };
    s_make_event (&ev, "", 1, &first, now_ms, &ev_actor);

    char names [16][96];
    size_t n_names = s_index_names (ticket, names, 16);
    s_args_t *args = &self->args;
    char key [256];
    int rc = 0;
    snprintf (key, sizeof key, "idem:%s:%s", tag, idem_key);
    rc |= s_args_str (args, key);
    s_seq_key (idem_key, now_ms, key, sizeof key);
    rc |= s_args_str (args, key);
    snprintf (key, sizeof key, "inbox:%s", tag);
    rc |= s_args_str (args, key);
    snprintf (key, sizeof key, "idx:%s:all", tag);
    rc |= s_args_str (args, key);
    for (size_t i = 0; i < n_names; i++) {
        snprintf (key, sizeof key, "idx:%s:%.95s", tag, names [i]);
        rc |= s_args_str (args, key);
    }
    if (s_needs_operator (ticket)) {
        snprintf (key, sizeof key, "opq:%s", tag);
        rc |= s_args_str (args, key);
    }
    self->numkeys = (int) args->count;
    rc |= s_args_str (args, tag);
    rc |= s_args_str (args, district);
    self->yyyymmdd = cb_time_local_yyyymmdd (now_ms);
    rc |= s_args_int (args, self->yyyymmdd);
    rc |= s_args_int (args, bucket);
    rc |= s_args_int (args, idem_ttl_s > 0 ? idem_ttl_s : 86400);
    rc |= s_args_int (args, now_ms);
    rc |= s_pack (&ticket->base, args);
    rc |= s_pack (&ev.base, args);
    rc |= s_args_int (args, ticket->state);
    rc |= s_args_str (args, "0");           //  S_ARG_SEQ
    rc |= s_args_str (args, "");            //  S_ARG_KPI_AREA
    rc |= s_args_str (args, "0");           //  S_ARG_KPI_DUP
    rc |= s_args_str (args, "0");           //  S_ARG_KPI_TTL
    ticket->id = saved_id;
    snprintf (self->district, sizeof self->district, "%s", district);
    self->bucket = bucket;
    if (rc)
        ts_create_destroy (&self);
    return self;
}

//  Replaces ARGV[at] (1-based, after the keys).
static int
s_create_set (ts_create_t *self, int at, const char *text)
{
    size_t i = (size_t) self->numkeys + (size_t) at - 1;
    assert (i < self->args.count);
    char *copy = strdup (text);
    if (!copy)
        return -1;
    free (self->args.v [i]);
    self->args.v [i] = copy;
    self->args.lens [i] = strlen (copy);
    return 0;
}

int
ts_seq_append (cb_redis_t *redis, const char *idem_key, int64_t now_ms)
{
    assert (redis && idem_key);
    char key [64];
    s_seq_key (idem_key, now_ms, key, sizeof key);
    return cb_redis_append (redis, "INCR %s", key)
        || cb_redis_append (redis, "EXPIRE %s %d NX", key, S_SEQ_TTL_S) ? -1 : 2;
}

long long
ts_seq_reply (redisReply **replies, size_t n)
{
    return n >= 1 && replies [0] && replies [0]->type == REDIS_REPLY_INTEGER
        && replies [0]->integer > 0 ? replies [0]->integer : 0;
}

int
ts_create_use_seq (ts_create_t *self, long long seq, char *id_out, size_t id_cap)
{
    assert (self && seq > 0);
    if (ticket_id_format (id_out, id_cap, self->district, self->yyyymmdd, seq, self->bucket))
        return -1;
    char text [24];
    snprintf (text, sizeof text, "%lld", seq);
    return s_create_set (self, S_ARG_SEQ, text);
}

int
ts_create_count_kpi (ts_create_t *self, const char *area, bool duplicate, int ttl_s)
{
    assert (self && area && *area && ttl_s > 0);
    char ttl [16];
    snprintf (ttl, sizeof ttl, "%d", ttl_s);
    return s_create_set (self, S_ARG_KPI_AREA, area)
        || s_create_set (self, S_ARG_KPI_DUP, duplicate ? "1" : "0")
        || s_create_set (self, S_ARG_KPI_TTL, ttl) ? -1 : 0;
}

void
ts_create_destroy (ts_create_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_args_free (&(*self_p)->args);
        free (*self_p);
        *self_p = NULL;
    }
}

int
ts_create_append (ts_create_t *self, cb_redis_t *redis, cb_script_t *script)
{
    assert (self && redis && script);
    return cb_redis_append_eval (redis, script, self->numkeys, (int) self->args.count,
                                 (const char **) self->args.v, self->args.lens);
}

int
ts_create_reply (ts_create_t *self, cb_ticket_t *ticket, const redisReply *reply,
                 char *id_out, size_t id_cap)
{
    assert (ticket && reply);
    (void) self;                    //  the reply alone says it all, today
    int result = TS_ERROR;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [0]->type == REDIS_REPLY_INTEGER
    &&  reply->element [1]->type == REDIS_REPLY_STRING) {
        snprintf (id_out, id_cap, "%s", reply->element [1]->str);
        if (reply->element [0]->integer == 1) {
            char *id = strdup (reply->element [1]->str);
            if (id) {
                if (ticket->id && ticket->id != protobuf_c_empty_string)
                    free (ticket->id);
                ticket->id = id;
                result = TS_OK;
            }
        }
        else
            result = TS_REPEAT;
    }
    else
        cb_log (CB_LOG_ERROR, "unexpected reply from create script", "reply",
                reply->type == REDIS_REPLY_ERROR ? reply->str : "?", NULL);
    if (cb_reply_is_error (reply, "OOM") || cb_reply_is_error (reply, "LOADING")
    ||  cb_reply_is_error (reply, "MISCONF") || cb_reply_is_error (reply, "BUSY"))
        result = TS_UNAVAILABLE;
    return result;
}

int
ticket_store_create (ticket_store_t *self, cb_ticket_t *ticket, const char *district,
                     const char *idem_key, int idem_ttl_s, const ticket_actor_t *actor,
                     int64_t now_ms, char *id_out, size_t id_cap)
{
    assert (self && ticket && district && idem_key);
    ts_create_t *create = ts_create_new (ticket, district, idem_key, idem_ttl_s, actor, now_ms);
    if (!create)
        return TS_ERROR;
    redisReply *reply = cb_redis_eval (self->redis, &self->create_script, create->numkeys,
                                       (int) create->args.count, (const char **) create->args.v,
                                       create->args.lens);
    int result = reply ? ts_create_reply (create, ticket, reply, id_out, id_cap)
                       : s_unavailable (self, "create");
    if (reply)
        freeReplyObject (reply);
    ts_create_destroy (&create);
    return result;
}

//  What an HGET of a ticket's pb answered, as ticket_store_load says it.
static int
s_load_result (const char *id, const redisReply *reply, cb_ticket_t **ticket)
{
    *ticket = NULL;
    if (reply->type == REDIS_REPLY_NIL)
        return TS_NOT_FOUND;
    if (reply->type == REDIS_REPLY_STRING) {
        *ticket = civicbus__v1__ticket__unpack (NULL, reply->len, (const uint8_t *) reply->str);
        if (!*ticket)
            cb_log (CB_LOG_ERROR, "stored ticket does not decode", "ticket", id, NULL);
        return *ticket ? TS_OK : TS_ERROR;
    }
    return cb_reply_is_error (reply, "LOADING") ? TS_UNAVAILABLE : TS_ERROR;
}

int
ticket_store_load (ticket_store_t *self, const char *id, cb_ticket_t **ticket)
{
    char key [128];
    *ticket = NULL;
    if (ts_key (key, sizeof key, "t", id))
        return TS_NOT_FOUND;
    redisReply *reply = cb_redis_command (self->redis, "HGET %s pb", key);
    if (!reply)
        return s_unavailable (self, "load");
    int rc = s_load_result (id, reply, ticket);
    freeReplyObject (reply);
    return rc;
}

int
ticket_store_load_many (ticket_store_t *self, const char *const *ids, size_t n,
                        cb_ticket_t **tickets, int *results)
{
    assert (self && (n == 0 || (ids && tickets && results)));
    int rc = TS_OK;
    for (size_t i = 0; i < n; i++) {
        char key [128];
        tickets [i] = NULL;
        results [i] = ts_key (key, sizeof key, "t", ids [i]) ? TS_NOT_FOUND : TS_OK;
        if (results [i] == TS_OK && rc == TS_OK && cb_redis_append (self->redis, "HGET %s pb", key))
            rc = s_unavailable (self, "load (pipelined)");
    }
    for (size_t i = 0; i < n; i++) {
        if (results [i] != TS_OK)
            continue;
        redisReply *reply = s_next_reply (self, &rc, "load (pipelined)");
        if (!reply) {
            results [i] = TS_UNAVAILABLE;
            continue;
        }
        results [i] = s_load_result (ids [i], reply, &tickets [i]);
        freeReplyObject (reply);
    }
    return rc;
}

void
ticket_store_free_events (cb_event_t **events, size_t count)
{
    if (!events)
        return;
    for (size_t i = 0; i < count; i++)
        if (events [i])
            civicbus__v1__ticket_event__free_unpacked (events [i], NULL);
    free (events);
}

int
ticket_store_history (ticket_store_t *self, const char *id, cb_event_t ***events,
                      size_t *count)
{
    char key [128];
    *events = NULL;
    *count = 0;
    if (ts_key (key, sizeof key, "ev", id))
        return TS_NOT_FOUND;
    redisReply *reply = cb_redis_command (self->redis, "LRANGE %s 0 -1", key);
    if (!reply)
        return s_unavailable (self, "history");
    int rc = TS_ERROR;
    if (reply->type == REDIS_REPLY_ARRAY) {
        rc = reply->elements ? TS_OK : TS_NOT_FOUND;
        cb_event_t **list = calloc (reply->elements + 1, sizeof *list);
        if (!list)
            rc = TS_ERROR;
        for (size_t i = 0; list && i < reply->elements; i++) {
            redisReply *item = reply->element [i];
            if (item->type == REDIS_REPLY_STRING)
                list [*count] = civicbus__v1__ticket_event__unpack (NULL, item->len,
                                                                    (const uint8_t *) item->str);
            if (list [*count])
                (*count)++;
            else
                cb_log (CB_LOG_ERROR, "stored event does not decode", "ticket", id, NULL);
        }
        *events = list;
    }
    freeReplyObject (reply);
    return rc;
}

//  Builds the apply script's keys and arguments (keys first, `*numkeys` of
//  them) for storing `after` in place of `before`; sets after->version and
//  after->event_count as they will be once stored. 0, or TS_NOT_FOUND (not
//  a ticket id) or TS_ERROR (out of memory, encoding).
static int
s_apply_args (const cb_ticket_t *before, cb_ticket_t *after, const ts_event_t *events,
              size_t n_events, const ts_ops_t *ops, s_args_t *keys, int *numkeys)
{
    int bucket = ticket_id_bucket (before->id);
    if (bucket < 0)
        return TS_NOT_FOUND;
    char tag [CB_BUCKET_TAG_MAX];
    cb_bucket_tag (bucket, tag, sizeof tag);
    int64_t now_ms = after->updated_ms ? after->updated_ms : before->updated_ms;

    //  The index moves this change implies.
    char old_names [16][96], new_names [16][96];
    size_t n_old = s_index_names (before, old_names, 16);
    size_t n_new = s_index_names (after, new_names, 16);
    ts_ops_t *all = ts_ops_new ();
    if (!all)
        return TS_ERROR;
    char key [256];
    int rc = 0;
    for (size_t i = 0; i < n_old; i++)
        if (!s_contains (new_names, n_new, old_names [i])) {
            snprintf (key, sizeof key, "idx:%s:%.95s", tag, old_names [i]);
            rc |= ts_ops_zrem (all, key, before->id);
        }
    for (size_t i = 0; i < n_new; i++)
        if (!s_contains (old_names, n_old, new_names [i])) {
            snprintf (key, sizeof key, "idx:%s:%.95s", tag, new_names [i]);
            rc |= ts_ops_zadd (all, key, after->created_ms, before->id);
        }
    bool was_queued = s_needs_operator (before), queued = s_needs_operator (after);
    if (was_queued != queued) {
        snprintf (key, sizeof key, "opq:%s", tag);
        rc |= queued ? ts_ops_zadd (all, key, now_ms, before->id)
                     : ts_ops_zrem (all, key, before->id);
    }
    for (size_t i = 0; ops && i < ops->count; i++)
        rc |= s_ops_add (all, ops->ops [i].op, ops->ops [i].key, ops->ops [i].a, ops->ops [i].b);
    //  The notification outbox: every event, for the notifier to fan out.
    snprintf (key, sizeof key, "ntfq:%s", tag);
    for (size_t i = 0; i < n_events; i++) {
        char member [CB_TICKET_ID_MAX + 16];
        snprintf (member, sizeof member, "%s#%d", before->id, before->event_count + (int) i + 1);
        rc |= ts_ops_zadd (all, key, now_ms, member);
    }

    //  KEYS: ticket, events, then each distinct key of the operations.
    s_args_t argv = { 0 };
    char tkey [128], evkey [128];
    ts_key (tkey, sizeof tkey, "t", before->id);
    ts_key (evkey, sizeof evkey, "ev", before->id);
    rc |= s_args_str (keys, tkey);
    rc |= s_args_str (keys, evkey);

    after->version = before->version + 1;
    after->event_count = before->event_count + (int32_t) n_events;
    rc |= s_args_int (&argv, before->version);
    rc |= s_pack (&after->base, &argv);
    rc |= s_args_int (&argv, after->state);
    rc |= s_args_int (&argv, (int64_t) n_events);
    for (size_t i = 0; i < n_events; i++) {
        cb_event_t ev;
        Civicbus__V1__Actor actor;
        s_make_event (&ev, before->id, before->event_count + (int32_t) i + 1, &events [i],
                      now_ms, &actor);
        rc |= s_pack (&ev.base, &argv);
    }
    for (size_t i = 0; i < all->count; i++) {
        size_t k = 0;
        while (k < keys->count && strcmp (keys->v [k], all->ops [i].key) != 0)
            k++;
        if (k == keys->count)
            rc |= s_args_str (keys, all->ops [i].key);
        rc |= s_args_str (&argv, all->ops [i].op);
        rc |= s_args_int (&argv, (int64_t) k + 1);
        rc |= s_args_str (&argv, all->ops [i].a);
        rc |= s_args_str (&argv, all->ops [i].b);
    }
    ts_ops_destroy (&all);
    *numkeys = (int) keys->count;
    for (size_t i = 0; i < argv.count && rc == 0; i++)
        rc |= s_args_push (keys, argv.v [i], argv.lens [i]);
    s_args_free (&argv);
    if (rc) {
        s_apply_undone (before, after);
        return TS_ERROR;
    }
    return TS_OK;
}

//  Reads the apply script's reply: TS_OK, TS_CONFLICT, TS_NOT_FOUND,
//  TS_UNAVAILABLE (Redis refused the write), TS_ERROR. On anything but
//  TS_OK, `after` gets back the version and event count of `before`.
static int
s_apply_result (const cb_ticket_t *before, cb_ticket_t *after, const redisReply *reply)
{
    int result = TS_ERROR;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [0]->type == REDIS_REPLY_INTEGER) {
        long long code = reply->element [0]->integer;
        result = code == 1 ? TS_OK : code == 0 ? TS_CONFLICT : TS_NOT_FOUND;
    }
    else {
        if (cb_reply_is_error (reply, "OOM") || cb_reply_is_error (reply, "LOADING")
        ||  cb_reply_is_error (reply, "MISCONF") || cb_reply_is_error (reply, "BUSY"))
            result = TS_UNAVAILABLE;
        cb_log (CB_LOG_ERROR, "unexpected reply from apply script", "ticket", before->id,
                "reply", reply->type == REDIS_REPLY_ERROR ? reply->str : "?", NULL);
    }
    if (result != TS_OK)
        s_apply_undone (before, after);
    return result;
}

int
ticket_store_apply (ticket_store_t *self, const cb_ticket_t *before, cb_ticket_t *after,
                    const ts_event_t *events, size_t n_events, ts_ops_t *ops)
{
    assert (self && before && after);
    s_args_t keys = { 0 };
    int numkeys = 0;
    int rc = s_apply_args (before, after, events, n_events, ops, &keys, &numkeys);
    if (rc != TS_OK) {
        s_args_free (&keys);
        return rc;
    }
    redisReply *reply = cb_redis_eval (self->redis, &self->apply_script, numkeys,
                                       (int) keys.count, (const char **) keys.v, keys.lens);
    s_args_free (&keys);
    if (!reply) {
        s_apply_undone (before, after);
        return s_unavailable (self, "apply");
    }
    int result = s_apply_result (before, after, reply);
    freeReplyObject (reply);
    return result;
}

int
ticket_store_apply_many (ticket_store_t *self, ts_change_t *changes, size_t n)
{
    assert (self && (changes || n == 0));
    if (n == 0)
        return TS_OK;
    s_args_t *args = calloc (n, sizeof *args);
    int *numkeys = calloc (n, sizeof *numkeys);
    bool *again = calloc (n, sizeof *again);
    if (!args || !numkeys || !again) {
        free (args);
        free (numkeys);
        free (again);
        return TS_ERROR;
    }
    //  Build every change first; those that cannot be built are answered now.
    int rc = TS_OK;
    if (!self->apply_script.sha [0] && cb_redis_script_load (self->redis, &self->apply_script))
        rc = s_unavailable (self, "apply (pipelined)");
    for (size_t i = 0; i < n; i++) {
        ts_change_t *c = &changes [i];
        c->result = s_apply_args (c->before, c->after, c->events, c->n_events, c->ops,
                                  &args [i], &numkeys [i]);
        if (c->result != TS_OK)
            continue;
        if (rc == TS_OK
        &&  cb_redis_append_eval (self->redis, &self->apply_script, numkeys [i],
                                  (int) args [i].count, (const char **) args [i].v,
                                  args [i].lens) != 0)
            //  The connection was dropped: nothing of this batch was sent.
            rc = s_unavailable (self, "apply (pipelined)");
    }
    for (size_t i = 0; i < n; i++) {
        ts_change_t *c = &changes [i];
        if (c->result != TS_OK)
            continue;
        redisReply *reply = s_next_reply (self, &rc, "apply (pipelined)");
        if (!reply) {
            //  The outcome of a sent change is unknown: like a single apply
            //  without its reply, the caller reloads and decides again.
            c->result = TS_UNAVAILABLE;
            s_apply_undone (c->before, c->after);
            continue;
        }
        if (cb_reply_is_error (reply, "NOSCRIPT")) {
            //  Redis restarted and lost its scripts: this change did not
            //  run. Run it again on its own once the pipeline is read.
            again [i] = true;
            freeReplyObject (reply);
            continue;
        }
        c->result = s_apply_result (c->before, c->after, reply);
        freeReplyObject (reply);
    }
    for (size_t i = 0; i < n; i++) {
        ts_change_t *c = &changes [i];
        if (again [i])
            c->result = ticket_store_apply (self, c->before, c->after, c->events, c->n_events,
                                            c->ops);
        s_args_free (&args [i]);
    }
    free (args);
    free (numkeys);
    free (again);
    return rc;
}

int
ticket_store_transition (ticket_store_t *self, const char *id, const ticket_input_t *input,
                         const ticket_actor_t *actor, int64_t now_ms, int tries,
                         ts_ops_fn *ops_for, void *ops_arg,
                         ticket_outcome_t *outcome, cb_ticket_t **after_out)
{
    if (after_out)
        *after_out = NULL;
    if (tries < 1)
        tries = 1;
    for (int attempt = 0; attempt < tries; attempt++) {
        cb_ticket_t *before = NULL, *after = NULL;
        int rc = ticket_store_load (self, id, &before);
        if (rc != TS_OK)
            return rc;
        after = ticket_clone (before);
        if (!after) {
            civicbus__v1__ticket__free_unpacked (before, NULL);
            return TS_ERROR;
        }
        if (ticket_apply_event (after, input, actor, now_ms, outcome)) {
            civicbus__v1__ticket__free_unpacked (before, NULL);
            civicbus__v1__ticket__free_unpacked (after, NULL);
            return TS_REFUSED;
        }
        ts_ops_t *ops = ts_ops_new ();
        if (!ops) {
            civicbus__v1__ticket__free_unpacked (before, NULL);
            civicbus__v1__ticket__free_unpacked (after, NULL);
            return TS_ERROR;
        }
        if (ops_for && ops_for (before, after, outcome, ops, ops_arg)) {
            ts_ops_destroy (&ops);
            civicbus__v1__ticket__free_unpacked (before, NULL);
            civicbus__v1__ticket__free_unpacked (after, NULL);
            return TS_ERROR;
        }
        ts_event_t ev = { ticket_event_name (input->kind), actor, outcome->from, outcome->to,
                          input->text, NULL };
        rc = ticket_store_apply (self, before, after, &ev, 1, ops);
        ts_ops_destroy (&ops);
        civicbus__v1__ticket__free_unpacked (before, NULL);
        if (rc == TS_OK && after_out)
            *after_out = after;
        else
            civicbus__v1__ticket__free_unpacked (after, NULL);
        if (rc != TS_CONFLICT)
            return rc;
    }
    return TS_CONFLICT;
}
