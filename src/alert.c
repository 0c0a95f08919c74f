/* alert.c - the alert dispatcher: webhook POSTs, the command hook, email.
 *
 * Flow. Every pool_set_state that succeeds writes one fixed-size struct
 * pool_transition to a non-blocking pipe (atomic: smaller than PIPE_BUF).
 * This thread reads the pipe level-triggered, turns each record into an
 * alert_event and queues one delivery per configured target (webhook,
 * command, email). Workers never wait for any of it: if the pipe ever
 * filled up, pool.c logs the lost transition and the worker carries on.
 *
 * Deliveries. A list, oldest first, of which at most ALERT_RUNNING_MAX to
 * each webhook, and of the commands and of the emails, run at
 * once (a mass outage must not fork a thousand shells); the rest wait in
 * order. A failed attempt waits 1 s, then 2 s, before the next; the third
 * failure is final. Each failure and the final give-up is logged. The list
 * is bounded: past ALERT_PENDING_MAX the oldest delivery not in progress is
 * dropped, with a log line, so a dead webhook during a flapping outage
 * cannot grow memory without end. Deliveries start only from the
 * after_iteration hook, so no completion path re-enters the scheduler.
 *
 * Webhook. An HTTP/1.1 POST over struct httpclient (httpclient.h), plain or
 * TLS; the host is resolved on every attempt (it may move), with
 * getaddrinfo_a polled from a timer, so that a slow DNS holds back neither
 * the commands nor the other webhooks, nor a stop. Any 2xx status is
 * delivered. `[alerts] webhook` and each `[[alerts.webhooks]]` entry is a
 * struct hook, whose format (payload.h) makes the body when the alert is
 * queued, so that every try sends the same bytes.
 *
 * Batches. A chat webhook and the email hold changes for `[alerts] batch`
 * from the first one held, then send them as one message: a rack going
 * down is one message, not forty. all_down and restored are never held;
 * they take what is held with them. Neither is a stop or a reload.
 *
 * Tests. alert_test_start (any thread) queues a request under test_lock and
 * wakes this loop through test_fd; each target then gets one delivery of a
 * "test" event with a single try, whose outcome is written to the shared
 * struct alert_test when the delivery ends, whatever ended it.
 *
 * Email. One message per alert (or batch) to every `[alerts.email] to`, over SMTP
 * (smtp.h) on this loop, the server's name resolved as the webhook's is. A
 * 5xx reply is the server's final word and ends the delivery without the
 * remaining tries; everything else (4xx, refused, timeout, TLS) is retried.
 *
 * Command. `/bin/sh -c COMMAND` through posix_spawn (safe in a threaded
 * process, unlike a fork that runs code), in its own process group so that
 * the time limit kills the whole pipeline it may start; stdin is /dev/null,
 * stdout goes to stderr (the error log, never the access log on stdout),
 * signals are reset to their defaults. Exit status 0 is delivered. The child
 * is reaped by polling waitpid(WNOHANG) from its timer: no SIGCHLD handler,
 * which would belong to the whole process.
 *
 * "Service" alerts. The thread keeps its own copy of every application's
 * state, updated record by record, so that an outage shorter than one read
 * of the pipe (all down, then one back up, both in the same batch) is still
 * seen. The count of applications up reaching 0 sends one "all_down" alert
 * (application "*"); coming back above 0 after that sends one "restored".
 * The copy only ever moves forward: each record carries its application's
 * stamp (pool.h), and a record older than the copy (two threads' records
 * for one application swapped in the pipe, or a record written before the
 * copy was taken) is alerted on but not applied. Reading the pool's live
 * states instead would skip over records still in the pipe, and with them
 * an outage; that is done only after the full pipe refused a record.
 *
 * Every transition is alerted on, the operator's too: whoever changed the
 * state, people may need to know. An application in maintenance is never
 * alerted on because nothing happens to it: it is not checked, so it cannot
 * fail.
 */
#include "alert.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpclient.h"
#include "log.h"
#include "loop.h"
#include "payload.h"
#include "smtp.h"
#include "tls.h"
#include "url.h"

#define ALERT_ATTEMPTS 3
#define ALERT_FIRST_BACKOFF_MS 1000
#define ALERT_WEBHOOK_TIMEOUT_MS 5000
#define ALERT_COMMAND_LIMIT_MS 10000
#define ALERT_COMMAND_POLL_MS 50
#define ALERT_LOOKUP_POLL_MS 10
#define ALERT_RUNNING_MAX 8          /* per kind of target */
#define ALERT_PENDING_MAX 1000
/* A retired dispatcher's deadline: room for a few rounds of deliveries
 * (3 tries of a webhook take at most about 18 s, of a command 33 s, of an
 * email usually well under a minute, 8 at a time) even when a mass outage
 * queued many; what is left then is logged as not delivered. */
#define ALERT_RETIRE_GRACE_MS (5 * 60 * 1000)
/* How often the copy of the states is checked against records lost to a
 * full pipe (see alert_resync). */
#define ALERT_RESYNC_MS 1000
#define ALERT_JSON_MAX 8192
#define ALERT_RESPONSE_MAX 2048
#define ALERT_HOST_MAX 256
#define ALERT_COMMAND_VARS 8
/* Changes one chat message lists at most; a longer burst sends more. */
#define ALERT_BATCH_MAX 32

extern char **environ;

/* ---- formatting (pure) ---- */

/* An snprintf-like accumulator: writes what fits, counts everything. */
struct text {
    char *out;
    size_t cap, len;
};

static void text_put(struct text *t, const char *s, size_t n)
{
    if (t->cap > 0 && t->len < t->cap - 1) {
        size_t room = t->cap - 1 - t->len;
        size_t k = n < room ? n : room;
        memcpy(t->out + t->len, s, k);
        t->out[t->len + k] = '\0';
    }
    t->len += n;
}

static void text_puts(struct text *t, const char *s)
{
    text_put(t, s, strlen(s));
}

int alert_format_time(char *out, size_t cap, int64_t time_ms)
{
    time_t seconds = (time_t)(time_ms / 1000);
    int millis = (int)(time_ms % 1000);
    struct tm tm;
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    if (!gmtime_r(&seconds, &tm))
        return -1;
    int n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0. Stops at a NUL. */
static size_t utf8_sequence(const unsigned char *s)
{
    size_t n;
    uint32_t cp, min;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0)
        n = 2, cp = s[0] & 0x1F, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0)
        n = 3, cp = s[0] & 0x0F, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0)
        n = 4, cp = s[0] & 0x07, min = 0x10000;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static void text_json_escape(struct text *t, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p;
            text_put(t, esc, 2);
            p++;
        } else if (*p < 0x20 || *p == 0x7f) {
            const char *named = *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t" : NULL;
            if (named)
                text_puts(t, named);
            else
                text_put(t, esc, (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p));
            p++;
        } else {
            size_t n = utf8_sequence(p);
            if (n == 0) {
                text_puts(t, "\\ufffd");
                p++;
            } else {
                text_put(t, (const char *)p, n);
                p += n;
            }
        }
    }
}

size_t alert_json_escape(char *out, size_t cap, const char *s)
{
    struct text t = {out, cap, 0};
    if (cap > 0)
        out[0] = '\0';
    text_json_escape(&t, s);
    return t.len;
}

static void text_sentence(struct text *t, const struct alert_event *e, const char *host)
{
    text_puts(t, "sluice on ");
    text_puts(t, host);
    text_puts(t, ": ");
    if (alert_event_is_test(e)) {
        /* the reason says it all */
    } else if (strcmp(e->event, "all_down") == 0) {
        text_puts(t, "no application is up: ");
    } else if (strcmp(e->event, "restored") == 0) {
        text_puts(t, "service restored: ");
    } else {
        text_puts(t, "application ");
        text_puts(t, e->application);
        text_puts(t, " (");
        text_puts(t, e->address);
        text_puts(t, ") is now ");
        text_puts(t, e->state);
        text_puts(t, " (was ");
        text_puts(t, e->previous);
        text_puts(t, "): ");
    }
    text_puts(t, e->reason);
}

bool alert_event_is_test(const struct alert_event *e)
{
    return strcmp(e->event, "test") == 0;
}

int alert_format_text(char *out, size_t cap, const struct alert_event *e, const char *host)
{
    struct text t = {out, cap, 0};
    if (cap > 0)
        out[0] = '\0';
    text_sentence(&t, e, host);
    return t.len < cap ? (int)t.len : -1;
}

static void json_field(struct text *t, const char *name, const char *value, bool first)
{
    text_puts(t, first ? "{\"" : ",\"");
    text_puts(t, name);
    text_puts(t, "\":\"");
    text_json_escape(t, value);
    text_puts(t, "\"");
}

int alert_format_json(char *out, size_t cap, const struct alert_event *e, const char *host)
{
    char time_text[40];
    char sentence[1024];
    struct text t = {out, cap, 0};
    if (cap > 0)
        out[0] = '\0';
    if (alert_format_time(time_text, sizeof(time_text), e->time_ms) < 0)
        return -1;
    if (alert_format_text(sentence, sizeof(sentence), e, host) < 0)
        return -1;
    json_field(&t, "application", e->application, true);
    json_field(&t, "address", e->address, false);
    json_field(&t, "state", e->state, false);
    json_field(&t, "previous", e->previous, false);
    json_field(&t, "reason", e->reason, false);
    json_field(&t, "time", time_text, false);
    json_field(&t, "host", host, false);
    json_field(&t, "event", e->event, false);
    json_field(&t, "text", sentence, false);
    text_puts(&t, "}");
    return t.len < cap ? (int)t.len : -1;
}

/* ---- the dispatcher ---- */

enum delivery_kind {
    DELIVERY_WEBHOOK = ALERT_TARGET_WEBHOOK,
    DELIVERY_COMMAND = ALERT_TARGET_COMMAND,
    DELIVERY_EMAIL = ALERT_TARGET_EMAIL,
};
enum delivery_phase { DELIVERY_QUEUED, DELIVERY_WAITING, DELIVERY_RUNNING };

/* A webhook's name lookup in flight. glibc's resolver thread writes into it
 * until the lookup completes, so it is owned apart from the delivery: one
 * abandoned before then (a timeout, a dropped delivery) waits in
 * alert->orphans until glibc is done with it. */
struct lookup {
    struct gaicb cb;
    struct addrinfo hints;
    char host[256], port[6];         /* read by glibc until done: not the alert's */
    int64_t started;                 /* loop ms */
    struct lookup *next;             /* in alert->orphans */
};

/* Changes held for one message, a chat webhook's or the email's, until the
 * batch window that the first of them opened closes. */
struct batch {
    struct alert *alert;
    struct hook *hook;                   /* NULL: the email */
    struct alert_event events[ALERT_BATCH_MAX];
    int count;
    struct loop_timer timer;             /* from the first change held */
};

/* One webhook: [alerts] webhook (sluice's JSON) or an [[alerts.webhooks]]
 * entry. Owned by the dispatcher's hooks array. */
struct hook {
    struct alert *alert;
    const struct config_webhook *cfg;    /* NULL for [alerts] webhook */
    enum config_webhook_format format;
    struct url url;
    char name[160];                      /* for logs and test results: no path, which may hold a secret */
    struct batch batch;                  /* chat only */
    int running;                         /* its deliveries in progress */
};

/* One alert to one target; owned by the dispatcher's list. */
struct delivery {
    struct alert *alert;
    struct delivery *prev, *next;    /* oldest first */
    enum delivery_kind kind;
    enum delivery_phase phase;
    int attempts;                    /* made so far */
    bool delivered;
    bool urgent;                     /* all_down or restored: started first */
    struct loop_timer timer;         /* backoff wait, or a running command's poll */
    struct alert_event event;
    int batched;                     /* changes in one message, else 1 */
    struct alert_event *events;      /* an email's batch of them; owned */
    struct alert_test *test;         /* a test alert's shared result, or NULL */
    int test_slot;                   /* its index in test->results */
    char why[160];                   /* the last failure */
    /* webhook */
    struct hook *hook;
    char *request;                   /* the whole POST; owned */
    char *followup;                  /* sent once request is delivered (a test's
                                        PagerDuty resolve); owned */
    size_t request_len;
    struct config_address address;   /* resolved for the current attempt */
    struct lookup *lookup;           /* while resolving; owned */
    struct httpclient http;
    char response[ALERT_RESPONSE_MAX];
    /* email: the applications up when the alert was raised, the session */
    int up, total;
    struct smtp_target smtp_target;
    struct smtp_session smtp;
    uint64_t message_unique;         /* its Message-ID's, drawn at the first attempt */
    /* command */
    pid_t pid;
    int64_t started;                 /* loop ms */
    bool killed;                     /* the time limit was reached */
};

struct alert {
    struct pool *pool;
    const struct config *cfg;
    struct loop loop;                /* used by the alert thread only */
    pthread_t thread;
    int wake_fd;                     /* eventfd: alert_stop -> thread */
    struct loop_io wake_io;
    struct loop_io notify_io;        /* pool->notify_read_fd */
    bool command_on;
    struct hook *hooks;              /* owned array */
    int hook_count;
    struct ssl_ctx_st *tls;          /* for https webhooks */
    int test_fd;                     /* eventfd: alert_test_start -> thread */
    struct loop_io test_io;
    pthread_mutex_t test_lock;       /* guards tests and tests_closed */
    struct alert_test *tests;        /* asked for, not yet started */
    bool tests_closed;               /* the thread has ended */
    bool email_on;
    struct batch email_batch;
    struct ssl_ctx_st *email_tls;    /* for [alerts.email], unless security = "none" */
    char host[ALERT_HOST_MAX];       /* this machine, for "host" */
    struct delivery *head, *tail;
    int pending;
    struct lookup *orphans;          /* abandoned lookups glibc still holds */
    int running[ALERT_TARGET_COUNT]; /* per delivery_kind (webhooks: hook->running
                                        counts); a hung webhook must not
                                        hold back the commands, nor the reverse */
    uint32_t *states;                /* this thread's copy of each app->state,
                                        pool->count; owned */
    uint64_t lost_seen;              /* pool->notify_lost when last resynced */
    int up;                          /* how many of states are APP_UP */
    bool all_down;                   /* "all_down" sent, "restored" not yet */
    _Atomic int64_t grace_ms;        /* set by alert_stop before the wake-up */
    bool stopping;
    int64_t stop_deadline;           /* loop time; valid while stopping */
    _Atomic bool retired;            /* alert_retire: listen until the writers go */
    _Atomic bool stop_called;        /* alert_stop: stop listening, finish up */
    struct loop_timer resync_timer;
    _Atomic bool finished;           /* the thread is done; joining is instant */
    struct loop_timer stop_timer;
};

/* ---- name lookups (webhook) ---- */

static void lookup_free(struct lookup *l)
{
    if (l->cb.ar_result)
        freeaddrinfo(l->cb.ar_result);
    free(l);
}

/* Lets go of a delivery's lookup: cancelled or done, it is freed; still
 * running, it joins the orphans. */
static void lookup_abandon(struct delivery *d)
{
    struct lookup *l = d->lookup;
    if (!l)
        return;
    d->lookup = NULL;
    loop_timer_cancel(&d->alert->loop, &d->timer);
    if (gai_cancel(&l->cb) == EAI_NOTCANCELED) {
        l->next = d->alert->orphans;
        d->alert->orphans = l;
        return;
    }
    lookup_free(l);
}

/* Frees the orphans glibc is done with; returns how many are left. */
static int lookup_reap_orphans(struct alert *a)
{
    int left = 0;
    struct lookup **p = &a->orphans;
    while (*p) {
        struct lookup *l = *p;
        if (gai_error(&l->cb) == EAI_INPROGRESS) {
            left++;
            p = &l->next;
            continue;
        }
        *p = l->next;
        lookup_free(l);
    }
    return left;
}

/* ---- deliveries ---- */

static const char *const kind_names[] = {[DELIVERY_WEBHOOK] = "webhook", [DELIVERY_COMMAND] = "command",
                                         [DELIVERY_EMAIL] = "email"};

static const char *delivery_kind_name(const struct delivery *d)
{
    static const char *const formats[] = {"webhook", "slack webhook", "pagerduty webhook", "form webhook"};
    if (d->kind != DELIVERY_WEBHOOK)
        return kind_names[d->kind];
    return formats[d->hook->format];
}

static void delivery_describe(const struct delivery *d, char *out, size_t len)
{
    int n = snprintf(out, len, "%s%s alert for %s (%s -> %s)", d->test ? "test " : "", delivery_kind_name(d),
                     d->event.application, d->event.previous, d->event.state);
    if (d->batched > 1 && n > 0 && (size_t)n < len)
        snprintf(out + n, len - (size_t)n, " and %d more changes", d->batched - 1);
}

/* ---- test results ---- */

static void test_settle(struct alert_test *t, int slot, bool delivered, const char *why)
{
    struct alert_test_result *r = &t->results[slot];
    r->delivered = delivered;
    snprintf(r->why, sizeof(r->why), "%s", delivered ? "" : why);
    atomic_store_explicit(&r->settled, true, memory_order_release);
    if (--t->outstanding == 0)
        alert_test_release(t);
}

void alert_test_release(struct alert_test *t)
{
    if (t && atomic_fetch_sub(&t->refs, 1) == 1)
        free(t);
}

bool alert_test_done(struct alert_test *t)
{
    for (int i = 0; i < t->count; i++)
        if (!atomic_load_explicit(&t->results[i].settled, memory_order_acquire))
            return false;
    return true;
}

int alert_test_failed(struct alert_test *t)
{
    int failed = 0;
    for (int i = 0; i < t->count; i++)
        failed += !atomic_load_explicit(&t->results[i].settled, memory_order_acquire) ||
                  !t->results[i].delivered;
    return failed;
}

/* Kills a command and everything it started (its process group). */
static void command_kill(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);      /* in case it left the group */
}

/* Kills and reaps at once; SIGKILL cannot be caught, so the wait is short. */
static void command_kill_and_reap(pid_t pid)
{
    command_kill(pid);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Leaves the running phase, freeing a slot for the next delivery. */
static void delivery_settle(struct delivery *d, enum delivery_phase next)
{
    if (d->phase == DELIVERY_RUNNING) {
        d->alert->running[d->kind]--;
        if (d->hook)
            d->hook->running--;
    }
    d->phase = next;
}

/* Stops whatever is in progress, without reporting. */
static void delivery_abort(struct delivery *d)
{
    if (d->phase != DELIVERY_RUNNING)
        return;
    if (d->kind == DELIVERY_WEBHOOK || d->kind == DELIVERY_EMAIL) {
        lookup_abandon(d);
        httpclient_cancel(&d->http);
        smtp_cancel(&d->smtp);
    } else if (d->pid > 0)
        command_kill_and_reap(d->pid);
    d->pid = 0;
    delivery_settle(d, DELIVERY_QUEUED);
}

/* Every delivery ends here once, whatever ended it; counted over every
 * dispatcher of the process, a reload's retired ones too, for the metrics. */
static _Atomic uint64_t outcomes[ALERT_TARGET_COUNT][2];   /* [kind][delivered] */

uint64_t alert_deliveries(enum alert_target target, bool delivered)
{
    return atomic_load_explicit(&outcomes[target][delivered], memory_order_relaxed);
}

static void delivery_remove(struct delivery *d)
{
    struct alert *a = d->alert;
    atomic_fetch_add_explicit(&outcomes[d->kind][d->delivered], 1, memory_order_relaxed);
    delivery_abort(d);
    loop_timer_cancel(&a->loop, &d->timer);
    if (d->prev)
        d->prev->next = d->next;
    else
        a->head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        a->tail = d->prev;
    a->pending--;
    if (d->test)
        test_settle(d->test, d->test_slot, d->delivered,
                    d->why[0] ? d->why : "not delivered: sluice stopped before it was sent");
    free(d->request);
    free(d->followup);
    free(d->events);
    free(d);
}

static void delivery_succeeded(struct delivery *d, const char *note)
{
    char what[200];
    delivery_describe(d, what, sizeof(what));
    log_info("alert: %s delivered%s", what, note);
    delivery_settle(d, DELIVERY_QUEUED);
    if (d->followup) {
        /* The next request of the same alert (a test's resolve) is started
         * by the next after_iteration, with tries of its own. */
        free(d->request);
        d->request = d->followup;
        d->request_len = strlen(d->request);
        d->followup = NULL;
        d->attempts = 0;
        return;
    }
    d->delivered = true;
    delivery_remove(d);
}

static void delivery_on_backoff(struct loop *loop, struct loop_timer *timer)
{
    struct delivery *d = container_of(timer, struct delivery, timer);
    (void)loop;
    d->phase = DELIVERY_QUEUED;    /* started by the next after_iteration */
}

static void delivery_failed(struct delivery *d, const char *why)
{
    struct alert *a = d->alert;
    char what[200];
    delivery_describe(d, what, sizeof(what));
    delivery_settle(d, DELIVERY_WAITING);
    snprintf(d->why, sizeof(d->why), "%s", why);
    if (d->attempts < (d->test ? 1 : ALERT_ATTEMPTS)) {
        int64_t backoff = (int64_t)ALERT_FIRST_BACKOFF_MS << (d->attempts - 1);
        loop_timer_init(&d->timer, delivery_on_backoff);
        if (loop_timer_arm(&a->loop, &d->timer, backoff) == 0) {
            log_warn("alert: %s failed (attempt %d of %d): %s; retrying in %lld ms", what,
                     d->attempts, ALERT_ATTEMPTS, why, (long long)backoff);
            return;
        }
    }
    if (d->test)
        log_warn("alert: %s not delivered: %s", what, why);
    else
        log_error("alert: gave up on %s after %d attempts: %s", what, d->attempts, why);
    delivery_remove(d);
}

/* ---- webhook delivery ---- */

/* Each try takes the next address the name resolves to: "localhost" may
 * give ::1 first while the receiver listens on 127.0.0.1 only, and a
 * retry should not knock on the same closed door. */
static void address_pick(const char *host, const char *port, const struct addrinfo *res, int attempt,
                         struct config_address *out)
{
    int count = 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
        count++;
    const struct addrinfo *pick = res;
    for (int i = (attempt - 1) % count; i > 0; i--)
        pick = pick->ai_next;
    memset(out, 0, sizeof(*out));
    memcpy(&out->addr, pick->ai_addr, pick->ai_addrlen);
    out->addr_len = pick->ai_addrlen;
    snprintf(out->text, sizeof(out->text), "%.70s:%s", host, port);
}

static void webhook_done(struct httpclient *http, int status, const char *error)
{
    struct delivery *d = container_of(http, struct delivery, http);
    char why[HTTPCLIENT_REASON_MAX + 32];
    if (!error && status >= 200 && status <= 299) {
        delivery_succeeded(d, "");
        return;
    }
    if (!error)
        snprintf(why, sizeof(why), "status %d", status);
    else
        snprintf(why, sizeof(why), "%s", error);
    delivery_failed(d, why);
}

static int webhook_send(struct delivery *d, char *err, size_t err_len)
{
    struct alert *a = d->alert;
    d->http.address = &d->address;
    d->http.tls = a->tls;
    d->http.server_name = d->hook->url.host;
    d->http.request = d->request;
    d->http.request_len = d->request_len;
    d->http.buf = d->response;
    d->http.buf_cap = sizeof(d->response);
    d->http.timeout_ms = ALERT_WEBHOOK_TIMEOUT_MS;
    d->http.done = webhook_done;
    if (httpclient_start(&d->http, &a->loop) < 0) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return 0;
}

static int email_send(struct delivery *d, char *err, size_t err_len);

/* The name and port a webhook or email delivery connects to. */
static void delivery_server(const struct delivery *d, const char **host, const char **port)
{
    const struct alert *a = d->alert;
    *host = d->kind == DELIVERY_EMAIL ? a->cfg->email.host : d->hook->url.host;
    *port = d->kind == DELIVERY_EMAIL ? a->cfg->email.port : d->hook->url.port;
}

/* Once the server's address is known. */
static int delivery_send(struct delivery *d, char *err, size_t err_len)
{
    return d->kind == DELIVERY_EMAIL ? email_send(d, err, err_len) : webhook_send(d, err, err_len);
}

static void delivery_on_lookup(struct loop *loop, struct loop_timer *timer)
{
    struct delivery *d = container_of(timer, struct delivery, timer);
    struct lookup *l = d->lookup;
    const char *host, *port;
    char err[160];
    delivery_server(d, &host, &port);
    if (!l)
        return;
    int rc = gai_error(&l->cb);
    if (rc == EAI_INPROGRESS && loop->now - l->started < ALERT_WEBHOOK_TIMEOUT_MS &&
        loop_timer_arm(loop, timer, ALERT_LOOKUP_POLL_MS) == 0)
        return;
    if (rc == EAI_INPROGRESS)
        snprintf(err, sizeof(err), "cannot resolve %.80s: no answer within %d ms", host,
                 ALERT_WEBHOOK_TIMEOUT_MS);
    else if (rc != 0 || !l->cb.ar_result)
        snprintf(err, sizeof(err), "cannot resolve %.80s: %s", host, rc ? gai_strerror(rc) : "no address");
    else
        address_pick(host, port, l->cb.ar_result, d->attempts, &d->address);
    bool resolved = rc == 0 && l->cb.ar_result;
    lookup_abandon(d);
    if (!resolved || delivery_send(d, err, sizeof(err)) < 0)
        delivery_failed(d, err);
}

/* A name is looked up off this thread's back (see the top of the file);
 * an address literal needs no lookup: AI_NUMERICHOST never blocks. */
static int delivery_resolve(struct delivery *d, char *err, size_t err_len)
{
    struct alert *a = d->alert;
    const char *host, *port;
    delivery_server(d, &host, &port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) == 0 && res) {
        address_pick(host, port, res, d->attempts, &d->address);
        freeaddrinfo(res);
        return delivery_send(d, err, err_len);
    }
    struct lookup *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    l->hints = (struct addrinfo){.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    snprintf(l->host, sizeof(l->host), "%s", host);
    snprintf(l->port, sizeof(l->port), "%s", port);
    l->cb = (struct gaicb){.ar_name = l->host, .ar_service = l->port, .ar_request = &l->hints};
    l->started = a->loop.now;
    struct gaicb *list[1] = {&l->cb};
    int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (rc != 0) {
        free(l);
        snprintf(err, err_len, "cannot resolve %.80s: %s", host, gai_strerror(rc));
        return -1;
    }
    d->lookup = l;
    loop_timer_init(&d->timer, delivery_on_lookup);
    if (loop_timer_arm(&a->loop, &d->timer, ALERT_LOOKUP_POLL_MS) < 0) {
        lookup_abandon(d);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return 0;
}

/* The whole POST of body (which it takes) to hook. */
static char *webhook_request(const struct hook *hook, char *body)
{
    const char *type = hook->format == WEBHOOK_FORM ? "application/x-www-form-urlencoded" : "application/json";
    char *request = NULL, *headers = NULL;
    size_t headers_len = 0;
    FILE *f = body ? open_memstream(&headers, &headers_len) : NULL;
    if (!f) {
        free(body);
        return NULL;
    }
    for (int i = 0; hook->cfg && i < hook->cfg->header_count; i++)
        fprintf(f, "%s: %s\r\n", hook->cfg->headers[i].name, hook->cfg->headers[i].value);
    bool ok = fclose(f) == 0;
    if (ok && asprintf(&request,
                       "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice\r\n%s"
                       "Content-Type: %s\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s",
                       hook->url.path, hook->url.authority, headers, type, strlen(body), body) < 0)
        request = NULL;
    free(headers);
    free(body);
    return request;
}

/* The body hook's format makes of one event (a chat batch is made apart). */
static char *webhook_body(const struct hook *hook, const struct alert_event *e, const char *host, bool resolve)
{
    switch (hook->format) {
    case WEBHOOK_SLACK:
        return payload_chat(e, 1, hook->cfg->text, host);
    case WEBHOOK_PAGERDUTY:
        return payload_pagerduty(e, hook->cfg->routing_key, host, resolve);
    case WEBHOOK_FORM:
        return payload_form(e, hook->cfg->fields, hook->cfg->field_count);
    case WEBHOOK_JSON:
        break;
    }
    return payload_json(e, host);
}

/* ---- email delivery ---- */

/* A 5xx is the server's final word (RFC 5321 section 4.2.1): the same
 * message would be refused again, so it is not retried. */
static void email_done(struct smtp_session *s, bool delivered, bool permanent, const char *why,
                       const char *note)
{
    struct delivery *d = container_of(s, struct delivery, smtp);
    char what[200], text[SMTP_REASON_MAX + 32];
    if (delivered) {
        snprintf(text, sizeof(text), "%s%s%s", note[0] ? " (" : "", note, note[0] ? ")" : "");
        delivery_succeeded(d, text);
        return;
    }
    if (!permanent) {
        delivery_failed(d, why);
        return;
    }
    delivery_describe(d, what, sizeof(what));
    log_error("alert: %s refused for good on attempt %d, not retried: %s", what, d->attempts, why);
    snprintf(d->why, sizeof(d->why), "%s", why);
    delivery_settle(d, DELIVERY_WAITING);
    delivery_remove(d);
}

/* A Message-ID's unique part: a number drawn once per process, plus a
 * count. The pid would not do: every sluice in a container is pid 1, and
 * two of them alerting in the same millisecond would send the same
 * Message-ID, which a mailbox may take for one message and drop. */
static uint64_t email_unique(void)
{
    static _Atomic uint64_t base, serial;
    uint64_t b = atomic_load(&base);
    if (b == 0) {
        if (getrandom(&b, sizeof(b), 0) != (ssize_t)sizeof(b))
            b = (uint64_t)loop_wall_ms() * 1000003u ^ (uint64_t)getpid() << 40;
        uint64_t none = 0;
        b |= 1;                          /* never 0, which means "not drawn yet" */
        if (!atomic_compare_exchange_strong(&base, &none, b))
            b = none;
    }
    return b + atomic_fetch_add(&serial, 1);
}

static int email_send(struct delivery *d, char *err, size_t err_len)
{
    struct alert *a = d->alert;
    if (!d->message_unique)
        d->message_unique = email_unique();
    d->smtp_target = (struct smtp_target){
        .address = &d->address, .email = &a->cfg->email, .tls = a->email_tls,
        .helo_name = a->host, .host = a->host, .unique = d->message_unique,
    };
    if (smtp_send(&d->smtp, &a->loop, &d->smtp_target, d->events ? d->events : &d->event, d->batched, d->up,
                  d->total, d->test != NULL, email_done) < 0) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- command delivery ---- */

/* The current environment with the SLUICE_* variables set for this alert.
 * Returns a malloc'd array pointing into vars and environ. */
static char **command_environment(const struct delivery *d, char vars[ALERT_COMMAND_VARS][400])
{
    const struct alert_event *e = &d->event;
    char time_text[40];
    if (alert_format_time(time_text, sizeof(time_text), e->time_ms) < 0)
        time_text[0] = '\0';
    const char *values[ALERT_COMMAND_VARS][2] = {
        {"SLUICE_APP", e->application}, {"SLUICE_ADDRESS", e->address},
        {"SLUICE_STATE", e->state},     {"SLUICE_PREVIOUS", e->previous},
        {"SLUICE_REASON", e->reason},   {"SLUICE_TIME", time_text},
        {"SLUICE_HOST", d->alert->host}, {"SLUICE_EVENT", e->event},
    };
    size_t count = 0;
    while (environ && environ[count])
        count++;
    char **env = calloc(count + ALERT_COMMAND_VARS + 1, sizeof(*env));
    if (!env)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "SLUICE_", 7) != 0)   /* ours win over inherited ones */
            env[n++] = environ[i];
    for (int i = 0; i < ALERT_COMMAND_VARS; i++) {
        snprintf(vars[i], sizeof(vars[i]), "%s=%s", values[i][0], values[i][1]);
        env[n++] = vars[i];
    }
    return env;
}

/* stdin from /dev/null, stdout to stderr, a process group of its own, and
 * every signal at its default and unblocked (this thread blocks them all,
 * and main ignores SIGPIPE; a child must not inherit either). */
static int command_settings(posix_spawn_file_actions_t *actions, posix_spawnattr_t *attr)
{
    sigset_t none, all;
    int rc;
    sigemptyset(&none);
    sigfillset(&all);
    if ((rc = posix_spawn_file_actions_addopen(actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) ||
        (rc = posix_spawn_file_actions_adddup2(actions, STDERR_FILENO, STDOUT_FILENO)) ||
        (rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                 POSIX_SPAWN_SETSIGDEF)) ||
        (rc = posix_spawnattr_setpgroup(attr, 0)) || (rc = posix_spawnattr_setsigmask(attr, &none)) ||
        (rc = posix_spawnattr_setsigdefault(attr, &all)))
        return rc;
    return 0;
}

/* Returns 0 or an errno value, as posix_spawn does. */
static int command_spawn(struct delivery *d, char **env)
{
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    char *argv[] = {"sh", "-c", d->alert->cfg->alert_command, NULL};
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc)
        return rc;
    if ((rc = posix_spawnattr_init(&attr))) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    if (!(rc = command_settings(&actions, &attr)))
        rc = posix_spawn(&d->pid, "/bin/sh", &actions, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

static void command_on_poll(struct loop *loop, struct loop_timer *timer);

static int command_attempt(struct delivery *d, char *err, size_t err_len)
{
    char vars[ALERT_COMMAND_VARS][400];
    char **env = command_environment(d, vars);
    if (!env) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    int rc = command_spawn(d, env);
    free(env);
    if (rc) {
        snprintf(err, err_len, "cannot run /bin/sh: %s", strerror(rc));
        d->pid = 0;
        return -1;
    }
    d->started = d->alert->loop.now;
    d->killed = false;
    loop_timer_init(&d->timer, command_on_poll);
    if (loop_timer_arm(&d->alert->loop, &d->timer, ALERT_COMMAND_POLL_MS) < 0) {
        /* Without a timer it could never be reaped: stop it now. */
        command_kill_and_reap(d->pid);
        d->pid = 0;
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return 0;
}

static void command_exited(struct delivery *d, int status)
{
    char why[96];
    d->pid = 0;
    if (d->killed) {
        snprintf(why, sizeof(why), "command killed after %d s (time limit)", ALERT_COMMAND_LIMIT_MS / 1000);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        delivery_succeeded(d, "");
        return;
    } else if (WIFEXITED(status)) {
        snprintf(why, sizeof(why), "command exited with status %d", WEXITSTATUS(status));
    } else {
        snprintf(why, sizeof(why), "command killed by signal %d (%s)", WTERMSIG(status),
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    }
    delivery_failed(d, why);
}

static void command_on_poll(struct loop *loop, struct loop_timer *timer)
{
    struct delivery *d = container_of(timer, struct delivery, timer);
    int status = 0;
    pid_t rc = waitpid(d->pid, &status, WNOHANG);
    if (rc == d->pid) {
        command_exited(d, status);
        return;
    }
    if (rc < 0 && errno == ECHILD) {
        /* Reaped elsewhere (SIGCHLD set to SIG_IGN): it did run. */
        d->pid = 0;
        delivery_succeeded(d, " (exit status unknown)");
        return;
    }
    if (!d->killed && loop->now - d->started >= ALERT_COMMAND_LIMIT_MS) {
        command_kill(d->pid);
        d->killed = true;
    }
    if (loop_timer_arm(loop, &d->timer, ALERT_COMMAND_POLL_MS) < 0) {
        log_error("alert: command alert for %s abandoned: out of memory", d->event.application);
        delivery_remove(d);    /* kills and reaps it */
    }
}

/* ---- scheduling ---- */

static void delivery_attempt(struct delivery *d)
{
    char err[160];
    d->attempts++;
    d->phase = DELIVERY_RUNNING;
    d->alert->running[d->kind]++;
    if (d->hook)
        d->hook->running++;
    int rc = d->kind == DELIVERY_COMMAND ? command_attempt(d, err, sizeof(err))
                                         : delivery_resolve(d, err, sizeof(err));
    if (rc < 0)
        delivery_failed(d, err);
}

static bool is_service_event(const struct alert_event *e)
{
    return strcmp(e->event, "all_down") == 0 || strcmp(e->event, "restored") == 0;
}

/* Webhooks are counted per receiver: one that hangs (every try waits out
 * its timeout) must not hold back the alerts of the others, a dead chat
 * webhook those of PagerDuty. */
static bool slot_free(const struct alert *a, const struct delivery *d)
{
    if (d->kind == DELIVERY_WEBHOOK)
        return d->hook->running < ALERT_RUNNING_MAX;
    return a->running[d->kind] < ALERT_RUNNING_MAX;
}

/* Starts queued deliveries while slots are free: the urgent ones (all_down,
 * restored) first, so that a burst of changes queued before them never
 * holds them back, then the rest, oldest first. */
static void alert_pump(struct alert *a)
{
    for (int pass = 0; pass < 2; pass++) {
        for (struct delivery *d = a->head, *next; d; d = next) {
            next = d->next;    /* d may be freed by a failed start */
            if (d->phase == DELIVERY_QUEUED && (pass || d->urgent) && slot_free(a, d))
                delivery_attempt(d);
        }
    }
}

static void alert_trim(struct alert *a)
{
    while (a->pending > ALERT_PENDING_MAX) {
        struct delivery *d = a->head;
        while (d && d->phase == DELIVERY_RUNNING)
            d = d->next;
        if (!d)
            return;
        char what[200];
        delivery_describe(d, what, sizeof(what));
        log_warn("alert: more than %d alerts waiting; dropped the oldest, %s", ALERT_PENDING_MAX, what);
        snprintf(d->why, sizeof(d->why), "dropped: more than %d alerts waiting", ALERT_PENDING_MAX);
        delivery_remove(d);
    }
}

/* A delivery of e to one target, not queued yet; request (a webhook's)
 * is taken. NULL when it cannot be made (logged). */
static struct delivery *delivery_make(struct alert *a, enum delivery_kind kind, struct hook *hook,
                                      const struct alert_event *e, char *request)
{
    struct delivery *d = calloc(1, sizeof(*d));
    if (!d || (hook && !request)) {
        log_error("alert: %s; %s alert for %s not sent", d ? "cannot format it" : "out of memory",
                  hook ? hook->name : kind_names[kind], e->application);
        free(d);
        free(request);
        return NULL;
    }
    d->alert = a;
    d->kind = kind;
    d->hook = hook;
    d->event = *e;
    d->batched = 1;
    d->urgent = is_service_event(e);
    d->request = request;
    d->request_len = request ? strlen(request) : 0;
    d->up = e->up;
    d->total = e->total;
    httpclient_init(&d->http);
    smtp_session_init(&d->smtp);
    loop_timer_init(&d->timer, delivery_on_backoff);
    return d;
}

static void delivery_queue(struct alert *a, struct delivery *d)
{
    d->prev = a->tail;
    if (a->tail)
        a->tail->next = d;
    else
        a->head = d;
    a->tail = d;
    a->pending++;
    alert_trim(a);
}

/* ---- batches (chat, email) ---- */

/* The changes held go out as one message. */
static void batch_flush(struct batch *b)
{
    struct alert *a = b->alert;
    struct delivery *d;
    if (b->count == 0)
        return;
    loop_timer_cancel(&a->loop, &b->timer);
    if (b->hook) {
        char *body = payload_chat(b->events, b->count, b->hook->cfg->text, a->host);
        d = delivery_make(a, DELIVERY_WEBHOOK, b->hook, &b->events[0], webhook_request(b->hook, body));
    } else if ((d = delivery_make(a, DELIVERY_EMAIL, NULL, &b->events[0], NULL)) &&
               (d->events = malloc((size_t)b->count * sizeof(*d->events)))) {
        memcpy(d->events, b->events, (size_t)b->count * sizeof(*d->events));
        d->up = b->events[b->count - 1].up;         /* how things stand after the last */
    } else if (d) {
        log_error("alert: out of memory; email alert for %s not sent", d->event.application);
        free(d);
        d = NULL;
    }
    if (d) {
        d->batched = b->count;
        d->urgent = is_service_event(&b->events[b->count - 1]);   /* what flushed it */
        delivery_queue(a, d);
    }
    b->count = 0;
}

static void batch_on_timer(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    batch_flush(container_of(timer, struct batch, timer));
}

static void batch_init(struct batch *b, struct alert *a, struct hook *hook)
{
    b->alert = a;
    b->hook = hook;
    loop_timer_init(&b->timer, batch_on_timer);
}

/* Holds e for the batch window that the first change held opened. The
 * service alerts are never held: they take what is held with them at once. */
static void batch_add(struct batch *b, const struct alert_event *e)
{
    struct alert *a = b->alert;
    if (b->count == ALERT_BATCH_MAX)
        batch_flush(b);
    b->events[b->count++] = *e;
    if (is_service_event(e) || a->stopping || a->cfg->alert_batch_ms == 0) {
        batch_flush(b);
        return;
    }
    if (b->count == 1 && loop_timer_arm(&a->loop, &b->timer, a->cfg->alert_batch_ms) < 0)
        batch_flush(b);
}

static bool hook_batches(const struct hook *hook)
{
    return hook->format == WEBHOOK_SLACK;
}

/* Before a stop: nothing is held any more. */
static void alert_flush_batches(struct alert *a)
{
    for (int i = 0; i < a->hook_count; i++)
        batch_flush(&a->hooks[i].batch);
    batch_flush(&a->email_batch);
}

static void batch_abandon(struct alert *a, struct batch *b, const char *target)
{
    if (b->count)
        log_warn("alert: shutting down: %d changes for %s not sent", b->count, target);
    loop_timer_cancel(&a->loop, &b->timer);
}

static void alert_send(struct alert *a, const struct alert_event *e)
{
    for (int i = 0; i < a->hook_count; i++) {
        struct hook *hook = &a->hooks[i];
        struct delivery *d;
        if (hook_batches(hook))
            batch_add(&hook->batch, e);
        else if ((d = delivery_make(a, DELIVERY_WEBHOOK, hook, e,
                                    webhook_request(hook, webhook_body(hook, e, a->host, false)))))
            delivery_queue(a, d);
    }
    struct delivery *d;
    if (a->command_on && (d = delivery_make(a, DELIVERY_COMMAND, NULL, e, NULL)))
        delivery_queue(a, d);
    if (a->email_on)
        batch_add(&a->email_batch, e);
}

/* ---- transitions in ---- */

/* The "all_down" / "restored" alerts, on a change of a->up. `last` is the
 * application whose record caused it, or NULL after a resync. */
static void alert_service_check(struct alert *a, int64_t time_ms, const struct pool_transition *last)
{
    struct alert_event e = {.time_ms = time_ms};
    if (a->up == 0 && !a->all_down && a->pool->count > 0) {
        a->all_down = true;
        snprintf(e.event, sizeof(e.event), "all_down");
        snprintf(e.state, sizeof(e.state), "down");
        snprintf(e.previous, sizeof(e.previous), "up");
    } else if (a->up > 0 && a->all_down) {
        a->all_down = false;
        snprintf(e.event, sizeof(e.event), "restored");
        snprintf(e.state, sizeof(e.state), "up");
        snprintf(e.previous, sizeof(e.previous), "down");
    } else {
        return;
    }
    snprintf(e.application, sizeof(e.application), "*");
    int n = snprintf(e.reason, sizeof(e.reason), "%d of %d applications up", a->up, a->pool->count);
    if (last && n > 0 && (size_t)n < sizeof(e.reason))
        snprintf(e.reason + n, sizeof(e.reason) - (size_t)n, " (last change: %.64s %s -> %s)",
                 a->pool->apps[last->app_index].cfg->name, app_state_name((enum app_state)last->from),
                 app_state_name((enum app_state)last->to));
    e.up = a->up;
    e.total = a->pool->count;
    log_msg(a->up == 0 ? LOG_ERROR : LOG_INFO, "alert: %s: %s",
            a->up == 0 ? "no application is up" : "service restored", e.reason);
    alert_send(a, &e);
}

/* Applies one application's stamp to the copy, if it is newer. */
static void alert_track(struct alert *a, int app_index, uint32_t stamp)
{
    uint32_t *mine = &a->states[app_index];
    if (!app_stamp_after(stamp, *mine))
        return;
    a->up += (app_state_of(stamp) == APP_UP) - (app_state_of(*mine) == APP_UP);
    *mine = stamp;
}

/* After the full pipe refused a record, the copy can only catch up by
 * reading the pool's states (see the top of the file). */
static void alert_resync(struct alert *a)
{
    uint64_t lost = atomic_load(&a->pool->notify_lost);
    if (lost == a->lost_seen)
        return;
    a->lost_seen = lost;
    int64_t time_ms = loop_wall_ms();
    int before = a->up;
    for (int i = 0; i < a->pool->count; i++)
        alert_track(a, i, atomic_load(&a->pool->apps[i].state));
    if (a->up != before)
        alert_service_check(a, time_ms, NULL);
}

static void alert_on_transition(struct alert *a, const struct pool_transition *t)
{
    if (t->app_index < 0 || t->app_index >= a->pool->count || t->from < 0 || t->from >= APP_STATE_COUNT ||
        t->to < 0 || t->to >= APP_STATE_COUNT) {
        log_error("alert: ignored a malformed transition record");
        return;
    }
    const struct config_app *app = a->pool->apps[t->app_index].cfg;
    struct alert_event e = {.time_ms = t->time_ms};
    snprintf(e.event, sizeof(e.event), "transition");
    snprintf(e.application, sizeof(e.application), "%s", app->name);
    snprintf(e.address, sizeof(e.address), "%s", app->address.text);
    snprintf(e.state, sizeof(e.state), "%s", app_state_name((enum app_state)t->to));
    snprintf(e.previous, sizeof(e.previous), "%s", app_state_name((enum app_state)t->from));
    snprintf(e.reason, sizeof(e.reason), "%.*s", (int)strnlen(t->reason, sizeof(t->reason)), t->reason);
    alert_track(a, t->app_index, t->stamp);
    e.up = a->up;
    e.total = a->pool->count;
    alert_send(a, &e);
    alert_service_check(a, t->time_ms, t);
}

/* Reads what is in the pipe now. Returns false once nothing is left. */
static bool alert_read_transitions(struct alert *a)
{
    struct pool_transition batch[16];
    ssize_t n = read(a->pool->notify_read_fd, batch, sizeof(batch));
    if (n < 0) {
        int err = errno;
        if (err != EAGAIN && err != EINTR)
            log_error("alert: reading transitions failed: %s", strerror(err));
        return err == EINTR;
    }
    if (n == 0) {
        /* Every writer is gone: stop listening rather than spin. */
        loop_del(&a->loop, &a->notify_io);
        a->notify_io.fd = -1;
        return false;
    }
    /* Writers write whole records atomically, so reads return whole ones. */
    if (n % (ssize_t)sizeof(batch[0]))
        log_error("alert: partial transition record ignored");
    for (ssize_t i = 0; i < n / (ssize_t)sizeof(batch[0]); i++)
        alert_on_transition(a, &batch[i]);
    if ((size_t)n == sizeof(batch))
        return true;
    alert_resync(a);
    return false;
}

/* A record refused by the full pipe counts in notify_lost only after the
 * refusal, so the read that emptied the pipe may have missed it: look
 * again now and then. */
static void alert_on_resync_timer(struct loop *loop, struct loop_timer *timer)
{
    struct alert *a = container_of(timer, struct alert, resync_timer);
    while (a->notify_io.fd >= 0 && alert_read_transitions(a))
        ;
    alert_resync(a);
    lookup_reap_orphans(a);
    if (loop_timer_arm(loop, timer, ALERT_RESYNC_MS) < 0)
        log_error("alert: out of memory; records lost to a full queue will not be caught up");
}

static void alert_on_notify(struct loop *loop, struct loop_io *io, uint32_t events)
{
    struct alert *a = container_of(io, struct alert, notify_io);
    (void)loop;
    (void)events;
    /* One batch per wake-up; the level-triggered reader calls again. */
    alert_read_transitions(a);
}

/* ---- test alerts ---- */

static void test_event(const struct alert *a, struct alert_event *e)
{
    *e = (struct alert_event){.time_ms = loop_wall_ms(), .up = a->up, .total = a->pool->count};
    snprintf(e->event, sizeof(e->event), "test");
    snprintf(e->application, sizeof(e->application), "TEST");
    snprintf(e->state, sizeof(e->state), "test");
    snprintf(e->previous, sizeof(e->previous), "test");
    snprintf(e->reason, sizeof(e->reason), "TEST alert sent on request; no application changed state");
}

static void test_queue(struct alert *a, struct delivery *d, struct alert_test *t, int slot)
{
    if (!d) {
        test_settle(t, slot, false, "cannot be formatted (out of memory)");
        return;
    }
    d->test = t;
    d->test_slot = slot;
    delivery_queue(a, d);
}

/* One delivery per target, in the order alert_test_start named them. A
 * PagerDuty test is a trigger and then its resolve, so that the incident
 * it opens closes itself. */
static void test_deliver(struct alert *a, struct alert_test *t)
{
    struct alert_event e;
    int slot = 0;
    test_event(a, &e);
    t->outstanding = t->count + 1;      /* held until every slot is queued */
    for (int i = 0; i < a->hook_count; i++) {
        struct hook *hook = &a->hooks[i];
        struct delivery *d =
            delivery_make(a, DELIVERY_WEBHOOK, hook, &e, webhook_request(hook, webhook_body(hook, &e, a->host, false)));
        if (d && hook->format == WEBHOOK_PAGERDUTY &&
            !(d->followup = webhook_request(hook, payload_pagerduty(&e, hook->cfg->routing_key, a->host, true)))) {
            free(d->request);
            free(d);
            d = NULL;
        }
        test_queue(a, d, t, slot++);
    }
    if (a->command_on)
        test_queue(a, delivery_make(a, DELIVERY_COMMAND, NULL, &e, NULL), t, slot++);
    if (a->email_on)
        test_queue(a, delivery_make(a, DELIVERY_EMAIL, NULL, &e, NULL), t, slot++);
    if (--t->outstanding == 0)
        alert_test_release(t);
}

static struct alert_test *tests_take(struct alert *a, bool close)
{
    pthread_mutex_lock(&a->test_lock);
    struct alert_test *list = a->tests;
    a->tests = NULL;
    a->tests_closed |= close;
    pthread_mutex_unlock(&a->test_lock);
    return list;
}

static void alert_on_test(struct loop *loop, struct loop_io *io, uint32_t events)
{
    struct alert *a = container_of(io, struct alert, test_io);
    uint64_t value;
    (void)loop;
    (void)events;
    if (read(a->test_fd, &value, sizeof(value)) < 0 && errno != EAGAIN)
        log_error("alert: test wake-up read failed: %s", strerror(errno));
    for (struct alert_test *t = tests_take(a, false), *next; t; t = next) {
        next = t->next;
        log_info("alert: sending a test alert to %d target(s)", t->count);
        test_deliver(a, t);
    }
}

/* Tests asked for as the thread ends get an answer all the same. */
static void test_refuse(struct alert_test *t, const char *why)
{
    t->outstanding = t->count + 1;
    for (int i = 0; i < t->count; i++)
        test_settle(t, i, false, why);
    if (--t->outstanding == 0)
        alert_test_release(t);
}

static void alert_close_tests(struct alert *a)
{
    for (struct alert_test *t = tests_take(a, true), *next; t; t = next) {
        next = t->next;
        test_refuse(t, "not sent: sluice was stopping");
    }
}

struct alert_test *alert_test_start(struct alert *a)
{
    struct alert_test *t = calloc(1, sizeof(*t));
    uint64_t one = 1;
    if (!t)
        return NULL;
    atomic_init(&t->refs, 2);
    for (int i = 0; i < a->hook_count; i++)
        snprintf(t->results[t->count++].target, sizeof(t->results[0].target), "%s", a->hooks[i].name);
    if (a->command_on)
        snprintf(t->results[t->count++].target, sizeof(t->results[0].target), "command");
    if (a->email_on)
        snprintf(t->results[t->count++].target, sizeof(t->results[0].target), "email %.100s",
                 a->cfg->email.server);
    pthread_mutex_lock(&a->test_lock);
    bool closed = a->tests_closed;
    if (!closed) {
        t->next = a->tests;
        a->tests = t;
    }
    pthread_mutex_unlock(&a->test_lock);
    if (closed)
        test_refuse(t, "not sent: sluice was stopping");
    else if (write(a->test_fd, &one, sizeof(one)) < 0)
        log_error("alert: cannot wake the alert thread for a test: %s", strerror(errno));
    return t;
}

/* ---- the thread ---- */

static void alert_on_stop_timer(struct loop *loop, struct loop_timer *timer)
{
    (void)timer;
    loop->stop = true;
}

static void alert_on_wake(struct loop *loop, struct loop_io *io, uint32_t events)
{
    struct alert *a = container_of(io, struct alert, wake_io);
    uint64_t value;
    (void)events;
    if (read(a->wake_fd, &value, sizeof(value)) < 0 && errno != EAGAIN)
        log_error("alert: wake-up read failed: %s", strerror(errno));
    int64_t deadline = loop->now + atomic_load(&a->grace_ms);
    if (a->stopping && deadline >= a->stop_deadline)
        return;
    if (!a->stopping) {
        a->stopping = true;
        /* The last transitions (the checker's, say) are already in the pipe. */
        while (a->notify_io.fd >= 0 && alert_read_transitions(a))
            ;
        alert_flush_batches(a);
    }
    a->stop_deadline = deadline;
    if (loop_timer_arm_at(loop, &a->stop_timer, deadline) < 0)
        loop->stop = true;
}

static void alert_after_iteration(struct loop *loop, void *arg)
{
    struct alert *a = arg;
    alert_pump(a);
    /* Retired by a reload, the dispatcher still hears workers that have
     * not moved to the new pool yet, until the pipe's writing end closes. */
    bool listening = atomic_load(&a->retired) && !atomic_load(&a->stop_called) && a->notify_io.fd >= 0;
    if (a->stopping && a->pending == 0 && !listening)
        loop->stop = true;
}

static void *alert_main(void *arg)
{
    struct alert *a = arg;
    int rc = loop_run(&a->loop);
    if (rc < 0)
        log_error("alert: event loop failed: %s", strerror(-rc));
    while (a->head) {
        char what[200];
        delivery_describe(a->head, what, sizeof(what));
        log_warn("alert: shutting down: %s not delivered", what);
        delivery_remove(a->head);
    }
    loop_timer_cancel(&a->loop, &a->stop_timer);
    loop_timer_cancel(&a->loop, &a->resync_timer);
    for (int i = 0; i < a->hook_count; i++)
        batch_abandon(a, &a->hooks[i].batch, a->hooks[i].name);
    batch_abandon(a, &a->email_batch, "email");
    alert_close_tests(a);
    /* glibc still writes into a lookup it has not finished: those are left
     * to it rather than freed under it. */
    int left = lookup_reap_orphans(a);
    if (left)
        log_warn("alert: %d webhook name lookup(s) still running at stop, left behind", left);
    atomic_store(&a->finished, true);
    return NULL;
}

static void alert_free(struct alert *a)
{
    free(a->states);
    free(a->hooks);
    if (a->test_fd >= 0)
        close(a->test_fd);
    pthread_mutex_destroy(&a->test_lock);
    tls_context_free(a->tls);
    tls_context_free(a->email_tls);
    if (a->wake_fd >= 0)
        close(a->wake_fd);
    if (a->loop.epfd >= 0)
        loop_close(&a->loop);
    free(a);
}

static int email_configure(struct alert *a, const struct config *cfg)
{
    const struct config_email *email = &cfg->email;
    char err[200];
    a->email_on = email->enabled;
    if (!a->email_on || email->security == EMAIL_NONE)
        return 0;
    if (!(a->email_tls = tls_client_context_ca(email->ca_file, err, sizeof(err)))) {
        log_error("[alerts.email]: %s", err);
        return -EIO;
    }
    return 0;
}


/* Names a hook after its URL's scheme and authority: the path of a chat
 * webhook is its secret. */
static int hook_init(struct alert *a, struct hook *hook, const char *url, const struct config_webhook *cfg,
                     int index)
{
    static const char *const formats[] = {"json", "slack", "pagerduty", "form"};
    char err[200];
    hook->alert = a;
    hook->cfg = cfg;
    hook->format = cfg ? cfg->format : WEBHOOK_JSON;
    batch_init(&hook->batch, a, hook);
    if (url_parse(url, &hook->url, err, sizeof(err)) < 0) {
        log_error("[alerts] webhook \"%s\": %s", url, err);
        return -EINVAL;
    }
    if (cfg)
        snprintf(hook->name, sizeof(hook->name), "webhooks[%d] %s %s://%.100s", index, formats[hook->format],
                 hook->url.tls ? "https" : "http", hook->url.authority);
    else
        snprintf(hook->name, sizeof(hook->name), "webhook %s://%.100s", hook->url.tls ? "https" : "http",
                 hook->url.authority);
    if (hook->url.tls && !a->tls && !(a->tls = tls_client_context(true, err, sizeof(err)))) {
        log_error("[alerts] webhook: %s", err);
        return -EIO;
    }
    return 0;
}

static int alert_configure(struct alert *a, const struct config *cfg)
{
    bool legacy = cfg->alert_webhook && cfg->alert_webhook[0];
    int rc;
    a->command_on = cfg->alert_command && cfg->alert_command[0];
    if (gethostname(a->host, sizeof(a->host) - 1) < 0)
        snprintf(a->host, sizeof(a->host), "unknown");
    batch_init(&a->email_batch, a, NULL);
    if ((rc = email_configure(a, cfg)) < 0)
        return rc;
    a->hooks = calloc((size_t)cfg->webhook_count + 1, sizeof(*a->hooks));
    if (!a->hooks)
        return -ENOMEM;
    if (legacy && (rc = hook_init(a, &a->hooks[a->hook_count++], cfg->alert_webhook, NULL, 0)) < 0)
        return rc;
    for (int i = 0; i < cfg->webhook_count; i++)
        if ((rc = hook_init(a, &a->hooks[a->hook_count++], cfg->webhooks[i].url, &cfg->webhooks[i], i + 1)) < 0)
            return rc;
    return 0;
}

static int alert_prepare(struct alert *a)
{
    int rc = alert_configure(a, a->cfg);
    if (rc < 0)
        return rc;
    a->loop.after_iteration = alert_after_iteration;
    a->loop.after_iteration_arg = a;
    loop_timer_init(&a->stop_timer, alert_on_stop_timer);
    loop_timer_init(&a->resync_timer, alert_on_resync_timer);
    if ((rc = loop_timer_arm(&a->loop, &a->resync_timer, ALERT_RESYNC_MS)) < 0)
        return rc;
    a->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->wake_fd < 0)
        return -errno;
    if ((rc = loop_add_reader(&a->loop, &a->wake_io, a->wake_fd, alert_on_wake)) < 0)
        return rc;
    a->test_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->test_fd < 0)
        return -errno;
    if ((rc = loop_add_reader(&a->loop, &a->test_io, a->test_fd, alert_on_test)) < 0)
        return rc;
    a->notify_io.fd = -1;
    if (a->pool->notify_read_fd >= 0 &&
        (rc = loop_add_reader(&a->loop, &a->notify_io, a->pool->notify_read_fd, alert_on_notify)) < 0)
        return rc;
    /* Started with nothing up (every application `alive = false`): that is
     * the expected start, not an outage; "all_down" waits for a change. A
     * dispatcher restarted by a reload in the middle of an outage carries
     * it on, so that "restored" still follows the "all_down" already sent. */
    a->all_down = a->pool->outage_at_start;
    a->states = calloc((size_t)(a->pool->count ? a->pool->count : 1), sizeof(*a->states));
    if (!a->states)
        return -ENOMEM;
    a->lost_seen = atomic_load(&a->pool->notify_lost);
    for (int i = 0; i < a->pool->count; i++) {
        a->states[i] = atomic_load(&a->pool->apps[i].state);
        a->up += app_state_of(a->states[i]) == APP_UP;
    }
    return 0;
}

int alert_start(struct alert **out, struct pool *pool, const struct config *cfg)
{
    *out = NULL;
    struct alert *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->pool = pool;
    a->cfg = cfg;
    a->wake_fd = a->test_fd = -1;
    pthread_mutex_init(&a->test_lock, NULL);
    int rc = loop_init(&a->loop);
    if (rc == 0)
        rc = alert_prepare(a);
    if (rc == 0)
        rc = loop_thread_start(&a->thread, alert_main, a, "sluice-alert");
    if (rc < 0) {
        alert_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

static void alert_wake_to_stop(struct alert *a, int64_t grace_ms)
{
    uint64_t one = 1;
    atomic_store(&a->grace_ms, grace_ms < 0 ? 0 : grace_ms);
    if (write(a->wake_fd, &one, sizeof(one)) < 0)
        log_error("alert: cannot wake the alert thread: %s", strerror(errno));
}

void alert_begin_stop(struct alert *a, int64_t grace_ms)
{
    if (!a || atomic_load(&a->finished))
        return;
    atomic_store(&a->stop_called, true);
    alert_wake_to_stop(a, grace_ms);
}

void alert_stop(struct alert *a, int64_t grace_ms)
{
    if (!a)
        return;
    alert_begin_stop(a, grace_ms);
    pthread_join(a->thread, NULL);
    /* A retired pool's pipe ends here, once nothing can write to it. */
    if (atomic_load(&a->retired) && a->pool->notify_write_fd < 0 && a->pool->notify_read_fd >= 0) {
        close(a->pool->notify_read_fd);
        a->pool->notify_read_fd = -1;
    }
    alert_free(a);
}

void alert_retire(struct alert *a)
{
    if (!a)
        return;
    atomic_store(&a->retired, true);
    alert_wake_to_stop(a, ALERT_RETIRE_GRACE_MS);
}

bool alert_finished(struct alert *a)
{
    return atomic_load(&a->finished);
}
