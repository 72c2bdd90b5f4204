/*  grid_lookup.c — how fast is point-in-grid? Loads a grid file (default:
    the demo city, deploy/config/grids.geojson) and locates 1,000,000
    random points inside its bounding box, optionally from several threads
    at once, printing lookups per second and the median and 99th
    percentile time of one lookup.

    Usage: bench-grid_lookup [GRIDS.geojson [THREADS]]
    The points come from a fixed-seed generator, so runs are comparable. */

#include "civicbus/file.h"
#include "civicbus/grid_index.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOOKUPS 1000000

typedef struct {
    const grid_index_t *index;
    double min_lat, min_lon, max_lat, max_lon;
    uint64_t seed;
    size_t count;
    int64_t *nanos;             //  one timing per lookup
    size_t hits;
} worker_t;

/* ---- private ---- */

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

//  xorshift64*: fast, fixed-seed, good enough to scatter points.
static double
s_random_unit (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double) ((*state * 0x2545F4914F6CDD1Dull) >> 11) / (double) (1ull << 53);
}

static void *
s_worker (void *arg)
{
    worker_t *worker = arg;
    grid_hit_t hit;
    for (size_t i = 0; i < worker->count; i++) {
        double lat = worker->min_lat + (worker->max_lat - worker->min_lat) * s_random_unit (&worker->seed);
        double lon = worker->min_lon + (worker->max_lon - worker->min_lon) * s_random_unit (&worker->seed);
        int64_t start = s_now_ns ();
        int rc = grid_index_locate (worker->index, lat, lon, &hit);
        worker->nanos [i] = s_now_ns () - start;
        worker->hits += rc == 0;
    }
    return NULL;
}

static int
s_compare_int64 (const void *a, const void *b)
{
    int64_t left = *(const int64_t *) a, right = *(const int64_t *) b;
    return (left > right) - (left < right);
}

int
main (int argc, char *argv [])
{
    char default_path [1024];
    const char *root = getenv ("CIVICBUS_SOURCE_DIR");
#ifdef CIVICBUS_SOURCE_DIR
    if (!root)
        root = CIVICBUS_SOURCE_DIR;
#endif
    snprintf (default_path, sizeof default_path, "%s/deploy/config/grids.geojson", root? root: ".");
    const char *path = argc > 1? argv [1]: default_path;
    int threads = argc > 2? atoi (argv [2]): 1;
    if (threads < 1 || threads > 64) {
        fprintf (stderr, "usage: %s [GRIDS.geojson [THREADS 1..64]]\n", argv [0]);
        return 2;
    }
    size_t len = 0;
    char err [256];
    char *text = cb_file_read (path, CB_FILE_CITY_DATA_MAX, &len, err, sizeof err);
    if (!text) {
        fprintf (stderr, "%s\n", err);
        return 1;
    }
    int64_t load_start = s_now_ns ();
    grid_index_t *index = grid_index_from_geojson (text, len, err, sizeof err);
    int64_t load_ns = s_now_ns () - load_start;
    free (text);
    if (!index) {
        fprintf (stderr, "%s: %s\n", path, err);
        return 1;
    }
    worker_t workers [64];
    pthread_t ids [64];
    int64_t *nanos = malloc (LOOKUPS * sizeof (int64_t));
    if (!nanos)
        return 1;
    size_t per_thread = LOOKUPS / (size_t) threads;
    for (int t = 0; t < threads; t++) {
        workers [t] = (worker_t) { .index = index, .seed = 0x9E3779B97F4A7C15ull + (uint64_t) t,
                                   .count = per_thread, .nanos = nanos + (size_t) t * per_thread };
        grid_index_bounds (index, &workers [t].min_lat, &workers [t].min_lon,
                           &workers [t].max_lat, &workers [t].max_lon);
    }
    int64_t start = s_now_ns ();
    for (int t = 0; t < threads; t++)
        pthread_create (&ids [t], NULL, s_worker, &workers [t]);
    size_t hits = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join (ids [t], NULL);
        hits += workers [t].hits;
    }
    int64_t elapsed = s_now_ns () - start;
    size_t total = per_thread * (size_t) threads;
    qsort (nanos, total, sizeof (int64_t), s_compare_int64);
    printf ("grid_lookup: %zu grids loaded in %.1f ms from %s\n",
            grid_index_count (index), load_ns / 1e6, path);
    printf ("grid_lookup: %zu lookups, %d thread(s), %zu hits: %.0f lookups/s, "
            "median %lld ns, p99 %lld ns per lookup\n",
            total, threads, hits, total / (elapsed / 1e9),
            (long long) nanos [total / 2], (long long) nanos [total * 99 / 100]);
    free (nanos);
    grid_index_destroy (&index);
    return 0;
}
