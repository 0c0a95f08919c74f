/* backend.c - the demo and test application that sluice balances across.
 *
 * One process, one thread, one event loop (src/loop.c) and the project's own
 * HTTP/1 parser (src/http1.c). Its endpoints let `make demo`, the integration
 * tests and the benchmark make an application behave any way they need:
 * healthy or failing, slow, hanging, closing, resetting, streaming large
 * bodies, counting uploads, echoing the head it received, and echoing bytes
 * after a 101 Switching Protocols (usage() lists them).
 *
 * Memory: each connection owns a fixed input buffer and a small output
 * buffer, both inside struct conn, and connections are recycled through a
 * free list, so a keep-alive connection allocates nothing per request.
 * Nothing large is ever held: uploads are counted and dropped as they
 * arrive, and /bytes is sent straight from one static pattern buffer shared
 * by every connection.
 *
 * Requests on one connection are handled strictly one at a time; pipelined
 * ones wait in the input buffer. The current request's head stays where it
 * was parsed until its response has been written, so the parser's views stay
 * valid and /headers sends the head from there without copying it. The input
 * buffer is therefore compacted only between requests (or while a body, whose
 * head is no longer needed, is being counted).
 *
 * Sockets are registered edge-triggered for both directions once (loop.h);
 * each connection remembers whether it may still read (readable) or must
 * wait for EPOLLOUT (write_blocked), and conn_drive() does whatever can be
 * done until it would block.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "http1.h"
#include "loop.h"

#define HEAD_LIMIT    (64 * 1024)          /* request line + headers */
#define HEADER_LIMIT  200
/* Larger than HEAD_LIMIT so that the parser itself sees an oversized head
 * and refuses it, rather than the buffer silently filling up. */
#define IN_CAP        (HEAD_LIMIT + 4096)
/* Response heads and short bodies: the longest (/stats with a 128-byte name,
 * behind a pending 100 Continue) is well under 1 KB. */
#define OUT_CAP       1024
#define NAME_MAX_LEN  128
#define CHUNK_DATA    (16 * 1024)          /* /bytes?chunked=1 chunk size */
#define PATTERN_SPAN  (256 * 1024)         /* most /bytes data given to one writev */
#define PATTERN_CYCLE 26                   /* 'a'..'z' */
#define LINGER_MS     2000
#define SLOW_MAX_MS   (24LL * 3600 * 1000)
#define BYTES_MAX     (1ULL << 40)
#define ACCEPT_BATCH  64

/* ---- small helpers ---- */

struct span {
    const char *ptr;
    size_t len;
};

/* Intrusive circular list; a detached node points at itself, so removing
 * it again is harmless. */
struct list {
    struct list *prev, *next;
};

static void list_init(struct list *l)
{
    l->prev = l->next = l;
}

static bool list_empty(const struct list *l)
{
    return l->next == l;
}

static void list_push(struct list *head, struct list *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

static void list_remove(struct list *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    list_init(node);
}

static bool span_is(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

/* Decimal digits only, no sign, at most max. */
static bool parse_uint(struct span s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s.ptr[i] - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

/* Finds key in a query string "a=1&b=2" (no percent-decoding: the test
 * parameters are plain numbers). */
static bool query_get(struct span query, const char *key, struct span *value)
{
    size_t key_len = strlen(key);
    const char *p = query.ptr, *end = query.ptr + query.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > key_len && memcmp(p, key, key_len) == 0 && p[key_len] == '=') {
            value->ptr = p + key_len + 1;
            value->len = (size_t)(stop - value->ptr);
            return true;
        }
        p = stop + 1;
    }
    return false;
}

/* ---- the process ---- */

enum conn_state {
    CONN_HEAD,     /* waiting for (the rest of) the next request head */
    CONN_BODY,     /* counting a request body */
    CONN_SLOW,     /* /slow: the timer will answer */
    CONN_HUNG,     /* /health while health hangs: on backend.hung, no answer */
    CONN_RESPOND,  /* a response is queued or being written */
    CONN_LINGER,   /* last response written, write side shut, draining input */
    CONN_ECHO,     /* after 101 (/upgrade): every byte read is written back */
    CONN_CLOSED,   /* on backend.dead until the loop iteration ends */
};

enum stream_state {
    STREAM_OFF,
    STREAM_DATA,   /* /bytes data left to send (possibly none: then the end) */
};

/* What POST /control/health asked for. */
struct control {
    bool valid;
    bool has_status;
    bool has_hang;
    bool hang;
    int status;
};

/* One client connection. Owned by backend.live while open; conn_close moves
 * it to backend.dead (a later event of the same epoll batch may still name
 * it), and after the iteration it goes to backend.spare for reuse. */
struct conn {
    struct loop_io io;
    struct loop_timer timer;      /* /slow delay or the lingering-close bound */
    struct list link;             /* in live, dead or spare */
    struct list hung_link;        /* in backend.hung while CONN_HUNG */
    enum conn_state state;
    bool readable;                /* an input edge was seen and not yet drained */
    bool rdhup;                   /* EPOLLRDHUP seen: read until EOF, see conn_fill */
    bool peer_closed;             /* read returned 0 */
    bool write_blocked;           /* a write hit EAGAIN: wait for EPOLLOUT */

    /* the current request; its views point into in[] */
    struct http1_request req;
    bool keep_alive;
    bool head_only;               /* HEAD: the response carries no body */
    bool upgrading;               /* the response is a 101: CONN_ECHO after it */
    uint32_t consume;             /* bytes of in[] from in_start it still occupies */

    /* body counting (CONN_BODY) */
    bool body_chunked;
    bool body_for_control;
    struct control control;
    uint64_t body_left;           /* Content-Length bodies */
    uint64_t body_bytes;          /* decoded bytes counted so far */
    struct http1_chunked chunk;

    /* output: out[out_sent..out_len), then extra[0..extra_len) */
    uint32_t out_len, out_sent;
    const char *extra;            /* borrowed: in[] (for /headers) or the pattern */
    size_t extra_len;
    enum stream_state stream;
    bool stream_chunked;
    uint64_t stream_left, stream_sent;

    uint32_t in_start, in_len;
    char out[OUT_CAP];
    char in[IN_CAP];
};

/* Everything the process has; one instance, one thread. */
struct backend {
    char name[NAME_MAX_LEN + 1];
    int health_status;
    bool health_hang;
    int log_fd;                   /* -1 without --log */
    uint64_t connections;         /* accepted since start */
    uint64_t requests;            /* parsed since start, /stats excluded */
    uint64_t drop_every;          /* --drop-every: close every Nth request unanswered */
    uint64_t drop_count;          /* requests counted toward it (/health excluded) */
    struct loop loop;
    struct list live, dead, spare, hung;
    int listen_fd;
    int reserve_fd;               /* spent to shed a connection at EMFILE */
    int signal_fd;
    struct loop_io listen_io, signal_io;
};

static struct backend backend;

/* Parsed headers are only looked at during http1_parse_request's caller, so
 * one array serves every connection. */
static struct http1_header header_scratch[HEADER_LIMIT];
static const struct http1_limits request_limits = {.head_bytes = HEAD_LIMIT, .headers = HEADER_LIMIT};

/* 'a'..'z' repeated; /bytes data at offset k starts at pattern[k % 26]. */
static char pattern[PATTERN_SPAN + PATTERN_CYCLE];

static void conn_close(struct conn *c);
static void conn_drive(struct conn *c);

/* ---- output ---- */

static bool out_idle(const struct conn *c)
{
    return c->out_sent == c->out_len && c->extra_len == 0 && c->stream == STREAM_OFF;
}

/* Makes room at the end of out[] by dropping what was already written. */
static void out_compact(struct conn *c)
{
    if (c->out_sent == 0)
        return;
    memmove(c->out, c->out + c->out_sent, c->out_len - c->out_sent);
    c->out_len -= c->out_sent;
    c->out_sent = 0;
}

static bool out_append(struct conn *c, const char *data, size_t len)
{
    out_compact(c);
    if (len > OUT_CAP - c->out_len)
        return false;
    memcpy(c->out + c->out_len, data, len);
    c->out_len += (uint32_t)len;
    return true;
}

static bool out_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool out_printf(struct conn *c, const char *fmt, ...)
{
    out_compact(c);
    size_t room = OUT_CAP - c->out_len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->out + c->out_len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        return false;
    c->out_len += (uint32_t)n;
    return true;
}

/* RFC 9110 sections 6.4.1 and 8.6: 204 and 304 carry neither content nor
 * Content-Length; 205 must have empty content. */
static bool status_has_content(int status)
{
    return status != 204 && status != 205 && status != 304;
}

/* Queues a response head. length is ignored when chunked. Every response
 * head goes through here, so every one names the backend. */
static bool out_head(struct conn *c, int status, const char *type, uint64_t length, bool chunked)
{
    bool ok = out_printf(c, "HTTP/1.1 %d %s\r\nX-Backend: %s\r\n", status, http1_reason(status),
                         backend.name);
    if (type && status_has_content(status))
        ok = ok && out_printf(c, "Content-Type: %s\r\n", type);
    if (chunked)
        ok = ok && out_printf(c, "Transfer-Encoding: chunked\r\n");
    else if (status != 204 && status != 304)
        ok = ok && out_printf(c, "Content-Length: %llu\r\n",
                              status_has_content(status) ? (unsigned long long)length : 0ULL);
    /* HTTP/1.1 persists by default; HTTP/1.0 only when asked (RFC 9112 section 9.3). */
    if (!c->keep_alive)
        ok = ok && out_printf(c, "Connection: close\r\n");
    else if (c->req.version_minor == 0)
        ok = ok && out_printf(c, "Connection: keep-alive\r\n");
    return ok && out_append(c, "\r\n", 2);
}

/* Queues a complete response with a short body and starts writing it. */
static void respond(struct conn *c, int status, const char *type, const char *body, size_t len)
{
    bool ok = out_head(c, status, type, len, false);
    if (ok && !c->head_only && status_has_content(status))
        ok = out_append(c, body, len);
    if (!ok) {
        /* Cannot happen with OUT_CAP as sized; never send half a head. */
        fprintf(stderr, "backend %s: response does not fit the output buffer\n", backend.name);
        conn_close(c);
        return;
    }
    c->state = CONN_RESPOND;
}

static void respondf(struct conn *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void respondf(struct conn *c, int status, const char *fmt, ...)
{
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(body))
        n = sizeof(body) - 1;
    respond(c, status, "text/plain", body, (size_t)n);
}

static void respond_bad_request(struct conn *c, const char *why)
{
    c->keep_alive = false;
    respondf(c, 400, "%s\n", why);
}

/* Queues the next piece of a /bytes body behind what out[] holds. Called
 * only when extra[] is empty, so the framing lands in out[] in byte order.
 * Returns false when there is nothing more to send. */
static bool stream_next(struct conn *c)
{
    if (c->stream == STREAM_OFF)
        return false;
    if (c->stream_left == 0) {
        c->stream = STREAM_OFF;
        if (!c->stream_chunked)
            return false;
        /* last-chunk and an empty trailer section; a data chunk's closing
         * CRLF is always sent in front of the next chunk line */
        return c->stream_sent ? out_append(c, "\r\n0\r\n\r\n", 7) : out_append(c, "0\r\n\r\n", 5);
    }
    uint64_t span = c->stream_chunked ? CHUNK_DATA : PATTERN_SPAN;
    size_t n = (size_t)(c->stream_left < span ? c->stream_left : span);
    if (c->stream_chunked && !out_printf(c, "%s%zx\r\n", c->stream_sent ? "\r\n" : "", n))
        return false;
    c->extra = pattern + c->stream_sent % PATTERN_CYCLE;
    c->extra_len = n;
    c->stream_left -= n;
    c->stream_sent += n;
    return true;
}

static void out_advance(struct conn *c, size_t written)
{
    size_t from_out = c->out_len - c->out_sent;
    if (written < from_out) {
        c->out_sent += (uint32_t)written;
        return;
    }
    c->out_sent = c->out_len = 0;
    written -= from_out;
    c->extra += written;
    c->extra_len -= written;
}

/* Writes what is queued until done or EAGAIN. One writev per round, head
 * and body together. Returns false if the connection was closed. */
static bool conn_flush(struct conn *c)
{
    while (!c->write_blocked) {
        if (c->extra_len == 0)
            stream_next(c);
        struct iovec iov[2];
        int n = 0;
        if (c->out_sent < c->out_len)
            iov[n++] = (struct iovec){c->out + c->out_sent, c->out_len - c->out_sent};
        if (c->extra_len)
            iov[n++] = (struct iovec){(void *)c->extra, c->extra_len};
        if (n == 0)
            return true;
        ssize_t written = writev(c->io.fd, iov, n);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                c->write_blocked = true;
                return true;
            }
            conn_close(c);
            return false;
        }
        out_advance(c, (size_t)written);
    }
    return true;
}

/* ---- endpoints ---- */

typedef void (*route_fn)(struct conn *c, struct span query);

static void respond_health(struct conn *c)
{
    int s = backend.health_status;
    respondf(c, s, "%s\n", s >= 200 && s < 300 ? "ok" : "fail");
}

static void route_health(struct conn *c, struct span query)
{
    (void)query;
    if (!backend.health_hang) {
        respond_health(c);
        return;
    }
    c->state = CONN_HUNG;
    list_push(&backend.hung, &c->hung_link);
}

static bool parse_status(struct span s, int *status)
{
    uint64_t v;
    if (!parse_uint(s, 599, &v) || v < 200)
        return false;
    *status = (int)v;
    return true;
}

static struct control control_parse(struct span query)
{
    struct control ctl = {0};
    struct span v;
    if (query_get(query, "status", &v)) {
        ctl.has_status = true;
        if (!parse_status(v, &ctl.status))
            return ctl;
    }
    if (query_get(query, "hang", &v)) {
        ctl.has_hang = true;
        if (!span_is(v, "0") && !span_is(v, "1"))
            return ctl;
        ctl.hang = span_is(v, "1");
    }
    ctl.valid = ctl.has_status || ctl.has_hang;
    return ctl;
}

/* Answers the /health requests held while health hung, with the status
 * that is current now. */
static void release_hung(void)
{
    while (!list_empty(&backend.hung)) {
        struct conn *c = container_of(backend.hung.next, struct conn, hung_link);
        list_remove(&c->hung_link);
        respond_health(c);
        conn_drive(c);
    }
}

static void control_apply(struct conn *c, const struct control *ctl)
{
    if (!ctl->valid) {
        respondf(c, 400, "use status=200..599 or hang=0|1\n");
        return;
    }
    if (ctl->has_status) {
        backend.health_status = ctl->status;
        backend.health_hang = false;   /* "hangs until set again with status=" */
    }
    if (ctl->has_hang)
        backend.health_hang = ctl->hang;
    respondf(c, 200, "ok\n");
    if (!backend.health_hang)
        release_hung();
}

static void route_control(struct conn *c, struct span query)
{
    if (c->req.method != HTTP1_METHOD_POST) {
        respondf(c, 405, "use POST\n");
        return;
    }
    struct control ctl = control_parse(query);
    control_apply(c, &ctl);
}

static void route_status(struct conn *c, struct span code)
{
    int status;
    if (!parse_status(code, &status)) {
        respondf(c, 400, "status must be 200..599\n");
        return;
    }
    respondf(c, status, "%s %d\n", backend.name, status);
}

static void respond_name(struct conn *c)
{
    respondf(c, 200, "%s\n", backend.name);
}

static void route_root(struct conn *c, struct span query)
{
    (void)query;
    respond_name(c);
}

static void route_slow(struct conn *c, struct span query)
{
    struct span v;
    uint64_t ms;
    if (!query_get(query, "ms", &v) || !parse_uint(v, SLOW_MAX_MS, &ms)) {
        respondf(c, 400, "use ms=N\n");
        return;
    }
    if (loop_timer_arm(&backend.loop, &c->timer, (int64_t)ms) < 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_SLOW;
}

static void route_close(struct conn *c, struct span query)
{
    (void)query;
    conn_close(c);
}

static void route_reset(struct conn *c, struct span query)
{
    (void)query;
    /* A zero linger timeout makes close() abort the connection with RST. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    conn_close(c);
}

static void route_bytes(struct conn *c, struct span query)
{
    struct span v;
    uint64_t n;
    if (!query_get(query, "n", &v) || !parse_uint(v, BYTES_MAX, &n)) {
        respondf(c, 400, "use n=N\n");
        return;
    }
    /* HTTP/1.0 has no chunked coding (RFC 9112 section 7): use a length. */
    bool chunked = query_get(query, "chunked", &v) && span_is(v, "1") && c->req.version_minor == 1;
    if (!out_head(c, 200, "application/octet-stream", n, chunked)) {
        conn_close(c);
        return;
    }
    if (!c->head_only) {
        c->stream = STREAM_DATA;
        c->stream_chunked = chunked;
        c->stream_left = n;
        c->stream_sent = 0;
    }
    c->state = CONN_RESPOND;
}

static void route_headers(struct conn *c, struct span query)
{
    (void)query;
    if (!out_head(c, 200, "text/plain", c->req.head_len, false)) {
        conn_close(c);
        return;
    }
    if (!c->head_only) {
        /* in[] is not compacted until this response is written */
        c->extra = c->in + c->in_start;
        c->extra_len = c->req.head_len;
    }
    c->state = CONN_RESPOND;
}

static void route_stats(struct conn *c, struct span query)
{
    (void)query;
    char body[NAME_MAX_LEN + 96];
    int n = snprintf(body, sizeof(body), "{\"name\":\"%s\",\"connections\":%llu,\"requests\":%llu}\n",
                     backend.name, (unsigned long long)backend.connections,
                     (unsigned long long)backend.requests);
    respond(c, 200, "application/json", body, (size_t)n);
}

/* A tunnel for testing upgrades through a proxy: 101, then an echo. */
static void route_upgrade(struct conn *c, struct span query)
{
    (void)query;
    if (!(c->req.flags & HTTP1_CONN_UPGRADE) || c->req.version_minor != 1) {
        respondf(c, 426, "send Connection: upgrade and an Upgrade header\n");
        return;
    }
    /* RFC 9110 section 15.2: a 1xx has no content and no Content-Length. */
    if (!out_printf(c, "HTTP/1.1 101 Switching Protocols\r\nX-Backend: %s\r\n"
                       "Connection: upgrade\r\nUpgrade: echo\r\n\r\n", backend.name)) {
        conn_close(c);
        return;
    }
    c->upgrading = true;
    c->state = CONN_RESPOND;
}

static const struct route {
    const char *path;
    route_fn fn;
} routes[] = {
    {"/health", route_health},
    {"/control/health", route_control},
    {"/slow", route_slow},
    {"/close", route_close},
    {"/reset", route_reset},
    {"/bytes", route_bytes},
    {"/headers", route_headers},
    {"/stats", route_stats},
    {"/upgrade", route_upgrade},
};

/* Splits the origin-form path at '?'. */
static void request_path(const struct http1_request *r, struct span *path, struct span *query)
{
    const char *q = memchr(r->path, '?', r->path_len);
    size_t path_len = q ? (size_t)(q - r->path) : r->path_len;
    *path = (struct span){r->path, path_len};
    *query = q ? (struct span){q + 1, r->path_len - path_len - 1} : (struct span){q, 0};
}

static void conn_route(struct conn *c)
{
    struct span path, query;
    request_path(&c->req, &path, &query);
    /* A flaky application: some requests are lost without a byte of
     * answer, the rest (and every health check) are served normally. */
    if (backend.drop_every && !span_is(path, "/health") && ++backend.drop_count % backend.drop_every == 0) {
        route_close(c, query);
        return;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (span_is(path, routes[i].path)) {
            routes[i].fn(c, query);
            return;
        }
    }
    if (path.len > 8 && memcmp(path.ptr, "/status/", 8) == 0) {
        route_status(c, (struct span){path.ptr + 8, path.len - 8});
        return;
    }
    route_root(c, query);
}

/* ---- requests ---- */

static void log_request(const struct http1_request *r)
{
    if (backend.log_fd < 0)
        return;
    /* One writev on an O_APPEND file: lines from backends sharing the file
     * never interleave, and nothing sits in a buffer if we are killed. */
    struct iovec iov[4] = {
        {(void *)r->method_text, r->method_len},
        {" ", 1},
        {(void *)r->target, r->target_len},
        {"\n", 1},
    };
    if (writev(backend.log_fd, iov, 4) < 0)
        fprintf(stderr, "backend %s: writing the log: %s\n", backend.name, strerror(errno));
}

static void conn_answer_body(struct conn *c)
{
    if (c->body_for_control)
        control_apply(c, &c->control);
    else
        respondf(c, 200, "%s received %llu bytes\n", backend.name, (unsigned long long)c->body_bytes);
}

/* The head is no longer needed once the body starts: drop it, so the whole
 * input buffer is free for body bytes. */
static void conn_begin_body(struct conn *c)
{
    struct span path, query;
    request_path(&c->req, &path, &query);
    c->body_for_control = span_is(path, "/control/health");
    if (c->body_for_control)
        c->control = control_parse(query);
    if ((c->req.flags & HTTP1_EXPECT_CONTINUE) && c->req.version_minor == 1)
        out_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->body_chunked = c->req.body == HTTP1_BODY_CHUNKED;
    c->body_left = c->req.content_length;
    c->body_bytes = 0;
    c->chunk = (struct http1_chunked){0};
    c->in_start += c->consume;
    c->consume = 0;
    c->state = CONN_BODY;
}

/* True when the request declares a body; an explicit "Content-Length: 0"
 * counts (an empty upload is still an upload), though the parser reports it
 * as HTTP1_BODY_NONE. Looks at header_scratch: call right after parsing. */
static bool request_has_body(const struct http1_request *r)
{
    if (r->body == HTTP1_BODY_LENGTH || r->body == HTTP1_BODY_CHUNKED)
        return true;
    for (uint32_t i = 0; i < r->header_count; i++)
        if (HTTP1_NAME_IS(&r->headers[i], "content-length"))
            return true;
    return false;
}

static void conn_begin_request(struct conn *c, bool has_body)
{
    const struct http1_request *r = &c->req;
    struct span path, query;
    request_path(r, &path, &query);
    if (!span_is(path, "/stats"))
        backend.requests++;
    log_request(r);
    if (r->version_minor == 0)
        c->keep_alive = (r->flags & HTTP1_CONN_KEEP_ALIVE) && !(r->flags & HTTP1_CONN_CLOSE);
    else
        c->keep_alive = !(r->flags & HTTP1_CONN_CLOSE);
    c->head_only = r->method == HTTP1_METHOD_HEAD;
    c->consume = r->head_len;
    if (has_body)
        conn_begin_body(c);
    else
        conn_route(c);
}

/* Parses the next head if it is all there. Returns true on progress. */
static bool conn_parse_head(struct conn *c)
{
    if (c->in_start == c->in_len)
        return false;
    c->req = (struct http1_request){.headers = header_scratch};
    enum http1_result rc = http1_parse_request(c->in + c->in_start, c->in_len - c->in_start,
                                               &request_limits, &c->req);
    bool has_body = rc == HTTP1_OK && request_has_body(&c->req);
    c->req.headers = NULL;    /* header_scratch belongs to the next parse */
    if (rc == HTTP1_INCOMPLETE) {
        if (c->in_len - c->in_start < IN_CAP)
            return false;
        rc = HTTP1_ERROR;     /* unreachable while IN_CAP > HEAD_LIMIT */
    }
    if (rc == HTTP1_ERROR) {
        c->req.version_minor = 1;
        c->head_only = false;
        respond_bad_request(c, "bad request");
        return true;
    }
    conn_begin_request(c, has_body);
    return true;
}

/* Counts the body bytes that have arrived. Returns true on progress. */
static bool conn_count_body(struct conn *c)
{
    size_t avail = c->in_len - c->in_start;
    size_t used;
    bool done;
    if (c->body_chunked) {
        ssize_t n = http1_chunked_scan(&c->chunk, c->in + c->in_start, avail);
        if (n < 0) {
            respond_bad_request(c, "bad chunked body");
            return true;
        }
        used = (size_t)n;
        c->body_bytes = c->chunk.data_bytes;
        done = c->chunk.done;
    } else {
        used = avail < c->body_left ? avail : (size_t)c->body_left;
        c->body_left -= used;
        c->body_bytes += used;
        done = c->body_left == 0;
    }
    c->in_start += (uint32_t)used;
    if (done) {
        conn_answer_body(c);
        return true;
    }
    return used > 0;
}

/* Moves what fits of the input to the output. Returns true on progress. */
static bool conn_echo(struct conn *c)
{
    out_compact(c);
    size_t n = c->in_len - c->in_start;
    if (n > OUT_CAP - c->out_len)
        n = OUT_CAP - c->out_len;
    if (n == 0)
        return false;
    out_append(c, c->in + c->in_start, n);
    c->in_start += (uint32_t)n;
    return true;
}

static bool conn_process(struct conn *c)
{
    switch (c->state) {
    case CONN_ECHO:
        return conn_echo(c);
    case CONN_HEAD:
        return conn_parse_head(c);
    case CONN_BODY:
        return conn_count_body(c);
    default:
        return false;
    }
}

/* ---- connection life ---- */

static void conn_linger(struct conn *c)
{
    /* close() with unread input makes the kernel send RST, which can destroy
     * the response before the client has read it: shut our side and drain
     * theirs for a while instead (RFC 9112 section 9.6). */
    shutdown(c->io.fd, SHUT_WR);
    c->state = CONN_LINGER;
    c->in_start = c->in_len = 0;
    if (c->peer_closed || loop_timer_arm(&backend.loop, &c->timer, LINGER_MS) < 0)
        conn_close(c);
}

static void conn_finish_response(struct conn *c)
{
    if (c->upgrading) {
        c->in_start += c->consume;   /* bytes after the head are the tunnel's */
        c->consume = 0;
        c->state = CONN_ECHO;
        return;
    }
    if (!c->keep_alive) {
        conn_linger(c);
        return;
    }
    c->in_start += c->consume;
    c->consume = 0;
    c->state = CONN_HEAD;
}

/* Reads what fits into in[]. Returns true when something changed (bytes
 * arrived, or the peer closed). */
static bool conn_fill(struct conn *c)
{
    if (!c->readable)
        return false;
    if (c->state == CONN_LINGER) {
        c->in_start = c->in_len = 0;
    } else if ((c->state == CONN_HEAD || c->state == CONN_BODY || c->state == CONN_ECHO) &&
               c->in_start > 0) {
        memmove(c->in, c->in + c->in_start, c->in_len - c->in_start);
        c->in_len -= c->in_start;
        c->in_start = 0;
    }
    size_t room = IN_CAP - c->in_len;
    if (room == 0)
        return false;
    ssize_t n = read(c->io.fd, c->in + c->in_len, room);
    if (n > 0) {
        c->in_len += (uint32_t)n;
        /* A short read drained the socket, and any later arrival raises a
         * new edge: skip the read that would only say EAGAIN. Not after
         * RDHUP, whose EOF may already be queued behind these bytes. */
        if ((size_t)n < room && !c->rdhup)
            c->readable = false;
        return true;
    }
    if (n == 0) {
        c->peer_closed = true;
        c->readable = false;
        return true;
    }
    if (errno == EINTR)
        return true;
    if (errno == EAGAIN) {
        c->readable = false;
        return false;
    }
    conn_close(c);
    return true;
}

/* The peer sent EOF and every complete request before it was handled. */
static void conn_on_peer_closed(struct conn *c)
{
    switch (c->state) {
    case CONN_SLOW:
    case CONN_RESPOND:
        break;          /* a half-closed client still reads the answer */
    default:
        conn_close(c);  /* nothing more can arrive to complete a request */
        break;
    }
}

/* Does everything that can be done without blocking. */
static void conn_drive(struct conn *c)
{
    while (c->state != CONN_CLOSED) {
        if (!conn_flush(c))
            return;
        if (c->state == CONN_RESPOND && out_idle(c)) {
            conn_finish_response(c);
            continue;
        }
        if (conn_process(c))
            continue;
        if (!conn_fill(c))
            break;
    }
    if (c->state != CONN_CLOSED && c->peer_closed && !c->readable)
        conn_on_peer_closed(c);
}

static void conn_on_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)loop;
    struct conn *c = container_of(io, struct conn, io);
    if (c->state == CONN_CLOSED)
        return;         /* closed earlier in this epoll batch */
    /* HUP without our own shutdown means the peer reset; in LINGER it means
     * the drain is over. Either way nothing more can be said. */
    if (events & (EPOLLERR | EPOLLHUP)) {
        conn_close(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP))
        c->readable = true;
    if (events & EPOLLRDHUP)
        c->rdhup = true;
    if (events & EPOLLOUT)
        c->write_blocked = false;
    conn_drive(c);
}

static void conn_on_timer(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    struct conn *c = container_of(timer, struct conn, timer);
    if (c->state == CONN_SLOW) {
        respond_name(c);
        conn_drive(c);
    } else if (c->state == CONN_LINGER) {
        conn_close(c);
    }
}

static void conn_close(struct conn *c)
{
    loop_del(&backend.loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    loop_timer_cancel(&backend.loop, &c->timer);
    list_remove(&c->hung_link);
    list_remove(&c->link);
    list_push(&backend.dead, &c->link);
    c->state = CONN_CLOSED;
}

static struct conn *conn_get(void)
{
    struct conn *c;
    if (!list_empty(&backend.spare)) {
        c = container_of(backend.spare.next, struct conn, link);
        list_remove(&c->link);
    } else {
        c = malloc(sizeof(*c));
        if (!c)
            return NULL;
    }
    /* Everything but the two buffers, which need no clearing. */
    memset(c, 0, offsetof(struct conn, out));
    list_init(&c->link);
    list_init(&c->hung_link);
    loop_timer_init(&c->timer, conn_on_timer);
    c->io.fd = -1;
    return c;
}

static void conn_open(int fd)
{
    struct conn *c = conn_get();
    if (!c) {
        close(fd);
        return;
    }
    /* Responses after a 100 Continue and the last small piece of a stream
     * must not wait for Nagle's delayed-ACK round trip. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = CONN_HEAD;
    if (loop_add(&backend.loop, &c->io, fd, conn_on_event) < 0) {
        close(fd);
        list_push(&backend.spare, &c->link);
        return;
    }
    list_push(&backend.live, &c->link);
    backend.connections++;
}

/* Objects closed during the batch become reusable only now. */
static void after_iteration(struct loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    while (!list_empty(&backend.dead)) {
        struct list *node = backend.dead.next;
        list_remove(node);
        list_push(&backend.spare, node);
    }
}

/* At the descriptor limit the pending connection would make the level-
 * triggered listener fire forever: spend the reserve descriptor to accept
 * and drop it, so the client at least sees a close. */
static void shed_connection(void)
{
    if (backend.reserve_fd < 0)
        return;
    close(backend.reserve_fd);
    int fd = accept4(backend.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    backend.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    fprintf(stderr, "backend %s: out of file descriptors, dropped a connection\n", backend.name);
}

static void on_accept(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)loop;
    (void)io;
    (void)events;
    /* Bounded, because the listener is level-triggered: what is left makes
     * it fire again after the connections already open had their turn. */
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(backend.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_open(fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE)
            shed_connection();
        return;
    }
}

static void on_signal(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)events;
    struct signalfd_siginfo si;
    if (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        loop->stop = true;
}

/* ---- start-up ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: backend --port N [--host 127.0.0.1] [--name NAME] [--health-status CODE] [--log FILE]\n"
            "               [--drop-every N]\n"
            "\n"
            "  GET /                    200 \"NAME\\n\" (also any other path)\n"
            "  GET /health              the health status, \"ok\\n\" or \"fail\\n\"\n"
            "  POST /control/health     ?status=CODE sets it; ?hang=1 holds /health unanswered\n"
            "  GET /status/CODE         answers CODE with \"NAME CODE\\n\"\n"
            "  GET /slow?ms=N           answers after N ms\n"
            "  GET /close, GET /reset   close, or reset, without answering\n"
            "  GET /bytes?n=N[&chunked=1]  N bytes of a..z\n"
            "  GET /headers             the request head as received\n"
            "  GET /stats               {\"name\":..,\"connections\":C,\"requests\":R}\n"
            "  GET /upgrade             with Connection: upgrade and Upgrade: 101, then\n"
            "                           every byte that arrives is sent back\n"
            "  --drop-every N           close every Nth request (/health aside) without answering\n"
            "  any request with a body  \"NAME received N bytes\\n\"\n");
}

/* Safe in a header value and inside a JSON string without escaping. */
static bool name_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~' || name[i] == '"' || name[i] == '\\')
            return false;
    return true;
}

struct options {
    const char *host;
    const char *name;
    const char *log_path;
    long port;
    int health_status;
    uint64_t drop_every;
};

static bool parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"host", required_argument, NULL, 'H'},
        {"name", required_argument, NULL, 'n'},
        {"health-status", required_argument, NULL, 's'},
        {"log", required_argument, NULL, 'l'},
        {"drop-every", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    *opt = (struct options){.host = "127.0.0.1", .port = -1, .health_status = 200};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        struct span arg = {optarg, optarg ? strlen(optarg) : 0};
        uint64_t v;
        switch (ch) {
        case 'p':
            if (!parse_uint(arg, 65535, &v))
                return false;
            opt->port = (long)v;
            break;
        case 'H': opt->host = optarg; break;
        case 'n': opt->name = optarg; break;
        case 'l': opt->log_path = optarg; break;
        case 'd':
            if (!parse_uint(arg, 1000000, &opt->drop_every))
                return false;
            break;
        case 's':
            if (!parse_status(arg, &opt->health_status))
                return false;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return false;
        }
    }
    return optind == argc && opt->port >= 0 && (!opt->name || name_is_valid(opt->name));
}

/* Returns the listening socket, or -1 with a message printed. */
static int listen_on(const char *host, long port, int *bound_port)
{
    char port_text[24];
    snprintf(port_text, sizeof(port_text), "%ld", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    int rc = getaddrinfo(host, port_text, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "backend: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_storage addr;
    socklen_t addr_len = sizeof(addr);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) < 0) {
        fprintf(stderr, "backend: cannot listen on %s:%ld: %s\n", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    /* sin_port and sin6_port sit at the same offset */
    *bound_port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
    return fd;
}

/* Thousands of test connections need more than the usual 1024 descriptors. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int signals_open(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static int backend_start(const struct options *opt)
{
    int port;
    backend.listen_fd = listen_on(opt->host, opt->port, &port);
    if (backend.listen_fd < 0)
        return -1;
    if (opt->name)
        snprintf(backend.name, sizeof(backend.name), "%s", opt->name);
    else
        snprintf(backend.name, sizeof(backend.name), "app-%d", port);
    backend.health_status = opt->health_status;
    backend.drop_every = opt->drop_every;
    backend.log_fd = -1;
    if (opt->log_path) {
        backend.log_fd = open(opt->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (backend.log_fd < 0) {
            fprintf(stderr, "backend: %s: %s\n", opt->log_path, strerror(errno));
            return -1;
        }
    }
    backend.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    backend.signal_fd = signals_open();
    list_init(&backend.live);
    list_init(&backend.dead);
    list_init(&backend.spare);
    list_init(&backend.hung);
    if (backend.signal_fd < 0 || loop_init(&backend.loop) < 0 ||
        loop_add_reader(&backend.loop, &backend.signal_io, backend.signal_fd, on_signal) < 0 ||
        loop_add_reader(&backend.loop, &backend.listen_io, backend.listen_fd, on_accept) < 0) {
        fprintf(stderr, "backend: cannot set up the event loop: %s\n", strerror(errno));
        return -1;
    }
    backend.loop.after_iteration = after_iteration;
    const char *fmt = strchr(opt->host, ':') ? "backend %s listening on [%s]:%d\n"
                                             : "backend %s listening on %s:%d\n";
    printf(fmt, backend.name, opt->host, port);
    fflush(stdout);
    return 0;
}

/* Frees everything, so that leak checkers see a clean exit. */
static void backend_stop(void)
{
    while (!list_empty(&backend.live))
        conn_close(container_of(backend.live.next, struct conn, link));
    after_iteration(&backend.loop, NULL);
    while (!list_empty(&backend.spare)) {
        struct conn *c = container_of(backend.spare.next, struct conn, link);
        list_remove(&c->link);
        free(c);
    }
    loop_close(&backend.loop);
    close(backend.listen_fd);
    close(backend.signal_fd);
    if (backend.reserve_fd >= 0)
        close(backend.reserve_fd);
    if (backend.log_fd >= 0)
        close(backend.log_fd);
}

int main(int argc, char **argv)
{
    struct options opt;
    if (!parse_options(argc, argv, &opt)) {
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)('a' + i % PATTERN_CYCLE);
    /* A client gone mid-write must give EPIPE, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (backend_start(&opt) < 0)
        return 1;
    int rc = loop_run(&backend.loop);
    if (rc < 0)
        fprintf(stderr, "backend %s: event loop: %s\n", backend.name, strerror(-rc));
    backend_stop();
    return rc < 0 ? 1 : 0;
}
