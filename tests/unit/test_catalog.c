/*  test_catalog.c — the dispatch catalogue: rule precedence (a table of
    tickets and the rule that must win), exclusions of departments that
    returned a ticket, the fallback, validation errors that point at the
    entry, and the shipped deploy/config/catalog.json (through
    CIVICBUS_SOURCE_DIR) with the demo city's routing cases. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "civicbus/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Departments d0..d9 and categories a.b.c, a.b.d, a.x, zz; each rule sends
//  to its own department so the winner is visible. Area codes: D (district)
//  > S (street) > C (community) > G (grid).
#define DEPARTMENTS \
    "\"departments\":[" \
    "{\"code\":\"d0\",\"name\":\"D0\",\"name_zh\":\"零\"},{\"code\":\"d1\",\"name\":\"D1\",\"name_zh\":\"一\"}," \
    "{\"code\":\"d2\",\"name\":\"D2\",\"name_zh\":\"二\"},{\"code\":\"d3\",\"name\":\"D3\",\"name_zh\":\"三\"}," \
    "{\"code\":\"d4\",\"name\":\"D4\",\"name_zh\":\"四\"},{\"code\":\"d5\",\"name\":\"D5\",\"name_zh\":\"五\"}," \
    "{\"code\":\"d6\",\"name\":\"D6\",\"name_zh\":\"六\"},{\"code\":\"d7\",\"name\":\"D7\",\"name_zh\":\"七\"}," \
    "{\"code\":\"d8\",\"name\":\"D8\",\"name_zh\":\"八\"}," \
    "{\"code\":\"d9\",\"name\":\"D9\",\"name_zh\":\"九\",\"masks_personal_data\":true}]"

#define CATEGORY(code, extra) \
    "{\"code\":\"" code "\",\"name\":\"n\",\"name_zh\":\"名\",\"group\":\"g\",\"description\":\"\"," \
    "\"keywords\":[]" extra "}"

#define CATEGORIES \
    "\"categories\":[" CATEGORY ("a.b.c", "") "," CATEGORY ("a.b.d", "") "," \
    CATEGORY ("a.x", ",\"request_types\":[\"complaint\",\"report\"]") "," CATEGORY ("zz", "") "]"

#define CATALOG(rules, fallback) \
    "{\"version\":\"t1\"," DEPARTMENTS "," CATEGORIES ",\"rules\":[" rules "]" fallback "}"

#define RULE(category, area, type, department, policy) \
    "{\"category\":\"" category "\",\"area\":\"" area "\",\"request_type\":\"" type "\"," \
    "\"department\":\"" department "\",\"policy\":\"" policy "\"}"

static const char *s_precedence =
    CATALOG (
        RULE ("*", "*", "*", "d0", "p0") ","                        //  0
        RULE ("a.*", "*", "*", "d1", "p1") ","                      //  1
        RULE ("a.b.*", "*", "*", "d2", "p2") ","                    //  2
        RULE ("a.b.c", "*", "*", "d3", "p3") ","                    //  3
        RULE ("a.b.*", "S", "*", "d4", "p4") ","                    //  4
        RULE ("a.b.*", "C", "*", "d5", "p5") ","                    //  5
        RULE ("a.b.*", "*", "complaint", "d6", "p6") ","            //  6
        RULE ("a.b.*", "S", "complaint", "d7", "p7") ","            //  7
        RULE ("a.*", "G", "*", "d8", "p8") ","                      //  8
        "{\"category\":\"*\",\"area\":\"D\",\"request_type\":\"help\",\"department\":\"d9\","
        "\"co_handlers\":[\"d1\",\"d2\",\"d3\"],\"policy\":\"p9\"}", //  9
        ",\"fallback\":{\"department\":\"d1\",\"policy\":\"fallback-5d\"}");

static catalog_t *
s_load (const char *text)
{
    char err [256];
    catalog_t *catalog = catalog_from_json (text, strlen (text), err, sizeof err);
    if (!catalog)
        fail_msg ("load failed: %s", err);
    return catalog;
}

typedef struct {
    const char *category;
    const char *area;           //  grid path as "D/S/C/G" prefix depth: "" ungridded
    const char *request_type;
    int rule;                   //  the rule that must win
} route_case_t;

static size_t
s_path (const char *spec, const char **path)
{
    //  "DSCG" -> D, S, C, G (one letter per level)
    static const char *const names [] = { "D", "S", "C", "G" };
    size_t depth = strlen (spec);
    for (size_t i = 0; i < depth; i++)
        path [i] = names [i];
    return depth;
}

static void
test_precedence_table (void **state)
{
    (void) state;
    catalog_t *catalog = s_load (s_precedence);
    const route_case_t cases [] = {
        //  category: exact > longer prefix > shorter prefix > "*"
        { "a.b.c", "", NULL, 3 },
        { "a.b.d", "", NULL, 2 },
        { "a.x", "", NULL, 1 },
        { "zz", "", NULL, 0 },
        { "unknown", "", NULL, 0 },
        { NULL, "", NULL, 0 },
        //  exact category beats a prefix rule with a deeper area or a type
        { "a.b.c", "DSCG", "complaint", 3 },
        //  same category rank: deeper area wins
        { "a.b.d", "DS", NULL, 4 },
        { "a.b.d", "DSC", NULL, 5 },
        { "a.b.d", "DSCG", NULL, 5 },
        //  same category and area rank: a named request type beats "*"
        { "a.b.d", "", "complaint", 6 },
        { "a.b.d", "DS", "complaint", 7 },
        //  area outranks request type: community "*" beats street complaint
        { "a.b.d", "DSC", "complaint", 5 },
        //  category outranks area: a.b.* (no area) beats a.* at the grid
        { "a.b.d", "DSCG", "report", 5 },
        { "a.x", "DSCG", NULL, 8 },
        { "a.x", "DSC", NULL, 1 },
        //  a request type nobody names falls to "*"
        { "a.b.d", "", "suggestion", 2 },
        { "a.b.d", "", "no-such-type", 2 },
        //  "*" with the district and help beats bare "*"
        { "zz", "D", "help", 9 },
        { "zz", "D", "consult", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        const char *path [4];
        size_t depth = s_path (cases [i].area, path);
        catalog_route_t route;
        int rc = catalog_route (catalog, cases [i].category, path, depth,
                                cases [i].request_type, NULL, 0, &route);
        char want_department [8];
        snprintf (want_department, sizeof want_department, "d%d", cases [i].rule);
        if (rc != 0 || route.rule_index != cases [i].rule
            || strcmp (route.department, want_department) != 0)
            fail_msg ("case %zu (%s, %s, %s): want rule %d, got rc %d rule %d department %s",
                      i, cases [i].category, cases [i].area, cases [i].request_type,
                      cases [i].rule, rc, route.rule_index, route.department);
        char want_policy [8];
        snprintf (want_policy, sizeof want_policy, "p%d", cases [i].rule);
        assert_string_equal (route.policy, want_policy);
    }
    catalog_destroy (&catalog);
    assert_null (catalog);
    catalog_destroy (&catalog);
}

static void
test_exclusions_and_fallback (void **state)
{
    (void) state;
    catalog_t *catalog = s_load (s_precedence);
    const char *path [4];
    size_t depth = s_path ("DSCG", path);
    catalog_route_t route;

    //  returned by d3 (exact rule): the next most specific owner
    const char *excluded_d3 [] = { "d3" };
    assert_int_equal (catalog_route (catalog, "a.b.c", path, 1, NULL, excluded_d3, 1, &route), 0);
    assert_int_equal (route.rule_index, 2);
    assert_string_equal (route.department, "d2");
    //  then by d2 as well, with a street path: the street rule
    const char *excluded_d3_d2 [] = { "d3", "d2" };
    assert_int_equal (catalog_route (catalog, "a.b.c", path, 2, NULL, excluded_d3_d2, 2, &route), 0);
    assert_int_equal (route.rule_index, 4);
    //  every matching rule's department excluded: the fallback
    const char *excluded_most [] = { "d0", "d2", "d3", "d4", "d5", "d6", "d7", "d8" };
    assert_int_equal (catalog_route (catalog, "a.b.c", path, depth, "complaint",
                                     excluded_most, 8, &route), 0);
    assert_int_equal (route.rule_index, 1);
    assert_string_equal (route.department, "d1");
    const char *excluded_all [] = { "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8" };
    assert_int_equal (catalog_route (catalog, "zz", path, depth, NULL, excluded_all, 9, &route), 1);
    assert_int_equal (route.rule_index, -1);
    assert_string_equal (route.department, "");

    //  co-handlers: in order, excluded ones removed
    assert_int_equal (catalog_route (catalog, "zz", path, 1, "help", NULL, 0, &route), 0);
    assert_int_equal (route.rule_index, 9);
    assert_int_equal (route.co_handler_count, 3);
    assert_string_equal (route.co_handlers [0], "d1");
    assert_string_equal (route.co_handlers [2], "d3");
    const char *excluded_d2 [] = { "d2" };
    assert_int_equal (catalog_route (catalog, "zz", path, 1, "help", excluded_d2, 1, &route), 0);
    assert_int_equal (route.rule_index, 9);
    assert_int_equal (route.co_handler_count, 2);
    assert_string_equal (route.co_handlers [0], "d1");
    assert_string_equal (route.co_handlers [1], "d3");
    catalog_destroy (&catalog);

    //  no rule matches: the fallback, marked as rule -1
    catalog = s_load (CATALOG (RULE ("a.b.*", "*", "*", "d2", "p2"),
                               ",\"fallback\":{\"department\":\"d5\",\"policy\":\"fb\"}"));
    assert_int_equal (catalog_route (catalog, "zz", NULL, 0, "consult", NULL, 0, &route), 0);
    assert_int_equal (route.rule_index, -1);
    assert_string_equal (route.department, "d5");
    assert_string_equal (route.policy, "fb");
    assert_int_equal (route.co_handler_count, 0);
    const char *fallback_department, *fallback_policy;
    assert_int_equal (catalog_fallback (catalog, &fallback_department, &fallback_policy), 0);
    assert_string_equal (fallback_department, "d5");
    //  the fallback's own department returned it: nobody left
    const char *excluded_d5 [] = { "d5" };
    assert_int_equal (catalog_route (catalog, "zz", NULL, 0, NULL, excluded_d5, 1, &route), 1);
    catalog_destroy (&catalog);

    //  no fallback at all: the operators' queue
    catalog = s_load (CATALOG (RULE ("a.b.*", "*", "*", "d2", "p2"), ""));
    assert_int_equal (catalog_fallback (catalog, &fallback_department, &fallback_policy), -1);
    assert_int_equal (catalog_route (catalog, "zz", NULL, 0, NULL, NULL, 0, &route), 1);
    assert_int_equal (catalog_route (catalog, "a.b.d", NULL, 0, NULL, NULL, 0, &route), 0);
    assert_int_equal (route.rule_index, 0);
    catalog_destroy (&catalog);
}

static void
test_lookups_and_iteration (void **state)
{
    (void) state;
    catalog_t *catalog = s_load (s_precedence);
    assert_string_equal (catalog_version (catalog), "t1");
    assert_int_equal (catalog_department_count (catalog), 10);
    assert_string_equal (catalog_department_at (catalog, 9)->code, "d9");
    assert_true (catalog_department_at (catalog, 9)->masks_personal_data);
    assert_false (catalog_department (catalog, "d1")->masks_personal_data);
    assert_string_equal (catalog_department (catalog, "d4")->name_zh, "四");
    assert_null (catalog_department (catalog, "d10"));
    assert_null (catalog_department_at (catalog, 10));

    assert_int_equal (catalog_category_count (catalog), 4);
    assert_string_equal (catalog_category_at (catalog, 2)->code, "a.x");
    assert_null (catalog_category_at (catalog, 4));
    const catalog_category_t *category = catalog_category (catalog, "a.x");
    assert_non_null (category);
    assert_int_equal (category->request_types, CATALOG_COMPLAINT | CATALOG_REPORT);
    assert_int_equal (catalog_category (catalog, "zz")->request_types, CATALOG_ALL_REQUEST_TYPES);
    assert_null (catalog_category (catalog, "a.b"));
    assert_null (catalog_category (catalog, NULL));

    assert_int_equal (catalog_rule_count (catalog), 10);
    const catalog_rule_t *rule = catalog_rule_at (catalog, 9);
    assert_string_equal (rule->area, "D");
    assert_string_equal (rule->request_type, "help");
    assert_int_equal (rule->co_handler_count, 3);
    assert_null (catalog_rule_at (catalog, 10));

    assert_int_equal (catalog_request_type_from_name ("suggestion"), CATALOG_SUGGESTION);
    assert_int_equal (catalog_request_type_from_name ("Suggestion"), 0);
    assert_int_equal (catalog_request_type_from_name (NULL), 0);
    assert_string_equal (catalog_request_type_name (CATALOG_HELP), "help");
    assert_null (catalog_request_type_name (CATALOG_HELP | CATALOG_REPORT));
    catalog_destroy (&catalog);

    //  area and request_type default to "*"
    catalog = s_load (CATALOG ("{\"category\":\"zz\",\"department\":\"d3\",\"policy\":\"p\"}", ""));
    assert_string_equal (catalog_rule_at (catalog, 0)->area, "*");
    assert_string_equal (catalog_rule_at (catalog, 0)->request_type, "*");
    catalog_route_t route;
    const char *path [] = { "D" };
    assert_int_equal (catalog_route (catalog, "zz", path, 1, "help", NULL, 0, &route), 0);
    assert_string_equal (route.department, "d3");
    catalog_destroy (&catalog);
}

typedef struct {
    const char *json;
    const char *error;
} bad_case_t;

#define CATEGORIES_WITH(list) "\"categories\":[" list "]"

static void
test_validation_errors (void **state)
{
    (void) state;
    const bad_case_t cases [] = {
        { "{\"version\":", "line 1" },
        { "[]", "must be a JSON object" },
        { "{\"version\":\"1\",\"departmentz\":[]}", "catalogue: unknown field 'departmentz'" },
        { "{" DEPARTMENTS "," CATEGORIES ",\"rules\":[]}", "catalogue: field 'version' is missing" },
        { "{\"version\":\"1\",\"departments\":[]," CATEGORIES ",\"rules\":[]}",
          "departments: must be a non-empty array" },
        { "{\"version\":\"1\",\"departments\":[{\"code\":\"a\",\"name\":\"A\",\"name_zh\":\"甲\"},"
          "{\"code\":\"a\",\"name\":\"B\",\"name_zh\":\"乙\"}]," CATEGORIES ",\"rules\":[]}",
          "departments[1]: duplicate department code 'a' (first at departments[0])" },
        { "{\"version\":\"1\",\"departments\":[{\"code\":\"Police\",\"name\":\"A\",\"name_zh\":\"甲\"}],"
          CATEGORIES ",\"rules\":[]}", "departments[0]: code 'Police' is not a valid code" },
        { "{\"version\":\"1\",\"departments\":[{\"code\":\"a\",\"name\":\"A\"}]," CATEGORIES ",\"rules\":[]}",
          "departments[0]: field 'name_zh' is missing" },
        { "{\"version\":\"1\"," DEPARTMENTS "," CATEGORIES_WITH (CATEGORY ("a.b", "") "," CATEGORY ("a.b", ""))
          ",\"rules\":[]}", "categories[1]: duplicate category code 'a.b' (first at categories[0])" },
        { "{\"version\":\"1\"," DEPARTMENTS ","
          CATEGORIES_WITH ("{\"code\":\"a\",\"name\":\"n\",\"name_zh\":\"名\",\"description\":\"\",\"keywords\":[]}")
          ",\"rules\":[]}", "categories[0]: field 'group' is missing" },
        { "{\"version\":\"1\"," DEPARTMENTS "," CATEGORIES_WITH (CATEGORY ("a", ",\"request_types\":[\"praise\"]"))
          ",\"rules\":[]}", "categories[0]: request type 'praise' is not one of" },
        { "{\"version\":\"1\"," DEPARTMENTS ","
          CATEGORIES_WITH (CATEGORY ("a", ",\"gbt30428\":{\"kind\":\"event\",\"class\":\"公用设施\",\"subclass\":\"x\"}"))
          ",\"rules\":[]}", "categories[0]: gbt30428: '公用设施' is not a GB/T 30428 event class" },
        { "{\"version\":\"1\"," DEPARTMENTS ","
          CATEGORIES_WITH (CATEGORY ("a", ",\"gbt30428\":{\"kind\":\"thing\",\"class\":\"其他\",\"subclass\":\"x\"}"))
          ",\"rules\":[]}", "categories[0]: gbt30428: kind 'thing' is not 'facility'" },
        { "{\"version\":\"1\"," DEPARTMENTS ","
          CATEGORIES_WITH (CATEGORY ("a", ",\"questions\":[{\"code\":\"q\",\"description\":\"d\","
                                          "\"datatype\":\"singlevaluelist\"}]"))
          ",\"rules\":[]}", "categories[0]: questions[0]: a singlevaluelist needs a non-empty 'values' array" },
        { CATALOG (RULE ("a.b.c", "*", "*", "polce", "p"), ""),
          "rules[0]: department 'polce' is not declared" },
        { CATALOG (RULE ("a.b.c", "*", "*", "d1", "p") "," RULE ("a.b.z", "*", "*", "d1", "p"), ""),
          "rules[1]: category 'a.b.z' is not declared" },
        { CATALOG (RULE ("q.*", "*", "*", "d1", "p"), ""),
          "rules[0]: category prefix 'q.*' matches no declared category" },
        { CATALOG (RULE ("a.*.c", "*", "*", "d1", "p"), ""),
          "rules[0]: category 'a.*.c' is not declared" },
        { CATALOG (RULE ("a.**", "*", "*", "d1", "p"), ""),
          "rules[0]: category pattern 'a.**' is not a code" },
        { CATALOG (RULE ("a.b.c", "*", "praise", "d1", "p"), ""),
          "rules[0]: request type 'praise' is not one of" },
        { CATALOG (RULE ("a.x", "*", "help", "d1", "p"), ""),
          "rules[0]: category 'a.x' does not take request type 'help'" },
        { CATALOG (RULE ("a.b.c", "a street", "*", "d1", "p"), ""),
          "rules[0]: area 'a street' is not an area code" },
        { CATALOG ("{\"category\":\"a.b.c\",\"department\":\"d1\"}", ""),
          "rules[0]: field 'policy' is missing" },
        { CATALOG ("{\"area\":\"*\",\"department\":\"d1\",\"policy\":\"p\"}", ""),
          "rules[0]: field 'category' is missing" },
        { CATALOG ("{\"category\":\"a.b.c\",\"departmnt\":\"d1\",\"policy\":\"p\"}", ""),
          "rules[0]: unknown field 'departmnt'" },
        { CATALOG ("{\"category\":\"a.b.c\",\"department\":\"d1\",\"co_handlers\":[\"d2\",\"dx\"],"
                   "\"policy\":\"p\"}", ""), "rules[0]: co-handler 'dx' is not declared" },
        { CATALOG ("{\"category\":\"a.b.c\",\"department\":\"d1\",\"co_handlers\":[\"d1\"],"
                   "\"policy\":\"p\"}", ""), "rules[0]: department 'd1' is also listed as its co-handler" },
        { CATALOG ("{\"category\":\"a.b.c\",\"department\":\"d1\",\"co_handlers\":[\"d2\",\"d2\"],"
                   "\"policy\":\"p\"}", ""), "rules[0]: co-handler 'd2' listed twice" },
        { CATALOG ("{\"category\":\"a.b.c\",\"department\":\"d1\",\"policy\":\"5 days\"}", ""),
          "rules[0]: policy '5 days' is not a valid code" },
        { CATALOG (RULE ("a.*", "S", "*", "d1", "p") "," RULE ("a.b.c", "*", "*", "d2", "p") ","
                   RULE ("a.*", "S", "*", "d3", "q"), ""),
          "rules[2]: same category, area and request type as rules[0]" },
        { CATALOG (RULE ("a.*", "*", "*", "d1", "p"), ",\"fallback\":{\"department\":\"dz\",\"policy\":\"p\"}"),
          "fallback: department 'dz' is not declared" },
        { CATALOG (RULE ("a.*", "*", "*", "d1", "p"), ",\"fallback\":{\"department\":\"d1\"}"),
          "fallback: field 'policy' is missing" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char err [256] = "untouched";
        catalog_t *catalog = catalog_from_json (cases [i].json, strlen (cases [i].json), err, sizeof err);
        if (catalog || !strstr (err, cases [i].error)) {
            catalog_destroy (&catalog);
            fail_msg ("case %zu: want error containing \"%s\", got \"%s\"", i, cases [i].error, err);
        }
    }
    const char *bad = CATALOG (RULE ("a.b.c", "*", "*", "polce", "p"), "");
    assert_null (catalog_from_json (bad, strlen (bad), NULL, 0));
}

static catalog_t *
s_load_demo (void)
{
    const char *root = getenv ("CIVICBUS_SOURCE_DIR");
#ifdef CIVICBUS_SOURCE_DIR
    if (!root)
        root = CIVICBUS_SOURCE_DIR;
#endif
    assert_non_null (root);
    char path [1024];
    snprintf (path, sizeof path, "%s/deploy/config/catalog.json", root);
    FILE *file = fopen (path, "rb");
    if (!file)
        fail_msg ("cannot open %s", path);
    fseek (file, 0, SEEK_END);
    long size = ftell (file);
    fseek (file, 0, SEEK_SET);
    char *text = malloc ((size_t) size);
    assert_non_null (text);
    assert_int_equal (fread (text, 1, (size_t) size, file), (size_t) size);
    fclose (file);
    char err [256];
    catalog_t *catalog = catalog_from_json (text, (size_t) size, err, sizeof err);
    free (text);
    if (!catalog)
        fail_msg ("%s: %s", path, err);
    return catalog;
}

//  The shipped catalogue: size, coverage of departments, GB/T 30428
//  classes and request types.
static void
test_demo_catalogue_shape (void **state)
{
    (void) state;
    catalog_t *catalog = s_load_demo ();
    assert_true (catalog_category_count (catalog) >= 40);
    const char *departments [] = { "police", "urban", "civil", "market", "health", "housing" };
    assert_int_equal (catalog_department_count (catalog), 6);
    for (size_t i = 0; i < 6; i++) {
        assert_non_null (catalog_department (catalog, departments [i]));
        bool owns_a_rule = false;
        for (size_t r = 0; r < catalog_rule_count (catalog); r++)
            owns_a_rule |= strcmp (catalog_rule_at (catalog, r)->department, departments [i]) == 0;
        assert_true (owns_a_rule);
    }
    const char *facility [] = { "公用设施", "道路交通", "市容环境", "园林绿化", "房屋土地", "其他" };
    const char *event [] = { "市容环境", "宣传广告", "施工管理", "突发事件", "街面秩序", "其他" };
    for (size_t k = 0; k < 6; k++) {
        bool has_facility = false, has_event = false;
        for (size_t i = 0; i < catalog_category_count (catalog); i++) {
            const catalog_category_t *category = catalog_category_at (catalog, i);
            if (!category->gbt_kind)
                continue;
            if (strcmp (category->gbt_kind, "facility") == 0)
                has_facility |= strcmp (category->gbt_class, facility [k]) == 0;
            else
                has_event |= strcmp (category->gbt_class, event [k]) == 0;
        }
        if (!has_facility || !has_event)
            fail_msg ("GB/T 30428 class %s / %s not covered", facility [k], event [k]);
    }
    unsigned request_types = 0;
    bool area_rule = false, co_handler_rule = false;
    for (size_t r = 0; r < catalog_rule_count (catalog); r++) {
        const catalog_rule_t *rule = catalog_rule_at (catalog, r);
        request_types |= catalog_request_type_from_name (rule->request_type);
        area_rule |= strcmp (rule->area, "*") != 0;
        co_handler_rule |= rule->co_handler_count > 0;
    }
    assert_int_equal (request_types, CATALOG_ALL_REQUEST_TYPES);
    assert_true (area_rule);
    assert_true (co_handler_rule);
    const catalog_category_t *manhole = catalog_category (catalog, "urban.facility.public.manhole");
    assert_non_null (manhole);
    assert_string_equal (manhole->name_zh, "井盖破损");
    assert_string_equal (manhole->gbt_subclass, "井盖破损");
    assert_true (manhole->keyword_count > 0);
    assert_int_equal (manhole->question_count, 2);
    assert_true (manhole->questions [1].required);
    assert_string_equal (manhole->questions [0].datatype, "singlevaluelist");
    assert_true (manhole->questions [0].value_count >= 2);
    catalog_destroy (&catalog);
}

typedef struct {
    const char *category;
    const char *grid;           //  a demo grid code; its path is derived from it
    const char *request_type;
    const char *department;
    const char *co_handler;     //  first co-handler or NULL
    const char *policy;
} demo_case_t;

//  Tickets in the demo city and where they must go.
static void
test_demo_routing (void **state)
{
    (void) state;
    catalog_t *catalog = s_load_demo ();
    const demo_case_t cases [] = {
        { "urban.facility.public.manhole", "320105001001001", "report", "urban", NULL, "urban-4h" },
        { "urban.facility.public.streetlight", "320105004002003", "report", "urban", NULL, "urban-1d" },
        { "urban.event.environment.exposed_garbage", "320105005001001", "complaint", "urban", NULL, "urban-4h" },
        { "urban.event.environment.laundry", "320105005001001", "complaint", "urban", NULL, "complaint-15d" },
        { "urban.event.advert.flyposting", "320105002003004", "report", "urban", NULL, "urban-4h" },
        { "urban.event.emergency.road_collapse", "320105004001001", "help", "urban", "police", "urgent-2h" },
        { "urban.event.emergency.water_main", "320105004001001", "help", "housing", "urban", "urgent-2h" },
        { "urban.event.construction.dust", "320105002001001", "complaint", "housing", "urban", "standard-5d" },
        { "urban.event.construction.noise", "320105002001001", "complaint", "urban", "housing", "complaint-15d" },
        //  illegal construction: urban in most streets, housing on 江心洲
        { "urban.event.other.illegal_construction", "320105001002003", "report", "urban", NULL, "urban-15d" },
        { "urban.event.other.illegal_construction", "320105006003002", "report", "housing", "urban", "urban-15d" },
        //  street-order complaints in 莫愁湖街道 go to the joint patrol
        { "urban.event.street.stall", "320105003001001", "complaint", "urban", "police", "complaint-15d" },
        { "urban.event.street.stall", "320105001001001", "complaint", "urban", NULL, "urban-1d" },
        { "urban.event.street.hawker", "320105001001001", "report", "urban", "market", "urban-1d" },
        { "urban.event.street.parking_motor", "320105002002002", "report", "police", "urban", "urban-1d" },
        { "police.public_order.fight", "320105004003001", "report", "police", NULL, "urgent-2h" },
        { "police.household.registration", "320105004003001", "consult", "police", NULL, "consult-2d" },
        { "police.fraud.telecom", "320105004003001", "report", "police", NULL, "urgent-2h" },
        { "civil.elderly.care", "320105003002001", "help", "civil", "health", "help-10d" },
        { "civil.assistance.subsistence", "320105003002001", "help", "civil", NULL, "help-10d" },
        { "civil.marriage.registration", "320105003002001", "suggestion", "civil", NULL, "suggestion-15d" },
        { "market.food.safety", "320105005002001", "report", "market", "health", "standard-5d" },
        { "market.consumer.dispute", "320105005002001", "complaint", "market", NULL, "complaint-15d" },
        { "health.vaccination", "320105001005001", "consult", "health", NULL, "consult-2d" },
        { "health.epidemic.prevention", "320105001005001", "report", "health", "civil", "urgent-2h" },
        { "housing.elevator.fault", "320105002004001", "help", "market", "housing", "urgent-2h" },
        //  property disputes in 月安社区 (pilot) go to civil affairs
        { "housing.property.management", "320105002005003", "complaint", "civil", "housing", "standard-5d" },
        { "housing.property.management", "320105002004003", "complaint", "housing", NULL, "complaint-15d" },
        //  nothing routes "general.other": the fallback
        { "general.other", "320105001001001", "consult", "civil", NULL, "standard-5d" },
        //  ungridded: area rules cannot match, category rules still do
        { "urban.event.other.illegal_construction", NULL, "report", "urban", NULL, "urban-15d" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        //  path of a demo grid code 320105SSSCCCGGG: its 6, 9, 12, 15-char prefixes
        char levels [4][16];
        const char *path [4];
        size_t depth = 0;
        for (size_t len = 6; cases [i].grid && len <= 15; len += 3, depth++) {
            snprintf (levels [depth], sizeof levels [depth], "%.*s", (int) len, cases [i].grid);
            path [depth] = levels [depth];
        }
        catalog_route_t route;
        int rc = catalog_route (catalog, cases [i].category, path, depth, cases [i].request_type,
                                NULL, 0, &route);
        if (rc != 0 || strcmp (route.department, cases [i].department) != 0
            || strcmp (route.policy, cases [i].policy) != 0
            || (cases [i].co_handler
                ? route.co_handler_count == 0 || strcmp (route.co_handlers [0], cases [i].co_handler) != 0
                : route.co_handler_count != 0))
            fail_msg ("case %zu (%s in %s, %s): want %s/%s/%s, got rc %d %s/%s/%s (rule %d)", i,
                      cases [i].category, cases [i].grid, cases [i].request_type,
                      cases [i].department, cases [i].co_handler? cases [i].co_handler: "-",
                      cases [i].policy, rc, route.department,
                      route.co_handler_count? route.co_handlers [0]: "-", route.policy,
                      route.rule_index);
    }
    //  a manhole ticket returned by urban management: no other rule owns
    //  urban cases, so the fallback takes it
    const char *path [] = { "320105", "320105001" };
    const char *excluded [] = { "urban" };
    catalog_route_t route;
    assert_int_equal (catalog_route (catalog, "urban.facility.public.manhole", path, 2, "report",
                                     excluded, 1, &route), 0);
    assert_int_equal (route.rule_index, -1);
    assert_string_equal (route.department, "civil");
    catalog_destroy (&catalog);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_precedence_table),
        cmocka_unit_test (test_exclusions_and_fallback),
        cmocka_unit_test (test_lookups_and_iteration),
        cmocka_unit_test (test_validation_errors),
        cmocka_unit_test (test_demo_catalogue_shape),
        cmocka_unit_test (test_demo_routing),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
