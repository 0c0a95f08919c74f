"""SIGUSR1 reopens the access log file, for rotation by renaming (logrotate
without copytruncate): lines written after it go to a new file at the
configured path, the renamed file keeps the earlier ones, and the error log
is unaffected."""

import signal

from conftest import KeepAlive, get, scaled, wait_until


def _lines_with(path, marker):
    try:
        return [line for line in path.read_text().splitlines() if marker in line]
    except FileNotFoundError:
        return []


def test_sigusr1_reopens_the_access_log(backends, sluice, tmp_path):
    b1, = backends(1)
    log = tmp_path / "access.log"
    s = sluice([b1], sections={"log": {"access": str(log)}})
    # A keep-alive connection open across the rotation keeps being logged.
    with KeepAlive(s.port) as c:
        for i in range(3):
            assert c.get("/before-%d" % i).status == 200
        assert wait_until(lambda: len(_lines_with(log, "/before-")) == 3, scaled(3)), \
            "the access log did not get the first requests"
        rotated = tmp_path / "access.log.1"
        log.rename(rotated)
        mark = len(s.stderr())
        s.proc.send(signal.SIGUSR1)
        assert s.wait_stderr(r"reopened the access log", scaled(3), start=mark), \
            "sluice did not say it reopened the access log"
        for i in range(3):
            assert c.get("/after-%d" % i).status == 200
        assert c.same_socket(), "reopening the log closed a client connection"
    for i in range(2):
        assert get(s.port, "/fresh-%d" % i).status == 200
    assert wait_until(lambda: len(_lines_with(log, "/after-")) == 3 and
                      len(_lines_with(log, "/fresh-")) == 2, scaled(3)), \
        "the new file has %r" % (log.read_text() if log.exists() else None)
    assert _lines_with(log, "/before-") == []
    assert len(_lines_with(rotated, "/before-")) == 3
    assert _lines_with(rotated, "/after-") == [] and _lines_with(rotated, "/fresh-") == []
    assert "/before-" not in s.stderr(), "the error log got access log lines"
    assert s.proc.alive()


def test_sigusr1_with_the_access_log_on_stdout_changes_nothing(backends, sluice):
    b1, = backends(1)
    s = sluice([b1])
    mark = len(s.stderr())
    s.proc.send(signal.SIGUSR1)
    assert s.wait_stderr(r"not a file, nothing to reopen", scaled(3), start=mark)
    assert get(s.port, "/still").status == 200
    assert wait_until(lambda: "/still" in s.stdout(), scaled(3))
    assert s.proc.alive()
