/* test_tlsserver.c - HTTPS on the listeners, the parts that need no
 * socket: certificate names against SNI names, listen entries and their
 * schemes, the [server.tls] keys and their errors, the Location of a
 * redirect to HTTPS, and a certificate file OpenSSL refuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "rewrite.h"
#include "tlsserver.h"
#include "unit.h"

static struct config cfg;
static char errs[4096];

static int parse(const char *text)
{
    return config_parse(&cfg, "t.toml", text, strlen(text), errs, sizeof(errs));
}

static void test_names(void)
{
    CHECK(tls_server_name_matches("example.com", "example.com"));
    CHECK(tls_server_name_matches("Example.COM", "example.com"));
    CHECK(!tls_server_name_matches("example.com", "www.example.com"));
    CHECK(tls_server_name_matches("*.example.com", "www.example.com"));
    CHECK(tls_server_name_matches("*.example.com", "API.Example.com"));
    /* one label deep only, and never the bare domain */
    CHECK(!tls_server_name_matches("*.example.com", "a.b.example.com"));
    CHECK(!tls_server_name_matches("*.example.com", "example.com"));
    CHECK(!tls_server_name_matches("*.example.com", ".example.com"));
    CHECK(!tls_server_name_matches("*.example.com", "wwwexample.com"));
    CHECK(!tls_server_name_matches("*.example.com", "www.example.org"));
}

static void check_listen(const char *text, int ok, enum config_listen_scheme want)
{
    struct config_address a;
    enum config_listen_scheme scheme;
    int rc = config_parse_listen(text, &a, &scheme);
    CHECK_MSG(rc == (ok ? 0 : -1), "%s: rc %d", text, rc);
    if (ok && rc == 0) {
        CHECK_MSG(scheme == want, "%s: scheme %d, want %d", text, scheme, want);
        CHECK_STR(a.text, text);
    }
}

static void test_listen_entries(void)
{
    check_listen("127.0.0.1:443", 1, LISTEN_DEFAULT);
    check_listen("http://0.0.0.0:80", 1, LISTEN_HTTP);
    check_listen("https://[::1]:8443", 1, LISTEN_HTTPS);
    check_listen("HTTPS://127.0.0.1:8443", 1, LISTEN_HTTPS);
    check_listen("https://", 0, LISTEN_DEFAULT);
    check_listen("ftp://127.0.0.1:21", 0, LISTEN_DEFAULT);
    check_listen("https://127.0.0.1", 0, LISTEN_DEFAULT);
}

#define APP "[[applications]]\nip = \"127.0.0.1\"\nport = 8001\n"

static void test_listener_rule(void)
{
    /* Without [server.tls], everything is plain. */
    CHECK_INT(parse("[server]\nlisten = [\"127.0.0.1:8080\", \"http://127.0.0.1:8081\"]\n" APP), 0);
    CHECK(!config_listen_is_tls(&cfg, 0) && !config_listen_is_tls(&cfg, 1));
    CHECK_INT(config_https_port(&cfg), 0);
    config_free(&cfg);

    /* With it, every entry is HTTPS unless written http:// (the table may
     * come after the list). */
    CHECK_INT(parse("[server]\nlisten = [\"http://127.0.0.1:8080\", \"127.0.0.1:8443\", "
                    "\"https://127.0.0.1:9443\"]\nredirect_https = true\n"
                    "[server.tls]\ncert = \"/dev/null\"\nkey = \"/dev/null\"\n" APP), 0);
    CHECK(!config_listen_is_tls(&cfg, 0) && config_listen_is_tls(&cfg, 1) && config_listen_is_tls(&cfg, 2));
    CHECK_INT(config_https_port(&cfg), 8443);
    CHECK(cfg.redirect_https);
    CHECK_INT(cfg.certificate_count, 1);
    CHECK_STR(cfg.certificates[0].cert, "/dev/null");
    CHECK_INT(cfg.certificates[0].cert_line, 5);
    CHECK_INT(cfg.certificates[0].key_line, 6);
    config_free(&cfg);

    /* https:// needs a certificate */
    CHECK_INT(parse("[server]\nlisten = [\"127.0.0.1:8080\", \"https://127.0.0.1:8443\"]\n" APP), 1);
    CHECK_MSG(strstr(errs, "t.toml:2:29: server.listen: \"https://127.0.0.1:8443\" is HTTPS") != NULL, "%s", errs);

    /* a redirect needs somewhere to go */
    CHECK_INT(parse("[server]\nlisten = \"127.0.0.1:8080\"\nredirect_https = true\n" APP), 1);
    CHECK_MSG(strstr(errs, "t.toml:3:18: server.redirect_https: there is no HTTPS listener") != NULL, "%s", errs);
    CHECK_INT(parse("[server]\nlisten = \"http://127.0.0.1:8080\"\nredirect_https = true\n"
                    "[server.tls]\ncert = \"/dev/null\"\nkey = \"/dev/null\"\n" APP), 1);
    CHECK_INT(parse("[server]\nredirect_https = 1\n" APP), 1);
    CHECK_MSG(strstr(errs, "server.redirect_https: expected a boolean") != NULL, "%s", errs);
}

static void test_certificates(void)
{
    CHECK_INT(parse("[server.tls]\ncert = \"/dev/null\"\nkey = \"/dev/null\"\n"
                    "[[server.tls.certificates]]\ncert = \"/etc/hostname\"\nkey = \"/dev/null\"\n"
                    "[[server.tls.certificates]]\n  key = \"/dev/null\"\n  cert = \"/dev/null\"\n" APP), 0);
    CHECK_INT(cfg.certificate_count, 3);
    if (cfg.certificate_count == 3) {
        CHECK_STR(cfg.certificates[1].cert, "/etc/hostname");
        CHECK_INT(cfg.certificates[1].cert_line, 5);
        CHECK_INT(cfg.certificates[2].cert_line, 9);
        CHECK_INT(cfg.certificates[2].key_line, 8);
        CHECK_INT(cfg.certificates[2].key_col, 9);
    }
    config_free(&cfg);

    CHECK_INT(parse("[server.tls]\ncert = \"/dev/null\"\nkey = \"/dev/null\"\n"
                    "[[server.tls.certificates]]\ncert = \"/dev/null\"\n" APP), 1);
    CHECK_MSG(strstr(errs, "t.toml:4:1: server.tls.certificates: key is required") != NULL, "%s", errs);
    CHECK_INT(parse("[server.tls]\ncert = \"/dev/null\"\nkey = \"/dev/null\"\n"
                    "[[server.tls.certificates]]\ncert = \"/dev/null\"\nkey = \"/nonexistent/k.pem\"\nsni = 1\n" APP), 2);
    CHECK_MSG(strstr(errs, "cannot read \"/nonexistent/k.pem\"") != NULL, "%s", errs);
    CHECK_MSG(strstr(errs, "unknown key \"sni\" in [[server.tls.certificates]]") != NULL, "%s", errs);
    CHECK_INT(parse("[server.tls]\ncert = \"/dev/null\"\nkey = \"/dev/null\"\ncertificates = 3\n" APP), 1);
}

/* A file that is not PEM is refused, named, at the line of its key. */
static void test_unreadable_certificate(void)
{
    char path[] = "/tmp/sluice-unit-certXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, "not a certificate\n", 18) == 18);
    close(fd);
    char text[512];
    snprintf(text, sizeof(text), "[server.tls]\ncert = \"%s\"\nkey = \"%s\"\n" APP, path, path);
    CHECK_INT(parse(text), 0);
    struct tls_server *ts = (struct tls_server *)1;
    char errors[1024], warnings[256];
    CHECK_INT(tls_server_new(&ts, &cfg, errors, sizeof(errors), warnings, sizeof(warnings)), 1);
    CHECK(ts == NULL);
    char want[256];
    snprintf(want, sizeof(want), "t.toml:2:8: server.tls.cert: \"%s\": cannot load the certificate chain: no start line",
             path);
    CHECK_MSG(strstr(errors, want) != NULL, "%s", errors);
    config_free(&cfg);
    unlink(path);

    /* No [server.tls]: nothing to build, nothing refused. */
    CHECK_INT(parse(APP), 0);
    CHECK_INT(tls_server_new(&ts, &cfg, errors, sizeof(errors), warnings, sizeof(warnings)), 0);
    CHECK(ts == NULL);
    config_free(&cfg);
}

static void check_location(const char *authority, int port, const char *path, const char *want)
{
    char out[128];
    int n = rewrite_https_location(out, sizeof(out), authority, strlen(authority), port, path, strlen(path));
    if (!want) {
        CHECK_MSG(n == -1, "%s: %d", authority, n);
        return;
    }
    CHECK_MSG(n > 0 && (size_t)n == strlen(want) && strcmp(out, want) == 0, "%s %d %s: got %d \"%s\"",
              authority, port, path, n, n > 0 ? out : "");
}

static void test_location(void)
{
    check_location("example.com", 443, "/a?b=c", "Location: https://example.com/a?b=c\r\n");
    check_location("example.com:8080", 443, "/", "Location: https://example.com/\r\n");
    check_location("example.com:80", 8443, "/x", "Location: https://example.com:8443/x\r\n");
    check_location("[::1]:8080", 8443, "/", "Location: https://[::1]:8443/\r\n");
    check_location("[::1]", 443, "*", "Location: https://[::1]/\r\n");
    check_location("", 443, "/", NULL);
    check_location(":80", 443, "/", NULL);
    char small[16];
    CHECK_INT(rewrite_https_location(small, sizeof(small), "example.com", 11, 443, "/", 1), 0);
}

void unit_test_tlsserver(void)
{
    test_names();
    test_listen_entries();
    test_listener_rule();
    test_certificates();
    test_unreadable_certificate();
    test_location();
}
