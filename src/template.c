/* template.c - {field} templates for alert texts (template.h). */
#include "template.h"

#include <stdio.h>
#include <string.h>

static const char *const field_names[TEMPLATE_FIELDS] = {
    "application", "address", "state", "previous", "reason", "time", "up", "total",
};

int template_field_named(const char *name, size_t len)
{
    for (int i = 0; i < TEMPLATE_FIELDS; i++)
        if (strlen(field_names[i]) == len && memcmp(field_names[i], name, len) == 0)
            return i;
    return -1;
}

/* The hole at tpl[i] == '{' (not "{{"): its field, or -1 with why. */
static int hole_at(const char *tpl, size_t i, size_t *end, char *why, size_t why_len)
{
    const char *close = strchr(tpl + i + 1, '}');
    const char *open = strchr(tpl + i + 1, '{');
    if (!close || (open && open < close)) {
        snprintf(why, why_len, "'{' is not closed (write {{ for a literal brace)");
        return -1;
    }
    size_t len = (size_t)(close - (tpl + i + 1));
    int field = template_field_named(tpl + i + 1, len);
    if (field < 0)
        snprintf(why, why_len, "unknown field {%.*s} (known: {application} {address} {state} "
                 "{previous} {reason} {time} {up} {total}; {{ for a literal brace)",
                 (int)(len > 64 ? 64 : len), tpl + i + 1);
    *end = (size_t)(close - tpl) + 1;
    return field;
}

int template_check(const char *tpl, size_t *at, char *why, size_t why_len)
{
    size_t i = 0;
    while (tpl[i]) {
        if ((tpl[i] == '{' && tpl[i + 1] == '{') || (tpl[i] == '}' && tpl[i + 1] == '}')) {
            i += 2;
        } else if (tpl[i] == '}') {
            *at = i;
            snprintf(why, why_len, "a lone '}' (write }} for a literal brace)");
            return -1;
        } else if (tpl[i] == '{') {
            size_t end;
            if (hole_at(tpl, i, &end, why, why_len) < 0) {
                *at = i;
                return -1;
            }
            i = end;
        } else {
            i++;
        }
    }
    return 0;
}

static void put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + 1 < cap) {
        size_t room = cap - 1 - *len;
        memcpy(out + *len, s, n < room ? n : room);
        out[*len + (n < room ? n : room)] = '\0';
    }
    *len += n;
}

size_t template_render(char *out, size_t cap, const char *tpl, const char *const values[TEMPLATE_FIELDS])
{
    size_t len = 0, i = 0;
    char why[8];
    if (cap > 0)
        out[0] = '\0';
    while (tpl[i]) {
        size_t run = strcspn(tpl + i, "{}");
        put(out, cap, &len, tpl + i, run);
        i += run;
        if (!tpl[i])
            break;
        if (tpl[i + 1] == tpl[i]) {            /* "{{" or "}}" */
            put(out, cap, &len, tpl + i, 1);
            i += 2;
            continue;
        }
        size_t end = i + 1;
        int field = tpl[i] == '{' ? hole_at(tpl, i, &end, why, sizeof(why)) : -1;
        if (field >= 0 && values[field])
            put(out, cap, &len, values[field], strlen(values[field]));
        i = end;
    }
    return len;
}
