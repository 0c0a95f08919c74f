/* tls.h - TLS client sessions over non-blocking sockets (OpenSSL).
 *
 * The health checker talks TLS to applications with `tsl = true`, and the
 * alert dispatcher POSTs to `https://` webhooks. Both own a socket in an
 * edge-triggered loop and retry an operation on every readiness event, so
 * the helpers below only need to say "done", "try again later" or "failed";
 * whether OpenSSL wanted to read or to write does not matter to the caller.
 *
 * OpenSSL types are forward-declared so that including this header does not
 * pull in <openssl/ssl.h>. A context is shared by every session of one
 * thread; a session belongs to the connection that created it.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ssl_st;
struct ssl_ctx_st;

/* A client context. verify = false accepts any certificate: applications
 * behind a load balancer commonly use self-signed ones, and the health
 * check asks "is it serving?", not "is it who it claims to be?". verify =
 * true checks the chain against the system CA store and the name given to
 * tls_client_new (for webhooks, which carry secrets in their URL). Returns
 * NULL with a message in err on failure. */
struct ssl_ctx_st *tls_client_context(bool verify, char *err, size_t err_len);
void tls_context_free(struct ssl_ctx_st *ctx);

/* A client session on a connected non-blocking socket. server_name is sent
 * as SNI when it is a DNS name (RFC 6066 forbids IP literals there) and is
 * what a verifying context matches the certificate against. NULL on failure. */
struct ssl_st *tls_client_new(struct ssl_ctx_st *ctx, int fd, const char *server_name);

/* Sends close_notify once, without waiting for the peer's, and frees. */
void tls_close(struct ssl_st *ssl);

/* Sends close_notify once (one non-blocking attempt), keeping the session:
 * TLS's counterpart of shutdown(SHUT_WR), for a connection that lingers
 * reading before it closes. tls_close sends nothing more after it. */
void tls_shutdown_write(struct ssl_st *ssl);

/* Each returns -EAGAIN when it must be called again after the next
 * readiness event, the negative errno of a socket error (-ECONNRESET when
 * the peer reset the connection), or -EPROTO for a TLS failure, which
 * tls_error_text then describes.
 * tls_handshake returns 0 once the handshake is complete. tls_read returns
 * the bytes read, or 0 at the end of the stream. tls_write returns the bytes
 * written (at least 1). */
int tls_handshake(struct ssl_st *ssl);
ssize_t tls_read(struct ssl_st *ssl, void *buf, size_t len);
ssize_t tls_write(struct ssl_st *ssl, const void *buf, size_t len);

/* The reason for the last -EPROTO on this thread ("certificate verify
 * failed", "wrong version number", ...), written into buf. */
const char *tls_error_text(struct ssl_st *ssl, char *buf, size_t len);

#endif
