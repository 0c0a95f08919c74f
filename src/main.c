/* main.c - the command line, start-up, signals and the graceful stop.
 *
 * The main thread owns the config, the pool, the workers and the admin
 * server. After start-up it only waits for signals (sigwaitinfo: every
 * other thread has them blocked), so no handler ever runs in the middle of
 * a worker's request. The admin server asks for a reload with a signal of
 * its own (ADMIN_RELOAD_SIGNAL), so reloads stay on this thread.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "alert.h"
#include "config.h"
#include "ctl.h"
#include "dns.h"
#include "log.h"
#include "pool.h"
#include "resolver.h"
#include "tlsserver.h"
#include "testalert.h"
#include "version.h"
#include "worker.h"

#define ERRORS_MAX 16384
/* --test-alert: one try per target, each done within 10 s. */
#define TEST_ALERT_WAIT_MS 20000

struct options {
    const char *config_path;
    const char *listen;
    int workers;              /* -1: from the config */
    bool check;
    bool test_alert;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice [-c FILE] [--check] [--test-alert] [--listen ADDR] [--workers N] [--version] [--help]\n"
            "       sluice ctl [-c FILE] [--admin ADDR] [--token T] [--json] list | show NAME |\n"
            "                  drain NAME [--force] | enable NAME | reload | test-alert\n"
            "\n"
            "  -c, --config FILE  the configuration (default: applications.toml)\n"
            "  --check            validate the configuration and exit (0 ok, 1 errors)\n"
            "  --test-alert       send a test alert to every alert target and exit (0 all delivered)\n"
            "  --listen ADDR      listen on ADDR (e.g. 0.0.0.0:8080) instead of [server] listen\n"
            "  --workers N        worker threads (0 = one per CPU) instead of [server] workers\n"
            "  --version          print the version\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the configuration;\n"
            "SIGUSR1 reopens the access log file (after log rotation).\n"
            "`sluice ctl --help` describes the commands that talk to the admin API.\n");
}

/* Returns 0 to go on, or exit status + 1 to stop with. */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_CHECK = 256, OPT_LISTEN, OPT_WORKERS, OPT_VERSION, OPT_TEST_ALERT };
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'},  {"check", no_argument, NULL, OPT_CHECK},
        {"listen", required_argument, NULL, OPT_LISTEN}, {"workers", required_argument, NULL, OPT_WORKERS},
        {"version", no_argument, NULL, OPT_VERSION}, {"help", no_argument, NULL, 'h'},
        {"test-alert", no_argument, NULL, OPT_TEST_ALERT},
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
        case OPT_TEST_ALERT:
            o->test_alert = true;
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

static void log_lines(enum config_log_level level, const char *prefix, const char *text)
{
    while (*text) {
        const char *end = strchr(text, '\n');
        int len = end ? (int)(end - text) : (int)strlen(text);
        log_msg(level, "%s%.*s", prefix, len, text);
        text += len + (end != NULL);
    }
}

/* The command line's overrides, applied to every configuration loaded. */
static int apply_options(const struct options *o, struct config *cfg, char *errors, size_t errors_len)
{
    if (o->listen) {
        struct config_address address;
        if (config_parse_address(o->listen, &address) < 0) {
            snprintf(errors, errors_len, "sluice: --listen: '%s' is not an address like 0.0.0.0:8080\n",
                     o->listen);
            return -1;
        }
        cfg->listen[0] = address;
        cfg->listen_scheme[0] = LISTEN_DEFAULT;
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

/* Loads the file and applies the command line's overrides. Errors go into
 * errors as "FILE:LINE:COL: message" lines. */
static int load_config(const struct options *o, struct config *cfg, char *errors, size_t errors_len)
{
    errors[0] = '\0';
    if (config_load(cfg, o->config_path, errors, errors_len) != 0)
        return -1;
    if (cfg->warnings)
        log_lines(LOG_WARN, "", cfg->warnings);
    return apply_options(o, cfg, errors, errors_len);
}

/* One application per address of each host name: 0, or -1 with why in errors. */
static int expand_names(struct config *cfg, const struct dns_answers *answers, char *errors,
                        size_t errors_len)
{
    int rc = dns_expand(cfg, answers);
    if (rc < 0)
        snprintf(errors, errors_len, "%s: cannot make one application per address: %s\n",
                 cfg->path, rc == -E2BIG ? "more than 65535 applications" : strerror(-rc));
    return rc < 0 ? -1 : 0;
}

/* Host names resolved, blocking, and each made one application per
 * address. A name the DNS cannot answer now keeps its answer in previous
 * (NULL at start, where it is an error: better to refuse to start than to
 * serve without an application the file names). On success *answers is
 * the caller's. */
static int resolve_names(struct config *cfg, const struct dns_answers *previous,
                         struct dns_answers *answers, char *errors, size_t errors_len)
{
    if (resolver_resolve_now(cfg, previous, answers, errors, errors_len) != 0)
        return -1;
    if (expand_names(cfg, answers, errors, errors_len) < 0) {
        dns_answers_free(answers);
        return -1;
    }
    return 0;
}

/* The certificates of the HTTPS listeners, read and checked now: a bad
 * one is an error at start and under --check, and a refused reload. */
static int load_certificates(struct generation *g, char *errors, size_t errors_len)
{
    char warnings[2048];
    int n = tls_server_new(&g->tls, &g->cfg, errors, errors_len, warnings, sizeof(warnings));
    if (warnings[0])
        log_lines(LOG_WARN, "", warnings);
    return n ? -1 : 0;
}

/* Each connection through sluice takes two descriptors; the soft limit is
 * often 1024 while the hard one is far higher. Take what is allowed, as
 * HAProxy does, and say when max_connections still cannot fit. */
static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* One descriptor per client connection, and one more for each that has
     * a request in flight; below this even idle clients would not fit. */
    rlim_t need = (rlim_t)cfg->max_connections + (rlim_t)cfg->app_count + 64;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        log_warn("file descriptor limit %llu is below the %llu that max_connections = %d needs; "
                 "raise it (ulimit -n) or lower max_connections",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)need, cfg->max_connections);
}

/* Reloads whose alerts may still be in delivery; an older one is given the
 * usual short grace to make room. */
#define RETIRED_MAX 8
/* How long SIGTERM waits for alerts still in delivery. */
#define STOP_ALERT_GRACE_MS 3000

/* Owned by main: the generations still in use (the newest is published to
 * the workers; older ones are kept while a worker or their alert
 * dispatcher may use them) and the workers (which run the health checks). */
struct runtime {
    const struct options *options;
    struct generation *newest;
    struct generation *_Atomic published;
    _Atomic bool stop_requested;
    struct worker *workers;
    int worker_count;
    /* Held by this thread while it builds, publishes, retires or frees a
     * generation, and by the admin thread while it reads one; never by a
     * worker. */
    pthread_mutex_t generations_lock;
    struct admin *admin;       /* NULL when [admin] listen = "" */
    pthread_t main_thread;
    /* Keeps host names resolved; NULL when the config has none. */
    struct resolver *resolver;
    struct dns_answers answers; /* what the newest generation was built from */
};

/* The admin server's request for a reload: a real-time signal, queued and
 * taken by sigtimedwait like SIGHUP. */
#define ADMIN_RELOAD_SIGNAL (SIGRTMIN)

/* The resolver's news that a name's addresses changed: a real-time signal
 * too, so that the next generation is built on this thread. */
#define DNS_CHANGED_SIGNAL (SIGRTMIN + 1)

static void ask_dns_rebuild(void *arg)
{
    struct runtime *rt = arg;
    int rc = pthread_kill(rt->main_thread, DNS_CHANGED_SIGNAL);
    if (rc != 0)
        log_error("dns: cannot ask for the applications to be rebuilt: %s", strerror(rc));
}

static void start_resolver(struct runtime *rt)
{
    int rc = resolver_start(&rt->resolver, &rt->newest->cfg, &rt->answers, ask_dns_rebuild, rt);
    if (rc < 0)
        log_error("dns: cannot start the resolver thread (%s): host names are not resolved "
                  "again until a reload", strerror(-rc));
}

static void ask_reload(void *arg)
{
    struct runtime *rt = arg;
    int rc = pthread_kill(rt->main_thread, ADMIN_RELOAD_SIGNAL);
    if (rc != 0)
        log_error("admin: cannot ask for a reload: %s", strerror(rc));
}

static int start_admin(struct runtime *rt)
{
    const struct config *cfg = &rt->newest->cfg;
    if (!cfg->admin_enabled)
        return 0;
    struct admin_host host = {
        .published = &rt->published,
        .generations_lock = &rt->generations_lock,
        .workers = rt->workers,
        .worker_count = rt->worker_count,
        .ask_reload = ask_reload,
        .ask_reload_arg = rt,
    };
    char what[160];
    int rc = admin_start(&rt->admin, cfg, &host, what, sizeof(what));
    if (rc < 0)
        log_error("cannot %s: %s", what, strerror(-rc));
    return rc;
}

static struct generation *generation_new(void)
{
    struct generation *g = calloc(1, sizeof(*g));
    if (g) {
        g->pool.notify_read_fd = -1;
        g->pool.notify_write_fd = -1;
    }
    return g;
}

static void generation_free(struct generation *g)
{
    tls_server_release(g->tls);
    pool_free(&g->pool);
    config_free(&g->cfg);
    free(g);
}

static void generations_free(struct generation *g)
{
    while (g) {
        struct generation *older = g->previous;
        generation_free(g);
        g = older;
    }
}

/* Frees the old generations that no worker holds (worker.c gives up its
 * share once none of its connections points into one) and whose alert
 * dispatcher has been stopped, so that reloads do not add up. */
static void free_unused_generations(struct runtime *rt)
{
    struct generation **link = &rt->newest->previous;
    while (*link) {
        struct generation *g = *link;
        if (atomic_load(&g->holders) == 0 && !g->alert) {
            *link = g->previous;
            generation_free(g);
        } else {
            link = &g->previous;
        }
    }
}

static int start(struct runtime *rt)
{
    struct generation *g = rt->newest;
    const struct config *cfg = &g->cfg;
    int rc = pool_init(&g->pool, cfg);
    if (rc < 0) {
        log_error("cannot set up the applications: %s", strerror(-rc));
        return -1;
    }
    atomic_store(&g->holders, cfg->workers);
    atomic_store(&rt->published, g);
    rt->workers = calloc((size_t)cfg->workers, sizeof(*rt->workers));
    if (!rt->workers)
        return -1;
    if ((rc = alert_start(&g->alert, &g->pool, cfg)) < 0) {
        log_error("cannot start the alert dispatcher: %s", strerror(-rc));
        return -1;
    }
    int per_worker = cfg->max_connections / cfg->workers;
    for (int i = 0; i < cfg->workers; i++) {
        char what[160];
        rc = worker_init(&rt->workers[i], i, cfg->workers, &rt->published, &rt->stop_requested, what,
                         sizeof(what));
        rt->worker_count = i + 1;
        if (rc < 0) {
            log_error("cannot %s: %s", what, strerror(-rc));
            return -1;
        }
        rt->workers[i].client_limit = per_worker > 0 ? per_worker : 1;
    }
    /* Before the workers serve: an admin port in use stops the start. */
    if (start_admin(rt) < 0)
        return -1;
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

static void wake_workers(struct runtime *rt)
{
    for (int i = 0; i < rt->worker_count; i++)
        if (rt->workers[i].thread_started)
            worker_wake(&rt->workers[i]);
}

/* Stops the alert dispatchers of old generations (retired): those done
 * (grace_ms < 0), or all of them, sharing one grace. */
static void stop_retired(struct runtime *rt, int64_t grace_ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (struct generation *g = rt->newest->previous; g; g = g->previous) {
        if (!g->alert || (grace_ms < 0 && !alert_finished(g->alert)))
            continue;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t spent = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        alert_stop(g->alert, grace_ms > spent ? grace_ms - spent : 0);
        g->alert = NULL;
    }
}

/* Makes room for one more retired dispatcher: past RETIRED_MAX the oldest
 * is given the usual short grace. */
static void limit_retired(struct runtime *rt)
{
    struct generation *oldest = NULL;
    int count = 0;
    for (struct generation *g = rt->newest->previous; g; g = g->previous)
        if (g->alert) {
            oldest = g;
            count++;
        }
    if (count >= RETIRED_MAX) {
        alert_stop(oldest->alert, STOP_ALERT_GRACE_MS);
        oldest->alert = NULL;
    }
}

static void stop(struct runtime *rt)
{
    resolver_stop(rt->resolver);
    rt->resolver = NULL;
    dns_answers_free(&rt->answers);
    /* First: it reads the generations and wakes the workers. */
    admin_stop(rt->admin);
    rt->admin = NULL;
    atomic_store(&rt->stop_requested, true);
    wake_workers(rt);
    for (int i = 0; i < rt->worker_count; i++)
        if (rt->workers[i].thread_started)
            worker_join(&rt->workers[i]);
    /* One grace for every alert thread, counted from here. */
    for (struct generation *g = rt->newest->previous; g; g = g->previous)
        if (g->alert)
            alert_begin_stop(g->alert, STOP_ALERT_GRACE_MS);
    /* After the workers: their last transitions are in the pipe by now. */
    if (rt->newest->alert)
        alert_stop(rt->newest->alert, STOP_ALERT_GRACE_MS);
    rt->newest->alert = NULL;
    stop_retired(rt, STOP_ALERT_GRACE_MS);
    for (int i = 0; i < rt->worker_count; i++)
        worker_free(&rt->workers[i]);
    free(rt->workers);
    generations_free(rt->newest);
}

static void announce(const struct runtime *rt)
{
    const struct generation *g = rt->newest;
    char where[CONFIG_MAX_LISTEN * 84] = "";
    for (int i = 0; i < g->cfg.listen_count; i++) {
        strcat(where, i ? ", " : "");
        strcat(where, g->cfg.listen[i].text);
    }
    log_info("sluice %s listening on %s (%s mode, %d workers, %d applications, %d up)", SLUICE_VERSION,
             where, g->cfg.mode == MODE_PROXY ? "proxy" : "redirect", rt->worker_count,
             g->pool.count, pool_up_count(&g->pool));
}

/* ---- reload (SIGHUP) ---- */


/* An application that keeps its name, address and protocol keeps its state
 * and counters, so a reload neither revives a dead one nor loses its
 * history. (What requests count is the workers' own, carried over by name
 * when each adopts the new pool: counters.h.) */
static void carry_over_state(struct pool *to, const struct pool *from)
{
    for (int i = 0; i < to->count; i++) {
        struct app *a = &to->apps[i];
        for (int j = 0; j < from->count; j++) {
            const struct app *old = &from->apps[j];
            if (strcmp(a->cfg->name, old->cfg->name) != 0 ||
                strcmp(a->cfg->address.text, old->cfg->address.text) != 0 || a->cfg->tls != old->cfg->tls)
                continue;
            atomic_store(&a->state, (uint32_t)app_state(old));
            for (int s = 0; s < APP_STATE_COUNT; s++)
                atomic_store(&a->transitions[s], atomic_load(&old->transitions[s]));
            atomic_store(&a->state_since_ms, atomic_load(&old->state_since_ms));
            atomic_store(&a->last_check_time_ms, atomic_load(&old->last_check_time_ms));
            atomic_store(&a->last_check_ok, atomic_load(&old->last_check_ok));
            atomic_store(&a->last_check_duration_us, atomic_load(&old->last_check_duration_us));
            atomic_store(&a->last_check_status, atomic_load(&old->last_check_status));
            /* An enable whose check no worker has started yet. */
            if (atomic_load(&old->check_requested))
                pool_request_check(to, a);
            break;
        }
    }
}

/* What a reload cannot change in a running process: said, not hidden. */
static void keep_fixed_settings(struct config *next, const struct config *now)
{
    bool same_listen = next->listen_count == now->listen_count;
    for (int i = 0; same_listen && i < now->listen_count; i++)
        same_listen = strcmp(next->listen[i].text, now->listen[i].text) == 0 &&
                      config_listen_is_tls(next, i) == config_listen_is_tls(now, i);
    if (!same_listen)
        log_warn("reload: [server] listen changed; the listeners change only on restart");
    if (next->workers != now->workers)
        log_warn("reload: [server] workers changed; the worker count changes only on restart");
    if (next->admin_enabled != now->admin_enabled ||
        (now->admin_enabled && strcmp(next->admin_listen.text, now->admin_listen.text) != 0))
        log_warn("reload: [admin] listen changed; the admin address changes only on restart");
    if (strcmp(next->log_access, now->log_access) != 0 || next->log_format != now->log_format ||
        next->log_level != now->log_level)
        log_warn("reload: [log] changed; log settings change only on restart");
    next->listen_count = now->listen_count;
    memcpy(next->listen, now->listen, sizeof(next->listen));
    /* Which listeners speak TLS is fixed with them, whatever [server.tls]
     * now says. */
    for (int i = 0; i < now->listen_count; i++)
        next->listen_scheme[i] = config_listen_is_tls(now, i) ? LISTEN_HTTPS : LISTEN_HTTP;
    next->workers = now->workers;
    next->admin_enabled = now->admin_enabled;
    next->admin_listen = now->admin_listen;
}

/* Once every worker serves a newer generation, nobody reports to the old
 * pool's transition pipe: close it, so that its alert dispatcher can end.
 * The pool itself stays while requests in flight may still read its
 * applications (free_unused_generations). */
static void retire(struct runtime *rt, struct generation *old)
{
    for (int waited_ms = 0; waited_ms < 2000; waited_ms += 10) {
        bool adopted = true;
        for (int i = 0; i < rt->worker_count; i++)
            adopted &= atomic_load(&rt->workers[i].generation) != old;
        if (adopted) {
            pool_close_writer(&old->pool);
            return;
        }
        usleep(10000);
    }
    log_warn("reload: a worker has not adopted the new configuration yet");
}

/* What a reloaded config asks of HTTPS that the running listeners (fixed
 * at start) cannot give; NULL when nothing. */
static const char *https_conflict(const struct generation *next)
{
    bool https = config_https_port(&next->cfg) != 0;
    if (https && !next->tls)
        return "[server.tls] is gone but sluice listens for HTTPS";
    if (!https && next->cfg.redirect_https)
        return "redirect_https needs an HTTPS listener, and sluice has none";
    return NULL;
}

/* Publishes next (its cfg loaded) and retires the newest: 0, or -1 with
 * what went wrong in errors, next freed, while the previous generation
 * keeps serving. Called with the generations lock held. */
static int publish_generation(struct runtime *rt, struct generation *next, char *errors, size_t errors_len)
{
    struct generation *now = rt->newest;
    keep_fixed_settings(&next->cfg, &now->cfg);
    if (load_certificates(next, errors, errors_len) < 0) {
        generations_free(next);
        return -1;
    }
    const char *unservable = https_conflict(next);
    if (unservable) {
        snprintf(errors, errors_len, "%s: %s; the listeners change only on restart\n", next->cfg.path, unservable);
        generations_free(next);
        return -1;
    }
    int rc = pool_init(&next->pool, &next->cfg);
    if (rc < 0) {
        snprintf(errors, errors_len, "cannot set up the applications: %s\n", strerror(-rc));
        generations_free(next);
        return -1;
    }
    /* A state that changes in the old pool after this copy (a worker not
     * yet on the new generation, checking or marking down) is seen again
     * by the new pool's own checks within rise or fall rounds. The admin
     * API changes states under the generations lock, so none of its
     * changes falls between this copy and the publication. */
    carry_over_state(&next->pool, &now->pool);
    next->pool.outage_at_start = pool_up_count(&now->pool) == 0;
    if ((rc = alert_start(&next->alert, &next->pool, &next->cfg)) < 0) {
        snprintf(errors, errors_len, "cannot start the alert dispatcher for the new configuration: %s\n",
                 strerror(-rc));
        generations_free(next);
        return -1;
    }
    /* The old dispatcher goes on delivering what it holds (alert_retire):
     * the reload neither waits for those alerts nor drops them. */
    stop_retired(rt, -1);
    limit_retired(rt);
    alert_retire(now->alert);
    atomic_store(&next->holders, rt->worker_count);
    next->previous = now;
    rt->newest = next;
    atomic_store(&rt->published, next);
    wake_workers(rt);
    retire(rt, now);
    return 0;
}

/* The next generation from the file, its names resolved: NULL with what
 * went wrong in errors ("FILE:LINE:COL: message" lines). Called without
 * the generations lock: resolving may wait seconds on a slow DNS server,
 * and the admin thread must not wait that long to answer. rt->answers is
 * this thread's alone. */
static struct generation *load_generation(struct runtime *rt, struct dns_answers *answers, char *errors,
                                          size_t errors_len)
{
    struct generation *next = generation_new();
    if (!next) {
        snprintf(errors, errors_len, "out of memory\n");
        return NULL;
    }
    if (load_config(rt->options, &next->cfg, errors, errors_len) < 0 ||
        resolve_names(&next->cfg, &rt->answers, answers, errors, errors_len) < 0) {
        generations_free(next);
        return NULL;
    }
    return next;
}

/* Publishes next (from load_generation) and retires the newest: 0, or -1
 * with what went wrong in errors while the previous generation keeps
 * serving. Called with the generations lock held. */
static int reload_generation(struct runtime *rt, struct generation *next, struct dns_answers answers,
                             char *errors, size_t errors_len)
{
    if (publish_generation(rt, next, errors, errors_len) < 0) {
        dns_answers_free(&answers);
        return -1;
    }
    /* The names may have changed with the file: a resolver for these. */
    resolver_stop(rt->resolver);
    rt->resolver = NULL;
    dns_answers_free(&rt->answers);
    rt->answers = answers;
    start_resolver(rt);
    return 0;
}

/* SIGHUP, or the admin API (from_api: it waits for the answer). */
static void reload(struct runtime *rt, bool from_api)
{
    static char errors[ERRORS_MAX];
    errors[0] = '\0';
    struct dns_answers answers = {0};
    struct generation *next = load_generation(rt, &answers, errors, sizeof(errors));
    pthread_mutex_lock(&rt->generations_lock);
    struct generation *before = rt->newest;
    if (!next || reload_generation(rt, next, answers, errors, sizeof(errors)) < 0) {
        pthread_mutex_unlock(&rt->generations_lock);
        log_lines(LOG_ERROR, "reload: ", errors);
        log_error("reload: %s has errors; still serving the previous configuration", rt->options->config_path);
        if (from_api && rt->admin)
            admin_reload_done(rt->admin, NULL, NULL, errors);
        return;
    }
    if (from_api && rt->admin)
        admin_reload_done(rt->admin, &before->cfg, &rt->newest->cfg, NULL);
    free_unused_generations(rt);
    log_info("reload: %s loaded: %d applications, %d up", rt->options->config_path, rt->newest->pool.count,
             pool_up_count(&rt->newest->pool));
    pthread_mutex_unlock(&rt->generations_lock);
}

/* The same settings as the newest generation, from the same text, with
 * fresh addresses: 0, or -1 with errors written and next's cfg empty. */
static int rebuild_config(struct runtime *rt, struct config *next, const struct dns_answers *answers,
                          char *errors, size_t errors_len)
{
    const struct config *now = &rt->newest->cfg;
    if (config_parse(next, now->path, now->source, now->source_len, errors, errors_len) != 0)
        return -1;
    if (apply_options(rt->options, next, errors, errors_len) < 0 ||
        expand_names(next, answers, errors, errors_len) < 0) {
        config_free(next);
        return -1;
    }
    return 0;
}

/* A name's addresses changed: the next generation is the newest one's
 * settings with the new addresses, through the reload path, so that the
 * applications of unchanged addresses keep their state, counters and
 * pooled connections and those of vanished ones drain. */
static void rebuild_from_dns(struct runtime *rt)
{
    static char errors[ERRORS_MAX];
    struct dns_answers fresh;
    if (!rt->resolver || resolver_answers(rt->resolver, &fresh) < 0)
        return;
    pthread_mutex_lock(&rt->generations_lock);
    struct generation *next = NULL;
    int rc = -1;
    errors[0] = '\0';
    if (dns_answers_equal(&fresh, &rt->answers)) {
        rc = 0;         /* already built: signals of one change may queue up */
    } else if ((next = generation_new()) && rebuild_config(rt, &next->cfg, &fresh, errors, sizeof(errors)) == 0) {
        rc = publish_generation(rt, next, errors, sizeof(errors));
        next = NULL;    /* published, or freed by publish_generation */
        if (rc == 0) {
            dns_answers_free(&rt->answers);
            rt->answers = fresh;
            fresh = (struct dns_answers){0};
            free_unused_generations(rt);
            log_info("dns: now %d applications, %d up", rt->newest->pool.count,
                     pool_up_count(&rt->newest->pool));
        }
    }
    pthread_mutex_unlock(&rt->generations_lock);
    if (next)
        generations_free(next);
    dns_answers_free(&fresh);
    if (rc < 0) {
        log_lines(LOG_ERROR, "dns: ", errors[0] ? errors : "out of memory\n");
        log_error("dns: the addresses changed but the applications could not be rebuilt; "
                  "still serving the previous ones");
    }
}

static bool served_by_a_worker(const struct runtime *rt, const struct generation *g)
{
    for (int i = 0; i < rt->worker_count; i++)
        if (atomic_load(&rt->workers[i].generation) == g)
            return true;
    return false;
}

/* Once a second while serving: an old pool every worker has left (reload
 * waits 2 s for that; a worker busy longer is caught here) gets its pipe's
 * writing end closed, so its retired alert thread can end; alert threads
 * that have ended are reaped with their descriptors, and generations
 * nothing uses any more are freed. */
static void housekeeping(struct runtime *rt)
{
    pthread_mutex_lock(&rt->generations_lock);
    for (struct generation *g = rt->newest->previous; g; g = g->previous)
        if (g->pool.notify_write_fd >= 0 && !served_by_a_worker(rt, g))
            pool_close_writer(&g->pool);
    stop_retired(rt, -1);
    free_unused_generations(rt);
    pthread_mutex_unlock(&rt->generations_lock);
}

/* SIGUSR1, for log rotation: the file was renamed; write to a new one. */
static void reopen_access_log(void)
{
    const char *path;
    int rc = log_reopen_access(&path);
    if (rc < 0)
        log_error("received SIGUSR1: cannot reopen the access log %s (%s); still writing to the "
                  "old file", path, strerror(-rc));
    else if (rc > 0)
        log_info("received SIGUSR1: the access log is not a file, nothing to reopen");
    else
        log_info("received SIGUSR1: reopened the access log %s", path);
}

static void serve_until_stop(struct runtime *rt, sigset_t *signals)
{
    const struct timespec second = {.tv_sec = 1};
    int64_t next_housekeeping = loop_monotonic_ms() + 1000;
    for (;;) {
        int sig = sigtimedwait(signals, NULL, &second);
        /* By the clock, not by quiet seconds: signals arriving faster than
         * once a second must not put it off. */
        if (loop_monotonic_ms() >= next_housekeeping) {
            housekeeping(rt);
            next_housekeeping = loop_monotonic_ms() + 1000;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("received %s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return;
        }
        if (sig == SIGHUP) {
            log_info("received SIGHUP: reloading %s", rt->options->config_path);
            reload(rt, false);
        }
        if (sig == ADMIN_RELOAD_SIGNAL) {
            log_info("admin API: reloading %s", rt->options->config_path);
            reload(rt, true);
        }
        if (sig == SIGUSR1)
            reopen_access_log();
        if (sig == DNS_CHANGED_SIGNAL)
            rebuild_from_dns(rt);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "ctl") == 0)
        return ctl_main(argc - 1, argv + 1);
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc - 1;
    static char errors[ERRORS_MAX];
    struct runtime rt = {.options = &o, .newest = generation_new(), .main_thread = pthread_self(),
                         .generations_lock = PTHREAD_MUTEX_INITIALIZER};
    if (!rt.newest)
        return 1;
    struct config *cfg = &rt.newest->cfg;
    if (load_config(&o, cfg, errors, sizeof(errors)) < 0 ||
        resolve_names(cfg, NULL, &rt.answers, errors, sizeof(errors)) < 0) {
        fputs(errors, stderr);
        generations_free(rt.newest);
        return 1;
    }
    if (load_certificates(rt.newest, errors, sizeof(errors)) < 0) {
        fputs(errors, stderr);
        dns_answers_free(&rt.answers);
        generations_free(rt.newest);
        return 1;
    }
    if (o.check) {
        printf("config ok\n");
        dns_answers_free(&rt.answers);
        generations_free(rt.newest);
        return 0;
    }
    if (o.test_alert) {
        signal(SIGPIPE, SIG_IGN);
        rc = test_alert_run(cfg, stdout, TEST_ALERT_WAIT_MS);
        dns_answers_free(&rt.answers);
        generations_free(rt.newest);
        return rc;
    }
    if ((rc = log_init(cfg)) < 0) {
        fprintf(stderr, "sluice: cannot open access log %s: %s\n", cfg->log_access, strerror(-rc));
        dns_answers_free(&rt.answers);
        generations_free(rt.newest);
        return 1;
    }
    /* Block the signals in every thread; the main thread takes them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, ADMIN_RELOAD_SIGNAL);
    sigaddset(&signals, DNS_CHANGED_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    raise_fd_limit(cfg);
    int status = 0;
    if (start(&rt) < 0) {
        status = 1;
    } else {
        announce(&rt);
        start_resolver(&rt);
        if (cfg->cache_enabled)
            log_warn("[cache] is enabled but the cache is not available in this version: "
                     "every request goes to an application");
        serve_until_stop(&rt, &signals);
    }
    stop(&rt);
    if (status == 0)
        log_info("stopped");
    return status;
}
