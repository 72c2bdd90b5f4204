/*  citydata_watch.c — the refresh loop of a front door's main thread (see
    citydata_watch.h). Polls cb_service_stopping every 50 ms so SIGTERM is
    noticed promptly without signals interrupting anything else. */

#include "civicbus/citydata_watch.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/service.h"

#include <time.h>

#define S_TICK_MS 50

void
citydata_refresh_logged (citydata_t *citydata, cb_redis_t *redis, bool *failing)
{
    int rc = citydata_refresh (citydata, redis);
    if (rc < 0 && !*failing)
        cb_log (CB_LOG_WARN, "city data not refreshed", "error", cb_redis_error (redis), NULL);
    else
    if (rc >= 0 && *failing)
        cb_log (CB_LOG_INFO, "city data refresh works again", NULL);
    *failing = rc < 0;
}

void
citydata_watch_until_stopped (citydata_t *citydata, cb_redis_t *redis, int every_ms,
                              bool *failing)
{
    int64_t next = cb_clock_mono_ms () + every_ms;
    while (!cb_service_stopping ()) {
        struct timespec tick = { 0, S_TICK_MS * 1000000L };
        nanosleep (&tick, NULL);
        if (cb_clock_mono_ms () >= next) {
            citydata_refresh_logged (citydata, redis, failing);
            next = cb_clock_mono_ms () + every_ms;
        }
    }
}
