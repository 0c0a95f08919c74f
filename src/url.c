/* url.c - the URL parser (url.h).
 *
 * Only the part of RFC 3986 a webhook needs: the scheme http or https, a
 * host (a name, IPv4, or IPv6 in brackets), an optional port, and the path
 * and query as written, which go on the request line unchanged. What cannot
 * be sent faithfully is refused rather than mended: userinfo (dropping it
 * would send the request without the credentials the operator meant), and
 * a path byte that would need %-encoding (a space or CR/LF there would
 * split the request line). A fragment is never sent to a server, so it is
 * dropped.
 */
#include "url.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int url_error(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int url_error(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -1;
}

/* RFC 3986 reg-name and IP literal characters; percent-encoded hosts are
 * not accepted (no real webhook uses one). */
static bool url_host_ok(const char *s, size_t len, bool bracketed)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' || c == '~' || (bracketed && c == ':');
        if (!ok)
            return false;
    }
    return true;
}

static bool url_port_ok(const char *s, size_t len)
{
    unsigned long port = 0;
    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

/* Splits the authority into host and port. */
static int url_parse_authority(const char *auth, size_t len, struct url *out, char *err, size_t err_len)
{
    const char *host = auth, *port = NULL;
    size_t host_len = len, port_len = 0;
    const char *end = auth + len;
    bool bracketed = len > 0 && auth[0] == '[';
    if (bracketed) {
        const char *close = memchr(auth, ']', len);
        if (!close)
            return url_error(err, err_len, "unterminated [ in the host");
        host = auth + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < end && close[1] != ':')
            return url_error(err, err_len, "unexpected text after ]");
        port = close + 1 < end ? close + 2 : NULL;
    } else {
        const char *colon = memchr(auth, ':', len);
        if (colon) {
            host_len = (size_t)(colon - auth);
            port = colon + 1;
        }
    }
    if (port)
        port_len = (size_t)(end - port);
    if (!url_host_ok(host, host_len, bracketed) || host_len >= sizeof(out->host))
        return url_error(err, err_len, "bad host");
    if (port_len > 0 && !url_port_ok(port, port_len))
        return url_error(err, err_len, "bad port");
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (port_len > 0)
        snprintf(out->port, sizeof(out->port), "%.*s", (int)port_len, port);
    else
        snprintf(out->port, sizeof(out->port), "%s", out->tls ? "443" : "80");
    /* The Host header: as written, minus an empty port ("host:"). */
    size_t authority_len = port && port_len == 0 ? len - 1 : len;
    snprintf(out->authority, sizeof(out->authority), "%.*s", (int)authority_len, auth);
    return 0;
}

int url_parse(const char *text, struct url *out, char *err, size_t err_len)
{
    const char *p;
    memset(out, 0, sizeof(*out));
    if (strncasecmp(text, "http://", 7) == 0) {
        p = text + 7;
    } else if (strncasecmp(text, "https://", 8) == 0) {
        p = text + 8;
        out->tls = true;
    } else {
        return url_error(err, err_len, "must start with http:// or https://");
    }
    size_t auth_len = strcspn(p, "/?#");
    if (memchr(p, '@', auth_len))
        return url_error(err, err_len, "user:password@ in the URL is not supported");
    if (auth_len == 0)
        return url_error(err, err_len, "no host");
    if (auth_len >= sizeof(out->authority))
        return url_error(err, err_len, "host too long");
    if (url_parse_authority(p, auth_len, out, err, err_len) < 0)
        return -1;
    const char *path = p + auth_len;
    size_t path_len = strcspn(path, "#");
    for (size_t i = 0; i < path_len; i++)
        if ((unsigned char)path[i] <= ' ' || (unsigned char)path[i] >= 0x7f)
            return url_error(err, err_len, "the path has a space or a byte that must be %%-encoded");
    if (path_len + 2 > sizeof(out->path))
        return url_error(err, err_len, "path too long");
    snprintf(out->path, sizeof(out->path), "%s%.*s", path_len == 0 || path[0] != '/' ? "/" : "",
             (int)path_len, path);
    return 0;
}
