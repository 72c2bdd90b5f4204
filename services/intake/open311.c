/*  open311.c — Open311 GeoReport v2 on the intake, under /open311/v2/
    (docs/OPEN311.md has what we support and why; the specification is
    http://wiki.open311.org/GeoReport_v2, the schemas are ../shared/open311).

    Routes (every path ends in .json or .xml; anything else is 404 in XML,
    the format the specification requires):
        GET  discovery.F                     endpoints, formats
        GET  services.F                      one service per catalogue category
        GET  services/{code}.F               its definition (attributes)
        POST requests.F                      a new ticket (source open311)
        GET  requests.F, requests/{id}.F     open311_requests.c
        GET  tokens/{token}.F                open311_requests.c
        GET  servicerequestupdates.F         open311_requests.c (FixMyStreet)
        POST servicerequestupdates.F         open311_requests.c
    GETs need no key (the specification's GETs are public; they show no
    personal data). POSTs carry api_key in the form: one of our API keys
    with role reporter_app, operator or admin, checked and rate limited as
    httpd checks Bearer keys. Errors are [{"code", "description"}] with 400,
    403 or 404 (and 405, 429, 503 where HTTP needs them).

    A POST requests is stored at once through intake_ticket_submit, the path
    POST /v1/tickets takes, so it answers service_request_id and never a
    token (the specification's token is for servers that cannot name the
    request before answering). */

#include "open311.h"
#include "civicbus/clock.h"
#include "civicbus/log.h"
#include "civicbus/mask.h"
#include "civicbus/ticket_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SPEC "http://wiki.open311.org/GeoReport_v2"
//  When this API last changed (discovery's changeset).
#define S_CHANGESET "2026-11-29T00:00:00+08:00"
#define S_ATTR_STRING_MAX 200       //  code points of a "string" answer
#define S_ATTR_TEXT_MAX 2000        //  code points of a "text" answer
#define S_NAME_MAX 160              //  bytes of first_name + last_name

static const unsigned s_poster_roles =
    APIKEY_ROLE_REPORTER_APP | APIKEY_ROLE_OPERATOR | APIKEY_ROLE_ADMIN;

//  The request types, most likely for a report from an Open311 client first:
//  the first one a category takes is its default.
static const struct {
    unsigned bit;
    const char *key;
    const char *name;
} s_request_types [] = {
    { CATALOG_COMPLAINT, "complaint", "投诉 complaint" },
    { CATALOG_REPORT, "report", "举报 report" },
    { CATALOG_HELP, "help", "求助 help" },
    { CATALOG_CONSULT, "consult", "咨询 consult" },
    { CATALOG_SUGGESTION, "suggestion", "建议 suggestion" },
};
#define S_REQUEST_TYPES (sizeof s_request_types / sizeof s_request_types [0])

/* ---- answers ---- */

int
open311_reply (httpd_request_t *req, open311_format_t format, int status, json_t *json,
               const char *root, const char *item)
{
    if (!json)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    if (format == OPEN311_JSON)
        return httpd_reply_json (req, status, json);
    size_t len = 0;
    char *xml = open311_xml_write (json, root, item, &len);
    json_decref (json);
    if (!xml)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    int rc = httpd_reply_text (req, status, "text/xml; charset=utf-8", xml, len);
    free (xml);
    return rc;
}

void
open311_error_add (json_t *errors, int status, const char *fmt, ...)
{
    char text [512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (text, sizeof text, fmt, ap);
    va_end (ap);
    json_array_append_new (errors, json_pack ("{s:i, s:s}", "code", status, "description", text));
}

int
open311_reply_errors (httpd_request_t *req, open311_format_t format, int status, json_t *errors)
{
    json_t *first = json_array_get (errors, 0);
    cb_log (CB_LOG_WARN, "request refused", "door", "open311",
            "path", httpd_request_path (req),
            "message", first ? json_string_value (json_object_get (first, "description")) : "",
            NULL);
    return open311_reply (req, format, status, errors, "errors", "error");
}

int
open311_reply_error (httpd_request_t *req, open311_format_t format, int status,
                     const char *fmt, ...)
{
    char text [512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (text, sizeof text, fmt, ap);
    va_end (ap);
    json_t *errors = json_array ();
    if (errors)
        open311_error_add (errors, status, "%s", text);
    return open311_reply_errors (req, format, status, errors);
}

json_t *
open311_time (int64_t ms)
{
    if (ms <= 0)
        return json_null ();
    char text [40];
    return json_string (cb_time_format_iso (ms, text, sizeof text));
}

int
open311_check_key (intake_t *intake, httpd_request_t *req, open311_format_t format,
                   const char *api_key, apikey_info_t *key)
{
    if (!api_key || !*api_key)
        return open311_reply_error (req, format, MHD_HTTP_FORBIDDEN,
                                    "api_key is required to post") ? -1 : 1;
    if (strlen (api_key) > APIKEY_SECRET_MAX)
        return open311_reply_error (req, format, MHD_HTTP_FORBIDDEN,
                                    "invalid api_key") ? -1 : 1;
    if (httpd_redis_down (intake->httpd))
        return httpd_reply_unavailable (req, "breaker open") ? -1 : 1;
    intake_worker_t *worker = intake_pool_take (intake->pool);
    if (!worker)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory") ? -1 : 1;
    int rc = apikey_cache_verify (intake->keys, worker->redis, api_key, key);
    intake_pool_give (intake->pool, worker);
    if (rc < 0) {
        httpd_redis_failed (intake->httpd);
        return httpd_reply_unavailable (req, "key check") ? -1 : 1;
    }
    if (rc > 0)
        return open311_reply_error (req, format, MHD_HTTP_FORBIDDEN,
                                    "invalid api_key (unknown or revoked)") ? -1 : 1;
    if (!(key->role & s_poster_roles))
        return open311_reply_error (req, format, MHD_HTTP_FORBIDDEN,
                                    "an api_key with role %s may not post Open311 requests",
                                    apikey_role_name (key->role)) ? -1 : 1;
    if (!apikey_cache_allow (intake->keys, key, cb_clock_now_ms ())) {
        httpd_add_header (req, MHD_HTTP_HEADER_RETRY_AFTER, "1");
        return open311_reply_error (req, format, MHD_HTTP_TOO_MANY_REQUESTS,
                                    "api_key '%s' is over its rate of %d requests a second",
                                    key->name, key->rate_per_s) ? -1 : 1;
    }
    return 0;
}

bool
open311_jurisdiction_ok (intake_t *intake, httpd_request_t *req, open311_format_t format,
                         const char *jurisdiction_id, int *result)
{
    if (!jurisdiction_id || strcmp (jurisdiction_id, intake->district) == 0)
        return true;
    *result = open311_reply_error (req, format, MHD_HTTP_NOT_FOUND,
                                   "jurisdiction_id '%s' not found; this endpoint serves '%s'",
                                   jurisdiction_id, intake->district);
    return false;
}

/* ---- private: paths ---- */

//  "services.json" -> "services", JSON. 0, or -1 for no or another suffix.
static int
s_split (const char *file, char *base, size_t cap, open311_format_t *format)
{
    const char *dot = strrchr (file, '.');
    if (!dot || dot == file || (size_t) (dot - file) >= cap)
        return -1;
    if (strcmp (dot, ".json") == 0)
        *format = OPEN311_JSON;
    else
    if (strcmp (dot, ".xml") == 0)
        *format = OPEN311_XML;
    else
        return -1;
    memcpy (base, file, (size_t) (dot - file));
    base [dot - file] = 0;
    return 0;
}

static int
s_no_such_path (httpd_request_t *req, open311_format_t format)
{
    return open311_reply_error (req, format, MHD_HTTP_NOT_FOUND,
        "no such resource: %s (Open311 paths end in .xml or .json: discovery, services, "
        "services/{service_code}, requests, requests/{id}, tokens/{token}, "
        "servicerequestupdates)", httpd_request_path (req));
}

/* ---- private: services ---- */

//  "realtime" when the dispatcher routes the category by itself (a rule
//  can match it, or the catalogue has a fallback); "batch" when a ticket of
//  it waits for an operator before anyone works on it.
static const char *
s_service_type (const catalog_t *catalog, const catalog_category_t *category)
{
    const char *department, *policy;
    if (catalog_fallback (catalog, &department, &policy) == 0)
        return "realtime";
    for (size_t i = 0; i < catalog_rule_count (catalog); i++) {
        const char *pattern = catalog_rule_at (catalog, i)->category;
        size_t len = strlen (pattern);
        if (strcmp (pattern, "*") == 0 || strcmp (pattern, category->code) == 0
        ||  (len && pattern [len - 1] == '*' && strncmp (pattern, category->code, len - 1) == 0))
            return "realtime";
    }
    return "batch";
}

static json_t *
s_service (const catalog_t *catalog, const catalog_category_t *category)
{
    char keywords [1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < category->keyword_count && used < sizeof keywords; i++)
        used += (size_t) snprintf (keywords + used, sizeof keywords - used, "%s%s",
                                   i ? "," : "", category->keywords [i]);
    return json_pack ("{s:s, s:s, s:s?, s:b, s:s, s:s?, s:s?}",
                      "service_code", category->code,
                      "service_name", category->name_zh ? category->name_zh : category->name,
                      "description", category->description,
                      "metadata", 1,
                      "type", s_service_type (catalog, category),
                      "keywords", category->keyword_count ? keywords : NULL,
                      "group", category->group);
}

static json_t *
s_attribute (const char *code, const char *datatype, bool required, int order,
             const char *description)
{
    return json_pack ("{s:b, s:s, s:s, s:b, s:n, s:i, s:s?}",
                      "variable", 1, "code", code, "datatype", datatype,
                      "required", required, "datatype_description", "order", order,
                      "description", description);
}

//  The attributes: the category's questions, then urgency and request type.
static json_t *
s_definition (const catalog_category_t *category)
{
    json_t *attributes = json_array ();
    int order = 1;
    for (size_t i = 0; attributes && i < category->question_count; i++) {
        const catalog_question_t *q = &category->questions [i];
        json_t *attribute = s_attribute (q->code, q->datatype, q->required, order++,
                                         q->description);
        if (q->value_count) {
            json_t *values = json_array ();
            for (size_t v = 0; v < q->value_count; v++)
                json_array_append_new (values, json_pack ("{s:s, s:s}",
                                       "key", q->values [v].key, "name", q->values [v].name));
            json_object_set_new (attribute, "values", values);
        }
        json_array_append_new (attributes, attribute);
    }
    json_t *urgency = s_attribute ("urgency", "singlevaluelist", false, order++,
                                   "紧急程度 Urgency (default normal)");
    json_object_set_new (urgency, "values",
                         json_pack ("[{s:s, s:s}, {s:s, s:s}]",
                                    "key", "normal", "name", "一般 normal",
                                    "key", "urgent", "name", "紧急 urgent"));
    json_array_append_new (attributes, urgency);
    json_t *types = json_array ();
    const char *first = NULL;
    for (size_t i = 0; i < S_REQUEST_TYPES; i++)
        if (!category->request_types || (category->request_types & s_request_types [i].bit)) {
            first = first ? first : s_request_types [i].key;
            json_array_append_new (types, json_pack ("{s:s, s:s}", "key", s_request_types [i].key,
                                                     "name", s_request_types [i].name));
        }
    char description [128];
    snprintf (description, sizeof description, "诉求类型 Request type (default %s)",
              first ? first : "complaint");
    json_t *type = s_attribute ("request_type", "singlevaluelist", false, order, description);
    json_object_set_new (type, "values", types);
    json_array_append_new (attributes, type);
    return json_pack ("{s:s, s:o}", "service_code", category->code, "attributes", attributes);
}

static int
s_services (intake_t *intake, httpd_request_t *req, open311_format_t format)
{
    citydata_snapshot_t *snap = citydata_acquire (intake->citydata);
    int result;
    if (!snap->catalog)
        result = httpd_reply_unavailable (req, "no dispatch catalogue loaded yet");
    else {
        json_t *list = json_array ();
        for (size_t i = 0; list && i < catalog_category_count (snap->catalog); i++)
            json_array_append_new (list, s_service (snap->catalog,
                                                    catalog_category_at (snap->catalog, i)));
        result = open311_reply (req, format, MHD_HTTP_OK, list, "services", "service");
    }
    citydata_release (intake->citydata, &snap);
    return result;
}

static int
s_service_definition (intake_t *intake, httpd_request_t *req, open311_format_t format,
                      const char *code)
{
    citydata_snapshot_t *snap = citydata_acquire (intake->citydata);
    const catalog_category_t *category = snap->catalog ? catalog_category (snap->catalog, code)
                                                       : NULL;
    int result;
    if (!snap->catalog)
        result = httpd_reply_unavailable (req, "no dispatch catalogue loaded yet");
    else
    if (!category)
        result = open311_reply_error (req, format, MHD_HTTP_NOT_FOUND,
                                      "service_code '%s' not found", code);
    else
        result = open311_reply (req, format, MHD_HTTP_OK, s_definition (category),
                                "service_definition", "attribute");
    citydata_release (intake->citydata, &snap);
    return result;
}

static int
s_discovery (httpd_request_t *req, open311_format_t format)
{
    const char *host = httpd_request_header (req, MHD_HTTP_HEADER_HOST);
    const char *proto = httpd_request_header (req, "X-Forwarded-Proto");
    char url [256];
    snprintf (url, sizeof url, "%s://%s/open311/v2",
              proto && strcmp (proto, "https") == 0 ? "https" : "http",
              host && *host && !strpbrk (host, " \"<>/\\") ? host : "localhost");
    json_t *json = json_pack (
        "{s:s, s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:[s, s]}]}",
        "changeset", S_CHANGESET,
        "contact", "城市运行管理指挥中心 (the city's command center): ask it for an api_key",
        "key_service", "API keys are issued by the command center's administrators "
                       "(civicbus keys create --role reporter_app)",
        "endpoints",
            "specification", S_SPEC, "url", url, "changeset", S_CHANGESET,
            "type", "production", "formats", "text/xml", "application/json");
    return open311_reply (req, format, MHD_HTTP_OK, json, "discovery", "endpoint");
}

/* ---- private: POST requests ---- */

typedef struct {
    const char *code;
    const char *description;
    const char *datatype;
    bool required;
    const catalog_choice_t *values;
    size_t value_count;
} s_attr_t;

//  attribute[CODE] or attribute[CODE][]: CODE into `code`. false otherwise.
static bool
s_attribute_name (const char *name, char *code, size_t cap)
{
    static const char prefix [] = "attribute[";
    if (strncmp (name, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *start = name + sizeof prefix - 1;
    const char *end = strchr (start, ']');
    if (!end || end == start || (size_t) (end - start) >= cap)
        return false;
    if (strcmp (end, "]") != 0 && strcmp (end, "][]") != 0)
        return false;
    memcpy (code, start, (size_t) (end - start));
    code [end - start] = 0;
    return true;
}

static const char *
s_choice_name (const s_attr_t *attr, const char *key)
{
    for (size_t i = 0; i < attr->value_count; i++)
        if (strcmp (attr->values [i].key, key) == 0)
            return attr->values [i].name;
    return NULL;
}

static bool
s_blank (const char *text)
{
    return !text || text [strspn (text, " \t\r\n")] == 0;
}

//  Checks one attribute's answers against its definition; appends errors,
//  and for a question a line "description: answer" to `summary`.
static void
s_check_attribute (const open311_form_t *form, const s_attr_t *attr, json_t *errors,
                   char *summary, size_t summary_cap, const char **single)
{
    const char *values [32];
    size_t n = 0;
    char code [80];
    bool too_many = false;
    for (size_t i = 0; i < form->count; i++)
        if (s_attribute_name (form->fields [i].name, code, sizeof code)
        &&  strcmp (code, attr->code) == 0 && !s_blank (form->fields [i].value)) {
            if (n < sizeof values / sizeof values [0])
                values [n++] = form->fields [i].value;
            else
                too_many = true;
        }
    *single = NULL;
    if (n == 0) {
        if (attr->required)
            open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                               "attribute[%s] is required (%s)", attr->code,
                               attr->description ? attr->description : attr->datatype);
        return;
    }
    bool multi = strcmp (attr->datatype, "multivaluelist") == 0;
    if ((n > 1 && !multi) || too_many) {
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST, "attribute[%s] takes %s", attr->code,
                           multi ? "at most 32 values" : "one value");
        return;
    }
    char answer [1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const char *value = values [i];
        const char *shown = value;
        if (strcmp (attr->datatype, "number") == 0) {
            char *end;
            double number = strtod (value, &end);
            if (end == value || *end || !isfinite (number)) {
                open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                                   "attribute[%s] must be a number", attr->code);
                return;
            }
        }
        else
        if (strcmp (attr->datatype, "datetime") == 0) {
            int64_t ms;
            if (cb_time_parse_iso (value, &ms)) {
                open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                                   "attribute[%s] must be an ISO 8601 date and time", attr->code);
                return;
            }
        }
        else
        if (strcmp (attr->datatype, "string") == 0 || strcmp (attr->datatype, "text") == 0) {
            size_t max = strcmp (attr->datatype, "string") == 0 ? S_ATTR_STRING_MAX
                                                                 : S_ATTR_TEXT_MAX;
            if (cb_utf8_length (value, strlen (value)) > max) {
                open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                                   "attribute[%s] is longer than %zu characters", attr->code, max);
                return;
            }
        }
        else {
            shown = s_choice_name (attr, value);
            if (!shown) {
                char keys [512] = "";
                size_t k_used = 0;
                for (size_t v = 0; v < attr->value_count && k_used < sizeof keys; v++)
                    k_used += (size_t) snprintf (keys + k_used, sizeof keys - k_used, "%s%s",
                                                 v ? ", " : "", attr->values [v].key);
                open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                                   "attribute[%s]: '%s' is not one of its values (%s)",
                                   attr->code, value, keys);
                return;
            }
            for (size_t j = 0; j < i; j++)
                if (strcmp (values [j], value) == 0) {
                    open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                                       "attribute[%s]: '%s' is given twice", attr->code, value);
                    return;
                }
        }
        if (used < sizeof answer)
            used += (size_t) snprintf (answer + used, sizeof answer - used, "%s%s",
                                       i ? "、" : "", shown);
    }
    *single = values [0];
    if (summary) {
        size_t len = strlen (summary);
        snprintf (summary + len, summary_cap - len, "\n%s: %s",
                  attr->description ? attr->description : attr->code, answer);
    }
}

//  The native field a ticket_json error names, as the Open311 field.
static const char *
s_open311_field (const char *field)
{
    static const char *const map [][2] = {
        { "location.lat", "lat" }, { "location.lon", "long" },
        { "location.address", "address_string" }, { "location", "lat/long or address_string" },
        { "reporter.name", "first_name/last_name" }, { "reporter.phone", "phone" },
        { "attachments", "media_url" }, { "attachments[0]", "media_url" },
        { "category", "service_code" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map [0]; i++)
        if (strcmp (field, map [i][0]) == 0)
            return map [i][1];
    return field;
}

//  A number field (lat, long). 0 absent, 1 set, -1 not a number (error added).
static int
s_number (const char *text, const char *name, double *out, json_t *errors)
{
    if (!text || !*text)
        return 0;
    char *end;
    *out = strtod (text, &end);
    if (end == text || *end || !isfinite (*out)) {
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST, "%s must be a number", name);
        return -1;
    }
    return 1;
}

//  The reporter's name: "last first" run together when either is Chinese
//  (张 + 三 = 张三), "first last" otherwise.
static void
s_person_name (const char *first, const char *last, char *out, size_t cap)
{
    first = s_blank (first) ? "" : first;
    last = s_blank (last) ? "" : last;
    bool ascii = true;
    for (const char *p = first; *p; p++)
        ascii = ascii && (unsigned char) *p < 0x80;
    for (const char *p = last; *p; p++)
        ascii = ascii && (unsigned char) *p < 0x80;
    if (ascii)
        snprintf (out, cap, "%s%s%s", first, *first && *last ? " " : "", last);
    else
        snprintf (out, cap, "%s%s", last, first);
}

//  The native request body for the form, or NULL with errors added.
static json_t *
s_native_body (const open311_form_t *form, const catalog_category_t *category, json_t *errors)
{
    //  The attributes: every attribute[...] must be one the definition has.
    s_attr_t attrs [64];
    size_t n_attrs = 0;
    for (size_t i = 0; i < category->question_count && n_attrs < 62; i++) {
        const catalog_question_t *q = &category->questions [i];
        attrs [n_attrs++] = (s_attr_t) { q->code, q->description, q->datatype, q->required,
                                         q->values, q->value_count };
    }
    static const catalog_choice_t urgencies [] = {
        { "normal", "一般 normal" }, { "urgent", "紧急 urgent" } };
    catalog_choice_t types [S_REQUEST_TYPES];
    size_t n_types = 0;
    for (size_t i = 0; i < S_REQUEST_TYPES; i++)
        if (!category->request_types || (category->request_types & s_request_types [i].bit))
            types [n_types++] = (catalog_choice_t) { s_request_types [i].key,
                                                     s_request_types [i].name };
    size_t n_questions = n_attrs;
    attrs [n_attrs++] = (s_attr_t) { "urgency", "urgency", "singlevaluelist", false,
                                     urgencies, 2 };
    attrs [n_attrs++] = (s_attr_t) { "request_type", "request type", "singlevaluelist", false,
                                     types, n_types };
    char code [80];
    for (size_t i = 0; i < form->count; i++) {
        const char *name = form->fields [i].name;
        if (strncmp (name, "attribute", 9) != 0)
            continue;
        bool known = false;
        if (s_attribute_name (name, code, sizeof code))
            for (size_t a = 0; a < n_attrs && !known; a++)
                known = strcmp (attrs [a].code, code) == 0;
        if (!known)
            open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                               "%s is not an attribute of service '%s' (see services/%s.xml)",
                               name, category->code, category->code);
    }
    char summary [4096] = "";
    const char *urgency = NULL, *request_type = NULL, *ignored;
    for (size_t a = 0; a < n_questions; a++)
        s_check_attribute (form, &attrs [a], errors, summary, sizeof summary, &ignored);
    s_check_attribute (form, &attrs [n_questions], errors, NULL, 0, &urgency);
    s_check_attribute (form, &attrs [n_questions + 1], errors, NULL, 0, &request_type);

    //  The location: a point, an address, or at least an address id.
    double lat = 0, lon = 0;
    int has_lat = s_number (open311_form_get (form, "lat"), "lat", &lat, errors);
    int has_lon = s_number (open311_form_get (form, "long"), "long", &lon, errors);
    const char *address = open311_form_get (form, "address_string");
    const char *address_id = open311_form_get (form, "address_id");
    if (has_lat >= 0 && has_lon >= 0 && has_lat != has_lon)
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST, "lat and long go together: send both");
    else
    if (has_lat == 0 && s_blank (address) && s_blank (address_id))
        open311_error_add (errors, MHD_HTTP_BAD_REQUEST,
                           "a location is required: lat and long, or address_string "
                           "(or address_id)");
    if (json_array_size (errors))
        return NULL;

    json_t *location = json_object ();
    if (has_lat > 0) {
        json_object_set_new (location, "lat", json_real (lat));
        json_object_set_new (location, "lon", json_real (lon));
    }
    char address_text [512];
    if (!s_blank (address))
        json_object_set_new (location, "address", json_string (address));
    else
    if (!s_blank (address_id)) {
        //  We keep no master address repository: the id is kept as text
        //  for the people who will go there.
        snprintf (address_text, sizeof address_text, "地址编号 address_id %s", address_id);
        json_object_set_new (location, "address", json_string (address_text));
    }

    const char *given = open311_form_get (form, "description");
    char *description = NULL;
    if (asprintf (&description, "%s%s%s",
                  s_blank (given) ? (category->name_zh ? category->name_zh : category->code)
                                  : given,
                  summary [0] ? "\n\n【补充信息】" : "", summary) < 0) {
        json_decref (location);
        return NULL;
    }
    json_t *body = json_pack ("{s:s, s:s, s:s, s:s, s:s, s:o}",
                              "source", "open311",
                              "request_type", request_type ? request_type : types [0].key,
                              "category", category->code,
                              "urgency", urgency ? urgency : "normal",
                              "description", description,
                              "location", location);
    free (description);
    if (!body)
        return NULL;
    char name [S_NAME_MAX];
    s_person_name (open311_form_get (form, "first_name"), open311_form_get (form, "last_name"),
                   name, sizeof name);
    const char *phone = open311_form_get (form, "phone");
    if (*name || !s_blank (phone)) {
        json_t *reporter = json_object ();
        if (*name)
            json_object_set_new (reporter, "name", json_string (name));
        if (!s_blank (phone))
            json_object_set_new (reporter, "phone", json_string (phone));
        json_object_set_new (body, "reporter", reporter);
    }
    const char *media_url = open311_form_get (form, "media_url");
    if (!s_blank (media_url))
        json_object_set_new (body, "attachments", json_pack ("[s]", media_url));
    return body;
}

static json_t *
s_created (const char *id)
{
    char notice [512];
    snprintf (notice, sizeof notice,
              "已受理登记，工单号 %s。将按派单目录派至承办部门办理，进展可查询 requests/%s。"
              " Received as ticket %s; it will be sent to the department in charge.",
              id, id, id);
    return json_pack ("[{s:s, s:s}]", "service_request_id", id, "service_notice", notice);
}

//  The form of a POST: 0 with *form filled; else an answer was queued and
//  *result holds it.
static int
s_read_form (httpd_request_t *req, open311_format_t format, open311_form_t *form, int *result)
{
    if (!httpd_media_type_is (httpd_request_header (req, MHD_HTTP_HEADER_CONTENT_TYPE),
                              "application/x-www-form-urlencoded")) {
        *result = open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST,
            "send the form as Content-Type: application/x-www-form-urlencoded; charset=utf-8");
        return -1;
    }
    size_t len = 0;
    const char *body = httpd_request_body (req, &len);
    char err [160] = "";
    int rc = open311_form_parse (body, len, form, err, sizeof err);
    if (rc == 0)
        return 0;
    open311_form_reset (form);
    *result = rc > 0 ? open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST, "%s", err)
                     : httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                          "out of memory");
    return -1;
}

static int
s_create (intake_t *intake, httpd_request_t *req, open311_format_t format,
          const open311_form_t *form)
{
    apikey_info_t key;
    int rc = open311_check_key (intake, req, format, open311_form_get (form, "api_key"), &key);
    if (rc)
        return rc < 0 ? -1 : 0;
    int result = 0;
    if (!open311_jurisdiction_ok (intake, req, format,
                                  open311_form_get (form, "jurisdiction_id"), &result))
        return result;
    const char *code = open311_form_get (form, "service_code");
    if (s_blank (code))
        return open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST,
                                    "service_code is required");

    //  The native body, built against one snapshot of the catalogue.
    json_t *errors = json_array ();
    citydata_snapshot_t *snap = citydata_acquire (intake->citydata);
    const catalog_category_t *category = snap->catalog ? catalog_category (snap->catalog, code)
                                                       : NULL;
    json_t *body = NULL;
    if (!snap->catalog)
        result = httpd_reply_unavailable (req, "no dispatch catalogue loaded yet");
    else
    if (!category)
        result = open311_reply_error (req, format, MHD_HTTP_NOT_FOUND,
                                      "service_code '%s' not found", code);
    else
        body = s_native_body (form, category, errors);
    citydata_release (intake->citydata, &snap);
    if (!category || (!body && json_array_size (errors) == 0)) {
        json_decref (errors);
        json_decref (body);
        if (category)
            return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                      "out of memory");
        return result;
    }
    if (!body)
        return open311_reply_errors (req, format, MHD_HTTP_BAD_REQUEST, errors);
    json_decref (errors);

    //  Through the native parser (every rule of POST /v1/tickets), then the
    //  one creation path.
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    if (!text)
        return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                  "out of memory");
    cb_error_t err;
    cb_error_clear (&err);
    cb_ticket_t *t = NULL;
    rc = ticket_from_request_json (text, strlen (text), &t, &err);
    free (text);
    if (rc) {
        if (strcmp (err.code, "no_memory") == 0)
            return httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                      "out of memory");
        return open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST, "%s: %s",
                                    s_open311_field (err.field), err.message);
    }
    size_t body_len = 0;
    const char *raw = httpd_request_body (req, &body_len);
    intake_submit_t out;
    switch (intake_ticket_submit (intake, &key, t, NULL, raw, body_len, &out)) {
        case INTAKE_SUBMIT_CREATED:
            result = open311_reply (req, format, MHD_HTTP_OK, s_created (t->id),
                                    "service_requests", "request");
            break;
        case INTAKE_SUBMIT_REPEAT:
        case INTAKE_SUBMIT_KEY_REUSED:
            result = open311_reply (req, format, MHD_HTTP_OK, s_created (out.first->id),
                                    "service_requests", "request");
            break;
        case INTAKE_SUBMIT_FORBIDDEN:
            result = open311_reply_error (req, format, MHD_HTTP_FORBIDDEN, "%s",
                                          out.err.message);
            break;
        case INTAKE_SUBMIT_REFUSED:
            result = open311_reply_error (req, format, MHD_HTTP_BAD_REQUEST, "%s: %s",
                                          s_open311_field (out.err.field), out.err.message);
            break;
        case INTAKE_SUBMIT_UNAVAILABLE:
            result = httpd_reply_unavailable (req, out.unavailable);
            break;
        default:
            result = httpd_reply_error (req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "",
                                        "%s", out.err.message);
            break;
    }
    if (out.first)
        civicbus__v1__ticket__free_unpacked (out.first, NULL);
    civicbus__v1__ticket__free_unpacked (t, NULL);
    return result;
}

/* ---- private: handlers ---- */

static int
s_get (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    char base [64];
    open311_format_t format = OPEN311_XML;
    if (s_split (httpd_request_param (req, "file"), base, sizeof base, &format))
        return s_no_such_path (req, OPEN311_XML);
    int result = 0;
    if (!open311_jurisdiction_ok (intake, req, format,
                                  httpd_request_query (req, "jurisdiction_id"), &result))
        return result;
    if (strcmp (base, "discovery") == 0)
        return s_discovery (req, format);
    if (strcmp (base, "services") == 0)
        return s_services (intake, req, format);
    if (strcmp (base, "requests") == 0)
        return open311_requests_list (intake, req, format);
    if (strcmp (base, "servicerequestupdates") == 0)
        return open311_updates_list (intake, req, format);
    return s_no_such_path (req, format);
}

static int
s_post (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    char base [64];
    open311_format_t format = OPEN311_XML;
    if (s_split (httpd_request_param (req, "file"), base, sizeof base, &format))
        return s_no_such_path (req, OPEN311_XML);
    bool create = strcmp (base, "requests") == 0;
    if (!create && strcmp (base, "servicerequestupdates") != 0) {
        if (strcmp (base, "discovery") == 0 || strcmp (base, "services") == 0) {
            httpd_add_header (req, MHD_HTTP_HEADER_ALLOW, "GET");
            return open311_reply_error (req, format, MHD_HTTP_METHOD_NOT_ALLOWED,
                                        "%s is read with GET", base);
        }
        return s_no_such_path (req, format);
    }
    open311_form_t form;
    int result = 0;
    if (s_read_form (req, format, &form, &result))
        return result;
    if (create)
        result = s_create (intake, req, format, &form);
    else {
        apikey_info_t key;
        int rc = open311_check_key (intake, req, format, open311_form_get (&form, "api_key"),
                                    &key);
        if (rc)
            result = rc < 0 ? -1 : 0;
        else
        if (open311_jurisdiction_ok (intake, req, format,
                                     open311_form_get (&form, "jurisdiction_id"), &result)) {
            result = open311_update_post (intake, req, format, &key, &form);
        }
    }
    open311_form_reset (&form);
    return result;
}

static int
s_get_one (httpd_request_t *req, void *arg)
{
    intake_t *intake = arg;
    char base [256];
    open311_format_t format = OPEN311_XML;
    if (s_split (httpd_request_param (req, "file"), base, sizeof base, &format))
        return s_no_such_path (req, OPEN311_XML);
    int result = 0;
    if (!open311_jurisdiction_ok (intake, req, format,
                                  httpd_request_query (req, "jurisdiction_id"), &result))
        return result;
    const char *collection = httpd_request_param (req, "collection");
    if (strcmp (collection, "services") == 0)
        return s_service_definition (intake, req, format, base);
    if (strcmp (collection, "requests") == 0)
        return open311_request_one (intake, req, format, base);
    if (strcmp (collection, "tokens") == 0)
        return open311_token (intake, req, format, base);
    return s_no_such_path (req, format);
}

static int
s_post_one (httpd_request_t *req, void *arg)
{
    (void) arg;
    char base [256];
    open311_format_t format = OPEN311_XML;
    if (s_split (httpd_request_param (req, "file"), base, sizeof base, &format))
        return s_no_such_path (req, OPEN311_XML);
    return s_no_such_path (req, format);
}

/* ---- public ---- */

int
intake_open311_routes (intake_t *intake)
{
    const httpd_route_t routes [] = {
        { "GET", "/open311/v2/{file}", "open311_get", 0, 0, s_get, intake },
        { "POST", "/open311/v2/{file}", "open311_post", 0, HTTPD_BODY_ANY, s_post, intake },
        { "GET", "/open311/v2/{collection}/{file}", "open311_get_one", 0, 0, s_get_one, intake },
        { "POST", "/open311/v2/{collection}/{file}", "open311_post_one", 0, 0, s_post_one,
          intake },
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes [0]; i++)
        if (httpd_route (intake->httpd, &routes [i]))
            return -1;
    return 0;
}
