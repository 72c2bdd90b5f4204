/*  test_log.c — JSON lines on stderr: one object per line, the level from
    the environment, escaping, and phone numbers masked even when a caller
    forgets. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "civicbus/log.h"

//  Runs `fn` with stderr sent to a temporary file and returns what it wrote.
static char *
s_capture (void (*fn) (void))
{
    char path [] = "/tmp/cbtest-log-XXXXXX";
    int fd = mkstemp (path);
    assert_true (fd >= 0);
    int saved = dup (STDERR_FILENO);
    dup2 (fd, STDERR_FILENO);
    fn ();
    dup2 (saved, STDERR_FILENO);
    close (saved);
    off_t size = lseek (fd, 0, SEEK_END);
    char *text = calloc (1, (size_t) size + 1);
    assert_int_equal (pread (fd, text, (size_t) size, 0), size);
    close (fd);
    unlink (path);
    return text;
}

static void
s_write_some (void)
{
    cb_log_init ("intake");
    cb_log_set_level (CB_LOG_INFO);
    cb_log (CB_LOG_INFO, "ticket stored", "ticket", "320105-20261129-000000064",
            "note", "call 13812345678 \"now\"\n", NULL);
    cb_debug ("hidden %d", 1);
    cb_warn ("redis %s unreachable; caller 15912345678", "127.0.0.1:6380");
}

static void
test_lines_are_json_and_masked (void **state)
{
    (void) state;
    char *text = s_capture (s_write_some);
    //  Two lines: the debug one is below the level.
    int lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal (lines, 2);
    assert_null (strstr (text, "13812345678"));
    assert_null (strstr (text, "15912345678"));
    assert_non_null (strstr (text, "138****5678"));
    assert_null (strstr (text, "hidden"));

    char *save = NULL;
    char *line = strtok_r (text, "\n", &save);
    json_error_t err;
    json_t *first = json_loads (line, 0, &err);
    assert_non_null (first);
    assert_string_equal (json_string_value (json_object_get (first, "level")), "info");
    assert_string_equal (json_string_value (json_object_get (first, "service")), "intake");
    assert_string_equal (json_string_value (json_object_get (first, "msg")), "ticket stored");
    assert_string_equal (json_string_value (json_object_get (first, "ticket")), "320105-20261129-000000064");
    assert_string_equal (json_string_value (json_object_get (first, "note")), "call 138****5678 \"now\"\n");
    assert_non_null (strstr (json_string_value (json_object_get (first, "ts")), "+08:00"));
    json_decref (first);
    line = strtok_r (NULL, "\n", &save);
    json_t *second = json_loads (line, 0, &err);
    assert_non_null (second);
    assert_string_equal (json_string_value (json_object_get (second, "level")), "warn");
    json_decref (second);
    free (text);
}

static void
s_write_long (void)
{
    char big [10000];
    memset (big, 'x', sizeof big - 1);
    big [sizeof big - 1] = 0;
    cb_log (CB_LOG_ERROR, big, "field", big, NULL);
}

static void
test_long_lines_stay_one_line (void **state)
{
    (void) state;
    char *text = s_capture (s_write_long);
    size_t len = strlen (text);
    assert_true (len > 100);
    assert_int_equal (text [len - 1], '\n');
    assert_null (memchr (text, '\n', len - 1));
    free (text);
}

static void
test_level_names (void **state)
{
    (void) state;
    assert_int_equal (cb_log_level_from_name ("debug"), CB_LOG_DEBUG);
    assert_int_equal (cb_log_level_from_name ("WARN"), CB_LOG_WARN);
    assert_int_equal (cb_log_level_from_name ("warning"), CB_LOG_WARN);
    assert_int_equal (cb_log_level_from_name ("error"), CB_LOG_ERROR);
    assert_int_equal (cb_log_level_from_name ("loud"), -1);
    assert_int_equal (cb_log_level_from_name (NULL), -1);
    setenv ("CIVICBUS_LOG_LEVEL", "error", 1);
    cb_log_init ("test");
    assert_int_equal (cb_log_level (), CB_LOG_ERROR);
    unsetenv ("CIVICBUS_LOG_LEVEL");
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_lines_are_json_and_masked),
        cmocka_unit_test (test_long_lines_stay_one_line),
        cmocka_unit_test (test_level_names),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
