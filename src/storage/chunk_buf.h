/* chunk_buf.h - pool of 4 KiB-aligned I/O buffers for O_DIRECT.
 *
 * Buffers come in power-of-two sizes from 4 KiB to 64 MiB; freed buffers
 * are kept per size up to a byte budget and handed out again, so the data
 * path does not go to the allocator (and the kernel, for large sizes) on
 * every request. Thread-safe: any thread may get and put.
 */
#ifndef CFS_STORAGE_CHUNK_BUF_H
#define CFS_STORAGE_CHUNK_BUF_H

#include <stddef.h>

struct chunk_bufpool;

/* CACHE_BYTES bounds the idle buffers kept. Never fails (bookkeeping). */
struct chunk_bufpool *chunk_bufpool_new(size_t cache_bytes);
/* Frees idle buffers; every buffer must have been put back. NULL-safe. */
void chunk_bufpool_free(struct chunk_bufpool *p);
/* A buffer of at least N bytes (N <= 64 MiB + 4 KiB), aligned to 4 KiB,
 * contents undefined; NULL on -ENOMEM. Give it back with chunk_buf_put. */
void *chunk_buf_get(struct chunk_bufpool *p, size_t n);
/* Returns a buffer of size N (the size it was got with). NULL-safe. */
void chunk_buf_put(struct chunk_bufpool *p, void *buf, size_t n);

#endif
