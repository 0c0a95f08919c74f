"""Request smuggling and malformed requests (docs/proxying.md, "Refused
requests").

Each refused request is sent together with a second, smuggled request on the
same connection. sluice must answer the first with 400 (501/505 where RFC
9112 justifies it), close the connection, and never let the application see
the smuggled request - nor, when the head itself is bad, the first one.
Valid but unusual requests must pass, framed exactly as sent.
"""

import re
import time

import pytest

from conftest import (Backend, ProcessRegistry, Sluice, attach, build_config, free_port,
                      raw_exchange, require_binaries, scaled, wait_until)

HEAD_ERR = {400}
TE_ERR = {400, 501}
VERSION_ERR = {400, 505}

POST_TE = "POST {t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def get_with(header_lines, method="GET"):
    return "%s {t} HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, "".join(h + "\r\n" for h in header_lines))


# (id, first request, allowed statuses, refused as a whole = the application
# must never see the first request either)
REFUSED = [
    # --- framing
    ("cl_and_te", "POST {t} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", HEAD_ERR, True),
    ("te_and_cl", "POST {t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  "Content-Length: 5\r\n\r\n0\r\n\r\n", HEAD_ERR, True),
    ("cl_differing", "POST {t} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     "Content-Length: 6\r\n\r\nhello", HEAD_ERR, True),
    ("cl_list_differing", get_with(["Content-Length: 5, 6"], "POST") + "hello", HEAD_ERR, True),
    ("cl_plus", get_with(["Content-Length: +5"], "POST") + "hello", HEAD_ERR, True),
    ("cl_minus", get_with(["Content-Length: -1"], "POST"), HEAD_ERR, True),
    ("cl_hex", get_with(["Content-Length: 0x5"], "POST") + "hello", HEAD_ERR, True),
    ("cl_alpha", get_with(["Content-Length: 5a"], "POST") + "hello", HEAD_ERR, True),
    ("cl_inner_space", get_with(["Content-Length: 5 5"], "POST") + "hello", HEAD_ERR, True),
    ("cl_empty", get_with(["Content-Length:"], "POST"), HEAD_ERR, True),
    ("cl_overflow", get_with(["Content-Length: 99999999999999999999999"], "POST"),
     HEAD_ERR | {413}, True),
    ("te_xchunked", get_with(["Transfer-Encoding: xchunked"], "POST") + "0\r\n\r\n", TE_ERR, True),
    ("te_chunked_identity", get_with(["Transfer-Encoding: chunked, identity"], "POST")
     + "0\r\n\r\n", TE_ERR, True),
    ("te_identity", get_with(["Transfer-Encoding: identity"], "POST") + "0\r\n\r\n", TE_ERR, True),
    ("te_duplicated", get_with(["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], "POST")
     + "0\r\n\r\n", TE_ERR, True),
    ("te_chunked_twice", get_with(["Transfer-Encoding: chunked, chunked"], "POST") + "0\r\n\r\n",
     TE_ERR, True),
    ("te_then_identity", get_with(["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
                                  "POST") + "0\r\n\r\n", TE_ERR, True),
    ("te_quoted", get_with(['Transfer-Encoding: "chunked"'], "POST") + "0\r\n\r\n", TE_ERR, True),
    ("te_vtab", get_with(["Transfer-Encoding: \x0bchunked"], "POST") + "0\r\n\r\n", HEAD_ERR, True),
    ("te_space_before_colon", get_with(["Transfer-Encoding : chunked"], "POST") + "0\r\n\r\n",
     HEAD_ERR, True),
    ("te_leading_space_line", "POST {t} HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: x\r\n\r\n"
                              "0\r\n\r\n", HEAD_ERR, True),
    ("te_obs_fold", get_with(["X-A: b", "Transfer-Encoding:", " chunked"], "POST") + "0\r\n\r\n",
     HEAD_ERR, True),
    ("te_in_http10", "POST {t} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     HEAD_ERR, True),
    ("te_gzip_chunked", get_with(["Transfer-Encoding: gzip, chunked"], "POST") + "0\r\n\r\n",
     {501}, True),
    ("te_nul", get_with(["Transfer-Encoding: chunked\x00"], "POST") + "0\r\n\r\n", HEAD_ERR, True),
    # --- header syntax
    ("obs_fold", get_with(["X-A: a", " b"]), HEAD_ERR, True),
    ("obs_fold_tab", get_with(["X-A: a", "\tb"]), HEAD_ERR, True),
    ("value_nul", get_with(["X-A: a\x00b"]), HEAD_ERR, True),
    ("value_cr", get_with(["X-A: a\rb"]), HEAD_ERR, True),
    ("value_ctl", get_with(["X-A: a\x01b"]), HEAD_ERR, True),
    ("value_esc", get_with(["X-A: a\x1bb"]), HEAD_ERR, True),
    ("value_del", get_with(["X-A: a\x7fb"]), HEAD_ERR, True),
    ("space_before_colon", "GET {t} HTTP/1.1\r\nHost : x\r\n\r\n", HEAD_ERR, True),
    ("tab_before_colon", get_with(["X-A\t: v"]), HEAD_ERR, True),
    ("leading_ws_first_header", "GET {t} HTTP/1.1\r\n X-A: v\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("name_paren", get_with(["X(A): v"]), HEAD_ERR, True),
    ("name_space", get_with(["X A: v"]), HEAD_ERR, True),
    ("name_ctl", get_with(["X\x01A: v"]), HEAD_ERR, True),
    ("name_empty", get_with([": v"]), HEAD_ERR, True),
    ("name_quote", get_with(['X"A: v']), HEAD_ERR, True),
    ("name_slash", get_with(["X/A: v"]), HEAD_ERR, True),
    ("name_non_ascii", get_with(["X\xe9A: v"]), HEAD_ERR, True),
    ("no_colon", get_with(["NoColonHere"]), HEAD_ERR, True),
    ("missing_host", "GET {t} HTTP/1.1\r\n\r\n", HEAD_ERR, True),
    ("duplicate_host", "GET {t} HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", HEAD_ERR, True),
    ("host_with_space", "GET {t} HTTP/1.1\r\nHost: a b\r\n\r\n", HEAD_ERR, True),
    # --- line endings
    ("bare_lf_everywhere", "GET {t} HTTP/1.1\nHost: x\n\n", HEAD_ERR, True),
    ("bare_lf_request_line", "GET {t} HTTP/1.1\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("bare_lf_header", "GET {t} HTTP/1.1\r\nHost: x\nX-A: v\r\n\r\n", HEAD_ERR, True),
    ("bare_lf_end", "GET {t} HTTP/1.1\r\nHost: x\r\n\n", HEAD_ERR, True),
    ("bare_cr_header", "GET {t} HTTP/1.1\r\nHost: x\rX-A: v\r\n\r\n", HEAD_ERR, True),
    ("bare_cr_request_line", "GET {t} HTTP/1.1\rHost: x\r\n\r\n", HEAD_ERR, True),
    # --- methods
    ("method_paren", "GE(T {t} HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("method_ctl", "GE\x01T {t} HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("method_non_ascii", "G\xc9T {t} HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("method_colon", "GE:T {t} HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("method_empty", " {t} HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("double_space", "GET  {t} HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("tab_separator", "GET\t{t} HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    # --- targets
    ("target_space", "GET {t} x HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR | {505}, True),
    ("target_non_ascii", "GET {t}\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("target_ctl", "GET {t}\x01 HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("target_del", "GET {t}\x7f HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("target_nul", "GET {t}\x00 HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("target_tab", "GET {t}\tx HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("target_relative", "GET case.relative HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("target_empty", "GET  HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
    ("target_bad_percent", "GET {t}%zz HTTP/1.1\r\nHost: x\r\n\r\n", HEAD_ERR, True),
] + [
    ("target_char_%02x" % ord(c), "GET {t}%sx HTTP/1.1\r\nHost: x\r\n\r\n" % c, HEAD_ERR, True)
    for c in '"<>{}|\\^`#'
] + [
    # --- versions
    ("version_2_0", "GET {t} HTTP/2.0\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_1_2", "GET {t} HTTP/1.2\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_0_9", "GET {t} HTTP/0.9\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_3", "GET {t} HTTP/3\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_lowercase", "GET {t} http/1.1\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_garbage", "GET {t} HTTP/1.1x\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_truncated", "GET {t} HTTP/1.\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_foo", "GET {t} FOO/1.1\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_trailing_space", "GET {t} HTTP/1.1 \r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_leading_zero", "GET {t} HTTP/01.1\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    ("version_missing", "GET {t}\r\nHost: x\r\n\r\n", VERSION_ERR, True),
    # --- chunked bodies. Sent in one write, the bad chunk arrives with the
    # head, and docs/proxying.md promises such bytes are validated before any
    # application is contacted: so the request is refused as a whole too.
    ("chunk_plus", POST_TE + "+1\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_0x", POST_TE + "0x1\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_minus", POST_TE + "-1\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_17_digits", POST_TE + "00000000000000001\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_17_digits_overflow", POST_TE + "10000000000000001\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_space_before", POST_TE + " 1\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_space_after", POST_TE + "1 \r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_non_hex", POST_TE + "g\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_empty_size", POST_TE + "\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_size_bare_lf", POST_TE + "1\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_size_bare_cr", POST_TE + "1\rA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_ext_bare_lf", POST_TE + "1;ext\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_ext_ctl", POST_TE + "1;e=\x01\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_ext_empty_name", POST_TE + "1;\r\nA\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_data_too_long", POST_TE + "1\r\nAB\r\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_data_bare_lf", POST_TE + "1\r\nA\n0\r\n\r\n", HEAD_ERR, True),
    ("chunk_last_bare_lf", POST_TE + "1\r\nA\r\n0\n\r\n", HEAD_ERR, True),
    ("trailer_space_before_colon", POST_TE + "1\r\nA\r\n0\r\nX-T : v\r\n\r\n", HEAD_ERR, True),
    ("trailer_no_colon", POST_TE + "0\r\nnot a header\r\n\r\n", HEAD_ERR, True),
    ("trailer_obs_fold", POST_TE + "0\r\nX-T: a\r\n b\r\n\r\n", HEAD_ERR, True),
    ("trailer_bare_lf", POST_TE + "0\r\nX-T: v\n\r\n", HEAD_ERR, True),
    ("trailer_ctl", POST_TE + "0\r\nX-T: a\x01b\r\n\r\n", HEAD_ERR, True),
    ("trailer_nul", POST_TE + "0\r\nX-T: a\x00b\r\n\r\n", HEAD_ERR, True),
    ("trailer_bad_name", POST_TE + "0\r\nX(T): v\r\n\r\n", HEAD_ERR, True),
]

# (id, request, expected body from b1 or None for any 200)
VALID = [
    ("te_ows_tab", "POST {t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\t\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n", b"b1 received 5 bytes\n"),
    ("te_mixed_case", "POST {t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\n\r\n", b"b1 received 5 bytes\n"),
    ("cl_identical_duplicate", "POST {t} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                               "Content-Length: 5\r\n\r\nhello", b"b1 received 5 bytes\n"),
    ("lowercase_names", "POST {t} HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello",
     b"b1 received 5 bytes\n"),
    ("chunk_extensions", "POST {t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5;a=b;c=\"d e\"\r\nhello\r\n0;last\r\n\r\n", b"b1 received 5 bytes\n"),
    ("chunk_16_digits", "POST {t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "000000000000000A\r\n0123456789\r\n0\r\n\r\n", b"b1 received 10 bytes\n"),
    ("chunk_trailer", "POST {t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n", b"b1 received 5 bytes\n"),
    ("leading_empty_line", "\r\nGET {t} HTTP/1.1\r\nHost: x\r\n\r\n", b"b1\n"),
    ("obs_text_value", "GET {t} HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9\r\n\r\n", b"b1\n"),
    ("value_inner_tab", "GET {t} HTTP/1.1\r\nHost: x\r\nX-A: a\tb\r\n\r\n", b"b1\n"),
    ("empty_value", "GET {t} HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n", b"b1\n"),
    ("uri_punctuation", "GET {t}&p=-_.~!$'()*+,;=:@/?%20 HTTP/1.1\r\nHost: x\r\n\r\n", b"b1\n"),
    ("absolute_form", "GET http://x{t} HTTP/1.1\r\nHost: x\r\n\r\n", b"b1\n"),
    ("http10_get", "GET {t} HTTP/1.0\r\nHost: x\r\n\r\n", b"b1\n"),
]


class Stack:
    def __init__(self, directory):
        self.registry = ProcessRegistry(directory)
        self.backend = Backend(self.registry, "b1")
        self.start_sluice()

    def start_sluice(self):
        port = free_port()
        self.sluice = Sluice(self.registry, build_config(port, [self.backend], workers=2), port)

    def ensure_running(self):
        if not self.backend.alive():
            self.backend.restart()
        if not self.sluice.proc.alive():
            self.start_sluice()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_binaries()
    st = Stack(tmp_path_factory.mktemp("smuggling"))
    yield st
    problems = st.registry.cleanup()
    assert not problems, problems


@pytest.fixture
def env(request, stack):
    attach(request, stack.registry)
    stack.ensure_running()
    yield stack
    crashed = not stack.sluice.proc.alive()
    if crashed:
        pytest.fail("sluice died (exit %s) during this test" % stack.sluice.proc.returncode,
                    pytrace=False)


def _case_rx(case_id):
    return re.compile(r"case=%s(?![\w])" % re.escape(case_id))


def _sync(stack, tag):
    """A request sent after the case: once the application logged it,
    anything the case made sluice forward has been logged too."""
    r = raw_exchange(stack.sluice.port,
                     "GET /?sentinel=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % tag)
    assert [x.status for x in r[0]] == [200], "sluice stopped serving after the case: %r" % (r,)
    assert wait_until(lambda: "GET /?sentinel=%s" % tag in stack.backend.logged(), scaled(3))
    time.sleep(0.05)


@pytest.mark.parametrize("case_id,request_text,allowed,whole", REFUSED,
                         ids=[c[0] for c in REFUSED])
def test_refused(env, case_id, request_text, allowed, whole):
    target = "/?case=%s" % case_id
    smuggled = "GET /smuggled-%s HTTP/1.1\r\nHost: x\r\n\r\n" % case_id
    data = request_text.replace("{t}", target).replace("case.relative", "case=%s" % case_id)
    responses, rest, closed = raw_exchange(env.sluice.port, data + smuggled)
    statuses = [r.status for r in responses]
    _sync(env, case_id)
    log = env.backend.logged_text()
    assert "/smuggled-%s" % case_id not in log, "the smuggled request reached the application"
    if whole:
        assert not _case_rx(case_id).search(log), "a refused request reached the application"
    assert len(responses) == 1 and statuses[0] in allowed, \
        "expected one answer in %s, got %s (+%r)" % (sorted(allowed), statuses, rest[:200])
    assert responses[0].backend is None, "the answer came from the application"
    assert rest == b"", "bytes after sluice's answer: %r" % rest[:200]
    assert closed, "sluice kept the connection open after refusing a request"


@pytest.mark.parametrize("case_id,request_text,body", VALID, ids=[c[0] for c in VALID])
def test_valid_tricky_request_passes(env, case_id, request_text, body):
    target = "/?case=%s" % case_id
    data = request_text.replace("{t}", target)
    after = "GET /?after=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % case_id
    http10 = "HTTP/1.0" in data
    responses, rest, closed = raw_exchange(env.sluice.port, data if http10 else data + after)
    assert responses, "no answer (+%r)" % rest[:200]
    first = responses[0]
    assert first.status == 200, first
    assert first.backend == "b1"
    if body is not None:
        assert first.body == body
    if not http10:
        assert [r.status for r in responses] == [200, 200], responses
        assert responses[1].body == b"b1\n"
    assert rest == b"" and closed
    log = env.backend.logged_text()
    assert _case_rx(case_id).search(log)
    if case_id == "absolute_form":
        # sent on in origin form (RFC 9112 section 3.2.2, docs/proxying.md)
        assert "GET %s" % target in env.backend.logged()
    if not http10:
        assert "/?after=%s" % case_id in log
