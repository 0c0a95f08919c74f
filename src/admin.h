/* admin.h - the admin API ([admin] listen): applications, drain and
 * enable, reload, /metrics.
 *
 * The admin server runs on a thread and loop of its own, never on a
 * worker's: a slow admin client or a big JSON answer cannot delay a
 * request. It reads the generation the workers serve (main.c publishes
 * it) while holding main.c's generations lock, which main.c takes while it
 * builds, publishes or frees one; the workers never take it. It changes
 * applications only through pool.c (a compare-and-swap per transition) and
 * wakes the workers so that they notice at once: a drained application's
 * idle connections are closed, an enabled one is checked.
 *
 * A reload asked over the API runs on the main thread, like SIGHUP: the
 * admin server asks through host->ask_reload and main.c answers with
 * admin_reload_done. Answers are JSON, except /metrics (Prometheus text)
 * and / (a small HTML page). Limits: request heads of 8 KB, bodies of
 * 64 KB, 16 connections at once.
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "pool.h"

struct admin;
struct alert_test;
struct generation;
struct worker;

/* What main.c lends the admin server; everything outlives it. */
struct admin_host {
    struct generation *_Atomic *published;   /* what the workers serve */
    pthread_mutex_t *generations_lock;
    struct worker *workers;                  /* woken after a drain or enable */
    int worker_count;
    /* Asks the main thread to reload; it answers with admin_reload_done. */
    void (*ask_reload)(void *arg);
    void *ask_reload_arg;
};

/* Listens on cfg->admin_listen and starts the admin thread. 0 or -errno,
 * with what failed in error ("listen on 127.0.0.1:9901"). */
int admin_start(struct admin **out, const struct config *cfg, const struct admin_host *host, char *error,
                size_t error_len);
/* Closes every admin connection, joins the thread, frees. NULL ignored. */
void admin_stop(struct admin *a);

/* From the main thread, when a reload the admin API asked for is over:
 * errors is NULL on success (before and after are the configurations
 * replaced and now served), else "FILE:LINE:COL: message" lines. */
void admin_reload_done(struct admin *a, const struct config *before, const struct config *after,
                       const char *errors);

/* ---- pure parts, exposed for the unit tests ---- */

enum admin_route {
    ADMIN_NOT_FOUND,
    ADMIN_INDEX,         /* GET /                                  */
    ADMIN_METRICS,       /* GET /metrics                           */
    ADMIN_APPS,          /* GET /api/applications                  */
    ADMIN_APP,           /* GET /api/applications/NAME             */
    ADMIN_DRAIN,         /* POST /api/applications/NAME/drain      */
    ADMIN_ENABLE,        /* POST /api/applications/NAME/enable     */
    ADMIN_RELOAD,        /* POST /api/reload                       */
    ADMIN_TEST_ALERT,    /* POST /api/alerts/test                  */
};

struct admin_target {
    enum admin_route route;
    char name[CONFIG_NAME_MAX];   /* percent-decoded, for the NAME routes */
    bool force;                   /* ?force=1 */
};

/* Reads a request target (origin form, with its query). Unknown paths and
 * names that cannot be an application's give ADMIN_NOT_FOUND. */
enum admin_route admin_parse_target(const char *target, size_t len, struct admin_target *out);
/* Whether a route is read (GET, HEAD) or changes something (POST). */
bool admin_route_mutates(enum admin_route route);

/* Whether an Authorization value is "Bearer <token>". Its time depends on
 * the length offered, never on how much of the token matched. */
bool admin_token_matches(const char *token, const char *authorization, size_t len);

/* A test alert's outcome: {"delivered":N,"failed":N,"targets":[{"target",
 * "delivered","error"}...]}; a target with no outcome yet is reported as
 * failed, with why. malloc'd, NULL without memory. */
char *admin_test_alert_json(struct alert_test *t, const char *unsettled_why);

/* One application as JSON (no newline); malloc'd, NULL without memory. */
char *admin_app_json(const struct app *app, const struct metrics_app_totals *totals, int64_t now_ms);

/* The answer to a reload: {"reloaded":true, "added":[...], "removed":[...],
 * "changed":[...], ...} from the two configurations, or, with errors,
 * {"error":..., "errors":[one per line]}; malloc'd, NULL without memory. */
char *admin_reload_json(const struct config *before, const struct config *after, const char *errors);

#endif
