/*  citydata.h — the city's grids, dispatch catalogue, time-limit policies
    and working calendar: stored in Redis by `civicbus grids load` /
    `catalog load` / `sla load` / `calendar load`, cached by every service
    that needs them, and reloaded when they change.

    Redis keys (global, not per bucket: read by all, written rarely):
        cfg:grids     hash  json (GeoJSON text), version, loaded_ms, count
        cfg:catalog   hash  json, version, loaded_ms, count
        cfg:sla       hash  json (sla.h), version, loaded_ms, count, label
        cfg:calendar  hash  json (workcal.h), version, loaded_ms, name
    A load validates the text first (the same parser the services use), so a
    bad file never reaches Redis and never breaks a running service.

    Without cfg:calendar the snapshot carries the built-in 2026 calendar
    (workcal_new_default). Without cfg:sla it carries no policies, and then
    no ticket gets a deadline: services never read repository files at run
    time, so `./scripts/up` loads deploy/config/sla.json; the first refresh
    that finds none logs it once at warn.

    The cache hands out reference-counted snapshots: a request thread works on
    one consistent set while a refresh swaps in a new one; the old one is
    freed when its last reader releases it. */

#ifndef CIVICBUS_CITYDATA_H
#define CIVICBUS_CITYDATA_H

#include <stdint.h>
#include "civicbus/redis.h"
#include "civicbus/grid_index.h"
#include "civicbus/catalog.h"
#include "civicbus/sla.h"
#include "civicbus/workcal.h"

typedef struct _citydata_t citydata_t;

typedef struct {
    grid_index_t *grids;      //  NULL until grids are loaded
    catalog_t *catalog;       //  NULL until a catalogue is loaded
    sla_policies_t *policies; //  NULL until time-limit policies are loaded
    workcal_t *calendar;      //  never NULL: the loaded one, else the built-in one
    int64_t grids_version;
    int64_t catalog_version;
    int64_t sla_version;      //  0: none loaded
    int64_t calendar_version; //  0: the built-in calendar
} citydata_snapshot_t;

//  Validates `text` as GeoJSON grids (or a catalogue) and stores it with a
//  new version. Returns 0 with *version set, -1 with err naming the problem
//  (a validation error from the parser, or Redis unavailable).
int citydata_store_grids (cb_redis_t *redis, const char *text, size_t len,
                          int64_t *version, char *err, size_t errcap);
int citydata_store_catalog (cb_redis_t *redis, const char *text, size_t len,
                            int64_t *version, char *err, size_t errcap);
//  Reads the stored text (caller frees) and version; NULL when none.
//  `what`: "grids", "catalog", "sla" or "calendar".
char *citydata_fetch (cb_redis_t *redis, const char *what, int64_t *version);

//  A cache whose first snapshot has nothing but the built-in calendar.
//  NULL when out of memory.
citydata_t *citydata_new (void);
void citydata_destroy (citydata_t **self_p);

//  Checks the stored versions (one round trip) and reloads what changed.
//  Returns 1 when something was reloaded, 0 when nothing changed, -1 when
//  Redis could not be read or stored data does not parse (the previous
//  snapshot stays in use and the error is logged). Call it from one thread.
int citydata_refresh (citydata_t *self, cb_redis_t *redis);

//  The current snapshot, held until released. Never NULL; its members may be
//  NULL before anything was loaded. Thread-safe.
citydata_snapshot_t *citydata_acquire (citydata_t *self);
void citydata_release (citydata_t *self, citydata_snapshot_t **snap_p);

//  Stores `text`, which the caller has validated, in cfg:WHAT: json, a new
//  version and loaded_ms in one script (a reader never sees a new version
//  with old text), with `n_fields` more name/value pairs from `fields`
//  ("count", "794"; the calendar's "name", the policies' "label"), at most
//  CITYDATA_STORE_FIELDS_MAX. 0 with *version set, or -1 with err.
#define CITYDATA_STORE_FIELDS_MAX 4
int citydata_store_text (cb_redis_t *redis, const char *what, const char *text, size_t len,
                         const char *const *fields, size_t n_fields,
                         int64_t *version, char *err, size_t errcap);

#endif
