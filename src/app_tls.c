/* app_tls.c - the applications' TLS client contexts; see app_tls.h. */
#include "app_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

static bool same_ca(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static struct ssl_ctx_st *find_context(const struct config *cfg, bool verify, const char *ca_file)
{
    for (int i = 0; i < cfg->tls_context_count; i++) {
        const struct config_tls_context *c = &cfg->tls_contexts[i];
        if (c->verify == verify && same_ca(c->ca_file, ca_file))
            return c->ctx;
    }
    return NULL;
}

struct ssl_ctx_st *app_tls_context(struct config *cfg, const struct config_app *app, char *why,
                                   size_t why_len)
{
    /* A ca_file without verification is refused by the loader; here it
     * would only split contexts that behave the same. */
    const char *ca_file = app->tls_verify ? app->ca_file : NULL;
    struct ssl_ctx_st *ctx = find_context(cfg, app->tls_verify, ca_file);
    if (ctx)
        return ctx;
    struct config_tls_context *grown =
        realloc(cfg->tls_contexts, (size_t)(cfg->tls_context_count + 1) * sizeof(*grown));
    if (!grown) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    cfg->tls_contexts = grown;
    ctx = app->tls_verify ? tls_verifying_context(ca_file, why, why_len)
                          : tls_trusting_context(why, why_len);
    if (!ctx)
        return NULL;
    grown[cfg->tls_context_count++] = (struct config_tls_context){ctx, app->tls_verify, ca_file};
    return ctx;
}

void app_tls_free(struct config *cfg)
{
    for (int i = 0; i < cfg->tls_context_count; i++)
        tls_context_free(cfg->tls_contexts[i].ctx);
    free(cfg->tls_contexts);
    cfg->tls_contexts = NULL;
    cfg->tls_context_count = 0;
}
