/* layout.h - file layouts: which chain holds which chunk.
 *
 * A file's layout (struct meta_layout, schema.h) is fixed at create:
 * chunk_size, stripe, table_id, chains[stripe] (taken round-robin from the
 * chain table) and a 64-bit shuffle seed. Placement, computed by clients and
 * the meta service alike:
 *
 *   chunk index i = offset / chunk_size          (must fit in u32)
 *   chain(i)      = chains[perm[i % stripe]]
 *   perm          = meta_layout_perm(seed, stripe)
 *
 * The permutation is specified exactly, so every version of every client
 * agrees (a library shuffle may change between releases):
 *
 *   splitmix64 (state s, u64 wrapping arithmetic):
 *     s += 0x9E3779B97F4A7C15; z = s;
 *     z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *     z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 *     return z ^ (z >> 31);
 *   Fisher-Yates, s = seed:
 *     perm[k] = k for k in [0, n);
 *     for k = n-1 down to 1: j = splitmix64(&s) % (k + 1); swap(perm[k], perm[j]);
 *
 * (The modulo bias is below 2^-55 for n <= 256 and is part of the spec.)
 * Test vectors (tests/meta/test_meta_schema.c checks them):
 *   splitmix64 from s = 0: 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F
 *   perm(seed 0, n 8)     = [2, 5, 0, 3, 4, 6, 1, 7]
 *   perm(seed 42, n 5)    = [1, 2, 0, 4, 3]
 *   perm(seed 0xDEADBEEF, n 16) = [10, 13, 2, 8, 4, 12, 6, 5, 9, 7, 3, 0, 1, 15, 14, 11]
 *   perm(seed 1, n 1)     = [0]
 * (checked against an independent Python transcription of this spec).
 *
 * Chunk id: 12 bytes, inode id u64 then chunk index u32, both big-endian,
 * so one file's chunks are contiguous and ordered on a target.
 * All functions are pure and thread-safe.
 */
#ifndef CFS_META_LAYOUT_H
#define CFS_META_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "meta/schema.h"

#define META_CHUNK_MIN (64u * 1024)          /* 64 KiB */
#define META_CHUNK_MAX (64u * 1024 * 1024)   /* 64 MiB */
#define META_CHUNK_ID_LEN 12

/* What the meta service knows of chain tables; the daemon fills it from
 * routing info, tests with a fake. table() copies up to CAP chain ids of
 * table TABLE_ID into CHAINS (may be NULL when cap is 0) and returns the
 * table's chain count (which may exceed cap), or -ENOENT for an unknown
 * table. Must be thread-safe. */
struct meta_chain_view {
	void *arg;
	int (*table)(void *arg, uint32_t table_id, uint32_t *chains, uint32_t cap);
};

/* 1 when CHUNK is a power of two in [META_CHUNK_MIN, META_CHUNK_MAX]. */
int meta_layout_chunk_ok(uint32_t chunk);

/* Checks a directory default (chunk_size, stripe, table_id) against the
 * view: -EINVAL with a one-line reason in err (chunk size not a power of
 * two or out of range, stripe 0 or over META_MAX_STRIPE, unknown chain
 * table, stripe larger than the table). */
int meta_layout_validate(const struct meta_layout *l, const struct meta_chain_view *v,
			 char *err, size_t errlen);

/* Fills OUT as a file layout from directory default DEF: validates it,
 * takes stripe chains round-robin from the table starting at position
 * CURSOR % table size, and sets the seed. 0, -ENOMEM or -EINVAL (err as
 * above). */
int meta_layout_assign(const struct meta_layout *def, const struct meta_chain_view *v,
		       uint64_t cursor, uint64_t seed, struct meta_layout *out,
		       char *err, size_t errlen);

/* One splitmix64 step (spec above). */
uint64_t meta_splitmix64(uint64_t *state);

/* The shuffle of [0, n) for SEED (spec above); PERM has n entries. */
void meta_layout_perm(uint64_t seed, uint32_t n, uint32_t *perm);

/* The chain of chunk INDEX given a precomputed perm of the layout. */
static inline uint32_t meta_layout_chain(const struct meta_layout *l, const uint32_t *perm,
					 uint32_t index)
{
	return l->chains[perm[index % l->stripe]];
}

void meta_chunk_id(uint64_t ino, uint32_t index, uint8_t out[META_CHUNK_ID_LEN]);

#endif
