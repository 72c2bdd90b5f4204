#!/usr/bin/env python3
"""e2e.py — end-to-end latency for bench/run (issue #7, "End to end"): joins
the load generator's log of 201 answers (bench-loadgen --log: TICKET_ID SEQ
MONOTONIC_NS WALL_US MEASURED) with the department side's log of orders
received (bench-dept_receiver --log or tests/sim/department_sim.py --log:
DISPATCH_ID TICKET_ID MONOTONIC_NS WALL_US) by ticket id, and computes
e2e = (the department received the order) - (the 201 arrived at the
client), on CLOCK_MONOTONIC of the one machine both ran on.

Only tickets answered outside the load generator's warm-up count. A ticket
whose order never arrived is counted as missing, never dropped silently;
when an order came more than once (a retry), its first arrival counts.
Standard library only.

Usage: e2e.py --posted LOADGEN.log --received DEPT.log --label NAME [--json OUT]"""

import argparse
import json
import math
import sys


def quantile(values, q):
    """The smallest value with at least q of the values at or below it."""
    if not values:
        return None
    rank = max(1, int(math.ceil(q * len(values))))
    return values[min(rank, len(values)) - 1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--posted", required=True)
    p.add_argument("--received", required=True)
    p.add_argument("--label", default="e2e")
    p.add_argument("--json")
    args = p.parse_args(argv)

    posted = {}                # ticket id -> 201 monotonic ns (measured only)
    warmup = 0
    with open(args.posted, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 5 or parts[0] == "-":
                continue
            if parts[4] != "1":
                warmup += 1
                continue
            posted[parts[0]] = int(parts[2])
    received = {}              # ticket id -> first arrival monotonic ns
    repeats = 0
    with open(args.received, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 4:
                continue
            ticket, at = parts[1], int(parts[2])
            if ticket in received:
                repeats += 1
                received[ticket] = min(received[ticket], at)
            else:
                received[ticket] = at
    e2e = sorted((received[t] - at) / 1e6 for t, at in posted.items() if t in received)
    missing = sum(1 for t in posted if t not in received)
    # The rate orders reached the department: measured orders over the span
    # of their arrivals (the end-to-end maximum when the load exceeds it).
    arrivals = sorted(received[t] for t in posted if t in received)
    span_s = (arrivals[-1] - arrivals[0]) / 1e9 if len(arrivals) > 1 else 0
    first = min(posted.values()) if posted else 0
    last = max(posted.values()) if posted else 0
    result = {
        "label": args.label,
        "posted": len(posted),
        "posted_in_warmup": warmup,
        "received": len(e2e),
        "missing": missing,
        "repeated_deliveries": repeats,
        "window_s": round((last - first) / 1e9, 2),
        "arrival_rate": round(len(arrivals) / span_s, 1) if span_s else None,
        "e2e_ms": {
            "p50": quantile(e2e, 0.50), "p90": quantile(e2e, 0.90),
            "p99": quantile(e2e, 0.99), "p999": quantile(e2e, 0.999),
            "max": e2e[-1] if e2e else None,
            "min": e2e[0] if e2e else None,
            "negative": sum(1 for v in e2e if v < 0),
        },
    }
    lat = result["e2e_ms"]
    if e2e:
        print("%-28s e2e ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  "
              "(%d of %d received, %d missing, %d repeated)"
              % (args.label, lat["p50"], lat["p90"], lat["p99"], lat["p999"], lat["max"],
                 len(e2e), len(posted), missing, repeats))
    else:
        print("%-28s e2e: nothing received of %d posted" % (args.label, len(posted)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, sort_keys=True)
            f.write("\n")
    return 0 if e2e else 1


if __name__ == "__main__":
    sys.exit(main())
