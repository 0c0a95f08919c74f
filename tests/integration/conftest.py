"""Shared machinery of sluice's integration tests.

Every test starts its own processes (build/backend applications and one
build/sluice) on free 127.0.0.1 ports, drives them over raw sockets or
http.client, and asserts what a user of the load balancer would see.

Rules every helper here keeps, so that a failing or hanging binary can never
hang the suite or leak a process:
  - every process is started through a ProcessRegistry and stopped by its PID
    in a finalizer (SIGTERM, then SIGKILL), also when the test failed;
  - every wait is bounded (wait_until, socket timeouts) and every test runs
    under a SIGALRM watchdog (TEST_BOUND seconds);
  - on failure the test report shows the tail of every log file the test's
    processes wrote (sluice stdout/stderr, backend output and request logs).

Environment: SLUICE_BUILD = directory with `sluice` and `backend` (default:
the repo's build/); SLUICE_ASAN=1 scales every wait by SCALE and turns the
memory assertions off.
"""

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ASAN = os.environ.get("SLUICE_ASAN", "") not in ("", "0")
SCALE = 4 if ASAN else 1
REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SLUICE_BUILD") or (REPO / "build")).resolve()
SLUICE_BIN = BUILD / "sluice"
BACKEND_BIN = BUILD / "backend"

# Hard bound on one test (setup and teardown included).
TEST_BOUND = 90 * SCALE


def scaled(seconds):
    """A wait bound, stretched under ASan."""
    return seconds * SCALE


def duration(ms):
    """A config duration string."""
    return "%dms" % int(ms)


# ---------------------------------------------------------------- basics

def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate until it returns something truthy (returned) or the
    bound passes (returns the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def read_text(path, limit=None):
    """A file's text; with limit, only its last limit bytes."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - limit) if limit is not None else 0
            f.seek(start)
            data = f.read()
    except OSError:
        return ""
    if start:
        data = b"...[%d bytes cut]...\n" % start + data
    return data.decode("utf-8", "replace")


def require_binaries():
    missing = [str(p) for p in (SLUICE_BIN, BACKEND_BIN) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail("missing binaries (set SLUICE_BUILD or run make): " + ", ".join(missing),
                    pytrace=False)


# ---------------------------------------------------------------- processes

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


class Process:
    """One child process, its output in files, stopped by its PID only."""

    def __init__(self, label, argv, out_path, err_path, env=None, cwd=None):
        self.label = label
        self.argv = [str(a) for a in argv]
        self.out_path = Path(out_path)
        self.err_path = Path(err_path)
        self._signals = set()
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=err,
                                          stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll()

    def send(self, sig):
        # Popen.send_signal does nothing once the child has been reaped, so a
        # recycled PID is never signalled.
        if self.alive():
            self._signals.add(sig)
            self.popen.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """SIGKILL and reap."""
        self.send(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout=5.0):
        """SIGTERM, SIGKILL after timeout; returns the exit status."""
        if self.alive():
            self.send(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.kill()
        self.wait(10)
        return self.popen.returncode

    def crashed(self):
        """A signal we did not send ended it (SIGSEGV, SIGABRT, ...)."""
        rc = self.popen.poll()
        return rc is not None and rc < 0 and -rc not in self._signals

    def stdout(self):
        return read_text(self.out_path)

    def stderr(self):
        return read_text(self.err_path)


class ProcessRegistry:
    """Owns every process of one test (or one module); cleanup() stops them
    all by PID and reports crashes and sanitizer findings."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.processes = []
        self.files = []          # (label, path) shown on failure
        self.problems = []
        self._counter = 0

    def unique(self, stem):
        self._counter += 1
        return "%s-%d" % (stem, self._counter)

    def start(self, label, argv, env=None, cwd=None):
        stem = self.unique(label)
        out = self.dir / (stem + ".out")
        err = self.dir / (stem + ".err")
        self.files.append((stem + " stdout", out))
        self.files.append((stem + " stderr", err))
        p = Process(label, argv, out, err, env=env, cwd=cwd)
        self.processes.append(p)
        return p

    def add_file(self, label, path):
        self.files.append((label, Path(path)))

    def check(self, p):
        if p.crashed():
            self.problems.append("%s (pid %d) died of signal %d" % (p.label, p.pid, -p.returncode))
        if p.label.startswith("sluice"):
            err = read_text(p.err_path, limit=32 << 20)
            for marker in SANITIZER_MARKERS:
                if marker in err:
                    self.problems.append("%s (pid %d) stderr has a sanitizer report: %s"
                                         % (p.label, p.pid, marker))
                    break

    def cleanup(self):
        for p in reversed(self.processes):
            if p.alive():
                p.stop(timeout=3.0 * SCALE)
            self.check(p)
        problems, self.problems = self.problems, []
        return problems


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        seen = set()
        for registry in getattr(item, "_sluice_registries", []):
            for label, path in registry.files:
                if path in seen:
                    continue
                seen.add(path)
                report.sections.append(("log " + label, read_text(path, limit=6000)))


def attach(request, registry):
    lst = getattr(request.node, "_sluice_registries", None)
    if lst is None:
        lst = request.node._sluice_registries = []
    lst.append(registry)


class _TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _watchdog():
    """No test may hang the suite: SIGALRM after TEST_BOUND seconds."""
    def expired(signum, frame):
        raise _TestTimeout("test exceeded its %d s bound" % TEST_BOUND)

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_BOUND)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def registry(request, tmp_path):
    require_binaries()
    reg = ProcessRegistry(tmp_path / "procs")
    attach(request, reg)
    yield reg
    problems = reg.cleanup()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


# ---------------------------------------------------------------- backend

class Backend:
    """One build/backend application."""

    def __init__(self, registry, name, port=None, health_status=None, args=()):
        self.registry = registry
        self.name = name
        self.port = port or free_port()
        self.health_status = health_status
        self.args = list(args)
        self.log_path = registry.dir / ("%s.requests.log" % name)
        registry.add_file("%s requests" % name, self.log_path)
        self.proc = None
        self.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=None):
        """Starts (again) on the same port; waits for the listen line."""
        timeout = timeout or scaled(10)
        deadline = time.monotonic() + timeout
        argv = [BACKEND_BIN, "--port", self.port, "--host", "127.0.0.1", "--name", self.name,
                "--log", self.log_path]
        if self.health_status is not None:
            argv += ["--health-status", self.health_status]
        argv += self.args
        while True:
            self.proc = self.registry.start("backend-" + self.name, argv)
            ready = wait_until(lambda: (not self.proc.alive()) or
                               ("listening on" in self.proc.stdout() and port_open(self.port)),
                               max(0.1, deadline - time.monotonic()))
            if ready and self.proc.alive():
                return self
            self.proc.kill()
            if time.monotonic() >= deadline:
                pytest.fail("backend %s did not start on port %d: %s"
                            % (self.name, self.port, self.proc.stderr()[-2000:]), pytrace=False)
            time.sleep(0.1)   # e.g. the port is still held after a kill

    def kill(self):
        self.proc.kill()

    def stop(self):
        return self.proc.stop()

    def restart(self):
        if self.proc.alive():
            self.proc.kill()
        return self.start()

    def alive(self):
        return self.proc.alive()

    # direct requests, not through sluice
    def request(self, method, path, timeout=5):
        return http_request(self.port, method, path, timeout=timeout)

    def stats(self):
        r = self.request("GET", "/stats")
        assert r.status == 200, "backend %s /stats answered %d" % (self.name, r.status)
        return json.loads(r.body)

    def set_health(self, status):
        r = self.request("POST", "/control/health?status=%d" % status)
        assert r.status == 200, "backend %s /control/health answered %d" % (self.name, r.status)

    def hang_health(self):
        r = self.request("POST", "/control/health?hang=1")
        assert r.status == 200, "backend %s /control/health answered %d" % (self.name, r.status)

    def logged(self):
        """Request lines ("METHOD TARGET") the application parsed."""
        return read_text(self.log_path).splitlines()

    def logged_text(self):
        return read_text(self.log_path)


@pytest.fixture
def backends(registry):
    """Factory: backends(n) -> [Backend...] named b1..bn, or
    backends.start(name, health_status=None) -> Backend."""
    made = []

    class Factory:
        def start(self, name=None, health_status=None, port=None, args=()):
            name = name or "b%d" % (len(made) + 1)
            b = Backend(registry, name, port=port, health_status=health_status, args=args)
            made.append(b)
            return b

        def __call__(self, n, **kw):
            return [self.start(**kw) for _ in range(n)]

    return Factory()


# ---------------------------------------------------------------- the default admin port

DEFAULT_ADMIN_PORT = 9901


@pytest.fixture
def default_admin_port():
    """For a test whose sluice keeps the default [admin] listen
    (127.0.0.1:9901): one such test at a time on this machine (an flock
    shared by every checkout's test run), and the port free before it
    starts. Yields the port."""
    import fcntl
    with open("/tmp/sluice-test-admin-%d.lock" % DEFAULT_ADMIN_PORT, "w") as lock:
        deadline = time.monotonic() + scaled(60)
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pytest.fail("another test run holds the default admin port's lock", pytrace=False)
                time.sleep(0.1)
        if not wait_until(lambda: not port_open(DEFAULT_ADMIN_PORT), scaled(10)):
            pytest.fail("port %d is in use by another process: the default [admin] listen cannot be "
                        "tested" % DEFAULT_ADMIN_PORT, pytrace=False)
        yield DEFAULT_ADMIN_PORT


# ---------------------------------------------------------------- sluice

def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)       # a TOML basic string for everything we write
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def app_entry(b, **kw):
    """An [[applications]] table for a Backend (or a bare port)."""
    if isinstance(b, Backend):
        entry = {"name": b.name, "ip": "127.0.0.1", "port": b.port}
    else:
        entry = {"ip": "127.0.0.1", "port": int(b)}
    entry.update(kw)
    return entry


def build_config(port, apps, sections=None, workers=2):
    """Config text: test defaults (admin off, fast health checks) with
    sections = {"server.timeouts": {"client_header": "500ms"}, ...} merged
    in (a value of None removes the default key)."""
    tables = {
        "server": {"listen": "127.0.0.1:%d" % port, "workers": workers},
        "server.timeouts": {"connect": duration(1000 * SCALE)},
        "health": {"interval": "200ms", "timeout": duration(300 * SCALE)},
        "admin": {"listen": ""},
    }
    for name, values in (sections or {}).items():
        table = tables.setdefault(name, {})
        for k, v in values.items():
            if v is None:
                table.pop(k, None)
            else:
                table[k] = v
    lines = []
    for name, values in tables.items():
        lines.append("[%s]" % name)
        lines += ["%s = %s" % (k, toml_value(v)) for k, v in values.items()]
        lines.append("")
    for a in apps:
        entry = a if isinstance(a, dict) else app_entry(a)
        lines.append("[[applications]]")
        lines += ["%s = %s" % (k, toml_value(v)) for k, v in entry.items()]
        lines.append("")
    return "\n".join(lines)


def sluice_env():
    env = dict(os.environ)
    if ASAN:
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


def run_sluice(args, timeout=None, cwd=None):
    """Runs sluice to completion (--check, bad usage); returns CompletedProcess."""
    require_binaries()
    return subprocess.run([str(SLUICE_BIN)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout or scaled(15), env=sluice_env(),
                          stdin=subprocess.DEVNULL, cwd=cwd)


class Sluice:
    """One running build/sluice."""

    def __init__(self, registry, config_text, port, args=(), wait=True, name="sluice"):
        self.registry = registry
        self.port = port
        self.config_path = registry.dir / (registry.unique(name) + ".toml")
        self.config_path.write_text(config_text)
        registry.add_file(self.config_path.name, self.config_path)
        self.proc = registry.start(name, [SLUICE_BIN, "-c", self.config_path] + list(args),
                                   env=sluice_env())
        if wait:
            self.wait_ready()

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, timeout=None):
        ok = wait_until(lambda: (not self.proc.alive()) or port_open(self.port),
                        timeout or scaled(10))
        if not ok or not self.proc.alive():
            rc = self.proc.returncode
            self.proc.kill()
            pytest.fail("sluice did not start listening on %d (exit %s): %s"
                        % (self.port, rc, self.proc.stderr()[-3000:]), pytrace=False)

    def stop(self, timeout=None):
        return self.proc.stop(timeout or scaled(5))

    def stderr(self):
        return self.proc.stderr()

    def stdout(self):
        return self.proc.stdout()

    def wait_stderr(self, pattern, timeout, start=0):
        """First match of pattern in stderr[start:] within timeout, else None."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.stderr(), start), timeout)

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


@pytest.fixture
def sluice(registry):
    """Factory: sluice(apps, sections=None, workers=2, args=(), config=None)
    -> Sluice listening on a free port (config replaces the generated text;
    it may contain {port})."""

    def start(apps=(), sections=None, workers=2, args=(), config=None, port=None, wait=True):
        port = port or free_port()
        if config is None:
            text = build_config(port, apps, sections, workers)
        else:
            text = config.replace("{port}", str(port))
        return Sluice(registry, text, port, args=args, wait=wait)

    return start


# ---------------------------------------------------------------- HTTP

class Response:
    def __init__(self, status, reason, version, headers, body, raw_head=b""):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers          # [(name, value)] in order
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def backend(self):
        return self.header("X-Backend")

    def __repr__(self):
        return "<Response %s %r %r>" % (self.status, self.headers, self.body[:200])


def http_request(port, method, path, body=None, headers=None, timeout=5, host="127.0.0.1"):
    """One request on a fresh connection (http.client), fully read."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, r.version, list(r.getheaders()), data)
    finally:
        conn.close()


def concurrent_gets(port, paths, timeout):
    """One GET per path, each on its own connection and thread, started
    20 ms apart so that they arrive in order: [(status, seconds from the
    first start to the answer, Retry-After)]."""
    results = [None] * len(paths)
    t0 = time.monotonic()

    def one(i):
        r = http_request(port, "GET", paths[i], timeout=timeout)
        results[i] = (r.status, time.monotonic() - t0, r.header("Retry-After"))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(paths))]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(timeout + 1)
    return results


def get(port, path="/", **kw):
    return http_request(port, "GET", path, **kw)


class KeepAlive:
    """Several requests over one client connection (http.client)."""

    def __init__(self, port, timeout=5):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.connect()
        self.sock = self.conn.sock

    def request(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, r.version, list(r.getheaders()), data)

    def get(self, path="/", headers=None):
        return self.request("GET", path, headers=headers)

    def same_socket(self):
        """http.client silently reconnects; this tells whether it did."""
        return self.conn.sock is self.sock

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RawConnection:
    """A client socket with a read buffer, for requests http.client will not
    send and for reading exactly what sluice answers."""

    def __init__(self, port, timeout=5, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Reads more; False at EOF (or reset). Raises socket.timeout."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("read deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_line(self, deadline):
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                raise EOFError("connection closed inside a line: %r" % self.buf[:200])
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError("connection closed after %d of %d body bytes" % (len(self.buf), n))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, method="GET", timeout=None, interim=False):
        """One response; 1xx are skipped unless interim. Raises EOFError when
        the connection closes before a complete response, socket.timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while b"\r\n\r\n" not in self.buf:
                if not self._fill(deadline):
                    raise EOFError("connection closed before a response head: %r" % self.buf[:300])
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
            if not m:
                raise AssertionError("bad status line from sluice: %r" % lines[0])
            status = int(m.group(2))
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep:
                    raise AssertionError("bad header line from sluice: %r" % line)
                headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
            resp = Response(status, (m.group(3) or b"").decode("latin-1"),
                            m.group(1).decode(), headers, b"", raw_head=head + b"\r\n\r\n")
            if 100 <= status < 200:
                if interim or status == 101:
                    return resp
                continue
            break
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in te:
            parts = []
            while True:
                size_line = self._read_line(deadline)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_line(deadline) != b"":
                        pass
                    break
                parts.append(self._read_exact(size, deadline))
                if self._read_exact(2, deadline) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
            body = b"".join(parts)
        elif cl is not None:
            body = self._read_exact(int(cl), deadline)
        else:
            while self._fill(deadline):
                pass
            body, self.buf = self.buf, b""
        resp.body = body
        return resp

    def read_until_close(self, timeout, max_bytes=16 << 20):
        """(bytes read, closed?) — closed is False when the bound passed
        with the connection still open, or more than max_bytes arrived (a
        runaway peer must not exhaust the test's memory)."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                if len(self.buf) > max_bytes:
                    data, self.buf = self.buf, b""
                    return data, False
        except socket.timeout:
            data, self.buf = self.buf, b""
            return data, False
        data, self.buf = self.buf, b""
        return data, True

    def closed_within(self, timeout, max_bytes=16 << 20):
        """True when sluice closes the connection within timeout; data it
        sends before closing is kept in self.buf."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                if len(self.buf) > max_bytes:
                    return False
        except socket.timeout:
            return False
        return True

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_exchange(port, data, timeout=None):
    """Sends data and reads until sluice closes: (responses, leftover bytes,
    closed?). Responses are parsed in order as long as they parse."""
    timeout = timeout or scaled(3)
    with RawConnection(port, timeout=timeout) as c:
        c.send(data)
        responses = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                responses.append(c.read_response(timeout=max(0.05, deadline - time.monotonic())))
            except (EOFError, socket.timeout, AssertionError, ValueError):
                break
        rest = c.buf
        c.buf = b""
        closed = c.eof or c.closed_within(max(0.05, deadline - time.monotonic()))
        return responses, rest + c.buf, closed


# ---------------------------------------------------------------- alerts

class WebhookReceiver:
    """A local HTTP server recording every POST (the [alerts] webhook)."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()
        self.fail_first = 0      # answer this many POSTs 500 first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                with receiver.lock:
                    status = 500 if receiver.fail_first > 0 else 200
                    receiver.fail_first -= 1
                    receiver.events.append({"path": self.path, "headers": dict(self.headers),
                                            "body": body, "json": doc, "status": status,
                                            "received": time.time()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/hook" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    w = WebhookReceiver()
    yield w
    w.close()


# ---------------------------------------------------------------- scripted applications

class RawApp:
    """An application written in the test: a thread accepting on a free
    port that answers `GET /health` with 200 and hands every other request
    to respond(sock, head_bytes, rest_bytes). heads lists every request head
    it received (health checks excluded)."""

    def __init__(self, respond):
        self.respond = respond
        self.heads = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.name = "raw"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        buf = b""
        try:
            while not self.stopping.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                head += b"\r\n\r\n"
                if head.startswith(b"GET /health "):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                    return
                with self.lock:
                    self.heads.append(head)
                keep = self.respond(conn, head, buf)
                buf = b""
                if not keep:
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self):
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        self.thread.join(2)


@pytest.fixture
def raw_app():
    """Factory: raw_app(respond) -> RawApp; closed after the test."""
    apps = []

    def make(respond):
        a = RawApp(respond)
        apps.append(a)
        return a

    yield make
    for a in apps:
        a.close()


# ---------------------------------------------------------------- gunicorn

GUNICORN_PYTHON = "/usr/bin/python3"
WSGI_DIR = Path(__file__).resolve().parent


class Gunicorn:
    """A gunicorn server (Debian's python3-gunicorn, gthread workers) running
    tests/integration/wsgi_app.py: a real Python application with few
    request slots, workers x threads."""

    def __init__(self, registry, name, workers=1, threads=4):
        self.registry = registry
        self.name = name
        self.port = free_port()
        self.log_path = registry.dir / ("%s.access.log" % name)
        registry.add_file("%s access" % name, self.log_path)
        env = dict(os.environ, APP_NAME=name)
        argv = [GUNICORN_PYTHON, "-m", "gunicorn", "--bind", "127.0.0.1:%d" % self.port,
                "--workers", workers, "--threads", threads, "--worker-class", "gthread",
                "--timeout", "120", "--graceful-timeout", "1", "--log-level", "warning",
                "--access-logfile", self.log_path,
                "wsgi_app:application"]
        self.proc = registry.start("gunicorn-" + name, argv, env=env, cwd=str(WSGI_DIR))
        ready = wait_until(lambda: (not self.proc.alive()) or self._answers(), scaled(15), 0.1)
        if not ready or not self.proc.alive():
            self.proc.kill()
            pytest.fail("gunicorn %s did not start on port %d: %s"
                        % (name, self.port, self.proc.stderr()[-2000:]), pytrace=False)

    def _answers(self):
        try:
            return http_request(self.port, "GET", "/health", timeout=1).status == 200
        except OSError:
            return False

    def requests(self, method, path_prefix):
        """How many requests with this method and path prefix gunicorn
        served (its access log: '... "POST /up HTTP/1.1" 200 ...')."""
        needle = '"%s %s' % (method, path_prefix)
        return sum(1 for line in read_text(self.log_path).splitlines() if needle in line)

    def stats(self):
        """{"peak": most requests in hand at once, "posts": POSTs begun}."""
        return json.loads(http_request(self.port, "GET", "/stats", timeout=5).body)

    def entry(self, **kw):
        """Its [[applications]] table."""
        entry = {"name": self.name, "ip": "127.0.0.1", "port": self.port}
        entry.update(kw)
        return entry


@pytest.fixture
def gunicorn(registry):
    """Factory: gunicorn(name, workers=1, threads=4) -> Gunicorn, stopped by
    PID with the test's other processes."""
    if not os.path.exists("/usr/lib/python3/dist-packages/gunicorn"):
        pytest.fail("python3-gunicorn is missing: run scripts/install-deps", pytrace=False)

    def start(name="g1", workers=1, threads=4):
        return Gunicorn(registry, name, workers=workers, threads=threads)

    return start
