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
    runs = runs_of(raw, prefix)
    rate = lambda r: r["achieved_rate"]
    return median_by(runs, rate), [rate(r) for r in runs]


def ms(us):
    return "%.2f" % (us / 1000.0)


def cpu_line(cpu):
    """The CPU that bench/run measured over a run's window (its "cpu")."""
    per, share = cpu["us_per_answer"], cpu["core_share"]
    num = lambda v: "?" if v is None else "%.0f" % v
    main = cpu.get("redis_main_thread", {})
    rewrites = cpu.get("aof_rewrites", 0)
    return ("         CPU per 201: intake %s, Redis %s, dispatcher %s us; machine %.0f%% busy "
            "(%d cores); Redis's main thread ran %.0f%%, waited for a core %.0f%%: limit: %s%s"
            % (num(per["intake"]), num(per["redis"]), num(per["dispatcher"]),
               100 * cpu["machine_busy"], cpu["cores"], 100 * main.get("ran", share["redis"]),
               100 * main.get("waited_for_a_core", 0), cpu["limit"],
               "; %d AOF rewrite(s) started" % rewrites if rewrites else ""))


def runs_of(raw, prefix):
    """Every numbered run PREFIX_1, PREFIX_2, ... that exists."""
    runs = []
    i = 1
    while True:
        r = load(raw, "%s_%d" % (prefix, i))
        if r is None:
            return runs
        runs.append(r)
        i += 1


def median_by(runs, key):
    """The run with the median value of key(run), or None."""
    if not runs:
        return None
    ordered = sorted(runs, key=key)
    return ordered[len(ordered) // 2]


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
    cost = load(raw, "script_cost")
    if cost:
        summary["script_own_us"] = cost["script_own_us"]
        lines.append("ceiling  a script call's own cost: EVALSHA %.2f us - GEOADD %.2f - ZADD %.2f "
                     "= %.2f us (Redis's usec_per_call)"
                     % (cost["evalsha_us"], cost["geoadd_us"], cost["zadd_us"], cost["script_own_us"]))
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
            if run.get("cpu"):
                summary["intake%d_flat_cpu" % k] = run["cpu"]
                lines.append(cpu_line(run["cpu"]))
    pinned = load(raw, "intake1_pinned")
    if pinned:
        summary["intake1_pinned_rate"] = pinned["achieved_rate"]
        lines.append("intake x1 flat out, Redis alone on CPU 0  %8.0f/s%s"
                     % (pinned["achieved_rate"], "  (%.2fx the unpinned median)"
                        % (pinned["achieved_rate"] / flat[1]["achieved_rate"]) if 1 in flat else ""))
        if pinned.get("cpu"):
            lines.append(cpu_line(pinned["cpu"]))
    if flat:
        lines.append("scaling  " + ", ".join(
            "x%d %.0f/s (limit: %s)" % (k, run["achieved_rate"], run.get("cpu", {}).get("limit", "?"))
            for k, run in sorted(flat.items())))
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
            if run.get("cpu"):
                summary["intake%d_open_%d_cpu" % (k, rate)] = run["cpu"]
                lines.append(cpu_line(run["cpu"]))
    run = load(raw, "intake1_open_5000_rewrite")
    if run:
        lat, rw = run["latency_us"], run.get("aof_rewrite", {})
        lines.append("intake x1 open  5000/s while the AOF is rewritten (%d tickets, %.0f MB, the "
                     "rewrite took %s s, its fork %.1f ms): p50 %s  p99 %s  p99.9 %s  max %s ms"
                     % (rw.get("tickets_before", 0), rw.get("used_memory", 0) / 1e6,
                        rw.get("seconds", "?"), rw.get("fork_us", 0) / 1000.0, ms(lat["p50"]),
                        ms(lat["p99"]), ms(lat["p999"]), ms(lat["max"])))
        summary["intake1_open_5000_rewrite_p99_ms"] = lat["p99"] / 1000.0
        if run.get("cpu"):
            lines.append(cpu_line(run["cpu"]))

    memory = load(raw, "memory")
    if memory:
        summary["bytes_per_open_ticket"] = memory["bytes_per_open_ticket"]
        lines.append("memory   %.0f bytes per open ticket (5 events, %.1f timers, indexes); "
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

    # ---- timers (bench-timers) ----
    timer_fire = {}
    for tick in (20, 100):
        runs = runs_of(raw, "timers_fire_tick%d" % tick)
        run = median_by(runs, lambda r: r["lateness_ms"]["p99"])
        if run:
            timer_fire[tick] = run
            lat = run["lateness_ms"]
            summary["timers_tick%d_lateness_p99_ms" % tick] = lat["p99"]
            lines.append("timers   %d armed, %d fired at %.0f/s by the dispatcher (CIVICBUS_TIMER_MS=%d): "
                         "lateness p50 %.1f p99 %.1f max %.1f ms, %d missing (runs p99: %s)"
                         % (run["armed"], run["fired"], run["fire_rate"], tick, lat["p50"], lat["p99"],
                            lat["max"], run["missing"],
                            ", ".join("%.1f" % r["lateness_ms"]["p99"] for r in runs)))
    arm_runs = [r for t in timer_fire for r in runs_of(raw, "timers_fire_tick%d" % t)]
    claims = [c for c in (load(raw, "timers_claim_tick%d" % t) for t in (20, 100)) if c]
    arm_runs += claims
    arm = median_by(arm_runs, lambda r: r["arm_rate"])
    if arm:
        summary["timers_arm_rate"] = arm["arm_rate"]
        lines.append("timers   (a) raw arming: %d members, ZADD each, pipeline %d: %.0f/s median "
                     "(runs: %s); %.0f bytes per armed timer"
                     % (arm["armed"], arm["pipeline"], arm["arm_rate"],
                        ", ".join("%.0f" % r["arm_rate"] for r in arm_runs), arm["bytes_per_timer"]))
    store = load(raw, "timers_store")
    if store:
        summary["timers_store_rate"] = store["timers_rate_in_dispatch"]
        lines.append("timers   (b) store: %d tickets created+accepted+dispatched at %.0f/s; the dispatch "
                     "changes armed %.1f timers each, %.0f timers/s (%.0f changes/s)"
                     % (store["tickets"], store["tickets_rate"], store["timers_per_ticket"],
                        store["timers_rate_in_dispatch"], store["dispatch_rate"]))
    for claim in claims:
        lat = claim["lateness_ms"]
        summary["timers_claim_tick%d_lateness_p99_ms" % claim["tick_ms"]] = lat["p99"]
        lines.append("timers   claim path alone (timers_claim_all every %d ms, batch %d): lateness "
                     "p50 %.1f p99 %.1f max %.1f ms; %.2f ms per call"
                     % (claim["tick_ms"], claim["batch"], lat["p50"], lat["p99"], lat["max"],
                        claim["claim_call_ms"]))

    # ---- end to end ----
    e2e = {}
    for name in ("c_1000", "c_80pct", "c_100", "py_100"):
        runs = [r for r in runs_of(raw, "e2e_" + name) if r["e2e_ms"]["p99"] is not None]
        run = median_by(runs, lambda r: r["e2e_ms"]["p99"])
        if not run:
            continue
        e2e[name] = run
        load_run = load(raw, "e2e_%s_load" % run["label"])
        lat = run["e2e_ms"]
        summary["e2e_%s_p99_ms" % name] = lat["p99"]
        lines.append("e2e      %-8s %s: p50 %.1f p99 %.1f max %.1f ms; %d of %d received%s (runs p99: %s)"
                     % (name, ("at %.0f/s" % load_run["target_rate"]) if load_run else "",
                        lat["p50"], lat["p99"], lat["max"], run["received"], run["posted"],
                        ", %d MISSING" % run["missing"] if run["missing"] else "",
                        ", ".join("%.1f" % r["e2e_ms"]["p99"] for r in runs)))
    e2e_max = load(raw, "e2e_max")
    if e2e_max:
        summary["e2e_max_rate"] = e2e_max["max_rate"]
        lines.append("e2e      maximum: orders reach the department at %d/s under %d/s offered "
                     "(adapter capacity %d); 80%% = %d/s" % (e2e_max["max_rate"],
                                                            e2e_max.get("offered", 1000),
                                                            e2e_max["capacity"], e2e_max["rate80"]))
    for receiver in ("c", "py"):
        ceiling = load(raw, "e2e_ceiling_" + receiver)
        if ceiling:
            rate = ceiling["completed"] / ceiling["duration_s"]
            summary["dept_receiver_%s_ceiling" % receiver] = round(rate)
            lines.append("e2e      department receiver %s flat out (16 conns): %.0f answers/s %s"
                         % ({"c": "bench-dept_receiver", "py": "department_sim.py"}[receiver], rate,
                            ceiling["statuses"]))

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
        rewrites = run.get("cpu", {}).get("aof_rewrites", 0)
        target("p99 of the 201 <= 5 ms at 5,000/s (x1)", ok, "%.2f ms%s" % (
            p99, ", %d AOF rewrite(s) in the window" % rewrites if rewrites else ""))
    if memory:
        b = memory["bytes_per_open_ticket"]
        target("<= 4 KiB Redis per open ticket", b <= 4096, "%.0f bytes" % b)
    if takeover:
        t = takeover["takeover_ms"]
        target("standby takeover <= 3 s", 0 <= t <= 3000, "%d ms" % t)
    if rss:
        worst = max((v for v in rss.values() if v), default=0)
        target("every service < 32 MiB idle", worst < 32 * 1024, "max %.1f MiB" % (worst / 1024.0))
    if arm:
        target("1,000,000 timers armed at >= 100,000/s", arm["arm_rate"] >= 100000,
               "%.0f/s (raw members)" % arm["arm_rate"])
    if 20 in timer_fire:
        p99 = timer_fire[20]["lateness_ms"]["p99"]
        target("timer lateness p99 <= 50 ms, 1 M armed", p99 <= 50 and timer_fire[20]["missing"] == 0,
               "%.1f ms (CIVICBUS_TIMER_MS 20, the default)" % p99)
    if "c_1000" in e2e:
        run = e2e["c_1000"]
        target("e2e p99 <= 10 ms at 1,000/s", run["e2e_ms"]["p99"] <= 10 and run["missing"] == 0,
               "%.1f ms" % run["e2e_ms"]["p99"])
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
