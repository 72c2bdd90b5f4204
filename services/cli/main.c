/*  main.c — `civicbus`, the operators' command-line tool: keys, grids, the
    dispatch catalogue, tickets, working calendars, adapter certificates and
    a status overview. ./scripts/up uses it to set a fresh Redis up.

    This file reads the global options (--redis, --config, --help,
    --version), finds the command in the table of groups and runs it. Each
    group is one cmd_*.c file. Exit status: 0 done, 1 failed, 2 wrong
    command line (cli.h). */

#include "cli.h"
#include "civicbus/config.h"
#include "civicbus/log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CIVICBUS_VERSION
#define CIVICBUS_VERSION "0.0.0-dev"
#endif

//  The command table: a group of subcommands, or one command of its own.
typedef struct {
    const char *name;
    const char *summary;
    const cli_command_t *subcommands;
    const cli_command_t *command;
} s_group_t;

static const s_group_t s_groups [] = {
    { "status",   "is everything up? Redis, the dispatcher's lease, queues, data versions",
      NULL, &cli_status_command },
    { "keys",     "API keys of the front doors: create, list, revoke", cli_keys_commands, NULL },
    { "grids",    "the city's grids: load, show, locate a point", cli_grids_commands, NULL },
    { "catalog",  "the dispatch catalogue (派单目录): load, show, route", cli_catalog_commands, NULL },
    { "ticket",   "tickets: show one with its history, list", cli_ticket_commands, NULL },
    { "calendar", "working calendars: when is a limit due? load a calendar",
      cli_calendar_commands, NULL },
    { "sla",      "time-limit policies (时限): load, show, when is a stage due?", cli_sla_commands,
      NULL },
    { "certs",    "CURVE certificates for department adapters", cli_certs_commands, NULL },
    { "adapters", "which adapter key belongs to which department", cli_adapters_commands, NULL },
    { "dead-letters", "notifications that kept failing: list, replay", cli_deadletters_commands,
      NULL },
    { NULL, NULL, NULL, NULL }
};

static const cb_setting_t s_settings [] = {
    CB_SETTINGS_COMMON,
    { NULL, NULL, 0, 0, 0, NULL }
};

/* ---- private ---- */

static void
s_print_usage (FILE *out)
{
    fprintf (out,
        "Usage: civicbus [--redis URL] [--config FILE] COMMAND [ARGS] [--help]\n\n"
        "The civicbus operators' tool.\n\nCommands:\n");
    for (const s_group_t *group = s_groups; group->name; group++) {
        if (group->command) {
            fprintf (out, "  %-26s %s\n", group->name, group->summary);
            continue;
        }
        for (const cli_command_t *cmd = group->subcommands; cmd->name; cmd++) {
            char words [64];
            snprintf (words, sizeof words, "%s %s", group->name, cmd->name);
            fprintf (out, "  %-26s %s\n", words, cmd->summary);
        }
    }
    fprintf (out,
        "\nGlobal options:\n"
        "  --redis URL     Redis to use (else CIVICBUS_REDIS_URL, else %s)\n"
        "  --config FILE   read NAME=value settings from FILE (also CIVICBUS_CONFIG)\n"
        "  --help          show this help; 'civicbus COMMAND --help' for one command\n"
        "  --version       show the version\n"
        "\nExit status: 0 done, 1 failed, 2 wrong command line.\n",
        CLI_DEFAULT_REDIS_URL);
}

static void
s_print_group (const s_group_t *group, FILE *out)
{
    fprintf (out, "Usage: civicbus %s COMMAND [ARGS] [--help]\n\n%s\n\nCommands:\n",
             group->name, group->summary);
    for (const cli_command_t *cmd = group->subcommands; cmd->name; cmd++)
        fprintf (out, "  %-10s %s\n", cmd->name, cmd->summary);
    fprintf (out, "\nTry 'civicbus %s COMMAND --help' for one command.\n", group->name);
}

static const s_group_t *
s_find_group (const char *name)
{
    for (const s_group_t *group = s_groups; group->name; group++)
        if (strcmp (group->name, name) == 0)
            return group;
    return NULL;
}

static int
s_global_usage_error (const char *fmt, const char *arg)
{
    fputs ("civicbus: ", stderr);
    fprintf (stderr, fmt, arg);
    fputs ("\nTry 'civicbus --help' for the list of commands.\n", stderr);
    return CLI_USAGE;
}

//  Finds and runs the command named by argv [0] (and argv [1] for a group).
static int
s_run (cli_t *cli, int argc, char **argv)
{
    const s_group_t *group = s_find_group (argv [0]);
    if (!group)
        return s_global_usage_error ("unknown command '%s'", argv [0]);
    if (group->command)
        return group->command->handler (cli, group->command, argc - 1, argv + 1);
    if (argc < 2) {
        fprintf (stderr, "civicbus %s: which command?\n", group->name);
        s_print_group (group, stderr);
        return CLI_USAGE;
    }
    if (strcmp (argv [1], "--help") == 0 || strcmp (argv [1], "-h") == 0) {
        s_print_group (group, stdout);
        return CLI_OK;
    }
    for (const cli_command_t *cmd = group->subcommands; cmd->name; cmd++)
        if (strcmp (cmd->name, argv [1]) == 0)
            return cmd->handler (cli, cmd, argc - 2, argv + 2);
    fprintf (stderr, "civicbus %s: unknown command '%s'\n", group->name, argv [1]);
    s_print_group (group, stderr);
    return CLI_USAGE;
}

/* ---- public ---- */

int
main (int argc, char **argv)
{
    cli_t cli = { 0 };
    cli.stderr_tty = isatty (STDERR_FILENO) == 1;
    //  The library logs JSON lines for services; a person at a terminal
    //  wants only the tool's own sentences, so only warnings come through.
    cb_log_init ("cli");
    if (cb_log_level () < CB_LOG_WARN)
        cb_log_set_level (CB_LOG_WARN);

    const char *config_file = NULL;
    int at = 1;
    for (; at < argc && strncmp (argv [at], "-", 1) == 0; at++) {
        const char *arg = argv [at];
        if (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0) {
            s_print_usage (stdout);
            return CLI_OK;
        }
        if (strcmp (arg, "--version") == 0) {
            printf ("civicbus %s\n", CIVICBUS_VERSION);
            return CLI_OK;
        }
        const char **value = NULL;
        const char *name = NULL;
        if (strncmp (arg, "--redis", 7) == 0 && (arg [7] == 0 || arg [7] == '=')) {
            value = &cli.redis_url;
            name = "--redis";
        }
        else
        if (strncmp (arg, "--config", 8) == 0 && (arg [8] == 0 || arg [8] == '=')) {
            value = &config_file;
            name = "--config";
        }
        else
            return s_global_usage_error ("unknown option '%s'", arg);
        if (arg [strlen (name)] == '=')
            *value = arg + strlen (name) + 1;
        else
        if (at + 1 < argc)
            *value = argv [++at];
        else
            return s_global_usage_error ("option '%s' needs a value", name);
    }
    if (at >= argc) {
        s_print_usage (stderr);
        return CLI_USAGE;
    }

    cb_config_t *config = cb_config_new (s_settings);
    if (!config)
        return cli_fail ("out of memory");
    char err [512] = "";
    if (cb_config_load (config, config_file, err, sizeof err)) {
        cb_config_destroy (&config);
        fprintf (stderr, "civicbus: %s\n", err);
        return CLI_USAGE;
    }
    if (!cli.redis_url)
        cli.redis_url = cb_config_str (config, "CIVICBUS_REDIS_URL");
    cli.redis_timeout_ms = (int) cb_config_int (config, "CIVICBUS_REDIS_TIMEOUT_MS");

    int rc = s_run (&cli, argc - at, argv + at);

    cb_redis_destroy (&cli.redis);
    cb_config_destroy (&config);
    fflush (stdout);
    if (ferror (stdout)) {
        fprintf (stderr, "civicbus: could not write the output\n");
        return CLI_FAIL;
    }
    return rc;
}
