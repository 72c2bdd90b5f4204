/*  civicbus-adapter-urban — the urban-management (城管) department adapter.

    Takes dispatch orders from the dispatcher (ZeroMQ DEALER, CURVE) and
    forwards them to the digital urban-management system as cases with
    GB/T 30428 codes; turns its feedback calls into replies. Everything but
    the mapping (mapping.c, API in urban.h) is the adapter library
    (common/adapter.c); docs/ADAPTERS.md walks through it. */

#include "urban.h"

int
main (int argc, char **argv)
{
    return cb_adapter_main (&urban_mapping, argc, argv);
}
