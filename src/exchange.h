/* exchange.h - one request and its response.
 *
 * An exchange begins when a client connection (client.c) has a request
 * head, and ends when the answer has been written: an application's,
 * streamed back, or sluice's own. It picks an application, gets a
 * connection to it from the upstream layer (upstream.c), sends the head as
 * rewrite.c writes it and the body as it arrives, and streams the response
 * back, retrying elsewhere when that is safe. It takes the client's socket
 * and input buffer as a struct stream and never closes them: when the
 * client connection must go, a step says so (STEP_CLOSE).
 *
 * Exchanges come from the worker's free list when a head is parsed and go
 * back when the request is done, so an idle keep-alive connection holds no
 * request state at all.
 */
#ifndef SLUICE_EXCHANGE_H
#define SLUICE_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>

#include "http1.h"
#include "proxy.h"
#include "stream.h"

/* What one step of a connection's work came to. */
enum step {
    STEP_WAIT = 0,    /* nothing can move until an event */
    STEP_MOVED = 1,   /* something moved: step again */
    STEP_CLOSE = -1,  /* the client connection must be closed now */
};

enum exchange_state {
    EXCHANGE_RECEIVE,   /* receiving the request body before an application is chosen */
    EXCHANGE_FORWARD,   /* the request is with an application; no response head yet */
    EXCHANGE_STREAM,    /* a response head went to the client; its body follows */
    EXCHANGE_LOCAL,     /* sending an answer of sluice's own */
    EXCHANGE_TUNNEL,    /* after 101 Switching Protocols: bytes both ways */
    EXCHANGE_DONE,      /* answered: the connection decides what comes next */
    EXCHANGE_ABORT,     /* broken in a way only closing the client connection can end */
};

/* What the client connection does once the exchange is done. */
enum exchange_end {
    END_KEEP_ALIVE,     /* read the next request */
    END_CLOSE,          /* the request was read whole; close */
    END_LINGER,         /* request bytes may still come: drain them, then close */
};

/* How an attempt at one application failed. */
enum exchange_failure {
    FAIL_CONNECT,       /* not reached (refused, timed out, TLS handshake): nothing sent */
    FAIL_NO_RESPONSE,   /* closed or reset before a response head */
    FAIL_TIMEOUT,       /* no response head within upstream_response */
    FAIL_BAD_RESPONSE,  /* answered, but with nothing a client can be given */
};

/* Everything a retry decision depends on, and nothing else. */
struct retry_facts {
    enum exchange_failure kind;
    bool retryable;          /* idempotent and bodiless: may be sent twice */
    bool sent;               /* this attempt wrote bytes to the application */
    bool response_begun;     /* part of the response is with the client */
    bool stale_connection;   /* a pooled connection idle for UPSTREAM_STALE_IDLE_MS or more */
};

enum retry_action {
    RETRY_NEXT,              /* try the next application (the budget permitting) */
    RETRY_ANSWER,            /* answer the client with status */
    RETRY_CUT,               /* close the client connection: its answer has begun */
};

struct retry_verdict {
    enum retry_action action;
    int status;              /* RETRY_ANSWER */
    int fail_status;         /* told to the client if no later try succeeds; 0 keeps the
                                earlier one (503 when none: nothing was sent anywhere) */
    bool count_failure;      /* counts toward passive detection */
    bool free_retry;         /* does not use up one of the retries */
};

/* The one place that decides what a failed attempt leads to. */
struct retry_verdict exchange_decide(const struct retry_facts *f);

struct exchange;

/* A new exchange for a client connection whose stream is `client` (its
 * input buffer holds the head), from `ip`. wake(conn) is called when an
 * application's event or timer moved the exchange on. NULL when out of
 * memory. */
struct exchange *exchange_new(struct proxy *p, struct stream *client, const char *ip,
                              void (*wake)(void *conn), void *conn);
/* Releases everything the exchange holds (an application's connection is
 * closed if the exchange was not done with it) and recycles it. */
void exchange_free(struct exchange *x);
/* Whether the exchange points at an application of pool: the one that
 * answers (or answered) it, or the one its connection goes to. Idle
 * upstreams are not the exchange's: a worker drops them when it leaves a
 * pool. */
bool exchange_uses_pool(const struct exchange *x, const struct pool *pool);
/* After each loop iteration: a request body that waits for memory goes
 * on once a block came back. */
void exchanges_after_iteration(struct proxy *p);
/* The handler of struct proxy's queue_timer (loop_timer_init it with this). */
void exchanges_queue_timer(struct loop *loop, struct loop_timer *timer);
/* Frees the recycled exchanges of a stopped worker. */
void exchanges_free(struct proxy *p);

/* Parses the head at the start of the client's input buffer and begins:
 * forwards it, or answers it (400, 413, 431, 505, redirect...). start_us
 * is when its first byte arrived. */
void exchange_begin(struct exchange *x, int64_t start_us);
/* The request arrives as an HTTP/2 stream (h2.c) that wrote it as an
 * HTTP/1.1 head: the access log says HTTP/2.0. Before exchange_begin. */
void exchange_mark_http2(struct exchange *x);
/* Answers a request that could not be read (timeout or limit) with
 * status; nothing after it on the connection is trusted. */
void exchange_refuse(struct exchange *x, int status, int64_t start_us);

/* Moves whatever bytes can move, either way. */
enum step exchange_step(struct exchange *x);
enum exchange_state exchange_state(const struct exchange *x);
/* Once EXCHANGE_DONE: what the connection does next. Request bytes that
 * were read but not sent are dropped from the client's buffer. */
enum exchange_end exchange_end(struct exchange *x);
/* The client-side time limits at loop time now: client_idle while sluice
 * waits on the client, client_body between two reads of a request body,
 * and [server.limits] min_body_rate. Returns the ms until the next look
 * (> 0), or 0 when the client was too slow: the exchange then answers 408
 * or asks to be closed, which the next exchange_step says. */
int64_t exchange_client_timeout(struct exchange *x, int64_t now);

#endif
