"""A small WSGI application for gunicorn, standing in for a real Python
service with few request slots (a worker thread is held from the first
byte of a request to the last of its answer).

  GET /health       200 "ok"
  GET /             its name (the APP_NAME environment variable)
  GET /slow?ms=N    sleeps N ms, then answers its name
  GET /stats        {"peak": the most requests it has had in hand at once,
                    "posts": POSTs it has begun to handle}; /health and
                    /stats are not counted (counted in one
                    gunicorn worker process: run it with --workers 1)
  POST (any path)   reads the whole body, then answers
                    "<name> received <bytes> bytes in <ms> ms sha256 <hex>",
                    ms being how long reading the body took once the
                    application had the request: near 0 when the body came
                    whole and at once
"""
import hashlib
import json
import os
import threading
import time
from urllib.parse import parse_qs

NAME = os.environ.get("APP_NAME", "gunicorn")

_lock = threading.Lock()
_in_hand = 0
_peak = 0
_posts = 0


def _answer(start_response, text, status="200 OK"):
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                            ("X-Backend", NAME)])
    return [body]


def application(environ, start_response):
    global _in_hand, _peak, _posts
    if environ.get("PATH_INFO") == "/stats":
        return _answer(start_response, json.dumps({"peak": _peak, "posts": _posts}))
    if environ.get("PATH_INFO") == "/health":   # sluice's checks: not counted
        return _answer(start_response, "ok\n")
    with _lock:
        _in_hand += 1
        _peak = max(_peak, _in_hand)
        _posts += environ["REQUEST_METHOD"] == "POST"
    try:
        return _serve(environ, start_response)
    finally:
        with _lock:
            _in_hand -= 1


def _serve(environ, start_response):
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "/")
    if method == "POST":
        stream = environ["wsgi.input"]
        t0 = time.monotonic()
        received = 0
        digest = hashlib.sha256()
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            received += len(chunk)
            digest.update(chunk)
        took_ms = (time.monotonic() - t0) * 1000
        return _answer(start_response, "%s received %d bytes in %.1f ms sha256 %s\n"
                       % (NAME, received, took_ms, digest.hexdigest()))
    if path == "/slow":
        ms = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["100"])[0])
        time.sleep(min(ms, 60000) / 1000)
    return _answer(start_response, NAME + "\n")
