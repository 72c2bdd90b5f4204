/*  police.h — the police (公安) adapter's mapping: dispatch orders become
    incidents in the police incident system, its status calls become
    replies. The police system's small API is described in mapping.c and in
    docs/ADAPTERS.md. Separate from main.c so tests/unit/test_adapter.c can
    test the pure parts. */

#ifndef CIVICBUS_ADAPTER_POLICE_H
#define CIVICBUS_ADAPTER_POLICE_H

#include "civicbus/adapter.h"

//  The mapping cb_adapter_main runs with.
extern const cb_adapter_mapping_t police_mapping;

//  The loaded tables (opaque to callers; police_mapping.load makes one).
typedef struct _police_tables_t police_tables_t;

//  The incident type for a catalogue category: the longest matching pattern
//  of incident_types ("x.y.*" matches by prefix, "x.y.z" exactly), else the
//  default type. Never NULL.
const char *police_incident_type (const police_tables_t *tables, const char *category);

#endif
