/* payload.h - an alert in the format each receiver expects.
 *
 * [[alerts.webhooks]] names a format: sluice's own JSON (alert.h), a chat
 * message (`{"text": ...}`, which Slack, Mattermost, Rocket.Chat and
 * Discord's Slack-compatible endpoint all take), a PagerDuty Events API v2
 * event, or an HTML form body (application/x-www-form-urlencoded) for SMS
 * gateways such as Twilio's. Every function here is pure and returns a
 * malloc'd, NUL-terminated body the caller owns, or NULL when memory ran
 * out. The dispatcher (alert.c) sends them; the unit tests read them.
 */
#ifndef SLUICE_PAYLOAD_H
#define SLUICE_PAYLOAD_H

#include <stdbool.h>

#include "alert.h"
#include "config.h"
#include "template.h"

/* The template values of one event: fills values with pointers into e and
 * into scratch (the time and the counts). */
struct payload_scratch {
    char time[40], up[16], total[16];
};
void payload_values(const struct alert_event *e, struct payload_scratch *scratch,
                    const char *values[TEMPLATE_FIELDS]);

/* tpl (a checked template) rendered for e. */
char *payload_template(const struct alert_event *e, const char *tpl);

/* {"text": ...}: one change as its line; several (a batch) as a heading
 * and one line each. A test alert says TEST first. */
char *payload_chat(const struct alert_event *events, int n, const char *text_template, const char *host);

/* sluice's own JSON (alert_format_json), with "test":true for a test. */
char *payload_json(const struct alert_event *e, const char *host);

/* PagerDuty's dedup_key for e: one per application, "sluice/NAME", so that
 * the resolve sent when it is back up closes the incident its going down
 * opened, across restarts of sluice too; "sluice/test/HOST" for a test. */
void payload_pagerduty_key(const struct alert_event *e, const char *host, char *out, size_t cap);

/* A PagerDuty Events API v2 event: "trigger" when e's application (or the
 * service, for all_down) is down, "resolve" otherwise; resolve forces a
 * resolve (the second half of a test). */
char *payload_pagerduty(const struct alert_event *e, const char *routing_key, const char *host, bool resolve);

/* name=value&... from fields (values are templates), percent-encoded as
 * the WHATWG URL standard's application/x-www-form-urlencoded serializer
 * does: space as '+', everything but ALPHA DIGIT *-._ as %XX. */
char *payload_form(const struct alert_event *e, const struct config_pair *fields, int count);

#endif
