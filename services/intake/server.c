/*  server.c — the intake's HTTP side: a libmicrohttpd daemon (internal
    epoll threads, connection limits, SO_REUSEPORT), routing, request
    bodies with a hard limit, JSON answers and errors, authentication, and
    the health, readiness and metrics endpoints.

    libmicrohttpd calls the access handler several times per request: once
    with the headers (upload_data_size 0), once per piece of body, and once
    more when the body is complete. Everything that can be decided from the
    headers (route, method, key, role, rate, content type, declared length)
    is decided in the first call, so a refused request's body is never read.
    A chunked body that grows past the limit is dropped from memory at once
    and refused when it ends (libmicrohttpd takes no answer mid-body); the
    rest is discarded unread up to a bound past which the connection is
    simply closed. */

#include "intake.h"
#include "civicbus/clock.h"
#include "civicbus/config.h"
#include "civicbus/log.h"

#include <assert.h>
#include <ctype.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

//  A chunked body may be discarded up to this many times the limit while
//  waiting to answer 413; past it the connection is closed without one.
#define S_DISCARD_FACTOR 8

struct _intake_server_t {
    intake_t *intake;
    struct MHD_Daemon *daemon;
};

static const char s_json_type [] = "application/json; charset=utf-8";

/* ---- private: replies ---- */

static const char *
s_route_label (intake_route_t route)
{
    switch (route) {
        case INTAKE_ROUTE_CREATE:  return "POST /v1/tickets";
        case INTAKE_ROUTE_GET:     return "GET /v1/tickets/{id}";
        case INTAKE_ROUTE_LIST:    return "GET /v1/tickets";
        case INTAKE_ROUTE_HEALTHZ: return "/healthz";
        case INTAKE_ROUTE_READYZ:  return "/readyz";
        case INTAKE_ROUTE_METRICS: return "/metrics";
        default:                   return "other";
    }
}

static enum MHD_Result
s_queue (intake_request_t *req, int status, char *body, size_t len, const char *type)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer (len, body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (body);
        return MHD_NO;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header (response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (size_t i = 0; i < req->header_count; i++)
        MHD_add_response_header (response, req->header_names [i], req->header_values [i]);
    enum MHD_Result rc = MHD_queue_response (req->conn, (unsigned) status, response);
    MHD_destroy_response (response);
    if (rc == MHD_YES)
        req->status = status;
    return rc;
}

/* ---- public: replies ---- */

int64_t
intake_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
intake_add_header (intake_request_t *req, const char *name, const char *value)
{
    if (req->header_count >= INTAKE_EXTRA_HEADERS)
        return;
    req->header_names [req->header_count] = name;
    snprintf (req->header_values [req->header_count], sizeof req->header_values [0], "%s", value);
    req->header_count++;
}

enum MHD_Result
intake_reply_json (intake_request_t *req, int status, json_t *json)
{
    //  15 digits: coordinates read as sent (32.029, not 32.029000000000003).
    char *text = json ? json_dumps (json, JSON_COMPACT | JSON_REAL_PRECISION (15)) : NULL;
    json_decref (json);
    if (!text)
        return MHD_NO;
    size_t len = strlen (text);
    //  A newline helps people with curl; clients do not care.
    char *body = realloc (text, len + 2);
    if (!body) {
        free (text);
        return MHD_NO;
    }
    body [len] = '\n';
    body [len + 1] = 0;
    return s_queue (req, status, body, len + 1, s_json_type);
}

enum MHD_Result
intake_reply_error (intake_request_t *req, int status, const char *code, const char *field,
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
            "field", field ? field : "", "route", s_route_label (req->route),
            "key", req->authenticated ? req->key.name : "", "message", message, NULL);
    json_t *json = json_pack ("{s:{s:s,s:s,s:s}}", "error", "code", code,
                              "field", field ? field : "", "message", message);
    return intake_reply_json (req, status, json);
}

bool
intake_redis_down (intake_t *intake)
{
    return atomic_load (&intake->redis_down_until_ms) > intake_mono_us () / 1000;
}

void
intake_redis_failed (intake_t *intake)
{
    atomic_store (&intake->redis_down_until_ms, intake_mono_us () / 1000 + INTAKE_BREAKER_MS);
    intake_metrics_count (intake->metrics, INTAKE_COUNT_REDIS_ERRORS);
}

enum MHD_Result
intake_reply_unavailable (intake_request_t *req, const char *what)
{
    intake_add_header (req, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return intake_reply_error (req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "",
                               "the ticket store is unreachable (%s); try again shortly", what);
}

bool
intake_authorize (intake_request_t *req, unsigned roles, enum MHD_Result *result)
{
    static const char scheme [] = "Bearer ";
    const char *header = MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_AUTHORIZATION);
    if (!header || strncasecmp (header, scheme, sizeof scheme - 1) != 0) {
        intake_add_header (req, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"civicbus\"");
        *result = intake_reply_error (req, MHD_HTTP_UNAUTHORIZED, "unauthorized", "",
                                      "send an API key: Authorization: Bearer <key>");
        return false;
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

    intake_t *intake = req->intake;
    if (intake_redis_down (intake)) {
        *result = intake_reply_unavailable (req, "breaker open");
        return false;
    }
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker) {
        *result = intake_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                      "out of memory");
        return false;
    }
    int rc = apikey_cache_verify (intake->keys, worker->redis, trimmed, &req->key);
    intake_pool_give (intake->pool, worker);
    if (rc < 0) {
        intake_redis_failed (intake);
        *result = intake_reply_unavailable (req, "key check");
        return false;
    }
    if (rc > 0) {
        intake_add_header (req, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                           "Bearer realm=\"civicbus\", error=\"invalid_token\"");
        *result = intake_reply_error (req, MHD_HTTP_UNAUTHORIZED, "unauthorized", "",
                                      "the API key is not known (or was revoked)");
        return false;
    }
    req->authenticated = true;
    if (!(req->key.role & roles)) {
        *result = intake_reply_error (req, MHD_HTTP_FORBIDDEN, "forbidden", "",
                                      "a key with role %s may not do this",
                                      apikey_role_name (req->key.role));
        return false;
    }
    if (!apikey_cache_allow (intake->keys, &req->key, cb_clock_now_ms ())) {
        intake_metrics_count (intake->metrics, INTAKE_COUNT_RATE_LIMITED);
        intake_add_header (req, MHD_HTTP_HEADER_RETRY_AFTER, "1");
        *result = intake_reply_error (req, MHD_HTTP_TOO_MANY_REQUESTS, "rate_limited", "",
                                      "key '%s' is over its rate of %d requests a second",
                                      req->key.name, req->key.rate_per_s);
        return false;
    }
    return true;
}

/* ---- private: small routes ---- */

static enum MHD_Result
s_healthz (intake_request_t *req)
{
    return intake_reply_json (req, MHD_HTTP_OK, json_pack ("{s:s}", "status", "up"));
}

//  Ready: Redis answers and an active dispatcher holds its lease (so a
//  stored ticket will be picked up). Grid and catalogue versions are shown
//  for operators but do not decide readiness: tickets are kept either way.
static enum MHD_Result
s_readyz (intake_request_t *req)
{
    intake_t *intake = req->intake;
    const char *reason = NULL;
    char dispatcher [128] = "";
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker)
        reason = "out of memory";
    else {
        redisReply *reply = cb_redis_command (worker->redis, "PING");
        if (!reply || reply->type == REDIS_REPLY_ERROR)
            reason = "redis does not answer";
        if (reply)
            freeReplyObject (reply);
        if (!reason) {
            reply = cb_redis_command (worker->redis, "GET lease:dispatcher");
            if (!reply || reply->type == REDIS_REPLY_ERROR)
                reason = "redis does not answer";
            else
            if (reply->type != REDIS_REPLY_STRING)
                reason = "no active dispatcher holds the lease";
            else
                snprintf (dispatcher, sizeof dispatcher, "%s", reply->str);
            if (reply)
                freeReplyObject (reply);
        }
        intake_pool_give (intake->pool, worker);
    }
    citydata_snapshot_t *snap = citydata_acquire (intake->citydata);
    json_int_t grids_v = snap->grids_version, catalog_v = snap->catalog_version;
    citydata_release (intake->citydata, &snap);
    if (reason) {
        char status_text [8];
        snprintf (status_text, sizeof status_text, "%d", MHD_HTTP_SERVICE_UNAVAILABLE);
        cb_log (CB_LOG_DEBUG, "not ready", "reason", reason, NULL);
        json_t *json = json_pack ("{s:{s:s,s:s,s:s},s:b,s:I,s:I}",
                                  "error", "code", "not_ready", "field", "", "message", reason,
                                  "ready", 0, "grids_version", grids_v,
                                  "catalog_version", catalog_v);
        return intake_reply_json (req, MHD_HTTP_SERVICE_UNAVAILABLE, json);
    }
    return intake_reply_json (req, MHD_HTTP_OK,
                              json_pack ("{s:b,s:s,s:I,s:I}", "ready", 1, "dispatcher", dispatcher,
                                         "grids_version", grids_v, "catalog_version", catalog_v));
}

static enum MHD_Result
s_metrics (intake_request_t *req)
{
    size_t len = 0;
    char *text = intake_metrics_render (req->intake->metrics, &len);
    if (!text)
        return MHD_NO;
    return s_queue (req, MHD_HTTP_OK, text, len, "text/plain; version=0.0.4; charset=utf-8");
}

/* ---- private: the request ---- */

//  "application/json", optionally with parameters; a charset, if named,
//  must be UTF-8 (JSON has no other since RFC 8259).
static bool
s_is_json (const char *type)
{
    if (!type)
        return false;
    while (*type == ' ')
        type++;
    static const char want [] = "application/json";
    if (strncasecmp (type, want, sizeof want - 1) != 0)
        return false;
    const char *rest = type + sizeof want - 1;
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
    return strncasecmp (charset, "utf-8", 5) == 0
        && (charset [5] == 0 || charset [5] == '"' || charset [5] == ';' || charset [5] == ' ');
}

static enum MHD_Result
s_method_not_allowed (intake_request_t *req, const char *allow)
{
    intake_add_header (req, MHD_HTTP_HEADER_ALLOW, allow);
    return intake_reply_error (req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", "",
                               "%s is not allowed here; use %s", req->method, allow);
}

//  The first call: route, method, and for POST everything the headers decide.
static enum MHD_Result
s_begin (intake_request_t *req, const char *url)
{
    bool is_get = strcmp (req->method, MHD_HTTP_METHOD_GET) == 0
               || strcmp (req->method, MHD_HTTP_METHOD_HEAD) == 0;
    bool is_post = strcmp (req->method, MHD_HTTP_METHOD_POST) == 0;
    static const char tickets [] = "/v1/tickets";
    size_t tlen = sizeof tickets - 1;

    if (strcmp (url, tickets) == 0) {
        if (is_get) {
            req->route = INTAKE_ROUTE_LIST;
            return intake_ticket_list (req);
        }
        if (!is_post)
            return s_method_not_allowed (req, "GET, POST");
        req->route = INTAKE_ROUTE_CREATE;
        enum MHD_Result result;
        unsigned roles = APIKEY_ROLE_REPORTER_APP | APIKEY_ROLE_HOTLINE | APIKEY_ROLE_OPERATOR
                       | APIKEY_ROLE_ADMIN | APIKEY_ROLE_SENSOR;
        if (!intake_authorize (req, roles, &result))
            return result;
        const char *type = MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!s_is_json (type))
            return intake_reply_error (req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                       "unsupported_media_type", "",
                                       "send the ticket as Content-Type: application/json");
        const char *length = MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND,
                                                          MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length) {
            char *end;
            unsigned long long n = strtoull (length, &end, 10);
            if (end != length && n > req->intake->max_body)
                return intake_reply_error (req, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "",
                                           "the body is %llu bytes; at most %zu are accepted",
                                           n, req->intake->max_body);
        }
        return MHD_YES;             //  now the body
    }
    if (strncmp (url, tickets, tlen) == 0 && url [tlen] == '/' && url [tlen + 1]
        && !strchr (url + tlen + 1, '/')) {
        if (!is_get)
            return s_method_not_allowed (req, "GET");
        req->route = INTAKE_ROUTE_GET;
        snprintf (req->ticket_id, sizeof req->ticket_id, "%s", url + tlen + 1);
        return intake_ticket_get (req);
    }
    if (strcmp (url, "/healthz") == 0 || strcmp (url, "/readyz") == 0
    ||  strcmp (url, "/metrics") == 0) {
        req->route = url [1] == 'h' ? INTAKE_ROUTE_HEALTHZ
                   : url [1] == 'r' ? INTAKE_ROUTE_READYZ : INTAKE_ROUTE_METRICS;
        if (!is_get)
            return s_method_not_allowed (req, "GET, HEAD");
        return req->route == INTAKE_ROUTE_HEALTHZ ? s_healthz (req)
             : req->route == INTAKE_ROUTE_READYZ ? s_readyz (req) : s_metrics (req);
    }
    return intake_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "",
                               "no such resource; the API is POST/GET /v1/tickets and "
                               "GET /v1/tickets/{id}");
}

static enum MHD_Result
s_body_append (intake_request_t *req, const char *data, size_t size)
{
    size_t max = req->intake->max_body;
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
    intake_t *intake = cls;
    intake_request_t *req = *con_cls;
    if (!req) {
        req = calloc (1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->intake = intake;
        req->conn = conn;
        req->method = method;
        req->route = INTAKE_ROUTE_OTHER;
        req->started_us = intake_mono_us ();
        *con_cls = req;
        atomic_fetch_add (&intake->in_flight, 1);
        return s_begin (req, url);
    }
    if (*upload_data_size) {
        size_t size = *upload_data_size;
        *upload_data_size = 0;
        if (req->status && !req->too_large)
            return MHD_YES;         //  answered already; the rest is ignored
        return s_body_append (req, upload_data, size);
    }
    if (req->status)
        return MHD_YES;
    if (req->too_large)
        return intake_reply_error (req, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "",
                                   "the body is over %zu bytes", intake->max_body);
    if (req->route == INTAKE_ROUTE_CREATE)
        return intake_ticket_create (req);
    return MHD_NO;                  //  not reached: other routes answer in the first call
}

static void
s_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    (void) conn;
    intake_t *intake = cls;
    intake_request_t *req = *con_cls;
    if (!req)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->status)
        intake_metrics_count (intake->metrics, INTAKE_COUNT_ABORTED);
    intake_metrics_request (intake->metrics, req->route,
                            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? req->status : 0,
                            intake_mono_us () - req->started_us);
    free (req->body);
    free (req);
    *con_cls = NULL;
    atomic_fetch_sub (&intake->in_flight, 1);
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

/* ---- public: server ---- */

intake_server_t *
intake_server_new (intake_t *intake, const intake_server_options_t *options)
{
    char host [256];
    int port = 0;
    if (cb_hostport_split (options->listen, host, sizeof host, &port)) {
        cb_log (CB_LOG_ERROR, "bad listen address", "listen", options->listen, NULL);
        return NULL;
    }
    char service [16];
    snprintf (service, sizeof service, "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *addrs = NULL;
    int gai = getaddrinfo (host, service, &hints, &addrs);
    if (gai || !addrs) {
        cb_log (CB_LOG_ERROR, "cannot resolve the listen address", "listen", options->listen,
                "error", gai_strerror (gai), NULL);
        return NULL;
    }
    struct sockaddr_storage sa;
    memset (&sa, 0, sizeof sa);
    memcpy (&sa, addrs->ai_addr, addrs->ai_addrlen);
    bool ipv6 = addrs->ai_family == AF_INET6;
    freeaddrinfo (addrs);

    intake_server_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->intake = intake;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC
                   | MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
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
    self->daemon = MHD_start_daemon (flags, 0, NULL, NULL, s_access, intake,
                                     MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, NULL,
                                     MHD_OPTION_NOTIFY_COMPLETED, s_completed, intake,
                                     MHD_OPTION_ARRAY, ops,
                                     MHD_OPTION_END);
    if (!self->daemon) {
        cb_log (CB_LOG_ERROR, "cannot listen", "listen", options->listen, NULL);
        free (self);
        return NULL;
    }
    return self;
}

void
intake_server_destroy (intake_server_t **self_p, int grace_ms)
{
    assert (self_p);
    intake_server_t *self = *self_p;
    if (!self)
        return;
    //  Stop accepting (another intake on the same port takes new
    //  connections), then let the requests already started finish.
    MHD_socket listener = MHD_quiesce_daemon (self->daemon);
    int64_t deadline = intake_mono_us () + (int64_t) grace_ms * 1000;
    while (atomic_load (&self->intake->in_flight) > 0 && intake_mono_us () < deadline) {
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep (&ts, NULL);
    }
    int left = atomic_load (&self->intake->in_flight);
    if (left > 0) {
        char text [16];
        snprintf (text, sizeof text, "%d", left);
        cb_log (CB_LOG_WARN, "stopping with requests unfinished", "requests", text, NULL);
    }
    MHD_stop_daemon (self->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close (listener);
    free (self);
    *self_p = NULL;
}
