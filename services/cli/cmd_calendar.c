/*  cmd_calendar.c — `civicbus calendar due|load|show`: working calendars
    (office hours, public holidays, adjusted working days 调休). `due`
    answers the operator's "when is this due?" with workcal_due, the
    function the time-limit policies use.

    The loaded calendar lives in Redis next to the grids and catalogue:
        cfg:calendar  hash  json (the calendar text), version, loaded_ms, name
    like cfg:grids (citydata.h): validated before it is written, version
    bumped in the same script, so a reader never sees a new version with old
    text. Without it every service uses workcal_new_default (cn-2026). */

#include "cli.h"
#include "civicbus/clock.h"
#include "civicbus/workcal.h"

#include <stdlib.h>
#include <string.h>

#define S_CALENDAR_KEY "cfg:calendar"

//  One script: bump the version and store the text together.
static const char s_store_lua [] =
    "local v = redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "redis.call('HSET', KEYS[1], 'json', ARGV[1], 'loaded_ms', ARGV[2], 'name', ARGV[3])\n"
    "return v\n";

/* ---- private ---- */

//  Stores a validated calendar's text; returns 0 with *version, or -1.
static int
s_store_calendar (cb_redis_t *redis, const char *text, size_t len, const char *name,
                  int64_t *version)
{
    cb_script_t script = CB_SCRIPT (s_store_lua);
    char now [32];
    snprintf (now, sizeof now, "%lld", (long long) cb_clock_now_ms ());
    const char *argv [] = { S_CALENDAR_KEY, text, now, name };
    size_t lens [] = { strlen (S_CALENDAR_KEY), len, strlen (now), strlen (name) };
    redisReply *reply = cb_redis_eval (redis, &script, 1, 4, argv, lens);
    if (!reply)
        return -1;
    int rc = reply->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (rc == 0)
        *version = reply->integer;
    freeReplyObject (reply);
    return rc;
}

//  The calendar to count on: --calendar FILE, else --builtin, else the one
//  in Redis, else the built-in. Describes where it came from in `source`.
//  NULL after printing why.
static workcal_t *
s_pick_calendar (cli_t *cli, const char *file, bool builtin, char *source, size_t cap)
{
    char err [512] = "";
    if (file) {
        size_t len = 0;
        char *text = cli_read_file (cli, file, &len);
        if (!text)
            return NULL;
        workcal_t *cal = workcal_from_json (text, len, err, sizeof err);
        free (text);
        if (!cal)
            cli_fail ("%s is not a valid calendar: %s", file, err);
        snprintf (source, cap, "from %s", file);
        return cal;
    }
    if (!builtin) {
        cb_redis_t *redis = cli_redis (cli);
        if (!redis) {
            cli_note ("'--builtin' or '--calendar FILE' computes without Redis");
            return NULL;
        }
        redisReply *reply = cb_redis_command (redis, "HMGET " S_CALENDAR_KEY " json version");
        if (!reply) {
            cli_redis_failed (cli, "reading the calendar");
            return NULL;
        }
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
        &&  reply->element [0]->type == REDIS_REPLY_STRING) {
            workcal_t *cal = workcal_from_json (reply->element [0]->str,
                                                reply->element [0]->len, err, sizeof err);
            snprintf (source, cap, "stored version %s",
                      reply->element [1]->type == REDIS_REPLY_STRING
                      ? reply->element [1]->str : "?");
            freeReplyObject (reply);
            if (!cal)
                cli_fail ("the calendar stored in Redis does not load: %s; load a good one "
                          "with 'civicbus calendar load FILE'", err);
            return cal;
        }
        freeReplyObject (reply);
    }
    workcal_t *cal = workcal_new_default ();
    if (!cal)
        cli_fail ("out of memory");
    snprintf (source, cap, "built-in");
    return cal;
}

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
    workcal_t *cal = s_pick_calendar (cli, file, builtin, source, sizeof source);
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
    bool check_only = false;
    const cli_opt_t opts [] = { { "check", NULL, &check_only }, CLI_OPTS_END };
    const char *pos [1];
    int npos = 0;
    int rc = cli_parse (cli, cmd, argc, argv, opts, pos, 0, 1, &npos);
    if (rc != CLI_PROCEED)
        return rc;
    if (npos < 1)
        return cli_usage_error (cmd, "which file? give the calendar's JSON FILE");
    cb_redis_t *redis = NULL;
    if (!check_only && !(redis = cli_redis (cli)))
        return CLI_FAIL;
    size_t len = 0;
    char *text = cli_read_file (cli, pos [0], &len);
    if (!text)
        return CLI_FAIL;
    char err [512] = "";
    workcal_t *cal = workcal_from_json (text, len, err, sizeof err);
    if (!cal) {
        free (text);
        return cli_fail ("%s is not a valid calendar, nothing was stored: %s", pos [0], err);
    }
    char name [128];
    snprintf (name, sizeof name, "%s", workcal_name (cal));
    workcal_destroy (&cal);
    if (check_only) {
        free (text);
        printf ("%s is valid: calendar '%s'\n", pos [0], name);
        return CLI_OK;
    }
    int64_t version = 0;
    rc = s_store_calendar (redis, text, len, name, &version);
    free (text);
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
    workcal_t *cal = s_pick_calendar (cli, file, builtin, source, sizeof source);
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
