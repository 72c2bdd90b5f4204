/*  test_ticket_fsm.c — the ticket lifecycle state machine and the protobuf-c
    field helpers it edits tickets with.

    The heart is a table written from the specification (DESIGN.md "Ticket
    lifecycle" and the brief), not from the code: for each of the 11 states
    and each event, what a suitably privileged actor gets. Every refusal
    there is also checked to leave the packed ticket byte for byte the same.
    Then actor rights, each event's field edits and effects, and leaks
    (every ticket is released with free_unpacked; run under ASan). */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "civicbus/ticket_fsm.h"
#include "civicbus/pbutil.h"

#define ST(name) CIVICBUS__V1__TICKET_STATE__##name
#define AK(name) CIVICBUS__V1__ACTOR_KIND__ACTOR_##name
#define STATE_FIRST 1
#define STATE_LAST  11
#define NOW_MS      1700000000000LL

static const ticket_actor_t s_system     = { AK (SYSTEM), "rules", NULL };
static const ticket_actor_t s_operator   = { AK (OPERATOR), "op1", "Operator One" };
static const ticket_actor_t s_supervisor = { AK (SUPERVISOR), "sup1", NULL };
static const ticket_actor_t s_reporter   = { AK (REPORTER), "citizen", NULL };
static const ticket_actor_t s_urban      = { AK (DEPARTMENT), "urban", NULL };   //  primary
static const ticket_actor_t s_police     = { AK (DEPARTMENT), "police", NULL };  //  co-handler
static const ticket_actor_t s_civil      = { AK (DEPARTMENT), "civil", NULL };   //  stranger

/* ---- fixtures ---- */

//  A heap ticket in `state` with the fields that state implies: a
//  department (urban, co-handler police) from DISPATCHED on, the reason or
//  target of a final state, an exclusion once returned.
static cb_ticket_t *
s_ticket_new (cb_state_t state)
{
    cb_ticket_t *t = malloc (sizeof (*t));
    assert_non_null (t);
    civicbus__v1__ticket__init (t);
    assert_int_equal (pb_set_string (&t->id, "T1"), 0);
    assert_int_equal (pb_set_string (&t->description, "street lamp out"), 0);
    t->state = state;
    t->version = 7;
    t->created_ms = 1000;
    t->updated_ms = 1000;
    switch (state) {
        case ST (DISPATCHED): case ST (IN_PROGRESS): case ST (RESOLVED):
        case ST (CLOSED): case ST (SUSPENDED):
            assert_int_equal (pb_set_string (&t->department, "urban"), 0);
            assert_int_equal (pb_strv_push (&t->n_co_handlers, &t->co_handlers, "police"), 0);
            break;
        default:
            break;
    }
    if (state == ST (SUSPENDED))
        t->state_before_suspend = ST (IN_PROGRESS);
    if (state == ST (RESOLVED) || state == ST (CLOSED))
        assert_int_equal (pb_set_string (&t->resolution, "lamp replaced"), 0);
    if (state == ST (REJECTED))
        assert_int_equal (pb_set_string (&t->reject_reason, "not a city matter"), 0);
    if (state == ST (MERGED))
        assert_int_equal (pb_set_string (&t->merged_into, "T0"), 0);
    if (state == ST (RETURNED))
        assert_int_equal (pb_strv_push (&t->n_excluded_departments,
                                        &t->excluded_departments, "market"), 0);
    return t;
}

static void
s_ticket_free (cb_ticket_t *t)
{
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

//  The overlays some decisions need: something pending to decide.
static void
s_prepare (cb_ticket_t *t, ticket_event_kind_t kind)
{
    if (kind == TEV_APPROVE_EXTENSION || kind == TEV_REFUSE_EXTENSION) {
        t->extension_pending = true;
        t->extension_days = 5;
    }
    if (kind == TEV_APPROVE_SUSPENSION || kind == TEV_REFUSE_SUSPENSION)
        t->suspension_pending = true;
}

static const char *s_co_health [] = { "health", NULL };

//  A complete, valid input for `kind`.
static ticket_input_t
s_input (ticket_event_kind_t kind)
{
    ticket_input_t input = {
        .kind = kind, .department = "civil", .co_handlers = s_co_health,
        .text = "reason, result or note", .days = 5, .target_id = "T0",
        .satisfaction = 4
    };
    return input;
}

//  The actor the specification gives the event to.
static const ticket_actor_t *
s_privileged (ticket_event_kind_t kind)
{
    switch (kind) {
        case TEV_SIGN: case TEV_RETURN: case TEV_REQUEST_EXTENSION:
        case TEV_REQUEST_SUSPENSION: case TEV_PROGRESS: case TEV_RESOLVE:
            return &s_urban;
        case TEV_ESCALATE:
            return &s_supervisor;
        default:
            return &s_operator;
    }
}

static uint8_t *
s_pack (const cb_ticket_t *t, size_t *len)
{
    *len = civicbus__v1__ticket__get_packed_size (t);
    uint8_t *buf = malloc (*len ? *len : 1);
    assert_non_null (buf);
    assert_int_equal (civicbus__v1__ticket__pack (t, buf), *len);
    return buf;
}

static int
s_apply (cb_ticket_t *t, const ticket_input_t *input,
         const ticket_actor_t *actor, ticket_outcome_t *out)
{
    return ticket_apply_event (t, input, actor, NOW_MS, out);
}

//  Applies and asserts a refusal with `code` that left `t` unchanged.
static void
s_expect_refusal (cb_ticket_t *t, const ticket_input_t *input,
                  const ticket_actor_t *actor, const char *code)
{
    size_t len_before, len_after;
    uint8_t *before = s_pack (t, &len_before);
    cb_state_t state = t->state;
    ticket_outcome_t out;
    int rc = s_apply (t, input, actor, &out);
    uint8_t *after = s_pack (t, &len_after);
    if (rc != -1 || !out.code || strcmp (out.code, code) != 0)
        fail_msg ("event %s in %s: rc %d code %s (%s), wanted %s",
                  ticket_event_name (input->kind), ticket_state_name (state), rc,
                  out.code ? out.code : "NULL", out.reason, code);
    assert_true (strlen (out.reason) > 10);
    assert_int_equal (out.from, state);
    assert_int_equal (out.to, state);
    assert_int_equal (out.effects, TFX_NONE);
    assert_int_equal (len_after, len_before);
    assert_memory_equal (after, before, len_before);
    free (before);
    free (after);
}

//  Applies and asserts success to `to` with exactly `effects`.
static void
s_expect_ok (cb_ticket_t *t, const ticket_input_t *input,
             const ticket_actor_t *actor, cb_state_t to, uint32_t effects)
{
    cb_state_t from = t->state;
    int64_t version = t->version;
    ticket_outcome_t out;
    int rc = s_apply (t, input, actor, &out);
    if (rc != 0)
        fail_msg ("event %s in %s refused: %s (%s)", ticket_event_name (input->kind),
                  ticket_state_name (from), out.code ? out.code : "NULL", out.reason);
    assert_null (out.code);
    assert_string_equal (out.reason, "");
    assert_int_equal (out.from, from);
    assert_int_equal (out.to, to);
    assert_int_equal (t->state, to);
    if (out.effects != effects)
        fail_msg ("event %s in %s: effects 0x%x, wanted 0x%x", ticket_event_name (input->kind),
                  ticket_state_name (from), out.effects, effects);
    assert_int_equal (t->updated_ms, NOW_MS);
    assert_int_equal (t->version, version);
}

/* ---- the whole (state, event) table ---- */

typedef struct {
    int rc;
    cb_state_t to;
    const char *code;
} expect_t;

#define OK(s) { 0, ST (s), NULL }
#define WS    { -1, 0, "wrong_state" }
#define FS    { -1, 0, "final_state" }

//  Columns: RECEIVED ACCEPTED DISPATCHED IN_PROGRESS RESOLVED CLOSED
//           REJECTED RETURNED SUSPENDED MERGED CANCELLED
static const expect_t s_expect [TEV_COUNT][STATE_LAST] = {
    [TEV_ACCEPT]    = { OK (ACCEPTED), WS, WS, WS, WS, FS, FS, WS, WS, FS, FS },
    [TEV_REJECT]    = { OK (REJECTED), WS, WS, WS, WS, FS, FS, WS, WS, FS, FS },
    [TEV_DISPATCH]  = { WS, OK (DISPATCHED), WS, WS, WS, FS, FS, OK (DISPATCHED), WS, FS, FS },
    [TEV_REASSIGN]  = { WS, WS, OK (DISPATCHED), OK (DISPATCHED), WS, FS, FS, OK (DISPATCHED), WS, FS, FS },
    [TEV_SIGN]      = { WS, WS, OK (IN_PROGRESS), WS, WS, FS, FS, WS, WS, FS, FS },
    [TEV_RETURN]    = { WS, WS, OK (RETURNED), OK (RETURNED), WS, FS, FS, WS, WS, FS, FS },
    [TEV_REQUEST_EXTENSION]  = { WS, WS, WS, OK (IN_PROGRESS), WS, FS, FS, WS, WS, FS, FS },
    [TEV_APPROVE_EXTENSION]  = { WS, WS, WS, OK (IN_PROGRESS), WS, FS, FS, WS, WS, FS, FS },
    [TEV_REFUSE_EXTENSION]   = { WS, WS, WS, OK (IN_PROGRESS), WS, FS, FS, WS, WS, FS, FS },
    [TEV_REQUEST_SUSPENSION] = { WS, WS, WS, OK (IN_PROGRESS), WS, FS, FS, WS, WS, FS, FS },
    [TEV_APPROVE_SUSPENSION] = { WS, WS, WS, OK (SUSPENDED), WS, FS, FS, WS, WS, FS, FS },
    [TEV_REFUSE_SUSPENSION]  = { WS, WS, WS, OK (IN_PROGRESS), WS, FS, FS, WS, WS, FS, FS },
    [TEV_RESUME]    = { WS, WS, WS, WS, WS, FS, FS, WS, OK (IN_PROGRESS), FS, FS },
    [TEV_PROGRESS]  = { WS, WS, WS, OK (IN_PROGRESS), WS, FS, FS, WS, WS, FS, FS },
    [TEV_RESOLVE]   = { WS, WS, WS, OK (RESOLVED), WS, FS, FS, WS, WS, FS, FS },
    [TEV_VERIFY]    = { WS, WS, WS, WS, OK (CLOSED), FS, FS, WS, WS, FS, FS },
    [TEV_REOPEN]    = { WS, WS, WS, WS, OK (IN_PROGRESS), OK (IN_PROGRESS), FS, WS, WS, FS, FS },
    [TEV_MERGE]     = { OK (MERGED), OK (MERGED), OK (MERGED), WS, WS, FS, FS, OK (MERGED), WS, FS, FS },
    [TEV_CANCEL]    = { OK (CANCELLED), OK (CANCELLED), OK (CANCELLED), WS, WS, FS, FS,
                        OK (CANCELLED), WS, FS, FS },
    [TEV_FOLLOW_UP] = { WS, WS, WS, WS, WS, OK (CLOSED), FS, WS, WS, FS, FS },
    [TEV_ESCALATE]  = { OK (RECEIVED), OK (ACCEPTED), OK (DISPATCHED), OK (IN_PROGRESS),
                        OK (RESOLVED), FS, FS, OK (RETURNED), OK (SUSPENDED), FS, FS },
    [TEV_URGE]      = { OK (RECEIVED), OK (ACCEPTED), OK (DISPATCHED), OK (IN_PROGRESS),
                        OK (RESOLVED), FS, FS, OK (RETURNED), OK (SUSPENDED), FS, FS },
    [TEV_SUPPLEMENT]= { OK (RECEIVED), OK (ACCEPTED), OK (DISPATCHED), OK (IN_PROGRESS),
                        OK (RESOLVED), FS, FS, OK (RETURNED), OK (SUSPENDED), FS, FS },
};

static void
test_every_state_and_event (void **state)
{
    (void) state;
    int allowed = 0, refused = 0;
    for (int st = STATE_FIRST; st <= STATE_LAST; st++)
        for (int kind = 0; kind < TEV_COUNT; kind++) {
            const expect_t *want = &s_expect [kind][st - 1];
            cb_ticket_t *t = s_ticket_new ((cb_state_t) st);
            s_prepare (t, (ticket_event_kind_t) kind);
            ticket_input_t input = s_input ((ticket_event_kind_t) kind);
            const ticket_actor_t *actor = s_privileged ((ticket_event_kind_t) kind);
            if (want->rc == 0) {
                ticket_outcome_t out;
                int rc = s_apply (t, &input, actor, &out);
                if (rc != 0 || out.to != want->to || t->state != want->to)
                    fail_msg ("%s in %s: rc %d to %s (%s), wanted %s",
                              ticket_event_name (kind), ticket_state_name (st), rc,
                              ticket_state_name (out.to), out.reason,
                              ticket_state_name (want->to));
                assert_int_equal (out.from, st);
                assert_null (out.code);
                assert_int_equal (t->updated_ms, NOW_MS);
                assert_int_equal (t->version, 7);
                allowed++;
            }
            else {
                s_expect_refusal (t, &input, actor, want->code);
                //  The reason names the state it was refused in.
                ticket_outcome_t out;
                s_apply (t, &input, actor, &out);
                if (!strstr (out.reason, ticket_state_name (st)))
                    fail_msg ("reason '%s' does not name %s", out.reason,
                              ticket_state_name (st));
                refused++;
            }
            s_ticket_free (t);
        }
    assert_int_equal (allowed + refused, STATE_LAST * TEV_COUNT);
    assert_int_equal (allowed, 52);
}

//  A ticket in no real state takes nothing, and says so.
static void
test_unknown_state_refuses_everything (void **state)
{
    (void) state;
    cb_state_t odd [] = { ST (TICKET_STATE_UNSPECIFIED), (cb_state_t) 12, (cb_state_t) 99,
                          (cb_state_t) -1 };
    for (size_t i = 0; i < sizeof (odd) / sizeof (odd [0]); i++)
        for (int kind = 0; kind < TEV_COUNT; kind++) {
            cb_ticket_t *t = s_ticket_new (ST (IN_PROGRESS));
            t->state = odd [i];
            s_prepare (t, (ticket_event_kind_t) kind);
            ticket_input_t input = s_input ((ticket_event_kind_t) kind);
            s_expect_refusal (t, &input, s_privileged ((ticket_event_kind_t) kind), "wrong_state");
            ticket_outcome_t out;
            s_apply (t, &input, s_privileged ((ticket_event_kind_t) kind), &out);
            assert_non_null (strstr (out.reason, "UNKNOWN"));
            s_ticket_free (t);
        }
}

static void
test_unknown_event_kind_is_bad_value (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (RECEIVED));
    ticket_input_t input = s_input (TEV_ACCEPT);
    input.kind = TEV_COUNT;
    s_expect_refusal (t, &input, &s_operator, "bad_value");
    input.kind = (ticket_event_kind_t) -1;
    s_expect_refusal (t, &input, &s_operator, "bad_value");
    s_ticket_free (t);
}

/* ---- actor rights ---- */

#define R_SYS  (1u << AK (SYSTEM))
#define R_OP   (1u << AK (OPERATOR))
#define R_DEP  (1u << AK (DEPARTMENT))
#define R_REP  (1u << AK (REPORTER))
#define R_SUP  (1u << AK (SUPERVISOR))

//  Who may send each event, from the specification.
static const unsigned s_rights [TEV_COUNT] = {
    [TEV_ACCEPT]             = R_SYS | R_OP,
    [TEV_REJECT]             = R_SYS | R_OP,
    [TEV_DISPATCH]           = R_SYS | R_OP,
    [TEV_REASSIGN]           = R_OP,
    [TEV_SIGN]               = R_DEP,
    [TEV_RETURN]             = R_DEP,
    [TEV_REQUEST_EXTENSION]  = R_DEP,
    [TEV_APPROVE_EXTENSION]  = R_OP | R_SUP,
    [TEV_REFUSE_EXTENSION]   = R_OP | R_SUP,
    [TEV_REQUEST_SUSPENSION] = R_DEP,
    [TEV_APPROVE_SUSPENSION] = R_OP | R_SUP,
    [TEV_REFUSE_SUSPENSION]  = R_OP | R_SUP,
    [TEV_RESUME]             = R_OP | R_SUP | R_DEP,
    [TEV_PROGRESS]           = R_DEP,
    [TEV_RESOLVE]            = R_DEP,
    [TEV_VERIFY]             = R_OP | R_SUP,
    [TEV_REOPEN]             = R_OP | R_SUP,
    [TEV_MERGE]              = R_OP | R_SYS,
    [TEV_CANCEL]             = R_REP | R_OP,
    [TEV_FOLLOW_UP]          = R_OP,
    [TEV_ESCALATE]           = R_SYS | R_SUP,
    [TEV_URGE]               = R_SYS | R_OP | R_REP,
    [TEV_SUPPLEMENT]         = R_REP | R_OP,
};

//  For each event, in a state where it applies, every actor kind: the ones
//  with the right succeed, the others get "not_allowed" and change nothing.
static void
test_actor_rights_matrix (void **state)
{
    (void) state;
    const ticket_actor_t *actors [] = {
        &s_system, &s_operator, &s_urban, &s_reporter, &s_supervisor
    };
    const char *phrases [] = {
        "the system", "an operator", "a department", "a reporter", "a supervisor"
    };
    for (int kind = 0; kind < TEV_COUNT; kind++) {
        int st = STATE_FIRST;
        while (s_expect [kind][st - 1].rc != 0)
            st++;
        for (size_t a = 0; a < sizeof (actors) / sizeof (actors [0]); a++) {
            cb_ticket_t *t = s_ticket_new ((cb_state_t) st);
            s_prepare (t, (ticket_event_kind_t) kind);
            ticket_input_t input = s_input ((ticket_event_kind_t) kind);
            bool may = (s_rights [kind] & (1u << actors [a]->kind)) != 0;
            if (may) {
                ticket_outcome_t out;
                if (s_apply (t, &input, actors [a], &out) != 0)
                    fail_msg ("%s by %s refused: %s", ticket_event_name (kind),
                              phrases [a], out.reason);
            }
            else {
                s_expect_refusal (t, &input, actors [a], "not_allowed");
                ticket_outcome_t out;
                s_apply (t, &input, actors [a], &out);
                char wanted [96];
                snprintf (wanted, sizeof (wanted), "%s cannot ", phrases [a]);
                if (strncmp (out.reason, wanted, strlen (wanted)) != 0)
                    fail_msg ("reason '%s' should start '%s'", out.reason, wanted);
            }
            s_ticket_free (t);
        }
    }
}

static void
test_unidentified_actors_may_do_nothing (void **state)
{
    (void) state;
    ticket_actor_t nobody = { AK (UNSPECIFIED), "x", NULL };
    ticket_actor_t alien = { (Civicbus__V1__ActorKind) 42, "x", NULL };
    ticket_actor_t negative = { (Civicbus__V1__ActorKind) -1, "x", NULL };
    for (int kind = 0; kind < TEV_COUNT; kind++) {
        cb_ticket_t *t = s_ticket_new (ST (IN_PROGRESS));
        ticket_input_t input = s_input ((ticket_event_kind_t) kind);
        s_expect_refusal (t, &input, &nobody, "not_allowed");
        s_expect_refusal (t, &input, &alien, "not_allowed");
        s_expect_refusal (t, &input, &negative, "not_allowed");
        s_ticket_free (t);
    }
}

static void
test_department_cannot_close (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (RESOLVED));
    ticket_input_t input = s_input (TEV_VERIFY);
    s_expect_refusal (t, &input, &s_urban, "not_allowed");
    ticket_outcome_t out;
    s_apply (t, &input, &s_urban, &out);
    assert_string_equal (out.reason, "a department cannot close a ticket");
    s_ticket_free (t);
}

static void
test_operator_cannot_sign_or_return (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (DISPATCHED));
    ticket_input_t sign = s_input (TEV_SIGN);
    ticket_input_t ret = s_input (TEV_RETURN);
    s_expect_refusal (t, &sign, &s_operator, "not_allowed");
    s_expect_refusal (t, &ret, &s_operator, "not_allowed");
    s_expect_refusal (t, &sign, &s_supervisor, "not_allowed");
    ticket_outcome_t out;
    s_apply (t, &sign, &s_operator, &out);
    assert_string_equal (out.reason, "an operator cannot sign a ticket");
    s_ticket_free (t);
}

//  A reporter withdraws before a department signs, and not after; urges
//  and supplements reach whoever holds the ticket; nothing else.
static void
test_reporter_rights (void **state)
{
    (void) state;
    cb_state_t before_sign [] = { ST (RECEIVED), ST (ACCEPTED), ST (DISPATCHED), ST (RETURNED) };
    ticket_input_t cancel = s_input (TEV_CANCEL);
    for (size_t i = 0; i < 4; i++) {
        cb_ticket_t *t = s_ticket_new (before_sign [i]);
        uint32_t effects = TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER;
        if (before_sign [i] == ST (DISPATCHED))
            effects |= TFX_CANCEL_DISPATCH;
        s_expect_ok (t, &cancel, &s_reporter, ST (CANCELLED), effects);
        s_ticket_free (t);
    }
    cb_ticket_t *t = s_ticket_new (ST (IN_PROGRESS));
    s_expect_refusal (t, &cancel, &s_reporter, "wrong_state");
    ticket_outcome_t out;
    s_apply (t, &cancel, &s_reporter, &out);
    assert_non_null (strstr (out.reason, "cannot cancel a ticket in state IN_PROGRESS"));

    ticket_input_t urge = s_input (TEV_URGE);
    s_expect_ok (t, &urge, &s_reporter, ST (IN_PROGRESS), TFX_NOTIFY_DEPARTMENT);
    ticket_input_t sign = s_input (TEV_SIGN);
    ticket_input_t accept = s_input (TEV_ACCEPT);
    ticket_input_t follow = s_input (TEV_FOLLOW_UP);
    s_expect_refusal (t, &sign, &s_reporter, "not_allowed");
    s_expect_refusal (t, &accept, &s_reporter, "not_allowed");
    s_expect_refusal (t, &follow, &s_reporter, "not_allowed");
    s_ticket_free (t);

    t = s_ticket_new (ST (RECEIVED));
    ticket_input_t more = s_input (TEV_SUPPLEMENT);
    s_expect_ok (t, &more, &s_reporter, ST (RECEIVED), TFX_NOTIFY_OPERATORS);
    more.text = "  \t";
    s_expect_refusal (t, &more, &s_reporter, "missing_field");
    s_ticket_free (t);
}

static void
test_wrong_department_cannot_act (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (DISPATCHED));
    ticket_input_t sign = s_input (TEV_SIGN);
    s_expect_refusal (t, &sign, &s_civil, "not_allowed");
    ticket_outcome_t out;
    s_apply (t, &sign, &s_civil, &out);
    assert_string_equal (out.reason,
                         "department civil cannot sign a ticket that is not dispatched to it");
    ticket_actor_t anonymous = { AK (DEPARTMENT), NULL, NULL };
    s_expect_refusal (t, &sign, &anonymous, "not_allowed");
    anonymous.id = "";
    s_expect_refusal (t, &sign, &anonymous, "not_allowed");
    s_ticket_free (t);

    t = s_ticket_new (ST (SUSPENDED));
    ticket_input_t resume = s_input (TEV_RESUME);
    s_expect_refusal (t, &resume, &s_civil, "not_allowed");
    s_ticket_free (t);
}

//  A co-handler's sign, progress and resolve are notes; what only the
//  primary may do is refused "not_primary".
static void
test_co_handler (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (DISPATCHED));
    ticket_input_t sign = s_input (TEV_SIGN);
    ticket_input_t progress = s_input (TEV_PROGRESS);
    ticket_input_t resolve = s_input (TEV_RESOLVE);
    s_expect_ok (t, &sign, &s_police, ST (DISPATCHED), TFX_NONE);
    s_expect_ok (t, &progress, &s_police, ST (DISPATCHED), TFX_NOTIFY_DEPARTMENT);
    s_expect_ok (t, &resolve, &s_police, ST (DISPATCHED), TFX_NOTIFY_DEPARTMENT);
    assert_string_equal (t->resolution, "");
    //  The primary must sign before it reports progress.
    s_expect_refusal (t, &progress, &s_urban, "wrong_state");
    ticket_input_t ret = s_input (TEV_RETURN);
    s_expect_refusal (t, &ret, &s_police, "not_primary");
    ticket_outcome_t out;
    s_apply (t, &ret, &s_police, &out);
    assert_non_null (strstr (out.reason, "police is a co-handler"));
    assert_non_null (strstr (out.reason, "urban"));

    s_expect_ok (t, &sign, &s_urban, ST (IN_PROGRESS), TFX_STOP_TIMERS | TFX_START_RESOLVE);
    s_expect_ok (t, &sign, &s_police, ST (IN_PROGRESS), TFX_NONE);
    s_expect_ok (t, &resolve, &s_police, ST (IN_PROGRESS), TFX_NOTIFY_DEPARTMENT);
    assert_string_equal (t->resolution, "");
    ticket_input_t extension = s_input (TEV_REQUEST_EXTENSION);
    ticket_input_t suspension = s_input (TEV_REQUEST_SUSPENSION);
    s_expect_refusal (t, &extension, &s_police, "not_primary");
    s_expect_refusal (t, &suspension, &s_police, "not_primary");
    s_expect_refusal (t, &ret, &s_police, "not_primary");
    resolve.text = "lamp replaced";
    s_expect_ok (t, &resolve, &s_urban, ST (RESOLVED),
                 TFX_STOP_TIMERS | TFX_START_VERIFY | TFX_NOTIFY_REPORTER);
    assert_string_equal (t->resolution, "lamp replaced");
    //  Once resolved, a co-handler's late answer is out of place.
    s_expect_refusal (t, &progress, &s_police, "wrong_state");
    s_ticket_free (t);

    t = s_ticket_new (ST (SUSPENDED));
    ticket_input_t resume = s_input (TEV_RESUME);
    s_expect_refusal (t, &resume, &s_police, "not_primary");
    s_ticket_free (t);
}

/* ---- field effects ---- */

//  The main road, with the exact effects of each step.
static void
test_lifecycle_walk (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (RECEIVED));
    ticket_input_t input = s_input (TEV_ACCEPT);
    s_expect_ok (t, &input, &s_system, ST (ACCEPTED),
                 TFX_STOP_TIMERS | TFX_ROUTE | TFX_NOTIFY_REPORTER);

    const char *co [] = { "police", "civil", NULL };
    input = s_input (TEV_DISPATCH);
    input.department = "urban";
    input.co_handlers = co;
    s_expect_ok (t, &input, &s_system, ST (DISPATCHED), TFX_SEND_DISPATCH | TFX_START_SIGN);
    assert_string_equal (t->department, "urban");
    assert_int_equal (t->n_co_handlers, 2);
    assert_string_equal (t->co_handlers [0], "police");
    assert_string_equal (t->co_handlers [1], "civil");

    input = s_input (TEV_SIGN);
    s_expect_ok (t, &input, &s_urban, ST (IN_PROGRESS), TFX_STOP_TIMERS | TFX_START_RESOLVE);
    input = s_input (TEV_PROGRESS);
    s_expect_ok (t, &input, &s_urban, ST (IN_PROGRESS), TFX_NONE);
    input = s_input (TEV_RESOLVE);
    input.text = "lamp replaced";
    s_expect_ok (t, &input, &s_urban, ST (RESOLVED),
                 TFX_STOP_TIMERS | TFX_START_VERIFY | TFX_NOTIFY_REPORTER);
    assert_string_equal (t->resolution, "lamp replaced");
    input = s_input (TEV_VERIFY);
    s_expect_ok (t, &input, &s_supervisor, ST (CLOSED), TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER);
    input = s_input (TEV_FOLLOW_UP);
    input.satisfaction = 5;
    s_expect_ok (t, &input, &s_operator, ST (CLOSED), TFX_NONE);
    assert_int_equal (t->satisfaction, 5);
    assert_int_equal (t->version, 7);
    assert_true (ticket_state_is_final (t->state));
    s_ticket_free (t);
}

static void
test_reject_needs_reason (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (RECEIVED));
    ticket_input_t input = s_input (TEV_REJECT);
    input.text = NULL;
    s_expect_refusal (t, &input, &s_operator, "missing_field");
    input.text = " \n ";
    s_expect_refusal (t, &input, &s_operator, "missing_field");
    input.text = "not a city matter";
    s_expect_ok (t, &input, &s_system, ST (REJECTED), TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER);
    assert_string_equal (t->reject_reason, "not a city matter");
    input = s_input (TEV_URGE);
    s_expect_refusal (t, &input, &s_reporter, "final_state");
    s_ticket_free (t);
}

//  A return excludes the department, clears ownership and asks for routing;
//  the excluded department cannot get the ticket back.
static void
test_return_and_exclusion (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (DISPATCHED));
    t->extension_pending = true;     //  cannot really happen before signing,
    t->extension_days = 4;           //  but a lapse must clear it anyway
    ticket_input_t ret = s_input (TEV_RETURN);
    ret.text = NULL;
    s_expect_refusal (t, &ret, &s_urban, "missing_field");
    ret.text = "not ours: private land";
    s_expect_ok (t, &ret, &s_urban, ST (RETURNED),
                 TFX_STOP_TIMERS | TFX_ROUTE | TFX_CANCEL_DISPATCH);
    assert_int_equal (t->n_excluded_departments, 1);
    assert_string_equal (t->excluded_departments [0], "urban");
    assert_string_equal (t->department, "");
    assert_int_equal (t->n_co_handlers, 0);
    assert_null (t->co_handlers);
    assert_false (t->extension_pending);
    assert_int_equal (t->extension_days, 0);

    ticket_input_t dispatch = s_input (TEV_DISPATCH);
    dispatch.department = "urban";
    s_expect_refusal (t, &dispatch, &s_system, "excluded");
    ticket_input_t reassign = s_input (TEV_REASSIGN);
    reassign.department = "urban";
    s_expect_refusal (t, &reassign, &s_operator, "excluded");
    ticket_outcome_t out;
    s_apply (t, &dispatch, &s_system, &out);
    assert_non_null (strstr (out.reason, "urban"));

    dispatch.department = "civil";
    dispatch.co_handlers = NULL;
    s_expect_ok (t, &dispatch, &s_system, ST (DISPATCHED), TFX_SEND_DISPATCH | TFX_START_SIGN);
    ticket_input_t sign = s_input (TEV_SIGN);
    s_expect_ok (t, &sign, &s_civil, ST (IN_PROGRESS), TFX_STOP_TIMERS | TFX_START_RESOLVE);
    //  From IN_PROGRESS, no co-handlers: nothing else to withdraw.
    s_expect_ok (t, &ret, &s_civil, ST (RETURNED), TFX_STOP_TIMERS | TFX_ROUTE);
    assert_int_equal (t->n_excluded_departments, 2);
    assert_string_equal (t->excluded_departments [1], "civil");
    //  An operator reassigns a returned ticket (改派).
    reassign.department = "police";
    reassign.co_handlers = NULL;
    s_expect_ok (t, &reassign, &s_operator, ST (DISPATCHED),
                 TFX_STOP_TIMERS | TFX_SEND_DISPATCH | TFX_START_SIGN);
    assert_string_equal (t->department, "police");
    s_ticket_free (t);
}

static void
test_dispatch_inputs (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (ACCEPTED));
    ticket_input_t input = s_input (TEV_DISPATCH);
    input.department = NULL;
    s_expect_refusal (t, &input, &s_system, "missing_field");
    input.department = "";
    s_expect_refusal (t, &input, &s_system, "missing_field");
    input.department = "  ";
    s_expect_refusal (t, &input, &s_system, "missing_field");
    input.department = "civil";
    const char *twice [] = { "health", "health", NULL };
    input.co_handlers = twice;
    s_expect_refusal (t, &input, &s_system, "bad_value");
    const char *itself [] = { "health", "civil", NULL };
    input.co_handlers = itself;
    s_expect_refusal (t, &input, &s_system, "bad_value");
    const char *blank [] = { "", NULL };
    input.co_handlers = blank;
    s_expect_refusal (t, &input, &s_system, "bad_value");
    input.co_handlers = NULL;
    s_expect_ok (t, &input, &s_operator, ST (DISPATCHED), TFX_SEND_DISPATCH | TFX_START_SIGN);
    assert_int_equal (t->n_co_handlers, 0);
    assert_string_equal (t->department, "civil");
    s_ticket_free (t);
}

//  REASSIGN replaces department and co-handlers, withdraws the old order,
//  lapses a pending request, and refuses a no-op.
static void
test_reassign (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (IN_PROGRESS));
    t->extension_pending = true;
    t->extension_days = 6;
    t->suspension_pending = true;
    ticket_input_t input = s_input (TEV_REASSIGN);
    input.department = "urban";
    s_expect_refusal (t, &input, &s_operator, "bad_value");
    const char *co [] = { "health", "market", NULL };
    input.department = "civil";
    input.co_handlers = co;
    s_expect_ok (t, &input, &s_operator, ST (DISPATCHED),
                 TFX_STOP_TIMERS | TFX_CANCEL_DISPATCH | TFX_SEND_DISPATCH | TFX_START_SIGN);
    assert_string_equal (t->department, "civil");
    assert_int_equal (t->n_co_handlers, 2);
    assert_string_equal (t->co_handlers [0], "health");
    assert_string_equal (t->co_handlers [1], "market");
    assert_false (pb_strv_contains (t->n_co_handlers, t->co_handlers, "police"));
    assert_false (t->extension_pending);
    assert_int_equal (t->extension_days, 0);
    assert_false (t->suspension_pending);
    //  A reassigned department is not excluded: only a return excludes.
    assert_int_equal (t->n_excluded_departments, 0);
    input.department = "urban";
    input.co_handlers = NULL;
    s_expect_ok (t, &input, &s_operator, ST (DISPATCHED),
                 TFX_STOP_TIMERS | TFX_CANCEL_DISPATCH | TFX_SEND_DISPATCH | TFX_START_SIGN);
    assert_int_equal (t->n_co_handlers, 0);
    s_expect_refusal (t, &input, &s_system, "not_allowed");
    s_ticket_free (t);
}

static void
test_extension (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (IN_PROGRESS));
    ticket_input_t request = s_input (TEV_REQUEST_EXTENSION);
    ticket_input_t approve = s_input (TEV_APPROVE_EXTENSION);
    ticket_input_t refuse = s_input (TEV_REFUSE_EXTENSION);
    int32_t bad [] = { 0, -3, 31, 1000 };
    for (size_t i = 0; i < 4; i++) {
        request.days = bad [i];
        s_expect_refusal (t, &request, &s_urban, "bad_value");
    }
    s_expect_refusal (t, &approve, &s_operator, "wrong_state");
    s_expect_refusal (t, &refuse, &s_supervisor, "wrong_state");

    request.days = 30;
    s_expect_ok (t, &request, &s_urban, ST (IN_PROGRESS), TFX_NOTIFY_OPERATORS);
    assert_true (t->extension_pending);
    assert_int_equal (t->extension_days, 30);
    request.days = 5;
    s_expect_refusal (t, &request, &s_urban, "wrong_state");
    assert_int_equal (t->extension_days, 30);
    s_expect_refusal (t, &approve, &s_urban, "not_allowed");
    s_expect_ok (t, &approve, &s_supervisor, ST (IN_PROGRESS),
                 TFX_EXTEND_RESOLVE | TFX_NOTIFY_DEPARTMENT);
    assert_false (t->extension_pending);
    assert_int_equal (t->extension_days, 30);
    s_expect_refusal (t, &approve, &s_operator, "wrong_state");

    request.days = 1;
    s_expect_ok (t, &request, &s_urban, ST (IN_PROGRESS), TFX_NOTIFY_OPERATORS);
    assert_int_equal (t->extension_days, 1);
    s_expect_ok (t, &refuse, &s_operator, ST (IN_PROGRESS), TFX_NOTIFY_DEPARTMENT);
    assert_false (t->extension_pending);
    assert_int_equal (t->extension_days, 0);

    //  An approved extension stays on record through resolving; a pending
    //  one lapses.
    request.days = 10;
    s_expect_ok (t, &request, &s_urban, ST (IN_PROGRESS), TFX_NOTIFY_OPERATORS);
    s_expect_ok (t, &approve, &s_operator, ST (IN_PROGRESS),
                 TFX_EXTEND_RESOLVE | TFX_NOTIFY_DEPARTMENT);
    ticket_input_t resolve = s_input (TEV_RESOLVE);
    s_expect_ok (t, &resolve, &s_urban, ST (RESOLVED),
                 TFX_STOP_TIMERS | TFX_START_VERIFY | TFX_NOTIFY_REPORTER);
    assert_int_equal (t->extension_days, 10);
    s_ticket_free (t);

    t = s_ticket_new (ST (IN_PROGRESS));
    s_expect_ok (t, &request, &s_urban, ST (IN_PROGRESS), TFX_NOTIFY_OPERATORS);
    s_expect_ok (t, &resolve, &s_urban, ST (RESOLVED),
                 TFX_STOP_TIMERS | TFX_START_VERIFY | TFX_NOTIFY_REPORTER);
    assert_false (t->extension_pending);
    assert_int_equal (t->extension_days, 0);
    s_ticket_free (t);
}

static void
test_suspension (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (IN_PROGRESS));
    ticket_input_t request = s_input (TEV_REQUEST_SUSPENSION);
    ticket_input_t approve = s_input (TEV_APPROVE_SUSPENSION);
    ticket_input_t refuse = s_input (TEV_REFUSE_SUSPENSION);
    ticket_input_t resume = s_input (TEV_RESUME);
    s_expect_refusal (t, &approve, &s_operator, "wrong_state");
    request.text = NULL;
    s_expect_refusal (t, &request, &s_urban, "missing_field");
    request.text = "waiting for the owners' committee";
    s_expect_ok (t, &request, &s_urban, ST (IN_PROGRESS), TFX_NOTIFY_OPERATORS);
    assert_true (t->suspension_pending);
    s_expect_refusal (t, &request, &s_urban, "wrong_state");
    s_expect_ok (t, &approve, &s_supervisor, ST (SUSPENDED),
                 TFX_PAUSE_CLOCK | TFX_NOTIFY_DEPARTMENT);
    assert_false (t->suspension_pending);
    assert_int_equal (t->state_before_suspend, ST (IN_PROGRESS));
    s_expect_refusal (t, &request, &s_urban, "wrong_state");
    //  The department resumes itself: no need to tell it.
    s_expect_ok (t, &resume, &s_urban, ST (IN_PROGRESS), TFX_RESUME_CLOCK);
    assert_int_equal (t->state_before_suspend, ST (TICKET_STATE_UNSPECIFIED));

    s_expect_ok (t, &request, &s_urban, ST (IN_PROGRESS), TFX_NOTIFY_OPERATORS);
    s_expect_ok (t, &refuse, &s_operator, ST (IN_PROGRESS), TFX_NOTIFY_DEPARTMENT);
    assert_false (t->suspension_pending);
    s_expect_ok (t, &request, &s_urban, ST (IN_PROGRESS), TFX_NOTIFY_OPERATORS);
    s_expect_ok (t, &approve, &s_operator, ST (SUSPENDED),
                 TFX_PAUSE_CLOCK | TFX_NOTIFY_DEPARTMENT);
    s_expect_ok (t, &resume, &s_operator, ST (IN_PROGRESS),
                 TFX_RESUME_CLOCK | TFX_NOTIFY_DEPARTMENT);
    s_ticket_free (t);
}

static void
test_reopen_counts_rework (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (RESOLVED));
    ticket_input_t reopen = s_input (TEV_REOPEN);
    const uint32_t reopen_effects = TFX_STOP_TIMERS | TFX_START_RESOLVE
                                  | TFX_NOTIFY_DEPARTMENT | TFX_NOTIFY_REPORTER;
    reopen.text = NULL;
    s_expect_refusal (t, &reopen, &s_operator, "missing_field");
    reopen.text = "lamp still dark";
    s_expect_refusal (t, &reopen, &s_urban, "not_allowed");
    s_expect_ok (t, &reopen, &s_operator, ST (IN_PROGRESS), reopen_effects);
    assert_int_equal (t->rework_count, 1);
    assert_string_equal (t->resolution, "");
    assert_string_equal (t->department, "urban");

    ticket_input_t resolve = s_input (TEV_RESOLVE);
    ticket_input_t verify = s_input (TEV_VERIFY);
    ticket_input_t follow = s_input (TEV_FOLLOW_UP);
    follow.satisfaction = 2;
    s_expect_ok (t, &resolve, &s_urban, ST (RESOLVED),
                 TFX_STOP_TIMERS | TFX_START_VERIFY | TFX_NOTIFY_REPORTER);
    s_expect_ok (t, &verify, &s_operator, ST (CLOSED), TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER);
    s_expect_ok (t, &follow, &s_operator, ST (CLOSED), TFX_NONE);
    s_expect_ok (t, &reopen, &s_supervisor, ST (IN_PROGRESS), reopen_effects);
    assert_int_equal (t->rework_count, 2);
    assert_int_equal (t->satisfaction, 0);
    s_ticket_free (t);
}

static void
test_merge (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (RECEIVED));
    ticket_input_t merge = s_input (TEV_MERGE);
    merge.target_id = NULL;
    s_expect_refusal (t, &merge, &s_operator, "missing_field");
    merge.target_id = " ";
    s_expect_refusal (t, &merge, &s_operator, "missing_field");
    merge.target_id = "T1";
    s_expect_refusal (t, &merge, &s_operator, "bad_value");
    merge.target_id = "T0";
    s_expect_refusal (t, &merge, &s_reporter, "not_allowed");
    s_expect_ok (t, &merge, &s_system, ST (MERGED), TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER);
    assert_string_equal (t->merged_into, "T0");
    assert_true (ticket_state_is_final (t->state));
    ticket_input_t urge = s_input (TEV_URGE);
    s_expect_refusal (t, &urge, &s_operator, "final_state");
    s_ticket_free (t);

    t = s_ticket_new (ST (DISPATCHED));
    s_expect_ok (t, &merge, &s_operator, ST (MERGED),
                 TFX_STOP_TIMERS | TFX_NOTIFY_REPORTER | TFX_CANCEL_DISPATCH);
    s_ticket_free (t);
}

static void
test_follow_up_satisfaction_range (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (CLOSED));
    ticket_input_t follow = s_input (TEV_FOLLOW_UP);
    int32_t bad [] = { 0, -1, 6, 100 };
    for (size_t i = 0; i < 4; i++) {
        follow.satisfaction = bad [i];
        s_expect_refusal (t, &follow, &s_operator, "bad_value");
    }
    follow.satisfaction = 1;
    s_expect_ok (t, &follow, &s_operator, ST (CLOSED), TFX_NONE);
    assert_int_equal (t->satisfaction, 1);
    follow.satisfaction = 5;
    s_expect_refusal (t, &follow, &s_operator, "wrong_state");
    assert_int_equal (t->satisfaction, 1);
    s_ticket_free (t);

    t = s_ticket_new (ST (CLOSED));
    s_expect_ok (t, &follow, &s_operator, ST (CLOSED), TFX_NONE);
    assert_int_equal (t->satisfaction, 5);
    s_ticket_free (t);
}

static void
test_escalation_is_capped (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (IN_PROGRESS));
    ticket_input_t escalate = s_input (TEV_ESCALATE);
    s_expect_refusal (t, &escalate, &s_operator, "not_allowed");
    int32_t levels [] = { 1, 2, 3, 4, 4, 4 };
    for (size_t i = 0; i < 6; i++) {
        s_expect_ok (t, &escalate, &s_supervisor, ST (IN_PROGRESS),
                     TFX_NOTIFY_SUPERVISOR | TFX_NOTIFY_DEPARTMENT);
        assert_int_equal (t->escalation_level, levels [i]);
    }
    assert_int_equal (TICKET_ESCALATION_MAX, 4);
    s_ticket_free (t);

    t = s_ticket_new (ST (RECEIVED));
    s_expect_ok (t, &escalate, &s_system, ST (RECEIVED),
                 TFX_NOTIFY_SUPERVISOR | TFX_NOTIFY_OPERATORS);
    assert_int_equal (t->escalation_level, 1);
    s_ticket_free (t);
}

/* ---- names ---- */

static void
test_event_names_round_trip (void **state)
{
    (void) state;
    const char *expected [TEV_COUNT] = {
        "accept", "reject", "dispatch", "reassign", "sign", "return",
        "request_extension", "approve_extension", "refuse_extension",
        "request_suspension", "approve_suspension", "refuse_suspension",
        "resume", "progress", "resolve", "verify", "reopen", "merge", "cancel",
        "follow_up", "escalate", "urge", "supplement"
    };
    for (int kind = 0; kind < TEV_COUNT; kind++) {
        assert_string_equal (ticket_event_name ((ticket_event_kind_t) kind), expected [kind]);
        assert_int_equal (ticket_event_from_name (expected [kind]), kind);
    }
    assert_null (ticket_event_name (TEV_COUNT));
    assert_null (ticket_event_name ((ticket_event_kind_t) -1));
    assert_int_equal (ticket_event_from_name ("ACCEPT"), -1);
    assert_int_equal (ticket_event_from_name ("received"), -1);
    assert_int_equal (ticket_event_from_name (""), -1);
    assert_int_equal (ticket_event_from_name (NULL), -1);
}

static void
test_state_names_round_trip (void **state)
{
    (void) state;
    const char *expected [] = {
        "RECEIVED", "ACCEPTED", "DISPATCHED", "IN_PROGRESS", "RESOLVED", "CLOSED",
        "REJECTED", "RETURNED", "SUSPENDED", "MERGED", "CANCELLED"
    };
    for (int st = STATE_FIRST; st <= STATE_LAST; st++) {
        assert_string_equal (ticket_state_name ((cb_state_t) st), expected [st - 1]);
        assert_int_equal (ticket_state_from_name (expected [st - 1]), st);
        bool final = st == ST (CLOSED) || st == ST (REJECTED)
                  || st == ST (MERGED) || st == ST (CANCELLED);
        assert_int_equal (ticket_state_is_final ((cb_state_t) st), final);
    }
    assert_string_equal (ticket_state_name (ST (TICKET_STATE_UNSPECIFIED)), "UNKNOWN");
    assert_string_equal (ticket_state_name ((cb_state_t) 12), "UNKNOWN");
    assert_string_equal (ticket_state_name ((cb_state_t) -5), "UNKNOWN");
    assert_int_equal (ticket_state_from_name ("UNKNOWN"), -1);
    assert_int_equal (ticket_state_from_name ("received"), -1);
    assert_int_equal (ticket_state_from_name (NULL), -1);
    assert_false (ticket_state_is_final (ST (TICKET_STATE_UNSPECIFIED)));
}

/* ---- protobuf-c ownership ---- */

//  A ticket that came off the wire (default allocator) is edited through a
//  long life and released with free_unpacked: ASan reports any leak or bad
//  free, and the edits survive a pack/unpack round trip.
static void
test_unpacked_ticket_edits_and_frees (void **state)
{
    (void) state;
    cb_ticket_t *source = s_ticket_new (ST (ACCEPTED));
    assert_int_equal (pb_strv_push (&source->n_attachment_urls,
                                    &source->attachment_urls, "https://x/1.jpg"), 0);
    size_t len;
    uint8_t *wire = s_pack (source, &len);
    s_ticket_free (source);
    cb_ticket_t *t = civicbus__v1__ticket__unpack (NULL, len, wire);
    free (wire);
    assert_non_null (t);

    const char *co [] = { "police", NULL };
    ticket_input_t input = s_input (TEV_DISPATCH);
    input.department = "urban";
    input.co_handlers = co;
    s_expect_ok (t, &input, &s_system, ST (DISPATCHED), TFX_SEND_DISPATCH | TFX_START_SIGN);
    input = s_input (TEV_RETURN);
    s_expect_ok (t, &input, &s_urban, ST (RETURNED),
                 TFX_STOP_TIMERS | TFX_ROUTE | TFX_CANCEL_DISPATCH);
    input = s_input (TEV_DISPATCH);
    s_expect_ok (t, &input, &s_system, ST (DISPATCHED), TFX_SEND_DISPATCH | TFX_START_SIGN);
    input = s_input (TEV_SIGN);
    s_expect_ok (t, &input, &s_civil, ST (IN_PROGRESS), TFX_STOP_TIMERS | TFX_START_RESOLVE);
    input = s_input (TEV_RESOLVE);
    input.text = "first try";
    s_expect_ok (t, &input, &s_civil, ST (RESOLVED),
                 TFX_STOP_TIMERS | TFX_START_VERIFY | TFX_NOTIFY_REPORTER);
    input = s_input (TEV_REOPEN);
    s_expect_ok (t, &input, &s_operator, ST (IN_PROGRESS), TFX_STOP_TIMERS
                 | TFX_START_RESOLVE | TFX_NOTIFY_DEPARTMENT | TFX_NOTIFY_REPORTER);
    input = s_input (TEV_RESOLVE);
    input.text = "second try";
    s_expect_ok (t, &input, &s_civil, ST (RESOLVED),
                 TFX_STOP_TIMERS | TFX_START_VERIFY | TFX_NOTIFY_REPORTER);

    wire = s_pack (t, &len);
    cb_ticket_t *copy = civicbus__v1__ticket__unpack (NULL, len, wire);
    free (wire);
    assert_non_null (copy);
    assert_int_equal (copy->state, ST (RESOLVED));
    assert_string_equal (copy->department, "civil");
    assert_int_equal (copy->n_co_handlers, 1);
    assert_string_equal (copy->co_handlers [0], "health");
    assert_int_equal (copy->n_excluded_departments, 1);
    assert_string_equal (copy->excluded_departments [0], "urban");
    assert_string_equal (copy->resolution, "second try");
    assert_int_equal (copy->rework_count, 1);
    assert_int_equal (copy->updated_ms, NOW_MS);
    assert_string_equal (copy->attachment_urls [0], "https://x/1.jpg");
    s_ticket_free (copy);
    s_ticket_free (t);
}

static void
test_pb_set_string (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (RECEIVED));
    assert_ptr_equal (t->department, protobuf_c_empty_string);
    assert_int_equal (pb_set_string (&t->department, "urban"), 0);
    assert_string_equal (t->department, "urban");
    assert_ptr_not_equal (t->department, protobuf_c_empty_string);
    assert_int_equal (pb_set_string (&t->department, "civil"), 0);
    assert_string_equal (t->department, "civil");
    //  Setting a field to (a part of) its own value copies before freeing.
    assert_int_equal (pb_set_string (&t->department, t->department + 2), 0);
    assert_string_equal (t->department, "vil");
    assert_int_equal (pb_set_string (&t->department, ""), 0);
    assert_ptr_equal (t->department, protobuf_c_empty_string);
    assert_int_equal (pb_set_string (&t->resolution, "done"), 0);
    assert_int_equal (pb_set_string (&t->resolution, NULL), 0);
    assert_ptr_equal (t->resolution, protobuf_c_empty_string);
    //  A NULL field reads as empty and is replaced without a free.
    t->merged_into = NULL;
    assert_int_equal (pb_set_string (&t->merged_into, "T9"), 0);
    assert_string_equal (t->merged_into, "T9");
    assert_true (pb_string_is_empty (NULL));
    assert_true (pb_string_is_empty (""));
    assert_false (pb_string_is_empty (" "));
    pb_string_free ((char *) protobuf_c_empty_string);     //  a no-op
    pb_string_free (NULL);
    s_ticket_free (t);
}

static void
test_pb_strv (void **state)
{
    (void) state;
    cb_ticket_t *t = s_ticket_new (ST (RECEIVED));
    assert_int_equal (pb_strv_push (&t->n_co_handlers, &t->co_handlers, "a"), 0);
    assert_int_equal (pb_strv_push (&t->n_co_handlers, &t->co_handlers, "b"), 0);
    assert_int_equal (pb_strv_push (&t->n_co_handlers, &t->co_handlers, NULL), 0);
    assert_int_equal (t->n_co_handlers, 3);
    assert_string_equal (t->co_handlers [2], "");
    assert_ptr_not_equal (t->co_handlers [2], protobuf_c_empty_string);
    assert_true (pb_strv_contains (t->n_co_handlers, t->co_handlers, "b"));
    assert_true (pb_strv_contains (t->n_co_handlers, t->co_handlers, ""));
    assert_false (pb_strv_contains (t->n_co_handlers, t->co_handlers, "c"));
    assert_false (pb_strv_contains (0, NULL, "a"));
    pb_strv_clear (&t->n_co_handlers, &t->co_handlers);
    assert_int_equal (t->n_co_handlers, 0);
    assert_null (t->co_handlers);
    pb_strv_clear (&t->n_co_handlers, &t->co_handlers);    //  twice is fine

    const char *list [] = { "x", "y", NULL };
    assert_int_equal (pb_strv_push (&t->n_excluded_departments,
                                    &t->excluded_departments, "old"), 0);
    assert_int_equal (pb_strv_set (&t->n_excluded_departments,
                                   &t->excluded_departments, list), 0);
    assert_int_equal (t->n_excluded_departments, 2);
    assert_string_equal (t->excluded_departments [0], "x");
    assert_string_equal (t->excluded_departments [1], "y");
    assert_int_equal (pb_strv_set (&t->n_excluded_departments,
                                   &t->excluded_departments, NULL), 0);
    assert_int_equal (t->n_excluded_departments, 0);
    //  Leave something for free_unpacked to free.
    assert_int_equal (pb_strv_set (&t->n_attachment_urls, &t->attachment_urls, list), 0);
    s_ticket_free (t);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_every_state_and_event),
        cmocka_unit_test (test_unknown_state_refuses_everything),
        cmocka_unit_test (test_unknown_event_kind_is_bad_value),
        cmocka_unit_test (test_actor_rights_matrix),
        cmocka_unit_test (test_unidentified_actors_may_do_nothing),
        cmocka_unit_test (test_department_cannot_close),
        cmocka_unit_test (test_operator_cannot_sign_or_return),
        cmocka_unit_test (test_reporter_rights),
        cmocka_unit_test (test_wrong_department_cannot_act),
        cmocka_unit_test (test_co_handler),
        cmocka_unit_test (test_lifecycle_walk),
        cmocka_unit_test (test_reject_needs_reason),
        cmocka_unit_test (test_return_and_exclusion),
        cmocka_unit_test (test_dispatch_inputs),
        cmocka_unit_test (test_reassign),
        cmocka_unit_test (test_extension),
        cmocka_unit_test (test_suspension),
        cmocka_unit_test (test_reopen_counts_rework),
        cmocka_unit_test (test_merge),
        cmocka_unit_test (test_follow_up_satisfaction_range),
        cmocka_unit_test (test_escalation_is_capped),
        cmocka_unit_test (test_event_names_round_trip),
        cmocka_unit_test (test_state_names_round_trip),
        cmocka_unit_test (test_unpacked_ticket_edits_and_frees),
        cmocka_unit_test (test_pb_set_string),
        cmocka_unit_test (test_pb_strv),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
