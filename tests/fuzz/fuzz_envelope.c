/*  fuzz_envelope.c — libFuzzer target for the Envelope decoder (codec.h).

    Whatever arrives on a socket goes through envelope_unpack; a frame that
    passes is decoded as every payload type (not only its own, to reach
    every message decoder), shown as JSON where services do that (a
    DispatchOrder's ticket, a TicketEvent), and re-encoded and decoded again,
    which must work. Everything is freed: LeakSanitizer fails the run on a
    leak, and abort() marks a broken promise of the API. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "civicbus/codec.h"
#include "civicbus/mask.h"
#include "civicbus/ticket_json.h"

#define TYPE(x) CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ ## x

static void
s_check_error (const cb_error_t *err)
{
    if (strcmp (err->code, "too_large") && strcmp (err->code, "malformed")
    &&  strcmp (err->code, "unknown_type") && strcmp (err->code, "wrong_type"))
        abort ();
    if (!cb_utf8_valid (err->message, strlen (err->message)))
        abort ();
}

static void
s_show_as_json (json_t *json)
{
    if (!json)
        abort ();               //  only out of memory may give NULL
    char *text = json_dumps (json, JSON_COMPACT);
    if (!text || !cb_utf8_valid (text, strlen (text)))
        abort ();
    free (text);
    json_decref (json);
}

static void
s_exercise_payload (const Civicbus__V1__Envelope *env, Civicbus__V1__EnvelopeType type)
{
    //  Present the same bytes as an envelope of `type`.
    Civicbus__V1__Envelope view = *env;
    view.type = type;
    cb_error_t err;
    ProtobufCMessage *msg = envelope_payload_unpack (&view, type, &err);
    if (!msg) {
        s_check_error (&err);
        return;
    }
    if (type == TYPE (DISPATCH_ORDER)) {
        Civicbus__V1__DispatchOrder *order = (Civicbus__V1__DispatchOrder *) msg;
        if (order->ticket)
            for (unsigned flags = 0; flags < 4; flags++)
                s_show_as_json (ticket_to_json (order->ticket, flags));
    }
    if (type == TYPE (TICKET_EVENT))
        s_show_as_json (ticket_event_to_json ((Civicbus__V1__TicketEvent *) msg));

    //  Re-encode and decode: a message we decoded must travel again.
    //  (Re-encoding may grow a frame, e.g. a short varint for a negative
    //  enum becomes 10 bytes, so only small inputs must fit for sure.)
    uint8_t *frame;
    size_t frame_len;
    if (envelope_pack (type, env->trace_id, env->sent_ms, msg, &frame, &frame_len) == 0) {
        Civicbus__V1__Envelope *again = envelope_unpack (frame, frame_len, CB_ENVELOPE_MAX, &err);
        if (!again || again->type != type)
            abort ();
        ProtobufCMessage *msg_again = envelope_payload_unpack (again, type, &err);
        if (!msg_again)
            abort ();
        protobuf_c_message_free_unpacked (msg_again, NULL);
        civicbus__v1__envelope__free_unpacked (again, NULL);
        free (frame);
    }
    else
    if (env->payload.len < CB_ENVELOPE_MAX / 4)
        abort ();
    protobuf_c_message_free_unpacked (msg, NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    cb_error_t err;
    Civicbus__V1__Envelope *env = envelope_unpack (data, size, CB_ENVELOPE_MAX, &err);
    if (!env) {
        s_check_error (&err);
        return 0;
    }
    if (!envelope_descriptor_for (env->type))
        abort ();
    for (int type = TYPE (DOORBELL); type <= TYPE (TICKET_EVENT); type++) {
        //  Its own type decodes or not; any other type must be refused.
        if (type != (int) env->type && envelope_payload_unpack (env, type, &err))
            abort ();
        s_exercise_payload (env, type);
    }
    civicbus__v1__envelope__free_unpacked (env, NULL);
    return 0;
}
