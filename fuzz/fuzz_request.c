/* fuzz_request.c - request heads and the bodies that follow them.
 *
 * The input is what a client sends on one connection: one or more
 * pipelined requests. Each head is judged three ways and they must agree:
 * http1_parse_request on everything that arrived, and
 * http1_request_head_ready (the proxy's incremental end-of-head search)
 * fed a byte at a time and in random pieces. ready must turn true at the
 * first length where the parser has something to say and not before, and
 * the parser's verdict at that length must be its verdict on the whole
 * input. A parsed head is checked field by field (views inside the input,
 * one request line, framing that cannot be read two ways), and its body is
 * scanned as the proxy would before the next request is taken.
 *
 * Every head is parsed under sluice's default limits and under tight ones
 * (so that the 431 paths are reached by short inputs); the tight limits
 * may refuse a head for its size, and must change nothing else.
 */
#include "fuzz.h"

#include <string.h>

#define PIPELINE_MAX 8          /* requests taken from one input */
#define HEADERS_MAX 100

/* sluice's defaults ([server.limits]), and a tight pair for the limit paths */
static const struct http1_limits default_limits = {.head_bytes = 16384, .headers = HEADERS_MAX};
static const struct http1_limits tight_limits = {.head_bytes = 256, .headers = 8};

static struct http1_header whole_headers[HEADERS_MAX], prefix_headers[HEADERS_MAX];

static enum http1_result parse(const char *buf, size_t len, const struct http1_limits *lim,
                               struct http1_request *req, struct http1_header *hs)
{
    req->headers = hs;
    enum http1_result rc = http1_parse_request(buf, len, lim, req);
    FUZZ_CHECK(rc == HTTP1_OK || rc == HTTP1_INCOMPLETE || rc == HTTP1_ERROR);
    FUZZ_CHECK((rc == HTTP1_ERROR) == (req->error != HTTP1_E_NONE));
    FUZZ_CHECK(req->error != HTTP1_E_BAD_RESPONSE);
    FUZZ_CHECK(rc != HTTP1_INCOMPLETE || len < lim->head_bytes);
    FUZZ_CHECK(req->error != HTTP1_E_HEAD_TOO_LARGE || len >= lim->head_bytes);
    return rc;
}

/* Two verdicts on the same head: same result, same framing. */
static void check_same(enum http1_result ra, const struct http1_request *a, enum http1_result rb,
                       const struct http1_request *b)
{
    FUZZ_CHECK(ra == rb);
    FUZZ_CHECK(a->error == b->error);
    if (ra != HTTP1_OK)
        return;
    FUZZ_CHECK(a->head_len == b->head_len);
    FUZZ_CHECK(a->method == b->method && a->version_minor == b->version_minor);
    FUZZ_CHECK(a->body == b->body && a->content_length == b->content_length);
    FUZZ_CHECK(a->flags == b->flags && a->header_count == b->header_count);
}

/* The incremental search against the parser, over the first len bytes.
 * Returns the length at which the head was ready, 0 if never. */
static size_t check_head_ready(const char *buf, size_t len, const struct http1_limits *lim,
                               struct fuzz_rng *rng)
{
    uint32_t scanned = 0;
    size_t ready_at = 0;
    for (size_t n = 1; n <= len && !ready_at; n++) {
        if (http1_request_head_ready(buf, n, lim, &scanned)) {
            ready_at = n;
            FUZZ_CHECK(scanned == 0);
        } else {
            FUZZ_CHECK(scanned <= n);
        }
    }
    /* the same bytes in random pieces: ready exactly once ready_at is reached */
    scanned = 0;
    for (size_t n = 0; n < len;) {
        n += fuzz_rng_piece(rng, len - n);
        bool ready = http1_request_head_ready(buf, n, lim, &scanned);
        FUZZ_CHECK(ready == (ready_at && n >= ready_at));
        if (ready)
            break;
    }
    return ready_at;
}

/* Whether the head of head_len bytes at buf holds lit at p. */
static bool holds_at(const char *buf, size_t head_len, const char *p, const char *lit)
{
    size_t n = strlen(lit);
    return head_len - (size_t)(p - buf) >= n && memcmp(p, lit, n) == 0;
}

/* Content-Length, restated: every element of every line is one and the
 * same 1*DIGIT value below 2^63. Returns it. */
static uint64_t stated_length(const struct http1_header *hs, uint32_t count)
{
    uint64_t value = 0;
    bool seen = false;
    for (uint32_t i = 0; i < count; i++) {
        if (fuzz_count_headers(&hs[i], 1, "content-length") == 0)
            continue;
        const char *p = hs[i].value, *end = p + hs[i].value_len;
        for (;;) {
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            uint64_t v = 0;
            const char *digits = p;
            for (; p < end && *p >= '0' && *p <= '9'; p++) {
                FUZZ_CHECK(v <= (UINT64_C(0x7fffffffffffffff) - (uint64_t)(*p - '0')) / 10);
                v = v * 10 + (uint64_t)(*p - '0');
            }
            FUZZ_CHECK(p > digits);
            FUZZ_CHECK(!seen || v == value);
            value = v;
            seen = true;
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            if (p == end)
                break;
            FUZZ_CHECK(*p == ',');
            p++;
        }
    }
    FUZZ_CHECK(seen);
    return value;
}

static const char *const method_names[] = {
    [HTTP1_METHOD_GET] = "GET",         [HTTP1_METHOD_HEAD] = "HEAD",
    [HTTP1_METHOD_POST] = "POST",       [HTTP1_METHOD_PUT] = "PUT",
    [HTTP1_METHOD_DELETE] = "DELETE",   [HTTP1_METHOD_OPTIONS] = "OPTIONS",
    [HTTP1_METHOD_TRACE] = "TRACE",     [HTTP1_METHOD_CONNECT] = "CONNECT",
    [HTTP1_METHOD_PATCH] = "PATCH",
};

static void check_request_line(const char *buf, const struct http1_request *req)
{
    const char *m = req->method_text;
    size_t h = req->head_len;
    /* only empty lines before the request line */
    FUZZ_CHECK(fuzz_view_inside(m, req->method_len, buf, h) && req->method_len > 0);
    for (const char *p = buf; p < m; p += 2)
        FUZZ_CHECK(m - p >= 2 && p[0] == '\r' && p[1] == '\n');
    if (req->method != HTTP1_METHOD_OTHER) {
        const char *name = method_names[req->method];
        FUZZ_CHECK(req->method_len == strlen(name) && memcmp(m, name, req->method_len) == 0);
    }
    /* method SP target SP HTTP/1.x CRLF */
    FUZZ_CHECK(req->target == m + req->method_len + 1 && m[req->method_len] == ' ');
    FUZZ_CHECK(req->target_len > 0 && fuzz_view_inside(req->target, req->target_len, buf, h));
    for (uint32_t i = 0; i < req->target_len; i++)
        FUZZ_CHECK(req->target[i] > ' ' && req->target[i] < 0x7f);
    const char *v = req->target + req->target_len;
    FUZZ_CHECK(holds_at(buf, h, v, req->version_minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n"));

    /* the path is in the target, or the "/" of an absolute-form without
     * one, or empty for CONNECT */
    FUZZ_CHECK(req->path != NULL && req->authority != NULL);
    FUZZ_CHECK(fuzz_view_inside(req->path, req->path_len, req->target, req->target_len) ||
               (req->path_len == 1 && req->path[0] == '/') ||
               (req->path_len == 0 && req->method == HTTP1_METHOD_CONNECT));
    FUZZ_CHECK(req->method == HTTP1_METHOD_CONNECT || req->path_len > 0);
    FUZZ_CHECK(req->path_len == 0 || req->path[0] == '/' ||
               (req->path_len == 1 && req->path[0] == '*' && req->method == HTTP1_METHOD_OPTIONS));
    FUZZ_CHECK(req->authority_len == 0 || fuzz_view_inside(req->authority, req->authority_len, buf, h));
}

/* What a parsed head must look like whatever the bytes were. */
static void check_request(const char *buf, size_t len, const struct http1_limits *lim,
                          const struct http1_request *req)
{
    const struct http1_header *hs = req->headers;
    uint32_t n = req->header_count;
    FUZZ_CHECK(req->head_len >= 4 && req->head_len <= len && req->head_len <= lim->head_bytes);
    FUZZ_CHECK(memcmp(buf + req->head_len - 4, "\r\n\r\n", 4) == 0);
    FUZZ_CHECK(req->version_minor == 0 || req->version_minor == 1);
    FUZZ_CHECK(n <= lim->headers);
    check_request_line(buf, req);
    fuzz_check_headers(hs, n, buf, req->head_len);

    /* exactly one Host in HTTP/1.1, at most one in HTTP/1.0 */
    uint32_t hosts = fuzz_count_headers(hs, n, "host");
    FUZZ_CHECK(req->version_minor == 1 ? hosts == 1 : hosts <= 1);

    /* framing that no parser behind sluice can read another way */
    uint32_t te = fuzz_count_headers(hs, n, "transfer-encoding");
    uint32_t cl = fuzz_count_headers(hs, n, "content-length");
    FUZZ_CHECK(fuzz_count_headers(hs, n, "transfer_encoding") == 0);
    FUZZ_CHECK(fuzz_count_headers(hs, n, "content_length") == 0);
    FUZZ_CHECK(!(te && cl));
    FUZZ_CHECK(req->body != HTTP1_BODY_UNTIL_CLOSE);
    FUZZ_CHECK((req->body == HTTP1_BODY_CHUNKED) == (te > 0));
    FUZZ_CHECK(te == 0 || req->version_minor == 1);
    if (cl) {
        uint64_t v = stated_length(hs, n);
        FUZZ_CHECK(req->body == (v ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE));
        FUZZ_CHECK(req->body != HTTP1_BODY_LENGTH || req->content_length == v);
    } else {
        FUZZ_CHECK(req->body != HTTP1_BODY_LENGTH);
    }
    FUZZ_CHECK(req->body == HTTP1_BODY_LENGTH || req->content_length == 0);

    /* flags only for what the head says */
    if (req->flags & HTTP1_CONN_UPGRADE)
        FUZZ_CHECK(req->version_minor == 1 && fuzz_count_headers(hs, n, "upgrade") > 0);
    if (req->flags & HTTP1_EXPECT_CONTINUE)
        FUZZ_CHECK(req->version_minor == 1 && fuzz_count_headers(hs, n, "expect") > 0);
    if (req->flags & HTTP1_HAS_XFF)
        FUZZ_CHECK(fuzz_count_headers(hs, n, "x-forwarded-for") > 0);
    if (req->flags & HTTP1_HAS_REQ_ID)
        FUZZ_CHECK(fuzz_count_headers(hs, n, "x-request-id") > 0);
    if (req->version_minor == 0 && !(req->flags & HTTP1_CONN_KEEP_ALIVE))
        FUZZ_CHECK(req->flags & HTTP1_CONN_CLOSE);
    for (uint32_t i = 0; i < n; i++)
        if (fuzz_count_headers(&hs[i], 1, "transfer-encoding") ||
            fuzz_count_headers(&hs[i], 1, "connection"))
            FUZZ_CHECK(hs[i].flags & HTTP1_HDR_HOP);
}

/* One head at buf under lim; the bytes its body takes when it is
 * complete in the input, or -1 when nothing more can be taken. */
static ssize_t one_request(const char *buf, size_t len, const struct http1_limits *lim,
                           struct http1_request *req, struct fuzz_rng *rng)
{
    enum http1_result rc = parse(buf, len, lim, req, whole_headers);
    size_t ready_at = check_head_ready(buf, len, lim, rng);
    if (!ready_at) {
        FUZZ_CHECK(rc == HTTP1_INCOMPLETE);
        return -1;
    }
    struct http1_request at;
    check_same(parse(buf, ready_at, lim, &at, prefix_headers), &at, rc, req);
    if (ready_at > 1) {
        struct http1_request before;
        FUZZ_CHECK(parse(buf, ready_at - 1, lim, &before, prefix_headers) == HTTP1_INCOMPLETE);
    }
    if (rc != HTTP1_OK)
        return -1;
    FUZZ_CHECK(req->head_len == ready_at);
    check_request(buf, len, lim, req);

    return fuzz_body_taken(req->body, req->content_length, buf + req->head_len,
                           len - req->head_len, rng);
}

/* Tighter limits may refuse a head for its size and change nothing else:
 * a head that fits them is judged as under the defaults. */
static void check_limits_agree(const char *buf, size_t len)
{
    struct http1_request tight, loose;
    enum http1_result rt = parse(buf, len, &tight_limits, &tight, prefix_headers);
    if (rt == HTTP1_ERROR &&
        (tight.error == HTTP1_E_HEAD_TOO_LARGE || tight.error == HTTP1_E_TOO_MANY_HEADERS))
        return;
    enum http1_result rl = parse(buf, len, &default_limits, &loose, whole_headers);
    check_same(rt, &tight, rl, &loose);
}

static void run_pipeline(const char *buf, size_t len, const struct http1_limits *lim)
{
    struct fuzz_rng rng = fuzz_rng_seed((const uint8_t *)buf, len);
    size_t at = 0;
    for (int i = 0; i < PIPELINE_MAX && at < len; i++) {
        struct http1_request req;
        ssize_t body = one_request(buf + at, len - at, lim, &req, &rng);
        check_limits_agree(buf + at, len - at);
        if (body < 0)
            return;
        at += req.head_len + (size_t)body;
    }
}

int fuzz_request_one(const uint8_t *data, size_t len)
{
    run_pipeline((const char *)data, len, &default_limits);
    run_pipeline((const char *)data, len, &tight_limits);
    return 0;
}

/* the libFuzzer entry point, in `make fuzz` builds only */
FUZZ_TARGET(fuzz_request_one)
