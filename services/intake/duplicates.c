/*  duplicates.c — GET /v1/kpi/repeat-rate?date=YYYY-MM-DD (operators): the day's
    people's reports and probable duplicates per street, and their ratio
    (重复来电率). Probable duplicates at creation (common/duplicates.h) are
    flagged, indexed and counted by the writer's stages (writer.c), for
    every front door. */

#include "intake.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/ticket_id.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- public: the KPI ---- */

int
intake_kpi_repeat_rate (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    const char *date = httpd_request_query (req, "date");
    int day = cb_time_local_yyyymmdd (cb_clock_now_ms ());
    if (date) {
        int64_t ms = 0;
        if (strlen (date) != 10 || cb_time_parse_iso (date, &ms))
            return httpd_reply_error (req, MHD_HTTP_BAD_REQUEST, "bad_value", "date",
                                      "date is YYYY-MM-DD");
        day = cb_time_local_yyyymmdd (ms);
    }
    if (httpd_redis_down (intake->httpd))
        return httpd_reply_unavailable (req, "breaker open");
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    json_t *answer = NULL;
    int rc = dup_kpi_read (worker->redis, day, &answer);
    intake_pool_give (intake->pool, worker);
    if (rc) {
        httpd_redis_failed (intake->httpd);
        return httpd_reply_unavailable (req, "kpi");
    }
    return httpd_reply_json (req, MHD_HTTP_OK, answer);
}
