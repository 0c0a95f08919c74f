/* fuzz_common.c - what the HTTP harnesses share: the failure report, the
 * piece generator, header view checks and the chunked-body cross-check.
 *
 * The checks here are written without http1.c's tables on purpose: an
 * invariant restated independently catches the parser's own mistake, where
 * reusing its code would only repeat it. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fuzz_input_name;

void fuzz_fail(const char *what, const char *file, int line)
{
    if (fuzz_input_name)
        fprintf(stderr, "fuzz: invariant broken at %s:%d: %s (input %s)\n", file, line, what,
                fuzz_input_name);
    else
        fprintf(stderr, "fuzz: invariant broken at %s:%d: %s\n", file, line, what);
    abort();
}

/* ---- pieces ---- */

struct fuzz_rng fuzz_rng_seed(const uint8_t *data, size_t len)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);     /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ data[i]) * UINT64_C(0x100000001b3);
    return (struct fuzz_rng){.state = h};
}

static uint64_t rng_next(struct fuzz_rng *rng)
{
    uint64_t z = (rng->state += UINT64_C(0x9e3779b97f4a7c15));     /* splitmix64 */
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

size_t fuzz_rng_piece(struct fuzz_rng *rng, size_t max)
{
    uint64_t r = rng_next(rng);
    size_t cap = (r & 1) && max > 4 ? 4 : max;
    return 1 + (size_t)((r >> 1) % cap);
}

bool fuzz_view_inside(const char *p, size_t n, const char *base, size_t len)
{
    return p != NULL && p >= base && n <= len && (size_t)(p - base) <= len - n;
}

/* ---- header views ---- */

/* tchar (RFC 9110 5.6.2), restated */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

void fuzz_check_headers(const struct http1_header *hs, uint32_t count, const char *base,
                        size_t head_len)
{
    const uint32_t known = HTTP1_HDR_HOP | HTTP1_HDR_XFF | HTTP1_HDR_XF_OTHER | HTTP1_HDR_REQ_ID;
    for (uint32_t i = 0; i < count; i++) {
        const struct http1_header *h = &hs[i];
        FUZZ_CHECK(h->name_len > 0);
        FUZZ_CHECK(fuzz_view_inside(h->name, h->name_len, base, head_len));
        FUZZ_CHECK(fuzz_view_inside(h->value, h->value_len, base, head_len));
        FUZZ_CHECK(h->value >= h->name + h->name_len + 1);     /* after the colon */
        FUZZ_CHECK(h->name[h->name_len] == ':');               /* no space before it */
        FUZZ_CHECK((h->flags & ~known) == 0);
        for (uint32_t k = 0; k < h->name_len; k++)
            FUZZ_CHECK(is_tchar((unsigned char)h->name[k]));
        for (uint32_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h->value_len > 0) {
            FUZZ_CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            FUZZ_CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
        /* the line ends right after the value and its trailing OWS */
        const char *p = h->value + h->value_len;
        while (*p == ' ' || *p == '\t')
            p++;
        FUZZ_CHECK(p[0] == '\r' && p[1] == '\n');
        FUZZ_CHECK((size_t)(p + 2 - base) <= head_len);
    }
}

uint32_t fuzz_count_headers(const struct http1_header *hs, uint32_t count, const char *lower)
{
    size_t n = strlen(lower);
    uint32_t found = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (hs[i].name_len != n)
            continue;
        size_t k = 0;
        while (k < n && (hs[i].name[k] | 0x20) == lower[k])
            k++;
        found += k == n;
    }
    return found;
}

/* ---- chunked bodies ---- */

struct scan_outcome {
    ssize_t taken;           /* bytes of the body, or -1 when refused */
    bool done;
    uint64_t data_bytes;
};

/* Feeds body to a fresh scanner in pieces of `piece` bytes (0: drawn from
 * rng), as the proxy does with whatever each read brought. */
static struct scan_outcome scan_in_pieces(const char *body, size_t len, size_t piece,
                                          struct fuzz_rng *rng)
{
    struct http1_chunked st = {0};
    size_t at = 0;
    while (at < len && !st.done) {
        size_t n = piece ? piece : fuzz_rng_piece(rng, len - at);
        if (n > len - at)
            n = len - at;
        ssize_t r = http1_chunked_scan(&st, body + at, n);
        if (r < 0) {
            FUZZ_CHECK(http1_chunked_scan(&st, body + at, n) < 0);     /* refusal sticks */
            return (struct scan_outcome){.taken = -1};
        }
        FUZZ_CHECK((size_t)r <= n);
        FUZZ_CHECK(st.done || (size_t)r == n);      /* an unfinished body takes all it is given */
        at += (size_t)r;
    }
    if (st.done && at < len)
        FUZZ_CHECK(http1_chunked_scan(&st, body + at, len - at) == 0);     /* nothing after the end */
    FUZZ_CHECK(st.data_bytes <= at);
    return (struct scan_outcome){.taken = (ssize_t)at, .done = st.done, .data_bytes = st.data_bytes};
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Walks a body the scanner accepted as complete, by RFC 9112 7.1's shape:
 * chunk-size [ext] CRLF data CRLF ... "0" [ext] CRLF *(trailer CRLF) CRLF.
 * It must end exactly at len and carry data_bytes of data. */
static void check_chunked_shape(const char *b, size_t len, uint64_t data_bytes)
{
    size_t at = 0;
    uint64_t total = 0;
    for (;;) {
        uint64_t size = 0;
        int digits = 0;
        for (; at < len && hex_digit(b[at]) >= 0; at++, digits++)
            size = size << 4 | (uint64_t)hex_digit(b[at]);
        FUZZ_CHECK(digits >= 1 && digits <= 16);
        FUZZ_CHECK(size < UINT64_C(1) << 63);
        /* extensions start with ';' and hold no CR or LF, even quoted */
        FUZZ_CHECK(at < len && (b[at] == '\r' || b[at] == ';'));
        while (at < len && b[at] != '\r') {
            FUZZ_CHECK(b[at] != '\n');
            at++;
        }
        FUZZ_CHECK(len - at >= 2 && b[at + 1] == '\n');
        at += 2;
        if (size == 0)
            break;
        FUZZ_CHECK(len - at >= size + 2);
        at += (size_t)size;
        FUZZ_CHECK(b[at] == '\r' && b[at + 1] == '\n');
        at += 2;
        total += size;
    }
    /* trailer lines, each a name, a colon and a value, then the empty line */
    while (!(len - at >= 2 && b[at] == '\r' && b[at + 1] == '\n')) {
        size_t start = at;
        while (at < len && is_tchar((unsigned char)b[at]))
            at++;
        FUZZ_CHECK(at > start && at < len && b[at] == ':');
        while (at < len && b[at] != '\r') {
            FUZZ_CHECK(b[at] != '\n');
            at++;
        }
        FUZZ_CHECK(len - at >= 2 && b[at + 1] == '\n');
        at += 2;
    }
    FUZZ_CHECK(at + 2 == len);
    FUZZ_CHECK(total == data_bytes);
}

/* Forwards body as the proxy does (http1_chunked_forward over a buffer
 * that pieces of it arrive in, the returned bytes leaving at once) into
 * out. Returns the bytes forwarded once the body ended, -1 when refused,
 * -2 when the input ran out first. */
static ssize_t forward_in_pieces(const char *body, size_t len, struct fuzz_rng *rng, char *out)
{
    char *buf = malloc(len + 1);
    struct http1_chunked st = {0};
    size_t in = 0, have = 0, sent = 0;
    ssize_t result = -2;
    FUZZ_CHECK(buf != NULL);
    while (in < len || (have && have > st.held)) {
        size_t n = in < len ? fuzz_rng_piece(rng, len - in) : 0;
        memcpy(buf + have, body + in, n);
        in += n;
        have += n;
        size_t now = have;
        ssize_t r = http1_chunked_forward(&st, buf, &now, len + 1);
        if (r < 0) {
            result = -1;
            break;
        }
        FUZZ_CHECK((size_t)r <= now && now <= have);
        memcpy(out + sent, buf, (size_t)r);
        sent += (size_t)r;
        memmove(buf, buf + r, now - (size_t)r);
        have = now - (size_t)r;
        if (st.done) {
            /* what follows the body is left untouched */
            FUZZ_CHECK(memcmp(buf, body + in - have, have) == 0);
            result = (ssize_t)sent;
            break;
        }
        FUZZ_CHECK(have == st.held);   /* only an unfinished trailer line waits */
    }
    free(buf);
    return result;
}

/* A trailer section that sluice forwarded carries no field that frames or
 * routes the message. */
static void check_forwarded_trailers(const char *b, size_t len)
{
    static const char *const framing[] = {"content-length", "transfer-encoding", "host", "trailer", NULL};
    const char *end = b + len;
    const char *p = b;
    /* skip to the line after the last chunk's size line ("0...CRLF") */
    for (;;) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        FUZZ_CHECK(lf != NULL);
        uint64_t size = 0;
        for (const char *q = p; q < lf && hex_digit(*q) >= 0; q++)
            size = size << 4 | (uint64_t)hex_digit(*q);
        p = lf + 1;
        if (size == 0)
            break;
        p += size + 2;
    }
    while (end - p > 2) {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        FUZZ_CHECK(colon && lf && colon < lf);
        for (const char *const *n = framing; *n; n++) {
            size_t nl = strlen(*n);
            bool same = (size_t)(colon - p) == nl;
            for (size_t i = 0; same && i < nl; i++)
                same = (p[i] | 0x20) == (*n)[i];
            FUZZ_CHECK(!same);
        }
        p = lf + 1;
    }
}

ssize_t fuzz_check_chunked(const char *body, size_t len, struct fuzz_rng *rng)
{
    struct scan_outcome whole = scan_in_pieces(body, len, len ? len : 1, rng);
    struct scan_outcome bytes = scan_in_pieces(body, len, 1, rng);
    struct scan_outcome split = scan_in_pieces(body, len, 0, rng);
    FUZZ_CHECK(whole.taken == bytes.taken && whole.taken == split.taken);
    FUZZ_CHECK(whole.done == bytes.done && whole.done == split.done);
    FUZZ_CHECK(whole.data_bytes == bytes.data_bytes && whole.data_bytes == split.data_bytes);
    /* forwarding refuses, completes or runs out exactly where scanning does */
    char *out = malloc(len + 1);
    FUZZ_CHECK(out != NULL);
    ssize_t forwarded = forward_in_pieces(body, len, rng, out);
    FUZZ_CHECK(whole.taken < 0 ? forwarded == -1 : whole.done ? forwarded >= 0 : forwarded == -2);
    if (forwarded >= 0) {
        FUZZ_CHECK(forwarded <= whole.taken);
        check_chunked_shape(out, (size_t)forwarded, whole.data_bytes);
        check_forwarded_trailers(out, (size_t)forwarded);
    }
    free(out);
    if (whole.taken < 0 || !whole.done)
        return -1;
    check_chunked_shape(body, (size_t)whole.taken, whole.data_bytes);
    return whole.taken;
}

ssize_t fuzz_body_taken(enum http1_body kind, uint64_t content_length, const char *body,
                        size_t left, struct fuzz_rng *rng)
{
    switch (kind) {
    case HTTP1_BODY_NONE:
        return 0;
    case HTTP1_BODY_LENGTH:
        return content_length <= left ? (ssize_t)content_length : -1;
    case HTTP1_BODY_CHUNKED:
        return fuzz_check_chunked(body, left, rng);
    default:
        return -1;
    }
}
