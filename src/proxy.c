/* proxy.c - one request, one straight path: accept -> read head -> parse ->
 * pick -> connect or reuse -> forward -> stream back -> log -> keep-alive.
 *
 * A struct client is one accepted connection. While it forwards a request
 * it owns one struct upstream (a connection to an application); between
 * requests idle upstreams wait in the worker's per-application list.
 *
 * Both directions run at once (an application may answer before the body
 * has arrived, and Expect: 100-continue needs the 100 to flow back while the
 * client waits), so a forwarding client is not a linear sequence of states
 * but two small ones: the request side (body still coming or done) and the
 * response side (waiting for a head, streaming a body, done). client_step
 * moves whatever bytes can move and reports whether anything did.
 *
 * Sockets are edge-triggered: each side remembers can_read / can_write and
 * clears them when a read or write comes up short, so no syscall is made
 * that is known to fail, and no epoll_ctl is made per request.
 *
 * Buffers (buf.h) are taken from the worker's free list only while bytes
 * are in flight:
 *   c->in   request bytes from the client (head, body, pipelined requests)
 *   c->fwd  the request head as sluice rewrote it for the application; kept
 *           until the response begins so that a failed attempt can be sent
 *           again elsewhere, and the access log reads its fields from here
 *   c->out  response heads and sluice's own answers for the client
 *   u->in   response bytes from the application
 * Bodies are never copied: they are written from the buffer they were read
 * into, with writev putting a head and the first body bytes in one call.
 */
#include "proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "http1.h"
#include "net.h"
#include "tls.h"

/* Steps a connection may take per event before others get a turn. */
#define CLIENT_BUDGET 16
#define MAX_ATTEMPTS 101
/* How long a closing connection keeps reading so that unread request bytes
 * do not turn our last answer into a reset (RFC 9112 section 9.6). */
#define LINGER_MS 2000
#define IDLE_UPSTREAMS_PER_APP 256

enum client_phase {
    PHASE_IDLE,        /* keep-alive, waiting for a request; holds no buffers */
    PHASE_HEAD,        /* reading a request head */
    PHASE_FORWARD,     /* a request is with an application */
    PHASE_LOCAL,       /* sending an answer of sluice's own */
    PHASE_TUNNEL,      /* after 101 Switching Protocols: bytes both ways */
    PHASE_LINGER,      /* answered and shut down for writing; draining input */
    PHASE_CLOSED,
};

enum request_side { REQ_BODY, REQ_DONE };
enum response_side { RESP_WAIT, RESP_BODY, RESP_DONE };

struct upstream {
    struct loop_io io;
    struct worker *w;
    struct app *app;
    struct client *client;          /* NULL while idle */
    struct upstream *next, *prev;   /* idle list, or free/closed list (next only) */
    struct loop_timer timer;
    int64_t last_activity;          /* loop ms of the last byte either way */
    struct buf in;
    struct ssl_st *ssl;             /* NULL unless the application has tls = true */
    bool can_read, can_write;
    bool peer_closed;               /* EPOLLRDHUP/HUP/ERR seen */
    bool connecting;
    bool handshaking;               /* TLS handshake under way */
    bool reused;                    /* came from the idle list */
    bool closed;
};

struct client {
    struct loop_io io;
    struct worker *w;
    struct client *next, *prev;     /* w->clients, or free/closed list (next only) */
    struct client *pending_next;
    struct loop_timer timer;
    int64_t last_activity;          /* loop ms of the last byte to or from the client */
    struct buf in, fwd, out;
    struct upstream *up;
    enum client_phase phase;
    bool can_read, can_write;
    bool peer_closed;               /* EPOLLRDHUP/HUP/ERR seen */
    bool tunnel_in_done;            /* tunnel: the client finished sending */
    bool tunnel_out_done;           /* tunnel: the application finished sending */
    bool keep_alive;                /* the connection stays open after this answer */
    bool in_pending;
    bool head_dirty;                /* c->in has bytes not yet tried as a head */
    char ip[48];
    uint32_t head_scanned;          /* bytes of the head in c->in searched for its end
                                       already (http1_request_head_ready) */

    /* the request in flight */
    struct http1_request req;           /* its header views are valid only in the step
                                           that parsed it (w->headers is shared) */
    uint64_t hash_key;                  /* for algorithm = "hash", kept for retries */
    enum request_side req_side;
    uint64_t req_body_left;
    struct http1_chunked req_chunked;
    uint32_t req_ready;                 /* body bytes at c->in's start, checked, not yet sent */
    bool sent_any;                      /* this attempt wrote bytes to the application */
    bool upload_failed;                 /* a write to the application failed: send no more */
    bool retryable;                     /* idempotent and bodiless: may be sent again */
    int attempts;
    int fail_status;                    /* how the last try failed, if not 502 (504) */
    uint16_t tried[MAX_ATTEMPTS];       /* application indexes (config caps their count) */

    /* the response */
    struct http1_response res;          /* the same holds for its header views */
    enum response_side resp_side;
    uint64_t resp_body_left;
    struct http1_chunked resp_chunked;
    uint32_t resp_ready;                /* body bytes at u->in's start, checked, not yet sent */
    bool resp_complete;                 /* every body byte has been read from the application */
    bool resp_started;                  /* a final response head was produced for the client */
    bool upstream_reusable;

    /* for the access log; the views point into c->in or c->fwd */
    struct log_request log;
    int64_t start_us;
    struct app *app;                    /* the application that answered, if any */
    char request_id[40];
};

static void client_run(struct client *c);
static void client_close(struct client *c);
static int account_request_body(struct client *c);
static int fail_request(struct client *c, int status);
static int account_response_body(struct client *c);
static void upstream_close(struct upstream *u);
static void answer_local(struct client *c, int status, const char *extra_headers, const char *body);

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Appends to a buffer; false when it does not fit (the caller answers 431
 * or 502: a rewritten head larger than a buffer is refused, not split). */
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

static bool method_is_idempotent(enum http1_method m)
{
    /* RFC 9110 section 9.2.2 */
    return m == HTTP1_METHOD_GET || m == HTTP1_METHOD_HEAD || m == HTTP1_METHOD_OPTIONS ||
           m == HTTP1_METHOD_TRACE || m == HTTP1_METHOD_PUT || m == HTTP1_METHOD_DELETE;
}

static void mark_pending(struct client *c)
{
    if (c->in_pending)
        return;
    c->in_pending = true;
    c->pending_next = c->w->pending;
    c->w->pending = c;
}

/* Reads into b. Returns bytes read, 0 when nothing is there now, -1 at end
 * of stream or on error (errno says which; 0 for end of stream). peer_closed
 * says the peer's FIN or reset was already reported: its edge has passed. */
static ssize_t read_into(int fd, struct buf *b, bool *can_read, bool peer_closed)
{
    size_t room = buf_room(b);
    ssize_t n = read(fd, buf_end(b), room);
    if (n > 0) {
        b->tail += (uint32_t)n;
        /* A short read drained the socket; the next edge will tell us
         * when more arrives - unless the end of the stream already came,
         * which no further edge will announce. */
        if ((size_t)n < room && !peer_closed)
            *can_read = false;
        return n;
    }
    if (n == 0) {
        errno = 0;
        return -1;
    }
    if (errno == EAGAIN || errno == EINTR) {
        *can_read = errno == EINTR;
        return 0;
    }
    return -1;
}

/* Writes up to two pieces with one call. Returns bytes written, 0 when the
 * socket is full, -1 on error. */
static ssize_t write_two(int fd, const char *a, size_t alen, const char *b, size_t blen,
                         bool *can_write)
{
    struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
    struct iovec *first = alen ? iov : iov + 1;   /* skip an empty first piece */
    ssize_t n = writev(fd, first, alen && blen ? 2 : 1);
    if (n >= 0) {
        if ((size_t)n < alen + blen)
            *can_write = false;
        return n;
    }
    if (errno == EAGAIN || errno == EINTR) {
        *can_write = errno == EINTR;
        return 0;
    }
    return -1;
}

/* Reads from an application, in the clear or through TLS; the same
 * contract as read_into. */
static ssize_t upstream_read(struct upstream *u)
{
    if (!u->ssl)
        return read_into(u->io.fd, &u->in, &u->can_read, u->peer_closed);
    ssize_t n = tls_read(u->ssl, buf_end(&u->in), buf_room(&u->in));
    if (n > 0) {
        /* No short-read shortcut here: OpenSSL may hold decrypted bytes
         * that no new edge will announce. */
        u->in.tail += (uint32_t)n;
        return n;
    }
    if (n == -EAGAIN) {
        u->can_read = false;
        return 0;
    }
    errno = n == 0 ? 0 : (int)-n;
    return -1;
}

/* Writes to an application; the same contract as write_two. Through TLS
 * only the first non-empty piece goes per call. */
static ssize_t upstream_write(struct upstream *u, const char *a, size_t alen, const char *b, size_t blen)
{
    if (!u->ssl)
        return write_two(u->io.fd, a, alen, b, blen, &u->can_write);
    ssize_t n = alen ? tls_write(u->ssl, a, alen) : tls_write(u->ssl, b, blen);
    if (n > 0)
        return n;
    if (n == -EAGAIN) {
        u->can_write = false;
        return 0;
    }
    errno = (int)-n;
    return -1;
}

/* ------------------------------------------------------------------ */
/* object lifetimes                                                    */

static struct client *client_alloc(struct worker *w)
{
    struct client *c = w->free_clients;
    if (c) {
        w->free_clients = c->next;
        memset(c, 0, sizeof(*c));
        return c;
    }
    return calloc(1, sizeof(*c));
}

static struct upstream *upstream_alloc(struct worker *w)
{
    struct upstream *u = w->free_upstreams;
    if (u) {
        w->free_upstreams = u->next;
        memset(u, 0, sizeof(*u));
        return u;
    }
    return calloc(1, sizeof(*u));
}

static void idle_remove(struct upstream *u)
{
    struct upstream_list *list = &u->w->idle[u->app->index];
    if (u->prev)
        u->prev->next = u->next;
    else
        list->first = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->next = u->prev = NULL;
    list->count--;
}

/* After a reload, requests in flight may still use an application of the
 * previous pool; their connections are not filed in the new idle lists. */
static bool app_is_current(const struct worker *w, const struct app *app)
{
    return app->index < w->pool->count && &w->pool->apps[app->index] == app;
}

static void upstream_close(struct upstream *u)
{
    struct worker *w = u->w;
    if (u->closed)
        return;
    if (!u->client && !u->connecting && app_is_current(w, u->app) &&
        (u->prev || w->idle[u->app->index].first == u))
        idle_remove(u);
    loop_timer_cancel(&w->loop, &u->timer);
    loop_del(&w->loop, &u->io);
    if (u->ssl)
        tls_close(u->ssl);
    u->ssl = NULL;
    close(u->io.fd);
    u->io.fd = -1;
    buf_release(&w->buffers, &u->in);
    u->closed = true;
    u->client = NULL;
    /* Freed after the iteration: an event for it may still be queued. */
    u->next = w->closed_upstreams;
    w->closed_upstreams = u;
}

/* Separates an upstream from its client: back to the idle list when it can
 * carry another request, closed otherwise. */
static void upstream_detach(struct client *c, bool reusable)
{
    struct upstream *u = c->up;
    struct worker *w = c->w;
    if (!u)
        return;
    atomic_fetch_sub_explicit(&u->app->active, 1, memory_order_relaxed);
    c->up = NULL;
    u->client = NULL;
    if (!reusable || w->stopping || u->peer_closed || !app_is_current(w, u->app) || buf_len(&u->in) ||
        w->idle[u->app->index].count >= IDLE_UPSTREAMS_PER_APP) {
        upstream_close(u);
        return;
    }
    struct upstream_list *list = &w->idle[u->app->index];
    buf_release(&w->buffers, &u->in);
    u->reused = true;
    u->prev = NULL;
    u->next = list->first;
    if (u->next)
        u->next->prev = u;
    list->first = u;
    list->count++;
    /* An idle application connection is kept as long as an idle client. */
    loop_timer_arm(&w->loop, &u->timer, w->cfg->client_idle_timeout_ms);
}

static void client_release_buffers(struct client *c)
{
    struct buf_pool *bp = &c->w->buffers;
    buf_release(bp, &c->in);
    buf_release(bp, &c->fwd);
    buf_release(bp, &c->out);
}

static void client_close(struct client *c)
{
    struct worker *w = c->w;
    if (c->phase == PHASE_CLOSED)
        return;
    if (c->up)
        upstream_detach(c, false);
    loop_timer_cancel(&w->loop, &c->timer);
    loop_del(&w->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    client_release_buffers(c);
    c->phase = PHASE_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = w->closed_clients;
    w->closed_clients = c;
    w->client_count--;
    if (!w->accepting && !w->stopping && w->client_count < w->client_limit &&
        !loop_timer_armed(&w->accept_timer))
        worker_set_accepting(w, true);
}

/* ------------------------------------------------------------------ */
/* access log                                                          */

static void log_finish(struct client *c, int status)
{
    struct worker *w = c->w;
    struct log_request *r = &c->log;
    if (!w->access_log.buf)
        return;   /* access log off: no clock to read, no line to build */
    r->client_ip = c->ip;
    r->status = status;
    r->app_name = c->app ? c->app->cfg->name : "-";
    r->duration_us = monotonic_us() - c->start_us;
    r->time_ms = loop_wall_ms();
    if (!r->method) {
        r->method = "-";
        r->method_len = 1;
        r->target = "-";
        r->target_len = 1;
    }
    log_access_write(&w->access_log, r);
}

/* ------------------------------------------------------------------ */
/* sluice's own answers                                                */

/* Body bytes of the current request that were read but will not be sent
 * (the request is answered otherwise): they must never be parsed as the
 * next request. */
static void drop_unsent_body(struct client *c)
{
    if (c->req_ready) {
        buf_consume(&c->in, c->req_ready);
        c->req_ready = 0;
    }
}

static void answer_local(struct client *c, int status, const char *extra_headers, const char *body)
{
    struct worker *w = c->w;
    if (c->up)
        upstream_detach(c, false);
    drop_unsent_body(c);
    /* c->fwd stays: the access log line still reads from it. */
    if (buf_acquire(&w->buffers, &c->out) < 0) {
        client_close(c);
        return;
    }
    c->out.head = c->out.tail = 0;
    /* The connection survives only a complete request answered in full. */
    if (status == 400 || status == 408 || status == 413 || status == 431 || status == 501 ||
        status == 505 || c->req_side != REQ_DONE || w->stopping)
        c->keep_alive = false;
    char head[512];
    size_t body_len = strlen(body);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, http1_reason(status), body_len, extra_headers,
                     c->keep_alive ? "" : "Connection: close\r\n");
    bool head_only = c->req.method == HTTP1_METHOD_HEAD && c->phase == PHASE_FORWARD;
    if (n < 0 || (size_t)n >= sizeof(head) || !put(&c->out, head, (size_t)n) ||
        (!head_only && !put(&c->out, body, body_len))) {
        client_close(c);
        return;
    }
    c->log.status = status;
    c->log.bytes_sent = head_only ? 0 : body_len;
    c->phase = PHASE_LOCAL;
    if (status >= 500)
        log_warn("client %s: answered %d %s%s%s", c->ip, status, http1_reason(status),
                 c->app ? " after trying " : "", c->app ? c->app->cfg->name : "");
    else
        log_info("client %s: answered %d %s", c->ip, status, http1_reason(status));
}

static void answer_error(struct client *c, int status)
{
    char body[80];
    const char *extra = "";
    if (status == 503)
        extra = "Retry-After: 5\r\n";
    snprintf(body, sizeof(body), "%d %s\n", status, http1_reason(status));
    answer_local(c, status, extra, body);
}

static int status_for_parse_error(enum http1_error e)
{
    switch (e) {
    case HTTP1_E_HEAD_TOO_LARGE:
    case HTTP1_E_TOO_MANY_HEADERS:
        return 431;
    case HTTP1_E_NOT_IMPLEMENTED:
        return 501;
    default:
        return 400;
    }
}

/* ------------------------------------------------------------------ */
/* request head -> application                                         */

static void make_request_id(struct client *c)
{
    struct worker *w = c->w;
    snprintf(c->request_id, sizeof(c->request_id), "%016" PRIx64 "%016" PRIx64,
             w->request_id_prefix, ++w->request_counter);
}

/* Records where a logged field sits in the rewritten head. */
static void log_view(const struct buf *b, uint32_t at, uint32_t len, const char **ptr, uint32_t *plen)
{
    *ptr = b->data + at;
    *plen = len;
}

static bool put_request_line(struct client *c)
{
    struct buf *b = &c->fwd;
    const struct http1_request *r = &c->req;
    uint32_t at = b->tail;
    if (!put(b, r->method_text, r->method_len))
        return false;
    log_view(b, at, r->method_len, &c->log.method, &c->log.method_len);
    if (!PUT_LITERAL(b, " "))
        return false;
    at = b->tail;
    if (!put(b, r->path, r->path_len))
        return false;
    log_view(b, at, r->path_len, &c->log.target, &c->log.target_len);
    /* An HTTP/1.0 client cannot read chunked framing: ask the application
     * for HTTP/1.0 semantics too. */
    return r->version_minor ? PUT_LITERAL(b, " HTTP/1.1\r\n") : PUT_LITERAL(b, " HTTP/1.0\r\n");
}

static bool put_forwarded_for(struct client *c)
{
    struct buf *b = &c->fwd;
    bool first = true;
    if (!PUT_LITERAL(b, "X-Forwarded-For: "))
        return false;
    for (uint32_t i = 0; i < c->req.header_count; i++) {
        const struct http1_header *h = &c->req.headers[i];
        if (!(h->flags & HTTP1_HDR_XFF) || h->value_len == 0)
            continue;
        if ((!first && !PUT_LITERAL(b, ", ")) || !put(b, h->value, h->value_len))
            return false;
        first = false;
    }
    if ((!first && !PUT_LITERAL(b, ", ")) || !put(b, c->ip, strlen(c->ip)))
        return false;
    return PUT_LITERAL(b, "\r\n");
}

static const struct http1_header *find_header(const struct http1_header *hs, uint32_t n,
                                              const char *lower, size_t len)
{
    for (uint32_t i = 0; i < n; i++)
        if (http1_name_is(&hs[i], lower, len))
            return &hs[i];
    return NULL;
}

static bool put_request_headers(struct client *c)
{
    struct buf *b = &c->fwd;
    const struct http1_request *r = &c->req;
    bool absolute = r->path != r->target && r->target[0] != '/' && r->target[0] != '*';
    bool had_length = false;
    for (uint32_t i = 0; i < r->header_count; i++) {
        const struct http1_header *h = &r->headers[i];
        if (h->flags & (HTTP1_HDR_HOP | HTTP1_HDR_XFF | HTTP1_HDR_XF_OTHER))
            continue;
        if (absolute && HTTP1_NAME_IS(h, "host"))
            continue;
        /* Repeated or listed lengths ("5, 5") are legal but read differently
         * by some parsers: the application gets exactly one. */
        if (HTTP1_NAME_IS(h, "content-length")) {
            had_length = true;
            continue;
        }
        uint32_t at = b->tail + h->name_len + 2;
        if (!put_header(b, h->name, h->name_len, h->value, h->value_len))
            return false;
        if (HTTP1_NAME_IS(h, "user-agent"))
            log_view(b, at, h->value_len, &c->log.user_agent, &c->log.user_agent_len);
        else if (HTTP1_NAME_IS(h, "referer"))
            log_view(b, at, h->value_len, &c->log.referer, &c->log.referer_len);
        else if (h->flags & HTTP1_HDR_REQ_ID)
            log_view(b, at, h->value_len, &c->log.request_id, &c->log.request_id_len);
    }
    if (absolute && r->authority_len &&
        !put_header(b, "Host", 4, r->authority, r->authority_len))
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

static bool put_forwarding_headers(struct client *c)
{
    struct buf *b = &c->fwd;
    const struct http1_request *r = &c->req;
    if (!put_forwarded_for(c) || !PUT_LITERAL(b, "X-Forwarded-Proto: http\r\n"))
        return false;
    if (r->authority_len && !put_header(b, "X-Forwarded-Host", 16, r->authority, r->authority_len))
        return false;
    if (!(r->flags & HTTP1_HAS_REQ_ID)) {
        make_request_id(c);
        uint32_t at = b->tail + 14;
        if (!put_header(b, "X-Request-Id", 12, c->request_id, strlen(c->request_id)))
            return false;
        log_view(b, at, (uint32_t)strlen(c->request_id), &c->log.request_id, &c->log.request_id_len);
    }
    return PUT_LITERAL(b, "\r\n");
}

/* Writes the head the application will see into c->fwd (RFC 9110 section
 * 7.6: hop-by-hop fields are the proxy's own and are not forwarded). */
static bool rewrite_request_head(struct client *c)
{
    if (buf_acquire(&c->w->buffers, &c->fwd) < 0)
        return false;
    c->fwd.head = c->fwd.tail = 0;
    return put_request_line(c) && put_request_headers(c) && put_forwarding_headers(c);
}

static uint64_t request_hash(const struct client *c)
{
    const struct config *cfg = c->w->cfg;
    const struct http1_request *r = &c->req;
    switch (cfg->hash_key) {
    case HASH_URI:
        return balance_hash(r->path, r->path_len);
    case HASH_HEADER: {
        const struct http1_header *h =
            find_header(r->headers, r->header_count, cfg->hash_key_name, strlen(cfg->hash_key_name));
        return h ? balance_hash(h->value, h->value_len) : 0;
    }
    case HASH_COOKIE: {
        const struct http1_header *h = find_header(r->headers, r->header_count, "cookie", 6);
        size_t nlen = strlen(cfg->hash_key_name);
        for (const char *p = h ? h->value : NULL; p && p + nlen < h->value + h->value_len; p++) {
            if ((p == h->value || p[-1] == ' ' || p[-1] == ';') && p[nlen] == '=' &&
                memcmp(p, cfg->hash_key_name, nlen) == 0) {
                const char *v = p + nlen + 1, *end = v;
                while (end < h->value + h->value_len && *end != ';')
                    end++;
                return balance_hash(v, (size_t)(end - v));
            }
        }
        return 0;
    }
    case HASH_CLIENT_IP:
        break;
    }
    return balance_hash(c->ip, strlen(c->ip));
}

/* ------------------------------------------------------------------ */
/* choosing and reaching an application                                */

static void upstream_event(struct loop *loop, struct loop_io *io, uint32_t events);
static void upstream_timeout(struct loop *loop, struct loop_timer *timer);
static int upstream_start_tls(struct upstream *u);

static void attach(struct client *c, struct upstream *u)
{
    struct worker *w = c->w;
    c->up = u;
    u->client = c;
    c->app = u->app;
    c->sent_any = false;
    c->upload_failed = false;
    c->fwd.head = 0;
    u->last_activity = w->loop.now;
    atomic_fetch_add_explicit(&u->app->active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&u->app->requests, 1, memory_order_relaxed);
    loop_timer_arm(&w->loop, &u->timer, u->connecting || u->handshaking ? w->cfg->connect_timeout_ms
                                                                       : w->cfg->upstream_response_timeout_ms);
}

static struct upstream *idle_take(struct worker *w, struct app *app)
{
    struct upstream *u = w->idle[app->index].first;
    if (!u)
        return NULL;
    idle_remove(u);
    loop_timer_cancel(&w->loop, &u->timer);
    if (buf_acquire(&w->buffers, &u->in) < 0) {
        upstream_close(u);
        return NULL;
    }
    return u;
}

/* Starts a connection; NULL with *err set when it failed at once. */
static struct upstream *upstream_open(struct worker *w, struct app *app, int *err)
{
    bool in_progress;
    int fd = net_connect(&app->cfg->address, true, &in_progress);
    if (fd < 0) {
        *err = -fd;
        return NULL;
    }
    struct upstream *u = upstream_alloc(w);
    if (!u || buf_acquire(&w->buffers, &u->in) < 0) {
        free(u);
        close(fd);
        *err = ENOMEM;
        return NULL;
    }
    u->w = w;
    u->app = app;
    u->connecting = in_progress;
    u->can_write = !in_progress;
    loop_timer_init(&u->timer, upstream_timeout);
    int rc = loop_add(&w->loop, &u->io, fd, upstream_event);
    if (rc == 0 && !in_progress && upstream_start_tls(u) != 0)
        rc = -EPROTO;
    if (rc < 0) {
        if (u->ssl)
            tls_close(u->ssl);
        u->ssl = NULL;
        loop_del(&w->loop, &u->io);
        buf_release(&w->buffers, &u->in);
        close(fd);
        u->next = w->free_upstreams;
        w->free_upstreams = u;
        *err = -rc;
        return NULL;
    }
    return u;
}

static const char *connect_error_text(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return "connection refused";
    case ETIMEDOUT:
        return "connect timeout";
    case ECONNRESET:
        return "connection reset";
    case EHOSTUNREACH:
    case ENETUNREACH:
        return "unreachable";
    default:
        return strerror(err);
    }
}

/* Sends the request to the next application that can take it: a reused
 * idle connection when there is one, a new one otherwise. */
static void dispatch(struct client *c)
{
    struct worker *w = c->w;
    uint64_t key = c->hash_key;
    while (c->attempts <= w->cfg->retries) {
        struct app *app = balance_pick(&w->balance, key, c->tried, c->attempts);
        if (!app)
            break;
        c->tried[c->attempts++] = (uint16_t)app->index;
        struct upstream *u = idle_take(w, app);
        int err = 0;
        if (!u)
            u = upstream_open(w, app, &err);
        if (u) {
            attach(c, u);
            return;
        }
        if (err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS) {
            /* sluice's own shortage, not the application's fault. */
            log_error("cannot connect to application %s: %s", app->cfg->name, strerror(err));
            answer_error(c, 503);
            return;
        }
        log_warn("application %s %s: %s", app->cfg->name, app->cfg->address.text,
                 connect_error_text(err));
        pool_note_connect_failure(w->pool, app, connect_error_text(err));
    }
    /* Nobody was up: 503. Every try failed: the last failure's status. */
    answer_error(c, c->attempts == 0 ? 503 : c->fail_status ? c->fail_status : 502);
}

/* The attempt failed before any response byte reached the client. */
static void attempt_failed(struct client *c, const char *why, bool connect_failure)
{
    struct upstream *u = c->up;
    if (c->resp_started) {
        /* Part of the answer is with the client: nothing can be retried or
         * answered any more, only cut short. */
        log_warn("application %s %s: %s during the response", u->app->cfg->name,
                 u->app->cfg->address.text, why);
        client_close(c);
        return;
    }
    struct app *app = u->app;
    bool was_reused = u->reused;
    bool sent = c->sent_any;
    log_warn("application %s %s: %s", app->cfg->name, app->cfg->address.text, why);
    upstream_detach(c, false);
    /* A reused connection that the application closed while idle says
     * nothing about its health (the keep-alive race, RFC 9112 section 9.3.1). */
    if (connect_failure || !was_reused)
        pool_note_connect_failure(c->w->pool, app, why);
    if (was_reused && c->attempts > 0 && (!sent || c->retryable))
        c->attempts--;   /* the retry of a stale connection is free (and may go to
                            the same application: it leaves the tried list) */
    if (!sent || c->retryable) {
        dispatch(c);
        return;
    }
    answer_error(c, 502);
}

/* ------------------------------------------------------------------ */
/* a new request                                                       */

static void reset_request(struct client *c)
{
    c->req_side = REQ_DONE;
    c->req_body_left = 0;
    memset(&c->req_chunked, 0, sizeof(c->req_chunked));
    c->req_ready = 0;
    c->head_scanned = 0;
    c->sent_any = false;
    c->retryable = false;
    c->attempts = 0;
    c->fail_status = 0;
    c->resp_side = RESP_WAIT;
    c->resp_body_left = 0;
    memset(&c->resp_chunked, 0, sizeof(c->resp_chunked));
    c->resp_ready = 0;
    c->resp_complete = false;
    c->resp_started = false;
    c->upstream_reusable = false;
    c->app = NULL;
    memset(&c->log, 0, sizeof(c->log));
    /* start_us stays: it was taken at the head's first byte */
}

static void answer_redirect(struct client *c)
{
    struct worker *w = c->w;
    struct app *app = balance_pick(&w->balance, c->hash_key, NULL, 0);
    if (!app) {
        answer_error(c, 503);
        return;
    }
    c->app = app;
    const struct config_app *a = app->cfg;
    bool v6 = strchr(a->host, ':') != NULL;
    char port[8] = "";
    if (!a->default_port)
        snprintf(port, sizeof(port), ":%u", a->port);
    char location[2200];
    int n = snprintf(location, sizeof(location), "Location: %s://%s%s%s%s%.*s\r\n",
                     a->tls ? "https" : "http", v6 ? "[" : "", a->host, v6 ? "]" : "", port,
                     (int)c->req.path_len, c->req.path);
    if (n < 0 || (size_t)n >= sizeof(location)) {
        answer_error(c, 431);
        return;
    }
    answer_local(c, 307, location, "307 Temporary Redirect\n");
}

static void start_request(struct client *c)
{
    struct worker *w = c->w;
    const struct http1_request *r = &c->req;
    const struct config *cfg = w->cfg;
    reset_request(c);
    w->last_request_ms = w->loop.now;
    c->phase = PHASE_FORWARD;
    c->log.version_minor = r->version_minor;
    c->log.method = r->method_text;
    c->log.method_len = r->method_len;
    c->log.target = r->target;
    c->log.target_len = r->target_len;
    c->keep_alive = r->version_minor ? !(r->flags & HTTP1_CONN_CLOSE)
                                     : (r->flags & HTTP1_CONN_KEEP_ALIVE) != 0;
    c->req_side = r->body == HTTP1_BODY_NONE ? REQ_DONE : REQ_BODY;
    c->req_body_left = r->content_length;
    c->retryable = r->body == HTTP1_BODY_NONE && method_is_idempotent(r->method);
    c->hash_key = cfg->algorithm == ALG_HASH ? request_hash(c) : 0;
    loop_timer_arm(&w->loop, &c->timer, cfg->client_idle_timeout_ms);
    /* The head leaves the buffer now, so that whatever is answered, the
     * next parse starts after it. Its bytes stay in place (the views above
     * point at them) until the next read, which comes after this request's
     * rewrite or answer. */
    buf_consume(&c->in, r->head_len);

    if (r->method == HTTP1_METHOD_CONNECT) {
        c->req_side = REQ_BODY;   /* what follows is not HTTP: close after */
        answer_local(c, 405, "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n",
                     "405 Method Not Allowed\n");
        return;
    }
    if (cfg->body_bytes && r->body == HTTP1_BODY_LENGTH && r->content_length > cfg->body_bytes) {
        answer_error(c, 413);
        return;
    }
    if (cfg->mode == MODE_REDIRECT) {
        if (r->body != HTTP1_BODY_NONE)
            c->keep_alive = false;   /* the body is not read: close after */
        answer_redirect(c);
        return;
    }
    if (!rewrite_request_head(c)) {
        answer_error(c, 431);
        return;
    }
    /* Body bytes that came with the head are checked before any application
     * hears of the request: a request with bad framing in its first packet
     * never reaches one. */
    if (c->req_side == REQ_BODY && buf_len(&c->in)) {
        int status = account_request_body(c);
        if (status) {
            fail_request(c, status);
            return;
        }
    }
    dispatch(c);
}

/* ------------------------------------------------------------------ */
/* reading a request head                                              */

static int step_head(struct client *c)
{
    struct worker *w = c->w;
    /* Parsed only once whole (or refusable): a head dripped in small
     * pieces costs one scan for its end in all, not one per piece. */
    bool dirty = c->head_dirty && buf_len(&c->in);
    c->head_dirty = false;
    if (dirty && http1_request_head_ready(buf_start(&c->in), buf_len(&c->in), &w->limits, &c->head_scanned)) {
        c->req.headers = w->headers;
        enum http1_result rc = http1_parse_request(buf_start(&c->in), buf_len(&c->in), &w->limits, &c->req);
        if (rc == HTTP1_OK) {
            start_request(c);
            return 1;
        }
        if (rc == HTTP1_ERROR) {
            reset_request(c);
            c->req_side = REQ_BODY;   /* the rest of the input is not trusted */
            log_info("client %s: refused request: %s", c->ip,
                     c->req.error == HTTP1_E_HEAD_TOO_LARGE || c->req.error == HTTP1_E_TOO_MANY_HEADERS
                         ? "head over the limits"
                         : "malformed");
            answer_error(c, status_for_parse_error(c->req.error));
            return 1;
        }
    }
    if (!c->can_read)
        return 0;
    /* A buffer is held only while a head is arriving: an idle keep-alive
     * connection costs its struct client and nothing more. */
    if (buf_acquire(&w->buffers, &c->in) < 0) {
        client_close(c);
        return -1;
    }
    if (buf_room(&c->in) == 0)
        buf_compact(&c->in);
    if (buf_room(&c->in) == 0) {
        reset_request(c);
        c->req_side = REQ_BODY;
        answer_error(c, 431);
        return 1;
    }
    ssize_t n = read_into(c->io.fd, &c->in, &c->can_read, c->peer_closed);
    if (n == 0) {
        if (buf_len(&c->in) == 0)
            buf_release(&w->buffers, &c->in);
        return 0;
    }
    if (n < 0) {
        client_close(c);   /* the client left; nothing to answer */
        return -1;
    }
    c->head_dirty = true;
    c->last_activity = w->loop.now;
    if (c->phase == PHASE_IDLE) {
        /* The head's time limit runs from its first byte (slowloris bound). */
        c->phase = PHASE_HEAD;
        c->start_us = monotonic_us();
        loop_timer_arm(&w->loop, &c->timer, w->cfg->client_header_timeout_ms);
    }
    return 1;
}

/* ------------------------------------------------------------------ */
/* forwarding                                                          */

/* Decides how many newly read request bytes belong to the body. */
static int account_request_body(struct client *c)
{
    uint32_t fresh = buf_len(&c->in) - c->req_ready;
    if (c->req.body == HTTP1_BODY_LENGTH) {
        uint32_t take = c->req_body_left < fresh ? (uint32_t)c->req_body_left : fresh;
        c->req_ready += take;
        c->req_body_left -= take;
        if (c->req_body_left == 0)
            c->req_side = REQ_DONE;
        return 0;
    }
    ssize_t n = http1_chunked_scan(&c->req_chunked, buf_start(&c->in) + c->req_ready, fresh);
    if (n < 0)
        return 400;
    c->req_ready += (uint32_t)n;
    uint64_t limit = c->w->cfg->body_bytes;
    if (limit && c->req_chunked.data_bytes > limit)
        return 413;
    if (c->req_chunked.done)
        c->req_side = REQ_DONE;
    return 0;
}

/* A request error after forwarding began: answer if the client has not
 * seen a response yet, otherwise just cut both connections. */
static int fail_request(struct client *c, int status)
{
    log_info("client %s: request body refused (%d)", c->ip, status);
    if (c->resp_started) {
        client_close(c);
        return -1;
    }
    c->req_side = REQ_BODY;
    answer_error(c, status);
    return 1;
}

static int pump_request(struct client *c)
{
    struct upstream *u = c->up;
    struct worker *w = c->w;
    int progress = 0;
    if (c->upload_failed)
        return 0;
    if ((buf_len(&c->fwd) || c->req_ready) && u->can_write) {
        uint32_t head = buf_len(&c->fwd);
        ssize_t n = upstream_write(u, buf_start(&c->fwd), head, buf_start(&c->in), c->req_ready);
        if (n < 0) {
            /* The application stopped reading; it may have answered first
             * (an early 413, say). Read what it said before deciding. */
            c->upload_failed = true;
            c->keep_alive = false;
            u->can_read = true;
            return 1;
        }
        if (n > 0) {
            uint32_t from_head = (uint32_t)n < head ? (uint32_t)n : head;
            c->fwd.head += from_head;   /* kept (not consumed) for a retry */
            buf_consume(&c->in, (uint32_t)n - from_head);
            c->req_ready -= (uint32_t)n - from_head;
            c->sent_any = true;
            u->last_activity = w->loop.now;
            progress = 1;
        }
    }
    if (c->req_side != REQ_BODY || c->req_ready)
        return progress;
    if (buf_len(&c->in) == 0 && c->can_read) {
        ssize_t n = read_into(c->io.fd, &c->in, &c->can_read, c->peer_closed);
        if (n < 0) {
            client_close(c);   /* the client left in the middle of its body */
            return -1;
        }
        if (n > 0)
            c->last_activity = w->loop.now;
    }
    if (buf_len(&c->in) > c->req_ready) {
        int status = account_request_body(c);
        if (status)
            return fail_request(c, status);
        progress = 1;
    }
    return progress;
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

static bool put_response_head(struct client *c, const struct http1_response *res)
{
    struct buf *b = &c->out;
    char line[64];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d ", res->status);
    if (!put(b, line, (size_t)n) || !put(b, res->reason, res->reason_len) || !PUT_LITERAL(b, "\r\n"))
        return false;
    for (uint32_t i = 0; i < res->header_count; i++) {
        const struct http1_header *h = &res->headers[i];
        if (!(h->flags & HTTP1_HDR_HOP) && !put_header(b, h->name, h->name_len, h->value, h->value_len))
            return false;
    }
    if (res->status == 101) {
        const struct http1_header *up = find_header(res->headers, res->header_count, "upgrade", 7);
        if (!PUT_LITERAL(b, "Connection: upgrade\r\n") ||
            (up && !put_header(b, "Upgrade", 7, up->value, up->value_len)))
            return false;
    } else if (res->status >= 200) {
        if (c->resp_side == RESP_BODY && res->body == HTTP1_BODY_CHUNKED && !put_codings(b, res))
            return false;
        if (!c->keep_alive && !PUT_LITERAL(b, "Connection: close\r\n"))
            return false;
        if (c->keep_alive && c->req.version_minor == 0 && !PUT_LITERAL(b, "Connection: keep-alive\r\n"))
            return false;
    }
    return PUT_LITERAL(b, "\r\n");
}

static int start_tunnel(struct client *c);

/* A complete response head is at the start of u->in. */
static int take_response_head(struct client *c)
{
    struct worker *w = c->w;
    struct upstream *u = c->up;
    struct http1_response *res = &c->res;
    int status = res->status;
    if (buf_acquire(&w->buffers, &c->out) < 0) {
        client_close(c);
        return -1;
    }
    if (status == 101 && !(c->req.flags & HTTP1_CONN_UPGRADE)) {
        attempt_failed(c, "101 without an upgrade request", false);
        return 1;
    }
    if (status < 200 && status != 101) {
        /* 1xx: relayed to HTTP/1.1 clients only (RFC 9110 section 15.2). */
        if (c->req.version_minor == 1 && !put_response_head(c, res)) {
            attempt_failed(c, "response head too large", false);
            return 1;
        }
        buf_consume(&u->in, res->head_len);
        return 1;
    }
    c->resp_started = true;
    c->log.status = status;
    pool_note_connect_success(u->app);
    pool_note_status(w->pool, u->app, status);
    if (res->body == HTTP1_BODY_UNTIL_CLOSE || c->req_side != REQ_DONE || w->stopping)
        c->keep_alive = false;
    c->upstream_reusable = !(res->flags & HTTP1_CONN_CLOSE) && res->body != HTTP1_BODY_UNTIL_CLOSE &&
                           c->req.version_minor == 1;
    c->resp_side = status == 101 ? RESP_DONE : RESP_BODY;
    c->resp_body_left = res->content_length;
    c->resp_complete = res->body == HTTP1_BODY_NONE;
    if (!put_response_head(c, res)) {
        c->resp_started = false;
        attempt_failed(c, "response head too large", false);
        return 1;
    }
    buf_consume(&u->in, res->head_len);
    if (status == 101)
        return start_tunnel(c);
    /* Body bytes that came with the head leave in the same writev; if they
     * are already malformed, the client has seen nothing yet and gets a
     * clean 502 instead of a cut-off 200. */
    if (account_response_body(c) < 0) {
        log_warn("application %s %s: malformed chunked body", u->app->cfg->name,
                 u->app->cfg->address.text);
        c->out.head = c->out.tail = 0;
        c->resp_started = false;
        upstream_detach(c, false);
        answer_error(c, 502);
    }
    return 1;
}

static int read_response_head(struct client *c)
{
    struct worker *w = c->w;
    struct upstream *u = c->up;
    if (buf_len(&u->in)) {
        c->res.headers = w->headers;
        enum http1_result rc = http1_parse_response(buf_start(&u->in), buf_len(&u->in), &w->limits,
                                                    c->req.method, &c->res);
        if (rc == HTTP1_OK)
            return take_response_head(c);
        if (rc == HTTP1_ERROR) {
            log_warn("application %s %s: malformed response", u->app->cfg->name,
                     u->app->cfg->address.text);
            upstream_detach(c, false);
            answer_error(c, 502);
            return 1;
        }
    }
    if (!u->can_read)
        return 0;
    if (buf_room(&u->in) == 0)
        buf_compact(&u->in);
    ssize_t n = upstream_read(u);
    if (n > 0) {
        u->last_activity = w->loop.now;
        return 1;
    }
    if (n == 0)
        return 0;
    attempt_failed(c, errno ? "connection reset" : "connection closed before a response", false);
    return 1;
}

static int account_response_body(struct client *c)
{
    struct upstream *u = c->up;
    uint32_t fresh = buf_len(&u->in) - c->resp_ready;
    switch (c->res.body) {
    case HTTP1_BODY_LENGTH: {
        uint32_t take = c->resp_body_left < fresh ? (uint32_t)c->resp_body_left : fresh;
        c->resp_ready += take;
        c->resp_body_left -= take;
        c->resp_complete = c->resp_body_left == 0;
        break;
    }
    case HTTP1_BODY_CHUNKED: {
        ssize_t n = http1_chunked_scan(&c->resp_chunked, buf_start(&u->in) + c->resp_ready, fresh);
        if (n < 0)
            return -1;
        c->resp_ready += (uint32_t)n;
        c->resp_complete = c->resp_chunked.done;
        break;
    }
    case HTTP1_BODY_UNTIL_CLOSE:
        c->resp_ready += fresh;
        break;
    case HTTP1_BODY_NONE:
        c->resp_complete = true;
        break;
    }
    /* Bytes after the end of the response: the application broke framing. */
    if (c->resp_complete && buf_len(&u->in) > c->resp_ready)
        c->upstream_reusable = false;
    return 0;
}

static void finish_transaction(struct client *c);

static int pump_response(struct client *c)
{
    struct upstream *u = c->up;
    struct worker *w = c->w;
    int progress = 0;
    uint32_t head = buf_len(&c->out);
    if ((head || c->resp_ready) && c->can_write) {
        ssize_t n = write_two(c->io.fd, buf_start(&c->out), head, buf_start(&u->in), c->resp_ready,
                              &c->can_write);
        if (n < 0) {
            client_close(c);
            return -1;
        }
        if (n > 0) {
            uint32_t from_head = (uint32_t)n < head ? (uint32_t)n : head;
            buf_consume(&c->out, from_head);
            buf_consume(&u->in, (uint32_t)n - from_head);
            c->resp_ready -= (uint32_t)n - from_head;
            c->log.bytes_sent += (uint32_t)n - from_head;
            c->last_activity = w->loop.now;
            progress = 1;
        }
    }
    if (c->resp_side != RESP_BODY || c->resp_ready)
        return progress;
    if (buf_len(&c->out) == 0 && c->resp_complete) {
        finish_transaction(c);
        return 1;
    }
    if (buf_len(&u->in) > c->resp_ready && !c->resp_complete) {
        if (account_response_body(c) < 0) {
            log_warn("application %s %s: malformed chunked body", u->app->cfg->name,
                     u->app->cfg->address.text);
            client_close(c);
            return -1;
        }
        return 1;
    }
    if (!u->can_read || c->resp_complete)
        return progress;
    ssize_t n = upstream_read(u);
    if (n > 0) {
        u->last_activity = w->loop.now;
        return 1;
    }
    if (n == 0)
        return progress;
    if (c->res.body == HTTP1_BODY_UNTIL_CLOSE && errno == 0) {
        c->resp_complete = true;   /* a close-delimited body ends here */
        c->upstream_reusable = false;
        return 1;
    }
    log_warn("application %s %s: response cut short", u->app->cfg->name, u->app->cfg->address.text);
    client_close(c);
    return -1;
}

static int handshake(struct client *c)
{
    struct upstream *u = c->up;
    int rc = tls_handshake(u->ssl);
    if (rc == -EAGAIN)
        return 0;
    if (rc < 0) {
        char why[160], detail[120];
        snprintf(why, sizeof(why), "TLS handshake: %s",
                 rc == -EPROTO ? tls_error_text(u->ssl, detail, sizeof(detail)) : strerror(-rc));
        attempt_failed(c, why, true);
        return 1;
    }
    u->handshaking = false;
    u->can_write = true;
    loop_timer_arm(&c->w->loop, &u->timer, c->w->cfg->upstream_response_timeout_ms);
    return 1;
}

static int step_forward(struct client *c)
{
    if (c->up->connecting)
        return 0;
    if (c->up->handshaking)
        return handshake(c);
    int a = pump_request(c);
    if (a < 0 || c->phase != PHASE_FORWARD)
        return a;
    /* First flush what the client is owed (a 1xx head, body bytes). */
    int b = pump_response(c);
    if (b < 0)
        return -1;
    if (c->phase != PHASE_FORWARD)
        return 1;
    if (c->resp_side == RESP_WAIT) {
        int h = read_response_head(c);
        if (h < 0)
            return -1;
        b |= h;
    }
    return a || b;
}

/* ------------------------------------------------------------------ */
/* end of a request                                                    */

static void begin_next_request(struct client *c)
{
    struct worker *w = c->w;
    buf_release(&w->buffers, &c->fwd);
    buf_release(&w->buffers, &c->out);
    /* Logged already. An idle connection that kept it would hold on to a
     * configuration a reload replaced (proxy_uses_pool). */
    c->app = NULL;
    if (buf_len(&c->in)) {
        /* A pipelined request is already here. */
        buf_compact(&c->in);
        c->phase = PHASE_HEAD;
        c->head_dirty = true;
        c->start_us = monotonic_us();
        loop_timer_arm(&w->loop, &c->timer, w->cfg->client_header_timeout_ms);
        return;
    }
    buf_release(&w->buffers, &c->in);
    c->phase = PHASE_IDLE;
    loop_timer_arm(&w->loop, &c->timer, w->cfg->client_idle_timeout_ms);
}

/* Half-closes and drains the client's remaining input for a while. */
static void linger(struct client *c)
{
    struct worker *w = c->w;
    shutdown(c->io.fd, SHUT_WR);
    client_release_buffers(c);
    c->phase = PHASE_LINGER;
    c->can_read = true;
    loop_timer_arm(&w->loop, &c->timer, LINGER_MS);
}

static void end_response(struct client *c)
{
    drop_unsent_body(c);
    if (c->keep_alive && c->req_side == REQ_DONE && !c->w->stopping)
        begin_next_request(c);
    else if (c->req_side == REQ_DONE && buf_len(&c->in) == 0)
        client_close(c);
    else
        linger(c);
}

static void finish_transaction(struct client *c)
{
    bool reusable = c->upstream_reusable && c->req_side == REQ_DONE && c->req_ready == 0 &&
                    buf_len(&c->fwd) == 0 && !c->upload_failed;
    log_finish(c, c->log.status);
    upstream_detach(c, reusable);
    c->resp_side = RESP_DONE;
    end_response(c);
}

static int step_local(struct client *c)
{
    if (buf_len(&c->out)) {
        if (!c->can_write)
            return 0;
        ssize_t n = write_two(c->io.fd, buf_start(&c->out), buf_len(&c->out), NULL, 0, &c->can_write);
        if (n < 0) {
            client_close(c);
            return -1;
        }
        buf_consume(&c->out, (uint32_t)n);
        if (buf_len(&c->out))
            return n > 0;
    }
    log_finish(c, c->log.status);
    end_response(c);
    return 1;
}

static int step_linger(struct client *c)
{
    char sink[4096];
    if (!c->can_read)
        return 0;
    ssize_t n = read(c->io.fd, sink, sizeof(sink));
    if (n > 0)
        return 1;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        c->can_read = errno == EINTR;
        return 0;
    }
    client_close(c);
    return -1;
}

/* ------------------------------------------------------------------ */
/* tunnels (WebSocket and other upgrades)                              */

static int start_tunnel(struct client *c)
{
    struct worker *w = c->w;
    log_finish(c, 101);
    c->phase = PHASE_TUNNEL;
    c->keep_alive = false;
    buf_release(&w->buffers, &c->fwd);
    return 1;   /* bytes already in c->in and u->in are relayed first */
}

/* Each returns 1 on progress, 0 when blocked, -1 when the tunnel ends. */
/* A side that finished sending (its FIN, a clean end of stream) is passed
 * on as a half-close once its bytes are delivered, so a protocol that says
 * goodbye one way at a time still hears the other side's last words. The
 * tunnel ends when both ways are done. Through TLS there is no half-close:
 * the end of either way ends the tunnel. */
static int tunnel_end_of_stream(struct client *c, ssize_t n, bool *done)
{
    if (n < 0 && errno == 0 && !c->up->ssl) {
        *done = true;
        return 1;
    }
    return n < 0 ? -1 : n > 0;
}

static int tunnel_client_to_upstream(struct client *c)
{
    struct upstream *u = c->up;
    if (buf_len(&c->in) && u->can_write) {
        ssize_t n = upstream_write(u, buf_start(&c->in), buf_len(&c->in), NULL, 0);
        if (n < 0)
            return -1;
        buf_consume(&c->in, (uint32_t)n);
        return n > 0;
    }
    if (buf_len(&c->in) == 0 && c->can_read && !c->tunnel_in_done) {
        ssize_t n = read_into(c->io.fd, &c->in, &c->can_read, c->peer_closed);
        int r = tunnel_end_of_stream(c, n, &c->tunnel_in_done);
        if (c->tunnel_in_done && n < 0)
            shutdown(u->io.fd, SHUT_WR);
        return r;
    }
    return 0;
}

static int tunnel_upstream_to_client(struct client *c)
{
    struct upstream *u = c->up;
    if (buf_len(&c->out)) {   /* the 101 head goes first */
        if (!c->can_write)
            return 0;
        ssize_t n = write_two(c->io.fd, buf_start(&c->out), buf_len(&c->out), NULL, 0, &c->can_write);
        if (n < 0)
            return -1;
        buf_consume(&c->out, (uint32_t)n);
        return n > 0;
    }
    if (buf_len(&u->in) && c->can_write) {
        ssize_t n = write_two(c->io.fd, buf_start(&u->in), buf_len(&u->in), NULL, 0, &c->can_write);
        if (n < 0)
            return -1;
        buf_consume(&u->in, (uint32_t)n);
        return n > 0;
    }
    if (buf_len(&u->in) == 0 && u->can_read && !c->tunnel_out_done) {
        ssize_t n = upstream_read(u);
        int r = tunnel_end_of_stream(c, n, &c->tunnel_out_done);
        if (c->tunnel_out_done && n < 0)
            shutdown(c->io.fd, SHUT_WR);
        return r;
    }
    return 0;
}

static int step_tunnel(struct client *c)
{
    struct upstream *u = c->up;
    struct worker *w = c->w;
    if (buf_acquire(&w->buffers, &c->in) < 0) {
        client_close(c);
        return -1;
    }
    int a = tunnel_client_to_upstream(c);
    int b = a < 0 ? 0 : tunnel_upstream_to_client(c);
    if (a < 0 || b < 0 || (c->tunnel_in_done && c->tunnel_out_done)) {
        client_close(c);
        return -1;
    }
    if (a || b) {
        c->last_activity = u->last_activity = w->loop.now;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* events and timers                                                   */

static int client_step(struct client *c)
{
    switch (c->phase) {
    case PHASE_IDLE:
    case PHASE_HEAD:
        return step_head(c);
    case PHASE_FORWARD:
        return step_forward(c);
    case PHASE_LOCAL:
        return step_local(c);
    case PHASE_TUNNEL:
        return step_tunnel(c);
    case PHASE_LINGER:
        return step_linger(c);
    case PHASE_CLOSED:
        break;
    }
    return -1;
}

static void client_run(struct client *c)
{
    for (int budget = CLIENT_BUDGET; budget > 0; budget--)
        if (client_step(c) <= 0)
            return;
    mark_pending(c);
}

static void client_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)loop;
    struct client *c = container_of(io, struct client, io);
    if (c->phase == PHASE_CLOSED)
        return;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->peer_closed = true;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->can_read = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->can_write = true;
    client_run(c);
}

/* Client-side time limits. While forwarding, the limit is client_idle of
 * silence from the client when sluice waits on it; waiting on the
 * application is the application's timer's business. */
static void client_timeout(struct loop *loop, struct loop_timer *timer)
{
    struct client *c = container_of(timer, struct client, timer);
    int64_t limit = c->w->cfg->client_idle_timeout_ms;
    switch (c->phase) {
    case PHASE_HEAD:
        if (buf_len(&c->in) == 0 && !c->head_dirty) {
            client_close(c);   /* nothing was asked: nothing to answer */
            return;
        }
        log_info("client %s: request head not received within %" PRId64 " ms", c->ip,
                 c->w->cfg->client_header_timeout_ms);
        reset_request(c);
        c->req_side = REQ_BODY;
        answer_error(c, 408);
        client_run(c);
        return;
    case PHASE_FORWARD:
    case PHASE_TUNNEL:
    case PHASE_LOCAL: {
        bool waits_on_client = c->phase != PHASE_FORWARD || buf_len(&c->out) || c->resp_ready ||
                               (c->req_side == REQ_BODY && c->req_ready == 0);
        int64_t idle = loop->now - c->last_activity;
        if (!waits_on_client || idle < limit) {
            loop_timer_arm(loop, timer, waits_on_client ? limit - idle : limit);
            return;
        }
        log_info("client %s: no progress for %" PRId64 " ms, closing", c->ip, idle);
        client_close(c);
        return;
    }
    default:
        client_close(c);   /* idle keep-alive or lingering: done */
        return;
    }
}

/* Begins TLS on a connected socket to an application with tls = true. */
static int upstream_start_tls(struct upstream *u)
{
    struct worker *w = u->w;
    if (!u->app->cfg->tls)
        return 0;
    if (!w->tls) {
        /* Applications behind a load balancer commonly have self-signed
         * certificates on an inside network: like HAProxy's "verify none"
         * and nginx's default, the certificate is not checked. */
        char why[160];
        w->tls = tls_client_context(false, why, sizeof(why));
        if (!w->tls) {
            log_error("TLS client context: %s", why);
            return EPROTO;
        }
    }
    u->ssl = tls_client_new(w->tls, u->io.fd, u->app->cfg->host);
    if (!u->ssl)
        return EPROTO;
    u->handshaking = true;
    return 0;
}

static void upstream_connected(struct upstream *u)
{
    int err = net_socket_error(u->io.fd);
    u->connecting = false;
    struct client *c = u->client;
    if (!err)
        err = upstream_start_tls(u);
    if (err) {
        if (c)
            attempt_failed(c, connect_error_text(err), true);
        else
            upstream_close(u);
        return;
    }
    u->can_write = true;
    if (c && !u->handshaking)
        loop_timer_arm(&u->w->loop, &u->timer, u->w->cfg->upstream_response_timeout_ms);
}

/* An EPOLLIN for an idle connection may be left over from the response
 * that was read earlier in the same epoll batch; only a peek tells it from
 * a real close or stray bytes (and, through TLS, a session ticket). */
static bool idle_event_is_stale(struct upstream *u, char *sink, size_t len)
{
    if (u->ssl)
        return tls_read(u->ssl, sink, len) == -EAGAIN;
    return recv(u->io.fd, sink, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

static void upstream_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)loop;
    struct upstream *u = container_of(io, struct upstream, io);
    if (u->closed)
        return;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->peer_closed = true;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->can_read = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        u->can_write = true;
    if (!u->client) {
        /* An idle connection has nothing to say: this is its close (or,
         * through TLS, perhaps a session ticket, which OpenSSL consumes). */
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            char sink[64];
            if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) || !idle_event_is_stale(u, sink, sizeof(sink)))
                upstream_close(u);
        }
        return;
    }
    struct client *c = u->client;
    if (u->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        upstream_connected(u);
    }
    client_run(c);
}

static void upstream_timeout(struct loop *loop, struct loop_timer *timer)
{
    struct upstream *u = container_of(timer, struct upstream, timer);
    struct client *c = u->client;
    if (!c) {
        upstream_close(u);   /* idle too long */
        return;
    }
    int64_t limit = u->w->cfg->upstream_response_timeout_ms;
    if (u->connecting || u->handshaking) {
        attempt_failed(c, u->connecting ? "connect timeout" : "TLS handshake timeout", true);
        client_run(c);
        return;
    }
    bool waits_on_app = c->phase == PHASE_TUNNEL ||
                        (c->resp_side == RESP_WAIT && !buf_len(&c->out)) ||
                        (c->resp_side == RESP_BODY && !c->resp_ready && !buf_len(&c->out));
    int64_t idle = loop->now - u->last_activity;
    if (c->phase == PHASE_TUNNEL)
        limit = u->w->cfg->client_idle_timeout_ms;
    if (!waits_on_app || idle < limit) {
        loop_timer_arm(loop, timer, waits_on_app ? limit - idle : limit);
        return;
    }
    log_warn("application %s %s: no response within %" PRId64 " ms", u->app->cfg->name,
             u->app->cfg->address.text, limit);
    if (c->resp_started || c->phase == PHASE_TUNNEL) {
        client_close(c);
        return;
    }
    upstream_detach(c, false);
    c->fail_status = 504;
    /* An idempotent bodiless request may be asked again elsewhere (as
     * nginx's proxy_next_upstream timeout does); a slow answer is not a
     * connect failure, so it is not counted against the application. */
    if (c->retryable && c->attempts <= c->w->cfg->retries)
        dispatch(c);
    else
        answer_error(c, 504);
    client_run(c);
}

/* ------------------------------------------------------------------ */
/* the worker's side                                                   */

void proxy_accept(struct worker *w, int fd, const struct sockaddr_storage *peer)
{
    struct client *c = client_alloc(w);
    if (!c) {
        log_error("out of memory: refusing a connection");
        close(fd);
        return;
    }
    c->w = w;
    loop_timer_init(&c->timer, client_timeout);
    if (loop_add(&w->loop, &c->io, fd, client_event) < 0) {
        close(fd);
        c->next = w->free_clients;
        w->free_clients = c;
        return;
    }
    net_format_ip(peer, c->ip, sizeof(c->ip));
    c->next = w->clients;
    if (c->next)
        c->next->prev = c;
    w->clients = c;
    w->client_count++;
    /* With TCP_DEFER_ACCEPT the request is usually here already: read now
     * instead of waiting for the first edge. */
    c->can_read = c->can_write = true;
    c->phase = PHASE_HEAD;
    c->start_us = monotonic_us();
    c->last_activity = w->loop.now;
    loop_timer_arm(&w->loop, &c->timer, w->cfg->client_header_timeout_ms);
    client_run(c);
}

bool proxy_has_pending(const struct worker *w)
{
    return w->pending != NULL;
}

void proxy_after_iteration(struct worker *w)
{
    struct client *list = w->pending;
    w->pending = NULL;
    while (list) {
        struct client *c = list;
        list = c->pending_next;
        c->in_pending = false;
        if (c->phase != PHASE_CLOSED)
            client_run(c);
    }
    while (w->closed_clients) {
        struct client *c = w->closed_clients;
        w->closed_clients = c->next;
        c->next = w->free_clients;
        w->free_clients = c;
    }
    while (w->closed_upstreams) {
        struct upstream *u = w->closed_upstreams;
        w->closed_upstreams = u->next;
        u->next = w->free_upstreams;
        w->free_upstreams = u;
    }
}

void proxy_begin_shutdown(struct worker *w)
{
    struct client *c = w->clients;
    while (c) {
        struct client *next = c->next;
        if (c->phase == PHASE_IDLE || (c->phase == PHASE_HEAD && buf_len(&c->in) == 0))
            client_close(c);
        c = next;
    }
    proxy_drop_idle(w);
}

void proxy_drop_idle(struct worker *w)
{
    for (int i = 0; i < w->pool->count; i++)
        while (w->idle[i].first)
            upstream_close(w->idle[i].first);
}

static bool app_in_pool(const struct app *app, const struct pool *pool)
{
    uintptr_t a = (uintptr_t)app, first = (uintptr_t)pool->apps;
    return app && a >= first && a < first + (uintptr_t)pool->count * sizeof(*app);
}

/* Every pointer a connection keeps into a pool: the application of the
 * request in flight and of its upstream (the same one, or NULL). Idle
 * upstreams are not looked at: a worker drops them when it leaves a pool. */
bool proxy_uses_pool(const struct worker *w, const struct pool *pool)
{
    for (const struct client *c = w->clients; c; c = c->next)
        if (app_in_pool(c->app, pool) || (c->up && app_in_pool(c->up->app, pool)))
            return true;
    return false;
}

void proxy_close_all(struct worker *w)
{
    while (w->clients)
        client_close(w->clients);
    proxy_drop_idle(w);
}

static void free_client_list(struct client *c)
{
    while (c) {
        struct client *next = c->next;
        free(c);
        c = next;
    }
}

static void free_upstream_list(struct upstream *u)
{
    while (u) {
        struct upstream *next = u->next;
        free(u);
        u = next;
    }
}

void proxy_free(struct worker *w)
{
    proxy_close_all(w);
    proxy_after_iteration(w);
    free_client_list(w->free_clients);
    free_upstream_list(w->free_upstreams);
    w->free_clients = NULL;
    w->free_upstreams = NULL;
}
