/*  dispatch.c — the dispatcher's decision for one ticket, and the store
    change that carries it out (see dispatch.h for the rules).

    Every lifecycle change goes through ticket_apply_event (DESIGN.md §4);
    this file only chooses the inputs (ACCEPT, DISPATCH with the route's
    department and co-handlers) and adds what the state machine does not own:
    the review flag, the policy name, the grid path of a late-located ticket,
    and the keys of the change. */

#include "civicbus/dispatch.h"
#include "civicbus/log.h"
#include "civicbus/mask.h"
#include "civicbus/pbutil.h"

#include <jansson.h>

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static const char *
s_text (const char *value)
{
    return value ? value : "";
}

//  The request type's name as the catalogue spells it, or NULL.
static const char *
s_request_type_name (Civicbus__V1__RequestType type)
{
    if (type < CIVICBUS__V1__REQUEST_TYPE__CONSULT || type > CIVICBUS__V1__REQUEST_TYPE__SUGGESTION)
        return NULL;
    return catalog_request_type_name (1u << (type - 1));
}

//  A ticket with a point but no grid path was taken in before the grids were
//  loaded: locate it now, so it routes by its area. Sets the location of
//  `after`; returns 0, or -1 when out of memory.
static int
s_locate_late (cb_ticket_t *after, const grid_index_t *grids)
{
    Civicbus__V1__Location *where = after->location;
    if (!grids || !where || !where->has_point || where->n_grid_path > 0 || where->ungridded)
        return 0;
    grid_hit_t hit;
    int rc = grid_index_locate (grids, where->lat, where->lon, &hit);
    if (rc == GRID_INDEX_FAILED)
        return -1;
    if (rc < 0) {
        where->ungridded = true;
        return 0;
    }
    const char *codes [GRID_PATH_MAX + 1] = { NULL };
    grid_hit_codes (&hit, codes, GRID_PATH_MAX);
    if (pb_strv_set (&where->n_grid_path, &where->grid_path, codes)
    ||  pb_set_string (&where->grid_code, hit.code))
        return -1;
    return 0;
}

//  The route for a ticket with a usable catalogue and known category.
//  Returns 0 with *route filled, 1 when no department owns it (reason set),
//  2 when the location cannot be used (reason set).
static int
s_route (const cb_ticket_t *ticket, const catalog_t *catalog, catalog_route_t *route,
         char *reason, size_t cap)
{
    const Civicbus__V1__Location *where = ticket->location;
    size_t path_len = where ? where->n_grid_path : 0;
    const char *const *excluded = (const char *const *) ticket->excluded_departments;
    size_t n_excluded = ticket->n_excluded_departments;
    memset (route, 0, sizeof *route);

    if (path_len == 0) {
        //  Outside every grid: the rules are written for areas, so the
        //  catalogue's fallback owner takes it.
        const char *department = NULL, *policy = NULL;
        if (catalog_fallback (catalog, &department, &policy)) {
            snprintf (reason, cap, "the location is in no grid and the dispatch catalogue "
                      "has no fallback department");
            return 2;
        }
        if (pb_strv_contains (ticket->n_excluded_departments, ticket->excluded_departments,
                              department)) {
            snprintf (reason, cap, "no department owns category %s outside the grids "
                      "(the fallback %s returned it)", s_text (ticket->category), department);
            return 1;
        }
        snprintf (route->department, sizeof route->department, "%s", department);
        snprintf (route->policy, sizeof route->policy, "%s", s_text (policy));
        route->rule_index = -1;
        return 0;
    }
    if (catalog_route (catalog, ticket->category, (const char *const *) where->grid_path,
                       path_len, s_request_type_name (ticket->request_type),
                       excluded, n_excluded, route) == 0)
        return 0;
    snprintf (reason, cap, "no department owns category %s in area %s",
              s_text (ticket->category), where->grid_path [path_len - 1]);
    return 1;
}

//  The dispatch event's detail: department, co-handlers, policy, rule.
static void
s_payload (dispatch_plan_t *plan)
{
    json_t *co = json_array ();
    for (size_t i = 0; co && i < plan->route.co_handler_count; i++)
        json_array_append_new (co, json_string (plan->route.co_handlers [i]));
    json_t *ids = json_array ();
    for (size_t i = 0; ids && i < plan->n_dispatches; i++)
        json_array_append_new (ids, json_string (plan->dispatch_ids [i]));
    json_t *root = json_pack ("{s:s, s:o*, s:s, s:i, s:o*}",
                              "department", plan->route.department,
                              "co_handlers", co,
                              "policy", plan->route.policy,
                              "rule", plan->route.rule_index,
                              "dispatch_ids", ids);
    plan->payload [0] = 0;
    if (root) {
        char *text = json_dumps (root, JSON_COMPACT);
        if (text && strlen (text) < sizeof plan->payload)
            snprintf (plan->payload, sizeof plan->payload, "%s", text);
        free (text);
        json_decref (root);
    }
}

//  Runs one state-machine step on plan->after and records its event.
static int
s_step (dispatch_plan_t *plan, const ticket_input_t *input, const ticket_actor_t *actor,
        int64_t now_ms, const char *note, const char *payload)
{
    ticket_outcome_t out;
    if (ticket_apply_event (plan->after, input, actor, now_ms, &out)) {
        cb_log (CB_LOG_ERROR, "state machine refused a dispatcher step",
                "ticket", s_text (plan->after->id), "event", ticket_event_name (input->kind),
                "code", out.code ? out.code : "?", "reason", out.reason, NULL);
        return -1;
    }
    assert (plan->n_events < 2);
    ts_event_t *ev = &plan->events [plan->n_events++];
    ev->type = ticket_event_name (input->kind);
    ev->actor = actor;
    ev->from = out.from;
    ev->to = out.to;
    ev->note = note;
    ev->payload_json = payload;
    return 0;
}

//  Flags the ticket for the operators with `reason` (HOLD, NO_OWNER).
static int
s_flag_review (dispatch_plan_t *plan, int64_t now_ms)
{
    plan->after->needs_review = true;
    plan->after->updated_ms = now_ms;
    return pb_set_string (&plan->after->review_reason, plan->reason);
}

//  The dispatch records and queue entries of a routed ticket.
static int
s_dispatch_ops (dispatch_plan_t *plan, const cb_ticket_t *ticket, int64_t now_ms)
{
    int bucket = ticket_id_bucket (ticket->id);
    char dsp_key [96], queue_key [32], member [DISPATCH_ID_MAX];
    if (ts_key (dsp_key, sizeof dsp_key, "dsp", ticket->id))
        return -1;
    ts_bucket_key (queue_key, sizeof queue_key, "dspq", bucket);
    int rc = 0;
    //  A re-dispatch (after a return) replaces the old assignment's records.
    if (ticket->state != CIVICBUS__V1__TICKET_STATE__RECEIVED)
        rc |= ts_ops_del (plan->ops, dsp_key);
    for (size_t i = 0; i < plan->n_dispatches; i++) {
        const char *department = i == 0 ? plan->route.department
                                         : plan->route.co_handlers [i - 1];
        int n = snprintf (plan->dispatch_ids [i], DISPATCH_ID_MAX, "%s/%s/%lld", ticket->id,
                          department, (long long) ticket->version + 1);
        if (n < 0 || n >= DISPATCH_ID_MAX
        ||  dispatch_queue_member (member, sizeof member, ticket->id, department))
            return -1;
        rc |= ts_ops_hset (plan->ops, dsp_key, department, plan->dispatch_ids [i]);
        rc |= ts_ops_zadd (plan->ops, queue_key, now_ms, member);
    }
    return rc ? -1 : 0;
}

/* ---- public ---- */

int
dispatch_queue_member (char *buf, size_t cap, const char *ticket_id, const char *department)
{
    int n = snprintf (buf, cap, "%s|%s", ticket_id, department);
    return n > 0 && (size_t) n < cap ? 0 : -1;
}

const char *
dispatch_verdict_name (dispatch_verdict_t verdict)
{
    switch (verdict) {
        case DISPATCH_ROUTED:   return "routed";
        case DISPATCH_NO_OWNER: return "no_owner";
        case DISPATCH_HOLD:     return "hold";
        default:                return "skip";
    }
}

void
dispatch_plan_reset (dispatch_plan_t *plan)
{
    assert (plan);
    if (plan->after)
        civicbus__v1__ticket__free_unpacked (plan->after, NULL);
    ts_ops_destroy (&plan->ops);
    memset (plan, 0, sizeof *plan);
}

int
dispatch_plan (dispatch_plan_t *plan, const cb_ticket_t *ticket,
               const catalog_t *catalog, const grid_index_t *grids,
               const ticket_actor_t *actor, int64_t now_ms)
{
    assert (plan && ticket && actor);
    memset (plan, 0, sizeof *plan);
    int bucket = ticket_id_bucket (ticket->id);
    if (bucket < 0) {
        snprintf (plan->reason, sizeof plan->reason, "not a ticket id");
        return -1;
    }
    ts_bucket_key (plan->inbox_key, sizeof plan->inbox_key, "inbox", bucket);

    bool received = ticket->state == CIVICBUS__V1__TICKET_STATE__RECEIVED;
    bool returned = ticket->state == CIVICBUS__V1__TICKET_STATE__RETURNED;
    if (!received && !returned) {
        plan->verdict = DISPATCH_SKIP;
        snprintf (plan->reason, sizeof plan->reason, "already handled (%s)",
                  ticket_state_name (ticket->state));
        return 0;
    }

    if (received && ticket->review_required) {
        //  The intake asked for a person (a probable duplicate, a sensor event
        //  below its confidence threshold): the operators accept or merge it.
        //  It is in their queue by its needs_review flag; only the inbox
        //  entry goes.
        plan->verdict = DISPATCH_SKIP;
        snprintf (plan->reason, sizeof plan->reason, "waits for an operator: %s",
                  s_text (ticket->review_reason));
        return 0;
    }

    //  What the ticket needs, before building anything.
    dispatch_verdict_t verdict = DISPATCH_HOLD;
    if (!catalog)
        snprintf (plan->reason, sizeof plan->reason, "no dispatch catalogue is loaded");
    else
    if (pb_string_is_empty (ticket->category) || !catalog_category (catalog, ticket->category))
        snprintf (plan->reason, sizeof plan->reason,
                  "category '%s' is not in the dispatch catalogue (version %s)",
                  s_text (ticket->category), s_text (catalog_version (catalog)));
    else
        verdict = DISPATCH_ROUTED;
    if (verdict == DISPATCH_HOLD && returned) {
        //  A returned ticket is in the operators' queue by its state already.
        plan->verdict = DISPATCH_SKIP;
        return 0;
    }
    if (verdict == DISPATCH_HOLD && ticket->needs_review
    &&  strcmp (s_text (ticket->review_reason), plan->reason) == 0) {
        //  Waiting for the operators for this very reason: nothing to change.
        plan->verdict = DISPATCH_SKIP;
        return 0;
    }

    plan->after = ticket_clone (ticket);
    plan->ops = ts_ops_new ();
    if (!plan->after || !plan->ops)
        goto failed;
    if (ts_ops_zrem (plan->ops, plan->inbox_key, ticket->id))
        goto failed;

    if (verdict == DISPATCH_ROUTED) {
        if (s_locate_late (plan->after, grids))
            goto failed;
        int rc = s_route (plan->after, catalog, &plan->route, plan->reason, sizeof plan->reason);
        verdict = rc == 0 ? DISPATCH_ROUTED : rc == 1 ? DISPATCH_NO_OWNER : DISPATCH_HOLD;
    }
    plan->verdict = verdict;

    if (verdict == DISPATCH_HOLD) {
        if (returned) {
            dispatch_plan_reset (plan);
            plan->verdict = DISPATCH_SKIP;
            return 0;
        }
        if (s_flag_review (plan, now_ms))
            goto failed;
        return 0;
    }
    if (received) {
        ticket_input_t accept = { .kind = TEV_ACCEPT };
        if (s_step (plan, &accept, actor, now_ms,
                    verdict == DISPATCH_NO_OWNER ? plan->reason : NULL, NULL))
            goto failed;
    }
    if (verdict == DISPATCH_NO_OWNER) {
        if (s_flag_review (plan, now_ms))
            goto failed;
        return 0;
    }

    //  ROUTED
    plan->n_dispatches = 1 + plan->route.co_handler_count;
    if (s_dispatch_ops (plan, ticket, now_ms))
        goto failed;
    s_payload (plan);
    const char *co [CATALOG_CO_HANDLERS_MAX + 1] = { NULL };
    for (size_t i = 0; i < plan->route.co_handler_count; i++)
        co [i] = plan->route.co_handlers [i];
    ticket_input_t dispatch = { .kind = TEV_DISPATCH, .department = plan->route.department,
                                .co_handlers = co };
    if (s_step (plan, &dispatch, actor, now_ms, NULL, plan->payload [0] ? plan->payload : NULL))
        goto failed;
    plan->after->needs_review = false;
    if (pb_set_string (&plan->after->review_reason, NULL)
    ||  pb_set_string (&plan->after->policy, plan->route.policy))
        goto failed;
    plan->reason [0] = 0;
    return 0;

failed:
    dispatch_plan_reset (plan);
    return -1;
}

/* ---- public: the department protocol ---- */

int
dispatch_id_parse (const char *dispatch_id, char *ticket_id, size_t ticket_cap,
                   char *department, size_t department_cap)
{
    const char *first = dispatch_id ? strchr (dispatch_id, '/') : NULL;
    const char *last = dispatch_id ? strrchr (dispatch_id, '/') : NULL;
    if (!first || first == last || first == dispatch_id || last == first + 1 || !last [1])
        return -1;
    size_t id_len = (size_t) (first - dispatch_id), dept_len = (size_t) (last - first - 1);
    if (id_len >= ticket_cap || dept_len >= department_cap)
        return -1;
    memcpy (ticket_id, dispatch_id, id_len);
    ticket_id [id_len] = 0;
    memcpy (department, first + 1, dept_len);
    department [dept_len] = 0;
    return ticket_id_bucket (ticket_id) < 0 ? -1 : 0;
}

int
dispatch_reply_event (Civicbus__V1__ReplyKind kind)
{
    switch (kind) {
        case CIVICBUS__V1__REPLY_KIND__REPLY_SIGN:      return TEV_SIGN;
        case CIVICBUS__V1__REPLY_KIND__REPLY_RETURN:    return TEV_RETURN;
        case CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION: return TEV_REQUEST_EXTENSION;
        case CIVICBUS__V1__REPLY_KIND__REPLY_SUSPEND:   return TEV_REQUEST_SUSPENSION;
        case CIVICBUS__V1__REPLY_KIND__REPLY_PROGRESS:  return TEV_PROGRESS;
        case CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE:   return TEV_RESOLVE;
        default:                                         return -1;
    }
}

cb_ticket_t *
dispatch_order_ticket (const cb_ticket_t *ticket, bool masks_personal_data)
{
    assert (ticket);
    cb_ticket_t *copy = ticket_clone (ticket);
    if (!copy || !masks_personal_data)
        return copy;
    int rc = 0;
    if (copy->reporter) {
        char masked [256];
        cb_mask_name (copy->reporter->name, masked, sizeof masked);
        rc |= pb_set_string (&copy->reporter->name, masked);
        cb_mask_phone (copy->reporter->phone, masked, sizeof masked);
        rc |= pb_set_string (&copy->reporter->phone, masked);
    }
    if (!pb_string_is_empty (copy->description)) {
        size_t cap = strlen (copy->description) + 1;
        char *masked = malloc (cap);
        if (masked) {
            cb_mask_text (copy->description, masked, cap);
            rc |= pb_set_string (&copy->description, masked);
            free (masked);
        }
        else
            rc = -1;
    }
    if (rc) {
        civicbus__v1__ticket__free_unpacked (copy, NULL);
        return NULL;
    }
    return copy;
}

/* ---- public: dispatches made by hand ---- */

int
dispatch_manual_ops (ts_ops_t *ops, const cb_ticket_t *before, const cb_ticket_t *after,
                     uint32_t effects, int64_t now_ms,
                     char ids [][DISPATCH_ID_MAX], size_t ids_cap, size_t *n_ids)
{
    assert (ops && before && after && n_ids);
    *n_ids = 0;
    if (!(effects & (TFX_CANCEL_DISPATCH | TFX_SEND_DISPATCH)))
        return 0;
    int bucket = ticket_id_bucket (before->id);
    char dsp_key [96], queue_key [32], member [DISPATCH_ID_MAX];
    if (bucket < 0 || ts_key (dsp_key, sizeof dsp_key, "dsp", before->id))
        return -1;
    ts_bucket_key (queue_key, sizeof queue_key, "dspq", bucket);
    int rc = ts_ops_del (ops, dsp_key);
    //  Orders of the old assignment not sent yet must not go out.
    for (size_t i = 0; i <= before->n_co_handlers; i++) {
        const char *department = i == 0 ? before->department : before->co_handlers [i - 1];
        if (pb_string_is_empty (department))
            continue;
        if (dispatch_queue_member (member, sizeof member, before->id, department))
            return -1;
        rc |= ts_ops_zrem (ops, queue_key, member);
    }
    if (!(effects & TFX_SEND_DISPATCH))
        return rc ? -1 : 0;
    for (size_t i = 0; i <= after->n_co_handlers; i++) {
        const char *department = i == 0 ? after->department : after->co_handlers [i - 1];
        if (pb_string_is_empty (department) || *n_ids >= ids_cap)
            return -1;
        int n = snprintf (ids [*n_ids], DISPATCH_ID_MAX, "%s/%s/%lld", before->id, department,
                          (long long) before->version + 1);
        if (n < 0 || n >= DISPATCH_ID_MAX
        ||  dispatch_queue_member (member, sizeof member, before->id, department))
            return -1;
        rc |= ts_ops_hset (ops, dsp_key, department, ids [*n_ids]);
        rc |= ts_ops_zadd (ops, queue_key, now_ms, member);
        (*n_ids)++;
    }
    return rc ? -1 : 0;
}
