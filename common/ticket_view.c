/*  ticket_view.c — read-only views of stored tickets: one with its
    history, the listing and the operators' queue (see ticket_view.h).
    Moved here from the intake so the console serves the same listing. */

#include "civicbus/ticket_view.h"
#include "civicbus/clock.h"
#include "civicbus/pbutil.h"
#include "civicbus/ticket_json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define S_LIST_SCAN_MIN 2000          //  index entries one page may examine, at least

/* ---- private ---- */

typedef struct {
    int64_t score;
    char id [CB_TICKET_ID_MAX];
} s_item_t;

//  One bucket's stream of index entries, refilled a batch at a time.
typedef struct {
    s_item_t *items;
    size_t count, pos;
    int64_t after_score;                //  entries up to (after_score, after_id) are done
    char after_id [CB_TICKET_ID_MAX];
    long tie_skip;                      //  entries at after_score already passed over
    bool exhausted;                     //  Redis has nothing past the buffer
} s_lane_t;

static int
s_item_compare (int64_t a_score, const char *a_id, int64_t b_score, const char *b_id)
{
    if (a_score != b_score)
        return a_score < b_score ? -1 : 1;
    return strcmp (a_id, b_id);
}

static bool
s_code_valid (const char *text, size_t max)
{
    size_t len = strlen (text);
    if (len < 1 || len >= max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum ((unsigned char) text [i]) && !strchr ("._-", text [i]))
            return false;
    return true;
}

static bool
s_whole_number (const char *text, int64_t max, int64_t *value)
{
    if (!*text || strlen (text) > 18)
        return false;
    int64_t n = 0;
    for (const char *p = text; *p; p++) {
        if (!isdigit ((unsigned char) *p))
            return false;
        n = n * 10 + (*p - '0');
    }
    if (n > max)
        return false;
    *value = n;
    return true;
}

//  Cursor: base64url (no padding) of "CREATED_MS:ID".
static void
s_cursor_encode (int64_t ms, const char *id, char *out, size_t cap)
{
    char plain [96];
    int n = snprintf (plain, sizeof plain, "%lld:%s", (long long) ms, id);
    sodium_bin2base64 (out, cap, (const unsigned char *) plain, (size_t) n,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static bool
s_cursor_decode (const char *text, int64_t *ms, char *id, size_t idcap)
{
    unsigned char plain [96];
    size_t len = 0;
    if (strlen (text) > 128
    ||  sodium_base642bin (plain, sizeof plain - 1, text, strlen (text), NULL, &len, NULL,
                           sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return false;
    plain [len] = 0;
    if (memchr (plain, 0, len))
        return false;
    char *colon = strchr ((char *) plain, ':');
    if (!colon)
        return false;
    *colon = 0;
    if (!s_whole_number ((char *) plain, INT64_MAX / 2, ms))
        return false;
    if (ticket_id_bucket (colon + 1) < 0 || strlen (colon + 1) >= idcap)
        return false;
    snprintf (id, idcap, "%s", colon + 1);
    return true;
}


//  Refills every lane whose buffer is empty and that may have more, in one
//  pipelined round trip. 0, TS_UNAVAILABLE or TS_ERROR.
static int
s_lanes_fetch (cb_redis_t *redis, const char *family, const char *index, s_lane_t *lanes,
               size_t batch, size_t *scanned)
{
    int asked [CB_BUCKETS];
    int n_asked = 0;
    for (int b = 0; b < CB_BUCKETS; b++) {
        s_lane_t *lane = &lanes [b];
        if (lane->pos < lane->count || lane->exhausted)
            continue;
        char key [160];
        if (index [0])
            snprintf (key, sizeof key, "%s:{b%02d}:%.127s", family, b, index);
        else
            snprintf (key, sizeof key, "%s:{b%02d}", family, b);
        char min [32], offset [32], count [32];
        snprintf (min, sizeof min, "%lld", (long long) lane->after_score);
        snprintf (offset, sizeof offset, "%ld", lane->tie_skip);
        snprintf (count, sizeof count, "%zu", batch);
        const char *argv [] = { "ZRANGEBYSCORE", key, min, "+inf", "WITHSCORES", "LIMIT",
                                offset, count };
        if (cb_redis_append_argv (redis, 8, argv, NULL))
            return TS_UNAVAILABLE;
        asked [n_asked++] = b;
    }
    int rc = 0;
    for (int i = 0; i < n_asked; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return TS_UNAVAILABLE;      //  the connection is dropped: no replies left to read
        s_lane_t *lane = &lanes [asked [i]];
        lane->count = lane->pos = 0;
        if (reply->type != REDIS_REPLY_ARRAY) {
            rc = TS_ERROR;
            freeReplyObject (reply);
            continue;
        }
        size_t n = reply->elements / 2;
        for (size_t j = 0; j < n; j++) {
            const redisReply *member = reply->element [2 * j];
            const redisReply *score = reply->element [2 * j + 1];
            if (member->type != REDIS_REPLY_STRING || score->type != REDIS_REPLY_STRING
            ||  member->len >= CB_TICKET_ID_MAX)
                continue;
            int64_t ms = (int64_t) strtod (score->str, NULL);
            if (s_item_compare (ms, member->str, lane->after_score, lane->after_id) <= 0)
                continue;
            s_item_t *item = &lane->items [lane->count++];
            item->score = ms;
            memcpy (item->id, member->str, member->len + 1);
        }
        *scanned += n;
        if (n < batch)
            lane->exhausted = true;
        else
        if (lane->count == 0)
            lane->tie_skip += (long) n;     //  a run of equal scores already passed
        else
            lane->tie_skip = 0;
        freeReplyObject (reply);
    }
    return rc;
}

//  Picks the index with the fewest entries from `since` on, of those the
//  filters name ("all" without filters). One pipelined round trip.
static int
s_pick_index (cb_redis_t *redis, const ticket_list_query_t *q, char *index, size_t cap)
{
    char names [3][96];
    int n = 0;
    if (q->state > 0)
        snprintf (names [n++], sizeof names [0], "st:%s", ticket_state_name (q->state));
    if (q->department [0])
        snprintf (names [n++], sizeof names [0], "dept:%s", q->department);
    if (q->grid [0])
        snprintf (names [n++], sizeof names [0], "grid:%s", q->grid);
    if (n == 0) {
        snprintf (index, cap, "all");
        return 0;
    }
    if (n == 1) {
        snprintf (index, cap, "%s", names [0]);
        return 0;
    }
    char min [32];
    snprintf (min, sizeof min, "%lld", (long long) q->since_ms);
    for (int i = 0; i < n; i++)
        for (int b = 0; b < CB_BUCKETS; b++) {
            char key [160];
            snprintf (key, sizeof key, "idx:{b%02d}:%.95s", b, names [i]);
            const char *argv [] = { "ZCOUNT", key, min, "+inf" };
            if (cb_redis_append_argv (redis, 4, argv, NULL))
                return TS_UNAVAILABLE;
        }
    long long totals [3] = { 0, 0, 0 };
    int rc = 0;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < CB_BUCKETS; b++) {
            redisReply *reply = cb_redis_get_reply (redis);
            if (!reply)
                return TS_UNAVAILABLE;
            if (reply->type == REDIS_REPLY_INTEGER)
                totals [i] += reply->integer;
            else
                rc = TS_ERROR;
            freeReplyObject (reply);
        }
    int best = 0;
    for (int i = 1; i < n; i++)
        if (totals [i] < totals [best])
            best = i;
    snprintf (index, cap, "%s", names [best]);
    return rc;
}

static bool
s_matches (const cb_ticket_t *t, const ticket_list_query_t *q)
{
    if (q->state > 0 && (int) t->state != q->state)
        return false;
    if (q->department [0] && strcmp (t->department ? t->department : "", q->department) != 0)
        return false;
    if (q->grid [0]) {
        if (!t->location || !pb_strv_contains (t->location->n_grid_path, t->location->grid_path,
                                               q->grid))
            return false;
    }
    return t->created_ms >= q->since_ms;
}

//  One entry of the operators' queue: what an operator needs to pick it.
static json_t *
s_queue_item (const cb_ticket_t *t, int64_t queued_ms)
{
    json_t *path = json_array ();
    json_t *flags = json_array ();
    char queued [40], created [40];
    if (cb_time_format_iso (queued_ms, queued, sizeof queued))
        queued [0] = 0;
    if (cb_time_format_iso (t->created_ms, created, sizeof created))
        created [0] = 0;
    const Civicbus__V1__Location *where = t->location;
    for (size_t i = 0; path && where && i < where->n_grid_path; i++)
        json_array_append_new (path, json_string (where->grid_path [i]));
    if (flags) {
        if (t->needs_review)
            json_array_append_new (flags, json_string ("needs_review"));
        if (t->extension_pending)
            json_array_append_new (flags, json_string ("extension_pending"));
        if (t->suspension_pending)
            json_array_append_new (flags, json_string ("suspension_pending"));
        if (t->urgency == CIVICBUS__V1__URGENCY__URGENCY_URGENT)
            json_array_append_new (flags, json_string ("urgent"));
        if (where && where->ungridded)
            json_array_append_new (flags, json_string ("ungridded"));
    }
    return json_pack ("{s:s, s:s, s:s, s:o*, s:s?, s:s?, s:o*, s:s?, s:s?}",
                      "id", t->id ? t->id : "",
                      "state", ticket_state_name (t->state),
                      "category", t->category ? t->category : "",
                      "grid_path", path,
                      "department", pb_string_is_empty (t->department) ? NULL : t->department,
                      "review_reason", pb_string_is_empty (t->review_reason) ? NULL
                                                                            : t->review_reason,
                      "flags", flags,
                      "queued", queued [0] ? queued : NULL,
                      "created", created [0] ? created : NULL);
}

//  Loads the candidates (one pipelined round trip) and appends those that
//  pass the filters to `list`. 0, TS_UNAVAILABLE or TS_ERROR.
static int
s_load_matching (cb_redis_t *redis, const s_item_t *items, size_t n,
                 const ticket_list_query_t *q, bool queue, unsigned flags, json_t *list,
                 int *found)
{
    for (size_t i = 0; i < n; i++) {
        char key [128];
        if (ts_key (key, sizeof key, "t", items [i].id))
            snprintf (key, sizeof key, "t:{b00}:invalid");
        const char *argv [] = { "HGET", key, "pb" };
        if (cb_redis_append_argv (redis, 3, argv, NULL))
            return TS_UNAVAILABLE;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply)
            return TS_UNAVAILABLE;
        if (reply->type == REDIS_REPLY_STRING) {
            cb_ticket_t *t = civicbus__v1__ticket__unpack (NULL, reply->len,
                                                           (const uint8_t *) reply->str);
            if (t && s_matches (t, q)) {
                json_t *json = queue ? s_queue_item (t, items [i].score)
                                     : ticket_to_json (t, flags);
                if (!json || json_array_append_new (list, json))
                    rc = TS_ERROR;
                else
                    (*found)++;
            }
            if (t)
                civicbus__v1__ticket__free_unpacked (t, NULL);
        }
        else
        if (reply->type == REDIS_REPLY_ERROR)
            rc = TS_ERROR;
        freeReplyObject (reply);
    }
    return rc;
}

//  The walk proper, over the listing's best index or the operators'
//  queue. Fills list and next_cursor ("" at the end).
static int
s_list (cb_redis_t *redis, const ticket_list_query_t *q, bool queue, unsigned flags,
        json_t *list, char *next_cursor, size_t cursor_cap)
{
    char index [128] = "";
    const char *family = queue ? "opq" : "idx";
    int rc = queue ? 0 : s_pick_index (redis, q, index, sizeof index);
    if (rc)
        return rc;
    size_t batch = (size_t) q->limit / 8 + 4;
    s_lane_t *lanes = calloc (CB_BUCKETS, sizeof *lanes);
    s_item_t *picked = calloc ((size_t) q->limit, sizeof *picked);
    if (!lanes || !picked) {
        free (lanes);
        free (picked);
        return TS_ERROR;
    }
    //  Start after the cursor or at `since`, whichever is later.
    int64_t start_score = q->since_ms;
    const char *start_id = "";
    if (q->has_cursor && s_item_compare (q->cursor_ms, q->cursor_id, start_score, start_id) > 0) {
        start_score = q->cursor_ms;
        start_id = q->cursor_id;
    }
    for (int b = 0; b < CB_BUCKETS && rc == 0; b++) {
        lanes [b].items = calloc (batch, sizeof (s_item_t));
        if (!lanes [b].items)
            rc = TS_ERROR;
        lanes [b].after_score = start_score;
        snprintf (lanes [b].after_id, sizeof lanes [b].after_id, "%s", start_id);
    }
    size_t scanned = 0;
    size_t budget = (size_t) q->limit * 20 > S_LIST_SCAN_MIN ? (size_t) q->limit * 20
                                                             : S_LIST_SCAN_MIN;
    int found = 0;
    bool have_last = false;
    s_item_t last = { 0, "" };
    while (rc == 0 && found < q->limit && scanned < budget) {
        rc = s_lanes_fetch (redis, family, index, lanes, batch, &scanned);
        if (rc)
            break;
        //  Merge: take the smallest head while every lane that may still
        //  have entries has one buffered.
        size_t want = (size_t) (q->limit - found), k = 0;
        bool blocked = false, drained = false;
        while (k < want) {
            int best = -1;
            for (int b = 0; b < CB_BUCKETS; b++) {
                s_lane_t *lane = &lanes [b];
                if (lane->pos >= lane->count) {
                    if (!lane->exhausted) {
                        blocked = true;
                        break;
                    }
                    continue;
                }
                const s_item_t *head = &lane->items [lane->pos];
                if (best < 0 || s_item_compare (head->score, head->id,
                                                lanes [best].items [lanes [best].pos].score,
                                                lanes [best].items [lanes [best].pos].id) < 0)
                    best = b;
            }
            if (blocked)
                break;
            if (best < 0) {
                drained = true;
                break;
            }
            s_lane_t *lane = &lanes [best];
            picked [k] = lane->items [lane->pos++];
            lane->after_score = picked [k].score;
            snprintf (lane->after_id, sizeof lane->after_id, "%s", picked [k].id);
            k++;
        }
        if (k > 0) {
            rc = s_load_matching (redis, picked, k, q, queue, flags, list, &found);
            last = picked [k - 1];
            have_last = true;
            scanned += k;
        }
        if (drained)
            break;
    }
    //  Is there anything past what was returned?
    bool more = false;
    for (int b = 0; b < CB_BUCKETS; b++)
        if (lanes [b].pos < lanes [b].count || !lanes [b].exhausted)
            more = true;
    next_cursor [0] = 0;
    if (rc == 0 && more && have_last)
        s_cursor_encode (last.score, last.id, next_cursor, cursor_cap);
    for (int b = 0; b < CB_BUCKETS; b++)
        free (lanes [b].items);
    free (lanes);
    free (picked);
    return rc;
}

/* ---- public: listing ---- */

void
ticket_list_query_init (ticket_list_query_t *query)
{
    memset (query, 0, sizeof *query);
    query->state = -1;
    query->limit = TICKET_LIST_LIMIT_DEFAULT;
}

int
ticket_list_query_param (void *query, const char *key, const char *value)
{
    ticket_list_query_t *q = query;
    if (q->bad)
        return -1;
    static const char *const names [] = {
        "state", "department", "grid", "since", "limit", "cursor", NULL
    };
    int which = -1;
    for (int i = 0; names [i]; i++)
        if (strcmp (key, names [i]) == 0)
            which = i;
    if (which < 0) {
        cb_error_set (&q->err, "unknown_parameter", key,
                      "unknown parameter; the listing takes state, department, grid, since, "
                      "limit and cursor");
        q->bad = true;
        return -1;
    }
    if (q->seen & (1u << which)) {
        cb_error_set (&q->err, "bad_value", key, "give %s once", key);
        q->bad = true;
        return -1;
    }
    q->seen |= 1u << which;
    const char *v = value ? value : "";
    bool ok = true;
    switch (which) {
        case 0: {
            char upper [32];
            size_t len = strlen (v);
            ok = len > 0 && len < sizeof upper;
            for (size_t i = 0; ok && i <= len; i++)
                upper [i] = (char) toupper ((unsigned char) v [i]);
            q->state = ok ? ticket_state_from_name (upper) : -1;
            ok = ok && q->state > 0;
            break;
        }
        case 1:
            ok = s_code_valid (v, sizeof q->department);
            if (ok)
                snprintf (q->department, sizeof q->department, "%s", v);
            break;
        case 2:
            ok = s_code_valid (v, sizeof q->grid);
            if (ok)
                snprintf (q->grid, sizeof q->grid, "%s", v);
            break;
        case 3:
            ok = s_whole_number (v, INT64_MAX / 2, &q->since_ms)
              || cb_time_parse_iso (v, &q->since_ms) == 0;
            ok = ok && q->since_ms >= 0;
            break;
        case 4: {
            int64_t n = 0;
            ok = s_whole_number (v, TICKET_LIST_LIMIT_MAX, &n) && n >= 1;
            q->limit = (int) n;
            break;
        }
        case 5:
            q->has_cursor = s_cursor_decode (v, &q->cursor_ms, q->cursor_id, sizeof q->cursor_id);
            ok = q->has_cursor;
            break;
    }
    if (!ok) {
        static const char *const hints [] = {
            "a ticket state such as RECEIVED or DISPATCHED",
            "a department code",
            "an area code of the city's grids",
            "an ISO 8601 time (2026-11-29T08:00:00+08:00) or Unix milliseconds",
            "a whole number from 1 to 500",
            "the next_cursor of an earlier page",
        };
        cb_error_set (&q->err, "bad_value", key, "%s must be %s", key, hints [which]);
        q->bad = true;
        return -1;
    }
    return 0;
}

//  A page as {KEY: list, "count", "next_cursor"}.
static int
s_page (cb_redis_t *redis, const ticket_list_query_t *query, bool queue, unsigned flags,
        const char *key, json_t **page)
{
    *page = NULL;
    json_t *list = json_array ();
    if (!list)
        return TS_ERROR;
    char cursor [200];
    int rc = s_list (redis, query, queue, flags, list, cursor, sizeof cursor);
    if (rc) {
        json_decref (list);
        return rc;
    }
    size_t count = json_array_size (list);
    *page = json_pack ("{s:o,s:I,s:o}", key, list, "count", (json_int_t) count,
                       "next_cursor", cursor [0] ? json_string (cursor) : json_null ());
    return *page ? TS_OK : TS_ERROR;
}

int
ticket_list_page (cb_redis_t *redis, const ticket_list_query_t *query, unsigned json_flags,
                  json_t **page)
{
    return s_page (redis, query, false, json_flags, "tickets", page);
}

int
ticket_queue_page (cb_redis_t *redis, const ticket_list_query_t *query, json_t **page)
{
    return s_page (redis, query, true, 0, "items", page);
}

/* ---- public: one ticket ---- */

int
ticket_view_load (ticket_store_t *store, const char *id, cb_ticket_t **ticket,
                  cb_event_t ***events, size_t *n_events)
{
    *ticket = NULL;
    *events = NULL;
    *n_events = 0;
    int rc = ticket_store_load (store, id, ticket);
    if (rc != TS_OK)
        return rc;
    rc = ticket_store_history (store, id, events, n_events);
    if (rc == TS_NOT_FOUND)
        rc = TS_OK;                 //  no history yet: an empty list
    if (rc != TS_OK) {
        civicbus__v1__ticket__free_unpacked (*ticket, NULL);
        *ticket = NULL;
    }
    return rc;
}

json_t *
ticket_view_json (const cb_ticket_t *ticket, cb_event_t *const *events, size_t n_events,
                  unsigned json_flags)
{
    json_t *json = ticket_to_json (ticket, json_flags);
    json_t *list = json_array ();
    bool bad = !json || !list;
    for (size_t i = 0; !bad && i < n_events; i++)
        bad = json_array_append_new (list, ticket_event_to_json (events [i])) != 0;
    if (bad)
        json_decref (list);
    else
    if (json_object_set_new (json, "events", list) == 0)   //  takes list either way
        return json;
    json_decref (json);
    return NULL;
}
