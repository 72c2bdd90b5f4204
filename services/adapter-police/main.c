/*  civicbus-adapter-police — the police (公安) department adapter.

    Takes dispatch orders from the dispatcher (ZeroMQ DEALER, CURVE) and
    forwards them to the police incident system; turns its status calls into
    replies. Everything but the mapping (mapping.c) is the adapter library
    (common/adapter.c); docs/ADAPTERS.md walks through it. */

#include "police.h"

int
main (int argc, char **argv)
{
    return cb_adapter_main (&police_mapping, argc, argv);
}
