/*  mapping.c — the urban-management (城管) adapter's mapping (see urban.h
    for the urban system's API).

    A dispatch order becomes a digital urban-management case classified by
    GB/T 30428: type (部件 facility / 事件 event), class (大类, two digits)
    and subclass (小类, four digits: the class code and two more). The
    classification of each catalogue category comes from the mapping file
    (deploy/config/adapters/urban.json, CIVICBUS_ADAPTER_MAPPING): the
    adapter never reads Redis, so it cannot read the catalogue's gbt30428
    data itself; tests/unit/test_adapter_urban.c checks that the file and
    the catalogue agree on every category's names. The class codes are the
    standard's six per type; a city whose system uses other codes names
    them in the file's `classes`.

    Feedback calls (签收 / 退回 / 延期 / 挂账 / 进展 / 办结) become replies. */

#include "urban.h"
#include "civicbus/ticket_json.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TYPES 2
#define S_CLASSES 6

typedef struct {
    char *category;             //  NULL for the default entry
    int type;                   //  index into s_types
    int class_index;            //  index into the type's classes
    char *subclass_code;
    char *subclass_name;
} s_entry_t;

struct _urban_tables_t {
    char class_codes [S_TYPES][S_CLASSES][8];
    s_entry_t *entries;
    size_t n_entries;
    s_entry_t fallback;
};

static const struct {
    const char *type;
    const char *name;
    const char *classes [S_CLASSES];
} s_types [S_TYPES] = {
    { "facility", "部件", { "公用设施", "道路交通", "市容环境", "园林绿化", "房屋土地", "其他" } },
    { "event",    "事件", { "市容环境", "宣传广告", "施工管理", "突发事件", "街面秩序", "其他" } },
};

//  The feedback actions, by code and by the Chinese word the urban
//  system's staff use: two words of one kind each.
#define S_ACTION(code, word, kind) \
    { code, CIVICBUS__V1__REPLY_KIND__REPLY_##kind }, \
    { word, CIVICBUS__V1__REPLY_KIND__REPLY_##kind }
static const cb_adapter_word_t s_actions [] = {
    S_ACTION ("sign",     "签收", SIGN),
    S_ACTION ("return",   "退回", RETURN),
    S_ACTION ("delay",    "延期", EXTENSION),
    S_ACTION ("hang",     "挂账", SUSPEND),
    S_ACTION ("progress", "进展", PROGRESS),
    S_ACTION ("finish",   "办结", RESOLVE),
};

#define S_DELAY_DAYS_MAX 60

/* ---- private ---- */

static void
s_entry_free (s_entry_t *entry)
{
    free (entry->category);
    free (entry->subclass_code);
    free (entry->subclass_name);
    memset (entry, 0, sizeof *entry);
}

static void
s_unload (void *state)
{
    urban_tables_t *self = state;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_entries; i++)
        s_entry_free (&self->entries [i]);
    free (self->entries);
    s_entry_free (&self->fallback);
    free (self);
}

static int
s_type_index (const char *type)
{
    for (int i = 0; type && i < S_TYPES; i++)
        if (strcmp (type, s_types [i].type) == 0)
            return i;
    return -1;
}

static int
s_class_index (int type, const char *name)
{
    for (int i = 0; name && i < S_CLASSES; i++)
        if (strcmp (name, s_types [type].classes [i]) == 0)
            return i;
    return -1;
}

static bool
s_digits (const char *text, size_t len)
{
    if (!text || strlen (text) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isdigit ((unsigned char) text [i]))
            return false;
    return true;
}

//  Reads the classes table: {"facility": {"公用设施": "01", ...}, "event": {...}};
//  a class not named keeps the standard's code.
static int
s_load_classes (urban_tables_t *self, const json_t *classes, cb_error_t *err)
{
    if (!classes)
        return 0;
    if (!json_is_object (classes)) {
        cb_error_set (err, "bad_value", "classes", "must be an object: type -> {class: code}");
        return -1;
    }
    const char *type_name;
    json_t *table;
    json_object_foreach ((json_t *) classes, type_name, table) {
        int type = s_type_index (type_name);
        if (type < 0 || !json_is_object (table)) {
            cb_error_set (err, "bad_value", "classes", "'%.32s' must be facility or event, "
                          "with an object of class -> code", type_name);
            return -1;
        }
        const char *class_name;
        json_t *code;
        json_object_foreach (table, class_name, code) {
            int index = s_class_index (type, class_name);
            const char *text = json_string_value (code);
            if (index < 0 || !s_digits (text, 2)) {
                cb_error_set (err, "bad_value", "classes", "%s '%.64s': not a GB/T 30428 class, "
                              "or its code is not two digits", type_name, class_name);
                return -1;
            }
            snprintf (self->class_codes [type][index], sizeof self->class_codes [type][index],
                      "%s", text);
        }
    }
    return 0;
}

//  Reads one {"type", "class", "subclass", "subclass_code"} entry.
static int
s_load_entry (urban_tables_t *self, const char *where, const json_t *item, s_entry_t *entry,
              cb_error_t *err)
{
    const char *type = json_string_value (json_object_get (item, "type"));
    const char *class_name = json_string_value (json_object_get (item, "class"));
    const char *subclass = json_string_value (json_object_get (item, "subclass"));
    const char *code = json_string_value (json_object_get (item, "subclass_code"));
    if (!json_is_object (item)) {
        cb_error_set (err, "bad_value", where, "must be an object with type, class, subclass "
                      "and subclass_code");
        return -1;
    }
    entry->type = s_type_index (type);
    if (entry->type < 0) {
        cb_error_set (err, "bad_value", where, "type must be facility (部件) or event (事件)");
        return -1;
    }
    entry->class_index = s_class_index (entry->type, class_name);
    if (entry->class_index < 0) {
        cb_error_set (err, "bad_value", where, "class '%.64s' is not a GB/T 30428 %s class",
                      class_name ? class_name : "", type);
        return -1;
    }
    const char *class_code = self->class_codes [entry->type][entry->class_index];
    if (!s_digits (code, 4) || strncmp (code, class_code, 2) != 0) {
        cb_error_set (err, "bad_value", where, "subclass_code must be four digits starting "
                      "with the class code %s", class_code);
        return -1;
    }
    if (!subclass || !*subclass || strlen (subclass) > 96) {
        cb_error_set (err, "bad_value", where, "subclass must be a name of 1..96 bytes");
        return -1;
    }
    entry->subclass_code = strdup (code);
    entry->subclass_name = strdup (subclass);
    if (!entry->subclass_code || !entry->subclass_name) {
        cb_error_set (err, "no_memory", where, "out of memory");
        return -1;
    }
    return 0;
}

static void *
s_load (const json_t *config, cb_error_t *err)
{
    urban_tables_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    for (int type = 0; type < S_TYPES; type++)
        for (int i = 0; i < S_CLASSES; i++)
            snprintf (self->class_codes [type][i], sizeof self->class_codes [type][i],
                      "%02d", i + 1);
    if (cb_adapter_config_check (config, err))
        goto failed;
    if (s_load_classes (self, json_object_get (config, "classes"), err))
        goto failed;

    const json_t *fallback = json_object_get (config, "default");
    if (fallback) {
        if (s_load_entry (self, "default", fallback, &self->fallback, err))
            goto failed;
    }
    else {
        //  事件 / 其他 / 其他事件: what a city files a case it cannot classify under.
        self->fallback.type = 1;
        self->fallback.class_index = 5;
        self->fallback.subclass_code = strdup ("0699");
        self->fallback.subclass_name = strdup ("其他事件");
        if (!self->fallback.subclass_code || !self->fallback.subclass_name)
            goto failed;
    }

    const json_t *categories;
    size_t n;
    if (cb_adapter_config_table (config, "categories", "category -> class", &categories, &n,
                                 err))
        goto failed;
    self->entries = calloc (n ? n : 1, sizeof *self->entries);
    if (!self->entries)
        goto failed;
    const char *category;
    json_t *item;
    json_object_foreach ((json_t *) categories, category, item) {
        char where [128];
        snprintf (where, sizeof where, "categories.%.100s", category);
        s_entry_t *entry = &self->entries [self->n_entries];
        if (!*category) {
            cb_error_set (err, "bad_value", "categories", "a category code may not be empty");
            goto failed;
        }
        //  Counted before it is read, so a half-read entry is freed too.
        self->n_entries++;
        if (s_load_entry (self, where, item, entry, err))
            goto failed;
        entry->category = strdup (category);
        if (!entry->category)
            goto failed;
    }
    return self;

failed:
    s_unload (self);
    return NULL;
}

static int
s_request_for (void *state, const Civicbus__V1__DispatchOrder *order,
               cb_dept_request_t *request, cb_error_t *err)
{
    const urban_tables_t *self = state;
    const Civicbus__V1__Ticket *t = cb_adapter_order_ticket (order, err);
    if (!t)
        return -1;
    urban_class_t class;
    urban_class_of (self, t->category, &class);
    const Civicbus__V1__Location *where = t->location;
    json_t *location = json_object ();
    json_t *grid_path = json_array ();
    if (where) {
        if (where->has_point) {
            json_object_set_new (location, "lng", json_real (where->lon));
            json_object_set_new (location, "lat", json_real (where->lat));
        }
        json_object_set_new (location, "address",
                             json_string (cb_adapter_or_empty (where->address)));
        for (size_t i = 0; grid_path && i < where->n_grid_path; i++)
            json_array_append_new (grid_path, json_string (where->grid_path [i]));
    }
    cb_order_times_t times;
    cb_adapter_order_times (order, &times);
    json_t *body = json_pack (
        "{s:s, s:i, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:s, s:s, s:o*, s:o*,"
        " s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:o*}",
        "case_key", order->dispatch_id,
        "attempt", (int) order->attempt,
        "case_no", t->id,
        "role", order->primary ? "main" : "assist",
        "gbt30428",
            "type", class.type,
            "type_name", strcmp (class.type, "facility") == 0 ? "部件" : "事件",
            "class_code", class.class_code,
            "class_name", class.class_name,
            "subclass_code", class.subclass_code,
            "subclass_name", class.subclass_name,
        "category", cb_adapter_or_empty (t->category),
        "grid_code", where ? cb_adapter_or_empty (where->grid_code) : "",
        "grid_path", grid_path,
        "location", location,
        "description", cb_adapter_or_empty (t->description),
        "source", cb_adapter_or_empty (cb_source_name (t->source)),
        "request_type", cb_adapter_or_empty (cb_request_type_name (t->request_type)),
        "urgent", (int) (t->urgency == CIVICBUS__V1__URGENCY__URGENCY_URGENT),
        "reported_at", times.reported,
        "sign_deadline", times.sign_by,
        "handle_deadline", times.resolve_by,
        "photos", cb_adapter_url_array (t->attachment_urls, t->n_attachment_urls));
    return cb_adapter_request_finish (request, body, "case", err);
}

static int
s_answer_from (void *state, const json_t *body, cb_dept_answer_t *answer, cb_error_t *err)
{
    (void) state;
    if (cb_adapter_answer_kind (body, "case_key", "action", s_actions,
                                sizeof s_actions / sizeof s_actions [0],
                                "sign (签收), return (退回), delay (延期), hang (挂账), "
                                "progress (进展), finish (办结)", answer, err))
        return -1;
    const char *action = json_string_value (json_object_get (body, "action"));
    answer->answer_id = json_string_value (json_object_get (body, "feedback_id"));
    answer->text = json_string_value (json_object_get (body, "opinion"));
    answer->staff_name = json_string_value (json_object_get (body, "handler"));
    if (cb_adapter_kind_needs_text (answer->kind) && (!answer->text || !*answer->text)) {
        cb_error_set (err, "missing_field", "opinion", "%s needs an opinion (the reason or "
                      "the result)", action);
        return -1;
    }
    if (cb_adapter_answer_days (body, "delay_days", "delay", S_DELAY_DAYS_MAX, answer, err)
    ||  cb_adapter_answer_urls (body, "images", answer, err)
    ||  cb_adapter_answer_time (body, "time", answer, err))
        return -1;
    return 0;
}

/* ---- public ---- */

void
urban_class_of (const urban_tables_t *self, const char *category, urban_class_t *out)
{
    assert (self);
    assert (out);
    const s_entry_t *entry = &self->fallback;
    for (size_t i = 0; category && i < self->n_entries; i++)
        if (strcmp (self->entries [i].category, category) == 0) {
            entry = &self->entries [i];
            break;
        }
    out->type = s_types [entry->type].type;
    out->class_code = self->class_codes [entry->type][entry->class_index];
    out->class_name = s_types [entry->type].classes [entry->class_index];
    out->subclass_code = entry->subclass_code;
    out->subclass_name = entry->subclass_name;
}

const cb_adapter_mapping_t urban_mapping = {
    .department = "urban",
    .summary = "The urban-management (城管) department adapter: forwards dispatch orders to\n"
               "the digital urban-management system as cases with GB/T 30428 type, class\n"
               "and subclass codes, grid code and location, and turns its feedback calls\n"
               "(签收/退回/延期/挂账/进展/办结) into replies.",
    .default_listen = "127.0.0.1:9112",
    .default_dept_url = "http://127.0.0.1:9102/cases",
    .answer_path = "/urban/v1/feedback",
    .load = s_load,
    .unload = s_unload,
    .request_for = s_request_for,
    .answer_from = s_answer_from,
};
