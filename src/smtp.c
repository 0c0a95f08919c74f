/* smtp.c - the SMTP dialogue and its non-blocking driver; see smtp.h.
 *
 * The dialogue. One state per reply awaited; smtp_dialogue_feed collects
 * the lines of a reply ("250-..." continue it, "250 ..." ends it), learns
 * the EHLO extensions on the way, and on the last line decides. No
 * PIPELINING: an alert is a handful of commands, and one at a time keeps
 * every refusal tied to the command it answers.
 *
 * The driver. A session is one attempt: connect, (TLS,) then the
 * dialogue's commands, each written whole before its reply is read. One
 * timer carries the deadline of the step under way. Whatever ends the
 * attempt goes through session_finish, which closes everything before it
 * calls done, so that done may free the session; every function that may
 * have finished returns -1 and its callers return at once.
 *
 * STARTTLS. Bytes that arrive after the server's 220 to STARTTLS and
 * before the handshake are dropped: an attacker on the path could
 * otherwise slip replies in that would be read as if they came inside TLS
 * (the "STARTTLS command injection" of CVE-2011-0411).
 */
#include "smtp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mail.h"
#include "net.h"
#include "tls.h"

/* ---- the dialogue ---- */

static const char *const step_names[] = {
    [SMTP_GREETING] = "greeting",
    [SMTP_EHLO] = "EHLO",
    [SMTP_STARTTLS] = "STARTTLS",
    [SMTP_EHLO_SECURED] = "EHLO",
    [SMTP_AUTH_PLAIN] = "AUTH PLAIN",
    [SMTP_AUTH_LOGIN_USER] = "AUTH LOGIN",
    [SMTP_AUTH_LOGIN_PASSWORD] = "AUTH LOGIN (username)",
    [SMTP_AUTH_RESULT] = "AUTH LOGIN (password)",
    [SMTP_MAIL] = "MAIL FROM",
    [SMTP_RCPT] = "RCPT TO",
    [SMTP_DATA] = "DATA",
    [SMTP_MESSAGE] = "end of data",
    [SMTP_QUIT] = "QUIT",
    [SMTP_END] = "end",
};

void smtp_dialogue_start(struct smtp_dialogue *d)
{
    d->offers_starttls = d->offers_plain = d->offers_login = d->offers_8bitmime = false;
    d->state = SMTP_GREETING;
    d->rcpt_sent = d->rcpt_accepted = 0;
    d->permanent = d->rcpt_transient = false;
    d->reason[0] = d->note[0] = d->last[0] = '\0';
    d->code = 0;
    d->reply_lines = 0;
}

static enum smtp_next command(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum smtp_next command(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return SMTP_NEXT_FAILED;
    }
    return SMTP_NEXT_SEND;
}

static enum smtp_next fail(struct smtp_dialogue *d, char *out, size_t cap, bool permanent,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Ends the dialogue; QUIT is offered to the driver, which sends it if the
 * connection can still take it. */
static enum smtp_next fail(struct smtp_dialogue *d, char *out, size_t cap, bool permanent,
                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
    d->permanent = permanent;
    d->state = SMTP_END;
    snprintf(out, cap, "QUIT\r\n");
    return SMTP_NEXT_FAILED;
}

/* The server said no to the step under way: its reply is the reason. */
static enum smtp_next refused(struct smtp_dialogue *d, char *out, size_t cap)
{
    return fail(d, out, cap, d->code >= 500, "%s refused: %s", step_names[d->state], d->last);
}

/* RFC 5321 section 4.1.1.1: after the first line, each EHLO line is a
 * keyword and its parameters. AUTH lists mechanisms (RFC 4954); some old
 * servers still write "AUTH=LOGIN". */
static void learn_extension(struct smtp_dialogue *d, const char *text)
{
    if (strcasecmp(text, "STARTTLS") == 0)
        d->offers_starttls = true;
    else if (strcasecmp(text, "8BITMIME") == 0)
        d->offers_8bitmime = true;
    else if (strncasecmp(text, "AUTH", 4) == 0 && (text[4] == ' ' || text[4] == '=')) {
        char list[SMTP_REPLY_MAX];
        snprintf(list, sizeof(list), "%s", text + 5);
        char *save = NULL;
        for (char *m = strtok_r(list, " ", &save); m; m = strtok_r(NULL, " ", &save)) {
            d->offers_plain |= strcasecmp(m, "PLAIN") == 0;
            d->offers_login |= strcasecmp(m, "LOGIN") == 0;
        }
    }
}

static size_t base64(char *out, size_t cap, const void *data, size_t len)
{
    if (cap < (len + 2) / 3 * 4 + 1)
        return 0;
    return (size_t)EVP_EncodeBlock((unsigned char *)out, data, (int)len);
}

static enum smtp_next send_mail_from(struct smtp_dialogue *d, char *out, size_t cap)
{
    d->state = SMTP_MAIL;
    /* RFC 6152: declared when offered, so an 8bit body is never a surprise. */
    return command(out, cap, "MAIL FROM:<%s>%s\r\n", d->from, d->offers_8bitmime ? " BODY=8BITMIME" : "");
}

/* RFC 4616: authzid (empty), NUL, authcid, NUL, password. */
static enum smtp_next send_auth_plain(struct smtp_dialogue *d, char *out, size_t cap)
{
    char raw[512], encoded[700];
    size_t user = strlen(d->username), pass = strlen(d->password);
    if (user + pass + 2 > sizeof(raw))
        return fail(d, out, cap, true, "username and password too long for AUTH PLAIN");
    raw[0] = '\0';
    memcpy(raw + 1, d->username, user);
    raw[1 + user] = '\0';
    memcpy(raw + 2 + user, d->password, pass);
    size_t n = base64(encoded, sizeof(encoded), raw, user + pass + 2);
    explicit_bzero(raw, sizeof(raw));
    d->state = SMTP_AUTH_PLAIN;
    enum smtp_next next = command(out, cap, "AUTH PLAIN %.*s\r\n", (int)n, encoded);
    explicit_bzero(encoded, sizeof(encoded));
    return next;
}

static enum smtp_next send_base64_line(struct smtp_dialogue *d, char *out, size_t cap,
                                       const char *secret, enum smtp_state next_state)
{
    char encoded[700];
    size_t n = base64(encoded, sizeof(encoded), secret, strlen(secret));
    if (n == 0 && secret[0])
        return fail(d, out, cap, true, "username or password too long for AUTH LOGIN");
    d->state = next_state;
    enum smtp_next next = command(out, cap, "%.*s\r\n", (int)n, encoded);
    explicit_bzero(encoded, sizeof(encoded));
    return next;
}

/* What follows a successful EHLO: STARTTLS, AUTH or the mail itself. */
static enum smtp_next after_ehlo(struct smtp_dialogue *d, char *out, size_t cap)
{
    if (d->starttls && !d->secured) {
        if (!d->offers_starttls)
            return fail(d, out, cap, false, "the server does not offer STARTTLS (security = "
                                            "\"starttls\" requires it)");
        d->state = SMTP_STARTTLS;
        return command(out, cap, "STARTTLS\r\n");
    }
    if (!d->username || !d->username[0])
        return send_mail_from(d, out, cap);
    if (d->offers_plain)
        return send_auth_plain(d, out, cap);
    if (d->offers_login) {
        d->state = SMTP_AUTH_LOGIN_USER;
        return command(out, cap, "AUTH LOGIN\r\n");
    }
    return fail(d, out, cap, false, "the server offers neither AUTH PLAIN nor AUTH LOGIN%s",
                d->secured ? "" : " (some offer AUTH only after STARTTLS)");
}

static enum smtp_next send_rcpt(struct smtp_dialogue *d, char *out, size_t cap)
{
    d->state = SMTP_RCPT;
    return command(out, cap, "RCPT TO:<%s>\r\n", d->to[d->rcpt_sent++]);
}

/* Notes a refused recipient for the log and moves on to the next one,
 * or to DATA once every recipient was asked. */
static enum smtp_next after_rcpt(struct smtp_dialogue *d, char *out, size_t cap)
{
    const char *who = d->to[d->rcpt_sent - 1];
    if (d->code / 100 == 2) {
        d->rcpt_accepted++;
    } else {
        size_t used = strlen(d->note);
        snprintf(d->note + used, sizeof(d->note) - used, "%s%s refused: %s", used ? "; " : "", who,
                 d->last);
        if (d->code >= 500)
            d->permanent = true;   /* stays only if every recipient was refused so */
        else
            d->rcpt_transient = true;
    }
    if (d->rcpt_sent < d->to_count)
        return send_rcpt(d, out, cap);
    if (d->rcpt_accepted == 0)
        return fail(d, out, cap, d->permanent && !d->rcpt_transient, "RCPT TO refused for every recipient: %s",
                    d->note);
    d->state = SMTP_DATA;
    return command(out, cap, "DATA\r\n");
}

/* The last line of a reply: the decision for the step under way. */
static enum smtp_next decide(struct smtp_dialogue *d, char *out, size_t cap)
{
    int class = d->code / 100;
    switch (d->state) {
    case SMTP_GREETING:
        if (d->code != 220)
            return refused(d, out, cap);
        d->state = SMTP_EHLO;
        return command(out, cap, "EHLO %s\r\n", d->helo_name);
    case SMTP_EHLO:
    case SMTP_EHLO_SECURED:
        return class == 2 ? after_ehlo(d, out, cap) : refused(d, out, cap);
    case SMTP_STARTTLS:
        if (d->code != 220)
            return refused(d, out, cap);
        return SMTP_NEXT_TLS;
    case SMTP_AUTH_PLAIN:
    case SMTP_AUTH_RESULT:
        return d->code == 235 ? send_mail_from(d, out, cap) : refused(d, out, cap);
    case SMTP_AUTH_LOGIN_USER:
        if (d->code != 334)
            return refused(d, out, cap);
        return send_base64_line(d, out, cap, d->username, SMTP_AUTH_LOGIN_PASSWORD);
    case SMTP_AUTH_LOGIN_PASSWORD:
        if (d->code != 334)
            return refused(d, out, cap);
        return send_base64_line(d, out, cap, d->password, SMTP_AUTH_RESULT);
    case SMTP_MAIL:
        return class == 2 ? send_rcpt(d, out, cap) : refused(d, out, cap);
    case SMTP_RCPT:
        if (class != 2 && class != 4 && class != 5)
            return refused(d, out, cap);
        return after_rcpt(d, out, cap);
    case SMTP_DATA:
        if (d->code != 354)
            return refused(d, out, cap);
        d->state = SMTP_MESSAGE;
        return SMTP_NEXT_MESSAGE;
    case SMTP_MESSAGE:
        if (class != 2)
            return refused(d, out, cap);
        d->state = SMTP_QUIT;
        snprintf(out, cap, "QUIT\r\n");
        return SMTP_NEXT_DONE;
    case SMTP_QUIT:
    case SMTP_END:
        break;
    }
    out[0] = '\0';
    return SMTP_NEXT_DONE;
}

/* "250-text", "250 text" or a bare "250". Returns the code, or -1. */
static int reply_code(const char *line, size_t len, char *sep)
{
    if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
        line[2] < '0' || line[2] > '9')
        return -1;
    *sep = len > 3 ? line[3] : ' ';
    if (*sep != ' ' && *sep != '-')
        return -1;
    return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

enum smtp_next smtp_dialogue_feed(struct smtp_dialogue *d, const char *line, size_t len, char *out,
                                  size_t cap)
{
    char sep;
    int code = reply_code(line, len, &sep);
    out[0] = '\0';
    if (d->state >= SMTP_QUIT)
        return SMTP_NEXT_DONE;
    snprintf(d->last, sizeof(d->last), "%.*s", (int)len, line);
    for (char *p = d->last; *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            *p = '?';   /* the reason goes into one log line */
    if (code < 0 || (d->reply_lines > 0 && code != d->code))
        return fail(d, out, cap, false, "%s: malformed reply \"%s\"", step_names[d->state], d->last);
    d->code = code;
    if ((d->state == SMTP_EHLO || d->state == SMTP_EHLO_SECURED) && d->reply_lines > 0 && len > 4)
        learn_extension(d, d->last + 4);
    if (sep == '-') {
        if (++d->reply_lines >= SMTP_REPLY_LINES_MAX)
            return fail(d, out, cap, false, "%s: a reply of more than %d lines", step_names[d->state],
                        SMTP_REPLY_LINES_MAX);
        return SMTP_NEXT_READ;
    }
    d->reply_lines = 0;
    return decide(d, out, cap);
}

enum smtp_next smtp_dialogue_secured(struct smtp_dialogue *d, char *out, size_t cap)
{
    /* RFC 3207 section 4.2: forget what was learned in the clear. */
    d->offers_starttls = d->offers_plain = d->offers_login = d->offers_8bitmime = false;
    d->secured = true;
    d->state = SMTP_EHLO_SECURED;
    return command(out, cap, "EHLO %s\r\n", d->helo_name);
}

char *smtp_dot_stuff(const char *message, size_t len, size_t *out_len)
{
    size_t dots = len > 0 && message[0] == '.';
    for (size_t i = 0; i + 1 < len; i++)
        dots += message[i] == '\n' && message[i + 1] == '.';
    char *out = malloc(len + dots + 6);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (message[i] == '.' && (i == 0 || message[i - 1] == '\n'))
            out[n++] = '.';
        out[n++] = message[i];
    }
    if (len > 0 && (len < 2 || message[len - 2] != '\r' || message[len - 1] != '\n')) {
        out[n++] = '\r';
        out[n++] = '\n';
    }
    memcpy(out + n, ".\r\n", 3);
    n += 3;
    *out_len = n;
    return out;
}

/* ---- the driver ---- */

static void session_on_io(struct loop *loop, struct loop_io *io, uint32_t events);
static void session_on_timer(struct loop *loop, struct loop_timer *timer);

void smtp_session_init(struct smtp_session *s)
{
    s->fd = -1;
    s->io.fd = -1;
    s->ssl = NULL;
    s->active = false;
    s->message = NULL;
    loop_timer_init(&s->timer, session_on_timer);
}

static void session_close(struct smtp_session *s)
{
    loop_timer_cancel(s->loop, &s->timer);
    if (s->fd >= 0) {
        /* Taken out of epoll first: a command alert being spawned may hold a
         * copy of the descriptor, and close() alone would leave it watched. */
        loop_del(s->loop, &s->io);
        tls_close(s->ssl);
        close(s->fd);
    }
    free(s->message);
    s->message = NULL;
    s->ssl = NULL;
    s->fd = s->io.fd = -1;
    s->out = NULL;
    s->out_len = s->out_sent = 0;
    s->active = false;
}

void smtp_cancel(struct smtp_session *s)
{
    if (s->active)
        session_close(s);
}

/* Ends the attempt. Returns -1, which every caller passes up: the session
 * may be freed by done. */
static int session_finish(struct smtp_session *s, bool delivered)
{
    struct smtp_dialogue *d = &s->dialogue;
    char why[SMTP_REASON_MAX], note[SMTP_REASON_MAX];
    snprintf(why, sizeof(why), "%s", delivered ? "" : d->reason);
    snprintf(note, sizeof(note), "%s", delivered ? d->note : "");
    bool permanent = !delivered && d->permanent;
    session_close(s);
    s->done(s, delivered, permanent, why, note);
    return -1;
}

static int session_fail(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int session_fail(struct smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->dialogue.reason, sizeof(s->dialogue.reason), fmt, ap);
    va_end(ap);
    s->dialogue.permanent = false;
    return session_finish(s, false);
}

static const char *session_doing(const struct smtp_session *s)
{
    if (!s->connected)
        return "connecting to";
    if (s->handshaking)
        return "in the TLS handshake with";
    return NULL;
}

static int session_fail_errno(struct smtp_session *s, int err)
{
    char text[80];
    const char *doing = session_doing(s);
    if (doing)
        return session_fail(s, "%s %s: %s", doing, s->target->address->text,
                            strerror_r(err, text, sizeof(text)));
    return session_fail(s, "connection lost during %s: %s", step_names[s->dialogue.state],
                        strerror_r(err, text, sizeof(text)));
}

static int session_fail_tls(struct smtp_session *s, int rc)
{
    char text[160];
    if (rc != -EPROTO)
        return session_fail_errno(s, -rc);
    tls_error_text(s->ssl, text, sizeof(text));
    return session_fail(s, "TLS %s with %s failed: %s", s->handshaking ? "handshake" : "session",
                        s->target->email->host, text);
}

static void session_on_timer(struct loop *loop, struct loop_timer *timer)
{
    struct smtp_session *s = container_of(timer, struct smtp_session, timer);
    const char *doing = session_doing(s);
    (void)loop;
    if (s->dialogue.reason[0]) {   /* a failure found inside smtp_send */
        session_finish(s, false);
        return;
    }
    if (doing)
        session_fail(s, "timeout after %d ms %s %s", SMTP_CONNECT_TIMEOUT_MS, doing,
                     s->target->address->text);
    else if (s->dialogue.state == SMTP_GREETING)
        session_fail(s, "timeout after %d ms waiting for the greeting", SMTP_REPLY_TIMEOUT_MS);
    else
        session_fail(s, "timeout after %d ms waiting for the reply to %s",
                     s->dialogue.state == SMTP_MESSAGE ? SMTP_END_TIMEOUT_MS : SMTP_REPLY_TIMEOUT_MS,
                     step_names[s->dialogue.state]);
}

static int session_arm(struct smtp_session *s, int64_t ms)
{
    if (loop_timer_arm(s->loop, &s->timer, ms) < 0)
        return session_fail(s, "out of memory");
    return 0;
}

static ssize_t session_write_some(struct smtp_session *s)
{
    return tls_or_clear_write(s->ssl, s->fd, s->out + s->out_sent, s->out_len - s->out_sent);
}

/* Writes what is queued. 0 when all is out or the socket is full. */
static int session_write(struct smtp_session *s)
{
    while (s->out && s->out_sent < s->out_len) {
        ssize_t n = session_write_some(s);
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return s->ssl ? session_fail_tls(s, (int)n) : session_fail_errno(s, (int)-n);
        s->out_sent += (size_t)n;
    }
    return 0;
}

static int session_queue(struct smtp_session *s, char *data, size_t len, int64_t reply_ms)
{
    s->out = data;
    s->out_len = len;
    s->out_sent = 0;
    if (session_arm(s, reply_ms) < 0)
        return -1;
    return session_write(s);
}

/* A last word before closing: one try, whatever happens to it. */
static void session_say_quit(struct smtp_session *s)
{
    if (!s->command[0] || (s->out && s->out_sent < s->out_len))
        return;
    s->out = s->command;
    s->out_len = strlen(s->command);
    s->out_sent = 0;
    (void)session_write_some(s);
}

static int session_send_message(struct smtp_session *s)
{
    const struct smtp_target *t = s->target;
    const struct config_email *email = t->email;
    struct mail_params p = {
        .from = email->from, .to = (const char *const *)email->to, .to_count = email->to_count,
        .host = t->host, .now_ms = loop_wall_ms(), .unique = t->unique,
        .eightbit = s->dialogue.offers_8bitmime, .test = s->test, .subject_template = email->subject,
    };
    size_t len = 0, stuffed_len = 0;
    char *message = mail_build(&p, s->events, s->count, s->up, s->total, &len);
    char *stuffed = message ? smtp_dot_stuff(message, len, &stuffed_len) : NULL;
    free(message);
    if (!stuffed)
        return session_fail(s, "out of memory building the message");
    s->message = stuffed;
    return session_queue(s, stuffed, stuffed_len, SMTP_END_TIMEOUT_MS);
}

static int session_start_tls(struct smtp_session *s)
{
    s->ssl = tls_client_new(s->target->tls, s->fd, s->target->email->host);
    if (!s->ssl)
        return session_fail(s, "cannot start TLS: out of memory");
    s->handshaking = true;
    s->in_len = s->line_len = 0;   /* see the top of the file: nothing read in the clear counts */
    return session_arm(s, SMTP_CONNECT_TIMEOUT_MS);
}

static int session_act(struct smtp_session *s, enum smtp_next next)
{
    switch (next) {
    case SMTP_NEXT_READ:
        return 0;
    case SMTP_NEXT_SEND:
        return session_queue(s, s->command, strlen(s->command), SMTP_REPLY_TIMEOUT_MS);
    case SMTP_NEXT_TLS:
        return session_start_tls(s);
    case SMTP_NEXT_MESSAGE:
        return session_send_message(s);
    case SMTP_NEXT_DONE:
        session_say_quit(s);
        return session_finish(s, true);
    case SMTP_NEXT_FAILED:
        if (!s->dialogue.reason[0])
            snprintf(s->dialogue.reason, sizeof(s->dialogue.reason), "command too long");
        session_say_quit(s);
        return session_finish(s, false);
    }
    return 0;
}

/* Feeds the complete lines of buf to the dialogue; keeps a partial one. */
static int session_take_lines(struct smtp_session *s, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n') {
            if (s->in_len < sizeof(s->in) - 1)
                s->in[s->in_len++] = buf[i];
            if (++s->line_len > SMTP_LINE_LIMIT)
                return session_fail(s, "%s: a reply line longer than %d octets",
                                    step_names[s->dialogue.state], SMTP_LINE_LIMIT);
            continue;
        }
        size_t n = s->in_len > 0 && s->in[s->in_len - 1] == '\r' ? s->in_len - 1 : s->in_len;
        s->in_len = s->line_len = 0;
        enum smtp_next next = smtp_dialogue_feed(&s->dialogue, s->in, n, s->command,
                                                 sizeof(s->command));
        if (session_act(s, next) < 0)
            return -1;
        if (next == SMTP_NEXT_TLS)
            return 0;    /* the rest of buf came in the clear: dropped */
    }
    return 0;
}

static ssize_t session_read_some(struct smtp_session *s, char *buf, size_t len)
{
    return tls_or_clear_read(s->ssl, s->fd, buf, len);
}

static int session_read(struct smtp_session *s)
{
    char buf[2048];
    while (!s->handshaking) {
        ssize_t n = session_read_some(s, buf, sizeof(buf));
        if (n == -EAGAIN)
            return 0;
        if (n == 0)
            return session_fail(s, "the server closed the connection during %s",
                                step_names[s->dialogue.state]);
        if (n < 0)
            return s->ssl ? session_fail_tls(s, (int)n) : session_fail_errno(s, (int)-n);
        if (session_take_lines(s, buf, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

static int session_connected(struct smtp_session *s)
{
    int err = net_socket_error(s->fd);
    if (err == EINPROGRESS || err == EALREADY)
        return 1;
    if (err)
        return session_fail_errno(s, err);
    s->connected = true;
    if (s->target->email->security == EMAIL_TLS)
        return session_start_tls(s);
    return session_arm(s, SMTP_REPLY_TIMEOUT_MS);
}

static int session_handshake(struct smtp_session *s)
{
    int rc = tls_handshake(s->ssl);
    if (rc == -EAGAIN)
        return 1;
    if (rc < 0)
        return session_fail_tls(s, rc);
    s->handshaking = false;
    if (s->dialogue.state == SMTP_STARTTLS)
        return session_act(s, smtp_dialogue_secured(&s->dialogue, s->command, sizeof(s->command)));
    return session_arm(s, SMTP_REPLY_TIMEOUT_MS);    /* implicit TLS: the greeting comes next */
}

/* Everything the socket allows now, in order; stops at the first step
 * that must wait, or once the attempt ended. */
static void session_on_io(struct loop *loop, struct loop_io *io, uint32_t events)
{
    struct smtp_session *s = container_of(io, struct smtp_session, io);
    (void)loop;
    (void)events;
    if (!s->connected && session_connected(s) != 0)
        return;
    for (;;) {
        if (s->handshaking && session_handshake(s) != 0)
            return;
        if (session_write(s) < 0 || session_read(s) < 0)
            return;
        /* Reading stopped at a 220 to STARTTLS: the handshake starts now,
         * as no further event may come to start it. */
        if (!s->handshaking)
            return;
    }
}

static int session_open(struct smtp_session *s)
{
    bool in_progress = false;
    int fd = net_connect(s->target->address, true, &in_progress);
    if (fd < 0)
        return fd;
    s->fd = fd;
    int rc = loop_add(s->loop, &s->io, fd, session_on_io);
    if (rc < 0) {
        close(fd);
        s->fd = -1;
    }
    return rc;
}

int smtp_send(struct smtp_session *s, struct loop *loop, const struct smtp_target *target,
              const struct alert_event *events, int count, int up, int total, bool test,
              smtp_done_fn done)
{
    const struct config_email *email = target->email;
    struct smtp_dialogue *d = &s->dialogue;
    s->loop = loop;
    s->target = target;
    s->events = events;
    s->count = count;
    s->up = up;
    s->total = total;
    s->test = test;
    s->done = done;
    s->connected = s->handshaking = false;
    s->in_len = s->line_len = 0;
    s->command[0] = '\0';
    s->out = NULL;
    s->out_len = s->out_sent = 0;
    *d = (struct smtp_dialogue){
        .helo_name = target->helo_name, .from = email->from,
        .to = (const char *const *)email->to, .to_count = email->to_count,
        .username = email->username, .password = email->password ? email->password : "",
        .starttls = email->security == EMAIL_STARTTLS, .secured = email->security == EMAIL_TLS,
    };
    smtp_dialogue_start(d);
    s->active = true;
    int rc = session_open(s);
    if (rc == 0 && loop_timer_arm(loop, &s->timer, SMTP_CONNECT_TIMEOUT_MS) == 0)
        return 0;
    if (rc == 0) {
        session_close(s);
        return -ENOMEM;
    }
    /* Reported from the loop, as smtp.h promises. */
    char text[80];
    snprintf(d->reason, sizeof(d->reason), "connecting to %s: %s", target->address->text,
             strerror_r(-rc, text, sizeof(text)));
    if (loop_timer_arm(loop, &s->timer, 0) < 0) {
        s->active = false;
        return -ENOMEM;
    }
    return 0;
}
