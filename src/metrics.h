/* metrics.h - what sluice counts, in the Prometheus text format.
 *
 * The workers count on their own (counters.h); a scrape reads every
 * worker's counters with relaxed atomic loads and adds them up, and reads
 * the pool's shared state (states, requests in flight, transitions, the
 * last checks) the same way. Nothing is locked, so a scrape never holds up
 * a request; it runs on the thread that serves it, off the request path.
 * docs/metrics.md lists every metric.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "counters.h"

struct worker;
struct pool;

/* Writes the Prometheus text exposition (format 0.0.4) of what sluice
 * counts into a malloc'd, NUL-terminated string (*text, the caller frees;
 * *len its length). Per-worker counters are read with relaxed atomic loads
 * and summed; nothing is locked. Returns 0 or -ENOMEM.
 *
 * pool (its applications' names and shared state) must stay valid for the
 * call: the caller holds the generation it renders. The workers' counter
 * tables need nothing from the caller: a worker frees a table it replaced
 * only when no scrape is under way (counters.h). */
int metrics_render(const struct worker *workers, int worker_count, const struct pool *pool, char **text,
                   size_t *len);

/* One application's request counters over every worker: for the admin
 * API's view of an application. */
struct metrics_app_totals {
    uint64_t requests;
    uint64_t failures[COUNTERS_FAIL_KINDS];
    uint64_t buckets[COUNTERS_BUCKETS];   /* not cumulative */
    uint64_t sum_us;
};

void metrics_app_totals(const struct worker *workers, int worker_count, const struct pool *pool, int index,
                        struct metrics_app_totals *out);

/* The label value of each enum counters_failure: "connect", "timeout",
 * "reset", "5xx", "bad_response". */
const char *metrics_failure_name(enum counters_failure kind);

#endif
