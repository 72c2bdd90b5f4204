/*  cli_util.c — what every civicbus command shares: the option parser,
    messages for people (usage errors exit 2, failures exit 1), the Redis
    connection with an error that says what to do, reading input files with
    a progress line, and tables whose columns line up with Chinese text. */

#include "cli.h"
#include "civicbus/citydata.h"
#include "civicbus/clock.h"
#include "civicbus/mask.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct _cli_table_t {
    size_t columns;
    char **headers;
    char ***rows;
    size_t count, cap;
};

/* ---- private ---- */

static const cli_opt_t *
s_find_opt (const cli_opt_t *opts, const char *name, size_t len)
{
    for (size_t i = 0; opts && opts [i].name; i++)
        if (strlen (opts [i].name) == len && strncmp (opts [i].name, name, len) == 0)
            return &opts [i];
    return NULL;
}

//  "reason" out of "redis 127.0.0.1:6380: Connection refused", with a
//  lower-case first letter so it reads inside a sentence.
static void
s_redis_reason (cb_redis_t *redis, char *buf, size_t cap)
{
    const char *error = cb_redis_error (redis);
    const char *where = cb_redis_where (redis);
    char prefix [320];
    snprintf (prefix, sizeof prefix, "redis %s: ", where);
    if (strncmp (error, prefix, strlen (prefix)) == 0)
        error += strlen (prefix);
    snprintf (buf, cap, "%s", *error ? error : "no answer");
    if (isupper ((unsigned char) buf [0]) && islower ((unsigned char) buf [1]))
        buf [0] = (char) tolower ((unsigned char) buf [0]);
}

static void *
s_parse_calendar (const char *text, size_t len, char *err, size_t errcap)
{
    return workcal_from_json (text, len, err, errcap);
}

static bool
s_is_wide (uint32_t cp)
{
    //  East Asian Wide and Fullwidth blocks: enough for Chinese, Japanese,
    //  Korean text and full-width punctuation, which is what tickets hold.
    return (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0x303E)
        || (cp >= 0x3041 && cp <= 0x33FF) || (cp >= 0x3400 && cp <= 0x4DBF)
        || (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xA000 && cp <= 0xA4CF)
        || (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF)
        || (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60)
        || (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F)
        || (cp >= 0x20000 && cp <= 0x3FFFD);
}

static char *
s_strdup_or_dash (const char *text)
{
    return strdup (text && *text ? text : "-");
}

static void
s_free_row (char **row, size_t columns)
{
    if (!row)
        return;
    for (size_t c = 0; c < columns; c++)
        free (row [c]);
    free (row);
}

static char **
s_copy_row (const char *const *cells, size_t columns)
{
    char **row = calloc (columns, sizeof *row);
    if (!row)
        return NULL;
    for (size_t c = 0; c < columns; c++) {
        row [c] = s_strdup_or_dash (cells [c]);
        if (!row [c]) {
            s_free_row (row, columns);
            return NULL;
        }
    }
    return row;
}

//  Prints `text` and pads it with spaces to `width` display columns.
static void
s_print_padded (FILE *out, const char *text, size_t width)
{
    fputs (text, out);
    for (size_t w = cli_display_width (text); w < width; w++)
        fputc (' ', out);
}

/* ---- public ---- */

void
cli_print_help (const cli_command_t *cmd, FILE *out)
{
    fprintf (out, "Usage: civicbus %s%s%s\n\n", cmd->title,
             cmd->usage && *cmd->usage ? " " : "", cmd->usage ? cmd->usage : "");
    fprintf (out, "%s\n", cmd->summary);
    if (cmd->help && *cmd->help)
        fprintf (out, "\n%s", cmd->help);
    fprintf (out, "\nEvery command also takes:\n"
                  "  --redis URL   Redis to use (else CIVICBUS_REDIS_URL, else %s)\n"
                  "  --help        show this help\n"
                  "Exit status: 0 done, 1 failed, 2 wrong command line.\n",
             CLI_DEFAULT_REDIS_URL);
}

int
cli_usage_error (const cli_command_t *cmd, const char *fmt, ...)
{
    char message [1024];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    fprintf (stderr, "civicbus %s: %s\n", cmd->title, message);
    fprintf (stderr, "Usage: civicbus %s %s\n", cmd->title, cmd->usage ? cmd->usage : "");
    fprintf (stderr, "Try 'civicbus %s --help' for more.\n", cmd->title);
    return CLI_USAGE;
}

int
cli_fail (const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    fputs ("civicbus: ", stderr);
    vfprintf (stderr, fmt, args);
    fputc ('\n', stderr);
    va_end (args);
    return CLI_FAIL;
}

void
cli_note (const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    fputs ("note: ", stderr);
    vfprintf (stderr, fmt, args);
    fputc ('\n', stderr);
    va_end (args);
}

int
cli_parse (cli_t *cli, const cli_command_t *cmd, int argc, char **argv,
           const cli_opt_t *opts, const char **pos, int min_pos, int max_pos,
           int *npos)
{
    int count = 0;
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv [i];
        if (!options_done && strcmp (arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && (strcmp (arg, "-h") == 0 || strcmp (arg, "--help") == 0)) {
            cli_print_help (cmd, stdout);
            return CLI_OK;
        }
        if (!options_done && strncmp (arg, "--", 2) == 0) {
            const char *name = arg + 2;
            const char *eq = strchr (name, '=');
            size_t len = eq ? (size_t) (eq - name) : strlen (name);
            const char **value = NULL;
            bool *flag = NULL;
            const cli_opt_t *opt = s_find_opt (opts, name, len);
            if (opt) {
                value = opt->value;
                flag = opt->flag;
            }
            else
            if (len == 5 && strncmp (name, "redis", 5) == 0)
                value = &cli->redis_url;
            else
                return cli_usage_error (cmd, "unknown option '%.*s'", (int) len + 2, arg);

            if (flag) {
                if (eq)
                    return cli_usage_error (cmd, "option '--%.*s' takes no value",
                                            (int) len, name);
                *flag = true;
            }
            else {
                if (eq)
                    *value = eq + 1;
                else
                if (i + 1 < argc)
                    *value = argv [++i];
                else
                    return cli_usage_error (cmd, "option '--%s' needs a value", name);
            }
            continue;
        }
        if (count >= max_pos)
            return cli_usage_error (cmd, "unexpected argument '%s'", arg);
        pos [count++] = arg;
    }
    if (count < min_pos)
        return cli_usage_error (cmd, "missing argument%s", min_pos - count > 1 ? "s" : "");
    if (npos)
        *npos = count;
    return CLI_PROCEED;
}

cb_redis_t *
cli_redis (cli_t *cli)
{
    if (cli->redis && cb_redis_connected (cli->redis))
        return cli->redis;
    if (!cli->redis) {
        char err [256] = "";
        cli->redis = cb_redis_new (cli->redis_url, cli->redis_timeout_ms, err, sizeof err);
        if (!cli->redis) {
            cli_fail ("cannot use Redis URL '%s': %s (expected redis://[:password@]host:port[/db] or unix://[:password@]/path.sock[?db=N])",
                      cli->redis_url, err);
            return NULL;
        }
    }
    if (cb_redis_connect (cli->redis)) {
        char reason [512];
        s_redis_reason (cli->redis, reason, sizeof reason);
        cli_fail ("cannot reach Redis at %s (%s). Is ./scripts/up running?",
                  cb_redis_where (cli->redis), reason);
        return NULL;
    }
    return cli->redis;
}

int
cli_redis_failed (cli_t *cli, const char *what)
{
    char reason [512] = "no connection";
    if (cli->redis)
        s_redis_reason (cli->redis, reason, sizeof reason);
    return cli_fail ("Redis at %s failed while %s (%s). Is ./scripts/up running?",
                     cli->redis ? cb_redis_where (cli->redis) : cli->redis_url, what, reason);
}

char *
cli_read_file (cli_t *cli, const char *path, size_t *len)
{
    const char *base = strrchr (path, '/') ? strrchr (path, '/') + 1 : path;
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_fail ("cannot open %s: %s", path, strerror (errno));
        return NULL;
    }
    struct stat st;
    if (fstat (fd, &st) || !S_ISREG (st.st_mode)) {
        close (fd);
        cli_fail ("%s is not a regular file", path);
        return NULL;
    }
    if ((uint64_t) st.st_size > CLI_FILE_MAX) {
        close (fd);
        cli_fail ("%s is %.1f MB; the limit is %u MB", path,
                  (double) st.st_size / 1e6, CLI_FILE_MAX / (1024 * 1024));
        return NULL;
    }
    size_t size = (size_t) st.st_size;
    char *text = malloc (size + 1);
    if (!text) {
        close (fd);
        cli_fail ("out of memory reading %s", path);
        return NULL;
    }
    //  Read in 1 MB steps so a terminal sees progress on a big file.
    size_t got = 0;
    while (got < size) {
        size_t want = size - got < (1u << 20) ? size - got : (1u << 20);
        ssize_t n = read (fd, text + got, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int saved = n < 0 ? errno : 0;
            close (fd);
            free (text);
            cli_progress_done (cli);
            cli_fail ("cannot read %s: %s", path, saved ? strerror (saved) : "file shrank while reading");
            return NULL;
        }
        got += (size_t) n;
        cli_progress (cli, "reading %s... %.1f MB", base, (double) got / 1e6);
    }
    close (fd);
    text [size] = 0;
    *len = size;
    return text;
}

void
cli_progress (cli_t *cli, const char *fmt, ...)
{
    if (!cli->stderr_tty)
        return;
    va_list args;
    va_start (args, fmt);
    fputs ("\r\033[K", stderr);
    vfprintf (stderr, fmt, args);
    va_end (args);
    fflush (stderr);
}

void
cli_progress_done (cli_t *cli)
{
    if (cli->stderr_tty) {
        fputs ("\r\033[K", stderr);
        fflush (stderr);
    }
}

int
cli_parse_int (const char *text, long long min, long long max, long long *out)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (errno || *end || isspace ((unsigned char) *text) || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

int
cli_parse_double (const char *text, double *out)
{
    if (!text || !*text || isspace ((unsigned char) *text))
        return -1;
    char *end;
    errno = 0;
    double value = strtod (text, &end);
    if (errno || *end || !isfinite (value))
        return -1;
    *out = value;
    return 0;
}

grid_index_t *
cli_load_grids (cli_t *cli, int64_t *version)
{
    *version = -1;
    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return NULL;
    int64_t stored = 0;
    char *text = citydata_fetch (redis, "grids", &stored);
    if (!text) {
        if (!cb_redis_connected (redis)) {
            cli_redis_failed (cli, "reading the grids");
            return NULL;
        }
        *version = 0;
        return NULL;
    }
    char err [512] = "";
    cli_progress (cli, "indexing grids...");
    grid_index_t *grids = grid_index_from_geojson (text, strlen (text), err, sizeof err);
    cli_progress_done (cli);
    free (text);
    if (!grids) {
        cli_fail ("the grids stored in Redis (version %lld) do not load: %s; "
                  "load a good file with 'civicbus grids load FILE'", (long long) stored, err);
        return NULL;
    }
    *version = stored;
    return grids;
}

catalog_t *
cli_load_catalog (cli_t *cli, int64_t *version)
{
    *version = -1;
    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return NULL;
    int64_t stored = 0;
    char *text = citydata_fetch (redis, "catalog", &stored);
    if (!text) {
        if (!cb_redis_connected (redis)) {
            cli_redis_failed (cli, "reading the catalogue");
            return NULL;
        }
        *version = 0;
        return NULL;
    }
    char err [512] = "";
    catalog_t *catalog = catalog_from_json (text, strlen (text), err, sizeof err);
    free (text);
    if (!catalog) {
        cli_fail ("the catalogue stored in Redis (version %lld) does not load: %s; "
                  "load a good file with 'civicbus catalog load FILE'", (long long) stored, err);
        return NULL;
    }
    *version = stored;
    return catalog;
}

int
cli_parse_one (cli_t *cli, const cli_command_t *cmd, int argc, char **argv,
               const cli_opt_t *opts, const char *missing, const char **arg)
{
    const char *pos [1] = { NULL };
    int npos = 0;
    int rc = cli_parse (cli, cmd, argc, argv, opts, pos, 0, 1, &npos);
    if (rc != CLI_PROCEED)
        return rc;
    if (npos < 1)
        return cli_usage_error (cmd, "%s", missing);
    *arg = pos [0];
    return CLI_PROCEED;
}

int
cli_parse_connect (cli_t *cli, const cli_command_t *cmd, int argc, char **argv,
                   const cli_opt_t *opts, cb_redis_t **redis)
{
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    *redis = cli_redis (cli);
    return *redis ? CLI_PROCEED : CLI_FAIL;
}

int
cli_load_begin (cli_t *cli, const cli_command_t *cmd, int argc, char **argv,
                const char *which, cli_load_t *load)
{
    memset (load, 0, sizeof *load);
    const cli_opt_t opts [] = { { "check", NULL, &load->check_only }, CLI_OPTS_END };
    int rc = cli_parse_one (cli, cmd, argc, argv, opts, which, &load->path);
    if (rc != CLI_PROCEED)
        return rc;
    if (!load->check_only && !(load->redis = cli_redis (cli)))
        return CLI_FAIL;
    load->text = cli_read_file (cli, load->path, &load->len);
    return load->text ? CLI_PROCEED : CLI_FAIL;
}

void *
cli_config_load (cli_t *cli, const cli_config_t *config, const char *file,
                 char *source, size_t cap, bool *none)
{
    *none = false;
    char err [512] = "";
    if (file) {
        size_t len = 0;
        char *text = cli_read_file (cli, file, &len);
        if (!text)
            return NULL;
        void *parsed = config->parse (text, len, err, sizeof err);
        free (text);
        if (!parsed)
            cli_fail ("%s is not a valid %s: %s", file, config->noun, err);
        snprintf (source, cap, "from %s", file);
        return parsed;
    }
    cb_redis_t *redis = cli_redis (cli);
    if (!redis) {
        if (config->without_redis)
            cli_note ("%s", config->without_redis);
        return NULL;
    }
    redisReply *reply = cb_redis_command (redis, "HMGET %s json version", config->key);
    if (!reply) {
        cli_redis_failed (cli, config->reading);
        return NULL;
    }
    void *parsed = NULL;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [0]->type == REDIS_REPLY_STRING) {
        parsed = config->parse (reply->element [0]->str, reply->element [0]->len, err,
                                sizeof err);
        snprintf (source, cap, "stored version %s",
                  reply->element [1]->type == REDIS_REPLY_STRING ? reply->element [1]->str : "?");
        if (!parsed)
            cli_fail ("%s: %s; %s", config->stored, err, config->hint);
    }
    else
        *none = true;
    freeReplyObject (reply);
    return parsed;
}

workcal_t *
cli_pick_calendar (cli_t *cli, const char *file, bool builtin, char *source, size_t cap)
{
    static const cli_config_t calendar = {
        .key = "cfg:calendar", .parse = s_parse_calendar, .noun = "calendar",
        .reading = "reading the calendar", .stored = "the calendar stored in Redis does not load",
        .hint = "load a good one with 'civicbus calendar load FILE'",
        .without_redis = "'--builtin' or '--calendar FILE' computes without Redis",
    };
    bool none = true;
    if (file || !builtin) {
        workcal_t *cal = cli_config_load (cli, &calendar, file, source, cap, &none);
        if (cal || !none)
            return cal;
    }
    workcal_t *cal = workcal_new_default ();
    if (!cal)
        cli_fail ("out of memory");
    snprintf (source, cap, "built-in");
    return cal;
}

const char *
cli_time (int64_t ms, char *buf, size_t cap)
{
    if (ms <= 0 || ms == INT64_MAX)
        snprintf (buf, cap, "-");
    else
        cb_time_format_iso (ms, buf, cap);
    return buf;
}

cli_table_t *
cli_table_new (size_t columns, const char *const *headers)
{
    cli_table_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->columns = columns;
    self->headers = s_copy_row (headers, columns);
    if (!self->headers) {
        free (self);
        return NULL;
    }
    return self;
}

void
cli_table_destroy (cli_table_t **self_p)
{
    cli_table_t *self = *self_p;
    if (self) {
        for (size_t r = 0; r < self->count; r++)
            s_free_row (self->rows [r], self->columns);
        free (self->rows);
        s_free_row (self->headers, self->columns);
        free (self);
        *self_p = NULL;
    }
}

int
cli_table_add (cli_table_t *self, const char *const *cells)
{
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        char ***rows = realloc (self->rows, cap * sizeof *rows);
        if (!rows)
            return -1;
        self->rows = rows;
        self->cap = cap;
    }
    char **row = s_copy_row (cells, self->columns);
    if (!row)
        return -1;
    self->rows [self->count++] = row;
    return 0;
}

int
cli_table_finish (cli_table_t **self_p)
{
    if (!*self_p)
        return cli_fail ("out of memory");
    cli_table_print (*self_p, stdout);
    cli_table_destroy (self_p);
    return CLI_OK;
}

size_t
cli_table_rows (const cli_table_t *self)
{
    return self->count;
}

void
cli_table_print (const cli_table_t *self, FILE *out)
{
    //  O(rows x columns) twice: once to measure, once to print.
    size_t *widths = calloc (self->columns, sizeof *widths);
    if (!widths)
        return;
    for (size_t c = 0; c < self->columns; c++) {
        widths [c] = cli_display_width (self->headers [c]);
        for (size_t r = 0; r < self->count; r++) {
            size_t w = cli_display_width (self->rows [r][c]);
            if (w > widths [c])
                widths [c] = w;
        }
    }
    for (size_t r = 0; r <= self->count; r++) {
        char **row = r == 0 ? self->headers : self->rows [r - 1];
        for (size_t c = 0; c < self->columns; c++) {
            if (c + 1 < self->columns) {
                s_print_padded (out, row [c], widths [c]);
                fputs ("  ", out);
            }
            else
                fputs (row [c], out);
        }
        fputc ('\n', out);
    }
    free (widths);
}

size_t
cli_display_width (const char *text)
{
    size_t width = 0;
    size_t len = strlen (text);
    size_t at = 0;
    while (at < len) {
        uint32_t cp = 0;
        size_t n = cb_utf8_decode (text + at, len - at, &cp);
        if (n == 0) {
            n = 1;              //  a stray byte: the terminal shows one replacement glyph
            cp = '?';
        }
        if (cp >= 0x300 && cp <= 0x36F)
            ;                   //  combining marks take no column
        else
            width += s_is_wide (cp) ? 2 : 1;
        at += n;
    }
    return width;
}

int
cli_print_json (json_t *json)
{
    if (!json)
        return cli_fail ("out of memory building the JSON answer");
    int rc = json_dumpf (json, stdout, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
    fputc ('\n', stdout);
    json_decref (json);
    return rc == 0 ? CLI_OK : CLI_FAIL;
}
