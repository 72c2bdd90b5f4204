/*  httpd.c — the HTTP front door of civicbus services (see httpd.h): a
    libmicrohttpd daemon (internal epoll threads, connection limits,
    SO_REUSEPORT), routing, bodies with a hard limit, JSON answers and
    errors, Bearer keys, the Redis breaker, metrics, health and readiness.

    libmicrohttpd calls the access handler several times per request: once
    with the headers (upload_data_size 0), once per piece of body, and once
    more when the body is complete. Everything the headers decide (route,
    method, key, role, rate, content type, declared length) is decided in
    the first call, so a refused request's body is never read. A route
    without a body is answered in that first call; one with a body when the
    body is complete.

    Metrics are relaxed atomics: a scrape may see a request counted in one
    series and not yet in another, which Prometheus tolerates; no request
    waits on a lock to be counted. */

#include "civicbus/httpd.h"
#include "civicbus/clock.h"
#include "civicbus/config.h"
#include "civicbus/log.h"

#include <assert.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

//  A chunked body may be discarded up to this many times the limit while
//  waiting to answer 413; past it the connection is closed without one.
#define S_DISCARD_FACTOR 8
#define S_COUNTERS_MAX 32
#define S_GRACE_MS 10000

//  The statuses counted by name; anything else counts as "other".
static const int s_statuses [] = {
    200, 201, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503
};
#define S_STATUS_N (sizeof s_statuses / sizeof s_statuses [0])
#define S_STATUS_OTHER S_STATUS_N             //  any other code
#define S_STATUS_NONE (S_STATUS_N + 1)        //  connection closed before an answer
#define S_STATUS_SLOTS (S_STATUS_N + 2)

//  Latency histogram upper bounds in microseconds.
static const int64_t s_bounds_us [] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000
};
#define S_BOUND_N (sizeof s_bounds_us / sizeof s_bounds_us [0])

//  The server's own counters (handles 0..2).
enum { S_COUNT_REDIS_ERRORS = 0, S_COUNT_RATE_LIMITED, S_COUNT_ABORTED, S_COUNT_OWN };

typedef struct {
    char *name;
    char *help;
    atomic_ullong value;
} s_counter_t;

struct _httpd_t {
    httpd_options_t options;            //  strings below are our copies
    char *listen, *metrics_prefix, *not_found_hint;
    struct MHD_Daemon *daemon;
    httpd_route_t *routes;
    size_t n_routes, routes_cap;
    //  [n_routes + 1][S_STATUS_SLOTS]: the last row is "other" (404, 405).
    atomic_ullong *requests;
    atomic_ullong buckets [S_BOUND_N + 1];            //  non-cumulative; last is +Inf
    atomic_ullong duration_sum_us;
    s_counter_t counters [S_COUNTERS_MAX];
    size_t n_counters;
    atomic_llong redis_down_until_ms;
    atomic_int in_flight;               //  requests between first call and completion
    atomic_int deferred;                //  requests deferred and not yet answered
};

//  A deferred request's life: the handler defers (PENDING); after it
//  returns, the connection's thread suspends it (SUSPENDING, SUSPENDED);
//  the other thread's httpd_resume makes it READY and resumes the
//  connection if it was suspended; the connection's thread then answers.
//  The exchanges make the order between the two threads irrelevant.
enum { S_DEFER_NONE = 0, S_DEFER_PENDING, S_DEFER_SUSPENDING, S_DEFER_SUSPENDED, S_DEFER_READY };

struct _httpd_request_t {
    httpd_t *server;
    struct MHD_Connection *conn;
    const char *method;
    char *path;
    const httpd_route_t *route;         //  NULL: no route (404, 405)
    size_t route_index;                 //  metrics row; n_routes for "other"
    const char *param_names [HTTPD_PARAMS_MAX];
    size_t param_name_lens [HTTPD_PARAMS_MAX];
    char *param_values [HTTPD_PARAMS_MAX];
    size_t n_params;
    int64_t started_us;
    int status;                         //  answered status, 0 before
    bool authenticated;
    apikey_info_t key;
    char *body;
    size_t body_len, body_cap;
    bool too_large;
    size_t discarded;
    const char *header_names [HTTPD_EXTRA_HEADERS];
    char header_values [HTTPD_EXTRA_HEADERS][160];
    size_t header_count;
    atomic_int defer_state;             //  S_DEFER_*
    httpd_resume_fn *resume_fn;
    void *resume_arg;
    bool closed;                        //  the connection ended: answers go nowhere
};

static const char s_json_type [] = "application/json; charset=utf-8";

/* ---- private: answers ---- */

static int
s_queue (httpd_request_t *req, int status, char *body, size_t len, const char *type)
{
    if (req->closed) {
        free (body);
        return -1;
    }
    struct MHD_Response *response =
        MHD_create_response_from_buffer (len, body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (body);
        return -1;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header (response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (size_t i = 0; i < req->header_count; i++)
        MHD_add_response_header (response, req->header_names [i], req->header_values [i]);
    enum MHD_Result rc = MHD_queue_response (req->conn, (unsigned) status, response);
    MHD_destroy_response (response);
    if (rc != MHD_YES)
        return -1;
    req->status = status;
    return 0;
}

static const char *
s_label (const httpd_request_t *req)
{
    return req->route ? req->route->label : "other";
}

/* ---- private: built-in routes ---- */

static int
s_healthz (httpd_request_t *req, void *arg)
{
    (void) arg;
    return httpd_reply_json (req, MHD_HTTP_OK, json_pack ("{s:s}", "status", "up"));
}

static int
s_readyz (httpd_request_t *req, void *arg)
{
    httpd_t *self = arg;
    json_t *detail = json_object ();
    if (!detail)
        return -1;
    const char *reason = self->options.ready ? self->options.ready (self->options.ready_arg, detail)
                                             : NULL;
    if (reason) {
        cb_log (CB_LOG_DEBUG, "not ready", "reason", reason, NULL);
        json_t *error = json_pack ("{s:s,s:s,s:s}", "code", "not_ready", "field", "",
                                   "message", reason);
        if (!error || json_object_set_new (detail, "error", error)
        ||  json_object_set_new (detail, "ready", json_false ())) {
            json_decref (detail);
            return -1;
        }
        return httpd_reply_json (req, MHD_HTTP_SERVICE_UNAVAILABLE, detail);
    }
    if (json_object_set_new (detail, "ready", json_true ())) {
        json_decref (detail);
        return -1;
    }
    return httpd_reply_json (req, MHD_HTTP_OK, detail);
}

typedef struct {
    char *text;
    size_t len, cap;
    bool failed;
} s_buf_t;

static void
s_printf (s_buf_t *buf, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_printf (s_buf_t *buf, const char *fmt, ...)
{
    if (buf->failed)
        return;
    while (true) {
        va_list ap;
        va_start (ap, fmt);
        int n = vsnprintf (buf->text + buf->len, buf->cap - buf->len, fmt, ap);
        va_end (ap);
        if (n < 0) {
            buf->failed = true;
            return;
        }
        if ((size_t) n < buf->cap - buf->len) {
            buf->len += (size_t) n;
            return;
        }
        size_t cap = buf->cap * 2 + (size_t) n;
        char *text = realloc (buf->text, cap);
        if (!text) {
            buf->failed = true;
            return;
        }
        buf->text = text;
        buf->cap = cap;
    }
}

//  The Prometheus text exposition (version 0.0.4).
static int
s_metrics (httpd_request_t *req, void *arg)
{
    httpd_t *self = arg;
    const char *p = self->metrics_prefix;
    s_buf_t buf = { malloc (8192), 0, 8192, false };
    if (!buf.text)
        return -1;
    s_printf (&buf, "# HELP %s_requests_total HTTP requests by route and status.\n"
                    "# TYPE %s_requests_total counter\n", p, p);
    for (size_t r = 0; r <= self->n_routes; r++)
        for (size_t s = 0; s < S_STATUS_SLOTS; s++) {
            unsigned long long n = atomic_load_explicit (&self->requests [r * S_STATUS_SLOTS + s],
                                                         memory_order_relaxed);
            if (n == 0)
                continue;
            char status [16];
            if (s < S_STATUS_N)
                snprintf (status, sizeof status, "%d", s_statuses [s]);
            else
                snprintf (status, sizeof status, "%s", s == S_STATUS_OTHER ? "other" : "none");
            s_printf (&buf, "%s_requests_total{route=\"%s\",status=\"%s\"} %llu\n", p,
                      r < self->n_routes ? self->routes [r].label : "other", status, n);
        }
    s_printf (&buf, "# HELP %s_request_duration_seconds Time from a request's headers to its "
                    "answer.\n# TYPE %s_request_duration_seconds histogram\n", p, p);
    unsigned long long cumulative = 0;
    for (size_t i = 0; i <= S_BOUND_N; i++) {
        cumulative += atomic_load_explicit (&self->buckets [i], memory_order_relaxed);
        if (i < S_BOUND_N)
            s_printf (&buf, "%s_request_duration_seconds_bucket{le=\"%g\"} %llu\n", p,
                      (double) s_bounds_us [i] / 1e6, cumulative);
        else
            s_printf (&buf, "%s_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", p,
                      cumulative);
    }
    s_printf (&buf, "%s_request_duration_seconds_sum %.6f\n"
                    "%s_request_duration_seconds_count %llu\n", p,
              (double) atomic_load_explicit (&self->duration_sum_us, memory_order_relaxed) / 1e6,
              p, cumulative);
    for (size_t i = 0; i < self->n_counters; i++) {
        const s_counter_t *c = &self->counters [i];
        s_printf (&buf, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", c->name, c->help,
                  c->name, c->name, atomic_load_explicit (&c->value, memory_order_relaxed));
    }
    if (buf.failed) {
        free (buf.text);
        return -1;
    }
    return s_queue (req, MHD_HTTP_OK, buf.text, buf.len,
                    "text/plain; version=0.0.4; charset=utf-8");
}

/* ---- private: routing ---- */

//  Matches `path` against a route's pattern, segment by segment; on a
//  match records the {name} segments' positions in the request (values
//  are copied later, by s_take_params). Only "/"-separated, non-empty
//  segments: "/v1/tickets/" does not match "/v1/tickets/{id}".
static bool
s_match (const char *pattern, const char *path, httpd_request_t *req,
         const char *values [HTTPD_PARAMS_MAX], size_t value_lens [HTTPD_PARAMS_MAX])
{
    size_t n = 0;
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/')
            return false;
        pattern++;
        path++;
        size_t plen = strcspn (pattern, "/");
        size_t slen = strcspn (path, "/");
        if (plen >= 2 && pattern [0] == '{' && pattern [plen - 1] == '}') {
            if (slen == 0 || n >= HTTPD_PARAMS_MAX)
                return false;
            req->param_names [n] = pattern + 1;
            req->param_name_lens [n] = plen - 2;
            values [n] = path;
            value_lens [n] = slen;
            n++;
        }
        else
        if (plen != slen || strncmp (pattern, path, plen) != 0)
            return false;
        pattern += plen;
        path += slen;
    }
    if (*pattern || *path)
        return false;
    req->n_params = n;
    return true;
}

static bool
s_method_matches (const char *route_method, const char *method)
{
    if (strcmp (route_method, method) == 0)
        return true;
    return strcmp (method, MHD_HTTP_METHOD_HEAD) == 0
        && strcmp (route_method, MHD_HTTP_METHOD_GET) == 0;
}

bool
httpd_media_type_is (const char *content_type, const char *want)
{
    if (!content_type || !want)
        return false;
    while (*content_type == ' ')
        content_type++;
    size_t len = strlen (want);
    if (strncasecmp (content_type, want, len) != 0)
        return false;
    const char *rest = content_type + len;
    while (*rest == ' ')
        rest++;
    if (*rest == 0)
        return true;
    if (*rest != ';')
        return false;
    const char *charset = strcasestr (rest, "charset=");
    if (!charset)
        return true;
    charset += 8;
    if (*charset == '"')
        charset++;
    size_t n = strncasecmp (charset, "utf-8", 5) == 0 ? 5
             : strncasecmp (charset, "utf8", 4) == 0 ? 4 : 0;
    return n && (charset [n] == 0 || charset [n] == '"' || charset [n] == ';'
                 || charset [n] == ' ');
}

//  Checks `Authorization: Bearer <secret>` against the key cache, the
//  route's roles and the key's rate. 0 with req->key filled when the
//  request may go on; 1 when an answer (401, 403, 429, 503) was queued;
//  -1 when none could be.
static int
s_authorize (httpd_request_t *req, unsigned roles)
{
    httpd_t *self = req->server;
    static const char scheme [] = "Bearer ";
    const char *header = httpd_request_header (req, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!header || strncasecmp (header, scheme, sizeof scheme - 1) != 0) {
        httpd_add_header (req, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"civicbus\"");
        return httpd_reply_error (req, MHD_HTTP_UNAUTHORIZED, "unauthorized", "",
                                  "send an API key: Authorization: Bearer <key>") ? -1 : 1;
    }
    const char *secret = header + sizeof scheme - 1;
    while (*secret == ' ')
        secret++;
    char trimmed [APIKEY_SECRET_MAX + 2];
    size_t len = strcspn (secret, " \t");
    if (len >= sizeof trimmed)
        len = sizeof trimmed - 1;       //  too long to be a key: stays unknown
    memcpy (trimmed, secret, len);
    trimmed [len] = 0;

    if (httpd_redis_down (self))
        return httpd_reply_unavailable (req, "breaker open") ? -1 : 1;
    void *token = NULL;
    cb_redis_t *redis = self->options.redis_take
                      ? self->options.redis_take (self->options.redis_arg, &token) : NULL;
    if (!redis)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory") ? -1 : 1;
    int rc = apikey_cache_verify (self->options.keys, redis, trimmed, &req->key);
    self->options.redis_give (self->options.redis_arg, token);
    if (rc < 0) {
        httpd_redis_failed (self);
        return httpd_reply_unavailable (req, "key check") ? -1 : 1;
    }
    if (rc > 0) {
        httpd_add_header (req, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                          "Bearer realm=\"civicbus\", error=\"invalid_token\"");
        return httpd_reply_error (req, MHD_HTTP_UNAUTHORIZED, "unauthorized", "",
                                  "the API key is not known (or was revoked)") ? -1 : 1;
    }
    req->authenticated = true;
    if (!(req->key.role & roles))
        return httpd_reply_error (req, MHD_HTTP_FORBIDDEN, "forbidden", "",
                                  "a key with role %s may not do this",
                                  apikey_role_name (req->key.role)) ? -1 : 1;
    if (!apikey_cache_allow (self->options.keys, &req->key, cb_clock_now_ms ())) {
        httpd_count (self, S_COUNT_RATE_LIMITED);
        httpd_add_header (req, MHD_HTTP_HEADER_RETRY_AFTER, "1");
        return httpd_reply_error (req, MHD_HTTP_TOO_MANY_REQUESTS, "rate_limited", "",
                                  "key '%s' is over its rate of %d requests a second",
                                  req->key.name, req->key.rate_per_s) ? -1 : 1;
    }
    return 0;
}

static enum MHD_Result
s_result (int rc)
{
    return rc == 0 ? MHD_YES : MHD_NO;
}

//  The deferred answer, on the connection's thread.
static enum MHD_Result
s_answer_deferred (httpd_request_t *req)
{
    atomic_store (&req->defer_state, S_DEFER_NONE);
    int rc = req->resume_fn (req, req->resume_arg);
    atomic_fetch_sub (&req->server->deferred, 1);
    return s_result (rc);
}

//  After a handler returned: a deferred request is suspended until its
//  answer is ready, or answered now if it already is.
static enum MHD_Result
s_after_handler (httpd_request_t *req, int rc)
{
    int expected = S_DEFER_PENDING;
    if (atomic_compare_exchange_strong (&req->defer_state, &expected, S_DEFER_SUSPENDING)) {
        MHD_suspend_connection (req->conn);
        expected = S_DEFER_SUSPENDING;
        if (!atomic_compare_exchange_strong (&req->defer_state, &expected, S_DEFER_SUSPENDED))
            MHD_resume_connection (req->conn);      //  became READY meanwhile
        return MHD_YES;
    }
    if (expected == S_DEFER_READY)
        return s_answer_deferred (req);
    return s_result (rc);
}

//  The first call: route, method, key, and for a body what the headers say.
static enum MHD_Result
s_begin (httpd_request_t *req)
{
    httpd_t *self = req->server;
    char allow [96] = "";
    const httpd_route_t *found = NULL;
    const char *values [HTTPD_PARAMS_MAX];
    size_t value_lens [HTTPD_PARAMS_MAX];
    for (size_t i = 0; i < self->n_routes && !found; i++) {
        const httpd_route_t *route = &self->routes [i];
        if (!s_match (route->pattern, req->path, req, values, value_lens))
            continue;
        if (s_method_matches (route->method, req->method)) {
            found = route;
            req->route_index = i;
        }
        else
        if (!strstr (allow, route->method)) {
            size_t used = strlen (allow);
            snprintf (allow + used, sizeof allow - used, "%s%s", used ? ", " : "", route->method);
        }
    }
    if (!found) {
        req->n_params = 0;
        if (allow [0]) {
            httpd_add_header (req, MHD_HTTP_HEADER_ALLOW, allow);
            return s_result (httpd_reply_error (req, MHD_HTTP_METHOD_NOT_ALLOWED,
                                                "method_not_allowed", "",
                                                "%s is not allowed here; use %s",
                                                req->method, allow));
        }
        return s_result (httpd_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "", "%s",
                                            self->not_found_hint));
    }
    req->route = found;
    for (size_t i = 0; i < req->n_params; i++) {
        req->param_values [i] = strndup (values [i], value_lens [i]);
        if (!req->param_values [i])
            return MHD_NO;
    }
    if (found->roles) {
        int rc = s_authorize (req, found->roles);
        if (rc)
            return rc > 0 ? MHD_YES : MHD_NO;
    }
    if (!(found->flags & (HTTPD_BODY_JSON | HTTPD_BODY_ANY)))
        return s_after_handler (req, found->handler (req, found->arg));

    if ((found->flags & HTTPD_BODY_JSON)
    &&  !httpd_media_type_is (httpd_request_header (req, MHD_HTTP_HEADER_CONTENT_TYPE),
                             "application/json"))
        return s_result (httpd_reply_error (req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                            "unsupported_media_type", "",
                                            "send the body as Content-Type: application/json"));
    const char *length = httpd_request_header (req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length) {
        char *end;
        unsigned long long n = strtoull (length, &end, 10);
        if (end != length && n > self->options.max_body)
            return s_result (httpd_reply_error (req, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "",
                                                "the body is %llu bytes; at most %zu are accepted",
                                                n, self->options.max_body));
    }
    return MHD_YES;                 //  now the body
}

static enum MHD_Result
s_body_append (httpd_request_t *req, const char *data, size_t size)
{
    size_t max = req->server->options.max_body;
    if (!req->too_large && req->body_len + size > max) {
        req->too_large = true;
        free (req->body);
        req->body = NULL;
        req->body_len = req->body_cap = 0;
        //  libmicrohttpd 0.9.75 takes no answer while a body is arriving:
        //  the 413 goes out when it is complete (see S_DISCARD_FACTOR).
    }
    if (req->too_large) {
        req->discarded += size;
        return req->discarded > S_DISCARD_FACTOR * max ? MHD_NO : MHD_YES;
    }
    if (req->body_len + size + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 4096;
        while (cap < req->body_len + size + 1)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
        char *body = realloc (req->body, cap);
        if (!body)
            return MHD_NO;
        req->body = body;
        req->body_cap = cap;
    }
    memcpy (req->body + req->body_len, data, size);
    req->body_len += size;
    req->body [req->body_len] = 0;
    return MHD_YES;
}

static enum MHD_Result
s_access (void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size,
          void **con_cls)
{
    (void) version;
    httpd_t *self = cls;
    httpd_request_t *req = *con_cls;
    if (!req) {
        req = calloc (1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->server = self;
        req->conn = conn;
        req->method = method;
        req->route_index = self->n_routes;
        req->started_us = httpd_mono_us ();
        *con_cls = req;
        atomic_fetch_add (&self->in_flight, 1);
        req->path = strdup (url);
        if (!req->path)
            return MHD_NO;
        return s_begin (req);
    }
    if (*upload_data_size) {
        size_t size = *upload_data_size;
        *upload_data_size = 0;
        if (req->status && !req->too_large)
            return MHD_YES;         //  answered already; the rest is ignored
        return s_body_append (req, upload_data, size);
    }
    if (atomic_load (&req->defer_state) == S_DEFER_READY)
        return s_answer_deferred (req);     //  resumed
    if (req->status || atomic_load (&req->defer_state) != S_DEFER_NONE)
        return MHD_YES;
    if (req->too_large)
        return s_result (httpd_reply_error (req, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "",
                                            "the body is over %zu bytes",
                                            self->options.max_body));
    if (req->route && (req->route->flags & (HTTPD_BODY_JSON | HTTPD_BODY_ANY)))
        return s_after_handler (req, req->route->handler (req, req->route->arg));
    return MHD_NO;                  //  a handler that answered nothing
}

static size_t
s_status_slot (int status)
{
    if (status == 0)
        return S_STATUS_NONE;
    for (size_t i = 0; i < S_STATUS_N; i++)
        if (s_statuses [i] == status)
            return i;
    return S_STATUS_OTHER;
}

static void
s_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    (void) conn;
    httpd_t *self = cls;
    httpd_request_t *req = *con_cls;
    if (!req)
        return;
    //  Resumed, but the connection ended before its thread answered (the
    //  client left while it was suspended): the answer still runs, so its
    //  owner frees what it holds, and goes nowhere.
    if (atomic_exchange (&req->defer_state, S_DEFER_NONE) == S_DEFER_READY) {
        req->closed = true;
        req->resume_fn (req, req->resume_arg);
        atomic_fetch_sub (&self->deferred, 1);
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->status)
        httpd_count (self, S_COUNT_ABORTED);
    int status = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? req->status : 0;
    atomic_fetch_add_explicit (&self->requests [req->route_index * S_STATUS_SLOTS
                                                + s_status_slot (status)],
                               1, memory_order_relaxed);
    int64_t duration_us = httpd_mono_us () - req->started_us;
    if (duration_us < 0)
        duration_us = 0;
    size_t slot = 0;
    while (slot < S_BOUND_N && duration_us > s_bounds_us [slot])
        slot++;
    atomic_fetch_add_explicit (&self->buckets [slot], 1, memory_order_relaxed);
    atomic_fetch_add_explicit (&self->duration_sum_us, (unsigned long long) duration_us,
                               memory_order_relaxed);
    for (size_t i = 0; i < req->n_params; i++)
        free (req->param_values [i]);
    free (req->path);
    free (req->body);
    free (req);
    *con_cls = NULL;
    atomic_fetch_sub (&self->in_flight, 1);
}

static void
s_mhd_log (void *cls, const char *fmt, va_list ap)
{
    (void) cls;
    char text [512];
    vsnprintf (text, sizeof text, fmt, ap);
    size_t len = strlen (text);
    while (len && (text [len - 1] == '\n' || text [len - 1] == '\r'))
        text [--len] = 0;
    cb_log (CB_LOG_WARN, "http", "detail", text, NULL);
}

static int
s_add_counter (httpd_t *self, const char *suffix, const char *help)
{
    char name [160];
    snprintf (name, sizeof name, "%s_%s", self->metrics_prefix, suffix);
    return httpd_counter (self, name, help);
}

/* ---- public: the server ---- */

int64_t
httpd_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

httpd_t *
httpd_new (const httpd_options_t *options)
{
    assert (options && options->listen && options->metrics_prefix);
    httpd_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->options = *options;
    self->listen = strdup (options->listen);
    self->metrics_prefix = strdup (options->metrics_prefix);
    self->not_found_hint = strdup (options->not_found_hint ? options->not_found_hint
                                                           : "no such resource");
    atomic_init (&self->redis_down_until_ms, 0);
    atomic_init (&self->in_flight, 0);
    atomic_init (&self->deferred, 0);
    if (!self->listen || !self->metrics_prefix || !self->not_found_hint
    ||  s_add_counter (self, "redis_errors_total",
                       "Requests that found Redis unreachable or failing.") != S_COUNT_REDIS_ERRORS
    ||  s_add_counter (self, "rate_limited_total",
                       "Requests refused for a key over its rate.") != S_COUNT_RATE_LIMITED
    ||  s_add_counter (self, "aborted_total",
                       "Requests whose connection closed before an answer.") != S_COUNT_ABORTED
    ||  httpd_route (self, &(httpd_route_t) { "GET", "/healthz", "healthz", 0, 0,
                                              s_healthz, self })
    ||  httpd_route (self, &(httpd_route_t) { "GET", "/readyz", "readyz", 0, 0,
                                              s_readyz, self })
    ||  httpd_route (self, &(httpd_route_t) { "GET", "/metrics", "metrics", 0, 0,
                                              s_metrics, self })) {
        httpd_destroy (&self);
        return NULL;
    }
    return self;
}

void
httpd_destroy (httpd_t **self_p)
{
    assert (self_p);
    httpd_t *self = *self_p;
    if (!self)
        return;
    httpd_stop (self, S_GRACE_MS);
    for (size_t i = 0; i < self->n_counters; i++) {
        free (self->counters [i].name);
        free (self->counters [i].help);
    }
    free (self->routes);
    free (self->requests);
    free (self->listen);
    free (self->metrics_prefix);
    free (self->not_found_hint);
    free (self);
    *self_p = NULL;
}

int
httpd_route (httpd_t *self, const httpd_route_t *route)
{
    assert (self && route && route->method && route->pattern && route->label && route->handler);
    assert (!self->daemon);
    assert (!route->roles || (self->options.keys && self->options.redis_take
                              && self->options.redis_give));
    if (self->n_routes == self->routes_cap) {
        size_t cap = self->routes_cap ? self->routes_cap * 2 : 8;
        httpd_route_t *routes = realloc (self->routes, cap * sizeof *routes);
        if (!routes)
            return -1;
        self->routes = routes;
        self->routes_cap = cap;
    }
    self->routes [self->n_routes++] = *route;
    return 0;
}

int
httpd_counter (httpd_t *self, const char *name, const char *help)
{
    assert (self && name && help);
    assert (!self->daemon);
    if (self->n_counters >= S_COUNTERS_MAX)
        return -1;
    s_counter_t *c = &self->counters [self->n_counters];
    c->name = strdup (name);
    c->help = strdup (help);
    if (!c->name || !c->help) {
        free (c->name);
        free (c->help);
        c->name = c->help = NULL;
        return -1;
    }
    atomic_init (&c->value, 0);
    return (int) self->n_counters++;
}

void
httpd_count (httpd_t *self, int counter)
{
    assert (counter >= 0 && (size_t) counter < self->n_counters);
    atomic_fetch_add_explicit (&self->counters [counter].value, 1, memory_order_relaxed);
}

int
httpd_start (httpd_t *self)
{
    assert (self && !self->daemon);
    const httpd_options_t *options = &self->options;
    free (self->requests);
    self->requests = calloc ((self->n_routes + 1) * S_STATUS_SLOTS, sizeof *self->requests);
    if (!self->requests)
        return -1;
    char host [256];
    int port = 0;
    if (cb_hostport_split (self->listen, host, sizeof host, &port)) {
        cb_log (CB_LOG_ERROR, "bad listen address", "listen", self->listen, NULL);
        return -1;
    }
    char service [16];
    snprintf (service, sizeof service, "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *addrs = NULL;
    int gai = getaddrinfo (host, service, &hints, &addrs);
    if (gai || !addrs) {
        cb_log (CB_LOG_ERROR, "cannot resolve the listen address", "listen", self->listen,
                "error", gai_strerror (gai), NULL);
        return -1;
    }
    struct sockaddr_storage sa;
    memset (&sa, 0, sizeof sa);
    memcpy (&sa, addrs->ai_addr, addrs->ai_addrlen);
    bool ipv6 = addrs->ai_family == AF_INET6;
    freeaddrinfo (addrs);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC
                   | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    struct MHD_OptionItem ops [12];
    size_t n = 0;
    ops [n++] = (struct MHD_OptionItem) { MHD_OPTION_SOCK_ADDR, 0, &sa };
    ops [n++] = (struct MHD_OptionItem) { MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL };
    ops [n++] = (struct MHD_OptionItem) { MHD_OPTION_CONNECTION_LIMIT,
                                          (intptr_t) options->conn_limit, NULL };
    if (options->per_ip_limit > 0)
        ops [n++] = (struct MHD_OptionItem) { MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                              (intptr_t) options->per_ip_limit, NULL };
    ops [n++] = (struct MHD_OptionItem) { MHD_OPTION_CONNECTION_TIMEOUT,
                                          (intptr_t) options->conn_timeout_s, NULL };
    ops [n++] = (struct MHD_OptionItem) { MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                          (intptr_t) options->conn_memory, NULL };
    if (options->threads > 1)
        ops [n++] = (struct MHD_OptionItem) { MHD_OPTION_THREAD_POOL_SIZE,
                                              (intptr_t) options->threads, NULL };
    ops [n++] = (struct MHD_OptionItem) { MHD_OPTION_END, 0, NULL };
    self->daemon = MHD_start_daemon (flags, 0, NULL, NULL, s_access, self,
                                     MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, NULL,
                                     MHD_OPTION_NOTIFY_COMPLETED, s_completed, self,
                                     MHD_OPTION_ARRAY, ops,
                                     MHD_OPTION_END);
    if (!self->daemon) {
        cb_log (CB_LOG_ERROR, "cannot listen", "listen", self->listen, NULL);
        return -1;
    }
    return 0;
}

void
httpd_stop (httpd_t *self, int grace_ms)
{
    assert (self);
    if (!self->daemon)
        return;
    //  Stop accepting (another process on the same port takes new
    //  connections), then let the requests already started finish.
    MHD_socket listener = MHD_quiesce_daemon (self->daemon);
    int64_t deadline = httpd_mono_us () + (int64_t) grace_ms * 1000;
    while (atomic_load (&self->in_flight) > 0 && httpd_mono_us () < deadline) {
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep (&ts, NULL);
    }
    int left = atomic_load (&self->in_flight);
    if (left > 0) {
        char text [16];
        snprintf (text, sizeof text, "%d", left);
        cb_log (CB_LOG_WARN, "stopping with requests unfinished", "requests", text, NULL);
    }
    //  libmicrohttpd cannot close a suspended connection: a deferred
    //  request's owner resumes it in its own time (a Redis timeout at worst).
    while (atomic_load (&self->deferred) > 0) {
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep (&ts, NULL);
    }
    MHD_stop_daemon (self->daemon);
    self->daemon = NULL;
    if (listener != MHD_INVALID_SOCKET)
        close (listener);
}

bool
httpd_redis_down (httpd_t *self)
{
    return atomic_load (&self->redis_down_until_ms) > httpd_mono_us () / 1000;
}

void
httpd_redis_failed (httpd_t *self)
{
    atomic_store (&self->redis_down_until_ms, httpd_mono_us () / 1000 + HTTPD_BREAKER_MS);
    httpd_count (self, S_COUNT_REDIS_ERRORS);
}

/* ---- public: the request ---- */

httpd_t *
httpd_request_server (httpd_request_t *req)
{
    return req->server;
}

const char *
httpd_request_method (httpd_request_t *req)
{
    return req->method;
}

const char *
httpd_request_path (httpd_request_t *req)
{
    return req->path;
}

const char *
httpd_request_param (httpd_request_t *req, const char *name)
{
    size_t len = strlen (name);
    for (size_t i = 0; i < req->n_params; i++)
        if (req->param_name_lens [i] == len && strncmp (req->param_names [i], name, len) == 0)
            return req->param_values [i];
    return NULL;
}

const char *
httpd_request_header (httpd_request_t *req, const char *name)
{
    return MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND, name);
}

const char *
httpd_request_query (httpd_request_t *req, const char *name)
{
    return MHD_lookup_connection_value (req->conn, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct {
    httpd_query_fn *fn;
    void *arg;
    int visited;
} s_query_walk_t;

static enum MHD_Result
s_query_visit (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void) kind;
    s_query_walk_t *walk = cls;
    walk->visited++;
    return walk->fn (walk->arg, key, value ? value : "") ? MHD_NO : MHD_YES;
}

int
httpd_request_query_each (httpd_request_t *req, httpd_query_fn *fn, void *arg)
{
    s_query_walk_t walk = { fn, arg, 0 };
    MHD_get_connection_values (req->conn, MHD_GET_ARGUMENT_KIND, s_query_visit, &walk);
    return walk.visited;
}

const char *
httpd_request_body (httpd_request_t *req, size_t *len)
{
    if (len)
        *len = req->body ? req->body_len : 0;
    return req->body ? req->body : "";
}

const apikey_info_t *
httpd_request_key (httpd_request_t *req)
{
    return req->authenticated ? &req->key : NULL;
}

/* ---- public: deferred answers ---- */

int
httpd_defer (httpd_request_t *req, httpd_resume_fn *fn, void *arg)
{
    assert (req && fn);
    assert (atomic_load (&req->defer_state) == S_DEFER_NONE);
    if (req->status)
        return -1;
    req->resume_fn = fn;
    req->resume_arg = arg;
    atomic_fetch_add (&req->server->deferred, 1);
    atomic_store (&req->defer_state, S_DEFER_PENDING);
    return 0;
}

void
httpd_resume (httpd_request_t *req)
{
    assert (req);
    int was = atomic_exchange (&req->defer_state, S_DEFER_READY);
    assert (was == S_DEFER_PENDING || was == S_DEFER_SUSPENDING || was == S_DEFER_SUSPENDED);
    if (was == S_DEFER_SUSPENDED)
        MHD_resume_connection (req->conn);
}

/* ---- public: answers ---- */

void
httpd_add_header (httpd_request_t *req, const char *name, const char *value)
{
    if (req->header_count >= HTTPD_EXTRA_HEADERS)
        return;
    req->header_names [req->header_count] = name;
    snprintf (req->header_values [req->header_count], sizeof req->header_values [0], "%s", value);
    req->header_count++;
}

int
httpd_reply_json (httpd_request_t *req, int status, json_t *json)
{
    //  15 digits: coordinates read as sent (32.029, not 32.029000000000003).
    char *text = json ? json_dumps (json, JSON_COMPACT | JSON_REAL_PRECISION (15)) : NULL;
    json_decref (json);
    if (!text)
        return -1;
    size_t len = strlen (text);
    //  A newline helps people with curl; clients do not care.
    char *body = realloc (text, len + 2);
    if (!body) {
        free (text);
        return -1;
    }
    body [len] = '\n';
    body [len + 1] = 0;
    return s_queue (req, status, body, len + 1, s_json_type);
}

int
httpd_reply_error (httpd_request_t *req, int status, const char *code, const char *field,
                   const char *fmt, ...)
{
    char message [256];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (message, sizeof message, fmt, ap);
    va_end (ap);
    char status_text [8];
    snprintf (status_text, sizeof status_text, "%d", status);
    cb_log (CB_LOG_WARN, "request refused", "status", status_text, "code", code,
            "field", field ? field : "", "route", s_label (req),
            "key", req->authenticated ? req->key.name : "", "message", message, NULL);
    json_t *json = json_pack ("{s:{s:s,s:s,s:s}}", "error", "code", code,
                              "field", field ? field : "", "message", message);
    return httpd_reply_json (req, status, json);
}

int
httpd_reply_text (httpd_request_t *req, int status, const char *content_type,
                  const char *text, size_t len)
{
    char *copy = malloc (len + 1);
    if (!copy)
        return -1;
    memcpy (copy, text, len);
    copy [len] = 0;
    return s_queue (req, status, copy, len, content_type);
}

int
httpd_reply_unavailable (httpd_request_t *req, const char *what)
{
    httpd_add_header (req, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return httpd_reply_error (req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "",
                              "the ticket store is unreachable (%s); try again shortly", what);
}
