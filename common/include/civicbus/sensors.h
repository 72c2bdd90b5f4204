/*  sensors.h — sensor and camera events (POST /v1/events): the per-type
    configuration (deploy/config/sensors.json), one event's validation, the
    ticket an event opens, and folding events into open tickets in Redis.

    CONFIGURATION
        {"types": {"illegal_parking": {"category": "urban.event.street.parking_motor",
                                       "radius_m": 50, "window_s": 3600,
                                       "auto_accept_confidence": 0.8,
                                       "request_type": "report", "label": "违章停车"}}}
    type names are 1..32 of [a-z0-9_]; category required; radius 1..10000 m;
    window 1 s..30 days; threshold 0..1; request_type default "report";
    label (for descriptions) default the type name. Unknown fields refused.

    AN EVENT
        {"type", "location": {"lat", "lon"}, "confidence": 0..1,
         "time": ISO 8601, "device_id": 1..64 visible ASCII, "image_url"?}
    refused (per event) when a field is missing or wrong, the type is not
    configured, or the time is more than 5 minutes ahead of ours or older
    than the type's window plus a day.

    FOLDING (Redis; per type T, hash tag {s:T}, one slot):
        sgeo:{s:T}        GEO   fold id -> the point of its first event
        sact:{s:T}        zset  fold id -> ms of its last fold (our clock)
        sseq:{s:T}        counter behind fold ids
        sfold:{s:T}:F     hash  count, first, last (event ms), ticket, device
    One script decides fold-or-new for an event: it drops folds idle longer
    than the window, then the nearest fold within the radius whose
    [first - window, last + window] holds the event's time takes it (count,
    first, last); none: a new fold. A new fold's ticket is created by the
    caller with the external id "sensor-fold:T:F" (so its idempotency key
    is fixed by the fold): a crash between the two steps leaves a fold
    without ticket, and the next event folded into it creates the ticket
    (the same one, should two try at once). A fold whose ticket is final is
    closed by the caller (sensor_fold_close) and the event folded again. */

#ifndef CIVICBUS_SENSORS_H
#define CIVICBUS_SENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "civicbus/error.h"
#include "civicbus/redis.h"
#include "civicbus/ticket_fsm.h"

#define SENSOR_TYPE_MAX         32
#define SENSOR_DEVICE_MAX       64
#define SENSOR_EVENTS_MAX       1000        //  events in one request
#define SENSOR_FUTURE_MS        (5 * 60 * 1000)
#define SENSOR_FOLD_ID_MAX      24

typedef struct {
    const char *name;
    const char *category;
    const char *label;
    int request_type;                   //  RequestType
    int radius_m;
    int window_s;
    double threshold;                   //  below: operator review
} sensor_type_t;

typedef struct _sensor_config_t sensor_config_t;

//  Parses and validates the configuration; NULL with `err` naming the
//  field ("types.parking.radius_m: 1..10000") otherwise.
sensor_config_t *sensor_config_new (const char *json_text, size_t len, char *err, size_t cap);
void sensor_config_destroy (sensor_config_t **self_p);
//  The type called `name`, or NULL.
const sensor_type_t *sensor_config_type (const sensor_config_t *self, const char *name);
size_t sensor_config_count (const sensor_config_t *self);

typedef struct {
    const sensor_type_t *type;
    double lat, lon, confidence;
    int64_t time_ms;
    char device_id [SENSOR_DEVICE_MAX + 1];
    char image_url [1025];              //  "" for none
} sensor_event_t;

//  Validates one event (a JSON value from the request's array) at `now_ms`.
//  0 with *ev filled, or -1 with err (code, field within the event,
//  message).
int sensor_event_parse (const sensor_config_t *config, json_t *item, int64_t now_ms,
                        sensor_event_t *ev, cb_error_t *err);

//  The ticket a new fold opens (pure): source sensor, the type's category
//  and request type, a description, the point, the image as attachment,
//  external_id "sensor-fold:T:F", sensor_fold (count 1), and, below the
//  type's threshold, needs_review + review_required with the reason. NULL
//  when out of memory.
cb_ticket_t *sensor_ticket_new (const sensor_event_t *ev, const char *fold_id);

//  Sets t->sensor_fold's count, first and last seen to the larger count and
//  the wider span (pure). True when anything changed.
bool sensor_fold_merge_counts (cb_ticket_t *t, int64_t count, int64_t first_ms, int64_t last_ms);

/* ---- folding in Redis ---- */

typedef struct _sensor_folds_t sensor_folds_t;

typedef struct {
    bool created;                       //  a new fold (the caller makes its ticket)
    char fold_id [SENSOR_FOLD_ID_MAX];
    char ticket_id [48];                //  "" while the fold has none
    int64_t count, first_ms, last_ms;
} sensor_fold_t;

sensor_folds_t *sensor_folds_new (void);
void sensor_folds_destroy (sensor_folds_t **self_p);
//  Loads the scripts (once, before threads share the object). 0 or -1.
int sensor_folds_prepare (sensor_folds_t *self, cb_redis_t *redis);

//  Folds `n` events in one pipelined round trip; out [i] for ev [i]. 0, or
//  -1 when Redis failed (nothing is known of the events then: a retry of
//  the request counts them again, the documented at-least-once).
int sensor_folds_fold (sensor_folds_t *self, cb_redis_t *redis, const sensor_event_t *ev,
                       size_t n, int64_t now_ms, sensor_fold_t *out);
//  Records the fold's ticket (if the fold still exists). 0 or -1.
int sensor_folds_set_ticket (sensor_folds_t *self, cb_redis_t *redis, const char *type,
                             const char *fold_id, const char *ticket_id, int window_s);
//  Ends a fold (its ticket is final). 0 or -1.
int sensor_folds_close (sensor_folds_t *self, cb_redis_t *redis, const char *type,
                        const char *fold_id);
//  The fold's count, first and last; 1 when it is gone, 0, or -1.
int sensor_folds_read (sensor_folds_t *self, cb_redis_t *redis, const char *type,
                       const char *fold_id, int64_t *count, int64_t *first_ms,
                       int64_t *last_ms);

#endif
