/*  bare_httpd.c — the HTTP ceiling: a libmicrohttpd server started the way
    common/httpd.c starts the intake's (internal polling thread, epoll, a
    thread pool, SO_REUSEPORT), which reads each request body to its end and
    answers 202 with a short JSON body, doing nothing else. Driven by
    bench-loadgen with the intake's own bodies, its rate is what this machine
    can do over HTTP with libmicrohttpd; the intake's rate is reported as a
    share of it.

    Usage: bench-bare_httpd [--listen HOST:PORT] [--threads N]
    Runs until SIGTERM or SIGINT; prints "ready" on stdout once listening. */

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MAX_BODY 65536

static const char s_answer [] = "{\"status\":\"accepted\"}";

typedef struct {
    size_t len;
    bool too_large;
} s_request_t;

/* ---- private ---- */

static enum MHD_Result
s_access (void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size,
          void **con_cls)
{
    (void) cls; (void) url; (void) method; (void) version;
    s_request_t *req = *con_cls;
    if (!req) {
        req = calloc (1, sizeof *req);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size) {
        //  Touch the bytes as a parser would; the count keeps them "used".
        req->len += *upload_data_size;
        req->too_large |= req->len > S_MAX_BODY;
        (void) upload_data;
        *upload_data_size = 0;
        return MHD_YES;
    }
    struct MHD_Response *response = MHD_create_response_from_buffer (
        sizeof s_answer - 1, (void *) s_answer, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result rc = MHD_queue_response (conn, req->too_large ? 413 : 202, response);
    MHD_destroy_response (response);
    return rc;
}

static void
s_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    (void) cls; (void) conn; (void) toe;
    free (*con_cls);
    *con_cls = NULL;
}

/* ---- main ---- */

int
main (int argc, char *argv [])
{
    const char *listen = "127.0.0.1:8180";
    int threads = 4;
    static const struct option options [] = {
        { "listen", required_argument, NULL, 'l' }, { "threads", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'l')
            listen = optarg;
        else
        if (opt == 't')
            threads = atoi (optarg);
        else {
            fprintf (opt == 'h' ? stdout : stderr,
                     "Usage: bench-bare_httpd [--listen HOST:PORT] [--threads N]\n"
                     "A libmicrohttpd server configured like the intake's that reads each\n"
                     "body and answers 202: the HTTP ceiling. Stops on SIGTERM/SIGINT.\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    char host [64];
    const char *colon = strrchr (listen, ':');
    if (!colon || (size_t) (colon - listen) >= sizeof host || threads < 1 || threads > 256) {
        fprintf (stderr, "bench-bare_httpd: bad --listen or --threads\n");
        return 2;
    }
    memcpy (host, listen, (size_t) (colon - listen));
    host [colon - listen] = 0;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) atoi (colon + 1)) };
    if (inet_pton (AF_INET, host, &sa.sin_addr) != 1) {
        fprintf (stderr, "bench-bare_httpd: --listen needs an IPv4 address\n");
        return 2;
    }
    sigset_t stop;
    sigemptyset (&stop);
    sigaddset (&stop, SIGTERM);
    sigaddset (&stop, SIGINT);
    pthread_sigmask (SIG_BLOCK, &stop, NULL);     //  the daemon's threads inherit the mask
    signal (SIGPIPE, SIG_IGN);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC;
    struct MHD_Daemon *daemon = MHD_start_daemon (
        flags, 0, NULL, NULL, s_access, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
        MHD_OPTION_CONNECTION_LIMIT, 4096,
        MHD_OPTION_CONNECTION_TIMEOUT, 30,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 65536,
        MHD_OPTION_NOTIFY_COMPLETED, s_completed, NULL,
        threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads,
        MHD_OPTION_END);
    if (!daemon) {
        fprintf (stderr, "bench-bare_httpd: cannot listen on %s\n", listen);
        return 1;
    }
    printf ("ready %s threads %d\n", listen, threads);
    fflush (stdout);
    int signo = 0;
    sigwait (&stop, &signo);
    MHD_stop_daemon (daemon);
    return 0;
}
