/* counters.h - what one worker counts, for the metrics (metrics.h).
 *
 * Each worker owns a struct proxy_counters (in its struct proxy) and is the
 * only thread that writes it, so the request path counts with a relaxed
 * load and a relaxed store (no read-modify-write, no lock, no shared cache
 * line written by two workers); the scraper reads with relaxed loads and
 * sums over the workers. A scrape may see one counter of a request and not
 * yet another; each counter on its own only grows.
 *
 * Per-application counters live in a table indexed like the pool the
 * worker serves. On reload the worker adopts the new pool and makes a new
 * table (counters_table_for), copying each application's values over by name,
 * so an application that keeps its name keeps its counts. The old table is
 * retired, not freed: a scraper may be reading it. It is freed at a later
 * adopt (or at exit) when no scrape is under way (counters_read_begin /
 * _end count the scrapes in progress). A request that began before the
 * reload and ends after it counts in the totals but not in its
 * application's counters: its application belongs to the old pool.
 */
#ifndef SLUICE_COUNTERS_H
#define SLUICE_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "pool.h"

/* Upper bounds of the duration histograms' buckets, in microseconds (1 ms
 * to 10 s); a last bucket holds everything above. */
#define COUNTERS_BOUNDS 13
#define COUNTERS_BUCKETS (COUNTERS_BOUNDS + 1)
extern const int64_t counters_bound_us[COUNTERS_BOUNDS];

/* Status classes 1xx to 5xx; anything else counts as 5xx. */
#define COUNTERS_CLASSES 5

/* How an attempt at an application failed. */
enum counters_failure {
    COUNTERS_FAIL_CONNECT,         /* not reached: refused, connect or TLS timeout */
    COUNTERS_FAIL_TIMEOUT,         /* no response head within upstream_response */
    COUNTERS_FAIL_RESET,           /* closed or reset before a response head */
    COUNTERS_FAIL_5XX,             /* answered with a 5xx */
    COUNTERS_FAIL_BAD_RESPONSE,    /* answered with nothing a client can be given */
    COUNTERS_FAIL_KINDS,
};

/* Buckets are not cumulative here (one store per observation); the
 * exposition adds them up. */
struct counters_histogram {
    _Atomic uint64_t buckets[COUNTERS_BUCKETS];
    _Atomic uint64_t sum_us;
};

struct counters_app {
    _Atomic uint64_t requests;     /* attempts sent to it, retries included */
    _Atomic uint64_t failures[COUNTERS_FAIL_KINDS];
    struct counters_histogram response_time;  /* requests it answered, first byte to last */
};

/* One worker's per-application counters for one pool; owned by the
 * worker's struct proxy_counters (current or retired). */
struct counters_table {
    const struct pool *pool;       /* indexed like its apps; compared, never read through
                                      by a scraper (the pool may be gone) */
    const struct app *first;       /* pool->apps */
    int count;
    struct counters_table *retired_next;
    char (*names)[CONFIG_NAME_MAX];  /* count copies, in the same allocation: for the
                                        scraper of another pool and for the next adopt */
    struct counters_app apps[];
};

struct proxy_counters {
    _Atomic uint64_t requests[COUNTERS_CLASSES];   /* answered, by status class */
    struct counters_histogram duration;            /* every answered request */
    _Atomic uint64_t bytes_in;                     /* request body bytes received */
    _Atomic uint64_t bytes_out;                    /* response body bytes sent */
    _Atomic uint64_t connections_accepted;
    _Atomic int64_t connections_open;
    _Atomic uint64_t tls_handshake_failures;       /* HTTPS connections closed before or in
                                                      their handshake (timeouts too) */
    struct counters_table *_Atomic table;          /* of the pool served; owned */
    struct counters_table *retired;                /* worker only; owned */
};

/* The table for pool, with the values of the current table's applications
 * of the same name; NULL when out of memory. Installing it retires the
 * current one. Both on the worker's thread: the worker is the only writer,
 * so nothing is counted between the two. A table not installed is free()d. */
struct counters_table *counters_table_for(const struct proxy_counters *c, const struct pool *pool);
void counters_install(struct proxy_counters *c, struct counters_table *t);
/* Frees every table (the worker is stopped and nobody scrapes). */
void counters_free(struct proxy_counters *c);

/* Around a scraper's reading of tables: while one is under way, no retired
 * table is freed. */
void counters_read_begin(void);
void counters_read_end(void);

/* ---- the request path: single writer, so load + store ---- */

static inline void counters_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void counters_observe(struct counters_histogram *h, int64_t us)
{
    int b = 0;
    while (b < COUNTERS_BOUNDS && us > counters_bound_us[b])
        b++;
    counters_add(&h->buckets[b], 1);
    counters_add(&h->sum_us, us > 0 ? (uint64_t)us : 0);
}

/* app's counters, or NULL when app is not of the pool counted (a request
 * that outlived a reload). */
static inline struct counters_app *counters_app(struct proxy_counters *c, const struct app *app)
{
    struct counters_table *t = atomic_load_explicit(&c->table, memory_order_relaxed);
    if (!t || app < t->first || app >= t->first + t->count)
        return NULL;
    return &t->apps[app->index];
}

#endif
