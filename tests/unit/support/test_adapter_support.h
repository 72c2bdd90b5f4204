/*  test_adapter_support.h — fixtures the department mappings' unit tests
    share (tests/unit/test_adapter*.c): each test compiles its mapping.c in
    and drives it through its cb_adapter_mapping_t, so the fixtures take the
    mapping as an argument. They fail the running cmocka test on input that
    the test itself got wrong (a file that does not parse). */

#ifndef CIVICBUS_TEST_ADAPTER_SUPPORT_H
#define CIVICBUS_TEST_ADAPTER_SUPPORT_H

#include <jansson.h>
#include "civicbus/adapter.h"

//  deploy/config/NAME of the source tree (CIVICBUS_SOURCE_DIR), parsed;
//  the caller decrefs. Fails the test when it does not parse.
json_t *test_adapter_config_file (const char *name);

//  The mapping's load on `json` (NULL: no mapping file, the built-in
//  defaults), with `err` cleared first. Returns what load returned (NULL
//  when it refused the file; `err` says why). Fails the test when `json`
//  does not parse.
void *test_adapter_load (const cb_adapter_mapping_t *mapping, const char *json, cb_error_t *err);

//  The mapping's request_for on `order` and the body it built, parsed; the
//  caller decrefs. Fails the test when request_for fails or the body does
//  not parse.
json_t *test_adapter_order_body (const cb_adapter_mapping_t *mapping, void *state,
                                 const Civicbus__V1__DispatchOrder *order);

//  The mapping's answer_from (with no state) on `text`, parsed into *keep
//  (the answer's strings point into it: the caller decrefs it), with
//  `answer` zeroed and `err` cleared first. Returns what answer_from
//  returned. Fails the test when `text` does not parse.
int test_adapter_answer_of (const cb_adapter_mapping_t *mapping, const char *text,
                            cb_dept_answer_t *answer, cb_error_t *err, json_t **keep);

//  Asserts that the mapping's request_for refuses `order` (returns -1).
void test_adapter_refuses_order (const cb_adapter_mapping_t *mapping, void *state,
                                 const Civicbus__V1__DispatchOrder *order);

//  An answer a mapping must refuse, and the field its error must name.
typedef struct {
    const char *body;
    const char *field;
} test_adapter_bad_answer_t;

//  Asserts, for each of the `n` answers, that answer_from refuses it (-1)
//  with an error naming its field.
void test_adapter_refuses_answers (const cb_adapter_mapping_t *mapping,
                                   const test_adapter_bad_answer_t *bad, size_t n);

#endif
