/*  intake.h — the intake service's private header: the shared state every
    HTTP thread reads, the per-thread Redis/ZeroMQ resources, and the route
    handlers.

    Files:  main.c     configure, connect, routes, readiness, loop (city
                       data refresh), stop
            tickets.c  POST /v1/tickets, GET /v1/tickets/{id}, GET /v1/tickets,
                       and intake_ticket_submit, the one way every front door
                       stores a new ticket
            open311*.c Open311 GeoReport v2 under /open311/v2/ (docs/OPEN311.md)
            doors.c    issue 6 doors' settings, objects and routes
            hotline.c  the 12345 hotline exchange under /hotline/v1/ (docs/HOTLINE.md)
            events.c   POST /v1/events: sensor and camera events folded into tickets
            duplicates.c  probable duplicates at creation; GET /v1/kpi/repeat-rate
            writer.c   every new ticket's Redis work, pipelined across requests
                       by one writer thread (common/redis_batch.h), and its
                       doorbell
            pool.c     per-thread resources (Redis, ticket store) for reads
    The HTTP side (server, routing, bodies, keys, answers, metrics) is
    common/httpd.c.

    Threads: libmicrohttpd runs a pool of CIVICBUS_INTAKE_THREADS threads;
    a handler that reads borrows one worker (its own Redis connection and
    ticket store, neither of which may be shared between threads) from the
    pool for the length of one request. New tickets go to the writer thread
    (writer.c), which owns its connection and the doorbell socket; the
    native POST /v1/tickets is answered when the writer is done
    (httpd_defer: no HTTP thread waits), the other doors wait for it. Everything else shared is either
    immutable after start, thread-safe by itself (apikey cache, citydata
    snapshots) or atomic (httpd's counters and Redis breaker). */

#ifndef CIVICBUS_INTAKE_H
#define CIVICBUS_INTAKE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <czmq.h>
#include <jansson.h>
#include <microhttpd.h>            //  MHD_HTTP_* status and header names

#include "civicbus/apikey.h"
#include "civicbus/citydata.h"
#include "civicbus/error.h"
#include "civicbus/httpd.h"
#include "civicbus/redis.h"
#include "civicbus/redis_batch.h"
#include "civicbus/ticket_store.h"
#include "civicbus/config.h"
#include "civicbus/duplicates.h"
#include "civicbus/sensors.h"

/* ---- worker pool (pool.c) ---- */

typedef struct {
    cb_redis_t *redis;
    ticket_store_t *store;
} intake_worker_t;

typedef struct _intake_pool_t intake_pool_t;

//  Nothing connects until first use; workers are made on demand (at most
//  one per concurrently running handler, so as many as HTTP threads).
intake_pool_t *intake_pool_new (const char *redis_url, int redis_timeout_ms);
void intake_pool_destroy (intake_pool_t **self_p);
//  A worker for this thread until given back; NULL when out of memory.
intake_worker_t *intake_pool_take (intake_pool_t *self);
void intake_pool_give (intake_pool_t *self, intake_worker_t *worker);

/* ---- shared state ---- */

typedef struct {
    redis_batch_t *batch;
    cb_script_t create_script;
    dup_scripts_t dup_scripts;
    zsock_t *doorbell;              //  PUSH to the dispatchers; NULL when it could not be made
} intake_writer_t;

typedef struct {
    //  Settings (read-only after start).
    const char *district;
    int idem_ttl_s;                 //  Idempotency-Key and (source, external_id)
    int hash_ttl_s;                 //  requests without either: body hash
    //  Shared objects.
    httpd_t *httpd;                 //  the server: answers, breaker, counters
    intake_pool_t *pool;
    //  The writers (writer.c): each with its batcher (thread and
    //  connection), the scripts it loads and the doorbell socket only its
    //  thread uses. Jobs are spread over them in turn.
    intake_writer_t *writers;
    size_t n_writers;
    atomic_uint next_writer;
    citydata_t *citydata;
    apikey_cache_t *keys;           //  the keys httpd checks (Open311 reads api_key from the form)
    //  Counters (httpd_counter handles).
    int count_created;              //  new tickets stored
    int count_repeated;             //  answered with the first ticket
    int count_doorbells_dropped;    //  doorbell not sent (the sweep finds the ticket)
    int count_ungridded;            //  tickets stored in no grid
    //  Issue 6 doors (doors.c): the 12345 hotline, sensor events, duplicates.
    char *hotline_secret;           //  NULL: the hotline door answers 503 not_configured
    size_t hotline_secret_len;
    sensor_config_t *sensors;       //  NULL: /v1/events answers 503 not_configured
    sensor_folds_t *folds;
    dup_index_t *duplicates;        //  NULL: duplicates are not flagged
    bool duplicate_hold;            //  flagged duplicates wait for an operator
    int count_duplicates;           //  reports flagged as probable duplicates
    int count_sensor_events;        //  sensor events folded or opening a ticket
    int count_sensor_rejected;      //  sensor events refused
} intake_t;

/* ---- creating a ticket (tickets.c): every front door stores through this ---- */

typedef enum {
    INTAKE_SUBMIT_CREATED = 0,      //  stored and rung: t has its id, state, times (201)
    INTAKE_SUBMIT_REPEAT,           //  idempotency key seen: out->first is the first ticket (200)
    INTAKE_SUBMIT_FORBIDDEN,        //  the key's role may not report t's source (403, err)
    INTAKE_SUBMIT_REFUSED,          //  unknown category or grid, a request type the category
                                    //  does not take (400, err)
    INTAKE_SUBMIT_KEY_REUSED,       //  Idempotency-Key used for another ticket: out->first (422)
    INTAKE_SUBMIT_UNAVAILABLE,      //  Redis down or breaker open (503; out->unavailable says what)
    INTAKE_SUBMIT_FAILED,           //  out of memory, unreadable store (500, err)
} intake_submit_result_t;

typedef struct {
    intake_submit_result_t result;
    cb_ticket_t *first;             //  REPEAT, KEY_REUSED: the first ticket; caller frees
    const char *unavailable;        //  UNAVAILABLE: which step ("store", "load", "breaker open")
    cb_error_t err;                 //  FORBIDDEN, REFUSED, FAILED: code, field, message
} intake_submit_t;

//  Stores a validated new ticket `t` (ticket_from_request_json's output, or
//  a front door's equivalent) for `key`: checks the key may report t's
//  source, the category and request type against the catalogue, locates the
//  grid, sets intake_key, picks the idempotency key (idem_header if not
//  NULL; else t's external_id; else a hash of the key name and the `body_len`
//  bytes at `body`, kept 10 minutes), stores in one script and rings the
//  dispatcher. Returns out->result (the caller answers); frees nothing of t.
//  Waits (on the calling thread) for the writer.
int intake_ticket_submit (intake_t *intake, const apikey_info_t *key, cb_ticket_t *t,
                          const char *idem_header, const char *body, size_t body_len,
                          intake_submit_t *out);

//  Called once with a submission's result: on the submitting thread when
//  it is known at once (refused, breaker open), else on the writer thread.
typedef void (intake_submit_done_fn) (intake_submit_t *out, void *arg);
//  intake_ticket_submit without waiting: `t`, `out` and `key` stay valid
//  until `done (out, arg)` is called; then out->result is set.
void intake_ticket_submit_async (intake_t *intake, const apikey_info_t *key, cb_ticket_t *t,
                                 const char *idem_header, const char *body, size_t body_len,
                                 intake_submit_t *out, intake_submit_done_fn *done, void *arg);
//  A different ticket under a reused Idempotency-Key: the fields a client
//  would have changed on purpose differ.
bool intake_same_request (const cb_ticket_t *a, const cb_ticket_t *b);

/* ---- the writer (writer.c) ---- */

//  Jobs per pipelined round at most.
#define INTAKE_BATCH_MAX 256
//  Makes `n_writers` writers (batcher, connection, doorbell socket each)
//  and starts their threads (after intake_doors_start: the duplicate index
//  must exist). 0 or -1.
int intake_writer_start (intake_t *intake, const char *redis_url, int timeout_ms,
                         const char *doorbell_endpoints, int n_writers);
//  Finishes every queued job, stops the threads, frees; safe twice.
void intake_writer_stop (intake_t *intake);
//  Queues the store of a checked ticket under `idem_key`; `done` as
//  intake_ticket_submit_async says.
void intake_writer_submit (intake_t *intake, const apikey_info_t *key, cb_ticket_t *t,
                           const char *idem_key, int idem_ttl_s, bool check_same,
                           intake_submit_t *out, intake_submit_done_fn *done, void *arg);

/* ---- routes (tickets.c, open311.c; arg is the intake_t) ---- */

int intake_ticket_create (httpd_request_t *req, void *arg);
int intake_ticket_get (httpd_request_t *req, void *arg);
int intake_ticket_list (httpd_request_t *req, void *arg);

/* ---- issue 6 doors (doors.c, hotline.c, events.c, duplicates.c) ---- */

//  Their settings, for main.c's table (before CB_SETTINGS_COMMON).
#define INTAKE_DOORS_SETTINGS \
    { "CIVICBUS_HOTLINE_SECRET", "", CB_SETTING_STRING, 0, 0, \
      "the 12345 hotline's shared HMAC secret (empty: see CIVICBUS_HOTLINE_SECRET_FILE)" }, \
    { "CIVICBUS_HOTLINE_SECRET_FILE", "", CB_SETTING_STRING, 0, 0, \
      "a file holding the hotline's secret (trailing newline ignored); neither: no hotline door" }, \
    { "CIVICBUS_SENSORS_CONFIG", "", CB_SETTING_STRING, 0, 0, \
      "sensor event types (deploy/config/sensors.json); empty: no /v1/events" }, \
    { "CIVICBUS_DUPLICATE_RADIUS_M", "100", CB_SETTING_INT, 0, 100000, \
      "a report this close to an open ticket of its category is a probable duplicate (0: off)" }, \
    { "CIVICBUS_DUPLICATE_WINDOW_S", "172800", CB_SETTING_INT, 1, 31536000, \
      "... if that ticket was created within this many seconds" }, \
    { "CIVICBUS_DUPLICATE_HOLD", "0", CB_SETTING_BOOL, 0, 0, \
      "flagged duplicates wait in the operators' queue (merge or accept) instead of " \
      "being dispatched" }

//  Reads the doors' settings and files, makes their objects, loads their
//  scripts on `redis` (when it answers), adds their routes and counters.
//  0, or -1 (logged) when a setting or file is unusable or memory ran out.
int intake_doors_start (intake_t *intake, const cb_config_t *config, cb_redis_t *redis);
//  Frees what intake_doors_start made; safe twice.
void intake_doors_stop (intake_t *intake);

//  Every front door's creation path flags probable duplicates before the
//  store and indexes and counts after it: the writer's FIND, CHECK and
//  AFTER stages (writer.c). Best effort: a Redis failure there is logged
//  and the ticket is stored unflagged.

//  Routes (arg is the intake_t).
int intake_hotline_create (httpd_request_t *req, void *arg);
int intake_hotline_action (httpd_request_t *req, void *arg);
int intake_hotline_get (httpd_request_t *req, void *arg);
int intake_events_post (httpd_request_t *req, void *arg);
int intake_kpi_repeat_rate (httpd_request_t *req, void *arg);

//  Adds the Open311 GeoReport v2 routes (/open311/v2/...) and their
//  counters. Before httpd_start; 0, or -1 when out of memory.
int intake_open311_routes (intake_t *intake);

#endif
