/*  civicbus-console — the command center's operator API (一屏统管), JSON
    over HTTP for now (the web page comes later).

    Operators act on tickets (accept, reject, dispatch, reassign, the
    extension and suspension decisions, verify, reopen, merge, follow up:
    actions.c) and read the operators' queue and tickets (views.c). Every
    action goes through the state machine and is stored with
    compare-and-set, in the ticket's history under the operator's name.
    Keys: operator and admin roles only.

    Threads: one HTTP thread (console.h); this main thread keeps the grids
    and catalogue fresh (the catalogue says which departments exist) and
    waits for SIGTERM, then stops accepting, lets running requests finish,
    frees everything and exits 0. */

#include "console.h"
#include "civicbus/citydata_watch.h"
#include "civicbus/log.h"
#include "civicbus/service.h"

#include <stdio.h>
#include <stdlib.h>

#define S_REFRESH_MS 2000
#define S_GRACE_MS 10000

static const char s_not_found [] =
    "no such resource; the API is POST /v1/tickets/{id}/actions, GET /v1/tickets/{id}, "
    "GET /v1/tickets and GET /v1/queue";

static const cb_setting_t s_settings [] = {
    { "CIVICBUS_CONSOLE_LISTEN", "127.0.0.1:8090", CB_SETTING_HOSTPORT, 0, 0,
      "where the operator API listens" },
    { "CIVICBUS_CONSOLE_MAX_BODY", "16384", CB_SETTING_INT, 1024, 1048576,
      "largest action body in bytes (larger: 413)" },
    { "CIVICBUS_CONSOLE_CONN_LIMIT", "256", CB_SETTING_INT, 1, 100000,
      "most connections at once" },
    { "CIVICBUS_CONSOLE_CONN_TIMEOUT_S", "60", CB_SETTING_INT, 1, 3600,
      "idle connections are closed after this many seconds" },
    { "CIVICBUS_APIKEY_CACHE_MS", "5000", CB_SETTING_INT, 0, 600000,
      "how long a verified API key is trusted without asking Redis (a revoked key "
      "works this much longer)" },
    CB_SETTINGS_COMMON,
    { NULL }
};

/* ---- private ---- */

//  httpd's key checks use the HTTP thread's connection (there is one thread).
static cb_redis_t *
s_redis_take (void *arg, void **token)
{
    *token = NULL;
    return ((console_t *) arg)->redis;
}

static void
s_redis_give (void *arg, void *token)
{
    (void) arg;
    (void) token;
}

//  Ready: Redis answers (on the HTTP thread's connection: this hook runs
//  there) and a catalogue is loaded (dispatching by hand checks departments
//  against it).
static const char *
s_ready (void *arg, json_t *detail)
{
    console_t *console = arg;
    const char *reason = NULL;
    redisReply *reply = cb_redis_command (console->redis, "PING");
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        reason = "redis does not answer";
    if (reply)
        freeReplyObject (reply);
    citydata_snapshot_t *snap = citydata_acquire (console->citydata);
    if (!reason && !snap->catalog)
        reason = "no dispatch catalogue is loaded";
    json_object_set_new (detail, "grids_version", json_integer (snap->grids_version));
    json_object_set_new (detail, "catalog_version", json_integer (snap->catalog_version));
    citydata_release (console->citydata, &snap);
    return reason;
}

static int
s_routes (console_t *console)
{
    const unsigned operators = APIKEY_ROLE_OPERATOR | APIKEY_ROLE_ADMIN;
    const httpd_route_t routes [] = {
        { "POST", "/v1/tickets/{id}/actions", "ticket_action", operators, HTTPD_BODY_JSON,
          console_ticket_action, console },
        { "GET", "/v1/tickets/{id}", "get_ticket", operators, 0, console_ticket_get, console },
        { "GET", "/v1/tickets", "list_tickets", operators, 0, console_ticket_list, console },
        { "GET", "/v1/queue", "queue", operators, 0, console_queue, console },
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes [0]; i++)
        if (httpd_route (console->httpd, &routes [i]))
            return -1;
    console->count_actions = httpd_counter (console->httpd, "civicbus_console_actions_total",
                                            "Operator actions stored.");
    console->count_refused = httpd_counter (console->httpd, "civicbus_console_refused_total",
                                            "Operator actions the state machine refused.");
    return console->count_actions < 0 || console->count_refused < 0 ? -1 : 0;
}

/* ---- main ---- */

int
main (int argc, char **argv)
{
    const cb_service_info_t info = {
        "console",
        "The command center's operator API: POST /v1/tickets/{id}/actions, GET /v1/queue,\n"
        "GET /v1/tickets/{id}, GET /v1/tickets, /healthz, /readyz and /metrics.\n"
        "Operator and admin keys only.",
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
    console_t console = { NULL };
    cb_redis_t *refresh_redis = cb_redis_new (redis_url, timeout_ms, err, sizeof err);
    console.redis = cb_redis_new (redis_url, timeout_ms, err, sizeof err);
    console.store = console.redis ? ticket_store_new (console.redis) : NULL;
    console.citydata = citydata_new ();
    apikey_cache_t *keys =
        apikey_cache_new ((int) cb_config_int (config, "CIVICBUS_APIKEY_CACHE_MS"));
    const char *listen = cb_config_str (config, "CIVICBUS_CONSOLE_LISTEN");
    const httpd_options_t options = {
        .listen = listen,
        .threads = 1,
        .conn_limit = (int) cb_config_int (config, "CIVICBUS_CONSOLE_CONN_LIMIT"),
        .conn_timeout_s = (int) cb_config_int (config, "CIVICBUS_CONSOLE_CONN_TIMEOUT_S"),
        .conn_memory = 65536,
        .max_body = (size_t) cb_config_int (config, "CIVICBUS_CONSOLE_MAX_BODY"),
        .metrics_prefix = "civicbus_console",
        .not_found_hint = s_not_found,
        .keys = keys,
        .redis_take = s_redis_take,
        .redis_give = s_redis_give,
        .redis_arg = &console,
        .ready = s_ready,
        .ready_arg = &console,
    };
    rc = 1;
    if (!refresh_redis || !console.redis) {
        cb_log (CB_LOG_ERROR, "bad CIVICBUS_REDIS_URL", "error", err, NULL);
        goto stop;
    }
    if (!console.store || !console.citydata || !keys)
        goto stop;
    console.httpd = httpd_new (&options);
    if (!console.httpd || s_routes (&console))
        goto stop;
    bool failing = false;
    citydata_refresh_logged (console.citydata, refresh_redis, &failing);
    if (httpd_start (console.httpd))
        goto stop;
    cb_log (CB_LOG_INFO, "ready", "listen", listen, "redis", cb_redis_where (refresh_redis), NULL);

    citydata_watch_until_stopped (console.citydata, refresh_redis, S_REFRESH_MS, &failing);
    cb_log (CB_LOG_INFO, "stopping", NULL);
    rc = 0;

stop:
    if (console.httpd)
        httpd_stop (console.httpd, S_GRACE_MS);
    httpd_destroy (&console.httpd);
    ticket_store_destroy (&console.store);
    cb_redis_destroy (&console.redis);
    citydata_destroy (&console.citydata);
    apikey_cache_destroy (&keys);
    cb_redis_destroy (&refresh_redis);
    cb_config_destroy (&config);
    if (rc == 0)
        cb_log (CB_LOG_INFO, "stopped", NULL);
    return rc;
}
