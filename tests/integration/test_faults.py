"""Faults of the applications as clients see them: what sluice answers when
none can be reached or one breaks a request, how fast passive detection
takes out an application that drops requests, and trailer fields that
would frame or route a message never reaching the other side."""
import socket
import threading
import time

import pytest

from conftest import (ASAN, RawConnection, app_entry, free_port, get, http_request, scaled)


def _retry_after(r):
    v = r.header("Retry-After")
    return v is not None and v.isdigit()


def test_unreachable_applications_answer_503(sluice):
    # Both in rotation, both refusing: nothing was sent anywhere, so the
    # client hears "try again later", never a gateway error.
    dead = [free_port(), free_port()]
    s = sluice([app_entry(p, alive=True, name="dead%d" % i) for i, p in enumerate(dead)],
               sections={"health": {"interval": "60s"}, "passive": {"failures": 1000}})
    for method, body in (("GET", None), ("POST", b"payload"), ("GET", None)):
        r = http_request(s.port, method, "/", body=body, timeout=scaled(5))
        assert r.status == 503, (method, r.status, r.body)
        assert _retry_after(r), r.headers
        assert r.body.strip()


def test_refused_and_broken_request_is_502(backends, sluice):
    # One application refuses, the other takes the request and closes
    # without answering: something did reach an application, so it is 502
    # whatever order the two are tried in.
    b1, = backends(1)
    s = sluice([app_entry(free_port(), name="dead"), b1],
               sections={"health": {"interval": "60s"}, "passive": {"failures": 1000}})
    for _ in range(4):
        r = get(s.port, "/close", timeout=scaled(5))
        assert r.status == 502, r
        assert r.header("Retry-After") is None


def _drive(port, stop, counts, lock, path="/", rate=100.0, limit=2000):
    """Keep-alive GETs at about `rate` per second until stop or limit."""
    c = None
    for _ in range(limit):
        if stop.is_set():
            break
        t0 = time.monotonic()
        try:
            if c is None:
                c = RawConnection(port, timeout=scaled(5))
            c.send("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
            r = c.read_response()
            status = r.status
            if (r.header("Connection") or "").lower() == "close":
                c.close()
                c = None
        except (OSError, EOFError):
            status = "error"
            if c:
                c.close()
            c = None
        with lock:
            counts[status] = counts.get(status, 0) + 1
        pause = 1.0 / rate - (time.monotonic() - t0)
        if pause > 0:
            time.sleep(pause)
    if c:
        c.close()


def test_application_dropping_requests_is_taken_out_under_load(backends, sluice):
    # One request in five is closed without a byte of answer: each such GET
    # is retried on the healthy application, so clients see nothing, yet
    # the flaky one must leave rotation within a second at ~400 requests/s.
    good, = backends(1)
    flaky = backends.start("flaky", args=["--drop-every", "5"])
    s = sluice([good, flaky], sections={"health": {"interval": "60s"},
                                        "passive": {"failures": 3, "window": "10s"}})
    stop, lock, counts = threading.Event(), threading.Lock(), {}
    threads = [threading.Thread(target=_drive, args=(s.port, stop, counts, lock), daemon=True)
               for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        found = s.wait_stderr(r"application flaky \S+ up -> down: live traffic", scaled(3))
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        for t in threads:
            t.join(scaled(10))
    assert found, s.stderr()[-3000:]
    assert elapsed < scaled(1.0), "taken out after %.2f s" % elapsed
    assert set(counts) == {200}, counts
    # out of rotation: everything now goes to the healthy application
    before = len(flaky.logged())
    for _ in range(20):
        assert get(s.port, "/").status == 200
    assert len(flaky.logged()) == before


def test_response_timeouts_take_an_application_out(backends, sluice):
    b1, = backends(1)
    s = sluice([b1], sections={"health": {"interval": "60s"},
                               "passive": {"failures": 2, "window": "10s"},
                               "server.timeouts": {"upstream_response": "200ms"}})
    slow = 3000 if ASAN else 1500
    for _ in range(2):
        assert get(s.port, "/slow?ms=%d" % slow, timeout=scaled(5)).status == 504
    assert s.wait_stderr(r"application b1 \S+ up -> down: live traffic: no response within 200 ms", scaled(2))
    r = get(s.port, "/")
    assert r.status == 503 and _retry_after(r), r


# ------------------------------------------------------------------ trailers

FORBIDDEN = ["Content-Length: 5", "Transfer-Encoding: chunked", "Host: evil.example",
             "Authorization: Basic eA==", "Connection: close", "Trailer: X-Sum",
             "Content-Type: text/html", "Set-Cookie: a=b", "Cache-Control: no-store"]


def _read_chunked_raw(conn, buf):
    """Reads a chunked body from a socket; returns (raw body, leftover)."""
    deadline = time.monotonic() + 10
    pos = 0
    while True:
        while b"\r\n" not in buf[pos:]:
            assert time.monotonic() < deadline
            data = conn.recv(65536)
            if not data:
                raise EOFError(buf)
            buf += data
        eol = buf.index(b"\r\n", pos)
        size = int(buf[pos:eol].split(b";")[0], 16)
        if size == 0:
            while b"\r\n\r\n" not in buf[eol:]:
                data = conn.recv(65536)
                if not data:
                    raise EOFError(buf)
                buf += data
            end = buf.index(b"\r\n\r\n", eol) + 4
            return buf[:end], buf[end:]
        need = eol + 2 + size + 2
        while len(buf) < need:
            data = conn.recv(65536)
            if not data:
                raise EOFError(buf)
            buf += data
        pos = need


def test_trailer_fields_that_frame_or_route_are_removed(sluice, raw_app):
    received = []

    def respond(conn, head, rest):
        body, _ = _read_chunked_raw(conn, rest)
        received.append(body)
        trailers = "".join("%s\r\n" % f for f in FORBIDDEN)
        conn.sendall(("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                      "2\r\nok\r\n0\r\nX-Sum: 42\r\n%sX-After: 1\r\n\r\n" % trailers).encode())
        return True

    app = raw_app(respond)
    s = sluice([{"name": "raw", "ip": "127.0.0.1", "port": app.port}],
               sections={"health": {"interval": "60s"}})
    trailers = "".join("%s\r\n" % f for f in FORBIDDEN)
    with RawConnection(s.port, timeout=scaled(5)) as c:
        # sent in small pieces, so trailer lines arrive split
        data = ("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "4\r\nwxyz\r\n0\r\nX-Checksum: 7\r\n%sX-Last: 2\r\n\r\n" % trailers)
        head_end = data.index("\r\n\r\n") + 4
        c.send(data[:head_end + 9])
        for i in range(head_end + 9, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.002)
        r = c.read_response(timeout=scaled(5))
        raw_response = r.raw_head
    assert r.status == 200 and r.body == b"ok", r
    assert len(received) == 1
    body = received[0].decode()
    assert body.startswith("4\r\nwxyz\r\n0\r\n"), body
    assert "X-Checksum: 7\r\n" in body and "X-Last: 2\r\n" in body, body
    for f in FORBIDDEN:
        assert f.split(":")[0].lower() not in body.lower(), "forwarded to the application: %r" % body
    assert raw_response  # the head itself is judged by the other tests

    # the response direction, read raw to see the trailer section
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=scaled(5))
    try:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            assert data, buf
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        tail, _ = _read_chunked_raw(sock, rest)
    finally:
        sock.close()
    text = tail.decode()
    assert "X-Sum: 42\r\n" in text and "X-After: 1\r\n" in text, text
    for f in FORBIDDEN:
        assert f.split(":")[0].lower() + ":" not in text.lower(), "forwarded to the client: %r" % text
