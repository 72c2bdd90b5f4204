/*  dept_receiver.c — a minimal department system for the end-to-end bench:
    takes the orders an adapter POSTs (any path), answers 201 with a case id,
    and logs when each order arrived. Never answers the order (no sign, no
    resolve): it stands in for tests/sim/department_sim.py --no-answers when
    the Python simulator cannot keep up with the rate under test (bench/run
    measures both ceilings; bench/README.md, "End to end").

    Log (--log FILE), one line per order received, written when its body has
    been read completely:
        IDEMPOTENCY_KEY TICKET_ID MONOTONIC_NS WALL_US
    TICKET_ID is the body's "case_no" (police), else "ticket_no" (civil),
    else "-". CLOCK_MONOTONIC is the clock bench-loadgen's --log uses, so
    bench/e2e.py can subtract the two on one machine. A repeated delivery is
    logged again; the join takes the first line per ticket.

    libmicrohttpd with an internal thread pool (--threads, default 2), as a
    department's web server would answer. GET /stats answers
    {"received": N} (orders so far, repeats included). SIGTERM or SIGINT
    ends it and flushes the log. Usage: bench-dept_receiver --listen 127.0.0.1:PORT
    [--log FILE] [--threads N] */

#include <microhttpd.h>

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_BODY_MAX 65536

typedef struct {
    FILE *log;
    pthread_mutex_t lock;
    uint64_t orders;
} receiver_t;

typedef struct {
    char *body;
    size_t len;
    bool too_big;
} upload_t;

/* ---- private ---- */

//  The string value of "field" in a flat JSON body, into buf; "-" if none.
static void
s_field (const char *body, const char *field, char *buf, size_t cap)
{
    char pattern [64];
    snprintf (pattern, sizeof pattern, "\"%s\"", field);
    const char *at = strstr (body, pattern);
    snprintf (buf, cap, "-");
    if (!at)
        return;
    at += strlen (pattern);
    while (*at == ' ' || *at == ':')
        at++;
    if (*at != '"')
        return;
    size_t n = strcspn (++at, "\"");
    if (n > 0 && n < cap) {
        memcpy (buf, at, n);
        buf [n] = 0;
    }
}

static enum MHD_Result
s_reply (struct MHD_Connection *connection, unsigned status, const char *json)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (strlen (json), (void *) json,
                                                                     MHD_RESPMEM_MUST_COPY);
    if (!response)
        return MHD_NO;
    MHD_add_response_header (response, "Content-Type", "application/json");
    enum MHD_Result rc = MHD_queue_response (connection, status, response);
    MHD_destroy_response (response);
    return rc;
}

static enum MHD_Result
s_handle (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void) version;
    receiver_t *self = cls;
    if (strcmp (method, "POST") != 0) {
        //  GET /stats: orders received so far (bench/run waits on it).
        char stats [64];
        pthread_mutex_lock (&self->lock);
        snprintf (stats, sizeof stats, "{\"received\":%llu}", (unsigned long long) self->orders);
        pthread_mutex_unlock (&self->lock);
        return s_reply (connection, MHD_HTTP_OK, strcmp (url, "/stats") == 0 ? stats
                                                 : "{\"status\":\"ok\"}");
    }
    upload_t *upload = *con_cls;
    if (!upload) {
        upload = calloc (1, sizeof *upload);
        if (!upload)
            return MHD_NO;
        *con_cls = upload;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (upload->len + *upload_data_size >= S_BODY_MAX)
            upload->too_big = true;
        else {
            char *grown = realloc (upload->body, upload->len + *upload_data_size + 1);
            if (!grown)
                return MHD_NO;
            upload->body = grown;
            memcpy (upload->body + upload->len, upload_data, *upload_data_size);
            upload->len += *upload_data_size;
            upload->body [upload->len] = 0;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    struct timespec mono, wall;
    clock_gettime (CLOCK_MONOTONIC, &mono);
    clock_gettime (CLOCK_REALTIME, &wall);
    if (upload->too_big || !upload->body)
        return s_reply (connection, 413, "{\"error\":\"body missing or too large\"}");
    char ticket [64];
    s_field (upload->body, "case_no", ticket, sizeof ticket);
    if (strcmp (ticket, "-") == 0)
        s_field (upload->body, "ticket_no", ticket, sizeof ticket);
    const char *key = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                   "Idempotency-Key");
    pthread_mutex_lock (&self->lock);
    uint64_t n = ++self->orders;
    if (self->log)
        fprintf (self->log, "%s %s %lld %lld\n", key ? key : "-", ticket,
                 (long long) mono.tv_sec * 1000000000 + mono.tv_nsec,
                 (long long) wall.tv_sec * 1000000 + wall.tv_nsec / 1000);
    pthread_mutex_unlock (&self->lock);
    char answer [64];
    snprintf (answer, sizeof answer, "{\"incident_id\":\"R-%llu\"}", (unsigned long long) n);
    return s_reply (connection, MHD_HTTP_CREATED, answer);
}

static void
s_completed (void *cls, struct MHD_Connection *connection, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    (void) cls; (void) connection; (void) toe;
    upload_t *upload = *con_cls;
    if (upload) {
        free (upload->body);
        free (upload);
        *con_cls = NULL;
    }
}

/* ---- main ---- */

int
main (int argc, char *argv [])
{
    const char *listen = "127.0.0.1:9101", *log_path = NULL;
    int threads = 2;
    static const struct option options [] = {
        { "listen", required_argument, NULL, 'l' }, { "log", required_argument, NULL, 'L' },
        { "threads", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
            case 'l': listen = optarg; break;
            case 'L': log_path = optarg; break;
            case 't': threads = atoi (optarg); break;
            default:
                fprintf (opt == 'h' ? stdout : stderr,
                         "Usage: bench-dept_receiver --listen 127.0.0.1:PORT [--log FILE] "
                         "[--threads N]\nA department system that takes orders (201) and logs "
                         "their arrival: IDEMPOTENCY_KEY TICKET_ID MONOTONIC_NS WALL_US\n");
                return opt == 'h' ? 0 : 2;
        }
    }
    const char *colon = strrchr (listen, ':');
    int port = colon ? atoi (colon + 1) : 0;
    if (port <= 0 || port > 65535 || threads < 1 || threads > 64) {
        fprintf (stderr, "bench-dept_receiver: bad --listen or --threads\n");
        return 2;
    }
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    char host [64];
    snprintf (host, sizeof host, "%.*s", (int) (colon - listen), listen);
    if (inet_pton (AF_INET, strcmp (host, "localhost") == 0 ? "127.0.0.1" : host,
                   &addr.sin_addr) != 1) {
        fprintf (stderr, "bench-dept_receiver: --listen needs an IPv4 address\n");
        return 2;
    }
    receiver_t self = { .log = NULL };
    pthread_mutex_init (&self.lock, NULL);
    if (log_path && !(self.log = fopen (log_path, "w"))) {
        fprintf (stderr, "bench-dept_receiver: cannot write %s\n", log_path);
        return 1;
    }
    //  Signals are taken by sigwait in this thread, not by the pool's.
    sigset_t stop;
    sigemptyset (&stop);
    sigaddset (&stop, SIGTERM);
    sigaddset (&stop, SIGINT);
    pthread_sigmask (SIG_BLOCK, &stop, NULL);
    signal (SIGPIPE, SIG_IGN);
    struct MHD_Daemon *daemon = MHD_start_daemon (
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, s_handle, &self,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned) threads,
        MHD_OPTION_NOTIFY_COMPLETED, s_completed, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    if (!daemon) {
        fprintf (stderr, "bench-dept_receiver: cannot listen on %s\n", listen);
        if (self.log)
            fclose (self.log);
        return 1;
    }
    fprintf (stderr, "{\"msg\":\"ready\",\"service\":\"bench-dept_receiver\",\"listen\":\"%s\"}\n",
             listen);
    int sig = 0;
    sigwait (&stop, &sig);
    MHD_stop_daemon (daemon);
    fprintf (stderr, "bench-dept_receiver: %llu orders\n", (unsigned long long) self.orders);
    int rc = 0;
    if (self.log && fclose (self.log)) {
        fprintf (stderr, "bench-dept_receiver: cannot write %s\n", log_path);
        rc = 1;
    }
    pthread_mutex_destroy (&self.lock);
    return rc;
}
