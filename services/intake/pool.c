/*  pool.c — per-thread resources of the intake for reads: a Redis
    connection and the ticket store on it (new tickets go through the
    writer, writer.c).

    hiredis contexts belong to one thread at a time.
    libmicrohttpd decides which thread runs a handler, so rather than tie
    resources to threads we lend a worker to a handler for one request and
    take it back after: a mutex-protected free list (a full memory barrier
    between the threads that use a worker in turn). A handler that finds the list empty makes a new worker, so there are
    never more workers than handlers that ever ran at once (the HTTP thread
    count). */

#include "intake.h"
#include "civicbus/log.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct _s_node_t {
    intake_worker_t worker;         //  first: a worker pointer is a node pointer
    struct _s_node_t *next;         //  free list
    struct _s_node_t *all_next;     //  every worker, for destroy
} s_node_t;

struct _intake_pool_t {
    pthread_mutex_t lock;
    char *redis_url;
    int redis_timeout_ms;
    s_node_t *free_list;
    s_node_t *all;
};

/* ---- private ---- */

static void
s_node_free (s_node_t *node)
{
    ticket_store_destroy (&node->worker.store);
    cb_redis_destroy (&node->worker.redis);
    free (node);
}

//  Called with the lock held.
static s_node_t *
s_node_new (intake_pool_t *self)
{
    s_node_t *node = calloc (1, sizeof *node);
    if (!node)
        return NULL;
    char err [256] = "";
    node->worker.redis = cb_redis_new (self->redis_url, self->redis_timeout_ms, err, sizeof err);
    if (node->worker.redis)
        node->worker.store = ticket_store_new (node->worker.redis);
    if (!node->worker.redis || !node->worker.store) {
        cb_log (CB_LOG_ERROR, "cannot make a worker", "error", err [0] ? err : "out of memory", NULL);
        s_node_free (node);
        return NULL;
    }
    return node;
}

/* ---- public ---- */

intake_pool_t *
intake_pool_new (const char *redis_url, int redis_timeout_ms)
{
    intake_pool_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->redis_url = strdup (redis_url);
    if (!self->redis_url) {
        free (self);
        return NULL;
    }
    self->redis_timeout_ms = redis_timeout_ms;
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

void
intake_pool_destroy (intake_pool_t **self_p)
{
    assert (self_p);
    intake_pool_t *self = *self_p;
    if (self) {
        //  Every worker must have been given back (the server has stopped).
        s_node_t *node = self->all;
        while (node) {
            s_node_t *next = node->all_next;
            s_node_free (node);
            node = next;
        }
        pthread_mutex_destroy (&self->lock);
        free (self->redis_url);
        free (self);
        *self_p = NULL;
    }
}

intake_worker_t *
intake_pool_take (intake_pool_t *self)
{
    pthread_mutex_lock (&self->lock);
    s_node_t *node = self->free_list;
    if (node)
        self->free_list = node->next;
    else {
        node = s_node_new (self);
        if (node) {
            node->all_next = self->all;
            self->all = node;
        }
    }
    pthread_mutex_unlock (&self->lock);
    if (node)
        node->next = NULL;
    return node ? &node->worker : NULL;
}

void
intake_pool_give (intake_pool_t *self, intake_worker_t *worker)
{
    if (!worker)
        return;
    s_node_t *node = (s_node_t *) worker;
    pthread_mutex_lock (&self->lock);
    node->next = self->free_list;
    self->free_list = node;
    pthread_mutex_unlock (&self->lock);
}
