/*  config.h — settings from defaults, an optional file, and the environment.

    Each service declares its settings in a table (name, default, help, kind,
    bounds). Values are resolved in this order, later wins:
        the table's default  <  the file  <  the environment
    The file is given by --config FILE or CIVICBUS_CONFIG and holds the same
    NAME=value lines as the environment (blank lines and # comments allowed),
    so one file serves scripts/up, docker compose's env_file and systemd.
    Every error names the setting and says what is wrong with it. */

#ifndef CIVICBUS_CONFIG_H
#define CIVICBUS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    CB_SETTING_STRING = 0,
    CB_SETTING_INT,          //  whole number within [min, max]
    CB_SETTING_BOOL,         //  1/0, true/false, yes/no, on/off
    CB_SETTING_HOSTPORT,     //  "127.0.0.1:8080"
    CB_SETTING_ENDPOINTS,    //  comma-separated ZeroMQ endpoints
} cb_setting_kind_t;

typedef struct {
    const char *name;        //  CIVICBUS_..., the environment variable
    const char *fallback;    //  default text; NULL means required
    cb_setting_kind_t kind;
    int64_t min, max;        //  CB_SETTING_INT bounds (both 0: unbounded)
    const char *help;        //  one line for --help
} cb_setting_t;

//  The settings every service has; end a service's table with
//  CB_SETTINGS_COMMON, { NULL }.
#define CB_SETTINGS_COMMON \
    { "CIVICBUS_REDIS_URL", "redis://127.0.0.1:6380/0", CB_SETTING_STRING, 0, 0, \
      "Redis URL, redis://[:password@]host:port[/db] or unix://[:password@]/path.sock[?db=N]" }, \
    { "CIVICBUS_REDIS_TIMEOUT_MS", "2000", CB_SETTING_INT, 10, 600000, \
      "Redis connect and command timeout" }, \
    { "CIVICBUS_LOG_LEVEL", "info", CB_SETTING_STRING, 0, 0, \
      "debug, info, warn or error" }, \
    { "CIVICBUS_DISTRICT", "320105", CB_SETTING_STRING, 0, 0, \
      "district code that prefixes ticket ids" }

typedef struct _cb_config_t cb_config_t;

//  Makes a configuration for `settings` (ended by a { NULL } entry, which
//  must outlive the object). Returns NULL only when out of memory.
cb_config_t *cb_config_new (const cb_setting_t *settings);
void cb_config_destroy (cb_config_t **self_p);

//  Resolves every setting from its default, then `file` (NULL: the file named
//  by CIVICBUS_CONFIG, if any), then the environment, and validates each.
//  Returns 0, or -1 with a sentence in err such as
//  "CIVICBUS_INTAKE_PORT: '80x' is not a whole number".
int cb_config_load (cb_config_t *self, const char *file, char *err, size_t errcap);

//  Accessors; asserting on a name the table does not declare (a bug).
const char *cb_config_str (const cb_config_t *self, const char *name);
int64_t cb_config_int (const cb_config_t *self, const char *name);
bool cb_config_bool (const cb_config_t *self, const char *name);

//  Splits a CB_SETTING_HOSTPORT value; returns 0 or -1.
int cb_hostport_split (const char *text, char *host, size_t hostcap, int *port);

//  Prints the settings table (name, default, help) for --help.
void cb_config_print_help (const cb_setting_t *settings, FILE *out);

#endif
