/* tls.h - TLS client sessions over non-blocking sockets (OpenSSL).
 *
 * Connections to applications with `tsl = true` and their health checks
 * speak TLS through here, and so do the alert dispatcher's POSTs to
 * `https://` webhooks. Each owns a socket in an edge-triggered loop and
 * retries an operation on every readiness event, so the helpers below only
 * need to say "done", "try again later" or "failed"; whether OpenSSL wanted
 * to read or to write does not matter to the caller.
 *
 * OpenSSL types are forward-declared so that including this header does not
 * pull in <openssl/ssl.h>. A context is never changed once made, so that
 * sessions may be made from it on any thread (the applications' contexts
 * are shared by every worker, app_tls.h); a session belongs to the
 * connection that created it.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ssl_st;
struct ssl_ctx_st;
struct ssl_session_st;

/* A client context that accepts any certificate (applications behind a
 * load balancer commonly use self-signed ones: tls_verify = false), or one
 * that checks the chain against the CA certificates of ca_file (PEM; NULL:
 * the system's) and the name or address given to tls_client_new. A CA file
 * that holds no certificate OpenSSL can read is refused. NULL with a
 * message in err on failure. */
struct ssl_ctx_st *tls_trusting_context(char *err, size_t err_len);
struct ssl_ctx_st *tls_verifying_context(const char *ca_file, char *err, size_t err_len);
/* One of the two with the system's CAs (webhooks verify: their URLs carry
 * secrets). */
struct ssl_ctx_st *tls_client_context(bool verify, char *err, size_t err_len);
/* A verifying context that trusts the certificates in ca_file (PEM) in
 * place of the system store: a private CA, e.g. a mail relay's. NULL
 * ca_file is tls_client_context(true, ...). */
struct ssl_ctx_st *tls_client_context_ca(const char *ca_file, char *err, size_t err_len);
void tls_context_free(struct ssl_ctx_st *ctx);

/* A client session on a connected non-blocking socket. server_name is sent
 * as SNI when it is a DNS name (RFC 6066 forbids IP literals there) and is
 * what a verifying context matches the certificate against. NULL on failure. */
struct ssl_st *tls_client_new(struct ssl_ctx_st *ctx, int fd, const char *server_name);

/* Session resumption, so that a new connection to a server spared the
 * certificate exchange and its verification: tls_resume offers a session
 * kept earlier (before the handshake); tls_keep_session puts ssl's session
 * in *slot when it can be resumed and is not already there (after the
 * first response, when a TLS 1.3 ticket has arrived), releasing the one it
 * replaces. */
void tls_resume(struct ssl_st *ssl, struct ssl_session_st *session);
void tls_keep_session(struct ssl_st *ssl, struct ssl_session_st **slot);
void tls_session_free(struct ssl_session_st *session);

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

/* The same on ssl when there is one, else on the clear socket fd, with the
 * same results (-errno for a socket error): for clients whose connection
 * may or may not be TLS (checks, webhooks, email). */
ssize_t tls_or_clear_read(struct ssl_st *ssl, int fd, void *buf, size_t len);
ssize_t tls_or_clear_write(struct ssl_st *ssl, int fd, const void *buf, size_t len);

/* When a verifying session refused the peer's certificate, why
 * ("self-signed certificate", "hostname mismatch"), written into buf;
 * NULL when the certificate was not the reason. Stays valid after the
 * thread's error queue moved on. */
const char *tls_verify_failure(struct ssl_st *ssl, char *buf, size_t len);

/* The reason for the last -EPROTO on this thread ("certificate verify
 * failed", "wrong version number", ...), written into buf. */
const char *tls_error_text(struct ssl_st *ssl, char *buf, size_t len);

#endif
