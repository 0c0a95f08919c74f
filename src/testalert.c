/* testalert.c - `sluice --test-alert` (testalert.h).
 *
 * The dispatcher is the one a running sluice uses (alert.c), started on a
 * pool built from the file and never checked, so that what the test proves
 * is what an outage would do: the same formats, headers, TLS and command.
 * Nothing is listened on and no application changes state.
 */
#include "testalert.h"

#include <string.h>
#include <time.h>

#include "alert.h"
#include "loop.h"
#include "pool.h"

#define TEST_ALERT_POLL_MS 20

static void print_results(struct alert_test *t, FILE *out, int wait_ms)
{
    for (int i = 0; i < t->count; i++) {
        const struct alert_test_result *r = &t->results[i];
        bool settled = atomic_load_explicit(&r->settled, memory_order_acquire);
        if (settled && r->delivered)
            fprintf(out, "%s: delivered\n", r->target);
        else if (settled)
            fprintf(out, "%s: not delivered: %s\n", r->target, r->why);
        else
            fprintf(out, "%s: not delivered: no outcome within %d s\n", r->target, wait_ms / 1000);
    }
}

int test_alert_run(const struct config *cfg, FILE *out, int wait_ms)
{
    struct pool pool;
    struct alert *a = NULL;
    int rc = pool_init(&pool, cfg);
    if (rc < 0) {
        fprintf(out, "cannot set up the applications: %s\n", strerror(-rc));
        return 1;
    }
    if ((rc = alert_start(&a, &pool, cfg)) < 0) {
        fprintf(out, "cannot start the alert dispatcher: %s\n", strerror(-rc));
        pool_free(&pool);
        return 1;
    }
    struct alert_test *t = alert_test_start(a);
    int failed = 1;
    if (t) {
        int64_t deadline = loop_monotonic_ms() + wait_ms;
        const struct timespec poll = {.tv_nsec = TEST_ALERT_POLL_MS * 1000000L};
        while (!alert_test_done(t) && loop_monotonic_ms() < deadline)
            nanosleep(&poll, NULL);
        if (t->count == 0)
            fprintf(out, "no alert target is configured ([alerts] webhook, webhooks, command)\n");
        print_results(t, out, wait_ms);
        failed = alert_test_failed(t) > 0 || t->count == 0;
        alert_test_release(t);
    }
    alert_stop(a, 0);
    pool_free(&pool);
    return failed;
}
