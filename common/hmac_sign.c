/*  hmac_sign.c — HMAC-SHA256 signatures of the hotline exchange and of
    webhooks (see hmac_sign.h for the exact strings that are signed). One
    definition, so the notifier's signing and the intake's verifying cannot
    drift apart. */

#include "civicbus/hmac_sign.h"

#include <sodium.h>
#include <string.h>

/* ---- private ---- */

//  Decodes 64 hex digits (either case) into 32 bytes; -1 for anything else.
static int
s_hex_decode (const char *hex, unsigned char out [crypto_auth_hmacsha256_BYTES])
{
    if (!hex || strlen (hex) != 2 * crypto_auth_hmacsha256_BYTES)
        return -1;
    size_t written = 0;
    if (sodium_hex2bin (out, crypto_auth_hmacsha256_BYTES, hex, strlen (hex), NULL,
                        &written, NULL) != 0
    ||  written != crypto_auth_hmacsha256_BYTES)
        return -1;
    return 0;
}

static int
s_mac (const void *secret, size_t secret_len, const void *const *parts, const size_t *lens,
       size_t count, unsigned char mac [crypto_auth_hmacsha256_BYTES])
{
    if (sodium_init () < 0)
        return -1;
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init (&state, secret, secret_len);
    for (size_t i = 0; i < count; i++)
        if (lens [i])
            crypto_auth_hmacsha256_update (&state, parts [i], lens [i]);
    crypto_auth_hmacsha256_final (&state, mac);
    sodium_memzero (&state, sizeof state);
    return 0;
}

static bool
s_verify (const void *secret, size_t secret_len, const void *const *parts, const size_t *lens,
          size_t count, const char *signature)
{
    unsigned char given [crypto_auth_hmacsha256_BYTES], expected [crypto_auth_hmacsha256_BYTES];
    if (s_hex_decode (signature, given))
        return false;
    if (s_mac (secret, secret_len, parts, lens, count, expected))
        return false;
    return sodium_memcmp (given, expected, sizeof given) == 0;
}

/* ---- public ---- */

int
hmac_sign_parts (const void *secret, size_t secret_len, const void *const *parts,
                 const size_t *lens, size_t count, char hex [HMAC_SIGN_HEX_SIZE])
{
    unsigned char mac [crypto_auth_hmacsha256_BYTES];
    if (s_mac (secret, secret_len, parts, lens, count, mac))
        return -1;
    sodium_bin2hex (hex, HMAC_SIGN_HEX_SIZE, mac, sizeof mac);
    return 0;
}

//  The hotline string: method \n path \n timestamp \n nonce \n body.
#define S_HOTLINE_PARTS(method, path, timestamp, nonce, body, body_len) \
    const void *parts [] = { method, "\n", path, "\n", timestamp, "\n", nonce, "\n", body }; \
    const size_t lens [] = { strlen (method), 1, strlen (path), 1, strlen (timestamp), 1, \
                             strlen (nonce), 1, body_len }

int
hmac_sign_hotline (const void *secret, size_t secret_len, const char *method,
                   const char *path, const char *timestamp, const char *nonce,
                   const void *body, size_t body_len, char hex [HMAC_SIGN_HEX_SIZE])
{
    S_HOTLINE_PARTS (method, path, timestamp, nonce, body, body_len);
    return hmac_sign_parts (secret, secret_len, parts, lens, 9, hex);
}

bool
hmac_verify_hotline (const void *secret, size_t secret_len, const char *method,
                     const char *path, const char *timestamp, const char *nonce,
                     const void *body, size_t body_len, const char *signature)
{
    if (!method || !path || !timestamp || !nonce)
        return false;
    S_HOTLINE_PARTS (method, path, timestamp, nonce, body, body_len);
    return s_verify (secret, secret_len, parts, lens, 9, signature);
}

int
hmac_sign_webhook (const void *secret, size_t secret_len, const char *timestamp,
                   const void *body, size_t body_len, char hex [HMAC_SIGN_HEX_SIZE])
{
    const void *parts [] = { timestamp, ".", body };
    const size_t lens [] = { strlen (timestamp), 1, body_len };
    return hmac_sign_parts (secret, secret_len, parts, lens, 3, hex);
}

bool
hmac_verify_webhook (const void *secret, size_t secret_len, const char *timestamp,
                     const void *body, size_t body_len, const char *signature)
{
    if (!timestamp)
        return false;
    const void *parts [] = { timestamp, ".", body };
    const size_t lens [] = { strlen (timestamp), 1, body_len };
    return s_verify (secret, secret_len, parts, lens, 3, signature);
}
