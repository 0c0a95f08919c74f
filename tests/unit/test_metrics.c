/* test_metrics.c - the exposition of the workers' counters: sums over
 * workers, cumulative histograms whose +Inf is the count, escaped label
 * values, a line for every state, and counters that survive a reload by
 * application name, and what a running worker counts for a keep-alive
 * client's requests (successes, 5xx, connections refused). */
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alert.h"
#include "config.h"
#include "counters.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "unit.h"
#include "unit_net.h"
#include "worker.h"

#define WORKERS 2

static int parse(struct config *cfg, const char *text)
{
    char errors[2048] = "";
    int rc = config_parse(cfg, "test.toml", text, strlen(text), errors, sizeof(errors));
    CHECK_MSG(rc == 0, "config: %s", errors);
    return rc;
}

#define TWO_APPS                                                                  \
    "[[applications]]\nname = \"a\"\nip = \"127.0.0.1\"\nport = 1\n"               \
    "[[applications]]\nname = \"b\"\nip = \"127.0.0.1\"\nport = 2\n"

struct fixture {
    struct config cfg;
    struct pool pool;
    struct worker *workers;
    char *text;
};

static int fixture_init(struct fixture *f, const char *config)
{
    memset(f, 0, sizeof(*f));
    if (parse(&f->cfg, config) != 0)
        return -1;
    CHECK_INT(pool_init(&f->pool, &f->cfg), 0);
    f->workers = calloc(WORKERS, sizeof(*f->workers));
    for (int w = 0; w < WORKERS; w++) {
        struct proxy_counters *c = &f->workers[w].proxy.counters;
        counters_install(c, counters_table_for(c, &f->pool));
    }
    return 0;
}

static void fixture_free(struct fixture *f)
{
    for (int w = 0; w < WORKERS; w++)
        counters_free(&f->workers[w].proxy.counters);
    free(f->workers);
    free(f->text);
    pool_free(&f->pool);
    config_free(&f->cfg);
}

static struct counters_app *app_of(struct fixture *f, int w, int i)
{
    return counters_app(&f->workers[w].proxy.counters, &f->pool.apps[i]);
}

static const char *render(struct fixture *f)
{
    size_t len = 0;
    free(f->text);
    f->text = NULL;
    CHECK_INT(metrics_render(f->workers, WORKERS, &f->pool, &f->text, &len), 0);
    CHECK_INT(len, f->text ? strlen(f->text) : 0);
    return f->text ? f->text : "";
}

/* The value of the line that starts with series and a space; -1 if none. */
static long long value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return atoll(line + n + 1);
    return -1;
}

static void test_sums_over_workers(void)
{
    struct fixture f;
    if (fixture_init(&f, TWO_APPS) < 0)
        return;
    for (int w = 0; w < WORKERS; w++) {
        struct proxy_counters *c = &f.workers[w].proxy.counters;
        counters_add(&c->requests[1], 10 + (uint64_t)w);     /* 2xx */
        counters_add(&c->requests[4], 3);                    /* 5xx */
        counters_add(&c->bytes_in, 100);
        counters_add(&c->bytes_out, 1000 * (uint64_t)(w + 1));
        atomic_store(&c->connections_open, 2 + w);
        counters_add(&app_of(&f, w, 1)->requests, 7);
        counters_add(&app_of(&f, w, 1)->failures[COUNTERS_FAIL_TIMEOUT], 1);
        counters_add(&app_of(&f, w, 0)->failures[COUNTERS_FAIL_5XX], 2);
    }
    atomic_store(&f.pool.apps[0].active, 4);
    atomic_store(&f.pool.apps[1].transitions[APP_DOWN], 3);
    const char *t = render(&f);
    CHECK_INT(value_of(t, "sluice_requests_total{class=\"2xx\"}"), 21);
    CHECK_INT(value_of(t, "sluice_requests_total{class=\"5xx\"}"), 6);
    CHECK_INT(value_of(t, "sluice_requests_total{class=\"1xx\"}"), 0);
    CHECK_INT(value_of(t, "sluice_request_body_bytes_total"), 200);
    CHECK_INT(value_of(t, "sluice_response_body_bytes_total"), 3000);
    CHECK_INT(value_of(t, "sluice_connections_open"), 5);
    CHECK_INT(value_of(t, "sluice_application_requests_total{application=\"a\"}"), 0);
    CHECK_INT(value_of(t, "sluice_application_requests_total{application=\"b\"}"), 14);
    CHECK_INT(value_of(t, "sluice_application_failures_total{application=\"b\",kind=\"timeout\"}"), 2);
    CHECK_INT(value_of(t, "sluice_application_failures_total{application=\"a\",kind=\"5xx\"}"), 4);
    CHECK_INT(value_of(t, "sluice_application_failures_total{application=\"a\",kind=\"reset\"}"), 0);
    CHECK_INT(value_of(t, "sluice_application_active_requests{application=\"a\"}"), 4);
    CHECK_INT(value_of(t, "sluice_application_transitions_total{application=\"b\",state=\"down\"}"), 3);
    CHECK_INT(value_of(t, "sluice_build_info{version=\"" "0.1.0" "\"}"), 1);
    CHECK(strstr(t, "# TYPE sluice_application_failures_total counter\n") != NULL);
    CHECK_INT(value_of(t, "sluice_alert_deliveries_total{target=\"webhook\",result=\"failed\"}"),
              alert_deliveries(ALERT_TARGET_WEBHOOK, false));
    CHECK_INT(value_of(t, "sluice_alert_deliveries_total{target=\"command\",result=\"delivered\"}"),
              alert_deliveries(ALERT_TARGET_COMMAND, true));
    fixture_free(&f);
}

/* Bucket lines of one histogram series in order, cumulative, +Inf last and
 * equal to _count. */
static void check_histogram(const char *text, const char *name, const char *labels, long long count,
                            const long long *expected)
{
    char series[256];
    long long previous = 0;
    for (int b = 0; b <= COUNTERS_BOUNDS; b++) {
        char le[24];
        if (b < COUNTERS_BOUNDS)
            snprintf(le, sizeof(le), "%g", (double)counters_bound_us[b] / 1e6);
        else
            snprintf(le, sizeof(le), "+Inf");
        snprintf(series, sizeof(series), "%s_bucket{%s%sle=\"%s\"}", name, labels, *labels ? "," : "", le);
        long long v = value_of(text, series);
        CHECK_MSG(v >= previous, "%s: %lld after %lld", series, v, previous);
        if (expected)
            CHECK_MSG(v == expected[b], "%s: %lld, expected %lld", series, v, expected[b]);
        previous = v;
    }
    CHECK_INT(previous, count);
    snprintf(series, sizeof(series), "%s_count%s%s%s", name, *labels ? "{" : "", labels, *labels ? "}" : "");
    CHECK_INT(value_of(text, series), count);
}

static void test_histograms(void)
{
    struct fixture f;
    if (fixture_init(&f, TWO_APPS) < 0)
        return;
    /* 1 ms is in the 1 ms bucket (le is inclusive); 20 s only in +Inf. */
    static const int64_t w0[] = {200, 1000, 1001, 30000, 20000000};
    static const int64_t w1[] = {999, 7000000, 10000000};
    for (size_t i = 0; i < sizeof(w0) / sizeof(w0[0]); i++)
        counters_observe(&f.workers[0].proxy.counters.duration, w0[i]);
    for (size_t i = 0; i < sizeof(w1) / sizeof(w1[0]); i++) {
        counters_observe(&f.workers[1].proxy.counters.duration, w1[i]);
        counters_observe(&app_of(&f, 1, 0)->response_time, w1[i]);
    }
    counters_observe(&app_of(&f, 0, 0)->response_time, 50000);
    const char *t = render(&f);
    /* bounds: 1, 2.5, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10 s */
    static const long long all[] = {3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 7, 8};
    check_histogram(t, "sluice_request_duration_seconds", "", 8, all);
    static const long long a[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 4, 4};
    check_histogram(t, "sluice_application_response_duration_seconds", "application=\"a\"", 4, a);
    check_histogram(t, "sluice_application_response_duration_seconds", "application=\"b\"", 0, NULL);
    CHECK(strstr(t, "sluice_request_duration_seconds_sum 37.033200\n") != NULL);
    CHECK(strstr(t, "sluice_application_response_duration_seconds_sum{application=\"a\"} 17.050999\n") != NULL);
    fixture_free(&f);
}

/* Configured names cannot hold these, but nothing in the exposition may
 * rely on it: a label value is always escaped. */
static void test_label_escaping(void)
{
    struct fixture f;
    if (fixture_init(&f, TWO_APPS) < 0)
        return;
    snprintf(f.cfg.apps[0].name, CONFIG_NAME_MAX, "we\"ird\\na\nme");
    counters_add(&app_of(&f, 0, 0)->requests, 5);
    const char *t = render(&f);
    CHECK_INT(value_of(t, "sluice_application_requests_total{application=\"we\\\"ird\\\\na\\nme\"}"), 5);
    CHECK(strstr(t, "sluice_application_state{application=\"we\\\"ird\\\\na\\nme\",state=\"up\"} 1\n") != NULL);
    CHECK(strstr(t, "ird\\na\nme") == NULL);   /* no raw line feed inside a label */
    fixture_free(&f);
}

static void test_every_state(void)
{
    struct fixture f;
    if (fixture_init(&f, TWO_APPS) < 0)
        return;
    for (int s = 0; s < APP_STATE_COUNT; s++) {
        atomic_store(&f.pool.apps[1].state, (uint32_t)s);
        const char *t = render(&f);
        for (int i = 0; i < 2; i++) {
            int ones = 0;
            for (int q = 0; q < APP_STATE_COUNT; q++) {
                char series[160];
                snprintf(series, sizeof(series), "sluice_application_state{application=\"%s\",state=\"%s\"}",
                         i ? "b" : "a", app_state_name((enum app_state)q));
                long long v = value_of(t, series);
                CHECK_MSG(v == 0 || v == 1, "%s: %lld", series, v);
                ones += v == 1;
                if (i == 1)
                    CHECK_INT(v, q == s);
            }
            CHECK_INT(ones, 1);
        }
    }
    fixture_free(&f);
}

/* A reload: worker 0 adopts a pool where b is gone, a moved and c is new;
 * worker 1 has not adopted it yet, and is read by name. */
static void test_reload_keeps_counts_by_name(void)
{
    struct fixture f;
    if (fixture_init(&f, TWO_APPS) < 0)
        return;
    for (int w = 0; w < WORKERS; w++) {
        counters_add(&app_of(&f, w, 0)->requests, 10);
        counters_add(&app_of(&f, w, 1)->requests, 20);
    }
    struct config next_cfg;
    struct pool next;
    if (parse(&next_cfg, "[[applications]]\nname = \"c\"\nip = \"127.0.0.1\"\nport = 3\n"
                         "[[applications]]\nname = \"a\"\nip = \"127.0.0.1\"\nport = 1\n") != 0)
        return;
    CHECK_INT(pool_init(&next, &next_cfg), 0);
    struct proxy_counters *c0 = &f.workers[0].proxy.counters;
    const struct app *old_a = &f.pool.apps[0];

    counters_read_begin();   /* a scrape under way keeps the old table */
    counters_install(c0, counters_table_for(c0, &next));
    CHECK(c0->retired != NULL);
    counters_read_end();
    CHECK(counters_app(c0, old_a) == NULL);   /* a request from before the reload */
    CHECK(counters_app(c0, &next.apps[1]) != NULL);
    counters_add(&counters_app(c0, &next.apps[1])->requests, 1);

    size_t len;
    char *t = NULL;
    CHECK_INT(metrics_render(f.workers, WORKERS, &next, &t, &len), 0);
    CHECK_INT(value_of(t, "sluice_application_requests_total{application=\"a\"}"), 21);
    CHECK_INT(value_of(t, "sluice_application_requests_total{application=\"c\"}"), 0);
    CHECK_INT(value_of(t, "sluice_application_requests_total{application=\"b\"}"), -1);
    free(t);

    /* The next adopt with no scrape frees what was retired. */
    counters_install(c0, counters_table_for(c0, &next));
    CHECK(c0->retired == NULL);
    CHECK_INT(atomic_load(&counters_app(c0, &next.apps[1])->requests), 11);
    fixture_free(&f);
    pool_free(&next);
    config_free(&next_cfg);
}

/* ---- live traffic through a real worker ---- */

/* An application: every request on a connection answered "hello", or 503
 * for /fail; a thread per connection, so health checks are answered while
 * sluice holds a keep-alive connection. */
static void *serve_connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        char *end;
        while ((end = strstr(buf, "\r\n\r\n"))) {
            bool fail = strncmp(buf, "GET /fail", 9) == 0;
            const char *answer = fail ? "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
                                      : "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
            if (write(fd, answer, strlen(answer)) < 0)
                break;
            size_t used = (size_t)(end + 4 - buf);
            memmove(buf, end + 4, have - used + 1);
            have -= used;
        }
    }
    close(fd);
    return NULL;
}

static void *serve_application(void *arg)
{
    int listener = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            return NULL;   /* the listener was shut down */
        pthread_t t;
        if (pthread_create(&t, NULL, serve_connection, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
}

/* Sends one request on fd and reads its answer's status and body length. */
static int exchange_once(int fd, const char *path, int *body_len)
{
    char request[128], answer[1024];
    snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    if (write(fd, request, strlen(request)) < 0)
        return -1;
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, answer + have, sizeof(answer) - 1 - have);
        if (n <= 0)
            return -1;
        have += (size_t)n;
        answer[have] = '\0';
        char *end = strstr(answer, "\r\n\r\n"), *cl = strcasestr(answer, "Content-Length: ");
        if (end && cl && (size_t)(end + 4 - answer) + (size_t)atoi(cl + 16) <= have) {
            *body_len = atoi(cl + 16);
            return atoi(answer + 9);
        }
    }
}

static int connect_local(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Renders until series has value want (the worker counts just after the
 * answer's last write, so a scrape may come a little early), for 2 s. */
static long long wait_value(struct worker *w, struct pool *pool, const char *series, long long want)
{
    long long v = -1;
    for (int i = 0; i < 200; i++) {
        char *t = NULL;
        size_t len;
        if (metrics_render(w, 1, pool, &t, &len) == 0)
            v = value_of(t, series);
        free(t);
        if (v == want)
            break;
        usleep(10000);
    }
    return v;
}

#define LIVE_REQUESTS 20

/* Application a answers, b refuses connections: what a scrape of a
 * running worker says about a keep-alive client's requests. */
static void test_counted_on_live_traffic(void)
{
    struct config_address app_address, refused, listen_address;
    int app = unit_listen_local(&app_address), gone = unit_listen_local(&refused);
    int probe = unit_listen_local(&listen_address);
    if (app < 0 || gone < 0 || probe < 0)
        return;
    close(gone);    /* nothing listens there any more: connections are refused */
    close(probe);   /* sluice listens there */
    fcntl(app, F_SETFL, 0);
    pthread_t server;
    CHECK_INT(pthread_create(&server, NULL, serve_application, (void *)(intptr_t)app), 0);

    char text[1024];
    /* b stays up: no passive detection, and checks too rare to run. No
     * access log: the case where the end of a request reads the clock for
     * the counters alone. */
    snprintf(text, sizeof(text),
             "[server]\nlisten = \"%s\"\nworkers = 1\n[admin]\nlisten = \"\"\n"
             "[health]\ninterval = \"60s\"\n[passive]\nfailures = 0\n"
             "[log]\naccess = \"off\"\nlevel = \"error\"\n"
             "[[applications]]\nname = \"a\"\nip = \"127.0.0.1\"\nport = %s\n"
             "[[applications]]\nname = \"b\"\nip = \"127.0.0.1\"\nport = %s\n",
             listen_address.text, strchr(app_address.text, ':') + 1, strchr(refused.text, ':') + 1);
    struct generation *g = calloc(1, sizeof(*g));
    struct generation *_Atomic published = g;
    _Atomic bool stop = false;
    struct worker w;
    char error[128];
    if (parse(&g->cfg, text) != 0)
        return;
    CHECK_INT(pool_init(&g->pool, &g->cfg), 0);
    CHECK_INT(log_init(&g->cfg), 0);
    atomic_init(&g->holders, 1);
    CHECK_INT(worker_init(&w, 0, 1, &published, &stop, error, sizeof(error)), 0);
    w.client_limit = 16;   /* main.c's share of max_connections */
    CHECK_INT(worker_start(&w), 0);
    w.thread_started = true;

    int fd = connect_local((int)ntohs(((struct sockaddr_in *)&listen_address.addr)->sin_port));
    int ok = 0, failed = 0, body = 0, bytes = 0;
    for (int i = 0; fd >= 0 && i < LIVE_REQUESTS; i++) {
        int status = exchange_once(fd, i % 5 == 4 ? "/fail" : "/", &body);
        ok += status == 200;
        failed += status == 503;
        bytes += body;
    }
    CHECK_INT(ok, LIVE_REQUESTS * 4 / 5);
    CHECK_INT(failed, LIVE_REQUESTS / 5);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_requests_total{class=\"2xx\"}", ok), ok);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_requests_total{class=\"5xx\"}", failed), failed);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_request_duration_seconds_count", LIVE_REQUESTS), LIVE_REQUESTS);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_application_response_duration_seconds_count{application=\"a\"}",
                         LIVE_REQUESTS), LIVE_REQUESTS);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_application_requests_total{application=\"a\"}", LIVE_REQUESTS),
              LIVE_REQUESTS);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_application_failures_total{application=\"a\",kind=\"5xx\"}",
                         failed), failed);
    /* Round robin offers b first to most requests: each attempt there is
     * sent, refused, counted as such, and retried at a. */
    long long refusals = wait_value(&w, &g->pool,
                                    "sluice_application_failures_total{application=\"b\",kind=\"connect\"}",
                                    LIVE_REQUESTS - 1);
    CHECK_MSG(refusals >= LIVE_REQUESTS / 2 && refusals <= LIVE_REQUESTS, "%lld refusals", refusals);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_application_requests_total{application=\"b\"}", refusals),
              refusals);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_connections_open", 1), 1);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_connections_accepted_total", 1), 1);
    if (fd >= 0)
        close(fd);
    /* Bytes are counted when the connection's exchange is let go. */
    CHECK_INT(wait_value(&w, &g->pool, "sluice_response_body_bytes_total", bytes), bytes);
    CHECK_INT(wait_value(&w, &g->pool, "sluice_connections_open", 0), 0);

    atomic_store(&stop, true);
    worker_wake(&w);
    worker_join(&w);
    worker_free(&w);
    shutdown(app, SHUT_RDWR);
    pthread_join(server, NULL);
    close(app);
    pool_free(&g->pool);
    config_free(&g->cfg);
    free(g);
    struct config defaults;
    config_defaults(&defaults);   /* the other suites' logging back */
    log_init(&defaults);
    config_free(&defaults);
}

void unit_test_metrics(void)
{
    test_sums_over_workers();
    test_histograms();
    test_label_escaping();
    test_every_state();
    test_reload_keeps_counts_by_name();
    test_counted_on_live_traffic();
}
