/*  open311.h — the intake's Open311 GeoReport v2 door (docs/OPEN311.md):
    private to services/intake, shared by its files.

    Files:  open311.c           routes, formats, errors, discovery, services,
                                service definitions, POST requests, tokens
            open311_requests.c  GET requests (list and one), the FixMyStreet
                                service request updates extension (GET, POST)
            open311_form.c      application/x-www-form-urlencoded bodies
            open311_xml.c       XML answers, written from the JSON answer

    Every answer is built once as JSON (jansson) and written either as JSON
    or, through open311_xml_write, as the XML the specification shows: one
    model, two spellings, so the two formats cannot drift apart. */

#ifndef CIVICBUS_INTAKE_OPEN311_H
#define CIVICBUS_INTAKE_OPEN311_H

#include "intake.h"
#include "civicbus/catalog.h"

typedef enum {
    OPEN311_JSON,
    OPEN311_XML,
} open311_format_t;

/* ---- form bodies (open311_form.c) ---- */

typedef struct {
    char *name;
    char *value;
} open311_field_t;

typedef struct {
    open311_field_t *fields;
    size_t count;
} open311_form_t;

//  Parses `len` bytes of application/x-www-form-urlencoded text: pairs
//  split at '&', name and value at the first '=', '+' is a space, %XX a
//  byte; empty pairs are skipped. Names and values must decode to UTF-8
//  without NUL or other control characters (tab, CR and LF are allowed in
//  values). 0; 1 with `err` (at least 160 bytes) saying what is wrong; -1
//  when out of memory. Free with open311_form_reset either way.
int open311_form_parse (const char *body, size_t len, open311_form_t *form,
                        char *err, size_t errcap);
void open311_form_reset (open311_form_t *form);
//  The first value of `name`, or NULL.
const char *open311_form_get (const open311_form_t *form, const char *name);

/* ---- XML (open311_xml.c) ---- */

//  Writes `json` as an XML document with the UTF-8 declaration: an array
//  becomes <root> with one <item> per element; an object becomes <root>
//  with its members. Inside, an object member becomes an element of its
//  name; an array member <name> holds one element per entry, named by the
//  singular of `name` (attributes/attribute, values/value, endpoints/
//  endpoint, formats/format, else name with a trailing 's' dropped); null
//  is an empty element; true/false, integers and reals (%.15g) are text.
//  Text is escaped (& < > " ') and characters XML 1.0 forbids are dropped.
//  Returns a malloc'd NUL-terminated document and its length, or NULL when
//  out of memory.
char *open311_xml_write (const json_t *json, const char *root, const char *item, size_t *len);

/* ---- answers (open311.c) ---- */

//  Answers `json` (reference stolen) with `status`, as JSON or as XML with
//  the given root and item element names.
int open311_reply (httpd_request_t *req, open311_format_t format, int status, json_t *json,
                   const char *root, const char *item);
//  Answers the Open311 error array [{"code": status, "description": ...}]
//  (<errors><error><code/><description/></error></errors>); logged at warn.
int open311_reply_error (httpd_request_t *req, open311_format_t format, int status,
                         const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));
//  Answers a prepared error array (reference stolen) with `status`.
int open311_reply_errors (httpd_request_t *req, open311_format_t format, int status,
                          json_t *errors);
//  Appends {"code": status, "description": ...} to `errors`.
void open311_error_add (json_t *errors, int status, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Verifies the api_key of a form (POST): 0 with *key filled when it is a
//  key of role reporter_app, operator or admin under its rate; 1 when an
//  answer (403, 429, 503) was queued; -1 when none could be.
int open311_check_key (intake_t *intake, httpd_request_t *req, open311_format_t format,
                       const char *api_key, apikey_info_t *key);
//  True when `jurisdiction_id` is NULL or this intake's district; else
//  answers 404 and returns false.
bool open311_jurisdiction_ok (intake_t *intake, httpd_request_t *req, open311_format_t format,
                              const char *jurisdiction_id, int *result);

//  "2026-09-30T16:00:00+08:00", or JSON null for 0.
json_t *open311_time (int64_t ms);

/* ---- requests (open311_requests.c) ---- */

//  GET requests.{fmt}, GET requests/{id}.{fmt}.
int open311_requests_list (intake_t *intake, httpd_request_t *req, open311_format_t format);
int open311_request_one (intake_t *intake, httpd_request_t *req, open311_format_t format,
                         const char *id);
//  GET tokens/{token}.{fmt}: we never hand out tokens (every POST answers
//  a service_request_id); a token is read as a request id for clients that
//  ask anyway.
int open311_token (intake_t *intake, httpd_request_t *req, open311_format_t format,
                   const char *token);
//  GET and POST servicerequestupdates.{fmt}.
int open311_updates_list (intake_t *intake, httpd_request_t *req, open311_format_t format);
//  `key` is the form's verified api_key.
int open311_update_post (intake_t *intake, httpd_request_t *req, open311_format_t format,
                         const apikey_info_t *key, const open311_form_t *form);

#endif
