/*  views.c — what operators read: the operators' queue, one ticket with
    its history, and the listing. Operators see personal data unmasked
    (they call reporters back); the listing and the ticket are the intake's
    own views (common/ticket_view.c).

    GET /v1/queue?state=&department=&grid=&since=&limit=&cursor=
      opq:{bNN} across the 64 buckets, oldest in the queue first: tickets
      that need a person (review, no owner, returned, pending extension or
      suspension, awaiting verification).
    GET /v1/tickets/{id}       the ticket and its history
    GET /v1/tickets?...        as the intake's listing */

#include "console.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_view.h"

/* ---- public ---- */

int
console_reply_store_error (console_t *console, httpd_request_t *req, int rc, const char *what)
{
    if (rc == TS_NOT_FOUND)
        return httpd_reply_error (req, MHD_HTTP_NOT_FOUND, "not_found", "id", "no such ticket");
    if (rc == TS_UNAVAILABLE) {
        httpd_redis_failed (console->httpd);
        return httpd_reply_unavailable (req, what);
    }
    return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                              "the ticket store failed (%s)", what);
}

int
console_ticket_get (httpd_request_t *req, void *arg)
{
    console_t *console = arg;
    const char *id = httpd_request_param (req, "id");
    if (ticket_id_bucket (id) < 0)
        return console_reply_store_error (console, req, TS_NOT_FOUND, "load");
    if (httpd_redis_down (console->httpd))
        return httpd_reply_unavailable (req, "breaker open");
    cb_ticket_t *t = NULL;
    cb_event_t **events = NULL;
    size_t n_events = 0;
    int rc = ticket_view_load (console->store, id, &t, &events, &n_events);
    if (rc != TS_OK)
        return console_reply_store_error (console, req, rc, "load");
    json_t *json = ticket_view_json (t, events, n_events, 0);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    ticket_store_free_events (events, n_events);
    if (!json)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    return httpd_reply_json (req, MHD_HTTP_OK, json);
}

//  The listing and the queue: the same query, another walk.
static int
s_page (console_t *console, httpd_request_t *req, bool queue)
{
    ticket_list_query_t q;
    ticket_list_query_init (&q);
    httpd_request_query_each (req, ticket_list_query_param, &q);
    if (q.bad)
        return httpd_reply_error (req, MHD_HTTP_BAD_REQUEST, q.err.code, q.err.field, "%s",
                                  q.err.message);
    if (httpd_redis_down (console->httpd))
        return httpd_reply_unavailable (req, "breaker open");
    json_t *page = NULL;
    int rc = queue ? ticket_queue_page (console->redis, &q, &page)
                   : ticket_list_page (console->redis, &q, 0, &page);
    if (rc != TS_OK)
        return console_reply_store_error (console, req, rc, queue ? "queue" : "list");
    return httpd_reply_json (req, MHD_HTTP_OK, page);
}

int
console_queue (httpd_request_t *req, void *arg)
{
    return s_page (arg, req, true);
}

int
console_ticket_list (httpd_request_t *req, void *arg)
{
    return s_page (arg, req, false);
}
