/* httpclient.h - a one-shot, non-blocking HTTP/1.1 client on an event loop.
 *
 * One exchange at a time per struct: connect (TCP, then TLS when asked),
 * send a request its owner wrote whole, read the response head, report the
 * status, close. No keep-alive, no body, no redirects: its users only need
 * to know how the other side answered, and a health check must test a fresh
 * connection anyway.
 *
 * Two users, each on its own thread's loop:
 *  - health.c, the active checks (`GET /health`) on the workers' loops;
 *  - alert.c, the webhook POSTs on the alert thread.
 * Exchanges share nothing but the spare-socket budget their owner may pass
 * in (and owns).
 */
#ifndef SLUICE_HTTPCLIENT_H
#define SLUICE_HTTPCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"

#define HTTPCLIENT_REASON_MAX 120

struct httpclient;

/* Called exactly once per httpclient_start, from the loop, never from
 * inside httpclient_start. On success error is NULL and status is the
 * response's status code; otherwise status is 0 and error says why
 * ("connection refused", "timeout after 1000 ms waiting for the response");
 * it is valid until the callback returns or restarts the exchange. The
 * connection is already closed: the callback may start another exchange on
 * the same struct or free its owner. */
typedef void (*httpclient_done_fn)(struct httpclient *http, int status, const char *error);

/* Connect (TCP, then TLS when tls is set), send `request`, read the response
 * head, report its status, close. The owner fills the first block and keeps
 * what it points to alive until done is called. */
struct httpclient {
    const struct config_address *address;
    struct ssl_ctx_st *tls;          /* NULL: plain TCP */
    const char *server_name;         /* TLS: SNI and certificate name */
    const char *request;
    size_t request_len;
    char *buf;                       /* response head; a head that does not fit */
    size_t buf_cap;                  /* is judged by its status line alone */
    int64_t timeout_ms;              /* the whole exchange */
    httpclient_done_fn done;
    int *spare_budget;               /* how many more refused sockets may be kept
                                        for reuse (shared by many); NULL: none */

    /* private to httpclient.c */
    struct loop *loop;
    struct loop_io io;
    struct loop_timer timer;
    struct ssl_st *ssl;
    int fd;
    int spare_fd;                    /* refused at once last time: reused next */
    int phase;
    int pending_error;               /* a failure found inside start, reported from the loop */
    size_t sent, received;
    char reason[HTTPCLIENT_REASON_MAX];
};

/* Prepares a zeroed struct once, before its first exchange. */
void httpclient_init(struct httpclient *http);
/* Starts an exchange on loop. Returns 0, after which every outcome, an
 * immediate failure to connect included, is reported through done; or
 * -ENOMEM when not even the timeout could be armed (done is not called). */
int httpclient_start(struct httpclient *http, struct loop *loop);
/* Abandons an exchange in flight without calling done, and closes the
 * spare socket; harmless when idle. */
void httpclient_cancel(struct httpclient *http);
bool httpclient_busy(const struct httpclient *http);

#endif
