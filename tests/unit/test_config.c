/*  test_config.c — defaults < file < environment, and errors that name the
    setting. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "civicbus/config.h"

static const cb_setting_t s_settings [] = {
    { "CBTEST_LISTEN", "127.0.0.1:8080", CB_SETTING_HOSTPORT, 0, 0, "where to listen" },
    { "CBTEST_THREADS", "4", CB_SETTING_INT, 1, 64, "worker threads" },
    { "CBTEST_VERBOSE", "no", CB_SETTING_BOOL, 0, 0, "chatty" },
    { "CBTEST_PEERS", "tcp://127.0.0.1:5551", CB_SETTING_ENDPOINTS, 0, 0, "peers" },
    { "CBTEST_NAME", "civic", CB_SETTING_STRING, 0, 0, "a name" },
    { NULL }
};

static void
s_clear_env (void)
{
    unsetenv ("CBTEST_LISTEN");
    unsetenv ("CBTEST_THREADS");
    unsetenv ("CBTEST_VERBOSE");
    unsetenv ("CBTEST_PEERS");
    unsetenv ("CBTEST_NAME");
    unsetenv ("CIVICBUS_CONFIG");
}

static char *
s_write_file (const char *text)
{
    static char path [64];
    snprintf (path, sizeof path, "/tmp/cbtest-config-XXXXXX");
    int fd = mkstemp (path);
    assert_true (fd >= 0);
    assert_int_equal (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
    return path;
}

static void
test_defaults (void **state)
{
    (void) state;
    s_clear_env ();
    cb_config_t *config = cb_config_new (s_settings);
    char err [256];
    assert_int_equal (cb_config_load (config, NULL, err, sizeof err), 0);
    assert_string_equal (cb_config_str (config, "CBTEST_LISTEN"), "127.0.0.1:8080");
    assert_int_equal (cb_config_int (config, "CBTEST_THREADS"), 4);
    assert_false (cb_config_bool (config, "CBTEST_VERBOSE"));
    cb_config_destroy (&config);
    cb_config_destroy (&config);
    assert_null (config);
}

static void
test_file_then_environment (void **state)
{
    (void) state;
    s_clear_env ();
    char *path = s_write_file ("# comment\n\nCBTEST_THREADS=8\nexport CBTEST_NAME=\"from file\"\n"
                               "OTHER_SERVICE_SETTING=ignored\nCBTEST_VERBOSE = yes\n");
    setenv ("CBTEST_THREADS", "16", 1);
    cb_config_t *config = cb_config_new (s_settings);
    char err [256];
    assert_int_equal (cb_config_load (config, path, err, sizeof err), 0);
    assert_int_equal (cb_config_int (config, "CBTEST_THREADS"), 16);
    assert_string_equal (cb_config_str (config, "CBTEST_NAME"), "from file");
    assert_true (cb_config_bool (config, "CBTEST_VERBOSE"));
    cb_config_destroy (&config);
    //  The file may also come from CIVICBUS_CONFIG.
    unsetenv ("CBTEST_THREADS");
    setenv ("CIVICBUS_CONFIG", path, 1);
    config = cb_config_new (s_settings);
    assert_int_equal (cb_config_load (config, NULL, err, sizeof err), 0);
    assert_int_equal (cb_config_int (config, "CBTEST_THREADS"), 8);
    cb_config_destroy (&config);
    unlink (path);
    s_clear_env ();
}

static void
s_expect_error (const char *name, const char *value, const char *needle)
{
    s_clear_env ();
    setenv (name, value, 1);
    cb_config_t *config = cb_config_new (s_settings);
    char err [256] = "";
    assert_int_equal (cb_config_load (config, NULL, err, sizeof err), -1);
    assert_non_null (strstr (err, name));
    assert_non_null (strstr (err, needle));
    cb_config_destroy (&config);
    unsetenv (name);
}

static void
test_errors_name_the_setting (void **state)
{
    (void) state;
    s_expect_error ("CBTEST_THREADS", "8x", "not a whole number");
    s_expect_error ("CBTEST_THREADS", "65", "outside 1..64");
    s_expect_error ("CBTEST_VERBOSE", "maybe", "not true or false");
    s_expect_error ("CBTEST_LISTEN", "localhost", "host:port");
    s_expect_error ("CBTEST_LISTEN", "127.0.0.1:70000", "host:port");
    s_expect_error ("CBTEST_PEERS", "127.0.0.1:5551", "endpoints");
}

static void
test_bad_file (void **state)
{
    (void) state;
    s_clear_env ();
    cb_config_t *config = cb_config_new (s_settings);
    char err [256];
    assert_int_equal (cb_config_load (config, "/nonexistent/civicbus.env", err, sizeof err), -1);
    assert_non_null (strstr (err, "/nonexistent/civicbus.env"));
    char *path = s_write_file ("CBTEST_THREADS 8\n");
    assert_int_equal (cb_config_load (config, path, err, sizeof err), -1);
    assert_non_null (strstr (err, ":1: expected NAME=value"));
    unlink (path);
    cb_config_destroy (&config);
}

static void
test_hostport (void **state)
{
    (void) state;
    char host [64];
    int port = 0;
    assert_int_equal (cb_hostport_split ("127.0.0.1:8080", host, sizeof host, &port), 0);
    assert_string_equal (host, "127.0.0.1");
    assert_int_equal (port, 8080);
    assert_int_equal (cb_hostport_split ("[::1]:9", host, sizeof host, &port), 0);
    assert_string_equal (host, "::1");
    assert_int_equal (cb_hostport_split (":80", host, sizeof host, &port), -1);
    assert_int_equal (cb_hostport_split ("a:0", host, sizeof host, &port), -1);
    assert_int_equal (cb_hostport_split ("a:b", host, sizeof host, &port), -1);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_defaults),
        cmocka_unit_test (test_file_then_environment),
        cmocka_unit_test (test_errors_name_the_setting),
        cmocka_unit_test (test_bad_file),
        cmocka_unit_test (test_hostport),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
