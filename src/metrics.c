/* metrics.c - the Prometheus exposition of the counters; see metrics.h.
 *
 * The text format wants every line of a metric family together, so each
 * application's counters are summed over the workers once, into an array,
 * and the families are written from it. Histogram buckets are kept apart
 * by the workers (one store per observation) and added up here: each
 * bucket line is the sum of the buckets up to it, and +Inf, the sum of
 * them all, is the count by construction.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "pool.h"
#include "version.h"
#include "worker.h"
#include "text.h"

static const char *const failure_names[COUNTERS_FAIL_KINDS] = {
    [COUNTERS_FAIL_CONNECT] = "connect",
    [COUNTERS_FAIL_TIMEOUT] = "timeout",
    [COUNTERS_FAIL_RESET] = "reset",
    [COUNTERS_FAIL_5XX] = "5xx",
    [COUNTERS_FAIL_BAD_RESPONSE] = "bad_response",
};

const char *metrics_failure_name(enum counters_failure kind)
{
    return (unsigned)kind < COUNTERS_FAIL_KINDS ? failure_names[kind] : "unknown";
}

static uint64_t load(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

/* A label value: backslash, double quote and line feed are escaped, as the
 * text format requires; names come from the configuration and may hold
 * any of them. */
static void text_label(struct text *t, const char *value)
{
    for (const char *c = value; *c; c++) {
        if (!text_reserve(t, 3))
            return;
        if (*c == '\\' || *c == '"')
            t->data[t->len++] = '\\';
        if (*c == '\n') {
            t->data[t->len++] = '\\';
            t->data[t->len++] = 'n';
        } else {
            t->data[t->len++] = *c;
        }
    }
    t->data[t->len] = '\0';
}

/* `NAME{application="APP"` with the brace left open for more labels. */
static void text_app_series(struct text *t, const char *name, const char *app)
{
    text_printf(t, "%s{application=\"", name);
    text_label(t, app);
    text_printf(t, "\"");
}

static void text_family(struct text *t, const char *name, const char *type, const char *help)
{
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- sums over the workers ---- */

static void add_histogram(uint64_t buckets[COUNTERS_BUCKETS], uint64_t *sum_us,
                          const struct counters_histogram *h)
{
    for (int b = 0; b < COUNTERS_BUCKETS; b++)
        buckets[b] += load(&h->buckets[b]);
    *sum_us += load(&h->sum_us);
}

/* A worker's counters of pool's application i: by index when it counts for
 * that pool, by name when it has not adopted it yet (a reload under way). */
static const struct counters_app *worker_app(const struct counters_table *t, const struct pool *pool, int i)
{
    if (!t)
        return NULL;
    if (t->pool == pool && t->count == pool->count)
        return &t->apps[i];
    for (int j = 0; j < t->count; j++)
        if (strcmp(t->names[j], pool->apps[i].cfg->name) == 0)
            return &t->apps[j];
    return NULL;
}

static void add_app(struct metrics_app_totals *out, const struct counters_app *a)
{
    out->requests += load(&a->requests);
    for (int k = 0; k < COUNTERS_FAIL_KINDS; k++)
        out->failures[k] += load(&a->failures[k]);
    add_histogram(out->buckets, &out->sum_us, &a->response_time);
}

void metrics_app_totals(const struct worker *workers, int worker_count, const struct pool *pool, int index,
                        struct metrics_app_totals *out)
{
    *out = (struct metrics_app_totals){0};
    counters_read_begin();
    for (int w = 0; w < worker_count; w++) {
        const struct counters_table *t = atomic_load(&workers[w].proxy.counters.table);
        const struct counters_app *a = worker_app(t, pool, index);
        if (a)
            add_app(out, a);
    }
    counters_read_end();
}

struct totals {
    uint64_t requests[COUNTERS_CLASSES];
    uint64_t buckets[COUNTERS_BUCKETS];
    uint64_t sum_us;
    uint64_t bytes_in, bytes_out, accepted;
    int64_t open;
    uint64_t tls_handshake_failures;
};

static void sum_workers(const struct worker *workers, int worker_count, struct totals *t)
{
    *t = (struct totals){0};
    for (int w = 0; w < worker_count; w++) {
        const struct proxy_counters *c = &workers[w].proxy.counters;
        for (int k = 0; k < COUNTERS_CLASSES; k++)
            t->requests[k] += load(&c->requests[k]);
        add_histogram(t->buckets, &t->sum_us, &c->duration);
        t->bytes_in += load(&c->bytes_in);
        t->bytes_out += load(&c->bytes_out);
        t->accepted += load(&c->connections_accepted);
        t->open += atomic_load_explicit(&c->connections_open, memory_order_relaxed);
        t->tls_handshake_failures += load(&c->tls_handshake_failures);
    }
}

/* ---- the families ---- */

/* The bucket, _sum and _count lines of one histogram series, labelled
 * with the application's name unless app is NULL. */
static void write_histogram(struct text *t, const char *name, const char *app, const uint64_t *buckets,
                            uint64_t sum_us)
{
    uint64_t cumulative = 0;
    for (int b = 0; b < COUNTERS_BUCKETS; b++) {
        cumulative += buckets[b];
        char le[24];
        if (b < COUNTERS_BOUNDS)
            snprintf(le, sizeof(le), "%g", (double)counters_bound_us[b] / 1e6);
        else
            snprintf(le, sizeof(le), "+Inf");
        char series[128];
        snprintf(series, sizeof(series), "%s_bucket", name);
        if (app) {
            text_app_series(t, series, app);
            text_printf(t, ",le=\"%s\"} %" PRIu64 "\n", le, cumulative);
        } else {
            text_printf(t, "%s{le=\"%s\"} %" PRIu64 "\n", series, le, cumulative);
        }
    }
    const char *suffix[2] = {"_sum", "_count"};
    for (int i = 0; i < 2; i++) {
        if (app) {
            char series[128];
            snprintf(series, sizeof(series), "%s%s", name, suffix[i]);
            text_app_series(t, series, app);
            text_printf(t, "} ");
        } else {
            text_printf(t, "%s%s ", name, suffix[i]);
        }
        if (i == 0)
            text_printf(t, "%" PRIu64 ".%06" PRIu64 "\n", sum_us / 1000000, sum_us % 1000000);
        else
            text_printf(t, "%" PRIu64 "\n", cumulative);
    }
}

static void write_process(struct text *t, const struct totals *s)
{
    text_family(t, "sluice_build_info", "gauge", "The version of sluice running, as a label.");
    text_printf(t, "sluice_build_info{version=\"%s\"} 1\n", SLUICE_VERSION);

    text_family(t, "sluice_requests_total", "counter",
                "Requests answered (one per access log line), by status class of the answer.");
    for (int k = 0; k < COUNTERS_CLASSES; k++)
        text_printf(t, "sluice_requests_total{class=\"%dxx\"} %" PRIu64 "\n", k + 1, s->requests[k]);

    text_family(t, "sluice_request_duration_seconds", "histogram",
                "Time from a request's first byte to the end of its answer.");
    write_histogram(t, "sluice_request_duration_seconds", NULL, s->buckets, s->sum_us);

    text_family(t, "sluice_connections_open", "gauge", "Client connections open.");
    text_printf(t, "sluice_connections_open %" PRId64 "\n", s->open);
    text_family(t, "sluice_connections_accepted_total", "counter", "Client connections accepted.");
    text_printf(t, "sluice_connections_accepted_total %" PRIu64 "\n", s->accepted);
    text_family(t, "sluice_tls_handshake_failures_total", "counter",
                "HTTPS connections closed before their TLS handshake completed (refused, cut or too slow).");
    text_printf(t, "sluice_tls_handshake_failures_total %" PRIu64 "\n", s->tls_handshake_failures);
    text_family(t, "sluice_request_body_bytes_total", "counter", "Request body bytes received from clients.");
    text_printf(t, "sluice_request_body_bytes_total %" PRIu64 "\n", s->bytes_in);
    text_family(t, "sluice_response_body_bytes_total", "counter", "Response body bytes sent to clients.");
    text_printf(t, "sluice_response_body_bytes_total %" PRIu64 "\n", s->bytes_out);
}

static void write_states(struct text *t, const struct pool *pool)
{
    text_family(t, "sluice_application_state", "gauge",
                "1 for the state the application is in, 0 for the others.");
    for (int i = 0; i < pool->count; i++) {
        enum app_state now = app_state(&pool->apps[i]);
        for (int s = 0; s < APP_STATE_COUNT; s++) {
            text_app_series(t, "sluice_application_state", pool->apps[i].cfg->name);
            text_printf(t, ",state=\"%s\"} %d\n", app_state_name((enum app_state)s), s == (int)now);
        }
    }
    text_family(t, "sluice_application_transitions_total", "counter",
                "Changes of the application's state, by the state entered.");
    for (int i = 0; i < pool->count; i++)
        for (int s = 0; s < APP_STATE_COUNT; s++) {
            text_app_series(t, "sluice_application_transitions_total", pool->apps[i].cfg->name);
            text_printf(t, ",state=\"%s\"} %" PRIu64 "\n", app_state_name((enum app_state)s),
                        load(&pool->apps[i].transitions[s]));
        }
}

/* A family with one series per application; value writes its value (and
 * the line's end) from the application's shared state or totals. */
typedef void write_value_fn(struct text *t, const struct app *app, const struct metrics_app_totals *totals);

static void write_per_app(struct text *t, const char *name, const char *type, const char *help,
                          const struct pool *pool, const struct metrics_app_totals *apps, write_value_fn *value)
{
    text_family(t, name, type, help);
    for (int i = 0; i < pool->count; i++) {
        text_app_series(t, name, pool->apps[i].cfg->name);
        text_printf(t, "} ");
        value(t, &pool->apps[i], &apps[i]);
    }
}

static void value_check_duration(struct text *t, const struct app *app, const struct metrics_app_totals *totals)
{
    (void)totals;
    int64_t us = atomic_load_explicit(&app->last_check_duration_us, memory_order_relaxed);
    text_printf(t, "%" PRId64 ".%06" PRId64 "\n", us / 1000000, us % 1000000);
}

static void value_check_success(struct text *t, const struct app *app, const struct metrics_app_totals *totals)
{
    (void)totals;
    text_printf(t, "%d\n", atomic_load_explicit(&app->last_check_ok, memory_order_relaxed) != 0);
}

static void value_check_time(struct text *t, const struct app *app, const struct metrics_app_totals *totals)
{
    (void)totals;
    int64_t ms = atomic_load_explicit(&app->last_check_time_ms, memory_order_relaxed);
    text_printf(t, "%" PRId64 ".%03" PRId64 "\n", ms / 1000, ms % 1000);
}

static void value_requests(struct text *t, const struct app *app, const struct metrics_app_totals *totals)
{
    (void)app;
    text_printf(t, "%" PRIu64 "\n", totals->requests);
}

static void value_active(struct text *t, const struct app *app, const struct metrics_app_totals *totals)
{
    (void)totals;
    text_printf(t, "%" PRId64 "\n", atomic_load_explicit(&app->active, memory_order_relaxed));
}

static void write_checks(struct text *t, const struct pool *pool, const struct metrics_app_totals *apps)
{
    write_per_app(t, "sluice_application_check_duration_seconds", "gauge",
                  "How long the last active health check took (0: none yet).", pool, apps, value_check_duration);
    write_per_app(t, "sluice_application_check_success", "gauge",
                  "1 when the last active health check passed, 0 when it failed or none ran yet.", pool, apps,
                  value_check_success);
    write_per_app(t, "sluice_application_check_timestamp_seconds", "gauge",
                  "When the last active health check ended, seconds since the epoch (0: none yet).", pool, apps,
                  value_check_time);
}

static void write_traffic(struct text *t, const struct pool *pool, const struct metrics_app_totals *apps)
{
    write_per_app(t, "sluice_application_requests_total", "counter",
                  "Requests sent to the application, retries included.", pool, apps, value_requests);
    text_family(t, "sluice_application_failures_total", "counter",
                "Requests the application failed, by kind: connect, timeout, reset, 5xx, bad_response.");
    for (int i = 0; i < pool->count; i++)
        for (int k = 0; k < COUNTERS_FAIL_KINDS; k++) {
            text_app_series(t, "sluice_application_failures_total", pool->apps[i].cfg->name);
            text_printf(t, ",kind=\"%s\"} %" PRIu64 "\n", failure_names[k], apps[i].failures[k]);
        }
    write_per_app(t, "sluice_application_active_requests", "gauge", "Requests in flight at the application.", pool,
                  apps, value_active);
    text_family(t, "sluice_application_response_duration_seconds", "histogram",
                "Time from a request's first byte to the end of the application's answer.");
    for (int i = 0; i < pool->count; i++)
        write_histogram(t, "sluice_application_response_duration_seconds", pool->apps[i].cfg->name,
                        apps[i].buckets, apps[i].sum_us);
}

static void write_alerts(struct text *t)
{
    static const char *const targets[2] = {[ALERT_TARGET_WEBHOOK] = "webhook", [ALERT_TARGET_COMMAND] = "command"};
    text_family(t, "sluice_alert_deliveries_total", "counter",
                "Alerts to each target that ended delivered, or failed (retries spent, dropped, abandoned).");
    for (int target = 0; target < 2; target++)
        for (int delivered = 1; delivered >= 0; delivered--)
            text_printf(t, "sluice_alert_deliveries_total{target=\"%s\",result=\"%s\"} %" PRIu64 "\n",
                        targets[target], delivered ? "delivered" : "failed",
                        alert_deliveries((enum alert_target)target, delivered));
}

int metrics_render(const struct worker *workers, int worker_count, const struct pool *pool, char **text,
                   size_t *len)
{
    struct metrics_app_totals *apps = calloc((size_t)pool->count + 1, sizeof(*apps));
    if (!apps)
        return -ENOMEM;
    for (int i = 0; i < pool->count; i++)
        metrics_app_totals(workers, worker_count, pool, i, &apps[i]);
    struct totals totals;
    sum_workers(workers, worker_count, &totals);

    struct text t = {0};
    write_process(&t, &totals);
    write_states(&t, pool);
    write_traffic(&t, pool, apps);
    write_checks(&t, pool, apps);
    write_alerts(&t);
    free(apps);
    if (!(*text = text_take(&t)))
        return -ENOMEM;
    *len = t.len;
    return 0;
}
