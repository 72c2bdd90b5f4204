/*  replies.c — a department's reply (sign, return, extension, suspension,
    progress, resolve) through the state machine, stored, then ACKed
    (docs/PROTOCOL.md, "Replies"; DESIGN.md principle 2).

    The actor is DEPARTMENT with id = the department of the connection
    (its key's, from ZAP), never what the message claims; a reply that
    names another department is refused. The change is one compare-and-set
    (ticket_store_apply) that also adds the reply id to rep:{bNN}:ID, and
    the id is looked up after each load: a reply already applied is ACKed
    again without a change, and two dispatchers (an old active and its
    successor) cannot both apply one reply, since the second one's version
    is stale or its lookup finds the id.

    The outcome's clock effects (a sign ends the sign clock and starts the
    resolve clock, a resolve starts verification, a return stops it) go
    into the same change (deadlines_apply_effects).

    A return also takes the department's (and its co-handlers') orders out
    of dspq and dsp, and puts the ticket in the inbox in the same change;
    then it is re-routed at once (dispatch_plan handles RETURNED: another
    owner, or it waits in the operators' queue). Should the re-route fail,
    the inbox entry makes the next sweep do it. */

#include "dispatcher.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/mask.h"
#include "civicbus/pbutil.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define CONFLICT_TRIES  5
#define REPLY_ID_MAX    200

/* ---- private ---- */

static void
s_ack (self_t *self, adapter_t *adapter, const char *reply_id)
{
    Civicbus__V1__Ack ack = CIVICBUS__V1__ACK__INIT;
    ack.ref = (char *) reply_id;
    departments_send (self, adapter, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ACK, reply_id, &ack.base);
}

static void
s_nack (self_t *self, adapter_t *adapter, const char *reply_id, const char *code,
        const char *reason)
{
    Civicbus__V1__Nack nack = CIVICBUS__V1__NACK__INIT;
    nack.ref = (char *) reply_id;
    nack.code = (char *) code;
    nack.reason = (char *) reason;
    departments_send (self, adapter, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_NACK, reply_id,
                      &nack.base);
}

//  The extra writes of a return: the old orders go, the inbox gets it.
static int
s_return_ops (ts_ops_t *ops, const cb_ticket_t *before, int64_t now_ms)
{
    char queue [32], inbox [32], dsp_key [96], member [DISPATCH_ID_MAX];
    int bucket = ticket_id_bucket (before->id);
    ts_bucket_key (queue, sizeof queue, "dspq", bucket);
    ts_bucket_key (inbox, sizeof inbox, "inbox", bucket);
    if (ts_key (dsp_key, sizeof dsp_key, "dsp", before->id))
        return -1;
    int rc = 0;
    if (before->department
    &&  dispatch_queue_member (member, sizeof member, before->id, before->department) == 0)
        rc |= ts_ops_zrem (ops, queue, member);
    for (size_t i = 0; i < before->n_co_handlers; i++)
        if (dispatch_queue_member (member, sizeof member, before->id, before->co_handlers [i]) == 0)
            rc |= ts_ops_zrem (ops, queue, member);
    rc |= ts_ops_del (ops, dsp_key);
    rc |= ts_ops_zadd (ops, inbox, now_ms, before->id);
    return rc;
}

static void
s_payload (const Civicbus__V1__DepartmentReply *reply, const adapter_t *adapter,
           char *buf, size_t cap)
{
    json_t *urls = json_array ();
    for (size_t i = 0; urls && i < reply->n_attachment_urls; i++)
        json_array_append_new (urls, json_string (reply->attachment_urls [i]));
    json_t *root = json_pack ("{s:s, s:s, s:s, s:i, s:o*}", "reply_id", reply->reply_id,
                              "dispatch_id", reply->dispatch_id ? reply->dispatch_id : "",
                              "adapter", adapter->adapter_id,
                              "extension_days", (int) reply->extension_days,
                              "attachment_urls", urls);
    char *text = root ? json_dumps (root, JSON_COMPACT) : NULL;
    snprintf (buf, cap, "%s", text && strlen (text) < cap ? text : "{}");
    free (text);
    json_decref (root);
}

/* ---- public ---- */

void
replies_take (self_t *self, adapter_t *adapter, const Civicbus__V1__DepartmentReply *reply)
{
    const char *reply_id = reply->reply_id;
    if (!reply_id || !*reply_id || strlen (reply_id) > REPLY_ID_MAX) {
        s_nack (self, adapter, reply_id ? reply_id : "", "bad_message", "a reply needs a reply_id");
        return;
    }
    if (!reply->department || strcmp (reply->department, adapter->department) != 0) {
        cb_log (CB_LOG_WARN, "reply names another department than its key's: refused",
                "key", adapter->key, "key_department", adapter->department,
                "claimed", reply->department ? reply->department : "", "reply_id", reply_id, NULL);
        s_nack (self, adapter, reply_id, "wrong_department",
                "this adapter's key is registered for another department");
        return;
    }
    int kind = dispatch_reply_event (reply->kind);
    if (kind < 0) {
        s_nack (self, adapter, reply_id, TICKET_CODE_BAD_VALUE, "unknown reply kind");
        return;
    }
    const char *ticket_id = reply->ticket_id;
    char rep_key [96];
    if (!ticket_id || ts_key (rep_key, sizeof rep_key, "rep", ticket_id)) {
        s_nack (self, adapter, reply_id, "not_yours", "no such ticket");
        return;
    }
    ticket_actor_t actor = { CIVICBUS__V1__ACTOR_KIND__ACTOR_DEPARTMENT, adapter->department,
                             reply->staff_name && *reply->staff_name ? reply->staff_name
                                                                     : adapter->adapter_id };
    ticket_input_t input = { .kind = (ticket_event_kind_t) kind, .text = reply->text,
                             .days = reply->extension_days };
    char payload [2048];
    s_payload (reply, adapter, payload, sizeof payload);
    size_t note_cap = (reply->text ? strlen (reply->text) : 0) + 1;
    char *note = malloc (note_cap);
    if (!note) {
        s_nack (self, adapter, reply_id, "unavailable", "dispatcher out of memory");
        return;
    }
    cb_mask_text (reply->text, note, note_cap);

    for (int round = 0; round < CONFLICT_TRIES; round++) {
        if (!dispatcher_may_act (self))
            break;
        cb_ticket_t *before = NULL;
        int rc = ticket_store_load (self->store, ticket_id, &before);
        if (rc == TS_NOT_FOUND) {
            s_nack (self, adapter, reply_id, "not_yours", "no such ticket");
            free (note);
            return;
        }
        if (rc != TS_OK)
            break;
        redisReply *seen = cb_redis_command (self->redis, "SISMEMBER %s %s", rep_key, reply_id);
        if (!seen) {
            civicbus__v1__ticket__free_unpacked (before, NULL);
            break;
        }
        bool applied = seen->type == REDIS_REPLY_INTEGER && seen->integer == 1;
        freeReplyObject (seen);
        if (applied) {
            cb_log (CB_LOG_INFO, "reply already applied: acknowledged again", "reply_id", reply_id,
                    "ticket", ticket_id, NULL);
            civicbus__v1__ticket__free_unpacked (before, NULL);
            s_ack (self, adapter, reply_id);
            free (note);
            return;
        }
        cb_ticket_t *after = ticket_clone (before);
        if (!after) {
            civicbus__v1__ticket__free_unpacked (before, NULL);
            break;
        }
        int64_t now = cb_clock_now_ms ();
        ticket_outcome_t out;
        if (ticket_apply_event (after, &input, &actor, now, &out)) {
            self->stats.replies_refused++;
            cb_log (CB_LOG_INFO, "reply refused by the state machine", "reply_id", reply_id,
                    "ticket", ticket_id, "event", ticket_event_name (input.kind),
                    "code", out.code, "reason", out.reason, NULL);
            s_nack (self, adapter, reply_id, out.code, out.reason);
            civicbus__v1__ticket__free_unpacked (after, NULL);
            civicbus__v1__ticket__free_unpacked (before, NULL);
            free (note);
            return;
        }
        ts_ops_t *ops = ts_ops_new ();
        rc = ops ? ts_ops_sadd (ops, rep_key, reply_id) : -1;
        bool returned = input.kind == TEV_RETURN;
        if (rc == 0 && returned)
            rc = s_return_ops (ops, before, now);
        //  Sign ends the sign clock and starts resolve; resolve starts
        //  verify; return stops the clock (ticket_effects.h).
        if (rc == 0)
            rc = deadlines_apply_effects (self, before, after, out.effects, now, ops);
        ts_event_t ev = { ticket_event_name (input.kind), &actor, out.from, out.to,
                          note [0] ? note : NULL, payload };
        rc = rc == 0 ? ticket_store_apply (self->store, before, after, &ev, 1, ops) : TS_ERROR;
        ts_ops_destroy (&ops);
        if (rc == TS_OK) {
            self->stats.replies++;
            dispatcher_publish (self, after, &ev, 1);
            cb_log (CB_LOG_INFO, "reply applied", "reply_id", reply_id, "ticket", ticket_id,
                    "event", ev.type, "state", ticket_state_name (after->state), NULL);
        }
        civicbus__v1__ticket__free_unpacked (after, NULL);
        civicbus__v1__ticket__free_unpacked (before, NULL);
        if (rc == TS_CONFLICT) {
            self->stats.conflicts++;
            continue;
        }
        if (rc != TS_OK)
            break;
        //  Stored: that is what the ACK says. The re-route is the
        //  dispatcher's own business (and the inbox entry backs it up).
        s_ack (self, adapter, reply_id);
        free (note);
        if (returned)
            dispatcher_handle_ticket (self, ticket_id);
        return;
    }
    //  Not stored (Redis, the lease, or endless conflicts): the adapter
    //  answers 503 and the department calls again.
    s_nack (self, adapter, reply_id, "unavailable", "the dispatcher could not store the reply now");
    free (note);
}
