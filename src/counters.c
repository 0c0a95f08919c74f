/* counters.c - per-worker counter tables across reloads; see counters.h. */
#include "counters.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const int64_t counters_bound_us[COUNTERS_BOUNDS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

/* Scrapes under way, over every worker: a table retired while one reads it
 * is freed only once none does. Sequentially consistent on both sides: a
 * scraper that loaded a table before the worker swapped it had counted
 * itself in before, so the worker's later look sees it. */
static _Atomic int readers;

void counters_read_begin(void)
{
    atomic_fetch_add(&readers, 1);
}

void counters_read_end(void)
{
    atomic_fetch_sub(&readers, 1);
}

static struct counters_table *table_new(const struct pool *pool)
{
    size_t n = (size_t)pool->count;
    size_t apps = n * sizeof(struct counters_app);
    struct counters_table *t = calloc(1, sizeof(*t) + apps + n * CONFIG_NAME_MAX);
    if (!t)
        return NULL;
    t->pool = pool;
    t->first = pool->apps;
    t->count = pool->count;
    t->names = (char (*)[CONFIG_NAME_MAX])((char *)t->apps + apps);
    for (int i = 0; i < t->count; i++)
        snprintf(t->names[i], CONFIG_NAME_MAX, "%s", pool->apps[i].cfg->name);
    return t;
}

static void copy_histogram(struct counters_histogram *to, const struct counters_histogram *from)
{
    for (int b = 0; b < COUNTERS_BUCKETS; b++)
        atomic_store_explicit(&to->buckets[b], atomic_load_explicit(&from->buckets[b], memory_order_relaxed),
                              memory_order_relaxed);
    atomic_store_explicit(&to->sum_us, atomic_load_explicit(&from->sum_us, memory_order_relaxed),
                          memory_order_relaxed);
}

static void copy_app(struct counters_app *to, const struct counters_app *from)
{
    atomic_store_explicit(&to->requests, atomic_load_explicit(&from->requests, memory_order_relaxed),
                          memory_order_relaxed);
    for (int k = 0; k < COUNTERS_FAIL_KINDS; k++)
        atomic_store_explicit(&to->failures[k], atomic_load_explicit(&from->failures[k], memory_order_relaxed),
                              memory_order_relaxed);
    copy_histogram(&to->response_time, &from->response_time);
}

/* The old table's entry named like new's application i: most reloads keep
 * the order, so the same index is tried first. */
static const struct counters_app *find_named(const struct counters_table *old, const char *name, int i)
{
    if (i < old->count && strcmp(old->names[i], name) == 0)
        return &old->apps[i];
    for (int j = 0; j < old->count; j++)
        if (strcmp(old->names[j], name) == 0)
            return &old->apps[j];
    return NULL;
}

static void free_retired(struct proxy_counters *c)
{
    while (c->retired) {
        struct counters_table *t = c->retired;
        c->retired = t->retired_next;
        free(t);
    }
}

struct counters_table *counters_table_for(const struct proxy_counters *c, const struct pool *pool)
{
    const struct counters_table *old = atomic_load(&c->table);
    struct counters_table *t = table_new(pool);
    for (int i = 0; t && old && i < t->count; i++) {
        const struct counters_app *from = find_named(old, t->names[i], i);
        if (from)
            copy_app(&t->apps[i], from);
    }
    return t;
}

void counters_install(struct proxy_counters *c, struct counters_table *t)
{
    struct counters_table *old = atomic_load(&c->table);
    atomic_store(&c->table, t);
    if (old) {
        old->retired_next = c->retired;
        c->retired = old;
    }
    if (atomic_load(&readers) == 0)
        free_retired(c);
}

void counters_free(struct proxy_counters *c)
{
    free_retired(c);
    free(atomic_load(&c->table));
    atomic_store(&c->table, NULL);
}
