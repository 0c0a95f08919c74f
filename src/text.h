/* text.h - a string that grows as it is written, for the admin thread's
 * answers (JSON, the Prometheus exposition, the dashboard's data). Never on
 * the request path: it allocates.
 *
 * Writing never fails loudly: out of memory, the text is marked failed,
 * later writes are dropped, and text_take gives NULL. The bytes written so
 * far are always NUL-terminated. */
#ifndef SLUICE_TEXT_H
#define SLUICE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct text {
    char *data;                /* owned until text_take */
    size_t len, cap;
    bool failed;               /* out of memory: the text is useless */
};

/* Room for `more` bytes and the NUL after them. False when out of memory. */
bool text_reserve(struct text *t, size_t more);
void text_put(struct text *t, const char *s, size_t n);
void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text's buffer, handed to the caller (who frees it); NULL when memory
 * ran out (the buffer is freed then). */
char *text_take(struct text *t);

#endif
