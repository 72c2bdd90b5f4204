/*  mapping.c — the civil-affairs (民政) adapter's mapping (see civil.h for
    the civil system's API and the personal-data decision).

    A dispatch order becomes an assistance case with a service type from
    the mapping file (deploy/config/adapters/civil.json,
    CIVICBUS_ADAPTER_MAPPING) and a callback number, never the reporter's
    name; the civil system's events (受理 / 退回 / 延期 / 中止 / 走访 /
    办结) become replies. */

#include "civil.h"
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

static const cb_adapter_word_t s_events [] = {
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
    if (cb_adapter_config_check (config, err))
        goto failed;
    const char *code, *name;
    const json_t *fallback = json_object_get (config, "default");
    if (fallback) {
        if (s_read_service ("default", fallback, &code, &name, err))
            goto failed;
        snprintf (self->default_code, sizeof self->default_code, "%s", code);
        snprintf (self->default_name, sizeof self->default_name, "%s", name);
    }
    const json_t *types;
    size_t n;
    if (cb_adapter_config_table (config, "service_types", "category or prefix -> {code, name}",
                                 &types, &n, err))
        goto failed;
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

//  The description as the civil system gets it: the reporter's name (when
//  it has two characters or more: one character would mask ordinary text)
//  replaced by its masked form, then every mobile number masked. NULL when
//  out of memory. O(length x occurrences).
static char *
s_masked_description (const char *description, const char *name)
{
    const char *text = cb_adapter_or_empty (description);
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
    json_object_set_new (area, "grid_code", json_string (cb_adapter_or_empty (where->grid_code)));
    json_object_set_new (area, "street_code",
                         json_string (where->n_grid_path > 1 ? where->grid_path [1] : ""));
    json_object_set_new (area, "community_code",
                         json_string (where->n_grid_path > 2 ? where->grid_path [2] : ""));
    json_object_set_new (area, "address", json_string (cb_adapter_or_empty (where->address)));
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
    const Civicbus__V1__Ticket *t = cb_adapter_order_ticket (order, err);
    if (!t)
        return -1;
    char *summary = s_masked_description (t->description,
                                          t->reporter ? t->reporter->name : NULL);
    if (!summary) {
        cb_error_set (err, "no_memory", NULL, "out of memory");
        return -1;
    }
    const char *service_name;
    const char *service = civil_service_type (self, t->category, &service_name);
    cb_order_times_t times;
    cb_adapter_order_times (order, &times);
    json_t *body = json_pack (
        "{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:o*, s:o*, s:s, s:s, s:s, s:o*}",
        "request_no", order->dispatch_id,
        "attempt", (int) order->attempt,
        "ticket_no", t->id,
        "service_type", service,
        "service_name", service_name,
        "category", cb_adapter_or_empty (t->category),
        "request_type", cb_adapter_or_empty (cb_request_type_name (t->request_type)),
        "lead", (int) order->primary,
        "urgent", (int) (t->urgency == CIVICBUS__V1__URGENCY__URGENCY_URGENT),
        "summary", summary,
        "callback", s_callback (t->reporter),
        "area", s_area (t->location),
        "reported_at", times.reported,
        "sign_by", times.sign_by,
        "resolve_by", times.resolve_by,
        "attachments", cb_adapter_url_array (t->attachment_urls, t->n_attachment_urls));
    free (summary);
    return cb_adapter_request_finish (request, body, "case", err);
}

static int
s_answer_from (void *state, const json_t *body, cb_dept_answer_t *answer, cb_error_t *err)
{
    (void) state;
    if (cb_adapter_answer_kind (body, "request_no", "event", s_events,
                                sizeof s_events / sizeof s_events [0],
                                "ACCEPT, RETURN, EXTEND, SUSPEND, VISIT, COMPLETE", answer, err))
        return -1;
    const char *event = json_string_value (json_object_get (body, "event"));
    answer->answer_id = json_string_value (json_object_get (body, "event_id"));
    answer->text = json_string_value (json_object_get (body, "remark"));
    answer->staff_name = json_string_value (json_object_get (body, "worker"));
    if (cb_adapter_kind_needs_text (answer->kind) && (!answer->text || !*answer->text)) {
        cb_error_set (err, "missing_field", "remark", "%s needs a remark (the reason or the "
                      "result)", event);
        return -1;
    }
    if (cb_adapter_answer_days (body, "extend_days", "EXTEND", S_EXTEND_DAYS_MAX, answer, err)
    ||  cb_adapter_answer_urls (body, "files", answer, err)
    ||  cb_adapter_answer_time (body, "occurred_at", answer, err))
        return -1;
    return 0;
}

/* ---- public ---- */

const char *
civil_service_type (const civil_tables_t *self, const char *category, const char **name)
{
    assert (self);
    const s_service_t *best = NULL;
    size_t best_len = 0;
    if (!category)
        category = "";
    size_t len = strlen (category);
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
