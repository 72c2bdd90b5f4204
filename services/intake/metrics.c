/*  metrics.c — the intake's Prometheus metrics: requests by route and
    status, a latency histogram, and event counters. Every counter is a
    relaxed atomic: a scrape may see a request counted in one series and not
    yet in another, which Prometheus tolerates; no request ever waits on a
    lock to be counted. */

#include "intake.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The statuses the intake answers; anything else counts as "other".
static const int s_statuses [] = {
    200, 201, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503
};
#define S_STATUS_N (sizeof s_statuses / sizeof s_statuses [0])
#define S_STATUS_OTHER S_STATUS_N             //  any other code
#define S_STATUS_NONE (S_STATUS_N + 1)        //  connection closed before an answer
#define S_STATUS_SLOTS (S_STATUS_N + 2)

//  Histogram upper bounds in microseconds.
static const int64_t s_bounds_us [] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000
};
#define S_BOUND_N (sizeof s_bounds_us / sizeof s_bounds_us [0])

static const char *const s_route_names [INTAKE_ROUTE_COUNT] = {
    "create_ticket", "get_ticket", "list_tickets", "healthz", "readyz", "metrics", "other"
};

static const struct {
    const char *name;
    const char *help;
} s_counts [INTAKE_COUNT_N] = {
    { "civicbus_intake_tickets_created_total", "New tickets stored." },
    { "civicbus_intake_tickets_repeated_total",
      "Requests answered with an earlier ticket (same idempotency key)." },
    { "civicbus_intake_redis_errors_total", "Requests that found Redis unreachable or failing." },
    { "civicbus_intake_doorbells_dropped_total",
      "Doorbells not sent to a dispatcher (its sweep finds the ticket)." },
    { "civicbus_intake_tickets_ungridded_total", "Tickets stored outside every known grid." },
    { "civicbus_intake_rate_limited_total", "Requests refused for a key over its rate." },
    { "civicbus_intake_aborted_total", "Requests whose connection closed before an answer." },
};

struct _intake_metrics_t {
    atomic_ullong requests [INTAKE_ROUTE_COUNT][S_STATUS_SLOTS];
    atomic_ullong buckets [S_BOUND_N + 1];            //  non-cumulative; last is +Inf
    atomic_ullong duration_sum_us;
    atomic_ullong counts [INTAKE_COUNT_N];
};

/* ---- private ---- */

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

/* ---- public ---- */

intake_metrics_t *
intake_metrics_new (void)
{
    intake_metrics_t *self = calloc (1, sizeof *self);
    return self;
}

void
intake_metrics_destroy (intake_metrics_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

void
intake_metrics_request (intake_metrics_t *self, intake_route_t route, int status,
                        int64_t duration_us)
{
    if ((int) route < 0 || route >= INTAKE_ROUTE_COUNT)
        route = INTAKE_ROUTE_OTHER;
    atomic_fetch_add_explicit (&self->requests [route][s_status_slot (status)], 1,
                               memory_order_relaxed);
    if (duration_us < 0)
        duration_us = 0;
    size_t slot = 0;
    while (slot < S_BOUND_N && duration_us > s_bounds_us [slot])
        slot++;
    atomic_fetch_add_explicit (&self->buckets [slot], 1, memory_order_relaxed);
    atomic_fetch_add_explicit (&self->duration_sum_us, (unsigned long long) duration_us,
                               memory_order_relaxed);
}

void
intake_metrics_count (intake_metrics_t *self, intake_count_t which)
{
    assert (which < INTAKE_COUNT_N);
    atomic_fetch_add_explicit (&self->counts [which], 1, memory_order_relaxed);
}

char *
intake_metrics_render (intake_metrics_t *self, size_t *len)
{
    s_buf_t buf = { malloc (8192), 0, 8192, false };
    if (!buf.text)
        return NULL;
    s_printf (&buf, "# HELP civicbus_intake_requests_total HTTP requests by route and status.\n"
                    "# TYPE civicbus_intake_requests_total counter\n");
    for (size_t r = 0; r < INTAKE_ROUTE_COUNT; r++)
        for (size_t s = 0; s < S_STATUS_SLOTS; s++) {
            unsigned long long n = atomic_load_explicit (&self->requests [r][s],
                                                         memory_order_relaxed);
            if (n == 0)
                continue;
            char status [16];
            if (s < S_STATUS_N)
                snprintf (status, sizeof status, "%d", s_statuses [s]);
            else
                snprintf (status, sizeof status, "%s", s == S_STATUS_OTHER ? "other" : "none");
            s_printf (&buf, "civicbus_intake_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                      s_route_names [r], status, n);
        }
    s_printf (&buf, "# HELP civicbus_intake_request_duration_seconds Time from a request's "
                    "headers to its answer.\n"
                    "# TYPE civicbus_intake_request_duration_seconds histogram\n");
    unsigned long long cumulative = 0;
    for (size_t i = 0; i <= S_BOUND_N; i++) {
        cumulative += atomic_load_explicit (&self->buckets [i], memory_order_relaxed);
        if (i < S_BOUND_N)
            s_printf (&buf, "civicbus_intake_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                      (double) s_bounds_us [i] / 1e6, cumulative);
        else
            s_printf (&buf, "civicbus_intake_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                      cumulative);
    }
    s_printf (&buf, "civicbus_intake_request_duration_seconds_sum %.6f\n"
                    "civicbus_intake_request_duration_seconds_count %llu\n",
              (double) atomic_load_explicit (&self->duration_sum_us, memory_order_relaxed) / 1e6,
              cumulative);
    for (size_t i = 0; i < INTAKE_COUNT_N; i++)
        s_printf (&buf, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
                  s_counts [i].name, s_counts [i].help, s_counts [i].name, s_counts [i].name,
                  atomic_load_explicit (&self->counts [i], memory_order_relaxed));
    if (buf.failed) {
        free (buf.text);
        return NULL;
    }
    *len = buf.len;
    return buf.text;
}
