/* pool.c - application states and passive failure detection; see pool.h. */
#include "pool.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

static const char *const state_names[APP_STATE_COUNT] = {
    [APP_UP] = "up",
    [APP_DOWN] = "down",
    [APP_DRAINING] = "draining",
    [APP_MAINTENANCE] = "maintenance",
};

const char *app_state_name(enum app_state state)
{
    return (unsigned)state < APP_STATE_COUNT ? state_names[state] : "unknown";
}

int pool_init(struct pool *pool, const struct config *cfg)
{
    int fds[2];
    *pool = (struct pool){.cfg = cfg, .notify_read_fd = -1, .notify_write_fd = -1};
    size_t ring = (size_t)cfg->passive_failures;
    pool->apps = calloc((size_t)cfg->app_count, sizeof(*pool->apps));
    pool->failure_ring = ring ? calloc((size_t)cfg->app_count * ring, sizeof(*pool->failure_ring)) : NULL;
    if (!pool->apps || (ring && cfg->app_count && !pool->failure_ring)) {
        pool_free(pool);
        return -ENOMEM;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        int err = -errno;
        pool_free(pool);
        return err;
    }
    pool->notify_read_fd = fds[0];
    pool->notify_write_fd = fds[1];
    pool->count = cfg->app_count;
    for (int i = 0; i < pool->count; i++) {
        struct app *app = &pool->apps[i];
        app->cfg = &cfg->apps[i];
        app->index = i;
        app->failure_times = ring ? pool->failure_ring + (size_t)i * ring : NULL;
        atomic_init(&app->state, (uint32_t)(cfg->apps[i].alive ? APP_UP : APP_DOWN));
        atomic_init(&app->state_since_ms, loop_wall_ms());
    }
    return 0;
}

void pool_close_writer(struct pool *pool)
{
    if (pool->notify_write_fd >= 0)
        close(pool->notify_write_fd);
    pool->notify_write_fd = -1;
}

static void pool_close_notify(struct pool *pool)
{
    pool_close_writer(pool);
    if (pool->notify_read_fd >= 0)
        close(pool->notify_read_fd);
    pool->notify_read_fd = -1;
}

void pool_free(struct pool *pool)
{
    pool_close_notify(pool);
    free(pool->apps);
    free(pool->failure_ring);
    *pool = (struct pool){.notify_read_fd = -1, .notify_write_fd = -1};
}

static void pool_notify(struct pool *pool, const struct pool_transition *t)
{
    if (pool->notify_write_fd < 0)
        return;   /* a retired pool: its alert dispatcher is gone */
    /* sizeof(*t) < PIPE_BUF, so the write is atomic: whole or not at all. */
    if (write(pool->notify_write_fd, t, sizeof(*t)) != (ssize_t)sizeof(*t)) {
        atomic_fetch_add(&pool->notify_lost, 1);
        log_error("application %s: alert queue full, transition to %s not delivered",
                  pool->apps[t->app_index].cfg->name, app_state_name((enum app_state)t->to));
    }
}

bool pool_set_state(struct pool *pool, struct app *app, enum app_state from, enum app_state to,
                    const char *reason)
{
    if (from == to)
        return false;
    /* A request that outlived a reload reports on an application of the
     * previous pool; its index means nothing in this one. */
    if (app < pool->apps || app >= pool->apps + pool->count)
        return false;
    uint32_t seen = atomic_load(&app->state), stamp;
    do {
        if (app_state_of(seen) != from)
            return false;
        stamp = ((seen >> APP_STATE_BITS) + 1) << APP_STATE_BITS | (uint32_t)to;
    } while (!atomic_compare_exchange_weak(&app->state, &seen, stamp));
    atomic_fetch_add_explicit(&pool->state_version, 1, memory_order_release);
    atomic_fetch_add_explicit(&app->transitions[to], 1, memory_order_relaxed);
    int64_t now_ms = loop_wall_ms();
    atomic_store_explicit(&app->state_since_ms, now_ms, memory_order_relaxed);
    /* A fresh start for passive counting in the new state. */
    atomic_store_explicit(&app->failure_seq, 0, memory_order_relaxed);
    atomic_store_explicit(&app->server_errors_in_row, 0, memory_order_relaxed);

    struct pool_transition t = {
        .app_index = app->index,
        .from = (int8_t)from,
        .to = (int8_t)to,
        .stamp = stamp,
        .time_ms = now_ms,
    };
    snprintf(t.reason, sizeof(t.reason), "%s", reason);
    /* Reported before it is logged: the gap between the compare-and-swap
     * and the pipe is where two threads' changes could swap order, so it is
     * kept to a few instructions (a slow stderr must not widen it). */
    pool_notify(pool, &t);
    /* Down from up is a failure; down on the way back from maintenance
     * (enable) is not. */
    enum config_log_level level = to == APP_DOWN && from == APP_UP ? LOG_ERROR : LOG_INFO;
    log_msg(level, "application %s %s %s -> %s: %s", app->cfg->name, app->cfg->address.text,
            app_state_name(from), app_state_name(to), reason);
    return true;
}

void pool_note_failure(struct pool *pool, struct app *app, int64_t now_ms, const char *cause)
{
    const struct config *cfg = pool->cfg;
    uint32_t limit = (uint32_t)cfg->passive_failures;
    /* A request that outlived a reload reports on an application of the
     * previous pool, whose ring was sized by the previous config. */
    if (limit == 0 || app < pool->apps || app >= pool->apps + pool->count)
        return;
    /* The ring holds the last `limit` failure times; after writing this
     * one, the next slot holds the oldest of them. Workers racing here can
     * only see a newer time in that slot, which delays a verdict by a
     * failure, never brings it early. */
    uint32_t seq = atomic_fetch_add_explicit(&app->failure_seq, 1, memory_order_relaxed);
    atomic_store_explicit(&app->failure_times[seq % limit], now_ms, memory_order_relaxed);
    if (seq + 1 < limit)
        return;
    int64_t oldest = atomic_load_explicit(&app->failure_times[(seq + 1) % limit], memory_order_relaxed);
    if (now_ms - oldest > cfg->passive_window_ms || app_state(app) != APP_UP)
        return;
    char reason[POOL_REASON_MAX];
    snprintf(reason, sizeof(reason), "live traffic: %s (%u failures within %" PRId64 " ms)", cause,
             limit, cfg->passive_window_ms);
    pool_set_state(pool, app, APP_UP, APP_DOWN, reason);
}

void pool_note_status(struct pool *pool, struct app *app, int status)
{
    int limit = pool->cfg->passive_server_errors;
    if (status < 500) {
        if (atomic_load_explicit(&app->server_errors_in_row, memory_order_relaxed))
            atomic_store_explicit(&app->server_errors_in_row, 0, memory_order_relaxed);
        return;
    }
    if (limit <= 0)
        return;
    uint32_t n = atomic_fetch_add_explicit(&app->server_errors_in_row, 1, memory_order_relaxed) + 1;
    if (n >= (uint32_t)limit && app_state(app) == APP_UP) {
        char reason[POOL_REASON_MAX];
        snprintf(reason, sizeof(reason), "live traffic: status %d (%u consecutive)", status, n);
        pool_set_state(pool, app, APP_UP, APP_DOWN, reason);
    }
}

void pool_finish_drain(struct pool *pool, struct app *app)
{
    if (app_state(app) == APP_DRAINING && atomic_load_explicit(&app->active, memory_order_relaxed) == 0)
        pool_set_state(pool, app, APP_DRAINING, APP_MAINTENANCE, "drained: no request in flight");
}

void pool_request_check(struct pool *pool, struct app *app)
{
    atomic_store_explicit(&app->check_requested, true, memory_order_relaxed);
    /* Release: a worker that sees the count move sees the flag too. */
    atomic_fetch_add_explicit(&pool->check_requests, 1, memory_order_release);
}

struct app *pool_find(struct pool *pool, const char *name)
{
    for (int i = 0; i < pool->count; i++)
        if (strcmp(pool->apps[i].cfg->name, name) == 0)
            return &pool->apps[i];
    return NULL;
}

int pool_up_count(const struct pool *pool)
{
    int up = 0;
    for (int i = 0; i < pool->count; i++)
        up += app_state(&pool->apps[i]) == APP_UP;
    return up;
}
