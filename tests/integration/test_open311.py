"""Open311 GeoReport v2 on the intake (docs/OPEN311.md) against real Redis,
the real intake and dispatcher, with the demo city loaded by the CLI and a
reporter_app key: every endpoint in both formats, every JSON answer checked
against the official schemas (tests/integration/open311-schemas, a copy of
../shared/open311/georeport-v2), every XML answer against the
specification's structure, every error code, a form-encoded POST read back
through GET requests/{id} and GET requests, the FixMyStreet updates
extension read back, discovery, and no personal data in any answer."""
import datetime
import json
import os
import re
import sys
import urllib.parse
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

GRIDS = os.path.join(harness.CONFIG_DIR, "grids.geojson")
CATALOG = os.path.join(harness.CONFIG_DIR, "catalog.json")
MANHOLE = "urban.facility.public.manhole"     # questions: cover_type (list), open_shaft (required)
LIGHT = "urban.facility.public.streetlight"   # question: pole_number (string)
PHONE = "13912345678"
NAME_LAST, NAME_FIRST = "欧阳", "娜娜"
EMAIL = "nana.ouyang@example.cn"

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


# ---- the schemas ----

def schema_dir():
    here = os.path.join(os.path.dirname(__file__), "open311-schemas")
    if os.path.exists(os.path.join(here, "request.json")):
        return here
    return os.path.join(harness.SOURCE_DIR, "..", "shared", "open311", "georeport-v2")


def load_schema(name):
    with open(os.path.join(schema_dir(), name), encoding="utf-8") as f:
        return json.load(f)


def mini_validate(instance, schema, path="$"):
    """The subset of JSON Schema the GeoReport schemas use (type, required,
    properties, enum, anyOf, items, maxLength), for a Python without
    jsonschema. Returns a list of problems."""
    problems = []
    if "anyOf" in schema:
        if all(mini_validate(instance, s, path) for s in schema["anyOf"]):
            problems.append(f"{path}: matches none of anyOf")
        return problems
    kinds = {"string": str, "boolean": bool, "object": dict, "array": list,
             "null": type(None)}
    t = schema.get("type")
    if t == "number":
        ok = isinstance(instance, (int, float)) and not isinstance(instance, bool)
    elif t == "integer":
        ok = isinstance(instance, int) and not isinstance(instance, bool)
    elif t:
        ok = isinstance(instance, kinds[t])
    else:
        ok = True
    if not ok:
        return [f"{path}: {instance!r} is not of type {t}"]
    if "enum" in schema and instance not in schema["enum"]:
        problems.append(f"{path}: {instance!r} not in {schema['enum']}")
    if isinstance(instance, str) and "maxLength" in schema and len(instance) > schema["maxLength"]:
        problems.append(f"{path}: longer than {schema['maxLength']}")
    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name not in instance:
                problems.append(f"{path}: '{name}' is required")
        for name, sub in schema.get("properties", {}).items():
            if name in instance:
                problems += mini_validate(instance[name], sub, f"{path}.{name}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            problems += mini_validate(item, schema["items"], f"{path}[{i}]")
    return problems


def validate(instance, schema_name):
    """Validates against a schema file; list schemas (services.json,
    requests.json) refer to their item schema by file name, resolved here."""
    schema = load_schema(schema_name)
    items = schema.get("items", {})
    if "$ref" in items:
        assert isinstance(instance, list), f"{schema_name}: not an array: {instance!r}"
        for item in instance:
            validate(item, items["$ref"])
        return
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        jsonschema.Draft7Validator(schema).validate(instance)
    else:
        problems = mini_validate(instance, schema)
        assert not problems, f"{schema_name}: {problems}"
    # "format": "date-time" is not checked by validators without extras: here it is.
    for name, sub in schema.get("properties", {}).items():
        formats = [s.get("format") for s in sub.get("anyOf", [sub])]
        if "date-time" in formats and isinstance(instance.get(name), str):
            assert ISO.match(instance[name]), f"{name}: {instance[name]!r} is not ISO 8601 with a zone"


# ---- XML structure (the specification's element names) ----

SERVICE_FIELDS = {"service_code", "service_name", "description", "metadata", "type",
                  "keywords", "group"}
REQUEST_FIELDS = {"service_request_id", "status", "status_notes", "service_name",
                  "service_code", "description", "agency_responsible", "service_notice",
                  "requested_datetime", "updated_datetime", "expected_datetime", "address",
                  "address_id", "zipcode", "lat", "long", "media_url"}
ATTRIBUTE_FIELDS = {"variable", "code", "datatype", "required", "datatype_description",
                    "order", "description", "values"}
UPDATE_FIELDS = {"update_id", "service_request_id", "status", "updated_datetime",
                 "description", "media_url"}


def parse_xml(resp):
    assert resp.headers["content-type"].startswith("text/xml"), resp.headers
    assert resp.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), resp.body[:80]
    return ET.fromstring(resp.body)


def children(element):
    return {c.tag: c for c in element}


def check_fields(test, element, allowed, required):
    tags = [c.tag for c in element]
    test.assertEqual(len(tags), len(set(tags)), f"repeated elements in <{element.tag}>")
    test.assertLessEqual(set(tags), allowed, f"unknown elements in <{element.tag}>")
    test.assertLessEqual(set(required), set(tags), f"missing elements in <{element.tag}>")
    return children(element)


def check_bool(test, element):
    test.assertIn(element.text, ("true", "false"), element.tag)


def check_time(test, element):
    if element.text is not None:
        test.assertRegex(element.text, ISO, element.tag)


class Open311(harness.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        c = cls.cluster
        cls.r = c.redis()
        with open(CATALOG, encoding="utf-8") as f:
            cls.catalog = json.load(f)
        c.cli("grids", "load", GRIDS)
        c.cli("catalog", "load", CATALOG)
        cls.app = cls.make_key("open311-app", "reporter_app")
        cls.other_app = cls.make_key("open311-other", "reporter_app")
        cls.sensor = cls.make_key("open311-sensor", "sensor")
        doorbell = f"tcp://127.0.0.1:{harness.free_port()}"
        c.start("dispatcher", env={
            "CIVICBUS_DISPATCHER_ID": "dispatcher-open311-test",
            "CIVICBUS_DOORBELL_BIND": doorbell,
            "CIVICBUS_ADAPTER_BIND": f"tcp://127.0.0.1:{harness.free_port()}",
            "CIVICBUS_EVENTS_BIND": f"tcp://127.0.0.1:{harness.free_port()}",
            "CIVICBUS_LEASE_MS": "1500", "CIVICBUS_SWEEP_MS": "300",
        })
        port = harness.free_port()
        cls.intake = c.start("intake", env={
            "CIVICBUS_INTAKE_LISTEN": f"127.0.0.1:{port}",
            "CIVICBUS_DOORBELL_ENDPOINTS": doorbell,
            "CIVICBUS_APIKEY_CACHE_MS": "200"})
        cls.url = f"http://127.0.0.1:{port}/open311/v2/"
        harness.wait_until(lambda: harness.http_request(
            "GET", f"http://127.0.0.1:{port}/healthz").status == 200, 30, what="intake /healthz")
        harness.wait_until(lambda: cls.r("GET", "lease:dispatcher"), 30,
                           what="the dispatcher's lease")
        # A grid's centre (the demo grids are rectangles).
        with open(GRIDS, encoding="utf-8") as f:
            grid = next(x for x in json.load(f)["features"] if x["properties"]["level"] == "grid")
        ring = grid["geometry"]["coordinates"][0]
        if grid["geometry"]["type"] == "MultiPolygon":
            ring = ring[0]
        corners = ring[:-1]
        cls.lat = sum(p[1] for p in corners) / len(corners)
        cls.lon = sum(p[0] for p in corners) / len(corners)
        cls.native = f"http://127.0.0.1:{port}/v1/tickets"

    @classmethod
    def make_key(cls, name, role):
        cp = cls.cluster.cli("keys", "create", "--name", name, "--role", role, "--quiet")
        return cp.stdout.strip().splitlines()[-1].replace("key: ", "").strip()

    # ---- helpers ----

    def get(self, path, **query):
        q = ("?" + urllib.parse.urlencode(query)) if query else ""
        return harness.http_request("GET", self.url + path + q)

    def post(self, path, fields, content_type="application/x-www-form-urlencoded; charset=utf-8"):
        body = urllib.parse.urlencode(fields, doseq=True)
        return harness.http_request("POST", self.url + path, body,
                                    {"Content-Type": content_type})

    def form(self, **overrides):
        fields = [("api_key", self.app), ("service_code", MANHOLE),
                  ("lat", str(self.lat)), ("long", str(self.lon)),
                  ("description", f"井盖缺失，请回电{PHONE}"),
                  ("attribute[open_shaft]", "yes"), ("attribute[cover_type]", "sewage")]
        drop = {k for k, v in overrides.items() if v is None}
        fields = [(k, v) for k, v in fields if k not in overrides]
        fields += [(k, v) for k, v in overrides.items() if k not in drop]
        return fields

    def create(self, fmt="json", **overrides):
        resp = self.post("requests." + fmt, self.form(**overrides))
        self.assertEqual(resp.status, 200, resp)
        if fmt == "json":
            answer = resp.json()
            self.assertEqual(len(answer), 1)
            self.assertIn("service_request_id", answer[0])
            self.assertNotIn("token", answer[0])     # never both; we never hand out tokens
            return answer[0]["service_request_id"]
        root = parse_xml(resp)
        self.assertEqual(root.tag, "service_requests")
        request = root.find("request")
        fields = check_fields(self, request, {"service_request_id", "service_notice",
                                              "account_id"}, ["service_request_id"])
        return fields["service_request_id"].text

    def assert_errors(self, resp, status, fmt="json", words=()):
        self.assertEqual(resp.status, status, resp)
        if fmt == "json":
            errors = resp.json()
            self.assertIsInstance(errors, list)
            self.assertTrue(errors)
            for e in errors:
                self.assertEqual(set(e), {"code", "description"})
                self.assertEqual(e["code"], status)
            text = " ".join(e["description"] for e in errors)
        else:
            root = parse_xml(resp)
            self.assertEqual(root.tag, "errors")
            errors = root.findall("error")
            self.assertTrue(errors)
            for e in errors:
                fields = check_fields(self, e, {"code", "description"}, ["code", "description"])
                self.assertEqual(int(fields["code"].text), status)
            text = " ".join(e.find("description").text for e in errors)
        for w in words:
            self.assertIn(w, text)
        return text

    def assert_private(self, resp):
        body = resp.body.decode("utf-8")
        for secret in (PHONE, NAME_LAST + NAME_FIRST, NAME_FIRST, EMAIL, self.app):
            self.assertNotIn(secret, body)

    # ---- discovery and services ----

    def test_discovery_both_formats(self):
        resp = self.get("discovery.json")
        self.assertEqual(resp.status, 200, resp)
        d = resp.json()
        self.assertEqual(set(d), {"changeset", "contact", "key_service", "endpoints"})
        self.assertRegex(d["changeset"], ISO)
        (endpoint,) = d["endpoints"]
        self.assertEqual(endpoint["specification"], "http://wiki.open311.org/GeoReport_v2")
        self.assertTrue(endpoint["url"].endswith("/open311/v2"))
        self.assertIn(endpoint["type"], ("production", "test"))
        self.assertEqual(sorted(endpoint["formats"]), ["application/json", "text/xml"])
        root = parse_xml(self.get("discovery.xml"))
        self.assertEqual(root.tag, "discovery")
        fields = check_fields(self, root, {"changeset", "contact", "key_service", "endpoints"},
                              ["changeset", "contact", "endpoints"])
        endpoint = fields["endpoints"].find("endpoint")
        ep = check_fields(self, endpoint, {"specification", "url", "changeset", "type",
                                           "formats"}, ["specification", "url", "formats"])
        self.assertEqual(sorted(f.text for f in ep["formats"].findall("format")),
                         ["application/json", "text/xml"])

    def test_services_json_schema_and_catalogue(self):
        resp = self.get("services.json")
        self.assertEqual(resp.status, 200, resp)
        self.assertTrue(resp.headers["content-type"].startswith("application/json"))
        services = resp.json()
        validate(services, "services.json")
        by_code = {s["service_code"]: s for s in services}
        self.assertEqual(set(by_code), {c["code"] for c in self.catalog["categories"]})
        manhole = next(c for c in self.catalog["categories"] if c["code"] == MANHOLE)
        s = by_code[MANHOLE]
        self.assertEqual(s["service_name"], manhole["name_zh"])
        self.assertEqual(s["description"], manhole["description"])
        self.assertEqual(s["group"], manhole["group"])
        self.assertEqual(s["keywords"], ",".join(manhole["keywords"]))
        self.assertIs(s["metadata"], True)
        # The demo catalogue has a fallback: the dispatcher routes every category.
        self.assertEqual({x["type"] for x in services}, {"realtime"})

    def test_services_xml_structure(self):
        root = parse_xml(self.get("services.xml"))
        self.assertEqual(root.tag, "services")
        services = root.findall("service")
        self.assertEqual(len(services), len(self.catalog["categories"]))
        self.assertEqual(len(services), len(list(root)))
        for s in services:
            fields = check_fields(self, s, SERVICE_FIELDS,
                                  ["service_code", "service_name", "metadata", "type"])
            check_bool(self, fields["metadata"])
            self.assertIn(fields["type"].text, ("realtime", "batch", "blackbox"))
        codes = [s.find("service_code").text for s in services]
        self.assertIn(MANHOLE, codes)

    def test_service_definition_both_formats(self):
        resp = self.get(f"services/{MANHOLE}.json")
        self.assertEqual(resp.status, 200, resp)
        d = resp.json()
        validate(d, "service-definition.json")
        self.assertEqual(d["service_code"], MANHOLE)
        attrs = {a["code"]: a for a in d["attributes"]}
        self.assertEqual(list(attrs), ["cover_type", "open_shaft", "urgency", "request_type"])
        self.assertEqual([a["order"] for a in d["attributes"]], [1, 2, 3, 4])
        self.assertIs(attrs["open_shaft"]["required"], True)
        self.assertIs(attrs["cover_type"]["required"], False)
        self.assertEqual([v["key"] for v in attrs["open_shaft"]["values"]], ["yes", "no"])
        self.assertEqual([v["key"] for v in attrs["urgency"]["values"]], ["normal", "urgent"])
        self.assertEqual(attrs["urgency"]["datatype"], "singlevaluelist")
        # A category that takes some request types offers exactly those.
        fight = next(c for c in self.catalog["categories"] if c.get("request_types"))
        d2 = self.get(f"services/{fight['code']}.json").json()
        validate(d2, "service-definition.json")
        rt = next(a for a in d2["attributes"] if a["code"] == "request_type")
        self.assertEqual(sorted(v["key"] for v in rt["values"]), sorted(fight["request_types"]))
        # A string question.
        d3 = self.get(f"services/{LIGHT}.json").json()
        validate(d3, "service-definition.json")
        self.assertEqual(d3["attributes"][0]["datatype"], "string")
        self.assertNotIn("values", d3["attributes"][0])

        root = parse_xml(self.get(f"services/{MANHOLE}.xml"))
        self.assertEqual(root.tag, "service_definition")
        fields = check_fields(self, root, {"service_code", "attributes"},
                              ["service_code", "attributes"])
        self.assertEqual(fields["service_code"].text, MANHOLE)
        attributes = fields["attributes"].findall("attribute")
        self.assertEqual(len(attributes), 4)
        for a in attributes:
            af = check_fields(self, a, ATTRIBUTE_FIELDS, ["variable", "code", "datatype",
                                                          "required"])
            check_bool(self, af["variable"])
            check_bool(self, af["required"])
            int(af["order"].text)
            if "values" in af:
                for v in af["values"].findall("value"):
                    check_fields(self, v, {"key", "name"}, ["key", "name"])

    def test_unknown_service_and_bad_paths_are_404(self):
        self.assert_errors(self.get("services/no.such.service.json"), 404, "json",
                           ["no.such.service"])
        self.assert_errors(self.get("services/no.such.service.xml"), 404, "xml")
        # A missing or unknown format suffix: 404, answered in XML (the required format).
        for path in ("services", "services.txt", "services.JSON", "requests.html",
                     f"services/{MANHOLE}", "things/x", "tokens/t.csv"):
            self.assert_errors(self.get(path), 404, "xml")
        # A known suffix on an unknown resource: 404 in the format asked for.
        for path, fmt in (("nothing.json", "json"), ("things/x.json", "json"),
                          ("nothing.xml", "xml")):
            self.assert_errors(self.get(path), 404, fmt)
        self.assert_errors(self.post("services.json", self.form()), 405, "json")
        self.assert_errors(self.get("services.json", jurisdiction_id="999999"), 404, "json",
                           ["jurisdiction_id"])
        self.assertEqual(self.get("services.json", jurisdiction_id="320105").status, 200)

    # ---- POST requests ----

    def test_post_read_back_json(self):
        rid = self.create("json", first_name=NAME_FIRST, last_name=NAME_LAST, phone=PHONE,
                          email=EMAIL, **{"attribute[urgency]": "urgent",
                                          "media_url": "https://img.example.cn/a.jpg"})
        resp = self.get(f"requests/{rid}.json")
        self.assertEqual(resp.status, 200, resp)
        self.assert_private(resp)
        (req,) = resp.json()
        validate([req], "requests.json")
        self.assertEqual(set(req), REQUEST_FIELDS)
        self.assertEqual(req["service_request_id"], rid)
        self.assertEqual(req["service_code"], MANHOLE)
        self.assertEqual(req["status"], "open")
        self.assertEqual(req["service_name"], "井盖破损")
        self.assertAlmostEqual(req["lat"], self.lat, places=9)
        self.assertAlmostEqual(req["long"], self.lon, places=9)
        self.assertEqual(req["media_url"], "https://img.example.cn/a.jpg")
        self.assertIn("井盖缺失", req["description"])
        self.assertIn("139****5678", req["description"])       # masked, never the number
        self.assertIn("污水井盖", req["description"])           # the answers are kept with it
        self.assertTrue(req["requested_datetime"].endswith("+08:00"))
        # The ticket itself (native API, the key that made it): source open311,
        # urgent, the answers kept, the reporter kept for the city.
        native = harness.http_request("GET", f"{self.native}/{rid}",
                                      headers={"Authorization": "Bearer " + self.app}).json()
        self.assertEqual(native["source"], "open311")
        self.assertEqual(native["urgency"], "urgent")
        self.assertEqual(native["request_type"], "complaint")
        self.assertIn("【补充信息】", native["description"])
        self.assertEqual(native["reporter"]["name"], "欧***")      # masked for a reporter_app key
        self.assertEqual(native["events"][0]["actor"]["id"], "open311-app")
        # The dispatcher routes it: the department appears as agency_responsible.
        req = harness.wait_until(
            lambda: (lambda x: x if x["agency_responsible"] else None)(
                self.get(f"requests/{rid}.json").json()[0]), 30, what="the dispatch")
        validate([req], "requests.json")
        names = {d["name_zh"] for d in self.catalog["departments"]}
        self.assertIn(req["agency_responsible"], names)
        self.assertEqual(req["status"], "open")
        # In the listing too, with filters.
        resp = self.get("requests.json")
        self.assertEqual(resp.status, 200, resp)
        self.assert_private(resp)
        listed = resp.json()
        validate(listed, "requests.json")
        self.assertIn(rid, [x["service_request_id"] for x in listed])
        self.assertIn(rid, [x["service_request_id"] for x in
                            self.get("requests.json", service_code=MANHOLE,
                                     status="open").json()])
        self.assertNotIn(rid, [x["service_request_id"] for x in
                               self.get("requests.json", status="closed").json()])
        self.assertNotIn(rid, [x["service_request_id"] for x in
                               self.get("requests.json", service_code=LIGHT).json()])
        future = (datetime.datetime.now(datetime.timezone.utc)
                  + datetime.timedelta(days=2)).isoformat(timespec="seconds")
        self.assertEqual(self.get("requests.json", start_date=future).json(), [])
        by_id = self.get("requests.json", service_request_id=f"{rid},320105-20200101-000000001")
        self.assertEqual([x["service_request_id"] for x in by_id.json()], [rid])
        self.assert_errors(self.get("requests.json", start_date="yesterday"), 400, "json",
                           ["start_date"])
        self.assert_errors(self.get("requests.json", status="pending"), 400, "json")

    def test_post_read_back_xml(self):
        rid = self.create("xml", **{"attribute[cover_type]": None,
                                    "description": "雨水井盖<松动> & 响"})
        for resp in (self.get(f"requests/{rid}.xml"),
                     self.get("requests.xml", service_request_id=rid)):
            root = parse_xml(resp)
            self.assertEqual(root.tag, "service_requests")
            (request,) = root.findall("request")
            fields = check_fields(self, request, REQUEST_FIELDS,
                                  ["service_request_id", "status", "service_code",
                                   "requested_datetime"])
            self.assertEqual(fields["service_request_id"].text, rid)
            self.assertIn(fields["status"].text, ("open", "closed"))
            self.assertIn("雨水井盖<松动> & 响", fields["description"].text)   # escaped, read back
            for name in ("requested_datetime", "updated_datetime", "expected_datetime"):
                check_time(self, fields[name])
            float(fields["lat"].text)
            float(fields["long"].text)
        root = parse_xml(self.get("requests.xml"))
        self.assertIn(rid, [r.find("service_request_id").text for r in root.findall("request")])

    def test_post_by_address_and_repeat(self):
        fields = self.form(lat=None, long=None, address_string="建邺区江东中路 100 号")
        first = self.post("requests.json", fields)
        again = self.post("requests.json", fields)     # a blind retry of the same bytes
        self.assertEqual(first.status, 200, first)
        self.assertEqual(again.status, 200, again)
        rid = first.json()[0]["service_request_id"]
        self.assertEqual(again.json()[0]["service_request_id"], rid)
        (req,) = self.get(f"requests/{rid}.json").json()
        self.assertEqual(req["address"], "建邺区江东中路 100 号")
        self.assertIsNone(req["lat"])

    def test_post_errors(self):
        cases = [
            (self.form(service_code=None), 400, ["service_code"]),
            (self.form(lat=None, long=None), 400, ["location"]),
            (self.form(long=None), 400, ["lat and long"]),
            (self.form(lat="north"), 400, ["lat"]),
            (self.form(**{"attribute[open_shaft]": "maybe"}), 400, ["open_shaft", "maybe"]),
            (self.form(**{"attribute[open_shaft]": None}), 400, ["open_shaft", "required"]),
            (self.form(**{"attribute[colour]": "red"}), 400, ["attribute[colour]"]),
            (self.form(**{"attribute[urgency]": "panic"}), 400, ["urgency"]),
            (self.form(lat="95"), 400, ["lat"]),
            (self.form(phone="call me"), 400, ["phone"]),
            (self.form(media_url="javascript:alert(1)"), 400, ["media_url"]),
            (self.form(api_key=None), 403, ["api_key"]),
            (self.form(api_key="cbk_not-a-real-key"), 403, ["api_key"]),
            (self.form(api_key=self.sensor), 403, ["sensor"]),
            (self.form(service_code="no.such.service"), 404, ["no.such.service"]),
            (self.form(jurisdiction_id="110101"), 404, ["jurisdiction_id"]),
        ]
        before = sum(self.r("ZCARD", "idx:{b%02d}:all" % b) for b in range(64))
        for fields, status, words in cases:
            for fmt in ("json", "xml"):
                with self.subTest(fields=fields, fmt=fmt):
                    self.assert_errors(self.post("requests." + fmt, fields), status, fmt, words)
        # Two problems at once: both reported.
        text = self.assert_errors(self.post("requests.json", self.form(
            lat=None, long=None, **{"attribute[open_shaft]": None})), 400)
        self.assertIn("location", text)
        self.assertIn("open_shaft", text)
        # Not a form.
        self.assert_errors(self.post("requests.json", self.form(), "application/json"), 400,
                           "json", ["x-www-form-urlencoded"])
        # Bad percent-encoding.
        resp = harness.http_request("POST", self.url + "requests.json", "service_code=%ZZ",
                                    {"Content-Type": "application/x-www-form-urlencoded"})
        self.assert_errors(resp, 400, "json")
        after = sum(self.r("ZCARD", "idx:{b%02d}:all" % b) for b in range(64))
        self.assertEqual(before, after, "a refused request stored a ticket")

    def test_unknown_request_and_tokens(self):
        self.assert_errors(self.get("requests/320105-20200101-000000001.json"), 404, "json")
        self.assert_errors(self.get("requests/not-an-id.xml"), 404, "xml")
        rid = self.create()
        (tok,) = self.get(f"tokens/{rid}.json").json()
        self.assertEqual(tok, {"token": rid, "service_request_id": rid})
        root = parse_xml(self.get(f"tokens/{rid}.xml"))
        fields = check_fields(self, root.find("request"), {"token", "service_request_id"},
                              ["token", "service_request_id"])
        self.assertEqual(fields["service_request_id"].text, rid)
        self.assert_errors(self.get("tokens/no-such-token.json"), 404, "json")

    def test_native_tickets_are_not_public(self):
        body = {"source": "app", "request_type": "complaint", "category": MANHOLE,
                "description": "app report", "location": {"lat": self.lat, "lon": self.lon}}
        resp = harness.http_request("POST", self.native, body,
                                    {"Authorization": "Bearer " + self.app})
        self.assertEqual(resp.status, 201, resp)
        tid = resp.json()["id"]
        self.assert_errors(self.get(f"requests/{tid}.json"), 404, "json")
        self.assertNotIn(tid, [x["service_request_id"] for x in
                               self.get("requests.json").json()])

    # ---- the updates extension ----

    def test_updates_extension(self):
        start = (datetime.datetime.now(datetime.timezone.utc)
                 - datetime.timedelta(minutes=5)).isoformat(timespec="seconds")
        rid = self.create()
        harness.wait_until(lambda: self.get(f"requests/{rid}.json").json()[0]
                           ["agency_responsible"], 30, what="the dispatch")

        def mine():
            resp = self.get("servicerequestupdates.json", start_date=start)
            self.assertEqual(resp.status, 200, resp)
            return [u for u in resp.json() if u["service_request_id"] == rid]
        updates = mine()
        for u in updates:
            self.assertEqual(set(u), UPDATE_FIELDS)
            self.assertRegex(u["updated_datetime"], ISO)
        statuses = [u["status"] for u in updates]
        self.assertEqual(statuses[0], "OPEN")                     # received
        self.assertIn("ACTION_SCHEDULED", statuses)               # dispatched
        times = [u["updated_datetime"] for u in updates]
        self.assertEqual(times, sorted(times))

        # A citizen's update: a supplement note, read back; repeat is idempotent.
        fields = [("api_key", self.app), ("service_request_id", rid), ("update_id", "fms-77"),
                  ("updated_datetime", start), ("status", "FIXED"),
                  ("description", f"井盖已经盖上了，谢谢。{PHONE}"), ("email", EMAIL),
                  ("first_name", NAME_FIRST), ("last_name", NAME_LAST)]
        resp = self.post("servicerequestupdates.json", fields)
        self.assertEqual(resp.status, 200, resp)
        (answer,) = resp.json()
        update_id = answer["update_id"]
        self.assertTrue(update_id.startswith(rid + "#"))
        again = self.post("servicerequestupdates.json", fields)
        self.assertEqual(again.json(), [{"update_id": update_id}])
        resp = self.get("servicerequestupdates.json", start_date=start)
        self.assert_private(resp)
        added = [u for u in resp.json() if u["update_id"] == update_id]
        self.assertEqual(len(added), 1)
        self.assertIn("井盖已经盖上了", added[0]["description"])
        self.assertIn("FIXED", added[0]["description"])   # recorded, not applied
        self.assertEqual(self.get(f"requests/{rid}.json").json()[0]["status"], "open")

        root = parse_xml(self.get("servicerequestupdates.xml", start_date=start))
        self.assertEqual(root.tag, "service_request_updates")
        ours = [u for u in root.findall("request_update")
                if u.find("service_request_id").text == rid]
        self.assertEqual(len(ours), len(updates) + 1)
        for u in ours:
            f = check_fields(self, u, UPDATE_FIELDS, ["update_id", "service_request_id",
                                                     "status", "updated_datetime"])
            check_time(self, f["updated_datetime"])
        resp = self.post("servicerequestupdates.xml",
                         [("api_key", self.app), ("service_request_id", rid),
                          ("description", "又松了")])
        root = parse_xml(resp)
        self.assertEqual(root.tag, "service_request_updates")
        check_fields(self, root.find("request_update"), {"update_id"}, ["update_id"])

        # Errors: no key, no text, unknown status, unknown or someone else's request.
        self.assert_errors(self.post("servicerequestupdates.json", fields[1:]), 403)
        self.assert_errors(self.post("servicerequestupdates.json",
                                     [f for f in fields if f[0] != "description"]), 400,
                           "json", ["description"])
        self.assert_errors(self.post("servicerequestupdates.json",
                                     [f if f[0] != "status" else ("status", "MELTED")
                                      for f in fields]), 400, "json", ["MELTED"])
        self.assert_errors(self.post("servicerequestupdates.xml",
                                     [("api_key", self.app),
                                      ("service_request_id", "320105-20200101-000000001"),
                                      ("description", "x")]), 404, "xml")
        self.assert_errors(self.post("servicerequestupdates.json",
                                     [("api_key", self.other_app), ("service_request_id", rid),
                                      ("description", "not mine")]), 404)
        self.assert_errors(self.get("servicerequestupdates.json", start_date="soon"), 400)

    def test_zz_clean_stop(self):
        """Last (by name): SIGTERM stops the intake with exit 0, so the
        sanitizers found no leak in anything the Open311 door allocated."""
        self.assertEqual(self.intake.stop(), 0, self.intake.log()[-3000:])


if __name__ == "__main__":
    harness.main()
