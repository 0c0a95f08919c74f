/* test_template.c - {field} templates: what is refused and where, what a
 * well-formed one renders to, and snprintf-like truncation. */
#include <stdio.h>
#include <string.h>

#include "template.h"
#include "unit.h"

static const char *const values[TEMPLATE_FIELDS] = {
    [TEMPLATE_APPLICATION] = "api-1", [TEMPLATE_ADDRESS] = "127.0.0.1:8001",
    [TEMPLATE_STATE] = "down",        [TEMPLATE_PREVIOUS] = "up",
    [TEMPLATE_REASON] = "refused",    [TEMPLATE_TIME] = "2024-05-01T12:00:00.123Z",
    [TEMPLATE_UP] = "1",              [TEMPLATE_TOTAL] = "3",
};

static void check_render(const char *tpl, const char *want)
{
    char out[256], why[200];
    size_t at = 99;
    CHECK_MSG(template_check(tpl, &at, why, sizeof(why)) == 0, "check(%s): %s", tpl, why);
    size_t n = template_render(out, sizeof(out), tpl, values);
    CHECK_MSG(strcmp(out, want) == 0 && n == strlen(want), "render(%s) = \"%s\", want \"%s\"", tpl, out, want);
}

static void check_refused(const char *tpl, size_t want_at, const char *want_why)
{
    char why[200] = "";
    size_t at = 99;
    int rc = template_check(tpl, &at, why, sizeof(why));
    CHECK_MSG(rc == -1 && at == want_at && strstr(why, want_why), "check(%s) = %d at %zu: %s", tpl, rc, at, why);
}

static void test_render(void)
{
    check_render("", "");
    check_render("plain text", "plain text");
    check_render("{application} is {state}: {reason}", "api-1 is down: refused");
    check_render("{application} ({address}) {previous} -> {state} at {time}, {up}/{total} up",
                 "api-1 (127.0.0.1:8001) up -> down at 2024-05-01T12:00:00.123Z, 1/3 up");
    check_render("{{literal}} {{{state}}}", "{literal} {down}");
    check_render("}}{{", "}{");
    check_render("{state}{state}", "downdown");
}

static void test_refused(void)
{
    check_refused("{foo}", 0, "unknown field {foo}");
    check_refused("ok {Application}", 3, "unknown field {Application}");   /* case matters */
    check_refused("x {}", 2, "unknown field {}");
    check_refused("open {state", 5, "not closed");
    check_refused("{a{state}}", 0, "not closed");
    check_refused("lone } brace", 5, "lone '}'");
    check_refused("{state} }", 8, "lone '}'");
    CHECK_INT(template_field_named("total", 5), TEMPLATE_TOTAL);
    CHECK_INT(template_field_named("tota", 4), -1);
}

static void test_truncation(void)
{
    char small[8];
    size_t n = template_render(small, sizeof(small), "{application} is {state}", values);
    CHECK_INT(n, strlen("api-1 is down"));
    CHECK_STR(small, "api-1 i");
    CHECK_INT(template_render(NULL, 0, "{reason}!", values), 8);
}

void unit_test_template(void)
{
    test_render();
    test_refused();
    test_truncation();
}
