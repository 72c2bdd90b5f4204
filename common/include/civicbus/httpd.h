/*  httpd.h — the HTTP front door every civicbus service with an HTTP API
    is built on (the intake's native, Open311 and 12345 doors, the console):
    a libmicrohttpd server with deliberate limits, routing by method and
    path pattern, request bodies with a hard size limit, Bearer keys with
    roles and rates, JSON answers and errors, a Redis breaker, Prometheus
    metrics, /healthz, /readyz and a graceful stop.

    Use:
        httpd_t *httpd = httpd_new (&options);
        int created = httpd_counter (httpd, "civicbus_x_made_total", "Things made.");
        httpd_route (httpd, &(httpd_route_t) { "POST", "/v1/things", "create_thing",
                     APIKEY_ROLE_ADMIN, HTTPD_BODY_JSON, s_create, self });
        httpd_route (httpd, &(httpd_route_t) { "GET", "/v1/things/{id}", "get_thing",
                     APIKEY_ROLE_ADMIN, 0, s_get, self });
        httpd_start (httpd);            //  binds; serves on its own threads
        ...
        httpd_destroy (&httpd);         //  graceful stop, then free

    What the server decides before a handler runs, from the headers alone
    (so a refused request's body is never read):
      - the route: no pattern matches: 404 {"error":{"code":"not_found"}};
        a pattern matches but not the method: 405 with Allow;
      - the key, when the route names roles: no Bearer key or an unknown one
        401 (with WWW-Authenticate), a key whose role is not among the
        route's 403, a key over its rate 429 with Retry-After, Redis down
        503 with Retry-After;
      - for a route with a body: Content-Type (HTTPD_BODY_JSON wants
        application/json, UTF-8 if a charset is named: else 415) and a
        declared Content-Length over max_body (413).
    A chunked body that grows past max_body is dropped from memory at once
    and answered 413 when it ends (libmicrohttpd 0.9 takes no answer
    mid-body); past eight times the limit the connection is simply closed.

    Threads: handlers run on libmicrohttpd's pool of `threads` threads, any
    number at once; what they share must be thread-safe. Everything in a
    request object belongs to the one handler call running it, or, for a
    deferred answer (httpd_defer), to whoever will resume it.

    Every answer carries Cache-Control: no-store. Errors are logged at warn
    ("request refused") with the route label, the key's name and the
    message, never the body. */

#ifndef CIVICBUS_HTTPD_H
#define CIVICBUS_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "civicbus/apikey.h"
#include "civicbus/redis.h"

typedef struct _httpd_t httpd_t;
typedef struct _httpd_request_t httpd_request_t;

//  A route's handler: answers with one of the httpd_reply_* functions and
//  returns what it returned (0: an answer is queued; -1: none could be,
//  the connection is closed).
typedef int (httpd_handler_fn) (httpd_request_t *req, void *arg);

//  Lends a Redis connection for the calling thread (key checks), and takes
//  it back. `token` is the lender's, given back unchanged. NULL: none.
typedef cb_redis_t *(httpd_redis_take_fn) (void *arg, void **token);
typedef void (httpd_redis_give_fn) (void *arg, void *token);

//  /readyz: returns NULL when the service is ready, else why not (a string
//  that outlives the call). May add fields to `detail` either way (they
//  appear at the top level of the answer).
typedef const char *(httpd_ready_fn) (void *arg, json_t *detail);

typedef struct {
    const char *listen;             //  "host:port" (IPv4, IPv6 in brackets, or a name)
    int threads;                    //  HTTP threads, at least 1
    int conn_limit;                 //  connections at once
    int per_ip_limit;               //  connections from one address; 0: no limit
    int conn_timeout_s;             //  idle connections close after this
    size_t conn_memory;             //  per connection, for headers and buffers
    size_t max_body;                //  largest body in bytes (more: 413)
    //  Metric names start with this ("civicbus_intake"); the server's own
    //  are PREFIX_requests_total{route,status}, PREFIX_request_duration_seconds,
    //  PREFIX_redis_errors_total, PREFIX_rate_limited_total, PREFIX_aborted_total.
    const char *metrics_prefix;
    //  The 404 message, telling people what the API has.
    const char *not_found_hint;
    //  Keys (required when a route names roles; not owned).
    apikey_cache_t *keys;
    httpd_redis_take_fn *redis_take;
    httpd_redis_give_fn *redis_give;
    void *redis_arg;
    //  /readyz (NULL: ready whenever /healthz is).
    httpd_ready_fn *ready;
    void *ready_arg;
} httpd_options_t;

//  Route flags.
#define HTTPD_BODY_JSON   (1u << 0)     //  reads a body that must be application/json
#define HTTPD_BODY_ANY    (1u << 1)     //  reads a body of any content type (the handler checks)

typedef struct {
    const char *method;             //  "GET" (also answers HEAD), "POST", ...
    //  Segments separated by '/'; a segment "{name}" matches any one
    //  non-empty segment, read with httpd_request_param (req, "name").
    const char *pattern;
    const char *label;              //  the metrics' route label ("create_ticket")
    unsigned roles;                 //  APIKEY_ROLE_* bits allowed; 0: no key needed
    unsigned flags;                 //  HTTPD_BODY_*; none: no body is read
    httpd_handler_fn *handler;
    void *arg;
} httpd_route_t;

#define HTTPD_PARAMS_MAX 4
#define HTTPD_EXTRA_HEADERS 4
//  After a Redis failure requests answer 503 at once for this long, so a
//  hung Redis cannot tie up every thread.
#define HTTPD_BREAKER_MS 250

/* ---- the server ---- */

//  A server with these options (strings are copied); nothing is bound until
//  httpd_start. NULL when out of memory or the options are unusable (logged).
httpd_t *httpd_new (const httpd_options_t *options);
//  Stops (as httpd_stop with 10 s of grace) if running, frees everything;
//  safe twice, sets *self_p to NULL.
void httpd_destroy (httpd_t **self_p);
//  Adds a route (the strings must outlive the server; literals do). Routes
//  are tried in the order added; /healthz, /readyz and /metrics are built
//  in. Before httpd_start only. 0, or -1 when out of memory.
int httpd_route (httpd_t *self, const httpd_route_t *route);
//  Adds a counter shown on /metrics under its full `name`
//  ("civicbus_intake_tickets_created_total") with its HELP text; returns
//  its handle for httpd_count, or -1 (out of memory, or more than 32).
//  Before httpd_start only.
int httpd_counter (httpd_t *self, const char *name, const char *help);
//  Adds one to a counter (lock-free, any thread).
void httpd_count (httpd_t *self, int counter);
//  Binds (SO_REUSEPORT, so several processes may share the port) and serves.
//  0, or -1 (logged) when it cannot listen.
int httpd_start (httpd_t *self);
//  Stops accepting, lets the running requests finish (at most grace_ms),
//  then closes every connection. Safe when not started or already stopped.
void httpd_stop (httpd_t *self, int grace_ms);
//  True after a Redis failure, for HTTPD_BREAKER_MS (answer 503 at once).
bool httpd_redis_down (httpd_t *self);
//  Counts a Redis failure and opens the breaker.
void httpd_redis_failed (httpd_t *self);
//  A monotonic clock in microseconds.
int64_t httpd_mono_us (void);

/* ---- the request ---- */

httpd_t *httpd_request_server (httpd_request_t *req);
const char *httpd_request_method (httpd_request_t *req);
//  The path, percent-decoded, without the query string.
const char *httpd_request_path (httpd_request_t *req);
//  The segment a "{name}" of the route's pattern matched; NULL for none.
const char *httpd_request_param (httpd_request_t *req, const char *name);
//  A request header (case-insensitive name), NULL when absent.
const char *httpd_request_header (httpd_request_t *req, const char *name);
//  A query-string argument, percent-decoded; NULL when absent ("" for
//  "?a" without a value). The first when repeated.
const char *httpd_request_query (httpd_request_t *req, const char *name);
//  Calls fn for each query-string argument in order (value "" when it has
//  none) until fn returns non-zero. Returns how many were visited.
typedef int (httpd_query_fn) (void *arg, const char *name, const char *value);
int httpd_request_query_each (httpd_request_t *req, httpd_query_fn *fn, void *arg);
//  The body (NUL-terminated, "" for none) and its length in bytes.
const char *httpd_request_body (httpd_request_t *req, size_t *len);
//  The verified key (routes with roles); NULL when the route needs none.
const apikey_info_t *httpd_request_key (httpd_request_t *req);

/* ---- deferred answers ---- */

//  The answer of a deferred request, on the connection's own thread once
//  httpd_resume was called: answers with an httpd_reply_* function and
//  returns what it returned (as a handler does). Runs exactly once per
//  httpd_defer, also when the client left meanwhile (its answers then
//  return -1 and go nowhere), so it may free what the request held.
typedef int (httpd_resume_fn) (httpd_request_t *req, void *arg);

//  In a handler, for an answer that another thread will have ready later
//  (a pipelined Redis write): call this before handing `req` over, then
//  return 0. The connection is suspended (MHD_suspend_connection: no
//  thread waits, the HTTP threads serve other connections) until that
//  thread calls httpd_resume (req); then `fn (req, arg)` answers on the
//  connection's thread (libmicrohttpd takes answers only there). Until
//  `fn` runs, the request and its body stay valid, and only httpd_resume
//  may be called on it from another thread. Every deferred request must
//  be resumed exactly once: httpd_stop waits for it, past its grace if it
//  has to (a suspended connection cannot be closed). 0, or -1 when the
//  handler already answered.
int httpd_defer (httpd_request_t *req, httpd_resume_fn *fn, void *arg);
//  The deferred answer is ready (any thread, once per httpd_defer; also
//  before the handler has returned).
void httpd_resume (httpd_request_t *req);

/* ---- answers (each returns 0 when queued, -1 when not) ---- */

//  Adds a header to the coming answer (value copied, at most 159 bytes; at
//  most HTTPD_EXTRA_HEADERS headers, further ones are ignored).
void httpd_add_header (httpd_request_t *req, const char *name, const char *value);
//  `json` (reference stolen; NULL answers nothing and returns -1) with a
//  trailing newline, as application/json; charset=utf-8. Reals print with
//  15 significant digits, so coordinates read as sent.
int httpd_reply_json (httpd_request_t *req, int status, json_t *json);
//  {"error": {"code", "field" ("" for none), "message"}}, logged at warn.
int httpd_reply_error (httpd_request_t *req, int status, const char *code, const char *field,
                       const char *fmt, ...) __attribute__ ((format (printf, 5, 6)));
//  `len` bytes at `text` (copied) with that content type.
int httpd_reply_text (httpd_request_t *req, int status, const char *content_type,
                      const char *text, size_t len);
//  503 "unavailable" with Retry-After: 1: "the ticket store is unreachable
//  (what); try again shortly".
int httpd_reply_unavailable (httpd_request_t *req, const char *what);

//  True when a Content-Type header names the media type `want`
//  ("application/json"), optionally with parameters; a charset, if named,
//  must be UTF-8 ("utf-8" or "utf8", any case, optionally quoted).
bool httpd_media_type_is (const char *content_type, const char *want);

#endif
