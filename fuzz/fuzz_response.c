/* fuzz_response.c - response heads and chunked response bodies.
 *
 * The input is what an application sends on one connection: interim (1xx)
 * heads, a final head, its body, and perhaps the next response on a reused
 * connection. The proxy parses the head again each time bytes arrive, so a
 * head is parsed at random prefix lengths and the first verdict reached
 * must be the verdict on the whole input; a head that parses must have
 * been incomplete one byte earlier. The same bytes answer GET, HEAD and
 * CONNECT: whether they parse cannot depend on the method, only the body
 * framing can, and it must follow RFC 9112 6.3. Chunked bodies are scanned
 * whole, byte by byte and in pieces, as for requests.
 */
#include "fuzz.h"

#include <string.h>

#define RESPONSES_MAX 8         /* responses taken from one input */
#define HEADERS_MAX 100

/* sluice's defaults (responses are held to the same limits as requests),
 * and a tight pair so that short inputs reach the limit paths */
static const struct http1_limits limits = {.head_bytes = 16384, .headers = HEADERS_MAX};
static const struct http1_limits tight_limits = {.head_bytes = 256, .headers = 8};
static struct http1_header main_headers[HEADERS_MAX], other_headers[HEADERS_MAX];

static enum http1_result parse_within(const char *buf, size_t len, const struct http1_limits *lim,
                                      enum http1_method method, struct http1_response *res,
                                      struct http1_header *hs)
{
    res->headers = hs;
    enum http1_result rc = http1_parse_response(buf, len, lim, method, res);
    FUZZ_CHECK(rc == HTTP1_OK || rc == HTTP1_INCOMPLETE || rc == HTTP1_ERROR);
    FUZZ_CHECK((rc == HTTP1_ERROR) == (res->error != HTTP1_E_NONE));
    FUZZ_CHECK(rc != HTTP1_ERROR || res->error == HTTP1_E_BAD_RESPONSE ||
               res->error == HTTP1_E_HEAD_TOO_LARGE || res->error == HTTP1_E_TOO_MANY_HEADERS);
    FUZZ_CHECK(rc != HTTP1_INCOMPLETE || len < lim->head_bytes);
    FUZZ_CHECK(res->error != HTTP1_E_HEAD_TOO_LARGE || len >= lim->head_bytes);
    return rc;
}

static enum http1_result parse(const char *buf, size_t len, enum http1_method method,
                               struct http1_response *res, struct http1_header *hs)
{
    return parse_within(buf, len, &limits, method, res, hs);
}

static void check_same(enum http1_result ra, const struct http1_response *a,
                       enum http1_result rb, const struct http1_response *b)
{
    FUZZ_CHECK(ra == rb && a->error == b->error);
    if (ra != HTTP1_OK)
        return;
    FUZZ_CHECK(a->head_len == b->head_len && a->status == b->status);
    FUZZ_CHECK(a->body == b->body && a->content_length == b->content_length);
    FUZZ_CHECK(a->flags == b->flags && a->header_count == b->header_count);
}

/* Re-parses growing prefixes, as the proxy does on each read. */
static void check_prefixes(const char *buf, size_t len, enum http1_result rc,
                           const struct http1_response *whole, struct fuzz_rng *rng)
{
    struct http1_response at;
    for (size_t n = 0; n < len;) {
        n += fuzz_rng_piece(rng, len - n);
        enum http1_result r = parse(buf, n, HTTP1_METHOD_GET, &at, other_headers);
        if (r != HTTP1_INCOMPLETE) {
            check_same(r, &at, rc, whole);
            break;
        }
    }
    if (rc == HTTP1_OK) {
        FUZZ_CHECK(parse(buf, whole->head_len - 1, HTTP1_METHOD_GET, &at, other_headers) ==
                   HTTP1_INCOMPLETE);
        check_same(parse(buf, whole->head_len, HTTP1_METHOD_GET, &at, other_headers), &at, rc,
                   whole);
    }
}

static void check_status_line(const char *buf, const struct http1_response *res)
{
    FUZZ_CHECK(res->head_len >= 16);     /* "HTTP/1.x NNN\r\n\r\n" */
    FUZZ_CHECK(memcmp(buf, "HTTP/1.", 7) == 0 && buf[7] == '0' + res->version_minor);
    FUZZ_CHECK(res->version_minor == 0 || res->version_minor == 1);
    FUZZ_CHECK(res->status >= 100 && res->status <= 999);
    FUZZ_CHECK(buf[8] == ' ' && (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0') ==
               res->status);
    /* "HTTP/1.1 200\r\n", or a SP and a reason phrase that may be empty */
    FUZZ_CHECK(res->reason == buf + 12 || (res->reason == buf + 13 && buf[12] == ' '));
    FUZZ_CHECK(fuzz_view_inside(res->reason, res->reason_len, buf, res->head_len));
    for (uint32_t i = 0; i < res->reason_len; i++) {
        unsigned char c = (unsigned char)res->reason[i];
        FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
    const char *eol = res->reason + res->reason_len;
    FUZZ_CHECK(eol[0] == '\r' && eol[1] == '\n');
}

/* Framing by RFC 9112 6.3 for the method the response answers. */
static void check_framing(const struct http1_response *res, enum http1_method method)
{
    const struct http1_header *hs = res->headers;
    uint32_t n = res->header_count;
    uint32_t te = fuzz_count_headers(hs, n, "transfer-encoding");
    uint32_t cl = fuzz_count_headers(hs, n, "content-length");
    int s = res->status;
    FUZZ_CHECK(te == 0 || res->version_minor == 1);
    if (method == HTTP1_METHOD_HEAD || s < 200 || s == 204 || s == 304 ||
        (method == HTTP1_METHOD_CONNECT && s < 300)) {
        FUZZ_CHECK(res->body == HTTP1_BODY_NONE);
        return;
    }
    if (te) {
        FUZZ_CHECK(res->body == HTTP1_BODY_CHUNKED || res->body == HTTP1_BODY_UNTIL_CLOSE);
        /* TE with CL: the CL is never forwarded, the connection never reused */
        if (cl) {
            FUZZ_CHECK(res->flags & HTTP1_CONN_CLOSE);
            for (uint32_t i = 0; i < n; i++)
                if (fuzz_count_headers(&hs[i], 1, "content-length"))
                    FUZZ_CHECK(hs[i].flags & HTTP1_HDR_HOP);
        }
    } else if (cl) {
        FUZZ_CHECK(res->body == HTTP1_BODY_LENGTH || res->body == HTTP1_BODY_NONE);
    } else {
        FUZZ_CHECK(res->body == HTTP1_BODY_UNTIL_CLOSE);
    }
    FUZZ_CHECK((res->body == HTTP1_BODY_LENGTH) == (res->content_length > 0));
    if (res->body == HTTP1_BODY_UNTIL_CLOSE)
        FUZZ_CHECK(res->flags & HTTP1_CONN_CLOSE);
}

/* Tighter limits may refuse a head for its size and change nothing else. */
static void check_limits_agree(const char *buf, size_t len, enum http1_result rc,
                               const struct http1_response *res)
{
    struct http1_response tight;
    enum http1_result rt =
        parse_within(buf, len, &tight_limits, HTTP1_METHOD_GET, &tight, other_headers);
    if (rt == HTTP1_ERROR &&
        (tight.error == HTTP1_E_HEAD_TOO_LARGE || tight.error == HTTP1_E_TOO_MANY_HEADERS))
        return;
    check_same(rt, &tight, rc, res);
}

/* One response at buf answering GET (and, for comparison, HEAD and
 * CONNECT); the bytes its body takes, or -1 when nothing more can follow. */
static ssize_t one_response(const char *buf, size_t len, struct http1_response *res,
                            struct fuzz_rng *rng)
{
    enum http1_result rc = parse(buf, len, HTTP1_METHOD_GET, res, main_headers);
    check_prefixes(buf, len, rc, res, rng);
    check_limits_agree(buf, len, rc, res);
    static const enum http1_method others[] = {HTTP1_METHOD_HEAD, HTTP1_METHOD_CONNECT};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        struct http1_response alt;
        enum http1_result r = parse(buf, len, others[i], &alt, other_headers);
        FUZZ_CHECK(r == rc && alt.error == res->error);
        if (r != HTTP1_OK)
            continue;
        FUZZ_CHECK(alt.head_len == res->head_len && alt.status == res->status);
        fuzz_check_headers(alt.headers, alt.header_count, buf, alt.head_len);
        check_framing(&alt, others[i]);
    }
    if (rc != HTTP1_OK)
        return -1;
    FUZZ_CHECK(res->head_len <= len && res->head_len <= limits.head_bytes);
    FUZZ_CHECK(memcmp(buf + res->head_len - 4, "\r\n\r\n", 4) == 0);
    FUZZ_CHECK(res->header_count <= limits.headers);
    check_status_line(buf, res);
    fuzz_check_headers(res->headers, res->header_count, buf, res->head_len);
    check_framing(res, HTTP1_METHOD_GET);

    /* a body that runs to the close ends the input */
    return fuzz_body_taken(res->body, res->content_length, buf + res->head_len,
                           len - res->head_len, rng);
}

int fuzz_response_one(const uint8_t *data, size_t len)
{
    const char *buf = (const char *)data;
    struct fuzz_rng rng = fuzz_rng_seed(data, len);
    size_t at = 0;
    for (int i = 0; i < RESPONSES_MAX && at < len; i++) {
        struct http1_response res;
        ssize_t body = one_response(buf + at, len - at, &res, &rng);
        if (body < 0)
            break;
        at += res.head_len + (size_t)body;
    }
    return 0;
}

/* the libFuzzer entry point, in `make fuzz` builds only */
FUZZ_TARGET(fuzz_response_one)
