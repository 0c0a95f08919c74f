/* The unit test runner: every suite below that was linked in runs, then one
 * closing line "N passed, N failed". Suites are weak so a module can be
 * built and tested before its neighbours exist. */
#include <stdio.h>

#include "unit.h"

int unit_passed, unit_failed;

#define SUITES(X) X(toml) X(config) X(http1) X(balance) X(pool) X(health) X(alert) X(loop) X(fuzz)
#define DECLARE(name) void unit_test_##name(void) __attribute__((weak));
SUITES(DECLARE)

int main(void)
{
#define RUN(name)                                                                \
    if (unit_test_##name) {                                              \
        int before_failed = unit_failed, before_passed = unit_passed;            \
        unit_test_##name();                                                      \
        fprintf(stderr, "%-8s %d passed, %d failed\n", #name,                    \
                unit_passed - before_passed, unit_failed - before_failed);      \
    }
    SUITES(RUN)
    printf("%d passed, %d failed\n", unit_passed, unit_failed);
    return unit_failed ? 1 : 0;
}
