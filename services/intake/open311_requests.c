/*  open311_requests.c — reading Open311 service requests (GET requests,
    requests/{id}, tokens/{token}) and the FixMyStreet service request
    updates extension (GET and POST servicerequestupdates).

    What is public: the specification's GETs need no key, so they show
    only tickets that came in through Open311 (source open311: their
    reporters used a public door), never reporters' names, phones or
    e-mails, and descriptions with mobile numbers masked. A ticket from the
    hotline or an app is "not found" here, as in the native API a ticket of
    another key is.

    Listing: tickets are indexed by creation time per bucket
    (idx:{bNN}:all). A listing merges the 64 buckets newest first (one
    pipelined ZREVRANGEBYSCORE round per refill, tickets loaded in
    pipelined batches) and filters each loaded ticket, so it costs
    O(tickets examined); it examines at most S_SCAN_MAX tickets and answers
    at most 1,000. Updates have no index of their own: the tickets created
    up to 90 days before start_date are examined (same merge), those
    updated since start_date have their history read. A city with more
    than S_SCAN_MAX tickets in that span needs an update index in the store
    (docs/OPEN311.md, "limits"). */

#include "open311.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/mask.h"
#include "civicbus/pbutil.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DAY_MS (24LL * 3600 * 1000)
#define S_LIST_MAX 1000             //  requests or updates in one answer (the specification's cap)
#define S_IDS_MAX 200               //  service_request_id=a,b,c...
#define S_SCAN_MAX 20000            //  tickets one answer may examine
#define S_LANE_PAGE 32              //  index entries fetched per bucket per refill
#define S_BATCH 128                 //  tickets loaded per pipelined round
#define S_UPDATES_LOOKBACK_MS (90 * S_DAY_MS)
#define S_UPDATES_DEFAULT_MS (7 * S_DAY_MS)
#define S_NOTE_MAX 2000

/* ---- private: ticket to Open311 request ---- */

static bool
s_is_open (cb_state_t state)
{
    return !ticket_state_is_final (state);
}

static json_t *
s_masked (const char *text)
{
    if (pb_string_is_empty (text))
        return json_null ();
    size_t cap = strlen (text) + 1;
    char *masked = malloc (cap);
    if (!masked)
        return NULL;
    cb_mask_text (text, masked, cap);
    json_t *json = json_string (masked);
    if (!json)                      //  not UTF-8: jansson refuses; show nothing rather than fail
        json = json_null ();
    free (masked);
    return json;
}

static json_t *
s_prefixed (const char *prefix, const char *text)
{
    char buf [S_NOTE_MAX + 128];
    snprintf (buf, sizeof buf, "%s%s%s", prefix, pb_string_is_empty (text) ? "" : ": ",
              pb_string_is_empty (text) ? "" : text);
    return s_masked (buf);
}

static const char *
s_department_name (const catalog_t *catalog, const char *code)
{
    const catalog_department_t *department =
        catalog && !pb_string_is_empty (code) ? catalog_department (catalog, code) : NULL;
    return department ? (department->name_zh ? department->name_zh : department->name) : NULL;
}

static json_t *
s_status_notes (const cb_ticket_t *t)
{
    switch (t->state) {
        case CIVICBUS__V1__TICKET_STATE__REJECTED:
            return s_prefixed ("不予受理 (not accepted)", t->reject_reason);
        case CIVICBUS__V1__TICKET_STATE__MERGED:
            return s_prefixed ("已并入工单 (duplicate of)", t->merged_into);
        case CIVICBUS__V1__TICKET_STATE__CANCELLED:
            return json_string ("报告人已撤回 (withdrawn by the reporter)");
        case CIVICBUS__V1__TICKET_STATE__RESOLVED:
            return s_prefixed ("已办结，待核查 (resolved, awaiting verification)", t->resolution);
        case CIVICBUS__V1__TICKET_STATE__CLOSED:
            return s_prefixed ("已结案 (closed)", t->resolution);
        default:
            return json_null ();
    }
}

static json_t *
s_service_notice (const cb_ticket_t *t, const char *department)
{
    char text [256];
    switch (t->state) {
        case CIVICBUS__V1__TICKET_STATE__RECEIVED:
            return json_string ("已登记，待受理 (received, awaiting acceptance)");
        case CIVICBUS__V1__TICKET_STATE__ACCEPTED:
        case CIVICBUS__V1__TICKET_STATE__RETURNED:
            return json_string ("已立案，待派单 (accepted, awaiting dispatch)");
        case CIVICBUS__V1__TICKET_STATE__DISPATCHED:
            snprintf (text, sizeof text, "已派至%s，待签收 (sent to the department)",
                      department ? department : "承办部门");
            return json_string (text);
        case CIVICBUS__V1__TICKET_STATE__IN_PROGRESS:
            snprintf (text, sizeof text, "%s办理中 (in progress)",
                      department ? department : "承办部门");
            return json_string (text);
        case CIVICBUS__V1__TICKET_STATE__SUSPENDED:
            return json_string ("挂账，暂停计时 (on hold)");
        default:
            return json_null ();
    }
}

static int64_t
s_resolve_due (const cb_ticket_t *t)
{
    for (size_t i = 0; i < t->n_deadlines; i++)
        if (t->deadlines [i]->stage == CIVICBUS__V1__STAGE__STAGE_RESOLVE)
            return t->deadlines [i]->due_ms;
    return 0;
}

//  The specification's request record; NULL when out of memory.
static json_t *
s_request_json (const cb_ticket_t *t, const catalog_t *catalog)
{
    const catalog_category_t *category = catalog ? catalog_category (catalog, t->category) : NULL;
    const char *department = s_department_name (catalog, t->department);
    const Civicbus__V1__Location *loc = t->location;
    json_t *json = json_object ();
    if (!json)
        return NULL;
    json_object_set_new (json, "service_request_id", json_string (t->id));
    json_object_set_new (json, "status", json_string (s_is_open (t->state) ? "open" : "closed"));
    json_object_set_new (json, "status_notes", s_status_notes (t));
    json_object_set_new (json, "service_name",
                         category && category->name_zh ? json_string (category->name_zh)
                                                        : json_null ());
    json_object_set_new (json, "service_code", json_string (t->category ? t->category : ""));
    json_object_set_new (json, "description", s_masked (t->description));
    json_object_set_new (json, "agency_responsible",
                         department ? json_string (department) : json_null ());
    json_object_set_new (json, "service_notice", s_service_notice (t, department));
    json_object_set_new (json, "requested_datetime", open311_time (t->created_ms));
    json_object_set_new (json, "updated_datetime", open311_time (t->updated_ms));
    json_object_set_new (json, "expected_datetime", open311_time (s_resolve_due (t)));
    json_object_set_new (json, "address", loc && !pb_string_is_empty (loc->address)
                                          ? s_masked (loc->address) : json_null ());
    json_object_set_new (json, "address_id", json_null ());
    json_object_set_new (json, "zipcode", json_null ());
    json_object_set_new (json, "lat", loc && loc->has_point ? json_real (loc->lat) : json_null ());
    json_object_set_new (json, "long", loc && loc->has_point ? json_real (loc->lon) : json_null ());
    json_object_set_new (json, "media_url", t->n_attachment_urls
                                            ? json_string (t->attachment_urls [0]) : json_null ());
    if (json_object_size (json) != 17) {
        json_decref (json);
        return NULL;
    }
    return json;
}

//  Only tickets that came in through Open311 are shown here.
static bool
s_public (const cb_ticket_t *t)
{
    return t->source == CIVICBUS__V1__SOURCE__SOURCE_OPEN311;
}

/* ---- private: scanning the creation index ---- */

typedef struct {
    char id [CB_TICKET_ID_MAX];
    int64_t score;
} s_entry_t;

typedef struct {
    s_entry_t entries [S_LANE_PAGE];
    size_t n, pos;
    long offset;
    bool done;
} s_lane_t;

//  Called for each ticket, newest first; returns true to go on.
typedef bool (s_visit_fn) (cb_ticket_t *t, void *arg);

static bool
s_newer (const s_entry_t *a, const s_entry_t *b)
{
    return a->score != b->score ? a->score > b->score : strcmp (a->id, b->id) > 0;
}

//  Refills the lanes that ran dry. TS_OK or TS_UNAVAILABLE.
static int
s_refill (cb_redis_t *redis, s_lane_t *lanes, int64_t from_ms, int64_t to_ms)
{
    bool asked [CB_BUCKETS] = { false };
    int appended = 0, rc = TS_OK;
    for (int b = 0; b < CB_BUCKETS; b++) {
        s_lane_t *lane = &lanes [b];
        if (lane->pos < lane->n || lane->done)
            continue;
        char key [32];
        ts_bucket_key (key, sizeof key, "idx", b);
        if (cb_redis_append (redis, "ZREVRANGEBYSCORE %s:all %lld %lld WITHSCORES LIMIT %ld %d",
                             key, (long long) to_ms, (long long) from_ms, lane->offset,
                             S_LANE_PAGE))
            return TS_UNAVAILABLE;
        asked [b] = true;
        appended++;
    }
    for (int b = 0; b < CB_BUCKETS && appended; b++) {
        if (!asked [b])
            continue;
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return TS_UNAVAILABLE;
        s_lane_t *lane = &lanes [b];
        lane->n = lane->pos = 0;
        if (reply->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i + 1 < reply->elements && lane->n < S_LANE_PAGE; i += 2) {
                s_entry_t *entry = &lane->entries [lane->n++];
                snprintf (entry->id, sizeof entry->id, "%s", reply->element [i]->str);
                entry->score = strtoll (reply->element [i + 1]->str, NULL, 10);
            }
        }
        else
            rc = TS_ERROR;
        lane->offset += (long) lane->n;
        lane->done = lane->n < S_LANE_PAGE;
        freeReplyObject (reply);
    }
    return rc;
}

//  Loads `n` tickets in one pipelined round and visits them in order.
//  TS_OK (and *go_on), TS_UNAVAILABLE.
static int
s_visit_batch (cb_redis_t *redis, const s_entry_t *batch, size_t n, s_visit_fn *visit,
               void *arg, bool *go_on)
{
    for (size_t i = 0; i < n; i++) {
        char key [64];
        if (ts_key (key, sizeof key, "t", batch [i].id)
        ||  cb_redis_append (redis, "HGET %s pb", key))
            return TS_UNAVAILABLE;
    }
    cb_ticket_t *tickets [S_BATCH] = { NULL };
    int rc = TS_OK;
    for (size_t i = 0; i < n; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply) {
            rc = TS_UNAVAILABLE;
            break;
        }
        if (reply->type == REDIS_REPLY_STRING)
            tickets [i] = civicbus__v1__ticket__unpack (NULL, reply->len,
                                                        (const uint8_t *) reply->str);
        freeReplyObject (reply);
    }
    for (size_t i = 0; i < n; i++) {
        if (rc == TS_OK && *go_on && tickets [i])
            *go_on = visit (tickets [i], arg);
        if (tickets [i])
            civicbus__v1__ticket__free_unpacked (tickets [i], NULL);
    }
    return rc;
}

//  Visits the tickets created in [from_ms, to_ms], newest first, at most
//  S_SCAN_MAX. TS_OK, TS_UNAVAILABLE, TS_ERROR.
static int
s_scan (cb_redis_t *redis, int64_t from_ms, int64_t to_ms, s_visit_fn *visit, void *arg)
{
    s_lane_t *lanes = calloc (CB_BUCKETS, sizeof (s_lane_t));
    s_entry_t *batch = calloc (S_BATCH, sizeof (s_entry_t));
    if (!lanes || !batch) {
        free (lanes);
        free (batch);
        return TS_ERROR;
    }
    int rc = TS_OK;
    size_t examined = 0;
    bool go_on = true;
    while (rc == TS_OK && go_on && examined < S_SCAN_MAX) {
        rc = s_refill (redis, lanes, from_ms, to_ms);
        if (rc != TS_OK)
            break;
        size_t n = 0;
        bool dry = false;
        while (n < S_BATCH && !dry) {
            int best = -1;
            for (int b = 0; b < CB_BUCKETS && !dry; b++) {
                if (lanes [b].pos < lanes [b].n) {
                    if (best < 0 || s_newer (&lanes [b].entries [lanes [b].pos],
                                             &lanes [best].entries [lanes [best].pos]))
                        best = b;
                }
                else
                if (!lanes [b].done)
                    dry = true;         //  its next entries may be newer: refill first
            }
            if (dry || best < 0)
                break;
            batch [n++] = lanes [best].entries [lanes [best].pos++];
        }
        if (n == 0 && !dry)
            break;                      //  every lane is empty and done
        if (n)
            rc = s_visit_batch (redis, batch, n, visit, arg, &go_on);
        examined += n;
    }
    free (lanes);
    free (batch);
    return rc;
}

/* ---- private: query strings ---- */

typedef struct {
    const char *ids;
    const char *service_codes;
    const char *start, *end;
    const char *status;
} s_query_t;

//  Splits a comma list into `items` (copies in `buf`). Returns the count.
static size_t
s_split_list (const char *text, char *buf, size_t cap, const char **items, size_t max)
{
    snprintf (buf, cap, "%s", text ? text : "");
    size_t n = 0;
    char *save = NULL;
    for (char *item = strtok_r (buf, ",", &save); item && n < max;
         item = strtok_r (NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        size_t len = strlen (item);
        while (len && item [len - 1] == ' ')
            item [--len] = 0;
        if (*item)
            items [n++] = item;
    }
    return n;
}

static bool
s_in_list (const char *value, const char *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp (value, items [i]) == 0)
            return true;
    return false;
}

//  start_date/end_date: 0, or -1 with an answer queued in *result.
static int
s_window (httpd_request_t *req, open311_format_t format, int64_t default_span_ms,
          int64_t *from_ms, int64_t *to_ms, int *result)
{
    const char *start = httpd_request_query (req, "start_date");
    const char *end = httpd_request_query (req, "end_date");
    int64_t now = cb_clock_now_ms ();
    *to_ms = now;
    if (end && cb_time_parse_iso (end, to_ms)) {
        *result = open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST,
                                       "end_date must be an ISO 8601 date and time");
        return -1;
    }
    *from_ms = *to_ms - default_span_ms;
    if (start && cb_time_parse_iso (start, from_ms)) {
        *result = open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST,
                                       "start_date must be an ISO 8601 date and time");
        return -1;
    }
    if (start && !end)
        *to_ms = *from_ms + default_span_ms;   //  the span after start_date (may be future)
    if (*from_ms > *to_ms) {
        *result = open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST,
                                       "start_date is after end_date");
        return -1;
    }
    return 0;
}

//  Takes a worker, or answers (503, 500) and returns NULL.
static intake_worker_t *
s_worker (intake_t *intake, httpd_request_t *req, int *result)
{
    if (httpd_redis_down (intake->httpd)) {
        *result = httpd_reply_unavailable (req, "breaker open");
        return NULL;
    }
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker)
        *result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                     "out of memory");
    return worker;
}

static int
s_failed (intake_t *intake, httpd_request_t *req, int rc)
{
    if (rc == TS_UNAVAILABLE) {
        httpd_redis_failed (intake->httpd);
        return httpd_reply_unavailable (req, "read");
    }
    return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                              "the requests could not be read");
}

/* ---- public: requests ---- */

typedef struct {
    json_t *list;
    const catalog_t *catalog;
    const char **codes;
    size_t n_codes;
    int status;                     //  -1 any, 1 open, 0 closed
} s_list_t;

static bool
s_list_visit (cb_ticket_t *t, void *arg)
{
    s_list_t *self = arg;
    if (!s_public (t))
        return true;
    if (self->n_codes && !s_in_list (t->category ? t->category : "", self->codes, self->n_codes))
        return true;
    if (self->status >= 0 && s_is_open (t->state) != (self->status == 1))
        return true;
    json_array_append_new (self->list, s_request_json (t, self->catalog));
    return json_array_size (self->list) < S_LIST_MAX;
}

int
open311_requests_list (intake_t *intake, httpd_request_t *req, open311_format_t format)
{
    char id_buf [4096], code_buf [2048], status_buf [64];
    const char *ids [S_IDS_MAX], *codes [64], *statuses [4];
    size_t n_ids = s_split_list (httpd_request_query (req, "service_request_id"), id_buf,
                                 sizeof id_buf, ids, S_IDS_MAX);
    s_list_t self = { NULL, NULL, codes, 0, -1 };
    self.n_codes = s_split_list (httpd_request_query (req, "service_code"), code_buf,
                                 sizeof code_buf, codes, 64);
    size_t n_statuses = s_split_list (httpd_request_query (req, "status"), status_buf,
                                      sizeof status_buf, statuses, 4);
    bool want_open = false, want_closed = false;
    for (size_t i = 0; i < n_statuses; i++) {
        if (strcasecmp (statuses [i], "open") == 0)
            want_open = true;
        else
        if (strcasecmp (statuses [i], "closed") == 0)
            want_closed = true;
        else
            return open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST,
                                        "status must be open or closed (or both, comma-separated)");
    }
    self.status = want_open == want_closed ? -1 : want_open ? 1 : 0;
    int64_t from_ms = 0, to_ms = 0;
    int result = 0;
    if (n_ids == 0 && s_window (req, format, 90 * S_DAY_MS, &from_ms, &to_ms, &result))
        return result;
    intake_worker_t *worker = s_worker (intake, req, &result);
    if (!worker)
        return result;
    citydata_snapshot_t *snap = citydata_acquire (intake->citydata);
    self.catalog = snap->catalog;
    self.list = json_array ();
    int rc = self.list ? TS_OK : TS_ERROR;
    if (rc == TS_OK && n_ids) {
        //  With ids, the other filters are ignored (the specification says so).
        for (size_t i = 0; i < n_ids && rc == TS_OK; i++) {
            cb_ticket_t *t = NULL;
            rc = ticket_store_load (worker->store, ids [i], &t);
            if (rc == TS_OK && s_public (t))
                json_array_append_new (self.list, s_request_json (t, self.catalog));
            if (t)
                civicbus__v1__ticket__free_unpacked (t, NULL);
            if (rc == TS_NOT_FOUND)
                rc = TS_OK;
        }
    }
    else
    if (rc == TS_OK)
        rc = s_scan (worker->redis, from_ms, to_ms, s_list_visit, &self);
    intake_pool_give (intake->pool, worker);
    if (rc == TS_OK)
        result = open311_reply (req, format, MHD_HTTP_OK, self.list, "service_requests",
                                "request");
    else {
        json_decref (self.list);
        result = s_failed (intake, req, rc);
    }
    citydata_release (intake->citydata, &snap);
    return result;
}

//  Loads a public ticket: TS_OK (caller frees), TS_NOT_FOUND, or a failure.
static int
s_load_public (intake_worker_t *worker, const char *id, cb_ticket_t **t)
{
    *t = NULL;
    if (ticket_id_bucket (id) < 0)
        return TS_NOT_FOUND;
    int rc = ticket_store_load (worker->store, id, t);
    if (rc == TS_OK && !s_public (*t)) {
        civicbus__v1__ticket__free_unpacked (*t, NULL);
        *t = NULL;
        rc = TS_NOT_FOUND;
    }
    return rc;
}

int
open311_request_one (intake_t *intake, httpd_request_t *req, open311_format_t format,
                     const char *id)
{
    int result = 0;
    intake_worker_t *worker = s_worker (intake, req, &result);
    if (!worker)
        return result;
    cb_ticket_t *t = NULL;
    int rc = s_load_public (worker, id, &t);
    intake_pool_give (intake->pool, worker);
    if (rc == TS_NOT_FOUND)
        return open311_reply_error (req, format, MHD_HTTP_NOT_FOUND,
                                    "service_request_id '%s' not found", id);
    if (rc != TS_OK)
        return s_failed (intake, req, rc);
    citydata_snapshot_t *snap = citydata_acquire (intake->citydata);
    json_t *list = json_array ();
    json_array_append_new (list, s_request_json (t, snap->catalog));
    citydata_release (intake->citydata, &snap);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    return open311_reply (req, format, MHD_HTTP_OK, list, "service_requests", "request");
}

int
open311_token (intake_t *intake, httpd_request_t *req, open311_format_t format,
               const char *token)
{
    int result = 0;
    intake_worker_t *worker = s_worker (intake, req, &result);
    if (!worker)
        return result;
    cb_ticket_t *t = NULL;
    int rc = s_load_public (worker, token, &t);
    intake_pool_give (intake->pool, worker);
    if (rc == TS_NOT_FOUND)
        return open311_reply_error (req, format, MHD_HTTP_NOT_FOUND,
                                    "token '%s' not found (this server answers every POST with "
                                    "a service_request_id and issues no tokens)", token);
    if (rc != TS_OK)
        return s_failed (intake, req, rc);
    json_t *list = json_pack ("[{s:s, s:s}]", "token", token, "service_request_id", t->id);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    return open311_reply (req, format, MHD_HTTP_OK, list, "service_requests", "request");
}

/* ---- public: the updates extension ---- */

//  What a ticket's state reads as in the extension's status (the table in
//  docs/OPEN311.md).
static const char *
s_extended_status (cb_state_t state)
{
    switch (state) {
        case CIVICBUS__V1__TICKET_STATE__RECEIVED:
        case CIVICBUS__V1__TICKET_STATE__ACCEPTED:      return "OPEN";
        case CIVICBUS__V1__TICKET_STATE__DISPATCHED:
        case CIVICBUS__V1__TICKET_STATE__SUSPENDED:     return "ACTION_SCHEDULED";
        case CIVICBUS__V1__TICKET_STATE__IN_PROGRESS:   return "IN_PROGRESS";
        case CIVICBUS__V1__TICKET_STATE__RETURNED:      return "INVESTIGATING";
        case CIVICBUS__V1__TICKET_STATE__RESOLVED:
        case CIVICBUS__V1__TICKET_STATE__CLOSED:        return "FIXED";
        case CIVICBUS__V1__TICKET_STATE__REJECTED:      return "NOT_COUNCILS_RESPONSIBILITY";
        case CIVICBUS__V1__TICKET_STATE__MERGED:        return "DUPLICATE";
        case CIVICBUS__V1__TICKET_STATE__CANCELLED:     return "CLOSED";
        default:                                        return "OPEN";
    }
}

//  The history entries shown as updates, with their text; others (timers,
//  escalation, internal requests and decisions, deliveries) stay inside.
static const char *
s_update_label (const char *type)
{
    static const char *const labels [][2] = {
        { "received", "已登记 (received)" },
        { "accept", "已立案 (accepted)" },
        { "reject", "不予受理 (not accepted)" },
        { "dispatch", "已派单至承办部门 (sent to the department in charge)" },
        { "reassign", "已改派 (sent to another department)" },
        { "sign", "承办部门已签收 (the department took it on)" },
        { "return", "承办部门退回，重新派单 (handed back for re-routing)" },
        { "progress", "办理进展 (progress)" },
        { "resolve", "已办结 (resolved)" },
        { "verify", "已核查结案 (verified and closed)" },
        { "reopen", "重新办理 (reopened)" },
        { "merge", "与其他工单合并 (merged as a duplicate)" },
        { "cancel", "报告人撤回 (withdrawn)" },
        { "supplement", "补充说明 (update)" },
        { "approve_suspension", "挂账，暂停计时 (on hold)" },
        { "resume", "恢复办理 (resumed)" },
        { "approve_extension", "延期办理 (time limit extended)" },
    };
    for (size_t i = 0; i < sizeof labels / sizeof labels [0]; i++)
        if (type && strcmp (type, labels [i][0]) == 0)
            return labels [i][1];
    return NULL;
}

static json_t *
s_update_json (const cb_event_t *ev)
{
    char update_id [CB_TICKET_ID_MAX + 16];
    snprintf (update_id, sizeof update_id, "%s#%d", ev->ticket_id, ev->sequence);
    return json_pack ("{s:s, s:s, s:s, s:o, s:o, s:n}",
                      "update_id", update_id,
                      "service_request_id", ev->ticket_id,
                      "status", s_extended_status (ev->to_state),
                      "updated_datetime", open311_time (ev->time_ms),
                      "description", s_prefixed (s_update_label (ev->type), ev->note),
                      "media_url");
}

typedef struct {
    ticket_store_t *store;
    int64_t from_ms, to_ms;
    json_t *list;
    int rc;
} s_updates_t;

static bool
s_updates_visit (cb_ticket_t *t, void *arg)
{
    s_updates_t *self = arg;
    if (!s_public (t) || t->updated_ms < self->from_ms)
        return true;
    cb_event_t **events = NULL;
    size_t n = 0;
    int rc = ticket_store_history (self->store, t->id, &events, &n);
    if (rc == TS_UNAVAILABLE || rc == TS_ERROR) {
        self->rc = rc;
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const cb_event_t *ev = events [i];
        if (ev->time_ms >= self->from_ms && ev->time_ms <= self->to_ms
        &&  s_update_label (ev->type))
            json_array_append_new (self->list, s_update_json (ev));
    }
    ticket_store_free_events (events, n);
    //  Gathered past the cap, then the earliest S_LIST_MAX are kept.
    return json_array_size (self->list) < 5 * S_LIST_MAX;
}

static int
s_by_time (const void *a, const void *b)
{
    const json_t *x = *(json_t *const *) a, *y = *(json_t *const *) b;
    int c = strcmp (json_string_value (json_object_get (x, "updated_datetime")),
                    json_string_value (json_object_get (y, "updated_datetime")));
    return c ? c : strcmp (json_string_value (json_object_get (x, "update_id")),
                           json_string_value (json_object_get (y, "update_id")));
}

int
open311_updates_list (intake_t *intake, httpd_request_t *req, open311_format_t format)
{
    int64_t from_ms = 0, to_ms = 0;
    int result = 0;
    if (s_window (req, format, S_UPDATES_DEFAULT_MS, &from_ms, &to_ms, &result))
        return result;
    intake_worker_t *worker = s_worker (intake, req, &result);
    if (!worker)
        return result;
    s_updates_t self = { worker->store, from_ms, to_ms, json_array (), TS_OK };
    int rc = self.list ? s_scan (worker->redis, from_ms - S_UPDATES_LOOKBACK_MS, to_ms,
                                 s_updates_visit, &self)
                       : TS_ERROR;
    if (rc == TS_OK)
        rc = self.rc;
    intake_pool_give (intake->pool, worker);
    if (rc != TS_OK) {
        json_decref (self.list);
        return s_failed (intake, req, rc);
    }
    //  Oldest first, at most S_LIST_MAX: a client that asks again from the
    //  last updated_datetime it saw misses nothing. (Same-format times in
    //  one zone sort as text.)
    size_t n = json_array_size (self.list);
    json_t **items = malloc ((n ? n : 1) * sizeof (json_t *));
    json_t *sorted = json_array ();
    if (!items || !sorted) {
        free (items);
        json_decref (sorted);
        json_decref (self.list);
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        items [i] = json_array_get (self.list, i);
    qsort (items, n, sizeof (json_t *), s_by_time);
    for (size_t i = 0; i < n && i < S_LIST_MAX; i++)
        json_array_append (sorted, items [i]);
    free (items);
    json_decref (self.list);
    return open311_reply (req, format, MHD_HTTP_OK, sorted, "service_request_updates",
                          "request_update");
}

//  The extension's statuses a client may name in a POST.
static bool
s_known_status (const char *status)
{
    static const char *const known [] = {
        "OPEN", "CLOSED", "FIXED", "IN_PROGRESS", "ACTION_SCHEDULED", "INVESTIGATING",
        "DUPLICATE", "NOT_COUNCILS_RESPONSIBILITY", "NO_FURTHER_ACTION", "INTERNAL_REFERRAL",
        "UNABLE_TO_FIX",
    };
    for (size_t i = 0; i < sizeof known / sizeof known [0]; i++)
        if (strcasecmp (status, known [i]) == 0)
            return true;
    return false;
}

//  An earlier supplement of this client update_id, as "ID#SEQ" in `out`.
static int
s_find_update (ticket_store_t *store, const char *id, const char *marker, char *out, size_t cap)
{
    cb_event_t **events = NULL;
    size_t n = 0;
    int rc = ticket_store_history (store, id, &events, &n);
    if (rc != TS_OK)
        return rc;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++)
        if (events [i]->type && strcmp (events [i]->type, "supplement") == 0
        &&  events [i]->note && strstr (events [i]->note, marker)) {
            snprintf (out, cap, "%s#%d", id, events [i]->sequence);
            found = true;
        }
    ticket_store_free_events (events, n);
    return found ? TS_OK : TS_NOT_FOUND;
}

int
open311_update_post (intake_t *intake, httpd_request_t *req, open311_format_t format,
                     const apikey_info_t *key, const open311_form_t *form)
{
    const char *id = open311_form_get (form, "service_request_id");
    const char *description = open311_form_get (form, "description");
    const char *status = open311_form_get (form, "status");
    const char *updated = open311_form_get (form, "updated_datetime");
    const char *client_update_id = open311_form_get (form, "update_id");
    const char *media_url = open311_form_get (form, "media_url");
    json_t *errors = json_array ();
    if (!id || !*id)
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST, "service_request_id is required");
    if (!description || !description [strspn (description, " \t\r\n")])
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST, "description is required");
    else
    if (cb_utf8_length (description, strlen (description)) > S_NOTE_MAX)
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                           "description is longer than %d characters", S_NOTE_MAX);
    if (status && *status && !s_known_status (status))
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                           "status '%s' is not a status of the updates extension", status);
    int64_t ignored;
    if (updated && *updated && cb_time_parse_iso (updated, &ignored))
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                           "updated_datetime must be an ISO 8601 date and time");
    if (client_update_id && (strlen (client_update_id) > 64 || strpbrk (client_update_id, "[]")))
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                           "update_id is at most 64 characters without brackets");
    if (media_url && strlen (media_url) > 1024)
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST, "media_url is over 1024 bytes");
    if (json_array_size (errors))
        return open311_reply_errors (req, format, MHD_HTTP_BAD_REQUEST, errors);
    json_decref (errors);

    int result = 0;
    intake_worker_t *worker = s_worker (intake, req, &result);
    if (!worker)
        return result;
    //  Reporters' keys add to their own tickets; operators' to any.
    bool operator = key->role == APIKEY_ROLE_OPERATOR || key->role == APIKEY_ROLE_ADMIN;
    cb_ticket_t *t = NULL;
    int rc = s_load_public (worker, id, &t);
    if (rc == TS_OK && !operator && strcmp (t->intake_key ? t->intake_key : "", key->name))
        rc = TS_NOT_FOUND;
    if (t)
        civicbus__v1__ticket__free_unpacked (t, NULL);
    char marker [96] = "", update_id [CB_TICKET_ID_MAX + 16] = "";
    if (rc == TS_OK && client_update_id && *client_update_id) {
        snprintf (marker, sizeof marker, "[update_id %s]", client_update_id);
        rc = s_find_update (worker->store, id, marker, update_id, sizeof update_id);
        if (rc == TS_OK) {
            intake_pool_give (intake->pool, worker);
            return open311_reply (req, format, MHD_HTTP_OK,
                                  json_pack ("[{s:s}]", "update_id", update_id),
                                  "service_request_updates", "request_update");
        }
        if (rc == TS_NOT_FOUND)
            rc = TS_OK;
    }
    if (rc == TS_NOT_FOUND) {
        intake_pool_give (intake->pool, worker);
        return open311_reply_error (req, format, MHD_HTTP_NOT_FOUND,
                                    "service_request_id '%s' not found", id);
    }
    if (rc != TS_OK) {
        intake_pool_give (intake->pool, worker);
        return s_failed (intake, req, rc);
    }

    //  The note: the text (phones masked), what the client says the status
    //  is (we record it; only the city's workflow changes a state), media.
    char note [S_NOTE_MAX * 2 + 1400];
    char masked [S_NOTE_MAX * 2];
    cb_mask_text (description, masked, sizeof masked);
    bool says_status = status && *status && strcasecmp (status, "OPEN") != 0;
    snprintf (note, sizeof note, "%s%s%s%s%s%s%s%s", masked,
              says_status ? " [报告人所报状态 status " : "", says_status ? status : "",
              says_status ? "]" : "",
              media_url && *media_url ? " " : "", media_url && *media_url ? media_url : "",
              marker [0] ? " " : "", marker);
    ticket_input_t input = { .kind = TEV_SUPPLEMENT, .text = note };
    ticket_actor_t actor = { operator ? CIVICBUS__V1__ACTOR_KIND__ACTOR_OPERATOR
                                      : CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER,
                             key->name, NULL };
    ticket_outcome_t outcome;
    cb_ticket_t *after = NULL;
    rc = ticket_store_transition (worker->store, id, &input, &actor, cb_clock_now_ms (), 5,
                                  NULL, NULL, &outcome, &after);
    intake_pool_give (intake->pool, worker);
    if (rc == TS_OK) {
        snprintf (update_id, sizeof update_id, "%s#%d", after->id, after->event_count);
        civicbus__v1__ticket__free_unpacked (after, NULL);
        cb_log (CB_LOG_INFO, "open311 update recorded", "ticket", id, "update", update_id,
                "key", key->name, NULL);
        return open311_reply (req, format, MHD_HTTP_OK,
                              json_pack ("[{s:s}]", "update_id", update_id),
                              "service_request_updates", "request_update");
    }
    if (rc == TS_REFUSED)
        return open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST,
                                    "the update cannot be added (%s): %s", outcome.code,
                                    outcome.reason);
    if (rc == TS_NOT_FOUND)
        return open311_reply_error (req, format, MHD_HTTP_NOT_FOUND,
                                    "service_request_id '%s' not found", id);
    return s_failed (intake, req, rc);
}
