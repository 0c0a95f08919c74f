/* loop.h - one epoll event loop per thread, with timers.
 *
 * Every worker thread (and the alert thread) owns exactly one struct loop.
 * Nothing here is shared between threads.
 *
 * File descriptors are registered edge-triggered once, for both directions,
 * and never modified: the owner remembers readiness itself (see stream.h), so
 * the request path makes no epoll_ctl calls after a connection is set up.
 *
 * Timers live in a binary min-heap keyed by deadline (monotonic ms); a timer
 * stores its own heap index so cancel and re-arm are O(log n) without search.
 */
#ifndef SLUICE_LOOP_H
#define SLUICE_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;

/* events is the epoll mask (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP). */
typedef void (*loop_io_fn)(struct loop *loop, struct loop_io *io, uint32_t events);
typedef void (*loop_timer_fn)(struct loop *loop, struct loop_timer *timer);

/* Embedded in its owner; the owner recovers itself with container_of. */
struct loop_io {
    int fd;
    loop_io_fn fn;
};

struct loop_timer {
    int64_t deadline;     /* monotonic ms: its place in the heap */
    int64_t due;          /* monotonic ms: when it fires (>= deadline; see loop_timer_arm_at) */
    size_t heap_index;    /* position in the heap; SIZE_MAX when not armed */
    loop_timer_fn fn;
};

struct loop {
    int epfd;
    bool stop;            /* set by anyone on this thread to leave loop_run */
    int64_t now;          /* monotonic ms, refreshed once per iteration */
    struct loop_timer **heap;
    size_t heap_len, heap_cap;
    /* Called after each iteration's events and timers: the owner frees
     * objects closed during the batch here (a later event of the same batch
     * may still point at them) and flushes buffered output. */
    void (*after_iteration)(struct loop *loop, void *arg);
    void *after_iteration_arg;
};

int loop_init(struct loop *loop);

/* Starts the thread that owns a loop, named for top -H and ps -L. It takes
 * no process signals: they belong to the main thread (sigwait), and a
 * pending SIGPIPE from an OpenSSL write stays harmless. Returns 0 or -errno. */
int loop_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg, const char *name);
void loop_close(struct loop *loop);

/* Registers fd edge-triggered for EPOLLIN|EPOLLOUT|EPOLLRDHUP. 0 or -errno. */
int loop_add(struct loop *loop, struct loop_io *io, int fd, loop_io_fn fn);
/* Registers fd level-triggered for EPOLLIN only (listeners, pipes). */
int loop_add_reader(struct loop *loop, struct loop_io *io, int fd, loop_io_fn fn);
void loop_del(struct loop *loop, struct loop_io *io);

void loop_timer_init(struct loop_timer *timer, loop_timer_fn fn);
/* Arms (or re-arms) timer to fire ms from now. Returns 0 or -ENOMEM. */
int loop_timer_arm(struct loop *loop, struct loop_timer *timer, int64_t ms);
int loop_timer_arm_at(struct loop *loop, struct loop_timer *timer, int64_t deadline);
void loop_timer_cancel(struct loop *loop, struct loop_timer *timer);
static inline bool loop_timer_armed(const struct loop_timer *timer)
{
    return timer->heap_index != SIZE_MAX;
}

/* Waits at most max_wait_ms (-1: until an event or timer), runs what is ready. */
int loop_run_once(struct loop *loop, int max_wait_ms);
/* Runs until loop->stop is set. */
int loop_run(struct loop *loop);

int64_t loop_monotonic_ms(void);
int64_t loop_monotonic_us(void);
/* Wall clock, ms since the epoch: for timestamps people read, never for
 * intervals. */
int64_t loop_wall_ms(void);

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif
