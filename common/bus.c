/*  bus.c — ZeroMQ sockets and Envelope frames (see bus.h for the choices). */

#include "civicbus/bus.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"

#include <string.h>

/* ---- private ---- */

//  Calls bind or connect on each comma-separated endpoint.
static int
s_attach (zsock_t *sock, const char *endpoints, bool bind)
{
    char *copy = strdup (endpoints ? endpoints : "");
    if (!copy)
        return -1;
    int rc = 0, count = 0;
    char *save = NULL;
    for (char *ep = strtok_r (copy, ",", &save); ep; ep = strtok_r (NULL, ",", &save)) {
        while (*ep == ' ')
            ep++;
        if (!*ep)
            continue;
        int r = bind ? zsock_bind (sock, "%s", ep) : zsock_connect (sock, "%s", ep);
        if (r < 0) {
            cb_log (CB_LOG_ERROR, bind ? "cannot bind" : "cannot connect", "endpoint", ep,
                    "error", zmq_strerror (zmq_errno ()), NULL);
            rc = -1;
        }
        count++;
        if (bind)
            break;
    }
    free (copy);
    return count ? rc : -1;
}

static zsock_t *
s_new (int type, const char *endpoints, bool bind)
{
    zsock_t *sock = zsock_new (type);
    if (!sock)
        return NULL;
    cb_bus_set_defaults (sock);
    if (type == ZMQ_PUSH)
        zsock_set_immediate (sock, 1);
    if (type == ZMQ_ROUTER) {
        zsock_set_router_mandatory (sock, 1);
        zsock_set_sndtimeo (sock, 100);
    }
    if (s_attach (sock, endpoints, bind)) {
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

/* ---- public ---- */

void
cb_bus_set_defaults (zsock_t *sock)
{
    zsock_set_linger (sock, 200);
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_maxmsgsize (sock, CB_ENVELOPE_MAX + 4096);
    zsock_set_sndtimeo (sock, 0);
}

zsock_t *
cb_bus_push_new (const char *endpoints)
{
    return s_new (ZMQ_PUSH, endpoints, false);
}

zsock_t *
cb_bus_pull_new (const char *endpoint)
{
    return s_new (ZMQ_PULL, endpoint, true);
}

zsock_t *
cb_bus_router_new (const char *endpoint)
{
    return s_new (ZMQ_ROUTER, endpoint, true);
}

zsock_t *
cb_bus_dealer_new (const char *endpoints, const char *identity)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    cb_bus_set_defaults (sock);
    zsock_set_immediate (sock, 1);
    if (identity)
        zsock_set_identity (sock, identity);
    if (s_attach (sock, endpoints, false)) {
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

zsock_t *
cb_bus_pub_new (const char *endpoint)
{
    return s_new (ZMQ_PUB, endpoint, true);
}

zsock_t *
cb_bus_sub_new (const char *endpoints, const char *prefix)
{
    zsock_t *sock = s_new (ZMQ_SUB, endpoints, false);
    if (sock)
        zsock_set_subscribe (sock, prefix ? prefix : "");
    return sock;
}

int
cb_bus_send (zsock_t *sock, zframe_t *to, Civicbus__V1__EnvelopeType type,
             const char *trace_id, const ProtobufCMessage *payload)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (envelope_pack (type, trace_id, cb_clock_now_ms (), payload, &buf, &len))
        return -1;
    void *handle = zsock_resolve (sock);
    int rc = 0;
    if (to && zmq_send (handle, zframe_data (to), zframe_size (to), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        rc = -1;
    if (rc == 0 && zmq_send (handle, buf, len, ZMQ_DONTWAIT) < 0)
        rc = -1;
    free (buf);
    return rc;
}

Civicbus__V1__Envelope *
cb_bus_recv (zsock_t *sock, zframe_t **from, cb_error_t *err)
{
    zmsg_t *msg = zmsg_recv (sock);
    if (!msg) {
        cb_error_set (err, "interrupted", NULL, "receive interrupted");
        return NULL;
    }
    if (from)
        *from = zmsg_pop (msg);
    //  DEALER peers may send an empty delimiter frame: skip it.
    zframe_t *frame = zmsg_pop (msg);
    if (frame && zframe_size (frame) == 0 && zmsg_size (msg) > 0) {
        zframe_destroy (&frame);
        frame = zmsg_pop (msg);
    }
    Civicbus__V1__Envelope *env = NULL;
    if (!frame || zmsg_size (msg) != 0)
        cb_error_set (err, "malformed", NULL, "expected one envelope frame");
    else
        env = envelope_unpack (zframe_data (frame), zframe_size (frame), CB_ENVELOPE_MAX, err);
    zframe_destroy (&frame);
    zmsg_destroy (&msg);
    if (!env && from)
        zframe_destroy (from);
    return env;
}
