/*  memory.c — Redis memory per open ticket. Creates N tickets through the
    store exactly as the intake does (demo-city bodies, grid path, the
    create script), then takes each through four more events as the
    dispatcher and a department would (accept, dispatch, sign, progress:
    five events in all) and adds the timers of its running resolve
    deadline. Prints INFO used_memory after minus before, divided by N, with
    and without the notifier's outbox (ntfq, drained in a running system),
    and the MEMORY USAGE of one ticket's own keys.

    Timers are the real ones: the dispatch and sign changes carry their
    clock effects as the dispatcher's do (ticket_effects_ops_fn with the
    demo city's deploy/config/sla.json and calendar): the dispatch starts the
    sign clock and arms its timers, the sign ends it (its timers removed)
    and starts the resolve clock, whose timers (warn, due, escalate-1..3 of
    the default policy: 5) stay armed, in tmr:{bNN} with the module's
    members (timers_schedule_ops). The tickets carry no policy name, so the
    default policy (standard-5d) times them. --timers 0 loads no policies:
    no clock starts, no timer is armed.

    Use an empty Redis of its own (bench/run starts one): the delta is
    global. Usage: bench-memory --redis URL [--count N] [--timers 0|1] [--json FILE] */

#include "bodies.h"
#include "civicbus/redis.h"
#include "civicbus/sla.h"
#include "civicbus/ticket_effects.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_json.h"
#include "civicbus/ticket_store.h"
#include "civicbus/timers.h"
#include "civicbus/workcal.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const s_departments [] = { "urban", "police", "civil", "market", "health",
                                              "housing" };

/* ---- private ---- */

static long long
s_used_memory (cb_redis_t *redis)
{
    redisReply *reply = cb_redis_command (redis, "INFO memory");
    long long used = -1;
    if (reply && reply->type == REDIS_REPLY_STRING) {
        const char *line = strstr (reply->str, "used_memory:");
        if (line)
            used = atoll (line + strlen ("used_memory:"));
    }
    if (reply)
        freeReplyObject (reply);
    return used;
}

static long long
s_memory_usage (cb_redis_t *redis, const char *key)
{
    redisReply *reply = cb_redis_command (redis, "MEMORY USAGE %s SAMPLES 0", key);
    long long n = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    if (reply)
        freeReplyObject (reply);
    return n;
}

//  The accept change takes the ticket out of the inbox, as the dispatcher's does.
static int
s_accept_ops (const cb_ticket_t *before, cb_ticket_t *after, const ticket_outcome_t *outcome,
              ts_ops_t *ops, void *arg)
{
    (void) before; (void) outcome; (void) arg;
    char inbox [32];
    ts_bucket_key (inbox, sizeof inbox, "inbox", ticket_id_bucket (after->id));
    return ts_ops_zrem (ops, inbox, after->id);
}

static int
s_event (ticket_store_t *store, const char *id, ticket_event_kind_t kind, const char *dept,
         const char *text, int64_t now_ms, ts_ops_fn *ops_for, void *ops_arg)
{
    ticket_input_t input = { .kind = kind, .department = dept, .text = text };
    ticket_actor_t system = { CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM, "dispatcher-a", NULL };
    ticket_actor_t department = { CIVICBUS__V1__ACTOR_KIND__ACTOR_DEPARTMENT, dept, NULL };
    bool by_department = kind == TEV_SIGN || kind == TEV_PROGRESS;
    ticket_outcome_t outcome;
    int rc = ticket_store_transition (store, id, &input, by_department ? &department : &system,
                                      now_ms, 3, ops_for, ops_arg, &outcome, NULL);
    if (rc != TS_OK)
        fprintf (stderr, "bench-memory: %s on %s: %d %s\n", ticket_event_name (kind), id, rc,
                 rc == TS_REFUSED ? outcome.reason : "");
    return rc == TS_OK ? 0 : -1;
}

//  The clock effects of a change, as the dispatcher carries them
//  (ticket_effects.h); NULL policies: none loaded, no clock starts.
static int
s_effects (ticket_store_t *store, const char *id, ticket_event_kind_t kind, const char *dept,
           int64_t now_ms, const sla_policies_t *policies, const workcal_t *cal)
{
    ticket_effects_arg_t arg = { .policies = policies, .cal = cal, .now_ms = now_ms };
    return s_event (store, id, kind, dept, NULL, now_ms, ticket_effects_ops_fn, &arg);
}

static char *
s_read_config (const char *name, size_t *len)
{
    char path [1024];
    snprintf (path, sizeof path, "%s/deploy/config/%s", CIVICBUS_SOURCE_DIR, name);
    return cb_file_read (path, CB_FILE_CITY_DATA_MAX, len, NULL, 0);
}

/* ---- main ---- */

int
main (int argc, char *argv [])
{
    const char *url = "redis://127.0.0.1:6380/0";
    long count = 20000;
    int timers = 1;
    const char *json_path = NULL;
    static const struct option options [] = {
        { "redis", required_argument, NULL, 'r' }, { "count", required_argument, NULL, 'n' },
        { "timers", required_argument, NULL, 't' }, { "json", required_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
            case 'r': url = optarg; break;
            case 'n': count = atol (optarg); break;
            case 't': timers = atoi (optarg); break;
            case 'j': json_path = optarg; break;
            default:
                fprintf (opt == 'h' ? stdout : stderr,
                         "Usage: bench-memory --redis URL [--count N] [--timers 0|1] [--json FILE]\n"
                         "Redis memory per open ticket with five events, indexes and the\n"
                         "real timers of its running resolve deadline (--timers 0: none).\n"
                         "Use an empty Redis of its own.\n");
                return opt == 'h' ? 0 : 2;
        }
    }
    if (count < 1 || timers < 0 || timers > 1)
        return 2;
    char err [512] = "";
    cb_redis_t *redis = cb_redis_new (url, 5000, err, sizeof err);
    if (!redis || cb_redis_connect (redis)) {
        fprintf (stderr, "bench-memory: cannot connect to %s %s\n", url, err);
        cb_redis_destroy (&redis);
        return 1;
    }
    bodies_t bodies;
    char grids [1024], catalog [1024];
    snprintf (grids, sizeof grids, "%s/deploy/config/grids.geojson", CIVICBUS_SOURCE_DIR);
    snprintf (catalog, sizeof catalog, "%s/deploy/config/catalog.json", CIVICBUS_SOURCE_DIR);
    if (bodies_make (&bodies, grids, catalog, 2000, 0x5EED, err, sizeof err)) {
        fprintf (stderr, "bench-memory: %s\n", err);
        cb_redis_destroy (&redis);
        return 1;
    }
    size_t grids_len = 0;
    char *grids_text = cb_file_read (grids, CB_FILE_CITY_DATA_MAX, &grids_len, NULL, 0);
    grid_index_t *index = grids_text ? grid_index_from_geojson (grids_text, grids_len, err,
                                                                sizeof err) : NULL;
    free (grids_text);
    //  The demo city's policies and calendar, as the dispatcher loads them.
    sla_policies_t *policies = NULL;
    size_t text_len = 0;
    char *text = timers ? s_read_config ("sla.json", &text_len) : NULL;
    if (text)
        policies = sla_from_json (text, text_len, err, sizeof err);
    free (text);
    text = s_read_config ("calendar-cn-2026.json", &text_len);
    workcal_t *cal = text ? workcal_from_json (text, text_len, err, sizeof err) : NULL;
    free (text);
    if (!cal)
        cal = workcal_new_default ();
    if (timers && !policies)
        fprintf (stderr, "bench-memory: cannot load sla.json: %s\n", err);
    ticket_store_t *store = ticket_store_new (redis);
    int rc = 1;
    char first_id [CB_TICKET_ID_MAX] = "";
    long long before = s_used_memory (redis);
    struct timespec t0;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    int64_t now_ms = (int64_t) time (NULL) * 1000;
    long done = 0;
    for (long i = 0; index && store && cal && (policies || !timers) && i < count; i++) {
        cb_ticket_t *t = NULL;
        cb_error_t jerr;
        size_t b = (size_t) i % bodies.count;
        if (ticket_from_request_json (bodies.bodies [b], bodies.lens [b], &t, &jerr)) {
            fprintf (stderr, "bench-memory: body refused: %s %s\n", jerr.code, jerr.message);
            break;
        }
        //  The grid path, as the intake's locate step sets it.
        grid_hit_t hit;
        if (t->location && t->location->has_point
        &&  grid_index_locate (index, t->location->lat, t->location->lon, &hit) == 0) {
            const char *codes [GRID_PATH_MAX];
            size_t n = grid_hit_codes (&hit, codes, GRID_PATH_MAX);
            t->location->grid_code = strdup (hit.code);
            t->location->grid_path = calloc (n, sizeof (char *));
            for (size_t k = 0; k < n; k++)
                t->location->grid_path [k] = strdup (codes [k]);
            t->location->n_grid_path = n;
        }
        char idem [96], id [CB_TICKET_ID_MAX];
        snprintf (idem, sizeof idem, "key:bench-app:memory-%ld-%ld", (long) getpid (), i);
        ticket_actor_t reporter = { CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER, "bench-app", NULL };
        int created = ticket_store_create (store, t, "320105", idem, 2592000, &reporter, now_ms,
                                           id, sizeof id);
        civicbus__v1__ticket__free_unpacked (t, NULL);
        if (created != TS_OK) {
            fprintf (stderr, "bench-memory: create failed: %d\n", created);
            break;
        }
        const char *dept = s_departments [i % 6];
        if (s_event (store, id, TEV_ACCEPT, NULL, NULL, now_ms + 100, s_accept_ops, NULL)
        ||  s_effects (store, id, TEV_DISPATCH, dept, now_ms + 200, policies, cal)
        ||  s_effects (store, id, TEV_SIGN, dept, now_ms + 60000, policies, cal)
        ||  s_event (store, id, TEV_PROGRESS, dept, "已派人到现场核实，预计两个工作日内处理完毕。",
                     now_ms + 3600000, NULL, NULL))
            break;
        if (i == 0)
            snprintf (first_id, sizeof first_id, "%s", id);
        done++;
    }
    struct timespec t1;
    clock_gettime (CLOCK_MONOTONIC, &t1);
    long long after = s_used_memory (redis);
    size_t armed = 0, in_flight = 0;
    timers_count (redis, &armed, &in_flight);
    double timers_per_ticket = done ? (double) armed / (double) done : 0;
    long long ntfq_members = 0;
    for (int bucket = 0; bucket < CB_BUCKETS; bucket++) {
        char key [32];
        ts_bucket_key (key, sizeof key, "ntfq", bucket);
        redisReply *reply = cb_redis_command (redis, "ZCARD %s", key);
        if (reply && reply->type == REDIS_REPLY_INTEGER)
            ntfq_members += reply->integer;
        if (reply)
            freeReplyObject (reply);
        reply = cb_redis_command (redis, "DEL %s", key);
        if (reply)
            freeReplyObject (reply);
    }
    long long without_outbox = s_used_memory (redis);
    if (done == count && before > 0 && after > 0) {
        char key [128];
        ts_key (key, sizeof key, "t", first_id);
        long long ticket_hash = s_memory_usage (redis, key);
        ts_key (key, sizeof key, "ev", first_id);
        long long events_list = s_memory_usage (redis, key);
        double per = (double) (after - before) / (double) done;
        double per_open = (double) (without_outbox - before) / (double) done;
        double seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf ("memory: %ld tickets, 5 events and %.1f real timers each (timers_schedule_ops), "
                "in %.1f s\n", done, timers_per_ticket, seconds);
        printf ("memory: %.0f bytes per open ticket (%.2f KiB) without the notifier outbox; "
                "%.0f bytes with its %lld entries\n", per_open, per_open / 1024, per,
                ntfq_members);
        printf ("memory: one ticket's keys: t: hash %lld bytes, ev: list %lld bytes "
                "(the rest: idempotency key, indexes, timers, counters)\n",
                ticket_hash, events_list);
        if (json_path) {
            FILE *out = fopen (json_path, "w");
            if (out) {
                fprintf (out, "{\"tickets\":%ld,\"events_per_ticket\":5,\"timers_per_ticket\":%.2f,"
                         "\"timers\":\"real (timers_schedule_ops)\","
                         "\"bytes_per_open_ticket\":%.1f,\"bytes_per_ticket_with_outbox\":%.1f,"
                         "\"ticket_hash_bytes\":%lld,\"event_list_bytes\":%lld,"
                         "\"seconds\":%.2f}\n", done, timers_per_ticket, per_open, per, ticket_hash,
                         events_list, seconds);
                fclose (out);
            }
        }
        rc = 0;
    }
    else
        fprintf (stderr, "bench-memory: only %ld of %ld tickets made\n", done, count);
    ticket_store_destroy (&store);
    sla_destroy (&policies);
    workcal_destroy (&cal);
    grid_index_destroy (&index);
    bodies_free (&bodies);
    cb_redis_destroy (&redis);
    return rc;
}
