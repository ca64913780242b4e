/* layout.c - layout validation, chain assignment and the chunk shuffle.
 *
 * The shuffle and the PRNG are specified in layout.h; this file is their
 * reference implementation and must never change its output (clients store
 * nothing but the seed). Chain assignment is round-robin over the table: a
 * caller-held cursor advances by the stripe per file, so consecutive files
 * start on consecutive table positions and load spreads evenly.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"
#include "meta/layout.h"

int meta_layout_chunk_ok(uint32_t chunk)
{
	return chunk >= META_CHUNK_MIN && chunk <= META_CHUNK_MAX && (chunk & (chunk - 1)) == 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* meta_layout_validate's checks of L itself and of V's presence, without
 * asking V for the table. */
static int check_fields(const struct meta_layout *l, const struct meta_chain_view *v,
			char *err, size_t errlen)
{
	if ((l->chunk_size & (l->chunk_size - 1)) != 0 || l->chunk_size == 0)
		return fail(err, errlen, "chunk size %u is not a power of two",
			    l->chunk_size);
	if (!meta_layout_chunk_ok(l->chunk_size))
		return fail(err, errlen, "chunk size %u out of range [64 KiB, 64 MiB]",
			    l->chunk_size);
	if (l->stripe == 0)
		return fail(err, errlen, "stripe size 0: a file needs at least one chain");
	if (l->stripe > META_MAX_STRIPE)
		return fail(err, errlen, "stripe size %u over the maximum %d", l->stripe,
			    META_MAX_STRIPE);
	if (!v || !v->table)
		return fail(err, errlen, "no chain table view to check table %u",
			    l->table_id);
	return 0;
}

int meta_layout_validate(const struct meta_layout *l, const struct meta_chain_view *v,
			 char *err, size_t errlen)
{
	int rc = check_fields(l, v, err, errlen);
	if (rc)
		return rc;
	int n = v->table(v->arg, l->table_id, NULL, 0);
	if (n < 0)
		return fail(err, errlen, "unknown chain table %u", l->table_id);
	if ((uint32_t)n < l->stripe)
		return fail(err, errlen, "stripe size %u larger than chain table %u (%d chains)",
			    l->stripe, l->table_id, n);
	return 0;
}

/* Chains of a table meta_layout_assign copies onto its stack (1 KiB). */
#define LAYOUT_TABLE_STACK 256

int meta_layout_assign(const struct meta_layout *def, const struct meta_chain_view *v,
		       uint64_t cursor, uint64_t seed, struct meta_layout *out,
		       char *err, size_t errlen)
{
	int rc = check_fields(def, v, err, errlen);
	if (rc)
		return rc;
	/* One look at the table for a table that fits on the stack (every
	 * file create: each look takes the routing snapshot, under the
	 * mgmtd client's lock in the mount); a larger one is copied again
	 * into memory of its size. */
	uint32_t small[LAYOUT_TABLE_STACK];
	uint32_t *table = small;
	int n = v->table(v->arg, def->table_id, small, LAYOUT_TABLE_STACK);
	if (n < 0)
		return fail(err, errlen, "unknown chain table %u", def->table_id);
	uint32_t have = (uint32_t)n;
	if (have > LAYOUT_TABLE_STACK) {
		table = malloc(((size_t)n + 1) * sizeof(*table));
		if (!table)
			return -ENOMEM;
		/* the table may have changed since the first call: use what we got */
		int got = v->table(v->arg, def->table_id, table, (uint32_t)n);
		have = got < 0 ? 0 : (uint32_t)got < (uint32_t)n ? (uint32_t)got : (uint32_t)n;
	}
	if (have < def->stripe) {
		if (table != small)
			free(table);
		return fail(err, errlen, "stripe size %u larger than chain table %u (%u chains)",
			    def->stripe, def->table_id, have);
	}
	out->chunk_size = def->chunk_size;
	out->stripe = def->stripe;
	out->table_id = def->table_id;
	out->seed = seed;
	out->nchains = def->stripe;
	uint64_t base = cursor % have;
	for (uint32_t i = 0; i < def->stripe; i++)
		out->chains[i] = table[(base + i) % have];
	if (table != small)
		free(table);
	return 0;
}

uint64_t meta_splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

void meta_layout_perm(uint64_t seed, uint32_t n, uint32_t *perm)
{
	uint64_t s = seed;
	for (uint32_t k = 0; k < n; k++)
		perm[k] = k;
	for (uint32_t k = n ? n - 1 : 0; k >= 1; k--) {
		uint32_t j = (uint32_t)(meta_splitmix64(&s) % ((uint64_t)k + 1));
		uint32_t tmp = perm[k];
		perm[k] = perm[j];
		perm[j] = tmp;
	}
}

void meta_chunk_id(uint64_t ino, uint32_t index, uint8_t out[META_CHUNK_ID_LEN])
{
	wire_store_be64(out, ino);
	wire_store_be32(out + 8, index);
}
