/* http1.h - strict, incremental, zero-copy HTTP/1.x parsing (RFC 9112).
 *
 * A head is parsed only once it is complete: http1_parse_request/response
 * return HTTP1_INCOMPLETE until the buffer holds the blank line that ends the
 * head, then parse it in one pass. Header names and values are views
 * (pointer + length) into the caller's buffer, valid while it is not moved.
 * The caller passes the header array, so parsing never allocates.
 *
 * Anything outside RFC 9112's grammar is refused, never repaired: the proxy
 * forwards only what every origin parser reads the same way. Bodies are
 * framed by the caller with the body kind found here; chunked bodies are
 * validated byte by byte by http1_chunked_scan so that they can be
 * forwarded verbatim.
 */
#ifndef SLUICE_HTTP1_H
#define SLUICE_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum http1_result {
    HTTP1_OK = 0,
    HTTP1_INCOMPLETE = 1,
    HTTP1_ERROR = -1,
};

/* Why a head was refused; maps to the status sluice answers with. */
enum http1_error {
    HTTP1_E_NONE = 0,
    HTTP1_E_BAD_REQUEST,        /* 400: malformed or ambiguous */
    HTTP1_E_HEAD_TOO_LARGE,     /* 431: head longer than the limit */
    HTTP1_E_TOO_MANY_HEADERS,   /* 431 */
    HTTP1_E_BAD_VERSION,        /* 505 for a well-formed HTTP/x.y other than 1.0/1.1; 400 otherwise */
    HTTP1_E_NOT_IMPLEMENTED,    /* 501: Transfer-Encoding other than chunked in a request */
    HTTP1_E_BAD_RESPONSE,       /* upstream response malformed (proxy answers 502) */
};

enum http1_body {
    HTTP1_BODY_NONE,            /* no body follows the head */
    HTTP1_BODY_LENGTH,          /* content_length bytes follow */
    HTTP1_BODY_CHUNKED,         /* chunked; use http1_chunked_scan */
    HTTP1_BODY_UNTIL_CLOSE,     /* responses only: body ends when the connection closes */
};

/* Per-header flags set by the parser. */
#define HTTP1_HDR_HOP      0x01 /* hop-by-hop: Connection, Keep-Alive, Proxy-Connection,
                                   TE, Trailer, Upgrade, Transfer-Encoding, and every
                                   name listed in Connection */
#define HTTP1_HDR_XFF      0x02 /* X-Forwarded-For */
#define HTTP1_HDR_XF_OTHER 0x04 /* X-Forwarded-Proto / X-Forwarded-Host (replaced by sluice) */
#define HTTP1_HDR_REQ_ID   0x08 /* X-Request-Id */

struct http1_header {
    const char *name;
    const char *value;          /* leading/trailing OWS trimmed */
    uint32_t name_len;
    uint32_t value_len;
    uint32_t flags;
};

/* Message-level flags. */
#define HTTP1_CONN_CLOSE      0x01  /* Connection: close */
#define HTTP1_CONN_KEEP_ALIVE 0x02  /* Connection: keep-alive */
#define HTTP1_CONN_UPGRADE    0x04  /* Connection: upgrade together with an Upgrade header */
#define HTTP1_EXPECT_CONTINUE 0x08  /* Expect: 100-continue */
#define HTTP1_HAS_XFF         0x10
#define HTTP1_HAS_REQ_ID      0x20

enum http1_method {
    HTTP1_METHOD_OTHER = 0,     /* any other token: forwarded as written */
    HTTP1_METHOD_GET,
    HTTP1_METHOD_HEAD,
    HTTP1_METHOD_POST,
    HTTP1_METHOD_PUT,
    HTTP1_METHOD_DELETE,
    HTTP1_METHOD_OPTIONS,
    HTTP1_METHOD_TRACE,
    HTTP1_METHOD_CONNECT,
    HTTP1_METHOD_PATCH,
};

struct http1_limits {
    uint32_t head_bytes;        /* the request line and headers, CRLFs included */
    uint32_t headers;           /* at most this many header lines */
};

struct http1_request {
    /* filled by http1_parse_request */
    enum http1_method method;
    const char *method_text;   uint32_t method_len;
    const char *target;        uint32_t target_len;   /* as written */
    const char *path;          uint32_t path_len;     /* origin-form path+query, also for
                                                         absolute-form targets; "*" for OPTIONS * */
    const char *authority;     uint32_t authority_len;/* from absolute-form, else the Host value;
                                                         length 0 when neither */
    int version_minor;         /* 0 or 1 */
    uint32_t head_len;         /* bytes of the head including the final CRLF CRLF */
    uint32_t flags;            /* HTTP1_CONN_*, HTTP1_EXPECT_CONTINUE, ... */
    enum http1_body body;
    uint64_t content_length;   /* for HTTP1_BODY_LENGTH */
    struct http1_header *headers; /* caller's array of limits.headers entries */
    uint32_t header_count;
    enum http1_error error;    /* set when HTTP1_ERROR is returned */
};

struct http1_response {
    int version_minor;
    int status;                /* 100..999 */
    const char *reason;        uint32_t reason_len;
    uint32_t head_len;
    uint32_t flags;            /* HTTP1_CONN_* */
    enum http1_body body;
    uint64_t content_length;
    struct http1_header *headers;
    uint32_t header_count;
    enum http1_error error;
};

/* Parses a request head at the start of buf. req->headers must point to an
 * array of lim->headers entries. Returns HTTP1_OK (req filled, head_len set),
 * HTTP1_INCOMPLETE (need more bytes; an error instead once len exceeds
 * lim->head_bytes), or HTTP1_ERROR (req->error says why). Leading empty lines
 * before the request line are tolerated (RFC 9112 section 2.2) and counted
 * in head_len.
 *
 * Framing rules enforced (RFC 9112 sections 6.1-6.3):
 * Content-Length together with Transfer-Encoding, differing or malformed
 * Content-Length values, any Transfer-Encoding whose final coding is not
 * chunked (or any in HTTP/1.0), missing or repeated Host in HTTP/1.1,
 * obs-fold, whitespace before a colon, non-token names, control bytes in
 * values, bare CR or LF, bad targets and versions all give HTTP1_ERROR. */
enum http1_result http1_parse_request(const char *buf, size_t len, const struct http1_limits *lim,
                                      struct http1_request *req);

/* Whether http1_parse_request(buf, len) would have more to say than
 * HTTP1_INCOMPLETE (a whole head, or a reason to refuse one), at the cost
 * of scanning only the bytes that arrived since the last call: *scanned
 * (0 for a new head, then left to this function) remembers how far earlier
 * calls over the same, only growing, bytes got. Set back to 0 once ready.
 * A head that arrives a byte at a time is then scanned once, not once per
 * byte. */
bool http1_request_head_ready(const char *buf, size_t len, const struct http1_limits *lim, uint32_t *scanned);

/* Parses a response head. request_method decides the body framing together
 * with the status (HEAD, 1xx, 204, 304 have none; 2xx to CONNECT has none).
 * On HTTP1_ERROR, res->error is HTTP1_E_HEAD_TOO_LARGE or
 * HTTP1_E_TOO_MANY_HEADERS over the limits, HTTP1_E_BAD_RESPONSE otherwise. */
enum http1_result http1_parse_response(const char *buf, size_t len, const struct http1_limits *lim,
                                       enum http1_method request_method,
                                       struct http1_response *res);

/* Incremental validator of a chunked body (RFC 9112 section 7.1), trailers
 * included. Zero-initialise before the first chunk line. */
struct http1_chunked {
    int state;
    uint64_t remaining;        /* data bytes left in the current chunk */
    uint32_t line_bytes;       /* bytes in the current size/trailer line, bounded */
    uint32_t digits;
    uint32_t trailer_bytes;
    uint64_t data_bytes;       /* decoded payload bytes seen so far */
    uint32_t held;             /* http1_chunked_forward: bytes of an unfinished trailer
                                  line at the end of the last call, not yet body */
    int held_state;            /* ... and where their validation stopped */
    bool done;                 /* the final CRLF after the trailers was seen */
};

/* Scans len bytes that continue a chunked body. Returns how many of them
 * belong to the body (the rest, after the end, belong to the next message),
 * or -1 when the framing is invalid (bad size, sign, prefix, more than 16
 * hex digits, bare CR/LF, bad extension or trailer). Sets st->done at the end. */
ssize_t http1_chunked_scan(struct http1_chunked *st, const char *buf, size_t len);

/* The same, for a body being forwarded: buf[0..*len) continues the body
 * after the bytes already returned as body (held-back bytes of an earlier
 * call included, which must be passed again). A trailer field line counts
 * as body only once whole; one that frames or routes a message (RFC 9110
 * section 6.5.1) is then removed from buf and *len shrinks by its length,
 * so it is never forwarded. Bytes of an unfinished trailer line stay after
 * the returned count (st->held of them); a line longer than hold_max (less
 * than the caller's buffer) is an error, so the caller can always read
 * more. Returns the body bytes at buf's start, or -1 as http1_chunked_scan. */
ssize_t http1_chunked_forward(struct http1_chunked *st, char *buf, size_t *len, size_t hold_max);

/* The request parser's own checks of a target and of a Host, for requests
 * that arrive in another shape (HTTP/2's :path and :authority, h2head.c):
 * origin-form is absolute-path [ "?" query ] with its pct-encoding checked
 * (RFC 9112 section 3.2.1); an authority is uri-host [ ":" port ] with no
 * userinfo and no comma, not empty, its port required when need_port
 * (authority-form, RFC 9112 section 3.2.3). */
bool http1_valid_origin_form(const char *s, size_t len);
bool http1_valid_authority(const char *s, size_t len, bool need_port);

/* Case-insensitive comparison of a header name with a lower-case literal. */
bool http1_name_is(const struct http1_header *h, const char *lower, size_t lower_len);
#define HTTP1_NAME_IS(h, lit) http1_name_is((h), (lit), sizeof(lit) - 1)

/* Standard reason phrase for a status, "Unknown" when none. */
const char *http1_reason(int status);

#endif
