"""HTTP/2 clients that try to hold sluice's memory and connections: streams
left half-open, answers never read, a socket never read, and resets
provoked rather than sent. Each is bounded by a time limit or a rate, and
the other clients are served meanwhile.

The raw clients and frame helpers are test_h2.py's; every read is bounded
by a socket timeout and every loop by a count or a deadline.
"""

import signal
import socket
import struct

import pytest

from conftest import scaled

pytest.importorskip("h2.connection", reason="python3-h2 (scripts/install-deps)")
import hpack  # noqa: E402

from test_h2 import (ENHANCE_YOUR_CALM, PREFACE, clients, h2_sections, raw_frame, read_frames,  # noqa: E402,F401
                     request_block, served_by_another)

NO_ERROR = 0x0
CANCEL = 0x8
RST_STREAM = 3
WINDOW_UPDATE = 8


def quick_timeouts(**http2):
    return h2_sections(**http2) | {"server.timeouts": {"client_idle": "500ms", "client_body": "300ms"}}


def test_stream_half_open_after_its_answer_is_reset(backends, sluice, clients):
    """A request whose body never comes is answered 408; the stream, still
    open on the client's side, is then reset with NO_ERROR (RFC 9113
    section 8.1) and the idle connection ends, instead of staying open for
    as long as the client likes."""
    [b1] = backends(1)
    s = sluice([b1], sections=quick_timeouts(), workers=1)
    c = clients(s.port)
    sid = c.request("/upload", method="POST", end=False)       # HEADERS, no END_STREAM, no DATA
    assert c.pump(lambda: sid in c.ended, 5), (c.status, c.resets)
    assert c.status.get(sid) == 408
    assert c.pump(lambda: sid in c.resets, 3), "the half-open stream was not reset"
    assert c.resets[sid] == NO_ERROR
    assert c.pump(lambda: c.eof, 5), "the connection stayed open"
    assert c.goaway is not None and c.goaway.error_code == NO_ERROR


def test_answer_the_client_never_lets_in_is_reset(backends, sluice, clients):
    """A client whose window stays 0 gets the HEADERS of its answer but
    never its DATA; once the exchange is done, the stream still ends within
    client_idle (CANCEL), and then the connection."""
    [b1] = backends(1)
    s = sluice([b1], sections=quick_timeouts(), workers=1)
    c = clients(s.port, window=0)
    sid = c.request("/bytes?n=1000")
    assert c.pump(lambda: sid in c.status, 5), "no HEADERS"
    assert c.pump(lambda: sid in c.resets, 5), "the stream held its answer forever"
    assert c.resets[sid] == CANCEL and not c.body.get(sid)
    assert s.wait_stderr(r"HTTP/2 stream %d: answer not read for \d+ ms, reset" % sid, scaled(3)), s.stderr()
    assert c.pump(lambda: c.eof, 5), "the connection stayed open"
    assert served_by_another(s.port)


def test_socket_never_read_is_closed(backends, sluice):
    """A client that opens every window and then never reads its socket:
    sluice's output stalls, and client_idle later the connection is closed
    (its streams' resets could never be written)."""
    [b1] = backends(1)
    s = sluice([b1], sections=quick_timeouts(), workers=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    try:
        sock.connect(("127.0.0.1", s.port))
        big = (1 << 31) - 1
        settings = struct.pack(">HI", 0x4, big)                # INITIAL_WINDOW_SIZE
        sock.sendall(PREFACE + raw_frame(4, 0, 0, settings)
                     + raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", big - 65535))
                     + raw_frame(1, 5, 1, request_block(hpack.Encoder(), "/bytes?n=67108864")))
        assert s.wait_stderr(r"client 127\.0\.0\.1: HTTP/2 output not read for \d+ ms: closing",
                             scaled(6)), s.stderr()
        assert served_by_another(s.port)
    finally:
        sock.close()


def post_block(encoder, path, length):
    return encoder.encode([(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", path),
                           ("content-length", str(length))])


def test_resets_the_client_provokes_count_as_rapid_reset(backends, sluice):
    """Streams the library resets for something the client got wrong on
    purpose (here DATA past the content-length, after the whole body went
    to the application) leave their requests with the application just as
    a client's own RST_STREAM does: past 2 x max_concurrent_streams a
    second, GOAWAY."""
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections(max_concurrent_streams=10), workers=1)
    enc = hpack.Encoder()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    frames, cut = [], False
    try:
        sock.sendall(PREFACE + raw_frame(4, 0, 0, b"") + raw_frame(4, 1, 0, b""))
        sid = 1
        for _ in range(10):                                     # 50 streams, 5 at a time
            batch = set()
            for _ in range(5):
                batch.add(sid)
                sock.sendall(raw_frame(1, 4, sid, post_block(enc, "/slow?ms=2000", 1))
                             + raw_frame(0, 0, sid, b"x") + raw_frame(0, 1, sid, b"y"))
                sid += 2
            frames += read_frames(sock, lambda f: any(t == 7 for t, _, _, _ in f) or
                                  batch <= {i for t, _, i, _ in f if t == RST_STREAM}, 3)
            if any(t == 7 for t, _, _, _ in frames):
                break
    except OSError:
        cut = True                                              # closed after its GOAWAY
    finally:
        sock.close()
    goaways = [struct.unpack(">II", p[:8])[1] for t, _, _, p in frames if t == 7]
    assert cut or goaways, "the connection went on"
    assert all(code == ENHANCE_YOUR_CALM for code in goaways), goaways
    assert s.wait_stderr(r"stream resets in a second \(rapid reset\)", scaled(3)), s.stderr()
    assert served_by_another(s.port)


def test_streams_ended_at_every_stage(backends, sluice, clients):
    """Streams reset, and connections dropped, while their exchanges wait
    in the max_requests queue, receive a body, wait on the application or
    stream its answer, across a reload: sluice serves on, and under
    `make asan` nothing is used after it is freed or leaked (the registry
    fails the test on a sanitizer report)."""
    [b1] = backends(1)
    sections = h2_sections() | {"server.timeouts": {"queue": "5s"}}
    s = sluice([{"name": "b1", "ip": "127.0.0.1", "port": b1.port, "max_requests": 2}], sections=sections,
               workers=1)
    for round_ in range(3):
        c = clients(s.port)
        busy = [c.request("/slow?ms=1500") for _ in range(2)]         # the two slots
        queued = [c.request("/bytes?n=%d" % (1000 * (i + 1))) for i in range(6)]
        upload = c.request("/up", method="POST", body=b"u" * 30000, end=False)
        big = c.request("/bytes?n=4000000")
        c.pump(lambda: False, 0.2)
        assert not set(queued) & c.ended, "max_requests did not queue them"
        for sid in queued[:3] + [upload, busy[0]]:
            c.conn.reset_stream(sid)
        c.flush()
        if round_ == 1:
            # (python3-h2 takes no frame after a GOAWAY: the streams in
            # flight finish, but this client stops reading)
            s.proc.send(signal.SIGHUP)
            assert s.wait_stderr(r"HTTP/2 configuration reloaded", scaled(3)), s.stderr()
        c.pump(lambda: big in c.status, 3)
        if round_ > 0:
            c.close()                                                 # everything still open goes at once
            continue
        assert c.pump(lambda: set(queued[3:]) <= c.ended, 10), (c.status, c.resets)
        c.conn.reset_stream(big)
        c.flush()
        c.close()
    assert served_by_another(s.port)


def test_connection_that_never_asks_ends_within_client_header(backends, sluice):
    """A preface, SETTINGS, then silence: the connection is held to
    client_header as an HTTP/1.1 one is before its first request, not to
    client_idle."""
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections() | {"server.timeouts": {"client_header": "500ms", "client_idle": "30s"}},
               workers=1)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        sock.sendall(PREFACE + raw_frame(4, 0, 0, b""))
        frames = read_frames(sock, lambda f: any(t == 7 for t, _, _, _ in f), 5)
    finally:
        sock.close()
    goaways = [struct.unpack(">II", p[:8]) for t, _, _, p in frames if t == 7]
    assert goaways and goaways[0] == (0, NO_ERROR), frames
    assert served_by_another(s.port)


def test_connection_window_bounds_what_one_client_may_upload_unread(backends, sluice):
    """The connection-level window sluice grants is what a client may send
    that no application has taken yet, over all its streams: a few streams'
    worth (512 KB), not max_concurrent_streams full windows (6 MB)."""
    [b1] = backends(1)
    s = sluice([b1], sections=h2_sections(), workers=1)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        sock.sendall(PREFACE + raw_frame(4, 0, 0, b""))
        frames = read_frames(sock, lambda fs: any(f[0] == WINDOW_UPDATE and f[2] == 0 for f in fs))
        updates = [struct.unpack(">I", f[3])[0] & 0x7FFFFFFF for f in frames if f[0] == WINDOW_UPDATE and f[2] == 0]
        assert updates, frames
        granted = 65535 + sum(updates)
        assert 4 * 65535 <= granted <= 512 * 1024, granted
    finally:
        sock.close()
