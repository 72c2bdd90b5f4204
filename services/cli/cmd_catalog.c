/*  cmd_catalog.c — `civicbus catalog load|show|route`: the dispatch
    catalogue (派单目录). `route` answers the operator's question "who gets
    this ticket, and by which rule?" with the same catalog_route the
    dispatcher calls, so its answer is the dispatcher's answer. */

#include "cli.h"
#include "civicbus/citydata.h"

#include <stdlib.h>
#include <string.h>

#define S_MAX_ROUTE_KEYS 64     //  areas or request types shown for one category

/* ---- private ---- */

static int
s_no_catalog (void)
{
    return cli_fail ("no catalogue is loaded; load one with "
                     "'civicbus catalog load deploy/config/catalog.json'");
}

//  "rules[12]" or "fallback".
static const char *
s_rule_label (int rule_index, char *buf, size_t cap)
{
    if (rule_index < 0)
        snprintf (buf, cap, "fallback");
    else
        snprintf (buf, cap, "rules[%d]", rule_index);
    return buf;
}

static void
s_join_co_handlers (const catalog_route_t *route, char *buf, size_t cap)
{
    buf [0] = 0;
    for (size_t i = 0; i < route->co_handler_count; i++) {
        size_t used = strlen (buf);
        snprintf (buf + used, cap - used, "%s%s", i ? "," : "", route->co_handlers [i]);
    }
}

//  "consult, help, complaint" for a set of CATALOG_* bits.
static void
s_request_types_text (unsigned bits, char *buf, size_t cap)
{
    buf [0] = 0;
    for (unsigned bit = 1; bit <= CATALOG_SUGGESTION; bit <<= 1)
        if (bits & bit) {
            size_t used = strlen (buf);
            snprintf (buf + used, cap - used, "%s%s", used ? ", " : "",
                      catalog_request_type_name (bit));
        }
}

//  Does a rule's category pattern ("urban.*", "*", exact) cover `code`?
static bool
s_rule_covers (const char *pattern, const char *code)
{
    size_t len = strlen (pattern);
    if (len > 0 && pattern [len - 1] == '*')
        return strncmp (pattern, code, len - 1) == 0;
    return strcmp (pattern, code) == 0;
}

static bool
s_list_has (const char *const *list, size_t count, const char *value)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp (list [i], value) == 0)
            return true;
    return false;
}

static int
s_catalog_load (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    cli_load_t load;
    int rc = cli_load_begin (cli, cmd, argc, argv, "which file? give the catalogue's JSON FILE",
                             &load);
    if (rc != CLI_PROCEED)
        return rc;
    //  Parsed here and again by citydata_store_catalog: a millisecond, and
    //  it tells a bad file from a Redis failure and gives the counts.
    char err [512] = "";
    catalog_t *catalog = catalog_from_json (load.text, load.len, err, sizeof err);
    if (!catalog) {
        free (load.text);
        return cli_fail ("%s is not valid, nothing was stored: %s", load.path, err);
    }
    char summary [256];
    snprintf (summary, sizeof summary, "%zu categories, %zu departments, %zu rules",
              catalog_category_count (catalog), catalog_department_count (catalog),
              catalog_rule_count (catalog));
    char name [CATALOG_CODE_MAX];
    snprintf (name, sizeof name, "%s", catalog_version (catalog));
    catalog_destroy (&catalog);
    if (load.check_only) {
        free (load.text);
        printf ("%s is valid: catalogue '%s', %s\n", load.path, name, summary);
        return CLI_OK;
    }
    int64_t version = 0;
    rc = citydata_store_catalog (load.redis, load.text, load.len, &version, err, sizeof err);
    free (load.text);
    if (rc)
        return cb_redis_connected (load.redis)
             ? cli_fail ("the catalogue was not stored: %s", err)
             : cli_redis_failed (cli, "storing the catalogue");
    printf ("loaded catalogue '%s': %s (version %lld)\n", name, summary,
            (long long) version);
    return CLI_OK;
}

static json_t *
s_department_json (const catalog_department_t *d)
{
    return json_pack ("{s:s, s:s, s:s, s:b}", "code", d->code, "name", d->name ? d->name : "",
                      "name_zh", d->name_zh ? d->name_zh : "",
                      "masks_personal_data", d->masks_personal_data);
}

static int
s_show_overview (const catalog_t *catalog, int64_t version, bool as_json)
{
    const char *fb_department = NULL, *fb_policy = NULL;
    bool has_fallback = catalog_fallback (catalog, &fb_department, &fb_policy) == 0;
    if (as_json) {
        json_t *departments = json_array ();
        json_t *categories = json_array ();
        for (size_t i = 0; i < catalog_department_count (catalog); i++)
            json_array_append_new (departments,
                                   s_department_json (catalog_department_at (catalog, i)));
        for (size_t i = 0; i < catalog_category_count (catalog); i++) {
            const catalog_category_t *c = catalog_category_at (catalog, i);
            json_array_append_new (categories, json_pack ("{s:s, s:s, s:s, s:s}",
                "code", c->code, "name", c->name ? c->name : "",
                "name_zh", c->name_zh ? c->name_zh : "", "group", c->group ? c->group : ""));
        }
        json_t *fallback = has_fallback
            ? json_pack ("{s:s, s:s}", "department", fb_department, "policy", fb_policy)
            : json_null ();
        return cli_print_json (json_pack ("{s:s, s:I, s:o, s:o, s:I, s:o}",
            "version", catalog_version (catalog), "stored_version", (json_int_t) version,
            "departments", departments, "categories", categories,
            "rules", (json_int_t) catalog_rule_count (catalog), "fallback", fallback));
    }
    printf ("catalogue '%s' (stored version %lld): %zu departments, %zu categories, %zu rules\n",
            catalog_version (catalog), (long long) version, catalog_department_count (catalog),
            catalog_category_count (catalog), catalog_rule_count (catalog));
    if (has_fallback)
        printf ("fallback: %s (policy %s) when no rule matches\n\n", fb_department, fb_policy);
    else
        printf ("no fallback: a ticket no rule matches waits in the operators' queue\n\n");

    const char *dept_headers [] = { "DEPARTMENT", "NAME", "名称", "PERSONAL DATA" };
    cli_table_t *table = cli_table_new (4, dept_headers);
    for (size_t i = 0; table && i < catalog_department_count (catalog); i++) {
        const catalog_department_t *d = catalog_department_at (catalog, i);
        const char *cells [] = { d->code, d->name, d->name_zh,
                                 d->masks_personal_data ? "masked" : "shown" };
        if (cli_table_add (table, cells))
            cli_table_destroy (&table);
    }
    if (cli_table_finish (&table) != CLI_OK)
        return CLI_FAIL;
    printf ("\n");

    const char *cat_headers [] = { "CATEGORY", "名称", "GROUP", "NAME" };
    table = cli_table_new (4, cat_headers);
    for (size_t i = 0; table && i < catalog_category_count (catalog); i++) {
        const catalog_category_t *c = catalog_category_at (catalog, i);
        const char *cells [] = { c->code, c->name_zh, c->group, c->name };
        if (cli_table_add (table, cells))
            cli_table_destroy (&table);
    }
    if (cli_table_finish (&table) != CLI_OK)
        return CLI_FAIL;
    printf ("\n'civicbus catalog show --category CODE' shows who gets one category where.\n");
    return CLI_OK;
}

//  One category, and the department each area (and request type) that a
//  rule names gets: every combination is routed with catalog_route.
static int
s_show_category (cli_t *cli, const catalog_t *catalog, const char *code, bool as_json)
{
    const catalog_category_t *c = catalog_category (catalog, code);
    if (!c)
        return cli_fail ("no category '%s' in catalogue '%s'; 'civicbus catalog show' lists them",
                         code, catalog_version (catalog));
    //  The areas and request types the category's rules mention; "*" first.
    const char *areas [S_MAX_ROUTE_KEYS] = { "*" };
    const char *types [S_MAX_ROUTE_KEYS] = { "*" };
    size_t n_areas = 1, n_types = 1;
    for (size_t i = 0; i < catalog_rule_count (catalog); i++) {
        const catalog_rule_t *rule = catalog_rule_at (catalog, i);
        if (!s_rule_covers (rule->category, code))
            continue;
        if (n_areas < S_MAX_ROUTE_KEYS && !s_list_has (areas, n_areas, rule->area))
            areas [n_areas++] = rule->area;
        if (n_types < S_MAX_ROUTE_KEYS && !s_list_has (types, n_types, rule->request_type))
            types [n_types++] = rule->request_type;
    }
    //  With grids loaded an area routes with its real path (a street's rule
    //  then also shows for its communities); without, with its code alone.
    int64_t grids_version = 0;
    grid_index_t *grids = NULL;
    if (n_areas > 1) {
        grids = cli_load_grids (cli, &grids_version);
        if (!grids && grids_version < 0)
            return CLI_FAIL;
    }
    char request_types [128];
    s_request_types_text (c->request_types ? c->request_types : CATALOG_ALL_REQUEST_TYPES,
                          request_types, sizeof request_types);

    json_t *routes = json_array ();
    const char *headers [] = { "AREA", "REQUEST TYPE", "DEPARTMENT", "CO-HANDLERS", "POLICY",
                               "RULE" };
    cli_table_t *table = cli_table_new (6, headers);
    for (size_t a = 0; table && routes && a < n_areas; a++) {
        const char *path [GRID_PATH_MAX];
        size_t path_len = 0;
        char area_label [GRID_CODE_MAX + GRID_NAME_MAX + 8];
        grid_hit_t hit;
        if (strcmp (areas [a], "*") == 0)
            snprintf (area_label, sizeof area_label, "* (elsewhere)");
        else
        if (grids && grid_index_path (grids, areas [a], &hit) == 0) {
            path_len = grid_hit_codes (&hit, path, GRID_PATH_MAX);
            snprintf (area_label, sizeof area_label, "%s %s", areas [a],
                      hit.path [hit.depth - 1].name);
        }
        else {
            path [0] = areas [a];
            path_len = 1;
            snprintf (area_label, sizeof area_label, "%s", areas [a]);
        }
        for (size_t t = 0; t < n_types; t++) {
            const char *type = strcmp (types [t], "*") == 0 ? NULL : types [t];
            catalog_route_t route;
            char co [CATALOG_CO_HANDLERS_MAX * CATALOG_CODE_MAX], rule [32];
            bool routed = catalog_route (catalog, code, path, path_len, type, NULL, 0,
                                         &route) == 0;
            if (routed)
                s_join_co_handlers (&route, co, sizeof co);
            const char *cells [] = {
                area_label, type ? type : "* (any other)",
                routed ? route.department : "(operators' queue)", routed ? co : "-",
                routed ? route.policy : "-",
                routed ? s_rule_label (route.rule_index, rule, sizeof rule) : "none"
            };
            if (cli_table_add (table, cells))
                cli_table_destroy (&table);
            json_array_append_new (routes, json_pack ("{s:s, s:s, s:s?, s:s?, s:s?}",
                "area", areas [a], "request_type", types [t],
                "department", routed ? route.department : NULL,
                "policy", routed ? route.policy : NULL,
                "rule", routed ? s_rule_label (route.rule_index, rule, sizeof rule) : NULL));
        }
    }
    grid_index_destroy (&grids);
    if (!table || !routes) {
        cli_table_destroy (&table);
        json_decref (routes);
        return cli_fail ("out of memory");
    }
    int rc = CLI_OK;
    if (as_json) {
        cli_table_destroy (&table);
        rc = cli_print_json (json_pack ("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s, s:o}",
            "code", c->code, "name", c->name ? c->name : "",
            "name_zh", c->name_zh ? c->name_zh : "", "group", c->group ? c->group : "",
            "gbt_kind", c->gbt_kind, "gbt_class", c->gbt_class, "gbt_subclass", c->gbt_subclass,
            "request_types", request_types, "routes", routes));
        return rc;
    }
    json_decref (routes);
    printf ("category      %s  %s  (%s)\n", c->code, c->name_zh ? c->name_zh : "",
            c->name ? c->name : "");
    if (c->group)
        printf ("group         %s\n", c->group);
    if (c->gbt_kind)
        printf ("GB/T 30428    %s / %s / %s\n", strcmp (c->gbt_kind, "facility") == 0
                ? "部件 facility" : "事件 event", c->gbt_class ? c->gbt_class : "-",
                c->gbt_subclass ? c->gbt_subclass : "-");
    printf ("request types %s\n\n", request_types);
    cli_table_print (table, stdout);
    cli_table_destroy (&table);
    return rc;
}

static int
s_catalog_show (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *category = NULL;
    bool as_json = false;
    const cli_opt_t opts [] = {
        { "category", &category, NULL }, { "json", NULL, &as_json }, CLI_OPTS_END
    };
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    int64_t version;
    catalog_t *catalog = cli_load_catalog (cli, &version);
    if (!catalog)
        return version == 0 ? s_no_catalog () : CLI_FAIL;
    rc = category ? s_show_category (cli, catalog, category, as_json)
                  : s_show_overview (catalog, version, as_json);
    catalog_destroy (&catalog);
    return rc;
}

static int
s_catalog_route (cli_t *cli, const cli_command_t *cmd, int argc, char **argv)
{
    const char *category = NULL, *lat_text = NULL, *lon_text = NULL, *type = NULL,
               *grid_code = NULL;
    const cli_opt_t opts [] = {
        { "category", &category, NULL }, { "lat", &lat_text, NULL }, { "lon", &lon_text, NULL },
        { "type", &type, NULL }, { "grid", &grid_code, NULL }, CLI_OPTS_END
    };
    int rc = cli_parse (cli, cmd, argc, argv, opts, NULL, 0, 0, NULL);
    if (rc != CLI_PROCEED)
        return rc;
    if (!category)
        return cli_usage_error (cmd, "missing --category CODE");
    if (!lat_text != !lon_text)
        return cli_usage_error (cmd, "give both --lat and --lon");
    if (lat_text && grid_code)
        return cli_usage_error (cmd, "give a point (--lat, --lon) or --grid, not both");
    double lat = 0, lon = 0;
    if (lat_text && (cli_parse_double (lat_text, &lat) || lat < -90 || lat > 90))
        return cli_usage_error (cmd, "--lat '%s' is not a latitude in -90..90", lat_text);
    if (lon_text && (cli_parse_double (lon_text, &lon) || lon < -180 || lon > 180))
        return cli_usage_error (cmd, "--lon '%s' is not a longitude in -180..180", lon_text);
    if (type && !catalog_request_type_from_name (type))
        return cli_usage_error (cmd, "--type '%s' is not a request type "
                                "(consult, help, complaint, report or suggestion)", type);

    int64_t version;
    catalog_t *catalog = cli_load_catalog (cli, &version);
    if (!catalog)
        return version == 0 ? s_no_catalog () : CLI_FAIL;
    grid_hit_t hit = { .depth = 0 };
    const char *where = "no location given: only area '*' rules apply";
    if (lat_text || grid_code) {
        int64_t grids_version;
        grid_index_t *grids = cli_load_grids (cli, &grids_version);
        if (!grids) {
            catalog_destroy (&catalog);
            if (grids_version < 0)
                return CLI_FAIL;
            return cli_fail ("no grids are loaded, so the point has no area; load them with "
                             "'civicbus grids load deploy/config/grids.geojson'");
        }
        if (grid_code) {
            rc = grid_index_path (grids, grid_code, &hit);
            grid_index_destroy (&grids);
            if (rc) {
                catalog_destroy (&catalog);
                return cli_fail ("no area has code '%s' in grids version %lld", grid_code,
                                 (long long) grids_version);
            }
        }
        else {
            rc = grid_index_locate (grids, lat, lon, &hit);
            grid_index_destroy (&grids);
            if (rc == GRID_INDEX_FAILED) {
                catalog_destroy (&catalog);
                return cli_fail ("out of memory locating the point");
            }
            if (rc) {
                hit.depth = 0;
                where = "the point is in no grid (ungridded): only area '*' rules apply";
            }
        }
    }
    const char *path [GRID_PATH_MAX];
    size_t path_len = grid_hit_codes (&hit, path, GRID_PATH_MAX);
    catalog_route_t route;
    rc = catalog_route (catalog, category, path, path_len, type, NULL, 0, &route);

    if (path_len) {
        printf ("area        ");
        for (size_t i = 0; i < hit.depth; i++)
            printf ("%s%s", i ? " > " : "", hit.path [i].name);
        printf ("\n            %s (%s)\n", hit.code, hit.path [hit.depth - 1].level);
    }
    else
        printf ("area        -  (%s)\n", where);
    if (!catalog_category (catalog, category))
        printf ("category    %s  (not in the catalogue: only category '*' rules and the "
                "fallback apply)\n", category);
    else
        printf ("category    %s  %s\n", category, catalog_category (catalog, category)->name_zh);
    printf ("type        %s\n", type ? type : "-  (only request type '*' rules apply)");
    if (rc) {
        catalog_destroy (&catalog);
        printf ("department  none: no rule matches and there is no fallback; "
                "the ticket would wait in the operators' queue\n");
        return CLI_FAIL;
    }
    const catalog_department_t *dept = catalog_department (catalog, route.department);
    printf ("department  %s  %s\n", route.department, dept && dept->name_zh ? dept->name_zh : "");
    char co [CATALOG_CO_HANDLERS_MAX * CATALOG_CODE_MAX];
    s_join_co_handlers (&route, co, sizeof co);
    printf ("co-handlers %s\n", co [0] ? co : "-");
    printf ("policy      %s\n", route.policy);
    if (route.rule_index >= 0) {
        const catalog_rule_t *rule = catalog_rule_at (catalog, (size_t) route.rule_index);
        printf ("rule        rules[%d]: category '%s', area '%s', request type '%s' "
                "(the most specific rule that matches)\n",
                route.rule_index, rule->category, rule->area, rule->request_type);
    }
    else
        printf ("rule        fallback (no rule matches)\n");
    catalog_destroy (&catalog);
    return CLI_OK;
}

/* ---- public ---- */

const cli_command_t cli_catalog_commands [] = {
    { "load", "validate a dispatch catalogue and store it", "FILE [--check]",
      "Validates FILE (JSON: version, departments, categories, rules, fallback;\n"
      "see deploy/config/README.md) and stores it in Redis with a new version;\n"
      "running services reload it within seconds. A file with any error is\n"
      "refused whole, naming the rule or entry, and nothing changes.\n\n"
      "Options:\n"
      "  --check       validate only; store nothing (no Redis needed)\n",
      s_catalog_load, NULL, "catalog load" },
    { "show", "departments, categories and rules; or who gets one category where",
      "[--category CODE] [--json]",
      "Without --category: the catalogue's version, its departments and\n"
      "categories, the number of rules and the fallback. With --category: the\n"
      "category, and for every area and request type its rules name, the\n"
      "department, co-handlers, policy and rule that win.\n\n"
      "Options:\n"
      "  --category CODE  one category, e.g. urban.event.street.stall\n"
      "  --json           the same as JSON\n",
      s_catalog_show, NULL, "catalog show" },
    { "route", "which department would get a ticket, and by which rule",
      "--category CODE (--lat LAT --lon LON | --grid CODE) [--type TYPE]",
      "Locates the point in the loaded grids and routes it like the dispatcher\n"
      "does. Prints the area path, department, co-handlers, policy and the\n"
      "matched rule. Exit status 1 when nobody would get it (operators' queue).\n\n"
      "Options:\n"
      "  --category CODE  the ticket's category\n"
      "  --lat, --lon     the ticket's point (WGS-84)\n"
      "  --grid CODE      or an area code instead of a point\n"
      "  --type TYPE      consult, help, complaint, report or suggestion\n\n"
      "Example:\n"
      "  civicbus catalog route --category urban.facility.public.manhole \\\n"
      "      --lat 32.029 --lon 118.731 --type complaint\n",
      s_catalog_route, NULL, "catalog route" },
    CLI_COMMANDS_END
};
