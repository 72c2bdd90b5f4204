"""harness.py — start real Redis and real civicbus binaries for integration
and fault tests, on free loopback ports, and stop them all afterwards.

Every wait is a condition with a deadline (wait_until), never a fixed sleep,
so the suite passes on a loaded two-core machine. Every process started here
is killed at exit, even when a test fails.

Environment (set by ctest): CIVICBUS_BIN (the build's bin/ folder),
CIVICBUS_SOURCE_DIR (the repository), REDIS_SERVER (path of redis-server).
"""
import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE_DIR = os.environ.get("CIVICBUS_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN_DIR = os.environ.get("CIVICBUS_BIN", os.path.join(SOURCE_DIR, "build", "bin"))
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
CONFIG_DIR = os.path.join(SOURCE_DIR, "deploy", "config")

# Sanitizer builds are slower: scale deadlines, never assertions on time.
SLOW = float(os.environ.get("CIVICBUS_TEST_SLOWDOWN", "3"))


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls predicate() until it returns a true value; returns that value.
    Raises AssertionError naming `what` after timeout*SLOW seconds."""
    deadline = time.monotonic() + timeout * SLOW
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the service may not be up yet
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" +
                         (f" (last error: {last_error!r})" if last_error else ""))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


def http_request(method, url, body=None, headers=None, timeout=10.0):
    """One HTTP request to a loopback URL. `body` may be bytes, str or a
    dict/list (sent as JSON). Returns a Response (any status)."""
    assert url.startswith("http://127.0.0.1:") or url.startswith("http://localhost:"), url
    rest = url[len("http://"):]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout * SLOW)
    try:
        conn.request(method, "/" + path, body=body, headers=hdrs)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


class Redis:
    """A minimal RESP client (no dependency beyond the standard library)."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.addr = (host, port)
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def _connect(self):
        self.sock = socket.create_connection(self.addr, timeout=self.timeout * SLOW)
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")

    def __call__(self, *args):
        if self.sock is None:
            self._connect()
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        try:
            self.sock.sendall(b"".join(parts))
            return self._reply()
        except (OSError, ConnectionError):
            self.close()
            raise

    def scan_keys(self, pattern):
        keys, cursor = [], b"0"
        for _ in range(100000):
            cursor, batch = self("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            keys.extend(batch)
            if cursor in (b"0", 0):
                break
        return keys


class Proc:
    def __init__(self, name, argv, env, log_path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.popen = None

    def start(self):
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def kill9(self):
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, timeout=10.0):
        """SIGTERM, wait; SIGKILL if it does not stop. Returns the exit code."""
        if self.popen is None:
            return None
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Cluster:
    """Redis plus civicbus services in a private temporary directory."""

    def __init__(self, name="civicbus-test"):
        self.dir = tempfile.mkdtemp(prefix=name + "-")
        self.procs = {}
        self.redis_port = None
        self.redis_proc = None
        self.ports = {}
        atexit.register(self.stop_all)

    # ---- redis ----

    def start_redis(self, port=None):
        self.redis_port = port or self.redis_port or free_port()
        data = os.path.join(self.dir, "redis")
        os.makedirs(data, exist_ok=True)
        # The deployment's own configuration (AOF everysec, noeviction, ...);
        # where it listens and keeps its data on the command line.
        argv = [REDIS_SERVER, os.path.join(SOURCE_DIR, "deploy", "redis.conf"),
                "--bind", "127.0.0.1", "--port", str(self.redis_port), "--dir", data,
                "--save", "", "--protected-mode", "yes", "--daemonize", "no"]
        self.redis_proc = Proc("redis", argv, dict(os.environ),
                               os.path.join(self.dir, "redis.log")).start()
        r = Redis(self.redis_port)
        wait_until(lambda: r("PING") == "PONG", 15, what="redis to answer PING")
        r.close()
        return self.redis_port

    def redis(self):
        return Redis(self.redis_port)

    @property
    def redis_url(self):
        return f"redis://127.0.0.1:{self.redis_port}/0"

    # ---- services ----

    def base_env(self):
        env = dict(os.environ)
        env.update({
            "CIVICBUS_REDIS_URL": self.redis_url,
            "CIVICBUS_LOG_LEVEL": os.environ.get("CIVICBUS_TEST_LOG_LEVEL", "info"),
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=23",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        })
        return env

    def start(self, name, binary=None, args=(), env=None):
        """Starts build/bin/<binary> (default civicbus-<name>) as `name`."""
        binary = binary or ("civicbus-" + name)
        full_env = self.base_env()
        full_env.update(env or {})
        argv = [os.path.join(BIN_DIR, binary)] + list(args)
        proc = Proc(name, argv, full_env, os.path.join(self.dir, name + ".log")).start()
        self.procs[name] = proc
        return proc

    def restart(self, name):
        proc = self.procs[name]
        proc.stop()
        return proc.start()

    def cli(self, *args, env=None, input=None, check=True):
        """Runs the civicbus CLI; returns CompletedProcess (text)."""
        full_env = self.base_env()
        full_env.update(env or {})
        cp = subprocess.run([os.path.join(BIN_DIR, "civicbus")] + list(args), env=full_env,
                            input=input, capture_output=True, text=True, timeout=120 * SLOW)
        if check and cp.returncode != 0:
            raise AssertionError(f"civicbus {' '.join(args)} failed ({cp.returncode}):\n"
                                 f"{cp.stdout}\n{cp.stderr}")
        return cp

    def stop_all(self):
        for proc in list(self.procs.values()):
            proc.stop()
        if self.redis_proc:
            self.redis_proc.stop()
        if os.environ.get("CIVICBUS_KEEP_TEST_DIR") is None and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)

    def dump_logs(self, stream=sys.stderr):
        for proc in list(self.procs.values()) + ([self.redis_proc] if self.redis_proc else []):
            text = proc.log()
            stream.write(f"\n===== {proc.name} ({proc.log_path}) =====\n{text[-6000:]}\n")


class ClusterTestCase(unittest.TestCase):
    """A TestCase with a Cluster per class; logs are printed when a test fails."""

    cluster = None

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(cls.__name__)
        cls.cluster.start_redis()

    @classmethod
    def tearDownClass(cls):
        if cls.cluster:
            cls.cluster.stop_all()

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > before and self.cluster:
            self.cluster.dump_logs()
        return out


def main():
    """unittest.main with verbose output and the plain closing line that the
    CI reader counts ('N passed, N failed')."""
    runner = unittest.TextTestRunner(verbosity=2)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules["__main__"])
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"{passed} passed, {failed} failed, {len(result.skipped)} skipped")
    sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)
