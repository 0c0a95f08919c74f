/* test_fuzz_regressions.c - every input in fuzz/regressions/<target>/ (what
 * a fuzzer once crashed on) and fuzz/corpus/<target>/ (the seeds) replayed
 * through the same harness functions the libFuzzer targets run. A broken
 * invariant aborts the run with the input's name. Each input is copied
 * into a buffer of exactly its size, so `make asan` catches a read past
 * its end as libFuzzer would. A missing or empty directory fails, and so
 * does a regressions directory named for no target: this suite must never
 * pass by replaying nothing. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz.h"
#include "unit.h"

#ifndef SLUICE_SOURCE_DIR
#define SLUICE_SOURCE_DIR "."
#endif

#define INPUT_MAX (1 << 20)

struct target {
    const char *name;
    int (*one)(const uint8_t *data, size_t len);
};

static const struct target targets[] = {
    {"request", fuzz_request_one},
    {"response", fuzz_response_one},
    {"config", fuzz_config_one},
    {"h2head", fuzz_h2head_one},
};

/* Reads path whole into a buffer of exactly its size (one byte for an
 * empty file, never read). Returns NULL on error. */
static uint8_t *read_input(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *staging = malloc(INPUT_MAX), *exact = NULL;
    size_t n = staging ? fread(staging, 1, INPUT_MAX, f) : 0;
    if (staging && !ferror(f) && feof(f)) {
        exact = malloc(n ? n : 1);
        if (exact)
            memcpy(exact, staging, n);
        *len = n;
    }
    free(staging);
    fclose(f);
    return exact;
}

/* Replays every regular file in dir (dotfiles aside). Returns how many. */
static int replay_dir(const char *dir, const struct target *t)
{
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "%s: %s", dir, strerror(errno));
    if (!d)
        return 0;
    int replayed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        size_t len = 0;
        uint8_t *data = read_input(path, &len);
        CHECK_MSG(data != NULL, "%s: cannot read", path);
        if (!data)
            continue;
        fuzz_input_name = path;
        CHECK_MSG(t->one(data, len) == 0, "%s", path);
        fuzz_input_name = NULL;
        free(data);
        replayed++;
    }
    closedir(d);
    return replayed;
}

static const struct target *target_named(const char *name)
{
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
        if (strcmp(targets[i].name, name) == 0)
            return &targets[i];
    return NULL;
}

/* fuzz/regressions/<target>/ exists for the targets that ever crashed:
 * each one there must be a known target with inputs, and there must be some. */
static void replay_regressions(void)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/fuzz/regressions", SLUICE_SOURCE_DIR);
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "%s: %s", dir, strerror(errno));
    if (!d)
        return;
    int total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        const struct target *t = target_named(e->d_name);
        CHECK_MSG(t != NULL, "%s/%s: not a fuzz target", dir, e->d_name);
        if (!t)
            continue;
        char sub[sizeof(dir) + sizeof(e->d_name) + 1];
        snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
        int n = replay_dir(sub, t);
        CHECK_MSG(n > 0, "%s: no inputs", sub);
        total += n;
    }
    closedir(d);
    CHECK_MSG(total > 0, "%s: no regression inputs", dir);
}

void unit_test_fuzz(void)
{
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/fuzz/corpus/%s", SLUICE_SOURCE_DIR, targets[i].name);
        CHECK_MSG(replay_dir(dir, &targets[i]) > 0, "%s: no seed inputs", dir);
    }
    replay_regressions();
}
