/* testalert.h - `sluice --test-alert`: one test alert to every target of a
 * configuration, with no listener, no health check and no worker.
 */
#ifndef SLUICE_TESTALERT_H
#define SLUICE_TESTALERT_H

#include <stdio.h>

#include "config.h"

/* Sends the test through a dispatcher of its own, waits for every outcome
 * (at most wait_ms) and prints one line per target to out: "TARGET:
 * delivered" or "TARGET: not delivered: WHY". Returns 0 when every target
 * has it, 1 otherwise (none configured included). */
int test_alert_run(const struct config *cfg, FILE *out, int wait_ms);

#endif
