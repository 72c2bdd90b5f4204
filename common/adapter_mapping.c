/*  adapter_mapping.c — what the department mappings share (adapter.h,
    "helpers for mappings"): times as the departments get them, the parts of
    an order body every department has, reading the members every answer
    has in some name, and the shape checks of a mapping file. Kept apart
    from adapter.c, which is the adapter process; these are pure. */

#include "civicbus/adapter.h"
#include "civicbus/clock.h"

#include <stdio.h>
#include <string.h>

/* ---- private ---- */

//  cb_adapter_iso (below) into `buf` itself: "" stays "" in the buffer too.
static void
s_time_into (int64_t ms, char *buf, size_t cap)
{
    if (!*cb_adapter_iso (ms, buf, cap))
        buf [0] = 0;
}

/* ---- public: order bodies ---- */

const char *
cb_adapter_or_empty (const char *text)
{
    return text ? text : "";
}

const char *
cb_adapter_iso (int64_t ms, char *buf, size_t cap)
{
    if (ms <= 0)
        return "";
    return cb_time_format_iso (ms, buf, cap) ? buf : "";
}

void
cb_adapter_order_times (const Civicbus__V1__DispatchOrder *order, cb_order_times_t *times)
{
    s_time_into (order->ticket->created_ms, times->reported, sizeof times->reported);
    s_time_into (order->sign_due_ms, times->sign_by, sizeof times->sign_by);
    s_time_into (order->resolve_due_ms, times->resolve_by, sizeof times->resolve_by);
}

const Civicbus__V1__Ticket *
cb_adapter_order_ticket (const Civicbus__V1__DispatchOrder *order, cb_error_t *err)
{
    const Civicbus__V1__Ticket *ticket = order->ticket;
    if (!ticket || !ticket->id || !*ticket->id) {
        cb_error_set (err, "missing_field", "ticket", "the order carries no ticket");
        return NULL;
    }
    return ticket;
}

json_t *
cb_adapter_url_array (char *const *urls, size_t n)
{
    json_t *array = json_array ();
    for (size_t i = 0; array && i < n; i++)
        json_array_append_new (array, json_string (urls [i]));
    return array;
}

int
cb_adapter_request_finish (cb_dept_request_t *request, json_t *body, const char *what,
                           cb_error_t *err)
{
    request->body = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_decref (body);
    request->path [0] = 0;
    if (!request->body) {
        cb_error_set (err, "no_memory", NULL, "the %s could not be encoded "
                      "(text that is not UTF-8?)", what);
        return -1;
    }
    return 0;
}

/* ---- public: answers ---- */

int
cb_adapter_answer_kind (const json_t *body, const char *key_field, const char *kind_field,
                        const cb_adapter_word_t *words, size_t n_words, const char *one_of,
                        cb_dept_answer_t *answer, cb_error_t *err)
{
    const char *key = json_string_value (json_object_get (body, key_field));
    if (!key || !*key) {
        cb_error_set (err, "missing_field", key_field, "%s is required", key_field);
        return -1;
    }
    const char *word = json_string_value (json_object_get (body, kind_field));
    if (!word) {
        cb_error_set (err, "missing_field", kind_field, "%s is required", kind_field);
        return -1;
    }
    answer->kind = CIVICBUS__V1__REPLY_KIND__REPLY_UNSPECIFIED;
    for (size_t i = 0; i < n_words; i++)
        if (strcmp (word, words [i].word) == 0)
            answer->kind = words [i].kind;
    if (answer->kind == CIVICBUS__V1__REPLY_KIND__REPLY_UNSPECIFIED) {
        cb_error_set (err, "bad_value", kind_field, "%s '%.64s' is not one of %s",
                      kind_field, word, one_of);
        return -1;
    }
    answer->dispatch_id = key;
    return 0;
}

bool
cb_adapter_kind_needs_text (Civicbus__V1__ReplyKind kind)
{
    return kind == CIVICBUS__V1__REPLY_KIND__REPLY_RETURN
        || kind == CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION
        || kind == CIVICBUS__V1__REPLY_KIND__REPLY_SUSPEND
        || kind == CIVICBUS__V1__REPLY_KIND__REPLY_RESOLVE;
}

int
cb_adapter_answer_days (const json_t *body, const char *field, const char *needed_by,
                        int max_days, cb_dept_answer_t *answer, cb_error_t *err)
{
    const json_t *days = json_object_get (body, field);
    if (days && !json_is_integer (days)) {
        cb_error_set (err, "bad_value", field, "%s must be a whole number", field);
        return -1;
    }
    if (answer->kind != CIVICBUS__V1__REPLY_KIND__REPLY_EXTENSION)
        return 0;
    if (!days) {
        cb_error_set (err, "missing_field", field, "%s needs %s", needed_by, field);
        return -1;
    }
    json_int_t n = json_integer_value (days);
    if (n < 1 || n > max_days) {
        cb_error_set (err, "bad_value", field, "%s must be 1..%d", field, max_days);
        return -1;
    }
    answer->extension_days = (int32_t) n;
    return 0;
}

int
cb_adapter_answer_urls (const json_t *body, const char *field, cb_dept_answer_t *answer,
                        cb_error_t *err)
{
    const json_t *urls = json_object_get (body, field);
    if (urls && !json_is_array (urls)) {
        cb_error_set (err, "bad_value", field, "%s must be an array of URLs", field);
        return -1;
    }
    size_t index;
    json_t *url;
    json_array_foreach ((json_t *) urls, index, url) {
        if (!json_is_string (url) || answer->n_attachment_urls >= CB_ADAPTER_ATTACHMENTS_MAX) {
            cb_error_set (err, "bad_value", field, "%s must be at most %d URLs", field,
                          CB_ADAPTER_ATTACHMENTS_MAX);
            return -1;
        }
        answer->attachment_urls [answer->n_attachment_urls++] = json_string_value (url);
    }
    return 0;
}

int
cb_adapter_answer_time (const json_t *body, const char *field, cb_dept_answer_t *answer,
                        cb_error_t *err)
{
    const json_t *at = json_object_get (body, field);
    if (json_is_integer (at))
        answer->time_ms = (int64_t) json_integer_value (at);
    else
    if (at && (!json_is_string (at)
               || cb_time_parse_iso (json_string_value (at), &answer->time_ms))) {
        cb_error_set (err, "bad_value", field, "%s must be ISO 8601 or milliseconds", field);
        return -1;
    }
    return 0;
}

/* ---- public: mapping files ---- */

int
cb_adapter_config_check (const json_t *config, cb_error_t *err)
{
    if (config && !json_is_object (config)) {
        cb_error_set (err, "bad_value", "", "the mapping file must hold a JSON object");
        return -1;
    }
    return 0;
}

int
cb_adapter_config_table (const json_t *config, const char *key, const char *shape,
                         const json_t **table, size_t *n, cb_error_t *err)
{
    *table = json_object_get (config, key);
    *n = 0;
    if (*table && !json_is_object (*table)) {
        cb_error_set (err, "bad_value", key, "must be an object: %s", shape);
        return -1;
    }
    *n = *table ? json_object_size (*table) : 0;
    return 0;
}
