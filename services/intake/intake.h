/*  intake.h — the intake service's private header: the shared state every
    HTTP thread reads, the per-thread Redis/ZeroMQ resources, metrics, and
    the request object the route handlers work on.

    Files:  main.c     configure, connect, loop (city data refresh), stop
            server.c   libmicrohttpd daemon, routing, bodies, replies, auth
            tickets.c  POST /v1/tickets, GET /v1/tickets/{id}, GET /v1/tickets
            pool.c     per-thread resources (Redis, ticket store, PUSH socket)
            metrics.c  Prometheus counters and histogram

    Threads: libmicrohttpd runs a pool of CIVICBUS_INTAKE_THREADS threads;
    a handler borrows one worker (its own Redis connection, ticket store and
    doorbell socket, none of which may be shared between threads) from the
    pool for the length of one request. Everything else shared is either
    immutable after start, thread-safe by itself (apikey cache, citydata
    snapshots) or atomic (metrics, the Redis breaker). */

#ifndef CIVICBUS_INTAKE_H
#define CIVICBUS_INTAKE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <czmq.h>
#include <jansson.h>
#include <microhttpd.h>

#include "civicbus/apikey.h"
#include "civicbus/citydata.h"
#include "civicbus/redis.h"
#include "civicbus/ticket_store.h"

/* ---- worker pool (pool.c) ---- */

typedef struct {
    cb_redis_t *redis;
    ticket_store_t *store;
    zsock_t *doorbell;              //  PUSH to the dispatchers; NULL when it could not be made
} intake_worker_t;

typedef struct _intake_pool_t intake_pool_t;

//  Nothing connects until first use; workers are made on demand (at most
//  one per concurrently running handler, so as many as HTTP threads).
intake_pool_t *intake_pool_new (const char *redis_url, int redis_timeout_ms,
                                const char *doorbell_endpoints);
void intake_pool_destroy (intake_pool_t **self_p);
//  A worker for this thread until given back; NULL when out of memory.
intake_worker_t *intake_pool_take (intake_pool_t *self);
void intake_pool_give (intake_pool_t *self, intake_worker_t *worker);

/* ---- metrics (metrics.c) ---- */

typedef enum {
    INTAKE_ROUTE_CREATE = 0,        //  POST /v1/tickets
    INTAKE_ROUTE_GET,               //  GET /v1/tickets/{id}
    INTAKE_ROUTE_LIST,              //  GET /v1/tickets
    INTAKE_ROUTE_HEALTHZ,
    INTAKE_ROUTE_READYZ,
    INTAKE_ROUTE_METRICS,
    INTAKE_ROUTE_OTHER,             //  404s and 405s
    INTAKE_ROUTE_COUNT
} intake_route_t;

typedef enum {
    INTAKE_COUNT_CREATED = 0,       //  new tickets stored
    INTAKE_COUNT_REPEATED,          //  answered with the first ticket
    INTAKE_COUNT_REDIS_ERRORS,      //  Redis unreachable or failing
    INTAKE_COUNT_DOORBELLS_DROPPED, //  doorbell not sent (the sweep finds the ticket)
    INTAKE_COUNT_UNGRIDDED,         //  tickets stored in no grid
    INTAKE_COUNT_RATE_LIMITED,      //  429s
    INTAKE_COUNT_ABORTED,           //  connections closed before an answer
    INTAKE_COUNT_N
} intake_count_t;

typedef struct _intake_metrics_t intake_metrics_t;

intake_metrics_t *intake_metrics_new (void);
void intake_metrics_destroy (intake_metrics_t **self_p);
//  One answered request (status 0: none was sent), lock-free.
void intake_metrics_request (intake_metrics_t *self, intake_route_t route, int status,
                             int64_t duration_us);
void intake_metrics_count (intake_metrics_t *self, intake_count_t which);
//  The Prometheus text exposition; caller frees. NULL when out of memory.
char *intake_metrics_render (intake_metrics_t *self, size_t *len);

/* ---- shared state ---- */

typedef struct {
    //  Settings (read-only after start).
    const char *district;
    size_t max_body;
    int idem_ttl_s;                 //  Idempotency-Key and (source, external_id)
    int hash_ttl_s;                 //  requests without either: body hash
    //  Shared objects.
    intake_pool_t *pool;
    apikey_cache_t *keys;
    citydata_t *citydata;
    intake_metrics_t *metrics;
    //  Redis breaker: after a failure, requests answer 503 at once until
    //  this monotonic time, so a hung Redis cannot tie up every thread.
    atomic_llong redis_down_until_ms;
    atomic_int in_flight;           //  requests between first call and completion
} intake_t;

#define INTAKE_BREAKER_MS 250

/* ---- one request (server.c) ---- */

#define INTAKE_EXTRA_HEADERS 4

typedef struct {
    intake_t *intake;
    struct MHD_Connection *conn;
    intake_route_t route;
    const char *method;
    char ticket_id [64];            //  GET /v1/tickets/{id}: the id part (maybe not an id)
    int64_t started_us;             //  monotonic
    int status;                     //  answered status, 0 before
    bool authenticated;
    apikey_info_t key;
    //  The body (POST), up to intake->max_body bytes.
    char *body;
    size_t body_len, body_cap;
    bool too_large;
    size_t discarded;
    //  Headers to add to the answer (static or request-owned strings).
    const char *header_names [INTAKE_EXTRA_HEADERS];
    char header_values [INTAKE_EXTRA_HEADERS][160];
    size_t header_count;
} intake_request_t;

//  Adds a header to the coming answer (value copied, truncated at 159 bytes).
void intake_add_header (intake_request_t *req, const char *name, const char *value);
//  Queues `json` (reference stolen) as the answer. Returns the MHD result.
enum MHD_Result intake_reply_json (intake_request_t *req, int status, json_t *json);
//  Queues {"error": {"code", "field", "message"}} and logs it at warn.
enum MHD_Result intake_reply_error (intake_request_t *req, int status, const char *code,
                                    const char *field, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));
//  503 with Retry-After, and the breaker set.
enum MHD_Result intake_reply_unavailable (intake_request_t *req, const char *what);
//  True while the breaker is open (the caller answers 503 at once).
bool intake_redis_down (intake_t *intake);
void intake_redis_failed (intake_t *intake);

//  Checks `Authorization: Bearer <secret>` against the key cache, the
//  route's roles (APIKEY_ROLE_* bits) and the key's rate. True with
//  req->key filled when the request may go on; false when an answer (401,
//  403, 429 or 503) was queued, its MHD result in *result.
bool intake_authorize (intake_request_t *req, unsigned roles, enum MHD_Result *result);

//  A monotonic clock in microseconds (latency, the breaker).
int64_t intake_mono_us (void);

/* ---- routes (tickets.c) ---- */

enum MHD_Result intake_ticket_create (intake_request_t *req);
enum MHD_Result intake_ticket_get (intake_request_t *req);
enum MHD_Result intake_ticket_list (intake_request_t *req);

/* ---- server (server.c) ---- */

typedef struct _intake_server_t intake_server_t;

typedef struct {
    const char *listen;             //  host:port
    int threads;
    int conn_limit;
    int per_ip_limit;               //  0: none
    int conn_timeout_s;
    size_t conn_memory;
} intake_server_options_t;

//  Binds and starts serving. NULL (logged) when it cannot.
intake_server_t *intake_server_new (intake_t *intake, const intake_server_options_t *options);
//  Stops accepting, lets running requests finish (at most `grace_ms`),
//  closes everything and frees the server.
void intake_server_destroy (intake_server_t **self_p, int grace_ms);

#endif
