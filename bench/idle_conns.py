#!/usr/bin/env python3
"""idle_conns.py - memory a proxy spends on each idle keep-alive connection.

  idle_conns.py --port P --pid ROOT_PID [--count 5000] [--no-request] [--tls]

Samples the RSS and PSS of ROOT_PID and its descendants, opens COUNT client
connections to 127.0.0.1:P (each sends one GET / and reads the whole answer,
so the proxy has set the connection up for real and then parks it as an idle
keep-alive connection), waits for the proxy to settle, samples again, checks
that the connections are still open, and prints

  "open_connections rss_kb_per_conn pss_kb_per_conn rss_before_kb"

rss_before_kb is the RSS at rest, which holds whatever a proxy allocates up
front for connections it may get (nginx's worker_connections array, say).

With --tls each connection is HTTPS (TLS 1.3, ALPN http/1.1, the proxy's
certificate not verified): what an idle TLS connection costs.

Only user-space memory of the proxy is seen (RSS/PSS); kernel socket buffers
are not, for any of the systems compared.
"""

import argparse
import os
import select
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: sluice-bench\r\n\r\n"


def read_response(sock):
    """Read one HTTP/1.1 response (Content-Length or chunked) and return its
    status code. The bench backends answer with a few bytes, so a simple
    accumulate-and-look loop is enough."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a chunked body")
            body += chunk
    else:
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside the body")
            body += chunk
    return status


def still_open(sock):
    """True if the peer has not closed: nothing readable, or data (not EOF)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return True
    try:
        if isinstance(sock, ssl.SSLSocket):
            # no MSG_PEEK through TLS: a read that would block means open
            sock.setblocking(False)
            return sock.recv(1) != b""
        return sock.recv(1, socket.MSG_PEEK) != b""
    except ssl.SSLWantReadError:
        return True
    except OSError:
        return False


def connect(port, tls):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if not tls:
        return sock
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait before sampling")
    ap.add_argument("--no-request", action="store_true", help="connect only, send nothing")
    ap.add_argument("--tls", action="store_true", help="HTTPS connections")
    args = ap.parse_args()

    time.sleep(args.settle)
    _, rss0, pss0, _ = stats.sample(args.pid)
    socks = []
    try:
        for i in range(args.count):
            s = connect(args.port, args.tls)
            socks.append(s)
            if not args.no_request:
                s.sendall(REQUEST)
                status = read_response(s)
                if status != 200:
                    raise RuntimeError(f"connection {i}: status {status}")
        time.sleep(args.settle)
        _, rss1, pss1, _ = stats.sample(args.pid)
        n_open = sum(1 for s in socks if still_open(s))
    except (OSError, RuntimeError, ValueError, IndexError) as e:
        sys.stderr.write(f"idle_conns.py: after {len(socks)} connections: {e}\n")
        return 1
    finally:
        for s in socks:
            s.close()
    if n_open < args.count:
        sys.stderr.write(f"idle_conns.py: the proxy closed {args.count - n_open} of "
                         f"{args.count} idle connections\n")
    if n_open == 0:
        return 1
    print(n_open, f"{(rss1 - rss0) / n_open:.3f}", f"{(pss1 - pss0) / n_open:.3f}", rss0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
