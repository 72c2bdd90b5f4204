/*  test_ticket_effects.c — a state-machine outcome's clock effects
    (common/ticket_effects.c) with the shipped policies (deploy/config/
    sla.json) and the built-in 2026 calendar: each stage's clock starts with
    the policy's deadline, stops keep the deadline as finished, an approved
    extension moves the resolve due (clamped to the policy), a suspension
    keeps the remaining time across the National Day holiday, and the timer
    writes added to the change are exactly the ticket's timers. Pure: no
    Redis. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/ticket_effects.h"
#include "civicbus/clock.h"
#include "civicbus/pbutil.h"
#include "civicbus/timers.h"

#define HOUR_MS 3600000LL
#define S_SIGN    CIVICBUS__V1__STAGE__STAGE_SIGN
#define S_RESOLVE CIVICBUS__V1__STAGE__STAGE_RESOLVE
#define S_VERIFY  CIVICBUS__V1__STAGE__STAGE_VERIFY
#define S_ACCEPT  CIVICBUS__V1__STAGE__STAGE_ACCEPT

typedef struct {
    sla_policies_t *sla;
    workcal_t *cal;
} fixture_t;

static const ticket_actor_t s_system = { CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM, "test", NULL };
static const ticket_actor_t s_police = { CIVICBUS__V1__ACTOR_KIND__ACTOR_DEPARTMENT, "police", NULL };
static const ticket_actor_t s_operator = { CIVICBUS__V1__ACTOR_KIND__ACTOR_OPERATOR, "op", NULL };

static int64_t
s_at (const char *iso)
{
    int64_t ms = 0;
    assert_int_equal (cb_time_parse_iso (iso, &ms), 0);
    return ms;
}

static int
s_setup (void **state)
{
    fixture_t *f = calloc (1, sizeof *f);
    const char *root = getenv ("CIVICBUS_SOURCE_DIR");
    char path [512];
    snprintf (path, sizeof path, "%s/deploy/config/sla.json", root ? root : CIVICBUS_SOURCE_DIR);
    FILE *file = fopen (path, "rb");
    if (!f || !file)
        return -1;
    char text [65536];
    size_t len = fread (text, 1, sizeof text, file);
    fclose (file);
    char err [256];
    f->sla = sla_from_json (text, len, err, sizeof err);
    f->cal = workcal_new_default ();
    *state = f;
    return f->sla && f->cal ? 0 : -1;
}

static int
s_teardown (void **state)
{
    fixture_t *f = *state;
    sla_destroy (&f->sla);
    workcal_destroy (&f->cal);
    free (f);
    return 0;
}

//  An ACCEPTED ticket of `policy`, received at `created`, heap-owned.
static cb_ticket_t *
s_ticket (const char *policy, int64_t created)
{
    cb_ticket_t t = CIVICBUS__V1__TICKET__INIT;
    t.id = "320105-20260929-000000065";
    t.category = "urban.facility.public.manhole";
    t.policy = (char *) policy;
    t.state = CIVICBUS__V1__TICKET_STATE__ACCEPTED;
    t.created_ms = created;
    t.version = 2;
    cb_ticket_t *copy = ticket_clone (&t);
    assert_non_null (copy);
    return copy;
}

//  Runs one state-machine event and its effects on a copy of *t (which
//  becomes the result); returns the effects applied.
static uint32_t
s_step (fixture_t *f, cb_ticket_t **t, const ticket_input_t *input, const ticket_actor_t *actor,
        int64_t now, size_t *n_ops, ticket_effects_report_t *report)
{
    cb_ticket_t *after = ticket_clone (*t);
    ticket_outcome_t out;
    assert_int_equal (ticket_apply_event (after, input, actor, now, &out), 0);
    ts_ops_t *ops = ts_ops_new ();
    ticket_effects_arg_t arg = { f->sla, f->cal, now, { 0 } };
    assert_int_equal (ticket_effects_ops_fn (*t, after, &out, ops, &arg), 0);
    if (report)
        *report = arg.report;
    if (n_ops)
        *n_ops = ts_ops_count (ops);
    ts_ops_destroy (&ops);
    civicbus__v1__ticket__free_unpacked (*t, NULL);
    after->version++;
    *t = after;
    return out.effects;
}

static cb_ticket_t *
s_in_progress (fixture_t *f, const char *policy, int64_t dispatched, int64_t signed_at)
{
    cb_ticket_t *t = s_ticket (policy, dispatched);
    ticket_input_t dispatch = { .kind = TEV_DISPATCH, .department = "police" };
    s_step (f, &t, &dispatch, &s_system, dispatched, NULL, NULL);
    ticket_input_t sign = { .kind = TEV_SIGN };
    s_step (f, &t, &sign, &s_police, signed_at, NULL, NULL);
    return t;
}

/* ---- tests ---- */

static void
test_dispatch_starts_the_sign_clock (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_ticket ("standard-5d", s_at ("2026-09-29T09:00+08:00"));
    t->light = CIVICBUS__V1__LIGHT__LIGHT_RED;           //  left from an earlier stage
    int64_t now = s_at ("2026-09-29T10:00+08:00");
    ticket_input_t dispatch = { .kind = TEV_DISPATCH, .department = "police" };
    size_t n_ops = 0;
    ticket_effects_report_t report;
    uint32_t effects = s_step (f, &t, &dispatch, &s_system, now, &n_ops, &report);
    assert_true (effects & TFX_START_SIGN);
    assert_int_equal (report.started, 1u << S_SIGN);
    const Civicbus__V1__Deadline *sign = ticket_effects_deadline (t, S_SIGN);
    assert_non_null (sign);
    //  1 working day (7 h) from Tuesday 10:00: Wednesday 10:00; warn at 80 %
    //  (5.6 h: 2 h before lunch, 3.5 h after, 0.1 h on Wednesday).
    assert_int_equal (sign->started_ms, now);
    assert_int_equal (sign->due_ms, s_at ("2026-09-30T10:00+08:00"));
    assert_int_equal (sign->warn_ms, s_at ("2026-09-30T08:36+08:00"));
    assert_int_equal (sign->finished_ms, 0);
    assert_int_equal (t->light, CIVICBUS__V1__LIGHT__LIGHT_GREEN);
    //  warn, due and the three escalation steps: five ZADDs, nothing else.
    assert_int_equal (n_ops, 5);
    cb_timer_t timers [16];
    assert_int_equal (timers_for_ticket (t, f->sla, f->cal, timers, 16), 5);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_sign_ends_sign_and_starts_resolve (void **state)
{
    fixture_t *f = *state;
    int64_t signed_at = s_at ("2026-09-29T15:00+08:00");
    cb_ticket_t *t = s_ticket ("standard-5d", s_at ("2026-09-29T09:00+08:00"));
    ticket_input_t dispatch = { .kind = TEV_DISPATCH, .department = "police" };
    s_step (f, &t, &dispatch, &s_system, s_at ("2026-09-29T10:00+08:00"), NULL, NULL);
    int64_t sign_due = ticket_effects_deadline (t, S_SIGN)->due_ms;

    ticket_input_t sign = { .kind = TEV_SIGN };
    size_t n_ops = 0;
    ticket_effects_report_t report;
    s_step (f, &t, &sign, &s_police, signed_at, &n_ops, &report);
    assert_int_equal (report.finished, 1u << S_SIGN);
    assert_int_equal (report.started, 1u << S_RESOLVE);
    //  The sign deadline stays, finished on time (KPIs), and no longer runs.
    const Civicbus__V1__Deadline *sign_d = ticket_effects_deadline (t, S_SIGN);
    assert_int_equal (sign_d->finished_ms, signed_at);
    assert_int_equal (sign_d->due_ms, sign_due);
    assert_false (sla_deadline_running (sign_d));
    assert_int_equal (sla_light_at (sign_d, signed_at + 100 * HOUR_MS),
                      CIVICBUS__V1__LIGHT__LIGHT_GREEN);
    //  5 working days from Tuesday 15:00 skip the National Day week:
    //  Wed 30 Sep, Thu 8, Fri 9, Sat 10 (调休), Mon 12 -> due Mon 12 Oct 15:00.
    const Civicbus__V1__Deadline *resolve = ticket_effects_deadline (t, S_RESOLVE);
    assert_int_equal (resolve->due_ms, s_at ("2026-10-12T15:00+08:00"));
    assert_int_equal (working_time_between (signed_at, resolve->due_ms, f->cal), 35 * HOUR_MS);
    //  Sign's six possible members leave tmr and tmrf (12 ZREMs); resolve's
    //  five timers arrive.
    assert_int_equal (n_ops, 12 + 5);
    cb_timer_t timers [16];
    size_t n = timers_for_ticket (t, f->sla, f->cal, timers, 16);
    assert_int_equal (n, 5);
    for (size_t i = 0; i < n; i++)
        assert_int_equal (timers [i].stage, S_RESOLVE);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_resolve_starts_verify_and_verify_stops_all (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_in_progress (f, "urban-4h", s_at ("2026-09-29T09:00+08:00"),
                                    s_at ("2026-09-29T09:30+08:00"));
    ticket_input_t resolve = { .kind = TEV_RESOLVE, .text = "fixed" };
    int64_t resolved_at = s_at ("2026-09-29T11:00+08:00");
    ticket_effects_report_t report;
    s_step (f, &t, &resolve, &s_police, resolved_at, NULL, &report);
    assert_int_equal (report.started, 1u << S_VERIFY);
    assert_int_equal (ticket_effects_deadline (t, S_RESOLVE)->finished_ms, resolved_at);
    //  urban-4h verify: 1 working day.
    assert_int_equal (ticket_effects_deadline (t, S_VERIFY)->due_ms,
                      s_at ("2026-09-30T11:00+08:00"));

    ticket_input_t verify = { .kind = TEV_VERIFY };
    size_t n_ops = 0;
    s_step (f, &t, &verify, &s_operator, s_at ("2026-09-29T16:00+08:00"), &n_ops, &report);
    assert_int_equal (t->state, CIVICBUS__V1__TICKET_STATE__CLOSED);
    assert_int_equal (report.finished, 1u << S_VERIFY);
    assert_int_equal (report.started, 0);
    //  Every verify member goes; nothing is armed on a closed ticket.
    assert_int_equal (n_ops, 12);
    cb_timer_t timers [16];
    assert_int_equal (timers_for_ticket (t, f->sla, f->cal, timers, 16), 0);
    for (size_t i = 0; i < t->n_deadlines; i++)
        assert_true (t->deadlines [i]->finished_ms > 0);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_extension_moves_resolve_due (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_in_progress (f, "standard-5d", s_at ("2026-09-29T09:00+08:00"),
                                    s_at ("2026-09-29T10:00+08:00"));
    int64_t due = ticket_effects_deadline (t, S_RESOLVE)->due_ms;
    t->light = CIVICBUS__V1__LIGHT__LIGHT_YELLOW;
    ticket_input_t ask = { .kind = TEV_REQUEST_EXTENSION, .days = 3, .text = "parts" };
    size_t n_ops = 1;
    s_step (f, &t, &ask, &s_police, s_at ("2026-10-08T10:00+08:00"), &n_ops, NULL);
    assert_int_equal (n_ops, 0);                         //  a request moves nothing
    ticket_input_t approve = { .kind = TEV_APPROVE_EXTENSION };
    ticket_effects_report_t report;
    s_step (f, &t, &approve, &s_operator, s_at ("2026-10-08T11:00+08:00"), &n_ops, &report);
    assert_int_equal (report.extension_days, 3);
    assert_int_equal (report.extension_asked, 0);
    const Civicbus__V1__Deadline *resolve = ticket_effects_deadline (t, S_RESOLVE);
    assert_int_equal (resolve->due_ms, add_working_days (due, 3, f->cal));
    assert_int_equal (working_time_between (due, resolve->due_ms, f->cal), 21 * HOUR_MS);
    assert_int_equal (t->light, CIVICBUS__V1__LIGHT__LIGHT_GREEN);
    //  The old generation's 6 members out of tmr and tmrf, 5 new ones in.
    assert_int_equal (n_ops, 12 + 5);
    civicbus__v1__ticket__free_unpacked (t, NULL);

    //  urban-4h grants at most 1 working day: 3 asked, 1 applied, reported.
    t = s_in_progress (f, "urban-4h", s_at ("2026-09-29T09:00+08:00"),
                       s_at ("2026-09-29T10:00+08:00"));
    due = ticket_effects_deadline (t, S_RESOLVE)->due_ms;
    s_step (f, &t, &ask, &s_police, s_at ("2026-09-29T11:00+08:00"), NULL, NULL);
    s_step (f, &t, &approve, &s_operator, s_at ("2026-09-29T11:30+08:00"), NULL, &report);
    assert_int_equal (report.extension_days, 1);
    assert_int_equal (report.extension_asked, 3);
    assert_int_equal (ticket_effects_deadline (t, S_RESOLVE)->due_ms,
                      add_working_days (due, 1, f->cal));
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_suspension_keeps_the_remaining_time (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_in_progress (f, "standard-5d", s_at ("2026-09-28T09:00+08:00"),
                                    s_at ("2026-09-28T10:00+08:00"));
    int64_t due = ticket_effects_deadline (t, S_RESOLVE)->due_ms;
    ticket_input_t ask = { .kind = TEV_REQUEST_SUSPENSION, .text = "waiting for the owner" };
    int64_t paused_at = s_at ("2026-09-30T16:00+08:00");
    s_step (f, &t, &ask, &s_police, paused_at - HOUR_MS, NULL, NULL);
    ticket_input_t approve = { .kind = TEV_APPROVE_SUSPENSION };
    size_t n_ops = 0;
    ticket_effects_report_t report;
    s_step (f, &t, &approve, &s_operator, paused_at, &n_ops, &report);
    assert_int_equal (t->state, CIVICBUS__V1__TICKET_STATE__SUSPENDED);
    assert_int_equal (report.paused, 1u << S_RESOLVE);
    const Civicbus__V1__Deadline *resolve = ticket_effects_deadline (t, S_RESOLVE);
    int64_t left = working_time_between (paused_at, due, f->cal);
    assert_true (sla_deadline_paused (resolve));
    assert_int_equal (resolve->remaining_ms, left);
    assert_int_equal (n_ops, 12);                        //  every timer cancelled, none armed
    cb_timer_t timers [16];
    assert_int_equal (timers_for_ticket (t, f->sla, f->cal, timers, 16), 0);

    //  Resumed after the holiday week: the same working time is left.
    int64_t resumed_at = s_at ("2026-10-09T09:00+08:00");
    ticket_input_t resume = { .kind = TEV_RESUME };
    s_step (f, &t, &resume, &s_operator, resumed_at, &n_ops, &report);
    assert_int_equal (report.resumed, 1u << S_RESOLVE);
    resolve = ticket_effects_deadline (t, S_RESOLVE);
    assert_true (sla_deadline_running (resolve));
    assert_int_equal (working_time_between (resumed_at, resolve->due_ms, f->cal), left);
    assert_true (resolve->due_ms > due);
    assert_int_equal (resolve->started_ms, s_at ("2026-09-28T10:00+08:00"));
    assert_int_equal (n_ops, 5);
    assert_int_equal (t->light, sla_light_at (resolve, resumed_at));
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_reopen_restarts_resolve (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_in_progress (f, "standard-5d", s_at ("2026-09-28T09:00+08:00"),
                                    s_at ("2026-09-28T10:00+08:00"));
    ticket_input_t resolve = { .kind = TEV_RESOLVE, .text = "done" };
    s_step (f, &t, &resolve, &s_police, s_at ("2026-09-28T11:00+08:00"), NULL, NULL);
    ticket_input_t reopen = { .kind = TEV_REOPEN, .text = "still broken" };
    int64_t reopened = s_at ("2026-09-29T09:00+08:00");
    ticket_effects_report_t report;
    s_step (f, &t, &reopen, &s_operator, reopened, NULL, &report);
    assert_int_equal (report.finished, 1u << S_VERIFY);
    assert_int_equal (report.started, 1u << S_RESOLVE);
    const Civicbus__V1__Deadline *d = ticket_effects_deadline (t, S_RESOLVE);
    assert_int_equal (d->started_ms, reopened);
    assert_int_equal (d->finished_ms, 0);
    //  One entry per stage: the new resolve clock replaced the old one.
    size_t resolves = 0;
    for (size_t i = 0; i < t->n_deadlines; i++)
        resolves += t->deadlines [i]->stage == S_RESOLVE;
    assert_int_equal (resolves, 1);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_accept_clock_counts_from_reception (void **state)
{
    fixture_t *f = *state;
    int64_t received = s_at ("2026-09-29T09:00+08:00");
    cb_ticket_t *before = s_ticket ("", received);
    before->state = CIVICBUS__V1__TICKET_STATE__RECEIVED;
    cb_ticket_t *after = ticket_clone (before);
    ts_ops_t *ops = ts_ops_new ();
    ticket_effects_report_t report;
    assert_int_equal (ticket_effects_apply (before, after, TICKET_EFFECTS_START_ACCEPT, f->sla,
                                            f->cal, received + 60000, ops, &report), 0);
    const Civicbus__V1__Deadline *accept = ticket_effects_deadline (after, S_ACCEPT);
    assert_non_null (accept);
    //  No policy yet: the default (standard-5d), 2 working hours from reception.
    assert_int_equal (accept->started_ms, received);
    assert_int_equal (accept->due_ms, s_at ("2026-09-29T11:00+08:00"));
    assert_int_equal (ts_ops_count (ops), 5);
    //  Held again: the running clock is not restarted.
    cb_ticket_t *again = ticket_clone (after);
    ts_ops_t *ops2 = ts_ops_new ();
    assert_int_equal (ticket_effects_apply (after, again, TICKET_EFFECTS_START_ACCEPT, f->sla,
                                            f->cal, received + HOUR_MS, ops2, &report), 0);
    assert_int_equal (report.started, 0);
    assert_int_equal (ts_ops_count (ops2), 0);
    assert_int_equal (ticket_effects_deadline (again, S_ACCEPT)->due_ms, accept->due_ms);
    ts_ops_destroy (&ops);
    ts_ops_destroy (&ops2);
    civicbus__v1__ticket__free_unpacked (before, NULL);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    civicbus__v1__ticket__free_unpacked (again, NULL);
}

static void
test_without_policies (void **state)
{
    fixture_t *f = *state;
    //  Armed under policies, then the policies are gone: starts do nothing,
    //  a stop still ends the clock and cancels what was armed.
    cb_ticket_t *t = s_in_progress (f, "standard-5d", s_at ("2026-09-29T09:00+08:00"),
                                    s_at ("2026-09-29T10:00+08:00"));
    cb_ticket_t *after = ticket_clone (t);
    ticket_outcome_t out;
    ticket_input_t resolve = { .kind = TEV_RESOLVE, .text = "done" };
    assert_int_equal (ticket_apply_event (after, &resolve, &s_police, s_at ("2026-09-29T11:00+08:00"),
                                          &out), 0);
    ts_ops_t *ops = ts_ops_new ();
    ticket_effects_report_t report;
    assert_int_equal (ticket_effects_apply (t, after, out.effects, NULL, f->cal,
                                            s_at ("2026-09-29T11:00+08:00"), ops, &report), 0);
    assert_true (report.no_policies);
    assert_int_equal (report.started, 0);
    assert_int_equal (report.finished, 1u << S_RESOLVE);
    assert_null (ticket_effects_deadline (after, S_VERIFY));
    assert_int_equal (ts_ops_count (ops), 12);
    ts_ops_destroy (&ops);

    //  No id: refused.
    pb_set_string (&after->id, NULL);
    ops = ts_ops_new ();
    assert_int_equal (ticket_effects_apply (t, after, TFX_START_VERIFY, f->sla, f->cal, 0, ops,
                                            NULL), -1);
    ts_ops_destroy (&ops);
    civicbus__v1__ticket__free_unpacked (after, NULL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static void
test_notes_change_no_clock (void **state)
{
    fixture_t *f = *state;
    cb_ticket_t *t = s_in_progress (f, "standard-5d", s_at ("2026-09-29T09:00+08:00"),
                                    s_at ("2026-09-29T10:00+08:00"));
    t->light = CIVICBUS__V1__LIGHT__LIGHT_YELLOW;
    ticket_input_t progress = { .kind = TEV_PROGRESS, .text = "on site" };
    size_t n_ops = 1;
    ticket_effects_report_t report;
    s_step (f, &t, &progress, &s_police, s_at ("2026-09-30T10:00+08:00"), &n_ops, &report);
    assert_int_equal (n_ops, 0);
    assert_int_equal (report.started | report.finished, 0);
    assert_int_equal (t->light, CIVICBUS__V1__LIGHT__LIGHT_YELLOW);
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_dispatch_starts_the_sign_clock),
        cmocka_unit_test (test_sign_ends_sign_and_starts_resolve),
        cmocka_unit_test (test_resolve_starts_verify_and_verify_stops_all),
        cmocka_unit_test (test_extension_moves_resolve_due),
        cmocka_unit_test (test_suspension_keeps_the_remaining_time),
        cmocka_unit_test (test_reopen_restarts_resolve),
        cmocka_unit_test (test_accept_clock_counts_from_reception),
        cmocka_unit_test (test_without_policies),
        cmocka_unit_test (test_notes_change_no_clock),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
