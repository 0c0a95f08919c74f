/* app_tls.h - TLS to applications: the client contexts that their
 * connections and health checks share, and the name each is checked against.
 *
 * Contexts are built while a configuration loads, one per distinct
 * (tls_verify, ca_file), so that a CA file OpenSSL cannot use is an error
 * of that file (under --check too) rather than of the first connection.
 * The struct config owns them and frees them with itself. Every worker makes
 * sessions from them at once: OpenSSL allows that on a context nobody
 * changes, and nothing changes one after load. A session holds a reference
 * to its context, so one still open when its configuration is freed (a
 * tunnel across a reload) stays valid.
 */
#ifndef SLUICE_APP_TLS_H
#define SLUICE_APP_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct ssl_ctx_st;

struct config_tls_context {
    struct ssl_ctx_st *ctx;         /* owned */
    bool verify;
    const char *ca_file;            /* the first user's; NULL: the system CAs */
};

/* The context for app (tls = true): one of cfg's when an application
 * loaded earlier has the same tls_verify and ca_file, else a new one, kept
 * in cfg. NULL with why in why on failure. */
struct ssl_ctx_st *app_tls_context(struct config *cfg, const struct config_app *app, char *why,
                                   size_t why_len);

/* Frees cfg's contexts (config_free does). */
void app_tls_free(struct config *cfg);

/* What app's certificate must name and what is sent as SNI: sni when set,
 * else host (an IP address is verified but never sent, RFC 6066). */
static inline const char *app_tls_server_name(const struct config_app *app)
{
    return app->sni ? app->sni : app->host;
}

#endif
