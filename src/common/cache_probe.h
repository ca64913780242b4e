/* cache_probe.h - whether a small read should try the page cache first
 * (a preadv2(RWF_NOWAIT) probe, buffered on a miss) or go O_DIRECT.
 *
 * A hit is the cheapest read there is; a miss costs the probe, a page
 * cache insertion and later reclaim on top of the disk read, and pushes
 * other pages out. So probes are counted in windows (CACHE_PROBE_WINDOW
 * by default): after a window in which fewer than CACHE_PROBE_HIT_PCT %
 * hit (and, with CACHE_PROBE_RISE, the hit rate did not rise by
 * CACHE_PROBE_RISE_PCT points over the window before) the working set is
 * taken to be larger than memory ("cold"): reads go O_DIRECT except one
 * in CACHE_PROBE_SAMPLE, which still probes (and fills the cache on a
 * miss), so a set that does fit warms up and brings probing back. The
 * rise test keeps a set that fits but starts cold (after a drop of
 * caches) probing at full rate while it warms: its hit rate climbs window
 * by window (a window fills WINDOW of its pages, so a set of up to about
 * 100 x WINDOW x (1 - hit rate) pages, 3 GiB at half cached, rises by the
 * point needed), a too-large set's stays flat (the sampling noise of a
 * window of 16384 is about half a point). The test needs such a window:
 * at a few hundred probes the noise is several points and a flat set
 * would look rising in 30-40 % of its windows (simulated), so a probe with a
 * short window (the chunk engine's 256) leaves it off. Either choice
 * reads the same bytes; the counts are approximate under concurrency
 * (a hit may land in the next window), which only moves the choice.
 *
 * Thread safety: every function may be called from any number of threads
 * at once (relaxed atomics; no locks), after cache_probe_init. It starts
 * warm (probing). */
#ifndef CFS_COMMON_CACHE_PROBE_H
#define CFS_COMMON_CACHE_PROBE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define CACHE_PROBE_WINDOW   16384 /* probes per decision */
#define CACHE_PROBE_HIT_PCT  50    /* below this hit rate ... */
#define CACHE_PROBE_RISE_PCT 1     /* ... and rising by less than this, cold ... */
#define CACHE_PROBE_SAMPLE   8     /* ... and only one read in this many probes */

struct cache_probe {
	uint32_t window; /* probes per decision (set by cache_probe_init) */
	bool rise;       /* the rise test is on (CACHE_PROBE_RISE) */
	_Atomic uint32_t probes, hits, tick;
	_Atomic uint32_t last_hits;  /* hits of the last full window */
	atomic_int cold;             /* 1: probe one read in CACHE_PROBE_SAMPLE */
	atomic_uint_fast64_t direct; /* reads told not to probe (a counter) */
};

/* cache_probe_init FLAGS: CACHE_PROBE_RISE, a window whose hit rate rose
 * by CACHE_PROBE_RISE_PCT points keeps probing (without it the bar alone
 * decides; for windows of about 16384, see above). */
#define CACHE_PROBE_RISE 1u

/* WINDOW: probes per decision, 0 for CACHE_PROBE_WINDOW (the chunk
 * engine uses 256, tests smaller ones); FLAGS: 0 or CACHE_PROBE_RISE. Not thread safe (before any
 * other call); nothing to free. */
static inline void cache_probe_init(struct cache_probe *cp, uint32_t window, unsigned flags)
{
	cp->window = window ? window : CACHE_PROBE_WINDOW;
	cp->rise = (flags & CACHE_PROBE_RISE) != 0;
	atomic_store(&cp->probes, 0);
	atomic_store(&cp->hits, 0);
	atomic_store(&cp->tick, 0);
	atomic_store(&cp->last_hits, 0);
	atomic_store(&cp->cold, 0);
	atomic_store(&cp->direct, 0);
}

/* Whether this read probes the page cache (then report its outcome with
 * cache_probe_report); false: read it O_DIRECT (counted in ->direct). */
bool cache_probe_wanted(struct cache_probe *cp);
/* A probe's outcome: HIT when the cache held every page. */
void cache_probe_report(struct cache_probe *cp, bool hit);

#endif
