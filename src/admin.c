/* admin.c - the admin API server; see admin.h.
 *
 * Shape. One thread, one loop, a fixed table of 16 connections, each with
 * an input buffer for one request (8 KB of head, 64 KB of body) and the
 * answer being written. A request is parsed by http1.c once its head is
 * whole, its body (if any) is read whole, and it is answered at once,
 * except a reload, whose connection waits for the main thread's
 * admin_reload_done. Answers are built in malloc'd text: this is not a
 * request path, and the list of applications has no fixed size.
 *
 * Drain and enable. A drain moves the application to draining (one
 * compare-and-swap in pool.c); the balancers stop picking it at their next
 * pick, and each worker, woken here, closes its idle connections to it.
 * The worker that gives back its last request slot moves it on to
 * maintenance; a timer here does so when nothing was in flight. An enable
 * moves it to down and sets its check_requested flag: the worker that
 * checks it starts a check at once and brings it up on one pass.
 */
#include "admin.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alert.h"
#include "dashboard.h"
#include "http1.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "net.h"
#include "text.h"
#include "worker.h"

#define ADMIN_HEAD_MAX 8192
#define ADMIN_BODY_MAX 65536
#define ADMIN_HEADERS_MAX 64
#define ADMIN_CONNECTIONS_MAX 16
/* An admin connection silent this long is closed. */
#define ADMIN_IDLE_MS 10000
/* A test alert is answered once every target has an outcome, or after
 * this long (below `sluice ctl`'s 30 s), and looked at this often. One try
 * per target: a webhook's lookup and POST take at most 10 s, a command 10 s. */
#define ADMIN_TEST_WAIT_MS 20000
#define ADMIN_TEST_POLL_MS 50
/* How often, while an application drains, the admin thread looks whether
 * it has nothing in flight: the worker that ends the last request ends the
 * drain at once, this catches a drain that raced with it, or that had
 * nothing in flight. */
#define ADMIN_DRAIN_CHECK_MS 100

/* One admin connection; a slot of struct admin's table. */
struct admin_conn {
    struct loop_io io;
    struct loop_timer timer;
    struct admin *admin;
    bool in_use;
    bool close_after;          /* Connection: close, or an error that ends it */
    bool awaiting_reload;      /* answered by admin_reload_done */
    struct alert_test *test;   /* a test alert under way, answered when done; a reference */
    int64_t test_deadline;     /* loop ms */
    bool head_only;            /* HEAD: the answer without its body */
    char *in;                  /* ADMIN_HEAD_MAX + ADMIN_BODY_MAX bytes; owned */
    size_t in_len;
    char *out;                 /* the answer being written; owned */
    size_t out_len, out_sent;
};

struct admin {
    struct loop loop;
    struct admin_host host;
    pthread_t thread;
    bool thread_started;
    int listen_fd;
    struct loop_io listen_io;
    int wake_fd;               /* eventfd: stop, or a reload's result */
    struct loop_io wake_io;
    _Atomic bool stop;
    struct loop_timer drain_timer;
    struct admin_conn conns[ADMIN_CONNECTIONS_MAX];
    int conn_count;
    bool reload_pending;       /* asked, not answered yet */
    struct admin_conn *reload_waiter;
    /* The result handed over by the main thread. */
    pthread_mutex_t result_lock;
    bool result_ready;
    int result_status;
    char *result_body;         /* owned */
    struct http1_header headers[ADMIN_HEADERS_MAX];
};

/* ---- answers ---- */

/* s as a JSON string, quotes included. */
static void text_json_string(struct text *t, const char *s)
{
    size_t n = alert_json_escape(NULL, 0, s);
    if (!text_reserve(t, n + 2))
        return;
    t->data[t->len++] = '"';
    alert_json_escape(t->data + t->len, n + 1, s);
    t->len += n;
    t->data[t->len++] = '"';
    t->data[t->len] = '\0';
}

/* ---- pure parts ---- */

/* The byte written as n hex digits at s, or -1. */
static long hex_digits(const char *s, int n)
{
    char digits[5] = "";
    for (int i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return -1;
        digits[i] = s[i];
    }
    return strtol(digits, NULL, 16);
}

/* Percent-decodes an application name from a path segment; -1 when it
 * cannot be one (empty, too long, a bad escape, a NUL or a slash). */
static int decode_name(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            long byte = i + 2 < len ? hex_digits(s + i + 1, 2) : -1;
            if (byte < 0)
                return -1;
            c = (char)byte;
            i += 2;
        }
        if (c == '\0' || c == '/' || n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return n ? 0 : -1;
}

static bool query_has_force(const char *q, size_t len)
{
    while (len) {
        const char *amp = memchr(q, '&', len);
        size_t n = amp ? (size_t)(amp - q) : len;
        if ((n == 5 && memcmp(q, "force", 5) == 0) || (n == 7 && memcmp(q, "force=1", 7) == 0) ||
            (n == 10 && memcmp(q, "force=true", 10) == 0))
            return true;
        q += n + (amp != NULL);
        len -= n + (amp != NULL);
    }
    return false;
}

static bool path_is(const char *path, size_t len, const char *literal)
{
    return len == strlen(literal) && memcmp(path, literal, len) == 0;
}

enum admin_route admin_parse_target(const char *target, size_t len, struct admin_target *out)
{
    static const char apps[] = "/api/applications/";
    const char *query = memchr(target, '?', len);
    size_t path_len = query ? (size_t)(query - target) : len;
    *out = (struct admin_target){.route = ADMIN_NOT_FOUND};
    if (query)
        out->force = query_has_force(query + 1, len - path_len - 1);
    if (path_is(target, path_len, "/"))
        return out->route = ADMIN_INDEX;
    if (path_is(target, path_len, "/metrics"))
        return out->route = ADMIN_METRICS;
    if (path_is(target, path_len, "/api/applications"))
        return out->route = ADMIN_APPS;
    if (path_is(target, path_len, "/api/reload"))
        return out->route = ADMIN_RELOAD;
    if (path_is(target, path_len, "/api/alerts/test"))
        return out->route = ADMIN_TEST_ALERT;
    if (path_len <= sizeof(apps) - 1 || memcmp(target, apps, sizeof(apps) - 1) != 0)
        return ADMIN_NOT_FOUND;
    const char *name = target + sizeof(apps) - 1;
    size_t rest = path_len - (sizeof(apps) - 1);
    const char *slash = memchr(name, '/', rest);
    size_t name_len = slash ? (size_t)(slash - name) : rest;
    enum admin_route route = ADMIN_APP;
    if (slash) {
        const char *action = slash + 1;
        size_t action_len = rest - name_len - 1;
        if (path_is(action, action_len, "drain"))
            route = ADMIN_DRAIN;
        else if (path_is(action, action_len, "enable"))
            route = ADMIN_ENABLE;
        else
            return ADMIN_NOT_FOUND;
    }
    if (decode_name(name, name_len, out->name, sizeof(out->name)) < 0)
        return ADMIN_NOT_FOUND;
    return out->route = route;
}

bool admin_route_mutates(enum admin_route route)
{
    return route == ADMIN_DRAIN || route == ADMIN_ENABLE || route == ADMIN_RELOAD || route == ADMIN_TEST_ALERT;
}

bool admin_token_matches(const char *token, const char *authorization, size_t len)
{
    static const char scheme[] = "Bearer ";
    size_t token_len = strlen(token);
    if (token_len == 0 || len < sizeof(scheme) - 1 || strncasecmp(authorization, scheme, sizeof(scheme) - 1))
        return false;
    const char *offered = authorization + sizeof(scheme) - 1;
    len -= sizeof(scheme) - 1;
    /* Every offered byte is compared, whatever matched before: the time
     * tells an attacker the length offered, which they know already. */
    unsigned diff = len != token_len;
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)offered[i] ^ (unsigned char)token[i % token_len];
    return diff == 0;
}

static void text_time(struct text *t, int64_t ms)
{
    char when[40];
    if (alert_format_time(when, sizeof(when), ms) < 0)
        snprintf(when, sizeof(when), "?");
    text_json_string(t, when);
}

/* The response-time histogram as it is counted (not cumulative): counts[i]
 * are the responses up to le_ms[i] and above le_ms[i-1]; the last count,
 * past the last bound, is everything slower. Enough for a client to
 * estimate a percentile over the interval between two reads. */
static void text_buckets(struct text *t, const struct metrics_app_totals *totals)
{
    text_put(t, "\"response_time_buckets\":{\"le_ms\":[", 34);
    for (int b = 0; b < COUNTERS_BOUNDS; b++)
        text_printf(t, "%s%g", b ? "," : "", (double)counters_bound_us[b] / 1000.0);
    text_put(t, "],\"counts\":[", 12);
    for (int b = 0; b < COUNTERS_BUCKETS; b++)
        text_printf(t, "%s%llu", b ? "," : "", (unsigned long long)totals->buckets[b]);
    text_printf(t, "],\"sum_ms\":%.3f}", (double)totals->sum_us / 1000.0);
}

static void text_app(struct text *t, const struct app *app, const struct metrics_app_totals *totals,
                     int64_t now_ms)
{
    const struct config_app *c = app->cfg;
    enum app_state state = app_state(app);
    int64_t since = atomic_load_explicit(&app->state_since_ms, memory_order_relaxed);
    int64_t checked = atomic_load_explicit(&app->last_check_time_ms, memory_order_relaxed);
    text_put(t, "{\"name\":", 8);
    text_json_string(t, c->name);
    text_put(t, ",\"address\":", 11);
    text_json_string(t, c->address.text);
    text_printf(t, ",\"state\":\"%s\",\"state_seconds\":%.1f,\"state_since\":", app_state_name(state),
                (double)(now_ms > since ? now_ms - since : 0) / 1000.0);
    text_time(t, since);
    uint64_t failures = 0;
    for (int k = 0; k < COUNTERS_FAIL_KINDS; k++)
        failures += totals->failures[k];
    text_printf(t,
                ",\"weight\":%u,\"max_requests\":%u,\"tls\":%s,\"active\":%lld,\"requests\":%llu,"
                "\"failures\":%llu,\"failures_by_kind\":{",
                c->weight, c->max_requests, c->tls ? "true" : "false",
                (long long)atomic_load_explicit(&app->active, memory_order_relaxed),
                (unsigned long long)totals->requests, (unsigned long long)failures);
    for (int k = 0; k < COUNTERS_FAIL_KINDS; k++)
        text_printf(t, "%s\"%s\":%llu", k ? "," : "", metrics_failure_name((enum counters_failure)k),
                    (unsigned long long)totals->failures[k]);
    text_put(t, "},\"transitions\":{", 17);
    for (int s = 0; s < APP_STATE_COUNT; s++)
        text_printf(t, "%s\"%s\":%llu", s ? "," : "", app_state_name((enum app_state)s),
                    (unsigned long long)atomic_load_explicit(&app->transitions[s], memory_order_relaxed));
    text_put(t, "},", 2);
    text_buckets(t, totals);
    text_put(t, ",\"last_check\":", 14);
    if (checked == 0) {
        text_put(t, "null}", 5);
        return;
    }
    text_printf(t, "{\"ok\":%s,\"status\":%d,\"duration_ms\":%.3f,\"time\":",
                atomic_load_explicit(&app->last_check_ok, memory_order_relaxed) ? "true" : "false",
                atomic_load_explicit(&app->last_check_status, memory_order_relaxed),
                (double)atomic_load_explicit(&app->last_check_duration_us, memory_order_relaxed) / 1000.0);
    text_time(t, checked);
    text_put(t, "}}", 2);
}

char *admin_app_json(const struct app *app, const struct metrics_app_totals *totals, int64_t now_ms)
{
    struct text t = {0};
    text_app(&t, app, totals, now_ms);
    return text_take(&t);
}

/* An application as the API shows it, its counters summed over the
 * workers. */
static char *app_json(const struct admin *a, const struct pool *pool, const struct app *app)
{
    struct metrics_app_totals totals;
    metrics_app_totals(a->host.workers, a->host.worker_count, pool, app->index, &totals);
    return admin_app_json(app, &totals, loop_wall_ms());
}

static const struct config_app *find_config_app(const struct config *cfg, const char *name)
{
    for (int i = 0; i < cfg->app_count; i++)
        if (strcmp(cfg->apps[i].name, name) == 0)
            return &cfg->apps[i];
    return NULL;
}

static bool config_app_differs(const struct config_app *a, const struct config_app *b)
{
    return strcmp(a->address.text, b->address.text) != 0 || a->tls != b->tls || a->weight != b->weight ||
           a->max_requests != b->max_requests || strcmp(a->host, b->host) != 0 || a->port != b->port;
}

/* Names of from's applications that are (changed: are, and differ) or are
 * not in other, as a JSON array. */
static void text_names(struct text *t, const struct config *from, const struct config *other, bool changed)
{
    bool first = true;
    text_put(t, "[", 1);
    for (int i = 0; i < from->app_count; i++) {
        const struct config_app *a = &from->apps[i], *b = find_config_app(other, a->name);
        if (changed ? !(b && config_app_differs(a, b)) : b != NULL)
            continue;
        if (!first)
            text_put(t, ",", 1);
        first = false;
        text_json_string(t, a->name);
    }
    text_put(t, "]", 1);
}

static void text_error_lines(struct text *t, const char *errors)
{
    bool first = true;
    text_put(t, "[", 1);
    while (*errors) {
        const char *end = strchr(errors, '\n');
        size_t n = end ? (size_t)(end - errors) : strlen(errors);
        char line[1024];
        snprintf(line, sizeof(line), "%.*s", (int)n, errors);
        if (n) {
            if (!first)
                text_put(t, ",", 1);
            first = false;
            text_json_string(t, line);
        }
        errors += n + (end != NULL);
    }
    text_put(t, "]", 1);
}

char *admin_reload_json(const struct config *before, const struct config *after, const char *errors)
{
    struct text t = {0};
    if (errors) {
        text_put(&t, "{\"error\":", 9);
        text_json_string(&t, "the configuration has errors; the previous one is still serving");
        text_put(&t, ",\"errors\":", 10);
        text_error_lines(&t, errors);
        text_put(&t, "}", 1);
        return text_take(&t);
    }
    text_printf(&t, "{\"reloaded\":true,\"applications\":%d,\"added\":", after->app_count);
    text_names(&t, after, before, false);
    text_put(&t, ",\"removed\":", 11);
    text_names(&t, before, after, false);
    text_put(&t, ",\"changed\":", 11);
    text_names(&t, after, before, true);
    text_put(&t, "}", 1);
    return text_take(&t);
}

/* ---- connections ---- */

static void conn_close(struct admin_conn *c)
{
    struct admin *a = c->admin;
    if (!c->in_use)
        return;
    loop_timer_cancel(&a->loop, &c->timer);
    loop_del(&a->loop, &c->io);
    close(c->io.fd);
    free(c->in);
    free(c->out);
    if (a->reload_waiter == c)
        a->reload_waiter = NULL;
    alert_test_release(c->test);
    *c = (struct admin_conn){.admin = a};
    a->conn_count--;
}

/* Whether the answer waits for another thread (a reload, a test alert). */
static bool conn_waiting(const struct admin_conn *c)
{
    return c->awaiting_reload || c->test;
}

/* Writes what is left of the answer; false when the connection closed. */
static bool conn_flush(struct admin_conn *c)
{
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->io.fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;   /* EPOLLOUT comes back (edge-triggered) */
        if (n <= 0) {
            conn_close(c);
            return false;
        }
        c->out_sent += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_sent = 0;
    if (c->close_after) {
        conn_close(c);
        return false;
    }
    return true;
}

static void respond(struct admin_conn *c, int status, const char *type, const char *extra, const char *body,
                    size_t body_len)
{
    struct text t = {0};
    text_printf(&t,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                "%s%s\r\n",
                status, http1_reason(status), type, body_len, extra ? extra : "",
                c->close_after ? "Connection: close\r\n" : "");
    if (!c->head_only)
        text_put(&t, body, body_len);
    free(c->out);
    c->out = text_take(&t);
    c->out_len = c->out ? t.len : 0;
    c->out_sent = 0;
    if (!c->out)
        c->close_after = true;
    conn_flush(c);
}

/* Answers with json (freed here), a newline added for terminals; NULL
 * means memory ran out. */
static void respond_json(struct admin_conn *c, int status, char *json)
{
    struct text t = {0};
    if (json) {
        text_put(&t, json, strlen(json));
        text_put(&t, "\n", 1);
        free(json);
    }
    char *body = json ? text_take(&t) : NULL;
    if (!body) {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";
        c->close_after = true;
        respond(c, 500, "application/json", NULL, oom, sizeof(oom) - 1);
        return;
    }
    respond(c, status, "application/json", NULL, body, t.len);
    free(body);
}

static void respond_error_with(struct admin_conn *c, int status, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void respond_error_with(struct admin_conn *c, int status, const char *extra, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    struct text t = {0};
    text_put(&t, "{\"error\":", 9);
    text_json_string(&t, message);
    text_put(&t, "}\n", 2);
    char *body = text_take(&t);
    if (!body)
        c->close_after = true;
    respond(c, status, "application/json", extra, body ? body : "{}\n", body ? t.len : 3);
    free(body);
}

#define respond_error(c, status, ...) respond_error_with((c), (status), NULL, __VA_ARGS__)

/* ---- what each route does; called with the generations lock held ---- */

static struct generation *served(struct admin *a)
{
    return atomic_load(a->host.published);
}

static void wake_workers(struct admin *a)
{
    for (int i = 0; i < a->host.worker_count; i++)
        worker_wake(&a->host.workers[i]);
}

static void answer_apps(struct admin_conn *c, struct pool *pool)
{
    struct text t = {0};
    int64_t now = loop_wall_ms();
    text_put(&t, "[", 1);
    for (int i = 0; i < pool->count; i++) {
        if (i)
            text_put(&t, ",\n", 2);
        struct metrics_app_totals totals;
        metrics_app_totals(c->admin->host.workers, c->admin->host.worker_count, pool, i, &totals);
        text_app(&t, &pool->apps[i], &totals, now);
    }
    text_put(&t, "]", 1);
    respond_json(c, 200, text_take(&t));
}

static void answer_metrics(struct admin_conn *c, struct pool *pool)
{
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(c->admin->host.workers, c->admin->host.worker_count, pool, &text, &len) < 0) {
        respond_error(c, 500, "out of memory");
        return;
    }
    respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
    free(text);
}

static void answer_index(struct admin_conn *c)
{
    size_t len;
    const char *page = dashboard_page(&len);
    respond(c, 200, "text/html; charset=utf-8", NULL, page, len);
}

/* Draining is allowed from up and down (a down one has nothing in flight
 * and goes to maintenance at once); draining and maintenance stay as they
 * are. The last application up is kept unless forced: draining it stops
 * the service. */
static void answer_drain(struct admin_conn *c, struct pool *pool, struct app *app, bool force)
{
    for (;;) {
        enum app_state state = app_state(app);
        if (state == APP_DRAINING || state == APP_MAINTENANCE) {
            log_info("admin: drain %s: already %s", app->cfg->name, app_state_name(state));
            break;
        }
        if (state == APP_UP && !force && pool_up_count(pool) == 1) {
            respond_error(c, 409, "%s is the last application up: draining it stops the service; "
                          "add ?force=1 to drain it anyway", app->cfg->name);
            return;
        }
        if (pool_set_state(pool, app, state, APP_DRAINING, force ? "operator: drain (forced)" : "operator: drain"))
            break;
    }
    wake_workers(c->admin);
    pool_finish_drain(pool, app);
    if (app_state(app) == APP_DRAINING && !loop_timer_armed(&c->admin->drain_timer))
        loop_timer_arm(&c->admin->loop, &c->admin->drain_timer, ADMIN_DRAIN_CHECK_MS);
    respond_json(c, 200, app_json(c->admin, pool, app));
}

/* From maintenance or draining to down, and a check at once that brings
 * it up on one pass. A down application is checked at once too; an up one
 * stays as it is. */
static void answer_enable(struct admin_conn *c, struct pool *pool, struct app *app)
{
    for (;;) {
        enum app_state state = app_state(app);
        if (state == APP_UP) {
            log_info("admin: enable %s: already up", app->cfg->name);
            break;
        }
        if (state == APP_DOWN)
            log_info("admin: enable %s: down, checking it now", app->cfg->name);
        if (state == APP_DOWN || pool_set_state(pool, app, state, APP_DOWN, "operator: enable")) {
            pool_request_check(pool, app);
            wake_workers(c->admin);
            break;
        }
    }
    respond_json(c, 200, app_json(c->admin, pool, app));
}

static void answer_reload(struct admin_conn *c)
{
    struct admin *a = c->admin;
    if (a->reload_pending) {
        respond_error(c, 409, "a reload is already under way");
        return;
    }
    a->reload_pending = true;
    a->reload_waiter = c;
    c->awaiting_reload = true;
    log_info("admin: reload asked");
    a->host.ask_reload(a->host.ask_reload_arg);
}

/* ---- test alerts ---- */

static void conn_event(struct loop *loop, struct loop_io *io, uint32_t events);

char *admin_test_alert_json(struct alert_test *t, const char *unsettled_why)
{
    struct text out = {0};
    int failed = alert_test_failed(t);
    text_printf(&out, "{\"delivered\":%d,\"failed\":%d,\"targets\":[", t->count - failed, failed);
    for (int i = 0; i < t->count; i++) {
        const struct alert_test_result *r = &t->results[i];
        bool settled = atomic_load_explicit(&r->settled, memory_order_acquire);
        text_printf(&out, "%s{\"target\":", i ? "," : "");
        text_json_string(&out, r->target);
        text_printf(&out, ",\"delivered\":%s,\"error\":", settled && r->delivered ? "true" : "false");
        text_json_string(&out, settled ? r->why : unsettled_why);
        text_printf(&out, "}");
    }
    text_printf(&out, "]}");
    return text_take(&out);
}

static void test_alert_poll(struct admin_conn *c)
{
    struct admin *a = c->admin;
    if (!alert_test_done(c->test) && a->loop.now < c->test_deadline) {
        loop_timer_arm(&a->loop, &c->timer, ADMIN_TEST_POLL_MS);
        return;
    }
    char why[64];
    snprintf(why, sizeof(why), "no outcome within %d s", ADMIN_TEST_WAIT_MS / 1000);
    char *json = admin_test_alert_json(c->test, why);
    alert_test_release(c->test);
    c->test = NULL;
    loop_timer_arm(&a->loop, &c->timer, ADMIN_IDLE_MS);
    respond_json(c, 200, json);
    /* Requests pipelined behind the test. */
    if (c->in_use && !c->out && c->in_len)
        conn_event(&a->loop, &c->io, EPOLLIN);
}

/* The running dispatcher sends it; the answer waits for the outcomes. */
static void answer_test_alert(struct admin_conn *c, struct generation *g)
{
    struct admin *a = c->admin;
    if (!g->alert || !(c->test = alert_test_start(g->alert))) {
        respond_error(c, 503, "the alert dispatcher cannot take a test now");
        return;
    }
    log_info("admin: test alert asked");
    c->test_deadline = a->loop.now + ADMIN_TEST_WAIT_MS;
    loop_timer_arm(&a->loop, &c->timer, ADMIN_TEST_POLL_MS);
}

static const char *route_allow(enum admin_route route)
{
    return admin_route_mutates(route) ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n";
}

static bool method_fits(enum admin_route route, enum http1_method method)
{
    if (admin_route_mutates(route))
        return method == HTTP1_METHOD_POST;
    return method == HTTP1_METHOD_GET || method == HTTP1_METHOD_HEAD;
}

static bool authorized(const struct config *cfg, const struct http1_request *req)
{
    if (!cfg->admin_token[0])
        return true;
    for (uint32_t i = 0; i < req->header_count; i++)
        if (HTTP1_NAME_IS(&req->headers[i], "authorization"))
            return admin_token_matches(cfg->admin_token, req->headers[i].value, req->headers[i].value_len);
    return false;
}

/* A host name's applications (one per address) share the name of their
 * [[applications]] entry as their group, which is itself no application.
 * Naming the members helps more than a bare 404; acting on all of them at
 * once is left to the operator, since draining every member could stop the
 * service. true when name is such a group (then answered). */
static bool answer_group(struct admin_conn *c, const struct pool *pool, const char *name)
{
    char list[400] = "";
    size_t used = 0;
    int members = 0;
    const char *host = "";
    for (int i = 0; i < pool->count; i++) {
        const struct config_app *app = pool->apps[i].cfg;
        if (!app->group[0] || strcmp(app->group, name) != 0)
            continue;
        members++;
        host = app->host;
        if (used < sizeof(list)) {
            int n = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", app->name);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    if (members == 0)
        return false;
    respond_error(c, 409, "\"%s\" is not one application but one per address %s resolves to "
                  "(%d): %s; name one of them", name, host, members, list);
    return true;
}

static void answer_route(struct admin_conn *c, const struct http1_request *req, const struct admin_target *t)
{
    struct generation *g = served(c->admin);
    if (admin_route_mutates(t->route) && !authorized(&g->cfg, req)) {
        respond_error_with(c, 401, "WWW-Authenticate: Bearer realm=\"sluice\"\r\n",
                           "this call needs the header Authorization: Bearer <[admin] token>");
        return;
    }
    struct app *app = NULL;
    if (t->route == ADMIN_APP || t->route == ADMIN_DRAIN || t->route == ADMIN_ENABLE) {
        app = pool_find(&g->pool, t->name);
        if (!app && answer_group(c, &g->pool, t->name))
            return;
        if (!app) {
            respond_error(c, 404, "no application named \"%s\"", t->name);
            return;
        }
    }
    switch (t->route) {
    case ADMIN_INDEX:
        answer_index(c);
        break;
    case ADMIN_METRICS:
        answer_metrics(c, &g->pool);
        break;
    case ADMIN_APPS:
        answer_apps(c, &g->pool);
        break;
    case ADMIN_APP:
        respond_json(c, 200, app_json(c->admin, &g->pool, app));
        break;
    case ADMIN_DRAIN:
        answer_drain(c, &g->pool, app, t->force);
        break;
    case ADMIN_ENABLE:
        answer_enable(c, &g->pool, app);
        break;
    case ADMIN_TEST_ALERT:
        answer_test_alert(c, g);
        break;
    case ADMIN_RELOAD:
    case ADMIN_NOT_FOUND:
        break;
    }
}

static void answer(struct admin_conn *c, const struct http1_request *req)
{
    struct admin *a = c->admin;
    struct admin_target t;
    c->head_only = req->method == HTTP1_METHOD_HEAD;
    if (admin_parse_target(req->path, req->path_len, &t) == ADMIN_NOT_FOUND) {
        respond_error(c, 404, "no such path: %.*s", (int)(req->path_len < 200 ? req->path_len : 200), req->path);
        return;
    }
    if (!method_fits(t.route, req->method)) {
        respond_error_with(c, 405, route_allow(t.route), "%.*s is not allowed here", (int)req->method_len,
                           req->method_text);
        return;
    }
    if (t.route == ADMIN_RELOAD) {
        pthread_mutex_lock(a->host.generations_lock);
        bool ok = authorized(&served(a)->cfg, req);
        pthread_mutex_unlock(a->host.generations_lock);
        if (ok)
            answer_reload(c);
        else
            respond_error_with(c, 401, "WWW-Authenticate: Bearer realm=\"sluice\"\r\n",
                               "this call needs the header Authorization: Bearer <[admin] token>");
        return;
    }
    pthread_mutex_lock(a->host.generations_lock);
    answer_route(c, req, &t);
    pthread_mutex_unlock(a->host.generations_lock);
}

/* ---- reading requests ---- */

/* Parses and answers the request at the start of the input, once it is
 * whole; false when the connection was closed. */
static bool conn_take_request(struct admin_conn *c)
{
    struct admin *a = c->admin;
    struct http1_limits limits = {.head_bytes = ADMIN_HEAD_MAX, .headers = ADMIN_HEADERS_MAX};
    struct http1_request req = {.headers = a->headers};
    enum http1_result rc = http1_parse_request(c->in, c->in_len, &limits, &req);
    if (rc == HTTP1_INCOMPLETE)
        return true;
    if (rc == HTTP1_ERROR) {
        c->close_after = true;
        if (req.error == HTTP1_E_HEAD_TOO_LARGE || req.error == HTTP1_E_TOO_MANY_HEADERS)
            respond_error(c, 413, "request head larger than %d bytes or %d fields", ADMIN_HEAD_MAX,
                          ADMIN_HEADERS_MAX);
        else
            respond_error(c, 400, "malformed request");
        return c->in_use;
    }
    if (req.body == HTTP1_BODY_CHUNKED) {
        c->close_after = true;
        respond_error(c, 400, "send a request body with Content-Length, not chunked");
        return c->in_use;
    }
    uint64_t body = req.body == HTTP1_BODY_LENGTH ? req.content_length : 0;
    if (body > ADMIN_BODY_MAX) {
        c->close_after = true;
        respond_error(c, 413, "request body larger than %d bytes", ADMIN_BODY_MAX);
        return c->in_use;
    }
    size_t whole = req.head_len + (size_t)body;
    if (c->in_len < whole)
        return true;
    c->close_after = (req.flags & HTTP1_CONN_CLOSE) ||
                     (req.version_minor == 0 && !(req.flags & HTTP1_CONN_KEEP_ALIVE));
    answer(c, &req);
    if (!c->in_use)
        return false;
    /* Pipelined bytes wait for the next request (the views into them are
     * not used any more). */
    memmove(c->in, c->in + whole, c->in_len - whole);
    c->in_len -= whole;
    return true;
}

/* Reads what fits; true when the peer has finished sending (or failed). */
static bool conn_read(struct admin_conn *c)
{
    while (c->in_len < ADMIN_HEAD_MAX + ADMIN_BODY_MAX) {
        ssize_t n = recv(c->io.fd, c->in + c->in_len, ADMIN_HEAD_MAX + ADMIN_BODY_MAX - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
    return false;
}

static void conn_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    struct admin_conn *c = container_of(io, struct admin_conn, io);
    if (!c->in_use)
        return;   /* closed earlier in this batch */
    loop_timer_arm(loop, &c->timer, c->test ? ADMIN_TEST_POLL_MS : ADMIN_IDLE_MS);
    if (events & EPOLLERR) {
        conn_close(c);
        return;
    }
    if (c->out && !conn_flush(c))
        return;
    bool peer_done = false, full;
    do {
        peer_done |= conn_read(c);
        full = c->in_len == ADMIN_HEAD_MAX + ADMIN_BODY_MAX;
        /* One request at a time: the next waits until this answer is out. */
        while (c->in_len && !c->out && !conn_waiting(c)) {
            size_t before = c->in_len;
            if (!conn_take_request(c))
                return;
            if (c->in_len == before)
                break;   /* incomplete */
        }
        /* A full buffer stopped the reads: edge-triggered, no event says
         * that more is waiting, so read again once requests made room. */
    } while (full && !peer_done && c->in_len < ADMIN_HEAD_MAX + ADMIN_BODY_MAX && !c->out &&
             !conn_waiting(c));
    if (peer_done && !c->out && !conn_waiting(c))
        conn_close(c);
}

static void conn_timeout(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    struct admin_conn *c = container_of(timer, struct admin_conn, timer);
    if (c->test)
        test_alert_poll(c);
    else if (c->awaiting_reload)
        loop_timer_arm(loop, timer, ADMIN_IDLE_MS);
    else
        conn_close(c);
}

static struct admin_conn *free_slot(struct admin *a)
{
    for (int i = 0; i < ADMIN_CONNECTIONS_MAX; i++)
        if (!a->conns[i].in_use)
            return &a->conns[i];
    return NULL;
}

static void listener_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)events;
    struct admin *a = container_of(io, struct admin, listen_io);
    for (;;) {
        int fd = accept4(a->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct admin_conn *c = free_slot(a);
        char *in = c ? malloc(ADMIN_HEAD_MAX + ADMIN_BODY_MAX) : NULL;
        if (!in) {
            static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                       "Content-Length: 35\r\nConnection: close\r\n\r\n"
                                       "{\"error\":\"too many admin clients\"}\n";
            if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                log_debug("admin: cannot refuse a connection: %s", strerror(errno));
            close(fd);
            continue;
        }
        *c = (struct admin_conn){.admin = a, .in_use = true, .in = in};
        loop_timer_init(&c->timer, conn_timeout);
        if (loop_add(loop, &c->io, fd, conn_event) < 0) {
            free(in);
            close(fd);
            c->in_use = false;
            continue;
        }
        a->conn_count++;
        loop_timer_arm(loop, &c->timer, ADMIN_IDLE_MS);
    }
}

/* ---- the thread ---- */

static void deliver_reload_result(struct admin *a)
{
    pthread_mutex_lock(&a->result_lock);
    bool ready = a->result_ready;
    int status = a->result_status;
    char *body = a->result_body;
    a->result_ready = false;
    a->result_body = NULL;
    pthread_mutex_unlock(&a->result_lock);
    if (!ready)
        return;
    a->reload_pending = false;
    struct admin_conn *c = a->reload_waiter;
    a->reload_waiter = NULL;
    if (!c) {
        free(body);
        return;
    }
    c->awaiting_reload = false;
    respond_json(c, status, body);
    /* Requests pipelined behind the reload. */
    if (c->in_use && !c->out && c->in_len)
        conn_event(&a->loop, &c->io, EPOLLIN);
}

static void wake_event(struct loop *loop, struct loop_io *io, uint32_t events)
{
    (void)events;
    struct admin *a = container_of(io, struct admin, wake_io);
    uint64_t value;
    if (read(a->wake_fd, &value, sizeof(value)) < 0 && errno != EAGAIN)
        log_debug("admin: wake: %s", strerror(errno));
    if (atomic_load(&a->stop)) {
        loop->stop = true;
        return;
    }
    deliver_reload_result(a);
}

static void drain_check(struct loop *loop, struct loop_timer *timer)
{
    struct admin *a = container_of(timer, struct admin, drain_timer);
    bool draining = false;
    pthread_mutex_lock(a->host.generations_lock);
    struct pool *pool = &served(a)->pool;
    for (int i = 0; i < pool->count; i++) {
        pool_finish_drain(pool, &pool->apps[i]);
        draining |= app_state(&pool->apps[i]) == APP_DRAINING;
    }
    pthread_mutex_unlock(a->host.generations_lock);
    /* Only while something drains: an idle sluice does not wake for it. */
    if (draining)
        loop_timer_arm(loop, timer, ADMIN_DRAIN_CHECK_MS);
}

static void *admin_main(void *arg)
{
    struct admin *a = arg;
    int rc = loop_run(&a->loop);
    if (rc < 0)
        log_error("admin: event loop: %s", strerror(-rc));
    return NULL;
}

static void admin_free(struct admin *a)
{
    for (int i = 0; i < ADMIN_CONNECTIONS_MAX; i++)
        conn_close(&a->conns[i]);
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    if (a->wake_fd >= 0)
        close(a->wake_fd);
    loop_close(&a->loop);
    free(a->result_body);
    pthread_mutex_destroy(&a->result_lock);
    free(a);
}

int admin_start(struct admin **out, const struct config *cfg, const struct admin_host *host, char *error,
                size_t error_len)
{
    *out = NULL;
    struct admin *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->host = *host;
    a->listen_fd = a->wake_fd = -1;
    a->loop.epfd = -1;
    pthread_mutex_init(&a->result_lock, NULL);
    for (int i = 0; i < ADMIN_CONNECTIONS_MAX; i++)
        a->conns[i].admin = a;
    loop_timer_init(&a->drain_timer, drain_check);
    snprintf(error, error_len, "start the admin API");
    int rc = loop_init(&a->loop);
    if (rc == 0 && (a->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        rc = -errno;
    if (rc == 0 && (a->listen_fd = net_listen(&cfg->admin_listen, 64, false)) < 0) {
        rc = a->listen_fd;
        snprintf(error, error_len, "listen on %s for the admin API ([admin] listen)", cfg->admin_listen.text);
    }
    if (rc == 0)
        rc = loop_add_reader(&a->loop, &a->listen_io, a->listen_fd, listener_event);
    if (rc == 0)
        rc = loop_add_reader(&a->loop, &a->wake_io, a->wake_fd, wake_event);
    if (rc == 0)
        rc = loop_timer_arm(&a->loop, &a->drain_timer, ADMIN_DRAIN_CHECK_MS);
    if (rc == 0)
        rc = loop_thread_start(&a->thread, admin_main, a, "sluice-admin");
    if (rc < 0) {
        admin_free(a);
        return rc;
    }
    a->thread_started = true;
    *out = a;
    return 0;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    atomic_store(&a->stop, true);
    uint64_t one = 1;
    if (write(a->wake_fd, &one, sizeof(one)) < 0)
        log_error("admin: cannot stop: %s", strerror(errno));
    pthread_join(a->thread, NULL);
    admin_free(a);
}

void admin_reload_done(struct admin *a, const struct config *before, const struct config *after,
                       const char *errors)
{
    char *body = admin_reload_json(before, after, errors);
    pthread_mutex_lock(&a->result_lock);
    free(a->result_body);
    a->result_body = body;
    a->result_status = errors ? 400 : 200;
    a->result_ready = true;
    pthread_mutex_unlock(&a->result_lock);
    uint64_t one = 1;
    if (write(a->wake_fd, &one, sizeof(one)) < 0)
        log_error("admin: cannot hand over the reload's result: %s", strerror(errno));
}
