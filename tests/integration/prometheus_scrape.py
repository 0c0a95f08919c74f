"""A real Prometheus server scraping a target, for the metrics tests.

scrape_with_prometheus() starts `prometheus` (the Debian package of that
name, which scripts/install-deps installs) on a free port with one scrape
job, every second, for one target; waits until the target has been scraped
without error (a scrape Prometheus cannot parse leaves it "down" with the
parser's message); and returns a query function over its HTTP API.
test_metrics.py uses it on build/metrics_sample's text.

check_sluice_admin_metrics() is the end-to-end check of sluice's own
`GET /metrics` on the admin listener: traffic through sluice, a scrape by
Prometheus, the per-application series queried back (test_metrics.py).
"""

import json
import shutil
import urllib.parse
import urllib.request

from conftest import KeepAlive, free_port, port_open, scaled, wait_until

PROMETHEUS = shutil.which("prometheus")


def _get_json(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read().decode())
    except (OSError, ValueError):
        return None


def _target_state(port):
    """(health, lastError) of the only scrape target, or None before the
    first scrape."""
    doc = _get_json("http://127.0.0.1:%d/api/v1/targets" % port)
    targets = (doc or {}).get("data", {}).get("activeTargets", [])
    if not targets or targets[0].get("health") == "unknown":
        return None
    return targets[0].get("health"), targets[0].get("lastError", "")


def _query(port, expr):
    """The instant vector expr evaluates to: [(labels, value)], or None when
    the query failed."""
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": expr}))
    doc = _get_json(url)
    if not doc or doc.get("status") != "success":
        return None
    return [(s["metric"], float(s["value"][1])) for s in doc["data"]["result"]]


def scrape_with_prometheus(registry, tmp_path, target, metrics_path="/metrics"):
    """Prometheus scraping http://TARGET/metrics every second. Returns
    query(expr) -> [(labels, value)] or None; fails the test if the target is
    not scraped cleanly within a bound."""
    assert PROMETHEUS, "prometheus is not installed (bash scripts/install-deps)"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: sluice\n    metrics_path: %s\n"
        "    static_configs:\n      - targets: ['%s']\n" % (metrics_path, target))
    registry.start("prometheus", [PROMETHEUS, "--config.file=%s" % config,
                                  "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
                                  "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"])
    assert wait_until(lambda: port_open(port), scaled(20)), "prometheus did not start listening"
    state = wait_until(lambda: _target_state(port), scaled(20), interval=0.2)
    assert state == ("up", ""), "prometheus could not scrape %s: %r" % (target, state)
    return lambda expr: _query(port, expr)


def wait_for_series(query, expr, timeout):
    """The non-empty result of expr, waiting for scrapes to bring it."""
    return wait_until(lambda: query(expr), timeout, interval=0.25)


def check_sluice_admin_metrics(backends, sluice, registry, tmp_path):
    """sluice with its admin listener on, two applications, traffic; then
    Prometheus scrapes GET /metrics and every per-application series the
    docs name comes back with the traffic in it."""
    b1, b2 = backends(2)
    admin = free_port()
    s = sluice([b1, b2], sections={"admin": {"listen": "127.0.0.1:%d" % admin}})
    assert wait_until(lambda: port_open(admin), scaled(5)), "the admin listener is not open"
    with KeepAlive(s.port) as c:
        for i in range(20):
            assert c.get("/m-%d" % i).status == 200
    query = scrape_with_prometheus(registry, tmp_path, "127.0.0.1:%d" % admin)
    names = {b1.name, b2.name}
    requests = wait_for_series(query, "sluice_application_requests_total", scaled(10))
    assert {m["application"] for m, _ in requests or []} == names, requests
    assert sum(v for _, v in requests) == 20, requests
    up = wait_for_series(query, 'sluice_application_state{state="up"} == 1', scaled(10))
    assert {m["application"] for m, _ in up or []} == names, up
    answered = wait_for_series(query, 'sluice_requests_total{class="2xx"}', scaled(10))
    assert answered and answered[0][1] >= 20, answered
    p99 = wait_for_series(query, "histogram_quantile(0.99, sum by (le, application) "
                                 "(sluice_application_response_duration_seconds_bucket))", scaled(10))
    assert {m["application"] for m, _ in p99 or []} == names, p99
    checked = wait_for_series(query, "sluice_application_check_duration_seconds > 0", scaled(10))
    assert {m["application"] for m, _ in checked or []} == names, checked
