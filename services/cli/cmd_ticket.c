/*  cmd_ticket.c — `civicbus ticket show|list`: a ticket and its whole
    history as an operator reads it, and listings from the store's indexes.

    Personal data (the reporter's name and phone, mobile numbers in free
    text) is masked unless --unmasked is given: the tool runs with full Redis
    access, so it must not show more than an operator's screen would by
    default (DESIGN.md principle 6). */

#include "cli.h"
#include "civicbus/clock.h"
#include "civicbus/mask.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_json.h"
#include "civicbus/ticket_store.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define S_LIST_DEFAULT 20
#define S_LIST_MAX 1000
//  Entries one bucket's script looks at before it gives up looking for
//  matches of a second filter: bounds the time Redis spends on one call.
#define S_LIST_SCAN_MAX "100000"

//  Newest-first entries of KEYS[1] that are also in KEYS[2] (when given),
//  at most ARGV[1] of them, as id, score pairs. O(entries scanned), at most
//  ARGV[2] of them, read in pages of 500.
static const char s_list_lua [] =
    "local limit, scan_max = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local out, start, page = {}, 0, 500\n"
    "while #out < 2 * limit and start < scan_max do\n"
    "  local got = redis.call('ZREVRANGE', KEYS[1], start, start + page - 1, 'WITHSCORES')\n"
    "  if #got == 0 then break end\n"
    "  for i = 1, #got, 2 do\n"
    "    if not KEYS[2] or redis.call('ZSCORE', KEYS[2], got[i]) then\n"
    "      out[#out + 1] = got[i]; out[#out + 1] = got[i + 1]\n"
    "      if #out >= 2 * limit then break end\n"
    "    end\n"
    "  end\n"
    "  start = start + page\n"
    "end\n"
    "return out\n";

typedef struct {
    char id [CB_TICKET_ID_MAX];
    long long created_ms;
} s_entry_t;

/* ---- private ---- */

static const char *
s_str (json_t *object, const char *key)
{
    const char *value = json_string_value (json_object_get (object, key));
    return value && *value ? value : NULL;
}

static const char *
s_actor_kind (int kind)
{
    switch (kind) {
        case CIVICBUS__V1__ACTOR_KIND__ACTOR_SYSTEM:     return "system";
        case CIVICBUS__V1__ACTOR_KIND__ACTOR_OPERATOR:   return "operator";
        case CIVICBUS__V1__ACTOR_KIND__ACTOR_DEPARTMENT: return "department";
        case CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER:   return "reporter";
        case CIVICBUS__V1__ACTOR_KIND__ACTOR_SUPERVISOR: return "supervisor";
        default:                                         return "unspecified";
    }
}

//  Free text on one table line: masked unless unmasked, newlines and tabs
//  as spaces.
static void
s_one_line (const char *text, bool unmasked, char *buf, size_t cap)
{
    if (unmasked)
        snprintf (buf, cap, "%s", text ? text : "");
    else
        cb_mask_text (text, buf, cap);
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
}

//  "operator op-li (李四)"; a reporter's name is personal data.
static void
s_actor_text (const Civicbus__V1__Actor *actor, bool unmasked, char *buf, size_t cap)
{
    if (!actor) {
        snprintf (buf, cap, "-");
        return;
    }
    char name [160] = "";
    if (actor->name && *actor->name) {
        if (actor->kind == CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER && !unmasked)
            cb_mask_name (actor->name, name, sizeof name);
        else
            snprintf (name, sizeof name, "%s", actor->name);
    }
    int n = snprintf (buf, cap, "%s", s_actor_kind (actor->kind));
    if (actor->id && *actor->id && n > 0 && (size_t) n < cap)
        n += snprintf (buf + n, cap - (size_t) n, " %s", actor->id);
    if (*name && n > 0 && (size_t) n < cap)
        snprintf (buf + n, cap - (size_t) n, " (%s)", name);
}

static void
s_print_row (const char *label, const char *value)
{
    if (value && *value)
        printf ("%-12s %s\n", label, value);
}

static void
s_print_ticket (json_t *t)
{
    char line [1024];
    s_print_row ("ticket", s_str (t, "id"));
    snprintf (line, sizeof line, "%s  (version %lld, light %s%s)", s_str (t, "state"),
              (long long) json_integer_value (json_object_get (t, "version")),
              s_str (t, "light") ? s_str (t, "light") : "-",
              json_integer_value (json_object_get (t, "escalation_level")) > 0
                  ? ", escalated" : "");
    s_print_row ("state", line);
    s_print_row ("department", s_str (t, "department"));
    json_t *co = json_object_get (t, "co_handlers");
    if (json_array_size (co)) {
        line [0] = 0;
        for (size_t i = 0; i < json_array_size (co); i++) {
            size_t used = strlen (line);
            snprintf (line + used, sizeof line - used, "%s%s", i ? ", " : "",
                      json_string_value (json_array_get (co, i)));
        }
        s_print_row ("co-handlers", line);
    }
    snprintf (line, sizeof line, "%s  (request %s, urgency %s, source %s%s%s)",
              s_str (t, "category") ? s_str (t, "category") : "-",
              s_str (t, "request_type") ? s_str (t, "request_type") : "-",
              s_str (t, "urgency") ? s_str (t, "urgency") : "-",
              s_str (t, "source") ? s_str (t, "source") : "-",
              s_str (t, "external_id") ? " " : "",
              s_str (t, "external_id") ? s_str (t, "external_id") : "");
    s_print_row ("category", line);
    s_print_row ("policy", s_str (t, "policy"));

    json_t *loc = json_object_get (t, "location");
    if (json_is_object (loc)) {
        if (json_object_get (loc, "lat")) {
            snprintf (line, sizeof line, "%.6f %.6f (lat lon)",
                      json_number_value (json_object_get (loc, "lat")),
                      json_number_value (json_object_get (loc, "lon")));
            s_print_row ("point", line);
        }
        s_print_row ("address", s_str (loc, "address"));
        json_t *path = json_object_get (loc, "grid_path");
        if (json_array_size (path)) {
            line [0] = 0;
            for (size_t i = 0; i < json_array_size (path); i++) {
                size_t used = strlen (line);
                snprintf (line + used, sizeof line - used, "%s%s", i ? " > " : "",
                          json_string_value (json_array_get (path, i)));
            }
            s_print_row ("grid", line);
        }
        else
        if (json_is_true (json_object_get (loc, "ungridded")))
            s_print_row ("grid", "ungridded (the point is in no grid)");
        else
            s_print_row ("grid", s_str (loc, "grid_code"));
    }
    json_t *reporter = json_object_get (t, "reporter");
    if (json_is_object (reporter)) {
        snprintf (line, sizeof line, "%s  %s", s_str (reporter, "name") ? s_str (reporter, "name") : "-",
                  s_str (reporter, "phone") ? s_str (reporter, "phone") : "-");
        s_print_row ("reporter", line);
    }
    s_print_row ("description", s_str (t, "description"));
    s_print_row ("resolution", s_str (t, "resolution"));
    s_print_row ("rejected", s_str (t, "reject_reason"));
    s_print_row ("merged into", s_str (t, "merged_into"));
    if (json_is_true (json_object_get (t, "extension_pending"))) {
        snprintf (line, sizeof line, "requested: %lld days",
                  (long long) json_integer_value (json_object_get (t, "extension_days")));
        s_print_row ("extension", line);
    }
    if (json_is_true (json_object_get (t, "suspension_pending")))
        s_print_row ("suspension", "requested");
    long long rework = (long long) json_integer_value (json_object_get (t, "rework_count"));
    if (rework > 0) {
        snprintf (line, sizeof line, "%lld", rework);
        s_print_row ("reworked", line);
    }
    s_print_row ("created", s_str (t, "created"));
    s_print_row ("updated", s_str (t, "updated"));
    json_t *deadlines = json_object_get (t, "deadlines");
    for (size_t i = 0; i < json_array_size (deadlines); i++) {
        json_t *d = json_array_get (deadlines, i);
        snprintf (line, sizeof line, "%s due %s (warning %s)",
                  s_str (d, "stage") ? s_str (d, "stage") : "?",
                  s_str (d, "due") ? s_str (d, "due") : "-",
                  s_str (d, "warn") ? s_str (d, "warn") : "-");
        s_print_row (i == 0 ? "deadlines" : "", line);
    }
}

static int
s_ticket_show (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    bool as_json = false, unmasked = false;
    const cli_opt_t opts [] = {
        { "json", NULL, &as_json }, { "unmasked", NULL, &unmasked }, CLI_OPTS_END
    };
    const char *arg = NULL;
    int rc = cli_parse_one (cli, cmd, argc, argv, opts,
                            "which ticket? give its ID, e.g. 320105-20261129-000004711", &arg);
    if (rc != CLI_PROCEED)
        return rc;
    if (ticket_id_bucket (arg) < 0)
        return cli_usage_error (cmd, "'%s' is not a ticket id (DISTRICT-YYYYMMDD-NNNNNNNNN, "
                                "e.g. 320105-20261129-000004711)", arg);
    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return CLI_FAIL;
    ticket_store_t *store = ticket_store_new (redis);
    if (!store)
        return cli_fail ("out of memory");
    cb_ticket_t *ticket = NULL;
    cb_event_t **events = NULL;
    size_t count = 0;
    rc = ticket_store_load (store, arg, &ticket);
    if (rc == TS_OK)
        rc = ticket_store_history (store, arg, &events, &count);
    if (rc == TS_NOT_FOUND && ticket)
        rc = TS_OK;             //  a ticket without history: show what there is
    ticket_store_destroy (&store);
    if (rc != TS_OK) {
        if (ticket)
            civicbus__v1__ticket__free_unpacked (ticket, NULL);
        ticket_store_free_events (events, count);
        if (rc == TS_NOT_FOUND)
            return cli_fail ("no ticket %s", arg);
        if (rc == TS_UNAVAILABLE)
            return cli_redis_failed (cli, "loading the ticket");
        return cli_fail ("ticket %s is stored but does not decode (see the log line above)",
                         arg);
    }

    json_t *json = ticket_to_json (ticket, unmasked ? 0 : TICKET_JSON_MASK_PERSONAL);
    civicbus__v1__ticket__free_unpacked (ticket, NULL);
    if (!json) {
        ticket_store_free_events (events, count);
        return cli_fail ("out of memory");
    }
    char note [4096], actor [256], when [40], states [64];
    if (as_json) {
        json_t *history = json_array ();
        for (size_t i = 0; history && i < count; i++) {
            json_t *ev = ticket_event_to_json (events [i]);
            if (ev && !unmasked) {
                cb_mask_text (events [i]->note, note, sizeof note);
                json_object_set_new (ev, "note", json_string (note));
                json_t *ev_actor = json_object_get (ev, "actor");
                if (events [i]->actor
                &&  events [i]->actor->kind == CIVICBUS__V1__ACTOR_KIND__ACTOR_REPORTER
                &&  json_is_object (ev_actor)) {
                    char name [160];
                    cb_mask_name (events [i]->actor->name, name, sizeof name);
                    json_object_set_new (ev_actor, "name", json_string (name));
                }
            }
            json_array_append_new (history, ev);
        }
        ticket_store_free_events (events, count);
        return cli_print_json (json_pack ("{s:o, s:o}", "ticket", json, "history", history));
    }
    s_print_ticket (json);
    json_decref (json);

    const char *headers [] = { "TIME", "EVENT", "ACTOR", "FROM -> TO", "NOTE" };
    cli_table_t *table = cli_table_new (5, headers);
    for (size_t i = 0; table && i < count; i++) {
        const cb_event_t *ev = events [i];
        if (ev->from_state == ev->to_state)
            snprintf (states, sizeof states, "%s", ticket_state_name (ev->to_state));
        else
        if (ev->from_state == CIVICBUS__V1__TICKET_STATE__TICKET_STATE_UNSPECIFIED)
            snprintf (states, sizeof states, "-> %s", ticket_state_name (ev->to_state));
        else
            snprintf (states, sizeof states, "%s -> %s", ticket_state_name (ev->from_state),
                      ticket_state_name (ev->to_state));
        s_actor_text (ev->actor, unmasked, actor, sizeof actor);
        s_one_line (ev->note, unmasked, note, sizeof note);
        const char *cells [] = { cli_time (ev->time_ms, when, sizeof when), ev->type, actor,
                                 states, note };
        if (cli_table_add (table, cells))
            cli_table_destroy (&table);
    }
    ticket_store_free_events (events, count);
    if (!table)
        return cli_fail ("out of memory");
    printf ("\nhistory (%zu event%s, times Asia/Shanghai)%s\n", cli_table_rows (table),
            cli_table_rows (table) == 1 ? "" : "s",
            unmasked ? "" : "; personal data masked (--unmasked shows it)");
    cli_table_print (table, stdout);
    cli_table_destroy (&table);
    return CLI_OK;
}

static int
s_compare_newest (const void *a, const void *b)
{
    const s_entry_t *x = a, *y = b;
    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? 1 : -1;
    return strcmp (y->id, x->id);
}

//  Collects up to `limit` newest ids per bucket from the index, pipelined
//  over the CB_BUCKETS buckets (one round trip). Returns the count, or -1.
static int
s_collect (cb_redis_t *redis, const char *primary, const char *filter, long long limit,
           s_entry_t **entries_p, size_t *count_p)
{
    cb_script_t script = CB_SCRIPT (s_list_lua);     //  the first append loads it
    char limit_text [32];
    snprintf (limit_text, sizeof limit_text, "%lld", limit);
    for (int bucket = 0; bucket < CB_BUCKETS; bucket++) {
        char tag [CB_BUCKET_TAG_MAX], key1 [160], key2 [160];
        cb_bucket_tag (bucket, tag, sizeof tag);
        snprintf (key1, sizeof key1, "idx:%s:%s", tag, primary);
        snprintf (key2, sizeof key2, "idx:%s:%s", tag, filter ? filter : "");
        const char *args [] = { key1, key2, limit_text, S_LIST_SCAN_MAX };
        const char *argv_one [] = { key1, limit_text, S_LIST_SCAN_MAX };
        int rc = filter ? cb_redis_append_eval (redis, &script, 2, 4, args, NULL)
                        : cb_redis_append_eval (redis, &script, 1, 3, argv_one, NULL);
        if (rc)
            return -1;
    }
    size_t cap = (size_t) limit * CB_BUCKETS, count = 0;
    s_entry_t *entries = calloc (cap ? cap : 1, sizeof *entries);
    int result = entries ? 0 : -1;
    //  Read every reply even after a failure, so the pipeline stays in step.
    for (int bucket = 0; bucket < CB_BUCKETS; bucket++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply) {
            free (entries);
            return -1;          //  the connection dropped; the rest is lost with it
        }
        if (reply->type != REDIS_REPLY_ARRAY)
            result = -1;
        for (size_t i = 0; result == 0 && i + 1 < reply->elements && count < cap; i += 2) {
            snprintf (entries [count].id, sizeof entries [count].id, "%s",
                      reply->element [i]->str ? reply->element [i]->str : "");
            entries [count].created_ms = reply->element [i + 1]->str
                                       ? strtoll (reply->element [i + 1]->str, NULL, 10) : 0;
            count++;
        }
        freeReplyObject (reply);
    }
    if (result) {
        free (entries);
        return -1;
    }
    qsort (entries, count, sizeof *entries, s_compare_newest);
    *entries_p = entries;
    *count_p = count < (size_t) limit ? count : (size_t) limit;
    return 0;
}

static int
s_ticket_list (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *state_text = NULL, *department = NULL, *limit_text = NULL;
    bool as_json = false;
    const cli_opt_t opts [] = {
        { "state", &state_text, NULL }, { "department", &department, NULL },
        { "limit", &limit_text, NULL }, { "json", NULL, &as_json }, CLI_OPTS_END
    };
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    long long limit = S_LIST_DEFAULT;
    if (limit_text && cli_parse_int (limit_text, 1, S_LIST_MAX, &limit))
        return cli_usage_error (cmd, "--limit '%s' is not a whole number in 1..%d",
                                limit_text, S_LIST_MAX);
    char state [32] = "";
    if (state_text) {
        for (size_t i = 0; state_text [i] && i + 1 < sizeof state; i++)
            state [i] = (char) toupper ((unsigned char) state_text [i]);
        if (ticket_state_from_name (state) < 0)
            return cli_usage_error (cmd, "--state '%s' is not a state (RECEIVED, ACCEPTED, "
                                    "DISPATCHED, IN_PROGRESS, RESOLVED, CLOSED, REJECTED, "
                                    "RETURNED, SUSPENDED, MERGED, CANCELLED)", state_text);
    }
    if (department && (!*department || strlen (department) >= CATALOG_CODE_MAX
                       || strpbrk (department, " :{}*")))
        return cli_usage_error (cmd, "--department '%s' is not a department code", department);
    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return CLI_FAIL;

    char state_key [64] = "", dept_key [96] = "";
    if (*state)
        snprintf (state_key, sizeof state_key, "st:%s", state);
    if (department)
        snprintf (dept_key, sizeof dept_key, "dept:%s", department);
    const char *primary = *state_key ? state_key : *dept_key ? dept_key : "all";
    const char *filter = *state_key && *dept_key ? dept_key : NULL;
    s_entry_t *entries = NULL;
    size_t count = 0;
    if (s_collect (redis, primary, filter, limit, &entries, &count))
        return cli_redis_failed (cli, "reading the ticket indexes");

    ticket_store_t *store = ticket_store_new (redis);
    json_t *array = json_array ();
    const char *headers [] = { "ID", "STATE", "CATEGORY", "DEPARTMENT", "GRID", "CREATED" };
    cli_table_t *table = cli_table_new (6, headers);
    rc = store && array && table ? CLI_OK : cli_fail ("out of memory");
    //  One round trip per ticket: fine for the at most 1000 a listing shows.
    for (size_t i = 0; rc == CLI_OK && i < count; i++) {
        cb_ticket_t *t = NULL;
        int loaded = ticket_store_load (store, entries [i].id, &t);
        if (loaded == TS_UNAVAILABLE) {
            rc = cli_redis_failed (cli, "loading tickets");
            break;
        }
        char created [40];
        const char *grid = t && t->location && t->location->grid_code && *t->location->grid_code
                         ? t->location->grid_code : NULL;
        const char *cells [] = {
            entries [i].id, t ? ticket_state_name (t->state) : "(missing)",
            t ? t->category : NULL, t ? t->department : NULL, grid,
            cli_time (t ? t->created_ms : entries [i].created_ms, created, sizeof created)
        };
        if (cli_table_add (table, cells))
            rc = cli_fail ("out of memory");
        json_array_append_new (array, json_pack ("{s:s, s:s, s:s?, s:s?, s:s?, s:s}",
            "id", entries [i].id, "state", cells [1], "category", cells [2],
            "department", cells [3], "grid", grid, "created", created));
        if (t)
            civicbus__v1__ticket__free_unpacked (t, NULL);
    }
    free (entries);
    ticket_store_destroy (&store);
    if (rc == CLI_OK && as_json) {
        cli_table_destroy (&table);
        return cli_print_json (array);
    }
    json_decref (array);
    if (rc == CLI_OK) {
        if (cli_table_rows (table) == 0)
            cli_note ("no tickets match");
        else
            cli_table_print (table, stdout);
    }
    cli_table_destroy (&table);
    return rc;
}

/* ---- public ---- */

const cli_command_t cli_ticket_commands [] = {
    { "show", "one ticket and its history as a table", "ID [--json] [--unmasked]",
      "Prints the ticket (state, department, category, area, deadlines) and its\n"
      "history: time (ISO 8601, Asia/Shanghai), event, actor, from -> to, note.\n"
      "The reporter's name and phone, and mobile numbers in text, are masked.\n\n"
      "Options:\n"
      "  --json        {\"ticket\": ..., \"history\": [...]} as the API shows them\n"
      "  --unmasked    show personal data (mind who is watching)\n\n"
      "Example:\n"
      "  civicbus ticket show 320105-20261129-000004711\n",
      s_ticket_show, NULL, "ticket show" },
    { "list", "the newest tickets, by state or department",
      "[--state STATE] [--department DEPT] [--limit N] [--json]",
      "Lists the newest tickets across all buckets from the store's indexes.\n\n"
      "Options:\n"
      "  --state STATE      RECEIVED, DISPATCHED, IN_PROGRESS, ... (any case)\n"
      "  --department DEPT  primary department code, e.g. urban\n"
      "  --limit N          at most N tickets, 1..1000 (default 20)\n"
      "  --json             a JSON array of {id, state, category, department, grid, created}\n",
      s_ticket_list, NULL, "ticket list" },
    CLI_COMMANDS_END
};
