/* alert.h - telling people about state changes ([alerts]: a webhook, a
 * command, email).
 *
 * The alert dispatcher runs on its own thread and loop, so that nothing it
 * waits for (a slow webhook, DNS, a mail command) delays a worker or a
 * health check. It reads the struct pool_transition records that
 * pool_set_state writes to pool->notify_write_fd and, for each, POSTs JSON to
 * `[alerts] webhook`, runs `[alerts] command` and mails `[alerts.email]`
 * (smtp.h). Two extra alerts, for
 * application "*", say that no application is up any more and that service
 * is restored. docs/health-and-alerts.md documents the payload.
 *
 * The formatting helpers below are pure and exposed for the unit tests.
 */
#ifndef SLUICE_ALERT_H
#define SLUICE_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "pool.h"

struct alert;

/* Starts the dispatcher thread for pool (which must outlive it). Returns 0
 * or -errno (-EINVAL for a webhook URL it cannot use, after logging why). */
int alert_start(struct alert **out, struct pool *pool, const struct config *cfg);

/* Lets deliveries in progress or waiting for a retry finish for up to
 * grace_ms, abandons the rest (logged), joins the thread and frees. A
 * retired dispatcher's grace only ever shortens. */
void alert_stop(struct alert *a, int64_t grace_ms);

/* alert_stop's first half: the grace starts now, nothing waits. */
void alert_begin_stop(struct alert *a, int64_t grace_ms);

/* For a reload: the dispatcher stops taking new work once its pool's
 * writers are gone (pool_close_writer), goes on with every try of the
 * deliveries it holds for up to 5 minutes, then ends; nobody waits for it.
 * Stop it with alert_stop later (at once when alert_finished), which also
 * closes the pool's reading end when its writing end is closed. All from
 * the thread that started it. */
void alert_retire(struct alert *a);
bool alert_finished(struct alert *a);

enum alert_target { ALERT_TARGET_WEBHOOK, ALERT_TARGET_COMMAND, ALERT_TARGET_EMAIL };
#define ALERT_TARGET_COUNT 3

/* ---- test alerts ---- */

/* A test alert goes to every target once (no retries: the answer should
 * come quickly, and say why a target failed), marked as a test in every
 * format. The result is shared between the thread that asked and the
 * dispatcher, each holding a reference. */
#define ALERT_TEST_TARGETS_MAX (CONFIG_WEBHOOKS_MAX + 4)

struct alert_test_result {
    char target[160];                /* "webhook http://host:port", "command" ... */
    char why[160];                   /* why not delivered */
    bool delivered;
    _Atomic bool settled;            /* set last: the fields above are final */
};

struct alert_test {
    int count;                       /* targets */
    struct alert_test_result results[ALERT_TEST_TARGETS_MAX];
    _Atomic int refs;
    int outstanding;                 /* the dispatcher's: results not settled */
    struct alert_test *next;         /* the dispatcher's queue */
};

/* From any thread, while a is running: sends a test alert to each of a's
 * targets. NULL without memory. Release the result when done with it. */
struct alert_test *alert_test_start(struct alert *a);
/* Whether every target has an outcome. */
bool alert_test_done(struct alert_test *t);
/* Outcomes settled so far (each result's `settled` says which). */
int alert_test_failed(struct alert_test *t);
void alert_test_release(struct alert_test *t);

/* Deliveries ended since the process started, over every dispatcher:
 * delivered, or not (given up after the last retry, dropped from a full
 * queue, abandoned at stop). */
uint64_t alert_deliveries(enum alert_target target, bool delivered);

/* ---- what is sent ---- */

#define ALERT_FIELD_MAX 96

/* One alert. `event` is "transition" for an application's change of state,
 * "all_down" when no application is up any more and "restored" when one is
 * up again; the last two have application "*" and an empty address. */
struct alert_event {
    char event[16];
    char application[CONFIG_NAME_MAX];
    char address[ALERT_FIELD_MAX];
    char state[16];
    char previous[16];
    char reason[POOL_REASON_MAX];
    int64_t time_ms;                 /* wall clock, ms since the epoch */
    int up, total;                   /* applications up after it, and in all */
};

/* A test alert (sluice --test-alert, POST /api/alerts/test) has event
 * "test"; every format marks it as one. */
bool alert_event_is_test(const struct alert_event *e);

/* "2024-05-01T12:00:00.123Z" (RFC 3339, UTC). Returns the length, or -1
 * when out (at least 25 bytes are needed) is too small. */
int alert_format_time(char *out, size_t cap, int64_t time_ms);

/* s as the contents of a JSON string (RFC 8259): quotes, backslashes and
 * control bytes escaped, invalid UTF-8 replaced by U+FFFD. Returns the length
 * the whole result needs, as snprintf does; out is always terminated. */
size_t alert_json_escape(char *out, size_t cap, const char *s);

/* The sentence for humans (the JSON "text", which Slack displays). */
int alert_format_text(char *out, size_t cap, const struct alert_event *e, const char *host);

/* The webhook body: {"application", "address", "state", "previous",
 * "reason", "time", "host", "event", "text"}. Returns the length, or -1 when
 * it does not fit in cap. */
int alert_format_json(char *out, size_t cap, const struct alert_event *e, const char *host);

#endif
