"""Every civicbus binary: --help and --version answer, a bad setting is
refused with a message that names it, and a started service reports ready
and stops cleanly on SIGTERM (exit 0: under AddressSanitizer a leak would
make the exit code 23)."""
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

SERVICES = ["intake", "dispatcher", "adapter-police", "adapter-urban", "adapter-civil",
            "notifier", "console"]


def binaries():
    names = ["civicbus"] + ["civicbus-" + s for s in SERVICES]
    return [n for n in names if os.path.exists(os.path.join(harness.BIN_DIR, n))]


class ServiceLifecycle(harness.ClusterTestCase):

    def run_bin(self, name, *args, env=None):
        full = self.cluster.base_env()
        full.update(env or {})
        return subprocess.run([os.path.join(harness.BIN_DIR, name)] + list(args), env=full,
                              capture_output=True, text=True, timeout=60 * harness.SLOW)

    def test_every_service_binary_exists(self):
        missing = [s for s in SERVICES
                   if not os.path.exists(os.path.join(harness.BIN_DIR, "civicbus-" + s))]
        self.assertEqual(missing, [], "service binaries not built")
        self.assertTrue(os.path.exists(os.path.join(harness.BIN_DIR, "civicbus")))

    def test_help_and_version(self):
        for name in binaries():
            with self.subTest(binary=name):
                cp = self.run_bin(name, "--help")
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertIn("Usage", cp.stdout)
                cp = self.run_bin(name, "--version")
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertRegex(cp.stdout, r"\d+\.\d+\.\d+")

    def test_bad_setting_is_named(self):
        for name in binaries():
            if name == "civicbus":
                continue
            with self.subTest(binary=name):
                cp = self.run_bin(name, env={"CIVICBUS_REDIS_TIMEOUT_MS": "soon"})
                self.assertEqual(cp.returncode, 2)
                self.assertIn("CIVICBUS_REDIS_TIMEOUT_MS", cp.stderr)
                cp = self.run_bin(name, "--no-such-option")
                self.assertNotEqual(cp.returncode, 0)
                self.assertIn("--no-such-option", cp.stderr)

    def test_ready_then_clean_stop(self):
        base = harness.free_port()
        for i, service in enumerate(SERVICES):
            if not os.path.exists(os.path.join(harness.BIN_DIR, "civicbus-" + service)):
                continue
            with self.subTest(service=service):
                env = {
                    "CIVICBUS_INTAKE_LISTEN": f"127.0.0.1:{harness.free_port()}",
                    "CIVICBUS_CONSOLE_LISTEN": f"127.0.0.1:{harness.free_port()}",
                    "CIVICBUS_DOORBELL_BIND": f"tcp://127.0.0.1:{harness.free_port()}",
                    "CIVICBUS_ADAPTER_BIND": f"tcp://127.0.0.1:{harness.free_port()}",
                    "CIVICBUS_EVENTS_BIND": f"tcp://127.0.0.1:{harness.free_port()}",
                    "CIVICBUS_NOTIFIER_BIND": f"tcp://127.0.0.1:{harness.free_port()}",
                    "CIVICBUS_DISPATCHER_ID": f"lifecycle-{base}-{i}",
                }
                proc = self.cluster.start(service, env=env)

                def ready():
                    for line in proc.log().splitlines():
                        try:
                            if json.loads(line).get("msg") == "ready":
                                return True
                        except ValueError:
                            pass
                    return False
                harness.wait_until(ready, 20, what=f"{service} to log ready")
                for line in proc.log().splitlines():
                    if line.startswith("{"):
                        json.loads(line)  # every log line is one JSON object
                proc.signal(signal.SIGTERM)
                code = proc.popen.wait(timeout=30 * harness.SLOW)
                self.assertEqual(code, 0, proc.log()[-3000:])


if __name__ == "__main__":
    harness.main()
