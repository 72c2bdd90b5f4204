/*  test_httpd.c — the HTTP server's deferred answers (httpd_defer and
    httpd_resume) over real sockets on 127.0.0.1: a deferred request does
    not hold its thread (a one-thread server answers others meanwhile), is
    answered when another thread resumes it, and may be resumed before its
    handler has returned; httpd_stop waits for a deferred request. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <cmocka.h>

#include "civicbus/httpd.h"
#include "test_redis.h"

//  The requests the server holds, for the test thread to resume.
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    httpd_request_t *held;
    int answered;
} s_held_t;

//  A held-request slot, empty, its lock and condition statically initialised.
#define S_HELD_INIT { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER }

/* ---- handlers ---- */

static int
s_answer_later (httpd_request_t *req, void *arg)
{
    s_held_t *held = arg;
    pthread_mutex_lock (&held->lock);
    held->answered++;
    pthread_mutex_unlock (&held->lock);
    size_t len = 0;
    const char *body = httpd_request_body (req, &len);
    //  The body outlives the handler call: it is still here.
    return httpd_reply_json (req, 201, json_pack ("{s:s, s:s%}", "answered", "later",
                                                  "body", body, len));
}

static int
s_hold (httpd_request_t *req, void *arg)
{
    s_held_t *held = arg;
    assert_int_equal (httpd_defer (req, s_answer_later, held), 0);
    pthread_mutex_lock (&held->lock);
    held->held = req;
    pthread_cond_broadcast (&held->cond);
    pthread_mutex_unlock (&held->lock);
    return 0;
}

static int
s_resume_at_once (httpd_request_t *req, void *arg)
{
    assert_int_equal (httpd_defer (req, s_answer_later, arg), 0);
    httpd_resume (req);             //  ready before the handler returns
    return 0;
}

static int
s_other (httpd_request_t *req, void *arg)
{
    (void) arg;
    return httpd_reply_json (req, 200, json_pack ("{s:b}", "ok", 1));
}

/* ---- a minimal HTTP/1.1 client ---- */

static int
s_connect (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    struct timeval tv = { 10, 0 };
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert_int_equal (connect (fd, (struct sockaddr *) &sa, sizeof sa), 0);
    return fd;
}

static void
s_send (int fd, const char *method, const char *path, const char *body)
{
    char request [512];
    int n = body
        ? snprintf (request, sizeof request, "%s %s HTTP/1.1\r\nHost: t\r\n"
                    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                    method, path, strlen (body), body)
        : snprintf (request, sizeof request, "%s %s HTTP/1.1\r\nHost: t\r\n\r\n", method, path);
    assert_int_equal (send (fd, request, (size_t) n, 0), n);
}

//  Reads one answer: its status; the body into `body`.
static int
s_receive (int fd, char *body, size_t cap)
{
    char buf [4096] = "";
    size_t used = 0;
    char *end = NULL;
    while (!(end = strstr (buf, "\r\n\r\n"))) {
        ssize_t n = recv (fd, buf + used, sizeof buf - 1 - used, 0);
        assert_true (n > 0);
        used += (size_t) n;
        buf [used] = 0;
    }
    const char *length = strcasestr (buf, "Content-Length:");
    assert_non_null (length);
    size_t want = (size_t) atoi (length + 15);
    size_t header = (size_t) (end + 4 - buf);
    while (used < header + want) {
        ssize_t n = recv (fd, buf + used, sizeof buf - 1 - used, 0);
        assert_true (n > 0);
        used += (size_t) n;
        buf [used] = 0;
    }
    snprintf (body, cap, "%.*s", (int) want, buf + header);
    return atoi (buf + 9);
}

static httpd_t *
s_server (s_held_t *held, int *port)
{
    *port = test_free_port ();
    char listen [32];
    snprintf (listen, sizeof listen, "127.0.0.1:%d", *port);
    httpd_options_t options = {
        .listen = listen, .threads = 1, .conn_limit = 16, .conn_timeout_s = 10,
        .conn_memory = 32768, .max_body = 4096, .metrics_prefix = "test",
    };
    httpd_t *httpd = httpd_new (&options);
    assert_non_null (httpd);
    assert_int_equal (httpd_route (httpd, &(httpd_route_t) { "POST", "/held", "held", 0,
                                   HTTPD_BODY_JSON, s_hold, held }), 0);
    assert_int_equal (httpd_route (httpd, &(httpd_route_t) { "POST", "/now", "now", 0,
                                   HTTPD_BODY_JSON, s_resume_at_once, held }), 0);
    assert_int_equal (httpd_route (httpd, &(httpd_route_t) { "GET", "/other", "other", 0, 0,
                                   s_other, NULL }), 0);
    assert_int_equal (httpd_start (httpd), 0);
    return httpd;
}

static httpd_request_t *
s_wait_held (s_held_t *held)
{
    pthread_mutex_lock (&held->lock);
    while (!held->held)
        pthread_cond_wait (&held->cond, &held->lock);
    httpd_request_t *req = held->held;
    held->held = NULL;
    pthread_mutex_unlock (&held->lock);
    return req;
}

/* ---- tests ---- */

static void
test_deferred_answer_frees_the_thread (void **state)
{
    (void) state;
    s_held_t held = S_HELD_INIT;
    int port;
    httpd_t *httpd = s_server (&held, &port);

    int a = s_connect (port);
    s_send (a, "POST", "/held", "{\"n\":1}");
    httpd_request_t *req = s_wait_held (&held);
    //  The server's only thread is free: another client is answered.
    int b = s_connect (port);
    s_send (b, "GET", "/other", NULL);
    char body [1024];
    assert_int_equal (s_receive (b, body, sizeof body), 200);
    assert_string_equal (body, "{\"ok\":true}\n");
    assert_int_equal (held.answered, 0);
    //  This thread resumes it: the answer comes.
    httpd_resume (req);
    assert_int_equal (s_receive (a, body, sizeof body), 201);
    assert_string_equal (body, "{\"answered\":\"later\",\"body\":\"{\\\"n\\\":1}\"}\n");
    assert_int_equal (held.answered, 1);

    //  Resumed before the handler returned: answered at once.
    int c = s_connect (port);
    s_send (c, "POST", "/now", "{}");
    assert_int_equal (s_receive (c, body, sizeof body), 201);
    assert_int_equal (held.answered, 2);
    close (a);
    close (b);
    close (c);
    httpd_destroy (&httpd);
}

typedef struct {
    s_held_t *held;
    httpd_request_t *req;
    int *stopped;
} s_resumer_t;

//  Resumes the held request only once httpd_stop is waiting.
static void *
s_resume_during_stop (void *arg)
{
    s_resumer_t *resumer = arg;
    pthread_mutex_lock (&resumer->held->lock);
    while (!*resumer->stopped)
        pthread_cond_wait (&resumer->held->cond, &resumer->held->lock);
    pthread_mutex_unlock (&resumer->held->lock);
    httpd_resume (resumer->req);
    return NULL;
}

static void
test_stop_waits_for_deferred (void **state)
{
    (void) state;
    s_held_t held = S_HELD_INIT;
    int port;
    httpd_t *httpd = s_server (&held, &port);
    int a = s_connect (port);
    s_send (a, "POST", "/held", "{}");
    httpd_request_t *req = s_wait_held (&held);
    int stopping = 0;
    s_resumer_t resumer = { &held, req, &stopping };
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_resume_during_stop, &resumer), 0);
    pthread_mutex_lock (&held.lock);
    stopping = 1;
    pthread_cond_broadcast (&held.cond);
    pthread_mutex_unlock (&held.lock);
    //  Grace 0: the request is unfinished, but the stop still waits until
    //  it is resumed and answered (a suspended connection cannot close).
    httpd_stop (httpd, 0);
    pthread_join (thread, NULL);
    assert_int_equal (held.answered, 1);
    close (a);
    httpd_destroy (&httpd);
}

static void
test_client_gone_while_deferred (void **state)
{
    (void) state;
    s_held_t held = S_HELD_INIT;
    int port;
    httpd_t *httpd = s_server (&held, &port);
    int a = s_connect (port);
    s_send (a, "POST", "/held", "{}");
    httpd_request_t *req = s_wait_held (&held);
    close (a);                      //  the client leaves while it waits
    httpd_resume (req);
    //  The answer ran once (its owner could free), and the stop does not
    //  wait for it forever.
    httpd_stop (httpd, 1000);
    assert_int_equal (held.answered, 1);
    httpd_destroy (&httpd);
}

static void
test_media_types (void **state)
{
    (void) state;
    const char *json = "application/json", *form = "application/x-www-form-urlencoded";
    assert_true (httpd_media_type_is ("application/json", json));
    assert_true (httpd_media_type_is (" Application/JSON ; charset=UTF-8", json));
    assert_true (httpd_media_type_is ("application/json;charset=\"utf-8\"", json));
    assert_true (httpd_media_type_is ("application/json; version=2", json));
    assert_true (httpd_media_type_is ("application/x-www-form-urlencoded; charset=utf8", form));
    assert_false (httpd_media_type_is ("application/json; charset=gbk", json));
    assert_false (httpd_media_type_is ("application/json; charset=utf-16", json));
    assert_false (httpd_media_type_is ("application/jsonx", json));
    assert_false (httpd_media_type_is ("text/plain", json));
    assert_false (httpd_media_type_is ("application/json", form));
    assert_false (httpd_media_type_is (NULL, json));
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_deferred_answer_frees_the_thread),
        cmocka_unit_test (test_stop_waits_for_deferred),
        cmocka_unit_test (test_client_gone_while_deferred),
        cmocka_unit_test (test_media_types),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
