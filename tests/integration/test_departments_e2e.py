"""test_departments_e2e.py — the closed loop with all three departments:
real Redis, a real dispatcher (CURVE, certificates registered with the CLI),
the intake, the console (when built), adapter-police, adapter-urban and
adapter-civil, each in front of its department simulator
(tests/sim/department_sim.py, its own dialect).

The simulators run with --no-answers: the test makes each department answer
through the simulator's /control/answer, which posts the answer in the
department's own dialect to the adapter's listener, as the department's
system would. (The simulators' own timed sign -> resolve chain is covered by
test_department_protocol.py and by ./scripts/up.)

- for each department (police, urban, civil), a ticket of a category the
  catalogue routes there: RECEIVED -> ACCEPTED -> DISPATCHED -> delivered
  -> IN_PROGRESS (sign) -> progress -> RESOLVED, every step once and in
  order in the history, then the console's verify -> CLOSED;
- what each department's system got: the police incident has the caller's
  phone; the urban case carries the GB/T 30428 type, class and subclass
  codes of adapters/urban.json, the grid code and lng/lat, and no
  reporter; the civil case has the callback number and not the reporter's
  name (anywhere in it);
- a police return of a fight report: no other police rule, so the
  catalogue's fallback (civil) gets it, and the civil system receives it;
- a civil return of a subsistence request: nobody else owns it (civil is
  the fallback too), so it waits RETURNED in the operators' queue; an
  operator dispatches it by hand (console) and the urban system gets it;
- an urban extension request leaves the ticket IN_PROGRESS with the
  extension pending (5 days); the console approves it;
- a co-handled road collapse (urban + police): each department gets its
  order (urban "main", police lead=false); the co-handler's sign, progress
  and resolve land in the history without moving the ticket; urban's
  resolve resolves it;
- last, the three adapters stop on SIGTERM with exit code 0 (under the
  sanitizers: nothing leaked).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_dispatcher as td  # noqa: E402
from test_notifier import Receiver, log_messages  # noqa: E402

SIM = os.path.join(harness.SOURCE_DIR, "tests", "sim", "department_sim.py")
DEPARTMENTS = ("police", "urban", "civil")
ORDER_PATH = {"police": "/incidents", "urban": "/cases", "civil": "/cases"}
ANSWER_PATH = {"police": "/police/v1/status", "urban": "/urban/v1/feedback",
               "civil": "/civil/v1/events"}
# A category (and request type) the demo catalogue routes to one department alone.
PLAIN = {
    "police": ("police.public_order.fight", "report", "小区门口有人打架"),
    "urban": ("urban.event.environment.exposed_garbage", "report", "小区门口垃圾堆了三天没人清运"),
    "civil": ("civil.assistance.subsistence", "help", "张三丰老人独居，生活困难，想申请低保"),
}
CO_HANDLED = ("urban.event.emergency.road_collapse", "report", "路面突然塌了一个坑")
STATE = {"RECEIVED": 1, "ACCEPTED": 2, "DISPATCHED": 3, "IN_PROGRESS": 4, "RESOLVED": 5,
         "CLOSED": 6, "RETURNED": 8}
REPORTER = {"name": "张三丰", "phone": "13812345678"}


def token(dept):
    return f"{dept}-dept-token-for-e2e"


class DepartmentsEndToEnd(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        if not td.have_binaries("civicbus", "civicbus-dispatcher", "civicbus-intake",
                                *("civicbus-adapter-" + d for d in DEPARTMENTS)):
            raise __import__("unittest").SkipTest("the binaries are not built")
        super().setUpClass()
        c = cls.cluster
        cls.dep = td.Deployment(c)
        cls.dep.load_city()
        cls.dep.create_key("departments-e2e")
        cls.city = td.City()
        cls.certs = os.path.join(c.dir, "certs")
        os.makedirs(cls.certs)
        for name in ("dispatcher",) + DEPARTMENTS:
            c.cli("certs", "new", name, "--out", cls.certs)
        for dept in DEPARTMENTS:
            c.cli("adapters", "register", dept, os.path.join(cls.certs, dept + ".cert"))
        env = cls.dep.dispatcher_env("dispatcher", lease_ms=1500, sweep_ms=500)
        env.update({"CIVICBUS_DISPATCHER_CERT": os.path.join(cls.certs, "dispatcher.cert_secret"),
                    "CIVICBUS_HEARTBEAT_MS": "300", "CIVICBUS_ACK_TIMEOUT_MS": "1500"})
        cls.dep.start_dispatcher("dispatcher")
        cls.dep.wait_active("dispatcher")
        cls.dep.start_intake()
        cls.console = cls.start_console()
        cls.sims, cls.adapter_ports = {}, {}
        for dept in DEPARTMENTS:
            cls.sims[dept] = cls.start_sim(dept)
            cls.adapter_ports[dept] = cls.start_adapter(dept)
        with open(os.path.join(harness.CONFIG_DIR, "adapters", "urban.json"),
                  encoding="utf-8") as f:
            cls.urban_table = json.load(f)
        cls.serial = 0

    # ---- the cluster ----

    @classmethod
    def start_console(cls):
        """The console's URL, or None when it is not built (verify, the
        manual dispatch and the extension approval are then skipped)."""
        if not td.have_binaries("civicbus-console"):
            return None
        port = harness.free_port()
        proc = cls.cluster.start("console", env={"CIVICBUS_CONSOLE_LISTEN": f"127.0.0.1:{port}"})
        url = f"http://127.0.0.1:{port}"
        harness.wait_until(lambda: harness.http_request("GET", url + "/healthz").status == 200,
                           20, what="console /healthz")
        # An older console without the actions API answers 404 for the route.
        probe = harness.http_request("POST", url + "/v1/tickets/320105-20260101-000000001/actions",
                                     body={"action": "verify"},
                                     headers={"Authorization": f"Bearer {cls.dep.key}"})
        if probe.status == 404 and b"no such resource" in probe.body:
            proc.stop()
            return None
        return url

    @classmethod
    def start_sim(cls, dept):
        port = harness.free_port()
        cls.adapter_ports[dept] = harness.free_port()
        name = "sim-" + dept
        argv = [sys.executable, SIM, "--dialect", dept, "--listen", f"127.0.0.1:{port}",
                "--adapter-url", f"http://127.0.0.1:{cls.adapter_ports[dept]}",
                "--token", token(dept), "--no-answers", "--answer-retry-s", "30"]
        proc = harness.Proc(name, argv, dict(os.environ),
                            os.path.join(cls.cluster.dir, name + ".log")).start()
        cls.cluster.procs[name] = proc
        url = f"http://127.0.0.1:{port}"
        harness.wait_until(lambda: harness.http_request("GET", url + "/healthz").status == 200,
                           10, what=f"{name} to listen")
        return url

    @classmethod
    def start_adapter(cls, dept):
        port = cls.adapter_ports[dept]
        env = {
            "CIVICBUS_ADAPTER_ID": f"{dept}-e2e",
            "CIVICBUS_ADAPTER_ENDPOINTS": cls.dep.dispatchers["dispatcher"]["CIVICBUS_ADAPTER_BIND"],
            "CIVICBUS_ADAPTER_CERT": os.path.join(cls.certs, dept + ".cert_secret"),
            "CIVICBUS_DISPATCHER_CERT_PUBLIC": os.path.join(cls.certs, "dispatcher.cert"),
            "CIVICBUS_ADAPTER_STATE_DIR": os.path.join(cls.cluster.dir, "state-" + dept),
            "CIVICBUS_ADAPTER_LISTEN": f"127.0.0.1:{port}",
            "CIVICBUS_ADAPTER_MAPPING": os.path.join(harness.CONFIG_DIR, "adapters",
                                                     dept + ".json"),
            "CIVICBUS_HEARTBEAT_MS": "300",
            "CIVICBUS_DEPT_URL": cls.sims[dept] + ORDER_PATH[dept],
            "CIVICBUS_DEPT_TIMEOUT_MS": "10000",
            "CIVICBUS_DEPT_TOKEN": token(dept),
        }
        cls.cluster.start("adapter-" + dept, binary="civicbus-adapter-" + dept, env=env)

        def ready():
            try:
                return harness.http_request("GET", f"http://127.0.0.1:{port}/readyz",
                                            timeout=2).status == 200
            except OSError:
                return False
        harness.wait_until(ready, 20, what=f"adapter-{dept} registered")
        return port

    # ---- helpers ----

    def post(self, category, request_type, description, reporter=REPORTER, area=None):
        type(self).serial += 1
        where = self.city.grid_in(area) if area else \
            self.city.grids[(self.serial * 37) % len(self.city.grids)]
        code, lat, lon = where
        body = {"source": "app", "request_type": request_type, "category": category,
                "description": f"{description}（#{self.serial}）",
                "location": {"lat": lat, "lon": lon, "address": "南京市建邺区江东中路100号"}}
        if reporter:
            body["reporter"] = dict(reporter)
        resp = self.dep.http("POST", "/v1/tickets", body=body)
        self.assertEqual(resp.status, 201, resp)
        return resp.json()["id"], code

    def wait_delivered(self, ticket_id, dept):
        """The dispatch id of `dept`'s order once its system accepted it."""
        r = self.dep.r
        harness.wait_until(lambda: td.dispatch_records(r, ticket_id).get(dept), 20,
                           what=f"{ticket_id} dispatched to {dept}")
        dispatch_id = td.dispatch_records(r, ticket_id)[dept]
        harness.wait_until(lambda: dispatch_id in self.sim_stats(dept)["per_id"]
                           and r("HGET", f"dspd:{td.tag(ticket_id)}:{ticket_id}", dept), 30,
                           what=f"{dispatch_id} delivered to the {dept} system")
        return dispatch_id

    def sim_stats(self, dept):
        return harness.http_request("GET", self.sims[dept] + "/stats").json()

    def order(self, dept, dispatch_id):
        return self.sim_stats(dept)["orders"][dispatch_id]

    def answer(self, dept, dispatch_id, kind, text=None, days=3, expect=200):
        body = {"dispatch_id": dispatch_id, "kind": kind, "days": days}
        if text is not None:
            body["text"] = text
        resp = harness.http_request("POST", self.sims[dept] + "/control/answer", body=body,
                                    timeout=60).json()
        self.assertEqual(resp["status"], expect, (dept, kind, resp))
        return resp["body"]

    def ticket(self, ticket_id):
        """The stored ticket: td.load_ticket plus the fields this test reads."""
        t = td.load_ticket(self.dep.r, ticket_id)
        raw = td.pb_decode(self.dep.r("HGET", f"t:{td.tag(ticket_id)}:{ticket_id}", "pb"))
        t["excluded"] = td._strs(raw, 22)
        t["extension_pending"] = bool(td._i(raw, 24))
        t["extension_days"] = td._i(raw, 25)
        t["deadline_stages"] = [td._i(td.pb_decode(d), 1) for d in raw.get(14, [])]
        return t

    def state(self, ticket_id):
        return td.load_ticket(self.dep.r, ticket_id)["state"]

    def wait_state(self, ticket_id, state):
        harness.wait_until(lambda: self.state(ticket_id) == STATE[state], 20,
                           what=f"{ticket_id} {state}")

    def events(self, ticket_id):
        """[(type, actor id)] of the stored history, oldest first."""
        out = []
        for raw in self.dep.r("LRANGE", f"ev:{td.tag(ticket_id)}:{ticket_id}", 0, -1):
            f = td.pb_decode(raw)
            actor = td.pb_decode(f[4][-1]) if 4 in f else {}
            out.append((td._s(f, 3), td._s(actor, 2)))
        return out

    def types(self, ticket_id):
        return [t for t, _ in self.events(ticket_id)]

    def action(self, ticket_id, body, expect=200):
        resp = harness.http_request("POST", f"{self.console}/v1/tickets/{ticket_id}/actions",
                                    body=body, headers={"Authorization": f"Bearer {self.dep.key}",
                                                        "X-Operator-Name": "duty-operator-liu"})
        self.assertEqual(resp.status, expect, resp)
        return resp

    def in_queue(self, ticket_id):
        return self.dep.r("ZSCORE", f"opq:{td.tag(ticket_id)}", ticket_id) is not None

    def check_routing(self, category, request_type, grid, department, co_handlers=()):
        """The catalogue (independent oracle in test_dispatcher) routes as
        this test assumes."""
        route = self.city.route(category, self.city.path(grid), request_type)
        self.assertEqual((route[0], sorted(route[1])), (department, sorted(co_handlers)), route)

    # ---- the round trip, per department ----

    def round_trip(self, dept):
        category, request_type, description = PLAIN[dept]
        ticket_id, grid = self.post(category, request_type, description)
        self.check_routing(category, request_type, grid, dept)
        dispatch_id = self.wait_delivered(ticket_id, dept)
        self.assertEqual(self.state(ticket_id), STATE["DISPATCHED"])
        self.answer(dept, dispatch_id, "sign")
        self.assertEqual(self.state(ticket_id), STATE["IN_PROGRESS"])
        self.answer(dept, dispatch_id, "progress", "已到现场")
        self.answer(dept, dispatch_id, "resolve", "已处置完毕")
        self.assertEqual(self.state(ticket_id), STATE["RESOLVED"])
        expected = ["received", "accept", "dispatch", "delivered", "sign", "progress", "resolve"]
        if self.console:
            self.action(ticket_id, {"action": "verify", "note": "现场核查已解决"})
            self.assertEqual(self.state(ticket_id), STATE["CLOSED"])
            expected.append("verify")
        else:
            sys.stderr.write("\nNOTE: no console with the actions API: stopping at RESOLVED\n")
        events = self.events(ticket_id)
        self.assertEqual([t for t, _ in events], expected, events)
        self.assertEqual([a for t, a in events if t in ("sign", "progress", "resolve")],
                         [dept] * 3, events)
        self.assertEqual(self.sim_stats(dept)["per_id"][dispatch_id], 1)
        return ticket_id, grid, self.order(dept, dispatch_id)

    def test_a_police_round_trip(self):
        ticket_id, _, order = self.round_trip("police")
        self.assertEqual(order["case_no"], ticket_id)
        self.assertEqual(order["incident_type"], "FIGHT")
        self.assertEqual(order["caller"]["phone"], REPORTER["phone"])

    def test_b_urban_round_trip_carries_gbt30428_codes(self):
        ticket_id, grid, order = self.round_trip("urban")
        category = PLAIN["urban"][0]
        entry = self.urban_table["categories"][category]
        expected_class = self.urban_table["classes"][entry["type"]][entry["class"]]
        g = order["gbt30428"]
        self.assertEqual(g["type"], "event")
        self.assertEqual(g["type_name"], "事件")
        self.assertEqual((g["class_code"], g["class_name"]), (expected_class, "市容环境"))
        self.assertEqual((g["subclass_code"], g["subclass_name"]),
                         (entry["subclass_code"], "暴露垃圾"))
        self.assertTrue(g["subclass_code"].startswith(g["class_code"]))
        self.assertEqual(order["case_no"], ticket_id)
        self.assertEqual(order["role"], "main")
        self.assertEqual(order["grid_code"], grid)
        self.assertEqual(order["grid_path"], self.city.path(grid))
        _, lat, lon = next(x for x in self.city.grids if x[0] == grid)
        self.assertAlmostEqual(order["location"]["lat"], lat, places=6)
        self.assertAlmostEqual(order["location"]["lng"], lon, places=6)
        self.assertEqual(order["location"]["address"], "南京市建邺区江东中路100号")
        # Deadlines travel when the ticket has them (the SLA module arms
        # them; until it does, the dispatcher sends 0 and the case says "").
        self.assertIn("sign_deadline", order)
        self.assertIn("handle_deadline", order)
        if self.ticket(ticket_id)["deadline_stages"]:
            self.assertTrue(order["sign_deadline"] or order["handle_deadline"], order)
        text = json.dumps(order, ensure_ascii=False)
        self.assertNotIn("reporter", order)
        self.assertNotIn(REPORTER["phone"], text)
        self.assertNotIn(REPORTER["name"], text)

    def test_c_civil_round_trip_has_callback_and_no_name(self):
        ticket_id, grid, order = self.round_trip("civil")
        self.assertEqual(order["ticket_no"], ticket_id)
        self.assertEqual(order["service_type"], "SUBSISTENCE")
        self.assertEqual(order["callback"], {"available": True, "phone": REPORTER["phone"]})
        text = json.dumps(order, ensure_ascii=False)
        self.assertNotIn(REPORTER["name"], text)          # also not inside the summary
        self.assertIn("张**", order["summary"])
        self.assertEqual(text.count(REPORTER["phone"]), 1)   # the callback field only
        self.assertEqual(order["area"]["grid_code"], grid)

    # ---- returns ----

    def test_d_police_return_goes_to_the_fallback(self):
        category, request_type, description = PLAIN["police"]
        ticket_id, grid = self.post(category, request_type, description)
        # Without police, no rule routes a fight: the fallback (civil) does.
        route = self.city.route(category, self.city.path(grid), request_type, excluded=("police",))
        self.assertEqual(route[0], "civil")
        police_id = self.wait_delivered(ticket_id, "police")
        self.answer("police", police_id, "return", "经核实为家庭纠纷，请民政调解")
        civil_id = self.wait_delivered(ticket_id, "civil")
        t = self.ticket(ticket_id)
        self.assertEqual(t["department"], "civil")
        self.assertEqual(t["state"], STATE["DISPATCHED"])
        self.assertIn("police", t["excluded"])
        types = self.types(ticket_id)
        self.assertEqual(types[:6], ["received", "accept", "dispatch", "delivered", "return",
                                     "dispatch"], types)
        self.assertEqual(types.count("delivered"), 2)
        self.assertEqual(self.order("civil", civil_id)["ticket_no"], ticket_id)
        # The police may not answer a ticket it handed back.
        self.answer("police", police_id, "sign", expect=409)

    def test_e_return_without_alternative_waits_for_an_operator(self):
        category, request_type, description = PLAIN["civil"]
        ticket_id, grid = self.post(category, request_type, description)
        # Without civil no rule routes it, and the fallback is civil itself.
        route = self.city.route(category, self.city.path(grid), request_type, excluded=("civil",))
        self.assertEqual(route[0], self.city.catalog["fallback"]["department"])
        self.assertEqual(route[0], "civil")
        civil_id = self.wait_delivered(ticket_id, "civil")
        self.answer("civil", civil_id, "sign")
        self.answer("civil", civil_id, "return", "不符合低保申请条件，建议转住建")
        self.wait_state(ticket_id, "RETURNED")
        harness.wait_until(lambda: self.ticket(ticket_id)["needs_review"]
                           and self.in_queue(ticket_id), 20,
                           what=f"{ticket_id} in the operators' queue")
        self.assertEqual(td.dispatch_records(self.dep.r, ticket_id), {})
        self.assertEqual(self.types(ticket_id)[-1], "return")
        if not self.console:
            sys.stderr.write("\nNOTE: no console: the manual dispatch is not tested\n")
            return
        self.action(ticket_id, {"action": "dispatch", "department": "urban"})
        urban_id = self.wait_delivered(ticket_id, "urban")
        self.assertTrue(urban_id.startswith(ticket_id + "/urban/"), urban_id)
        self.assertEqual(self.state(ticket_id), STATE["DISPATCHED"])
        harness.wait_until(lambda: not self.in_queue(ticket_id), 20,
                           what=f"{ticket_id} out of the operators' queue")

    # ---- extension ----

    def test_f_extension_request_is_pending(self):
        category, request_type, description = PLAIN["urban"]
        ticket_id, _ = self.post(category, request_type, description)
        dispatch_id = self.wait_delivered(ticket_id, "urban")
        self.answer("urban", dispatch_id, "sign")
        self.answer("urban", dispatch_id, "extension", "垃圾量大需协调环卫车辆", days=5)
        t = self.ticket(ticket_id)
        self.assertEqual(t["state"], STATE["IN_PROGRESS"])
        self.assertTrue(t["extension_pending"])
        self.assertEqual(t["extension_days"], 5)
        self.assertEqual(self.events(ticket_id)[-1], ("request_extension", "urban"))
        # A second request while one is pending is the state machine's to refuse.
        if self.console:
            self.action(ticket_id, {"action": "approve_extension"})
            self.assertFalse(self.ticket(ticket_id)["extension_pending"])
            self.assertEqual(self.types(ticket_id)[-1], "approve_extension")
        self.answer("urban", dispatch_id, "resolve", "已清运")
        self.assertEqual(self.state(ticket_id), STATE["RESOLVED"])

    # ---- co-handled ----

    def test_g_co_handled_ticket(self):
        category, request_type, description = CO_HANDLED
        ticket_id, grid = self.post(category, request_type, description)
        self.check_routing(category, request_type, grid, "urban", ["police"])
        urban_id = self.wait_delivered(ticket_id, "urban")
        police_id = self.wait_delivered(ticket_id, "police")
        self.assertEqual(self.order("urban", urban_id)["role"], "main")
        self.assertIs(self.order("police", police_id)["lead"], False)
        self.assertEqual(self.order("urban", urban_id)["gbt30428"]["class_name"], "突发事件")

        self.answer("police", police_id, "sign", "民警已到场维持秩序")
        self.assertEqual(self.state(ticket_id), STATE["DISPATCHED"])   # the co-handler's sign
        self.answer("urban", urban_id, "sign")
        self.assertEqual(self.state(ticket_id), STATE["IN_PROGRESS"])
        self.answer("police", police_id, "progress", "已设置警戒线")
        self.answer("police", police_id, "resolve", "交通疏导完毕")
        self.assertEqual(self.state(ticket_id), STATE["IN_PROGRESS"])  # only the primary resolves
        self.answer("urban", urban_id, "resolve", "已回填修复")
        self.assertEqual(self.state(ticket_id), STATE["RESOLVED"])
        events = self.events(ticket_id)
        answers = [e for e in events if e[0] in ("sign", "progress", "resolve")]
        self.assertEqual(answers, [("sign", "police"), ("sign", "urban"), ("progress", "police"),
                                   ("resolve", "police"), ("resolve", "urban")], events)
        self.assertEqual(self.types(ticket_id).count("delivered"), 2)
        self.assertEqual(self.ticket(ticket_id)["department"], "urban")

    # ---- last: the adapters stop cleanly (exit 0: under ASan, no leak) ----

    # ---- after closing: follow-up and rework ----

    def test_h_follow_up_and_reopen_count_rework(self):
        if not self.console:
            self.skipTest("no console with the actions API")
        ticket_id, _, _ = self.round_trip("police")
        dispatch_id = td.dispatch_records(self.dep.r, ticket_id).get("police") or \
            next(i for i in self.sim_stats("police")["per_id"] if i.startswith(ticket_id + "/"))
        # The five-level satisfaction scale: 0 and 6 are refused, nothing stored.
        for bad in (0, 6):
            resp = self.action(ticket_id, {"action": "follow_up", "satisfaction": bad}, expect=409)
            self.assertEqual(resp.json()["error"]["code"], "bad_value")
        self.assertNotIn("follow_up", self.types(ticket_id))
        self.action(ticket_id, {"action": "follow_up", "satisfaction": 2, "note": "回访：不满意"})
        raw = td.pb_decode(self.dep.r("HGET", f"t:{td.tag(ticket_id)}:{ticket_id}", "pb"))
        self.assertEqual(td._i(raw, 29), 2)
        # The reporter was not satisfied: reopen (重办) from CLOSED counts rework.
        self.action(ticket_id, {"action": "reopen", "reason": "回访不满意，问题仍在"})
        self.assertEqual(self.state(ticket_id), STATE["IN_PROGRESS"])
        raw = td.pb_decode(self.dep.r("HGET", f"t:{td.tag(ticket_id)}:{ticket_id}", "pb"))
        self.assertEqual(td._i(raw, 16), 1)          # rework_count
        self.assertEqual(td._i(raw, 29), 0)          # satisfaction starts over
        # The same department works it again and the loop closes again.
        self.answer("police", dispatch_id, "resolve", "再次处置，已调解完毕")
        self.assertEqual(self.state(ticket_id), STATE["RESOLVED"])
        self.action(ticket_id, {"action": "verify", "note": "复核已解决"})
        self.assertEqual(self.state(ticket_id), STATE["CLOSED"])
        types = self.types(ticket_id)
        self.assertEqual(types[-4:], ["follow_up", "reopen", "resolve", "verify"], types)
        self.assertEqual(types.count("reopen"), 1)
        self.assertEqual(types.count("verify"), 2)
        self.assertEqual(types[types.index("reopen") - 1], "follow_up")
        # The operator's name is in the history of each action.
        for raw_ev in self.dep.r("LRANGE", f"ev:{td.tag(ticket_id)}:{ticket_id}", 0, -1):
            f = td.pb_decode(raw_ev)
            if td._s(f, 3) in ("verify", "reopen", "follow_up"):
                actor = td.pb_decode(f[4][-1])
                self.assertEqual(td._s(actor, 3), "duty-operator-liu")

    # ---- a merged report's reporter hears the parent's outcome ----

    def start_notifier(self):
        sms = Receiver("sms")
        config = {"sms": {"url": sms.url, "token": "e2e-sms-token"}}
        path = os.path.join(self.cluster.dir, "notifier-e2e.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False)
        proc = self.cluster.start("notifier", binary="civicbus-notifier", env={
            "CIVICBUS_NOTIFIER_CONFIG": path,
            "CIVICBUS_NOTIFIER_BIND": "",
            "CIVICBUS_NOTIFIER_POLL_MS": "50",
            "CIVICBUS_NOTIFIER_BACKOFF_MS": "40",
            "CIVICBUS_NOTIFIER_BACKOFF_MAX_MS": "300",
        })
        harness.wait_until(lambda: any(m.get("msg") == "ready" for m in log_messages(proc)),
                           20, what="notifier ready")
        return sms, proc

    def test_i_merged_reporter_hears_the_parents_outcome(self):
        if not self.console or not td.have_binaries("civicbus-notifier"):
            self.skipTest("needs the console and the notifier")
        sms, notifier = self.start_notifier()
        try:
            category, request_type, description = PLAIN["police"]
            parent, _ = self.post(category, request_type, description,
                                  reporter={"name": "李四", "phone": "13911112222"})
            child, _ = self.post(category, request_type, "同一起打架，又有人报警",
                                 reporter={"name": "王五", "phone": "13733334444"})
            dispatch_id = self.wait_delivered(parent, "police")
            self.wait_delivered(child, "police")
            # The operator merges the second report into the first (并单).
            self.action(child, {"action": "merge", "into": parent})
            self.assertEqual(self.state(child), 10)                       # MERGED
            self.assertIn("merged_from", self.types(parent))
            self.answer("police", dispatch_id, "sign")
            self.answer("police", dispatch_id, "resolve", "双方已调解，秩序恢复")
            self.action(parent, {"action": "verify", "note": "核查属实"})

            def texts_to(phone):
                return [json.loads(c["body"]).get("text", "") for c in sms.calls
                        if c["ok"] and json.loads(c["body"]).get("phone") == phone]
            # Both reporters hear the resolution and the closure of the parent.
            harness.wait_until(lambda: len(texts_to("13733334444")) >= 2, 30,
                               what="the merged reporter's SMS")
            child_texts = texts_to("13733334444")
            self.assertTrue(any(parent in t for t in child_texts), child_texts)
            harness.wait_until(lambda: len(texts_to("13911112222")) >= 2, 30,
                               what="the parent's reporter's SMS")
            # Each outcome reaches the merged reporter once (delivery ids differ).
            dids = [c["did"] for c in sms.calls if c["ok"]
                    and json.loads(c["body"]).get("phone") == "13733334444"]
            self.assertEqual(len(dids), len(set(dids)), dids)
        finally:
            notifier.stop()
            sms.close()

    def test_z_adapters_stop_cleanly_on_sigterm(self):
        for dept in DEPARTMENTS:
            proc = self.cluster.procs["adapter-" + dept]
            self.assertTrue(proc.alive(), dept)
            self.assertEqual(proc.stop(), 0, proc.log()[-3000:])


if __name__ == "__main__":
    harness.main()
