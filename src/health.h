/* health.h - active health checks ([health]), off the request path.
 *
 * Every worker checks its share of the applications that are not in
 * maintenance, on its own loop, between requests: every `interval` (first
 * at a random offset, then with up to 10% jitter, so that thousands of
 * applications are not checked in one burst) it sends `GET <path>` and
 * reads the status of the answer, the whole exchange bounded by `timeout`.
 * `rise` passes in a row bring a down application up, `fall` failures in a
 * row take an up one down, the checks of such a streak coming every
 * `fast_interval` after its first result; the change goes through
 * pool_set_state, which every worker sees on its next load of the state,
 * and which reports it to the alert dispatcher (alert.h).
 *
 * Two parts are exposed beyond attach/detach:
 *  - the state machine (health_record), a pure function the unit tests
 *    drive without sockets;
 *  - the check schedule (health_first_delay, health_next_delay,
 *    health_in_transition).
 * The checks run on the one-shot HTTP client of httpclient.h.
 */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"
#include "pool.h"

struct health;

/* Starts checking the applications of pool whose index i has
 * i % count == index, on loop, which the calling thread owns and runs (and
 * which must call health_run_due after each iteration). pool and cfg must
 * outlive it. Returns 0 or -errno; on failure *out is NULL. */
int health_attach(struct health **out, struct loop *loop, struct pool *pool, const struct config *cfg,
                  int index, int count);

/* Stops checking: closes what the checks hold, cancels their timers, frees
 * everything. Results not known yet are dropped. NULL is ignored. */
void health_detach(struct health *h);

/* Starts a few of the checks whose time has come. */
void health_run_due(struct health *h);

/* Some are still waiting: the loop must not sleep. NULL: false. */
bool health_has_due(const struct health *h);

/* ---- the state machine ---- */

/* Consecutive results of one application's checks, and the state they were
 * counted in. A state changed by anyone else (passive detection, the admin
 * API) restarts the count, so a passively failed application needs `rise`
 * fresh passes to come back. */
struct health_counter {
    uint32_t passes;      /* in a row */
    uint32_t failures;    /* in a row */
    enum app_state seen;  /* the state the counts belong to */
};

enum health_verdict {
    HEALTH_KEEP,          /* no change */
    HEALTH_MARK_UP,       /* down, and `rise` passes in a row */
    HEALTH_MARK_DOWN,     /* up, and `fall` failures in a row */
};

void health_counter_reset(struct health_counter *c, enum app_state state);

/* Records one check result for an application now in state `current`.
 * Only up and down move: draining and maintenance are operator states, kept
 * until the operator says otherwise (results are still counted in draining,
 * never in maintenance). After a verdict is applied, the caller resets the
 * counter to the new state. */
enum health_verdict health_record(struct health_counter *c, enum app_state current, bool pass,
                                  int rise, int fall);

/* ---- the schedule ---- */

/* Delay of an application's first check: uniform in [0, interval). */
int64_t health_first_delay(int64_t interval_ms, uint32_t random);
/* Delay between two checks: interval +/- up to 10%, at least 1 ms. */
int64_t health_next_delay(int64_t interval_ms, uint32_t random);
/* A rise or a fall is under way: a down application has passed its last
 * check, or an up one has failed it, and the counts belong to `state`.
 * Its next check then comes `fast_interval` after the start of this one
 * instead of `interval`, until the streak breaks or the state changes. */
bool health_in_transition(const struct health_counter *c, enum app_state state);

#endif
