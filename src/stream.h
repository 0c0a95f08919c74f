/* stream.h - one socket of a proxied conversation, in the clear or through
 * TLS, with its input buffer and what epoll last said about it.
 *
 * Both the client connection (client.c) and the connection to an
 * application (upstream.c) are a stream; the exchange (exchange.c) moves
 * bytes between two of them without knowing which is which.
 *
 * Sockets are registered edge-triggered once: can_read / can_write are set
 * by an event and cleared when a read or write comes up short, so no call
 * is made that is known to return EAGAIN and no epoll_ctl is made per
 * request.
 */
#ifndef SLUICE_STREAM_H
#define SLUICE_STREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "loop.h"

struct ssl_st;

struct stream {
    struct loop_io io;
    struct ssl_st *ssl;           /* NULL in the clear */
    struct buf in;                /* bytes read, not yet passed on; a block only while needed */
    int64_t last_activity;        /* loop ms of the last byte either way */
    bool can_read, can_write;
    bool peer_closed;             /* EPOLLRDHUP/HUP/ERR seen: its edge has passed */
    /* A stream with no socket (io.fd < 0, a struct stream_sink) can put
     * nothing more into `in` until some of it is taken (its peer's
     * flow-control window is spent): as good as a full buffer to a reader
     * waiting for one. */
    bool input_full;
};

/* A stream that is not a socket but one stream of a multiplexed
 * connection (an HTTP/2 stream, h2stream.c): its io.fd is -1, and
 * stream_write hands the bytes to write(), with stream_write's contract.
 * Its owner puts what the peer sent into `in` itself and keeps can_read
 * false, so nothing reads it. A socket's stream pays nothing for this
 * (stream_write looks at the fd it needs anyway). */
struct stream_sink {
    struct stream s;
    ssize_t (*write)(struct stream_sink *sink, const char *a, size_t alen, const char *b, size_t blen);
};

static inline bool stream_is_sink(const struct stream *s)
{
    return s->io.fd < 0;
}

/* Records what an epoll event says about the socket. */
void stream_note_events(struct stream *s, uint32_t events);

/* Reads into s->in. Returns bytes read, 0 when nothing is there now, -1 at
 * end of stream or on error (errno says which: 0 for end of stream). */
ssize_t stream_read(struct stream *s);

/* Reads into b from s's socket with the same contract (a tunnel or a body
 * read into another buffer). */
ssize_t stream_read_into(struct stream *s, struct buf *b);

/* Writes up to two pieces with one call (through TLS, the first non-empty
 * one only). Returns bytes written, 0 when the socket is full, -1 on error. */
ssize_t stream_write(struct stream *s, const char *a, size_t alen, const char *b, size_t blen);

/* Passes a finished direction on as a half-close (no-op through TLS). */
void stream_shutdown_write(struct stream *s);

/* Unregisters and closes the socket and its TLS session; the buffer is the
 * owner's to release. */
void stream_close(struct stream *s, struct loop *loop);

/* A kernel pipe that carries body bytes from one socket to another with
 * splice(2), so they are never copied into sluice: for large bodies in the
 * clear, two system calls move up to a pipe's worth (64 KiB) where reads
 * and writes through a buffer would take several, each with a copy. */
struct stream_pipe {
    int rd, wr;                   /* -1 when none */
    uint32_t len;                 /* bytes in it */
};

#define STREAM_PIPE_CAPACITY 65536   /* the kernel's default pipe size */
#define STREAM_PIPES_SPARE 8

/* Empty pipes kept for reuse by one worker. */
struct stream_pipes {
    struct stream_pipe spare[STREAM_PIPES_SPARE];
    int count;
};

/* Takes a spare pipe or makes one. 0 or -errno. */
int stream_pipe_get(struct stream_pipes *pipes, struct stream_pipe *p);
/* Gives an empty pipe back (a pipe with bytes in it is closed: they belong
 * to nobody now). p is left with no pipe. */
void stream_pipe_put(struct stream_pipes *pipes, struct stream_pipe *p);
void stream_pipes_free(struct stream_pipes *pipes);

/* Moves up to max bytes from s's socket into p, which must be empty (so
 * that EAGAIN means the socket is drained, not the pipe full), with
 * stream_read's contract. */
ssize_t stream_splice_in(struct stream *s, struct stream_pipe *p, size_t max);
/* Moves what p holds to s's socket, as stream_write does. */
ssize_t stream_splice_out(struct stream_pipe *p, struct stream *s);

#endif
