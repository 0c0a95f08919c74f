/* test_h2head.c - HTTP/2 field lists to HTTP/1.1 heads and back (h2head.c)
 * alone: the request head an application reads, every RFC 9113 reason to
 * call a request malformed, the response fields a client gets, trailers,
 * and a chunked body undone for DATA frames. */
#include <string.h>

#include "h2head.h"
#include "http1.h"
#include "unit.h"

#define MAX_FIELDS 32

/* Fields from "name: value" strings; pseudo-headers first as written. */
static uint32_t fields_of(struct h2head_field *f, const char *const *spec)
{
    uint32_t n = 0;
    for (; spec[n]; n++) {
        const char *sep = strstr(spec[n] + 1, ": ");
        f[n] = (struct h2head_field){.name = spec[n], .name_len = (uint32_t)(sep - spec[n]),
                                     .value = sep + 2, .value_len = (uint32_t)strlen(sep + 2)};
    }
    return n;
}

static enum h2head_result translate(const char *const *spec, bool has_body, char *text, size_t cap,
                                    struct h2head_request *info)
{
    static char storage[4096];
    struct h2head_field f[MAX_FIELDS];
    uint32_t n = fields_of(f, spec);
    struct buf out = {.data = storage, .cap = (uint32_t)(cap < sizeof(storage) ? cap : sizeof(storage))};
    enum h2head_result r = h2head_request(&out, f, n, has_body, info);
    memcpy(text, buf_start(&out), buf_len(&out));
    text[buf_len(&out)] = '\0';
    return r;
}

#define GET_BASE ":method: GET", ":scheme: https", ":authority: example.com", ":path: /a?b=1"

static void check_head(const char *const *spec, bool has_body, const char *want)
{
    char text[4096];
    struct h2head_request info;
    enum h2head_result r = translate(spec, has_body, text, sizeof(text), &info);
    CHECK_MSG(r == H2HEAD_OK && strcmp(text, want) == 0, "\n got (%d): %s\nwant: %s", r, text, want);
}

static void check_malformed(const char *const *spec, bool has_body, const char *why)
{
    char text[4096];
    struct h2head_request info;
    CHECK_MSG(translate(spec, has_body, text, sizeof(text), &info) == H2HEAD_MALFORMED, "accepted: %s", why);
}

static void test_request_heads(void)
{
    check_head((const char *[]){GET_BASE, "user-agent: t", "accept: */*", NULL}, false,
               "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\nuser-agent: t\r\naccept: */*\r\n\r\n");
    /* Host alone stands for :authority; both agree, one Host goes on */
    check_head((const char *[]){":method: GET", ":scheme: http", ":path: /", "host: h.test", NULL}, false,
               "GET / HTTP/1.1\r\nhost: h.test\r\n\r\n");
    check_head((const char *[]){GET_BASE, "host: EXAMPLE.com", NULL}, false,
               "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\n\r\n");
    /* cookie crumbs back on one line (RFC 9113 section 8.2.3) */
    check_head((const char *[]){GET_BASE, "cookie: a=1", "x-y: z", "cookie: b=2", NULL}, false,
               "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\nx-y: z\r\ncookie: a=1; b=2\r\n\r\n");
    /* a body without a length goes chunked; with one, as it is */
    check_head((const char *[]){":method: POST", ":scheme: http", ":authority: a", ":path: /u", NULL}, true,
               "POST /u HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n");
    check_head((const char *[]){":method: POST", ":scheme: http", ":authority: a", ":path: /u", "content-length: 5",
                                NULL},
               true, "POST /u HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n");
    /* te: trailers and expect are this hop's only */
    check_head((const char *[]){GET_BASE, "te: trailers", "expect: 100-continue", NULL}, false,
               "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\n\r\n");
    check_head((const char *[]){":method: OPTIONS", ":scheme: http", ":authority: a", ":path: *", NULL}, false,
               "OPTIONS * HTTP/1.1\r\nhost: a\r\n\r\n");
    check_head((const char *[]){":method: CONNECT", ":authority: a:443", NULL}, false,
               "CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n");
}

static void test_request_facts(void)
{
    char text[4096];
    struct h2head_request info;
    CHECK(translate((const char *[]){":method: HEAD", ":scheme: http", ":authority: a", ":path: /", NULL}, false, text,
                    sizeof(text), &info) == H2HEAD_OK);
    CHECK(info.head_method && !info.chunked && !info.has_length);
    CHECK(translate((const char *[]){":method: PUT", ":scheme: http", ":authority: a", ":path: /",
                                     "content-length: 12", "content-length: 12", NULL},
                    true, text, sizeof(text), &info) == H2HEAD_OK);
    CHECK(info.has_length && info.content_length == 12 && !info.chunked);
    /* what does not fit the buffer is for a 431, not a reset */
    CHECK(translate((const char *[]){GET_BASE, NULL}, false, text, 20, &info) == H2HEAD_TOO_LARGE);
}

static void test_malformed_requests(void)
{
    check_malformed((const char *[]){GET_BASE, "connection: keep-alive", NULL}, false, "connection");
    check_malformed((const char *[]){GET_BASE, "keep-alive: 5", NULL}, false, "keep-alive");
    check_malformed((const char *[]){GET_BASE, "proxy-connection: x", NULL}, false, "proxy-connection");
    check_malformed((const char *[]){GET_BASE, "transfer-encoding: chunked", NULL}, false, "transfer-encoding");
    check_malformed((const char *[]){GET_BASE, "upgrade: h2c", NULL}, false, "upgrade");
    check_malformed((const char *[]){GET_BASE, "te: gzip", NULL}, false, "te other than trailers");
    check_malformed((const char *[]){GET_BASE, "X-Upper: 1", NULL}, false, "upper-case name");
    check_malformed((const char *[]){GET_BASE, "x y: 1", NULL}, false, "space in a name");
    check_malformed((const char *[]){GET_BASE, "x-v: a\r\nx-smuggled: 1", NULL}, false, "CRLF in a value");
    check_malformed((const char *[]){GET_BASE, "x-v: a\nb", NULL}, false, "LF in a value");
    check_malformed((const char *[]){GET_BASE, "x-v:  padded", NULL}, false, "leading space in a value");
    check_malformed((const char *[]){":method: GET", ":scheme: http", ":path: /", NULL}, false, "no authority");
    check_malformed((const char *[]){":method: GET", ":authority: a", ":path: /", NULL}, false, "no scheme");
    check_malformed((const char *[]){":method: GET", ":scheme: http", ":authority: a", NULL}, false, "no path");
    check_malformed((const char *[]){":scheme: http", ":authority: a", ":path: /", NULL}, false, "no method");
    check_malformed((const char *[]){GET_BASE, ":path: /again", NULL}, false, "pseudo-header after fields... twice");
    check_malformed((const char *[]){":method: GET", ":scheme: http", ":authority: a", "x: 1", ":path: /", NULL},
                    false, "pseudo-header after a regular field");
    check_malformed((const char *[]){GET_BASE, ":protocol: websocket", NULL}, false, "unknown pseudo-header");
    check_malformed((const char *[]){":method: GET", ":scheme: http", ":authority: a", ":path: a/b", NULL}, false,
                    "path not absolute");
    check_malformed((const char *[]){":method: GET", ":scheme: http", ":authority: a", ":path: /a b", NULL}, false,
                    "space in the path");
    check_malformed((const char *[]){":method: G T", ":scheme: http", ":authority: a", ":path: /", NULL}, false,
                    "method not a token");
    check_malformed((const char *[]){GET_BASE, "host: other.example", NULL}, false, "host disagrees with :authority");
    check_malformed((const char *[]){GET_BASE, "content-length: 5", "content-length: 6", NULL}, true,
                    "two lengths");
    check_malformed((const char *[]){GET_BASE, "content-length: 5x", NULL}, true, "length not digits");
    check_malformed((const char *[]){GET_BASE, "content-length: 5", NULL}, false, "length without DATA");
    check_malformed((const char *[]){":method: CONNECT", ":authority: a:1", ":path: /", NULL}, false,
                    "CONNECT with a path");
}

/* What HTTP/2's own checks let through but RFC 9112 does not: each would
 * have been written into a head the application's parser refuses or reads
 * otherwise, so each is malformed here already. */
static void test_malformed_for_http1(void)
{
#define AUTH_PATH(auth, path) ":method: GET", ":scheme: http", ":authority: " auth, ":path: " path
    check_malformed((const char *[]){AUTH_PATH("a", "/x#frag"), NULL}, false, "fragment in the path");
    check_malformed((const char *[]){AUTH_PATH("a", "/x%zz"), NULL}, false, "bad pct-encoding in the path");
    check_malformed((const char *[]){AUTH_PATH("a", "/x\"\\"), NULL}, false, "quote and backslash in the path");
    check_malformed((const char *[]){AUTH_PATH("user@a", "/"), NULL}, false, "userinfo in :authority");
    check_malformed((const char *[]){AUTH_PATH("a,b", "/"), NULL}, false, "a list in :authority");
    check_malformed((const char *[]){AUTH_PATH("a b", "/"), NULL}, false, "space in :authority");
    check_malformed((const char *[]){AUTH_PATH("a:99999", "/"), NULL}, false, "port over 65535");
    check_malformed((const char *[]){":method: GET", ":scheme: http", ":path: /", "host: u@a", NULL}, false,
                    "userinfo in host");
    check_malformed((const char *[]){":method: GET", ":scheme: javascript", ":authority: a", ":path: /", NULL},
                    false, "a scheme sluice does not serve");
    check_malformed((const char *[]){":method: CONNECT", ":authority: a", NULL}, false, "CONNECT without a port");
    check_malformed((const char *[]){AUTH_PATH("a", "/"), "content-length: 9223372036854775808", NULL}, true,
                    "length of 2^63");
    check_malformed((const char *[]){AUTH_PATH("a", "/"), "content_length: 5", NULL}, true,
                    "content_length, which gateways read as content-length");
#undef AUTH_PATH
    check_head((const char *[]){":method: GET", ":scheme: https", ":authority: [::1]:8443", ":path: /%41?q", NULL},
               false, "GET /%41?q HTTP/1.1\r\nhost: [::1]:8443\r\n\r\n");
    check_head((const char *[]){":method: PUT", ":scheme: http", ":authority: a", ":path: /",
                                "content-length: 9223372036854775807", NULL},
               true, "PUT / HTTP/1.1\r\nhost: a\r\ncontent-length: 9223372036854775807\r\n\r\n");
}

static void test_response_fields(void)
{
    static struct http1_header hs[16];
    static const struct http1_limits lim = {.head_bytes = 4096, .headers = 16};
    char raw[] = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                 "Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nX-Trace: ABC\r\n\r\n";
    struct http1_response res = {.headers = hs};
    CHECK(http1_parse_response(raw, strlen(raw), &lim, HTTP1_METHOD_GET, &res) == HTTP1_OK);
    nghttp2_nv nv[8];
    char status[4];
    int n = h2head_response(&res, nv, 8, status);
    CHECK_INT(n, 3);
    if (n != 3)
        return;
    CHECK(nv[0].namelen == 7 && memcmp(nv[0].name, ":status", 7) == 0 && memcmp(nv[0].value, "404", 3) == 0);
    CHECK(nv[1].namelen == 12 && memcmp(nv[1].name, "content-type", 12) == 0);
    CHECK(nv[2].namelen == 7 && memcmp(nv[2].name, "x-trace", 7) == 0 && memcmp(nv[2].value, "ABC", 3) == 0);
    CHECK_INT(h2head_response(&res, nv, 2, status), -1);
}

static void test_trailers(void)
{
    char lines[] = "Grpc-Status: 0\r\nX-Sum:  abc \r\n";
    nghttp2_nv nv[4];
    int n = h2head_trailers(lines, strlen(lines), nv, 4);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK(nv[0].namelen == 11 && memcmp(nv[0].name, "grpc-status", 11) == 0 && nv[0].valuelen == 1);
        CHECK(nv[1].namelen == 5 && memcmp(nv[1].name, "x-sum", 5) == 0 && nv[1].valuelen == 3 &&
              memcmp(nv[1].value, "abc", 3) == 0);
    }
    char bad[] = "no colon here\r\n";
    CHECK_INT(h2head_trailers(bad, strlen(bad), nv, 4), -1);
}

/* Decodes body in pieces of step bytes into room-sized outputs. */
static void check_dechunk(const char *body, size_t step, size_t room, const char *want_data,
                          const char *want_trailers)
{
    char out[256], tstore[256];
    size_t got = 0, at = 0, len = strlen(body);
    struct buf trailers = {.data = tstore, .cap = sizeof(tstore)};
    struct h2head_dechunk d = {0};
    for (int guard = 0; at < len && !d.done && guard < 1000; guard++) {
        size_t piece = len - at < step ? len - at : step, produced;
        size_t used = h2head_dechunk(&d, body + at, piece, out + got, room, &produced, &trailers);
        at += used;
        got += produced;
    }
    out[got] = '\0';
    tstore[trailers.tail] = '\0';
    CHECK_MSG(d.done && strcmp(out, want_data) == 0 && strcmp(tstore, want_trailers) == 0,
              "step %zu room %zu: data \"%s\" trailers \"%s\" done %d", step, room, out, tstore, d.done);
}

static void test_dechunk(void)
{
    const char *body = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    for (size_t step = 1; step <= 40; step += 3)
        for (size_t room = 1; room <= 13; room += 4)
            check_dechunk(body, step, room, "hello, world", "");
    check_dechunk("3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n", 4, 64, "abc", "X-A: 1\r\nX-B: 2\r\n");
    check_dechunk("A\r\n0123456789\r\n0\r\n\r\n", 64, 64, "0123456789", "");
    /* decoding in place: dst is the input itself */
    char inplace[] = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    struct h2head_dechunk d = {0};
    size_t used = 0, made = 0, len = strlen(inplace);
    for (int guard = 0; used < len && !d.done && guard < 10; guard++) {
        size_t produced;
        used += h2head_dechunk(&d, inplace + used, len - used, inplace + made, sizeof(inplace) - made, &produced, NULL);
        made += produced;
    }
    CHECK(d.done && used == len && made == 5 && memcmp(inplace, "abcde", 5) == 0);
}

/* A small deterministic generator (xorshift), so a failure repeats. */
static uint32_t next_random(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* A piece of a field: mostly harmless bytes, some of every kind a request
 * could smuggle through (CR, LF, NUL, space, colon, upper case, DEL,
 * obs-text). */
static uint32_t random_piece(uint32_t *rng, char *out, uint32_t max)
{
    static const char alphabet[] = "abcxyz019-_./?=;:, \t\r\n\0ABZ*\x7f\x80\xff";
    static const char *const words[] = {":method", ":path", ":scheme", ":authority", "host", "cookie",
                                        "content-length", "te", "trailers", "GET", "/", "1", "connection"};
    if (next_random(rng) % 3 == 0) {
        const char *w = words[next_random(rng) % (sizeof(words) / sizeof(words[0]))];
        uint32_t n = (uint32_t)strlen(w) < max ? (uint32_t)strlen(w) : max;
        memcpy(out, w, n);
        return n;
    }
    uint32_t n = next_random(rng) % max;
    for (uint32_t i = 0; i < n; i++)
        out[i] = alphabet[next_random(rng) % (sizeof(alphabet) - 1)];
    return n;
}

/* Whatever field list a client sends, a head h2head_request writes is one
 * that http1.c parses whole, with the method, target and Host it was
 * given: what sluice forwards stays inside RFC 9112's grammar. */
static void test_random_lists_give_parseable_heads(void)
{
    static char text[64][24], storage[4096];
    static struct http1_header hs[64];
    static const struct http1_limits lim = {.head_bytes = 4096, .headers = 64};
    uint32_t rng = 0x9e3779b9, accepted = 0, bad = 0;
    for (int round = 0; round < 20000; round++) {
        struct h2head_field f[16];
        uint32_t n = 0;
        /* a valid start often, so that the checks past the pseudo-headers are reached */
        if (next_random(&rng) % 2)
            n = fields_of(f, (const char *[]){GET_BASE, NULL});
        for (uint32_t k = next_random(&rng) % 6; k > 0 && n < 16; k--, n++) {
            char *name = text[2 * n], *value = text[2 * n + 1];
            f[n] = (struct h2head_field){.name = name, .name_len = random_piece(&rng, name, 24),
                                         .value = value, .value_len = random_piece(&rng, value, 24)};
        }
        struct buf out = {.data = storage, .cap = sizeof(storage)};
        struct h2head_request info;
        if (h2head_request(&out, f, n, next_random(&rng) % 2, &info) != H2HEAD_OK)
            continue;
        accepted++;
        struct http1_request req = {.headers = hs};
        if (http1_parse_request(buf_start(&out), buf_len(&out), &lim, &req) != HTTP1_OK ||
            req.head_len != buf_len(&out) || req.authority_len == 0) {
            if (bad++ < 3)
                fprintf(stderr, "FAIL unparseable head: %.*s\n", (int)buf_len(&out), buf_start(&out));
        }
    }
    CHECK_INT(bad, 0);
    CHECK_MSG(accepted > 1000, "only %u lists accepted: the generator reaches too little", accepted);
}

void unit_test_h2head(void)
{
    test_request_heads();
    test_request_facts();
    test_malformed_requests();
    test_malformed_for_http1();
    test_response_fields();
    test_trailers();
    test_dechunk();
    test_random_lists_give_parseable_heads();
}
