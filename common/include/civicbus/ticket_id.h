/*  ticket_id.h — ticket ids and the Redis bucket they live in.

    An id reads "320105-20261129-000004711": district code, the Asia/Shanghai
    date it was received, and a nine-digit number N. N = seq * CB_BUCKETS +
    bucket, where seq is a per-bucket, per-day Redis counter: so ids are unique
    across any number of intake processes without coordination beyond the
    bucket's own counter, sort by day and (roughly) by arrival, and the bucket
    is N mod CB_BUCKETS: derivable from the id alone.

    Every key of one ticket carries the hash tag "{bNN}" of its bucket, so all
    its keys sit in one Redis Cluster slot and one script can touch them all.
    A new ticket's bucket is chosen from its idempotency key, so the check
    "have we seen this key?" and the write of the ticket are one script. */

#ifndef CIVICBUS_TICKET_ID_H
#define CIVICBUS_TICKET_ID_H

#include <stddef.h>
#include <stdint.h>

#define CB_BUCKETS 64
#define CB_TICKET_ID_MAX 48      //  buffer size for an id, with room to spare
#define CB_BUCKET_TAG_MAX 8      //  "{b63}" plus NUL

//  Writes "DISTRICT-YYYYMMDD-NNNNNNNNN" for seq in bucket. Returns 0, or -1
//  when the district is not 1..12 digits or the buffer is too small.
int ticket_id_format (char *buf, size_t cap, const char *district, int yyyymmdd,
                      int64_t seq, int bucket);
//  The bucket of a well-formed id, or -1 for text that is not a ticket id
//  (ids come from outside in URLs: this is the validation).
int ticket_id_bucket (const char *id);
//  "{b07}" for bucket 7.
void cb_bucket_tag (int bucket, char *buf, size_t cap);
//  The bucket for an idempotency key (stable across processes and versions:
//  FNV-1a, mod CB_BUCKETS).
int cb_bucket_for_key (const char *key);

#endif
