"""What applications send back (docs/proxying.md "Responses"): hop-by-hop response fields, malformed responses (502), bodies
delimited by close, interim 1xx, and Upgrade tunnels. The applications here
are scripted in the test (conftest.RawApp), since build/backend is always
well-behaved."""

import socket
import time

import pytest

from conftest import RawConnection, get, raw_exchange, scaled

QUIET = {"health": {"interval": "60s"}}


def _app(a):
    return {"name": "raw", "ip": "127.0.0.1", "port": a.port}


def _answer(data, keep=False):
    def respond(conn, head, rest):
        conn.sendall(data)
        return keep
    return respond


def test_response_hop_by_hop_fields_removed(sluice, raw_app):
    app = raw_app(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                          b"Connection: X-Secret, keep-alive\r\nX-Secret: 1\r\n"
                          b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
                          b"X-Kept: yes\r\n\r\nok"))
    s = sluice([_app(app)], sections=QUIET)
    r = get(s.port, "/")
    assert (r.status, r.body, r.header("X-Kept")) == (200, b"ok", "yes")
    for name in ("X-Secret", "Keep-Alive", "Proxy-Connection"):
        assert r.header(name) is None, "hop-by-hop %s passed to the client: %r" % (name, r.headers)
    for v in r.all("Connection"):
        assert "x-secret" not in v.lower()


BAD_RESPONSES = [
    ("garbage", b"HELLO THERE\r\n\r\n"),
    ("bad_status", b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok"),
    ("differing_cl", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"),
    ("obs_fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"),
    ("space_before_colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
    ("bare_lf", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    # the head is fine, the first chunk that came with it is not: nothing
    # has reached the client yet, so it gets a clean 502, not a cut 200
    ("bad_first_chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n"),
    ("closed_in_head", b"HTTP/1.1 200 OK\r\nContent-Len"),
]


@pytest.mark.parametrize("case_id,data", BAD_RESPONSES, ids=[c[0] for c in BAD_RESPONSES])
def test_malformed_response_is_502(sluice, raw_app, case_id, data):
    app = raw_app(_answer(data))
    s = sluice([_app(app)], sections=QUIET)
    with RawConnection(s.port) as c:
        c.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
    assert r.status == 502, "got %d %r" % (r.status, r.body[:100])
    assert r.body.strip()


def test_response_with_length_and_chunked_is_read_as_chunked(sluice, raw_app):
    """Transfer-Encoding overrides Content-Length (RFC 9112 section 6.3):
    the whole chunked body reaches the client, without the Content-Length."""
    app = raw_app(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"5\r\nhello\r\n0\r\n\r\n"))
    s = sluice([_app(app)], sections=QUIET)
    with RawConnection(s.port) as c:
        c.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
    assert (r.status, r.body) == (200, b"hello"), r
    assert r.header("Content-Length") is None, r.headers


def test_body_delimited_by_close(sluice, raw_app):
    body = b"0123456789" * 10000
    app = raw_app(_answer(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body))
    s = sluice([_app(app)], sections=QUIET)
    with RawConnection(s.port, timeout=scaled(5)) as c:
        c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == body
        assert c.eof or c.closed_within(scaled(2))


def test_interim_103_relayed_then_final(sluice, raw_app):
    app = raw_app(_answer(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                          b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", keep=True))
    s = sluice([_app(app)], sections=QUIET)
    with RawConnection(s.port) as c:
        c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = c.read_response(interim=True)
        assert first.status == 103 and first.header("Link"), first
        final = c.read_response()
        assert (final.status, final.body) == (200, b"ok")


def test_upgrade_is_tunnelled(sluice, raw_app):
    def respond(conn, head, rest):
        low = head.lower()
        if b"upgrade: websocket" not in low or b"upgrade" not in low.split(b"connection:", 1)[-1]:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return False
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n")
        if rest:
            conn.sendall(b"echo:" + rest)
        while True:
            data = conn.recv(65536)
            if not data:
                return False
            conn.sendall(b"echo:" + data)

    app = raw_app(respond)
    s = sluice([_app(app)], sections=QUIET)
    with RawConnection(s.port, timeout=scaled(5)) as c:
        c.send("GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        r = c.read_response(interim=True)
        assert r.status == 101, r
        for i in range(3):
            msg = b"frame-%d" % i
            c.sock.sendall(msg)
            want = b"echo:" + msg
            deadline = time.monotonic() + scaled(3)
            while len(c.buf) < len(want):
                assert c._fill(deadline), "tunnel closed"
            got, c.buf = c.buf[:len(want)], c.buf[len(want):]
            assert got == want
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_within(scaled(3)), "tunnel not closed after the client closed"


def test_tunnel_half_close_reaches_the_application(sluice, raw_app):
    """The client's FIN is passed on as a half-close: an application that
    answers once its peer has finished sending is still heard."""
    def respond(conn, head, rest):
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n")
        got = rest
        while True:
            data = conn.recv(65536)
            if not data:
                break
            got += data
        conn.sendall(b"total:%d" % len(got))
        return False

    app = raw_app(respond)
    s = sluice([_app(app)], sections=QUIET)
    with RawConnection(s.port, timeout=scaled(5)) as c:
        c.send("GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        r = c.read_response(interim=True)
        assert r.status == 101, r
        c.sock.sendall(b"x" * 1000)
        c.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + scaled(3)
        while b"total:1000" not in c.buf:
            assert c._fill(deadline), "tunnel closed before the application's last words: %r" % c.buf
        assert c.closed_within(scaled(3)), "tunnel not closed after both sides finished"


def test_upgrade_refused_by_application_stays_http(sluice, raw_app):
    app = raw_app(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno", keep=True))
    s = sluice([_app(app)], sections=QUIET)
    responses, rest, closed = raw_exchange(
        s.port, "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [(r.status, r.body) for r in responses] == [(200, b"no"), (200, b"no")]
    assert rest == b"" and closed
