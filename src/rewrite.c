/* rewrite.c - request and response heads as sluice sends them on; see
 * rewrite.h. */
#include "rewrite.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool put(struct buf *b, const void *data, size_t len)
{
    if (len > buf_room(b))
        return false;
    memcpy(buf_end(b), data, len);
    b->tail += (uint32_t)len;
    return true;
}

#define PUT_LITERAL(b, lit) put((b), (lit), sizeof(lit) - 1)

static bool put_header(struct buf *b, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    return put(b, name, name_len) && PUT_LITERAL(b, ": ") && put(b, value, value_len) &&
           PUT_LITERAL(b, "\r\n");
}

static const struct http1_header *find_header(const struct http1_header *hs, uint32_t n,
                                              const char *lower, size_t len)
{
    for (uint32_t i = 0; i < n; i++)
        if (http1_name_is(&hs[i], lower, len))
            return &hs[i];
    return NULL;
}

/* Records where a logged field sits in the rewritten head. */
static void log_view(const struct buf *b, uint32_t at, uint32_t len, const char **ptr, uint32_t *plen)
{
    *ptr = b->data + at;
    *plen = len;
}

static bool put_request_line(struct buf *b, const struct http1_request *r, struct log_request *views)
{
    uint32_t at = b->tail;
    if (!put(b, r->method_text, r->method_len))
        return false;
    log_view(b, at, r->method_len, &views->method, &views->method_len);
    if (!PUT_LITERAL(b, " "))
        return false;
    at = b->tail;
    if (!put(b, r->path, r->path_len))
        return false;
    log_view(b, at, r->path_len, &views->target, &views->target_len);
    /* An HTTP/1.0 client cannot read chunked framing: ask the application
     * for HTTP/1.0 semantics too. */
    return r->version_minor ? PUT_LITERAL(b, " HTTP/1.1\r\n") : PUT_LITERAL(b, " HTTP/1.0\r\n");
}

static bool put_end_to_end_fields(struct buf *b, const struct http1_request *r, bool absolute,
                                  bool drop_expect, struct log_request *views, bool *had_length)
{
    for (uint32_t i = 0; i < r->header_count; i++) {
        const struct http1_header *h = &r->headers[i];
        if (h->flags & (HTTP1_HDR_HOP | HTTP1_HDR_XFF | HTTP1_HDR_XF_OTHER))
            continue;
        if (drop_expect && HTTP1_NAME_IS(h, "expect"))
            continue;
        if (absolute && HTTP1_NAME_IS(h, "host"))
            continue;
        /* Repeated or listed lengths ("5, 5") are legal but read differently
         * by some parsers: the application gets exactly one. */
        if (HTTP1_NAME_IS(h, "content-length")) {
            *had_length = true;
            continue;
        }
        uint32_t at = b->tail + h->name_len + 2;
        if (!put_header(b, h->name, h->name_len, h->value, h->value_len))
            return false;
        if (HTTP1_NAME_IS(h, "user-agent"))
            log_view(b, at, h->value_len, &views->user_agent, &views->user_agent_len);
        else if (HTTP1_NAME_IS(h, "referer"))
            log_view(b, at, h->value_len, &views->referer, &views->referer_len);
        else if (h->flags & HTTP1_HDR_REQ_ID)
            log_view(b, at, h->value_len, &views->request_id, &views->request_id_len);
    }
    return true;
}

/* Host from an absolute target, and what this hop's framing needs. */
static bool put_hop_fields(struct buf *b, const struct http1_request *r, bool absolute, bool had_length)
{
    if (absolute && r->authority_len && !put_header(b, "Host", 4, r->authority, r->authority_len))
        return false;
    if (r->body == HTTP1_BODY_CHUNKED && !PUT_LITERAL(b, "Transfer-Encoding: chunked\r\n"))
        return false;
    if (had_length) {
        char length[48];
        int n = snprintf(length, sizeof(length), "Content-Length: %" PRIu64 "\r\n", r->content_length);
        if (!put(b, length, (size_t)n))
            return false;
    }
    if (r->flags & HTTP1_CONN_UPGRADE) {
        const struct http1_header *up = find_header(r->headers, r->header_count, "upgrade", 7);
        if (!up || !PUT_LITERAL(b, "Connection: upgrade\r\n") ||
            !put_header(b, "Upgrade", 7, up->value, up->value_len))
            return false;
    }
    return true;
}

static bool put_forwarded_for(struct buf *b, const struct http1_request *r, const char *client_ip)
{
    bool first = true;
    if (!PUT_LITERAL(b, "X-Forwarded-For: "))
        return false;
    for (uint32_t i = 0; i < r->header_count; i++) {
        const struct http1_header *h = &r->headers[i];
        if (!(h->flags & HTTP1_HDR_XFF) || h->value_len == 0)
            continue;
        if ((!first && !PUT_LITERAL(b, ", ")) || !put(b, h->value, h->value_len))
            return false;
        first = false;
    }
    if ((!first && !PUT_LITERAL(b, ", ")) || !put(b, client_ip, strlen(client_ip)))
        return false;
    return PUT_LITERAL(b, "\r\n");
}

static bool put_forwarding_fields(struct buf *b, const struct http1_request *r,
                                  const struct rewrite_from *from, struct log_request *views)
{
    if (!put_forwarded_for(b, r, from->client_ip) || !PUT_LITERAL(b, "X-Forwarded-Proto: ") ||
        !put(b, from->proto, strlen(from->proto)) || !PUT_LITERAL(b, "\r\n"))
        return false;
    if (r->authority_len && !put_header(b, "X-Forwarded-Host", 16, r->authority, r->authority_len))
        return false;
    if (!(r->flags & HTTP1_HAS_REQ_ID)) {
        size_t len = strlen(from->request_id);
        uint32_t at = b->tail + 14;
        if (!put_header(b, "X-Request-Id", 12, from->request_id, len))
            return false;
        log_view(b, at, (uint32_t)len, &views->request_id, &views->request_id_len);
    }
    return PUT_LITERAL(b, "\r\n");
}

bool rewrite_request_head(struct buf *out, const struct http1_request *r, const struct rewrite_from *from,
                          struct log_request *views)
{
    bool absolute = r->path != r->target && r->target[0] != '/' && r->target[0] != '*';
    bool had_length = false;
    return put_request_line(out, r, views) &&
           put_end_to_end_fields(out, r, absolute, from->body_buffered, views, &had_length) &&
           put_hop_fields(out, r, absolute, had_length) && put_forwarding_fields(out, r, from, views);
}

/* A chunked body is forwarded as it came, so its Transfer-Encoding goes
 * with it as written: "gzip, chunked" must not lose the gzip. */
static bool put_codings(struct buf *b, const struct http1_response *res)
{
    for (uint32_t i = 0; i < res->header_count; i++) {
        const struct http1_header *h = &res->headers[i];
        if (HTTP1_NAME_IS(h, "transfer-encoding") &&
            !put_header(b, h->name, h->name_len, h->value, h->value_len))
            return false;
    }
    return true;
}

bool rewrite_response_head(struct buf *out, const struct http1_response *res, bool keep_alive,
                           int client_version_minor)
{
    /* Every response passes here: three digits by hand, not snprintf. */
    char line[] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + res->status / 100 % 10);
    line[10] = (char)('0' + res->status / 10 % 10);
    line[11] = (char)('0' + res->status % 10);
    if (!put(out, line, sizeof(line) - 1) || !put(out, res->reason, res->reason_len) || !PUT_LITERAL(out, "\r\n"))
        return false;
    for (uint32_t i = 0; i < res->header_count; i++) {
        const struct http1_header *h = &res->headers[i];
        if (!(h->flags & HTTP1_HDR_HOP) && !put_header(out, h->name, h->name_len, h->value, h->value_len))
            return false;
    }
    if (res->status == 101) {
        const struct http1_header *up = find_header(res->headers, res->header_count, "upgrade", 7);
        if (!PUT_LITERAL(out, "Connection: upgrade\r\n") ||
            (up && !put_header(out, "Upgrade", 7, up->value, up->value_len)))
            return false;
    } else if (res->status >= 200) {
        if (res->body == HTTP1_BODY_CHUNKED && !put_codings(out, res))
            return false;
        if (!keep_alive && !PUT_LITERAL(out, "Connection: close\r\n"))
            return false;
        if (keep_alive && client_version_minor == 0 && !PUT_LITERAL(out, "Connection: keep-alive\r\n"))
            return false;
    }
    return PUT_LITERAL(out, "\r\n");
}

bool rewrite_local_answer(struct buf *out, int status, const char *extra_headers, const char *body,
                          bool keep_alive, bool head_only)
{
    char head[2560];   /* room for a Location of up to 2 KB */
    size_t body_len = strlen(body);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, http1_reason(status), body_len, extra_headers,
                     keep_alive ? "" : "Connection: close\r\n");
    return n > 0 && (size_t)n < sizeof(head) && put(out, head, (size_t)n) &&
           (head_only || put(out, body, body_len));
}

/* The host of an authority already checked by the parser: "[v6]" whole,
 * else what comes before the port. */
static size_t authority_host_len(const char *authority, size_t len)
{
    if (len && authority[0] == '[') {
        const char *close = memchr(authority, ']', len);
        return close ? (size_t)(close - authority) + 1 : 0;
    }
    const char *colon = memchr(authority, ':', len);
    return colon ? (size_t)(colon - authority) : len;
}

int rewrite_https_location(char *out, size_t len, const char *authority, size_t authority_len, int port,
                           const char *path, size_t path_len)
{
    size_t host_len = authority_host_len(authority, authority_len);
    if (host_len == 0)
        return -1;
    if (path_len == 1 && path[0] == '*')
        path = "/";
    char port_text[8] = "";
    if (port != 443)
        snprintf(port_text, sizeof(port_text), ":%d", port);
    int n = snprintf(out, len, "Location: https://%.*s%s%.*s\r\n", (int)host_len, authority, port_text,
                     (int)path_len, path);
    return n > 0 && (size_t)n < len ? n : 0;
}
