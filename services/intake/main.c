/*  civicbus-intake — the front door: the native JSON ticket API.

    Validates, authenticates, dedupes, classifies, locates the grid, stores
    in Redis (one script per ticket), rings the dispatcher over ZeroMQ, and
    answers only after Redis confirmed. Stateless: run as many as a campaign
    needs, on one port (SO_REUSEPORT).

    Threads: libmicrohttpd's pool serves HTTP (common/httpd.c); one writer
    thread sends every new ticket's Redis work, pipelined (writer.c); this
    main thread keeps the grids and catalogue fresh (citydata_refresh every ~2 s, with
    its own Redis connection) and waits for SIGTERM. On SIGTERM the intake
    stops accepting, lets running requests finish, frees everything and
    exits 0. */

#include "intake.h"
#include "civicbus/citydata_watch.h"
#include "civicbus/log.h"
#include "civicbus/service.h"

#include <stdio.h>
#include <stdlib.h>

#define S_REFRESH_MS 2000
#define S_GRACE_MS 10000
#define S_HASH_TTL_S 600

static const char s_not_found [] =
    "no such resource; the API is POST/GET /v1/tickets and GET /v1/tickets/{id}, "
    "and Open311 GeoReport v2 under /open311/v2/ (discovery.xml)";

static const cb_setting_t s_settings [] = {
    { "CIVICBUS_INTAKE_LISTEN", "127.0.0.1:8080", CB_SETTING_HOSTPORT, 0, 0,
      "where the HTTP API listens (several intakes may share it)" },
    { "CIVICBUS_INTAKE_THREADS", "4", CB_SETTING_INT, 1, 256,
      "HTTP threads (reads borrow a Redis connection each; new tickets go through one "
      "pipelining writer)" },
    { "CIVICBUS_INTAKE_WRITERS", "2", CB_SETTING_INT, 1, 16,
      "writer threads, each pipelining new tickets' Redis work on its own connection "
      "(while one waits for its replies another sends)" },
    { "CIVICBUS_INTAKE_MAX_BODY", "65536", CB_SETTING_INT, 1024, 16777216,
      "largest request body in bytes (larger: 413)" },
    { "CIVICBUS_INTAKE_CONN_LIMIT", "4096", CB_SETTING_INT, 1, 1000000,
      "most connections at once" },
    { "CIVICBUS_INTAKE_PER_IP_LIMIT", "0", CB_SETTING_INT, 0, 1000000,
      "most connections from one address (0: no limit)" },
    { "CIVICBUS_INTAKE_CONN_TIMEOUT_S", "30", CB_SETTING_INT, 1, 3600,
      "idle connections are closed after this many seconds" },
    //  16 KiB holds ~14 KiB of request headers (larger: 431); bodies go to
    //  their own buffer. libmicrohttpd clears the pool for every request on
    //  a connection, so 64 KiB cost ~10% of the intake's CPU (bench/README.md).
    { "CIVICBUS_INTAKE_CONN_MEMORY", "16384", CB_SETTING_INT, 8192, 16777216,
      "memory per connection for headers and buffers, in bytes" },
    { "CIVICBUS_DOORBELL_ENDPOINTS", "tcp://127.0.0.1:5551", CB_SETTING_ENDPOINTS, 0, 0,
      "the dispatchers' doorbell endpoints (active and standby), comma-separated" },
    { "CIVICBUS_IDEMPOTENCY_TTL_S", "2592000", CB_SETTING_INT, 60, 315360000,
      "how long an Idempotency-Key or external_id keeps answering with its first ticket" },
    { "CIVICBUS_APIKEY_CACHE_MS", "5000", CB_SETTING_INT, 0, 600000,
      "how long a verified API key is trusted without asking Redis (a revoked key "
      "works this much longer)" },
    INTAKE_DOORS_SETTINGS,
    CB_SETTINGS_COMMON,
    { NULL }
};

/* ---- private ---- */

//  httpd's key checks borrow a worker's Redis connection.
static cb_redis_t *
s_redis_take (void *arg, void **token)
{
    intake_worker_t *worker = intake_pool_take (arg);
    *token = worker;
    return worker ? worker->redis : NULL;
}

static void
s_redis_give (void *arg, void *token)
{
    intake_pool_give (arg, token);
}

//  Ready: Redis answers and an active dispatcher holds its lease (so a
//  stored ticket will be picked up). Grid and catalogue versions are shown
//  for operators but do not decide readiness: tickets are kept either way.
static const char *
s_ready (void *arg, json_t *detail)
{
    intake_t *intake = arg;
    const char *reason = NULL;
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker)
        reason = "out of memory";
    else {
        redisReply *reply = cb_redis_command (worker->redis, "PING");
        if (!reply || reply->type == REDIS_REPLY_ERROR)
            reason = "redis does not answer";
        if (reply)
            freeReplyObject (reply);
        if (!reason) {
            reply = cb_redis_command (worker->redis, "GET lease:dispatcher");
            if (!reply || reply->type == REDIS_REPLY_ERROR)
                reason = "redis does not answer";
            else
            if (reply->type != REDIS_REPLY_STRING)
                reason = "no active dispatcher holds the lease";
            else
                json_object_set_new (detail, "dispatcher", json_string (reply->str));
            if (reply)
                freeReplyObject (reply);
        }
        intake_pool_give (intake->pool, worker);
    }
    citydata_snapshot_t *snap = citydata_acquire (intake->citydata);
    json_object_set_new (detail, "grids_version", json_integer (snap->grids_version));
    json_object_set_new (detail, "catalog_version", json_integer (snap->catalog_version));
    citydata_release (intake->citydata, &snap);
    return reason;
}

//  The routes and counters. 0, or -1 when out of memory.
static int
s_routes (intake_t *intake)
{
    httpd_t *httpd = intake->httpd;
    const unsigned anyone = APIKEY_ROLE_REPORTER_APP | APIKEY_ROLE_HOTLINE | APIKEY_ROLE_OPERATOR
                          | APIKEY_ROLE_ADMIN | APIKEY_ROLE_SENSOR;
    const unsigned operators = APIKEY_ROLE_OPERATOR | APIKEY_ROLE_ADMIN;
    const httpd_route_t routes [] = {
        { "GET", "/v1/tickets", "list_tickets", operators, 0, intake_ticket_list, intake },
        { "POST", "/v1/tickets", "create_ticket", anyone, HTTPD_BODY_JSON,
          intake_ticket_create, intake },
        { "GET", "/v1/tickets/{id}", "get_ticket", anyone, 0, intake_ticket_get, intake },
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes [0]; i++)
        if (httpd_route (httpd, &routes [i]))
            return -1;
    intake->count_created = httpd_counter (httpd, "civicbus_intake_tickets_created_total",
                                           "New tickets stored.");
    intake->count_repeated = httpd_counter (httpd, "civicbus_intake_tickets_repeated_total",
        "Requests answered with an earlier ticket (same idempotency key).");
    intake->count_doorbells_dropped = httpd_counter (httpd,
        "civicbus_intake_doorbells_dropped_total",
        "Doorbells not sent to a dispatcher (its sweep finds the ticket).");
    intake->count_ungridded = httpd_counter (httpd, "civicbus_intake_tickets_ungridded_total",
                                             "Tickets stored outside every known grid.");
    if (intake_open311_routes (intake))
        return -1;
    return intake->count_created < 0 || intake->count_repeated < 0
        || intake->count_doorbells_dropped < 0 || intake->count_ungridded < 0 ? -1 : 0;
}

/* ---- main ---- */

int
main (int argc, char **argv)
{
    const cb_service_info_t info = {
        "intake",
        "The front door: POST /v1/tickets, GET /v1/tickets/{id}, GET /v1/tickets,\n"
        "/healthz, /readyz and /metrics. Stores each ticket in Redis, then rings the\n"
        "dispatcher.",
        NULL,
        s_settings
    };
    cb_config_t *config;
    int rc = cb_service_start (&info, argc, argv, &config);
    if (rc)
        return rc < 0 ? 2 : 0;

    const char *redis_url = cb_config_str (config, "CIVICBUS_REDIS_URL");
    int timeout_ms = (int) cb_config_int (config, "CIVICBUS_REDIS_TIMEOUT_MS");
    char err [256] = "";
    intake_t intake = {
        .district = cb_config_str (config, "CIVICBUS_DISTRICT"),
        .idem_ttl_s = (int) cb_config_int (config, "CIVICBUS_IDEMPOTENCY_TTL_S"),
        .hash_ttl_s = S_HASH_TTL_S,
    };
    zsys_init ();
    cb_redis_t *refresh_redis = cb_redis_new (redis_url, timeout_ms, err, sizeof err);
    intake.pool = intake_pool_new (redis_url, timeout_ms);
    apikey_cache_t *keys =
        apikey_cache_new ((int) cb_config_int (config, "CIVICBUS_APIKEY_CACHE_MS"));
    intake.citydata = citydata_new ();
    const httpd_options_t options = {
        .listen = cb_config_str (config, "CIVICBUS_INTAKE_LISTEN"),
        .threads = (int) cb_config_int (config, "CIVICBUS_INTAKE_THREADS"),
        .conn_limit = (int) cb_config_int (config, "CIVICBUS_INTAKE_CONN_LIMIT"),
        .per_ip_limit = (int) cb_config_int (config, "CIVICBUS_INTAKE_PER_IP_LIMIT"),
        .conn_timeout_s = (int) cb_config_int (config, "CIVICBUS_INTAKE_CONN_TIMEOUT_S"),
        .conn_memory = (size_t) cb_config_int (config, "CIVICBUS_INTAKE_CONN_MEMORY"),
        .max_body = (size_t) cb_config_int (config, "CIVICBUS_INTAKE_MAX_BODY"),
        .metrics_prefix = "civicbus_intake",
        .not_found_hint = s_not_found,
        .keys = keys,
        .redis_take = s_redis_take,
        .redis_give = s_redis_give,
        .redis_arg = intake.pool,
        .ready = s_ready,
        .ready_arg = &intake,
    };
    rc = 1;
    if (!refresh_redis) {
        cb_log (CB_LOG_ERROR, "bad CIVICBUS_REDIS_URL", "error", err, NULL);
        goto stop;
    }
    if (!intake.pool || !keys || !intake.citydata)
        goto stop;
    intake.keys = keys;
    intake.httpd = httpd_new (&options);
    if (!intake.httpd || s_routes (&intake)
    ||  intake_doors_start (&intake, config, refresh_redis)
    ||  intake_writer_start (&intake, redis_url, timeout_ms,
                             cb_config_str (config, "CIVICBUS_DOORBELL_ENDPOINTS"),
                             (int) cb_config_int (config, "CIVICBUS_INTAKE_WRITERS")))
        goto stop;

    //  Grids and catalogue before the first request, if Redis is there;
    //  if not, the intake serves 503s and picks them up when it returns.
    bool failing = false;
    citydata_refresh_logged (intake.citydata, refresh_redis, &failing);
    if (httpd_start (intake.httpd))
        goto stop;
    char threads [16];
    snprintf (threads, sizeof threads, "%d", options.threads);
    cb_log (CB_LOG_INFO, "ready", "listen", options.listen, "threads", threads,
            "redis", cb_redis_where (refresh_redis), NULL);

    citydata_watch_until_stopped (intake.citydata, refresh_redis, S_REFRESH_MS, &failing);
    cb_log (CB_LOG_INFO, "stopping", NULL);
    rc = 0;

stop:
    //  The server first (its deferred requests are the writer's to finish),
    //  then the writer (what is still queued is stored and rung).
    if (intake.httpd)
        httpd_stop (intake.httpd, S_GRACE_MS);
    intake_writer_stop (&intake);
    httpd_destroy (&intake.httpd);
    intake_doors_stop (&intake);
    intake_pool_destroy (&intake.pool);
    apikey_cache_destroy (&keys);
    citydata_destroy (&intake.citydata);
    cb_redis_destroy (&refresh_redis);
    cb_config_destroy (&config);
    if (rc == 0)
        cb_log (CB_LOG_INFO, "stopped", NULL);
    return rc;
}
