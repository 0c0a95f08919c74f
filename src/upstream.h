/* upstream.h - connections to applications, and each worker's pool of idle
 * ones.
 *
 * An upstream is one connection to one application. While an exchange uses
 * it, it has an owner that hears its events and timer through the
 * functions the owner registered (struct upstream_owner): this layer never
 * calls the exchange by name. Between requests it waits in its worker's
 * idle list for that application (most recent first: the warmest
 * connection), with the idle timer its own.
 *
 * The idle lists are filed by application index in one pool; adopting a
 * new pool (a reload) closes them all, and a connection to an application
 * of an older pool is closed when it is released rather than filed.
 */
#ifndef SLUICE_UPSTREAM_H
#define SLUICE_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "loop.h"
#include "pool.h"
#include "stream.h"

enum upstream_state {
    UPSTREAM_CONNECTING,    /* non-blocking connect under way */
    UPSTREAM_HANDSHAKING,   /* TLS handshake under way (tsl = true) */
    UPSTREAM_READY,         /* can carry a request */
    UPSTREAM_FAILED,        /* connect or handshake failed: see upstream_failure */
    UPSTREAM_CLOSED,
};

/* What the owner of an upstream in use hears about it. */
struct upstream_owner {
    void (*ready)(void *owner);     /* an event: bytes, room, a finished connect, a close */
    void (*timeout)(void *owner);   /* the upstream's timer expired */
};

struct upstream {
    struct stream s;
    struct upstream_pool *pool;
    struct app *app;
    const struct upstream_owner *owner_ops;   /* NULL while idle */
    void *owner;
    struct upstream *next, *prev;   /* idle list, or free/closed list (next only) */
    struct loop_timer timer;        /* the owner's while in use, the idle limit while idle */
    enum upstream_state state;
    int error;                      /* UPSTREAM_FAILED: an errno value */
    bool failed_in_handshake;
    bool reused;                    /* came from the idle list */
    bool long_idle;                 /* ... after UPSTREAM_STALE_IDLE_MS or more there */
};

struct ssl_session_st;

/* Idle keep-alive connections to one application, most recent first, and
 * the TLS session a new connection to it resumes. */
struct upstream_list {
    struct upstream *first;
    uint32_t count;
    struct ssl_session_st *session; /* tls: the last resumable one; owned (a reference) */
};

/* One worker's connections to applications. */
struct upstream_pool {
    struct loop *loop;
    struct buf_pool *buffers;
    const struct config *cfg;
    struct pool *apps;              /* the pool the idle lists are filed by */
    uint64_t seen_state_version;    /* apps->state_version at the last look */
    struct upstream_list *idle;     /* per application index; owned */
    struct upstream *free;          /* recycled objects */
    struct upstream *closed;        /* closed this iteration, recycled after it */
};

/* A pooled connection that the application closes as it is reused is the
 * keep-alive race (RFC 9112 section 9.3.1), not a fault, only when it sat
 * idle long enough for the application's own keep-alive timeout to end it
 * (1 s or more in every common server). One reused within a second that
 * breaks is a failure like any other: under load nearly every request
 * travels on a pooled connection, and exempting them all would hide an
 * application that drops requests. */
#define UPSTREAM_STALE_IDLE_MS 1000

void upstream_pool_init(struct upstream_pool *up, struct loop *loop, struct buf_pool *buffers);
/* Files idle connections by apps from now on (closing those filed by the
 * previous pool). 0 or -ENOMEM, when nothing changed. */
int upstream_pool_adopt(struct upstream_pool *up, struct pool *apps, const struct config *cfg);
void upstream_pool_drop_idle(struct upstream_pool *up);
/* After each loop iteration: when the pool's state version moved, closes
 * the idle connections to applications that are no longer up (drained or
 * down), so that none is reused once they are out. One atomic load when
 * nothing changed. */
void upstream_pool_follow_states(struct upstream_pool *up);
/* After each loop iteration: objects closed during it become reusable (an
 * event of the same epoll batch may have named them until now). */
void upstream_pool_recycle(struct upstream_pool *up);
void upstream_pool_free(struct upstream_pool *up);

/* A connection to app for owner: the most recent idle one, else a new
 * non-blocking connect. Its timer is armed for the connect (or, reused, for
 * the response). NULL with *err set (an errno value) when it failed at once;
 * EMFILE, ENFILE, ENOMEM and ENOBUFS are sluice's own shortage. */
struct upstream *upstream_get(struct upstream_pool *up, struct app *app, const struct upstream_owner *ops,
                              void *owner, int *err);
/* The owner is done with u: kept idle for another request when reusable
 * (and its application still up, and of the current pool), closed
 * otherwise. */
void upstream_release(struct upstream *u, bool reusable);
/* Continues a TLS handshake: 0 when done (the timer then runs for the
 * response), -EAGAIN while under way, or -errno (state UPSTREAM_FAILED). */
int upstream_handshake(struct upstream *u);
/* Why a failed connection failed: "connection refused", "TLS handshake: ...". */
const char *upstream_failure(const struct upstream *u, char *buf, size_t len);
/* The words for a connect errno ("connection refused", "connect timeout"). */
const char *upstream_error_text(int err);

#endif
