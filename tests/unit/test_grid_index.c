/*  test_grid_index.c — grids: loading and validation, hierarchy paths,
    point lookups (inside, on shared edges, in holes, outside), centroids,
    concurrent lookups from several threads, and the shipped demo city in
    deploy/config/grids.geojson (found through CIVICBUS_SOURCE_DIR). */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "civicbus/grid_index.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A small town. Two grids share the edge lon = 1; the left one has the
//  larger code, so "smallest code wins" is not "first in the file wins".
//  T-C-002 has a hole; T-C-003 is a MultiPolygon of two squares; a building
//  without geometry hangs under T-C-001.
#define SQUARE(x0, y0, x1, y1) \
    "[[" #x0 "," #y0 "],[" #x1 "," #y0 "],[" #x1 "," #y1 "],[" #x0 "," #y1 "],[" #x0 "," #y0 "]]"

static const char *s_town =
    "{\"type\":\"FeatureCollection\",\"features\":["
    "{\"type\":\"Feature\",\"properties\":{\"code\":\"T\",\"name\":\"Town\",\"level\":\"district\","
      "\"parent\":null},\"geometry\":null},"
    "{\"type\":\"Feature\",\"properties\":{\"code\":\"T-S\",\"name\":\"Street\",\"level\":\"street\","
      "\"parent\":\"T\"},\"geometry\":null},"
    "{\"type\":\"Feature\",\"properties\":{\"code\":\"T-C\",\"name\":\"社区\",\"level\":\"community\","
      "\"parent\":\"T-S\"},\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[" SQUARE (0, 0, 2, 1) "]}},"
    "{\"type\":\"Feature\",\"properties\":{\"code\":\"T-C-002\",\"name\":\"Left\",\"level\":\"grid\","
      "\"parent\":\"T-C\"},\"geometry\":{\"type\":\"Polygon\",\"coordinates\":["
      SQUARE (0, 0, 1, 1) "," SQUARE (0.4, 0.4, 0.6, 0.6) "]}},"
    "{\"type\":\"Feature\",\"properties\":{\"code\":\"T-C-001\",\"name\":\"Right\",\"level\":\"grid\","
      "\"parent\":\"T-C\"},\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[" SQUARE (1, 0, 2, 1) "]}},"
    "{\"type\":\"Feature\",\"properties\":{\"code\":\"T-C-003\",\"name\":\"Islands\",\"level\":\"grid\","
      "\"parent\":\"T-C\"},\"geometry\":{\"type\":\"MultiPolygon\",\"coordinates\":["
      "[" SQUARE (5, 5, 6, 6) "],[" SQUARE (8, 5, 9, 6) "]]}},"
    "{\"type\":\"Feature\",\"properties\":{\"code\":\"T-C-001-B7\",\"name\":\"Building 7\","
      "\"level\":\"building\",\"parent\":\"T-C-001\"}}"
    "]}";

static grid_index_t *
s_load (const char *text)
{
    char err [256];
    grid_index_t *index = grid_index_from_geojson (text, strlen (text), err, sizeof err);
    if (!index)
        fail_msg ("load failed: %s", err);
    return index;
}

static char *
s_read_source_file (const char *relative, size_t *len)
{
    const char *root = getenv ("CIVICBUS_SOURCE_DIR");
#ifdef CIVICBUS_SOURCE_DIR
    if (!root)
        root = CIVICBUS_SOURCE_DIR;
#endif
    assert_non_null (root);
    char path [1024];
    snprintf (path, sizeof path, "%s/%s", root, relative);
    FILE *file = fopen (path, "rb");
    if (!file)
        fail_msg ("cannot open %s", path);
    fseek (file, 0, SEEK_END);
    long size = ftell (file);
    fseek (file, 0, SEEK_SET);
    char *text = malloc ((size_t) size + 1);
    assert_non_null (text);
    assert_int_equal (fread (text, 1, (size_t) size, file), (size_t) size);
    text [size] = 0;
    fclose (file);
    *len = (size_t) size;
    return text;
}

static grid_index_t *
s_load_demo (void)
{
    size_t len;
    char *text = s_read_source_file ("deploy/config/grids.geojson", &len);
    char err [256];
    grid_index_t *index = grid_index_from_geojson (text, len, err, sizeof err);
    free (text);
    if (!index)
        fail_msg ("demo grids do not load: %s", err);
    return index;
}

static void
test_hierarchy_paths (void **state)
{
    (void) state;
    grid_index_t *index = s_load (s_town);
    assert_int_equal (grid_index_count (index), 3);
    assert_int_equal (grid_index_area_count (index), 7);

    grid_hit_t hit;
    assert_int_equal (grid_index_path (index, "T-C-002", &hit), 0);
    assert_string_equal (hit.code, "T-C-002");
    assert_int_equal (hit.depth, 4);
    const char *codes [] = { "T", "T-S", "T-C", "T-C-002" };
    const char *names [] = { "Town", "Street", "社区", "Left" };
    const char *levels [] = { "district", "street", "community", "grid" };
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal (hit.path [i].code, codes [i]);
        assert_string_equal (hit.path [i].name, names [i]);
        assert_string_equal (hit.path [i].level, levels [i]);
    }
    const char *path [GRID_PATH_MAX];
    assert_int_equal (grid_hit_codes (&hit, path, GRID_PATH_MAX), 4);
    assert_string_equal (path [0], "T");
    assert_string_equal (path [3], "T-C-002");
    assert_int_equal (grid_hit_codes (&hit, path, 2), 2);

    //  a building below a grid: addressable by code, five levels deep
    assert_int_equal (grid_index_path (index, "T-C-001-B7", &hit), 0);
    assert_int_equal (hit.depth, 5);
    assert_string_equal (hit.path [3].code, "T-C-001");
    assert_string_equal (hit.path [4].level, "building");

    //  a level above the grids, and the top
    assert_int_equal (grid_index_path (index, "T-S", &hit), 0);
    assert_int_equal (hit.depth, 2);
    assert_string_equal (hit.code, "T-S");
    assert_int_equal (grid_index_path (index, "T", &hit), 0);
    assert_int_equal (hit.depth, 1);

    assert_int_equal (grid_index_path (index, "T-C-404", &hit), -1);
    assert_int_equal (grid_index_path (index, "", &hit), -1);
    assert_int_equal (grid_index_path (index, NULL, &hit), -1);
    grid_index_destroy (&index);
    assert_null (index);
    grid_index_destroy (&index);
}

static void
test_locate_points (void **state)
{
    (void) state;
    grid_index_t *index = s_load (s_town);
    grid_hit_t hit;
    //  inside each grid
    assert_int_equal (grid_index_locate (index, 0.5, 0.2, &hit), 0);
    assert_string_equal (hit.code, "T-C-002");
    assert_int_equal (hit.depth, 4);
    assert_string_equal (hit.path [2].code, "T-C");
    assert_int_equal (grid_index_locate (index, 0.5, 1.7, &hit), 0);
    assert_string_equal (hit.code, "T-C-001");
    //  both parts of a MultiPolygon
    assert_int_equal (grid_index_locate (index, 5.5, 5.5, &hit), 0);
    assert_string_equal (hit.code, "T-C-003");
    assert_int_equal (grid_index_locate (index, 5.5, 8.5, &hit), 0);
    assert_string_equal (hit.code, "T-C-003");
    //  between the two parts, inside the bounding box of the index
    assert_int_equal (grid_index_locate (index, 5.5, 7.0, &hit), -1);
    //  in the hole of T-C-002
    assert_int_equal (grid_index_locate (index, 0.5, 0.5, &hit), -1);
    //  on the hole's edge: the closure of T-C-002 holds it
    assert_int_equal (grid_index_locate (index, 0.4, 0.5, &hit), 0);
    assert_string_equal (hit.code, "T-C-002");
    //  on the shared edge lon = 1, and on shared corners: smallest code
    for (int i = 0; i < 3; i++) {
        double lat = i * 0.5;
        assert_int_equal (grid_index_locate (index, lat, 1.0, &hit), 0);
        assert_string_equal (hit.code, "T-C-001");
    }
    //  on an edge nobody shares
    assert_int_equal (grid_index_locate (index, 0.5, 0.0, &hit), 0);
    assert_string_equal (hit.code, "T-C-002");
    //  outside, and not a coordinate
    assert_int_equal (grid_index_locate (index, -0.001, 0.5, &hit), -1);
    assert_int_equal (grid_index_locate (index, 40.0, 116.4, &hit), -1);
    assert_int_equal (grid_index_locate (index, NAN, 0.5, &hit), -1);
    assert_int_equal (grid_index_locate (index, 0.5, INFINITY, &hit), -1);

    double min_lat, min_lon, max_lat, max_lon;
    assert_int_equal (grid_index_bounds (index, &min_lat, &min_lon, &max_lat, &max_lon), 0);
    assert_true (min_lat == 0 && min_lon == 0 && max_lat == 6 && max_lon == 9);
    grid_index_destroy (&index);
}

static void
test_centroids (void **state)
{
    (void) state;
    //  A U shape: its centroid (about lon 1.5, lat 1.1) falls in the gap.
    const char *u_shape =
        "{\"type\":\"FeatureCollection\",\"features\":["
        "{\"type\":\"Feature\",\"properties\":{\"code\":\"U\",\"name\":\"U\",\"level\":\"grid\"},"
        "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[3,0],[3,3],[2,3],[2,1],"
        "[1,1],[1,3],[0,3],[0,0]]]}}]}";
    grid_index_t *index = s_load (u_shape);
    double lat, lon;
    assert_int_equal (grid_index_centroid (index, "U", &lat, &lon), 0);
    assert_false (lon > 1 && lon < 2 && lat > 1);   //  not in the gap
    grid_hit_t hit;
    assert_int_equal (grid_index_locate (index, lat, lon, &hit), 0);
    assert_string_equal (hit.code, "U");
    assert_int_equal (hit.depth, 1);
    grid_index_destroy (&index);

    index = s_load (s_town);
    assert_int_equal (grid_index_centroid (index, "T-C-001", &lat, &lon), 0);
    assert_true (fabs (lat - 0.5) < 1e-9 && fabs (lon - 1.5) < 1e-9);
    //  a square with a hole in the middle: the centroid is in the hole
    assert_int_equal (grid_index_centroid (index, "T-C-002", &lat, &lon), 0);
    assert_int_equal (grid_index_locate (index, lat, lon, &hit), 0);
    assert_string_equal (hit.code, "T-C-002");
    //  a community with a geometry has one; areas without geometry do not
    assert_int_equal (grid_index_centroid (index, "T-C", &lat, &lon), 0);
    assert_true (fabs (lon - 1.0) < 1e-9);
    assert_int_equal (grid_index_centroid (index, "T-S", &lat, &lon), -1);
    assert_int_equal (grid_index_centroid (index, "T-C-001-B7", &lat, &lon), -1);
    assert_int_equal (grid_index_centroid (index, "nope", &lat, &lon), -1);
    grid_index_destroy (&index);
}

//  One bad file per row: what is wrong, and a piece of the error it must give.
typedef struct {
    const char *geojson;
    const char *error;
} bad_case_t;

#define FEATURE(props, geometry) \
    "{\"type\":\"Feature\",\"properties\":{" props "},\"geometry\":" geometry "}"
#define GRID(code, parent, square) \
    FEATURE ("\"code\":\"" code "\",\"name\":\"g\",\"level\":\"grid\",\"parent\":" parent, \
             "{\"type\":\"Polygon\",\"coordinates\":[" square "]}")
#define AREA(code, level, parent) \
    FEATURE ("\"code\":\"" code "\",\"name\":\"a\",\"level\":\"" level "\",\"parent\":" parent, "null")
#define COLLECTION(...) "{\"type\":\"FeatureCollection\",\"features\":[" __VA_ARGS__ "]}"

static void
test_invalid_geojson (void **state)
{
    (void) state;
    const bad_case_t cases [] = {
        { "{\"type\":\"FeatureCollection\",", "line 1" },
        { "[]", "not a GeoJSON FeatureCollection" },
        { "{\"type\":\"Feature\",\"features\":[]}", "not a GeoJSON FeatureCollection" },
        { COLLECTION (), "no feature at level 'grid'" },
        { COLLECTION (AREA ("D", "district", "null")), "no feature at level 'grid'" },
        { COLLECTION ("{\"type\":\"Point\"}"), "features[0]: not a GeoJSON Feature" },
        { COLLECTION (GRID ("A", "null", SQUARE (0, 0, 1, 1)) ","
                      FEATURE ("\"name\":\"x\",\"level\":\"grid\"", "null")),
          "features[1]: property 'code' is missing" },
        { COLLECTION (FEATURE ("\"code\":12,\"name\":\"x\",\"level\":\"grid\"", "null")),
          "features[0]: property 'code' must be a string" },
        { COLLECTION (FEATURE ("\"code\":\"a b\",\"name\":\"x\",\"level\":\"grid\"", "null")),
          "features[0]: property 'code' must be a string" },
        { COLLECTION (FEATURE ("\"code\":\"A\",\"level\":\"grid\"", "null")),
          "features[0] (code 'A'): property 'name'" },
        { COLLECTION (FEATURE ("\"code\":\"A\",\"name\":\"x\",\"level\":\"estate\"", "null")),
          "features[0] (code 'A'): property 'level' must be one of" },
        { COLLECTION (AREA ("A", "grid", "null")),
          "features[0] (code 'A'): a grid needs a Polygon or MultiPolygon geometry" },
        { COLLECTION (GRID ("A", "null", SQUARE (0, 0, 1, 1)) "," GRID ("A", "null", SQUARE (1, 0, 2, 1))),
          "features[1] (code 'A'): duplicate code, first declared at features[0]" },
        { COLLECTION (GRID ("A", "\"ZZ\"", SQUARE (0, 0, 1, 1))),
          "features[0] (code 'A'): parent 'ZZ' is not declared" },
        { COLLECTION (AREA ("S1", "street", "\"S2\"") "," AREA ("S2", "street", "\"S1\"") ","
                      GRID ("A", "\"S1\"", SQUARE (0, 0, 1, 1))),
          "parent chain forms a cycle: S1 -> S2 -> S1" },
        { COLLECTION (AREA ("S1", "street", "\"S1\"") "," GRID ("A", "null", SQUARE (0, 0, 1, 1))),
          "features[0] (code 'S1'): parent chain forms a cycle: S1 -> S1" },
        { COLLECTION (AREA ("D", "district", "\"S\"") "," AREA ("S", "street", "null") ","
                      GRID ("A", "\"S\"", SQUARE (0, 0, 1, 1))),
          "features[0] (code 'D'): parent 'S' is a street, not above a district" },
        { COLLECTION (GRID ("A", "null", "[[0,0],[1,0],[1,1],[0,1]]")),
          "features[0] (code 'A'): polygon 0 ring 0 is not closed" },
        { COLLECTION (GRID ("A", "null", "[[0,0],[1,0],[0,0]]")),
          "features[0] (code 'A'): polygon 0 ring 0 needs at least 4 positions" },
        { COLLECTION (GRID ("A", "null", "[[0,0],[1,1],[1,0],[0,1],[0,0]]")),
          "features[0] (code 'A'): invalid geometry: Self-intersection" },
        { COLLECTION (GRID ("A", "null", "[[0,0],[200,0],[200,1],[0,1],[0,0]]")),
          "features[0] (code 'A'): polygon 0 ring 0 position 1 is not a [lon, lat]" },
        { COLLECTION (GRID ("A", "null", "[[0,0],[\"1\",0],[1,1],[0,1],[0,0]]")),
          "position 1 is not a [lon, lat]" },
        { COLLECTION (FEATURE ("\"code\":\"A\",\"name\":\"x\",\"level\":\"grid\"",
                               "{\"type\":\"Point\",\"coordinates\":[0,0]}")),
          "features[0] (code 'A'): geometry type 'Point' is not Polygon or MultiPolygon" },
        { COLLECTION (GRID ("A", "null", SQUARE (0, 0, 2, 2)) "," GRID ("B", "null", SQUARE (1, 1, 3, 3))),
          "features[0] (code 'A'): overlaps grid 'B' (features[1])" },
        { COLLECTION (GRID ("A", "null", SQUARE (0, 0, 1, 1)) "," GRID ("B", "\"A\"", SQUARE (1, 0, 2, 1))),
          "features[1] (code 'B'): parent 'A' is a grid, not above a grid" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char err [256] = "untouched";
        grid_index_t *index = grid_index_from_geojson (cases [i].geojson, strlen (cases [i].geojson),
                                                       err, sizeof err);
        if (index || !strstr (err, cases [i].error)) {
            grid_index_destroy (&index);
            fail_msg ("case %zu: want error containing \"%s\", got \"%s\"", i, cases [i].error, err);
        }
    }
    //  errors without an error buffer are still refused
    const char *bad = COLLECTION (AREA ("A", "grid", "null"));
    assert_null (grid_index_from_geojson (bad, strlen (bad), NULL, 0));
}

//  Points in specific demo grids, their paths, shared edges, and outside.
static void
test_demo_city (void **state)
{
    (void) state;
    grid_index_t *index = s_load_demo ();
    assert_true (grid_index_count (index) >= 600);
    assert_int_equal (grid_index_count (index), 794);
    assert_int_equal (grid_index_area_count (index), 1 + 6 + 62 + 794);

    grid_hit_t hit;
    assert_int_equal (grid_index_locate (index, 32.029, 118.731, &hit), 0);
    assert_string_equal (hit.code, "320105001001001");
    assert_int_equal (hit.depth, 4);
    assert_string_equal (hit.path [0].code, "320105");
    assert_string_equal (hit.path [0].name, "建邺区");
    assert_string_equal (hit.path [1].code, "320105001");
    assert_string_equal (hit.path [1].name, "南苑街道");
    assert_string_equal (hit.path [2].code, "320105001001");
    assert_string_equal (hit.path [2].name, "吉庆社区");
    assert_string_equal (hit.path [3].name, "吉庆社区第1网格");

    assert_int_equal (grid_index_locate (index, 32.049, 118.681, &hit), 0);
    assert_string_equal (hit.code, "320105006001001");
    assert_string_equal (hit.path [1].name, "江心洲街道");

    assert_int_equal (grid_index_locate (index, 32.045, 118.7555, &hit), 0);
    assert_string_equal (hit.code, "320105003005007");
    assert_string_equal (hit.path [1].name, "莫愁湖街道");
    assert_string_equal (hit.path [2].name, "北圩社区");

    //  the edge lon 118.7325 between grids 001 and 002 of 吉庆社区
    assert_int_equal (grid_index_locate (index, 32.029, 118.7325, &hit), 0);
    assert_string_equal (hit.code, "320105001001001");
    //  the border between streets 兴隆 (002) and 南苑 (001) at lon 118.73
    assert_int_equal (grid_index_locate (index, 32.02, 118.73, &hit), 0);
    assert_string_equal (hit.path [1].code, "320105001");

    //  just outside the district, and far away
    assert_int_equal (grid_index_locate (index, 32.0, 118.7601, &hit), -1);
    assert_int_equal (grid_index_locate (index, 31.9799, 118.70, &hit), -1);
    assert_int_equal (grid_index_locate (index, 39.9, 116.4, &hit), -1);

    //  every grid's centroid locates back to that grid, under the district
    size_t grids = 0;
    for (int street = 1; street <= 6; street++)
        for (int community = 1; community <= 12; community++)
            for (int grid = 1; grid <= 16; grid++) {
                char code [GRID_CODE_MAX];
                snprintf (code, sizeof code, "320105%03d%03d%03d", street, community, grid);
                double lat, lon;
                if (grid_index_centroid (index, code, &lat, &lon) != 0)
                    continue;
                grids++;
                assert_int_equal (grid_index_locate (index, lat, lon, &hit), 0);
                assert_string_equal (hit.code, code);
                assert_string_equal (hit.path [0].code, "320105");
                assert_int_equal (hit.depth, 4);
            }
    assert_int_equal (grids, 794);

    double min_lat, min_lon, max_lat, max_lon;
    assert_int_equal (grid_index_bounds (index, &min_lat, &min_lon, &max_lat, &max_lon), 0);
    assert_true (fabs (min_lat - 31.98) < 1e-9 && fabs (max_lat - 32.05) < 1e-9);
    assert_true (fabs (min_lon - 118.68) < 1e-9 && fabs (max_lon - 118.76) < 1e-9);
    grid_index_destroy (&index);
}

typedef struct {
    const grid_index_t *index;
    const double *lats, *lons;
    const char (*codes) [GRID_CODE_MAX];
    size_t count;
    size_t offset;
    size_t wrong;
} worker_t;

static void *
s_worker (void *arg)
{
    worker_t *worker = arg;
    grid_hit_t hit;
    for (size_t round = 0; round < 25; round++)
        for (size_t k = 0; k < worker->count; k++) {
            size_t i = (k + worker->offset) % worker->count;
            if (grid_index_locate (worker->index, worker->lats [i], worker->lons [i], &hit) != 0
                || strcmp (hit.code, worker->codes [i]) != 0 || hit.depth != 4)
                worker->wrong++;
        }
    return NULL;
}

//  Four threads look up all demo grids at once, each starting elsewhere;
//  every answer must be right (run under the sanitizers, races would show).
static void
test_concurrent_lookups (void **state)
{
    (void) state;
    grid_index_t *index = s_load_demo ();
    size_t count = 0;
    double *lats = calloc (800, sizeof (double));
    double *lons = calloc (800, sizeof (double));
    char (*codes) [GRID_CODE_MAX] = calloc (800, GRID_CODE_MAX);
    assert_true (lats && lons && codes);
    for (int street = 1; street <= 6; street++)
        for (int community = 1; community <= 12; community++)
            for (int grid = 1; grid <= 16; grid++) {
                snprintf (codes [count], GRID_CODE_MAX, "320105%03d%03d%03d", street, community, grid);
                if (grid_index_centroid (index, codes [count], &lats [count], &lons [count]) == 0)
                    count++;
            }
    assert_int_equal (count, 794);
    worker_t workers [4];
    pthread_t threads [4];
    for (size_t t = 0; t < 4; t++) {
        workers [t] = (worker_t) { index, lats, lons, codes, count, t * 199, 0 };
        assert_int_equal (pthread_create (&threads [t], NULL, s_worker, &workers [t]), 0);
    }
    for (size_t t = 0; t < 4; t++) {
        assert_int_equal (pthread_join (threads [t], NULL), 0);
        assert_int_equal (workers [t].wrong, 0);
    }
    free (lats);
    free (lons);
    free (codes);
    grid_index_destroy (&index);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_hierarchy_paths),
        cmocka_unit_test (test_locate_points),
        cmocka_unit_test (test_centroids),
        cmocka_unit_test (test_invalid_geojson),
        cmocka_unit_test (test_demo_city),
        cmocka_unit_test (test_concurrent_lookups),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
