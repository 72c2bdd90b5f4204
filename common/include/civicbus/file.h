/*  file.h — a whole small file into memory: configuration, secrets, city
    data. One reader, so every service bounds what it reads and says the
    same thing when it cannot. */

#ifndef CIVICBUS_FILE_H
#define CIVICBUS_FILE_H

#include <stddef.h>

//  The most city data (grids, catalogue, calendars, policies) a reader
//  takes: the CLI's loaders and the benchmarks use it.
#define CB_FILE_CITY_DATA_MAX (256u * 1024 * 1024)

//  Reads the file at `path` (a regular file, a pipe or a device alike)
//  into a new buffer with a NUL after its `*len` bytes; the caller frees
//  it. NULL when it cannot be opened or read, is larger than `max_bytes`,
//  or memory ran out; `err` (may be NULL) then says which, naming the path.
char *cb_file_read (const char *path, size_t max_bytes, size_t *len, char *err, size_t errcap);

#endif
