/* config.h - applications.toml mapped onto the settings sluice runs with.
 *
 * A struct config is immutable once loaded: workers read it without locks.
 * It owns every string and array it points to; config_free releases them.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_MAX_LISTEN 8
#define CONFIG_NAME_MAX 64
#define CONFIG_MAX_APPS 65535           /* an application's index fits 16 bits */

enum config_mode { MODE_PROXY, MODE_REDIRECT };
enum config_algorithm { ALG_ROUND_ROBIN, ALG_LEAST_CONN, ALG_RANDOM_TWO, ALG_HASH };
enum config_hash_key { HASH_CLIENT_IP, HASH_URI, HASH_HEADER, HASH_COOKIE };
enum config_log_format { LOG_FORMAT_COMBINED, LOG_FORMAT_JSON };
enum config_log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

struct ssl_ctx_st;
struct config_tls_context;

struct config_address {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char text[80];                  /* as the operator wrote it, e.g. "0.0.0.0:8080" */
};

/* How a listen entry was written: a bare address follows [server.tls]
 * (HTTPS when it is there), "http://" and "https://" say it outright. */
enum config_listen_scheme { LISTEN_DEFAULT, LISTEN_HTTP, LISTEN_HTTPS };

/* A certificate chain and its key for the HTTPS listeners, with where the
 * file names them, so that a file OpenSSL refuses is reported at its key. */
struct config_certificate {
    char *cert, *key;               /* owned; relative to the config file's directory */
    int cert_line, cert_col;
    int key_line, key_col;
};

#define CONFIG_MAX_CERTIFICATES 64

/* [[alerts.webhooks]]: one receiver and the format it expects. */
enum config_webhook_format { WEBHOOK_JSON, WEBHOOK_SLACK, WEBHOOK_PAGERDUTY, WEBHOOK_FORM };
#define CONFIG_WEBHOOKS_MAX 16
#define CONFIG_PAIRS_MAX 32             /* headers, and fields, per webhook */

struct config_pair {
    char *name, *value;             /* owned */
};

struct config_webhook {
    char *url;                      /* owned */
    enum config_webhook_format format;
    struct config_pair *headers;    /* values with ${VAR} read at load; owned */
    int header_count;
    struct config_pair *fields;     /* form: name = template; owned */
    int field_count;
    char *text;                     /* slack: one change's line; NULL = the sentence */
    char *routing_key;              /* pagerduty, ${VAR} read at load; owned */
    int line;                       /* where its [[alerts.webhooks]] header is */
};

struct config_app {
    char name[CONFIG_NAME_MAX];     /* default "ip:port" */
    char *host;                     /* ip or host name as written; owned */
    uint16_t port;                  /* effective port: 0 or absent in the file
                                       becomes the scheme default (80/443) */
    bool default_port;              /* port came from the scheme: Host and a
                                       redirect's Location leave it out */
    bool alive;                     /* state at start-up */
    bool tls;
    bool tls_verify;                /* tls: check the certificate (app_tls.h) */
    char *ca_file;                  /* tls_verify: CA bundle (PEM); NULL: the system's; owned */
    char *sni;                      /* tls: the name sent and verified; NULL: host; owned */
    struct ssl_ctx_st *tls_context; /* tls: shared by the applications with the same
                                       tls_verify and ca_file; in cfg->tls_contexts */
    uint32_t weight;                /* >= 1 */
    uint32_t max_requests;          /* in flight at once, across workers; 0 = no limit */
    struct config_address address;  /* a literal's at load; a name's once
                                       dns_expand gives it an address */
    int line;                       /* where its [[applications]] header is */
    /* host is a name, not a literal: dns_expand makes one application per
     * address it resolves to, named GROUP@ADDRESS (docs/operations.md). */
    bool by_name;
    char group[CONFIG_NAME_MAX];    /* the name those members share; "" otherwise */
    int host_line, host_col;        /* where the host value is, for resolution errors */
};

enum config_email_security { EMAIL_STARTTLS, EMAIL_TLS, EMAIL_NONE };

#define CONFIG_EMAIL_TO_MAX 32

/* [alerts.email]: alerts sent by sluice itself over SMTP. */
struct config_email {
    bool enabled;                   /* the table is present */
    char *server;                   /* "host:port" as written; owned */
    char *host;                     /* name or address literal; owned */
    char port[6];
    enum config_email_security security;
    char *username;                 /* "" when unset; owned */
    char *password;                 /* read at load from password_env or
                                       password_file; NULL when none; owned;
                                       never logged */
    char *from;                     /* addr-spec; owned */
    char *to[CONFIG_EMAIL_TO_MAX];  /* addr-specs; owned */
    int to_count;
    char *ca_file;                  /* NULL: the system CAs; owned */
    char *subject;                  /* a template; NULL: sluice's subject; owned */
};

struct config {
    char *path;                     /* owned copy of the file name */

    /* [server] */
    struct config_address listen[CONFIG_MAX_LISTEN];
    int listen_count;
    enum config_mode mode;
    enum config_algorithm algorithm;
    enum config_hash_key hash_key;
    char *hash_key_name;            /* header or cookie name for HASH_HEADER/COOKIE; owned */
    int workers;                    /* 0 = one per CPU */
    int max_connections;
    int64_t shutdown_grace_ms;
    int retries;
    int64_t connect_timeout_ms;
    int64_t client_header_timeout_ms;
    int64_t client_idle_timeout_ms;
    int64_t client_body_timeout_ms; /* gap between two reads of a request body */
    int64_t queue_timeout_ms;       /* wait for a free slot when all are at max_requests */
    int64_t upstream_response_timeout_ms;
    uint32_t header_bytes;
    uint32_t header_count;
    uint64_t body_bytes;            /* 0 = unlimited */
    uint64_t buffer_body;           /* body bytes received before an application is chosen */
    uint64_t buffer_total;          /* per worker, for those buffers */
    uint64_t min_body_rate;         /* bytes per second, after the first 10 s; 0 = off */
    char *tls_cert, *tls_key;       /* NULL when [server.tls] is absent; owned */
    int64_t dns_refresh_ms;         /* how often host names are resolved again */
    char *resolvers;                /* "ip:port,..." as c-ares takes them; "" = the
                                       system's (/etc/resolv.conf); owned */
    enum config_listen_scheme listen_scheme[CONFIG_MAX_LISTEN];
    bool redirect_https;            /* plain listeners answer with a redirect to HTTPS */
    /* [server.tls] cert/key first, then each [[server.tls.certificates]];
     * none without [server.tls]. Owned. */
    struct config_certificate *certificates;
    int certificate_count;

    /* [server.http2] */
    bool h2_cleartext;              /* a plain connection that opens with the HTTP/2
                                       preface speaks HTTP/2 (prior knowledge) */
    uint32_t h2_max_streams;        /* SETTINGS_MAX_CONCURRENT_STREAMS */

    /* [health] */
    char *health_path;              /* owned */
    int64_t health_interval_ms;
    int64_t health_fast_interval_ms; /* while a rise or fall is under way */
    int64_t health_timeout_ms;
    int health_rise;
    int health_fall;
    uint8_t health_expect[75];      /* bit set of status codes 0..599 that pass */

    /* [passive] */
    int passive_failures;           /* gateway failures within the window that
                                       mark an application down; 0 = off */
    int64_t passive_window_ms;
    int passive_server_errors;      /* 0 = off */

    /* [admin] */
    struct config_address admin_listen;
    bool admin_enabled;
    char *admin_token;              /* "" when unset; owned */

    /* [alerts] */
    char *alert_webhook;            /* "" when unset; owned */
    char *alert_command;            /* "" when unset; owned */
    int64_t alert_batch_ms;         /* chat and email: changes this close make one message */
    struct config_webhook *webhooks; /* [[alerts.webhooks]]; owned array */
    int webhook_count;
    struct config_email email;      /* [alerts.email] */

    /* [log] */
    char *log_access;               /* "stdout", "off" or a path; owned */
    enum config_log_format log_format;
    enum config_log_level log_level;

    /* [cache] */
    bool cache_enabled;
    uint64_t cache_size_bytes;
    uint64_t cache_entries;         /* the seed's cachesize; 0 when unset */
    uint64_t cache_max_object;

    struct config_app *apps;        /* owned array */
    int app_count;
    struct config_tls_context *tls_contexts;  /* owned array (app_tls.c) */
    int tls_context_count;

    /* "FILE:LINE:COL: warning: message\n" lines for settings that work but
     * should change (an old key name); NULL when none. Owned. */
    char *warnings;

    /* The text the settings were parsed from, kept so that a change of DNS
     * answers rebuilds exactly these settings, whatever the file says by
     * then. Owned. */
    char *source;
    size_t source_len;
};

static inline bool config_expect_has(const struct config *cfg, int status)
{
    return status >= 0 && status < 600 && (cfg->health_expect[status / 8] >> (status % 8)) & 1;
}

/* Fills cfg with every setting's default (no applications). It
 * overwrites cfg without freeing it, and allocates the default strings. */
void config_defaults(struct config *cfg);

/* Loads and validates the file at path. Returns 0 on success; otherwise the
 * number of errors, each written to errors as a line "FILE:LINE:COL: message\n"
 * (truncated to errors_len), and cfg is left empty (config_free is safe). */
int config_load(struct config *cfg, const char *path, char *errors, size_t errors_len);

/* Same, from text in memory; name stands for the file name in messages. */
int config_parse(struct config *cfg, const char *name, const char *text, size_t len,
                 char *errors, size_t errors_len);

void config_free(struct config *cfg);

/* The [admin] section alone (what `sluice ctl` needs), defaults included. */
struct config_admin {
    bool enabled;                   /* listen is not "" */
    struct config_address listen;
    char token[256];
};

/* Reads only [admin] from the file at path, so that a file with errors
 * elsewhere still gives the admin address. 0, or -errno with a message in
 * error (out keeps the defaults). */
int config_load_admin(const char *path, struct config_admin *out, char *error, size_t error_len);

/* Whether listener i speaks TLS: "https://", or a bare address when
 * [server.tls] is there. */
static inline bool config_listen_is_tls(const struct config *cfg, int i)
{
    return cfg->listen_scheme[i] == LISTEN_HTTPS ||
           (cfg->listen_scheme[i] == LISTEN_DEFAULT && cfg->tls_cert != NULL);
}

/* The port of the first HTTPS listener (where redirect_https sends
 * clients), or 0 when there is none. */
int config_https_port(const struct config *cfg);

/* A listen entry: an address (config_parse_address), optionally after
 * "http://" or "https://" (any case). out->text keeps the entry as
 * written. Returns 0 or -1. */
int config_parse_listen(const char *text, struct config_address *out,
                        enum config_listen_scheme *scheme);

/* "2s", "500ms", "1m" or an integer of ms. Returns 0 or -1. */
int config_parse_duration(const char *text, int64_t *ms);
/* "64MB", "1KB", "1GB", "512B" or a bare integer of bytes. Returns 0 or -1. */
int config_parse_size(const char *text, uint64_t *bytes);
/* "127.0.0.1:8001" or "[::1]:8001": the form operators read in logs. */
void config_format_address(const struct sockaddr_storage *addr, char *buf, size_t len);
/* "127.0.0.1:80", "[::1]:80", ":80", "*:80". Returns 0 or -1. */
int config_parse_address(const char *text, struct config_address *out);

#endif
