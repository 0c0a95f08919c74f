/* client.c - client connections: accept -> read a head -> run its exchange
 * -> keep-alive or linger -> close. See client.h.
 *
 * A connection is in one phase at a time. While a request is answered it
 * holds one exchange (exchange.c), which moves the bytes; the connection
 * only runs it, keeps the client-side time limits and decides, when it is
 * done, what comes next. Each event runs a connection for a fixed budget of
 * steps; one that still has work goes on the pending list and continues
 * after the loop iteration, so a fast connection cannot starve the others.
 */
#include "client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exchange.h"
#include "h2.h"
#include "net.h"
#include "tls.h"
#include "tlsserver.h"

/* Steps a connection may take per event before others get a turn. */
#define CLIENT_BUDGET 16
/* How long a closing connection keeps reading so that unread request bytes
 * do not turn our last answer into a reset (RFC 9112 section 9.6). */
#define LINGER_MS 2000

enum client_phase {
    PHASE_HANDSHAKE,   /* HTTPS: the TLS handshake, under the head's time limit */
    PHASE_IDLE,        /* keep-alive, waiting for a request; holds no buffer */
    PHASE_HEAD,        /* reading a request head */
    PHASE_EXCHANGE,    /* a request is being answered (c->x) */
    PHASE_LINGER,      /* answered and shut down for writing; draining input */
    PHASE_H2,          /* speaks HTTP/2: c->h2 runs it */
    PHASE_CLOSED,
};

/* Owned by p->clients while open, by p->free_clients or p->closed_clients
 * after; c->x is owned by the connection. */
struct client {
    struct stream s;
    struct proxy *p;
    struct client *next, *prev;     /* p->clients, or the free/closed list (next only) */
    struct client *pending_next;
    struct loop_timer timer;
    union {
        struct exchange *x;         /* PHASE_EXCHANGE only */
        struct h2_conn *h2;         /* PHASE_H2 only; owned */
    };
    int64_t start_us;               /* the current head's first byte */
    uint32_t head_scanned;          /* bytes of the head searched for its end already
                                       (http1_request_head_ready) */
    enum client_phase phase;
    /* bits, so that the struct stays within 200 bytes (an idle keep-alive
     * connection costs this and nothing more) */
    bool in_pending : 1;
    bool head_dirty : 1;            /* s.in has bytes not yet tried as a head */
    bool served : 1;                /* a request came: the HTTP/2 preface no longer may */
    char ip[46];                    /* INET6_ADDRSTRLEN */
};

static void client_run(struct client *c);

static struct client *client_alloc(struct proxy *p)
{
    struct client *c = p->free_clients;
    if (c) {
        p->free_clients = c->next;
        memset(c, 0, sizeof(*c));
        return c;
    }
    return calloc(1, sizeof(*c));
}

static void client_close(struct client *c)
{
    struct proxy *p = c->p;
    if (c->phase == PHASE_CLOSED)
        return;
    if (c->phase == PHASE_H2)
        h2_conn_free(c->h2);
    else if (c->x)
        exchange_free(c->x);
    c->x = NULL;
    loop_timer_cancel(p->loop, &c->timer);
    stream_close(&c->s, p->loop);
    buf_release(p->buffers, &c->s.in);
    c->phase = PHASE_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    /* Recycled after the iteration: an event for it may still be queued. */
    c->next = p->closed_clients;
    p->closed_clients = c;
    p->client_count--;
    atomic_store_explicit(&p->counters.connections_open, p->client_count, memory_order_relaxed);
}

static void mark_pending(struct client *c)
{
    if (c->in_pending)
        return;
    c->in_pending = true;
    c->pending_next = c->p->pending;
    c->p->pending = c;
}

/* An application's event or timer moved the exchange on. An HTTP/2
 * connection runs after the iteration instead: running it now could end a
 * sibling stream whose exchange the caller is about to look at (the
 * max_requests queue walks to its next waiter), and its streams' wakes in
 * one iteration make one run. */
static void client_wake(void *conn)
{
    struct client *c = conn;
    if (c->phase == PHASE_EXCHANGE)
        client_run(c);
    else if (c->phase == PHASE_H2)
        mark_pending(c);
}

/* ------------------------------------------------------------------ */
/* reading a request head                                              */

/* Hands the head in s.in to a new exchange, or has one refuse the
 * connection's input with refuse_status. */
static enum step start_exchange(struct client *c, int refuse_status)
{
    struct proxy *p = c->p;
    struct exchange *x = exchange_new(p, &c->s, c->ip, client_wake, c);
    if (!x) {
        log_error("out of memory: closing the connection of client %s", c->ip);
        client_close(c);
        return STEP_CLOSE;
    }
    c->x = x;
    c->phase = PHASE_EXCHANGE;
    c->head_scanned = 0;
    c->served = true;
    if (refuse_status)
        exchange_refuse(x, refuse_status, c->start_us);
    else
        exchange_begin(x, c->start_us);
    /* Which limit runs now (client_idle, or client_body while a body is
     * awaited) is the exchange's to say; nothing can have expired yet. */
    int64_t next = exchange_client_timeout(x, p->loop->now);
    loop_timer_arm(p->loop, &c->timer, next > 0 ? next : 1);
    return STEP_MOVED;
}

/* The connection speaks HTTP/2 from now on. */
static enum step start_h2(struct client *c)
{
    c->h2 = h2_conn_new(c->p, &c->s, c->ip, client_wake, c);
    if (!c->h2) {
        log_error("out of memory: closing the HTTP/2 connection of client %s", c->ip);
        client_close(c);
        return STEP_CLOSE;
    }
    loop_timer_cancel(c->p->loop, &c->timer);   /* the HTTP/2 connection keeps its own */
    c->phase = PHASE_H2;
    return STEP_MOVED;
}

/* HTTP/2 with prior knowledge ([server.http2] cleartext): the first bytes
 * of a connection are the preface. Returns whether the bytes so far are
 * (the start of) it; *h2 when it is whole. */
static bool looks_like_h2(const struct client *c, bool *h2)
{
    *h2 = false;
    if (!c->p->cfg->h2_cleartext || c->served || c->s.ssl)
        return false;
    int m = h2_preface_match(buf_start(&c->s.in), buf_len(&c->s.in));
    *h2 = m > 0;
    return m >= 0;
}

static enum step step_h2(struct client *c)
{
    enum step r = h2_conn_step(c->h2);
    if (r == STEP_CLOSE)
        client_close(c);
    return r;
}

static enum step step_head(struct client *c)
{
    struct proxy *p = c->p;
    struct buf *in = &c->s.in;
    /* Parsed only once whole (or refusable): a head dripped in small
     * pieces costs one scan for its end in all, not one per piece. */
    bool dirty = c->head_dirty && buf_len(in);
    c->head_dirty = false;
    bool h2 = false;
    if (dirty && looks_like_h2(c, &h2)) {
        if (h2)
            return start_h2(c);
        dirty = false;   /* a part of the preface: wait for the rest */
    }
    if (dirty && http1_request_head_ready(buf_start(in), buf_len(in), &p->limits, &c->head_scanned))
        return start_exchange(c, 0);
    if (!c->s.can_read)
        return STEP_WAIT;
    /* A buffer is held only while a head is arriving: an idle keep-alive
     * connection costs its struct client and nothing more. */
    if (buf_acquire(p->buffers, in) < 0) {
        client_close(c);
        return STEP_CLOSE;
    }
    if (buf_room(in) == 0)
        buf_compact(in);
    if (buf_room(in) == 0)
        return start_exchange(c, 431);
    ssize_t n = stream_read(&c->s);
    if (n == 0) {
        if (buf_len(in) == 0)
            buf_release(p->buffers, in);
        return STEP_WAIT;
    }
    if (n < 0) {
        client_close(c);   /* the client left; nothing to answer */
        return STEP_CLOSE;
    }
    c->head_dirty = true;
    c->s.last_activity = p->loop->now;
    if (c->phase == PHASE_IDLE) {
        /* The head's time limit runs from its first byte (slowloris bound). */
        c->phase = PHASE_HEAD;
        c->start_us = loop_monotonic_us();
        loop_timer_arm(p->loop, &c->timer, p->cfg->client_header_timeout_ms);
    }
    return STEP_MOVED;
}

/* ------------------------------------------------------------------ */
/* HTTPS: the handshake                                                */

/* Scanners and old clients fail handshakes all day: info, not error, and
 * a connection closed without a word only at debug. */
static void handshake_failed(struct client *c, int rc)
{
    char reason[160];
    counters_add(&c->p->counters.tls_handshake_failures, 1);
    if (rc == -EPROTO)
        log_info("client %s: TLS handshake failed: %s", c->ip, tls_error_text(c->s.ssl, reason, sizeof(reason)));
    else
        log_debug("client %s: TLS handshake failed: %s", c->ip, strerror(-rc));
    client_close(c);
}

static enum step step_handshake(struct client *c)
{
    int rc = tls_handshake(c->s.ssl);
    if (rc == -EAGAIN)
        return STEP_WAIT;
    if (rc < 0) {
        handshake_failed(c, rc);
        return STEP_CLOSE;
    }
    c->s.can_read = true;   /* the request may have come with the last flight */
    if (tls_server_session_h2(c->s.ssl))
        return start_h2(c);   /* ALPN chose h2 */
    c->phase = PHASE_HEAD;
    return STEP_MOVED;
}

/* ------------------------------------------------------------------ */
/* after an exchange                                                   */

static void begin_next_request(struct client *c)
{
    struct proxy *p = c->p;
    if (buf_len(&c->s.in)) {
        /* A pipelined request is already here. */
        buf_compact(&c->s.in);
        c->phase = PHASE_HEAD;
        c->head_dirty = true;
        c->start_us = loop_monotonic_us();
        loop_timer_arm(p->loop, &c->timer, p->cfg->client_header_timeout_ms);
        return;
    }
    buf_release(p->buffers, &c->s.in);
    c->phase = PHASE_IDLE;
    loop_timer_arm(p->loop, &c->timer, p->cfg->client_idle_timeout_ms);
}

/* Half-closes and drains the client's remaining input for a while. */
static void linger(struct client *c)
{
    stream_shutdown_write(&c->s);
    /* Over TLS the end of our answer is close_notify: a client reading to
     * the end must not wait out the linger for it. */
    if (c->s.ssl)
        tls_shutdown_write(c->s.ssl);
    buf_release(c->p->buffers, &c->s.in);
    c->phase = PHASE_LINGER;
    c->s.can_read = true;
    loop_timer_arm(c->p->loop, &c->timer, LINGER_MS);
}

static enum step end_exchange(struct client *c)
{
    enum exchange_end end = exchange_end(c->x);
    exchange_free(c->x);
    c->x = NULL;
    if (end == END_KEEP_ALIVE) {
        begin_next_request(c);
    } else if (end == END_CLOSE && buf_len(&c->s.in) == 0) {
        client_close(c);
        return STEP_CLOSE;
    } else {
        linger(c);
    }
    return STEP_MOVED;
}

static enum step step_exchange(struct client *c)
{
    enum step r = exchange_step(c->x);
    if (r == STEP_CLOSE) {
        client_close(c);
        return STEP_CLOSE;
    }
    if (exchange_state(c->x) == EXCHANGE_DONE)
        return end_exchange(c);
    return r;
}

static enum step step_linger(struct client *c)
{
    char sink[4096];
    if (!c->s.can_read)
        return STEP_WAIT;
    ssize_t n = read(c->s.io.fd, sink, sizeof(sink));
    if (n > 0)
        return STEP_MOVED;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        c->s.can_read = errno == EINTR;
        return STEP_WAIT;
    }
    client_close(c);
    return STEP_CLOSE;
}

/* ------------------------------------------------------------------ */
/* events and timers                                                   */

static enum step client_step(struct client *c)
{
    switch (c->phase) {
    case PHASE_HANDSHAKE:
        return step_handshake(c);
    case PHASE_IDLE:
    case PHASE_HEAD:
        return step_head(c);
    case PHASE_EXCHANGE:
        return step_exchange(c);
    case PHASE_LINGER:
        return step_linger(c);
    case PHASE_H2:
        return step_h2(c);
    case PHASE_CLOSED:
        break;
    }
    return STEP_CLOSE;
}

static void client_run(struct client *c)
{
    for (int budget = CLIENT_BUDGET; budget > 0; budget--)
        if (client_step(c) != STEP_MOVED)
            return;
    mark_pending(c);
}

static void client_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)loop;
    struct client *c = container_of(io, struct client, s.io);
    if (c->phase == PHASE_CLOSED)
        return;
    stream_note_events(&c->s, events);
    client_run(c);
}

/* Client-side time limits. While an exchange runs, it says what they are
 * (exchange_client_timeout); waiting on an application is the
 * application's timer's business. */
static void client_timeout(struct loop *loop, struct loop_timer *timer)
{
    struct client *c = container_of(timer, struct client, timer);
    switch (c->phase) {
    case PHASE_HANDSHAKE:
        counters_add(&c->p->counters.tls_handshake_failures, 1);
        log_info("client %s: TLS handshake not completed within %" PRId64 " ms", c->ip,
                 c->p->cfg->client_header_timeout_ms);
        client_close(c);
        return;
    case PHASE_HEAD:
        if (buf_len(&c->s.in) == 0 && !c->head_dirty) {
            client_close(c);   /* nothing was asked: nothing to answer */
            return;
        }
        log_info("client %s: request head not received within %" PRId64 " ms", c->ip,
                 c->p->cfg->client_header_timeout_ms);
        if (start_exchange(c, 408) == STEP_MOVED)
            client_run(c);
        return;
    case PHASE_EXCHANGE: {
        int64_t next = exchange_client_timeout(c->x, loop->now);
        if (next > 0)
            loop_timer_arm(loop, timer, next);
        else
            client_run(c);   /* a 408 to send, or the close the exchange asks for */
        return;
    }
    default:
        client_close(c);   /* idle keep-alive or lingering: done */
        return;
    }
}

/* ------------------------------------------------------------------ */
/* the worker's side                                                   */

/* Registers an accepted socket as a connection whose head (or handshake)
 * time limit runs from now; NULL when it could not be (the socket is
 * closed then). */
static struct client *client_open(struct proxy *p, int fd, const struct sockaddr_storage *peer)
{
    struct client *c = client_alloc(p);
    if (!c) {
        log_error("out of memory: refusing a connection");
        close(fd);
        return NULL;
    }
    c->p = p;
    loop_timer_init(&c->timer, client_timeout);
    if (loop_add(p->loop, &c->s.io, fd, client_event) < 0) {
        close(fd);
        c->next = p->free_clients;
        p->free_clients = c;
        return NULL;
    }
    net_format_ip(peer, c->ip, sizeof(c->ip));
    c->next = p->clients;
    if (c->next)
        c->next->prev = c;
    p->clients = c;
    p->client_count++;
    atomic_store_explicit(&p->counters.connections_open, p->client_count, memory_order_relaxed);
    counters_add(&p->counters.connections_accepted, 1);
    /* With TCP_DEFER_ACCEPT the request is usually here already: read now
     * instead of waiting for the first edge. */
    c->s.can_read = c->s.can_write = true;
    c->phase = PHASE_HEAD;
    c->start_us = loop_monotonic_us();
    c->s.last_activity = p->loop->now;
    loop_timer_arm(p->loop, &c->timer, p->cfg->client_header_timeout_ms);
    return c;
}

void client_accept(struct proxy *p, int fd, const struct sockaddr_storage *peer)
{
    struct client *c = client_open(p, fd, peer);
    if (c)
        client_run(c);
}

void client_accept_tls(struct proxy *p, int fd, const struct sockaddr_storage *peer)
{
    struct client *c = client_open(p, fd, peer);
    if (!c)
        return;
    c->s.ssl = p->tls ? tls_server_session(p->tls, fd) : NULL;
    if (!c->s.ssl) {
        log_error("client %s: cannot start a TLS session (out of memory); closing", c->ip);
        client_close(c);
        return;
    }
    c->phase = PHASE_HANDSHAKE;
    client_run(c);
}

bool clients_have_pending(const struct proxy *p)
{
    /* A body block or a request slot that came back during the pending run
     * is handed on at the next iteration, which must not sleep. */
    return p->pending != NULL || p->body_block_returned || p->slot_freed;
}

void clients_after_iteration(struct proxy *p)
{
    exchanges_after_iteration(p);
    struct client *list = p->pending;
    p->pending = NULL;
    while (list) {
        struct client *c = list;
        list = c->pending_next;
        c->in_pending = false;
        if (c->phase != PHASE_CLOSED)
            client_run(c);
    }
    while (p->closed_clients) {
        struct client *c = p->closed_clients;
        p->closed_clients = c->next;
        c->next = p->free_clients;
        p->free_clients = c;
    }
    upstream_pool_recycle(&p->upstreams);
}

bool clients_use_pool(const struct proxy *p, const struct pool *pool)
{
    for (const struct client *c = p->clients; c; c = c->next)
        if (c->phase == PHASE_H2 ? h2_conn_uses_pool(c->h2, pool) : c->x && exchange_uses_pool(c->x, pool))
            return true;
    return false;
}

void clients_reloaded(struct proxy *p)
{
    struct client *c = p->clients;
    while (c) {
        struct client *next = c->next;   /* the wake may close c */
        if (c->phase == PHASE_H2)
            h2_conn_reload(c->h2);
        c = next;
    }
}

void clients_begin_shutdown(struct proxy *p)
{
    p->stopping = true;
    struct client *c = p->clients;
    while (c) {
        struct client *next = c->next;
        if (c->phase == PHASE_IDLE || c->phase == PHASE_HANDSHAKE ||
            (c->phase == PHASE_HEAD && buf_len(&c->s.in) == 0))
            client_close(c);
        else if (c->phase == PHASE_H2)
            h2_conn_shutdown(c->h2);   /* GOAWAY; its streams finish */
        c = next;
    }
    upstream_pool_drop_idle(&p->upstreams);
}

void clients_close_all(struct proxy *p)
{
    while (p->clients)
        client_close(p->clients);
    upstream_pool_drop_idle(&p->upstreams);
}

static void free_list(struct client *c)
{
    while (c) {
        struct client *next = c->next;
        free(c);
        c = next;
    }
}

void clients_free(struct proxy *p)
{
    clients_close_all(p);
    free_list(p->closed_clients);
    free_list(p->free_clients);
    p->closed_clients = p->free_clients = NULL;
    h2_streams_free(p);
    exchanges_free(p);
}
