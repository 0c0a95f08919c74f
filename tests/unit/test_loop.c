/* test_loop.c - the event loop: timers fire in deadline order, a cancelled
 * timer never fires, a re-armed one fires once at its new deadline, the
 * after-iteration hook runs after each iteration's events and timers, and
 * a pipe's readiness reaches its handler (level- and edge-triggered). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "unit.h"

/* What happened, in order: timer ids, 'I' for an fd event, 'A' for the
 * after-iteration hook. */
static char trace[1024];
static size_t trace_len;

static void note(char c)
{
    if (trace_len + 1 < sizeof(trace))
        trace[trace_len++] = c;
    trace[trace_len] = '\0';
}

static void trace_reset(void)
{
    trace_len = 0;
    trace[0] = '\0';
}

struct test_timer {
    struct loop_timer timer;
    char id;
    int fired;
    int64_t fired_at;          /* loop->now when it fired */
};

static void on_timer(struct loop *loop, struct loop_timer *timer)
{
    struct test_timer *t = container_of(timer, struct test_timer, timer);
    t->fired++;
    t->fired_at = loop->now;
    note(t->id);
}

static void timer_init(struct test_timer *t, char id)
{
    *t = (struct test_timer){.id = id};
    loop_timer_init(&t->timer, on_timer);
}

/* Runs iterations, each waiting at most max_wait_ms, until `done` says so
 * or within_ms passes; false if it never did. */
static bool run_until(struct loop *loop, bool (*done)(void *), void *arg, int max_wait_ms,
                      int64_t within_ms)
{
    int64_t deadline = loop_monotonic_ms() + within_ms;
    int rc = 0;
    while (rc == 0 && !done(arg) && loop_monotonic_ms() < deadline)
        rc = loop_run_once(loop, max_wait_ms);
    CHECK_INT(rc, 0);
    return done(arg);
}

static bool has_fired(void *arg)
{
    return ((struct test_timer *)arg)->fired > 0;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void test_deadline_order(void)
{
    struct loop loop;
    struct test_timer t[5];
    CHECK_INT(loop_init(&loop), 0);
    /* armed out of order, all already due: one iteration fires them all,
     * earliest deadline first */
    static const int64_t ago[5] = {3, 50, 1, 20, 7};
    for (int i = 0; i < 5; i++) {
        timer_init(&t[i], (char)('a' + i));
        CHECK_INT(loop_timer_arm_at(&loop, &t[i].timer, loop.now - ago[i]), 0);
        CHECK(loop_timer_armed(&t[i].timer));
    }
    CHECK_INT(loop_run_once(&loop, 0), 0);
    CHECK_STR(trace, "bdeac");
    for (int i = 0; i < 5; i++) {
        CHECK_INT(t[i].fired, 1);
        CHECK(!loop_timer_armed(&t[i].timer));
    }

    /* a timer in the future waits for its deadline, and the wait ends
     * there rather than at the caller's longer bound */
    trace_reset();
    timer_init(&t[0], 'f');
    CHECK_INT(loop_timer_arm(&loop, &t[0].timer, 60), 0);
    int64_t armed = loop_monotonic_ms();
    CHECK_INT(loop_run_once(&loop, 0), 0);
    CHECK_INT(t[0].fired, 0);
    run_until(&loop, has_fired, &t[0], 2000, 3000);
    int64_t took = loop_monotonic_ms() - armed;
    CHECK_INT(t[0].fired, 1);
    CHECK_MSG(took >= 59 && took < 1000, "a 60 ms timer fired after %lld ms", (long long)took);
    CHECK_MSG(t[0].fired_at >= t[0].timer.deadline, "fired at %lld, deadline %lld",
              (long long)t[0].fired_at, (long long)t[0].timer.deadline);
    loop_close(&loop);
}

static void test_cancel(void)
{
    struct loop loop;
    struct test_timer t[4];
    CHECK_INT(loop_init(&loop), 0);
    trace_reset();
    for (int i = 0; i < 4; i++) {
        timer_init(&t[i], (char)('a' + i));
        CHECK_INT(loop_timer_arm_at(&loop, &t[i].timer, loop.now - 10 + i), 0);
    }
    loop_timer_cancel(&loop, &t[0].timer);     /* the earliest: the heap's root */
    loop_timer_cancel(&loop, &t[2].timer);     /* one in the middle */
    loop_timer_cancel(&loop, &t[2].timer);     /* twice is harmless */
    CHECK(!loop_timer_armed(&t[0].timer));
    CHECK(!loop_timer_armed(&t[2].timer));
    CHECK_INT(loop.heap_len, 2);
    CHECK_INT(loop_run_once(&loop, 0), 0);
    CHECK_STR(trace, "bd");
    CHECK_INT(t[0].fired + t[2].fired, 0);

    /* The heap's last timer fills the cancelled one's place and may have
     * to move up. Armed in this order nothing moves, the heap is level by
     * level [1; 100 2; 101 102 3 4; 110 111 112 113 5 6 7 8], and
     * cancelling 101 puts 8 under 100: 8 must still fire before 100. */
    static const int64_t deadlines[15] = {1, 100, 2, 101, 102, 3, 4, 110, 111, 112, 113, 5, 6, 7, 8};
    struct test_timer h[15];
    trace_reset();
    for (int i = 0; i < 15; i++) {
        timer_init(&h[i], (char)('a' + i));
        CHECK_INT(loop_timer_arm_at(&loop, &h[i].timer, loop.now - 1000 + deadlines[i]), 0);
    }
    loop_timer_cancel(&loop, &h[3].timer);
    CHECK_INT(loop_run_once(&loop, 0), 0);
    CHECK_STR(trace, "acfglmnobehijk");

    /* cancelled before its deadline, it stays silent past it */
    timer_init(&t[0], 'x');
    CHECK_INT(loop_timer_arm(&loop, &t[0].timer, 20), 0);
    loop_timer_cancel(&loop, &t[0].timer);
    run_until(&loop, never, NULL, 10, 60);
    CHECK_INT(t[0].fired, 0);
    loop_close(&loop);
}

/* Fires, then arms itself again until it has fired `rounds` times. */
struct repeating {
    struct loop_timer timer;
    int fired, rounds;
};

static void on_repeat(struct loop *loop, struct loop_timer *timer)
{
    struct repeating *r = container_of(timer, struct repeating, timer);
    if (++r->fired < r->rounds)
        CHECK_INT(loop_timer_arm(loop, timer, 1), 0);
}

static bool repeated_enough(void *arg)
{
    struct repeating *r = arg;
    return r->fired >= r->rounds;
}

static void test_rearm(void)
{
    struct loop loop;
    struct test_timer early, late, other;
    CHECK_INT(loop_init(&loop), 0);
    trace_reset();
    timer_init(&early, 'e');
    timer_init(&late, 'l');
    timer_init(&other, 'o');
    CHECK_INT(loop_timer_arm(&loop, &other.timer, 40), 0);
    /* pushed back: fires once, after the other */
    CHECK_INT(loop_timer_arm(&loop, &late.timer, 20), 0);
    CHECK_INT(loop_timer_arm(&loop, &late.timer, 80), 0);
    /* brought forward: fires first */
    CHECK_INT(loop_timer_arm(&loop, &early.timer, 10000), 0);
    CHECK_INT(loop_timer_arm(&loop, &early.timer, 5), 0);
    CHECK_INT(loop.heap_len, 3);
    CHECK(run_until(&loop, has_fired, &late, 10, 3000));
    CHECK_STR(trace, "eol");
    CHECK_INT(early.fired, 1);
    CHECK_INT(late.fired, 1);
    CHECK_MSG(late.fired_at >= late.timer.deadline, "re-armed timer fired %lld ms early",
              (long long)(late.timer.deadline - late.fired_at));

    /* a timer that arms itself again from its own callback */
    struct repeating r = {.rounds = 5};
    loop_timer_init(&r.timer, on_repeat);
    CHECK_INT(loop_timer_arm(&loop, &r.timer, 0), 0);
    CHECK(run_until(&loop, repeated_enough, &r, 10, 3000));
    CHECK_INT(r.fired, 5);
    CHECK(!loop_timer_armed(&r.timer));
    CHECK_INT(loop.heap_len, 0);
    loop_close(&loop);
}

/* Many timers, some cancelled, some re-armed: each survivor fires exactly
 * once and they come out in deadline order (the heap stays a heap). */
#define MANY 300

static struct test_timer many[MANY];
static int64_t last_deadline;
static bool out_of_order;

static void on_many(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    struct test_timer *t = container_of(timer, struct test_timer, timer);
    t->fired++;
    out_of_order |= timer->deadline < last_deadline;
    last_deadline = timer->deadline;
}

static void test_heap_under_churn(void)
{
    struct loop loop;
    uint32_t seed = 7;
    CHECK_INT(loop_init(&loop), 0);
    for (int i = 0; i < MANY; i++) {
        many[i] = (struct test_timer){0};
        loop_timer_init(&many[i].timer, on_many);
        seed = seed * 1103515245u + 12345u;
        CHECK_INT(loop_timer_arm_at(&loop, &many[i].timer, loop.now - 1000 + (seed >> 16) % 900), 0);
    }
    for (int i = 0; i < MANY; i += 3)
        loop_timer_cancel(&loop, &many[i].timer);
    for (int i = 1; i < MANY; i += 3) {
        seed = seed * 1103515245u + 12345u;
        CHECK_INT(loop_timer_arm_at(&loop, &many[i].timer, loop.now - 1000 + (seed >> 16) % 900), 0);
    }
    last_deadline = INT64_MIN;
    out_of_order = false;
    CHECK_INT(loop_run_once(&loop, 0), 0);
    CHECK(!out_of_order);
    int wrong = 0;
    for (int i = 0; i < MANY; i++)
        wrong += many[i].fired != (i % 3 == 0 ? 0 : 1);
    CHECK_INT(wrong, 0);
    CHECK_INT(loop.heap_len, 0);
    loop_close(&loop);
}

/* ---- file descriptors and the after-iteration hook ---- */

struct reader {
    struct loop_io io;
    int events;                /* handler calls */
    uint32_t last;             /* their last epoll mask */
    bool drain;                /* read what is there */
};

static void on_readable(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)loop;
    struct reader *r = container_of(io, struct reader, io);
    char buf[64];
    r->events++;
    r->last = events;
    note('I');
    if (r->drain)
        while (read(io->fd, buf, sizeof(buf)) > 0)
            ;
}

static void after_iteration(struct loop *loop, void *arg)
{
    (void)loop;
    ++*(int *)arg;
    note('A');
}

static bool make_pipe(int fds[2])
{
    bool ok = pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0;
    CHECK_MSG(ok, "pipe2 failed");
    return ok;
}

static void test_pipe_level_triggered(void)
{
    struct loop loop;
    struct reader r = {.drain = false};
    int fds[2], hooks = 0;
    CHECK_INT(loop_init(&loop), 0);
    if (!make_pipe(fds)) {
        loop_close(&loop);
        return;
    }
    loop.after_iteration = after_iteration;
    loop.after_iteration_arg = &hooks;
    CHECK_INT(loop_add_reader(&loop, &r.io, fds[0], on_readable), 0);
    CHECK_INT(r.io.fd, fds[0]);

    /* nothing written: no event, but the hook runs all the same */
    trace_reset();
    CHECK_INT(loop_run_once(&loop, 0), 0);
    CHECK_INT(r.events, 0);
    CHECK_INT(hooks, 1);
    CHECK_STR(trace, "A");

    /* a byte: the handler, then a due timer, then the hook */
    struct test_timer t;
    timer_init(&t, 'T');
    CHECK_INT(loop_timer_arm_at(&loop, &t.timer, loop.now - 1), 0);
    CHECK(write(fds[1], "x", 1) == 1);
    trace_reset();
    CHECK_INT(loop_run_once(&loop, 1000), 0);
    CHECK_STR(trace, "ITA");
    CHECK_INT(r.events, 1);
    CHECK(r.last & EPOLLIN);

    /* level-triggered: left unread, it is reported again */
    CHECK_INT(loop_run_once(&loop, 1000), 0);
    CHECK_INT(r.events, 2);
    r.drain = true;
    CHECK_INT(loop_run_once(&loop, 1000), 0);
    CHECK_INT(r.events, 3);
    CHECK_INT(loop_run_once(&loop, 0), 0);     /* drained: quiet */
    CHECK_INT(r.events, 3);

    /* removed: a write no longer reaches the handler */
    loop_del(&loop, &r.io);
    CHECK(write(fds[1], "y", 1) == 1);
    CHECK_INT(loop_run_once(&loop, 20), 0);
    CHECK_INT(r.events, 3);
    CHECK_INT(hooks, 6);              /* once per iteration */
    close(fds[0]);
    close(fds[1]);
    loop_close(&loop);
}

static void test_pipe_edge_triggered(void)
{
    struct loop loop;
    struct reader r = {.drain = false};
    int fds[2];
    CHECK_INT(loop_init(&loop), 0);
    if (!make_pipe(fds)) {
        loop_close(&loop);
        return;
    }
    CHECK_INT(loop_add(&loop, &r.io, fds[0], on_readable), 0);
    CHECK(write(fds[1], "x", 1) == 1);
    CHECK_INT(loop_run_once(&loop, 1000), 0);
    CHECK_INT(r.events, 1);
    CHECK(r.last & EPOLLIN);
    /* edge-triggered: unread data is not reported twice ... */
    CHECK_INT(loop_run_once(&loop, 20), 0);
    CHECK_INT(r.events, 1);
    /* ... but new data is */
    CHECK(write(fds[1], "y", 1) == 1);
    CHECK_INT(loop_run_once(&loop, 1000), 0);
    CHECK_INT(r.events, 2);
    /* the writer going away is an event of its own */
    close(fds[1]);
    CHECK_INT(loop_run_once(&loop, 1000), 0);
    CHECK_INT(r.events, 3);
    CHECK_MSG(r.last & EPOLLHUP, "events %#x", r.last);
    loop_del(&loop, &r.io);
    close(fds[0]);
    loop_close(&loop);
}

/* loop_run returns once a handler sets stop. */
static void stop_loop(struct loop *loop, struct loop_timer *timer)
{
    (void)timer;
    loop->stop = true;
}

/* A timerfd, apart from the loop's own timers, ends loop_run should the
 * timer under test never fire. */
static void stop_by_fallback(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)io;
    (void)events;
    loop->stop = true;
    note('F');
}

static void test_run_until_stop(void)
{
    struct loop loop;
    struct loop_timer t;
    struct loop_io fallback;
    struct itimerspec in_2s = {.it_value.tv_sec = 2};
    int hooks = 0, tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK_INT(loop_init(&loop), 0);
    CHECK(tfd >= 0 && timerfd_settime(tfd, 0, &in_2s, NULL) == 0);
    if (tfd < 0) {
        loop_close(&loop);
        return;
    }
    CHECK_INT(loop_add_reader(&loop, &fallback, tfd, stop_by_fallback), 0);
    loop.after_iteration = after_iteration;
    loop.after_iteration_arg = &hooks;
    loop_timer_init(&t, stop_loop);
    CHECK_INT(loop_timer_arm(&loop, &t, 10), 0);
    trace_reset();
    int64_t t0 = loop_monotonic_ms();
    CHECK_INT(loop_run(&loop), 0);
    int64_t took = loop_monotonic_ms() - t0;
    CHECK(loop.stop);
    CHECK_MSG(strchr(trace, 'F') == NULL, "stopped by the fallback after %lld ms", (long long)took);
    CHECK(hooks >= 1);
    CHECK_MSG(took >= 9 && took < 1000, "loop_run took %lld ms", (long long)took);
    loop_del(&loop, &fallback);
    close(tfd);
    loop_close(&loop);
    loop_close(&loop);                         /* twice is harmless */
}

void unit_test_loop(void)
{
    test_deadline_order();
    test_cancel();
    test_rearm();
    test_heap_under_churn();
    test_pipe_level_triggered();
    test_pipe_edge_triggered();
    test_run_until_stop();
}
