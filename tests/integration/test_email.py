"""Email alerts ([alerts.email]): sluice speaks SMTP itself to a real
server (aiosmtpd, in a thread this test starts and stops), in the clear,
with STARTTLS and AUTH, through retries, and past a server that stalls,
while proxied traffic goes on."""

import email
import email.policy
import email.utils
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from conftest import free_port, get, scaled, wait_until

HEALTH = {"interval": "200ms", "timeout": "300ms", "fall": 2, "rise": 2}
TO = ["oncall@example.com", "backup@example.org"]


class Inbox:
    """What an SMTP server received: one entry per message (envelope,
    parsed message, raw bytes), and the credentials AUTH carried."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []
        self.logins = []

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        with self.lock:
            self.messages.append({
                "from": envelope.mail_from, "to": list(envelope.rcpt_tos), "raw": raw,
                "msg": email.message_from_bytes(raw, policy=email.policy.default)})
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            with self.lock:
                self.logins.append((mechanism, auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=auth_data.password == b"s3cret pass")
        return AuthResult(success=False)

    def snapshot(self):
        with self.lock:
            return list(self.messages)


class RefusingInbox(Inbox):
    """Refuses one recipient for good, or (refuse_sender) every sender."""

    def __init__(self, refuse_sender=False):
        super().__init__()
        self.refuse_sender = refuse_sender
        self.mail_commands = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mail_commands += 1
        if self.refuse_sender:
            return "553 5.7.1 sender not allowed"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == TO[0]:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:port in this process's thread; stopped at the
    end of the test whatever happened."""

    def __init__(self, port, inbox=None, **kwargs):
        self.port = port
        self.inbox = inbox or Inbox()
        self.kwargs = kwargs
        self.controller = None

    def start(self):
        kw = dict(self.kwargs)
        if kw.pop("auth", False):
            kw["authenticator"] = self.inbox.authenticate
            kw["auth_required"] = True
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port,
                                     ready_timeout=scaled(5), **kw)
        self.controller.start()
        return self

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_servers():
    started = []

    def start(port=None, **kwargs):
        server = SmtpServer(port or free_port(), **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def email_section(port, **kw):
    section = {"server": "127.0.0.1:%d" % port, "security": "none",
               "from": "sluice@lb.example.com", "to": TO}
    section.update(kw)
    return section


def kill_one(backends, sluice, port, **email_kw):
    """Two applications behind a sluice that mails through port; b2 is
    killed, so that one alert goes out. Returns sluice and b2."""
    b1, b2 = backends(2)
    s = sluice([b1, b2], sections={"health": HEALTH, "alerts.email": email_section(port, **email_kw)})
    b2.kill()
    return s, b2


def check_headers(msg, app, state):
    date = email.utils.parsedate_to_datetime(msg["Date"])
    assert abs(date.timestamp() - time.time()) < 60, msg["Date"]
    assert re.fullmatch(r"<[0-9a-f]+\.[0-9a-f]+@lb\.example\.com>", msg["Message-ID"]), msg["Message-ID"]
    assert msg["From"] == "sluice@lb.example.com"
    assert [a.strip() for a in str(msg["To"]).split(",")] == TO, msg["To"]
    assert app in msg["Subject"] and state in msg["Subject"], msg["Subject"]
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"


def lines_ok(raw):
    """CRLF line ends only, none over 998 octets (RFC 5322 section 2.1.1)."""
    lines = raw.split(b"\r\n")
    return b"\n" not in raw.replace(b"\r\n", b"") and max(len(x) for x in lines) <= 998


def test_plain_one_message_to_every_recipient(backends, sluice, smtp_servers):
    server = smtp_servers().start()
    b1, b2 = backends(2)
    sluice([b1, b2], sections={"health": HEALTH, "alerts.email": email_section(server.port)})
    time.sleep(0.5)
    assert server.inbox.snapshot() == [], "mail without any transition"
    b2.kill()
    assert wait_until(server.inbox.snapshot, scaled(10)), "no message for b2 going down"
    time.sleep(1.0)                       # a duplicate would have come by now
    messages = server.inbox.snapshot()
    assert len(messages) == 1, [m["msg"]["Subject"] for m in messages]
    m = messages[0]
    assert m["from"] == "sluice@lb.example.com"
    assert m["to"] == TO
    check_headers(m["msg"], "b2", "down")
    assert lines_ok(m["raw"])
    body = m["msg"].get_content()
    assert "b2 (127.0.0.1:%d) is now down, was up." % b2.port in body, body
    assert re.search(r"when: \d{4}-\d\d-\d\dT", body), body
    assert "why:" in body
    assert "Applications up: 1 of 2." in body, body


def test_some_recipients_refused_delivers_to_the_rest(backends, sluice, smtp_servers):
    server = smtp_servers(inbox=RefusingInbox()).start()
    s, b2 = kill_one(backends, sluice, server.port)
    assert wait_until(server.inbox.snapshot, scaled(10)), s.stderr()[-2000:]
    assert server.inbox.snapshot()[0]["to"] == TO[1:]
    assert s.wait_stderr(r"email alert for b2 \(up -> down\) delivered \(oncall@example\.com refused: "
                         r"550 5\.1\.1 no such user\)", scaled(5)), s.stderr()[-2000:]


def test_refused_sender_is_not_retried(backends, sluice, smtp_servers):
    inbox = RefusingInbox(refuse_sender=True)
    server = smtp_servers(inbox=inbox).start()
    s, b2 = kill_one(backends, sluice, server.port)
    assert s.wait_stderr(r"email alert for b2 \(up -> down\) refused for good on attempt 1, not "
                         r"retried: MAIL FROM refused: 553 5\.7\.1 sender not allowed", scaled(10)), \
        s.stderr()[-2000:]
    time.sleep(3.5)                     # past both backoffs: no second try
    assert inbox.mail_commands == 1
    assert "attempt 2" not in s.stderr()


def test_server_by_name(backends, sluice, smtp_servers):
    """A name is looked up on the alert thread; when it gives ::1 first
    and the server listens on 127.0.0.1 only, the retry takes the next
    address."""
    server = smtp_servers().start()
    s, _ = kill_one(backends, sluice, server.port, server="localhost:%d" % server.port)
    assert wait_until(server.inbox.snapshot, scaled(10)), s.stderr()[-2000:]
    check_headers(server.inbox.snapshot()[0]["msg"], "b2", "down")


def make_certificate(directory, name, san):
    cert, key = directory / (name + ".pem"), directory / (name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=" + san],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def server_tls(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_starttls_and_auth(backends, sluice, smtp_servers, tmp_path, monkeypatch):
    cert, key = make_certificate(tmp_path, "mail", "IP:127.0.0.1")
    server = smtp_servers(tls_context=server_tls(cert, key), require_starttls=True, auth=True).start()
    monkeypatch.setenv("SLUICE_TEST_SMTP_PASSWORD", "s3cret pass")
    s, _ = kill_one(backends, sluice, server.port, security="starttls", username="alerts",
                    ca_file=str(cert), password_env="SLUICE_TEST_SMTP_PASSWORD")
    assert wait_until(server.inbox.snapshot, scaled(10)), \
        "no message over STARTTLS: " + s.stderr()[-2000:]
    assert [(login, pw) for _, login, pw in server.inbox.logins] == [("alerts", "s3cret pass")]
    check_headers(server.inbox.snapshot()[0]["msg"], "b2", "down")
    assert "s3cret" not in s.stderr()


def test_certificate_not_trusted_is_a_clear_failure(backends, sluice, smtp_servers, tmp_path):
    cert, key = make_certificate(tmp_path, "mail", "IP:127.0.0.1")
    other, _ = make_certificate(tmp_path, "other", "IP:127.0.0.1")
    server = smtp_servers(tls_context=server_tls(cert, key), require_starttls=True).start()
    s, _ = kill_one(backends, sluice, server.port, security="starttls", ca_file=str(other))
    assert s.wait_stderr(r"email alert for b2 \(up -> down\) failed \(attempt 1 of 3\): "
                         r"TLS handshake with 127\.0\.0\.1 failed: certificate verify failed",
                         scaled(10)), s.stderr()[-2000:]
    assert server.inbox.snapshot() == []


def test_server_down_then_up_delivers_on_a_retry(backends, sluice, smtp_servers):
    server = smtp_servers()                    # its port, nothing listening yet
    s, b2 = kill_one(backends, sluice, server.port)
    assert s.wait_stderr(r"email alert for b2 \(up -> down\) failed \(attempt 1 of 3\): "
                         r"connecting to 127\.0\.0\.1:%d: Connection refused" % server.port,
                         scaled(10)), s.stderr()[-2000:]
    server.start()
    assert wait_until(server.inbox.snapshot, scaled(10)), "not delivered on a retry: " + s.stderr()[-2000:]
    assert s.wait_stderr(r"email alert for b2 \(up -> down\) delivered", scaled(5))
    check_headers(server.inbox.snapshot()[0]["msg"], "b2", "down")


class ScriptedServer:
    """A plain socket SMTP server. Connection i follows behaviours[i]
    (the last one repeats): "stall" stops answering after EHLO, "close"
    hangs up after EHLO, "ok" holds a minimal, correct dialogue whose
    message is kept, "lose" keeps the message and hangs up instead of
    answering its "."."""

    def __init__(self, *behaviours):
        self.behaviours = behaviours
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.messages = []
        self.stalled = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            behaviour = self.behaviours[min(self.connections, len(self.behaviours) - 1)]
            self.connections += 1
            conn.settimeout(30)
            threading.Thread(target=self.serve, args=(conn, behaviour), daemon=True).start()

    def serve(self, conn, behaviour):
        f = conn.makefile("rb")
        try:
            conn.sendall(b"220 scripted.example ESMTP\r\n")
            f.readline()
            conn.sendall(b"250 scripted.example\r\n")
            if behaviour == "stall":
                self.stalled.append(conn)        # held open, never answered again
                return
            if behaviour == "close":
                f.readline()
                conn.close()
                return
            self.dialogue(conn, f, lose=behaviour == "lose")
        except OSError:
            pass

    def dialogue(self, conn, f, lose=False):
        replies = {b"MAIL": b"250 ok\r\n", b"RCPT": b"250 ok\r\n", b"DATA": b"354 go on\r\n",
                   b"QUIT": b"221 bye\r\n"}
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            conn.sendall(replies.get(verb, b"500 what\r\n"))
            if verb == b"QUIT":
                return
            if verb == b"DATA":
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = f.readline()
                    if not chunk:
                        return
                    data += chunk
                self.messages.append(data)
                if lose:                         # taken, but the reply never comes
                    conn.close()
                    return
                conn.sendall(b"250 queued\r\n")

    def close(self):
        self.stop_flag.set()
        self.thread.join(5)
        for c in self.stalled:
            c.close()
        self.sock.close()


def test_stalled_server_times_out_and_traffic_flows(backends, sluice):
    stalling = ScriptedServer("stall", "ok")
    try:
        b1, b2, b3 = backends(3)
        s = sluice([b1, b2, b3], sections={"health": HEALTH,
                                           "alerts.email": email_section(stalling.port)})
        b3.kill()
        ok = failed = 0
        deadline = time.monotonic() + scaled(20)
        # Requests go on while the alert thread waits on the stalled server.
        while not s.wait_stderr(r"email alert for b3 \(up -> down\) delivered", 0) and \
                time.monotonic() < deadline:
            r = get(s.port, "/")
            ok += r.status == 200
            failed += r.status != 200
            time.sleep(0.05)
        assert s.wait_stderr(r"email alert for b3 \(up -> down\) failed \(attempt 1 of 3\): "
                             r"timeout after 10000 ms waiting for the reply to MAIL FROM", 0), \
            s.stderr()[-2000:]
        assert s.wait_stderr(r"email alert for b3 \(up -> down\) delivered", 0), s.stderr()[-2000:]
        assert ok > 50 and failed == 0, (ok, failed)
        assert len(stalling.messages) == 1
        assert b"Subject: [sluice] b3 is now down" in stalling.messages[0]
        b2.kill()                              # a later alert still goes through
        assert wait_until(lambda: len(stalling.messages) >= 2, scaled(10)), s.stderr()[-2000:]
        assert b"Subject: [sluice] b2 is now down" in stalling.messages[1]
    finally:
        stalling.close()


def test_server_closing_mid_dialogue_is_retried(backends, sluice):
    server = ScriptedServer("close", "ok")
    try:
        s, b2 = kill_one(backends, sluice, server.port)
        assert s.wait_stderr(r"email alert for b2 \(up -> down\) failed \(attempt 1 of 3\): "
                             r"the server closed the connection during MAIL FROM", scaled(10)), \
            s.stderr()[-2000:]
        assert wait_until(lambda: server.messages, scaled(10)), s.stderr()[-2000:]
        assert server.connections == 2
    finally:
        server.close()


def test_implicit_tls(backends, sluice, smtp_servers, tmp_path):
    cert, key = make_certificate(tmp_path, "mail", "IP:127.0.0.1")
    server = smtp_servers(ssl_context=server_tls(cert, key)).start()
    s, _ = kill_one(backends, sluice, server.port, security="tls", ca_file=str(cert))
    assert wait_until(server.inbox.snapshot, scaled(10)), "nothing over implicit TLS: " + s.stderr()[-2000:]
    check_headers(server.inbox.snapshot()[0]["msg"], "b2", "down")


def test_burst_of_transitions_is_one_message(backends, sluice, smtp_servers):
    server = smtp_servers().start()
    b1, b2, b3 = backends(3)
    sluice([b1, b2, b3], sections={"health": HEALTH, "alerts": {"batch": "2s"},
                                   "alerts.email": email_section(server.port)})
    b2.kill()
    b3.kill()
    assert wait_until(server.inbox.snapshot, scaled(10))
    time.sleep(3)
    messages = server.inbox.snapshot()
    assert len(messages) == 1, [m["msg"]["Subject"] for m in messages]
    body = messages[0]["msg"].get_content()
    assert "b2 (" in body and "b3 (" in body, body
    assert "2 changes" in messages[0]["msg"]["Subject"]


def test_test_alert_reaches_email(smtp_servers, tmp_path):
    """--test-alert mails a message marked as a test; a server that refuses
    the connection is a failure, and the exit status says so."""
    from conftest import build_config, run_sluice
    server = smtp_servers().start()
    refused = free_port()
    good = tmp_path / "good.toml"
    good.write_text(build_config(free_port(), [{"ip": "127.0.0.1", "port": 9}],
                                 {"alerts.email": email_section(server.port)}))
    r = run_sluice(["--test-alert", "-c", good], timeout=scaled(30))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.splitlines() == ["email 127.0.0.1:%d: delivered" % server.port], r.stdout
    messages = server.inbox.snapshot()
    assert len(messages) == 1
    assert "TEST" in messages[0]["msg"]["Subject"], messages[0]["msg"]["Subject"]
    bad = tmp_path / "bad.toml"
    bad.write_text(build_config(free_port(), [{"ip": "127.0.0.1", "port": 9}],
                                {"alerts.email": email_section(refused)}))
    r = run_sluice(["--test-alert", "-c", bad], timeout=scaled(30))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout.startswith("email 127.0.0.1:%d: not delivered: " % refused), r.stdout


def test_message_ids_differ_between_processes_with_the_same_pid(smtp_servers, tmp_path):
    """Every sluice in a container is pid 1: two of them must still give
    their messages different Message-IDs, or a mailbox may keep one."""
    import shutil
    from conftest import SLUICE_BIN, build_config, require_binaries, sluice_env
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=10).returncode:
        pytest.skip("needs unshare --pid (root)")
    require_binaries()
    server = smtp_servers().start()
    config = tmp_path / "mail.toml"
    config.write_text(build_config(free_port(), [{"ip": "127.0.0.1", "port": 9}],
                                   {"alerts.email": email_section(server.port)}))
    for _ in range(2):
        r = subprocess.run(["unshare", "--pid", "--fork", str(SLUICE_BIN), "--test-alert", "-c",
                            str(config)], capture_output=True, text=True, timeout=scaled(30),
                           stdin=subprocess.DEVNULL, env=sluice_env())
        assert r.returncode == 0, (r.stdout, r.stderr)
    ids = [m["msg"]["Message-ID"] for m in server.inbox.snapshot()]
    assert len(ids) == 2, ids
    # The left part is the time in ms; the part after it must not repeat.
    uniques = [re.fullmatch(r"<[0-9a-f]+\.([0-9a-f]+)@lb\.example\.com>", i).group(1) for i in ids]
    assert uniques[0] != uniques[1], ids


def test_a_message_sent_again_keeps_its_message_id(backends, sluice):
    """The reply to "." lost: the retry is the same message, with the same
    Message-ID, so that a mailbox that got both can tell."""
    server = ScriptedServer("lose", "ok")
    try:
        s, _ = kill_one(backends, sluice, server.port)
        assert s.wait_stderr(r"email alert for b2 \(up -> down\) delivered", scaled(15)), s.stderr()[-2000:]
        assert len(server.messages) == 2, server.messages
        ids = [re.search(rb"\r\nMessage-ID: (<[^>]+>)\r\n", m).group(1) for m in server.messages]
        assert ids[0] == ids[1], ids
    finally:
        server.close()
