/* test_mail.c - mail.c: the alert message's headers (Date, Message-ID,
 * From, To, Subject, MIME), RFC 2047 subjects for names that are not
 * ASCII, quoted-printable and 8bit bodies, line lengths and CRLF, test
 * messages, bursts, and the address check. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail.h"
#include "unit.h"

static const char *const recipients[] = {"oncall@example.com", "backup@example.org"};

static struct alert_event transition(const char *app, const char *state, const char *previous)
{
    struct alert_event e = {.time_ms = 1714564800123LL};
    snprintf(e.event, sizeof(e.event), "transition");
    snprintf(e.application, sizeof(e.application), "%s", app);
    snprintf(e.address, sizeof(e.address), "10.0.0.1:8001");
    snprintf(e.state, sizeof(e.state), "%s", state);
    snprintf(e.previous, sizeof(e.previous), "%s", previous);
    snprintf(e.reason, sizeof(e.reason), "3 failed checks: connection refused");
    return e;
}

static struct mail_params params(void)
{
    return (struct mail_params){.from = "sluice@lb.example.com", .to = recipients, .to_count = 2,
                                .host = "lb1", .now_ms = 1714564800123LL, .unique = 0xabcdef};
}

/* Every line ends with CRLF, none is longer than max octets. */
static bool lines_within(const char *msg, size_t len, size_t max)
{
    size_t line = 0;
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
            return false;
        if (msg[i] == '\r' && (i + 1 == len || msg[i + 1] != '\n'))
            return false;
        line = msg[i] == '\n' ? 0 : line + 1;
        if (line > max + 1)   /* the CR counts here */
            return false;
    }
    return len >= 2 && msg[len - 2] == '\r' && msg[len - 1] == '\n';
}

static const char *body_of(const char *msg)
{
    const char *blank = strstr(msg, "\r\n\r\n");
    return blank ? blank + 4 : "";
}

static void test_headers(void)
{
    struct mail_params p = params();
    struct alert_event e = transition("api-1", "down", "up");
    size_t len = 0;
    char *msg = mail_build(&p, &e, 1, 1, 2, &len);
    CHECK(msg != NULL);
    if (!msg)
        return;
    CHECK_INT(len, strlen(msg));
    CHECK(strncmp(msg, "Date: Wed, 01 May 2024 12:00:00 +0000\r\n", 39) == 0);
    CHECK(strstr(msg, "\r\nFrom: sluice@lb.example.com\r\n") != NULL);
    CHECK(strstr(msg, "\r\nTo: oncall@example.com,\r\n backup@example.org\r\n") != NULL);
    CHECK(strstr(msg, "\r\nMessage-ID: <18f34069e7b.abcdef@lb.example.com>\r\n") != NULL);
    CHECK(strstr(msg, "\r\nSubject: [sluice] api-1 is now down\r\n") != NULL);
    CHECK(strstr(msg, "\r\nMIME-Version: 1.0\r\n") != NULL);
    CHECK(strstr(msg, "\r\nContent-Type: text/plain; charset=UTF-8\r\n") != NULL);
    CHECK(strstr(msg, "\r\nContent-Transfer-Encoding: quoted-printable\r\n") != NULL);
    CHECK(strstr(msg, "\r\nAuto-Submitted: auto-generated\r\n") != NULL);
    CHECK(strstr(msg, "X-Sluice-Test") == NULL);
    CHECK(lines_within(msg, len, 76));
    const char *body = body_of(msg);
    CHECK(strstr(body, "sluice on lb1 reports a change:\r\n") != NULL);
    CHECK(strstr(body, "api-1 (10.0.0.1:8001) is now down, was up.\r\n") != NULL);
    CHECK(strstr(body, "  when: 2024-05-01T12:00:00.123Z\r\n") != NULL);
    CHECK(strstr(body, "  why:  3 failed checks: connection refused\r\n") != NULL);
    CHECK(strstr(body, "Applications up: 1 of 2.\r\n") != NULL);
    free(msg);

    /* Unique per message: the caller's part changes, so does the id. */
    p.unique = 0xabcdf0;
    msg = mail_build(&p, &e, 1, 1, 2, &len);
    CHECK(msg && strstr(msg, "<18f34069e7b.abcdf0@lb.example.com>") != NULL);
    free(msg);
    CHECK(mail_build(&p, &e, 0, 1, 2, &len) == NULL);
}

static void test_service_events(void)
{
    struct mail_params p = params();
    struct alert_event e = transition("*", "down", "up");
    snprintf(e.event, sizeof(e.event), "all_down");
    snprintf(e.address, sizeof(e.address), "%s", "");
    size_t len;
    char *msg = mail_build(&p, &e, 1, 0, 2, &len);
    CHECK(msg && strstr(msg, "\r\nSubject: [sluice] no application is up\r\n") != NULL);
    CHECK(msg && strstr(body_of(msg), "No application is up.\r\n") != NULL);
    CHECK(msg && strstr(body_of(msg), "Applications up: 0 of 2.\r\n") != NULL);
    free(msg);
    snprintf(e.event, sizeof(e.event), "restored");
    char subject[200];
    CHECK(mail_subject(subject, sizeof(subject), &e, 1, false) > 0);
    CHECK_STR(subject, "[sluice] service restored");
}

static void test_burst_and_test_flag(void)
{
    struct mail_params p = params();
    struct alert_event events[5] = {
        transition("a", "down", "up"), transition("b", "down", "up"), transition("c", "up", "down"),
        transition("d", "draining", "up"), transition("e", "down", "up"),
    };
    char subject[300];
    CHECK(mail_subject(subject, sizeof(subject), events, 3, false) > 0);
    CHECK_STR(subject, "[sluice] 3 changes: a down, b down, c up");
    CHECK(mail_subject(subject, sizeof(subject), events, 5, true) > 0);
    CHECK_STR(subject, "[sluice] TEST: 5 changes: a down, b down, c up, ...");
    CHECK_INT(mail_subject(subject, 10, events, 1, false), -1);

    p.test = true;
    size_t len;
    char *msg = mail_build(&p, events, 5, 2, 7, &len);
    CHECK(msg != NULL);
    if (!msg)
        return;
    CHECK(strstr(msg, "\r\nX-Sluice-Test: yes\r\n") != NULL);
    CHECK(strstr(msg, "\r\nSubject: [sluice] TEST: 5 changes:") != NULL);
    const char *body = body_of(msg);
    CHECK(strncmp(body, "THIS IS A TEST", 14) == 0);
    CHECK(strstr(body, "reports these changes:") != NULL);
    for (int i = 0; i < 5; i++) {
        char want[80];
        snprintf(want, sizeof(want), "\r\n%s (10.0.0.1:8001) is now %s, was %s.\r\n",
                 events[i].application, events[i].state, events[i].previous);
        CHECK_MSG(strstr(body, want) != NULL, "missing %s", want);
    }
    CHECK(strstr(body, "Applications up: 2 of 7.") != NULL);
    free(msg);
}

/* Decodes one "=?UTF-8?B?...?=" word at p into out; returns the bytes. */
static int decode_word(const char *p, const char **end, unsigned char *out)
{
    if (strncmp(p, "=?UTF-8?B?", 10) != 0)
        return -1;
    p += 10;
    const char *stop = strstr(p, "?=");
    if (!stop)
        return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)p, (int)(stop - p));
    int pad = (stop - p >= 1 && stop[-1] == '=') + (stop - p >= 2 && stop[-2] == '=');
    *end = stop + 2;
    return n - pad;
}

static void test_encoded_subject(void)
{
    char out[1024];
    CHECK_INT(mail_encode_header(out, sizeof(out), "plain ascii", 9), 11);
    CHECK_STR(out, "plain ascii");

    const char *name = "[sluice] caf\xc3\xa9-\xe6\x9d\xb1\xe4\xba\xac is now down";
    mail_encode_header(out, sizeof(out), name, 9);
    CHECK(strncmp(out, "=?UTF-8?B?", 10) == 0);
    unsigned char decoded[512];
    const char *end;
    int n = decode_word(out, &end, decoded);
    CHECK_INT(n, strlen(name));
    CHECK(n > 0 && memcmp(decoded, name, (size_t)n) == 0);
    CHECK_STR(end, "");

    /* A long one: several words, folded, none split inside a character,
     * each line within RFC 2047's 76 characters. */
    char long_name[400] = "[sluice] ";
    for (int i = 0; i < 30; i++)
        strcat(long_name, "\xc3\xa9t\xc3\xa9");
    mail_encode_header(out, sizeof(out), long_name, 9);
    char joined[512] = "";
    size_t joined_len = 0, line = 9;
    int words = 0;
    for (const char *p = out; *p;) {
        unsigned char piece[128];
        const char *stop;
        int k = decode_word(p, &stop, piece);
        CHECK(k > 0);
        if (k <= 0)
            break;
        CHECK(stop - p <= 75);
        CHECK(line + (size_t)(stop - p) <= 76);
        /* No word may end inside a UTF-8 sequence. */
        CHECK((piece[k - 1] & 0x80) == 0 || (piece[k - 1] & 0xC0) != 0xC0);
        memcpy(joined + joined_len, piece, (size_t)k);
        joined_len += (size_t)k;
        words++;
        p = stop;
        if (strncmp(p, "\r\n ", 3) == 0) {
            p += 3;
            line = 1;
        }
    }
    joined[joined_len] = '\0';
    CHECK(words > 2);
    CHECK_STR(joined, long_name);

    /* And in a whole message. */
    struct mail_params p = params();
    struct alert_event e = transition("caf\xc3\xa9", "down", "up");
    size_t len;
    char *msg = mail_build(&p, &e, 1, 0, 1, &len);
    CHECK(msg && strstr(msg, "\r\nSubject: =?UTF-8?B?") != NULL);
    /* quoted-printable body: the name's bytes as =XX, nothing above 0x7f */
    CHECK(msg && strstr(body_of(msg), "caf=C3=A9 (10.0.0.1:8001) is now down") != NULL);
    bool ascii = true;
    for (size_t i = 0; msg && i < len; i++)
        ascii &= (unsigned char)msg[i] < 0x80;
    CHECK(ascii);
    free(msg);

    /* With 8BITMIME the body goes as it is. */
    p.eightbit = true;
    msg = mail_build(&p, &e, 1, 0, 1, &len);
    CHECK(msg && strstr(msg, "\r\nContent-Transfer-Encoding: 8bit\r\n") != NULL);
    CHECK(msg && strstr(body_of(msg), "caf\xc3\xa9 (10.0.0.1:8001) is now down") != NULL);
    CHECK(msg && lines_within(msg, len, 998));
    free(msg);
}

/* The header as it reads once unfolded (RFC 5322 section 2.2.3). */
static void unfold(const char *from, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = from; *p && n + 1 < cap; p++) {
        if (p[0] == '\r' && p[1] == '\n' && p[2] == ' ') {
            p++;
            continue;
        }
        if (p[0] == '\r' && p[1] == '\n')
            break;
        out[n++] = *p;
    }
    out[n] = '\0';
}

/* A subject template may repeat a long reason: the Subject line is folded
 * (or encoded) so that no line passes 998 octets, and reads the same. */
static void test_long_subject(void)
{
    struct mail_params p = params();
    struct alert_event e = transition("api-1", "down", "up");
    char tpl[1024] = "", want[4096], got[4096];
    for (int i = 0; i < 40; i++)
        strcat(tpl, i ? " | {reason}" : "{reason}");
    p.subject_template = tpl;
    size_t len = 0;
    char *msg = mail_build(&p, &e, 1, 1, 2, &len);
    CHECK(msg != NULL);
    if (!msg)
        return;
    CHECK(lines_within(msg, len, 998));
    unfold(strstr(msg, "\r\nSubject: ") + 2, got, sizeof(got));
    want[0] = '\0';
    strcat(want, "Subject: ");
    for (int i = 0; i < 40; i++) {
        strcat(want, i ? " | " : "");
        strcat(want, e.reason);
    }
    CHECK_STR(got, want);
    for (const char *line = strstr(msg, "\r\nSubject: ") + 2; *line == 'S' || *line == ' ';
         line = strstr(line, "\r\n") + 2)
        CHECK(strstr(line, "\r\n") - line <= 78);
    free(msg);

    /* No space to fold at: encoded-words, which may be cut anywhere. */
    memset(e.reason, 'x', sizeof(e.reason) - 1);
    e.reason[sizeof(e.reason) - 1] = '\0';
    p.subject_template = "{reason}{reason}{reason}{reason}{reason}{reason}";
    msg = mail_build(&p, &e, 1, 1, 2, &len);
    CHECK(msg && lines_within(msg, len, 998));
    CHECK(msg && strstr(msg, "\r\nSubject: =?UTF-8?B?") != NULL);
    free(msg);
}

static void test_quoted_printable(void)
{
    char out[8192];
    mail_quoted_printable(out, sizeof(out), "a=b \tc\n", 7);
    CHECK_STR(out, "a=3Db \tc\r\n");
    mail_quoted_printable(out, sizeof(out), "trailing \r\nend\t", 15);
    CHECK_STR(out, "trailing=20\r\nend=09\r\n");
    mail_quoted_printable(out, sizeof(out), "\xc3\xa9", 2);
    CHECK_STR(out, "=C3=A9\r\n");

    /* A line of 2000 characters: soft breaks, no line over 76, nothing
     * lost, no "=XX" cut in two. */
    char text[2001];
    for (int i = 0; i < 2000; i++)
        text[i] = i % 7 == 0 ? '=' : (char)('a' + i % 26);
    text[2000] = '\0';
    size_t n = mail_quoted_printable(out, sizeof(out), text, 2000);
    CHECK(n < sizeof(out));
    CHECK(lines_within(out, n, 76));
    char decoded[2100];
    size_t d = 0;
    for (size_t i = 0; i < n && d < sizeof(decoded) - 1;) {
        if (strncmp(out + i, "=\r\n", 3) == 0) {
            i += 3;
        } else if (out[i] == '=') {
            CHECK(i + 2 < n && out[i + 1] == '3' && out[i + 2] == 'D');
            decoded[d++] = '=';
            i += 3;
        } else if (out[i] == '\r') {
            i += 2;
        } else {
            decoded[d++] = out[i++];
        }
    }
    decoded[d] = '\0';
    CHECK_STR(decoded, text);
    CHECK_INT(mail_quoted_printable(out, 4, text, 2000), n);   /* as snprintf */
    CHECK_INT(strlen(out), 3);
}

static void test_addresses(void)
{
    static const char *const good[] = {
        "a@example.com", "first.last+tag@sub.example.co.uk", "x@localhost", "\"quoted name\"@example.com",
        "o'brien@example.ie", "root@[192.0.2.1]", "a_b-c@ex-ample.com",
    };
    static const char *const bad[] = {
        "", "plain", "@example.com", "a@", "a@@example.com", "a b@example.com", "a@exa mple.com",
        ".a@example.com", "a.@example.com", "a..b@example.com", "a@-example.com", "a@example-.com",
        "a@example..com", "Name <a@example.com>", "a@example.com\r\nBcc: x@y.z", "a@ex_ample.com",
        "\"unterminated@example.com",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK_MSG(mail_address_valid(good[i]), "refused %s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_MSG(!mail_address_valid(bad[i]), "accepted %s", bad[i]);
    char long_local[80];
    memset(long_local, 'a', 65);
    strcpy(long_local + 65, "@example.com");
    CHECK(!mail_address_valid(long_local));
    CHECK_STR(mail_domain("a@example.com"), "example.com");
    CHECK(mail_domain("nodomain") == NULL);
}

void unit_test_mail(void)
{
    test_headers();
    test_service_events();
    test_burst_and_test_flag();
    test_encoded_subject();
    test_long_subject();
    test_quoted_printable();
    test_addresses();
}
