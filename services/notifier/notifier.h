/*  notifier.h — the notifier's private parts: the channel senders (send.c)
    used by the worker threads of main.c. */

#ifndef CIVICBUS_NOTIFIER_H
#define CIVICBUS_NOTIFIER_H

#include <stdatomic.h>
#include <stddef.h>
#include "civicbus/notify_rules.h"
#include "civicbus/notify_queue.h"

//  sender_send results.
enum {
    SEND_OK = 0,             //  the receiver accepted it (2xx, SMTP 250)
    SEND_RETRY = 1,          //  try again later (network, timeout, 5xx, 408, 429)
    SEND_PERMANENT = 2,      //  retrying cannot help (4xx, no such subscription,
                             //  channel not configured): a dead letter now
};

typedef struct _sender_t sender_t;

//  One per worker thread: a libcurl easy handle (connections are reused)
//  and the rules' endpoints. Every transfer is bounded by timeout_ms, and
//  aborted early once *abandon becomes non-zero (a stop past its deadline).
sender_t *sender_new (const notify_rules_t *rules, int timeout_ms, atomic_int *abandon);
void sender_destroy (sender_t **self_p);

//  Sends one delivery by its channel. `err` gets a short reason on failure
//  (HTTP status and the start of the answer, or curl's error).
int sender_send (sender_t *self, const notify_record_t *rec, char *err, size_t errcap);

#endif
