"""HTTPS on sluice's listeners: what a client of an HTTPS listener sees.

Every certificate is made here with the openssl command: a CA, a leaf for
one.test (and *.one.test), a leaf for two.test (and *.two.test), and a
second leaf for one.test with another organisation, to tell a reloaded
certificate from the first. Clients are curl, openssl s_client and Python's
ssl module, all bounded by timeouts.
"""

import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import SLUICE_BIN, RawConnection, build_config, free_port, get, scaled, wait_until

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")


def run(argv, timeout=30, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def make_leaf(d, stem, ca, subject, names):
    ext = d / (stem + ".ext")
    ext.write_text("subjectAltName=" + ",".join("DNS:" + n for n in names) + "\n")
    r = run([OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / (stem + ".key"),
             "-out", d / (stem + ".csr"), "-subj", subject])
    assert r.returncode == 0, r.stderr
    r = run([OPENSSL, "x509", "-req", "-in", d / (stem + ".csr"), "-CA", ca / "ca.pem", "-CAkey",
             ca / "ca.key", "-CAcreateserial", "-days", "30", "-out", d / (stem + ".pem"),
             "-extfile", ext])
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not OPENSSL or not CURL:
        pytest.fail("openssl and curl are needed (scripts/install-deps)", pytrace=False)
    d = tmp_path_factory.mktemp("certs")
    r = run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "ca.key",
             "-out", d / "ca.pem", "-days", "30", "-subj", "/CN=sluice test CA"])
    assert r.returncode == 0, r.stderr
    make_leaf(d, "one", d, "/O=first/CN=one.test", ["one.test", "*.one.test"])
    make_leaf(d, "two", d, "/O=first/CN=two.test", ["two.test", "*.two.test"])
    make_leaf(d, "one-renewed", d, "/O=second/CN=one.test", ["one.test", "*.one.test"])
    return d


def install(certs, directory, *stems):
    """Copies leaf certificates next to a config (so a test may overwrite them)."""
    for stem in stems:
        for ext in (".pem", ".key"):
            shutil.copy(certs / (stem + ext), directory / (stem + ext))


def start_tls(sluice, registry, certs, backends, extra_listen=(), certificates=(), server=None,
              sections=None, wait=True):
    """sluice with its HTTPS listener on its port; the certificate files sit
    in the registry's directory, next to the config."""
    install(certs, registry.dir, "one", "two", "one-renewed")
    all_sections = {
        "server": dict({"listen": ["127.0.0.1:{port}"] + list(extra_listen)}, **(server or {})),
        "server.tls": {"cert": "one.pem", "key": "one.key"},
    }
    all_sections.update(sections or {})
    text = build_config(0, backends, all_sections)
    for stem in certificates:
        text += '\n[[server.tls.certificates]]\ncert = "%s.pem"\nkey = "%s.key"\n' % (stem, stem)
    return sluice(config=text, wait=wait)


def tls_client(port, name, certs, timeout=5, verify=True):
    """A TLS connection to 127.0.0.1:port sending SNI name, checked against
    the test CA (verify) or not."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])   # these clients speak HTTP/1.1 (test_h2.py speaks h2)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=name)
    except Exception:
        raw.close()
        raise


class TLSConnection(RawConnection):
    """RawConnection's reading and parsing over TLS."""

    def __init__(self, port, name, certs, timeout=5):
        self.sock = tls_client(port, name, certs, timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def get(self, path="/", host=None):
        self.send("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host or "one.test"))
        return self.read_response()

    def organisation(self):
        subject = dict(x[0] for x in self.sock.getpeercert()["subject"])
        return subject.get("organizationName")


def presented_subject(port, name):
    """The subject of the certificate sluice presents for SNI name."""
    r = run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", name], timeout=10)
    m = re.search(r"^subject=(.*)$", r.stdout, re.M)
    return m.group(1) if m else "(none: %s)" % r.stderr[-300:]


def curl(args, timeout=20):
    return run([CURL, "-sS", "--max-time", "10"] + list(args), timeout=timeout)


# ---------------------------------------------------------------- tests

def test_https_keep_alive_beside_a_plain_listener(sluice, registry, backends, certs):
    b = backends.start(args=())
    plain = free_port()
    s = start_tls(sluice, registry, certs, [b], extra_listen=["http://127.0.0.1:%d" % plain],
                  sections={"log": {"format": "json"}})
    url = "https://one.test:%d/headers" % s.port
    r = curl(["--http1.1", "--cacert", certs / "ca.pem", "--resolve", "one.test:%d:127.0.0.1" % s.port,
              "-v", url, url, url])
    assert r.returncode == 0, r.stderr
    # three answers over one TLS connection, each telling the application it came over HTTPS
    assert r.stderr.count("Re-using existing connection") == 2, r.stderr
    assert "ALPN: server accepted http/1.1" in r.stderr
    assert r.stdout.count("X-Forwarded-Proto: https") == 3, r.stdout
    # the plain listener serves in the clear, and says so
    p = get(plain, "/headers")
    assert p.status == 200 and b"X-Forwarded-Proto: http\r\n" in p.body, p.body
    # the access log tells them apart (each worker writes its lines after its loop iteration)
    def schemes():
        lines = [json.loads(x) for x in s.stdout().splitlines() if x.startswith("{")]
        return sorted(x["scheme"] for x in lines if x["target"] == "/headers")
    wait_until(lambda: len(schemes()) >= 4, scaled(5))
    assert schemes() == ["http", "https", "https", "https"], s.stdout()


def test_sni_picks_the_certificate(sluice, registry, backends, certs):
    b = backends.start()
    s = start_tls(sluice, registry, certs, [b], certificates=["two"])
    assert "O = first, CN = one.test" in presented_subject(s.port, "one.test")
    assert "CN = two.test" in presented_subject(s.port, "two.test")
    # a wildcard covers one label, no more; an unknown name gets the first certificate
    assert "CN = two.test" in presented_subject(s.port, "www.two.test")
    assert "CN = one.test" in presented_subject(s.port, "a.b.two.test")
    assert "CN = one.test" in presented_subject(s.port, "unknown.example")
    # and a verifying client is served under either name
    for name in ("two.test", "api.two.test", "one.test"):
        r = curl(["--http1.1", "--cacert", certs / "ca.pem", "--resolve", "%s:%d:127.0.0.1" % (name, s.port),
                  "https://%s:%d/" % (name, s.port)])
        assert r.returncode == 0 and r.stdout == b.name + "\n", (name, r.stderr)


def test_old_protocols_and_ciphers_are_refused(sluice, registry, backends, certs):
    b = backends.start()
    s = start_tls(sluice, registry, certs, [b])
    ok = run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % s.port, "-tls1_2"], timeout=10)
    assert re.search(r"Cipher is ECDHE-", ok.stdout), ok.stdout[-500:]
    for flags in (["-tls1_1"], ["-tls1"], ["-tls1_2", "-cipher", "AES128-SHA"]):
        r = run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % s.port] + flags, timeout=10)
        assert r.returncode != 0 and "Cipher is (NONE)" in r.stdout, (flags, r.stdout[-500:])
    # each failure is logged at info with the client and the reason
    assert s.wait_stderr(r"\[info\] client 127\.0\.0\.1: TLS handshake failed: unsupported protocol", scaled(5))
    assert s.wait_stderr(r"\[info\] client 127\.0\.0\.1: TLS handshake failed: no shared cipher", scaled(5))
    assert "[error]" not in s.stderr()


def test_a_stalled_handshake_is_cut_while_others_are_served(sluice, registry, backends, certs):
    b = backends.start()
    admin = free_port()
    s = start_tls(sluice, registry, certs, [b],
                  sections={"server.timeouts": {"client_header": "1s"},
                            "admin": {"listen": "127.0.0.1:%d" % admin}})
    stalled = RawConnection(s.port, timeout=scaled(5))
    t0 = time.monotonic()
    stalled.send(b"\x16\x03\x01\x00")   # the start of a ClientHello, never finished
    with TLSConnection(s.port, "one.test", certs) as good:
        for _ in range(3):
            r = good.get()
            assert r.status == 200 and r.body == (b.name + "\n").encode()
    assert stalled.closed_within(scaled(4))
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < scaled(3), elapsed
    stalled.close()
    assert s.wait_stderr(r"client 127\.0\.0\.1: TLS handshake not completed within 1000 ms", scaled(3))
    m = get(admin, "/metrics")
    assert re.search(rb"^sluice_tls_handshake_failures_total [1-9]", m.body, re.M), m.body


def test_a_reload_swaps_the_certificate_and_keeps_open_connections(sluice, registry, backends, certs):
    b = backends.start()
    s = start_tls(sluice, registry, certs, [b])
    with TLSConnection(s.port, "one.test", certs) as before:
        assert before.get().status == 200
        assert before.organisation() == "first"
        install(certs, registry.dir, "one-renewed")
        shutil.copy(registry.dir / "one-renewed.pem", registry.dir / "one.pem")
        shutil.copy(registry.dir / "one-renewed.key", registry.dir / "one.key")
        mark = len(s.stderr())
        s.proc.send(signal.SIGHUP)
        assert s.wait_stderr(r"reload: .* loaded", scaled(5), mark), s.stderr()[mark:]
        # the open connection goes on with its session
        r = before.get()
        assert r.status == 200 and r.body == (b.name + "\n").encode()
        assert before.organisation() == "first"
        # a new one gets the new certificate
        with TLSConnection(s.port, "one.test", certs) as after:
            assert after.organisation() == "second"
            assert after.get().status == 200
        # the first still works after the new one came and went
        assert before.get().status == 200


def test_a_bad_certificate_is_refused_by_check_and_by_reload(sluice, registry, backends, certs):
    b = backends.start()
    s = start_tls(sluice, registry, certs, [b])
    # the key of another certificate
    shutil.copy(registry.dir / "two.key", registry.dir / "one.key")
    r = run([SLUICE_BIN, "-c", s.config_path, "--check"], timeout=scaled(15))
    assert r.returncode == 1
    assert re.search(r"\.toml:\d+:\d+: server\.tls\.key: \".*one\.key\": .*the key does not match the certificate",
                     r.stderr), r.stderr
    # a reload with it is refused; the old certificate goes on serving
    mark = len(s.stderr())
    s.proc.send(signal.SIGHUP)
    assert s.wait_stderr(r"still serving the previous configuration", scaled(5), mark), s.stderr()[mark:]
    assert "does not match the certificate" in s.stderr()[mark:]
    with TLSConnection(s.port, "one.test", certs) as c:
        assert c.organisation() == "first"
        assert c.get().status == 200
    # not PEM at all
    (registry.dir / "one.pem").write_text("not a certificate\n")
    r = run([SLUICE_BIN, "-c", s.config_path, "--check"], timeout=scaled(15))
    assert r.returncode == 1
    assert re.search(r"\.toml:\d+:\d+: server\.tls\.cert: \".*one\.pem\": cannot load the certificate chain",
                     r.stderr), r.stderr


def test_an_expired_certificate_is_a_warning(registry, certs, backends):
    d = registry.dir
    r = run([OPENSSL, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "old.key", "-out",
             d / "old.csr", "-subj", "/CN=old.test"])
    assert r.returncode == 0, r.stderr
    r = run([OPENSSL, "x509", "-req", "-in", d / "old.csr", "-signkey", d / "old.key", "-days", "0",
             "-out", d / "old.pem"])
    assert r.returncode == 0, r.stderr
    time.sleep(1.1)   # valid until the second it was made
    config = d / "expired.toml"
    config.write_text('[server]\nlisten = "127.0.0.1:%d"\n[server.tls]\ncert = "old.pem"\nkey = "old.key"\n'
                      '[[applications]]\nip = "127.0.0.1"\nport = 8001\n' % free_port())
    r = run([SLUICE_BIN, "-c", config, "--check"], timeout=scaled(15))
    assert r.returncode == 0 and "config ok" in r.stdout, r.stderr
    assert re.search(r"expired\.toml:4:8: warning: server\.tls\.cert: \".*old\.pem\": the certificate has expired",
                     r.stderr), r.stderr


def test_https_listen_needs_a_certificate(registry):
    config = registry.dir / "nocert.toml"
    config.write_text('[server]\nlisten = ["http://127.0.0.1:%d", "https://127.0.0.1:%d"]\n'
                      '[[applications]]\nip = "127.0.0.1"\nport = 8001\n' % (free_port(), free_port()))
    r = run([SLUICE_BIN, "-c", config, "--check"], timeout=scaled(15))
    assert r.returncode == 1
    assert re.search(r"nocert\.toml:2:\d+: server\.listen: \"https://127\.0\.0\.1:\d+\" is HTTPS: it needs "
                     r"\[server\.tls\]", r.stderr), r.stderr


def test_redirect_https_from_the_plain_listener(sluice, registry, backends, certs):
    b = backends.start()
    plain = free_port()
    s = start_tls(sluice, registry, certs, [b], extra_listen=["http://127.0.0.1:%d" % plain],
                  server={"redirect_https": True})
    host = "one.test:%d" % plain
    r = get(plain, "/a/b?c=d", headers={"Host": host})
    assert r.status == 301, r
    assert r.header("Location") == "https://one.test:%d/a/b?c=d" % s.port
    assert r.body == b"301 Moved Permanently\n"
    r = get(plain, "/", headers={"Host": "one.test"})
    assert r.status == 301 and r.header("Location") == "https://one.test:%d/" % s.port
    # other methods must be repeated as they were: 308
    for method in ("POST", "PUT", "DELETE"):
        c = RawConnection(plain)
        c.send("%s /form HTTP/1.1\r\nHost: %s\r\nContent-Length: 3\r\n\r\nabc" % (method, host))
        r = c.read_response()
        c.close()
        assert r.status == 308 and r.header("Location") == "https://one.test:%d/form" % s.port, (method, r)
    c = RawConnection(plain)
    c.send("HEAD /h HTTP/1.1\r\nHost: [::1]:%d\r\n\r\n" % plain)
    r = c.read_response(method="HEAD")
    c.close()
    assert r.status == 301 and r.header("Location") == "https://[::1]:%d/h" % s.port
    # no Host, nowhere to send the client
    c = RawConnection(plain)
    c.send("GET / HTTP/1.0\r\n\r\n")
    r = c.read_response()
    c.close()
    assert r.status == 400
    # each answer is logged; nothing reached the application
    assert wait_until(lambda: s.stdout().count('" 301 ') >= 3 and s.stdout().count('" 308 ') == 3,
                      scaled(5)), s.stdout()
    assert not any("/form" in line or "/a/b" in line for line in b.logged()), b.logged()
    # the HTTPS listener itself proxies
    with TLSConnection(s.port, "one.test", certs) as t:
        r = t.get("/")
        assert r.status == 200 and r.body == (b.name + "\n").encode()


def test_a_closing_answer_ends_with_close_notify(sluice, registry, backends, certs):
    """Bytes after a Connection: close request make sluice linger (reading
    them, so that they do not reset our answer); over TLS the client still
    learns at once that the answer is complete."""
    b = backends.start()
    s = start_tls(sluice, registry, certs, [b])
    with TLSConnection(s.port, "one.test", certs) as c:
        t0 = time.monotonic()
        c.send("GET / HTTP/1.1\r\nHost: one.test\r\nConnection: close\r\n\r\nGET /next HTTP/1.1\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == (b.name + "\n").encode()
        assert c.closed_within(scaled(5))
        assert time.monotonic() - t0 < 1.0   # the linger lasts 2 s


def test_sessions_are_resumed(sluice, registry, backends, certs):
    """A returning client skips the full handshake: by ticket (TLS 1.3 and
    1.2) or by session id from the cache (TLS 1.2 without tickets), on the
    first certificate and on one chosen by SNI."""
    b = backends.start()
    s = start_tls(sluice, registry, certs, [b], certificates=["two"])

    def context(version, tickets):
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        ctx.minimum_version = ctx.maximum_version = version
        if not tickets:
            ctx.options |= ssl.OP_NO_TICKET
        return ctx

    def visit(ctx, name, session=None):
        raw = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname=name, session=session) as t:
            t.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % name.encode())
            data = b""
            while not data.endswith(b"\r\n\r\n" + (b.name + "\n").encode()):
                chunk = t.recv(4096)
                assert chunk, data
                data += chunk
            return t.session, t.session_reused

    for name in ("one.test", "two.test"):
        for version, tickets in ((ssl.TLSVersion.TLSv1_3, True), (ssl.TLSVersion.TLSv1_2, True),
                                 (ssl.TLSVersion.TLSv1_2, False)):
            ctx = context(version, tickets)
            session, reused = visit(ctx, name)
            assert not reused
            _, reused = visit(ctx, name, session)
            assert reused, (name, version, tickets)


def test_https_cannot_be_added_by_a_reload(sluice, registry, backends, certs):
    """Listeners are fixed at start: a reload that adds [server.tls] and
    redirect_https to a plain sluice is refused, and requests stay proxied."""
    b = backends.start()
    install(certs, registry.dir, "one")
    s = sluice([b])
    text = s.config_path.read_text().replace(
        "[server]\n", "[server]\nredirect_https = true\n", 1) + '\n[server.tls]\ncert = "one.pem"\nkey = "one.key"\n'
    s.config_path.write_text(text)
    mark = len(s.stderr())
    s.proc.send(signal.SIGHUP)
    assert s.wait_stderr(r"still serving the previous configuration", scaled(5), mark), s.stderr()[mark:]
    assert "redirect_https needs an HTTPS listener" in s.stderr()[mark:]
    r = get(s.port, "/")
    assert r.status == 200 and r.body == (b.name + "\n").encode()
