/*  ticket_id.c — ticket ids and buckets (see ticket_id.h). */

#include "civicbus/ticket_id.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

int
ticket_id_format (char *buf, size_t cap, const char *district, int yyyymmdd,
                  int64_t seq, int bucket)
{
    size_t dlen = district ? strlen (district) : 0;
    if (dlen < 1 || dlen > 12 || bucket < 0 || bucket >= CB_BUCKETS || seq < 0)
        return -1;
    for (size_t i = 0; i < dlen; i++)
        if (!isdigit ((unsigned char) district [i]))
            return -1;
    int n = snprintf (buf, cap, "%s-%08d-%09lld", district, yyyymmdd,
                      (long long) (seq * CB_BUCKETS + bucket));
    return n > 0 && (size_t) n < cap ? 0 : -1;
}

int
ticket_id_bucket (const char *id)
{
    if (!id)
        return -1;
    const char *p = id;
    size_t n = 0;
    while (isdigit ((unsigned char) p [n]))
        n++;
    if (n < 1 || n > 12 || p [n] != '-')
        return -1;
    p += n + 1;
    for (n = 0; n < 8; n++)
        if (!isdigit ((unsigned char) p [n]))
            return -1;
    if (p [8] != '-')
        return -1;
    p += 9;
    n = 0;
    long long value = 0;
    while (isdigit ((unsigned char) p [n])) {
        if (n >= 15)
            return -1;
        value = value * 10 + (p [n] - '0');
        n++;
    }
    if (n < 9 || p [n] != 0)
        return -1;
    return (int) (value % CB_BUCKETS);
}

void
cb_bucket_tag (int bucket, char *buf, size_t cap)
{
    snprintf (buf, cap, "{b%02d}", bucket);
}

int
cb_bucket_for_key (const char *key)
{
    uint32_t hash = 2166136261u;
    for (const unsigned char *p = (const unsigned char *) key; p && *p; p++) {
        hash ^= *p;
        hash *= 16777619u;
    }
    return (int) (hash % CB_BUCKETS);
}
