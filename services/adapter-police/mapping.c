/*  mapping.c — the police (公安) adapter's mapping (see police.h).

    The police incident system's API, as this adapter speaks it:

    Orders: POST CIVICBUS_DEPT_URL (default http://127.0.0.1:9101/incidents)
        Idempotency-Key: <dispatch_id>
        Authorization: Bearer <CIVICBUS_DEPT_CREDENTIAL>   (when set)
        {"incident_key": "<dispatch_id>", "attempt": 1,
         "case_no": "<ticket id>", "incident_type": "FIGHT",
         "category": "police.public_order.fight", "priority": "P1"|"P3",
         "lead": true,                      //  false: co-handling (协办)
         "summary": "...", "request_type": 3,
         "location": {"address": "...", "lat": 32.0, "lon": 118.7,
                      "grid_code": "..."},  //  lat/lon only when known
         "caller": {"name": "...", "phone": "..."},   //  as the dispatcher sent
                                                      //  them (police: unmasked)
         "reported_at": "ISO 8601", "sign_by": "ISO 8601",
         "resolve_by": "ISO 8601",          //  when set
         "attachments": ["https://..."]}
      201/200: accepted (the body is not read); 409: it has this
      incident_key already (accepted); other 4xx: refused (the ticket goes to
      the operators); 5xx or no answer: tried again later.

    Status calls: POST <adapter>/police/v1/status
        Authorization: Bearer <CIVICBUS_DEPT_TOKEN>
        {"incident_key": "<dispatch_id>", "status_id": "PS-1234",
         "status": "ACCEPTED"|"REJECTED"|"NEED_TIME"|"ON_HOLD"|"UPDATE"|"CLOSED",
         "note": "...", "officer": "...", "extra_days": 3,
         "photos": ["https://..."], "at": "ISO 8601" or milliseconds}
      status -> reply: ACCEPTED sign, REJECTED return (note = reason,
      required), NEED_TIME extension (extra_days and note required),
      ON_HOLD suspend (note required), UPDATE progress, CLOSED resolve
      (note = result). status_id is the police system's own id of the call
      and makes repeats harmless; without it the adapter hashes the call.
      Answers: 200 stored; 409/422 {"error": {"code", "message"}} refused
      by the state machine; 503 + Retry-After: call again. */

#include "police.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TYPE_MAX 64

typedef struct {
    char *pattern;
    char *type;
} s_rule_t;

struct _police_tables_t {
    s_rule_t *rules;
    size_t n_rules;
    char default_type [S_TYPE_MAX];
    char priority_urgent [16];
    char priority_normal [16];
};

static const cb_adapter_word_t s_statuses [] = {
    { "ACCEPTED",  CIVICBUS__V1__REPLY_KIND__REPLY_SIGN },
    { "REJECTED",  CIVICBUS__V1__REPLY_KIND__REPLY_RETURN },
    { "NEED_TIME", CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION },
    { "ON_HOLD",   CIVICBUS__V1__REPLY_KIND__REPLY_SUSPEND },
    { "UPDATE",    CIVICBUS__V1__REPLY_KIND__REPLY_PROGRESS },
    { "CLOSED",    CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE },
};

/* ---- private ---- */

static void
s_unload (void *state)
{
    police_tables_t *self = state;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_rules; i++) {
        free (self->rules [i].pattern);
        free (self->rules [i].type);
    }
    free (self->rules);
    free (self);
}

static void *
s_load (const json_t *config, cb_error_t *err)
{
    police_tables_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    snprintf (self->default_type, sizeof self->default_type, "OTHER");
    snprintf (self->priority_urgent, sizeof self->priority_urgent, "P1");
    snprintf (self->priority_normal, sizeof self->priority_normal, "P3");
    if (!config)
        return self;
    const json_t *types;
    size_t n;
    if (cb_adapter_config_check (config, err)
    ||  cb_adapter_config_table (config, "incident_types", "pattern -> type", &types, &n, err))
        goto failed;
    self->rules = calloc (n ? n : 1, sizeof *self->rules);
    if (!self->rules)
        goto failed;
    const char *pattern;
    json_t *value;
    json_object_foreach ((json_t *) types, pattern, value) {
        const char *type = json_string_value (value);
        if (!type || !*type || strlen (type) >= S_TYPE_MAX || !*pattern) {
            cb_error_set (err, "bad_value", "incident_types",
                          "'%s' needs a non-empty type shorter than %d bytes", pattern, S_TYPE_MAX);
            goto failed;
        }
        s_rule_t *rule = &self->rules [self->n_rules];
        rule->pattern = strdup (pattern);
        rule->type = strdup (type);
        if (!rule->pattern || !rule->type) {
            free (rule->pattern);
            free (rule->type);
            goto failed;
        }
        self->n_rules++;
    }
    const char *fallback = json_string_value (json_object_get (config, "default_type"));
    if (fallback && *fallback)
        snprintf (self->default_type, sizeof self->default_type, "%s", fallback);
    const json_t *priority = json_object_get (config, "priority");
    const char *urgent = json_string_value (json_object_get (priority, "urgent"));
    const char *normal = json_string_value (json_object_get (priority, "normal"));
    if (urgent)
        snprintf (self->priority_urgent, sizeof self->priority_urgent, "%s", urgent);
    if (normal)
        snprintf (self->priority_normal, sizeof self->priority_normal, "%s", normal);
    return self;

failed:
    s_unload (self);
    return NULL;
}

static int
s_request_for (void *state, const Civicbus__V1__DispatchOrder *order,
               cb_dept_request_t *request, cb_error_t *err)
{
    const police_tables_t *self = state;
    const Civicbus__V1__Ticket *t = cb_adapter_order_ticket (order, err);
    if (!t)
        return -1;
    cb_order_times_t times;
    cb_adapter_order_times (order, &times);
    json_t *location = json_object ();
    const Civicbus__V1__Location *where = t->location;
    if (where) {
        json_object_set_new (location, "address",
                             json_string (cb_adapter_or_empty (where->address)));
        json_object_set_new (location, "grid_code",
                             json_string (cb_adapter_or_empty (where->grid_code)));
        if (where->has_point) {
            json_object_set_new (location, "lat", json_real (where->lat));
            json_object_set_new (location, "lon", json_real (where->lon));
        }
    }
    json_t *body = json_pack (
        "{s:s, s:i, s:s, s:s, s:s, s:s, s:b, s:s, s:i, s:o*, s:{s:s, s:s}, s:s, s:s, s:s, s:o*}",
        "incident_key", order->dispatch_id,
        "attempt", (int) order->attempt,
        "case_no", t->id,
        "incident_type", police_incident_type (self, t->category),
        "category", cb_adapter_or_empty (t->category),
        "priority", t->urgency == CIVICBUS__V1__URGENCY__URGENCY_URGENT ? self->priority_urgent
                                                                         : self->priority_normal,
        "lead", (int) order->primary,
        "summary", cb_adapter_or_empty (t->description),
        "request_type", (int) t->request_type,
        "location", location,
        "caller", "name", t->reporter ? cb_adapter_or_empty (t->reporter->name) : "",
                  "phone", t->reporter ? cb_adapter_or_empty (t->reporter->phone) : "",
        "reported_at", times.reported,
        "sign_by", times.sign_by,
        "resolve_by", times.resolve_by,
        "attachments", cb_adapter_url_array (t->attachment_urls, t->n_attachment_urls));
    return cb_adapter_request_finish (request, body, "incident", err);
}

static int
s_answer_from (void *state, const json_t *body, cb_dept_answer_t *answer, cb_error_t *err)
{
    (void) state;
    if (cb_adapter_answer_kind (body, "incident_key", "status", s_statuses,
                                sizeof s_statuses / sizeof s_statuses [0],
                                "ACCEPTED, REJECTED, NEED_TIME, ON_HOLD, UPDATE, CLOSED",
                                answer, err))
        return -1;
    answer->answer_id = json_string_value (json_object_get (body, "status_id"));
    answer->text = json_string_value (json_object_get (body, "note"));
    answer->staff_name = json_string_value (json_object_get (body, "officer"));
    //  Unlike cb_adapter_answer_days: extra_days has no upper bound here and
    //  is passed on with any status (the dispatcher reads it on extensions).
    const json_t *days = json_object_get (body, "extra_days");
    if (days && !json_is_integer (days)) {
        cb_error_set (err, "bad_value", "extra_days", "extra_days must be a whole number");
        return -1;
    }
    answer->extension_days = days ? (int32_t) json_integer_value (days) : 0;
    if (answer->kind == CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION && !days) {
        cb_error_set (err, "missing_field", "extra_days", "NEED_TIME needs extra_days");
        return -1;
    }
    if (cb_adapter_answer_urls (body, "photos", answer, err))
        return -1;
    //  An `at` that is neither text nor a number is ignored (the police
    //  system's contract has always been read so).
    const json_t *at = json_object_get (body, "at");
    if ((json_is_integer (at) || json_is_string (at))
    &&  cb_adapter_answer_time (body, "at", answer, err))
        return -1;
    return 0;
}

/* ---- public ---- */

const char *
police_incident_type (const police_tables_t *self, const char *category)
{
    const char *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; self && category && i < self->n_rules; i++) {
        const char *p = self->rules [i].pattern;
        size_t len = strlen (p);
        bool prefix = len > 0 && p [len - 1] == '*';
        bool match = prefix ? strncmp (category, p, len - 1) == 0 : strcmp (category, p) == 0;
        //  An exact pattern beats any prefix of the same length.
        size_t rank = prefix ? len - 1 : len + 1;
        if (match && (!best || rank > best_len)) {
            best = self->rules [i].type;
            best_len = rank;
        }
    }
    return best ? best : self ? self->default_type : "OTHER";
}

const cb_adapter_mapping_t police_mapping = {
    .department = "police",
    .summary = "The police (公安) department adapter: forwards dispatch orders to the police\n"
               "incident system as incidents (types mapped from categories, with the\n"
               "caller's phone) and turns its status calls into replies.",
    .default_listen = "127.0.0.1:9111",
    .default_dept_url = "http://127.0.0.1:9101/incidents",
    .answer_path = "/police/v1/status",
    .load = s_load,
    .unload = s_unload,
    .request_for = s_request_for,
    .answer_from = s_answer_from,
};
