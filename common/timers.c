/*  timers.c — time-limit timers in Redis sorted sets (see timers.h for the
    layout and the exactly-once argument). */

#include "civicbus/timers.h"
#include "civicbus/log.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  KEYS: tmr, tmrf. ARGV: now, visible until, max. Moves due members to
//  tmrf and returns {member, due, member, due, ...}.
static const char s_claim_lua [] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[3])\n"
    "if #due == 0 then return due end\n"
    "local members = {}\n"
    "for i = 1, #due, 2 do\n"
    "  redis.call('ZADD', KEYS[2], ARGV[2], due[i])\n"
    "  members[#members + 1] = due[i]\n"
    "end\n"
    "redis.call('ZREM', KEYS[1], unpack(members))\n"
    "return due\n";

//  KEYS: tmr, tmrf. ARGV: now, max. Puts expired in-flight members back.
static const char s_requeue_lua [] =
    "local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n"
    "if #gone == 0 then return 0 end\n"
    "for i = 1, #gone do redis.call('ZADD', KEYS[1], 'NX', ARGV[1], gone[i]) end\n"
    "redis.call('ZREM', KEYS[2], unpack(gone))\n"
    "return #gone\n";

/* ---- private ---- */

static const char *
s_kind_text (const cb_timer_t *timer, char *buf, size_t cap)
{
    if (timer->kind == TIMER_WARN)
        return "warn";
    if (timer->kind == TIMER_DUE)
        return "due";
    snprintf (buf, cap, "escalate-%d", timer->level);
    return buf;
}

static void
s_keys (int bucket, char *tmr, char *tmrf, size_t cap)
{
    ts_bucket_key (tmr, cap, "tmr", bucket);
    ts_bucket_key (tmrf, cap, "tmrf", bucket);
}

//  Every member a running deadline may have armed: warn, due, escalate-1..4.
static size_t
s_possible (const char *id, const Civicbus__V1__Deadline *deadline, cb_timer_t *out)
{
    size_t n = 0;
    for (int kind = TIMER_WARN; kind <= TIMER_ESCALATE; kind++)
        for (int level = kind == TIMER_ESCALATE ? 1 : 0;
             level <= (kind == TIMER_ESCALATE ? TICKET_ESCALATION_MAX : 0); level++) {
            cb_timer_t *timer = &out [n++];
            memset (timer, 0, sizeof *timer);
            snprintf (timer->ticket_id, sizeof timer->ticket_id, "%s", id);
            timer->stage = deadline->stage;
            timer->kind = (timer_kind_t) kind;
            timer->level = level;
            timer->generation = deadline->due_ms;
        }
    return n;
}

static bool
s_same (const cb_timer_t *a, const cb_timer_t *b)
{
    return a->stage == b->stage && a->kind == b->kind && a->level == b->level
        && a->generation == b->generation && strcmp (a->ticket_id, b->ticket_id) == 0;
}

static bool
s_contains (const cb_timer_t *set, size_t n, const cb_timer_t *timer)
{
    for (size_t i = 0; i < n; i++)
        if (s_same (&set [i], timer))
            return true;
    return false;
}

//  True when `ticket` has a running deadline equal in stage and due to `d`.
static bool
s_has_deadline (const cb_ticket_t *ticket, const Civicbus__V1__Deadline *d)
{
    for (size_t i = 0; i < ticket->n_deadlines; i++)
        if (ticket->deadlines [i]->stage == d->stage && ticket->deadlines [i]->due_ms == d->due_ms
        &&  sla_deadline_running (ticket->deadlines [i]))
            return true;
    return false;
}

//  Up to 4 deadlines (one per stage) times TIMERS_PER_DEADLINE; a ticket
//  with more deadline entries than stages is not one we wrote.
#define S_TICKET_TIMERS_MAX (4 * TIMERS_PER_DEADLINE)

//  Reads one claim reply into out; drops members that do not parse.
static size_t
s_read_claimed (cb_redis_t *redis, int bucket, const redisReply *reply, cb_timer_t *out,
                size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i + 1 < reply->elements && n < cap; i += 2) {
        const redisReply *member = reply->element [i], *score = reply->element [i + 1];
        if (member->type != REDIS_REPLY_STRING)
            continue;
        if (timer_parse (member->str, &out [n]) == 0 && ticket_id_bucket (out [n].ticket_id) == bucket) {
            out [n].at_ms = score->type == REDIS_REPLY_STRING ? strtoll (score->str, NULL, 10) : 0;
            n++;
            continue;
        }
        //  Not ours to act on, and it would come back forever: drop it.
        char tmr [32], tmrf [32];
        s_keys (bucket, tmr, tmrf, sizeof tmr);
        redisReply *gone = cb_redis_command (redis, "ZREM %s %b", tmrf, member->str, member->len);
        freeReplyObject (gone);
        cb_log (CB_LOG_WARN, "dropped a timer member that does not parse", "member",
                member->str, NULL);
    }
    return n;
}

/* ---- public: members ---- */

int
timer_member (const cb_timer_t *timer, char *buf, size_t cap)
{
    assert (timer && buf);
    const char *stage = sla_stage_name (timer->stage);
    if (!stage || timer->ticket_id [0] == 0 || strchr (timer->ticket_id, '|')
    ||  (timer->kind == TIMER_ESCALATE && (timer->level < 1 || timer->level > TICKET_ESCALATION_MAX)))
        return -1;
    char kind [24];
    int len = snprintf (buf, cap, "%s|%s|%s|%" PRId64, timer->ticket_id, stage,
                        s_kind_text (timer, kind, sizeof kind), timer->generation);
    return len > 0 && (size_t) len < cap ? 0 : -1;
}

int
timer_parse (const char *member, cb_timer_t *timer)
{
    assert (timer);
    memset (timer, 0, sizeof *timer);
    if (!member)
        return -1;
    const char *bar1 = strchr (member, '|');
    const char *bar2 = bar1 ? strchr (bar1 + 1, '|') : NULL;
    const char *bar3 = bar2 ? strchr (bar2 + 1, '|') : NULL;
    if (!bar3 || strchr (bar3 + 1, '|'))
        return -1;
    size_t id_len = (size_t) (bar1 - member);
    if (id_len == 0 || id_len >= sizeof timer->ticket_id)
        return -1;
    memcpy (timer->ticket_id, member, id_len);
    char stage [16], kind [24];
    size_t stage_len = (size_t) (bar2 - bar1 - 1), kind_len = (size_t) (bar3 - bar2 - 1);
    if (stage_len >= sizeof stage || kind_len >= sizeof kind)
        return -1;
    memcpy (stage, bar1 + 1, stage_len);
    stage [stage_len] = 0;
    memcpy (kind, bar2 + 1, kind_len);
    kind [kind_len] = 0;
    int stage_value = sla_stage_from_name (stage);
    if (stage_value < 0)
        return -1;
    timer->stage = (Civicbus__V1__Stage) stage_value;
    if (strcmp (kind, "warn") == 0)
        timer->kind = TIMER_WARN;
    else
    if (strcmp (kind, "due") == 0)
        timer->kind = TIMER_DUE;
    else
    if (strncmp (kind, "escalate-", 9) == 0 && kind [9] >= '1'
    &&  kind [9] <= '0' + TICKET_ESCALATION_MAX && kind [10] == 0) {
        timer->kind = TIMER_ESCALATE;
        timer->level = kind [9] - '0';
    }
    else
        return -1;
    char *end = NULL;
    const char *gen = bar3 + 1;
    if (*gen < '0' || *gen > '9')
        return -1;
    long long value = strtoll (gen, &end, 10);
    if (*end != 0 || value <= 0)
        return -1;
    timer->generation = value;
    return 0;
}

/* ---- public: which timers a ticket has ---- */

size_t
timers_for_ticket (const cb_ticket_t *ticket, const sla_policies_t *policies,
                   const workcal_t *cal, cb_timer_t *out, size_t cap)
{
    assert (ticket && policies && cal);
    if (ticket_state_is_final (ticket->state) || !ticket->id || !*ticket->id)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < ticket->n_deadlines; i++) {
        const Civicbus__V1__Deadline *deadline = ticket->deadlines [i];
        if (!sla_deadline_running (deadline) || !sla_stage_name (deadline->stage)
        ||  deadline->due_ms == INT64_MAX)
            continue;
        cb_timer_t timer = { .stage = deadline->stage, .generation = deadline->due_ms };
        snprintf (timer.ticket_id, sizeof timer.ticket_id, "%s", ticket->id);
        if (deadline->warn_ms < deadline->due_ms) {
            timer.kind = TIMER_WARN;
            timer.at_ms = deadline->warn_ms;
            if (n < cap)
                out [n] = timer;
            n++;
        }
        timer.kind = TIMER_DUE;
        timer.at_ms = deadline->due_ms;
        if (n < cap)
            out [n] = timer;
        n++;
        int64_t times [SLA_MAX_STEPS];
        const sla_step_t *steps = NULL;
        size_t count = sla_step_times (policies, ticket->policy, ticket->urgency, deadline, cal,
                                       times, SLA_MAX_STEPS, &steps);
        for (size_t s = 0; s < count; s++) {
            if (times [s] == INT64_MAX)
                continue;
            timer.kind = TIMER_ESCALATE;
            timer.level = steps [s].level;
            timer.at_ms = times [s];
            if (n < cap)
                out [n] = timer;
            n++;
        }
        timer.level = 0;
    }
    return n;
}

int
timers_schedule_ops (ts_ops_t *ops, const cb_ticket_t *before, const cb_ticket_t *after,
                     const sla_policies_t *policies, const workcal_t *cal)
{
    assert (ops && after && policies && cal);
    int bucket = ticket_id_bucket (after->id);
    if (bucket < 0)
        return -1;
    char tmr [32], tmrf [32], member [TIMER_MEMBER_MAX];
    s_keys (bucket, tmr, tmrf, sizeof tmr);

    cb_timer_t want [S_TICKET_TIMERS_MAX], had [S_TICKET_TIMERS_MAX];
    size_t n_want = timers_for_ticket (after, policies, cal, want, S_TICKET_TIMERS_MAX);
    size_t n_had = before ? timers_for_ticket (before, policies, cal, had, S_TICKET_TIMERS_MAX)
                          : 0;
    if (n_want > S_TICKET_TIMERS_MAX)
        n_want = S_TICKET_TIMERS_MAX;
    if (n_had > S_TICKET_TIMERS_MAX)
        n_had = S_TICKET_TIMERS_MAX;
    int rc = 0;
    //  Removals: everything before's running deadlines may have armed,
    //  except on a deadline after keeps unchanged (same stage and due): its
    //  timers stay as armed, even if the policy changed since.
    for (size_t i = 0; before && i < before->n_deadlines; i++) {
        const Civicbus__V1__Deadline *deadline = before->deadlines [i];
        if (!sla_deadline_running (deadline) || !sla_stage_name (deadline->stage)
        ||  (!ticket_state_is_final (after->state) && s_has_deadline (after, deadline)))
            continue;
        cb_timer_t possible [TIMERS_PER_DEADLINE];
        size_t n = s_possible (before->id, deadline, possible);
        for (size_t p = 0; p < n; p++) {
            if (s_contains (want, n_want, &possible [p]) || timer_member (&possible [p], member,
                                                                          sizeof member))
                continue;
            rc |= ts_ops_zrem (ops, tmr, member);
            rc |= ts_ops_zrem (ops, tmrf, member);
        }
    }
    //  Additions: what after has and before did not.
    for (size_t i = 0; i < n_want; i++) {
        if (s_contains (had, n_had, &want [i]) || timer_member (&want [i], member, sizeof member))
            continue;
        rc |= ts_ops_zadd (ops, tmr, want [i].at_ms, member);
    }
    return rc ? -1 : 0;
}

int
timers_cancel_ops (ts_ops_t *ops, const cb_ticket_t *before)
{
    assert (ops && before);
    int bucket = ticket_id_bucket (before->id);
    if (bucket < 0)
        return -1;
    char tmr [32], tmrf [32], member [TIMER_MEMBER_MAX];
    s_keys (bucket, tmr, tmrf, sizeof tmr);
    int rc = 0;
    for (size_t i = 0; i < before->n_deadlines; i++) {
        const Civicbus__V1__Deadline *deadline = before->deadlines [i];
        if (!sla_deadline_running (deadline) || !sla_stage_name (deadline->stage))
            continue;
        cb_timer_t possible [TIMERS_PER_DEADLINE];
        size_t n = s_possible (before->id, deadline, possible);
        for (size_t p = 0; p < n; p++) {
            if (timer_member (&possible [p], member, sizeof member))
                continue;
            rc |= ts_ops_zrem (ops, tmr, member);
            rc |= ts_ops_zrem (ops, tmrf, member);
        }
    }
    return rc ? -1 : 0;
}

int
timers_complete_ops (ts_ops_t *ops, const cb_timer_t *timer)
{
    assert (ops && timer);
    int bucket = ticket_id_bucket (timer->ticket_id);
    char tmr [32], tmrf [32], member [TIMER_MEMBER_MAX];
    if (bucket < 0 || timer_member (timer, member, sizeof member))
        return -1;
    s_keys (bucket, tmr, tmrf, sizeof tmr);
    int rc = ts_ops_zrem (ops, tmrf, member);
    rc |= ts_ops_zrem (ops, tmr, member);
    return rc ? -1 : 0;
}

timer_verdict_t
timers_verdict (const cb_ticket_t *ticket, const cb_timer_t *timer)
{
    assert (timer);
    if (!ticket || ticket_state_is_final (ticket->state)
    ||  !ticket->id || strcmp (ticket->id, timer->ticket_id) != 0)
        return TIMER_STALE;
    const Civicbus__V1__Deadline *current = NULL;
    for (size_t i = 0; i < ticket->n_deadlines; i++)
        if (ticket->deadlines [i]->stage == timer->stage)
            current = ticket->deadlines [i];
    if (!sla_deadline_running (current) || current->due_ms != timer->generation)
        return TIMER_STALE;
    switch (timer->kind) {
        case TIMER_WARN:
            return ticket->light == CIVICBUS__V1__LIGHT__LIGHT_GREEN ? TIMER_APPLY : TIMER_DONE;
        case TIMER_DUE:
            return ticket->light != CIVICBUS__V1__LIGHT__LIGHT_RED ? TIMER_APPLY : TIMER_DONE;
        case TIMER_ESCALATE:
            return ticket->escalation_level < timer->level ? TIMER_APPLY : TIMER_DONE;
    }
    return TIMER_STALE;
}

//  Marks due[b] for each bucket with a timer due at `now` (text, ms).
//  One pipelined round trip; -1 when Redis failed.
static int
s_due_buckets (cb_redis_t *redis, const char *now, bool due [CB_BUCKETS])
{
    for (int b = 0; b < CB_BUCKETS; b++) {
        char tmr [32], tmrf [32];
        s_keys (b, tmr, tmrf, sizeof tmr);
        if (cb_redis_append (redis, "ZRANGEBYSCORE %s -inf %s LIMIT 0 1", tmr, now))
            return -1;
    }
    int rc = 0;
    for (int b = 0; b < CB_BUCKETS; b++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return -1;          //  the connection is gone: the rest with it
        if (reply->type == REDIS_REPLY_ARRAY)
            due [b] = reply->elements > 0;
        else
            rc = -1;
        freeReplyObject (reply);
    }
    return rc;
}

/* ---- public: claiming ---- */

int
timers_claim (cb_redis_t *redis, int bucket, int64_t now_ms, int64_t visibility_ms,
              int max, cb_timer_t *out, size_t *count)
{
    assert (redis && out && count);
    assert (bucket >= 0 && bucket < CB_BUCKETS);
    assert (max >= 1 && max <= TIMERS_BATCH_MAX);
    *count = 0;
    cb_script_t script = CB_SCRIPT (s_claim_lua);
    char tmr [32], tmrf [32], now [24], until [24], limit [16];
    s_keys (bucket, tmr, tmrf, sizeof tmr);
    snprintf (now, sizeof now, "%" PRId64, now_ms);
    snprintf (until, sizeof until, "%" PRId64, now_ms + visibility_ms);
    snprintf (limit, sizeof limit, "%d", max);
    const char *argv [] = { tmr, tmrf, now, until, limit };
    redisReply *reply = cb_redis_eval (redis, &script, 2, 5, argv, NULL);
    if (!reply)
        return -1;
    int rc = -1;
    if (reply->type == REDIS_REPLY_ARRAY) {
        *count = s_read_claimed (redis, bucket, reply, out, (size_t) max);
        rc = 0;
    }
    freeReplyObject (reply);
    return rc;
}

int
timers_claim_all (cb_redis_t *redis, int64_t now_ms, int64_t visibility_ms, int max_per_bucket,
                  cb_timer_t **timers, size_t *count)
{
    assert (redis && timers && count);
    assert (max_per_bucket >= 1 && max_per_bucket <= TIMERS_BATCH_MAX);
    *timers = NULL;
    *count = 0;
    char now [24], until [24], limit [16];
    snprintf (now, sizeof now, "%" PRId64, now_ms);
    snprintf (until, sizeof until, "%" PRId64, now_ms + visibility_ms);
    snprintf (limit, sizeof limit, "%d", max_per_bucket);
    //  Which buckets have anything due: one plain read each (a script call
    //  costs Redis ten times as much, and most ticks find nothing).
    bool due [CB_BUCKETS] = { false };
    if (s_due_buckets (redis, now, due) < 0)
        return -1;
    int n_due = 0;
    for (int b = 0; b < CB_BUCKETS; b++)
        n_due += due [b];
    if (n_due == 0)
        return 0;
    //  The connection knows the script after its first load (redis.h).
    cb_script_t script = CB_SCRIPT (s_claim_lua);
    for (int b = 0; b < CB_BUCKETS; b++) {
        if (!due [b])
            continue;
        char tmr [32], tmrf [32];
        s_keys (b, tmr, tmrf, sizeof tmr);
        const char *argv [] = { tmr, tmrf, now, until, limit };
        if (cb_redis_append_eval (redis, &script, 2, 5, argv, NULL))
            return -1;
    }
    //  Read every reply before acting on any, so the pipeline stays in step.
    redisReply *replies [CB_BUCKETS] = { 0 };
    int rc = 0;
    size_t total = 0;
    for (int b = 0; b < CB_BUCKETS; b++) {
        if (!due [b])
            continue;
        replies [b] = cb_redis_get_reply (redis);
        if (!replies [b]) {
            rc = -1;
            break;
        }
        if (replies [b]->type == REDIS_REPLY_ARRAY)
            total += replies [b]->elements / 2;
    }
    cb_timer_t *out = rc == 0 && total ? malloc (total * sizeof *out) : NULL;
    if (rc == 0 && total && !out)
        rc = -1;
    size_t n = 0;
    for (int b = 0; b < CB_BUCKETS && rc == 0; b++) {
        redisReply *reply = replies [b];
        if (!reply)
            continue;           //  nothing was due there
        if (reply->type == REDIS_REPLY_ARRAY) {
            if (reply->elements > 0)
                n += s_read_claimed (redis, b, reply, out + n, total - n);
        }
        else
        if (cb_reply_is_error (reply, "NOSCRIPT")) {
            //  Redis restarted mid-pipeline: this bucket claimed nothing.
            //  Claim it now on its own (cb_redis_eval reloads the script).
            cb_timer_t extra [64];
            size_t got = 0;
            int max = max_per_bucket < 64 ? max_per_bucket : 64;
            if (timers_claim (redis, b, now_ms, visibility_ms, max, extra, &got) == 0 && got) {
                cb_timer_t *grown = realloc (out, (n + got + (total - n)) * sizeof *out);
                if (!grown)
                    rc = -1;
                else {
                    out = grown;
                    memcpy (out + n, extra, got * sizeof *extra);
                    n += got;
                    total += got;
                }
            }
        }
        else
            rc = -1;
    }
    for (int b = 0; b < CB_BUCKETS; b++)
        if (replies [b])
            freeReplyObject (replies [b]);
    if (rc || n == 0) {
        free (out);
        return rc;
    }
    *timers = out;
    *count = n;
    return 0;
}

int
timers_requeue_expired (cb_redis_t *redis, int64_t now_ms, size_t *moved)
{
    assert (redis);
    if (moved)
        *moved = 0;
    cb_script_t script = CB_SCRIPT (s_requeue_lua);
    char now [24], limit [16];
    snprintf (now, sizeof now, "%" PRId64, now_ms);
    snprintf (limit, sizeof limit, "%d", TIMERS_BATCH_MAX);
    for (int b = 0; b < CB_BUCKETS; b++) {
        char tmr [32], tmrf [32];
        s_keys (b, tmr, tmrf, sizeof tmr);
        const char *argv [] = { tmr, tmrf, now, limit };
        if (cb_redis_append_eval (redis, &script, 2, 4, argv, NULL))
            return -1;
    }
    int rc = 0;
    for (int b = 0; b < CB_BUCKETS; b++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return -1;
        if (reply->type == REDIS_REPLY_INTEGER) {
            if (moved)
                *moved += (size_t) reply->integer;
        }
        else
            rc = -1;        //  NOSCRIPT after a restart: the next sweep does it
        freeReplyObject (reply);
    }
    return rc;
}

int
timers_discard (cb_redis_t *redis, const cb_timer_t *timer)
{
    assert (redis && timer);
    int bucket = ticket_id_bucket (timer->ticket_id);
    char tmr [32], tmrf [32], member [TIMER_MEMBER_MAX];
    if (bucket < 0 || timer_member (timer, member, sizeof member))
        return -1;
    s_keys (bucket, tmr, tmrf, sizeof tmr);
    //  Two keys of one slot: a MULTI keeps them together.
    if (cb_redis_append (redis, "MULTI")
    ||  cb_redis_append (redis, "ZREM %s %s", tmrf, member)
    ||  cb_redis_append (redis, "ZREM %s %s", tmr, member)
    ||  cb_redis_append (redis, "EXEC"))
        return -1;
    int rc = 0;
    for (int i = 0; i < 4; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return -1;
        if (reply->type == REDIS_REPLY_ERROR)
            rc = -1;
        freeReplyObject (reply);
    }
    return rc;
}

int
timers_count (cb_redis_t *redis, size_t *armed, size_t *in_flight)
{
    assert (redis);
    for (int b = 0; b < CB_BUCKETS; b++) {
        char tmr [32], tmrf [32];
        s_keys (b, tmr, tmrf, sizeof tmr);
        if (cb_redis_append (redis, "ZCARD %s", tmr) || cb_redis_append (redis, "ZCARD %s", tmrf))
            return -1;
    }
    size_t counts [2] = { 0, 0 };
    int rc = 0;
    for (int i = 0; i < 2 * CB_BUCKETS; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return -1;
        if (reply->type == REDIS_REPLY_INTEGER)
            counts [i % 2] += (size_t) reply->integer;
        else
            rc = -1;
        freeReplyObject (reply);
    }
    if (armed)
        *armed = counts [0];
    if (in_flight)
        *in_flight = counts [1];
    return rc;
}
