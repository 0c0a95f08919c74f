/* tls.c - OpenSSL client sessions for non-blocking sockets; see tls.h.
 *
 * Every call clears this thread's OpenSSL error queue first: a stale entry
 * left by an earlier session would otherwise be reported as the reason for
 * the next failure.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static void tls_format_queue(char *err, size_t err_len, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, err_len, "%s: %s", what, reason ? reason : "unknown error");
}

/* A client context with what every one needs; verification is the caller's. */
static SSL_CTX *new_client_context(char *err, size_t err_len)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_format_queue(err, err_len, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Servers that close after the response without close_notify are
     * common; treat that as an ordinary end of stream, as browsers do. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* A partial SSL_write stays partial (callers track the offset), and a
     * write retried after -EAGAIN may come from a buffer that has moved
     * (compacted) as long as the bytes are the same. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* One recv for what the socket holds, not one per record header and
     * one per body. The TLS session starts only once the plain part of a
     * dialogue (SMTP's STARTTLS) is over, so no clear byte is read here. */
    SSL_CTX_set_read_ahead(ctx, 1);
    return ctx;
}

SSL_CTX *tls_client_context(bool verify, char *err, size_t err_len)
{
    return verify ? tls_verifying_context(NULL, err, err_len) : tls_trusting_context(err, err_len);
}

SSL_CTX *tls_trusting_context(char *err, size_t err_len)
{
    SSL_CTX *ctx = new_client_context(err, err_len);
    if (ctx)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

SSL_CTX *tls_verifying_context(const char *ca_file, char *err, size_t err_len)
{
    SSL_CTX *ctx = new_client_context(err, err_len);
    if (!ctx)
        return NULL;
    if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tls_format_queue(err, err_len, ca_file ? "no CA certificate could be read from it"
                                               : "cannot load the system CA certificates");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

SSL_CTX *tls_client_context_ca(const char *ca_file, char *err, size_t err_len)
{
    if (!ca_file)
        return tls_client_context(true, err, err_len);
    SSL_CTX *ctx = tls_client_context(false, err, err_len);
    if (!ctx)
        return NULL;
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        tls_format_queue(err, err_len, "cannot load the CA certificates");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

void tls_context_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

static bool is_ip_literal(const char *name)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

/* Sets SNI and the name the certificate must carry (checked only when the
 * context verifies). */
static bool tls_set_names(SSL *ssl, const char *server_name)
{
    if (!server_name || !*server_name)
        return true;
    if (is_ip_literal(server_name))
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name) == 1;
    return SSL_set_tlsext_host_name(ssl, server_name) == 1 && SSL_set1_host(ssl, server_name) == 1;
}

SSL *tls_client_new(SSL_CTX *ctx, int fd, const char *server_name)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1 || !tls_set_names(ssl, server_name)) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

void tls_resume(SSL *ssl, SSL_SESSION *session)
{
    /* A session the server no longer knows costs only a full handshake. */
    if (session)
        SSL_set_session(ssl, session);
}

void tls_keep_session(SSL *ssl, SSL_SESSION **slot)
{
    SSL_SESSION *session = SSL_get0_session(ssl);
    if (!session || session == *slot || !SSL_SESSION_is_resumable(session))
        return;
    SSL_SESSION_up_ref(session);
    SSL_SESSION_free(*slot);
    *slot = session;
}

void tls_session_free(SSL_SESSION *session)
{
    SSL_SESSION_free(session);
}

void tls_shutdown_write(SSL *ssl)
{
    ERR_clear_error();
    /* One non-blocking attempt: the socket is closed right after, so the
     * peer's close_notify is never awaited. Skipped after a fatal error,
     * where OpenSSL forbids it, and once sent. */
    if (SSL_is_init_finished(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        SSL_shutdown(ssl);
}

void tls_close(SSL *ssl)
{
    if (!ssl)
        return;
    tls_shutdown_write(ssl);
    SSL_free(ssl);
}

/* Maps an OpenSSL result to the -errno convention of tls.h. */
static int tls_result(SSL *ssl, int rc)
{
    int saved_errno = errno;
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0)
            return saved_errno ? -saved_errno : -ECONNRESET;
        return -EPROTO;
    default:
        return -EPROTO;
    }
}

int tls_handshake(SSL *ssl)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
        return 0;
    int r = tls_result(ssl, rc);
    /* A handshake cut short by the peer is a reset, not a clean end. */
    return r == 0 ? -ECONNRESET : r;
}

ssize_t tls_read(SSL *ssl, void *buf, size_t len)
{
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read_ex(ssl, buf, len, &n);
    if (rc == 1)
        return (ssize_t)n;
    return tls_result(ssl, rc);
}

ssize_t tls_write(SSL *ssl, const void *buf, size_t len)
{
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write_ex(ssl, buf, len, &n);
    if (rc == 1)
        return (ssize_t)n;
    int r = tls_result(ssl, rc);
    return r == 0 ? -EPIPE : r;
}

ssize_t tls_or_clear_read(SSL *ssl, int fd, void *buf, size_t len)
{
    if (ssl)
        return tls_read(ssl, buf, len);
    ssize_t n = recv(fd, buf, len, 0);
    return n < 0 ? -errno : n;
}

ssize_t tls_or_clear_write(SSL *ssl, int fd, const void *buf, size_t len)
{
    if (ssl)
        return tls_write(ssl, buf, len);
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    return n < 0 ? -errno : n;
}

const char *tls_verify_failure(SSL *ssl, char *buf, size_t len)
{
    /* Without SSL_VERIFY_PEER the chain is still checked and its result
     * kept, but nothing was refused for it. */
    if (!ssl || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
        return NULL;
    long verify = SSL_get_verify_result(ssl);
    if (verify == X509_V_OK)
        return NULL;
    snprintf(buf, len, "%s", X509_verify_cert_error_string(verify));
    return buf;
}

const char *tls_error_text(SSL *ssl, char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
        snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(verify));
        return buf;
    }
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s", reason ? reason : "TLS error");
    return buf;
}
