/* template.h - the texts an operator writes for alerts: `fields` values,
 * a chat message's `text`, an email's `subject`.
 *
 * A template is plain text with {field} holes: {application}, {address},
 * {state}, {previous}, {reason}, {time}, {up} and {total}. A literal brace
 * is written twice, "{{" or "}}", as in Python's str.format and Rust's
 * format!, which operators already know. Anything else between braces is
 * refused when the configuration is loaded, never found out at the first
 * outage. Pure functions: no allocation, no state.
 */
#ifndef SLUICE_TEMPLATE_H
#define SLUICE_TEMPLATE_H

#include <stddef.h>

enum template_field {
    TEMPLATE_APPLICATION,
    TEMPLATE_ADDRESS,
    TEMPLATE_STATE,
    TEMPLATE_PREVIOUS,
    TEMPLATE_REASON,
    TEMPLATE_TIME,
    TEMPLATE_UP,
    TEMPLATE_TOTAL,
    TEMPLATE_FIELDS
};

/* 0 when tpl is well formed; otherwise -1, why (e.g. "unknown field
 * {foo}") and the byte offset in tpl where the fault starts. */
int template_check(const char *tpl, size_t *at, char *why, size_t why_len);

/* tpl with every {field} replaced by values[field] (a well-formed template:
 * template_check passed). Writes what fits in out, always terminated, and
 * returns the length the whole result needs, as snprintf does. */
size_t template_render(char *out, size_t cap, const char *tpl, const char *const values[TEMPLATE_FIELDS]);

/* The field named by name[0..len), or -1. */
int template_field_named(const char *name, size_t len);

#endif
