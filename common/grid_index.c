/*  grid_index.c — point-in-grid lookups with GEOS, and area paths (see
    grid_index.h).

    Loading parses the GeoJSON with jansson in a private GEOS context, checks
    everything a bad file could get wrong, and keeps per area only what a
    lookup needs: code, name, level, parent, a representative point, and for
    grids the polygon as WKB. Lookups never touch the loading context.

    Lookups run in lanes. A lane is one GEOS context with its own geometries
    (read back from the WKB), prepared geometries and STRtree, used by one
    thread at a time under the lane's mutex. GEOS keeps mutable state behind
    const-looking calls (the STRtree is built on the first query, a prepared
    polygon builds its point locator on the first test, the geometry factory
    counts references), so sharing one set between threads would race; a
    lane per CPU avoids both the race and most of the waiting, at the cost of
    one copy of the geometries per lane. */

#include "civicbus/grid_index.h"

#include <geos_c.h>
#include <jansson.h>

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NO_PARENT   SIZE_MAX
#define LANES_MAX   16
#define GEOS_ERROR_MAX  256

typedef enum {
    LEVEL_DISTRICT, LEVEL_STREET, LEVEL_COMMUNITY, LEVEL_GRID,
    LEVEL_BUILDING, LEVEL_FLOOR, LEVEL_COUNT
} level_t;

static const char *const s_level_names [LEVEL_COUNT] = {
    "district", "street", "community", "grid", "building", "floor"
};

_Static_assert (LEVEL_COUNT <= GRID_PATH_MAX, "a path must hold every level");

typedef struct {
    char *code;
    char *name;
    level_t level;
    size_t feature;             //  index in the file, for error messages
    char *parent_code;          //  NULL for a top area; freed after loading
    size_t parent;              //  index in areas, or NO_PARENT
    bool has_point;             //  the area has a geometry
    double point_lat, point_lon;
    unsigned char *wkb;         //  grids: the polygon, for building lanes
    size_t wkb_size;
    GEOSGeometry *loaded;       //  in the loading context; NULL after loading
} area_t;

typedef struct {
    pthread_mutex_t lock;
    bool ready;
    GEOSContextHandle_t ctx;
    GEOSGeometry **geometries;              //  one per grid, in grid order
    const GEOSPreparedGeometry **prepared;
    GEOSSTRtree *tree;
    size_t *candidates;                     //  scratch for one query
    size_t candidate_count;
    size_t candidate_cap;
    bool candidate_overflow;
    char error [GEOS_ERROR_MAX];
} lane_t;

struct _grid_index_t {
    area_t *areas;              //  sorted by code
    size_t area_count;
    size_t *grids;              //  area index of each grid, ascending code
    size_t grid_count;
    double min_lat, min_lon, max_lat, max_lon;
    lane_t *lanes;
    size_t lane_count;
};

//  State of one load, so helpers can report errors with the feature's name.
typedef struct {
    GEOSContextHandle_t ctx;
    char geos_error [GEOS_ERROR_MAX];
    char *err;
    size_t errcap;
} loader_t;

/* ---- private ---- */

static void
s_fail (char *err, size_t errcap, const char *format, ...)
{
    if (!err || errcap == 0)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (err, errcap, format, args);
    va_end (args);
}

static void
s_geos_message (const char *message, void *buffer)
{
    snprintf ((char *) buffer, GEOS_ERROR_MAX, "%s", message);
}

static void
s_geos_notice (const char *message, void *unused)
{
    (void) message;
    (void) unused;
}

static void
s_ignore_item (void *item, void *unused)
{
    (void) item;
    (void) unused;
}

static GEOSContextHandle_t
s_context_new (char *error_buffer)
{
    GEOSContextHandle_t ctx = GEOS_init_r ();
    if (ctx) {
        GEOSContext_setErrorMessageHandler_r (ctx, s_geos_message, error_buffer);
        GEOSContext_setNoticeMessageHandler_r (ctx, s_geos_notice, NULL);
    }
    return ctx;
}

//  Codes become Redis keys, path prefixes in catalogue rules and log fields:
//  keep them to a safe alphabet.
static bool
s_code_is_valid (const char *code)
{
    size_t len = strlen (code);
    if (len == 0 || len >= GRID_CODE_MAX)
        return false;
    for (const char *p = code; *p; p++) {
        char c = *p;
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int
s_level_from_name (const char *name)
{
    for (int level = 0; level < LEVEL_COUNT; level++)
        if (strcmp (name, s_level_names [level]) == 0)
            return level;
    return -1;
}

static int
s_area_compare (const void *a, const void *b)
{
    const area_t *left = a, *right = b;
    int order = strcmp (left->code, right->code);
    if (order)
        return order;
    return left->feature < right->feature ? -1 : left->feature > right->feature;
}

static int
s_area_key_compare (const void *key, const void *element)
{
    return strcmp ((const char *) key, ((const area_t *) element)->code);
}

static const area_t *
s_area_find (const grid_index_t *self, const char *code)
{
    return bsearch (code, self->areas, self->area_count, sizeof (area_t), s_area_key_compare);
}

//  Reads one GeoJSON position into *lon, *lat. Returns 0 or -1.
static int
s_position_read (json_t *position, double *lon, double *lat)
{
    if (!json_is_array (position) || json_array_size (position) < 2
        || json_array_size (position) > 3)
        return -1;
    for (size_t i = 0; i < json_array_size (position); i++)
        if (!json_is_number (json_array_get (position, i)))
            return -1;
    *lon = json_number_value (json_array_get (position, 0));
    *lat = json_number_value (json_array_get (position, 1));
    if (!isfinite (*lon) || !isfinite (*lat)
        || *lon < -180 || *lon > 180 || *lat < -90 || *lat > 90)
        return -1;
    return 0;
}

//  A closed ring of at least four positions as a GEOS linear ring, or NULL
//  with the reason in err after `where`.
static GEOSGeometry *
s_ring_from_json (loader_t *loader, json_t *ring, const char *where,
                  size_t polygon, size_t index)
{
    size_t size = json_array_size (ring);
    if (!json_is_array (ring) || size < 4) {
        s_fail (loader->err, loader->errcap,
                "%s: polygon %zu ring %zu needs at least 4 positions", where, polygon, index);
        return NULL;
    }
    GEOSCoordSequence *sequence = GEOSCoordSeq_create_r (loader->ctx, (unsigned) size, 2);
    if (!sequence) {
        s_fail (loader->err, loader->errcap, "%s: %s", where, loader->geos_error);
        return NULL;
    }
    double first_lon = 0, first_lat = 0;
    for (size_t i = 0; i < size; i++) {
        double lon, lat;
        if (s_position_read (json_array_get (ring, i), &lon, &lat) != 0) {
            s_fail (loader->err, loader->errcap,
                    "%s: polygon %zu ring %zu position %zu is not a [lon, lat] inside WGS-84",
                    where, polygon, index, i);
            GEOSCoordSeq_destroy_r (loader->ctx, sequence);
            return NULL;
        }
        if (i == 0) {
            first_lon = lon;
            first_lat = lat;
        }
        else
        if (i == size - 1 && (lon != first_lon || lat != first_lat)) {
            s_fail (loader->err, loader->errcap,
                    "%s: polygon %zu ring %zu is not closed (last position differs from first)",
                    where, polygon, index);
            GEOSCoordSeq_destroy_r (loader->ctx, sequence);
            return NULL;
        }
        GEOSCoordSeq_setXY_r (loader->ctx, sequence, (unsigned) i, lon, lat);
    }
    //  Takes the sequence, also when it fails.
    GEOSGeometry *linear_ring = GEOSGeom_createLinearRing_r (loader->ctx, sequence);
    if (!linear_ring)
        s_fail (loader->err, loader->errcap, "%s: polygon %zu ring %zu: %s",
                where, polygon, index, loader->geos_error);
    return linear_ring;
}

static GEOSGeometry *
s_polygon_from_json (loader_t *loader, json_t *rings, const char *where, size_t polygon)
{
    size_t ring_count = json_array_size (rings);
    if (!json_is_array (rings) || ring_count == 0) {
        s_fail (loader->err, loader->errcap,
                "%s: polygon %zu must be an array of rings", where, polygon);
        return NULL;
    }
    GEOSGeometry *shell = s_ring_from_json (loader, json_array_get (rings, 0), where, polygon, 0);
    if (!shell)
        return NULL;
    GEOSGeometry **holes = calloc (ring_count, sizeof (GEOSGeometry *));
    if (!holes) {
        GEOSGeom_destroy_r (loader->ctx, shell);
        s_fail (loader->err, loader->errcap, "%s: out of memory", where);
        return NULL;
    }
    size_t hole_count = 0;
    for (size_t i = 1; i < ring_count; i++) {
        holes [hole_count] = s_ring_from_json (loader, json_array_get (rings, i), where, polygon, i);
        if (!holes [hole_count]) {
            for (size_t j = 0; j < hole_count; j++)
                GEOSGeom_destroy_r (loader->ctx, holes [j]);
            GEOSGeom_destroy_r (loader->ctx, shell);
            free (holes);
            return NULL;
        }
        hole_count++;
    }
    //  Takes shell and holes (not the array).
    GEOSGeometry *result = GEOSGeom_createPolygon_r (loader->ctx, shell, holes,
                                                      (unsigned) hole_count);
    free (holes);
    if (!result)
        s_fail (loader->err, loader->errcap, "%s: polygon %zu: %s", where, polygon,
                loader->geos_error);
    return result;
}

//  A Polygon or MultiPolygon GeoJSON geometry as a valid GEOS geometry, or
//  NULL with the reason.
static GEOSGeometry *
s_geometry_from_json (loader_t *loader, json_t *geometry, const char *where)
{
    const char *type = json_string_value (json_object_get (geometry, "type"));
    json_t *coordinates = json_object_get (geometry, "coordinates");
    if (!type || !json_is_array (coordinates)) {
        s_fail (loader->err, loader->errcap,
                "%s: geometry needs a 'type' and a 'coordinates' array", where);
        return NULL;
    }
    GEOSGeometry *result = NULL;
    if (strcmp (type, "Polygon") == 0)
        result = s_polygon_from_json (loader, coordinates, where, 0);
    else
    if (strcmp (type, "MultiPolygon") == 0) {
        size_t count = json_array_size (coordinates);
        if (count == 0) {
            s_fail (loader->err, loader->errcap, "%s: MultiPolygon without polygons", where);
            return NULL;
        }
        GEOSGeometry **polygons = calloc (count, sizeof (GEOSGeometry *));
        if (!polygons) {
            s_fail (loader->err, loader->errcap, "%s: out of memory", where);
            return NULL;
        }
        for (size_t i = 0; i < count; i++) {
            polygons [i] = s_polygon_from_json (loader, json_array_get (coordinates, i), where, i);
            if (!polygons [i]) {
                for (size_t j = 0; j < i; j++)
                    GEOSGeom_destroy_r (loader->ctx, polygons [j]);
                free (polygons);
                return NULL;
            }
        }
        result = GEOSGeom_createCollection_r (loader->ctx, GEOS_MULTIPOLYGON,
                                              polygons, (unsigned) count);
        free (polygons);
        if (!result)
            s_fail (loader->err, loader->errcap, "%s: %s", where, loader->geos_error);
    }
    else
        s_fail (loader->err, loader->errcap,
                "%s: geometry type '%s' is not Polygon or MultiPolygon", where, type);
    if (!result)
        return NULL;

    char valid = GEOSisValid_r (loader->ctx, result);
    if (valid != 1) {
        char *reason = valid == 0? GEOSisValidReason_r (loader->ctx, result): NULL;
        s_fail (loader->err, loader->errcap, "%s: invalid geometry: %s", where,
                reason? reason: loader->geos_error);
        if (reason)
            GEOSFree_r (loader->ctx, reason);
        GEOSGeom_destroy_r (loader->ctx, result);
        return NULL;
    }
    return result;
}

//  The centroid, or a point on the surface when the centroid is outside.
static int
s_representative_point (loader_t *loader, const GEOSGeometry *geometry, double *lat, double *lon)
{
    GEOSGeometry *point = GEOSGetCentroid_r (loader->ctx, geometry);
    if (point && GEOSContains_r (loader->ctx, geometry, point) != 1) {
        GEOSGeom_destroy_r (loader->ctx, point);
        point = GEOSPointOnSurface_r (loader->ctx, geometry);
    }
    if (!point)
        return -1;
    int rc = GEOSGeomGetX_r (loader->ctx, point, lon) == 1
          && GEOSGeomGetY_r (loader->ctx, point, lat) == 1? 0: -1;
    GEOSGeom_destroy_r (loader->ctx, point);
    return rc;
}

static int
s_wkb_store (loader_t *loader, area_t *area)
{
    GEOSWKBWriter *writer = GEOSWKBWriter_create_r (loader->ctx);
    if (!writer)
        return -1;
    size_t size = 0;
    unsigned char *buffer = GEOSWKBWriter_write_r (loader->ctx, writer, area->loaded, &size);
    GEOSWKBWriter_destroy_r (loader->ctx, writer);
    if (!buffer)
        return -1;
    area->wkb = malloc (size);
    if (area->wkb) {
        memcpy (area->wkb, buffer, size);
        area->wkb_size = size;
    }
    GEOSFree_r (loader->ctx, buffer);
    return area->wkb? 0: -1;
}

//  Reads one feature into *area (fields owned by area, freed by the caller
//  on failure too).
static int
s_feature_read (loader_t *loader, json_t *feature, size_t index, area_t *area)
{
    area->feature = index;
    area->parent = NO_PARENT;
    if (!json_is_object (feature)
        || !json_is_string (json_object_get (feature, "type"))
        || strcmp (json_string_value (json_object_get (feature, "type")), "Feature") != 0) {
        s_fail (loader->err, loader->errcap, "features[%zu]: not a GeoJSON Feature", index);
        return -1;
    }
    json_t *properties = json_object_get (feature, "properties");
    if (!json_is_object (properties)) {
        s_fail (loader->err, loader->errcap, "features[%zu]: 'properties' must be an object", index);
        return -1;
    }
    json_t *code = json_object_get (properties, "code");
    if (!code) {
        s_fail (loader->err, loader->errcap, "features[%zu]: property 'code' is missing", index);
        return -1;
    }
    if (!json_is_string (code) || !s_code_is_valid (json_string_value (code))) {
        s_fail (loader->err, loader->errcap,
                "features[%zu]: property 'code' must be a string of 1 to %d characters "
                "from [0-9A-Za-z._-]", index, GRID_CODE_MAX - 1);
        return -1;
    }
    area->code = strdup (json_string_value (code));
    if (!area->code) {
        s_fail (loader->err, loader->errcap, "out of memory");
        return -1;
    }
    char where [GRID_CODE_MAX + 40];
    snprintf (where, sizeof where, "features[%zu] (code '%s')", index, area->code);

    json_t *name = json_object_get (properties, "name");
    if (!json_is_string (name) || json_string_length (name) == 0
        || json_string_length (name) >= GRID_NAME_MAX) {
        s_fail (loader->err, loader->errcap,
                "%s: property 'name' must be a string of 1 to %d bytes", where, GRID_NAME_MAX - 1);
        return -1;
    }
    area->name = strdup (json_string_value (name));
    const char *level_name = json_string_value (json_object_get (properties, "level"));
    int level = level_name? s_level_from_name (level_name): -1;
    if (level < 0) {
        s_fail (loader->err, loader->errcap,
                "%s: property 'level' must be one of district, street, community, grid, "
                "building, floor", where);
        return -1;
    }
    area->level = (level_t) level;
    json_t *parent = json_object_get (properties, "parent");
    if (parent && !json_is_null (parent)) {
        if (!json_is_string (parent) || !s_code_is_valid (json_string_value (parent))) {
            s_fail (loader->err, loader->errcap,
                    "%s: property 'parent' must be an area code or null", where);
            return -1;
        }
        area->parent_code = strdup (json_string_value (parent));
        if (!area->parent_code) {
            s_fail (loader->err, loader->errcap, "out of memory");
            return -1;
        }
    }
    if (!area->name) {
        s_fail (loader->err, loader->errcap, "out of memory");
        return -1;
    }

    json_t *geometry = json_object_get (feature, "geometry");
    if (!geometry || json_is_null (geometry)) {
        if (area->level == LEVEL_GRID) {
            s_fail (loader->err, loader->errcap,
                    "%s: a grid needs a Polygon or MultiPolygon geometry", where);
            return -1;
        }
        return 0;
    }
    if (!json_is_object (geometry)) {
        s_fail (loader->err, loader->errcap, "%s: 'geometry' must be an object or null", where);
        return -1;
    }
    area->loaded = s_geometry_from_json (loader, geometry, where);
    if (!area->loaded)
        return -1;
    if (s_representative_point (loader, area->loaded, &area->point_lat, &area->point_lon) != 0
        || (area->level == LEVEL_GRID && s_wkb_store (loader, area) != 0)) {
        s_fail (loader->err, loader->errcap, "%s: %s", where,
                *loader->geos_error? loader->geos_error: "out of memory");
        return -1;
    }
    area->has_point = true;
    return 0;
}

//  Resolves parent codes, then refuses cycles and parents not above their
//  children. Cycles are looked for first, so a loop of equal levels reads as
//  the cycle it is.
static int
s_hierarchy_check (grid_index_t *self, loader_t *loader)
{
    for (size_t i = 0; i < self->area_count; i++) {
        area_t *area = &self->areas [i];
        if (!area->parent_code)
            continue;
        const area_t *parent = s_area_find (self, area->parent_code);
        if (!parent) {
            s_fail (loader->err, loader->errcap,
                    "features[%zu] (code '%s'): parent '%s' is not declared",
                    area->feature, area->code, area->parent_code);
            return -1;
        }
        area->parent = (size_t) (parent - self->areas);
    }
    //  Walks each chain at most once: `seen` holds the index of the walk
    //  that first reached an area (plus one), so meeting the current walk's
    //  own mark again is a cycle, meeting an older walk's mark is not.
    size_t *seen = calloc (self->area_count, sizeof (size_t));
    if (!seen) {
        s_fail (loader->err, loader->errcap, "out of memory");
        return -1;
    }
    for (size_t start = 0; start < self->area_count; start++) {
        size_t at = start;
        while (at != NO_PARENT && seen [at] == 0) {
            seen [at] = start + 1;
            at = self->areas [at].parent;
        }
        if (at != NO_PARENT && seen [at] == start + 1) {
            const area_t *first = &self->areas [at];
            char chain [256] = "";
            size_t used = 0;
            size_t walk = at;
            do {
                int wrote = snprintf (chain + used, sizeof chain - used, "%s -> ",
                                      self->areas [walk].code);
                if (wrote < 0 || (size_t) wrote >= sizeof chain - used)
                    break;
                used += (size_t) wrote;
                walk = self->areas [walk].parent;
            } while (walk != at);
            s_fail (loader->err, loader->errcap,
                    "features[%zu] (code '%s'): parent chain forms a cycle: %s%s",
                    first->feature, first->code, chain, first->code);
            free (seen);
            return -1;
        }
    }
    free (seen);
    for (size_t i = 0; i < self->area_count; i++) {
        const area_t *area = &self->areas [i];
        if (area->parent == NO_PARENT)
            continue;
        const area_t *parent = &self->areas [area->parent];
        if (parent->level >= area->level) {
            s_fail (loader->err, loader->errcap,
                    "features[%zu] (code '%s'): parent '%s' is a %s, not above a %s",
                    area->feature, area->code, parent->code,
                    s_level_names [parent->level], s_level_names [area->level]);
            return -1;
        }
    }
    return 0;
}

typedef struct {
    const grid_index_t *self;
    size_t *found;
    size_t count, cap;
    bool overflow;
} collect_t;

static void
s_collect (void *item, void *collect_p)
{
    collect_t *collect = collect_p;
    if (collect->count == collect->cap) {
        size_t cap = collect->cap? collect->cap * 2: 16;
        size_t *grown = realloc (collect->found, cap * sizeof (size_t));
        if (!grown) {
            collect->overflow = true;
            return;
        }
        collect->found = grown;
        collect->cap = cap;
    }
    collect->found [collect->count++] = (size_t) ((size_t *) item - collect->self->grids);
}

//  Two grids whose interiors share any point make "which grid?" ambiguous
//  beyond edges; refuse them. O(grids x neighbours), a few ms for a city.
static int
s_overlap_check (grid_index_t *self, loader_t *loader)
{
    GEOSSTRtree *tree = GEOSSTRtree_create_r (loader->ctx, 10);
    if (!tree) {
        s_fail (loader->err, loader->errcap, "%s", loader->geos_error);
        return -1;
    }
    for (size_t i = 0; i < self->grid_count; i++)
        GEOSSTRtree_insert_r (loader->ctx, tree, self->areas [self->grids [i]].loaded,
                              &self->grids [i]);
    collect_t collect = { .self = self };
    int rc = 0;
    for (size_t i = 0; i < self->grid_count && rc == 0; i++) {
        const area_t *area = &self->areas [self->grids [i]];
        collect.count = 0;
        GEOSSTRtree_query_r (loader->ctx, tree, area->loaded, s_collect, &collect);
        if (collect.overflow) {
            s_fail (loader->err, loader->errcap, "out of memory");
            rc = -1;
        }
        for (size_t k = 0; k < collect.count && rc == 0; k++) {
            if (collect.found [k] <= i)
                continue;
            const area_t *other = &self->areas [self->grids [collect.found [k]]];
            char overlaps = GEOSRelatePattern_r (loader->ctx, area->loaded, other->loaded,
                                                 "T********");
            if (overlaps != 0) {
                s_fail (loader->err, loader->errcap,
                        "features[%zu] (code '%s'): %s grid '%s' (features[%zu])",
                        area->feature, area->code,
                        overlaps == 1? "overlaps": "cannot be compared with",
                        other->code, other->feature);
                rc = -1;
            }
        }
    }
    free (collect.found);
    GEOSSTRtree_destroy_r (loader->ctx, tree);
    return rc;
}

static void
s_lane_clear (const grid_index_t *self, lane_t *lane)
{
    if (lane->ctx) {
        if (lane->tree)
            GEOSSTRtree_destroy_r (lane->ctx, lane->tree);
        for (size_t i = 0; i < self->grid_count; i++) {
            if (lane->prepared && lane->prepared [i])
                GEOSPreparedGeom_destroy_r (lane->ctx, lane->prepared [i]);
            if (lane->geometries && lane->geometries [i])
                GEOSGeom_destroy_r (lane->ctx, lane->geometries [i]);
        }
        GEOS_finish_r (lane->ctx);
    }
    free (lane->geometries);
    free (lane->prepared);
    free (lane->candidates);
    lane->ctx = NULL;
    lane->tree = NULL;
    lane->geometries = NULL;
    lane->prepared = NULL;
    lane->candidates = NULL;
    lane->candidate_cap = 0;
    lane->ready = false;
}

//  Gives a lane its own copy of every grid, prepared and in an STRtree, and
//  runs one test per grid so the lazily built GEOS indexes exist before the
//  first real lookup. Caller holds the lane's lock.
static int
s_lane_build (const grid_index_t *self, lane_t *lane)
{
    GEOSWKBReader *reader = NULL;
    lane->ctx = s_context_new (lane->error);
    lane->geometries = calloc (self->grid_count, sizeof (GEOSGeometry *));
    lane->prepared = calloc (self->grid_count, sizeof (GEOSPreparedGeometry *));
    lane->candidate_cap = 16;
    lane->candidates = malloc (lane->candidate_cap * sizeof (size_t));
    if (!lane->ctx || !lane->geometries || !lane->prepared || !lane->candidates)
        goto failed;
    lane->tree = GEOSSTRtree_create_r (lane->ctx, 10);
    reader = GEOSWKBReader_create_r (lane->ctx);
    if (!lane->tree || !reader)
        goto failed;
    for (size_t i = 0; i < self->grid_count; i++) {
        const area_t *area = &self->areas [self->grids [i]];
        lane->geometries [i] = GEOSWKBReader_read_r (lane->ctx, reader, area->wkb, area->wkb_size);
        if (lane->geometries [i])
            lane->prepared [i] = GEOSPrepare_r (lane->ctx, lane->geometries [i]);
        if (!lane->prepared [i])
            goto failed;
        GEOSSTRtree_insert_r (lane->ctx, lane->tree, lane->geometries [i],
                              (void *) &self->grids [i]);
    }
    GEOSWKBReader_destroy_r (lane->ctx, reader);
    reader = NULL;
    for (size_t i = 0; i < self->grid_count; i++) {
        const area_t *area = &self->areas [self->grids [i]];
        GEOSGeometry *point = GEOSGeom_createPointFromXY_r (lane->ctx, area->point_lon,
                                                            area->point_lat);
        if (!point)
            goto failed;
        GEOSPreparedIntersects_r (lane->ctx, lane->prepared [i], point);
        if (i == 0)
            GEOSSTRtree_query_r (lane->ctx, lane->tree, point, s_ignore_item, NULL);
        GEOSGeom_destroy_r (lane->ctx, point);
    }
    lane->ready = true;
    return 0;
failed:
    if (reader)
        GEOSWKBReader_destroy_r (lane->ctx, reader);
    s_lane_clear (self, lane);
    return -1;
}

static void
s_lane_candidate (void *item, void *lane_and_self)
{
    void **pair = lane_and_self;
    lane_t *lane = pair [0];
    const grid_index_t *self = pair [1];
    if (lane->candidate_count == lane->candidate_cap) {
        size_t *grown = realloc (lane->candidates, 2 * lane->candidate_cap * sizeof (size_t));
        if (!grown) {
            lane->candidate_overflow = true;
            return;
        }
        lane->candidates = grown;
        lane->candidate_cap *= 2;
    }
    lane->candidates [lane->candidate_count++] = (size_t) ((size_t *) item - self->grids);
}

//  The grid (index into self->grids) holding the point, or -1. Candidates
//  are tested in ascending code order, so the first hit is the smallest code
//  among the grids whose closure holds the point. Caller holds the lane.
static int
s_lane_locate (const grid_index_t *self, lane_t *lane, double lat, double lon, size_t *grid)
{
    GEOSGeometry *point = GEOSGeom_createPointFromXY_r (lane->ctx, lon, lat);
    if (!point)
        return GRID_INDEX_FAILED;
    lane->candidate_count = 0;
    lane->candidate_overflow = false;
    void *pair [2] = { lane, (void *) self };
    GEOSSTRtree_query_r (lane->ctx, lane->tree, point, s_lane_candidate, pair);
    int rc = lane->candidate_overflow? GRID_INDEX_FAILED: -1;
    //  Usually one to four candidates: insertion sort.
    size_t *c = lane->candidates;
    for (size_t i = 1; i < lane->candidate_count; i++)
        for (size_t j = i; j > 0 && c [j - 1] > c [j]; j--) {
            size_t swap = c [j];
            c [j] = c [j - 1];
            c [j - 1] = swap;
        }
    for (size_t i = 0; i < lane->candidate_count && rc == -1; i++)
        if (GEOSPreparedIntersects_r (lane->ctx, lane->prepared [c [i]], point) == 1) {
            *grid = c [i];
            rc = 0;
        }
    GEOSGeom_destroy_r (lane->ctx, point);
    return rc;
}

//  snprintf (dst, cap, "%s", src) without the formatting machinery: the
//  same bytes, truncated the same way. The path fill is most of a lookup's
//  time otherwise (bench-grid_lookup: vfprintf was ~40% of it).
static void
s_copy (char *dst, size_t cap, const char *src)
{
    size_t len = strnlen (src, cap - 1);
    memcpy (dst, src, len);
    dst [len] = 0;
}

static void
s_hit_fill (const grid_index_t *self, size_t area_index, grid_hit_t *hit)
{
    size_t chain [GRID_PATH_MAX];
    size_t depth = 0;
    for (size_t at = area_index; at != NO_PARENT && depth < GRID_PATH_MAX;
         at = self->areas [at].parent)
        chain [depth++] = at;
    memset (hit, 0, sizeof *hit);
    hit->depth = depth;
    for (size_t i = 0; i < depth; i++) {
        const area_t *area = &self->areas [chain [depth - 1 - i]];
        grid_area_t *entry = &hit->path [i];
        s_copy (entry->code, sizeof entry->code, area->code);
        s_copy (entry->name, sizeof entry->name, area->name);
        s_copy (entry->level, sizeof entry->level, s_level_names [area->level]);
    }
    s_copy (hit->code, sizeof hit->code, self->areas [area_index].code);
}

//  Spreads threads over lanes without any shared counter: a hash of the
//  thread's id picks where to start trying.
static size_t
s_lane_start (size_t lane_count)
{
    uint64_t id = (uint64_t) (uintptr_t) pthread_self ();
    return (size_t) ((id * 0x9E3779B97F4A7C15ull) >> 32) % lane_count;
}

static void
s_areas_free (area_t *areas, size_t count, GEOSContextHandle_t ctx)
{
    for (size_t i = 0; i < count; i++) {
        free (areas [i].code);
        free (areas [i].name);
        free (areas [i].parent_code);
        free (areas [i].wkb);
        if (areas [i].loaded)
            GEOSGeom_destroy_r (ctx, areas [i].loaded);
    }
    free (areas);
}

/* ---- public ---- */

grid_index_t *
grid_index_from_geojson (const char *text, size_t len, char *err, size_t errcap)
{
    assert (text || len == 0);
    s_fail (err, errcap, "%s", "");
    json_error_t json_error;
    json_t *root = json_loadb (text, len, JSON_REJECT_DUPLICATES, &json_error);
    if (!root) {
        s_fail (err, errcap, "line %d, column %d: %s",
                json_error.line, json_error.column, json_error.text);
        return NULL;
    }
    json_t *features = json_object_get (root, "features");
    const char *type = json_string_value (json_object_get (root, "type"));
    if (!type || strcmp (type, "FeatureCollection") != 0 || !json_is_array (features)) {
        s_fail (err, errcap, "not a GeoJSON FeatureCollection with a 'features' array");
        json_decref (root);
        return NULL;
    }
    grid_index_t *self = calloc (1, sizeof (grid_index_t));
    loader_t loader = { .err = err, .errcap = errcap };
    loader.ctx = s_context_new (loader.geos_error);
    if (!self || !loader.ctx) {
        s_fail (err, errcap, "out of memory");
        goto failed;
    }
    size_t feature_count = json_array_size (features);
    self->areas = calloc (feature_count? feature_count: 1, sizeof (area_t));
    if (!self->areas) {
        s_fail (err, errcap, "out of memory");
        goto failed;
    }
    for (size_t i = 0; i < feature_count; i++) {
        self->area_count = i + 1;
        if (s_feature_read (&loader, json_array_get (features, i), i, &self->areas [i]) != 0)
            goto failed;
    }
    json_decref (root);
    root = NULL;

    qsort (self->areas, self->area_count, sizeof (area_t), s_area_compare);
    for (size_t i = 1; i < self->area_count; i++)
        if (strcmp (self->areas [i - 1].code, self->areas [i].code) == 0) {
            s_fail (err, errcap, "features[%zu] (code '%s'): duplicate code, first declared "
                    "at features[%zu]", self->areas [i].feature, self->areas [i].code,
                    self->areas [i - 1].feature);
            goto failed;
        }
    if (s_hierarchy_check (self, &loader) != 0)
        goto failed;

    for (size_t i = 0; i < self->area_count; i++)
        if (self->areas [i].level == LEVEL_GRID)
            self->grid_count++;
    if (self->grid_count == 0) {
        s_fail (err, errcap, "no feature at level 'grid'");
        goto failed;
    }
    self->grids = malloc (self->grid_count * sizeof (size_t));
    if (!self->grids) {
        s_fail (err, errcap, "out of memory");
        goto failed;
    }
    self->min_lat = self->min_lon = INFINITY;
    self->max_lat = self->max_lon = -INFINITY;
    for (size_t i = 0, g = 0; i < self->area_count; i++) {
        area_t *area = &self->areas [i];
        if (area->level != LEVEL_GRID)
            continue;
        self->grids [g++] = i;
        double x_min, y_min, x_max, y_max;
        GEOSGeom_getXMin_r (loader.ctx, area->loaded, &x_min);
        GEOSGeom_getYMin_r (loader.ctx, area->loaded, &y_min);
        GEOSGeom_getXMax_r (loader.ctx, area->loaded, &x_max);
        GEOSGeom_getYMax_r (loader.ctx, area->loaded, &y_max);
        self->min_lon = fmin (self->min_lon, x_min);
        self->min_lat = fmin (self->min_lat, y_min);
        self->max_lon = fmax (self->max_lon, x_max);
        self->max_lat = fmax (self->max_lat, y_max);
    }
    if (s_overlap_check (self, &loader) != 0)
        goto failed;
    for (size_t i = 0; i < self->area_count; i++) {
        area_t *area = &self->areas [i];
        free (area->parent_code);
        area->parent_code = NULL;
        if (area->loaded)
            GEOSGeom_destroy_r (loader.ctx, area->loaded);
        area->loaded = NULL;
    }
    GEOS_finish_r (loader.ctx);
    loader.ctx = NULL;

    long cpus = sysconf (_SC_NPROCESSORS_ONLN);
    self->lane_count = cpus < 1? 1: cpus > LANES_MAX? LANES_MAX: (size_t) cpus;
    self->lanes = calloc (self->lane_count, sizeof (lane_t));
    if (!self->lanes) {
        s_fail (err, errcap, "out of memory");
        goto failed;
    }
    for (size_t i = 0; i < self->lane_count; i++)
        pthread_mutex_init (&self->lanes [i].lock, NULL);
    if (s_lane_build (self, &self->lanes [0]) != 0) {
        s_fail (err, errcap, "cannot build the lookup index: %s",
                *self->lanes [0].error? self->lanes [0].error: "out of memory");
        goto failed;
    }
    return self;

failed:
    json_decref (root);
    if (self && loader.ctx) {
        s_areas_free (self->areas, self->area_count, loader.ctx);
        self->areas = NULL;
        self->area_count = 0;
    }
    if (loader.ctx)
        GEOS_finish_r (loader.ctx);
    grid_index_destroy (&self);
    return NULL;
}

void
grid_index_destroy (grid_index_t **self_p)
{
    assert (self_p);
    grid_index_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->lane_count; i++) {
        s_lane_clear (self, &self->lanes [i]);
        pthread_mutex_destroy (&self->lanes [i].lock);
    }
    free (self->lanes);
    //  Geometries of the loading context are gone by now (or were freed
    //  with it on a failed load), so no context is needed.
    s_areas_free (self->areas, self->area_count, NULL);
    free (self->grids);
    free (self);
    *self_p = NULL;
}

int
grid_index_locate (const grid_index_t *self, double lat, double lon, grid_hit_t *hit)
{
    assert (self);
    assert (hit);
    if (!isfinite (lat) || !isfinite (lon))
        return -1;
    //  Outside the bounding box of every grid: no need for a lane.
    if (lat < self->min_lat || lat > self->max_lat || lon < self->min_lon || lon > self->max_lon)
        return -1;
    size_t start = s_lane_start (self->lane_count);
    lane_t *lane = NULL;
    for (size_t k = 0; k < self->lane_count && !lane; k++) {
        lane_t *candidate = &self->lanes [(start + k) % self->lane_count];
        if (pthread_mutex_trylock (&candidate->lock) == 0)
            lane = candidate;
    }
    if (!lane) {
        lane = &self->lanes [start];
        pthread_mutex_lock (&lane->lock);
    }
    int rc = GRID_INDEX_FAILED;
    size_t grid = 0;
    if (lane->ready || s_lane_build (self, lane) == 0)
        rc = s_lane_locate (self, lane, lat, lon, &grid);
    pthread_mutex_unlock (&lane->lock);
    if (rc == 0)
        s_hit_fill (self, self->grids [grid], hit);
    return rc;
}

int
grid_index_path (const grid_index_t *self, const char *code, grid_hit_t *hit)
{
    assert (self);
    assert (hit);
    const area_t *area = code? s_area_find (self, code): NULL;
    if (!area)
        return -1;
    s_hit_fill (self, (size_t) (area - self->areas), hit);
    return 0;
}

int
grid_index_centroid (const grid_index_t *self, const char *code, double *lat, double *lon)
{
    assert (self);
    assert (lat && lon);
    const area_t *area = code? s_area_find (self, code): NULL;
    if (!area || !area->has_point)
        return -1;
    *lat = area->point_lat;
    *lon = area->point_lon;
    return 0;
}

int
grid_index_bounds (const grid_index_t *self, double *min_lat, double *min_lon,
                   double *max_lat, double *max_lon)
{
    assert (self);
    if (self->grid_count == 0)
        return -1;
    *min_lat = self->min_lat;
    *min_lon = self->min_lon;
    *max_lat = self->max_lat;
    *max_lon = self->max_lon;
    return 0;
}

size_t
grid_index_count (const grid_index_t *self)
{
    assert (self);
    return self->grid_count;
}

size_t
grid_index_area_count (const grid_index_t *self)
{
    assert (self);
    return self->area_count;
}

size_t
grid_hit_codes (const grid_hit_t *hit, const char **codes, size_t cap)
{
    assert (hit);
    size_t count = hit->depth < cap? hit->depth: cap;
    for (size_t i = 0; i < count; i++)
        codes [i] = hit->path [i].code;
    return count;
}
