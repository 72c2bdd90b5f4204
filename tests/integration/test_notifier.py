"""test_notifier.py — the notifier with real Redis, real binaries and small
receivers in this process: HTTP receivers (ThreadingHTTPServer on loopback
ports) for webhooks, the 12345 hotline callback and the SMS gateway, and a
tiny SMTP responder (socketserver).

Cases: a hotline ticket through the real intake and dispatcher reaches the
reporter (Chinese SMS with the ticket id), the hotline (accept, dispatch,
in order, signed the exchange's way) and a webhook (signed, no full phone
number anywhere); a receiver that fails its first calls gets the
notification exactly once after retries; a receiver down for good makes
dead letters that `civicbus dead-letters replay` delivers once it is back;
two notifiers under load never deliver one delivery id twice; SIGKILL of a
notifier mid-load loses nothing (duplicates carry the same id); one
ticket's hotline pushes arrive in sequence order while the hotline fails
now and then; an escalation e-mails the supervisor over SMTP.

Events for the load and fault cases are written straight into Redis with
the ticket store's layout (ticket_store.h: t:, ev:, ntfq:), which is what
the store's scripts do; signatures are checked with Python's hmac.
"""
import base64
import email
import email.header
import hashlib
import hmac
import json
import os
import random
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_dispatcher import (Deployment, have_binaries, log_messages, pb_bytes,  # noqa: E402
                             pb_int, ticket_id_of)

PHONE = "13812345678"
WEBHOOK_SECRET = "whsec-test"
HOTLINE_SECRET = "hotline-secret-test"
SMS_TOKEN = "sms-token-test"


# ---- receivers --------------------------------------------------------------

class Receiver:
    """An HTTP receiver on a free loopback port. Records every call; fails
    (503) the first `fail_first` calls of each delivery id, every call while
    `down`, and a share `fail_rate` of calls at random, but (with
    `fail_rate_most` set) no delivery id more than that many times, so a
    test about retries never meets a dead letter by chance."""

    def __init__(self, kind):
        self.kind = kind
        self.lock = threading.Lock()
        self.calls = []             # dicts: did, path, headers, body, ok, signature_ok
        self.fail_first = 0
        self.fail_rate = 0.0
        self.fail_rate_most = None
        self.down = False
        self.delay = 0.0
        self.seen = {}              # did -> calls so far
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                ok = receiver.handle(self.path, dict(self.headers.items()), body)
                answer = b'{"code":0}' if ok else b'{"error":"try later"}'
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/{kind}/callback?v=1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def signature_ok(self, path, headers, body):
        h = {k.lower(): v for k, v in headers.items()}
        if self.kind == "hotline":
            msg = b"\n".join([b"POST", path.encode(), h.get("x-hotline-timestamp", "").encode(),
                              h.get("x-hotline-nonce", "").encode(), body])
            want = hmac.new(HOTLINE_SECRET.encode(), msg, hashlib.sha256).hexdigest()
            return hmac.compare_digest(want, h.get("x-hotline-signature", ""))
        if self.kind == "sms":
            return h.get("authorization") == f"Bearer {SMS_TOKEN}"
        msg = h.get("x-civicbus-timestamp", "").encode() + b"." + body
        want = hmac.new(WEBHOOK_SECRET.encode(), msg, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, h.get("x-civicbus-signature", ""))

    def handle(self, path, headers, body):
        if self.delay:
            time.sleep(self.delay)
        h = {k.lower(): v for k, v in headers.items()}
        did = h.get("x-civicbus-delivery", "")
        with self.lock:
            n = self.seen.get(did, 0)
            self.seen[did] = n + 1
            lucky = random.random() >= self.fail_rate or (
                self.fail_rate_most is not None and n - self.fail_first >= self.fail_rate_most)
            ok = not self.down and n >= self.fail_first and lucky
            self.calls.append({"did": did, "path": path, "headers": h, "body": body, "ok": ok,
                               "signature_ok": self.signature_ok(path, headers, body)})
        return ok

    def delivered(self, pred=None):
        """Successful calls (optionally filtered by pred(json body))."""
        with self.lock:
            calls = [c for c in self.calls if c["ok"]]
        return [c for c in calls if pred is None or pred(json.loads(c["body"]))]

    def all_calls(self):
        with self.lock:
            return list(self.calls)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SmtpResponder:
    """Just enough SMTP to take a message: HELO/EHLO, MAIL, RCPT, DATA, QUIT."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        responder = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line):
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self):
                self.reply("220 test ESMTP")
                mail_from, rcpt = None, []
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    cmd = line.decode("utf-8", "replace").strip()
                    verb = cmd.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 test")
                    elif verb == "MAIL":
                        mail_from = cmd
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        rcpt.append(cmd)
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 go on")
                        data = b""
                        while True:
                            chunk = self.rfile.readline()
                            if not chunk or chunk == b".\r\n":
                                break
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        with responder.lock:
                            responder.messages.append({"from": mail_from, "rcpt": rcpt,
                                                       "data": data})
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- tickets and events written with the store's layout -----------------------

STATES = {"RECEIVED": 1, "ACCEPTED": 2, "DISPATCHED": 3, "IN_PROGRESS": 4, "RESOLVED": 5,
          "CLOSED": 6}


def make_ticket_id(n):
    return "320105-20261129-%09d" % n


def ticket_pb(ticket_id, source, department, grid_path, state=4, external_id=""):
    location = pb_bytes(5, grid_path[-1]) + b"".join(pb_bytes(6, g) for g in grid_path)
    reporter = pb_bytes(1, "张三") + pb_bytes(2, PHONE)
    return (pb_bytes(1, ticket_id) + pb_int(2, source) + pb_bytes(3, external_id) +
            pb_bytes(5, "city.litter") + pb_bytes(7, "楼下垃圾堆积，电话" + PHONE) +
            pb_bytes(8, location) + pb_bytes(9, reporter) + pb_int(11, state) +
            pb_bytes(12, department) + pb_int(17, 1))


def event_pb(ticket_id, seq, kind, note="", from_state=4, to_state=4):
    return (pb_bytes(1, ticket_id) + pb_int(2, seq) + pb_bytes(3, kind) +
            pb_int(5, int(time.time() * 1000)) + pb_int(6, from_state) + pb_int(7, to_state) +
            pb_bytes(8, note))


def write_ticket(r, ticket_id, events, source=3, department="load-dept",
                 grid_path=("320105", "320105001"), external_id=""):
    """Stores a ticket and its events and puts every event in the outbox."""
    bucket = int(ticket_id[-9:]) % 64
    tag = "{b%02d}" % bucket
    r("HSET", f"t:{tag}:{ticket_id}", "pb",
      ticket_pb(ticket_id, source, department, list(grid_path), external_id=external_id),
      "v", 1, "st", 4)
    now = int(time.time() * 1000)
    for seq, (kind, note) in enumerate(events, start=1):
        r("RPUSH", f"ev:{tag}:{ticket_id}", event_pb(ticket_id, seq, kind, note))
    for seq in range(1, len(events) + 1):
        r("ZADD", f"ntfq:{tag}", now, f"{ticket_id}#{seq}")


def queue_sizes(r):
    total = {"ntfq": 0, "dlvq": 0, "dead": 0}
    for b in range(64):
        for prefix in total:
            total[prefix] += r("ZCARD", "%s:{b%02d}" % (prefix, b))
    return total


# ---- the tests ----------------------------------------------------------------

class NotifierBase(harness.ClusterTestCase):
    """Receivers, the notifier's configuration, and NOTIFIERS notifiers per test."""

    @classmethod
    def setUpClass(cls):
        if not have_binaries("civicbus", "civicbus-notifier"):
            raise __import__("unittest").SkipTest("civicbus or civicbus-notifier is not built")
        super().setUpClass()
        cls.r = cls.cluster.redis()
        cls.webhook = Receiver("webhook")
        cls.hotline = Receiver("hotline")
        cls.sms = Receiver("sms")
        cls.smtp = SmtpResponder()
        config = {
            "hotline": {"url": cls.hotline.url, "secret_env": "TEST_HOTLINE_SECRET"},
            "sms": {"url": cls.sms.url, "token": SMS_TOKEN},
            "smtp": {"url": f"smtp://127.0.0.1:{cls.smtp.port}", "from": "civicbus@city.example"},
            "supervisors": [{"name": "网格长", "level": 1, "area": "320105001",
                             "email": "grid-boss@city.example"}],
            "webhooks": [
                {"name": "watch", "url": cls.webhook.url, "secret": WEBHOOK_SECRET,
                 "events": ["received", "accept", "dispatch", "resolve"]},
                {"name": "flaky", "url": cls.webhook.url, "secret": WEBHOOK_SECRET,
                 "events": ["urge"], "departments": ["flaky-dept"]},
                {"name": "down", "url": cls.webhook.url.replace("webhook", "down"),
                 "secret": WEBHOOK_SECRET, "events": ["urge"], "departments": ["down-dept"]},
                {"name": "load", "url": cls.webhook.url, "secret": WEBHOOK_SECRET,
                 "events": ["urge"], "departments": ["load-dept"]},
            ],
        }
        cls.config_path = os.path.join(cls.cluster.dir, "notifier.json")
        with open(cls.config_path, "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False)
        cls.notifier_count = 0

    @classmethod
    def tearDownClass(cls):
        for x in ("webhook", "hotline", "sms", "smtp"):
            if getattr(cls, x, None):
                getattr(cls, x).close()
        super().tearDownClass()

    def start_notifier(self, name):
        proc = self.cluster.start(name, binary="civicbus-notifier", env={
            "CIVICBUS_NOTIFIER_CONFIG": self.config_path,
            "TEST_HOTLINE_SECRET": HOTLINE_SECRET,
            "CIVICBUS_NOTIFIER_BIND": f"tcp://127.0.0.1:{harness.free_port()}",
            "CIVICBUS_NOTIFIER_ID": name,
            "CIVICBUS_NOTIFIER_POLL_MS": "50",
            "CIVICBUS_NOTIFIER_WORKERS": "4",
            "CIVICBUS_NOTIFIER_TIMEOUT_MS": "2000",
            "CIVICBUS_NOTIFIER_VISIBILITY_MS": "5000",
            "CIVICBUS_NOTIFIER_MAX_ATTEMPTS": "4",
            "CIVICBUS_NOTIFIER_BACKOFF_MS": "40",
            "CIVICBUS_NOTIFIER_BACKOFF_MAX_MS": "300",
            "CIVICBUS_NOTIFIER_METRICS_S": "2",
        })
        harness.wait_until(lambda: any(m.get("msg") == "ready" for m in log_messages(proc)),
                           20, what=f"{name} ready")
        return proc

    def setUp(self):
        self.notifiers = [self.start_notifier(f"notifier-{self._testMethodName[:20]}-{i}")
                          for i in range(self.NOTIFIERS)]

    NOTIFIERS = 1

    def tearDown(self):
        for proc in self.notifiers:
            code = proc.stop()
            if code not in (None, -9):
                self.assertEqual(code, 0, f"{proc.name} exit code (23: leak under ASan)")

    def wait_idle(self, timeout=30):
        harness.wait_until(lambda: queue_sizes(self.r)["ntfq"] == 0 and
                           queue_sizes(self.r)["dlvq"] == 0, timeout, what="queues drained")

    def next_ids(self, n, start):
        return [make_ticket_id(start + i) for i in range(n)]


class Notifier(NotifierBase):
    """One notifier."""

    # ---- 1: the real front door and dispatcher --------------------------------

    def test_hotline_ticket_through_intake_reaches_reporter_hotline_and_webhook(self):
        if not have_binaries("civicbus-intake", "civicbus-dispatcher"):
            self.skipTest("civicbus-intake or civicbus-dispatcher is not built")
        d = Deployment(self.cluster)
        d.load_city()
        d.create_key("notifier-test")
        d.dispatcher_env("dispatcher")
        d.start_dispatcher("dispatcher")
        d.wait_active("dispatcher")
        d.start_intake()
        from test_dispatcher import City
        city = City()
        code, lat, lon = city.grids[3]
        category = next(iter(city.categories))
        rt = city.request_types(category)[0]
        body = {"source": "hotline", "external_id": "HL-TEST-0001", "request_type": rt,
                "category": category, "description": "路灯不亮，请回电" + PHONE,
                "location": {"lat": lat, "lon": lon},
                "reporter": {"name": "李四", "phone": PHONE}}
        resp = d.http("POST", "/v1/tickets", body=body)
        self.assertIn(resp.status, (200, 201), resp)
        ticket_id = ticket_id_of(resp)

        sms = harness.wait_until(lambda: [c for c in self.sms.delivered()
                                          if json.loads(c["body"])["delivery_id"].startswith(ticket_id)],
                                 30, what="the reporter's SMS")
        text = json.loads(sms[0]["body"])
        self.assertEqual(text["phone"], PHONE)
        self.assertIn(ticket_id, text["text"])
        self.assertIn("受理", text["text"])
        self.assertTrue(sms[0]["signature_ok"], "SMS gateway bearer token")

        pushes = harness.wait_until(
            lambda: (p := self.hotline.delivered(lambda b: b["ticket_id"] == ticket_id))
            and len(p) >= 2 and p, 30, what="hotline accept and dispatch")
        self.assertEqual([json.loads(p["body"])["event"] for p in pushes], ["accept", "dispatch"])
        self.assertEqual([json.loads(p["body"])["sequence"] for p in pushes], [2, 3])
        self.assertEqual(json.loads(pushes[0]["body"])["hotline_ticket_id"], "HL-TEST-0001")
        self.assertTrue(json.loads(pushes[1]["body"])["department"])
        self.assertTrue(all(p["signature_ok"] for p in pushes), "hotline signatures")

        hooks = harness.wait_until(
            lambda: (w := self.webhook.delivered(lambda b: b.get("subscription") == "watch" and
                                                 b["event"]["ticket_id"] == ticket_id))
            and len(w) >= 3 and w, 30, what="webhook received/accept/dispatch")
        self.assertEqual(sorted(json.loads(h["body"])["event"]["type"] for h in hooks),
                         ["accept", "dispatch", "received"])
        for h in hooks:
            self.assertTrue(h["signature_ok"], "webhook signature")
            self.assertNotIn(PHONE.encode(), h["body"])
            self.assertNotIn("李四".encode(), h["body"])
            self.assertIn("138****5678", h["body"].decode())
        for c in self.hotline.all_calls():
            self.assertNotIn(PHONE.encode(), c["body"])

    # ---- 2: retries --------------------------------------------------------------

    def test_receiver_failing_first_calls_gets_it_exactly_once(self):
        self.webhook.fail_first = 3
        try:
            ids = self.next_ids(2, 64 * 1000 + 5)
            for tid in ids:
                write_ticket(self.r, tid, [("received", ""), ("urge", "请尽快")],
                             department="flaky-dept")
            mine = lambda b: b.get("subscription") == "flaky"  # noqa: E731
            got = harness.wait_until(lambda: (d := self.webhook.delivered(mine)) and
                                     len(d) == 2 and d, 30, what="flaky deliveries")
            self.wait_idle()
            dids = [c["did"] for c in got]
            self.assertEqual(len(set(dids)), 2)
            for did in dids:
                calls = [c for c in self.webhook.all_calls() if c["did"] == did]
                self.assertEqual(len(calls), 4, "3 failures then one success")
                self.assertEqual(sum(c["ok"] for c in calls), 1)
                self.assertTrue(all(c["signature_ok"] for c in calls))
        finally:
            self.webhook.fail_first = 0

    # ---- 3: dead letters and replay ------------------------------------------------

    def test_down_receiver_makes_dead_letters_and_replay_delivers(self):
        down = Receiver("down")
        down.down = True
        # The "down" subscription points at a port: move the receiver there.
        config = json.load(open(self.config_path, encoding="utf-8"))
        for hook in config["webhooks"]:
            if hook["name"] == "down":
                hook["url"] = down.url
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False)
        for proc in self.notifiers:
            proc.stop()
        self.notifiers = [self.start_notifier("notifier-dead")]
        try:
            ids = self.next_ids(3, 64 * 2000 + 9)
            for tid in ids:
                write_ticket(self.r, tid, [("urge", "")], department="down-dept")

            def dead():
                cp = self.cluster.cli("dead-letters", "list", "--json")
                return [x for x in json.loads(cp.stdout or "[]") if x["recipient"] == "down"]
            letters = harness.wait_until(lambda: len(dead()) == 3 and dead(), 30,
                                         what="three dead letters")
            for x in letters:
                self.assertEqual(x["attempts"], 4)
                self.assertIn("503", x["error"])
                self.assertEqual(x["channel"], "webhook")
            self.assertEqual(len(down.all_calls()), 12)
            self.assertFalse(down.delivered())

            down.down = False
            cp = self.cluster.cli("dead-letters", "replay", "--all")
            self.assertIn("replayed 3 dead letters", cp.stdout)
            harness.wait_until(lambda: len(down.delivered()) == 3, 30, what="replayed deliveries")
            self.assertEqual(sorted(c["did"] for c in down.delivered()),
                             sorted(x["delivery_id"] for x in letters))
            self.assertEqual(dead(), [])
            cp = self.cluster.cli("dead-letters", "replay", letters[0]["delivery_id"], check=False)
            self.assertEqual(cp.returncode, 1, "no longer a dead letter")
            cp = self.cluster.cli("dead-letters", "replay", check=False)
            self.assertEqual(cp.returncode, 2)
        finally:
            down.close()


class TwoNotifiers(NotifierBase):
    """The same receivers, two notifiers at once."""

    NOTIFIERS = 2

    def test_two_notifiers_never_deliver_one_id_twice(self):
        n = 500
        ids = self.next_ids(n, 64 * 3000)
        before = len(self.webhook.delivered(lambda b: b.get("subscription") == "load"))
        start = time.monotonic()
        for tid in ids:
            write_ticket(self.r, tid, [("urge", "")], department="load-dept")
        mine = lambda b: b.get("subscription") == "load"  # noqa: E731
        harness.wait_until(lambda: len(self.webhook.delivered(mine)) - before >= n, 120,
                           what=f"{n} deliveries")
        elapsed = time.monotonic() - start
        self.wait_idle()
        calls = [c for c in self.webhook.all_calls()
                 if c["ok"] and json.loads(c["body"]).get("subscription") == "load"
                 and json.loads(c["body"])["event"]["ticket_id"] in set(ids)]
        dids = [c["did"] for c in calls]
        self.assertEqual(len(dids), n)
        self.assertEqual(len(set(dids)), n, "a delivery id was delivered twice")
        sys.stderr.write(f"\n  {n} webhook deliveries by two notifiers in {elapsed:.2f} s "
                         f"({n / elapsed:.0f}/s, writing the events included)\n")

    def test_sigkill_mid_load_delivers_everything_at_least_once(self):
        n = 300
        ids = set(self.next_ids(n, 64 * 4000))
        self.webhook.delay = 0.005
        try:
            for tid in sorted(ids):
                write_ticket(self.r, tid, [("urge", "")], department="load-dept")
            mine = lambda b: b.get("subscription") == "load" and b["event"]["ticket_id"] in ids  # noqa
            harness.wait_until(lambda: len(self.webhook.delivered(mine)) >= 50, 60,
                               what="some deliveries")
            self.notifiers[0].kill9()
            harness.wait_until(lambda: len({c["did"] for c in self.webhook.delivered(mine)}) >= n,
                               120, what="every delivery after the SIGKILL")
            self.wait_idle()
        finally:
            self.webhook.delay = 0
        calls = self.webhook.delivered(mine)
        by_ticket = {}
        for c in calls:
            by_ticket.setdefault(json.loads(c["body"])["event"]["ticket_id"], set()).add(c["did"])
        self.assertEqual(set(by_ticket), ids)
        # Duplicates (sent by the killed one, then again) carry the same id.
        self.assertTrue(all(len(d) == 1 for d in by_ticket.values()))

    def test_hotline_pushes_arrive_in_sequence_order_despite_failures(self):
        kinds = ["accept", "dispatch", "sign", "progress", "progress", "request_extension",
                 "approve_extension", "progress", "resolve", "verify", "follow_up"]
        ids = self.next_ids(4, 64 * 5000 + 17)
        # 30% of calls fail, none more than twice for one delivery (the
        # notifier gives up after 4 attempts: 0.3^4 per delivery over 44
        # deliveries would make a dead letter in about one run of three).
        self.hotline.fail_rate = 0.3
        self.hotline.fail_rate_most = 2
        try:
            for tid in ids:
                write_ticket(self.r, tid, [(k, f"第{i}步") for i, k in enumerate(kinds, 1)],
                             source=1, department="urban", external_id="HL-" + tid[-6:])
            for tid in ids:
                harness.wait_until(
                    lambda: len({c["did"] for c in self.hotline.delivered(
                        lambda b: b["ticket_id"] == tid)}) == len(kinds),
                    60, what=f"all hotline pushes of {tid}")
        finally:
            self.hotline.fail_rate = 0.0
            self.hotline.fail_rate_most = None
        self.wait_idle()
        for tid in ids:
            first_seen = []
            for c in self.hotline.delivered(lambda b: b["ticket_id"] == tid):
                seq = json.loads(c["body"])["sequence"]
                if seq not in first_seen:
                    first_seen.append(seq)
            self.assertEqual(first_seen, list(range(1, len(kinds) + 1)),
                             f"order of {tid}'s pushes")
        calls = [c for c in self.hotline.all_calls() if json.loads(c["body"])["ticket_id"] in ids]
        self.assertTrue(any(not c["ok"] for c in calls), "the hotline did fail now and then")
        self.assertTrue(all(c["signature_ok"] for c in calls))

    def test_escalation_mails_the_supervisor(self):
        tid = make_ticket_id(64 * 6000 + 33)
        write_ticket(self.r, tid, [("escalate", "超期未签收")], department="urban",
                     grid_path=("320105", "320105001", "32010500101"))
        msg = harness.wait_until(lambda: [m for m in self.smtp.messages
                                          if tid.encode() in m["data"]], 30,
                                 what="the supervisor's e-mail")[0]
        parsed = email.message_from_bytes(msg["data"])
        subject = str(email.header.make_header(email.header.decode_header(parsed["Subject"])))
        self.assertIn(tid, subject)
        self.assertIn("督办", subject)
        text = parsed.get_payload(decode=True).decode("utf-8")
        self.assertIn(tid, text)
        self.assertIn("grid-boss@city.example", msg["rcpt"][0])
        self.assertTrue(parsed["Message-ID"].startswith("<" + tid + "#1#email#"))

if __name__ == "__main__":
    harness.main()
