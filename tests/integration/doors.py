"""doors.py — shared by test_hotline.py, test_sensors.py and test_duplicates.py:
a deployment with the issue 6 doors switched on (hotline secret, sensor
types, duplicates), keys of each role, and the 12345 exchange's signature.
"""
import hashlib
import hmac
import json
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_dispatcher import Deployment, have_binaries, log_messages  # noqa: E402,F401

HOTLINE_SECRET = "hotline-secret-test-0123"
SENSORS_CONFIG = os.path.join(harness.CONFIG_DIR, "sensors.json")
# Inside 果园社区第12网格 (deploy/config/grids.geojson).
LAT, LON = 31.9817, 118.6983


def hotline_headers(method, path, body=b"", ts=None, nonce=None, secret=HOTLINE_SECRET):
    """The exchange's headers: HMAC-SHA256(secret, METHOD\\nPATH\\nTS\\nNONCE\\nBODY)."""
    ts = str(int(time.time()) if ts is None else ts)
    nonce = nonce or secrets.token_hex(12)
    msg = b"\n".join([method.encode(), path.encode(), ts.encode(), nonce.encode(), body])
    sig = hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
    return {"X-Hotline-Timestamp": ts, "X-Hotline-Nonce": nonce, "X-Hotline-Signature": sig}


class DoorsDeployment(Deployment):
    """Deployment with the doors' settings on the intake and keys per role."""

    def __init__(self, cluster):
        super().__init__(cluster)
        self.keys = {}

    def role_key(self, role, name=None):
        name = name or f"{role}-key"
        cp = self.cluster.cli("keys", "create", "--name", name, "--role", role, "--quiet")
        self.keys[role] = cp.stdout.strip().splitlines()[-1].replace("key: ", "").strip()
        return self.keys[role]

    def start_doors_intake(self, name="intake", threads=4, env=None):
        self.intake_port = self.intake_port or harness.free_port()
        e = {
            "CIVICBUS_INTAKE_LISTEN": f"127.0.0.1:{self.intake_port}",
            "CIVICBUS_INTAKE_THREADS": str(threads),
            "CIVICBUS_INTAKE_PER_IP_LIMIT": "0",
            "CIVICBUS_INTAKE_MAX_BODY": "1048576",
            "CIVICBUS_DOORBELL_ENDPOINTS": self.doorbell_endpoints() or "tcp://127.0.0.1:1",
            "CIVICBUS_HOTLINE_SECRET": HOTLINE_SECRET,
            "CIVICBUS_SENSORS_CONFIG": SENSORS_CONFIG,
        }
        e.update(env or {})
        proc = self.cluster.start(name, binary="civicbus-intake", env=e)
        harness.wait_until(lambda: self.http("GET", "/healthz").status == 200, 20,
                           what=f"{name} /healthz")
        return proc

    def as_role(self, role, method, path, body=None, headers=None, timeout=30.0):
        hdrs = {"Authorization": f"Bearer {self.keys[role]}"}
        hdrs.update(headers or {})
        return harness.http_request(method, f"http://127.0.0.1:{self.intake_port}{path}",
                                    body=body, headers=hdrs, timeout=timeout)

    def hotline(self, method, path, body=None, **sign):
        raw = b"" if body is None else (body if isinstance(body, bytes) else
                                        json.dumps(body, ensure_ascii=False).encode("utf-8"))
        headers = hotline_headers(method, path, raw, **sign)
        if method == "POST":
            headers["Content-Type"] = "application/json"
        return self.as_role("hotline", method, path, body=raw if method == "POST" else None,
                            headers=headers)

    def ticket(self, ticket_id):
        resp = self.http("GET", f"/v1/tickets/{ticket_id}")
        assert resp.status == 200, resp
        return resp.json()

    def start_console(self, name="console"):
        port = harness.free_port()
        proc = self.cluster.start(name, binary="civicbus-console", env={
            "CIVICBUS_CONSOLE_LISTEN": f"127.0.0.1:{port}", "CIVICBUS_APIKEY_CACHE_MS": "200"})
        self.console_url = f"http://127.0.0.1:{port}"
        harness.wait_until(lambda: harness.http_request("GET", self.console_url + "/healthz")
                           .status == 200, 30, what="console /healthz")
        return proc

    def act(self, ticket_id, body):
        """An operator's action through the console (admin key)."""
        return harness.http_request("POST", f"{self.console_url}/v1/tickets/{ticket_id}/actions",
                                    body, {"Authorization": f"Bearer {self.key}",
                                           "X-Operator-Name": "值班员".encode("utf-8")})

    def inbox_empty(self):
        return all(self.r("ZCARD", "inbox:{b%02d}" % b) == 0 for b in range(64))

    def in_opq(self, ticket_id):
        bucket = int(ticket_id[-9:]) % 64
        return self.r("ZSCORE", "opq:{b%02d}" % bucket, ticket_id) is not None
