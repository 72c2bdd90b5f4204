/*  sla.c — time-limit policies: parsed from JSON once, then pure arithmetic
    on deadlines (see sla.h for the format and the deadline conditions).

    Inheritance (urgent stage <- normal stage <- policy <- file) is resolved
    at load, so every lookup is a name search plus an array index: O(number
    of policies), a dozen in a real city. */

#include "civicbus/sla.h"
#include "civicbus/ticket_fsm.h"

#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_STAGES 4                     //  ACCEPT..VERIFY
#define S_DEFAULT_SHARE 0.8
#define S_DEFAULT_EXTENSION 10
#define S_AMOUNT_MAX 1e6
#define HOUR_MS 3600000.0

//  An escalation ladder as written.
typedef struct {
    bool given;
    sla_step_t steps [SLA_MAX_STEPS];
    size_t count;
} s_ladder_t;

//  A stage as written (before inheritance).
typedef struct {
    bool given;                        //  the stage object is present
    sla_duration_t limit;
    bool has_share;
    double share;
    bool has_steps;
    sla_step_t steps [SLA_MAX_STEPS];
    size_t step_count;
} s_written_t;

typedef struct {
    char *name;
    int extension_max;
    sla_stage_t stage [2][S_STAGES];                   //  [urgent][stage - 1]
    sla_step_t steps [2][S_STAGES][SLA_MAX_STEPS];     //  storage behind the views
} s_policy_t;

struct _sla_policies_t {
    char *version;
    char *default_name;
    s_policy_t *policies;
    size_t count;
};

static const char *s_stage_names [S_STAGES] = { "accept", "sign", "resolve", "verify" };
static const char *s_units [] = { "minutes", "hours", "days", "working_hours", "working_days" };
static const char *s_cards [] = { "none", "yellow", "red" };
static const char *s_rungs [] = { "grid", "community", "street", "district" };
#define S_COUNT(a) (sizeof (a) / sizeof (a) [0])

/* ---- private: parsing ---- */

static void
s_err (char *err, size_t cap, const char *fmt, ...)
{
    if (!err || cap == 0)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, cap, fmt, args);
    va_end (args);
}

//  The static copy of `text` from `names`, or NULL.
static const char *
s_pick (const char **names, size_t n, const char *text)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp (names [i], text) == 0)
            return names [i];
    return NULL;
}

//  Refuses keys of `obj` outside `allowed` (NULL-terminated); "description"
//  and "note" are always allowed.
static int
s_only_keys (json_t *obj, const char **allowed, const char *where, char *err, size_t cap)
{
    const char *key;
    json_t *value;
    json_object_foreach (obj, key, value) {
        (void) value;
        bool ok = strcmp (key, "description") == 0 || strcmp (key, "note") == 0;
        for (size_t i = 0; !ok && allowed [i]; i++)
            ok = strcmp (key, allowed [i]) == 0;
        if (!ok) {
            s_err (err, cap, "%s: unknown field '%s'", where, key);
            return -1;
        }
    }
    return 0;
}

static int
s_parse_duration (json_t *json, const char *where, bool zero_ok, sla_duration_t *out,
                  char *err, size_t cap)
{
    if (!json_is_object (json) || json_object_size (json) != 1) {
        s_err (err, cap, "%s: must be an object with exactly one of minutes, hours, days, "
               "working_hours, working_days", where);
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach (json, key, value) {
        const char *unit = s_pick (s_units, S_COUNT (s_units), key);
        if (!unit) {
            s_err (err, cap, "%s: '%s' is not a unit (minutes, hours, days, working_hours, "
                   "working_days)", where, key);
            return -1;
        }
        if (!json_is_number (value)) {
            s_err (err, cap, "%s.%s: must be a number", where, key);
            return -1;
        }
        double amount = json_number_value (value);
        if (!isfinite (amount) || amount < 0 || amount > S_AMOUNT_MAX || (!zero_ok && amount == 0)) {
            s_err (err, cap, "%s.%s: %g is out of range (%s..1000000)", where, key, amount,
                   zero_ok ? "0" : "above 0");
            return -1;
        }
        out->amount = amount;
        out->unit = unit;
        out->working = strncmp (unit, "working_", 8) == 0;
    }
    return 0;
}

static int
s_parse_share (json_t *json, const char *where, double *out, char *err, size_t cap)
{
    double share = json_is_number (json) ? json_number_value (json) : -1;
    if (!(share > 0 && share <= 1)) {
        s_err (err, cap, "%s.warn_share: must be a number above 0 and at most 1", where);
        return -1;
    }
    *out = share;
    return 0;
}

static int
s_parse_steps (json_t *json, const char *where, sla_step_t *steps, size_t *count,
               char *err, size_t cap)
{
    if (!json_is_array (json) || json_array_size (json) > SLA_MAX_STEPS) {
        s_err (err, cap, "%s.escalation: must be an array of at most %d steps", where,
               SLA_MAX_STEPS);
        return -1;
    }
    static const char *allowed [] = { "after", "level", "card", "notify", NULL };
    size_t i;
    json_t *item;
    char at [160];
    json_array_foreach (json, i, item) {
        snprintf (at, sizeof at, "%s.escalation[%zu]", where, i);
        if (!json_is_object (item)) {
            s_err (err, cap, "%s: must be an object", at);
            return -1;
        }
        if (s_only_keys (item, allowed, at, err, cap))
            return -1;
        sla_step_t *step = &steps [i];
        char after_at [192];
        snprintf (after_at, sizeof after_at, "%s.after", at);
        json_t *after = json_object_get (item, "after");
        if (!after) {
            s_err (err, cap, "%s: missing 'after'", at);
            return -1;
        }
        if (s_parse_duration (after, after_at, true, &step->after, err, cap))
            return -1;
        json_t *level = json_object_get (item, "level");
        if (!json_is_integer (level) || json_integer_value (level) < 1
        ||  json_integer_value (level) > TICKET_ESCALATION_MAX) {
            s_err (err, cap, "%s.level: must be a whole number 1..%d", at, TICKET_ESCALATION_MAX);
            return -1;
        }
        step->level = (int) json_integer_value (level);
        if (i > 0 && step->level <= steps [i - 1].level) {
            s_err (err, cap, "%s.level: levels must rise step by step (%d after %d)", at,
                   step->level, steps [i - 1].level);
            return -1;
        }
        json_t *card = json_object_get (item, "card");
        step->card = json_is_string (card)
                   ? s_pick (s_cards, S_COUNT (s_cards), json_string_value (card)) : NULL;
        if (!step->card) {
            s_err (err, cap, "%s.card: must be \"none\", \"yellow\" or \"red\"", at);
            return -1;
        }
        json_t *notify = json_object_get (item, "notify");
        step->notify = json_is_string (notify)
                     ? s_pick (s_rungs, S_COUNT (s_rungs), json_string_value (notify)) : NULL;
        if (!step->notify) {
            s_err (err, cap, "%s.notify: must be \"grid\", \"community\", \"street\" or "
                   "\"district\"", at);
            return -1;
        }
    }
    *count = json_array_size (json);
    return 0;
}

static int
s_parse_stage (json_t *json, const char *where, s_written_t *out, char *err, size_t cap)
{
    if (!json_is_object (json)) {
        s_err (err, cap, "%s: must be an object", where);
        return -1;
    }
    static const char *allowed [] = { "limit", "warn_share", "escalation", NULL };
    if (s_only_keys (json, allowed, where, err, cap))
        return -1;
    json_t *limit = json_object_get (json, "limit");
    if (!limit) {
        s_err (err, cap, "%s: missing 'limit'", where);
        return -1;
    }
    char at [160];
    snprintf (at, sizeof at, "%s.limit", where);
    if (s_parse_duration (limit, at, false, &out->limit, err, cap))
        return -1;
    json_t *share = json_object_get (json, "warn_share");
    if (share) {
        if (s_parse_share (share, where, &out->share, err, cap))
            return -1;
        out->has_share = true;
    }
    json_t *steps = json_object_get (json, "escalation");
    if (steps) {
        if (s_parse_steps (steps, where, out->steps, &out->step_count, err, cap))
            return -1;
        out->has_steps = true;
    }
    out->given = true;
    return 0;
}

//  Sets one resolved view from a written stage and what it inherits.
static void
s_resolve (sla_stage_t *view, sla_step_t *storage, const s_written_t *written,
           double share, const sla_step_t *steps, size_t step_count)
{
    memset (view, 0, sizeof *view);
    view->has_limit = written->given;
    view->limit = written->limit;
    view->warn_share = written->has_share ? written->share : share;
    if (written->has_steps) {
        steps = written->steps;
        step_count = written->step_count;
    }
    memcpy (storage, steps, step_count * sizeof *steps);
    view->steps = storage;
    view->step_count = step_count;
}

static int
s_valid_name (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > SLA_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name [i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int
s_parse_policy (json_t *json, const char *name, const s_ladder_t *file_ladder,
                const s_ladder_t *file_urgent, s_policy_t *policy, char *err, size_t cap)
{
    char where [128];
    snprintf (where, sizeof where, "policies.%s", name);
    if (!s_valid_name (name)) {
        s_err (err, cap, "%s: a policy name is 1..%d characters of [a-z0-9._-]", where,
               SLA_NAME_MAX);
        return -1;
    }
    if (!json_is_object (json)) {
        s_err (err, cap, "%s: must be an object", where);
        return -1;
    }
    static const char *allowed [] = { "warn_share", "extension_max_working_days", "escalation",
                                      "accept", "sign", "resolve", "verify", "urgent", NULL };
    if (s_only_keys (json, allowed, where, err, cap))
        return -1;
    double share = S_DEFAULT_SHARE;
    json_t *value = json_object_get (json, "warn_share");
    if (value && s_parse_share (value, where, &share, err, cap))
        return -1;
    policy->extension_max = S_DEFAULT_EXTENSION;
    value = json_object_get (json, "extension_max_working_days");
    if (value) {
        if (!json_is_integer (value) || json_integer_value (value) < 0
        ||  json_integer_value (value) > TICKET_EXTENSION_DAYS_MAX) {
            s_err (err, cap, "%s.extension_max_working_days: must be a whole number 0..%d",
                   where, TICKET_EXTENSION_DAYS_MAX);
            return -1;
        }
        policy->extension_max = (int) json_integer_value (value);
    }
    s_ladder_t ladder = *file_ladder, urgent_ladder = *file_urgent;
    value = json_object_get (json, "escalation");
    if (value && s_parse_steps (value, where, ladder.steps, &ladder.count, err, cap))
        return -1;

    json_t *urgent = json_object_get (json, "urgent");
    char urgent_where [160];
    snprintf (urgent_where, sizeof urgent_where, "%s.urgent", where);
    if (urgent) {
        if (!json_is_object (urgent)) {
            s_err (err, cap, "%s: must be an object", urgent_where);
            return -1;
        }
        static const char *urgent_keys [] = { "accept", "sign", "resolve", "verify",
                                              "escalation", NULL };
        if (s_only_keys (urgent, urgent_keys, urgent_where, err, cap))
            return -1;
        value = json_object_get (urgent, "escalation");
        if (value) {
            if (s_parse_steps (value, urgent_where, urgent_ladder.steps, &urgent_ladder.count,
                               err, cap))
                return -1;
            urgent_ladder.given = true;
        }
    }
    for (int s = 0; s < S_STAGES; s++) {
        s_written_t normal = { 0 }, fast = { 0 };
        char at [192];
        value = json_object_get (json, s_stage_names [s]);
        snprintf (at, sizeof at, "%s.%s", where, s_stage_names [s]);
        if (value && s_parse_stage (value, at, &normal, err, cap))
            return -1;
        s_resolve (&policy->stage [0][s], policy->steps [0][s], &normal, share,
                   ladder.steps, ladder.count);
        value = urgent ? json_object_get (urgent, s_stage_names [s]) : NULL;
        snprintf (at, sizeof at, "%s.%s", urgent_where, s_stage_names [s]);
        if (value && s_parse_stage (value, at, &fast, err, cap))
            return -1;
        //  An urgent stage not given is the normal one; either way its
        //  ladder is its own, else the urgent ladder, else the normal stage's.
        const sla_stage_t *base = &policy->stage [0][s];
        if (!fast.given) {
            fast.given = base->has_limit;
            fast.limit = base->limit;
        }
        if (!fast.has_share) {
            fast.has_share = true;
            fast.share = base->warn_share;
        }
        s_resolve (&policy->stage [1][s], policy->steps [1][s], &fast, base->warn_share,
                   urgent_ladder.given ? urgent_ladder.steps : base->steps,
                   urgent_ladder.given ? urgent_ladder.count : base->step_count);
    }
    policy->name = strdup (name);
    return policy->name ? 0 : -1;
}

static const s_policy_t *
s_find (const sla_policies_t *self, const char *name)
{
    for (size_t i = 0; name && i < self->count; i++)
        if (strcmp (self->policies [i].name, name) == 0)
            return &self->policies [i];
    return NULL;
}

static const s_policy_t *
s_policy (const sla_policies_t *self, const char *name)
{
    const s_policy_t *policy = s_find (self, name);
    if (!policy)
        policy = s_find (self, self->default_name);
    assert (policy);            //  the loader checked that the default exists
    return policy;
}

/* ---- private: time ---- */

//  The instant `amount` ms of this kind of time before `to_ms`: the latest
//  t with working_time_between (t, to) >= amount for working time. Office
//  time in [t, to) is at most to - t, so t <= to - amount; search back by
//  doubling, then bisect (about 80 calendar lookups). INT64_MIN when the
//  calendar has no such office time.
static int64_t
s_sub_working (int64_t to_ms, int64_t amount, const workcal_t *cal)
{
    int64_t hi = to_ms - amount;        //  the latest candidate
    if (working_time_between (hi, to_ms, cal) >= amount)
        return hi;
    int64_t span = amount > 0 ? amount : 1, lo = hi;
    do {
        if (span > INT64_MAX / 4 || lo < INT64_MIN / 4)
            return INT64_MIN;
        span *= 2;
        lo = hi - span;
    } while (working_time_between (lo, to_ms, cal) < amount);
    //  Invariant: between (lo) >= amount > between (hi).
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (working_time_between (mid, to_ms, cal) >= amount)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static int64_t
s_add (int64_t from_ms, int64_t amount, bool working, const workcal_t *cal)
{
    if (working)
        return add_working_time (from_ms, amount, cal);
    if (amount > 0 && from_ms > INT64_MAX - amount)
        return INT64_MAX;
    return from_ms + amount;
}

//  The stage view behind a deadline, or NULL.
static const sla_stage_t *
s_deadline_stage (const sla_policies_t *self, const char *policy, Civicbus__V1__Urgency urgency,
                  const Civicbus__V1__Deadline *deadline)
{
    return sla_stage (self, policy, deadline->stage, urgency);
}

/* ---- public: policies ---- */

sla_policies_t *
sla_from_json (const char *text, size_t len, char *err, size_t errcap)
{
    json_error_t jerr;
    json_t *root = json_loadb (text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        s_err (err, errcap, "not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
               jerr.column);
        return NULL;
    }
    sla_policies_t *self = calloc (1, sizeof *self);
    if (!self) {
        json_decref (root);
        s_err (err, errcap, "out of memory");
        return NULL;
    }
    static const char *allowed [] = { "version", "default", "escalation", "urgent_escalation",
                                      "policies", NULL };
    json_t *version = json_object_get (root, "version");
    json_t *default_name = json_object_get (root, "default");
    json_t *policies = json_object_get (root, "policies");
    json_t *steps_json = json_object_get (root, "escalation");
    json_t *urgent_json = json_object_get (root, "urgent_escalation");
    s_ladder_t ladder = { 0 }, urgent_ladder = { 0 };
    if (!json_is_object (root)) {
        s_err (err, errcap, "the policies file must be a JSON object");
        goto fail;
    }
    if (s_only_keys (root, allowed, "(top)", err, errcap))
        goto fail;
    if (!json_is_string (version) || json_string_length (version) == 0) {
        s_err (err, errcap, "version: must be a non-empty string");
        goto fail;
    }
    if (!json_is_string (default_name)) {
        s_err (err, errcap, "default: must name the policy for unknown names");
        goto fail;
    }
    if (!json_is_object (policies) || json_object_size (policies) == 0) {
        s_err (err, errcap, "policies: must be a non-empty object of named policies");
        goto fail;
    }
    if (steps_json && s_parse_steps (steps_json, "(top)", ladder.steps, &ladder.count, err,
                                     errcap))
        goto fail;
    if (urgent_json) {
        if (s_parse_steps (urgent_json, "(top).urgent", urgent_ladder.steps,
                           &urgent_ladder.count, err, errcap))
            goto fail;
        urgent_ladder.given = true;
    }
    self->version = strdup (json_string_value (version));
    self->default_name = strdup (json_string_value (default_name));
    self->policies = calloc (json_object_size (policies), sizeof *self->policies);
    if (!self->version || !self->default_name || !self->policies) {
        s_err (err, errcap, "out of memory");
        goto fail;
    }
    const char *name;
    json_t *value;
    json_object_foreach (policies, name, value) {
        if (s_parse_policy (value, name, &ladder, &urgent_ladder, &self->policies [self->count],
                            err, errcap))
            goto fail;
        self->count++;
    }
    if (!s_find (self, self->default_name)) {
        s_err (err, errcap, "default: '%s' is not one of the policies", self->default_name);
        goto fail;
    }
    json_decref (root);
    return self;
fail:
    json_decref (root);
    sla_destroy (&self);
    return NULL;
}

void
sla_destroy (sla_policies_t **self_p)
{
    assert (self_p);
    sla_policies_t *self = *self_p;
    if (self) {
        for (size_t i = 0; i < self->count; i++)
            free (self->policies [i].name);
        free (self->policies);
        free (self->version);
        free (self->default_name);
        free (self);
        *self_p = NULL;
    }
}

const char *
sla_version (const sla_policies_t *self)
{
    assert (self);
    return self->version;
}

const char *
sla_default_policy (const sla_policies_t *self)
{
    assert (self);
    return self->default_name;
}

size_t
sla_policy_count (const sla_policies_t *self)
{
    assert (self);
    return self->count;
}

const char *
sla_policy_name (const sla_policies_t *self, size_t index)
{
    assert (self);
    return index < self->count ? self->policies [index].name : NULL;
}

bool
sla_has_policy (const sla_policies_t *self, const char *name)
{
    assert (self);
    return s_find (self, name) != NULL;
}

const char *
sla_effective_policy (const sla_policies_t *self, const char *name)
{
    assert (self);
    return s_policy (self, name)->name;
}

const sla_stage_t *
sla_stage (const sla_policies_t *self, const char *policy, Civicbus__V1__Stage stage,
           Civicbus__V1__Urgency urgency)
{
    assert (self);
    if (stage < CIVICBUS__V1__STAGE__STAGE_ACCEPT || stage > CIVICBUS__V1__STAGE__STAGE_VERIFY)
        return NULL;
    int urgent = urgency == CIVICBUS__V1__URGENCY__URGENCY_URGENT;
    return &s_policy (self, policy)->stage [urgent][stage - 1];
}

int
sla_extension_max_days (const sla_policies_t *self, const char *policy)
{
    assert (self);
    return s_policy (self, policy)->extension_max;
}

/* ---- public: time ---- */

int64_t
sla_duration_ms (const sla_duration_t *duration, const workcal_t *cal)
{
    assert (duration && duration->unit);
    double unit_ms = HOUR_MS;
    if (strcmp (duration->unit, "minutes") == 0)
        unit_ms = 60000.0;
    else
    if (strcmp (duration->unit, "days") == 0)
        unit_ms = 24 * HOUR_MS;
    else
    if (strcmp (duration->unit, "working_days") == 0)
        unit_ms = (double) workcal_standard_day_ms (cal);
    return (int64_t) llround (duration->amount * unit_ms);
}

int64_t
sla_add_duration (int64_t from_ms, const sla_duration_t *duration, const workcal_t *cal)
{
    return s_add (from_ms, sla_duration_ms (duration, cal), duration->working, cal);
}

int
sla_stage_deadline (const sla_policies_t *self, const char *policy, Civicbus__V1__Stage stage,
                    Civicbus__V1__Urgency urgency, int64_t start_ms, const workcal_t *cal,
                    Civicbus__V1__Deadline *out)
{
    assert (self && cal && out);
    const sla_stage_t *rules = sla_stage (self, policy, stage, urgency);
    if (!rules)
        return SLA_ERROR;
    out->stage = stage;
    out->started_ms = start_ms;
    out->remaining_ms = 0;
    out->due_ms = out->warn_ms = 0;
    if (!rules->has_limit)
        return SLA_NO_LIMIT;
    int64_t limit = sla_duration_ms (&rules->limit, cal);
    int64_t warn = (int64_t) llround ((double) limit * rules->warn_share);
    out->due_ms = s_add (start_ms, limit, rules->limit.working, cal);
    out->warn_ms = s_add (start_ms, warn, rules->limit.working, cal);
    //  A working-day limit on a calendar without a working day is 0 ms.
    if (out->due_ms == INT64_MAX || limit <= 0) {
        out->due_ms = INT64_MAX;
        out->warn_ms = INT64_MAX;
        return SLA_NEVER;
    }
    return SLA_OK;
}

int
sla_extend (Civicbus__V1__Deadline *deadline, int working_days, const workcal_t *cal)
{
    assert (deadline && cal);
    if (working_days < 1)
        return SLA_ERROR;
    if (sla_deadline_paused (deadline)) {
        deadline->remaining_ms += (int64_t) working_days * workcal_standard_day_ms (cal);
        //  Still paused: an extension never turns "overdue by 1 ms" into 0.
        if (deadline->remaining_ms == 0)
            deadline->remaining_ms = 1;
        return SLA_OK;
    }
    if (!sla_deadline_running (deadline))
        return SLA_ERROR;
    int64_t due = add_working_days (deadline->due_ms, working_days, cal);
    int64_t warn = add_working_days (deadline->warn_ms, working_days, cal);
    if (due == INT64_MAX)
        return SLA_NEVER;
    deadline->due_ms = due;
    deadline->warn_ms = warn < due ? warn : due;
    return SLA_OK;
}

int
sla_pause (const sla_policies_t *self, const char *policy, Civicbus__V1__Urgency urgency,
           Civicbus__V1__Deadline *deadline, int64_t now_ms, const workcal_t *cal)
{
    assert (self && deadline && cal);
    const sla_stage_t *rules = s_deadline_stage (self, policy, urgency, deadline);
    if (!rules || !sla_deadline_running (deadline))
        return SLA_ERROR;
    bool working = rules->limit.working;
    int64_t due = deadline->due_ms, remaining;
    if (now_ms < due) {
        remaining = working ? working_time_between (now_ms, due, cal) : due - now_ms;
        //  Before due but in a gap with no office time left until due (e.g.
        //  due at 17:30, paused at 17:30 minus nothing): nothing is left.
        if (remaining == 0)
            remaining = -1;
    }
    else {
        int64_t late = working ? working_time_between (due, now_ms, cal) : now_ms - due;
        remaining = late > 0 ? -late : -1;
    }
    deadline->remaining_ms = remaining;
    deadline->due_ms = 0;
    deadline->warn_ms = 0;
    return SLA_OK;
}

int
sla_resume (const sla_policies_t *self, const char *policy, Civicbus__V1__Urgency urgency,
            Civicbus__V1__Deadline *deadline, int64_t now_ms, const workcal_t *cal)
{
    assert (self && deadline && cal);
    const sla_stage_t *rules = s_deadline_stage (self, policy, urgency, deadline);
    if (!rules || !sla_deadline_paused (deadline))
        return SLA_ERROR;
    bool working = rules->limit.working;
    int64_t remaining = deadline->remaining_ms, due, warn;
    if (remaining > 0) {
        due = s_add (now_ms, remaining, working, cal);
        if (due == INT64_MAX)
            return SLA_NEVER;
        //  The yellow tail: the last (1 - share) of the limit.
        int64_t limit = rules->has_limit ? sla_duration_ms (&rules->limit, cal) : 0;
        int64_t tail = limit - (int64_t) llround ((double) limit * rules->warn_share);
        warn = remaining > tail ? s_add (now_ms, remaining - tail, working, cal) : now_ms;
    }
    else {
        due = working ? s_sub_working (now_ms, -remaining, cal) : now_ms + remaining;
        if (due == INT64_MIN || due > now_ms || due <= 0)
            due = now_ms;       //  no such office time: overdue from now on
        warn = due;
    }
    deadline->due_ms = due;
    deadline->warn_ms = warn < due ? warn : due;
    deadline->remaining_ms = 0;
    return SLA_OK;
}

bool
sla_deadline_running (const Civicbus__V1__Deadline *deadline)
{
    return deadline && deadline->due_ms > 0 && deadline->finished_ms == 0;
}

bool
sla_deadline_paused (const Civicbus__V1__Deadline *deadline)
{
    return deadline && deadline->due_ms == 0 && deadline->remaining_ms != 0
        && deadline->finished_ms == 0;
}

Civicbus__V1__Light
sla_light_at (const Civicbus__V1__Deadline *deadline, int64_t now_ms)
{
    assert (deadline);
    if (deadline->finished_ms && deadline->due_ms > 0)
        //  A finished stage keeps the light it ended with (KPIs: on time?).
        now_ms = deadline->finished_ms;
    else
    if (!sla_deadline_running (deadline))
        return deadline->remaining_ms < 0 ? CIVICBUS__V1__LIGHT__LIGHT_RED
                                          : CIVICBUS__V1__LIGHT__LIGHT_GREEN;
    if (now_ms >= deadline->due_ms)
        return CIVICBUS__V1__LIGHT__LIGHT_RED;
    if (now_ms >= deadline->warn_ms)
        return CIVICBUS__V1__LIGHT__LIGHT_YELLOW;
    return CIVICBUS__V1__LIGHT__LIGHT_GREEN;
}

size_t
sla_step_times (const sla_policies_t *self, const char *policy, Civicbus__V1__Urgency urgency,
                const Civicbus__V1__Deadline *deadline, const workcal_t *cal,
                int64_t *times, size_t cap, const sla_step_t **steps)
{
    assert (self && deadline && cal);
    const sla_stage_t *rules = s_deadline_stage (self, policy, urgency, deadline);
    if (steps)
        *steps = rules ? rules->steps : NULL;
    if (!rules || !sla_deadline_running (deadline))
        return 0;
    for (size_t i = 0; i < rules->step_count && i < cap; i++)
        times [i] = sla_add_duration (deadline->due_ms, &rules->steps [i].after, cal);
    return rules->step_count < cap ? rules->step_count : cap;
}

const sla_step_t *
sla_step_at (const sla_policies_t *self, const char *policy, Civicbus__V1__Urgency urgency,
             const Civicbus__V1__Deadline *deadline, int64_t now_ms, const workcal_t *cal,
             int64_t *at_ms)
{
    int64_t times [SLA_MAX_STEPS];
    const sla_step_t *steps = NULL, *found = NULL;
    size_t n = sla_step_times (self, policy, urgency, deadline, cal, times, SLA_MAX_STEPS, &steps);
    for (size_t i = 0; i < n; i++)
        if (times [i] <= now_ms) {
            found = &steps [i];
            if (at_ms)
                *at_ms = times [i];
        }
    return found;
}

const char *
sla_stage_name (Civicbus__V1__Stage stage)
{
    if (stage < CIVICBUS__V1__STAGE__STAGE_ACCEPT || stage > CIVICBUS__V1__STAGE__STAGE_VERIFY)
        return NULL;
    return s_stage_names [stage - 1];
}

int
sla_stage_from_name (const char *name)
{
    for (int s = 0; name && s < S_STAGES; s++)
        if (strcmp (s_stage_names [s], name) == 0)
            return s + 1;
    return -1;
}
