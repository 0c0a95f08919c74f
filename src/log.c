/* log.c - error log lines and the buffered access log; see log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ACCESS_BUFFER_BYTES 65536
#define ACCESS_LINE_MAX 4096

/* Written once by log_init before threads start, then read-only: a
 * reopen changes the file access_fd refers to, never the number. */
static struct {
    enum config_log_level level;
    enum config_log_format format;
    int access_fd;               /* -1 = off */
    char access_path[PATH_MAX];  /* "" unless the access log is a file */
} log_settings = {LOG_INFO, LOG_FORMAT_COMBINED, STDOUT_FILENO, ""};

static int open_access_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_init(const struct config *cfg)
{
    log_settings.level = cfg->log_level;
    log_settings.format = cfg->log_format;
    if (strcmp(cfg->log_access, "off") == 0) {
        log_settings.access_fd = -1;
    } else if (strcmp(cfg->log_access, "stdout") == 0) {
        log_settings.access_fd = STDOUT_FILENO;
    } else {
        if (strlen(cfg->log_access) >= sizeof(log_settings.access_path))
            return -ENAMETOOLONG;
        int fd = open_access_file(cfg->log_access);
        if (fd < 0)
            return fd;
        log_settings.access_fd = fd;
        strcpy(log_settings.access_path, cfg->log_access);
    }
    return 0;
}

/* The workers write to access_fd without a lock, once per loop iteration.
 * dup3 swaps the file behind that number in one step: a write already
 * under way finishes in the old file, every later one goes to the new. */
int log_reopen_access(const char **path)
{
    *path = log_settings.access_path;
    if (log_settings.access_path[0] == '\0')
        return 1;
    int fd = open_access_file(log_settings.access_path);
    if (fd < 0)
        return fd;
    int rc = dup3(fd, log_settings.access_fd, O_CLOEXEC) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

void log_msg(enum config_log_level level, const char *fmt, ...)
{
    if (level < log_settings.level)
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ [%s] ", ts.tv_nsec / 1000000,
                          level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    n = m < 0 ? n : n + (size_t)m;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line: lines from several threads never interleave. */
    if (write(STDERR_FILENO, line, n) < 0)
        return;
}

int log_access_init(struct log_access *la)
{
    *la = (struct log_access){.cached_second = -1};
    if (log_settings.access_fd < 0)
        return 0;
    la->buf = malloc(ACCESS_BUFFER_BYTES);
    if (!la->buf)
        return -ENOMEM;
    la->cap = ACCESS_BUFFER_BYTES;
    return 0;
}

void log_access_free(struct log_access *la)
{
    log_access_flush(la);
    free(la->buf);
    la->buf = NULL;
}

void log_access_flush(struct log_access *la)
{
    size_t off = 0;
    while (off < la->len) {
        ssize_t n = write(log_settings.access_fd, la->buf + off, la->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;   /* a full disk must not stop the proxy; the lines are lost */
        off += (size_t)n;
    }
    la->len = 0;
}

/* Appends text, escaping what would break the line format: quotes and
 * backslashes, and control or non-ASCII bytes as \xHH (or \u00HH in JSON). */
static size_t put_escaped(char *out, size_t room, const char *s, size_t len, bool json)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len && n + 6 < room; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            if (json) {
                memcpy(out + n, "\\u00", 4);
                n += 4;
            } else {
                out[n++] = '\\';
                out[n++] = 'x';
            }
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

static const char *access_time(struct log_access *la, int64_t time_ms, bool json)
{
    int64_t second = time_ms / 1000;
    if (second != la->cached_second) {
        time_t t = (time_t)second;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(la->cached_time, sizeof(la->cached_time),
                 json ? "%Y-%m-%dT%H:%M:%SZ" : "%d/%b/%Y:%H:%M:%S +0000", &tm);
        la->cached_second = second;
    }
    return la->cached_time;
}

static size_t format_combined(struct log_access *la, char *line, const struct log_request *r)
{
    int n = snprintf(line, ACCESS_LINE_MAX, "%s - - [%s] \"", r->client_ip,
                     access_time(la, r->time_ms, false));
    size_t k = (size_t)n;
    k += put_escaped(line + k, 1024, r->method, r->method_len, false);
    line[k++] = ' ';
    k += put_escaped(line + k, 1536, r->target, r->target_len, false);
    k += (size_t)snprintf(line + k, 64, " HTTP/%d.%d\" %d %llu \"", r->http2 ? 2 : 1,
                          r->http2 ? 0 : r->version_minor, r->status,
                          (unsigned long long)r->bytes_sent);
    if (r->referer_len == 0)
        line[k++] = '-';
    k += put_escaped(line + k, 512, r->referer, r->referer_len, false);
    memcpy(line + k, "\" \"", 3);
    k += 3;
    if (r->user_agent_len == 0)
        line[k++] = '-';
    k += put_escaped(line + k, 512, r->user_agent, r->user_agent_len, false);
    k += (size_t)snprintf(line + k, ACCESS_LINE_MAX - k, "\" %s %.3f \"", r->app_name,
                          (double)r->duration_us / 1e6);
    k += put_escaped(line + k, 128, r->request_id, r->request_id_len, false);
    line[k++] = '"';
    /* Only for requests that waited, so that the usual line stays the
     * combined format plus the three fields parsers already know. */
    if (r->queued)
        k += (size_t)snprintf(line + k, 64, " queue=%" PRId64 "ms/%" PRIu32, r->queue_ms, r->queue_ahead);
    line[k++] = '\n';
    return k;
}

static size_t format_json(struct log_access *la, char *line, const struct log_request *r)
{
    size_t k = (size_t)snprintf(line, ACCESS_LINE_MAX, "{\"time\":\"%s\",\"client\":\"%s\",\"method\":\"",
                                access_time(la, r->time_ms, true), r->client_ip);
    k += put_escaped(line + k, 1024, r->method, r->method_len, true);
    memcpy(line + k, "\",\"target\":\"", 12);
    k += 12;
    k += put_escaped(line + k, 1536, r->target, r->target_len, true);
    k += (size_t)snprintf(line + k, 160,
                          "\",\"version\":\"HTTP/%d.%d\",\"status\":%d,\"bytes\":%llu,"
                          "\"duration_ms\":%.3f,\"application\":\"",
                          r->http2 ? 2 : 1, r->http2 ? 0 : r->version_minor, r->status, (unsigned long long)r->bytes_sent,
                          (double)r->duration_us / 1e3);
    k += put_escaped(line + k, 128, r->app_name, strlen(r->app_name), true);
    memcpy(line + k, "\",\"request_id\":\"", 16);
    k += 16;
    k += put_escaped(line + k, 128, r->request_id, r->request_id_len, true);
    memcpy(line + k, "\",\"referer\":\"", 13);
    k += 13;
    k += put_escaped(line + k, 400, r->referer, r->referer_len, true);
    memcpy(line + k, "\",\"user_agent\":\"", 16);
    k += 16;
    k += put_escaped(line + k, 400, r->user_agent, r->user_agent_len, true);
    k += (size_t)snprintf(line + k, 96, "\",\"queue_ms\":%" PRId64 ",\"queue_ahead\":%" PRIu32
                          ",\"scheme\":\"%s\"}\n", r->queue_ms, r->queue_ahead, r->tls ? "https" : "http");
    return k;
}

void log_access_write(struct log_access *la, const struct log_request *r)
{
    if (!la->buf)
        return;
    if (la->cap - la->len < ACCESS_LINE_MAX)
        log_access_flush(la);
    char *line = la->buf + la->len;
    la->len += log_settings.format == LOG_FORMAT_JSON ? format_json(la, line, r)
                                                      : format_combined(la, line, r);
}
