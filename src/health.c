/* health.c - active checks, run on the workers' loops, and their state
 * machine.
 *
 * Shape. Each worker checks its share of the pool (applications i with
 * i % workers == its index) on its own loop: one struct health per worker
 * and generation, with one timetable entry and one struct health_check per
 * application, allocated when the worker takes up the generation and never
 * again: its counter and the request text ("GET /health HTTP/1.1", with
 * that application's Host) built once. A check is one exchange of the
 * one-shot HTTP client (httpclient.h), bounded as a whole by one timer,
 * driven by the edge-triggered loop. Nothing blocks, so 2,000 applications at
 * a 1 s interval cost 2,000 short connections per second spread over the
 * workers, and no thread: a thread of its own cost a wake-up and two
 * context switches on a worker's core for every batch of checks, and its
 * batches stalled that worker's requests by a few hundred microseconds at
 * a time (docs/benchmarks.md). Head buffers are borrowed from a free list
 * for the duration of a check only: memory follows the checks in flight,
 * not the number of applications.
 *
 * Schedule. Each application's first check comes at a random offset within
 * one interval and each next one an interval +/- 10% after the previous
 * started, so checks stay spread out even when the applications were all
 * added at once. A result that starts or continues a streak toward `rise`
 * or `fall` brings that application's next check forward to
 * `fast_interval` (+/- 10%) after this one's start: a restarted
 * application is back within about interval + (rise - 1) * fast_interval
 * instead of rise * interval, and a dead one out sooner. Its entry moves
 * up the same timetable (each check knows its entry's place); no timer is
 * added. A check whose time has come waits in a queue that the worker
 * drains a few at a time after each loop iteration (health_run_due), so
 * requests never wait behind a burst of checks. A check still running when
 * the next is due (timeout > interval) makes that round skip rather than
 * overlap.
 *
 * Decisions. health_record (pure) counts passes and failures in a row and
 * says when `rise` or `fall` is reached; the change goes through
 * pool_set_state, a compare-and-swap, so a worker's passive mark-down and a
 * check finishing at the same moment never both report. A result whose
 * application changed state while the check was in flight is discarded: it
 * answers a question about a state that no longer holds.
 */
#include "health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "app_tls.h"
#include "httpclient.h"
#include "log.h"

/* A health endpoint's head fits easily; the client judges a bigger one by
 * its status line. */
#define HEALTH_HEAD_MAX 4096
/* Checks a worker starts per loop iteration at least (health_run_due):
 * a refused check costs about 10-15 us on the benchmark machine, so the
 * requests of one iteration wait about 60 us for checks unless a backlog
 * of more than 16 builds up. */
#define HEALTH_STARTS_PER_ITERATION 4

/* ---- the state machine ---- */

void health_counter_reset(struct health_counter *c, enum app_state state)
{
    c->passes = 0;
    c->failures = 0;
    c->seen = state;
}

enum health_verdict health_record(struct health_counter *c, enum app_state current, bool pass,
                                  int rise, int fall)
{
    if (c->seen != current)
        health_counter_reset(c, current);
    if (current == APP_MAINTENANCE)
        return HEALTH_KEEP;
    if (pass) {
        c->passes++;
        c->failures = 0;
    } else {
        c->failures++;
        c->passes = 0;
    }
    /* A rise or fall below 1 would mean "change on no evidence"; config.c
     * refuses it, and 1 is the safe reading if one slips through. */
    if (current == APP_DOWN && c->passes >= (uint32_t)(rise > 0 ? rise : 1))
        return HEALTH_MARK_UP;
    if (current == APP_UP && c->failures >= (uint32_t)(fall > 0 ? fall : 1))
        return HEALTH_MARK_DOWN;
    return HEALTH_KEEP;
}

/* ---- the schedule ---- */

int64_t health_first_delay(int64_t interval_ms, uint32_t random)
{
    return interval_ms > 0 ? (int64_t)(random % (uint64_t)interval_ms) : 0;
}

int64_t health_next_delay(int64_t interval_ms, uint32_t random)
{
    int64_t spread = interval_ms / 10;
    int64_t delay = interval_ms;
    if (spread > 0)
        delay += (int64_t)(random % (uint64_t)(2 * spread + 1)) - spread;
    return delay > 0 ? delay : 1;
}

/* The counts are reset when a verdict is applied, so a streak that reached
 * rise or fall is no longer under way by the time anyone asks. */
bool health_in_transition(const struct health_counter *c, enum app_state state)
{
    if (c->seen != state)
        return false;
    return (state == APP_DOWN && c->passes > 0) || (state == APP_UP && c->failures > 0);
}

/* ---- the checker ---- */

/* A head buffer, lent to one check at a time. */
struct health_buffer {
    struct health_buffer *next;      /* in the free list */
    char data[HEALTH_HEAD_MAX];
};

/* One application's checks; owned by struct health, for the process. */
struct health_check {
    struct health *health;
    struct app *app;
    struct health_counter counter;
    struct httpclient http;         /* the check in flight */
    struct health_buffer *buffer;    /* lent while a check is in flight */
    enum app_state state_at_start;
    int64_t started;                 /* loop time of the last start */
    int64_t started_us;              /* the same, to the microsecond: the check's duration */
    int slot;                        /* index of its entry in health.schedule */
    bool due;                        /* in the queue of checks to start */
    bool rise_at_once;               /* asked for by enable: one pass brings it up */
    struct health_check *due_next;
    char *request;                   /* the GET, built once; owned */
};

/* When a check is next due. */
struct schedule_entry {
    int64_t deadline;                /* loop time, ms */
    int check;                       /* index in health.checks */
};

struct health {
    struct pool *pool;
    const struct config *cfg;
    struct loop *loop;               /* the worker's */
    /* The checks' own timetable: a min-heap by deadline holding every
     * check exactly once, and one loop timer for its earliest entry. A
     * loop timer per check would put thousands of entries in the heap that
     * each request's timeouts walk. */
    struct schedule_entry *schedule;
    struct loop_timer tick;
    struct health_check *checks;     /* this worker's share of the pool */
    int count;
    struct health_check *due_first;  /* checks whose time came, oldest first */
    struct health_check *due_last;
    int due_count;
    struct health_buffer *free_buffers;
    uint64_t random_state;           /* xorshift64 */
    int spare_budget;                /* sockets the checks may still keep */
    uint64_t seen_check_requests;    /* pool->check_requests when last looked at */
};

static uint32_t health_random(struct health *h)
{
    uint64_t x = h->random_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    h->random_state = x;
    return (uint32_t)(x >> 32);
}

static struct health_buffer *buffer_take(struct health *h)
{
    struct health_buffer *b = h->free_buffers;
    if (b) {
        h->free_buffers = b->next;
        return b;
    }
    return malloc(sizeof(*b));
}

static void buffer_give_back(struct health *h, struct health_buffer *b)
{
    if (!b)
        return;
    b->next = h->free_buffers;
    h->free_buffers = b;
}

static void check_apply(struct health_check *c, enum health_verdict verdict, const char *error)
{
    struct health *h = c->health;
    struct app *app = c->app;
    char reason[POOL_REASON_MAX];
    enum app_state from = verdict == HEALTH_MARK_UP ? APP_DOWN : APP_UP;
    enum app_state to = verdict == HEALTH_MARK_UP ? APP_UP : APP_DOWN;
    if (verdict == HEALTH_MARK_UP)
        snprintf(reason, sizeof(reason), "health check passed (%u consecutive)", c->counter.passes);
    else
        snprintf(reason, sizeof(reason), "health check: %s (%u consecutive)", error, c->counter.failures);
    /* On success the counts start again in the new state; on failure
     * someone else moved it first and the next result resets them. */
    if (pool_set_state(h->pool, app, from, to, reason))
        health_counter_reset(&c->counter, to);
}

/* A line for each result that moves an application toward a change; a
 * down application failing again and again is news only at debug level. */
static void check_log(const struct health_check *c, enum app_state state, bool pass, const char *error)
{
    const struct config *cfg = c->health->cfg;
    const struct config_app *a = c->app->cfg;
    if (state == APP_UP && !pass)
        log_warn("application %s %s health check failed (%u of %d): %s", a->name, a->address.text,
                 c->counter.failures, cfg->health_fall, error);
    else if (state == APP_DOWN && pass)
        log_info("application %s %s health check passed (%u of %d)", a->name, a->address.text,
                 c->counter.passes, cfg->health_rise);
    else if (!pass)
        log_debug("application %s %s (%s) health check failed: %s", a->name, a->address.text,
                  app_state_name(state), error);
}

static void schedule_hurry(struct health_check *c);
static void check_queue(struct health *h, struct health_check *c);

static void check_done(struct httpclient *http, int status, const char *error)
{
    struct health_check *c = container_of(http, struct health_check, http);
    struct health *h = c->health;
    const struct config *cfg = h->cfg;
    char status_reason[32];
    buffer_give_back(h, c->buffer);
    c->buffer = NULL;

    bool pass = !error && config_expect_has(cfg, status);
    if (!error && !pass) {
        snprintf(status_reason, sizeof(status_reason), "status %d", status);
        error = status_reason;
    }
    atomic_store_explicit(&c->app->last_check_time_ms, loop_wall_ms(), memory_order_relaxed);
    atomic_store_explicit(&c->app->last_check_ok, pass, memory_order_relaxed);
    atomic_store_explicit(&c->app->last_check_duration_us, loop_monotonic_us() - c->started_us,
                          memory_order_relaxed);
    atomic_store_explicit(&c->app->last_check_status, error && !status ? 0 : status, memory_order_relaxed);

    enum app_state now = app_state(c->app);
    if (now != c->state_at_start) {
        health_counter_reset(&c->counter, now);
        /* An enable that came while this check ran: the next one counts. */
        if (c->rise_at_once)
            check_queue(h, c);
        return;
    }
    enum health_verdict verdict = health_record(&c->counter, now, pass, cfg->health_rise, cfg->health_fall);
    /* The operator said it is back (enable): one pass is enough. */
    if (c->rise_at_once && pass && now == APP_DOWN)
        verdict = HEALTH_MARK_UP;
    c->rise_at_once = false;
    if (verdict != HEALTH_KEEP)
        check_apply(c, verdict, error);
    else
        check_log(c, now, pass, error);
    if (health_in_transition(&c->counter, app_state(c->app)))
        schedule_hurry(c);
}

static void check_start(struct health_check *c)
{
    struct health *h = c->health;
    enum app_state state = app_state(c->app);
    if (state == APP_MAINTENANCE) {
        health_counter_reset(&c->counter, state);
        return;
    }
    c->buffer = buffer_take(h);
    if (!c->buffer) {
        log_error("application %s: health check skipped: out of memory", c->app->cfg->name);
        return;
    }
    c->state_at_start = state;
    c->started = h->loop->now;
    c->started_us = loop_monotonic_us();
    c->http.buf = c->buffer->data;
    if (httpclient_start(&c->http, h->loop) < 0) {
        buffer_give_back(h, c->buffer);
        c->buffer = NULL;
        log_error("application %s: health check skipped: out of memory", c->app->cfg->name);
    }
}

/* The deadline `delay` ms from now, rounded up to a tick of 1% of the
 * interval (at most 10 ms): checks that fall due in the same tick share one
 * wake-up of an idle worker instead of one each. A wake-up costs more than
 * a refused check on the benchmark machine (docs/benchmarks.md). The
 * spread over the interval stays. */
static int64_t check_deadline(const struct health *h, int64_t delay)
{
    int64_t tick = h->cfg->health_interval_ms / 100;
    int64_t deadline = h->loop->now + (delay > 1 ? delay : 1);
    tick = tick < 1 ? 1 : tick > 10 ? 10 : tick;
    return deadline + (tick - deadline % tick) % tick;
}

/* Every entry is written through here, so that each check knows where its
 * own entry is and can move it without a search. */
static void schedule_place(struct health *h, int i, struct schedule_entry entry)
{
    h->schedule[i] = entry;
    h->checks[entry.check].slot = i;
}

static void schedule_sift_down(struct health *h, int i)
{
    struct schedule_entry *e = h->schedule, moving = e[i];
    for (;;) {
        int child = 2 * i + 1;
        if (child >= h->count)
            break;
        if (child + 1 < h->count && e[child + 1].deadline < e[child].deadline)
            child++;
        if (e[child].deadline >= moving.deadline)
            break;
        schedule_place(h, i, e[child]);
        i = child;
    }
    schedule_place(h, i, moving);
}

static void schedule_sift_up(struct health *h, int i)
{
    struct schedule_entry *e = h->schedule, moving = e[i];
    while (i > 0 && e[(i - 1) / 2].deadline > moving.deadline) {
        schedule_place(h, i, e[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    schedule_place(h, i, moving);
}

/* Every check's first time, at random within the first interval. */
static int schedule_build(struct health *h)
{
    for (int i = 0; i < h->count; i++) {
        int64_t delay = health_first_delay(h->cfg->health_interval_ms, health_random(h));
        schedule_place(h, i, (struct schedule_entry){check_deadline(h, delay), i});
    }
    for (int i = h->count / 2 - 1; i >= 0; i--)
        schedule_sift_down(h, i);
    return h->count ? loop_timer_arm_at(h->loop, &h->tick, h->schedule[0].deadline) : 0;
}

/* A streak under way: the next check fast_interval (+/- 10%) after the
 * start of the one that just ended, or at once when that ran longer. The
 * entry was put an interval ahead when the check was queued; it only ever
 * moves forward here, so a broken streak simply keeps that. fast_interval
 * longer than interval would slow a transition down, and is read as
 * interval. */
static void schedule_hurry(struct health_check *c)
{
    struct health *h = c->health;
    int64_t fast = h->cfg->health_fast_interval_ms;
    if (fast > h->cfg->health_interval_ms)
        fast = h->cfg->health_interval_ms;
    int64_t next = c->started + health_next_delay(fast, health_random(h));
    int64_t deadline = check_deadline(h, next - h->loop->now);
    if (deadline >= h->schedule[c->slot].deadline)
        return;
    h->schedule[c->slot].deadline = deadline;
    schedule_sift_up(h, c->slot);
    /* Re-arming an armed timer moves it within the loop's heap: no memory. */
    if (c->slot == 0 && loop_timer_arm_at(h->loop, &h->tick, deadline) < 0)
        log_error("health: checks stopped: out of memory");
}

static void check_queue(struct health *h, struct health_check *c)
{
    if (httpclient_busy(&c->http) || c->due) {
        log_debug("application %s: previous health check still %s, round skipped", c->app->cfg->name,
                  c->due ? "waiting to start" : "running");
        return;
    }
    /* Started by health_run_due, a few per loop iteration. */
    c->due = true;
    c->due_next = NULL;
    if (h->due_last)
        h->due_last->due_next = c;
    else
        h->due_first = c;
    h->due_last = c;
    h->due_count++;
}

static void schedule_on_tick(struct loop *loop, struct loop_timer *timer)
{
    struct health *h = container_of(timer, struct health, tick);
    struct schedule_entry *first = &h->schedule[0];
    while (first->deadline <= loop->now) {
        /* The next one counts from this start, not from the end: the
         * rhythm does not drift with the applications' response times. */
        check_queue(h, &h->checks[first->check]);
        first->deadline = check_deadline(h, health_next_delay(h->cfg->health_interval_ms, health_random(h)));
        schedule_sift_down(h, 0);
    }
    /* Just taken off the loop's heap, so putting it back needs no memory. */
    if (loop_timer_arm_at(loop, timer, first->deadline) < 0)
        log_error("health: checks stopped: out of memory");
}

bool health_has_due(const struct health *h)
{
    return h && h->due_first;
}

/* The admin API asked for checks at once (enable): queue those of this
 * worker's share. One atomic load per loop iteration while nothing was
 * asked. */
static void take_check_requests(struct health *h)
{
    uint64_t asked = atomic_load_explicit(&h->pool->check_requests, memory_order_acquire);
    if (asked == h->seen_check_requests)
        return;
    h->seen_check_requests = asked;
    for (int i = 0; i < h->count; i++) {
        struct health_check *c = &h->checks[i];
        if (!atomic_exchange_explicit(&c->app->check_requested, false, memory_order_relaxed))
            continue;
        c->rise_at_once = true;
        health_counter_reset(&c->counter, app_state(c->app));
        check_queue(h, c);
    }
}

void health_run_due(struct health *h)
{
    if (!h)
        return;
    take_check_requests(h);
    /* A backlog (many applications, or a worker that was busy for a
     * while) drains a quarter at a time: always progress, never one long
     * stall of the requests this worker serves. */
    int n = h->due_count / 4 > HEALTH_STARTS_PER_ITERATION ? h->due_count / 4 : HEALTH_STARTS_PER_ITERATION;
    while (n-- > 0 && h->due_first) {
        struct health_check *c = h->due_first;
        h->due_first = c->due_next;
        if (!h->due_first)
            h->due_last = NULL;
        h->due_count--;
        c->due = false;
        check_start(c);
    }
}

/* "GET /health HTTP/1.1" with the application's own Host, so that a
 * name-based virtual host answers as it would for real traffic. */
static char *check_build_request(const struct config *cfg, const struct config_app *a)
{
    char host[300];
    bool ipv6 = strchr(a->host, ':') != NULL;
    if (a->default_port)
        snprintf(host, sizeof(host), ipv6 ? "[%s]" : "%s", a->host);
    else
        snprintf(host, sizeof(host), ipv6 ? "[%s]:%u" : "%s:%u", a->host, (unsigned)a->port);
    char *request = NULL;
    if (asprintf(&request,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-health\r\n"
                 "Accept: */*\r\nConnection: close\r\n\r\n",
                 cfg->health_path, host) < 0)
        return NULL;
    return request;
}

/* A path or host with a space or control byte would let the config inject
 * into the request line; config.c should refuse it, this makes sure. */
static bool request_text_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

static int check_init(struct health *h, struct health_check *c, struct app *app)
{
    const struct config *cfg = h->cfg;
    c->health = h;
    c->app = app;
    health_counter_reset(&c->counter, app_state(app));
    httpclient_init(&c->http);
    if (!request_text_ok(app->cfg->host)) {
        log_error("application %s: host \"%s\" cannot be used in a health check", app->cfg->name,
                  app->cfg->host);
        return -EINVAL;
    }
    c->request = check_build_request(cfg, app->cfg);
    if (!c->request)
        return -ENOMEM;
    c->http.address = &app->cfg->address;
    /* The same context, so the same verification, as the proxied traffic:
     * an application whose certificate is refused is down. */
    c->http.tls = app->cfg->tls ? app->cfg->tls_context : NULL;
    c->http.server_name = app_tls_server_name(app->cfg);
    c->http.request = c->request;
    c->http.request_len = strlen(c->request);
    c->http.buf_cap = HEALTH_HEAD_MAX;
    c->http.timeout_ms = cfg->health_timeout_ms > 0 ? cfg->health_timeout_ms : 1000;
    c->http.done = check_done;
    c->http.spare_budget = &h->spare_budget;
    return 0;
}

/* Kept sockets must never be what makes a worker's accept() fail: all
 * workers together may keep a quarter of the descriptors at most. */
static int spare_budget(int count)
{
    struct rlimit fds;
    if (getrlimit(RLIMIT_NOFILE, &fds) < 0 || fds.rlim_cur == RLIM_INFINITY)
        return 0;
    rlim_t budget = fds.rlim_cur / 4 / (rlim_t)count;
    return budget < INT32_MAX ? (int)budget : INT32_MAX;
}

/* Everything the checks need, prepared while errors can still be returned
 * to the caller. */
static int health_prepare(struct health *h, int index, int count)
{
    if (!request_text_ok(h->cfg->health_path) || h->cfg->health_path[0] != '/') {
        log_error("health: path \"%s\" cannot be used in a request", h->cfg->health_path);
        return -EINVAL;
    }
    if (getrandom(&h->random_state, sizeof(h->random_state), GRND_NONBLOCK) != sizeof(h->random_state))
        h->random_state = (uint64_t)loop_monotonic_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    h->random_state = (h->random_state + (uint64_t)index * 0x9E3779B97F4A7C15ull) | 1;  /* never 0 */
    h->spare_budget = spare_budget(count);
    int share = h->pool->count > index ? (h->pool->count - index + count - 1) / count : 0;
    h->checks = calloc((size_t)(share ? share : 1), sizeof(*h->checks));
    h->schedule = calloc((size_t)(share ? share : 1), sizeof(*h->schedule));
    if (!h->checks || !h->schedule)
        return -ENOMEM;
    for (int i = index; i < h->pool->count; i += count) {
        int rc = check_init(h, &h->checks[h->count], &h->pool->apps[i]);
        h->count++;
        if (rc < 0)
            return rc;
    }
    return 0;
}

int health_attach(struct health **out, struct loop *loop, struct pool *pool, const struct config *cfg,
                  int index, int count)
{
    *out = NULL;
    struct health *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->pool = pool;
    h->cfg = cfg;
    h->loop = loop;
    loop_timer_init(&h->tick, schedule_on_tick);
    int rc = health_prepare(h, index < 0 ? 0 : index, count < 1 ? 1 : count);
    if (rc == 0)
        rc = schedule_build(h);
    if (rc < 0) {
        health_detach(h);
        return rc;
    }
    *out = h;
    return 0;
}

void health_detach(struct health *h)
{
    if (!h)
        return;
    loop_timer_cancel(h->loop, &h->tick);
    for (int i = 0; i < h->count; i++) {
        struct health_check *c = &h->checks[i];
        httpclient_cancel(&c->http);
        buffer_give_back(h, c->buffer);
        free(c->request);
    }
    free(h->checks);
    free(h->schedule);
    while (h->free_buffers) {
        struct health_buffer *b = h->free_buffers;
        h->free_buffers = b->next;
        free(b);
    }
    free(h);
}
