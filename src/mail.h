/* mail.h - an alert as an Internet message (RFC 5322, MIME).
 *
 * Pure: no I/O, no clock, no randomness of its own; whatever varies (the
 * time, the Message-ID's unique part) comes in through struct mail_params,
 * so that the unit tests can compare whole messages.
 *
 * The message lists one or more alert events (a burst of transitions goes
 * out as one message), how many applications are up out of how many, and
 * whether it is a test. It is written with CRLF line ends and no line over
 * 998 octets (RFC 5322 section 2.1.1); the body is UTF-8 text/plain, sent
 * quoted-printable (right for any server) unless the server advertised
 * 8BITMIME (RFC 6152) and every line is short enough to go as it is.
 * Header values that are not ASCII (an application's name) are RFC 2047
 * encoded-words. Dot-stuffing is the transport's business (smtp.h).
 */
#ifndef SLUICE_MAIL_H
#define SLUICE_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"

#define MAIL_LINE_MAX 998            /* octets, CRLF excluded */

struct mail_params {
    const char *from;                /* addr-spec */
    const char *const *to;           /* addr-specs */
    int to_count;
    const char *host;                /* this machine's name, for the body and
                                        the Message-ID when from has no domain */
    int64_t now_ms;                  /* Date: wall clock, ms since the epoch */
    uint64_t unique;                 /* the Message-ID's unique part (a count
                                        from a per-process random start), the
                                        same for every attempt at one message */
    bool eightbit;                   /* the server advertised 8BITMIME */
    bool test;                       /* a test message, marked as such */
    const char *subject_template;    /* [alerts.email] subject, or NULL */
};

/* The whole message (headers, blank line, body), not dot-stuffed.
 * Returns it malloc'd (the caller owns it) with its length in *len, or
 * NULL when out of memory or n < 1. */
char *mail_build(const struct mail_params *p, const struct alert_event *events, int n, int up,
                 int total, size_t *len);

/* "[sluice] api-1 is now down" and its variants, as UTF-8 (before any
 * encoding). Returns the length, or -1 when it does not fit in cap. */
int mail_subject(char *out, size_t cap, const struct alert_event *events, int n, bool test);

/* value as a header value: itself when it is printable ASCII, folded
 * before spaces (CRLF SP) where a line would pass 78 characters; else
 * (or when a word is too long for any line of 998) RFC 2047
 * "=?UTF-8?B?...?=" words of at most 75 characters, folded onto
 * continuation lines so that no line grows past 78 characters.
 * `used` is how much of the first line the field name has taken. Returns
 * the length, as snprintf does (out is always terminated). */
size_t mail_encode_header(char *out, size_t cap, const char *value, size_t used);

/* text as quoted-printable (RFC 2045 section 6.7) with CRLF line ends:
 * lines of at most 76 characters, soft breaks ("=" CRLF) where needed.
 * Input lines end with LF or CRLF. Returns the length, as snprintf does. */
size_t mail_quoted_printable(char *out, size_t cap, const char *text, size_t len);

/* The domain of an addr-spec ("example.com" for "a@example.com"), or NULL. */
const char *mail_domain(const char *address);

/* A sensible addr-spec check: local@domain, a dot-atom local part (or a
 * quoted string), a domain of dot-separated labels or an address literal
 * in brackets, no spaces or controls, at most 254 octets. */
bool mail_address_valid(const char *address);

#endif
