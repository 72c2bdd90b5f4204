/*  file.c — a whole small file into memory (see file.h). Reads in growing
    steps rather than trusting the size fstat reports, so a secret handed
    over as a pipe or a /proc file reads as well as a regular file. */

#include "civicbus/file.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

static void
s_say (char *err, size_t errcap, const char *fmt, const char *path, const char *why)
{
    if (err && errcap)
        snprintf (err, errcap, fmt, path, why);
}

/* ---- public ---- */

char *
cb_file_read (const char *path, size_t max_bytes, size_t *len, char *err, size_t errcap)
{
    *len = 0;
    FILE *file = fopen (path, "rb");
    if (!file) {
        s_say (err, errcap, "cannot open %s: %s", path, strerror (errno));
        return NULL;
    }
    size_t cap = 4096, used = 0;
    char *text = malloc (cap);
    bool too_large = false;
    while (text) {
        if (used + 1 == cap) {
            char *bigger = realloc (text, cap * 2);
            if (!bigger) {
                free (text);
                text = NULL;
                break;
            }
            text = bigger;
            cap *= 2;
        }
        size_t n = fread (text + used, 1, cap - used - 1, file);
        used += n;
        if (used > max_bytes) {
            too_large = true;
            break;
        }
        if (n == 0)
            break;
    }
    bool failed = ferror (file);
    int read_errno = errno;
    fclose (file);
    if (!text || failed || too_large) {
        if (!text)
            s_say (err, errcap, "out of memory reading %s%s", path, "");
        else
        if (too_large) {
            char limit [48];
            snprintf (limit, sizeof limit, "%zu bytes", max_bytes);
            s_say (err, errcap, "%s is larger than %s", path, limit);
        }
        else
            s_say (err, errcap, "cannot read %s: %s", path, strerror (read_errno));
        free (text);
        return NULL;
    }
    text [used] = 0;
    *len = used;
    return text;
}
