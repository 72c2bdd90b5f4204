/*  config.c — defaults < file < environment, validated (see config.h). */

#include "civicbus/config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct _cb_config_t {
    const cb_setting_t *settings;
    size_t count;
    char **values;           //  resolved text, one per setting
};

/* ---- private ---- */

static int
s_index (const cb_config_t *self, const char *name)
{
    for (size_t i = 0; i < self->count; i++)
        if (strcmp (self->settings [i].name, name) == 0)
            return (int) i;
    return -1;
}

static int
s_set (cb_config_t *self, size_t i, const char *value)
{
    char *copy = strdup (value);
    if (!copy)
        return -1;
    free (self->values [i]);
    self->values [i] = copy;
    return 0;
}

static char *
s_trim (char *s)
{
    while (isspace ((unsigned char) *s))
        s++;
    char *end = s + strlen (s);
    while (end > s && isspace ((unsigned char) end [-1]))
        *--end = 0;
    return s;
}

static int
s_parse_bool (const char *v, bool *out)
{
    static const char *yes [] = { "1", "true", "yes", "on" };
    static const char *no [] = { "0", "false", "no", "off" };
    for (int i = 0; i < 4; i++) {
        if (strcasecmp (v, yes [i]) == 0) { *out = true; return 0; }
        if (strcasecmp (v, no [i]) == 0) { *out = false; return 0; }
    }
    return -1;
}

static int
s_parse_int (const char *v, int64_t *out)
{
    if (!*v)
        return -1;
    errno = 0;
    char *end;
    long long n = strtoll (v, &end, 10);
    if (errno || *end)
        return -1;
    *out = n;
    return 0;
}

static int
s_read_file (cb_config_t *self, const char *path, char *err, size_t errcap)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        snprintf (err, errcap, "config file %s: %s", path, strerror (errno));
        return -1;
    }
    char line [4096];
    int lineno = 0, rc = 0;
    while (fgets (line, sizeof line, file)) {
        lineno++;
        char *text = s_trim (line);
        if (*text == 0 || *text == '#')
            continue;
        if (strncmp (text, "export ", 7) == 0)
            text = s_trim (text + 7);
        char *eq = strchr (text, '=');
        if (!eq) {
            snprintf (err, errcap, "%s:%d: expected NAME=value", path, lineno);
            rc = -1;
            break;
        }
        *eq = 0;
        char *name = s_trim (text), *value = s_trim (eq + 1);
        size_t vlen = strlen (value);
        if (vlen >= 2 && (value [0] == '"' || value [0] == '\'') && value [vlen - 1] == value [0]) {
            value [vlen - 1] = 0;
            value++;
        }
        int i = s_index (self, name);
        //  Settings of other services may share one file: skip them.
        if (i >= 0 && s_set (self, (size_t) i, value)) {
            rc = -1;
            snprintf (err, errcap, "out of memory");
            break;
        }
    }
    fclose (file);
    return rc;
}

static int
s_validate (const cb_setting_t *s, const char *v, char *err, size_t errcap)
{
    int64_t n;
    bool b;
    char host [256];
    int port;
    switch (s->kind) {
        case CB_SETTING_INT:
            if (s_parse_int (v, &n)) {
                snprintf (err, errcap, "%s: '%s' is not a whole number", s->name, v);
                return -1;
            }
            if ((s->min || s->max) && (n < s->min || n > s->max)) {
                snprintf (err, errcap, "%s: %lld is outside %lld..%lld", s->name,
                          (long long) n, (long long) s->min, (long long) s->max);
                return -1;
            }
            return 0;
        case CB_SETTING_BOOL:
            if (s_parse_bool (v, &b)) {
                snprintf (err, errcap, "%s: '%s' is not true or false", s->name, v);
                return -1;
            }
            return 0;
        case CB_SETTING_HOSTPORT:
            if (cb_hostport_split (v, host, sizeof host, &port)) {
                snprintf (err, errcap, "%s: '%s' is not host:port (port 1..65535)", s->name, v);
                return -1;
            }
            return 0;
        case CB_SETTING_ENDPOINTS:
            if (!*v || (strncmp (v, "tcp://", 6) && strncmp (v, "ipc://", 6)
                        && strncmp (v, "inproc://", 9))) {
                snprintf (err, errcap, "%s: '%s' is not a list of tcp://, ipc:// or inproc:// endpoints",
                          s->name, v);
                return -1;
            }
            return 0;
        default:
            return 0;
    }
}

/* ---- public ---- */

cb_config_t *
cb_config_new (const cb_setting_t *settings)
{
    assert (settings);
    cb_config_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->settings = settings;
    while (settings [self->count].name)
        self->count++;
    self->values = calloc (self->count + 1, sizeof (char *));
    if (!self->values) {
        free (self);
        return NULL;
    }
    return self;
}

void
cb_config_destroy (cb_config_t **self_p)
{
    assert (self_p);
    cb_config_t *self = *self_p;
    if (self) {
        for (size_t i = 0; i < self->count; i++)
            free (self->values [i]);
        free (self->values);
        free (self);
        *self_p = NULL;
    }
}

int
cb_config_load (cb_config_t *self, const char *file, char *err, size_t errcap)
{
    assert (self);
    for (size_t i = 0; i < self->count; i++)
        if (self->settings [i].fallback && s_set (self, i, self->settings [i].fallback)) {
            snprintf (err, errcap, "out of memory");
            return -1;
        }
    if (!file || !*file)
        file = getenv ("CIVICBUS_CONFIG");
    if (file && *file && s_read_file (self, file, err, errcap))
        return -1;
    for (size_t i = 0; i < self->count; i++) {
        const char *env = getenv (self->settings [i].name);
        if (env && s_set (self, i, env)) {
            snprintf (err, errcap, "out of memory");
            return -1;
        }
    }
    for (size_t i = 0; i < self->count; i++) {
        if (!self->values [i]) {
            snprintf (err, errcap, "%s: required, but not set (%s)",
                      self->settings [i].name, self->settings [i].help);
            return -1;
        }
        if (s_validate (&self->settings [i], self->values [i], err, errcap))
            return -1;
    }
    return 0;
}

const char *
cb_config_str (const cb_config_t *self, const char *name)
{
    int i = s_index (self, name);
    assert (i >= 0);
    return self->values [i] ? self->values [i] : "";
}

int64_t
cb_config_int (const cb_config_t *self, const char *name)
{
    int64_t n = 0;
    s_parse_int (cb_config_str (self, name), &n);
    return n;
}

bool
cb_config_bool (const cb_config_t *self, const char *name)
{
    bool b = false;
    s_parse_bool (cb_config_str (self, name), &b);
    return b;
}

int
cb_hostport_split (const char *text, char *host, size_t hostcap, int *port)
{
    const char *colon = text ? strrchr (text, ':') : NULL;
    if (!colon || colon == text || (size_t) (colon - text) >= hostcap)
        return -1;
    int64_t n;
    if (s_parse_int (colon + 1, &n) || n < 1 || n > 65535)
        return -1;
    size_t len = (size_t) (colon - text);
    //  Accept [::1]:8080 as well.
    if (text [0] == '[' && colon [-1] == ']') {
        memcpy (host, text + 1, len - 2);
        host [len - 2] = 0;
    }
    else {
        memcpy (host, text, len);
        host [len] = 0;
    }
    *port = (int) n;
    return 0;
}

void
cb_config_print_help (const cb_setting_t *settings, FILE *out)
{
    fprintf (out, "Settings (environment variables, or NAME=value lines in --config FILE):\n");
    for (const cb_setting_t *s = settings; s->name; s++)
        fprintf (out, "  %-34s %s\n  %-34s default: %s\n", s->name, s->help, "",
                 s->fallback ? s->fallback : "(required)");
}
