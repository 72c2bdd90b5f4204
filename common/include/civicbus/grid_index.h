/*  grid_index.h — the city's grids: where is this point, and what is the
    whole area path (district .. street .. community .. grid) of a grid code.

    Loaded from a GeoJSON FeatureCollection (deploy/config/README.md has the
    format). Every feature is one area with properties {code, name, level,
    parent}; the hierarchy comes from the parent codes. Features at level
    "grid" carry a Polygon or MultiPolygon (lon, lat order, WGS-84) and are
    what a point resolves to; the other levels may carry a geometry or not.

    Levels, top first: "district", "street", "community", "grid", "building",
    "floor". A parent is always at a higher level than its child; a grid may
    hang under any higher level (a city without communities), and buildings
    and floors below a grid are addressable by code but never located.

    A lookup is a GEOS STRtree query for the candidate grids followed by a
    prepared-geometry point-in-polygon test: a few microseconds with thousands
    of grids (bench/grid_lookup.c measures it). The index is immutable after
    loading and safe to share between threads; see grid_index_locate. */

#ifndef CIVICBUS_GRID_INDEX_H
#define CIVICBUS_GRID_INDEX_H

#include <stddef.h>

#define GRID_CODE_MAX   32      //  bytes, with NUL; the 20-digit CJ/T 349 code fits
#define GRID_NAME_MAX   96      //  bytes of UTF-8, with NUL (about 30 characters)
#define GRID_LEVEL_MAX  12      //  bytes, with NUL ("community")
#define GRID_PATH_MAX   8       //  levels in one path

//  Returned by grid_index_locate when memory ran out while serving a thread
//  for the first time (not "outside every grid", which is -1).
#define GRID_INDEX_FAILED  (-2)

typedef struct _grid_index_t grid_index_t;

//  One area on a path. Copies, so a hit outlives a reloaded index.
typedef struct {
    char code [GRID_CODE_MAX];
    char name [GRID_NAME_MAX];
    char level [GRID_LEVEL_MAX];
} grid_area_t;

//  The answer to a lookup: the area found and every area above it, top first
//  (path [0] is the district, path [depth - 1] is the area itself).
typedef struct {
    char code [GRID_CODE_MAX];      //  = path [depth - 1].code
    size_t depth;
    grid_area_t path [GRID_PATH_MAX];
} grid_hit_t;

//  Parses and validates a GeoJSON FeatureCollection of areas. Returns a new
//  index, or NULL with a one-line reason in err (when err is not NULL) that
//  names the feature, e.g. "features[12] (code '320105001001001'): parent
//  '320105001099' is not declared". Refused: JSON syntax errors, missing or
//  mistyped properties, codes outside [0-9A-Za-z._-] or too long, duplicate
//  codes, unknown parents, parent cycles, a parent not above its child,
//  grids without a polygon, malformed or invalid (self-intersecting)
//  polygons, coordinates outside WGS-84, and grids whose interiors overlap.
grid_index_t *grid_index_from_geojson (const char *text, size_t len, char *err, size_t errcap);

//  Destroys the index and sets *self_p to NULL; safe when *self_p is NULL.
//  No lookup may be running on it.
void grid_index_destroy (grid_index_t **self_p);

//  Finds the grid containing the point (WGS-84). Returns 0 and fills *hit
//  with the grid and its path; -1 when the point is in no grid (or is not a
//  finite coordinate); GRID_INDEX_FAILED when out of memory.
//  A point on an edge shared by several grids (or a vertex) resolves to the
//  one with the smallest code (bytewise order), so the answer never depends
//  on load order or on the thread.
//  Thread-safe: GEOS does not promise that one context, one STRtree or one
//  prepared geometry can be queried from two threads at once (both build
//  their internal indexes lazily on first query). So the index keeps a few
//  "lanes", each its own GEOS context with its own copy of the grid
//  geometries, prepared geometries and STRtree, guarded by its own mutex. A
//  lookup try-locks the lanes starting at one picked by its thread id and
//  blocks only when all are busy. There are as many lanes as online CPUs
//  (at most 16); lane 0 is built while loading, the others the first time
//  contention needs them (a millisecond for a thousand grids).
int grid_index_locate (const grid_index_t *self, double lat, double lon, grid_hit_t *hit);

//  The path of a known area code (a ticket located by grid code rather than
//  by a point): returns 0 and fills *hit, or -1 for an unknown code. Works
//  for any level, not only grids.
int grid_index_path (const grid_index_t *self, const char *code, grid_hit_t *hit);

//  A representative point of an area that has a geometry: its centroid, or,
//  when the centroid lies outside the polygon (a U or a ring shape), a point
//  on its surface; either way strictly inside, so locating it returns the
//  same grid. Returns 0, or -1 for an unknown code or an area without one.
int grid_index_centroid (const grid_index_t *self, const char *code, double *lat, double *lon);

//  The bounding box of all grids (for demo traffic and benches). Returns 0,
//  or -1 when the index has no grid.
int grid_index_bounds (const grid_index_t *self, double *min_lat, double *min_lon,
                       double *max_lat, double *max_lon);

//  Number of grids (features at level "grid"), the areas points resolve to.
size_t grid_index_count (const grid_index_t *self);

//  Number of areas of every level.
size_t grid_index_area_count (const grid_index_t *self);

//  Fills codes [0 .. depth-1] with pointers to hit's path codes, top first,
//  in the shape catalog_route takes. Returns the number filled (at most cap).
size_t grid_hit_codes (const grid_hit_t *hit, const char **codes, size_t cap);

#endif
