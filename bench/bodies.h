/*  bodies.h — realistic POST /v1/tickets bodies from the demo city, for the
    load generator and the memory bench: points from the grids' centroids
    (with a few metres of jitter), categories from the dispatch catalogue
    with a request type that category takes, Chinese descriptions, a reporter
    on about a third of them, a few urgent. Fixed seed, so runs compare.

    Header-only: every .c file in bench/ is its own executable (see histogram.h). */

#ifndef CIVICBUS_BENCH_BODIES_H
#define CIVICBUS_BENCH_BODIES_H

#include "civicbus/catalog.h"
#include "civicbus/file.h"
#include "civicbus/grid_index.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char **bodies;
    size_t *lens;
    size_t count;
} bodies_t;

static const char *const s_bodies_phrases [] = {
    "已经三天了没人处理，居民意见很大，请尽快安排人员到现场查看。",
    "就在小区南门旁边，早晚高峰时段影响行人通行，存在安全隐患。",
    "多次拨打热线反映，至今没有解决，希望相关部门给个说法。",
    "晚上十点以后还在持续，严重影响周边住户休息，请予以处理。",
    "附近有学校，孩子们上下学都要经过这里，请相关部门重视。",
    "现场照片已拍好，位置在公交站台东侧约五十米处。",
    "情况比较紧急，怕出事故，麻烦尽快派人来看一下。",
    "上周已经有人反映过，处理后又出现了，建议彻底整治。",
    "老人行动不便，希望社区能够帮忙协调解决。",
    "具体位置在菜市场西门对面，周末人流量很大。",
    "物业说不归他们管，不知道应该找哪个部门，请帮忙转办。",
    "建议在此处增设提示标志，并加强日常巡查。",
};

static const char *const s_bodies_names [] = {
    "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周婷", "吴刚",
};

static const char *const s_bodies_request_types [] = {
    "consult", "help", "complaint", "report", "suggestion",
};

static inline uint64_t
bodies_random (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1Dull;
}

static inline void
bodies_free (bodies_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        free (self->bodies [i]);
    free (self->bodies);
    free (self->lens);
    memset (self, 0, sizeof *self);
}

//  Makes `count` bodies from the grids and catalogue files. 0, or -1 with a
//  reason in err.
static inline int
bodies_make (bodies_t *self, const char *grids_path, const char *catalog_path, size_t count,
             uint64_t seed, char *err, size_t errcap)
{
    memset (self, 0, sizeof *self);
    size_t grids_len = 0, catalog_len = 0;
    char *grids_text = cb_file_read (grids_path, CB_FILE_CITY_DATA_MAX, &grids_len, NULL, 0);
    char *catalog_text = cb_file_read (catalog_path, CB_FILE_CITY_DATA_MAX, &catalog_len, NULL, 0);
    grid_index_t *index = NULL;
    catalog_t *catalog = NULL;
    json_t *geo = NULL;
    double *lats = NULL, *lons = NULL;
    size_t n_grids = 0;
    int rc = -1;
    if (!grids_text || !catalog_text) {
        snprintf (err, errcap, "cannot read %.400s", grids_text ? catalog_path : grids_path);
        goto done;
    }
    index = grid_index_from_geojson (grids_text, grids_len, err, errcap);
    catalog = catalog_from_json (catalog_text, catalog_len, err, errcap);
    geo = json_loadb (grids_text, grids_len, 0, NULL);
    if (!index || !catalog || !geo)
        goto done;
    //  The grid codes: features at level "grid" (the index does not list them).
    json_t *features = json_object_get (geo, "features");
    size_t n_features = json_array_size (features);
    lats = calloc (n_features + 1, sizeof *lats);
    lons = calloc (n_features + 1, sizeof *lons);
    if (!lats || !lons)
        goto done;
    for (size_t i = 0; i < n_features; i++) {
        json_t *props = json_object_get (json_array_get (features, i), "properties");
        const char *level = json_string_value (json_object_get (props, "level"));
        const char *code = json_string_value (json_object_get (props, "code"));
        if (level && code && strcmp (level, "grid") == 0
        &&  grid_index_centroid (index, code, &lats [n_grids], &lons [n_grids]) == 0)
            n_grids++;
    }
    size_t n_categories = catalog_category_count (catalog);
    if (n_grids == 0 || n_categories == 0) {
        snprintf (err, errcap, "no grids or no categories");
        goto done;
    }
    self->bodies = calloc (count, sizeof (char *));
    self->lens = calloc (count, sizeof (size_t));
    if (!self->bodies || !self->lens)
        goto done;
    uint64_t state = seed ? seed : 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < count; i++) {
        const catalog_category_t *cat =
            catalog_category_at (catalog, bodies_random (&state) % n_categories);
        unsigned types = cat->request_types ? cat->request_types : CATALOG_ALL_REQUEST_TYPES;
        const char *allowed [5];
        size_t n_allowed = 0;
        for (int bit = 0; bit < 5; bit++)
            if (types & (1u << bit))
                allowed [n_allowed++] = s_bodies_request_types [bit];
        size_t g = bodies_random (&state) % n_grids;
        //  Up to ~20 m from the centroid: still well inside a 230 m grid.
        double jitter_lat = ((double) (bodies_random (&state) % 2001) - 1000) * 1.8e-7;
        double jitter_lon = ((double) (bodies_random (&state) % 2001) - 1000) * 2.1e-7;
        const char *phrase = s_bodies_phrases [bodies_random (&state)
                                               % (sizeof s_bodies_phrases / sizeof (char *))];
        char reporter [160] = "";
        if (bodies_random (&state) % 3 == 0)
            snprintf (reporter, sizeof reporter,
                      ",\"reporter\":{\"name\":\"%s\",\"phone\":\"13%09llu\"}",
                      s_bodies_names [bodies_random (&state) % 10],
                      (unsigned long long) (bodies_random (&state) % 1000000000ull));
        const char *urgency = bodies_random (&state) % 20 == 0 ? ",\"urgency\":\"urgent\"" : "";
        char body [2048];
        int n = snprintf (body, sizeof body,
            "{\"source\":\"app\",\"request_type\":\"%s\",\"category\":\"%s\"%s,"
            "\"description\":\"%s：%s\","
            "\"location\":{\"lat\":%.6f,\"lon\":%.6f}%s}",
            allowed [bodies_random (&state) % n_allowed], cat->code, urgency,
            cat->name_zh, phrase, lats [g] + jitter_lat, lons [g] + jitter_lon, reporter);
        if (n < 0 || (size_t) n >= sizeof body) {
            snprintf (err, errcap, "body too long");
            goto done;
        }
        self->bodies [i] = strdup (body);
        if (!self->bodies [i])
            goto done;
        self->lens [i] = (size_t) n;
        self->count = i + 1;
    }
    rc = 0;
done:
    if (rc)
        bodies_free (self);
    free (lats);
    free (lons);
    json_decref (geo);
    catalog_destroy (&catalog);
    grid_index_destroy (&index);
    free (grids_text);
    free (catalog_text);
    return rc;
}

#endif
