/* test_toml.c - the TOML parser against the public toml-test suite, then a
 * few hand-written checks of positions, error messages and limits.
 *
 * toml-test cases come from two copies of the suite. Debian's, installed by
 * golang-github-burntsushi-toml-dev (scripts/install-deps), is always run:
 * every .toml under its valid/ and invalid/ trees. A checkout of the
 * toml-test repository at ../shared/toml-test (from the repository root,
 * where the runner starts) or $TOML_TEST_DIR, larger, runs too when it is
 * there, through its TOML 1.0.0 list. Each case is one check: a valid case
 * must parse to the data its .json file describes, an invalid one must be
 * refused with a "LINE:COL: message" error. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "toml.h"
#include "unit.h"

/* ---- Files -------------------------------------------------------------- */

static char *read_whole_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *data = malloc(cap);
    while (data) {
        n += fread(data + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *bigger = realloc(data, cap * 2);
        if (!bigger)
            free(data);
        data = bigger;
        cap *= 2;
    }
    if (data && ferror(f)) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data) {
        data[n] = '\0';
        *len = n;
    }
    return data;
}

/* ---- A JSON reader just big enough for toml-test's expected files ------- */

enum json_type { JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_LITERAL };

struct json_member;

struct json {
    enum json_type type;
    char *text;                     /* decoded string, or a literal's text */
    size_t len;
    struct json_member *members;    /* object members or array items */
    size_t count;
};

struct json_member {
    char *key;                      /* NULL for array items */
    size_t key_len;
    struct json value;
};

struct json_reader {
    const char *s, *end;
};

static void json_free(struct json *j)
{
    for (size_t i = 0; i < j->count; i++) {
        free(j->members[i].key);
        json_free(&j->members[i].value);
    }
    free(j->members);
    free(j->text);
}

static void json_skip_space(struct json_reader *r)
{
    while (r->s < r->end && strchr(" \t\r\n", *r->s))
        r->s++;
}

static bool json_hex4(struct json_reader *r, unsigned *out)
{
    *out = 0;
    for (int i = 0; i < 4; i++, r->s++) {
        const char *hex = "0123456789abcdef", *d;
        if (r->s == r->end || !*r->s || !(d = strchr(hex, *r->s | 0x20)))
            return false;
        *out = *out << 4 | (unsigned)(d - hex);
    }
    return true;
}

static void put_utf8(char *out, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | cp >> 6);
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | cp >> 12);
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | cp >> 18);
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* \uXXXX, combining a surrogate pair. */
static bool json_unicode_escape(struct json_reader *r, char *out, size_t *n)
{
    unsigned cp, low;
    if (!json_hex4(r, &cp))
        return false;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (r->end - r->s < 2 || r->s[0] != '\\' || r->s[1] != 'u')
            return false;
        r->s += 2;
        if (!json_hex4(r, &low) || low < 0xDC00 || low > 0xDFFF)
            return false;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    put_utf8(out, n, cp);
    return true;
}

/* One escape, after its backslash. */
static bool json_escape(struct json_reader *r, char *out, size_t *n)
{
    char c = *r->s++;
    switch (c) {
    case '"': case '\\': case '/': out[(*n)++] = c; return true;
    case 'b': out[(*n)++] = '\b'; return true;
    case 'f': out[(*n)++] = '\f'; return true;
    case 'n': out[(*n)++] = '\n'; return true;
    case 'r': out[(*n)++] = '\r'; return true;
    case 't': out[(*n)++] = '\t'; return true;
    case 'u': return json_unicode_escape(r, out, n);
    default: return false;
    }
}

/* The string at r->s (on its opening quote); decoded text is never longer
 * than the encoded one, so one allocation of that size suffices. */
static bool json_string(struct json_reader *r, char **text, size_t *len)
{
    char *out = malloc((size_t)(r->end - r->s) + 1);
    size_t n = 0;
    for (r->s++; out && r->s < r->end && *r->s != '"';) {
        if (*r->s != '\\')
            out[n++] = *r->s++;
        else if (++r->s == r->end || !json_escape(r, out, &n))
            break;
    }
    if (!out || r->s >= r->end || *r->s != '"') {
        free(out);
        return false;
    }
    r->s++;
    out[n] = '\0';
    *text = out;
    *len = n;
    return true;
}

static bool json_value(struct json_reader *r, struct json *out);

/* Members of an object or items of an array, up to the closing bracket. */
static bool json_members(struct json_reader *r, struct json *out, char close)
{
    size_t cap = 0;
    for (r->s++;;) {
        json_skip_space(r);
        if (r->s < r->end && *r->s == close && out->count == 0)
            break;
        if (out->count == cap) {
            cap = cap ? cap * 2 : 8;
            struct json_member *m = realloc(out->members, cap * sizeof *m);
            if (!m)
                return false;
            out->members = m;
        }
        struct json_member *m = &out->members[out->count];
        *m = (struct json_member){0};
        if (close == '}') {
            if (r->s >= r->end || *r->s != '"' || !json_string(r, &m->key, &m->key_len))
                return false;
            json_skip_space(r);
            if (r->s >= r->end || *r->s++ != ':') {
                free(m->key);
                return false;
            }
        }
        out->count++;
        if (!json_value(r, &m->value))
            return false;
        json_skip_space(r);
        if (r->s < r->end && *r->s == ',') {
            r->s++;
            continue;
        }
        if (r->s < r->end && *r->s == close)
            break;
        return false;
    }
    r->s++;
    return true;
}

static bool json_value(struct json_reader *r, struct json *out)
{
    *out = (struct json){0};
    json_skip_space(r);
    if (r->s >= r->end)
        return false;
    if (*r->s == '{') {
        out->type = JSON_OBJECT;
        return json_members(r, out, '}');
    }
    if (*r->s == '[') {
        out->type = JSON_ARRAY;
        return json_members(r, out, ']');
    }
    if (*r->s == '"') {
        out->type = JSON_STRING;
        return json_string(r, &out->text, &out->len);
    }
    const char *start = r->s;
    while (r->s < r->end && !strchr(",]} \t\r\n", *r->s))
        r->s++;
    out->type = JSON_LITERAL;
    out->len = (size_t)(r->s - start);
    out->text = strndup(start, out->len);
    return out->text && out->len > 0;
}

static bool json_parse(const char *text, size_t len, struct json *out)
{
    struct json_reader r = {text, text + len};
    bool ok = json_value(&r, out);
    json_skip_space(&r);
    return ok && r.s == r.end;
}

static const struct json *json_get(const struct json *object, const char *key, size_t len)
{
    for (size_t i = 0; object->type == JSON_OBJECT && i < object->count; i++)
        if (object->members[i].key_len == len && memcmp(object->members[i].key, key, len) == 0)
            return &object->members[i].value;
    return NULL;
}

/* ---- Comparing a parsed tree with the expected JSON --------------------- */

static char mismatch[512];

__attribute__((format(printf, 1, 2)))
static bool differ(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mismatch, sizeof mismatch, fmt, ap);
    va_end(ap);
    return false;
}

static const char *json_tag(enum toml_type type)
{
    switch (type) {
    case TOML_STRING: return "string";
    case TOML_INTEGER: return "integer";
    case TOML_FLOAT: return "float";
    case TOML_BOOL: return "bool";
    case TOML_DATETIME: return "datetime";
    case TOML_DATETIME_LOCAL: return "datetime-local";
    case TOML_DATE_LOCAL: return "date-local";
    case TOML_TIME_LOCAL: return "time-local";
    default: return "?";
    }
}

/* RFC 3339 text in one spelling: 'T' and 'Z' upper case, fractional seconds
 * without trailing zeros (".600" and ".6" are the same instant). */
static void normalise_date_time(const char *s, size_t n, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++) {
        char c = s[i];
        if (c == '.') {
            size_t digits = 0;
            while (i + 1 + digits < n && s[i + 1 + digits] >= '0' && s[i + 1 + digits] <= '9')
                digits++;
            size_t keep = digits;
            while (keep > 0 && s[i + keep] == '0')
                keep--;
            for (size_t d = 0; keep > 0 && d <= keep && k + 1 < size; d++)
                out[k++] = s[i + d];
            i += digits;
            continue;
        }
        out[k++] = c == ' ' || c == 't' ? 'T' : c == 'z' ? 'Z' : c;
    }
    out[k] = '\0';
}

/* Debian's copy of toml-test predates signed zeros in the expected data:
 * it writes -0.0 as "0". While it runs, a zero's sign is not compared. */
static bool zero_sign_written = true;

static bool float_matches(double got, const char *want)
{
    double expected = strtod(want, NULL);
    if (isnan(expected) || isnan(got))
        return isnan(expected) && isnan(got);
    if (got == 0 && expected == 0 && !zero_sign_written)
        return true;
    return got == expected && signbit(got) == signbit(expected);
}

static bool scalar_text_matches(const struct toml_value *v, const char *want, size_t want_len)
{
    char a[128], b[128];
    switch (v->type) {
    case TOML_STRING:
        return v->u.string.len == want_len && memcmp(v->u.string.ptr, want, want_len) == 0;
    case TOML_INTEGER:
        errno = 0;
        return strtoll(want, NULL, 10) == v->u.integer && errno == 0;
    case TOML_FLOAT:
        return float_matches(v->u.floating, want);
    case TOML_BOOL:
        return strcmp(want, v->u.boolean ? "true" : "false") == 0;
    default:
        normalise_date_time(v->u.string.ptr, v->u.string.len, a, sizeof a);
        normalise_date_time(want, want_len, b, sizeof b);
        return strcmp(a, b) == 0;
    }
}

/* where: the innermost key, for the failure message. */
static bool matches(const struct toml_value *v, const struct json *j, const char *where);

static bool table_matches(const struct toml_value *v, const struct json *j, const char *where)
{
    if (j->type != JSON_OBJECT)
        return differ("%s: a table where no table was expected", where);
    if (j->count != v->u.table.len)
        return differ("%s: a table of %zu keys where %zu were expected", where, v->u.table.len,
                      j->count);
    for (size_t i = 0; i < v->u.table.len; i++) {
        const struct toml_keyval *kv = &v->u.table.items[i];
        const struct json *want = json_get(j, kv->key, kv->key_len);
        if (!want)
            return differ("%s: unexpected key '%s'", where, kv->key);
        if (!matches(kv->value, want, kv->key))
            return false;
    }
    return true;
}

static bool array_matches(const struct toml_value *v, const struct json *j, const char *where)
{
    if (j->type != JSON_ARRAY)
        return differ("%s: an array where no array was expected", where);
    if (j->count != v->u.array.len)
        return differ("%s: an array of %zu items where %zu were expected", where,
                      v->u.array.len, j->count);
    for (size_t i = 0; i < v->u.array.len; i++)
        if (!matches(v->u.array.items[i], &j->members[i].value, where))
            return false;
    return true;
}

static bool matches(const struct toml_value *v, const struct json *j, const char *where)
{
    if (v->type == TOML_TABLE)
        return table_matches(v, j, where);
    if (v->type == TOML_ARRAY)
        return array_matches(v, j, where);
    const struct json *type = json_get(j, "type", 4), *value = json_get(j, "value", 5);
    if (!type || !value || type->type != JSON_STRING || value->type != JSON_STRING)
        return differ("%s: %s where a table or array was expected", where,
                      toml_type_name(v->type));
    if (strcmp(type->text, json_tag(v->type)) != 0)
        return differ("%s: %s where %s was expected", where, json_tag(v->type), type->text);
    if (!scalar_text_matches(v, value->text, value->len))
        return differ("%s: value differs from \"%s\"", where, value->text);
    return true;
}

/* ---- The toml-test cases ------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* "LINE:COL: message" */
static bool is_error_message(const char *err)
{
    unsigned line, col;
    int used = 0;
    return sscanf(err, "%u:%u: %n", &line, &col, &used) == 2 && used > 0 && err[used] != '\0' &&
           line > 0 && col > 0;
}

static void check_valid_case(const char *dir, const char *name)
{
    char path[1024], err[256];
    size_t len, json_len;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = read_whole_file(path, &len);
    struct toml_value *root = text ? toml_parse(text, len, err, sizeof err) : NULL;
    snprintf(path + strlen(path) - 5, 6, ".json");
    char *expected_text = read_whole_file(path, &json_len);
    struct json expected = {0};
    bool have_json = expected_text && json_parse(expected_text, json_len, &expected);
    if (!text || !have_json)
        CHECK_MSG(false, "%s: cannot read the case or its .json", name);
    else if (!root)
        CHECK_MSG(false, "%s: refused: %s", name, err);
    else
        CHECK_MSG(matches(root, &expected, "(root)"), "%s: %s", name, mismatch);
    json_free(&expected);
    toml_free(root);
    free(expected_text);
    free(text);
}

static void check_invalid_case(const char *dir, const char *name)
{
    char path[1024], err[256] = "";
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = read_whole_file(path, &len);
    struct toml_value *root = text ? toml_parse(text, len, err, sizeof err) : NULL;
    CHECK_MSG(text && !root && is_error_message(err), "%s: %s", name,
              !text ? "cannot read the case" : root ? "accepted" : err);
    toml_free(root);
    free(text);
}

/* One case named relative to its copy's root ("valid/x.toml"); returns 1
 * when it was a case and ran, 0 when the name is no case. */
static int run_case(const char *root, const char *name)
{
    if (!ends_with(name, ".toml"))
        return 0;
    if (strncmp(name, "valid/", 6) == 0)
        check_valid_case(root, name);
    else if (strncmp(name, "invalid/", 8) == 0)
        check_invalid_case(root, name);
    else
        return 0;
    return 1;
}

/* Every case under root/sub, depth first; returns how many ran. */
static int run_tree(const char *root, const char *sub)
{
    char path[1024], name[1024];
    snprintf(path, sizeof path, "%s/%s", root, sub);
    DIR *dir = opendir(path);
    if (!dir)
        return 0;
    int ran = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        if (snprintf(name, sizeof name, "%s/%s", sub, e->d_name) >= (int)sizeof name ||
            snprintf(path, sizeof path, "%s/%s", root, name) >= (int)sizeof path)
            CHECK_MSG(false, "%s/%s/%s: path too long", root, sub, e->d_name);
        else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            ran += run_tree(root, name);
        else
            ran += run_case(root, name);
    }
    closedir(dir);
    return ran;
}

/* Debian's copy has no list of its cases: its whole valid/ and invalid/
 * trees are the suite. */
#define DEBIAN_TOML_TEST "/usr/share/gocode/src/github.com/BurntSushi/toml/internal/toml-test/tests"

static void run_debian_copy(void)
{
    struct stat st;
    if (stat(DEBIAN_TOML_TEST "/valid", &st) != 0) {
        CHECK_MSG(false, "toml-test cases not found in %s: run scripts/install-deps "
                  "(it installs golang-github-burntsushi-toml-dev)", DEBIAN_TOML_TEST);
        return;
    }
    zero_sign_written = false;
    int ran = run_tree(DEBIAN_TOML_TEST, "valid") + run_tree(DEBIAN_TOML_TEST, "invalid");
    zero_sign_written = true;
    fprintf(stderr, "toml-test (Debian's copy): %d cases ran from %s\n", ran, DEBIAN_TOML_TEST);
    /* a moved or emptied tree must not pass by running nothing (it holds
     * 334 cases: 100 valid, 234 invalid) */
    CHECK_MSG(ran >= 330, "only %d toml-test cases ran from %s", ran, DEBIAN_TOML_TEST);
}

/* The toml-test repository's own checkout, when there is one. */
static void run_full_copy(void)
{
    const char *dir = getenv("TOML_TEST_DIR");
    char path[1024];
    size_t len;
    struct stat st;
    bool asked = dir && *dir;
    if (!asked)
        dir = "../shared/toml-test";
    if (stat(dir, &st) != 0) {
        /* optional unless named */
        CHECK_MSG(!asked, "TOML_TEST_DIR=%s does not exist", dir);
        fprintf(stderr, "toml-test (TOML 1.0.0 list): not run, no %s\n", dir);
        return;
    }
    snprintf(path, sizeof path, "%s/files-toml-1.0.0", dir);
    char *list = read_whole_file(path, &len);
    CHECK_MSG(list != NULL, "cannot read %s", path);
    int ran = 0;
    for (char *save = NULL, *name = list ? strtok_r(list, "\r\n", &save) : NULL; name;
         name = strtok_r(NULL, "\r\n", &save))
        ran += run_case(dir, name);
    free(list);
    fprintf(stderr, "toml-test (TOML 1.0.0 list): %d cases ran from %s\n", ran, dir);
    /* an unreadable or reshaped list must not pass by running nothing
     * (toml-test's 1.0 list has 709 cases) */
    CHECK_MSG(ran >= 700, "only %d toml-test cases ran from %s", ran, path);
}

/* ---- Hand-written checks ------------------------------------------------ */

static struct toml_value *parse(const char *text, char *err, size_t errlen)
{
    return toml_parse(text, strlen(text), err, errlen);
}

#define CHECK_AT(item, l, c)                                                     \
    CHECK_MSG((item)->line == (l) && (item)->col == (c), "%s at %d:%d, not %d:%d", \
              #item, (item)->line, (item)->col, (l), (c))

static void test_positions(void)
{
    const char *doc = "# sluice\n"
                      "name = \"x\"\n"
                      "[server]\n"
                      "  listen = [\"a\", \"b\"]\n"
                      "  timeouts.connect = \"2s\"\r\n"
                      "[[applications]]\n"
                      "ip = \"\xc3\xa9\"  port = 1\n";
    char err[256];
    struct toml_value *root = parse(doc, err, sizeof err);
    CHECK(root == NULL);
    CHECK_STR(err, "7:11: expected end of line, found 'p'");   /* columns count characters */

    doc = "# sluice\n"
          "name = \"x\"\n"
          "[server]\n"
          "  listen = [\"a\", \"b\"]\n"
          "  timeouts.connect = \"2s\"\r\n"
          "[[applications]]\n"
          "port = 8001\n";
    root = parse(doc, err, sizeof err);
    CHECK_MSG(root != NULL, "%s", err);
    if (!root)
        return;
    const struct toml_keyval *name = toml_table_get(root, "name");
    const struct toml_keyval *server = toml_table_get(root, "server");
    const struct toml_keyval *apps = toml_table_get(root, "applications");
    CHECK(name && server && apps);
    if (!name || !server || !apps)
        goto done;
    CHECK_AT(name, 2, 1);
    CHECK_AT(name->value, 2, 8);
    CHECK_AT(server, 3, 2);
    CHECK_AT(server->value, 3, 1);
    const struct toml_keyval *listen = toml_table_get(server->value, "listen");
    const struct toml_keyval *timeouts = toml_table_get(server->value, "timeouts");
    CHECK(listen && timeouts);
    if (listen && timeouts) {
        CHECK_AT(listen, 4, 3);
        CHECK_AT(listen->value, 4, 12);
        CHECK_AT(listen->value->u.array.items[1], 4, 18);
        CHECK_AT(timeouts, 5, 3);
        const struct toml_keyval *connect = toml_table_get(timeouts->value, "connect");
        CHECK(connect != NULL);
        if (connect) {
            CHECK_AT(connect, 5, 12);
            CHECK_AT(connect->value, 5, 22);
        }
    }
    CHECK_AT(apps, 6, 3);
    CHECK_AT(apps->value, 6, 1);
    CHECK_INT(apps->value->type, TOML_ARRAY);
    const struct toml_value *app = apps->value->u.array.items[0];
    CHECK_AT(app, 6, 1);
    const struct toml_keyval *port = toml_table_get(app, "port");
    CHECK(port && port->value->type == TOML_INTEGER && port->value->u.integer == 8001);
    if (port)
        CHECK_AT(port->value, 7, 8);
done:
    toml_free(root);
}

/* Each document must be refused with exactly this message. */
static void test_error_messages(void)
{
    static const char *const cases[][2] = {
        {"a = 1\na = 2\n", "2:1: duplicate key 'a'"},
        {"a = 1\nb = \n", "2:5: expected a value, found end of line"},
        {"a = 1\nb = \"abc\n", "2:5: unterminated string"},
        {"[a]\nx = 1\n[a]\n", "3:2: table 'a' is already defined"},
        {"a.b = 1\n[a]\n", "2:2: 'a' is already a table defined by dotted keys"},
        {"a = {b = 1}\na.c = 2\n", "2:1: 'a' is already an inline table, which cannot be extended"},
        {"a = 1\n[a.b]\n", "2:2: 'a' is already an integer"},
        {"n = 9223372036854775808", "1:5: integer out of 64-bit range '9223372036854775808'"},
        {"d = 2023-02-29", "1:5: invalid date or time '2023-02-29'"},
        {"s = \"\\ud800\"", "1:6: escape \\ud800 is not a Unicode scalar value"},
        {"a = \"\xc0\x80\"", "1:6: invalid UTF-8 (byte 0xc0)"},
        {"a = 1\rb = 2", "1:6: carriage return not followed by line feed"},
        {"a = bare", "1:5: invalid value 'bare' (strings need quotes)"},
        {"t = {a = 1,}", "1:12: expected a key, found '}'"},
        {"t = {a = 1\n}", "1:11: expected ',' or '}' in inline table, found end of line"},
        {"# \x01\n", "1:3: control character 0x01 in comment"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        struct toml_value *root = parse(cases[i][0], err, sizeof err);
        CHECK_MSG(root == NULL && strcmp(err, cases[i][1]) == 0, "case %zu: \"%s\" != \"%s\"", i,
                  err, cases[i][1]);
        toml_free(root);
    }
}

/* Documents nested n deep: arrays, inline tables, dotted keys, headers. */
static char *nested(int n, const char *kind)
{
    char *s = malloc((size_t)n * 8 + 16), *w = s;
    if (!s)
        return NULL;
    if (strcmp(kind, "header") == 0 || strcmp(kind, "dotted") == 0) {
        w += sprintf(w, "%s", kind[0] == 'h' ? "[k" : "k");
        for (int i = 1; i < n; i++)
            w += sprintf(w, ".k");
        sprintf(w, "%s", kind[0] == 'h' ? "]\n" : " = 1\n");
        return s;
    }
    bool array = strcmp(kind, "array") == 0;
    w += sprintf(w, "a = ");
    for (int i = 0; i < n; i++)
        w += sprintf(w, array ? "[" : "{b = ");
    w += sprintf(w, "1");
    for (int i = 0; i < n; i++)
        w += sprintf(w, array ? "]" : "}");
    return s;
}

static void test_depth_limit(void)
{
    static const char *const kinds[] = {"array", "inline", "dotted", "header"};
    for (size_t k = 0; k < 4; k++) {
        char err[256];
        /* arrays/inline tables add one level per bracket below the key "a" */
        int deepest = k < 2 ? TOML_MAX_DEPTH - 1 : TOML_MAX_DEPTH;
        char *ok = nested(deepest, kinds[k]), *deep = nested(deepest + 1, kinds[k]);
        char *huge = nested(100000, kinds[k]);
        struct toml_value *root = parse(ok, err, sizeof err);
        CHECK_MSG(root != NULL, "%s at the limit: %s", kinds[k], err);
        toml_free(root);
        root = parse(deep, err, sizeof err);
        CHECK_MSG(root == NULL && strstr(err, "deeper than 128"), "%s past the limit", kinds[k]);
        toml_free(root);
        root = parse(huge, err, sizeof err);
        CHECK_MSG(root == NULL && strstr(err, "deeper than 128"), "%s far past it", kinds[k]);
        toml_free(root);
        free(ok);
        free(deep);
        free(huge);
    }
}

static const struct toml_value *get(const struct toml_value *table, const char *key)
{
    const struct toml_keyval *kv = toml_table_get(table, key);
    return kv ? kv->value : NULL;
}

static void test_values(void)
{
    const char *doc = "min = -9223372036854775808\n"
                      "max = 0x7fffffffffffffff\n"
                      "nul = \"a\\u0000b\"\n"
                      "crlf = \"\"\"\r\none\r\ntwo\"\"\"\n"
                      "when = 1979-05-27 07:32:00.5z\n"
                      "lower = 1979-05-27t07:32:00\n"
                      "esc = \"[\\e]\"\n";
    char err[256];
    struct toml_value *root = parse(doc, err, sizeof err);
    CHECK_MSG(root != NULL, "%s", err);
    if (!root)
        return;
    const struct toml_value *v;
    CHECK((v = get(root, "min")) && v->u.integer == INT64_MIN);
    CHECK((v = get(root, "max")) && v->u.integer == INT64_MAX);
    v = get(root, "nul");
    CHECK(v && v->u.string.len == 3 && memcmp(v->u.string.ptr, "a\0b", 4) == 0);
    CHECK((v = get(root, "crlf")) && strcmp(v->u.string.ptr, "one\ntwo") == 0);
    CHECK((v = get(root, "when")) && v->type == TOML_DATETIME);
    if (v)
        CHECK_STR(v->u.string.ptr, "1979-05-27T07:32:00.5z");
    CHECK((v = get(root, "lower")) && v->type == TOML_DATETIME_LOCAL);
    if (v)
        CHECK_STR(v->u.string.ptr, "1979-05-27T07:32:00");
    CHECK((v = get(root, "esc")) && strcmp(v->u.string.ptr, "[\x1b]") == 0);
    CHECK(get(root, "absent") == NULL);
    CHECK(toml_table_get(get(root, "min"), "x") == NULL);   /* not a table */
    CHECK(toml_table_get(NULL, "x") == NULL);
    CHECK_STR(toml_type_name(TOML_BOOL), "boolean");
    CHECK_STR(toml_type_name(TOML_DATE_LOCAL), "local date");
    toml_free(root);
    toml_free(NULL);

    CHECK(parse("x = 0x8000000000000000", err, sizeof err) == NULL);
    CHECK(parse("x = 1e400", err, sizeof err) == NULL);
    CHECK(toml_parse("x =", 3, NULL, 0) == NULL);            /* no error buffer */
    char tiny[4];
    CHECK(toml_parse("x =", 3, tiny, sizeof tiny) == NULL);  /* message cut short */
    CHECK_STR(tiny, "1:4");
    root = toml_parse("", 0, err, sizeof err);
    CHECK(root && root->type == TOML_TABLE && root->u.table.len == 0);
    toml_free(root);
}

void unit_test_toml(void)
{
    run_debian_copy();
    run_full_copy();
    test_positions();
    test_error_messages();
    test_depth_limit();
    test_values();
}
