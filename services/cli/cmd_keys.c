/*  cmd_keys.c — `civicbus keys create|list|revoke`: the API keys that the
    front doors (intake, console) accept. The secret is printed once, at
    creation; Redis keeps only its hash (apikey.h), so a lost secret means
    a new key. ./scripts/up parses `keys create` (see docs/CLI.md). */

#include "cli.h"
#include "civicbus/apikey.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static int
s_compare_names (const void *a, const void *b)
{
    return strcmp (((const apikey_info_t *) a)->name, ((const apikey_info_t *) b)->name);
}

static const char *
s_rate_text (int rate, char *buf, size_t cap)
{
    if (rate <= 0)
        snprintf (buf, cap, "unlimited");
    else
        snprintf (buf, cap, "%d/s", rate);
    return buf;
}

static int
s_keys_create (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *name = NULL, *role_name = NULL, *rate_text = NULL;
    bool quiet = false;
    const cli_opt_t opts [] = {
        { "name", &name, NULL }, { "role", &role_name, NULL },
        { "rate", &rate_text, NULL }, { "quiet", NULL, &quiet }, CLI_OPTS_END
    };
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    if (!name)
        return cli_usage_error (cmd, "missing --name NAME (1..63 of A-Z a-z 0-9 . _ -)");
    if (!role_name)
        return cli_usage_error (cmd, "missing --role ROLE "
                                "(reporter_app, hotline, operator, admin or sensor)");
    apikey_role_t role = apikey_role_from_name (role_name);
    if (role == APIKEY_ROLE_NONE)
        return cli_usage_error (cmd, "unknown role '%s' "
                                "(reporter_app, hotline, operator, admin or sensor)", role_name);
    long long rate = 0;
    if (rate_text && cli_parse_int (rate_text, 0, 1000000, &rate))
        return cli_usage_error (cmd, "--rate '%s' is not a whole number of requests per "
                                "second in 0..1000000 (0 = unlimited)", rate_text);

    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return CLI_FAIL;
    char secret [APIKEY_SECRET_MAX] = "";
    char err [256] = "";
    if (apikey_create (redis, name, role, (int) rate, secret, sizeof secret, err, sizeof err))
        return cli_fail ("cannot create key '%s': %s", name, err);
    if (quiet)
        printf ("%s\n", secret);
    else {
        char buf [32];
        fprintf (stderr, "created key '%s' (role %s, rate %s)\n", name,
                 apikey_role_name (role), s_rate_text ((int) rate, buf, sizeof buf));
        printf ("key: %s\n", secret);
        fprintf (stderr, "warning: the secret is shown only once; store it now "
                         "(Redis keeps only its hash)\n");
    }
    fflush (stdout);
    sodium_memzero (secret, sizeof secret);
    return CLI_OK;
}

static int
s_keys_list (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    bool as_json = false;
    const cli_opt_t opts [] = { { "json", NULL, &as_json }, CLI_OPTS_END };
    cb_redis_t *redis = NULL;
    int rc = cli_parse_connect (cli, cmd, argc, argv, opts, &redis);
    if (rc != CLI_PROCEED)
        return rc;
    apikey_info_t *list = NULL;
    size_t count = 0;
    if (apikey_list (redis, &list, &count))
        return cli_redis_failed (cli, "listing the keys");
    if (count > 1)
        qsort (list, count, sizeof *list, s_compare_names);

    char created [40], rate [32];
    if (as_json) {
        json_t *array = json_array ();
        for (size_t i = 0; array && i < count; i++)
            json_array_append_new (array, json_pack ("{s:s, s:s, s:i, s:s}",
                "name", list [i].name, "role", apikey_role_name (list [i].role),
                "rate", list [i].rate_per_s,
                "created", cli_time (list [i].created_ms, created, sizeof created)));
        free (list);
        return cli_print_json (array);
    }
    if (count == 0) {
        free (list);
        cli_note ("no API keys yet; create one with "
                  "'civicbus keys create --name NAME --role ROLE'");
        return CLI_OK;
    }
    const char *headers [] = { "NAME", "ROLE", "RATE", "CREATED" };
    cli_table_t *table = cli_table_new (4, headers);
    for (size_t i = 0; table && i < count; i++) {
        const char *cells [] = {
            list [i].name, apikey_role_name (list [i].role),
            s_rate_text (list [i].rate_per_s, rate, sizeof rate),
            cli_time (list [i].created_ms, created, sizeof created)
        };
        if (cli_table_add (table, cells))
            cli_table_destroy (&table);
    }
    free (list);
    return cli_table_finish (&table);
}

static int
s_keys_revoke (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *arg = NULL;
    int rc = cli_parse_one (cli, cmd, argc, argv, NULL,
                            "which key? give its NAME ('civicbus keys list' shows them)", &arg);
    if (rc != CLI_PROCEED)
        return rc;
    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return CLI_FAIL;
    rc = apikey_revoke (redis, arg);
    if (rc < 0)
        return cli_redis_failed (cli, "revoking the key");
    if (rc == 1)
        return cli_fail ("no key named '%s'; 'civicbus keys list' shows the keys", arg);
    printf ("revoked key '%s'\n", arg);
    cli_note ("front doors that cached it accept it for a few more seconds");
    return CLI_OK;
}

/* ---- public ---- */

const cli_command_t cli_keys_commands [] = {
    { "create", "create an API key and print its secret (once)",
      "--name NAME --role ROLE [--rate N] [--quiet]",
      "Creates a key for a front door client and prints its secret on stdout:\n"
      "    key: cbk_...\n"
      "The secret is shown only this once; Redis keeps its SHA-256 only.\n\n"
      "Options:\n"
      "  --name NAME   unique name, 1..63 of A-Z a-z 0-9 . _ -\n"
      "  --role ROLE   reporter_app, hotline, operator, admin or sensor\n"
      "  --rate N      requests per second per front-door process (0: unlimited, default)\n"
      "  --quiet       print only the secret, nothing on stderr (for scripts)\n\n"
      "Example:\n"
      "  civicbus keys create --name hotline-12345 --role hotline --rate 200\n",
      s_keys_create, NULL, "keys create" },
    { "list", "list the keys (never their secrets)", "[--json]",
      "Prints name, role, rate and creation time (Asia/Shanghai) of every key.\n\n"
      "Options:\n"
      "  --json        a JSON array of {name, role, rate, created}\n",
      s_keys_list, NULL, "keys list" },
    { "revoke", "revoke a key by name", "NAME",
      "Deletes the key; front doors stop accepting it within their cache time\n"
      "(a few seconds).\n",
      s_keys_revoke, NULL, "keys revoke" },
    CLI_COMMANDS_END
};
