"""The dashboard at GET / in a real browser: Debian's chromium driven by
playwright-core (scripts/install-deps installs both) through
tests/dashboard/dashboard.test.mjs, against a sluice with two applications
and traffic flowing: states shown, live numbers, Drain and Enable, the token
field, the banner when sluice stops answering, a screenshot."""

import os
import pathlib
import subprocess
import threading

from conftest import SCALE, KeepAlive, scaled
from test_admin import start

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "dashboard" / "dashboard.test.mjs"


class Traffic:
    """Requests through sluice on one keep-alive connection until stopped."""

    def __init__(self, port):
        self.port = port
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with KeepAlive(self.port) as c:
            while not self.done.wait(0.01):
                c.get("/")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(scaled(5))


def run_page(admin_port, outfile, token=None):
    argv = ["node", str(SCRIPT), "http://127.0.0.1:%d/" % admin_port, str(outfile)]
    if token:
        argv += ["--token", token]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(60), cwd=SCRIPT.parent,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


def check_page(sluice, backends, tmp_path, token=None):
    b1, b2 = backends(2)
    s, admin = start(sluice, [b1, b2], token=token, health={"interval": "200ms", "timeout": "1s"})
    out = tmp_path / "dashboard.png"
    with Traffic(s.port):
        rc, text = run_page(admin.port, out, token)
    assert rc == 0 and "all passed" in text, text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return text


def test_dashboard_in_a_browser(backends, sluice, tmp_path):
    text = check_page(sluice, backends, tmp_path)
    assert "b2 shown up after Enable" in text


def test_dashboard_asks_for_the_token(backends, sluice, tmp_path):
    text = check_page(sluice, backends, tmp_path, token="s3cret")
    assert "a drain without the token shows the refusal" in text
