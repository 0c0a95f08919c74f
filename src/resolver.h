/* resolver.h - host names resolved through c-ares: once, blocking, when a
 * config loads, and then again and again on a thread of their own while
 * sluice serves, so that no worker ever waits on DNS.
 */
#ifndef SLUICE_RESOLVER_H
#define SLUICE_RESOLVER_H

#include <stddef.h>

#include "config.h"
#include "dns.h"

/* Resolves every host name of cfg now, through cfg's resolvers, blocking
 * (start-up, reload, --check: before anything is served). A name that
 * fails, or answers with no address, keeps its answer in previous when it
 * has one (a reload during a DNS outage, logged); otherwise it is an error,
 * "FILE:LINE:COL: applications.host: cannot resolve ..." in errors.
 * previous may be NULL. Returns the number of errors (0: out holds an
 * answer for every name, to be freed with dns_answers_free). */
int resolver_resolve_now(const struct config *cfg, const struct dns_answers *previous,
                         struct dns_answers *out, char *errors, size_t errors_len);

struct resolver;

/* Starts the thread that resolves cfg's host names every dns_refresh (or
 * a record's TTL when shorter, at least a second), from the answers in
 * seed. Each time an answer changes it logs the change and calls changed
 * (on its own thread): the receiver reads resolver_answers. With no host
 * names in cfg no thread starts and *out is NULL. 0 or -errno. */
int resolver_start(struct resolver **out, const struct config *cfg, const struct dns_answers *seed,
                   void (*changed)(void *arg), void *arg);

/* A copy of the latest good answers. 0 or -ENOMEM. */
int resolver_answers(struct resolver *r, struct dns_answers *out);

/* Stops the thread (a query under way is abandoned) and frees r; NULL is fine. */
void resolver_stop(struct resolver *r);

#endif
