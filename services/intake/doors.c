/*  doors.c — the issue 6 doors' setup: the hotline secret (setting or
    file), the sensor types (JSON file), the duplicate index, their routes
    and counters. Kept apart from main.c so the doors come and go as one. */

#include "intake.h"
#include "civicbus/file.h"
#include "civicbus/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static int
s_secret (intake_t *intake, const cb_config_t *config)
{
    const char *value = cb_config_str (config, "CIVICBUS_HOTLINE_SECRET");
    const char *path = cb_config_str (config, "CIVICBUS_HOTLINE_SECRET_FILE");
    size_t len = 0;
    if (value && *value) {
        intake->hotline_secret = strdup (value);
        len = strlen (value);
    }
    else
    if (path && *path) {
        char err [512];
        intake->hotline_secret = cb_file_read (path, 64 * 1024, &len, err, sizeof err);
        if (!intake->hotline_secret) {
            cb_log (CB_LOG_ERROR, "cannot read CIVICBUS_HOTLINE_SECRET_FILE", "path", path,
                    "error", err, NULL);
            return -1;
        }
        while (len > 0 && (intake->hotline_secret [len - 1] == '\n'
                           || intake->hotline_secret [len - 1] == '\r'))
            intake->hotline_secret [--len] = 0;
    }
    else {
        cb_log (CB_LOG_INFO, "no hotline secret: /hotline/v1 answers 503", NULL);
        return 0;
    }
    if (!intake->hotline_secret || len < 16) {
        cb_log (CB_LOG_ERROR, "the hotline secret must be at least 16 bytes", NULL);
        return -1;
    }
    intake->hotline_secret_len = len;
    return 0;
}

static int
s_sensors (intake_t *intake, const cb_config_t *config)
{
    const char *path = cb_config_str (config, "CIVICBUS_SENSORS_CONFIG");
    if (!path || !*path) {
        cb_log (CB_LOG_INFO, "no CIVICBUS_SENSORS_CONFIG: /v1/events answers 503", NULL);
        return 0;
    }
    size_t len = 0;
    char err [512] = "";
    char *text = cb_file_read (path, 16u * 1024 * 1024, &len, err, sizeof err);
    if (!text) {
        cb_log (CB_LOG_ERROR, "cannot read CIVICBUS_SENSORS_CONFIG", "path", path,
                "error", err, NULL);
        return -1;
    }
    intake->sensors = sensor_config_new (text, len, err, sizeof err);
    free (text);
    if (!intake->sensors) {
        cb_log (CB_LOG_ERROR, "bad CIVICBUS_SENSORS_CONFIG", "path", path, "error", err, NULL);
        return -1;
    }
    intake->folds = sensor_folds_new ();
    return intake->folds ? 0 : -1;
}

/* ---- public ---- */

int
intake_doors_start (intake_t *intake, const cb_config_t *config, cb_redis_t *redis)
{
    if (s_secret (intake, config) || s_sensors (intake, config))
        return -1;
    int radius = (int) cb_config_int (config, "CIVICBUS_DUPLICATE_RADIUS_M");
    if (radius > 0) {
        intake->duplicates = dup_index_new (radius,
            (int) cb_config_int (config, "CIVICBUS_DUPLICATE_WINDOW_S"));
        if (!intake->duplicates)
            return -1;
        intake->duplicate_hold = cb_config_bool (config, "CIVICBUS_DUPLICATE_HOLD");
    }
    //  Scripts loaded once here, so threads only read their hashes; when
    //  Redis is not there yet, each thread's connection loads them on
    //  first use (redis.h).
    if (redis && intake->folds && cb_redis_connect (redis) == 0)
        sensor_folds_prepare (intake->folds, redis);

    httpd_t *httpd = intake->httpd;
    const unsigned hotline = APIKEY_ROLE_HOTLINE | APIKEY_ROLE_ADMIN;
    const unsigned sensors = APIKEY_ROLE_SENSOR | APIKEY_ROLE_OPERATOR | APIKEY_ROLE_ADMIN;
    const unsigned operators = APIKEY_ROLE_OPERATOR | APIKEY_ROLE_ADMIN;
    const httpd_route_t routes [] = {
        { "POST", "/hotline/v1/tickets", "hotline_create", hotline, HTTPD_BODY_JSON,
          intake_hotline_create, intake },
        { "GET", "/hotline/v1/tickets/{number}", "hotline_get", hotline, 0,
          intake_hotline_get, intake },
        { "POST", "/hotline/v1/tickets/{number}/{action}", "hotline_action", hotline,
          HTTPD_BODY_JSON, intake_hotline_action, intake },
        { "POST", "/v1/events", "sensor_events", sensors, HTTPD_BODY_JSON,
          intake_events_post, intake },
        { "GET", "/v1/kpi/repeat-rate", "kpi_repeat_rate", operators, 0,
          intake_kpi_repeat_rate, intake },
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes [0]; i++)
        if (httpd_route (httpd, &routes [i]))
            return -1;
    intake->count_duplicates = httpd_counter (httpd, "civicbus_intake_duplicates_flagged_total",
        "Reports flagged as probable duplicates of an open ticket.");
    intake->count_sensor_events = httpd_counter (httpd, "civicbus_intake_sensor_events_total",
        "Sensor events folded into a ticket or opening one.");
    intake->count_sensor_rejected = httpd_counter (httpd,
        "civicbus_intake_sensor_events_rejected_total", "Sensor events refused.");
    return intake->count_duplicates < 0 || intake->count_sensor_events < 0
        || intake->count_sensor_rejected < 0 ? -1 : 0;
}

void
intake_doors_stop (intake_t *intake)
{
    if (intake->hotline_secret) {
        memset (intake->hotline_secret, 0, intake->hotline_secret_len);
        free (intake->hotline_secret);
        intake->hotline_secret = NULL;
    }
    sensor_config_destroy (&intake->sensors);
    sensor_folds_destroy (&intake->folds);
    dup_index_destroy (&intake->duplicates);
}
