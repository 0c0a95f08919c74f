/* test_http1.c - the HTTP/1 parser: valid forms, the smuggling corpora, every
 * prefix and every split. Inputs are copied into buffers of exactly their
 * length so that AddressSanitizer catches any read past len. */
#include <stdint.h>
#include <stdlib.h>

#include "http1.h"
#include "unit.h"

#define MAX_HEADERS 32

static struct http1_header headers[MAX_HEADERS];
static const struct http1_limits limits = {.head_bytes = 16384, .headers = MAX_HEADERS};
static char *copy; /* the last parsed input; views point into it */

static const char *exact_copy(const char *raw, size_t len)
{
    free(copy);
    copy = malloc(len ? len : 1);
    memcpy(copy, raw, len);
    return copy;
}

static enum http1_result parse_req_lim(const char *raw, size_t len, const struct http1_limits *lim,
                                       struct http1_request *req)
{
    const char *buf = exact_copy(raw, len);
    req->headers = headers;
    return http1_parse_request(buf, len, lim, req);
}

static enum http1_result parse_req(const char *raw, size_t len, struct http1_request *req)
{
    return parse_req_lim(raw, len, &limits, req);
}

static enum http1_result parse_res(const char *raw, size_t len, enum http1_method method,
                                   struct http1_response *res)
{
    const char *buf = exact_copy(raw, len);
    res->headers = headers;
    return http1_parse_response(buf, len, &limits, method, res);
}

static bool view_is(const char *p, uint32_t n, const char *want)
{
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

#define S(lit) lit, sizeof(lit) - 1

/* ---- valid requests ---- */

struct good_request {
    const char *raw;
    size_t len;
    enum http1_method method;
    const char *path;
    const char *authority;
    int minor;
    enum http1_body body;
    uint64_t content_length;
    uint32_t flags;
};

static const struct good_request good_requests[] = {
    {S("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_METHOD_GET, "/", "a", 1, HTTP1_BODY_NONE, 0, 0},
    {S("GET /a/b;c?d=e&f=%2F/?:@!$'()*+,; HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"),
     HTTP1_METHOD_GET, "/a/b;c?d=e&f=%2F/?:@!$'()*+,;", "example.com:8080", 1, HTTP1_BODY_NONE, 0, 0},
    {S("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_METHOD_GET, "/", "a", 1, HTTP1_BODY_NONE, 0, 0},
    {S("HEAD /x HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\n"), HTTP1_METHOD_HEAD, "/x", "127.0.0.1:8001", 1,
     HTTP1_BODY_NONE, 0, 0},
    {S("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"), HTTP1_METHOD_POST, "/x", "a", 1,
     HTTP1_BODY_LENGTH, 5, 0},
    {S("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length:5\r\n\r\n"), HTTP1_METHOD_POST,
     "/x", "a", 1, HTTP1_BODY_LENGTH, 5, 0},
    {S("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5 ,5\r\n\r\n"), HTTP1_METHOD_POST, "/x", "a", 1,
     HTTP1_BODY_LENGTH, 5, 0},
    {S("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"), HTTP1_METHOD_PUT,
     "/x", "a", 1, HTTP1_BODY_LENGTH, INT64_MAX, 0},
    {S("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), HTTP1_METHOD_POST, "/x", "a", 1,
     HTTP1_BODY_NONE, 0, 0},
    {S("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP1_METHOD_POST, "/x", "a",
     1, HTTP1_BODY_CHUNKED, 0, 0},
    {S("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tChunked \t\r\n\r\n"), HTTP1_METHOD_POST, "/x",
     "a", 1, HTTP1_BODY_CHUNKED, 0, 0},
    {S("GET http://Example.com:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n"), HTTP1_METHOD_GET, "/p?q",
     "Example.com:81", 1, HTTP1_BODY_NONE, 0, 0},
    {S("GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"), HTTP1_METHOD_GET, "/",
     "example.com", 1, HTTP1_BODY_NONE, 0, 0},
    {S("GET http://[::1]:8080/ HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), HTTP1_METHOD_GET, "/", "[::1]:8080",
     1, HTTP1_BODY_NONE, 0, 0},
    {S("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_METHOD_OPTIONS, "*", "a", 1, HTTP1_BODY_NONE, 0, 0},
    {S("OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_METHOD_OPTIONS, "/x", "a", 1, HTTP1_BODY_NONE, 0, 0},
    {S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), HTTP1_METHOD_CONNECT, "",
     "example.com:443", 1, HTTP1_BODY_NONE, 0, 0},
    {S("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n"), HTTP1_METHOD_CONNECT, "",
     "[2001:db8::1]:443", 1, HTTP1_BODY_NONE, 0, 0},
    {S("GET / HTTP/1.0\r\n\r\n"), HTTP1_METHOD_GET, "/", "", 0, HTTP1_BODY_NONE, 0, HTTP1_CONN_CLOSE},
    {S("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), HTTP1_METHOD_GET, "/", "", 0, HTTP1_BODY_NONE,
     0, HTTP1_CONN_KEEP_ALIVE},
    {S("POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 2\r\n\r\n"), HTTP1_METHOD_POST, "/", "a", 0,
     HTTP1_BODY_LENGTH, 2, HTTP1_CONN_CLOSE},
    {S("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), HTTP1_METHOD_GET, "/", "a", 1,
     HTTP1_BODY_NONE, 0, HTTP1_CONN_CLOSE},
    {S("GET / HTTP/1.1\r\nHost: a\r\nConnection: close, , keep-alive\r\n\r\n"), HTTP1_METHOD_GET, "/", "a",
     1, HTTP1_BODY_NONE, 0, HTTP1_CONN_CLOSE | HTTP1_CONN_KEEP_ALIVE},
    {S("GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
     HTTP1_METHOD_GET, "/chat", "a", 1, HTTP1_BODY_NONE, 0, HTTP1_CONN_UPGRADE},
    {S("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"), HTTP1_METHOD_GET, "/", "a", 1,
     HTTP1_BODY_NONE, 0, 0},
    {S("GET / HTTP/1.0\r\nConnection: upgrade, keep-alive\r\nUpgrade: websocket\r\n\r\n"), HTTP1_METHOD_GET,
     "/", "", 0, HTTP1_BODY_NONE, 0, HTTP1_CONN_KEEP_ALIVE},
    {S("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n"), HTTP1_METHOD_PUT,
     "/x", "a", 1, HTTP1_BODY_LENGTH, 3, HTTP1_EXPECT_CONTINUE},
    {S("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n"), HTTP1_METHOD_PUT, "/x", "a", 1,
     HTTP1_BODY_NONE, 0, 0},
    {S("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nx-request-id: abc\r\n\r\n"),
     HTTP1_METHOD_GET, "/", "a", 1, HTTP1_BODY_NONE, 0, HTTP1_HAS_XFF | HTTP1_HAS_REQ_ID},
    {S("M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_METHOD_OTHER, "/", "a", 1, HTTP1_BODY_NONE, 0, 0},
    {S("get / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_METHOD_OTHER, "/", "a", 1, HTTP1_BODY_NONE, 0, 0},
    {S("DELETE /%41%7e HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\nY:\r\n\r\n"), HTTP1_METHOD_DELETE,
     "/%41%7e", "a", 1, HTTP1_BODY_NONE, 0, 0},
    {S("PATCH / HTTP/1.1\r\nHost:\r\n\r\n"), HTTP1_METHOD_PATCH, "/", "", 1, HTTP1_BODY_NONE, 0, 0},
    {S("TRACE / HTTP/1.1\r\nHost: a%2Db.example:\r\n\r\n"), HTTP1_METHOD_TRACE, "/", "a%2Db.example:", 1,
     HTTP1_BODY_NONE, 0, 0},
    {S("GET / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding_X: chunked\r\n\r\n"), HTTP1_METHOD_GET, "/", "a", 1,
     HTTP1_BODY_NONE, 0, 0},
};

static void test_good_requests(void)
{
    for (size_t i = 0; i < sizeof good_requests / sizeof good_requests[0]; i++) {
        const struct good_request *g = &good_requests[i];
        struct http1_request req;
        enum http1_result r = parse_req(g->raw, g->len, &req);
        CHECK_MSG(r == HTTP1_OK, "case %zu: result %d error %d", i, r, req.error);
        if (r != HTTP1_OK)
            continue;
        CHECK_MSG(req.method == g->method, "case %zu", i);
        CHECK_MSG(view_is(req.path, req.path_len, g->path), "case %zu: path %.*s", i,
                  (int)req.path_len, req.path);
        CHECK_MSG(view_is(req.authority, req.authority_len, g->authority), "case %zu: authority %.*s", i,
                  (int)req.authority_len, req.authority);
        CHECK_MSG(req.version_minor == g->minor, "case %zu", i);
        CHECK_MSG(req.body == g->body, "case %zu: body %d", i, req.body);
        CHECK_MSG(req.content_length == g->content_length, "case %zu", i);
        CHECK_MSG(req.flags == g->flags, "case %zu: flags %#x", i, req.flags);
        CHECK_MSG(req.head_len == g->len, "case %zu: head_len %u", i, req.head_len);
        CHECK_MSG(req.error == HTTP1_E_NONE, "case %zu", i);
    }
}

/* Every proper prefix of a valid head is incomplete, never an error, and
 * never read past its end (the buffers are exact). */
static void test_request_prefixes(void)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof good_requests / sizeof good_requests[0]; i++) {
        const struct good_request *g = &good_requests[i];
        for (size_t n = 0; n < g->len; n++) {
            struct http1_request req;
            if (parse_req(g->raw, n, &req) != HTTP1_INCOMPLETE) {
                bad++;
                fprintf(stderr, "prefix %zu of case %zu not incomplete\n", n, i);
            }
        }
    }
    CHECK_INT(bad, 0);
}

static void test_request_details(void)
{
    struct http1_request req;
    static const char raw[] = "GET /p HTTP/1.1\r\nHost:  a \r\nX-Pad: \t a  b \t\r\n"
                              "Content-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n";
    CHECK_INT(parse_req(S(raw), &req), HTTP1_OK);
    CHECK_INT(req.head_len, strstr(raw, "hi") - raw);
    CHECK_INT(req.header_count, 3);
    CHECK(view_is(req.method_text, req.method_len, "GET"));
    CHECK(view_is(req.target, req.target_len, "/p"));
    CHECK(view_is(req.headers[0].name, req.headers[0].name_len, "Host"));
    CHECK(view_is(req.headers[0].value, req.headers[0].value_len, "a"));
    CHECK(view_is(req.headers[1].value, req.headers[1].value_len, "a  b"));
    CHECK(view_is(req.authority, req.authority_len, "a"));
    CHECK(req.headers[0].value >= copy && req.headers[0].value < copy + sizeof raw);
    CHECK(HTTP1_NAME_IS(&req.headers[2], "content-length"));
    CHECK(!HTTP1_NAME_IS(&req.headers[2], "content-type"));
    CHECK(!HTTP1_NAME_IS(&req.headers[2], "content-lengt"));

    /* absolute-form target is kept as written; path points into it */
    CHECK_INT(parse_req(S("GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n"), &req), HTTP1_OK);
    CHECK(view_is(req.target, req.target_len, "http://h/x?y"));
    CHECK(req.path == req.target + 8);

    /* hop-by-hop and forwarding marks */
    static const char hop[] =
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, close, Content-Length, host\r\n"
        "Keep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\n"
        "X-Foo: 1\r\nx-foo: 2\r\nX-Bar: 3\r\nX-Forwarded-For: 1.1.1.1\r\n"
        "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nX-Request-Id: r1\r\n"
        "Content-Length: 1\r\n\r\n";
    CHECK_INT(parse_req(S(hop), &req), HTTP1_OK);
    static const uint32_t want[] = {0, HTTP1_HDR_HOP, HTTP1_HDR_HOP, HTTP1_HDR_HOP, HTTP1_HDR_HOP,
                                    HTTP1_HDR_HOP, HTTP1_HDR_HOP, HTTP1_HDR_HOP, HTTP1_HDR_HOP, 0,
                                    HTTP1_HDR_XFF, HTTP1_HDR_XF_OTHER, HTTP1_HDR_XF_OTHER,
                                    HTTP1_HDR_REQ_ID, 0};
    CHECK_INT(req.header_count, sizeof want / sizeof want[0]);
    for (uint32_t i = 0; i < req.header_count && i < sizeof want / sizeof want[0]; i++)
        CHECK_MSG(req.headers[i].flags == want[i], "header %u (%.*s) flags %#x", i,
                  (int)req.headers[i].name_len, req.headers[i].name, req.headers[i].flags);
    CHECK_INT(req.flags, HTTP1_CONN_CLOSE | HTTP1_HAS_XFF | HTTP1_HAS_REQ_ID);
    CHECK_INT(req.body, HTTP1_BODY_LENGTH);

    /* an X-Request-Id stripped by a Connection option does not count */
    CHECK_INT(parse_req(S("GET / HTTP/1.1\r\nHost: a\r\nConnection: x-request-id\r\n"
                          "X-Request-Id: 1\r\n\r\n"), &req), HTTP1_OK);
    CHECK_INT(req.flags & HTTP1_HAS_REQ_ID, 0);
    CHECK_INT(req.headers[1].flags & HTTP1_HDR_HOP, HTTP1_HDR_HOP);

    /* 64 Connection options are fine; a 65th is refused (each option is
     * matched against every header: the bound keeps that linear) */
    static char many[2048];
    for (int options = 64; options <= 65; options++) {
        int k = snprintf(many, sizeof many, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close");
        for (int i = 0; i < options; i++)
            k += snprintf(many + k, sizeof many - (size_t)k, ", x%d", i);
        k += snprintf(many + k, sizeof many - (size_t)k, "\r\nx3: 1\r\n\r\n");
        enum http1_result r = parse_req(many, (size_t)k, &req);
        CHECK_MSG(options == 64 ? r == HTTP1_OK : r == HTTP1_ERROR && req.error == HTTP1_E_BAD_REQUEST,
                  "%d options: result %d error %d", options, r, req.error);
        if (options == 64 && r == HTTP1_OK)
            CHECK_INT(req.headers[2].flags & HTTP1_HDR_HOP, HTTP1_HDR_HOP);
    }
}

/* Field values are checked 8 bytes at a time: put every byte value at every
 * offset of a long value (so at each place in a word) and check that exactly
 * the controls other than HTAB, and DEL, are refused. */
static void test_value_bytes(void)
{
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
    enum { VALUE = 40 };
    char raw[sizeof head - 1 + VALUE + 4];
    int wrong = 0;
    for (int c = 0; c < 256; c++) {
        bool allowed = c == '\t' || (c >= 0x20 && c != 0x7f);
        for (size_t at = 0; at < VALUE; at++) {
            memcpy(raw, head, sizeof head - 1);
            memset(raw + sizeof head - 1, 'v', VALUE);
            raw[sizeof head - 1 + at] = (char)c;
            memcpy(raw + sizeof head - 1 + VALUE, "\r\n\r\n", 4);
            struct http1_request req;
            enum http1_result r = parse_req(raw, sizeof raw, &req);
            if ((r == HTTP1_OK) != allowed) {
                wrong++;
                fprintf(stderr, "byte %#x at %zu: result %d\n", c, at, r);
            }
            /* OWS at either end of the value is trimmed */
            bool trimmed = (c == ' ' || c == '\t') && (at == 0 || at == VALUE - 1);
            if (r == HTTP1_OK && req.headers[1].value_len != (uint32_t)(VALUE - trimmed))
                wrong++;
        }
    }
    CHECK_INT(wrong, 0);
}

/* ---- refused requests ---- */

struct bad_request {
    const char *raw;
    size_t len;
    enum http1_error error;
};

#define BAD(lit) {S(lit), HTTP1_E_BAD_REQUEST}
#define BAD_AS(lit, e) {S(lit), e}
#define H "GET / HTTP/1.1\r\nHost: a\r\n"
#define P "POST / HTTP/1.1\r\nHost: a\r\n"

static const struct bad_request bad_requests[] = {
    /* CL.TE / TE.CL */
    BAD(P "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"),
    /* TE.TE obfuscations */
    BAD(P "Transfer-Encoding: xchunked\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunkedx\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunked, identity\r\n\r\n"),
    BAD(P "Transfer-Encoding: identity\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunked, chunked\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunked,\r\n\r\n"),
    BAD(P "Transfer-Encoding: ,chunked\r\n\r\n"),
    BAD(P "Transfer-Encoding:\r\n\r\n"),
    BAD(P "Transfer-Encoding: \"chunked\"\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunked;q=1\r\n\r\n"),
    BAD(P "Transfer-Encoding: ch unked\r\n\r\n"),
    BAD(P "Transfer-Encoding : chunked\r\n\r\n"),
    BAD(P "Transfer-Encoding\t: chunked\r\n\r\n"),
    BAD(P " Transfer-Encoding: chunked\r\n\r\n"),
    BAD(P "X: y\r\n Transfer-Encoding: chunked\r\n\r\n"),
    BAD(P "Transfer-Encoding:\r\n chunked\r\n\r\n"),
    BAD(P "X: y\nTransfer-Encoding: chunked\r\n\r\n"),
    BAD(P "Transfer-Encoding\n: chunked\r\n\r\n"),
    BAD(P "Transfer-Encoding: \x0b" "chunked\r\n\r\n"),
    BAD(P "Transfer-Encoding: chunked\x00\r\n\r\n"),
    BAD(P "Transfer_Encoding: chunked\r\n\r\n"),
    BAD(P "Content_Length: 5\r\n\r\n"),
    BAD("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    BAD("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
    BAD_AS(P "Transfer-Encoding: gzip, chunked\r\n\r\n", HTTP1_E_NOT_IMPLEMENTED),
    BAD_AS(P "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP1_E_NOT_IMPLEMENTED),
    BAD(P "Transfer-Encoding: chunked, gzip\r\n\r\n"),
    /* Content-Length */
    BAD(P "Content-Length: +5\r\n\r\n"),
    BAD(P "Content-Length: -5\r\n\r\n"),
    BAD(P "Content-Length: 0x5\r\n\r\n"),
    BAD(P "Content-Length: 5 5\r\n\r\n"),
    BAD(P "Content-Length: 5a\r\n\r\n"),
    BAD(P "Content-Length: 5.0\r\n\r\n"),
    BAD(P "Content-Length: 5, 6\r\n\r\n"),
    BAD(P "Content-Length: 5,\r\n\r\n"),
    BAD(P "Content-Length: ,5\r\n\r\n"),
    BAD(P "Content-Length: 5,,5\r\n\r\n"),
    BAD(P "Content-Length:\r\n\r\n"),
    BAD(P "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"),
    BAD(P "Content-Length: 5\r\nContent-Length: 5, 6\r\n\r\n"),
    BAD(P "Content-Length: 9223372036854775808\r\n\r\n"),
    BAD(P "Content-Length: 99999999999999999999999\r\n\r\n"),
    BAD(P "Content-Length : 5\r\n\r\n"),
    BAD(P "Content-Length: \"5\"\r\n\r\n"),
    /* header syntax */
    BAD(H "\rX: y\r\n\r\n"),
    BAD(H "\r\rX: y\r\n\r\n"),
    BAD(H "X: y\r\n\r\r\n\r\n"),
    BAD(H "X: a\r\n b\r\n\r\n"),
    BAD(H "X: a\r\n\tb\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n"),
    BAD(H "X: a\x00" "b\r\n\r\n"),
    BAD(H "X: a\rb\r\n\r\n"),
    BAD(H "X: a\r\r\n\r\n"),
    BAD(H "X: a\x7f\r\n\r\n"),
    BAD(H "X: a\x01\r\n\r\n"),
    BAD(H "X: a\x1b[0m\r\n\r\n"),
    BAD(H "X: a\n\r\n"),
    BAD("GET / HTTP/1.1\nHost: a\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a\n\n"),
    BAD("GET / HTTP/1.1\r\nHost: a\r\n\n"),
    BAD("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD(H "Bad Name: x\r\n\r\n"),
    BAD(H "Bad(Name): x\r\n\r\n"),
    BAD(H "Bad@Name: x\r\n\r\n"),
    BAD(H "Na\xc3\xafve: x\r\n\r\n"),
    BAD(H ": x\r\n\r\n"),
    BAD(H "NoColon\r\n\r\n"),
    BAD(H "X\x00: y\r\n\r\n"),
    /* Host */
    BAD("GET / HTTP/1.1\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    BAD("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
    BAD("GET http://a/ HTTP/1.1\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"),
    BAD("GET http://a,b/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: []\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"),
    BAD("GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n"),
    /* version */
    BAD_AS("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HTTP1_E_BAD_VERSION),
    BAD_AS("GET / HTTP/1.2\r\nHost: a\r\n\r\n", HTTP1_E_BAD_VERSION),
    BAD_AS("GET / HTTP/0.9\r\nHost: a\r\n\r\n", HTTP1_E_BAD_VERSION),
    BAD("GET / http/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
    BAD("GET / HTTP/1\r\nHost: a\r\n\r\n"),
    BAD("GET / HTTP/11.1\r\nHost: a\r\n\r\n"),
    BAD("GET / HTTP/1.10\r\nHost: a\r\n\r\n"),
    BAD("GET / HTTPS/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /\r\nHost: a\r\n\r\n"),
    BAD("GET / HTTP/1.1\rHost: a\r\n\r\n"),
    /* request line */
    BAD("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("G(ET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GE\x00T / HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /% HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /\"x\" HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /<x> HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /{x} HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /a|b HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /a^b HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /a`b HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET /[x] HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET a HTTP/1.1\r\nHost: a\r\n\r\n"),
    /* target forms vs methods */
    BAD("GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("CONNECT example.com: HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("CONNECT http://example.com:80/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("CONNECT * HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET http:/a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET http:// HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET http://a/#f HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET http://a/%g0 HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    BAD("GET http://a\\b/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    /* limits */
    BAD_AS(H "A: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\nI: 1\r\nJ: 1\r\nK: 1\r\n"
             "L: 1\r\nM: 1\r\nN: 1\r\nO: 1\r\nP: 1\r\nQ: 1\r\nR: 1\r\nS: 1\r\nT: 1\r\nU: 1\r\nV: 1\r\n"
             "W: 1\r\nX: 1\r\nY: 1\r\nZ: 1\r\nAA: 1\r\nAB: 1\r\nAC: 1\r\nAD: 1\r\nAE: 1\r\nAF: 1\r\n\r\n",
           HTTP1_E_TOO_MANY_HEADERS),
};

static void test_bad_requests(void)
{
    for (size_t i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++) {
        const struct bad_request *b = &bad_requests[i];
        struct http1_request req;
        enum http1_result r = parse_req(b->raw, b->len, &req);
        CHECK_MSG(r == HTTP1_ERROR && req.error == b->error, "case %zu (%.*s): result %d error %d", i,
                  (int)(b->len > 48 ? 48 : b->len), b->raw, r, req.error);
    }
}

/* Fed in pieces of `piece` bytes with *scanned carried over, as the proxy
 * does, http1_request_head_ready says "ready" exactly when a parse of the
 * bytes so far would not be incomplete. Returns the disagreements. */
static int ready_disagreements(const char *raw, size_t len, const struct http1_limits *lim, size_t piece)
{
    uint32_t scanned = 0;
    int bad = 0;
    for (size_t k = 0; k < len;) {
        k = k + piece < len ? k + piece : len;
        const char *buf = exact_copy(raw, k);     /* moves, as a compacted buffer does */
        bool ready = http1_request_head_ready(buf, k, lim, &scanned);
        struct http1_request req = {.headers = headers};
        bool want = http1_parse_request(buf, k, lim, &req) != HTTP1_INCOMPLETE;
        if (ready != want) {
            bad++;
            fprintf(stderr, "%zu of %zu bytes in pieces of %zu (%.30s): ready %d, parse %d\n", k, len, piece,
                    raw, ready, want);
        }
        if (ready)
            return bad + (scanned != 0);          /* set back for the next head */
        if (scanned != (k < lim->head_bytes ? k : lim->head_bytes))
            bad++;                                /* the next call resumes after these */
    }
    return bad;
}

static void test_head_ready_resumes(void)
{
    static const size_t pieces[] = {1, 2, 3, 4, 7, 64};
    static const char *extra[] = {
        "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",   /* leading empty lines */
        "\r\n\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789012345678901234567890123456789\r\n\r\n",
    };
    struct http1_limits tight = {.head_bytes = 40, .headers = MAX_HEADERS};
    int bad = 0;
    for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
        for (size_t i = 0; i < sizeof good_requests / sizeof good_requests[0]; i++) {
            bad += ready_disagreements(good_requests[i].raw, good_requests[i].len, &limits, pieces[p]);
            bad += ready_disagreements(good_requests[i].raw, good_requests[i].len, &tight, pieces[p]);
        }
        for (size_t i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++)
            bad += ready_disagreements(bad_requests[i].raw, bad_requests[i].len, &limits, pieces[p]);
        for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
            bad += ready_disagreements(extra[i], strlen(extra[i]), &limits, pieces[p]);
            bad += ready_disagreements(extra[i], strlen(extra[i]), &tight, pieces[p]);
        }
    }
    CHECK_INT(bad, 0);
}

static void test_limits(void)
{
    struct http1_request req;
    static const char raw[] = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n"; /* 42 bytes */
    size_t n = sizeof raw - 1;
    struct http1_limits lim = {.head_bytes = (uint32_t)n, .headers = 2};
    CHECK_INT(parse_req_lim(S(raw), &lim, &req), HTTP1_OK);
    lim.head_bytes = (uint32_t)n - 1;
    CHECK_INT(parse_req_lim(S(raw), &lim, &req), HTTP1_ERROR);
    CHECK_INT(req.error, HTTP1_E_HEAD_TOO_LARGE);
    /* incomplete but already at the limit: the head cannot fit */
    CHECK_INT(parse_req_lim(raw, n - 1, &lim, &req), HTTP1_ERROR);
    CHECK_INT(req.error, HTTP1_E_HEAD_TOO_LARGE);
    CHECK_INT(parse_req_lim(raw, n - 2, &lim, &req), HTTP1_INCOMPLETE);
    /* endless leading CRLFs count against the limit */
    char crlfs[64];
    for (size_t i = 0; i < sizeof crlfs; i += 2)
        memcpy(crlfs + i, "\r\n", 2);
    lim.head_bytes = 32;
    CHECK_INT(parse_req_lim(crlfs, sizeof crlfs, &lim, &req), HTTP1_ERROR);
    CHECK_INT(req.error, HTTP1_E_HEAD_TOO_LARGE);
    CHECK_INT(parse_req_lim(crlfs, 31, &lim, &req), HTTP1_INCOMPLETE);
    /* header count: exactly the limit passes, one more fails */
    lim = (struct http1_limits){.head_bytes = 1000, .headers = 2};
    CHECK_INT(parse_req_lim(S(raw), &lim, &req), HTTP1_OK);
    lim.headers = 1;
    CHECK_INT(parse_req_lim(S(raw), &lim, &req), HTTP1_ERROR);
    CHECK_INT(req.error, HTTP1_E_TOO_MANY_HEADERS);
    lim.headers = 0;
    CHECK_INT(parse_req_lim(S("GET / HTTP/1.0\r\n\r\n"), &lim, &req), HTTP1_OK);
    CHECK_INT(parse_req_lim(S(raw), &lim, &req), HTTP1_ERROR);
    CHECK_INT(req.error, HTTP1_E_TOO_MANY_HEADERS);
    /* a bare LF is refused before the head is complete */
    CHECK_INT(parse_req(S("GET / HTTP/1.1\nHost"), &req), HTTP1_ERROR);
    CHECK_INT(parse_req(S(""), &req), HTTP1_INCOMPLETE);
    CHECK_INT(parse_req(S("\r\n\r\n\r\n"), &req), HTTP1_INCOMPLETE);
}

/* ---- responses ---- */

struct good_response {
    const char *raw;
    size_t len;
    enum http1_method method;
    int status;
    const char *reason;
    enum http1_body body;
    uint64_t content_length;
    uint32_t flags;
};

static const struct good_response good_responses[] = {
    {S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK", HTTP1_BODY_LENGTH, 5, 0},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK", HTTP1_BODY_LENGTH, 5,
     0},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK", HTTP1_BODY_NONE, 0, 0},
    {S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), HTTP1_METHOD_HEAD, 200, "OK", HTTP1_BODY_NONE, 0, 0},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP1_METHOD_HEAD, 200, "OK",
     HTTP1_BODY_NONE, 0, 0},
    {S("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"), HTTP1_METHOD_GET, 204, "No Content",
     HTTP1_BODY_NONE, 0, 0},
    {S("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"), HTTP1_METHOD_GET, 304, "Not Modified",
     HTTP1_BODY_NONE, 0, 0},
    {S("HTTP/1.1 100 Continue\r\n\r\n"), HTTP1_METHOD_POST, 100, "Continue", HTTP1_BODY_NONE, 0, 0},
    {S("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"), HTTP1_METHOD_GET, 103, "Early Hints",
     HTTP1_BODY_NONE, 0, 0},
    {S("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
     HTTP1_METHOD_GET, 101, "Switching Protocols", HTTP1_BODY_NONE, 0, HTTP1_CONN_UPGRADE},
    {S("HTTP/1.1 200 Connection established\r\n\r\n"), HTTP1_METHOD_CONNECT, 200, "Connection established",
     HTTP1_BODY_NONE, 0, 0},
    {S("HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n"), HTTP1_METHOD_CONNECT, 407, "Auth",
     HTTP1_BODY_LENGTH, 3, 0},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK",
     HTTP1_BODY_CHUNKED, 0, 0},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK",
     HTTP1_BODY_CHUNKED, 0, 0},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), HTTP1_METHOD_GET, 200,
     "OK", HTTP1_BODY_CHUNKED, 0, HTTP1_CONN_CLOSE},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK",
     HTTP1_BODY_UNTIL_CLOSE, 0, HTTP1_CONN_CLOSE},
    {S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK",
     HTTP1_BODY_UNTIL_CLOSE, 0, HTTP1_CONN_CLOSE},
    {S("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK", HTTP1_BODY_UNTIL_CLOSE, 0,
     HTTP1_CONN_CLOSE},
    {S("HTTP/1.1 404 \r\nContent-Length: 1\r\n\r\n"), HTTP1_METHOD_GET, 404, "", HTTP1_BODY_LENGTH, 1, 0},
    {S("HTTP/1.1 404\r\nContent-Length: 1\r\n\r\n"), HTTP1_METHOD_GET, 404, "", HTTP1_BODY_LENGTH, 1, 0},
    {S("HTTP/1.1 599 Odd \t Reason\xff\r\nContent-Length: 1\r\n\r\n"), HTTP1_METHOD_GET, 599,
     "Odd \t Reason\xff", HTTP1_BODY_LENGTH, 1, 0},
    {S("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK",
     HTTP1_BODY_LENGTH, 1, HTTP1_CONN_CLOSE},
    {S("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK", HTTP1_BODY_LENGTH, 1,
     HTTP1_CONN_CLOSE},
    {S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"), HTTP1_METHOD_GET, 200,
     "OK", HTTP1_BODY_LENGTH, 1, HTTP1_CONN_KEEP_ALIVE},
    {S("HTTP/1.0 200 OK\r\n\r\n"), HTTP1_METHOD_GET, 200, "OK", HTTP1_BODY_UNTIL_CLOSE, 0, HTTP1_CONN_CLOSE},
};

static void test_good_responses(void)
{
    for (size_t i = 0; i < sizeof good_responses / sizeof good_responses[0]; i++) {
        const struct good_response *g = &good_responses[i];
        struct http1_response res;
        enum http1_result r = parse_res(g->raw, g->len, g->method, &res);
        CHECK_MSG(r == HTTP1_OK, "case %zu: result %d", i, r);
        if (r != HTTP1_OK)
            continue;
        CHECK_MSG(res.status == g->status, "case %zu", i);
        CHECK_MSG(view_is(res.reason, res.reason_len, g->reason), "case %zu", i);
        CHECK_MSG(res.body == g->body, "case %zu: body %d", i, res.body);
        CHECK_MSG(res.content_length == g->content_length, "case %zu", i);
        CHECK_MSG(res.flags == g->flags, "case %zu: flags %#x", i, res.flags);
        CHECK_MSG(res.head_len == g->len, "case %zu", i);
        for (size_t n = 0; n < g->len; n++)
            CHECK_MSG(parse_res(g->raw, n, g->method, &res) == HTTP1_INCOMPLETE, "case %zu prefix %zu",
                      i, n);
    }

    /* TE with CL: the CL is marked for removal (RFC 9112 6.3 item 3) */
    struct http1_response res;
    CHECK_INT(parse_res(S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                          "Set-Cookie: a\r\n\r\n"), HTTP1_METHOD_GET, &res), HTTP1_OK);
    CHECK_INT(res.header_count, 3);
    CHECK_INT(res.headers[0].flags, HTTP1_HDR_HOP);
    CHECK_INT(res.headers[1].flags, HTTP1_HDR_HOP);
    CHECK_INT(res.headers[2].flags, 0);
    CHECK_INT(res.version_minor, 1);
}

#define R "HTTP/1.1 200 OK\r\n"

static const struct {
    const char *raw;
    size_t len;
} bad_responses[] = {
    {S("HTTP/1.1 20 OK\r\n\r\n")},
    {S("HTTP/1.1 2000 OK\r\n\r\n")},
    {S("HTTP/1.1 099 OK\r\n\r\n")},
    {S("HTTP/1.1 abc OK\r\n\r\n")},
    {S("HTTP/2.0 200 OK\r\n\r\n")},
    {S("HTTP/1.2 200 OK\r\n\r\n")},
    {S("http/1.1 200 OK\r\n\r\n")},
    {S("HTTP/1.1  200 OK\r\n\r\n")},
    {S("HTTP/1.1\t200 OK\r\n\r\n")},
    {S("HTTP/1.1 200\tOK\r\n\r\n")},
    {S("HTTP/1.1 200 O\x01K\r\n\r\n")},
    {S("HTTP/1.1 200 OK\n\r\n")},
    {S("\r\nHTTP/1.1 200 OK\r\n\r\n")},
    {S(R "Content-Length: 5\r\nContent-Length: 6\r\n\r\n")},
    {S(R "Content-Length: 5, 6\r\n\r\n")},
    {S(R "Content-Length: abc\r\n\r\n")},
    {S(R "Content-Length: -1\r\n\r\n")},
    {S(R "Transfer-Encoding: chunked, chunked\r\n\r\n")},
    {S(R "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {S(R "Transfer-Encoding:\r\n\r\n")},
    {S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {S(R "X: a\r\n b\r\n\r\n")},
    {S(R "X : a\r\n\r\n")},
    {S(R "X: a\x00\r\n\r\n")},
    {S(R "X: a\n\r\n")},
    {S(R "X: a\r\r\n\r\n")},
};

static void test_bad_responses(void)
{
    /* "HTTP/1.1 200  " (two spaces) is a reason of one space: valid */
    struct http1_response res;
    CHECK_INT(parse_res(S("HTTP/1.1 200  \r\n\r\n"), HTTP1_METHOD_GET, &res), HTTP1_OK);
    CHECK_INT(res.reason_len, 1);
    for (size_t i = 0; i < sizeof bad_responses / sizeof bad_responses[0]; i++) {
        enum http1_result r = parse_res(bad_responses[i].raw, bad_responses[i].len, HTTP1_METHOD_GET, &res);
        CHECK_MSG(r == HTTP1_ERROR && res.error == HTTP1_E_BAD_RESPONSE, "case %zu: result %d", i, r);
    }

    /* the limits keep their own codes (the health checker relies on it) */
    struct http1_limits lim = {.head_bytes = 20, .headers = 1};
    const char *buf = exact_copy(S(R "A: 1\r\n\r\n"));
    res.headers = headers;
    CHECK_INT(http1_parse_response(buf, 25, &lim, HTTP1_METHOD_GET, &res), HTTP1_ERROR);
    CHECK_INT(res.error, HTTP1_E_HEAD_TOO_LARGE);
    CHECK_INT(http1_parse_response(buf, 19, &lim, HTTP1_METHOD_GET, &res), HTTP1_INCOMPLETE);
    lim.head_bytes = 100;
    lim.headers = 0;
    CHECK_INT(http1_parse_response(buf, 25, &lim, HTTP1_METHOD_GET, &res), HTTP1_ERROR);
    CHECK_INT(res.error, HTTP1_E_TOO_MANY_HEADERS);
    lim.headers = 1;
    CHECK_INT(http1_parse_response(buf, 25, &lim, HTTP1_METHOD_GET, &res), HTTP1_OK);
}

/* ---- chunked bodies ---- */

static const struct {
    const char *raw;
    size_t len;
    uint64_t data;
} good_chunked[] = {
    {S("0\r\n\r\n"), 0},
    {S("5\r\nhello\r\n0\r\n\r\n"), 5},
    {S("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), 11},
    {S("A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"), 20},
    {S("1f\r\n0123456789012345678901234567890\r\n0\r\n\r\n"), 31},
    {S("0000000000000001\r\nx\r\n0000000000000000\r\n\r\n"), 1},
    {S("5;a\r\nhello\r\n0;b=c;d=\"e f\\\"\\\\g\"\r\n\r\n"), 5},
    {S("5;name=value;x=\"\"\r\nhello\r\n0\r\n\r\n"), 5},
    {S("3\r\n\r\n\r\r\n0\r\n\r\n"), 3},
    {S("0\r\nExpires: never\r\nX-Sum: a b\tc\r\nEmpty:\r\n\r\n"), 0},
    {S("2\r\n\x00\xff\r\n0\r\nX: caf\xc3\xa9\r\n\r\n"), 2},
};

/* Scans raw split into pieces at the given cut points. Returns the total
 * consumed or -1. */
static ssize_t scan_split(const char *raw, size_t len, size_t cut1, size_t cut2,
                          struct http1_chunked *st)
{
    size_t cuts[3] = {cut1, cut2, len};
    size_t at = 0;
    ssize_t total = 0;
    *st = (struct http1_chunked){0};
    for (int i = 0; i < 3; i++) {
        if (cuts[i] < at)
            continue;
        const char *piece = exact_copy(raw + at, cuts[i] - at);
        ssize_t n = http1_chunked_scan(st, piece, cuts[i] - at);
        if (n < 0)
            return -1;
        if ((size_t)n > cuts[i] - at)
            return -2;
        total += n;
        at = cuts[i];
    }
    return total;
}

static void test_chunked_good(void)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof good_chunked / sizeof good_chunked[0]; i++) {
        const char *raw = good_chunked[i].raw;
        size_t len = good_chunked[i].len;
        struct http1_chunked st;
        /* every pair of split points, so every byte meets every state boundary */
        for (size_t a = 0; a <= len; a++) {
            for (size_t b = a; b <= len; b++) {
                ssize_t n = scan_split(raw, len, a, b, &st);
                if (n != (ssize_t)len || !st.done || st.data_bytes != good_chunked[i].data) {
                    bad++;
                    fprintf(stderr, "chunked case %zu split %zu/%zu: %zd done %d\n", i, a, b, n, st.done);
                }
            }
        }
        /* one byte at a time; done only after the last */
        st = (struct http1_chunked){0};
        for (size_t k = 0; k < len; k++) {
            CHECK_MSG(!st.done, "case %zu byte %zu", i, k);
            CHECK_MSG(http1_chunked_scan(&st, raw + k, 1) == 1, "case %zu byte %zu", i, k);
        }
        CHECK_MSG(st.done && st.data_bytes == good_chunked[i].data, "case %zu", i);
        /* bytes after the end belong to the next message */
        char more[128];
        memcpy(more, raw, len);
        memcpy(more + len, "GET / HTTP/1.1\r\n", 16);
        st = (struct http1_chunked){0};
        CHECK_MSG(http1_chunked_scan(&st, more, len + 16) == (ssize_t)len, "case %zu", i);
        CHECK(st.done);
        CHECK_INT(http1_chunked_scan(&st, more + len, 16), 0);
    }
    CHECK_INT(bad, 0);
}

static const struct {
    const char *raw;
    size_t len;
} bad_chunked[] = {
    {S("\r\n")},
    {S(";a\r\n")},
    {S("-1\r\n")},
    {S("+1\r\n")},
    {S("0x1\r\n")},
    {S(" 1\r\n")},
    {S("1 \r\n")},
    {S("1\t\r\n")},
    {S("1\n")},
    {S("1\rx")},
    {S("1\r\r\n")},
    {S("g\r\n")},
    {S("11111111111111111\r\n")},
    {S("00000000000000000\r\n")},
    {S("8000000000000000\r\n")},
    {S("ffffffffffffffff\r\n")},
    {S("1;\r\n")},
    {S("1;=a\r\n")},
    {S("1;a=\r\n")},
    {S("1;a b\r\n")},
    {S("1 ;a\r\n")},
    {S("1; a\r\n")},
    {S("1;a =b\r\n")},
    {S("1;a= b\r\n")},
    {S("1;a\n")},
    {S("1;a=b\n")},
    {S("1;a=\"x\n")},
    {S("1;a=\"x\r\n")},
    {S("1;a=\"x\x01\"\r\n")},
    {S("1;a=\"x\"y\r\n")},
    {S("1;a=b=c\r\n")},
    {S("1;a@b\r\n")},
    {S("1\r\nab\r\n")},
    {S("1\r\na\n")},
    {S("1\r\na\r\r")},
    {S("1\r\na\r\n\r\n")},
    {S("0\r\n\n")},
    {S("0\r\n\r\r")},
    {S("0\r\n\r\x00")},
    {S("0\r\nX: a\r\n b\r\n\r\n")},
    {S("0\r\n X: a\r\n\r\n")},
    {S("0\r\nX : a\r\n\r\n")},
    {S("0\r\nX a\r\n\r\n")},
    {S("0\r\n: a\r\n\r\n")},
    {S("0\r\nX: a\x00\r\n\r\n")},
    {S("0\r\nX: a\x7f\r\n\r\n")},
    {S("0\r\nX: a\n\r\n")},
    {S("0\r\nX: a\rb\r\n\r\n")},
};

static void test_chunked_bad(void)
{
    for (size_t i = 0; i < sizeof bad_chunked / sizeof bad_chunked[0]; i++) {
        struct http1_chunked st;
        CHECK_MSG(scan_split(bad_chunked[i].raw, bad_chunked[i].len, 0, 0, &st) == -1, "case %zu", i);
        /* byte by byte fails too, and stays failed */
        st = (struct http1_chunked){0};
        ssize_t r = 0;
        for (size_t k = 0; k < bad_chunked[i].len && r >= 0; k++)
            r = http1_chunked_scan(&st, bad_chunked[i].raw + k, 1);
        CHECK_MSG(r == -1, "case %zu byte by byte", i);
        CHECK_MSG(http1_chunked_scan(&st, "0\r\n\r\n", 5) == -1, "case %zu sticky", i);
    }

    /* an endless extension or trailer section is bounded */
    static char big[40000];
    memset(big, 'a', sizeof big);
    memcpy(big, "1;", 2);
    struct http1_chunked st = {0};
    CHECK_INT(http1_chunked_scan(&st, big, sizeof big), -1);
    memcpy(big, "0\r\n", 3);
    for (size_t i = 3; i + 6 <= sizeof big; i += 6)
        memcpy(big + i, "X: y\r\n", 6);
    st = (struct http1_chunked){0};
    CHECK_INT(http1_chunked_scan(&st, big, sizeof big), -1);
}

static void test_chunked_large(void)
{
    /* a 1 MiB chunk given whole, then in two parts: data is skipped at once */
    size_t size = 1u << 20, len = 8 + size + 7;
    char *body = malloc(len);
    memcpy(body, "100000\r\n", 8);
    memset(body + 8, 'x', size);
    memcpy(body + 8 + size, "\r\n0\r\n\r\n", 7);
    struct http1_chunked st = {0};
    CHECK_INT(http1_chunked_scan(&st, body, len), len);
    CHECK(st.done);
    CHECK_INT(st.data_bytes, size);
    st = (struct http1_chunked){0};
    CHECK_INT(http1_chunked_scan(&st, body, 100), 100);
    CHECK_INT(st.remaining, size - 92);
    CHECK_INT(st.data_bytes, 92);
    CHECK_INT(http1_chunked_scan(&st, body + 100, len - 100), len - 100);
    CHECK(st.done);
    free(body);

    /* the largest allowed size is accepted on its line */
    st = (struct http1_chunked){0};
    CHECK_INT(http1_chunked_scan(&st, "7fffffffffffffff\r\nab", 20), 20);
    CHECK_INT(st.remaining, INT64_MAX - 2);
}

/* ---- robustness: mutated inputs never crash or read out of bounds ---- */

static uint32_t rng_state = 12345;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void test_mutations(void)
{
    static const char alphabet[] = "\r\n :\t,;\"=\\\x00\x7f\x80" "0aZ/?%#-";
    int bad = 0, accepted = 0, refused = 0;
    for (int iter = 0; iter < 20000; iter++) {
        const struct good_request *g = &good_requests[rng() % (sizeof good_requests / sizeof good_requests[0])];
        char buf[256];
        size_t len = g->len;
        memcpy(buf, g->raw, len);
        for (int m = 1 + (int)(rng() % 3); m > 0; m--) {
            size_t at = rng() % len;
            char c = alphabet[rng() % (sizeof alphabet - 1)];
            switch (rng() % 3) {
            case 0: buf[at] = c; break;
            case 1:
                if (len < sizeof buf) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = c;
                    len++;
                }
                break;
            default:
                if (len > 1) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
            }
        }
        struct http1_request req;
        enum http1_result r = parse_req(buf, len, &req);
        accepted += r == HTTP1_OK;
        refused += r == HTTP1_ERROR;
        if (r == HTTP1_OK) {
            /* whatever passes holds only grammar bytes in its head */
            for (uint32_t i = 0; i < req.head_len; i++) {
                unsigned char c = (unsigned char)copy[i];
                if (c < 0x20 && c != '\t' && c != '\r' && c != '\n')
                    bad++;
                if (c == 0x7f)
                    bad++;
            }
            if (req.head_len > len || (req.body == HTTP1_BODY_CHUNKED && req.content_length))
                bad++;
        } else if (r == HTTP1_ERROR && req.error == HTTP1_E_NONE) {
            bad++;
        }
        struct http1_chunked st = {0};
        (void)http1_chunked_scan(&st, copy, len);
    }
    CHECK_INT(bad, 0);
    /* the mutations reach both sides of the parser's judgement */
    CHECK_MSG(accepted > 1000 && refused > 1000, "%d accepted, %d refused", accepted, refused);
}

static void test_misc(void)
{
    CHECK_STR(http1_reason(200), "OK");
    CHECK_STR(http1_reason(101), "Switching Protocols");
    CHECK_STR(http1_reason(206), "Partial Content");
    CHECK_STR(http1_reason(308), "Permanent Redirect");
    CHECK_STR(http1_reason(413), "Content Too Large");
    CHECK_STR(http1_reason(431), "Request Header Fields Too Large");
    CHECK_STR(http1_reason(502), "Bad Gateway");
    CHECK_STR(http1_reason(505), "HTTP Version Not Supported");
    CHECK_STR(http1_reason(299), "Unknown");
    CHECK_STR(http1_reason(-1), "Unknown");
    struct http1_header h = {.name = "X-Forwarded-FOR", .name_len = 15};
    CHECK(HTTP1_NAME_IS(&h, "x-forwarded-for"));
    CHECK(!HTTP1_NAME_IS(&h, "x-forwarded-fo"));
    CHECK(!HTTP1_NAME_IS(&h, "x-forwarded-fob"));
}


/* Forwards raw through http1_chunked_forward the way the proxy does: bytes
 * arrive `piece` at a time into a buffer of `cap` bytes, the body bytes
 * returned leave at once, held-back bytes stay. Returns the bytes that
 * left, or NULL on a framing error. */
static const char *forward_in_pieces(const char *raw, size_t piece, size_t cap, size_t *out_len)
{
    static char out[8192];
    char buf[8192];
    struct http1_chunked st = {0};
    size_t in = 0, have = 0, sent = 0, total = strlen(raw);
    while (!st.done) {
        size_t take = total - in < piece ? total - in : piece;
        if (take > cap - have)
            take = cap - have;
        if (take == 0)
            return NULL;   /* stuck: nothing fits and nothing left */
        memcpy(buf + have, raw + in, take);
        in += take;
        have += take;
        size_t len = have;
        ssize_t n = http1_chunked_forward(&st, buf, &len, cap - 1);
        if (n < 0)
            return NULL;
        memcpy(out + sent, buf, (size_t)n);
        sent += (size_t)n;
        memmove(buf, buf + n, len - (size_t)n);
        have = len - (size_t)n;
        if (st.held != have && !st.done)
            return NULL;   /* held bytes are exactly what stays */
    }
    *out_len = sent;
    return out;
}

static void test_chunked_trailers_filtered(void)
{
    static const struct {
        const char *raw, *forwarded;
    } cases[] = {
        {"0\r\n\r\n", "0\r\n\r\n"},
        {"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n", "3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n"},
        {"3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n", "3\r\nabc\r\n0\r\n\r\n"},
        {"0\r\nTransfer-Encoding: chunked\r\nHOST: evil\r\nX-A: 1\r\ncontent-length:0\r\n\r\n",
         "0\r\nX-A: 1\r\n\r\n"},
        {"0\r\nX-A: 1\r\nAuthorization: Basic x\r\nConnection: close\r\nTrailer: X-A\r\nX-B: 2\r\n\r\n",
         "0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"},
        {"1;ext=1\r\nz\r\n0\r\nSet-Cookie: a=b\r\nServer-Timing: db;dur=53\r\n\r\n",
         "1;ext=1\r\nz\r\n0\r\nServer-Timing: db;dur=53\r\n\r\n"},
        /* a name that only starts like a forbidden one stays */
        {"0\r\nHost-Name: x\r\nContent-Lengths: 1\r\n\r\n", "0\r\nHost-Name: x\r\nContent-Lengths: 1\r\n\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t piece = 1; piece <= strlen(cases[i].raw); piece++) {
            size_t len = 0;
            const char *out = forward_in_pieces(cases[i].raw, piece, 64, &len);
            CHECK_MSG(out && len == strlen(cases[i].forwarded) && memcmp(out, cases[i].forwarded, len) == 0,
                      "case %zu in pieces of %zu: \"%.*s\"", i, piece, out ? (int)len : 6,
                      out ? out : "(error)");
        }
    }
    /* bytes after the body (a pipelined message) stay after it, unscanned */
    struct http1_chunked st = {0};
    char buf[] = "0\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n";
    size_t len = strlen(buf);
    CHECK_INT(http1_chunked_forward(&st, buf, &len, 63), 5);
    CHECK(st.done);
    CHECK_INT(len, strlen("0\r\n\r\nGET / HTTP/1.1\r\n"));
    CHECK(memcmp(buf, "0\r\n\r\nGET / HTTP/1.1\r\n", len) == 0);
    /* bad trailer lines are still refused, whole or held */
    size_t n;
    CHECK(forward_in_pieces("0\r\nX-A: 1\nX-B: 2\r\n\r\n", 1, 64, &n) == NULL);
    CHECK(forward_in_pieces("0\r\nX A: 1\r\n\r\n", 3, 64, &n) == NULL);
    CHECK(forward_in_pieces("0\r\nContent-Length: 1\x01\r\n\r\n", 100, 64, &n) == NULL);
    /* a trailer line still arriving is judged as it comes: refused at its
     * first bad byte, as http1_chunked_scan refuses it */
    struct http1_chunked held = {0};
    char partial[] = "0\r\nX-A: 1\r\n X";
    size_t plen = strlen(partial);
    CHECK_INT(http1_chunked_forward(&held, partial, &plen, 63), -1);
    held = (struct http1_chunked){0};
    char fine[] = "0\r\nX-Ok: va";
    plen = strlen(fine);
    CHECK_INT(http1_chunked_forward(&held, fine, &plen, 63), 3);
    CHECK_INT(held.held, strlen(fine) - 3);
    /* a trailer line that cannot fit in the caller's buffer is an error,
     * not a stall */
    char longline[200] = "0\r\nX-Long: ";
    memset(longline + strlen(longline), 'a', 120);
    strcpy(longline + strlen(longline), "\r\n\r\n");
    CHECK(forward_in_pieces(longline, 7, 64, &n) == NULL);
    CHECK(forward_in_pieces(longline, 7, 256, &n) != NULL);
}

void unit_test_http1(void)
{
    test_good_requests();
    test_request_prefixes();
    test_request_details();
    test_value_bytes();
    test_bad_requests();
    test_limits();
    test_head_ready_resumes();
    test_good_responses();
    test_bad_responses();
    test_chunked_good();
    test_chunked_bad();
    test_chunked_large();
    test_chunked_trailers_filtered();
    test_mutations();
    test_misc();
    free(copy);
    copy = NULL;
}
