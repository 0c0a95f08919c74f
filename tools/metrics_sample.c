/* metrics_sample - prints what a scrape of sluice's metrics returns, for a
 * configuration file and made-up traffic, without running sluice: the
 * integration tests hand it to `promtool check metrics`.
 *
 *   build/metrics_sample applications.toml [workers]
 *
 * Each of the (default two) workers gets counters of its own; applications
 * get every state in turn and a check result, so that every family has
 * values to show.
 */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "metrics.h"
#include "pool.h"
#include "worker.h"

static void fill_worker(struct proxy_counters *c, const struct pool *pool, int w)
{
    for (int k = 0; k < COUNTERS_CLASSES; k++)
        counters_add(&c->requests[k], (uint64_t)(10 * (k + 1) + w));
    for (int64_t us = 500; us < 20000000; us = us * 3 + w)
        counters_observe(&c->duration, us);
    counters_add(&c->bytes_in, 1000u + (uint64_t)w);
    counters_add(&c->bytes_out, 50000u + (uint64_t)w);
    counters_add(&c->connections_accepted, 7);
    atomic_store(&c->connections_open, 3);
    struct counters_table *t = atomic_load(&c->table);
    for (int i = 0; i < pool->count; i++) {
        struct counters_app *a = &t->apps[i];
        counters_add(&a->requests, (uint64_t)(100 + i + w));
        for (int k = 0; k < COUNTERS_FAIL_KINDS; k++)
            counters_add(&a->failures[k], (uint64_t)(k + i));
        counters_observe(&a->response_time, 1500 * (i + 1));
        counters_observe(&a->response_time, 300000);
    }
}

static void fill_pool(struct pool *pool)
{
    for (int i = 0; i < pool->count; i++) {
        struct app *app = &pool->apps[i];
        atomic_store(&app->state, (uint32_t)(i % APP_STATE_COUNT));
        atomic_store(&app->transitions[i % APP_STATE_COUNT], 1);
        atomic_store(&app->active, i);
        atomic_store(&app->last_check_time_ms, 1700000000123 + i);
        atomic_store(&app->last_check_duration_us, 1234 + i);
        atomic_store(&app->last_check_ok, i % 2);
    }
}

int main(int argc, char **argv)
{
    static char errors[16384];
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s CONFIG [WORKERS]\n", argv[0]);
        return 2;
    }
    int count = argc == 3 ? atoi(argv[2]) : 2;
    struct config cfg;
    struct pool pool;
    if (config_load(&cfg, argv[1], errors, sizeof(errors)) != 0) {
        fputs(errors, stderr);
        return 1;
    }
    struct worker *workers = calloc(count > 0 ? (size_t)count : 1, sizeof(*workers));
    if (count < 1 || !workers || pool_init(&pool, &cfg) < 0) {
        fprintf(stderr, "metrics_sample: cannot set up %d workers\n", count);
        return 1;
    }
    fill_pool(&pool);
    for (int w = 0; w < count; w++) {
        struct proxy_counters *c = &workers[w].proxy.counters;
        struct counters_table *t = counters_table_for(c, &pool);
        if (!t)
            return 1;
        counters_install(c, t);
        fill_worker(c, &pool, w);
    }
    char *text;
    size_t len;
    if (metrics_render(workers, count, &pool, &text, &len) < 0)
        return 1;
    fwrite(text, 1, len, stdout);
    free(text);
    for (int w = 0; w < count; w++)
        counters_free(&workers[w].proxy.counters);
    free(workers);
    pool_free(&pool);
    config_free(&cfg);
    return 0;
}
