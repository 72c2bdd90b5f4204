#!/usr/bin/env python3
"""report.py — merges the raw per-scenario JSON files that bench/run wrote
into one results file (bench/results/<name>.json), prints the table, and
checks the targets of issue #7. Standard library only.

Usage: report.py RAW_DIR OUT.json"""

import json
import os
import statistics
import sys


def load(raw, name):
    path = os.path.join(raw, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def median_run(raw, prefix):
    """The flat-out run with the median achieved rate, and all the rates."""
    runs = []
    i = 1
    while True:
        r = load(raw, "%s_%d" % (prefix, i))
        if r is None:
            break
        runs.append(r)
        i += 1
    if not runs:
        return None, []
    ordered = sorted(runs, key=lambda r: r["achieved_rate"])
    return ordered[len(ordered) // 2], [r["achieved_rate"] for r in runs]


def ms(us):
    return "%.2f" % (us / 1000.0)


def main():
    raw, out_path = sys.argv[1], sys.argv[2]
    results = {"machine": load(raw, "machine") or {}, "scenarios": {}}
    results["machine"].update(load(raw, "machine_end") or {})
    for name in sorted(os.listdir(raw)):
        if name.endswith(".json") and not name.startswith("machine"):
            results["scenarios"][name[:-5]] = load(raw, name[:-5])
    summary = {}
    targets = []
    lines = []

    bare, bare_rates = median_run(raw, "bare_flat")
    if bare:
        summary["bare_httpd_rate"] = bare["achieved_rate"]
        lines.append("ceiling  bare libmicrohttpd, 64 conns flat out   %8.0f/s  (runs: %s)"
                     % (bare["achieved_rate"], ", ".join("%.0f" % r for r in bare_rates)))
    for p in (1, 16):
        lua = load(raw, "lua_P%d" % p)
        if lua:
            summary["lua_create_rate_P%d" % p] = lua["rate"]
            lines.append("ceiling  create script, redis-benchmark -P %-2d   %8.0f/s" % (p, lua["rate"]))
    zmq = load(raw, "zmq")
    if zmq:
        summary["zmq_rate"] = zmq["rate"]
        lines.append("ceiling  ZeroMQ PUSH/PULL, %d-byte envelopes   %8.0f msg/s"
                     % (zmq["message_bytes"], zmq["rate"]))

    flat = {}
    for k in (1, 2, 4):
        run, rates = median_run(raw, "intake%d_flat" % k)
        if run:
            flat[k] = run
            share = run["achieved_rate"] / bare["achieved_rate"] if bare else 0
            summary["intake%d_flat_rate" % k] = run["achieved_rate"]
            summary["intake%d_share_of_bare" % k] = round(share, 3)
            lat = run["latency_us"]
            bad = sum(v for s, v in run["statuses"].items() if not s.startswith("2"))
            lines.append("intake x%d flat out, 64 conns  %8.0f/s  %4.0f%% of bare  p50 %s  p99 %s  "
                         "p99.9 %s ms  non-2xx %d  (runs: %s)"
                         % (k, run["achieved_rate"], 100 * share, ms(lat["p50"]), ms(lat["p99"]),
                            ms(lat["p999"]), bad, ", ".join("%.0f" % r for r in rates)))
    for rate in (100, 1000, 5000, 10000):
        for k in (1, 2, 4):
            run = load(raw, "intake%d_open_%d" % (k, rate))
            if not run:
                continue
            lat = run["latency_us"]
            errors = run["errors"]
            lines.append("intake x%d open %5d/s  achieved %8.0f/s  p50 %s  p99 %s  p99.9 %s  max %s ms"
                         "  unsent %d unanswered %d"
                         % (k, rate, run["achieved_rate"], ms(lat["p50"]), ms(lat["p99"]),
                            ms(lat["p999"]), ms(lat["max"]), errors["unsent"], errors["unanswered"]))
            summary["intake%d_open_%d_p99_ms" % (k, rate)] = lat["p99"] / 1000.0

    memory = load(raw, "memory")
    if memory:
        summary["bytes_per_open_ticket"] = memory["bytes_per_open_ticket"]
        lines.append("memory   %.0f bytes per open ticket (5 events, %d timers, indexes); "
                     "%.0f with the notifier outbox"
                     % (memory["bytes_per_open_ticket"], memory["timers_per_ticket"],
                        memory["bytes_per_ticket_with_outbox"]))
    takeover = load(raw, "takeover")
    if takeover:
        summary["takeover_ms"] = takeover["takeover_ms"]
        lines.append("recovery standby takeover: first dispatch %d ms after SIGKILL (lease %d ms)"
                     % (takeover["takeover_ms"], takeover["lease_ms"]))
    backlog = load(raw, "backlog")
    if backlog:
        summary["backlog_drain_ms"] = backlog["drain_ms"]
        lines.append("recovery backlog of %d drained in %.1f s (%d/s), %d dispatched"
                     % (backlog["backlog"], backlog["drain_ms"] / 1000.0, backlog["rate"],
                        backlog["dispatched"]))
    rss = load(raw, "rss_kib")
    if rss:
        summary["idle_rss_kib"] = rss
        lines.append("idle RSS " + "  ".join("%s %s" % (s, ("%.1f MiB" % (v / 1024.0)) if v else "not running")
                                            for s, v in sorted(rss.items())))

    # ---- targets (issue #7) ----
    def target(name, ok, detail):
        targets.append({"target": name, "met": ok, "measured": detail})

    if 1 in flat:
        r = flat[1]["achieved_rate"]
        target("intake x1 >= 20,000 tickets/s", r >= 20000, "%.0f/s" % r)
        if bare:
            target("intake x1 >= 30% of bare libmicrohttpd", r >= 0.3 * bare["achieved_rate"],
                   "%.0f%%" % (100 * r / bare["achieved_rate"]))
    run = load(raw, "intake1_open_5000")
    if run:
        p99 = run["latency_us"]["p99"] / 1000.0
        ok = p99 <= 5 and run["errors"]["unsent"] == 0
        target("p99 of the 201 <= 5 ms at 5,000/s (x1)", ok, "%.2f ms" % p99)
    if memory:
        b = memory["bytes_per_open_ticket"]
        target("<= 4 KiB Redis per open ticket", b <= 4096, "%.0f bytes" % b)
    if takeover:
        t = takeover["takeover_ms"]
        target("standby takeover <= 3 s", 0 <= t <= 3000, "%d ms" % t)
    if rss:
        worst = max((v for v in rss.values() if v), default=0)
        target("every service < 32 MiB idle", worst < 32 * 1024, "max %.1f MiB" % (worst / 1024.0))
    results["summary"] = summary
    results["targets"] = targets

    print()
    print("\n".join(lines))
    print()
    for t in targets:
        print("%-5s %-45s %s" % ("met" if t["met"] else "MISS", t["target"], t["measured"]))
    m = results["machine"]
    print("\nmachine: %s cores, load average %s at start, %s at end"
          % (m.get("cores"), m.get("loadavg_start"), m.get("loadavg_end")))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
