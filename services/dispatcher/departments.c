/*  departments.c — who may speak for a department, and who is there now.

    CURVE: the ROUTER is a CURVE server with the dispatcher's certificate.
    libzmq asks the ZAP handler (RFC 27) at inproc://zeromq.zap.01 about
    every client key; we answer it ourselves, from a REP socket polled in
    the main loop: a key in Redis `adapters:keys` is accepted and its
    department becomes the connection's User-Id (and the key itself the
    property X-Key), anything else is refused before a message gets
    through. The key table is cached and refreshed every KEYS_REFRESH_MS,
    and at once (at most once a second) when an unknown key knocks, so a
    freshly registered adapter need not wait.

    Every message from an adapter carries that metadata, so its department
    is known from the connection, never from what the message says: a HELLO
    (or reply) naming another department is refused with NACK
    wrong_department and logged at warn with the key and both departments.

    Live adapters: one entry per connection that said HELLO, dropped after
    three silent heartbeat intervals or when a send to it fails (ROUTER
    mandatory). Messages from a connection without HELLO get NACK
    hello_first (after a takeover, adapters learn this way to say HELLO to
    the new active dispatcher). */

#include "dispatcher.h"
#include "civicbus/bus.h"
#include "civicbus/clock.h"
#include "civicbus/codec.h"
#include "civicbus/log.h"

#include <stdio.h>
#include <string.h>

#define KEYS_KEY          "adapters:keys"
#define KEYS_REFRESH_MS   3000
#define KEYS_FORCE_MIN_MS 1000
#define SILENT_BEATS      3
#define MESSAGES_PER_TURN 256
#define ZAP_ENDPOINT      "inproc://zeromq.zap.01"
#define ZAP_DOMAIN        "civicbus"

/* ---- private ---- */

static void
s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_adapter_free (void **item)
{
    adapter_t *adapter = *item;
    if (adapter) {
        zframe_destroy (&adapter->identity);
        free (adapter);
    }
    *item = NULL;
}

//  Reads adapters:keys into a fresh table; keeps the old one when Redis
//  does not answer (a dead Redis must not lock every adapter out).
static void
s_refresh_keys (self_t *self)
{
    self->next_keys_ms = cb_clock_mono_ms () + KEYS_REFRESH_MS;
    redisReply *reply = cb_redis_command (self->redis, "HGETALL %s", KEYS_KEY);
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ARRAY) {
        zhashx_t *keys = zhashx_new ();
        if (keys) {
            zhashx_set_destructor (keys, s_free_item);
            for (size_t i = 0; i + 1 < reply->elements; i += 2)
                if (reply->element [i]->type == REDIS_REPLY_STRING
                &&  reply->element [i + 1]->type == REDIS_REPLY_STRING)
                    zhashx_update (keys, reply->element [i]->str,
                                   strdup (reply->element [i + 1]->str));
            zhashx_destroy (&self->keys);
            self->keys = keys;
        }
    }
    freeReplyObject (reply);
}

static void
s_hex (const uint8_t *data, size_t len, char *out, size_t cap)
{
    static const char digits [] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len && n + 2 < cap; i++) {
        out [n++] = digits [data [i] >> 4];
        out [n++] = digits [data [i] & 15];
    }
    out [n] = 0;
}

//  One ZAP property: name length (1 byte), name, value length (4 bytes,
//  big-endian), value.
static size_t
s_zap_property (uint8_t *buf, size_t cap, const char *name, const char *value)
{
    size_t nlen = strlen (name), vlen = strlen (value);
    if (1 + nlen + 4 + vlen > cap)
        return 0;
    size_t n = 0;
    buf [n++] = (uint8_t) nlen;
    memcpy (buf + n, name, nlen);
    n += nlen;
    buf [n++] = (uint8_t) (vlen >> 24);
    buf [n++] = (uint8_t) (vlen >> 16);
    buf [n++] = (uint8_t) (vlen >> 8);
    buf [n++] = (uint8_t) vlen;
    memcpy (buf + n, value, vlen);
    return n + vlen;
}

static void
s_nack (self_t *self, adapter_t *adapter, zframe_t *to, const char *ref, const char *code,
        const char *reason)
{
    Civicbus__V1__Nack nack = CIVICBUS__V1__NACK__INIT;
    nack.ref = (char *) ref;
    nack.code = (char *) code;
    nack.reason = (char *) reason;
    if (adapter)
        departments_send (self, adapter, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_NACK, ref, &nack.base);
    else
        cb_bus_send (self->adapters, to, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_NACK, ref, &nack.base);
}

static void
s_drop (self_t *self, adapter_t *adapter, const char *why)
{
    cb_log (CB_LOG_WARN, "adapter gone", "department", adapter->department,
            "adapter", adapter->adapter_id, "why", why, NULL);
    delivery_adapter_gone (self, adapter);
    zhashx_delete (self->live, adapter->routing);
}

static void
s_take_hello (self_t *self, zframe_t *from, const char *routing, const char *user_id,
              const char *key, const Civicbus__V1__AdapterHello *hello)
{
    char ref [160];
    snprintf (ref, sizeof ref, "hello:%s", hello->adapter_id);
    const char *department = self->plaintext ? hello->department : user_id;
    if (!department || !*department || strcmp (department, hello->department) != 0) {
        cb_log (CB_LOG_WARN, "adapter claims another department than its key's: refused",
                "key", key, "key_department", user_id ? user_id : "",
                "claimed", hello->department, "adapter", hello->adapter_id, NULL);
        zhashx_delete (self->live, routing);
        s_nack (self, NULL, from, ref, "wrong_department",
                "this adapter's key is registered for another department");
        return;
    }
    adapter_t *adapter = zhashx_lookup (self->live, routing);
    if (!adapter) {
        adapter = calloc (1, sizeof *adapter);
        if (!adapter)
            return;
        snprintf (adapter->routing, sizeof adapter->routing, "%s", routing);
        adapter->identity = zframe_dup (from);
        zhashx_insert (self->live, routing, adapter);
        cb_log (CB_LOG_INFO, "adapter registered", "department", department,
                "adapter", hello->adapter_id, "key", key, NULL);
    }
    snprintf (adapter->department, sizeof adapter->department, "%s", department);
    snprintf (adapter->key, sizeof adapter->key, "%s", key);
    snprintf (adapter->adapter_id, sizeof adapter->adapter_id, "%s", hello->adapter_id);
    adapter->capacity = hello->capacity > 0 ? hello->capacity : 1;
    adapter->last_seen_ms = cb_clock_mono_ms ();
    Civicbus__V1__Ack ack = CIVICBUS__V1__ACK__INIT;
    ack.ref = ref;
    departments_send (self, adapter, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ACK, ref, &ack.base);
    //  Orders may wait for exactly this department: look at once.
    delivery_soon (self);
}

//  One message from the ROUTER: routing frame, envelope frame.
static void
s_take_one (self_t *self)
{
    zmsg_t *msg = zmsg_recv (self->adapters);
    if (!msg)
        return;
    zframe_t *from = zmsg_pop (msg);
    zframe_t *frame = zmsg_pop (msg);
    if (frame && zframe_size (frame) == 0 && zmsg_size (msg) > 0) {
        zframe_destroy (&frame);
        frame = zmsg_pop (msg);
    }
    if (!from || !frame || zmsg_size (msg) != 0) {
        cb_log (CB_LOG_WARN, "malformed message from an adapter dropped", NULL);
        goto done;
    }
    char routing [64];
    s_hex (zframe_data (from), zframe_size (from), routing, sizeof routing);
    const char *user_id = zframe_meta (frame, "User-Id");
    const char *key = zframe_meta (frame, "X-Key");
    if (!key)
        key = "";
    if (!self->plaintext && (!user_id || !*user_id)) {
        //  Cannot happen with CURVE and our ZAP handler; refuse loudly if it does.
        cb_log (CB_LOG_ERROR, "message without an authenticated department dropped", NULL);
        goto done;
    }
    cb_error_t err;
    Civicbus__V1__Envelope *env = envelope_unpack (zframe_data (frame), zframe_size (frame),
                                                   CB_ENVELOPE_MAX, &err);
    void *payload = env ? envelope_payload_unpack (env, env->type, &err) : NULL;
    if (!payload) {
        cb_log (CB_LOG_WARN, "bad message from an adapter", "department", user_id ? user_id : "",
                "error", err.message, NULL);
        s_nack (self, NULL, from, "", "bad_message", err.message);
        if (env)
            protobuf_c_message_free_unpacked (&env->base, NULL);
        goto done;
    }
    adapter_t *adapter = zhashx_lookup (self->live, routing);
    if (env->type == CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ADAPTER_HELLO)
        s_take_hello (self, from, routing, user_id, key, payload);
    else
    if (!adapter)
        s_nack (self, NULL, from, "", "hello_first", "say HELLO first");
    else
    if (!self->plaintext && strcmp (adapter->department, user_id) != 0) {
        //  The connection's key changed department under us: stop trusting it.
        cb_log (CB_LOG_WARN, "adapter's department changed: dropped", "key", key,
                "was", adapter->department, "now", user_id, NULL);
        s_drop (self, adapter, "department changed");
    }
    else {
        adapter->last_seen_ms = cb_clock_mono_ms ();
        switch (env->type) {
            case CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_HEARTBEAT:
                break;
            case CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ACK:
                delivery_on_ack (self, adapter, ((Civicbus__V1__Ack *) payload)->ref);
                break;
            case CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_NACK:
                delivery_on_nack (self, adapter, payload);
                break;
            case CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DEPARTMENT_REPLY:
                //  The ACKs before it first: "delivered" precedes "sign".
                delivery_record_answers (self);
                replies_take (self, adapter, payload);
                break;
            default:
                s_nack (self, adapter, NULL, "", "bad_message", "unexpected message type");
        }
    }
    protobuf_c_message_free_unpacked (payload, NULL);
    protobuf_c_message_free_unpacked (&env->base, NULL);
done:
    zframe_destroy (&from);
    zframe_destroy (&frame);
    zmsg_destroy (&msg);
}

/* ---- public ---- */

int
departments_new (self_t *self)
{
    self->keys = zhashx_new ();
    self->live = zhashx_new ();
    self->flights = zhashx_new ();
    self->attempts = zhashx_new ();
    if (!self->keys || !self->live || !self->flights || !self->attempts || delivery_new (self))
        return -1;
    zhashx_set_destructor (self->keys, s_free_item);
    zhashx_set_destructor (self->live, s_adapter_free);
    zhashx_set_destructor (self->flights, s_free_item);
    zhashx_set_destructor (self->attempts, s_free_item);
    return 0;
}

void
departments_destroy (self_t *self)
{
    zhashx_destroy (&self->keys);
    zhashx_destroy (&self->live);
    zhashx_destroy (&self->flights);
    zhashx_destroy (&self->attempts);
    delivery_destroy (self);
}

void
departments_forget_all (self_t *self)
{
    if (self->live)
        zhashx_purge (self->live);
    if (self->flights)
        zhashx_purge (self->flights);
    if (self->attempts)
        zhashx_purge (self->attempts);
    delivery_forget_answers (self);
}

int
departments_zap_open (self_t *self)
{
    if (self->plaintext)
        return 0;
    self->zap = zsock_new (ZMQ_REP);
    if (!self->zap || zsock_bind (self->zap, ZAP_ENDPOINT) < 0) {
        cb_log (CB_LOG_ERROR, "cannot bind the ZAP handler", "endpoint", ZAP_ENDPOINT, NULL);
        zsock_destroy (&self->zap);
        return -1;
    }
    s_refresh_keys (self);
    return 0;
}

zsock_t *
departments_router_new (self_t *self, const char *endpoint)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    if (!sock)
        return NULL;
    cb_bus_set_defaults (sock);
    zsock_set_router_mandatory (sock, 1);
    zsock_set_sndtimeo (sock, 100);
    if (!self->plaintext) {
        zcert_apply (self->cert, sock);
        zsock_set_curve_server (sock, 1);
        zsock_set_zap_domain (sock, ZAP_DOMAIN);
    }
    if (zsock_bind (sock, "%s", endpoint) < 0) {
        cb_log (CB_LOG_ERROR, "cannot bind", "endpoint", endpoint,
                "error", zmq_strerror (zmq_errno ()), NULL);
        zsock_destroy (&sock);
        return NULL;
    }
    cb_log (CB_LOG_INFO, "adapter socket open", "endpoint", endpoint,
            "security", self->plaintext ? "plaintext (tests only)" : "curve", NULL);
    return sock;
}

void
departments_take_zap (self_t *self)
{
    for (int n = 0; n < 64 && self->zap && (zsock_events (self->zap) & ZMQ_POLLIN); n++) {
        zmsg_t *request = zmsg_recv (self->zap);
        if (!request)
            return;
        char *version = zmsg_popstr (request);
        char *request_id = zmsg_popstr (request);
        char *domain = zmsg_popstr (request);
        char *address = zmsg_popstr (request);
        zframe_t *identity = zmsg_pop (request);
        char *mechanism = zmsg_popstr (request);
        zframe_t *credentials = zmsg_pop (request);
        const char *status = "400", *text = "unknown key";
        const char *department = "";
        char key [41] = "";
        if (mechanism && strcmp (mechanism, "CURVE") == 0 && credentials
        &&  zframe_size (credentials) == 32) {
            zmq_z85_encode (key, zframe_data (credentials), 32);
            department = zhashx_lookup (self->keys, key);
            int64_t now = cb_clock_mono_ms ();
            if (!department && now - self->keys_forced_ms >= KEYS_FORCE_MIN_MS) {
                //  Perhaps registered a moment ago.
                self->keys_forced_ms = now;
                s_refresh_keys (self);
                department = zhashx_lookup (self->keys, key);
            }
            if (department) {
                status = "200";
                text = "OK";
            }
            else {
                department = "";
                cb_log (CB_LOG_WARN, "adapter key not registered: connection refused",
                        "key", key, "address", address ? address : "", NULL);
            }
        }
        else
            cb_log (CB_LOG_WARN, "connection without CURVE refused",
                    "mechanism", mechanism ? mechanism : "", NULL);
        uint8_t meta [128];
        size_t meta_len = *key ? s_zap_property (meta, sizeof meta, "X-Key", key) : 0;
        zmsg_t *reply = zmsg_new ();
        if (reply) {
            zmsg_addstr (reply, version ? version : "1.0");
            zmsg_addstr (reply, request_id ? request_id : "");
            zmsg_addstr (reply, status);
            zmsg_addstr (reply, text);
            zmsg_addstr (reply, *status == '2' ? department : "");
            zmsg_addmem (reply, meta, *status == '2' ? meta_len : 0);
            zmsg_send (&reply, self->zap);
        }
        free (version);
        free (request_id);
        free (domain);
        free (address);
        free (mechanism);
        zframe_destroy (&identity);
        zframe_destroy (&credentials);
        zmsg_destroy (&request);
    }
}

void
departments_take_messages (self_t *self)
{
    for (int n = 0; n < MESSAGES_PER_TURN && self->active && self->adapters
                    && (zsock_events (self->adapters) & ZMQ_POLLIN); n++)
        s_take_one (self);
    //  The ACKs of this read are recorded after this loop turn's delivery
    //  turn (delivery_send_due), so new orders do not wait for them.
    if (!self->active)
        delivery_forget_answers (self);
}

int
departments_send (self_t *self, adapter_t *adapter, Civicbus__V1__EnvelopeType type,
                  const char *trace, const ProtobufCMessage *msg)
{
    if (!self->adapters)
        return -1;
    return cb_bus_send (self->adapters, adapter->identity, type, trace, msg);
}

bool
departments_any_live (self_t *self)
{
    return self->live && zhashx_size (self->live) > 0;
}

bool
departments_serves (self_t *self, const char *department)
{
    for (adapter_t *a = zhashx_first (self->live); a; a = zhashx_next (self->live))
        if (strcmp (a->department, department) == 0)
            return true;
    return false;
}

adapter_t *
departments_pick (self_t *self, const char *department, const char *avoid_routing)
{
    adapter_t *best = NULL;
    bool best_avoided = true;
    for (adapter_t *a = zhashx_first (self->live); a; a = zhashx_next (self->live)) {
        if (strcmp (a->department, department) != 0 || a->in_flight >= a->capacity)
            continue;
        bool avoided = avoid_routing && strcmp (a->routing, avoid_routing) == 0;
        if (!best || (best_avoided && !avoided)
        ||  (avoided == best_avoided && a->in_flight < best->in_flight)) {
            best = a;
            best_avoided = avoided;
        }
    }
    return best;
}

void
departments_tick (self_t *self)
{
    int64_t now = cb_clock_mono_ms ();
    if (!self->plaintext && now >= self->next_keys_ms)
        s_refresh_keys (self);
    if (now < self->next_beat_ms)
        return;
    self->next_beat_ms = now + self->heartbeat_ms;
    zlist_t *gone = zlist_new ();
    if (!gone)
        return;
    Civicbus__V1__Heartbeat beat = CIVICBUS__V1__HEARTBEAT__INIT;
    beat.sender = self->id;
    beat.time_ms = cb_clock_now_ms ();
    for (adapter_t *a = zhashx_first (self->live); a; a = zhashx_next (self->live)) {
        beat.in_flight = a->in_flight;
        if (now - a->last_seen_ms > (int64_t) SILENT_BEATS * self->heartbeat_ms)
            zlist_append (gone, a);
        else
        if (departments_send (self, a, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_HEARTBEAT, NULL,
                              &beat.base))
            zlist_append (gone, a);
    }
    for (adapter_t *a = zlist_first (gone); a; a = zlist_next (gone))
        s_drop (self, a, now - a->last_seen_ms > (int64_t) SILENT_BEATS * self->heartbeat_ms
                         ? "silent for three heartbeats" : "unreachable");
    zlist_destroy (&gone);
}
