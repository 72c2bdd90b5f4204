/*  codec.c — Envelope encode and decode with a size limit (see codec.h).

    protobuf-c checks the wire format but not what the bytes mean: an open
    proto3 enum accepts any number, and a string field accepts any bytes. So
    after decoding we check the type against the table below and the trace
    id for length and UTF-8 (it goes into JSON logs, and jansson refuses
    invalid UTF-8). Payload strings are the receiving module's business.
    Unknown fields (from a newer sender) are kept, except those with
    impossible field numbers (see s_has_bad_field_number). */

#include "civicbus/codec.h"
#include "civicbus/mask.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

//  Payload descriptor per EnvelopeType value; index = enum value. Read-only.
static const ProtobufCMessageDescriptor *const s_payload_descriptors [] = {
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_UNSPECIFIED]      = NULL,
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DOORBELL]         = &civicbus__v1__doorbell__descriptor,
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DISPATCH_ORDER]   = &civicbus__v1__dispatch_order__descriptor,
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DEPARTMENT_REPLY] = &civicbus__v1__department_reply__descriptor,
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ACK]              = &civicbus__v1__ack__descriptor,
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_NACK]             = &civicbus__v1__nack__descriptor,
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ADAPTER_HELLO]    = &civicbus__v1__adapter_hello__descriptor,
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_HEARTBEAT]        = &civicbus__v1__heartbeat__descriptor,
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_NOTIFICATION]     = &civicbus__v1__notification__descriptor,
    [CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_TICKET_EVENT]     = &civicbus__v1__ticket_event__descriptor,
};
#define S_TYPE_COUNT (sizeof s_payload_descriptors / sizeof s_payload_descriptors [0])

static const char *const s_type_names [] = {
    "unspecified", "doorbell", "dispatch_order", "department_reply", "ack",
    "nack", "adapter_hello", "heartbeat", "notification", "ticket_event",
};
_Static_assert (sizeof s_type_names / sizeof s_type_names [0] == S_TYPE_COUNT,
                "one name per envelope type");

/* ---- private ---- */

//  Field numbers are 1 .. 2^29 - 1 (protobuf encoding spec).
#define S_FIELD_NUMBER_MAX ((1u << 29) - 1)

//  True when `msg` or a message inside it carries an unknown field with an
//  impossible number: 0, or above S_FIELD_NUMBER_MAX. No valid encoder
//  writes one; protobuf-c accepts 0 only in a non-canonical (multi-byte)
//  tag, then re-encodes it in a form it refuses: a message that decodes
//  but cannot be forwarded. Nesting in civicbus.proto is shallow and not
//  recursive, so the recursion is bounded (Envelope -> DispatchOrder ->
//  Ticket -> Location). O(fields).
static bool
s_has_bad_field_number (const ProtobufCMessage *msg)
{
    for (unsigned i = 0; i < msg->n_unknown_fields; i++)
        if (msg->unknown_fields [i].tag == 0
        ||  msg->unknown_fields [i].tag > S_FIELD_NUMBER_MAX)
            return true;
    const ProtobufCMessageDescriptor *descriptor = msg->descriptor;
    for (unsigned i = 0; i < descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *field = &descriptor->fields [i];
        if (field->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *) msg;
        if (field->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t count = *(const size_t *) (base + field->quantifier_offset);
            ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *) (base + field->offset);
            for (size_t j = 0; j < count; j++)
                if (items [j] && s_has_bad_field_number (items [j]))
                    return true;
        }
        else {
            const ProtobufCMessage *child = *(ProtobufCMessage *const *) (base + field->offset);
            if (child && s_has_bad_field_number (child))
                return true;
        }
    }
    return false;
}

static bool
s_trace_id_ok (const char *trace_id)
{
    return trace_id
        && strlen (trace_id) <= CB_TRACE_ID_MAX
        && cb_utf8_valid (trace_id, strlen (trace_id));
}

/* ---- public ---- */

const ProtobufCMessageDescriptor *
envelope_descriptor_for (Civicbus__V1__EnvelopeType type)
{
    if ((unsigned) type >= S_TYPE_COUNT)
        return NULL;
    return s_payload_descriptors [type];
}

const char *
envelope_type_name (Civicbus__V1__EnvelopeType type)
{
    if ((unsigned) type >= S_TYPE_COUNT)
        return "unknown";
    return s_type_names [type];
}

int
envelope_pack (Civicbus__V1__EnvelopeType type, const char *trace_id,
               int64_t sent_ms, const ProtobufCMessage *payload,
               uint8_t **buf, size_t *len)
{
    if (!buf || !len)
        return -1;
    *buf = NULL;
    *len = 0;
    const ProtobufCMessageDescriptor *descriptor = envelope_descriptor_for (type);
    if (!descriptor)
        return -1;
    if (payload && payload->descriptor != descriptor)
        return -1;              //  a doorbell frame must carry a Doorbell
    if (!trace_id)
        trace_id = "";
    if (!s_trace_id_ok (trace_id))
        return -1;

    //  The payload is encoded first, into its own buffer, because the
    //  Envelope holds it as bytes. Check its size before allocating so an
    //  oversized message costs no memory.
    size_t payload_len = payload ? protobuf_c_message_get_packed_size (payload) : 0;
    if (payload_len > CB_ENVELOPE_MAX)
        return -1;
    uint8_t *payload_buf = NULL;
    if (payload_len > 0) {
        payload_buf = malloc (payload_len);
        if (!payload_buf)
            return -1;
        protobuf_c_message_pack (payload, payload_buf);
    }
    Civicbus__V1__Envelope env = CIVICBUS__V1__ENVELOPE__INIT;
    env.type = type;
    env.trace_id = (char *) trace_id;
    env.sent_ms = sent_ms;
    env.payload.data = payload_buf;
    env.payload.len = payload_len;

    int rc = -1;
    size_t frame_len = civicbus__v1__envelope__get_packed_size (&env);
    if (frame_len <= CB_ENVELOPE_MAX) {
        //  An all-default Envelope packs to zero bytes; malloc (0) may
        //  return NULL, so always ask for at least one byte.
        *buf = malloc (frame_len ? frame_len : 1);
        if (*buf) {
            *len = civicbus__v1__envelope__pack (&env, *buf);
            rc = 0;
        }
    }
    free (payload_buf);
    return rc;
}

Civicbus__V1__Envelope *
envelope_unpack (const uint8_t *buf, size_t len, size_t max, cb_error_t *err)
{
    if (len > max) {
        cb_error_set (err, "too_large", NULL,
                      "envelope of %zu bytes exceeds the limit of %zu", len, max);
        return NULL;
    }
    if (!buf && len > 0) {
        cb_error_set (err, "malformed", NULL, "no buffer");
        return NULL;
    }
    //  protobuf-c returns NULL both for bad bytes and for a failed
    //  allocation; frames are at most `max` bytes, so treat it as malformed.
    static const uint8_t s_empty [1] = { 0 };
    Civicbus__V1__Envelope *env =
        civicbus__v1__envelope__unpack (NULL, len, buf ? buf : s_empty);
    if (!env) {
        cb_error_set (err, "malformed", NULL, "not a valid Envelope encoding");
        return NULL;
    }
    if (s_has_bad_field_number (&env->base)) {
        cb_error_set (err, "malformed", NULL, "envelope has an impossible field number");
        civicbus__v1__envelope__free_unpacked (env, NULL);
        return NULL;
    }
    if (!envelope_descriptor_for (env->type)) {
        cb_error_set (err, "unknown_type", "type",
                      "envelope type %d is not known", (int) env->type);
        civicbus__v1__envelope__free_unpacked (env, NULL);
        return NULL;
    }
    if (!s_trace_id_ok (env->trace_id)) {
        cb_error_set (err, "malformed", "trace_id",
                      "trace id is longer than %d bytes or not valid UTF-8",
                      CB_TRACE_ID_MAX);
        civicbus__v1__envelope__free_unpacked (env, NULL);
        return NULL;
    }
    return env;
}

void *
envelope_payload_unpack (const Civicbus__V1__Envelope *env,
                         Civicbus__V1__EnvelopeType expected, cb_error_t *err)
{
    const ProtobufCMessageDescriptor *descriptor = envelope_descriptor_for (expected);
    if (!env || !descriptor || env->type != expected) {
        cb_error_set (err, "wrong_type", "type",
                      "expected a %s envelope, got %s",
                      envelope_type_name (expected),
                      env ? envelope_type_name (env->type) : "none");
        return NULL;
    }
    static const uint8_t s_empty [1] = { 0 };
    ProtobufCMessage *msg = protobuf_c_message_unpack (
        descriptor, NULL, env->payload.len,
        env->payload.data ? env->payload.data : s_empty);
    if (!msg || s_has_bad_field_number (msg)) {
        cb_error_set (err, "malformed", "payload",
                      "payload is not a valid %s", descriptor->short_name);
        if (msg)
            protobuf_c_message_free_unpacked (msg, NULL);
        return NULL;
    }
    return msg;
}
