/* httpclient.c - the one-shot HTTP/1.1 client (httpclient.h).
 *
 * Shape. An exchange is a small state machine driven by the edge-triggered
 * loop:
 *
 *     CONNECTING -> [HANDSHAKING, for TLS] -> SENDING -> RECEIVING -> idle
 *
 * bounded as a whole by one timer, which also carries a failure found
 * inside httpclient_start to the loop: done never runs from inside start,
 * so an owner may restart the exchange or free itself from done. The owner
 * lends the request text and the head buffer (the health checks borrow
 * theirs from a free list for the duration of a check only); the client
 * holds nothing else but a TLS session while one is open.
 *
 * Cheap refusals. When thousands of applications are down, their refused
 * checks are most of what checking costs: on a near network the refusal is
 * known by the time connect() returns, so the request goes out before the
 * socket is ever watched by epoll (http_send_early), and a refused socket is
 * kept, within the owner's budget, to connect again next time
 * (http_keep_spare).
 *
 * Judging. The head is parsed by the strict parser of http1.c; interim 1xx
 * heads are skipped; a head bigger than the buffer is judged by its status
 * line alone (http_judge_status_line), so big headers never fail a check.
 */
#include "httpclient.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http1.h"
#include "net.h"
#include "tls.h"

#define HTTPCLIENT_HEADERS_MAX 64
#define HTTPCLIENT_STATUS_LINE_MAX 256

enum http_phase {
    HTTP_IDLE = 0,
    HTTP_CONNECTING,
    HTTP_HANDSHAKING,
    HTTP_SENDING,
    HTTP_RECEIVING,
};

static const char *const http_phase_doing[] = {
    [HTTP_IDLE] = "",
    [HTTP_CONNECTING] = "while connecting",
    [HTTP_HANDSHAKING] = "in the TLS handshake",
    [HTTP_SENDING] = "sending the request",
    [HTTP_RECEIVING] = "waiting for the response",
};

static void http_on_io(struct loop *loop, struct loop_io *io, uint32_t events);
static void http_on_timer(struct loop *loop, struct loop_timer *timer);

void httpclient_init(struct httpclient *x)
{
    x->fd = -1;
    x->spare_fd = -1;
    x->spare_budget = NULL;
    x->ssl = NULL;
    x->phase = HTTP_IDLE;
    x->io.fd = -1;
    loop_timer_init(&x->timer, http_on_timer);
}

bool httpclient_busy(const struct httpclient *x)
{
    return x->phase != HTTP_IDLE;
}

static void http_close(struct httpclient *x)
{
    loop_timer_cancel(x->loop, &x->timer);
    if (x->fd >= 0) {
        /* Removed explicitly: close() alone does not take it out of epoll
         * while a child being spawned by the alert thread still holds a
         * copy of the descriptor, and a late event would then reach an
         * exchange that is over. */
        loop_del(x->loop, &x->io);
        tls_close(x->ssl);
        close(x->fd);
    }
    x->ssl = NULL;
    x->fd = -1;
    x->io.fd = -1;
    x->phase = HTTP_IDLE;
}

void httpclient_cancel(struct httpclient *x)
{
    if (x->phase != HTTP_IDLE)
        http_close(x);
    if (x->spare_fd >= 0) {
        close(x->spare_fd);
        x->spare_fd = -1;
        ++*x->spare_budget;
    }
}

static void http_finish(struct httpclient *x, int status, const char *error)
{
    http_close(x);
    x->done(x, status, error);
}

static void http_fail(struct httpclient *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void http_fail(struct httpclient *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->reason, sizeof(x->reason), fmt, ap);
    va_end(ap);
    http_finish(x, 0, x->reason);
}

/* Operators grep for these two; everything else carries the system's words. */
static void http_fail_errno(struct httpclient *x, int err)
{
    char text[80];
    if (err == ECONNREFUSED)
        http_fail(x, "connection refused");
    else if (err == ECONNRESET)
        http_fail(x, "connection reset");
    else if (x->phase == HTTP_CONNECTING)
        http_fail(x, "connect failed: %s", strerror_r(err, text, sizeof(text)));
    else if (x->phase == HTTP_RECEIVING)
        http_fail(x, "read failed: %s", strerror_r(err, text, sizeof(text)));
    else
        http_fail(x, "write failed: %s", strerror_r(err, text, sizeof(text)));
}

static void http_fail_tls(struct httpclient *x, int rc)
{
    char text[96];
    if (rc != -EPROTO) {
        http_fail_errno(x, -rc);
        return;
    }
    if (tls_verify_failure(x->ssl, text, sizeof(text))) {
        http_fail(x, "TLS certificate verify failed: %s", text);
        return;
    }
    tls_error_text(x->ssl, text, sizeof(text));
    if (x->phase == HTTP_HANDSHAKING)
        http_fail(x, "TLS handshake failed: %s", text);
    else
        http_fail(x, "TLS error: %s", text);
}

static void http_on_timer(struct loop *loop, struct loop_timer *timer)
{
    struct httpclient *x = container_of(timer, struct httpclient, timer);
    (void)loop;
    if (x->pending_error) {
        http_fail_errno(x, x->pending_error);
        return;
    }
    http_fail(x, "timeout after %lld ms %s", (long long)x->timeout_ms, http_phase_doing[x->phase]);
}

static ssize_t http_write(struct httpclient *x);

/* On loopback and on a near network the handshake, or the refusal, is over
 * by the time connect() returns: sending the request at once spares the
 * trip through epoll for writability, and a refused check then costs no
 * epoll call at all. Returns 0 or -errno; EAGAIN (still connecting) is 0. */
static int http_send_early(struct httpclient *x)
{
    if (x->tls)
        return 0;   /* the handshake starts from the loop */
    ssize_t n = http_write(x);
    if (n == -EAGAIN)
        return 0;
    if (n < 0)
        return (int)n;
    x->sent = (size_t)n;
    x->phase = x->sent < x->request_len ? HTTP_SENDING : HTTP_RECEIVING;
    return 0;
}

/* A socket connecting to the application: the spare one when there is one
 * (see http_keep_spare), else a new one. *from_spare tells which. Returns
 * it or -errno. */
static int http_connect(struct httpclient *x, bool *in_progress, bool *from_spare)
{
    int fd = x->spare_fd;
    *from_spare = false;
    if (fd >= 0) {
        x->spare_fd = -1;
        ++*x->spare_budget;
        int rc = net_reconnect(fd, x->address, in_progress);
        if (rc == 0) {
            *from_spare = true;
            return fd;
        }
        close(fd);
        if (rc != -EISCONN && rc != -EALREADY && rc != -EINVAL)
            return rc;   /* the address's own answer, as a new socket would get */
    }
    /* One small write per check: Nagle never delays it, so no setsockopt. */
    return net_connect(x->address, false, in_progress);
}

/* A connection refused before it was ever watched by epoll leaves a socket
 * that can connect again: an application that is down then costs two
 * connect() calls a check instead of socket(), connect(), write() and
 * close(), which is most of what checking thousands of dead applications
 * costs. `dissolved`: the kernel already made it ready to connect again. */
static bool http_keep_spare(struct httpclient *x, int fd, int err, bool dissolved)
{
    if (err != -ECONNREFUSED || !x->spare_budget || *x->spare_budget <= 0)
        return false;
    if (!dissolved && net_dissolve(fd) < 0)
        return false;
    --*x->spare_budget;
    x->spare_fd = fd;
    return true;
}

/* Connects x->fd and, where the outcome is already known, sends the
 * request. A spare socket was refused last time, and most likely will be
 * again: it asks for the outcome with a second connect(), which also
 * readies it for the next check, instead of a write() that would need one
 * more call to dissolve the socket afterwards. Returns 0 (x->fd is to be
 * watched) or -errno with x->fd closed or kept as the spare. */
static int http_open(struct httpclient *x)
{
    bool in_progress, from_spare;
    int fd = http_connect(x, &in_progress, &from_spare);
    if (fd < 0)
        return fd;
    x->fd = fd;
    int rc;
    bool dissolved = false;
    if (from_spare && in_progress) {
        rc = net_connect_result(fd, x->address);
        dissolved = rc < 0 && rc != -EALREADY;
        if (rc == 0)
            rc = http_send_early(x);
        else if (rc == -EALREADY)
            rc = 0;
    } else {
        rc = http_send_early(x);
    }
    if (rc == 0)
        return 0;
    x->fd = -1;
    if (!http_keep_spare(x, fd, rc, dissolved))
        close(fd);
    return rc;
}

int httpclient_start(struct httpclient *x, struct loop *loop)
{
    x->loop = loop;
    x->sent = x->received = 0;
    x->pending_error = 0;
    x->phase = HTTP_CONNECTING;
    int rc = http_open(x);
    if (rc == 0 && (rc = loop_add(loop, &x->io, x->fd, http_on_io)) == 0) {
        if (loop_timer_arm(loop, &x->timer, x->timeout_ms) == 0) {
            /* Registered edge-triggered: a socket already writable or
             * readable still reports it once, so every case continues in
             * http_on_io. */
            return 0;
        }
        rc = -ENOMEM;
        loop_del(loop, &x->io);
    }
    if (x->fd >= 0)
        close(x->fd);
    x->fd = -1;
    x->io.fd = -1;
    /* Reported from the loop, as promised to the caller; as the connect's
     * failure, whatever call saw it. */
    x->phase = HTTP_CONNECTING;
    x->pending_error = -rc;
    if (loop_timer_arm(loop, &x->timer, 0) < 0) {
        x->phase = HTTP_IDLE;
        return -ENOMEM;
    }
    return 0;
}

static ssize_t http_write(struct httpclient *x)
{
    return tls_or_clear_write(x->ssl, x->fd, x->request + x->sent, x->request_len - x->sent);
}

static ssize_t http_read(struct httpclient *x)
{
    return tls_or_clear_read(x->ssl, x->fd, x->buf + x->received, x->buf_cap - x->received);
}

/* The status of a head too large for the buffer, from its first line alone
 * (parsed by the same strict parser as an empty head). A health check asks
 * only for the status; big headers (security policies, cookies) must not
 * fail it. Returns the status, or 0 when the line is not a status line. */
static int http_judge_status_line(const struct httpclient *x)
{
    char line[HTTPCLIENT_STATUS_LINE_MAX + 4];
    size_t scan = x->received < HTTPCLIENT_STATUS_LINE_MAX ? x->received : HTTPCLIENT_STATUS_LINE_MAX;
    const char *end = memmem(x->buf, scan, "\r\n", 2);
    if (!end)
        return 0;
    size_t len = (size_t)(end - x->buf);
    memcpy(line, x->buf, len);
    memcpy(line + len, "\r\n\r\n", 4);
    struct http1_header header;
    struct http1_response res = {.headers = &header};
    struct http1_limits lim = {.head_bytes = sizeof(line), .headers = 1};
    if (http1_parse_response(line, len + 4, &lim, HTTP1_METHOD_GET, &res) != HTTP1_OK)
        return 0;
    return res.status;
}

/* Drops an interim 1xx head (100 Continue, 103 Early Hints) from the buffer:
 * the final response follows it (RFC 9110 section 15.2). 101 is final. */
static bool http_skip_interim(struct httpclient *x, const struct http1_response *res)
{
    if (res->status < 100 || res->status > 199 || res->status == 101)
        return false;
    memmove(x->buf, x->buf + res->head_len, x->received - res->head_len);
    x->received -= res->head_len;
    return true;
}

/* Judges what has been received. Returns true when the exchange is over. */
static bool http_judge(struct httpclient *x, bool at_eof)
{
    struct http1_header headers[HTTPCLIENT_HEADERS_MAX];
    struct http1_response res;
    struct http1_limits lim = {.head_bytes = (uint32_t)x->buf_cap, .headers = HTTPCLIENT_HEADERS_MAX};
    enum http1_result r;
    do {
        res = (struct http1_response){.headers = headers};
        r = http1_parse_response(x->buf, x->received, &lim, HTTP1_METHOD_GET, &res);
    } while (r == HTTP1_OK && http_skip_interim(x, &res));
    if (r == HTTP1_OK) {
        http_finish(x, res.status, NULL);
        return true;
    }
    bool too_big = (r == HTTP1_INCOMPLETE && x->received == x->buf_cap) ||
                   (r == HTTP1_ERROR &&
                    (res.error == HTTP1_E_HEAD_TOO_LARGE || res.error == HTTP1_E_TOO_MANY_HEADERS));
    if (too_big) {
        int status = http_judge_status_line(x);
        if (status)
            http_finish(x, status, NULL);
        else
            http_fail(x, "bad response");
        return true;
    }
    if (r == HTTP1_ERROR) {
        http_fail(x, "bad response");
        return true;
    }
    if (at_eof) {
        if (x->received == 0)
            http_fail(x, "connection closed without a response");
        else
            http_fail(x, "bad response: connection closed in the head");
        return true;
    }
    return false;
}

/* A failed read or write: a TLS error has its own text, others an errno. */
static void http_fail_io(struct httpclient *x, ssize_t n)
{
    if (x->ssl && n == -EPROTO)
        http_fail_tls(x, (int)n);
    else
        http_fail_errno(x, (int)-n);
}

static void http_receive(struct httpclient *x)
{
    for (;;) {
        ssize_t n = http_read(x);
        if (n == -EAGAIN)
            return;
        if (n < 0) {
            http_fail_io(x, n);
            return;
        }
        x->received += (size_t)n;
        if (http_judge(x, n == 0))
            return;
    }
}

/* Runs the exchange as far as the socket allows; the edge-triggered loop
 * calls again on the next readiness change. */
static void http_advance(struct httpclient *x)
{
    if (x->phase == HTTP_HANDSHAKING) {
        int rc = tls_handshake(x->ssl);
        if (rc == -EAGAIN)
            return;
        if (rc < 0) {
            http_fail_tls(x, rc);
            return;
        }
        x->phase = HTTP_SENDING;
    }
    while (x->phase == HTTP_SENDING && x->sent < x->request_len) {
        ssize_t n = http_write(x);
        if (n == -EAGAIN)
            return;
        if (n < 0) {
            http_fail_io(x, n);
            return;
        }
        x->sent += (size_t)n;
    }
    x->phase = HTTP_RECEIVING;
    http_receive(x);
}

static void http_on_connected(struct httpclient *x)
{
    if (!x->tls) {
        x->phase = HTTP_SENDING;
        return;
    }
    x->ssl = tls_client_new(x->tls, x->fd, x->server_name);
    x->phase = HTTP_HANDSHAKING;
}

static void http_on_io(struct loop *loop, struct loop_io *io, uint32_t events)
{
    struct httpclient *x = container_of(io, struct httpclient, io);
    (void)loop;
    /* An event queued in the same epoll batch as the exchange's end. */
    if (x->phase == HTTP_IDLE || x->fd < 0)
        return;
    if (x->phase == HTTP_CONNECTING) {
        int err = net_socket_error(x->fd);
        if (err) {
            http_fail_errno(x, err);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        http_on_connected(x);
        if (x->tls && !x->ssl) {
            http_fail(x, "TLS setup failed: out of memory");
            return;
        }
    }
    http_advance(x);
}
