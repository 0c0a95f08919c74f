/* h2head.c - HTTP/2 field lists to HTTP/1.1 heads and back; see h2head.h.
 *
 * The request side is strict in the same spirit as http1.c: whatever an
 * HTTP/2 client could send that an HTTP/1.1 parser might read differently
 * (a CR or LF smuggled into a value, a second framing, a Host that
 * disagrees with :authority) makes the request malformed rather than being
 * repaired, because the head written here is what the application sees.
 */
#include "h2head.h"

#include <string.h>

#define PUT_LITERAL(b, lit) buf_put((b), (lit), sizeof(lit) - 1)

static bool name_is(const struct h2head_field *f, const char *lit)
{
    size_t len = strlen(lit);
    return f->name_len == len && memcmp(f->name, lit, len) == 0;
}

/* RFC 9110 section 5.6.2 tchar, lower case only (RFC 9113 section 8.2.1). */
static bool lower_token_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool token_char(unsigned char c)
{
    return lower_token_char(c) || (c >= 'A' && c <= 'Z');
}

static bool valid_name(const char *s, uint32_t len)
{
    if (len == 0)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (!lower_token_char((unsigned char)s[i]))
            return false;
    return true;
}

/* No NUL, CR or LF (section 8.2.1), no other control byte but HTAB and no
 * whitespace at either end: what http1.c would accept in a value. */
static bool valid_value(const char *s, uint32_t len)
{
    if (len && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t'))
        return false;
    for (uint32_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Section 8.2.2: fields that only mean something to one HTTP/1.1 hop. */
static bool connection_specific(const struct h2head_field *f)
{
    return name_is(f, "connection") || name_is(f, "keep-alive") || name_is(f, "proxy-connection") ||
           name_is(f, "transfer-encoding") || name_is(f, "upgrade") ||
           (name_is(f, "te") && !(f->value_len == 8 && memcmp(f->value, "trailers", 8) == 0));
}

/* The pseudo-headers of a request, each at most once. */
struct pseudo {
    const struct h2head_field *method, *scheme, *authority, *path;
};

static bool take_pseudo(struct pseudo *p, const struct h2head_field *f)
{
    const struct h2head_field **slot = name_is(f, ":method")      ? &p->method
                                       : name_is(f, ":scheme")    ? &p->scheme
                                       : name_is(f, ":authority") ? &p->authority
                                       : name_is(f, ":path")      ? &p->path
                                                                  : NULL;
    if (!slot || *slot)
        return false;   /* unknown (":protocol" included) or repeated */
    *slot = f;
    return true;
}

static bool valid_method(const struct h2head_field *m)
{
    if (m->value_len == 0)
        return false;
    for (uint32_t i = 0; i < m->value_len; i++)
        if (!token_char((unsigned char)m->value[i]))
            return false;
    return true;
}

/* Section 8.3.1: origin-form, or "*" for OPTIONS; checked as http1.c
 * checks a request line's target, so that the head written here is never
 * one the application's parser reads another way. */
static bool valid_path(const struct h2head_field *path, const struct h2head_field *method)
{
    if (path->value_len == 1 && path->value[0] == '*')
        return method->value_len == 7 && memcmp(method->value, "OPTIONS", 7) == 0;
    return http1_valid_origin_form(path->value, path->value_len);
}

/* sluice serves http and https resources only; the scheme is not
 * forwarded, but another one names nothing an application could serve. */
static bool valid_scheme(const struct h2head_field *scheme)
{
    return (scheme->value_len == 4 && memcmp(scheme->value, "http", 4) == 0) ||
           (scheme->value_len == 5 && memcmp(scheme->value, "https", 5) == 0);
}

/* CGI-style gateways read '_' as '-': a second framing field in disguise,
 * refused as http1.c refuses it. */
static bool framing_lookalike(const struct h2head_field *f)
{
    return name_is(f, "content_length") || name_is(f, "transfer_encoding");
}

static bool parse_length(const struct h2head_field *f, uint64_t *out)
{
    /* 1*DIGIT below 2^63, as http1.c reads a Content-Length */
    uint64_t v = 0;
    if (f->value_len == 0)
        return false;
    for (uint32_t i = 0; i < f->value_len; i++) {
        if (f->value[i] < '0' || f->value[i] > '9')
            return false;
        uint64_t digit = (uint64_t)(f->value[i] - '0');
        if (v > (UINT64_C(0x7fffffffffffffff) - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

static bool same_text_nocase(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* Checks every field; fills the pseudo-headers and what the head needs. */
static enum h2head_result check_fields(const struct h2head_field *f, uint32_t n, bool has_body,
                                       struct pseudo *p, struct h2head_request *info)
{
    const struct h2head_field *host = NULL;
    bool regular_seen = false;
    for (uint32_t i = 0; i < n; i++) {
        const struct h2head_field *h = &f[i];
        if (!valid_value(h->value, h->value_len))
            return H2HEAD_MALFORMED;
        if (h->name_len && h->name[0] == ':') {
            /* Section 8.3: pseudo-headers come first, each once. */
            if (regular_seen || !take_pseudo(p, h))
                return H2HEAD_MALFORMED;
            continue;
        }
        regular_seen = true;
        if (!valid_name(h->name, h->name_len) || connection_specific(h) || framing_lookalike(h))
            return H2HEAD_MALFORMED;
        if (name_is(h, "host")) {
            if (host)
                return H2HEAD_MALFORMED;
            host = h;
        } else if (name_is(h, "content-length")) {
            uint64_t v;
            if (!parse_length(h, &v) || (info->has_length && v != info->content_length))
                return H2HEAD_MALFORMED;
            info->has_length = true;
            info->content_length = v;
        }
    }
    if (!p->method || !valid_method(p->method))
        return H2HEAD_MALFORMED;
    bool connect = p->method->value_len == 7 && memcmp(p->method->value, "CONNECT", 7) == 0;
    /* Section 8.5: CONNECT names only an authority; everything else needs
     * a scheme and a path (section 8.3.1). */
    if (connect ? (p->scheme || p->path || !p->authority)
                : (!p->scheme || !valid_scheme(p->scheme) || !p->path || !valid_path(p->path, p->method)))
        return H2HEAD_MALFORMED;
    if (host && p->authority &&
        !same_text_nocase(host->value, host->value_len, p->authority->value, p->authority->value_len))
        return H2HEAD_MALFORMED;
    if (!p->authority)
        p->authority = host;
    /* HTTP/1.1 needs a Host, and it is uri-host [ ":" port ]: no userinfo
     * (section 8.3.1), nothing a Host parser could split; CONNECT's is
     * the authority-form, with its port. */
    if (!p->authority || !http1_valid_authority(p->authority->value, p->authority->value_len, connect))
        return H2HEAD_MALFORMED;
    if (!has_body && info->has_length && info->content_length)
        return H2HEAD_MALFORMED;   /* section 8.1.1: the length must match the DATA */
    info->head_method = p->method->value_len == 4 && memcmp(p->method->value, "HEAD", 4) == 0;
    info->chunked = has_body && !info->has_length;
    return H2HEAD_OK;
}

static bool put_field(struct buf *b, const char *name, uint32_t name_len, const char *value, uint32_t value_len)
{
    return buf_put(b, name, name_len) && PUT_LITERAL(b, ": ") && buf_put(b, value, value_len) && PUT_LITERAL(b, "\r\n");
}

/* Section 8.2.3: crumbs of a split cookie go back together on one line. */
static bool put_cookie(struct buf *b, const struct h2head_field *f, uint32_t n)
{
    bool first = true;
    for (uint32_t i = 0; i < n; i++) {
        if (!name_is(&f[i], "cookie"))
            continue;
        if (!(first ? PUT_LITERAL(b, "cookie: ") : PUT_LITERAL(b, "; ")) || !buf_put(b, f[i].value, f[i].value_len))
            return false;
        first = false;
    }
    return first || PUT_LITERAL(b, "\r\n");
}

static bool put_head(struct buf *b, const struct h2head_field *f, uint32_t n, const struct pseudo *p,
                     const struct h2head_request *info)
{
    const struct h2head_field *target = p->path ? p->path : p->authority;
    if (!buf_put(b, p->method->value, p->method->value_len) || !PUT_LITERAL(b, " ") ||
        !buf_put(b, target->value, target->value_len) || !PUT_LITERAL(b, " HTTP/1.1\r\n") ||
        !put_field(b, "host", 4, p->authority->value, p->authority->value_len))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const struct h2head_field *h = &f[i];
        /* The client's Expect is for this hop (there is no 100-continue
         * to give it over HTTP/2 here); te: trailers is the only te left. */
        if (h->name[0] == ':' || name_is(h, "host") || name_is(h, "cookie") || name_is(h, "expect") ||
            name_is(h, "te"))
            continue;
        if (!put_field(b, h->name, h->name_len, h->value, h->value_len))
            return false;
    }
    if (!put_cookie(b, f, n))
        return false;
    if (info->chunked && !PUT_LITERAL(b, "transfer-encoding: chunked\r\n"))
        return false;
    return PUT_LITERAL(b, "\r\n");
}

enum h2head_result h2head_request(struct buf *out, const struct h2head_field *f, uint32_t n, bool has_body,
                                  struct h2head_request *info)
{
    struct pseudo p = {0};
    *info = (struct h2head_request){0};
    enum h2head_result r = check_fields(f, n, has_body, &p, info);
    if (r != H2HEAD_OK)
        return r;
    uint32_t start = out->tail;
    if (!put_head(out, f, n, &p, info)) {
        out->tail = start;
        return H2HEAD_TOO_LARGE;
    }
    return H2HEAD_OK;
}

static nghttp2_nv make_nv(const char *name, size_t name_len, const char *value, size_t value_len)
{
    return (nghttp2_nv){.name = (uint8_t *)name, .namelen = name_len, .value = (uint8_t *)value,
                        .valuelen = value_len, .flags = NGHTTP2_NV_FLAG_NONE};
}

static void lower_into(char *to, const char *from, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = from[i];
        to[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
}

int h2head_response(const struct http1_response *res, nghttp2_nv *nv, size_t nv_max, char status[4])
{
    size_t n = 0;
    if (nv_max == 0)
        return -1;
    status[0] = (char)('0' + res->status / 100 % 10);
    status[1] = (char)('0' + res->status / 10 % 10);
    status[2] = (char)('0' + res->status % 10);
    status[3] = '\0';
    nv[n++] = make_nv(":status", 7, status, 3);
    for (uint32_t i = 0; i < res->header_count; i++) {
        const struct http1_header *h = &res->headers[i];
        if (h->flags & HTTP1_HDR_HOP)
            continue;
        if (n == nv_max)
            return -1;
        lower_into((char *)h->name, h->name, h->name_len);
        nv[n++] = make_nv(h->name, h->name_len, h->value, h->value_len);
    }
    return (int)n;
}

int h2head_trailers(char *lines, size_t len, nghttp2_nv *nv, size_t nv_max)
{
    size_t n = 0;
    char *p = lines, *end = lines + len;
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *colon = memchr(p, ':', (size_t)(end - p));
        if (!eol || eol == p || eol[-1] != '\r' || !colon || colon > eol || colon == p || n == nv_max)
            return -1;
        char *v = colon + 1, *vend = eol - 1;
        while (v < vend && (*v == ' ' || *v == '\t'))
            v++;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        lower_into(p, p, (size_t)(colon - p));
        nv[n++] = make_nv(p, (size_t)(colon - p), v, (size_t)(vend - v));
        p = eol + 1;
    }
    return (int)n;
}

enum { DC_SIZE, DC_EXTENSION, DC_DATA, DC_DATA_END, DC_TRAILER_START, DC_TRAILER, DC_END };

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void keep_trailer_byte(struct buf *trailers, char c)
{
    if (trailers && trailers->data && buf_room(trailers) >= 2) {
        if (c == '\n')
            trailers->data[trailers->tail++] = '\r';
        trailers->data[trailers->tail++] = c;
    }
}

static void end_size_line(struct h2head_dechunk *d)
{
    d->state = d->remaining ? DC_DATA : DC_TRAILER_START;
    d->in_trailers = d->remaining == 0;
}

/* One framing byte (not chunk data). The exchange validated the framing,
 * so a CR is always followed by LF and is skipped; trailer lines are
 * kept with their CRLF. */
static void dechunk_framing(struct h2head_dechunk *d, char c, struct buf *trailers)
{
    if (c == '\r')
        return;
    switch (d->state) {
    case DC_SIZE:
        if (hex_value(c) >= 0)
            d->remaining = d->remaining * 16 + (uint64_t)hex_value(c);
        else if (c == '\n')
            end_size_line(d);
        else
            d->state = DC_EXTENSION;
        return;
    case DC_EXTENSION:
        if (c == '\n')
            end_size_line(d);
        return;
    case DC_DATA_END:
        if (c == '\n')
            d->state = DC_SIZE;
        return;
    case DC_TRAILER_START:
        if (c == '\n') {
            d->done = true;   /* the blank line: the body is over */
            d->state = DC_END;
            return;
        }
        d->state = DC_TRAILER;
        keep_trailer_byte(trailers, c);
        return;
    case DC_TRAILER:
        if (c == '\n')
            d->state = DC_TRAILER_START;
        keep_trailer_byte(trailers, c);
        return;
    default:
        return;
    }
}

size_t h2head_dechunk(struct h2head_dechunk *d, const char *in, size_t len, char *dst, size_t room,
                      size_t *produced, struct buf *trailers)
{
    size_t used = 0, out = 0;
    while (used < len && !d->done) {
        if (d->state == DC_DATA) {
            size_t take = len - used;
            if (take > d->remaining)
                take = (size_t)d->remaining;
            if (take > room - out)
                take = room - out;
            if (take == 0)
                break;   /* dst is full */
            memmove(dst + out, in + used, take);
            out += take;
            used += take;
            d->remaining -= take;
            if (d->remaining == 0)
                d->state = DC_DATA_END;
            continue;
        }
        bool before = d->in_trailers;
        dechunk_framing(d, in[used++], trailers);
        if (d->in_trailers && !before)
            break;   /* the caller may want room for the trailers now */
    }
    *produced = out;
    return used;
}
