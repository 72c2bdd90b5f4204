/*  send.c — the notifier's channels over libcurl: webhooks (JSON POST,
    HMAC-SHA256 over "timestamp.body"), the 12345 hotline (JSON POST signed
    the exchange's way, hmac_sign.h), the SMS gateway (JSON POST with a
    Bearer token) and e-mail (SMTP, UTF-8 text, RFC 2047 subject).

    Every request carries the delivery id as its idempotency key
    (X-Civicbus-Delivery, Idempotency-Key; Message-ID for mail), because
    delivery is at least once: a notifier killed after sending but before
    acknowledging sends it again. One easy handle per worker keeps
    connections alive between requests to the same receiver. */

#include "notifier.h"
#include "civicbus/hmac_sign.h"
#include "civicbus/log.h"

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_ANSWER_MAX 512        //  the start of a receiver's answer, for the error text

struct _sender_t {
    CURL *curl;
    const notify_rules_t *rules;
    int timeout_ms;
    atomic_int *abandon;
    char answer [S_ANSWER_MAX];
    size_t answer_len;
    char curl_error [CURL_ERROR_SIZE];
};

typedef struct {
    const char *data;
    size_t len, at;
} s_reader_t;

/* ---- private ---- */

static size_t
s_on_answer (char *data, size_t size, size_t n, void *arg)
{
    sender_t *self = arg;
    size_t len = size * n;
    size_t room = sizeof self->answer - 1 - self->answer_len;
    size_t take = len < room ? len : room;
    memcpy (self->answer + self->answer_len, data, take);
    self->answer_len += take;
    self->answer [self->answer_len] = 0;
    return len;
}

static int
s_on_progress (void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
               curl_off_t ulnow)
{
    (void) dltotal; (void) dlnow; (void) ultotal; (void) ulnow;
    sender_t *self = arg;
    return atomic_load (self->abandon) ? 1 : 0;     //  non-zero aborts the transfer
}

static size_t
s_on_read (char *buf, size_t size, size_t n, void *arg)
{
    s_reader_t *reader = arg;
    size_t room = size * n, left = reader->len - reader->at;
    size_t take = left < room ? left : room;
    memcpy (buf, reader->data + reader->at, take);
    reader->at += take;
    return take;
}

static void
s_reset (sender_t *self)
{
    curl_easy_reset (self->curl);
    self->answer [0] = 0;
    self->answer_len = 0;
    self->curl_error [0] = 0;
    curl_easy_setopt (self->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (self->curl, CURLOPT_TIMEOUT_MS, (long) self->timeout_ms);
    curl_easy_setopt (self->curl, CURLOPT_CONNECTTIMEOUT_MS,
                      (long) (self->timeout_ms < 3000 ? self->timeout_ms : 3000));
    curl_easy_setopt (self->curl, CURLOPT_ERRORBUFFER, self->curl_error);
    curl_easy_setopt (self->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt (self->curl, CURLOPT_XFERINFOFUNCTION, s_on_progress);
    curl_easy_setopt (self->curl, CURLOPT_XFERINFODATA, self);
    curl_easy_setopt (self->curl, CURLOPT_WRITEFUNCTION, s_on_answer);
    curl_easy_setopt (self->curl, CURLOPT_WRITEDATA, self);
    curl_easy_setopt (self->curl, CURLOPT_PROTOCOLS_STR, "http,https,smtp,smtps");
}

//  The outcome of a finished transfer.
static int
s_outcome (sender_t *self, CURLcode code, bool smtp, char *err, size_t errcap)
{
    if (code != CURLE_OK) {
        snprintf (err, errcap, "%s", self->curl_error [0] ? self->curl_error
                                                           : curl_easy_strerror (code));
        return SEND_RETRY;
    }
    if (smtp)
        return SEND_OK;
    long status = 0;
    curl_easy_getinfo (self->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300)
        return SEND_OK;
    snprintf (err, errcap, "HTTP %ld: %.200s", status, self->answer);
    if (status >= 400 && status < 500 && status != 408 && status != 425 && status != 429)
        return SEND_PERMANENT;
    return SEND_RETRY;
}

//  POSTs `body` as JSON with the extra headers; the delivery id always goes
//  along as idempotency key.
static int
s_post_json (sender_t *self, const char *url, const notify_record_t *rec,
             struct curl_slist *headers, char *err, size_t errcap)
{
    char line [160];
    struct curl_slist *h = headers;
    h = curl_slist_append (h, "Content-Type: application/json; charset=utf-8");
    snprintf (line, sizeof line, "%s: %s", HMAC_WEBHOOK_HEADER_DELIVERY, rec->did);
    h = curl_slist_append (h, line);
    snprintf (line, sizeof line, "Idempotency-Key: %s", rec->did);
    h = curl_slist_append (h, line);
    h = curl_slist_append (h, "Expect:");       //  no 100-continue round trip
    if (!h) {
        snprintf (err, errcap, "out of memory");
        return SEND_RETRY;
    }
    s_reset (self);
    curl_easy_setopt (self->curl, CURLOPT_URL, url);
    curl_easy_setopt (self->curl, CURLOPT_POST, 1L);
    curl_easy_setopt (self->curl, CURLOPT_POSTFIELDS, rec->body);
    curl_easy_setopt (self->curl, CURLOPT_POSTFIELDSIZE, (long) strlen (rec->body));
    curl_easy_setopt (self->curl, CURLOPT_HTTPHEADER, h);
    CURLcode code = curl_easy_perform (self->curl);
    int rc = s_outcome (self, code, false, err, errcap);
    curl_slist_free_all (h);
    return rc;
}

static int
s_send_webhook (sender_t *self, const notify_record_t *rec, char *err, size_t errcap)
{
    const notify_webhook_t *hook = notify_rules_webhook (self->rules, rec->recipient);
    if (!hook) {
        snprintf (err, errcap, "no webhook subscription '%s' in the configuration", rec->recipient);
        return SEND_PERMANENT;
    }
    char timestamp [24], signature [HMAC_SIGN_HEX_SIZE], line [160];
    snprintf (timestamp, sizeof timestamp, "%lld", (long long) time (NULL));
    if (hmac_sign_webhook (hook->secret, strlen (hook->secret), timestamp, rec->body,
                           strlen (rec->body), signature)) {
        snprintf (err, errcap, "cannot sign (libsodium)");
        return SEND_RETRY;
    }
    struct curl_slist *h = NULL;
    snprintf (line, sizeof line, "%s: %s", HMAC_WEBHOOK_HEADER_TIMESTAMP, timestamp);
    h = curl_slist_append (h, line);
    snprintf (line, sizeof line, "%s: %s", HMAC_WEBHOOK_HEADER_SIGNATURE, signature);
    h = curl_slist_append (h, line);
    return s_post_json (self, hook->url, rec, h, err, errcap);
}

//  The path and query of a URL as the request line carries it.
static const char *
s_url_path (const char *url)
{
    const char *rest = strstr (url, "://");
    rest = rest ? rest + 3 : url;
    const char *path = strchr (rest, '/');
    return path ? path : "/";
}

static int
s_send_hotline (sender_t *self, const notify_record_t *rec, char *err, size_t errcap)
{
    const notify_endpoints_t *e = notify_rules_endpoints (self->rules);
    if (!e->hotline_url) {
        snprintf (err, errcap, "no hotline callback configured");
        return SEND_PERMANENT;
    }
    char timestamp [24], nonce [33], signature [HMAC_SIGN_HEX_SIZE], line [160];
    unsigned char random [16];
    randombytes_buf (random, sizeof random);
    sodium_bin2hex (nonce, sizeof nonce, random, sizeof random);
    snprintf (timestamp, sizeof timestamp, "%lld", (long long) time (NULL));
    if (hmac_sign_hotline (e->hotline_secret, strlen (e->hotline_secret), "POST",
                           s_url_path (e->hotline_url), timestamp, nonce, rec->body,
                           strlen (rec->body), signature)) {
        snprintf (err, errcap, "cannot sign (libsodium)");
        return SEND_RETRY;
    }
    struct curl_slist *h = NULL;
    snprintf (line, sizeof line, "%s: %s", HMAC_HOTLINE_HEADER_TIMESTAMP, timestamp);
    h = curl_slist_append (h, line);
    snprintf (line, sizeof line, "%s: %s", HMAC_HOTLINE_HEADER_NONCE, nonce);
    h = curl_slist_append (h, line);
    snprintf (line, sizeof line, "%s: %s", HMAC_HOTLINE_HEADER_SIGNATURE, signature);
    h = curl_slist_append (h, line);
    return s_post_json (self, e->hotline_url, rec, h, err, errcap);
}

static int
s_send_sms (sender_t *self, const notify_record_t *rec, char *err, size_t errcap)
{
    const notify_endpoints_t *e = notify_rules_endpoints (self->rules);
    if (!e->sms_url) {
        snprintf (err, errcap, "no SMS gateway configured");
        return SEND_PERMANENT;
    }
    //  The stored body is the text; the gateway wants {phone, text, template, delivery_id}.
    json_t *root = json_pack ("{s:s, s:s, s:s, s:s}", "phone", rec->recipient,
                              "text", rec->body, "template", rec->template_name,
                              "delivery_id", rec->did);
    char *body = root ? json_dumps (root, JSON_COMPACT) : NULL;
    json_decref (root);
    if (!body) {
        snprintf (err, errcap, "out of memory");
        return SEND_RETRY;
    }
    notify_record_t copy = *rec;
    copy.body = body;
    char line [600];
    snprintf (line, sizeof line, "Authorization: Bearer %s", e->sms_token ? e->sms_token : "");
    struct curl_slist *h = curl_slist_append (NULL, line);
    sodium_memzero (line, sizeof line);
    int rc = s_post_json (self, e->sms_url, &copy, h, err, errcap);
    free (body);
    return rc;
}

//  Appends base64 of `len` bytes at `data` to `out` (lines of 76 for a
//  body when `wrap`). Returns the new length or 0 when out of room.
static size_t
s_base64 (char *out, size_t at, size_t cap, const void *data, size_t len, bool wrap)
{
    const unsigned char *p = data;
    size_t chunk = wrap ? 57 : len;         //  57 bytes -> 76 characters
    if (chunk == 0)
        return at;
    for (size_t i = 0; i < len; i += chunk) {
        size_t n = len - i < chunk ? len - i : chunk;
        size_t need = sodium_base64_ENCODED_LEN (n, sodium_base64_VARIANT_ORIGINAL);
        if (at + need + 2 >= cap)
            return 0;
        sodium_bin2base64 (out + at, cap - at, p + i, n, sodium_base64_VARIANT_ORIGINAL);
        at += strlen (out + at);
        if (wrap) {
            memcpy (out + at, "\r\n", 3);
            at += 2;
        }
    }
    return at;
}

//  "Subject: =?UTF-8?B?...?=" folded into encoded words of whole characters.
static size_t
s_subject (char *out, size_t at, size_t cap, const char *subject)
{
    int n = snprintf (out + at, cap - at, "Subject:");
    at += (size_t) n;
    size_t len = strlen (subject), i = 0;
    while (i < len) {
        size_t take = len - i < 42 ? len - i : 42;
        while (i + take < len && take > 0 && ((unsigned char) subject [i + take] & 0xC0) == 0x80)
            take--;
        if (take == 0)
            take = 1;
        if (at + 16 >= cap)
            return 0;
        at += (size_t) snprintf (out + at, cap - at, " =?UTF-8?B?");
        at = s_base64 (out, at, cap, subject + i, take, false);
        if (!at || at + 6 >= cap)
            return 0;
        at += (size_t) snprintf (out + at, cap - at, "?=%s", i + take < len ? "\r\n" : "");
        i += take;
    }
    if (at + 3 >= cap)
        return 0;
    memcpy (out + at, "\r\n", 3);
    return at + 2;
}

static int
s_send_email (sender_t *self, const notify_record_t *rec, char *err, size_t errcap)
{
    const notify_endpoints_t *e = notify_rules_endpoints (self->rules);
    if (!e->smtp_url) {
        snprintf (err, errcap, "no SMTP server configured");
        return SEND_PERMANENT;
    }
    size_t cap = 2048 + strlen (rec->subject) * 2 + strlen (rec->body) * 2;
    char *message = malloc (cap);
    if (!message) {
        snprintf (err, errcap, "out of memory");
        return SEND_RETRY;
    }
    char date [64];
    time_t now = time (NULL);
    struct tm tm;
    gmtime_r (&now, &tm);
    strftime (date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    size_t at = (size_t) snprintf (message, cap,
        "Date: %s\r\nFrom: <%s>\r\nTo: <%s>\r\nMessage-ID: <%s@civicbus>\r\n"
        "%s: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: base64\r\n",
        date, e->smtp_from, rec->recipient, rec->did, HMAC_WEBHOOK_HEADER_DELIVERY, rec->did);
    at = s_subject (message, at, cap, rec->subject);
    if (at && at + 3 < cap) {
        memcpy (message + at, "\r\n", 3);
        at = s_base64 (message, at + 2, cap, rec->body, strlen (rec->body), true);
    }
    if (!at) {
        free (message);
        snprintf (err, errcap, "message too large");
        return SEND_PERMANENT;
    }
    s_reader_t reader = { message, at, 0 };
    char from [300];
    snprintf (from, sizeof from, "<%s>", e->smtp_from);
    char to [300];
    snprintf (to, sizeof to, "<%s>", rec->recipient);
    struct curl_slist *rcpt = curl_slist_append (NULL, to);
    s_reset (self);
    curl_easy_setopt (self->curl, CURLOPT_URL, e->smtp_url);
    curl_easy_setopt (self->curl, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt (self->curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt (self->curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt (self->curl, CURLOPT_READFUNCTION, s_on_read);
    curl_easy_setopt (self->curl, CURLOPT_READDATA, &reader);
    curl_easy_setopt (self->curl, CURLOPT_INFILESIZE, (long) at);
    if (e->smtp_username) {
        curl_easy_setopt (self->curl, CURLOPT_USERNAME, e->smtp_username);
        curl_easy_setopt (self->curl, CURLOPT_PASSWORD, e->smtp_password ? e->smtp_password : "");
    }
    CURLcode code = curl_easy_perform (self->curl);
    int rc = s_outcome (self, code, true, err, errcap);
    if (code == CURLE_LOGIN_DENIED || code == CURLE_REMOTE_ACCESS_DENIED)
        rc = SEND_PERMANENT;
    curl_slist_free_all (rcpt);
    free (message);
    return rc;
}

/* ---- public ---- */

sender_t *
sender_new (const notify_rules_t *rules, int timeout_ms, atomic_int *abandon)
{
    sender_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->curl = curl_easy_init ();
    if (!self->curl) {
        free (self);
        return NULL;
    }
    self->rules = rules;
    self->timeout_ms = timeout_ms;
    self->abandon = abandon;
    return self;
}

void
sender_destroy (sender_t **self_p)
{
    sender_t *self = *self_p;
    if (self) {
        curl_easy_cleanup (self->curl);
        free (self);
        *self_p = NULL;
    }
}

int
sender_send (sender_t *self, const notify_record_t *rec, char *err, size_t errcap)
{
    err [0] = 0;
    switch (rec->channel) {
        case NOTIFY_WEBHOOK: return s_send_webhook (self, rec, err, errcap);
        case NOTIFY_HOTLINE: return s_send_hotline (self, rec, err, errcap);
        case NOTIFY_SMS:     return s_send_sms (self, rec, err, errcap);
        case NOTIFY_EMAIL:   return s_send_email (self, rec, err, errcap);
        default:
            snprintf (err, errcap, "unknown channel");
            return SEND_PERMANENT;
    }
}
