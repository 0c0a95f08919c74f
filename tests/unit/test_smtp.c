/* test_smtp.c - smtp.c's dialogue fed canned replies: every step in
 * order (plain, STARTTLS, AUTH PLAIN and LOGIN), multi-line replies and
 * the extensions they carry, a 4xx and a 5xx at every step, recipients
 * partly or wholly refused, malformed replies; and dot-stuffing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "smtp.h"
#include "unit.h"
#include "unit_net.h"

static const char *const two[] = {"a@example.com", "b@example.com"};
static const char *const one[] = {"a@example.com"};

static struct smtp_dialogue dialogue(bool starttls, const char *username)
{
    struct smtp_dialogue d = {.helo_name = "lb1", .from = "sluice@example.com", .to = two,
                              .to_count = 2, .username = username, .password = "pa55word",
                              .starttls = starttls};
    smtp_dialogue_start(&d);
    return d;
}

static char out[SMTP_COMMAND_MAX];

static enum smtp_next feed(struct smtp_dialogue *d, const char *line)
{
    return smtp_dialogue_feed(d, line, strlen(line), out, sizeof(out));
}

/* The reply line leads to sending `command`. */
#define EXPECT_SEND(d, line, command)                                           \
    do {                                                                        \
        CHECK_INT(feed(d, line), SMTP_NEXT_SEND);                               \
        CHECK_STR(out, command);                                                \
    } while (0)

static void test_plain_dialogue(void)
{
    struct smtp_dialogue d = dialogue(false, NULL);
    EXPECT_SEND(&d, "220 mail.example.com ESMTP ready", "EHLO lb1\r\n");
    CHECK_INT(feed(&d, "250-mail.example.com greets lb1"), SMTP_NEXT_READ);
    CHECK_INT(feed(&d, "250-PIPELINING"), SMTP_NEXT_READ);
    CHECK_INT(feed(&d, "250-SIZE 10240000"), SMTP_NEXT_READ);
    EXPECT_SEND(&d, "250 8BITMIME", "MAIL FROM:<sluice@example.com> BODY=8BITMIME\r\n");
    CHECK(d.offers_8bitmime);
    CHECK(!d.offers_starttls);
    EXPECT_SEND(&d, "250 2.1.0 Ok", "RCPT TO:<a@example.com>\r\n");
    EXPECT_SEND(&d, "250 2.1.5 Ok", "RCPT TO:<b@example.com>\r\n");
    EXPECT_SEND(&d, "251 2.1.5 will forward", "DATA\r\n");
    CHECK_INT(feed(&d, "354 End data with <CR><LF>.<CR><LF>"), SMTP_NEXT_MESSAGE);
    CHECK_INT(feed(&d, "250 2.0.0 Ok: queued as 12345"), SMTP_NEXT_DONE);
    CHECK_STR(out, "QUIT\r\n");
    CHECK_INT(d.rcpt_accepted, 2);
    CHECK_STR(d.note, "");
}

static void test_no_8bitmime(void)
{
    struct smtp_dialogue d = dialogue(false, "");
    feed(&d, "220 hi");
    EXPECT_SEND(&d, "250 hello", "MAIL FROM:<sluice@example.com>\r\n");
    CHECK(!d.offers_8bitmime);
}

static void test_starttls_and_auth_plain(void)
{
    struct smtp_dialogue d = dialogue(true, "user");
    feed(&d, "220 hi");
    CHECK_INT(feed(&d, "250-mail.example.com"), SMTP_NEXT_READ);
    CHECK_INT(feed(&d, "250-AUTH PLAIN LOGIN"), SMTP_NEXT_READ);
    EXPECT_SEND(&d, "250 STARTTLS", "STARTTLS\r\n");
    CHECK_INT(feed(&d, "220 2.0.0 Ready to start TLS"), SMTP_NEXT_TLS);
    CHECK_INT(smtp_dialogue_secured(&d, out, sizeof(out)), SMTP_NEXT_SEND);
    CHECK_STR(out, "EHLO lb1\r\n");
    CHECK(d.secured);
    CHECK(!d.offers_plain);     /* forgotten: learned in the clear */
    CHECK_INT(feed(&d, "250-mail.example.com"), SMTP_NEXT_READ);
    /* "\0user\0pa55word" in base64 (RFC 4616) */
    EXPECT_SEND(&d, "250 AUTH LOGIN PLAIN", "AUTH PLAIN AHVzZXIAcGE1NXdvcmQ=\r\n");
    EXPECT_SEND(&d, "235 2.7.0 Authentication successful", "MAIL FROM:<sluice@example.com>\r\n");
}

static void test_auth_login(void)
{
    struct smtp_dialogue d = dialogue(false, "user");
    feed(&d, "220 hi");
    feed(&d, "250-mail.example.com");
    EXPECT_SEND(&d, "250 AUTH=LOGIN", "AUTH LOGIN\r\n");
    EXPECT_SEND(&d, "334 VXNlcm5hbWU6", "dXNlcg==\r\n");
    EXPECT_SEND(&d, "334 UGFzc3dvcmQ6", "cGE1NXdvcmQ=\r\n");
    EXPECT_SEND(&d, "235 ok", "MAIL FROM:<sluice@example.com>\r\n");
}

static void test_refusals_without_offers(void)
{
    struct smtp_dialogue d = dialogue(true, NULL);
    feed(&d, "220 hi");
    CHECK_INT(feed(&d, "250 mail.example.com"), SMTP_NEXT_FAILED);
    CHECK(strstr(d.reason, "does not offer STARTTLS") != NULL);
    CHECK(!d.permanent);

    d = dialogue(true, "user");
    feed(&d, "220 hi");
    feed(&d, "250-mail.example.com");
    feed(&d, "250-AUTH PLAIN");
    feed(&d, "250 STARTTLS");
    feed(&d, "220 go");
    smtp_dialogue_secured(&d, out, sizeof(out));
    /* AUTH offered in the clear only: after TLS it is gone */
    CHECK_INT(feed(&d, "250 mail.example.com"), SMTP_NEXT_FAILED);
    CHECK(strstr(d.reason, "neither AUTH PLAIN nor AUTH LOGIN") != NULL);
}

/* Feeds each line of a "\n"-separated reply; returns the last answer. */
static enum smtp_next feed_lines(struct smtp_dialogue *d, const char *lines)
{
    enum smtp_next next = SMTP_NEXT_READ;
    for (const char *p = lines; *p;) {
        size_t n = strcspn(p, "\n");
        next = smtp_dialogue_feed(d, p, n, out, sizeof(out));
        p += n + (p[n] == '\n');
    }
    return next;
}

/* Walks a dialogue (STARTTLS, AUTH PLAIN, one recipient) up to the
 * step `stop` and answers it with `reply`. */
static enum smtp_next run_until(struct smtp_dialogue *d, enum smtp_state stop, const char *reply)
{
    static const struct {
        enum smtp_state state;
        const char *ok;
    } steps[] = {
        {SMTP_GREETING, "220 hi"},       {SMTP_EHLO, "250-mail\n250 STARTTLS"},
        {SMTP_STARTTLS, "220 go ahead"}, {SMTP_EHLO_SECURED, "250-mail\n250 AUTH PLAIN"},
        {SMTP_AUTH_PLAIN, "235 ok"},     {SMTP_MAIL, "250 ok"},
        {SMTP_RCPT, "250 ok"},           {SMTP_DATA, "354 go on"},
        {SMTP_MESSAGE, "250 queued"},
    };
    *d = dialogue(true, "user");
    d->to = one;
    d->to_count = 1;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        CHECK_INT(d->state, steps[i].state);
        if (steps[i].state == stop)
            return feed(d, reply);
        enum smtp_next next = feed_lines(d, steps[i].ok);
        if (next == SMTP_NEXT_TLS)
            smtp_dialogue_secured(d, out, sizeof(out));
    }
    return SMTP_NEXT_DONE;
}

static void test_every_step_fails_by_class(void)
{
    static const struct {
        enum smtp_state state;
        const char *name;
    } steps[] = {
        {SMTP_GREETING, "greeting"}, {SMTP_EHLO, "EHLO"},          {SMTP_STARTTLS, "STARTTLS"},
        {SMTP_EHLO_SECURED, "EHLO"}, {SMTP_AUTH_PLAIN, "AUTH"},    {SMTP_MAIL, "MAIL FROM"},
        {SMTP_RCPT, "RCPT TO"},      {SMTP_DATA, "DATA"},          {SMTP_MESSAGE, "end of data"},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        for (int permanent = 0; permanent <= 1; permanent++) {
            struct smtp_dialogue d;
            const char *reply = permanent ? "554 5.7.1 go away" : "451 4.3.0 try later";
            enum smtp_next next = run_until(&d, steps[i].state, reply);
            CHECK_MSG(next == SMTP_NEXT_FAILED, "step %s, reply %s: %d", steps[i].name, reply, next);
            CHECK_MSG(d.permanent == (permanent == 1), "step %s, reply %s", steps[i].name, reply);
            CHECK_MSG(strstr(d.reason, steps[i].name) && strstr(d.reason, reply),
                      "step %s: reason \"%s\"", steps[i].name, d.reason);
            CHECK(strstr(d.reason, "pa55word") == NULL);
            CHECK_STR(out, "QUIT\r\n");
            /* Nothing more after a failure. */
            CHECK_INT(feed(&d, "250 ok"), SMTP_NEXT_DONE);
        }
    }
    /* The reply to STARTTLS must be 220; the one to AUTH, 235. */
    struct smtp_dialogue d;
    CHECK_INT(run_until(&d, SMTP_STARTTLS, "250 sure"), SMTP_NEXT_FAILED);
    CHECK_INT(run_until(&d, SMTP_AUTH_PLAIN, "334 "), SMTP_NEXT_FAILED);
    CHECK_INT(run_until(&d, SMTP_MESSAGE, "250 queued"), SMTP_NEXT_DONE);
}

static void test_auth_login_failures(void)
{
    static const char *const replies[] = {"535 5.7.8 bad credentials", "454 4.7.0 try later"};
    for (int i = 0; i < 2; i++) {
        struct smtp_dialogue d = dialogue(false, "user");
        feed(&d, "220 hi");
        feed_lines(&d, "250-mail\n250 AUTH LOGIN");
        feed(&d, "334 VXNlcm5hbWU6");
        feed(&d, "334 UGFzc3dvcmQ6");
        CHECK_INT(feed(&d, replies[i]), SMTP_NEXT_FAILED);
        CHECK_INT(d.permanent, i == 0);
        CHECK(strstr(d.reason, replies[i]) != NULL);
        CHECK(strstr(d.reason, "pa55word") == NULL);
    }
}

/* A dialogue whose MAIL FROM was just accepted: RCPT TO comes next. */
static struct smtp_dialogue at_recipients(void)
{
    struct smtp_dialogue d = dialogue(false, NULL);
    feed(&d, "220 hi");
    feed(&d, "250 hello");
    feed(&d, "250 ok");
    return d;
}

static void test_recipients(void)
{
    /* One of two refused: delivered to the other, the refusal noted. */
    struct smtp_dialogue d = at_recipients();
    EXPECT_SEND(&d, "550 5.1.1 <a@example.com>: no such user", "RCPT TO:<b@example.com>\r\n");
    EXPECT_SEND(&d, "250 ok", "DATA\r\n");
    CHECK_INT(d.rcpt_accepted, 1);
    CHECK(strstr(d.note, "a@example.com refused: 550 5.1.1") != NULL);

    /* Both refused for good: permanent. */
    d = at_recipients();
    feed(&d, "550 no");
    CHECK_INT(feed(&d, "553 not here"), SMTP_NEXT_FAILED);
    CHECK(d.permanent);
    CHECK(strstr(d.reason, "refused for every recipient") != NULL);
    CHECK(strstr(d.reason, "b@example.com refused: 553 not here") != NULL);

    /* One only for now: worth a retry. */
    d = at_recipients();
    feed(&d, "450 mailbox busy");
    CHECK_INT(feed(&d, "550 no"), SMTP_NEXT_FAILED);
    CHECK(!d.permanent);
}

static void test_malformed_replies(void)
{
    struct smtp_dialogue d = dialogue(false, NULL);
    CHECK_INT(feed(&d, "hello there"), SMTP_NEXT_FAILED);
    CHECK(strstr(d.reason, "malformed reply") != NULL);

    d = dialogue(false, NULL);
    CHECK_INT(feed(&d, "220"), SMTP_NEXT_SEND);    /* a bare code is a whole reply */

    d = dialogue(false, NULL);
    feed(&d, "220 hi");
    CHECK_INT(feed(&d, "250-one"), SMTP_NEXT_READ);
    CHECK_INT(feed(&d, "251 two"), SMTP_NEXT_FAILED);    /* codes differ inside one reply */

    d = dialogue(false, NULL);
    CHECK_INT(feed(&d, "220_bad separator"), SMTP_NEXT_FAILED);
    d = dialogue(false, NULL);
    CHECK_INT(feed(&d, "120 wait"), SMTP_NEXT_FAILED);

    /* A control byte in a reply never reaches the log line. */
    d = dialogue(false, NULL);
    CHECK_INT(feed(&d, "554 bad\x1b[31m"), SMTP_NEXT_FAILED);
    CHECK(strchr(d.reason, '\x1b') == NULL);
}

/* A server that never ends its reply is cut off at once, not read for
 * as long as it keeps sending: the alert thread has other work. */
static void test_endless_replies(void)
{
    struct smtp_dialogue d = dialogue(false, NULL);
    feed(&d, "220 hi");
    enum smtp_next next = SMTP_NEXT_READ;
    int lines = 0;
    while (next == SMTP_NEXT_READ && lines < 10 * SMTP_REPLY_LINES_MAX) {
        next = feed(&d, "250-X-PADDING");
        lines++;
    }
    CHECK_INT(next, SMTP_NEXT_FAILED);
    CHECK(lines <= SMTP_REPLY_LINES_MAX);
    CHECK_MSG(strstr(d.reason, "EHLO: a reply of more than") != NULL, "%s", d.reason);
}

static struct {
    bool done, delivered;
    char why[SMTP_REASON_MAX];
} outcome;

static void on_sent(struct smtp_session *s, bool delivered, bool permanent, const char *why,
                    const char *note)
{
    (void)s, (void)permanent, (void)note;
    outcome.done = true;
    outcome.delivered = delivered;
    snprintf(outcome.why, sizeof(outcome.why), "%s", why);
}

/* The driver against a server whose greeting is one line without an end. */
static void test_endless_line(void)
{
    struct loop loop;
    struct config_address address;
    struct smtp_session session = {0};
    char *to[] = {"a@example.com"};
    struct config_email email = {.enabled = true, .host = "127.0.0.1", .security = EMAIL_NONE,
                                 .from = "sluice@example.com", .to_count = 1, .to = {to[0]}};
    struct alert_event event = {.event = "test", .application = "TEST"};
    int listener = unit_listen_local(&address);
    if (listener < 0 || loop_init(&loop) < 0)
        return;
    struct smtp_target target = {.address = &address, .email = &email, .helo_name = "lb1", .host = "lb1"};
    smtp_session_init(&session);
    outcome.done = false;
    CHECK_INT(smtp_send(&session, &loop, &target, &event, 1, 0, 1, true, on_sent), 0);
    int conn = -1;
    char junk[8192];
    memset(junk, 'x', sizeof(junk));
    memcpy(junk, "220 ", 4);
    for (int i = 0; i < 200 && !outcome.done; i++) {
        loop_run_once(&loop, 5);
        if (conn < 0 && (conn = accept(listener, NULL, NULL)) >= 0)
            CHECK(write(conn, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
    }
    CHECK_MSG(outcome.done, "still reading a line that never ends");
    CHECK(!outcome.delivered);
    CHECK_MSG(strstr(outcome.why, "a reply line longer than") != NULL, "%s", outcome.why);
    smtp_cancel(&session);
    if (conn >= 0)
        close(conn);
    close(listener);
    loop_close(&loop);
}

static void check_stuffed(const char *in, const char *want)
{
    size_t len = 0;
    char *s = smtp_dot_stuff(in, strlen(in), &len);
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_MSG(len == strlen(want) && memcmp(s, want, len) == 0, "for \"%s\" got \"%.*s\"", in, (int)len, s);
    free(s);
}

static void test_dot_stuffing(void)
{
    check_stuffed("a\r\nb\r\n", "a\r\nb\r\n.\r\n");
    check_stuffed(".\r\n", "..\r\n.\r\n");
    check_stuffed(".leading\r\nmid.dle\r\n..two\r\n.\r\nend", "..leading\r\nmid.dle\r\n...two\r\n..\r\nend\r\n.\r\n");
    check_stuffed("no end", "no end\r\n.\r\n");
}

void unit_test_smtp(void)
{
    test_plain_dialogue();
    test_no_8bitmime();
    test_starttls_and_auth_plain();
    test_auth_login();
    test_refusals_without_offers();
    test_every_step_fails_by_class();
    test_auth_login_failures();
    test_recipients();
    test_malformed_replies();
    test_endless_replies();
    test_endless_line();
    test_dot_stuffing();
}
