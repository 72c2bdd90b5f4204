"""test_sensors.py — sensor and camera events (POST /v1/events) with real
Redis, intake(s) and dispatcher.

Cases: 100,000 events of one type at one place within a minute, sent in
batches of 1,000 from several threads to two intakes, fold into one ticket
whose count is exactly 100,000 (in Redis and on the ticket); events 1 km
apart make two tickets; a bad event is rejected alone; an event below its
type's confidence threshold opens a ticket the dispatcher leaves in the
operators' queue; once a fold's ticket is rejected (console), the next
event nearby opens a new ticket.
"""
import concurrent.futures
import datetime
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from doors import LAT, LON, DoorsDeployment, have_binaries  # noqa: E402

TZ = datetime.timezone(datetime.timedelta(hours=8))


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, TZ).isoformat(timespec="milliseconds")


def event(kind="illegal_parking", lat=LAT, lon=LON, confidence=0.95, ts=None, device="cam-1"):
    return {"type": kind, "location": {"lat": lat, "lon": lon}, "confidence": confidence,
            "time": iso(ts if ts is not None else time.time()), "device_id": device}


class Sensors(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        if not have_binaries("civicbus", "civicbus-intake", "civicbus-dispatcher"):
            raise unittest.SkipTest("binaries not built")
        super().setUpClass()
        cls.d = DoorsDeployment(cls.cluster)
        cls.d.load_city()
        cls.d.create_key("admin-key")
        cls.d.role_key("sensor")
        cls.d.dispatcher_env("dispatcher", sweep_ms=300)
        cls.dispatcher = cls.d.start_dispatcher("dispatcher")
        cls.d.wait_active("dispatcher")
        cls.intakes = [cls.d.start_doors_intake("intake-a")]
        cls.intakes.append(cls.d.start_doors_intake("intake-b"))   # same port, SO_REUSEPORT
        cls.console = cls.d.start_console() if have_binaries("civicbus-console") else None

    @classmethod
    def tearDownClass(cls):
        for p in cls.intakes + [cls.dispatcher, cls.console]:
            if p:
                code = p.stop()
                assert code in (0, None), f"{p.name} exit code {code} (23: leak under ASan)"
        super().tearDownClass()

    def post(self, events):
        resp = self.d.as_role("sensor", "POST", "/v1/events", events, timeout=60)
        self.assertEqual(resp.status, 200, resp)
        answer = resp.json()
        self.assertEqual(len(answer), len(events))
        return answer

    def test_100k_events_fold_into_one_ticket(self):
        kind = "overflowing_bin"
        start = time.time()
        lat, lon = LAT + 0.004, LON + 0.004

        def batch(b):
            rnd = random.Random(b)
            events = [event(kind, lat + rnd.uniform(-0.00005, 0.00005),
                            lon + rnd.uniform(-0.00005, 0.00005),
                            ts=start - rnd.uniform(0, 55), device=f"cam-{b % 7}")
                      for _ in range(1000)]
            return self.post(events)

        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(batch, range(100)))
        tickets = {a["ticket_id"] for answer in answers for a in answer}
        statuses = [a["status"] for answer in answers for a in answer]
        self.assertEqual(len(tickets), 1, tickets)
        self.assertEqual(statuses.count("created"), 1)
        self.assertEqual(statuses.count("folded"), 99999)
        tid = tickets.pop()
        fold = self.d.ticket(tid)["sensor_fold"]
        self.assertEqual(fold["event_count"], 100000)
        self.assertEqual(fold["type"], kind)
        self.assertIsNotNone(fold["first_seen"])
        self.assertLessEqual(fold["first_seen"], fold["last_seen"])
        count = self.d.r("HGET", "sfold:{s:%s}:%s" % (kind, fold["fold_id"]), "count")
        self.assertEqual(int(count), 100000)

    def test_events_1km_apart_make_two_tickets_and_bad_ones_are_rejected_alone(self):
        answer = self.post([event("street_stall"), event("street_stall", lat=LAT + 0.009),
                            event("street_stall", confidence=1.5), event("fire"),
                            event("street_stall", lat=LAT + 0.00005)])
        self.assertEqual([a["status"] for a in answer],
                         ["created", "created", "rejected", "rejected", "folded"])
        self.assertNotEqual(answer[0]["ticket_id"], answer[1]["ticket_id"])
        self.assertEqual(answer[4]["ticket_id"], answer[0]["ticket_id"])
        self.assertEqual(answer[2]["field"], "confidence")
        self.assertEqual(answer[3]["code"], "unknown_type")
        self.assertEqual(self.d.ticket(answer[0]["ticket_id"])["sensor_fold"]["event_count"], 2)
        # auto-accepted: the dispatcher takes it on
        harness.wait_until(lambda: self.d.ticket(answer[0]["ticket_id"])["state"] != "RECEIVED",
                           30, what="the dispatcher to accept a confident sensor ticket")

    def test_low_confidence_waits_for_operators_then_a_new_ticket_after_reject(self):
        answer = self.post([event("road_damage", lat=LAT - 0.003, confidence=0.4)])
        tid = answer[0]["ticket_id"]
        t = self.d.ticket(tid)
        self.assertTrue(t["needs_review"])
        self.assertIn("below", t["review_reason"])
        harness.wait_until(self.d.inbox_empty, 30, what="the dispatcher to look at the inbox")
        self.assertEqual(self.d.ticket(tid)["state"], "RECEIVED")
        self.assertTrue(self.d.in_opq(tid))
        again = self.post([event("road_damage", lat=LAT - 0.003, confidence=0.99)])
        self.assertEqual(again[0]["ticket_id"], tid)
        if not self.console:
            self.skipTest("civicbus-console is not built")
        resp = self.d.act(tid, {"action": "reject", "reason": "误报"})
        self.assertEqual(resp.status, 200, resp)
        after = self.post([event("road_damage", lat=LAT - 0.003, confidence=0.99)])
        self.assertEqual(after[0]["status"], "created")
        self.assertNotEqual(after[0]["ticket_id"], tid)

    def test_request_limits(self):
        resp = self.d.as_role("sensor", "POST", "/v1/events", [event()] * 1001)
        self.assertEqual(resp.status, 400, resp)
        resp = self.d.as_role("sensor", "POST", "/v1/events", {"events": []})
        self.assertEqual(resp.status, 400, resp)
        self.assertEqual(resp.json()["error"]["code"], "not_array")


if __name__ == "__main__":
    harness.main()
