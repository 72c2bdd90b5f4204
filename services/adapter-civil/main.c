/*  civicbus-adapter-civil — the civil-affairs (民政) department adapter.

    Takes dispatch orders from the dispatcher (ZeroMQ DEALER, CURVE) and
    forwards them to the civil-affairs case system as assistance cases with
    a callback number and no reporter name; turns its events into replies.
    Everything but the mapping (mapping.c, API in civil.h) is the adapter
    library (common/adapter.c); docs/ADAPTERS.md walks through it. */

#include "civil.h"

int
main (int argc, char **argv)
{
    return cb_adapter_main (&civil_mapping, argc, argv);
}
