/* fuzz.h - the fuzz harnesses, callable without libFuzzer.
 *
 * Each harness takes one input, runs it through a parser the way sluice
 * does (and a few ways it could), and checks what must hold whatever the
 * bytes: views lie inside the input, a head parsed in pieces is judged as
 * it is whole, a chunked body scanned in pieces ends where it ends whole,
 * what the loader builds is freed. A broken invariant calls fuzz_fail,
 * which names it and aborts, so libFuzzer reports it as a crash and a unit
 * test replaying the input fails just as loudly.
 *
 * The same functions back the libFuzzer targets (fuzz/fuzz_*.c, built by
 * `make fuzz` with SLUICE_FUZZ_MAIN defined) and the unit suite that
 * replays fuzz/corpus and fuzz/regressions (tests/unit/test_fuzz_regressions.c).
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http1.h"

/* Each returns 0 (libFuzzer's "keep going"); a broken invariant aborts. */
int fuzz_request_one(const uint8_t *data, size_t len);
int fuzz_response_one(const uint8_t *data, size_t len);
int fuzz_config_one(const uint8_t *data, size_t len);
int fuzz_h2head_one(const uint8_t *data, size_t len);

/* LLVMFuzzerTestOneInput calling one, where SLUICE_FUZZ_MAIN is defined
 * (the libFuzzer build); nothing in the unit build, which links them all. */
#ifdef SLUICE_FUZZ_MAIN
#define FUZZ_TARGET(one)                                                         \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);                 \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)                  \
    {                                                                            \
        return one(data, len);                                                   \
    }
#else
#define FUZZ_TARGET(one)
#endif

/* Names the input being replayed in fuzz_fail's message; NULL for none. */
extern const char *fuzz_input_name;

/* While set, host names are not looked up in DNS (offline_resolver.c). */
extern bool fuzz_offline;

__attribute__((noreturn)) void fuzz_fail(const char *what, const char *file, int line);

#define FUZZ_CHECK(cond)                                                         \
    do {                                                                         \
        if (!(cond))                                                             \
            fuzz_fail(#cond, __FILE__, __LINE__);                                \
    } while (0)

/* ---- shared by the HTTP harnesses (fuzz_common.c) ---- */

/* A small deterministic generator: piece sizes are drawn from it, seeded
 * from the input itself so that every replay splits the same way. */
struct fuzz_rng {
    uint64_t state;
};
struct fuzz_rng fuzz_rng_seed(const uint8_t *data, size_t len);
/* A piece length in 1..max (max >= 1), small ones favoured: splits that
 * fall inside CRLFs and chunk-size lines are what incremental code gets wrong. */
size_t fuzz_rng_piece(struct fuzz_rng *rng, size_t max);

/* Whether [p, p + n) lies inside [base, base + len). */
bool fuzz_view_inside(const char *p, size_t n, const char *base, size_t len);

/* Checks the header views of a parsed head of head_len bytes at base:
 * inside the head, a token name, a value trimmed of OWS with no control
 * byte but HTAB. */
void fuzz_check_headers(const struct http1_header *hs, uint32_t count, const char *base,
                        size_t head_len);
/* How many of the headers are named `lower` (a lower-case literal). */
uint32_t fuzz_count_headers(const struct http1_header *hs, uint32_t count, const char *lower);

/* Scans body as a chunked body whole, byte by byte and in random pieces;
 * all three must agree, and a body that ends must have the shape RFC 9112
 * 7.1 gives it. Returns the bytes the body took, or -1 when refused or
 * not ended within the input. */
ssize_t fuzz_check_chunked(const char *body, size_t len, struct fuzz_rng *rng);

/* The bytes of the left that follow a head that a body of this kind takes
 * (chunked ones checked as above), or -1 when the body does not end within
 * them, so that nothing after it can be taken as the next message. */
ssize_t fuzz_body_taken(enum http1_body kind, uint64_t content_length, const char *body,
                        size_t left, struct fuzz_rng *rng);

#endif
