"""HTTP/2 to clients: cleartext with prior knowledge ([server.http2]
cleartext) and over TLS by ALPN h2.

Clients are curl, nghttp and h2load (nghttp2-client) for the ordinary
traffic, and the python3-h2 state machine over a raw socket where a test
needs frames no polite client sends (floods, malformed requests, a download
that is never read). Every read is bounded by a socket timeout and every
loop by a count or a deadline.
"""

import shutil
import signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import scaled, wait_until

h2 = pytest.importorskip("h2.connection", reason="python3-h2 (scripts/install-deps)")
import h2.config  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402
import hpack  # noqa: E402

CURL = shutil.which("curl")
H2LOAD = shutil.which("h2load")
NGHTTP = shutil.which("nghttp")
OPENSSL = shutil.which("openssl")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1


def h2_sections(**http2):
    values = {"cleartext": True}
    values.update(http2)
    return {"server.http2": values}


# ---------------------------------------------------------------- a client

class Client:
    """One HTTP/2 connection driven by python3-h2 over a raw socket."""

    def __init__(self, port, tls_ctx=None, validate=True, window=None, timeout=5):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls_ctx is not None:
            sock = tls_ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.status = {}
        self.body = {}
        self.ended = set()
        self.resets = {}
        self.goaway = None
        self.closed = False
        self.eof = False           # the server closed the connection
        self.read_closed = False
        self.unread = set()        # streams whose DATA is not acknowledged
        config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=validate,
                                           normalize_outbound_headers=validate,
                                           validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        # The connection's own window is wide, so that a stream left
        # unread holds back only itself.
        self.conn.increment_flow_control_window(1 << 30)
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True    # cut off (a flood test's aim): what it said is still readable

    def request(self, path, method="GET", headers=(), body=None, end=True):
        sid = self.conn.get_next_available_stream_id()
        head = [(":method", method), (":scheme", "http"), (":authority", "localhost"), (":path", path)]
        self.conn.send_headers(sid, head + list(headers), end_stream=end and body is None)
        if body is not None:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True):
        """Sends as much as the windows allow now; the rest as they open."""
        self.pending = getattr(self, "pending", {})
        self.pending[sid] = [body, end]
        self.push_bodies()

    def push_bodies(self):
        for sid, item in list(getattr(self, "pending", {}).items()):
            body, end = item
            while body:
                room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                if room <= 0:
                    break
                self.conn.send_data(sid, body[:room])
                body = body[room:]
            item[0] = body
            if not body:
                if end:
                    self.conn.end_stream(sid)
                del self.pending[sid]
        self.flush()

    def pump(self, until, timeout=10):
        """Reads and handles events until until() is true, the connection
        ends or the bound passes. Returns until()."""
        deadline = time.monotonic() + scaled(timeout)
        while not until() and not self.read_closed and time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError, OSError):
                self.read_closed = self.closed = True
                break
            if not data:
                self.eof = self.read_closed = self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.read_closed = self.closed = True
                break
            for ev in events:
                self.handle(ev)
            self.push_bodies()
            self.flush()
        return until()

    def handle(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.status[ev.stream_id] = int(dict(ev.headers)[b":status"])
        elif isinstance(ev, h2.events.DataReceived):
            self.body.setdefault(ev.stream_id, bytearray()).extend(ev.data)
            if ev.stream_id not in self.unread:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.ended.add(ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self.trailers = getattr(self, "trailers", {})
            self.trailers[ev.stream_id] = dict(ev.headers)
        elif isinstance(ev, h2.events.StreamReset):
            self.resets[ev.stream_id] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev

    def get(self, path, timeout=10):
        sid = self.request(path)
        assert self.pump(lambda: sid in self.ended or sid in self.resets, timeout), "no answer to " + path
        return self.status.get(sid), bytes(self.body.get(sid, b""))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def clients():
    made = []

    def make(*a, **kw):
        c = Client(*a, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def raw_frame(kind, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid) + payload


def read_frames(sock, until, timeout=5):
    """Frames (type, flags, stream, payload) off a raw connection until
    until(frames) is true, the connection ends or the bound passes."""
    deadline = time.monotonic() + scaled(timeout)
    buf, frames = b"", []
    while not until(frames) and time.monotonic() < deadline:
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length = int.from_bytes(buf[:3], "big")
            frames.append((buf[3], buf[4], struct.unpack(">I", buf[5:9])[0] & 0x7FFFFFFF, buf[9:9 + length]))
            buf = buf[9 + length:]
        if until(frames):
            break
        try:
            sock.settimeout(0.5)
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not data:
            break
        buf += data
    return frames


def read_goaway(sock, timeout=5):
    """Reads frames off a raw connection until a GOAWAY: (last stream id,
    error code), or None if the connection ends or the bound passes."""
    frames = read_frames(sock, lambda f: any(t == 7 for t, _, _, _ in f), timeout)
    goaways = [struct.unpack(">II", p[:8]) for t, _, _, p in frames if t == 7]
    return goaways[0] if goaways else None


def raw_connection(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(PREFACE + raw_frame(4, 0, 0, b""))
    return sock


def served_by_another(port):
    """A fresh connection still gets its answer."""
    c = Client(port)
    try:
        return c.get("/")[0] == 200
    finally:
        c.close()


# ---------------------------------------------------------------- basics

def test_prior_knowledge_curl_and_access_log(backends, sluice):
    if not CURL:
        pytest.fail("curl is needed (scripts/install-deps)", pytrace=False)
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections())
    out = subprocess.run([CURL, "-s", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
                          "http://127.0.0.1:%d/headers" % s.port], capture_output=True, text=True,
                         timeout=scaled(10))
    body, _, last = out.stdout.rpartition("\n")
    assert last == "2 200", out.stdout + out.stderr
    # the application got an HTTP/1.1 request with Host from :authority
    lines = body.splitlines()     # (text mode reads CRLF as a line end)
    assert lines[0] == "GET /headers HTTP/1.1", body
    assert "host: 127.0.0.1:%d" % s.port in lines
    assert "X-Forwarded-Proto: http" in lines
    assert wait_until(lambda: '"GET /headers HTTP/2.0" 200' in s.stdout(), scaled(3)), s.stdout()


def test_preface_refused_without_cleartext(backends, sluice):
    [b1] = backends(1)
    s = sluice([b1])
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(PREFACE)
        data = sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 505") or data.startswith(b"HTTP/1.1 400"), data


def test_many_concurrent_streams_one_connection(backends, sluice):
    if not H2LOAD:
        pytest.fail("h2load is needed (scripts/install-deps)", pytrace=False)
    bs = backends(2)
    s = sluice(bs, sections=h2_sections())
    out = subprocess.run([H2LOAD, "-c1", "-m50", "-n1000", "http://127.0.0.1:%d/" % s.port],
                         capture_output=True, text=True, timeout=scaled(60))
    assert "1000 succeeded" in out.stdout and "status codes: 1000 2xx" in out.stdout, out.stdout
    assert all(b.stats()["requests"] > 0 for b in bs)


def test_nghttp_fifty_streams(backends, sluice):
    if not NGHTTP:
        pytest.fail("nghttp is needed (scripts/install-deps)", pytrace=False)
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections())
    url = "http://127.0.0.1:%d/bytes?n=1000" % s.port
    out = subprocess.run([NGHTTP, "-ns", "-m", "50", url], capture_output=True, text=True, timeout=scaled(30))
    assert out.returncode == 0, out.stdout + out.stderr
    # the statistics table: one row per stream, "... code size path"
    rows = [line.split() for line in out.stdout.splitlines() if line.rstrip().endswith("/bytes?n=1000")]
    assert len(rows) == 50 and all(r[-3:] == ["200", "1000", "/bytes?n=1000"] for r in rows), out.stdout


@pytest.mark.parametrize("buffer_body", ["64KB", "0"], ids=["buffered-first", "streamed"])
def test_bodies_both_ways_chunked_and_sized(backends, sluice, clients, buffer_body):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections() | {"server.limits": {"buffer_body": buffer_body}})
    c = clients(s.port)
    big = bytes(range(256)) * 4096          # 1 MiB
    sized = c.request("/up", method="POST", headers=[("content-length", str(len(big)))], body=big)
    unsized = c.request("/up", method="POST", body=big[:300000])
    chunked_down = c.request("/bytes?n=200000&chunked=1")
    assert c.pump(lambda: {sized, unsized, chunked_down} <= c.ended, 20), (c.status, c.resets)
    assert bytes(c.body[sized]) == b"b1 received 1048576 bytes\n"
    assert bytes(c.body[unsized]) == b"b1 received 300000 bytes\n"
    assert c.status[chunked_down] == 200 and len(c.body[chunked_down]) == 200000


def test_slow_download_does_not_stall_other_streams(backends, sluice, clients):
    """A 64 MB download that the client never reads beyond its window, a
    large upload and small requests on one connection: the small ones and
    the upload complete, and sluice holds only a window's worth of the
    download."""
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections(), workers=1)
    c = clients(s.port, window=65535)
    rss_before = s.rss_kb()
    big = c.request("/bytes?n=67108864")
    c.unread.add(big)
    assert c.pump(lambda: len(c.body.get(big, b"")) >= 65535, 10)
    upload = c.request("/up", method="POST", headers=[("content-length", "2000000")], body=b"u" * 2000000)
    small = [c.request("/bytes?n=%d" % (100 + i)) for i in range(20)]
    assert c.pump(lambda: set(small) | {upload} <= c.ended, 20), (c.status, c.resets)
    assert all(c.status[sid] == 200 for sid in small)
    assert bytes(c.body[upload]) == b"b1 received 2000000 bytes\n"
    assert big not in c.ended and len(c.body[big]) <= 65535
    time.sleep(0.5)
    rss_after = s.rss_kb()
    if rss_before and rss_after:
        assert rss_after - rss_before < 16 * 1024, (rss_before, rss_after)


class TrailerApp(BaseHTTPRequestHandler):
    """An application whose answers are chunked and end with trailers."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n"
                         b"X-App: trailers\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n"
                         b"X-Checksum: abc123\r\n\r\n")

    def log_message(self, *args):
        pass


def test_response_trailers_become_a_trailing_headers_frame(sluice, clients):
    app = ThreadingHTTPServer(("127.0.0.1", 0), TrailerApp)
    thread = threading.Thread(target=app.serve_forever, daemon=True)
    thread.start()
    try:
        s = sluice([app.server_address[1]], sections=h2_sections(), workers=1)
        c = clients(s.port)
        sid = c.request("/t", headers=[("te", "trailers")])
        assert c.pump(lambda: sid in c.ended or sid in c.resets, 10), "no answer"
        assert c.status.get(sid) == 200 and bytes(c.body[sid]) == b"hello world", (c.status, c.body)
        assert getattr(c, "trailers", {}).get(sid, {}).get(b"x-checksum") == b"abc123", getattr(c, "trailers", None)
    finally:
        app.shutdown()
        app.server_close()


# ---------------------------------------------------------------- malformed

@pytest.mark.parametrize("headers", [
    [("connection", "keep-alive")],
    [("transfer-encoding", "chunked")],
    [("upgrade", "websocket")],
    [("te", "gzip")],
    [("X-Upper", "1")],
    [("x-bad", "a\r\nx-injected: 1")],
], ids=["connection", "transfer-encoding", "upgrade", "te", "uppercase", "crlf-in-value"])
def test_malformed_request_is_reset_and_never_forwarded(backends, sluice, clients, headers):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections())
    c = clients(s.port, validate=False)
    sid = c.request("/malformed", headers=headers)
    assert c.pump(lambda: sid in c.resets or sid in c.ended, 5), "no answer"
    assert c.resets.get(sid) == PROTOCOL_ERROR, (c.status, c.resets)
    # the connection goes on; the application never saw the request
    assert c.get("/fine")[0] == 200
    assert not any("/malformed" in line for line in b1.logged()), b1.logged()


def test_content_length_disagreeing_with_data_is_reset(backends, sluice, clients):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections(), workers=1)
    c = clients(s.port, validate=False)
    sid = c.request("/short", method="POST", headers=[("content-length", "10")], body=b"12345")
    assert c.pump(lambda: sid in c.resets or sid in c.ended, 5)
    assert c.resets.get(sid) == PROTOCOL_ERROR, (c.status, c.resets)
    assert c.get("/fine")[0] == 200


def test_own_answers_on_streams(backends, sluice, clients):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections(**{}) | {"server.limits": {"body_bytes": 1000}})
    c = clients(s.port)
    sid = c.request("/big", method="POST", headers=[("content-length", "5000")], body=b"x" * 5000)
    assert c.pump(lambda: sid in c.ended or sid in c.resets, 5)
    assert c.status.get(sid) == 413, (c.status, c.resets)
    b1.kill()
    assert c.get("/")[0] in (502, 503)


# ---------------------------------------------------------------- floods and limits

def test_rapid_reset_flood_gets_goaway(backends, sluice, clients):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections(max_concurrent_streams=10), workers=1)
    c = clients(s.port)
    for _ in range(40):          # more than 2 x 10 within a second
        sid = c.request("/slow?ms=1000")
        c.conn.reset_stream(sid)
    c.flush()
    assert c.pump(lambda: c.goaway is not None, 5), "no GOAWAY"
    assert c.goaway.error_code == ENHANCE_YOUR_CALM
    assert s.wait_stderr(r"client 127\.0\.0\.1: HTTP/2 .*rapid reset.*GOAWAY", scaled(3)), s.stderr()
    assert served_by_another(s.port)


def test_continuation_flood_gets_goaway(backends, sluice):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections(), workers=1)
    block = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                                    (":path", "/")] + [("x-h%d" % i, "v") for i in range(60)])
    pieces = [block[i:i + 8] for i in range(0, len(block), 8)]
    with raw_connection(s.port) as sock:
        frames = raw_frame(1, 0, 1, pieces[0])                 # HEADERS without END_HEADERS
        frames += b"".join(raw_frame(9, 0, 1, p) for p in pieces[1:-1])   # CONTINUATION ...
        sock.sendall(frames)
        goaway = read_goaway(sock)
    assert len(pieces) > 20
    assert goaway is not None and goaway[1] == ENHANCE_YOUR_CALM, goaway
    assert s.wait_stderr(r"CONTINUATION flood", scaled(3)), s.stderr()
    assert served_by_another(s.port)


def test_ping_flood_gets_goaway(backends, sluice):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections(), workers=1)
    with raw_connection(s.port) as sock:
        sock.sendall(b"".join(raw_frame(6, 0, 0, struct.pack(">Q", i)) for i in range(300)))
        goaway = read_goaway(sock)
    assert goaway is not None and goaway[1] == ENHANCE_YOUR_CALM, goaway
    assert s.wait_stderr(r"PING and SETTINGS frames", scaled(3)), s.stderr()
    assert served_by_another(s.port)


def test_header_list_over_the_limit_gets_goaway(backends, sluice, clients):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections() | {"server.limits": {"header_bytes": 4096}}, workers=1)
    c = clients(s.port)
    c.request("/", headers=[("x-big", "v" * 6000)])
    assert c.pump(lambda: c.goaway is not None, 5), "no GOAWAY"
    assert c.goaway.error_code == ENHANCE_YOUR_CALM
    assert s.wait_stderr(r"header (list|block) (over|of more than)", scaled(3)), s.stderr()
    assert served_by_another(s.port)


def request_block(encoder, path):
    return encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", path)])


def test_too_many_concurrent_streams_gets_goaway(backends, sluice):
    """A client that opens more streams than SETTINGS_MAX_CONCURRENT_STREAMS
    allows, once it has acknowledged them, is cut off."""
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections(max_concurrent_streams=4), workers=1)
    with raw_connection(s.port) as sock:
        frames = read_frames(sock, lambda f: any(t == 4 and not fl & 1 for t, fl, _, _ in f))
        assert any(t == 4 for t, _, _, _ in frames), frames
        sock.sendall(raw_frame(4, 1, 0, b"") + raw_frame(6, 0, 0, b"\0" * 8))   # ACK, then a PING
        read_frames(sock, lambda f: any(t == 6 and fl & 1 for t, fl, _, _ in f))   # the ACK is in
        enc = hpack.Encoder()
        sock.sendall(b"".join(raw_frame(1, 5, sid, request_block(enc, "/slow?ms=2000"))
                              for sid in range(1, 17, 2)))
        goaway = read_goaway(sock)
    assert goaway is not None and goaway[1] == ENHANCE_YOUR_CALM, goaway
    assert s.wait_stderr(r"more than 4 concurrent streams", scaled(3)), s.stderr()
    assert served_by_another(s.port)


# ---------------------------------------------------------------- ends

def test_idle_connection_gets_goaway(backends, sluice, clients):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections() | {"server.timeouts": {"client_idle": "400ms"}}, workers=1)
    c = clients(s.port)
    assert c.get("/")[0] == 200
    assert c.pump(lambda: c.goaway is not None, 5), "no GOAWAY"
    assert c.goaway.error_code == 0
    assert c.pump(lambda: c.eof, 5), "not closed after GOAWAY"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["stop", "reload"])
def test_goaway_on_stop_and_reload_and_the_stream_in_flight_finishes(backends, sluice, sig):
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections() | {"server": {"shutdown_grace": "5s"}}, workers=1)
    with raw_connection(s.port) as sock:
        sock.sendall(raw_frame(1, 5, 1, request_block(hpack.Encoder(), "/slow?ms=1500")))
        time.sleep(0.3)
        s.proc.send(sig)
        frames = read_frames(sock, lambda f: any(t == 0 and fl & 1 and sid == 1 for t, fl, sid, _ in f), 8)
    goaways = [struct.unpack(">II", p[:8]) for t, _, _, p in frames if t == 7]
    assert goaways and goaways[0] == (1, 0), frames     # last stream 1, NO_ERROR
    heads = [p for t, _, sid, p in frames if t == 1 and sid == 1]
    assert heads and dict(hpack.Decoder().decode(heads[0]))[":status"] == "200", frames
    body = b"".join(p for t, _, sid, p in frames if t == 0 and sid == 1)
    assert body == b"b1\n", body
    # the GOAWAY came before the answer
    kinds = [t for t, _, _, _ in frames]
    assert kinds.index(7) < kinds.index(1), kinds
    if sig == signal.SIGTERM:
        assert s.proc.wait(scaled(5)) == 0
    else:
        assert s.wait_stderr(r"HTTP/2 configuration reloaded: GOAWAY after stream 1", scaled(3)), s.stderr()
        assert served_by_another(s.port)


# ---------------------------------------------------------------- over TLS

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if not OPENSSL:
        pytest.fail("openssl is needed (scripts/install-deps)", pytrace=False)
    d = tmp_path_factory.mktemp("h2certs")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return d


def start_https(sluice, backends, cert):
    [b1] = backends(1)
    sections = {"server.tls": {"cert": str(cert / "cert.pem"), "key": str(cert / "key.pem")}}
    return sluice([b1], sections=sections, workers=1), b1


def test_alpn_h2_with_curl_and_h2load(backends, sluice, cert):
    if not CURL or not H2LOAD:
        pytest.fail("curl and h2load are needed (scripts/install-deps)", pytrace=False)
    s, b1 = start_https(sluice, backends, cert)
    out = subprocess.run([CURL, "-s", "--http2", "--cacert", str(cert / "cert.pem"), "-w",
                          "\n%{http_version} %{http_code}", "https://localhost:%d/headers" % s.port],
                         capture_output=True, text=True, timeout=scaled(10))
    assert out.stdout.endswith("\n2 200"), out.stdout + out.stderr
    assert "X-Forwarded-Proto: https" in out.stdout.splitlines()
    load = subprocess.run([H2LOAD, "-c2", "-m50", "-n1000", "https://127.0.0.1:%d/" % s.port],
                          capture_output=True, text=True, timeout=scaled(60))
    assert "status codes: 1000 2xx" in load.stdout and "h2" in load.stdout, load.stdout


def test_alpn_h2_streams_with_a_raw_client(backends, sluice, cert, clients):
    s, b1 = start_https(sluice, backends, cert)
    ctx = ssl.create_default_context(cafile=str(cert / "cert.pem"))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    c = clients(s.port, tls_ctx=ctx)
    sids = [c.request("/bytes?n=%d" % (5000 * (i + 1))) for i in range(20)]
    assert c.pump(lambda: set(sids) <= c.ended, 20), (c.status, c.resets)
    assert [len(c.body[sid]) for sid in sids] == [5000 * (i + 1) for i in range(20)]


def test_nghttp_over_tls(backends, sluice, cert):
    if not NGHTTP:
        pytest.fail("nghttp is needed (scripts/install-deps)", pytrace=False)
    s, b1 = start_https(sluice, backends, cert)
    out = subprocess.run([NGHTTP, "-v", "https://127.0.0.1:%d/" % s.port], capture_output=True, text=True,
                         timeout=scaled(10))
    assert "The negotiated protocol: h2" in out.stdout and ":status: 200" in out.stdout, out.stdout


def test_two_clients_in_parallel_threads(backends, sluice):
    """Several connections at once, each many streams: all answered."""
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections())
    results = []

    def run():
        c = Client(s.port)
        try:
            sids = [c.request("/bytes?n=3000") for _ in range(30)]
            c.pump(lambda: set(sids) <= c.ended, 20)
            results.append(sum(1 for sid in sids if c.status.get(sid) == 200))
        finally:
            c.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(30))
    assert results == [30, 30, 30, 30]
