/* buf.c - the per-worker buffer free list; see buf.h. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>

void buf_pool_init(struct buf_pool *bp, uint32_t block_size, uint32_t free_max)
{
    *bp = (struct buf_pool){.block_size = block_size, .free_max = free_max};
}

void buf_pool_free(struct buf_pool *bp)
{
    while (bp->free_list) {
        void *next = *(void **)bp->free_list;
        free(bp->free_list);
        bp->free_list = next;
    }
    bp->free_count = 0;
}

void buf_pool_resize(struct buf_pool *bp, uint32_t block_size)
{
    if (block_size == bp->block_size)
        return;
    buf_pool_free(bp);
    bp->block_size = block_size;
}

int buf_acquire(struct buf_pool *bp, struct buf *b)
{
    if (b->data)
        return 0;
    if (bp->free_list) {
        b->data = bp->free_list;
        bp->free_list = *(void **)bp->free_list;
        bp->free_count--;
    } else {
        b->data = malloc(bp->block_size);
        if (!b->data)
            return -ENOMEM;
    }
    b->head = b->tail = 0;
    b->cap = bp->block_size;
    return 0;
}

void buf_release(struct buf_pool *bp, struct buf *b)
{
    if (!b->data)
        return;
    if (bp->free_count < bp->free_max && b->cap == bp->block_size) {
        *(void **)b->data = bp->free_list;
        bp->free_list = b->data;
        bp->free_count++;
    } else {
        free(b->data);
        bp->returned = true;
    }
    b->data = NULL;
    b->head = b->tail = b->cap = 0;
}
