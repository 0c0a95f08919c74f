/* buf.h - fixed-size byte buffers recycled through a per-worker free list.
 *
 * A buffer is a window [head, tail) of valid bytes inside data[0, cap).
 * Connections hold buffers only while they have bytes in flight: an idle
 * keep-alive connection owns none, which is what keeps memory per idle
 * connection small. The free list is capped so that a burst does not pin
 * its peak memory forever.
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct buf {
    char *data;          /* NULL when the buffer is not held */
    uint32_t head, tail, cap;
};

struct buf_pool {
    void *free_list;     /* singly linked through the first word of each block */
    uint32_t block_size;
    uint32_t free_count, free_max;
    bool returned;       /* blocks went back to malloc since the owner last trimmed */
};

void buf_pool_init(struct buf_pool *bp, uint32_t block_size, uint32_t free_max);
void buf_pool_free(struct buf_pool *bp);
/* Changes the size of blocks handed out from now on (a reload changed
 * header_bytes); blocks of the old size are freed as they come back. */
void buf_pool_resize(struct buf_pool *bp, uint32_t block_size);

/* Gives b a block if it has none. Returns 0 or -ENOMEM. */
int buf_acquire(struct buf_pool *bp, struct buf *b);
/* Returns b's block to the pool (whatever it holds). */
void buf_release(struct buf_pool *bp, struct buf *b);

static inline uint32_t buf_len(const struct buf *b) { return b->tail - b->head; }
static inline uint32_t buf_room(const struct buf *b) { return b->cap - b->tail; }
static inline char *buf_start(const struct buf *b) { return b->data + b->head; }
static inline char *buf_end(const struct buf *b) { return b->data + b->tail; }

/* Consumes n bytes; an emptied buffer starts over at 0 so reads get the
 * whole block again. */
static inline void buf_consume(struct buf *b, uint32_t n)
{
    b->head += n;
    if (b->head == b->tail)
        b->head = b->tail = 0;
}

/* Appends len bytes if they fit; false (b unchanged) when they do not. */
static inline bool buf_put(struct buf *b, const void *data, size_t len)
{
    if (len > buf_room(b))
        return false;
    memcpy(buf_end(b), data, len);
    b->tail += (uint32_t)len;
    return true;
}

/* Moves the valid bytes to the start of the block. */
static inline void buf_compact(struct buf *b)
{
    if (b->head == 0)
        return;
    memmove(b->data, b->data + b->head, b->tail - b->head);
    b->tail -= b->head;
    b->head = 0;
}

#endif
