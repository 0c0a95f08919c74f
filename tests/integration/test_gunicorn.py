"""Protecting real applications with few request slots: gunicorn (gthread
workers, a handful of threads, tests/integration/wsgi_app.py) behind
sluice. A gunicorn thread is held from a request's first byte to its
answer's last, so a client that trickles a body holds one for as long as
it likes unless sluice receives the body first."""
import hashlib
import re
import select
import threading
import time

from conftest import RawConnection, concurrent_gets, free_port, http_request, scaled, wait_until


def _post_answer(r):
    """(name, bytes, ms, sha256) from the application's answer to a POST."""
    name, _, size, _, _, ms, _, _, digest = r.body.decode().split()
    return name, int(size), float(ms), digest


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def test_trickled_uploads_leave_the_application_to_a_good_client(gunicorn, sluice):
    # 200 uploads trickling 10 bytes every 2 s against 4 gunicorn threads:
    # were they forwarded as they come, the four threads would be theirs and
    # the good client would wait in vain.
    g = gunicorn("g1", threads=4)
    s = sluice([g.entry()])
    stop = threading.Event()
    slow = []

    def trickle():
        while not stop.wait(2.0):
            for c in slow:
                try:
                    c.send(b"t" * 10)
                except OSError:
                    pass

    try:
        for _ in range(200):
            c = RawConnection(s.port, timeout=scaled(10))
            c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"t" * 10)
            slow.append(c)
        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        took = []
        statuses = []
        for _ in range(50):
            t0 = time.monotonic()
            try:
                statuses.append(http_request(s.port, "GET", "/", timeout=scaled(3)).status)
            except OSError as e:
                statuses.append(repr(e))
            took.append(time.monotonic() - t0)
            time.sleep(0.08)
    finally:
        stop.set()
        for c in slow:
            c.close()
    assert statuses == [200] * 50, statuses
    assert _percentile(took, 0.99) < scaled(0.5), sorted(took)[-5:]
    assert g.stats()["posts"] == 0


def test_upload_slower_than_min_body_rate_is_408(gunicorn, sluice):
    # 4 KB/s asked, 500 bytes/s sent: past the first 10 s, every 4 KB buys
    # a second more, so the cut comes near 10 / (1 - 500/4096) = 11.4 s;
    # the application never hears of the request.
    g = gunicorn("g1")
    s = sluice([g.entry()], sections={"server.limits": {"min_body_rate": "4KB"},
                                      "server.timeouts": {"client_body": "5s"}})
    with RawConnection(s.port, timeout=scaled(20)) as c:
        c.send("POST /trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        t0 = time.monotonic()
        try:
            for _ in range(75):   # 15 s at most
                c.send(b"t" * 100)
                if select.select([c.sock], [], [], 0.2)[0]:
                    break   # the answer has come
        except OSError:
            pass
        r = c.read_response(timeout=scaled(5))
        took = time.monotonic() - t0
    assert r.status == 408, r
    assert 11 <= took < scaled(12.5), took
    assert s.wait_stderr(r"client 127\.0\.0\.1: request body too slow", scaled(2))
    assert g.stats()["posts"] == 0


def test_body_in_pieces_reaches_the_application_whole_and_at_once(gunicorn, sluice):
    g = gunicorn("g1")
    s = sluice([g.entry()])
    body = bytes(range(256)) * 120   # 30,720 bytes, under buffer_body
    with RawConnection(s.port, timeout=scaled(10)) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 1024):   # 30 pieces over about 0.6 s
            c.send(body[i:i + 1024])
            time.sleep(0.02)
        r = c.read_response()
    assert r.status == 200, r
    name, size, ms, digest = _post_answer(r)
    assert (name, size, digest) == ("g1", len(body), hashlib.sha256(body).hexdigest()), r
    # the application read the whole body without waiting for the client
    assert ms < 100, r.body


def test_post_to_a_refusing_application_is_served_by_another_with_its_body(gunicorn, sluice):
    g = gunicorn("g1")
    dead = {"name": "dead", "ip": "127.0.0.1", "port": free_port()}
    s = sluice([dead, g.entry()],
               sections={"health": {"interval": "60s"}, "passive": {"failures": 1000}})
    body = bytes((i * 7) & 0xff for i in range(50000))
    for _ in range(4):   # round robin: some meet the refusing one first
        r = http_request(s.port, "POST", "/p", body=body, timeout=scaled(10))
        assert r.status == 200, r
        name, size, _, digest = _post_answer(r)
        assert (name, size, digest) == ("g1", 50000, hashlib.sha256(body).hexdigest()), r
    assert s.wait_stderr(r"application dead .*refused", scaled(2))


def test_max_requests_one_serves_in_turn_and_the_late_get_503(gunicorn, sluice):
    # gunicorn could take four at once; max_requests = 1 gives it one at a
    # time. Each takes 0.8 s: the third waits 1.6 s (within the 2 s queue),
    # the fourth would wait 2.4 s and is answered 503 at 2 s.
    g = gunicorn("g1", threads=4)
    s = sluice([g.entry(max_requests=1)], workers=1, sections={"server.timeouts": {"queue": "2s"}})
    results = concurrent_gets(s.port, ["/slow?ms=800&i=%d" % i for i in range(4)], scaled(10))
    assert [r[0] for r in results[:3]] == [200, 200, 200], results
    done = [r[1] for r in results[:3]]
    assert done[0] < done[1] < done[2], done
    assert done[1] - done[0] >= 0.7 and done[2] - done[1] >= 0.7, done
    status, took, retry_after = results[3]
    assert status == 503 and retry_after is not None, results
    assert 1.9 < took < 2.4, results
    assert g.stats()["peak"] == 1
    # the access log says how long each waited and behind how many
    lines = wait_until(lambda: [l for l in s.stdout().splitlines() if "/slow?ms=800" in l], scaled(3))
    waits = {}
    for line in lines:
        m = re.search(r"i=(\d) HTTP/1\.1\" (\d+) .* queue=(\d+)ms/(\d+)$", line)
        if m:
            waits[int(m.group(1))] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    assert 0 not in waits, lines
    assert 700 <= waits[1][1] < 1000 and waits[1][2] == 0, lines
    assert 1400 <= waits[2][1] < 1800 and waits[2][2] == 1, lines
    assert waits[3][0] == 503 and 1950 <= waits[3][1] < 2300 and waits[3][2] == 2, lines


def test_balancers_send_past_a_full_application(gunicorn, sluice):
    # least_conn and random_two: an application at max_requests is passed
    # over while another has room, so six slow requests never put two at
    # once on the limited one.
    for algorithm in ("least_conn", "random_two"):
        small = gunicorn("small-" + algorithm, threads=4)
        big = gunicorn("big-" + algorithm, threads=8)
        s = sluice([small.entry(max_requests=1), big.entry()], workers=2,
                   sections={"server": {"algorithm": algorithm}})
        results = concurrent_gets(s.port, ["/slow?ms=500&i=%d" % i for i in range(6)], scaled(10))
        assert all(r[0] == 200 for r in results), (algorithm, results)
        assert all(r[1] < 0.9 for r in results), (algorithm, results)   # none queued
        assert small.stats()["peak"] == 1, algorithm
        assert big.stats()["peak"] >= 4, algorithm
