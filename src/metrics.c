/* metrics.c - a placeholder until the metrics module proper: the admin
 * server's /metrics answers a valid, empty exposition. */
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int metrics_render(const struct worker *workers, int worker_count, const struct pool *pool, char **text,
                   size_t *len)
{
    static const char empty[] = "# sluice metrics\n";
    (void)workers;
    (void)worker_count;
    (void)pool;
    *text = strdup(empty);
    if (!*text)
        return -ENOMEM;
    *len = sizeof(empty) - 1;
    return 0;
}
