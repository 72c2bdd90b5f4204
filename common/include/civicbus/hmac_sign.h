/*  hmac_sign.h — HMAC-SHA256 request signatures, defined once: the 12345
    hotline exchange (the notifier signs its push-backs, the intake verifies
    the hotline's inbound requests) and the notifier's webhooks.

    The hotline signature (issue 6, docs/HOTLINE.md):

        HMAC-SHA256 (secret, METHOD "\n" PATH "\n" TIMESTAMP "\n" NONCE "\n" BODY)

    in lower-case hex, sent with the headers X-Hotline-Timestamp (Unix
    seconds), X-Hotline-Nonce and X-Hotline-Signature. PATH is the request
    path with its query string, exactly as sent on the request line.

    The webhook signature:

        HMAC-SHA256 (secret, TIMESTAMP "." BODY)

    in lower-case hex, sent as X-Civicbus-Signature with X-Civicbus-Timestamp
    and X-Civicbus-Delivery (the delivery id, the receiver's idempotency key).

    Secrets are bytes of any length (libsodium's HMAC takes any key length).
    Verification compares in constant time (sodium_memcmp). Checking the
    timestamp's age and the nonce's freshness is the caller's part: it alone
    keeps the clock and the nonce store. */

#ifndef CIVICBUS_HMAC_SIGN_H
#define CIVICBUS_HMAC_SIGN_H

#include <stdbool.h>
#include <stddef.h>

//  Hex signature size including the NUL terminator.
#define HMAC_SIGN_HEX_SIZE 65

#define HMAC_HOTLINE_HEADER_TIMESTAMP  "X-Hotline-Timestamp"
#define HMAC_HOTLINE_HEADER_NONCE      "X-Hotline-Nonce"
#define HMAC_HOTLINE_HEADER_SIGNATURE  "X-Hotline-Signature"
#define HMAC_WEBHOOK_HEADER_TIMESTAMP  "X-Civicbus-Timestamp"
#define HMAC_WEBHOOK_HEADER_SIGNATURE  "X-Civicbus-Signature"
#define HMAC_WEBHOOK_HEADER_DELIVERY   "X-Civicbus-Delivery"

//  HMAC-SHA256 over the concatenation of `count` parts (parts [i] of
//  lens [i] bytes; a part may be NULL when its length is 0), written as 64
//  lower-case hex digits and a NUL into `hex`. Returns 0, or -1 when
//  libsodium cannot initialise.
int hmac_sign_parts (const void *secret, size_t secret_len, const void *const *parts,
                     const size_t *lens, size_t count, char hex [HMAC_SIGN_HEX_SIZE]);

//  The hotline exchange's signature of one request (see above). `body` may
//  be NULL when body_len is 0. 0 or -1.
int hmac_sign_hotline (const void *secret, size_t secret_len, const char *method,
                       const char *path, const char *timestamp, const char *nonce,
                       const void *body, size_t body_len, char hex [HMAC_SIGN_HEX_SIZE]);

//  True when `signature` (hex, either case) is the hotline signature of the
//  request. False for a NULL, short, long or non-hex signature. Constant
//  time in the signature's content.
bool hmac_verify_hotline (const void *secret, size_t secret_len, const char *method,
                          const char *path, const char *timestamp, const char *nonce,
                          const void *body, size_t body_len, const char *signature);

//  The webhook signature of `body` sent at `timestamp` (see above). 0 or -1.
int hmac_sign_webhook (const void *secret, size_t secret_len, const char *timestamp,
                       const void *body, size_t body_len, char hex [HMAC_SIGN_HEX_SIZE]);

//  True when `signature` (hex, either case) is the webhook signature.
bool hmac_verify_webhook (const void *secret, size_t secret_len, const char *timestamp,
                          const void *body, size_t body_len, const char *signature);

#endif
