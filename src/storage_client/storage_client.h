/* storage_client.h - client of the storage service: chunk reads, writes,
 * removes, queries and target stats, with retries and end-to-end CRC32C.
 *
 * A chunk is addressed by a struct storage_loc: either a chain (chain !=
 * 0; needs mgmtd addresses, the client keeps a routing cache) or, for a
 * standalone storage service, a target id at an address. Chain writes go
 * to the chain head with the chain version; reads go to a SERVING replica,
 * rotating over them to spread load. Retries (same request, so writes stay
 * exactly-once through (client id, channel, seq)) on: stale chain version
 * or not-the-head (after the routing cache moved on), not committed,
 * timeouts, closed connections, -CFS_EUNAVAIL, -CFS_EFENCED and CRC
 * mismatches, with backoff 20 ms doubling to 500 ms, until the retry budget
 * is spent; the last error is returned then. A chain read whose replica
 * answers -CFS_ECORRUPT (its stored data failed the service's CRC check)
 * goes to another SERVING replica; it fails with -CFS_ECORRUPT only when
 * every serving replica did (the services report and repair their bad
 * copies themselves: storage/craq_repair.c).
 *
 * Concurrent reads (from any threads) to one server share read RPCs
 * while earlier ones are in flight there (see storage_client.c, read
 * combining); each caller still gets its own results and retries. A
 * read RPC to a same-host server, combined or not, goes over shared
 * memory (sc_shm.h) when it can.
 *
 * With short_read (the mount's default) or CFS_SHORT_READ=1 in the
 * environment, reads of chunks held by a service on this host are read
 * from its block files directly (sc_direct.h, docs/rpc.md "Short-circuit
 * reads"), spread over the same-host SERVING replicas; a page that fails
 * its CRC there sends the read over RPC to that same replica first, whose
 * service reports and repairs its copy, then to the others as above.
 *
 * Read data arrives straight in the caller's buffer when the ranges sent to
 * one server are adjacent in memory (dst[i+1] == dst[i] + len[i]); otherwise
 * through one bounce buffer. Every returned byte is checked against the
 * server's CRC32C of it.
 *
 * Threads: every function may be called from any number of threads at
 * once, except from the client's own callbacks (none are exposed). The
 * client never aborts on allocation failure and logs nothing by itself.
 */
#ifndef CFS_STORAGE_CLIENT_STORAGE_CLIENT_H
#define CFS_STORAGE_CLIENT_STORAGE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage_proto.h"

struct storage_client;

struct storage_client_opts {
	const char *cluster_id;
	const uint8_t *secret;          /* >= 16 bytes; copied */
	size_t secret_len;
	const char *const *mgmtd_addrs; /* needed for chain addressing; copied */
	size_t n_mgmtd;
	uint32_t timeout_ms;            /* per RPC [10000] */
	uint32_t retry_budget_ms;       /* total time spent retrying one call [30000] */
	int threads;                    /* RPC loop threads [2] */
	int conns_per_peer;             /* [2] */
	uint64_t client_id;             /* 0: random */
	int short_read;                 /* 1: small reads of same-host chunks read
					 * the service's block files (sc_direct.h);
					 * CFS_SHORT_READ in the environment
					 * overrides (0, 1, cache) [0] */
};

/* 0, or -EINVAL / -errno with a message in ERR. */
int storage_client_new(const struct storage_client_opts *o, struct storage_client **out,
		       char *err, size_t errlen);
/* NULL-safe. No call may be in progress. */
void storage_client_free(struct storage_client *c);

/* Reads and queries with a chain AND an address and target go to that
 * replica only (it must be SERVING in the chain): for checks and tools. */
struct storage_loc {
	uint32_t chain;   /* != 0: a chain (routing decides the target) */
	const char *addr; /* chain == 0: "ip:port" of the storage service; borrowed */
	uint32_t target;  /* chain == 0: target id on it */
};

struct storage_read {
	struct storage_loc loc; /* in */
	uint64_t ino;           /* in */
	uint32_t idx, off, len; /* in: chunk index, offset and length wanted */
	void *dst;              /* in: >= len bytes; borrowed for the call */
	int result;             /* out: bytes read (short at the chunk end), or -ENOENT,
				   -CFS_ECORRUPT, -CFS_ECHECKSUM, other -errno / -CFS_E* */
	uint64_t commit_ver;    /* out: the version read (also with RESULT 0: an existing
				   chunk read at or past its end) */
	uint32_t crc;           /* out: CRC32C of the RESULT bytes now at dst (result > 0;
				   checked against the server's), so callers need no
				   pass of their own */
};

/* Reads N ranges (any mix of locations), in parallel per server, with
 * retries. FLAGS: STO_RF_*. Returns 0 (see each result) or -EINVAL/-ENOMEM. */
int storage_client_read(struct storage_client *c, struct storage_read *r, size_t n,
			uint32_t flags);

/* Reads one range like storage_client_read (R->result, R->commit_ver)
 * without waiting: DONE(ARG) runs exactly once when R is final, on an RPC
 * loop thread, on a retry thread of the client, on the short-circuit
 * path's completion thread (CFS_SHORT_READ, docs/rpc.md "Short-circuit
 * reads"), or on the calling thread before this returns. A short-circuit
 * read's first read of a chunk may wait for its mapping (one RPC). DONE must not block (it holds up other replies);
 * R and R->dst stay the caller's until then. A read whose first attempt
 * fails with a retryable error is retried by the blocking path on one of
 * up to 8 client threads. Returns 0, or -EINVAL / -ENOMEM (DONE not
 * called). */
int storage_client_read_async(struct storage_client *c, struct storage_read *r, uint32_t flags,
			      void (*done)(void *arg), void *arg);

/* Replaces chunk (INO, IDX) of chain LOC->chain (not 0: -EINVAL) with
 * LEN bytes (>= 1) only if at the chain's head it is at version EXPECT
 * with length EXPECT_LEN and CRC32C EXPECT_CRC (STO_WIF_ABSENT: no such
 * chunk; STO_WIF_PRESENT: any; length and CRC then ignored), decided there
 * under the chunk's lock (STO_MSG_WRITE_IF). -ESTALE: the condition did
 * not hold, nothing changed; -CFS_EBADMSG_TYPE: the head predates the
 * message (nothing written: the caller decides what to do without the
 * condition). Retried with one exactly-once key, like a write. OUT (may
 * be NULL) gets the chunk's new version, length and CRC. Thread-safe. */
int storage_client_write_if(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
			    uint32_t idx, uint32_t len, const void *data, uint64_t expect,
			    uint32_t expect_len, uint32_t expect_crc, struct sto_write_resp *out);
/* storage_client_write_if that, with EXPECT STO_WIF_ABSENT and CREATE_VER
 * != 0, makes the chunk at version CREATE_VER instead of 1 (OUT tells
 * which: a head from before that rule makes it at 1). CREATE_VER with
 * another EXPECT, or above STO_WIF_CREATE_VER_MAX: -EINVAL. */
int storage_client_write_if_at(struct storage_client *c, const struct storage_loc *loc,
			       uint64_t ino, uint32_t idx, uint32_t len, const void *data,
			       uint64_t expect, uint32_t expect_len, uint32_t expect_crc,
			       uint64_t create_ver, struct sto_write_resp *out);

/* Writes LEN bytes at OFF of chunk (INO, IDX). FLAGS: STO_WF_REPLACE,
 * STO_WF_NOFLUSH (cache mode, storage_proto.h) and/or STO_WF_IF_ABSENT
 * (-EEXIST when the chunk exists; on a chain only: a direct write, chain
 * 0, ignores it), or 0.
 * OUT (may be NULL) gets the chunk's new version, length and CRC. */
int storage_client_write(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
			 uint32_t idx, uint32_t off, uint32_t len, const void *data,
			 uint32_t flags, struct sto_write_resp *out);
/* storage_client_write with CRC, the CRC32C of the LEN bytes at DATA, from
 * the caller (no pass over DATA here). The head checks the bytes it writes
 * against CRC, so nothing else gets written. A checksum error is retried
 * as usual only when DATA still matches CRC (damage on the way); when it
 * does not (the caller's CRC is wrong, or DATA changed after it was
 * computed) the write fails at once with -CFS_ECHECKSUM. */
int storage_client_write_crc(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
                             uint32_t idx, uint32_t off, uint32_t len, const void *data,
                             uint32_t crc, uint32_t flags, struct sto_write_resp *out);
/* Cuts chunk (INO, IDX) to LEN bytes (0 removes it). On a chain, one
 * STO_TRUNCATE to its head, which cuts the chunk under the chunk's lock
 * and replicates the cut like a write: atomic against writes of the
 * chunk (each lands wholly before or after it on every replica), and
 * exactly-once like them. With direct addressing (LOC's chain 0), or a
 * head that answers -CFS_EBADMSG_TYPE (older than STO_TRUNCATE), a read
 * of the prefix then a replace, not ordered against concurrent writers.
 * -ENOENT if the chunk is absent; a chunk no longer than LEN is left
 * alone. Thread-safe. */
int storage_client_truncate(struct storage_client *c, const struct storage_loc *loc,
			    uint64_t ino, uint32_t idx, uint32_t len);
/* Removes chunks [BEGIN, END) of INO; *REMOVED (may be NULL) the count. */
int storage_client_remove(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
			  uint32_t begin, uint32_t end, uint32_t *removed);

/* An exactly-once key the caller picks for one request, in place of the
 * client's own (its id, a channel of the calling thread, that channel's
 * next seq). For a request made on behalf of another one that more than
 * one process may run (meta's cuts for a client's truncate, which the
 * client may resend to another meta instance): every process sends the
 * same key, so a chain's head applies the request once and answers a
 * late copy from the cache (or refuses it, when the channel has since
 * gone past its seq) instead of applying it over what was written after
 * the first copy was answered (craq_write.c "Late cuts"). CHANNEL must
 * not collide with the channels of clients of the same CLIENT id (those
 * count up from 1: a key's channel sets bit 63), and within one CHANNEL
 * SEQ only grows. */
struct storage_op_key {
	uint64_t client, channel, seq;
};
#define STORAGE_OP_KEY_CHANNEL (1ull << 63)
/* storage_client_truncate and storage_client_remove under KEY (NULL: the
 * client's own). The read-then-replace cut (direct addressing, a head
 * older than STO_TRUNCATE) carries no key: nothing fences it. */
int storage_client_truncate_as(struct storage_client *c, const struct storage_loc *loc,
                               uint64_t ino, uint32_t idx, uint32_t len,
                               const struct storage_op_key *key);
int storage_client_remove_as(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
                             uint32_t begin, uint32_t end, uint32_t *removed,
                             const struct storage_op_key *key);
/* Chunk metadata of (INO, IDX), or of INO's last chunk when LAST. */
int storage_client_query(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
			 uint32_t idx, int last, struct sto_query_resp *out);
/* Capacity, usage and chunk count of TARGET at ADDR. */
int storage_client_stat(struct storage_client *c, const char *addr, uint32_t target,
			struct sto_stat_resp *out);

/* Zero copy with same-host servers: SIZE bytes at BASE, mapped shared
 * from memfd FD sealed against shrinking (F_SEAL_SHRINK; FD is
 * duplicated, BASE must stay mapped until storage_client_mem_del or
 * storage_client_free). Reads whose destination and writes whose data
 * lie in it then move between the server and this memory with no copy in
 * this process (sc_shm.h sc_shm_mem_add, including what a read that
 * failed may still do). Optional: without it the arena copy is used. 0,
 * -EBADF (not a sealed memfd of SIZE), -EEXIST (overlaps memory added
 * before), -ENOSPC (15 already), -EOPNOTSUPP (shared memory off). */
int storage_client_mem_add(struct storage_client *c, int fd, void *base, uint64_t size);
/* Removes memory added at BASE (sc_shm.h sc_shm_mem_del): no request
 * started afterwards uses it, and the servers unmap it (SHM_UNREG). No
 * request with bytes in it may be in flight. Any thread. 0, -ENOENT,
 * -EOPNOTSUPP. */
int storage_client_mem_del(struct storage_client *c, const void *base);

/* FN (may be NULL) runs on a reading thread right before a short-circuit
 * read (docs/rpc.md "Short-circuit reads") waits for the disk or an RPC,
 * so an event loop can hand its work over first. Any thread. */
void storage_client_set_will_block(struct storage_client *c, void (*fn)(void));
/* Tests: sc_direct.h sc_direct_set_test_mid. */
void storage_client_set_sc_test_mid(struct storage_client *c,
				    void (*fn)(uint64_t ino, uint32_t idx));
/* Tests: sc_direct.h sc_direct_test_bad_map (-EOPNOTSUPP: no path). */
int storage_client_sc_test_bad_map(struct storage_client *c, const char *addr);
/* Read RPC counters (monotonic; any thread): what read combining did. */
struct storage_client_stats {
	uint64_t read_rpcs;      /* read requests sent */
	uint64_t read_groups;    /* per-server read groups they carried (> read_rpcs
				    when concurrent reads to one server shared RPCs) */
	uint64_t avoided_picks;  /* replica choices that skipped a server marked by a
				    recent connection failure or timeout */
	uint64_t shm_reads;      /* read RPCs answered over shared memory (same host;
				    docs/rpc.md "Shared memory") */
	uint64_t shm_fallbacks;  /* read RPCs that went over the socket instead */
	uint64_t shm_quarantined; /* arena grains never reused (see sc_shm.c) */
	uint64_t shm_writes;     /* writes whose data went through shared memory */
	uint64_t shm_write_fallbacks; /* writes that went over the socket instead */
	uint64_t shm_direct_reads;  /* shared-memory reads that landed in memory added with
				       storage_client_mem_add (no copy in this process) */
	uint64_t shm_direct_writes; /* shared-memory writes taken from such memory */
	uint64_t sc_reads;          /* short-circuit reads served from block files */
	uint64_t sc_fallbacks;      /* short-circuit reads tried that went over RPC */
	uint64_t sc_misses;         /* ... of which the block file read came short or failed */
	uint64_t sc_maps;           /* short-circuit mappings obtained */
	uint64_t sc_map_rpcs;       /* SC_MAP RPCs sent */
	uint64_t sc_map_many;       /* SC_MAP_MANY RPCs sent */
	uint64_t sc_stale;          /* ... found revoked or past their lease at a read */
	uint64_t sc_corrupt;        /* page CRC mismatches a short-circuit read saw */
	uint64_t sc_dead;           /* reads that found their storage service dead */
	uint64_t sc_regs;           /* short-circuit tables registered (sc_direct.h regs) */
	uint64_t sc_tables;         /* ... mapped now (sc_direct.h tables) */
	uint64_t sc_keys;           /* short-circuit chunk records now (sc_direct.h keys) */
	uint64_t sc_key_evictions;  /* ... freed by their bound (sc_direct.h key_evictions) */
	uint64_t sc_files;          /* short-circuit data files open now (sc_direct.h files) */
	uint64_t sc_cached_direct;  /* small async reads sent O_DIRECT without a page
				       cache probe (sc_direct.h cached_direct) */
	uint64_t shm_direct_lost;   /* failed reads into such memory whose region's
				       revocation was not confirmed (sc_shm.h) */
	uint64_t shm_unregs;        /* regions unregistered (memory removed, or revoked
				       after a failed read) */
};
void storage_client_get_stats(struct storage_client *c, struct storage_client_stats *out);

/* The current routing version (0 without mgmtd or before the first). */
uint64_t storage_client_routing_version(struct storage_client *c);
/* Waits until the routing cache holds version >= V. 0 or -CFS_ETIMEDOUT. */
int storage_client_wait_routing(struct storage_client *c, uint64_t v, uint32_t timeout_ms);

#endif
