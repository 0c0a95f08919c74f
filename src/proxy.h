/* proxy.h - the client <-> application state machine (the hot path).
 *
 * worker.c accepts connections and hands them here; everything that happens
 * to a request afterwards (parse, pick, connect or reuse, forward, stream
 * back, log, keep-alive) is in proxy.c.
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <sys/socket.h>

#include "worker.h"

/* Takes ownership of an accepted, non-blocking client socket. */
void proxy_accept(struct worker *w, int fd, const struct sockaddr_storage *peer);

/* After each loop iteration: continues connections that ran out of their
 * budget, then frees what was closed during the iteration. */
void proxy_after_iteration(struct worker *w);
/* True when some connection has work left and the loop must not sleep. */
bool proxy_has_pending(const struct worker *w);

/* Graceful stop: idle clients are closed now, busy ones after their
 * current response. */
void proxy_begin_shutdown(struct worker *w);
/* Closes every idle upstream connection (before adopting a new pool). */
void proxy_drop_idle(struct worker *w);
/* Whether a connection still points at an application of pool, one the
 * worker served before a reload (worker.c frees nothing while it does).
 * Walks every connection: not for the request path. */
bool proxy_uses_pool(const struct worker *w, const struct pool *pool);
/* Closes every connection at once (the grace period is over). */
void proxy_close_all(struct worker *w);
/* Frees the recycled objects and idle upstreams of a stopped worker. */
void proxy_free(struct worker *w);

#endif
