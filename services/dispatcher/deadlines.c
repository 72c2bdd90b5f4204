/*  deadlines.c — the dispatcher's time-limit timers (DESIGN.md, "Time
    limits"): every CIVICBUS_TIMER_MS while active, lapsed claims go back
    to tmr, due timers are claimed (timers_claim_all: one Lua script per
    bucket, pipelined), and each claimed timer's effect is stored with its
    completion in ONE compare-and-set (timers.h has the exactly-once
    argument):

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

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFLICT_TRIES  5
#define PAYLOAD_MAX     512

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

//  Stores one claimed timer's effect (or discards it).
static s_result_t
s_fire (self_t *self, const cb_timer_t *timer, const citydata_snapshot_t *snap)
{
    ticket_actor_t actor = { CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM, self->id, "timers" };
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
            return timers_discard (self->redis, timer) == 0 ? S_DROPPED : S_LEFT;
        }
        int64_t now = cb_clock_now_ms ();
        cb_ticket_t *after = ticket_clone (before);
        ts_ops_t *ops = ts_ops_new ();
        ts_event_t events [TICKET_ESCALATION_MAX];
        char payloads [TICKET_ESCALATION_MAX][PAYLOAD_MAX];
        size_t n = 0;
        rc = after && ops && timers_complete_ops (ops, timer) == 0 ? TS_OK : TS_ERROR;
        if (rc == TS_OK && timer->kind != TIMER_ESCALATE) {
            bool warn = timer->kind == TIMER_WARN;
            after->light = warn ? CIVICBUS__V1__LIGHT__LIGHT_YELLOW : CIVICBUS__V1__LIGHT__LIGHT_RED;
            after->updated_ms = now;
            s_payload (payloads [0], after, timer, now, 0, NULL);
            events [n++] = (ts_event_t) { warn ? "warning" : "overdue", &actor, before->state,
                                          before->state, NULL, payloads [0] };
        }
        //  Escalate: one state-machine step per missing level, so each rung's
        //  supervisors get their own event even when a step was late.
        while (rc == TS_OK && timer->kind == TIMER_ESCALATE
           &&  after->escalation_level < timer->level && n < TICKET_ESCALATION_MAX) {
            ticket_input_t input = { .kind = TEV_ESCALATE };
            ticket_outcome_t out;
            if (ticket_apply_event (after, &input, &actor, now, &out)) {
                cb_log (CB_LOG_WARN, "escalation refused by the state machine: timer dropped",
                        "ticket", timer->ticket_id, "code", out.code, "reason", out.reason, NULL);
                rc = TS_REFUSED;
                break;
            }
            int level = after->escalation_level;
            s_payload (payloads [n], after, timer, now, level,
                       s_step_for (snap, after, timer->stage, level));
            events [n] = (ts_event_t) { ticket_event_name (TEV_ESCALATE), &actor, out.from, out.to,
                                        NULL, payloads [n] };
            n++;
            if (level >= TICKET_ESCALATION_MAX)
                break;
        }
        if (rc == TS_OK)
            rc = ticket_store_apply (self->store, before, after, events, n, ops);
        if (rc == TS_OK) {
            dispatcher_publish (self, after, events, n);
            int64_t late = now - timer->at_ms;
            if (late > self->stats.timers_late_max_ms)
                self->stats.timers_late_max_ms = late;
        }
        ts_ops_destroy (&ops);
        if (after)
            civicbus__v1__ticket__free_unpacked (after, NULL);
        civicbus__v1__ticket__free_unpacked (before, NULL);
        if (rc == TS_OK)
            return S_FIRED;
        if (rc == TS_CONFLICT) {
            self->stats.conflicts++;
            continue;
        }
        if (rc == TS_REFUSED || rc == TS_NOT_FOUND)
            return timers_discard (self->redis, timer) == 0 ? S_DROPPED : S_LEFT;
        return S_LEFT;
    }
    //  Changing all the time: leave it claimed; it comes back after the
    //  visibility timeout and is decided again then.
    return S_LEFT;
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
    size_t requeued = 0;
    if (timers_requeue_expired (self->redis, now, &requeued))
        return;
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
    for (size_t i = 0; i < count; i++) {
        if (!self->active) {
            left += count - i;
            break;
        }
        s_result_t result = s_fire (self, &timers [i], snap);
        if (result == S_FIRED) {
            fired++;
            int64_t late = cb_clock_now_ms () - timers [i].at_ms;
            late_sum += late;
            if (late > late_max)
                late_max = late;
        }
        else
        if (result == S_DROPPED)
            dropped++;
        else
            left++;
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
