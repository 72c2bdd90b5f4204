"""test_department_protocol.py — the department protocol end to end: real
Redis, real dispatchers (CURVE, our ZAP handler), real intake, real
adapter-police, and the police simulator (tests/sim/department_sim.py).

- a police ticket goes RECEIVED -> DISPATCHED -> IN_PROGRESS -> RESOLVED,
  with "delivered", "sign" and "resolve" in its history; the incident the
  police system got carries the mapped incident type and the caller's phone;
- a reply the state machine refuses is NACKed and the department sees 409
  with the reason; a wrong token gets 401;
- a certificate that is not registered cannot get a message through; one
  registered for urban that claims police is refused and logged;
- two police adapters, orders in flight: SIGKILL one; the other delivers,
  and the police system has every order, each exactly once after its own
  Idempotency-Key check, and each ticket one "delivered";
- SIGKILL the active dispatcher while replies flow: the standby takes over,
  no reply is lost and none is applied twice.

Certificates are made with `civicbus certs new` and registered with
`civicbus adapters register`, as an operator would.
"""
import http.server
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_dispatcher as td  # noqa: E402

SIM = os.path.join(harness.SOURCE_DIR, "tests", "sim", "department_sim.py")
MAPPING = os.path.join(harness.CONFIG_DIR, "adapters", "police.json")
CATEGORY = "police.public_order.fight"
TOKEN = "police-dept-token-for-tests"
STATE = {"DISPATCHED": 3, "IN_PROGRESS": 4, "RESOLVED": 5}


def messages(proc):
    return td.log_messages(proc)


def logged(proc, msg, **fields):
    return any(m.get("msg") == msg and all(m.get(k) == v for k, v in fields.items())
               for m in messages(proc))


class DepartmentProtocolTest(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        c = cls.cluster
        cls.dep = td.Deployment(c)
        cls.dep.load_city()
        cls.dep.create_key("department-protocol")
        cls.certs = os.path.join(c.dir, "certs")
        os.makedirs(cls.certs)
        for name in ("dispatcher", "police-1", "police-2", "urban-1", "stranger"):
            c.cli("certs", "new", name, "--out", cls.certs)
        for dept, name in (("police", "police-1"), ("police", "police-2"), ("urban", "urban-1")):
            c.cli("adapters", "register", dept, cls.cert(name))
        secret = cls.cert("dispatcher", secret=True)
        for name in ("dispatcher-a", "dispatcher-b"):
            env = cls.dep.dispatcher_env(name, lease_ms=1500, sweep_ms=500)
            env.update({"CIVICBUS_DISPATCHER_CERT": secret, "CIVICBUS_HEARTBEAT_MS": "300",
                        "CIVICBUS_ACK_TIMEOUT_MS": "1500"})
        cls.dep.start_dispatcher("dispatcher-a")
        cls.dep.wait_active("dispatcher-a")
        cls.dep.start_dispatcher("dispatcher-b")
        cls.dep.start_intake()
        cls.city = td.City()
        cls.serial = 0

    @classmethod
    def cert(cls, name, secret=False):
        return os.path.join(cls.certs, name + (".cert_secret" if secret else ".cert"))

    # ---- helpers ----

    def adapter_endpoints(self):
        return ",".join(env["CIVICBUS_ADAPTER_BIND"] for env in self.dep.dispatchers.values())

    def start_sim(self, name, adapter_port, *args):
        port = harness.free_port()
        argv = [sys.executable, SIM, "--dialect", "police", "--listen", f"127.0.0.1:{port}",
                "--adapter-url", f"http://127.0.0.1:{adapter_port}", "--token", TOKEN,
                "--seed", "7"] + list(args)
        proc = harness.Proc(name, argv, dict(os.environ),
                            os.path.join(self.cluster.dir, name + ".log")).start()
        self.cluster.procs[name] = proc
        url = f"http://127.0.0.1:{port}"
        harness.wait_until(lambda: harness.http_request("GET", url + "/healthz").status == 200,
                           10, what=f"{name} to listen")
        self.addCleanup(proc.stop)
        return url

    def start_adapter(self, name, cert, port, sim_url, capacity=4):
        state = os.path.join(self.cluster.dir, "state-" + name)
        env = {
            "CIVICBUS_ADAPTER_ID": name,
            "CIVICBUS_ADAPTER_ENDPOINTS": self.adapter_endpoints(),
            "CIVICBUS_ADAPTER_CERT": self.cert(cert, secret=True),
            "CIVICBUS_DISPATCHER_CERT_PUBLIC": self.cert("dispatcher"),
            "CIVICBUS_ADAPTER_STATE_DIR": state,
            "CIVICBUS_ADAPTER_LISTEN": f"127.0.0.1:{port}",
            "CIVICBUS_ADAPTER_MAPPING": MAPPING,
            "CIVICBUS_ADAPTER_CAPACITY": str(capacity),
            "CIVICBUS_HEARTBEAT_MS": "300",
            "CIVICBUS_DEPT_URL": sim_url + "/incidents",
            "CIVICBUS_DEPT_TIMEOUT_MS": "10000",
            "CIVICBUS_DEPT_TOKEN": TOKEN,
        }
        proc = self.cluster.start(name, binary="civicbus-adapter-police", env=env)
        self.addCleanup(proc.stop)
        harness.wait_until(lambda: logged(proc, "ready"), 20, what=f"{name} ready")
        return proc

    def ready(self, port):
        try:
            return harness.http_request("GET", f"http://127.0.0.1:{port}/readyz",
                                        timeout=2).status == 200
        except OSError:
            return False

    def post_police_ticket(self):
        type(self).serial += 1
        code, lat, lon = self.city.grids[self.serial % len(self.city.grids)]
        body = {"source": "hotline", "request_type": "report", "category": CATEGORY,
                "description": f"小区门口有人打架 #{self.serial}",
                "location": {"lat": lat, "lon": lon},
                "reporter": {"name": "张三", "phone": "13812345678"}}
        resp = self.dep.http("POST", "/v1/tickets", body=body)
        self.assertEqual(resp.status, 201, resp)
        ticket_id = resp.json()["id"]
        r = self.dep.r
        harness.wait_until(lambda: td.dispatch_records(r, ticket_id).get("police"), 20,
                           what=f"{ticket_id} dispatched to police")
        return ticket_id, td.dispatch_records(r, ticket_id)["police"]

    def types(self, ticket_id):
        return [e["type"] for e in td.history(self.dep.r, ticket_id)]

    def state(self, ticket_id):
        return td.load_ticket(self.dep.r, ticket_id)["state"]

    def sim_stats(self, url):
        return harness.http_request("GET", url + "/stats").json()

    # ---- tests (alphabetical order is run order; the dispatcher kill is last) ----

    def test_a_police_ticket_round_trip(self):
        port = harness.free_port()
        sim = self.start_sim("sim-a", port, "--sign-delay-ms", "200", "--resolve-delay-ms", "400")
        self.start_adapter("police-a", "police-1", port, sim)
        harness.wait_until(lambda: self.ready(port), 20, what="police-a registered")

        ticket_id, dispatch_id = self.post_police_ticket()
        harness.wait_until(lambda: self.state(ticket_id) == STATE["RESOLVED"], 30,
                           what=f"{ticket_id} RESOLVED")
        types = self.types(ticket_id)
        for t in ("received", "accept", "dispatch", "delivered", "sign", "resolve"):
            self.assertEqual(types.count(t), 1, types)
        self.assertLess(types.index("dispatch"), types.index("delivered"))
        self.assertLess(types.index("sign"), types.index("resolve"))
        r = self.dep.r
        self.assertEqual(td.queued_orders(r, ticket_id), [])
        self.assertEqual(r("HGET", f"dspd:{td.tag(ticket_id)}:{ticket_id}", "police"), b"1")

        stats = self.sim_stats(sim)
        order = stats["orders"][dispatch_id]
        self.assertEqual(order["incident_type"], "FIGHT")        # police.json
        self.assertEqual(order["case_no"], ticket_id)
        self.assertEqual(order["caller"]["phone"], "13812345678")  # police sees the phone
        self.assertEqual(stats["per_id"][dispatch_id], 1)

        # A reply the state machine refuses: signing a RESOLVED ticket.
        resp = harness.http_request("POST", sim + "/control/answer",
                                    body={"dispatch_id": dispatch_id, "kind": "sign"}).json()
        self.assertEqual(resp["status"], 409, resp)
        self.assertEqual(resp["body"]["error"]["code"], "wrong_state")
        self.assertIn("sign", resp["body"]["error"]["message"])
        self.assertEqual(self.types(ticket_id).count("sign"), 1)

        # The department repeats its sign call (same status_id): the reply id
        # was applied already, so it is ACKed (200) and changes nothing.
        sign = next(e for e in td.history(r, ticket_id) if e["type"] == "sign")
        reply_id = json.loads(sign["payload"])["reply_id"]
        self.assertTrue(reply_id.startswith("police:"), reply_id)
        resp = harness.http_request("POST", sim + "/control/answer", body={
            "dispatch_id": dispatch_id, "kind": "sign",
            "answer_id": reply_id[len("police:"):]}).json()
        self.assertEqual(resp["status"], 200, resp)
        self.assertEqual(self.types(ticket_id).count("sign"), 1)

        # Without the department's token nothing gets in.
        resp = harness.http_request("POST", f"http://127.0.0.1:{port}/police/v1/status",
                                    body={"incident_key": dispatch_id, "status": "UPDATE"},
                                    headers={"Authorization": "Bearer wrong"})
        self.assertEqual(resp.status, 401)

    def test_b_unregistered_certificate_gets_nothing_through(self):
        port = harness.free_port()
        sim = self.start_sim("sim-b", port, "--no-answers")
        with open(self.cert("stranger")) as f:
            key = next(line.split('"')[1] for line in f if "public-key" in line)
        adapter = self.start_adapter("police-stranger", "stranger", port, sim)
        disp = self.cluster.procs["dispatcher-a"]
        harness.wait_until(lambda: logged(disp, "adapter key not registered: connection refused",
                                          key=key), 20, what="the ZAP refusal in the log")
        ticket_id, dispatch_id = self.post_police_ticket()
        harness.wait_until(lambda: logged(adapter, "no dispatcher answers (is this adapter's key "
                                          "registered?): reconnecting"), 20,
                           what="the adapter to give up on this connection")
        self.assertFalse(self.ready(port))
        self.assertEqual(self.sim_stats(sim)["received"], 0)
        self.assertNotIn("delivered", self.types(ticket_id))
        self.assertFalse(any(m.get("msg") == "adapter registered" and m.get("key") == key
                             for m in messages(disp)))

    def test_c_key_of_another_department_is_refused(self):
        port = harness.free_port()
        sim = self.start_sim("sim-c", port, "--no-answers")
        adapter = self.start_adapter("police-with-urban-key", "urban-1", port, sim)
        disp = self.cluster.procs["dispatcher-a"]
        harness.wait_until(lambda: logged(disp, "adapter claims another department than its "
                                          "key's: refused", key_department="urban",
                                          claimed="police"), 20, what="the refusal logged")
        harness.wait_until(lambda: logged(adapter, "the dispatcher refused this adapter",
                                          code="wrong_department"), 20,
                           what="the adapter told wrong_department")
        self.assertFalse(self.ready(port))
        self.assertEqual(self.sim_stats(sim)["received"], 0)

    def test_d_adapter_killed_with_orders_in_flight(self):
        port1, port2 = harness.free_port(), harness.free_port()
        # One simulator behind both adapters; it holds every new order 1.5 s
        # before accepting, so orders are in flight when the kill comes.
        sim = self.start_sim("sim-d", port1, "--no-answers", "--accept-delay-ms", "1500")
        p1 = self.start_adapter("police-d1", "police-1", port1, sim, capacity=4)
        harness.wait_until(lambda: self.ready(port1), 20, what="police-d1 registered")
        tickets = [self.post_police_ticket() for _ in range(6)]
        ids = {d for _, d in tickets}
        disp = self.cluster.procs["dispatcher-a"]

        def sent_to(adapter):
            return {m["dispatch_id"] for m in messages(disp)
                    if m.get("msg") == "order sent" and m.get("adapter") == adapter} & ids
        harness.wait_until(lambda: len(sent_to("police-d1")) >= 2, 20,
                           what="orders in flight at police-d1")
        harness.wait_until(lambda: self.sim_stats(sim)["received"] >= 1, 20,
                           what="the department busy with police-d1's orders")
        held = sent_to("police-d1")
        self.start_adapter("police-d2", "police-2", port2, sim)
        p1.kill9()
        harness.wait_until(lambda: all("delivered" in self.types(t) for t, _ in tickets), 60,
                           what="every order delivered through the surviving adapter")
        self.assertTrue(held <= sent_to("police-d2"), "police-d2 resent what police-d1 held")
        stats = self.sim_stats(sim)
        seen = set(stats["per_id"]) & ids
        self.assertEqual(seen, ids)                       # every order reached the department
        self.assertEqual(len(seen), len(tickets))         # ... as one incident each
        for t, _ in tickets:
            self.assertEqual(self.types(t).count("delivered"), 1)
            self.assertEqual(td.queued_orders(self.dep.r, t), [])

    def test_e_department_without_adapter_does_not_block_others(self):
        # 40 due orders for urban (no urban adapter runs here) at the head of
        # every bucket's queue: more than one delivery turn reads per bucket.
        # They must step aside, or no police order behind them would go out.
        r = self.dep.r
        blocked = []
        for b in range(64):
            members = []
            for seq in range(40):
                tid = f"320105-20260101-{(1000 + seq) * 64 + b:09d}"
                members += [1, f"{tid}|urban"]
                blocked.append((b, f"{tid}|urban"))
            r("ZADD", f"dspq:{{b{b:02d}}}", *members)
        try:
            port = harness.free_port()
            sim = self.start_sim("sim-e", port)
            self.start_adapter("police-e", "police-1", port, sim)
            harness.wait_until(lambda: self.ready(port), 20, what="police-e registered")
            ticket_id, dispatch_id = self.post_police_ticket()
            harness.wait_until(lambda: dispatch_id in self.sim_stats(sim)["per_id"], 30,
                               what="the police order past the urban ones")
            # The urban entries are still queued (nobody took them), later.
            b, member = blocked[0]
            self.assertIsNotNone(r("ZSCORE", f"dspq:{{b{b:02d}}}", member))
        finally:
            for b, member in blocked:
                r("ZREM", f"dspq:{{b{b:02d}}}", member)

    def test_f_orders_wait_for_room_in_place(self):
        # One slot (capacity 1) and a department that holds each order a
        # while: the orders behind the one in flight stay due where they are
        # (no write, no step aside, no adapter_busy), and each ACK sends
        # the next. Every order reaches the department once, on attempt 1.
        port = harness.free_port()
        sim = self.start_sim("sim-f", port, "--accept-delay-ms", "600", "--no-answers")
        self.start_adapter("police-f", "police-1", port, sim, capacity=1)
        harness.wait_until(lambda: self.ready(port), 20, what="police-f registered")
        tickets = [self.post_police_ticket() for _ in range(4)]
        ids = {d for _, d in tickets}
        disp = self.cluster.procs["dispatcher-a"]
        r = self.dep.r

        def sent():
            return [m for m in messages(disp) if m.get("msg") == "order sent"
                    and m.get("adapter") == "police-f" and m.get("dispatch_id") in ids]

        waited, pushed = set(), set()

        def all_sent():
            # Scores first, then the log: an order sent in between shows in
            # the log (it is logged before its score moves).
            seconds, micros = r("TIME")
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            scores = {d: r("ZSCORE", f"dspq:{td.tag(t)}", f"{t}|police") for t, d in tickets}
            gone = {m["dispatch_id"] for m in sent()}
            for d, score in scores.items():
                if d not in gone and score is not None:
                    waited.add(d)
                    if float(score) > now_ms:
                        pushed.add(d)
            return gone == ids

        harness.wait_until(all_sent, 60, what="every order sent to police-f")
        self.assertTrue(waited)                  # orders did wait for the slot ...
        self.assertEqual(pushed, set())          # ... due, where they were
        harness.wait_until(lambda: all("delivered" in self.types(t) for t, _ in tickets), 60,
                           what="every order delivered through the one slot")
        self.assertTrue(all(m.get("attempt") == "1" for m in sent()))
        self.assertEqual(len(sent()), len(ids))  # each sent once
        self.assertFalse(any(m.get("msg") == "order not delivered" and m.get("dispatch_id") in ids
                             for m in messages(disp)))
        stats = self.sim_stats(sim)
        self.assertEqual(set(stats["per_id"]) & ids, ids)
        for t, _ in tickets:
            self.assertEqual(self.types(t).count("delivered"), 1)
            self.assertEqual(td.queued_orders(r, t), [])

    def test_g_department_refusal_goes_to_the_operators(self):
        # The department's system answers 422: the order is refused, once;
        # the ticket waits for an operator and the order leaves the queue.
        refused = []

        class Refuser(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                refused.append(self.headers.get("Idempotency-Key"))
                body = b'{"error":"unknown incident type"}'
                self.send_response(422)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        dept = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuser)
        threading.Thread(target=dept.serve_forever, daemon=True).start()
        self.addCleanup(dept.server_close)
        self.addCleanup(dept.shutdown)
        port = harness.free_port()
        self.start_adapter("police-g", "police-2", port,
                           f"http://127.0.0.1:{dept.server_address[1]}")
        harness.wait_until(lambda: self.ready(port), 20, what="police-g registered")
        ticket_id, dispatch_id = self.post_police_ticket()
        harness.wait_until(lambda: "delivery_refused" in self.types(ticket_id), 30,
                           what="the refusal recorded")
        self.assertIn(dispatch_id, refused)
        types = self.types(ticket_id)
        self.assertEqual(types.count("delivery_refused"), 1)
        self.assertNotIn("delivered", types)
        ticket = td.load_ticket(self.dep.r, ticket_id)
        self.assertTrue(ticket["needs_review"])
        self.assertIn("refused", ticket["review_reason"])
        self.assertEqual(td.queued_orders(self.dep.r, ticket_id), [])
        self.assertIsNotNone(self.dep.r("ZSCORE", f"opq:{td.tag(ticket_id)}", ticket_id))

    def test_z_dispatcher_killed_during_replies(self):
        port = harness.free_port()
        sim = self.start_sim("sim-z", port, "--sign-delay-ms", "100", "--resolve-delay-ms", "300")
        self.start_adapter("police-z", "police-2", port, sim)
        harness.wait_until(lambda: self.ready(port), 20, what="police-z registered")
        tickets = [self.post_police_ticket() for _ in range(10)]
        harness.wait_until(lambda: sum("sign" in self.types(t) for t, _ in tickets) >= 2, 30,
                           what="replies flowing")
        self.cluster.procs["dispatcher-a"].kill9()
        self.dep.wait_active("dispatcher-b")
        harness.wait_until(lambda: all(self.state(t) == STATE["RESOLVED"] for t, _ in tickets), 90,
                           what="every ticket RESOLVED through the standby")
        for t, _ in tickets:
            types = self.types(t)
            self.assertEqual(types.count("sign"), 1, (t, types))
            self.assertEqual(types.count("resolve"), 1, (t, types))
        answers = self.sim_stats(sim)["answers"]
        self.assertEqual(answers["gave_up"], 0, answers)
        ours = {d for _, d in tickets}
        self.assertEqual([a for a in answers["refused"] if a["dispatch_id"] in ours], [], answers)


if __name__ == "__main__":
    harness.main()
