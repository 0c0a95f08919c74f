/* balance.c - round robin, smooth weighted round robin, least connections,
 * power of two random choices, and rendezvous hashing; see balance.h.
 *
 * Every algorithm skips applications that are not up or were already tried
 * for this request, so a retry never lands on the application that failed.
 */
#include "balance.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_candidate(const struct app *app, const uint16_t *tried, int ntried)
{
    if (app_state(app) != APP_UP)
        return false;
    for (int i = 0; i < ntried; i++)
        if (tried[i] == app->index)
            return false;
    return true;
}

/* A 64-bit finaliser (MurmurHash3's fmix64): every input bit flips about
 * half the output bits, so nearby keys and names draw unrelated numbers. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Each application's identity is its name (by default "ip:port"), never its
 * index: two instances that list the same applications in other orders, or
 * one that reloads a file with an application inserted, agree on every key. */
static int hash_identities(struct balance *b)
{
    b->identity = calloc((size_t)b->pool->count, sizeof(*b->identity));
    if (!b->identity)
        return -ENOMEM;
    for (int i = 0; i < b->pool->count; i++) {
        const char *name = b->pool->apps[i].cfg->name;
        b->identity[i] = mix(balance_hash(name, strlen(name)));
    }
    return 0;
}

static int allocate(struct balance *b)
{
    size_t count = (size_t)b->pool->count;
    b->up = calloc(count ? count : 1, sizeof(*b->up));
    if (!b->up)
        return -ENOMEM;
    if (b->weighted && !(b->current = calloc(count, sizeof(*b->current))))
        return -ENOMEM;
    if (b->algorithm == ALG_HASH && count)
        return hash_identities(b);
    return 0;
}

int balance_init(struct balance *b, struct pool *pool, int worker_index)
{
    *b = (struct balance){
        .pool = pool,
        .algorithm = pool->cfg->algorithm,
        /* Workers start at different places so that the first requests of
         * all workers do not land on the same application. */
        .cursor = (uint32_t)worker_index,
        .random_state = 0x9e3779b97f4a7c15ull * (uint64_t)(worker_index + 1),
        .seen_version = UINT64_MAX,
    };
    for (int i = 1; i < pool->count; i++)
        if (pool->apps[i].cfg->weight != pool->apps[0].cfg->weight)
            b->weighted = true;
    int err = allocate(b);
    if (err)
        balance_free(b);
    return err;
}

void balance_free(struct balance *b)
{
    free(b->current);
    free(b->up);
    free(b->identity);
    b->current = NULL;
    b->up = NULL;
    b->identity = NULL;
}

static void refresh_up_list(struct balance *b)
{
    uint64_t version = atomic_load_explicit(&b->pool->state_version, memory_order_acquire);
    if (version == b->seen_version)
        return;
    b->seen_version = version;
    b->up_count = 0;
    for (int i = 0; i < b->pool->count; i++)
        if (app_state(&b->pool->apps[i]) == APP_UP)
            b->up[b->up_count++] = (uint16_t)i;
}

static struct app *pick_round_robin(struct balance *b, const uint16_t *tried, int ntried)
{
    uint32_t n = (uint32_t)b->up_count;
    uint32_t start = atomic_fetch_add_explicit(&b->pool->rr_cursor, 1, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++) {
        struct app *app = &b->pool->apps[b->up[(start + i) % n]];
        if (is_candidate(app, tried, ntried))
            return app;
    }
    return NULL;
}

/* Smooth weighted round robin: each candidate gains its weight, the richest
 * is chosen and pays the total. Spreads a 5:1:1 split as a,a,b,a,c,a,a
 * rather than a,a,a,a,a,b,c. */
static struct app *pick_weighted(struct balance *b, const uint16_t *tried, int ntried)
{
    struct app *best = NULL;
    int64_t total = 0;
    for (int k = 0; k < b->up_count; k++) {
        int i = b->up[k];
        struct app *app = &b->pool->apps[i];
        if (!is_candidate(app, tried, ntried))
            continue;
        b->current[i] += app->cfg->weight;
        total += app->cfg->weight;
        if (!best || b->current[i] > b->current[best->index])
            best = app;
    }
    if (best)
        b->current[best->index] -= total;
    return best;
}

static uint64_t next_random(struct balance *b)
{
    uint64_t x = b->random_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->random_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static int64_t load_of(const struct app *app)
{
    /* Scaled so that weight 2 carries twice the requests of weight 1. */
    return atomic_load_explicit(&app->active, memory_order_relaxed) * 1000 / app->cfg->weight;
}

static struct app *pick_least_conn(struct balance *b, const uint16_t *tried, int ntried)
{
    struct app *best = NULL;
    uint32_t n = (uint32_t)b->up_count;
    uint32_t start = b->cursor++;   /* rotate ties instead of always the first */
    for (uint32_t k = 0; k < n; k++) {
        struct app *app = &b->pool->apps[b->up[(start + k) % n]];
        if (is_candidate(app, tried, ntried) && (!best || load_of(app) < load_of(best)))
            best = app;
    }
    return best;
}

/* Power of two choices: two different applications at random, the less
 * loaded wins. If either drawn is out (down, tried), a full least-loaded
 * scan decides instead of drawing again. */
static struct app *pick_random_two(struct balance *b, const uint16_t *tried, int ntried)
{
    uint32_t n = (uint32_t)b->up_count;
    if (n < 2)
        return pick_least_conn(b, tried, ntried);
    uint64_t r = next_random(b);
    uint32_t i = (uint32_t)(r % n), j = (uint32_t)((r >> 32) % (n - 1));
    if (j >= i)
        j++;
    struct app *x = &b->pool->apps[b->up[i]], *y = &b->pool->apps[b->up[j]];
    if (!is_candidate(x, tried, ntried) || !is_candidate(y, tried, ntried))
        return pick_least_conn(b, tried, ntried);
    return load_of(y) < load_of(x) ? y : x;
}

/* Where a key stands with one application: the key and the application's
 * identity mixed together. Every (key, application) pair draws its own
 * independent number, so removing an application reorders nothing else. */
static uint64_t hash_draw(uint64_t key, uint64_t identity)
{
    return mix(key ^ identity);
}

/* Weighted rendezvous score -w / ln(u), u the draw as a double in (0, 1):
 * the top 53 bits (what a double holds exactly) plus a half, so u is never
 * 0 or 1 and the logarithm is finite and negative. The maximum of such
 * scores falls on each application with probability w / (sum of weights). */
static double weighted_score(uint64_t draw, uint32_t weight)
{
    double u = ((double)(draw >> 11) + 0.5) * 0x1p-53;
    return -(double)weight / log(u);
}

/* Rendezvous (highest random weight) hashing: the key goes to the
 * candidate with the highest score. An application that leaves (down,
 * draining, full, already tried) takes only its own keys away, each to
 * that key's next-best application; every other key stays. With equal
 * weights the raw draw ranks as the score would, without a logarithm. */
static struct app *pick_hash(struct balance *b, uint64_t key_hash, const uint16_t *tried, int ntried)
{
    struct app *best = NULL;
    uint64_t key = mix(key_hash), best_draw = 0;
    double best_score = 0;
    for (int k = 0; k < b->up_count; k++) {
        struct app *app = &b->pool->apps[b->up[k]];
        if (!is_candidate(app, tried, ntried))
            continue;
        uint64_t draw = hash_draw(key, b->identity[app->index]);
        double score = b->weighted ? weighted_score(draw, app->cfg->weight) : 0;
        bool better = b->weighted ? score > best_score || (score == best_score && draw > best_draw)
                                  : draw > best_draw;
        if (!best || better) {
            best = app;
            best_draw = draw;
            best_score = score;
        }
    }
    return best;
}

struct app *balance_pick(struct balance *b, uint64_t key_hash, const uint16_t *tried, int ntried)
{
    if (b->pool->count == 0)
        return NULL;
    refresh_up_list(b);
    switch (b->algorithm) {
    case ALG_LEAST_CONN:
        return pick_least_conn(b, tried, ntried);
    case ALG_RANDOM_TWO:
        return pick_random_two(b, tried, ntried);
    case ALG_HASH:
        return pick_hash(b, key_hash, tried, ntried);
    case ALG_ROUND_ROBIN:
        break;
    }
    return b->weighted ? pick_weighted(b, tried, ntried) : pick_round_robin(b, tried, ntried);
}

uint64_t balance_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
