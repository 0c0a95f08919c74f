"""Applications named by DNS: a real DNS server (dnsmasq on 127.0.0.1),
backends on 127.0.0.2, .3 and .4 on one port, and sluice re-resolving the
name every second. Addresses that appear get traffic, addresses that go
stop getting it, no request fails meanwhile, unchanged addresses keep
their state, and a DNS server that stops answering changes nothing."""

import collections
import json
import random
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import (BACKEND_BIN, build_config, free_port, get, http_request, port_open, run_sluice,
                      scaled, wait_until)

NAME = "api.sluice.test"
HEALTH = {"interval": "200ms", "rise": 1, "fall": 2}


# ---------------------------------------------------------------- a DNS server

def dns_a_records(port, name, timeout=0.5):
    """The A records the server on 127.0.0.1:port gives for name: a sorted
    list, [] for an answer without any, None for no answer at all."""
    qid = random.randrange(1 << 16)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(query, ("127.0.0.1", port))
            data = s.recv(4096)
        except OSError:
            return None
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != qid:
        return None
    count = struct.unpack(">H", data[6:8])[0]
    at = 12 + len(question) + 4
    found = []
    for _ in range(count):
        while data[at] and data[at] & 0xC0 != 0xC0:     # a name: labels, or a pointer
            at += data[at] + 1
        at += 2 if data[at] & 0xC0 == 0xC0 else 1
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", data[at:at + 10])
        at += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(data[at:at + 4]))
        at += length
    return sorted(found)


class Dnsmasq:
    """dnsmasq answering NAME from a hosts file it reads again on SIGHUP."""

    def __init__(self, registry):
        self.registry = registry
        self.port = free_port()
        self.hosts = registry.dir / "dns.hosts"
        registry.add_file("dns hosts", self.hosts)
        self.proc = None

    def start(self, addresses):
        self.hosts.write_text("".join("%s %s\n" % (a, NAME) for a in addresses))
        # As root dnsmasq would become nobody, who cannot read the test's
        # directory: --user=root keeps it able to read the hosts file again.
        argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--user=root",
                "--port=%d" % self.port, "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", "--addn-hosts=%s" % self.hosts, "--local-ttl=1",
                # a name of the domain not in the file: NXDOMAIN, not REFUSED
                "--local=/sluice.test/",
                "--pid-file=%s" % (self.registry.dir / "dnsmasq.pid"), "--log-facility=-"]
        self.proc = self.registry.start("dnsmasq", argv)
        if not wait_until(lambda: not self.proc.alive() or self.answers() == sorted(addresses),
                          scaled(10), interval=0.1) or not self.proc.alive():
            pytest.fail("dnsmasq did not answer on %d: %s" % (self.port, self.proc.stderr()[-2000:]),
                        pytrace=False)
        return self

    def answers(self):
        return dns_a_records(self.port, NAME)

    def set(self, addresses):
        """Rewrites the records and waits until the server gives them."""
        self.hosts.write_text("".join("%s %s\n" % (a, NAME) for a in addresses))
        self.proc.send(signal.SIGHUP)
        assert wait_until(lambda: self.answers() == sorted(addresses), scaled(5), interval=0.05), \
            "dnsmasq still answers %r" % self.answers()

    def stop(self):
        self.proc.stop()


@pytest.fixture
def dns(registry):
    return Dnsmasq(registry)


# ---------------------------------------------------------------- backends on 127.0.0.x

class Backends:
    """build/backend on 127.0.0.2, .3, .4: one port, names b2, b3, b4."""

    def __init__(self, registry):
        self.port = free_port()
        for last in (2, 3, 4):
            ip = "127.0.0.%d" % last
            log = registry.dir / ("b%d.requests.log" % last)
            p = registry.start("backend-b%d" % last, [BACKEND_BIN, "--port", self.port, "--host", ip,
                                                     "--name", "b%d" % last, "--log", log])
            if not wait_until(lambda: not p.alive() or port_open(self.port, host=ip), scaled(10)):
                pytest.fail("backend on %s:%d did not start" % (ip, self.port), pytrace=False)


@pytest.fixture
def apps(registry):
    return Backends(registry)


def start_sluice(sluice, dns, apps, admin_port=None, refresh="1s"):
    app = {"name": "api", "host": NAME, "port": apps.port}
    sections = {"server": {"dns_refresh": refresh, "resolvers": ["127.0.0.1:%d" % dns.port]},
                "health": HEALTH}
    if admin_port:
        sections["admin"] = {"listen": "127.0.0.1:%d" % admin_port}
    return sluice([app], sections=sections)


def member(apps, last):
    return "api@127.0.0.%d:%d" % (last, apps.port)


class Traffic:
    """A client on its own thread: one request after another, each on a new
    connection, until stopped (or a bounded count): every status, and which
    application answered when."""

    def __init__(self, port, limit=20000):
        self.port = port
        self.limit = limit
        self.statuses = collections.Counter()
        self.answers = []           # (monotonic time, X-Backend)
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        for _ in range(self.limit):
            if self._stop.is_set():
                return
            try:
                r = get(self.port, "/", timeout=scaled(5))
                self.statuses[r.status] += 1
                self.answers.append((time.monotonic(), r.backend))
            except OSError as e:
                self.errors.append(repr(e))

    def seen_since(self, t):
        return collections.Counter(b for when, b in list(self.answers) if when >= t)

    def stop(self):
        self._stop.set()
        self._thread.join(scaled(10))
        assert not self._thread.is_alive(), "the client loop did not end"


def admin_json(admin_port, method, path):
    r = http_request(admin_port, method, path, timeout=scaled(5))
    return r, json.loads(r.body) if r.body else None


def states(admin_port):
    r, doc = admin_json(admin_port, "GET", "/api/applications")
    assert r.status == 200, r
    return {a["name"]: a["state"] for a in doc}


# ---------------------------------------------------------------- tests

def test_addresses_that_come_and_go_while_traffic_runs(registry, sluice, dns, apps):
    dns.start(["127.0.0.2", "127.0.0.3"])
    s = start_sluice(sluice, dns, apps)
    traffic = Traffic(s.port)
    try:
        assert wait_until(lambda: {"b2", "b3"} <= set(traffic.seen_since(0)), scaled(5)), \
            traffic.seen_since(0)

        dns.set(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
        added = time.monotonic()
        assert s.wait_stderr(r"dns: api\.sluice\.test: \+127\.0\.0\.4\n", scaled(5)), \
            "the new address was not logged"
        assert wait_until(lambda: traffic.seen_since(added)["b4"] > 0, scaled(5)), \
            "the added address got no request: %r" % traffic.seen_since(added)

        # Slow requests in flight when b2 goes, some of them on b2: they finish.
        slow = []
        slow_threads = [threading.Thread(target=lambda: slow.append(
            http_request(s.port, "GET", "/slow?ms=%d" % scaled(1500), timeout=scaled(10))), daemon=True)
            for _ in range(9)]
        for t in slow_threads:
            t.start()
        mark = len(s.stderr())
        dns.set(["127.0.0.3", "127.0.0.4"])
        assert s.wait_stderr(r"dns: api\.sluice\.test: -127\.0\.0\.2\n", scaled(5), start=mark), \
            "the removed address was not logged"
        # Requests already sent to b2 finish; none starts there afterwards.
        settled = time.monotonic() + 0.5
        time.sleep(scaled(2))
        after = traffic.seen_since(settled)
        for t in slow_threads:
            t.join(scaled(10))
    finally:
        traffic.stop()
    assert len(slow) == 9 and all(r.status == 200 for r in slow), slow
    assert "b2" in {r.backend for r in slow}, "no slow request was in flight to b2: %r" % slow
    assert after["b2"] == 0, "the removed address still got requests: %r" % after
    assert after["b3"] > 0 and after["b4"] > 0, after
    assert traffic.errors == [], traffic.errors[:5]
    assert set(traffic.statuses) == {200}, traffic.statuses
    assert sum(traffic.statuses.values()) > 50, traffic.statuses


def test_an_unchanged_address_keeps_its_state(registry, sluice, dns, apps):
    admin_port = free_port()
    dns.start(["127.0.0.2", "127.0.0.3"])
    s = start_sluice(sluice, dns, apps, admin_port=admin_port)
    assert wait_until(lambda: port_open(admin_port), scaled(5))
    assert states(admin_port) == {member(apps, 2): "up", member(apps, 3): "up"}
    for _ in range(20):
        assert get(s.port, "/").status == 200
    r, before = admin_json(admin_port, "GET", "/api/applications/" + member(apps, 3))
    assert before["requests"] >= 10, before

    # The group is no application: drain names its members instead.
    r, doc = admin_json(admin_port, "POST", "/api/applications/api/drain")
    assert r.status == 409, r
    assert member(apps, 2) in doc["error"] and member(apps, 3) in doc["error"], doc
    r, doc = admin_json(admin_port, "POST", "/api/applications/%s/drain" % member(apps, 2))
    assert r.status == 200, r
    assert wait_until(lambda: states(admin_port)[member(apps, 2)] == "maintenance", scaled(3))

    dns.set(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    assert s.wait_stderr(r"dns: api\.sluice\.test: \+127\.0\.0\.4\n", scaled(5))
    assert wait_until(lambda: member(apps, 4) in states(admin_port), scaled(3)), states(admin_port)
    assert states(admin_port) == {member(apps, 2): "maintenance", member(apps, 3): "up",
                                  member(apps, 4): "up"}
    seen = collections.Counter(get(s.port, "/").backend for _ in range(30))
    assert seen["b2"] == 0 and seen["b3"] > 0 and seen["b4"] > 0, seen
    r, after = admin_json(admin_port, "GET", "/api/applications/" + member(apps, 3))
    assert after["requests"] >= before["requests"] + seen["b3"], "the counters started again"
    r = http_request(admin_port, "GET", "/metrics", timeout=scaled(5))
    assert member(apps, 4).encode() in r.body, "the new application is not in the metrics"


def test_a_short_ttl_wins_over_dns_refresh(registry, sluice, dns, apps):
    dns.start(["127.0.0.2"])           # records with a TTL of 1 s
    s = start_sluice(sluice, dns, apps, refresh="1h")
    assert get(s.port, "/").backend == "b2"
    dns.set(["127.0.0.3"])
    assert s.wait_stderr(r"dns: api\.sluice\.test: \+127\.0\.0\.3 -127\.0\.0\.2\n", scaled(5)), \
        "the change was not seen within the records' TTL"
    assert wait_until(lambda: get(s.port, "/").backend == "b3", scaled(3))


def test_a_dns_failure_keeps_the_last_good_answer(registry, sluice, dns, apps):
    dns.start(["127.0.0.2", "127.0.0.3"])
    s = start_sluice(sluice, dns, apps)

    def both_serve(seconds):
        seen = collections.Counter()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            r = get(s.port, "/")
            assert r.status == 200, r
            seen[r.backend] += 1
        assert seen["b2"] > 0 and seen["b3"] > 0, seen

    both_serve(0.5)
    dns.set([])                        # the name stops resolving: NXDOMAIN
    assert s.wait_stderr(r"dns: api\.sluice\.test: Domain name not found; keeping the last good "
                         r"answer \(2 addresses\)", scaled(5)), "the failure was not logged"
    both_serve(scaled(2.5))            # more than two refreshes
    failures = s.stderr().count("keeping the last good answer")
    assert failures == 1, "logged %d times, not once per change of condition" % failures

    dns.stop()                         # no server at all: another condition, logged once
    assert wait_until(lambda: s.stderr().count("keeping the last good answer") == 2, scaled(5)), \
        s.stderr()[-2000:]
    both_serve(scaled(2.5))
    assert s.stderr().count("keeping the last good answer") == 2
    assert "-127.0.0." not in s.stderr(), "an address was dropped"
    assert s.proc.alive()


def test_check_reports_bad_dns_settings(registry, dns, apps, tmp_path):
    dns.start(["127.0.0.2"])

    def check(server, host=NAME):
        path = tmp_path / ("c%d.toml" % random.randrange(1 << 30))
        text = "[server]\n" + "".join("%s = %s\n" % kv for kv in server.items())
        text += '[[applications]]\nname = "api"\nhost = "%s"\nport = %d\n' % (host, apps.port)
        path.write_text(text)
        return path, run_sluice(["-c", path, "--check"])

    resolver = '["127.0.0.1:%d"]' % dns.port
    path, r = check({"resolvers": resolver})
    assert r.returncode == 0 and "config ok" in r.stdout, r

    path, r = check({"resolvers": '["127.0.0.1:%d", "dns.example"]' % dns.port})
    assert r.returncode == 1, r
    assert "%s:2:" % path in r.stderr and 'server.resolvers: invalid resolver "dns.example"' in r.stderr, r

    path, r = check({"dns_refresh": '"0s"', "resolvers": resolver})
    assert r.returncode == 1 and "%s:2:15: server.dns_refresh: 0ms is out of range" % path in r.stderr, r

    path, r = check({"limits": '{ dns_refresh = "100ms" }', "resolvers": resolver})
    assert r.returncode == 1 and "server.limits.dns_refresh: 100ms is out of range" in r.stderr, r

    path, r = check({"resolvers": resolver}, host="missing.sluice.test")
    assert r.returncode == 1, r
    assert '%s:5:8: applications.host: cannot resolve "missing.sluice.test": Domain name not found' \
        % path in r.stderr, r


def test_a_reload_while_the_dns_is_down_keeps_the_last_good_answer(registry, sluice, dns, apps):
    dns.start(["127.0.0.2", "127.0.0.3"])
    s = start_sluice(sluice, dns, apps)
    dns.stop()
    assert s.wait_stderr(r"keeping the last good answer", scaled(5))
    mark = len(s.stderr())
    s.proc.send(signal.SIGHUP)
    assert s.wait_stderr(r"reload: \S+ loaded: 2 applications", scaled(10), start=mark), \
        s.stderr()[mark:]
    seen = collections.Counter(get(s.port, "/").backend for _ in range(20))
    assert seen["b2"] > 0 and seen["b3"] > 0, seen


def test_the_admin_api_answers_while_a_reload_waits_for_the_dns(registry, sluice, dns, apps):
    """A reload resolves the file's names before it takes the lock the
    admin thread reads the applications under: a DNS server that does not
    answer makes the reload slow, never the admin API."""
    admin_port = free_port()
    dns.start(["127.0.0.2"])
    s = start_sluice(sluice, dns, apps, admin_port=admin_port)
    dns.stop()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)     # takes queries, never answers
    silent.bind(("127.0.0.1", dns.port))
    try:
        mark = len(s.stderr())
        asked = time.monotonic()
        s.proc.send(signal.SIGHUP)
        time.sleep(0.3)
        t0 = time.monotonic()
        r, doc = admin_json(admin_port, "GET", "/api/applications")
        took = time.monotonic() - t0
        assert r.status == 200 and [a["name"] for a in doc] == [member(apps, 2)], (r, doc)
        assert s.wait_stderr(r"reload: \S+ loaded: 1 applications", scaled(20), start=mark), \
            s.stderr()[mark:]
        reload_took = time.monotonic() - asked
        assert reload_took > 1.5, "the DNS answered after all: nothing was measured (%.2f s)" % reload_took
        assert took < 0.5, "the admin API waited %.2f s for a reload (%.2f s)" % (took, reload_took)
    finally:
        silent.close()
