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
      Operators and admins. Oldest first by (created time, id); paged with
      next_cursor (common/ticket_view.c, which the console shares). */

#include "intake.h"
#include "civicbus/catalog.h"
#include "civicbus/clock.h"
#include "civicbus/grid_index.h"
#include "civicbus/log.h"
#include "civicbus/pbutil.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_json.h"
#include "civicbus/ticket_view.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define S_IDEMPOTENCY_KEY_MAX 128

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

//  201 with the compact ticket, or 200 with the whole first ticket (a
//  repeat: the client may not have the first answer).
static int
s_reply_ticket (httpd_request_t *req, int status, const cb_ticket_t *t)
{
    apikey_role_t role = httpd_request_key (req)->role;
    //  The 201 is compact: echoing the whole ticket cost a third of the
    //  intake's CPU (bench/README.md); it is a GET away.
    json_t *json = status == MHD_HTTP_CREATED ? ticket_created_to_json (t, s_mask_flags (role))
                                              : ticket_to_json (t, s_mask_flags (role));
    if (!json)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    char location [96];
    snprintf (location, sizeof location, "/v1/tickets/%s", t->id);
    httpd_add_header (req, MHD_HTTP_HEADER_LOCATION, location);
    return httpd_reply_json (req, status, json);
}

//  intake_ticket_submit's wait for the writer.
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} s_waiter_t;

static void
s_waiter_done (intake_submit_t *out, void *arg)
{
    (void) out;
    s_waiter_t *waiter = arg;
    pthread_mutex_lock (&waiter->lock);
    waiter->done = true;
    pthread_cond_signal (&waiter->cond);
    pthread_mutex_unlock (&waiter->lock);
}

/* ---- public: create ---- */

bool
intake_same_request (const cb_ticket_t *a, const cb_ticket_t *b)
{
    return a->source == b->source && a->request_type == b->request_type
        && strcmp (a->category ? a->category : "", b->category ? b->category : "") == 0
        && strcmp (a->description ? a->description : "",
                   b->description ? b->description : "") == 0;
}

//  The checks before the store. INTAKE_SUBMIT_CREATED means "go on" (the
//  idempotency key is in idem, its TTL in *ttl); anything else is the answer.
static intake_submit_result_t
s_prepare (intake_t *intake, const apikey_info_t *key, cb_ticket_t *t, const char *idem_header,
           const char *body, size_t body_len, intake_submit_t *out, char *idem, size_t idem_cap,
           int *ttl_out, bool *check_same_out)
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
    int ttl = intake->idem_ttl_s;
    bool check_same = false;
    if (idem_header) {
        snprintf (idem, idem_cap, "key:%s:%s", key->name, idem_header);
        check_same = true;
    }
    else
    if (!pb_string_is_empty (t->external_id))
        snprintf (idem, idem_cap, "ext:%s:%s", cb_source_name (t->source), t->external_id);
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
        snprintf (idem, idem_cap, "body:%s", hex);
        ttl = intake->hash_ttl_s;
    }
    if (httpd_redis_down (intake->httpd)) {
        out->unavailable = "breaker open";
        return out->result = INTAKE_SUBMIT_UNAVAILABLE;
    }
    *ttl_out = ttl;
    *check_same_out = check_same;
    return INTAKE_SUBMIT_CREATED;
}

void
intake_ticket_submit_async (intake_t *intake, const apikey_info_t *key, cb_ticket_t *t,
                            const char *idem_header, const char *body, size_t body_len,
                            intake_submit_t *out, intake_submit_done_fn *done, void *arg)
{
    char idem [256];
    int ttl = 0;
    bool check_same = false;
    if (s_prepare (intake, key, t, idem_header, body, body_len, out, idem, sizeof idem, &ttl,
                   &check_same) != INTAKE_SUBMIT_CREATED)
        done (out, arg);
    else
        intake_writer_submit (intake, key, t, idem, ttl, check_same, out, done, arg);
}

int
intake_ticket_submit (intake_t *intake, const apikey_info_t *key, cb_ticket_t *t,
                      const char *idem_header, const char *body, size_t body_len,
                      intake_submit_t *out)
{
    s_waiter_t waiter = { .done = false };
    pthread_mutex_init (&waiter.lock, NULL);
    pthread_cond_init (&waiter.cond, NULL);
    intake_ticket_submit_async (intake, key, t, idem_header, body, body_len, out,
                                s_waiter_done, &waiter);
    pthread_mutex_lock (&waiter.lock);
    while (!waiter.done)
        pthread_cond_wait (&waiter.cond, &waiter.lock);
    pthread_mutex_unlock (&waiter.lock);
    pthread_mutex_destroy (&waiter.lock);
    pthread_cond_destroy (&waiter.cond);
    return out->result;
}

//  POST /v1/tickets, deferred: the handler hands the ticket to the writer
//  and returns; the writer resumes the request when Redis has answered.
typedef struct {
    httpd_request_t *req;
    cb_ticket_t *t;
    intake_submit_t out;
} s_create_t;

static void
s_create_done (intake_submit_t *out, void *arg)
{
    (void) out;
    s_create_t *create = arg;
    httpd_resume (create->req);
}

static int
s_create_answer (httpd_request_t *req, void *arg)
{
    s_create_t *create = arg;
    intake_submit_t *out = &create->out;
    int result;
    switch (out->result) {
        case INTAKE_SUBMIT_CREATED:
            result = s_reply_ticket (req, MHD_HTTP_CREATED, create->t);
            break;
        case INTAKE_SUBMIT_REPEAT:
            result = s_reply_ticket (req, MHD_HTTP_OK, out->first);
            break;
        case INTAKE_SUBMIT_KEY_REUSED:
            result = httpd_reply_error (req, 422, "idempotency_key_reused", "Idempotency-Key",
                                        "this Idempotency-Key was used for a different "
                                        "ticket (%s)", out->first->id);
            break;
        case INTAKE_SUBMIT_FORBIDDEN:
            result = httpd_reply_error (req, MHD_HTTP_FORBIDDEN, out->err.code, out->err.field,
                                        "%s", out->err.message);
            break;
        case INTAKE_SUBMIT_REFUSED:
            result = httpd_reply_error (req, MHD_HTTP_BAD_REQUEST, out->err.code, out->err.field,
                                        "%s", out->err.message);
            break;
        case INTAKE_SUBMIT_UNAVAILABLE:
            result = httpd_reply_unavailable (req, out->unavailable);
            break;
        default:
            result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                        "%s", out->err.message);
            break;
    }
    if (out->first)
        civicbus__v1__ticket__free_unpacked (out->first, NULL);
    civicbus__v1__ticket__free_unpacked (create->t, NULL);
    free (create);
    return result;
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
    s_create_t *create = calloc (1, sizeof *create);
    if (!create) {
        civicbus__v1__ticket__free_unpacked (t, NULL);
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    }
    create->req = req;
    create->t = t;
    httpd_defer (req, s_create_answer, create);
    intake_ticket_submit_async (intake, key, t, idem_header, body, body_len, &create->out,
                                s_create_done, create);
    return 0;
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
    int rc = ticket_view_load (worker->store, id, &t, &events, &n_events);
    intake_pool_give (intake->pool, worker);
    bool reads_all = key->role == APIKEY_ROLE_OPERATOR || key->role == APIKEY_ROLE_ADMIN;
    if (rc == TS_OK && !reads_all && strcmp (t->intake_key ? t->intake_key : "", key->name))
        rc = TS_NOT_FOUND;
    json_t *json = rc == TS_OK ? ticket_view_json (t, events, n_events,
                                                   s_mask_flags (key->role)) : NULL;
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
    else
    if (!json)
        result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                    "out of memory");
    else {
        result = httpd_reply_json (req, MHD_HTTP_OK, json);
        json = NULL;
    }
    json_decref (json);
    if (t)
        civicbus__v1__ticket__free_unpacked (t, NULL);
    ticket_store_free_events (events, n_events);
    return result;
}

/* ---- public: listing ---- */

int
intake_ticket_list (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    const apikey_info_t *key = httpd_request_key (req);
    ticket_list_query_t q;
    ticket_list_query_init (&q);
    httpd_request_query_each (req, ticket_list_query_param, &q);
    if (q.bad)
        return httpd_reply_error (req, MHD_HTTP_BAD_REQUEST, q.err.code, q.err.field, "%s",
                                  q.err.message);
    if (httpd_redis_down (intake->httpd))
        return httpd_reply_unavailable (req, "breaker open");
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    json_t *page = NULL;
    int rc = ticket_list_page (worker->redis, &q, s_mask_flags (key->role), &page);
    intake_pool_give (intake->pool, worker);
    if (rc == TS_UNAVAILABLE) {
        httpd_redis_failed (intake->httpd);
        return httpd_reply_unavailable (req, "list");
    }
    if (rc)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "the listing failed");
    return httpd_reply_json (req, MHD_HTTP_OK, page);
}
