/* rewrite.h - the heads sluice sends on, as pure functions of a parsed head.
 *
 * Nothing here touches a socket, a clock or a worker: each function writes
 * bytes into a buffer from what the parser found and what the caller says
 * about the connection, and reports false when they do not fit (a head
 * larger than a buffer is refused, never split). The exchange layer
 * (exchange.c) calls them; tests/unit/test_rewrite.c checks them alone.
 */
#ifndef SLUICE_REWRITE_H
#define SLUICE_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "http1.h"
#include "log.h"

/* What the application is told about the client, besides its request. */
struct rewrite_from {
    const char *client_ip;     /* appended to X-Forwarded-For */
    const char *proto;         /* X-Forwarded-Proto: "http" or "https" */
    const char *request_id;    /* sent as X-Request-Id when the request has none */
    bool body_buffered;        /* sluice receives the body first and answered any
                                  Expect: 100-continue itself: Expect is not sent on */
};

/* Writes the request head an application will see into out (RFC 9110
 * section 7.6: hop-by-hop fields are the proxy's own and are not
 * forwarded): the request line, every end-to-end field (one
 * Content-Length however the client wrote it; Host from an absolute
 * target), the framing of this hop, X-Forwarded-For/-Proto/-Host and
 * X-Request-Id. views gets where the logged fields sit in out. */
bool rewrite_request_head(struct buf *out, const struct http1_request *r, const struct rewrite_from *from,
                          struct log_request *views);

/* Writes the response head a client will see into out: hop-by-hop fields
 * dropped; for a final answer, the Transfer-Encoding of a chunked body as
 * the application wrote it, and the Connection field the client needs
 * (close, or keep-alive for an HTTP/1.0 client that keeps the connection);
 * for 101, the upgrade. */
bool rewrite_response_head(struct buf *out, const struct http1_response *res, bool keep_alive,
                           int client_version_minor);

/* Writes one of sluice's own answers: a short text/plain body (none when
 * head_only, for HEAD), extra_headers ("Name: value\r\n" lines or ""),
 * and Connection: close unless keep_alive. */
bool rewrite_local_answer(struct buf *out, int status, const char *extra_headers, const char *body,
                          bool keep_alive, bool head_only);

/* The Location field that sends a request made in the clear to HTTPS:
 * "Location: https://HOST[:PORT]PATH\r\n", HOST being the authority (the
 * Host field) without its port, PORT left out when it is 443, PATH the
 * origin-form target ("/" for "*"). Returns its length; -1 when the
 * authority has no host (the request is refused: there is nowhere to
 * send it), 0 when it does not fit in len. */
int rewrite_https_location(char *out, size_t len, const char *authority, size_t authority_len, int port,
                           const char *path, size_t path_len);

#endif
