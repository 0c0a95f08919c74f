/* exchange.c - one request and its response: parse -> pick -> connect or
 * reuse -> forward -> stream back -> log. See exchange.h.
 *
 * Both directions run at once (an application may answer before the body
 * has arrived, and Expect: 100-continue needs the 100 to flow back while the
 * client waits), so an exchange that forwards is not a linear sequence of
 * states: the request side (body still coming or done) moves on its own,
 * and exchange_step moves whatever bytes can move and reports whether
 * anything did. The state enum says where the response is.
 *
 * Buffers (buf.h) are taken from the worker's free list only while bytes
 * are in flight:
 *   client->in  request bytes from the client (head, body, pipelined
 *               requests); the client connection's
 *   x->fwd      the request head as rewrite.c wrote it for the application;
 *               kept until the response begins so that a failed attempt can
 *               be sent again elsewhere, and the access log reads its fields
 *               from here
 *   x->out      response heads and sluice's own answers for the client
 *   up->s.in    response bytes from the application
 * Bodies are never copied: they are written from the buffer they were read
 * into, with writev putting a head and the first body bytes in one call.
 */
#include "exchange.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewrite.h"
#include "upstream.h"

/* Applications tried for one request at most: retries is capped at 100. */
#define MAX_ATTEMPTS 101
/* A response body with at least this much left, in the clear both ways,
 * goes socket to socket through a pipe (stream_pipe): below it, the pipe's
 * two system calls save nothing over a read and a write. */
#define SPLICE_MIN 16384

enum request_side { REQ_BODY, REQ_DONE };

struct exchange {
    struct proxy *p;
    struct stream *client;              /* the client connection's; never closed here */
    const char *client_ip;
    void (*wake)(void *conn);
    void *conn;
    struct exchange *next_free;
    struct exchange *next_waiter;       /* in p->body_waiters or p->slot_waiters */
    enum exchange_state state;
    bool parsed;                        /* req holds a parsed head */
    bool keep_alive;                    /* the connection stays open after this answer */
    bool tunnel_in_done;                /* tunnel: the client finished sending */
    bool tunnel_out_done;               /* tunnel: the application finished sending */
    bool waiting_body;                  /* on p->body_waiters */
    bool queued_once;                   /* has waited: goes first when refused again */
    bool waiting_slot;                  /* on p->slot_waiters */
    int64_t queued_ms;                  /* loop time it began to wait for a slot */
    uint32_t body_block;                /* size of the body block client->in holds; 0: none */
    struct upstream *up;
    struct buf fwd, out;

    /* the request; its header views are valid only in the step that parsed
     * it (the worker's header array is shared) */
    struct http1_request req;
    uint64_t hash_key;                  /* for algorithm = "hash", kept for retries */
    enum request_side req_side;
    uint64_t req_body_left;
    struct http1_chunked req_chunked;
    uint32_t req_ready;                 /* body bytes at client->in's start, checked, not yet sent */
    bool sent_any;                      /* this attempt wrote bytes to the application */
    bool upload_failed;                 /* a write to the application failed: send no more */
    bool retryable;                     /* idempotent and bodiless: may be sent again */
    int64_t body_start_ms;              /* loop time the body began to be awaited */
    uint64_t body_received;             /* body bytes (as sent) received so far */
    int attempts;
    int fail_status;                    /* for the client if no try succeeds; 0 = 503 */
    uint16_t tried[MAX_ATTEMPTS];       /* application indexes */

    /* the response */
    struct http1_response res;
    uint64_t resp_body_left;
    struct http1_chunked resp_chunked;
    uint32_t resp_ready;                /* body bytes at up->s.in's start, checked, not yet sent */
    struct stream_pipe pipe;            /* body bytes on their way without a copy, when spliced */
    bool resp_complete;                 /* every body byte has been read from the application */
    bool upstream_reusable;

    /* the access log; its views point into client->in or x->fwd */
    struct log_request log;
    int64_t start_us;
    struct app *app;                    /* the application that answered, if any */
    char request_id[40];
};

static void dispatch(struct exchange *x);
static void answer_error(struct exchange *x, int status);

static enum step abort_exchange(struct exchange *x)
{
    x->state = EXCHANGE_ABORT;
    return STEP_CLOSE;
}

static bool method_is_idempotent(enum http1_method m)
{
    /* RFC 9110 section 9.2.2 */
    return m == HTTP1_METHOD_GET || m == HTTP1_METHOD_HEAD || m == HTTP1_METHOD_OPTIONS ||
           m == HTTP1_METHOD_TRACE || m == HTTP1_METHOD_PUT || m == HTTP1_METHOD_DELETE;
}

/* ------------------------------------------------------------------ */
/* lifetime                                                            */

struct exchange *exchange_new(struct proxy *p, struct stream *client, const char *ip,
                              void (*wake)(void *conn), void *conn)
{
    struct exchange *x = p->free_exchanges;
    if (x) {
        p->free_exchanges = x->next_free;
        memset(x, 0, sizeof(*x));
    } else if (!(x = calloc(1, sizeof(*x)))) {
        return NULL;
    }
    x->p = p;
    x->client = client;
    x->client_ip = ip;
    x->wake = wake;
    x->conn = conn;
    x->state = EXCHANGE_LOCAL;
    x->pipe = (struct stream_pipe){.rd = -1, .wr = -1};
    return x;
}

/* Separates the application's connection from the exchange: back to the
 * idle pool when it can carry another request, closed otherwise. */
static void give_back_slot(struct proxy *p, struct app *app);

static void upstream_detach(struct exchange *x, bool reusable)
{
    struct upstream *u = x->up;
    if (!u)
        return;
    give_back_slot(x->p, u->app);
    x->up = NULL;
    upstream_release(u, reusable && !x->p->stopping);
}

static void give_back_body_block(struct exchange *x);
static void leave_body_waiters(struct exchange *x);
static void leave_slot_waiters(struct exchange *x);

void exchange_free(struct exchange *x)
{
    struct proxy *p = x->p;
    /* Here, not when answered: a body cut short counts what moved. */
    if (x->body_received)
        counters_add(&p->counters.bytes_in, x->body_received);
    if (x->log.bytes_sent)
        counters_add(&p->counters.bytes_out, x->log.bytes_sent);
    leave_body_waiters(x);
    leave_slot_waiters(x);
    give_back_body_block(x);
    upstream_detach(x, false);
    buf_release(p->buffers, &x->fwd);
    buf_release(p->buffers, &x->out);
    stream_pipe_put(&p->pipes, &x->pipe);
    x->next_free = p->free_exchanges;
    p->free_exchanges = x;
}

void exchanges_free(struct proxy *p)
{
    while (p->free_exchanges) {
        struct exchange *x = p->free_exchanges;
        p->free_exchanges = x->next_free;
        free(x);
    }
}

static bool app_in_pool(const struct app *app, const struct pool *pool)
{
    uintptr_t a = (uintptr_t)app, first = (uintptr_t)pool->apps;
    return app && a >= first && a < first + (uintptr_t)pool->count * sizeof(*app);
}

bool exchange_uses_pool(const struct exchange *x, const struct pool *pool)
{
    return app_in_pool(x->app, pool) || (x->up && app_in_pool(x->up->app, pool));
}

enum exchange_state exchange_state(const struct exchange *x)
{
    return x->state;
}

/* ------------------------------------------------------------------ */
/* counters and the access log                                         */

/* The application's failure as the metrics name it. */
static void count_failure(struct exchange *x, const struct app *app, enum counters_failure kind)
{
    struct counters_app *a = counters_app(&x->p->counters, app);
    if (a)
        counters_add(&a->failures[kind], 1);
}

static void count_answer(struct exchange *x, int status, int64_t duration_us)
{
    struct proxy_counters *c = &x->p->counters;
    int class = status / 100 - 1;
    counters_add(&c->requests[class < 0 || class >= COUNTERS_CLASSES ? COUNTERS_CLASSES - 1 : class], 1);
    counters_observe(&c->duration, duration_us);
    /* An answer of sluice's own (502 after a failure, a redirect) is not
     * the application's response time. */
    struct counters_app *a = x->state == EXCHANGE_LOCAL ? NULL : counters_app(c, x->app);
    if (a)
        counters_observe(&a->response_time, duration_us);
}

/* A request is answered: counted, and logged when the access log is on.
 * The one clock read per request is here (measured: docs/metrics.md). */
static void log_finish(struct exchange *x, int status)
{
    struct log_request *r = &x->log;
    int64_t duration_us = loop_monotonic_us() - x->start_us;
    count_answer(x, status, duration_us);
    if (!x->p->access_log->buf)
        return;   /* access log off: no line to build */
    r->client_ip = x->client_ip;
    r->tls = x->client->ssl != NULL;
    r->status = status;
    r->app_name = x->app ? x->app->cfg->name : "-";
    r->duration_us = duration_us;
    r->time_ms = loop_wall_ms();
    if (!r->method) {
        r->method = "-";
        r->method_len = 1;
        r->target = "-";
        r->target_len = 1;
    }
    log_access_write(x->p->access_log, r);
}

/* ------------------------------------------------------------------ */
/* sluice's own answers                                                */

/* Body bytes of the current request that were read but will not be sent
 * (the request is answered otherwise): they must never be parsed as the
 * next request. */
static void drop_unsent_body(struct exchange *x)
{
    if (x->req_ready) {
        buf_consume(&x->client->in, x->req_ready);
        x->req_ready = 0;
    }
}

static void answer_local(struct exchange *x, int status, const char *extra_headers, const char *body)
{
    struct proxy *p = x->p;
    leave_body_waiters(x);
    leave_slot_waiters(x);
    upstream_detach(x, false);
    drop_unsent_body(x);
    /* x->fwd stays: the access log line still reads from it. x->out may
     * still hold a 1xx head not yet (wholly) sent: the answer follows it. */
    if (buf_acquire(p->buffers, &x->out) < 0) {
        abort_exchange(x);
        return;
    }
    /* The connection survives only a complete request answered in full. */
    if (status == 400 || status == 408 || status == 413 || status == 431 || status == 501 ||
        status == 505 || x->req_side != REQ_DONE || p->stopping)
        x->keep_alive = false;
    bool head_only = x->parsed && x->req.method == HTTP1_METHOD_HEAD;
    if (!rewrite_local_answer(&x->out, status, extra_headers, body, x->keep_alive, head_only)) {
        abort_exchange(x);
        return;
    }
    x->log.status = status;
    x->log.bytes_sent = head_only ? 0 : strlen(body);
    x->state = EXCHANGE_LOCAL;
    if (status >= 500)
        log_warn("client %s: answered %d %s%s%s", x->client_ip, status, http1_reason(status),
                 x->app ? " after trying " : "", x->app ? x->app->cfg->name : "");
    else
        log_info("client %s: answered %d %s", x->client_ip, status, http1_reason(status));
}

static void answer_error(struct exchange *x, int status)
{
    char body[80];
    snprintf(body, sizeof(body), "%d %s\n", status, http1_reason(status));
    answer_local(x, status, status == 503 ? "Retry-After: 5\r\n" : "", body);
}

static int status_for_parse_error(enum http1_error e)
{
    switch (e) {
    case HTTP1_E_HEAD_TOO_LARGE:
    case HTTP1_E_TOO_MANY_HEADERS:
        return 431;
    case HTTP1_E_NOT_IMPLEMENTED:
        return 501;
    default:
        return 400;
    }
}

void exchange_mark_http2(struct exchange *x)
{
    x->log.http2 = true;
}

void exchange_refuse(struct exchange *x, int status, int64_t start_us)
{
    x->start_us = start_us;
    x->req_side = REQ_BODY;   /* the rest of the input is not trusted */
    answer_error(x, status);
}

/* ------------------------------------------------------------------ */
/* choosing and reaching an application                                */

static uint64_t hash_cookie(const struct http1_header *h, const char *name)
{
    size_t nlen = strlen(name);
    for (const char *p = h ? h->value : NULL; p && p + nlen < h->value + h->value_len; p++) {
        if ((p == h->value || p[-1] == ' ' || p[-1] == ';') && p[nlen] == '=' && memcmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1, *end = v;
            while (end < h->value + h->value_len && *end != ';')
                end++;
            return balance_hash(v, (size_t)(end - v));
        }
    }
    return 0;
}

static const struct http1_header *find_header(const struct http1_request *r, const char *lower)
{
    for (uint32_t i = 0; i < r->header_count; i++)
        if (http1_name_is(&r->headers[i], lower, strlen(lower)))
            return &r->headers[i];
    return NULL;
}

static uint64_t request_hash(const struct exchange *x)
{
    const struct config *cfg = x->p->cfg;
    const struct http1_request *r = &x->req;
    switch (cfg->hash_key) {
    case HASH_URI:
        return balance_hash(r->path, r->path_len);
    case HASH_HEADER: {
        const struct http1_header *h = find_header(r, cfg->hash_key_name);
        return h ? balance_hash(h->value, h->value_len) : 0;
    }
    case HASH_COOKIE:
        return hash_cookie(find_header(r, "cookie"), cfg->hash_key_name);
    case HASH_CLIENT_IP:
        break;
    }
    return balance_hash(x->client_ip, strlen(x->client_ip));
}

static void on_upstream_ready(void *owner);
static void on_upstream_timeout(void *owner);
static bool receiving_body(const struct exchange *x);

static const struct upstream_owner upstream_ops = {
    .ready = on_upstream_ready,
    .timeout = on_upstream_timeout,
};

/* A request slot at app: one more in flight, unless max_requests are
 * already (counted across workers, so a compare-and-swap). */
static bool take_slot(struct app *app)
{
    uint32_t max = app->cfg->max_requests;
    if (!max) {
        atomic_fetch_add_explicit(&app->active, 1, memory_order_relaxed);
        return true;
    }
    int64_t seen = atomic_load_explicit(&app->active, memory_order_relaxed);
    do {
        if (seen >= max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&app->active, &seen, seen + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

static void give_back_slot(struct proxy *p, struct app *app)
{
    /* The last request of a draining application ends its drain (admin
     * API): the state is read only then, so this costs the request path
     * nothing else. */
    if (atomic_fetch_sub_explicit(&app->active, 1, memory_order_relaxed) == 1 &&
        app_state(app) == APP_DRAINING)
        pool_finish_drain(p->pool, app);
    if (app->cfg->max_requests)
        p->slot_freed = true;
}

static void attach(struct exchange *x, struct upstream *u)
{
    x->up = u;
    x->app = u->app;
    x->sent_any = false;
    x->upload_failed = false;
    x->fwd.head = 0;
    struct counters_app *a = counters_app(&x->p->counters, u->app);
    if (a)
        counters_add(&a->requests, 1);
}

/* Applications skipped for being at max_requests, per pick at most. */
#define FULL_SKIPPED_MAX 64

/* The next application to try that has a free slot (taken), or NULL;
 * *all_full says whether some were skipped only for being full. */
static struct app *pick_with_slot(struct exchange *x, bool *all_full)
{
    struct proxy *p = x->p;
    uint16_t skip[MAX_ATTEMPTS + FULL_SKIPPED_MAX];
    int n = x->attempts;
    memcpy(skip, x->tried, (size_t)n * sizeof(skip[0]));
    *all_full = false;
    for (;;) {
        struct app *app = balance_pick(p->balance, x->hash_key, skip, n);
        if (!app)
            return NULL;
        if (take_slot(app))
            return app;
        *all_full = true;
        if (n == (int)(sizeof(skip) / sizeof(skip[0])))
            return NULL;
        skip[n++] = (uint16_t)app->index;
    }
}

static void wait_for_slot(struct exchange *x);

/* Sends the request to the next application that can take it: a reused
 * idle connection when there is one, a new one otherwise. app, when not
 * NULL, is the first to try, its request slot already taken. */
static void dispatch_to(struct exchange *x, struct app *app)
{
    struct proxy *p = x->p;
    for (; x->attempts <= p->cfg->retries; app = NULL) {
        bool all_full;
        if (!app && !(app = pick_with_slot(x, &all_full)) && all_full) {
            wait_for_slot(x);
            return;
        }
        if (!app)
            break;
        x->tried[x->attempts++] = (uint16_t)app->index;
        int err = 0;
        struct upstream *u = upstream_get(&p->upstreams, app, &upstream_ops, x, &err);
        if (u) {
            attach(x, u);
            return;
        }
        give_back_slot(p, app);
        if (err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS) {
            /* sluice's own shortage, not the application's fault. */
            log_error("cannot connect to application %s: %s", app->cfg->name, strerror(err));
            answer_error(x, 503);
            return;
        }
        log_warn("application %s %s: %s", app->cfg->name, app->cfg->address.text, upstream_error_text(err));
        count_failure(x, app, COUNTERS_FAIL_CONNECT);
        pool_note_failure(p->pool, app, p->loop->now, upstream_error_text(err));
    }
    if (app)
        give_back_slot(p, app);   /* out of retries with a slot in hand */
    /* None up, or none reached: 503 (with Retry-After). An application that
     * had the request and failed it: 502, or 504 when it stayed silent. */
    answer_error(x, x->fail_status ? x->fail_status : 503);
}

static void dispatch(struct exchange *x)
{
    dispatch_to(x, NULL);
}

/* Every candidate is at max_requests: the request waits, in arrival order
 * on this worker, for a slot (HAProxy's per-server maxconn and queue). A
 * slot freed here is seen after the loop iteration; one freed on another
 * worker by the queue timer's next look. */
#define QUEUE_LOOK_MS 10

static void queue_push(struct exchange_queue *q, struct exchange *x, bool first)
{
    if (first || !q->first) {
        x->next_waiter = q->first;
        q->first = x;
        if (!q->last)
            q->last = x;
        return;
    }
    x->next_waiter = NULL;
    q->last->next_waiter = x;
    q->last = x;
}

static void queue_remove(struct exchange_queue *q, struct exchange *x)
{
    struct exchange **at = &q->first, *prev = NULL;
    while (*at != x) {
        prev = *at;
        at = &(*at)->next_waiter;
    }
    *at = x->next_waiter;
    if (q->last == x)
        q->last = prev;
}

static void leave_slot_waiters(struct exchange *x)
{
    struct proxy *p = x->p;
    if (!x->waiting_slot)
        return;
    queue_remove(&p->slot_waiters, x);
    p->slot_waiters_count--;
    x->waiting_slot = false;
    x->log.queue_ms = p->loop->now - x->queued_ms;
    if (!p->slot_waiters.first)
        loop_timer_cancel(p->loop, &p->queue_timer);
}

static void wait_for_slot(struct exchange *x)
{
    struct proxy *p = x->p;
    /* Back in the queue (its connect failed, or the slot was gone): it
     * keeps its place at the front and its time in the queue so far. */
    bool again = x->log.queued;
    x->waiting_slot = true;
    if (!again) {
        x->queued_ms = p->loop->now;
        x->log.queue_ahead = p->slot_waiters_count;
    }
    x->log.queued = true;
    p->slot_waiters_count++;
    queue_push(&p->slot_waiters, x, again);
    if (!loop_timer_armed(&p->queue_timer))
        loop_timer_arm(p->loop, &p->queue_timer, QUEUE_LOOK_MS);
}

/* Each waiter in turn tries again; those past the queue limit get 503. */
static void serve_slot_waiters(struct proxy *p)
{
    struct exchange *x = p->slot_waiters.first;
    while (x) {
        struct exchange *next = x->next_waiter;
        bool expired = p->loop->now - x->queued_ms >= p->cfg->queue_timeout_ms;
        bool all_full;
        struct app *app = expired ? NULL : pick_with_slot(x, &all_full);
        if (app) {
            leave_slot_waiters(x);
            dispatch_to(x, app);   /* with the slot it found: no one can take it meanwhile */
            x->wake(x->conn);
        } else if (expired) {
            leave_slot_waiters(x);
            log_warn("client %s: every application at max_requests for %" PRId64 " ms", x->client_ip,
                     p->loop->now - x->queued_ms);
            answer_error(x, 503);
            x->wake(x->conn);
        }
        x = next;
    }
    if (p->slot_waiters.first)
        loop_timer_arm(p->loop, &p->queue_timer, QUEUE_LOOK_MS);
}

void exchanges_queue_timer(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    serve_slot_waiters(container_of(timer, struct proxy, queue_timer));
}

struct retry_verdict exchange_decide(const struct retry_facts *f)
{
    struct retry_verdict v = {.action = RETRY_NEXT};
    if (f->response_begun) {
        /* Part of the answer is with the client: nothing can be retried or
         * answered any more, only cut short. */
        v.action = RETRY_CUT;
        return v;
    }
    /* A pooled connection that the application closed after a long idle
     * says nothing about its health (UPSTREAM_STALE_IDLE_MS): its retry is
     * free and it counts for nothing. */
    bool stale = f->stale_connection && f->kind == FAIL_NO_RESPONSE;
    v.count_failure = f->kind != FAIL_BAD_RESPONSE && !stale;
    /* Once an application had the request and failed it, the client's
     * answer is a 502 (504) even if later candidates cannot be reached; a
     * 503 says that no application could be reached at all. */
    if (f->kind == FAIL_TIMEOUT)
        v.fail_status = 504;
    else if (f->kind != FAIL_CONNECT && !stale)
        v.fail_status = 502;
    /* What was not sent may go elsewhere; what was, only if it may be sent
     * twice (RFC 9110 section 9.2.2). */
    if (!f->sent || f->retryable) {
        v.free_retry = stale;
        return v;
    }
    v.action = RETRY_ANSWER;
    v.status = f->kind == FAIL_TIMEOUT ? 504 : 502;
    return v;
}

static const enum counters_failure failure_kinds[] = {
    [FAIL_CONNECT] = COUNTERS_FAIL_CONNECT,
    [FAIL_NO_RESPONSE] = COUNTERS_FAIL_RESET,
    [FAIL_TIMEOUT] = COUNTERS_FAIL_TIMEOUT,
    [FAIL_BAD_RESPONSE] = COUNTERS_FAIL_BAD_RESPONSE,
};

/* The attempt at x->up failed; why is for the operator's log. A stale
 * pooled connection's close is nobody's failure: not counted. */
static void attempt_failed(struct exchange *x, const char *why, enum exchange_failure kind)
{
    struct upstream *u = x->up;
    struct app *app = u->app;
    struct retry_facts f = {
        .kind = kind,
        .retryable = x->retryable,
        .sent = x->sent_any,
        .response_begun = x->state == EXCHANGE_STREAM || x->state == EXCHANGE_TUNNEL,
        .stale_connection = u->reused && u->long_idle,
    };
    struct retry_verdict v = exchange_decide(&f);
    if (v.count_failure || v.action == RETRY_CUT || kind == FAIL_BAD_RESPONSE)
        count_failure(x, app, failure_kinds[kind]);
    if (v.action == RETRY_CUT) {
        log_warn("application %s %s: %s during the response", app->cfg->name, app->cfg->address.text, why);
        abort_exchange(x);
        return;
    }
    log_warn("application %s %s: %s", app->cfg->name, app->cfg->address.text, why);
    upstream_detach(x, false);
    if (v.count_failure)
        pool_note_failure(x->p->pool, app, x->p->loop->now, why);
    if (v.fail_status)
        x->fail_status = v.fail_status;
    if (v.free_retry && x->attempts > 0)
        x->attempts--;   /* may go to the same application: it leaves the tried list */
    if (v.action == RETRY_NEXT)
        dispatch(x);
    else
        answer_error(x, v.status);
}

/* ------------------------------------------------------------------ */
/* a new request                                                       */

static void answer_redirect(struct exchange *x)
{
    struct app *app = balance_pick(x->p->balance, x->hash_key, NULL, 0);
    if (!app) {
        answer_error(x, 503);
        return;
    }
    x->app = app;
    const struct config_app *a = app->cfg;
    bool v6 = strchr(a->host, ':') != NULL;
    char port[8] = "";
    if (!a->default_port)
        snprintf(port, sizeof(port), ":%u", a->port);
    char location[2200];
    int n = snprintf(location, sizeof(location), "Location: %s://%s%s%s%s%.*s\r\n",
                     a->tls ? "https" : "http", v6 ? "[" : "", a->host, v6 ? "]" : "", port,
                     (int)x->req.path_len, x->req.path);
    if (n < 0 || (size_t)n >= sizeof(location)) {
        answer_error(x, 431);
        return;
    }
    answer_local(x, 307, location, "307 Temporary Redirect\n");
}

/* redirect_https on a plain listener: GET and HEAD may become GET on the
 * way (301); any other method must be repeated as it was (308, RFC 9110
 * section 15.4.9). */
static void answer_https_redirect(struct exchange *x)
{
    const struct http1_request *r = &x->req;
    bool same_method = r->method != HTTP1_METHOD_GET && r->method != HTTP1_METHOD_HEAD;
    char location[2200];
    int n = rewrite_https_location(location, sizeof(location), r->authority, r->authority_len,
                                   config_https_port(x->p->cfg), r->path, r->path_len);
    if (n <= 0) {
        answer_error(x, n < 0 ? 400 : 414);
        return;
    }
    answer_local(x, same_method ? 308 : 301, location,
                 same_method ? "308 Permanent Redirect\n" : "301 Moved Permanently\n");
}

/* 32 hex digits: the worker's random prefix, then its request count. By
 * hand rather than snprintf: it is written for nearly every request. */
static void make_request_id(char out[33], uint64_t prefix, uint64_t counter)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[15 - i] = hex[(prefix >> (4 * i)) & 15];
        out[31 - i] = hex[(counter >> (4 * i)) & 15];
    }
    out[32] = '\0';
}

static bool rewrite_request(struct exchange *x)
{
    struct proxy *p = x->p;
    if (buf_acquire(p->buffers, &x->fwd) < 0)
        return false;
    x->fwd.head = x->fwd.tail = 0;
    if (!(x->req.flags & HTTP1_HAS_REQ_ID))
        make_request_id(x->request_id, p->request_id_prefix, ++p->request_counter);
    struct rewrite_from from = {.client_ip = x->client_ip, .proto = x->client->ssl ? "https" : "http",
                                .request_id = x->request_id,
                                .body_buffered = x->req.body != HTTP1_BODY_NONE && p->cfg->buffer_body};
    return rewrite_request_head(&x->fwd, &x->req, &from, &x->log);
}

static int account_request_body(struct exchange *x);
static void begin_receive(struct exchange *x);

/* Sets the request's facts; the first applicable refusal answers it. */
static void start_request(struct exchange *x)
{
    struct proxy *p = x->p;
    const struct http1_request *r = &x->req;
    const struct config *cfg = p->cfg;
    p->last_request_ms = p->loop->now;
    x->state = EXCHANGE_FORWARD;
    x->log.version_minor = r->version_minor;
    x->log.method = r->method_text;
    x->log.method_len = r->method_len;
    x->log.target = r->target;
    x->log.target_len = r->target_len;
    x->keep_alive = r->version_minor ? !(r->flags & HTTP1_CONN_CLOSE) : (r->flags & HTTP1_CONN_KEEP_ALIVE) != 0;
    x->req_side = r->body == HTTP1_BODY_NONE ? REQ_DONE : REQ_BODY;
    x->req_body_left = r->content_length;
    x->retryable = r->body == HTTP1_BODY_NONE && method_is_idempotent(r->method);
    x->hash_key = cfg->algorithm == ALG_HASH ? request_hash(x) : 0;
    /* The head leaves the buffer now, so that whatever is answered, the
     * next parse starts after it. Its bytes stay in place (the views above
     * point at them) until the next read, which comes after this request's
     * rewrite or answer. */
    buf_consume(&x->client->in, r->head_len);

    if (r->method == HTTP1_METHOD_CONNECT) {
        x->req_side = REQ_BODY;   /* what follows is not HTTP: close after */
        answer_local(x, 405, "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n", "405 Method Not Allowed\n");
        return;
    }
    if (cfg->body_bytes && r->body == HTTP1_BODY_LENGTH && r->content_length > cfg->body_bytes) {
        answer_error(x, 413);
        return;
    }
    if (cfg->redirect_https && !x->client->ssl) {
        if (r->body != HTTP1_BODY_NONE)
            x->keep_alive = false;   /* the body is not read: close after */
        answer_https_redirect(x);
        return;
    }
    if (cfg->mode == MODE_REDIRECT) {
        if (r->body != HTTP1_BODY_NONE)
            x->keep_alive = false;   /* the body is not read: close after */
        answer_redirect(x);
        return;
    }
    if (!rewrite_request(x)) {
        answer_error(x, 431);
        return;
    }
    x->body_start_ms = p->loop->now;
    if (x->req_side == REQ_BODY && cfg->buffer_body) {
        begin_receive(x);
        return;
    }
    /* Body bytes that came with the head are checked before any application
     * hears of the request: a request with bad framing in its first packet
     * never reaches one. */
    if (x->req_side == REQ_BODY && buf_len(&x->client->in)) {
        int status = account_request_body(x);
        if (status) {
            log_info("client %s: request body refused (%d)", x->client_ip, status);
            answer_error(x, status);
            return;
        }
    }
    dispatch(x);
}

void exchange_begin(struct exchange *x, int64_t start_us)
{
    struct proxy *p = x->p;
    struct stream *c = x->client;
    x->start_us = start_us;
    x->req.headers = p->headers;
    enum http1_result rc = http1_parse_request(buf_start(&c->in), buf_len(&c->in), &p->limits, &x->req);
    if (rc == HTTP1_OK) {
        x->parsed = true;
        start_request(x);
        return;
    }
    /* http1_request_head_ready said the head is whole or refusable. */
    log_info("client %s: refused request: %s", x->client_ip,
             x->req.error == HTTP1_E_HEAD_TOO_LARGE || x->req.error == HTTP1_E_TOO_MANY_HEADERS
                 ? "head over the limits"
                 : "malformed");
    exchange_refuse(x, status_for_parse_error(x->req.error), start_us);
}

/* ------------------------------------------------------------------ */
/* forwarding the request                                              */

/* Scans the chunked body bytes of b after its first `ready` ones, which
 * were counted already; a removed trailer line leaves b shorter. */
static ssize_t forward_chunked(struct http1_chunked *st, struct buf *b, uint32_t ready)
{
    size_t fresh = buf_len(b) - ready, len = fresh;
    ssize_t n = http1_chunked_forward(st, buf_start(b) + ready, &len, b->cap - 1);
    b->tail -= (uint32_t)(fresh - len);
    return n;
}

/* Decides how many newly read request bytes belong to the body. Returns 0,
 * or the status that refuses the body (400, 413). */
static int account_request_body(struct exchange *x)
{
    struct buf *in = &x->client->in;
    uint32_t fresh = buf_len(in) - x->req_ready;
    if (x->req.body == HTTP1_BODY_LENGTH) {
        uint32_t take = x->req_body_left < fresh ? (uint32_t)x->req_body_left : fresh;
        x->req_ready += take;
        x->req_body_left -= take;
        x->body_received += take;
        if (x->req_body_left == 0)
            x->req_side = REQ_DONE;
        return 0;
    }
    ssize_t n = forward_chunked(&x->req_chunked, in, x->req_ready);
    if (n < 0)
        return 400;
    x->req_ready += (uint32_t)n;
    x->body_received += (uint64_t)n;
    uint64_t limit = x->p->cfg->body_bytes;
    if (limit && x->req_chunked.data_bytes > limit)
        return 413;
    if (x->req_chunked.done)
        x->req_side = REQ_DONE;
    return 0;
}

/* A request error after forwarding began: answer if the client has not
 * seen a response yet, otherwise just cut both connections. */
static enum step fail_request(struct exchange *x, int status)
{
    log_info("client %s: request body refused (%d)", x->client_ip, status);
    if (x->state == EXCHANGE_STREAM)
        return abort_exchange(x);
    x->req_side = REQ_BODY;
    answer_error(x, status);
    return STEP_MOVED;
}

static enum step pump_request(struct exchange *x)
{
    struct upstream *u = x->up;
    struct stream *c = x->client;
    enum step progress = STEP_WAIT;
    if (x->upload_failed)
        return STEP_WAIT;
    if ((buf_len(&x->fwd) || x->req_ready) && u->s.can_write) {
        uint32_t head = buf_len(&x->fwd);
        ssize_t n = stream_write(&u->s, buf_start(&x->fwd), head, buf_start(&c->in), x->req_ready);
        if (n < 0) {
            /* The application stopped reading; it may have answered first
             * (an early 413, say). Read what it said before deciding. */
            x->upload_failed = true;
            x->keep_alive = false;
            u->s.can_read = true;
            return STEP_MOVED;
        }
        if (n > 0) {
            uint32_t from_head = (uint32_t)n < head ? (uint32_t)n : head;
            x->fwd.head += from_head;   /* kept (not consumed) for a retry */
            buf_consume(&c->in, (uint32_t)n - from_head);
            x->req_ready -= (uint32_t)n - from_head;
            x->sent_any = true;
            u->s.last_activity = x->p->loop->now;
            progress = STEP_MOVED;
        }
    }
    if (x->req_side != REQ_BODY || x->req_ready)
        return progress;
    uint32_t held = x->req_chunked.held;   /* an unfinished trailer line */
    if (buf_len(&c->in) == held && c->can_read) {
        if (buf_room(&c->in) == 0)
            buf_compact(&c->in);
        ssize_t n = stream_read(c);
        if (n < 0)
            return abort_exchange(x);   /* the client left in the middle of its body */
        if (n > 0)
            c->last_activity = x->p->loop->now;
    }
    if (buf_len(&c->in) > x->req_ready + held) {
        int status = account_request_body(x);
        if (status)
            return fail_request(x, status);
        progress = STEP_MOVED;
    }
    return progress;
}

/* ------------------------------------------------------------------ */
/* receiving a body before choosing an application                     */

/* An application's request slots are few (a Python or Ruby service has a
 * few dozen): a request takes one only when it can be served at once, so
 * a body up to buffer_body is received whole first, and a larger one that
 * far. A client that trickles its body then holds sluice's memory, never
 * an application. The body moves into a block of that size taken from the
 * worker's body pool (bounded by buffer_total), in place of the client's
 * input buffer, so forwarding it later is the same writev as ever. */

static void leave_body_waiters(struct exchange *x)
{
    if (!x->waiting_body)
        return;
    queue_remove(&x->p->body_waiters, x);
    x->waiting_body = false;
}

static void give_back_body_block(struct exchange *x)
{
    struct proxy *p = x->p;
    struct buf *in = &x->client->in;
    if (!x->body_block)
        return;
    p->bodies_held -= x->body_block;
    x->body_block = 0;
    /* Pipelined bytes after the body go back to a small buffer; more than
     * fits there (rare) keep the block until the connection is done with
     * it, outside the count. */
    struct buf small = {0};
    if (buf_len(in) == 0 || (buf_len(in) <= p->buffers->block_size && buf_acquire(p->buffers, &small) == 0)) {
        if (small.data) {
            memcpy(small.data, buf_start(in), buf_len(in));
            small.tail = buf_len(in);
        }
        buf_release(&p->bodies, in);
        *in = small;
    }
    p->body_block_returned = true;
}

void exchanges_after_iteration(struct proxy *p)
{
    if (p->slot_freed) {
        p->slot_freed = false;
        if (p->slot_waiters.first)
            serve_slot_waiters(p);
    }
    /* Woken here, not where the block came back: that is inside another
     * connection's close, and the waiter's run may close connections too. */
    if (!p->body_block_returned)
        return;
    p->body_block_returned = false;
    /* As many as the blocks that came back can serve, in order. */
    uint64_t held = p->bodies_held;
    struct exchange *next;
    while ((next = p->body_waiters.first) && held + p->bodies.block_size <= p->cfg->buffer_total) {
        held += p->bodies.block_size;
        leave_body_waiters(next);
        next->wake(next->conn);
    }
}

/* Moves the client's input into a body block. False when the worker's
 * buffer_total is spent (the exchange then waits its turn). */
static bool take_body_block(struct exchange *x)
{
    struct proxy *p = x->p;
    struct buf *in = &x->client->in;
    uint32_t size = p->bodies.block_size;
    if (buf_len(in) > size)
        return false;   /* a reload made blocks smaller than what is here: stream it */
    if (p->bodies_held + size > p->cfg->buffer_total) {
        /* Refused again after a wake-up (the block that came back was of
         * an older size): it keeps its place at the front. */
        queue_push(&p->body_waiters, x, x->queued_once);
        x->waiting_body = x->queued_once = true;
        return false;
    }
    struct buf block = {0};
    if (buf_acquire(&p->bodies, &block) < 0)
        return false;
    memcpy(block.data, buf_start(in), buf_len(in));
    block.tail = buf_len(in);
    buf_release(p->buffers, in);
    *in = block;
    x->body_block = block.cap;
    p->bodies_held += block.cap;
    if (x->queued_once) {
        /* sluice stopped reading while it waited: not the client's time */
        x->body_start_ms = x->client->last_activity = p->loop->now;
    }
    return true;
}

static void begin_receive(struct exchange *x)
{
    x->state = EXCHANGE_RECEIVE;
    /* The client waits for this before it sends the body (RFC 9110 section
     * 10.1.1); the application is not asked, and its Expect is not sent. */
    if ((x->req.flags & HTTP1_EXPECT_CONTINUE) && x->req.version_minor == 1 &&
        buf_acquire(x->p->buffers, &x->out) == 0) {
        static const char continue_head[] = "HTTP/1.1 100 Continue\r\n\r\n";
        x->out.head = 0;
        x->out.tail = sizeof(continue_head) - 1;
        memcpy(x->out.data, continue_head, sizeof(continue_head) - 1);
    }
}

/* The body is whole, or fills the block: on to an application. */
static void end_receive(struct exchange *x)
{
    x->state = EXCHANGE_FORWARD;
    dispatch(x);
}

static enum step step_receive(struct exchange *x)
{
    struct stream *c = x->client;
    enum step progress = STEP_WAIT;
    if (buf_len(&x->out) && c->can_write) {
        ssize_t n = stream_write(c, buf_start(&x->out), buf_len(&x->out), NULL, 0);
        if (n < 0)
            return abort_exchange(x);
        buf_consume(&x->out, (uint32_t)n);
        progress = n > 0 ? STEP_MOVED : STEP_WAIT;
    }
    if (buf_len(&c->in) > x->req_ready + x->req_chunked.held) {
        int status = account_request_body(x);
        if (status) {
            log_info("client %s: request body refused (%d)", x->client_ip, status);
            answer_error(x, status);
            return STEP_MOVED;
        }
    }
    if (x->req_side == REQ_DONE) {   /* whole already (often with the head): no block needed */
        end_receive(x);
        return STEP_MOVED;
    }
    if (!x->body_block) {
        if (x->waiting_body || (!take_body_block(x) && x->waiting_body))
            return progress;   /* reading paused until a block comes back */
        if (!x->body_block) {   /* no block to be had: stream as before */
            end_receive(x);
            return STEP_MOVED;
        }
    }
    if (buf_room(&c->in) == 0)
        buf_compact(&c->in);
    if (x->req_side == REQ_DONE || buf_room(&c->in) == 0 || c->input_full) {
        end_receive(x);
        return STEP_MOVED;
    }
    if (!c->can_read)
        return progress;
    ssize_t n = stream_read(c);
    if (n < 0)
        return abort_exchange(x);   /* the client left in the middle of its body */
    if (n > 0) {
        c->last_activity = x->p->loop->now;
        return STEP_MOVED;
    }
    return progress;
}

/* ------------------------------------------------------------------ */
/* streaming the response back                                         */

static int account_response_body(struct exchange *x)
{
    struct buf *in = &x->up->s.in;
    uint32_t fresh = buf_len(in) - x->resp_ready;
    switch (x->res.body) {
    case HTTP1_BODY_LENGTH: {
        uint32_t take = x->resp_body_left < fresh ? (uint32_t)x->resp_body_left : fresh;
        x->resp_ready += take;
        x->resp_body_left -= take;
        x->resp_complete = x->resp_body_left == 0;
        break;
    }
    case HTTP1_BODY_CHUNKED: {
        ssize_t n = forward_chunked(&x->resp_chunked, in, x->resp_ready);
        if (n < 0)
            return -1;
        x->resp_ready += (uint32_t)n;
        x->resp_complete = x->resp_chunked.done;
        break;
    }
    case HTTP1_BODY_UNTIL_CLOSE:
        x->resp_ready += fresh;
        break;
    case HTTP1_BODY_NONE:
        x->resp_complete = true;
        break;
    }
    /* Bytes after the end of the response: the application broke framing. */
    if (x->resp_complete && buf_len(in) > x->resp_ready)
        x->upstream_reusable = false;
    return 0;
}

static enum step start_tunnel(struct exchange *x)
{
    log_finish(x, 101);
    x->state = EXCHANGE_TUNNEL;
    x->keep_alive = false;
    buf_release(x->p->buffers, &x->fwd);
    return STEP_MOVED;   /* bytes already in client->in and up->s.in are relayed first */
}

static enum step relay_interim(struct exchange *x)
{
    /* 1xx: relayed to HTTP/1.1 clients only (RFC 9110 section 15.2). */
    uint32_t before = x->out.tail;
    if (x->req.version_minor == 1 && !rewrite_response_head(&x->out, &x->res, x->keep_alive, 1)) {
        x->out.tail = before;
        attempt_failed(x, "response head too large", FAIL_BAD_RESPONSE);
        return STEP_MOVED;
    }
    buf_consume(&x->up->s.in, x->res.head_len);
    return STEP_MOVED;
}

/* A complete response head is at the start of up->s.in. */
static enum step take_response_head(struct exchange *x)
{
    struct proxy *p = x->p;
    struct upstream *u = x->up;
    const struct http1_response *res = &x->res;
    int status = res->status;
    if (buf_acquire(p->buffers, &x->out) < 0)
        return abort_exchange(x);
    if (status == 101 && !(x->req.flags & HTTP1_CONN_UPGRADE)) {
        attempt_failed(x, "101 without an upgrade request", FAIL_BAD_RESPONSE);
        return STEP_MOVED;
    }
    if (status < 200 && status != 101)
        return relay_interim(x);
    x->log.status = status;
    pool_note_status(p->pool, u->app, status);
    if (status >= 500)
        count_failure(x, u->app, COUNTERS_FAIL_5XX);
    if (res->body == HTTP1_BODY_UNTIL_CLOSE || x->req_side != REQ_DONE || p->stopping)
        x->keep_alive = false;
    x->upstream_reusable = !(res->flags & HTTP1_CONN_CLOSE) && res->body != HTTP1_BODY_UNTIL_CLOSE &&
                           x->req.version_minor == 1;
    x->resp_body_left = res->content_length;
    x->resp_complete = res->body == HTTP1_BODY_NONE;
    uint32_t interim_end = x->out.tail;   /* 1xx heads before it stay whatever happens */
    if (!rewrite_response_head(&x->out, res, x->keep_alive, x->req.version_minor)) {
        x->out.tail = interim_end;
        attempt_failed(x, "response head too large", FAIL_BAD_RESPONSE);
        return STEP_MOVED;
    }
    buf_consume(&u->s.in, res->head_len);
    if (status == 101)
        return start_tunnel(x);
    x->state = EXCHANGE_STREAM;
    /* Body bytes that came with the head leave in the same writev; if they
     * are already malformed, the client has seen nothing yet and gets a
     * clean 502 instead of a cut-off 200. */
    if (account_response_body(x) < 0) {
        log_warn("application %s %s: malformed chunked body", u->app->cfg->name, u->app->cfg->address.text);
        count_failure(x, u->app, COUNTERS_FAIL_BAD_RESPONSE);
        x->out.tail = interim_end;
        x->state = EXCHANGE_FORWARD;
        upstream_detach(x, false);
        answer_error(x, 502);
    }
    return STEP_MOVED;
}

static enum step read_response_head(struct exchange *x)
{
    struct proxy *p = x->p;
    struct upstream *u = x->up;
    struct buf *in = &u->s.in;
    if (buf_len(in)) {
        x->res.headers = p->headers;
        enum http1_result rc = http1_parse_response(buf_start(in), buf_len(in), &p->limits, x->req.method, &x->res);
        if (rc == HTTP1_OK)
            return take_response_head(x);
        if (rc == HTTP1_ERROR) {
            log_warn("application %s %s: malformed response", u->app->cfg->name, u->app->cfg->address.text);
            count_failure(x, u->app, COUNTERS_FAIL_BAD_RESPONSE);
            upstream_detach(x, false);
            answer_error(x, 502);
            return STEP_MOVED;
        }
    }
    if (!u->s.can_read)
        return STEP_WAIT;
    if (buf_room(in) == 0)
        buf_compact(in);
    ssize_t n = stream_read(&u->s);
    if (n > 0) {
        u->s.last_activity = p->loop->now;
        return STEP_MOVED;
    }
    if (n == 0)
        return STEP_WAIT;
    attempt_failed(x, errno ? "connection reset before a response" : "connection closed before a response",
                   FAIL_NO_RESPONSE);
    return STEP_MOVED;
}

static void finish_transaction(struct exchange *x)
{
    bool reusable = x->upstream_reusable && x->req_side == REQ_DONE && x->req_ready == 0 &&
                    buf_len(&x->fwd) == 0 && !x->upload_failed;
    log_finish(x, x->log.status);
    upstream_detach(x, reusable);
    x->state = EXCHANGE_DONE;
}

static bool can_splice(const struct exchange *x)
{
    return x->res.body == HTTP1_BODY_LENGTH && x->resp_body_left >= SPLICE_MIN && !x->up->s.ssl &&
           !x->client->ssl && !stream_is_sink(x->client) && buf_len(&x->up->s.in) == 0 && buf_len(&x->out) == 0;
}

/* The rest of a large body, socket to pipe to socket. */
static enum step pump_spliced(struct exchange *x)
{
    struct upstream *u = x->up;
    struct stream *c = x->client;
    enum step progress = STEP_WAIT;
    if (x->pipe.len && c->can_write) {
        ssize_t n = stream_splice_out(&x->pipe, c);
        if (n < 0)
            return abort_exchange(x);
        if (n > 0) {
            x->log.bytes_sent += (uint64_t)n;
            c->last_activity = x->p->loop->now;
            progress = STEP_MOVED;
        }
    }
    if (x->pipe.len == 0 && x->resp_complete) {
        stream_pipe_put(&x->p->pipes, &x->pipe);
        finish_transaction(x);
        return STEP_MOVED;
    }
    if (x->resp_complete || !u->s.can_read || x->pipe.len)
        return progress;
    size_t max = STREAM_PIPE_CAPACITY;
    ssize_t n = stream_splice_in(&u->s, &x->pipe, x->resp_body_left < max ? (size_t)x->resp_body_left : max);
    if (n > 0) {
        x->resp_body_left -= (uint64_t)n;
        x->resp_complete = x->resp_body_left == 0;
        u->s.last_activity = x->p->loop->now;
        return STEP_MOVED;
    }
    if (n == 0)
        return progress;
    log_warn("application %s %s: response cut short", u->app->cfg->name, u->app->cfg->address.text);
    return abort_exchange(x);
}

static enum step pump_response(struct exchange *x)
{
    if (x->pipe.rd >= 0)
        return pump_spliced(x);
    struct upstream *u = x->up;
    struct stream *c = x->client;
    enum step progress = STEP_WAIT;
    uint32_t head = buf_len(&x->out);
    if ((head || x->resp_ready) && c->can_write) {
        ssize_t n = stream_write(c, buf_start(&x->out), head, buf_start(&u->s.in), x->resp_ready);
        if (n < 0)
            return abort_exchange(x);
        if (n > 0) {
            uint32_t from_head = (uint32_t)n < head ? (uint32_t)n : head;
            buf_consume(&x->out, from_head);
            buf_consume(&u->s.in, (uint32_t)n - from_head);
            x->resp_ready -= (uint32_t)n - from_head;
            x->log.bytes_sent += (uint32_t)n - from_head;
            c->last_activity = x->p->loop->now;
            progress = STEP_MOVED;
        }
    }
    if (x->state != EXCHANGE_STREAM || x->resp_ready)
        return progress;
    if (buf_len(&x->out) == 0 && x->resp_complete) {
        finish_transaction(x);
        return STEP_MOVED;
    }
    if (buf_len(&u->s.in) > x->resp_ready + x->resp_chunked.held && !x->resp_complete) {
        if (account_response_body(x) < 0) {
            log_warn("application %s %s: malformed chunked body", u->app->cfg->name, u->app->cfg->address.text);
            return abort_exchange(x);
        }
        return STEP_MOVED;
    }
    if (!u->s.can_read || x->resp_complete)
        return progress;
    if (can_splice(x) && stream_pipe_get(&x->p->pipes, &x->pipe) == 0)
        return pump_spliced(x);
    if (buf_room(&u->s.in) == 0)
        buf_compact(&u->s.in);   /* an unfinished trailer line waits at the end */
    ssize_t n = stream_read(&u->s);
    if (n > 0) {
        u->s.last_activity = x->p->loop->now;
        return STEP_MOVED;
    }
    if (n == 0)
        return progress;
    if (x->res.body == HTTP1_BODY_UNTIL_CLOSE && errno == 0) {
        x->resp_complete = true;   /* a close-delimited body ends here */
        x->upstream_reusable = false;
        return STEP_MOVED;
    }
    log_warn("application %s %s: response cut short", u->app->cfg->name, u->app->cfg->address.text);
    return abort_exchange(x);
}

/* The application's connection is being set up: nothing to forward yet. */
static enum step step_connect(struct exchange *x)
{
    struct upstream *u = x->up;
    char why[160];
    switch (u->state) {
    case UPSTREAM_CONNECTING:
        return STEP_WAIT;
    case UPSTREAM_HANDSHAKING:
        if (upstream_handshake(u) == -EAGAIN)
            return STEP_WAIT;
        if (u->state == UPSTREAM_FAILED)
            attempt_failed(x, upstream_failure(u, why, sizeof(why)), FAIL_CONNECT);
        return STEP_MOVED;
    case UPSTREAM_FAILED:
        attempt_failed(x, upstream_failure(u, why, sizeof(why)), FAIL_CONNECT);
        return STEP_MOVED;
    default:
        return STEP_MOVED;
    }
}

static bool forwarding(const struct exchange *x)
{
    return x->state == EXCHANGE_FORWARD || x->state == EXCHANGE_STREAM;
}

static enum step step_forward(struct exchange *x)
{
    if (x->waiting_slot)
        return STEP_WAIT;   /* every candidate at max_requests: the queue wakes it */
    if (x->up->state != UPSTREAM_READY)
        return step_connect(x);
    enum step a = pump_request(x);
    if (a == STEP_CLOSE || !forwarding(x))
        return a;
    /* First flush what the client is owed (a 1xx head, body bytes). */
    enum step b = pump_response(x);
    if (b == STEP_CLOSE)
        return b;
    if (!forwarding(x))
        return STEP_MOVED;
    if (x->state == EXCHANGE_FORWARD) {
        enum step h = read_response_head(x);
        if (h == STEP_CLOSE)
            return h;
        b = b || h;
    }
    return a || b ? STEP_MOVED : STEP_WAIT;
}

static enum step step_local(struct exchange *x)
{
    struct stream *c = x->client;
    if (buf_len(&x->out)) {
        if (!c->can_write)
            return STEP_WAIT;
        ssize_t n = stream_write(c, buf_start(&x->out), buf_len(&x->out), NULL, 0);
        if (n < 0)
            return abort_exchange(x);
        buf_consume(&x->out, (uint32_t)n);
        if (buf_len(&x->out))
            return n > 0 ? STEP_MOVED : STEP_WAIT;
    }
    log_finish(x, x->log.status);
    x->state = EXCHANGE_DONE;
    return STEP_MOVED;
}

/* ------------------------------------------------------------------ */
/* tunnels (WebSocket and other upgrades)                              */

/* Each returns STEP_MOVED, STEP_WAIT, or STEP_CLOSE when the tunnel ends.
 * A side that finished sending (its FIN, a clean end of stream) is passed
 * on as a half-close once its bytes are delivered, so a protocol that says
 * goodbye one way at a time still hears the other side's last words. The
 * tunnel ends when both ways are done. Through TLS there is no half-close:
 * the end of either way ends the tunnel. */
static enum step tunnel_end_of_stream(struct exchange *x, ssize_t n, bool *done)
{
    if (n < 0 && errno == 0 && !x->up->s.ssl && !x->client->ssl) {
        *done = true;
        return STEP_MOVED;
    }
    return n < 0 ? STEP_CLOSE : n > 0 ? STEP_MOVED : STEP_WAIT;
}

static enum step tunnel_client_to_upstream(struct exchange *x)
{
    struct upstream *u = x->up;
    struct stream *c = x->client;
    if (buf_len(&c->in) && u->s.can_write) {
        ssize_t n = stream_write(&u->s, buf_start(&c->in), buf_len(&c->in), NULL, 0);
        if (n < 0)
            return STEP_CLOSE;
        buf_consume(&c->in, (uint32_t)n);
        return n > 0 ? STEP_MOVED : STEP_WAIT;
    }
    if (buf_len(&c->in) == 0 && c->can_read && !x->tunnel_in_done) {
        ssize_t n = stream_read(c);
        enum step r = tunnel_end_of_stream(x, n, &x->tunnel_in_done);
        if (x->tunnel_in_done && n < 0)
            stream_shutdown_write(&u->s);
        return r;
    }
    return STEP_WAIT;
}

static enum step tunnel_upstream_to_client(struct exchange *x)
{
    struct upstream *u = x->up;
    struct stream *c = x->client;
    struct buf *from = buf_len(&x->out) ? &x->out : &u->s.in;   /* the 101 head goes first */
    if (buf_len(from)) {
        if (!c->can_write)
            return STEP_WAIT;
        ssize_t n = stream_write(c, buf_start(from), buf_len(from), NULL, 0);
        if (n < 0)
            return STEP_CLOSE;
        buf_consume(from, (uint32_t)n);
        return n > 0 ? STEP_MOVED : STEP_WAIT;
    }
    if (u->s.can_read && !x->tunnel_out_done) {
        ssize_t n = stream_read(&u->s);
        enum step r = tunnel_end_of_stream(x, n, &x->tunnel_out_done);
        if (x->tunnel_out_done && n < 0)
            stream_shutdown_write(c);
        return r;
    }
    return STEP_WAIT;
}

static enum step step_tunnel(struct exchange *x)
{
    struct stream *c = x->client;
    if (buf_acquire(x->p->buffers, &c->in) < 0)
        return abort_exchange(x);
    enum step a = tunnel_client_to_upstream(x);
    enum step b = a == STEP_CLOSE ? STEP_WAIT : tunnel_upstream_to_client(x);
    if (a == STEP_CLOSE || b == STEP_CLOSE || (x->tunnel_in_done && x->tunnel_out_done))
        return abort_exchange(x);
    if (a || b) {
        c->last_activity = x->up->s.last_activity = x->p->loop->now;
        return STEP_MOVED;
    }
    return STEP_WAIT;
}

/* ------------------------------------------------------------------ */
/* the connection's view                                               */

enum step exchange_step(struct exchange *x)
{
    switch (x->state) {
    case EXCHANGE_RECEIVE:
        return step_receive(x);
    case EXCHANGE_FORWARD:
    case EXCHANGE_STREAM:
        return step_forward(x);
    case EXCHANGE_LOCAL:
        return step_local(x);
    case EXCHANGE_TUNNEL:
        return step_tunnel(x);
    case EXCHANGE_DONE:
        return STEP_WAIT;
    case EXCHANGE_ABORT:
        break;
    }
    return STEP_CLOSE;
}

enum exchange_end exchange_end(struct exchange *x)
{
    drop_unsent_body(x);
    if (x->keep_alive && x->req_side == REQ_DONE && !x->p->stopping)
        return END_KEEP_ALIVE;
    return x->req_side == REQ_DONE ? END_CLOSE : END_LINGER;
}

static bool waits_on_client(const struct exchange *x)
{
    return !forwarding(x) || buf_len(&x->out) || x->resp_ready || x->pipe.len ||
           (x->req_side == REQ_BODY && x->req_ready == 0);
}

/* Apache's mod_reqtimeout MinRate: after a first 10 s, every min_body_rate
 * bytes buy one more second. */
#define BODY_RATE_GRACE_MS 10000

static bool receiving_body(const struct exchange *x)
{
    return x->req_side == REQ_BODY &&
           (x->state == EXCHANGE_RECEIVE || (forwarding(x) && x->req_ready == 0 && !x->upload_failed));
}

int64_t exchange_client_timeout(struct exchange *x, int64_t now)
{
    const struct config *cfg = x->p->cfg;
    bool body = receiving_body(x);
    if (!body && !waits_on_client(x))
        return cfg->client_idle_timeout_ms;
    int64_t limit = body ? cfg->client_body_timeout_ms : cfg->client_idle_timeout_ms;
    int64_t idle = now - x->client->last_activity, next = limit - idle;
    bool too_slow = next <= 0;
    if (body && cfg->min_body_rate && !too_slow) {
        int64_t allowed = BODY_RATE_GRACE_MS + (int64_t)(x->body_received * 1000 / cfg->min_body_rate);
        int64_t elapsed = now - x->body_start_ms;
        too_slow = elapsed >= allowed;
        if (allowed - elapsed < next)
            next = allowed - elapsed;
    }
    if (!too_slow)
        return next;
    if (!body) {
        log_info("client %s: no progress for %" PRId64 " ms, closing", x->client_ip, idle);
        abort_exchange(x);
        return 0;
    }
    log_info("client %s: request body too slow (%" PRIu64 " bytes in %" PRId64 " ms, none for %" PRId64
             " ms), answered 408", x->client_ip, x->body_received, now - x->body_start_ms, idle);
    if (x->state == EXCHANGE_STREAM)
        abort_exchange(x);
    else
        answer_error(x, 408);
    return 0;
}

/* ------------------------------------------------------------------ */
/* events from the application's side                                  */

static void on_upstream_ready(void *owner)
{
    struct exchange *x = owner;
    x->wake(x->conn);
}

/* No answer in time. While sluice waits on the client instead, the limit
 * is the client's (client_idle, client.c); this timer only re-arms. */
static void on_upstream_timeout(void *owner)
{
    struct exchange *x = owner;
    struct upstream *u = x->up;
    struct loop *loop = x->p->loop;
    if (u->state == UPSTREAM_CONNECTING || u->state == UPSTREAM_HANDSHAKING) {
        attempt_failed(x, u->state == UPSTREAM_CONNECTING ? "connect timeout" : "TLS handshake timeout",
                       FAIL_CONNECT);
        x->wake(x->conn);
        return;
    }
    bool tunnel = x->state == EXCHANGE_TUNNEL;
    /* While the rest of the request body is awaited from the client, the
     * client's limits run (client_body, min_body_rate), not this one: a
     * slow upload must not be a 504 counted against the application. */
    bool waits_on_app = tunnel || (x->state == EXCHANGE_FORWARD && !buf_len(&x->out) && !receiving_body(x)) ||
                        (x->state == EXCHANGE_STREAM && !x->resp_ready && !x->pipe.len && !buf_len(&x->out));
    int64_t limit = tunnel ? x->p->cfg->client_idle_timeout_ms : x->p->cfg->upstream_response_timeout_ms;
    int64_t idle = loop->now - u->s.last_activity;
    if (!waits_on_app || idle < limit) {
        loop_timer_arm(loop, &u->timer, waits_on_app ? limit - idle : limit);
        return;
    }
    char why[64];
    snprintf(why, sizeof(why), "no response within %" PRId64 " ms", limit);
    if (tunnel) {
        log_warn("application %s %s: %s", u->app->cfg->name, u->app->cfg->address.text, why);
        abort_exchange(x);
    } else {
        /* No response head in time is a gateway failure (nginx and Envoy
         * count it too); a response that stalls once begun is only cut. */
        attempt_failed(x, why, FAIL_TIMEOUT);
    }
    x->wake(x->conn);
}
