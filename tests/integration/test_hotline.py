"""test_hotline.py — the 12345 hotline exchange (docs/HOTLINE.md) with real
Redis, intake, dispatcher and notifier.

Cases: a signed push is stored (201) and the same number answers 200 with
the first ticket; refused signatures (wrong secret, tampered body, missing
headers), a timestamp 6 minutes off and a replayed nonce are 401 with their
codes and store nothing; a wrong key role is 403; supplement and urge land
in the history as the REPORTER "hotline"; withdrawal cancels; a withdrawal
after signing (a ticket written IN_PROGRESS with the store's layout) is 409
wrong_state; lookup by number; and the notifier pushes the ticket's status
back to a hotline simulator that fails now and then, signed, in sequence
order per ticket.
"""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from doors import (HOTLINE_SECRET, LAT, LON, DoorsDeployment, have_binaries,  # noqa: E402
                   hotline_headers, log_messages)
from test_notifier import Receiver, write_ticket  # noqa: E402

import test_notifier  # noqa: E402

test_notifier.HOTLINE_SECRET = HOTLINE_SECRET     # the receiver verifies with our secret


def ticket_body(number, **extra):
    body = {"number": number, "category": "urban.event.street.stall", "request_type": "投诉",
            "description": "人行道占道经营", "location": {"lat": LAT, "lon": LON,
                                                       "address": "应天大街88号"},
            "citizen": {"name": "李四", "phone": "13912345678"},
            "deadlines": {"resolve": "2026-12-10T18:00:00+08:00"}}
    body.update(extra)
    return body


class Hotline(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        if not have_binaries("civicbus", "civicbus-intake", "civicbus-dispatcher",
                             "civicbus-notifier"):
            raise unittest.SkipTest("binaries not built")
        super().setUpClass()
        cls.d = DoorsDeployment(cls.cluster)
        cls.d.load_city()
        cls.d.create_key("admin-key")
        cls.d.role_key("hotline")
        cls.d.role_key("reporter_app")
        cls.d.dispatcher_env("dispatcher")
        cls.dispatcher = cls.d.start_dispatcher("dispatcher")
        cls.d.wait_active("dispatcher")
        cls.intake = cls.d.start_doors_intake()
        cls.receiver = Receiver("hotline")
        cls.receiver.fail_rate = 0.3
        config = {"hotline": {"url": cls.receiver.url, "secret": HOTLINE_SECRET}}
        path = os.path.join(cls.cluster.dir, "notifier.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f)
        cls.notifier = cls.cluster.start("notifier", binary="civicbus-notifier", env={
            "CIVICBUS_NOTIFIER_CONFIG": path, "CIVICBUS_NOTIFIER_POLL_MS": "50",
            "CIVICBUS_NOTIFIER_BACKOFF_MS": "20", "CIVICBUS_NOTIFIER_BACKOFF_MAX_MS": "200",
            "CIVICBUS_NOTIFIER_MAX_ATTEMPTS": "50", "CIVICBUS_NOTIFIER_TIMEOUT_MS": "2000",
            "CIVICBUS_NOTIFIER_VISIBILITY_MS": "5000"})
        harness.wait_until(lambda: any(m.get("msg") == "ready" for m in log_messages(cls.notifier)),
                           20, what="notifier ready")

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "receiver", None):
            cls.receiver.close()
        for proc in ("notifier", "intake", "dispatcher"):
            p = getattr(cls, proc, None)
            if p:
                code = p.stop()
                assert code in (0, None), f"{proc} exit code {code} (23: leak under ASan)"
        super().tearDownClass()

    # ---- pushes ----

    def test_push_is_stored_and_repeat_answers_the_first(self):
        resp = self.d.hotline("POST", "/hotline/v1/tickets", ticket_body("HL-A-1"))
        self.assertEqual(resp.status, 201, resp)
        first = resp.json()
        self.assertEqual(first["number"], "HL-A-1")
        t = first["ticket"]
        self.assertEqual(t["source"], "hotline")
        self.assertEqual(t["external_id"], "HL-A-1")
        self.assertEqual(t["reporter"]["phone"], "13912345678")     # the hotline sees it
        self.assertEqual(t["sender_deadlines"][0]["stage"], "resolve")
        again = self.d.hotline("POST", "/hotline/v1/tickets",
                               ticket_body("HL-A-1", description="再次推送"))
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["ticket_id"], first["ticket_id"])
        got = self.d.hotline("GET", "/hotline/v1/tickets/HL-A-1")
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json()["ticket_id"], first["ticket_id"])
        self.assertEqual(got.json()["ticket"]["events"][0]["type"], "received")
        self.assertEqual(self.d.hotline("GET", "/hotline/v1/tickets/NO-SUCH").status, 404)

    def test_refused_signatures_store_nothing(self):
        path = "/hotline/v1/tickets"
        raw = json.dumps(ticket_body("HL-BAD-1")).encode()
        base = {"Authorization": f"Bearer {self.d.keys['hotline']}",
                "Content-Type": "application/json"}

        def post(headers, body=raw):
            h = dict(base)
            h.update(headers)
            return harness.http_request("POST", f"http://127.0.0.1:{self.d.intake_port}{path}",
                                        body=body, headers=h)

        cases = [
            (hotline_headers("POST", path, raw, secret="another-secret-entirely"),
             raw, "signature_invalid"),
            (hotline_headers("POST", path, raw), raw.replace(b"HL-BAD-1", b"HL-BAD-2"),
             "signature_invalid"),
            (hotline_headers("POST", "/hotline/v1/ticket", raw), raw, "signature_invalid"),
            (hotline_headers("POST", path, raw, ts=int(time.time()) - 360), raw, "timestamp_skew"),
            (hotline_headers("POST", path, raw, ts=int(time.time()) + 360), raw, "timestamp_skew"),
            (hotline_headers("POST", path, raw, ts="yesterday"), raw, "timestamp_invalid"),
            (hotline_headers("POST", path, raw, nonce="x"), raw, "nonce_invalid"),
            ({}, raw, "signature_missing"),
        ]
        for headers, body, code in cases:
            resp = post(headers, body)
            self.assertEqual(resp.status, 401, (code, resp))
            self.assertEqual(resp.json()["error"]["code"], code)
        # a replay: the same signed request twice
        headers = hotline_headers("POST", path, raw)
        self.assertEqual(post(headers).status, 201)
        replay = post(headers)
        self.assertEqual(replay.status, 401, replay)
        self.assertEqual(replay.json()["error"]["code"], "nonce_reused")
        self.assertEqual(self.d.hotline("GET", "/hotline/v1/tickets/HL-BAD-2").status, 404)
        # 4 minutes off is still fine
        ok = post(hotline_headers("POST", path, json.dumps(ticket_body("HL-SKEW")).encode(),
                                  ts=int(time.time()) - 240),
                  json.dumps(ticket_body("HL-SKEW")).encode())
        self.assertEqual(ok.status, 201, ok)
        # another role's key never reaches the signature check
        wrong = harness.http_request(
            "POST", f"http://127.0.0.1:{self.d.intake_port}{path}", body=raw,
            headers={**hotline_headers("POST", path, raw), "Content-Type": "application/json",
                     "Authorization": f"Bearer {self.d.keys['reporter_app']}"})
        self.assertEqual(wrong.status, 403, wrong)

    def test_bad_body_is_400_with_the_hotlines_field(self):
        resp = self.d.hotline("POST", "/hotline/v1/tickets",
                              ticket_body("HL-C-1", citizen={"phone": "12"}))
        self.assertEqual(resp.status, 400, resp)
        self.assertEqual(resp.json()["error"]["field"], "citizen.phone")
        resp = self.d.hotline("POST", "/hotline/v1/tickets", ticket_body("HL-C-2", category="no.such"))
        self.assertEqual(resp.status, 400, resp)
        self.assertEqual(resp.json()["error"]["code"], "unknown_category")

    # ---- follow-ups ----

    def test_supplement_urge_withdraw(self):
        created = self.d.hotline("POST", "/hotline/v1/tickets", ticket_body("HL-F-1")).json()
        tid = created["ticket_id"]
        resp = self.d.hotline("POST", "/hotline/v1/tickets/HL-F-1/supplement",
                              {"text": "摊位已经扩大到路口"})
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["event"], "supplement")
        self.assertEqual(self.d.hotline("POST", "/hotline/v1/tickets/HL-F-1/supplement",
                                        {}).status, 400)
        self.assertEqual(self.d.hotline("POST", "/hotline/v1/tickets/HL-F-1/urge", {}).status, 200)
        self.assertEqual(self.d.hotline("POST", "/hotline/v1/tickets/HL-F-1/close", {}).status, 404)
        self.assertEqual(self.d.hotline("POST", "/hotline/v1/tickets/NOPE/urge", {}).status, 404)
        resp = self.d.hotline("POST", "/hotline/v1/tickets/HL-F-1/withdraw", {"text": "市民撤诉"})
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["state"], "CANCELLED")
        history = self.d.ticket(tid)["events"]
        kinds = [e["type"] for e in history]
        for kind in ("supplement", "urge", "cancel"):
            self.assertIn(kind, kinds)
        supplement = next(e for e in history if e["type"] == "supplement")
        self.assertEqual(supplement["actor"]["kind"], "reporter")
        self.assertEqual(supplement["actor"]["id"], "hotline")
        again = self.d.hotline("POST", "/hotline/v1/tickets/HL-F-1/withdraw", {})
        self.assertEqual(again.status, 409, again)
        self.assertEqual(again.json()["error"]["code"], "final_state")

    def test_withdrawal_after_signing_is_refused(self):
        r = self.cluster.redis()
        tid = "320105-20261129-000099911"
        write_ticket(r, tid, [("received", ""), ("accept", ""), ("dispatch", ""), ("sign", "")],
                     source=1, department="urban", external_id="HL-SIGNED")
        key = "ext:hotline:HL-SIGNED"
        # the store's bucket for a key: FNV-1a 32-bit mod 64
        h = 0x811c9dc5
        for b in key.encode():
            h = ((h ^ b) * 0x01000193) & 0xffffffff
        r("SET", "idem:{b%02d}:%s" % (h % 64, key), tid)
        resp = self.d.hotline("POST", "/hotline/v1/tickets/HL-SIGNED/withdraw", {})
        self.assertEqual(resp.status, 409, resp)
        self.assertEqual(resp.json()["error"]["code"], "wrong_state")
        # urging a ticket in hand is fine
        self.assertEqual(self.d.hotline("POST", "/hotline/v1/tickets/HL-SIGNED/urge", {}).status, 200)

    # ---- push-back ----

    def test_push_back_in_order_to_a_flaky_hotline(self):
        ids = []
        for i in range(5):
            # 1 km apart: not probable duplicates of each other (those wait for operators)
            body = ticket_body(f"HL-P-{i}", location={"lat": LAT + 0.01 * (i + 1), "lon": LON})
            resp = self.d.hotline("POST", "/hotline/v1/tickets", body)
            self.assertEqual(resp.status, 201, resp)
            ids.append(resp.json()["ticket_id"])
        for tid in ids:
            harness.wait_until(lambda: self.d.ticket(tid)["state"] not in ("RECEIVED", "ACCEPTED"),
                               30, what=f"the dispatcher to dispatch {tid}")
        for i in range(5):
            resp = self.d.hotline("POST", f"/hotline/v1/tickets/HL-P-{i}/withdraw", {"text": "撤单"})
            self.assertEqual(resp.status, 200, resp)

        def pushed(tid):
            return [json.loads(c["body"]) for c in self.receiver.delivered()
                    if json.loads(c["body"])["ticket_id"] == tid]

        for tid in ids:
            harness.wait_until(lambda: any(p["event"] == "cancel" for p in pushed(tid)), 60,
                               what=f"the withdrawal of {tid} pushed back")
        for tid in ids:
            calls = [c for c in self.receiver.all_calls()
                     if json.loads(c["body"])["ticket_id"] == tid]
            self.assertTrue(all(c["signature_ok"] for c in calls))
            firsts, seen = [], set()
            for c in calls:
                body = json.loads(c["body"])
                if body["delivery_id"] not in seen:
                    seen.add(body["delivery_id"])
                    firsts.append(body["sequence"])
            self.assertEqual(firsts, sorted(firsts), f"{tid} pushed out of order")
            events = [p["event"] for p in pushed(tid)]
            for kind in ("accept", "dispatch", "cancel"):
                self.assertIn(kind, events)
            self.assertEqual(pushed(tid)[0]["hotline_ticket_id"], f"HL-P-{ids.index(tid)}")
        self.assertTrue(any(not c["ok"] for c in self.receiver.all_calls()),
                        "the simulator never failed: the retry path was not exercised")


if __name__ == "__main__":
    harness.main()
