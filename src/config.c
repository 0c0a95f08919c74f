/* config.c - applications.toml mapped onto struct config: every key, its
 * type, range and default.
 *
 * The file is parsed whole by toml.c into a tree whose keys and values carry
 * their line and column; this file then walks that tree with one table of
 * known keys per TOML table ("section"). A key's entry says where its value
 * lands in the struct (an offset), what kind of value it takes (bool,
 * integer, duration, size, string, enum, sub-table) and its range, so
 * adding a setting is one line in a table, not a new parsing function. The
 * few settings with a shape of their own (listen, expect, hash_key, an
 * application's port ...) name a handler instead, and each section may have
 * a finish hook for rules that span keys ("cert and key together", "ip or
 * host, not both").
 *
 * Errors never stop the walk: every one is appended to the caller's buffer
 * as "FILE:LINE:COL: key: message" and counted, so an operator fixes a file
 * in one pass, as with a compiler. A wrong key points at the key; a wrong
 * value points at the value. Only when the count is zero is the struct
 * handed back; otherwise it is freed and zeroed, so callers (startup,
 * --check, reload) never see a half-applied config.
 *
 * The choices sluice makes where no other load balancer's convention
 * decides (duration and size syntax, ranges) are written in
 * docs/configuration.md; the ones that shape code are noted where they are
 * made.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "app_tls.h"
#include "template.h"
#include "mail.h"
#include "toml.h"
#include "url.h"

#define DAY_MS (24LL * 3600 * 1000)
#define HEADER_BYTES_MIN 1024
#define HEADER_BYTES_MAX (1024 * 1024)
/* Below a second, re-resolving becomes a load on the DNS servers. */
#define DNS_REFRESH_MIN_MS 1000

/* ------------------------------------------------------------------------
 * Durations, sizes and addresses: the value syntaxes of their own.
 */

/* Reads one or more decimal digits; no sign, no spaces. Values above
 * INT64_MAX are refused so that every caller can keep them signed. */
static int parse_digits(const char **text, uint64_t *out)
{
    const char *p = *text;
    uint64_t n = 0;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (uint64_t)(INT64_MAX - (*p - '0')) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    *text = p;
    *out = n;
    return 0;
}

struct unit {
    const char *suffix;
    uint64_t factor;
};

static int parse_with_unit(const char *text, const struct unit *units, bool ignore_case,
                           uint64_t *out)
{
    const char *p = text;
    uint64_t n;

    if (!text || parse_digits(&p, &n) < 0)
        return -1;
    for (const struct unit *u = units; u->suffix; u++) {
        if ((ignore_case ? strcasecmp(p, u->suffix) : strcmp(p, u->suffix)) != 0)
            continue;
        if (n > (uint64_t)INT64_MAX / u->factor)
            return -1;
        *out = n * u->factor;
        return 0;
    }
    return -1;
}

/* Whole numbers only ("1500ms", not "1.5s"), as HAProxy and nginx read
 * them. Units are lower case: "m" is minutes and must not read as mega. */
int config_parse_duration(const char *text, int64_t *ms)
{
    static const struct unit units[] = {
        {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {NULL, 0},
    };
    uint64_t n;

    if (parse_with_unit(text, units, false, &n) < 0)
        return -1;
    *ms = (int64_t)n;
    return 0;
}

/* Binary multiples (KB = 1024), as nginx reads "16k"; case does not matter. */
int config_parse_size(const char *text, uint64_t *bytes)
{
    static const struct unit units[] = {
        {"", 1},           {"b", 1},
        {"k", 1ULL << 10}, {"kb", 1ULL << 10}, {"kib", 1ULL << 10},
        {"m", 1ULL << 20}, {"mb", 1ULL << 20}, {"mib", 1ULL << 20},
        {"g", 1ULL << 30}, {"gb", 1ULL << 30}, {"gib", 1ULL << 30},
        {NULL, 0},
    };
    return parse_with_unit(text, units, true, bytes);
}

/* A literal IP address only: dotted-quad IPv4 (inet_pton, so "127.1" is
 * refused), or IPv6 with an optional "%scope" (getaddrinfo understands the
 * scope, inet_pton does not). Never touches DNS. */
static int parse_ip(const char *host, uint16_t port, struct sockaddr_storage *addr,
                    socklen_t *addr_len)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)addr;

    memset(addr, 0, sizeof(*addr));
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *addr_len = sizeof(*sin);
        return 0;
    }
    if (!strchr(host, ':'))
        return -1;

    struct addrinfo hints = {
        .ai_family = AF_INET6,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICHOST,
    };
    struct addrinfo *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return -1;
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *addr_len = res->ai_addrlen;
    ((struct sockaddr_in6 *)addr)->sin6_port = htons(port);
    freeaddrinfo(res);
    return 0;
}

static int parse_port(const char *text, bool allow_zero, uint16_t *port)
{
    const char *p = text;
    uint64_t n;

    if (parse_digits(&p, &n) < 0 || *p != '\0' || n > 65535 || (n == 0 && !allow_zero))
        return -1;
    *port = (uint16_t)n;
    return 0;
}

/* "HOST:PORT" with HOST an IPv4 literal, "*" or empty (both = every IPv4
 * address), or "[IPv6]". A port is required and 0 is refused: a listener on
 * a port the kernel picks could not be found by anyone. */
int config_parse_address(const char *text, struct config_address *out)
{
    char host[sizeof(out->text)];
    const char *port_text;
    size_t len = strlen(text);

    if (len >= sizeof(out->text))
        return -1;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':' || close == text + 1)
            return -1;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        if (!strchr(host, ':'))
            return -1;      /* "[127.0.0.1]:80": brackets are for IPv6 */
        port_text = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon)
            return -1;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        if (strchr(host, ':'))
            return -1;      /* IPv6 without brackets: where does the port start? */
        if (host[0] == '\0' || strcmp(host, "*") == 0)
            strcpy(host, "0.0.0.0");
        port_text = colon + 1;
    }

    uint16_t port;
    if (parse_port(port_text, false, &port) < 0)
        return -1;
    if (parse_ip(host, port, &out->addr, &out->addr_len) < 0)
        return -1;
    memcpy(out->text, text, len + 1);
    return 0;
}

int config_parse_listen(const char *text, struct config_address *out,
                        enum config_listen_scheme *scheme)
{
    size_t skip = 0;

    *scheme = LISTEN_DEFAULT;
    if (strncasecmp(text, "http://", 7) == 0) {
        *scheme = LISTEN_HTTP;
        skip = 7;
    } else if (strncasecmp(text, "https://", 8) == 0) {
        *scheme = LISTEN_HTTPS;
        skip = 8;
    }
    if (strlen(text) >= sizeof(out->text) || config_parse_address(text + skip, out) < 0)
        return -1;
    memcpy(out->text, text, strlen(text) + 1);
    return 0;
}

int config_https_port(const struct config *cfg)
{
    for (int i = 0; i < cfg->listen_count; i++) {
        if (!config_listen_is_tls(cfg, i))
            continue;
        const struct sockaddr_storage *a = &cfg->listen[i].addr;
        return ntohs(a->ss_family == AF_INET ? ((const struct sockaddr_in *)a)->sin_port
                                             : ((const struct sockaddr_in6 *)a)->sin6_port);
    }
    return 0;
}

static bool address_is_loopback(const struct config_address *a)
{
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->addr;
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->addr;
    if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127;
}

static bool address_equal(const struct config_address *a, const struct config_address *b)
{
    if (a->addr.ss_family != b->addr.ss_family)
        return false;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&a->addr;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&b->addr;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->addr;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->addr;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

void config_format_address(const struct sockaddr_storage *addr, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, ntohs(sin6->sin6_port));
    }
}

/* ------------------------------------------------------------------------
 * Defaults and freeing.
 */

static void expect_set(uint8_t *bits, int status)
{
    bits[status / 8] |= (uint8_t)(1u << (status % 8));
}

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));

    config_parse_address("0.0.0.0:8080", &cfg->listen[0]);
    cfg->listen_count = 1;
    cfg->mode = MODE_PROXY;
    cfg->algorithm = ALG_ROUND_ROBIN;
    cfg->hash_key = HASH_CLIENT_IP;
    cfg->workers = 0;
    cfg->max_connections = 10000;
    cfg->shutdown_grace_ms = 10 * 1000;
    cfg->retries = 2;
    cfg->connect_timeout_ms = 2 * 1000;
    cfg->client_header_timeout_ms = 10 * 1000;
    cfg->client_idle_timeout_ms = 60 * 1000;
    cfg->upstream_response_timeout_ms = 30 * 1000;
    cfg->header_bytes = 16384;
    cfg->header_count = 100;
    cfg->body_bytes = 0;
    cfg->buffer_body = 64 * 1024;
    cfg->buffer_total = 64 * 1024 * 1024;
    cfg->min_body_rate = 1024;
    cfg->client_body_timeout_ms = 60 * 1000;
    cfg->queue_timeout_ms = 5 * 1000;
    cfg->dns_refresh_ms = 30 * 1000;
    cfg->resolvers = strdup("");
    cfg->h2_cleartext = false;
    cfg->h2_max_streams = 100;

    cfg->health_path = strdup("/health");
    cfg->health_interval_ms = 2 * 1000;
    cfg->health_fast_interval_ms = 250;
    cfg->health_timeout_ms = 1 * 1000;
    cfg->health_rise = 2;
    cfg->health_fall = 3;
    for (int status = 200; status < 300; status++)
        expect_set(cfg->health_expect, status);

    cfg->passive_failures = 3;
    cfg->passive_window_ms = 10 * 1000;
    cfg->passive_server_errors = 0;

    config_parse_address("127.0.0.1:9901", &cfg->admin_listen);
    cfg->admin_enabled = true;
    cfg->admin_token = strdup("");

    cfg->alert_webhook = strdup("");
    cfg->alert_command = strdup("");
    cfg->alert_batch_ms = 5 * 1000;

    cfg->log_access = strdup("stdout");
    cfg->log_format = LOG_FORMAT_COMBINED;
    cfg->log_level = LOG_INFO;

    cfg->cache_enabled = false;
    cfg->cache_size_bytes = 64ULL << 20;
    cfg->cache_entries = 0;
    cfg->cache_max_object = 1ULL << 20;
}

static void free_webhooks(struct config *cfg);
static void config_free_email(struct config_email *email)
{
    free(email->server);
    free(email->host);
    free(email->username);
    if (email->password)
        explicit_bzero(email->password, strlen(email->password));
    free(email->password);
    free(email->from);
    for (int i = 0; i < email->to_count; i++)
        free(email->to[i]);
    free(email->ca_file);
    free(email->subject);
}

void config_free(struct config *cfg)
{
    for (int i = 0; i < cfg->app_count; i++) {
        free(cfg->apps[i].host);
        free(cfg->apps[i].ca_file);
        free(cfg->apps[i].sni);
    }
    free(cfg->apps);
    app_tls_free(cfg);
    free(cfg->path);
    free(cfg->hash_key_name);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    for (int i = 0; i < cfg->certificate_count; i++) {
        free(cfg->certificates[i].cert);
        free(cfg->certificates[i].key);
    }
    free(cfg->certificates);
    free(cfg->health_path);
    free(cfg->admin_token);
    free(cfg->alert_webhook);
    free(cfg->alert_command);
    free_webhooks(cfg);
    config_free_email(&cfg->email);
    free(cfg->log_access);
    free(cfg->warnings);
    free(cfg->resolvers);
    free(cfg->source);
    memset(cfg, 0, sizeof(*cfg));
}

/* ------------------------------------------------------------------------
 * The loader: error reporting shared by every key handler.
 */

struct loader {
    struct config *cfg;
    const char *file;           /* the name errors start with */
    char *errors;               /* caller's buffer, may be NULL */
    size_t errors_len, errors_used;
    int count;                  /* errors so far, including any truncated away */
    char label[160];            /* dotted key being loaded: "server.timeouts.connect" */
    char warnings[1024];        /* lines for cfg->warnings, truncated past this */
    size_t warnings_used;
};

static void append_error_text(struct loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void append_error_text(struct loader *ld, const char *fmt, ...)
{
    if (!ld->errors || ld->errors_used + 1 >= ld->errors_len)
        return;
    size_t room = ld->errors_len - ld->errors_used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ld->errors + ld->errors_used, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        ld->errors_used += (size_t)n < room ? (size_t)n : room - 1;
}

static void add_error(struct loader *ld, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error(struct loader *ld, int line, int col, const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    /* Messages quote keys and values, which TOML escapes can fill with
     * newlines; one error must stay one line for tools that read them. */
    for (char *p = message; *p; p++) {
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            *p = '?';
    }
    ld->count++;
    append_error_text(ld, "%s:%d:%d: %s\n", ld->file, line, col, message);
}

/* An error about kv's value, pointing at the value and naming the key. */
static void value_error(struct loader *ld, const struct toml_value *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void value_error(struct loader *ld, const struct toml_value *at, const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    add_error(ld, at->line, at->col, "%s: %s", ld->label, message);
}

/* Something that works but should change: reported, never refused. */
static void add_warning(struct loader *ld, const struct toml_value *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_warning(struct loader *ld, const struct toml_value *at, const char *fmt, ...)
{
    char message[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    size_t room = sizeof(ld->warnings) - ld->warnings_used;
    int n = snprintf(ld->warnings + ld->warnings_used, room, "%s:%d:%d: warning: %s: %s\n",
                     ld->file, at->line, at->col, ld->label, message);
    if (n > 0)
        ld->warnings_used += (size_t)n < room ? (size_t)n : room - 1;
}

static void set_label(struct loader *ld, const char *section, const char *key)
{
    snprintf(ld->label, sizeof(ld->label), "%s%s%s", section, section[0] ? "." : "", key);
}

static void type_error(struct loader *ld, const struct toml_value *v, const char *expected)
{
    value_error(ld, v, "expected %s, got %s", expected, toml_type_name(v->type));
}

/* A string value usable as a C string: TOML allows "\u0000", we do not. */
static const char *string_value(struct loader *ld, const struct toml_value *v)
{
    if (v->type != TOML_STRING) {
        type_error(ld, v, "a string");
        return NULL;
    }
    if (strlen(v->u.string.ptr) != v->u.string.len) {
        value_error(ld, v, "contains a NUL character");
        return NULL;
    }
    return v->u.string.ptr;
}

/* Replaces an owned string; on failure the old value stays. */
static void store_string(struct loader *ld, const struct toml_value *at, char **slot,
                         const char *text)
{
    char *copy = strdup(text);
    if (!copy) {
        value_error(ld, at, "out of memory");
        return;
    }
    free(*slot);
    *slot = copy;
}

/* Relative paths are taken from the config file's directory, as nginx does,
 * so a config works whatever directory sluice was started from. */
static void store_path(struct loader *ld, const struct toml_value *at, char **slot,
                       const char *path)
{
    const char *slash = strrchr(ld->file, '/');
    char *joined;

    if (path[0] == '/' || !slash) {
        store_string(ld, at, slot, path);
        return;
    }
    if (asprintf(&joined, "%.*s/%s", (int)(slash - ld->file), ld->file, path) < 0) {
        value_error(ld, at, "out of memory");
        return;
    }
    free(*slot);
    *slot = joined;
}

static const struct toml_keyval *table_get(const struct toml_value *table, const char *key)
{
    return table && table->type == TOML_TABLE ? toml_table_get(table, key) : NULL;
}

static const struct toml_keyval *later_of(const struct toml_keyval *a,
                                          const struct toml_keyval *b)
{
    return b->line > a->line || (b->line == a->line && b->col > a->col) ? b : a;
}

/* ------------------------------------------------------------------------
 * Key tables: what each TOML table may contain.
 */

enum field_kind {
    FK_BOOL,
    FK_INT,         /* TOML integer, min..max */
    FK_DURATION,    /* integer of ms or "2s"; stored as ms */
    FK_SIZE,        /* integer of bytes or "64MB" */
    FK_STRING,      /* owned char *, optionally checked */
    FK_ENUM,        /* one of names[]; stored as its index */
    FK_TABLE,       /* a sub-table with its own key table */
    FK_CUSTOM,      /* a shape of its own: handler */
};

struct field;
struct section;
typedef void field_handler(struct loader *ld, const struct field *f,
                           const struct toml_keyval *kv, void *base);
/* Returns why text is refused, or NULL when it is fine. */
typedef const char *string_check(const char *text);

struct field {
    const char *key;
    enum field_kind kind;
    size_t offset;                  /* into the section's struct */
    size_t width;                   /* of the member: 4 or 8 for numbers */
    int64_t min, max;
    const char *const *names;       /* FK_ENUM, NULL-terminated */
    string_check *check;            /* FK_STRING, optional */
    field_handler *handler;         /* FK_CUSTOM */
    const struct section *table;    /* FK_TABLE */
};

struct section {
    const char *path;               /* "server.timeouts"; "" for the top level */
    const char *title;              /* "[server.timeouts]", for unknown-key messages */
    const struct field *fields;     /* ends with a NULL key */
    void (*finish)(struct loader *ld, const struct toml_value *table, void *base);
};

static void load_section(struct loader *ld, const struct toml_value *table,
                         const struct section *sec, void *base);

/* Every number lands in an int, uint32_t, enum, int64_t or uint64_t member;
 * the range checks already guarantee the value fits, so only width matters. */
static void store_number(void *slot, size_t width, int64_t value)
{
    if (width == sizeof(int32_t)) {
        int32_t v = (int32_t)value;
        memcpy(slot, &v, sizeof(v));
    } else {
        memcpy(slot, &value, sizeof(value));
    }
}

_Static_assert(sizeof(enum config_mode) == sizeof(int32_t), "enums are stored as 32 bits");
_Static_assert(sizeof(enum config_algorithm) == sizeof(int32_t), "enums are stored as 32 bits");
_Static_assert(sizeof(enum config_log_format) == sizeof(int32_t), "enums are stored as 32 bits");
_Static_assert(sizeof(enum config_log_level) == sizeof(int32_t), "enums are stored as 32 bits");

/* The value of an FK_INT, FK_DURATION or FK_SIZE key, before range checks. */
static int number_value(struct loader *ld, const struct field *f, const struct toml_value *v,
                        int64_t *out)
{
    uint64_t size;

    if (v->type == TOML_INTEGER) {
        *out = v->u.integer;
        return 0;
    }
    if (f->kind == FK_INT || v->type != TOML_STRING) {
        type_error(ld, v, f->kind == FK_INT ? "an integer"
                          : f->kind == FK_DURATION ? "a duration (\"2s\" or integer ms)"
                                                   : "a size (\"64MB\" or integer bytes)");
        return -1;
    }
    const char *text = string_value(ld, v);
    if (!text)
        return -1;
    if (f->kind == FK_DURATION && config_parse_duration(text, out) == 0)
        return 0;
    if (f->kind == FK_SIZE && config_parse_size(text, &size) == 0) {
        *out = (int64_t)size;
        return 0;
    }
    if (f->kind == FK_DURATION)
        value_error(ld, v, "invalid duration \"%s\": a whole number with ms, s, m or h, "
                    "e.g. \"500ms\" or \"2s\"", text);
    else
        value_error(ld, v, "invalid size \"%s\": a whole number with B, KB, MB or GB, "
                    "e.g. \"64MB\"", text);
    return -1;
}

static void load_number(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                        void *base)
{
    const char *unit = f->kind == FK_DURATION ? "ms" : f->kind == FK_SIZE ? " bytes" : "";
    int64_t n;

    if (number_value(ld, f, kv->value, &n) < 0)
        return;
    if (n < f->min || n > f->max) {
        if (f->max == INT64_MAX)
            value_error(ld, kv->value, "%lld%s is out of range (at least %lld%s)",
                        (long long)n, unit, (long long)f->min, unit);
        else
            value_error(ld, kv->value, "%lld%s is out of range (%lld..%lld%s)", (long long)n,
                        unit, (long long)f->min, (long long)f->max, unit);
        return;
    }
    store_number((char *)base + f->offset, f->width, n);
}

static void list_names(const char *const *names, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; names[i] && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", names[i]);
}

static void load_enum(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                      void *base)
{
    const char *text = string_value(ld, kv->value);
    char allowed[256];

    if (!text)
        return;
    for (int i = 0; f->names[i]; i++) {
        if (strcmp(text, f->names[i]) == 0) {
            store_number((char *)base + f->offset, f->width, i);
            return;
        }
    }
    list_names(f->names, allowed, sizeof(allowed));
    value_error(ld, kv->value, "unknown value \"%s\" (expected one of: %s)", text, allowed);
}

static void load_string(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                        void *base)
{
    const char *text = string_value(ld, kv->value);
    const char *why;

    if (!text)
        return;
    if (f->check && (why = f->check(text)) != NULL) {
        value_error(ld, kv->value, "\"%s\" %s", text, why);
        return;
    }
    store_string(ld, kv->value, (char **)((char *)base + f->offset), text);
}

static void load_field(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                       void *base)
{
    switch (f->kind) {
    case FK_BOOL:
        if (kv->value->type != TOML_BOOL)
            type_error(ld, kv->value, "a boolean");
        else
            *(bool *)((char *)base + f->offset) = kv->value->u.boolean;
        break;
    case FK_INT:
    case FK_DURATION:
    case FK_SIZE:
        load_number(ld, f, kv, base);
        break;
    case FK_STRING:
        load_string(ld, f, kv, base);
        break;
    case FK_ENUM:
        load_enum(ld, f, kv, base);
        break;
    case FK_TABLE:
        if (kv->value->type != TOML_TABLE)
            type_error(ld, kv->value, "a table");
        else
            load_section(ld, kv->value, f->table, base);
        break;
    case FK_CUSTOM:
        f->handler(ld, f, kv, base);
        break;
    }
}

static const struct field *find_field(const struct section *sec, const struct toml_keyval *kv)
{
    for (const struct field *f = sec->fields; f->key; f++) {
        if (kv->key_len == strlen(f->key) && memcmp(kv->key, f->key, kv->key_len) == 0)
            return f;
    }
    return NULL;
}

static void unknown_key(struct loader *ld, const struct section *sec,
                        const struct toml_keyval *kv)
{
    char allowed[512];
    size_t used = 0;

    allowed[0] = '\0';
    for (const struct field *f = sec->fields; f->key && used < sizeof(allowed); f++)
        used += (size_t)snprintf(allowed + used, sizeof(allowed) - used, "%s%s",
                                 f == sec->fields ? "" : ", ", f->key);
    add_error(ld, kv->line, kv->col, "unknown key \"%s\" %s (expected one of: %s)", kv->key,
              sec->title, allowed);
}

/* Keys are handled in document order, so errors come out in file order,
 * except that a table's cross-key rules (finish) report after its keys. */
static void load_section(struct loader *ld, const struct toml_value *table,
                         const struct section *sec, void *base)
{
    for (size_t i = 0; i < table->u.table.len; i++) {
        const struct toml_keyval *kv = &table->u.table.items[i];
        const struct field *f = find_field(sec, kv);
        if (!f) {
            unknown_key(ld, sec, kv);
            continue;
        }
        set_label(ld, sec->path, f->key);
        load_field(ld, f, kv, base);
    }
    if (sec->finish)
        sec->finish(ld, table, base);
}

/* ------------------------------------------------------------------------
 * String checks.
 */

static bool is_tchar(char c)
{
    /* RFC 9110 section 5.6.2: the characters of a token (a header name). */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool all_visible_ascii(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p <= ' ' || *p >= 0x7f)
            return false;
    }
    return true;
}

/* The path goes into a request line as it is: no byte that would end or
 * corrupt it (RFC 9112 section 3). */
static const char *check_health_path(const char *text)
{
    if (text[0] != '/')
        return "must start with '/'";
    if (!all_visible_ascii(text))
        return "must not contain spaces, control or non-ASCII characters";
    return NULL;
}

static const char *check_webhook(const char *text)
{
    if (text[0] == '\0')
        return NULL;
    if (!all_visible_ascii(text))
        return "must not contain spaces, control or non-ASCII characters";
    /* The alert dispatcher's own parser (url.h) decides, so that what
     * --check accepts is what the dispatcher can use (a port of 99999 is
     * not). */
    static _Thread_local char why[200];
    struct url url;
    char err[160];
    if (url_parse(text, &url, err, sizeof(err)) < 0) {
        snprintf(why, sizeof(why), "is not usable: %s", err);
        return why;
    }
    return NULL;
}

/* The token travels in an Authorization header. */
static const char *check_token(const char *text)
{
    return all_visible_ascii(text) ? NULL
                                   : "must not contain spaces, control or non-ASCII characters";
}

/* ------------------------------------------------------------------------
 * [server]
 */

/* listen = "ADDR" or ["ADDR", ...]; the list replaces the default. */
static void load_listen(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                        void *base)
{
    struct config *cfg = base;
    const struct toml_value *v = kv->value;
    const struct toml_value *const *items = (const struct toml_value *const *)&v;
    size_t n = 1;
    struct config_address parsed[CONFIG_MAX_LISTEN] = {0};  /* a refused entry never compares equal */
    enum config_listen_scheme schemes[CONFIG_MAX_LISTEN] = {0};
    int errors_before = ld->count;

    (void)f;
    /* a single string is handled as a list of one: items points at v */
    if (v->type == TOML_ARRAY) {
        items = (const struct toml_value *const *)v->u.array.items;
        n = v->u.array.len;
        if (n == 0 || n > CONFIG_MAX_LISTEN) {
            value_error(ld, v, "needs 1 to %d addresses, got %zu", CONFIG_MAX_LISTEN, n);
            return;
        }
    } else if (v->type != TOML_STRING) {
        type_error(ld, v, "an address string or a list of them");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *text = string_value(ld, items[i]);
        if (!text)
            continue;
        if (config_parse_listen(text, &parsed[i], &schemes[i]) < 0) {
            value_error(ld, items[i], "invalid address \"%s\" (expected IPv4:PORT, "
                        "[IPv6]:PORT, *:PORT or :PORT, optionally after http:// or https://)", text);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (address_equal(&parsed[i], &parsed[j]))
                value_error(ld, items[i], "\"%s\" is listed twice", text);
        }
    }
    if (ld->count != errors_before)
        return;
    memcpy(cfg->listen, parsed, n * sizeof(parsed[0]));
    memcpy(cfg->listen_scheme, schemes, n * sizeof(schemes[0]));
    cfg->listen_count = (int)n;
}

static void load_hash_key(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                          void *base)
{
    struct config *cfg = base;
    const char *text = string_value(ld, kv->value);
    const char *name = NULL;
    enum config_hash_key key;

    (void)f;
    if (!text)
        return;
    if (strcmp(text, "client_ip") == 0) {
        key = HASH_CLIENT_IP;
    } else if (strcmp(text, "uri") == 0) {
        key = HASH_URI;
    } else if (strncmp(text, "header:", 7) == 0) {
        key = HASH_HEADER;
        name = text + 7;
    } else if (strncmp(text, "cookie:", 7) == 0) {
        key = HASH_COOKIE;
        name = text + 7;
    } else {
        value_error(ld, kv->value, "unknown value \"%s\" (expected one of: client_ip, uri, "
                    "header:NAME, cookie:NAME)", text);
        return;
    }
    if (name) {
        bool token = name[0] != '\0';
        for (const char *p = name; *p; p++)
            token = token && is_tchar(*p);
        if (!token) {
            value_error(ld, kv->value, "\"%s\": NAME must be a non-empty header or cookie "
                        "name (letters, digits, !#$%%&'*+-.^_`|~)", text);
            return;
        }
        store_string(ld, kv->value, &cfg->hash_key_name, name);
        /* Header names compare case-insensitively: the proxy matches the
         * lower-case form. Cookie names are case-sensitive (RFC 6265). */
        if (key == HASH_HEADER && cfg->hash_key_name)
            for (char *p = cfg->hash_key_name; *p; p++)
                *p = (char)tolower((unsigned char)*p);
    } else {
        free(cfg->hash_key_name);
        cfg->hash_key_name = NULL;
    }
    cfg->hash_key = key;
}

/* Certificate and key must be readable now: finding out at the first
 * handshake, or not at all under --check, helps nobody. */
static void load_readable_file(struct loader *ld, const struct field *f,
                               const struct toml_keyval *kv, void *base)
{
    char **slot = (char **)((char *)base + f->offset);
    const char *text = string_value(ld, kv->value);

    if (!text)
        return;
    if (text[0] == '\0') {
        value_error(ld, kv->value, "must name a file");
        return;
    }
    store_path(ld, kv->value, slot, text);
    if (*slot && access(*slot, R_OK) != 0)
        value_error(ld, kv->value, "cannot read \"%s\": %s", *slot, strerror(errno));
}

/* A certificate table must name both files; where it does is kept for
 * the errors OpenSSL's reading of them may give later (tlsserver.c). */
static void note_certificate(struct loader *ld, const struct toml_value *table, const char *section,
                             struct config_certificate *c)
{
    const struct toml_keyval *cert = table_get(table, "cert");
    const struct toml_keyval *key = table_get(table, "key");

    snprintf(ld->label, sizeof(ld->label), "%s", section);
    if (!cert)
        value_error(ld, table, "cert is required (the certificate chain, PEM)");
    else
        c->cert_line = cert->value->line, c->cert_col = cert->value->col;
    if (!key)
        value_error(ld, table, "key is required (the private key, PEM)");
    else
        c->key_line = key->value->line, c->key_col = key->value->col;
}

static void finish_certificate(struct loader *ld, const struct toml_value *table, void *base)
{
    note_certificate(ld, table, "server.tls.certificates", base);
}

/* Slot 0 is [server.tls]'s own pair, filled when that table is finished. */
static int reserve_certificates(struct loader *ld, struct config *cfg, size_t count,
                                const struct toml_value *at)
{
    if (cfg->certificates)
        return 0;
    cfg->certificates = calloc(count, sizeof(*cfg->certificates));
    if (!cfg->certificates) {
        value_error(ld, at, "out of memory");
        return -1;
    }
    cfg->certificate_count = 1;
    return 0;
}

static void finish_tls(struct loader *ld, const struct toml_value *table, void *base)
{
    struct config *cfg = base;

    if (reserve_certificates(ld, cfg, 1, table) < 0)
        return;
    struct config_certificate *first = &cfg->certificates[0];
    note_certificate(ld, table, "server.tls", first);
    if (cfg->tls_cert && !(first->cert = strdup(cfg->tls_cert)))
        value_error(ld, table, "out of memory");
    if (cfg->tls_key && !(first->key = strdup(cfg->tls_key)))
        value_error(ld, table, "out of memory");
}

/* "https://ADDR" needs a certificate; a redirect to HTTPS needs somewhere
 * to send clients. */
static void finish_server_https(struct loader *ld, const struct toml_value *table, void *base)
{
    const struct config *cfg = base;
    const struct toml_keyval *listen = table_get(table, "listen");
    const struct toml_keyval *redirect = table_get(table, "redirect_https");

    set_label(ld, "server", "listen");
    for (int i = 0; listen && i < cfg->listen_count; i++) {
        if (cfg->listen_scheme[i] != LISTEN_HTTPS || cfg->tls_cert)
            continue;
        const struct toml_value *v = listen->value;
        const struct toml_value *at = v->type == TOML_ARRAY ? v->u.array.items[i] : v;
        value_error(ld, at, "\"%s\" is HTTPS: it needs [server.tls] (cert and key)",
                    cfg->listen[i].text);
    }
    if (redirect && cfg->redirect_https && config_https_port(cfg) == 0) {
        set_label(ld, "server", "redirect_https");
        value_error(ld, redirect->value, "there is no HTTPS listener to redirect to (add "
                    "[server.tls], and a listen entry that is not http://)");
    }
}

#define BASE struct config
#define MEMBER_WIDTH(m) sizeof(((BASE *)0)->m)
#define KEY_BOOL(k, m) {.key = k, .kind = FK_BOOL, .offset = offsetof(BASE, m)}
#define KEY_NUMBER(kind_, k, m, lo, hi)                                                  \
    {.key = k, .kind = kind_, .offset = offsetof(BASE, m), .width = MEMBER_WIDTH(m),     \
     .min = lo, .max = hi}
#define KEY_INT(k, m, lo, hi) KEY_NUMBER(FK_INT, k, m, lo, hi)
#define KEY_DURATION(k, m, lo, hi) KEY_NUMBER(FK_DURATION, k, m, lo, hi)
#define KEY_SIZE(k, m, lo, hi) KEY_NUMBER(FK_SIZE, k, m, lo, hi)
#define KEY_STRING(k, m, chk)                                                            \
    {.key = k, .kind = FK_STRING, .offset = offsetof(BASE, m), .check = chk}
#define KEY_ENUM(k, m, values)                                                           \
    {.key = k, .kind = FK_ENUM, .offset = offsetof(BASE, m), .width = MEMBER_WIDTH(m),   \
     .names = values}
#define KEY_TABLE(k, sec) {.key = k, .kind = FK_TABLE, .table = &sec}
#define KEY_CUSTOM(k, m, fn) {.key = k, .kind = FK_CUSTOM, .offset = offsetof(BASE, m), .handler = fn}

/* Indexed by the enum values of config.h. */
static const char *const mode_names[] = {"proxy", "redirect", NULL};
static const char *const algorithm_names[] = {"round_robin", "least_conn", "random_two", "hash",
                                              NULL};
static const char *const log_format_names[] = {"combined", "json", NULL};
static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};

static const struct section timeouts_section = {
    "server.timeouts", "in [server.timeouts]",
    (const struct field[]){
        KEY_DURATION("connect", connect_timeout_ms, 1, DAY_MS),
        KEY_DURATION("client_header", client_header_timeout_ms, 1, DAY_MS),
        KEY_DURATION("client_idle", client_idle_timeout_ms, 1, DAY_MS),
        KEY_DURATION("upstream_response", upstream_response_timeout_ms, 1, DAY_MS),
        KEY_DURATION("client_body", client_body_timeout_ms, 1, DAY_MS),
        KEY_DURATION("queue", queue_timeout_ms, 0, DAY_MS),
        {0},
    },
    NULL,
};

/* One resolver: "IP:PORT", "[IPv6]:PORT", or a bare address on port 53.
 * Written back in the form c-ares reads, "1.2.3.4:53" or "[::1]:53". */
static int parse_resolver(const char *text, char *out, size_t out_len)
{
    struct config_address a;

    if (text[0] == '*' || text[0] == ':' || strncmp(text, "0.0.0.0", 7) == 0)
        return -1;
    if (config_parse_address(text, &a) < 0 && parse_ip(text, 53, &a.addr, &a.addr_len) < 0)
        return -1;
    config_format_address(&a.addr, out, out_len);
    return 0;
}

#define RESOLVERS_MAX 8

/* resolvers = ["IP:PORT", ...]: DNS servers for host names; [] = the
 * system's. Also accepted in [server.limits], where early example files
 * put it. */
static void load_resolvers(struct loader *ld, const struct field *f,
                           const struct toml_keyval *kv, void *base)
{
    struct config *cfg = base;
    const struct toml_value *v = kv->value;
    char csv[RESOLVERS_MAX * 56] = "";
    size_t used = 0;

    (void)f;
    if (v->type != TOML_ARRAY) {
        type_error(ld, v, "a list of \"IP:PORT\" strings");
        return;
    }
    if (v->u.array.len > RESOLVERS_MAX) {
        value_error(ld, v, "at most %d resolvers, got %zu", RESOLVERS_MAX, v->u.array.len);
        return;
    }
    for (size_t i = 0; i < v->u.array.len; i++) {
        const struct toml_value *item = v->u.array.items[i];
        const char *text = string_value(ld, item);
        char one[56];
        if (!text)
            return;
        if (parse_resolver(text, one, sizeof(one)) < 0) {
            value_error(ld, item, "invalid resolver \"%s\" (expected IPv4:PORT, [IPv6]:PORT "
                        "or an address alone for port 53)", text);
            return;
        }
        used += (size_t)snprintf(csv + used, sizeof(csv) - used, "%s%s", i ? "," : "", one);
    }
    store_string(ld, v, &cfg->resolvers, csv);
}

/* A whole buffered body is held in one block: past 64 MB, stream it. */
#define BUFFER_BODY_MAX (64ull << 20)

static void finish_limits(struct loader *ld, const struct toml_value *table, void *base)
{
    const struct config *cfg = base;
    const struct toml_keyval *at = table_get(table, "buffer_total");
    if (cfg->buffer_total >= cfg->buffer_body)
        return;
    if (!at)
        at = table_get(table, "buffer_body");
    set_label(ld, "server.limits", at->key);
    value_error(ld, at->value, "buffer_total (%llu bytes) is smaller than buffer_body (%llu bytes)",
                (unsigned long long)cfg->buffer_total, (unsigned long long)cfg->buffer_body);
}

static const struct section limits_section = {
    "server.limits", "in [server.limits]",
    (const struct field[]){
        KEY_SIZE("header_bytes", header_bytes, HEADER_BYTES_MIN, HEADER_BYTES_MAX),
        KEY_INT("headers", header_count, 1, 10000),
        KEY_SIZE("body_bytes", body_bytes, 0, INT64_MAX),
        KEY_SIZE("buffer_body", buffer_body, 0, BUFFER_BODY_MAX),
        KEY_SIZE("buffer_total", buffer_total, 0, INT64_MAX),
        KEY_SIZE("min_body_rate", min_body_rate, 0, INT64_MAX),
        KEY_DURATION("dns_refresh", dns_refresh_ms, DNS_REFRESH_MIN_MS, DAY_MS),
        KEY_CUSTOM("resolvers", resolvers, load_resolvers),
        {0},
    },
    finish_limits,
};

#undef BASE
#define BASE struct config_certificate

static const struct section certificate_section = {
    "server.tls.certificates", "in [[server.tls.certificates]]",
    (const struct field[]){
        KEY_CUSTOM("cert", cert, load_readable_file),
        KEY_CUSTOM("key", key, load_readable_file),
        {0},
    },
    finish_certificate,
};

#undef BASE
#define BASE struct config

static void load_certificates(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                              void *base)
{
    struct config *cfg = base;
    const struct toml_value *v = kv->value;

    (void)f;
    if (v->type != TOML_ARRAY) {
        type_error(ld, v, "an array of tables ([[server.tls.certificates]])");
        return;
    }
    if (v->u.array.len + 1 > CONFIG_MAX_CERTIFICATES) {
        value_error(ld, v, "%zu certificates: at most %d in all are supported", v->u.array.len + 1,
                    CONFIG_MAX_CERTIFICATES);
        return;
    }
    if (reserve_certificates(ld, cfg, v->u.array.len + 1, v) < 0)
        return;
    for (size_t i = 0; i < v->u.array.len; i++) {
        const struct toml_value *table = v->u.array.items[i];
        if (table->type != TOML_TABLE)
            type_error(ld, table, "a table");
        else
            load_section(ld, table, &certificate_section, &cfg->certificates[cfg->certificate_count++]);
    }
}

static const struct section tls_section = {
    "server.tls", "in [server.tls]",
    (const struct field[]){
        KEY_CUSTOM("cert", tls_cert, load_readable_file),
        KEY_CUSTOM("key", tls_key, load_readable_file),
        KEY_CUSTOM("certificates", certificates, load_certificates),
        {0},
    },
    finish_tls,
};

static const struct section http2_section = {
    "server.http2", "in [server.http2]",
    (const struct field[]){
        KEY_BOOL("cleartext", h2_cleartext),
        KEY_INT("max_concurrent_streams", h2_max_streams, 1, 10000),
        {0},
    },
    NULL,
};

/* dns_refresh and resolvers may sit in [server] or [server.limits]; in
 * both, one would silently win. */
static void finish_server_dns(struct loader *ld, const struct toml_value *table, void *base)
{
    static const char *const keys[] = {"dns_refresh", "resolvers"};
    const struct toml_keyval *limits = table_get(table, "limits");

    (void)base;
    for (size_t i = 0; limits && i < sizeof(keys) / sizeof(keys[0]); i++) {
        const struct toml_keyval *here = table_get(table, keys[i]);
        const struct toml_keyval *there = table_get(limits->value, keys[i]);
        if (!here || !there)
            continue;
        const struct toml_keyval *second = later_of(here, there);
        add_error(ld, second->line, second->col, "server: %s is set in both [server] and "
                  "[server.limits]: give it once", keys[i]);
    }
}

static void finish_server(struct loader *ld, const struct toml_value *table, void *base)
{
    finish_server_https(ld, table, base);
    finish_server_dns(ld, table, base);
}

static const struct section server_section = {
    "server", "in [server]",
    (const struct field[]){
        KEY_CUSTOM("listen", listen, load_listen),
        KEY_ENUM("mode", mode, mode_names),
        KEY_ENUM("algorithm", algorithm, algorithm_names),
        KEY_CUSTOM("hash_key", hash_key, load_hash_key),
        KEY_INT("workers", workers, 0, 1024),
        KEY_INT("max_connections", max_connections, 1, 10000000),
        KEY_DURATION("shutdown_grace", shutdown_grace_ms, 0, DAY_MS),
        KEY_INT("retries", retries, 0, 100),
        KEY_TABLE("timeouts", timeouts_section),
        KEY_TABLE("limits", limits_section),
        KEY_TABLE("tls", tls_section),
        KEY_DURATION("dns_refresh", dns_refresh_ms, DNS_REFRESH_MIN_MS, DAY_MS),
        KEY_CUSTOM("resolvers", resolvers, load_resolvers),
        KEY_TABLE("http2", http2_section),
        KEY_BOOL("redirect_https", redirect_https),
        {0},
    },
    finish_server,
};

/* ------------------------------------------------------------------------
 * [health], [passive], [admin], [alerts], [log], [cache]
 */

static int expect_item(struct loader *ld, const struct toml_value *v, uint8_t *bits)
{
    if (v->type == TOML_INTEGER) {
        if (v->u.integer < 100 || v->u.integer > 599) {
            value_error(ld, v, "status %lld is out of range (100..599)", (long long)v->u.integer);
            return -1;
        }
        expect_set(bits, (int)v->u.integer);
        return 0;
    }
    if (v->type != TOML_STRING) {
        type_error(ld, v, "a status class like \"2xx\" or a status code");
        return -1;
    }
    const char *text = string_value(ld, v);
    if (!text)
        return -1;
    if (strlen(text) != 3 || text[0] < '1' || text[0] > '5' || strcasecmp(text + 1, "xx") != 0) {
        value_error(ld, v, "invalid status class \"%s\" (expected 1xx, 2xx, 3xx, 4xx or 5xx, "
                    "or an integer code)", text);
        return -1;
    }
    for (int status = (text[0] - '0') * 100, end = status + 100; status < end; status++)
        expect_set(bits, status);
    return 0;
}

/* expect = "2xx" | 204 | ["2xx", 301, 302]: the union of all items. */
static void load_expect(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                        void *base)
{
    struct config *cfg = base;
    const struct toml_value *v = kv->value;
    uint8_t bits[sizeof(cfg->health_expect)] = {0};
    int failed = 0;

    (void)f;
    if (v->type != TOML_ARRAY) {
        failed = expect_item(ld, v, bits);
    } else if (v->u.array.len == 0) {
        value_error(ld, v, "the list is empty: no response could pass");
        failed = -1;
    } else {
        for (size_t i = 0; i < v->u.array.len; i++)
            failed |= expect_item(ld, v->u.array.items[i], bits);
    }
    if (failed == 0)
        memcpy(cfg->health_expect, bits, sizeof(bits));
}

static void load_admin_listen(struct loader *ld, const struct field *f,
                              const struct toml_keyval *kv, void *base)
{
    struct config *cfg = base;
    const char *text = string_value(ld, kv->value);

    (void)f;
    if (!text)
        return;
    if (text[0] == '\0') {
        cfg->admin_enabled = false;
        return;
    }
    if (config_parse_address(text, &cfg->admin_listen) < 0) {
        value_error(ld, kv->value, "invalid address \"%s\" (expected IPv4:PORT, [IPv6]:PORT, "
                    "*:PORT or :PORT, or \"\" to turn the admin API off)", text);
        return;
    }
    cfg->admin_enabled = true;
}

/* The admin API can drain every application: off loopback it needs a
 * token, or anyone who can reach the port can take the service down. */
static void finish_admin(struct loader *ld, const struct toml_value *table, void *base)
{
    struct config *cfg = base;
    const struct toml_keyval *listen = table_get(table, "listen");

    if (listen && cfg->admin_enabled && !address_is_loopback(&cfg->admin_listen) &&
        cfg->admin_token && cfg->admin_token[0] == '\0') {
        set_label(ld, "admin", "listen");
        value_error(ld, listen->value, "\"%s\" is not a loopback address: set admin.token",
                    cfg->admin_listen.text);
    }
}

static void load_access_log(struct loader *ld, const struct field *f,
                            const struct toml_keyval *kv, void *base)
{
    struct config *cfg = base;
    const char *text = string_value(ld, kv->value);

    (void)f;
    if (!text)
        return;
    if (text[0] == '\0')
        value_error(ld, kv->value, "is empty (use \"off\" to turn the access log off)");
    else if (strcmp(text, "stdout") == 0 || strcmp(text, "off") == 0)
        store_string(ld, kv->value, &cfg->log_access, text);
    else
        store_path(ld, kv->value, &cfg->log_access, text);
}

static void finish_cache(struct loader *ld, const struct toml_value *table, void *base)
{
    struct config *cfg = base;
    const struct toml_keyval *at = table_get(table, "max_object");

    if (cfg->cache_max_object <= cfg->cache_size_bytes)
        return;
    if (!at)
        at = table_get(table, "size");
    set_label(ld, "cache", at ? at->key : "max_object");
    value_error(ld, at ? at->value : table, "max_object (%llu bytes) is larger than size "
                "(%llu bytes)", (unsigned long long)cfg->cache_max_object,
                (unsigned long long)cfg->cache_size_bytes);
}

static const struct section health_section = {
    "health", "in [health]",
    (const struct field[]){
        KEY_STRING("path", health_path, check_health_path),
        KEY_DURATION("interval", health_interval_ms, 1, DAY_MS),
        KEY_DURATION("fast_interval", health_fast_interval_ms, 1, DAY_MS),
        KEY_DURATION("timeout", health_timeout_ms, 1, DAY_MS),
        KEY_INT("rise", health_rise, 1, 1000),
        KEY_INT("fall", health_fall, 1, 1000),
        KEY_CUSTOM("expect", health_expect, load_expect),
        {0},
    },
    NULL,
};

static void finish_passive(struct loader *ld, const struct toml_value *table, void *base)
{
    const struct toml_keyval *old = table_get(table, "connect_failures");

    (void)base;
    if (!old)
        return;
    set_label(ld, "passive", "connect_failures");
    if (table_get(table, "failures"))
        value_error(ld, old->value, "is the old name of failures; set only failures");
    else
        add_warning(ld, old->value, "is now called failures (it also counts connections closed "
                    "or reset before any response byte, and response timeouts); rename it");
}

static const struct section passive_section = {
    "passive", "in [passive]",
    (const struct field[]){
        KEY_INT("failures", passive_failures, 0, 1000),
        KEY_DURATION("window", passive_window_ms, 1, DAY_MS),
        KEY_INT("server_errors", passive_server_errors, 0, 1000),
        /* the name before failures counted more than connect errors */
        KEY_INT("connect_failures", passive_failures, 0, 1000),
        {0},
    },
    finish_passive,
};

static const struct section admin_section = {
    "admin", "in [admin]",
    (const struct field[]){
        KEY_CUSTOM("listen", admin_listen, load_admin_listen),
        KEY_STRING("token", admin_token, check_token),
        {0},
    },
    finish_admin,
};

/* ------------------------------------------------------------------------
 * [[alerts.webhooks]]: each receiver in its own format.
 */

#undef BASE
#define BASE struct config_webhook

static const char *const webhook_format_names[] = {"json", "slack", "pagerduty", "form", NULL};

/* Reads every ${NAME} in text from the environment, so that secrets stay
 * out of the file. A variable that is not set is an error now rather than
 * an empty header at the first outage. Returns a malloc'd string or NULL
 * with why. */
static char *expand_environment(const char *text, char *why, size_t why_len)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    const char *p = text;
    while (*p) {
        if (p[0] != '$' || p[1] != '{') {
            fputc(*p++, f);
            continue;
        }
        const char *name = p + 2;
        size_t n = 0;
        while (name[n] == '_' || isalnum((unsigned char)name[n]))
            n++;
        if (name[n] != '}' || n == 0 || isdigit((unsigned char)name[0])) {
            snprintf(why, why_len, "\"${\" must be followed by a variable name and \"}\"");
            break;
        }
        char var[128];
        if (n >= sizeof(var)) {
            /* Cut short, it would name another variable. */
            snprintf(why, why_len, "the environment variable name %.20s... is longer than %zu characters",
                     name, sizeof(var) - 1);
            break;
        }
        snprintf(var, sizeof(var), "%.*s", (int)n, name);
        const char *value = getenv(var);
        if (!value) {
            snprintf(why, why_len, "the environment variable %s is not set", var);
            break;
        }
        fputs(value, f);
        p = name + n + 1;
    }
    fclose(f);
    if (*p) {
        free(out);
        return NULL;
    }
    return out;
}

/* A value that goes into a request head as it is: RFC 9110 section 5.5
 * allows no control character but HTAB in a field value, and CR or LF
 * would start a header of the environment's choosing. */
static bool header_value_ok(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if ((*p < ' ' && *p != '\t') || *p == 0x7f)
            return false;
    return true;
}

static bool header_name_ok(const char *name)
{
    static const char *const framing[] = {"host", "content-length", "content-type",
                                          "transfer-encoding", "connection", NULL};
    if (!name[0])
        return false;
    for (const char *p = name; *p; p++)
        if (!is_tchar(*p))
            return false;
    for (int i = 0; framing[i]; i++)
        if (strcasecmp(name, framing[i]) == 0)
            return false;
    return true;
}

/* A string with ${VAR} read from the environment, stored in *slot. */
static void store_expanded(struct loader *ld, const struct toml_value *v, char **slot)
{
    char why[200];
    const char *text = string_value(ld, v);
    if (!text)
        return;
    char *expanded = expand_environment(text, why, sizeof(why));
    if (!expanded) {
        value_error(ld, v, "%s", why);
        return;
    }
    if (!header_value_ok(expanded)) {
        value_error(ld, v, "must not contain CR, LF or other control characters (after reading "
                    "the environment)");
        free(expanded);
        return;
    }
    free(*slot);
    *slot = expanded;
}

static const char *check_template(const char *text)
{
    static _Thread_local char why[300];
    size_t at;
    return template_check(text, &at, why, sizeof(why)) < 0 ? why : NULL;
}

/* A header's template: no line break may reach the message's head. */
static const char *check_subject(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < ' ' || *p == 0x7f)
            return "must not contain control characters (it becomes the Subject: line)";
    return check_template(text);
}

/* headers = {Name = "value"} or fields = {name = "template"}: a table of
 * strings, kept in file order. */
static void load_pairs(struct loader *ld, const struct toml_keyval *kv, struct config_pair **out,
                       int *count, bool headers)
{
    const struct toml_value *v = kv->value;
    if (v->type != TOML_TABLE) {
        type_error(ld, v, "a table of strings, e.g. { Name = \"value\" }");
        return;
    }
    if (v->u.table.len > CONFIG_PAIRS_MAX) {
        value_error(ld, v, "at most %d entries, got %zu", CONFIG_PAIRS_MAX, v->u.table.len);
        return;
    }
    *out = calloc(v->u.table.len ? v->u.table.len : 1, sizeof(**out));
    if (!*out) {
        value_error(ld, v, "out of memory");
        return;
    }
    for (size_t i = 0; i < v->u.table.len; i++) {
        const struct toml_keyval *item = &v->u.table.items[i];
        struct config_pair *pair = &(*out)[*count];
        if (strlen(item->key) != item->key_len || (headers && !header_name_ok(item->key))) {
            add_error(ld, item->line, item->col, "%s: \"%s\" is not a header name sluice lets "
                      "you set (a token; not Host, Content-Length, Content-Type, "
                      "Transfer-Encoding or Connection)", ld->label, item->key);
            continue;
        }
        if (headers) {
            store_expanded(ld, item->value, &pair->value);
        } else {
            const char *text = string_value(ld, item->value);
            const char *why = text ? check_template(text) : NULL;
            if (why)
                value_error(ld, item->value, "%s", why);
            else if (text)
                store_string(ld, item->value, &pair->value, text);
        }
        if (pair->value && !(pair->name = strdup(item->key))) {
            free(pair->value);
            pair->value = NULL;
            value_error(ld, item->value, "out of memory");
        }
        if (pair->value)
            (*count)++;
    }
}

static void load_webhook_headers(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                                 void *base)
{
    struct config_webhook *w = base;
    (void)f;
    load_pairs(ld, kv, &w->headers, &w->header_count, true);
}

static void load_webhook_fields(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                                void *base)
{
    struct config_webhook *w = base;
    (void)f;
    load_pairs(ld, kv, &w->fields, &w->field_count, false);
}

static void load_routing_key(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                             void *base)
{
    struct config_webhook *w = base;
    (void)f;
    store_expanded(ld, kv->value, &w->routing_key);
    if (w->routing_key && !w->routing_key[0]) {
        value_error(ld, kv->value, "is empty");
        free(w->routing_key);
        w->routing_key = NULL;
    }
}

static const char *check_webhook_url(const char *text)
{
    return text[0] ? check_webhook(text) : "is empty: give the receiver's URL";
}

/* Keys that only one format reads are refused on the others: a `fields`
 * table on a json webhook would be silently ignored otherwise. */
static void finish_webhook(struct loader *ld, const struct toml_value *table, void *base)
{
    const struct config_webhook *w = base;
    const struct toml_keyval *fields = table_get(table, "fields");
    const struct toml_keyval *text = table_get(table, "text");
    const struct toml_keyval *key = table_get(table, "routing_key");
    const char *format = webhook_format_names[w->format];
    set_label(ld, "alerts.webhooks", "");
    if (!table_get(table, "url"))
        add_error(ld, table->line, table->col, "alerts.webhooks: url is required");
    if (fields && w->format != WEBHOOK_FORM)
        add_error(ld, fields->line, fields->col, "alerts.webhooks.fields: only format = \"form\" "
                  "sends fields (this one is \"%s\")", format);
    if (!fields && w->format == WEBHOOK_FORM)
        add_error(ld, table->line, table->col, "alerts.webhooks: format = \"form\" needs fields "
                  "(what to send, e.g. { Body = \"{application} is {state}\" })");
    if (text && w->format != WEBHOOK_SLACK)
        add_error(ld, text->line, text->col, "alerts.webhooks.text: only format = \"slack\" "
                  "sends a text (this one is \"%s\")", format);
    if (key && w->format != WEBHOOK_PAGERDUTY)
        add_error(ld, key->line, key->col, "alerts.webhooks.routing_key: only format = "
                  "\"pagerduty\" takes a routing_key (this one is \"%s\")", format);
    if (!key && w->format == WEBHOOK_PAGERDUTY)
        add_error(ld, table->line, table->col, "alerts.webhooks: format = \"pagerduty\" needs "
                  "routing_key (the integration key of an Events API v2 integration)");
}

static const struct section webhook_section = {
    "alerts.webhooks", "in [[alerts.webhooks]]",
    (const struct field[]){
        KEY_STRING("url", url, check_webhook_url),
        KEY_ENUM("format", format, webhook_format_names),
        KEY_CUSTOM("headers", headers, load_webhook_headers),
        KEY_CUSTOM("fields", fields, load_webhook_fields),
        KEY_STRING("text", text, check_template),
        KEY_CUSTOM("routing_key", routing_key, load_routing_key),
        {0},
    },
    finish_webhook,
};

#undef BASE
#define BASE struct config

static void load_webhooks(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                          void *base)
{
    struct config *cfg = base;
    const struct toml_value *v = kv->value;
    (void)f;
    if (v->type != TOML_ARRAY) {
        type_error(ld, v, "an array of tables ([[alerts.webhooks]])");
        return;
    }
    if (v->u.array.len > CONFIG_WEBHOOKS_MAX) {
        value_error(ld, v, "%zu webhooks: at most %d are supported", v->u.array.len, CONFIG_WEBHOOKS_MAX);
        return;
    }
    cfg->webhooks = calloc(v->u.array.len ? v->u.array.len : 1, sizeof(*cfg->webhooks));
    if (!cfg->webhooks) {
        value_error(ld, v, "out of memory");
        return;
    }
    for (size_t i = 0; i < v->u.array.len; i++) {
        const struct toml_value *table = v->u.array.items[i];
        struct config_webhook *w = &cfg->webhooks[cfg->webhook_count++];
        w->line = table->line;
        if (table->type != TOML_TABLE)
            type_error(ld, table, "a table");
        else
            load_section(ld, table, &webhook_section, w);
    }
}

static void free_pairs(struct config_pair *pairs, int count)
{
    for (int i = 0; i < count; i++) {
        free(pairs[i].name);
        free(pairs[i].value);
    }
    free(pairs);
}

static void free_webhooks(struct config *cfg)
{
    for (int i = 0; i < cfg->webhook_count; i++) {
        struct config_webhook *w = &cfg->webhooks[i];
        free(w->url);
        free(w->text);
        free(w->routing_key);
        free_pairs(w->headers, w->header_count);
        free_pairs(w->fields, w->field_count);
    }
    free(cfg->webhooks);
}

/* ------------------------------------------------------------------------
 * [alerts.email]
 */

/* "host:port" or "[v6]:port"; the host may be a name, resolved by the
 * alert thread on each attempt. Returns NULL or why the text is refused. */
static const char *split_email_server(const char *text, char *host, size_t host_len,
                                      uint16_t *port)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon[1] == '\0')
        return "needs a port (host:port, e.g. \"smtp.example.com:587\")";
    if (parse_port(colon + 1, false, port) < 0)
        return "has an invalid port (1..65535)";
    const char *start = text, *end = colon;
    if (text[0] == '[') {
        if (end - text < 3 || end[-1] != ']')
            return "is not host:port ([IPv6]:port for an IPv6 address)";
        start++, end--;
    } else if (memchr(text, ':', (size_t)(colon - text))) {
        return "is not host:port (write an IPv6 address as [IPv6]:port)";
    }
    size_t len = (size_t)(end - start);
    if (len == 0 || len >= host_len)
        return "needs a host (host:port)";
    memcpy(host, start, len);
    host[len] = '\0';
    for (const char *p = host; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr(".-_:", *p))
            return "has an invalid host name";
    }
    unsigned char addr[sizeof(struct in6_addr)];
    if (text[0] == '[' && inet_pton(AF_INET6, host, addr) != 1)
        return "has an invalid IPv6 address";
    return NULL;
}

static void load_email_server(struct loader *ld, const struct field *f,
                              const struct toml_keyval *kv, void *base)
{
    struct config_email *email = &((struct config *)base)->email;
    const char *text = string_value(ld, kv->value);
    char host[256];
    uint16_t port;
    const char *why;

    (void)f;
    if (!text)
        return;
    if ((why = split_email_server(text, host, sizeof(host), &port)) != NULL) {
        value_error(ld, kv->value, "\"%s\" %s", text, why);
        return;
    }
    snprintf(email->port, sizeof(email->port), "%u", port);
    store_string(ld, kv->value, &email->host, host);
    store_string(ld, kv->value, &email->server, text);
}

static const char *check_email_address(const char *text)
{
    return mail_address_valid(text) ? NULL : "is not an email address (local@domain)";
}

/* to = "a@example.com" or a list of them. */
static void load_email_to(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                          void *base)
{
    struct config_email *email = &((struct config *)base)->email;
    const struct toml_value *v = kv->value;
    const struct toml_value *const *items = (const struct toml_value *const *)&v;
    size_t n = 1;

    (void)f;
    if (v->type == TOML_ARRAY) {
        items = (const struct toml_value *const *)v->u.array.items;
        n = v->u.array.len;
        if (n == 0 || n > CONFIG_EMAIL_TO_MAX) {
            value_error(ld, v, "needs 1 to %d addresses, got %zu", CONFIG_EMAIL_TO_MAX, n);
            return;
        }
    } else if (v->type != TOML_STRING) {
        type_error(ld, v, "an email address or a list of them");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *text = string_value(ld, items[i]);
        if (!text)
            continue;
        if (check_email_address(text)) {
            value_error(ld, items[i], "\"%s\" %s", text, check_email_address(text));
            continue;
        }
        store_string(ld, items[i], &email->to[email->to_count++], text);
    }
}

/* The password never comes from the file's text: from the environment or
 * a file of its own, read now so that --check finds what is missing. The
 * messages name the variable or the file, never the value. */
static void load_email_password_env(struct loader *ld, const struct field *f,
                                    const struct toml_keyval *kv, void *base)
{
    struct config_email *email = &((struct config *)base)->email;
    const char *name = string_value(ld, kv->value);
    const char *value;

    (void)f;
    if (!name)
        return;
    if (name[0] == '\0') {
        value_error(ld, kv->value, "is empty (name an environment variable, or leave the key out)");
        return;
    }
    if (!(value = getenv(name))) {
        value_error(ld, kv->value, "the environment variable %s is not set", name);
        return;
    }
    store_string(ld, kv->value, &email->password, value);
}

#define EMAIL_PASSWORD_MAX 1024

static void load_email_password_file(struct loader *ld, const struct field *f,
                                     const struct toml_keyval *kv, void *base)
{
    struct config_email *email = &((struct config *)base)->email;
    const char *text = string_value(ld, kv->value);
    char *path = NULL, secret[EMAIL_PASSWORD_MAX + 2];

    (void)f;
    if (!text)
        return;
    if (text[0] == '\0') {
        value_error(ld, kv->value, "is empty (name a file, or leave the key out)");
        return;
    }
    store_path(ld, kv->value, &path, text);
    FILE *file = path ? fopen(path, "re") : NULL;
    if (!file) {
        if (path)
            value_error(ld, kv->value, "cannot read \"%s\": %s", path, strerror(errno));
        free(path);
        return;
    }
    size_t len = fread(secret, 1, sizeof(secret) - 1, file);
    fclose(file);
    secret[len] = '\0';
    /* One line: the newline an editor adds is not part of the password. */
    len = strcspn(secret, "\r\n");
    secret[len] = '\0';
    if (len == 0 || len > EMAIL_PASSWORD_MAX)
        value_error(ld, kv->value, "\"%s\" %s", path, len ? "is too long for a password"
                                                          : "holds no password");
    else
        store_string(ld, kv->value, &email->password, secret);
    explicit_bzero(secret, sizeof(secret));
    free(path);
}

/* Cross-key rules, reported at the [alerts.email] header (or the key). */
static void finish_email(struct loader *ld, const struct toml_value *table, void *base)
{
    struct config_email *email = &((struct config *)base)->email;
    const struct toml_keyval *env = table_get(table, "password_env");
    const struct toml_keyval *file = table_get(table, "password_file");
    const struct toml_keyval *user = table_get(table, "username");

    email->enabled = true;
    set_label(ld, "alerts", "email");
    if (!table_get(table, "server"))
        value_error(ld, table, "server is required (host:port of the SMTP server)");
    if (!table_get(table, "from"))
        value_error(ld, table, "from is required (the sender's address)");
    if (!table_get(table, "to"))
        value_error(ld, table, "to is required (one address or a list)");
    if (env && file)
        value_error(ld, later_of(env, file)->value, "set password_env or password_file, not both");
    else if (user && email->username && email->username[0] && !env && !file)
        value_error(ld, user->value, "username is set without a password (password_env or "
                    "password_file)");
}

static const char *const email_security_names[] = {"starttls", "tls", "none", NULL};

static const struct section email_section = {
    "alerts.email", "in [alerts.email]",
    (const struct field[]){
        KEY_CUSTOM("server", email.server, load_email_server),
        KEY_ENUM("security", email.security, email_security_names),
        KEY_STRING("username", email.username, check_token),
        KEY_CUSTOM("password_env", email.password, load_email_password_env),
        KEY_CUSTOM("password_file", email.password, load_email_password_file),
        KEY_STRING("from", email.from, check_email_address),
        KEY_CUSTOM("to", email.to, load_email_to),
        KEY_CUSTOM("ca_file", email.ca_file, load_readable_file),
        KEY_STRING("subject", email.subject, check_subject),
        {0},
    },
    finish_email,
};

static const struct section alerts_section = {
    "alerts", "in [alerts]",
    (const struct field[]){
        KEY_STRING("webhook", alert_webhook, check_webhook),
        KEY_STRING("command", alert_command, NULL),
        KEY_DURATION("batch", alert_batch_ms, 0, DAY_MS),
        KEY_CUSTOM("webhooks", webhooks, load_webhooks),
        KEY_TABLE("email", email_section),
        {0},
    },
    NULL,
};

static const struct section log_section = {
    "log", "in [log]",
    (const struct field[]){
        KEY_CUSTOM("access", log_access, load_access_log),
        KEY_ENUM("format", log_format, log_format_names),
        KEY_ENUM("level", log_level, log_level_names),
        {0},
    },
    NULL,
};

static const struct section cache_section = {
    "cache", "in [cache]",
    (const struct field[]){
        KEY_BOOL("enabled", cache_enabled),
        KEY_SIZE("size", cache_size_bytes, 1, INT64_MAX),
        KEY_SIZE("max_object", cache_max_object, 1, INT64_MAX),
        {0},
    },
    finish_cache,
};

/* The seed writes `cache = true` at the top level; TOML forbids that key to
 * also be a table, so its type alone tells the two spellings apart. */
static void load_cache(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                       void *base)
{
    struct config *cfg = base;

    (void)f;
    if (kv->value->type == TOML_BOOL)
        cfg->cache_enabled = kv->value->u.boolean;
    else if (kv->value->type == TOML_TABLE)
        load_section(ld, kv->value, &cache_section, base);
    else
        type_error(ld, kv->value, "a table or a boolean");
}

/* The seed's cachesize: an entry count, as an integer or a string of digits
 * (the seed writes its port as a string, so it may do the same here). */
static void load_cachesize(struct loader *ld, const struct field *f,
                           const struct toml_keyval *kv, void *base)
{
    struct config *cfg = base;
    const struct toml_value *v = kv->value;
    uint64_t n;

    (void)f;
    if (v->type == TOML_INTEGER) {
        if (v->u.integer < 0) {
            value_error(ld, v, "%lld is out of range (at least 0)", (long long)v->u.integer);
            return;
        }
        n = (uint64_t)v->u.integer;
    } else if (v->type == TOML_STRING) {
        const char *text = string_value(ld, v);
        const char *p = text;
        if (!text)
            return;
        if (parse_digits(&p, &n) < 0 || *p != '\0') {
            value_error(ld, v, "\"%s\" is not an entry count", text);
            return;
        }
    } else {
        type_error(ld, v, "an integer (entry count)");
        return;
    }
    cfg->cache_entries = n;
}

/* ------------------------------------------------------------------------
 * [[applications]]
 */

#undef BASE
#define BASE struct config_app

/* ip must be a literal: a name here is almost always a typo for host, and
 * silently resolving it would hide that. */
static void load_app_ip(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                        void *base)
{
    struct config_app *app = base;
    const char *text = string_value(ld, kv->value);
    struct sockaddr_storage addr;
    socklen_t len;

    (void)f;
    if (!text)
        return;
    if (parse_ip(text, 0, &addr, &len) < 0) {
        value_error(ld, kv->value, "\"%s\" is not an IPv4 or IPv6 address (for a host name, "
                    "write host = \"%s\")", text, text);
        return;
    }
    store_string(ld, kv->value, &app->host, text);
}

static void load_app_host(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                          void *base)
{
    struct config_app *app = base;
    const char *text = string_value(ld, kv->value);

    (void)f;
    if (!text)
        return;
    if (!all_visible_ascii(text) || text[0] == '\0') {
        value_error(ld, kv->value, "\"%s\" is not a host name", text);
        return;
    }
    struct sockaddr_storage addr;
    socklen_t len;
    app->by_name = parse_ip(text, 0, &addr, &len) < 0;
    app->host_line = kv->value->line;
    app->host_col = kv->value->col;
    store_string(ld, kv->value, &app->host, text);
}

/* port = 8001 or "8001" (the seed's string); 0 = the scheme's default,
 * applied in finish_app once tls is known. */
static void load_app_port(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                          void *base)
{
    struct config_app *app = base;
    const struct toml_value *v = kv->value;

    (void)f;
    if (v->type == TOML_INTEGER) {
        if (v->u.integer < 0 || v->u.integer > 65535) {
            value_error(ld, v, "%lld is out of range (1..65535, or 0 for the scheme's default)",
                        (long long)v->u.integer);
            return;
        }
        app->port = (uint16_t)v->u.integer;
    } else if (v->type == TOML_STRING) {
        const char *text = string_value(ld, v);
        if (text && parse_port(text, true, &app->port) < 0)
            value_error(ld, v, "\"%s\" is not a port number (1..65535, or 0 for the scheme's "
                        "default)", text);
    } else {
        type_error(ld, v, "an integer or a string of digits");
    }
}

/* Names appear in URLs of the admin API (/api/applications/NAME/drain),
 * in metrics labels and in the alert command's environment: keep them to
 * characters that need no escaping in any of those. */
static void load_app_name(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                          void *base)
{
    struct config_app *app = base;
    const char *text = string_value(ld, kv->value);

    (void)f;
    if (!text)
        return;
    size_t len = strlen(text);
    if (len == 0 || len >= sizeof(app->name)) {
        value_error(ld, kv->value, "must be 1 to %zu characters long", sizeof(app->name) - 1);
        return;
    }
    for (const char *p = text; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || strchr("-._~:@[]", *p);
        if (!ok) {
            value_error(ld, kv->value, "\"%s\": use only letters, digits and -._~:@[]", text);
            return;
        }
    }
    memcpy(app->name, text, len + 1);
}

/* A literal's address is known now; a name is resolved later, through the
 * configured resolvers (resolver.c), into one application per address. */
static void resolve_literal(struct config_app *app)
{
    struct config_address *address = &app->address;

    parse_ip(app->host, app->port, &address->addr, &address->addr_len);
    config_format_address(&address->addr, address->text, sizeof(address->text));
}

/* "NAME@255.255.255.255:65535" must fit a name for every IPv4 member. */
#define MEMBER_SUFFIX_MAX 22

static void check_group_name(struct loader *ld, const struct toml_value *table,
                             const struct config_app *app)
{
    size_t room = sizeof(app->name) - 1 - MEMBER_SUFFIX_MAX;
    if (strlen(app->name) <= room)
        return;
    const struct toml_keyval *name = table_get(table, "name");
    set_label(ld, "applications", "name");
    value_error(ld, name ? name->value : table, "\"%s\" is too long for a host name's "
                "applications, named NAME@ADDRESS: at most %zu characters (set name)",
                app->name, room);
}

static void default_app_name(struct loader *ld, const struct toml_value *table,
                             struct config_app *app)
{
    bool ipv6 = strchr(app->host, ':') != NULL;
    int n = snprintf(app->name, sizeof(app->name), ipv6 ? "[%s]:%u" : "%s:%u", app->host,
                     app->port);
    if (n < 0 || (size_t)n >= sizeof(app->name)) {
        set_label(ld, "applications", "name");
        value_error(ld, table, "the default name \"%s:%u\" is longer than %zu characters: "
                    "set name", app->host, app->port, sizeof(app->name) - 1);
    }
}

/* RFC 1035 letters, digits, hyphens and dots. A dotted quad passes too:
 * the caller refuses addresses separately. */
static bool is_dns_name(const char *text)
{
    size_t n = strlen(text);
    bool ok = n > 0 && n <= 253 && text[0] != '.' && text[0] != '-';
    for (const char *p = text; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '-' || *p == '.';
    return ok;
}

static bool is_ip_literal(const char *text)
{
    struct sockaddr_storage addr;
    socklen_t len;
    return parse_ip(text, 0, &addr, &len) == 0;
}

/* The name a certificate is checked against and sent as SNI, which cannot
 * carry an address (RFC 6066 section 3). */
static void load_app_sni(struct loader *ld, const struct field *f, const struct toml_keyval *kv,
                         void *base)
{
    const char *text = string_value(ld, kv->value);

    (void)f;
    if (text && (!is_dns_name(text) || is_ip_literal(text)))
        value_error(ld, kv->value, "\"%s\" is not a host name", text);
    else if (text)
        store_string(ld, kv->value, &((struct config_app *)base)->sni, text);
}

static const char *const app_tls_keys[] = {"tls_verify", "ca_file", "sni"};

/* The TLS keys mean nothing in the clear, and a ca_file without tls_verify
 * would look like a verification that never happens: both are refused.
 * The client context is built here so that a CA file OpenSSL cannot read
 * is reported at its key. */
static void finish_app_tls(struct loader *ld, const struct toml_value *table, struct config_app *app)
{
    const struct toml_keyval *ca = table_get(table, "ca_file");
    char why[256];

    if (!app->tls) {
        for (size_t i = 0; i < sizeof(app_tls_keys) / sizeof(app_tls_keys[0]); i++) {
            const struct toml_keyval *kv = table_get(table, app_tls_keys[i]);
            set_label(ld, "applications", app_tls_keys[i]);
            if (kv)
                value_error(ld, kv->value, "only for an application with tls = true");
        }
        return;
    }
    set_label(ld, "applications", ca ? "ca_file" : "tls_verify");
    if (ca && !app->tls_verify) {
        value_error(ld, ca->value, "is used only with tls_verify = true: set it, or remove ca_file");
        return;
    }
    if (ca && (!app->ca_file || access(app->ca_file, R_OK) != 0))
        return;     /* refused and reported at the key */
    app->tls_context = app_tls_context(ld->cfg, app, why, sizeof(why));
    if (!app->tls_context && ca)
        value_error(ld, ca->value, "\"%s\": %s", app->ca_file, why);
    else if (!app->tls_context)
        value_error(ld, table, "%s", why);
}

static void finish_app(struct loader *ld, const struct toml_value *table, void *base)
{
    struct config_app *app = base;
    const struct toml_keyval *ip = table_get(table, "ip");
    const struct toml_keyval *host = table_get(table, "host");
    const struct toml_keyval *tls = table_get(table, "tls");
    const struct toml_keyval *tsl = table_get(table, "tsl");

    app->line = table->line;
    if (tls && tsl) {
        const struct toml_keyval *second = later_of(tls, tsl);
        add_error(ld, second->line, second->col, "applications: tsl and tls are the same "
                  "setting: give only one");
    }
    if (app->port == 0) {
        app->default_port = true;
        app->port = app->tls ? 443 : 80;
    }
    if (ip && host) {
        const struct toml_keyval *second = later_of(ip, host);
        add_error(ld, second->line, second->col, "applications: give ip or host, not both");
        return;
    }
    if (!ip && !host) {
        add_error(ld, table->line, table->col, "applications: ip or host is required");
        return;
    }
    if (!app->host)
        return;     /* the ip or host value was refused and reported */
    if (!app->by_name)
        resolve_literal(app);
    if (app->name[0] == '\0')
        default_app_name(ld, table, app);
    finish_app_tls(ld, table, app);
    if (app->by_name)
        check_group_name(ld, table, app);
}

static const struct section app_section = {
    "applications", "in [[applications]]",
    (const struct field[]){
        KEY_CUSTOM("name", name, load_app_name),
        KEY_BOOL("alive", alive),
        KEY_CUSTOM("ip", host, load_app_ip),
        KEY_CUSTOM("host", host, load_app_host),
        KEY_CUSTOM("port", port, load_app_port),
        KEY_BOOL("tls", tls),
        KEY_BOOL("tsl", tls),
        KEY_BOOL("tls_verify", tls_verify),
        KEY_CUSTOM("ca_file", ca_file, load_readable_file),
        KEY_CUSTOM("sni", sni, load_app_sni),
        KEY_INT("weight", weight, 1, 1000),
        KEY_INT("max_requests", max_requests, 0, 1000000),
        {0},
    },
    finish_app,
};

#undef BASE
#define BASE struct config

static void check_duplicate_names(struct loader *ld, const struct toml_value *list)
{
    struct config *cfg = ld->cfg;

    for (int i = 1; i < cfg->app_count; i++) {
        if (cfg->apps[i].name[0] == '\0')
            continue;
        for (int j = 0; j < i; j++) {
            if (strcmp(cfg->apps[i].name, cfg->apps[j].name) != 0)
                continue;
            const struct toml_value *table = list->u.array.items[i];
            const struct toml_keyval *name = table_get(table, "name");
            add_error(ld, name ? name->value->line : table->line,
                      name ? name->value->col : table->col,
                      "applications.name: duplicate name \"%s\" (first used by the "
                      "application at line %d)", cfg->apps[i].name, cfg->apps[j].line);
            break;
        }
    }
}

static void load_applications(struct loader *ld, const struct field *f,
                              const struct toml_keyval *kv, void *base)
{
    struct config *cfg = base;
    const struct toml_value *v = kv->value;

    (void)f;
    if (v->type != TOML_ARRAY) {
        type_error(ld, v, "an array of tables ([[applications]])");
        return;
    }
    if (v->u.array.len == 0) {
        add_error(ld, v->line, v->col, "no applications defined");
        return;
    }
    if (v->u.array.len > CONFIG_MAX_APPS) {
        add_error(ld, v->line, v->col, "%zu applications: at most %d are supported",
                  v->u.array.len, CONFIG_MAX_APPS);
        return;
    }
    cfg->apps = calloc(v->u.array.len, sizeof(*cfg->apps));
    if (!cfg->apps) {
        value_error(ld, v, "out of memory");
        return;
    }
    for (size_t i = 0; i < v->u.array.len; i++) {
        const struct toml_value *table = v->u.array.items[i];
        struct config_app *app = &cfg->apps[cfg->app_count++];
        app->alive = true;
        app->weight = 1;
        app->line = table->line;
        if (table->type != TOML_TABLE)
            type_error(ld, table, "a table");
        else
            load_section(ld, table, &app_section, app);
    }
    check_duplicate_names(ld, v);
}

/* ------------------------------------------------------------------------
 * The top level.
 */

static const struct toml_keyval *table_get_path(const struct toml_value *root,
                                                const char *section, const char *key)
{
    const struct toml_keyval *table = table_get(root, section);
    return table ? table_get(table->value, key) : NULL;
}

/* Two listeners on one address would fail at bind with a less helpful
 * message; the admin API shares the check with the server's list. */
static void check_listen_conflicts(struct loader *ld, const struct toml_value *root)
{
    struct config *cfg = ld->cfg;

    if (!cfg->admin_enabled)
        return;
    for (int i = 0; i < cfg->listen_count; i++) {
        if (!address_equal(&cfg->admin_listen, &cfg->listen[i]))
            continue;
        const struct toml_keyval *at = table_get_path(root, "admin", "listen");
        if (!at)
            at = table_get_path(root, "server", "listen");
        add_error(ld, at ? at->value->line : 1, at ? at->value->col : 1,
                  "admin.listen: %s is also a server.listen address", cfg->admin_listen.text);
    }
}

static void finish_root(struct loader *ld, const struct toml_value *root, void *base)
{
    struct config *cfg = base;

    if (cfg->app_count == 0 && !table_get(root, "applications"))
        add_error(ld, 1, 1, "no applications defined (add an [[applications]] table)");
    check_listen_conflicts(ld, root);
}

static const struct section root_section = {
    "", "at the top level",
    (const struct field[]){
        KEY_TABLE("server", server_section),
        KEY_TABLE("health", health_section),
        KEY_TABLE("passive", passive_section),
        KEY_TABLE("admin", admin_section),
        KEY_TABLE("alerts", alerts_section),
        KEY_TABLE("log", log_section),
        KEY_CUSTOM("cache", cache_enabled, load_cache),
        KEY_CUSTOM("cachesize", cache_entries, load_cachesize),
        KEY_CUSTOM("applications", apps, load_applications),
        {0},
    },
    finish_root,
};

static bool defaults_allocated(const struct config *cfg)
{
    return cfg->path && cfg->health_path && cfg->admin_token && cfg->alert_webhook &&
           cfg->alert_command && cfg->log_access && cfg->resolvers;
}

static int keep_source(struct config *cfg, const char *text, size_t len)
{
    cfg->source = malloc(len + 1);
    if (!cfg->source)
        return -1;
    memcpy(cfg->source, text, len);
    cfg->source[len] = '\0';
    cfg->source_len = len;
    return 0;
}

int config_parse(struct config *cfg, const char *name, const char *text, size_t len,
                 char *errors, size_t errors_len)
{
    struct loader ld = {.cfg = cfg, .file = name, .errors = errors, .errors_len = errors_len};
    char toml_error[512];

    if (errors && errors_len)
        errors[0] = '\0';
    config_defaults(cfg);
    cfg->path = strdup(name);
    if (!defaults_allocated(cfg)) {
        add_error(&ld, 1, 1, "out of memory");
    } else {
        struct toml_value *root = toml_parse(text, len, toml_error, sizeof(toml_error));
        if (!root) {
            ld.count++;
            append_error_text(&ld, "%s:%s\n", name, toml_error);
        } else {
            load_section(&ld, root, &root_section, cfg);
            toml_free(root);
        }
    }
    if (!ld.count && ld.warnings_used && !(cfg->warnings = strdup(ld.warnings)))
        add_error(&ld, 1, 1, "out of memory");
    if (!ld.count && keep_source(cfg, text, len) < 0)
        add_error(&ld, 1, 1, "out of memory");
    if (ld.count)
        config_free(cfg);
    return ld.count;
}

/* Far above any real file (65535 applications take a few MB), low enough
 * that /dev/zero or a runaway generator is refused, not read into memory. */
#define CONFIG_FILE_MAX (64u << 20)

/* Returns 0, -errno, or -EFBIG past CONFIG_FILE_MAX. */
static int read_file(const char *path, char **text, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t used = 0, cap = 4096;
    char *buf = NULL;

    if (fd < 0)
        return -errno;
    for (;;) {
        if (!buf || used == cap) {
            if (cap >= CONFIG_FILE_MAX) {
                free(buf);
                close(fd);
                return -EFBIG;
            }
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
                close(fd);
                return -ENOMEM;
            }
            buf = bigger;
        }
        ssize_t n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            free(buf);
            close(fd);
            return -err;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    close(fd);
    *text = buf;
    *len = used;
    return 0;
}

int config_load(struct config *cfg, const char *path, char *errors, size_t errors_len)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len);

    if (rc < 0) {
        if (errors && errors_len)
            snprintf(errors, errors_len, "%s: cannot read: %s\n", path,
                     rc == -EFBIG ? "larger than 64 MB" : strerror(-rc));
        memset(cfg, 0, sizeof(*cfg));
        return 1;
    }
    rc = config_parse(cfg, path, text, len, errors, errors_len);
    free(text);
    return rc;
}

/* [admin] alone, for `sluice ctl`: a file with errors elsewhere (the very
 * file a reload is about to refuse) must still say where sluice listens. */
int config_load_admin(const char *path, struct config_admin *out, char *error, size_t error_len)
{
    char *text = NULL;
    size_t len = 0;
    *out = (struct config_admin){.enabled = true};
    config_parse_address("127.0.0.1:9901", &out->listen);
    int rc = read_file(path, &text, &len);
    if (rc < 0) {
        snprintf(error, error_len, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    char why[256];
    struct toml_value *root = toml_parse(text, len, why, sizeof(why));
    free(text);
    if (!root) {
        snprintf(error, error_len, "%s:%s", path, why);
        return -EINVAL;
    }
    const struct toml_keyval *admin = toml_table_get(root, "admin");
    const struct toml_keyval *listen = admin ? toml_table_get(admin->value, "listen") : NULL;
    const struct toml_keyval *token = admin ? toml_table_get(admin->value, "token") : NULL;
    rc = 0;
    if (listen && listen->value->type == TOML_STRING) {
        const char *s = listen->value->u.string.ptr;
        out->enabled = s[0] != '\0';
        if (out->enabled && config_parse_address(s, &out->listen) < 0) {
            snprintf(error, error_len, "%s:%d:%d: admin.listen: invalid address \"%s\"", path,
                     listen->value->line, listen->value->col, s);
            rc = -EINVAL;
        }
    }
    if (token && token->value->type == TOML_STRING)
        snprintf(out->token, sizeof(out->token), "%s", token->value->u.string.ptr);
    toml_free(root);
    return rc;
}
