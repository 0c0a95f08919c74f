"""Protecting the applications from slow clients: request bodies are
received before an application is chosen, and clients that send them too
slowly are cut with 408."""
import json
import signal
import threading
import time

from conftest import (RawConnection, app_entry, concurrent_gets, free_port, http_request, scaled,
                      wait_until)


def _sent(backend, line):
    return sum(1 for l in backend.logged() if l == line)


def test_body_in_pieces_reaches_the_application_whole_and_at_once(backends, sluice):
    b1, = backends(1)
    s = sluice([b1])
    body = b"x" * 30000
    with RawConnection(s.port, timeout=scaled(10)) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body) - 1000, 1000):
            c.send(body[i:i + 1000])
            time.sleep(0.01)
        # everything but the last kilobyte has arrived: the application has
        # not heard of the request
        time.sleep(0.2)
        assert _sent(b1, "POST /up") == 0
        c.send(body[len(body) - 1000:])
        r = c.read_response()
    assert r.status == 200 and r.body == b"b1 received 30000 bytes\n", r
    assert _sent(b1, "POST /up") == 1


def test_chunked_body_is_buffered_too(backends, sluice):
    b1, = backends(1)
    s = sluice([b1])
    with RawConnection(s.port, timeout=scaled(10)) as c:
        c.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.3)
        assert _sent(b1, "POST /c") == 0
        c.send("6\r\n world\r\n0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.body == b"b1 received 11 bytes\n", r


def test_body_larger_than_the_buffer_streams_after_it(backends, sluice):
    b1, = backends(1)
    s = sluice([b1], sections={"server.limits": {"buffer_body": "32KB"}})
    big = 200000
    with RawConnection(s.port, timeout=scaled(10)) as c:
        c.send(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % big)
        c.send(b"y" * 40000)
        # past the buffer: forwarded before the rest has arrived
        assert _wait(lambda: _sent(b1, "POST /big") == 1, scaled(3))
        c.send(b"y" * (big - 40000))
        r = c.read_response()
    assert r.status == 200 and r.body == b"b1 received %d bytes\n" % big, r


def _wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_expect_100_continue_answered_by_sluice(backends, sluice):
    b1, = backends(1)
    s = sluice([b1])
    with RawConnection(s.port, timeout=scaled(10)) as c:
        c.send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_response(interim=True)
        assert interim.status == 100
        assert _sent(b1, "POST /e") == 0
        c.send("abcd")
        r = c.read_response()
    assert r.status == 200 and r.body == b"b1 received 4 bytes\n", r


def test_post_to_a_refusing_application_goes_to_another_with_its_body(backends, sluice):
    b1, = backends(1)
    s = sluice([app_entry(free_port(), name="dead"), b1],
               sections={"health": {"interval": "60s"}, "passive": {"failures": 1000}})
    body = b"z" * 50000
    for _ in range(4):   # round robin: some meet the refusing one first
        r = http_request(s.port, "POST", "/p", body=body, timeout=scaled(10))
        assert r.status == 200 and r.body == b"b1 received 50000 bytes\n", r


def test_gap_in_a_body_past_client_body_is_408(backends, sluice):
    b1, = backends(1)
    s = sluice([b1], sections={"server.timeouts": {"client_body": "500ms"}})
    with RawConnection(s.port, timeout=scaled(10)) as c:
        c.send("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        t0 = time.monotonic()
        r = c.read_response()
        took = time.monotonic() - t0
    assert r.status == 408, r
    assert 0.4 < took < scaled(3), took
    assert _sent(b1, "POST /slow") == 0
    assert s.wait_stderr(r"client 127\.0\.0\.1: request body too slow", scaled(2))


def test_body_slower_than_min_body_rate_is_408(backends, sluice):
    # 2 KB/s asked, 500 bytes/s sent (a byte line every 0.2 s): cut once the
    # first 10 s are over and the average is short, whatever the gaps.
    b1, = backends(1)
    s = sluice([b1], sections={"server.limits": {"min_body_rate": "2KB"},
                               "server.timeouts": {"client_body": "5s"}})
    result = {}

    def trickle():
        with RawConnection(s.port, timeout=scaled(20)) as c:
            c.send("POST /trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            t0 = time.monotonic()
            try:
                for _ in range(150):
                    c.send(b"t" * 100)
                    time.sleep(0.2)
            except OSError:
                pass
            try:
                result["r"] = c.read_response(timeout=scaled(5))
            except (OSError, EOFError) as e:
                result["e"] = e
            result["took"] = time.monotonic() - t0

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    t.join(scaled(40))
    assert "r" in result, result
    assert result["r"].status == 408
    assert 10 <= result["took"] < scaled(20), result["took"]
    assert _sent(b1, "POST /trickle") == 0


def test_slow_uploads_never_hold_an_application(backends, sluice):
    # Many trickled uploads sit in sluice, not in the application: a good
    # client's requests all succeed meanwhile.
    b1, = backends(1)
    s = sluice([b1])
    slow = []
    try:
        for _ in range(50):
            c = RawConnection(s.port, timeout=scaled(10))
            c.send("POST /trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + "a" * 10)
            slow.append(c)
        for _ in range(20):
            r = http_request(s.port, "GET", "/", timeout=scaled(5))
            assert r.status == 200
        assert _sent(b1, "POST /trickle") == 0
    finally:
        for c in slow:
            c.close()


# ------------------------------------------------------------ max_requests

def test_max_requests_one_at_a_time_in_arrival_order(backends, sluice):
    b1, = backends(1)
    s = sluice([app_entry(b1, max_requests=1)], workers=1,
               sections={"server.timeouts": {"queue": "5s"}})
    results = concurrent_gets(s.port, ["/slow?ms=400&i=%d" % i for i in range(3)], scaled(10))
    assert [r[0] for r in results] == [200, 200, 200], results
    done = [r[1] for r in results]
    # served one after the other, first come first served
    assert done[0] < done[1] < done[2], done
    assert done[1] - done[0] >= 0.3 and done[2] - done[1] >= 0.3, done
    assert done[2] >= 1.1, done


def test_queue_timeout_answers_503_with_retry_after(backends, sluice):
    b1, = backends(1)
    s = sluice([app_entry(b1, max_requests=1)], workers=1,
               sections={"server.timeouts": {"queue": "300ms"}})
    results = concurrent_gets(s.port, ["/slow?ms=1500", "/slow?ms=10"], scaled(10))
    assert results[0][0] == 200, results
    status, took, retry_after = results[1]
    assert status == 503 and retry_after is not None, results
    assert 0.25 < took < scaled(1.2), results
    assert s.wait_stderr(r"every application at max_requests", scaled(2))


def test_max_requests_sends_the_excess_to_the_other_application(backends, sluice):
    b1, b2 = backends(2)
    s = sluice([app_entry(b1, max_requests=1), b2], workers=1)
    results = concurrent_gets(s.port, ["/slow?ms=500&i=%d" % i for i in range(4)], scaled(10))
    assert all(r[0] == 200 for r in results), results
    # never two at once at b1: each of its requests ended before the next began
    served_by_b1 = sum(1 for line in b1.logged() if line.startswith("GET /slow"))
    assert served_by_b1 <= 2, b1.logged()


def test_time_in_the_queue_is_in_the_json_access_log(backends, sluice):
    b1, = backends(1)
    s = sluice([app_entry(b1, max_requests=1)], workers=1, sections={"log": {"format": "json"}})
    results = concurrent_gets(s.port, ["/slow?ms=500&q=%d" % i for i in range(2)], scaled(10))
    assert [r[0] for r in results] == [200, 200], results
    lines = wait_until(lambda: [l for l in s.stdout().splitlines() if "/slow?ms=500" in l], scaled(3))
    docs = {json.loads(l)["target"][-1]: json.loads(l) for l in lines}
    assert docs["0"]["queue_ms"] == 0 and docs["0"]["queue_ahead"] == 0, docs
    assert 400 <= docs["1"]["queue_ms"] < 800 and docs["1"]["queue_ahead"] == 0, docs


# ------------------------------------------------- found in review

def test_slow_upload_is_not_an_application_timeout(backends, sluice):
    # The body beyond the buffer streams; the client pauses longer than
    # upstream_response: that is the client's slowness (client_body), not a
    # 504 counted against the application.
    b1, = backends(1)
    s = sluice([b1], sections={"server.limits": {"buffer_body": "16KB"},
                               "server.timeouts": {"upstream_response": "1s"},
                               "passive": {"failures": 1}})
    with RawConnection(s.port, timeout=scaled(15)) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"p" * 40000)
        time.sleep(2.5)
        c.send(b"p" * 60000)
        r = c.read_response()
    assert r.status == 200 and r.body == b"b1 received 100000 bytes\n", r
    assert "up -> down" not in s.stderr()


def test_bodies_wait_for_memory_then_all_go_through(backends, sluice):
    # Room for two body blocks per worker: four uploads at once, two of them
    # wait (reading paused) and go on as the first ones finish.
    b1, = backends(1)
    s = sluice([b1], workers=1, sections={"server.limits": {"buffer_body": "64KB", "buffer_total": "128KB"}})
    conns = [RawConnection(s.port, timeout=scaled(15)) for _ in range(4)]
    try:
        for c in conns:
            c.send(b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n" + b"w" * 1000)
        time.sleep(0.3)
        for c in conns:
            c.send(b"w" * 49000)
        for c in conns:
            r = c.read_response()
            assert r.status == 200 and r.body == b"b1 received 50000 bytes\n", r
    finally:
        for c in conns:
            c.close()


def test_reload_with_smaller_buffers_during_a_head(backends, sluice, tmp_path):
    # A head begun in a large input buffer, a reload that makes buffers
    # smaller, then the rest of the head and a large body in one go: more
    # than a new body block holds is already in the old buffer, so the body
    # streams (it once overran the block).
    b1, = backends(1)
    s = sluice([b1], sections={"server.limits": {"header_bytes": "256KB", "buffer_body": "16KB"}})
    with RawConnection(s.port, timeout=scaled(15)) as c:
        c.send("POST /r HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        text = s.config_path.read_text()
        assert 'header_bytes = "256KB"' in text
        s.config_path.write_text(text.replace('header_bytes = "256KB"', 'header_bytes = 8192'))
        s.proc.send(signal.SIGHUP)
        assert s.wait_stderr(r"reload: .* loaded", scaled(5))
        time.sleep(0.2)   # every worker takes it up
        c.send("Content-Length: 200000\r\n\r\n" + "b" * 200000)
        r = c.read_response()
    assert r.status == 200 and r.body == b"b1 received 200000 bytes\n", r
    assert s.proc.alive()
