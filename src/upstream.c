/* upstream.c - connections to applications and the idle pool; see
 * upstream.h. */
#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app_tls.h"
#include "log.h"
#include "net.h"
#include "tls.h"

#define IDLE_PER_APP 256

static void upstream_event(struct loop *loop, struct loop_io *io, uint32_t events);
static void upstream_timer(struct loop *loop, struct loop_timer *timer);

void upstream_pool_init(struct upstream_pool *up, struct loop *loop, struct buf_pool *buffers)
{
    *up = (struct upstream_pool){.loop = loop, .buffers = buffers};
}

/* After a reload, exchanges in flight may still use an application of the
 * previous pool; their connections are not filed in the new idle lists. */
static bool app_is_current(const struct upstream_pool *up, const struct app *app)
{
    return app->index < up->apps->count && &up->apps->apps[app->index] == app;
}

static void idle_remove(struct upstream *u)
{
    struct upstream_list *list = &u->pool->idle[u->app->index];
    if (u->prev)
        u->prev->next = u->next;
    else
        list->first = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->next = u->prev = NULL;
    list->count--;
}

static bool is_idle(const struct upstream *u)
{
    const struct upstream_pool *up = u->pool;
    return !u->owner_ops && u->state == UPSTREAM_READY && app_is_current(up, u->app) &&
           (u->prev || up->idle[u->app->index].first == u);
}

static void upstream_close(struct upstream *u)
{
    struct upstream_pool *up = u->pool;
    if (u->state == UPSTREAM_CLOSED)
        return;
    if (is_idle(u))
        idle_remove(u);
    loop_timer_cancel(up->loop, &u->timer);
    stream_close(&u->s, up->loop);
    buf_release(up->buffers, &u->s.in);
    u->state = UPSTREAM_CLOSED;
    u->owner_ops = NULL;
    u->owner = NULL;
    /* Recycled after the iteration: an event for it may still be queued. */
    u->next = up->closed;
    up->closed = u;
}

void upstream_pool_drop_idle(struct upstream_pool *up)
{
    for (int i = 0; up->idle && i < up->apps->count; i++)
        while (up->idle[i].first)
            upstream_close(up->idle[i].first);
}

void upstream_pool_follow_states(struct upstream_pool *up)
{
    if (!up->apps)
        return;
    uint64_t version = atomic_load_explicit(&up->apps->state_version, memory_order_acquire);
    if (version == up->seen_state_version)
        return;
    up->seen_state_version = version;
    for (int i = 0; i < up->apps->count; i++)
        if (app_state(&up->apps->apps[i]) != APP_UP)
            while (up->idle[i].first)
                upstream_close(up->idle[i].first);
}

/* Sessions are kept per pool: after a reload an application may have
 * another certificate check, and a session verified under the old one
 * must not skip the new one. */
static void free_sessions(struct upstream_pool *up)
{
    for (int i = 0; up->idle && i < up->apps->count; i++) {
        tls_session_free(up->idle[i].session);
        up->idle[i].session = NULL;
    }
}

int upstream_pool_adopt(struct upstream_pool *up, struct pool *apps, const struct config *cfg)
{
    struct upstream_list *idle = calloc((size_t)apps->count ? (size_t)apps->count : 1, sizeof(*idle));
    if (!idle)
        return -ENOMEM;
    upstream_pool_drop_idle(up);
    free_sessions(up);
    free(up->idle);
    up->idle = idle;
    up->apps = apps;
    up->seen_state_version = UINT64_MAX;
    up->cfg = cfg;
    return 0;
}

void upstream_pool_recycle(struct upstream_pool *up)
{
    while (up->closed) {
        struct upstream *u = up->closed;
        up->closed = u->next;
        u->next = up->free;
        up->free = u;
    }
}

static void free_list(struct upstream *u)
{
    while (u) {
        struct upstream *next = u->next;
        free(u);
        u = next;
    }
}

void upstream_pool_free(struct upstream_pool *up)
{
    upstream_pool_drop_idle(up);
    free_sessions(up);
    free_list(up->closed);
    free_list(up->free);
    free(up->idle);
    *up = (struct upstream_pool){0};
}

static struct upstream *idle_take(struct upstream_pool *up, struct app *app)
{
    struct upstream *u = up->idle[app->index].first;
    if (!u)
        return NULL;
    idle_remove(u);
    loop_timer_cancel(up->loop, &u->timer);
    u->long_idle = up->loop->now - u->s.last_activity >= UPSTREAM_STALE_IDLE_MS;
    if (buf_acquire(up->buffers, &u->s.in) < 0) {
        upstream_close(u);
        return NULL;
    }
    return u;
}

static int start_tls(struct upstream *u)
{
    const struct config_app *cfg = u->app->cfg;
    if (!cfg->tls) {
        u->state = UPSTREAM_READY;
        return 0;
    }
    /* The context was built with the configuration: it verifies the
     * certificate or not (tls_verify), against the application's name. */
    u->s.ssl = tls_client_new(cfg->tls_context, u->s.io.fd, app_tls_server_name(cfg));
    if (!u->s.ssl)
        return EPROTO;
    if (app_is_current(u->pool, u->app))
        tls_resume(u->s.ssl, u->pool->idle[u->app->index].session);
    u->state = UPSTREAM_HANDSHAKING;
    return 0;
}

static struct upstream *upstream_alloc(struct upstream_pool *up)
{
    struct upstream *u = up->free;
    if (u) {
        up->free = u->next;
        memset(u, 0, sizeof(*u));
        return u;
    }
    return calloc(1, sizeof(*u));
}

/* Starts a connection; NULL with *err set when it failed at once. */
static struct upstream *upstream_open(struct upstream_pool *up, struct app *app, int *err)
{
    bool in_progress;
    int fd = net_connect(&app->cfg->address, true, &in_progress);
    if (fd < 0) {
        *err = -fd;
        return NULL;
    }
    struct upstream *u = upstream_alloc(up);
    if (!u || buf_acquire(up->buffers, &u->s.in) < 0) {
        free(u);
        close(fd);
        *err = ENOMEM;
        return NULL;
    }
    u->pool = up;
    u->app = app;
    u->state = UPSTREAM_CONNECTING;
    u->s.can_write = !in_progress;
    loop_timer_init(&u->timer, upstream_timer);
    int rc = loop_add(up->loop, &u->s.io, fd, upstream_event);
    if (rc == 0 && !in_progress)
        rc = -start_tls(u);
    if (rc < 0) {
        stream_close(&u->s, up->loop);   /* loop_add set io.fd even if it failed */
        buf_release(up->buffers, &u->s.in);
        u->next = up->free;
        up->free = u;
        *err = -rc;
        return NULL;
    }
    return u;
}

struct upstream *upstream_get(struct upstream_pool *up, struct app *app, const struct upstream_owner *ops,
                              void *owner, int *err)
{
    struct upstream *u = idle_take(up, app);
    if (!u && !(u = upstream_open(up, app, err)))
        return NULL;
    u->owner_ops = ops;
    u->owner = owner;
    u->s.last_activity = up->loop->now;
    bool connecting = u->state == UPSTREAM_CONNECTING || u->state == UPSTREAM_HANDSHAKING;
    loop_timer_arm(up->loop, &u->timer,
                   connecting ? up->cfg->connect_timeout_ms : up->cfg->upstream_response_timeout_ms);
    return u;
}

void upstream_release(struct upstream *u, bool reusable)
{
    struct upstream_pool *up = u->pool;
    u->owner_ops = NULL;
    u->owner = NULL;
    /* A pointer comparison once the session is kept: the reference is
     * taken once per new session, not per request. */
    if (u->s.ssl && u->state == UPSTREAM_READY && app_is_current(up, u->app))
        tls_keep_session(u->s.ssl, &up->idle[u->app->index].session);
    if (!reusable || u->state != UPSTREAM_READY || u->s.peer_closed || !app_is_current(up, u->app) ||
        app_state(u->app) != APP_UP ||
        buf_len(&u->s.in) || up->idle[u->app->index].count >= IDLE_PER_APP) {
        upstream_close(u);
        return;
    }
    struct upstream_list *list = &up->idle[u->app->index];
    buf_release(up->buffers, &u->s.in);
    u->reused = true;
    u->prev = NULL;
    u->next = list->first;
    if (u->next)
        u->next->prev = u;
    list->first = u;
    list->count++;
    /* An idle application connection is kept as long as an idle client. */
    loop_timer_arm(up->loop, &u->timer, up->cfg->client_idle_timeout_ms);
}

int upstream_handshake(struct upstream *u)
{
    int rc = tls_handshake(u->s.ssl);
    if (rc == -EAGAIN)
        return rc;
    if (rc < 0) {
        u->state = UPSTREAM_FAILED;
        u->error = -rc;
        u->failed_in_handshake = true;
        return rc;
    }
    u->state = UPSTREAM_READY;
    u->s.can_write = true;
    loop_timer_arm(u->pool->loop, &u->timer, u->pool->cfg->upstream_response_timeout_ms);
    return 0;
}

const char *upstream_error_text(int err)
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

const char *upstream_failure(const struct upstream *u, char *buf, size_t len)
{
    if (!u->failed_in_handshake)
        return upstream_error_text(u->error);
    char detail[120];
    if (tls_verify_failure(u->s.ssl, detail, sizeof(detail))) {
        snprintf(buf, len, "TLS certificate verify failed: %s", detail);
        return buf;
    }
    snprintf(buf, len, "TLS handshake: %s",
             u->error == EPROTO ? tls_error_text(u->s.ssl, detail, sizeof(detail)) : strerror(u->error));
    return buf;
}

static void connect_finished(struct upstream *u)
{
    int err = net_socket_error(u->s.io.fd);
    if (!err)
        err = start_tls(u);
    if (err) {
        u->state = UPSTREAM_FAILED;
        u->error = err;
        return;
    }
    u->s.can_write = true;
    if (u->state == UPSTREAM_READY)
        loop_timer_arm(u->pool->loop, &u->timer, u->pool->cfg->upstream_response_timeout_ms);
}

/* An EPOLLIN for an idle connection may be left over from the response
 * that was read earlier in the same epoll batch; only a peek tells it from
 * a real close or stray bytes (and, through TLS, a session ticket). */
static bool idle_event_is_stale(struct upstream *u)
{
    char sink[64];
    if (u->s.ssl)
        return tls_read(u->s.ssl, sink, sizeof(sink)) == -EAGAIN;
    return recv(u->s.io.fd, sink, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

static void upstream_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)loop;
    struct upstream *u = container_of(io, struct upstream, s.io);
    if (u->state == UPSTREAM_CLOSED)
        return;
    stream_note_events(&u->s, events);
    if (!u->owner_ops) {
        /* An idle connection has nothing to say: this is its close (or,
         * through TLS, perhaps a session ticket, which OpenSSL consumes). */
        if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ||
            ((events & EPOLLIN) && !idle_event_is_stale(u)))
            upstream_close(u);
        return;
    }
    if (u->state == UPSTREAM_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        connect_finished(u);
    }
    u->owner_ops->ready(u->owner);
}

static void upstream_timer(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    struct upstream *u = container_of(timer, struct upstream, timer);
    if (!u->owner_ops) {
        upstream_close(u);   /* idle too long */
        return;
    }
    u->owner_ops->timeout(u->owner);
}

/* Closing is the pool's: an owner releases (never frees) what it used. */
