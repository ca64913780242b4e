/* buf.h - a growable byte buffer (encode targets, receive staging).
 *
 * Growth uses the non-aborting allocator: a failed reserve returns -ENOMEM
 * and leaves the buffer as it was, so request-sized buffers never abort a
 * daemon. Not thread-safe; one owner at a time.
 */
#ifndef CFS_COMMON_BUF_H
#define CFS_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data; /* owned; NULL when cap == 0 */
	size_t len;    /* bytes in use */
	size_t cap;    /* bytes allocated */
};

#define BUF_INIT { NULL, 0, 0 }

static inline void buf_init(struct buf *b) { b->data = NULL; b->len = 0; b->cap = 0; }
/* Frees the storage; the buffer is empty and reusable after. NULL-safe. */
void buf_fini(struct buf *b);
/* Ensures room for N more bytes. 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t n);
/* Appends N bytes. 0 or -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
/* Appends N uninitialised bytes and returns where they start, or NULL on ENOMEM. */
uint8_t *buf_extend(struct buf *b, size_t n);
static inline void buf_reset(struct buf *b) { b->len = 0; }

#endif
