/* worker.h - one thread, one event loop, its own listeners and connections.
 *
 * Everything reachable from a struct worker belongs to that worker's thread
 * alone (the pool and config are shared read-only or through atomics), so
 * the request path takes no lock. The main thread talks to a worker only
 * through its eventfd (stop requests).
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "balance.h"
#include "buf.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "proxy.h"

struct alert;
struct health;
struct tls_server;

/* What workers serve: a config, the pool built from it and the alert
 * dispatcher reading that pool's transitions. main.c makes a new one on
 * reload and publishes it through an atomic pointer; each worker adopts it
 * between two loop iterations. An old generation is freed by main.c once
 * its holders count is 0 and its dispatcher has ended: requests that began
 * before the reload may still point at its applications until they end. */
struct generation {
    struct config cfg;
    struct pool pool;
    struct alert *alert;             /* main.c's; NULL once stopped */
    struct tls_server *tls;          /* the HTTPS listeners' certificates; NULL without
                                        [server.tls]; a reference (tlsserver.h) */
    /* Workers that may still use it, set to the worker count before it is
     * published. Each worker takes its share off once, when it serves a
     * newer generation and none of its connections points at one of this
     * generation's applications (worker.c); never to be read by that worker
     * again after that. */
    _Atomic int holders;
    /* The next older generation still kept. Written by main.c only when it
     * frees that one, which no worker can be walking through then. */
    struct generation *previous;
};

struct listener {
    struct loop_io io;
    struct worker *worker;
    int fd;
    bool tls;                  /* HTTPS: fixed at start, as the address is */
};

struct worker {
    int index;
    int count;                 /* workers in all: each checks 1/count of the pool */
    const struct config *cfg;
    struct pool *pool;
    struct loop loop;
    struct balance balance;
    struct log_access access_log;
    struct buf_pool buffers;
    struct proxy proxy;        /* the request path: client connections, exchanges, upstreams */
    struct health *health;     /* this worker's share of the active checks */

    struct listener listeners[CONFIG_MAX_LISTEN];
    int listener_count;
    bool accepting;            /* listeners registered in the loop */

    int wake_fd;               /* eventfd written by the main thread */
    struct loop_io wake_io;
    _Atomic bool *stop_requested;               /* set by the main thread */
    struct generation *_Atomic *published;      /* the generation to serve */
    struct generation *_Atomic generation;      /* the one being served; read by main.c
                                                   to know when an old one is unused */
    /* Generations served before whose holders share this worker has not
     * given up yet: some connection still points at their applications.
     * Looked at again every few hundred ms until it is empty. */
    struct generation **left;
    int left_count, left_cap;
    struct loop_timer release_timer;
    bool stopping;
    bool adopt_pending;        /* a new generation is published: adopt after this iteration */
    struct loop_timer grace_timer;
    struct loop_timer accept_timer;  /* resumes accepting after running out of fds */
    struct loop_timer trim_timer;
    int client_limit;                /* this worker's share of max_connections */
    pthread_t thread;
    bool thread_started;
};

/* Builds worker `index` of `count`: loop, listeners (SO_REUSEPORT),
 * buffers, its share of the health checks. 0 or -errno, with what could
 * not be done in error ("listen on 127.0.0.1:80"). */
int worker_init(struct worker *w, int index, int count, struct generation *_Atomic *published,
                _Atomic bool *stop_requested, char *error, size_t error_len);
int worker_start(struct worker *w);
/* Wakes the worker to look at *stop_requested and *published (from any
 * thread). */
void worker_wake(struct worker *w);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

/* Starts or stops watching the listeners (max_connections, shutdown). */
void worker_set_accepting(struct worker *w, bool on);

#endif
