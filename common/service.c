/*  service.c — the common start and stop of every binary (see service.h). */

#include "civicbus/service.h"
#include "civicbus/log.h"
#include "civicbus/redis.h"
#include "civicbus/clock.h"

#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#ifndef CIVICBUS_VERSION
#define CIVICBUS_VERSION "0.0.0-dev"
#endif

//  A signal handler can only talk through a static flag.
static volatile sig_atomic_t s_stopping;

/* ---- private ---- */

static void
s_on_signal (int sig)
{
    (void) sig;
    s_stopping = 1;
}

static void
s_print_help (const cb_service_info_t *info)
{
    printf ("Usage: %s%s [--config FILE]%s\n\n%s\n\n",
            strcmp (info->name, "cli") == 0 ? "civicbus" : "civicbus-",
            strcmp (info->name, "cli") == 0 ? "" : info->name,
            info->options ? " [options]" : "", info->summary);
    printf ("Options:\n"
            "  --config FILE   read NAME=value settings from FILE (also CIVICBUS_CONFIG)\n"
            "  --help          show this help and exit\n"
            "  --version       show the version and exit\n");
    if (info->options)
        printf ("%s", info->options);
    printf ("\n");
    if (info->settings)
        cb_config_print_help (info->settings, stdout);
}

//  Is `arg` one of the extra options the service declared in its help text?
static bool
s_declared (const cb_service_info_t *info, const char *arg)
{
    if (!info->options)
        return false;
    char name [64];
    size_t len = strcspn (arg, "=");
    if (len >= sizeof name)
        return false;
    memcpy (name, arg, len);
    name [len] = 0;
    const char *hit = info->options;
    while ((hit = strstr (hit, name))) {
        char after = hit [len];
        if (after == ' ' || after == '=' || after == '\n' || after == ',' || after == 0)
            return true;
        hit += len;
    }
    return false;
}

/* ---- public ---- */

const char *
cb_service_arg (int argc, char **argv, const char *name)
{
    size_t len = strlen (name);
    for (int i = 1; i < argc; i++) {
        if (strncmp (argv [i], name, len) == 0) {
            if (argv [i][len] == '=')
                return argv [i] + len + 1;
            if (argv [i][len] == 0 && i + 1 < argc)
                return argv [i + 1];
        }
    }
    return NULL;
}

bool
cb_service_flag (int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp (argv [i], name) == 0)
            return true;
    return false;
}

int
cb_service_start (const cb_service_info_t *info, int argc, char **argv,
                  cb_config_t **config)
{
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv [i];
        if (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0) {
            s_print_help (info);
            return 1;
        }
        if (strcmp (arg, "--version") == 0) {
            printf ("civicbus-%s %s\n", info->name, CIVICBUS_VERSION);
            return 1;
        }
        if (strcmp (arg, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf (stderr, "civicbus-%s: --config needs a file name\n", info->name);
                return -1;
            }
            file = argv [++i];
        }
        else
        if (strncmp (arg, "--config=", 9) == 0)
            file = arg + 9;
        else
        if (arg [0] == '-' && !s_declared (info, arg)) {
            fprintf (stderr, "civicbus-%s: unknown option '%s' (see --help)\n", info->name, arg);
            return -1;
        }
        else
        if (arg [0] == '-' && !strchr (arg, '=') && i + 1 < argc && argv [i + 1][0] != '-') {
            //  A declared option's value: skip it (the service reads it).
            const char *opt = strstr (info->options, arg);
            size_t len = strlen (arg);
            if (opt && opt [len] == ' ' && opt [len + 1] != ' ')
                i++;
        }
    }
    cb_config_t *cfg = cb_config_new (info->settings);
    if (!cfg)
        return -1;
    char err [512];
    if (cb_config_load (cfg, file, err, sizeof err)) {
        fprintf (stderr, "civicbus-%s: bad configuration: %s\n", info->name, err);
        cb_config_destroy (&cfg);
        return -1;
    }
    cb_log_init (info->name);
    int level = cb_log_level_from_name (cb_config_str (cfg, "CIVICBUS_LOG_LEVEL"));
    if (level < 0) {
        fprintf (stderr, "civicbus-%s: bad configuration: CIVICBUS_LOG_LEVEL: '%s' is not "
                 "debug, info, warn or error\n", info->name, cb_config_str (cfg, "CIVICBUS_LOG_LEVEL"));
        cb_config_destroy (&cfg);
        return -1;
    }
    cb_log_set_level ((cb_log_level_t) level);
    cb_service_install_signals ();
    *config = cfg;
    return 0;
}

void
cb_service_install_signals (void)
{
    zsys_handler_set (NULL);
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);
}

bool
cb_service_stopping (void)
{
    return s_stopping != 0;
}

void
cb_service_request_stop (void)
{
    s_stopping = 1;
}

int
cb_service_idle (const cb_config_t *config, const char *what_is_missing, int check_ms)
{
    char err [256];
    cb_redis_t *redis = cb_redis_new (cb_config_str (config, "CIVICBUS_REDIS_URL"),
                                      (int) cb_config_int (config, "CIVICBUS_REDIS_TIMEOUT_MS"),
                                      err, sizeof err);
    if (!redis) {
        cb_log (CB_LOG_ERROR, "bad CIVICBUS_REDIS_URL", "error", err, NULL);
        return 2;
    }
    cb_log (CB_LOG_INFO, "ready", "redis", cb_redis_where (redis), "note", what_is_missing, NULL);
    bool up = true;
    int64_t next_check = 0;
    while (!cb_service_stopping ()) {
        if (cb_clock_mono_ms () >= next_check) {
            redisReply *reply = cb_redis_command (redis, "PING");
            bool now_up = reply != NULL;
            if (reply)
                freeReplyObject (reply);
            if (now_up != up)
                cb_log (now_up ? CB_LOG_INFO : CB_LOG_WARN,
                        now_up ? "redis reachable again" : "redis unreachable",
                        "error", now_up ? "" : cb_redis_error (redis), NULL);
            up = now_up;
            next_check = cb_clock_mono_ms () + check_ms;
        }
        zclock_sleep (50);
    }
    cb_log (CB_LOG_INFO, "stopped", NULL);
    cb_redis_destroy (&redis);
    return 0;
}
