/* url.h - http:// and https:// URLs, split into what a request needs.
 *
 * The webhook's URL is parsed here twice: by config.c when it reads
 * `[alerts] webhook`, so that --check accepts exactly what the alert
 * dispatcher can use, and by alert.c when the dispatcher starts. Pure: no
 * allocation, no name lookup.
 */
#ifndef SLUICE_URL_H
#define SLUICE_URL_H

#include <stdbool.h>
#include <stddef.h>

struct url {
    bool tls;                        /* https */
    char host[256];                  /* for DNS and TLS: no brackets around IPv6 */
    char port[6];
    char authority[270];             /* the Host header: as written, minus any userinfo */
    char path[1024];                 /* path and query; "/" when empty */
};

/* Parses http://host[:port]/path?query and https://... (Slack-style
 * incoming-webhook URLs included). A fragment is dropped. Returns 0, or -1
 * with the reason in err. */
int url_parse(const char *text, struct url *out, char *err, size_t err_len);

#endif
