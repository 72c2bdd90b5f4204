/*  cli.h — the civicbus command-line tool's private header: the command
    table, the option parser, and the helpers every command group shares
    (Redis connection with an operator-friendly error, file reading with a
    progress line, the start of every `load FILE [--check]`, configurations
    read from a file or from Redis, the working calendar to count on, tables
    that line up Chinese text).

    Each command group lives in its own file (cmd_keys.c, cmd_grids.c, ...)
    and exports one table of subcommands; main.c holds the table of groups.
    A handler gets argv after its own name and returns an exit code:
    CLI_OK (0), CLI_FAIL (1: the operation failed) or CLI_USAGE (2: the
    command line was wrong). */

#ifndef CIVICBUS_CLI_H
#define CIVICBUS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>
#include "civicbus/file.h"
#include "civicbus/redis.h"
#include "civicbus/grid_index.h"
#include "civicbus/catalog.h"
#include "civicbus/workcal.h"

enum {
    CLI_OK = 0,
    CLI_FAIL = 1,
    CLI_USAGE = 2,
    CLI_PROCEED = -1,           //  cli_parse: options read, run the command
};

#define CLI_DEFAULT_REDIS_URL "redis://127.0.0.1:6380/0"
#define CLI_FILE_MAX CB_FILE_CITY_DATA_MAX   //  refuse bigger input files

typedef struct _cli_t cli_t;
typedef struct _cli_command_t cli_command_t;

typedef int (cli_handler_fn) (cli_t *cli, const cli_command_t *cmd, int argc, char **argv);

//  One subcommand ("keys create") or, with `subcommands` set, one group.
struct _cli_command_t {
    const char *name;           //  "create"
    const char *summary;        //  one line for the group's help
    const char *usage;          //  arguments after the name, "--name NAME --role ROLE [--rate N]"
    const char *help;           //  the rest of --help: what it does, options, examples
    cli_handler_fn *handler;    //  NULL for a group
    const cli_command_t *subcommands;   //  a group's commands, ended by { NULL }
    const char *title;          //  the words that run it, "keys create", for messages
};

//  The tool's state: one per run, owned by main().
struct _cli_t {
    const char *redis_url;      //  --redis, else CIVICBUS_REDIS_URL, else the default
    int redis_timeout_ms;       //  CIVICBUS_REDIS_TIMEOUT_MS, default 2000
    cb_redis_t *redis;          //  connected on first use (cli_redis)
    bool stderr_tty;            //  progress lines only for people
};

//  One option a command takes. Exactly one of value and flag is set.
typedef struct {
    const char *name;           //  "name" for --name
    const char **value;         //  --name VALUE or --name=VALUE
    bool *flag;                 //  --name
} cli_opt_t;

//  Ends a table of options, and of commands.
#define CLI_OPTS_END     { NULL, NULL, NULL }
#define CLI_COMMANDS_END { NULL, NULL, NULL, NULL, NULL, NULL, NULL }

//  The command groups (each defined in its cmd_*.c).
extern const cli_command_t cli_keys_commands [];
extern const cli_command_t cli_grids_commands [];
extern const cli_command_t cli_catalog_commands [];
extern const cli_command_t cli_ticket_commands [];
extern const cli_command_t cli_calendar_commands [];
extern const cli_command_t cli_sla_commands [];
extern const cli_command_t cli_certs_commands [];
extern const cli_command_t cli_adapters_commands [];
extern const cli_command_t cli_deadletters_commands [];
extern const cli_command_t cli_status_command;   //  a command without subcommands

//  Reads the command's options and positional arguments. Every command
//  also takes --help (prints the help, returns CLI_OK) and --redis URL.
//  Arguments that start with "--" are options, everything else (including
//  "-33.5") is positional and goes into pos [0 .. *npos-1]; between min_pos
//  and max_pos are allowed. "--" ends the options. Returns CLI_PROCEED, or
//  CLI_OK after --help, or CLI_USAGE after printing what was wrong.
int cli_parse (cli_t *cli, const cli_command_t *cmd, int argc, char **argv,
               const cli_opt_t *opts, const char **pos, int min_pos, int max_pos,
               int *npos);

//  Prints the command's full help on `out`.
void cli_print_help (const cli_command_t *cmd, FILE *out);

//  A usage error: "civicbus GROUP CMD: MESSAGE" and how to get help, on
//  stderr. Returns CLI_USAGE.
int cli_usage_error (const cli_command_t *cmd, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
//  A failure: "civicbus: MESSAGE" on stderr. Returns CLI_FAIL.
int cli_fail (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
//  A note for people on stderr ("note: ..."), never part of the output.
void cli_note (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

//  The Redis connection, connected now if it is not. On failure prints
//  "cannot reach Redis at HOST:PORT (why). Is ./scripts/up running?" and
//  returns NULL.
cb_redis_t *cli_redis (cli_t *cli);
//  Prints the message for a Redis failure during a command (after a
//  successful connect) and returns CLI_FAIL.
int cli_redis_failed (cli_t *cli, const char *what);

//  Reads a whole file (NUL-terminated; caller frees). Shows
//  "reading NAME... 2.1 MB" on a terminal. NULL after printing why.
char *cli_read_file (cli_t *cli, const char *path, size_t *len);
//  A progress line on a terminal ("validating 794 grids..."), replaced by
//  the next one; cli_progress_done clears it.
void cli_progress (cli_t *cli, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
void cli_progress_done (cli_t *cli);

//  Parses a whole number in [min, max]; 0 or -1.
int cli_parse_int (const char *text, long long min, long long max, long long *out);
//  Parses a finite number; 0 or -1.
int cli_parse_double (const char *text, double *out);

//  The loaded grids (parsed from Redis), or NULL with *version 0 when none
//  are loaded, or NULL with *version -1 after printing a failure.
grid_index_t *cli_load_grids (cli_t *cli, int64_t *version);
//  The same for the catalogue.
catalog_t *cli_load_catalog (cli_t *cli, int64_t *version);

//  cli_parse for a command with one positional argument, which it needs:
//  CLI_PROCEED with *arg set, or the exit code (`missing`: the usage error
//  without it).
int cli_parse_one (cli_t *cli, const cli_command_t *cmd, int argc, char **argv,
                   const cli_opt_t *opts, const char *missing, const char **arg);

//  Connects (cli_redis) after the options: for commands with options only.
//  CLI_PROCEED with *redis set, or the exit code (after --help, a usage
//  error, or Redis out of reach).
int cli_parse_connect (cli_t *cli, const cli_command_t *cmd, int argc, char **argv,
                       const cli_opt_t *opts, cb_redis_t **redis);

//  ---- `GROUP load FILE [--check]`: validate a file, then store it ----

typedef struct {
    const char *path;           //  FILE
    bool check_only;            //  --check: validate only, store nothing
    cb_redis_t *redis;          //  NULL with --check
    char *text;                 //  FILE, NUL-terminated; the command frees it
    size_t len;
} cli_load_t;

//  The start of every load command: reads --check and FILE (`which`: the
//  usage error without FILE), connects to Redis unless --check (first: a
//  person should not wait for a big file to validate only to learn that
//  Redis is down), reads FILE. CLI_PROCEED with `load` filled, or the exit
//  code after printing why.
int cli_load_begin (cli_t *cli, const cli_command_t *cmd, int argc, char **argv,
                    const char *which, cli_load_t *load);

//  ---- configurations a command reads: from --file, else from Redis ----

//  text -> the parsed configuration, or NULL with `err` (workcal_from_json,
//  sla_from_json, wrapped to return void *).
typedef void *(cli_config_parse_fn) (const char *text, size_t len, char *err, size_t errcap);

typedef struct {
    const char *key;            //  the hash in Redis: "cfg:calendar" (its json and version)
    cli_config_parse_fn *parse;
    const char *noun;           //  "calendar": "FILE is not a valid calendar: ..."
    const char *stored;         //  "the calendar stored in Redis does not load"
    const char *hint;           //  after that: "load a good one with '...'"
    const char *reading;        //  for cli_redis_failed: "reading the calendar"
    const char *without_redis;  //  a note when Redis is out of reach, or NULL
} cli_config_t;

//  Parses `file` when given (source "from FILE"), else the text stored in
//  Redis (source "stored version N"). NULL after printing why, or NULL with
//  *none set when Redis holds none (nothing printed).
void *cli_config_load (cli_t *cli, const cli_config_t *config, const char *file,
                       char *source, size_t cap, bool *none);

//  The working calendar to count on: --calendar FILE, else --builtin, else
//  the one in Redis (cfg:calendar), else the built-in one; `source` says
//  which. NULL after printing why.
workcal_t *cli_pick_calendar (cli_t *cli, const char *file, bool builtin, char *source,
                              size_t cap);

//  "2026-09-30T16:00:00+08:00", or "-" for 0.
const char *cli_time (int64_t ms, char *buf, size_t cap);

//  ---- tables: columns line up by display width (CJK characters count 2) ----

typedef struct _cli_table_t cli_table_t;
//  A table with `columns` columns; headers are upper-case labels.
cli_table_t *cli_table_new (size_t columns, const char *const *headers);
void cli_table_destroy (cli_table_t **self_p);
//  Adds a row of `columns` cells (copied; NULL prints "-"). 0 or -1.
int cli_table_add (cli_table_t *self, const char *const *cells);
size_t cli_table_rows (const cli_table_t *self);
//  Prints header and rows; the last column is not padded.
void cli_table_print (const cli_table_t *self, FILE *out);
//  A command's last step with a table: prints it on stdout and destroys it;
//  CLI_OK, or CLI_FAIL ("out of memory") when *self_p is NULL (a row could
//  not be added).
int cli_table_finish (cli_table_t **self_p);

//  Terminal columns that UTF-8 `text` takes (East Asian wide = 2).
size_t cli_display_width (const char *text);

//  Prints `json` indented on stdout with a newline; steals the reference.
int cli_print_json (json_t *json);

#endif
