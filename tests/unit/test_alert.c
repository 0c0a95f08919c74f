/* test_alert.c - what an alert says (RFC 3339 time, JSON escaping, the
 * payload, the sentence, each webhook format's body, an email's subject
 * template), where it goes (webhook URLs), chat batches and test alerts on
 * a live dispatcher, and the dispatcher
 * end to end: transitions written by pool_set_state reach a webhook served
 * by the test and a command writing to a file, a failed POST is retried,
 * operators' changes are alerted on too, and "all_down"/"restored" fire
 * once each, even for an outage shorter than one read of the pipe. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alert.h"
#include "config.h"
#include "loop.h"
#include "mail.h"
#include "payload.h"
#include "pool.h"
#include "unit.h"

static void test_time(void)
{
    char out[40];
    CHECK_INT(alert_format_time(out, sizeof(out), 0), 24);
    CHECK_STR(out, "1970-01-01T00:00:00.000Z");
    alert_format_time(out, sizeof(out), 1714564800123LL);
    CHECK_STR(out, "2024-05-01T12:00:00.123Z");
    alert_format_time(out, sizeof(out), 951782400000LL + 86399999);   /* a leap day's last ms */
    CHECK_STR(out, "2000-02-29T23:59:59.999Z");
    alert_format_time(out, sizeof(out), -1);
    CHECK_STR(out, "1969-12-31T23:59:59.999Z");
    CHECK_INT(alert_format_time(out, 24, 0), -1);                     /* no room for the NUL */
}

static void check_escape(const char *in, const char *want)
{
    char out[256];
    size_t n = alert_json_escape(out, sizeof(out), in);
    CHECK_MSG(strcmp(out, want) == 0 && n == strlen(want), "escape(%s) = %s, want %s", in, out, want);
}

static void test_json_escape(void)
{
    check_escape("api-1", "api-1");
    check_escape("say \"hi\"", "say \\\"hi\\\"");
    check_escape("C:\\path", "C:\\\\path");
    check_escape("a\nb\rc\td", "a\\nb\\rc\\td");
    check_escape("\x01\x1f\x7f", "\\u0001\\u001f\\u007f");
    check_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    check_escape("bad \xff byte", "bad \\ufffd byte");
    check_escape("\xc0\xaf", "\\ufffd\\ufffd");                      /* overlong '/' */
    check_escape("\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd");           /* a surrogate */
    check_escape("cut \xe2\x82", "cut \\ufffd\\ufffd");              /* truncated at the end */
    check_escape("</script>", "</script>");

    /* snprintf-like: the needed length, a terminated prefix */
    char small[6];
    CHECK_INT(alert_json_escape(small, sizeof(small), "ab\"cd\"ef"), 10);
    CHECK_STR(small, "ab\\\"c");
}

static struct alert_event sample_event(void)
{
    struct alert_event e = {.time_ms = 1714564800123LL};
    snprintf(e.event, sizeof(e.event), "transition");
    snprintf(e.application, sizeof(e.application), "api-1");
    snprintf(e.address, sizeof(e.address), "127.0.0.1:8001");
    snprintf(e.state, sizeof(e.state), "down");
    snprintf(e.previous, sizeof(e.previous), "up");
    snprintf(e.reason, sizeof(e.reason), "health check: \"status 500\" (3 consecutive)");
    e.up = 1;
    e.total = 2;
    return e;
}

static void test_payload(void)
{
    char out[2048];
    struct alert_event e = sample_event();
    int n = alert_format_json(out, sizeof(out), &e, "lb-1");
    const char *want =
        "{\"application\":\"api-1\",\"address\":\"127.0.0.1:8001\",\"state\":\"down\","
        "\"previous\":\"up\",\"reason\":\"health check: \\\"status 500\\\" (3 consecutive)\","
        "\"time\":\"2024-05-01T12:00:00.123Z\",\"host\":\"lb-1\",\"event\":\"transition\","
        "\"text\":\"sluice on lb-1: application api-1 (127.0.0.1:8001) is now down (was up): "
        "health check: \\\"status 500\\\" (3 consecutive)\"}";
    CHECK_STR(out, want);
    CHECK_INT(n, strlen(want));
    CHECK_INT(alert_format_json(out, 100, &e, "lb-1"), -1);

    alert_format_text(out, sizeof(out), &e, "lb-1");
    CHECK_STR(out, "sluice on lb-1: application api-1 (127.0.0.1:8001) is now down (was up): "
                   "health check: \"status 500\" (3 consecutive)");
    snprintf(e.event, sizeof(e.event), "all_down");
    snprintf(e.application, sizeof(e.application), "*");
    snprintf(e.reason, sizeof(e.reason), "0 of 2 applications up");
    alert_format_text(out, sizeof(out), &e, "lb-1");
    CHECK_STR(out, "sluice on lb-1: no application is up: 0 of 2 applications up");
    snprintf(e.event, sizeof(e.event), "restored");
    snprintf(e.reason, sizeof(e.reason), "1 of 2 applications up");
    alert_format_text(out, sizeof(out), &e, "lb-1");
    CHECK_STR(out, "sluice on lb-1: service restored: 1 of 2 applications up");
}

/* ---- each receiver's format (payload.h) ---- */

static void check_body(char *body, const char *want)
{
    CHECK_MSG(body && strcmp(body, want) == 0, "\n got: %s\nwant: %s", body ? body : "(null)", want);
    free(body);
}

static void test_chat_format(void)
{
    struct alert_event e[3] = {sample_event(), sample_event(), sample_event()};
    snprintf(e[1].application, sizeof(e[1].application), "api-2");
    snprintf(e[2].event, sizeof(e[2].event), "all_down");
    snprintf(e[2].application, sizeof(e[2].application), "*");
    snprintf(e[2].reason, sizeof(e[2].reason), "0 of 2 applications up");
    check_body(payload_chat(e, 1, NULL, "lb-1"),
               "{\"text\":\"sluice on lb-1: application api-1 (127.0.0.1:8001) is now down (was up): "
               "health check: \\\"status 500\\\" (3 consecutive)\"}");
    check_body(payload_chat(e, 1, "{application} is {state} ({up}/{total})", "lb-1"),
               "{\"text\":\"api-1 is down (1/2)\"}");
    /* a burst: one message, a heading and a line per change */
    check_body(payload_chat(e, 3, "{application} is {state}", "lb-1"),
               "{\"text\":\"sluice on lb-1: 3 changes\\n- api-1 is down\\n- api-2 is down\\n- * is down\"}");
    struct alert_event t = sample_event();
    snprintf(t.event, sizeof(t.event), "test");
    snprintf(t.reason, sizeof(t.reason), "TEST alert");
    check_body(payload_chat(&t, 1, NULL, "lb-1"), "{\"text\":\"sluice on lb-1: TEST alert\"}");
    check_body(payload_chat(&t, 1, "{application}", "lb-1"), "{\"text\":\"[TEST] api-1\"}");
}

static void test_pagerduty_format(void)
{
    struct alert_event e = sample_event();
    check_body(payload_pagerduty(&e, "R0UT1NG", "lb-1", false),
               "{\"routing_key\":\"R0UT1NG\",\"event_action\":\"trigger\",\"dedup_key\":\"sluice/api-1\","
               "\"client\":\"sluice\",\"payload\":{\"summary\":\"sluice on lb-1: application api-1 "
               "(127.0.0.1:8001) is now down (was up): health check: \\\"status 500\\\" (3 consecutive)\","
               "\"source\":\"lb-1\",\"severity\":\"error\",\"timestamp\":\"2024-05-01T12:00:00.123Z\","
               "\"component\":\"api-1\",\"group\":\"sluice\",\"class\":\"transition\",\"custom_details\":{"
               "\"address\":\"127.0.0.1:8001\",\"state\":\"down\",\"previous\":\"up\",\"reason\":\"health "
               "check: \\\"status 500\\\" (3 consecutive)\",\"up\":1,\"total\":2}}}");
    /* back up: the same dedup_key, resolved, so the incident closes itself */
    snprintf(e.state, sizeof(e.state), "up");
    snprintf(e.previous, sizeof(e.previous), "down");
    check_body(payload_pagerduty(&e, "R0UT1NG", "lb-1", false),
               "{\"routing_key\":\"R0UT1NG\",\"event_action\":\"resolve\",\"dedup_key\":\"sluice/api-1\","
               "\"client\":\"sluice\"}");
    snprintf(e.event, sizeof(e.event), "all_down");
    snprintf(e.application, sizeof(e.application), "*");
    snprintf(e.state, sizeof(e.state), "down");
    char *body = payload_pagerduty(&e, "R", "lb-1", false);
    CHECK(body && strstr(body, "\"severity\":\"critical\"") && strstr(body, "\"dedup_key\":\"sluice/*\""));
    free(body);
    snprintf(e.event, sizeof(e.event), "test");
    body = payload_pagerduty(&e, "R", "lb-1", false);
    CHECK(body && strstr(body, "\"event_action\":\"trigger\"") && strstr(body, "\"dedup_key\":\"sluice/test/lb-1\""));
    free(body);
    check_body(payload_pagerduty(&e, "R", "lb-1", true),
               "{\"routing_key\":\"R\",\"event_action\":\"resolve\",\"dedup_key\":\"sluice/test/lb-1\",\"client\":\"sluice\"}");
}

static void test_form_format(void)
{
    struct alert_event e = sample_event();
    struct config_pair fields[] = {
        {"To", "+15550100"},
        {"Body", "{application} is {state}: {reason}"},
        {"a b&c=", "caf\xc3\xa9 ~*-._/"},
    };
    check_body(payload_form(&e, fields, 3),
               "To=%2B15550100&Body=api-1+is+down%3A+health+check%3A+%22status+500%22+%283+consecutive%29"
               "&a+b%26c%3D=caf%C3%A9+%7E*-._%2F");
    check_body(payload_form(&e, fields, 0), "");
}

/* [alerts.email] subject: the first change through the template, the
 * count of the others, TEST for a test. */
static void test_email_subject(void)
{
    struct alert_event e[2] = {sample_event(), sample_event()};
    const char *to[] = {"oncall@example.com"};
    struct mail_params p = {.from = "sluice@example.com", .to = to, .to_count = 1, .host = "lb-1",
                            .now_ms = 1714564800123LL, .unique = 1,
                            .subject_template = "{application} {state} ({up}/{total} up)"};
    size_t len;
    char *m = mail_build(&p, e, 1, 1, 2, &len);
    CHECK(m && strstr(m, "\r\nSubject: api-1 down (1/2 up)\r\n"));
    free(m);
    m = mail_build(&p, e, 2, 1, 2, &len);
    CHECK(m && strstr(m, "\r\nSubject: api-1 down (1/2 up) (+1 more)\r\n"));
    free(m);
    p.test = true;
    m = mail_build(&p, e, 1, 1, 2, &len);
    CHECK(m && strstr(m, "\r\nSubject: [TEST] api-1 down (1/2 up)\r\n"));
    free(m);
}

static void test_json_format(void)
{
    struct alert_event e = sample_event();
    char *body = payload_json(&e, "lb-1");
    CHECK(body && !strstr(body, "\"test\""));
    free(body);
    snprintf(e.event, sizeof(e.event), "test");
    body = payload_json(&e, "lb-1");
    size_t n = body ? strlen(body) : 0;
    CHECK(n > 14 && strcmp(body + n - 13, ",\"test\":true}") == 0 && strstr(body, "\"event\":\"test\""));
    free(body);
}

/* ---- end to end ---- */

/* A webhook receiver on its own thread: records each body, answers 500 to
 * the first `fail_first` POSTs and 200 to the rest. */
struct receiver {
    int listener;
    int port;
    pthread_t thread;
    _Atomic bool stop;
    _Atomic int fail_first;
    pthread_mutex_t lock;
    _Atomic int all_down, restored;     /* every one, past the 16 kept */
    int count;                          /* guarded by lock, with bodies */
    char bodies[16][2048];
    char heads[16][512];
};

static void receiver_read(int conn, char *head, size_t head_cap, char *body, size_t body_cap)
{
    char buf[4096];
    size_t got = 0;
    struct pollfd p = {.fd = conn, .events = POLLIN};
    head[0] = body[0] = '\0';
    while (got < sizeof(buf) - 1 && poll(&p, 1, 1000) == 1) {
        ssize_t n = read(conn, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (end && cl && strlen(end + 4) >= (size_t)atoi(cl + 17)) {
            snprintf(head, head_cap, "%.*s", (int)(end + 4 - buf), buf);
            snprintf(body, body_cap, "%s", end + 4);
            return;
        }
    }
}

static void *receiver_main(void *arg)
{
    struct receiver *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd p = {.fd = r->listener, .events = POLLIN};
        if (poll(&p, 1, 10) != 1)
            continue;
        int conn = accept4(r->listener, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0)
            continue;
        char head[512], body[2048];
        receiver_read(conn, head, sizeof(head), body, sizeof(body));
        bool fail = atomic_fetch_sub(&r->fail_first, 1) > 0;
        const char *answer = fail ? "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"
                                  : "HTTP/1.1 204 No Content\r\n\r\n";
        if (write(conn, answer, strlen(answer)) < 0)
            perror("receiver write");
        close(conn);
        atomic_fetch_add(&r->all_down, !fail && strstr(body, "\"event\":\"all_down\"") != NULL);
        atomic_fetch_add(&r->restored, !fail && strstr(body, "\"event\":\"restored\"") != NULL);
        pthread_mutex_lock(&r->lock);
        if (r->count < 16) {
            snprintf(r->heads[r->count], sizeof(r->heads[0]), "%s", head);
            snprintf(r->bodies[r->count], sizeof(r->bodies[0]), "%s", body);
            r->count++;
        }
        pthread_mutex_unlock(&r->lock);
    }
    return NULL;
}

static int receiver_start(struct receiver *r)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    r->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (r->listener < 0 || bind(r->listener, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        listen(r->listener, 16) < 0 || getsockname(r->listener, (struct sockaddr *)&sin, &len) < 0)
        return -1;
    r->port = ntohs(sin.sin_port);
    pthread_mutex_init(&r->lock, NULL);
    return pthread_create(&r->thread, NULL, receiver_main, r) == 0 ? 0 : -1;
}

static void receiver_stop(struct receiver *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    close(r->listener);
    pthread_mutex_destroy(&r->lock);
}

static int receiver_count(struct receiver *r)
{
    pthread_mutex_lock(&r->lock);
    int n = r->count;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* How many received bodies contain every one of the given fragments. */
static int bodies_with(struct receiver *r, const char *a, const char *b, const char *c)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->count; i++)
        n += strstr(r->bodies[i], a) && strstr(r->bodies[i], b) && strstr(r->bodies[i], c);
    pthread_mutex_unlock(&r->lock);
    return n;
}

static int lines_in(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, ch;
    if (!f)
        return 0;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

static bool file_has(const char *path, const char *line)
{
    char buf[8192];
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, line) != NULL;
}

static bool wait_until(struct receiver *r, int posts, const char *file, int lines, int64_t within_ms)
{
    int64_t deadline = loop_monotonic_ms() + within_ms;
    while (loop_monotonic_ms() < deadline && (receiver_count(r) < posts || lines_in(file) < lines))
        usleep(5000);
    return receiver_count(r) >= posts && lines_in(file) >= lines;
}

static void set_string(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
}

/* Parses a config the test needs; a refusal is a failed check. */
static bool parse_config(struct config *cfg, const char *text)
{
    char errors[1024] = "";
    int rc = config_parse(cfg, "t.toml", text, strlen(text), errors, sizeof(errors));
    CHECK_MSG(rc == 0, "config: %s", errors);
    return rc == 0;
}

/* A chat webhook: two changes within the batch window are one message, the
 * change that leaves nothing up goes out at once with the all_down alert,
 * and a test alert reaches the receiver marked as one. */
static void test_chat_batch(void)
{
    static struct receiver r;
    struct config cfg;
    struct pool pool;
    struct alert *a = NULL;
    char text[1024];
    CHECK_INT(receiver_start(&r), 0);
    snprintf(text, sizeof(text),
             "[alerts]\nbatch = \"1s\"\n[[alerts.webhooks]]\nurl = \"http://127.0.0.1:%d/chat\"\n"
             "format = \"slack\"\ntext = \"{application} {state}\"\n"
             "[[applications]]\nname = \"api-1\"\nip = \"127.0.0.1\"\nport = 8001\n"
             "[[applications]]\nname = \"api-2\"\nip = \"127.0.0.1\"\nport = 8002\n"
             "[[applications]]\nname = \"api-3\"\nip = \"127.0.0.1\"\nport = 8003\n", r.port);
    if (!parse_config(&cfg, text))
        goto out_receiver;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    CHECK_INT(alert_start(&a, &pool, &cfg), 0);
    if (!a)
        goto out_pool;
    int64_t start = loop_monotonic_ms();
    CHECK(pool_set_state(&pool, &pool.apps[0], APP_UP, APP_DOWN, "refused"));
    CHECK(pool_set_state(&pool, &pool.apps[1], APP_UP, APP_DOWN, "refused"));
    usleep(100 * 1000);
    CHECK_INT(receiver_count(&r), 0);                 /* held for the window */
    CHECK(wait_until(&r, 1, "/dev/null", 0, 3000));
    CHECK(loop_monotonic_ms() - start >= 1000);
    CHECK_INT(bodies_with(&r, "{\"text\":\"sluice on ", ": 2 changes\\n- api-1 down\\n- api-2 down\"}", ""), 1);

    start = loop_monotonic_ms();
    CHECK(pool_set_state(&pool, &pool.apps[2], APP_UP, APP_DOWN, "refused"));
    CHECK(wait_until(&r, 2, "/dev/null", 0, 3000));
    CHECK(loop_monotonic_ms() - start < 800);        /* all_down is not held */
    CHECK_INT(bodies_with(&r, ": 2 changes\\n- api-3 down\\n- * down\"}", "", ""), 1);

    struct alert_test *t = alert_test_start(a);
    CHECK(t != NULL);
    for (int i = 0; t && i < 400 && !alert_test_done(t); i++)
        usleep(5000);
    if (t) {
        CHECK(alert_test_done(t) && alert_test_failed(t) == 0 && t->count == 1);
        alert_test_release(t);
    }
    CHECK_INT(bodies_with(&r, "{\"text\":\"[TEST] TEST test\"}", "", ""), 1);
    alert_stop(a, 1000);
out_pool:
    pool_free(&pool);
    config_free(&cfg);
out_receiver:
    receiver_stop(&r);
}

static void test_dispatcher(void)
{
    static struct receiver r;
    struct config cfg;
    struct pool pool;
    struct alert *a = NULL;
    char file[] = "/tmp/sluice-alert-test-XXXXXX";
    char url[128], command[512];
    const char *text = "[[applications]]\nname = \"api-1\"\nip = \"127.0.0.1\"\nport = 8001\n"
                       "[[applications]]\nname = \"api-2\"\nip = \"127.0.0.1\"\nport = 8002\n";
    int fd = mkstemp(file);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    atomic_store(&r.fail_first, 1);
    CHECK_INT(receiver_start(&r), 0);
    if (!parse_config(&cfg, text)) {
        goto out_receiver;
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook/T0/B0?x=1", r.port);
    set_string(&cfg.alert_webhook, url);
    /* `read` at EOF proves stdin is /dev/null rather than a terminal. */
    snprintf(command, sizeof(command),
             "read line; echo \"[$?] $SLUICE_EVENT|$SLUICE_APP|$SLUICE_ADDRESS|$SLUICE_PREVIOUS|"
             "$SLUICE_STATE|$SLUICE_REASON|${SLUICE_TIME:+time}|${SLUICE_HOST:+host}\" >> %s",
             file);
    set_string(&cfg.alert_command, command);
    CHECK_INT(pool_init(&pool, &cfg), 0);
    CHECK_INT(alert_start(&a, &pool, &cfg), 0);
    if (!a)
        goto out_pool;
    struct app *one = &pool.apps[0], *two = &pool.apps[1];

    CHECK(pool_set_state(&pool, one, APP_UP, APP_DOWN, "health check: connection refused (3 consecutive)"));
    CHECK(pool_set_state(&pool, two, APP_UP, APP_DRAINING, "admin: drain"));    /* none up now */
    CHECK(pool_set_state(&pool, two, APP_DRAINING, APP_MAINTENANCE, "drained"));
    CHECK(pool_set_state(&pool, one, APP_DOWN, APP_UP, "health check passed (2 consecutive)"));

    /* 6 alerts each way (4 transitions, all_down, restored), and one more
     * POST: the first one was answered 500 and retried after 1 s. */
    CHECK(wait_until(&r, 7, file, 6, 5000));
    usleep(100 * 1000);                          /* nothing more arrives */
    CHECK_INT(receiver_count(&r), 7);
    CHECK_INT(lines_in(file), 6);

    /* the retried one arrived twice; any of them may have been first */
    CHECK(bodies_with(&r, "\"application\":\"api-1\"", "\"state\":\"down\"", "\"previous\":\"up\"") >= 1);
    CHECK(bodies_with(&r, "\"reason\":\"health check: connection refused (3 consecutive)\"",
                          "\"address\":\"127.0.0.1:8001\"", "\"event\":\"transition\"") >= 1);
    CHECK(bodies_with(&r, "\"application\":\"api-2\"", "\"state\":\"draining\"", "\"text\":\"sluice on ") >= 1);
    CHECK(bodies_with(&r, "\"application\":\"*\"", "\"event\":\"all_down\"", "\"state\":\"down\"") >= 1);
    CHECK(bodies_with(&r, "\"application\":\"*\"", "\"event\":\"restored\"", "\"state\":\"up\"") >= 1);
    CHECK(bodies_with(&r, "\"state\":\"maintenance\"", "\"previous\":\"draining\"", "\"reason\":\"drained\"") >= 1);
    CHECK(bodies_with(&r, "\"application\":\"api-1\"", "\"state\":\"up\"", "\"previous\":\"down\"") >= 1);
    CHECK_INT(bodies_with(&r, "\"time\":\"20", "Z\"", "\"host\":\""), 7);
    pthread_mutex_lock(&r.lock);
    CHECK_MSG(strncmp(r.heads[0], "POST /hook/T0/B0?x=1 HTTP/1.1\r\n", 31) == 0 &&
                  strcasestr(r.heads[0], "\r\nContent-Type: application/json\r\n"),
              "%s", r.heads[0]);
    pthread_mutex_unlock(&r.lock);

    CHECK(file_has(file, "[1] transition|api-1|127.0.0.1:8001|up|down|health check: connection refused "
                         "(3 consecutive)|time|host\n"));
    CHECK(file_has(file, "[1] transition|api-2|127.0.0.1:8002|up|draining|admin: drain|time|host\n"));
    CHECK(file_has(file, "[1] transition|api-2|127.0.0.1:8002|draining|maintenance|drained|time|host\n"));
    CHECK(file_has(file, "[1] all_down|*||up|down|0 of 2 applications up"));
    CHECK(file_has(file, "[1] restored|*||down|up|1 of 2 applications up"));
    CHECK(file_has(file, "[1] transition|api-1|127.0.0.1:8001|down|up|health check passed (2 consecutive)|"));
    alert_stop(a, 1000);
out_pool:
    pool_free(&pool);
    config_free(&cfg);
out_receiver:
    receiver_stop(&r);
    unlink(file);
}

/* Writes one transition record as pool_set_state would. */
static void write_record(struct pool *pool, int app, enum app_state from, enum app_state to, uint32_t count)
{
    struct pool_transition t = {.app_index = app, .from = (int8_t)from, .to = (int8_t)to,
                                .stamp = count << APP_STATE_BITS | (uint32_t)to, .time_ms = 1};
    snprintf(t.reason, sizeof(t.reason), "test");
    CHECK(write(pool->notify_write_fd, &t, sizeof(t)) == (ssize_t)sizeof(t));
}

/* The states in the pool run ahead of the records in the pipe (a change is
 * made, then reported). A dispatcher that read the live states between two
 * records would jump past an outage; it must still send "all_down" and then
 * "restored". */
static void test_states_ahead_of_records(void)
{
    static struct receiver r;
    struct config cfg;
    struct pool pool;
    struct alert *a = NULL;
    char url[128];
    const char *text = "[[applications]]\nname = \"a\"\nip = \"127.0.0.1\"\nport = 8001\n"
                       "[[applications]]\nname = \"b\"\nip = \"127.0.0.1\"\nport = 8002\n";
    CHECK_INT(receiver_start(&r), 0);
    if (!parse_config(&cfg, text)) {
        receiver_stop(&r);
        return;
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", r.port);
    set_string(&cfg.alert_webhook, url);
    CHECK_INT(pool_init(&pool, &cfg), 0);
    CHECK_INT(alert_start(&a, &pool, &cfg), 0);
    if (a) {
        /* a: up -> down -> up; b: up -> down -> up, with both down between;
         * the pool already holds the end of it. */
        atomic_store(&pool.apps[0].state, 2u << APP_STATE_BITS | APP_UP);
        atomic_store(&pool.apps[1].state, 2u << APP_STATE_BITS | APP_UP);
        write_record(&pool, 0, APP_UP, APP_DOWN, 1);
        usleep(50 * 1000);   /* read on its own: the pipe is empty after it */
        write_record(&pool, 1, APP_UP, APP_DOWN, 1);
        write_record(&pool, 0, APP_DOWN, APP_UP, 2);
        write_record(&pool, 1, APP_DOWN, APP_UP, 2);
        /* and a record older than the copy changes nothing */
        write_record(&pool, 0, APP_UP, APP_DOWN, 1);
        int64_t deadline = loop_monotonic_ms() + 5000;
        while (loop_monotonic_ms() < deadline && receiver_count(&r) < 7)
            usleep(5000);
        usleep(100 * 1000);
        CHECK_INT(receiver_count(&r), 7);    /* 5 transitions, all_down, restored */
        int all_down = atomic_load(&r.all_down), restored = atomic_load(&r.restored);
        CHECK_INT(all_down, 1);
        CHECK_INT(restored, 1);
        alert_stop(a, 1000);
    }
    pool_free(&pool);
    config_free(&cfg);
    receiver_stop(&r);
}

/* A retired dispatcher listens until its pool's writers are gone, then
 * ends by itself; stopped explicitly, it does not wait out the grace. */
static void test_retire(void)
{
    struct config cfg;
    struct pool pool;
    struct alert *a = NULL;
    const char *text = "[[applications]]\nname = \"x\"\nip = \"127.0.0.1\"\nport = 8001\n";
    if (!parse_config(&cfg, text)) {
        return;
    }
    for (int round = 0; round < 2; round++) {
        CHECK_INT(pool_init(&pool, &cfg), 0);
        CHECK_INT(alert_start(&a, &pool, &cfg), 0);
        if (!a)
            break;
        alert_retire(a);
        usleep(50 * 1000);
        CHECK(!alert_finished(a));              /* still hears the old pool */
        int64_t t0 = loop_monotonic_ms();
        if (round == 0) {
            pool_close_writer(&pool);
            while (!alert_finished(a) && loop_monotonic_ms() - t0 < 2000)
                usleep(2000);
            CHECK(alert_finished(a));
        }
        alert_stop(a, 3000);
        int64_t took = loop_monotonic_ms() - t0;
        CHECK_MSG(took < 1000, "round %d: stopping took %lld ms", round, (long long)took);
        /* the reading end goes with the dispatcher once nothing can write */
        CHECK_INT(pool.notify_read_fd < 0, round == 0);
        pool_free(&pool);
    }
    config_free(&cfg);
}

/* A webhook given by name is looked up off the alert thread: "localhost"
 * is delivered, and a name that does not resolve (however slowly the
 * resolver says so) holds back neither a command alert nor a stop. */
static void test_webhook_by_name(void)
{
    static struct receiver r;
    struct config cfg;
    struct pool pool;
    struct alert *a = NULL;
    char url[128], command[256];
    char file[] = "/tmp/sluice-alert-name-XXXXXX";
    const char *text = "[[applications]]\nname = \"x\"\nip = \"127.0.0.1\"\nport = 8001\n"
                       "[[applications]]\nname = \"y\"\nip = \"127.0.0.1\"\nport = 8002\n";
    int fd = mkstemp(file);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    CHECK_INT(receiver_start(&r), 0);
    for (int round = 0; round < 2; round++) {
        if (!parse_config(&cfg, text)) {
            break;
        }
        if (round == 0)
            snprintf(url, sizeof(url), "http://localhost:%d/hook", r.port);
        else
            snprintf(url, sizeof(url), "http://sluice-test.invalid:%d/hook", r.port);
        set_string(&cfg.alert_webhook, url);
        snprintf(command, sizeof(command), "echo \"$SLUICE_APP\" >> %s", file);
        set_string(&cfg.alert_command, command);
        CHECK_INT(pool_init(&pool, &cfg), 0);
        CHECK_INT(alert_start(&a, &pool, &cfg), 0);
        if (a) {
            CHECK(pool_set_state(&pool, &pool.apps[0], APP_UP, APP_DOWN, "test"));
            if (round == 0) {
                /* ::1 may come first and be refused: the retry takes 127.0.0.1 */
                CHECK(wait_until(&r, 1, file, 1, 5000));
                CHECK(bodies_with(&r, "\"application\":\"x\"", "\"state\":\"down\"", "\"event\"") == 1);
            } else {
                CHECK(wait_until(&r, 1, file, 2, 2000));    /* the command ran at once */
                CHECK_INT(receiver_count(&r), 1);           /* and nothing was POSTed */
            }
            int64_t t0 = loop_monotonic_ms();
            alert_stop(a, 200);
            int64_t took = loop_monotonic_ms() - t0;
            CHECK_MSG(took < 1000, "round %d: stop took %lld ms", round, (long long)took);
        }
        pool_free(&pool);
        config_free(&cfg);
    }
    receiver_stop(&r);
    unlink(file);
}

/* A webhook nobody answers: stop gives up after the grace, without hanging. */
static void test_stop_with_pending(void)
{
    struct config cfg;
    struct pool pool;
    struct alert *a = NULL;
    const char *text = "[alerts]\nwebhook = \"http://127.0.0.1:9/unreachable\"\n"
                       "[[applications]]\nname = \"x\"\nip = \"127.0.0.1\"\nport = 8001\n";
    if (!parse_config(&cfg, text)) {
        return;
    }
    CHECK_INT(pool_init(&pool, &cfg), 0);
    CHECK_INT(alert_start(&a, &pool, &cfg), 0);
    if (a) {
        CHECK(pool_set_state(&pool, &pool.apps[0], APP_UP, APP_DOWN, "test"));
        usleep(50 * 1000);
        int64_t t0 = loop_monotonic_ms();
        alert_stop(a, 200);
        int64_t took = loop_monotonic_ms() - t0;
        CHECK_MSG(took >= 150 && took < 1000, "stop took %lld ms", (long long)took);
    }
    pool_free(&pool);
    config_free(&cfg);
}

/* A webhook URL that cannot be used is refused by the config already; one
 * that reaches the dispatcher all the same is refused at start. */
static void test_unusable_webhook(void)
{
    struct config cfg;
    struct pool pool;
    struct alert *a = NULL;
    char errors[512] = "";
    const char *app = "[[applications]]\nname = \"x\"\nip = \"127.0.0.1\"\nport = 8001\n";
    char text[256];
    snprintf(text, sizeof(text), "[alerts]\nwebhook = \"http://user@example.com/\"\n%s", app);
    CHECK_MSG(config_parse(&cfg, "t.toml", text, strlen(text), errors, sizeof(errors)) == 1 &&
                  strstr(errors, "alerts.webhook") && strstr(errors, "not supported"),
              "%s", errors);
    if (!parse_config(&cfg, app)) {
        return;
    }
    set_string(&cfg.alert_webhook, "http://user@example.com/");
    CHECK_INT(pool_init(&pool, &cfg), 0);
    CHECK_INT(alert_start(&a, &pool, &cfg), -EINVAL);
    CHECK(a == NULL);
    if (a)
        alert_stop(a, 0);
    pool_free(&pool);
    config_free(&cfg);
}

void unit_test_alert(void)
{
    test_time();
    test_json_escape();
    test_payload();
    test_chat_format();
    test_pagerduty_format();
    test_form_format();
    test_json_format();
    test_email_subject();
    test_dispatcher();
    test_chat_batch();
    test_states_ahead_of_records();
    test_stop_with_pending();
    test_unusable_webhook();
    test_retire();
    test_webhook_by_name();
}
