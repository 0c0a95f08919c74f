/* fuzz_config.c - the TOML parser and the config loader, from a buffer.
 *
 * The input is an applications.toml. toml_parse's tree is walked and
 * checked (every string NUL-terminated at its length, positions inside the
 * text, no key twice in a table, depth bounded as toml.h promises), then
 * config_parse loads the same text: a config it accepts must be one sluice
 * can run (applications with names, ports, addresses; every owned string
 * present), one it refuses must come back empty with one FILE:LINE:COL
 * line per error. Everything is freed; LeakSanitizer reports what is not.
 * Host names are not looked up (offline_resolver.c).
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "toml.h"

/* relative paths in the file (log, TLS files) are joined to this
 * directory, which does not exist: file checks fail the same everywhere */
#define FILE_NAME "/nonexistent-sluice-fuzz/applications.toml"
#define KEYS_COMPARED 256       /* pairwise key check: quadratic, so bounded */

/* Big enough that no input of a fuzzer's size fills it, so that the
 * one-line-per-error check is never made on a truncated report. */
static char errors[1 << 20];

struct text_extent {
    int lines;                  /* lines in the text, counting a last unterminated one */
    size_t len;
};

static void check_tree(const struct toml_value *v, int depth, const struct text_extent *text);

static void check_position(int line, int col, const struct text_extent *text)
{
    FUZZ_CHECK(line >= 1 && line <= text->lines);
    FUZZ_CHECK(col >= 1 && (size_t)col <= text->len + 1);
}

static void check_table(const struct toml_value *t, int depth, const struct text_extent *text)
{
    FUZZ_CHECK(t->u.table.len <= t->u.table.cap);
    FUZZ_CHECK(t->u.table.len == 0 || t->u.table.items != NULL);
    for (size_t i = 0; i < t->u.table.len; i++) {
        const struct toml_keyval *kv = &t->u.table.items[i];
        FUZZ_CHECK(kv->key != NULL && kv->key[kv->key_len] == '\0' && kv->value != NULL);
        check_position(kv->line, kv->col, text);
        for (size_t j = 0; j < i && i < KEYS_COMPARED; j++) {
            const struct toml_keyval *other = &t->u.table.items[j];
            FUZZ_CHECK(other->key_len != kv->key_len ||
                       memcmp(other->key, kv->key, kv->key_len) != 0);
        }
        check_tree(kv->value, depth + 1, text);
    }
}

static void check_tree(const struct toml_value *v, int depth, const struct text_extent *text)
{
    /* toml.h bounds nesting by TOML_MAX_DEPTH counting arrays, inline
     * tables and key components; an array of tables adds a level per
     * component, hence twice that for the tree */
    FUZZ_CHECK(depth <= 2 * TOML_MAX_DEPTH + 2);
    check_position(v->line, v->col, text);
    switch (v->type) {
    case TOML_TABLE:
        check_table(v, depth, text);
        break;
    case TOML_ARRAY:
        FUZZ_CHECK(v->u.array.len <= v->u.array.cap);
        FUZZ_CHECK(v->u.array.len == 0 || v->u.array.items != NULL);
        for (size_t i = 0; i < v->u.array.len; i++)
            check_tree(v->u.array.items[i], depth + 1, text);
        break;
    case TOML_STRING:
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL:
    case TOML_DATE_LOCAL:
    case TOML_TIME_LOCAL:
        FUZZ_CHECK(v->u.string.ptr != NULL && v->u.string.ptr[v->u.string.len] == '\0');
        FUZZ_CHECK(v->type == TOML_STRING || v->u.string.len > 0);
        break;
    case TOML_INTEGER:
    case TOML_FLOAT:
    case TOML_BOOL:
        break;
    default:
        FUZZ_CHECK(!"a known value type");
    }
}

/* "LINE:COL: message", LINE and COL positive. */
static const char *skip_position(const char *p)
{
    for (int part = 0; part < 2; part++) {
        FUZZ_CHECK(*p >= '1' && *p <= '9');
        while (*p >= '0' && *p <= '9')
            p++;
        FUZZ_CHECK(*p == ':');
        p++;
    }
    FUZZ_CHECK(*p == ' ');
    return p;
}

static void check_toml(const char *text, size_t len, const struct text_extent *extent)
{
    char err[512] = "";
    struct toml_value *root = toml_parse(text, len, err, sizeof(err));
    if (!root) {
        skip_position(err);
        return;
    }
    FUZZ_CHECK(root->type == TOML_TABLE);
    check_table(root, 0, extent);
    toml_free(root);
}

static bool terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static void check_accepted(const struct config *cfg)
{
    FUZZ_CHECK(cfg->path != NULL && strcmp(cfg->path, FILE_NAME) == 0);
    FUZZ_CHECK(cfg->health_path && cfg->admin_token && cfg->alert_webhook && cfg->alert_command &&
               cfg->log_access);
    FUZZ_CHECK((cfg->tls_cert == NULL) == (cfg->tls_key == NULL));
    FUZZ_CHECK((cfg->hash_key == HASH_HEADER || cfg->hash_key == HASH_COOKIE) ==
               (cfg->hash_key_name != NULL));
    FUZZ_CHECK(cfg->listen_count >= 1 && cfg->listen_count <= CONFIG_MAX_LISTEN);
    for (int i = 0; i < cfg->listen_count; i++)
        FUZZ_CHECK(cfg->listen[i].addr_len > 0 && terminated(cfg->listen[i].text, sizeof(cfg->listen[i].text)));
    FUZZ_CHECK(cfg->header_bytes >= 1024 && cfg->header_bytes <= 1024 * 1024);
    FUZZ_CHECK(cfg->header_count >= 1);
    FUZZ_CHECK(cfg->health_rise >= 1 && cfg->health_fall >= 1);

    FUZZ_CHECK(cfg->app_count >= 1 && cfg->app_count <= CONFIG_MAX_APPS && cfg->apps != NULL);
    for (int i = 0; i < cfg->app_count; i++) {
        const struct config_app *app = &cfg->apps[i];
        FUZZ_CHECK(terminated(app->name, sizeof(app->name)) && app->name[0] != '\0');
        FUZZ_CHECK(app->host != NULL && app->port != 0);
        FUZZ_CHECK(app->weight >= 1);
        FUZZ_CHECK(app->by_name || app->address.addr_len > 0);     /* names: resolved later */
        FUZZ_CHECK(terminated(app->address.text, sizeof(app->address.text)));
        /* TLS settings only with tls, a CA file only when verifying, and
         * every TLS application with its client context. */
        FUZZ_CHECK(app->tls == (app->tls_context != NULL));
        FUZZ_CHECK(app->tls || (!app->tls_verify && !app->ca_file && !app->sni));
        FUZZ_CHECK(!app->ca_file || app->tls_verify);
        for (int j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(app->name, cfg->apps[j].name) != 0);
    }
}

/* Every error is one "fuzz.toml:LINE:COL: message" line. */
static void check_refused(const struct config *cfg, int count)
{
    FUZZ_CHECK(cfg->apps == NULL && cfg->app_count == 0 && cfg->path == NULL && cfg->tls_contexts == NULL);
    size_t used = strlen(errors);
    if (used + 4096 >= sizeof(errors))
        return;     /* truncated: the count may exceed the lines */
    int lines = 0;
    for (const char *p = errors; *p; lines++) {
        FUZZ_CHECK(strncmp(p, FILE_NAME ":", sizeof(FILE_NAME)) == 0);
        skip_position(p + sizeof(FILE_NAME));
        const char *nl = strchr(p, '\n');
        FUZZ_CHECK(nl != NULL);
        p = nl + 1;
    }
    FUZZ_CHECK(lines == count);
}

int fuzz_config_one(const uint8_t *data, size_t len)
{
    const char *text = (const char *)data;
    struct text_extent extent = {.lines = 1, .len = len};
    for (size_t i = 0; i < len; i++)
        extent.lines += text[i] == '\n';

    fuzz_offline = true;
    check_toml(text, len, &extent);

    struct config cfg;
    int count = config_parse(&cfg, FILE_NAME, text, len, errors, sizeof(errors));
    FUZZ_CHECK(count >= 0);
    if (count == 0)
        check_accepted(&cfg);
    else
        check_refused(&cfg, count);
    config_free(&cfg);
    fuzz_offline = false;
    return 0;
}

/* the libFuzzer entry point, in `make fuzz` builds only */
FUZZ_TARGET(fuzz_config_one)
