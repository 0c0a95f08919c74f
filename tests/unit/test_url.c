/* test_url.c - URLs a webhook may have, accepted and split into host, port,
 * Host header and request target; and URLs refused, each with its reason. */
#include <stdbool.h>
#include <string.h>

#include "unit.h"
#include "url.h"

static void check_url(const char *url, bool tls, const char *host, const char *port, const char *authority,
                      const char *path)
{
    struct url u;
    char err[128] = "";
    int rc = url_parse(url, &u, err, sizeof(err));
    CHECK_MSG(rc == 0, "%s: %s", url, err);
    if (rc != 0)
        return;
    CHECK_MSG(u.tls == tls && strcmp(u.host, host) == 0 && strcmp(u.port, port) == 0 &&
                  strcmp(u.authority, authority) == 0 && strcmp(u.path, path) == 0,
              "%s -> tls %d host %s port %s authority %s path %s", url, u.tls, u.host, u.port, u.authority,
              u.path);
}

static void check_bad_url(const char *url, const char *want)
{
    struct url u;
    char err[128] = "";
    CHECK_MSG(url_parse(url, &u, err, sizeof(err)) == -1 && strstr(err, want),
              "%s: got \"%s\", want \"%s\"", url, err, want);
}

static void test_urls(void)
{
    check_url("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX", true,
              "hooks.slack.com", "443", "hooks.slack.com", "/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX");
    check_url("http://127.0.0.1:9555/hook", false, "127.0.0.1", "9555", "127.0.0.1:9555", "/hook");
    check_url("HTTP://example.com", false, "example.com", "80", "example.com", "/");
    check_url("http://example.com?x=1#frag", false, "example.com", "80", "example.com", "/?x=1");
    check_url("http://[::1]:8080/a?b=c", false, "::1", "8080", "[::1]:8080", "/a?b=c");
    check_url("https://[2001:db8::1]/", true, "2001:db8::1", "443", "[2001:db8::1]", "/");
    check_url("http://example.com:/x", false, "example.com", "80", "example.com", "/x");

    check_bad_url("ftp://example.com/", "http:// or https://");
    check_bad_url("example.com/hook", "http:// or https://");
    check_bad_url("http:///hook", "no host");
    check_bad_url("http://user:pw@example.com/", "not supported");
    check_bad_url("http://example.com:99999/", "bad port");
    check_bad_url("http://example.com:8o/", "bad port");
    check_bad_url("http://exa mple.com/", "bad host");
    check_bad_url("http://[::1/", "unterminated");
    check_bad_url("http://[::1]x/", "after ]");
    check_bad_url("http://example.com/a b", "path");
    check_bad_url("http://example.com/a\r\nX: y", "path");
}

void unit_test_url(void)
{
    test_urls();
}
