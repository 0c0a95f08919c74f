/* payload.c - an alert in each receiver's format (payload.h).
 *
 * Bodies are built in a growing text (text.h): they are made once per
 * alert on the alert thread, never on the request path, and a batch of
 * changes has no fixed size.
 */
#include "payload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* PagerDuty cuts a summary at 1024 characters; sluice's sentences stay
 * well below, but a custom reason could not. */
#define PAGERDUTY_SUMMARY_MAX 1024

void payload_values(const struct alert_event *e, struct payload_scratch *scratch,
                    const char *values[TEMPLATE_FIELDS])
{
    if (alert_format_time(scratch->time, sizeof(scratch->time), e->time_ms) < 0)
        scratch->time[0] = '\0';
    snprintf(scratch->up, sizeof(scratch->up), "%d", e->up);
    snprintf(scratch->total, sizeof(scratch->total), "%d", e->total);
    values[TEMPLATE_APPLICATION] = e->application;
    values[TEMPLATE_ADDRESS] = e->address;
    values[TEMPLATE_STATE] = e->state;
    values[TEMPLATE_PREVIOUS] = e->previous;
    values[TEMPLATE_REASON] = e->reason;
    values[TEMPLATE_TIME] = scratch->time;
    values[TEMPLATE_UP] = scratch->up;
    values[TEMPLATE_TOTAL] = scratch->total;
}

/* Renders tpl for e into t. */
static void text_template(struct text *t, const char *tpl, const struct alert_event *e)
{
    struct payload_scratch scratch;
    const char *values[TEMPLATE_FIELDS];
    payload_values(e, &scratch, values);
    size_t n = template_render(NULL, 0, tpl, values);
    if (!text_reserve(t, n))
        return;
    template_render(t->data + t->len, n + 1, tpl, values);
    t->len += n;
}

static void text_sentence(struct text *t, const struct alert_event *e, const char *host)
{
    char line[2048];     /* a reason, two names, an address and some words */
    if (alert_format_text(line, sizeof(line), e, host) >= 0)
        text_put(t, line, strlen(line));
}

char *payload_template(const struct alert_event *e, const char *tpl)
{
    struct text t = {0};
    text_template(&t, tpl, e);
    text_reserve(&t, 0);
    return text_take(&t);
}

/* s as a JSON string, quotes included. */
static void json_string(struct text *t, const char *s)
{
    size_t n = alert_json_escape(NULL, 0, s);
    text_put(t, "\"", 1);
    if (text_reserve(t, n)) {
        alert_json_escape(t->data + t->len, n + 1, s);
        t->len += n;
    }
    text_put(t, "\"", 1);
}

static void json_member(struct text *t, const char *name, const char *value, bool first)
{
    text_printf(t, "%s\"%s\":", first ? "" : ",", name);
    json_string(t, value);
}

char *payload_chat(const struct alert_event *events, int n, const char *text_template_, const char *host)
{
    struct text message = {0}, t = {0};
    /* sluice's sentence says TEST itself; an operator's template may not */
    if (n > 0 && alert_event_is_test(&events[0]) && text_template_)
        text_printf(&message, "[TEST] ");
    if (n > 1)
        text_printf(&message, "sluice on %s: %d changes", host, n);
    for (int i = 0; i < n; i++) {
        if (n > 1)
            text_printf(&message, "\n- ");
        if (text_template_)
            text_template(&message, text_template_, &events[i]);
        else
            text_sentence(&message, &events[i], host);
    }
    text_reserve(&message, 0);
    text_printf(&t, "{");
    json_member(&t, "text", message.data ? message.data : "", true);
    text_printf(&t, "}");
    free(message.data);
    if (message.failed) {
        free(text_take(&t));
        return NULL;
    }
    return text_take(&t);
}

char *payload_json(const struct alert_event *e, const char *host)
{
    size_t cap = 16384;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    int n = alert_format_json(out, cap - 16, e, host);
    if (n < 0) {
        free(out);
        return NULL;
    }
    if (alert_event_is_test(e))
        memcpy(out + n - 1, ",\"test\":true}", sizeof(",\"test\":true}"));
    return out;
}

void payload_pagerduty_key(const struct alert_event *e, const char *host, char *out, size_t cap)
{
    if (alert_event_is_test(e))
        snprintf(out, cap, "sluice/test/%s", host);
    else
        snprintf(out, cap, "sluice/%s", e->application);
}

static const char *pagerduty_severity(const struct alert_event *e)
{
    if (alert_event_is_test(e))
        return "info";
    return strcmp(e->event, "all_down") == 0 ? "critical" : "error";
}

static void pagerduty_payload(struct text *t, const struct alert_event *e, const char *host)
{
    char summary[PAGERDUTY_SUMMARY_MAX + 1], time_text[40];
    alert_format_text(summary, sizeof(summary), e, host);
    if (alert_format_time(time_text, sizeof(time_text), e->time_ms) < 0)
        time_text[0] = '\0';
    text_printf(t, ",\"payload\":{");
    json_member(t, "summary", summary, true);
    json_member(t, "source", host, false);
    json_member(t, "severity", pagerduty_severity(e), false);
    json_member(t, "timestamp", time_text, false);
    json_member(t, "component", e->application, false);
    json_member(t, "group", "sluice", false);
    json_member(t, "class", e->event, false);
    text_printf(t, ",\"custom_details\":{");
    json_member(t, "address", e->address, true);
    json_member(t, "state", e->state, false);
    json_member(t, "previous", e->previous, false);
    json_member(t, "reason", e->reason, false);
    text_printf(t, ",\"up\":%d,\"total\":%d}}", e->up, e->total);
}

char *payload_pagerduty(const struct alert_event *e, const char *routing_key, const char *host, bool resolve)
{
    struct text t = {0};
    char key[CONFIG_NAME_MAX + 300];
    bool trigger = !resolve && (alert_event_is_test(e) || strcmp(e->state, "down") == 0);
    payload_pagerduty_key(e, host, key, sizeof(key));
    text_printf(&t, "{");
    json_member(&t, "routing_key", routing_key, true);
    json_member(&t, "event_action", trigger ? "trigger" : "resolve", false);
    json_member(&t, "dedup_key", key, false);
    json_member(&t, "client", "sluice", false);
    if (trigger)
        pagerduty_payload(&t, e, host);
    text_printf(&t, "}");
    return text_take(&t);
}

static void form_encode(struct text *t, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '*' || *p == '-' || *p == '.' || *p == '_')
            text_put(t, (const char *)p, 1);
        else if (*p == ' ')
            text_put(t, "+", 1);
        else
            text_printf(t, "%%%02X", *p);
    }
}

char *payload_form(const struct alert_event *e, const struct config_pair *fields, int count)
{
    struct text t = {0};
    for (int i = 0; i < count; i++) {
        struct text value = {0};
        text_template(&value, fields[i].value, e);
        text_reserve(&value, 0);
        if (i > 0)
            text_put(&t, "&", 1);
        form_encode(&t, fields[i].name);
        text_put(&t, "=", 1);
        form_encode(&t, value.data ? value.data : "");
        t.failed |= value.failed;
        free(value.data);
    }
    text_reserve(&t, 0);
    return text_take(&t);
}
