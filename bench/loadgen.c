/*  loadgen.c — an HTTP/1.1 load generator for POST /v1/tickets: one epoll
    thread, non-blocking keep-alive connections, one request at a time per
    connection (no pipelining), bodies from the demo city (bodies.h).

    Two modes:
    - open loop (--rate R): request i is due at start + i/R. A due request
      goes out on the next idle connection; when none is idle it waits, and
      its latency is counted from its due time, not from when it was sent.
      So a server that stalls is charged for the requests that queued behind
      the stall (no coordinated omission), as wrk2 does.
    - closed loop (--rate 0): every connection sends its next request as soon
      as the previous answer arrived; latency is from send. This finds the
      maximum rate, whose latencies mean little.

    Every latency goes into a log-linear histogram (histogram.h, 0.8%
    resolution). It prints p50/p90/p99/p99.9/max, the achieved rate of 2xx
    answers, counts by status and errors, and with --json FILE writes the
    same as one JSON object. Bounded: --duration seconds and --requests,
    whichever comes first, then at most --drain seconds for the answers
    still owed. Requests not sent by then (an overloaded server) and answers
    not received are counted, never silently dropped.

    Each request carries a unique Idempotency-Key (run id + sequence), so the
    intake stores every one as a new ticket.

    --log FILE writes one line per 2xx answer, for joining with what happens
    to the ticket later (bench/e2e.py: the end-to-end latency):
        TICKET_ID SEQ MONOTONIC_NS WALL_US MEASURED
    TICKET_ID is the answer body's "id" ("-" when it has none), the times
    are when the answer was complete (CLOCK_MONOTONIC, CLOCK_REALTIME), and
    MEASURED is 1 outside the warm-up. */

#include "bodies.h"
#include "histogram.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_IN_CAP 16384
#define S_OUT_CAP 8192
#define S_CONN_MAX 4096

enum { CONN_DOWN, CONN_CONNECTING, CONN_IDLE, CONN_BUSY };

typedef struct {
    int fd;
    int state;
    int64_t due_ns;             //  when the request in flight was due (open loop) or sent
    int64_t sent_ns;            //  when it was actually written
    bool measured;              //  not in the warm-up
    uint64_t seq;               //  the request's sequence number (--log)
    char out [S_OUT_CAP];
    size_t out_len, out_sent;
    char in [S_IN_CAP];
    size_t in_len;
} conn_t;

typedef struct {
    //  settings
    char host [320];
    char port [16];
    char path [512];
    const char *key;
    double rate;                //  0: closed loop
    int connections;
    double duration_s;
    double warmup_s;
    double drain_s;
    uint64_t max_requests;
    const char *json_path;
    const char *log_path;       //  --log: one line per 2xx answer
    FILE *log;
    const char *label;
    const char *grids_path;
    const char *catalog_path;
    size_t body_count;
    //  state
    struct addrinfo *addr;
    int epfd;
    conn_t *conns;
    int *idle;                  //  stack of idle connection indexes
    int n_idle;
    bodies_t bodies;
    char run_id [32];
    uint64_t next_seq;          //  requests sent (and the next sequence number)
    uint64_t planned;           //  requests the run means to send
    int64_t start_ns, measure_ns, end_ns;
    int64_t first_ok_ns, last_ok_ns;
    //  results
    hist_t latency;             //  from due time (open loop) or send (closed)
    hist_t service;             //  from actual send to answer
    uint64_t statuses [600];
    uint64_t completed, measured_completed, measured_ok;
    uint64_t connect_errors, resets, bad_responses, late_sends;
    uint64_t unsent, unanswered;
} loadgen_t;

/* ---- private ---- */

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
s_usage (FILE *out)
{
    fprintf (out,
        "Usage: bench-loadgen --url http://HOST:PORT/PATH [options]\n"
        "\n"
        "POSTs realistic tickets (demo city points, catalogue categories, Chinese\n"
        "descriptions) and prints latency percentiles, achieved rate and statuses.\n"
        "\n"
        "  --url URL          target (http only; default http://127.0.0.1:8080/v1/tickets)\n"
        "  --key SECRET       Bearer API key (or CIVICBUS_API_KEY)\n"
        "  --rate R           open loop at R requests/s (latency from the due time);\n"
        "                     0 = closed loop, flat out (default 0)\n"
        "  --connections N    keep-alive connections (default 64; 1..%d)\n"
        "  --duration S       seconds of sending (default 10)\n"
        "  --requests N       at most N requests (default: no limit but the duration)\n"
        "  --warmup S         leave the first S seconds out of the results (default 0)\n"
        "  --drain S          after sending, wait at most S s for answers (default 5)\n"
        "  --bodies N         distinct bodies to cycle through (default 2000)\n"
        "  --grids FILE       grids GeoJSON (default deploy/config/grids.geojson)\n"
        "  --catalog FILE     dispatch catalogue (default deploy/config/catalog.json)\n"
        "  --label NAME       name of this run in the output\n"
        "  --json FILE        also write the results as JSON to FILE\n"
        "  --log FILE         one line per 2xx answer: TICKET_ID SEQ MONOTONIC_NS\n"
        "                     WALL_US MEASURED (the id from the answer body)\n"
        "  --print-body       print one generated body and exit\n"
        "  --help             this text\n", S_CONN_MAX);
}

static int
s_parse_url (loadgen_t *self, const char *url)
{
    if (strncmp (url, "http://", 7) != 0)
        return -1;
    const char *hostport = url + 7;
    const char *slash = strchr (hostport, '/');
    size_t hp_len = slash ? (size_t) (slash - hostport) : strlen (hostport);
    snprintf (self->path, sizeof self->path, "%s", slash ? slash : "/v1/tickets");
    char hp [300];
    if (hp_len == 0 || hp_len >= sizeof hp)
        return -1;
    memcpy (hp, hostport, hp_len);
    hp [hp_len] = 0;
    char *colon = strrchr (hp, ':');
    if (colon) {
        *colon = 0;
        snprintf (self->port, sizeof self->port, "%s", colon + 1);
    }
    else
        snprintf (self->port, sizeof self->port, "80");
    snprintf (self->host, sizeof self->host, "%s", hp);
    return 0;
}

static int
s_epoll_add (loadgen_t *self, int index)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
                              .data.u32 = (uint32_t) index };
    return epoll_ctl (self->epfd, EPOLL_CTL_ADD, self->conns [index].fd, &ev);
}

static int
s_connect (loadgen_t *self, int index)
{
    conn_t *conn = &self->conns [index];
    conn->fd = socket (self->addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (conn->fd < 0)
        return -1;
    int one = 1;
    setsockopt (conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect (conn->fd, self->addr->ai_addr, self->addr->ai_addrlen);
    if (rc < 0 && errno != EINPROGRESS) {
        close (conn->fd);
        conn->fd = -1;
        return -1;
    }
    conn->state = CONN_CONNECTING;
    conn->in_len = conn->out_len = conn->out_sent = 0;
    if (s_epoll_add (self, index)) {
        close (conn->fd);
        conn->fd = -1;
        conn->state = CONN_DOWN;
        return -1;
    }
    return 0;
}

static void
s_make_idle (loadgen_t *self, int index)
{
    self->conns [index].state = CONN_IDLE;
    self->idle [self->n_idle++] = index;
}

//  Closes a connection (counting the request it had in flight as a reset)
//  and opens a new one.
static void
s_reconnect (loadgen_t *self, int index)
{
    conn_t *conn = &self->conns [index];
    if (conn->state == CONN_BUSY)
        self->resets++;
    if (conn->state == CONN_IDLE)
        for (int i = 0; i < self->n_idle; i++)
            if (self->idle [i] == index) {
                self->idle [i] = self->idle [--self->n_idle];
                break;
            }
    if (conn->fd >= 0)
        close (conn->fd);
    conn->fd = -1;
    conn->state = CONN_DOWN;
    if (s_connect (self, index))
        self->connect_errors++;
}

static int
s_flush (loadgen_t *self, int index)
{
    conn_t *conn = &self->conns [index];
    while (conn->out_sent < conn->out_len) {
        ssize_t n = send (conn->fd, conn->out + conn->out_sent, conn->out_len - conn->out_sent,
                          MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            s_reconnect (self, index);
            return -1;
        }
        conn->out_sent += (size_t) n;
    }
    return 0;
}

static void
s_send (loadgen_t *self, int index, int64_t due_ns, int64_t now_ns)
{
    conn_t *conn = &self->conns [index];
    uint64_t seq = self->next_seq++;
    size_t b = seq % self->bodies.count;
    int n = snprintf (conn->out, sizeof conn->out,
                      "POST %s HTTP/1.1\r\nHost: %s:%s\r\n"
                      "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                      "Idempotency-Key: %s-%llu\r\nContent-Length: %zu\r\n\r\n",
                      self->path, self->host, self->port, self->key, self->run_id,
                      (unsigned long long) seq, self->bodies.lens [b]);
    if (n < 0 || (size_t) n + self->bodies.lens [b] > sizeof conn->out) {
        self->bad_responses++;      //  cannot happen with the generated bodies
        return;
    }
    memcpy (conn->out + n, self->bodies.bodies [b], self->bodies.lens [b]);
    conn->out_len = (size_t) n + self->bodies.lens [b];
    conn->out_sent = 0;
    conn->in_len = 0;
    conn->due_ns = due_ns;
    conn->sent_ns = now_ns;
    conn->measured = due_ns >= self->measure_ns;
    conn->seq = seq;
    conn->state = CONN_BUSY;
    if (now_ns - due_ns > 1000000)
        self->late_sends++;
    s_flush (self, index);
}

//  A complete answer in conn->in? Returns the status (100..599), 0 when more
//  bytes are needed, -1 when it is not HTTP. Sets *close_after.
static int
s_parse_response (conn_t *conn, bool *close_after)
{
    conn->in [conn->in_len < S_IN_CAP ? conn->in_len : S_IN_CAP - 1] = 0;
    char *end = strstr (conn->in, "\r\n\r\n");
    if (!end)
        return conn->in_len >= S_IN_CAP - 1 ? -1 : 0;
    if (strncmp (conn->in, "HTTP/1.", 7) != 0 || conn->in_len < 12)
        return -1;
    int status = atoi (conn->in + 9);
    if (status < 100 || status > 599)
        return -1;
    size_t header_len = (size_t) (end - conn->in) + 4;
    size_t content_length = 0;
    *close_after = false;
    for (char *line = strstr (conn->in, "\r\n"); line && line < end; line = strstr (line + 2, "\r\n")) {
        char *h = line + 2;
        if (strncasecmp (h, "Content-Length:", 15) == 0)
            content_length = (size_t) strtoull (h + 15, NULL, 10);
        else
        if (strncasecmp (h, "Connection:", 11) == 0 && strncasecmp (h + 11, " close", 6) == 0)
            *close_after = true;
        else
        if (strncasecmp (h, "Transfer-Encoding:", 18) == 0)
            return -1;              //  chunked answers are not expected from these servers
    }
    if (header_len + content_length > S_IN_CAP - 1)
        return -1;
    return conn->in_len >= header_len + content_length ? status : 0;
}

//  --log: the ticket id from the answer body (conn->in holds the whole
//  answer, NUL-terminated by s_parse_response) and the times it arrived.
static void
s_log_answer (loadgen_t *self, const conn_t *conn, int64_t now_ns)
{
    const char *body = strstr (conn->in, "\r\n\r\n");
    const char *at = body ? strstr (body, "\"id\":") : NULL;
    char id [64] = "-";
    if (at) {
        at += 5;
        while (*at == ' ')
            at++;
        if (*at == '"') {
            size_t n = strcspn (++at, "\"");
            if (n > 0 && n < sizeof id) {
                memcpy (id, at, n);
                id [n] = 0;
            }
        }
    }
    struct timespec wall;
    clock_gettime (CLOCK_REALTIME, &wall);
    fprintf (self->log, "%s %llu %lld %lld %d\n", id, (unsigned long long) conn->seq,
             (long long) now_ns, (long long) wall.tv_sec * 1000000 + wall.tv_nsec / 1000,
             conn->measured ? 1 : 0);
}

static void
s_on_readable (loadgen_t *self, int index)
{
    conn_t *conn = &self->conns [index];
    while (conn->fd >= 0) {
        if (conn->in_len >= S_IN_CAP - 1) {
            self->bad_responses++;
            s_reconnect (self, index);
            return;
        }
        ssize_t n = recv (conn->fd, conn->in + conn->in_len, S_IN_CAP - 1 - conn->in_len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s_reconnect (self, index);
            return;
        }
        conn->in_len += (size_t) n;
        if (conn->state != CONN_BUSY) {
            conn->in_len = 0;       //  unasked bytes (an idle-timeout notice): ignore
            continue;
        }
        bool close_after = false;
        int status = s_parse_response (conn, &close_after);
        if (status == 0)
            continue;
        if (status < 0) {
            self->bad_responses++;
            s_reconnect (self, index);
            return;
        }
        int64_t now = s_now_ns ();
        self->completed++;
        if (conn->measured) {
            self->measured_completed++;
            self->statuses [status]++;
            hist_record (&self->latency, (uint64_t) (now - conn->due_ns));
            hist_record (&self->service, (uint64_t) (now - conn->sent_ns));
            if (status >= 200 && status < 300) {
                if (!self->measured_ok)
                    self->first_ok_ns = now;
                self->measured_ok++;
                self->last_ok_ns = now;
            }
        }
        if (self->log && status >= 200 && status < 300)
            s_log_answer (self, conn, now);
        conn->in_len = 0;
        if (close_after) {
            conn->state = CONN_IDLE;    //  not busy: the reconnect counts no reset
            s_reconnect (self, index);
            return;
        }
        s_make_idle (self, index);
        return;
    }
}

static void
s_on_event (loadgen_t *self, const struct epoll_event *ev)
{
    int index = (int) ev->data.u32;
    conn_t *conn = &self->conns [index];
    if (conn->fd < 0)
        return;
    if (conn->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt (conn->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (ev->events & (EPOLLERR | EPOLLHUP))) {
            self->connect_errors++;
            close (conn->fd);
            conn->fd = -1;
            conn->state = CONN_DOWN;
            return;                 //  retried by the main loop
        }
        if (ev->events & EPOLLOUT)
            s_make_idle (self, index);
        return;
    }
    if (ev->events & EPOLLOUT && conn->state == CONN_BUSY)
        if (s_flush (self, index))
            return;
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s_on_readable (self, index);
}

static int
s_in_flight (const loadgen_t *self)
{
    int n = 0;
    for (int i = 0; i < self->connections; i++)
        n += self->conns [i].state == CONN_BUSY;
    return n;
}

//  Waits for events until `until_ns` at the latest (nanosecond timeout).
static void
s_poll (loadgen_t *self, int64_t until_ns)
{
    struct epoll_event events [256];
    int64_t wait_ns = until_ns - s_now_ns ();
    if (wait_ns < 0)
        wait_ns = 0;
    struct timespec timeout = { wait_ns / 1000000000, wait_ns % 1000000000 };
    int n = epoll_pwait2 (self->epfd, events, 256, &timeout, NULL);
    if (n < 0 && errno == ENOSYS)
        n = epoll_wait (self->epfd, events, 256, (int) ((wait_ns + 999999) / 1000000));
    for (int i = 0; i < n; i++)
        s_on_event (self, &events [i]);
}

static void
s_retry_down (loadgen_t *self)
{
    for (int i = 0; i < self->connections; i++)
        if (self->conns [i].state == CONN_DOWN && s_connect (self, i))
            self->connect_errors++;
}

static void
s_run (loadgen_t *self)
{
    //  Connect everything before the clock starts.
    for (int i = 0; i < self->connections; i++)
        if (s_connect (self, i))
            self->connect_errors++;
    int64_t connect_deadline = s_now_ns () + 5000000000LL;
    while (self->n_idle < self->connections && s_now_ns () < connect_deadline)
        s_poll (self, s_now_ns () + 10000000);

    self->start_ns = s_now_ns ();
    self->measure_ns = self->start_ns + (int64_t) (self->warmup_s * 1e9);
    self->end_ns = self->start_ns + (int64_t) ((self->warmup_s + self->duration_s) * 1e9);
    int64_t give_up_ns = self->end_ns + (int64_t) (self->drain_s * 1e9);
    double period_ns = self->rate > 0 ? 1e9 / self->rate : 0;
    self->planned = self->max_requests;
    if (self->rate > 0) {
        uint64_t by_time = (uint64_t) ((self->warmup_s + self->duration_s) * self->rate);
        if (by_time < self->planned)
            self->planned = by_time;
    }
    int64_t last_retry = self->start_ns;
    while (true) {
        int64_t now = s_now_ns ();
        bool sending = self->next_seq < self->planned
                    && (self->rate > 0 ? now < give_up_ns : now < self->end_ns);
        if (!sending && s_in_flight (self) == 0)
            break;
        if (now >= give_up_ns)
            break;
        int64_t wake = now + 50000000;          //  at most 50 ms asleep
        if (sending && self->rate > 0) {
            while (self->n_idle > 0 && self->next_seq < self->planned) {
                int64_t due = self->start_ns + (int64_t) ((double) self->next_seq * period_ns);
                if (due > now) {
                    wake = due;
                    break;
                }
                s_send (self, self->idle [--self->n_idle], due, now);
            }
        }
        else
        if (sending) {
            while (self->n_idle > 0 && self->next_seq < self->planned)
                s_send (self, self->idle [--self->n_idle], now, now);
        }
        if (now - last_retry > 100000000) {
            s_retry_down (self);
            last_retry = now;
        }
        s_poll (self, wake);
    }
    self->unsent = self->planned > self->next_seq && self->rate > 0
                 ? self->planned - self->next_seq : 0;
    self->unanswered = (uint64_t) s_in_flight (self);
}

static double
s_achieved (const loadgen_t *self)
{
    //  2xx answers of the measured window over the window's length: from its
    //  start to the last 2xx answer (so the drain does not dilute it).
    int64_t window = self->last_ok_ns - self->measure_ns;
    if (self->measured_ok == 0 || window <= 0)
        return 0;
    return (double) self->measured_ok / (window / 1e9);
}

static void
s_print (const loadgen_t *self)
{
    const hist_t *h = &self->latency;
    printf ("%-24s %s %8.0f/s  conns %-4d  sent %-8llu ok %-8llu  achieved %9.0f/s\n",
            self->label, self->rate > 0 ? "open  " : "closed", self->rate,
            self->connections, (unsigned long long) self->next_seq,
            (unsigned long long) self->measured_ok, s_achieved (self));
    printf ("%-24s latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  "
            "(service p50 %.3f p99 %.3f)\n", "",
            hist_quantile (h, 0.50) / 1e6, hist_quantile (h, 0.90) / 1e6,
            hist_quantile (h, 0.99) / 1e6, hist_quantile (h, 0.999) / 1e6, h->max / 1e6,
            hist_quantile (&self->service, 0.50) / 1e6,
            hist_quantile (&self->service, 0.99) / 1e6);
    printf ("%-24s statuses:", "");
    for (int s = 100; s < 600; s++)
        if (self->statuses [s])
            printf (" %d=%llu", s, (unsigned long long) self->statuses [s]);
    printf ("  errors: connect=%llu reset=%llu bad=%llu unsent=%llu unanswered=%llu "
            "late_sends=%llu\n",
            (unsigned long long) self->connect_errors, (unsigned long long) self->resets,
            (unsigned long long) self->bad_responses, (unsigned long long) self->unsent,
            (unsigned long long) self->unanswered, (unsigned long long) self->late_sends);
}

static void
s_json_hist (FILE *out, const char *name, const hist_t *h)
{
    fprintf (out, "\"%s\":{\"count\":%llu,\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,"
             "\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}", name, (unsigned long long) h->total,
             hist_mean (h) / 1e3, hist_quantile (h, 0.5) / 1e3, hist_quantile (h, 0.9) / 1e3,
             hist_quantile (h, 0.99) / 1e3, hist_quantile (h, 0.999) / 1e3, h->max / 1e3);
}

static int
s_write_json (const loadgen_t *self)
{
    FILE *out = fopen (self->json_path, "w");
    if (!out)
        return -1;
    fprintf (out, "{\"label\":\"%s\",\"mode\":\"%s\",\"target_rate\":%.0f,\"connections\":%d,"
             "\"duration_s\":%.1f,\"warmup_s\":%.1f,\"sent\":%llu,\"completed\":%llu,"
             "\"ok\":%llu,\"achieved_rate\":%.1f,",
             self->label, self->rate > 0 ? "open" : "closed", self->rate, self->connections,
             self->duration_s, self->warmup_s, (unsigned long long) self->next_seq,
             (unsigned long long) self->measured_completed,
             (unsigned long long) self->measured_ok, s_achieved (self));
    fprintf (out, "\"statuses\":{");
    bool first = true;
    for (int s = 100; s < 600; s++)
        if (self->statuses [s]) {
            fprintf (out, "%s\"%d\":%llu", first ? "" : ",", s,
                     (unsigned long long) self->statuses [s]);
            first = false;
        }
    fprintf (out, "},\"errors\":{\"connect\":%llu,\"reset\":%llu,\"bad_response\":%llu,"
             "\"unsent\":%llu,\"unanswered\":%llu,\"late_sends\":%llu},",
             (unsigned long long) self->connect_errors, (unsigned long long) self->resets,
             (unsigned long long) self->bad_responses, (unsigned long long) self->unsent,
             (unsigned long long) self->unanswered, (unsigned long long) self->late_sends);
    s_json_hist (out, "latency_us", &self->latency);
    fprintf (out, ",");
    s_json_hist (out, "service_time_us", &self->service);
    fprintf (out, "}\n");
    return fclose (out) == 0 ? 0 : -1;
}

/* ---- main ---- */

int
main (int argc, char *argv [])
{
    static loadgen_t self_storage;      //  big (histograms, buffers): not on the stack
    loadgen_t *self = &self_storage;
    char default_grids [1024], default_catalog [1024];
    snprintf (default_grids, sizeof default_grids, "%s/deploy/config/grids.geojson",
              CIVICBUS_SOURCE_DIR);
    snprintf (default_catalog, sizeof default_catalog, "%s/deploy/config/catalog.json",
              CIVICBUS_SOURCE_DIR);
    *self = (loadgen_t) {
        .key = getenv ("CIVICBUS_API_KEY"), .connections = 64, .duration_s = 10,
        .drain_s = 5, .max_requests = UINT64_MAX, .label = "loadgen",
        .grids_path = default_grids, .catalog_path = default_catalog, .body_count = 2000,
    };
    const char *url = "http://127.0.0.1:8080/v1/tickets";
    bool print_body = false;
    static const struct option options [] = {
        { "url", required_argument, NULL, 'u' }, { "key", required_argument, NULL, 'k' },
        { "rate", required_argument, NULL, 'r' }, { "connections", required_argument, NULL, 'c' },
        { "duration", required_argument, NULL, 'd' }, { "requests", required_argument, NULL, 'n' },
        { "warmup", required_argument, NULL, 'w' }, { "drain", required_argument, NULL, 'D' },
        { "bodies", required_argument, NULL, 'b' }, { "grids", required_argument, NULL, 'g' },
        { "catalog", required_argument, NULL, 'C' }, { "label", required_argument, NULL, 'l' },
        { "json", required_argument, NULL, 'j' }, { "print-body", no_argument, NULL, 'p' },
        { "log", required_argument, NULL, 'L' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
            case 'u': url = optarg; break;
            case 'k': self->key = optarg; break;
            case 'r': self->rate = atof (optarg); break;
            case 'c': self->connections = atoi (optarg); break;
            case 'd': self->duration_s = atof (optarg); break;
            case 'n': self->max_requests = strtoull (optarg, NULL, 10); break;
            case 'w': self->warmup_s = atof (optarg); break;
            case 'D': self->drain_s = atof (optarg); break;
            case 'b': self->body_count = (size_t) atol (optarg); break;
            case 'g': self->grids_path = optarg; break;
            case 'C': self->catalog_path = optarg; break;
            case 'l': self->label = optarg; break;
            case 'j': self->json_path = optarg; break;
            case 'L': self->log_path = optarg; break;
            case 'p': print_body = true; break;
            case 'h': s_usage (stdout); return 0;
            default: s_usage (stderr); return 2;
        }
    }
    if (optind < argc || self->connections < 1 || self->connections > S_CONN_MAX
    ||  self->rate < 0 || self->duration_s <= 0 || self->warmup_s < 0 || self->drain_s < 0
    ||  self->body_count < 1 || self->max_requests < 1 || s_parse_url (self, url)) {
        s_usage (stderr);
        return 2;
    }
    char err [512] = "";
    if (bodies_make (&self->bodies, self->grids_path, self->catalog_path, self->body_count,
                     0x5EED, err, sizeof err)) {
        fprintf (stderr, "bench-loadgen: cannot make bodies: %s\n", err);
        return 1;
    }
    if (print_body) {
        printf ("%s\n", self->bodies.bodies [0]);
        bodies_free (&self->bodies);
        return 0;
    }
    if (!self->key)
        self->key = "none";
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    if (getaddrinfo (self->host, self->port, &hints, &self->addr) || !self->addr) {
        fprintf (stderr, "bench-loadgen: cannot resolve %s:%s\n", self->host, self->port);
        bodies_free (&self->bodies);
        return 1;
    }
    snprintf (self->run_id, sizeof self->run_id, "lg%lx-%d", (long) time (NULL), (int) getpid ());
    signal (SIGPIPE, SIG_IGN);
    hist_reset (&self->latency);
    hist_reset (&self->service);
    self->epfd = epoll_create1 (EPOLL_CLOEXEC);
    self->conns = calloc ((size_t) self->connections, sizeof (conn_t));
    self->idle = calloc ((size_t) self->connections, sizeof (int));
    int rc = 1;
    if (self->log_path && !(self->log = fopen (self->log_path, "w")))
        fprintf (stderr, "bench-loadgen: cannot write %s\n", self->log_path);
    else
    if (self->epfd >= 0 && self->conns && self->idle) {
        for (int i = 0; i < self->connections; i++)
            self->conns [i].fd = -1;
        s_run (self);
        s_print (self);
        rc = 0;
        if (self->json_path && s_write_json (self)) {
            fprintf (stderr, "bench-loadgen: cannot write %s\n", self->json_path);
            rc = 1;
        }
        if (self->measured_ok == 0) {
            fprintf (stderr, "bench-loadgen: no 2xx answer at all\n");
            rc = 1;
        }
    }
    for (int i = 0; self->conns && i < self->connections; i++)
        if (self->conns [i].fd >= 0)
            close (self->conns [i].fd);
    if (self->log && fclose (self->log)) {
        fprintf (stderr, "bench-loadgen: cannot write %s\n", self->log_path);
        rc = 1;
    }
    free (self->conns);
    free (self->idle);
    if (self->epfd >= 0)
        close (self->epfd);
    freeaddrinfo (self->addr);
    bodies_free (&self->bodies);
    return rc;
}
