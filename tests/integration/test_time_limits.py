"""test_time_limits.py — time limits live, with a clock the test controls
(CIVICBUS_CLOCK_FILE for the intake, dispatcher, notifier and console):

- a ticket nobody signs turns yellow at the warning share, red at the due
  instant with an "overdue" event, and climbs the ladder of the shipped
  policies (deploy/config/sla.json: yellow card, then red cards, community
  -> street -> district) across the National Day holiday; the supervisors'
  webhook receives exactly one alert per step (counted by delivery id and
  by step), each rung's supervisor exactly one SMS, and the department one
  reminder (催办) for the warning;
- an operator's approve_extension (console) moves the resolve deadline by
  exactly the working days approved, and re-arms its timers;
- approve_suspension stops the clock (no timers, what was left kept) and
  resume restarts it with that much working time left.

The extension and suspension tickets are written IN_PROGRESS with the
store's layout (ticket_store.h) and a pending request, the state a
department's request leaves (tests/integration/test_department_protocol.py
drives that part through a real adapter).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_dispatcher as td  # noqa: E402
from test_notifier import Receiver, SMS_TOKEN, WEBHOOK_SECRET  # noqa: E402

SIGN, RESOLVE = 2, 3
GREEN, YELLOW, RED = 0, 1, 2
IN_PROGRESS, SUSPENDED = 4, 9
PHONES = {1: "13900000001", 2: "13900000002", 3: "13900000003", 4: "13900000004"}
DEPT_PHONE = "13900000099"
CATEGORY = "police.traffic.congestion"     # police.* report -> standard-5d


def iso_ms(text):
    """ms of an ISO time with an explicit offset."""
    from datetime import datetime
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def deadlines(t_pb):
    f = td.pb_decode(t_pb)
    out = {}
    for raw in f.get(14, []):
        d = td.pb_decode(raw)
        out[td._i(d, 1)] = {"due": td._i(d, 2), "warn": td._i(d, 3), "started": td._i(d, 4),
                            "remaining": _signed(td._i(d, 5)), "finished": td._i(d, 6)}
    return out


def _signed(v):
    return v - (1 << 64) if v and v >= (1 << 63) else (v or 0)


def ticket_fields(r, ticket_id):
    pb = r("HGET", f"t:{td.tag(ticket_id)}:{ticket_id}", "pb")
    f = td.pb_decode(pb)
    return {"state": td._i(f, 11), "light": td._i(f, 27) or 0,
            "level": td._i(f, 15) or 0, "deadlines": deadlines(pb), "version": td._i(f, 17)}


def timers_of(r, ticket_id):
    t = td.tag(ticket_id)
    armed = [m.decode() for m in r("ZRANGE", f"tmr:{t}", 0, -1) if m.decode().startswith(ticket_id)]
    flying = [m.decode() for m in r("ZRANGE", f"tmrf:{t}", 0, -1)
              if m.decode().startswith(ticket_id)]
    return armed, flying


class TimeLimits(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        if not td.have_binaries("civicbus", "civicbus-intake", "civicbus-dispatcher",
                                "civicbus-notifier", "civicbus-console"):
            raise __import__("unittest").SkipTest("binaries not built")
        super().setUpClass()
        c = cls.cluster
        cls.r = c.redis()
        cls.clock_file = os.path.join(c.dir, "clock-offset")
        cls.set_clock("2026-09-29T10:00:00+08:00")       # a Tuesday, a working day
        cls.dep = td.Deployment(c)
        cls.dep.load_city()
        c.cli("sla", "load", os.path.join(harness.CONFIG_DIR, "sla.json"))
        cls.dep.create_key("time-limits")
        cp = c.cli("keys", "create", "--name", "ops-wang", "--role", "operator", "--quiet")
        cls.ops_key = cp.stdout.strip().splitlines()[-1].replace("key: ", "").strip()
        clock = {"CIVICBUS_CLOCK_FILE": cls.clock_file}

        cls.webhook = Receiver("webhook")
        cls.sms = Receiver("sms")
        config = {
            "sms": {"url": cls.sms.url, "token": SMS_TOKEN},
            "departments": {"police": {"name": "公安分局", "phone": DEPT_PHONE}},
            "supervisors": [{"name": f"level-{lvl}", "level": lvl, "area": "",
                             "phone": phone} for lvl, phone in PHONES.items()],
            "webhooks": [{"name": "supervision", "url": cls.webhook.url, "secret": WEBHOOK_SECRET,
                          "events": ["warning", "overdue", "escalate"]}],
        }
        path = os.path.join(c.dir, "notifier.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False)
        c.start("notifier", env=dict(clock, **{
            "CIVICBUS_NOTIFIER_CONFIG": path, "CIVICBUS_NOTIFIER_POLL_MS": "50",
            "CIVICBUS_NOTIFIER_BACKOFF_MS": "40", "CIVICBUS_NOTIFIER_BACKOFF_MAX_MS": "300"}))
        env = cls.dep.dispatcher_env("dispatcher")
        env.update(clock)
        env["CIVICBUS_TIMER_MS"] = "50"
        cls.dispatcher = cls.dep.start_dispatcher("dispatcher")
        cls.dep.wait_active("dispatcher")
        # The intake with the clock: the ticket is received "on Tuesday".
        cls.dep.intake_port = harness.free_port()
        c.start("intake", env=dict(clock, **{
            "CIVICBUS_INTAKE_LISTEN": f"127.0.0.1:{cls.dep.intake_port}",
            "CIVICBUS_INTAKE_PER_IP_LIMIT": "0",
            "CIVICBUS_DOORBELL_ENDPOINTS": cls.dep.doorbell_endpoints()}))
        console_port = harness.free_port()
        c.start("console", env=dict(clock, **{
            "CIVICBUS_CONSOLE_LISTEN": f"127.0.0.1:{console_port}",
            "CIVICBUS_CITYDATA_REFRESH_MS": "200"}))
        cls.console = f"http://127.0.0.1:{console_port}"
        for url in (f"http://127.0.0.1:{cls.dep.intake_port}", cls.console):
            harness.wait_until(lambda: harness.http_request("GET", url + "/healthz").status
                               == 200, 30, what=url + " /healthz")
        cls.city = td.City()

    @classmethod
    def tearDownClass(cls):
        for x in ("webhook", "sms"):
            if getattr(cls, x, None):
                getattr(cls, x).close()
        super().tearDownClass()

    @classmethod
    def set_clock(cls, iso, settle=True):
        """Moves every service's clock so that "now" is `iso` (and runs on)."""
        offset = iso_ms(iso) - int(time.time() * 1000)
        tmp = cls.clock_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(offset))
        os.replace(tmp, cls.clock_file)
        # clock.h: a service looks at the file at most every 50 ms, so an
        # action sent right now could still see the old time. Wait out that
        # window (a property of the clock, not a guess at a service's speed).
        t0 = time.monotonic()
        if settle:
            harness.wait_until(lambda: time.monotonic() - t0 > 0.12, 5, what="clock file window")

    @classmethod
    def clock_now_ms(cls):
        with open(cls.clock_file) as f:
            return int(time.time() * 1000) + int(f.read())

    def types(self, ticket_id):
        return [e["type"] for e in td.history(self.r, ticket_id)]

    def wait_event(self, ticket_id, kind, count=1, timeout=20):
        harness.wait_until(lambda: self.types(ticket_id).count(kind) >= count, timeout,
                           what=f"{count} '{kind}' on {ticket_id}")

    def wait_notifier_idle(self):
        def idle():
            n = 0
            for b in range(64):
                n += self.r("ZCARD", "ntfq:{b%02d}" % b) + self.r("ZCARD", "dlvq:{b%02d}" % b)
            return n == 0
        harness.wait_until(idle, 30, what="the notifier's queues to drain")

    # ---- a ticket nobody signs --------------------------------------------------

    def test_a_unsigned_ticket_climbs_the_ladder(self):
        code, lat, lon = self.city.grids[0]
        resp = self.dep.http("POST", "/v1/tickets", body={
            "source": "app", "request_type": "report", "category": CATEGORY,
            "description": "路口信号灯坏了，一直堵车", "location": {"lat": lat, "lon": lon}})
        self.assertEqual(resp.status, 201, resp)
        tid = resp.json()["id"]
        harness.wait_until(lambda: ticket_fields(self.r, tid)["state"] == 3, 20,
                           what=f"{tid} DISPATCHED")
        t = ticket_fields(self.r, tid)
        sign = t["deadlines"][SIGN]
        created = sign["started"]
        # 1 working day on Tuesday 10:00 -> Wednesday, same time; warn at 80 %
        # (5.6 working hours): Wednesday 08:36.
        self.assertAlmostEqual(sign["due"] - created, 24 * 3600 * 1000, delta=60000)
        self.assertEqual(sign["due"] - sign["warn"], int(1.4 * 3600 * 1000))
        self.assertEqual(t["light"], GREEN)
        armed, _ = timers_of(self.r, tid)
        self.assertEqual(sorted(m.split("|")[2] for m in armed),
                         ["due", "escalate-1", "escalate-2", "escalate-3", "warn"])
        # The ticket JSON shows the deadline.
        j = self.dep.http("GET", f"/v1/tickets/{tid}").json()
        self.assertEqual([d["stage"] for d in j["deadlines"]], ["sign"])
        self.assertTrue(j["deadlines"][0]["due"].startswith("2026-09-30T10:0"), j["deadlines"])
        self.assertEqual(j["light"], "green")

        def step(iso, kind, count=1):
            real0 = time.monotonic()
            self.set_clock(iso, settle=False)
            self.wait_event(tid, kind, count)
            return (time.monotonic() - real0) * 1000

        lateness = [step("2026-09-30T08:40:00+08:00", "warning")]
        t = ticket_fields(self.r, tid)
        self.assertEqual((t["light"], t["level"]), (YELLOW, 0))
        self.assertNotIn("overdue", self.types(tid))

        lateness.append(step("2026-09-30T10:05:00+08:00", "escalate"))
        self.wait_event(tid, "overdue")
        t = ticket_fields(self.r, tid)
        self.assertEqual((t["light"], t["level"]), (RED, 1))

        # Step 2 is 1 working day after due: the National Day week does not
        # count, so nothing happens on 7 October ...
        self.set_clock("2026-10-07T18:00:00+08:00")
        self.wait_notifier_idle()
        self.assertEqual(self.types(tid).count("escalate"), 1)
        # ... and it comes on Thursday 8 October; step 3 (3 working days)
        # on the adjusted working Saturday, 10 October.
        lateness.append(step("2026-10-08T10:05:00+08:00", "escalate", 2))
        self.assertEqual(ticket_fields(self.r, tid)["level"], 2)
        lateness.append(step("2026-10-10T10:05:00+08:00", "escalate", 3))
        t = ticket_fields(self.r, tid)
        self.assertEqual((t["light"], t["level"], t["state"]), (RED, 3, 3))
        harness.wait_until(lambda: timers_of(self.r, tid) == ([], []), 10,
                           what="every timer of the ticket fired")
        self.set_clock("2026-10-30T10:00:00+08:00")
        self.wait_notifier_idle()
        types = self.types(tid)
        self.assertEqual((types.count("warning"), types.count("overdue"), types.count("escalate")),
                         (1, 1, 3), types)
        payloads = [json.loads(e["payload"]) for e in td.history(self.r, tid)
                    if e["type"] == "escalate"]
        self.assertEqual([(p["escalation_level"], p["card"], p["notify"], p["level"])
                          for p in payloads],
                         [(1, "yellow", "community", 2), (2, "red", "street", 3),
                          (3, "red", "district", 4)])

        # The supervisors' webhook: one delivery per step, no id twice.
        calls = [json.loads(c["body"]) for c in self.webhook.delivered()
                 if json.loads(c["body"])["event"]["ticket_id"] == tid]
        ids = [c["delivery_id"] for c in calls]
        self.assertEqual(len(ids), len(set(ids)), ids)
        steps = sorted((c["event"]["type"],
                        (c["event"].get("payload") or {}).get("escalation_level", 0))
                       for c in calls)
        self.assertEqual(steps, [("escalate", 1), ("escalate", 2), ("escalate", 3),
                                 ("overdue", 0), ("warning", 0)])
        # Each rung's supervisor heard once: grid of the overdue, then
        # community, street, district; the department one reminder.
        texts = {}
        for c in self.sms.delivered():
            body = json.loads(c["body"])
            if tid in body["text"]:
                texts.setdefault(body["phone"], []).append(body["template"])
        self.assertEqual({p: len(v) for p, v in texts.items()},
                         {PHONES[1]: 1, PHONES[2]: 1, PHONES[3]: 1, PHONES[4]: 1, DEPT_PHONE: 1},
                         texts)
        # Lateness after the jump, from the dispatcher's own numbers:
        # late_ms (its clock) minus how far past the instant the jump landed.
        events = {e["type"]: json.loads(e["payload"]) for e in td.history(self.r, tid)
                  if e["type"] in ("warning", "overdue")}
        after_jump = [events["warning"]["late_ms"] - (iso_ms("2026-09-30T08:40:00+08:00") - sign["warn"]),
                      events["overdue"]["late_ms"] - (iso_ms("2026-09-30T10:05:00+08:00") - sign["due"])]
        sys.stderr.write("time-limits: clock jump -> event seen by the test (real ms): %s; "
                         "fired after the jump (dispatcher, ms): %s\n"
                         % (", ".join("%.0f" % x for x in lateness), after_jump))

    # ---- extension and suspension through the console ------------------------

    def seed_in_progress(self, n, extension_days=0, suspension=False):
        """An IN_PROGRESS police ticket signed at 2026-09-29T10:00 (resolve:
        5 working days) with its timers armed, as the store would hold it."""
        tid = "320105-20260929-%09d" % (900000 + n * 64 + n)
        started = iso_ms("2026-09-29T10:00:00+08:00")
        due = iso_ms("2026-10-12T10:00:00+08:00")    # 5 working days, holidays skipped
        warn = iso_ms("2026-10-09T10:00:00+08:00")   # 4 working days: 80 %
        deadline = (td.pb_int(1, RESOLVE) + td.pb_int(2, due) + td.pb_int(3, warn) +
                    td.pb_int(4, started))
        pb = (td.pb_bytes(1, tid) + td.pb_int(2, 3) + td.pb_bytes(5, CATEGORY) +
              td.pb_bytes(7, "信号灯坏了") + td.pb_int(11, IN_PROGRESS) + td.pb_bytes(12, "police") +
              td.pb_bytes(14, deadline) + td.pb_int(17, 1) + td.pb_int(18, started) +
              td.pb_int(19, started) + td.pb_bytes(30, "standard-5d"))
        if extension_days:
            pb += td.pb_int(24, 1) + td.pb_int(25, extension_days)
        if suspension:
            pb += td.pb_int(26, 1)
        tag = td.tag(tid)
        self.r("HSET", f"t:{tag}:{tid}", "pb", pb, "v", 1, "st", IN_PROGRESS)
        for kind, at in (("warn", warn), ("due", due)):
            self.r("ZADD", f"tmr:{tag}", at, f"{tid}|resolve|{kind}|{due}")
        return tid, due

    def act(self, tid, action, **fields):
        body = dict(fields, action=action)
        resp = harness.http_request("POST", f"{self.console}/v1/tickets/{tid}/actions",
                                    body=body, headers={"Authorization": f"Bearer {self.ops_key}"})
        self.assertEqual(resp.status, 200, resp)
        return resp.json()

    def calendar_due(self, start_ms, unit, amount):
        start = time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(start_ms / 1000 + 8 * 3600))
        out = self.cluster.cli("calendar", "due", "--start", start, unit, str(amount)).stdout
        return iso_ms(out.strip().splitlines()[-1].split()[-1])

    def test_b_extension_moves_the_resolve_deadline(self):
        self.set_clock("2026-10-09T11:00:00+08:00")
        tid, due = self.seed_in_progress(1, extension_days=3)
        self.act(tid, "approve_extension")
        t = ticket_fields(self.r, tid)
        new_due = t["deadlines"][RESOLVE]["due"]
        self.assertEqual(new_due, self.calendar_due(due, "--working-days", 3))
        self.assertEqual(new_due, iso_ms("2026-10-15T10:00:00+08:00"))
        self.assertEqual(t["light"], GREEN)
        armed, _ = timers_of(self.r, tid)
        self.assertTrue(armed and all(m.endswith(f"|{new_due}") for m in armed), armed)
        self.assertIn(f"{tid}|resolve|due|{new_due}", armed)
        # The ticket as the console shows it.
        j = harness.http_request("GET", f"{self.console}/v1/tickets/{tid}",
                                 headers={"Authorization": f"Bearer {self.ops_key}"}).json()
        ticket = j.get("ticket", j)
        self.assertTrue(ticket["deadlines"][0]["due"].startswith("2026-10-15T10:00"), ticket)

    def test_c_suspension_stops_the_clock_and_resume_restarts_it(self):
        paused_at = "2026-10-09T11:00:00+08:00"
        self.set_clock(paused_at)
        tid, due = self.seed_in_progress(2, suspension=True)
        self.act(tid, "approve_suspension")
        t = ticket_fields(self.r, tid)
        self.assertEqual(t["state"], SUSPENDED)
        d = t["deadlines"][RESOLVE]
        self.assertEqual(d["due"], 0)
        # Friday 11:00 -> Monday 12 October 10:00: 4.5 + 7 (adjusted Saturday)
        # + 1.5 = 13 working hours left.
        self.assertAlmostEqual(d["remaining"], 13 * 3600 * 1000, delta=20000)
        self.assertEqual(timers_of(self.r, tid), ([], []))
        # A week later nothing has fired; resume restarts with what was left.
        self.set_clock("2026-10-19T09:00:00+08:00")
        self.resumed_ms = self.clock_now_ms()
        self.act(tid, "resume")
        t = ticket_fields(self.r, tid)
        self.assertEqual(t["state"], IN_PROGRESS)
        d2 = t["deadlines"][RESOLVE]
        resumed = d2["due"]
        self.assertGreater(resumed, due)
        self.assertEqual(d2["started"], d["started"])
        # What was left, counted from the resume instant on the calendar:
        # Monday 09:00 + 13 working hours -> Tuesday 20 October 17:00.
        expected = self.calendar_due(self.resumed_ms, "--working-hours",
                                     d["remaining"] / 3600000.0)
        self.assertLess(abs(resumed - expected), 2000, (resumed, expected))
        self.assertLess(abs(resumed - iso_ms("2026-10-20T17:00:00+08:00")), 30000)
        armed, _ = timers_of(self.r, tid)
        self.assertIn(f"{tid}|resolve|due|{resumed}", armed)
        self.assertNotIn("warning", self.types(tid))


if __name__ == "__main__":
    harness.main()
