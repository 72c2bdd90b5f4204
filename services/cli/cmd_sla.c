/*  cmd_sla.c — `civicbus sla load|show|due`: the time-limit policies (时限)
    the dispatch catalogue names. `due` answers "if this stage starts now,
    when is it due, when does it turn yellow, when is it escalated?" with
    the same functions the dispatcher uses (sla.h).

    The loaded policies live in Redis next to the catalogue:
        cfg:sla  hash  json (the policies text), version, loaded_ms, count,
                       label (the file's own "version")
    validated before anything is written, version bumped in the same script
    (citydata_store_text, like cfg:catalog), so a reader never sees a new version
    with old text. */

#include "cli.h"
#include "civicbus/citydata.h"
#include "civicbus/clock.h"
#include "civicbus/sla.h"
#include "civicbus/workcal.h"

#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static void *
s_parse_policies (const char *text, size_t len, char *err, size_t errcap)
{
    return sla_from_json (text, len, err, errcap);
}

//  The policies: from --file, else from Redis. NULL after printing why.
static sla_policies_t *
s_pick_policies (cli_t *cli, const char *file, char *source, size_t cap)
{
    static const cli_config_t policies = {
        .key = "cfg:sla", .parse = s_parse_policies, .noun = "policies file",
        .stored = "the policies stored in Redis do not load",
        .hint = "load good ones with 'civicbus sla load FILE'",
        .reading = "reading the time-limit policies",
        .without_redis = "'--file FILE' reads the policies without Redis",
    };
    bool none = false;
    sla_policies_t *sla = cli_config_load (cli, &policies, file, source, cap, &none);
    if (none)
        cli_fail ("no time-limit policies are loaded; load them with 'civicbus sla load "
                  "deploy/config/sla.json' or give --file FILE");
    return sla;
}

//  "5 working_days", "30 minutes", or "-".
static const char *
s_duration (const sla_duration_t *d, bool has, char *buf, size_t cap)
{
    if (!has)
        return "-";
    snprintf (buf, cap, "%g %s", d->amount, d->unit);
    return buf;
}

static void
s_show_stage (const char *label, const sla_stage_t *stage)
{
    char limit [64], after [64];
    printf ("  %-16s %s", label, s_duration (&stage->limit, stage->has_limit, limit, sizeof limit));
    if (stage->has_limit)
        printf (", yellow at %g%%", stage->warn_share * 100);
    printf ("\n");
    for (size_t i = 0; stage->has_limit && i < stage->step_count; i++) {
        const sla_step_t *step = &stage->steps [i];
        printf ("  %-16s   +%s late: level %d, %s card, alert %s\n", "",
                s_duration (&step->after, true, after, sizeof after), step->level, step->card,
                step->notify);
    }
}

static int
s_sla_load (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    cli_load_t load;
    int rc = cli_load_begin (cli, cmd, argc, argv, "which file? give the policies' JSON FILE "
                             "(e.g. deploy/config/sla.json)", &load);
    if (rc != CLI_PROCEED)
        return rc;
    char err [512] = "";
    sla_policies_t *sla = sla_from_json (load.text, load.len, err, sizeof err);
    if (!sla) {
        free (load.text);
        return cli_fail ("%s is not a valid policies file, nothing was stored: %s", load.path,
                         err);
    }
    size_t count = sla_policy_count (sla);
    char label [128];
    snprintf (label, sizeof label, "%s", sla_version (sla));
    char fallback [SLA_NAME_MAX + 1];
    snprintf (fallback, sizeof fallback, "%s", sla_default_policy (sla));
    sla_destroy (&sla);
    if (load.check_only) {
        free (load.text);
        printf ("%s is valid: %zu policies, file version '%s', default '%s'\n", load.path,
                count, label, fallback);
        return CLI_OK;
    }
    int64_t version = 0;
    char n [32];
    snprintf (n, sizeof n, "%zu", count);
    const char *fields [] = { "count", n, "label", label };
    rc = citydata_store_text (load.redis, "sla", load.text, load.len, fields, 2, &version,
                              err, sizeof err);
    free (load.text);
    if (rc)
        return cli_redis_failed (cli, "storing the time-limit policies");
    printf ("loaded %zu time-limit policies '%s' (version %lld)\n", count, label,
            (long long) version);
    return CLI_OK;
}

static int
s_sla_show (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *policy = NULL, *file = NULL;
    const cli_opt_t opts [] = { { "policy", &policy, NULL }, { "file", &file, NULL },
                                CLI_OPTS_END };
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    char source [320];
    sla_policies_t *sla = s_pick_policies (cli, file, source, sizeof source);
    if (!sla)
        return CLI_FAIL;
    if (policy && !sla_has_policy (sla, policy)) {
        cli_fail ("no policy '%s'; tickets naming it are timed by the default '%s'",
                  policy, sla_default_policy (sla));
        sla_destroy (&sla);
        return CLI_FAIL;
    }
    printf ("policies  '%s' (%s), default '%s'\n", sla_version (sla), source,
            sla_default_policy (sla));
    if (!policy) {
        const char *headers [] = { "POLICY", "ACCEPT", "SIGN", "RESOLVE", "VERIFY",
                                   "URGENT RESOLVE" };
        cli_table_t *table = cli_table_new (6, headers);
        if (!table) {
            sla_destroy (&sla);
            return cli_fail ("out of memory");
        }
        for (size_t i = 0; i < sla_policy_count (sla); i++) {
            const char *name = sla_policy_name (sla, i);
            char cells [5][64];
            const char *row [6] = { name };
            for (int s = 0; s < 5; s++) {
                Civicbus__V1__Stage stage = (Civicbus__V1__Stage) (s < 4 ? s + 1 : 3);
                const sla_stage_t *view = sla_stage (sla, name, stage, s < 4
                                                     ? CIVICBUS__V1__URGENCY__URGENCY_NORMAL
                                                     : CIVICBUS__V1__URGENCY__URGENCY_URGENT);
                row [s + 1] = s_duration (&view->limit, view->has_limit, cells [s], 64);
            }
            cli_table_add (table, row);
        }
        cli_table_print (table, stdout);
        cli_table_destroy (&table);
    }
    else {
        printf ("policy    %s (extensions up to %d working days)\n", policy,
                sla_extension_max_days (sla, policy));
        for (int u = 0; u < 2; u++) {
            printf ("%s\n", u ? "urgent tickets:" : "normal tickets:");
            for (int s = 1; s <= 4; s++)
                s_show_stage (sla_stage_name ((Civicbus__V1__Stage) s),
                              sla_stage (sla, policy, (Civicbus__V1__Stage) s,
                                         (Civicbus__V1__Urgency) u));
        }
    }
    sla_destroy (&sla);
    return CLI_OK;
}

static int
s_sla_due (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *policy = NULL, *stage_name = NULL, *start_text = NULL, *file = NULL,
               *calendar = NULL;
    bool urgent = false, builtin = false;
    const cli_opt_t opts [] = {
        { "policy", &policy, NULL }, { "stage", &stage_name, NULL }, { "start", &start_text, NULL },
        { "urgent", NULL, &urgent }, { "file", &file, NULL }, { "calendar", &calendar, NULL },
        { "builtin", NULL, &builtin }, CLI_OPTS_END
    };
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    if (!policy)
        return cli_usage_error (cmd, "missing --policy NAME (e.g. standard-5d)");
    if (!stage_name)
        return cli_usage_error (cmd, "missing --stage accept|sign|resolve|verify");
    int stage = sla_stage_from_name (stage_name);
    if (stage < 0)
        return cli_usage_error (cmd, "--stage '%s' is not one of accept, sign, resolve, verify",
                                stage_name);
    if (!start_text)
        return cli_usage_error (cmd, "missing --start TIME (ISO 8601, e.g. 2026-09-30T16:00+08:00)");
    int64_t start_ms;
    if (cb_time_parse_iso (start_text, &start_ms))
        return cli_usage_error (cmd, "--start '%s' is not an ISO 8601 time "
                                "(e.g. 2026-09-30T16:00+08:00)", start_text);
    if (calendar && builtin)
        return cli_usage_error (cmd, "give --calendar FILE or --builtin, not both");

    char policy_source [320], calendar_source [320];
    sla_policies_t *sla = s_pick_policies (cli, file, policy_source, sizeof policy_source);
    if (!sla)
        return CLI_FAIL;
    workcal_t *cal = cli_pick_calendar (cli, calendar, builtin, calendar_source,
                                      sizeof calendar_source);
    if (!cal) {
        sla_destroy (&sla);
        return CLI_FAIL;
    }
    Civicbus__V1__Urgency urgency = urgent ? CIVICBUS__V1__URGENCY__URGENCY_URGENT
                                           : CIVICBUS__V1__URGENCY__URGENCY_NORMAL;
    if (!sla_has_policy (sla, policy))
        cli_note ("no policy '%s': timed by the default '%s', as the dispatcher would", policy,
                  sla_default_policy (sla));
    Civicbus__V1__Deadline deadline = CIVICBUS__V1__DEADLINE__INIT;
    rc = sla_stage_deadline (sla, policy, (Civicbus__V1__Stage) stage, urgency, start_ms, cal,
                             &deadline);
    int exit_code = CLI_OK;
    char due [40], warn [40], at [40], after [64];
    if (rc == SLA_NO_LIMIT)
        printf ("no limit: policy '%s' sets none for %s%s\n",
                sla_effective_policy (sla, policy), stage_name, urgent ? " (urgent)" : "");
    else
    if (rc == SLA_NEVER)
        exit_code = cli_fail ("the limit never ends: calendar '%s' has no office time left "
                              "after %s", workcal_name (cal), start_text);
    else
    if (rc != SLA_OK)
        exit_code = cli_fail ("cannot compute the deadline");
    else {
        printf ("due   %s\n", cb_time_format_iso (deadline.due_ms, due, sizeof due));
        printf ("warn  %s\n", cb_time_format_iso (deadline.warn_ms, warn, sizeof warn));
        int64_t times [SLA_MAX_STEPS];
        const sla_step_t *steps = NULL;
        size_t n = sla_step_times (sla, policy, urgency, &deadline, cal, times, SLA_MAX_STEPS,
                                   &steps);
        for (size_t i = 0; i < n; i++)
            printf ("step  %s  level %d, %s card, alert %s (+%s late)\n",
                    cb_time_format_iso (times [i], at, sizeof at), steps [i].level,
                    steps [i].card, steps [i].notify,
                    s_duration (&steps [i].after, true, after, sizeof after));
        const sla_stage_t *view = sla_stage (sla, policy, (Civicbus__V1__Stage) stage, urgency);
        char limit [64];
        cli_note ("policy '%s' %s%s: %s, yellow at %g%% (policies %s; calendar '%s', %s)",
                  sla_effective_policy (sla, policy), stage_name, urgent ? " urgent" : "",
                  s_duration (&view->limit, true, limit, sizeof limit), view->warn_share * 100,
                  policy_source, workcal_name (cal), calendar_source);
    }
    workcal_destroy (&cal);
    sla_destroy (&sla);
    return exit_code;
}

/* ---- public ---- */

const cli_command_t cli_sla_commands [] = {
    { "load", "validate time-limit policies and store them", "FILE [--check]",
      "Validates FILE (format in common/include/civicbus/sla.h; the demo city's\n"
      "policies are deploy/config/sla.json) and stores it in Redis (cfg:sla) with\n"
      "a new version. A file with any error is refused, naming the policy and\n"
      "field, and nothing changes.\n\n"
      "Options:\n"
      "  --check       validate only; store nothing (no Redis needed)\n",
      s_sla_load, NULL, "sla load" },
    { "show", "the loaded policies: a table, or one policy in full",
      "[--policy NAME] [--file FILE]",
      "Without --policy: each policy's limits per stage (and the urgent resolve\n"
      "limit). With --policy: every stage, normal and urgent, with its warning\n"
      "share and escalation steps.\n\n"
      "Options:\n"
      "  --policy NAME   one policy in full\n"
      "  --file FILE     read the policies from FILE instead of Redis\n",
      s_sla_show, NULL, "sla show" },
    { "due", "when is a stage due, when does it turn yellow, when is it escalated?",
      "--policy NAME --stage accept|sign|resolve|verify --start TIME [--urgent] "
      "[--file FILE] [--calendar FILE | --builtin]",
      "Computes the deadline of a stage started at TIME, as the dispatcher does,\n"
      "and prints on stdout:\n"
      "  due   TIME    the limit (the light turns red, escalation begins)\n"
      "  warn  TIME    the warning share of the limit (the light turns yellow)\n"
      "  step  TIME    each escalation step: level, card, who is alerted\n"
      "An unknown policy is timed by the default policy (a note says so).\n\n"
      "Options:\n"
      "  --policy NAME    the policy the catalogue names (e.g. standard-5d)\n"
      "  --stage STAGE    accept, sign, resolve or verify\n"
      "  --start TIME     e.g. 2026-09-30T16:00+08:00 (no zone: Asia/Shanghai)\n"
      "  --urgent         the urgent ticket's limits\n"
      "  --file FILE      the policies from FILE instead of Redis\n"
      "  --calendar FILE  count working time on this calendar file\n"
      "  --builtin        count on the built-in cn-2026 calendar\n"
      "Without either, the calendar loaded in Redis, else the built-in one.\n\n"
      "Example:\n"
      "  civicbus sla due --policy standard-5d --stage sign --start 2026-09-30T16:00+08:00\n"
      "  due   2026-10-08T16:00:00+08:00\n"
      "  warn  2026-10-08T14:36:00+08:00\n"
      "  step  2026-10-08T16:00:00+08:00  level 1, yellow card, alert community (+0 working_hours late)\n"
      "  ...\n",
      s_sla_due, NULL, "sla due" },
    CLI_COMMANDS_END
};
