/* tlsserver.c - TLS contexts for the listeners, SNI and ALPN; see
 * tlsserver.h. */
#include "tlsserver.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Mozilla's "intermediate" TLS 1.2 suites with forward secrecy by ECDHE;
 * TLS 1.3 keeps OpenSSL's defaults (all of them are modern). */
#define TLS12_CIPHERS                                                                      \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                           \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                           \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Sessions remembered for resumption by id (clients without tickets);
 * about 20 MB at most, as nginx's 10 MB shared cache is sized for 40000. */
#define SESSION_CACHE_SIZE 20480

static const unsigned char session_id_context[] = "sluice";

/* One certificate: its context and the host names it serves, lower case. */
struct tls_certificate {
    SSL_CTX *ctx;
    char **names;
    int name_count;
};

/* Owned by the first context (ex_data): freed when the last session
 * started on it, or the builder, lets it go. */
struct tls_server {
    struct tls_certificate *certs;
    int count;
};

/* ------------------------------------------------------------------ */
/* names                                                               */

bool tls_server_name_matches(const char *pattern, const char *name)
{
    if (pattern[0] != '*' || pattern[1] != '.')
        return strcasecmp(pattern, name) == 0;
    /* RFC 6125 section 6.4.3: the wildcard stands for exactly one label. */
    const char *dot = strchr(name, '.');
    return dot && dot != name && strcasecmp(dot, pattern + 1) == 0;
}

/* The certificate for an SNI name: an exact name first, then a wildcard;
 * -1 when none carries it. */
static int pick_certificate(const struct tls_server *ts, const char *name)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < ts->count; i++) {
            const struct tls_certificate *c = &ts->certs[i];
            for (int j = 0; j < c->name_count; j++) {
                bool wildcard = c->names[j][0] == '*';
                if (wildcard == (pass == 1) && tls_server_name_matches(c->names[j], name))
                    return i;
            }
        }
    }
    return -1;
}

static int add_name(struct tls_certificate *c, const unsigned char *data, int len)
{
    if (len <= 0 || memchr(data, '\0', (size_t)len))
        return 0;   /* an embedded NUL would make a different name of it */
    char **names = realloc(c->names, (size_t)(c->name_count + 1) * sizeof(*names));
    if (!names)
        return -1;
    c->names = names;
    char *copy = strndup((const char *)data, (size_t)len);
    if (!copy)
        return -1;
    c->names[c->name_count++] = copy;
    return 0;
}

static int add_dns_names(struct tls_certificate *c, X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (int i = 0; sans && rc == 0 && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gen = sk_GENERAL_NAME_value(sans, i);
        if (gen->type == GEN_DNS)
            rc = add_name(c, ASN1_STRING_get0_data(gen->d.dNSName), ASN1_STRING_length(gen->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    return rc;
}

/* SAN DNS entries; the subject's CN only when there are none (RFC 6125
 * section 6.4.4, as browsers do). */
static int collect_names(struct tls_certificate *c, X509 *x)
{
    if (add_dns_names(c, x) < 0)
        return -1;
    if (c->name_count)
        return 0;
    X509_NAME *subject = X509_get_subject_name(x);
    int at = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
    if (at < 0)
        return 0;
    unsigned char *cn = NULL;
    int len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)));
    int rc = len > 0 ? add_name(c, cn, len) : 0;
    OPENSSL_free(cn);
    return rc;
}

/* ------------------------------------------------------------------ */
/* callbacks                                                           */

static int select_certificate(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct tls_server *ts = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || ts->count < 2)
        return SSL_TLSEXT_ERR_OK;
    int i = pick_certificate(ts, name);
    if (i > 0 && !SSL_set_SSL_CTX(ssl, ts->certs[i].ctx))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

static int select_protocol(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                           unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char ours[] = "\x02h2\x08http/1.1";
    unsigned int ours_len = sizeof(ours) - 1;
    /* Our order wins; a client that offers nothing we speak (say, only
     * h2) is answered without ALPN rather than refused, as nginx does. */
    if (SSL_select_next_proto((unsigned char **)out, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    return SSL_TLSEXT_ERR_OK;
}

bool tls_server_session_h2(const SSL *ssl)
{
    const unsigned char *proto = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &proto, &len);
    return len == 2 && memcmp(proto, "h2", 2) == 0;
}

/* ------------------------------------------------------------------ */
/* lifetime                                                            */

static void free_certificates(struct tls_server *ts, int from)
{
    for (int i = 0; i < ts->count; i++) {
        if (i >= from)
            SSL_CTX_free(ts->certs[i].ctx);
        for (int j = 0; j < ts->certs[i].name_count; j++)
            free(ts->certs[i].names[j]);
        free(ts->certs[i].names);
    }
    free(ts->certs);
    free(ts);
}

/* The first context is being freed: the others go with it (each also
 * stays while a session uses it). */
static void free_owned_set(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    if (ptr)
        free_certificates(ptr, 1);
}

static int owner_index = -1;
static pthread_once_t owner_once = PTHREAD_ONCE_INIT;

static void make_owner_index(void)
{
    owner_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_owned_set);
}

void tls_server_release(struct tls_server *ts)
{
    if (ts)
        SSL_CTX_free(ts->certs[0].ctx);
}

SSL *tls_server_session(struct tls_server *ts, int fd)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(ts->certs[0].ctx);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

/* ------------------------------------------------------------------ */
/* building                                                            */

/* Where errors and warnings go, and which config they are about. */
struct report {
    const struct config *cfg;
    char *errors, *warnings;
    size_t errors_len, warnings_len, errors_used, warnings_used;
    int count;
};

static void append(char *buf, size_t len, size_t *used, const char *fmt, va_list ap)
{
    if (!buf || *used + 1 >= len)
        return;
    int n = vsnprintf(buf + *used, len - *used, fmt, ap);
    if (n > 0)
        *used += (size_t)n < len - *used ? (size_t)n : len - *used - 1;
}

/* An error (counted: the set is refused) or a warning. */
static void report(struct report *r, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(struct report *r, bool error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (error)
        append(r->errors, r->errors_len, &r->errors_used, fmt, ap);
    else
        append(r->warnings, r->warnings_len, &r->warnings_used, fmt, ap);
    va_end(ap);
    r->count += error;
}

/* OpenSSL's reason for the failure on this thread: the first entry of
 * the queue says what was wrong with the file ("no start line"), the
 * later ones only where it was noticed ("PEM lib"). */
static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
        return "the key does not match the certificate";
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    return reason ? reason : "unknown error";
}

static const char *section_of(int index)
{
    return index == 0 ? "server.tls" : "server.tls.certificates";
}

static void file_error(struct report *r, int index, bool key, const char *what)
{
    const struct config_certificate *c = &r->cfg->certificates[index];
    report(r, true, "%s:%d:%d: %s.%s: \"%s\": %s: %s\n", r->cfg->path, key ? c->key_line : c->cert_line,
                 key ? c->key_col : c->cert_col, section_of(index), key ? "key" : "cert",
                 key ? c->key : c->cert, what, openssl_reason());
}

static void warn_if_expired(struct report *r, int index, SSL_CTX *ctx)
{
    const struct config_certificate *c = &r->cfg->certificates[index];
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (!x || X509_cmp_current_time(X509_get0_notAfter(x)) > 0)
        return;
    report(r, false, "%s:%d:%d: warning: %s.cert: \"%s\": the certificate has expired; clients will "
                   "refuse it\n", r->cfg->path, c->cert_line, c->cert_col, section_of(index), c->cert);
}

static void set_protocols(SSL_CTX *ctx, struct tls_server *ts)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
    /* Renegotiation only costs the server (a CPU-exhaustion vector);
     * clients that close without close_notify are an ordinary end. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* As tls.c: partial writes are tracked by the caller, and a retried
     * write may come from a buffer that moved. RELEASE_BUFFERS frees the
     * 16 KB read and write buffers while a connection idles. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read what the socket holds, not a record header and then its body:
     * one recv per request instead of two. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE_SIZE);
    SSL_CTX_set_session_id_context(ctx, session_id_context, sizeof(session_id_context) - 1);
    SSL_CTX_set_tlsext_servername_callback(ctx, select_certificate);
    SSL_CTX_set_tlsext_servername_arg(ctx, ts);
    SSL_CTX_set_alpn_select_cb(ctx, select_protocol, NULL);
}

/* The context of certificate index; NULL after reporting why not. */
static SSL_CTX *load_certificate(struct report *r, int index, struct tls_server *ts)
{
    const struct config_certificate *c = &r->cfg->certificates[index];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        file_error(r, index, false, "cannot create a TLS context");
        return NULL;
    }
    set_protocols(ctx, ts);
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
        file_error(r, index, false, "cannot load the certificate chain");
    } else if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
        file_error(r, index, true, "cannot load the private key");
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        file_error(r, index, true, "cannot use the private key");
    } else {
        warn_if_expired(r, index, ctx);
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

static int load_all(struct report *r, struct tls_server *ts)
{
    for (int i = 0; i < r->cfg->certificate_count; i++) {
        struct tls_certificate *c = &ts->certs[ts->count];
        SSL_CTX *ctx = load_certificate(r, i, ts);
        if (!ctx)
            continue;
        c->ctx = ctx;
        ts->count++;
        if (collect_names(c, SSL_CTX_get0_certificate(ctx)) < 0) {
            report(r, true, "%s: out of memory\n", r->cfg->path);
            return -1;
        }
    }
    return r->count ? -1 : 0;
}

int tls_server_new(struct tls_server **out, const struct config *cfg, char *errors, size_t errors_len,
                   char *warnings, size_t warnings_len)
{
    struct report r = {.cfg = cfg, .errors = errors, .errors_len = errors_len, .warnings = warnings,
                       .warnings_len = warnings_len};
    *out = NULL;
    if (errors_len)
        errors[0] = '\0';
    if (warnings_len)
        warnings[0] = '\0';
    if (cfg->certificate_count == 0)
        return 0;
    pthread_once(&owner_once, make_owner_index);
    struct tls_server *ts = calloc(1, sizeof(*ts));
    if (ts)
        ts->certs = calloc((size_t)cfg->certificate_count, sizeof(*ts->certs));
    if (!ts || !ts->certs || owner_index < 0) {
        free(ts);
        report(&r, true, "%s: cannot set up TLS: out of memory\n", cfg->path);
        return r.count;
    }
    if (load_all(&r, ts) < 0 || !SSL_CTX_set_ex_data(ts->certs[0].ctx, owner_index, ts)) {
        if (!r.count)
            report(&r, true, "%s: cannot set up TLS: out of memory\n", cfg->path);
        free_certificates(ts, 0);
        return r.count;
    }
    *out = ts;
    return 0;
}
