/* test_app_tls.c - the TLS keys of [[applications]] (tls_verify, ca_file,
 * sni): where they are refused, the contexts they share, the name a
 * certificate is checked against. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app_tls.h"
#include "unit.h"

#define SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

static struct config cfg;
static char errs[4096];

static int parse(const char *text)
{
    return config_parse(&cfg, "t.toml", text, strlen(text), errs, sizeof(errs));
}

/* Exactly one error, starting with expected (FILE:LINE:COL included). */
static void check_refused(const char *text, const char *expected)
{
    int n = parse(text);
    CHECK_MSG(n == 1 && strncmp(errs, expected, strlen(expected)) == 0,
              "want one error starting \"%s\" for:\n%s--- got %d errors:\n%s", expected, text, n, errs);
    if (n == 0)
        config_free(&cfg);
}

static bool parses(const char *text)
{
    int n = parse(text);
    CHECK_MSG(n == 0, "want no errors for:\n%s--- got %d:\n%s", text, n, errs);
    return n == 0;
}

#define APP_AT(port) "[[applications]]\nip = \"127.0.0.1\"\nport = " #port "\n"

static void test_keys_need_tls(void)
{
    check_refused(APP_AT(1) "tls_verify = true\n",
                  "t.toml:4:14: applications.tls_verify: only for an application with tls = true");
    check_refused(APP_AT(1) "tsl = false\nca_file = \"" SYSTEM_CA "\"\n",
                  "t.toml:5:11: applications.ca_file: only for an application with tls = true");
    check_refused(APP_AT(1) "sni = \"app.test\"\n",
                  "t.toml:4:7: applications.sni: only for an application with tls = true");
    check_refused(APP_AT(1) "tls = true\nca_file = \"" SYSTEM_CA "\"\n",
                  "t.toml:5:11: applications.ca_file: is used only with tls_verify = true");
}

static void test_sni_is_a_host_name(void)
{
    check_refused(APP_AT(1) "tls = true\nsni = \"10.0.0.1\"\n",
                  "t.toml:5:7: applications.sni: \"10.0.0.1\" is not a host name");
    check_refused(APP_AT(1) "tls = true\nsni = \"app test\"\n",
                  "t.toml:5:7: applications.sni: \"app test\" is not a host name");
    check_refused(APP_AT(1) "tls = true\nsni = \"\"\n", "t.toml:5:7: applications.sni: \"\" is not a host name");
    check_refused(APP_AT(1) "tls = true\nsni = 3\n", "t.toml:5:7: applications.sni: expected a string");
    if (parses(APP_AT(1) "tls = true\nsni = \"app.test\"\n" APP_AT(2) "tls = true\n"
               "[[applications]]\nhost = \"localhost\"\nport = 3\ntls = true\n")) {
        CHECK_STR(app_tls_server_name(&cfg.apps[0]), "app.test");
        CHECK_STR(app_tls_server_name(&cfg.apps[1]), "127.0.0.1");   /* verified as an IP address */
        CHECK_STR(app_tls_server_name(&cfg.apps[2]), "localhost");
        CHECK(!cfg.apps[0].tls_verify);   /* the seed's tsl never verified */
        config_free(&cfg);
    }
}

static void test_ca_file_must_be_usable(void)
{
    char garbage[] = "/tmp/sluice-unit-ca-XXXXXX";
    int fd = mkstemp(garbage);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, "not a certificate\n", 18) == 18);
    close(fd);
    char text[512], expected[256];
    snprintf(text, sizeof(text), APP_AT(1) "tls = true\ntls_verify = true\nca_file = \"%s\"\n", garbage);
    snprintf(expected, sizeof(expected), "t.toml:6:11: applications.ca_file: \"%s\": no CA certificate "
             "could be read from it", garbage);
    check_refused(text, expected);
    unlink(garbage);
    snprintf(expected, sizeof(expected), "t.toml:6:11: applications.ca_file: cannot read \"%s\"", garbage);
    check_refused(text, expected);
}

/* One context per distinct (tls_verify, ca_file), shared by the
 * applications that have the same; none for applications in the clear. */
static void test_contexts_are_shared(void)
{
    if (!parses(APP_AT(1) "tls = true\n" APP_AT(2) "tls = true\n" APP_AT(3) "tls = true\ntls_verify = true\n"
                APP_AT(4) "tls = true\ntls_verify = true\nca_file = \"" SYSTEM_CA "\"\n"
                APP_AT(5) "tls = true\ntls_verify = true\nca_file = \"" SYSTEM_CA "\"\n" APP_AT(6)))
        return;
    CHECK_INT(cfg.tls_context_count, 3);
    CHECK(cfg.apps[0].tls_context && cfg.apps[0].tls_context == cfg.apps[1].tls_context);
    CHECK(cfg.apps[2].tls_context && cfg.apps[2].tls_context != cfg.apps[0].tls_context);
    CHECK(cfg.apps[3].tls_context && cfg.apps[3].tls_context == cfg.apps[4].tls_context);
    CHECK(cfg.apps[3].tls_context != cfg.apps[2].tls_context);
    CHECK(cfg.apps[5].tls_context == NULL);
    CHECK_STR(cfg.apps[3].ca_file, SYSTEM_CA);
    config_free(&cfg);
    CHECK(cfg.tls_contexts == NULL && cfg.tls_context_count == 0);
}

void unit_test_app_tls(void)
{
    test_keys_need_tls();
    test_sni_is_a_host_name();
    test_ca_file_must_be_usable();
    test_contexts_are_shared();
}
