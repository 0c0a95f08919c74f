/* ctl.c - `sluice ctl`; see ctl.h.
 *
 * One request per run over a blocking socket with a timeout, then the
 * answer printed: as it came (--json), or read with a small JSON parser and
 * printed for people (a table for list, lines for one application).
 */
#include "ctl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "config.h"
#include "http1.h"

/* A reload waits for the workers to take up the new generation (up to a
 * few seconds); anything else answers at once. */
#define CTL_TIMEOUT_S 30
#define CTL_ANSWER_MAX (64u << 20)
#define CTL_JSON_DEPTH 32

/* ---- a small JSON parser ---- */

struct json_reader {
    const char *p;
    int depth;
};

static void skip_space(struct json_reader *r)
{
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
        r->p++;
}

static int parse_value(struct json_reader *r, struct ctl_json *v);

/* Appends the UTF-8 form of code point cp. */
static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* A string at r->p (after its opening quote), decoded into a new text.
 * Surrogate pairs are not joined: the admin API never writes them. */
static char *parse_string(struct json_reader *r)
{
    const char *end = r->p;
    while (*end && *end != '"')
        end += end[0] == '\\' && end[1] ? 2 : 1;
    if (*end != '"')
        return NULL;
    char *out = malloc((size_t)(end - r->p) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *s = r->p; s < end; s++) {
        if (*s != '\\') {
            *o++ = *s;
            continue;
        }
        s++;
        switch (*s) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u': {
            char digits[5] = "";
            for (int i = 0; i < 4; i++) {
                if (!isxdigit((unsigned char)s[i + 1])) {
                    free(out);
                    return NULL;
                }
                digits[i] = s[i + 1];
            }
            o += put_utf8(o, (unsigned)strtoul(digits, NULL, 16));
            s += 4;
            break;
        }
        default: *o++ = *s; break;
        }
    }
    *o = '\0';
    r->p = end + 1;
    return out;
}

/* Members of an array or object, up to the closing bracket. */
static int parse_members(struct json_reader *r, struct ctl_json *v, char close)
{
    int cap = 0;
    skip_space(r);
    if (*r->p == close) {
        r->p++;
        return 0;
    }
    for (;;) {
        if (v->count == cap) {
            cap = cap ? cap * 2 : 8;
            struct ctl_json *items = realloc(v->items, (size_t)cap * sizeof(*items));
            if (!items)
                return -1;
            v->items = items;
        }
        /* Counted before it is filled: a failure half-way is freed too. */
        struct ctl_json *item = &v->items[v->count++];
        *item = (struct ctl_json){0};
        skip_space(r);
        if (close == '}') {
            if (*r->p++ != '"' || !(item->key = parse_string(r)))
                return -1;
            skip_space(r);
            if (*r->p++ != ':')
                return -1;
        }
        if (parse_value(r, item) < 0)
            return -1;
        skip_space(r);
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        return *r->p++ == close ? 0 : -1;
    }
}

static int parse_value(struct json_reader *r, struct ctl_json *v)
{
    skip_space(r);
    char c = *r->p;
    if (c == '{' || c == '[') {
        if (++r->depth > CTL_JSON_DEPTH)
            return -1;
        r->p++;
        v->type = c == '{' ? CTL_JSON_OBJECT : CTL_JSON_ARRAY;
        int rc = parse_members(r, v, c == '{' ? '}' : ']');
        r->depth--;
        return rc;
    }
    if (c == '"') {
        r->p++;
        v->type = CTL_JSON_STRING;
        return (v->string = parse_string(r)) ? 0 : -1;
    }
    static const struct { const char *word; enum ctl_json_type type; double value; } words[] = {
        {"true", CTL_JSON_BOOL, 1}, {"false", CTL_JSON_BOOL, 0}, {"null", CTL_JSON_NULL, 0},
    };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strncmp(r->p, words[i].word, strlen(words[i].word)) == 0) {
            r->p += strlen(words[i].word);
            v->type = words[i].type;
            v->number = words[i].value;
            return 0;
        }
    char *end;
    v->number = strtod(r->p, &end);
    if (end == r->p)
        return -1;
    v->type = CTL_JSON_NUMBER;
    r->p = end;
    return 0;
}

static void json_clear(struct ctl_json *v)
{
    for (int i = 0; i < v->count; i++)
        json_clear(&v->items[i]);
    free(v->items);
    free(v->key);
    free(v->string);
}

void ctl_json_free(struct ctl_json *v)
{
    if (!v)
        return;
    json_clear(v);
    free(v);
}

struct ctl_json *ctl_json_parse(const char *text)
{
    struct json_reader r = {.p = text};
    struct ctl_json *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    if (parse_value(&r, v) < 0) {
        ctl_json_free(v);
        return NULL;
    }
    skip_space(&r);
    if (*r.p) {
        ctl_json_free(v);
        return NULL;
    }
    return v;
}

const struct ctl_json *ctl_json_get(const struct ctl_json *object, const char *key)
{
    if (!object || object->type != CTL_JSON_OBJECT)
        return NULL;
    for (int i = 0; i < object->count; i++)
        if (strcmp(object->items[i].key, key) == 0)
            return &object->items[i];
    return NULL;
}

static const char *json_text(const struct ctl_json *object, const char *key)
{
    const struct ctl_json *v = ctl_json_get(object, key);
    return v && v->type == CTL_JSON_STRING ? v->string : "-";
}

static double json_number(const struct ctl_json *object, const char *key)
{
    const struct ctl_json *v = ctl_json_get(object, key);
    return v && (v->type == CTL_JSON_NUMBER || v->type == CTL_JSON_BOOL) ? v->number : 0;
}

/* ---- the request ---- */

struct ctl_options {
    const char *config_path;
    bool config_given;
    const char *admin;          /* --admin, or NULL: from the config */
    const char *token;
    bool json;
    bool force;
    char **words;               /* the command and its argument */
    int word_count;
};

struct answer {
    int status;
    char *text;                 /* the whole answer; owned */
    const char *body;           /* in text */
};

/* A wildcard listen address is reached on the loopback. */
static void address_to_reach(struct config_address *a)
{
    if (a->addr.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a->addr;
        if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->addr;
        if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
            sin6->sin6_addr = in6addr_loopback;
    }
}

static int connect_to(const struct config_address *a)
{
    int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval timeout = {.tv_sec = CTL_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (connect(fd, (const struct sockaddr *)&a->addr, a->addr_len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static int send_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EPIPE;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until the server closes (the request said Connection: close). */
static int read_all(int fd, char **out, size_t *len)
{
    size_t cap = 16384, used = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (used + 1 == cap) {
            char *bigger = cap < CTL_ANSWER_MAX ? realloc(buf, cap * 2) : NULL;
            if (!bigger) {
                free(buf);
                return -EFBIG;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + used, cap - 1 - used, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno == EAGAIN ? -ETIMEDOUT : -errno;
            free(buf);
            return err;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return 0;
}

/* Unreserved bytes as they are, the rest percent-encoded. */
static void encode_name(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    for (const unsigned char *s = (const unsigned char *)name; *s && n + 4 < cap; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
            strchr("-._~", *s))
            out[n++] = (char)*s;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", *s);
    }
    out[n] = '\0';
}

static int request(const struct config_address *where, const char *token, const char *method,
                   const char *path, struct answer *answer)
{
    int fd = connect_to(where);
    if (fd < 0) {
        fprintf(stderr, "sluice ctl: cannot reach sluice at %s: %s\n", where->text,
                fd == -ECONNREFUSED ? "connection refused" : strerror(-fd));
        return -1;
    }
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-ctl\r\n%s%s%sContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     method, path, where->text, token[0] ? "Authorization: Bearer " : "", token,
                     token[0] ? "\r\n" : "");
    size_t len = 0;
    int rc = n > 0 && (size_t)n < sizeof(head) ? send_all(fd, head, (size_t)n) : -E2BIG;
    if (rc == 0)
        rc = read_all(fd, &answer->text, &len);
    close(fd);
    if (rc < 0) {
        fprintf(stderr, "sluice ctl: %s %s at %s: %s\n", method, path, where->text, strerror(-rc));
        return -1;
    }
    struct http1_header headers[64];
    struct http1_limits limits = {.head_bytes = 65536, .headers = 64};
    struct http1_response res = {.headers = headers};
    if (http1_parse_response(answer->text, len, &limits, HTTP1_METHOD_GET, &res) != HTTP1_OK) {
        fprintf(stderr, "sluice ctl: %s does not answer like sluice's admin API\n", where->text);
        free(answer->text);
        return -1;
    }
    answer->status = res.status;
    answer->body = answer->text + res.head_len;
    return 0;
}

/* ---- printing ---- */

static void print_check(const struct ctl_json *check, char *out, size_t cap)
{
    if (!check || check->type != CTL_JSON_OBJECT) {
        snprintf(out, cap, "-");
        return;
    }
    bool ok = json_number(check, "ok") != 0;
    int status = (int)json_number(check, "status");
    if (status)
        snprintf(out, cap, "%s %d", ok ? "ok" : "failed", status);
    else
        snprintf(out, cap, "%s", ok ? "ok" : "failed");
}

static void print_table(const struct ctl_json *apps)
{
    printf("%-24s %-22s %-12s %6s %6s %10s %9s %-11s %s\n", "NAME", "ADDRESS", "STATE", "WEIGHT", "ACTIVE",
           "REQUESTS", "FAILURES", "CHECK", "FOR");
    for (int i = 0; i < apps->count; i++) {
        const struct ctl_json *a = &apps->items[i];
        char check[32];
        print_check(ctl_json_get(a, "last_check"), check, sizeof(check));
        printf("%-24s %-22s %-12s %6.0f %6.0f %10.0f %9.0f %-11s %.0fs\n", json_text(a, "name"),
               json_text(a, "address"), json_text(a, "state"), json_number(a, "weight"),
               json_number(a, "active"), json_number(a, "requests"), json_number(a, "failures"), check,
               json_number(a, "state_seconds"));
    }
}

static void print_app(const struct ctl_json *a)
{
    char check[32];
    const struct ctl_json *last = ctl_json_get(a, "last_check");
    print_check(last, check, sizeof(check));
    printf("name:         %s\n", json_text(a, "name"));
    printf("address:      %s%s\n", json_text(a, "address"), json_number(a, "tls") ? " (TLS)" : "");
    printf("state:        %s for %.1f s (since %s)\n", json_text(a, "state"), json_number(a, "state_seconds"),
           json_text(a, "state_since"));
    printf("weight:       %.0f\n", json_number(a, "weight"));
    if (json_number(a, "max_requests"))
        printf("max_requests: %.0f\n", json_number(a, "max_requests"));
    printf("active:       %.0f\n", json_number(a, "active"));
    printf("requests:     %.0f\n", json_number(a, "requests"));
    printf("failures:     %.0f\n", json_number(a, "failures"));
    if (last && last->type == CTL_JSON_OBJECT)
        printf("last check:   %s at %s\n", check, json_text(last, "time"));
    else
        printf("last check:   none yet\n");
}

static void print_names(const char *label, const struct ctl_json *names)
{
    if (!names || names->type != CTL_JSON_ARRAY || names->count == 0)
        return;
    printf("%s:", label);
    for (int i = 0; i < names->count; i++)
        printf(" %s", names->items[i].type == CTL_JSON_STRING ? names->items[i].string : "?");
    printf("\n");
}

static void print_reload(const struct ctl_json *r)
{
    printf("reloaded: %.0f applications\n", json_number(r, "applications"));
    bool none = true;
    static const char *const lists[] = {"added", "removed", "changed"};
    for (int i = 0; i < 3; i++) {
        const struct ctl_json *names = ctl_json_get(r, lists[i]);
        none &= !names || names->count == 0;
    }
    if (none)
        printf("no application added, removed or changed\n");
    print_names("added", ctl_json_get(r, "added"));
    print_names("removed", ctl_json_get(r, "removed"));
    print_names("changed", ctl_json_get(r, "changed"));
}

/* One line per target; 1 when one failed or there is none. */
static int print_test_alert(const struct ctl_json *r, bool quiet)
{
    const struct ctl_json *targets = ctl_json_get(r, "targets");
    int count = targets && targets->type == CTL_JSON_ARRAY ? targets->count : 0;
    int failed = 0;
    for (int i = 0; i < count; i++) {
        const struct ctl_json *t = &targets->items[i];
        bool delivered = json_number(t, "delivered") != 0;
        failed += !delivered;
        if (!quiet)
            printf("%s: %s%s\n", json_text(t, "target"), delivered ? "delivered" : "not delivered: ",
                   delivered ? "" : json_text(t, "error"));
    }
    if (count == 0 && !quiet)
        fprintf(stderr, "sluice ctl: no alert target is configured ([alerts] webhook, webhooks, command)\n");
    return failed || count == 0 ? 1 : 0;
}

static int print_error(const struct answer *answer, const struct ctl_json *doc)
{
    const struct ctl_json *error = ctl_json_get(doc, "error");
    fprintf(stderr, "sluice ctl: %s\n",
            error && error->type == CTL_JSON_STRING ? error->string : http1_reason(answer->status));
    const struct ctl_json *errors = ctl_json_get(doc, "errors");
    for (int i = 0; errors && errors->type == CTL_JSON_ARRAY && i < errors->count; i++)
        if (errors->items[i].type == CTL_JSON_STRING)
            fprintf(stderr, "%s\n", errors->items[i].string);
    return 1;
}

/* ---- the command line ---- */

static void ctl_usage(FILE *out)
{
    fprintf(out,
            "usage: sluice ctl [-c FILE] [--admin ADDR] [--token T] [--json] COMMAND\n"
            "\n"
            "  list            every application: state, weight, traffic, last check\n"
            "  show NAME       one application\n"
            "  drain NAME      no new requests; maintenance once those in flight end\n"
            "                  (--force: even the last application up)\n"
            "  enable NAME     back from maintenance: checked at once, up when it passes\n"
            "  reload          reload the configuration file (as SIGHUP does)\n"
            "  test-alert      send a test alert to every alert target; exit 1 if one fails\n"
            "\n"
            "  -c, --config FILE  where [admin] listen and token are read (default: applications.toml)\n"
            "  --admin ADDR       the admin API's address instead (e.g. 127.0.0.1:9901)\n"
            "  --token T          the admin token instead\n"
            "  --json             print the API's JSON answer as it is\n");
}

/* 0 to go on, else exit status + 1. */
static int parse_ctl_options(int argc, char **argv, struct ctl_options *o)
{
    enum { OPT_ADMIN = 256, OPT_TOKEN, OPT_JSON, OPT_FORCE };
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'}, {"admin", required_argument, NULL, OPT_ADMIN},
        {"token", required_argument, NULL, OPT_TOKEN}, {"json", no_argument, NULL, OPT_JSON},
        {"force", no_argument, NULL, OPT_FORCE}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct ctl_options){.config_path = "applications.toml"};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
        switch (opt) {
        case 'c': o->config_path = optarg; o->config_given = true; break;
        case OPT_ADMIN: o->admin = optarg; break;
        case OPT_TOKEN: o->token = optarg; break;
        case OPT_JSON: o->json = true; break;
        case OPT_FORCE: o->force = true; break;
        case 'h': ctl_usage(stdout); return 1;
        default: ctl_usage(stderr); return 3;
        }
    }
    o->words = argv + optind;
    o->word_count = argc - optind;
    return 0;
}

/* Method and path of the command, or -1 (bad usage, said). */
static int command_request(const struct ctl_options *o, const char **method, char *path, size_t cap)
{
    const char *cmd = o->word_count ? o->words[0] : "";
    bool named = !strcmp(cmd, "show") || !strcmp(cmd, "drain") || !strcmp(cmd, "enable");
    int want = named ? 2 : 1;
    bool test_alert = !strcmp(cmd, "test-alert");
    if (!strcmp(cmd, "list") || !strcmp(cmd, "reload") || test_alert || named) {
        if (o->word_count != want) {
            fprintf(stderr, "sluice ctl: %s takes %s\n", cmd, named ? "one application name" : "no argument");
            return -1;
        }
    } else {
        fprintf(stderr, cmd[0] ? "sluice ctl: unknown command '%s'\n" : "sluice ctl: no command given%s\n", cmd);
        return -1;
    }
    if (o->force && strcmp(cmd, "drain") != 0) {
        fprintf(stderr, "sluice ctl: --force goes with drain only\n");
        return -1;
    }
    char name[CONFIG_NAME_MAX * 3 + 1] = "";
    if (named)
        encode_name(o->words[1], name, sizeof(name));
    *method = !strcmp(cmd, "list") || !strcmp(cmd, "show") ? "GET" : "POST";
    if (!strcmp(cmd, "list"))
        snprintf(path, cap, "/api/applications");
    else if (!strcmp(cmd, "reload"))
        snprintf(path, cap, "/api/reload");
    else if (test_alert)
        snprintf(path, cap, "/api/alerts/test");
    else if (!strcmp(cmd, "show"))
        snprintf(path, cap, "/api/applications/%s", name);
    else
        snprintf(path, cap, "/api/applications/%s/%s%s", name, cmd, o->force ? "?force=1" : "");
    return 0;
}

/* Where to send it and with which token: the options, else [admin] of
 * the file. Without the default file, sluice's defaults (as sluice itself
 * would run). -1: cannot, said; -2: bad usage, said. */
static int resolve_admin(const struct ctl_options *o, struct config_address *where, char *token, size_t cap)
{
    struct config_admin admin;
    char error[512] = "";
    int rc = config_load_admin(o->config_path, &admin, error, sizeof(error));
    bool default_missing = rc == -ENOENT && !o->config_given;
    if (rc == -EINVAL && !(o->admin && o->token)) {
        /* The very file a reload is about to refuse: try the defaults, so
         * that sluice itself can say what is wrong with it. */
        fprintf(stderr, "sluice ctl: warning: %s; trying %s\n", error, o->admin ? o->admin : admin.listen.text);
    } else if (rc < 0 && !default_missing && !(o->admin && o->token)) {
        fprintf(stderr, "sluice ctl: %s\n", error);
        return -1;
    }
    if (o->admin) {
        if (config_parse_address(o->admin, where) < 0) {
            fprintf(stderr, "sluice ctl: --admin: '%s' is not an address like 127.0.0.1:9901\n", o->admin);
            return -2;
        }
    } else if (!admin.enabled) {
        fprintf(stderr, "sluice ctl: the admin API is off in %s ([admin] listen = \"\"); give --admin ADDR\n",
                o->config_path);
        return -1;
    } else {
        *where = admin.listen;
    }
    address_to_reach(where);
    snprintf(token, cap, "%s", o->token ? o->token : admin.token);
    return 0;
}

static int show_answer(const struct ctl_options *o, const struct answer *answer)
{
    struct ctl_json *doc = ctl_json_parse(answer->body);
    int status = 0;
    if (o->json)
        fputs(answer->body, stdout);
    if (answer->status >= 400)
        status = o->json ? 1 : print_error(answer, doc);
    else if (!doc)
        status = (fprintf(stderr, "sluice ctl: the answer is not JSON\n"), 1);
    else if (!strcmp(o->words[0], "test-alert"))
        status = print_test_alert(doc, o->json);
    else if (o->json)
        status = 0;
    else if (!strcmp(o->words[0], "list") && doc->type == CTL_JSON_ARRAY)
        print_table(doc);
    else if (!strcmp(o->words[0], "reload"))
        print_reload(doc);
    else
        print_app(doc);
    ctl_json_free(doc);
    return status;
}

int ctl_main(int argc, char **argv)
{
    struct ctl_options o;
    int rc = parse_ctl_options(argc, argv, &o);
    if (rc)
        return rc - 1;
    const char *method;
    char path[512], token[256];
    struct config_address where;
    if (command_request(&o, &method, path, sizeof(path)) < 0) {
        ctl_usage(stderr);
        return 2;
    }
    if ((rc = resolve_admin(&o, &where, token, sizeof(token))) < 0)
        return rc == -2 ? 2 : 1;
    struct answer answer = {0};
    if (request(&where, token, method, path, &answer) < 0)
        return 1;
    rc = show_answer(&o, &answer);
    free(answer.text);
    return rc;
}
