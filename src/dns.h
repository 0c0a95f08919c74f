/* dns.h - applications named by DNS: the addresses a name resolves to, and
 * the applications a config has once those addresses are known.
 *
 * An [[applications]] entry whose host is a name (not a literal address)
 * stands for a group: one application per address the name resolves to,
 * named GROUP@ADDRESS ("api@10.0.0.5:8001"), so that an address keeps its
 * name, state and counters while others come and go. Everything here is
 * pure (no I/O, no threads): resolver.c asks the DNS, main.c builds the
 * generations.
 */
#ifndef SLUICE_DNS_H
#define SLUICE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* More A and AAAA records than one answer carries over UDP. */
#define DNS_ADDRESSES_MAX 64

/* One name's addresses: sorted, without duplicates, ports zero. */
struct dns_addresses {
    int count;
    struct sockaddr_storage addr[DNS_ADDRESSES_MAX];
};

/* The last good answer for one name; known is false until there is one. */
struct dns_answer {
    char *host;                     /* owned */
    bool known;
    struct dns_addresses set;
    int64_t ttl_ms;                 /* its records' shortest TTL; -1 when unknown */
};

/* One answer per distinct host name of a config. Owns its items. */
struct dns_answers {
    int count;
    struct dns_answer *items;
};

/* Adds an address (its port is dropped). A full set keeps its lowest
 * addresses (family, then bytes), so that a set made from more than
 * DNS_ADDRESSES_MAX addresses is the same in whatever order they came;
 * false when that left one out. */
bool dns_addresses_add(struct dns_addresses *set, const struct sockaddr *addr);
bool dns_addresses_equal(const struct dns_addresses *a, const struct dns_addresses *b);
/* "+10.0.0.7 -10.0.0.5": what changed from before to after, into text.
 * Returns the number of addresses added and removed. */
int dns_addresses_diff(const struct dns_addresses *before, const struct dns_addresses *after,
                       char *text, size_t len);
/* "10.0.0.5" or "fd00::5". */
void dns_address_text(const struct sockaddr_storage *addr, char *buf, size_t len);

/* An entry, not yet known, for every distinct host name in cfg. 0 or -ENOMEM. */
int dns_answers_init(struct dns_answers *answers, const struct config *cfg);
int dns_answers_copy(struct dns_answers *to, const struct dns_answers *from);
void dns_answers_free(struct dns_answers *answers);
struct dns_answer *dns_answers_find(const struct dns_answers *answers, const char *host);
bool dns_answers_equal(const struct dns_answers *a, const struct dns_answers *b);

/* GROUP@ADDRESS into out: 0, or -1 when it does not fit. */
int dns_member_name(const char *group, const struct config_address *address, char *out, size_t len);

/* Replaces each host-name application of cfg by one application per
 * address in answers (every name must be known). A member whose name
 * would not fit is left out, with a warning, and so is one whose ip:port
 * is already a literal application's or an earlier member's. 0, -ENOMEM, -ENOENT (a name
 * without an answer) or -E2BIG (past CONFIG_MAX_APPS); cfg is unchanged
 * on failure. */
int dns_expand(struct config *cfg, const struct dns_answers *answers);

#endif
