/* resolver.c - c-ares, asked once at load and then on a thread of its own.
 *
 * ares_getaddrinfo asks for A and AAAA at once, reads /etc/hosts first as
 * the C library does, and gives each address its record's TTL, which sets
 * how soon the name is asked again. Each round opens a fresh channel, so
 * an edited /etc/resolv.conf is read again without a restart.
 *
 * The refresh thread owns its answers; main.c reads a copy under the lock
 * when told that one changed. A failed or empty answer never replaces a
 * good one: an outage of the DNS must not empty the pool.
 */
#include "resolver.h"

#include <ares.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

/* Per server and try: long enough for a distant server, short enough that a
 * dead one does not hold a reload for long. */
#define QUERY_TIMEOUT_MS 1000
#define QUERY_TRIES 2
/* A TTL of 0 must not make the thread spin. */
#define REFRESH_FLOOR_MS 1000

/* One name being asked about, for one round. */
struct query {
    const char *host;
    int *pending;               /* the round's count of unanswered queries */
    int status;                 /* ARES_SUCCESS, or why not */
    struct dns_addresses set;
    int64_t ttl_ms;             /* the shortest of its records'; -1 when none */
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status;

static void library_init(void)
{
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static int channel_open(ares_channel *channel, const char *resolvers)
{
    struct ares_options options = {.timeout = QUERY_TIMEOUT_MS, .tries = QUERY_TRIES};

    pthread_once(&library_once, library_init);
    if (library_status != ARES_SUCCESS)
        return library_status;
    int rc = ares_init_options(channel, &options, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS)
        return rc;
    if (resolvers[0] && (rc = ares_set_servers_ports_csv(*channel, resolvers)) != ARES_SUCCESS)
        ares_destroy(*channel);
    return rc;
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct query *q = arg;

    (void)timeouts;
    q->status = status;
    q->ttl_ms = -1;
    for (struct ares_addrinfo_node *n = res ? res->nodes : NULL; n && status == ARES_SUCCESS;
         n = n->ai_next) {
        dns_addresses_add(&q->set, n->ai_addr);     /* past DNS_ADDRESSES_MAX: the lowest kept */
        int64_t ttl_ms = (int64_t)(n->ai_ttl > 0 ? n->ai_ttl : 0) * 1000;
        if (q->ttl_ms < 0 || ttl_ms < q->ttl_ms)
            q->ttl_ms = ttl_ms;
    }
    if (status == ARES_SUCCESS && q->set.count == 0)
        q->status = ARES_ENODATA;
    if (res)
        ares_freeaddrinfo(res);
    (*q->pending)--;
}

static void ask(ares_channel channel, struct query *q)
{
    /* No sorting: c-ares would open a socket per address to sort by RFC
     * 6724, and sets are sorted here anyway. */
    struct ares_addrinfo_hints hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = ARES_AI_NOSORT,
    };
    (*q->pending)++;
    ares_getaddrinfo(channel, q->host, NULL, &hints, on_answer, q);
}

static int poll_timeout_ms(ares_channel channel)
{
    struct timeval tv, *next = ares_timeout(channel, NULL, &tv);
    return next ? (int)(next->tv_sec * 1000 + (next->tv_usec + 999) / 1000) : 1000;
}

/* Runs the channel until every query has its answer: 0, or -1 when stop_fd
 * (ignored when negative) became readable first. */
static int wait_for_answers(ares_channel channel, const int *pending, int stop_fd)
{
    while (*pending > 0) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        struct pollfd fds[ARES_GETSOCK_MAXNUM + 1];
        /* Unsigned: ARES_GETSOCK_WRITABLE shifts a signed 1 into the sign bit. */
        unsigned bits = (unsigned)ares_getsock(channel, socks, ARES_GETSOCK_MAXNUM);
        int n = 0;
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short events = (short)(((bits >> i) & 1 ? POLLIN : 0) |
                                   ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1 ? POLLOUT : 0));
            if (events)
                fds[n++] = (struct pollfd){.fd = socks[i], .events = events};
        }
        int sockets = n;
        if (stop_fd >= 0)
            fds[n++] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
        int ready = poll(fds, (nfds_t)n, poll_timeout_ms(channel));
        if (ready < 0 && errno != EINTR)
            return -1;
        if (stop_fd >= 0 && (fds[sockets].revents & POLLIN))
            return -1;
        if (ready <= 0) {
            ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            continue;
        }
        for (int i = 0; i < sockets; i++) {
            short got = fds[i].revents;
            if (got)
                ares_process_fd(channel, got & (POLLIN | POLLERR | POLLHUP) ? fds[i].fd : ARES_SOCKET_BAD,
                                got & POLLOUT ? fds[i].fd : ARES_SOCKET_BAD);
        }
    }
    return 0;
}

/* Asks for every host of answers at once (want[i] false: skipped). queries
 * is filled in; 0, -1 when stopped, or an ARES_ error above 0. */
static int ask_all(const char *resolvers, const struct dns_answers *answers, const bool *want,
                   struct query *queries, int stop_fd)
{
    ares_channel channel;
    int pending = 0;
    for (int i = 0; i < answers->count; i++)
        queries[i] = (struct query){.host = answers->items[i].host, .pending = &pending,
                                    .status = ARES_ECANCELLED, .ttl_ms = -1};
    int rc = channel_open(&channel, resolvers);
    if (rc != ARES_SUCCESS)
        return rc;
    for (int i = 0; i < answers->count; i++)
        if (!want || want[i])
            ask(channel, &queries[i]);
    rc = wait_for_answers(channel, &pending, stop_fd);
    ares_destroy(channel);      /* calls back what is still unanswered */
    return rc;
}

/* ---- at load ---- */

static const struct config_app *first_with_host(const struct config *cfg, const char *host)
{
    for (int i = 0; i < cfg->app_count; i++)
        if (cfg->apps[i].by_name && strcmp(cfg->apps[i].host, host) == 0)
            return &cfg->apps[i];
    return NULL;
}

/* The answer to keep for one name: 0, or 1 error written. */
static int take_answer(const struct config *cfg, struct dns_answer *a, const struct query *q,
                       const struct dns_answers *previous, char *errors, size_t errors_len)
{
    const struct dns_answer *before = previous ? dns_answers_find(previous, a->host) : NULL;
    if (q->status == ARES_SUCCESS) {
        a->set = q->set;
        a->known = true;
        a->ttl_ms = q->ttl_ms;
        return 0;
    }
    if (before && before->known) {
        log_warn("dns: %s: %s; keeping the last good answer (%d addresses)", a->host,
                 ares_strerror(q->status), before->set.count);
        a->set = before->set;
        a->known = true;
        a->ttl_ms = -1;
        return 0;
    }
    const struct config_app *app = first_with_host(cfg, a->host);
    size_t used = strlen(errors);
    if (used < errors_len)
        snprintf(errors + used, errors_len - used,
                 "%s:%d:%d: applications.host: cannot resolve \"%s\": %s\n", cfg->path,
                 app->host_line, app->host_col, a->host, ares_strerror(q->status));
    return 1;
}

int resolver_resolve_now(const struct config *cfg, const struct dns_answers *previous,
                         struct dns_answers *out, char *errors, size_t errors_len)
{
    int failed = 0;

    if (dns_answers_init(out, cfg) < 0) {
        snprintf(errors, errors_len, "%s:1:1: out of memory\n", cfg->path);
        return 1;
    }
    if (out->count == 0)
        return 0;
    struct query *queries = calloc((size_t)out->count, sizeof(*queries));
    int rc = queries ? ask_all(cfg->resolvers, out, NULL, queries, -1) : ARES_ENOMEM;
    if (rc != ARES_SUCCESS) {
        snprintf(errors, errors_len, "%s:1:1: cannot set up the DNS resolver: %s\n", cfg->path,
                 ares_strerror(rc));
        failed = 1;
    }
    for (int i = 0; i < out->count && !failed; i++)
        failed += take_answer(cfg, &out->items[i], &queries[i], previous, errors, errors_len);
    free(queries);
    if (failed)
        dns_answers_free(out);
    return failed;
}

/* ---- the refresh thread ---- */

struct resolver {
    pthread_t thread;
    int stop_fd;                /* an eventfd: readable once stopping */
    char *resolvers;            /* owned copy of cfg->resolvers */
    int64_t refresh_ms;
    void (*changed)(void *arg);
    void *arg;
    pthread_mutex_t lock;       /* over answers: this thread writes, others copy */
    struct dns_answers answers;
    int64_t *due_ms;            /* per answer: when to ask again */
    int *condition;             /* per answer: the last status, so that a
                                   failure is logged once, not every round */
    bool *want;                 /* per answer, for one round */
    struct query *queries;      /* per answer, for one round */
};

/* dns_refresh, or a good answer's TTL when shorter, never under a second. */
static int64_t next_interval(const struct resolver *r, int status, int64_t ttl_ms)
{
    if (status != ARES_SUCCESS || ttl_ms < 0 || ttl_ms >= r->refresh_ms)
        return r->refresh_ms;
    return ttl_ms > REFRESH_FLOOR_MS ? ttl_ms : REFRESH_FLOOR_MS;
}

/* Keeps a good answer, logs a change of condition; true when the
 * addresses changed. */
static bool apply(struct resolver *r, int i, const struct query *q)
{
    struct dns_answer *a = &r->answers.items[i];
    bool was_failing = r->condition[i] != ARES_SUCCESS;
    char text[1024];

    if (q->status != ARES_SUCCESS) {
        if (r->condition[i] != q->status)
            log_warn("dns: %s: %s; keeping the last good answer (%d addresses)", a->host,
                     ares_strerror(q->status), a->set.count);
        r->condition[i] = q->status;
        return false;
    }
    r->condition[i] = ARES_SUCCESS;
    if (was_failing)
        log_info("dns: %s: answers again", a->host);
    if (dns_addresses_diff(&a->set, &q->set, text, sizeof(text)) == 0)
        return false;
    log_info("dns: %s: %s", a->host, text);
    pthread_mutex_lock(&r->lock);
    a->set = q->set;
    a->known = true;
    pthread_mutex_unlock(&r->lock);
    return true;
}

/* Waits for the earliest name due; false once stopping. */
static bool wait_until_due(struct resolver *r)
{
    int64_t now = loop_monotonic_ms(), first = INT64_MAX;
    for (int i = 0; i < r->answers.count; i++)
        if (r->due_ms[i] < first)
            first = r->due_ms[i];
    int64_t wait_ms = first > now ? first - now : 0;
    struct pollfd stop = {.fd = r->stop_fd, .events = POLLIN};
    return poll(&stop, 1, (int)(wait_ms < 3600000 ? wait_ms : 3600000)) <= 0 || !(stop.revents & POLLIN);
}

/* Asks for the names due; -1 once stopping. */
static int refresh_round(struct resolver *r)
{
    int64_t now = loop_monotonic_ms();
    for (int i = 0; i < r->answers.count; i++)
        r->want[i] = r->due_ms[i] <= now;
    int rc = ask_all(r->resolvers, &r->answers, r->want, r->queries, r->stop_fd);
    if (rc < 0)
        return -1;
    if (rc != ARES_SUCCESS)
        log_error("dns: cannot set up the resolver: %s", ares_strerror(rc));
    bool changed = false;
    now = loop_monotonic_ms();
    for (int i = 0; i < r->answers.count; i++) {
        if (!r->want[i])
            continue;
        if (rc == ARES_SUCCESS)
            changed |= apply(r, i, &r->queries[i]);
        r->due_ms[i] = now + next_interval(r, r->queries[i].status, r->queries[i].ttl_ms);
    }
    if (changed)
        r->changed(r->arg);
    return 0;
}

static void *resolver_main(void *arg)
{
    struct resolver *r = arg;
    while (wait_until_due(r) && refresh_round(r) == 0) {
    }
    return NULL;
}

static void resolver_free(struct resolver *r)
{
    if (r->stop_fd >= 0)
        close(r->stop_fd);
    dns_answers_free(&r->answers);
    pthread_mutex_destroy(&r->lock);
    free(r->resolvers);
    free(r->due_ms);
    free(r->condition);
    free(r->want);
    free(r->queries);
    free(r);
}

static int resolver_alloc(struct resolver *r, const struct config *cfg, const struct dns_answers *seed)
{
    size_t n = (size_t)seed->count;
    r->resolvers = strdup(cfg->resolvers);
    r->due_ms = calloc(n, sizeof(*r->due_ms));
    r->condition = calloc(n, sizeof(*r->condition));
    r->want = calloc(n, sizeof(*r->want));
    r->queries = calloc(n, sizeof(*r->queries));
    if (!r->resolvers || !r->due_ms || !r->condition || !r->want || !r->queries)
        return -ENOMEM;
    if (dns_answers_copy(&r->answers, seed) < 0)
        return -ENOMEM;
    int64_t now = loop_monotonic_ms();
    for (size_t i = 0; i < n; i++)      /* condition[i] = 0 = ARES_SUCCESS: seeds are good */
        r->due_ms[i] = now + next_interval(r, ARES_SUCCESS, seed->items[i].ttl_ms);
    r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return r->stop_fd < 0 ? -errno : 0;
}

int resolver_start(struct resolver **out, const struct config *cfg, const struct dns_answers *seed,
                   void (*changed)(void *arg), void *arg)
{
    *out = NULL;
    if (seed->count == 0)
        return 0;
    struct resolver *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    *r = (struct resolver){.stop_fd = -1, .refresh_ms = cfg->dns_refresh_ms, .changed = changed,
                           .arg = arg};
    pthread_mutex_init(&r->lock, NULL);
    int rc = resolver_alloc(r, cfg, seed);
    if (rc == 0)
        rc = -pthread_create(&r->thread, NULL, resolver_main, r);
    if (rc < 0) {
        resolver_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int resolver_answers(struct resolver *r, struct dns_answers *out)
{
    pthread_mutex_lock(&r->lock);
    int rc = dns_answers_copy(out, &r->answers);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void resolver_stop(struct resolver *r)
{
    if (!r)
        return;
    uint64_t one = 1;
    if (write(r->stop_fd, &one, sizeof(one)) < 0)
        log_error("dns: cannot stop the resolver thread: %s", strerror(errno));
    pthread_join(r->thread, NULL);
    resolver_free(r);
}
