/* kv.h - the transactional key-value interface (FoundationDB-shaped).
 *
 * Everything the metadata service and the cluster manager persist goes
 * through this interface; its contract is what keeps ChainFS consistent.
 *
 * Model. An engine is opened from a URL. A transaction (txn) reads one
 * consistent snapshot (its read version) and buffers its writes; commit
 * applies them atomically or not at all. Isolation is SERIALIZABLE,
 * phantoms included: a read-write txn commits only if nothing it read
 * without the snapshot flag (keys, ranges, explicit read-conflict keys and
 * ranges) changed between its read version and its commit, where "changed"
 * covers inserts into and deletes from a range as well as updates.
 * A backend may be stricter than this (report spurious conflicts), never
 * weaker, and never splits a transaction.
 *
 * URLs:
 *   lmdb:///abs/path[?opt=v&...]   embedded LMDB environment in directory
 *        path (created if missing). Options: sync=full (default: durable,
 *        group commit) | nometa (one fsync; power loss may undo the last
 *        batch) | window (no fsync in commit; a background fdatasync every
 *        sync_ms=N milliseconds, default 100, and at kv_flush: a commit
 *        survives a process crash at once and an OS crash or power loss
 *        once synced, i.e. within sync_ms or after kv_flush returns) |
 *        none (no fsync; survives a process crash, not an OS crash),
 *        map_size=BYTES (default 64 GiB, sparse; the database cannot grow
 *        past it: commits then fail with -ENOSPC; reopen with a larger
 *        map_size to grow it), max_readers=N (default 1024; a full table
 *        is -CFS_EUNAVAIL), group_wait_us=N (default 2000: how long a
 *        group-commit leader may wait for more committers, never more than
 *        half the previous batch's duration; 0 disables), writemap=1 (LMDB's
 *        MDB_WRITEMAP: commits store pages straight into the shared map
 *        instead of one pwrite per dirty page, same durability per sync
 *        mode; data.mdb's apparent size becomes map_size, a sparse file
 *        with 32 MiB allocated past the used end, so copy it with a
 *        hole-aware tool; when the disk cannot back that reserve, commits
 *        fail with -ENOSPC; the map is writable in the process, so a stray
 *        store of a memory bug could reach the database), compact=0|1
 *        (default 1: at open, if no other process has the environment
 *        open and its free list holds >= 4096 pages and more than half
 *        the file, data.mdb is first replaced by a compacting copy, which
 *        restores a fresh store's commit cost after large deletes; crash
 *        safe: copy, fsync, rename; the version counter restarts, which
 *        only ever increases within one open engine. A running engine
 *        does the same online once such a free list stops growing, if
 *        the live data is at most 64 MiB and no other process or engine
 *        has the environment: commits wait for the copy (the stall is
 *        logged, typically tens of ms), commits racing with it fail with
 *        -CFS_ECONFLICT (nothing applied; kv_run retries), and versions
 *        keep increasing). Several processes
 *        may share one environment; they must open it with the same
 *        map_size.
 *   etcd://host:port[,host:port...]/prefix   a real etcd v3 cluster; every
 *        key is stored under /prefix.
 *   mem://[?faults=RATE&seed=N]   in-memory, for tests: with RATE in [0,1]
 *        commits fail at that rate with -CFS_ECONFLICT, -CFS_ETOOOLD or
 *        -CFS_EMAYBE (which randomly did or did not apply the txn), and
 *        reads at RATE/4 with -CFS_ECONFLICT or -CFS_ETOOOLD.
 * One engine per cluster: the key space seen through an engine belongs to
 * that cluster (lmdb: the environment; etcd: the prefix; mem: the engine).
 *
 * Limits every caller stays under (the same on every backend, so code
 * tested on one runs on all; etcd's 128 ops / 128 compares derive them):
 *   - keys are 1..KV_MAX_KEY bytes; range bounds may be one byte longer
 *     (kv_key_after appends a 0 byte); values are 0..KV_MAX_VALUE bytes;
 *   - at most KV_MAX_WRITES write calls per txn: each kv_set, kv_clear,
 *     kv_clear_range, kv_atomic_add and kv_atomic_max counts one, even on
 *     the same key;
 *   - at most KV_MAX_READ_CONFLICTS read-conflict entries per read-write
 *     txn: a non-snapshot kv_get counts 1 (0 when the txn's own write
 *     answers it), kv_add_read_conflict and kv_add_read_conflict_range
 *     count 1, a non-snapshot kv_get_range counts 1 plus the number of
 *     stored pairs it examined (so keep such ranges small: limit 1 for an
 *     emptiness check; list directories with snapshot ranges);
 *   - at most KV_MAX_TXN_BYTES of keys plus values written per txn.
 * Reads in a read-only txn record nothing and have no count limit.
 * The call that would pass a limit fails with -CFS_ETOOLARGE (or -EINVAL
 * for an over-long key) and poisons the txn (below).
 *
 * Errors. Every int-returning call returns 0 (or a documented count) on
 * success, else a negative code:
 *   -CFS_ECONFLICT  a read-write txn saw a concurrent change: retry.
 *   -CFS_EMAYBE     commit outcome unknown (it may or may not have
 *                   applied): retry only if the txn is idempotent.
 *   -CFS_ETOOOLD    the read version is no longer readable: retry.
 *   -CFS_ETOOLARGE  a limit above was passed: do not retry; split the
 *                   work into several txns at the caller's level.
 *   -CFS_EUNAVAIL   backend unreachable or busy: retry with backoff.
 *   -EINVAL         bad argument (key empty or over KV_MAX_KEY, range
 *                   bound over KV_MAX_KEY + 1, begin > end, bad flags);
 *                   a value over KV_MAX_VALUE is -CFS_ETOOLARGE.
 *   -EROFS          write call on a read-only txn.
 *   -ENOSPC         lmdb: map_size reached (commit), or disk full.
 *   -ENOMEM, -EIO   as usual; -EIO on lmdb also covers a corrupt file.
 * Poisoning: after any call on a txn fails, the txn is poisoned: every
 * later call, kv_commit included, returns that same error without effect.
 * So a caller may skip checking individual writes and check only commit.
 *
 * Threads. A kv_engine is thread-safe: any thread may begin txns on it at
 * any time. A kv_txn is used by one thread at a time (it may move between
 * threads between calls). Calls may block (network, fsync in commit): do not
 * call them from an event-loop thread (STYLE.md §6); use a worker.
 *
 * Memory. Slices passed in are borrowed for the call only (the txn copies
 * what it keeps). Every slice, pair array and range returned by a txn is
 * owned by the txn and stays valid and unchanged until kv_txn_free, even
 * across later writes to the same key; never free or modify it.
 */
#ifndef CFS_KV_KV_H
#define CFS_KV_KV_H

#include <stddef.h>
#include <stdint.h>

#define KV_MAX_KEY 1024                     /* bytes per key */
#define KV_MAX_VALUE (100 * 1024)           /* bytes per value */
#define KV_MAX_WRITES 64                    /* write calls per txn */
#define KV_MAX_READ_CONFLICTS 64            /* read-conflict entries per txn */
#define KV_MAX_TXN_BYTES (1024 * 1024)      /* key + value bytes written per txn */

typedef struct kv_engine kv_engine;
typedef struct kv_txn kv_txn;

/* A borrowed byte string. p may be NULL only when n == 0. */
struct kv_slice {
	const void *p;
	size_t n;
};

struct kv_pair {
	struct kv_slice key;
	struct kv_slice val;
};

/* Result of kv_get_range. kvs has n pairs in key order (descending when
 * reverse); has_more != 0 when the limit stopped the scan before the end
 * of the range (resume with kv_range_continue; if everything left was
 * cleared by the txn's own writes, that continuation returns n == 0 and
 * has_more == 0). Owned by the txn. */
struct kv_range {
	struct kv_pair *kvs;
	int n;
	int has_more;
};

enum kv_txn_flags {
	KV_RDONLY = 1, /* read-only txn: writes fail with -EROFS, no conflicts */
};

/* Builds a slice over a NUL-terminated string (without the NUL). */
static inline struct kv_slice kv_str(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return (struct kv_slice){ s, n };
}

static inline struct kv_slice kv_mem(const void *p, size_t n)
{
	return (struct kv_slice){ p, n };
}

/* Opens the engine named by URL (see the file comment). On failure returns
 * -EINVAL (bad URL or option, unknown scheme), -ENOENT / -EACCES / -EIO /
 * -ENOSPC (lmdb open), -CFS_EUNAVAIL (etcd: no member reachable; lmdb:
 * reader table full) or -ENOMEM, and writes a one-line reason to err (errlen bytes, NUL-
 * terminated; err may be NULL). *out is set only on success.
 * Thread-safe. */
int kv_open(const char *url, kv_engine **out, char *err, size_t errlen);

/* Closes the engine. Every txn must have been freed before; NULL-safe. */
void kv_close(kv_engine *e);

/* Makes every txn committed before the call durable (on disk / on a
 * quorum) before it returns: a no-op where each commit already is (lmdb
 * sync=full, etcd, mem), an fdatasync for lmdb sync=window (shared by
 * concurrent callers) and nometa. 0 or -EIO. Thread-safe; blocks. */
int kv_flush(kv_engine *e);

/* 0 while the engine takes writes; else the negative code every commit
 * of a read-write txn with writes now returns, for good until the engine
 * is reopened: lmdb gives -EIO once a sync of its file failed, in this
 * process or another one on the environment (kv_lmdb.c sync_sticky: a
 * later commit could make durable a root that points at pages the disk
 * never got). Reads go on. etcd and mem: always 0. Thread-safe, cheap
 * (an atomic load); NULL-safe (0). */
int kv_write_error(kv_engine *e);

/* Backend name: "lmdb", "etcd" or "mem". Static string. */
/* Shutdown of a remote backend (etcd): every call in progress ends soon
 * (about a second at most) and every later one at once with -ECANCELED,
 * which kv_run does not retry; a service calls it when it must stop while
 * its KV is unreachable. Irreversible; only kv_close may follow. Local
 * backends ignore it. Thread-safe, NULL-safe. */
void kv_cancel(kv_engine *e);
const char *kv_engine_name(const kv_engine *e);

/* Begins a txn (flags: 0 for read-write, KV_RDONLY for read-only).
 * The read version may be fixed here or by the first read (etcd).
 * Returns 0, -CFS_EUNAVAIL (lmdb: reader table full even after clearing
 * stale readers; etcd: unreachable), -EIO or -ENOMEM. Free the txn with
 * kv_txn_free whatever happens later. Thread-safe on the engine. */
int kv_begin(kv_engine *e, unsigned flags, kv_txn **out);

/* Aborts the txn if not committed and frees it with everything it returned.
 * NULL-safe. */
void kv_txn_free(kv_txn *t);

/* The txn's read version (lmdb: LMDB txn id of its snapshot; etcd: store
 * revision R; mem: commit counter). Fixes the read version if not yet.
 * Versions only increase within one engine. 0 or a read error. */
int kv_read_version(kv_txn *t, int64_t *version);

/* Point read. Returns 1 and sets *val when the key exists, 0 (val set to
 * {NULL,0}) when absent, or <0. Sees the txn's own earlier writes (a
 * pending atomic add reads the stored value and applies the delta).
 * snapshot == 0 records a read conflict on the key in a read-write txn
 * (unless the txn's own set/clear answers it); snapshot != 0 records none
 * (FDB snapshotGet): use it only when a concurrent change to this key must
 * not abort the txn. */
int kv_get(kv_txn *t, struct kv_slice key, int snapshot, struct kv_slice *val);

/* Point reads of N keys in one call: the same answers, read conflicts and
 * limits as N kv_get calls in order (FOUND[i] 1 with VALS[i] set, or 0
 * with VALS[i] {NULL,0}; a non-snapshot read in a read-write txn counts
 * one conflict entry per key the txn's own writes do not answer), but a
 * remote backend asks for all of them in one round trip (etcd: one Txn of
 * Range ops at the read version per 128 keys; lmdb and mem read them one
 * by one, which costs nothing there). Keys may repeat. Returns 0 or <0
 * (VALS and FOUND then unspecified; the txn is poisoned). Values are owned
 * by the txn as for kv_get. */
int kv_get_multi(kv_txn *t, int n, const struct kv_slice *keys, int snapshot,
		 struct kv_slice *vals, int *found);

/* Range read over [begin, end): begin.n == 0 means the first key, end.n ==
 * 0 the end of the key space. Returns up to limit pairs (limit <= 0: no
 * limit) in ascending order, or descending from the end when reverse != 0,
 * merged with the txn's own writes. out->has_more tells whether pairs
 * remain. Non-snapshot reads in a read-write txn record a conflict on the
 * part of the range examined (inserts, updates and deletes there abort the
 * txn at commit) and count against KV_MAX_READ_CONFLICTS (see above).
 * 0 or <0; -EINVAL when begin > end (both non-empty). */
int kv_get_range(kv_txn *t, struct kv_slice begin, struct kv_slice end, int limit,
		 int snapshot, int reverse, struct kv_range *out);

/* Narrows [*begin, *end) to what remains after R, the result of a
 * kv_get_range over it with the same reverse flag and R->has_more != 0:
 * forward sets *begin just past R's last key, reverse sets *end to R's last
 * key. The new bound is owned by the txn. 0, -EINVAL (R empty) or -ENOMEM. */
int kv_range_continue(kv_txn *t, const struct kv_range *r, int reverse,
		      struct kv_slice *begin, struct kv_slice *end);

/* The smallest key greater than KEY (KEY with a 0 byte appended), owned by
 * the txn; {NULL,0} if out of memory (poisons the txn with -ENOMEM). */
struct kv_slice kv_key_after(kv_txn *t, struct kv_slice key);

/* Adds KEY, or [begin, end), to the txn's read-conflict set as if it had
 * been read without the snapshot flag, without returning anything.
 * No-op (0) in a read-only txn. 0 or <0. */
int kv_add_read_conflict(kv_txn *t, struct kv_slice key);
int kv_add_read_conflict_range(kv_txn *t, struct kv_slice begin, struct kv_slice end);

/* Buffered writes, applied at commit in call order; later reads in the
 * txn see them. kv_clear_range takes bounds as kv_get_range does (empty
 * begin: from the first key; empty end: to the last). They add no read conflict. 0 or <0 (-EROFS, -EINVAL,
 * -CFS_ETOOLARGE, -ENOMEM). */
int kv_set(kv_txn *t, struct kv_slice key, struct kv_slice val);
int kv_clear(kv_txn *t, struct kv_slice key);
int kv_clear_range(kv_txn *t, struct kv_slice begin, struct kv_slice end);
/* Adds DELTA to the value at KEY read as a signed little-endian integer:
 * absent counts as 0, a shorter value is zero-extended, a longer one is
 * truncated to 8 bytes; the result is stored as 8 bytes LE, wrapping on
 * overflow. Adds no read conflict on lmdb and mem (etcd records one, which
 * is stricter). */
int kv_atomic_add(kv_txn *t, struct kv_slice key, int64_t delta);
/* Stores max(stored value, VALUE) at KEY, both read as signed 64-bit
 * little-endian integers as kv_atomic_add reads them (absent: VALUE).
 * Conflicts as kv_atomic_add: none on lmdb and mem, one on etcd. Mixing
 * kv_atomic_add and kv_atomic_max on one key in one txn is -EINVAL.
 * Counts as one write call. */
int kv_atomic_max(kv_txn *t, struct kv_slice key, int64_t value);

/* Commits. A read-only txn, or a read-write txn with no writes, commits
 * without I/O (returns 0, *version = -1): its reads were a consistent
 * snapshot. Otherwise returns 0 once the writes are applied (and, for
 * lmdb sync=full, on disk), with *version the commit version; or one of
 * -CFS_ECONFLICT, -CFS_EMAYBE, -CFS_ETOOOLD, -CFS_ETOOLARGE, -CFS_EUNAVAIL,
 * -ENOSPC, -EIO, -ENOMEM (nothing applied, except -CFS_EMAYBE). version may
 * be NULL. After kv_commit the txn accepts only kv_txn_free (other calls
 * return -EINVAL); returned memory stays valid until then. */
int kv_commit(kv_txn *t, int64_t *version);

/* Which codes kv_run retries: conflict, too-old, unavailable, and
 * maybe-committed when idempotent. */
int kv_is_retryable(int err, int idempotent);

/* A transaction body: reads and writes on T, returns 0 to commit or <0 to
 * abort the attempt with that code (a retryable code is retried like a
 * commit failure). Must not commit or free T; may run several times. */
typedef int (*kv_txn_fn)(kv_txn *t, void *arg);

struct kv_run_opts {
	unsigned flags;      /* KV_RDONLY or 0 */
	int idempotent;      /* != 0: -CFS_EMAYBE is retried; else returned */
	int max_retries;     /* attempts after the first; 0 means 20 */
	int backoff_min_us;  /* first backoff; 0 means 100 us */
	int backoff_max_us;  /* backoff cap; 0 means 100 ms */
};

struct kv_run_stats {
	int retries;         /* attempts made after the first */
	int64_t version;     /* commit version of the successful attempt, or -1 */
	int alone;           /* 1: the successful attempt's writes went onto its
	                        own read snapshot with no other write between
	                        (lmdb only, see kv_reports_alone), so what its body
	                        read, merged with its own writes, is exactly the
	                        state its commit made; 0: unknown. A read-only
	                        or write-free attempt: 0. */
};

/* 1 when E's backend fills kv_run_stats.alone (lmdb), else 0 (etcd, mem):
 * a caller that would read something inside its txn only to use it when
 * alone skips the read where it can never be used. */
int kv_reports_alone(const kv_engine *e);

/* Runs FN in a fresh txn, commits, and on a retryable error (see
 * kv_is_retryable) sleeps a jittered exponential backoff and runs again,
 * up to max_retries more times. opts and stats may be NULL (defaults:
 * read-write, not idempotent). Returns 0 or the last error; on
 * -CFS_EMAYBE with idempotent == 0 the caller must find out whether the
 * txn applied. Thread-safe; blocks. */
int kv_run(kv_engine *e, const struct kv_run_opts *opts, kv_txn_fn fn, void *arg,
	   struct kv_run_stats *stats);

#endif
