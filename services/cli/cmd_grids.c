/*  cmd_grids.c — `civicbus grids load|show|locate`: the city's grids
    (网格) in Redis. A load validates the whole file with the parser the
    services use before anything is written, so a bad file changes nothing
    and the message names the feature at fault. */

#include "cli.h"
#include "civicbus/citydata.h"

#include <stdlib.h>
#include <string.h>

//  Levels top first, as grid_index.h defines them.
static const char *const s_levels [] = {
    "district", "street", "community", "grid", "building", "floor", NULL
};

/* ---- private ---- */

static void
s_print_path (const grid_hit_t *hit, FILE *out)
{
    const char *headers [] = { "LEVEL", "CODE", "NAME" };
    cli_table_t *table = cli_table_new (3, headers);
    for (size_t i = 0; table && i < hit->depth; i++) {
        const char *cells [] = { hit->path [i].level, hit->path [i].code, hit->path [i].name };
        if (cli_table_add (table, cells))
            cli_table_destroy (&table);
    }
    if (table)
        cli_table_print (table, out);
    cli_table_destroy (&table);
}

static int
s_no_grids (void)
{
    return cli_fail ("no grids are loaded; load them with "
                     "'civicbus grids load deploy/config/grids.geojson'");
}

static int
s_grids_load (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    cli_load_t load;
    int rc = cli_load_begin (cli, cmd, argc, argv, "which file? give the GeoJSON FILE", &load);
    if (rc != CLI_PROCEED)
        return rc;
    //  Validating here as well as in citydata_store_grids parses the file
    //  twice (tens of milliseconds for a thousand grids); in exchange a bad
    //  file and a Redis failure get different messages, and we learn the
    //  count that the store does not return.
    cli_progress (cli, "validating %s...", load.path);
    char err [512] = "";
    grid_index_t *grids = grid_index_from_geojson (load.text, load.len, err, sizeof err);
    cli_progress_done (cli);
    if (!grids) {
        free (load.text);
        return cli_fail ("%s is not valid, nothing was stored: %s", load.path, err);
    }
    size_t count = grid_index_count (grids);
    size_t areas = grid_index_area_count (grids);
    grid_index_destroy (&grids);
    if (load.check_only) {
        free (load.text);
        printf ("%s is valid: %zu grids, %zu areas in all\n", load.path, count, areas);
        return CLI_OK;
    }
    cli_progress (cli, "storing %zu grids...", count);
    int64_t version = 0;
    rc = citydata_store_grids (load.redis, load.text, load.len, &version, err, sizeof err);
    cli_progress_done (cli);
    free (load.text);
    if (rc)
        return cb_redis_connected (load.redis)
             ? cli_fail ("the grids were not stored: %s", err)
             : cli_redis_failed (cli, "storing the grids");
    printf ("loaded %zu grids (version %lld)\n", count, (long long) version);
    return CLI_OK;
}

//  Counts the features of each level in the stored GeoJSON text (the index
//  keeps only totals). O(features).
static int
s_count_levels (const char *text, size_t counts [], size_t n_levels, size_t *other)
{
    json_error_t jerr;
    json_t *root = json_loads (text, 0, &jerr);
    json_t *features = root ? json_object_get (root, "features") : NULL;
    if (!json_is_array (features)) {
        json_decref (root);
        return -1;
    }
    size_t index;
    json_t *feature;
    json_array_foreach (features, index, feature) {
        const char *level = json_string_value (
            json_object_get (json_object_get (feature, "properties"), "level"));
        size_t i = 0;
        while (i < n_levels && !(level && strcmp (level, s_levels [i]) == 0))
            i++;
        if (i < n_levels)
            counts [i]++;
        else
            (*other)++;
    }
    json_decref (root);
    return 0;
}

static int
s_grids_show (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *code = NULL;
    const cli_opt_t opts [] = { { "code", &code, NULL }, CLI_OPTS_END };
    cb_redis_t *redis = NULL;
    int rc = cli_parse_connect (cli, cmd, argc, argv, opts, &redis);
    if (rc != CLI_PROCEED)
        return rc;

    if (code) {
        int64_t version;
        grid_index_t *grids = cli_load_grids (cli, &version);
        if (!grids)
            return version == 0 ? s_no_grids () : CLI_FAIL;
        grid_hit_t hit;
        if (grid_index_path (grids, code, &hit)) {
            grid_index_destroy (&grids);
            return cli_fail ("no area has code '%s' in grids version %lld", code,
                             (long long) version);
        }
        s_print_path (&hit, stdout);
        double lat, lon;
        if (grid_index_centroid (grids, code, &lat, &lon) == 0)
            printf ("\ninside point: %.6f %.6f (lat lon)\n", lat, lon);
        grid_index_destroy (&grids);
        return CLI_OK;
    }

    redisReply *reply = cb_redis_command (redis, "HMGET cfg:grids json version loaded_ms count");
    if (!reply)
        return cli_redis_failed (cli, "reading the grids");
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4
    ||  reply->element [0]->type != REDIS_REPLY_STRING) {
        freeReplyObject (reply);
        return s_no_grids ();
    }
    size_t n_levels = sizeof s_levels / sizeof s_levels [0] - 1;
    size_t counts [sizeof s_levels / sizeof s_levels [0]] = { 0 };
    size_t other = 0, total = 0;
    rc = s_count_levels (reply->element [0]->str, counts, n_levels, &other);
    long long loaded_ms = reply->element [2]->type == REDIS_REPLY_STRING
                        ? strtoll (reply->element [2]->str, NULL, 10) : 0;
    char loaded [40];
    printf ("grids version %s, loaded %s\n\n",
            reply->element [1]->type == REDIS_REPLY_STRING ? reply->element [1]->str : "?",
            cli_time (loaded_ms, loaded, sizeof loaded));
    freeReplyObject (reply);
    if (rc)
        return cli_fail ("the stored grids are not a GeoJSON FeatureCollection; "
                         "load a good file with 'civicbus grids load FILE'");
    const char *headers [] = { "LEVEL", "AREAS" };
    cli_table_t *table = cli_table_new (2, headers);
    char number [32];
    for (size_t i = 0; table && i < n_levels; i++) {
        total += counts [i];
        if (counts [i] == 0)
            continue;
        snprintf (number, sizeof number, "%zu", counts [i]);
        const char *cells [] = { s_levels [i], number };
        if (cli_table_add (table, cells))
            cli_table_destroy (&table);
    }
    snprintf (number, sizeof number, "%zu", total + other);
    const char *cells [] = { "total", number };
    if (table && cli_table_add (table, cells))
        cli_table_destroy (&table);
    return cli_table_finish (&table);
}

static int
s_grids_locate (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *pos [2];
    int npos = 0;
    int rc = cli_parse (cli, cmd, argc, argv, NULL, pos, 0, 2, &npos);
    if (rc != CLI_PROCEED)
        return rc;
    if (npos < 2)
        return cli_usage_error (cmd, "give a point as LAT LON, e.g. 32.0 118.74");
    double lat, lon;
    if (cli_parse_double (pos [0], &lat) || lat < -90 || lat > 90)
        return cli_usage_error (cmd, "LAT '%s' is not a latitude in -90..90", pos [0]);
    if (cli_parse_double (pos [1], &lon) || lon < -180 || lon > 180)
        return cli_usage_error (cmd, "LON '%s' is not a longitude in -180..180", pos [1]);

    int64_t version;
    grid_index_t *grids = cli_load_grids (cli, &version);
    if (!grids)
        return version == 0 ? s_no_grids () : CLI_FAIL;
    grid_hit_t hit;
    rc = grid_index_locate (grids, lat, lon, &hit);
    grid_index_destroy (&grids);
    if (rc == GRID_INDEX_FAILED)
        return cli_fail ("out of memory locating the point");
    if (rc)
        return cli_fail ("no grid contains %s %s (lat lon); a ticket there is ungridded and "
                         "routed by the catalogue's area '*' rules or its fallback",
                         pos [0], pos [1]);
    s_print_path (&hit, stdout);
    return CLI_OK;
}

/* ---- public ---- */

const cli_command_t cli_grids_commands [] = {
    { "load", "validate a GeoJSON file of grids and store it", "FILE [--check]",
      "Validates FILE (a GeoJSON FeatureCollection of areas with properties code,\n"
      "name, level, parent; see deploy/config/README.md) and stores it in Redis\n"
      "with a new version; running services reload it within seconds. A file\n"
      "with any error is refused whole, naming the feature, and nothing changes.\n"
      "Prints: loaded N grids (version V)\n\n"
      "Options:\n"
      "  --check       validate only; store nothing (no Redis needed)\n",
      s_grids_load, NULL, "grids load" },
    { "show", "what is loaded: areas per level, or one area's path", "[--code CODE]",
      "Without --code: the version, when it was loaded, and the number of areas\n"
      "of each level. With --code: the area's path from the district down, and a\n"
      "point inside it.\n",
      s_grids_show, NULL, "grids show" },
    { "locate", "which grid holds a point, and its whole path", "LAT LON",
      "Prints the path (district .. grid) of the grid containing the point\n"
      "(WGS-84, latitude first). Fails when no grid holds it.\n\n"
      "Example:\n"
      "  civicbus grids locate 32.029 118.731\n",
      s_grids_locate, NULL, "grids locate" },
    CLI_COMMANDS_END
};
