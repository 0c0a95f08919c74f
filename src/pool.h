/* pool.h - the applications and their states, shared by every thread.
 *
 * One struct pool lives for the whole process (built from the config at
 * start). Workers read an application's state with a relaxed atomic load on
 * the request path; every change goes through pool_set_state, a
 * compare-and-swap, so two threads never both report the same transition.
 *
 * Each transition that succeeds is logged, counted, and written as a
 * struct pool_transition to a non-blocking pipe whose reading end belongs to
 * the alert dispatcher (alert.c). A pipe write of fewer than PIPE_BUF bytes is
 * atomic, so workers (requests and checks) can all report without a lock.
 */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

enum app_state {
    APP_UP = 0,
    APP_DOWN,
    APP_DRAINING,
    APP_MAINTENANCE,
    APP_STATE_COUNT,
};

struct app {
    const struct config_app *cfg;
    int index;
    /* enum app_state in the low 8 bits; above them, a count of this
     * application's transitions. Every change bumps the count in the same
     * compare-and-swap, so the count orders one application's records even
     * when two threads' records reach the pipe swapped (alert.c). */
    _Atomic uint32_t state;

    /* passive detection: written by workers */
    _Atomic uint32_t failure_seq;          /* gateway failures since the last transition */
    _Atomic int64_t *failure_times;        /* ring of the last [passive] failures (monotonic
                                              ms), indexed by failure_seq; in pool->failure_ring */
    _Atomic uint32_t server_errors_in_row;

    /* statistics, for logs, metrics and the admin API; what requests
     * count is counted per worker (counters.h), so that no worker writes a
     * line another one does */
    _Atomic int64_t active;                /* requests in flight, across workers: max_requests */
    _Atomic uint64_t transitions[APP_STATE_COUNT]; /* entries into each state */

    _Atomic int64_t state_since_ms;        /* wall clock of the last transition (or start) */

    /* last active check, written by the one worker that checks it */
    _Atomic int64_t last_check_time_ms;    /* wall clock */
    _Atomic int64_t last_check_duration_us;
    _Atomic int last_check_ok;
    _Atomic int last_check_status;         /* HTTP status, 0 when none came */

    /* Set by the admin API (enable): the worker that checks this
     * application starts a check at once and brings it up on one pass.
     * Taken with an exchange by that worker (health.c). */
    _Atomic bool check_requested;
};

struct pool {
    const struct config *cfg;
    struct app *apps;          /* owned array of cfg->app_count */
    int count;
    _Atomic uint64_t state_version;  /* bumped after every state change: workers
                                        rebuild their list of up applications
                                        when it moves (balance.c) */
    _Alignas(64) _Atomic uint32_t rr_cursor;  /* shared round robin position: one order for all workers,
                                    so consecutive requests alternate even across workers */
    _Atomic uint64_t check_requests; /* bumped after each app->check_requested is set:
                                        the workers look at the flags only when it moves */
    bool outage_at_start;      /* set by a reload during an outage (alert.c) */
    _Atomic int64_t *failure_ring;  /* owned: count x cfg->passive_failures slots */
    int notify_read_fd;        /* alert dispatcher reads transitions here */
    int notify_write_fd;
    _Atomic uint64_t notify_lost;  /* records the full pipe refused */
};

#define POOL_REASON_MAX 200

struct pool_transition {
    int app_index;
    int8_t from, to;           /* enum app_state */
    uint32_t stamp;            /* app->state after the change */
    int64_t time_ms;           /* wall clock, ms since the epoch */
    char reason[POOL_REASON_MAX];
};

int pool_init(struct pool *pool, const struct config *cfg);
void pool_free(struct pool *pool);
/* Closes the writing end of the transition pipe of a pool no thread
 * reports to any more (a reload retired it): its retired alert dispatcher
 * sees the end, and closes the reading end (alert_stop). Its applications
 * stay readable. */
void pool_close_writer(struct pool *pool);

#define APP_STATE_BITS 8u

static inline enum app_state app_state_of(uint32_t stamp)
{
    return (enum app_state)(stamp & ((1u << APP_STATE_BITS) - 1));
}

static inline enum app_state app_state(const struct app *app)
{
    return app_state_of(atomic_load_explicit(&app->state, memory_order_relaxed));
}

/* Whether stamp a is a later change of one application than stamp b
 * (serial-number order, so the count may wrap). */
static inline bool app_stamp_after(uint32_t a, uint32_t b)
{
    return (int32_t)((a >> APP_STATE_BITS << APP_STATE_BITS) - (b >> APP_STATE_BITS << APP_STATE_BITS)) > 0;
}

const char *app_state_name(enum app_state state);

/* Moves app from `from` to `to` if it is still in `from`. On success logs
 * "application NAME ADDR from -> to: reason", counts and notifies; returns
 * true. Returns false when another thread changed the state first. */
bool pool_set_state(struct pool *pool, struct app *app, enum app_state from, enum app_state to,
                    const char *reason);

/* Passive detection ([passive]), called by workers on live traffic.
 *
 * A gateway failure (connect error or timeout, a connection closed or reset
 * before any response byte, no response head in time) is counted with its
 * time; [passive] failures of them within [passive] window, consecutive or
 * not, mark the application down, as nginx's max_fails/fail_timeout do. So
 * an application that drops one request in five goes out as surely as one
 * that refuses every connection. Successes do not wipe the count: only the
 * window ages failures out, and only active checks bring it back. now_ms is
 * the caller's monotonic clock (its loop's), so counting costs no syscall.
 *
 * A 5xx counts toward [passive] server_errors (consecutive) when that is
 * enabled; any other status resets that count. */
void pool_note_failure(struct pool *pool, struct app *app, int64_t now_ms, const char *cause);
void pool_note_status(struct pool *pool, struct app *app, int status);

/* Draining ends when the last request in flight does: app moves from
 * draining to maintenance if it is draining and has none in flight.
 * Called by the worker that gives the last request slot back, and by the
 * admin server's timer (a drain with nothing in flight). */
void pool_finish_drain(struct pool *pool, struct app *app);

/* Asks the worker that checks app for a check at once (see
 * app->check_requested); the caller then wakes the workers. */
void pool_request_check(struct pool *pool, struct app *app);

/* The application called name, or NULL. */
struct app *pool_find(struct pool *pool, const char *name);

/* Number of applications currently up. */
int pool_up_count(const struct pool *pool);

#endif
