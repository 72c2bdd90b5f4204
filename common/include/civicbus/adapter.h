/*  adapter.h — the department adapter library: everything an adapter does
    except its department's format (docs/ADAPTERS.md, docs/PROTOCOL.md).

    A department's adapter (services/adapter-<dept>/main.c) writes only a
    mapping: a cb_adapter_mapping_t with its department code, defaults and
    four callbacks (load its tables from a JSON file, order -> HTTP request,
    HTTP answer -> reply fields, free its tables), and calls
    cb_adapter_main(). The library does the rest:

    - one ZeroMQ thread (a zactor) owns a DEALER connected to every
      dispatcher endpoint with CURVE (client certificate
      CIVICBUS_ADAPTER_CERT, the dispatcher's public certificate
      CIVICBUS_DISPATCHER_CERT_PUBLIC); it says HELLO, sends heartbeats,
      and when the dispatcher is silent for three heartbeats (or answers
      hello_first) it makes a new DEALER with backoff (100 ms doubling to
      5 s) and says HELLO again;
    - orders are deduplicated by dispatch_id in a journal on local disk
      (CIVICBUS_ADAPTER_STATE_DIR), written and fsync'd after the
      department's system accepted an order and before the ACK; it is
      compacted to its newest entries when it grows;
    - delivery workers (CIVICBUS_ADAPTER_CAPACITY threads, libcurl) POST the
      mapped request to CIVICBUS_DEPT_URL with the dispatch_id as
      Idempotency-Key and a bounded timeout; 2xx and 409 mean accepted, other
      4xx refused, anything else unavailable (the dispatcher resends);
    - an HTTP listener (libmicrohttpd, CIVICBUS_ADAPTER_LISTEN) takes the
      department's answers on the mapping's answer path, authenticated with
      `Authorization: Bearer CIVICBUS_DEPT_TOKEN`, turns each into a
      DepartmentReply, hands it to the ZeroMQ thread and waits (bounded) for
      the dispatcher's ACK or NACK before it answers: 200, 409/422 with the
      NACK's code and reason, or 503 with Retry-After when no dispatcher
      answered. /healthz and /readyz (registered with a dispatcher) too.

    Threads: the ZeroMQ thread is the only one that touches the DEALER and
    the journal. Workers and HTTP threads talk to it over inproc sockets
    (a pointer to a reference-counted slot each); an HTTP thread waits on
    its slot's condition variable with a deadline. The mapping's callbacks
    are called from several threads at once and must only read their
    state. */

#ifndef CIVICBUS_ADAPTER_H
#define CIVICBUS_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "civicbus/error.h"
#include "civicbus/v1/civicbus.pb-c.h"

#define CB_ADAPTER_ATTACHMENTS_MAX 16     //  attachment URLs per answer
#define CB_ADAPTER_REPLY_ID_MAX    160    //  bytes, with NUL
#define CB_ADAPTER_DISPATCH_ID_MAX 160    //  bytes, with NUL

//  What a mapping builds for one order: the JSON body to POST and an
//  optional path appended to CIVICBUS_DEPT_URL.
typedef struct {
    char *body;               //  malloc'd text; the library frees it
    char path [128];          //  "" to POST to the URL as configured
} cb_dept_request_t;

//  A department's answer, as a mapping reads it. Strings point into the
//  parsed JSON body (valid while the library holds it) or are NULL.
typedef struct {
    const char *dispatch_id;  //  required: the order's id (its Idempotency-Key)
    const char *answer_id;    //  the department's own id for this answer, or NULL
    Civicbus__V1__ReplyKind kind;
    const char *text;         //  reason, progress note or result
    int32_t extension_days;
    const char *attachment_urls [CB_ADAPTER_ATTACHMENTS_MAX];
    size_t n_attachment_urls;
    const char *staff_name;
    int64_t time_ms;          //  when the department says it happened; 0: not given
} cb_dept_answer_t;

//  A department's mapping. Callbacks may run on several threads at once.
typedef struct {
    const char *department;       //  catalogue code: "police"
    const char *summary;          //  for --help
    const char *default_listen;   //  "127.0.0.1:9111"
    const char *default_dept_url; //  "http://127.0.0.1:9101/incidents"
    const char *answer_path;      //  where the department POSTs answers: "/police/v1/status"

    //  Builds the mapping's tables from the JSON in CIVICBUS_ADAPTER_MAPPING
    //  (`config` is NULL when that setting is empty: use built-in defaults).
    //  Returns the state (may be any non-NULL pointer), or NULL with `err`.
    void *(*load) (const json_t *config, cb_error_t *err);
    //  Frees what load returned.
    void (*unload) (void *state);
    //  Order -> request. 0, or -1 with `err` when the order cannot be put in
    //  the department's format (NACK department_refused: operators look).
    int (*request_for) (void *state, const Civicbus__V1__DispatchOrder *order,
                        cb_dept_request_t *request, cb_error_t *err);
    //  Answer body -> reply fields. 0, or -1 with `err` (answered 422).
    int (*answer_from) (void *state, const json_t *body, cb_dept_answer_t *answer,
                        cb_error_t *err);
} cb_adapter_mapping_t;

//  The whole adapter process: settings (--help lists them), logging,
//  the mapping's tables, the ZeroMQ thread, delivery workers, the HTTP
//  listener; runs until SIGTERM and stops cleanly. Returns the exit code
//  (0, 1 when it could not start, 2 for bad configuration).
int cb_adapter_main (const cb_adapter_mapping_t *mapping, int argc, char **argv);

/* ---- pure parts, public for the mappings and the tests ---- */

//  The reply id of an answer: "DEPT:ANSWER_ID" when the department gave its
//  own id, else "DEPT:h" + 32 hex digits of BLAKE2b (crypto_generichash,
//  16 bytes) over dispatch_id, kind, text and time_ms, each length-prefixed
//  so that no two different tuples hash the same input. A department that
//  repeats an HTTP call gets the same id, so the reply is applied once.
//  0, or -1 when it does not fit in `cap` (or an argument is NULL).
int cb_adapter_reply_id (char *buf, size_t cap, const char *department,
                         const cb_dept_answer_t *answer);

//  The ticket id inside a dispatch id ("ID/dept/version"). 0 or -1.
int cb_adapter_ticket_of (char *buf, size_t cap, const char *dispatch_id);

//  How the library reads the department's answer to an order POST.
typedef enum {
    CB_DEPT_ACCEPTED = 0,     //  2xx, and 409 (it has this Idempotency-Key already)
    CB_DEPT_REFUSED,          //  other 4xx: the content is wrong; retrying cannot help
    CB_DEPT_UNAVAILABLE       //  5xx, 408, 429, no answer: try again later
} cb_dept_verdict_t;
cb_dept_verdict_t cb_adapter_classify_status (long http_status);

//  The HTTP status an adapter answers the department with for a NACK code:
//  422 for missing_field and bad_value, 503 for unavailable, 409 otherwise.
int cb_adapter_status_for_nack (const char *code);

//  "sign", "return", "extension", "suspend", "progress", "resolve" <->
//  ReplyKind; NULL / REPLY_UNSPECIFIED for anything else.
const char *cb_adapter_reply_kind_name (Civicbus__V1__ReplyKind kind);
Civicbus__V1__ReplyKind cb_adapter_reply_kind_from_name (const char *name);

//  Compares a presented `Authorization` header value with "Bearer " +
//  `token` in time independent of where they differ (both hashed, then
//  sodium_memcmp). False for an empty token: no token configured lets
//  nobody in.
bool cb_adapter_bearer_ok (const char *token, const char *authorization);

/* ---- helpers for mappings (common/adapter_mapping.c) ----

    What every department's mapping does the same way, so that a mapping
    holds only its department's field names, words and tables. Errors name
    the department's own field, as the department will read them (the
    adapter answers them with 422). All are pure and thread-safe. */

//  `text`, or "" for NULL (json_pack's "s" refuses NULL).
const char *cb_adapter_or_empty (const char *text);

//  A time as the departments get it: ISO 8601 in Asia/Shanghai, or "" when
//  `ms` is 0 (not set) or does not format. Returns `buf` or "".
const char *cb_adapter_iso (int64_t ms, char *buf, size_t cap);

//  The three times every order carries, as cb_adapter_iso formats them.
typedef struct {
    char reported [40];       //  the ticket's created_ms
    char sign_by [40];        //  order->sign_due_ms
    char resolve_by [40];     //  order->resolve_due_ms
} cb_order_times_t;
//  Fills `times` from the order and its ticket (which must be set).
void cb_adapter_order_times (const Civicbus__V1__DispatchOrder *order, cb_order_times_t *times);

//  The order's ticket; NULL with err missing_field "ticket" when the order
//  carries none, or one without an id (request_for then returns -1).
const Civicbus__V1__Ticket *cb_adapter_order_ticket (const Civicbus__V1__DispatchOrder *order,
                                                     cb_error_t *err);

//  `n` URLs as a JSON array of strings (the ticket's attachment_urls); NULL
//  when out of memory (json_pack's "o*" then leaves the member out).
json_t *cb_adapter_url_array (char *const *urls, size_t n);

//  Ends request_for: request->body = the compact text of `body` (the
//  reference is taken; NULL, as json_pack returns on failure, is an error),
//  request->path = "". 0, or -1 with err no_memory "the WHAT could not be
//  encoded (text that is not UTF-8?)".
int cb_adapter_request_finish (cb_dept_request_t *request, json_t *body, const char *what,
                               cb_error_t *err);

//  One word a department uses for a reply kind ("ACCEPTED", "签收").
typedef struct {
    const char *word;
    Civicbus__V1__ReplyKind kind;
} cb_adapter_word_t;

//  Reads the two members every answer must have: `key_field` (non-empty:
//  the dispatch id the department echoes) into answer->dispatch_id, and
//  `kind_field`, one of the `n_words` words, into answer->kind. 0, or -1
//  with err: missing_field "FIELD is required", or bad_value "KIND_FIELD
//  'X' is not one of ONE_OF" (`one_of` lists the words for people).
int cb_adapter_answer_kind (const json_t *body, const char *key_field, const char *kind_field,
                            const cb_adapter_word_t *words, size_t n_words, const char *one_of,
                            cb_dept_answer_t *answer, cb_error_t *err);

//  True for the kinds whose text a department must give: return (the
//  reason), extension and suspend (why), resolve (the result).
bool cb_adapter_kind_needs_text (Civicbus__V1__ReplyKind kind);

//  Reads the days of an extension from `field`: a whole number when present
//  (bad_value "FIELD must be a whole number"); required when answer->kind
//  is an extension (missing_field "NEEDED_BY needs FIELD", `needed_by` the
//  department's word for it) and then within 1..max_days (bad_value), and
//  stored in answer->extension_days. Other kinds keep 0. 0 or -1 with err.
int cb_adapter_answer_days (const json_t *body, const char *field, const char *needed_by,
                            int max_days, cb_dept_answer_t *answer, cb_error_t *err);

//  Reads `field`, when present, as an array of at most
//  CB_ADAPTER_ATTACHMENTS_MAX URL strings into answer->attachment_urls.
//  0, or -1 with err bad_value naming `field`.
int cb_adapter_answer_urls (const json_t *body, const char *field, cb_dept_answer_t *answer,
                            cb_error_t *err);

//  Reads `field`, when present, as milliseconds (a whole number) or an ISO
//  8601 text into answer->time_ms. 0, or -1 with err bad_value "FIELD must
//  be ISO 8601 or milliseconds" for anything else.
int cb_adapter_answer_time (const json_t *body, const char *field, cb_dept_answer_t *answer,
                            cb_error_t *err);

//  For load: -1 with err bad_value "the mapping file must hold a JSON
//  object" when `config` is set and is not an object; else 0.
int cb_adapter_config_check (const json_t *config, cb_error_t *err);

//  For load: the table `key` of `config` in *table (NULL when absent or
//  `config` is NULL) and its number of members in *n (0 then). -1 with err
//  bad_value KEY "must be an object: SHAPE" when it is not an object.
int cb_adapter_config_table (const json_t *config, const char *key, const char *shape,
                             const json_t **table, size_t *n, cb_error_t *err);

/* ---- the journal: dispatch ids the department accepted ---- */

//  An append-only file DIR/journal-NAME.log of lines "DISPATCH_ID TIME_MS",
//  loaded into memory on open. Each add (or batch of adds) is written and
//  fsync'd before it returns. When it holds more than `max_entries`, it is compacted to the
//  newest max_entries/2 (written to a temporary file, fsync'd, renamed over
//  the old one, the directory fsync'd): an order older than those is long
//  acknowledged, and if the dispatcher still resent it the department's
//  own Idempotency-Key check catches it. One thread only.
typedef struct _cb_journal_t cb_journal_t;

//  Opens (creating DIR if needed) and loads. Lines that do not parse (a
//  torn last write after a crash) are skipped. NULL with `err` on failure.
cb_journal_t *cb_journal_open (const char *dir, const char *name, size_t max_entries,
                               cb_error_t *err);
void cb_journal_destroy (cb_journal_t **self_p);
bool cb_journal_has (const cb_journal_t *self, const char *dispatch_id);
//  Records `dispatch_id` (no-op when present). 0, or -1 when the write or
//  fsync failed (the caller must not ACK then).
int cb_journal_add (cb_journal_t *self, const char *dispatch_id, int64_t time_ms);
//  Records n dispatch ids with one write and one fsync (those present, or
//  repeated in the batch, once). 0, or -1 when an id is unusable (nothing
//  written) or the write or fsync failed: then none of them counts as
//  recorded and the caller must ACK none.
int cb_journal_add_many (cb_journal_t *self, const char *const *dispatch_ids, size_t n,
                         int64_t time_ms);
//  Entries in memory.
size_t cb_journal_size (const cb_journal_t *self);
//  Compacts now (also done by add). 0 or -1.
int cb_journal_compact (cb_journal_t *self);

#endif
