/*  zmq_pushpull.c — the ZeroMQ ceiling: bare PUSH/PULL over TCP loopback,
    the intake's doorbell path without anything around it. The message is a
    real Envelope carrying a Doorbell for a ticket id (packed once with
    protobuf-c, the same bytes every time), so its size is the doorbell's.
    A sender thread PUSHes --count messages as fast as it can; the receiver
    (main thread) PULLs them and times first to last.

    Usage: bench-zmq_pushpull [--count N] [--size BYTES] [--endpoint tcp://127.0.0.1:PORT]
           [--json FILE]
    --size pads the payload to that many bytes instead (e.g. a DispatchOrder's). */

#include "civicbus/v1/civicbus.pb-c.h"

#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

typedef struct {
    void *context;
    const char *endpoint;
    long count;
    uint8_t *message;
    size_t size;
    int rc;
} sender_t;

/* ---- private ---- */

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *
s_sender (void *arg)
{
    sender_t *sender = arg;
    void *push = zmq_socket (sender->context, ZMQ_PUSH);
    int hwm = 100000;
    zmq_setsockopt (push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (!push || zmq_connect (push, sender->endpoint)) {
        sender->rc = -1;
        zmq_close (push);
        return NULL;
    }
    for (long i = 0; i < sender->count; i++)
        if (zmq_send (push, sender->message, sender->size, 0) < 0) {
            sender->rc = -1;
            break;
        }
    int linger = 5000;
    zmq_setsockopt (push, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close (push);
    return NULL;
}

/* ---- main ---- */

int
main (int argc, char *argv [])
{
    long count = 1000000;
    long size = 0;
    const char *endpoint = "tcp://127.0.0.1:5599";
    const char *json_path = NULL;
    static const struct option options [] = {
        { "count", required_argument, NULL, 'n' }, { "size", required_argument, NULL, 's' },
        { "endpoint", required_argument, NULL, 'e' }, { "json", required_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
            case 'n': count = atol (optarg); break;
            case 's': size = atol (optarg); break;
            case 'e': endpoint = optarg; break;
            case 'j': json_path = optarg; break;
            default:
                fprintf (opt == 'h' ? stdout : stderr,
                         "Usage: bench-zmq_pushpull [--count N] [--size BYTES] "
                         "[--endpoint tcp://127.0.0.1:PORT] [--json FILE]\n"
                         "Bare ZeroMQ PUSH/PULL rate with doorbell-sized Envelopes.\n");
                return opt == 'h' ? 0 : 2;
        }
    }
    if (count < 1 || size < 0 || size > 1 << 20)
        return 2;

    //  The doorbell the intake sends for a new ticket, in its Envelope.
    const char *id = "320105-20260315-000004711";
    Civicbus__V1__Doorbell doorbell = CIVICBUS__V1__DOORBELL__INIT;
    doorbell.ticket_id = (char *) id;
    doorbell.reason = (char *) "received";
    uint8_t inner [256];
    size_t inner_len = civicbus__v1__doorbell__pack (&doorbell, inner);
    uint8_t *padded = NULL;
    Civicbus__V1__Envelope envelope = CIVICBUS__V1__ENVELOPE__INIT;
    envelope.type = CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DOORBELL;
    envelope.trace_id = (char *) id;
    envelope.sent_ms = 1773540000000;
    envelope.payload.data = inner;
    envelope.payload.len = inner_len;
    if (size > 0) {
        padded = calloc (1, (size_t) size);
        if (!padded)
            return 1;
        envelope.payload.data = padded;
        envelope.payload.len = (size_t) size;
    }
    size_t message_len = civicbus__v1__envelope__get_packed_size (&envelope);
    uint8_t *message = malloc (message_len);
    if (!message)
        return 1;
    civicbus__v1__envelope__pack (&envelope, message);

    void *context = zmq_ctx_new ();
    void *pull = zmq_socket (context, ZMQ_PULL);
    int hwm = 100000;
    zmq_setsockopt (pull, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind (pull, endpoint)) {
        fprintf (stderr, "bench-zmq_pushpull: cannot bind %s: %s\n", endpoint,
                 zmq_strerror (zmq_errno ()));
        return 1;
    }
    sender_t sender = { context, endpoint, count, message, message_len, 0 };
    pthread_t thread;
    pthread_create (&thread, NULL, s_sender, &sender);
    uint8_t buf [1 << 16];
    int64_t first = 0, last = 0;
    long received = 0;
    int timeout_ms = 5000;
    zmq_setsockopt (pull, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    while (received < count) {
        int n = zmq_recv (pull, buf, sizeof buf, 0);
        if (n < 0)
            break;
        if (received == 0)
            first = s_now_ns ();
        received++;
    }
    last = s_now_ns ();
    pthread_join (thread, NULL);
    double seconds = (last - first) / 1e9;
    double rate = received > 1 && seconds > 0 ? (received - 1) / seconds : 0;
    printf ("zmq_pushpull: %ld of %ld messages of %zu bytes over %s: %.0f msg/s (%.1f MB/s)\n",
            received, count, message_len, endpoint, rate, rate * (double) message_len / 1e6);
    if (json_path) {
        FILE *out = fopen (json_path, "w");
        if (out) {
            fprintf (out, "{\"count\":%ld,\"received\":%ld,\"message_bytes\":%zu,"
                     "\"rate\":%.1f}\n", count, received, message_len, rate);
            fclose (out);
        }
    }
    zmq_close (pull);
    zmq_ctx_term (context);
    free (message);
    free (padded);
    return received == count && sender.rc == 0 ? 0 : 1;
}
