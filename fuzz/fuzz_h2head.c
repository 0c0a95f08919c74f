/* fuzz_h2head.c - an HTTP/2 request's field list as the HTTP/1.1 head an
 * application reads (h2head_request).
 *
 * The input is a field list as HPACK hands it over, any bytes allowed in
 * names and values: a first byte whose low bit says whether DATA follows
 * the HEADERS frame and whose next three bits pick the size of the buffer
 * the head is written into, then the fields, each a length byte and the
 * name, a length byte and the value (the last value may be cut short).
 *
 * What must hold whatever the list:
 *   - a request h2head_request accepts is a head http1_parse_request takes
 *     whole, with the :method, the :path (the authority for CONNECT), one
 *     Host that is the authority, the framing h2head_request reported (the
 *     client's length, chunked for a body without one, none without a
 *     body), nothing that asks for an upgrade, a 100-continue or a close,
 *     and no field but the client's own, Host and Transfer-Encoding;
 *   - the verdict does not depend on the buffer: a list refused as
 *     malformed in one is refused in all, one that fits a small buffer is
 *     written the same into a large one;
 *   - a list refused, or a head too large, leaves the buffer as it was.
 */
#include "fuzz.h"

#include <string.h>

#include "h2head.h"

#define FIELDS_MAX 512
#define HEAD_MAX 8192

static const uint32_t buffer_sizes[8] = {16, 64, 128, 256, 512, 1024, 4096, HEAD_MAX};

static struct h2head_field fields[FIELDS_MAX];
static struct http1_header headers[FIELDS_MAX + 4];
static char small_storage[HEAD_MAX], large_storage[HEAD_MAX];

static uint32_t read_fields(const uint8_t *p, const uint8_t *end)
{
    uint32_t n = 0;
    while (end - p >= 2 && n < FIELDS_MAX) {
        size_t name_len = *p++;
        if ((size_t)(end - p) < name_len + 1)
            break;
        const char *name = (const char *)p;
        p += name_len;
        size_t value_len = *p++;
        if ((size_t)(end - p) < value_len)
            value_len = (size_t)(end - p);
        fields[n++] = (struct h2head_field){.name = name, .name_len = (uint32_t)name_len,
                                            .value = (const char *)p, .value_len = (uint32_t)value_len};
        p += value_len;
    }
    return n;
}

static bool field_named(const struct h2head_field *f, const char *lit)
{
    return f->name_len == strlen(lit) && memcmp(f->name, lit, f->name_len) == 0;
}

static const struct h2head_field *find(uint32_t n, const char *lit)
{
    for (uint32_t i = 0; i < n; i++)
        if (field_named(&fields[i], lit))
            return &fields[i];
    return NULL;
}

static bool same(const char *a, size_t alen, const struct h2head_field *f)
{
    return f && alen == f->value_len && memcmp(a, f->value, alen) == 0;
}

/* How many fields of the list reach the head under their own name. */
static uint32_t forwarded_fields(uint32_t n, bool *cookies)
{
    uint32_t count = 0;
    *cookies = false;
    for (uint32_t i = 0; i < n; i++) {
        const struct h2head_field *f = &fields[i];
        if (f->name[0] == ':' || field_named(f, "host") || field_named(f, "expect") || field_named(f, "te"))
            continue;
        if (field_named(f, "cookie"))
            *cookies = true;
        else
            count++;
    }
    return count;
}

/* A parsed field is the client's own, with its value (cookies are joined,
 * Host and Transfer-Encoding are sluice's). */
static void check_field_origin(const struct http1_header *h, uint32_t n)
{
    if (fuzz_count_headers(h, 1, "host") || fuzz_count_headers(h, 1, "cookie") ||
        fuzz_count_headers(h, 1, "transfer-encoding"))
        return;
    for (uint32_t i = 0; i < n; i++)
        if (fields[i].name_len == h->name_len && memcmp(fields[i].name, h->name, h->name_len) == 0 &&
            same(h->value, h->value_len, &fields[i]))
            return;
    fuzz_fail("a field the client did not send", __FILE__, __LINE__);
}

static void check_head(const struct buf *out, uint32_t n, bool has_body, const struct h2head_request *info)
{
    static const struct http1_limits lim = {.head_bytes = HEAD_MAX + 1, .headers = FIELDS_MAX + 4};
    struct http1_request req = {.headers = headers};
    FUZZ_CHECK(http1_parse_request(buf_start(out), buf_len(out), &lim, &req) == HTTP1_OK);
    FUZZ_CHECK(req.head_len == buf_len(out));

    const struct h2head_field *method = find(n, ":method"), *path = find(n, ":path");
    const struct h2head_field *authority = find(n, ":authority");
    if (!authority)
        authority = find(n, "host");
    FUZZ_CHECK(same(req.method_text, req.method_len, method));
    FUZZ_CHECK(same(req.target, req.target_len, req.method == HTTP1_METHOD_CONNECT ? authority : path));
    FUZZ_CHECK(fuzz_count_headers(req.headers, req.header_count, "host") == 1);
    FUZZ_CHECK(same(req.authority, req.authority_len, authority));
    FUZZ_CHECK(!(req.flags & (HTTP1_CONN_UPGRADE | HTTP1_EXPECT_CONTINUE | HTTP1_CONN_CLOSE)));

    FUZZ_CHECK(info->chunked == (has_body && !info->has_length));
    FUZZ_CHECK(has_body || !info->has_length || info->content_length == 0);
    if (info->chunked)
        FUZZ_CHECK(req.body == HTTP1_BODY_CHUNKED);
    else if (info->has_length && info->content_length)
        FUZZ_CHECK(req.body == HTTP1_BODY_LENGTH && req.content_length == info->content_length);
    else
        FUZZ_CHECK(req.body == HTTP1_BODY_NONE);
    FUZZ_CHECK(info->head_method == (req.method == HTTP1_METHOD_HEAD));

    bool cookies;
    uint32_t expected = 1 + forwarded_fields(n, &cookies);
    expected += cookies + info->chunked;
    FUZZ_CHECK(req.header_count == expected);
    for (uint32_t i = 0; i < req.header_count; i++) {
        const struct http1_header *h = &req.headers[i];
        check_field_origin(h, n);
        /* nothing the client sent is hop-by-hop but a Trailer announcement */
        FUZZ_CHECK(!(h->flags & HTTP1_HDR_HOP) || fuzz_count_headers(h, 1, "transfer-encoding") ||
                   fuzz_count_headers(h, 1, "trailer"));
    }
}

int fuzz_h2head_one(const uint8_t *data, size_t len)
{
    if (len == 0)
        return 0;
    bool has_body = data[0] & 1;
    uint32_t n = read_fields(data + 1, data + len);

    struct buf large = {.data = large_storage, .cap = HEAD_MAX};
    struct h2head_request info;
    enum h2head_result r = h2head_request(&large, fields, n, has_body, &info);
    FUZZ_CHECK(r == H2HEAD_OK || r == H2HEAD_MALFORMED || r == H2HEAD_TOO_LARGE);
    FUZZ_CHECK(r == H2HEAD_OK || buf_len(&large) == 0);
    if (r == H2HEAD_OK)
        check_head(&large, n, has_body, &info);

    struct buf small = {.data = small_storage, .cap = buffer_sizes[(data[0] >> 1) & 7]};
    struct h2head_request small_info;
    enum h2head_result rs = h2head_request(&small, fields, n, has_body, &small_info);
    FUZZ_CHECK((rs == H2HEAD_MALFORMED) == (r == H2HEAD_MALFORMED));
    FUZZ_CHECK(rs != H2HEAD_OK || (r == H2HEAD_OK && buf_len(&small) == buf_len(&large) &&
                                   memcmp(small_storage, large_storage, buf_len(&large)) == 0));
    FUZZ_CHECK(rs == H2HEAD_OK || buf_len(&small) == 0);
    return 0;
}

/* the libFuzzer entry point, in `make fuzz` builds only */
FUZZ_TARGET(fuzz_h2head_one)
