/* test_dns.c - dns.c (address sets, their differences, member names, the
 * expansion of host names into applications), the dns_refresh and
 * resolvers keys, and resolver.c's errors at load. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dns.h"
#include "resolver.h"
#include "unit.h"

static void add_ip(struct dns_addresses *set, const char *ip)
{
    struct sockaddr_storage ss = {0};
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(53);    /* a port must not make two addresses */
        inet_pton(AF_INET6, ip, &sin6->sin6_addr);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(53);
        inet_pton(AF_INET, ip, &sin->sin_addr);
    }
    CHECK(dns_addresses_add(set, (struct sockaddr *)&ss));
}

static void add_ipv4(struct dns_addresses *set, int host)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a030000u + (uint32_t)host)};
    dns_addresses_add(set, (struct sockaddr *)&sin);
}

/* An answer of 100 addresses, rotated by the server from one query to the
 * next, is the same set each time: the 64 lowest, not whichever came first. */
static void test_more_than_a_set_holds(void)
{
    struct dns_addresses forward = {0}, rotated = {0};
    for (int i = 0; i < 100; i++)
        add_ipv4(&forward, i);
    for (int i = 0; i < 100; i++)
        add_ipv4(&rotated, (i + 57) % 100);
    CHECK_INT(forward.count, DNS_ADDRESSES_MAX);
    CHECK_INT(rotated.count, DNS_ADDRESSES_MAX);
    CHECK(dns_addresses_equal(&forward, &rotated));
    char text[4096];
    CHECK_INT(dns_addresses_diff(&forward, &rotated, text, sizeof(text)), 0);
    char ip[INET_ADDRSTRLEN];
    dns_address_text(&rotated.addr[DNS_ADDRESSES_MAX - 1], ip, sizeof(ip));
    CHECK_STR(ip, "10.3.0.63");
}

static void test_sets(void)
{
    struct dns_addresses a = {0}, b = {0};
    char text[256];

    add_ip(&a, "10.0.0.5");
    add_ip(&a, "10.0.0.2");
    add_ip(&a, "10.0.0.5");             /* twice in one answer: once */
    CHECK_INT(a.count, 2);
    add_ip(&b, "10.0.0.2");
    add_ip(&b, "10.0.0.5");
    CHECK(dns_addresses_equal(&a, &b));  /* order is not a change */
    CHECK_INT(dns_addresses_diff(&a, &b, text, sizeof(text)), 0);
    CHECK_STR(text, "");

    b = (struct dns_addresses){0};
    add_ip(&b, "10.0.0.7");
    add_ip(&b, "10.0.0.2");
    add_ip(&b, "fd00::5");
    CHECK(!dns_addresses_equal(&a, &b));
    CHECK_INT(dns_addresses_diff(&a, &b, text, sizeof(text)), 3);
    CHECK_STR(text, "+10.0.0.7 +fd00::5 -10.0.0.5");
    CHECK_INT(dns_addresses_diff(&b, &a, text, sizeof(text)), 3);
    CHECK_STR(text, "+10.0.0.5 -10.0.0.7 -fd00::5");

    /* a full set refuses more rather than overflowing */
    struct dns_addresses full = {0};
    char ip[32];
    for (int i = 0; i < DNS_ADDRESSES_MAX; i++) {
        snprintf(ip, sizeof(ip), "10.1.0.%d", i);
        add_ip(&full, ip);
    }
    struct sockaddr_in one = {.sin_family = AF_INET};
    inet_pton(AF_INET, "10.2.0.1", &one.sin_addr);
    CHECK(!dns_addresses_add(&full, (struct sockaddr *)&one));
    CHECK_INT(full.count, DNS_ADDRESSES_MAX);
    test_more_than_a_set_holds();
}

static void test_member_name(void)
{
    struct config_address address;
    char name[CONFIG_NAME_MAX];

    CHECK_INT(config_parse_address("10.0.0.5:8001", &address), 0);
    CHECK_INT(dns_member_name("api", &address, name, sizeof(name)), 0);
    CHECK_STR(name, "api@10.0.0.5:8001");
    CHECK_INT(config_parse_address("[fd00::5]:8001", &address), 0);
    CHECK_INT(dns_member_name("api", &address, name, sizeof(name)), 0);
    CHECK_STR(name, "api@[fd00::5]:8001");
    CHECK_INT(config_parse_address("[fd00:1234:5678:9abc:def0:1234:5678:9abc]:8001", &address), 0);
    CHECK_INT(dns_member_name("a-group-name-of-twenty", &address, name, sizeof(name)), -1);
}

static const char two_groups[] =
    "[[applications]]\nname = \"api\"\nhost = \"api.internal\"\nport = 8001\nweight = 3\n"
    "[[applications]]\nip = \"127.0.0.9\"\nport = 8002\n"
    "[[applications]]\nname = \"admin\"\nhost = \"api.internal\"\nport = 9000\n";

static void test_expand(void)
{
    struct config cfg;
    struct dns_answers answers;
    char errors[1024];

    CHECK_INT(config_parse(&cfg, "t.toml", two_groups, strlen(two_groups), errors, sizeof(errors)), 0);
    CHECK_INT(dns_answers_init(&answers, &cfg), 0);
    CHECK_INT(answers.count, 1);        /* one name, whatever its ports */
    CHECK_INT(dns_expand(&cfg, &answers), -ENOENT);
    CHECK_INT(cfg.app_count, 3);        /* unchanged on failure */

    struct dns_answer *a = dns_answers_find(&answers, "api.internal");
    add_ip(&a->set, "10.0.0.7");
    add_ip(&a->set, "10.0.0.5");
    a->known = true;
    struct dns_answers copy;
    CHECK_INT(dns_answers_copy(&copy, &answers), 0);
    CHECK(dns_answers_equal(&copy, &answers));
    add_ip(&dns_answers_find(&copy, "api.internal")->set, "10.0.0.9");
    CHECK(!dns_answers_equal(&copy, &answers));
    dns_answers_free(&copy);

    CHECK_INT(dns_expand(&cfg, &answers), 0);
    CHECK_INT(cfg.app_count, 5);
    CHECK_STR(cfg.apps[0].name, "api@10.0.0.5:8001");
    CHECK_STR(cfg.apps[0].group, "api");
    CHECK_STR(cfg.apps[0].host, "api.internal");
    CHECK_STR(cfg.apps[0].address.text, "10.0.0.5:8001");
    CHECK_INT(cfg.apps[0].weight, 3);
    CHECK_STR(cfg.apps[1].name, "api@10.0.0.7:8001");
    CHECK_STR(cfg.apps[2].name, "127.0.0.9:8002");     /* a literal stays as it was */
    CHECK_STR(cfg.apps[2].group, "");
    CHECK_STR(cfg.apps[3].name, "admin@10.0.0.5:9000");
    CHECK_STR(cfg.apps[4].name, "admin@10.0.0.7:9000");
    dns_answers_free(&answers);
    config_free(&cfg);
}

/* An address that a literal application or another group already has is
 * not a second application: it would get twice the traffic and checks. */
static const char overlapping[] =
    "[[applications]]\nname = \"web-1\"\nip = \"10.0.0.5\"\nport = 8001\n"
    "[[applications]]\nname = \"api\"\nhost = \"api.internal\"\nport = 8001\n"
    "[[applications]]\nname = \"v2\"\nhost = \"v2.internal\"\nport = 8001\n"
    "[[applications]]\nname = \"v2-admin\"\nhost = \"v2.internal\"\nport = 9000\n";

static void test_expand_overlapping_addresses(void)
{
    struct config cfg;
    struct dns_answers answers;
    char errors[1024];

    CHECK_INT(config_parse(&cfg, "t.toml", overlapping, strlen(overlapping), errors, sizeof(errors)), 0);
    CHECK_INT(dns_answers_init(&answers, &cfg), 0);
    struct dns_answer *api = dns_answers_find(&answers, "api.internal");
    struct dns_answer *v2 = dns_answers_find(&answers, "v2.internal");
    CHECK(api && v2);
    if (!api || !v2)
        return;
    add_ip(&api->set, "10.0.0.5");      /* web-1's */
    add_ip(&api->set, "10.0.0.7");
    add_ip(&v2->set, "10.0.0.7");       /* api's member's, on the same port */
    add_ip(&v2->set, "10.0.0.8");
    api->known = v2->known = true;
    CHECK_INT(dns_expand(&cfg, &answers), 0);
    CHECK_INT(cfg.app_count, 5);
    const char *want[] = {"web-1", "api@10.0.0.7:8001", "v2@10.0.0.8:8001", "v2-admin@10.0.0.7:9000",
                          "v2-admin@10.0.0.8:9000"};
    for (int i = 0; i < 5 && i < cfg.app_count; i++)
        CHECK_STR(cfg.apps[i].name, want[i]);
    dns_answers_free(&answers);
    config_free(&cfg);
}

static void test_keys(void)
{
    struct config cfg;
    char errors[1024];
    static const char text[] =
        "[server]\ndns_refresh = \"5s\"\nresolvers = [\"127.0.0.1:5353\", \"10.0.0.1\", \"[::1]:53\"]\n"
        "[[applications]]\nip = \"127.0.0.1\"\n";
    static const char limits[] =
        "[server.limits]\ndns_refresh = \"2m\"\nresolvers = [\"127.0.0.2\"]\n"
        "[[applications]]\nip = \"127.0.0.1\"\n";

    config_defaults(&cfg);
    CHECK_INT(cfg.dns_refresh_ms, 30000);
    CHECK_STR(cfg.resolvers, "");
    config_free(&cfg);
    CHECK_INT(config_parse(&cfg, "t.toml", text, strlen(text), errors, sizeof(errors)), 0);
    CHECK_INT(cfg.dns_refresh_ms, 5000);
    CHECK_STR(cfg.resolvers, "127.0.0.1:5353,10.0.0.1:53,[::1]:53");
    config_free(&cfg);
    CHECK_INT(config_parse(&cfg, "t.toml", limits, strlen(limits), errors, sizeof(errors)), 0);
    CHECK_INT(cfg.dns_refresh_ms, 120000);
    CHECK_STR(cfg.resolvers, "127.0.0.2:53");
    config_free(&cfg);
}

/* A resolver that refuses at once (nothing listens on port 1): the name
 * cannot be resolved, and says where it is written; with a previous
 * answer, that answer is kept. */
static void test_resolve_now(void)
{
    static const char text[] = "[server]\nresolvers = [\"127.0.0.1:1\"]\n"
                               "[[applications]]\nname = \"api\"\nhost = \"api.sluice-test\"\n";
    struct config cfg;
    struct dns_answers answers, previous;
    char errors[1024] = "";

    CHECK_INT(config_parse(&cfg, "t.toml", text, strlen(text), errors, sizeof(errors)), 0);
    CHECK_INT(resolver_resolve_now(&cfg, NULL, &answers, errors, sizeof(errors)), 1);
    CHECK_MSG(strncmp(errors, "t.toml:5:8: applications.host: cannot resolve \"api.sluice-test\": ",
                      60) == 0, "got %s", errors);
    CHECK_INT(answers.count, 0);

    CHECK_INT(dns_answers_init(&previous, &cfg), 0);
    add_ip(&previous.items[0].set, "10.0.0.5");
    previous.items[0].known = true;
    errors[0] = '\0';
    CHECK_INT(resolver_resolve_now(&cfg, &previous, &answers, errors, sizeof(errors)), 0);
    CHECK(dns_answers_equal(&answers, &previous));
    dns_answers_free(&answers);
    dns_answers_free(&previous);
    config_free(&cfg);
}

void unit_test_dns(void)
{
    test_sets();
    test_member_name();
    test_expand();
    test_expand_overlapping_addresses();
    test_keys();
    test_resolve_now();
}
