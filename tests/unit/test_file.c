/*  test_file.c — cb_file_read: whole files of any size up to the limit,
    bytes kept as they are (NULs too), and clear refusals naming the path. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "civicbus/file.h"

//  Writes `len` bytes to a new temporary file; its path in `path`.
static void
s_write (char *path, size_t cap, const void *data, size_t len)
{
    snprintf (path, cap, "%s/civicbus-test-file-XXXXXX", getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
    int fd = mkstemp (path);
    assert_true (fd >= 0);
    assert_int_equal (write (fd, data, len), (ssize_t) len);
    close (fd);
}

static void
test_reads_whole_files_of_any_size (void **state)
{
    (void) state;
    //  Around the reader's growth steps (4 KiB, doubling), and past them.
    const size_t sizes [] = { 0, 1, 4094, 4095, 4096, 4097, 70000 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes [0]; s++) {
        size_t size = sizes [s];
        char *data = malloc (size + 1);
        assert_non_null (data);
        for (size_t i = 0; i < size; i++)
            data [i] = (char) ('a' + i % 26);
        if (size > 2)
            data [size / 2] = 0;            //  a NUL inside is kept
        char path [256];
        s_write (path, sizeof path, data, size);
        size_t len = 99;
        char err [256] = "";
        char *text = cb_file_read (path, 1 << 20, &len, err, sizeof err);
        assert_non_null (text);
        assert_int_equal (len, size);
        assert_memory_equal (text, data, size);
        assert_int_equal (text [size], 0);
        free (text);
        free (data);
        unlink (path);
    }
}

static void
test_refusals_name_the_path (void **state)
{
    (void) state;
    size_t len = 99;
    char err [256] = "";
    assert_null (cb_file_read ("/nonexistent/civicbus/secret", 1024, &len, err, sizeof err));
    assert_int_equal (len, 0);
    assert_non_null (strstr (err, "cannot open /nonexistent/civicbus/secret"));

    char path [256];
    char data [3000];
    memset (data, 'x', sizeof data);
    s_write (path, sizeof path, data, sizeof data);
    assert_null (cb_file_read (path, 2999, &len, err, sizeof err));
    assert_non_null (strstr (err, path));
    assert_non_null (strstr (err, "larger than 2999 bytes"));
    //  Exactly the limit passes; no err buffer is fine too.
    char *text = cb_file_read (path, 3000, &len, NULL, 0);
    assert_non_null (text);
    assert_int_equal (len, 3000);
    free (text);
    unlink (path);

    //  A directory opens but does not read.
    assert_null (cb_file_read ("/", 1024, &len, err, sizeof err));
    assert_non_null (strstr (err, "/"));
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_reads_whole_files_of_any_size),
        cmocka_unit_test (test_refusals_name_the_path),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
