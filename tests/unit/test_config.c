/* test_config.c - config.c: the seed's file, every key's default, a file
 * that sets every key, and each kind of error with its position. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

static struct config cfg;
static char errs[8192];

static int parse(const char *text)
{
    return config_parse(&cfg, "t.toml", text, strlen(text), errs, sizeof(errs));
}

/* Every failed parse must leave cfg empty, whatever went wrong. */
static bool config_is_empty(const struct config *c)
{
    static const struct config zero;
    return memcmp(c, &zero, sizeof(zero)) == 0;
}

/* The text is refused, and one of its errors contains `expected`. */
static void check_error(const char *text, const char *expected)
{
    int n = parse(text);
    CHECK_MSG(n >= 1 && strstr(errs, expected), "want \"%s\" for:\n%s--- got %d errors:\n%s",
              expected, text, n, errs);
    CHECK(config_is_empty(&cfg));
}

/* The text has exactly one error and it starts with `expected`, which
 * includes FILE:LINE:COL. */
static void check_one_error(const char *text, const char *expected)
{
    int n = parse(text);
    CHECK_MSG(n == 1 && strncmp(errs, expected, strlen(expected)) == 0,
              "want one error starting \"%s\" for:\n%s--- got %d errors:\n%s", expected, text, n,
              errs);
    CHECK(config_is_empty(&cfg));
}

static void check_ok(const char *text)
{
    int n = parse(text);
    CHECK_MSG(n == 0, "want no errors for:\n%s--- got %d:\n%s", text, n, errs);
}

static int port_of(const struct config_address *a)
{
    if (a->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->addr)->sin6_port);
}

#define APP "[[applications]]\nip = \"127.0.0.1\"\nport = 8001\n"

#define SEED                                                                     \
    "[[applications]]\n"                                                         \
    "alive = true          # state at start-up\n"                                \
    "ip = \"127.0.0.1\"\n"                                                       \
    "port = \"8001\"         # a string in the seed\n"                           \
    "tsl = false           # the seed's spelling\n"

static void test_seed(void)
{
    check_ok(SEED);
    CHECK_INT(cfg.app_count, 1);
    CHECK_STR(cfg.apps[0].name, "127.0.0.1:8001");
    CHECK_STR(cfg.apps[0].host, "127.0.0.1");
    CHECK_INT(cfg.apps[0].port, 8001);
    CHECK(!cfg.apps[0].default_port);
    CHECK(cfg.apps[0].alive);
    CHECK(!cfg.apps[0].tls);
    CHECK_INT(cfg.apps[0].weight, 1);
    CHECK_INT(cfg.apps[0].line, 1);
    CHECK_STR(cfg.apps[0].address.text, "127.0.0.1:8001");
    CHECK_INT(cfg.apps[0].address.addr.ss_family, AF_INET);
    CHECK_INT(port_of(&cfg.apps[0].address), 8001);
    CHECK_STR(cfg.path, "t.toml");
    config_free(&cfg);

    check_ok("[[applications]]\nalive = false\nip = \"127.0.0.1\"\nport = 8001\ntls = true\n");
    CHECK_INT(cfg.apps[0].port, 8001);
    CHECK(!cfg.apps[0].alive);
    CHECK(cfg.apps[0].tls);
    config_free(&cfg);

    check_ok("[[applications]]\nip = \"127.0.0.1\"\nport = 8001\ntsl = true\n");
    CHECK(cfg.apps[0].tls);
    config_free(&cfg);

    /* "0" = no port: the scheme's default, and the name shows it */
    check_ok("[[applications]]\nip = \"127.0.0.1\"\nport = \"0\"\ntsl = false\n");
    CHECK_INT(cfg.apps[0].port, 80);
    CHECK(cfg.apps[0].default_port);
    CHECK_STR(cfg.apps[0].name, "127.0.0.1:80");
    CHECK_INT(port_of(&cfg.apps[0].address), 80);
    config_free(&cfg);

    check_ok("[[applications]]\nip = \"127.0.0.1\"\nport = 0\ntls = true\n");
    CHECK_INT(cfg.apps[0].port, 443);
    CHECK(cfg.apps[0].default_port);
    config_free(&cfg);

    check_ok("[[applications]]\nip = \"10.0.0.1\"\n");     /* no port at all */
    CHECK_INT(cfg.apps[0].port, 80);
    CHECK(cfg.apps[0].default_port);
    config_free(&cfg);

    check_ok("[[applications]]\nip = \"::1\"\nport = 8001\n"
             "[[applications]]\nip = \"127.0.0.1\"\nport = 8002\n");
    CHECK_INT(cfg.app_count, 2);
    CHECK_STR(cfg.apps[0].name, "[::1]:8001");
    CHECK_STR(cfg.apps[0].address.text, "[::1]:8001");
    CHECK_INT(cfg.apps[0].address.addr.ss_family, AF_INET6);
    CHECK_STR(cfg.apps[1].name, "127.0.0.1:8002");
    CHECK_INT(cfg.apps[1].line, 4);
    config_free(&cfg);

    check_ok("[[applications]]\nhost = \"localhost\"\nport = 8001\nname = \"api-1\"\n"
             "weight = 1000\n");
    CHECK_STR(cfg.apps[0].name, "api-1");
    CHECK_STR(cfg.apps[0].host, "localhost");
    CHECK_INT(cfg.apps[0].weight, 1000);
    CHECK(cfg.apps[0].by_name);         /* resolved later, one application per address */
    CHECK_INT(cfg.apps[0].host_line, 2);
    CHECK_INT(cfg.apps[0].host_col, 8);
    config_free(&cfg);

    check_ok("[[applications]]\nhost = \"127.0.0.3\"\nport = 9000\n");
    CHECK(!cfg.apps[0].by_name);        /* a literal in host is an address, as in ip */
    CHECK_INT(port_of(&cfg.apps[0].address), 9000);
    config_free(&cfg);

    check_ok("[[applications]]\nhost = \"localhost\"\nport = 9000\n");
    CHECK_STR(cfg.apps[0].name, "localhost:9000");
    config_free(&cfg);

    /* inline tables are the same array in TOML */
    check_ok("applications = [{ ip = \"127.0.0.1\", port = 1 }, { ip = \"127.0.0.2\" }]\n");
    CHECK_INT(cfg.app_count, 2);
    config_free(&cfg);
}

static void test_defaults(void)
{
    struct config d;

    config_defaults(&d);
    check_ok(SEED);
    CHECK_INT(cfg.listen_count, 1);
    CHECK_STR(cfg.listen[0].text, "0.0.0.0:8080");
    CHECK_INT(port_of(&cfg.listen[0]), 8080);
    CHECK_INT(cfg.mode, MODE_PROXY);
    CHECK_INT(cfg.algorithm, ALG_ROUND_ROBIN);
    CHECK_INT(cfg.hash_key, HASH_CLIENT_IP);
    CHECK(cfg.hash_key_name == NULL);
    CHECK_INT(cfg.workers, 0);
    CHECK_INT(cfg.max_connections, 10000);
    CHECK_INT(cfg.shutdown_grace_ms, 10000);
    CHECK_INT(cfg.retries, 2);
    CHECK_INT(cfg.connect_timeout_ms, 2000);
    CHECK_INT(cfg.client_header_timeout_ms, 10000);
    CHECK_INT(cfg.client_idle_timeout_ms, 60000);
    CHECK_INT(cfg.upstream_response_timeout_ms, 30000);
    CHECK_INT(cfg.header_bytes, 16384);
    CHECK_INT(cfg.header_count, 100);
    CHECK_INT(cfg.body_bytes, 0);
    CHECK(cfg.tls_cert == NULL && cfg.tls_key == NULL);
    CHECK_STR(cfg.health_path, "/health");
    CHECK_INT(cfg.health_interval_ms, 2000);
    CHECK_INT(cfg.health_fast_interval_ms, 250);
    CHECK_INT(cfg.health_timeout_ms, 1000);
    CHECK_INT(cfg.health_rise, 2);
    CHECK_INT(cfg.health_fall, 3);
    CHECK(!config_expect_has(&cfg, 199));
    CHECK(config_expect_has(&cfg, 200));
    CHECK(config_expect_has(&cfg, 299));
    CHECK(!config_expect_has(&cfg, 300));
    CHECK(!config_expect_has(&cfg, 600));
    CHECK_INT(cfg.passive_failures, 3);
    CHECK_INT(cfg.passive_window_ms, 10000);
    CHECK_INT(cfg.passive_server_errors, 0);
    CHECK(cfg.admin_enabled);
    CHECK_STR(cfg.admin_listen.text, "127.0.0.1:9901");
    CHECK_INT(port_of(&cfg.admin_listen), 9901);
    CHECK_STR(cfg.admin_token, "");
    CHECK_STR(cfg.alert_webhook, "");
    CHECK_STR(cfg.alert_command, "");
    CHECK_STR(cfg.log_access, "stdout");
    CHECK_INT(cfg.log_format, LOG_FORMAT_COMBINED);
    CHECK_INT(cfg.log_level, LOG_INFO);
    CHECK(!cfg.cache_enabled);
    CHECK_INT(cfg.cache_size_bytes, 64 << 20);
    CHECK_INT(cfg.cache_entries, 0);
    CHECK_INT(cfg.cache_max_object, 1 << 20);

    /* config_defaults gives the same settings as an all-default file */
    CHECK(memcmp(d.listen, cfg.listen, sizeof(d.listen)) == 0);
    CHECK(memcmp(d.health_expect, cfg.health_expect, sizeof(d.health_expect)) == 0);
    CHECK_INT(d.max_connections, cfg.max_connections);
    CHECK_INT(d.app_count, 0);
    config_free(&d);
    config_free(&cfg);

    /* freeing twice, or a zeroed config, is harmless */
    config_free(&cfg);
    struct config zero = {0};
    config_free(&zero);
}

/* Every key there is, each set to something other than its default. */
static const char full_fmt[] =
    "[server]\n"
    "listen = [\"0.0.0.0:8080\", \"[::]:8080\"]\n"
    "mode = \"redirect\"\n"
    "algorithm = \"hash\"\n"
    "hash_key = \"header:X-User\"\n"
    "workers = 4\n"
    "max_connections = 500\n"
    "shutdown_grace = \"1m\"\n"
    "retries = 0\n"
    "[server.timeouts]\n"
    "connect = \"500ms\"\n"
    "client_header = 1500\n"
    "client_idle = \"2m\"\n"
    "upstream_response = \"1h\"\n"
    "[server.limits]\n"
    "header_bytes = \"32KB\"\n"
    "headers = 50\n"
    "body_bytes = \"10MB\"\n"
    "[server.tls]\n"
    "cert = \"%s\"\n"
    "key = \"%s\"\n"
    "\n"
    "[health]\n"
    "path = \"/ready?full=1\"\n"
    "interval = \"5s\"\n"
    "fast_interval = \"1s\"\n"
    "timeout = 300\n"
    "rise = 1\n"
    "fall = 5\n"
    "expect = [\"2xx\", 301, 302]\n"
    "\n"
    "[passive]\n"
    "failures = 0\n"
    "window = \"30s\"\n"
    "server_errors = 10\n"
    "\n"
    "[admin]\n"
    "listen = \"0.0.0.0:9901\"\n"
    "token = \"s3cret\"\n"
    "\n"
    "[alerts]\n"
    "webhook = \"https://hooks.example.com/sluice\"\n"
    "command = \"logger -t sluice $SLUICE_APP\"\n"
    "\n"
    "[log]\n"
    "access = \"/var/log/sluice/access.log\"\n"
    "format = \"json\"\n"
    "level = \"debug\"\n"
    "\n"
    "[cache]\n"
    "enabled = true\n"
    "size = \"128MB\"\n"
    "max_object = \"512KB\"\n"
    "\n"
    "[[applications]]\n"
    "name = \"api-1\"\n"
    "alive = true\n"
    "ip = \"127.0.0.1\"\n"
    "port = 8001\n"
    "tsl = true\n"
    "weight = 3\n"
    "\n"
    "[[applications]]\n"
    "name = \"api-2\"\n"
    "alive = false\n"
    "host = \"localhost\"\n"
    "port = 8002\n"
    "tls = false\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_full(const char *dir)
{
    char cert[256], key[256], text[4096], path[300];

    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(text, sizeof(text), full_fmt, cert, key);
    check_ok(text);
    CHECK_INT(cfg.listen_count, 2);
    CHECK_STR(cfg.listen[1].text, "[::]:8080");
    CHECK_INT(cfg.listen[1].addr.ss_family, AF_INET6);
    CHECK_INT(cfg.mode, MODE_REDIRECT);
    CHECK_INT(cfg.algorithm, ALG_HASH);
    CHECK_INT(cfg.hash_key, HASH_HEADER);
    CHECK_STR(cfg.hash_key_name, "x-user");   /* header names are matched in lower case */
    CHECK_INT(cfg.workers, 4);
    CHECK_INT(cfg.max_connections, 500);
    CHECK_INT(cfg.shutdown_grace_ms, 60000);
    CHECK_INT(cfg.retries, 0);
    CHECK_INT(cfg.connect_timeout_ms, 500);
    CHECK_INT(cfg.client_header_timeout_ms, 1500);
    CHECK_INT(cfg.client_idle_timeout_ms, 120000);
    CHECK_INT(cfg.upstream_response_timeout_ms, 3600000);
    CHECK_INT(cfg.header_bytes, 32768);
    CHECK_INT(cfg.header_count, 50);
    CHECK_INT(cfg.body_bytes, 10 << 20);
    CHECK_STR(cfg.tls_cert, cert);
    CHECK_STR(cfg.tls_key, key);
    CHECK_STR(cfg.health_path, "/ready?full=1");
    CHECK_INT(cfg.health_interval_ms, 5000);
    CHECK_INT(cfg.health_fast_interval_ms, 1000);
    CHECK_INT(cfg.health_timeout_ms, 300);
    CHECK_INT(cfg.health_rise, 1);
    CHECK_INT(cfg.health_fall, 5);
    CHECK(config_expect_has(&cfg, 204) && config_expect_has(&cfg, 301) &&
          config_expect_has(&cfg, 302));
    CHECK(!config_expect_has(&cfg, 303) && !config_expect_has(&cfg, 404));
    CHECK_INT(cfg.passive_failures, 0);
    CHECK_INT(cfg.passive_window_ms, 30000);
    CHECK_INT(cfg.passive_server_errors, 10);
    CHECK(cfg.admin_enabled);
    CHECK_STR(cfg.admin_token, "s3cret");
    CHECK_STR(cfg.alert_webhook, "https://hooks.example.com/sluice");
    CHECK_STR(cfg.alert_command, "logger -t sluice $SLUICE_APP");
    CHECK_STR(cfg.log_access, "/var/log/sluice/access.log");
    CHECK_INT(cfg.log_format, LOG_FORMAT_JSON);
    CHECK_INT(cfg.log_level, LOG_DEBUG);
    CHECK(cfg.cache_enabled);
    CHECK_INT(cfg.cache_size_bytes, 128 << 20);
    CHECK_INT(cfg.cache_max_object, 512 << 10);
    CHECK_INT(cfg.app_count, 2);
    CHECK_STR(cfg.apps[0].name, "api-1");
    CHECK(cfg.apps[0].tls);
    CHECK_INT(cfg.apps[0].weight, 3);
    CHECK_STR(cfg.apps[1].name, "api-2");
    CHECK(!cfg.apps[1].alive);
    CHECK(!cfg.apps[1].tls);
    config_free(&cfg);

    /* relative paths are read from the config file's directory */
    snprintf(path, sizeof(path), "%s/applications.toml", dir);
    write_file(path, "log.access = \"access.log\"\n"
                     "[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n" APP);
    int n = config_load(&cfg, path, errs, sizeof(errs));
    CHECK_MSG(n == 0, "%s", errs);
    if (n == 0) {
        CHECK_STR(cfg.tls_cert, cert);
        CHECK_STR(cfg.tls_key, key);
        CHECK_STR(cfg.path, path);
        snprintf(path, sizeof(path), "%s/access.log", dir);
        CHECK_STR(cfg.log_access, path);
    }
    config_free(&cfg);
    snprintf(path, sizeof(path), "%s/applications.toml", dir);
    unlink(path);
}

static void test_seed_spellings(void)
{
    check_ok("cache = true\ncachesize = 1000\n" SEED);
    CHECK(cfg.cache_enabled);
    CHECK_INT(cfg.cache_entries, 1000);
    CHECK_INT(cfg.cache_size_bytes, 64 << 20);
    config_free(&cfg);

    check_ok("cache = false\ncachesize = \"250\"\n" SEED);
    CHECK(!cfg.cache_enabled);
    CHECK_INT(cfg.cache_entries, 250);
    config_free(&cfg);

    check_one_error("cache = 1\n" APP, "t.toml:1:9: cache: expected a table or a boolean");
    check_one_error("cachesize = \"many\"\n" APP, "t.toml:1:13: cachesize: \"many\" is not an "
                    "entry count");
    check_one_error("cachesize = -1\n" APP, "t.toml:1:13: cachesize:");
}

/* Positions: a refused key points at the key, a refused value at the value. */
static void test_error_positions(void)
{
    check_one_error("bogus = 1\n" APP, "t.toml:1:1: unknown key \"bogus\" at the top level "
                    "(expected one of: server, health,");
    check_one_error("[server]\nworkers = 2\n  colour = \"blue\"\n" APP,
                    "t.toml:3:3: unknown key \"colour\" in [server]");
    check_one_error("[server.timeouts]\nread = \"1s\"\n" APP,
                    "t.toml:2:1: unknown key \"read\" in [server.timeouts]");
    check_one_error(APP "wieght = 2\n",
                    "t.toml:4:1: unknown key \"wieght\" in [[applications]]");
    check_one_error("[server]\nworkers = \"4\"\n" APP,
                    "t.toml:2:11: server.workers: expected an integer, got string");
    check_one_error("[server]\nworkers = 2000\n" APP,
                    "t.toml:2:11: server.workers: 2000 is out of range (0..1024)");
    check_one_error("[server]\nmax_connections = -5\n" APP,
                    "t.toml:2:19: server.max_connections: -5 is out of range");
    check_one_error("[server]\nretries = 101\n" APP, "t.toml:2:11: server.retries: 101 is out");
    check_one_error("[server]\nmode = \"fast\"\n" APP,
                    "t.toml:2:8: server.mode: unknown value \"fast\" (expected one of: "
                    "proxy, redirect)");
    check_one_error("[server]\nalgorithm = \"rr\"\n" APP,
                    "t.toml:2:13: server.algorithm: unknown value \"rr\" (expected one of: "
                    "round_robin, least_conn, random_two, hash)");
    check_one_error("[log]\nformat = \"xml\"\n" APP, "t.toml:2:10: log.format: unknown value "
                    "\"xml\" (expected one of: combined, json)");
    check_one_error("[log]\nlevel = \"verbose\"\n" APP, "t.toml:2:9: log.level: unknown value "
                    "\"verbose\" (expected one of: debug, info, warn, error)");
    check_one_error("server = 3\n" APP, "t.toml:1:10: server: expected a table, got integer");
    check_one_error("[health]\nrise = 0\n" APP, "t.toml:2:8: health.rise: 0 is out of range");
    check_one_error("[health]\nfall = 0\n" APP, "t.toml:2:8: health.fall: 0 is out of range");
    check_one_error("[health]\nfast_interval = 0\n" APP,
                    "t.toml:2:17: health.fast_interval: 0ms is out of range");
    check_one_error("[health]\nfast_interval = \"2d\"\n" APP,
                    "t.toml:2:17: health.fast_interval: invalid duration \"2d\"");
    check_one_error("[health]\nfast_interval = true\n" APP,
                    "t.toml:2:17: health.fast_interval: expected a duration");
    check_one_error("[health]\npath = \"health\"\n" APP,
                    "t.toml:2:8: health.path: \"health\" must start with '/'");
    check_one_error("[server.limits]\nheader_bytes = 512\n" APP,
                    "t.toml:2:16: server.limits.header_bytes: 512 bytes is out of range");
    check_one_error("[server.limits]\nheaders = 0\n" APP,
                    "t.toml:2:11: server.limits.headers: 0 is out of range");
    check_one_error("[server.timeouts]\nconnect = 0\n" APP,
                    "t.toml:2:11: server.timeouts.connect: 0ms is out of range");
    check_one_error("[server.timeouts]\nconnect = \"1.5s\"\n" APP,
                    "t.toml:2:11: server.timeouts.connect: invalid duration \"1.5s\"");
    check_one_error("[server.timeouts]\nconnect = 1.5\n" APP,
                    "t.toml:2:11: server.timeouts.connect: expected a duration");
    check_one_error("[cache]\nsize = \"lots\"\n" APP,
                    "t.toml:2:8: cache.size: invalid size \"lots\"");
    check_one_error("[alerts]\nwebhook = \"ftp://x\"\n" APP,
                    "t.toml:2:11: alerts.webhook: \"ftp://x\" is not usable: must start with "
                    "http:// or https://");
    check_one_error("[[applications]]\nip = \"127.0.0.1\"\nweight = 0\n",
                    "t.toml:3:10: applications.weight: 0 is out of range (1..1000)");
    check_one_error("[[applications]]\nip = \"127.0.0.1\"\nport = 70000\n",
                    "t.toml:3:8: applications.port: 70000 is out of range");
    check_one_error("[[applications]]\nip = \"127.0.0.1\"\nport = \"80a\"\n",
                    "t.toml:3:8: applications.port: \"80a\" is not a port number");
    check_one_error("[[applications]]\nip = \"127.0.0.1\"\nalive = \"yes\"\n",
                    "t.toml:3:9: applications.alive: expected a boolean, got string");
    check_one_error("[[applications]]\nip = \"localhost\"\n",
                    "t.toml:2:6: applications.ip: \"localhost\" is not an IPv4 or IPv6 address");
    check_one_error("[[applications]]\nport = 80\n",
                    "t.toml:1:1: applications: ip or host is required");
    check_one_error("[[applications]]\nip = \"127.0.0.1\"\nhost = \"localhost\"\n",
                    "t.toml:3:1: applications: give ip or host, not both");
    check_one_error("[[applications]]\ntls = true\nip = \"127.0.0.1\"\ntsl = true\n",
                    "t.toml:4:1: applications: tsl and tls are the same setting");
    check_one_error("", "t.toml:1:1: no applications defined");
    check_one_error("applications = []\n", "t.toml:1:16: no applications defined");
    check_one_error("[applications]\nip = \"127.0.0.1\"\n",
                    "t.toml:1:1: applications: expected an array of tables");
    check_one_error("[[applications]]\nname = \"a\"\nip = \"127.0.0.1\"\n"
                    "[[applications]]\nname = \"a\"\nip = \"127.0.0.2\"\n",
                    "t.toml:5:8: applications.name: duplicate name \"a\" (first used by the "
                    "application at line 1)");
    check_one_error(APP APP, "t.toml:4:1: applications.name: duplicate name \"127.0.0.1:8001\"");
    check_one_error("[[applications]]\nname = \"a b\"\nip = \"127.0.0.1\"\n",
                    "t.toml:2:8: applications.name: \"a b\": use only");
    check_one_error("[[applications]]\nname = \"\"\nip = \"127.0.0.1\"\n",
                    "t.toml:2:8: applications.name: must be 1 to 63 characters long");
    /* names are resolved after the file is read (test_dns.c) */
    check_one_error("[[applications]]\nname = \"a-name-far-too-long-for-its-members-to-fit\"\n"
                    "host = \"api.internal\"\n",
                    "t.toml:2:8: applications.name: \"a-name-far-too-long-for-its-members-to-fit\" "
                    "is too long for a host name's applications");
    check_one_error("[server]\ndns_refresh = \"500ms\"\n" APP,
                    "t.toml:2:15: server.dns_refresh: 500ms is out of range (1000..86400000ms)");
    check_one_error("[server]\ndns_refresh = 0\n" APP,
                    "t.toml:2:15: server.dns_refresh: 0ms is out of range");
    check_one_error("[server.limits]\ndns_refresh = \"soon\"\n" APP,
                    "t.toml:2:15: server.limits.dns_refresh: invalid duration \"soon\"");
    check_one_error("[server]\nresolvers = [\"127.0.0.1:53\", \"dns.example:53\"]\n" APP,
                    "t.toml:2:30: server.resolvers: invalid resolver \"dns.example:53\"");
    check_one_error("[server]\nresolvers = [\"127.0.0.1:99999\"]\n" APP,
                    "t.toml:2:14: server.resolvers: invalid resolver \"127.0.0.1:99999\"");
    check_one_error("[server]\nresolvers = [\"*:53\"]\n" APP,
                    "t.toml:2:14: server.resolvers: invalid resolver \"*:53\"");
    check_one_error("[server]\nresolvers = \"127.0.0.1\"\n" APP,
                    "t.toml:2:13: server.resolvers: expected a list of");
    check_one_error("[server]\ndns_refresh = \"5s\"\n[server.limits]\ndns_refresh = \"10s\"\n" APP,
                    "t.toml:4:1: server: dns_refresh is set in both [server] and [server.limits]");
    check_one_error("[server.limits]\nresolvers = [1]\n" APP,
                    "t.toml:2:14: server.limits.resolvers: expected a string");
    check_one_error("[health]\npath = \"a\\nb\"\n" APP,
                    "t.toml:2:8: health.path: \"a?b\" must start with '/'\n");
    check_one_error("[health]\npath = \"/a\\u0000b\"\n" APP,
                    "t.toml:2:8: health.path: contains a NUL character");
}

static void test_error_kinds(void)
{
    /* hash_key */
    check_ok("[server]\nhash_key = \"uri\"\n" APP);
    CHECK_INT(cfg.hash_key, HASH_URI);
    config_free(&cfg);
    check_ok("[server]\nhash_key = \"cookie:session\"\n" APP);
    CHECK_INT(cfg.hash_key, HASH_COOKIE);
    CHECK_STR(cfg.hash_key_name, "session");
    config_free(&cfg);
    check_error("[server]\nhash_key = \"ip\"\n" APP, "(expected one of: client_ip, uri, "
                "header:NAME, cookie:NAME)");
    check_error("[server]\nhash_key = \"header:\"\n" APP, "NAME must be a non-empty");
    check_error("[server]\nhash_key = \"header:a b\"\n" APP, "NAME must be a non-empty");

    /* expect */
    check_ok("[health]\nexpect = 204\n" APP);
    CHECK(config_expect_has(&cfg, 204) && !config_expect_has(&cfg, 200));
    config_free(&cfg);
    check_ok("[health]\nexpect = \"3xx\"\n" APP);
    CHECK(config_expect_has(&cfg, 302) && !config_expect_has(&cfg, 200));
    config_free(&cfg);
    check_ok("[health]\nexpect = [200, 404]\n" APP);
    CHECK(config_expect_has(&cfg, 404) && !config_expect_has(&cfg, 201));
    config_free(&cfg);
    check_one_error("[health]\nexpect = \"6xx\"\n" APP,
                    "t.toml:2:10: health.expect: invalid status class \"6xx\"");
    check_one_error("[health]\nexpect = [200, 99]\n" APP,
                    "t.toml:2:16: health.expect: status 99 is out of range (100..599)");
    check_error("[health]\nexpect = []\n" APP, "health.expect: the list is empty");
    check_error("[health]\nexpect = true\n" APP, "expected a status class");

    /* listen */
    check_error("[server]\nlisten = \"8080\"\n" APP, "server.listen: invalid address \"8080\"");
    check_error("[server]\nlisten = []\n" APP, "needs 1 to 8 addresses, got 0");
    check_error("[server]\nlisten = [\":1\",\":2\",\":3\",\":4\",\":5\",\":6\",\":7\",\":8\","
                "\":9\"]\n" APP, "needs 1 to 8 addresses, got 9");
    check_one_error("[server]\nlisten = [\":8080\", \"0.0.0.0:8080\"]\n" APP,
                    "t.toml:2:20: server.listen: \"0.0.0.0:8080\" is listed twice");
    check_error("[server]\nlisten = 8080\n" APP, "expected an address string or a list");
    check_ok("[server]\nlisten = \"*:80\"\n" APP);
    CHECK_INT(cfg.listen_count, 1);
    CHECK_INT(port_of(&cfg.listen[0]), 80);
    config_free(&cfg);

    /* admin */
    check_one_error("[admin]\nlisten = \"0.0.0.0:9901\"\n" APP,
                    "t.toml:2:10: admin.listen: \"0.0.0.0:9901\" is not a loopback address: "
                    "set admin.token");
    check_ok("[admin]\nlisten = \"[::1]:9901\"\n" APP);
    CHECK(cfg.admin_enabled);
    config_free(&cfg);
    check_ok("[admin]\nlisten = \"127.0.0.2:9901\"\n" APP);
    config_free(&cfg);
    check_ok("[admin]\nlisten = \"\"\n" APP);
    CHECK(!cfg.admin_enabled);
    config_free(&cfg);
    check_error("[admin]\nlisten = \"localhost:9901\"\n" APP, "admin.listen: invalid address");
    check_error("[admin]\ntoken = \"a b\"\n" APP, "admin.token: \"a b\" must not contain");
    check_one_error("[server]\nlisten = \"127.0.0.1:9901\"\n" APP,
                    "t.toml:2:10: admin.listen: 127.0.0.1:9901 is also a server.listen");

    /* [server.tls] */
    check_one_error("[server.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/dev/null\"\n" APP,
                    "t.toml:2:8: server.tls.cert: cannot read \"/nonexistent/cert.pem\": No "
                    "such file or directory");
    check_one_error("[server.tls]\ncert = \"/dev/null\"\n" APP,
                    "t.toml:1:1: server.tls: key is required");
    check_error("[server.tls]\n" APP, "server.tls: cert is required");

    /* [cache] */
    check_one_error("[cache]\nsize = \"1MB\"\nmax_object = \"2MB\"\n" APP,
                    "t.toml:3:14: cache.max_object: max_object (2097152 bytes) is larger than "
                    "size (1048576 bytes)");
    check_error("[cache]\nsize = 0\n" APP, "cache.size: 0 bytes is out of range (at least 1");

    /* [log] */
    check_error("[log]\naccess = \"\"\n" APP, "log.access: is empty (use \"off\"");
    check_ok("[log]\naccess = \"off\"\n" APP);
    CHECK_STR(cfg.log_access, "off");
    config_free(&cfg);

    /* wrong types */
    check_error("[alerts]\ncommand = 1\n" APP, "alerts.command: expected a string, got integer");
    check_error("[[applications]]\nip = \"127.0.0.1\"\nport = 1.0\n",
                "applications.port: expected an integer or a string of digits, got float");
    check_error("[[applications]]\nip = \"127.0.0.1\"\nweight = true\n",
                "applications.weight: expected an integer, got bool");
    check_error("applications = [1]\n", "applications: expected a table");
}

static void test_many_errors(void)
{
    const char *text = "[server]\n"
                       "workers = -1\n"
                       "mode = \"x\"\n"
                       "nope = 1\n"
                       "[health]\n"
                       "rise = 0\n"
                       "[[applications]]\n"
                       "ip = \"not-an-ip\"\n"
                       "weight = 0\n"
                       "[[applications]]\n"
                       "port = 1\n";
    int n = parse(text);
    CHECK_INT(n, 7);
    CHECK(strstr(errs, "t.toml:2:11: server.workers:") != NULL);
    CHECK(strstr(errs, "t.toml:3:8: server.mode:") != NULL);
    CHECK(strstr(errs, "t.toml:4:1: unknown key \"nope\"") != NULL);
    CHECK(strstr(errs, "t.toml:6:8: health.rise:") != NULL);
    CHECK(strstr(errs, "t.toml:8:6: applications.ip:") != NULL);
    CHECK(strstr(errs, "t.toml:9:10: applications.weight:") != NULL);
    CHECK(strstr(errs, "t.toml:10:1: applications: ip or host is required") != NULL);
    /* each error is one line, in file order */
    int lines = 0;
    for (const char *p = errs; *p; p++)
        lines += *p == '\n';
    CHECK_INT(lines, 7);
    CHECK(strstr(errs, ":2:11:") < strstr(errs, ":10:1:"));
    CHECK(config_is_empty(&cfg));

    /* a small buffer truncates the text, not the count */
    char small[40];
    n = config_parse(&cfg, "t.toml", text, strlen(text), small, sizeof(small));
    CHECK_INT(n, 7);
    CHECK_INT(strlen(small), sizeof(small) - 1);
    CHECK(strncmp(small, "t.toml:2:11: server.workers:", 28) == 0);
    n = config_parse(&cfg, "t.toml", text, strlen(text), NULL, 0);
    CHECK_INT(n, 7);
}

static void test_syntax_error(void)
{
    int n = parse("[server]\nworkers = = 4\n" APP);
    CHECK_INT(n, 1);
    CHECK_MSG(strncmp(errs, "t.toml:2:", 9) == 0, "%s", errs);
    CHECK(errs[0] && errs[strlen(errs) - 1] == '\n');
    CHECK(config_is_empty(&cfg));

    n = parse("[[applications]]\nip = \"127.0.0.1\nport = 1\n");    /* unterminated string */
    CHECK_INT(n, 1);
    CHECK_MSG(strncmp(errs, "t.toml:2:", 9) == 0, "%s", errs);
}

static void test_load(void)
{
    int n = config_load(&cfg, "/nonexistent/applications.toml", errs, sizeof(errs));
    CHECK_INT(n, 1);
    CHECK_STR(errs, "/nonexistent/applications.toml: cannot read: No such file or directory\n");
    CHECK(config_is_empty(&cfg));

    n = config_load(&cfg, "/", errs, sizeof(errs));
    CHECK_INT(n, 1);
    CHECK_STR(errs, "/: cannot read: Is a directory\n");

    /* an endless file is refused, not read into memory */
    n = config_load(&cfg, "/dev/zero", errs, sizeof(errs));
    CHECK_INT(n, 1);
    CHECK_STR(errs, "/dev/zero: cannot read: larger than 64 MB\n");

    /* the example shipped with the project is complete and at its defaults */
    n = config_load(&cfg, "examples/applications.toml", errs, sizeof(errs));
    CHECK_MSG(n == 0, "examples/applications.toml (run from the repository root): %s", errs);
    if (n == 0) {
        struct config d;
        config_defaults(&d);
        CHECK_INT(cfg.app_count, 1);
        CHECK_STR(cfg.apps[0].address.text, "127.0.0.1:8001");
        CHECK_STR(cfg.listen[0].text, d.listen[0].text);
        CHECK_INT(cfg.max_connections, d.max_connections);
        CHECK_INT(cfg.upstream_response_timeout_ms, d.upstream_response_timeout_ms);
        CHECK_INT(cfg.header_bytes, d.header_bytes);
        CHECK(memcmp(cfg.health_expect, d.health_expect, sizeof(d.health_expect)) == 0);
        CHECK_INT(cfg.cache_size_bytes, d.cache_size_bytes);
        CHECK_INT(cfg.cache_max_object, d.cache_max_object);
        CHECK_STR(cfg.log_access, "stdout");
        config_free(&d);
    }
    config_free(&cfg);
}

static void test_durations(void)
{
    static const struct { const char *text; int64_t ms; } good[] = {
        {"0", 0}, {"1500", 1500}, {"500ms", 500}, {"2s", 2000}, {"1m", 60000},
        {"1h", 3600000}, {"007s", 7000}, {"9223372036854775807ms", INT64_MAX},
    };
    static const char *const bad[] = {
        "", "s", "ms", "-1s", "+1s", "1.5s", " 1s", "1s ", "1 s", "10x", "1S", "1sec",
        "9223372036854775808", "9223372036854775807s", "99999999999999999999ms",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t ms = -1;
        CHECK_MSG(config_parse_duration(good[i].text, &ms) == 0 && ms == good[i].ms,
                  "\"%s\" gave %lld", good[i].text, (long long)ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms;
        CHECK_MSG(config_parse_duration(bad[i], &ms) == -1, "\"%s\" was accepted", bad[i]);
    }
}

static void test_sizes(void)
{
    static const struct { const char *text; uint64_t bytes; } good[] = {
        {"0", 0}, {"512", 512}, {"512B", 512}, {"1KB", 1024}, {"1kb", 1024}, {"2K", 2048},
        {"64MB", 64ULL << 20}, {"1GB", 1ULL << 30}, {"3GiB", 3ULL << 30}, {"1m", 1 << 20},
    };
    static const char *const bad[] = {
        "", "B", "MB", "-1", "1.5MB", "1 MB", "1TB", "1KBB", "0x10",
        "9223372036854775807KB", "18446744073709551616",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t bytes = 1;
        CHECK_MSG(config_parse_size(good[i].text, &bytes) == 0 && bytes == good[i].bytes,
                  "\"%s\" gave %llu", good[i].text, (unsigned long long)bytes);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t bytes;
        CHECK_MSG(config_parse_size(bad[i], &bytes) == -1, "\"%s\" was accepted", bad[i]);
    }
}

static void test_addresses(void)
{
    static const struct { const char *text; int family; const char *ip; int port; } good[] = {
        {"127.0.0.1:80", AF_INET, "127.0.0.1", 80},
        {"0.0.0.0:8080", AF_INET, "0.0.0.0", 8080},
        {"*:80", AF_INET, "0.0.0.0", 80},
        {":80", AF_INET, "0.0.0.0", 80},
        {"[::1]:80", AF_INET6, "::1", 80},
        {"[::]:65535", AF_INET6, "::", 65535},
        {"[::ffff:10.0.0.1]:1", AF_INET6, "::ffff:10.0.0.1", 1},
    };
    static const char *const bad[] = {
        "", "80", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:-1", "127.0.0.1:8o", "::1:80", "[::1]80", "[::1]", "[::1]:", "[]:80",
        "[127.0.0.1]:80", "localhost:80", "127.1:80", "1.2.3.4.5:80", "256.0.0.1:80",
        "**:80", "127.0.0.1:80 ",
        "[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:1]:80",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct config_address a;
        char ip[64] = "";
        memset(&a, 0xff, sizeof(a));
        int rc = config_parse_address(good[i].text, &a);
        CHECK_MSG(rc == 0, "\"%s\" was refused", good[i].text);
        if (rc != 0)
            continue;
        const void *raw = a.addr.ss_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)&a.addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)&a.addr)->sin6_addr;
        inet_ntop(a.addr.ss_family, raw, ip, sizeof(ip));
        CHECK_INT(a.addr.ss_family, good[i].family);
        CHECK_STR(ip, good[i].ip);
        CHECK_INT(port_of(&a), good[i].port);
        CHECK_INT(a.addr_len, good[i].family == AF_INET ? sizeof(struct sockaddr_in)
                                                        : sizeof(struct sockaddr_in6));
        CHECK_STR(a.text, good[i].text);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config_address a;
        CHECK_MSG(config_parse_address(bad[i], &a) == -1, "\"%s\" was accepted", bad[i]);
    }
}

/* [[alerts.webhooks]]: formats, headers and routing keys from the
 * environment, templates checked where they are written. */
static void test_webhooks(void)
{
    setenv("SLUICE_TEST_AUTH", "Basic czNjcjN0", 1);
    unsetenv("SLUICE_TEST_UNSET");
    check_ok(APP "[alerts]\nbatch = \"10s\"\n[[alerts.webhooks]]\nurl = \"https://sms.example.com/m\"\n"
             "format = \"form\"\nheaders = { Authorization = \"${SLUICE_TEST_AUTH}\", X-Tag = \"a$b ${SLUICE_TEST_AUTH}\" }\n"
             "fields = { To = \"+15550100\", Body = \"{application} is {state} {{ok}}\" }\n"
             "[[alerts.webhooks]]\nurl = \"http://127.0.0.1:9/pd\"\nformat = \"pagerduty\"\n"
             "routing_key = \"${SLUICE_TEST_AUTH}\"\n");
    CHECK_INT(cfg.alert_batch_ms, 10000);
    CHECK_INT(cfg.webhook_count, 2);
    if (cfg.webhook_count == 2) {
        const struct config_webhook *w = &cfg.webhooks[0];
        CHECK_INT(w->format, WEBHOOK_FORM);
        CHECK_INT(w->header_count, 2);
        CHECK_STR(w->headers[0].name, "Authorization");
        CHECK_STR(w->headers[0].value, "Basic czNjcjN0");
        CHECK_STR(w->headers[1].value, "a$b Basic czNjcjN0");
        CHECK_INT(w->field_count, 2);
        CHECK_STR(w->fields[1].name, "Body");
        CHECK_STR(w->fields[1].value, "{application} is {state} {{ok}}");
        CHECK_INT(cfg.webhooks[1].format, WEBHOOK_PAGERDUTY);
        CHECK_STR(cfg.webhooks[1].routing_key, "Basic czNjcjN0");
    }
    config_free(&cfg);
    check_ok(APP);
    CHECK_INT(cfg.alert_batch_ms, 5000);
    CHECK_INT(cfg.webhook_count, 0);
    config_free(&cfg);

#define HOOK APP "[[alerts.webhooks]]\n"
    check_one_error(HOOK "url = \"http://x/\"\nformat = \"form\"\nfields = { Body = \"{app}\" }\n",
                    "t.toml:7:19: alerts.webhooks.fields: unknown field {app}");
    check_one_error(HOOK "url = \"http://x/\"\nheaders = { A = \"${SLUICE_TEST_UNSET}\" }\n",
                    "t.toml:6:17: alerts.webhooks.headers: the environment variable SLUICE_TEST_UNSET is not set");
    check_one_error(HOOK "url = \"http://x/\"\nheaders = { A = \"${bad\" }\n",
                    "t.toml:6:17: alerts.webhooks.headers: \"${\" must be followed");
    /* A name too long for sluice is an error, never a shorter name that happens to be set. */
    char long_name[160], config_text[1024];
    memset(long_name, 'V', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    long_name[127] = '\0';
    setenv(long_name, "the wrong one", 1);
    long_name[127] = 'V';
    snprintf(config_text, sizeof(config_text), HOOK "url = \"http://x/\"\nheaders = { A = \"${%s}\" }\n",
             long_name);
    check_one_error(config_text, "t.toml:6:17: alerts.webhooks.headers: the environment variable name "
                    "VVVVVVVVVVVVVVVVVVVV... is longer than 127 characters");
    long_name[127] = '\0';
    unsetenv(long_name);
    setenv("SLUICE_TEST_CONTROL", "Bearer a\x1b[2Jb", 1);
    check_one_error(HOOK "url = \"http://x/\"\nheaders = { A = \"${SLUICE_TEST_CONTROL}\" }\n",
                    "t.toml:6:17: alerts.webhooks.headers: must not contain CR, LF or other control characters");
    unsetenv("SLUICE_TEST_CONTROL");
    check_one_error(HOOK "url = \"http://x/\"\nheaders = { \"Bad Name\" = \"v\" }\n",
                    "t.toml:6:13: alerts.webhooks.headers: \"Bad Name\" is not a header name");
    check_one_error(HOOK "url = \"http://x/\"\nheaders = { Content-Length = \"1\" }\n",
                    "t.toml:6:13: alerts.webhooks.headers: \"Content-Length\" is not a header name");
    check_one_error(HOOK "url = \"http://x/\"\nheaders = { A = \"x\\r\\nB: y\" }\n",
                    "t.toml:6:17: alerts.webhooks.headers: must not contain CR, LF");
    check_one_error(HOOK "url = \"http://x/\"\nformat = \"teams\"\n",
                    "t.toml:6:10: alerts.webhooks.format: unknown value \"teams\"");
    check_one_error(HOOK "format = \"json\"\n", "t.toml:4:1: alerts.webhooks: url is required");
    {
        char many[2048] = HOOK "url = \"http://x/\"\nheaders = { ";
        for (int i = 0; i <= CONFIG_PAIRS_MAX; i++)
            snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sH%d = \"v\"", i ? ", " : "", i);
        strncat(many, " }\n", sizeof(many) - strlen(many) - 1);
        check_error(many, "at most 32 entries, got 33");
    }
    check_one_error(HOOK "url = \"\"\n", "t.toml:5:7: alerts.webhooks.url: \"\" is empty");
    check_one_error(HOOK "url = \"ftp://x/\"\n", "t.toml:5:7: alerts.webhooks.url: \"ftp://x/\" is not usable");
    check_one_error(HOOK "url = \"http://x/\"\nfields = { a = \"b\" }\n",
                    "t.toml:6:1: alerts.webhooks.fields: only format = \"form\" sends fields");
    check_one_error(HOOK "url = \"http://x/\"\nformat = \"form\"\n",
                    "t.toml:4:1: alerts.webhooks: format = \"form\" needs fields");
    check_one_error(HOOK "url = \"http://x/\"\nformat = \"pagerduty\"\n",
                    "t.toml:4:1: alerts.webhooks: format = \"pagerduty\" needs routing_key");
    check_one_error(HOOK "url = \"http://x/\"\nformat = \"slack\"\ntext = \"{state\"\n",
                    "t.toml:7:8: alerts.webhooks.text: \"{state\" '{' is not closed");
    check_one_error(HOOK "url = \"http://x/\"\ntext = \"{state}\"\n",
                    "t.toml:6:1: alerts.webhooks.text: only format = \"slack\" sends a text");
    check_one_error(HOOK "url = \"http://x/\"\ncolour = 1\n",
                    "t.toml:6:1: unknown key \"colour\" in [[alerts.webhooks]]");
    check_one_error(APP "[alerts]\nbatch = \"soon\"\n", "t.toml:5:9: alerts.batch: invalid duration");
    check_one_error(APP "[alerts.email]\nserver = \"127.0.0.1:25\"\nsecurity = \"none\"\nfrom = \"a@b.c\"\n"
                    "to = \"d@e.f\"\nsubject = \"{app} down\"\n",
                    "t.toml:9:11: alerts.email.subject: \"{app} down\" unknown field {app}");
    check_one_error(APP "[alerts.email]\nserver = \"127.0.0.1:25\"\nsecurity = \"none\"\nfrom = \"a@b.c\"\n"
                    "to = \"d@e.f\"\nsubject = \"a\\r\\nBcc: x@y.z\"\n",
                    "t.toml:9:11: alerts.email.subject:");
#undef HOOK
}

/* [alerts.email]: what a working table gives, and each refusal at its
 * place; a password never appears in an error. */
static void test_email(const char *dir)
{
    char text[2048], secret[96];
#define EMAIL_HEAD "[alerts.email]\nserver = \"smtp.example.com:587\"\nfrom = \"sluice@example.com\"\n"
    check_ok(APP);
    CHECK(!cfg.email.enabled);
    config_free(&cfg);

    setenv("SLUICE_UNIT_SMTP_PASSWORD", "hunter2", 1);
    check_ok(EMAIL_HEAD "to = [\"a@example.com\", \"b@example.org\"]\nusername = \"u\"\n"
             "password_env = \"SLUICE_UNIT_SMTP_PASSWORD\"\nsecurity = \"tls\"\n" APP);
    CHECK(cfg.email.enabled);
    CHECK_STR(cfg.email.host, "smtp.example.com");
    CHECK_STR(cfg.email.port, "587");
    CHECK_INT(cfg.email.security, EMAIL_TLS);
    CHECK_INT(cfg.email.to_count, 2);
    CHECK_STR(cfg.email.to[1], "b@example.org");
    CHECK_STR(cfg.email.password, "hunter2");
    CHECK(cfg.email.ca_file == NULL);
    config_free(&cfg);

    check_ok("[alerts.email]\nserver = \"[::1]:25\"\nfrom = \"s@x.example\"\nto = \"a@example.com\"\n" APP);
    CHECK_STR(cfg.email.host, "::1");
    CHECK_INT(cfg.email.security, EMAIL_STARTTLS);
    config_free(&cfg);

    snprintf(secret, sizeof(secret), "%s/smtp-password", dir);
    write_file(secret, "from a file\n");
    snprintf(text, sizeof(text), EMAIL_HEAD "to = \"a@example.com\"\nusername = \"u\"\n"
             "password_file = \"%s\"\n" APP, secret);
    check_ok(text);
    CHECK_STR(cfg.email.password, "from a file");
    config_free(&cfg);
    unlink(secret);
    check_error(text, "smtp-password\": No such file");

    check_one_error("[alerts.email]\nserver = \"smtp.example.com\"\nfrom = \"s@example.com\"\nto = \"a@example.com\"\n" APP,
                    "t.toml:2:10: alerts.email.server: \"smtp.example.com\" needs a port");
    check_one_error("[alerts.email]\nserver = \"smtp.example.com:99999\"\nfrom = \"s@example.com\"\nto = \"a@example.com\"\n" APP,
                    "t.toml:2:10: alerts.email.server: \"smtp.example.com:99999\" has an invalid port");
    check_one_error("[alerts.email]\nserver = \"a b:25\"\nfrom = \"s@example.com\"\nto = \"a@example.com\"\n" APP,
                    "t.toml:2:10: alerts.email.server: \"a b:25\" has an invalid host name");
    check_one_error(EMAIL_HEAD APP, "t.toml:1:1: alerts.email: to is required");
    check_one_error(EMAIL_HEAD "to = []\n" APP, "t.toml:4:6: alerts.email.to: needs 1 to 32 addresses, got 0");
    check_one_error(EMAIL_HEAD "to = [\"a@example.com\", \"not an address\"]\n" APP,
                    "t.toml:4:24: alerts.email.to: \"not an address\" is not an email address");
    check_one_error("[alerts.email]\nserver = \"smtp.example.com:587\"\nfrom = \"Sluice <s@example.com>\"\nto = \"a@example.com\"\n" APP,
                    "t.toml:3:8: alerts.email.from: \"Sluice <s@example.com>\" is not an email address");
    check_one_error(EMAIL_HEAD "to = \"a@example.com\"\nsecurity = \"ssl\"\n" APP,
                    "t.toml:5:12: alerts.email.security: unknown value \"ssl\" (expected one of: starttls, tls, none)");
    check_one_error(EMAIL_HEAD "to = \"a@example.com\"\npassword_env = \"SLUICE_UNIT_NOT_SET\"\n" APP,
                    "t.toml:5:16: alerts.email.password_env: the environment variable SLUICE_UNIT_NOT_SET is not set");
    check_one_error(EMAIL_HEAD "to = \"a@example.com\"\nusername = \"u\"\n" APP,
                    "t.toml:5:12: alerts.email: username is set without a password");
    check_one_error(EMAIL_HEAD "to = \"a@example.com\"\nusername = \"u\"\npassword_env = \"SLUICE_UNIT_SMTP_PASSWORD\"\n"
                    "password_file = \"/etc/hostname\"\n" APP,
                    "t.toml:7:17: alerts.email: set password_env or password_file, not both");
    check_one_error(EMAIL_HEAD "to = \"a@example.com\"\nca_file = \"/nonexistent/ca.pem\"\n" APP,
                    "t.toml:5:11: alerts.email.ca_file: cannot read \"/nonexistent/ca.pem\"");
    check_one_error(EMAIL_HEAD "to = \"a@example.com\"\npassword = \"hunter2\"\n" APP,
                    "t.toml:5:1: unknown key \"password\" in [alerts.email]");
    CHECK(strstr(errs, "hunter2") == NULL);
    check_one_error(EMAIL_HEAD "to = \"a@example.com\"\nusername = \"u\"\npassword_env = \"\"\n" APP,
                    "t.toml:6:16: alerts.email.password_env: is empty");
    unsetenv("SLUICE_UNIT_SMTP_PASSWORD");
#undef EMAIL_HEAD
}

/* [server.http2]: off by default, its keys and their bounds. */
static void test_http2(void)
{
    check_ok(APP);
    CHECK(!cfg.h2_cleartext);
    CHECK_INT(cfg.h2_max_streams, 100);
    config_free(&cfg);
    check_ok("[server.http2]\ncleartext = true\nmax_concurrent_streams = 8\n" APP);
    CHECK(cfg.h2_cleartext);
    CHECK_INT(cfg.h2_max_streams, 8);
    config_free(&cfg);
    check_one_error("[server.http2]\nmax_concurrent_streams = 0\n" APP, "t.toml:2:26: ");
    check_error("[server.http2]\nmax_concurrent_streams = 0\n" APP, "out of range");
    check_one_error("[server.http2]\ncleartext = \"yes\"\n" APP, "t.toml:2:13: ");
    check_one_error("[server.http2]\nprior_knowledge = true\n" APP, "t.toml:2:1: ");
}

void unit_test_config(void)
{
    char dir[] = "/tmp/sluice-config-XXXXXX";
    char cert[64], key[64];

    CHECK(mkdtemp(dir) != NULL);
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    write_file(cert, "not really a certificate\n");
    write_file(key, "not really a key\n");

    test_seed();
    test_defaults();
    test_full(dir);
    test_seed_spellings();
    test_error_positions();
    test_error_kinds();
    test_many_errors();
    test_syntax_error();
    test_load();
    test_durations();
    test_sizes();
    test_addresses();
    test_webhooks();
    test_email(dir);
    test_http2();

    unlink(cert);
    unlink(key);
    rmdir(dir);
}
