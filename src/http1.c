/* http1.c - strict, zero-copy HTTP/1.x head parser and chunked-body validator.
 *
 * Design. A head is parsed only once it is complete, in two steps:
 *
 *   1. find_head_end() looks for the blank line with memchr('\n'). Every LF
 *      it meets must follow a CR (a bare LF is refused at once, even in an
 *      incomplete head), and the head ends at the first LF that closes
 *      "\r\n\r\n". The scan never looks past min(len, head_bytes), and a
 *      client's head arriving in pieces is scanned once in all, not once
 *      per piece (http1_request_head_ready resumes where the last piece's
 *      scan stopped). Leading empty lines before a request line are
 *      skipped (RFC 9112 section 2.2); they count against the limit.
 *   2. One pass over the complete head. Every byte is checked against a
 *      256-entry class table (char_class), except field values, most of a
 *      head, which are checked 8 bytes at a time (skip_field_bytes). A value
 *      ends at its first control byte, which must be the CR of a CRLF, so
 *      header lines need no second LF search. Names and values are views
 *      into the caller's buffer; nothing is allocated or copied.
 *
 * Strictness. sluice is the security boundary in front of applications whose
 * parsers we do not know, so anything outside the RFC 9112 / RFC 9110
 * grammar is refused, never repaired: what we forward must be read the same
 * way by every conforming parser. In particular:
 *   - line ends are CRLF exactly; bare CR or LF anywhere in the head is an
 *     error (RFC 9112 2.2 allows a lenient LF; we do not);
 *   - obs-fold and whitespace before a colon are errors (RFC 9112 5.1, 5.2);
 *   - field values hold only VCHAR, obs-text, SP and HTAB (RFC 9110 5.5);
 *   - request targets are origin-form (RFC 3986 path and query, pct-encoding
 *     checked), absolute-form with http/https, authority-form for CONNECT
 *     only, asterisk-form for OPTIONS only (RFC 9112 3.2);
 *   - Content-Length is 1*DIGIT below 2^63; a list or repetition of one
 *     value is that value (RFC 9112 6.3 item 5), anything else is an error;
 *   - a request with both Transfer-Encoding and Content-Length, with
 *     Transfer-Encoding in HTTP/1.0, or whose final coding is not chunked,
 *     is refused (RFC 9112 6.1, 6.3 items 3-4). Codings before a final
 *     chunked ("gzip, chunked") are legal HTTP that sluice does not decode:
 *     501 (RFC 9112 6.1: "SHOULD respond with 501");
 *   - HTTP/1.1 requests need exactly one Host (RFC 9112 3.2), whose value is
 *     uri-host [ ":" port ] (RFC 3986 3.2.2).
 *
 * Choices where the RFCs leave room, all on the side of refusing:
 *   - Empty list elements (RFC 9110 5.6.1) are tolerated in Connection but
 *     refused in Content-Length and Transfer-Encoding; transfer-parameters
 *     (";q=...") are refused.
 *   - Content_Length and Transfer_Encoding are refused: legal tokens, but
 *     CGI-style gateways fold '_' into '-'.
 *   - A comma in Host is refused; an empty Host is accepted (RFC 9110 7.2).
 *   - "http://host?query" is refused: its origin-form "/?query" is not in
 *     the buffer to point at.
 *   - Connection options naming Content-Length or Host are ignored, so that
 *     the proxy never strips the framing of a body it forwards.
 *   - HTTP1_CONN_CLOSE also means "HTTP/1.0 without keep-alive" (RFC 9112
 *     9.3), and Expect and Upgrade are ignored in HTTP/1.0 (RFC 9110 10.1.1,
 *     7.8). Content-Length: 0 gives HTTP1_BODY_NONE.
 *   - Response heads get no leading CRLFs; "HTTP/1.1 200\r\n" (no reason, no
 *     SP) is accepted. A response with TE and CL is chunked, not reusable,
 *     and its CL is marked hop-by-hop so that it is not forwarded (RFC 9112
 *     6.3 item 3).
 *   - Chunk lines have no BWS around ';' or '=' (RFC 9112 7.1.1 permits it,
 *     parsers disagree on it), sizes are below 2^63, a size line with its
 *     extensions is at most 4 KiB and the trailer section at most 16 KiB.
 *
 * Chunked bodies are not decoded: http1_chunked_scan walks them as a byte
 * state machine so the proxy can forward them verbatim, and skips chunk data
 * in O(1) per call.
 */
#include "http1.h"

#include <string.h>

/* ---- character classes (RFC 9110 5.6.2, RFC 3986 appendix A) ---- */

enum {
    C_TCHAR = 0x01,  /* token character */
    C_PATH = 0x02,   /* pchar / "/" / "?" except pct-encoded */
    C_HOST = 0x04,   /* unreserved / sub-delims except ",": reg-name without pct-encoded */
    C_HEX = 0x08,    /* HEXDIG */
    C_DIGIT = 0x10,  /* DIGIT */
    C_QDTEXT = 0x20, /* qdtext of a quoted-string (RFC 9110 5.6.4) */
    C_FIELD = 0x40,  /* field-value byte: VCHAR / obs-text / SP / HTAB */
};

#define CL_ALPHA (C_TCHAR | C_PATH | C_HOST | C_QDTEXT | C_FIELD)
#define CL_HEXA (CL_ALPHA | C_HEX)
#define CL_DIG (CL_HEXA | C_DIGIT)
#define CL_UNRES CL_ALPHA                                /* - . _ ~ */
#define CL_SUB_T CL_ALPHA                                /* sub-delims that are tchars */
#define CL_SUB (C_PATH | C_HOST | C_QDTEXT | C_FIELD)    /* ( ) ; = */
#define CL_TOK (C_TCHAR | C_QDTEXT | C_FIELD)            /* # % ^ ` | */
#define CL_GEN (C_PATH | C_QDTEXT | C_FIELD)             /* / : ? @ and "," */
#define CL_VIS (C_QDTEXT | C_FIELD)                      /* < > [ ] { } and obs-text */

static const uint8_t char_class[256] = {
    ['\t'] = CL_VIS, [' '] = CL_VIS,
    ['!'] = CL_SUB_T, ['"'] = C_FIELD, ['#'] = CL_TOK, ['$'] = CL_SUB_T,
    ['%'] = CL_TOK, ['&'] = CL_SUB_T, ['\''] = CL_SUB_T, ['('] = CL_SUB,
    [')'] = CL_SUB, ['*'] = CL_SUB_T, ['+'] = CL_SUB_T, [','] = CL_GEN,
    ['-'] = CL_UNRES, ['.'] = CL_UNRES, ['/'] = CL_GEN,
    ['0' ... '9'] = CL_DIG,
    [':'] = CL_GEN, [';'] = CL_SUB, ['<'] = CL_VIS, ['='] = CL_SUB,
    ['>'] = CL_VIS, ['?'] = CL_GEN, ['@'] = CL_GEN,
    ['A' ... 'F'] = CL_HEXA, ['G' ... 'Z'] = CL_ALPHA,
    ['['] = CL_VIS, ['\\'] = C_FIELD, [']'] = CL_VIS, ['^'] = CL_TOK,
    ['_'] = CL_UNRES, ['`'] = CL_TOK,
    ['a' ... 'f'] = CL_HEXA, ['g' ... 'z'] = CL_ALPHA,
    ['{'] = CL_VIS, ['|'] = CL_TOK, ['}'] = CL_VIS, ['~'] = CL_UNRES,
    [0x80 ... 0xff] = CL_VIS,
};

static inline bool is_class(char c, unsigned cls)
{
    return (char_class[(uint8_t)c] & cls) != 0;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline unsigned char to_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Case-insensitive equality of s[0..n) with a lower-case literal. */
static bool lower_eq(const char *s, size_t n, const char *lower, size_t lower_len)
{
    if (n != lower_len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (to_lower((unsigned char)s[i]) != (unsigned char)lower[i])
            return false;
    return true;
}
/* Case-insensitive equality of two names. */
static bool names_equal(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (to_lower((unsigned char)a[i]) != to_lower((unsigned char)b[i]))
            return false;
    return true;
}

#define LOWER_EQ(s, n, lit) lower_eq((s), (n), (lit), sizeof(lit) - 1)

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_class(s[i], C_TCHAR))
            return false;
    return true;
}

static inline bool is_pct_at(const char *p, const char *end)
{
    return end - p >= 3 && p[0] == '%' && is_class(p[1], C_HEX) && is_class(p[2], C_HEX);
}

bool http1_name_is(const struct http1_header *h, const char *lower, size_t lower_len)
{
    return lower_eq(h->name, h->name_len, lower, lower_len);
}

/* ---- comma-separated lists (RFC 9110 5.6.1) ---- */

struct list_iter {
    const char *p, *end;
    bool done;
};

/* Next element, OWS-trimmed; it may be empty. Returns false after the last. */
static bool list_next(struct list_iter *it, const char **elem, size_t *elem_len)
{
    if (it->done)
        return false;
    const char *comma = memchr(it->p, ',', (size_t)(it->end - it->p));
    const char *e = comma ? comma : it->end;
    const char *s = it->p;
    while (s < e && is_ows(*s))
        s++;
    const char *t = e;
    while (t > s && is_ows(t[-1]))
        t--;
    *elem = s;
    *elem_len = (size_t)(t - s);
    if (comma)
        it->p = comma + 1;
    else
        it->done = true;
    return true;
}

static struct list_iter list_of(const struct http1_header *h)
{
    return (struct list_iter){.p = h->value, .end = h->value + h->value_len};
}

/* ---- finding the head ---- */

enum head_scan { SCAN_FOUND, SCAN_INCOMPLETE, SCAN_BARE_LF, SCAN_TOO_LARGE };

/* Finds the end of the head: *start is past any skipped leading CRLFs,
 * *head_len is just past the final "\r\n\r\n". The search starts at
 * *scanned, where an earlier call over the same bytes (the buffer only grew
 * since) stopped without finding anything, and leaves there the offset to
 * resume from: every LF before it was judged already. */
static enum head_scan find_head_end(const char *buf, size_t len, size_t limit, bool skip_empty,
                                    size_t *scanned, size_t *start, size_t *head_len)
{
    size_t avail = len < limit ? len : limit;
    size_t pos = 0;
    if (skip_empty)
        while (pos + 1 < avail && buf[pos] == '\r' && buf[pos + 1] == '\n')
            pos += 2;
    *start = pos;
    const char *p = buf + (*scanned > pos && *scanned <= avail ? *scanned : pos), *end = buf + avail;
    *scanned = avail;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf)
            break;
        if (lf == buf || lf[-1] != '\r')
            return SCAN_BARE_LF;
        /* the blank line must not be the first line of the message */
        if (lf - (buf + pos) >= 3 && lf[-2] == '\n' && lf[-3] == '\r') {
            *head_len = (size_t)(lf + 1 - buf);
            return SCAN_FOUND;
        }
        p = lf + 1;
    }
    return len >= limit ? SCAN_TOO_LARGE : SCAN_INCOMPLETE;
}

/* Cuts the request or status line off *p; the head guarantees every LF
 * follows a CR. The line is [*ls, *le), *le pointing at its CR. */
static void next_line(const char **p, const char *end, const char **ls, const char **le)
{
    const char *lf = memchr(*p, '\n', (size_t)(end - *p));
    *ls = *p;
    *le = lf - 1;
    *p = lf + 1;
}

/* ---- header lines (RFC 9112 section 5) ---- */

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Whether any of 8 bytes is a control (< 0x20, HTAB included) or DEL. Both
 * tests are exact for "any" (bytes >= 0x80, obs-text, never match). */
static inline bool word_has_control(uint64_t w)
{
    uint64_t below_space = (w - ONES * 0x20) & ~w & HIGHS;
    uint64_t x = w ^ (ONES * 0x7f);
    uint64_t del = (x - ONES) & ~x & HIGHS;
    return (below_space | del) != 0;
}

/* Returns the first byte at or after p that is not a field-value byte
 * (VCHAR / obs-text / SP / HTAB), or end. Values are most of a head, so
 * they are checked 8 bytes at a time; a word with a control byte in it
 * (often just the CR that ends the line, or an HTAB) is redone byte by byte. */
static const char *skip_field_bytes(const char *p, const char *end)
{
    for (;;) {
        uint64_t w;
        while (end - p >= 8 && (memcpy(&w, p, 8), !word_has_control(w)))
            p += 8;
        const char *stop = end - p >= 8 ? p + 8 : end;
        while (p < stop && is_class(*p, C_FIELD))
            p++;
        if (p < stop || p == end)
            return p;
    }
}

/* field-line = field-name ":" OWS field-value OWS CRLF, read from *p and
 * past its CRLF. A line starting with whitespace (obs-fold, or whitespace
 * before the first header) fails the token test, and so does whitespace
 * before the colon; the value ends at its first control byte, which must be
 * the CR of a CRLF (a NUL, bare CR, bare LF or DEL fails here). */
static bool parse_field_line(const char **pp, const char *end, struct http1_header *h)
{
    const char *ls = *pp, *p = ls;
    while (p < end && is_class(*p, C_TCHAR))
        p++;
    if (p == ls || p == end || *p != ':')
        return false;
    h->name = ls;
    h->name_len = (uint32_t)(p - ls);
    p++;
    while (p < end && is_ows(*p))
        p++;
    const char *v = p;
    p = skip_field_bytes(p, end);
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return false;
    *pp = p + 2;
    while (p > v && is_ows(p[-1]))
        p--;
    h->value = v;
    h->value_len = (uint32_t)(p - v);
    h->flags = 0;
    return true;
}

enum known_header {
    H_OTHER,
    H_CONTENT_LENGTH,
    H_TRANSFER_ENCODING,
    H_HOST,
    H_CONNECTION,
    H_KEEP_ALIVE,
    H_PROXY_CONNECTION,
    H_TE,
    H_TRAILER,
    H_UPGRADE,
    H_EXPECT,
    H_XFF,
    H_XF_PROTO,
    H_XF_HOST,
    H_REQUEST_ID,
    H_FRAMING_LOOKALIKE,
};

/* Switching on the length first keeps most unknown names to one compare. */
static enum known_header classify(const char *n, size_t len)
{
#define IS(lit) LOWER_EQ(n, len, lit)
    switch (len) {
    case 2: return IS("te") ? H_TE : H_OTHER;
    case 4: return IS("host") ? H_HOST : H_OTHER;
    case 6: return IS("expect") ? H_EXPECT : H_OTHER;
    case 7:
        if (IS("upgrade"))
            return H_UPGRADE;
        return IS("trailer") ? H_TRAILER : H_OTHER;
    case 10:
        if (IS("connection"))
            return H_CONNECTION;
        return IS("keep-alive") ? H_KEEP_ALIVE : H_OTHER;
    case 12: return IS("x-request-id") ? H_REQUEST_ID : H_OTHER;
    case 14:
        if (IS("content-length"))
            return H_CONTENT_LENGTH;
        return IS("content_length") ? H_FRAMING_LOOKALIKE : H_OTHER;
    case 15: return IS("x-forwarded-for") ? H_XFF : H_OTHER;
    case 16:
        if (IS("proxy-connection"))
            return H_PROXY_CONNECTION;
        return IS("x-forwarded-host") ? H_XF_HOST : H_OTHER;
    case 17:
        if (IS("transfer-encoding"))
            return H_TRANSFER_ENCODING;
        if (IS("transfer_encoding"))
            return H_FRAMING_LOOKALIKE;
        return IS("x-forwarded-proto") ? H_XF_PROTO : H_OTHER;
    default: return H_OTHER;
    }
#undef IS
}

/* What the header section says about framing and the connection, gathered
 * line by line and judged once the section is complete. */
struct head_facts {
    uint32_t flags;           /* HTTP1_* message flags */
    uint32_t cl_count;        /* Content-Length lines */
    uint64_t content_length;
    uint32_t te_count;        /* Transfer-Encoding lines */
    uint32_t te_chunked;      /* "chunked" elements */
    bool te_last_chunked;     /* the last element seen so far is chunked */
    bool te_other;            /* some coding other than chunked */
    uint32_t host_count;
    const char *host;
    uint32_t host_len;
    bool conn_upgrade;        /* "upgrade" among the Connection options */
    bool upgrade_seen;        /* an Upgrade header */
    bool conn_names;          /* Connection lists other header names */
    bool expect_continue;
};

/* Content-Length = 1*DIGIT, possibly as a list of identical values. */
static bool note_content_length(struct head_facts *f, const struct http1_header *h)
{
    struct list_iter it = list_of(h);
    const char *e;
    size_t n;
    while (list_next(&it, &e, &n)) {
        if (n == 0)
            return false;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
            if (!is_class(e[i], C_DIGIT))
                return false;
            unsigned d = (unsigned)(e[i] - '0');
            if (v > (UINT64_C(0x7fffffffffffffff) - d) / 10)
                return false;
            v = v * 10 + d;
        }
        if (f->cl_count > 0 && v != f->content_length)
            return false;
        f->content_length = v;
        f->cl_count++;
    }
    return true;
}

/* transfer-coding list; several lines read as one list (RFC 9110 5.3). */
static bool note_transfer_encoding(struct head_facts *f, const struct http1_header *h)
{
    struct list_iter it = list_of(h);
    const char *e;
    size_t n;
    f->te_count++;
    while (list_next(&it, &e, &n)) {
        if (!is_token(e, n))
            return false;
        if (LOWER_EQ(e, n, "chunked")) {
            f->te_chunked++;
            f->te_last_chunked = true;
        } else {
            f->te_other = true;
            f->te_last_chunked = false;
        }
    }
    return true;
}

static bool note_connection(struct head_facts *f, const struct http1_header *h)
{
    struct list_iter it = list_of(h);
    const char *e;
    size_t n;
    while (list_next(&it, &e, &n)) {
        if (n == 0)
            continue;
        if (!is_token(e, n))
            return false;
        if (LOWER_EQ(e, n, "close"))
            f->flags |= HTTP1_CONN_CLOSE;
        else if (LOWER_EQ(e, n, "keep-alive"))
            f->flags |= HTTP1_CONN_KEEP_ALIVE;
        else if (LOWER_EQ(e, n, "upgrade"))
            f->conn_upgrade = true;
        else
            f->conn_names = true;
    }
    return true;
}

/* Host = uri-host [ ":" port ] (RFC 3986 3.2.2-3.2.3); userinfo is not
 * allowed (RFC 9110 4.2.4). An empty value is legal only where allow_empty
 * (Host for a target without authority, RFC 9110 7.2); otherwise the host
 * must be non-empty (RFC 9110 4.2.1). The port, when a colon is present, is
 * a number up to 65535 and must be present when need_port (authority-form,
 * RFC 9110 9.3.6). A comma, legal in a reg-name, is refused (C_HOST): no
 * DNS name has one, and a parser that splits Host as a list sees two hosts. */
static bool valid_authority(const char *p, const char *end, bool allow_empty, bool need_port)
{
    if (p == end)
        return allow_empty && !need_port;
    const char *host = p;
    if (*p == '[') {
        const char *lit = ++p;
        while (p < end && *p != ']') {
            if (!is_class(*p, C_HOST) && *p != ':')
                return false;
            p++;
        }
        if (p == end || p == lit)
            return false;
        p++;
    } else {
        while (p < end && *p != ':') {
            if (is_class(*p, C_HOST))
                p++;
            else if (is_pct_at(p, end))
                p += 3;
            else
                return false;
        }
    }
    if (p == host)
        return false;
    if (p == end)
        return !need_port;
    if (*p++ != ':')
        return false;
    size_t digits = (size_t)(end - p);
    if (digits == 0)
        return !need_port;
    if (digits > 5)
        return false;
    unsigned port = 0;
    for (; p < end; p++) {
        if (!is_class(*p, C_DIGIT))
            return false;
        port = port * 10 + (unsigned)(*p - '0');
    }
    return port <= 65535;
}

/* Records one header line's meaning; false when its value is malformed. */
static bool note_header(struct head_facts *f, struct http1_header *h, bool is_request)
{
    switch (classify(h->name, h->name_len)) {
    case H_CONTENT_LENGTH:
        return note_content_length(f, h);
    case H_TRANSFER_ENCODING:
        h->flags |= HTTP1_HDR_HOP;
        return note_transfer_encoding(f, h);
    case H_HOST:
        if (!is_request)
            return true;
        f->host_count++;
        f->host = h->value;
        f->host_len = h->value_len;
        return valid_authority(h->value, h->value + h->value_len, true, false);
    case H_CONNECTION:
        h->flags |= HTTP1_HDR_HOP;
        return note_connection(f, h);
    case H_UPGRADE:
        f->upgrade_seen = true;
        h->flags |= HTTP1_HDR_HOP;
        return true;
    case H_KEEP_ALIVE:
    case H_PROXY_CONNECTION:
    case H_TE:
    case H_TRAILER:
        h->flags |= HTTP1_HDR_HOP;
        return true;
    case H_EXPECT:
        if (is_request && LOWER_EQ(h->value, h->value_len, "100-continue"))
            f->expect_continue = true;
        return true;
    case H_XFF:
        if (is_request)
            h->flags |= HTTP1_HDR_XFF;
        return true;
    case H_XF_PROTO:
    case H_XF_HOST:
        if (is_request)
            h->flags |= HTTP1_HDR_XF_OTHER;
        return true;
    case H_REQUEST_ID:
        if (is_request)
            h->flags |= HTTP1_HDR_REQ_ID;
        return true;
    case H_FRAMING_LOOKALIKE:
        /* A legal token, but CGI-style gateways map '_' and '-' alike and
         * would read a second framing header sluice did not see. */
        return false;
    case H_OTHER:
        return true;
    }
    return true;
}

/* Real Connection headers name one to three options; each is matched
 * against every header, so a bound keeps a crafted head linear. */
#define HTTP1_CONNECTION_OPTIONS_MAX 64

/* Marks every header named by a Connection option as hop-by-hop (RFC 9110
 * 7.6.1). Content-Length and Host are never stripped this way: without its
 * Content-Length a forwarded body would be read as the next request, and
 * without Host an HTTP/1.1 request is invalid. Such options are ignored.
 * Returns false past HTTP1_CONNECTION_OPTIONS_MAX options. */
static bool mark_connection_options(struct http1_header *hs, uint32_t count)
{
    uint32_t options = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (!HTTP1_NAME_IS(&hs[i], "connection"))
            continue;
        struct list_iter it = list_of(&hs[i]);
        const char *e;
        size_t n;
        while (list_next(&it, &e, &n)) {
            if (n == 0 || LOWER_EQ(e, n, "close") || LOWER_EQ(e, n, "keep-alive") ||
                LOWER_EQ(e, n, "content-length") || LOWER_EQ(e, n, "host"))
                continue;
            if (++options > HTTP1_CONNECTION_OPTIONS_MAX)
                return false;
            for (uint32_t j = 0; j < count; j++)
                if (names_equal(hs[j].name, hs[j].name_len, e, n))
                    hs[j].flags |= HTTP1_HDR_HOP;
        }
    }
    return true;
}

/* Parses the header lines from *p up to and including the blank line. */
static enum http1_error parse_fields(const char *p, const char *end, const struct http1_limits *lim,
                                     struct http1_header *hs, uint32_t *count,
                                     struct head_facts *f, bool is_request)
{
    uint32_t n = 0;
    /* Lines run up to the blank line, the last two bytes of the head; a
     * line starting with CR before it (a bare CR) fails the name test. */
    while (end - p > 2) {
        if (n >= lim->headers)
            return HTTP1_E_TOO_MANY_HEADERS;
        if (!parse_field_line(&p, end, &hs[n]))
            return HTTP1_E_BAD_REQUEST;
        if (!note_header(f, &hs[n], is_request))
            return HTTP1_E_BAD_REQUEST;
        n++;
    }
    *count = n;
    if (f->conn_names && !mark_connection_options(hs, n))
        return HTTP1_E_BAD_REQUEST;
    return HTTP1_E_NONE;
}

/* ---- request line (RFC 9112 section 3) ---- */

static enum http1_method method_of(const char *m, size_t n)
{
#define M(lit, id)                                                               \
    if (n == sizeof(lit) - 1 && memcmp(m, lit, n) == 0)                          \
        return id;
    switch (m[0]) {
    case 'G': M("GET", HTTP1_METHOD_GET) break;
    case 'H': M("HEAD", HTTP1_METHOD_HEAD) break;
    case 'P':
        M("POST", HTTP1_METHOD_POST)
        M("PUT", HTTP1_METHOD_PUT)
        M("PATCH", HTTP1_METHOD_PATCH)
        break;
    case 'D': M("DELETE", HTTP1_METHOD_DELETE) break;
    case 'O': M("OPTIONS", HTTP1_METHOD_OPTIONS) break;
    case 'T': M("TRACE", HTTP1_METHOD_TRACE) break;
    case 'C': M("CONNECT", HTTP1_METHOD_CONNECT) break;
    }
#undef M
    return HTTP1_METHOD_OTHER;
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 2.3).
 * Returns the minor version of 1.0/1.1, -1 for another well-formed version,
 * -2 for anything else. */
static int parse_version(const char *v, size_t n)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !is_class(v[5], C_DIGIT) || v[6] != '.' ||
        !is_class(v[7], C_DIGIT))
        return -2;
    if (v[5] == '1' && (v[7] == '0' || v[7] == '1'))
        return v[7] - '0';
    return -1;
}

/* absolute-path [ "?" query ], with pct-encoded triplets checked. */
static bool valid_origin_form(const char *p, const char *end)
{
    if (p == end || *p != '/')
        return false;
    while (p < end) {
        if (is_class(*p, C_PATH))
            p++;
        else if (is_pct_at(p, end))
            p += 3;
        else
            return false;
    }
    return true;
}

bool http1_valid_origin_form(const char *s, size_t len)
{
    return valid_origin_form(s, s + len);
}

bool http1_valid_authority(const char *s, size_t len, bool need_port)
{
    return valid_authority(s, s + len, false, need_port);
}

static const char slash[] = "/";
static const char empty[] = "";

/* absolute-form with an http or https scheme (RFC 9112 3.2.2). A target
 * with a query but an empty path ("http://a?q") is refused: its origin-form
 * "/?q" is not in the buffer to point at. */
static bool parse_absolute_form(struct http1_request *req)
{
    const char *t = req->target, *end = t + req->target_len;
    size_t skip;
    if (req->target_len >= 7 && LOWER_EQ(t, 7, "http://"))
        skip = 7;
    else if (req->target_len >= 8 && LOWER_EQ(t, 8, "https://"))
        skip = 8;
    else
        return false;
    const char *auth = t + skip, *p = auth;
    while (p < end && *p != '/' && *p != '?')
        p++;
    if (!valid_authority(auth, p, false, false))
        return false;
    req->authority = auth;
    req->authority_len = (uint32_t)(p - auth);
    if (p == end) {
        req->path = slash;
        req->path_len = 1;
        return true;
    }
    if (!valid_origin_form(p, end))
        return false;
    req->path = p;
    req->path_len = (uint32_t)(end - p);
    return true;
}

/* Classifies and checks the target; true when it fits the method. */
static bool parse_target(struct http1_request *req)
{
    const char *t = req->target, *end = t + req->target_len;
    if (req->method == HTTP1_METHOD_CONNECT) {
        /* authority-form only (RFC 9112 3.2.3) */
        if (!valid_authority(t, end, false, true))
            return false;
        req->authority = t;
        req->authority_len = req->target_len;
        req->path = empty;
        req->path_len = 0;
        return true;
    }
    if (t[0] == '/') {
        req->path = t;
        req->path_len = req->target_len;
        return valid_origin_form(t, end);
    }
    if (req->target_len == 1 && t[0] == '*') {
        req->path = t;
        req->path_len = 1;
        return req->method == HTTP1_METHOD_OPTIONS;
    }
    return parse_absolute_form(req);
}

/* method SP request-target SP HTTP-version, one SP each (RFC 9112 3). */
static enum http1_error parse_request_line(const char *ls, const char *le,
                                           struct http1_request *req)
{
    const char *p = ls;
    while (p < le && is_class(*p, C_TCHAR))
        p++;
    if (p == ls || p == le || *p != ' ')
        return HTTP1_E_BAD_REQUEST;
    req->method_text = ls;
    req->method_len = (uint32_t)(p - ls);
    req->method = method_of(ls, req->method_len);

    const char *t = ++p;
    /* visible ASCII only: space ends it, controls and raw non-ASCII fail */
    while (p < le && *p > ' ' && *p < 0x7f)
        p++;
    if (p == t || p == le || *p != ' ')
        return HTTP1_E_BAD_REQUEST;
    req->target = t;
    req->target_len = (uint32_t)(p - t);

    int minor = parse_version(p + 1, (size_t)(le - p - 1));
    if (minor == -2)
        return HTTP1_E_BAD_REQUEST;
    if (minor == -1)
        return HTTP1_E_BAD_VERSION;
    req->version_minor = minor;
    return parse_target(req) ? HTTP1_E_NONE : HTTP1_E_BAD_REQUEST;
}

/* Request framing (RFC 9112 6.1-6.3) and Host (RFC 9112 3.2). */
static enum http1_error judge_request(struct http1_request *req, const struct head_facts *f)
{
    if (f->te_count > 0) {
        if (req->version_minor == 0 || f->cl_count > 0 || !f->te_last_chunked ||
            f->te_chunked > 1)
            return HTTP1_E_BAD_REQUEST;
        if (f->te_other)
            return HTTP1_E_NOT_IMPLEMENTED;
        req->body = HTTP1_BODY_CHUNKED;
    } else if (f->cl_count > 0 && f->content_length > 0) {
        req->body = HTTP1_BODY_LENGTH;
        req->content_length = f->content_length;
    } else {
        req->body = HTTP1_BODY_NONE;
    }
    if (f->host_count > 1 || (req->version_minor == 1 && f->host_count == 0))
        return HTTP1_E_BAD_REQUEST;
    if (!req->authority) {
        req->authority = f->host_count ? f->host : empty;
        req->authority_len = f->host_count ? f->host_len : 0;
    }
    return HTTP1_E_NONE;
}

/* Connection persistence and feature flags common to both directions. */
static uint32_t message_flags(const struct head_facts *f, int version_minor)
{
    uint32_t flags = f->flags;
    /* HTTP/1.0 persists only when asked to (RFC 9112 9.3) */
    if (version_minor == 0 && !(flags & HTTP1_CONN_KEEP_ALIVE))
        flags |= HTTP1_CONN_CLOSE;
    /* Upgrade in HTTP/1.0 is ignored (RFC 9110 7.8) */
    if (f->conn_upgrade && f->upgrade_seen && version_minor == 1)
        flags |= HTTP1_CONN_UPGRADE;
    return flags;
}

static uint32_t request_flags(const struct head_facts *f, int version_minor,
                              const struct http1_header *hs, uint32_t count)
{
    uint32_t flags = message_flags(f, version_minor);
    /* a 100-continue in HTTP/1.0 is ignored (RFC 9110 10.1.1) */
    if (f->expect_continue && version_minor == 1)
        flags |= HTTP1_EXPECT_CONTINUE;
    /* a header that a Connection option strips does not count as present */
    for (uint32_t i = 0; i < count; i++) {
        if (hs[i].flags & HTTP1_HDR_HOP)
            continue;
        if (hs[i].flags & HTTP1_HDR_XFF)
            flags |= HTTP1_HAS_XFF;
        if (hs[i].flags & HTTP1_HDR_REQ_ID)
            flags |= HTTP1_HAS_REQ_ID;
    }
    return flags;
}

static enum http1_result fail_request(struct http1_request *req, enum http1_error e)
{
    req->error = e;
    return HTTP1_ERROR;
}

bool http1_request_head_ready(const char *buf, size_t len, const struct http1_limits *lim, uint32_t *scanned)
{
    size_t start, head_len, at = *scanned;
    enum head_scan r = find_head_end(buf, len, lim->head_bytes, true, &at, &start, &head_len);
    *scanned = r == SCAN_INCOMPLETE ? (uint32_t)at : 0;
    return r != SCAN_INCOMPLETE;
}

enum http1_result http1_parse_request(const char *buf, size_t len, const struct http1_limits *lim,
                                      struct http1_request *req)
{
    struct http1_header *hs = req->headers;
    *req = (struct http1_request){.headers = hs};

    size_t start, head_len, scanned = 0;
    switch (find_head_end(buf, len, lim->head_bytes, true, &scanned, &start, &head_len)) {
    case SCAN_INCOMPLETE: return HTTP1_INCOMPLETE;
    case SCAN_BARE_LF: return fail_request(req, HTTP1_E_BAD_REQUEST);
    case SCAN_TOO_LARGE: return fail_request(req, HTTP1_E_HEAD_TOO_LARGE);
    case SCAN_FOUND: break;
    }

    const char *p = buf + start, *end = buf + head_len, *ls, *le;
    next_line(&p, end, &ls, &le);
    enum http1_error e = parse_request_line(ls, le, req);
    if (e != HTTP1_E_NONE)
        return fail_request(req, e);

    struct head_facts f = {0};
    e = parse_fields(p, end, lim, hs, &req->header_count, &f, true);
    if (e == HTTP1_E_NONE)
        e = judge_request(req, &f);
    if (e != HTTP1_E_NONE)
        return fail_request(req, e);
    req->flags = request_flags(&f, req->version_minor, hs, req->header_count);
    req->head_len = (uint32_t)head_len;
    return HTTP1_OK;
}

/* ---- responses ---- */

/* HTTP-version SP 3DIGIT SP [ reason-phrase ] (RFC 9112 4); "HTTP/1.1 200"
 * without the second SP is accepted too, as many servers send it. */
static bool parse_status_line(const char *ls, const char *le, struct http1_response *res)
{
    size_t n = (size_t)(le - ls);
    if (n < 12)
        return false;
    int minor = parse_version(ls, 8);
    if (minor < 0 || ls[8] != ' ')
        return false;
    if (ls[9] < '1' || ls[9] > '9' || !is_class(ls[10], C_DIGIT) || !is_class(ls[11], C_DIGIT))
        return false;
    res->version_minor = minor;
    res->status = (ls[9] - '0') * 100 + (ls[10] - '0') * 10 + (ls[11] - '0');
    res->reason = ls + n;
    res->reason_len = 0;
    if (n == 12)
        return true;
    if (ls[12] != ' ')
        return false;
    for (const char *p = ls + 13; p < le; p++)
        if (!is_class(*p, C_FIELD))
            return false;
    res->reason = ls + 13;
    res->reason_len = (uint32_t)(le - ls - 13);
    return true;
}

/* Response framing, RFC 9112 6.3 items 1-7 in order. */
static bool judge_response(struct http1_response *res, const struct head_facts *f,
                           enum http1_method request_method)
{
    int s = res->status;
    /* "chunked" more than once is never valid (RFC 9112 6.1) and an
     * HTTP/1.0 message with Transfer-Encoding has faulty framing (6.1). */
    if (f->te_chunked > 1 || (f->te_count > 0 && res->version_minor == 0))
        return false;
    if (request_method == HTTP1_METHOD_HEAD || s < 200 || s == 204 || s == 304 ||
        (request_method == HTTP1_METHOD_CONNECT && s < 300)) {
        res->body = HTTP1_BODY_NONE;
    } else if (f->te_count > 0) {
        /* TE overrides CL; such a message may be an attack, so the
         * connection is not reused (item 3), and its CL is stripped. */
        if (f->cl_count > 0) {
            res->flags |= HTTP1_CONN_CLOSE;
            for (uint32_t i = 0; i < res->header_count; i++)
                if (HTTP1_NAME_IS(&res->headers[i], "content-length"))
                    res->headers[i].flags |= HTTP1_HDR_HOP;
        }
        if (f->te_last_chunked) {
            res->body = HTTP1_BODY_CHUNKED;
        } else {
            res->body = HTTP1_BODY_UNTIL_CLOSE;
            res->flags |= HTTP1_CONN_CLOSE;
        }
    } else if (f->cl_count > 0) {
        res->body = f->content_length > 0 ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
        res->content_length = f->content_length;
    } else {
        res->body = HTTP1_BODY_UNTIL_CLOSE;
        res->flags |= HTTP1_CONN_CLOSE;
    }
    return true;
}

/* Limits keep their own codes (a health check still reads the status of an
 * oversized head); every other fault is a bad response. */
static enum http1_result fail_response(struct http1_response *res, enum http1_error e)
{
    res->error = (e == HTTP1_E_HEAD_TOO_LARGE || e == HTTP1_E_TOO_MANY_HEADERS) ? e
                                                                               : HTTP1_E_BAD_RESPONSE;
    return HTTP1_ERROR;
}

enum http1_result http1_parse_response(const char *buf, size_t len, const struct http1_limits *lim,
                                       enum http1_method request_method,
                                       struct http1_response *res)
{
    struct http1_header *hs = res->headers;
    *res = (struct http1_response){.headers = hs};

    size_t start, head_len, scanned = 0;
    switch (find_head_end(buf, len, lim->head_bytes, false, &scanned, &start, &head_len)) {
    case SCAN_INCOMPLETE: return HTTP1_INCOMPLETE;
    case SCAN_BARE_LF: return fail_response(res, HTTP1_E_BAD_RESPONSE);
    case SCAN_TOO_LARGE: return fail_response(res, HTTP1_E_HEAD_TOO_LARGE);
    case SCAN_FOUND: break;
    }

    const char *p = buf + start, *end = buf + head_len, *ls, *le;
    next_line(&p, end, &ls, &le);
    if (!parse_status_line(ls, le, res))
        return fail_response(res, HTTP1_E_BAD_RESPONSE);

    struct head_facts f = {0};
    enum http1_error e = parse_fields(p, end, lim, hs, &res->header_count, &f, false);
    if (e != HTTP1_E_NONE)
        return fail_response(res, e);
    res->flags = message_flags(&f, res->version_minor);
    if (!judge_response(res, &f, request_method))
        return fail_response(res, HTTP1_E_BAD_RESPONSE);
    res->head_len = (uint32_t)head_len;
    return HTTP1_OK;
}

/* ---- chunked bodies (RFC 9112 section 7.1) ---- */

#define CHUNK_LINE_MAX 4096      /* chunk-size line with its extensions */
#define CHUNK_TRAILER_MAX 16384  /* the whole trailer section */
#define CHUNK_SIZE_DIGITS 16

enum chunk_state {
    CH_SIZE_FIRST = 0,  /* zero-initialised state: before a chunk-size */
    CH_SIZE,            /* in the hex digits */
    CH_EXT_NAME_FIRST,  /* after ';' */
    CH_EXT_NAME,
    CH_EXT_VALUE_FIRST, /* after '=' */
    CH_EXT_TOKEN,
    CH_EXT_QUOTED,
    CH_EXT_QUOTED_PAIR,
    CH_EXT_AFTER_QUOTE,
    CH_SIZE_LF,         /* CR seen at the end of the size line */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_FIRST,   /* start of a trailer line or of the final CRLF */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_FINAL_LF,
    CH_DONE,
    CH_ERROR,
};

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    return to_lower((unsigned char)c) - 'a' + 10;
}

/* One byte of a chunk-size line: size, extensions, CR. Returns the next state.
 * chunk-ext = *( ";" name [ "=" token / quoted-string ] ), without the BWS
 * that RFC 9112 7.1.1 tolerates: sluice forwards the line verbatim, and
 * whitespace around ';' is read differently by different parsers. */
static enum chunk_state size_line_byte(struct http1_chunked *st, enum chunk_state s, char c)
{
    switch (s) {
    case CH_SIZE_FIRST:
    case CH_SIZE:
        if (is_class(c, C_HEX)) {
            if (++st->digits > CHUNK_SIZE_DIGITS)
                return CH_ERROR;
            st->remaining = (st->remaining << 4) | (uint64_t)hex_value(c);
            return CH_SIZE;
        }
        if (s == CH_SIZE_FIRST)
            return CH_ERROR;
        /* sizes beyond 2^63-1 cannot be counted in the caller's signed sizes */
        if (st->remaining > UINT64_C(0x7fffffffffffffff))
            return CH_ERROR;
        return c == ';' ? CH_EXT_NAME_FIRST : c == '\r' ? CH_SIZE_LF : CH_ERROR;
    case CH_EXT_NAME_FIRST:
        return is_class(c, C_TCHAR) ? CH_EXT_NAME : CH_ERROR;
    case CH_EXT_NAME:
    case CH_EXT_TOKEN:
        if (is_class(c, C_TCHAR))
            return s;
        if (c == '=' && s == CH_EXT_NAME)
            return CH_EXT_VALUE_FIRST;
        return c == ';' ? CH_EXT_NAME_FIRST : c == '\r' ? CH_SIZE_LF : CH_ERROR;
    case CH_EXT_VALUE_FIRST:
        if (c == '"')
            return CH_EXT_QUOTED;
        return is_class(c, C_TCHAR) ? CH_EXT_TOKEN : CH_ERROR;
    case CH_EXT_QUOTED:
        if (c == '"')
            return CH_EXT_AFTER_QUOTE;
        if (c == '\\')
            return CH_EXT_QUOTED_PAIR;
        return is_class(c, C_QDTEXT) ? CH_EXT_QUOTED : CH_ERROR;
    case CH_EXT_QUOTED_PAIR:
        /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
        return is_class(c, C_FIELD) ? CH_EXT_QUOTED : CH_ERROR;
    case CH_EXT_AFTER_QUOTE:
        return c == ';' ? CH_EXT_NAME_FIRST : c == '\r' ? CH_SIZE_LF : CH_ERROR;
    default:
        return CH_ERROR;
    }
}

/* One byte of the trailer section (same rules as header lines). */
static enum chunk_state trailer_byte(enum chunk_state s, char c)
{
    switch (s) {
    case CH_TRAILER_FIRST:
        if (c == '\r')
            return CH_FINAL_LF;
        return is_class(c, C_TCHAR) ? CH_TRAILER_NAME : CH_ERROR;
    case CH_TRAILER_NAME:
        if (is_class(c, C_TCHAR))
            return s;
        return c == ':' ? CH_TRAILER_VALUE : CH_ERROR;
    case CH_TRAILER_VALUE:
        if (is_class(c, C_FIELD))
            return s;
        return c == '\r' ? CH_TRAILER_LF : CH_ERROR;
    case CH_TRAILER_LF:
        return c == '\n' ? CH_TRAILER_FIRST : CH_ERROR;
    default:
        return CH_ERROR;
    }
}

/* at_trailer_line: stop before the first byte of a trailer field line, so
 * that http1_chunked_forward can judge the line whole. */
static ssize_t chunked_scan(struct http1_chunked *st, const char *buf, size_t len, bool at_trailer_line)
{
    enum chunk_state s = (enum chunk_state)st->state;
    size_t i = 0;
    while (i < len && s != CH_DONE && s != CH_ERROR) {
        char c = buf[i];
        if (at_trailer_line && s == CH_TRAILER_FIRST && c != '\r')
            break;
        switch (s) {
        case CH_DATA: {
            size_t take = len - i;
            if (take > st->remaining)
                take = (size_t)st->remaining;
            st->remaining -= take;
            st->data_bytes += take;
            i += take;
            if (st->remaining == 0)
                s = CH_DATA_CR;
            continue;
        }
        case CH_DATA_CR:
            s = c == '\r' ? CH_DATA_LF : CH_ERROR;
            break;
        case CH_DATA_LF:
            s = c == '\n' ? CH_SIZE_FIRST : CH_ERROR;
            st->digits = 0;
            st->line_bytes = 0;
            st->remaining = 0;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                s = CH_ERROR;
            else
                s = st->remaining > 0 ? CH_DATA : CH_TRAILER_FIRST;
            break;
        case CH_TRAILER_FIRST:
        case CH_TRAILER_NAME:
        case CH_TRAILER_VALUE:
        case CH_TRAILER_LF:
            s = ++st->trailer_bytes > CHUNK_TRAILER_MAX ? CH_ERROR : trailer_byte(s, c);
            break;
        case CH_FINAL_LF:
            s = c == '\n' ? CH_DONE : CH_ERROR;
            break;
        default:
            s = ++st->line_bytes > CHUNK_LINE_MAX ? CH_ERROR : size_line_byte(st, s, c);
            break;
        }
        i++;
    }
    st->state = (int)s;
    if (s == CH_ERROR)
        return -1;
    if (s == CH_DONE)
        st->done = true;
    return (ssize_t)i;
}

ssize_t http1_chunked_scan(struct http1_chunked *st, const char *buf, size_t len)
{
    return chunked_scan(st, buf, len, false);
}

/* Fields a recipient must not process from a trailer section (RFC 9110
 * section 6.5.1): framing, routing, request modifiers and conditionals,
 * authentication, response control data, content format, and the
 * connection's own hop-by-hop fields. An application server that merges
 * trailers into its headers would otherwise read a second Content-Length
 * or Host that sluice never judged. */
static bool trailer_is_forbidden(const char *line, size_t len)
{
    static const char *const names[] = {
        "content-length", "transfer-encoding", "trailer", "te", "connection", "keep-alive",
        "proxy-connection", "upgrade", "host", "max-forwards", "expect", "range", "if-match",
        "if-none-match", "if-modified-since", "if-unmodified-since", "if-range", "cache-control",
        "pragma", "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate",
        "authentication-info", "proxy-authentication-info", "cookie", "set-cookie", "age",
        "expires", "date", "location", "retry-after", "vary", "warning", "content-encoding",
        "content-type", "content-range", "content-location", "x-forwarded-for",
        "x-forwarded-host", "x-forwarded-proto", "forwarded", "via", NULL,
    };
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : 0;
    for (const char *const *n = names; *n; n++) {
        if (lower_eq(line, name_len, *n, strlen(*n)))
            return true;
    }
    return false;
}

ssize_t http1_chunked_forward(struct http1_chunked *st, char *buf, size_t *len, size_t hold_max)
{
    size_t i = 0;
    for (;;) {
        ssize_t k = chunked_scan(st, buf + i, *len - i, true);
        if (k < 0)
            return -1;
        i += (size_t)k;
        if (st->done || i == *len) {
            st->held = 0;
            return (ssize_t)i;
        }
        /* A trailer field line starts at i: it is body only once whole. */
        size_t avail = *len - i;
        size_t searched = st->held <= avail ? st->held : 0;
        const char *lf = memchr(buf + i + searched, '\n', avail - searched);
        if (!lf) {
            if (avail > hold_max || st->trailer_bytes + avail > CHUNK_TRAILER_MAX)
                return -1;
            /* Held, but judged byte by byte as it comes, so a bad line is
             * refused as soon as http1_chunked_scan would refuse it. */
            enum chunk_state hs = searched ? (enum chunk_state)st->held_state : CH_TRAILER_FIRST;
            for (size_t k = searched; k < avail; k++)
                if ((hs = trailer_byte(hs, buf[i + k])) == CH_ERROR)
                    return -1;
            st->held_state = (int)hs;
            st->held = (uint32_t)avail;
            return (ssize_t)i;
        }
        st->held = 0;
        size_t line = (size_t)(lf - (buf + i)) + 1;
        if (chunked_scan(st, buf + i, line, false) != (ssize_t)line)
            return -1;
        if (trailer_is_forbidden(buf + i, line)) {
            memmove(buf + i, buf + i + line, *len - i - line);
            *len -= line;
        } else {
            i += line;
        }
    }
}

/* ---- reason phrases (RFC 9110 section 15) ---- */

const char *http1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
