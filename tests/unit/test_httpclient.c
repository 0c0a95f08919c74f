/* test_httpclient.c - the one-shot HTTP client against a socket served by
 * the test itself, on the test's own thread: answers whole and split,
 * interim heads, heads too big for the buffer, garbage, silence, refusals
 * and the spare socket a refusal leaves. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "httpclient.h"
#include "loop.h"
#include "unit.h"
#include "unit_net.h"

struct exchange_result {
    bool done;
    int status;
    char error[HTTPCLIENT_REASON_MAX];
};

static struct exchange_result result;

static void on_done(struct httpclient *http, int status, const char *error)
{
    (void)http;
    result.done = true;
    result.status = status;
    snprintf(result.error, sizeof(result.error), "%s", error ? error : "");
}

enum serve_mode { SERVE_RESPOND, SERVE_SPLIT, SERVE_HANG };

/* Runs the loop and plays the server: accepts, reads the request head,
 * writes `response` (in two parts for SERVE_SPLIT) and closes. Returns the
 * request it read. */
static void serve(struct loop *loop, int listener, enum serve_mode mode, const char *response,
                  char *request, size_t request_cap)
{
    int conn = -1;
    size_t got = 0;
    bool answered = false;
    int64_t deadline = loop_monotonic_ms() + 3000;
    request[0] = '\0';
    while (!result.done && loop_monotonic_ms() < deadline) {
        loop_run_once(loop, 5);
        if (conn < 0)
            conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (conn < 0 || answered)
            continue;
        ssize_t n = read(conn, request + got, request_cap - 1 - got);
        if (n > 0)
            got += (size_t)n;
        request[got] = '\0';
        if (!strstr(request, "\r\n\r\n") || mode == SERVE_HANG)
            continue;
        size_t len = strlen(response), half = mode == SERVE_SPLIT ? len / 2 : len;
        CHECK(write(conn, response, half) == (ssize_t)half);
        if (mode == SERVE_SPLIT) {
            for (int i = 0; i < 3; i++)
                loop_run_once(loop, 5);
            CHECK(write(conn, response + half, len - half) == (ssize_t)(len - half));
        }
        close(conn);
        conn = -1;
        answered = true;
    }
    if (conn >= 0)
        close(conn);
    CHECK_MSG(result.done, "the exchange never finished");
}

static void run_case(struct loop *loop, struct httpclient *http, int listener, enum serve_mode mode,
                     const char *response, int want_status, const char *want_error)
{
    char request[1024];
    result = (struct exchange_result){0};
    CHECK_INT(httpclient_start(http, loop), 0);
    CHECK(!result.done);                     /* never reported from inside start */
    serve(loop, listener, mode, response, request, sizeof(request));
    CHECK_INT(result.status, want_status);
    CHECK_MSG(strcmp(result.error, want_error) == 0, "error \"%s\", want \"%s\" (response %.40s)",
              result.error, want_error, response);
    CHECK(!httpclient_busy(http));
    if (mode != SERVE_HANG && listener >= 0)
        CHECK_STR(request, http->request);
}

static void test_exchanges(void)
{
    struct loop loop;
    struct config_address address;
    struct httpclient http = {0};
    static char big[8000];
    CHECK_INT(loop_init(&loop), 0);
    int listener = unit_listen_local(&address);
    if (listener < 0)
        return;
    httpclient_init(&http);
    http.address = &address;
    http.request = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    http.request_len = strlen(http.request);
    char buf[4096];
    http.buf = buf;
    http.buf_cap = sizeof(buf);
    http.timeout_ms = 1000;
    http.done = on_done;

    run_case(&loop, &http, listener, SERVE_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", 200, "");
    run_case(&loop, &http, listener, SERVE_RESPOND, "HTTP/1.0 503 Service Unavailable\r\n\r\n", 503, "");
    run_case(&loop, &http, listener, SERVE_SPLIT, "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", 204, "");
    /* interim 1xx heads come before the final one */
    run_case(&loop, &http, listener, SERVE_SPLIT,
             "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
             "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", 500, "");
    run_case(&loop, &http, listener, SERVE_RESPOND, "SSH-2.0-OpenSSH_9.2\r\n\r\n", 0, "bad response");
    run_case(&loop, &http, listener, SERVE_RESPOND, "", 0, "connection closed without a response");
    run_case(&loop, &http, listener, SERVE_RESPOND, "HTTP/1.1 200 OK\r\nContent-", 0,
             "bad response: connection closed in the head");
    /* a head bigger than the buffer is judged by its status line */
    snprintf(big, sizeof(big), "HTTP/1.1 299 Fine\r\nX-Pad: %06000d\r\n\r\n", 0);
    run_case(&loop, &http, listener, SERVE_RESPOND, big, 299, "");
    snprintf(big, sizeof(big), "HTTP/1.1 2x0 Fine\r\nX-Pad: %06000d\r\n\r\n", 0);
    run_case(&loop, &http, listener, SERVE_RESPOND, big, 0, "bad response");

    http.timeout_ms = 100;
    run_case(&loop, &http, listener, SERVE_HANG, "", 0, "timeout after 100 ms waiting for the response");

    /* nobody listening any more: refused, reported from the loop */
    close(listener);
    run_case(&loop, &http, -1, SERVE_RESPOND, "", 0, "connection refused");

    /* A refused socket is kept for the next check, within the budget, and
     * works once the application listens again. */
    int budget = 1;
    http.spare_budget = &budget;
    run_case(&loop, &http, -1, SERVE_RESPOND, "", 0, "connection refused");
    CHECK_INT(budget, 0);
    int kept = http.spare_fd;
    CHECK(kept >= 0);
    run_case(&loop, &http, -1, SERVE_RESPOND, "", 0, "connection refused");
    CHECK_INT(budget, 0);
    CHECK_INT(http.spare_fd, kept);            /* the same socket, connected again */
    /* once more: the spare was readied by the connect() that saw the refusal */
    run_case(&loop, &http, -1, SERVE_RESPOND, "", 0, "connection refused");
    CHECK_INT(budget, 0);
    CHECK_INT(http.spare_fd, kept);
    listener = unit_relisten(&address);
    if (listener >= 0) {
        http.timeout_ms = 1000;
        run_case(&loop, &http, listener, SERVE_RESPOND, "HTTP/1.1 200 OK\r\n\r\n", 200, "");
        CHECK_INT(budget, 1);                  /* back: nothing kept after a success */
        close(listener);
    }
    run_case(&loop, &http, -1, SERVE_RESPOND, "", 0, "connection refused");
    httpclient_cancel(&http);                 /* lets the kept socket go */
    CHECK_INT(budget, 1);
    loop_close(&loop);
}

void unit_test_httpclient(void)
{
    test_exchanges();
}
