/*  cmd_status.c — `civicbus status`: the first thing an operator runs.
    Is Redis reachable, which dispatcher holds the lease, how many doorbells
    wait in the inbox and tickets in the operators' queue, which grids,
    catalogue and calendar are loaded, how many keys exist. One pipelined
    round trip of 2 x CB_BUCKETS + a few commands: cheap enough to run in a
    watch loop. */

#include "cli.h"
#include "civicbus/ticket_id.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char version [32];          //  stored version, "" when nothing is loaded
    char count [32];
    char name [128];
    long long loaded_ms;
} s_data_t;

/* ---- private ---- */

static void
s_copy_reply (const redisReply *reply, char *buf, size_t cap)
{
    buf [0] = 0;
    if (reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS))
        snprintf (buf, cap, "%s", reply->str);
    else
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        snprintf (buf, cap, "%lld", reply->integer);
}

//  Reads an HMGET of version, count, loaded_ms, name.
static void
s_read_data (const redisReply *reply, s_data_t *data)
{
    memset (data, 0, sizeof *data);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4)
        return;
    s_copy_reply (reply->element [0], data->version, sizeof data->version);
    s_copy_reply (reply->element [1], data->count, sizeof data->count);
    char loaded [32];
    s_copy_reply (reply->element [2], loaded, sizeof loaded);
    data->loaded_ms = strtoll (loaded, NULL, 10);
    s_copy_reply (reply->element [3], data->name, sizeof data->name);
}

static json_t *
s_data_json (const s_data_t *data)
{
    if (!*data->version)
        return json_null ();
    char loaded [40];
    return json_pack ("{s:I, s:s?, s:s?, s:s}", "version",
                      (json_int_t) strtoll (data->version, NULL, 10),
                      "count", *data->count ? data->count : NULL,
                      "name", *data->name ? data->name : NULL,
                      "loaded", cli_time (data->loaded_ms, loaded, sizeof loaded));
}

static int
s_status (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    bool as_json = false;
    const cli_opt_t opts [] = { { "json", NULL, &as_json }, CLI_OPTS_END };
    cb_redis_t *redis = NULL;
    int rc = cli_parse_connect (cli, cmd, argc, argv, opts, &redis);
    if (rc != CLI_PROCEED)
        return rc;

    //  Everything in one pipeline; replies are read back in this order.
    int sent = 0;
    sent += cb_redis_append (redis, "INFO server") == 0;
    sent += cb_redis_append (redis, "GET lease:dispatcher") == 0;
    sent += cb_redis_append (redis, "PTTL lease:dispatcher") == 0;
    sent += cb_redis_append (redis, "HMGET cfg:grids version count loaded_ms name") == 0;
    sent += cb_redis_append (redis, "HMGET cfg:catalog version count loaded_ms name") == 0;
    sent += cb_redis_append (redis, "HMGET cfg:calendar version count loaded_ms name") == 0;
    sent += cb_redis_append (redis, "HLEN adapters:keys") == 0;
    sent += cb_redis_append (redis, "HLEN apikey:names") == 0;
    for (int bucket = 0; bucket < CB_BUCKETS; bucket++) {
        char tag [CB_BUCKET_TAG_MAX];
        cb_bucket_tag (bucket, tag, sizeof tag);
        sent += cb_redis_append (redis, "ZCARD inbox:%s", tag) == 0;
        sent += cb_redis_append (redis, "ZCARD opq:%s", tag) == 0;
    }
    const int expected = 8 + 2 * CB_BUCKETS;
    if (sent != expected)
        return cli_redis_failed (cli, "asking for the status");
    redisReply *replies [8 + 2 * CB_BUCKETS] = { NULL };
    bool ok = true;
    for (int i = 0; i < expected && ok; i++) {
        replies [i] = cb_redis_get_reply (redis);
        ok = replies [i] != NULL && replies [i]->type != REDIS_REPLY_ERROR;
    }
    if (!ok) {
        for (int i = 0; i < expected; i++)
            if (replies [i])
                freeReplyObject (replies [i]);
        return cli_redis_failed (cli, "asking for the status");
    }

    char redis_version [32] = "?";
    if (replies [0]->type == REDIS_REPLY_STRING) {
        const char *at = strstr (replies [0]->str, "redis_version:");
        if (at)
            snprintf (redis_version, sizeof redis_version, "%.*s",
                      (int) strcspn (at + 14, "\r\n"), at + 14);
    }
    char holder [256];
    s_copy_reply (replies [1], holder, sizeof holder);
    long long lease_left = replies [2]->type == REDIS_REPLY_INTEGER ? replies [2]->integer : -2;
    s_data_t grids, catalog, calendar;
    s_read_data (replies [3], &grids);
    s_read_data (replies [4], &catalog);
    s_read_data (replies [5], &calendar);
    long long adapters = replies [6]->type == REDIS_REPLY_INTEGER ? replies [6]->integer : 0;
    long long keys = replies [7]->type == REDIS_REPLY_INTEGER ? replies [7]->integer : 0;
    long long inbox = 0, opq = 0, inbox_buckets = 0;
    for (int bucket = 0; bucket < CB_BUCKETS; bucket++) {
        const redisReply *in = replies [8 + 2 * bucket], *op = replies [9 + 2 * bucket];
        if (in->type == REDIS_REPLY_INTEGER) {
            inbox += in->integer;
            inbox_buckets += in->integer > 0;
        }
        if (op->type == REDIS_REPLY_INTEGER)
            opq += op->integer;
    }
    for (int i = 0; i < expected; i++)
        freeReplyObject (replies [i]);

    if (as_json) {
        json_t *dispatcher = *holder
            ? json_pack ("{s:s, s:I}", "holder", holder, "lease_ms_left", (json_int_t) lease_left)
            : json_null ();
        return cli_print_json (json_pack (
            "{s:{s:s, s:b, s:s}, s:o, s:I, s:I, s:o, s:o, s:o, s:I, s:I}",
            "redis", "address", cb_redis_where (redis), "reachable", 1,
                     "version", redis_version,
            "dispatcher", dispatcher,
            "inbox", (json_int_t) inbox, "operators_queue", (json_int_t) opq,
            "grids", s_data_json (&grids), "catalog", s_data_json (&catalog),
            "calendar", s_data_json (&calendar),
            "adapter_keys", (json_int_t) adapters, "api_keys", (json_int_t) keys));
    }
    char loaded [40];
    printf ("redis       %s reachable (Redis %s)\n", cb_redis_where (redis), redis_version);
    if (*holder)
        printf ("dispatcher  active: %s (lease renews within %.1f s)\n", holder,
                lease_left > 0 ? (double) lease_left / 1000.0 : 0.0);
    else
        printf ("dispatcher  none active: nobody holds lease:dispatcher, so tickets are "
                "not dispatched\n");
    printf ("inbox       %lld ticket%s waiting for the dispatcher", inbox, inbox == 1 ? "" : "s");
    if (inbox)
        printf (" (in %lld bucket%s)", inbox_buckets, inbox_buckets == 1 ? "" : "s");
    printf ("\n");
    printf ("operators   %lld ticket%s in the operators' queue\n", opq, opq == 1 ? "" : "s");
    if (*grids.version)
        printf ("grids       version %s, %s grids, loaded %s\n", grids.version,
                *grids.count ? grids.count : "?", cli_time (grids.loaded_ms, loaded, sizeof loaded));
    else
        printf ("grids       none loaded: civicbus grids load deploy/config/grids.geojson\n");
    if (*catalog.version)
        printf ("catalogue   version %s, %s categories, loaded %s\n", catalog.version,
                *catalog.count ? catalog.count : "?",
                cli_time (catalog.loaded_ms, loaded, sizeof loaded));
    else
        printf ("catalogue   none loaded: civicbus catalog load deploy/config/catalog.json\n");
    if (*calendar.version)
        printf ("calendar    '%s' version %s, loaded %s\n", calendar.name, calendar.version,
                cli_time (calendar.loaded_ms, loaded, sizeof loaded));
    else
        printf ("calendar    built-in cn-2026 (none loaded)\n");
    printf ("adapters    %lld key%s registered\n", adapters, adapters == 1 ? "" : "s");
    printf ("api keys    %lld\n", keys);
    return CLI_OK;
}

/* ---- public ---- */

const cli_command_t cli_status_command = {
    "status", "is everything up? Redis, the dispatcher's lease, queues, data versions",
    "[--json]",
    "Prints whether Redis answers, which dispatcher holds the lease, the inbox\n"
    "depth (doorbells not yet handled), the operators' queue depth, the loaded\n"
    "grids, catalogue and calendar versions, and how many keys exist.\n\n"
    "Options:\n"
    "  --json        the same as one JSON object\n",
    s_status, NULL, "status"
};
