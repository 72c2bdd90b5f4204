/*  cmd_calendar.c — `civicbus calendar due|load|show`: working calendars
    (office hours, public holidays, adjusted working days 调休). `due`
    answers the operator's "when is this due?" with workcal_due, the
    function the time-limit policies use.

    The loaded calendar lives in Redis next to the grids and catalogue:
        cfg:calendar  hash  json (the calendar text), version, loaded_ms, name
    like cfg:grids (citydata_store_text): validated before it is written, version
    bumped in the same script, so a reader never sees a new version with old
    text. Without it every service uses workcal_new_default (cn-2026). */

#include "cli.h"
#include "civicbus/citydata.h"
#include "civicbus/clock.h"
#include "civicbus/workcal.h"

#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static int
s_calendar_due (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *start_text = NULL, *working_hours = NULL, *working_days = NULL,
               *hours = NULL, *days = NULL, *file = NULL;
    bool builtin = false;
    const cli_opt_t opts [] = {
        { "start", &start_text, NULL }, { "working-hours", &working_hours, NULL },
        { "working-days", &working_days, NULL }, { "hours", &hours, NULL },
        { "days", &days, NULL }, { "calendar", &file, NULL }, { "builtin", NULL, &builtin },
        CLI_OPTS_END
    };
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    if (!start_text)
        return cli_usage_error (cmd, "missing --start TIME (ISO 8601, e.g. 2026-09-30T16:00+08:00)");
    int64_t start_ms;
    if (cb_time_parse_iso (start_text, &start_ms))
        return cli_usage_error (cmd, "--start '%s' is not an ISO 8601 time "
                                "(e.g. 2026-09-30T16:00+08:00)", start_text);
    const char *unit = NULL, *amount_text = NULL;
    int given = 0;
    if (working_hours) { unit = "working-hours"; amount_text = working_hours; given++; }
    if (working_days)  { unit = "working-days";  amount_text = working_days;  given++; }
    if (hours)         { unit = "hours";         amount_text = hours;         given++; }
    if (days)          { unit = "days";          amount_text = days;          given++; }
    if (given != 1)
        return cli_usage_error (cmd, "give exactly one of --working-hours N, --working-days N, "
                                "--hours N, --days N");
    double amount;
    if (cli_parse_double (amount_text, &amount) || amount < 0 || amount > 1e9)
        return cli_usage_error (cmd, "--%s '%s' is not a number in 0..1000000000",
                                unit, amount_text);
    if (file && builtin)
        return cli_usage_error (cmd, "give --calendar FILE or --builtin, not both");

    char source [320];
    workcal_t *cal = cli_pick_calendar (cli, file, builtin, source, sizeof source);
    if (!cal)
        return CLI_FAIL;
    int64_t due_ms = 0;
    rc = workcal_due (cal, start_ms, unit, amount, &due_ms);
    char name [128];
    snprintf (name, sizeof name, "%s", workcal_name (cal));
    workcal_destroy (&cal);
    if (rc == -2)
        return cli_fail ("the limit never ends: calendar '%s' has no office time left after %s",
                         name, start_text);
    if (rc)
        return cli_usage_error (cmd, "--%s %s is not a limit the calendar can count", unit,
                                amount_text);
    char due [40];
    printf ("%s\n", cb_time_format_iso (due_ms, due, sizeof due));
    cli_note ("calendar '%s' (%s)", name, source);
    return CLI_OK;
}

static int
s_calendar_load (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    cli_load_t load;
    int rc = cli_load_begin (cli, cmd, argc, argv, "which file? give the calendar's JSON FILE",
                             &load);
    if (rc != CLI_PROCEED)
        return rc;
    char err [512] = "";
    workcal_t *cal = workcal_from_json (load.text, load.len, err, sizeof err);
    if (!cal) {
        free (load.text);
        return cli_fail ("%s is not a valid calendar, nothing was stored: %s", load.path, err);
    }
    char name [128];
    snprintf (name, sizeof name, "%s", workcal_name (cal));
    workcal_destroy (&cal);
    if (load.check_only) {
        free (load.text);
        printf ("%s is valid: calendar '%s'\n", load.path, name);
        return CLI_OK;
    }
    int64_t version = 0;
    const char *fields [] = { "name", name };
    rc = citydata_store_text (load.redis, "calendar", load.text, load.len, fields, 1, &version,
                              err, sizeof err);
    free (load.text);
    if (rc)
        return cli_redis_failed (cli, "storing the calendar");
    printf ("loaded calendar '%s' (version %lld)\n", name, (long long) version);
    return CLI_OK;
}

static int
s_calendar_show (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *file = NULL, *date = NULL;
    bool builtin = false;
    const cli_opt_t opts [] = {
        { "calendar", &file, NULL }, { "builtin", NULL, &builtin }, { "date", &date, NULL },
        CLI_OPTS_END
    };
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    int64_t date_ms = 0;
    if (date && (strlen (date) != 10 || cb_time_parse_iso (date, &date_ms)))
        return cli_usage_error (cmd, "--date '%s' is not a date like 2026-10-10", date);
    if (file && builtin)
        return cli_usage_error (cmd, "give --calendar FILE or --builtin, not both");
    char source [320];
    workcal_t *cal = cli_pick_calendar (cli, file, builtin, source, sizeof source);
    if (!cal)
        return CLI_FAIL;
    int64_t day_ms = workcal_standard_day_ms (cal);
    printf ("calendar      %s (%s)\n", workcal_name (cal), source);
    printf ("working day   %lld h %02lld min of office time (the unit of --working-days)\n",
            (long long) (day_ms / 3600000), (long long) (day_ms / 60000 % 60));
    if (date) {
        int yyyymmdd = cb_time_local_yyyymmdd (date_ms);
        printf ("%s    %s\n", date, workcal_is_working_day (cal, yyyymmdd)
                ? "a working day" : "not a working day (weekend or holiday)");
    }
    workcal_destroy (&cal);
    return CLI_OK;
}

/* ---- public ---- */

const cli_command_t cli_calendar_commands [] = {
    { "due", "when is a time limit due? prints the deadline in ISO 8601",
      "--start TIME (--working-hours N | --working-days N | --hours N | --days N) "
      "[--calendar FILE | --builtin]",
      "Counts the limit from TIME on the working calendar and prints the deadline\n"
      "(Asia/Shanghai) on stdout. Working time counts office hours only, skipping\n"
      "nights, lunch breaks, weekends and holidays, and counting adjusted working\n"
      "weekends (调休). A limit that ends exactly at a closing time (12:00, 17:30)\n"
      "is due at that closing time.\n\n"
      "Options:\n"
      "  --start TIME         e.g. 2026-09-30T16:00+08:00 (no zone: Asia/Shanghai)\n"
      "  --working-hours N    N hours of office time (fractions allowed)\n"
      "  --working-days N     N standard working days of office time (7 h on cn-2026)\n"
      "  --hours N, --days N  calendar time, holidays ignored\n"
      "  --calendar FILE      count on this calendar file\n"
      "  --builtin            count on the built-in cn-2026 calendar\n"
      "Without either, the calendar loaded in Redis, else the built-in one.\n\n"
      "Example:\n"
      "  civicbus calendar due --start 2026-09-30T16:00+08:00 --working-hours 8\n"
      "  2026-10-08T17:00:00+08:00\n",
      s_calendar_due, NULL, "calendar due" },
    { "load", "validate a working calendar and store it", "FILE [--check]",
      "Validates FILE (format in common/include/civicbus/workcal.h; the real\n"
      "example is deploy/config/calendar-cn-2026.json) and stores it in Redis\n"
      "(cfg:calendar) with a new version. A file with any error is refused,\n"
      "naming the field, and nothing changes.\n\n"
      "Options:\n"
      "  --check       validate only; store nothing (no Redis needed)\n",
      s_calendar_load, NULL, "calendar load" },
    { "show", "which calendar is in use; is a date a working day?",
      "[--date YYYY-MM-DD] [--calendar FILE | --builtin]",
      "Prints the calendar's name and where it comes from, and the length of its\n"
      "standard working day; with --date, whether that day has office hours.\n",
      s_calendar_show, NULL, "calendar show" },
    CLI_COMMANDS_END
};
