/*  error.h — the error value every civicbus module returns for bad input.

    Errors from outside (a malformed frame, a bad request body, a bad setting)
    travel up as values, never as assert or exit (STYLE.md). One small struct
    carries what a client or an operator needs to act: a machine-readable
    code, the field it concerns (a dotted path such as "location.lat" or
    "attachments[2]", empty when it concerns the whole input), and a sentence
    for people. It is a plain struct so callers keep it on the stack. */

#ifndef CIVICBUS_ERROR_H
#define CIVICBUS_ERROR_H

#include <stddef.h>

typedef struct {
    char code[32];      //  machine-readable: "missing_field", "too_large", ...
    char field[64];     //  dotted path of the field at fault, or ""
    char message[256];  //  for people; always NUL-terminated
} cb_error_t;

//  Fills `err` (when not NULL): copies `code` and `field` (NULL means ""),
//  truncating them to fit, and formats the message printf-style. Safe to call
//  with a NULL `fmt` (empty message).
void cb_error_set (cb_error_t *err, const char *code, const char *field,
                   const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

//  Resets `err` (when not NULL) to all-empty strings: "no error".
void cb_error_clear (cb_error_t *err);

#endif
