/* loop.c - epoll and a timer heap; see loop.h for the model. */
#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LOOP_EVENTS 256

int64_t loop_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t loop_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t loop_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int loop_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg, const char *name)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        pthread_setname_np(*thread, name);
    return -rc;
}

int loop_init(struct loop *loop)
{
    *loop = (struct loop){0};
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return -errno;
    loop->now = loop_monotonic_ms();
    return 0;
}

void loop_close(struct loop *loop)
{
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->epfd = -1;
    free(loop->heap);
    loop->heap = NULL;
    loop->heap_len = loop->heap_cap = 0;
}

static int loop_ctl_add(struct loop *loop, struct loop_io *io, int fd, loop_io_fn fn, uint32_t mask)
{
    struct epoll_event ev = {.events = mask, .data.ptr = io};
    io->fd = fd;
    io->fn = fn;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int loop_add(struct loop *loop, struct loop_io *io, int fd, loop_io_fn fn)
{
    return loop_ctl_add(loop, io, fd, fn, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

int loop_add_reader(struct loop *loop, struct loop_io *io, int fd, loop_io_fn fn)
{
    return loop_ctl_add(loop, io, fd, fn, EPOLLIN);
}

void loop_del(struct loop *loop, struct loop_io *io)
{
    /* close() alone would remove it, but only once every dup of the fd is
     * closed; removing explicitly keeps stale events from reaching a freed io. */
    if (io->fd >= 0)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

/* ---- timer heap ---- */

void loop_timer_init(struct loop_timer *timer, loop_timer_fn fn)
{
    timer->deadline = 0;
    timer->heap_index = SIZE_MAX;
    timer->fn = fn;
}

static void heap_place(struct loop *loop, size_t i, struct loop_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(struct loop *loop, size_t i)
{
    struct loop_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->deadline <= t->deadline)
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void heap_down(struct loop *loop, size_t i)
{
    struct loop_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len && loop->heap[child + 1]->deadline < loop->heap[child]->deadline)
            child++;
        if (loop->heap[child]->deadline >= t->deadline)
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

void loop_timer_cancel(struct loop *loop, struct loop_timer *timer)
{
    size_t i = timer->heap_index;
    if (i == SIZE_MAX)
        return;
    timer->heap_index = SIZE_MAX;
    struct loop_timer *last = loop->heap[--loop->heap_len];
    if (i == loop->heap_len)
        return;
    heap_place(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->heap_index);
}

int loop_timer_arm_at(struct loop *loop, struct loop_timer *timer, int64_t deadline)
{
    if (timer->heap_index != SIZE_MAX) {
        /* Re-arming later is the common case (a timeout pushed back, a
         * request's timer after the previous one's): it only moves `due`,
         * and the heap is fixed up if the old deadline comes first, so a
         * request's several re-arms cost no heap walk. */
        if (deadline >= timer->deadline) {
            timer->due = deadline;
            return 0;
        }
        timer->deadline = timer->due = deadline;
        heap_up(loop, timer->heap_index);
        return 0;
    }
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 256;
        struct loop_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (!heap)
            return -ENOMEM;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    timer->deadline = timer->due = deadline;
    loop->heap_len++;
    heap_place(loop, loop->heap_len - 1, timer);
    heap_up(loop, loop->heap_len - 1);
    return 0;
}

int loop_timer_arm(struct loop *loop, struct loop_timer *timer, int64_t ms)
{
    return loop_timer_arm_at(loop, timer, loop->now + ms);
}

static void loop_run_timers(struct loop *loop)
{
    while (loop->heap_len > 0 && loop->heap[0]->deadline <= loop->now) {
        struct loop_timer *t = loop->heap[0];
        if (t->due > loop->now) {   /* pushed back since it was placed */
            t->deadline = t->due;
            heap_down(loop, 0);
            continue;
        }
        loop_timer_cancel(loop, t);
        t->fn(loop, t);
    }
}

static int loop_wait_ms(struct loop *loop, int max_wait_ms)
{
    if (loop->heap_len == 0)
        return max_wait_ms;
    int64_t until = loop->heap[0]->deadline - loop->now;
    if (until < 0)
        until = 0;
    if (max_wait_ms >= 0 && until > max_wait_ms)
        until = max_wait_ms;
    return until > 1000000 ? 1000000 : (int)until;
}

int loop_run_once(struct loop *loop, int max_wait_ms)
{
    struct epoll_event events[LOOP_EVENTS];
    int n = epoll_wait(loop->epfd, events, LOOP_EVENTS, loop_wait_ms(loop, max_wait_ms));
    if (n < 0 && errno != EINTR)
        return -errno;
    loop->now = loop_monotonic_ms();
    for (int i = 0; i < n; i++) {
        struct loop_io *io = events[i].data.ptr;
        io->fn(loop, io, events[i].events);
    }
    loop_run_timers(loop);
    if (loop->after_iteration)
        loop->after_iteration(loop, loop->after_iteration_arg);
    return 0;
}

int loop_run(struct loop *loop)
{
    while (!loop->stop) {
        int rc = loop_run_once(loop, -1);
        if (rc < 0)
            return rc;
    }
    return 0;
}
