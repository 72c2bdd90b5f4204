/*  service.h — what every civicbus binary does before and after its work:
    --help, --version, --config FILE, configuration, logging, and a clean stop
    on SIGTERM or SIGINT. A service's main() reads like its row in DESIGN.md:

        cb_config_t *config;
        int rc = cb_service_start (&info, argc, argv, &config);
        if (rc) return rc < 0 ? 2 : 0;
        ... connect, loop while !cb_service_stopping (), stop ...
        cb_config_destroy (&config);                                      */

#ifndef CIVICBUS_SERVICE_H
#define CIVICBUS_SERVICE_H

#include <stdbool.h>
#include "civicbus/config.h"

typedef struct {
    const char *name;        //  "intake": log name, binary civicbus-intake
    const char *summary;     //  what it does, a few lines for --help
    const char *options;     //  extra option lines for --help, or NULL
    const cb_setting_t *settings;
} cb_service_info_t;

//  Handles --help and --version (prints, returns 1), --config FILE, loads the
//  configuration (errors printed for people, returns -1), starts logging with
//  the configured level and installs the signal handlers. Returns 0 with
//  *config set when the service should run. Unknown options are an error,
//  except those listed in `info->options`, which stay in argv for the caller
//  (cb_service_arg finds them).
int cb_service_start (const cb_service_info_t *info, int argc, char **argv,
                      cb_config_t **config);
//  The value of "--name VALUE" or "--name=VALUE" in argv, or NULL.
const char *cb_service_arg (int argc, char **argv, const char *name);
//  True when "--name" is present.
bool cb_service_flag (int argc, char **argv, const char *name);

//  Waits until SIGTERM or SIGINT, checking every `check_ms` that Redis still
//  answers (logged when it stops or starts answering). For binaries whose
//  work is not built yet: they start, show their configuration is valid,
//  report ready, and stop cleanly, so deployment and supervision can be
//  exercised end to end. Returns 0.
int cb_service_idle (const cb_config_t *config, const char *what_is_missing, int check_ms);

//  SIGTERM/SIGINT set the stop flag; SIGPIPE is ignored. Also tells czmq not
//  to install its own handlers, so there is one notion of "stopping".
void cb_service_install_signals (void);
bool cb_service_stopping (void);
void cb_service_request_stop (void);

#endif
