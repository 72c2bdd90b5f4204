"""The intake under faults: Redis restarted in the middle of a load (the
intake answers 503 with Retry-After while it is away, recovers by itself,
and every ticket it acknowledged with 201 exists afterwards), and several
intake processes sharing one port (SO_REUSEPORT), all serving."""
import os
import re
import sys
import threading
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_intake import create_key, load_city, start_intake, ticket_body, ticket_exists  # noqa: E402


class Loader(threading.Thread):
    """Posts tickets one after another (each with its own Idempotency-Key)
    until stopped; remembers every answer."""

    def __init__(self, url, key):
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.created = []           # ids answered 201
        self.unavailable = 0        # 503s, each with Retry-After
        self.bad = []               # anything else, with the reason
        self.after_outage = 0       # 201s after the first 503

    def run(self):
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            body = ticket_body(description="故障测试 %d" % n)
            try:
                resp = harness.http_request("POST", self.url + "/v1/tickets", body,
                                            {"Authorization": "Bearer " + self.key,
                                             "Idempotency-Key": str(uuid.uuid4())}, timeout=5)
            except OSError as e:
                with self.lock:
                    self.bad.append("connection: %r" % e)
                continue
            with self.lock:
                if resp.status == 201:
                    self.created.append(resp.json()["id"])
                    if self.unavailable:
                        self.after_outage += 1
                elif resp.status == 503:
                    if resp.headers.get("retry-after") != "1" or \
                            resp.json()["error"]["code"] != "unavailable":
                        self.bad.append("503 without Retry-After: %r" % resp)
                    self.unavailable += 1
                else:
                    self.bad.append(repr(resp))

    def count(self, what):
        with self.lock:
            return getattr(self, what) if not isinstance(getattr(self, what), list) \
                else len(getattr(self, what))


class RedisRestart(harness.ClusterTestCase):

    def test_redis_restart_mid_load(self):
        c = self.cluster
        load_city(c)
        key = create_key(c, "load-app", "reporter_app")
        proc, url = start_intake(c, env={"CIVICBUS_REDIS_TIMEOUT_MS": "500"})
        loader = Loader(url, key)
        loader.start()
        try:
            harness.wait_until(lambda: loader.count("created") >= 20, 30,
                               what="tickets to be created before the outage")
            # A graceful stop: Redis writes its AOF out (a SIGKILL with
            # appendfsync everysec may lose the last second, by design).
            c.redis_proc.stop()
            harness.wait_until(lambda: loader.count("unavailable") >= 5, 30,
                               what="503s while Redis is away")
            self.assertTrue(proc.alive())
            c.start_redis()
            harness.wait_until(lambda: loader.count("after_outage") >= 20, 60,
                               what="the intake to recover by itself")
        finally:
            loader.stop_flag.set()
            loader.join(30 * harness.SLOW)
        self.assertEqual(loader.bad, [])
        r = c.redis()
        missing = [i for i in loader.created if not ticket_exists(r, i)]
        self.assertEqual(missing, [], "acknowledged tickets lost")
        self.assertEqual(len(set(loader.created)), len(loader.created))
        r.close()
        metrics = harness.http_request("GET", url + "/metrics").body.decode()
        m = re.search(r"^civicbus_intake_redis_errors_total (\d+)", metrics, re.M)
        self.assertGreater(int(m.group(1)), 0)
        self.assertEqual(proc.stop(), 0, proc.log()[-3000:])


class SharedPort(harness.ClusterTestCase):

    def test_two_intakes_on_one_port(self):
        c = self.cluster
        load_city(c)
        key = create_key(c, "campaign-app", "reporter_app")
        port = harness.free_port()
        first, url = start_intake(c, "intake-a", port=port)
        second, _ = start_intake(c, "intake-b", port=port)
        harness.wait_until(lambda: '"msg":"ready"' in second.log(), 30, what="intake-b ready")
        self.assertTrue(first.alive() and second.alive())
        ids = []
        # Each request is a new connection; the kernel spreads them.
        for i in range(60):
            resp = harness.http_request("POST", url + "/v1/tickets",
                                        ticket_body(description="共享端口 %d" % i),
                                        {"Authorization": "Bearer " + key})
            self.assertEqual(resp.status, 201, resp)
            ids.append(resp.json()["id"])
        served = [sum(1 for i in ids if i in p.log()) for p in (first, second)]
        self.assertEqual(sum(served), 60, served)
        self.assertGreater(served[0], 0, served)
        self.assertGreater(served[1], 0, served)
        # One stops; the other keeps serving the port alone.
        self.assertEqual(first.stop(), 0, first.log()[-3000:])
        for i in range(10):
            resp = harness.http_request("POST", url + "/v1/tickets",
                                        ticket_body(description="剩下一个 %d" % i),
                                        {"Authorization": "Bearer " + key})
            self.assertEqual(resp.status, 201, resp)
        self.assertEqual(second.stop(), 0, second.log()[-3000:])


if __name__ == "__main__":
    harness.main()
