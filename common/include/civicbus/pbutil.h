/*  pbutil.h — editing string and repeated-string fields of protobuf-c messages.

    protobuf-c gives a message two kinds of strings: the shared, read-only
    `protobuf_c_empty_string` that __init() and unpack put in every empty
    string field, and heap strings that protobuf_c_message_free_unpacked()
    (and every generated __free_unpacked(msg, NULL)) releases with free().
    Code that edits a message in place must keep to that, or the message
    leaks or frees a static. These helpers do.

    The contract, for a message created by __init() on a malloc'd struct or
    unpacked with the default allocator (allocator NULL):
    - a singular string field holds either protobuf_c_empty_string or a
      string from malloc; NULL is read as empty. pb_set_string() frees the old
      value (unless it is protobuf_c_empty_string) and stores a malloc'd copy,
      or protobuf_c_empty_string for NULL or "".
    - a repeated string field is a count `n_x` and an array `x` from malloc
      (NULL when n_x is 0) of strings from malloc; free_unpacked frees every
      element and then the array, so an element is never
      protobuf_c_empty_string, not even for "".
    - every edit is all or nothing: a helper that returns -1 (out of memory)
      has left the field exactly as it was.
    Then __free_unpacked(msg, NULL) releases everything, with no leak.

    Do not use these on a message unpacked with a custom allocator (an arena):
    its strings are not malloc's to free. */

#ifndef CIVICBUS_PBUTIL_H
#define CIVICBUS_PBUTIL_H

#include <stdbool.h>
#include <stddef.h>

//  True when `value` is NULL or "" (how an unset proto3 string reads).
bool pb_string_is_empty (const char *value);

//  Replaces the string in `*field` with a heap copy of `value`, or with
//  protobuf_c_empty_string when `value` is NULL or "". Frees the old value
//  unless it is protobuf_c_empty_string (or NULL). `value` may point into
//  the old value. Returns 0, or -1 when out of memory (field unchanged).
int pb_set_string (char **field, const char *value);

//  Frees `value` unless it is NULL or protobuf_c_empty_string. For a string
//  taken out of a field (or built for one) that will not go back in.
void pb_string_free (char *value);

//  Appends a heap copy of `value` (NULL is stored as "") to the repeated
//  string field (*n, *v). Returns 0, or -1 when out of memory (unchanged).
//  Costs one realloc per push: fine for the short lists a ticket has.
int pb_strv_push (size_t *n, char ***v, const char *value);

//  True when one of the n strings in v equals `value` (strcmp; NULL reads
//  as ""). O(n).
bool pb_strv_contains (size_t n, char **v, const char *value);

//  Frees every element and the array, and sets *n = 0, *v = NULL.
void pb_strv_clear (size_t *n, char ***v);

//  Replaces the repeated field (*n, *v) with copies of the NULL-terminated
//  list `values` (NULL means an empty list). All or nothing: on -1 (out of
//  memory) the old list is intact.
int pb_strv_set (size_t *n, char ***v, const char *const *values);

#endif
