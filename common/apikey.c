/*  apikey.c — API keys: create, list, revoke, verify, and a per-process
    cache with a token bucket per key (see apikey.h).

    Redis holds only SHA-256(secret), as 64 lowercase hex digits; the hash is
    taken over the whole secret text, "cbk_" included, so an operator can
    check a key by hand with `printf %s cbk_... | sha256sum`.

    The two keys of a key (apikey:HASH and apikey:names) sit in different
    Cluster slots, so no script touches both. Writes are ordered so that a
    crash between them never leaves a secret that verifies without a name:
      create:  HSET apikey:HASH first (nobody knows the secret yet), then
               claim the name with HSETNX; if the name is taken, delete the
               hash again.
      revoke:  DEL apikey:HASH first (the secret stops verifying), then HDEL
               the name. A name left pointing at a deleted hash (a crash in
               between) is skipped by list and reclaimed by create.

    The cache is keyed by SHA-256 of the presented secret (the secret itself
    is never kept), in an open-addressing table that is cleared of expired
    entries when it fills. Unknown secrets are cached too: a client retrying
    a wrong key then costs no Redis round trip, and a fresh key cannot be
    hit by a stale "unknown" entry since nobody could present it before it
    was created. */

#include "civicbus/apikey.h"
#include "civicbus/clock.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define S_PREFIX        "cbk_"
#define S_PREFIX_LEN    4
#define S_RANDOM_BYTES  32
#define S_B64_LEN       43                      //  32 bytes, base64url, no padding
#define S_SECRET_LEN    (S_PREFIX_LEN + S_B64_LEN)
#define S_HEX_LEN       (crypto_hash_sha256_BYTES * 2)
#define S_RATE_MAX      1000000

//  Cache sizes: a front door sees a few hundred keys at most; the table is
//  rebuilt without expired entries when it is half full, and emptied when
//  that does not help (an attacker presenting random secrets).
#define S_CACHE_SLOTS   4096
#define S_BUCKET_SLOTS  1024

typedef struct {
    bool used;
    int result;                     //  0 known, 1 unknown
    uint8_t digest [crypto_hash_sha256_BYTES];
    apikey_info_t info;
    int64_t expires_ms;
} s_entry_t;

typedef struct {
    bool used;
    char name [APIKEY_NAME_MAX];
    double tokens;
    int64_t last_ms;
} s_bucket_t;

struct _apikey_cache_t {
    pthread_mutex_t lock;
    int ttl_ms;
    s_entry_t *entries;             //  S_CACHE_SLOTS
    size_t entry_count;
    s_bucket_t *buckets;            //  S_BUCKET_SLOTS
    size_t bucket_count;
};

static const struct {
    apikey_role_t role;
    const char *name;
} s_roles [] = {
    { APIKEY_ROLE_REPORTER_APP, "reporter_app" },
    { APIKEY_ROLE_HOTLINE, "hotline" },
    { APIKEY_ROLE_OPERATOR, "operator" },
    { APIKEY_ROLE_ADMIN, "admin" },
    { APIKEY_ROLE_SENSOR, "sensor" },
};

/* ---- private ---- */

static bool
s_name_valid (const char *name)
{
    size_t len = name ? strlen (name) : 0;
    if (len < 1 || len >= APIKEY_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name [i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

//  "cbk_" + 43 base64url characters, nothing else.
static bool
s_secret_wellformed (const char *secret)
{
    if (!secret || strncmp (secret, S_PREFIX, S_PREFIX_LEN) != 0)
        return false;
    size_t len = strnlen (secret, S_SECRET_LEN + 1);
    if (len != S_SECRET_LEN)
        return false;
    for (size_t i = S_PREFIX_LEN; i < len; i++) {
        char c = secret [i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static void
s_digest (const char *secret, uint8_t *digest)
{
    crypto_hash_sha256 (digest, (const unsigned char *) secret, strlen (secret));
}

static void
s_hex (const uint8_t *digest, char *hex)
{
    sodium_bin2hex (hex, S_HEX_LEN + 1, digest, crypto_hash_sha256_BYTES);
}

static int
s_is_one_role (apikey_role_t role)
{
    for (size_t i = 0; i < sizeof s_roles / sizeof s_roles [0]; i++)
        if (s_roles [i].role == role)
            return 1;
    return 0;
}

//  Reads the fields of apikey:HASH from an HMGET name role rate created_ms
//  reply. 0, or 1 when the key is missing or its record is not usable.
static int
s_info_from_reply (const redisReply *reply, apikey_info_t *info)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4)
        return 1;
    for (size_t i = 0; i < 4; i++)
        if (reply->element [i]->type != REDIS_REPLY_STRING)
            return 1;
    memset (info, 0, sizeof *info);
    snprintf (info->name, sizeof info->name, "%s", reply->element [0]->str);
    info->role = apikey_role_from_name (reply->element [1]->str);
    info->rate_per_s = atoi (reply->element [2]->str);
    info->created_ms = strtoll (reply->element [3]->str, NULL, 10);
    if (info->role == APIKEY_ROLE_NONE || !s_name_valid (info->name) || info->rate_per_s < 0)
        return 1;
    return 0;
}

static int
s_verify_digest (cb_redis_t *redis, const uint8_t *digest, apikey_info_t *info)
{
    char hex [S_HEX_LEN + 1];
    s_hex (digest, hex);
    redisReply *reply = cb_redis_command (redis, "HMGET apikey:%s name role rate created_ms", hex);
    if (!reply)
        return -1;
    int rc = reply->type == REDIS_REPLY_ERROR ? -1 : s_info_from_reply (reply, info);
    freeReplyObject (reply);
    return rc;
}

static uint32_t
s_slot_of_digest (const uint8_t *digest)
{
    //  The digest is uniformly random already.
    uint32_t h;
    memcpy (&h, digest, sizeof h);
    return h;
}

static uint32_t
s_slot_of_name (const char *name)
{
    uint32_t hash = 2166136261u;
    for (const unsigned char *p = (const unsigned char *) name; *p; p++) {
        hash ^= *p;
        hash *= 16777619u;
    }
    return hash;
}

//  Caller holds the lock. Rebuilds the table without expired entries; when
//  still half full, empties it.
static void
s_entries_compact (apikey_cache_t *self, int64_t now_ms)
{
    s_entry_t *old = self->entries;
    s_entry_t *fresh = calloc (S_CACHE_SLOTS, sizeof *fresh);
    if (!fresh) {
        memset (old, 0, S_CACHE_SLOTS * sizeof *old);
        self->entry_count = 0;
        return;
    }
    size_t count = 0;
    for (size_t i = 0; i < S_CACHE_SLOTS; i++) {
        if (!old [i].used || old [i].expires_ms <= now_ms)
            continue;
        uint32_t slot = s_slot_of_digest (old [i].digest) & (S_CACHE_SLOTS - 1);
        while (fresh [slot].used)
            slot = (slot + 1) & (S_CACHE_SLOTS - 1);
        fresh [slot] = old [i];
        count++;
    }
    if (count >= S_CACHE_SLOTS / 2) {
        memset (fresh, 0, S_CACHE_SLOTS * sizeof *fresh);
        count = 0;
    }
    free (old);
    self->entries = fresh;
    self->entry_count = count;
}

//  Caller holds the lock. The slot holding `digest`, or the empty slot
//  where it belongs.
static s_entry_t *
s_entry_find (apikey_cache_t *self, const uint8_t *digest)
{
    uint32_t slot = s_slot_of_digest (digest) & (S_CACHE_SLOTS - 1);
    while (self->entries [slot].used
           && memcmp (self->entries [slot].digest, digest, crypto_hash_sha256_BYTES) != 0)
        slot = (slot + 1) & (S_CACHE_SLOTS - 1);
    return &self->entries [slot];
}

//  Caller holds the lock. The bucket of `name`, created full when new;
//  NULL when the table is full (then the key is not limited: failing open
//  for a table of a thousand names is a configuration oddity, not an
//  attack, since only verified keys get here).
static s_bucket_t *
s_bucket_find (apikey_cache_t *self, const char *name, int rate, int64_t now_ms)
{
    uint32_t slot = s_slot_of_name (name) & (S_BUCKET_SLOTS - 1);
    for (size_t probes = 0; probes < S_BUCKET_SLOTS; probes++) {
        s_bucket_t *bucket = &self->buckets [slot];
        if (!bucket->used) {
            if (self->bucket_count >= S_BUCKET_SLOTS * 3 / 4)
                return NULL;
            bucket->used = true;
            snprintf (bucket->name, sizeof bucket->name, "%s", name);
            bucket->tokens = rate;
            bucket->last_ms = now_ms;
            self->bucket_count++;
            return bucket;
        }
        if (strcmp (bucket->name, name) == 0)
            return bucket;
        slot = (slot + 1) & (S_BUCKET_SLOTS - 1);
    }
    return NULL;
}

/* ---- public: roles ---- */

apikey_role_t
apikey_role_from_name (const char *name)
{
    if (!name)
        return APIKEY_ROLE_NONE;
    for (size_t i = 0; i < sizeof s_roles / sizeof s_roles [0]; i++)
        if (strcmp (s_roles [i].name, name) == 0)
            return s_roles [i].role;
    return APIKEY_ROLE_NONE;
}

const char *
apikey_role_name (apikey_role_t role)
{
    for (size_t i = 0; i < sizeof s_roles / sizeof s_roles [0]; i++)
        if (s_roles [i].role == role)
            return s_roles [i].name;
    return "none";
}

bool
apikey_role_sees_personal_data (apikey_role_t role)
{
    //  The command center works with the reporter (calls back, verifies);
    //  the hotline already holds the caller's data. Apps and sensors do not
    //  need other people's names and phones.
    return role == APIKEY_ROLE_OPERATOR || role == APIKEY_ROLE_ADMIN
        || role == APIKEY_ROLE_HOTLINE;
}

void
apikey_hash_secret (const char *secret, char *hex, size_t cap)
{
    assert (cap >= APIKEY_HASH_HEX_SIZE);
    (void) cap;
    uint8_t digest [crypto_hash_sha256_BYTES];
    s_digest (secret ? secret : "", digest);
    s_hex (digest, hex);
}

/* ---- public: keys in Redis ---- */

int
apikey_create (cb_redis_t *redis, const char *name, apikey_role_t role, int rate_per_s,
               char *secret, size_t secret_cap, char *err, size_t errcap)
{
    assert (redis && secret && err);
    if (!s_name_valid (name)) {
        snprintf (err, errcap, "a key name is 1 to %d characters of A-Z a-z 0-9 . _ -",
                  APIKEY_NAME_MAX - 1);
        return -1;
    }
    if (!s_is_one_role (role)) {
        snprintf (err, errcap, "a key has one role: reporter_app, hotline, operator, admin or sensor");
        return -1;
    }
    if (rate_per_s < 0 || rate_per_s > S_RATE_MAX) {
        snprintf (err, errcap, "the rate is 0 (unlimited) to %d requests a second", S_RATE_MAX);
        return -1;
    }
    if (secret_cap < S_SECRET_LEN + 1) {
        snprintf (err, errcap, "secret buffer too small");
        return -1;
    }
    if (sodium_init () < 0) {
        snprintf (err, errcap, "libsodium did not initialise");
        return -1;
    }
    uint8_t raw [S_RANDOM_BYTES];
    randombytes_buf (raw, sizeof raw);
    char text [S_SECRET_LEN + 1];
    memcpy (text, S_PREFIX, S_PREFIX_LEN);
    sodium_bin2base64 (text + S_PREFIX_LEN, sizeof text - S_PREFIX_LEN, raw, sizeof raw,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero (raw, sizeof raw);
    char hex [S_HEX_LEN + 1];
    apikey_hash_secret (text, hex, sizeof hex);

    int rc = -1;
    char rate [16], created [32];
    snprintf (rate, sizeof rate, "%d", rate_per_s);
    snprintf (created, sizeof created, "%lld", (long long) cb_clock_now_ms ());
    redisReply *reply = cb_redis_command (redis, "HSET apikey:%s name %s role %s rate %s created_ms %s",
                                          hex, name, apikey_role_name (role), rate, created);
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        goto redis_failed;
    freeReplyObject (reply);

    for (int attempt = 0; attempt < 2; attempt++) {
        reply = cb_redis_command (redis, "HSETNX apikey:names %s %s", name, hex);
        if (!reply || reply->type != REDIS_REPLY_INTEGER)
            goto redis_failed;
        bool claimed = reply->integer == 1;
        freeReplyObject (reply);
        if (claimed) {
            rc = 0;
            break;
        }
        //  Taken; unless by a record a crashed revoke left behind.
        reply = cb_redis_command (redis, "HGET apikey:names %s", name);
        if (!reply || reply->type == REDIS_REPLY_ERROR)
            goto redis_failed;
        char old [S_HEX_LEN + 1] = "";
        if (reply->type == REDIS_REPLY_STRING)
            snprintf (old, sizeof old, "%s", reply->str);
        freeReplyObject (reply);
        reply = cb_redis_command (redis, "EXISTS apikey:%s", old);
        if (!reply || reply->type != REDIS_REPLY_INTEGER)
            goto redis_failed;
        bool live = reply->integer == 1;
        freeReplyObject (reply);
        if (live) {
            snprintf (err, errcap, "a key named '%s' exists", name);
            break;
        }
        //  Stale: drop the name only if it still points at the dead record.
        reply = cb_redis_command (redis,
            "EVAL %s 1 apikey:names %s %s",
            "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
            "return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0", name, old);
        if (!reply || reply->type == REDIS_REPLY_ERROR)
            goto redis_failed;
        freeReplyObject (reply);
        if (attempt == 1)
            snprintf (err, errcap, "a key named '%s' exists", name);
    }
    if (rc == 0) {
        snprintf (secret, secret_cap, "%s", text);
        sodium_memzero (text, sizeof text);
        return 0;
    }
    reply = cb_redis_command (redis, "DEL apikey:%s", hex);
    if (reply)
        freeReplyObject (reply);
    sodium_memzero (text, sizeof text);
    return -1;

redis_failed:
    snprintf (err, errcap, "%s", reply && reply->type == REDIS_REPLY_ERROR
              ? reply->str : cb_redis_error (redis));
    if (reply)
        freeReplyObject (reply);
    //  Best effort: the record nobody can use, in case HSET got through.
    reply = cb_redis_command (redis, "DEL apikey:%s", hex);
    if (reply)
        freeReplyObject (reply);
    sodium_memzero (text, sizeof text);
    return -1;
}

static int
s_compare_info (const void *a, const void *b)
{
    return strcmp (((const apikey_info_t *) a)->name, ((const apikey_info_t *) b)->name);
}

int
apikey_list (cb_redis_t *redis, apikey_info_t **list, size_t *count)
{
    assert (redis && list && count);
    *list = NULL;
    *count = 0;
    redisReply *names = cb_redis_command (redis, "HGETALL apikey:names");
    if (!names || names->type != REDIS_REPLY_ARRAY) {
        if (names)
            freeReplyObject (names);
        return -1;
    }
    size_t pairs = names->elements / 2;
    apikey_info_t *out = calloc (pairs ? pairs : 1, sizeof *out);
    if (!out) {
        freeReplyObject (names);
        return -1;
    }
    //  One pipelined round trip for all records.
    int rc = 0;
    for (size_t i = 0; i < pairs && rc == 0; i++) {
        const redisReply *hash = names->element [2 * i + 1];
        rc = cb_redis_append (redis, "HMGET apikey:%b name role rate created_ms",
                              hash->str, hash->len);
    }
    size_t n = 0;
    for (size_t i = 0; i < pairs && rc == 0; i++) {
        redisReply *reply = cb_redis_get_reply (redis);
        if (!reply) {
            rc = -1;
            break;
        }
        if (s_info_from_reply (reply, &out [n]) == 0
        &&  strcmp (out [n].name, names->element [2 * i]->str) == 0)
            n++;
        freeReplyObject (reply);
    }
    freeReplyObject (names);
    if (rc) {
        free (out);
        return -1;
    }
    qsort (out, n, sizeof *out, s_compare_info);
    *list = out;
    *count = n;
    return 0;
}

int
apikey_revoke (cb_redis_t *redis, const char *name)
{
    assert (redis);
    if (!s_name_valid (name))
        return 1;
    redisReply *reply = cb_redis_command (redis, "HGET apikey:names %s", name);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            freeReplyObject (reply);
        return -1;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        freeReplyObject (reply);
        return 1;
    }
    char hex [S_HEX_LEN + 1];
    snprintf (hex, sizeof hex, "%s", reply->str);
    freeReplyObject (reply);
    //  The record first: from here on the secret no longer verifies.
    reply = cb_redis_command (redis, "DEL apikey:%s", hex);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            freeReplyObject (reply);
        return -1;
    }
    freeReplyObject (reply);
    reply = cb_redis_command (redis,
        "EVAL %s 1 apikey:names %s %s",
        "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
        "return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0", name, hex);
    int rc = reply && reply->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (reply)
        freeReplyObject (reply);
    return rc;
}

int
apikey_verify (cb_redis_t *redis, const char *secret, apikey_info_t *info)
{
    assert (redis && info);
    if (!s_secret_wellformed (secret))
        return 1;
    uint8_t digest [crypto_hash_sha256_BYTES];
    s_digest (secret, digest);
    return s_verify_digest (redis, digest, info);
}

/* ---- public: cache ---- */

apikey_cache_t *
apikey_cache_new (int ttl_ms)
{
    apikey_cache_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->ttl_ms = ttl_ms > 0 ? ttl_ms : 0;
    self->entries = calloc (S_CACHE_SLOTS, sizeof *self->entries);
    self->buckets = calloc (S_BUCKET_SLOTS, sizeof *self->buckets);
    if (!self->entries || !self->buckets) {
        free (self->entries);
        free (self->buckets);
        free (self);
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

void
apikey_cache_destroy (apikey_cache_t **self_p)
{
    assert (self_p);
    apikey_cache_t *self = *self_p;
    if (self) {
        pthread_mutex_destroy (&self->lock);
        free (self->entries);
        free (self->buckets);
        free (self);
        *self_p = NULL;
    }
}

int
apikey_cache_verify (apikey_cache_t *self, cb_redis_t *redis, const char *secret,
                     apikey_info_t *info)
{
    assert (self && redis && info);
    if (!s_secret_wellformed (secret))
        return 1;
    uint8_t digest [crypto_hash_sha256_BYTES];
    s_digest (secret, digest);
    int64_t now_ms = cb_clock_now_ms ();

    pthread_mutex_lock (&self->lock);
    s_entry_t *entry = s_entry_find (self, digest);
    if (entry->used && entry->expires_ms > now_ms) {
        int result = entry->result;
        if (result == 0)
            *info = entry->info;
        pthread_mutex_unlock (&self->lock);
        return result;
    }
    pthread_mutex_unlock (&self->lock);

    //  Ask Redis outside the lock: other requests go on meanwhile.
    apikey_info_t fresh;
    int rc = s_verify_digest (redis, digest, &fresh);
    if (rc < 0)
        return -1;
    if (rc == 0)
        *info = fresh;
    if (self->ttl_ms == 0)
        return rc;

    pthread_mutex_lock (&self->lock);
    entry = s_entry_find (self, digest);
    if (!entry->used) {
        if (self->entry_count + 1 > S_CACHE_SLOTS / 2) {
            s_entries_compact (self, now_ms);
            entry = s_entry_find (self, digest);
        }
        entry->used = true;
        memcpy (entry->digest, digest, sizeof entry->digest);
        self->entry_count++;
    }
    entry->result = rc;
    if (rc == 0)
        entry->info = fresh;
    else
        memset (&entry->info, 0, sizeof entry->info);
    entry->expires_ms = now_ms + self->ttl_ms;
    pthread_mutex_unlock (&self->lock);
    return rc;
}

bool
apikey_cache_allow (apikey_cache_t *self, const apikey_info_t *info, int64_t now_ms)
{
    assert (self && info);
    if (info->rate_per_s <= 0)
        return true;
    double rate = info->rate_per_s;
    pthread_mutex_lock (&self->lock);
    s_bucket_t *bucket = s_bucket_find (self, info->name, info->rate_per_s, now_ms);
    bool allowed = true;
    if (bucket) {
        int64_t elapsed = now_ms - bucket->last_ms;
        if (elapsed > 0) {
            bucket->tokens += rate * (double) elapsed / 1000.0;
            bucket->last_ms = now_ms;
        }
        //  The burst is one second's worth (also after a rate change).
        if (bucket->tokens > rate)
            bucket->tokens = rate;
        if (bucket->tokens >= 1.0)
            bucket->tokens -= 1.0;
        else
            allowed = false;
    }
    pthread_mutex_unlock (&self->lock);
    return allowed;
}
