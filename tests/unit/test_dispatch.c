/*  test_dispatch.c — the dispatcher's decision (dispatch_plan) without Redis:
    accept and route, the area-specific rule, co-handlers, the fallback for
    a point outside every grid, the operators' queue for an unknown category,
    a missing catalogue and a category nobody owns, redelivery of a handled
    ticket, re-dispatch of a returned one, and late location of a ticket
    taken in before the grids were loaded. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/dispatch.h"
#include "civicbus/pbutil.h"

#define ID "320105-20261129-000000071"          //  bucket 71 mod 64 = 7
#define NOW 1795000000000LL

static const char s_catalog_json [] =
    "{\"version\": \"t1\","
    " \"departments\": ["
    "  {\"code\": \"urban\", \"name\": \"Urban\", \"name_zh\": \"城管\"},"
    "  {\"code\": \"police\", \"name\": \"Police\", \"name_zh\": \"公安\"},"
    "  {\"code\": \"housing\", \"name\": \"Housing\", \"name_zh\": \"住建\"},"
    "  {\"code\": \"civil\", \"name\": \"Civil\", \"name_zh\": \"民政\"}],"
    " \"categories\": ["
    "  {\"code\": \"urban.street.stall\", \"name\": \"Stall\", \"name_zh\": \"占道\", \"group\": \"urban\","
    "   \"description\": \"\", \"keywords\": []},"
    "  {\"code\": \"urban.building.crack\", \"name\": \"Crack\", \"name_zh\": \"裂缝\", \"group\": \"urban\","
    "   \"description\": \"\", \"keywords\": []},"
    "  {\"code\": \"police.fight\", \"name\": \"Fight\", \"name_zh\": \"打架\", \"group\": \"police\","
    "   \"description\": \"\", \"keywords\": []},"
    "  {\"code\": \"civil.help\", \"name\": \"Help\", \"name_zh\": \"救助\", \"group\": \"civil\","
    "   \"description\": \"\", \"keywords\": []}],"
    " \"rules\": ["
    "  {\"category\": \"urban.*\", \"department\": \"urban\", \"policy\": \"urban-1d\"},"
    "  {\"category\": \"urban.building.*\", \"department\": \"housing\", \"co_handlers\": [\"urban\"],"
    "   \"policy\": \"standard-5d\"},"
    "  {\"category\": \"urban.street.stall\", \"area\": \"320105003\", \"department\": \"urban\","
    "   \"co_handlers\": [\"police\"], \"policy\": \"joint-1d\"},"
    "  {\"category\": \"police.*\", \"department\": \"police\", \"policy\": \"urgent-2h\"},"
    "  {\"category\": \"civil.help\", \"area\": \"320105009\", \"department\": \"civil\","
    "   \"policy\": \"help-10d\"}]"
    "%s}";

static const char s_grids_json [] =
    "{\"type\": \"FeatureCollection\", \"features\": ["
    " {\"type\": \"Feature\", \"properties\": {\"code\": \"320105\", \"name\": \"D\","
    "  \"level\": \"district\", \"parent\": null}, \"geometry\": null},"
    " {\"type\": \"Feature\", \"properties\": {\"code\": \"320105003\", \"name\": \"S\","
    "  \"level\": \"street\", \"parent\": \"320105\"}, \"geometry\": null},"
    " {\"type\": \"Feature\", \"properties\": {\"code\": \"320105003001\", \"name\": \"G\","
    "  \"level\": \"grid\", \"parent\": \"320105003\"}, \"geometry\": {\"type\": \"Polygon\","
    "  \"coordinates\": [[[118.70, 32.00], [118.71, 32.00], [118.71, 32.01], [118.70, 32.01],"
    "  [118.70, 32.00]]]}}]}";

static const ticket_actor_t s_system = {
    CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM, "dispatcher-test", "dispatcher"
};

typedef struct {
    catalog_t *with_fallback;
    catalog_t *without_fallback;
    grid_index_t *grids;
} fixture_t;

static catalog_t *
s_catalog (const char *fallback)
{
    char text [sizeof s_catalog_json + 128], err [256];
    snprintf (text, sizeof text, s_catalog_json, fallback);
    catalog_t *catalog = catalog_from_json (text, strlen (text), err, sizeof err);
    if (!catalog)
        fprintf (stderr, "test catalogue: %s\n", err);
    return catalog;
}

static int
s_setup (void **state)
{
    static fixture_t fixture;
    char err [256];
    fixture.with_fallback = s_catalog (", \"fallback\": {\"department\": \"civil\", "
                                       "\"policy\": \"standard-5d\"}");
    fixture.without_fallback = s_catalog ("");
    fixture.grids = grid_index_from_geojson (s_grids_json, strlen (s_grids_json), err, sizeof err);
    if (!fixture.grids)
        fprintf (stderr, "test grids: %s\n", err);
    *state = &fixture;
    return fixture.with_fallback && fixture.without_fallback && fixture.grids ? 0 : -1;
}

static int
s_teardown (void **state)
{
    fixture_t *fixture = *state;
    catalog_destroy (&fixture->with_fallback);
    catalog_destroy (&fixture->without_fallback);
    grid_index_destroy (&fixture->grids);
    return 0;
}

//  A stored-looking ticket: version 3, three events so far.
static cb_ticket_t *
s_ticket (cb_state_t state, const char *category, Civicbus__V1__RequestType type,
          const char *const *path)
{
    cb_ticket_t *t = malloc (sizeof *t);
    assert_non_null (t);
    civicbus__v1__ticket__init (t);
    Civicbus__V1__Location *where = malloc (sizeof *where);
    assert_non_null (where);
    civicbus__v1__location__init (where);
    t->location = where;
    assert_int_equal (pb_set_string (&t->id, ID), 0);
    assert_int_equal (pb_set_string (&t->category, category), 0);
    t->request_type = type;
    t->state = state;
    t->version = 3;
    t->event_count = 3;
    t->created_ms = NOW - 60000;
    t->updated_ms = NOW - 60000;
    if (path) {
        assert_int_equal (pb_strv_set (&where->n_grid_path, &where->grid_path, path), 0);
        size_t n = where->n_grid_path;
        assert_int_equal (pb_set_string (&where->grid_code, where->grid_path [n - 1]), 0);
    }
    else
        where->ungridded = true;
    return t;
}

static void
s_free (cb_ticket_t *t)
{
    civicbus__v1__ticket__free_unpacked (t, NULL);
}

static const char *const s_path_street1 [] = {
    "320105", "320105001", "320105001001", "320105001001001", NULL
};
static const char *const s_path_street3 [] = {
    "320105", "320105003", "320105003002", "320105003002004", NULL
};

/* ---- tests ---- */

static void
test_routes_with_co_handlers (void **state)
{
    fixture_t *fixture = *state;
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "urban.building.crack",
                               CIVICBUS__V1__REQUEST_TYPE__REPORT, s_path_street1);
    dispatch_plan_t plan;
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    assert_string_equal (dispatch_verdict_name (plan.verdict), "routed");
    assert_string_equal (plan.inbox_key, "inbox:{b07}");

    //  the ticket to store
    cb_ticket_t *after = plan.after;
    assert_non_null (after);
    assert_int_equal (after->state, CIVICBUS__V1__TICKET_STATE__DISPATCHED);
    assert_string_equal (after->department, "housing");
    assert_int_equal (after->n_co_handlers, 1);
    assert_string_equal (after->co_handlers [0], "urban");
    assert_string_equal (after->policy, "standard-5d");
    assert_false (after->needs_review);
    assert_int_equal (after->updated_ms, NOW);
    //  the loaded ticket is untouched
    assert_int_equal (t->state, CIVICBUS__V1__TICKET_STATE__RECEIVED);
    assert_true (pb_string_is_empty (t->department));

    //  two events, accept then dispatch, by the system
    assert_int_equal (plan.n_events, 2);
    assert_string_equal (plan.events [0].type, "accept");
    assert_int_equal (plan.events [0].from, CIVICBUS__V1__TICKET_STATE__RECEIVED);
    assert_int_equal (plan.events [0].to, CIVICBUS__V1__TICKET_STATE__ACCEPTED);
    assert_ptr_equal (plan.events [0].actor, &s_system);
    assert_string_equal (plan.events [1].type, "dispatch");
    assert_int_equal (plan.events [1].from, CIVICBUS__V1__TICKET_STATE__ACCEPTED);
    assert_int_equal (plan.events [1].to, CIVICBUS__V1__TICKET_STATE__DISPATCHED);
    assert_non_null (plan.events [1].payload_json);
    assert_non_null (strstr (plan.events [1].payload_json, "\"department\":\"housing\""));
    assert_non_null (strstr (plan.events [1].payload_json, "\"co_handlers\":[\"urban\"]"));

    //  one dispatch record per department, ids unique to this version
    assert_int_equal (plan.n_dispatches, 2);
    assert_string_equal (plan.dispatch_ids [0], ID "/housing/4");
    assert_string_equal (plan.dispatch_ids [1], ID "/urban/4");
    assert_string_equal (plan.route.department, "housing");
    assert_true (plan.route.rule_index >= 0);
    //  zrem inbox + (hset dsp + zadd dspq) per department
    assert_int_equal (ts_ops_count (plan.ops), 1 + 2 * 2);

    dispatch_plan_reset (&plan);
    assert_null (plan.after);
    assert_null (plan.ops);
    dispatch_plan_reset (&plan);
    s_free (t);
}

static void
test_area_rule_beats_the_citywide_one (void **state)
{
    fixture_t *fixture = *state;
    dispatch_plan_t plan;
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "urban.street.stall",
                               CIVICBUS__V1__REQUEST_TYPE__COMPLAINT, s_path_street3);
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    assert_string_equal (plan.after->department, "urban");
    assert_int_equal (plan.after->n_co_handlers, 1);
    assert_string_equal (plan.after->co_handlers [0], "police");
    assert_string_equal (plan.after->policy, "joint-1d");
    dispatch_plan_reset (&plan);
    s_free (t);

    //  the same category elsewhere: the citywide rule, no co-handler
    t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "urban.street.stall",
                  CIVICBUS__V1__REQUEST_TYPE__COMPLAINT, s_path_street1);
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    assert_string_equal (plan.after->department, "urban");
    assert_int_equal (plan.after->n_co_handlers, 0);
    assert_string_equal (plan.after->policy, "urban-1d");
    assert_int_equal (plan.n_dispatches, 1);
    assert_int_equal (ts_ops_count (plan.ops), 1 + 2);
    dispatch_plan_reset (&plan);
    s_free (t);
}

static void
test_outside_every_grid_goes_to_the_fallback (void **state)
{
    fixture_t *fixture = *state;
    dispatch_plan_t plan;
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "police.fight",
                               CIVICBUS__V1__REQUEST_TYPE__HELP, NULL);
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    assert_string_equal (plan.after->department, "civil");
    assert_string_equal (plan.after->policy, "standard-5d");
    assert_int_equal (plan.route.rule_index, -1);
    assert_int_equal (plan.after->state, CIVICBUS__V1__TICKET_STATE__DISPATCHED);
    dispatch_plan_reset (&plan);

    //  without a fallback the location is not usable: operators decide
    assert_int_equal (dispatch_plan (&plan, t, fixture->without_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_HOLD);
    assert_int_equal (plan.after->state, CIVICBUS__V1__TICKET_STATE__RECEIVED);
    assert_true (plan.after->needs_review);
    assert_non_null (strstr (plan.after->review_reason, "no grid"));
    assert_int_equal (plan.n_events, 0);
    dispatch_plan_reset (&plan);
    s_free (t);
}

static void
test_unknown_category_waits_for_operators (void **state)
{
    fixture_t *fixture = *state;
    dispatch_plan_t plan;
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "urban.unheard.of",
                               CIVICBUS__V1__REQUEST_TYPE__REPORT, s_path_street1);
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_HOLD);
    assert_string_equal (dispatch_verdict_name (plan.verdict), "hold");
    assert_int_equal (plan.after->state, CIVICBUS__V1__TICKET_STATE__RECEIVED);
    assert_true (plan.after->needs_review);
    assert_non_null (strstr (plan.after->review_reason, "urban.unheard.of"));
    assert_string_equal (plan.after->review_reason, plan.reason);
    assert_int_equal (plan.after->updated_ms, NOW);
    assert_int_equal (plan.n_events, 0);
    assert_int_equal (ts_ops_count (plan.ops), 1);         //  the inbox entry only
    assert_true (pb_string_is_empty (plan.after->department));

    //  redelivered while it waits for the same reason: nothing to store
    t->needs_review = true;
    assert_int_equal (pb_set_string (&t->review_reason, plan.reason), 0);
    dispatch_plan_reset (&plan);
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_SKIP);
    assert_null (plan.after);
    assert_null (plan.ops);
    dispatch_plan_reset (&plan);
    s_free (t);
}

static void
test_no_catalogue_waits_for_operators (void **state)
{
    (void) state;
    dispatch_plan_t plan;
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "police.fight",
                               CIVICBUS__V1__REQUEST_TYPE__HELP, s_path_street1);
    assert_int_equal (dispatch_plan (&plan, t, NULL, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_HOLD);
    assert_true (plan.after->needs_review);
    assert_non_null (strstr (plan.after->review_reason, "no dispatch catalogue"));
    assert_int_equal (plan.after->state, CIVICBUS__V1__TICKET_STATE__RECEIVED);
    dispatch_plan_reset (&plan);
    s_free (t);
}

static void
test_nobody_owns_it_accepted_for_operators (void **state)
{
    fixture_t *fixture = *state;
    dispatch_plan_t plan;
    //  civil.help has a rule only in street 320105009, and no fallback
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "civil.help",
                               CIVICBUS__V1__REQUEST_TYPE__HELP, s_path_street1);
    assert_int_equal (dispatch_plan (&plan, t, fixture->without_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_NO_OWNER);
    assert_int_equal (plan.after->state, CIVICBUS__V1__TICKET_STATE__ACCEPTED);
    assert_true (plan.after->needs_review);
    assert_string_equal (plan.after->review_reason,
                         "no department owns category civil.help in area 320105001001001");
    assert_int_equal (plan.n_events, 1);
    assert_string_equal (plan.events [0].type, "accept");
    assert_string_equal (plan.events [0].note, plan.after->review_reason);
    assert_int_equal (ts_ops_count (plan.ops), 1);
    assert_int_equal (plan.n_dispatches, 0);
    dispatch_plan_reset (&plan);

    //  with the fallback it goes there instead
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    assert_string_equal (plan.after->department, "civil");
    dispatch_plan_reset (&plan);
    s_free (t);
}

static void
test_handled_ticket_is_skipped (void **state)
{
    fixture_t *fixture = *state;
    const cb_state_t states [] = {
        CIVICBUS__V1__TICKET_STATE__ACCEPTED, CIVICBUS__V1__TICKET_STATE__DISPATCHED,
        CIVICBUS__V1__TICKET_STATE__IN_PROGRESS, CIVICBUS__V1__TICKET_STATE__CLOSED,
        CIVICBUS__V1__TICKET_STATE__REJECTED, CIVICBUS__V1__TICKET_STATE__CANCELLED,
    };
    for (size_t i = 0; i < sizeof states / sizeof states [0]; i++) {
        cb_ticket_t *t = s_ticket (states [i], "police.fight",
                                   CIVICBUS__V1__REQUEST_TYPE__HELP, s_path_street1);
        dispatch_plan_t plan;
        assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
        assert_int_equal (plan.verdict, DISPATCH_SKIP);
        assert_null (plan.after);
        assert_null (plan.ops);
        assert_int_equal (plan.n_events, 0);
        assert_string_equal (plan.inbox_key, "inbox:{b07}");
        assert_non_null (strstr (plan.reason, "already handled"));
        dispatch_plan_reset (&plan);
        s_free (t);
    }
}

static void
test_returned_ticket_skips_the_department (void **state)
{
    fixture_t *fixture = *state;
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RETURNED, "urban.building.crack",
                               CIVICBUS__V1__REQUEST_TYPE__REPORT, s_path_street1);
    assert_int_equal (pb_strv_push (&t->n_excluded_departments, &t->excluded_departments,
                                    "housing"), 0);
    dispatch_plan_t plan;
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    assert_string_equal (plan.after->department, "urban");
    assert_int_equal (plan.after->state, CIVICBUS__V1__TICKET_STATE__DISPATCHED);
    assert_int_equal (plan.n_events, 1);
    assert_string_equal (plan.events [0].type, "dispatch");
    assert_int_equal (plan.events [0].from, CIVICBUS__V1__TICKET_STATE__RETURNED);
    //  zrem inbox, del old records, hset + zadd for urban
    assert_int_equal (ts_ops_count (plan.ops), 4);
    dispatch_plan_reset (&plan);

    //  a returned ticket with an unknown category stays where it is
    assert_int_equal (pb_set_string (&t->category, "nope.nope"), 0);
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_SKIP);
    assert_null (plan.after);
    dispatch_plan_reset (&plan);
    s_free (t);
}

//  Issue 6: a ticket the intake flagged for a person (probable duplicate,
//  low-confidence sensor event) is never accepted automatically, even when
//  the catalogue could route it; only its inbox entry goes.
static void
test_review_required_is_left_to_operators (void **state)
{
    fixture_t *fixture = *state;
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "police.fight",
                               CIVICBUS__V1__REQUEST_TYPE__HELP, s_path_street1);
    t->needs_review = true;
    t->review_required = true;
    assert_int_equal (pb_set_string (&t->review_reason, "probable duplicate of X"), 0);
    dispatch_plan_t plan;
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_SKIP);
    assert_null (plan.after);
    assert_non_null (strstr (plan.reason, "probable duplicate of X"));
    dispatch_plan_reset (&plan);

    //  once an operator accepted it (ACCEPTED), a return is routed as usual
    t->state = CIVICBUS__V1__TICKET_STATE__RETURNED;
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    dispatch_plan_reset (&plan);
    s_free (t);
}

static void
test_held_ticket_is_routed_once_possible (void **state)
{
    fixture_t *fixture = *state;
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "police.fight",
                               CIVICBUS__V1__REQUEST_TYPE__HELP, s_path_street1);
    t->needs_review = true;
    assert_int_equal (pb_set_string (&t->review_reason, "no dispatch catalogue is loaded"), 0);
    dispatch_plan_t plan;
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    assert_string_equal (plan.after->department, "police");
    assert_false (plan.after->needs_review);
    assert_true (pb_string_is_empty (plan.after->review_reason));
    dispatch_plan_reset (&plan);
    s_free (t);
}

static void
test_late_location_by_the_grids (void **state)
{
    fixture_t *fixture = *state;
    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "urban.street.stall",
                               CIVICBUS__V1__REQUEST_TYPE__COMPLAINT, NULL);
    t->location->ungridded = false;
    t->location->has_point = true;
    t->location->lat = 32.005;
    t->location->lon = 118.705;
    dispatch_plan_t plan;
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, fixture->grids,
                                     &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    assert_string_equal (plan.after->location->grid_code, "320105003001");
    assert_int_equal (plan.after->location->n_grid_path, 3);
    assert_string_equal (plan.after->location->grid_path [1], "320105003");
    //  located in street 320105003: the area rule applies
    assert_string_equal (plan.after->policy, "joint-1d");
    dispatch_plan_reset (&plan);

    //  a point in no grid becomes ungridded and takes the fallback
    t->location->lat = 31.0;
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, fixture->grids,
                                     &s_system, NOW), 0);
    assert_int_equal (plan.verdict, DISPATCH_ROUTED);
    assert_true (plan.after->location->ungridded);
    assert_int_equal (plan.after->location->n_grid_path, 0);
    assert_string_equal (plan.after->department, "civil");
    dispatch_plan_reset (&plan);
    s_free (t);
}

static void
test_queue_member_and_bad_ids (void **state)
{
    fixture_t *fixture = *state;
    char member [DISPATCH_ID_MAX];
    assert_int_equal (dispatch_queue_member (member, sizeof member, ID, "urban"), 0);
    assert_string_equal (member, ID "|urban");
    assert_int_equal (dispatch_queue_member (member, 8, ID, "urban"), -1);

    cb_ticket_t *t = s_ticket (CIVICBUS__V1__TICKET_STATE__RECEIVED, "police.fight",
                               CIVICBUS__V1__REQUEST_TYPE__HELP, s_path_street1);
    assert_int_equal (pb_set_string (&t->id, "not-an-id"), 0);
    dispatch_plan_t plan;
    assert_int_equal (dispatch_plan (&plan, t, fixture->with_fallback, NULL, &s_system, NOW), -1);
    assert_null (plan.after);
    assert_null (plan.ops);
    s_free (t);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_routes_with_co_handlers),
        cmocka_unit_test (test_area_rule_beats_the_citywide_one),
        cmocka_unit_test (test_outside_every_grid_goes_to_the_fallback),
        cmocka_unit_test (test_unknown_category_waits_for_operators),
        cmocka_unit_test (test_no_catalogue_waits_for_operators),
        cmocka_unit_test (test_nobody_owns_it_accepted_for_operators),
        cmocka_unit_test (test_handled_ticket_is_skipped),
        cmocka_unit_test (test_returned_ticket_skips_the_department),
        cmocka_unit_test (test_held_ticket_is_routed_once_possible),
        cmocka_unit_test (test_review_required_is_left_to_operators),
        cmocka_unit_test (test_late_location_by_the_grids),
        cmocka_unit_test (test_queue_member_and_bad_ids),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
