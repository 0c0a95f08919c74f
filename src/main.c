/* main.c - the command line, start-up, signals and the graceful stop.
 *
 * The main thread owns the config, the pool, the workers and the health
 * thread. After start-up it only waits for signals (sigwaitinfo: every
 * other thread has them blocked), so no handler ever runs in the middle of
 * a worker's request.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "health.h"
#include "log.h"
#include "pool.h"
#include "worker.h"

#define SLUICE_VERSION "0.1.0"
#define ERRORS_MAX 16384

struct options {
    const char *config_path;
    const char *listen;
    int workers;              /* -1: from the config */
    bool check;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice [-c FILE] [--check] [--listen ADDR] [--workers N] [--version] [--help]\n"
            "\n"
            "  -c, --config FILE  the configuration (default: applications.toml)\n"
            "  --check            validate the configuration and exit (0 ok, 1 errors)\n"
            "  --listen ADDR      listen on ADDR (e.g. 0.0.0.0:8080) instead of [server] listen\n"
            "  --workers N        worker threads (0 = one per CPU) instead of [server] workers\n"
            "  --version          print the version\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop gracefully; SIGHUP is logged (reload: see docs).\n");
}

/* Returns 0 to go on, or exit status + 1 to stop with. */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_CHECK = 256, OPT_LISTEN, OPT_WORKERS, OPT_VERSION };
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'},  {"check", no_argument, NULL, OPT_CHECK},
        {"listen", required_argument, NULL, OPT_LISTEN}, {"workers", required_argument, NULL, OPT_WORKERS},
        {"version", no_argument, NULL, OPT_VERSION}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.config_path = "applications.toml", .workers = -1};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
        char *end;
        switch (opt) {
        case 'c':
            o->config_path = optarg;
            break;
        case OPT_CHECK:
            o->check = true;
            break;
        case OPT_LISTEN:
            o->listen = optarg;
            break;
        case OPT_WORKERS:
            errno = 0;
            o->workers = (int)strtol(optarg, &end, 10);
            if (errno || *end || o->workers < 0 || o->workers > 1024) {
                fprintf(stderr, "sluice: --workers takes a number from 0 to 1024\n");
                return 3;
            }
            break;
        case OPT_VERSION:
            printf("sluice %s\n", SLUICE_VERSION);
            return 1;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 3;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 3;
    }
    return 0;
}

static int load_config(const struct options *o, struct config *cfg)
{
    char errors[ERRORS_MAX];
    if (config_load(cfg, o->config_path, errors, sizeof(errors)) != 0) {
        fputs(errors, stderr);
        return -1;
    }
    if (o->listen) {
        struct config_address address;
        if (config_parse_address(o->listen, &address) < 0) {
            fprintf(stderr, "sluice: --listen: '%s' is not an address like 0.0.0.0:8080\n", o->listen);
            return -1;
        }
        cfg->listen[0] = address;
        cfg->listen_count = 1;
    }
    if (o->workers >= 0)
        cfg->workers = o->workers;
    if (cfg->workers == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = cpus > 0 ? (int)cpus : 1;
    }
    return 0;
}

struct runtime {
    struct config cfg;
    struct pool pool;
    struct worker *workers;
    int worker_count;
    struct health *health;
};

static int start(struct runtime *rt)
{
    const struct config *cfg = &rt->cfg;
    int rc = pool_init(&rt->pool, cfg);
    if (rc < 0) {
        log_error("cannot set up the applications: %s", strerror(-rc));
        return -1;
    }
    rt->workers = calloc((size_t)cfg->workers, sizeof(*rt->workers));
    if (!rt->workers)
        return -1;
    int per_worker = cfg->max_connections / cfg->workers;
    for (int i = 0; i < cfg->workers; i++) {
        const char *what;
        rc = worker_init(&rt->workers[i], i, cfg, &rt->pool, &what);
        rt->worker_count = i + 1;
        if (rc < 0) {
            log_error("cannot listen on %s: %s", what ? what : "-", strerror(-rc));
            return -1;
        }
        rt->workers[i].client_limit = per_worker > 0 ? per_worker : 1;
    }
    if ((rc = health_start(&rt->health, &rt->pool, cfg)) < 0) {
        log_error("cannot start health checks: %s", strerror(-rc));
        return -1;
    }
    for (int i = 0; i < rt->worker_count; i++) {
        if ((rc = worker_start(&rt->workers[i])) < 0) {
            log_error("cannot start worker %d: %s", i, strerror(-rc));
            rt->worker_count = i;
            return -1;
        }
        rt->workers[i].thread_started = true;
    }
    return 0;
}

static void stop(struct runtime *rt)
{
    for (int i = 0; i < rt->worker_count; i++)
        if (rt->workers[i].thread_started)
            worker_request_stop(&rt->workers[i]);
    for (int i = 0; i < rt->worker_count; i++)
        if (rt->workers[i].thread_started)
            worker_join(&rt->workers[i]);
    health_stop(rt->health);
    for (int i = 0; i < rt->worker_count; i++)
        worker_free(&rt->workers[i]);
    free(rt->workers);
    pool_free(&rt->pool);
}

static void announce(const struct runtime *rt)
{
    char where[CONFIG_MAX_LISTEN * 84] = "";
    for (int i = 0; i < rt->cfg.listen_count; i++) {
        strcat(where, i ? ", " : "");
        strcat(where, rt->cfg.listen[i].text);
    }
    log_info("sluice %s listening on %s (%s mode, %d workers, %d applications, %d up)", SLUICE_VERSION,
             where, rt->cfg.mode == MODE_PROXY ? "proxy" : "redirect", rt->worker_count,
             rt->pool.count, pool_up_count(&rt->pool));
}

static int wait_for_stop(sigset_t *signals)
{
    for (;;) {
        int sig = sigwaitinfo(signals, NULL);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("received %s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return 0;
        }
        if (sig == SIGHUP)
            log_warn("received SIGHUP: configuration reload is not available yet; restart to apply changes");
    }
}

int main(int argc, char **argv)
{
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc - 1;
    struct runtime rt = {0};
    if (load_config(&o, &rt.cfg) < 0) {
        config_free(&rt.cfg);
        return 1;
    }
    /* Accepted by the config (SPEC section 2) but not served yet: refuse
     * rather than listen in plain text where TLS was asked for. */
    if (rt.cfg.tls_cert) {
        fprintf(stderr, "%s: [server.tls]: TLS termination on the listener is not available in "
                        "this version; remove the table or terminate TLS in front of sluice\n",
                rt.cfg.path);
        config_free(&rt.cfg);
        return 1;
    }
    if (o.check) {
        printf("config ok\n");
        config_free(&rt.cfg);
        return 0;
    }
    if ((rc = log_init(&rt.cfg)) < 0) {
        fprintf(stderr, "sluice: cannot open access log %s: %s\n", rt.cfg.log_access, strerror(-rc));
        config_free(&rt.cfg);
        return 1;
    }
    /* Block the signals in every thread; the main thread takes them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = 0;
    if (start(&rt) < 0) {
        status = 1;
    } else {
        announce(&rt);
        if (rt.cfg.cache_enabled)
            log_warn("[cache] is enabled but the cache is not available in this version: "
                     "every request goes to an application");
        wait_for_stop(&signals);
    }
    stop(&rt);
    if (status == 0)
        log_info("stopped");
    config_free(&rt.cfg);
    return status;
}
