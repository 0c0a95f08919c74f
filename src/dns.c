/* dns.c - address sets, their differences, member names, and the expansion
 * of a config's host names into one application per address (dns.h).
 *
 * Sets are kept sorted so that two answers compare in one pass and a
 * difference is a merge: DNS servers rotate the order of their records,
 * and an order is not a change.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Family first, then the address bytes: any total order will do. */
static int address_compare(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return a->ss_family < b->ss_family ? -1 : 1;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr));
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
}

/* Only the family and the address: ports, flow labels and scopes would
 * make one address look like two. */
static bool address_normalize(const struct sockaddr *in, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (in->sa_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;
        sin->sin_family = AF_INET;
        sin->sin_addr = ((const struct sockaddr_in *)in)->sin_addr;
        return true;
    }
    if (in->sa_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = ((const struct sockaddr_in6 *)in)->sin6_addr;
        return true;
    }
    return false;
}

bool dns_addresses_add(struct dns_addresses *set, const struct sockaddr *addr)
{
    struct sockaddr_storage one;
    int at = 0;

    if (!address_normalize(addr, &one))
        return true;    /* not an address an application can have: ignored */
    while (at < set->count && address_compare(&set->addr[at], &one) < 0)
        at++;
    if (at < set->count && address_compare(&set->addr[at], &one) == 0)
        return true;
    /* Full: the lowest addresses are kept, whatever order they came in.
     * Keeping the first ones instead would take a different part of a
     * rotating answer each time, and every refresh would look like a change. */
    bool full = set->count == DNS_ADDRESSES_MAX;
    if (full && at == set->count)
        return false;
    int moved = (full ? set->count - 1 : set->count) - at;
    memmove(&set->addr[at + 1], &set->addr[at], (size_t)moved * sizeof(set->addr[0]));
    set->addr[at] = one;
    set->count += !full;
    return !full;
}

bool dns_addresses_equal(const struct dns_addresses *a, const struct dns_addresses *b)
{
    if (a->count != b->count)
        return false;
    for (int i = 0; i < a->count; i++)
        if (address_compare(&a->addr[i], &b->addr[i]) != 0)
            return false;
    return true;
}

void dns_address_text(const struct sockaddr_storage *addr, char *buf, size_t len)
{
    const void *bytes = addr->ss_family == AF_INET
                            ? (const void *)&((const struct sockaddr_in *)addr)->sin_addr
                            : (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
    if (!inet_ntop(addr->ss_family, bytes, buf, (socklen_t)len))
        snprintf(buf, len, "?");
}

static void append_change(char *text, size_t len, size_t *used, char sign,
                          const struct sockaddr_storage *addr)
{
    char ip[INET6_ADDRSTRLEN];

    if (*used >= len)
        return;
    dns_address_text(addr, ip, sizeof(ip));
    int n = snprintf(text + *used, len - *used, "%s%c%s", *used ? " " : "", sign, ip);
    *used += n > 0 ? (size_t)n : 0;
}

int dns_addresses_diff(const struct dns_addresses *before, const struct dns_addresses *after,
                       char *text, size_t len)
{
    size_t used = 0;
    int changes = 0;

    if (len)
        text[0] = '\0';
    /* Additions first, then removals: the order operators read them in. */
    for (int pass = 0; pass < 2; pass++) {
        const struct dns_addresses *from = pass ? before : after;
        const struct dns_addresses *other = pass ? after : before;
        int j = 0;
        for (int i = 0; i < from->count; i++) {
            while (j < other->count && address_compare(&other->addr[j], &from->addr[i]) < 0)
                j++;
            if (j < other->count && address_compare(&other->addr[j], &from->addr[i]) == 0)
                continue;
            append_change(text, len, &used, pass ? '-' : '+', &from->addr[i]);
            changes++;
        }
    }
    return changes;
}

int dns_answers_init(struct dns_answers *answers, const struct config *cfg)
{
    *answers = (struct dns_answers){0};
    answers->items = calloc((size_t)cfg->app_count + 1, sizeof(*answers->items));
    if (!answers->items)
        return -ENOMEM;
    for (int i = 0; i < cfg->app_count; i++) {
        const struct config_app *app = &cfg->apps[i];
        if (!app->by_name || dns_answers_find(answers, app->host))
            continue;
        struct dns_answer *a = &answers->items[answers->count];
        a->ttl_ms = -1;
        if (!(a->host = strdup(app->host))) {
            dns_answers_free(answers);
            return -ENOMEM;
        }
        answers->count++;
    }
    return 0;
}

int dns_answers_copy(struct dns_answers *to, const struct dns_answers *from)
{
    *to = (struct dns_answers){0};
    to->items = calloc((size_t)from->count + 1, sizeof(*to->items));
    if (!to->items)
        return -ENOMEM;
    for (int i = 0; i < from->count; i++) {
        to->items[i] = from->items[i];
        if (!(to->items[i].host = strdup(from->items[i].host))) {
            dns_answers_free(to);
            return -ENOMEM;
        }
        to->count++;
    }
    return 0;
}

void dns_answers_free(struct dns_answers *answers)
{
    for (int i = 0; i < answers->count; i++)
        free(answers->items[i].host);
    free(answers->items);
    *answers = (struct dns_answers){0};
}

struct dns_answer *dns_answers_find(const struct dns_answers *answers, const char *host)
{
    for (int i = 0; i < answers->count; i++)
        if (strcmp(answers->items[i].host, host) == 0)
            return &answers->items[i];
    return NULL;
}

bool dns_answers_equal(const struct dns_answers *a, const struct dns_answers *b)
{
    if (a->count != b->count)
        return false;
    for (int i = 0; i < a->count; i++) {
        const struct dns_answer *other = dns_answers_find(b, a->items[i].host);
        if (!other || other->known != a->items[i].known ||
            !dns_addresses_equal(&other->set, &a->items[i].set))
            return false;
    }
    return true;
}

int dns_member_name(const char *group, const struct config_address *address, char *out, size_t len)
{
    int n = snprintf(out, len, "%s@%s", group, address->text);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int members_count(const struct config *cfg, const struct dns_answers *answers)
{
    int count = 0;
    for (int i = 0; i < cfg->app_count; i++) {
        const struct config_app *app = &cfg->apps[i];
        if (!app->by_name) {
            count++;
            continue;
        }
        const struct dns_answer *a = dns_answers_find(answers, app->host);
        if (!a || !a->known)
            return -ENOENT;
        count += a->set.count;
    }
    return count > CONFIG_MAX_APPS ? -E2BIG : count;
}

/* The strings an application owns (config_free frees them per
 * application), copied for one more owner. */
static int copy_strings(struct config_app *app, const struct config_app *from)
{
    app->host = strdup(from->host);
    app->ca_file = from->ca_file ? strdup(from->ca_file) : NULL;
    app->sni = from->sni ? strdup(from->sni) : NULL;
    if (!app->host || (from->ca_file && !app->ca_file) || (from->sni && !app->sni))
        return -ENOMEM;
    return 0;
}

static void free_apps(struct config_app *apps, int count)
{
    for (int i = 0; i < count; i++) {
        free(apps[i].host);
        free(apps[i].ca_file);
        free(apps[i].sni);
    }
    free(apps);
}

/* The application that already has address (ip:port), among cfg's
 * literal ones and the members made so far; NULL when none. */
static const struct config_app *address_holder(const struct config *cfg, const struct config_app *made,
                                               int count, const char *address)
{
    for (int i = 0; i < cfg->app_count; i++)
        if (!cfg->apps[i].by_name && strcmp(cfg->apps[i].address.text, address) == 0)
            return &cfg->apps[i];
    for (int i = 0; i < count; i++)
        if (strcmp(made[i].address.text, address) == 0)
            return &made[i];
    return NULL;
}

/* The template's settings with one of its name's addresses. false when
 * the member is left out (its name does not fit, or its address is
 * another application's) or memory ran out (*rc). */
static bool make_member(struct config_app *member, const struct config_app *group,
                        const struct sockaddr_storage *addr, const struct config *cfg, int made,
                        int *rc)
{
    *member = *group;
    member->host = member->ca_file = member->sni = NULL;
    member->address.addr = *addr;
    if (addr->ss_family == AF_INET) {
        ((struct sockaddr_in *)&member->address.addr)->sin_port = htons(group->port);
        member->address.addr_len = sizeof(struct sockaddr_in);
    } else {
        ((struct sockaddr_in6 *)&member->address.addr)->sin6_port = htons(group->port);
        member->address.addr_len = sizeof(struct sockaddr_in6);
    }
    config_format_address(&member->address.addr, member->address.text, sizeof(member->address.text));
    /* One address, one application: a second one there would double its
     * share of the traffic and of the checks, and split its max_requests. */
    const struct config_app *holder =
        address_holder(cfg, member - made, made, member->address.text);   /* made before it */
    if (holder) {
        log_warn("dns: %s: %s is already application %s; left out of %s", group->host,
                 member->address.text, holder->name, group->name);
        return false;
    }
    memcpy(member->group, group->name, sizeof(member->group));
    if (dns_member_name(group->name, &member->address, member->name, sizeof(member->name)) < 0) {
        log_warn("dns: %s: %s@%s would be longer than %zu characters: that address is left out "
                 "(give the application a shorter name)", group->host, group->name,
                 member->address.text, sizeof(member->name) - 1);
        return false;
    }
    if (copy_strings(member, group) < 0) {
        *rc = -ENOMEM;
        return true;    /* counted, so that free_apps frees what was copied */
    }
    return true;
}


int dns_expand(struct config *cfg, const struct dns_answers *answers)
{
    int total = members_count(cfg, answers);
    if (total < 0)
        return total;
    struct config_app *apps = calloc((size_t)total + 1, sizeof(*apps));
    if (!apps)
        return -ENOMEM;
    int count = 0, rc = 0;
    for (int i = 0; i < cfg->app_count && rc == 0; i++) {
        const struct config_app *app = &cfg->apps[i];
        if (!app->by_name) {
            apps[count] = *app;
            rc = copy_strings(&apps[count++], app);
            continue;
        }
        const struct dns_answer *a = dns_answers_find(answers, app->host);
        for (int k = 0; k < a->set.count && rc == 0; k++)
            count += make_member(&apps[count], app, &a->set.addr[k], cfg, count, &rc);
    }
    if (rc < 0) {
        free_apps(apps, count);
        return rc;
    }
    free_apps(cfg->apps, cfg->app_count);
    cfg->apps = apps;
    cfg->app_count = count;
    return 0;
}
