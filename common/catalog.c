/*  catalog.c — the dispatch catalogue: load, validate, route (see catalog.h).

    The parsed JSON tree is kept for the catalogue's life and every string
    the public structs show points into it, so loading copies no text. What
    routing needs per rule (prefix length, request-type bit) is computed once
    at load; a route is then one pass over the rules with no allocation,
    which is cheap for the hundred-odd rules a district has. */

#include "civicbus/catalog.h"

#include <jansson.h>

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    catalog_rule_t public;
    const char *prefix;         //  category before '*' ("" for "*"), or NULL when exact
    size_t prefix_len;
    unsigned request_bit;       //  0 for "*"
} rule_t;

struct _catalog_t {
    json_t *root;               //  owns every string below
    const char *version;
    catalog_department_t *departments;
    size_t department_count;
    catalog_category_t *categories;
    size_t category_count;
    rule_t *rules;
    size_t rule_count;
    const char *fallback_department;   //  NULL when there is no fallback
    const char *fallback_policy;
};

static const char *const s_request_type_names [] = {
    "consult", "help", "complaint", "report", "suggestion"
};

static const char *const s_datatypes [] = {
    "string", "number", "datetime", "text", "singlevaluelist", "multivaluelist", NULL
};

static const char *const s_facility_classes [] = {
    "公用设施", "道路交通", "市容环境", "园林绿化", "房屋土地", "其他", NULL
};

static const char *const s_event_classes [] = {
    "市容环境", "宣传广告", "施工管理", "突发事件", "街面秩序", "其他", NULL
};

//  Which characters a kind of code may use.
typedef enum {
    CODE_DEPARTMENT,            //  a-z 0-9 _ -
    CODE_CATEGORY,              //  a-z 0-9 _ - and inner dots
    CODE_AREA,                  //  A-Z a-z 0-9 . _ - (grid codes)
    CODE_POLICY                 //  a-z 0-9 . _ -
} code_kind_t;

//  One load: where errors go.
typedef struct {
    char *err;
    size_t errcap;
} loader_t;

/* ---- private ---- */

static int
s_fail (loader_t *loader, const char *format, ...)
{
    if (loader->err && loader->errcap) {
        va_list args;
        va_start (args, format);
        vsnprintf (loader->err, loader->errcap, format, args);
        va_end (args);
    }
    return -1;
}

static bool
s_code_is_valid (const char *code, code_kind_t kind)
{
    size_t len = strlen (code);
    if (len == 0 || len >= CATALOG_CODE_MAX)
        return false;
    if (kind == CODE_CATEGORY && (code [0] == '.' || code [len - 1] == '.'))
        return false;
    for (const char *p = code; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'
               || (c == '.' && kind != CODE_DEPARTMENT)
               || (c >= 'A' && c <= 'Z' && kind == CODE_AREA);
        if (!ok)
            return false;
    }
    return true;
}

static bool
s_in_list (const char *value, const char *const *list)
{
    for (; *list; list++)
        if (strcmp (value, *list) == 0)
            return true;
    return false;
}

//  Refuses keys that are not in `allowed` (NULL-terminated): a misspelt
//  "departmnt" must not silently become "no department". "note" is always
//  allowed, for people's comments.
static int
s_keys_check (loader_t *loader, json_t *object, const char *where, const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach (object, key, value) {
        (void) value;
        if (strcmp (key, "note") != 0 && !s_in_list (key, allowed))
            return s_fail (loader, "%s: unknown field '%s'", where, key);
    }
    return 0;
}

//  A string field: required ones must be present and non-empty. Returns 0
//  and sets *value (NULL when optional and absent), or -1.
static int
s_string_get (loader_t *loader, json_t *object, const char *key, bool required,
              const char *where, const char **value)
{
    json_t *field = json_object_get (object, key);
    *value = NULL;
    if (!field) {
        if (required)
            return s_fail (loader, "%s: field '%s' is missing", where, key);
        return 0;
    }
    if (!json_is_string (field) || json_string_length (field) == 0)
        return s_fail (loader, "%s: field '%s' must be a non-empty string", where, key);
    if (strlen (json_string_value (field)) != json_string_length (field))
        return s_fail (loader, "%s: field '%s' contains a NUL character", where, key);
    *value = json_string_value (field);
    return 0;
}

static int
s_code_get (loader_t *loader, json_t *object, const char *key, bool required,
            const char *where, code_kind_t kind, const char **value)
{
    if (s_string_get (loader, object, key, required, where, value) != 0)
        return -1;
    if (*value && !s_code_is_valid (*value, kind))
        return s_fail (loader, "%s: %s '%s' is not a valid code (%s, at most %d characters)",
                       where, key, *value,
                       kind == CODE_DEPARTMENT? "a-z 0-9 _ -":
                       kind == CODE_CATEGORY? "a-z 0-9 _ - and inner dots":
                       kind == CODE_AREA? "A-Z a-z 0-9 . _ -": "a-z 0-9 . _ -",
                       CATALOG_CODE_MAX - 1);
    return 0;
}

//  An array of non-empty strings as a NULL-terminated pointer array owned
//  by the caller (the strings stay in the JSON tree).
static int
s_string_array_get (loader_t *loader, json_t *object, const char *key, bool required,
                    const char *where, const char ***strings, size_t *count)
{
    json_t *array = json_object_get (object, key);
    *strings = NULL;
    *count = 0;
    if (!array) {
        if (required)
            return s_fail (loader, "%s: field '%s' is missing", where, key);
        return 0;
    }
    if (!json_is_array (array))
        return s_fail (loader, "%s: field '%s' must be an array of strings", where, key);
    size_t size = json_array_size (array);
    *strings = calloc (size + 1, sizeof (char *));
    if (!*strings)
        return s_fail (loader, "out of memory");
    for (size_t i = 0; i < size; i++) {
        json_t *item = json_array_get (array, i);
        if (!json_is_string (item) || json_string_length (item) == 0)
            return s_fail (loader, "%s: %s[%zu] must be a non-empty string", where, key, i);
        (*strings) [i] = json_string_value (item);
    }
    *count = size;
    return 0;
}

static const catalog_department_t *
s_department_find (const catalog_t *self, const char *code)
{
    for (size_t i = 0; i < self->department_count; i++)
        if (strcmp (self->departments [i].code, code) == 0)
            return &self->departments [i];
    return NULL;
}

static int
s_departments_read (catalog_t *self, loader_t *loader, json_t *array)
{
    static const char *const allowed [] = {
        "code", "name", "name_zh", "masks_personal_data", NULL
    };
    if (!json_is_array (array) || json_array_size (array) == 0)
        return s_fail (loader, "departments: must be a non-empty array");
    self->departments = calloc (json_array_size (array), sizeof (catalog_department_t));
    if (!self->departments)
        return s_fail (loader, "out of memory");
    for (size_t i = 0; i < json_array_size (array); i++) {
        json_t *item = json_array_get (array, i);
        catalog_department_t *department = &self->departments [i];
        char where [48];
        snprintf (where, sizeof where, "departments[%zu]", i);
        if (!json_is_object (item))
            return s_fail (loader, "%s: must be an object", where);
        if (s_keys_check (loader, item, where, allowed)
            || s_code_get (loader, item, "code", true, where, CODE_DEPARTMENT, &department->code)
            || s_string_get (loader, item, "name", true, where, &department->name)
            || s_string_get (loader, item, "name_zh", true, where, &department->name_zh))
            return -1;
        json_t *masks = json_object_get (item, "masks_personal_data");
        if (masks && !json_is_boolean (masks))
            return s_fail (loader, "%s: field 'masks_personal_data' must be true or false", where);
        department->masks_personal_data = json_is_true (masks);
        const catalog_department_t *first = s_department_find (self, department->code);
        if (first)
            return s_fail (loader, "%s: duplicate department code '%s' (first at departments[%zu])",
                           where, department->code, (size_t) (first - self->departments));
        self->department_count = i + 1;
    }
    return 0;
}

static int
s_questions_read (loader_t *loader, json_t *array, const char *where,
                  catalog_category_t *category)
{
    static const char *const allowed [] = {
        "code", "description", "datatype", "required", "values", NULL
    };
    static const char *const choice_allowed [] = { "key", "name", NULL };
    if (!array)
        return 0;
    if (!json_is_array (array))
        return s_fail (loader, "%s: field 'questions' must be an array", where);
    size_t count = json_array_size (array);
    catalog_question_t *questions = calloc (count + 1, sizeof (catalog_question_t));
    if (!questions)
        return s_fail (loader, "out of memory");
    category->questions = questions;
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get (array, i);
        catalog_question_t *question = &questions [i];
        char here [128];
        snprintf (here, sizeof here, "%s: questions[%zu]", where, i);
        if (!json_is_object (item))
            return s_fail (loader, "%s: must be an object", here);
        if (s_keys_check (loader, item, here, allowed)
            || s_code_get (loader, item, "code", true, here, CODE_DEPARTMENT, &question->code)
            || s_string_get (loader, item, "description", true, here, &question->description)
            || s_string_get (loader, item, "datatype", true, here, &question->datatype))
            return -1;
        category->question_count = i + 1;
        if (!s_in_list (question->datatype, s_datatypes))
            return s_fail (loader, "%s: datatype '%s' is not one of string, number, datetime, "
                           "text, singlevaluelist, multivaluelist", here, question->datatype);
        json_t *required = json_object_get (item, "required");
        if (required && !json_is_boolean (required))
            return s_fail (loader, "%s: field 'required' must be true or false", here);
        question->required = json_is_true (required);
        bool is_list = strstr (question->datatype, "valuelist") != NULL;
        json_t *values = json_object_get (item, "values");
        if (!is_list) {
            if (values)
                return s_fail (loader, "%s: only list datatypes take 'values'", here);
            continue;
        }
        if (!json_is_array (values) || json_array_size (values) == 0)
            return s_fail (loader, "%s: a %s needs a non-empty 'values' array",
                           here, question->datatype);
        size_t value_count = json_array_size (values);
        catalog_choice_t *choices = calloc (value_count, sizeof (catalog_choice_t));
        if (!choices)
            return s_fail (loader, "out of memory");
        question->values = choices;
        question->value_count = value_count;
        for (size_t k = 0; k < value_count; k++) {
            json_t *value = json_array_get (values, k);
            char there [192];
            snprintf (there, sizeof there, "%s: values[%zu]", here, k);
            if (!json_is_object (value))
                return s_fail (loader, "%s: must be an object", there);
            if (s_keys_check (loader, value, there, choice_allowed)
                || s_string_get (loader, value, "key", true, there, &choices [k].key)
                || s_string_get (loader, value, "name", true, there, &choices [k].name))
                return -1;
        }
    }
    return 0;
}

static int
s_gbt30428_read (loader_t *loader, json_t *object, const char *where,
                 catalog_category_t *category)
{
    static const char *const allowed [] = { "kind", "class", "subclass", NULL };
    if (!object)
        return 0;
    char here [128];
    snprintf (here, sizeof here, "%s: gbt30428", where);
    if (!json_is_object (object))
        return s_fail (loader, "%s: must be an object", here);
    if (s_keys_check (loader, object, here, allowed)
        || s_string_get (loader, object, "kind", true, here, &category->gbt_kind)
        || s_string_get (loader, object, "class", true, here, &category->gbt_class)
        || s_string_get (loader, object, "subclass", true, here, &category->gbt_subclass))
        return -1;
    const char *const *classes = strcmp (category->gbt_kind, "facility") == 0? s_facility_classes:
                                 strcmp (category->gbt_kind, "event") == 0? s_event_classes: NULL;
    if (!classes)
        return s_fail (loader, "%s: kind '%s' is not 'facility' (部件) or 'event' (事件)",
                       here, category->gbt_kind);
    if (!s_in_list (category->gbt_class, classes))
        return s_fail (loader, "%s: '%s' is not a GB/T 30428 %s class", here,
                       category->gbt_class, category->gbt_kind);
    return 0;
}

static int
s_categories_read (catalog_t *self, loader_t *loader, json_t *array)
{
    static const char *const allowed [] = {
        "code", "name", "name_zh", "group", "description", "keywords", "request_types",
        "gbt30428", "questions", NULL
    };
    if (!json_is_array (array) || json_array_size (array) == 0)
        return s_fail (loader, "categories: must be a non-empty array");
    self->categories = calloc (json_array_size (array), sizeof (catalog_category_t));
    if (!self->categories)
        return s_fail (loader, "out of memory");
    for (size_t i = 0; i < json_array_size (array); i++) {
        json_t *item = json_array_get (array, i);
        catalog_category_t *category = &self->categories [i];
        self->category_count = i + 1;   //  so destroy frees what this one holds
        char where [48];
        snprintf (where, sizeof where, "categories[%zu]", i);
        if (!json_is_object (item))
            return s_fail (loader, "%s: must be an object", where);
        const char **keywords = NULL;
        const char **request_types = NULL;
        size_t request_type_count = 0;
        int rc = s_keys_check (loader, item, where, allowed)
              || s_code_get (loader, item, "code", true, where, CODE_CATEGORY, &category->code)
              || s_string_get (loader, item, "name", true, where, &category->name)
              || s_string_get (loader, item, "name_zh", true, where, &category->name_zh)
              || s_string_get (loader, item, "group", true, where, &category->group)
              || s_string_array_get (loader, item, "keywords", true, where,
                                     &keywords, &category->keyword_count);
        category->keywords = keywords;
        if (rc)
            return -1;
        json_t *description = json_object_get (item, "description");
        if (!json_is_string (description))
            return s_fail (loader, "%s: field 'description' must be a string", where);
        category->description = json_string_value (description);
        for (size_t k = 0; k < i; k++)
            if (strcmp (self->categories [k].code, category->code) == 0)
                return s_fail (loader, "%s: duplicate category code '%s' (first at categories[%zu])",
                               where, category->code, k);
        rc = s_string_array_get (loader, item, "request_types", false, where,
                                 &request_types, &request_type_count);
        for (size_t k = 0; k < request_type_count && rc == 0; k++) {
            unsigned bit = catalog_request_type_from_name (request_types [k]);
            if (!bit)
                rc = s_fail (loader, "%s: request type '%s' is not one of consult, help, "
                             "complaint, report, suggestion", where, request_types [k]);
            else
            if (category->request_types & bit)
                rc = s_fail (loader, "%s: request type '%s' listed twice", where, request_types [k]);
            category->request_types |= bit;
        }
        free (request_types);
        if (rc)
            return -1;
        if (request_type_count == 0) {
            if (json_object_get (item, "request_types"))
                return s_fail (loader, "%s: 'request_types' must not be empty (leave it out "
                               "to allow all)", where);
            category->request_types = CATALOG_ALL_REQUEST_TYPES;
        }
        if (s_gbt30428_read (loader, json_object_get (item, "gbt30428"), where, category)
            || s_questions_read (loader, json_object_get (item, "questions"), where, category))
            return -1;
    }
    return 0;
}

static int
s_rules_read (catalog_t *self, loader_t *loader, json_t *array)
{
    static const char *const allowed [] = {
        "category", "area", "request_type", "department", "co_handlers", "policy", NULL
    };
    if (!json_is_array (array))
        return s_fail (loader, "rules: must be an array");
    size_t count = json_array_size (array);
    self->rules = calloc (count? count: 1, sizeof (rule_t));
    if (!self->rules)
        return s_fail (loader, "out of memory");
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get (array, i);
        rule_t *rule = &self->rules [i];
        catalog_rule_t *pub = &rule->public;
        self->rule_count = i + 1;
        char where [48];
        snprintf (where, sizeof where, "rules[%zu]", i);
        if (!json_is_object (item))
            return s_fail (loader, "%s: must be an object", where);
        if (s_keys_check (loader, item, where, allowed)
            || s_string_get (loader, item, "category", true, where, &pub->category)
            || s_string_get (loader, item, "area", false, where, &pub->area)
            || s_string_get (loader, item, "request_type", false, where, &pub->request_type)
            || s_code_get (loader, item, "department", true, where, CODE_DEPARTMENT,
                           &pub->department)
            || s_code_get (loader, item, "policy", true, where, CODE_POLICY, &pub->policy))
            return -1;
        const char **co_handlers = NULL;
        int rc = s_string_array_get (loader, item, "co_handlers", false, where,
                                     &co_handlers, &pub->co_handler_count);
        pub->co_handlers = co_handlers;
        if (rc)
            return -1;
        pub->area = pub->area? pub->area: "*";
        pub->request_type = pub->request_type? pub->request_type: "*";

        //  category: "*", "prefix*", or a declared code
        size_t len = strlen (pub->category);
        const catalog_category_t *exact = NULL;
        if (pub->category [len - 1] == '*') {
            rule->prefix = pub->category;
            rule->prefix_len = len - 1;
            char prefix [CATALOG_CODE_MAX];
            if (len - 1 >= CATALOG_CODE_MAX || memchr (pub->category, '*', len - 1))
                return s_fail (loader, "%s: category pattern '%s' is not a code, a prefix "
                               "ending in '*', or '*'", where, pub->category);
            memcpy (prefix, pub->category, len - 1);
            prefix [len - 1] = 0;
            bool matches = len == 1;
            for (size_t k = 0; k < self->category_count && !matches; k++)
                matches = strncmp (self->categories [k].code, prefix, len - 1) == 0;
            if (!matches)
                return s_fail (loader, "%s: category prefix '%s' matches no declared category",
                               where, pub->category);
        }
        else {
            exact = catalog_category (self, pub->category);
            if (!exact)
                return s_fail (loader, "%s: category '%s' is not declared", where, pub->category);
        }
        if (strcmp (pub->area, "*") != 0 && !s_code_is_valid (pub->area, CODE_AREA))
            return s_fail (loader, "%s: area '%s' is not an area code or '*'", where, pub->area);
        if (strcmp (pub->request_type, "*") != 0) {
            rule->request_bit = catalog_request_type_from_name (pub->request_type);
            if (!rule->request_bit)
                return s_fail (loader, "%s: request type '%s' is not one of consult, help, "
                               "complaint, report, suggestion or '*'", where, pub->request_type);
            if (exact && !(exact->request_types & rule->request_bit))
                return s_fail (loader, "%s: category '%s' does not take request type '%s'",
                               where, exact->code, pub->request_type);
        }
        if (!s_department_find (self, pub->department))
            return s_fail (loader, "%s: department '%s' is not declared", where, pub->department);
        if (pub->co_handler_count > CATALOG_CO_HANDLERS_MAX)
            return s_fail (loader, "%s: more than %d co_handlers", where, CATALOG_CO_HANDLERS_MAX);
        for (size_t k = 0; k < pub->co_handler_count; k++) {
            const char *co = pub->co_handlers [k];
            if (!s_department_find (self, co))
                return s_fail (loader, "%s: co-handler '%s' is not declared", where, co);
            if (strcmp (co, pub->department) == 0)
                return s_fail (loader, "%s: department '%s' is also listed as its co-handler",
                               where, co);
            for (size_t j = 0; j < k; j++)
                if (strcmp (pub->co_handlers [j], co) == 0)
                    return s_fail (loader, "%s: co-handler '%s' listed twice", where, co);
        }
        for (size_t k = 0; k < i; k++) {
            const catalog_rule_t *other = &self->rules [k].public;
            if (strcmp (other->category, pub->category) == 0
                && strcmp (other->area, pub->area) == 0
                && strcmp (other->request_type, pub->request_type) == 0)
                return s_fail (loader, "%s: same category, area and request type as rules[%zu]",
                               where, k);
        }
    }
    return 0;
}

static int
s_fallback_read (catalog_t *self, loader_t *loader, json_t *object)
{
    static const char *const allowed [] = { "department", "policy", NULL };
    if (!object || json_is_null (object))
        return 0;
    if (!json_is_object (object))
        return s_fail (loader, "fallback: must be an object or null");
    if (s_keys_check (loader, object, "fallback", allowed)
        || s_code_get (loader, object, "department", true, "fallback", CODE_DEPARTMENT,
                       &self->fallback_department)
        || s_code_get (loader, object, "policy", true, "fallback", CODE_POLICY,
                       &self->fallback_policy))
        return -1;
    if (!s_department_find (self, self->fallback_department))
        return s_fail (loader, "fallback: department '%s' is not declared",
                       self->fallback_department);
    return 0;
}

static bool
s_is_excluded (const char *department, const char *const *excluded, size_t n_excluded)
{
    for (size_t i = 0; i < n_excluded; i++)
        if (excluded [i] && strcmp (excluded [i], department) == 0)
            return true;
    return false;
}

/* ---- public ---- */

catalog_t *
catalog_from_json (const char *text, size_t len, char *err, size_t errcap)
{
    static const char *const allowed [] = {
        "version", "departments", "categories", "rules", "fallback", NULL
    };
    assert (text || len == 0);
    loader_t loader = { .err = err, .errcap = errcap };
    if (err && errcap)
        *err = 0;
    json_error_t json_error;
    json_t *root = json_loadb (text, len, JSON_REJECT_DUPLICATES, &json_error);
    if (!root) {
        s_fail (&loader, "line %d, column %d: %s",
                json_error.line, json_error.column, json_error.text);
        return NULL;
    }
    catalog_t *self = calloc (1, sizeof (catalog_t));
    if (!self) {
        json_decref (root);
        s_fail (&loader, "out of memory");
        return NULL;
    }
    self->root = root;
    if (!json_is_object (root)) {
        s_fail (&loader, "the catalogue must be a JSON object");
        goto failed;
    }
    if (s_keys_check (&loader, root, "catalogue", allowed)
        || s_string_get (&loader, root, "version", true, "catalogue", &self->version)
        || s_departments_read (self, &loader, json_object_get (root, "departments"))
        || s_categories_read (self, &loader, json_object_get (root, "categories"))
        || s_rules_read (self, &loader, json_object_get (root, "rules"))
        || s_fallback_read (self, &loader, json_object_get (root, "fallback")))
        goto failed;
    return self;
failed:
    catalog_destroy (&self);
    return NULL;
}

void
catalog_destroy (catalog_t **self_p)
{
    assert (self_p);
    catalog_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->category_count; i++) {
        catalog_category_t *category = &self->categories [i];
        free ((void *) category->keywords);
        for (size_t k = 0; k < category->question_count; k++)
            free ((void *) category->questions [k].values);
        free ((void *) category->questions);
    }
    for (size_t i = 0; i < self->rule_count; i++)
        free ((void *) self->rules [i].public.co_handlers);
    free (self->categories);
    free (self->departments);
    free (self->rules);
    json_decref (self->root);
    free (self);
    *self_p = NULL;
}

const char *
catalog_version (const catalog_t *self)
{
    assert (self);
    return self->version;
}

int
catalog_route (const catalog_t *self, const char *category,
               const char *const *grid_path, size_t path_len,
               const char *request_type,
               const char *const *excluded, size_t n_excluded,
               catalog_route_t *out)
{
    assert (self);
    assert (out);
    assert (grid_path || path_len == 0);
    assert (excluded || n_excluded == 0);
    unsigned request_bit = catalog_request_type_from_name (request_type);
    const rule_t *best = NULL;
    size_t best_category = 0, best_area = 0, best_type = 0;
    for (size_t i = 0; i < self->rule_count; i++) {
        const rule_t *rule = &self->rules [i];
        if (s_is_excluded (rule->public.department, excluded, n_excluded))
            continue;
        //  category rank: exact > prefix by length (+1) > "*" (0 + 1 = 1)
        size_t category_rank;
        if (!rule->prefix) {
            if (!category || strcmp (category, rule->public.category) != 0)
                continue;
            category_rank = SIZE_MAX;
        }
        else {
            if (rule->prefix_len > 0
                && (!category || strncmp (category, rule->prefix, rule->prefix_len) != 0))
                continue;
            category_rank = rule->prefix_len + 1;
        }
        //  area rank: 1-based depth of the rule's area in the path, 0 for "*"
        size_t area_rank = 0;
        if (strcmp (rule->public.area, "*") != 0) {
            for (size_t k = 0; k < path_len && area_rank == 0; k++)
                if (grid_path [k] && strcmp (grid_path [k], rule->public.area) == 0)
                    area_rank = k + 1;
            if (area_rank == 0)
                continue;
        }
        size_t type_rank = 0;
        if (rule->request_bit) {
            if (rule->request_bit != request_bit)
                continue;
            type_rank = 1;
        }
        if (!best
            || category_rank > best_category
            || (category_rank == best_category && area_rank > best_area)
            || (category_rank == best_category && area_rank == best_area
                && type_rank > best_type)) {
            best = rule;
            best_category = category_rank;
            best_area = area_rank;
            best_type = type_rank;
        }
    }
    memset (out, 0, sizeof *out);
    if (best) {
        snprintf (out->department, sizeof out->department, "%s", best->public.department);
        snprintf (out->policy, sizeof out->policy, "%s", best->public.policy);
        for (size_t k = 0; k < best->public.co_handler_count; k++) {
            const char *co = best->public.co_handlers [k];
            if (!s_is_excluded (co, excluded, n_excluded))
                snprintf (out->co_handlers [out->co_handler_count++], CATALOG_CODE_MAX, "%s", co);
        }
        out->rule_index = (int) (best - self->rules);
        return 0;
    }
    if (self->fallback_department
        && !s_is_excluded (self->fallback_department, excluded, n_excluded)) {
        snprintf (out->department, sizeof out->department, "%s", self->fallback_department);
        snprintf (out->policy, sizeof out->policy, "%s", self->fallback_policy);
        out->rule_index = -1;
        return 0;
    }
    out->rule_index = -1;
    return 1;
}

const catalog_category_t *
catalog_category (const catalog_t *self, const char *code)
{
    assert (self);
    if (!code)
        return NULL;
    //  O(categories); a district has a few hundred at most.
    for (size_t i = 0; i < self->category_count; i++)
        if (self->categories [i].code && strcmp (self->categories [i].code, code) == 0)
            return &self->categories [i];
    return NULL;
}

size_t
catalog_category_count (const catalog_t *self)
{
    assert (self);
    return self->category_count;
}

const catalog_category_t *
catalog_category_at (const catalog_t *self, size_t index)
{
    assert (self);
    return index < self->category_count? &self->categories [index]: NULL;
}

const catalog_department_t *
catalog_department (const catalog_t *self, const char *code)
{
    assert (self);
    return code? s_department_find (self, code): NULL;
}

size_t
catalog_department_count (const catalog_t *self)
{
    assert (self);
    return self->department_count;
}

const catalog_department_t *
catalog_department_at (const catalog_t *self, size_t index)
{
    assert (self);
    return index < self->department_count? &self->departments [index]: NULL;
}

size_t
catalog_rule_count (const catalog_t *self)
{
    assert (self);
    return self->rule_count;
}

const catalog_rule_t *
catalog_rule_at (const catalog_t *self, size_t index)
{
    assert (self);
    return index < self->rule_count? &self->rules [index].public: NULL;
}

int
catalog_fallback (const catalog_t *self, const char **department, const char **policy)
{
    assert (self);
    if (!self->fallback_department)
        return -1;
    if (department)
        *department = self->fallback_department;
    if (policy)
        *policy = self->fallback_policy;
    return 0;
}

unsigned
catalog_request_type_from_name (const char *name)
{
    if (!name)
        return 0;
    for (unsigned i = 0; i < 5; i++)
        if (strcmp (name, s_request_type_names [i]) == 0)
            return 1u << i;
    return 0;
}

const char *
catalog_request_type_name (unsigned request_type)
{
    for (unsigned i = 0; i < 5; i++)
        if (request_type == 1u << i)
            return s_request_type_names [i];
    return NULL;
}
