/*  ticket_effects.c — a state-machine outcome's clock effects on the ticket
    and its change (see ticket_effects.h): one copy of the rules, so the
    dispatcher and the console cannot drift apart on when a clock runs. */

#include "civicbus/ticket_effects.h"
#include "civicbus/timers.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static Civicbus__V1__Deadline *
s_find (const cb_ticket_t *ticket, Civicbus__V1__Stage stage)
{
    Civicbus__V1__Deadline *found = NULL;
    for (size_t i = 0; i < ticket->n_deadlines; i++)
        if (ticket->deadlines [i] && ticket->deadlines [i]->stage == stage)
            found = ticket->deadlines [i];
    return found;
}

//  The stage's entry, appended when the ticket has none. NULL out of memory.
static Civicbus__V1__Deadline *
s_entry (cb_ticket_t *ticket, Civicbus__V1__Stage stage)
{
    Civicbus__V1__Deadline *entry = s_find (ticket, stage);
    if (entry)
        return entry;
    //  Unpacked messages are freed with free(): allocate with malloc.
    entry = malloc (sizeof *entry);
    Civicbus__V1__Deadline **grown = entry
        ? realloc (ticket->deadlines, (ticket->n_deadlines + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free (entry);
        return NULL;
    }
    civicbus__v1__deadline__init (entry);
    entry->stage = stage;
    ticket->deadlines = grown;
    ticket->deadlines [ticket->n_deadlines++] = entry;
    return entry;
}

static uint32_t
s_bit (Civicbus__V1__Stage stage)
{
    return 1u << (unsigned) stage;
}

static int
s_start (cb_ticket_t *after, Civicbus__V1__Stage stage, int64_t start_ms,
         const sla_policies_t *policies, const workcal_t *cal, ticket_effects_report_t *report)
{
    if (!policies) {
        report->no_policies = true;
        return 0;
    }
    Civicbus__V1__Deadline fresh = CIVICBUS__V1__DEADLINE__INIT;
    int rc = sla_stage_deadline (policies, after->policy, stage, after->urgency, start_ms, cal,
                                 &fresh);
    if (rc == SLA_ERROR)
        return 0;               //  not a timed stage: nothing to start
    Civicbus__V1__Deadline *entry = s_entry (after, stage);
    if (!entry)
        return -1;
    entry->started_ms = start_ms;
    entry->due_ms = fresh.due_ms;
    entry->warn_ms = fresh.warn_ms;
    entry->remaining_ms = 0;
    entry->finished_ms = 0;
    after->light = CIVICBUS__V1__LIGHT__LIGHT_GREEN;
    report->started |= s_bit (stage);
    return 0;
}

/* ---- public ---- */

int
ticket_effects_apply (const cb_ticket_t *before, cb_ticket_t *after, uint32_t effects,
                      const sla_policies_t *policies, const workcal_t *cal, int64_t now_ms,
                      ts_ops_t *ops, ticket_effects_report_t *report)
{
    assert (after && cal && ops);
    ticket_effects_report_t scratch;
    if (!report)
        report = &scratch;
    memset (report, 0, sizeof *report);
    if (!after->id || !*after->id)
        return -1;

    if (effects & TFX_STOP_TIMERS)
        for (size_t i = 0; i < after->n_deadlines; i++) {
            Civicbus__V1__Deadline *d = after->deadlines [i];
            if (d && d->finished_ms == 0
            &&  (d->started_ms > 0 || sla_deadline_running (d) || sla_deadline_paused (d))) {
                d->finished_ms = now_ms;
                report->finished |= s_bit (d->stage);
            }
        }

    if (effects & TICKET_EFFECTS_START_ACCEPT) {
        const Civicbus__V1__Deadline *accept = s_find (after, CIVICBUS__V1__STAGE__STAGE_ACCEPT);
        if (!accept) {
            int64_t received = after->created_ms > 0 ? after->created_ms : now_ms;
            if (s_start (after, CIVICBUS__V1__STAGE__STAGE_ACCEPT, received, policies, cal, report))
                return -1;
        }
    }
    static const struct { uint32_t effect; Civicbus__V1__Stage stage; } starts [] = {
        { TFX_START_SIGN, CIVICBUS__V1__STAGE__STAGE_SIGN },
        { TFX_START_RESOLVE, CIVICBUS__V1__STAGE__STAGE_RESOLVE },
        { TFX_START_VERIFY, CIVICBUS__V1__STAGE__STAGE_VERIFY },
    };
    for (size_t i = 0; i < sizeof starts / sizeof starts [0]; i++)
        if ((effects & starts [i].effect)
        &&  s_start (after, starts [i].stage, now_ms, policies, cal, report))
            return -1;

    if ((effects & (TFX_PAUSE_CLOCK | TFX_RESUME_CLOCK | TFX_EXTEND_RESOLVE)) && !policies)
        report->no_policies = true;
    if ((effects & TFX_PAUSE_CLOCK) && policies)
        for (size_t i = 0; i < after->n_deadlines; i++) {
            Civicbus__V1__Deadline *d = after->deadlines [i];
            if (d && sla_deadline_running (d) && d->due_ms != INT64_MAX
            &&  sla_pause (policies, after->policy, after->urgency, d, now_ms, cal) == SLA_OK)
                report->paused |= s_bit (d->stage);
        }
    if ((effects & TFX_RESUME_CLOCK) && policies)
        for (size_t i = 0; i < after->n_deadlines; i++) {
            Civicbus__V1__Deadline *d = after->deadlines [i];
            if (d && sla_deadline_paused (d)
            &&  sla_resume (policies, after->policy, after->urgency, d, now_ms, cal) != SLA_ERROR) {
                report->resumed |= s_bit (d->stage);
                after->light = sla_light_at (d, now_ms);
            }
        }
    if ((effects & TFX_EXTEND_RESOLVE) && policies) {
        Civicbus__V1__Deadline *resolve = s_find (after, CIVICBUS__V1__STAGE__STAGE_RESOLVE);
        int days = after->extension_days;
        int most = sla_extension_max_days (policies, after->policy);
        if (days > most) {
            report->extension_asked = days;
            days = most;
        }
        if (days >= 1 && resolve && (sla_deadline_running (resolve) || sla_deadline_paused (resolve))
        &&  sla_extend (resolve, days, cal) != SLA_ERROR) {
            report->extension_days = days;
            if (sla_deadline_running (resolve))
                after->light = CIVICBUS__V1__LIGHT__LIGHT_GREEN;
        }
    }

    if (policies)
        return timers_schedule_ops (ops, before, after, policies, cal);
    //  No policies: nothing was armed by us since they went, but what an
    //  earlier set armed must not fire on a stopped or paused clock.
    if (before && (effects & (TFX_STOP_TIMERS | TFX_PAUSE_CLOCK)))
        return timers_cancel_ops (ops, before);
    return 0;
}

int
ticket_effects_ops_fn (const cb_ticket_t *before, cb_ticket_t *after,
                       const ticket_outcome_t *outcome, ts_ops_t *ops, void *arg)
{
    ticket_effects_arg_t *self = arg;
    assert (self && outcome);
    return ticket_effects_apply (before, after, outcome->effects, self->policies, self->cal,
                                 self->now_ms, ops, &self->report);
}

const Civicbus__V1__Deadline *
ticket_effects_deadline (const cb_ticket_t *ticket, Civicbus__V1__Stage stage)
{
    assert (ticket);
    return s_find (ticket, stage);
}
