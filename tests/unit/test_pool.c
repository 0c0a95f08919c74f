/* test_pool.c - application states and passive detection as pool.c counts
 * them: gateway failures within a window mark an application down, 5xx in
 * a row do when enabled, and live traffic never brings one back. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "pool.h"
#include "unit.h"

static int parse(struct config *cfg, const char *text)
{
    char errors[2048] = "";
    int rc = config_parse(cfg, "test.toml", text, strlen(text), errors, sizeof(errors));
    CHECK_MSG(rc == 0, "config: %s", errors);
    return rc;
}

static int drain_transitions(struct pool *pool, struct pool_transition *out, int max)
{
    int n = 0;
    while (n < max && read(pool->notify_read_fd, &out[n], sizeof(out[n])) == (ssize_t)sizeof(out[n]))
        n++;
    return n;
}

#define TWO_APPS                                                                  \
    "[[applications]]\nname = \"a\"\nip = \"127.0.0.1\"\nport = 1\n"               \
    "[[applications]]\nname = \"b\"\nip = \"127.0.0.1\"\nport = 2\n"

/* Failures need not be consecutive: successes in between change nothing. */
static void test_failures_within_window(void)
{
    struct config cfg;
    struct pool pool;
    struct pool_transition t[8];
    if (parse(&cfg, "[passive]\nfailures = 3\nwindow = \"10s\"\n" TWO_APPS) != 0)
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    struct app *a = &pool.apps[0];

    pool_note_failure(&pool, a, 1000, "connection closed before a response");
    pool_note_status(&pool, a, 200);
    pool_note_failure(&pool, a, 2000, "connection reset before a response");
    for (int i = 0; i < 50; i++)
        pool_note_status(&pool, a, 200);
    CHECK_INT(app_state(a), APP_UP);
    pool_note_failure(&pool, a, 11000, "no response in time");   /* 10 s after the first */
    CHECK_INT(app_state(a), APP_DOWN);
    CHECK_INT(drain_transitions(&pool, t, 8), 1);
    CHECK_INT(t[0].from, APP_UP);
    CHECK_INT(t[0].to, APP_DOWN);
    CHECK_MSG(strstr(t[0].reason, "no response in time") && strstr(t[0].reason, "3 failures"), "%s",
              t[0].reason);
    CHECK_INT(atomic_load(&a->transitions[APP_DOWN]), 1);
    /* live traffic never brings it back: only checks do */
    for (int i = 0; i < 5; i++)
        pool_note_status(&pool, a, 200);
    CHECK_INT(app_state(a), APP_DOWN);
    pool_free(&pool);
    config_free(&cfg);
}

/* Failures further apart than the window age out; the count also starts
 * again after every transition. */
static void test_window_ages_failures_out(void)
{
    struct config cfg;
    struct pool pool;
    if (parse(&cfg, "[passive]\nfailures = 3\nwindow = 1000\n" TWO_APPS) != 0)
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    struct app *a = &pool.apps[0], *b = &pool.apps[1];

    for (int64_t now = 0; now < 20000; now += 600)   /* one failure every 0.6 s */
        pool_note_failure(&pool, a, now, "connection refused");
    CHECK_INT(app_state(a), APP_UP);
    pool_note_failure(&pool, a, 20001, "connection refused");
    pool_note_failure(&pool, a, 20002, "connection refused");   /* 3 within 1 s now */
    CHECK_INT(app_state(a), APP_DOWN);

    /* Back up through checks: the failures before count no more. */
    CHECK(pool_set_state(&pool, a, APP_DOWN, APP_UP, "check passed"));
    pool_note_failure(&pool, a, 20003, "connection refused");
    pool_note_failure(&pool, a, 20004, "connection refused");
    CHECK_INT(app_state(a), APP_UP);
    pool_note_failure(&pool, a, 20005, "connection refused");
    CHECK_INT(app_state(a), APP_DOWN);

    /* the other application's count is its own */
    CHECK_INT(app_state(b), APP_UP);
    pool_free(&pool);
    config_free(&cfg);
}

static void test_failures_off_and_one(void)
{
    struct config cfg;
    struct pool pool;
    if (parse(&cfg, "[passive]\nfailures = 0\n" TWO_APPS) != 0)
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    for (int i = 0; i < 100; i++)
        pool_note_failure(&pool, &pool.apps[0], i, "connection refused");
    CHECK_INT(app_state(&pool.apps[0]), APP_UP);
    pool_free(&pool);
    config_free(&cfg);

    if (parse(&cfg, "[passive]\nfailures = 1\n" TWO_APPS) != 0)
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    pool_note_failure(&pool, &pool.apps[1], 5, "connect timeout");
    CHECK_INT(app_state(&pool.apps[1]), APP_DOWN);
    CHECK_INT(app_state(&pool.apps[0]), APP_UP);
    pool_free(&pool);
    config_free(&cfg);
}

/* Only an application that is up is marked down by live traffic: one in
 * maintenance or already down stays where the operator or checks put it. */
static void test_failures_only_take_up_applications_down(void)
{
    struct config cfg;
    struct pool pool;
    struct pool_transition t[8];
    if (parse(&cfg, "[passive]\nfailures = 2\n" TWO_APPS) != 0)
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    struct app *a = &pool.apps[0];
    CHECK(pool_set_state(&pool, a, APP_UP, APP_MAINTENANCE, "operator"));
    for (int i = 0; i < 10; i++)
        pool_note_failure(&pool, a, i, "connection refused");
    CHECK_INT(app_state(a), APP_MAINTENANCE);
    CHECK_INT(drain_transitions(&pool, t, 8), 1);
    pool_free(&pool);
    config_free(&cfg);
}

static void test_server_errors(void)
{
    struct config cfg;
    struct pool pool;
    if (parse(&cfg, "[passive]\nserver_errors = 2\n" TWO_APPS) != 0)
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    struct app *b = &pool.apps[1];
    pool_note_status(&pool, b, 500);
    pool_note_status(&pool, b, 200);   /* breaks the run */
    pool_note_status(&pool, b, 502);
    CHECK_INT(app_state(b), APP_UP);
    pool_note_status(&pool, b, 503);
    CHECK_INT(app_state(b), APP_DOWN);
    CHECK_INT(pool_up_count(&pool), 1);
    pool_free(&pool);
    config_free(&cfg);

    /* server_errors = 0 (the default): 5xx never mark down */
    if (parse(&cfg, "[[applications]]\nip = \"127.0.0.1\"\nport = 1\n") != 0)
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    for (int i = 0; i < 50; i++)
        pool_note_status(&pool, &pool.apps[0], 500);
    CHECK_INT(app_state(&pool.apps[0]), APP_UP);
    pool_free(&pool);
    config_free(&cfg);
}

/* The old key name still works, with a warning that names the new one;
 * both at once is an error. */
static void test_old_key_name(void)
{
    struct config cfg;
    char errors[1024] = "";
    const char *old = "[passive]\nconnect_failures = 7\n" TWO_APPS;
    if (parse(&cfg, old) != 0)
        return;
    CHECK_INT(cfg.passive_failures, 7);
    CHECK_MSG(cfg.warnings && strstr(cfg.warnings, "test.toml:2:20: warning: passive.connect_failures") &&
                  strstr(cfg.warnings, "failures"),
              "%s", cfg.warnings ? cfg.warnings : "(none)");
    config_free(&cfg);

    const char *both = "[passive]\nfailures = 2\nconnect_failures = 7\n" TWO_APPS;
    CHECK_INT(config_parse(&cfg, "test.toml", both, strlen(both), errors, sizeof(errors)), 1);
    CHECK_MSG(strstr(errors, "test.toml:3:20:") && strstr(errors, "old name"), "%s", errors);
    config_free(&cfg);

    if (parse(&cfg, TWO_APPS) != 0)
        return;
    CHECK(cfg.warnings == NULL);
    CHECK_INT(cfg.passive_failures, 3);
    CHECK_INT(cfg.passive_window_ms, 10000);
    config_free(&cfg);
}

/* A request that outlived a reload reports on an application of the
 * previous pool, whose failure ring was sized by the previous config. */
static void test_failure_of_another_pool_is_ignored(void)
{
    struct config old_cfg, new_cfg;
    struct pool old_pool, new_pool;
    if (parse(&old_cfg, "[passive]\nfailures = 0\n" TWO_APPS) != 0)
        return;
    if (parse(&new_cfg, "[passive]\nfailures = 10\n" TWO_APPS) != 0)
        return;
    CHECK_INT(pool_init(&old_pool, &old_cfg), 0);
    CHECK_INT(pool_init(&new_pool, &new_cfg), 0);
    for (int i = 0; i < 30; i++)
        pool_note_failure(&new_pool, &old_pool.apps[0], i, "connect timeout");
    CHECK_INT(app_state(&old_pool.apps[0]), APP_UP);
    CHECK_INT(app_state(&new_pool.apps[0]), APP_UP);
    pool_free(&old_pool);
    pool_free(&new_pool);
    config_free(&old_cfg);
    config_free(&new_cfg);
}

void unit_test_pool(void)
{
    test_failure_of_another_pool_is_ignored();
    test_failures_within_window();
    test_window_ages_failures_out();
    test_failures_off_and_one();
    test_failures_only_take_up_applications_down();
    test_server_errors();
    test_old_key_name();
}
