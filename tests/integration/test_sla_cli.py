"""`civicbus sla load|show|due` against a real Redis: the shipped policies
load and are stored with a bumped version, a broken file is refused naming
the policy and field and changes nothing, every policy the catalogue names is
shown, and `due` prints deadlines computed by hand from the 2026 calendar
(DESIGN.md norms), with the calendar in Redis, the built-in one, urgent
limits and the default policy for an unknown name. Exit codes: 0 done,
1 failed, 2 wrong command line."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

SLA = os.path.join(harness.CONFIG_DIR, "sla.json")
CATALOG = os.path.join(harness.CONFIG_DIR, "catalog.json")
CALENDAR = os.path.join(harness.CONFIG_DIR, "calendar-cn-2026.json")


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class SlaCli(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="civicbus-sla-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def cli(self, *args):
        return self.cluster.cli(*args, check=False)

    def ok(self, *args):
        cp = self.cli(*args)
        self.assertEqual(cp.returncode, 0, f"civicbus {' '.join(args)}:\n{cp.stdout}\n{cp.stderr}")
        return cp

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def stored(self):
        r = self.cluster.redis()
        try:
            return r("HGETALL", "cfg:sla")
        finally:
            r.close()

    def stored_version(self):
        fields = self.stored() or []
        pairs = dict(zip(fields[0::2], fields[1::2]))
        return int(pairs.get(b"version", pairs.get("version", 0)) or 0)

    def setUp(self):
        r = self.cluster.redis()
        try:
            r("DEL", "cfg:sla", "cfg:calendar")
        finally:
            r.close()
        self.ok("sla", "load", SLA)

    @staticmethod
    def lines(cp):
        """stdout as {'due': ..., 'warn': ..., 'step': [...]}."""
        out = {"step": []}
        for line in cp.stdout.splitlines():
            key, _, rest = line.partition("  ")
            if key == "step":
                out["step"].append(rest.strip())
            else:
                out[key.strip()] = rest.strip()
        return out

    # ---- load ----

    def test_load_stores_text_and_bumps_version(self):
        version = self.stored_version()
        self.assertGreaterEqual(version, 1)
        fields = self.stored()
        pairs = {k.decode() if isinstance(k, bytes) else k: v
                 for k, v in zip(fields[0::2], fields[1::2])}
        with open(SLA, "rb") as f:
            text = f.read()
        stored_json = pairs["json"] if isinstance(pairs["json"], bytes) else pairs["json"].encode()
        self.assertEqual(stored_json, text)
        count = pairs["count"].decode() if isinstance(pairs["count"], bytes) else pairs["count"]
        self.assertEqual(int(count), len(load_json(SLA)["policies"]))
        cp = self.ok("sla", "load", SLA)
        self.assertIn(f"loaded {len(load_json(SLA)['policies'])} time-limit policies", cp.stdout)
        self.assertEqual(self.stored_version(), version + 1)

    def test_broken_file_is_refused_and_changes_nothing(self):
        version = self.stored_version()
        doc = load_json(SLA)
        doc["policies"]["urban-4h"]["resolve"]["limit"] = {"workinghours": 4}
        cp = self.cli("sla", "load", self.write("broken.json", json.dumps(doc)))
        self.assertEqual(cp.returncode, 1)
        self.assertIn("policies.urban-4h.resolve.limit", cp.stderr)
        self.assertIn("nothing was stored", cp.stderr)
        self.assertEqual(self.stored_version(), version)
        doc = load_json(SLA)
        doc["default"] = "no-such"
        cp = self.cli("sla", "load", self.write("nodefault.json", json.dumps(doc)))
        self.assertEqual(cp.returncode, 1)
        self.assertIn("default", cp.stderr)
        self.assertEqual(self.cli("sla", "load").returncode, 2)
        self.assertEqual(self.cli("sla", "load", os.path.join(self.tmp, "missing.json")).returncode, 1)

    def test_check_needs_no_redis(self):
        unused = harness.free_port()
        cp = self.ok("--redis", f"redis://127.0.0.1:{unused}/0", "sla", "load", "--check", SLA)
        self.assertIn("is valid", cp.stdout)
        # Storing does need it.
        cp = self.cli("--redis", f"redis://127.0.0.1:{unused}/0", "sla", "load", SLA)
        self.assertEqual(cp.returncode, 1)

    # ---- show ----

    def test_show_lists_every_catalogue_policy(self):
        cp = self.ok("sla", "show")
        catalog = load_json(CATALOG)
        names = {rule["policy"] for rule in catalog["rules"]}
        names.add(catalog["fallback"]["policy"])
        shown = {line.split()[0] for line in cp.stdout.splitlines()[2:] if line.strip()}
        self.assertTrue(names <= shown, f"missing: {names - shown}")
        cp = self.ok("sla", "show", "--policy", "urban-4h")
        self.assertIn("4 working_hours", cp.stdout)
        self.assertIn("urgent tickets:", cp.stdout)
        cp = self.cli("sla", "show", "--policy", "no-such")
        self.assertEqual(cp.returncode, 1)
        self.assertIn("default 'standard-5d'", cp.stderr)

    def test_no_policies_loaded(self):
        r = self.cluster.redis()
        try:
            r("DEL", "cfg:sla")
        finally:
            r.close()
        cp = self.cli("sla", "due", "--policy", "standard-5d", "--stage", "sign",
                      "--start", "2026-09-30T16:00+08:00")
        self.assertEqual(cp.returncode, 1)
        self.assertIn("civicbus sla load", cp.stderr)
        # --file works without anything stored.
        cp = self.ok("sla", "due", "--policy", "standard-5d", "--stage", "sign",
                     "--start", "2026-09-30T16:00+08:00", "--file", SLA, "--builtin")
        self.assertEqual(self.lines(cp)["due"], "2026-10-08T16:00:00+08:00")

    # ---- due ----

    def test_due_on_the_2026_calendar(self):
        # Sign within 1 working day (7 h) from Wednesday 16:00 before National
        # Day: 1.5 h, Oct 1-7 off, 3.5 h on Thursday morning, 2 h after
        # lunch. Yellow at 80%: 5 h 36 min. Escalation: at due, one working
        # day later, three working days later (Saturday Oct 10 is worked).
        out = self.lines(self.ok("sla", "due", "--policy", "standard-5d", "--stage", "sign",
                                 "--start", "2026-09-30T16:00+08:00"))
        self.assertEqual(out["due"], "2026-10-08T16:00:00+08:00")
        self.assertEqual(out["warn"], "2026-10-08T14:36:00+08:00")
        self.assertEqual([s.split()[0] for s in out["step"]],
                         ["2026-10-08T16:00:00+08:00", "2026-10-09T16:00:00+08:00",
                          "2026-10-12T16:00:00+08:00"])
        self.assertIn("alert community", out["step"][0])
        self.assertIn("alert district", out["step"][2])
        # Resolve in 5 working days from the worked Saturday Oct 10, 09:00.
        out = self.lines(self.ok("sla", "due", "--policy", "standard-5d", "--stage", "resolve",
                                 "--start", "2026-10-10T09:00+08:00"))
        self.assertEqual(out["due"], "2026-10-16T09:00:00+08:00")
        self.assertEqual(out["warn"], "2026-10-15T09:00:00+08:00")
        # Exposed rubbish: 4 working hours from 11:00.
        out = self.lines(self.ok("sla", "due", "--policy", "urban-4h", "--stage", "resolve",
                                 "--start", "2026-03-10T11:00+08:00"))
        self.assertEqual(out["due"], "2026-03-10T17:00:00+08:00")
        # Urgent: 2 calendar hours to sign, at night on a holiday.
        out = self.lines(self.ok("sla", "due", "--policy", "standard-5d", "--stage", "sign",
                                 "--urgent", "--start", "2026-10-03T23:00+08:00"))
        self.assertEqual(out["due"], "2026-10-04T01:00:00+08:00")
        self.assertEqual(out["warn"], "2026-10-04T00:36:00+08:00")
        # An unknown policy is timed by the default, with a note.
        cp = self.ok("sla", "due", "--policy", "no-such", "--stage", "sign",
                     "--start", "2026-09-30T16:00+08:00")
        self.assertEqual(self.lines(cp)["due"], "2026-10-08T16:00:00+08:00")
        self.assertIn("default 'standard-5d'", cp.stderr)

    def test_due_uses_the_calendar_in_redis(self):
        # A calendar where Thursday Oct 8 is a holiday too: the 5.5 h left
        # after Sep 30 are counted on Friday Oct 9 (3.5 + 2): 16:00.
        calendar = load_json(CALENDAR)
        calendar["name"] = "cn-2026-test"
        calendar["holidays"].append({"date": "2026-10-08", "name": "test"})
        self.ok("calendar", "load", self.write("calendar.json", json.dumps(calendar)))
        cp = self.ok("sla", "due", "--policy", "standard-5d", "--stage", "sign",
                     "--start", "2026-09-30T16:00+08:00")
        self.assertEqual(self.lines(cp)["due"], "2026-10-09T16:00:00+08:00")
        self.assertIn("cn-2026-test", cp.stderr)
        # --builtin ignores it.
        cp = self.ok("sla", "due", "--policy", "standard-5d", "--stage", "sign",
                     "--start", "2026-09-30T16:00+08:00", "--builtin")
        self.assertEqual(self.lines(cp)["due"], "2026-10-08T16:00:00+08:00")

    def test_usage_errors(self):
        base = ["--policy", "standard-5d", "--stage", "sign", "--start", "2026-09-30T16:00+08:00"]
        self.ok("sla", "due", *base)
        for bad in (["--stage", "sign", "--start", "2026-09-30T16:00"],
                    ["--policy", "p", "--start", "2026-09-30T16:00"],
                    ["--policy", "p", "--stage", "sigh", "--start", "2026-09-30T16:00"],
                    ["--policy", "p", "--stage", "sign"],
                    ["--policy", "p", "--stage", "sign", "--start", "yesterday"],
                    base + ["--builtin", "--calendar", CALENDAR],
                    base + ["--bogus"]):
            with self.subTest(args=bad):
                cp = self.cli("sla", "due", *bad)
                self.assertEqual(cp.returncode, 2, cp.stderr)
        for command in ("load", "show", "due"):
            with self.subTest(help=command):
                cp = self.ok("sla", command, "--help")
                self.assertIn("sla " + command, cp.stdout)


if __name__ == "__main__":
    harness.main()
