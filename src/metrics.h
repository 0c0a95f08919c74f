/* metrics.h - the Prometheus text exposition served at the admin API's
 * /metrics. */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stddef.h>

struct pool;
struct worker;

/* Renders the metrics of the workers and the pool into *text (malloc'd,
 * the caller frees it; *len bytes). 0 or -ENOMEM. */
int metrics_render(const struct worker *workers, int worker_count, const struct pool *pool, char **text,
                   size_t *len);

#endif
