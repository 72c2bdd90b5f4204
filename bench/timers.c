/*  timers.c — time-limit timers at scale (issue #7, "Timers"): how fast a
    million can be armed, and how late they fire while they come due at a
    steady rate with a million armed. Everything goes through the real
    timers module (common/timers.c): its member text (timer_member), its
    claim script (timers_claim_all), and, in the default fire mode, the real
    dispatcher's timer loop (services/dispatcher/deadlines.c), which bench/run
    starts against the same Redis.

    Modes (--mode):
      fire    (default) (a) RAW ARMING: --count members ("ID|sign|KIND|GEN",
              timer_member) go into tmr:{bNN} with one ZADD each, the write a
              change that starts a deadline makes per timer (ts_ops_zadd in
              the apply script), pipelined --pipeline commands per round
              trip. This is the arming rate of the sorted sets alone: no
              ticket is written with them. --count - N of them are due a day
              or more later (5 per made-up ticket: warn, due, escalate-1..3,
              as a running sign deadline of the default policy has); the
              last N = --rate x --seconds are "warn" timers of N real
              tickets, due at --rate per second from T0 (a few seconds after
              arming). The N tickets are written first, pipelined, in the
              store's layout (t:{bNN}:ID hash: pb, v, st), as
              tests/integration/test_timer_faults.py does: DISPATCHED, a
              running sign deadline due in two days (the GEN), light green.
              Then it waits while the dispatcher fires them: each fire is
              the dispatcher's load, verdict and compare-and-set that turns
              the light yellow and appends a "warning" event whose payload
              has late_ms = (the dispatcher's clock when it stored the
              effect) - (due time). Lateness is read back from those events
              (millisecond resolution): p50, p99, max, and how many fired.
      claim   the same arming, but no tickets and no dispatcher: this
              program itself runs timers_claim_all every --tick-ms (the
              dispatcher's CIVICBUS_TIMER_MS, default 100) with the
              dispatcher's batch (--batch per bucket, default 8, repeating at
              once when a bucket's batch was full) and records (claim time -
              due) in microseconds. The claim path alone: how much of the
              lateness is the loop's cadence and the claim script.
      store   (b) TICKETS WITH THEIR TIMERS through the store: --tickets N
              tickets created with ticket_store_create, accepted, and
              dispatched with ticket_store_transition and
              ticket_effects_ops_fn (the dispatcher's path: the dispatch
              starts the sign clock and timers_schedule_ops arms its timers in
              the same compare-and-set), one change at a time as the
              dispatcher makes them. Reports tickets/s, and timers armed per
              second of dispatch changes.
    Also reports Redis bytes per armed timer (INFO used_memory delta).

    Use an empty Redis of its own: it writes ~1 M members and, in fire
    mode, N tickets. Usage: see --help. */

#include "histogram.h"
#include "civicbus/clock.h"
#include "civicbus/file.h"
#include "civicbus/redis.h"
#include "civicbus/sla.h"
#include "civicbus/ticket_effects.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_store.h"
#include "civicbus/timers.h"
#include "civicbus/workcal.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_DISTRICT        "320105"
#define S_DAY_FIRING      20261128      //  ids of the tickets whose timers fire
#define S_DAY_FUTURE      20261127      //  ids of the made-up tickets of far timers
#define S_DAY_MS          86400000LL

typedef struct {
    const char *url;
    const char *mode;
    long count;                 //  timers armed (fire, claim)
    double rate;                //  due per second from T0
    double seconds;             //  over this long
    long lead_ms;               //  T0 = end of arming + lead
    int pipeline;               //  commands per round trip
    int tick_ms;                //  claim mode: the loop's period
    int batch;                  //  claim mode: per bucket per turn
    long tickets;               //  store mode
    double wait_s;              //  fire: give up this long after the last due time
    const char *json_path;
} opts_t;

typedef struct {
    long armed;
    double arm_seconds;
    long long bytes_before, bytes_after;
    long fire_count;
    int64_t t0_ms;
} arm_result_t;

/* ---- private ---- */

static double
s_now_s (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t
s_wall_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

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

//  Reads `pending` replies; counts errors. 0 or -1 (connection lost).
static int
s_drain (cb_redis_t *redis, int *pending, long *errors)
{
    for (; *pending > 0; (*pending)--) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return -1;
        if (reply->type == REDIS_REPLY_ERROR) {
            if (*errors == 0)
                fprintf (stderr, "bench-timers: redis: %s\n", reply->str);
            (*errors)++;
        }
        freeReplyObject (reply);
    }
    return 0;
}

static void
s_ticket_id (char *buf, size_t cap, int day, long n)
{
    ticket_id_format (buf, cap, S_DISTRICT, day, 1000 + n / CB_BUCKETS, (int) (n % CB_BUCKETS));
}

//  ZADD of one member to its bucket's tmr, appended to the pipeline.
static int
s_append_timer (cb_redis_t *redis, const cb_timer_t *timer)
{
    char member [TIMER_MEMBER_MAX], key [32];
    if (timer_member (timer, member, sizeof member))
        return -1;
    ts_bucket_key (key, sizeof key, "tmr", ticket_id_bucket (timer->ticket_id));
    return cb_redis_append (redis, "ZADD %s %" PRId64 " %s", key, timer->at_ms, member);
}

//  The N tickets whose warn timers will fire: DISPATCHED to police, a sign
//  deadline running (started an hour ago, due at gen_ms), light green.
static int
s_seed_tickets (cb_redis_t *redis, long n, int64_t now_ms, int64_t gen_ms, int pipeline)
{
    int pending = 0;
    long errors = 0;
    for (long i = 0; i < n; i++) {
        char id [CB_TICKET_ID_MAX], key [96];
        s_ticket_id (id, sizeof id, S_DAY_FIRING, i);
        Civicbus__V1__Deadline deadline = CIVICBUS__V1__DEADLINE__INIT;
        deadline.stage = CIVICBUS__V1__STAGE__STAGE_SIGN;
        deadline.due_ms = gen_ms;
        deadline.warn_ms = gen_ms - S_DAY_MS / 5;
        deadline.started_ms = now_ms - 3600000;
        Civicbus__V1__Deadline *deadlines [] = { &deadline };
        Civicbus__V1__Ticket t = CIVICBUS__V1__TICKET__INIT;
        t.id = id;
        t.source = CIVICBUS__V1__SOURCE__SOURCE_APP;
        t.request_type = CIVICBUS__V1__REQUEST_TYPE__REPORT;
        t.category = "police.public_order.fight";
        t.description = "bench-timers: 小区门口有人打架";
        t.state = CIVICBUS__V1__TICKET_STATE__DISPATCHED;
        t.department = "police";
        t.n_deadlines = 1;
        t.deadlines = deadlines;
        t.light = CIVICBUS__V1__LIGHT__LIGHT_GREEN;
        t.version = 1;
        t.created_ms = now_ms - 3600000;
        t.updated_ms = now_ms - 3600000;
        t.policy = "standard-5d";
        t.event_count = 0;
        uint8_t pb [1024];
        size_t len = civicbus__v1__ticket__get_packed_size (&t);
        if (len > sizeof pb)
            return -1;
        civicbus__v1__ticket__pack (&t, pb);
        ts_key (key, sizeof key, "t", id);
        if (cb_redis_append (redis, "HSET %s pb %b v 1 st %d", key, pb, len, (int) t.state))
            return -1;
        if (++pending >= pipeline && s_drain (redis, &pending, &errors))
            return -1;
    }
    if (s_drain (redis, &pending, &errors))
        return -1;
    return errors ? -1 : 0;
}

//  (a) Arms opts->count members: the far ones first, then the firing ones
//  from T0 = now + lead.
static int
s_arm (cb_redis_t *redis, const opts_t *opts, bool with_tickets, arm_result_t *result)
{
    memset (result, 0, sizeof *result);
    long fire = (long) (opts->rate * opts->seconds);
    if (fire > opts->count)
        fire = opts->count;
    result->fire_count = fire;
    int64_t now_ms = cb_clock_now_ms ();
    int64_t gen_ms = now_ms + 2 * S_DAY_MS;
    if (with_tickets) {
        double t0 = s_now_s ();
        if (s_seed_tickets (redis, fire, now_ms, gen_ms, opts->pipeline)) {
            fprintf (stderr, "bench-timers: cannot write the tickets\n");
            return -1;
        }
        printf ("timers: %ld tickets written (store layout, pipelined) in %.1f s\n", fire,
                s_now_s () - t0);
    }
    result->bytes_before = s_used_memory (redis);
    int pending = 0;
    long errors = 0;
    double started = s_now_s ();
    //  Far timers: a made-up running sign deadline per 5 members, due days
    //  ahead, spread over a month so the set is not one score.
    static const timer_kind_t kinds [] = { TIMER_WARN, TIMER_DUE, TIMER_ESCALATE,
                                           TIMER_ESCALATE, TIMER_ESCALATE };
    long far = opts->count - fire;
    for (long i = 0; i < far; i++) {
        cb_timer_t timer = { .stage = CIVICBUS__V1__STAGE__STAGE_SIGN };
        long ticket = i / 5;
        int k = (int) (i % 5);
        s_ticket_id (timer.ticket_id, sizeof timer.ticket_id, S_DAY_FUTURE, ticket);
        timer.kind = kinds [k];
        timer.level = k >= 2 ? k - 1 : 0;
        timer.generation = now_ms + 2 * S_DAY_MS + (ticket * 13) % (30 * S_DAY_MS);
        timer.at_ms = timer.generation + (k - 1) * 3600000LL;
        if (s_append_timer (redis, &timer))
            return -1;
        if (++pending >= opts->pipeline && s_drain (redis, &pending, &errors))
            return -1;
    }
    if (s_drain (redis, &pending, &errors))
        return -1;
    //  Firing timers: warn of each seeded ticket, due at rate/s from T0.
    result->t0_ms = cb_clock_now_ms () + opts->lead_ms + (int64_t) (fire / 100);
    for (long i = 0; i < fire; i++) {
        cb_timer_t timer = { .stage = CIVICBUS__V1__STAGE__STAGE_SIGN, .kind = TIMER_WARN,
                             .generation = gen_ms };
        s_ticket_id (timer.ticket_id, sizeof timer.ticket_id, S_DAY_FIRING, i);
        timer.at_ms = result->t0_ms + (int64_t) ((double) i * 1000.0 / opts->rate);
        if (s_append_timer (redis, &timer))
            return -1;
        if (++pending >= opts->pipeline && s_drain (redis, &pending, &errors))
            return -1;
    }
    if (s_drain (redis, &pending, &errors))
        return -1;
    result->arm_seconds = s_now_s () - started;
    result->armed = opts->count - errors;
    result->bytes_after = s_used_memory (redis);
    int64_t margin = result->t0_ms - cb_clock_now_ms ();
    printf ("timers: (a) raw arming: %ld members (ZADD each, pipeline %d) in %.2f s = %.0f/s; "
            "%.0f bytes per armed timer; first due %lld ms after arming ended\n",
            result->armed, opts->pipeline, result->arm_seconds,
            result->armed / result->arm_seconds,
            (double) (result->bytes_after - result->bytes_before) / (double) result->armed,
            (long long) margin);
    if (errors || margin < 0) {
        fprintf (stderr, "bench-timers: %ld ZADD errors; arming ended %lld ms after T0\n",
                 errors, (long long) -margin);
        return -1;
    }
    return 0;
}

static void
s_sleep_ms (int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    nanosleep (&ts, NULL);
}

//  Lateness of the fired warn timers, from their "warning" events'
//  late_ms. Pipelined LINDEX ev:... -1 (the only event the run appends).
static long
s_read_lateness (cb_redis_t *redis, long fire, int pipeline, hist_t *late, long *missing)
{
    long found = 0;
    *missing = 0;
    for (long start = 0; start < fire; start += pipeline) {
        long end = start + pipeline < fire ? start + pipeline : fire;
        for (long i = start; i < end; i++) {
            char id [CB_TICKET_ID_MAX], key [96];
            s_ticket_id (id, sizeof id, S_DAY_FIRING, i);
            ts_key (key, sizeof key, "ev", id);
            if (cb_redis_append (redis, "LINDEX %s -1", key))
                return -1;
        }
        for (long i = start; i < end; i++) {
            redisReply *reply = cb_redis_get_reply (redis);
            if (!reply)
                return -1;
            Civicbus__V1__TicketEvent *ev = reply->type == REDIS_REPLY_STRING
                ? civicbus__v1__ticket_event__unpack (NULL, reply->len, (const uint8_t *) reply->str)
                : NULL;
            const char *at = NULL;
            char payload [512] = "";
            if (ev && strcmp (ev->type, "warning") == 0 && ev->payload.len < sizeof payload) {
                memcpy (payload, ev->payload.data, ev->payload.len);
                at = strstr (payload, "\"late_ms\":");
            }
            if (at) {
                long long ms = atoll (at + strlen ("\"late_ms\":"));
                hist_record (late, (uint64_t) (ms < 0 ? 0 : ms) * 1000000ull);
                found++;
            }
            else
                (*missing)++;
            if (ev)
                civicbus__v1__ticket_event__free_unpacked (ev, NULL);
            freeReplyObject (reply);
        }
    }
    return found;
}

static void
s_print_hist (const char *what, const hist_t *h)
{
    printf ("timers: %s lateness ms: p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (%llu timers)\n",
            what, hist_quantile (h, 0.5) / 1e6, hist_quantile (h, 0.99) / 1e6,
            hist_quantile (h, 0.999) / 1e6, h->max / 1e6, (unsigned long long) h->total);
}

static void
s_json_hist (FILE *out, const char *name, const hist_t *h)
{
    fprintf (out, "\"%s\":{\"count\":%llu,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,"
             "\"max\":%.2f,\"mean\":%.2f}", name, (unsigned long long) h->total,
             hist_quantile (h, 0.5) / 1e6, hist_quantile (h, 0.9) / 1e6,
             hist_quantile (h, 0.99) / 1e6, hist_quantile (h, 0.999) / 1e6, h->max / 1e6,
             hist_mean (h) / 1e6);
}

static void
s_json_arm (FILE *out, const opts_t *opts, const arm_result_t *arm)
{
    fprintf (out, "\"armed\":%ld,\"arm_seconds\":%.3f,\"arm_rate\":%.0f,\"pipeline\":%d,"
             "\"bytes_per_timer\":%.1f,\"fire_count\":%ld,\"fire_rate\":%.0f,\"fire_seconds\":%.1f,",
             arm->armed, arm->arm_seconds, arm->armed / arm->arm_seconds, opts->pipeline,
             (double) (arm->bytes_after - arm->bytes_before) / (double) arm->armed,
             arm->fire_count, opts->rate, opts->seconds);
}

//  Fire mode: arm, then wait for the dispatcher to fire the N warn timers.
static int
s_mode_fire (cb_redis_t *redis, const opts_t *opts)
{
    arm_result_t arm;
    if (s_arm (redis, opts, true, &arm))
        return 1;
    long keep = arm.armed - arm.fire_count;
    int64_t last_due = arm.t0_ms + (int64_t) (opts->seconds * 1000);
    int64_t give_up = last_due + (int64_t) (opts->wait_s * 1000);
    size_t armed = 0, in_flight = 0;
    int64_t done_ms = -1;
    //  Progress once a second: how far behind the loop is (still armed
    //  although due).
    int64_t next_report = arm.t0_ms + 1000;
    while (cb_clock_now_ms () < give_up) {
        if (timers_count (redis, &armed, &in_flight))
            return 1;
        int64_t now = cb_clock_now_ms ();
        if (now >= arm.t0_ms && (long) armed <= keep && in_flight == 0) {
            done_ms = now;
            break;
        }
        if (now >= next_report) {
            long due_now = now < arm.t0_ms ? 0
                         : (long) ((double) (now - arm.t0_ms) * opts->rate / 1000.0);
            if (due_now > arm.fire_count)
                due_now = arm.fire_count;
            long fired = arm.fire_count - ((long) armed - keep) - (long) in_flight;
            printf ("timers: +%4.1f s  due %ld  fired %ld  in flight %zu\n",
                    (now - arm.t0_ms) / 1000.0, due_now, fired, in_flight);
            fflush (stdout);
            next_report += 5000;
        }
        s_sleep_ms (100);
    }
    hist_t *late = malloc (sizeof *late);
    if (!late)
        return 1;
    hist_reset (late);
    long missing = 0;
    long found = s_read_lateness (redis, arm.fire_count, opts->pipeline, late, &missing);
    printf ("timers: fire: %ld of %ld warn timers fired by the dispatcher (%ld without a "
            "warning event); all done %.1f s after the last was due\n", found, arm.fire_count,
            missing, done_ms > 0 ? (done_ms - last_due) / 1000.0 : -1.0);
    s_print_hist ("dispatcher (effect stored - due)", late);
    int rc = found == arm.fire_count ? 0 : 1;
    if (opts->json_path) {
        FILE *out = fopen (opts->json_path, "w");
        if (out) {
            fprintf (out, "{\"mode\":\"fire\",");
            s_json_arm (out, opts, &arm);
            fprintf (out, "\"fired\":%ld,\"missing\":%ld,\"done_after_last_due_s\":%.2f,",
                     found, missing, done_ms > 0 ? (done_ms - last_due) / 1000.0 : -1.0);
            s_json_hist (out, "lateness_ms", late);
            fprintf (out, "}\n");
            fclose (out);
        }
    }
    free (late);
    return rc;
}

//  Claim mode: this program is the loop; timers_claim_all as the
//  dispatcher calls it.
static int
s_mode_claim (cb_redis_t *redis, const opts_t *opts)
{
    arm_result_t arm;
    if (s_arm (redis, opts, false, &arm))
        return 1;
    hist_t *late = malloc (sizeof *late);
    if (!late)
        return 1;
    hist_reset (late);
    int64_t give_up = arm.t0_ms + (int64_t) ((opts->seconds + opts->wait_s) * 1000);
    long claimed = 0, turns = 0;
    double claim_s = 0;
    while (claimed < arm.fire_count && cb_clock_now_ms () < give_up) {
        double started = s_now_s ();
        bool full = false;
        cb_timer_t *timers = NULL;
        size_t count = 0;
        if (timers_claim_all (redis, cb_clock_now_ms (), 600000, opts->batch, &timers, &count)) {
            fprintf (stderr, "bench-timers: timers_claim_all failed\n");
            free (late);
            return 1;
        }
        int64_t now_us = s_wall_us ();
        for (size_t i = 0; i < count; i++) {
            int64_t us = now_us - timers [i].at_ms * 1000;
            hist_record (late, (uint64_t) (us < 0 ? 0 : us) * 1000ull);
        }
        claimed += (long) count;
        full = count >= (size_t) opts->batch;
        free (timers);
        claim_s += s_now_s () - started;
        turns++;
        if (!full) {
            int rest = opts->tick_ms - (int) ((s_now_s () - started) * 1000);
            if (rest > 0)
                s_sleep_ms (rest);
        }
    }
    printf ("timers: claim: %ld of %ld claimed in %ld turns (every %d ms, batch %d per "
            "bucket); %.2f ms per timers_claim_all on average\n", claimed, arm.fire_count,
            turns, opts->tick_ms, opts->batch, turns ? claim_s * 1000 / turns : 0);
    s_print_hist ("claim only (claimed - due)", late);
    if (opts->json_path) {
        FILE *out = fopen (opts->json_path, "w");
        if (out) {
            fprintf (out, "{\"mode\":\"claim\",");
            s_json_arm (out, opts, &arm);
            fprintf (out, "\"claimed\":%ld,\"turns\":%ld,\"tick_ms\":%d,\"batch\":%d,"
                     "\"claim_call_ms\":%.3f,", claimed, turns, opts->tick_ms, opts->batch,
                     turns ? claim_s * 1000 / turns : 0);
            s_json_hist (out, "lateness_ms", late);
            fprintf (out, "}\n");
            fclose (out);
        }
    }
    int rc = claimed == arm.fire_count ? 0 : 1;
    free (late);
    return rc;
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

//  (b) Store mode: tickets created, accepted and dispatched through the
//  store; the dispatch change arms the sign deadline's timers.
static int
s_mode_store (cb_redis_t *redis, const opts_t *opts)
{
    char err [512] = "", path [1024];
    size_t len = 0;
    snprintf (path, sizeof path, "%s/deploy/config/sla.json", CIVICBUS_SOURCE_DIR);
    char *text = cb_file_read (path, CB_FILE_CITY_DATA_MAX, &len, NULL, 0);
    sla_policies_t *policies = text ? sla_from_json (text, len, err, sizeof err) : NULL;
    free (text);
    snprintf (path, sizeof path, "%s/deploy/config/calendar-cn-2026.json", CIVICBUS_SOURCE_DIR);
    text = cb_file_read (path, CB_FILE_CITY_DATA_MAX, &len, NULL, 0);
    workcal_t *cal = text ? workcal_from_json (text, len, err, sizeof err) : workcal_new_default ();
    free (text);
    ticket_store_t *store = ticket_store_new (redis);
    if (!policies || !cal || !store) {
        fprintf (stderr, "bench-timers: cannot load the policies or calendar: %s\n", err);
        sla_destroy (&policies);
        workcal_destroy (&cal);
        ticket_store_destroy (&store);
        return 1;
    }
    ticket_actor_t reporter = { CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER, "bench-app", NULL };
    ticket_actor_t system = { CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM, "dispatcher-a", NULL };
    long long bytes_before = s_used_memory (redis);
    double started = s_now_s (), dispatch_s = 0;
    long done = 0;
    int rc = 0;
    for (long i = 0; i < opts->tickets && rc == 0; i++) {
        int64_t now_ms = cb_clock_now_ms ();
        Civicbus__V1__Ticket t = CIVICBUS__V1__TICKET__INIT;
        t.source = CIVICBUS__V1__SOURCE__SOURCE_APP;
        t.request_type = CIVICBUS__V1__REQUEST_TYPE__REPORT;
        t.category = "police.public_order.fight";
        t.description = "bench-timers: 小区门口有人打架";
        t.policy = "standard-5d";
        //  The store fills in its fields with heap copies: give it its own copy.
        cb_ticket_t *copy = ticket_clone (&t);
        char idem [96], id [CB_TICKET_ID_MAX];
        snprintf (idem, sizeof idem, "key:bench-app:timers-%ld-%ld", (long) getpid (), i);
        int created = copy ? ticket_store_create (store, copy, S_DISTRICT, idem, 2592000,
                                                  &reporter, now_ms, id, sizeof id) : TS_ERROR;
        if (copy)
            civicbus__v1__ticket__free_unpacked (copy, NULL);
        ticket_input_t accept = { .kind = TEV_ACCEPT };
        ticket_input_t dispatch = { .kind = TEV_DISPATCH, .department = "police" };
        ticket_outcome_t outcome;
        ticket_effects_arg_t effects = { .policies = policies, .cal = cal, .now_ms = now_ms };
        if (created != TS_OK
        ||  ticket_store_transition (store, id, &accept, &system, now_ms, 3, s_accept_ops, NULL,
                                     &outcome, NULL) != TS_OK) {
            fprintf (stderr, "bench-timers: create or accept failed (%d)\n", created);
            rc = 1;
            break;
        }
        double d0 = s_now_s ();
        int dispatched = ticket_store_transition (store, id, &dispatch, &system, now_ms, 3,
                                                  ticket_effects_ops_fn, &effects, &outcome, NULL);
        dispatch_s += s_now_s () - d0;
        if (dispatched != TS_OK) {
            fprintf (stderr, "bench-timers: dispatch failed (%d) %s\n", dispatched,
                     outcome.reason);
            rc = 1;
            break;
        }
        done++;
    }
    double seconds = s_now_s () - started;
    size_t armed = 0, in_flight = 0;
    timers_count (redis, &armed, &in_flight);
    long long bytes_after = s_used_memory (redis);
    printf ("timers: (b) store: %ld tickets created, accepted and dispatched one change at a time "
            "in %.1f s (%.0f tickets/s); the dispatch changes armed %zu timers (%.1f per ticket) "
            "in %.1f s of dispatch changes = %.0f timers/s (%.0f dispatch changes/s)\n",
            done, seconds, done / seconds, armed, done ? (double) armed / done : 0, dispatch_s,
            armed / dispatch_s, done / dispatch_s);
    if (opts->json_path && done) {
        FILE *out = fopen (opts->json_path, "w");
        if (out) {
            fprintf (out, "{\"mode\":\"store\",\"tickets\":%ld,\"seconds\":%.2f,\"tickets_rate\":%.0f,"
                     "\"timers_armed\":%zu,\"timers_per_ticket\":%.2f,\"dispatch_seconds\":%.2f,"
                     "\"timers_rate_in_dispatch\":%.0f,\"dispatch_rate\":%.0f,"
                     "\"bytes_per_ticket_all\":%.0f}\n",
                     done, seconds, done / seconds, armed, (double) armed / done, dispatch_s,
                     armed / dispatch_s, done / dispatch_s,
                     (double) (bytes_after - bytes_before) / done);
            fclose (out);
        }
    }
    ticket_store_destroy (&store);
    sla_destroy (&policies);
    workcal_destroy (&cal);
    return rc;
}

static void
s_usage (FILE *out)
{
    fprintf (out,
        "Usage: bench-timers --redis URL [--mode fire|claim|store] [options]\n"
        "\n"
        "Time-limit timers through common/timers.c (see the top of bench/timers.c).\n"
        "  fire   arm --count members (ZADD each, pipelined) of which --rate x --seconds\n"
        "         are warn timers of real tickets due at --rate/s; wait while the\n"
        "         dispatcher (started separately on this Redis) fires them; lateness\n"
        "         from the warning events' late_ms\n"
        "  claim  the same arming; this program claims with timers_claim_all every\n"
        "         --tick-ms (no tickets, no dispatcher): the claim path alone\n"
        "  store  --tickets N created, accepted, dispatched through the store: the\n"
        "         dispatch change arms the sign timers (timers_schedule_ops)\n"
        "\n"
        "  --count N        timers to arm (default 1000000)\n"
        "  --rate R         firing timers due per second (default 5000)\n"
        "  --seconds S      over S seconds (default 30)\n"
        "  --lead-ms MS     first due this long after arming (default 3000)\n"
        "  --wait S         give up S s after the last due time (default 60)\n"
        "  --pipeline N     commands per round trip (default 1000)\n"
        "  --tick-ms MS     claim mode: loop period (default 100, the dispatcher's)\n"
        "  --batch N        claim mode: per bucket per turn (default 8, the dispatcher's)\n"
        "  --tickets N      store mode (default 20000)\n"
        "  --json FILE      results as JSON\n"
        "Use an empty Redis of its own.\n");
}

/* ---- main ---- */

int
main (int argc, char *argv [])
{
    opts_t opts = { .url = "redis://127.0.0.1:6380/0", .mode = "fire", .count = 1000000,
                    .rate = 5000, .seconds = 30, .lead_ms = 3000, .pipeline = 1000,
                    .tick_ms = 100, .batch = 8, .tickets = 20000, .wait_s = 60 };
    static const struct option options [] = {
        { "redis", required_argument, NULL, 'r' }, { "mode", required_argument, NULL, 'm' },
        { "count", required_argument, NULL, 'n' }, { "rate", required_argument, NULL, 'R' },
        { "seconds", required_argument, NULL, 's' }, { "lead-ms", required_argument, NULL, 'L' },
        { "wait", required_argument, NULL, 'w' }, { "pipeline", required_argument, NULL, 'p' },
        { "tick-ms", required_argument, NULL, 't' }, { "batch", required_argument, NULL, 'b' },
        { "tickets", required_argument, NULL, 'T' }, { "json", required_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
            case 'r': opts.url = optarg; break;
            case 'm': opts.mode = optarg; break;
            case 'n': opts.count = atol (optarg); break;
            case 'R': opts.rate = atof (optarg); break;
            case 's': opts.seconds = atof (optarg); break;
            case 'L': opts.lead_ms = atol (optarg); break;
            case 'w': opts.wait_s = atof (optarg); break;
            case 'p': opts.pipeline = atoi (optarg); break;
            case 't': opts.tick_ms = atoi (optarg); break;
            case 'b': opts.batch = atoi (optarg); break;
            case 'T': opts.tickets = atol (optarg); break;
            case 'j': opts.json_path = optarg; break;
            case 'h': s_usage (stdout); return 0;
            default: s_usage (stderr); return 2;
        }
    }
    bool fire = strcmp (opts.mode, "fire") == 0, claim = strcmp (opts.mode, "claim") == 0,
         store = strcmp (opts.mode, "store") == 0;
    if (optind < argc || !(fire || claim || store) || opts.count < 1 || opts.rate <= 0
    ||  opts.seconds <= 0 || opts.pipeline < 1 || opts.tick_ms < 1 || opts.batch < 1
    ||  opts.batch > TIMERS_BATCH_MAX || opts.tickets < 1 || opts.lead_ms < 0) {
        s_usage (stderr);
        return 2;
    }
    char err [512] = "";
    cb_redis_t *redis = cb_redis_new (opts.url, 30000, err, sizeof err);
    if (!redis || cb_redis_connect (redis)) {
        fprintf (stderr, "bench-timers: cannot connect to %s %s\n", opts.url, err);
        cb_redis_destroy (&redis);
        return 1;
    }
    int rc = fire ? s_mode_fire (redis, &opts) : claim ? s_mode_claim (redis, &opts)
           : s_mode_store (redis, &opts);
    cb_redis_destroy (&redis);
    return rc;
}
