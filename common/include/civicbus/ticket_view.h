/*  ticket_view.h — read-only views of stored tickets for the HTTP APIs
    (intake, console): one ticket with its history, the listing
    (GET /v1/tickets) and the operators' queue (GET /v1/queue).

    Listing and queue walk sorted sets of the 64 buckets oldest first, by
    (score, id): the listing the most selective idx:{bNN}:* index (counted
    per request over the buckets), the queue opq:{bNN} (score: when the
    ticket entered the queue). The buckets are merged with one pipelined
    ZRANGEBYSCORE round per refill, candidates loaded with one pipelined
    round, and filters checked on each loaded ticket. A page holds at most
    `limit` entries (default 50, at most 500) and next_cursor (null at the
    end). One page examines a bounded number of entries (20 x limit, at
    least 2000), so a page may hold fewer than `limit` while next_cursor is
    not null: keep following it. Cursors are opaque (base64url of
    "SCORE:ID"). */

#ifndef CIVICBUS_TICKET_VIEW_H
#define CIVICBUS_TICKET_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "civicbus/error.h"
#include "civicbus/redis.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_store.h"

#define TICKET_LIST_LIMIT_DEFAULT 50
#define TICKET_LIST_LIMIT_MAX     500
#define TICKET_LIST_CODE_MAX      64

//  A listing's filters and position: init, then feed it the query string's
//  arguments with ticket_list_query_param.
typedef struct {
    int state;                              //  -1: any
    char department [TICKET_LIST_CODE_MAX]; //  "": any
    char grid [TICKET_LIST_CODE_MAX];       //  any area code of the ticket's grid path
    int64_t since_ms;                       //  created at or after
    int limit;
    bool has_cursor;
    int64_t cursor_ms;
    char cursor_id [CB_TICKET_ID_MAX];
    unsigned seen;                          //  a bit per parameter, to refuse repeats
    bool bad;                               //  a parameter was refused: see err
    cb_error_t err;
} ticket_list_query_t;

void ticket_list_query_init (ticket_list_query_t *query);

//  One query-string argument (`query` is a ticket_list_query_t; the
//  signature is httpd_query_fn's): state (RECEIVED, any case), department,
//  grid, since (ISO 8601 or Unix ms), limit (1..500), cursor. Returns 0; or
//  -1 with query->bad set and query->err filled ("unknown_parameter" or
//  "bad_value", field = the parameter) for an unknown, repeated or bad one.
int ticket_list_query_param (void *query, const char *name, const char *value);

//  GET /v1/tickets: *page = {"tickets": [ticket_to_json (t, json_flags)...],
//  "count": n, "next_cursor": "..." | null}. TS_OK, TS_UNAVAILABLE or
//  TS_ERROR (*page NULL then).
int ticket_list_page (cb_redis_t *redis, const ticket_list_query_t *query, unsigned json_flags,
                      json_t **page);

//  GET /v1/queue: the operators' queue (opq:{bNN}), oldest first, with the
//  same filters. *page = {"items": [{id, state, category, grid_path [],
//  department, review_reason, flags [], queued, created}...], "count",
//  "next_cursor"}. flags: "needs_review", "extension_pending",
//  "suspension_pending", "urgent", "ungridded". TS_OK, TS_UNAVAILABLE or
//  TS_ERROR.
int ticket_queue_page (cb_redis_t *redis, const ticket_list_query_t *query, json_t **page);

//  Loads a ticket and its history (oldest first). TS_OK (free both with
//  civicbus__v1__ticket__free_unpacked and ticket_store_free_events),
//  TS_NOT_FOUND, TS_UNAVAILABLE, TS_ERROR; nothing to free unless TS_OK.
int ticket_view_load (ticket_store_t *store, const char *id, cb_ticket_t **ticket,
                      cb_event_t ***events, size_t *n_events);

//  ticket_to_json (ticket, json_flags) with "events": [ticket_event_to_json...].
//  NULL when out of memory.
json_t *ticket_view_json (const cb_ticket_t *ticket, cb_event_t *const *events, size_t n_events,
                          unsigned json_flags);

#endif
