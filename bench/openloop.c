/* openloop.c - a fixed-rate HTTP/1.1 load generator for latency questions.
 *
 *   openloop PORT RATE SECONDS [CONNECTIONS]
 *
 * wrk is closed-loop: it sends as fast as answers come back, so it always
 * runs the proxy at saturation, where any extra work (such as health
 * checks) shows up as queueing at the tail. This sends GET / at RATE
 * requests a second, spread over CONNECTIONS keep-alive connections to
 * 127.0.0.1:PORT, whatever the answers do, and measures each request from
 * the moment it was *due* (so a stall also counts for the requests it
 * delayed). It prints "requests p50_ms p99_ms p999_ms max_ms errors".
 */
#ifndef _GNU_SOURCE   /* the Makefile's flags define it already */
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 256
#define QUEUE 4096

static const char request[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

struct connection {
    int fd;
    int64_t due[QUEUE];        /* due times of requests sent or waiting, oldest first */
    unsigned head, tail;       /* due[head..tail) */
    unsigned sent;             /* requests of the queue already written */
    char buf[8192];
    size_t len;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int open_connection(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

/* Writes the requests that are due and not yet sent (pipelining is fine:
 * the proxy answers in order). */
static int send_due(struct connection *c)
{
    while (c->head + c->sent < c->tail) {
        if (write(c->fd, request, sizeof(request) - 1) != (ssize_t)(sizeof(request) - 1))
            return -1;
        c->sent++;
    }
    return 0;
}

/* Consumes complete responses from the buffer; returns how many. */
static int take_responses(struct connection *c, int64_t *lat, size_t *nlat, size_t cap, int *errors)
{
    int done = 0;
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end)
            return done;
        size_t head = (size_t)(end - c->buf) + 4;
        const char *cl = memmem(c->buf, head, "Content-Length: ", 16);
        size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
        if (c->len < head + body)
            return done;
        if (memcmp(c->buf, "HTTP/1.1 200", 12) != 0)
            (*errors)++;
        int64_t due = c->due[c->head % QUEUE];
        c->head++;
        c->sent--;
        if (*nlat < cap)
            lat[(*nlat)++] = now_ns() - due;
        memmove(c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
        done++;
    }
}

static int compare(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: openloop PORT RATE SECONDS [CONNECTIONS]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    double rate = atof(argv[2]), seconds = atof(argv[3]);
    int nconn = argc > 4 ? atoi(argv[4]) : 32;
    if (nconn < 1 || nconn > MAX_CONNECTIONS || rate <= 0 || seconds <= 0)
        return 2;
    static struct connection conns[MAX_CONNECTIONS];
    int ep = epoll_create1(0);
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = open_connection(port);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    size_t total = (size_t)(rate * seconds), nlat = 0;
    int64_t *lat = calloc(total + 1, sizeof(*lat));
    int errors = 0;
    int64_t start = now_ns(), interval = (int64_t)(1e9 / rate);
    size_t scheduled = 0, answered = 0;
    int64_t stop_at = start + (int64_t)(seconds * 1e9) + 5000000000LL;
    while (answered < total && now_ns() < stop_at) {
        int64_t now = now_ns();
        while (scheduled < total && start + (int64_t)scheduled * interval <= now) {
            struct connection *c = &conns[scheduled % (size_t)nconn];
            if (c->tail - c->head >= QUEUE) {
                fprintf(stderr, "openloop: the proxy fell %d requests behind\n", QUEUE);
                return 1;
            }
            c->due[c->tail++ % QUEUE] = start + (int64_t)scheduled * interval;
            scheduled++;
            if (send_due(c) < 0)
                errors++;
        }
        int64_t next = scheduled < total ? start + (int64_t)scheduled * interval : now + 1000000;
        int wait_ms = (int)((next - now_ns()) / 1000000);
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, wait_ms < 0 ? 0 : wait_ms);
        for (int i = 0; i < n; i++) {
            struct connection *c = evs[i].data.ptr;
            ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
            if (r <= 0) {
                fprintf(stderr, "openloop: connection closed by the proxy\n");
                return 1;
            }
            c->len += (size_t)r;
            answered += (size_t)take_responses(c, lat, &nlat, total, &errors);
        }
    }
    qsort(lat, nlat, sizeof(*lat), compare);
#define PCT(p) (nlat ? (double)lat[(size_t)((double)(nlat - 1) * (p))] / 1e6 : 0.0)
    printf("%zu %.3f %.3f %.3f %.3f %d\n", nlat, PCT(0.5), PCT(0.99), PCT(0.999), PCT(1.0),
           errors + (int)(total - answered));
    free(lat);
    return 0;
}
