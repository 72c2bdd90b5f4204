"""test_dispatch_faults.py — crash the dispatcher and an intake under load.

While a load generator (threads, 5,000 tickets, bounded time) posts tickets
to two intake processes that share one port (SO_REUSEPORT), the dispatcher
is SIGKILLed twice and one intake once, and each is restarted. Afterwards
(waiting with a deadline):
- every ticket that got a 201/200 exists and is DISPATCHED exactly once: one
  "accept" and one "dispatch" event in its history, one set of dispatch
  records (dsp) for the department and co-handlers the catalogue names;
- every inbox is empty;
- no ticket exists that the client was not told about, except those whose
  answer was lost in a kill: the client records connection errors and 5xx
  answers as "unknown", and stored tickets <= acknowledged + unknown.
"""
import http.client
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_dispatcher as td  # noqa: E402

TOTAL = int(os.environ.get("CIVICBUS_FAULT_TICKETS", "5000"))
THREADS = 8


class LoadGenerator:
    """Posts TOTAL tickets from THREADS threads; records each outcome."""

    def __init__(self, port, key, city, deadline_s):
        self.port, self.key, self.city = port, key, city
        self.deadline = time.monotonic() + deadline_s
        self.lock = threading.Lock()
        self.next_index = 0
        self.acked = {}            # index -> ticket id
        self.refused = {}          # index -> status (4xx: nothing stored)
        self.unknown = {}          # index -> error text (answer lost)
        rng = random.Random(20261129)
        cats = list(city.categories)
        self.plan = []
        for i in range(TOTAL):
            code, lat, lon = rng.choice(city.grids)
            category = rng.choice(cats)
            rt = rng.choice(city.request_types(category))
            self.plan.append((category, rt, lat, lon, code))

    def done_count(self):
        with self.lock:
            return len(self.acked) + len(self.refused) + len(self.unknown)

    def _take(self):
        with self.lock:
            if self.next_index >= TOTAL or time.monotonic() > self.deadline:
                return None
            i = self.next_index
            self.next_index += 1
            return i

    def _post(self, i):
        category, rt, lat, lon, _ = self.plan[i]
        body = ('{"source":"app","request_type":"%s","category":"%s","description":'
                '"fault test %d","location":{"lat":%.7f,"lon":%.7f}}'
                % (rt, category, i, lat, lon)).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30 * harness.SLOW)
        try:
            conn.request("POST", "/v1/tickets", body=body, headers={
                "Authorization": f"Bearer {self.key}", "Content-Type": "application/json",
                "Idempotency-Key": f"fault-{os.getpid()}-{i}"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status in (200, 201):
                ticket_id = td.ticket_id_of(harness.Response(resp.status, [], data))
                with self.lock:
                    self.acked[i] = ticket_id
            elif resp.status < 500:
                with self.lock:
                    self.refused[i] = resp.status
            else:
                with self.lock:
                    self.unknown[i] = f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as e:
            with self.lock:
                self.unknown[i] = repr(e)
        finally:
            conn.close()

    def _worker(self):
        while (i := self._take()) is not None:
            self._post(i)

    def run(self):
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(THREADS)]
        for t in threads:
            t.start()
        return threads


class DispatchFaults(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        if not td.have_binaries("civicbus", "civicbus-intake", "civicbus-dispatcher"):
            raise __import__("unittest").SkipTest("civicbus, civicbus-intake or "
                                                  "civicbus-dispatcher is not built")
        super().setUpClass()
        cls.city = td.City()
        cls.d = td.Deployment(cls.cluster)
        cls.d.load_city()
        cls.d.create_key()

    def _start_second_intake(self, d):
        proc = self.cluster.start("intake2", binary="civicbus-intake", env={
            "CIVICBUS_INTAKE_LISTEN": f"127.0.0.1:{d.intake_port}",
            "CIVICBUS_INTAKE_THREADS": "4",
            "CIVICBUS_INTAKE_PER_IP_LIMIT": "0",
            "CIVICBUS_DOORBELL_ENDPOINTS": d.doorbell_endpoints(),
        })
        pid = proc.popen.pid
        harness.wait_until(lambda: any(m.get("msg") == "ready" and m.get("pid") == pid
                                       for m in td.log_messages(proc)),
                           20, what="intake2 ready")
        return proc

    def test_kills_lose_nothing_and_dispatch_once(self):
        d, r = self.d, self.d.r
        d.dispatcher_env("dispatcher", lease_ms=1500, sweep_ms=500)
        dispatcher = d.start_dispatcher("dispatcher")
        d.wait_active("dispatcher")
        d.start_intake("intake")
        intake2 = self._start_second_intake(d)

        load = LoadGenerator(d.intake_port, d.key, self.city, deadline_s=240 * harness.SLOW)
        threads = load.run()

        def at(fraction):
            harness.wait_until(lambda: load.done_count() >= fraction * TOTAL or
                               not any(t.is_alive() for t in threads),
                               300, interval=0.05, what=f"{fraction:.0%} of the load")

        # the chaos, spread over the run
        at(0.15)
        dispatcher.kill9()
        at(0.22)
        dispatcher = d.start_dispatcher("dispatcher")
        at(0.40)
        intake2.kill9()
        at(0.47)
        intake2 = self._start_second_intake(d)
        at(0.62)
        dispatcher.kill9()
        at(0.70)
        dispatcher = d.start_dispatcher("dispatcher")

        for t in threads:
            t.join(timeout=600 * harness.SLOW)
        self.assertFalse(any(t.is_alive() for t in threads), "load generator finished")
        acked, unknown = load.acked, load.unknown
        sys.stderr.write(f"\nload: {len(acked)} acknowledged, {len(load.refused)} refused, "
                         f"{len(unknown)} unknown of {TOTAL}\n")
        self.assertEqual(len(load.refused), 0, f"refusals: {list(load.refused.items())[:5]}")
        self.assertGreater(len(acked), TOTAL * 0.9, "most requests were answered")
        self.assertEqual(len(set(acked.values())), len(acked), "one ticket per request")

        # every inbox drains and every acknowledged ticket is DISPATCHED
        def drained():
            return all(r("ZCARD", "inbox:{b%02d}" % b) == 0 for b in range(64))
        harness.wait_until(drained, 120, interval=0.2, what="every inbox to drain")
        not_dispatched = [tid for tid in acked.values()
                          if r("HGET", f"t:{td.tag(tid)}:{tid}", "st") != b"3"]
        self.assertEqual(not_dispatched, [], "acknowledged tickets not DISPATCHED")

        for i, tid in acked.items():
            category, rt, _, _, code = load.plan[i]
            t = td.load_ticket(r, tid)
            events = [e["type"] for e in td.history(r, tid)]
            self.assertEqual(events, ["received", "accept", "dispatch"], tid)
            department, co, policy = self.city.route(category, self.city.path(code), rt)
            self.assertEqual((t["department"], sorted(t["co_handlers"]), t["policy"]),
                             (department, sorted(co), policy), tid)
            records = td.dispatch_records(r, tid)
            self.assertEqual(records, {dept: f"{tid}/{dept}/{t['version']}"
                                       for dept in [department] + co}, tid)
            self.assertEqual(td.queued_orders(r, tid), sorted([department] + co), tid)

        # nothing stored that the client was not told about, except lost answers
        stored = {k.decode().split(":", 2)[2] for k in r.scan_keys("t:*")}
        self.assertTrue(set(acked.values()) <= stored)
        extra = stored - set(acked.values())
        self.assertLessEqual(len(extra), len(unknown),
                             f"{len(extra)} tickets stored beyond {len(unknown)} lost answers")
        for tid in extra:      # those were handled too
            self.assertEqual(r("HGET", f"t:{td.tag(tid)}:{tid}", "st"), b"3", tid)

        # the dispatcher restarted twice and holds the lease again; it stops cleanly
        self.assertEqual(td.lease_holder(r), d.dispatchers["dispatcher"]["CIVICBUS_DISPATCHER_ID"])
        self.assertEqual(dispatcher.stop(), 0, "dispatcher clean stop")


if __name__ == "__main__":
    harness.main()
