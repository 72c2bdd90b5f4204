"""The civicbus CLI against a real Redis: keys, grids, the catalogue, the
calendar, certificates and adapter keys, tickets, status, --help of every
command and the exit codes (0 done, 1 failed, 2 wrong command line).

Expected answers are computed here from the data files (deploy/config) or by
hand from the calendar rules, never copied from the tool's own output."""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

GRIDS = os.path.join(harness.CONFIG_DIR, "grids.geojson")
CATALOG = os.path.join(harness.CONFIG_DIR, "catalog.json")
CALENDAR = os.path.join(harness.CONFIG_DIR, "calendar-cn-2026.json")
PROTO_DIR = os.path.join(harness.SOURCE_DIR, "proto")

# Every command, for the --help sweep.
COMMANDS = [
    ["status"],
    ["keys", "create"], ["keys", "list"], ["keys", "revoke"],
    ["grids", "load"], ["grids", "show"], ["grids", "locate"],
    ["catalog", "load"], ["catalog", "show"], ["catalog", "route"],
    ["ticket", "show"], ["ticket", "list"],
    ["calendar", "due"], ["calendar", "load"], ["calendar", "show"],
    ["certs", "new"],
    ["adapters", "register"], ["adapters", "unregister"], ["adapters", "list"],
]

ISO_SHANGHAI = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00"


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def ring_center(feature):
    """The mean of a rectangle-like polygon's outer ring (lat, lon): inside
    for the convex grids of the demo city."""
    geometry = feature["geometry"]
    ring = (geometry["coordinates"][0] if geometry["type"] == "Polygon"
            else geometry["coordinates"][0][0])
    points = ring[:-1] if ring[0] == ring[-1] else ring
    lon = sum(p[0] for p in points) / len(points)
    lat = sum(p[1] for p in points) / len(points)
    return lat, lon


def area_path(features_by_code, code):
    path = []
    while code:
        path.append(code)
        code = features_by_code[code]["properties"].get("parent")
    return list(reversed(path))


class Cli(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="civicbus-cli-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def cli(self, *args, env=None):
        return self.cluster.cli(*args, env=env, check=False)

    def ok(self, *args):
        cp = self.cli(*args)
        self.assertEqual(cp.returncode, 0, f"civicbus {' '.join(args)}:\n{cp.stdout}\n{cp.stderr}")
        return cp

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False))
        return path

    def stored_version(self, what):
        value = self.cluster.redis()("HGET", f"cfg:{what}", "version")
        return int(value) if value is not None else 0

    # ---- keys ----

    def test_keys_create_list_revoke(self):
        cp = self.ok("keys", "create", "--name", "app-one", "--role", "reporter_app", "--rate", "10")
        match = re.fullmatch(r"key: (cbk_[A-Za-z0-9_-]{43})\n", cp.stdout)
        self.assertIsNotNone(match, cp.stdout)
        secret = match.group(1)
        self.assertIn("only once", cp.stderr)

        cp = self.ok("keys", "create", "--name", "ops-one", "--role", "operator", "--quiet")
        self.assertRegex(cp.stdout, r"^cbk_[A-Za-z0-9_-]{43}\n$")
        self.assertEqual(cp.stderr, "")
        quiet_secret = cp.stdout.strip()
        self.assertNotEqual(secret, quiet_secret)

        # Redis keeps no secret.
        r = self.cluster.redis()
        for key in r.scan_keys("apikey:*"):
            kind = r("TYPE", key)
            values = r("HGETALL", key) if kind == "hash" else [r("GET", key) or b""]
            for v in values:
                self.assertNotIn(secret.encode(), v)
                self.assertNotIn(quiet_secret.encode(), v)

        cp = self.ok("keys", "list")
        self.assertNotIn("cbk_", cp.stdout)
        self.assertRegex(cp.stdout, r"app-one\s+reporter_app\s+10/s\s+" + ISO_SHANGHAI)
        self.assertRegex(cp.stdout, r"ops-one\s+operator\s+unlimited\s+" + ISO_SHANGHAI)
        listed = {k["name"]: k for k in json.loads(self.ok("keys", "list", "--json").stdout)}
        self.assertEqual(listed["app-one"]["role"], "reporter_app")
        self.assertEqual(listed["app-one"]["rate"], 10)
        self.assertNotIn("cbk_", json.dumps(listed))

        # A second key of that name is refused and the first one stays.
        cp = self.cli("keys", "create", "--name", "app-one", "--role", "hotline")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("app-one", cp.stderr)

        cp = self.ok("keys", "revoke", "app-one")
        self.assertIn("revoked", cp.stdout)
        listed = json.loads(self.ok("keys", "list", "--json").stdout)
        self.assertNotIn("app-one", [k["name"] for k in listed])
        self.assertIn("ops-one", [k["name"] for k in listed])
        cp = self.cli("keys", "revoke", "app-one")
        self.assertEqual(cp.returncode, 1)
        self.assertIn("no key named 'app-one'", cp.stderr)

    def test_keys_usage_errors(self):
        for args in (["keys", "create", "--role", "operator"],
                     ["keys", "create", "--name", "x"],
                     ["keys", "create", "--name", "x", "--role", "mayor"],
                     ["keys", "create", "--name", "x", "--role", "admin", "--rate", "fast"],
                     ["keys", "create", "--name", "x", "--role", "admin", "--rate", "-1"],
                     ["keys", "revoke"],
                     ["keys", "revoke", "a", "b"]):
            with self.subTest(args=args):
                cp = self.cli(*args)
                self.assertEqual(cp.returncode, 2, cp.stderr)
                self.assertIn("Usage: civicbus keys", cp.stderr)
        listed = json.loads(self.ok("keys", "list", "--json").stdout)
        self.assertNotIn("x", [k["name"] for k in listed])

    # ---- grids ----

    def test_grids_load_counts_the_file(self):
        data = load_json(GRIDS)
        grids = sum(1 for f in data["features"] if f["properties"]["level"] == "grid")
        before = self.stored_version("grids")
        cp = self.ok("grids", "load", GRIDS)
        match = re.fullmatch(r"loaded (\d+) grids \(version (\d+)\)\n", cp.stdout)
        self.assertIsNotNone(match, cp.stdout)
        self.assertEqual(int(match.group(1)), grids)
        self.assertEqual(int(match.group(2)), before + 1)
        self.assertEqual(self.stored_version("grids"), before + 1)
        r = self.cluster.redis()
        self.assertEqual(json.loads(r("HGET", "cfg:grids", "json"))["features"][0],
                         data["features"][0])

        cp = self.ok("grids", "show")
        self.assertRegex(cp.stdout, rf"grid\s+{grids}\n")
        self.assertRegex(cp.stdout, rf"total\s+{len(data['features'])}\n")

    def test_grids_load_broken_stores_nothing(self):
        self.ok("grids", "load", GRIDS)
        version = self.stored_version("grids")
        data = load_json(GRIDS)
        index = next(i for i, f in enumerate(data["features"])
                     if f["properties"]["level"] == "grid")
        code = data["features"][index]["properties"]["code"]
        data["features"][index]["properties"]["parent"] = "999999999"
        broken = self.write("broken-grids.geojson", data)
        cp = self.cli("grids", "load", broken)
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn(f"features[{index}]", cp.stderr)
        self.assertIn(code, cp.stderr)
        self.assertIn("nothing was stored", cp.stderr)
        self.assertEqual(cp.stdout, "")
        self.assertEqual(self.stored_version("grids"), version)

        cp = self.cli("grids", "load", self.write("truncated.geojson", '{"type": "FeatureCo'))
        self.assertEqual(cp.returncode, 1)
        self.assertEqual(self.stored_version("grids"), version)

        cp = self.cli("grids", "load", os.path.join(self.tmp, "no-such-file.geojson"))
        self.assertEqual(cp.returncode, 1)
        self.assertIn("no-such-file.geojson", cp.stderr)

        cp = self.ok("grids", "load", "--check", GRIDS)
        self.assertIn("is valid", cp.stdout)
        self.assertEqual(self.cli("grids", "load", "--check", broken).returncode, 1)
        self.assertEqual(self.stored_version("grids"), version)

    def test_grids_locate_and_show_code(self):
        self.ok("grids", "load", GRIDS)
        data = load_json(GRIDS)
        by_code = {f["properties"]["code"]: f for f in data["features"]}
        grid = [f for f in data["features"] if f["properties"]["level"] == "grid"][37]
        code = grid["properties"]["code"]
        lat, lon = ring_center(grid)
        cp = self.ok("grids", "locate", f"{lat:.7f}", f"{lon:.7f}")
        path = area_path(by_code, code)
        found = re.findall(r"^(\w+)\s+(\S+)\s+(.+)$", cp.stdout, re.M)[1:]
        self.assertEqual([c for _, c, _ in found], path)
        self.assertEqual(found[-1][2], grid["properties"]["name"])

        cp = self.ok("grids", "show", "--code", path[1])
        self.assertEqual([c for _, c, _ in re.findall(r"^(\w+)\s+(\d+)\s+(.+)$", cp.stdout, re.M)],
                         path[:2])

        cp = self.cli("grids", "locate", "0", "0")
        self.assertEqual(cp.returncode, 1)
        self.assertIn("no grid contains", cp.stderr)
        for args in (["91", "118"], ["32", "east"], ["32"], ["32", "118", "7"]):
            with self.subTest(args=args):
                self.assertEqual(self.cli("grids", "locate", *args).returncode, 2)
        # Negative coordinates are numbers, not options.
        self.assertEqual(self.cli("grids", "locate", "-33.86", "151.2").returncode, 1)

    # ---- catalogue ----

    def test_catalog_load_ok_and_broken(self):
        data = load_json(CATALOG)
        before = self.stored_version("catalog")
        cp = self.ok("catalog", "load", CATALOG)
        self.assertIn(f"{len(data['categories'])} categories", cp.stdout)
        self.assertIn(f"{len(data['rules'])} rules", cp.stdout)
        self.assertIn(f"(version {before + 1})", cp.stdout)
        self.assertEqual(self.stored_version("catalog"), before + 1)

        broken = json.loads(json.dumps(data))
        broken["rules"][3]["department"] = "polce"
        cp = self.cli("catalog", "load", self.write("broken-catalog.json", broken))
        self.assertEqual(cp.returncode, 1)
        self.assertIn("rules[3]", cp.stderr)
        self.assertIn("polce", cp.stderr)
        self.assertEqual(self.stored_version("catalog"), before + 1)

        cp = self.ok("catalog", "show")
        for dept in data["departments"]:
            self.assertIn(dept["code"], cp.stdout)
        shown = json.loads(self.ok("catalog", "show", "--json").stdout)
        self.assertEqual(shown["version"], data["version"])
        self.assertEqual(shown["rules"], len(data["rules"]))
        self.assertEqual([d["code"] for d in shown["departments"]],
                         [d["code"] for d in data["departments"]])
        self.assertEqual(len(shown["categories"]), len(data["categories"]))

    def test_catalog_route_names_the_rule(self):
        self.ok("grids", "load", GRIDS)
        self.ok("catalog", "load", CATALOG)
        grids = load_json(GRIDS)
        rules = load_json(CATALOG)["rules"]
        # An area rule: the category, inside that area, goes elsewhere than outside it.
        area_index, area_rule = next((i, r) for i, r in enumerate(rules)
                                     if r["area"] != "*" and r["request_type"] == "*"
                                     and not r["category"].endswith("*"))
        category = area_rule["category"]
        base_index = next(i for i, r in enumerate(rules)
                          if r["category"] == category and r["area"] == "*"
                          and r["request_type"] == "*")
        inside = next(f for f in grids["features"] if f["properties"]["level"] == "grid"
                      and f["properties"]["code"].startswith(area_rule["area"]))
        outside = next(f for f in grids["features"] if f["properties"]["level"] == "grid"
                       and not f["properties"]["code"].startswith(area_rule["area"]))

        lat, lon = ring_center(inside)
        cp = self.ok("catalog", "route", "--category", category, "--lat", f"{lat:.7f}",
                     "--lon", f"{lon:.7f}", "--type", "report")
        self.assertRegex(cp.stdout, rf"department\s+{area_rule['department']}\b")
        self.assertIn(f"rules[{area_index}]", cp.stdout)
        self.assertIn(inside["properties"]["code"], cp.stdout)
        for co in area_rule.get("co_handlers", []):
            self.assertIn(co, cp.stdout)

        lat, lon = ring_center(outside)
        cp = self.ok("catalog", "route", "--category", category, "--lat", f"{lat:.7f}",
                     "--lon", f"{lon:.7f}")
        self.assertRegex(cp.stdout, rf"department\s+{rules[base_index]['department']}\b")
        self.assertIn(f"rules[{base_index}]", cp.stdout)

        shown = json.loads(self.ok("catalog", "show", "--category", category, "--json").stdout)
        by_area = {(x["area"], x["request_type"]): x for x in shown["routes"]}
        self.assertEqual(by_area[(area_rule["area"], "*")]["department"], area_rule["department"])
        self.assertEqual(by_area[("*", "*")]["rule"], f"rules[{base_index}]")

        # An unknown category falls to the catalogue's fallback.
        fallback = load_json(CATALOG).get("fallback")
        cp = self.cli("catalog", "route", "--category", "no.such.category", "--lat", f"{lat:.7f}",
                      "--lon", f"{lon:.7f}")
        if fallback:
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertRegex(cp.stdout, rf"department\s+{fallback['department']}\b")
            self.assertIn("fallback", cp.stdout)
        for args in (["--lat", "32", "--lon", "118"],
                     ["--category", category, "--lat", "32"],
                     ["--category", category, "--type", "praise"]):
            with self.subTest(args=args):
                self.assertEqual(self.cli("catalog", "route", *args).returncode, 2)

    # ---- calendar ----

    def test_calendar_due(self):
        # 2026-09-30 is a Wednesday: 16:00-17:30 gives 1.5 h; 10-01..10-07 are
        # holidays; Thursday 10-08 gives 3.5 h by 12:00 and the last 3 h run
        # from 14:00 to 17:00.
        cp = self.ok("calendar", "due", "--start", "2026-09-30T16:00+08:00", "--working-hours", "8")
        self.assertEqual(cp.stdout, "2026-10-08T17:00:00+08:00\n")
        # One working day is 7 h: 1.5 h, then 5.5 h on 10-08: 12:00 + 2 h.
        cp = self.ok("calendar", "due", "--start", "2026-09-30T16:00+08:00", "--working-days", "1")
        self.assertEqual(cp.stdout, "2026-10-08T16:00:00+08:00\n")
        # Friday 10-09 17:00: half an hour that day, then Saturday 10-10 is an
        # adjusted working day opening at 08:30.
        cp = self.ok("calendar", "due", "--start", "2026-10-09T17:00+08:00", "--working-hours", "1")
        self.assertEqual(cp.stdout, "2026-10-10T09:00:00+08:00\n")
        # Ending exactly at a closing time returns the closing time.
        cp = self.ok("calendar", "due", "--start", "2026-09-30T08:30+08:00",
                     "--working-hours", "3.5")
        self.assertEqual(cp.stdout, "2026-09-30T12:00:00+08:00\n")
        # Calendar hours ignore holidays; UTC input is converted.
        cp = self.ok("calendar", "due", "--start", "2026-09-30T08:00Z", "--hours", "8")
        self.assertEqual(cp.stdout, "2026-10-01T00:00:00+08:00\n")
        cp = self.ok("calendar", "due", "--start", "2026-09-30T16:00+08:00", "--working-hours", "8",
                     "--calendar", CALENDAR)
        self.assertEqual(cp.stdout, "2026-10-08T17:00:00+08:00\n")

        for args in ([],
                     ["--start", "2026-09-30T16:00+08:00"],
                     ["--start", "2026-09-30T16:00+08:00", "--hours", "1", "--working-days", "1"],
                     ["--start", "yesterday", "--hours", "1"],
                     ["--start", "2026-09-30T16:00+08:00", "--hours", "-1"],
                     ["--start", "2026-09-30T16:00+08:00", "--hours", "soon"]):
            with self.subTest(args=args):
                cp = self.cli("calendar", "due", *args)
                self.assertEqual(cp.returncode, 2, cp.stdout)
                self.assertEqual(cp.stdout, "")

    def test_calendar_load(self):
        before = self.stored_version("calendar")
        cp = self.ok("calendar", "load", CALENDAR)
        self.assertEqual(cp.stdout, f"loaded calendar 'cn-2026' (version {before + 1})\n")
        r = self.cluster.redis()
        self.assertEqual(json.loads(r("HGET", "cfg:calendar", "json")), load_json(CALENDAR))
        self.assertEqual(r("HGET", "cfg:calendar", "name"), b"cn-2026")

        broken = load_json(CALENDAR)
        broken["holidays"][2] = "2026-02-30"
        cp = self.cli("calendar", "load", self.write("broken-calendar.json", broken))
        self.assertEqual(cp.returncode, 1)
        self.assertIn("holidays[2]", cp.stderr)
        self.assertEqual(self.stored_version("calendar"), before + 1)

        # The stored calendar is the one `due` counts on: with every weekday
        # closed but Monday, 1 working hour from Wednesday lands on Monday.
        mondays = load_json(CALENDAR)
        mondays["name"] = "mondays-only"
        for day in ("tue", "wed", "thu", "fri"):
            mondays["office_hours"][day] = []
        mondays["adjusted_working_days"] = []
        self.ok("calendar", "load", self.write("mondays.json", mondays))
        cp = self.ok("calendar", "due", "--start", "2026-11-04T10:00+08:00", "--working-hours", "1")
        self.assertEqual(cp.stdout, "2026-11-09T09:30:00+08:00\n")
        self.assertIn("mondays-only", cp.stderr)
        cp = self.ok("calendar", "due", "--builtin", "--start", "2026-11-04T10:00+08:00",
                     "--working-hours", "1")
        self.assertEqual(cp.stdout, "2026-11-04T11:00:00+08:00\n")
        self.ok("calendar", "load", CALENDAR)

    # ---- certificates and adapter keys ----

    def test_certs_new_and_adapters_register(self):
        self.ok("catalog", "load", CATALOG)
        out = os.path.join(self.tmp, "certs")
        cp = self.ok("certs", "new", "police-1", "--out", out)
        match = re.fullmatch(r"public key: (\S{40})\n", cp.stdout)
        self.assertIsNotNone(match, cp.stdout)
        public_key = match.group(1)
        cert = os.path.join(out, "police-1.cert")
        secret = cert + "_secret"
        with open(cert, encoding="utf-8") as f:
            public_text = f.read()
        self.assertIn(public_key, public_text)
        self.assertNotIn("secret-key", public_text)
        with open(secret, encoding="utf-8") as f:
            self.assertIn("secret-key", f.read())
        self.assertEqual(stat.S_IMODE(os.stat(secret).st_mode), 0o600)

        # Never overwrites.
        cp = self.cli("certs", "new", "police-1", "--out", out)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("exists", cp.stderr)
        with open(cert, encoding="utf-8") as f:
            self.assertEqual(f.read(), public_text)

        r = self.cluster.redis()
        self.ok("adapters", "register", "police", cert)
        self.assertEqual(r("HGET", "adapters:keys", public_key), b"police")
        self.ok("adapters", "register", "police", cert)  # again: same answer
        cp = self.cli("adapters", "register", "urban", cert)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("police", cp.stderr)
        self.assertEqual(r("HGET", "adapters:keys", public_key), b"police")

        self.ok("certs", "new", "stray", "--out", out)
        cp = self.cli("adapters", "register", "polce", os.path.join(out, "stray.cert"))
        self.assertEqual(cp.returncode, 1)
        self.assertIn("not in the catalogue", cp.stderr)
        cp = self.cli("adapters", "register", "police", os.path.join(out, "missing.cert"))
        self.assertEqual(cp.returncode, 1)

        listed = json.loads(self.ok("adapters", "list", "--json").stdout)
        self.assertIn({"department": "police", "public_key": public_key}, listed)
        self.assertEqual(len(listed), r("HLEN", "adapters:keys"))
        self.ok("adapters", "unregister", cert)
        self.assertIsNone(r("HGET", "adapters:keys", public_key))
        self.assertEqual(self.cli("adapters", "unregister", cert).returncode, 1)

        self.assertEqual(self.cli("certs", "new", "x").returncode, 2)
        self.assertEqual(self.cli("certs", "new", "../evil", "--out", out).returncode, 2)
        self.assertEqual(self.cli("adapters", "register", "police").returncode, 2)

    # ---- tickets ----

    def encode(self, message, text):
        protoc = shutil.which("protoc-c") or shutil.which("protoc")
        if not protoc:
            self.skipTest("needs protoc-c (or protoc) to encode a ticket for the store")
        cp = subprocess.run([protoc, f"--encode=civicbus.v1.{message}", f"-I{PROTO_DIR}",
                             os.path.join(PROTO_DIR, "civicbus", "v1", "civicbus.proto")],
                            input=text.encode("utf-8"), capture_output=True)
        self.assertEqual(cp.returncode, 0, cp.stderr.decode())
        return cp.stdout

    def store_ticket(self, ticket_id, state, department, created_ms, events):
        """Writes a ticket the way ticket_store lays it out (ticket_store.h)."""
        bucket = int(ticket_id.rsplit("-", 1)[1]) % 64
        tag = "{b%02d}" % bucket
        pb = self.encode("Ticket", f'''
            id: "{ticket_id}" source: SOURCE_HOTLINE request_type: COMPLAINT
            category: "urban.facility.public.manhole" urgency: URGENCY_URGENT
            description: "井盖缺失，很危险。请回电13812345678"
            location {{ lat: 32.0289 lon: 118.7312 has_point: true address: "江东中路1号"
                        grid_code: "320105001001001" grid_path: "320105" grid_path: "320105001"
                        grid_path: "320105001001" grid_path: "320105001001001" }}
            reporter {{ name: "张三丰" phone: "13812345678" }}
            state: {state} department: "{department}" version: {len(events)}
            created_ms: {created_ms} updated_ms: {created_ms + 60000} event_count: {len(events)}
            policy: "urban-4h"''')
        r = self.cluster.redis()
        r("HSET", f"t:{tag}:{ticket_id}", "pb", pb, "v", len(events), "st", state)
        for seq, (kind, actor, frm, to, note, offset) in enumerate(events, 1):
            r("RPUSH", f"ev:{tag}:{ticket_id}", self.encode("TicketEvent", f'''
                ticket_id: "{ticket_id}" sequence: {seq} type: "{kind}" {actor}
                time_ms: {created_ms + offset} from_state: {frm} to_state: {to}
                note: "{note}"'''))
        for index in ("all", f"st:{state}", f"dept:{department}"):
            r("ZADD", f"idx:{tag}:{index}", created_ms, ticket_id)

    def test_ticket_show_and_list(self):
        ticket_id = "320105-20260930-000000071"
        created = 1790755200000  # 2026-09-30T16:00:00+08:00
        self.store_ticket(ticket_id, "DISPATCHED", "urban", created, [
            ("received", 'actor { kind: ACTOR_REPORTER id: "hotline-12345" name: "张三丰" }',
             "TICKET_STATE_UNSPECIFIED", "RECEIVED", "来电人13812345678", 0),
            ("accept", 'actor { kind: ACTOR_SYSTEM id: "dispatcher-a" }',
             "RECEIVED", "ACCEPTED", "", 1000),
            ("dispatch", 'actor { kind: ACTOR_SYSTEM id: "dispatcher-a" }',
             "ACCEPTED", "DISPATCHED", "rules[5]", 2000),
        ])
        cp = self.ok("ticket", "show", ticket_id)
        out = cp.stdout
        self.assertRegex(out, rf"ticket\s+{ticket_id}")
        self.assertRegex(out, r"state\s+DISPATCHED")
        self.assertRegex(out, r"department\s+urban")
        self.assertIn("320105 > 320105001 > 320105001001 > 320105001001001", out)
        self.assertNotIn("13812345678", out)
        self.assertNotIn("张三丰", out)
        self.assertIn("138****5678", out)
        self.assertIn("张**", out)
        rows = [line for line in out.splitlines() if re.match(ISO_SHANGHAI, line)]
        self.assertEqual(len(rows), 3, out)
        self.assertTrue(rows[0].startswith("2026-09-30T16:00:00+08:00"))
        self.assertTrue(rows[2].startswith("2026-09-30T16:00:02+08:00"))
        self.assertRegex(rows[0], r"received\s+reporter hotline-12345 \(张\*\*\)\s+-> RECEIVED")
        self.assertRegex(rows[1], r"accept\s+system dispatcher-a\s+RECEIVED -> ACCEPTED")
        self.assertRegex(rows[2], r"dispatch\s+system dispatcher-a\s+ACCEPTED -> DISPATCHED\s+rules\[5\]")

        cp = self.ok("ticket", "show", ticket_id, "--unmasked")
        self.assertIn("13812345678", cp.stdout)
        self.assertIn("张三丰", cp.stdout)

        shown = json.loads(self.ok("ticket", "show", ticket_id, "--json").stdout)
        self.assertEqual(shown["ticket"]["id"], ticket_id)
        self.assertEqual(shown["ticket"]["reporter"]["phone"], "138****5678")
        self.assertEqual([e["type"] for e in shown["history"]], ["received", "accept", "dispatch"])
        self.assertNotIn("13812345678", json.dumps(shown, ensure_ascii=False))

        cp = self.cli("ticket", "show", "320105-20260930-000000135")
        self.assertEqual(cp.returncode, 1)
        self.assertIn("no ticket", cp.stderr)
        self.assertEqual(self.cli("ticket", "show", "not-a-ticket").returncode, 2)
        self.assertEqual(self.cli("ticket", "show").returncode, 2)

        # A second, older ticket in another bucket and state.
        older = "320105-20260929-000000130"  # bucket 2
        self.store_ticket(older, "RECEIVED", "police", created - 86400000, [
            ("received", 'actor { kind: ACTOR_SYSTEM id: "intake" }',
             "TICKET_STATE_UNSPECIFIED", "RECEIVED", "", 0)])
        listed = json.loads(self.ok("ticket", "list", "--json").stdout)
        ids = [t["id"] for t in listed]
        self.assertLess(ids.index(ticket_id), ids.index(older))  # newest first
        self.assertEqual([t["id"] for t in json.loads(
            self.ok("ticket", "list", "--state", "dispatched", "--json").stdout)], [ticket_id])
        self.assertEqual([t["id"] for t in json.loads(
            self.ok("ticket", "list", "--department", "police", "--json").stdout)], [older])
        self.assertEqual(json.loads(self.ok("ticket", "list", "--state", "RECEIVED",
                                            "--department", "urban", "--json").stdout), [])
        self.assertEqual(len(json.loads(self.ok("ticket", "list", "--limit", "1",
                                                "--json").stdout)), 1)
        cp = self.ok("ticket", "list")
        self.assertRegex(cp.stdout, rf"{ticket_id}\s+DISPATCHED\s+urban.facility.public.manhole\s+urban")
        for args in (["--state", "LOST"], ["--limit", "0"], ["--limit", "many"]):
            with self.subTest(args=args):
                self.assertEqual(self.cli("ticket", "list", *args).returncode, 2)

    def test_ticket_show_of_a_posted_ticket(self):
        intake = os.path.join(harness.BIN_DIR, "civicbus-intake")
        if not os.path.exists(intake):
            self.skipTest("civicbus-intake is not built: the posted-ticket case needs it")
        self.ok("grids", "load", GRIDS)
        self.ok("catalog", "load", CATALOG)
        secret = self.ok("keys", "create", "--name", "posting-app", "--role", "admin",
                         "--quiet").stdout.strip()
        port = harness.free_port()
        proc = self.cluster.start("intake", env={
            "CIVICBUS_INTAKE_LISTEN": f"127.0.0.1:{port}",
            "CIVICBUS_DOORBELL_ENDPOINTS": f"tcp://127.0.0.1:{harness.free_port()}"})
        try:
            def healthy():
                if not proc.alive():
                    raise AssertionError("civicbus-intake exited:\n" + proc.log()[-2000:])
                return harness.http_request("GET", f"http://127.0.0.1:{port}/healthz",
                                            timeout=2).status == 200
            harness.wait_until(healthy, 20, what="the intake's /healthz")
            grid = next(f for f in load_json(GRIDS)["features"]
                        if f["properties"]["level"] == "grid")
            lat, lon = ring_center(grid)
            response = harness.http_request(
                "POST", f"http://127.0.0.1:{port}/v1/tickets",
                body={"source": "hotline", "request_type": "complaint",
                      "category": "urban.facility.public.manhole",
                      "description": "井盖缺失，请回电13912345678",
                      "location": {"lat": lat, "lon": lon},
                      "reporter": {"name": "李四", "phone": "13912345678"}},
                headers={"Authorization": f"Bearer {secret}",
                         "Idempotency-Key": "cli-test-posted-1"})
            self.assertIn(response.status, (200, 201), response)
            ticket_id = response.json()["id"]
            cp = self.ok("ticket", "show", ticket_id)
            self.assertRegex(cp.stdout, rf"ticket\s+{ticket_id}")
            self.assertIn(grid["properties"]["code"], cp.stdout)
            self.assertRegex(cp.stdout, r"\breceived\b")
            self.assertNotIn("13912345678", cp.stdout)
            self.assertIn("139****5678", cp.stdout)
        finally:
            self.assertEqual(proc.stop(), 0, proc.log()[-2000:])

    # ---- status ----

    def test_status(self):
        r = self.cluster.redis()
        r("DEL", "lease:dispatcher")
        cp = self.ok("status")
        self.assertIn(f"127.0.0.1:{self.cluster.redis_port} reachable", cp.stdout)
        self.assertIn("none active", cp.stdout)

        r("SET", "lease:dispatcher", "dispatcher-test-1", "PX", 60000)
        r("ZADD", "inbox:{b03}", 1, "a", 2, "b")
        r("ZADD", "inbox:{b60}", 1, "c")
        r("ZADD", "opq:{b11}", 1, "d")
        try:
            cp = self.ok("status")
            self.assertIn("active: dispatcher-test-1", cp.stdout)
            self.assertRegex(cp.stdout, r"inbox\s+3 tickets")
            self.assertRegex(cp.stdout, r"operators\s+1 ticket ")
            status = json.loads(self.ok("status", "--json").stdout)
            self.assertEqual(status["dispatcher"]["holder"], "dispatcher-test-1")
            self.assertEqual(status["inbox"], 3)
            self.assertEqual(status["operators_queue"], 1)
            self.ok("grids", "load", GRIDS)
            status = json.loads(self.ok("status", "--json").stdout)
            self.assertEqual(status["grids"]["version"], self.stored_version("grids"))
        finally:
            r("DEL", "lease:dispatcher", "inbox:{b03}", "inbox:{b60}", "opq:{b11}")

    def test_unreachable_redis_says_what_to_do(self):
        port = harness.free_port()
        for args in (["status"], ["keys", "list"], ["grids", "load", GRIDS]):
            with self.subTest(args=args):
                cp = self.cli("--redis", f"redis://127.0.0.1:{port}/0", *args)
                self.assertEqual(cp.returncode, 1)
                self.assertIn(f"cannot reach Redis at 127.0.0.1:{port} (connection refused). "
                              "Is ./scripts/up running?", cp.stderr)
        cp = self.cli("status", env={"CIVICBUS_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
        self.assertIn(f"127.0.0.1:{port}", cp.stderr)
        cp = self.cli("--redis", "http://example", "status")
        self.assertEqual(cp.returncode, 1)
        self.assertIn("http://example", cp.stderr)

    # ---- help and usage ----

    def test_help_of_every_command(self):
        cp = self.ok("--help")
        for words in COMMANDS:
            self.assertIn(" ".join(words), cp.stdout)
        self.assertRegex(self.ok("--version").stdout, r"^civicbus \d+\.\d+\.\d+")
        for words in COMMANDS:
            with self.subTest(command=words):
                cp = self.ok(*words, "--help")
                self.assertIn("Usage: civicbus " + " ".join(words), cp.stdout)
                self.assertEqual(cp.stderr, "")
        for group in sorted({w[0] for w in COMMANDS if len(w) > 1}):
            with self.subTest(group=group):
                cp = self.ok(group, "--help")
                self.assertIn(f"Usage: civicbus {group} COMMAND", cp.stdout)

    def test_usage_errors_exit_2(self):
        for args in ([], ["launch"], ["keys"], ["keys", "destroy"], ["keys", "list", "--colour"],
                     ["--no-such-option", "status"], ["status", "extra"], ["grids", "load"],
                     ["catalog", "load"], ["catalog", "show", "--category"],
                     ["calendar", "load"], ["keys", "list", "--json=yes"],
                     ["--redis"]):
            with self.subTest(args=args):
                cp = self.cli(*args)
                self.assertEqual(cp.returncode, 2, cp.stdout + cp.stderr)
                self.assertEqual(cp.stdout, "")
                self.assertRegex(cp.stderr, r"civicbus|Usage")


if __name__ == "__main__":
    harness.main()
