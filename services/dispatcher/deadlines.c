/*  deadlines.c — the dispatcher's time-limit timers (DESIGN.md, "Time
    limits"): every CIVICBUS_TIMER_MS while active, lapsed claims go back
    to tmr, due timers are claimed (timers_claim_all: a pipelined probe of
    every bucket, then one Lua script per bucket with timers due), and each claimed timer's effect is stored with its
    completion in ONE compare-and-set (timers.h has the exactly-once
    argument). Claimed timers are settled FIRE_BATCH at a time in two
    round trips: their tickets loaded in one pipeline, then every effect's
    compare-and-set in another (a timer whose ticket changed meanwhile, or
    a second timer of one ticket, is then settled on its own):

        warn        light yellow, a history-only "warning" event (the
                    notifier reminds the department, 催办)
        due         light red, a history-only "overdue" event (the notifier
                    alerts the supervisors of the ticket's current level)
        escalate-N  TEV_ESCALATE through the state machine (actor SYSTEM)
                    until escalation_level is N, one "escalate" event per
                    level with the step's card (督办: yellow, red) and the
                    level whose supervisors hear of it (payload "level":
                    grid 1, community 2, street 3, district 4; notify_rules)

    A timer whose verdict is DONE or STALE is discarded. A turn claims at
    most CIVICBUS_TIMER_BATCH per bucket (64 buckets), so doorbells and
    replies wait at most one bounded batch; a full batch brings the next
    turn forward at once. Lost lease mid-batch: the rest of the batch stays
    claimed and comes back to whoever holds the lease after
    CIVICBUS_TIMER_VISIBILITY_MS. */

#include "dispatcher.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/ticket_effects.h"
#include "civicbus/timers.h"

#include <assert.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFLICT_TRIES  5
#define PAYLOAD_MAX     512
#define FIRE_BATCH      128     //  timers settled per pipelined load and store

typedef enum { S_FIRED, S_DROPPED, S_LEFT } s_result_t;

/* ---- private ---- */

//  The ladder rung a step's "notify" names: whose supervisors hear of it.
static int
s_notify_level (const char *notify)
{
    static const char *const names [] = { "grid", "community", "street", "district" };
    for (int i = 0; notify && i < 4; i++)
        if (strcmp (notify, names [i]) == 0)
            return i + 1;
    return 0;
}

//  The escalation step that brings the ticket to `level`, or NULL.
static const sla_step_t *
s_step_for (const citydata_snapshot_t *snap, const cb_ticket_t *ticket,
            Civicbus__V1__Stage stage, int level)
{
    if (!snap->policies)
        return NULL;
    const sla_stage_t *rules = sla_stage (snap->policies, ticket->policy, stage, ticket->urgency);
    for (size_t i = 0; rules && i < rules->step_count; i++)
        if (rules->steps [i].level == level)
            return &rules->steps [i];
    return NULL;
}

static void
s_payload (char *buf, const cb_ticket_t *ticket, const cb_timer_t *timer, int64_t now_ms,
           int escalation_level, const sla_step_t *step)
{
    char due [40] = "";
    const Civicbus__V1__Deadline *d = ticket_effects_deadline (ticket, timer->stage);
    if (d && d->due_ms > 0)
        cb_time_format_iso (d->due_ms, due, sizeof due);
    json_t *root = json_pack ("{s:s, s:s, s:I}", "stage", sla_stage_name (timer->stage),
                              "due", due, "late_ms", (json_int_t) (now_ms - timer->at_ms));
    if (root && escalation_level > 0) {
        json_object_set_new (root, "escalation_level", json_integer (escalation_level));
        if (step) {
            json_object_set_new (root, "card", json_string (step->card));
            json_object_set_new (root, "notify", json_string (step->notify));
            int level = s_notify_level (step->notify);
            if (level)
                json_object_set_new (root, "level", json_integer (level));
        }
    }
    char *text = root ? json_dumps (root, JSON_COMPACT) : NULL;
    snprintf (buf, PAYLOAD_MAX, "%s", text && strlen (text) < PAYLOAD_MAX ? text : "{}");
    free (text);
    json_decref (root);
}

//  A claimed timer's effect as a change of its ticket: built from the
//  loaded ticket (s_prepare), stored alone (s_fire) or with the rest of
//  its batch (s_fire_batch). Never moved once prepared: the events point
//  into it.
typedef struct {
    const cb_timer_t *timer;
    cb_ticket_t *before, *after;
    ts_ops_t *ops;
    ticket_actor_t actor;
    ts_event_t events [TICKET_ESCALATION_MAX];
    char payloads [TICKET_ESCALATION_MAX][PAYLOAD_MAX];
    size_t n;
    int64_t now_ms;
} s_change_t;

static void
s_change_release (s_change_t *c)
{
    ts_ops_destroy (&c->ops);
    if (c->after)
        civicbus__v1__ticket__free_unpacked (c->after, NULL);
    if (c->before)
        civicbus__v1__ticket__free_unpacked (c->before, NULL);
    c->before = c->after = NULL;
}

//  Builds the effect of `timer`, whose verdict on `before` was APPLY, and
//  its completion: TS_OK, TS_REFUSED (the state machine said no: drop the
//  timer) or TS_ERROR. Takes `before`; s_change_release frees it.
static int
s_prepare (self_t *self, s_change_t *c, const cb_timer_t *timer, cb_ticket_t *before,
           const citydata_snapshot_t *snap)
{
    *c = (s_change_t) { .timer = timer, .before = before,
                        .actor = { CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM, self->id, "timers" } };
    int64_t now = cb_clock_now_ms ();
    c->now_ms = now;
    c->after = ticket_clone (before);
    c->ops = ts_ops_new ();
    if (!c->after || !c->ops || timers_complete_ops (c->ops, timer))
        return TS_ERROR;
    cb_ticket_t *after = c->after;
    if (timer->kind != TIMER_ESCALATE) {
        bool warn = timer->kind == TIMER_WARN;
        after->light = warn ? CIVICBUS__V1__LIGHT__LIGHT_YELLOW : CIVICBUS__V1__LIGHT__LIGHT_RED;
        after->updated_ms = now;
        s_payload (c->payloads [0], after, timer, now, 0, NULL);
        c->events [c->n++] = (ts_event_t) { warn ? "warning" : "overdue", &c->actor,
                                            before->state, before->state, NULL, c->payloads [0] };
        return TS_OK;
    }
    //  Escalate: one state-machine step per missing level, so each rung's
    //  supervisors get their own event even when a step was late.
    while (after->escalation_level < timer->level && c->n < TICKET_ESCALATION_MAX) {
        ticket_input_t input = { .kind = TEV_ESCALATE };
        ticket_outcome_t out;
        if (ticket_apply_event (after, &input, &c->actor, now, &out)) {
            cb_log (CB_LOG_WARN, "escalation refused by the state machine: timer dropped",
                    "ticket", timer->ticket_id, "code", out.code, "reason", out.reason, NULL);
            return TS_REFUSED;
        }
        int level = after->escalation_level;
        s_payload (c->payloads [c->n], after, timer, now, level,
                   s_step_for (snap, after, timer->stage, level));
        c->events [c->n] = (ts_event_t) { ticket_event_name (TEV_ESCALATE), &c->actor, out.from,
                                          out.to, NULL, c->payloads [c->n] };
        c->n++;
        if (level >= TICKET_ESCALATION_MAX)
            break;
    }
    return TS_OK;
}

//  A stored effect: published, and its lateness kept for the stats.
static void
s_fired (self_t *self, s_change_t *c)
{
    dispatcher_publish (self, c->after, c->events, c->n);
    int64_t late = c->now_ms - c->timer->at_ms;
    if (late > self->stats.timers_late_max_ms)
        self->stats.timers_late_max_ms = late;
}

static s_result_t
s_discard (self_t *self, const cb_timer_t *timer)
{
    return timers_discard (self->redis, timer) == 0 ? S_DROPPED : S_LEFT;
}

//  Stores one claimed timer's effect (or discards it), reloading on a
//  version conflict: the path for a timer its batch could not settle.
static s_result_t
s_fire (self_t *self, const cb_timer_t *timer, const citydata_snapshot_t *snap)
{
    for (int attempt = 0; attempt < CONFLICT_TRIES; attempt++) {
        if (!dispatcher_may_act (self))
            return S_LEFT;
        cb_ticket_t *before = NULL;
        int rc = ticket_store_load (self->store, timer->ticket_id, &before);
        if (rc == TS_UNAVAILABLE)
            return S_LEFT;
        timer_verdict_t verdict = rc == TS_OK ? timers_verdict (before, timer) : TIMER_STALE;
        if (verdict != TIMER_APPLY) {
            if (before)
                civicbus__v1__ticket__free_unpacked (before, NULL);
            return s_discard (self, timer);
        }
        s_change_t c;
        rc = s_prepare (self, &c, timer, before, snap);
        if (rc == TS_OK)
            rc = ticket_store_apply (self->store, c.before, c.after, c.events, c.n, c.ops);
        if (rc == TS_OK)
            s_fired (self, &c);
        s_change_release (&c);
        if (rc == TS_OK)
            return S_FIRED;
        if (rc == TS_CONFLICT) {
            self->stats.conflicts++;
            continue;
        }
        if (rc == TS_REFUSED || rc == TS_NOT_FOUND)
            return s_discard (self, timer);
        return S_LEFT;
    }
    //  Changing all the time: leave it claimed; it comes back after the
    //  visibility timeout and is decided again then.
    return S_LEFT;
}

//  Settles a batch of claimed timers with two round trips in all: their
//  tickets loaded in one pipeline, then every effect stored in one
//  pipeline (each still its own compare-and-set; timers.h's exactly-once
//  argument holds per timer). What the batch cannot settle (a second timer
//  of a ticket already in the batch, a version conflict) goes through
//  s_fire on its own. results [i] is timers [i]'s outcome.
static void
s_fire_batch (self_t *self, const cb_timer_t *timers, size_t n,
              const citydata_snapshot_t *snap, s_result_t *results)
{
    const char *ids [FIRE_BATCH];
    cb_ticket_t *tickets [FIRE_BATCH];
    int loaded [FIRE_BATCH];
    size_t slot [FIRE_BATCH];           //  timer -> its change, or FIRE_BATCH
    ts_change_t batch [FIRE_BATCH];
    assert (n <= FIRE_BATCH);
    s_change_t *changes = calloc (n, sizeof *changes);
    if (!changes) {
        for (size_t i = 0; i < n; i++)
            results [i] = S_LEFT;
        return;
    }
    for (size_t i = 0; i < n; i++)
        ids [i] = timers [i].ticket_id;
    ticket_store_load_many (self->store, ids, n, tickets, loaded);

    size_t count = 0;
    bool serial [FIRE_BATCH] = { false };
    for (size_t i = 0; i < n; i++) {
        slot [i] = FIRE_BATCH;
        results [i] = S_LEFT;
        if (loaded [i] == TS_UNAVAILABLE)
            continue;
        timer_verdict_t verdict = loaded [i] == TS_OK ? timers_verdict (tickets [i], &timers [i])
                                                      : TIMER_STALE;
        bool repeated = false;
        for (size_t j = 0; j < i && !repeated; j++)
            repeated = slot [j] != FIRE_BATCH && strcmp (ids [j], ids [i]) == 0;
        if (verdict != TIMER_APPLY || repeated) {
            if (tickets [i])
                civicbus__v1__ticket__free_unpacked (tickets [i], NULL);
            if (repeated)
                serial [i] = true;  //  decided again after the first is stored
            else
                results [i] = s_discard (self, &timers [i]);
            continue;
        }
        s_change_t *c = &changes [count];
        int rc = s_prepare (self, c, &timers [i], tickets [i], snap);
        if (rc != TS_OK) {
            s_change_release (c);
            results [i] = rc == TS_REFUSED ? s_discard (self, &timers [i]) : S_LEFT;
            continue;
        }
        batch [count] = (ts_change_t) { c->before, c->after, c->events, c->n, c->ops, TS_ERROR };
        slot [i] = count++;
    }
    if (count && ticket_store_apply_many (self->store, batch, count) == TS_ERROR)
        for (size_t k = 0; k < count; k++)
            batch [k].result = TS_ERROR;
    for (size_t i = 0; i < n; i++) {
        if (slot [i] == FIRE_BATCH)
            continue;
        s_change_t *c = &changes [slot [i]];
        int rc = batch [slot [i]].result;
        if (rc == TS_OK) {
            s_fired (self, c);
            results [i] = S_FIRED;
        }
        else
        if (rc == TS_CONFLICT) {
            self->stats.conflicts++;
            serial [i] = true;
        }
        else
        if (rc == TS_REFUSED || rc == TS_NOT_FOUND)
            results [i] = s_discard (self, &timers [i]);
        s_change_release (c);
    }
    free (changes);
    for (size_t i = 0; i < n; i++)
        if (serial [i])
            results [i] = s_fire (self, &timers [i], snap);
}

/* ---- public ---- */

int
deadlines_apply_effects (self_t *self, const cb_ticket_t *before, cb_ticket_t *after,
                         uint32_t effects, int64_t now_ms, ts_ops_t *ops)
{
    citydata_snapshot_t *snap = citydata_acquire (self->citydata);
    ticket_effects_report_t report;
    int rc = ticket_effects_apply (before, after, effects, snap->policies, snap->calendar,
                                   now_ms, ops, &report);
    citydata_release (self->citydata, &snap);
    if (report.extension_asked) {
        char asked [16], granted [16];
        snprintf (asked, sizeof asked, "%d", report.extension_asked);
        snprintf (granted, sizeof granted, "%d", report.extension_days);
        cb_log (CB_LOG_WARN, "extension longer than the policy grants: clamped",
                "ticket", after->id, "asked_days", asked, "granted_days", granted, NULL);
    }
    if (rc)
        cb_log (CB_LOG_ERROR, "could not carry out the clock effects", "ticket", after->id, NULL);
    return rc;
}

void
deadlines_tick (self_t *self)
{
    int64_t started = cb_clock_mono_ms ();
    self->next_timers_ms = started + self->timer_ms;
    int64_t now = cb_clock_now_ms ();
    //  Lapsed claims come back a visibility timeout late at the earliest,
    //  so looking for them a few times per timeout is enough (each look is
    //  a script per bucket).
    size_t requeued = 0;
    if (started >= self->next_requeue_ms) {
        if (timers_requeue_expired (self->redis, now, &requeued))
            return;
        self->next_requeue_ms = started + self->timer_visibility_ms / 4;
    }
    cb_timer_t *timers = NULL;
    size_t count = 0;
    if (timers_claim_all (self->redis, now, self->timer_visibility_ms, self->timer_batch,
                          &timers, &count))
        return;
    if (count == 0 && requeued == 0) {
        free (timers);
        return;
    }
    citydata_snapshot_t *snap = citydata_acquire (self->citydata);
    size_t fired = 0, dropped = 0, left = 0;
    int64_t late_max = 0, late_sum = 0;
    for (size_t start = 0; start < count; start += FIRE_BATCH) {
        size_t n = count - start < FIRE_BATCH ? count - start : FIRE_BATCH;
        if (!dispatcher_may_act (self)) {
            left += count - start;
            break;
        }
        s_result_t results [FIRE_BATCH];
        s_fire_batch (self, timers + start, n, snap, results);
        int64_t now_ms = cb_clock_now_ms ();
        for (size_t i = 0; i < n; i++) {
            if (results [i] == S_FIRED) {
                fired++;
                int64_t late = now_ms - timers [start + i].at_ms;
                late_sum += late;
                if (late > late_max)
                    late_max = late;
            }
            else
            if (results [i] == S_DROPPED)
                dropped++;
            else
                left++;
        }
    }
    citydata_release (self->citydata, &snap);
    free (timers);
    self->stats.timers_fired += fired;
    self->stats.timers_dropped += dropped;
    //  A full batch from some bucket: more may be due; come back at once.
    if (count >= (size_t) self->timer_batch)
        self->next_timers_ms = cb_clock_mono_ms ();
    char n_fired [24], n_dropped [24], n_left [24], n_requeued [24], max [24], avg [24], took [24];
    snprintf (n_fired, sizeof n_fired, "%zu", fired);
    snprintf (n_dropped, sizeof n_dropped, "%zu", dropped);
    snprintf (n_left, sizeof n_left, "%zu", left);
    snprintf (n_requeued, sizeof n_requeued, "%zu", requeued);
    snprintf (max, sizeof max, "%lld", (long long) late_max);
    snprintf (avg, sizeof avg, "%lld", (long long) (fired ? late_sum / (int64_t) fired : 0));
    snprintf (took, sizeof took, "%lld", (long long) (cb_clock_mono_ms () - started));
    cb_log (CB_LOG_INFO, "timers", "fired", n_fired, "discarded", n_dropped, "left", n_left,
            "requeued", n_requeued, "late_max_ms", max, "late_avg_ms", avg, "took_ms", took, NULL);
}
