/*  test_codec.c — the Envelope codec and the shared error value.

    Every payload type makes a round trip; then the decoder is fed what the
    network can deliver: truncated frames, oversize frames, unknown and
    mismatched types, garbage payloads, bad trace ids and random bytes.
    Each must come back as an error value with the right code, never a
    crash (AddressSanitizer and LeakSanitizer watch the rest). */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "civicbus/codec.h"
#include "civicbus/error.h"
#include "civicbus/mask.h"

#define TYPE(x) CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ ## x

/* ---- helpers ---- */

//  One sample payload per envelope type, with fields set so that a lost or
//  misplaced field shows in the re-encoded bytes. Stack storage, not freed.
typedef struct {
    Civicbus__V1__Doorbell doorbell;
    Civicbus__V1__Ticket ticket;
    Civicbus__V1__Location location;
    Civicbus__V1__DispatchOrder order;
    Civicbus__V1__DepartmentReply reply;
    char *reply_urls [2];
    Civicbus__V1__Ack ack;
    Civicbus__V1__Nack nack;
    Civicbus__V1__AdapterHello hello;
    Civicbus__V1__Heartbeat heartbeat;
    Civicbus__V1__Notification notification;
    Civicbus__V1__TicketEvent event;
    Civicbus__V1__Actor actor;
} samples_t;

static void
s_samples_init (samples_t *s)
{
    civicbus__v1__doorbell__init (&s->doorbell);
    s->doorbell.ticket_id = "310105-20260930-000042";
    s->doorbell.reason = "new";

    civicbus__v1__location__init (&s->location);
    s->location.lat = 31.2304;
    s->location.lon = 121.4737;
    s->location.has_point = 1;
    s->location.address = "南京西路 1 号";
    civicbus__v1__ticket__init (&s->ticket);
    s->ticket.id = "310105-20260930-000042";
    s->ticket.category = "urban.litter";
    s->ticket.description = "路边垃圾堆积";
    s->ticket.location = &s->location;
    s->ticket.state = CIVICBUS__V1__TICKET_STATE__DISPATCHED;
    s->ticket.version = 3;
    civicbus__v1__dispatch_order__init (&s->order);
    s->order.dispatch_id = "d-1";
    s->order.attempt = 2;
    s->order.department = "urban";
    s->order.primary = 1;
    s->order.ticket = &s->ticket;
    s->order.sign_due_ms = 1790000000000LL;

    civicbus__v1__department_reply__init (&s->reply);
    s->reply.reply_id = "r-1";
    s->reply.ticket_id = "310105-20260930-000042";
    s->reply.kind = CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE;
    s->reply.text = "已清理";
    s->reply_urls [0] = "https://img.example/1.jpg";
    s->reply_urls [1] = "https://img.example/2.jpg";
    s->reply.attachment_urls = s->reply_urls;
    s->reply.n_attachment_urls = 2;

    civicbus__v1__ack__init (&s->ack);
    s->ack.ref = "d-1";
    civicbus__v1__nack__init (&s->nack);
    s->nack.ref = "r-9";
    s->nack.code = "wrong_state";
    s->nack.reason = "ticket is closed";
    civicbus__v1__adapter_hello__init (&s->hello);
    s->hello.department = "police";
    s->hello.adapter_id = "adapter-police-1";
    s->hello.capacity = 16;
    civicbus__v1__heartbeat__init (&s->heartbeat);
    s->heartbeat.sender = "dispatcher";
    s->heartbeat.time_ms = 1790000000000LL;
    s->heartbeat.in_flight = 7;
    civicbus__v1__notification__init (&s->notification);
    s->notification.notification_id = "n-1";
    s->notification.channel = "sms";
    s->notification.body.data = (uint8_t *) "hello";
    s->notification.body.len = 5;
    civicbus__v1__actor__init (&s->actor);
    s->actor.kind = CIVICBUS__V1__ACTOR_KIND__ACTOR_OPERATOR;
    s->actor.id = "op-7";
    civicbus__v1__ticket_event__init (&s->event);
    s->event.ticket_id = "310105-20260930-000042";
    s->event.sequence = 4;
    s->event.type = "dispatch";
    s->event.actor = &s->actor;
    s->event.payload.data = (uint8_t *) "{\"department\":\"urban\"}";
    s->event.payload.len = strlen ((char *) s->event.payload.data);
}

static const ProtobufCMessage *
s_sample_for (samples_t *s, Civicbus__V1__EnvelopeType type)
{
    switch (type) {
        case TYPE (DOORBELL):         return &s->doorbell.base;
        case TYPE (DISPATCH_ORDER):   return &s->order.base;
        case TYPE (DEPARTMENT_REPLY): return &s->reply.base;
        case TYPE (ACK):              return &s->ack.base;
        case TYPE (NACK):             return &s->nack.base;
        case TYPE (ADAPTER_HELLO):    return &s->hello.base;
        case TYPE (HEARTBEAT):        return &s->heartbeat.base;
        case TYPE (NOTIFICATION):     return &s->notification.base;
        case TYPE (TICKET_EVENT):     return &s->event.base;
        default:                      return NULL;
    }
}

//  Encodes any message into a malloc'd buffer.
static uint8_t *
s_encode (const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size (msg);
    uint8_t *buf = malloc (*len ? *len : 1);
    assert_non_null (buf);
    protobuf_c_message_pack (msg, buf);
    return buf;
}

//  An Envelope encoded by hand, bypassing envelope_pack's checks, to play a
//  hostile or buggy sender.
static uint8_t *
s_raw_envelope (int type, const char *trace_id, const uint8_t *payload,
                size_t payload_len, size_t *len)
{
    Civicbus__V1__Envelope env = CIVICBUS__V1__ENVELOPE__INIT;
    env.type = (Civicbus__V1__EnvelopeType) type;
    env.trace_id = (char *) trace_id;
    env.payload.data = (uint8_t *) payload;
    env.payload.len = payload_len;
    return s_encode (&env.base, len);
}

//  A small deterministic generator; state is the caller's.
static uint32_t
s_next_random (uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (uint32_t) (*state >> 11);
}

/* ---- error value ---- */

static void
test_error_set_fills_all_parts (void **state)
{
    (void) state;
    cb_error_t err;
    cb_error_set (&err, "bad_value", "location.lat", "lat %d out of range", 91);
    assert_string_equal (err.code, "bad_value");
    assert_string_equal (err.field, "location.lat");
    assert_string_equal (err.message, "lat 91 out of range");

    cb_error_set (&err, "too_large", NULL, NULL);
    assert_string_equal (err.code, "too_large");
    assert_string_equal (err.field, "");
    assert_string_equal (err.message, "");

    cb_error_clear (&err);
    assert_string_equal (err.code, "");
    //  A NULL error is allowed and ignored.
    cb_error_set (NULL, "x", "y", "z");
    cb_error_clear (NULL);
}

static void
test_error_truncation_keeps_utf8_whole (void **state)
{
    (void) state;
    cb_error_t err;
    //  63 bytes fit in field; 21 three-byte characters (63 bytes) plus one
    //  more must be cut before the 22nd, not inside it.
    char field [128] = "";
    for (int i = 0; i < 22; i++)
        strcat (field, "字");
    char message [400] = "";
    for (int i = 0; i < 100; i++)
        strcat (message, "错");
    cb_error_set (&err, "a_very_long_code_that_does_not_fit_in_32", field, "%s", message);
    assert_int_equal (strlen (err.code), 31);
    assert_int_equal (strlen (err.field), 63);
    assert_true (cb_utf8_valid (err.field, strlen (err.field)));
    assert_true (strlen (err.message) <= 255);
    assert_int_equal (strlen (err.message) % 3, 0);
    assert_true (cb_utf8_valid (err.message, strlen (err.message)));

    //  Invalid bytes quoted from bad input become '?'.
    cb_error_set (&err, "malformed_json", "a\xFF", "near '%s'", "x\xC3(\xE5\xBC");
    assert_string_equal (err.field, "a?");
    assert_string_equal (err.message, "near 'x?(?" "?'");
}

/* ---- encode and decode ---- */

static void
test_round_trip_every_payload_type (void **state)
{
    (void) state;
    samples_t samples;
    s_samples_init (&samples);
    for (int type = TYPE (DOORBELL); type <= TYPE (TICKET_EVENT); type++) {
        const ProtobufCMessage *payload = s_sample_for (&samples, type);
        assert_non_null (payload);
        assert_ptr_equal (envelope_descriptor_for (type), payload->descriptor);

        uint8_t *frame;
        size_t frame_len;
        assert_int_equal (envelope_pack (type, "trace-abc", 1790000000123LL, payload,
                                         &frame, &frame_len), 0);
        cb_error_t err;
        Civicbus__V1__Envelope *env = envelope_unpack (frame, frame_len, CB_ENVELOPE_MAX, &err);
        assert_non_null (env);
        assert_int_equal (env->type, type);
        assert_string_equal (env->trace_id, "trace-abc");
        assert_int_equal (env->sent_ms, 1790000000123LL);

        ProtobufCMessage *decoded = envelope_payload_unpack (env, type, &err);
        assert_non_null (decoded);
        assert_ptr_equal (decoded->descriptor, payload->descriptor);
        //  Same message, same bytes: every field survived.
        size_t original_len, decoded_len;
        uint8_t *original = s_encode (payload, &original_len);
        uint8_t *again = s_encode (decoded, &decoded_len);
        assert_int_equal (original_len, decoded_len);
        assert_memory_equal (original, again, original_len);
        free (original);
        free (again);

        protobuf_c_message_free_unpacked (decoded, NULL);
        civicbus__v1__envelope__free_unpacked (env, NULL);
        free (frame);
    }
}

static void
test_round_trip_keeps_nested_ticket (void **state)
{
    (void) state;
    samples_t samples;
    s_samples_init (&samples);
    uint8_t *frame;
    size_t frame_len;
    assert_int_equal (envelope_pack (TYPE (DISPATCH_ORDER), NULL, 0, &samples.order.base,
                                     &frame, &frame_len), 0);
    Civicbus__V1__Envelope *env = envelope_unpack (frame, frame_len, CB_ENVELOPE_MAX, NULL);
    assert_non_null (env);
    assert_string_equal (env->trace_id, "");
    Civicbus__V1__DispatchOrder *order = envelope_payload_unpack (env, TYPE (DISPATCH_ORDER), NULL);
    assert_non_null (order);
    assert_string_equal (order->dispatch_id, "d-1");
    assert_int_equal (order->attempt, 2);
    assert_non_null (order->ticket);
    assert_string_equal (order->ticket->description, "路边垃圾堆积");
    assert_non_null (order->ticket->location);
    assert_string_equal (order->ticket->location->address, "南京西路 1 号");
    assert_true (order->ticket->location->lat == 31.2304);
    civicbus__v1__dispatch_order__free_unpacked (order, NULL);
    civicbus__v1__envelope__free_unpacked (env, NULL);
    free (frame);
}

static void
test_pack_without_payload_is_empty_payload (void **state)
{
    (void) state;
    uint8_t *frame;
    size_t frame_len;
    assert_int_equal (envelope_pack (TYPE (HEARTBEAT), "t", 5, NULL, &frame, &frame_len), 0);
    Civicbus__V1__Envelope *env = envelope_unpack (frame, frame_len, CB_ENVELOPE_MAX, NULL);
    assert_non_null (env);
    assert_int_equal (env->payload.len, 0);
    Civicbus__V1__Heartbeat *beat = envelope_payload_unpack (env, TYPE (HEARTBEAT), NULL);
    assert_non_null (beat);
    assert_string_equal (beat->sender, "");
    civicbus__v1__heartbeat__free_unpacked (beat, NULL);
    civicbus__v1__envelope__free_unpacked (env, NULL);
    free (frame);
}

static void
test_pack_refuses_misuse (void **state)
{
    (void) state;
    samples_t samples;
    s_samples_init (&samples);
    uint8_t *frame = (uint8_t *) "untouched";
    size_t frame_len = 99;
    //  Unknown types.
    assert_int_equal (envelope_pack (TYPE (UNSPECIFIED), NULL, 0, NULL, &frame, &frame_len), -1);
    assert_null (frame);
    assert_int_equal (frame_len, 0);
    assert_int_equal (envelope_pack ((Civicbus__V1__EnvelopeType) 42, NULL, 0, NULL,
                                     &frame, &frame_len), -1);
    assert_int_equal (envelope_pack ((Civicbus__V1__EnvelopeType) -1, NULL, 0, NULL,
                                     &frame, &frame_len), -1);
    //  A payload that is not what the type names.
    assert_int_equal (envelope_pack (TYPE (ACK), NULL, 0, &samples.nack.base,
                                     &frame, &frame_len), -1);
    assert_null (frame);
    //  Trace ids: too long, invalid UTF-8.
    char long_trace [CB_TRACE_ID_MAX + 2];
    memset (long_trace, 'a', sizeof long_trace - 1);
    long_trace [sizeof long_trace - 1] = '\0';
    assert_int_equal (envelope_pack (TYPE (ACK), long_trace, 0, &samples.ack.base,
                                     &frame, &frame_len), -1);
    long_trace [CB_TRACE_ID_MAX] = '\0';
    assert_int_equal (envelope_pack (TYPE (ACK), long_trace, 0, &samples.ack.base,
                                     &frame, &frame_len), 0);
    free (frame);
    assert_int_equal (envelope_pack (TYPE (ACK), "bad\xC3(", 0, &samples.ack.base,
                                     &frame, &frame_len), -1);
    //  No output pointers.
    assert_int_equal (envelope_pack (TYPE (ACK), NULL, 0, NULL, NULL, &frame_len), -1);
    assert_int_equal (envelope_pack (TYPE (ACK), NULL, 0, NULL, &frame, NULL), -1);
}

static void
test_pack_refuses_oversize (void **state)
{
    (void) state;
    Civicbus__V1__Notification note = CIVICBUS__V1__NOTIFICATION__INIT;
    uint8_t *body = calloc (1, CB_ENVELOPE_MAX);
    assert_non_null (body);
    note.body.data = body;
    note.body.len = CB_ENVELOPE_MAX;        //  payload alone is over the limit
    uint8_t *frame;
    size_t frame_len;
    assert_int_equal (envelope_pack (TYPE (NOTIFICATION), NULL, 0, &note.base,
                                     &frame, &frame_len), -1);
    assert_null (frame);
    //  The payload fits, the whole frame does not (its header adds bytes).
    note.body.len = CB_ENVELOPE_MAX - 8;
    assert_true (protobuf_c_message_get_packed_size (&note.base) <= CB_ENVELOPE_MAX);
    assert_int_equal (envelope_pack (TYPE (NOTIFICATION), NULL, 0, &note.base,
                                     &frame, &frame_len), -1);
    //  Comfortably under the limit: fine, and it decodes.
    note.body.len = CB_ENVELOPE_MAX - 64;
    assert_int_equal (envelope_pack (TYPE (NOTIFICATION), NULL, 0, &note.base,
                                     &frame, &frame_len), 0);
    assert_true (frame_len <= CB_ENVELOPE_MAX);
    Civicbus__V1__Envelope *env = envelope_unpack (frame, frame_len, CB_ENVELOPE_MAX, NULL);
    assert_non_null (env);
    civicbus__v1__envelope__free_unpacked (env, NULL);
    free (frame);
    free (body);
}

static void
test_unpack_refuses_over_limit (void **state)
{
    (void) state;
    samples_t samples;
    s_samples_init (&samples);
    uint8_t *frame;
    size_t frame_len;
    assert_int_equal (envelope_pack (TYPE (DOORBELL), "t", 1, &samples.doorbell.base,
                                     &frame, &frame_len), 0);
    cb_error_t err;
    assert_null (envelope_unpack (frame, frame_len, frame_len - 1, &err));
    assert_string_equal (err.code, "too_large");
    assert_non_null (strstr (err.message, "exceeds"));
    //  Exactly at the limit is allowed.
    Civicbus__V1__Envelope *env = envelope_unpack (frame, frame_len, frame_len, &err);
    assert_non_null (env);
    civicbus__v1__envelope__free_unpacked (env, NULL);
    //  The limit is checked before the bytes are looked at.
    assert_null (envelope_unpack (NULL, CB_ENVELOPE_MAX + 1, CB_ENVELOPE_MAX, &err));
    assert_string_equal (err.code, "too_large");
    free (frame);
}

static void
test_unpack_truncated_frames (void **state)
{
    (void) state;
    samples_t samples;
    s_samples_init (&samples);
    uint8_t *frame;
    size_t frame_len;
    assert_int_equal (envelope_pack (TYPE (DISPATCH_ORDER), "trace-1", 1790000000000LL,
                                     &samples.order.base, &frame, &frame_len), 0);
    //  Every prefix: an error value, or (cut between fields) an envelope whose
    //  payload then fails or is missing. Never a crash, never a leak.
    for (size_t len = 0; len < frame_len; len++) {
        uint8_t *copy = malloc (len ? len : 1);     //  exact size: ASan sees overreads
        memcpy (copy, frame, len);
        cb_error_t err;
        Civicbus__V1__Envelope *env = envelope_unpack (copy, len, CB_ENVELOPE_MAX, &err);
        if (env) {
            //  The payload comes last, so a frame cut anywhere before its
            //  end decodes only when cut before the payload's tag: then the
            //  payload is empty (an all-default DispatchOrder).
            assert_int_equal (env->payload.len, 0);
            Civicbus__V1__DispatchOrder *order =
                envelope_payload_unpack (env, TYPE (DISPATCH_ORDER), &err);
            assert_non_null (order);
            assert_null (order->ticket);
            civicbus__v1__dispatch_order__free_unpacked (order, NULL);
            civicbus__v1__envelope__free_unpacked (env, NULL);
        }
        else
            assert_true (strcmp (err.code, "malformed") == 0
                      || strcmp (err.code, "unknown_type") == 0);
        free (copy);
    }
    //  One byte short cuts the payload's length-delimited field: malformed.
    cb_error_t err;
    assert_null (envelope_unpack (frame, frame_len - 1, CB_ENVELOPE_MAX, &err));
    assert_string_equal (err.code, "malformed");
    //  Nothing at all is an all-default Envelope: its type is unspecified.
    assert_null (envelope_unpack (frame, 0, CB_ENVELOPE_MAX, &err));
    assert_string_equal (err.code, "unknown_type");
    free (frame);
}

static void
test_unpack_refuses_unknown_type (void **state)
{
    (void) state;
    int bad_types [] = { 0, 10, 42, 1000000, -1 };
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types [0]; i++) {
        size_t len;
        uint8_t *frame = s_raw_envelope (bad_types [i], "t", NULL, 0, &len);
        cb_error_t err;
        assert_null (envelope_unpack (frame, len, CB_ENVELOPE_MAX, &err));
        assert_string_equal (err.code, "unknown_type");
        assert_string_equal (err.field, "type");
        free (frame);
    }
}

static void
test_unpack_refuses_bad_trace_id (void **state)
{
    (void) state;
    cb_error_t err;
    size_t len;
    uint8_t *frame = s_raw_envelope (TYPE (ACK), "\xFF\xFE", NULL, 0, &len);
    assert_null (envelope_unpack (frame, len, CB_ENVELOPE_MAX, &err));
    assert_string_equal (err.code, "malformed");
    assert_string_equal (err.field, "trace_id");
    free (frame);

    char long_trace [CB_TRACE_ID_MAX + 2];
    memset (long_trace, 'x', sizeof long_trace - 1);
    long_trace [sizeof long_trace - 1] = '\0';
    frame = s_raw_envelope (TYPE (ACK), long_trace, NULL, 0, &len);
    assert_null (envelope_unpack (frame, len, CB_ENVELOPE_MAX, &err));
    assert_string_equal (err.field, "trace_id");
    free (frame);
}

static void
test_payload_of_wrong_type_is_refused (void **state)
{
    (void) state;
    samples_t samples;
    s_samples_init (&samples);
    uint8_t *frame;
    size_t frame_len;
    assert_int_equal (envelope_pack (TYPE (DOORBELL), "t", 1, &samples.doorbell.base,
                                     &frame, &frame_len), 0);
    Civicbus__V1__Envelope *env = envelope_unpack (frame, frame_len, CB_ENVELOPE_MAX, NULL);
    assert_non_null (env);
    cb_error_t err;
    for (int type = TYPE (DISPATCH_ORDER); type <= TYPE (TICKET_EVENT); type++) {
        assert_null (envelope_payload_unpack (env, type, &err));
        assert_string_equal (err.code, "wrong_type");
        assert_non_null (strstr (err.message, "doorbell"));
    }
    assert_null (envelope_payload_unpack (env, TYPE (UNSPECIFIED), &err));
    assert_string_equal (err.code, "wrong_type");
    assert_null (envelope_payload_unpack (env, (Civicbus__V1__EnvelopeType) 77, &err));
    assert_string_equal (err.code, "wrong_type");
    assert_null (envelope_payload_unpack (NULL, TYPE (DOORBELL), &err));
    assert_string_equal (err.code, "wrong_type");
    Civicbus__V1__Doorbell *bell = envelope_payload_unpack (env, TYPE (DOORBELL), &err);
    assert_non_null (bell);
    assert_string_equal (bell->ticket_id, "310105-20260930-000042");
    civicbus__v1__doorbell__free_unpacked (bell, NULL);
    civicbus__v1__envelope__free_unpacked (env, NULL);
    free (frame);
}

static void
test_malformed_payload_is_refused (void **state)
{
    (void) state;
    //  A length-delimited field (ticket_id) that claims 100 bytes but has 2;
    //  a field with wire type 7, which does not exist; a field numbered 0,
    //  its tag written in two bytes (found by the fuzzer: protobuf-c takes
    //  it, but refuses its own re-encoding of it).
    const uint8_t cut [] = { 0x0A, 100, 'a', 'b' };
    const uint8_t bad_wire [] = { 0x0F, 0x01 };
    const uint8_t field_zero [] = { 0x81, 0x00, 0, 0, 0, 0, 0, 0, 0x20, 0x08 };
    const uint8_t *payloads [] = { cut, bad_wire, field_zero };
    size_t lens [] = { sizeof cut, sizeof bad_wire, sizeof field_zero };
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        uint8_t *frame = s_raw_envelope (TYPE (DOORBELL), "t", payloads [i], lens [i], &len);
        cb_error_t err;
        Civicbus__V1__Envelope *env = envelope_unpack (frame, len, CB_ENVELOPE_MAX, &err);
        assert_non_null (env);      //  the envelope itself is fine
        assert_null (envelope_payload_unpack (env, TYPE (DOORBELL), &err));
        assert_string_equal (err.code, "malformed");
        assert_string_equal (err.field, "payload");
        civicbus__v1__envelope__free_unpacked (env, NULL);
        free (frame);
    }
}

static void
test_impossible_field_numbers_are_refused (void **state)
{
    (void) state;
    //  DispatchOrder { ticket (5) { location (8) { field 0 } } }, and the
    //  same at the Envelope's own level.
    const uint8_t order [] = { 0x2A, 12, 0x42, 10, 0x81, 0x00, 0, 0, 0, 0, 0, 0, 0, 0 };
    size_t len;
    uint8_t *frame = s_raw_envelope (TYPE (DISPATCH_ORDER), "t", order, sizeof order, &len);
    cb_error_t err;
    Civicbus__V1__Envelope *env = envelope_unpack (frame, len, CB_ENVELOPE_MAX, &err);
    assert_non_null (env);
    assert_null (envelope_payload_unpack (env, TYPE (DISPATCH_ORDER), &err));
    assert_string_equal (err.code, "malformed");
    civicbus__v1__envelope__free_unpacked (env, NULL);
    free (frame);

    const uint8_t raw [] = { 0x08, 0x01, 0x81, 0x00, 0, 0, 0, 0, 0, 0, 0, 0 };
    assert_null (envelope_unpack (raw, sizeof raw, CB_ENVELOPE_MAX, &err));
    assert_string_equal (err.code, "malformed");
    //  Nor above 2^29 - 1: field 2^29, varint, value 1.
    const uint8_t huge [] = { 0x08, 0x01, 0x80, 0x80, 0x80, 0x80, 0x20, 0x01 };
    assert_null (envelope_unpack (huge, sizeof huge, CB_ENVELOPE_MAX, &err));
    assert_string_equal (err.code, "malformed");
    //  Unknown fields with real numbers (a newer sender) are kept.
    const uint8_t newer [] = { 0x08, 0x01, 0xF8, 0x06, 0x05 };      //  field 111 = 5
    env = envelope_unpack (newer, sizeof newer, CB_ENVELOPE_MAX, &err);
    assert_non_null (env);
    assert_int_equal (env->base.n_unknown_fields, 1);
    civicbus__v1__envelope__free_unpacked (env, NULL);
}

static void
test_random_bytes_never_crash (void **state)
{
    (void) state;
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    int decoded = 0, refused = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len = s_next_random (&seed) % 96;
        uint8_t *bytes = malloc (len ? len : 1);
        for (size_t i = 0; i < len; i++)
            bytes [i] = (uint8_t) s_next_random (&seed);
        //  Half the time start like a real frame (type field), to get past
        //  the first byte more often.
        if (len >= 2 && round % 2) {
            bytes [0] = 0x08;
            bytes [1] = 1 + s_next_random (&seed) % 9;
        }
        cb_error_t err;
        Civicbus__V1__Envelope *env = envelope_unpack (bytes, len, CB_ENVELOPE_MAX, &err);
        if (env) {
            decoded++;
            assert_non_null (envelope_descriptor_for (env->type));
            ProtobufCMessage *payload = envelope_payload_unpack (env, env->type, &err);
            if (payload)
                protobuf_c_message_free_unpacked (payload, NULL);
            else
                assert_string_equal (err.code, "malformed");
            civicbus__v1__envelope__free_unpacked (env, NULL);
        }
        else {
            refused++;
            assert_true (strcmp (err.code, "malformed") == 0
                      || strcmp (err.code, "unknown_type") == 0);
        }
        free (bytes);
    }
    //  Both paths were exercised.
    assert_true (decoded > 100);
    assert_true (refused > 100);
}

static void
test_descriptor_table_and_names (void **state)
{
    (void) state;
    assert_null (envelope_descriptor_for (TYPE (UNSPECIFIED)));
    assert_null (envelope_descriptor_for ((Civicbus__V1__EnvelopeType) 10));
    assert_null (envelope_descriptor_for ((Civicbus__V1__EnvelopeType) -5));
    assert_ptr_equal (envelope_descriptor_for (TYPE (DOORBELL)), &civicbus__v1__doorbell__descriptor);
    assert_ptr_equal (envelope_descriptor_for (TYPE (DISPATCH_ORDER)),
                      &civicbus__v1__dispatch_order__descriptor);
    assert_ptr_equal (envelope_descriptor_for (TYPE (TICKET_EVENT)),
                      &civicbus__v1__ticket_event__descriptor);
    //  Every type in the proto has a descriptor.
    for (unsigned i = 0; i < civicbus__v1__envelope_type__descriptor.n_values; i++) {
        int value = civicbus__v1__envelope_type__descriptor.values [i].value;
        if (value != TYPE (UNSPECIFIED))
            assert_non_null (envelope_descriptor_for (value));
    }
    assert_string_equal (envelope_type_name (TYPE (DEPARTMENT_REPLY)), "department_reply");
    assert_string_equal (envelope_type_name ((Civicbus__V1__EnvelopeType) 99), "unknown");
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_error_set_fills_all_parts),
        cmocka_unit_test (test_error_truncation_keeps_utf8_whole),
        cmocka_unit_test (test_round_trip_every_payload_type),
        cmocka_unit_test (test_round_trip_keeps_nested_ticket),
        cmocka_unit_test (test_pack_without_payload_is_empty_payload),
        cmocka_unit_test (test_pack_refuses_misuse),
        cmocka_unit_test (test_pack_refuses_oversize),
        cmocka_unit_test (test_unpack_refuses_over_limit),
        cmocka_unit_test (test_unpack_truncated_frames),
        cmocka_unit_test (test_unpack_refuses_unknown_type),
        cmocka_unit_test (test_unpack_refuses_bad_trace_id),
        cmocka_unit_test (test_payload_of_wrong_type_is_refused),
        cmocka_unit_test (test_malformed_payload_is_refused),
        cmocka_unit_test (test_impossible_field_numbers_are_refused),
        cmocka_unit_test (test_random_bytes_never_crash),
        cmocka_unit_test (test_descriptor_table_and_names),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
