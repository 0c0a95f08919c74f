/* client.h - client connections: the first layer of the request path.
 *
 * The worker accepts a socket and hands it here. A client connection reads
 * request heads (under the client_header limit from their first byte),
 * hands each parsed head to an exchange (exchange.h) and runs it, then
 * waits for the next request (client_idle), or drains what is left and
 * closes (linger). It owns its socket and input buffer; an idle
 * connection holds nothing else.
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stdbool.h>
#include <sys/socket.h>

#include "proxy.h"

/* Takes ownership of an accepted, non-blocking client socket. */
void client_accept(struct proxy *p, int fd, const struct sockaddr_storage *peer);
/* The same for an HTTPS listener's socket: the TLS handshake (with p->tls's
 * certificates) comes first, within the client_header time limit that
 * then goes on to cover the first request head. */
void client_accept_tls(struct proxy *p, int fd, const struct sockaddr_storage *peer);

/* After each loop iteration: continues connections that ran out of their
 * budget, then recycles what was closed during the iteration. */
void clients_after_iteration(struct proxy *p);
/* True when some connection has work left and the loop must not sleep. */
bool clients_have_pending(const struct proxy *p);

/* Whether a connection's request still points at an application of pool,
 * one the worker served before a reload (worker.c frees nothing while one
 * does). Walks every connection: not for the request path. */
bool clients_use_pool(const struct proxy *p, const struct pool *pool);

/* After a reload: HTTP/2 connections send GOAWAY (their streams in flight
 * finish), so that clients reconnect to the new settings. */
void clients_reloaded(struct proxy *p);

/* Graceful stop: idle connections are closed now, busy ones after their
 * current response (p->stopping is set). */
void clients_begin_shutdown(struct proxy *p);
/* Closes every connection at once (the grace period is over). */
void clients_close_all(struct proxy *p);
/* Frees the recycled objects of a stopped worker. */
void clients_free(struct proxy *p);

#endif
