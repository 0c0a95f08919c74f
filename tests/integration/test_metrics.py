"""The metrics exposition as Prometheus's own tools read it.

build/metrics_sample renders what a scrape returns (metrics_render) for a
configuration and made-up per-worker counters. `promtool check metrics`
must find nothing to say about it, every family docs/metrics.md lists must
be there, and a real Prometheus server must scrape it cleanly and answer
the docs' queries from it. (The same check against sluice's admin listener
is check_sluice_admin_metrics in prometheus_scrape.py.)
"""

import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import BUILD, REPO, scaled
from prometheus_scrape import scrape_with_prometheus, wait_for_series

SAMPLE = BUILD / "metrics_sample"
PROMTOOL = shutil.which("promtool")

# Application names with every character a name may hold beside letters
# and digits.
CONFIG = """
[[applications]]
name = "web-1"
ip = "127.0.0.1"
port = 8001

[[applications]]
name = "api.v2_~:@[x]"
ip = "127.0.0.1"
port = 8002

[[applications]]
ip = "127.0.0.1"
port = 8003
"""
NAMES = {"web-1", "api.v2_~:@[x]", "127.0.0.1:8003"}


def render(tmp_path, workers=2):
    config = tmp_path / "applications.toml"
    config.write_text(CONFIG)
    assert SAMPLE.exists(), "%s is missing: run make" % SAMPLE
    r = subprocess.run([str(SAMPLE), str(config), str(workers)], capture_output=True, text=True,
                       timeout=scaled(10))
    assert r.returncode == 0, r.stderr
    return r.stdout


def promtool(text):
    assert PROMTOOL, "promtool is not installed (bash scripts/install-deps)"
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                          timeout=scaled(20))


def documented_families():
    """(name, type) of every metric docs/metrics.md lists in its tables."""
    doc = (REPO / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(sluice_[a-z_]+)` \| (counter|gauge|histogram) \|", doc, re.M))


def test_promtool_finds_nothing_to_say(tmp_path):
    text = render(tmp_path)
    r = promtool(text)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_promtool_is_strict_enough_to_trust():
    # The same check on a known fault: a counter-style name typed gauge.
    r = promtool("# HELP sluice_x_total x.\n# TYPE sluice_x_total gauge\nsluice_x_total 1\n")
    assert r.returncode != 0 and "_total" in r.stdout + r.stderr


def test_every_documented_family_is_exposed(tmp_path):
    text = render(tmp_path)
    exposed = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    documented = documented_families()
    assert len(documented) >= 15, documented
    assert exposed == documented
    # every application, in every per-application family
    for name, _ in documented:
        if name.startswith("sluice_application_"):
            series = set(re.findall(r'^%s(?:_bucket)?\{application="([^"]*)"' % name, text, re.M))
            assert series == NAMES, (name, series)


def _serve(text):
    body = text.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_prometheus_scrapes_it_and_answers_the_docs_queries(registry, tmp_path):
    text = render(tmp_path)
    server = _serve(text)
    try:
        query = scrape_with_prometheus(registry, tmp_path, "127.0.0.1:%d" % server.server_port)
        requests = wait_for_series(query, "sluice_application_requests_total", scaled(10))
        # metrics_sample: 100 + i + w per worker, two workers
        assert {m["application"]: v for m, v in requests or []} == {
            "web-1": 201, "api.v2_~:@[x]": 203, "127.0.0.1:8003": 205}, requests
        up = wait_for_series(query, 'sluice_application_state{state="up"} == 1', scaled(10))
        assert [m["application"] for m, _ in up or []] == ["web-1"], up
        not_up = wait_for_series(query, 'sluice_application_state{state="up"} == 0', scaled(10))
        assert {m["application"] for m, _ in not_up or []} == NAMES - {"web-1"}, not_up
        p99 = wait_for_series(query, "histogram_quantile(0.99, sum by (le, application) "
                                     "(rate(sluice_application_response_duration_seconds_bucket[1m])))",
                              scaled(10))
        assert {m["application"] for m, _ in p99 or []} == NAMES, p99
        errors = wait_for_series(query, "sum by (application) (rate(sluice_application_failures_total[1m])) "
                                        "/ sum by (application) (rate(sluice_application_requests_total[1m]))",
                                 scaled(10))
        assert {m["application"] for m, _ in errors or []} == NAMES, errors
    finally:
        server.shutdown()
        server.server_close()


from prometheus_scrape import check_sluice_admin_metrics  # noqa: E402


def test_prometheus_scrapes_sluice(backends, sluice, registry, tmp_path):
    # The whole path: traffic through sluice, a real Prometheus scraping the
    # admin listener's /metrics, the per-application series queried back.
    check_sluice_admin_metrics(backends, sluice, registry, tmp_path)
