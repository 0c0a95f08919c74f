"""Health: active checks ([health]), passive detection on live traffic
([passive]), state transitions and the alerts they send ([alerts])."""

import collections
import datetime
import http.client
import re
import stat
import time

import pytest

from conftest import SCALE, KeepAlive, app_entry, duration, get, scaled, wait_until

INTERVAL = 0.2
TIMEOUT = 0.3 * SCALE
FALL = 3
RISE = 2
SLACK = 1.0 * SCALE

HEALTH = {"interval": duration(INTERVAL * 1000), "timeout": duration(TIMEOUT * 1000),
          "fall": FALL, "rise": RISE}


def down_rx(b):
    return r"application %s \S*:%d up -> down" % (re.escape(b.name), b.port)


def up_rx(b):
    return r"application %s \S*:%d down -> up" % (re.escape(b.name), b.port)


class Traffic:
    """GETs over a few keep-alive client connections; remembers who served
    and every failure a client would have seen."""

    def __init__(self, port, connections=3):
        self.port = port
        self.conns = [None] * connections
        self.i = 0
        self.failures = []
        self.served = collections.Counter()

    def one(self, path="/"):
        k = self.i % len(self.conns)
        self.i += 1
        try:
            if self.conns[k] is None:
                self.conns[k] = KeepAlive(self.port, timeout=scaled(5))
            r = self.conns[k].get(path)
        except (OSError, http.client.HTTPException) as e:
            self.failures.append("request %d: %r" % (self.i, e))
            self.conns[k] = None
            return None
        if r.status != 200:
            self.failures.append("request %d: %d %r" % (self.i, r.status, r.body[:100]))
        else:
            self.served[r.backend] += 1
        if (r.header("Connection") or "").lower() == "close":
            self.conns[k].close()
            self.conns[k] = None
        return r

    def burst(self, n, path="/"):
        before = collections.Counter(self.served)
        for _ in range(n):
            self.one(path)
        return self.served - before

    def until(self, predicate, timeout, path="/"):
        """Sends requests until predicate() is truthy (bounded); returns the
        time it became true or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return time.monotonic()
            self.one(path)
            time.sleep(0.01)
        return time.monotonic() if predicate() else None

    def close(self):
        for c in self.conns:
            if c:
                c.close()


def test_killed_application_goes_down_and_comes_back(backends, sluice):
    b1, b2, b3 = backends(3)
    s = sluice([b1, b2, b3], sections={"health": HEALTH})
    t = Traffic(s.port)
    try:
        assert set(t.burst(30)) == {"b1", "b2", "b3"}
        b2.kill()
        killed = time.monotonic()
        bound = FALL * INTERVAL + TIMEOUT + SLACK
        seen = t.until(lambda: re.search(down_rx(b2), s.stderr()), bound + 2 * SCALE)
        assert seen, "no 'up -> down' for b2 in sluice's log"
        assert seen - killed <= bound, "down detected after %.2fs (bound %.2fs)" % (seen - killed, bound)
        assert re.search(down_rx(b2) + r": \S", s.stderr()), "transition logged without a reason"
        assert "b2" not in t.burst(30)
        b2.restart()
        restarted = time.monotonic()
        bound = (RISE + 1) * INTERVAL * 1.1 + TIMEOUT + SLACK
        seen = t.until(lambda: re.search(up_rx(b2), s.stderr()), bound + 2 * SCALE)
        assert seen, "no 'down -> up' for b2 in sluice's log"
        assert seen - restarted <= bound, "up after %.2fs (bound %.2fs)" % (seen - restarted, bound)
        # rise passes, about an interval apart, counted once it listens again
        assert seen - restarted >= (RISE - 1) * INTERVAL * 0.9 - 0.1, \
            "up %.2fs after the restart: fewer than %d checks can have passed" % (seen - restarted, RISE)
        assert t.burst(30)["b2"] >= 5, "b2 is up but gets no traffic"
        assert t.failures == [], t.failures
    finally:
        t.close()


def _log_times(text, pattern):
    """Times (s since the epoch) of the log lines matching pattern."""
    return [_parse_time(m.group(1)) for m in re.finditer(r"^(\S+) \[\w+\] " + pattern, text, re.M)]


def _first_pass_to_up(text, b, rise):
    """For each time b came up: seconds from the first pass of the streak
    that brought it up to its coming up, from sluice's own timestamps."""
    firsts = _log_times(text, r"application %s \S+ health check passed \(1 of %d\)"
                        % (re.escape(b.name), rise))
    gaps = []
    for up in _log_times(text, up_rx(b)):
        before = [t for t in firsts if t <= up]
        gaps.append(up - before[-1] if before else None)
    return gaps


def test_restarted_application_back_within_fast_interval(backends, sluice):
    """A restarted application is back after the check that finds it (at
    most an interval) and rise - 1 more, fast_interval apart: well under
    the rise intervals it would take at the normal rhythm."""
    interval, fast, rise, rounds = 2.0, 0.25, 2, 3
    b1, b2 = backends(2)
    s = sluice([b1, b2], sections={"health": {"interval": "2s", "fast_interval": "250ms", "rise": rise,
                                              "fall": FALL, "timeout": duration(TIMEOUT * 1000)}})
    bound = interval + (rise - 1) * fast + 0.7 * SCALE
    assert SCALE > 1 or bound < 2 * interval, "the bound would not tell fast checks from slow ones"
    t = Traffic(s.port)
    recoveries = []
    try:
        for n in range(1, rounds + 1):
            b2.kill()                                   # SIGKILL to its PID
            went_down = t.until(lambda: len(re.findall(down_rx(b2), s.stderr())) >= n, scaled(10))
            assert went_down, "round %d: sluice never marked the killed b2 down" % n
            restarted = time.monotonic()
            b2.start()                                  # same port
            deadline = restarted + bound + scaled(3)
            back = None
            while back is None and time.monotonic() < deadline:
                r = t.one()
                if r is not None and r.backend == "b2":
                    back = time.monotonic()
                time.sleep(0.01)
            assert back, "round %d: no request reached b2 within %.1fs of its restart" % (n, deadline - restarted)
            recoveries.append(back - restarted)
        print("recovery after restart: %s s" % " ".join("%.2f" % r for r in recoveries))
        assert max(recoveries) <= bound, \
            "back in rotation %s s after a restart (bound %.2fs)" % (recoveries, bound)
        # From the first pass to up: rise - 1 fast intervals, not intervals.
        # (A lucky restart right before a check could pass the bound above
        # even at the normal rhythm; this cannot.)
        gaps = _first_pass_to_up(s.stderr(), b2, rise)
        assert len(gaps) == rounds and None not in gaps, gaps
        assert max(gaps) <= (rise - 1) * fast * 1.1 + 0.3 * SCALE, \
            "first pass to up took %s s, fast_interval %.2fs" % (["%.3f" % g for g in gaps], fast)
        assert t.failures == [], t.failures
    finally:
        t.close()


def test_health_status_500_takes_application_down(backends, sluice):
    b1, b2 = backends(2)
    s = sluice([b1, b2], sections={"health": HEALTH})
    t = Traffic(s.port)
    try:
        assert set(t.burst(10)) == {"b1", "b2"}
        b2.set_health(500)
        changed = time.monotonic()
        seen = t.until(lambda: re.search(down_rx(b2), s.stderr()), scaled(5))
        assert seen and seen - changed <= FALL * INTERVAL * 1.1 + TIMEOUT + SLACK
        assert "b2" not in t.burst(20)
        b2.set_health(200)
        assert t.until(lambda: re.search(up_rx(b2), s.stderr()), scaled(5))
        assert t.burst(20)["b2"] >= 5
        assert t.failures == [], t.failures
    finally:
        t.close()


def test_fall_and_rise_count_consecutive_checks(backends, sluice):
    b1, b2 = backends(2)
    fall, rise = 3, 2
    s = sluice([b1, b2], sections={"health": {"interval": "400ms", "timeout": duration(TIMEOUT * 1000),
                                              "fall": fall, "rise": rise}})

    def checks_since(marker):
        lines = b2.logged()
        idx = max(i for i, l in enumerate(lines) if l.startswith(marker))
        return sum(1 for l in lines[idx + 1:] if l == "GET /health")

    b2.set_health(500)
    assert wait_until(lambda: re.search(down_rx(b2), s.stderr()), scaled(4), interval=0.01)
    assert checks_since("POST /control/health?status=500") == fall, \
        "down after %d failing checks, fall = %d" % (checks_since("POST /control/health"), fall)
    b2.set_health(200)
    assert wait_until(lambda: re.search(up_rx(b2), s.stderr()), scaled(4), interval=0.01)
    assert checks_since("POST /control/health?status=200") == rise, \
        "up after %d passing checks, rise = %d" % (checks_since("POST /control/health"), rise)


def test_hanging_health_check_times_out(backends, sluice):
    b1, b2 = backends(2)
    s = sluice([b1, b2], sections={"health": HEALTH})
    t = Traffic(s.port)
    try:
        b2.hang_health()
        changed = time.monotonic()
        bound = FALL * (INTERVAL * 1.1 + TIMEOUT) + SLACK
        seen = t.until(lambda: re.search(down_rx(b2), s.stderr()), bound + 2 * SCALE)
        assert seen, "a /health that never answers did not take b2 down"
        assert seen - changed <= bound, "down after %.2fs" % (seen - changed)
        # the application itself still answers normal requests, but it is out
        assert "b2" not in t.burst(20)
        assert t.failures == [], t.failures
    finally:
        t.close()


def test_health_status_from_start(backends, sluice):
    b1, = backends(1)
    b2 = backends.start("sick", health_status=503)
    s = sluice([b1, b2], sections={"health": HEALTH})
    assert s.wait_stderr(down_rx(b2), FALL * INTERVAL * 1.1 + INTERVAL + TIMEOUT + SLACK)
    t = Traffic(s.port)
    try:
        assert "sick" not in t.burst(20)
        assert t.failures == []
    finally:
        t.close()


def test_alive_false_gets_no_traffic_until_rise(backends, sluice):
    b1, b2 = backends(2)
    fast, rise = 0.25, 3
    s = sluice([b1, app_entry(b2, alive=False)],
               sections={"health": {"interval": "500ms", "fast_interval": "250ms",
                                    "timeout": duration(TIMEOUT * 1000), "rise": rise, "fall": FALL}})
    started = time.monotonic()
    t = Traffic(s.port)
    try:
        early = t.burst(30)
        assert "b2" not in early, "an application with alive = false got traffic at start"
        assert early["b1"] == 30
        # rise passes: the first, then rise - 1 more fast_interval apart
        seen = t.until(lambda: re.search(up_rx(b2), s.stderr()), scaled(6))
        assert seen, "b2 never came up"
        assert seen - started >= (rise - 1) * fast * 0.9 - 0.05, \
            "up after %.2fs, before %d checks could pass" % (seen - started, rise)
        assert t.burst(30)["b2"] >= 10
        assert t.failures == []
    finally:
        t.close()


@pytest.mark.parametrize("server_errors", [0, 3])
def test_passive_server_errors(backends, sluice, server_errors):
    b1, b2 = backends(2)
    s = sluice([b1, b2], workers=1,
               sections={"health": {"interval": "10s"},
                         "passive": {"server_errors": server_errors}})
    # With one worker round robin alternates, so alternating a failing route
    # with a good one sends the 500s to one application in a row.
    per_app = collections.defaultdict(list)
    for i in range(6):
        r = get(s.port, "/status/500")
        per_app[r.backend].append(r.status)
        assert r.status == 500, "sluice must pass an application's 500 through"
        r = get(s.port, "/")
        per_app[r.backend].append(r.status)
        assert r.status == 200
        if server_errors and re.search(r"-> down", s.stderr()):
            break
    sick = [name for name, st in per_app.items() if st[:3] == [500, 500, 500]]
    assert len(sick) == 1, "round robin did not alternate: %r" % dict(per_app)
    sick = sick[0]
    healthy = ({"b1", "b2"} - {sick}).pop()
    if server_errors == 0:
        time.sleep(0.5)
        assert "-> down" not in s.stderr(), "a route's 500s took an application down"
        t = Traffic(s.port)
        assert set(t.burst(10)) == {"b1", "b2"}
        t.close()
    else:
        assert s.wait_stderr(r"application %s \S+ up -> down" % sick, scaled(1))
        assert not re.search(r"application %s \S+ up -> down" % healthy, s.stderr())
        t = Traffic(s.port)
        assert set(t.burst(10)) == {healthy}
        t.close()


def test_passive_connect_failures_before_next_check(backends, sluice):
    b1, b2 = backends(2)
    s = sluice([b1, b2], sections={"health": {"interval": "10s", "fall": 3},
                                   "passive": {"failures": 2}})
    t = Traffic(s.port)
    try:
        assert set(t.burst(10)) == {"b1", "b2"}
        b2.kill()
        killed = time.monotonic()
        seen = t.until(lambda: re.search(down_rx(b2), s.stderr()), scaled(3))
        assert seen, "live traffic did not take the dead application down"
        assert seen - killed < scaled(2)
        assert "b2" not in t.burst(10)
        assert t.failures == [], t.failures
    finally:
        t.close()


# --------------------------------------------------------------- alerts

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _transitions(events, name):
    return [e["json"] for e in events if e["json"] and e["json"].get("application") == name]


def _fleet_events(events, event, state):
    """The alerts about the whole pool ("*"), which say both the event and
    the state it left the pool in."""
    return [e["json"] for e in events if e["json"] and e["json"].get("application") == "*"
            and e["json"].get("event") == event and e["json"].get("state") == state]


def _all_down(events):
    return _fleet_events(events, "all_down", "down")


def _restored(events):
    return _fleet_events(events, "restored", "up")


def _check_alert(doc, b, state, previous):
    for field in ("application", "address", "state", "previous", "reason", "time", "host"):
        assert field in doc, "alert without %r: %r" % (field, doc)
    assert doc["application"] == b.name
    assert doc["address"].endswith(":%d" % b.port), doc
    assert (doc["state"], doc["previous"]) == (state, previous), doc
    assert isinstance(doc["reason"], str) and doc["reason"].strip(), doc
    assert isinstance(doc["host"], str) and doc["host"].strip(), doc
    assert RFC3339.match(doc["time"]), doc["time"]
    assert abs(_parse_time(doc["time"]) - time.time()) < 60, doc["time"]


def test_webhook_one_alert_per_transition(backends, sluice, webhook):
    b1, b2 = backends(2)
    sluice([b1, b2], sections={"health": HEALTH, "alerts": {"webhook": webhook.url}})
    time.sleep(0.5)
    assert webhook.snapshot() == [], "alerts without any transition"
    b2.kill()
    assert wait_until(lambda: _transitions(webhook.snapshot(), "b2"), scaled(5)), \
        "no webhook POST for b2 going down"
    b2.restart()
    assert wait_until(lambda: len(_transitions(webhook.snapshot(), "b2")) >= 2, scaled(5)), \
        "no webhook POST for b2 coming up"
    time.sleep(1.0)                       # duplicates would arrive by now
    events = webhook.snapshot()
    assert all(e["path"] == "/hook" for e in events)
    b2_alerts = _transitions(events, "b2")
    assert [a["state"] for a in b2_alerts] == ["down", "up"], b2_alerts
    _check_alert(b2_alerts[0], b2, "down", "up")
    _check_alert(b2_alerts[1], b2, "up", "down")
    assert _transitions(events, "b1") == []
    assert _all_down(events) == [], "all-down alert while b1 was up"
    assert len(events) == 2, [e["json"] for e in events]


HOOK = """#!/bin/sh
env | grep '^SLUICE_' > "%s/hook-$$-$(date +%%s%%N).env"
"""


def test_command_hook_environment(backends, sluice, tmp_path):
    out = tmp_path / "hook-out"
    out.mkdir()
    script = tmp_path / "hook.sh"
    script.write_text(HOOK % out)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    b1, b2 = backends(2)
    sluice([b1, b2], sections={"health": HEALTH, "alerts": {"command": str(script)}})

    def runs():
        found = []
        for f in sorted(out.iterdir()):
            env = dict(line.split("=", 1) for line in f.read_text().splitlines() if "=" in line)
            if env:
                found.append(env)
        return found

    b2.kill()
    assert wait_until(lambda: any(r.get("SLUICE_STATE") == "down" for r in runs()), scaled(5)), \
        "command not run (or without SLUICE_STATE=down): %r" % runs()
    b2.restart()
    assert wait_until(lambda: any(r.get("SLUICE_STATE") == "up" for r in runs()), scaled(5))
    time.sleep(0.5)
    got = [r for r in runs() if r.get("SLUICE_APP") == "b2"]
    assert len(got) == 2, got
    by_state = {r["SLUICE_STATE"]: r for r in got}
    down, up = by_state["down"], by_state["up"]
    assert down["SLUICE_PREVIOUS"] == "up" and up["SLUICE_PREVIOUS"] == "down"
    for r in (down, up):
        assert r["SLUICE_ADDRESS"].endswith(":%d" % b2.port), r
        assert r.get("SLUICE_REASON", "").strip(), r


def test_all_down_alert_once_and_restore(backends, sluice, webhook):
    b1, b2 = backends(2)
    s = sluice([b1, b2], sections={"health": HEALTH, "alerts": {"webhook": webhook.url}})
    b1.kill()
    b2.kill()
    assert wait_until(lambda: _all_down(webhook.snapshot()), scaled(5)), \
        "no all-down alert: %r" % [e["json"] for e in webhook.snapshot()]
    r = get(s.port, "/")
    assert r.status == 503 and r.header("Retry-After"), r
    time.sleep(1.0)
    assert len(_all_down(webhook.snapshot())) == 1
    assert _restored(webhook.snapshot()) == []
    b1.restart()
    assert wait_until(lambda: _restored(webhook.snapshot()), scaled(5)), "no restore alert"
    assert wait_until(lambda: get(s.port, "/").status == 200, scaled(2))
    time.sleep(1.0)
    events = webhook.snapshot()
    assert len(_all_down(events)) == 1 and len(_restored(events)) == 1, [e["json"] for e in events]
    assert [a["state"] for a in _transitions(events, "b1")] == ["down", "up"]
    assert [a["state"] for a in _transitions(events, "b2")] == ["down"]
    for doc in _all_down(events) + _restored(events):
        assert RFC3339.match(doc.get("time", "")), doc
