/* test_admin.c - the admin API's pure parts: routes from request targets,
 * the token comparison, an application and a reload as JSON (escaped),
 * pool_finish_drain, and the JSON reader of `sluice ctl`. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "alert.h"
#include "config.h"
#include "ctl.h"
#include "pool.h"
#include "unit.h"

static enum admin_route route_of(const char *target, struct admin_target *t)
{
    return admin_parse_target(target, strlen(target), t);
}

static void test_routes(void)
{
    struct admin_target t;
    CHECK_INT(route_of("/", &t), ADMIN_INDEX);
    CHECK_INT(route_of("/metrics", &t), ADMIN_METRICS);
    CHECK_INT(route_of("/api/applications", &t), ADMIN_APPS);
    CHECK_INT(route_of("/api/applications?x=1", &t), ADMIN_APPS);
    CHECK_INT(route_of("/api/reload", &t), ADMIN_RELOAD);
    CHECK_INT(route_of("/api/alerts/test", &t), ADMIN_TEST_ALERT);
    CHECK_INT(route_of("/api/alerts", &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/api/applications/api-1", &t), ADMIN_APP);
    CHECK_STR(t.name, "api-1");
    CHECK_INT(route_of("/api/applications/api-1/drain", &t), ADMIN_DRAIN);
    CHECK(!t.force);
    CHECK_INT(route_of("/api/applications/api-1/drain?force=1", &t), ADMIN_DRAIN);
    CHECK(t.force);
    CHECK_INT(route_of("/api/applications/api-1/drain?a=b&force=true", &t), ADMIN_DRAIN);
    CHECK(t.force);
    CHECK_INT(route_of("/api/applications/api-1/drain?force=0", &t), ADMIN_DRAIN);
    CHECK(!t.force);
    CHECK_INT(route_of("/api/applications/127.0.0.1:8001/enable", &t), ADMIN_ENABLE);
    CHECK_STR(t.name, "127.0.0.1:8001");
    /* Percent-encoded names, as `sluice ctl` sends them. */
    CHECK_INT(route_of("/api/applications/%5B%3A%3A1%5D%3A8001", &t), ADMIN_APP);
    CHECK_STR(t.name, "[::1]:8001");
    /* Nothing else. */
    CHECK_INT(route_of("/api/applications/", &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/api/applications/a/", &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/api/applications/a/stop", &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/api/applications/a/drain/x", &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/api/applications/%2Fetc", &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/api/applications/%00", &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/api/applications/%4", &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/api/applications/%zz", &t), ADMIN_NOT_FOUND);
    char long_name[200] = "/api/applications/";
    memset(long_name + strlen(long_name), 'a', 100);
    CHECK_INT(route_of(long_name, &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/api", &t), ADMIN_NOT_FOUND);
    CHECK_INT(route_of("/metrics/", &t), ADMIN_NOT_FOUND);
    CHECK(admin_route_mutates(ADMIN_DRAIN) && admin_route_mutates(ADMIN_ENABLE) &&
          admin_route_mutates(ADMIN_RELOAD) && admin_route_mutates(ADMIN_TEST_ALERT));
    CHECK(!admin_route_mutates(ADMIN_APPS) && !admin_route_mutates(ADMIN_APP) &&
          !admin_route_mutates(ADMIN_METRICS) && !admin_route_mutates(ADMIN_INDEX));
}

static bool token_ok(const char *token, const char *header)
{
    return admin_token_matches(token, header, strlen(header));
}

static void test_token(void)
{
    CHECK(token_ok("s3cret", "Bearer s3cret"));
    CHECK(token_ok("s3cret", "bearer s3cret"));
    CHECK(!token_ok("s3cret", "Bearer s3cre"));
    CHECK(!token_ok("s3cret", "Bearer s3crett"));
    CHECK(!token_ok("s3cret", "Bearer S3cret"));
    CHECK(!token_ok("s3cret", "Bearer "));
    CHECK(!token_ok("s3cret", "Basic s3cret"));
    CHECK(!token_ok("s3cret", "s3cret"));
    /* A token that repeats must not match its own prefix repeated. */
    CHECK(!token_ok("ab", "Bearer abab"));
    /* No token configured never matches (the caller lets everything in). */
    CHECK(!token_ok("", "Bearer "));
    /* The header may hold bytes after the value's end: only len counts. */
    CHECK(admin_token_matches("abc", "Bearer abcdef", 10));
}

#define TWO_APPS                                                                  \
    "[[applications]]\nname = \"a\"\nip = \"127.0.0.1\"\nport = 1\n"               \
    "[[applications]]\nname = \"b\"\nip = \"127.0.0.1\"\nport = 2\nweight = 2\n"

static int parse(struct config *cfg, const char *text)
{
    char errors[2048] = "";
    int rc = config_parse(cfg, "test.toml", text, strlen(text), errors, sizeof(errors));
    CHECK_MSG(rc == 0, "config: %s", errors);
    return rc;
}

static void test_app_json(void)
{
    struct config cfg;
    struct pool pool;
    if (parse(&cfg, TWO_APPS) != 0)
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    struct app *b = pool_find(&pool, "b");
    CHECK(b == &pool.apps[1]);
    CHECK(pool_find(&pool, "c") == NULL);
    atomic_store(&b->state_since_ms, 1000);
    struct metrics_app_totals totals = {.requests = 7, .failures = {[COUNTERS_FAIL_RESET] = 2},
                                        .buckets = {[0] = 3, [2] = 1, [COUNTERS_BOUNDS] = 4}, .sum_us = 12500};
    char *json = admin_app_json(b, &totals, 3500);
    CHECK(json && strstr(json, "{\"name\":\"b\",\"address\":\"127.0.0.1:2\",\"state\":\"up\","
                               "\"state_seconds\":2.5,\"state_since\":\"1970-01-01T00:00:01.000Z\""));
    CHECK(json && strstr(json, "\"weight\":2,"));
    CHECK(json && strstr(json, "\"requests\":7,"));
    CHECK(json && strstr(json, "\"failures\":2,\"failures_by_kind\":{\"connect\":0,\"timeout\":0,\"reset\":2,"));
    CHECK(json && strstr(json, "\"last_check\":null}"));
    CHECK(json && strstr(json, "\"response_time_buckets\":{\"le_ms\":[1,2.5,5,10,25,50,100,250,500,1000,2500,"
                               "5000,10000],\"counts\":[3,0,1,0,0,0,0,0,0,0,0,0,0,4],\"sum_ms\":12.500},"));
    struct ctl_json *doc = json ? ctl_json_parse(json) : NULL;
    CHECK(doc && doc->type == CTL_JSON_OBJECT);
    ctl_json_free(doc);
    free(json);

    /* Names are restricted by the config, but the JSON stands on its own. */
    struct config_app odd = *b->cfg;
    snprintf(odd.name, sizeof(odd.name), "a\"b\\c\n");
    struct app copy = {.cfg = &odd};
    atomic_store(&copy.last_check_time_ms, 2000);
    atomic_store(&copy.last_check_ok, 1);
    atomic_store(&copy.last_check_status, 204);
    json = admin_app_json(&copy, &(struct metrics_app_totals){0}, 3000);
    CHECK(json && strstr(json, "\"name\":\"a\\\"b\\\\c\\n\""));
    atomic_store(&copy.last_check_duration_us, 1500);
    free(json);
    json = admin_app_json(&copy, &(struct metrics_app_totals){0}, 3000);
    CHECK(json && strstr(json, "\"last_check\":{\"ok\":true,\"status\":204,\"duration_ms\":1.500,"
                               "\"time\":\"1970-01-01T00:00:02.000Z\"}"));
    doc = json ? ctl_json_parse(json) : NULL;
    const struct ctl_json *name = ctl_json_get(doc, "name");
    CHECK(name && name->type == CTL_JSON_STRING && strcmp(name->string, "a\"b\\c\n") == 0);
    ctl_json_free(doc);
    free(json);
    pool_free(&pool);
    config_free(&cfg);
}

static void test_finish_drain(void)
{
    struct config cfg;
    struct pool pool;
    if (parse(&cfg, TWO_APPS) != 0)
        return;
    CHECK_INT(pool_init(&pool, &cfg), 0);
    struct app *a = &pool.apps[0];
    pool_finish_drain(&pool, a);
    CHECK_INT(app_state(a), APP_UP);                 /* not draining: nothing to end */
    CHECK(pool_set_state(&pool, a, APP_UP, APP_DRAINING, "operator: drain"));
    atomic_store(&a->active, 1);
    pool_finish_drain(&pool, a);
    CHECK_INT(app_state(a), APP_DRAINING);           /* a request is in flight */
    atomic_store(&a->active, 0);
    pool_finish_drain(&pool, a);
    CHECK_INT(app_state(a), APP_MAINTENANCE);
    CHECK_INT(atomic_load(&a->transitions[APP_MAINTENANCE]), 1);
    uint64_t before = atomic_load(&pool.check_requests);
    pool_request_check(&pool, a);
    CHECK(atomic_load(&a->check_requested));
    CHECK_INT(atomic_load(&pool.check_requests), before + 1);
    pool_free(&pool);
    config_free(&cfg);
}

static void test_reload_json(void)
{
    struct config before, after;
    if (parse(&before, TWO_APPS) != 0)
        return;
    if (parse(&after, "[[applications]]\nname = \"a\"\nip = \"127.0.0.1\"\nport = 1\n"
                      "[[applications]]\nname = \"b\"\nip = \"127.0.0.1\"\nport = 2\nweight = 3\n"
                      "[[applications]]\nname = \"c\"\nip = \"127.0.0.1\"\nport = 3\n") != 0) {
        config_free(&before);
        return;
    }
    char *json = admin_reload_json(&before, &after, NULL);
    CHECK(json && strcmp(json, "{\"reloaded\":true,\"applications\":3,\"added\":[\"c\"],\"removed\":[],"
                               "\"changed\":[\"b\"]}") == 0);
    free(json);
    json = admin_reload_json(&after, &before, NULL);
    CHECK(json && strcmp(json, "{\"reloaded\":true,\"applications\":2,\"added\":[],\"removed\":[\"c\"],"
                               "\"changed\":[\"b\"]}") == 0);
    free(json);
    json = admin_reload_json(NULL, NULL, "f.toml:1:2: bad \"x\"\n\nf.toml:3:4: worse\n");
    struct ctl_json *doc = json ? ctl_json_parse(json) : NULL;
    const struct ctl_json *errors = ctl_json_get(doc, "errors");
    CHECK(errors && errors->type == CTL_JSON_ARRAY && errors->count == 2);
    CHECK(errors && errors->count == 2 && strcmp(errors->items[0].string, "f.toml:1:2: bad \"x\"") == 0);
    CHECK(ctl_json_get(doc, "error") != NULL);
    ctl_json_free(doc);
    free(json);
    config_free(&before);
    config_free(&after);
}

static void test_ctl_json(void)
{
    struct ctl_json *v = ctl_json_parse(" [ {\"a\": 1.5, \"b\": [true, false, null], \"c\": \"x\\u00e9\\t\"}, 2 ] ");
    CHECK(v && v->type == CTL_JSON_ARRAY && v->count == 2);
    const struct ctl_json *o = v ? &v->items[0] : NULL;
    CHECK(o && ctl_json_get(o, "a")->number == 1.5);
    CHECK(o && ctl_json_get(o, "b")->count == 3 && ctl_json_get(o, "b")->items[0].type == CTL_JSON_BOOL);
    CHECK(o && strcmp(ctl_json_get(o, "c")->string, "x\xc3\xa9\t") == 0);
    CHECK(o && ctl_json_get(o, "d") == NULL);
    ctl_json_free(v);
    static const char *const bad[] = {"", "[", "{\"a\" 1}", "[1,]x", "\"abc", "{\"a\":1", "nul", "[1] 2",
                                      "\"\\u12G4\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ctl_json *b = ctl_json_parse(bad[i]);
        CHECK_MSG(b == NULL, "accepted %s", bad[i]);
        ctl_json_free(b);
    }
    char deep[200];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    CHECK(ctl_json_parse(deep) == NULL);
}

/* A test alert's answer: settled targets as they ended, the others as
 * failed with the reason given. */
static void test_test_alert_json(void)
{
    struct alert_test *t = calloc(1, sizeof(*t));
    if (!t)
        return;
    t->count = 3;
    snprintf(t->results[0].target, sizeof(t->results[0].target), "webhook http://127.0.0.1:1");
    t->results[0].delivered = true;
    atomic_store(&t->results[0].settled, true);
    snprintf(t->results[1].target, sizeof(t->results[1].target), "command");
    snprintf(t->results[1].why, sizeof(t->results[1].why), "command exited with status \"1\"");
    atomic_store(&t->results[1].settled, true);
    snprintf(t->results[2].target, sizeof(t->results[2].target), "email");
    CHECK(!alert_test_done(t));
    CHECK_INT(alert_test_failed(t), 2);
    char *json = admin_test_alert_json(t, "no outcome within 20 s");
    CHECK_STR(json ? json : "", "{\"delivered\":1,\"failed\":2,\"targets\":["
              "{\"target\":\"webhook http://127.0.0.1:1\",\"delivered\":true,\"error\":\"\"},"
              "{\"target\":\"command\",\"delivered\":false,\"error\":\"command exited with status \\\"1\\\"\"},"
              "{\"target\":\"email\",\"delivered\":false,\"error\":\"no outcome within 20 s\"}]}");
    free(json);
    free(t);
}

void unit_test_admin(void)
{
    test_test_alert_json();
    test_routes();
    test_token();
    test_app_json();
    test_finish_drain();
    test_reload_json();
    test_ctl_json();
}
