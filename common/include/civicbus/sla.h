/*  sla.h — time-limit policies (时限): how long each stage of a ticket may
    take, when its light turns yellow, and who is alerted once it is late.

    The dispatch catalogue names a policy per route ("standard-5d",
    "urgent-2h", ...); this module reads the policies from JSON (loaded with
    `civicbus sla load`, stored in Redis as cfg:sla) and turns a policy, a
    stage and a start time into the ticket's Deadline. Everything here is
    pure: no I/O, no clock; the calendar (workcal.h) and "now" are arguments.

    A limit counts either calendar time ("hours", "minutes", "days": nights
    and holidays count) or working time ("working_hours", "working_days":
    office hours on the working calendar only; a working day is
    workcal_standard_day_ms of office time, see workcal.h). The warning
    instant is the start plus warn_share of the limit, measured in the same
    kind of time; the escalation steps fire at due plus each step's "after",
    again in its own kind of time.

    A Deadline (civicbus.proto) is in one of three conditions:
        running    due_ms > 0: warn_ms <= due_ms, timers armed
        paused     due_ms == 0, remaining_ms != 0 (a suspension, 挂账):
                   remaining_ms > 0 is what was left; < 0 means it was
                   overdue by -remaining_ms (at least 1 ms) when paused.
                   Both count in the limit's kind of time.
        no limit   due_ms == 0, remaining_ms == 0
        finished   finished_ms > 0: the stage ended then (ticket_effects.h);
                   due_ms, warn_ms (and remaining_ms when it ended paused)
                   are kept for KPIs; neither running nor paused, no timers
    started_ms is when the stage started and never moves.

    JSON (deploy/config/sla.json is the real example):

    {
      "version": "2026.1",                    required, non-empty string
      "default": "standard-5d",               required: the policy used for a
                                              name the file does not define
      "escalation": [STEP, ...],              optional: the ladder for every
                                              policy that gives none
      "urgent_escalation": [STEP, ...],       optional: the ladder for urgent
                                              tickets (see "urgent" below)
      "policies": {                           required, non-empty
        "standard-5d": {                      name: [a-z0-9._-], 1..63 bytes
          "warn_share": 0.8,                  optional, 0 < share <= 1, default 0.8
          "extension_max_working_days": 10,   optional, 0..30, default 10
          "escalation": [STEP, ...],          optional, for this policy's stages
          "accept":  STAGE,                   each optional: a missing stage
          "sign":    STAGE,                   has no limit
          "resolve": STAGE,
          "verify":  STAGE,
          "urgent": {"sign": STAGE, ...,      optional: urgent tickets' limits;
                     "escalation": [STEP]}    a stage not listed here keeps the
        }                                     normal limit; warn_share not given
      }                                       comes from the normal stage
    }
    An urgent ticket's ladder: its urgent stage's own "escalation", else the
    policy's urgent "escalation", else the file's "urgent_escalation", else
    the normal stage's ladder (urgent limits in hours want ladders in hours).
    STAGE = {"limit": DURATION, "warn_share": 0.8, "escalation": [STEP, ...]}
            ("limit" required, > 0; the other two inherit from the policy)
    STEP  = {"after": DURATION, "level": 1, "card": "yellow", "notify": "community"}
            after >= 0, counted from the due instant; level 1..4 (the
            ticket's escalation_level the step brings it to, strictly
            increasing within a list, at most 4 steps); card "none",
            "yellow" (黄牌) or "red" (红牌); notify "grid", "community",
            "street" or "district" (whose supervisors are alerted).
    DURATION = exactly one of {"minutes": N}, {"hours": N}, {"days": N},
            {"working_hours": N}, {"working_days": N}; N a number (fractions
            allowed) in 0..1000000.
    Every object may carry "description" and "note" (ignored). Any other key
    is an error, so "warn_shre" is caught at load. Errors name the policy and
    field: "policies.urban-4h.resolve.limit: 'workinghours' is not a unit".

    The default policy: a ticket whose policy name is empty or unknown (a
    catalogue newer than the loaded policies, or a typo there) is timed by
    the file's "default" policy, never left without limits; callers may log
    sla_has_policy() == false as a configuration warning. */

#ifndef CIVICBUS_SLA_H
#define CIVICBUS_SLA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "civicbus/workcal.h"
#include "civicbus/v1/civicbus.pb-c.h"

//  Most escalation steps in one list (the ladder has four rungs).
#define SLA_MAX_STEPS 4
//  Longest policy name.
#define SLA_NAME_MAX 63

//  Results of the deadline functions.
enum {
    SLA_OK = 0,
    SLA_NO_LIMIT = 1,      //  the stage has no limit: out has due_ms = warn_ms = 0
    SLA_ERROR = -1,        //  misuse: unknown stage, or a deadline in the wrong condition
    SLA_NEVER = -2,        //  the calendar has no office time left: due_ms = INT64_MAX
};

typedef struct _sla_policies_t sla_policies_t;

//  A length of time as written in the file.
typedef struct {
    double amount;           //  N
    const char *unit;        //  "minutes", "hours", "days", "working_hours", "working_days"
    bool working;            //  counts office time (working_*)
} sla_duration_t;

//  One escalation step (督办).
typedef struct {
    sla_duration_t after;    //  from the due instant
    int level;               //  1..4
    const char *card;        //  "none", "yellow", "red"
    const char *notify;      //  "grid", "community", "street", "district"
} sla_step_t;

//  A stage's rules after inheritance (the view sla_stage returns).
typedef struct {
    bool has_limit;
    sla_duration_t limit;
    double warn_share;
    const sla_step_t *steps;
    size_t step_count;
} sla_stage_t;

//  Parses policies in the JSON format above (`len` bytes, need not be
//  NUL-terminated). Returns them, or NULL with a message in `err` naming the
//  policy and field.
sla_policies_t *sla_from_json (const char *text, size_t len, char *err, size_t errcap);

//  Destroys the policies and sets *self_p to NULL; safe to call twice.
void sla_destroy (sla_policies_t **self_p);

//  The file's "version" and "default".
const char *sla_version (const sla_policies_t *self);
const char *sla_default_policy (const sla_policies_t *self);

//  Policies in file order: count, and the name of the i-th (NULL past the end).
size_t sla_policy_count (const sla_policies_t *self);
const char *sla_policy_name (const sla_policies_t *self, size_t index);

//  True when `name` is defined in the file (false for NULL or "").
bool sla_has_policy (const sla_policies_t *self, const char *name);

//  The policy that times `name`: `name` itself when defined, else the
//  default policy's name. Never NULL.
const char *sla_effective_policy (const sla_policies_t *self, const char *name);

//  The rules for `stage` of `policy` (the default policy for an unknown
//  name) for a ticket of `urgency`, inheritance applied. NULL only for a
//  stage outside ACCEPT..VERIFY. The view lives as long as the policies.
const sla_stage_t *sla_stage (const sla_policies_t *self, const char *policy,
                              Civicbus__V1__Stage stage, Civicbus__V1__Urgency urgency);

//  The longest extension (延期) the policy grants, in working days.
int sla_extension_max_days (const sla_policies_t *self, const char *policy);

//  `duration` in ms of its own kind of time: calendar ms, or ms of office
//  time (working_days times workcal_standard_day_ms of `cal`). Rounded to
//  the millisecond.
int64_t sla_duration_ms (const sla_duration_t *duration, const workcal_t *cal);

//  The instant `duration` after `from_ms`: from + ms for calendar time,
//  add_working_time for working time (INT64_MAX: never).
int64_t sla_add_duration (int64_t from_ms, const sla_duration_t *duration, const workcal_t *cal);

//  The deadline of `stage` started at `start_ms`: fills out->stage,
//  started_ms, due_ms (start + limit), warn_ms (start + warn_share of the
//  limit, same kind of time) and remaining_ms = 0. SLA_OK; SLA_NO_LIMIT
//  (due_ms = warn_ms = 0); SLA_NEVER (the working calendar has no office
//  time left: due_ms = warn_ms = INT64_MAX); SLA_ERROR for a stage outside
//  ACCEPT..VERIFY (out untouched). An unknown policy uses the default.
int sla_stage_deadline (const sla_policies_t *self, const char *policy,
                        Civicbus__V1__Stage stage, Civicbus__V1__Urgency urgency,
                        int64_t start_ms, const workcal_t *cal,
                        Civicbus__V1__Deadline *out);

//  An approved extension: moves a running deadline's due_ms and warn_ms by
//  `working_days` working days (add_working_days; the yellow tail before the
//  due instant keeps its length), or adds them to a paused deadline's
//  remaining_ms. SLA_OK, SLA_NEVER, or SLA_ERROR for days < 1 or a deadline
//  without a limit. Does not check sla_extension_max_days: the request was
//  validated when it was made.
int sla_extend (Civicbus__V1__Deadline *deadline, int working_days, const workcal_t *cal);

//  Suspension (挂账) at `now_ms`: remaining_ms = the time left before due in
//  the limit's kind of time (working_time_between(now, due) for working
//  limits, due - now for calendar ones), or minus the time it is overdue
//  (at least 1 ms: an overdue deadline stays overdue); then due_ms =
//  warn_ms = 0. SLA_OK, or SLA_ERROR when the deadline is not running.
int sla_pause (const sla_policies_t *self, const char *policy, Civicbus__V1__Urgency urgency,
               Civicbus__V1__Deadline *deadline, int64_t now_ms, const workcal_t *cal);

//  Resumption at `now_ms`: due_ms = now plus remaining_ms in the limit's
//  kind of time (minus the overdue time for a deadline paused overdue), so
//  the due instant moves by exactly the paused time of its kind; warn_ms =
//  the instant where the same share of the limit is left as at a normal
//  warning, or now when that point had passed (never after due); then
//  remaining_ms = 0. SLA_OK, SLA_NEVER, or SLA_ERROR when not paused.
int sla_resume (const sla_policies_t *self, const char *policy, Civicbus__V1__Urgency urgency,
                Civicbus__V1__Deadline *deadline, int64_t now_ms, const workcal_t *cal);

//  Running (due_ms > 0, not finished) and paused (see the top) deadlines.
bool sla_deadline_running (const Civicbus__V1__Deadline *deadline);
bool sla_deadline_paused (const Civicbus__V1__Deadline *deadline);

//  The light at `now_ms`: GREEN before warn_ms, YELLOW from warn_ms, RED
//  from due_ms (a deadline is missed at its due instant). A paused deadline
//  is RED when it was paused overdue, else GREEN; no limit is GREEN. A
//  finished one keeps the light it had at finished_ms.
Civicbus__V1__Light sla_light_at (const Civicbus__V1__Deadline *deadline, int64_t now_ms);

//  The instants of the escalation steps of a running deadline (due plus each
//  step's "after"), in step order, into times [0 .. cap-1]; sets *steps to
//  the stage's step array. Returns the number of steps (0 for a deadline
//  that is not running).
size_t sla_step_times (const sla_policies_t *self, const char *policy,
                       Civicbus__V1__Urgency urgency, const Civicbus__V1__Deadline *deadline,
                       const workcal_t *cal, int64_t *times, size_t cap,
                       const sla_step_t **steps);

//  The last escalation step whose instant is <= now_ms (the level the ticket
//  should have reached by then), with its instant in *at_ms if not NULL;
//  NULL when none is due yet or the deadline is not running.
const sla_step_t *sla_step_at (const sla_policies_t *self, const char *policy,
                               Civicbus__V1__Urgency urgency,
                               const Civicbus__V1__Deadline *deadline, int64_t now_ms,
                               const workcal_t *cal, int64_t *at_ms);

//  "accept", "sign", "resolve", "verify" (NULL otherwise), and back (-1 for
//  an unknown name).
const char *sla_stage_name (Civicbus__V1__Stage stage);
int sla_stage_from_name (const char *name);

#endif
