/* The unit test runner: every suite below runs, then one closing line
 * "N passed, N failed". The entry points are weak so that a listed suite
 * whose file is missing still links: it is reported and counted as a
 * failure, and the other suites run. */
#include <stdio.h>

#include "unit.h"

int unit_passed, unit_failed;

#define SUITES(X) X(toml) X(url) X(config) X(http1) X(rewrite) X(exchange) X(balance) X(pool) X(httpclient) X(health) X(alert) X(template) X(loop) X(metrics) X(admin) X(mail) X(smtp) X(app_tls) X(dns) X(tlsserver) X(h2head) X(fuzz)
#define DECLARE(name) void unit_test_##name(void) __attribute__((weak));
SUITES(DECLARE)

int main(void)
{
#define RUN(name)                                                                \
    if (unit_test_##name) {                                                      \
        int before_failed = unit_failed, before_passed = unit_passed;            \
        unit_test_##name();                                                      \
        fprintf(stderr, "%-10s %d passed, %d failed\n", #name,                  \
                unit_passed - before_passed, unit_failed - before_failed);      \
    } else {                                                                     \
        unit_failed++;                                                           \
        fprintf(stderr, "FAIL %-8s listed but not linked (no unit_test_%s)\n",   \
                #name, #name);                                                   \
    }
    SUITES(RUN)
    printf("%d passed, %d failed\n", unit_passed, unit_failed);
    return unit_failed ? 1 : 0;
}
