/*  apikey.h — API keys of the front doors: created, listed and revoked with
    the CLI, checked by the intake and the console on every request.

    A key's secret ("cbk_" + 43 base64url characters, 32 random bytes from
    libsodium) is shown once, at creation; Redis stores only its SHA-256:
        apikey:HASH     hash  name, role, rate (requests/s, 0 = unlimited),
                              created_ms
        apikey:names    hash  name -> HASH
    Verification hashes the presented secret and looks the hash up; the
    comparison is by exact hash lookup, so no secret is ever compared in
    user-controlled time. A cache (apikey_cache_t) keeps verified keys for a
    few seconds so a busy front door does not pay a round trip per request;
    a revoked key stops working within that many seconds. */

#ifndef CIVICBUS_APIKEY_H
#define CIVICBUS_APIKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "civicbus/redis.h"

//  Roles (a bit each, so a route can allow several).
typedef enum {
    APIKEY_ROLE_NONE = 0,
    APIKEY_ROLE_REPORTER_APP = 1 << 0,   //  citizen apps, web forms, Open311 clients
    APIKEY_ROLE_HOTLINE = 1 << 1,        //  the 12345 hotline integration
    APIKEY_ROLE_OPERATOR = 1 << 2,       //  command-center operators
    APIKEY_ROLE_ADMIN = 1 << 3,          //  everything
    APIKEY_ROLE_SENSOR = 1 << 4,         //  camera and sensor gateways
} apikey_role_t;

#define APIKEY_SECRET_MAX 64
#define APIKEY_NAME_MAX 64

typedef struct {
    char name [APIKEY_NAME_MAX];
    apikey_role_t role;
    int rate_per_s;          //  0: unlimited
    int64_t created_ms;
} apikey_info_t;

//  "operator" -> APIKEY_ROLE_OPERATOR; APIKEY_ROLE_NONE for unknown names.
apikey_role_t apikey_role_from_name (const char *name);
const char *apikey_role_name (apikey_role_t role);
//  True when the role may see reporters' personal data unmasked
//  (operator, admin and hotline; not reporter_app or sensor).
bool apikey_role_sees_personal_data (apikey_role_t role);

//  Creates a key; writes its secret into `secret` (at least
//  APIKEY_SECRET_MAX bytes). Names are 1..63 of [A-Za-z0-9._-] and unique.
//  Returns 0, or -1 with err ("a key named 'x' exists", bad role, Redis).
int apikey_create (cb_redis_t *redis, const char *name, apikey_role_t role, int rate_per_s,
                   char *secret, size_t secret_cap, char *err, size_t errcap);
//  Lists keys (never secrets); caller frees *list. 0 or -1.
int apikey_list (cb_redis_t *redis, apikey_info_t **list, size_t *count);
//  The hash Redis keeps for a secret: SHA-256 of the whole secret text
//  ("cbk_" included) as 64 lowercase hex digits, written into `hex` (at
//  least APIKEY_HASH_HEX_SIZE bytes). For tools and tests that seed keys.
#define APIKEY_HASH_HEX_SIZE 65
void apikey_hash_secret (const char *secret, char *hex, size_t cap);

//  Revokes by name. 0, 1 when no such key, -1 when Redis failed.
int apikey_revoke (cb_redis_t *redis, const char *name);
//  Looks a presented secret up. 0 with *info filled, 1 when unknown or
//  malformed, -1 when Redis failed (answer 503, not 401).
int apikey_verify (cb_redis_t *redis, const char *secret, apikey_info_t *info);

//  A thread-safe cache of verified keys with a per-key token bucket.
typedef struct _apikey_cache_t apikey_cache_t;
apikey_cache_t *apikey_cache_new (int ttl_ms);
void apikey_cache_destroy (apikey_cache_t **self_p);
//  Like apikey_verify, answering from the cache while an entry is fresh.
int apikey_cache_verify (apikey_cache_t *self, cb_redis_t *redis, const char *secret,
                         apikey_info_t *info);
//  Takes one token from the key's bucket (rate_per_s tokens a second, burst
//  of the same size); false when the key is over its rate. Limits apply per
//  process: with N intake processes a key may reach N times its rate.
bool apikey_cache_allow (apikey_cache_t *self, const apikey_info_t *info, int64_t now_ms);

#endif
