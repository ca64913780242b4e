/* sc_direct.h - short-circuit reads (docs/rpc.md "Short-circuit reads"):
 * a read of a chunk held by a storage service on this host (up to the
 * whole chunk; alone, or a batch of them at once) is read from that
 * service's block file with O_DIRECT, checked against the chunk's
 * page CRCs and validated by a slot word the service bumps before
 * anything could change the mapped bytes. Anything unusual (no mapping,
 * a bumped slot, an expired lease, the service gone, a CRC mismatch, an
 * I/O error) answers "not done" and the caller reads over RPC as before,
 * which is also what reports errors; a CRC mismatch names the target
 * whose copy failed, so that read goes to its service first.
 *
 * On when the storage client's owner asks (the mount does) or
 * CFS_SHORT_READ=1 is in the environment, off with CFS_SHORT_READ=0 (and
 * whenever shared memory is off: CFS_NO_SHM=1 or CFS_NO_LOCAL_SOCKET=1):
 * on reads the block file O_DIRECT; CFS_SHORT_READ=cache takes only what
 * the page cache holds (preadv2 RWF_NOWAIT) and sends misses over RPC.
 * CFS_SHORT_READ_BIG=0 keeps larger ranges and batches on RPC (only lone
 * ranges of at most SC_DIRECT_ASYNC_MAX take the path, as before
 * 2026-12-05).
 *
 * Used by storage_client.c only. Threads: any, except RPC loop threads
 * (a first read of a chunk waits for its mapping). */
#ifndef CFS_STORAGE_CLIENT_SC_DIRECT_H
#define CFS_STORAGE_CLIENT_SC_DIRECT_H

#include <stdbool.h>
#include <stdint.h>

#include "net/rpc.h"
#include "storage_client/storage_client.h"

/* The largest range a short-circuit read takes (a chunk is at most 64 MiB;
 * larger ranges are cut at chunks before they get here). */
#define SC_DIRECT_MAX (64u << 20)
/* The largest range of sc_direct_read_async (its completion thread checks
 * every page's CRC; larger ranges are read with sc_direct_read or
 * sc_direct_read_batch, which check them on the caller's thread). */
#define SC_DIRECT_ASYNC_MAX (128u << 10)

struct sc_direct;

/* NULL when off (see above) or out of memory. RO is copied for the
 * path's own RPC client (one connection per server). DFLT: on (1) or off
 * (0) when CFS_SHORT_READ is not in the environment. */
struct sc_direct *sc_direct_new(const struct rpc_opts *ro, int dflt);
/* NULL-safe; no read may be in progress. */
void sc_direct_free(struct sc_direct *d);
/* FN (may be NULL) runs on a reading thread right before it waits: a map
 * RPC, a registration, a pread the page cache could not answer at once
 * (the mount passes fuseloop_will_block, so its FUSE loop goes on reading
 * requests meanwhile). Any thread. */
void sc_direct_set_will_block(struct sc_direct *d, void (*fn)(void));
/* Tests: FN (may be NULL) runs on the reading thread of every blocking
 * read (sc_direct_read) between its halves: its bytes read, nothing
 * checked yet, its mapping (and table) still held. Set before any read. */
void sc_direct_set_test_mid(struct sc_direct *d, void (*fn)(uint64_t ino, uint32_t idx));
/* Tests: sends ADDR's service a malformed SC_MAP on this path's own
 * connection, which the service answers -CFS_EPROTO and then closes: the
 * connection (and the service's table on it) ends while the service
 * lives. Returns the call's status (-CFS_EPROTO expected). */
int sc_direct_test_bad_map(struct sc_direct *d, const char *addr);
/* Whether async reads go through the page cache (on by default with
 * CFS_SHORT_READ=1; CFS_SHORT_READ_CACHED=0 turns it off): sc_direct_read_async first
 * reads the pages from the block file's page cache on the caller's
 * thread (preadv2 RWF_NOWAIT) and, when they are all there and pass
 * every check, calls DONE before it returns; misses go on the ring
 * through the page cache, so they fill it (the storage client then keeps
 * a chunk's async reads on one replica). NULL-safe, any thread. */
bool sc_direct_caches(struct sc_direct *d);
/* Whether ADDR may serve direct reads: not refused recently, and not
 * found dead under its mappings in the last 10 s (a new registration
 * would wait for a connection to it; the caller reads over RPC or from
 * another replica meanwhile). */
bool sc_direct_usable(struct sc_direct *d, const char *addr);
/* What a short-circuit read answers. */
enum sc_direct_res {
	/* A page of TARGET's copy failed its CRC (the slot still valid: the
	 * bytes are the block's, not a concurrent change): read over RPC from
	 * TARGET first, whose service's own check then reports the chunk and
	 * queues its repair (craq_repair.c), then from another replica. */
	SC_DIRECT_CORRUPT = -1,
	SC_DIRECT_RPC = 0,  /* nothing is set (R->dst may have been written): read over RPC */
	SC_DIRECT_DONE = 1, /* R is final */
};

/* Reads R's range (R->len <= SC_DIRECT_MAX) of chunk (R->ino, R->idx) of
 * TARGET in CHAIN served at ADDR from its block file. SC_DIRECT_DONE:
 * R->result (bytes, 0 past the end), R->crc and R->commit_ver are set, the
 * bytes are at R->dst and are those of the committed version; otherwise
 * nothing is set (see enum sc_direct_res). */
int sc_direct_read(struct sc_direct *d, const char *addr, uint32_t target, uint32_t chain,
		   struct storage_read *r);

/* One range of sc_direct_read_batch. */
struct sc_direct_item {
	const char *addr;        /* the server (as for sc_direct_read) */
	uint32_t target, chain;
	struct storage_read *r;
	int ok;                  /* out: enum sc_direct_res, as sc_direct_read's */
};

/* As sc_direct_read for N ranges at once: each read goes on an io_uring
 * as soon as its chunk is mapped (a first mapping waits for a map RPC
 * while the reads before it are on the disk), the caller's thread
 * waiting for all of them (the will-block hook runs first) and then
 * checking them. The ring is the calling thread's own (made at its first
 * batch, deferred task work, freed when the thread ends: the thread is
 * woken once per batch, not through the completion thread), or this
 * path's shared ring when the thread has none (CFS_SC_BATCH_OWN_RING=0,
 * or io_uring refused). Needs the O_DIRECT mode (CFS_SHORT_READ=1);
 * otherwise, or for ranges it cannot submit, each range is read as
 * sc_direct_read does. Returns how many are done (ok). Threads: as
 * sc_direct_read. */
size_t sc_direct_read_batch(struct sc_direct *d, struct sc_direct_item *it, size_t n);

/* As sc_direct_read without waiting for the disk (CFS_SHORT_READ=1 only):
 * 1: the read was submitted (or needed no I/O) and DONE(ARG, OK) runs
 * exactly once, on this path's completion thread or before this returns;
 * OK an enum sc_direct_res as sc_direct_read's (DONE may start the RPC
 * read). 0: nothing submitted, DONE will not run: read over RPC.
 * May still wait for a first mapping of the chunk. R and its memory stay
 * the caller's until DONE. R->len <= SC_DIRECT_ASYNC_MAX. */
int sc_direct_read_async(struct sc_direct *d, const char *addr, uint32_t target, uint32_t chain,
			 struct storage_read *r, void (*done)(void *arg, int ok), void *arg);

/* As sc_direct_read_async, for a chunk whose reads move from the replica
 * ALT (ALT_ADDR, ALT_TARGET; ALT_ADDR NULL: none) to ADDR's: while ADDR
 * has no mapping of the chunk, one is asked for in the background (an RPC
 * whose answer is taken on an RPC loop thread: no reader waits for it)
 * and the read goes to ALT when sc_direct_usable (which may still wait
 * for a mapping, as sc_direct_read_async). *TARGET_READ, set before DONE can run, is the
 * target whose copy is read (for the RPC read after SC_DIRECT_CORRUPT). */
int sc_direct_read_async_alt(struct sc_direct *d, const char *addr, uint32_t target,
			     const char *alt_addr, uint32_t alt_target, uint32_t chain,
			     struct storage_read *r, void (*done)(void *arg, int ok), void *arg,
			     uint32_t *target_read);

struct sc_direct_stats {
	uint64_t reads;      /* reads answered from block files */
	uint64_t fallbacks;  /* tried, went over RPC */
	uint64_t misses;     /* ... of which the page cache did not hold the pages */
	uint64_t maps;       /* mappings obtained */
	uint64_t map_fails;  /* SC_MAP refused or failed */
	uint64_t map_rpcs;   /* SC_MAP RPCs sent (one chunk each) */
	uint64_t map_many;   /* SC_MAP_MANY RPCs sent (a batch's chunks of one server) */
	uint64_t stale;      /* slot bumped or lease expired at the read */
	uint64_t corrupt;    /* page CRC mismatches seen (SC_DIRECT_CORRUPT) */
	uint64_t dead;       /* a service found dead under its mappings */
	uint64_t regs;       /* tables registered (one per service, and again after a
				restart or a replaced connection) */
	uint64_t tables;     /* tables mapped now: the current ones and old ones a
				read is still inside */
	uint64_t keys;       /* chunk records kept now, every server's (at most
				about STO_SC_SLOTS a server, never more than twice
				that: sc_direct.c KEYS AND FILES) */
	uint64_t key_evictions; /* ... freed to stay within that bound */
	uint64_t files;      /* data files open now (closed when no mapping uses them) */
	uint64_t cached_hits;   /* async reads answered from the page cache at once
				   (unless CFS_SHORT_READ_CACHED=0) */
	uint64_t cached_misses; /* ... not all cached: read buffered on the ring */
	uint64_t cached_direct; /* async reads sent O_DIRECT without a probe: the
				   cache was cold (common/cache_probe.h; never with
				   CFS_SHORT_READ_PROBE=all) */
};
void sc_direct_get_stats(struct sc_direct *d, struct sc_direct_stats *out);

#endif
