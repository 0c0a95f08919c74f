"""TLS to applications (tsl = true): without verification a self-signed
certificate is accepted; with tls_verify the certificate must chain to
ca_file and name the application (its sni, or its IP address), for proxied
requests and for health checks alike.

The applications are Python http.server instances wrapped in ssl, with
certificates the test makes with `openssl req`: a CA, a leaf it signs for
"app.test" with the IP address 127.0.0.1 as well, a second CA that signed
nothing here, and a self-signed certificate."""

import re
import signal
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import build_config, get, run_sluice, scaled, wait_until

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
LEAF_NAMES = "subjectAltName=DNS:app.test,IP:127.0.0.1"


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(d, stem):
    _openssl("req", "-x509", *EC_KEY, "-keyout", stem + ".key", "-out", stem + ".pem", "-days", "2",
             "-subj", "/CN=sluice test " + stem, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Paths: ca, other_ca (PEM), leaf and self_signed ((cert, key))."""
    d = tmp_path_factory.mktemp("certs")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _openssl("req", *EC_KEY, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=app.test", cwd=d)
    (d / "leaf.ext").write_text(LEAF_NAMES + "\n")
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext", cwd=d)
    _openssl("req", "-x509", *EC_KEY, "-keyout", "self.key", "-out", "self.pem", "-days", "2",
             "-subj", "/CN=app.test", "-addext", LEAF_NAMES, cwd=d)
    return {"ca": str(d / "ca.pem"), "other_ca": str(d / "other-ca.pem"),
            "leaf": (str(d / "leaf.pem"), str(d / "leaf.key")),
            "self_signed": (str(d / "self.pem"), str(d / "self.key"))}


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass    # handshakes sluice refuses, by design of the tests


class TlsApp:
    """An HTTPS application: answers every GET 200 with X-Backend: its
    name (and closes the connection after a path under /close/), and
    records the SNI each handshake carried and, per request, whether its
    connection resumed a TLS session."""

    def __init__(self, name, cert):
        self.name = name
        self.server_names = []
        self.resumed = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = ("%s %s\n" % (app.name, self.path)).encode()
                app.resumed.append(self.connection.session_reused)
                self.send_response(200)
                self.send_header("X-Backend", app.name)
                if self.path.startswith("/close/"):
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        context.sni_callback = lambda sock, server_name, ctx: self.server_names.append(server_name)
        self.server = QuietServer(("127.0.0.1", 0), Handler)
        # The handshake runs in the request's thread, so a client that
        # refuses the certificate never stalls the accepting one.
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def entry(self, **kw):
        entry = {"name": self.name, "ip": "127.0.0.1", "port": self.port, "tsl": True}
        entry.update(kw)
        return entry

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def tls_app():
    """Factory: tls_app(name, (cert, key)) -> TlsApp, closed after the test."""
    apps = []

    def make(name, cert):
        a = TlsApp(name, cert)
        apps.append(a)
        return a

    yield make
    for a in apps:
        a.close()


# Health checks out of the way unless a test is about them: a request
# meets the application's certificate itself.
NO_CHECKS = {"health": {"interval": "1h"}}


def test_without_verification_a_self_signed_certificate_is_accepted(certs, tls_app, sluice):
    app = tls_app("api-1", certs["self_signed"])
    s = sluice([app.entry()], sections=NO_CHECKS)
    for i in range(3):
        r = get(s.port, "/plain/%d" % i)
        assert r.status == 200 and r.body == b"api-1 /plain/%d\n" % i, r
    assert "TLS" not in s.stderr()


def test_verified_against_sni_on_an_application_named_by_ip(certs, tls_app, sluice):
    app = tls_app("api-1", certs["leaf"])
    s = sluice([app.entry(tls_verify=True, ca_file=certs["ca"], sni="app.test")], sections=NO_CHECKS)
    r = get(s.port, "/verified")
    assert r.status == 200 and r.backend == "api-1", r
    assert "app.test" in app.server_names, "SNI sent: %r" % app.server_names


def test_verified_against_the_ip_address_without_sni(certs, tls_app, sluice):
    app = tls_app("api-1", certs["leaf"])
    s = sluice([app.entry(tls_verify=True, ca_file=certs["ca"])], sections=NO_CHECKS)
    r = get(s.port, "/by-ip")
    assert r.status == 200 and r.backend == "api-1", r
    assert app.server_names == [None] * len(app.server_names), "an IP address went out as SNI"


def test_a_new_connection_resumes_the_verified_session(certs, tls_app, sluice):
    app = tls_app("api-1", certs["leaf"])
    s = sluice([app.entry(tls_verify=True, ca_file=certs["ca"], sni="app.test")], sections=NO_CHECKS,
               workers=1)
    for i in range(3):
        r = get(s.port, "/close/%d" % i)     # each on a new connection to the application
        assert r.status == 200 and r.backend == "api-1", r
    assert app.resumed == [False, True, True], app.resumed


@pytest.mark.parametrize("case", ["name", "ca", "self_signed"])
def test_a_certificate_that_fails_verification_is_a_connect_failure(certs, tls_app, sluice, case):
    cert, ca, sni, reason = {
        "name": (certs["leaf"], certs["ca"], "other.test", "hostname mismatch"),
        "ca": (certs["leaf"], certs["other_ca"], "app.test", "unable to get local issuer certificate"),
        "self_signed": (certs["self_signed"], None, "app.test", "self-signed certificate"),
    }[case]
    app = tls_app("api-1", cert)
    entry = app.entry(tls_verify=True, sni=sni)
    if ca:
        entry["ca_file"] = ca
    s = sluice([entry], sections=NO_CHECKS)
    r = get(s.port, "/refused")
    # Nothing was sent: the answer is sluice's "none could be reached".
    assert r.status == 503, r
    logged = r"application api-1 127\.0\.0\.1:%d: TLS certificate verify failed: %s" % (
        app.port, re.escape(reason))
    assert s.wait_stderr(logged, scaled(3)), s.stderr()[-2000:]
    assert len(re.findall(logged, s.stderr())) == 1, s.stderr()[-2000:]


def test_a_refused_certificate_moves_the_request_to_another_application(certs, tls_app, sluice):
    good = tls_app("good", certs["leaf"])
    bad = tls_app("bad", certs["leaf"])
    apps = [bad.entry(tls_verify=True, ca_file=certs["other_ca"], sni="app.test"),
            good.entry(tls_verify=True, ca_file=certs["ca"], sni="app.test")]
    s = sluice(apps, sections=NO_CHECKS, workers=1)
    served = [get(s.port, "/retry/%d" % i) for i in range(6)]
    assert all(r.status == 200 and r.backend == "good" for r in served), served
    assert s.wait_stderr(r"application bad [^ ]+: TLS certificate verify failed", scaled(3))


def test_health_checks_verify_too(certs, tls_app, sluice):
    good = tls_app("good", certs["leaf"])
    bad = tls_app("bad", certs["leaf"])
    apps = [good.entry(tls_verify=True, ca_file=certs["ca"], sni="app.test"),
            bad.entry(tls_verify=True, ca_file=certs["ca"], sni="wrong.test")]
    s = sluice(apps, sections={"health": {"interval": "200ms", "fall": 2}})
    assert s.wait_stderr(r"application bad [^ ]+ up -> down", scaled(5)), s.stderr()[-2000:]
    assert re.search(r"application bad [^ ]+ health check failed .*TLS certificate verify failed: "
                     r"hostname mismatch", s.stderr()), s.stderr()[-2000:]
    assert not re.search(r"application good [^ ]+ (up -> down|health check failed)", s.stderr())
    served = [get(s.port, "/after/%d" % i) for i in range(4)]
    assert all(r.status == 200 and r.backend == "good" for r in served), served


def test_a_reload_changes_the_certificate_check(certs, tls_app, sluice, tmp_path):
    app = tls_app("api-1", certs["leaf"])
    checks = {"health": {"interval": "200ms", "fall": 1, "rise": 1}}
    s = sluice([app.entry(tls_verify=True, ca_file=certs["other_ca"], sni="app.test")], sections=checks)
    assert s.wait_stderr(r"application api-1 [^ ]+ up -> down", scaled(5)), s.stderr()[-2000:]
    assert get(s.port, "/before").status == 503
    s.config_path.write_text(build_config(s.port, [app.entry(tls_verify=True, ca_file=certs["ca"],
                                                             sni="app.test")], checks))
    s.proc.send(signal.SIGHUP)
    assert wait_until(lambda: get(s.port, "/after").status == 200, scaled(5)), s.stderr()[-2000:]
    # A CA file that cannot be used is refused: the running check stays.
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    s.config_path.write_text(build_config(s.port, [app.entry(tls_verify=True, ca_file=str(garbage),
                                                             sni="app.test")], checks))
    s.proc.send(signal.SIGHUP)
    assert s.wait_stderr(r"applications\.ca_file: .*no CA certificate could be read", scaled(5))
    assert s.wait_stderr(r"still serving the previous configuration", scaled(5))
    assert all(get(s.port, "/kept/%d" % i).status == 200 for i in range(3))


def test_check_refuses_an_unusable_ca_file(certs, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    config = tmp_path / "sluice.toml"
    config.write_text('[[applications]]\nip = "127.0.0.1"\nport = 8443\ntsl = true\ntls_verify = true\n'
                      'ca_file = "%s"\n\n[[applications]]\nip = "127.0.0.1"\nport = 8444\n'
                      'sni = "app.test"\n' % garbage)
    r = run_sluice(["-c", config, "--check"])
    assert r.returncode != 0
    assert "%s:6:11: applications.ca_file: \"%s\": no CA certificate could be read" % (config, garbage) \
        in r.stderr + r.stdout, r.stderr
    assert "%s:11:7: applications.sni: only for an application with tls = true" % config \
        in r.stderr + r.stdout, r.stderr
