/*  mapping.c — the civil-affairs (民政) adapter's mapping (see civil.h for
    the civil system's API and the personal-data decision).

    A dispatch order becomes an assistance case with a service type from
    the mapping file (deploy/config/adapters/civil.json,
    CIVICBUS_ADAPTER_MAPPING) and a callback number, never the reporter's
    name; the civil system's events (受理 / 退回 / 延期 / 中止 / 走访 /
    办结) become replies. */

#include "civil.h"
#include "civicbus/clock.h"
#include "civicbus/ticket_json.h"
#include "civicbus/mask.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CODE_MAX 64
#define S_NAME_MAX 96
#define S_EXTEND_DAYS_MAX 30

typedef struct {
    char *category;             //  exact code or a dotted prefix of codes
    char *code;
    char *name;
} s_service_t;

struct _civil_tables_t {
    s_service_t *services;
    size_t n_services;
    char default_code [S_CODE_MAX];
    char default_name [S_NAME_MAX + 1];
};

static const struct {
    const char *event;
    Civicbus__V1__ReplyKind kind;
} s_events [] = {
    { "ACCEPT",   CIVICBUS__V1__REPLY_KIND__REPLY_SIGN },
    { "RETURN",   CIVICBUS__V1__REPLY_KIND__REPLY_RETURN },
    { "EXTEND",   CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION },
    { "SUSPEND",  CIVICBUS__V1__REPLY_KIND__REPLY_SUSPEND },
    { "VISIT",    CIVICBUS__V1__REPLY_KIND__REPLY_PROGRESS },
    { "COMPLETE", CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE },
};

/* ---- private ---- */

static void
s_unload (void *state)
{
    civil_tables_t *self = state;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_services; i++) {
        free (self->services [i].category);
        free (self->services [i].code);
        free (self->services [i].name);
    }
    free (self->services);
    free (self);
}

//  Reads {"code": "...", "name": "..."}; 0 or -1 with err naming `where`.
static int
s_read_service (const char *where, const json_t *item, const char **code, const char **name,
                cb_error_t *err)
{
    *code = json_string_value (json_object_get (item, "code"));
    *name = json_string_value (json_object_get (item, "name"));
    if (!json_is_object (item) || !*code || !**code || strlen (*code) >= S_CODE_MAX
        || !*name || !**name || strlen (*name) > S_NAME_MAX) {
        cb_error_set (err, "bad_value", where, "needs a code (1..%d bytes) and a name "
                      "(1..%d bytes)", S_CODE_MAX - 1, S_NAME_MAX);
        return -1;
    }
    return 0;
}

static void *
s_load (const json_t *config, cb_error_t *err)
{
    civil_tables_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    snprintf (self->default_code, sizeof self->default_code, "GENERAL");
    snprintf (self->default_name, sizeof self->default_name, "综合民政事务");
    self->services = calloc (1, sizeof *self->services);
    if (!self->services)
        goto failed;
    if (!config)
        return self;
    if (!json_is_object (config)) {
        cb_error_set (err, "bad_value", "", "the mapping file must hold a JSON object");
        goto failed;
    }
    const char *code, *name;
    const json_t *fallback = json_object_get (config, "default");
    if (fallback) {
        if (s_read_service ("default", fallback, &code, &name, err))
            goto failed;
        snprintf (self->default_code, sizeof self->default_code, "%s", code);
        snprintf (self->default_name, sizeof self->default_name, "%s", name);
    }
    const json_t *types = json_object_get (config, "service_types");
    if (types && !json_is_object (types)) {
        cb_error_set (err, "bad_value", "service_types",
                      "must be an object: category or prefix -> {code, name}");
        goto failed;
    }
    size_t n = types ? json_object_size (types) : 0;
    free (self->services);
    self->services = calloc (n ? n : 1, sizeof *self->services);
    if (!self->services)
        goto failed;
    const char *category;
    json_t *item;
    json_object_foreach ((json_t *) types, category, item) {
        char where [128];
        snprintf (where, sizeof where, "service_types.%.100s", category);
        if (!*category) {
            cb_error_set (err, "bad_value", "service_types", "a category may not be empty");
            goto failed;
        }
        if (s_read_service (where, item, &code, &name, err))
            goto failed;
        s_service_t *service = &self->services [self->n_services++];
        service->category = strdup (category);
        service->code = strdup (code);
        service->name = strdup (name);
        if (!service->category || !service->code || !service->name)
            goto failed;
    }
    return self;

failed:
    s_unload (self);
    return NULL;
}

static const char *
s_or_empty (const char *text)
{
    return text ? text : "";
}

//  "" when ms is 0; else ISO 8601 in Asia/Shanghai.
static const char *
s_iso (int64_t ms, char *buf, size_t cap)
{
    if (ms <= 0)
        return "";
    return cb_time_format_iso (ms, buf, cap) ? buf : "";
}

//  The description as the civil system gets it: the reporter's name (when
//  it has two characters or more: one character would mask ordinary text)
//  replaced by its masked form, then every mobile number masked. NULL when
//  out of memory. O(length x occurrences).
static char *
s_masked_description (const char *description, const char *name)
{
    const char *text = s_or_empty (description);
    size_t name_len = name ? strlen (name) : 0;
    char masked_name [256];
    cb_mask_name (name, masked_name, sizeof masked_name);
    bool mask_name = name_len > 0 && cb_utf8_length (name, name_len) >= 2;
    //  The masked name is never longer than the name (one byte per hidden
    //  character, each of which had at least one byte).
    char *named = malloc (strlen (text) + 1);
    if (!named)
        return NULL;
    char *out = named;
    while (*text) {
        if (mask_name && strncmp (text, name, name_len) == 0) {
            size_t n = strlen (masked_name);
            memcpy (out, masked_name, n);
            out += n;
            text += name_len;
        }
        else
            *out++ = *text++;
    }
    *out = 0;
    size_t cap = strlen (named) + 1;
    char *result = malloc (cap);
    if (result)
        cb_mask_text (named, result, cap);
    free (named);
    return result;
}

//  True when `phone` has digits only where a person could dial: a masked
//  number ("138****5678") is not a callback number.
static bool
s_callable (const char *phone)
{
    if (!phone || !*phone)
        return false;
    size_t digits = 0;
    for (const char *p = phone; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits++;
        else
        if (!strchr ("+- ()", *p))
            return false;
    }
    return digits >= 5;
}

static json_t *
s_callback (const Civicbus__V1__Reporter *reporter)
{
    const char *phone = reporter ? reporter->phone : NULL;
    if (s_callable (phone))
        return json_pack ("{s:b, s:s}", "available", 1, "phone", phone);
    return json_pack ("{s:b, s:s}", "available", 0,
                      "reason", phone && *phone ? "masked" : "anonymous");
}

static json_t *
s_area (const Civicbus__V1__Location *where)
{
    json_t *area = json_object ();
    if (!area || !where)
        return area;
    //  grid_path is district .. grid, top first: the street is the second
    //  level and the community the third in the demo city's hierarchy.
    json_object_set_new (area, "grid_code", json_string (s_or_empty (where->grid_code)));
    json_object_set_new (area, "street_code",
                         json_string (where->n_grid_path > 1 ? where->grid_path [1] : ""));
    json_object_set_new (area, "community_code",
                         json_string (where->n_grid_path > 2 ? where->grid_path [2] : ""));
    json_object_set_new (area, "address", json_string (s_or_empty (where->address)));
    if (where->has_point) {
        json_object_set_new (area, "lat", json_real (where->lat));
        json_object_set_new (area, "lon", json_real (where->lon));
    }
    return area;
}

static int
s_request_for (void *state, const Civicbus__V1__DispatchOrder *order,
               cb_dept_request_t *request, cb_error_t *err)
{
    const civil_tables_t *self = state;
    const Civicbus__V1__Ticket *t = order->ticket;
    if (!t || !t->id || !*t->id) {
        cb_error_set (err, "missing_field", "ticket", "the order carries no ticket");
        return -1;
    }
    char *summary = s_masked_description (t->description,
                                          t->reporter ? t->reporter->name : NULL);
    if (!summary) {
        cb_error_set (err, "no_memory", NULL, "out of memory");
        return -1;
    }
    const char *service_name;
    const char *service = civil_service_type (self, t->category, &service_name);
    json_t *attachments = json_array ();
    for (size_t i = 0; attachments && i < t->n_attachment_urls; i++)
        json_array_append_new (attachments, json_string (t->attachment_urls [i]));
    char reported [40], sign_by [40], resolve_by [40];
    json_t *body = json_pack (
        "{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:o*, s:o*, s:s, s:s, s:s, s:o*}",
        "request_no", order->dispatch_id,
        "attempt", (int) order->attempt,
        "ticket_no", t->id,
        "service_type", service,
        "service_name", service_name,
        "category", s_or_empty (t->category),
        "request_type", s_or_empty (cb_request_type_name (t->request_type)),
        "lead", (int) order->primary,
        "urgent", (int) (t->urgency == CIVICBUS__V1__URGENCY__URGENCY_URGENT),
        "summary", summary,
        "callback", s_callback (t->reporter),
        "area", s_area (t->location),
        "reported_at", s_iso (t->created_ms, reported, sizeof reported),
        "sign_by", s_iso (order->sign_due_ms, sign_by, sizeof sign_by),
        "resolve_by", s_iso (order->resolve_due_ms, resolve_by, sizeof resolve_by),
        "attachments", attachments);
    free (summary);
    request->body = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_decref (body);
    request->path [0] = 0;
    if (!request->body) {
        cb_error_set (err, "no_memory", NULL, "the case could not be encoded "
                      "(text that is not UTF-8?)");
        return -1;
    }
    return 0;
}

static int
s_answer_from (void *state, const json_t *body, cb_dept_answer_t *answer, cb_error_t *err)
{
    (void) state;
    const char *key = json_string_value (json_object_get (body, "request_no"));
    if (!key || !*key) {
        cb_error_set (err, "missing_field", "request_no", "request_no is required");
        return -1;
    }
    const char *event = json_string_value (json_object_get (body, "event"));
    if (!event) {
        cb_error_set (err, "missing_field", "event", "event is required");
        return -1;
    }
    answer->kind = CIVICBUS__V1__REPLY_KIND__REPLY_UNSPECIFIED;
    for (size_t i = 0; i < sizeof s_events / sizeof s_events [0]; i++)
        if (strcmp (event, s_events [i].event) == 0)
            answer->kind = s_events [i].kind;
    if (answer->kind == CIVICBUS__V1__REPLY_KIND__REPLY_UNSPECIFIED) {
        cb_error_set (err, "bad_value", "event", "event '%.64s' is not one of ACCEPT, RETURN, "
                      "EXTEND, SUSPEND, VISIT, COMPLETE", event);
        return -1;
    }
    answer->dispatch_id = key;
    answer->answer_id = json_string_value (json_object_get (body, "event_id"));
    answer->text = json_string_value (json_object_get (body, "remark"));
    answer->staff_name = json_string_value (json_object_get (body, "worker"));
    bool needs_remark = answer->kind == CIVICBUS__V1__REPLY_KIND__REPLY_RETURN
                     || answer->kind == CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION
                     || answer->kind == CIVICBUS__V1__REPLY_KIND__REPLY_SUSPEND
                     || answer->kind == CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE;
    if (needs_remark && (!answer->text || !*answer->text)) {
        cb_error_set (err, "missing_field", "remark", "%s needs a remark (the reason or the "
                      "result)", event);
        return -1;
    }
    const json_t *days = json_object_get (body, "extend_days");
    if (days && !json_is_integer (days)) {
        cb_error_set (err, "bad_value", "extend_days", "extend_days must be a whole number");
        return -1;
    }
    if (answer->kind == CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION) {
        json_int_t n = days ? json_integer_value (days) : 0;
        if (!days) {
            cb_error_set (err, "missing_field", "extend_days", "EXTEND needs extend_days");
            return -1;
        }
        if (n < 1 || n > S_EXTEND_DAYS_MAX) {
            cb_error_set (err, "bad_value", "extend_days", "extend_days must be 1..%d",
                          S_EXTEND_DAYS_MAX);
            return -1;
        }
        answer->extension_days = (int32_t) n;
    }
    const json_t *files = json_object_get (body, "files");
    if (files && !json_is_array (files)) {
        cb_error_set (err, "bad_value", "files", "files must be an array of URLs");
        return -1;
    }
    size_t index;
    json_t *file;
    json_array_foreach ((json_t *) files, index, file) {
        if (!json_is_string (file) || answer->n_attachment_urls >= CB_ADAPTER_ATTACHMENTS_MAX) {
            cb_error_set (err, "bad_value", "files", "files must be at most %d URLs",
                          CB_ADAPTER_ATTACHMENTS_MAX);
            return -1;
        }
        answer->attachment_urls [answer->n_attachment_urls++] = json_string_value (file);
    }
    const json_t *at = json_object_get (body, "occurred_at");
    if (json_is_integer (at))
        answer->time_ms = (int64_t) json_integer_value (at);
    else
    if (at && (!json_is_string (at)
               || cb_time_parse_iso (json_string_value (at), &answer->time_ms))) {
        cb_error_set (err, "bad_value", "occurred_at",
                      "occurred_at must be ISO 8601 or milliseconds");
        return -1;
    }
    return 0;
}

/* ---- public ---- */

const char *
civil_service_type (const civil_tables_t *self, const char *category, const char **name)
{
    assert (self);
    const s_service_t *best = NULL;
    size_t best_len = 0;
    size_t len = category ? strlen (category) : 0;
    for (size_t i = 0; i < self->n_services; i++) {
        const char *key = self->services [i].category;
        size_t key_len = strlen (key);
        //  The whole code, or a prefix that ends at a dot of the code.
        bool match = key_len <= len && strncmp (category, key, key_len) == 0
                  && (key_len == len || category [key_len] == '.');
        if (match && key_len > best_len) {
            best = &self->services [i];
            best_len = key_len;
        }
    }
    if (name)
        *name = best ? best->name : self->default_name;
    return best ? best->code : self->default_code;
}

const cb_adapter_mapping_t civil_mapping = {
    .department = "civil",
    .summary = "The civil-affairs (民政) department adapter: forwards dispatch orders to the\n"
               "civil-affairs case system as assistance cases (service types mapped from\n"
               "categories; a callback number, never the reporter's name) and turns its\n"
               "events (受理/退回/延期/中止/走访/办结) into replies.",
    .default_listen = "127.0.0.1:9113",
    .default_dept_url = "http://127.0.0.1:9103/cases",
    .answer_path = "/civil/v1/events",
    .load = s_load,
    .unload = s_unload,
    .request_for = s_request_for,
    .answer_from = s_answer_from,
};
