#!/usr/bin/env python3
"""A bounded soak of sluice: every kind of traffic at once, with reloads.

Starts build/sluice in front of three build/backend applications on free
127.0.0.1 ports and, for SOAK_SECONDS (default 120), runs at the same time:

  - keep-alive clients: GET / and GET /bytes (plain and chunked), the body
    checked byte for byte;
  - clients that open a new connection for every request;
  - uploads: POSTs with a Content-Length body and with a chunked body, the
    application's count of what it received checked against what was sent;
  - upgrades: GET /upgrade, a 101 tunnel, a few bytes each way, checked;
  - a SIGHUP reload every SOAK_RELOAD_SECONDS (default 3);
  - an access log rotation every SOAK_ROTATE_SECONDS (default 10): the file
    is renamed and SIGUSR1 makes sluice open a new one.

It prints requests sent, answers by status, and sluice's RSS and open file
descriptors at the start and at the end, and exits 1 when:

  - any answer is not the expected status (every application is up, so any
    5xx is a failure), a body or an echo does not match, or a request
    fails at the socket level;
  - RSS grew more than SOAK_RSS_GROWTH_KB (default 2048) between the end of
    the warm-up (the first quarter of the run, at most 30 s) and the end;
  - once every client has closed, sluice holds more than
    SOAK_FD_SLACK (default 4) descriptors beyond what it held before the
    first request (a reload at the end drops idle application connections,
    and 5 quiet seconds the spare splice pipes);
  - a reload was not taken up, sluice died, or the access log files hold
    fewer or more lines than requests were answered.

Every process it starts is stopped by its PID; every loop is bounded by the
deadline and by a count. Environment: SLUICE_BUILD (default: the repo's
build/), SOAK_SECONDS, SOAK_RELOAD_SECONDS, SOAK_ROTATE_SECONDS,
SOAK_RSS_GROWTH_KB, SOAK_FD_SLACK.
"""

import collections
import http.client
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("SLUICE_BUILD") or os.path.join(REPO, "build"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "120"))
RELOAD_SECONDS = float(os.environ.get("SOAK_RELOAD_SECONDS", "3"))
ROTATE_SECONDS = float(os.environ.get("SOAK_ROTATE_SECONDS", "10"))
RSS_GROWTH_KB = int(os.environ.get("SOAK_RSS_GROWTH_KB", "2048"))
FD_SLACK = int(os.environ.get("SOAK_FD_SLACK", "4"))
WARMUP = min(30.0, SECONDS / 4)
MAX_PER_CLIENT = 10_000_000      # a count bound besides the deadline
TIMEOUT = 10                     # every socket operation
PATTERN = bytes(range(ord("a"), ord("z") + 1))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Processes:
    """Everything started here, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, directory):
        self.dir = directory
        self.started = []
        self.named = {}

    def start(self, label, argv):
        out = open(os.path.join(self.dir, label + ".out"), "wb")
        err = open(os.path.join(self.dir, label + ".err"), "wb")
        p = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        out.close()
        err.close()
        self.started.append(p)
        self.named[label] = p
        return p

    def stop_all(self):
        for p in reversed(self.started):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def proc_figures(pid):
    """(RSS in KB, open descriptors) of a process."""
    rss = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid))


class Tally:
    """Answers by status and failures, shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = collections.Counter()        # per kind of client
        self.statuses = collections.Counter()
        self.failures = collections.Counter()    # "kind: what" -> count
        self.examples = {}

    def request(self, kind):
        with self.lock:
            self.sent[kind] += 1

    def answer(self, status):
        with self.lock:
            self.statuses[status] += 1

    def fail(self, kind, what, detail):
        key = "%s: %s" % (kind, what)
        with self.lock:
            self.failures[key] += 1
            self.examples.setdefault(key, detail[:300])


def pattern_ok(body, n):
    if len(body) != n:
        return False
    full = (PATTERN * (n // len(PATTERN) + 1))[:n]
    return body == full


class Soak:
    def __init__(self, port, deadline, tally):
        self.port = port
        self.deadline = deadline
        self.tally = tally
        self.stopping = threading.Event()
        self.rng = random.Random(1)

    def running(self):
        return not self.stopping.is_set() and time.monotonic() < self.deadline

    def expect(self, kind, resp, body, status=200):
        self.tally.answer(resp.status)
        if resp.status != status:
            self.tally.fail(kind, "status %d" % resp.status, body.decode("latin-1", "replace"))
            return False
        return True

    # ---- clients

    def persistent(self, kind, seed, exchange):
        """Requests over one connection, a new one only after a close.
        exchange(conn, rng) sends one and returns (response, body, check)."""
        rng = random.Random(seed)
        conn = None
        for _ in range(MAX_PER_CLIENT):
            if not self.running():
                break
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            self.tally.request(kind)
            try:
                r, body, check = exchange(conn, rng)
            except (OSError, http.client.HTTPException) as e:
                self.tally.fail(kind, type(e).__name__, repr(e))
                conn.close()
                conn = None
                continue
            if self.expect(kind, r, body):
                check(body)
            if r.will_close:
                conn.close()
                conn = None
        if conn:
            conn.close()

    def keep_alive(self, seed):
        self.persistent("keep-alive", seed, self.get_bytes)

    def get_bytes(self, conn, rng):
        choice = rng.random()
        if choice < 0.5:
            path, n = "/", None
        else:
            n = rng.choice((0, 1, 100, 4096, 65536, 300000))
            path = "/bytes?n=%d%s" % (n, "&chunked=1" if choice < 0.75 else "")
        conn.request("GET", path)
        r = conn.getresponse()

        def check(body):
            if n is not None and not pattern_ok(body, n):
                self.tally.fail("keep-alive", "body mismatch", "%s: %d bytes" % (path, len(body)))
        return r, r.read(), check

    def new_connections(self, seed):
        rng = random.Random(seed)
        for _ in range(MAX_PER_CLIENT):
            if not self.running():
                break
            path = rng.choice(("/", "/bytes?n=1000", "/slow?ms=20"))
            self.tally.request("new-connection")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            try:
                conn.request("GET", path, headers={"Connection": "close"})
                r = conn.getresponse()
                body = r.read()
                self.expect("new-connection", r, body)
            except (OSError, http.client.HTTPException) as e:
                self.tally.fail("new-connection", type(e).__name__, "%s %r" % (path, e))
            finally:
                conn.close()

    def uploads(self, seed):
        self.persistent("upload", seed, self.post)

    def post(self, conn, rng):
        n = rng.choice((0, 1, 1000, 70000, 250000))
        data = (bytes(rng.getrandbits(8) for _ in range(64)) * (n // 64 + 1))[:n]
        chunked = rng.random() < 0.5
        if chunked:
            pieces = [data[i:i + 16384] for i in range(0, len(data), 16384)]
            conn.request("POST", "/upload", body=iter(pieces), encode_chunked=True,
                         headers={"Transfer-Encoding": "chunked"})
        else:
            conn.request("POST", "/upload", body=data)
        r = conn.getresponse()

        def check(body):
            m = re.search(rb"received (\d+) bytes", body)
            if not m or int(m.group(1)) != n:
                self.tally.fail("upload", "count mismatch",
                                "%s %d sent, answer %r" % ("chunked" if chunked else "length", n, body))
        return r, r.read(), check

    def upgrades(self, seed):
        rng = random.Random(seed)
        for _ in range(MAX_PER_CLIENT):
            if not self.running():
                break
            self.tally.request("upgrade")
            try:
                self.one_upgrade(rng)
            except (OSError, ValueError) as e:
                self.tally.fail("upgrade", type(e).__name__, repr(e))

    def one_upgrade(self, rng):
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as s:
            s.sendall(b"GET /upgrade HTTP/1.1\r\nHost: soak\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    raise ValueError("closed before the 101: %r" % buf[:200])
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            status = int(head.split(b" ", 2)[1])
            self.tally.answer(status)
            if status != 101:
                self.tally.fail("upgrade", "status %d" % status, head.decode("latin-1"))
                return
            for _ in range(3):
                data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
                s.sendall(data)
                got = rest
                while len(got) < len(data):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                rest = b""
                if got != data:
                    self.tally.fail("upgrade", "echo mismatch", "%r != %r" % (got[:40], data[:40]))
                    return


def write_config(path, port, backends, access_log):
    lines = ['[server]', 'listen = "127.0.0.1:%d"' % port, 'workers = 2', '',
             '[server.timeouts]', 'client_idle = "5s"', '',
             '[health]', 'interval = "500ms"', '',
             '[admin]', 'listen = ""', '',
             '[log]', 'access = "%s"' % access_log, '']
    for name, bport in backends:
        lines += ['[[applications]]', 'name = "%s"' % name, 'ip = "127.0.0.1"', 'port = %d' % bport, '']
    with open(path, "w") as f:
        f.write("\n".join(lines))


class AccessLog:
    """Rotates the access log the way logrotate does (rename, SIGUSR1) and
    counts its lines. A renamed file is counted and removed one rotation
    later, once no worker can still be writing to it."""

    def __init__(self, path, sluice):
        self.path = path
        self.sluice = sluice
        self.lines = 0
        self.rotations = 0
        self.previous = None

    def count(self, path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                self.lines += block.count(b"\n")

    def rotate(self):
        if self.previous:
            self.count(self.previous)
            os.unlink(self.previous)
        self.rotations += 1
        self.previous = "%s.%d" % (self.path, self.rotations)
        os.rename(self.path, self.previous)
        self.sluice.send_signal(signal.SIGUSR1)

    def total(self):
        """Every line so far; call once writing is over."""
        for path in (self.previous, self.path):
            if path and os.path.exists(path):
                self.count(path)
        self.previous = None
        return self.lines


def count_loaded(err_path):
    with open(err_path, "rb") as f:
        return len(re.findall(rb"reload: \S+ loaded", f.read()))


SANITIZER_MARKERS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:")


def run(tmp):
    procs = Processes(tmp)
    try:
        problems = soak(tmp, procs)
    finally:
        procs.stop_all()
    sluice = procs.named.get("sluice")
    if sluice is not None and sluice.returncode != 0:
        problems.append("sluice exited with %s on SIGTERM" % sluice.returncode)
    err_path = os.path.join(tmp, "sluice.err")
    if os.path.exists(err_path):
        with open(err_path, "rb") as f:
            err = f.read()
        problems += ["sluice's stderr has %r" % m.decode() for m in SANITIZER_MARKERS if m in err]
    return problems


def soak(tmp, procs):
    problems = []
    backends = []
    for i in range(3):
        name, bport = "app%d" % (i + 1), free_port()
        p = procs.start("backend-" + name, [os.path.join(BUILD, "backend"), "--port", bport,
                                            "--name", name])
        if not wait_for(lambda: port_open(bport) or p.poll() is not None, 10) or p.poll() is not None:
            return ["backend %s did not start" % name]
        backends.append((name, bport))
    port = free_port()
    config = os.path.join(tmp, "sluice.toml")
    write_config(config, port, backends, os.path.join(tmp, "access.log"))
    sluice = procs.start("sluice", [os.path.join(BUILD, "sluice"), "-c", config])
    access = AccessLog(os.path.join(tmp, "access.log"), sluice)
    err_path = os.path.join(tmp, "sluice.err")
    if not wait_for(lambda: port_open(port) or sluice.poll() is not None, 10) or sluice.poll() is not None:
        return ["sluice did not start"]
    time.sleep(1)    # the first health checks
    rss_start, fds_start = proc_figures(sluice.pid)
    print("soak: %d s, reload every %g s, sluice pid %d on port %d, applications %s"
          % (SECONDS, RELOAD_SECONDS, sluice.pid, port, ", ".join("%s:%d" % b for b in backends)))
    print("start: RSS %d KB, %d descriptors" % (rss_start, fds_start), flush=True)

    tally = Tally()
    begin = time.monotonic()
    soak = Soak(port, begin + SECONDS, tally)
    clients = ([("keep_alive", i) for i in range(4)] + [("new_connections", 10 + i) for i in range(2)] +
               [("uploads", 20 + i) for i in range(2)] + [("upgrades", 30)])
    threads = [threading.Thread(target=getattr(soak, name), args=(seed,), daemon=True)
               for name, seed in clients]
    for t in threads:
        t.start()

    reloads = 0
    rss_warm = rss_peak = None
    next_reload = begin + RELOAD_SECONDS
    next_rotation = begin + ROTATE_SECONDS
    next_sample = begin + 5
    warm_at = begin + WARMUP
    while soak.running() and sluice.poll() is None:
        now = time.monotonic()
        if now >= next_reload:
            sluice.send_signal(signal.SIGHUP)
            reloads += 1
            next_reload += RELOAD_SECONDS
        if now >= next_rotation:
            access.rotate()
            next_rotation += ROTATE_SECONDS
        if rss_warm is None and now >= warm_at:
            rss_warm, _ = proc_figures(sluice.pid)
            print("after the %d s warm-up: RSS %d KB" % (WARMUP, rss_warm), flush=True)
        if now >= next_sample:
            rss, fds = proc_figures(sluice.pid)
            rss_peak = max(rss_peak or 0, rss)
            next_sample += max(5, SECONDS / 60)
            print("  t=%5.0f s  RSS %6d KB  fds %4d  requests %d  reloads %d"
                  % (now - begin, rss, fds, sum(tally.sent.values()), reloads), flush=True)
        time.sleep(0.05)
    soak.stopping.set()
    for t in threads:
        t.join(TIMEOUT * 3)
    if any(t.is_alive() for t in threads):
        problems.append("a client thread did not finish")
    if sluice.poll() is not None:
        return problems + ["sluice exited with %s during the soak" % sluice.returncode]

    # Every client is closed: a last reload drops idle application
    # connections, and a worker quiet for 5 s closes its spare splice
    # pipes; then descriptors must be back near the start.
    sluice.send_signal(signal.SIGHUP)
    reloads += 1
    if not wait_for(lambda: count_loaded(err_path) >= reloads, 10):
        problems.append("%d reloads sent, %d taken up" % (reloads, count_loaded(err_path)))
    wait_for(lambda: proc_figures(sluice.pid)[1] <= fds_start + FD_SLACK, 15)
    time.sleep(1.5)   # old configurations are freed once a second
    rss_end, fds_end = proc_figures(sluice.pid)

    print("end: RSS %d KB (start %d, after warm-up %d, peak sampled %d), %d descriptors (start %d)"
          % (rss_end, rss_start, rss_warm or rss_start, rss_peak or rss_end, fds_end, fds_start))
    print("requests sent: %d (%s)" % (sum(tally.sent.values()),
                                       ", ".join("%s %d" % kv for kv in sorted(tally.sent.items()))))
    print("answered by status: %s" % ", ".join("%d: %d" % kv for kv in sorted(tally.statuses.items())))
    print("reloads: %d sent, %d taken up" % (reloads, count_loaded(err_path)))
    logged, answered = access.total(), sum(tally.statuses.values())
    with open(err_path, "rb") as f:
        reopened = f.read().count(b"reopened the access log")
    print("access log: %d rotations, %d reopened, %d lines in all" % (access.rotations, reopened, logged))
    if reopened != access.rotations:
        problems.append("%d access log rotations, %d reopens logged" % (access.rotations, reopened))
    if logged != answered:
        problems.append("the access log files have %d lines for %d answers" % (logged, answered))
    for key, n in sorted(tally.failures.items()):
        problems.append("%s (x%d), e.g. %s" % (key, n, tally.examples[key]))
    growth = rss_end - (rss_warm or rss_start)
    if growth > RSS_GROWTH_KB:
        problems.append("RSS grew %d KB after the warm-up (bound %d KB)" % (growth, RSS_GROWTH_KB))
    if fds_end > fds_start + FD_SLACK:
        problems.append("%d descriptors open after every client closed, %d at the start (slack %d)"
                        % (fds_end, fds_start, FD_SLACK))
    if sum(tally.statuses.values()) == 0:
        problems.append("no request was answered")
    return problems


def stop_on_signal(signum, frame):
    raise SystemExit("soak: stopped by signal %d" % signum)


def main():
    # A soak stopped early still stops what it started (run's finally),
    # also when started in the background, where SIGINT is ignored.
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    for binary in ("sluice", "backend"):
        if not os.access(os.path.join(BUILD, binary), os.X_OK):
            print("soak: %s/%s is missing (run make)" % (BUILD, binary), file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="sluice-soak-") as tmp:
        problems = run(tmp)
        if problems:
            print("FAILED:")
            for p in problems:
                print("  " + p)
            err = os.path.join(tmp, "sluice.err")
            if os.path.exists(err):
                with open(err, "rb") as f:
                    tail = f.read()[-3000:].decode("utf-8", "replace")
                print("sluice stderr (tail):\n" + tail)
            return 1
    print("soak passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
