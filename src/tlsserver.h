/* tlsserver.h - TLS termination on the listeners (OpenSSL): the server
 * side of tls.c.
 *
 * A struct tls_server holds one SSL_CTX per certificate of the config
 * ([server.tls] first, then each [[server.tls.certificates]]), built once
 * by main.c at start and on each reload and read-only afterwards, so every
 * worker makes its sessions from it without a lock of ours. A session
 * starts on the first context; the client's SNI name then picks the
 * context whose certificate carries that name (SAN DNS entries, a
 * wildcard matching one label; the CN only when there is no DNS SAN),
 * and the first one when none does.
 *
 * Lifetime: OpenSSL reference-counts a context, and every session holds a
 * reference to the one it started on, which owns the whole set. Dropping
 * the builder's reference (tls_server_release, when main.c frees a
 * generation) therefore leaves connections that began before a reload
 * their certificates and their SNI choice until they close; new
 * connections use the newer set.
 *
 * Protocols: TLS 1.2 and 1.3 only; for 1.2, ECDHE key exchange with
 * AES-GCM or ChaCha20-Poly1305 (Mozilla's "intermediate" list), for 1.3
 * OpenSSL's defaults; the client's cipher order is followed. Resumption by
 * session tickets and by the server-side session cache of the first
 * context. ALPN: h2 first, then http/1.1.
 * Idle sessions release their read and write buffers
 * (SSL_MODE_RELEASE_BUFFERS).
 */
#ifndef SLUICE_TLSSERVER_H
#define SLUICE_TLSSERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct ssl_st;
struct tls_server;

/* Builds the contexts of cfg's certificates. Returns 0, or the number of
 * errors, each a line "FILE:LINE:COL: KEY: \"PATH\": reason\n" in errors
 * (FILE:LINE:COL where the config names the file). Certificates that work
 * but should not (expired) are "FILE:LINE:COL: warning: ..." lines in
 * warnings. *out is NULL when cfg has no certificate or on error. */
int tls_server_new(struct tls_server **out, const struct config *cfg, char *errors, size_t errors_len,
                   char *warnings, size_t warnings_len);

/* Drops the builder's reference (NULL is fine); sessions keep theirs. */
void tls_server_release(struct tls_server *ts);

/* A server session on an accepted non-blocking socket, its handshake to be
 * driven by tls_handshake (tls.h). NULL when out of memory. */
struct ssl_st *tls_server_session(struct tls_server *ts, int fd);

/* Whether ALPN chose h2 for this session (the handshake is done). */
bool tls_server_session_h2(const struct ssl_st *ssl);

/* Whether a certificate name (pattern) covers a host name: equal ignoring
 * case, or "*.rest" matching one non-empty label followed by ".rest". */
bool tls_server_name_matches(const char *pattern, const char *name);

#endif
