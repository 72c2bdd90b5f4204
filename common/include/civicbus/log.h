/*  log.h — JSON lines on stderr, one object per event.

    {"ts":"2026-11-29T14:36:30+08:00","level":"info","service":"intake",
     "msg":"ticket stored","ticket":"320105-20261129-00000042"}

    The level comes from CIVICBUS_LOG_LEVEL (debug, info, warn, error; default
    info). Messages and field values are masked for mainland mobile numbers
    before they are written, so personal data does not leak into logs even
    when a caller forgets; callers still mask names themselves (cb_mask_name).
    Safe from several threads: each line is one write(2). */

#ifndef CIVICBUS_LOG_H
#define CIVICBUS_LOG_H

typedef enum { CB_LOG_DEBUG = 0, CB_LOG_INFO, CB_LOG_WARN, CB_LOG_ERROR } cb_log_level_t;

//  Names the service in every line and reads the level from the environment.
//  Call once at start; logging before it works with service "civicbus".
void cb_log_init (const char *service);
//  Overrides the level (tests, --verbose).
void cb_log_set_level (cb_log_level_t level);
cb_log_level_t cb_log_level (void);
//  Parses "debug".."error"; -1 for anything else.
int cb_log_level_from_name (const char *name);

//  Writes one line. `fields` is NULL or a NULL-terminated list of key, value
//  string pairs added as JSON members:
//      cb_log (CB_LOG_INFO, "ticket stored", "ticket", id, "dept", d, NULL);
void cb_log (cb_log_level_t level, const char *msg, ...);
//  printf-style message, no extra fields.
void cb_logf (cb_log_level_t level, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

#define cb_debug(...) cb_logf (CB_LOG_DEBUG, __VA_ARGS__)
#define cb_info(...)  cb_logf (CB_LOG_INFO, __VA_ARGS__)
#define cb_warn(...)  cb_logf (CB_LOG_WARN, __VA_ARGS__)
#define cb_error(...) cb_logf (CB_LOG_ERROR, __VA_ARGS__)

#endif
