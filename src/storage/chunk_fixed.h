/* chunk_fixed.h - memory whose pages chunk engines may register with their
 * io_uring as fixed buffers.
 *
 * An O_DIRECT write from ordinary memory pins its pages for the length of
 * the write (get_user_pages in the kernel), every write: 4.8 % of a
 * three-replica cluster's CPU in a one-job 1 MiB write profile
 * (bench/history.md, sp30). The service's write arena and the
 * shared-memory regions it maps (a predecessor's arena, whose bytes a
 * forwarded write goes to disk from) are long-lived; an engine registers
 * the PIECES of them its writes come from (chunk_engine.c "fixed
 * buffers"), once, and later writes from them are submitted with
 * IORING_OP_WRITE_FIXED, which pins nothing.
 *
 * A range is named by an id that is never reused, not by its address: a
 * range removed and another mapped at the same address later must not
 * match a piece an engine registered from the first (the engine's
 * registration holds the first one's pages, and a write from it would
 * write their bytes).
 *
 * Threads: any. One mutex; lookups are a scan of at most
 * CHUNK_FIXED_MAX ranges. */
#ifndef CFS_STORAGE_CHUNK_FIXED_H
#define CFS_STORAGE_CHUNK_FIXED_H

#include <stdint.h>

#define CHUNK_FIXED_MAX   64           /* ranges at once; more are not added */
#define CHUNK_FIXED_PIECE (4ull << 20) /* pieces start every 4 MiB ... */
#define CHUNK_FIXED_SPAN                                                                           \
	(8ull << 20) /* ... and span 8 MiB (clipped at the                                         \
	              * range's end), so every write of up to                                      \
	              * 4 MiB lies inside the piece it starts in */

struct chunk_fixed;

/* A piece of a range: [base, base + len) of range ID. */
struct chunk_fixed_piece {
	uint64_t id;
	uint64_t piece; /* index: base = range base + piece * CHUNK_FIXED_PIECE */
	void *base;
	uint64_t len;
};

struct chunk_fixed *chunk_fixed_new(void);
/* NULL-safe. After every engine that uses F is closed (no watchers). */
void chunk_fixed_free(struct chunk_fixed *f);

/* Adds the mapped range [BASE, BASE + LEN): its id (> 0), or 0 when F is
 * NULL or full (the range's writes then pin their pages as before). The
 * range must stay mapped until chunk_fixed_remove. */
uint64_t chunk_fixed_add(struct chunk_fixed *f, void *base, uint64_t len);
/* Removes range ID (0 and NULL F: nothing) before it is unmapped. The
 * caller guarantees no write from it is in flight or will be submitted
 * (the range is unmapped next). Pieces engines registered from it keep
 * its pages until they notice (chunk_fixed_gen, chunk_fixed_watch). */
void chunk_fixed_remove(struct chunk_fixed *f, uint64_t id);

/* The piece that holds [P, P + LEN): 0 and *OUT, or -ENOENT (no range
 * holds it, or it crosses the end of the piece it starts in). The answer
 * stays true while the caller keeps the bytes mapped (a write from them
 * in flight does). */
int chunk_fixed_find(struct chunk_fixed *f, const void *p, uint64_t len,
                     struct chunk_fixed_piece *out);
/* Bumped by every chunk_fixed_remove; 0 for NULL F. */
uint64_t chunk_fixed_gen(const struct chunk_fixed *f);
/* FN(ARG) runs after every later chunk_fixed_remove, under F's mutex (it
 * must neither block nor call into F), until chunk_fixed_unwatch(F, ARG)
 * returns: an engine wakes its I/O thread to let go of the removed
 * range's pieces, whose pages its registration keeps pinned even when no
 * write comes again. NULL-safe. */
void chunk_fixed_watch(struct chunk_fixed *f, void (*fn)(void *), void *arg);
void chunk_fixed_unwatch(struct chunk_fixed *f, void *arg);
/* Whether range ID is still present. */
int chunk_fixed_live(struct chunk_fixed *f, uint64_t id);

#endif
