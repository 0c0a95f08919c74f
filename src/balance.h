/* balance.h - choosing an application for a request.
 *
 * Each worker owns a struct balance (smooth weighted round robin counters,
 * random state). Picking reads the applications' state words; plain round
 * robin also takes one relaxed fetch-add on the pool's shared cursor, so that
 * requests alternate in one order whichever worker accepted them, and
 * least_conn reads the active-request counters. hash ranks the applications
 * for each key by their names (rendezvous hashing), so the order of the file
 * never matters and one leaving or joining moves only its own share.
 */
#ifndef SLUICE_BALANCE_H
#define SLUICE_BALANCE_H

#include <stdbool.h>
#include <stdint.h>

#include "pool.h"

struct balance {
    struct pool *pool;
    enum config_algorithm algorithm;
    bool weighted;            /* weights differ: use smooth weighted round robin */
    uint32_t cursor;          /* where least_conn starts looking, to rotate ties */
    int64_t *current;         /* smooth WRR running weights, one per application; owned */
    /* For hash: each application's identity (its name) hashed once here,
     * so that a key follows the application, not its place in the file. */
    uint64_t *identity;       /* owned; pool->count entries, NULL unless hash */
    uint64_t random_state;    /* xorshift64* state for random_two */
    /* The applications that were up when pool->state_version was last
     * seen, in index order: a pick costs the same with 2 applications or
     * with 2,000 of which 1,998 are down. A state that changed since is
     * caught by the check on the chosen application. */
    uint16_t *up;             /* owned; pool->count entries */
    int up_count;
    uint64_t seen_version;
};

int balance_init(struct balance *b, struct pool *pool, int worker_index);
void balance_free(struct balance *b);

/* Returns an application that is up and not among the ntried already tried,
 * or NULL when there is none. key_hash is used by the hash algorithm only. */
struct app *balance_pick(struct balance *b, uint64_t key_hash, const uint16_t *tried, int ntried);

/* 64-bit FNV-1a, for hash keys. */
uint64_t balance_hash(const void *data, size_t len);

#endif
