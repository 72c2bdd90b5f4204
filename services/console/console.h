/*  console.h — the console service's private header: its shared state and
    its route handlers.

    Files:  main.c     configure, connect, routes, readiness, loop (city
                       data refresh), stop
            actions.c  POST /v1/tickets/{id}/actions: the operator actions
            views.c    GET /v1/queue, GET /v1/tickets/{id}, GET /v1/tickets

    Threads: the operator API runs on ONE HTTP thread (the command center
    has tens of operators, not thousands of clients), so the handlers share
    one Redis connection and ticket store without locks. The main thread
    refreshes the grids and catalogue with its own connection; citydata
    snapshots are thread-safe. */

#ifndef CIVICBUS_CONSOLE_H
#define CIVICBUS_CONSOLE_H

#include <jansson.h>
#include <microhttpd.h>            //  MHD_HTTP_* status and header names

#include "civicbus/citydata.h"
#include "civicbus/httpd.h"
#include "civicbus/redis.h"
#include "civicbus/ticket_store.h"

typedef struct {
    httpd_t *httpd;
    cb_redis_t *redis;              //  the HTTP thread's (see above)
    ticket_store_t *store;          //  on `redis`
    citydata_t *citydata;
    int count_actions;              //  httpd counters: actions stored
    int count_refused;              //  actions the state machine refused
} console_t;

//  Answers a store result that is not TS_OK (404, 503 with the breaker
//  opened, 500) and returns what the reply returned.
int console_reply_store_error (console_t *console, httpd_request_t *req, int rc,
                               const char *what);

/* ---- routes (arg is the console_t) ---- */

int console_ticket_action (httpd_request_t *req, void *arg);
int console_queue (httpd_request_t *req, void *arg);
int console_ticket_get (httpd_request_t *req, void *arg);
int console_ticket_list (httpd_request_t *req, void *arg);

#endif
