"""The intake's HTTP API against real Redis and the real binary: creating
tickets (201, Location, grid location), idempotency (Idempotency-Key,
external_id, retried bodies), every refusal with its status and error code
and nothing stored for it, authentication and roles, rate limits, reading
one ticket with and without personal data, the paged listing, health,
readiness and metrics, and a clean stop."""
import hashlib
import json
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

GRIDS = os.path.join(harness.CONFIG_DIR, "grids.geojson")
CATALOG = os.path.join(harness.CONFIG_DIR, "catalog.json")
CATEGORY = "urban.facility.public.manhole"


# ---- helpers shared with test_intake_faults.py ----

def load_city(cluster):
    """Grids and catalogue into Redis: with the CLI when it is built, else
    written directly in the layout citydata.h describes."""
    if os.path.exists(os.path.join(harness.BIN_DIR, "civicbus")):
        cluster.cli("grids", "load", GRIDS)
        cluster.cli("catalog", "load", CATALOG)
        return
    r = cluster.redis()
    for what, path in (("grids", GRIDS), ("catalog", CATALOG)):
        with open(path, "rb") as f:
            text = f.read()
        doc = json.loads(text)
        count = (sum(1 for x in doc["features"] if x["properties"]["level"] == "grid")
                 if what == "grids" else len(doc["categories"]))
        r("HSET", "cfg:" + what, "json", text, "version", 1, "loaded_ms", 0, "count", count)
    r.close()


def create_key(cluster, name, role, rate=0):
    """An API key's secret: with the CLI when it is built, else written the
    way apikey.h stores it (SHA-256 of the secret, hex)."""
    if os.path.exists(os.path.join(harness.BIN_DIR, "civicbus")):
        cp = cluster.cli("keys", "create", "--name", name, "--role", role, "--rate", str(rate),
                         "--quiet")
        return cp.stdout.strip()
    secret = "cbk_" + hashlib.sha256(os.urandom(32)).hexdigest()[:43].replace("0", "A")
    digest = hashlib.sha256(secret.encode()).hexdigest()
    r = cluster.redis()
    r("HSET", "apikey:" + digest, "name", name, "role", role, "rate", rate, "created_ms", 0)
    r("HSET", "apikey:names", name, digest)
    r.close()
    return secret


def grid_points(limit=3):
    """(code, community code, lat, lon) of a point inside each of the first grids."""
    with open(GRIDS, encoding="utf-8") as f:
        doc = json.load(f)
    out = []
    for feature in doc["features"]:
        p = feature["properties"]
        if p["level"] != "grid":
            continue
        geom = feature["geometry"]
        ring = geom["coordinates"][0] if geom["type"] == "Polygon" else geom["coordinates"][0][0]
        # The demo grids are rectangles: the mean of the corners is inside.
        corners = ring[:-1] if ring[0] == ring[-1] else ring
        lon = sum(c[0] for c in corners) / len(corners)
        lat = sum(c[1] for c in corners) / len(corners)
        out.append((p["code"], p["parent"], lat, lon))
        if len(out) == limit:
            break
    return out


def start_intake(cluster, name="intake", port=None, env=None):
    port = port or harness.free_port()
    full = {
        "CIVICBUS_INTAKE_LISTEN": f"127.0.0.1:{port}",
        "CIVICBUS_INTAKE_THREADS": "4",
        # Nobody listens there: doorbells are dropped, which the intake allows.
        "CIVICBUS_DOORBELL_ENDPOINTS": f"tcp://127.0.0.1:{harness.free_port()}",
        "CIVICBUS_APIKEY_CACHE_MS": "200",
        # The per-ticket "ticket stored" line is debug: the tests read it.
        "CIVICBUS_LOG_LEVEL": "debug",
    }
    full.update(env or {})
    proc = cluster.start(name, binary="civicbus-intake", env=full)
    url = f"http://127.0.0.1:{port}"
    harness.wait_until(lambda: harness.http_request("GET", url + "/healthz").status == 200, 30,
                       what=f"{name} to answer /healthz")
    return proc, url


def ticket_body(**overrides):
    code, _, lat, lon = grid_points(1)[0]
    body = {
        "source": "app",
        "request_type": "complaint",
        "category": CATEGORY,
        "description": "井盖破损，有人差点掉下去。请回电13812345678",
        "location": {"lat": lat, "lon": lon},
        "reporter": {"name": "张三", "phone": "13812345678"},
    }
    body.update(overrides)
    return body


def count_tickets(r):
    """Tickets in every bucket's idx:{bNN}:all."""
    return sum(r("ZCARD", "idx:{b%02d}:all" % b) for b in range(64))


def ticket_exists(r, ticket_id):
    bucket = int(ticket_id.rsplit("-", 1)[1]) % 64
    return r("HEXISTS", "t:{b%02d}:%s" % (bucket, ticket_id), "pb") == 1


class IntakeApi(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        c = cls.cluster
        load_city(c)
        cls.app = create_key(c, "app-one", "reporter_app")
        cls.app2 = create_key(c, "app-two", "reporter_app")
        cls.ops = create_key(c, "ops", "operator")
        cls.hotline = create_key(c, "hotline-12345", "hotline")
        cls.sensor = create_key(c, "cameras", "sensor")
        cls.slow = create_key(c, "slow-app", "reporter_app", rate=2)
        cls.proc, cls.url = start_intake(c)
        cls.r = c.redis()

    @classmethod
    def tearDownClass(cls):
        cls.r.close()
        super().tearDownClass()

    def post(self, body, key=None, headers=None):
        h = {"Authorization": "Bearer " + (key or self.app)}
        h.update(headers or {})
        return harness.http_request("POST", self.url + "/v1/tickets", body, h)

    def get(self, path, key=None):
        h = {"Authorization": "Bearer " + key} if key else {}
        return harness.http_request("GET", self.url + path, None, h)

    def assert_error(self, resp, status, code, field=None):
        self.assertEqual(resp.status, status, resp)
        err = resp.json()["error"]
        self.assertEqual(err["code"], code, resp)
        if field is not None:
            self.assertEqual(err["field"], field, resp)
        self.assertTrue(err["message"])

    # ---- create ----

    def test_create_answers_201_with_location_and_grid(self):
        code, community, lat, lon = grid_points(2)[1]
        before = count_tickets(self.r)
        resp = self.post(ticket_body(location={"lat": lat, "lon": lon}))
        self.assertEqual(resp.status, 201, resp)
        t = resp.json()
        self.assertRegex(t["id"], r"^320105-\d{8}-\d{9}$")
        self.assertEqual(resp.headers["location"], "/v1/tickets/" + t["id"])
        self.assertEqual(t["state"], "RECEIVED")
        self.assertEqual(t["source"], "app")
        self.assertEqual(t["category"], CATEGORY)
        self.assertEqual(t["location"]["grid_code"], code)
        self.assertEqual(t["location"]["grid_path"][-1], code)
        self.assertEqual(t["location"]["grid_path"][-2], community)
        self.assertEqual(t["location"]["grid_path"][0], "320105")
        self.assertFalse(t["location"]["ungridded"])
        self.assertEqual(t["version"], 1)
        self.assertTrue(t["created"])
        # An app key sees the reporter masked, even in its own answer.
        self.assertEqual(t["reporter"]["phone"], "138****5678")
        self.assertNotIn("13812345678", resp.body.decode())
        # Stored, in the inbox for the dispatcher, and indexed.
        self.assertTrue(ticket_exists(self.r, t["id"]))
        bucket = int(t["id"].rsplit("-", 1)[1]) % 64
        self.assertIsNotNone(self.r("ZSCORE", "inbox:{b%02d}" % bucket, t["id"]))
        self.assertIsNotNone(self.r("ZSCORE", "idx:{b%02d}:grid:%s" % (bucket, community), t["id"]))
        self.assertEqual(count_tickets(self.r), before + 1)

    def test_grid_code_and_ungridded(self):
        code, community, _, _ = grid_points(3)[2]
        resp = self.post(ticket_body(location={"grid_code": code}, description="按网格编号上报"))
        self.assertEqual(resp.status, 201, resp)
        self.assertEqual(resp.json()["location"]["grid_path"][-1], code)
        # A community code is an area too: located to the community.
        resp = self.post(ticket_body(location={"grid_code": community}, description="社区级上报"))
        self.assertEqual(resp.status, 201, resp)
        self.assertEqual(resp.json()["location"]["grid_path"][-1], community)
        # A point in no grid keeps its ticket, flagged ungridded.
        resp = self.post(ticket_body(location={"lat": 39.9, "lon": 116.4}, description="北京的点"))
        self.assertEqual(resp.status, 201, resp)
        loc = resp.json()["location"]
        self.assertTrue(loc["ungridded"])
        self.assertEqual(loc["grid_path"], [])
        # An address only: ungridded, kept.
        resp = self.post(ticket_body(location={"address": "建邺区江东中路1号"}, description="只有地址"))
        self.assertEqual(resp.status, 201, resp)
        self.assertTrue(resp.json()["location"]["ungridded"])

    def test_content_type_with_charset(self):
        body = json.dumps(ticket_body(description="带字符集"), ensure_ascii=False).encode()
        resp = self.post(body, headers={"Content-Type": "application/json; charset=UTF-8"})
        self.assertEqual(resp.status, 201, resp)

    # ---- idempotency ----

    def test_idempotency_key_repeat(self):
        before = count_tickets(self.r)
        body = ticket_body(description="重复提交测试 idem")
        first = self.post(body, headers={"Idempotency-Key": "order-42"})
        self.assertEqual(first.status, 201, first)
        again = self.post(body, headers={"Idempotency-Key": "order-42"})
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["id"], first.json()["id"])
        self.assertEqual(again.headers["location"], first.headers["location"])
        self.assertEqual(count_tickets(self.r), before + 1)
        # The same key value from another client is that client's own.
        other = self.post(body, key=self.app2, headers={"Idempotency-Key": "order-42"})
        self.assertEqual(other.status, 201, other)
        self.assertNotEqual(other.json()["id"], first.json()["id"])
        # The same key for a different ticket is refused, and stores nothing.
        keys = self.r("DBSIZE")
        reused = self.post(ticket_body(description="完全不同的内容"),
                           headers={"Idempotency-Key": "order-42"})
        self.assert_error(reused, 422, "idempotency_key_reused", "Idempotency-Key")
        self.assertEqual(self.r("DBSIZE"), keys)
        self.assertEqual(count_tickets(self.r), before + 2)

    def test_external_id_repeat(self):
        before = count_tickets(self.r)
        body = ticket_body(source="hotline", external_id="12345-2026-000777",
                           description="热线工单重推")
        first = self.post(body, key=self.hotline)
        self.assertEqual(first.status, 201, first)
        # The hotline pushes it again (its own retry), even with new wording.
        body["description"] = "热线工单重推（补充）"
        again = self.post(body, key=self.hotline)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["id"], first.json()["id"])
        self.assertEqual(again.json()["description"], "热线工单重推")
        # The same number from another source is another ticket.
        other = self.post(ticket_body(source="open311", external_id="12345-2026-000777"))
        self.assertEqual(other.status, 201, other)
        self.assertEqual(count_tickets(self.r), before + 2)

    def test_retried_body_without_keys_is_folded(self):
        before = count_tickets(self.r)
        body = json.dumps(ticket_body(description="网络重试，无幂等键")).encode()
        first = self.post(body, headers={"Content-Type": "application/json"})
        self.assertEqual(first.status, 201, first)
        again = self.post(body, headers={"Content-Type": "application/json"})
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["id"], first.json()["id"])
        self.assertEqual(count_tickets(self.r), before + 1)

    # ---- refusals: status, code, field, nothing stored ----

    def test_bad_input_is_refused_and_stores_nothing(self):
        code, _, lat, lon = grid_points(1)[0]
        ok = ticket_body()
        deep = "{" + '"a":{' * 40 + "}" * 41
        cases = [
            ("malformed json", b'{"source": "app", ', 400, "malformed_json", None),
            ("empty body", b"", 400, "malformed_json", None),
            ("not an object", b"[1, 2]", 400, "not_object", ""),
            ("invalid utf-8", b'{"source": "app", "description": "\xff\xfe"}', 400,
             "malformed_json", None),
            ("deep nesting", deep.encode(), 400, "malformed_json", None),
            ("duplicate key", b'{"source": "app", "source": "web"}', 400, "malformed_json", None),
            ("wrong type", dict(ok, description=5), 400, "wrong_type", "description"),
            ("wrong type lat", dict(ok, location={"lat": "32", "lon": lon}), 400, "wrong_type",
             "location.lat"),
            ("missing category", {k: v for k, v in ok.items() if k != "category"}, 400,
             "missing_field", "category"),
            ("missing location", {k: v for k, v in ok.items() if k != "location"}, 400,
             "missing_field", "location"),
            ("bad source", dict(ok, source="fax"), 400, "bad_value", "source"),
            ("too long description", dict(ok, description="长" * 4001), 400, "too_long",
             "description"),
            ("blank description", dict(ok, description=" \u3000 "), 400, "bad_value",
             "description"),
            ("unknown field", dict(ok, descripton="typo"), 400, "unknown_field", None),
            ("lat out of range", dict(ok, location={"lat": 91, "lon": lon}), 400, "bad_value",
             "location.lat"),
            ("bad phone", dict(ok, reporter={"name": "李四", "phone": "abc"}), 400, "bad_value",
             "reporter.phone"),
            ("bad attachment", dict(ok, attachments=["ftp://x/y"]), 400, "bad_value",
             "attachments[0]"),
            ("unknown category", dict(ok, category="no.such.thing"), 400, "unknown_category",
             "category"),
            ("category without the request type",
             dict(ok, category="police.public_order.fight", request_type="suggestion"), 400,
             "bad_value", "request_type"),
            ("unknown grid code", dict(ok, location={"grid_code": "320105999999999"}), 400,
             "unknown_grid", "location.grid_code"),
            ("source not the key's", dict(ok, source="hotline"), 403, "source_not_allowed",
             "source"),
        ]
        keys_before = self.r("DBSIZE")
        tickets_before = count_tickets(self.r)
        for name, body, status, code_, field in cases:
            with self.subTest(case=name):
                if isinstance(body, bytes):
                    resp = self.post(body, headers={"Content-Type": "application/json"})
                else:
                    resp = self.post(body)
                self.assert_error(resp, status, code_, field)
        long_key = self.post(ok, headers={"Idempotency-Key": "k" * 129})
        self.assert_error(long_key, 400, "bad_value", "Idempotency-Key")
        self.assertEqual(self.r("DBSIZE"), keys_before)
        self.assertEqual(count_tickets(self.r), tickets_before)

    def test_too_large_by_content_length_and_by_chunks(self):
        keys_before = self.r("DBSIZE")
        big = b'{"description": "' + b"x" * 70000 + b'"}'
        resp = self.post(big, headers={"Content-Type": "application/json"})
        self.assert_error(resp, 413, "too_large")
        # Chunked: no Content-Length, the body grows past the limit.
        port = int(self.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30 * harness.SLOW) as s:
            head = ("POST /v1/tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    % self.app).encode()
            chunk = b"a" * 8192
            s.sendall(head)
            for _ in range(10):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        self.assertTrue(answer.startswith(b"HTTP/1.1 413"), answer[:200])
        self.assertIn(b'"too_large"', answer)
        self.assertEqual(self.r("DBSIZE"), keys_before)

    def test_request_headers_up_to_the_connection_memory(self):
        # CIVICBUS_INTAKE_CONN_MEMORY (16 KiB by default) bounds the headers:
        # a few KiB of them pass, far more are refused with 431 and nothing
        # is stored.
        tickets_before = count_tickets(self.r)
        fine = self.post(ticket_body(description="长请求头"), headers={"X-Trace": "t" * 4000})
        self.assertEqual(fine.status, 201, fine)
        # The intake answers 431 and closes while the client may still be
        # sending, so the kernel can reset the connection before the client
        # reads the answer: the intake's log says what it answered.
        port = int(self.url.rsplit(":", 1)[1])
        body = json.dumps(ticket_body(description="超长请求头")).encode()
        head = ("POST /v1/tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\nX-Trace: %s\r\n\r\n"
                % (self.app, len(body), "t" * 40000)).encode()
        answer = b""
        with socket.create_connection(("127.0.0.1", port), timeout=30 * harness.SLOW) as s:
            try:
                s.sendall(head + body)
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    answer += data
            except OSError:
                pass            # reset: the answer may be lost, the log is not
        self.assertFalse(answer and not answer.startswith(b"HTTP/1.1 431"), answer[:200])
        harness.wait_until(lambda: "HTTP response code is 431" in self.proc.log(), 10,
                           what="the intake's 431")
        self.assertEqual(count_tickets(self.r), tickets_before + 1)
        again = self.post(ticket_body(description="之后正常"))
        self.assertEqual(again.status, 201, again)

    def test_wrong_content_type(self):
        keys_before = self.r("DBSIZE")
        body = json.dumps(ticket_body(description="content type")).encode()
        for ctype in ("text/plain", "application/x-www-form-urlencoded",
                      "application/json; charset=latin1", "application/jsonp"):
            with self.subTest(content_type=ctype):
                resp = self.post(body, headers={"Content-Type": ctype})
                self.assert_error(resp, 415, "unsupported_media_type")
        self.assertEqual(self.r("DBSIZE"), keys_before)

    def test_authentication(self):
        keys_before = self.r("DBSIZE")
        body = ticket_body(description="认证")
        resp = harness.http_request("POST", self.url + "/v1/tickets", body)
        self.assert_error(resp, 401, "unauthorized")
        self.assertIn("Bearer", resp.headers["www-authenticate"])
        for header in ("Bearer cbk_" + "A" * 43, "Bearer nonsense", "Basic dXNlcjpwYXNz",
                       "Bearer " + self.app[:-1]):
            with self.subTest(header=header):
                resp = harness.http_request("POST", self.url + "/v1/tickets", body,
                                            {"Authorization": header})
                self.assert_error(resp, 401, "unauthorized")
                self.assertIn("www-authenticate", resp.headers)
        self.assertEqual(self.r("DBSIZE"), keys_before)
        # A revoked key stops working (within the cache's 200 ms here).
        secret = create_key(self.cluster, "short-lived", "reporter_app")
        resp = self.post(ticket_body(description="撤销前"), key=secret)
        self.assertEqual(resp.status, 201, resp)
        if os.path.exists(os.path.join(harness.BIN_DIR, "civicbus")):
            self.cluster.cli("keys", "revoke", "short-lived")
        else:
            digest = self.r("HGET", "apikey:names", "short-lived").decode()
            self.r("DEL", "apikey:" + digest)
        harness.wait_until(lambda: self.post(ticket_body(description="撤销后"),
                                             key=secret).status == 401, 10,
                           what="a revoked key to be refused")

    def test_roles(self):
        # Sensors speak for sensors only; apps may not list.
        resp = self.post(ticket_body(description="摄像头"), key=self.sensor)
        self.assert_error(resp, 403, "source_not_allowed", "source")
        resp = self.post(ticket_body(source="sensor", description="烟雾报警"), key=self.sensor)
        self.assertEqual(resp.status, 201, resp)
        resp = self.get("/v1/tickets", key=self.app)
        self.assert_error(resp, 403, "forbidden")
        resp = self.get("/v1/tickets", key=self.hotline)
        self.assert_error(resp, 403, "forbidden")
        # Operators may report any source.
        resp = self.post(ticket_body(source="hotline", description="接线员代录"), key=self.ops)
        self.assertEqual(resp.status, 201, resp)

    def test_rate_limit(self):
        tickets_before = count_tickets(self.r)
        statuses = []
        for i in range(8):
            resp = self.post(ticket_body(description="限流 %d" % i), key=self.slow,
                             headers={"Idempotency-Key": "rate-%d" % i})
            statuses.append(resp.status)
            if resp.status == 429:
                self.assertEqual(resp.headers["retry-after"], "1")
                self.assertEqual(resp.json()["error"]["code"], "rate_limited")
        self.assertIn(429, statuses)
        self.assertIn(201, statuses)
        self.assertEqual(set(statuses), {201, 429}, statuses)
        # Exactly the accepted ones were stored.
        self.assertEqual(count_tickets(self.r), tickets_before + statuses.count(201))

    # ---- reading ----

    def test_get_one_masked_and_unmasked(self):
        created = self.post(ticket_body(description="查看工单，电话13812345678"))
        self.assertEqual(created.status, 201, created)
        path = created.headers["location"]
        full = self.get(path, key=self.ops)
        self.assertEqual(full.status, 200, full)
        t = full.json()
        self.assertEqual(t["reporter"], {"name": "张三", "phone": "13812345678"})
        self.assertIn("13812345678", t["description"])
        self.assertEqual(len(t["events"]), 1)
        ev = t["events"][0]
        self.assertEqual(ev["type"], "received")
        self.assertEqual(ev["to"], "RECEIVED")
        self.assertEqual(ev["actor"]["kind"], "reporter")
        self.assertEqual(ev["actor"]["id"], "app-one")
        # The app that created it sees it masked.
        own = self.get(path, key=self.app)
        self.assertEqual(own.status, 200, own)
        self.assertEqual(own.json()["reporter"], {"name": "张*", "phone": "138****5678"})
        self.assertNotIn("13812345678", own.body.decode())
        self.assertEqual(own.json()["events"][0]["type"], "received")
        # Another app does not see it at all; nor does anyone see unknown ids.
        self.assert_error(self.get(path, key=self.app2), 404, "not_found")
        self.assert_error(self.get("/v1/tickets/320105-20261129-999999999", key=self.ops), 404,
                          "not_found")
        for bad in ("nope", "..%2F..%2Fetc", "320105-2026-1", "%00"):
            with self.subTest(id=bad):
                self.assert_error(self.get("/v1/tickets/" + bad, key=self.ops), 404, "not_found")
        self.assert_error(self.get(path), 401, "unauthorized")

    def test_listing_with_filters_and_cursor(self):
        code, community, lat, lon = grid_points(3)[2]
        made = []
        for i in range(12):
            resp = self.post(ticket_body(location={"lat": lat, "lon": lon},
                                         description="列表测试 %d" % i),
                             headers={"Idempotency-Key": "list-%d" % i})
            self.assertEqual(resp.status, 201, resp)
            made.append(resp.json()["id"])
        # Page through this grid, 5 at a time.
        seen, cursor, pages = [], None, 0
        while True:
            path = "/v1/tickets?grid=%s&limit=5" % code + ("&cursor=" + cursor if cursor else "")
            resp = self.get(path, key=self.ops)
            self.assertEqual(resp.status, 200, resp)
            page = resp.json()
            self.assertLessEqual(len(page["tickets"]), 5)
            self.assertEqual(page["count"], len(page["tickets"]))
            seen.extend(t["id"] for t in page["tickets"])
            for t in page["tickets"]:
                self.assertIn(code, t["location"]["grid_path"])
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
            self.assertLess(pages, 10)
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(set(made) - set(seen), set())
        self.assertGreaterEqual(pages, 3)
        # Oldest first by (created ms, id); the index scores are created ms.
        keys = [(int(self.r("ZSCORE", "idx:{b%02d}:all" % (int(i.rsplit("-", 1)[1]) % 64), i)), i)
                for i in seen]
        self.assertEqual(keys, sorted(keys))
        # Filters combine: the right state and community, a state with none.
        resp = self.get("/v1/tickets?state=received&grid=%s&limit=500" % community, key=self.ops)
        ids = [t["id"] for t in resp.json()["tickets"]]
        self.assertEqual(set(made) - set(ids), set())
        resp = self.get("/v1/tickets?state=CLOSED&grid=%s" % community, key=self.ops)
        self.assertEqual(resp.json()["tickets"], [])
        self.assertIsNone(resp.json()["next_cursor"])
        resp = self.get("/v1/tickets?department=urban&grid=%s" % code, key=self.ops)
        self.assertEqual(resp.status, 200, resp)
        self.assertTrue(all(t["department"] == "urban" for t in resp.json()["tickets"]))
        # since: in the future, nothing.
        resp = self.get("/v1/tickets?since=2999-01-01T00:00:00%2B08:00", key=self.ops)
        self.assertEqual(resp.json()["tickets"], [])
        # Bad values name their parameter.
        for query, field in (("state=SLEEPING", "state"), ("limit=0", "limit"),
                             ("limit=501", "limit"), ("since=yesterday", "since"),
                             ("cursor=bm9wZQ", "cursor"), ("grid=a%20b", "grid"),
                             ("department=", "department"), ("colour=red", "colour"),
                             ("limit=5&limit=6", "limit")):
            with self.subTest(query=query):
                code_ = "unknown_parameter" if field == "colour" else "bad_value"
                self.assert_error(self.get("/v1/tickets?" + query, key=self.ops), 400, code_,
                                  field)

    # ---- routes, health, metrics ----

    def test_unknown_paths_and_methods(self):
        self.assert_error(self.get("/v2/tickets", key=self.ops), 404, "not_found")
        self.assert_error(self.get("/", key=self.ops), 404, "not_found")
        resp = harness.http_request("DELETE", self.url + "/v1/tickets",
                                    headers={"Authorization": "Bearer " + self.ops})
        self.assert_error(resp, 405, "method_not_allowed")
        self.assertEqual(resp.headers["allow"], "GET, POST")
        resp = harness.http_request("PUT", self.url + "/v1/tickets/320105-20261129-000000001",
                                    b"{}", {"Authorization": "Bearer " + self.ops})
        self.assert_error(resp, 405, "method_not_allowed")
        self.assertEqual(resp.headers["allow"], "GET")
        resp = harness.http_request("POST", self.url + "/healthz", b"")
        self.assertEqual(resp.status, 405)

    def test_health_readiness_metrics(self):
        self.assertEqual(self.get("/healthz").status, 200)
        self.r("DEL", "lease:dispatcher")
        resp = self.get("/readyz")
        self.assert_error(resp, 503, "not_ready")
        self.assertIn("dispatcher", resp.json()["error"]["message"])
        self.r("SET", "lease:dispatcher", "dispatcher-test", "PX", 10000)
        resp = self.get("/readyz")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["dispatcher"], "dispatcher-test")
        self.assertGreaterEqual(resp.json()["grids_version"], 1)
        self.r("DEL", "lease:dispatcher")
        created = self.post(ticket_body(description="指标"))
        self.assertEqual(created.status, 201)
        self.get("/nope")
        text = self.get("/metrics").body.decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        self.assertGreaterEqual(values['civicbus_intake_requests_total{route="create_ticket",'
                                       'status="201"}'], 1)
        self.assertGreaterEqual(values['civicbus_intake_requests_total{route="other",'
                                       'status="404"}'], 1)
        self.assertGreaterEqual(values["civicbus_intake_tickets_created_total"], 1)
        self.assertIn("civicbus_intake_redis_errors_total", values)
        self.assertIn("civicbus_intake_tickets_repeated_total", values)
        self.assertGreaterEqual(values['civicbus_intake_request_duration_seconds_bucket{le="+Inf"}'],
                                values['civicbus_intake_requests_total{route="create_ticket",'
                                       'status="201"}'])
        self.assertEqual(values["civicbus_intake_request_duration_seconds_count"],
                         values['civicbus_intake_request_duration_seconds_bucket{le="+Inf"}'])

    def test_logs_never_hold_personal_data(self):
        resp = self.post(ticket_body(description="日志检查", reporter={"name": "王小明",
                                                                      "phone": "13987654321"}))
        self.assertEqual(resp.status, 201, resp)
        tid = resp.json()["id"]
        harness.wait_until(lambda: tid in self.proc.log(), 10, what="the stored-ticket log line")
        log = self.proc.log()
        self.assertNotIn("13987654321", log)
        self.assertNotIn("王小明", log)
        line = [json.loads(x) for x in log.splitlines() if tid in x and x.startswith("{")
                and json.loads(x).get("msg") == "ticket stored"][0]
        self.assertEqual(line["level"], "debug")
        self.assertEqual(line["source"], "app")
        self.assertEqual(line["category"], CATEGORY)

    def test_zz_clean_stop(self):
        # Last (by name): SIGTERM stops the intake with exit 0 (no leak
        # under AddressSanitizer), and it refuses nothing half-way.
        self.proc.signal(signal.SIGTERM)
        code = self.proc.popen.wait(timeout=60 * harness.SLOW)
        self.assertEqual(code, 0, self.proc.log()[-3000:])
        self.assertIn('"msg":"stopped"', self.proc.log())


if __name__ == "__main__":
    harness.main()
