/*  events.c — POST /v1/events: sensor and camera events (common/sensors.h),
    up to 1,000 per request, folded into open tickets.

    Body: a JSON array of events. Answer: 200 with one entry per event, in
    order (207-style: each says what became of it):
        {"index": i, "status": "folded",  "ticket_id": X, "fold_id": F}
        {"index": i, "status": "created", "ticket_id": X, "fold_id": F}
        {"index": i, "status": "rejected", "code": C, "field": F, "reason": R}
    plus "pending" (status) for an event whose fold's ticket could not be
    created now (the next event of the fold creates it).

    Steps, so that many intake threads and processes agree:
    1. validate every event (a bad one is rejected alone);
    2. fold all valid events, one script each, pipelined (sensors.c);
    3. an event folded into a fold whose ticket is final (closed, rejected,
       merged, cancelled: loaded once per ticket per request) closes that
       fold and is folded again;
    4. folds without a ticket get one through intake_ticket_submit, with
       external_id "sensor-fold:T:F" — the idempotency key is fixed by the
       fold, so a crash before the fold learnt its ticket, or two intakes
       creating at once, end with one ticket; the fold records it;
    5. each ticket touched gets its fold's counters (count, first and last
       seen) copied in with compare-and-set, no history event (a count is
       not an event of the ticket's life). */

#include "intake.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/ticket_id.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_REFOLDS 3
#define S_TRIES 8

typedef struct {
    int status;                     //  S_REJECTED, S_FOLDED, S_CREATED, S_PENDING
    cb_error_t err;
    sensor_fold_t fold;
} s_result_t;

enum { S_REJECTED = 0, S_FOLDED, S_CREATED, S_PENDING };

//  A fold met in this request.
typedef struct {
    const sensor_type_t *type;
    char fold_id [SENSOR_FOLD_ID_MAX];
    char ticket_id [CB_TICKET_ID_MAX];
    size_t first_event;             //  the event that builds its ticket
    bool checked;                   //  its ticket's state was loaded in this request
    bool final;                     //  its ticket is final: fold closed
} s_fold_seen_t;

/* ---- private ---- */

static s_fold_seen_t *
s_fold_find (s_fold_seen_t *folds, size_t n, const sensor_type_t *type, const char *fold_id)
{
    for (size_t i = 0; i < n; i++)
        if (folds [i].type == type && strcmp (folds [i].fold_id, fold_id) == 0)
            return &folds [i];
    return NULL;
}

static s_fold_seen_t *
s_fold_add (s_fold_seen_t *folds, size_t *n, const sensor_type_t *type, const sensor_fold_t *f,
            size_t event)
{
    s_fold_seen_t *seen = s_fold_find (folds, *n, type, f->fold_id);
    if (seen) {
        if (!seen->ticket_id [0] && f->ticket_id [0])
            snprintf (seen->ticket_id, sizeof seen->ticket_id, "%s", f->ticket_id);
        return seen;
    }
    seen = &folds [(*n)++];
    memset (seen, 0, sizeof *seen);
    seen->type = type;
    seen->first_event = event;
    snprintf (seen->fold_id, sizeof seen->fold_id, "%s", f->fold_id);
    snprintf (seen->ticket_id, sizeof seen->ticket_id, "%s", f->ticket_id);
    return seen;
}

//  Step 3 for one fold: 1 when its ticket is final (fold closed), 0, -1.
static int
s_check_final (intake_t *intake, intake_worker_t *worker, s_fold_seen_t *seen)
{
    cb_ticket_t *t = NULL;
    int rc = ticket_store_load (worker->store, seen->ticket_id, &t);
    if (rc == TS_UNAVAILABLE)
        return -1;
    bool final = rc == TS_NOT_FOUND || (rc == TS_OK && ticket_state_is_final (t->state));
    if (t)
        civicbus__v1__ticket__free_unpacked (t, NULL);
    if (final) {
        if (sensor_folds_close (intake->folds, worker->redis, seen->type->name, seen->fold_id))
            return -1;
        seen->final = true;
        cb_log (CB_LOG_INFO, "sensor fold ended: its ticket is final", "type", seen->type->name,
                "fold", seen->fold_id, "ticket", seen->ticket_id, NULL);
    }
    return final ? 1 : 0;
}

//  Step 4: the fold's ticket. 0 with seen->ticket_id set (*created when
//  this call made it), 1 when it cannot be made (the event's err set), -1
//  when the store is unavailable.
static int
s_create (intake_t *intake, const apikey_info_t *key, const sensor_event_t *ev,
          s_fold_seen_t *seen, bool *created, cb_error_t *err)
{
    *created = false;
    cb_ticket_t *t = sensor_ticket_new (ev, seen->fold_id);
    if (!t) {
        cb_error_set (err, "internal", "", "out of memory");
        return 1;
    }
    intake_submit_t out;
    int rc = intake_ticket_submit (intake, key, t, NULL, NULL, 0, &out);
    if (rc == INTAKE_SUBMIT_CREATED) {
        snprintf (seen->ticket_id, sizeof seen->ticket_id, "%s", t->id);
        *created = true;
    }
    else
    if (rc == INTAKE_SUBMIT_REPEAT || rc == INTAKE_SUBMIT_KEY_REUSED)
        snprintf (seen->ticket_id, sizeof seen->ticket_id, "%s", out.first->id);
    else
    if (rc != INTAKE_SUBMIT_UNAVAILABLE)
        *err = out.err;
    if (out.first)
        civicbus__v1__ticket__free_unpacked (out.first, NULL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    if (rc == INTAKE_SUBMIT_UNAVAILABLE)
        return -1;
    return seen->ticket_id [0] ? 0 : 1;
}

//  Step 5: copies the fold's counters into its ticket. 0 or -1.
static int
s_sync (intake_worker_t *worker, intake_t *intake, const s_fold_seen_t *seen)
{
    int64_t count = 0, first = 0, last = 0;
    int rc = sensor_folds_read (intake->folds, worker->redis, seen->type->name, seen->fold_id,
                                &count, &first, &last);
    if (rc)
        return rc < 0 ? -1 : 0;     //  gone: nothing to copy
    rc = TS_CONFLICT;
    for (int attempt = 0; attempt < S_TRIES && rc == TS_CONFLICT; attempt++) {
        cb_ticket_t *before = NULL;
        rc = ticket_store_load (worker->store, seen->ticket_id, &before);
        if (rc != TS_OK)
            break;
        cb_ticket_t *after = ticket_clone (before);
        if (!after)
            rc = TS_ERROR;
        else
        if (!after->sensor_fold || ticket_state_is_final (after->state)
        ||  !sensor_fold_merge_counts (after, count, first, last))
            rc = TS_OK;             //  nothing to change
        else
            rc = ticket_store_apply (worker->store, before, after, NULL, 0, NULL);
        if (after)
            civicbus__v1__ticket__free_unpacked (after, NULL);
        civicbus__v1__ticket__free_unpacked (before, NULL);
    }
    return rc == TS_UNAVAILABLE ? -1 : 0;
}

static json_t *
s_answer (const s_result_t *results, size_t n)
{
    json_t *array = json_array ();
    for (size_t i = 0; array && i < n; i++) {
        const s_result_t *r = &results [i];
        static const char *const names [] = { "rejected", "folded", "created", "pending" };
        json_t *item = json_pack ("{s:I, s:s}", "index", (json_int_t) i, "status",
                                  names [r->status]);
        if (item && r->status == S_REJECTED) {
            json_object_set_new (item, "code", json_string (r->err.code));
            json_object_set_new (item, "field", json_string (r->err.field));
            json_object_set_new (item, "reason", json_string (r->err.message));
        }
        else
        if (item) {
            json_object_set_new (item, "fold_id", json_string (r->fold.fold_id));
            if (r->fold.ticket_id [0])
                json_object_set_new (item, "ticket_id", json_string (r->fold.ticket_id));
            if (r->status == S_PENDING && r->err.message [0])
                json_object_set_new (item, "reason", json_string (r->err.message));
        }
        if (!item || json_array_append_new (array, item)) {
            json_decref (array);
            return NULL;
        }
    }
    return array;
}

/* ---- public ---- */

int
intake_events_post (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    if (!intake->sensors)
        return httpd_reply_error (req, MHD_HTTP_SERVICE_UNAVAILABLE, "not_configured", "",
                                  "sensor events are not configured here "
                                  "(CIVICBUS_SENSORS_CONFIG)");
    size_t len = 0;
    const char *body = httpd_request_body (req, &len);
    json_error_t parse_error;
    json_t *root = json_loadb (body, len, JSON_REJECT_DUPLICATES, &parse_error);
    if (!root)
        return httpd_reply_error (req, MHD_HTTP_BAD_REQUEST, "malformed_json", "",
                                  "%s (line %d, column %d)", parse_error.text, parse_error.line,
                                  parse_error.column);
    size_t n = json_array_size (root);
    if (!json_is_array (root) || n == 0 || n > SENSOR_EVENTS_MAX) {
        bool array = json_is_array (root);
        json_decref (root);
        return httpd_reply_error (req, MHD_HTTP_BAD_REQUEST, array ? "bad_value" : "not_array",
                                  "", "the body is an array of 1..%d events", SENSOR_EVENTS_MAX);
    }
    if (httpd_redis_down (intake->httpd)) {
        json_decref (root);
        return httpd_reply_unavailable (req, "breaker open");
    }
    const apikey_info_t *key = httpd_request_key (req);
    int64_t now_ms = cb_clock_now_ms ();
    sensor_event_t *events = calloc (n, sizeof *events);
    s_result_t *results = calloc (n, sizeof *results);
    sensor_event_t *valid = calloc (n, sizeof *valid);
    size_t *index_of = calloc (n, sizeof *index_of);
    sensor_fold_t *folded = calloc (n, sizeof *folded);
    //  Each event meets at most 1 + S_REFOLDS folds (closed ones, then a new one).
    s_fold_seen_t *folds = calloc (n * (1 + S_REFOLDS), sizeof *folds);
    size_t n_valid = 0, n_folds = 0;
    int result;
    const char *unavailable = NULL;
    if (!events || !results || !valid || !index_of || !folded || !folds) {
        result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                    "out of memory");
        goto done;
    }

    //  1. validate
    for (size_t i = 0; i < n; i++) {
        if (sensor_event_parse (intake->sensors, json_array_get (root, i), now_ms, &events [i],
                                &results [i].err)) {
            results [i].status = S_REJECTED;
            httpd_count (intake->httpd, intake->count_sensor_rejected);
            continue;
        }
        valid [n_valid] = events [i];
        index_of [n_valid++] = i;
    }

    //  2. fold, 3. re-fold what met a final ticket
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker) {
        result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                    "out of memory");
        goto done;
    }
    if (sensor_folds_fold (intake->folds, worker->redis, valid, n_valid, now_ms, folded))
        unavailable = "fold";
    for (size_t v = 0; !unavailable && v < n_valid; v++) {
        for (int round = 0; round < S_REFOLDS; round++) {
            s_fold_seen_t *seen = s_fold_add (folds, &n_folds, valid [v].type, &folded [v], v);
            if (!seen->ticket_id [0] || folded [v].created)
                break;
            if (!seen->checked) {
                //  First meeting of this fold in the request: is its ticket open?
                seen->checked = true;
                if (s_check_final (intake, worker, seen) < 0) {
                    unavailable = "load";
                    break;
                }
            }
            if (!seen->final)
                break;
            if (sensor_folds_fold (intake->folds, worker->redis, &valid [v], 1, now_ms,
                                   &folded [v])) {
                unavailable = "fold";
                break;
            }
        }
    }
    intake_pool_give (intake->pool, worker);
    if (unavailable) {
        httpd_redis_failed (intake->httpd);
        result = httpd_reply_unavailable (req, unavailable);
        goto done;
    }

    //  4. tickets for folds that have none
    for (size_t v = 0; v < n_valid; v++) {
        s_result_t *r = &results [index_of [v]];
        s_fold_seen_t *seen = s_fold_find (folds, n_folds, valid [v].type, folded [v].fold_id);
        r->fold = folded [v];
        r->status = S_FOLDED;
        httpd_count (intake->httpd, intake->count_sensor_events);
        if (!seen->ticket_id [0] && seen->first_event == v) {
            bool created = false;
            int rc = s_create (intake, key, &valid [v], seen, &created, &r->err);
            if (rc < 0) {
                result = httpd_reply_unavailable (req, "store");
                goto done;
            }
            if (rc == 0) {
                worker = intake_pool_take (intake->pool);
                if (worker) {
                    sensor_folds_set_ticket (intake->folds, worker->redis, valid [v].type->name,
                                             seen->fold_id, seen->ticket_id,
                                             valid [v].type->window_s);
                    intake_pool_give (intake->pool, worker);
                }
                if (created)
                    r->status = S_CREATED;
            }
        }
        if (seen->ticket_id [0])
            snprintf (r->fold.ticket_id, sizeof r->fold.ticket_id, "%s", seen->ticket_id);
        else {
            r->status = S_PENDING;
            if (!r->err.message [0])
                r->err = results [index_of [seen->first_event]].err;
        }
    }

    //  5. counters into the tickets
    worker = intake_pool_take (intake->pool);
    for (size_t f = 0; worker && f < n_folds; f++)
        if (folds [f].ticket_id [0] && !folds [f].final
        &&  s_sync (worker, intake, &folds [f])) {
            cb_log (CB_LOG_WARN, "fold counters not copied into the ticket (next request does)",
                    "ticket", folds [f].ticket_id, NULL);
            break;
        }
    if (worker)
        intake_pool_give (intake->pool, worker);

    json_t *answer = s_answer (results, n);
    result = answer ? httpd_reply_json (req, MHD_HTTP_OK, answer)
                    : httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                         "out of memory");
done:
    json_decref (root);
    free (events);
    free (results);
    free (valid);
    free (index_of);
    free (folded);
    free (folds);
    return result;
}
