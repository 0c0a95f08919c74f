/* proxy.h - what one worker's request path shares: the common ground of
 * its layers. Types only.
 *
 *   client.c    the client connection: reading, buffers, idle / head /
 *               linger, hands a parsed head to
 *   exchange.c  one request and its response, which uses
 *   upstream.c  connections to applications and the idle pool, and
 *   rewrite.c   the heads sent on, as pure functions.
 *
 * A struct proxy is embedded in its worker (worker.h), which fills it from
 * the generation it serves and calls the client layer; nothing here is
 * shared with another thread (the pool and config are read-only or atomic).
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "balance.h"
#include "buf.h"
#include "config.h"
#include "counters.h"
#include "http1.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "stream.h"
#include "upstream.h"

struct client;
struct exchange;
struct h2_stream;
struct tls_server;

/* Exchanges waiting for something, oldest first (linked through the
 * exchange; one waits for one thing at a time). */
struct exchange_queue {
    struct exchange *first, *last;
};

struct proxy {
    struct loop *loop;                /* the worker's; the four below are the worker's too */
    struct buf_pool *buffers;
    struct balance *balance;
    struct log_access *access_log;
    const struct config *cfg;         /* of the generation served */
    struct pool *pool;
    struct tls_server *tls;           /* of the generation served: new HTTPS connections'
                                         certificates (NULL without [server.tls]) */
    struct http1_limits limits;
    struct http1_header *headers;     /* limits.headers entries: the parser's views, valid
                                         only within the step that parsed a head; owned */
    struct upstream_pool upstreams;
    struct stream_pipes pipes;        /* spare pipes for splicing large bodies */
    struct buf_pool bodies;           /* blocks of [server.limits] buffer_body bytes */
    uint64_t bodies_held;             /* bytes of those blocks in use: at most buffer_total */
    struct exchange_queue body_waiters;  /* waiting for a block, oldest first */
    bool body_block_returned;         /* since the last iteration: wake a waiter */
    struct exchange_queue slot_waiters;  /* every candidate at max_requests: oldest first */
    uint32_t slot_waiters_count;      /* how many, for the access log */
    bool slot_freed;                  /* since the last iteration: try the waiters */
    struct loop_timer queue_timer;    /* while some wait: retry (a slot freed on another
                                         worker) and answer 503 at [server.timeouts] queue */

    /* every client object is on exactly one of these lists */
    struct client *clients;           /* open connections */
    struct client *free_clients;      /* recycled objects */
    struct client *closed_clients;    /* closed this iteration, recycled after it */
    struct client *pending;           /* have work left after using their budget */
    int client_count;
    struct proxy_counters counters;   /* for the metrics: written here only, read by scrapes */
    struct exchange *free_exchanges;  /* recycled: an exchange exists only while a request does */
    struct h2_stream *free_h2_streams; /* recycled HTTP/2 streams (h2stream.c) */
    struct buf_pool h2_inputs;        /* their request buffers: a head and a window of DATA */

    bool stopping;                    /* graceful stop: no keep-alive, no pooling */
    int64_t last_request_ms;          /* loop time of the last request started */
    uint64_t request_counter;         /* for X-Request-Id */
    uint64_t request_id_prefix;
};

#endif
