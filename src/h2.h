/* h2.h - HTTP/2 client connections (RFC 9113), framed by libnghttp2.
 *
 * A client connection (client.c) that speaks HTTP/2 - one that opened with
 * the preface on a cleartext listener that allows it, or chose h2 by ALPN -
 * is handed here whole. Each stream is one exchange (exchange.c), proxied
 * to an application over the pooled HTTP/1.1 connections like any other
 * request: the stream writes its request as an HTTP/1.1 head (h2head.c)
 * into what the exchange sees as its client's input, puts DATA there as it
 * comes, and takes the exchange's HTTP/1.1 answer back as HEADERS and DATA
 * frames, within the flow-control windows both ways.
 *
 * The connection keeps its own limits: concurrent streams, header list
 * size, and the floods (rapid reset, CONTINUATION, PING and SETTINGS) that
 * end it with GOAWAY; client_idle without a stream ends it too.
 */
#ifndef SLUICE_H2_H
#define SLUICE_H2_H

#include <stdbool.h>
#include <stddef.h>

#include "exchange.h"
#include "proxy.h"

/* The client's first bytes of an HTTP/2 connection (RFC 9113 section 3.4). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

struct h2_conn;

/* 1 when buf starts with the whole preface, 0 when it is a proper prefix
 * of it (wait for more), -1 when it is not HTTP/2. */
int h2_preface_match(const char *buf, size_t len);

/* Takes over the client connection whose socket is s, from ip; s->in may
 * already hold the client's first bytes. wake(arg) is called when the
 * connection has work (an application's event, a timer): the caller then
 * runs h2_conn_step. NULL when out of memory. */
struct h2_conn *h2_conn_new(struct proxy *p, struct stream *s, const char *ip, void (*wake)(void *arg),
                            void *arg);
/* Reads, runs the streams' exchanges, writes. STEP_CLOSE when the
 * connection is over: the caller closes the socket and frees the h2_conn. */
enum step h2_conn_step(struct h2_conn *h);
/* Ends every stream (their exchanges are freed) and the session. */
void h2_conn_free(struct h2_conn *h);
/* Whether a stream's exchange points at an application of pool. */
bool h2_conn_uses_pool(const struct h2_conn *h, const struct pool *pool);
/* Graceful stop: GOAWAY with the last stream taken; the streams in flight
 * finish, then the connection ends. */
void h2_conn_shutdown(struct h2_conn *h);
/* A reload: GOAWAY, so that the client's next streams come on a new
 * connection with the new settings; the streams in flight have
 * shutdown_grace to finish. */
void h2_conn_reload(struct h2_conn *h);
/* Frees the recycled streams of a stopped worker. */
void h2_streams_free(struct proxy *p);

#endif
