/*  citydata_watch.h — keeping a service's grids and catalogue fresh: the
    main-thread loop every front door runs (intake, console) while its HTTP
    threads serve, until SIGTERM. */

#ifndef CIVICBUS_CITYDATA_WATCH_H
#define CIVICBUS_CITYDATA_WATCH_H

#include <stdbool.h>
#include "civicbus/citydata.h"
#include "civicbus/redis.h"

//  One citydata_refresh, logging only changes of fortune: a warning when
//  refreshing starts to fail, an info line when it works again. `failing`
//  carries that state between calls (start with false).
void citydata_refresh_logged (citydata_t *citydata, cb_redis_t *redis, bool *failing);

//  Refreshes every `every_ms` until cb_service_stopping() (checked every
//  50 ms), then returns. `redis` is used from the calling thread only.
void citydata_watch_until_stopped (citydata_t *citydata, cb_redis_t *redis, int every_ms,
                                   bool *failing);

#endif
