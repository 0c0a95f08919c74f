/* mail.c - an alert as an Internet message; see mail.h.
 *
 * Everything is written into a growing struct text (text.h): a message
 * is built once per attempt on the alert thread, never on a request path.
 * The public fixed-size functions are thin copies of the same writers, so
 * that what the unit tests see is what goes on the wire.
 */
#include "mail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "payload.h"
#include "text.h"

/* RFC 2047 section 2: an encoded-word is at most 75 characters, and a line
 * that holds one at most 76. */
#define ENCODED_LINE_MAX 76
#define ENCODED_OVERHEAD 12          /* "=?UTF-8?B?" and "?=" */
/* RFC 2045 section 6.7 rule 5: encoded lines at most 76 characters, the
 * soft break's "=" included. */
#define QP_LINE_MAX 76

static const char base64_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void text_puts(struct text *t, const char *s)
{
    text_put(t, s, strlen(s));
}

/* Copies a text's bytes into a caller's buffer as snprintf would. */
static size_t copy_out(char *out, size_t cap, struct text *t)
{
    size_t len = t->len;
    if (cap > 0) {
        size_t k = len < cap - 1 ? len : cap - 1;
        if (k)
            memcpy(out, t->data, k);
        out[k] = '\0';
    }
    free(t->data);
    return len;
}

static void base64_put(struct text *t, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        char quad[4] = {base64_digits[v >> 18 & 63], base64_digits[v >> 12 & 63],
                        i + 1 < n ? base64_digits[v >> 6 & 63] : '=',
                        i + 2 < n ? base64_digits[v & 63] : '='};
        text_put(t, quad, 4);
    }
}

static bool printable_ascii(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return true;
}

/* Bytes of s that fit in `room` raw bytes without splitting a UTF-8
 * sequence (RFC 2047 section 5: each word must decode on its own). */
static size_t utf8_prefix(const unsigned char *s, size_t len, size_t room)
{
    if (len <= room)
        return len;
    size_t n = room;
    while (n > 0 && (s[n] & 0xC0) == 0x80)
        n--;
    return n ? n : room;    /* not UTF-8 at all: cut anywhere rather than loop */
}

/* RFC 5322 section 2.1.1: a header line SHOULD stay within 78 octets and
 * MUST within 998. */
#define HEADER_LINE_SHOULD 78
#define HEADER_LINE_MUST 998

/* The longest run of s that folding cannot split: spaces, then the word
 * after them. */
static size_t longest_unfoldable(const char *s)
{
    size_t longest = 0;
    for (size_t i = 0; s[i];) {
        size_t n = strspn(s + i, " ");
        n += strcspn(s + i + n, " ");
        longest = n > longest ? n : longest;
        i += n;
    }
    return longest;
}

/* Printable ASCII folded (CRLF before a space, section 3.2.2) so that
 * lines stay within 78 octets where the words allow it. A fold never
 * leaves a line of white space alone: it goes before spaces that a word
 * follows. */
static void fold_ascii_into(struct text *t, const char *value, size_t used)
{
    size_t line = used;
    for (size_t i = 0; value[i];) {
        size_t spaces = strspn(value + i, " ");
        size_t word = strcspn(value + i + spaces, " ");
        if (i > 0 && word > 0 && line + spaces + word > HEADER_LINE_SHOULD) {
            text_puts(t, "\r\n");
            line = 0;
        }
        text_put(t, value + i, spaces + word);
        line += spaces + word;
        i += spaces + word;
    }
}

static void encode_header_into(struct text *t, const char *value, size_t used)
{
    /* Words too long for any fold go as encoded-words, which may be cut
     * anywhere. */
    if (printable_ascii(value) && used + longest_unfoldable(value) < HEADER_LINE_MUST) {
        fold_ascii_into(t, value, used);
        return;
    }
    const unsigned char *p = (const unsigned char *)value;
    size_t left = strlen(value);
    size_t line = used;
    while (left > 0) {
        size_t room = (ENCODED_LINE_MAX - line - ENCODED_OVERHEAD) / 4 * 3;
        size_t n = utf8_prefix(p, left, room);
        text_puts(t, "=?UTF-8?B?");
        base64_put(t, p, n);
        text_puts(t, "?=");
        p += n;
        left -= n;
        if (left > 0)
            text_puts(t, "\r\n ");
        line = 1;
    }
}

size_t mail_encode_header(char *out, size_t cap, const char *value, size_t used)
{
    struct text t = {0};
    encode_header_into(&t, value, used);
    return copy_out(out, cap, &t);
}

static bool qp_literal(unsigned char c)
{
    return (c >= 33 && c <= 126 && c != '=') || c == ' ' || c == '\t';
}

/* One input line (without its end) as quoted-printable lines. */
static void qp_line(struct text *t, const unsigned char *s, size_t len)
{
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        char piece[4];
        size_t n;
        /* Trailing white space would be stripped in transit (rule 3). */
        bool last = i + 1 == len;
        if (qp_literal(s[i]) && !(last && (s[i] == ' ' || s[i] == '\t'))) {
            piece[0] = (char)s[i];
            n = 1;
        } else {
            n = (size_t)snprintf(piece, sizeof(piece), "=%02X", s[i]);
        }
        /* Room for the piece and, unless it ends the line, a soft break. */
        size_t limit = last ? QP_LINE_MAX : QP_LINE_MAX - 1;
        if (col + n > limit) {
            text_puts(t, "=\r\n");
            col = 0;
        }
        text_put(t, piece, n);
        col += n;
    }
    text_puts(t, "\r\n");
}

/* Each line of text (LF or CRLF ended; a last line without an end gets
 * one) through fn. */
static void each_line(struct text *t, const char *text, size_t len,
                      void (*fn)(struct text *t, const unsigned char *s, size_t len))
{
    size_t start = 0;
    while (start < len) {
        const char *lf = memchr(text + start, '\n', len - start);
        size_t end = lf ? (size_t)(lf - text) : len;
        size_t stop = end > start && text[end - 1] == '\r' ? end - 1 : end;
        fn(t, (const unsigned char *)text + start, stop - start);
        start = end + 1;
    }
}

static void qp_into(struct text *t, const char *text, size_t len)
{
    each_line(t, text, len, qp_line);
}

size_t mail_quoted_printable(char *out, size_t cap, const char *text, size_t len)
{
    struct text t = {0};
    qp_into(&t, text, len);
    return copy_out(out, cap, &t);
}

static void crlf_line(struct text *t, const unsigned char *s, size_t len)
{
    text_put(t, (const char *)s, len);
    text_puts(t, "\r\n");
}

/* ---- addresses ---- */

const char *mail_domain(const char *address)
{
    const char *at = strrchr(address, '@');
    return at && at[1] ? at + 1 : NULL;
}

static bool is_atext(unsigned char c)
{
    /* RFC 5322 section 3.2.3 */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static bool dot_atom_valid(const char *s, size_t len)
{
    if (len == 0 || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.' ? s[i + 1] == '.' : !is_atext((unsigned char)s[i]))
            return false;
    }
    return true;
}

static bool quoted_local_valid(const char *s, size_t len)
{
    if (len < 2 || s[0] != '"' || s[len - 1] != '"')
        return false;
    for (size_t i = 1; i + 1 < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e)
            return false;
        if (c == '\\' && ++i + 1 >= len)
            return false;
        if (c == '"')
            return false;
    }
    return true;
}

static bool label_valid(const char *s, size_t len)
{
    if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

static bool domain_valid(const char *s, size_t len)
{
    if (len >= 2 && s[0] == '[')
        return s[len - 1] == ']' && printable_ascii(s) && !memchr(s + 1, '[', len - 2) &&
               !memchr(s + 1, ' ', len - 2);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (!label_valid(s + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

bool mail_address_valid(const char *address)
{
    size_t len = strlen(address);
    const char *at = strrchr(address, '@');
    if (!at || len > 254)
        return false;
    size_t local = (size_t)(at - address);
    if (local == 0 || local > 64)
        return false;
    if (!dot_atom_valid(address, local) && !quoted_local_valid(address, local))
        return false;
    return domain_valid(at + 1, len - local - 1);
}

/* ---- the message ---- */

static bool is_transition(const struct alert_event *e)
{
    return strcmp(e->event, "all_down") != 0 && strcmp(e->event, "restored") != 0;
}

/* "api-1 is now down" / "no application is up" / "service restored". */
static void event_headline(struct text *t, const struct alert_event *e)
{
    if (strcmp(e->event, "all_down") == 0)
        text_puts(t, "no application is up");
    else if (strcmp(e->event, "restored") == 0)
        text_puts(t, "service restored");
    else
        text_printf(t, "%s is now %s", e->application, e->state);
}

/* A burst names its first few changes; the body has them all. */
#define SUBJECT_LISTED 3

static void subject_into(struct text *t, const struct alert_event *events, int n, bool test)
{
    text_puts(t, test ? "[sluice] TEST: " : "[sluice] ");
    if (n == 1) {
        event_headline(t, &events[0]);
        return;
    }
    text_printf(t, "%d changes: ", n);
    for (int i = 0; i < n && i < SUBJECT_LISTED; i++) {
        const struct alert_event *e = &events[i];
        text_printf(t, "%s%s %s", i ? ", " : "", is_transition(e) ? e->application : "service",
                    e->state);
    }
    if (n > SUBJECT_LISTED)
        text_puts(t, ", ...");
}

int mail_subject(char *out, size_t cap, const struct alert_event *events, int n, bool test)
{
    struct text t = {0};
    if (n < 1)
        return -1;
    subject_into(&t, events, n, test);
    size_t len = copy_out(out, cap, &t);
    return len < cap ? (int)len : -1;
}

static void event_paragraph(struct text *t, const struct alert_event *e)
{
    char when[40];
    if (alert_format_time(when, sizeof(when), e->time_ms) < 0)
        snprintf(when, sizeof(when), "(unknown time)");
    if (is_transition(e))
        text_printf(t, "%s (%s) is now %s, was %s.\n", e->application, e->address, e->state,
                    e->previous);
    else
        text_printf(t, "%s.\n", strcmp(e->event, "all_down") == 0 ? "No application is up"
                                                                  : "Service restored");
    text_printf(t, "  when: %s\n  why:  %s\n\n", when, e->reason);
}

static void body_into(struct text *t, const struct mail_params *p, const struct alert_event *events,
                      int n, int up, int total)
{
    if (p->test)
        text_puts(t, "THIS IS A TEST of sluice's email alerts: nothing below has happened.\n\n");
    text_printf(t, "sluice on %s reports %s:\n\n", p->host, n == 1 ? "a change" : "these changes");
    for (int i = 0; i < n; i++)
        event_paragraph(t, &events[i]);
    text_printf(t, "Applications up: %d of %d.\n", up, total);
}

/* 8bit needs the server's 8BITMIME and lines short enough to send as they
 * are; anything else goes quoted-printable, which any server carries. */
static bool body_fits_8bit(const char *body, size_t len)
{
    size_t line = 0;
    for (size_t i = 0; i < len; i++) {
        line = body[i] == '\n' ? 0 : line + 1;
        if (line > MAIL_LINE_MAX || body[i] == '\r' || body[i] == '\0')
            return false;
    }
    return true;
}

static void date_into(struct text *t, int64_t now_ms)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t seconds = (time_t)(now_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&seconds, &tm))
        memset(&tm, 0, sizeof(tm));
    /* RFC 5322 section 3.3, in UTC. */
    text_printf(t, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday % 7],
                tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
}

/* The operator's subject: the first change through the template, and how
 * many more a burst holds (the body lists them all). */
static void subject_template_into(struct text *t, const char *tpl, const struct alert_event *events, int n,
                                  bool test)
{
    char *first = payload_template(&events[0], tpl);
    text_puts(t, test ? "[TEST] " : "");
    if (first)
        text_puts(t, first);
    else
        t->failed = true;
    free(first);
    if (n > 1)
        text_printf(t, " (+%d more)", n - 1);
}

static void headers_into(struct text *t, const struct mail_params *p, const struct alert_event *events,
                         int n, const char *encoding)
{
    const char *domain = mail_domain(p->from);
    date_into(t, p->now_ms);
    text_printf(t, "From: %s\r\nTo: ", p->from);
    for (int i = 0; i < p->to_count; i++)
        text_printf(t, "%s%s", i ? ",\r\n " : "", p->to[i]);
    /* The first change's time, not the clock: a message sent again after
     * a lost reply to its "." keeps its Message-ID, so that the mailbox
     * can tell the copy (RFC 5322 section 3.6.4). */
    text_printf(t, "\r\nMessage-ID: <%llx.%llx@%s>\r\n", (unsigned long long)events[0].time_ms,
                (unsigned long long)p->unique, domain ? domain : p->host);
    struct text subject = {0};
    if (p->subject_template)
        subject_template_into(&subject, p->subject_template, events, n, p->test);
    else
        subject_into(&subject, events, n, p->test);
    text_puts(t, "Subject: ");
    encode_header_into(t, subject.data ? subject.data : "[sluice]", strlen("Subject: "));
    free(subject.data);
    /* RFC 3834: no vacation or out-of-office replies to a machine. */
    text_printf(t, "\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
                   "Content-Type: text/plain; charset=UTF-8\r\n"
                   "Content-Transfer-Encoding: %s\r\n%s\r\n",
                encoding, p->test ? "X-Sluice-Test: yes\r\n" : "");
}

char *mail_build(const struct mail_params *p, const struct alert_event *events, int n, int up,
                 int total, size_t *len)
{
    if (n < 1)
        return NULL;
    struct text body = {0}, msg = {0};
    body_into(&body, p, events, n, up, total);
    if (!text_take(&body))
        return NULL;
    bool eightbit = p->eightbit && body_fits_8bit(body.data, body.len);
    headers_into(&msg, p, events, n, eightbit ? "8bit" : "quoted-printable");
    if (eightbit)
        each_line(&msg, body.data, body.len, crlf_line);
    else
        qp_into(&msg, body.data, body.len);
    free(body.data);
    char *out = text_take(&msg);
    if (out)
        *len = msg.len;
    return out;
}
