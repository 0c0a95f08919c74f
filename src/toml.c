/* toml.c - a TOML 1.0 parser: the whole document in, a tree of values out.
 *
 * The parser is recursive descent over one contiguous buffer (configs are
 * small, so nothing streams). Four decisions shape the code:
 *
 *  - The whole text is checked to be UTF-8 before any parsing (no overlong
 *    forms, no surrogates, nothing past U+10FFFF). From then on a byte >= 0x80
 *    is always part of a valid character and can be copied without decoding.
 *
 *  - The cursor is a byte offset; lines and columns are not tracked while
 *    scanning. locate() turns an offset into a 1-based line and column (in
 *    characters) on demand, walking forward from its previous answer. Callers
 *    ask in increasing order -- key parts before values, a container before
 *    its items -- so one parse costs linear time overall.
 *
 *  - The tree is built in place. A value is attached to its parent as soon
 *    as it exists (containers are then filled), and anything not yet attached
 *    is freed by whoever created it, so on any error one toml_free(root)
 *    releases everything.
 *
 *  - TOML's define-once rules live in toml_value.flags (see the enum below),
 *    checked at the moment a header or key names an existing value; there is
 *    no second pass.
 *
 * Recursion happens only for arrays and inline tables, bounded by
 * TOML_MAX_DEPTH. Key components count towards the same depth, so the tree
 * itself is never deeper than about twice that, and toml_free's recursion
 * is bounded too.
 *
 * Errors: the first failure writes "LINE:COL: message" into the caller's
 * buffer; every function then returns -1 (or NULL) straight up to toml_parse.
 *
 * Floats are converted with strtod, which follows LC_NUMERIC: sluice never
 * calls setlocale, so the decimal point is '.'.
 */
#include "toml.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How a table came to exist, which decides what may add to it later.
 *   TABLE_IMPLICIT  named only as a parent in a header (a.b in [a.b.c]); one
 *                   later [a.b] header may still define it.
 *   TABLE_DEFINED   opened by its own [header] or [[header]] (or the root).
 *   TABLE_DOTTED    created by a dotted key (a.b = 1). Further dotted keys of
 *                   the same section may add to it, and headers may open
 *                   sub-tables below it, but no header may define it.
 *   VALUE_FROZEN    an inline table or an array literal: complete as written.
 *   ARRAY_OF_TABLES an array created by [[header]]: headers append to it,
 *                   and headers below it descend into its last table.
 * Dotted keys only ever descend into TABLE_DOTTED tables: any other table was
 * defined elsewhere (toml-lang/toml#846). */
enum {
    TABLE_IMPLICIT = 1 << 0,
    TABLE_DEFINED = 1 << 1,
    TABLE_DOTTED = 1 << 2,
    VALUE_FROZEN = 1 << 3,
    ARRAY_OF_TABLES = 1 << 4,
};

/* Every key of every table, hashed by (table, key) for the duration of one
 * parse, so that building a table of n keys is not O(n^2). A slot names a
 * table and a position in its items; the key text stays in the table. A
 * table freed mid-parse leaves stale slots behind, which is harmless because
 * a freed table means the parse failed and no lookup follows. */
struct key_slot {
    const struct toml_value *table;     /* NULL: empty slot */
    size_t item;
};

struct key_index {
    struct key_slot *slots;
    size_t cap, used;                   /* cap: 0 or a power of two */
};

struct parser {
    const char *text;
    size_t len, pos;
    char *err;
    size_t errlen;
    bool failed;
    char found[32];             /* describe()'s answer */
    /* locate()'s memo: the line and column of cache_offset */
    size_t cache_offset;
    int cache_line, cache_col;
    struct key_index index;
    struct toml_value *root;
    struct toml_value *section;     /* the table the last header opened */
    int section_depth;              /* its number of key components */
};

/* One component of a dotted key, escapes decoded; text is NUL-terminated. */
struct key_part {
    char *text;
    size_t len;
    size_t offset;
    int line, col;
};

struct key_path {
    struct key_part *parts;
    int count, cap;
};

/* A growing byte string, always NUL-terminated once anything was put. */
struct buffer {
    char *data;
    size_t len, cap;
};

/* ---- Positions and errors ---------------------------------------------- */

static void locate(struct parser *p, size_t offset, int *line, int *col)
{
    if (offset < p->cache_offset) {
        p->cache_offset = 0;
        p->cache_line = p->cache_col = 1;
    }
    for (size_t i = p->cache_offset; i < offset; i++) {
        unsigned char c = (unsigned char)p->text[i];
        if (c == '\n') {
            p->cache_line++;
            p->cache_col = 1;
        } else if ((c & 0xC0) != 0x80) {    /* not a UTF-8 continuation byte */
            p->cache_col++;
        }
    }
    p->cache_offset = offset;
    *line = p->cache_line;
    *col = p->cache_col;
}

__attribute__((format(printf, 3, 4)))
static int fail_at(struct parser *p, size_t offset, const char *fmt, ...)
{
    if (p->failed)
        return -1;
    p->failed = true;
    if (!p->err || p->errlen == 0)
        return -1;
    int line, col;
    locate(p, offset, &line, &col);
    int n = snprintf(p->err, p->errlen, "%d:%d: ", line, col);
    if (n > 0 && (size_t)n < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define fail(p, ...) fail_at((p), (p)->pos, __VA_ARGS__)

/* How much of a key or a bad token an error message quotes. */
#define SHOWN(n) ((int)((n) > 64 ? 64 : (n)))

static int fail_memory(struct parser *p)
{
    return fail(p, "out of memory");
}

/* ---- Looking at the text ----------------------------------------------- */

static int peek_at(const struct parser *p, size_t ahead)
{
    size_t i = p->pos + ahead;
    return i < p->len ? (unsigned char)p->text[i] : -1;
}

static int peek(const struct parser *p)
{
    return peek_at(p, 0);
}

static bool looking_at(const struct parser *p, const char *s)
{
    size_t n = strlen(s);
    return p->len - p->pos >= n && memcmp(p->text + p->pos, s, n) == 0;
}

/* The character at the cursor, for messages: 'x', end of file, 0x0b. */
static const char *describe(struct parser *p)
{
    int c = peek(p);
    if (c < 0)
        return "end of file";
    if (c == '\n' || c == '\r')
        return "end of line";
    if (c < 0x20 || c >= 0x7f)
        snprintf(p->found, sizeof p->found, "byte 0x%02x", (unsigned)c);
    else
        snprintf(p->found, sizeof p->found, "'%c'", c);
    return p->found;
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* Value of a hexadecimal digit, or -1. */
static int digit_value(int c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* TOML 1.0 forbids U+0000-U+0008, U+000A-U+001F and U+007F in strings and
 * comments; newlines are handled by the callers before asking. */
static bool is_control(int c)
{
    return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

static bool is_bare_key_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' ||
           c == '-';
}

/* Characters of the unquoted values: numbers, booleans, dates and times. */
static bool is_token_char(int c)
{
    return is_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 table 3-7), or 0. */
static size_t utf8_sequence_length(const unsigned char *s, size_t avail)
{
    unsigned lead = s[0], low = 0x80, high = 0xBF;
    size_t n;
    if (lead < 0x80)
        return 1;
    if (lead >= 0xC2 && lead <= 0xDF)
        n = 2;
    else if (lead >= 0xE0 && lead <= 0xEF)
        n = 3;
    else if (lead >= 0xF0 && lead <= 0xF4)
        n = 4;
    else
        return 0;
    if (lead == 0xE0)
        low = 0xA0;             /* overlong */
    else if (lead == 0xED)
        high = 0x9F;            /* surrogates */
    else if (lead == 0xF0)
        low = 0x90;             /* overlong */
    else if (lead == 0xF4)
        high = 0x8F;            /* beyond U+10FFFF */
    if (avail < n || s[1] < low || s[1] > high)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

static int check_utf8(struct parser *p)
{
    const unsigned char *s = (const unsigned char *)p->text;
    for (size_t i = 0; i < p->len;) {
        size_t n = utf8_sequence_length(s + i, p->len - i);
        if (n == 0)
            return fail_at(p, i, "invalid UTF-8 (byte 0x%02x)", s[i]);
        i += n;
    }
    return 0;
}

/* ---- Whitespace, newlines, comments ------------------------------------ */

static void skip_whitespace(struct parser *p)
{
    while (peek(p) == ' ' || peek(p) == '\t')
        p->pos++;
}

/* Consumes one LF or CRLF: 1 if there was one, 0 if not, -1 on a bare CR. */
static int eat_newline(struct parser *p)
{
    if (peek(p) == '\n') {
        p->pos++;
        return 1;
    }
    if (peek(p) != '\r')
        return 0;
    if (peek_at(p, 1) != '\n')
        return fail(p, "carriage return not followed by line feed");
    p->pos += 2;
    return 1;
}

/* Skips a comment up to (not including) its newline. */
static int skip_comment(struct parser *p)
{
    if (peek(p) != '#')
        return 0;
    for (p->pos++; p->pos < p->len; p->pos++) {
        int c = peek(p);
        if (c == '\n' || (c == '\r' && peek_at(p, 1) == '\n'))
            break;
        if (is_control(c))
            return fail(p, "control character 0x%02x in comment", (unsigned)c);
    }
    return 0;
}

/* Whitespace, comments and newlines: what may sit between array items. */
static int skip_blank(struct parser *p)
{
    for (;;) {
        skip_whitespace(p);
        if (skip_comment(p) < 0)
            return -1;
        int r = eat_newline(p);
        if (r <= 0)
            return r;
    }
}

/* After a key/value pair or a header, only a comment may end the line. */
static int end_line(struct parser *p)
{
    skip_whitespace(p);
    if (skip_comment(p) < 0)
        return -1;
    if (p->pos == p->len)
        return 0;
    int r = eat_newline(p);
    if (r == 0)
        return fail(p, "expected end of line, found %s", describe(p));
    return r < 0 ? -1 : 0;
}

/* ---- Buffers ------------------------------------------------------------ */

static int buffer_put(struct parser *p, struct buffer *b, const char *s, size_t n)
{
    if (b->cap - b->len <= n) {
        size_t cap = b->cap ? b->cap : 16;
        while (cap - b->len <= n)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data)
            return fail_memory(p);
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int buffer_putc(struct parser *p, struct buffer *b, char c)
{
    return buffer_put(p, b, &c, 1);
}

static int buffer_put_codepoint(struct parser *p, struct buffer *b, uint32_t cp)
{
    char s[4];
    size_t n;
    if (cp < 0x80) {
        s[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (char)(0xC0 | cp >> 6);
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (char)(0xE0 | cp >> 12);
        n = 3;
    } else {
        s[0] = (char)(0xF0 | cp >> 18);
        n = 4;
    }
    for (size_t i = 1; i < n; i++)
        s[i] = (char)(0x80 | ((cp >> (6 * (n - 1 - i))) & 0x3F));
    return buffer_put(p, b, s, n);
}

/* ---- Strings ------------------------------------------------------------ */

/* \uXXXX or \UXXXXXXXX at the cursor; only Unicode scalar values. */
static int parse_unicode_escape(struct parser *p, struct buffer *out, int digits)
{
    uint32_t cp = 0;
    for (int i = 0; i < digits; i++) {
        int d = digit_value(peek_at(p, 2 + (size_t)i));
        if (d < 0)
            return fail(p, "\\%c escape needs %d hexadecimal digits", peek_at(p, 1), digits);
        cp = cp << 4 | (uint32_t)d;
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return fail(p, "escape \\%.*s is not a Unicode scalar value", digits + 1,
                    p->text + p->pos + 1);
    p->pos += 2 + (size_t)digits;
    return buffer_put_codepoint(p, out, cp);
}

/* A backslash escape of a basic string, cursor on the backslash. */
static int parse_escape(struct parser *p, struct buffer *out)
{
    char c;
    switch (peek_at(p, 1)) {
    case 'b': c = '\b'; break;
    case 't': c = '\t'; break;
    case 'n': c = '\n'; break;
    case 'f': c = '\f'; break;
    case 'r': c = '\r'; break;
    /* ESC, from TOML 1.1: the toml-test suite Debian ships counts it valid,
     * and in a TOML 1.0 document it could only be an error. */
    case 'e': c = '\x1b'; break;
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case 'u': return parse_unicode_escape(p, out, 4);
    case 'U': return parse_unicode_escape(p, out, 8);
    default: return fail(p, "invalid escape sequence");
    }
    p->pos += 2;
    return buffer_putc(p, out, c);
}

/* Copies one byte of string content, refusing control characters. */
static int take_string_byte(struct parser *p, struct buffer *out)
{
    int c = peek(p);
    if (is_control(c))
        return fail(p, "control character 0x%02x in string", (unsigned)c);
    p->pos++;
    return buffer_putc(p, out, (char)c);
}

/* "basic" or 'literal' on one line. */
static int parse_single_line_string(struct parser *p, struct buffer *out)
{
    size_t start = p->pos;
    int quote = peek(p);
    for (p->pos++;;) {
        int c = peek(p), r;
        if (c == quote) {
            p->pos++;
            return 0;
        }
        if (c < 0 || c == '\n' || c == '\r')
            return fail_at(p, start, "unterminated string");
        if (c == '\\' && quote == '"')
            r = parse_escape(p, out);
        else
            r = take_string_byte(p, out);
        if (r < 0)
            return -1;
    }
}

/* A run of quote characters inside a multi-line string. Up to two may be
 * content; three close the string, and up to two more right before them are
 * still content (""""" ends with two quotes). 1 = closed, 0 = content. */
static int take_quotes(struct parser *p, struct buffer *out, int quote)
{
    size_t n = 0;
    while (peek_at(p, n) == quote)
        n++;
    if (n > 5)
        return fail(p, "too many quotes in a row in multi-line string");
    size_t content = n >= 3 ? n - 3 : n;
    for (size_t i = 0; i < content; i++)
        if (buffer_putc(p, out, (char)quote) < 0)
            return -1;
    p->pos += n;
    return n >= 3;
}

/* A backslash in a multi-line basic string: an escape, unless only
 * whitespace follows it on the line; then it joins the lines, eating all
 * whitespace and newlines up to the next other character. */
static int parse_multi_line_backslash(struct parser *p, struct buffer *out)
{
    size_t i = 1;
    while (peek_at(p, i) == ' ' || peek_at(p, i) == '\t')
        i++;
    if (peek_at(p, i) != '\n' && peek_at(p, i) != '\r')
        return parse_escape(p, out);
    p->pos += i;
    for (;;) {
        skip_whitespace(p);
        int r = eat_newline(p);
        if (r <= 0)
            return r;
    }
}

/* """basic""" or '''literal''' spanning lines; newlines come out as \n. */
static int parse_multi_line_string(struct parser *p, struct buffer *out)
{
    size_t start = p->pos;
    int quote = peek(p);
    p->pos += 3;
    if (eat_newline(p) < 0)     /* a newline right after the opening is trimmed */
        return -1;
    for (;;) {
        int c = peek(p), r;
        if (c < 0)
            return fail_at(p, start, "unterminated multi-line string");
        if (c == quote) {
            r = take_quotes(p, out, quote);
            if (r != 0)
                return r < 0 ? -1 : 0;
            continue;
        }
        if (c == '\n' || c == '\r')
            r = eat_newline(p) < 0 ? -1 : buffer_putc(p, out, '\n');
        else if (c == '\\' && quote == '"')
            r = parse_multi_line_backslash(p, out);
        else
            r = take_string_byte(p, out);
        if (r < 0)
            return -1;
    }
}

/* Any string at the cursor (which is on a quote) into out. */
static int parse_string(struct parser *p, struct buffer *out, bool multi_line_allowed)
{
    int quote = peek(p);
    if (buffer_put(p, out, "", 0) < 0)      /* even "" gets its own allocation */
        return -1;
    if (peek_at(p, 1) != quote || peek_at(p, 2) != quote)
        return parse_single_line_string(p, out);
    if (!multi_line_allowed)
        return fail(p, "a key cannot be a multi-line string");
    return parse_multi_line_string(p, out);
}

/* ---- Keys --------------------------------------------------------------- */

static int parse_key_part(struct parser *p, struct key_part *part)
{
    struct buffer b = {0};
    int r, c = peek(p);
    part->offset = p->pos;
    locate(p, p->pos, &part->line, &part->col);
    if (c == '"' || c == '\'') {
        r = parse_string(p, &b, false);
    } else {
        size_t start = p->pos;
        while (is_bare_key_char(peek(p)))
            p->pos++;
        if (p->pos == start)
            r = fail(p, "expected a key, found %s", describe(p));
        else
            r = buffer_put(p, &b, p->text + start, p->pos - start);
    }
    if (r < 0) {
        free(b.data);
        return -1;
    }
    part->text = b.data;
    part->len = b.len;
    return 0;
}

static void key_path_clear(struct key_path *path)
{
    for (int i = 0; i < path->count; i++)
        free(path->parts[i].text);
    free(path->parts);
    *path = (struct key_path){0};
}

/* key, or key.key.key with optional whitespace around the dots; stops after
 * the whitespace following the last part. */
static int parse_key(struct parser *p, struct key_path *path)
{
    for (;;) {
        if (path->count == path->cap) {
            int cap = path->cap ? path->cap * 2 : 4;
            struct key_part *parts = realloc(path->parts, (size_t)cap * sizeof *parts);
            if (!parts)
                return fail_memory(p);
            path->parts = parts;
            path->cap = cap;
        }
        if (parse_key_part(p, &path->parts[path->count]) < 0)
            return -1;
        path->count++;
        skip_whitespace(p);
        if (peek(p) != '.')
            return 0;
        p->pos++;
        skip_whitespace(p);
    }
}

/* ---- Tree building ------------------------------------------------------ */

static struct toml_value *value_new(struct parser *p, enum toml_type type)
{
    struct toml_value *v = calloc(1, sizeof *v);
    if (!v)
        fail_memory(p);
    else
        v->type = type;
    return v;
}

static uint64_t key_hash(const struct toml_value *table, const char *key, size_t len)
{
    uint64_t h = 14695981039346656037u ^ ((uint64_t)(uintptr_t)table * 0x9E3779B97F4A7C15u);
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211u;     /* FNV-1a */
    return h;
}

static struct toml_keyval *table_find(struct parser *p, const struct toml_value *table,
                                      const char *key, size_t len)
{
    if (p->index.cap == 0)
        return NULL;
    size_t mask = p->index.cap - 1;
    for (size_t i = key_hash(table, key, len) & mask;; i = (i + 1) & mask) {
        const struct key_slot *slot = &p->index.slots[i];
        if (!slot->table)
            return NULL;
        struct toml_keyval *kv = &slot->table->u.table.items[slot->item];
        if (slot->table == table && kv->key_len == len && memcmp(kv->key, key, len) == 0)
            return kv;
    }
}

static void index_put(struct key_index *index, const struct toml_value *table, size_t item)
{
    const struct toml_keyval *kv = &table->u.table.items[item];
    size_t mask = index->cap - 1, i = key_hash(table, kv->key, kv->key_len) & mask;
    while (index->slots[i].table)
        i = (i + 1) & mask;
    index->slots[i] = (struct key_slot){table, item};
    index->used++;
}

/* Makes room for one more key, keeping the load at most one half. */
static int index_reserve(struct parser *p)
{
    struct key_index old = p->index;
    if ((old.used + 1) * 2 <= old.cap)
        return 0;
    struct key_index grown = {.cap = old.cap ? old.cap * 2 : 64};
    grown.slots = calloc(grown.cap, sizeof *grown.slots);
    if (!grown.slots)
        return fail_memory(p);
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].table)
            index_put(&grown, old.slots[i].table, old.slots[i].item);
    free(old.slots);
    p->index = grown;
    return 0;
}

/* Adds part -> value to table. Takes ownership of value (freed on failure;
 * NULL means its parsing failed already). Returns value or NULL. */
static struct toml_value *table_add(struct parser *p, struct toml_value *table,
                                    const struct key_part *part, struct toml_value *value)
{
    if (!value)
        return NULL;
    struct toml_keyval *items = table->u.table.items;
    size_t cap = table->u.table.cap;
    if (table->u.table.len == cap) {
        cap = cap ? cap * 2 : 4;
        items = realloc(items, cap * sizeof *items);
        if (items) {
            table->u.table.items = items;
            table->u.table.cap = cap;
        }
    }
    char *key = malloc(part->len + 1);
    if (!items || !key || index_reserve(p) < 0) {
        free(key);
        toml_free(value);
        fail_memory(p);
        return NULL;
    }
    memcpy(key, part->text, part->len + 1);
    items[table->u.table.len] = (struct toml_keyval){
        .key = key, .key_len = part->len, .line = part->line, .col = part->col, .value = value,
    };
    index_put(&p->index, table, table->u.table.len++);
    return value;
}

/* Appends value to array; same ownership rule as table_add. */
static struct toml_value *array_push(struct parser *p, struct toml_value *array,
                                     struct toml_value *value)
{
    if (!value)
        return NULL;
    struct toml_value **items = array->u.array.items;
    size_t cap = array->u.array.cap;
    if (array->u.array.len == cap) {
        cap = cap ? cap * 2 : 4;
        items = realloc(items, cap * sizeof *items);
        if (!items) {
            toml_free(value);
            fail_memory(p);
            return NULL;
        }
        array->u.array.items = items;
        array->u.array.cap = cap;
    }
    items[array->u.array.len++] = value;
    return value;
}

/* A new empty table under part, positioned where part was written. */
static struct toml_value *table_add_table(struct parser *p, struct toml_value *table,
                                          const struct key_part *part, uint8_t flags)
{
    struct toml_value *child = value_new(p, TOML_TABLE);
    if (child) {
        child->flags = flags;
        child->line = part->line;
        child->col = part->col;
    }
    return table_add(p, table, part, child);
}

/* The error for a key that names a value which may not be added to or
 * redefined here. */
static int conflict(struct parser *p, const struct key_part *part, const struct toml_value *v)
{
    const char *what = NULL;
    if (v->type == TOML_TABLE && (v->flags & VALUE_FROZEN))
        what = "an inline table, which cannot be extended";
    else if (v->type == TOML_TABLE && (v->flags & TABLE_DOTTED))
        what = "a table defined by dotted keys";
    else if (v->type == TOML_TABLE)
        what = "a table defined by a [header]";
    else if (v->type == TOML_ARRAY && (v->flags & ARRAY_OF_TABLES))
        what = "an array of tables";
    else if (v->type == TOML_ARRAY)
        what = "an array, which cannot be extended";
    if (what)
        return fail_at(p, part->offset, "'%.*s' is already %s", SHOWN(part->len), part->text, what);
    const char *name = toml_type_name(v->type);
    return fail_at(p, part->offset, "'%.*s' is already %s %s", SHOWN(part->len), part->text,
                   strchr("aeiou", name[0]) ? "an" : "a", name);
}

/* One intermediate step of a header path: the table to continue in. */
static struct toml_value *header_step(struct parser *p, struct toml_value *table,
                                      const struct key_part *part)
{
    struct toml_keyval *kv = table_find(p, table, part->text, part->len);
    if (!kv)
        return table_add_table(p, table, part, TABLE_IMPLICIT);
    struct toml_value *v = kv->value;
    if (v->type == TOML_ARRAY && (v->flags & ARRAY_OF_TABLES))
        return v->u.array.items[v->u.array.len - 1];    /* never empty */
    if (v->type == TOML_TABLE && !(v->flags & VALUE_FROZEN))
        return v;
    conflict(p, part, v);
    return NULL;
}

/* The table that holds the last component of a header's path. */
static struct toml_value *header_parent(struct parser *p, const struct key_path *path)
{
    struct toml_value *table = p->root;
    for (int i = 0; table && i < path->count - 1; i++)
        table = header_step(p, table, &path->parts[i]);
    return table;
}

static void open_section(struct parser *p, struct toml_value *table, const struct key_path *path,
                         int line, int col)
{
    table->line = line;
    table->col = col;
    p->section = table;
    p->section_depth = path->count;
}

/* [a.b.c] */
static int open_table(struct parser *p, const struct key_path *path, int line, int col)
{
    struct toml_value *parent = header_parent(p, path);
    if (!parent)
        return -1;
    const struct key_part *last = &path->parts[path->count - 1];
    struct toml_keyval *kv = table_find(p, parent, last->text, last->len);
    struct toml_value *table;
    if (!kv) {
        table = table_add_table(p, parent, last, TABLE_DEFINED);
        if (!table)
            return -1;
    } else if (kv->value->type == TOML_TABLE && kv->value->flags == TABLE_IMPLICIT) {
        table = kv->value;
        table->flags = TABLE_DEFINED;
    } else if (kv->value->type == TOML_TABLE && kv->value->flags == TABLE_DEFINED) {
        return fail_at(p, last->offset, "table '%.*s' is already defined", SHOWN(last->len),
                       last->text);
    } else {
        return conflict(p, last, kv->value);
    }
    open_section(p, table, path, line, col);
    return 0;
}

/* [[a.b.c]] */
static int open_array_table(struct parser *p, const struct key_path *path, int line, int col)
{
    struct toml_value *parent = header_parent(p, path);
    if (!parent)
        return -1;
    const struct key_part *last = &path->parts[path->count - 1];
    struct toml_keyval *kv = table_find(p, parent, last->text, last->len);
    struct toml_value *array;
    if (kv && kv->value->type == TOML_ARRAY && (kv->value->flags & ARRAY_OF_TABLES)) {
        array = kv->value;
    } else if (kv) {
        return conflict(p, last, kv->value);
    } else {
        array = table_add(p, parent, last, value_new(p, TOML_ARRAY));
        if (!array)
            return -1;
        array->flags = ARRAY_OF_TABLES;
        array->line = line;
        array->col = col;
    }
    struct toml_value *table = array_push(p, array, value_new(p, TOML_TABLE));
    if (!table)
        return -1;
    table->flags = TABLE_DEFINED;
    open_section(p, table, path, line, col);
    return 0;
}

/* For key.key.key = value in table: descends (creating dotted tables) to the
 * table that will hold the last part, which must not exist yet. */
static struct toml_value *dotted_parent(struct parser *p, struct toml_value *table,
                                        const struct key_path *path)
{
    for (int i = 0; table && i < path->count - 1; i++) {
        const struct key_part *part = &path->parts[i];
        struct toml_keyval *kv = table_find(p, table, part->text, part->len);
        if (!kv)
            table = table_add_table(p, table, part, TABLE_DOTTED);
        else if (kv->value->type == TOML_TABLE && kv->value->flags == TABLE_DOTTED)
            table = kv->value;
        else {
            conflict(p, part, kv->value);
            return NULL;
        }
    }
    if (!table)
        return NULL;
    const struct key_part *last = &path->parts[path->count - 1];
    if (table_find(p, table, last->text, last->len)) {
        fail_at(p, last->offset, "duplicate key '%.*s'", SHOWN(last->len), last->text);
        return NULL;
    }
    return table;
}

/* ---- Unquoted values: booleans, numbers, dates and times --------------- */

static bool token_is(const char *s, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

/* Digits of the base, underscores only between two digits, at least one. */
static bool is_digit_run(const char *s, size_t n, int base)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_') {
            if (i == 0 || i + 1 == n || s[i + 1] == '_')
                return false;
        } else {
            int d = digit_value((unsigned char)s[i]);
            if (d < 0 || d >= base)
                return false;
        }
    }
    return true;
}

/* The magnitude of a digit run, if it is at most limit. */
static bool digits_value(const char *s, size_t n, int base, uint64_t limit, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_')
            continue;
        uint64_t d = (uint64_t)digit_value((unsigned char)s[i]);
        if (v > (limit - d) / (uint64_t)base)
            return false;
        v = v * (uint64_t)base + d;
    }
    *out = v;
    return true;
}

/* 16, 8 or 2 for 0x/0o/0b (never signed), else 10. */
static int radix_of(const char *s, size_t n)
{
    if (n < 2 || s[0] != '0')
        return 10;
    return s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : s[1] == 'b' ? 2 : 10;
}

/* NULL with *out set, or what is wrong with the integer. */
static const char *integer_value(const char *s, size_t n, int64_t *out)
{
    int base = radix_of(s, n);
    bool negative = false;
    if (base != 10) {
        s += 2;
        n -= 2;
    } else if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        s++;
        n--;
    }
    if (!is_digit_run(s, n, base))
        return "invalid integer";
    if (base == 10 && s[0] == '0' && n > 1)
        return "leading zero in integer";
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t magnitude;
    if (!digits_value(s, n, base, limit, &magnitude))
        return "integer out of 64-bit range";
    if (!negative)
        *out = (int64_t)magnitude;
    else
        *out = magnitude > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)magnitude;
    return NULL;
}

static size_t span_digits(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (is_digit((unsigned char)s[i]) || s[i] == '_'))
        i++;
    return i;
}

/* Checks dec-int [frac] [exp] (one of the last two required), no sign. */
static bool is_float_syntax(const char *s, size_t n)
{
    size_t i = span_digits(s, n);
    if (!is_digit_run(s, i, 10) || (s[0] == '0' && i > 1))
        return false;
    bool fraction = i < n && s[i] == '.';
    if (fraction) {
        size_t f = span_digits(s + i + 1, n - i - 1);
        if (!is_digit_run(s + i + 1, f, 10))
            return false;
        i += 1 + f;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        return is_digit_run(s + i, n - i, 10);
    }
    return fraction && i == n;
}

/* NULL with *out set, or what is wrong with the float. */
static const char *float_value(const char *s, size_t n, double *out)
{
    double sign = n > 0 && s[0] == '-' ? -1.0 : 1.0;
    size_t skip = n > 0 && (s[0] == '-' || s[0] == '+');
    const char *body = s + skip;
    size_t len = n - skip;
    if (token_is(body, len, "inf") || token_is(body, len, "nan")) {
        *out = copysign(body[0] == 'i' ? INFINITY : NAN, sign);
        return NULL;
    }
    if (!is_float_syntax(body, len))
        return "invalid float";
    char *digits = malloc(n + 1), *end;
    if (!digits)
        return "out of memory";
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '_')
            digits[k++] = s[i];
    digits[k] = '\0';
    *out = strtod(digits, &end);
    free(digits);
    return isinf(*out) ? "float out of range" : NULL;
}

/* Two decimal digits at s, or -1. */
static int two_digits(const char *s)
{
    if (!is_digit((unsigned char)s[0]) || !is_digit((unsigned char)s[1]))
        return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    return month == 2 && leap ? 29 : days[month - 1];
}

/* YYYY-MM-DD, a real calendar day. */
static bool is_date(const char *s, size_t n)
{
    if (n < 10 || s[4] != '-' || s[7] != '-')
        return false;
    int century = two_digits(s), year = two_digits(s + 2);
    int month = two_digits(s + 5), day = two_digits(s + 8);
    if (century < 0 || year < 0 || month < 1 || month > 12 || day < 1)
        return false;
    return day <= days_in_month(century * 100 + year, month);
}

/* HH:MM:SS[.fraction]; *used gets its length. Seconds may be 60 (leap). */
static bool is_time(const char *s, size_t n, size_t *used)
{
    if (n < 8 || s[2] != ':' || s[5] != ':')
        return false;
    int hour = two_digits(s), minute = two_digits(s + 3), second = two_digits(s + 6);
    if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60)
        return false;
    size_t i = 8;
    if (i < n && s[i] == '.') {
        for (i++; i < n && is_digit((unsigned char)s[i]); i++)
            ;
        if (i == 9)
            return false;
    }
    *used = i;
    return true;
}

/* Z or +HH:MM / -HH:MM, the whole rest of the token. */
static bool is_offset(const char *s, size_t n)
{
    if (n == 1)
        return s[0] == 'Z' || s[0] == 'z';
    if (n != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':')
        return false;
    int hour = two_digits(s + 1), minute = two_digits(s + 4);
    return hour >= 0 && hour <= 23 && minute >= 0 && minute <= 59;
}

/* Which date/time kind the token is, if it is a valid one. */
static bool date_time_kind(const char *s, size_t n, enum toml_type *type)
{
    size_t used;
    if (n >= 3 && s[2] == ':') {
        *type = TOML_TIME_LOCAL;
        return is_time(s, n, &used) && used == n;
    }
    if (!is_date(s, n))
        return false;
    if (n == 10) {
        *type = TOML_DATE_LOCAL;
        return true;
    }
    if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !is_time(s + 11, n - 11, &used))
        return false;
    size_t rest = 11 + used;
    *type = rest == n ? TOML_DATETIME_LOCAL : TOML_DATETIME;
    return rest == n || is_offset(s + rest, n - rest);
}

/* A ':' or a '-' right after a digit never occurs in a number (exponent
 * signs follow an 'e'), so such a token is meant as a date or time. */
static bool looks_like_date_or_time(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':' || (s[i] == '-' && i > 0 && is_digit((unsigned char)s[i - 1])))
            return true;
    return false;
}

/* Consumes the unquoted value at the cursor. A date may be followed by a
 * space and a time (RFC 3339 section 5.6 allows it, and TOML keeps it). */
static void scan_token(struct parser *p)
{
    size_t start = p->pos;
    while (is_token_char(peek(p)))
        p->pos++;
    if (p->pos - start == 10 && is_date(p->text + start, 10) && peek(p) == ' ' &&
        is_digit(peek_at(p, 1)) && is_digit(peek_at(p, 2)) && peek_at(p, 3) == ':') {
        p->pos++;
        while (is_token_char(peek(p)))
            p->pos++;
    }
}

static struct toml_value *make_date_time(struct parser *p, const char *s, size_t n, size_t start)
{
    enum toml_type type;
    if (!date_time_kind(s, n, &type)) {
        fail_at(p, start, "invalid date or time '%.*s'", SHOWN(n), s);
        return NULL;
    }
    struct toml_value *v = value_new(p, type);
    char *text = malloc(n + 1);
    if (!v || !text) {
        free(v);
        free(text);
        fail_memory(p);
        return NULL;
    }
    memcpy(text, s, n);
    text[n] = '\0';
    if (type == TOML_DATETIME || type == TOML_DATETIME_LOCAL)
        text[10] = 'T';
    v->u.string.ptr = text;
    v->u.string.len = n;
    return v;
}

static struct toml_value *make_number(struct parser *p, const char *s, size_t n, size_t start)
{
    bool is_float = false;      /* '.', an exponent, inf or nan; but 0xE is hex */
    for (size_t i = 0; i < n && radix_of(s, n) == 10 && !is_float; i++)
        is_float = memchr(".eEin", s[i], 5) != NULL;
    const char *problem;
    int64_t integer = 0;
    double floating = 0;
    if (is_float)
        problem = float_value(s, n, &floating);
    else
        problem = integer_value(s, n, &integer);
    if (problem) {
        fail_at(p, start, "%s '%.*s'", problem, SHOWN(n), s);
        return NULL;
    }
    struct toml_value *v = value_new(p, is_float ? TOML_FLOAT : TOML_INTEGER);
    if (v && is_float)
        v->u.floating = floating;
    else if (v)
        v->u.integer = integer;
    return v;
}

static struct toml_value *parse_unquoted(struct parser *p)
{
    size_t start = p->pos;
    scan_token(p);
    const char *s = p->text + start;
    size_t n = p->pos - start;
    if (n == 0) {
        fail(p, "expected a value, found %s", describe(p));
        return NULL;
    }
    if (token_is(s, n, "true") || token_is(s, n, "false")) {
        struct toml_value *v = value_new(p, TOML_BOOL);
        if (v)
            v->u.boolean = s[0] == 't';
        return v;
    }
    if (looks_like_date_or_time(s, n))
        return make_date_time(p, s, n, start);
    size_t sign = s[0] == '+' || s[0] == '-';
    if (sign < n && (is_digit((unsigned char)s[sign]) || s[sign] == 'i' || s[sign] == 'n'))
        return make_number(p, s, n, start);
    fail_at(p, start, "invalid value '%.*s' (strings need quotes)", SHOWN(n), s);
    return NULL;
}

/* ---- Values ------------------------------------------------------------- */

static struct toml_value *parse_value(struct parser *p, int depth);
static int parse_keyval(struct parser *p, struct toml_value *table, int depth);

static struct toml_value *parse_string_value(struct parser *p)
{
    struct buffer b = {0};
    struct toml_value *v = NULL;
    if (parse_string(p, &b, true) == 0)
        v = value_new(p, TOML_STRING);
    if (!v) {
        free(b.data);
        return NULL;
    }
    v->u.string.ptr = b.data;
    v->u.string.len = b.len;
    return v;
}

static int array_items(struct parser *p, struct toml_value *array, int depth)
{
    for (;;) {
        if (skip_blank(p) < 0)
            return -1;
        if (peek(p) == ']')
            break;
        if (!array_push(p, array, parse_value(p, depth + 1)) || skip_blank(p) < 0)
            return -1;
        if (peek(p) == ']')
            break;
        if (peek(p) != ',')
            return fail(p, "expected ',' or ']' in array, found %s", describe(p));
        p->pos++;
    }
    p->pos++;
    return 0;
}

static struct toml_value *parse_array(struct parser *p, int depth)
{
    struct toml_value *array = value_new(p, TOML_ARRAY);
    if (!array)
        return NULL;
    array->flags = VALUE_FROZEN;
    p->pos++;
    if (array_items(p, array, depth) < 0) {
        toml_free(array);
        return NULL;
    }
    return array;
}

/* { k = v, k.k = v }: on one line, no trailing comma (TOML 1.0). */
static int inline_table_items(struct parser *p, struct toml_value *table, int depth)
{
    skip_whitespace(p);
    if (peek(p) == '}') {
        p->pos++;
        return 0;
    }
    for (;;) {
        skip_whitespace(p);
        if (parse_keyval(p, table, depth) < 0)
            return -1;
        skip_whitespace(p);
        if (peek(p) == '}') {
            p->pos++;
            return 0;
        }
        if (peek(p) != ',')
            return fail(p, "expected ',' or '}' in inline table, found %s", describe(p));
        p->pos++;
    }
}

static struct toml_value *parse_inline_table(struct parser *p, int depth)
{
    struct toml_value *table = value_new(p, TOML_TABLE);
    if (!table)
        return NULL;
    p->pos++;
    if (inline_table_items(p, table, depth) < 0) {
        toml_free(table);
        return NULL;
    }
    table->flags = VALUE_FROZEN;    /* only now: its own keys were added above */
    return table;
}

/* depth: how deep the value sits in the tree (root's keys: 1). */
static struct toml_value *parse_value(struct parser *p, int depth)
{
    if (depth > TOML_MAX_DEPTH) {
        fail(p, "nested deeper than %d levels", TOML_MAX_DEPTH);
        return NULL;
    }
    int line, col, c = peek(p);
    locate(p, p->pos, &line, &col);
    struct toml_value *v;
    if (c == '"' || c == '\'')
        v = parse_string_value(p);
    else if (c == '[')
        v = parse_array(p, depth);
    else if (c == '{')
        v = parse_inline_table(p, depth);
    else
        v = parse_unquoted(p);
    if (v) {
        v->line = line;
        v->col = col;
    }
    return v;
}

/* ---- Document structure ------------------------------------------------- */

/* key = value, added to table (a section, or an inline table being built)
 * that sits at depth. */
static int parse_keyval(struct parser *p, struct toml_value *table, int depth)
{
    struct key_path path = {0};
    int r = parse_key(p, &path);
    if (r == 0 && depth + path.count > TOML_MAX_DEPTH)   /* before creating its tables */
        r = fail_at(p, path.parts[0].offset, "key nested deeper than %d levels", TOML_MAX_DEPTH);
    if (r == 0 && peek(p) != '=')
        r = fail(p, "expected '=' after key, found %s", describe(p));
    if (r == 0) {
        p->pos++;
        skip_whitespace(p);
        struct toml_value *parent = dotted_parent(p, table, &path);
        if (!parent || !table_add(p, parent, &path.parts[path.count - 1],
                                  parse_value(p, depth + path.count)))
            r = -1;
    }
    key_path_clear(&path);
    return r;
}

/* [table] or [[array of tables]] */
static int parse_header(struct parser *p)
{
    int line, col;
    locate(p, p->pos, &line, &col);
    bool is_array = looking_at(p, "[[");
    p->pos += is_array ? 2 : 1;
    skip_whitespace(p);
    struct key_path path = {0};
    int r = parse_key(p, &path);
    if (r == 0 && !looking_at(p, is_array ? "]]" : "]"))
        r = fail(p, "expected '%s' to close the header, found %s", is_array ? "]]" : "]",
                 describe(p));
    if (r == 0 && path.count > TOML_MAX_DEPTH)
        r = fail(p, "header nested deeper than %d levels", TOML_MAX_DEPTH);
    if (r == 0) {
        p->pos += is_array ? 2 : 1;
        if (is_array)
            r = open_array_table(p, &path, line, col);
        else
            r = open_table(p, &path, line, col);
    }
    key_path_clear(&path);
    return r;
}

static int parse_document(struct parser *p)
{
    if (looking_at(p, "\xEF\xBB\xBF"))     /* a byte order mark, at the start only */
        p->pos += 3;
    while (p->pos < p->len) {
        skip_whitespace(p);
        int c = peek(p), r = 0;
        if (c == '[')
            r = parse_header(p);
        else if (c >= 0 && c != '#' && c != '\n' && c != '\r')
            r = parse_keyval(p, p->section, p->section_depth);
        if (r < 0 || end_line(p) < 0)
            return -1;
    }
    return 0;
}

/* ---- Public interface --------------------------------------------------- */

struct toml_value *toml_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct parser p = {.text = text, .len = len, .err = err, .errlen = errlen,
                        .cache_line = 1, .cache_col = 1};
    if (err && errlen)
        err[0] = '\0';
    if (check_utf8(&p) < 0)
        return NULL;
    p.root = value_new(&p, TOML_TABLE);
    if (!p.root)
        return NULL;
    p.root->flags = TABLE_DEFINED;
    p.root->line = p.root->col = 1;
    p.section = p.root;
    int r = parse_document(&p);
    free(p.index.slots);
    if (r < 0) {
        toml_free(p.root);
        return NULL;
    }
    return p.root;
}

void toml_free(struct toml_value *value)
{
    if (!value)
        return;
    switch (value->type) {
    case TOML_TABLE:
        for (size_t i = 0; i < value->u.table.len; i++) {
            free(value->u.table.items[i].key);
            toml_free(value->u.table.items[i].value);
        }
        free(value->u.table.items);
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < value->u.array.len; i++)
            toml_free(value->u.array.items[i]);
        free(value->u.array.items);
        break;
    case TOML_STRING:
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL:
    case TOML_DATE_LOCAL:
    case TOML_TIME_LOCAL:
        free(value->u.string.ptr);
        break;
    case TOML_INTEGER:
    case TOML_FLOAT:
    case TOML_BOOL:
        break;
    }
    free(value);
}

const struct toml_keyval *toml_table_get(const struct toml_value *table, const char *key)
{
    if (!table || table->type != TOML_TABLE || !key)
        return NULL;
    size_t len = strlen(key);
    for (size_t i = 0; i < table->u.table.len; i++) {
        const struct toml_keyval *kv = &table->u.table.items[i];
        if (kv->key_len == len && memcmp(kv->key, key, len) == 0)
            return kv;
    }
    return NULL;
}

const char *toml_type_name(enum toml_type type)
{
    switch (type) {
    case TOML_TABLE: return "table";
    case TOML_ARRAY: return "array";
    case TOML_STRING: return "string";
    case TOML_INTEGER: return "integer";
    case TOML_FLOAT: return "float";
    case TOML_BOOL: return "boolean";
    case TOML_DATETIME: return "offset date-time";
    case TOML_DATETIME_LOCAL: return "local date-time";
    case TOML_DATE_LOCAL: return "local date";
    case TOML_TIME_LOCAL: return "local time";
    }
    return "unknown";
}
