/* smtp.h - sending one alert message over SMTP (RFC 5321), non-blocking.
 *
 * Two layers, both here:
 *
 *  - struct smtp_dialogue, pure: fed the server's reply lines one at a
 *    time, it says what to do next (send this command, start TLS, send the
 *    message, done, failed). It never touches a socket, so the unit tests
 *    drive it with canned replies. The order is RFC 5321's: greeting, EHLO,
 *    STARTTLS and EHLO again (RFC 3207), AUTH PLAIN or LOGIN when a username
 *    is set (RFC 4954, 4616), MAIL FROM, one RCPT TO per recipient, DATA,
 *    the message, ".", QUIT.
 *
 *  - struct smtp_session, the driver: one attempt on the owner's loop, over
 *    a non-blocking socket (TLS through tls.h), with a deadline on every
 *    step. It reports once, through the done callback, delivered or why not.
 *
 * Reply classes: 2xx and 3xx go on; 4xx is transient (worth a retry); 5xx
 * is permanent (the server will refuse the same again), which the done
 * callback says so that its owner can stop retrying. Some recipients
 * refused while others are accepted is still a delivery, to those others;
 * the refusals are reported in the note. Every reason quotes the server's
 * reply; nothing reported ever contains the password.
 *
 * Deadlines: SMTP_CONNECT_TIMEOUT_MS for the TCP connect and the TLS
 * handshake, SMTP_REPLY_TIMEOUT_MS for each reply, SMTP_END_TIMEOUT_MS for
 * the reply to the final "." (RFC 5321 section 4.5.3.2 suggests 10 minutes,
 * meant for mail that must get through eventually; an alert that late is
 * worth less than the retry).
 */
#ifndef SLUICE_SMTP_H
#define SLUICE_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "config.h"
#include "loop.h"

#define SMTP_CONNECT_TIMEOUT_MS 10000
#define SMTP_REPLY_TIMEOUT_MS 10000
#define SMTP_END_TIMEOUT_MS 60000

#define SMTP_REPLY_MAX 512           /* a reply line kept for messages; longer ones are cut */
/* What a server may send before its reply is refused as garbage (a
 * reply is read to its end before anything else runs on the loop): RFC
 * 5321 section 4.5.3.1.5 allows 512 octets a line, and an EHLO reply
 * lists a dozen extensions. */
#define SMTP_LINE_LIMIT 4096
#define SMTP_REPLY_LINES_MAX 100
#define SMTP_REASON_MAX 640
#define SMTP_COMMAND_MAX 1024        /* one command line we send, CRLF included */

/* ---- the dialogue (pure) ---- */

enum smtp_state {
    SMTP_GREETING,                   /* waiting for 220 */
    SMTP_EHLO,
    SMTP_STARTTLS,
    SMTP_EHLO_SECURED,               /* EHLO again, inside TLS */
    SMTP_AUTH_PLAIN,
    SMTP_AUTH_LOGIN_USER,            /* AUTH LOGIN sent: 334 asks for the username */
    SMTP_AUTH_LOGIN_PASSWORD,
    SMTP_AUTH_RESULT,
    SMTP_MAIL,
    SMTP_RCPT,
    SMTP_DATA,
    SMTP_MESSAGE,                    /* the message and "." sent: waiting for 250 */
    SMTP_QUIT,
    SMTP_END,
};

enum smtp_next {
    SMTP_NEXT_READ,                  /* feed the next line */
    SMTP_NEXT_SEND,                  /* send `out`, then feed the reply */
    SMTP_NEXT_TLS,                   /* TLS handshake now, then smtp_dialogue_secured */
    SMTP_NEXT_MESSAGE,               /* send the message (dot-stuffed) and ".", then feed */
    SMTP_NEXT_DONE,                  /* delivered; `out` holds QUIT to send if convenient */
    SMTP_NEXT_FAILED,                /* why in reason; `out` may hold QUIT */
};

struct smtp_dialogue {
    /* set by the owner before smtp_dialogue_start; the strings outlive it */
    const char *helo_name;           /* our name in EHLO */
    const char *from;
    const char *const *to;
    int to_count;
    const char *username;            /* NULL or "": no AUTH */
    const char *password;
    bool starttls;                   /* upgrade before anything else (required) */

    /* learned from the server */
    bool offers_starttls, offers_plain, offers_login, offers_8bitmime;
    bool secured;                    /* inside TLS (STARTTLS done, or implicit) */

    /* progress */
    enum smtp_state state;
    int rcpt_sent, rcpt_accepted;
    bool rcpt_transient;             /* a recipient was refused with 4xx */
    bool permanent;                  /* the failure was a 5xx reply */
    char reason[SMTP_REASON_MAX];    /* why it failed */
    char note[SMTP_REASON_MAX];      /* recipients refused, on a partial delivery */

    /* the reply being read (multi-line: "250-..." lines then "250 ...") */
    int code;
    int reply_lines;                 /* continuation lines read so far */
    char last[SMTP_REPLY_MAX];       /* its last line, for messages */
};

/* Begins at SMTP_GREETING (or SMTP_GREETING inside implicit TLS, with
 * secured set by the owner). */
void smtp_dialogue_start(struct smtp_dialogue *d);

/* One reply line, without its CRLF. Writes a command into out (CRLF
 * included) when the answer is SMTP_NEXT_SEND, DONE or FAILED (possibly
 * empty for the last two). */
enum smtp_next smtp_dialogue_feed(struct smtp_dialogue *d, const char *line, size_t len,
                                  char *out, size_t cap);

/* After the STARTTLS handshake: EHLO again, in out. */
enum smtp_next smtp_dialogue_secured(struct smtp_dialogue *d, char *out, size_t cap);

/* The message as it goes after DATA: every line that begins with "." gets
 * another (RFC 5321 section 4.5.2), a missing final CRLF is added, and
 * ".\r\n" ends it. Returns it malloc'd (the caller owns it), or NULL. */
char *smtp_dot_stuff(const char *message, size_t len, size_t *out_len);

/* ---- the driver ---- */

struct smtp_session;

/* Called exactly once per smtp_send that returned 0, from the loop (never
 * from inside smtp_send). delivered, or why not in `why`; `permanent` for a
 * 5xx refusal; `note` names refused recipients on a partial delivery (""
 * otherwise). The strings are valid during the call only. The connection
 * is closed by then: the callback may free the session's owner. */
typedef void (*smtp_done_fn)(struct smtp_session *s, bool delivered, bool permanent,
                             const char *why, const char *note);

/* Where and how to send; the owner keeps it and what it points to alive
 * until done is called. */
struct smtp_target {
    const struct config_address *address;   /* resolved for this attempt */
    const struct config_email *email;       /* security, credentials, from, to */
    struct ssl_ctx_st *tls;                 /* verifying context; NULL for "none" */
    const char *helo_name;                  /* this machine's name */
    const char *host;                       /* for the message body */
    uint64_t unique;                        /* for the Message-ID */
};

struct smtp_session {
    /* private to smtp.c */
    struct loop *loop;
    struct loop_io io;
    struct loop_timer timer;
    struct ssl_st *ssl;
    int fd;
    bool connected, handshaking, active;
    const struct smtp_target *target;
    const struct alert_event *events;
    int count, up, total;
    bool test;
    smtp_done_fn done;
    struct smtp_dialogue dialogue;
    char in[SMTP_REPLY_MAX + 2];     /* the reply line being read */
    size_t in_len;                   /* a longer line keeps its start only */
    size_t line_len;                 /* the whole line's, up to SMTP_LINE_LIMIT */
    char command[SMTP_COMMAND_MAX];
    char *out;                       /* what is being sent: command or message */
    size_t out_len, out_sent;
    char *message;                   /* owned while sending it */
};

/* Prepares a zeroed session once. */
void smtp_session_init(struct smtp_session *s);

/* Sends events[0..count) (count >= 1; up of total applications up; test
 * marks it as a test) as one message to target. events and target stay
 * alive until done. Returns 0, after which done reports every outcome, or
 * -ENOMEM when not even the deadline could be armed (done is not called). */
int smtp_send(struct smtp_session *s, struct loop *loop, const struct smtp_target *target,
              const struct alert_event *events, int count, int up, int total, bool test,
              smtp_done_fn done);

/* Abandons an attempt in flight without calling done; harmless when idle. */
void smtp_cancel(struct smtp_session *s);

#endif
