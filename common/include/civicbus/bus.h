/*  bus.h — ZeroMQ sockets with their options set on purpose, and sending and
    receiving one Envelope per message.

    ZeroMQ is the doorbell, never the truth (DESIGN.md §1): every message here
    may be lost, so the options favour not blocking over not dropping:
    - PUSH (intake -> dispatcher, dispatcher -> notifier): ZMQ_IMMEDIATE, so
      messages queue only to peers that are really connected (a standby
      dispatcher that has not bound yet gets nothing); a send that would block
      is dropped and counted (the receiver's sweep finds the work).
    - ROUTER (dispatcher <-> adapters): ZMQ_ROUTER_MANDATORY with a short send
      timeout, so a message to a departed adapter fails loudly instead of
      vanishing; the dispatcher then tries another adapter.
    - linger is short everywhere: a stopping service must not hang on a peer.
    - ZMQ_MAXMSGSIZE on receivers bounds what a peer can make us allocate. */

#ifndef CIVICBUS_BUS_H
#define CIVICBUS_BUS_H

#include <czmq.h>
#include "civicbus/codec.h"

//  Sockets. `endpoints` is a comma-separated list; PUSH/DEALER/SUB connect
//  to each, PULL/ROUTER/PUB bind the first. NULL on failure, with a log line
//  that names the endpoint.
zsock_t *cb_bus_push_new (const char *endpoints);
zsock_t *cb_bus_pull_new (const char *endpoint);
zsock_t *cb_bus_router_new (const char *endpoint);
zsock_t *cb_bus_dealer_new (const char *endpoints, const char *identity);
zsock_t *cb_bus_pub_new (const char *endpoint);
zsock_t *cb_bus_sub_new (const char *endpoints, const char *prefix);

//  Applies the options above to a socket made elsewhere (for example before
//  CURVE keys are set on it and before bind or connect).
void cb_bus_set_defaults (zsock_t *sock);

//  Sends one Envelope (with a leading identity frame when `to` is not NULL,
//  for ROUTER). Never blocks longer than the socket's send timeout; returns
//  0, or -1 when it could not be sent (full, no peer, unknown identity).
int cb_bus_send (zsock_t *sock, zframe_t *to, Civicbus__V1__EnvelopeType type,
                 const char *trace_id, const ProtobufCMessage *payload);

//  Receives one Envelope. For ROUTER sockets *from receives the sender's
//  identity frame (caller destroys it); pass NULL otherwise. Returns NULL
//  with `err` filled for a frame that does not decode (the bad frame is
//  consumed and dropped) or when interrupted.
Civicbus__V1__Envelope *cb_bus_recv (zsock_t *sock, zframe_t **from, cb_error_t *err);

#endif
