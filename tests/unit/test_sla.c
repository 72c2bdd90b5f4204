/*  test_sla.c — time-limit policies (common/sla.c).

    Deadlines hand-computed on the real 2026 mainland calendar (National Day
    and Mid-Autumn, Spring Festival with its adjusted Saturdays, New Year on
    both sides of the listed year, starts outside office hours), calendar
    against working limits, urgent overrides, the default policy, extension,
    pause/resume (hand cases and a seeded property: the due instant moves by
    exactly the paused time of the limit's kind), lights, escalation steps,
    JSON errors that name policy and field, and the shipped
    deploy/config/sla.json against the catalogue's policy names. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "civicbus/sla.h"
#include "civicbus/clock.h"

#define HOUR_MS   3600000LL
#define MINUTE_MS 60000LL
#define DAY_MS    86400000LL

#define SIGN    CIVICBUS__V1__STAGE__STAGE_SIGN
#define RESOLVE CIVICBUS__V1__STAGE__STAGE_RESOLVE
#define VERIFY  CIVICBUS__V1__STAGE__STAGE_VERIFY
#define ACCEPT  CIVICBUS__V1__STAGE__STAGE_ACCEPT
#define NORMAL  CIVICBUS__V1__URGENCY__URGENCY_NORMAL
#define URGENT  CIVICBUS__V1__URGENCY__URGENCY_URGENT
#define GREEN   CIVICBUS__V1__LIGHT__LIGHT_GREEN
#define YELLOW  CIVICBUS__V1__LIGHT__LIGHT_YELLOW
#define RED     CIVICBUS__V1__LIGHT__LIGHT_RED

typedef struct {
    workcal_t *cal;
    sla_policies_t *sla;
} fixture_t;

/* ---- helpers ---- */

static int64_t
s_at (const char *iso)
{
    int64_t ms = 0;
    assert_int_equal (cb_time_parse_iso (iso, &ms), 0);
    return ms;
}

#define assert_iso(ms, expected) do {                                       \
        char iso_buf_ [40];                                                 \
        assert_string_equal (cb_time_format_iso ((ms), iso_buf_, sizeof iso_buf_), (expected)); \
    } while (0)

static char *
s_read (const char *relative, size_t *len)
{
    char path [4096];
    const char *roots [] = { getenv ("CIVICBUS_SOURCE_DIR"),
#ifdef CIVICBUS_SOURCE_DIR
                             CIVICBUS_SOURCE_DIR,
#endif
                             ".", "..", "../..", "../../.." };
    for (size_t i = 0; i < sizeof roots / sizeof roots [0]; i++) {
        if (!roots [i] || !*roots [i])
            continue;
        snprintf (path, sizeof path, "%s/%s", roots [i], relative);
        FILE *file = fopen (path, "rb");
        if (!file)
            continue;
        fseek (file, 0, SEEK_END);
        long size = ftell (file);
        fseek (file, 0, SEEK_SET);
        char *text = malloc ((size_t) size + 1);
        assert_non_null (text);
        assert_int_equal (fread (text, 1, (size_t) size, file), (size_t) size);
        text [size] = 0;
        fclose (file);
        *len = (size_t) size;
        return text;
    }
    fail_msg ("cannot find %s (set CIVICBUS_SOURCE_DIR)", relative);
    return NULL;
}

static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    fx->cal = workcal_new_default ();
    size_t len = 0;
    char *text = s_read ("deploy/config/sla.json", &len);
    char err [256] = "";
    fx->sla = sla_from_json (text, len, err, sizeof err);
    free (text);
    if (!fx->sla)
        fprintf (stderr, "deploy/config/sla.json: %s\n", err);
    *state = fx;
    return fx->cal && fx->sla ? 0 : -1;
}

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    workcal_destroy (&fx->cal);
    sla_destroy (&fx->sla);
    sla_destroy (&fx->sla);        //  safe twice
    free (fx);
    return 0;
}

//  The deadline of a stage from an ISO start; asserts SLA_OK.
static Civicbus__V1__Deadline
s_deadline (fixture_t *fx, const char *policy, Civicbus__V1__Stage stage,
            Civicbus__V1__Urgency urgency, const char *start)
{
    Civicbus__V1__Deadline d = CIVICBUS__V1__DEADLINE__INIT;
    assert_int_equal (sla_stage_deadline (fx->sla, policy, stage, urgency, s_at (start),
                                          fx->cal, &d), SLA_OK);
    assert_int_equal (d.stage, stage);
    assert_int_equal (d.started_ms, s_at (start));
    assert_int_equal (d.remaining_ms, 0);
    return d;
}

#define assert_deadline(fx, policy, stage, urgency, start, due, warn) do {  \
        Civicbus__V1__Deadline d_ = s_deadline ((fx), (policy), (stage), (urgency), (start)); \
        assert_iso (d_.due_ms, (due));                                      \
        assert_iso (d_.warn_ms, (warn));                                    \
    } while (0)

/* ---- deadlines on the 2026 calendar ---- */

static void
test_working_day_limits (void **state)
{
    fixture_t *fx = *state;
    //  Sign within 1 working day (7 h) from Wednesday 16:00 before National
    //  Day: 1.5 h that day, Oct 1-7 off, 3.5 h Thursday morning, 2 h after
    //  lunch. The warning at 80% (5 h 36 min) falls 36 min after lunch.
    assert_deadline (fx, "standard-5d", SIGN, NORMAL, "2026-09-30T16:00+08:00",
                     "2026-10-08T16:00:00+08:00", "2026-10-08T14:36:00+08:00");
    //  Resolve in 5 working days (35 h) from the adjusted working Saturday
    //  Oct 10 at 09:00 (Sunday off): the same clock time on the fifth
    //  working day after, Friday; the warning at 28 h on Thursday.
    assert_deadline (fx, "standard-5d", RESOLVE, NORMAL, "2026-10-10T09:00+08:00",
                     "2026-10-16T09:00:00+08:00", "2026-10-15T09:00:00+08:00");
    //  15 working days across the Spring Festival (Feb 15-23 off, Saturdays
    //  Feb 14 and Feb 28 worked).
    assert_deadline (fx, "complaint-15d", RESOLVE, NORMAL, "2026-02-13T10:00+08:00",
                     "2026-03-12T10:00:00+08:00", "2026-03-09T10:00:00+08:00");
    //  Received on a Sunday evening: counting starts Monday 08:30, so one
    //  working day ends at Monday's close.
    assert_deadline (fx, "consult-2d", SIGN, NORMAL, "2026-03-08T20:00+08:00",
                     "2026-03-09T17:30:00+08:00", "2026-03-09T16:06:00+08:00");
    //  Consultations: 2 working days.
    assert_deadline (fx, "consult-2d", RESOLVE, NORMAL, "2026-03-09T08:30+08:00",
                     "2026-03-10T17:30:00+08:00", "2026-03-10T14:42:00+08:00");
    //  Help: 10 working days from Friday before Qingming (Saturday to
    //  Monday Apr 4-6 off): two weeks and one day; warning at 56 h.
    assert_deadline (fx, "help-10d", RESOLVE, NORMAL, "2026-04-03T15:00+08:00",
                     "2026-04-20T15:00:00+08:00", "2026-04-16T15:00:00+08:00");
}

static void
test_working_hour_limits (void **state)
{
    fixture_t *fx = *state;
    //  Exposed rubbish: 4 working hours from 11:00 -> 1 h before lunch, 3 h
    //  after: 17:00; the warning at 3 h 12 min: 16:12.
    assert_deadline (fx, "urban-4h", RESOLVE, NORMAL, "2026-03-10T11:00+08:00",
                     "2026-03-10T17:00:00+08:00", "2026-03-10T16:12:00+08:00");
    //  Ends exactly at a closing time: 4 h from 13:30 in the lunch break ->
    //  3.5 h after lunch, 0.5 h next morning.
    assert_deadline (fx, "urban-4h", RESOLVE, NORMAL, "2026-03-10T13:30+08:00",
                     "2026-03-11T09:00:00+08:00", "2026-03-10T17:12:00+08:00");
    //  Half a working hour to accept, from 11:45: 15 min before lunch, 15
    //  after; warning at 24 min.
    assert_deadline (fx, "urban-4h", ACCEPT, NORMAL, "2026-03-10T11:45+08:00",
                     "2026-03-10T14:15:00+08:00", "2026-03-10T14:09:00+08:00");
    //  New Year 2026: Dec 31 2025 (not a listed year: a plain Wednesday)
    //  has 30 min left, Jan 1-3 are off, Sunday Jan 4 is worked: the limit
    //  ends exactly at its 12:00 closing.
    assert_deadline (fx, "urban-4h", RESOLVE, NORMAL, "2025-12-31T17:00+08:00",
                     "2026-01-04T12:00:00+08:00", "2026-01-04T11:12:00+08:00");
    //  Into 2027, a year the calendar does not list: Jan 1 2027 is a plain
    //  Friday (workcal.h), so 2.5 h are counted there.
    assert_deadline (fx, "urban-4h", RESOLVE, NORMAL, "2026-12-31T16:00+08:00",
                     "2027-01-01T11:00:00+08:00", "2027-01-01T10:12:00+08:00");
}

static void
test_calendar_limits_and_urgent (void **state)
{
    fixture_t *fx = *state;
    //  Calendar time ignores the holiday and the night: urgent-2h resolves
    //  within 2 hours on National Day; its warn_share is 0.5.
    assert_deadline (fx, "urgent-2h", RESOLVE, NORMAL, "2026-10-01T23:30+08:00",
                     "2026-10-02T01:30:00+08:00", "2026-10-02T00:30:00+08:00");
    //  ... and the verify stage overrides warn_share to 0.8 of 24 h.
    assert_deadline (fx, "urgent-2h", VERIFY, NORMAL, "2026-10-01T10:00+08:00",
                     "2026-10-02T10:00:00+08:00", "2026-10-02T05:12:00+08:00");
    //  Urgent tickets on urgent-2h: 15 min to sign, warning at half.
    assert_deadline (fx, "urgent-2h", SIGN, URGENT, "2026-10-01T10:00+08:00",
                     "2026-10-01T10:15:00+08:00", "2026-10-01T10:07:30+08:00");
    //  Urgent on a working-time policy: 2 calendar hours to sign instead of
    //  a working day, at night on a holiday.
    assert_deadline (fx, "standard-5d", SIGN, URGENT, "2026-10-03T23:00+08:00",
                     "2026-10-04T01:00:00+08:00", "2026-10-04T00:36:00+08:00");
    //  An urgent stage the policy does not override keeps the normal one
    //  (urban-4h has no urgent accept).
    assert_deadline (fx, "urban-4h", ACCEPT, URGENT, "2026-03-10T11:45+08:00",
                     "2026-03-10T14:15:00+08:00", "2026-03-10T14:09:00+08:00");
    //  An urgent stage given in working days stays working time: 3 working
    //  days (21 h) from before National Day end on the worked Saturday.
    assert_deadline (fx, "complaint-15d", RESOLVE, URGENT, "2026-09-30T16:00+08:00",
                     "2026-10-10T16:00:00+08:00", "2026-10-10T09:48:00+08:00");

    //  The views say where each came from.
    const sla_stage_t *stage = sla_stage (fx->sla, "standard-5d", SIGN, URGENT);
    assert_non_null (stage);
    assert_true (stage->has_limit);
    assert_false (stage->limit.working);
    assert_string_equal (stage->limit.unit, "hours");
    assert_true (stage->warn_share == 0.8);
    assert_int_equal (stage->step_count, 3);        //  the file's urgent ladder
    stage = sla_stage (fx->sla, "standard-5d", RESOLVE, URGENT);
    assert_int_equal (stage->step_count, 3);
    assert_string_equal (stage->steps [1].after.unit, "hours");   //  its own ladder
    assert_null (sla_stage (fx->sla, "standard-5d", CIVICBUS__V1__STAGE__STAGE_UNSPECIFIED, NORMAL));
    assert_null (sla_stage (fx->sla, "standard-5d", (Civicbus__V1__Stage) 9, NORMAL));
}

static void
test_default_policy (void **state)
{
    fixture_t *fx = *state;
    assert_string_equal (sla_default_policy (fx->sla), "standard-5d");
    assert_false (sla_has_policy (fx->sla, "no-such-policy"));
    assert_false (sla_has_policy (fx->sla, ""));
    assert_false (sla_has_policy (fx->sla, NULL));
    assert_true (sla_has_policy (fx->sla, "urban-4h"));
    assert_string_equal (sla_effective_policy (fx->sla, "no-such-policy"), "standard-5d");
    assert_string_equal (sla_effective_policy (fx->sla, NULL), "standard-5d");
    assert_string_equal (sla_effective_policy (fx->sla, "urban-4h"), "urban-4h");
    //  An unknown name is timed exactly like the default.
    Civicbus__V1__Deadline a = s_deadline (fx, "no-such-policy", RESOLVE, NORMAL,
                                           "2026-10-10T09:00+08:00");
    Civicbus__V1__Deadline b = s_deadline (fx, "standard-5d", RESOLVE, NORMAL,
                                           "2026-10-10T09:00+08:00");
    assert_int_equal (a.due_ms, b.due_ms);
    assert_int_equal (a.warn_ms, b.warn_ms);
    Civicbus__V1__Deadline c = s_deadline (fx, "", SIGN, URGENT, "2026-10-03T23:00+08:00");
    assert_iso (c.due_ms, "2026-10-04T01:00:00+08:00");
    assert_int_equal (sla_extension_max_days (fx->sla, "standard-5d"), 10);
    assert_int_equal (sla_extension_max_days (fx->sla, "urban-4h"), 1);
    assert_int_equal (sla_extension_max_days (fx->sla, "nope"), 10);
    assert_string_equal (sla_version (fx->sla), "2026.1-demo");
}

static void
test_no_limit_and_bad_stage (void **state)
{
    (void) state;
    const char *json =
        "{\"version\": \"t\", \"default\": \"p\", \"policies\": {\"p\": {"
        "\"resolve\": {\"limit\": {\"hours\": 1}}}}}";
    char err [256];
    sla_policies_t *sla = sla_from_json (json, strlen (json), err, sizeof err);
    assert_non_null (sla);
    workcal_t *cal = workcal_new_default ();
    Civicbus__V1__Deadline d = CIVICBUS__V1__DEADLINE__INIT;
    d.due_ms = 77;
    assert_int_equal (sla_stage_deadline (sla, "p", SIGN, NORMAL, 1000, cal, &d), SLA_NO_LIMIT);
    assert_int_equal (d.due_ms, 0);
    assert_int_equal (d.warn_ms, 0);
    assert_int_equal (d.started_ms, 1000);
    assert_false (sla_deadline_running (&d));
    assert_false (sla_deadline_paused (&d));
    assert_int_equal (sla_light_at (&d, INT64_MAX), GREEN);
    assert_int_equal (sla_extend (&d, 1, cal), SLA_ERROR);
    assert_int_equal (sla_pause (sla, "p", NORMAL, &d, 2000, cal), SLA_ERROR);
    assert_int_equal (sla_resume (sla, "p", NORMAL, &d, 2000, cal), SLA_ERROR);
    d.due_ms = 77;
    assert_int_equal (sla_stage_deadline (sla, "p", CIVICBUS__V1__STAGE__STAGE_UNSPECIFIED,
                                          NORMAL, 1000, cal, &d), SLA_ERROR);
    assert_int_equal (d.due_ms, 77);               //  untouched
    assert_int_equal (sla_stage_deadline (sla, "p", RESOLVE, NORMAL, 1000, cal, &d), SLA_OK);
    assert_int_equal (d.due_ms, 1000 + HOUR_MS);
    assert_int_equal (d.warn_ms, 1000 + HOUR_MS * 8 / 10);
    //  No escalation anywhere: no steps.
    assert_null (sla_step_at (sla, "p", NORMAL, &d, INT64_MAX - 1, cal, NULL));
    workcal_destroy (&cal);
    sla_destroy (&sla);
}

static void
test_never_on_closed_calendar (void **state)
{
    fixture_t *fx = *state;
    const char *closed = "{\"name\": \"closed\", \"timezone\": \"Asia/Shanghai\", "
                         "\"office_hours\": {}}";
    char err [256];
    workcal_t *cal = workcal_from_json (closed, strlen (closed), err, sizeof err);
    if (!cal) {
        //  A calendar without any office hours may be refused at load;
        //  then there is nothing to test here.
        return;
    }
    Civicbus__V1__Deadline d = CIVICBUS__V1__DEADLINE__INIT;
    assert_int_equal (sla_stage_deadline (fx->sla, "standard-5d", SIGN, NORMAL,
                                          s_at ("2026-03-10T10:00+08:00"), cal, &d), SLA_NEVER);
    assert_int_equal (d.due_ms, INT64_MAX);
    assert_int_equal (d.warn_ms, INT64_MAX);
    assert_int_equal (sla_stage_deadline (fx->sla, "urban-4h", RESOLVE, NORMAL,
                                          s_at ("2026-03-10T10:00+08:00"), cal, &d), SLA_NEVER);
    assert_int_equal (d.due_ms, INT64_MAX);
    //  Calendar limits still work on it.
    assert_int_equal (sla_stage_deadline (fx->sla, "urgent-2h", SIGN, NORMAL,
                                          s_at ("2026-03-10T10:00+08:00"), cal, &d), SLA_OK);
    workcal_destroy (&cal);
}

/* ---- extension ---- */

static void
test_extension (void **state)
{
    fixture_t *fx = *state;
    //  5 working days from Thursday Sep 17 (Sunday Sep 20 is worked): due
    //  Wednesday Sep 23 10:00. 10 working days more: Sep 24, Sep 25-27 off
    //  (Mid-Autumn), Sep 28-30, Oct 1-7 off, Oct 8, 9, Saturday Oct 10
    //  worked, Oct 12-14.
    Civicbus__V1__Deadline d = s_deadline (fx, "standard-5d", RESOLVE, NORMAL,
                                           "2026-09-17T10:00+08:00");
    assert_iso (d.due_ms, "2026-09-23T10:00:00+08:00");
    int64_t tail = working_time_between (d.warn_ms, d.due_ms, fx->cal);
    assert_int_equal (sla_extend (&d, 10, fx->cal), SLA_OK);
    assert_iso (d.due_ms, "2026-10-14T10:00:00+08:00");
    //  The yellow tail keeps its length (7 h of 35 h).
    assert_int_equal (working_time_between (d.warn_ms, d.due_ms, fx->cal), tail);
    assert_int_equal (tail, 7 * HOUR_MS);
    //  A yellow ticket turns green again.
    int64_t now = s_at ("2026-09-23T15:00+08:00");
    assert_int_equal (sla_light_at (&d, now), GREEN);
    assert_int_equal (d.started_ms, s_at ("2026-09-17T10:00+08:00"));
    assert_int_equal (sla_extend (&d, 0, fx->cal), SLA_ERROR);
    assert_iso (d.due_ms, "2026-10-14T10:00:00+08:00");

    //  A paused deadline gets the days added to what is left.
    d = s_deadline (fx, "standard-5d", RESOLVE, NORMAL, "2026-03-02T09:00+08:00");
    assert_int_equal (sla_pause (fx->sla, "standard-5d", NORMAL, &d,
                                 s_at ("2026-03-04T10:00+08:00"), fx->cal), SLA_OK);
    assert_int_equal (d.remaining_ms, 20 * HOUR_MS);
    assert_int_equal (sla_extend (&d, 2, fx->cal), SLA_OK);
    assert_int_equal (d.remaining_ms, 34 * HOUR_MS);
    assert_true (sla_deadline_paused (&d));
}

/* ---- pause and resume ---- */

static void
test_pause_resume_cases (void **state)
{
    fixture_t *fx = *state;
    //  5 working days from Monday Mar 2 09:00: due Monday Mar 9 09:00.
    Civicbus__V1__Deadline d = s_deadline (fx, "standard-5d", RESOLVE, NORMAL,
                                           "2026-03-02T09:00+08:00");
    assert_iso (d.due_ms, "2026-03-09T09:00:00+08:00");
    //  Paused Wednesday 10:00: 5.5 + 7 + 7 + 0.5 = 20 working hours left.
    assert_int_equal (sla_pause (fx->sla, "standard-5d", NORMAL, &d,
                                 s_at ("2026-03-04T10:00+08:00"), fx->cal), SLA_OK);
    assert_int_equal (d.remaining_ms, 20 * HOUR_MS);
    assert_int_equal (d.due_ms, 0);
    assert_int_equal (d.warn_ms, 0);
    assert_true (sla_deadline_paused (&d));
    assert_false (sla_deadline_running (&d));
    assert_int_equal (sla_light_at (&d, INT64_MAX), GREEN);
    //  Pausing twice is misuse.
    assert_int_equal (sla_pause (fx->sla, "standard-5d", NORMAL, &d,
                                 s_at ("2026-03-04T11:00+08:00"), fx->cal), SLA_ERROR);
    //  Resumed Friday 15:00: 2.5 + 7 + 7 + 3.5 -> Wednesday 12:00 exactly.
    assert_int_equal (sla_resume (fx->sla, "standard-5d", NORMAL, &d,
                                  s_at ("2026-03-06T15:00+08:00"), fx->cal), SLA_OK);
    assert_iso (d.due_ms, "2026-03-11T12:00:00+08:00");
    //  20 h left is more than the 7 h yellow tail: warning 13 h after
    //  resuming, Tuesday 12:00 (2.5 + 7 + 3.5).
    assert_iso (d.warn_ms, "2026-03-10T12:00:00+08:00");
    assert_int_equal (d.remaining_ms, 0);
    assert_int_equal (sla_resume (fx->sla, "standard-5d", NORMAL, &d,
                                  s_at ("2026-03-06T16:00+08:00"), fx->cal), SLA_ERROR);

    //  Paused in the yellow tail: resumes yellow (warn = now).
    d = s_deadline (fx, "standard-5d", SIGN, NORMAL, "2026-03-02T09:00+08:00");
    assert_int_equal (sla_pause (fx->sla, "standard-5d", NORMAL, &d,
                                 s_at ("2026-03-03T08:40+08:00"), fx->cal), SLA_OK);
    assert_int_equal (d.remaining_ms, 20 * MINUTE_MS);
    int64_t back = s_at ("2026-03-05T10:00+08:00");
    assert_int_equal (sla_resume (fx->sla, "standard-5d", NORMAL, &d, back, fx->cal), SLA_OK);
    assert_iso (d.due_ms, "2026-03-05T10:20:00+08:00");
    assert_int_equal (d.warn_ms, back);
    assert_int_equal (sla_light_at (&d, back), YELLOW);

    //  Calendar limits pause in calendar time: urgent-2h resolve, paused
    //  after 30 min with 90 left, resumed a day later.
    d = s_deadline (fx, "urgent-2h", RESOLVE, NORMAL, "2026-10-01T10:00+08:00");
    assert_int_equal (sla_pause (fx->sla, "urgent-2h", NORMAL, &d,
                                 s_at ("2026-10-01T10:30+08:00"), fx->cal), SLA_OK);
    assert_int_equal (d.remaining_ms, 90 * MINUTE_MS);
    assert_int_equal (sla_resume (fx->sla, "urgent-2h", NORMAL, &d,
                                  s_at ("2026-10-02T03:00+08:00"), fx->cal), SLA_OK);
    assert_iso (d.due_ms, "2026-10-02T04:30:00+08:00");
    assert_iso (d.warn_ms, "2026-10-02T03:30:00+08:00");   //  half of 2 h before due

    //  Paused overdue: stays red while paused, and resumes as overdue by
    //  the same working time (due Friday Oct 9 16:00, paused Monday Oct
    //  12 10:00 -> 1.5 + 7 (Saturday Oct 10 worked) + 1.5 = 10 h late).
    d = s_deadline (fx, "standard-5d", SIGN, NORMAL, "2026-10-08T16:00+08:00");
    assert_iso (d.due_ms, "2026-10-09T16:00:00+08:00");
    assert_int_equal (sla_pause (fx->sla, "standard-5d", NORMAL, &d,
                                 s_at ("2026-10-12T10:00+08:00"), fx->cal), SLA_OK);
    assert_int_equal (d.remaining_ms, -10 * HOUR_MS);
    assert_int_equal (sla_light_at (&d, 0), RED);
    assert_int_equal (sla_resume (fx->sla, "standard-5d", NORMAL, &d,
                                  s_at ("2026-10-14T11:00+08:00"), fx->cal), SLA_OK);
    //  10 working hours before Wednesday 11:00: 2.5 + 7 + 0.5 -> Monday
    //  17:00 (the latest such instant).
    assert_iso (d.due_ms, "2026-10-12T17:00:00+08:00");
    assert_int_equal (d.warn_ms, d.due_ms);
    assert_int_equal (sla_light_at (&d, s_at ("2026-10-14T11:00+08:00")), RED);

    //  Paused after due but with no office time since (Friday 17:30 due,
    //  paused Saturday): overdue by "1 ms", still red.
    d = s_deadline (fx, "standard-5d", SIGN, NORMAL, "2026-03-05T17:30+08:00");
    assert_iso (d.due_ms, "2026-03-06T17:30:00+08:00");
    assert_int_equal (sla_pause (fx->sla, "standard-5d", NORMAL, &d,
                                 s_at ("2026-03-07T10:00+08:00"), fx->cal), SLA_OK);
    assert_int_equal (d.remaining_ms, -1);
    assert_int_equal (sla_light_at (&d, 0), RED);
    int64_t monday = s_at ("2026-03-09T09:00+08:00");
    assert_int_equal (sla_resume (fx->sla, "standard-5d", NORMAL, &d, monday, fx->cal), SLA_OK);
    assert_true (d.due_ms < monday);
    assert_int_equal (sla_light_at (&d, monday), RED);
}

//  A small deterministic generator (xorshift64*), so failures repeat.
static uint64_t
s_next (uint64_t *seed)
{
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    return *seed * 2685821657736338717ULL;
}

static void
test_pause_resume_property (void **state)
{
    fixture_t *fx = *state;
    const char *policies [] = { "standard-5d", "urban-4h", "urgent-2h", "complaint-15d",
                                "consult-2d" };
    const Civicbus__V1__Stage stages [] = { ACCEPT, SIGN, RESOLVE, VERIFY };
    uint64_t seed = 0x5eed2026ULL;
    int64_t year = s_at ("2026-01-01T00:00+08:00");
    int overdue_cases = 0;
    for (int i = 0; i < 4000; i++) {
        const char *policy = policies [s_next (&seed) % 5];
        Civicbus__V1__Stage stage = stages [s_next (&seed) % 4];
        Civicbus__V1__Urgency urgency = s_next (&seed) % 4 == 0 ? URGENT : NORMAL;
        //  Any minute of 2026, sometimes a second in.
        int64_t start = year + (int64_t) (s_next (&seed) % (365 * 1440)) * MINUTE_MS
                      + (int64_t) (s_next (&seed) % 2) * 1000;
        Civicbus__V1__Deadline d = CIVICBUS__V1__DEADLINE__INIT;
        int rc = sla_stage_deadline (fx->sla, policy, stage, urgency, start, fx->cal, &d);
        assert_int_equal (rc, SLA_OK);
        assert_true (d.warn_ms <= d.due_ms);
        assert_true (d.started_ms == start && d.due_ms > start);
        bool working = sla_stage (fx->sla, policy, stage, urgency)->limit.working;
        int64_t old_due = d.due_ms;
        //  Pause somewhere between start and twice the limit, resume 0..20
        //  days later.
        int64_t span = (old_due - start) * 2;
        int64_t t1 = start + (int64_t) (s_next (&seed) % (uint64_t) span);
        int64_t t2 = t1 + (int64_t) (s_next (&seed) % (uint64_t) (20 * DAY_MS));
        assert_int_equal (sla_pause (fx->sla, policy, urgency, &d, t1, fx->cal), SLA_OK);
        assert_true (sla_deadline_paused (&d));
        assert_int_equal (sla_resume (fx->sla, policy, urgency, &d, t2, fx->cal), SLA_OK);
        assert_true (sla_deadline_running (&d));
        assert_true (d.warn_ms <= d.due_ms);
        if (!working) {
            //  Calendar time: the due instant moves by the pause, exactly.
            assert_int_equal (d.due_ms - old_due, t2 - t1);
            continue;
        }
        int64_t paused = working_time_between (t1, t2, fx->cal);
        if (working_time_between (t1, old_due, fx->cal) > 0) {
            //  Before due: what was left is left again after resuming ...
            assert_int_equal (working_time_between (t2, d.due_ms, fx->cal),
                              working_time_between (t1, old_due, fx->cal));
            //  ... so the due instant moves by the paused working time.
            assert_int_equal (working_time_between (old_due, d.due_ms, fx->cal), paused);
        }
        else {
            //  Overdue: it stays overdue by the same working time (or by
            //  nothing, when no office time passed since due).
            overdue_cases++;
            int64_t late = working_time_between (old_due, t1, fx->cal);
            assert_true (d.due_ms <= t2);
            int64_t late_again = working_time_between (d.due_ms, t2, fx->cal);
            assert_true (late_again == late || (late == 0 && late_again <= 1));
            if (late > 0 && d.due_ms >= old_due)
                assert_int_equal (working_time_between (old_due, d.due_ms, fx->cal), paused);
        }
    }
    assert_true (overdue_cases > 100);     //  both branches were exercised
}

/* ---- lights and escalation ---- */

static void
test_lights (void **state)
{
    fixture_t *fx = *state;
    Civicbus__V1__Deadline d = s_deadline (fx, "standard-5d", SIGN, NORMAL,
                                           "2026-09-30T16:00+08:00");
    assert_int_equal (sla_light_at (&d, d.started_ms), GREEN);
    assert_int_equal (sla_light_at (&d, d.warn_ms - 1), GREEN);
    assert_int_equal (sla_light_at (&d, d.warn_ms), YELLOW);
    assert_int_equal (sla_light_at (&d, d.due_ms - 1), YELLOW);
    assert_int_equal (sla_light_at (&d, d.due_ms), RED);
    assert_int_equal (sla_light_at (&d, d.due_ms + 365 * DAY_MS), RED);
    //  Through the holiday the light stays green: only office time counts.
    assert_int_equal (sla_light_at (&d, s_at ("2026-10-07T23:59+08:00")), GREEN);
    //  Share 1.0: yellow and red at the same instant.
    const char *json =
        "{\"version\": \"t\", \"default\": \"p\", \"policies\": {\"p\": {\"warn_share\": 1,"
        "\"sign\": {\"limit\": {\"minutes\": 10}}}}}";
    char err [256];
    sla_policies_t *sla = sla_from_json (json, strlen (json), err, sizeof err);
    assert_non_null (sla);
    assert_int_equal (sla_stage_deadline (sla, "p", SIGN, NORMAL, 0, fx->cal, &d), SLA_OK);
    assert_int_equal (d.warn_ms, d.due_ms);
    assert_int_equal (sla_light_at (&d, d.due_ms - 1), GREEN);
    assert_int_equal (sla_light_at (&d, d.due_ms), RED);
    sla_destroy (&sla);
}

static void
test_escalation_steps (void **state)
{
    fixture_t *fx = *state;
    //  Sign due Thursday Oct 8 16:00; the file's ladder: community at due,
    //  street a working day later (Friday 16:00), district three working
    //  days later (Friday, Saturday Oct 10 worked, Monday 16:00).
    Civicbus__V1__Deadline d = s_deadline (fx, "standard-5d", SIGN, NORMAL,
                                           "2026-09-30T16:00+08:00");
    int64_t times [SLA_MAX_STEPS];
    const sla_step_t *steps = NULL;
    size_t n = sla_step_times (fx->sla, "standard-5d", NORMAL, &d, fx->cal, times,
                               SLA_MAX_STEPS, &steps);
    assert_int_equal (n, 3);
    assert_iso (times [0], "2026-10-08T16:00:00+08:00");
    assert_iso (times [1], "2026-10-09T16:00:00+08:00");
    assert_iso (times [2], "2026-10-12T16:00:00+08:00");
    assert_int_equal (steps [0].level, 1);
    assert_string_equal (steps [0].card, "yellow");
    assert_string_equal (steps [0].notify, "community");
    assert_string_equal (steps [1].card, "red");
    assert_string_equal (steps [2].notify, "district");
    //  A cap smaller than the list.
    assert_int_equal (sla_step_times (fx->sla, "standard-5d", NORMAL, &d, fx->cal, times, 1,
                                      NULL), 1);

    int64_t at = 0;
    assert_null (sla_step_at (fx->sla, "standard-5d", NORMAL, &d, times [0] - 1, fx->cal, &at));
    const sla_step_t *step = sla_step_at (fx->sla, "standard-5d", NORMAL, &d, times [0],
                                          fx->cal, &at);
    assert_non_null (step);
    assert_int_equal (step->level, 1);
    assert_int_equal (at, times [0]);
    step = sla_step_at (fx->sla, "standard-5d", NORMAL, &d, times [1] - 1, fx->cal, NULL);
    assert_int_equal (step->level, 1);
    step = sla_step_at (fx->sla, "standard-5d", NORMAL, &d, s_at ("2026-10-11T12:00+08:00"),
                        fx->cal, &at);
    assert_int_equal (step->level, 2);
    assert_int_equal (at, times [1]);
    step = sla_step_at (fx->sla, "standard-5d", NORMAL, &d, times [2], fx->cal, NULL);
    assert_int_equal (step->level, 3);

    //  Urgent: the urgent resolve stage has its own ladder in hours.
    d = s_deadline (fx, "standard-5d", RESOLVE, URGENT, "2026-10-01T10:00+08:00");
    n = sla_step_times (fx->sla, "standard-5d", URGENT, &d, fx->cal, times, SLA_MAX_STEPS, NULL);
    assert_int_equal (n, 3);
    assert_iso (times [1], "2026-10-02T14:00:00+08:00");
    //  urgent-2h's own ladder in minutes.
    d = s_deadline (fx, "urgent-2h", SIGN, NORMAL, "2026-10-01T10:00+08:00");
    n = sla_step_times (fx->sla, "urgent-2h", NORMAL, &d, fx->cal, times, SLA_MAX_STEPS, NULL);
    assert_int_equal (n, 3);
    assert_iso (times [0], "2026-10-01T10:30:00+08:00");
    assert_iso (times [1], "2026-10-01T11:00:00+08:00");
    assert_iso (times [2], "2026-10-01T12:30:00+08:00");
    //  Urgent sign on a working-time policy: the file's urgent ladder in
    //  hours (due Oct 4 01:00, +2 h, +6 h), not the working-day one.
    d = s_deadline (fx, "standard-5d", SIGN, URGENT, "2026-10-03T23:00+08:00");
    n = sla_step_times (fx->sla, "standard-5d", URGENT, &d, fx->cal, times, SLA_MAX_STEPS, NULL);
    assert_int_equal (n, 3);
    assert_iso (times [0], "2026-10-04T01:00:00+08:00");
    assert_iso (times [1], "2026-10-04T03:00:00+08:00");
    assert_iso (times [2], "2026-10-04T07:00:00+08:00");
    //  urgent-2h keeps its own minutes ladder for urgent tickets.
    d = s_deadline (fx, "urgent-2h", SIGN, URGENT, "2026-10-01T10:00+08:00");
    n = sla_step_times (fx->sla, "urgent-2h", URGENT, &d, fx->cal, times, SLA_MAX_STEPS, NULL);
    assert_int_equal (n, 3);
    assert_iso (times [1], "2026-10-01T10:45:00+08:00");
    //  Normal tickets keep the working-day ladder.
    assert_int_equal (sla_stage (fx->sla, "standard-5d", SIGN, NORMAL)->steps [1].after.working,
                      true);
    d = s_deadline (fx, "urgent-2h", SIGN, NORMAL, "2026-10-01T10:00+08:00");

    //  A paused deadline has no step times.
    assert_int_equal (sla_pause (fx->sla, "urgent-2h", NORMAL, &d,
                                 s_at ("2026-10-01T10:10+08:00"), fx->cal), SLA_OK);
    assert_int_equal (sla_step_times (fx->sla, "urgent-2h", NORMAL, &d, fx->cal, times,
                                      SLA_MAX_STEPS, NULL), 0);
    assert_null (sla_step_at (fx->sla, "urgent-2h", NORMAL, &d, INT64_MAX - 1, fx->cal, NULL));
}

/* ---- the shipped file and JSON errors ---- */

static void
test_catalog_policies_defined (void **state)
{
    fixture_t *fx = *state;
    size_t len = 0;
    char *text = s_read ("deploy/config/catalog.json", &len);
    json_t *catalog = json_loadb (text, len, 0, NULL);
    free (text);
    assert_non_null (catalog);
    size_t i, checked = 0;
    json_t *rule;
    json_array_foreach (json_object_get (catalog, "rules"), i, rule) {
        const char *policy = json_string_value (json_object_get (rule, "policy"));
        assert_non_null (policy);
        if (!sla_has_policy (fx->sla, policy))
            fail_msg ("catalogue rules[%zu] names policy '%s', which sla.json does not define",
                      i, policy);
        checked++;
    }
    const char *fallback = json_string_value (json_object_get (json_object_get (catalog,
                                                               "fallback"), "policy"));
    assert_true (fallback && sla_has_policy (fx->sla, fallback));
    json_decref (catalog);
    assert_true (checked > 10);
    //  Every policy has all four stages with limits, normal and urgent.
    for (size_t p = 0; p < sla_policy_count (fx->sla); p++)
        for (int s = ACCEPT; s <= VERIFY; s++)
            for (int u = 0; u < 2; u++) {
                const sla_stage_t *stage = sla_stage (fx->sla, sla_policy_name (fx->sla, p),
                                                      (Civicbus__V1__Stage) s,
                                                      (Civicbus__V1__Urgency) u);
                assert_true (stage->has_limit);
            }
    assert_null (sla_policy_name (fx->sla, sla_policy_count (fx->sla)));
    assert_string_equal (sla_stage_name (RESOLVE), "resolve");
    assert_null (sla_stage_name (CIVICBUS__V1__STAGE__STAGE_UNSPECIFIED));
    assert_int_equal (sla_stage_from_name ("verify"), VERIFY);
    assert_int_equal (sla_stage_from_name ("Verify"), -1);
    assert_int_equal (sla_stage_from_name (NULL), -1);
}

#define HEAD "{\"version\": \"v\", \"default\": \"p\", \"policies\": {\"p\": "
//  The error cases of test_json_errors (at file scope: their braces inside
//  string literals would confuse simple readers of test bodies).
static const struct { const char *json; const char *error; } s_json_error_cases [] = {
    { "{", "not JSON" },
    { "[]", "must be a JSON object" },
    { "{\"default\": \"p\", \"policies\": {\"p\": {}}}", "version:" },
    { "{\"version\": \"\", \"default\": \"p\", \"policies\": {\"p\": {}}}", "version:" },
    { "{\"version\": \"v\", \"policies\": {\"p\": {}}}", "default:" },
    { "{\"version\": \"v\", \"default\": \"q\", \"policies\": {\"p\": {}}}",
      "default: 'q' is not one of the policies" },
    { "{\"version\": \"v\", \"default\": \"p\", \"policies\": {}}", "policies:" },
    { "{\"version\": \"v\", \"default\": \"p\", \"policy\": {}}", "unknown field 'policy'" },
    { "{\"version\": \"v\", \"default\": \"P\", \"policies\": {\"P\": {}}}",
      "policies.P: a policy name" },
    { HEAD "[]}}", "policies.p: must be an object" },
    { HEAD "{\"warn_shre\": 0.5}}}", "policies.p: unknown field 'warn_shre'" },
    { HEAD "{\"warn_share\": 0}}}", "policies.p.warn_share" },
    { HEAD "{\"warn_share\": 1.5}}}", "policies.p.warn_share" },
    { HEAD "{\"sign\": {\"limit\": {\"hours\": 1}, \"warn_share\": \"x\"}}}}",
      "policies.p.sign.warn_share" },
    { HEAD "{\"extension_max_working_days\": 31}}}", "policies.p.extension_max_working_days" },
    { HEAD "{\"sign\": {}}}}", "policies.p.sign: missing 'limit'" },
    { HEAD "{\"sign\": 5}}}", "policies.p.sign: must be an object" },
    { HEAD "{\"sign\": {\"limit\": {\"workinghours\": 4}}}}}",
      "policies.p.sign.limit: 'workinghours' is not a unit" },
    { HEAD "{\"sign\": {\"limit\": {\"hours\": 1, \"minutes\": 5}}}}}",
      "policies.p.sign.limit: must be an object with exactly one" },
    { HEAD "{\"sign\": {\"limit\": {\"hours\": 0}}}}}", "policies.p.sign.limit.hours: 0 is out of range" },
    { HEAD "{\"sign\": {\"limit\": {\"hours\": -1}}}}}", "policies.p.sign.limit.hours" },
    { HEAD "{\"sign\": {\"limit\": {\"hours\": \"2\"}}}}}",
      "policies.p.sign.limit.hours: must be a number" },
    { HEAD "{\"sign\": {\"limit\": {\"working_days\": 2000000}}}}}",
      "policies.p.sign.limit.working_days" },
    { HEAD "{\"stamp\": {\"limit\": {\"hours\": 1}}}}}", "policies.p: unknown field 'stamp'" },
    { HEAD "{\"urgent\": {\"stamp\": {}}}}}", "policies.p.urgent: unknown field 'stamp'" },
    { HEAD "{\"urgent\": {\"resolve\": {\"limit\": {}}}}}}",
      "policies.p.urgent.resolve.limit" },
    { HEAD "{\"escalation\": {}}}}", "policies.p.escalation: must be an array" },
    { HEAD "{\"escalation\": [1,2,3,4,5]}}}", "policies.p.escalation: must be an array of at most" },
    { HEAD "{\"escalation\": [{\"level\": 1, \"card\": \"red\", \"notify\": \"street\"}]}}}",
      "policies.p.escalation[0]: missing 'after'" },
    { HEAD "{\"escalation\": [{\"after\": {\"hours\": 0}, \"level\": 0, \"card\": \"red\","
      "\"notify\": \"street\"}]}}}", "policies.p.escalation[0].level" },
    { HEAD "{\"escalation\": [{\"after\": {\"hours\": 0}, \"level\": 5, \"card\": \"red\","
      "\"notify\": \"street\"}]}}}", "policies.p.escalation[0].level" },
    { HEAD "{\"escalation\": [{\"after\": {\"hours\": 0}, \"level\": 2, \"card\": \"red\","
      "\"notify\": \"street\"}, {\"after\": {\"hours\": 1}, \"level\": 2, \"card\": \"red\","
      "\"notify\": \"district\"}]}}}", "policies.p.escalation[1].level: levels must rise" },
    { HEAD "{\"escalation\": [{\"after\": {\"hours\": 0}, \"level\": 1, \"card\": \"blue\","
      "\"notify\": \"street\"}]}}}", "policies.p.escalation[0].card" },
    { HEAD "{\"escalation\": [{\"after\": {\"hours\": 0}, \"level\": 1, \"card\": \"red\","
      "\"notify\": \"city\"}]}}}", "policies.p.escalation[0].notify" },
    { HEAD "{\"escalation\": [{\"after\": {\"hours\": 0}, \"level\": 1, \"card\": \"red\","
      "\"notify\": \"street\", \"who\": 1}]}}}", "policies.p.escalation[0]: unknown field 'who'" },
    { HEAD "{\"resolve\": {\"limit\": {\"hours\": 1}, \"escalation\": [{\"after\": "
      "{\"eons\": 1}, \"level\": 1, \"card\": \"red\", \"notify\": \"street\"}]}}}}",
      "policies.p.resolve.escalation[0].after: 'eons' is not a unit" },
    { "{\"version\": \"v\", \"default\": \"p\", \"escalation\": [{}], \"policies\": {\"p\": {}}}",
      "(top).escalation[0]: missing 'after'" },
    { "{\"version\": \"v\", \"default\": \"p\", \"urgent_escalation\": 3, \"policies\": {\"p\": {}}}",
      "(top).urgent.escalation: must be an array" },
    { HEAD "{\"urgent\": {\"escalation\": [{\"after\": {\"hours\": 1}, \"level\": 1, "
      "\"card\": \"pink\", \"notify\": \"street\"}]}}}}", "policies.p.urgent.escalation[0].card" },
    { "{\"version\": \"v\", \"default\": \"p\", \"policies\": {\"p\": {}, \"p\": {}}}",
      "not JSON" },
};

static void
test_json_errors (void **state)
{
    (void) state;
    #undef HEAD
    for (size_t i = 0; i < sizeof s_json_error_cases / sizeof s_json_error_cases [0]; i++) {
        char err [256] = "";
        sla_policies_t *sla = sla_from_json (s_json_error_cases [i].json, strlen (s_json_error_cases [i].json), err,
                                             sizeof err);
        if (sla || !strstr (err, s_json_error_cases [i].error)) {
            sla_destroy (&sla);
            fail_msg ("case %zu: expected an error containing \"%s\", got \"%s\"", i,
                      s_json_error_cases [i].error, err);
        }
    }
    //  Descriptions and notes are allowed everywhere; a text that is not
    //  NUL-terminated is read to len only.
    const char *ok = "{\"version\": \"v\", \"default\": \"p\", \"note\": \"x\", \"policies\": "
                     "{\"p\": {\"description\": \"d\", \"sign\": {\"note\": \"n\", \"limit\": "
                     "{\"days\": 1}}}}}GARBAGE";
    char err [256] = "";
    sla_policies_t *sla = sla_from_json (ok, strlen (ok) - 7, err, sizeof err);
    if (!sla)
        fail_msg ("%s", err);
    workcal_t *cal = workcal_new_default ();
    Civicbus__V1__Deadline d = CIVICBUS__V1__DEADLINE__INIT;
    assert_int_equal (sla_stage_deadline (sla, "p", SIGN, URGENT, 0, cal, &d), SLA_OK);
    assert_int_equal (d.due_ms, DAY_MS);
    workcal_destroy (&cal);
    sla_destroy (&sla);
    //  A NULL err buffer is allowed.
    assert_null (sla_from_json ("{", 1, NULL, 0));
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_working_day_limits),
        cmocka_unit_test (test_working_hour_limits),
        cmocka_unit_test (test_calendar_limits_and_urgent),
        cmocka_unit_test (test_default_policy),
        cmocka_unit_test (test_no_limit_and_bad_stage),
        cmocka_unit_test (test_never_on_closed_calendar),
        cmocka_unit_test (test_extension),
        cmocka_unit_test (test_pause_resume_cases),
        cmocka_unit_test (test_pause_resume_property),
        cmocka_unit_test (test_lights),
        cmocka_unit_test (test_escalation_steps),
        cmocka_unit_test (test_catalog_policies_defined),
        cmocka_unit_test (test_json_errors),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
