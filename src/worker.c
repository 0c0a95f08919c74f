/* worker.c - a worker thread: its loop, its listeners, accepting, and the
 * graceful stop. What happens to a connection after accept is client.c's. */
#include "worker.h"

#include <errno.h>
#include <malloc.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "health.h"
#include "net.h"
#include "client.h"
#include "exchange.h"

/* Accepts per readiness event, so one busy listener cannot starve the
 * connections already open. */
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100
/* Buffers kept for reuse per worker: a request in flight holds up to four,
 * so this serves about 64 concurrent requests without malloc; beyond it
 * blocks go back to malloc and, once the worker is quiet, to the kernel. */
#define FREE_BUFFERS_MAX 256
/* Request body blocks (64 KB by default) kept for reuse per worker. */
#define FREE_BODY_BUFFERS_MAX 8

/* A buffered body shares its block with nothing but pipelined bytes, and
 * takes over the client's input buffer: never smaller than that. */
static uint32_t body_block_size(const struct config *cfg)
{
    uint64_t input = cfg->header_bytes + 8192;
    return (uint32_t)(cfg->buffer_body > input ? cfg->buffer_body : input);
}

/* Out of file descriptors: the listener stays readable, so accepting again
 * at once would spin. Pause, and say so at most once per pause. */
static void pause_accepting(struct worker *w, int err)
{
    log_error("worker %d: accept: %s; pausing new connections for %d ms (raise ulimit -n or "
              "lower max_connections)", w->index, strerror(err), ACCEPT_PAUSE_MS);
    worker_set_accepting(w, false);
    loop_timer_arm(&w->loop, &w->accept_timer, ACCEPT_PAUSE_MS);
}

static void resume_accepting(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    struct worker *w = container_of(timer, struct worker, accept_timer);
    if (!w->stopping && w->proxy.client_count < w->client_limit)
        worker_set_accepting(w, true);
}

static void listener_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)loop;
    (void)events;
    struct listener *l = container_of(io, struct listener, io);
    struct worker *w = l->worker;
    for (int i = 0; i < ACCEPT_BATCH && w->proxy.client_count < w->client_limit; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(w, errno);
            break;
        }
        if (l->tls)
            client_accept_tls(&w->proxy, fd, &peer);
        else
            client_accept(&w->proxy, fd, &peer);
    }
    if (w->proxy.client_count >= w->client_limit)
        worker_set_accepting(w, false);
}

void worker_set_accepting(struct worker *w, bool on)
{
    if (w->accepting == on)
        return;
    for (int i = 0; i < w->listener_count; i++) {
        struct listener *l = &w->listeners[i];
        if (on)
            loop_add_reader(&w->loop, &l->io, l->fd, listener_event);
        else
            loop_del(&w->loop, &l->io);
    }
    w->accepting = on;
}

static void close_listeners(struct worker *w)
{
    worker_set_accepting(w, false);
    for (int i = 0; i < w->listener_count; i++) {
        close(w->listeners[i].fd);
        w->listeners[i].fd = -1;
    }
    w->listener_count = 0;
}

static void grace_expired(struct loop *loop, struct loop_timer *timer)
{
    struct worker *w = container_of(timer, struct worker, grace_timer);
    if (w->proxy.client_count)
        log_warn("worker %d: shutdown grace over, closing %d connections", w->index, w->proxy.client_count);
    clients_close_all(&w->proxy);
    loop->stop = true;
}

static int adopt(struct worker *w, struct generation *g);

static void wake_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)events;
    struct worker *w = container_of(io, struct worker, wake_io);
    uint64_t value;
    if (read(w->wake_fd, &value, sizeof(value)) < 0 || w->stopping)
        return;
    /* Taken up after this iteration's events: the checks of the old
     * generation are freed then, and an event of this batch may still
     * point at one of them. */
    w->adopt_pending = atomic_load(w->published) != atomic_load(&w->generation);
    if (!atomic_load(w->stop_requested))
        return;
    w->stopping = true;
    close_listeners(w);
    clients_begin_shutdown(&w->proxy);
    loop_timer_arm(loop, &w->grace_timer, w->cfg->shutdown_grace_ms);
}

/* After a burst, buffers beyond the free list went back to malloc, which
 * keeps their pages. They are handed to the kernel only once the worker
 * has been quiet for a while: malloc_trim walks the heap and the pages
 * must be faulted in again, which under load cost tens of milliseconds at
 * the tail (measured with bench/openloop). */
#define TRIM_QUIET_MS 5000

/* Spare splice pipes go the same way: a quiet worker holds no descriptors
 * beyond its listeners and the connections it serves. */
static bool has_spares(const struct worker *w)
{
    return w->buffers.returned || w->proxy.pipes.count;
}

static void trim_when_quiet(struct worker *w)
{
    if (!has_spares(w))
        return;
    int64_t quiet = w->loop.now - w->proxy.last_request_ms;
    if (quiet < TRIM_QUIET_MS) {
        if (!loop_timer_armed(&w->trim_timer))
            loop_timer_arm(&w->loop, &w->trim_timer, TRIM_QUIET_MS - quiet);
        return;
    }
    stream_pipes_free(&w->proxy.pipes);
    if (w->buffers.returned) {
        w->buffers.returned = false;
        malloc_trim(0);
    }
}

static void trim_later(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    trim_when_quiet(container_of(timer, struct worker, trim_timer));
}

static void after_iteration(struct loop *loop, void *arg)
{
    struct worker *w = arg;
    clients_after_iteration(&w->proxy);
    if (w->adopt_pending && !w->stopping) {
        w->adopt_pending = false;
        int rc = adopt(w, atomic_load(w->published));
        if (rc < 0)
            log_error("worker %d: cannot take up the new configuration (%s); keeping the old one",
                      w->index, strerror(-rc));
    }
    health_run_due(w->health);
    upstream_pool_follow_states(&w->proxy.upstreams);
    log_access_flush(&w->access_log);
    if (has_spares(w) && !loop_timer_armed(&w->trim_timer))
        trim_when_quiet(w);
    /* max_connections: a connection closed during the iteration makes room. */
    if (!w->accepting && !w->stopping && w->proxy.client_count < w->client_limit &&
        !loop_timer_armed(&w->accept_timer))
        worker_set_accepting(w, true);
    if (w->stopping && w->proxy.client_count == 0)
        loop->stop = true;
}

static int open_listeners(struct worker *w, char *error, size_t error_len)
{
    for (int i = 0; i < w->cfg->listen_count; i++) {
        int backlog = w->cfg->max_connections < 511 ? 511 : w->cfg->max_connections;
        int fd = net_listen(&w->cfg->listen[i], backlog, true);
        if (fd < 0) {
            snprintf(error, error_len, "listen on %s", w->cfg->listen[i].text);
            return fd;
        }
        /* Accepted sockets inherit it: answers are not held back by Nagle. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        w->listeners[i] = (struct listener){.worker = w, .fd = fd,
                                            .tls = config_listen_is_tls(w->cfg, i)};
        w->listener_count++;
    }
    return 0;
}

/* Everything a worker derives from its generation, its share of the checks
 * included. Listeners stay: a changed listen address needs a restart
 * (main.c says so). */
static int derive(struct worker *w, struct generation *g)
{
    const struct config *cfg = &g->cfg;
    struct proxy *p = &w->proxy;
    struct http1_header *headers = calloc(cfg->header_count, sizeof(*headers));
    struct balance balance;
    struct health *health = NULL;
    struct counters_table *counters = counters_table_for(&p->counters, &g->pool);
    bool had_balance = p->headers != NULL;
    int rc = -ENOMEM;
    if (!headers || !counters || balance_init(&balance, &g->pool, w->index) < 0)
        goto fail;
    if ((rc = health_attach(&health, &w->loop, &g->pool, cfg, w->index, w->count)) < 0) {
        balance_free(&balance);
        goto fail;
    }
    if ((rc = upstream_pool_adopt(&p->upstreams, &g->pool, cfg)) < 0) {
        health_detach(health);
        balance_free(&balance);
        goto fail;
    }
    counters_install(&p->counters, counters);
    health_detach(w->health);
    w->health = health;
    if (had_balance)
        balance_free(&w->balance);
    free(p->headers);
    p->headers = headers;
    w->balance = balance;
    atomic_store(&w->generation, g);
    w->cfg = p->cfg = cfg;
    w->pool = p->pool = &g->pool;
    p->tls = g->tls;
    p->limits = (struct http1_limits){.head_bytes = cfg->header_bytes, .headers = cfg->header_count};
    buf_pool_resize(&w->buffers, cfg->header_bytes + 8192);
    buf_pool_resize(&p->bodies, body_block_size(cfg));
    return 0;
fail:
    free(headers);
    free(counters);
    return rc;
}

/* How often a worker looks again whether its connections still use a
 * generation it left. Each look walks its connections once per such
 * generation, so it is kept rare; main.c frees once a second anyway. */
#define RELEASE_CHECK_MS 250

/* Gives up this worker's share of every generation it left that none of
 * its connections uses any more (main.c may free one from then on). */
static void release_unused(struct worker *w)
{
    int kept = 0;
    for (int i = 0; i < w->left_count; i++) {
        struct generation *g = w->left[i];
        if (clients_use_pool(&w->proxy, &g->pool))
            w->left[kept++] = g;
        else
            atomic_fetch_sub(&g->holders, 1);
    }
    w->left_count = kept;
    if (kept && !loop_timer_armed(&w->release_timer))
        loop_timer_arm(&w->loop, &w->release_timer, RELEASE_CHECK_MS);
}

static void release_later(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    release_unused(container_of(timer, struct worker, release_timer));
}

/* Generations published and replaced while this worker was busy, between
 * old and the newest g: it never served them, so nothing of its points at
 * them. Each is read before its share goes: after that main.c may free it. */
static void release_skipped(struct generation *g, const struct generation *old)
{
    struct generation *s = g->previous;
    while (s && s != old) {
        struct generation *older = s->previous;
        atomic_fetch_sub(&s->holders, 1);
        s = older;
    }
}

static int remember_left(struct worker *w)
{
    if (w->left_count < w->left_cap)
        return 0;
    int cap = w->left_cap ? w->left_cap * 2 : 4;
    struct generation **left = realloc(w->left, (size_t)cap * sizeof(*left));
    if (!left)
        return -ENOMEM;
    w->left = left;
    w->left_cap = cap;
    return 0;
}

static int adopt(struct worker *w, struct generation *g)
{
    struct generation *old = atomic_load(&w->generation);
    int rc = remember_left(w);
    if (rc < 0)
        return rc;
    if ((rc = derive(w, g)) < 0)
        return rc;
    w->left[w->left_count++] = old;
    release_skipped(g, old);
    clients_reloaded(&w->proxy);
    release_unused(w);
    log_debug("worker %d: serving the new configuration", w->index);
    return 0;
}

int worker_init(struct worker *w, int index, int count, struct generation *_Atomic *published,
                _Atomic bool *stop_requested, char *error, size_t error_len)
{
    struct generation *g = atomic_load(published);
    const struct config *cfg = &g->cfg;
    *w = (struct worker){.index = index, .count = count, .wake_fd = -1, .published = published,
                         .stop_requested = stop_requested};
    snprintf(error, error_len, "set up worker %d", index);
    int rc = loop_init(&w->loop);
    if (rc < 0)
        return rc;
    w->loop.after_iteration = after_iteration;
    w->loop.after_iteration_arg = w;
    loop_timer_init(&w->grace_timer, grace_expired);
    loop_timer_init(&w->accept_timer, resume_accepting);
    loop_timer_init(&w->trim_timer, trim_later);
    loop_timer_init(&w->release_timer, release_later);
    buf_pool_init(&w->buffers, cfg->header_bytes + 8192, FREE_BUFFERS_MAX);
    w->proxy = (struct proxy){.loop = &w->loop, .buffers = &w->buffers, .balance = &w->balance,
                              .access_log = &w->access_log};
    buf_pool_init(&w->proxy.bodies, body_block_size(cfg), FREE_BODY_BUFFERS_MAX);
    upstream_pool_init(&w->proxy.upstreams, &w->loop, &w->buffers);
    loop_timer_init(&w->proxy.queue_timer, exchanges_queue_timer);
    if ((rc = derive(w, g)) < 0) {
        snprintf(error, error_len, "start the health checks of worker %d", index);
        return rc;
    }
    if ((rc = log_access_init(&w->access_log)) < 0)
        return rc;
    uint64_t *prefix = &w->proxy.request_id_prefix;
    if (getrandom(prefix, sizeof(*prefix), 0) < 0)
        *prefix = (uint64_t)loop_monotonic_ms() * 2654435761u + (uint64_t)index;
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0)
        return -errno;
    if ((rc = loop_add_reader(&w->loop, &w->wake_io, w->wake_fd, wake_event)) < 0)
        return rc;
    return open_listeners(w, error, error_len);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    while (!w->loop.stop) {
        bool busy = clients_have_pending(&w->proxy) || health_has_due(w->health);
        int rc = loop_run_once(&w->loop, busy ? 0 : -1);
        if (rc < 0) {
            log_error("worker %d: event loop: %s", w->index, strerror(-rc));
            break;
        }
    }
    return NULL;
}

int worker_start(struct worker *w)
{
    worker_set_accepting(w, true);
    char name[16];
    snprintf(name, sizeof(name), "sluice-w%d", w->index);
    return loop_thread_start(&w->thread, worker_main, w, name);
}

void worker_wake(struct worker *w)
{
    uint64_t one = 1;
    if (write(w->wake_fd, &one, sizeof(one)) < 0)
        log_error("worker %d: cannot wake: %s", w->index, strerror(errno));
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
    close_listeners(w);
    health_detach(w->health);
    w->health = NULL;
    clients_free(&w->proxy);
    counters_free(&w->proxy.counters);
    upstream_pool_free(&w->proxy.upstreams);
    stream_pipes_free(&w->proxy.pipes);
    free(w->proxy.headers);
    w->proxy.headers = NULL;
    free(w->left);
    w->left = NULL;
    w->left_count = w->left_cap = 0;
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    log_access_free(&w->access_log);
    balance_free(&w->balance);
    buf_pool_free(&w->buffers);
    buf_pool_free(&w->proxy.bodies);
    loop_close(&w->loop);
}
