/*  test_bus.c — ZeroMQ helpers: one Envelope per message over PUSH/PULL and
    ROUTER/DEALER, bad frames dropped with an error, sends that cannot be
    delivered fail fast instead of blocking. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "civicbus/bus.h"
#include "test_redis.h"

static void
s_endpoint (char *buf, size_t cap)
{
    snprintf (buf, cap, "tcp://127.0.0.1:%d", test_free_port ());
}

static void
test_push_pull_doorbell (void **state)
{
    (void) state;
    char ep [64];
    s_endpoint (ep, sizeof ep);
    zsock_t *pull = cb_bus_pull_new (ep);
    assert_non_null (pull);
    zsock_t *push = cb_bus_push_new (ep);
    assert_non_null (push);
    zsock_set_rcvtimeo (pull, 5000);

    Civicbus__V1__Doorbell bell = CIVICBUS__V1__DOORBELL__INIT;
    bell.ticket_id = (char *) "320105-20261129-000000064";
    //  IMMEDIATE: the first send may find no completed connection yet.
    int sent = -1;
    for (int i = 0; i < 500 && sent != 0; i++) {
        sent = cb_bus_send (push, NULL, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DOORBELL, "trace-1",
                            &bell.base);
        if (sent)
            zclock_sleep (10);
    }
    assert_int_equal (sent, 0);
    cb_error_t err;
    Civicbus__V1__Envelope *env = cb_bus_recv (pull, NULL, &err);
    assert_non_null (env);
    assert_int_equal (env->type, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DOORBELL);
    assert_string_equal (env->trace_id, "trace-1");
    Civicbus__V1__Doorbell *got = envelope_payload_unpack (env, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DOORBELL, &err);
    assert_non_null (got);
    assert_string_equal (got->ticket_id, bell.ticket_id);
    protobuf_c_message_free_unpacked (&got->base, NULL);
    protobuf_c_message_free_unpacked (&env->base, NULL);

    //  A frame that is not an Envelope is consumed and reported.
    zstr_send (push, "not an envelope");
    env = cb_bus_recv (pull, NULL, &err);
    assert_null (env);
    assert_string_equal (err.code, "malformed");
    zsock_destroy (&push);
    zsock_destroy (&pull);
}

static void
test_push_without_peer_does_not_block (void **state)
{
    (void) state;
    char ep [64];
    s_endpoint (ep, sizeof ep);
    zsock_t *push = cb_bus_push_new (ep);
    assert_non_null (push);
    Civicbus__V1__Doorbell bell = CIVICBUS__V1__DOORBELL__INIT;
    bell.ticket_id = (char *) "x";
    int64_t start = zclock_mono ();
    assert_int_equal (cb_bus_send (push, NULL, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_DOORBELL, NULL,
                                   &bell.base), -1);
    assert_true (zclock_mono () - start < 1000);
    zsock_destroy (&push);
}

static void
test_router_dealer_round_trip (void **state)
{
    (void) state;
    char ep [64];
    s_endpoint (ep, sizeof ep);
    zsock_t *router = cb_bus_router_new (ep);
    assert_non_null (router);
    zsock_t *dealer = cb_bus_dealer_new (ep, "adapter-urban-1");
    assert_non_null (dealer);
    zsock_set_rcvtimeo (router, 5000);
    zsock_set_rcvtimeo (dealer, 5000);

    Civicbus__V1__AdapterHello hello = CIVICBUS__V1__ADAPTER_HELLO__INIT;
    hello.department = (char *) "urban";
    hello.adapter_id = (char *) "adapter-urban-1";
    hello.capacity = 8;
    int sent = -1;
    for (int i = 0; i < 500 && sent != 0; i++) {
        sent = cb_bus_send (dealer, NULL, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ADAPTER_HELLO, NULL,
                            &hello.base);
        if (sent)
            zclock_sleep (10);
    }
    assert_int_equal (sent, 0);
    zframe_t *from = NULL;
    cb_error_t err;
    Civicbus__V1__Envelope *env = cb_bus_recv (router, &from, &err);
    assert_non_null (env);
    assert_non_null (from);
    assert_true (zframe_streq (from, "adapter-urban-1"));
    protobuf_c_message_free_unpacked (&env->base, NULL);

    Civicbus__V1__Ack ack = CIVICBUS__V1__ACK__INIT;
    ack.ref = (char *) "hello";
    assert_int_equal (cb_bus_send (router, from, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ACK, NULL,
                                   &ack.base), 0);
    env = cb_bus_recv (dealer, NULL, &err);
    assert_non_null (env);
    assert_int_equal (env->type, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ACK);
    protobuf_c_message_free_unpacked (&env->base, NULL);

    //  ROUTER_MANDATORY: an unknown identity fails instead of vanishing.
    zframe_t *nobody = zframe_from ("nobody");
    assert_int_equal (cb_bus_send (router, nobody, CIVICBUS__V1__ENVELOPE_TYPE__ENVELOPE_ACK, NULL,
                                   &ack.base), -1);
    zframe_destroy (&nobody);
    zframe_destroy (&from);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
}

int
main (void)
{
    zsys_handler_set (NULL);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_push_pull_doorbell),
        cmocka_unit_test (test_push_without_peer_does_not_block),
        cmocka_unit_test (test_router_dealer_round_trip),
    };
    int rc = cmocka_run_group_tests (tests, NULL, NULL);
    zsys_shutdown ();
    return rc;
}
