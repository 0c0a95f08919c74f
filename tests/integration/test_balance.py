"""Balancing algorithms and weights ([server] algorithm and hash_key,
[[applications]] weight), as the traffic split a user sees."""

import collections
import http.client
import threading

import pytest

from conftest import KeepAlive, app_entry, get, scaled, wait_until


def _spread(port, n, path="/", headers=None):
    seen = collections.Counter()
    for i in range(n):
        r = get(port, path if "%" not in path else path % i, headers=headers)
        assert r.status == 200
        seen[r.backend] += 1
    return seen


def test_round_robin_weights(backends, sluice):
    b1, b2 = backends(2)
    s = sluice([app_entry(b1, weight=1), app_entry(b2, weight=3)], workers=1)
    seen = _spread(s.port, 40)
    assert abs(seen["b1"] - 10) <= 1 and abs(seen["b2"] - 30) <= 1, seen


def test_least_conn_avoids_the_busy_application(backends, sluice):
    b1, b2 = backends(2)
    s = sluice([b1, b2], sections={"server": {"algorithm": "least_conn"}}, workers=1)
    result = []
    t = threading.Thread(target=lambda: result.append(get(s.port, "/slow?ms=1500",
                                                          timeout=scaled(10))), daemon=True)
    t.start()
    busy = wait_until(lambda: [b for b in (b1, b2) if "GET /slow?ms=1500" in b.logged()], scaled(3))
    assert busy, "the slow request reached no application"
    busy = busy[0]
    other = b2 if busy is b1 else b1
    with KeepAlive(s.port) as c:
        served = collections.Counter(c.get("/").backend for _ in range(10))
    assert served == {other.name: 10}, served
    t.join(scaled(10))
    assert result and result[0].status == 200


def test_random_two_uses_every_application(backends, sluice):
    apps = backends(3)
    s = sluice(apps, sections={"server": {"algorithm": "random_two"}})
    seen = _spread(s.port, 90)
    for b in apps:
        assert seen[b.name] >= 10, seen


def _backend_from(port, source_ip):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(5), source_address=(source_ip, 0))
    try:
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read().decode().strip()
        assert r.status == 200, (r.status, body)
        return body
    finally:
        c.close()


def test_hash_client_ip_is_sticky(backends, sluice):
    apps = backends(3)
    s = sluice(apps, sections={"server": {"algorithm": "hash", "hash_key": "client_ip"}})
    seen = _spread(s.port, 20)
    assert len(seen) == 1, "one client was spread over %r" % seen
    # other clients (other loopback addresses) spread, each one sticky
    per_ip = {}
    for n in range(2, 18):
        ip = "127.0.0.%d" % n
        first = _backend_from(s.port, ip)
        assert _backend_from(s.port, ip) == first, "client %s moved" % ip
        per_ip[ip] = first
    assert len(set(per_ip.values())) >= 2, "16 clients all went to %r" % set(per_ip.values())


def test_hash_uri_is_sticky_per_uri(backends, sluice):
    apps = backends(3)
    s = sluice(apps, sections={"server": {"algorithm": "hash", "hash_key": "uri"}})
    first = {}
    for i in range(30):
        first[i] = get(s.port, "/item/%d" % i).backend
    for i in range(30):
        assert get(s.port, "/item/%d" % i).backend == first[i]
    assert len(set(first.values())) >= 2, "30 URIs all hashed to one application"


@pytest.mark.parametrize("name", ["X-User", "x-user"])
def test_hash_header_is_sticky_per_value(backends, sluice, name):
    # header names are case-insensitive (RFC 9110 section 5.1), however the
    # operator spells the name in hash_key
    apps = backends(3)
    s = sluice(apps, sections={"server": {"algorithm": "hash", "hash_key": "header:" + name}})
    first = {}
    for u in range(20):
        first[u] = get(s.port, "/", headers={"X-User": "user-%d" % u}).backend
    for u in range(20):
        for _ in range(2):
            assert get(s.port, "/", headers={"X-User": "user-%d" % u}).backend == first[u]
    assert len(set(first.values())) >= 2


def test_hash_cookie_is_sticky_per_value(backends, sluice):
    apps = backends(3)
    s = sluice(apps, sections={"server": {"algorithm": "hash", "hash_key": "cookie:session"}})
    first = {}
    for u in range(20):
        cookie = "theme=dark; session=s%d; lang=en" % u
        first[u] = get(s.port, "/", headers={"Cookie": cookie}).backend
    for u in range(20):
        cookie = "session=s%d" % u
        assert get(s.port, "/", headers={"Cookie": cookie}).backend == first[u]
    assert len(set(first.values())) >= 2


def _owners(port, keys):
    """Which application answered each key (header X-Key), over one
    keep-alive connection."""
    with KeepAlive(port) as c:
        owners = []
        for k in keys:
            r = c.get("/", headers={"X-Key": k})
            assert r.status == 200, "key %s answered %d" % (k, r.status)
            owners.append(r.backend)
        return owners


def test_hash_follows_names_not_the_order_of_the_file(backends, sluice):
    b1, b2, b3, b4, b5 = backends(5)
    hashing = {"server": {"algorithm": "hash", "hash_key": "header:X-Key"}}
    keys = ["key-%d" % i for i in range(300)]
    first = sluice([b1, b2, b3, b4], sections=hashing, workers=1)
    reordered = sluice([b4, b2, b1, b3], sections=hashing, workers=1)
    grown = sluice([b5, b3, b1, b4, b2], sections=hashing, workers=1)
    base = _owners(first.port, keys)
    assert len(set(base)) == 4, "300 keys over 4 applications: %r" % collections.Counter(base)
    mismatched = [k for k, x, y in zip(keys, base, _owners(reordered.port, keys)) if x != y]
    assert not mismatched, "the same applications in another order disagree on %d keys, e.g. %s" % (
        len(mismatched), mismatched[:5])
    # One application more, inserted first: only the keys it takes move.
    after = _owners(grown.port, keys)
    moved = [(x, y) for x, y in zip(base, after) if x != y]
    assert all(y == "b5" for _, y in moved), "keys moved between old applications: %r" % moved[:5]
    assert 0.1 * len(keys) <= len(moved) <= 0.3 * len(keys), "%d of %d keys moved" % (len(moved), len(keys))
