/*  cmd_deadletters.c — `civicbus dead-letters list|replay`: notifications
    the notifier gave up on after its retries (notify_queue.h). `list`
    shows them with their last error; `replay` puts them back in the
    delivery queue with the attempt count reset, for when the receiver is
    back. Bodies are not printed (they may be long); recipients that are
    phone numbers are masked. */

#include "cli.h"
#include "civicbus/notify_queue.h"
#include "civicbus/mask.h"
#include "civicbus/clock.h"

#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static const char *
s_recipient (const notify_record_t *rec, char *buf, size_t cap)
{
    if (rec->channel == NOTIFY_SMS)
        cb_mask_phone (rec->recipient, buf, cap);
    else
        snprintf (buf, cap, "%s", rec->recipient ? rec->recipient : "");
    return buf;
}

static int
s_list (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    bool as_json = false;
    const char *limit_text = NULL;
    const cli_opt_t opts [] = { { "json", NULL, &as_json }, { "limit", &limit_text, NULL },
                                CLI_OPTS_END };
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    long long limit = 1000;
    if (limit_text && cli_parse_int (limit_text, 1, 1000000, &limit))
        return cli_usage_error (cmd, "--limit '%s' is not a whole number in 1..1000000", limit_text);
    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return CLI_FAIL;
    notify_queue_t *queue = notify_queue_new (redis);
    notify_record_t *list = NULL;
    size_t count = 0;
    if (!queue || notify_queue_dead_list (queue, (size_t) limit, &list, &count) != NQ_OK) {
        notify_queue_destroy (&queue);
        return cli_redis_failed (cli, "listing the dead letters");
    }
    notify_queue_destroy (&queue);
    char recipient [128], dead [40], created [40];
    if (as_json) {
        json_t *array = json_array ();
        for (size_t i = 0; array && i < count; i++) {
            const notify_record_t *r = &list [i];
            const char *channel = notify_channel_name (r->channel);
            json_array_append_new (array, json_pack ("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:s}",
                "delivery_id", r->did, "ticket", r->ticket_id ? r->ticket_id : "",
                "channel", channel ? channel : "?",
                "recipient", s_recipient (r, recipient, sizeof recipient),
                "template", r->template_name ? r->template_name : "",
                "sequence", r->seq, "attempts", r->attempt,
                "error", r->error ? r->error : "",
                "created", cli_time (r->created_ms, created, sizeof created),
                "dead_since", cli_time (r->dead_ms, dead, sizeof dead)));
        }
        notify_records_free (list, count);
        return cli_print_json (array);
    }
    if (count == 0) {
        notify_records_free (list, count);
        cli_note ("no dead letters");
        return CLI_OK;
    }
    const char *headers [] = { "DELIVERY", "CHANNEL", "RECIPIENT", "ATTEMPTS", "DEAD SINCE",
                               "LAST ERROR" };
    cli_table_t *table = cli_table_new (6, headers);
    for (size_t i = 0; table && i < count; i++) {
        const notify_record_t *r = &list [i];
        char attempts [16];
        snprintf (attempts, sizeof attempts, "%d", r->attempt);
        const char *cells [] = { r->did, notify_channel_name (r->channel),
                                 s_recipient (r, recipient, sizeof recipient), attempts,
                                 cli_time (r->dead_ms, dead, sizeof dead), r->error };
        if (cli_table_add (table, cells))
            cli_table_destroy (&table);
    }
    notify_records_free (list, count);
    return cli_table_finish (&table);
}

static int
s_replay (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    bool all = false;
    const char *pos [1];
    int npos = 0;
    const cli_opt_t opts [] = { { "all", NULL, &all }, CLI_OPTS_END };
    int rc = cli_parse (cli, cmd, argc, argv, opts, pos, 0, 1, &npos);
    if (rc != CLI_PROCEED)
        return rc;
    if (all == (npos == 1))
        return cli_usage_error (cmd, "give one DELIVERY id or --all ('civicbus dead-letters list' "
                                "shows them)");
    if (npos == 1 && notify_did_bucket (pos [0]) < 0)
        return cli_usage_error (cmd, "'%s' is not a delivery id (TICKET-ID#SEQ#CHANNEL#HASH)",
                                pos [0]);
    cb_redis_t *redis = cli_redis (cli);
    if (!redis)
        return CLI_FAIL;
    notify_queue_t *queue = notify_queue_new (redis);
    int moved = queue ? notify_queue_replay (queue, all ? NULL : pos [0], cb_clock_now_ms ())
                      : NQ_ERROR;
    notify_queue_destroy (&queue);
    if (moved < 0)
        return cli_redis_failed (cli, "replaying the dead letters");
    if (!all && moved == 0)
        return cli_fail ("'%s' is not a dead letter (already replayed or delivered?)", pos [0]);
    printf ("replayed %d dead letter%s\n", moved, moved == 1 ? "" : "s");
    return CLI_OK;
}

/* ---- public ---- */

const cli_command_t cli_deadletters_commands [] = {
    { "list", "notifications the notifier gave up on, with their last error",
      "[--json] [--limit N]",
      "Prints every dead letter, oldest first: delivery id (TICKET#SEQ#CHANNEL#HASH),\n"
      "channel, recipient (phone numbers masked), attempts, when it died and the\n"
      "receiver's last answer.\n\n"
      "Options:\n"
      "  --json        a JSON array of {delivery_id, ticket, channel, recipient, template,\n"
      "                sequence, attempts, error, created, dead_since}\n"
      "  --limit N     at most N (default 1000)\n",
      s_list, NULL, "dead-letters list" },
    { "replay", "send dead letters again (attempts start over)", "DELIVERY | --all",
      "Moves one dead letter, or all of them, back to the delivery queue, due now,\n"
      "with the attempt count reset; a running notifier sends them within its poll\n"
      "interval. Prints how many were replayed. The receiver gets the same delivery\n"
      "id again, so a receiver that had in fact seen one can ignore the repeat.\n\n"
      "Examples:\n"
      "  civicbus dead-letters replay --all\n"
      "  civicbus dead-letters replay '320105-20261129-000000071#3#webhook#1a2b3c4d'\n",
      s_replay, NULL, "dead-letters replay" },
    CLI_COMMANDS_END
};
