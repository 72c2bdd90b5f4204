/*  tickets.c — the native ticket API: create, read one, list.

    POST /v1/tickets
      Who: keys of every role, each for the sources it speaks for:
        reporter_app  app, web, open311, grid_worker
        hotline       hotline   (only the 12345 integration may claim to be it)
        sensor        sensor
        operator, admin   any source (operators record walk-ins and calls)
      Steps: validate (ticket_json), check the category against the loaded
      catalogue (and that it takes the request type), locate (a grid code is
      trusted before a point: the person on site knows their grid better than
      a phone's GPS near a border; a point in no grid, or an address only,
      keeps the ticket as ungridded), pick the idempotency key, store in one
      script, ring the dispatcher, answer 201. Nothing is stored for a
      refused request; nothing is answered 201 before Redis confirmed.
      Idempotency, in this order:
        Idempotency-Key header  "key:NAME:VALUE"   (per API key: two clients
                                may use the same value), kept
                                CIVICBUS_IDEMPOTENCY_TTL_S; the same value with
                                a different ticket is 422
        external_id             "ext:SOURCE:ID"   (the sender's own number:
                                the hotline's 工单编号), same TTL; a resend
                                answers with the first ticket
        neither                 "body:SHA256(NAME \n BODY)", kept 10 minutes,
                                so a client's blind retry of the same bytes
                                does not make a second ticket (an identical
                                report from the same key within ten minutes
                                is folded into the first, on purpose)
      A repeat answers 200 with the first ticket.

    GET /v1/tickets/{id}
      Operators and admins read every ticket; other keys read the tickets
      they created (others are 404, so ids cannot be probed). Personal data
      is masked unless the role may see it (apikey_role_sees_personal_data).

    GET /v1/tickets?state=&department=&grid=&since=&limit=&cursor=
      Operators and admins. Oldest first by (created time, id). Walks the
      most selective idx:{bNN}:* index (counted per request over the 64
      buckets) and checks the other filters on each loaded ticket; the 64
      buckets are merged with one pipelined ZRANGEBYSCORE round per refill.
      A page holds at most `limit` tickets (default 50, at most 500) and
      `next_cursor` (null at the end). One request examines a bounded number
      of index entries, so a page may hold fewer than `limit` tickets while
      next_cursor is not null: keep following it. */

#include "intake.h"
#include "civicbus/bus.h"
#include "civicbus/catalog.h"
#include "civicbus/clock.h"
#include "civicbus/grid_index.h"
#include "civicbus/log.h"
#include "civicbus/pbutil.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define S_IDEMPOTENCY_KEY_MAX 128
#define S_LIST_LIMIT_DEFAULT 50
#define S_LIST_LIMIT_MAX 500
#define S_LIST_SCAN_MIN 2000          //  index entries one page may examine, at least
#define S_FILTER_CODE_MAX 64

/* ---- private: create ---- */

static bool
s_source_allowed (apikey_role_t role, int source)
{
    switch (role) {
        case APIKEY_ROLE_ADMIN:
        case APIKEY_ROLE_OPERATOR:
            return true;
        case APIKEY_ROLE_HOTLINE:
            return source == CIVICBUS__V1__SOURCE__SOURCE_HOTLINE;
        case APIKEY_ROLE_SENSOR:
            return source == CIVICBUS__V1__SOURCE__SOURCE_SENSOR;
        case APIKEY_ROLE_REPORTER_APP:
            return source == CIVICBUS__V1__SOURCE__SOURCE_APP
                || source == CIVICBUS__V1__SOURCE__SOURCE_WEB
                || source == CIVICBUS__V1__SOURCE__SOURCE_OPEN311
                || source == CIVICBUS__V1__SOURCE__SOURCE_GRID_WORKER;
        default:
            return false;
    }
}

static unsigned
s_mask_flags (apikey_role_t role)
{
    return apikey_role_sees_personal_data (role) ? 0 : TICKET_JSON_MASK_PERSONAL;
}

static bool
s_idempotency_key_valid (const char *value)
{
    size_t len = strlen (value);
    if (len < 1 || len > S_IDEMPOTENCY_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) value [i] < 0x20 || (unsigned char) value [i] > 0x7E)
            return false;
    return true;
}

static int
s_set_path (Civicbus__V1__Location *loc, const grid_hit_t *hit)
{
    const char *codes [GRID_PATH_MAX + 1];
    size_t n = grid_hit_codes (hit, codes, GRID_PATH_MAX);
    codes [n] = NULL;
    if (pb_set_string (&loc->grid_code, hit->code)
    ||  pb_strv_set (&loc->n_grid_path, &loc->grid_path, codes))
        return -1;
    loc->ungridded = false;
    return 0;
}

//  Fills grid_code, grid_path and ungridded. 0; 1 with err for a grid code
//  the city does not have; -1 when out of memory.
static int
s_locate (const grid_index_t *grids, cb_ticket_t *t, cb_error_t *err)
{
    Civicbus__V1__Location *loc = t->location;
    if (!loc)
        return 0;                   //  the parser always sets it; be safe
    if (!grids) {
        //  No grids loaded yet: keep what was sent, unverified.
        loc->ungridded = true;
        return 0;
    }
    grid_hit_t hit;
    if (!pb_string_is_empty (loc->grid_code)) {
        if (grid_index_path (grids, loc->grid_code, &hit)) {
            cb_error_set (err, "unknown_grid", "location.grid_code",
                          "grid code '%s' is not in the city's grids", loc->grid_code);
            return 1;
        }
        return s_set_path (loc, &hit);
    }
    if (loc->has_point) {
        int rc = grid_index_locate (grids, loc->lat, loc->lon, &hit);
        if (rc == 0)
            return s_set_path (loc, &hit);
        if (rc == GRID_INDEX_FAILED)
            return -1;
    }
    loc->ungridded = true;
    return 0;
}

//  A different ticket under a reused Idempotency-Key: the fields a client
//  would have changed on purpose.
static bool
s_same_request (const cb_ticket_t *a, const cb_ticket_t *b)
{
    return a->source == b->source && a->request_type == b->request_type
        && strcmp (a->category ? a->category : "", b->category ? b->category : "") == 0
        && strcmp (a->description ? a->description : "",
                   b->description ? b->description : "") == 0;
}

static void
s_ring (intake_t *intake, intake_worker_t *worker, const char *id)
{
    Civicbus__V1__Doorbell doorbell = CIVICBUS__V1__DOORBELL__INIT;
    doorbell.ticket_id = (char *) id;
    doorbell.reason = (char *) "received";
    if (!worker->doorbell
    ||  cb_bus_send (worker->doorbell, NULL, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DOORBELL, id,
                     &doorbell.base)) {
        httpd_count (intake->httpd, intake->count_doorbells_dropped);
        cb_log (CB_LOG_DEBUG, "doorbell not sent", "ticket", id, NULL);
    }
}

static int
s_reply_ticket (httpd_request_t *req, int status, const cb_ticket_t *t)
{
    json_t *json = ticket_to_json (t, s_mask_flags (httpd_request_key (req)->role));
    if (!json)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    char location [96];
    snprintf (location, sizeof location, "/v1/tickets/%s", t->id);
    httpd_add_header (req, MHD_HTTP_HEADER_LOCATION, location);
    return httpd_reply_json (req, status, json);
}

//  Stores t under idem_key and rings the dispatcher. Fills out->result.
static void
s_store (intake_t *intake, const apikey_info_t *key, cb_ticket_t *t, const char *idem_key,
         int idem_ttl_s, bool check_same, intake_submit_t *out)
{
    if (httpd_redis_down (intake->httpd)) {
        out->result = INTAKE_SUBMIT_UNAVAILABLE;
        out->unavailable = "breaker open";
        return;
    }
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker) {
        out->result = INTAKE_SUBMIT_FAILED;
        cb_error_set (&out->err, "internal", "", "out of memory");
        return;
    }
    ticket_actor_t actor = { CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER, key->name, NULL };
    char id [CB_TICKET_ID_MAX] = "";
    int rc = ticket_store_create (worker->store, t, intake->district, idem_key, idem_ttl_s,
                                  &actor, cb_clock_now_ms (), id, sizeof id);
    if (rc == TS_OK) {
        s_ring (intake, worker, id);
        intake_pool_give (intake->pool, worker);
        httpd_count (intake->httpd, intake->count_created);
        if (t->location && t->location->ungridded)
            httpd_count (intake->httpd, intake->count_ungridded);
        cb_log (CB_LOG_INFO, "ticket stored", "ticket", id,
                "source", cb_source_name (t->source) ? cb_source_name (t->source) : "",
                "category", t->category ? t->category : "",
                "grid", t->location && t->location->grid_code ? t->location->grid_code : "",
                "ungridded", t->location && t->location->ungridded ? "true" : "false",
                "key", key->name, NULL);
        out->result = INTAKE_SUBMIT_CREATED;
        return;
    }
    if (rc == TS_REPEAT) {
        rc = ticket_store_load (worker->store, id, &out->first);
        intake_pool_give (intake->pool, worker);
        if (rc == TS_OK) {
            if (check_same && !s_same_request (out->first, t))
                out->result = INTAKE_SUBMIT_KEY_REUSED;
            else {
                httpd_count (intake->httpd, intake->count_repeated);
                cb_log (CB_LOG_INFO, "repeat answered with the first ticket", "ticket", id,
                        "key", key->name, NULL);
                out->result = INTAKE_SUBMIT_REPEAT;
            }
            return;
        }
        out->first = NULL;
        if (rc == TS_UNAVAILABLE) {
            httpd_redis_failed (intake->httpd);
            out->result = INTAKE_SUBMIT_UNAVAILABLE;
            out->unavailable = "load";
            return;
        }
        out->result = INTAKE_SUBMIT_FAILED;
        cb_error_set (&out->err, "internal", "",
                      "the first ticket (%s) of this idempotency key cannot be read", id);
        return;
    }
    intake_pool_give (intake->pool, worker);
    if (rc == TS_UNAVAILABLE) {
        httpd_redis_failed (intake->httpd);
        out->result = INTAKE_SUBMIT_UNAVAILABLE;
        out->unavailable = "store";
        return;
    }
    out->result = INTAKE_SUBMIT_FAILED;
    cb_error_set (&out->err, "internal", "", "the ticket could not be stored");
}

/* ---- public: create ---- */

int
intake_ticket_submit (intake_t *intake, const apikey_info_t *key, cb_ticket_t *t,
                      const char *idem_header, const char *body, size_t body_len,
                      intake_submit_t *out)
{
    out->first = NULL;
    out->unavailable = "";
    cb_error_clear (&out->err);
    if (!s_source_allowed (key->role, t->source)) {
        cb_error_set (&out->err, "source_not_allowed", "source",
                      "a key with role %s may not report source '%s'",
                      apikey_role_name (key->role), cb_source_name (t->source));
        return out->result = INTAKE_SUBMIT_FORBIDDEN;
    }

    //  Category and location against one consistent snapshot of the city.
    citydata_snapshot_t *snap = citydata_acquire (intake->citydata);
    int rc = 0;
    if (snap->catalog) {
        const catalog_category_t *category = catalog_category (snap->catalog, t->category);
        const char *type = cb_request_type_name (t->request_type);
        unsigned bit = catalog_request_type_from_name (type);
        if (!category) {
            cb_error_set (&out->err, "unknown_category", "category",
                          "category '%s' is not in the dispatch catalogue", t->category);
            rc = 1;
        }
        else
        if (category->request_types && !(category->request_types & bit)) {
            cb_error_set (&out->err, "bad_value", "request_type",
                          "category '%s' does not take request type '%s'", t->category, type);
            rc = 1;
        }
    }
    if (rc == 0)
        rc = s_locate (snap->grids, t, &out->err);
    citydata_release (intake->citydata, &snap);
    if (rc > 0)
        return out->result = INTAKE_SUBMIT_REFUSED;
    if (rc < 0 || pb_set_string (&t->intake_key, key->name)) {
        cb_error_set (&out->err, "internal", "", "out of memory");
        return out->result = INTAKE_SUBMIT_FAILED;
    }

    //  The idempotency key (see the top of this file).
    char idem [256];
    int ttl = intake->idem_ttl_s;
    bool check_same = false;
    if (idem_header) {
        snprintf (idem, sizeof idem, "key:%s:%s", key->name, idem_header);
        check_same = true;
    }
    else
    if (!pb_string_is_empty (t->external_id))
        snprintf (idem, sizeof idem, "ext:%s:%s", cb_source_name (t->source), t->external_id);
    else {
        crypto_hash_sha256_state state;
        uint8_t digest [crypto_hash_sha256_BYTES];
        crypto_hash_sha256_init (&state);
        crypto_hash_sha256_update (&state, (const uint8_t *) key->name, strlen (key->name));
        crypto_hash_sha256_update (&state, (const uint8_t *) "\n", 1);
        crypto_hash_sha256_update (&state, (const uint8_t *) body, body_len);
        crypto_hash_sha256_final (&state, digest);
        char hex [crypto_hash_sha256_BYTES * 2 + 1];
        sodium_bin2hex (hex, sizeof hex, digest, sizeof digest);
        snprintf (idem, sizeof idem, "body:%s", hex);
        ttl = intake->hash_ttl_s;
    }
    s_store (intake, key, t, idem, ttl, check_same, out);
    return out->result;
}

int
intake_ticket_create (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    const apikey_info_t *key = httpd_request_key (req);
    const char *idem_header = httpd_request_header (req, "Idempotency-Key");
    if (idem_header && !s_idempotency_key_valid (idem_header))
        return httpd_reply_error (req, MHD_HTTP_BAD_REQUEST, "bad_value", "Idempotency-Key",
                                  "an Idempotency-Key is 1 to %d printable ASCII characters",
                                  S_IDEMPOTENCY_KEY_MAX);
    cb_error_t err;
    cb_error_clear (&err);
    cb_ticket_t *t = NULL;
    size_t body_len = 0;
    const char *body = httpd_request_body (req, &body_len);
    if (ticket_from_request_json (body, body_len, &t, &err)) {
        bool ours = strcmp (err.code, "no_memory") == 0;
        return httpd_reply_error (req, ours ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST,
                                  err.code, err.field, "%s", err.message);
    }
    intake_submit_t out;
    int result;
    switch (intake_ticket_submit (intake, key, t, idem_header, body, body_len, &out)) {
        case INTAKE_SUBMIT_CREATED:
            result = s_reply_ticket (req, MHD_HTTP_CREATED, t);
            break;
        case INTAKE_SUBMIT_REPEAT:
            result = s_reply_ticket (req, MHD_HTTP_OK, out.first);
            break;
        case INTAKE_SUBMIT_KEY_REUSED:
            result = httpd_reply_error (req, 422, "idempotency_key_reused", "Idempotency-Key",
                                        "this Idempotency-Key was used for a different "
                                        "ticket (%s)", out.first->id);
            break;
        case INTAKE_SUBMIT_FORBIDDEN:
            result = httpd_reply_error (req, MHD_HTTP_FORBIDDEN, out.err.code, out.err.field,
                                        "%s", out.err.message);
            break;
        case INTAKE_SUBMIT_REFUSED:
            result = httpd_reply_error (req, MHD_HTTP_BAD_REQUEST, out.err.code, out.err.field,
                                        "%s", out.err.message);
            break;
        case INTAKE_SUBMIT_UNAVAILABLE:
            result = httpd_reply_unavailable (req, out.unavailable);
            break;
        default:
            result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                        "%s", out.err.message);
            break;
    }
    if (out.first)
        civicbus__v1__ticket__free_unpacked (out.first, NULL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    return result;
}

/* ---- public: one ticket ---- */

int
intake_ticket_get (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    const apikey_info_t *key = httpd_request_key (req);
    const char *id = httpd_request_param (req, "id");
    int result;
    if (ticket_id_bucket (id) < 0)
        return httpd_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "id",
                                  "no such ticket");
    if (httpd_redis_down (intake->httpd))
        return httpd_reply_unavailable (req, "breaker open");
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    cb_ticket_t *t = NULL;
    cb_event_t **events = NULL;
    size_t n_events = 0;
    int rc = ticket_store_load (worker->store, id, &t);
    bool reads_all = key->role == APIKEY_ROLE_OPERATOR || key->role == APIKEY_ROLE_ADMIN;
    if (rc == TS_OK && !reads_all && strcmp (t->intake_key ? t->intake_key : "", key->name))
        rc = TS_NOT_FOUND;
    if (rc == TS_OK) {
        rc = ticket_store_history (worker->store, id, &events, &n_events);
        if (rc == TS_NOT_FOUND)
            rc = TS_OK;
    }
    intake_pool_give (intake->pool, worker);
    if (rc == TS_NOT_FOUND)
        result = httpd_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "id", "no such ticket");
    else
    if (rc == TS_UNAVAILABLE) {
        httpd_redis_failed (intake->httpd);
        result = httpd_reply_unavailable (req, "load");
    }
    else
    if (rc != TS_OK)
        result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                    "the ticket could not be read");
    else {
        json_t *json = ticket_to_json (t, s_mask_flags (key->role));
        json_t *list = json_array ();
        int bad = !json || !list;
        for (size_t i = 0; !bad && i < n_events; i++)
            bad = json_array_append_new (list, ticket_event_to_json (events [i])) != 0;
        if (!bad)
            bad = json_object_set_new (json, "events", list) != 0;
        else
            json_decref (list);
        if (bad) {
            json_decref (json);
            result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                        "out of memory");
        }
        else
            result = httpd_reply_json (req, MHD_HTTP_OK, json);
    }
    if (t)
        civicbus__v1__ticket__free_unpacked (t, NULL);
    ticket_store_free_events (events, n_events);
    return result;
}

/* ---- private: listing ---- */

typedef struct {
    int state;                          //  -1: any
    char department [S_FILTER_CODE_MAX];
    char grid [S_FILTER_CODE_MAX];
    int64_t since_ms;
    int limit;
    bool has_cursor;
    int64_t cursor_ms;
    char cursor_id [CB_TICKET_ID_MAX];
    unsigned seen;                      //  bit per parameter, to refuse repeats
    cb_error_t err;
    bool bad;
} s_query_t;

typedef struct {
    int64_t score;
    char id [CB_TICKET_ID_MAX];
} s_item_t;

//  One bucket's stream of index entries, refilled a batch at a time.
typedef struct {
    s_item_t *items;
    size_t count, pos;
    int64_t after_score;                //  entries up to (after_score, after_id) are done
    char after_id [CB_TICKET_ID_MAX];
    long tie_skip;                      //  entries at after_score already passed over
    bool exhausted;                     //  Redis has nothing past the buffer
} s_lane_t;

static int
s_item_compare (int64_t a_score, const char *a_id, int64_t b_score, const char *b_id)
{
    if (a_score != b_score)
        return a_score < b_score ? -1 : 1;
    return strcmp (a_id, b_id);
}

static bool
s_code_valid (const char *text, size_t max)
{
    size_t len = strlen (text);
    if (len < 1 || len >= max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum ((unsigned char) text [i]) && !strchr ("._-", text [i]))
            return false;
    return true;
}

static bool
s_whole_number (const char *text, int64_t max, int64_t *value)
{
    if (!*text || strlen (text) > 18)
        return false;
    int64_t n = 0;
    for (const char *p = text; *p; p++) {
        if (!isdigit ((unsigned char) *p))
            return false;
        n = n * 10 + (*p - '0');
    }
    if (n > max)
        return false;
    *value = n;
    return true;
}

//  Cursor: base64url (no padding) of "CREATED_MS:ID".
static void
s_cursor_encode (int64_t ms, const char *id, char *out, size_t cap)
{
    char plain [96];
    int n = snprintf (plain, sizeof plain, "%lld:%s", (long long) ms, id);
    sodium_bin2base64 (out, cap, (const unsigned char *) plain, (size_t) n,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static bool
s_cursor_decode (const char *text, int64_t *ms, char *id, size_t idcap)
{
    unsigned char plain [96];
    size_t len = 0;
    if (strlen (text) > 128
    ||  sodium_base642bin (plain, sizeof plain - 1, text, strlen (text), NULL, &len, NULL,
                           sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return false;
    plain [len] = 0;
    if (memchr (plain, 0, len))
        return false;
    char *colon = strchr ((char *) plain, ':');
    if (!colon)
        return false;
    *colon = 0;
    if (!s_whole_number ((char *) plain, INT64_MAX / 2, ms))
        return false;
    if (ticket_id_bucket (colon + 1) < 0 || strlen (colon + 1) >= idcap)
        return false;
    snprintf (id, idcap, "%s", colon + 1);
    return true;
}

static int
s_query_param (void *cls, const char *key, const char *value)
{
    s_query_t *q = cls;
    if (q->bad)
        return -1;
    static const char *const names [] = {
        "state", "department", "grid", "since", "limit", "cursor", NULL
    };
    int which = -1;
    for (int i = 0; names [i]; i++)
        if (strcmp (key, names [i]) == 0)
            which = i;
    if (which < 0) {
        cb_error_set (&q->err, "unknown_parameter", key,
                      "unknown parameter; the listing takes state, department, grid, since, "
                      "limit and cursor");
        q->bad = true;
        return -1;
    }
    if (q->seen & (1u << which)) {
        cb_error_set (&q->err, "bad_value", key, "give %s once", key);
        q->bad = true;
        return -1;
    }
    q->seen |= 1u << which;
    const char *v = value ? value : "";
    bool ok = true;
    switch (which) {
        case 0: {
            char upper [32];
            size_t len = strlen (v);
            ok = len > 0 && len < sizeof upper;
            for (size_t i = 0; ok && i <= len; i++)
                upper [i] = (char) toupper ((unsigned char) v [i]);
            q->state = ok ? ticket_state_from_name (upper) : -1;
            ok = ok && q->state > 0;
            break;
        }
        case 1:
            ok = s_code_valid (v, sizeof q->department);
            if (ok)
                snprintf (q->department, sizeof q->department, "%s", v);
            break;
        case 2:
            ok = s_code_valid (v, sizeof q->grid);
            if (ok)
                snprintf (q->grid, sizeof q->grid, "%s", v);
            break;
        case 3:
            ok = s_whole_number (v, INT64_MAX / 2, &q->since_ms)
              || cb_time_parse_iso (v, &q->since_ms) == 0;
            ok = ok && q->since_ms >= 0;
            break;
        case 4: {
            int64_t n = 0;
            ok = s_whole_number (v, S_LIST_LIMIT_MAX, &n) && n >= 1;
            q->limit = (int) n;
            break;
        }
        case 5:
            q->has_cursor = s_cursor_decode (v, &q->cursor_ms, q->cursor_id, sizeof q->cursor_id);
            ok = q->has_cursor;
            break;
    }
    if (!ok) {
        static const char *const hints [] = {
            "a ticket state such as RECEIVED or DISPATCHED",
            "a department code",
            "an area code of the city's grids",
            "an ISO 8601 time (2026-11-29T08:00:00+08:00) or Unix milliseconds",
            "a whole number from 1 to 500",
            "the next_cursor of an earlier page",
        };
        cb_error_set (&q->err, "bad_value", key, "%s must be %s", key, hints [which]);
        q->bad = true;
        return -1;
    }
    return 0;
}

//  Refills every lane whose buffer is empty and that may have more, in one
//  pipelined round trip. 0, TS_UNAVAILABLE or TS_ERROR.
static int
s_lanes_fetch (cb_redis_t *redis, const char *index, s_lane_t *lanes, size_t batch,
               size_t *scanned)
{
    int asked [CB_BUCKETS];
    int n_asked = 0;
    for (int b = 0; b < CB_BUCKETS; b++) {
        s_lane_t *lane = &lanes [b];
        if (lane->pos < lane->count || lane->exhausted)
            continue;
        char key [160];
        snprintf (key, sizeof key, "idx:{b%02d}:%.127s", b, index);
        char min [32], offset [32], count [32];
        snprintf (min, sizeof min, "%lld", (long long) lane->after_score);
        snprintf (offset, sizeof offset, "%ld", lane->tie_skip);
        snprintf (count, sizeof count, "%zu", batch);
        const char *argv [] = { "ZRANGEBYSCORE", key, min, "+inf", "WITHSCORES", "LIMIT",
                                offset, count };
        if (cb_redis_append_argv (redis, 8, argv, NULL))
            return TS_UNAVAILABLE;
        asked [n_asked++] = b;
    }
    int rc = 0;
    for (int i = 0; i < n_asked; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return TS_UNAVAILABLE;      //  the connection is dropped: no replies left to read
        s_lane_t *lane = &lanes [asked [i]];
        lane->count = lane->pos = 0;
        if (reply->type != REDIS_REPLY_ARRAY) {
            rc = TS_ERROR;
            freeReplyObject (reply);
            continue;
        }
        size_t n = reply->elements / 2;
        for (size_t j = 0; j < n; j++) {
            const redisReply *member = reply->element [2 * j];
            const redisReply *score = reply->element [2 * j + 1];
            if (member->type != REDIS_REPLY_STRING || score->type != REDIS_REPLY_STRING
            ||  member->len >= CB_TICKET_ID_MAX)
                continue;
            int64_t ms = (int64_t) strtod (score->str, NULL);
            if (s_item_compare (ms, member->str, lane->after_score, lane->after_id) <= 0)
                continue;
            s_item_t *item = &lane->items [lane->count++];
            item->score = ms;
            memcpy (item->id, member->str, member->len + 1);
        }
        *scanned += n;
        if (n < batch)
            lane->exhausted = true;
        else
        if (lane->count == 0)
            lane->tie_skip += (long) n;     //  a run of equal scores already passed
        else
            lane->tie_skip = 0;
        freeReplyObject (reply);
    }
    return rc;
}

//  Picks the index with the fewest entries from `since` on, of those the
//  filters name ("all" without filters). One pipelined round trip.
static int
s_pick_index (cb_redis_t *redis, const s_query_t *q, char *index, size_t cap)
{
    char names [3][96];
    int n = 0;
    if (q->state > 0)
        snprintf (names [n++], sizeof names [0], "st:%s", ticket_state_name (q->state));
    if (q->department [0])
        snprintf (names [n++], sizeof names [0], "dept:%s", q->department);
    if (q->grid [0])
        snprintf (names [n++], sizeof names [0], "grid:%s", q->grid);
    if (n == 0) {
        snprintf (index, cap, "all");
        return 0;
    }
    if (n == 1) {
        snprintf (index, cap, "%s", names [0]);
        return 0;
    }
    char min [32];
    snprintf (min, sizeof min, "%lld", (long long) q->since_ms);
    for (int i = 0; i < n; i++)
        for (int b = 0; b < CB_BUCKETS; b++) {
            char key [160];
            snprintf (key, sizeof key, "idx:{b%02d}:%.95s", b, names [i]);
            const char *argv [] = { "ZCOUNT", key, min, "+inf" };
            if (cb_redis_append_argv (redis, 4, argv, NULL))
                return TS_UNAVAILABLE;
        }
    long long totals [3] = { 0, 0, 0 };
    int rc = 0;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < CB_BUCKETS; b++) {
            redisReply *reply = cb_redis_get_reply (redis);
            if (!reply)
                return TS_UNAVAILABLE;
            if (reply->type == REDIS_REPLY_INTEGER)
                totals [i] += reply->integer;
            else
                rc = TS_ERROR;
            freeReplyObject (reply);
        }
    int best = 0;
    for (int i = 1; i < n; i++)
        if (totals [i] < totals [best])
            best = i;
    snprintf (index, cap, "%s", names [best]);
    return rc;
}

static bool
s_matches (const cb_ticket_t *t, const s_query_t *q)
{
    if (q->state > 0 && (int) t->state != q->state)
        return false;
    if (q->department [0] && strcmp (t->department ? t->department : "", q->department) != 0)
        return false;
    if (q->grid [0]) {
        if (!t->location || !pb_strv_contains (t->location->n_grid_path, t->location->grid_path,
                                               q->grid))
            return false;
    }
    return t->created_ms >= q->since_ms;
}

//  Loads the candidates (one pipelined round trip) and appends those that
//  pass the filters to `list`. 0, TS_UNAVAILABLE or TS_ERROR.
static int
s_load_matching (cb_redis_t *redis, const s_item_t *items, size_t n, const s_query_t *q,
                 unsigned flags, json_t *list, int *found)
{
    for (size_t i = 0; i < n; i++) {
        char key [128];
        if (ts_key (key, sizeof key, "t", items [i].id))
            snprintf (key, sizeof key, "t:{b00}:invalid");
        const char *argv [] = { "HGET", key, "pb" };
        if (cb_redis_append_argv (redis, 3, argv, NULL))
            return TS_UNAVAILABLE;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return TS_UNAVAILABLE;
        if (reply->type == REDIS_REPLY_STRING) {
            cb_ticket_t *t = civicbus__v1__ticket__unpack (NULL, reply->len,
                                                           (const uint8_t *) reply->str);
            if (t && s_matches (t, q)) {
                json_t *json = ticket_to_json (t, flags);
                if (!json || json_array_append_new (list, json))
                    rc = TS_ERROR;
                else
                    (*found)++;
            }
            if (t)
                civicbus__v1__ticket__free_unpacked (t, NULL);
        }
        else
        if (reply->type == REDIS_REPLY_ERROR)
            rc = TS_ERROR;
        freeReplyObject (reply);
    }
    return rc;
}

//  The listing proper. Fills list and next_cursor ("" at the end).
static int
s_list (cb_redis_t *redis, const s_query_t *q, unsigned flags, json_t *list,
        char *next_cursor, size_t cursor_cap)
{
    char index [128];
    int rc = s_pick_index (redis, q, index, sizeof index);
    if (rc)
        return rc;
    size_t batch = (size_t) q->limit / 8 + 4;
    s_lane_t *lanes = calloc (CB_BUCKETS, sizeof *lanes);
    s_item_t *picked = calloc ((size_t) q->limit, sizeof *picked);
    if (!lanes || !picked) {
        free (lanes);
        free (picked);
        return TS_ERROR;
    }
    //  Start after the cursor or at `since`, whichever is later.
    int64_t start_score = q->since_ms;
    const char *start_id = "";
    if (q->has_cursor && s_item_compare (q->cursor_ms, q->cursor_id, start_score, start_id) > 0) {
        start_score = q->cursor_ms;
        start_id = q->cursor_id;
    }
    for (int b = 0; b < CB_BUCKETS && rc == 0; b++) {
        lanes [b].items = calloc (batch, sizeof (s_item_t));
        if (!lanes [b].items)
            rc = TS_ERROR;
        lanes [b].after_score = start_score;
        snprintf (lanes [b].after_id, sizeof lanes [b].after_id, "%s", start_id);
    }
    size_t scanned = 0;
    size_t budget = (size_t) q->limit * 20 > S_LIST_SCAN_MIN ? (size_t) q->limit * 20
                                                             : S_LIST_SCAN_MIN;
    int found = 0;
    bool have_last = false;
    s_item_t last = { 0, "" };
    while (rc == 0 && found < q->limit && scanned < budget) {
        rc = s_lanes_fetch (redis, index, lanes, batch, &scanned);
        if (rc)
            break;
        //  Merge: take the smallest head while every lane that may still
        //  have entries has one buffered.
        size_t want = (size_t) (q->limit - found), k = 0;
        bool blocked = false, drained = false;
        while (k < want) {
            int best = -1;
            for (int b = 0; b < CB_BUCKETS; b++) {
                s_lane_t *lane = &lanes [b];
                if (lane->pos >= lane->count) {
                    if (!lane->exhausted) {
                        blocked = true;
                        break;
                    }
                    continue;
                }
                const s_item_t *head = &lane->items [lane->pos];
                if (best < 0 || s_item_compare (head->score, head->id,
                                                lanes [best].items [lanes [best].pos].score,
                                                lanes [best].items [lanes [best].pos].id) < 0)
                    best = b;
            }
            if (blocked)
                break;
            if (best < 0) {
                drained = true;
                break;
            }
            s_lane_t *lane = &lanes [best];
            picked [k] = lane->items [lane->pos++];
            lane->after_score = picked [k].score;
            snprintf (lane->after_id, sizeof lane->after_id, "%s", picked [k].id);
            k++;
        }
        if (k > 0) {
            rc = s_load_matching (redis, picked, k, q, flags, list, &found);
            last = picked [k - 1];
            have_last = true;
            scanned += k;
        }
        if (drained)
            break;
    }
    //  Is there anything past what was returned?
    bool more = false;
    for (int b = 0; b < CB_BUCKETS; b++)
        if (lanes [b].pos < lanes [b].count || !lanes [b].exhausted)
            more = true;
    next_cursor [0] = 0;
    if (rc == 0 && more && have_last)
        s_cursor_encode (last.score, last.id, next_cursor, cursor_cap);
    for (int b = 0; b < CB_BUCKETS; b++)
        free (lanes [b].items);
    free (lanes);
    free (picked);
    return rc;
}

/* ---- public: listing ---- */

int
intake_ticket_list (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    const apikey_info_t *key = httpd_request_key (req);
    s_query_t q;
    memset (&q, 0, sizeof q);
    q.state = -1;
    q.limit = S_LIST_LIMIT_DEFAULT;
    httpd_request_query_each (req, s_query_param, &q);
    if (q.bad)
        return httpd_reply_error (req, MHD_HTTP_BAD_REQUEST, q.err.code, q.err.field, "%s",
                                  q.err.message);
    if (httpd_redis_down (intake->httpd))
        return httpd_reply_unavailable (req, "breaker open");
    json_t *list = json_array ();
    if (!list)
        return -1;
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker) {
        json_decref (list);
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    }
    char cursor [200];
    int rc = s_list (worker->redis, &q, s_mask_flags (key->role), list, cursor, sizeof cursor);
    intake_pool_give (intake->pool, worker);
    if (rc) {
        json_decref (list);
        if (rc == TS_UNAVAILABLE) {
            httpd_redis_failed (intake->httpd);
            return httpd_reply_unavailable (req, "list");
        }
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "the listing failed");
    }
    size_t count = json_array_size (list);
    json_t *json = json_pack ("{s:o,s:I,s:o}", "tickets", list, "count", (json_int_t) count,
                              "next_cursor", cursor [0] ? json_string (cursor) : json_null ());
    return httpd_reply_json (req, MHD_HTTP_OK, json);
}
