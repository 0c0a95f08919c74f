/* log.h - the error log (stderr, with a level) and the access log.
 *
 * Settings are written once by log_init before any thread starts and only
 * read afterwards. The access log is buffered per worker (struct
 * log_access) and written out once per loop iteration, so a busy worker
 * makes one write() for many requests.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Applies [log]; opens the access log file. Returns 0 or -errno. */
int log_init(const struct config *cfg);

/* Opens the access log file again by its name, for log rotation (SIGUSR1):
 * lines written from then on go to the file now at that path. Safe while
 * workers write. Returns 0, 1 when the access log is not a file (stdout,
 * off: nothing to do), or -errno (the old file stays in use). *path is the
 * file's name. */
int log_reopen_access(const char **path);

void log_msg(enum config_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* One finished request, as the access log records it. */
struct log_request {
    const char *client_ip;
    const char *method;      uint32_t method_len;
    const char *target;      uint32_t target_len;
    int version_minor;
    bool http2;              /* came as an HTTP/2 stream: logged as HTTP/2.0 */
    int status;
    uint64_t bytes_sent;     /* response body bytes */
    const char *referer;     uint32_t referer_len;
    const char *user_agent;  uint32_t user_agent_len;
    const char *request_id;  uint32_t request_id_len;
    const char *app_name;    /* "-" when none */
    int64_t duration_us;
    int64_t time_ms;         /* wall clock at the end of the request */
    bool queued;             /* waited for a request slot (max_requests) */
    uint32_t queue_ahead;    /* requests already waiting when it began to */
    int64_t queue_ms;        /* time spent waiting */
    bool tls;                /* came over HTTPS */
};

/* Per-worker access log buffer. */
struct log_access {
    char *buf;
    size_t len, cap;
    int64_t cached_second;   /* the second cached_time was formatted for */
    char cached_time[40];
};

int log_access_init(struct log_access *la);
void log_access_free(struct log_access *la);
void log_access_write(struct log_access *la, const struct log_request *r);
void log_access_flush(struct log_access *la);

#endif
