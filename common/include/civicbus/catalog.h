/*  catalog.h — the dispatch catalogue (派单目录): which department owns a
    ticket, given its category, where it is, and what kind of request it is.

    The catalogue is one JSON document (format in deploy/config/README.md):
    departments, categories (with the GB/T 30428 class of urban-management
    cases), routing rules, and a fallback. `civicbus catalog load FILE`
    validates it with catalog_from_json; services keep the loaded copy and
    route with catalog_route, a pure function of its arguments.

    Rule precedence (the most specific rule wins), compared in this order:
      1. category: an exact code beats any prefix; a longer prefix beats a
         shorter one ("urban.event.*" beats "urban.*"); "*" comes last;
      2. area: the deeper the rule's area code sits in the ticket's grid
         path, the better (a grid beats its community beats its street beats
         its district); "*" comes last;
      3. request type: a named type beats "*".
    Category outranks area: an exact category anywhere beats a category
    prefix in the ticket's own street. Two rules with the same category,
    area and request type are refused when loading, and two rules matching
    one ticket at the same rank on all three can only be such twins, so a
    match is never a tie (the code still prefers the earlier rule). */

#ifndef CIVICBUS_CATALOG_H
#define CIVICBUS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>

#define CATALOG_CODE_MAX        64  //  bytes with NUL: department, category, policy codes
#define CATALOG_CO_HANDLERS_MAX 8   //  co-handlers (协办) per rule

//  The five 12345 request types, as bits (the order of the proto enum).
enum {
    CATALOG_CONSULT    = 1 << 0,    //  咨询
    CATALOG_HELP       = 1 << 1,    //  求助
    CATALOG_COMPLAINT  = 1 << 2,    //  投诉
    CATALOG_REPORT     = 1 << 3,    //  举报
    CATALOG_SUGGESTION = 1 << 4,    //  建议
    CATALOG_ALL_REQUEST_TYPES = 0x1F
};

typedef struct _catalog_t catalog_t;

typedef struct {
    const char *code;               //  "police", "urban", ...
    const char *name;
    const char *name_zh;
    bool masks_personal_data;       //  reporter's name and phone masked in its payloads
} catalog_department_t;

typedef struct {
    const char *key;
    const char *name;
} catalog_choice_t;

//  An extra question asked when a ticket of this category is reported (an
//  Open311 service definition attribute).
typedef struct {
    const char *code;
    const char *description;
    const char *datatype;           //  string, number, datetime, text, singlevaluelist, multivaluelist
    bool required;
    const catalog_choice_t *values; //  for the two list datatypes
    size_t value_count;
} catalog_question_t;

typedef struct {
    const char *code;               //  dotted, e.g. "urban.event.street.stall"
    const char *name;
    const char *name_zh;
    const char *group;
    const char *description;
    const char *const *keywords;
    size_t keyword_count;
    unsigned request_types;         //  CATALOG_* bits that may use it; all when not given
    const char *gbt_kind;           //  GB/T 30428: "facility" (部件), "event" (事件) or NULL
    const char *gbt_class;          //  e.g. "公用设施", "街面秩序"; NULL when gbt_kind is
    const char *gbt_subclass;       //  e.g. "井盖破损"
    const catalog_question_t *questions;
    size_t question_count;
} catalog_category_t;

typedef struct {
    const char *category;           //  exact code, prefix ending in '*', or "*"
    const char *area;               //  area code or "*"
    const char *request_type;       //  consult, help, complaint, report, suggestion or "*"
    const char *department;
    const char *const *co_handlers;
    size_t co_handler_count;
    const char *policy;
} catalog_rule_t;

//  The answer of catalog_route: copies, so it outlives a reloaded catalogue.
typedef struct {
    char department [CATALOG_CODE_MAX];
    char co_handlers [CATALOG_CO_HANDLERS_MAX][CATALOG_CODE_MAX];
    size_t co_handler_count;
    char policy [CATALOG_CODE_MAX];
    int rule_index;                 //  index in "rules", or -1 for the fallback
} catalog_route_t;

//  Parses and validates a catalogue. Returns it, or NULL with one line in
//  err (when not NULL) that points at the offending entry, e.g.
//  "rules[12]: department 'polce' is not declared".
catalog_t *catalog_from_json (const char *text, size_t len, char *err, size_t errcap);

//  Destroys the catalogue and sets *self_p to NULL; safe when NULL.
void catalog_destroy (catalog_t **self_p);

//  The catalogue's "version" string.
const char *catalog_version (const catalog_t *self);

//  Routes a ticket. category may be NULL or unknown (then only rules with
//  category "*" and the fallback apply); grid_path holds the ticket's area
//  codes top first (path_len 0 for an ungridded ticket: only area "*"
//  rules apply); request_type is a name ("complaint") or NULL (only "*"
//  rules apply); excluded lists departments that returned the ticket (退单):
//  rules naming one as primary are skipped, and it is dropped from the
//  co-handlers. Returns 0 and fills *out; 1 when no rule and no usable
//  fallback is left (the ticket waits in the operators' queue).
//  Cost: O(rules x path_len), no allocation; safe from many threads.
int catalog_route (const catalog_t *self, const char *category,
                   const char *const *grid_path, size_t path_len,
                   const char *request_type,
                   const char *const *excluded, size_t n_excluded,
                   catalog_route_t *out);

//  A category by code, or NULL.
const catalog_category_t *catalog_category (const catalog_t *self, const char *code);
//  Categories in file order: index 0 .. count-1 (NULL past the end).
size_t catalog_category_count (const catalog_t *self);
const catalog_category_t *catalog_category_at (const catalog_t *self, size_t index);

//  A department by code, or NULL; and in file order.
const catalog_department_t *catalog_department (const catalog_t *self, const char *code);
size_t catalog_department_count (const catalog_t *self);
const catalog_department_t *catalog_department_at (const catalog_t *self, size_t index);

//  Rules in file order (for `civicbus catalog show`).
size_t catalog_rule_count (const catalog_t *self);
const catalog_rule_t *catalog_rule_at (const catalog_t *self, size_t index);

//  The fallback's department and policy, or -1 when the catalogue has none.
int catalog_fallback (const catalog_t *self, const char **department, const char **policy);

//  "complaint" -> CATALOG_COMPLAINT; 0 for anything else (including NULL).
unsigned catalog_request_type_from_name (const char *name);
//  CATALOG_COMPLAINT -> "complaint"; NULL for anything but one bit.
const char *catalog_request_type_name (unsigned request_type);

#endif
