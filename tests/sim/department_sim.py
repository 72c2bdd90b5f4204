#!/usr/bin/env python3
"""department_sim.py — plays a department's own system over HTTP, for tests
and for ./scripts/up (python3 standard library only).

It receives the orders an adapter delivers (the dialect's order path),
deduplicates them by Idempotency-Key as a real department system should,
and counts what it received. For each new order it answers through the
adapter's listener, as the department's staff would: signs after a delay,
then resolves after another; at configured (seeded) rates it returns the
ticket instead, or asks for an extension first. Answers that get 503 or no
answer are sent again with the same answer id until --answer-retry-s runs
out, so a dispatcher failover loses nothing and applies nothing twice.

    GET  /stats            counts as JSON (received, unique, duplicates,
                           per_id, answers: sent/ok/refused/gave_up, orders)
    POST /control/answer   {"dispatch_id", "kind", "text", "days", "answer_id"}:
                           send one answer now; returns the adapter's answer
                           {"status": 409, "body": {...}}
    GET  /healthz

With --log FILE, one line per new order (the first delivery of a dispatch
id), written when its body has been read, for the benchmarks (bench/e2e.py
joins it with the load generator's log):
    DISPATCH_ID TICKET_ID MONOTONIC_NS WALL_US
(time.monotonic_ns() is CLOCK_MONOTONIC on Linux, the clock bench-loadgen
uses, so the two compare on one machine.)

Dialects describe one department system's API (order path, answer path,
answer body). "police" is the police incident system of
services/adapter-police/mapping.c, "urban" the digital urban-management
system of services/adapter-urban (urban.h), "civil" the civil-affairs case
system of services/adapter-civil (civil.h); a new department writes one
Dialect subclass and lists it in DIALECTS.
"""
import argparse
import heapq
import http.client
import itertools
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KINDS = ("sign", "return", "extension", "suspend", "progress", "resolve")


class Dialect:
    """One department system's HTTP API, as the simulator plays it."""
    name = None
    order_path = None       # where the adapter POSTs orders
    answer_path = None      # where we POST answers on the adapter's listener
    ticket_field = None     # the order's field that holds our ticket id (--log)

    def order_key(self, headers, body):
        """The order's dispatch id: the Idempotency-Key header."""
        return headers.get("Idempotency-Key")

    def ticket_of(self, body):
        """Our ticket id as the order carries it, or "-"."""
        value = body.get(self.ticket_field) if self.ticket_field else None
        return value if isinstance(value, str) and value else "-"

    def check_order(self, body):
        """None, or a reason to refuse the order with 422."""
        return None

    def is_lead(self, body):
        """False for a co-handling order (协办): its staff sign, report and
        resolve their part, but never return it or ask for more time."""
        return body.get("lead", True) is not False

    def answer_body(self, dispatch_id, kind, answer_id, text, days):
        raise NotImplementedError


class PoliceDialect(Dialect):
    name = "police"
    order_path = "/incidents"
    answer_path = "/police/v1/status"
    ticket_field = "case_no"
    STATUS = {"sign": "ACCEPTED", "return": "REJECTED", "extension": "NEED_TIME",
              "suspend": "ON_HOLD", "progress": "UPDATE", "resolve": "CLOSED"}

    def check_order(self, body):
        for field in ("incident_key", "case_no", "incident_type", "caller"):
            if field not in body:
                return f"{field} is required"
        return None

    def answer_body(self, dispatch_id, kind, answer_id, text, days):
        body = {"incident_key": dispatch_id, "status": self.STATUS.get(kind, kind),
                "note": text, "officer": "民警王警官",
                "at": int(time.time() * 1000)}
        if answer_id:
            body["status_id"] = answer_id
        if kind == "extension":
            body["extra_days"] = days
        if kind == "resolve":
            body["photos"] = ["https://police.example/photos/%s.jpg" % answer_id]
        return body


class UrbanDialect(Dialect):
    """The digital urban-management system of services/adapter-urban
    (urban.h): cases with GB/T 30428 codes, feedback actions."""
    name = "urban"
    order_path = "/cases"
    answer_path = "/urban/v1/feedback"
    ticket_field = "case_no"
    ACTION = {"sign": "签收", "return": "退回", "extension": "延期",
              "suspend": "挂账", "progress": "进展", "resolve": "办结"}

    def check_order(self, body):
        for field in ("case_key", "case_no", "gbt30428", "grid_code", "location"):
            if field not in body:
                return f"{field} is required"
        g = body["gbt30428"]
        if g.get("type") not in ("facility", "event") or len(g.get("subclass_code", "")) != 4:
            return "gbt30428 needs a type and a four-digit subclass_code"
        return None

    def is_lead(self, body):
        return body.get("role") != "assist"

    def answer_body(self, dispatch_id, kind, answer_id, text, days):
        body = {"case_key": dispatch_id, "action": self.ACTION.get(kind, kind),
                "opinion": text, "handler": "城管执法中队李队长",
                "time": int(time.time() * 1000)}
        if answer_id:
            body["feedback_id"] = answer_id
        if kind == "extension":
            body["delay_days"] = days
        if kind == "resolve":
            body["images"] = ["https://urban.example/after/%s.jpg" % answer_id]
        return body


class CivilDialect(Dialect):
    """The civil-affairs case system of services/adapter-civil (civil.h):
    assistance cases with a callback number and no reporter name."""
    name = "civil"
    order_path = "/cases"
    answer_path = "/civil/v1/events"
    ticket_field = "ticket_no"
    EVENT = {"sign": "ACCEPT", "return": "RETURN", "extension": "EXTEND",
             "suspend": "SUSPEND", "progress": "VISIT", "resolve": "COMPLETE"}

    def check_order(self, body):
        for field in ("request_no", "ticket_no", "service_type", "callback"):
            if field not in body:
                return f"{field} is required"
        return None

    def answer_body(self, dispatch_id, kind, answer_id, text, days):
        body = {"request_no": dispatch_id, "event": self.EVENT.get(kind, kind),
                "remark": text, "worker": "社区社工王老师",
                "occurred_at": int(time.time() * 1000)}
        if answer_id:
            body["event_id"] = answer_id
        if kind == "extension":
            body["extend_days"] = days
        if kind == "resolve":
            body["files"] = ["https://civil.example/visits/%s.pdf" % answer_id]
        return body


DIALECTS = {d.name: d for d in (PoliceDialect(), UrbanDialect(), CivilDialect())}

TEXTS = {
    "sign": "已签收，民警正在赶往现场",
    "return": "经核实不属于本单位职责，请改派",
    "extension": "需要协调多方，申请延期",
    "progress": "已到达现场处置",
    "resolve": "已处置完毕，现场秩序恢复",
    "suspend": "等待相关单位配合，申请挂账",
}


class Simulator:
    def __init__(self, args):
        self.args = args
        self.dialect = DIALECTS[args.dialect]
        self.random = random.Random(args.seed)
        self.lock = threading.Lock()
        self.received = 0
        self.failed = 0
        self.per_id = {}
        self.orders = {}
        self.answers = {"sent": 0, "ok": 0, "refused": [], "gave_up": 0, "retries": 0}
        self.fail_left = args.fail_first
        self.answer_seq = itertools.count(1)
        self.incident_seq = itertools.count(1)
        self.queue = []                      # (due, seq, callable)
        self.queue_cond = threading.Condition()
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.stopping = False
        self.started = time.monotonic()
        # --log: line-buffered, written under self.lock
        self.log = open(args.log, "w", encoding="utf-8", buffering=1) if args.log else None

    # ---- orders ----

    def take_order(self, headers, raw):
        received_ns, received_wall_us = time.monotonic_ns(), time.time_ns() // 1000
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            return 400, {"error": "body is not JSON"}
        key = self.dialect.order_key(headers, body)
        if not key:
            return 400, {"error": "Idempotency-Key is required"}
        with self.lock:
            self.received += 1
            if self.fail_left > 0:
                self.fail_left -= 1
                self.failed += 1
                return 503, {"error": "simulated outage"}
            if len(self.per_id) >= self.args.max_orders and key not in self.per_id:
                return 429, {"error": "simulator order limit reached"}
        reason = self.dialect.check_order(body)
        if reason:
            return 422, {"error": reason}
        if self.args.accept_delay_ms:
            time.sleep(self.args.accept_delay_ms / 1000.0)
        with self.lock:
            count = self.per_id.get(key, 0) + 1
            self.per_id[key] = count
            if count > 1:
                return 200, {"duplicate": True, "incident_key": key}
            if self.log:
                self.log.write("%s %s %d %d\n" % (key, self.dialect.ticket_of(body),
                                                  received_ns, received_wall_us))
            if len(self.orders) < 1000:
                self.orders[key] = body
            plan = self.plan(self.dialect.is_lead(body))
        if plan:
            self.schedule(self.args.sign_delay_ms, lambda: self.run_chain(key, plan))
        return 201, {"incident_id": "SIM-%d" % next(self.incident_seq)}

    def plan(self, lead=True):
        """The answers for one new order, drawn from the seeded rates; a
        co-handler signs and resolves its part only."""
        if self.args.no_answers:
            return []
        steps = ["sign"]
        if not lead:
            return steps + ["resolve"]
        if self.random.random() < self.args.return_rate:
            return steps + ["return"]
        if self.random.random() < self.args.extension_rate:
            steps.append("extension")
        return steps + ["resolve"]

    # ---- answers ----

    def schedule(self, delay_ms, action):
        with self.queue_cond:
            heapq.heappush(self.queue, (time.monotonic() + delay_ms / 1000.0,
                                        next(self.answer_seq), action))
            self.queue_cond.notify()

    def scheduler(self):
        while True:
            with self.queue_cond:
                while not self.stopping and (not self.queue or self.queue[0][0] > time.monotonic()):
                    timeout = self.queue[0][0] - time.monotonic() if self.queue else None
                    self.queue_cond.wait(timeout)
                if self.stopping:
                    return
                _, _, action = heapq.heappop(self.queue)
            self.pool.submit(action)

    def run_chain(self, dispatch_id, steps):
        kind = steps[0]
        status, _ = self.answer(dispatch_id, kind)
        if status == 200 and len(steps) > 1:
            delay = self.args.resolve_delay_ms if steps[1] == "resolve" else self.args.sign_delay_ms
            self.schedule(delay, lambda: self.run_chain(dispatch_id, steps[1:]))

    def answer(self, dispatch_id, kind, text=None, days=3, answer_id=None):
        """POSTs one answer until it is answered other than 503 or the
        retry time runs out. Returns (status, body)."""
        answer_id = answer_id or "%s-%d-%d" % (self.dialect.name, self.args.seed, next(self.answer_seq))
        body = self.dialect.answer_body(dispatch_id, kind, answer_id,
                                        text if text is not None else TEXTS.get(kind, kind), days)
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        url = urlsplit(self.args.adapter_url)
        deadline = time.monotonic() + self.args.answer_retry_s
        backoff = 0.1
        with self.lock:
            self.answers["sent"] += 1
        while True:
            status, reply = None, None
            try:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                conn.request("POST", self.dialect.answer_path, body=data, headers={
                    "Content-Type": "application/json",
                    "Authorization": "Bearer " + self.args.token})
                r = conn.getresponse()
                status, raw = r.status, r.read()
                conn.close()
                try:
                    reply = json.loads(raw.decode("utf-8"))
                except ValueError:
                    reply = {"raw": raw.decode("utf-8", "replace")}
            except OSError as e:
                reply = {"error": str(e)}
            if status is not None and status != 503:
                break
            if time.monotonic() + backoff > deadline or self.stopping:
                with self.lock:
                    self.answers["gave_up"] += 1
                return status or 0, reply
            with self.lock:
                self.answers["retries"] += 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
        with self.lock:
            if status == 200:
                self.answers["ok"] += 1
            else:
                self.answers["refused"].append({"dispatch_id": dispatch_id, "kind": kind,
                                                "status": status, "body": reply})
        return status, reply

    def stats(self):
        with self.lock:
            return {"dialect": self.dialect.name, "received": self.received,
                    "failed": self.failed, "unique": len(self.per_id),
                    "duplicates": sum(c - 1 for c in self.per_id.values()),
                    "per_id": dict(self.per_id), "answers": json.loads(json.dumps(self.answers)),
                    "orders": dict(self.orders)}


def make_handler(sim):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            if sim.args.verbose:
                sys.stderr.write("department_sim: " + fmt % args + "\n")

        def send_json(self, status, body):
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > 1 << 20:
                raise ValueError("body too large")
            return self.rfile.read(length)

        def do_GET(self):
            if self.path == "/stats":
                self.send_json(200, sim.stats())
            elif self.path == "/healthz":
                self.send_json(200, {"status": "ok"})
            else:
                self.send_json(404, {"error": "not found"})

        def do_POST(self):
            try:
                raw = self.body()
            except ValueError as e:
                self.send_json(413, {"error": str(e)})
                return
            if self.path == sim.dialect.order_path:
                status, body = sim.take_order(self.headers, raw)
                self.send_json(status, body)
            elif self.path == "/control/answer":
                req = json.loads(raw.decode("utf-8"))
                status, body = sim.answer(req["dispatch_id"], req["kind"], req.get("text"),
                                          req.get("days", 3), req.get("answer_id"))
                self.send_json(200, {"status": status, "body": body})
            else:
                self.send_json(404, {"error": "not found"})

    return Handler


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dialect", default="police", choices=sorted(DIALECTS))
    p.add_argument("--listen", default="127.0.0.1:9101", help="host:port (127.0.0.1 only)")
    p.add_argument("--adapter-url", default="http://127.0.0.1:9111",
                   help="the adapter's listener, where answers go")
    p.add_argument("--token", default="", help="the department token the adapter expects")
    p.add_argument("--sign-delay-ms", type=int, default=1000)
    p.add_argument("--resolve-delay-ms", type=int, default=3000)
    p.add_argument("--return-rate", type=float, default=0.0)
    p.add_argument("--extension-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fail-first", type=int, default=0, help="answer the first N orders 503")
    p.add_argument("--accept-delay-ms", type=int, default=0,
                   help="hold each new order this long before accepting it")
    p.add_argument("--no-answers", action="store_true", help="receive orders, never answer")
    p.add_argument("--answer-retry-s", type=float, default=60.0,
                   help="how long one answer is retried on 503 / no answer")
    p.add_argument("--max-orders", type=int, default=100000)
    p.add_argument("--max-seconds", type=float, default=0, help="stop after this long (0: never)")
    p.add_argument("--log", metavar="FILE", help="one line per new order: DISPATCH_ID TICKET_ID "
                   "MONOTONIC_NS WALL_US (for the benchmarks)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        p.error("--listen must be on 127.0.0.1")
    sim = Simulator(args)
    server = ThreadingHTTPServer((host, int(port)), make_handler(sim))
    server.daemon_threads = True
    threading.Thread(target=sim.scheduler, daemon=True).start()
    if args.max_seconds:
        threading.Timer(args.max_seconds, server.shutdown).start()
    # Compact, like the services' JSON logs: scripts/up looks for "msg":"ready".
    sys.stderr.write(json.dumps({"msg": "ready", "service": "department_sim",
                                 "dialect": args.dialect, "listen": args.listen},
                                separators=(",", ":")) + "\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        with sim.queue_cond:
            sim.stopping = True
            sim.queue_cond.notify_all()
        server.server_close()
        sim.pool.shutdown(wait=False)
        if sim.log:
            with sim.lock:
                sim.log.close()
    return 0


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt()


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.exit(main())
