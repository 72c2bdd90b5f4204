/*  test_adapter_support.c — fixtures for the mappings' unit tests (see
    test_adapter_support.h). */

#include "test_adapter_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- private ---- */

//  The mapping's request_for into a zeroed `req`; its return value.
static int
s_request (const cb_adapter_mapping_t *mapping, void *state,
           const Civicbus__V1__DispatchOrder *order, cb_dept_request_t *req)
{
    memset (req, 0, sizeof *req);
    cb_error_t err;
    cb_error_clear (&err);
    return mapping->request_for (state, order, req, &err);
}

/* ---- public ---- */

json_t *
test_adapter_config_file (const char *name)
{
    char path [512];
    snprintf (path, sizeof path, "%s/deploy/config/%s", CIVICBUS_SOURCE_DIR, name);
    json_error_t jerr;
    json_t *config = json_load_file (path, 0, &jerr);
    assert_non_null (config);
    return config;
}

void *
test_adapter_load (const cb_adapter_mapping_t *mapping, const char *json, cb_error_t *err)
{
    json_t *config = NULL;
    if (json) {
        json_error_t jerr;
        config = json_loads (json, 0, &jerr);
        assert_non_null (config);
    }
    cb_error_clear (err);
    void *tables = mapping->load (config, err);
    json_decref (config);
    return tables;
}

json_t *
test_adapter_order_body (const cb_adapter_mapping_t *mapping, void *state,
                         const Civicbus__V1__DispatchOrder *order)
{
    cb_dept_request_t req;
    assert_int_equal (s_request (mapping, state, order, &req), 0);
    json_error_t jerr;
    json_t *body = json_loads (req.body, 0, &jerr);
    free (req.body);
    assert_non_null (body);
    return body;
}

int
test_adapter_answer_of (const cb_adapter_mapping_t *mapping, const char *text,
                        cb_dept_answer_t *answer, cb_error_t *err, json_t **keep)
{
    json_error_t jerr;
    *keep = json_loads (text, 0, &jerr);
    assert_non_null (*keep);
    memset (answer, 0, sizeof *answer);
    cb_error_clear (err);
    return mapping->answer_from (NULL, *keep, answer, err);
}

void
test_adapter_refuses_order (const cb_adapter_mapping_t *mapping, void *state,
                            const Civicbus__V1__DispatchOrder *order)
{
    cb_dept_request_t req;
    assert_int_equal (s_request (mapping, state, order, &req), -1);
}

void
test_adapter_refuses_answers (const cb_adapter_mapping_t *mapping,
                              const test_adapter_bad_answer_t *bad, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cb_dept_answer_t a;
        cb_error_t err;
        json_t *body;
        assert_int_equal (test_adapter_answer_of (mapping, bad [i].body, &a, &err, &body), -1);
        assert_string_equal (err.field, bad [i].field);
        json_decref (body);
    }
}
