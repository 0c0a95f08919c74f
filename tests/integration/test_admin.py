"""The admin API and `sluice ctl` as an operator sees them: the list of
applications, drain (requests in flight finish, nothing new arrives, then
maintenance), enable (back after one check), the last application up kept
unless forced, the token, the errors (401, 404, 405, 409, 413), reload over
the API (what changed, or the errors while the old configuration serves),
and the command line's output and exit codes."""

import json
import socket
import threading
import time

import pytest

from conftest import (SCALE, KeepAlive, RawConnection, app_entry, build_config, free_port, get,
                      http_request, run_sluice, scaled, wait_until)


def admin_sections(admin_port, token=None, health=None):
    sections = {"admin": {"listen": "127.0.0.1:%d" % admin_port}}
    if token:
        sections["admin"]["token"] = token
    if health:
        sections["health"] = health
    return sections


class Admin:
    """Requests to the admin API of one sluice."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token

    def call(self, method, path, token=None, body=None, headers=None):
        h = dict(headers or {})
        token = token if token is not None else self.token
        if token:
            h["Authorization"] = "Bearer " + token
        r = http_request(self.port, method, path, body=body, headers=h, timeout=scaled(10))
        doc = None
        if (r.header("Content-Type") or "").startswith("application/json") and r.body:
            doc = json.loads(r.body)
        return r, doc

    def app(self, name):
        r, doc = self.call("GET", "/api/applications/" + name)
        assert r.status == 200, r
        return doc

    def state(self, name):
        return self.app(name)["state"]

    def post(self, path, **kw):
        return self.call("POST", path, **kw)


def start(sluice, apps, token=None, health=None, workers=2):
    admin_port = free_port()
    s = sluice(apps, sections=admin_sections(admin_port, token, health), workers=workers)
    assert wait_until(lambda: port_listening(admin_port), scaled(5)), "the admin API does not listen"
    return s, Admin(admin_port, token)


def port_listening(port):
    # A whole request, not a bare connect: the admin listener defers
    # accepting until bytes arrive, and a silent probe would take one of
    # its 16 connections later.
    try:
        return http_request(port, "GET", "/api/applications", timeout=2).status == 200
    except OSError:
        return False


def served_by(s, n=10):
    return [get(s.port, "/").backend for _ in range(n)]


# --------------------------------------------------------------- reading

def test_list_and_one_application(backends, sluice):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, app_entry(b2, weight=3)])
    for _ in range(4):
        assert get(s.port, "/").status == 200
    r, apps = admin.call("GET", "/api/applications")
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    assert [a["name"] for a in apps] == ["b1", "b2"]
    one = apps[1]
    assert one["address"] == "127.0.0.1:%d" % b2.port
    assert one["state"] == "up" and one["weight"] == 3
    assert sum(a["requests"] for a in apps) == 4
    for key in ("active", "failures", "state_seconds", "state_since", "last_check", "transitions"):
        assert key in one, key
    assert wait_until(lambda: admin.app("b1")["last_check"], scaled(3)), "no check result shown"
    check = admin.app("b1")["last_check"]
    assert check["ok"] is True and check["status"] == 200 and check["time"].endswith("Z")
    r, _ = admin.call("HEAD", "/api/applications")
    assert r.status == 200 and r.body == b""
    r, _ = admin.call("GET", "/metrics")
    assert r.status == 200 and r.header("Content-Type").startswith("text/plain")
    r, _ = admin.call("GET", "/")
    assert r.status == 200 and b"sluice" in r.body and r.header("Content-Type").startswith("text/html")


# --------------------------------------------------------------- drain and enable

def test_drain_lets_the_request_in_flight_finish_then_maintenance(backends, sluice):
    b1, b2 = backends(2)
    # Checks far apart: the state changes below are the drain's, not a check's.
    s, admin = start(sluice, [b1, b2], health={"interval": "5s", "timeout": "1s"})
    slow_ms = 800 * SCALE
    results = []

    def slow():
        results.append(get(s.port, "/slow?ms=%d" % slow_ms, timeout=scaled(10)))

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    # Round robin: one slow request on each application.
    assert wait_until(lambda: any("/slow" in line for line in b1.logged()) and
                      any("/slow" in line for line in b2.logged()), scaled(2)), "a slow request is missing"
    r, doc = admin.post("/api/applications/b1/drain")
    assert r.status == 200, r
    assert doc["state"] == "draining" and doc["active"] == 1, doc
    before = len(b1.logged())
    assert set(served_by(s, 10)) == {"b2"}, "a new request reached the draining application"
    assert admin.state("b1") == "draining", "maintenance before the request in flight ended"
    for t in threads:
        t.join(scaled(10))
    assert sorted(r.status for r in results) == [200, 200]
    assert {r.backend for r in results} == {"b1", "b2"}
    assert wait_until(lambda: admin.state("b1") == "maintenance", scaled(1)), admin.app("b1")
    assert [line for line in b1.logged()[before:] if "/health" not in line and "/stats" not in line] == []
    assert "b1 127.0.0.1:%d up -> draining: operator: drain" % b1.port in s.stderr()
    # Idempotent.
    r, doc = admin.post("/api/applications/b1/drain")
    assert r.status == 200 and doc["state"] == "maintenance"


def established(port):
    """Open TCP connections whose local end is 127.0.0.1:port (the
    application's side of sluice's connections to it)."""
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if local == "0100007F:%04X" % port and state == "01":
                count += 1
    return count


def test_drain_closes_idle_pooled_connections(backends, sluice):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, b2], health={"interval": "5s", "timeout": "1s"}, workers=1)
    with KeepAlive(s.port) as c:
        for _ in range(4):
            assert c.get("/").status == 200
    assert wait_until(lambda: established(b1.port) == 1 and established(b2.port) == 1, scaled(2))
    assert admin.post("/api/applications/b1/drain")[0].status == 200
    assert wait_until(lambda: established(b1.port) == 0, scaled(1)), "the idle connection to b1 stayed"
    assert established(b2.port) == 1


def test_drain_with_nothing_in_flight_reaches_maintenance(backends, sluice):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, b2])
    r, doc = admin.post("/api/applications/b2/drain")
    assert r.status == 200
    assert wait_until(lambda: admin.state("b2") == "maintenance", scaled(1))
    # Not checked in maintenance: the health checks leave it alone.
    time.sleep(0.6)
    assert admin.state("b2") == "maintenance"
    assert set(served_by(s, 6)) == {"b1"}


def test_enable_brings_it_back_after_one_check(backends, sluice):
    b1, b2 = backends(2)
    # rise 3 at a 5 s interval would take 10 s or more: enable must not wait for it.
    s, admin = start(sluice, [b1, b2], health={"interval": "5s", "fast_interval": "5s", "rise": 3,
                                               "timeout": "1s"})
    admin.post("/api/applications/b1/drain")
    assert wait_until(lambda: admin.state("b1") == "maintenance", scaled(1))
    t0 = time.monotonic()
    r, doc = admin.post("/api/applications/b1/enable")
    assert r.status == 200 and doc["state"] in ("down", "up"), doc
    assert wait_until(lambda: admin.state("b1") == "up", scaled(1.5)), admin.app("b1")
    assert time.monotonic() - t0 < scaled(1.5)
    assert "b1" in served_by(s, 6)
    # Idempotent.
    r, doc = admin.post("/api/applications/b1/enable")
    assert r.status == 200 and doc["state"] == "up"


def test_enable_of_a_failing_application_keeps_it_down(backends, sluice):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, b2])
    admin.post("/api/applications/b2/drain")
    assert wait_until(lambda: admin.state("b2") == "maintenance", scaled(1))
    b2.set_health(503)
    r, doc = admin.post("/api/applications/b2/enable")
    assert r.status == 200
    time.sleep(0.5 * SCALE)
    assert admin.state("b2") == "down"
    b2.set_health(200)
    assert wait_until(lambda: admin.state("b2") == "up", scaled(3))


def test_last_application_up_needs_force(backends, sluice):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, b2])
    assert admin.post("/api/applications/b2/drain")[0].status == 200
    r, doc = admin.post("/api/applications/b1/drain")
    assert r.status == 409 and "last application up" in doc["error"], doc
    assert admin.state("b1") == "up"
    assert get(s.port, "/").status == 200
    r, doc = admin.post("/api/applications/b1/drain?force=1")
    assert r.status == 200, doc
    assert wait_until(lambda: admin.state("b1") == "maintenance", scaled(1))
    assert get(s.port, "/").status == 503


def test_drain_is_alerted_and_survives_a_reload(backends, sluice, webhook):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, b2])
    with open(s.config_path, "a") as f:
        f.write('\n[alerts]\nwebhook = "%s"\n' % webhook.url)
    assert admin.post("/api/reload")[0].status == 200
    admin.post("/api/applications/b2/drain")
    assert wait_until(lambda: admin.state("b2") == "maintenance", scaled(1))
    assert wait_until(lambda: any((e["json"] or {}).get("reason") == "operator: drain"
                                  for e in webhook.snapshot()), scaled(5)), webhook.snapshot()
    r, doc = admin.post("/api/reload")
    assert r.status == 200 and doc["changed"] == [], doc
    time.sleep(0.5)
    assert admin.state("b2") == "maintenance"
    assert set(served_by(s, 6)) == {"b1"}


# --------------------------------------------------------------- errors

def test_token(backends, sluice):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, b2], token="s3cret-token")
    r, doc = admin.call("POST", "/api/applications/b1/drain", token="")
    assert r.status == 401 and "Authorization" in doc["error"]
    assert (r.header("WWW-Authenticate") or "").startswith("Bearer")
    r, doc = admin.call("POST", "/api/applications/b1/drain", token="s3cret-tokeN")
    assert r.status == 401
    r, doc = admin.call("POST", "/api/reload", token="wrong")
    assert r.status == 401
    assert admin.state("b1") == "up"
    # Reading needs no token.
    r, _ = admin.call("GET", "/api/applications", token="")
    assert r.status == 200
    r, doc = admin.call("POST", "/api/applications/b1/drain")
    assert r.status == 200 and doc["state"] in ("draining", "maintenance")


def test_not_found_method_and_size(backends, sluice):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, b2])
    r, doc = admin.call("GET", "/api/applications/nope")
    assert r.status == 404 and doc["error"] == 'no application named "nope"'
    r, doc = admin.post("/api/applications/nope/drain")
    assert r.status == 404
    r, doc = admin.call("GET", "/api/nothing")
    assert r.status == 404 and "error" in doc
    r, doc = admin.call("GET", "/api/applications/b1/drain")
    assert r.status == 405 and r.header("Allow") == "POST" and "error" in doc
    r, doc = admin.call("POST", "/api/applications")
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"
    r, doc = admin.post("/api/reload", body=b"x" * (64 * 1024 + 1))
    assert r.status == 413 and "error" in doc
    with RawConnection(admin.port) as c:
        c.send("GET /api/applications HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % ("y" * 9000))
        r = c.read_response()
        assert r.status == 413 and json.loads(r.body)["error"]
    with RawConnection(admin.port) as c:
        c.send("GET /api/applications HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        r = c.read_response()
        assert r.status == 400 and json.loads(r.body)["error"]
    assert admin.state("b1") == "up"


def test_admin_connections_are_limited(backends, sluice):
    b1, = backends(1)
    s, admin = start(sluice, [b1])
    held = [RawConnection(admin.port) for _ in range(16)]
    try:
        for c in held:
            c.send("GET /api/applications HTTP/1.1\r\n")    # accepted, not answered yet
        time.sleep(0.3)
        with RawConnection(admin.port) as extra:
            extra.send("GET /api/applications HTTP/1.1\r\nHost: x\r\n\r\n")
            r = extra.read_response(timeout=scaled(3))
            assert r.status == 503 and "too many" in json.loads(r.body)["error"]
    finally:
        for c in held:
            c.close()
    assert wait_until(lambda: admin.call("GET", "/api/applications")[0].status == 200, scaled(3))


# --------------------------------------------------------------- reload

def test_reload_over_the_api(backends, sluice):
    b1, b2, b3 = backends(3)
    s, admin = start(sluice, [b1, b2])
    sections = admin_sections(admin.port)
    with KeepAlive(s.port) as c:
        assert c.get("/").status == 200
        good_text = s.config_path.read_text()
        s.config_path.write_text(good_text + "\n[[applications]]\nname = \"b9\"\nport = 1\n")
        r, doc = admin.post("/api/reload")
        assert r.status == 400, r
        assert doc["error"] and doc["errors"], doc
        assert all(line.startswith(str(s.config_path) + ":") for line in doc["errors"]), doc
        assert any("ip or host" in line for line in doc["errors"]), doc
        # The old configuration serves, the open connection too.
        assert c.get("/").status == 200 and c.same_socket()
        assert [a["name"] for a in admin.call("GET", "/api/applications")[1]] == ["b1", "b2"]

        s.config_path.write_text(build_config(s.port, [app_entry(b1, weight=2), b3], sections))
        r, doc = admin.post("/api/reload")
        assert r.status == 200, r
        assert doc["added"] == ["b3"] and doc["removed"] == ["b2"] and doc["changed"] == ["b1"], doc
        assert c.get("/").status == 200 and c.same_socket()
    assert [a["name"] for a in admin.call("GET", "/api/applications")[1]] == ["b1", "b3"]
    assert wait_until(lambda: "b3" in served_by(s, 6), scaled(3))


# --------------------------------------------------------------- start-up

def test_admin_port_in_use_stops_the_start(backends, tmp_path):
    b1, = backends(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        f = tmp_path / "a.toml"
        f.write_text(build_config(free_port(), [b1], admin_sections(port)))
        p = run_sluice(["-c", f])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "127.0.0.1:%d" % port in p.stderr and "admin" in p.stderr and "in use" in p.stderr


def test_public_admin_address_needs_a_token(backends, tmp_path):
    b1, = backends(1)
    f = tmp_path / "a.toml"
    f.write_text(build_config(free_port(), [b1], {"admin": {"listen": "0.0.0.0:%d" % free_port()}}))
    p = run_sluice(["-c", f])
    assert p.returncode == 1
    assert "%s:" % f in p.stderr and "admin.token" in p.stderr


# --------------------------------------------------------------- sluice ctl

def ctl(*args):
    return run_sluice(["ctl"] + [str(a) for a in args])


def test_ctl(backends, sluice):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, b2], token="tok")
    cfg = s.config_path

    p = ctl("-c", cfg, "list")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ADDRESS", "STATE"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["b1", "127.0.0.1:%d" % b1.port, "up"], ["b2", "127.0.0.1:%d" % b2.port, "up"]]

    p = ctl("-c", cfg, "--json", "list")
    assert p.returncode == 0 and [a["name"] for a in json.loads(p.stdout)] == ["b1", "b2"]

    p = ctl("-c", cfg, "show", "b2")
    assert p.returncode == 0 and "state:" in p.stdout and "127.0.0.1:%d" % b2.port in p.stdout

    p = ctl("-c", cfg, "drain", "b2")
    assert p.returncode == 0, p.stderr
    assert wait_until(lambda: admin.state("b2") == "maintenance", scaled(1))
    p = ctl("-c", cfg, "drain", "b1")
    assert p.returncode == 1 and "last application up" in p.stderr
    p = ctl("-c", cfg, "enable", "b2")
    assert p.returncode == 0, p.stderr
    assert wait_until(lambda: admin.state("b2") == "up", scaled(2))

    p = ctl("-c", cfg, "reload")
    assert p.returncode == 0 and "reloaded: 2 applications" in p.stdout, p.stdout + p.stderr

    p = ctl("-c", cfg, "show", "nope")
    assert p.returncode == 1 and 'no application named "nope"' in p.stderr

    p = ctl("-c", cfg, "--token", "wrong", "drain", "b1")
    assert p.returncode == 1 and "Authorization" in p.stderr
    assert admin.state("b1") == "up"

    good = cfg.read_text()
    cfg.write_text(good + "\n[[applications]]\nname = \"b9\"\nport = 1\n")
    p = ctl("-c", cfg, "reload")
    assert p.returncode == 1 and "ip or host" in p.stderr and "%s:" % cfg in p.stderr
    cfg.write_text(good)


def test_ctl_errors(tmp_path):
    port = free_port()
    p = ctl("--admin", "127.0.0.1:%d" % port, "list")
    assert p.returncode == 1
    assert "cannot reach sluice at 127.0.0.1:%d: connection refused" % port in p.stderr
    f = tmp_path / "a.toml"
    f.write_text('[admin]\nlisten = "127.0.0.1:%d"\n' % port)
    p = ctl("-c", f, "list")
    assert p.returncode == 1 and "127.0.0.1:%d" % port in p.stderr
    for bad in (["frobnicate"], [], ["show"], ["drain", "a", "b"], ["list", "--force"], ["--nope", "list"]):
        p = ctl("--admin", "127.0.0.1:%d" % port, *bad)
        assert p.returncode == 2, (bad, p.stderr)
    p = ctl("-c", tmp_path / "missing.toml", "list")
    assert p.returncode == 1 and "missing.toml" in p.stderr
