/*  codec.h — the Envelope: the one frame every civicbus ZeroMQ message is.

    An Envelope (civicbus.proto) carries a type, a trace id, the send time and
    the encoded payload message that the type names. Receivers decode in two
    steps: envelope_unpack() checks the frame (size limit, well-formed, known
    type, sane trace id), then envelope_payload_unpack() decodes the payload
    as the message the receiver expects, refusing anything else. Both treat
    their input as hostile: bad bytes give an error value, never a crash.

    Every message returned is allocated by protobuf-c's default allocator and
    is freed with protobuf_c_message_free_unpacked (msg, NULL). */

#ifndef CIVICBUS_CODEC_H
#define CIVICBUS_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include "civicbus/error.h"
#include "civicbus/v1/civicbus.pb-c.h"

//  Default size limit of one encoded Envelope (header fields and payload).
#define CB_ENVELOPE_MAX (1024 * 1024)
//  Longest trace id accepted, in bytes.
#define CB_TRACE_ID_MAX 128

//  Encodes an Envelope of `type` around `payload` into a fresh malloc'd
//  buffer (*buf, *len; the caller frees it with free()). `trace_id` may be
//  NULL (empty); `payload` may be NULL (an empty payload). Returns 0, or -1
//  when the type is unknown, the payload is not the message the type names,
//  the trace id is longer than CB_TRACE_ID_MAX or not valid UTF-8, the
//  whole frame would exceed CB_ENVELOPE_MAX, or memory ran out; *buf is
//  NULL then.
int envelope_pack (Civicbus__V1__EnvelopeType type, const char *trace_id,
                   int64_t sent_ms, const ProtobufCMessage *payload,
                   uint8_t **buf, size_t *len);

//  Decodes an Envelope from `buf` (`len` bytes), refusing frames over `max`
//  bytes (pass CB_ENVELOPE_MAX unless a socket has its own limit). Returns
//  the Envelope, or NULL with err->code set to
//      "too_large"     len > max
//      "malformed"     not a valid Envelope encoding (or no memory to decode
//                      it: protobuf-c cannot tell), an unknown field with an
//                      impossible number (0 or over 2^29-1), or a trace id that is
//                      not valid UTF-8 or is longer than CB_TRACE_ID_MAX
//      "unknown_type"  type is ENVELOPE_UNSPECIFIED or not in civicbus.proto
//  The payload is not decoded yet (see envelope_payload_unpack).
Civicbus__V1__Envelope *envelope_unpack (const uint8_t *buf, size_t len,
                                         size_t max, cb_error_t *err);

//  Decodes env's payload as the message that `expected` names (DOORBELL ->
//  Doorbell, DISPATCH_ORDER -> DispatchOrder, DEPARTMENT_REPLY ->
//  DepartmentReply, ACK -> Ack, NACK -> Nack, ADAPTER_HELLO -> AdapterHello,
//  HEARTBEAT -> Heartbeat, NOTIFICATION -> Notification, TICKET_EVENT ->
//  TicketEvent) and returns it (cast it to that type), or NULL with
//  err->code "wrong_type" when env->type is not `expected` (or `expected`
//  is unknown), "malformed" when the payload does not decode or holds a
//  field with an impossible number. Unknown fields with valid numbers (a
//  newer sender) are kept and travel on when re-encoded. The caller
//  frees the result with protobuf_c_message_free_unpacked (msg, NULL).
void *envelope_payload_unpack (const Civicbus__V1__Envelope *env,
                               Civicbus__V1__EnvelopeType expected,
                               cb_error_t *err);

//  The payload message descriptor of `type`, or NULL for ENVELOPE_UNSPECIFIED
//  and values not in civicbus.proto.
const ProtobufCMessageDescriptor *
    envelope_descriptor_for (Civicbus__V1__EnvelopeType type);

//  "doorbell", "dispatch_order", ... for logs; "unknown" for anything else.
const char *envelope_type_name (Civicbus__V1__EnvelopeType type);

#endif
