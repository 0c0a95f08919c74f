/* Unit tests for balance.c: every algorithm over a pool built in memory. */
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "unit.h"

#define APPS 5

struct fixture {
    struct config cfg;
    struct config_app apps[APPS];
    struct pool pool;
    struct balance b;
};

static void fixture_init(struct fixture *f, int count, enum config_algorithm alg, const uint32_t *weights)
{
    memset(f, 0, sizeof(*f));
    config_defaults(&f->cfg);
    f->cfg.algorithm = alg;
    f->cfg.apps = f->apps;
    f->cfg.app_count = count;
    for (int i = 0; i < count; i++) {
        snprintf(f->apps[i].name, sizeof(f->apps[i].name), "app-%d", i);
        f->apps[i].alive = true;
        f->apps[i].weight = weights ? weights[i] : 1;
    }
    CHECK_INT(pool_init(&f->pool, &f->cfg), 0);
    CHECK_INT(balance_init(&f->b, &f->pool, 0), 0);
}

/* As pool_set_state does: the state, then the version workers watch. */
static void set_state(struct fixture *f, int i, enum app_state state)
{
    atomic_store(&f->pool.apps[i].state, state);
    atomic_fetch_add(&f->pool.state_version, 1);
}

static void fixture_free(struct fixture *f)
{
    balance_free(&f->b);
    pool_free(&f->pool);
    f->cfg.apps = NULL;
    f->cfg.app_count = 0;
    config_free(&f->cfg);
}

static void test_round_robin_even_and_in_order(void)
{
    struct fixture f;
    fixture_init(&f, 3, ALG_ROUND_ROBIN, NULL);
    int counts[3] = {0};
    struct app *prev = NULL;
    bool alternates = true;
    for (int i = 0; i < 300; i++) {
        struct app *a = balance_pick(&f.b, 0, NULL, 0);
        CHECK(a != NULL);
        if (!a)
            break;
        counts[a->index]++;
        if (prev && a->index != (prev->index + 1) % 3)
            alternates = false;
        prev = a;
    }
    CHECK_INT(counts[0], 100);
    CHECK_INT(counts[1], 100);
    CHECK_INT(counts[2], 100);
    CHECK(alternates);
    fixture_free(&f);
}

static void test_round_robin_skips_down_and_tried(void)
{
    struct fixture f;
    fixture_init(&f, 3, ALG_ROUND_ROBIN, NULL);
    set_state(&f, 1, APP_DOWN);
    for (int i = 0; i < 20; i++) {
        struct app *a = balance_pick(&f.b, 0, NULL, 0);
        CHECK(a && a->index != 1);
    }
    set_state(&f, 2, APP_DRAINING);
    uint16_t tried[1] = {0};
    CHECK(balance_pick(&f.b, 0, tried, 1) == NULL);   /* 0 tried, 1 down, 2 draining */
    CHECK(balance_pick(&f.b, 0, NULL, 0) == &f.pool.apps[0]);
    set_state(&f, 0, APP_MAINTENANCE);
    CHECK(balance_pick(&f.b, 0, NULL, 0) == NULL);
    fixture_free(&f);
}

static void test_weighted_is_smooth(void)
{
    static const uint32_t weights[3] = {5, 1, 1};
    struct fixture f;
    fixture_init(&f, 3, ALG_ROUND_ROBIN, weights);
    char seq[8] = {0};
    for (int i = 0; i < 7; i++) {
        struct app *a = balance_pick(&f.b, 0, NULL, 0);
        seq[i] = a ? (char)('a' + a->index) : '?';
    }
    /* Smooth: the heavy application's turns are spread, not bunched. */
    CHECK_STR(seq, "aabacaa");
    int counts[3] = {0};
    for (int i = 0; i < 700; i++)
        counts[balance_pick(&f.b, 0, NULL, 0)->index]++;
    CHECK_INT(counts[0], 500);
    CHECK_INT(counts[1], 100);
    CHECK_INT(counts[2], 100);
    fixture_free(&f);
}

static void test_least_conn_prefers_idle(void)
{
    struct fixture f;
    fixture_init(&f, 3, ALG_LEAST_CONN, NULL);
    atomic_store(&f.pool.apps[0].active, 5);
    atomic_store(&f.pool.apps[1].active, 1);
    atomic_store(&f.pool.apps[2].active, 3);
    for (int i = 0; i < 5; i++)
        CHECK(balance_pick(&f.b, 0, NULL, 0) == &f.pool.apps[1]);
    uint16_t tried[1] = {1};
    CHECK(balance_pick(&f.b, 0, tried, 1) == &f.pool.apps[2]);
    fixture_free(&f);
}

static void test_random_two_picks_the_less_loaded(void)
{
    struct fixture f;
    fixture_init(&f, 2, ALG_RANDOM_TWO, NULL);
    atomic_store(&f.pool.apps[0].active, 10);
    for (int i = 0; i < 50; i++)
        CHECK(balance_pick(&f.b, 0, NULL, 0) == &f.pool.apps[1]);
    set_state(&f, 1, APP_DOWN);
    CHECK(balance_pick(&f.b, 0, NULL, 0) == &f.pool.apps[0]);
    fixture_free(&f);
}

static void test_hash_is_sticky_and_moves_little(void)
{
    struct fixture f;
    fixture_init(&f, APPS, ALG_HASH, NULL);
    int before[200], counts[APPS] = {0};
    for (int k = 0; k < 200; k++) {
        uint64_t key = balance_hash(&k, sizeof(k));
        before[k] = balance_pick(&f.b, key, NULL, 0)->index;
        CHECK_INT(balance_pick(&f.b, key, NULL, 0)->index, before[k]);
        counts[before[k]]++;
    }
    for (int i = 0; i < APPS; i++)
        CHECK_MSG(counts[i] > 10, "application %d got %d of 200 keys", i, counts[i]);
    /* Rendezvous hashing: when one application leaves, only its keys move. */
    set_state(&f, 2, APP_DOWN);
    int moved = 0;
    for (int k = 0; k < 200; k++) {
        uint64_t key = balance_hash(&k, sizeof(k));
        int now = balance_pick(&f.b, key, NULL, 0)->index;
        CHECK(now != 2);
        moved += now != before[k];
    }
    CHECK_INT(moved, counts[2]);
    fixture_free(&f);
}

void unit_test_balance(void)
{
    test_round_robin_even_and_in_order();
    test_round_robin_skips_down_and_tried();
    test_weighted_is_smooth();
    test_least_conn_prefers_idle();
    test_random_two_picks_the_less_loaded();
    test_hash_is_sticky_and_moves_little();
}
