/* test_rewrite.c - the heads sluice sends on (rewrite.c), from parsed heads
 * alone: hop-by-hop fields and Connection options removed, forwarding
 * fields added, framing rewritten for the next hop, responses and sluice's
 * own answers. */
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "rewrite.h"
#include "unit.h"

static struct http1_header headers[100];
static const struct http1_limits limits = {.head_bytes = 16384, .headers = 100};

/* Rewrites raw (a whole request head) into out, NUL-terminated; NULL when
 * the head does not parse or the rewrite does not fit in cap bytes. */
static const char *rewrite(const char *raw, const char *request_id, size_t cap, struct log_request *views)
{
    static char text[8192];
    static char storage[8192];
    struct http1_request req = {.headers = headers};
    if (http1_parse_request(raw, strlen(raw), &limits, &req) != HTTP1_OK)
        return NULL;
    struct buf out = {.data = storage, .cap = (uint32_t)cap};
    struct rewrite_from from = {.client_ip = "192.0.2.7", .proto = "http", .request_id = request_id};
    memset(views, 0, sizeof(*views));
    if (!rewrite_request_head(&out, &req, &from, views))
        return NULL;
    memcpy(text, buf_start(&out), buf_len(&out));
    text[buf_len(&out)] = '\0';
    return text;
}

static void check_request(const char *raw, const char *want)
{
    struct log_request views;
    const char *got = rewrite(raw, "0123", sizeof(((char[8192]){0})), &views);
    CHECK_MSG(got && strcmp(got, want) == 0, "\n got: %s\nwant: %s", got ? got : "(refused)", want);
}

static void test_hop_by_hop_removed(void)
{
    check_request("GET /a?b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
                  "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
                  "Trailer: X-Sum\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n",
                  "GET /a?b HTTP/1.1\r\nHost: x\r\nX-Kept: yes\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: x\r\nX-Request-Id: 0123\r\n\r\n");
    /* Connection: close is the client's business with sluice, not the application's */
    check_request("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: x\r\nX-Request-Id: 0123\r\n\r\n");
}

static void test_forwarding_fields(void)
{
    /* every earlier X-Forwarded-For value kept, in order, one field; the
     * client's own X-Forwarded-Proto/-Host replaced; its X-Request-Id kept */
    check_request("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n"
                  "X-Forwarded-For: 10.0.0.2, 10.0.0.3\r\nX-Forwarded-Host: evil\r\nX-Request-Id: abc\r\n\r\n",
                  "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\n"
                  "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: x\r\n\r\n");
    /* an empty X-Forwarded-For adds nothing before the client */
    check_request("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For:\r\nX-Request-Id: r\r\n\r\n",
                  "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: r\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: x\r\n\r\n");
}

static void test_framing_rewritten(void)
{
    /* one Content-Length, however the client wrote it */
    check_request("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\nX-Request-Id: r\r\n\r\n",
                  "POST /u HTTP/1.1\r\nHost: x\r\nX-Request-Id: r\r\nContent-Length: 5\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: x\r\n\r\n");
    /* chunked: this hop's Transfer-Encoding is sluice's own */
    check_request("POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Request-Id: r\r\n\r\n",
                  "POST /u HTTP/1.1\r\nHost: x\r\nX-Request-Id: r\r\nTransfer-Encoding: chunked\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: x\r\n\r\n");
    /* an upgrade keeps its Upgrade and asks for it on this hop too */
    check_request("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  "X-Request-Id: r\r\n\r\n",
                  "GET /ws HTTP/1.1\r\nHost: x\r\nX-Request-Id: r\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: x\r\n\r\n");
    /* an absolute target: origin form on, Host from the target */
    check_request("GET http://example.com:8080/p?q HTTP/1.1\r\nHost: other\r\nX-Request-Id: r\r\n\r\n",
                  "GET /p?q HTTP/1.1\r\nX-Request-Id: r\r\nHost: example.com:8080\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: example.com:8080\r\n\r\n");
    /* an HTTP/1.0 client gets HTTP/1.0 semantics from the application */
    check_request("GET / HTTP/1.0\r\nX-Request-Id: r\r\n\r\n",
                  "GET / HTTP/1.0\r\nX-Request-Id: r\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n\r\n");
}

static void test_views_and_limits(void)
{
    struct log_request v;
    const char *got = rewrite("PUT /path HTTP/1.1\r\nHost: x\r\nUser-Agent: ua/1\r\nReferer: r\r\n\r\n", "id-9",
                              8192, &v);
    CHECK(got != NULL);
    if (!got)
        return;
    CHECK(v.method_len == 3 && memcmp(v.method, "PUT", 3) == 0);
    CHECK(v.target_len == 5 && memcmp(v.target, "/path", 5) == 0);
    CHECK(v.user_agent_len == 4 && memcmp(v.user_agent, "ua/1", 4) == 0);
    CHECK(v.referer_len == 1 && memcmp(v.referer, "r", 1) == 0);
    CHECK(v.request_id_len == 4 && memcmp(v.request_id, "id-9", 4) == 0);
    /* a rewrite that does not fit is refused, never cut */
    const char *raw = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t full = strlen(rewrite(raw, "0123", 8192, &v));
    CHECK(rewrite(raw, "0123", full, &v) != NULL);
    for (size_t cap = 0; cap < full; cap++)
        CHECK_MSG(rewrite(raw, "0123", cap, &v) == NULL, "cap %zu", cap);
}

static const char *response(const char *raw, bool keep_alive, int version_minor)
{
    static char text[4096];
    static char storage[4096];
    struct http1_response res = {.headers = headers};
    if (http1_parse_response(raw, strlen(raw), &limits, HTTP1_METHOD_GET, &res) != HTTP1_OK)
        return NULL;
    struct buf out = {.data = storage, .cap = sizeof(storage)};
    if (!rewrite_response_head(&out, &res, keep_alive, version_minor))
        return NULL;
    memcpy(text, buf_start(&out), buf_len(&out));
    text[buf_len(&out)] = '\0';
    return text;
}

static void check_response(const char *raw, bool keep_alive, int minor, const char *want)
{
    const char *got = response(raw, keep_alive, minor);
    CHECK_MSG(got && strcmp(got, want) == 0, "\n got: %s\nwant: %s", got ? got : "(refused)", want);
}

static void test_responses(void)
{
    check_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n"
                   "Keep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\n",
                   true, 1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Kept: yes\r\n\r\n");
    check_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", false, 1,
                   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
    check_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true, 0,
                   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
    /* a chunked body goes on with its codings as written */
    check_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", true, 1,
                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    check_response("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                   false, 1, "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    check_response("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", false, 1,
                   "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n");
}

static void test_local_answers(void)
{
    char storage[512];
    struct buf out = {.data = storage, .cap = sizeof(storage)};
    CHECK(rewrite_local_answer(&out, 503, "Retry-After: 5\r\n", "503 Service Unavailable\n", false, false));
    const char *want = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n"
                       "Retry-After: 5\r\nConnection: close\r\n\r\n503 Service Unavailable\n";
    CHECK(buf_len(&out) == strlen(want) && memcmp(buf_start(&out), want, strlen(want)) == 0);
    out.head = out.tail = 0;
    CHECK(rewrite_local_answer(&out, 404, "", "x\n", true, true));
    want = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n";
    CHECK(buf_len(&out) == strlen(want) && memcmp(buf_start(&out), want, strlen(want)) == 0);
    struct buf tiny = {.data = storage, .cap = 20};
    CHECK(!rewrite_local_answer(&tiny, 404, "", "x\n", true, false));
}

void unit_test_rewrite(void)
{
    test_hop_by_hop_removed();
    test_forwarding_fields();
    test_framing_rewritten();
    test_views_and_limits();
    test_responses();
    test_local_answers();
}
