/* test_health.c - the health state machine, the check schedule, passive
 * detection's hand-over to the checks, and the health thread end to end
 * against a tiny backend thread. */
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "health.h"
#include "loop.h"
#include "pool.h"
#include "unit.h"
#include "unit_net.h"

/* ---- the state machine ---- */

static enum health_verdict feed(struct health_counter *c, enum app_state state, const char *results,
                                int rise, int fall)
{
    enum health_verdict v = HEALTH_KEEP;
    for (const char *p = results; *p; p++) {
        v = health_record(c, state, *p == '+', rise, fall);
        if (v != HEALTH_KEEP && p[1]) {
            fprintf(stderr, "FAIL %s:%d: verdict before the end of \"%s\"\n", __FILE__, __LINE__, results);
            unit_failed++;
        }
    }
    return v;
}

static void test_fall_and_rise(void)
{
    struct health_counter c;
    health_counter_reset(&c, APP_UP);
    CHECK_INT(feed(&c, APP_UP, "--", 2, 3), HEALTH_KEEP);
    CHECK_INT(c.failures, 2);
    CHECK_INT(feed(&c, APP_UP, "-", 2, 3), HEALTH_MARK_DOWN);

    /* a pass in between starts the count again */
    health_counter_reset(&c, APP_UP);
    CHECK_INT(feed(&c, APP_UP, "--+--", 2, 3), HEALTH_KEEP);
    CHECK_INT(feed(&c, APP_UP, "-", 2, 3), HEALTH_MARK_DOWN);

    health_counter_reset(&c, APP_DOWN);
    CHECK_INT(feed(&c, APP_DOWN, "+", 2, 3), HEALTH_KEEP);
    CHECK_INT(feed(&c, APP_DOWN, "+", 2, 3), HEALTH_MARK_UP);

    health_counter_reset(&c, APP_DOWN);
    CHECK_INT(feed(&c, APP_DOWN, "+-+-+", 2, 3), HEALTH_KEEP);
    CHECK_INT(feed(&c, APP_DOWN, "+", 2, 3), HEALTH_MARK_UP);

    /* passes while up and failures while down change nothing */
    health_counter_reset(&c, APP_UP);
    CHECK_INT(feed(&c, APP_UP, "++++++++", 2, 3), HEALTH_KEEP);
    health_counter_reset(&c, APP_DOWN);
    CHECK_INT(feed(&c, APP_DOWN, "--------", 2, 3), HEALTH_KEEP);

    /* rise = fall = 1: one result decides */
    health_counter_reset(&c, APP_UP);
    CHECK_INT(feed(&c, APP_UP, "-", 1, 1), HEALTH_MARK_DOWN);
    health_counter_reset(&c, APP_DOWN);
    CHECK_INT(feed(&c, APP_DOWN, "+", 1, 1), HEALTH_MARK_UP);
    /* nonsense limits read as 1 rather than "change on no evidence" */
    health_counter_reset(&c, APP_DOWN);
    CHECK_INT(feed(&c, APP_DOWN, "+", 0, 0), HEALTH_MARK_UP);
}

static void test_external_change_resets(void)
{
    struct health_counter c;
    /* two failures counted while up; then a worker marks it down */
    health_counter_reset(&c, APP_UP);
    CHECK_INT(feed(&c, APP_UP, "--", 2, 3), HEALTH_KEEP);
    /* rise fresh passes are needed, the old failures are forgotten */
    CHECK_INT(health_record(&c, APP_DOWN, true, 2, 3), HEALTH_KEEP);
    CHECK_INT(c.seen, APP_DOWN);
    CHECK_INT(c.passes, 1);
    CHECK_INT(c.failures, 0);
    CHECK_INT(health_record(&c, APP_DOWN, true, 2, 3), HEALTH_MARK_UP);

    /* one pass counted while down; then the admin enables it (up) */
    health_counter_reset(&c, APP_DOWN);
    CHECK_INT(feed(&c, APP_DOWN, "+", 3, 3), HEALTH_KEEP);
    CHECK_INT(health_record(&c, APP_UP, false, 3, 3), HEALTH_KEEP);
    CHECK_INT(c.failures, 1);
    CHECK_INT(c.passes, 0);
}

static void test_operator_states_are_immune(void)
{
    struct health_counter c;
    health_counter_reset(&c, APP_MAINTENANCE);
    CHECK_INT(feed(&c, APP_MAINTENANCE, "----------", 2, 3), HEALTH_KEEP);
    CHECK_INT(feed(&c, APP_MAINTENANCE, "++++++++++", 2, 3), HEALTH_KEEP);
    CHECK_INT(c.passes + c.failures, 0);

    health_counter_reset(&c, APP_DRAINING);
    CHECK_INT(feed(&c, APP_DRAINING, "----------", 2, 3), HEALTH_KEEP);
    CHECK_INT(c.failures, 10);
    CHECK_INT(feed(&c, APP_DRAINING, "++++++++++", 2, 3), HEALTH_KEEP);

    /* counts from before maintenance do not survive it */
    health_counter_reset(&c, APP_UP);
    CHECK_INT(feed(&c, APP_UP, "--", 2, 3), HEALTH_KEEP);
    CHECK_INT(health_record(&c, APP_MAINTENANCE, false, 2, 3), HEALTH_KEEP);
    CHECK_INT(feed(&c, APP_UP, "--", 2, 3), HEALTH_KEEP);
    CHECK_INT(feed(&c, APP_UP, "-", 2, 3), HEALTH_MARK_DOWN);
}

/* ---- the schedule ---- */

static void test_schedule(void)
{
    bool low = false, high = false, wide_first = false;
    uint32_t r = 12345;
    for (int i = 0; i < 10000; i++) {
        r = r * 1664525u + 1013904223u;
        int64_t first = health_first_delay(1000, r);
        int64_t next = health_next_delay(1000, r);
        if (first < 0 || first >= 1000 || next < 900 || next > 1100) {
            CHECK_MSG(false, "first %lld next %lld", (long long)first, (long long)next);
            break;
        }
        low |= next < 920;
        high |= next > 1080;
        wide_first |= first > 900;
    }
    CHECK(low && high && wide_first);
    CHECK_INT(health_next_delay(5, 77), 5);     /* below 10 ms: no room to jitter */
    CHECK_INT(health_first_delay(0, 77), 0);
    CHECK(health_next_delay(0, 77) >= 1);
}

/* A streak is under way from its first result until the state changes or
 * the streak breaks. */
static void test_transition(void)
{
    struct health_counter c;
    health_counter_reset(&c, APP_DOWN);
    CHECK(!health_in_transition(&c, APP_DOWN));
    health_record(&c, APP_DOWN, true, 3, 3);
    CHECK(health_in_transition(&c, APP_DOWN));
    health_record(&c, APP_DOWN, true, 3, 3);
    CHECK(health_in_transition(&c, APP_DOWN));
    health_record(&c, APP_DOWN, false, 3, 3);          /* broken */
    CHECK(!health_in_transition(&c, APP_DOWN));
    CHECK(!health_in_transition(&c, APP_UP));

    health_counter_reset(&c, APP_UP);
    health_record(&c, APP_UP, true, 3, 3);
    CHECK(!health_in_transition(&c, APP_UP));
    health_record(&c, APP_UP, false, 3, 3);
    CHECK(health_in_transition(&c, APP_UP));
    CHECK(!health_in_transition(&c, APP_DOWN));         /* someone else moved it */
    health_record(&c, APP_UP, true, 3, 3);
    CHECK(!health_in_transition(&c, APP_UP));

    /* operator states never hurry */
    health_counter_reset(&c, APP_DRAINING);
    health_record(&c, APP_DRAINING, false, 3, 3);
    CHECK(!health_in_transition(&c, APP_DRAINING));
}

/* ---- config and pool for the tests below ---- */

static int parse_config(struct config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int parse_config(struct config *cfg, const char *fmt, ...)
{
    char text[4096], errors[2048] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    int rc = config_parse(cfg, "test.toml", text, strlen(text), errors, sizeof(errors));
    CHECK_MSG(rc == 0, "config: %s", errors);
    return rc;
}

/* Transitions in the pool's pipe, read without blocking. */
static int drain_transitions(struct pool *pool, struct pool_transition *out, int max)
{
    int n = 0;
    while (n < max && read(pool->notify_read_fd, &out[n], sizeof(out[n])) == (ssize_t)sizeof(out[n]))
        n++;
    return n;
}

/* ---- the health thread end to end ---- */

#define BACKEND_TIMES 32

/* A backend on its own thread answering every request with `status`, or
 * request n with script[n] while the script lasts. */
struct backend {
    int listener;
    pthread_t thread;
    _Atomic int status;
    _Atomic int requests;
    _Atomic bool stop;
    const int *script;
    int script_len;
    int64_t times[BACKEND_TIMES];      /* when request n came; read after the join */
    char last_request[512];            /* guarded by lock */
    pthread_mutex_t lock;
};

static void backend_answer(struct backend *b, int conn)
{
    char request[512];
    size_t got = 0;
    struct pollfd p = {.fd = conn, .events = POLLIN};
    while (got < sizeof(request) - 1 && poll(&p, 1, 500) == 1) {
        ssize_t n = read(conn, request + got, sizeof(request) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        request[got] = '\0';
        if (strstr(request, "\r\n\r\n"))
            break;
    }
    request[got] = '\0';
    pthread_mutex_lock(&b->lock);
    snprintf(b->last_request, sizeof(b->last_request), "%s", request);
    pthread_mutex_unlock(&b->lock);
    int index = atomic_load(&b->requests);
    int status = index < b->script_len ? b->script[index] : atomic_load(&b->status);
    char response[128];
    int n = snprintf(response, sizeof(response), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", status);
    if (write(conn, response, (size_t)n) < 0)
        perror("backend write");
    atomic_fetch_add(&b->requests, 1);
}

static void *backend_main(void *arg)
{
    struct backend *b = arg;
    while (!atomic_load(&b->stop)) {
        struct pollfd p = {.fd = b->listener, .events = POLLIN};
        if (poll(&p, 1, 10) != 1)
            continue;
        int conn = accept4(b->listener, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0)
            continue;
        int index = atomic_load(&b->requests);
        if (index < BACKEND_TIMES)
            b->times[index] = loop_monotonic_ms();
        backend_answer(b, conn);
        close(conn);
    }
    return NULL;
}

static bool backend_start(struct backend *b, struct config_address *address)
{
    b->listener = unit_listen_local(address);
    if (b->listener < 0)
        return false;
    atomic_store(&b->status, 200);
    atomic_store(&b->stop, false);
    CHECK_INT(pthread_create(&b->thread, NULL, backend_main, b), 0);
    return true;
}

static void backend_stop(struct backend *b)
{
    atomic_store(&b->stop, true);
    pthread_join(b->thread, NULL);
    close(b->listener);
}

/* A worker's part in the checks: its loop, on a thread of its own. */
struct checker {
    struct loop loop;
    struct health *health;
    pthread_t thread;
    _Atomic bool stop;
};

static void *checker_main(void *arg)
{
    struct checker *k = arg;
    while (!atomic_load(&k->stop)) {
        loop_run_once(&k->loop, health_has_due(k->health) ? 0 : 5);
        health_run_due(k->health);
    }
    return NULL;
}

static int checker_start_share(struct checker *k, struct pool *pool, const struct config *cfg, int index,
                               int count)
{
    atomic_store(&k->stop, false);
    if (loop_init(&k->loop) < 0)
        return -1;
    if (health_attach(&k->health, &k->loop, pool, cfg, index, count) < 0 ||
        pthread_create(&k->thread, NULL, checker_main, k) != 0) {
        health_detach(k->health);
        loop_close(&k->loop);
        return -1;
    }
    return 0;
}

static int checker_start(struct checker *k, struct pool *pool, const struct config *cfg)
{
    return checker_start_share(k, pool, cfg, 0, 1);
}

static void checker_stop(struct checker *k)
{
    atomic_store(&k->stop, true);
    pthread_join(k->thread, NULL);
    health_detach(k->health);
    loop_close(&k->loop);
}

static bool wait_for_state(struct app *app, enum app_state want, int64_t within_ms)
{
    int64_t deadline = loop_monotonic_ms() + within_ms;
    while (app_state(app) != want && loop_monotonic_ms() < deadline)
        usleep(2000);
    return app_state(app) == want;
}

static void test_checks_on_a_loop(void)
{
    static struct backend b = {.lock = PTHREAD_MUTEX_INITIALIZER};
    static struct checker k;
    struct config_address address;
    struct config cfg;
    struct pool pool;
    if (!backend_start(&b, &address))
        return;
    const char *port = strchr(address.text, ':') + 1;
    if (parse_config(&cfg,
                     "[health]\ninterval = \"20ms\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2\n"
                     "path = \"/ready?deep=1\"\n"
                     "[[applications]]\nname = \"a\"\nip = \"127.0.0.1\"\nport = %s\n"
                     "[[applications]]\nname = \"b\"\nalive = false\nip = \"127.0.0.1\"\nport = \"%s\"\n"
                     "[[applications]]\nname = \"c\"\nip = \"127.0.0.1\"\nport = %s\n",
                     port, port, port) != 0)
        goto out_backend;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    struct app *a = &pool.apps[0], *bb = &pool.apps[1], *c = &pool.apps[2];
    CHECK_INT(app_state(bb), APP_DOWN);                 /* alive = false */
    CHECK_INT(checker_start(&k, &pool, &cfg), 0);
    if (!k.health)
        goto out_pool;

    CHECK(wait_for_state(bb, APP_UP, 3000));            /* rise passes */
    CHECK(atomic_load(&bb->last_check_time_ms) > 0 && atomic_load(&bb->last_check_ok));
    char want[128];
    snprintf(want, sizeof(want), "GET /ready?deep=1 HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n", port);
    pthread_mutex_lock(&b.lock);
    CHECK_MSG(strncmp(b.last_request, want, strlen(want)) == 0, "request:\n%s", b.last_request);
    pthread_mutex_unlock(&b.lock);

    /* maintenance is immune; draining is kept */
    CHECK(pool_set_state(&pool, c, APP_UP, APP_MAINTENANCE, "test"));
    CHECK(pool_set_state(&pool, a, APP_UP, APP_DRAINING, "test"));
    atomic_store(&b.status, 500);
    CHECK(wait_for_state(bb, APP_DOWN, 3000));          /* fall failures */
    CHECK(!atomic_load(&bb->last_check_ok));
    usleep(100 * 1000);
    CHECK_INT(app_state(c), APP_MAINTENANCE);
    CHECK_INT(app_state(a), APP_DRAINING);

    atomic_store(&b.status, 200);
    CHECK(wait_for_state(bb, APP_UP, 3000));
    /* passive mark-down; checks bring it back */
    for (int i = 0; i < cfg.passive_failures; i++)
        pool_note_failure(&pool, bb, loop_monotonic_ms(), "connection refused");
    CHECK_INT(app_state(bb), APP_DOWN);
    CHECK(wait_for_state(bb, APP_UP, 3000));

    /* the expect list decides what passes */
    atomic_store(&b.status, 302);
    CHECK(wait_for_state(bb, APP_DOWN, 3000));
    checker_stop(&k);
out_pool:
    pool_free(&pool);
    config_free(&cfg);
out_backend:
    backend_stop(&b);
}

/* Each worker checks its share of the pool: worker 1 of 2 checks the
 * applications at odd indexes, and only those. */
static void test_share_of_the_pool(void)
{
    static struct backend b = {.lock = PTHREAD_MUTEX_INITIALIZER};
    static struct checker k;
    struct config_address address;
    struct config cfg;
    struct pool pool;
    if (!backend_start(&b, &address))
        return;
    const char *port = strchr(address.text, ':') + 1;
    if (parse_config(&cfg,
                     "[health]\ninterval = \"20ms\"\nrise = 1\n"
                     "[[applications]]\nname = \"a\"\nalive = false\nip = \"127.0.0.1\"\nport = %s\n"
                     "[[applications]]\nname = \"b\"\nalive = false\nip = \"127.0.0.1\"\nport = %s\n"
                     "[[applications]]\nname = \"c\"\nalive = false\nip = \"127.0.0.1\"\nport = %s\n"
                     "[[applications]]\nname = \"d\"\nalive = false\nip = \"127.0.0.1\"\nport = %s\n",
                     port, port, port, port) != 0)
        goto out_backend;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    CHECK_INT(checker_start_share(&k, &pool, &cfg, 1, 2), 0);
    CHECK(wait_for_state(&pool.apps[1], APP_UP, 3000));
    CHECK(wait_for_state(&pool.apps[3], APP_UP, 3000));
    usleep(100 * 1000);                                 /* five more intervals */
    checker_stop(&k);
    CHECK_INT(app_state(&pool.apps[0]), APP_DOWN);
    CHECK_INT(app_state(&pool.apps[2]), APP_DOWN);
    CHECK(atomic_load(&pool.apps[0].last_check_time_ms) == 0);
    CHECK(atomic_load(&pool.apps[2].last_check_time_ms) == 0);
    pool_free(&pool);
    config_free(&cfg);
out_backend:
    backend_stop(&b);
}

/* A result that starts or continues a streak brings the next check forward
 * to fast_interval; a broken streak, or one that reached rise or fall,
 * leaves it an interval after the start of the last. The backend answers
 * a script and notes when each check came. */
static void test_fast_interval_during_a_transition(void)
{
    enum { INTERVAL = 300, FAST = 30 };
    /* rise = fall = 3, starting down: the first pass hurries the next
     * check, a failure breaks the streak, three passes bring it up; then
     * the same on the way down. */
    static const int script[] = {200, 500, 200, 200, 200, 500, 200, 500, 500, 500, 500};
    static const char gaps[] = "FIFFIFIFFI";    /* after each result: Fast or Interval */
    enum { CHECKS = sizeof(script) / sizeof(script[0]) };
    static struct backend b = {.lock = PTHREAD_MUTEX_INITIALIZER};
    static struct checker k;
    struct config_address address;
    struct config cfg;
    struct pool pool;
    struct pool_transition t[4];
    b.script = script;
    b.script_len = CHECKS;
    if (!backend_start(&b, &address))
        return;
    atomic_store(&b.status, 500);
    if (parse_config(&cfg,
                     "[health]\ninterval = \"%dms\"\nfast_interval = \"%dms\"\ntimeout = \"200ms\"\n"
                     "rise = 3\nfall = 3\n"
                     "[[applications]]\nalive = false\nip = \"127.0.0.1\"\nport = %s\n",
                     INTERVAL, FAST, strchr(address.text, ':') + 1) != 0)
        goto out_backend;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    CHECK_INT(checker_start(&k, &pool, &cfg), 0);
    if (!k.health)
        goto out_pool;
    int64_t deadline = loop_monotonic_ms() + 6000;
    while (atomic_load(&b.requests) < CHECKS && loop_monotonic_ms() < deadline)
        usleep(5000);
    checker_stop(&k);
    backend_stop(&b);                                   /* b.times is ours from here */
    CHECK_INT(drain_transitions(&pool, t, 4), 2);
    CHECK(t[0].to == APP_UP && t[1].to == APP_DOWN);
    CHECK_MSG(atomic_load(&b.requests) >= CHECKS, "%d checks of %d", atomic_load(&b.requests), CHECKS);
    for (int i = 0; i + 1 < CHECKS && i + 1 < atomic_load(&b.requests); i++) {
        int64_t gap = b.times[i + 1] - b.times[i];
        if (gaps[i] == 'F')
            CHECK_MSG(gap < INTERVAL / 2, "check %d came %lld ms after check %d, want about %d", i + 1,
                      (long long)gap, i, FAST);
        else
            CHECK_MSG(gap >= INTERVAL * 8 / 10, "check %d came %lld ms after check %d, want about %d",
                      i + 1, (long long)gap, i, INTERVAL);
    }
    pool_free(&pool);
    config_free(&cfg);
    return;
out_pool:
    pool_free(&pool);
    config_free(&cfg);
out_backend:
    backend_stop(&b);
}

/* A config of `apps` applications, alive = false, on 127.0.0.1 ports
 * nobody serves: every check is refused, quietly (they are down already). */
static bool parse_down_fleet(struct config *cfg, int apps, const char *interval)
{
    static char text[2000 * 64 + 256];
    size_t len = (size_t)snprintf(text, sizeof(text), "[health]\ninterval = \"%s\"\ntimeout = \"100ms\"\n",
                                  interval);
    for (int i = 0; i < apps && len < sizeof(text) - 64; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                "[[applications]]\nalive = false\nip = \"127.0.0.1\"\nport = %d\n", 20000 + i);
    char errors[512] = "";
    int rc = config_parse(cfg, "fleet.toml", text, len, errors, sizeof(errors));
    CHECK_MSG(rc == 0, "%s", errors);
    return rc == 0;
}

/* Checks that fall due together start a few per loop iteration (at least
 * 4, a quarter of the queue when it is longer), never all at once, and
 * the queue always drains. */
static void test_checks_start_a_few_at_a_time(void)
{
    enum { APPS = 40 };
    struct config cfg;
    struct pool pool;
    struct loop loop;
    struct health *h = NULL;
    if (!parse_down_fleet(&cfg, APPS, "10ms"))
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    CHECK_INT(pool.count, APPS);
    CHECK_INT(loop_init(&loop), 0);
    CHECK_INT(health_attach(&h, &loop, &pool, &cfg, 0, 1), 0);
    CHECK(!health_has_due(h));                 /* first checks within the first interval */
    usleep(30 * 1000);
    loop_run_once(&loop, 0);                   /* every check's time has come */
    CHECK(health_has_due(h));
    health_run_due(h);
    CHECK_MSG(health_has_due(h), "all %d checks started in one iteration", APPS);
    int iterations = 1;
    while (health_has_due(h) && iterations < 20) {
        health_run_due(h);
        iterations++;
    }
    /* 40 -> 30 -> 23 -> 18 -> 14 -> 10 -> 6 -> 2 -> 0 */
    CHECK_INT(iterations, 8);
    health_detach(h);
    loop_close(&loop);
    pool_free(&pool);
    config_free(&cfg);
}

/* Thousands of applications: no per-check allocation, and the checks
 * spread over the interval. Only run for the count, not timed. */
static void test_many_applications(void)
{
    enum { APPS = 2000 };
    static struct checker k;
    struct config cfg;
    struct pool pool;
    if (!parse_down_fleet(&cfg, APPS, "1s"))
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    CHECK_INT(pool.count, APPS);
    struct timespec cpu0, cpu1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
    CHECK_INT(checker_start(&k, &pool, &cfg), 0);
    usleep(300 * 1000);
    checker_stop(&k);
    int checked = 0;
    for (int i = 0; i < APPS; i++)
        checked += atomic_load(&pool.apps[i].last_check_time_ms) > 0;
    /* First checks at random offsets within the 1 s interval: about 600
     * after 0.3 s; all 2,000 would mean no spread. Wide bounds: a loaded
     * machine may run the checker late or sleep long. */
    CHECK_MSG(checked > 50 && checked < 1800, "%d of %d checked in 0.3 s", checked, APPS);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
    double cpu = (double)(cpu1.tv_sec - cpu0.tv_sec) + (double)(cpu1.tv_nsec - cpu0.tv_nsec) / 1e9;
    /* ~600 checks in 0.3 s; generous bound, this is no benchmark */
    CHECK_MSG(cpu < 0.5, "%.3f s of CPU", cpu);
    pool_free(&pool);
    config_free(&cfg);
}

void unit_test_health(void)
{
    test_fall_and_rise();
    test_external_change_resets();
    test_operator_states_are_immune();
    test_schedule();
    test_transition();
    test_checks_on_a_loop();
    test_share_of_the_pool();
    test_fast_interval_during_a_transition();
    test_checks_start_a_few_at_a_time();
    test_many_applications();
}
