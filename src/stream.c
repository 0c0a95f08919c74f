/* stream.c - reads and writes on one proxied socket; see stream.h. */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tls.h"

void stream_note_events(struct stream *s, uint32_t events)
{
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->peer_closed = true;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->can_read = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        s->can_write = true;
}

/* A read that brought no bytes (n <= 0): the end of the stream (-1 with
 * errno 0), nothing for now (0), or an error (-1). */
static ssize_t read_nothing(struct stream *s, ssize_t n)
{
    if (n == 0) {
        errno = 0;
        return -1;
    }
    if (errno == EAGAIN || errno == EINTR) {
        s->can_read = errno == EINTR;
        return 0;
    }
    return -1;
}

static ssize_t read_clear(struct stream *s, struct buf *b)
{
    size_t room = buf_room(b);
    /* recv and send rather than read and writev: on a socket they skip the
     * file layer (measured: 4-5% of the kernel's share of a keep-alive
     * request). */
    ssize_t n = recv(s->io.fd, buf_end(b), room, 0);
    if (n > 0) {
        b->tail += (uint32_t)n;
        /* A short read drained the socket; the next edge will tell us
         * when more arrives - unless the end of the stream already came,
         * which no further edge will announce. */
        if ((size_t)n < room && !s->peer_closed)
            s->can_read = false;
        return n;
    }
    return read_nothing(s, n);
}

static ssize_t read_tls(struct stream *s, struct buf *b)
{
    ssize_t n = tls_read(s->ssl, buf_end(b), buf_room(b));
    if (n > 0) {
        /* No short-read shortcut here: OpenSSL may hold decrypted bytes
         * that no new edge will announce. */
        b->tail += (uint32_t)n;
        return n;
    }
    if (n == -EAGAIN) {
        s->can_read = false;
        return 0;
    }
    errno = n == 0 ? 0 : (int)-n;
    return -1;
}

ssize_t stream_read_into(struct stream *s, struct buf *b)
{
    return s->ssl ? read_tls(s, b) : read_clear(s, b);
}

ssize_t stream_read(struct stream *s)
{
    return stream_read_into(s, &s->in);
}

static ssize_t write_clear(struct stream *s, const char *a, size_t alen, const char *b, size_t blen)
{
    ssize_t n;
    if (alen && blen) {
        struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        n = sendmsg(s->io.fd, &msg, MSG_NOSIGNAL);
    } else {
        n = alen ? send(s->io.fd, a, alen, MSG_NOSIGNAL) : send(s->io.fd, b, blen, MSG_NOSIGNAL);
    }
    if (n >= 0) {
        if ((size_t)n < alen + blen)
            s->can_write = false;
        return n;
    }
    if (errno == EAGAIN || errno == EINTR) {
        s->can_write = errno == EINTR;
        return 0;
    }
    return -1;
}

/* A head and the start of its body in one TLS record (at most 16 KB):
 * written apart they would cost two records and two system calls. A write
 * OpenSSL could not finish is retried with the same bytes first (the caller
 * consumed nothing), which SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows from
 * this new copy, and perhaps more of the body after them, which a pending
 * write also allows. */
static ssize_t write_tls(struct stream *s, const char *a, size_t alen, const char *b, size_t blen)
{
    char joined[16384];
    if (!alen || !blen || alen >= sizeof(joined))
        return alen ? tls_write(s->ssl, a, alen) : tls_write(s->ssl, b, blen);
    size_t take = blen < sizeof(joined) - alen ? blen : sizeof(joined) - alen;
    memcpy(joined, a, alen);
    memcpy(joined + alen, b, take);
    return tls_write(s->ssl, joined, alen + take);
}

ssize_t stream_write(struct stream *s, const char *a, size_t alen, const char *b, size_t blen)
{
    if (stream_is_sink(s)) {
        struct stream_sink *sink = container_of(s, struct stream_sink, s);
        return sink->write(sink, a, alen, b, blen);
    }
    if (!s->ssl)
        return write_clear(s, a, alen, b, blen);
    ssize_t n = write_tls(s, a, alen, b, blen);
    if (n > 0)
        return n;
    if (n == -EAGAIN) {
        s->can_write = false;
        return 0;
    }
    errno = (int)-n;
    return -1;
}

void stream_shutdown_write(struct stream *s)
{
    if (!s->ssl)
        shutdown(s->io.fd, SHUT_WR);
}

void stream_close(struct stream *s, struct loop *loop)
{
    if (s->io.fd < 0)
        return;
    loop_del(loop, &s->io);
    if (s->ssl)
        tls_close(s->ssl);
    s->ssl = NULL;
    close(s->io.fd);
    s->io.fd = -1;
}

int stream_pipe_get(struct stream_pipes *pipes, struct stream_pipe *p)
{
    if (pipes->count) {
        *p = pipes->spare[--pipes->count];
        return 0;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    *p = (struct stream_pipe){.rd = fds[0], .wr = fds[1]};
    return 0;
}

void stream_pipe_put(struct stream_pipes *pipes, struct stream_pipe *p)
{
    if (p->rd < 0)
        return;
    if (p->len == 0 && pipes->count < STREAM_PIPES_SPARE) {
        pipes->spare[pipes->count++] = *p;
    } else {
        close(p->rd);
        close(p->wr);
    }
    *p = (struct stream_pipe){.rd = -1, .wr = -1};
}

void stream_pipes_free(struct stream_pipes *pipes)
{
    while (pipes->count) {
        struct stream_pipe *p = &pipes->spare[--pipes->count];
        close(p->rd);
        close(p->wr);
    }
}

ssize_t stream_splice_in(struct stream *s, struct stream_pipe *p, size_t max)
{
    ssize_t n = splice(s->io.fd, NULL, p->wr, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        /* A short count says nothing here: a pipe holds 16 buffers, not 64
         * KiB, and small packets fill them first. Only EAGAIN into an
         * empty pipe means the socket is drained. */
        p->len += (uint32_t)n;
        return n;
    }
    return read_nothing(s, n);
}

ssize_t stream_splice_out(struct stream_pipe *p, struct stream *s)
{
    ssize_t n = splice(p->rd, NULL, s->io.fd, NULL, p->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n >= 0) {
        p->len -= (uint32_t)n;   /* short or not, the next call (or EAGAIN) tells */
        return n;
    }
    if (errno == EAGAIN || errno == EINTR) {
        s->can_write = errno == EINTR;
        return 0;
    }
    return -1;
}
