/*  pbutil.c — string and repeated-string field editing for protobuf-c
    messages that are later released with __free_unpacked(msg, NULL)
    (see pbutil.h for the ownership contract). */

#include "civicbus/pbutil.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <protobuf-c/protobuf-c.h>

/* ---- private ---- */

//  The one string in a message that is not ours to free.
static bool
s_is_static_empty (const char *value)
{
    return value == protobuf_c_empty_string;
}

/* ---- public ---- */

bool
pb_string_is_empty (const char *value)
{
    return value == NULL || value [0] == '\0';
}

void
pb_string_free (char *value)
{
    if (value && !s_is_static_empty (value))
        free (value);
}

int
pb_set_string (char **field, const char *value)
{
    assert (field);
    char *copy = (char *) protobuf_c_empty_string;
    if (!pb_string_is_empty (value)) {
        //  Copy before freeing: `value` may be the old string itself.
        copy = strdup (value);
        if (!copy)
            return -1;
    }
    pb_string_free (*field);
    *field = copy;
    return 0;
}

int
pb_strv_push (size_t *n, char ***v, const char *value)
{
    assert (n && v);
    char *copy = strdup (value ? value : "");
    if (!copy)
        return -1;
    char **grown = realloc (*v, (*n + 1) * sizeof (char *));
    if (!grown) {
        free (copy);
        return -1;
    }
    grown [*n] = copy;
    *v = grown;
    (*n)++;
    return 0;
}

bool
pb_strv_contains (size_t n, char **v, const char *value)
{
    const char *wanted = value ? value : "";
    for (size_t i = 0; i < n && v; i++)
        if (strcmp (v [i] ? v [i] : "", wanted) == 0)
            return true;
    return false;
}

void
pb_strv_clear (size_t *n, char ***v)
{
    assert (n && v);
    for (size_t i = 0; i < *n && *v; i++)
        pb_string_free ((*v) [i]);
    free (*v);
    *v = NULL;
    *n = 0;
}

int
pb_strv_set (size_t *n, char ***v, const char *const *values)
{
    assert (n && v);
    size_t new_n = 0;
    char **new_v = NULL;
    for (size_t i = 0; values && values [i]; i++)
        if (pb_strv_push (&new_n, &new_v, values [i]) != 0) {
            pb_strv_clear (&new_n, &new_v);
            return -1;
        }
    pb_strv_clear (n, v);
    *n = new_n;
    *v = new_v;
    return 0;
}
