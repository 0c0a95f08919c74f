"""Alerts in their receivers' formats ([[alerts.webhooks]]): a chat message,
PagerDuty events that open and close an incident, an SMS gateway's form with
headers from the environment; chat changes batched within [alerts] batch
while the all-down alert is never held; test alerts from the command line
and through the admin API; and the --check errors of the new keys."""

import json
import socket
import time
import urllib.parse

from conftest import (SCALE, build_config, duration, free_port, http_request, port_open, run_sluice, scaled,
                      wait_until)

HEALTH = {"interval": "200ms", "timeout": duration(300 * SCALE),
          "fall": 3, "rise": 2}


def toml_inline(d):
    return "{ " + ", ".join("%s = %s" % (json.dumps(k), json.dumps(v)) for k, v in d.items()) + " }"


def webhooks_toml(hooks):
    """[[alerts.webhooks]] tables; dict values become inline tables."""
    lines = []
    for h in hooks:
        lines.append("[[alerts.webhooks]]")
        for k, v in h.items():
            lines.append("%s = %s" % (k, toml_inline(v) if isinstance(v, dict) else json.dumps(v)))
        lines.append("")
    return "\n".join(lines)


def start(sluice, apps, hooks, alerts=None, sections=None):
    port = free_port()
    tables = {"health": HEALTH, "alerts": dict(alerts or {})}
    tables.update(sections or {})
    text = build_config(port, apps, tables) + "\n" + webhooks_toml(hooks)
    return sluice(config=text, port=port)


def at(receiver, path):
    return [e for e in receiver.snapshot() if e["path"] == path]


def url(receiver, path):
    return "http://127.0.0.1:%d%s" % (receiver.port, path)


def test_chat_burst_is_one_message(backends, sluice, webhook):
    """Three applications killed together: one chat message listing all
    three, while sluice's own JSON webhook still gets one POST each."""
    apps = backends(4)
    start(sluice, apps, [{"url": url(webhook, "/chat"), "format": "slack"}],
          alerts={"webhook": url(webhook, "/json"), "batch": duration(2000 * SCALE)})
    time.sleep(0.5)
    for b in apps[:3]:
        b.kill()
    assert wait_until(lambda: len(at(webhook, "/json")) >= 3, scaled(5)), at(webhook, "/json")
    assert wait_until(lambda: at(webhook, "/chat"), scaled(5)), "no chat message"
    time.sleep(2.5 * SCALE)                      # a second message would be here by now
    chats = at(webhook, "/chat")
    assert len(chats) == 1, [c["body"] for c in chats]
    doc = chats[0]["json"]
    assert list(doc) == ["text"], doc
    assert chats[0]["headers"]["Content-Type"] == "application/json"
    text = doc["text"]
    assert "3 changes" in text, text
    for b in apps[:3]:
        assert "application %s " % b.name in text and "is now down" in text, text
    assert apps[3].name not in text
    assert len(at(webhook, "/json")) == 3, [e["json"] for e in at(webhook, "/json")]


def test_all_down_is_not_held_by_the_batch(backends, sluice, webhook):
    """A 30 s batch window: the all-down alert still goes out at once,
    taking the changes held before it in the same message."""
    b1, b2 = backends(2)
    start(sluice, [b1, b2], [{"url": url(webhook, "/chat"), "format": "slack",
                              "text": "{application} {previous}->{state} ({up} of {total} up)"}],
          alerts={"batch": "30s"})
    time.sleep(0.5)
    killed = time.time()
    b1.kill()
    b2.kill()
    assert wait_until(lambda: at(webhook, "/chat"), scaled(6)), "the all-down alert was held back"
    assert time.time() - killed < 10 * SCALE
    time.sleep(0.5)
    chats = at(webhook, "/chat")
    assert len(chats) == 1, [c["body"] for c in chats]
    lines = chats[0]["json"]["text"].split("\n")
    assert lines[0].endswith("3 changes"), lines
    assert sorted(lines[1:3]) == ["- b1 up->down (1 of 2 up)", "- b2 up->down (0 of 2 up)"] or \
        sorted(lines[1:3]) == ["- b1 up->down (0 of 2 up)", "- b2 up->down (1 of 2 up)"], lines
    assert lines[3] == "- * up->down (0 of 2 up)", lines


def test_pagerduty_trigger_then_resolve(backends, sluice, webhook, monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_PD_KEY", "R0UT1NGKEY")
    b1, b2 = backends(2)
    start(sluice, [b1, b2], [{"url": url(webhook, "/v2/enqueue"), "format": "pagerduty",
                              "routing_key": "${SLUICE_TEST_PD_KEY}"}])
    b2.kill()
    assert wait_until(lambda: at(webhook, "/v2/enqueue"), scaled(5)), "no trigger"
    b2.restart()
    assert wait_until(lambda: len(at(webhook, "/v2/enqueue")) >= 2, scaled(6)), "no resolve"
    time.sleep(0.5)
    events = [e["json"] for e in at(webhook, "/v2/enqueue")]
    assert len(events) == 2, events
    trigger, resolve = events
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UT1NGKEY"
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve", events
    assert trigger["dedup_key"] == resolve["dedup_key"] == "sluice/b2", events
    p = trigger["payload"]
    assert "b2" in p["summary"] and "is now down" in p["summary"], p
    assert p["source"] and p["severity"] == "error" and p["timestamp"].endswith("Z"), p
    assert p["custom_details"]["up"] == 1 and p["custom_details"]["total"] == 2, p


def test_form_body_and_headers_from_environment(backends, sluice, webhook, monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_SMS_AUTH", "QUMxMjM6c2VjcmV0")
    b1, b2 = backends(2)
    start(sluice, [b1, b2], [{
        "url": url(webhook, "/2010-04-01/Accounts/AC123/Messages.json"), "format": "form",
        "headers": {"Authorization": "Basic ${SLUICE_TEST_SMS_AUTH}", "X-Sent-By": "sluice & co"},
        "fields": {"To": "+15550100", "From": "+15550199",
                   "Body": "{application} is {state} (was {previous}): {reason} [{up}/{total}] {{ok}}"}}])
    b2.kill()
    assert wait_until(lambda: at(webhook, "/2010-04-01/Accounts/AC123/Messages.json"), scaled(5))
    e = at(webhook, "/2010-04-01/Accounts/AC123/Messages.json")[0]
    assert e["headers"]["Content-Type"] == "application/x-www-form-urlencoded", e["headers"]
    assert e["headers"]["Authorization"] == "Basic QUMxMjM6c2VjcmV0", e["headers"]
    assert e["headers"]["X-Sent-By"] == "sluice & co"
    form = urllib.parse.parse_qs(e["body"].decode("ascii"), strict_parsing=True)
    assert form["To"] == ["+15550100"] and form["From"] == ["+15550199"], form
    body = form["Body"][0]
    assert body.startswith("b2 is down (was up): ") and body.endswith(" [1/2] {ok}"), body
    assert b"+15550100" not in e["body"]             # '+' must be encoded, or it reads as a space


def test_test_alert_from_the_command_line(sluice, webhook, tmp_path, registry):
    """--test-alert: one line per target, delivered or why not, exit 1 when
    one fails; it listens on nothing (its listen port is taken here)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    refused = free_port()
    marker = tmp_path / "command-ran"

    def config(hooks, command=""):
        text = build_config(port, [{"ip": "127.0.0.1", "port": 9}], {
            "alerts": {"webhook": url(webhook, "/json"), "command": command}})
        path = tmp_path / ("t%d.toml" % len(list(tmp_path.iterdir())))
        path.write_text(text + "\n" + webhooks_toml(hooks))
        return path

    try:
        good = config([{"url": url(webhook, "/chat"), "format": "slack"}],
                      command='echo "$SLUICE_EVENT" > %s' % marker)
        r = run_sluice(["--test-alert", "-c", good])
        assert r.returncode == 0, (r.stdout, r.stderr)
        lines = r.stdout.splitlines()
        assert lines == ["webhook http://127.0.0.1:%d: delivered" % webhook.port,
                         "webhooks[1] slack http://127.0.0.1:%d: delivered" % webhook.port,
                         "command: delivered"], r.stdout
        assert marker.read_text().strip() == "test"
        doc = at(webhook, "/json")[0]["json"]
        assert doc["test"] is True and doc["event"] == "test" and "TEST" in doc["text"], doc
        assert "TEST" in at(webhook, "/chat")[0]["json"]["text"]

        bad = config([{"url": "http://127.0.0.1:%d/refuses" % refused, "format": "slack"}])
        r = run_sluice(["--test-alert", "-c", bad])
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "webhook http://127.0.0.1:%d: delivered" % webhook.port in r.stdout.splitlines()
        assert ("webhooks[1] slack http://127.0.0.1:%d: not delivered: connection refused" % refused
                in r.stdout.splitlines()), r.stdout
    finally:
        taken.close()


def test_ctl_test_alert(backends, sluice, webhook):
    b1, b2 = backends(2)
    refused = free_port()
    admin = free_port()
    s = start(sluice, [b1, b2], [{"url": url(webhook, "/chat"), "format": "slack"},
                                 {"url": "http://127.0.0.1:%d/x" % refused, "format": "json"}],
              alerts={"webhook": url(webhook, "/json")},
              sections={"admin": {"listen": "127.0.0.1:%d" % admin, "token": "tok3n"}})
    assert wait_until(lambda: port_open(admin), scaled(5))
    r = http_request(admin, "POST", "/api/alerts/test", timeout=scaled(25))
    assert r.status == 401, r
    r = run_sluice(["ctl", "-c", s.config_path, "test-alert"], timeout=scaled(40))
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert "webhook http://127.0.0.1:%d: delivered" % webhook.port in lines, lines
    assert "webhooks[1] slack http://127.0.0.1:%d: delivered" % webhook.port in lines, lines
    assert "webhooks[2] json http://127.0.0.1:%d: not delivered: connection refused" % refused in lines, lines
    assert at(webhook, "/json")[0]["json"]["test"] is True
    r = http_request(admin, "POST", "/api/alerts/test", headers={"Authorization": "Bearer tok3n"},
                     timeout=scaled(25))
    doc = json.loads(r.body)
    assert r.status == 200 and doc["delivered"] == 2 and doc["failed"] == 1, doc
    # nothing changed: both applications still up, no transition alerted
    r = http_request(admin, "GET", "/api/applications", timeout=scaled(5))
    assert [a["state"] for a in json.loads(r.body)] == ["up", "up"]
    assert all(e["json"].get("event") == "test" for e in at(webhook, "/json"))


def test_ctl_test_alert_all_delivered(backends, sluice, webhook):
    b1 = backends(1)[0]
    admin = free_port()
    s = start(sluice, [b1], [{"url": url(webhook, "/chat"), "format": "slack"}],
              sections={"admin": {"listen": "127.0.0.1:%d" % admin}})
    assert wait_until(lambda: port_open(admin), scaled(5))
    r = run_sluice(["ctl", "-c", s.config_path, "test-alert"], timeout=scaled(40))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.splitlines() == ["webhooks[1] slack http://127.0.0.1:%d: delivered" % webhook.port]


CHECK_ERRORS = """
[[applications]]
ip = "127.0.0.1"
port = 8001

[alerts]
batch = "soon"

[[alerts.webhooks]]
url = "http://127.0.0.1:1/a"
format = "form"
fields = { Body = "{application} is {stat}" }
headers = { Authorization = "${SLUICE_TEST_SURELY_UNSET}" }

[[alerts.webhooks]]
format = "teams"

[[alerts.webhooks]]
url = "http://127.0.0.1:1/c"
format = "slack"
fields = { a = "b" }

[[alerts.webhooks]]
url = "http://127.0.0.1:1/d"
format = "pagerduty"
"""


def test_check_errors_have_line_and_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(CHECK_ERRORS)
    r = run_sluice(["--check", "-c", path])
    assert r.returncode == 1, r
    errors = r.stderr.splitlines()
    want = [
        "%s:7:9: alerts.batch: invalid duration" % path,
        "%s:12:19: alerts.webhooks.fields: unknown field {stat}" % path,
        "%s:13:29: alerts.webhooks.headers: the environment variable SLUICE_TEST_SURELY_UNSET is not set" % path,
        "%s:16:10: alerts.webhooks.format: unknown value \"teams\"" % path,
        "%s:15:1: alerts.webhooks: url is required" % path,
        "%s:21:1: alerts.webhooks.fields: only format = \"form\" sends fields" % path,
        "%s:23:1: alerts.webhooks: format = \"pagerduty\" needs routing_key" % path,
    ]
    for w in want:
        assert any(e.startswith(w) for e in errors), (w, errors)
    assert len(errors) == len(want), errors


def test_a_hung_webhook_does_not_hold_back_another(sluice, webhook, raw_app):
    """Eleven alerts (five drains, each to draining then maintenance, and
    all_down) to a receiver that accepts connections and never answers, and
    to one that answers: the second gets every alert at once, not after
    the first one's timeouts (5 s) free room for them."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)                                   # connections complete; nothing is read
    try:
        app = raw_app(lambda sock, head, rest: None)
        admin = free_port()
        apps = [{"name": "a%d" % i, "ip": "127.0.0.1", "port": app.port} for i in range(5)]
        start(sluice, apps, [{"url": "http://127.0.0.1:%d/hung" % hung.getsockname()[1], "format": "json"},
                             {"url": url(webhook, "/good"), "format": "json"}],
              sections={"admin": {"listen": "127.0.0.1:%d" % admin}})
        began = time.monotonic()
        for i in range(5):
            r = http_request(admin, "POST", "/api/applications/a%d/drain?force=1" % i)
            assert r.status == 200, r
        assert wait_until(lambda: len(at(webhook, "/good")) >= 11, 10), at(webhook, "/good")
        took = time.monotonic() - began
        events = [(e["json"]["application"], e["json"]["state"]) for e in at(webhook, "/good")]
        assert ("*", "down") in events and ("a4", "maintenance") in events, events
        assert took < 4.0, "the answering webhook waited %.1f s behind the hung one: %r" % (took, events)
    finally:
        hung.close()


def test_all_down_goes_before_the_changes_queued_ahead_of_it(sluice, raw_app):
    """Forty changes (twenty drains) to a receiver that takes 2 s an
    answer, eight at a time: all_down, queued behind most of them, is
    started as soon as a slot frees, not in the fourth round."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    arrivals = []

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrivals.append((time.monotonic(), json.loads(body)["event"]))
            time.sleep(2)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        app = raw_app(lambda sock, head, rest: None)
        admin = free_port()
        apps = [{"name": "a%d" % i, "ip": "127.0.0.1", "port": app.port} for i in range(20)]
        start(sluice, apps, [{"url": "http://127.0.0.1:%d/slow" % server.server_address[1], "format": "json"}],
              sections={"admin": {"listen": "127.0.0.1:%d" % admin}})
        for i in range(20):
            r = http_request(admin, "POST", "/api/applications/a%d/drain?force=1" % i)
            assert r.status == 200, r
        drained = time.monotonic()
        assert wait_until(lambda: any(e == "all_down" for _, e in list(arrivals)), 15), arrivals
        when = next(t for t, e in arrivals if e == "all_down")
        ahead = sum(1 for t, e in arrivals if t < when)
        assert when - drained < 3.0, "all_down waited %.1f s behind %d changes" % (when - drained, ahead)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
