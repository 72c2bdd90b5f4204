/*  hotline.c — the 12345 hotline exchange, inbound (docs/HOTLINE.md):

        POST /hotline/v1/tickets                         a ticket (common/hotline.c body)
        GET  /hotline/v1/tickets/{number}                the ticket, by the hotline's number
        POST /hotline/v1/tickets/{number}/supplement     补充  TEV_SUPPLEMENT
        POST /hotline/v1/tickets/{number}/urge           催办  TEV_URGE
        POST /hotline/v1/tickets/{number}/withdraw       撤单  TEV_CANCEL

    Every request: a Bearer key of role hotline (or admin), then the
    exchange's signature (hmac_sign.h: method, path, timestamp, nonce,
    body) with a timestamp within 5 minutes of ours, then a nonce never seen
    in the last 10 minutes (SET nonce:hotline:NONCE NX EX 600, only after
    the signature is good, so nobody can burn the hotline's nonces).
    Refusals: 401 signature_missing, timestamp_invalid, timestamp_skew,
    nonce_invalid, signature_invalid, nonce_reused.

    A ticket is stored through intake_ticket_submit with external_id = the
    number, so its idempotency key is "ext:hotline:NUMBER" (the native API's
    for source hotline and that external id: both doors agree), and the
    same number answers 200 with the first ticket. The lookup by number
    reads that idempotency record, idem:{bNN}:ext:hotline:NUMBER, whose
    bucket is cb_bucket_for_key of the key: no second index to keep true.
    It lives CIVICBUS_IDEMPOTENCY_TTL_S (30 days by default): follow-ups to
    older tickets are 404. Follow-ups are the REPORTER actor "hotline";
    the state machine decides (a withdrawal after signing is 409
    wrong_state). */

#include "intake.h"
#include "civicbus/clock.h"
#include "civicbus/dispatch.h"
#include "civicbus/hmac_sign.h"
#include "civicbus/hotline.h"
#include "civicbus/log.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_json.h"
#include "civicbus/ticket_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TRIES 5

/* ---- private ---- */

//  Checks the exchange's signature and nonce. 0: go on; else an answer was
//  queued and *result holds what it returned.
static int
s_authenticate (intake_t *intake, httpd_request_t *req, int *result)
{
    if (!intake->hotline_secret) {
        *result = httpd_reply_error (req, MHD_HTTP_SERVICE_UNAVAILABLE, "not_configured", "",
                                     "the hotline exchange is not configured here");
        return -1;
    }
    size_t len = 0;
    const char *body = httpd_request_body (req, &len);
    const char *nonce = httpd_request_header (req, HMAC_HOTLINE_HEADER_NONCE);
    hotline_auth_t auth = hotline_check_request (
        intake->hotline_secret, intake->hotline_secret_len, httpd_request_method (req),
        httpd_request_path (req), httpd_request_header (req, HMAC_HOTLINE_HEADER_TIMESTAMP),
        nonce, httpd_request_header (req, HMAC_HOTLINE_HEADER_SIGNATURE), body, len,
        cb_clock_now_ms () / 1000);
    if (auth != HOTLINE_AUTH_OK) {
        *result = httpd_reply_error (req, MHD_HTTP_UNAUTHORIZED, hotline_auth_code (auth),
                                     auth == HOTLINE_AUTH_SKEW ? HMAC_HOTLINE_HEADER_TIMESTAMP
                                     : auth == HOTLINE_AUTH_BAD_NONCE ? HMAC_HOTLINE_HEADER_NONCE
                                     : HMAC_HOTLINE_HEADER_SIGNATURE,
                                     "%s", hotline_auth_message (auth));
        return -1;
    }
    if (httpd_redis_down (intake->httpd)) {
        *result = httpd_reply_unavailable (req, "breaker open");
        return -1;
    }
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker) {
        *result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                     "out of memory");
        return -1;
    }
    redisReply *reply = cb_redis_command (worker->redis, "SET nonce:hotline:%s 1 NX EX %d",
                                          nonce, HOTLINE_NONCE_TTL_S);
    intake_pool_give (intake->pool, worker);
    int rc = 0;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        httpd_redis_failed (intake->httpd);
        *result = httpd_reply_unavailable (req, "nonce");
        rc = -1;
    }
    else
    if (reply->type == REDIS_REPLY_NIL) {
        *result = httpd_reply_error (req, MHD_HTTP_UNAUTHORIZED, "nonce_reused",
                                     HMAC_HOTLINE_HEADER_NONCE,
                                     "this nonce was used in the last %d seconds",
                                     HOTLINE_NONCE_TTL_S);
        rc = -1;
    }
    if (reply)
        freeReplyObject (reply);
    return rc;
}

//  {"ticket_id", "number", "state", "ticket": {...}} (+ "events" when given).
static int
s_reply (httpd_request_t *req, int status, const cb_ticket_t *t, cb_event_t **events,
         size_t n_events, const char *event)
{
    json_t *ticket = events ? ticket_view_json (t, events, n_events, 0) : ticket_to_json (t, 0);
    json_t *json = ticket ? json_pack ("{s:s, s:s, s:s, s:o}", "ticket_id", t->id,
                                       "number", t->external_id ? t->external_id : "",
                                       "state", ticket_state_name (t->state), "ticket", ticket)
                          : NULL;
    if (json && event)
        json_object_set_new (json, "event", json_string (event));
    if (!json)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    return httpd_reply_json (req, status, json);
}

//  The ticket id for a hotline number: 0 with id, TS_NOT_FOUND, TS_UNAVAILABLE.
static int
s_lookup (cb_redis_t *redis, const char *number, char *id, size_t cap)
{
    char key [128];
    if (hotline_idempotency_key (key, sizeof key, number))
        return TS_NOT_FOUND;
    char tag [CB_BUCKET_TAG_MAX];
    cb_bucket_tag (cb_bucket_for_key (key), tag, sizeof tag);
    redisReply *reply = cb_redis_command (redis, "GET idem:%s:%s", tag, key);
    int rc = !reply || reply->type == REDIS_REPLY_ERROR ? TS_UNAVAILABLE
           : reply->type == REDIS_REPLY_STRING ? TS_OK : TS_NOT_FOUND;
    if (rc == TS_OK)
        snprintf (id, cap, "%s", reply->str);
    if (reply)
        freeReplyObject (reply);
    return rc;
}

//  Withdrawal of a dispatched ticket: the orders not sent yet must not go
//  out (the same records an operator's cancel removes).
static int
s_ops_for (const cb_ticket_t *before, cb_ticket_t *after, const ticket_outcome_t *outcome,
           ts_ops_t *ops, void *arg)
{
    (void) arg;
    char ids [1 + CATALOG_CO_HANDLERS_MAX][DISPATCH_ID_MAX];
    size_t n_ids = 0;
    return dispatch_manual_ops (ops, before, after, outcome->effects, after->updated_ms, ids,
                                1 + CATALOG_CO_HANDLERS_MAX, &n_ids);
}

/* ---- public ---- */

int
intake_hotline_create (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    int result;
    if (s_authenticate (intake, req, &result))
        return result;
    size_t len = 0;
    const char *body = httpd_request_body (req, &len);
    cb_error_t err;
    cb_error_clear (&err);
    cb_ticket_t *t = NULL;
    if (hotline_ticket_from_json (body, len, &t, &err)) {
        bool ours = strcmp (err.code, "no_memory") == 0;
        return httpd_reply_error (req, ours ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST,
                                  err.code, err.field, "%s", err.message);
    }
    intake_submit_t out;
    switch (intake_ticket_submit (intake, httpd_request_key (req), t, NULL, body, len, &out)) {
        case INTAKE_SUBMIT_CREATED:
            result = s_reply (req, MHD_HTTP_CREATED, t, NULL, 0, NULL);
            break;
        case INTAKE_SUBMIT_REPEAT:
        case INTAKE_SUBMIT_KEY_REUSED:
            result = s_reply (req, MHD_HTTP_OK, out.first, NULL, 0, NULL);
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

int
intake_hotline_get (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    int result;
    const char *number = httpd_request_param (req, "number");
    if (!hotline_number_valid (number))
        return httpd_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "number",
                                  "no ticket with this hotline number");
    if (s_authenticate (intake, req, &result))
        return result;
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    char id [CB_TICKET_ID_MAX] = "";
    cb_ticket_t *t = NULL;
    cb_event_t **events = NULL;
    size_t n_events = 0;
    int rc = s_lookup (worker->redis, number, id, sizeof id);
    if (rc == TS_OK)
        rc = ticket_view_load (worker->store, id, &t, &events, &n_events);
    intake_pool_give (intake->pool, worker);
    if (rc == TS_OK)
        result = s_reply (req, MHD_HTTP_OK, t, events, n_events, NULL);
    else
    if (rc == TS_NOT_FOUND)
        result = httpd_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "number",
                                    "no ticket with this hotline number");
    else {
        if (rc == TS_UNAVAILABLE)
            httpd_redis_failed (intake->httpd);
        result = httpd_reply_unavailable (req, "load");
    }
    if (t)
        civicbus__v1__ticket__free_unpacked (t, NULL);
    ticket_store_free_events (events, n_events);
    return result;
}

int
intake_hotline_action (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    int result;
    const char *number = httpd_request_param (req, "number");
    const char *action = httpd_request_param (req, "action");
    int kind = hotline_action_event (action);
    if (kind < 0)
        return httpd_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "action",
                                  "the follow-ups are supplement, urge and withdraw");
    if (!hotline_number_valid (number))
        return httpd_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "number",
                                  "no ticket with this hotline number");
    if (s_authenticate (intake, req, &result))
        return result;
    size_t len = 0;
    const char *body = httpd_request_body (req, &len);
    char *text = NULL;
    cb_error_t err;
    cb_error_clear (&err);
    if (hotline_action_from_json (body, len, action, &text, &err))
        return httpd_reply_error (req, strcmp (err.code, "no_memory") ? MHD_HTTP_BAD_REQUEST
                                  : MHD_HTTP_INTERNAL_SERVER_ERROR, err.code, err.field, "%s",
                                  err.message);
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker) {
        free (text);
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    }
    char id [CB_TICKET_ID_MAX] = "";
    int rc = s_lookup (worker->redis, number, id, sizeof id);
    ticket_outcome_t outcome;
    memset (&outcome, 0, sizeof outcome);
    cb_ticket_t *after = NULL;
    if (rc == TS_OK) {
        ticket_input_t input = { .kind = kind, .text = text };
        ticket_actor_t actor = { CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER, HOTLINE_ACTOR_ID,
                                 "12345" };
        rc = ticket_store_transition (worker->store, id, &input, &actor, cb_clock_now_ms (),
                                      S_TRIES, s_ops_for, NULL, &outcome, &after);
    }
    intake_pool_give (intake->pool, worker);
    free (text);
    if (rc == TS_OK) {
        cb_log (CB_LOG_INFO, "hotline follow-up stored", "ticket", id, "action", action, NULL);
        result = s_reply (req, MHD_HTTP_OK, after, NULL, 0, ticket_event_name (kind));
    }
    else
    if (rc == TS_REFUSED)
        result = httpd_reply_error (req, MHD_HTTP_CONFLICT, outcome.code ? outcome.code : "refused",
                                    "", "%s", outcome.reason);
    else
    if (rc == TS_NOT_FOUND)
        result = httpd_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "number",
                                    "no ticket with this hotline number");
    else
    if (rc == TS_CONFLICT)
        result = httpd_reply_unavailable (req, "the ticket changed too often; retry");
    else {
        if (rc == TS_UNAVAILABLE)
            httpd_redis_failed (intake->httpd);
        result = rc == TS_UNAVAILABLE ? httpd_reply_unavailable (req, "store")
               : httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                    "the follow-up could not be stored");
    }
    if (after)
        civicbus__v1__ticket__free_unpacked (after, NULL);
    return result;
}
