/* toml.h - a TOML 1.0 parser producing a tree of values.
 *
 * The whole document is parsed at once (configs are small); every value,
 * key and table remembers the line and column where it was written so that
 * the config loader can report errors as FILE:LINE:COL.
 *
 * Ownership: toml_parse returns a tree owned by the caller, freed with
 * toml_free. Strings inside are NUL-terminated copies (they may also contain
 * NUL bytes written as \u0000, hence the explicit lengths).
 */
#ifndef SLUICE_TOML_H
#define SLUICE_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum toml_type {
    TOML_TABLE,
    TOML_ARRAY,
    TOML_STRING,
    TOML_INTEGER,
    TOML_FLOAT,
    TOML_BOOL,
    TOML_DATETIME,        /* offset date-time, e.g. 1979-05-27T07:32:00Z */
    TOML_DATETIME_LOCAL,  /* 1979-05-27T07:32:00 */
    TOML_DATE_LOCAL,      /* 1979-05-27 */
    TOML_TIME_LOCAL,      /* 07:32:00 */
};

/* Nesting limit: arrays, inline tables and key components together may not
 * go deeper than this, which bounds the parser's (and toml_free's) recursion. */
#define TOML_MAX_DEPTH 128

struct toml_value;

struct toml_keyval {
    char *key;                  /* NUL-terminated; may hold NUL, see key_len */
    size_t key_len;
    int line, col;              /* where the key was first written */
    struct toml_value *value;
};

struct toml_value {
    enum toml_type type;
    int line, col;              /* where the value (or table header) starts */
    union {
        struct { char *ptr; size_t len; } string;  /* also the date/time kinds:
                                                      their text as written, with
                                                      'T' for the separator */
        int64_t integer;
        double floating;
        bool boolean;
        struct { struct toml_value **items; size_t len, cap; } array;
        struct { struct toml_keyval *items; size_t len, cap; } table;  /* in document order */
    } u;
    /* parser bookkeeping; readers ignore */
    uint8_t flags;
};

/* Parses len bytes of text. On success returns the root table; on failure
 * returns NULL and writes "LINE:COL: message" into err. */
struct toml_value *toml_parse(const char *text, size_t len, char *err, size_t errlen);
void toml_free(struct toml_value *value);

/* Looks a key up in a table; NULL when absent or value is not a table. */
const struct toml_keyval *toml_table_get(const struct toml_value *table, const char *key);

const char *toml_type_name(enum toml_type type);

#endif
