/* Unit tests for balance.c: every algorithm over a pool built in memory. */
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "unit.h"

#define APPS 12

struct fixture {
    struct config cfg;
    struct config_app apps[APPS];
    struct pool pool;
    struct balance b;
};

/* ids[i] names the application at position i ("app-ID"); NULL: app-i. */
static void fixture_init_named(struct fixture *f, int count, enum config_algorithm alg,
                               const uint32_t *weights, const int *ids)
{
    memset(f, 0, sizeof(*f));
    config_defaults(&f->cfg);
    f->cfg.algorithm = alg;
    f->cfg.apps = f->apps;
    f->cfg.app_count = count;
    for (int i = 0; i < count; i++) {
        snprintf(f->apps[i].name, sizeof(f->apps[i].name), "app-%d", ids ? ids[i] : i);
        f->apps[i].alive = true;
        f->apps[i].weight = weights ? weights[i] : 1;
    }
    CHECK_INT(pool_init(&f->pool, &f->cfg), 0);
    CHECK_INT(balance_init(&f->b, &f->pool, 0), 0);
}

static void fixture_init(struct fixture *f, int count, enum config_algorithm alg, const uint32_t *weights)
{
    fixture_init_named(f, count, alg, weights, NULL);
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
    fixture_init(&f, 5, ALG_HASH, NULL);
    int before[200], counts[5] = {0};
    for (int k = 0; k < 200; k++) {
        uint64_t key = balance_hash(&k, sizeof(k));
        before[k] = balance_pick(&f.b, key, NULL, 0)->index;
        CHECK_INT(balance_pick(&f.b, key, NULL, 0)->index, before[k]);
        counts[before[k]]++;
    }
    for (int i = 0; i < 5; i++)
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

#define HASH_KEYS 10000
#define HASH_N 10

static uint64_t key_of(int k)
{
    char key[32];
    int len = snprintf(key, sizeof(key), "user-%d", k);
    return balance_hash(key, (size_t)len);
}

/* Which application ("app-ID", by its ID) each of the HASH_KEYS keys goes
 * to, with the applications listed as ids (NULL: app-0..app-count-1). */
static void map_keys(int count, const int *ids, const uint32_t *weights, int *owner)
{
    struct fixture f;
    fixture_init_named(&f, count, ALG_HASH, weights, ids);
    for (int k = 0; k < HASH_KEYS; k++) {
        struct app *a = balance_pick(&f.b, key_of(k), NULL, 0);
        owner[k] = a ? atoi(a->cfg->name + strlen("app-")) : -1;
    }
    fixture_free(&f);
}

static int count_moved(const int *before, const int *after)
{
    int moved = 0;
    for (int k = 0; k < HASH_KEYS; k++)
        moved += before[k] != after[k];
    return moved;
}

static void test_hash_ignores_the_order_of_the_file(void)
{
    static const int reversed[HASH_N] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
    static const int shuffled[HASH_N] = {3, 7, 0, 9, 5, 1, 8, 2, 6, 4};
    static int in_order[HASH_KEYS], other[HASH_KEYS];
    map_keys(HASH_N, NULL, NULL, in_order);
    map_keys(HASH_N, reversed, NULL, other);
    CHECK_INT(count_moved(in_order, other), 0);
    map_keys(HASH_N, shuffled, NULL, other);
    CHECK_INT(count_moved(in_order, other), 0);
}

static void test_hash_removed_application_moves_only_its_keys(void)
{
    static const int without_3[HASH_N - 1] = {0, 1, 2, 4, 5, 6, 7, 8, 9};
    static int before[HASH_KEYS], after[HASH_KEYS];
    map_keys(HASH_N, NULL, NULL, before);
    map_keys(HASH_N - 1, without_3, NULL, after);
    int moved = count_moved(before, after), foreign = 0;
    for (int k = 0; k < HASH_KEYS; k++)
        foreign += before[k] != after[k] && before[k] != 3;
    CHECK_INT(foreign, 0);
    CHECK_MSG(moved <= HASH_KEYS / HASH_N + HASH_KEYS * 2 / 100, "%d of %d keys moved", moved, HASH_KEYS);
    CHECK_MSG(moved >= HASH_KEYS / HASH_N - HASH_KEYS * 2 / 100, "only %d of %d keys moved", moved,
              HASH_KEYS);
}

static void test_hash_added_application_takes_only_its_share(void)
{
    static int before[HASH_KEYS], after[HASH_KEYS];
    map_keys(HASH_N, NULL, NULL, before);
    map_keys(HASH_N + 1, NULL, NULL, after);
    int moved = count_moved(before, after), elsewhere = 0;
    for (int k = 0; k < HASH_KEYS; k++)
        elsewhere += before[k] != after[k] && after[k] != HASH_N;
    CHECK_INT(elsewhere, 0);
    CHECK_MSG(moved <= HASH_KEYS / (HASH_N + 1) + HASH_KEYS * 2 / 100, "%d of %d keys moved", moved,
              HASH_KEYS);
}

static void test_hash_honours_weights(void)
{
    static const uint32_t weights[3] = {1, 2, 1};
    static int owner[HASH_KEYS];
    map_keys(3, NULL, weights, owner);
    int counts[3] = {0};
    for (int k = 0; k < HASH_KEYS; k++)
        if (owner[k] >= 0)
            counts[owner[k]]++;
    /* Expected 2,500 / 5,000 / 2,500; binomial spread is about 50. */
    CHECK_MSG(counts[1] > 4700 && counts[1] < 5300, "weight 2 got %d of %d keys", counts[1], HASH_KEYS);
    CHECK_MSG(counts[0] > 2200 && counts[0] < 2800, "weight 1 got %d of %d keys", counts[0], HASH_KEYS);
    CHECK_MSG(counts[2] > 2200 && counts[2] < 2800, "weight 1 got %d of %d keys", counts[2], HASH_KEYS);
}

/* Down, or skipped for this request (tried, or full at max_requests, which
 * the exchange passes as tried): only that application's keys move, and
 * they spread over all the others rather than onto one neighbour. */
static void test_hash_skips_out_of_service_and_spreads_its_keys(void)
{
    static int before[HASH_KEYS];
    struct fixture f;
    fixture_init(&f, HASH_N, ALG_HASH, NULL);
    for (int k = 0; k < HASH_KEYS; k++)
        before[k] = balance_pick(&f.b, key_of(k), NULL, 0)->index;
    set_state(&f, 4, APP_DOWN);
    int foreign = 0, spread[HASH_N] = {0};
    uint16_t tried[1] = {4};
    for (int k = 0; k < HASH_KEYS; k++) {
        int now = balance_pick(&f.b, key_of(k), NULL, 0)->index;
        foreign += now != before[k] && before[k] != 4;
        if (before[k] == 4)
            spread[now]++;
    }
    CHECK_INT(foreign, 0);
    CHECK_INT(spread[4], 0);
    for (int i = 0; i < HASH_N; i++)
        CHECK_MSG(i == 4 || spread[i] > 50, "application %d took %d of the down one's keys", i, spread[i]);
    set_state(&f, 4, APP_UP);
    for (int k = 0; k < HASH_KEYS; k++) {
        int now = balance_pick(&f.b, key_of(k), tried, 1)->index;
        foreign += now != before[k] && before[k] != 4;
    }
    CHECK_INT(foreign, 0);
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
    test_hash_ignores_the_order_of_the_file();
    test_hash_removed_application_moves_only_its_keys();
    test_hash_added_application_takes_only_its_share();
    test_hash_honours_weights();
    test_hash_skips_out_of_service_and_spreads_its_keys();
}
