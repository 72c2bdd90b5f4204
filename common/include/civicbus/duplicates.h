/*  duplicates.h — probable duplicates among people's reports (重复件), the
    merge record that lets merged reporters hear the parent's outcome (并单),
    and the repeat-report rate (重复来电率).

    The index of open tickets, per category (hash tag {d:CATEGORY}, so the
    script touches one slot):
        dupgeo:{d:CAT}      GEO   ticket id -> its point
        dupt:{d:CAT}        zset  ticket id -> created ms
    A new report (any front door but sensors, which fold instead) with a
    point is a probable duplicate of the nearest indexed ticket of its
    category within `radius_m` that was created within `window_ms` and is
    still open. Entries older than the window are dropped by the search
    script; entries whose ticket is final (closed, rejected, merged,
    cancelled) are dropped when a search meets them (so no other service
    must remember to remove them). A flagged report is not indexed itself:
    later reports point at the original.

    The flag (dup_flag): probable_duplicate_of and review_reason in words;
    when the deployment holds duplicates, also needs_review and
    review_required (the dispatcher leaves it to the operators, who merge
    it with one action or accept it).

    The repeat-report rate, per Asia/Shanghai day and street (grid_path[1];
    "ungridded" without one), kept 400 days, counted by the create script
    itself (ts_create_count_kpi), so per bucket of the ticket:
        kpi:{bNN}:reports:YYYYMMDD   hash  street -> people's reports created
        kpi:{bNN}:dup:YYYYMMDD       hash  street -> of them flagged as duplicates
    dup_kpi_read sums the buckets (and the unbucketed kpi:reports:YYYYMMDD
    and kpi:dup:YYYYMMDD that versions before 2026-11-29 wrote). */

#ifndef CIVICBUS_DUPLICATES_H
#define CIVICBUS_DUPLICATES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "civicbus/redis.h"
#include "civicbus/ticket_id.h"
#include "civicbus/ticket_store.h"

#define DUP_RADIUS_M_DEFAULT    100
#define DUP_WINDOW_S_DEFAULT    (48 * 3600)
#define DUP_CANDIDATES          5           //  nearest entries a search examines
#define DUP_KPI_TTL_S           (400 * 86400)

typedef struct _dup_index_t dup_index_t;

//  An index with these limits (radius 1..100000 m, window >= 1 s).
dup_index_t *dup_index_new (int radius_m, int window_s);
void dup_index_destroy (dup_index_t **self_p);
//  The index's radius and window.
void dup_index_limits (const dup_index_t *self, int *radius_m, int *window_s);

//  True when `t` takes part: not a sensor ticket, a category, a point.
bool dup_applies (const cb_ticket_t *t);

/* ---- the index's scripts, pipelined (common/redis_batch.h) ----
    A search (dup_find_append) returns the nearest candidates of `t`'s
    category within the radius and window; the caller reads their states
    (HGET st, one pipeline), takes the first open one as the parent and
    drops the final or gone ones before it (dup_drop_append); a stored,
    unflagged report is added (dup_add_prepare, dup_add_append). */

//  Copies of the index's scripts for a batcher to own and load (its
//  writer fills their sha; the index's own stay untouched).
typedef struct {
    cb_script_t find, add, drop;
} dup_scripts_t;
void dup_scripts_init (dup_scripts_t *scripts);
//  Appends the search (one script call) for `t` at `now_ms`: it drops
//  entries older than the window and returns the nearest DUP_CANDIDATES
//  within the radius. The caller checks dup_applies first. 0 or -1.
int dup_find_append (const dup_index_t *self, cb_redis_t *redis, dup_scripts_t *scripts,
                     const cb_ticket_t *t, int64_t now_ms);
//  The candidate ids of a search's reply, nearest first (at most `cap`,
//  each shorter than CB_TICKET_ID_MAX bytes): their count, or -1 when the
//  reply is not a search's answer.
int dup_find_candidates (const redisReply *reply, char ids [][CB_TICKET_ID_MAX], size_t cap);
//  Appends the removal of candidate `id` (final or gone) from `t`'s
//  category's index (one command). 0 or -1.
int dup_drop_append (cb_redis_t *redis, dup_scripts_t *scripts, const cb_ticket_t *t,
                     const char *id);
//  An index entry's arguments, copied out of a report whose id is known
//  (the intake takes the number ahead and sends the entry with the create).
typedef struct {
    char geo [128], times [128], lon [32], lat [32], created [24];
    char id [CB_TICKET_ID_MAX];
} dup_add_t;
//  Fills `add` from a report (id and created_ms set): 1, or 0 when `t`
//  takes no part (dup_applies) and there is nothing to add.
int dup_add_prepare (const cb_ticket_t *t, dup_add_t *add);
//  Appends the entry's script call (one command: GEOADD and ZADD). 0 or -1.
int dup_add_append (cb_redis_t *redis, dup_scripts_t *scripts, const dup_add_t *add);

//  Flags `t` as a probable duplicate of `parent_id` (pure): sets
//  probable_duplicate_of and review_reason; with `hold` also needs_review
//  and review_required, so it waits in the operators' queue instead of
//  being dispatched. 0, or -1 when out of memory.
int dup_flag (cb_ticket_t *t, const char *parent_id, int radius_m, int window_s, bool hold);

//  The KPI area of a ticket: its street code (grid_path[1]), else its only
//  path code, else "ungridded". Writes into `buf`.
void dup_kpi_area (const cb_ticket_t *t, char *buf, size_t cap);
//  The repeat-report rate of day `yyyymmdd`:
//  {"date": "YYYY-MM-DD", "reports", "duplicates", "rate",
//   "areas": [{"area", "reports", "duplicates", "rate"}] (by area code)}.
//  rate = duplicates / reports (0 when there are none). 0 with *out set, or
//  -1 when Redis failed or memory ran out.
int dup_kpi_read (cb_redis_t *redis, int yyyymmdd, json_t **out);

/* ---- merges (并单) ---- */

//  Adds `child` (its id and reporter) to parent->merged_from unless it is
//  there already (pure). 0 added, 1 already there, -1 out of memory.
int dup_merge_record (cb_ticket_t *parent, const cb_ticket_t *child, int64_t now_ms);

//  The merge target's side of a merge, as one call for whoever merges (the
//  console, after storing the child's "merge"): loads the child, then
//  stores on the parent, with compare-and-set (up to `tries`), the
//  merged_from entry and a history-only "merged_from" event
//  ({"ticket": CHILD} as payload) by `actor`. TS_OK (also when it was
//  recorded before: no second event), TS_NOT_FOUND, TS_CONFLICT after
//  `tries`, TS_UNAVAILABLE, TS_ERROR.
int dup_note_merged_from (ticket_store_t *store, const char *parent_id, const char *child_id,
                          const ticket_actor_t *actor, int64_t now_ms, int tries);

#endif
