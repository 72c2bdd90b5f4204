/*  duplicates.c — probable duplicates at creation (common/duplicates.h),
    for every front door (tickets.c calls the two hooks around its store),
    and GET /v1/kpi/repeat-rate?date=YYYY-MM-DD (operators): the day's
    people's reports and probable duplicates per street, and their ratio
    (重复来电率). */

#include "intake.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/ticket_id.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- public: the hooks ---- */

void
intake_duplicates_before (intake_t *intake, intake_worker_t *worker, cb_ticket_t *t)
{
    if (!intake->duplicates || !dup_applies (t))
        return;
    char parent [CB_TICKET_ID_MAX] = "";
    int rc = dup_index_find (intake->duplicates, worker->redis, worker->store, t,
                             cb_clock_now_ms (), parent, sizeof parent);
    if (rc < 0)
        cb_log (CB_LOG_WARN, "duplicate check failed; stored unflagged", "error",
                cb_redis_error (worker->redis), NULL);
    else
    if (rc == 1) {
        int radius = 0, window = 0;
        dup_index_limits (intake->duplicates, &radius, &window);
        if (dup_flag (t, parent, radius, window, intake->duplicate_hold) == 0)
            httpd_count (intake->httpd, intake->count_duplicates);
    }
}

void
intake_duplicates_after (intake_t *intake, intake_worker_t *worker, const cb_ticket_t *t)
{
    if (!intake->duplicates || t->source == CIVICBUS__V1__SOURCE__SOURCE_SENSOR)
        return;
    bool duplicate = t->probable_duplicate_of && *t->probable_duplicate_of;
    int rc = dup_kpi_count (worker->redis, t, duplicate, t->created_ms);
    //  A flagged report is not indexed: later reports point at the original.
    if (rc == 0 && !duplicate)
        rc = dup_index_add (intake->duplicates, worker->redis, t);
    if (rc)
        cb_log (CB_LOG_WARN, "duplicate index or KPI not updated", "ticket", t->id,
                "error", cb_redis_error (worker->redis), NULL);
}

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
