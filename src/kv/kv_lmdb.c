/* kv_lmdb.c - the embedded LMDB backend (lmdb:///path), with group commit.
 *
 * Reads. Every txn reads from its own LMDB read-only txn (a snapshot; the
 * environment uses MDB_NOTLS so a snapshot is tied to the handle, not the
 * thread, and one thread may hold several). Reset read handles are pooled
 * and renewed, which keeps begin cheap. Returned values point into the map
 * and stay valid while the snapshot is open, i.e. until kv_txn_free.
 *
 * Writes and serializability. Writes are buffered by kv.c. At commit the
 * txn joins a queue; one committing thread at a time becomes the leader,
 * takes the whole queue, and applies it in ONE LMDB write txn: each member
 * in a nested txn (so one member failing does not spoil the others), then
 * one commit, i.e. one sync for the batch. Everyone else sleeps on a futex
 * in its own request until the leader finishes; then the oldest queued
 * thread leads. Concurrent committers thus share fsyncs. Before taking
 * the queue the leader may briefly gather (see gather()) so that many
 * committers form one batch instead of two alternating ones.
 *
 * Validation is value-based: each non-snapshot read records exactly what
 * it saw (a key's value or absence, a range's pairs over the part
 * examined). Inside the nested write txn the leader re-reads those keys and
 * ranges and compares bytes; any difference (update, insert, delete) means
 * the txn's reads are not what the database holds now, and it fails with
 * -CFS_ECONFLICT. If the reads are all unchanged, executing the txn at the
 * commit point gives the same reads and writes, so the history is
 * serializable in commit order, phantoms included. Value comparison (rather
 * than per-key versions) needs no extra bytes on disk, sees range deletes,
 * and works when several PROCESSES share the environment: LMDB's writer
 * lock is process-shared, so every batch of every process validates
 * against the latest state. If no write txn committed since the txn's
 * snapshot (LMDB txn ids are global) and no earlier member of the batch
 * wrote, validation is skipped.
 *
 * Invariants: a recorded conflict never points at memory freed before the
 * txn (keys are arena copies or map pointers of the txn's own snapshot);
 * only the leader thread touches the write txn; at most one thread leads
 * (e->leading, set from becoming leader until it hands over or finds the
 * queue empty); queue, counters and leading are guarded by gc_mu.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/block_hint.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "kv/kv.h"
#include "kv/kv_int.h"

#define LMDB_DEFAULT_MAP ((uint64_t)64 << 30)
#define LMDB_DEFAULT_READERS 1024
#define LMDB_POOL_MAX 256   /* reset read handles kept for reuse */
#define LMDB_BATCH_MAX 1024 /* txns per write txn */
#define READER_CHECK_NS 1000000000ull /* stale-reader checks while committing */

/* writemap=1: a batch writes its pages straight into the shared map, and a
 * store into a hole of the sparse file on a full disk is a SIGBUS, not an
 * error. So the file is kept allocated (fallocate) WM_ROOM bytes past the
 * end LMDB uses, and a batch starts only while WM_NEED bytes of that are
 * left, which a batch capped at WM_BATCH_CALLS write calls and
 * WM_BATCH_BYTES key + value bytes cannot outgrow (each call dirties at
 * most a leaf-to-root path and its splits, 2 x 5 pages; values once more
 * in overflow or split pages; 1 MiB for the free list and meta pages).
 * When the disk cannot give more, batches fail with -ENOSPC instead. */
#define WM_BATCH_CALLS 256
#define WM_BATCH_BYTES ((uint64_t)4 << 20)
#define WM_NEED (WM_BATCH_CALLS * 10 * (uint64_t)4096 + 2 * WM_BATCH_BYTES + ((uint64_t)1 << 20))
#define WM_ROOM ((uint64_t)32 << 20)

/* compact=1: rewrite the file at open when its free list holds at least
 * COMPACT_MIN_FREE pages and more pages than the data (see compact_at_open). */
#define COMPACT_MIN_FREE 4096
/* compact=1 also compacts a running engine (compact_online), when the live
 * pages are at most COMPACT_ONLINE_MAX bytes (the copy, during which
 * commits wait, then takes well under a second), under a lower bar than at
 * open: at least COMPACT_ONLINE_MIN_FREE free pages, and at least a
 * 1/COMPACT_ONLINE_FRAC share of the file. Why lower: deleting 20,000
 * files leaves meta ~1,000 free pages beside ~1,650 live ones (mostly
 * idempotency records), which the open rule ignores, and the creates that
 * follow then cost meta 27-44 us of CPU each instead of 22-29 us (see
 * "compaction at open" for why) until they have used the list up; a store
 * without large deletes keeps a few dozen free pages, far below the bar.
 * The background thread looks at the free list every COMPACT_CHECK_MS
 * (a walk of about a millisecond while the list is long, microseconds
 * otherwise) and compacts once the list qualifies and has stopped growing
 * (a large delete is over: compacting in its middle would leave the rest
 * of its free pages behind); the period is short because creates right
 * after a delete use such a list up within 1-3 s. After a compaction that
 * stalled commits for S, it waits at least COMPACT_DUTY x S before the
 * next (commits stalled at most ~5% of the time); COMPACT_DRAIN_MS bounds
 * the wait for open txns. */
#define COMPACT_ONLINE_MAX ((uint64_t)64 << 20)
#define COMPACT_ONLINE_MIN_FREE 512
#define COMPACT_ONLINE_FRAC 4
#define COMPACT_CHECK_MS 100
#define COMPACT_DUTY 20
#define COMPACT_DRAIN_MS 250
/* Hand-off (see "online compaction"): how long an engine asks the other
 * processes to let go before it gives up for this round, and how long it
 * then waits before it asks again. */
#define COMPACT_ASK_MS 2000
#define COMPACT_ASK_BACKOFF_MS 60000

enum compact_mode { COMPACT_FORCE, COMPACT_RULE, COMPACT_SETTLED };

enum lmdb_sync { LMDB_SYNC_FULL, LMDB_SYNC_NOMETA, LMDB_SYNC_NONE, LMDB_SYNC_WINDOW };

enum { REQ_WAIT, REQ_DONE, REQ_LEAD };

/* A queued commit, on its committer's stack. After state leaves REQ_WAIT
 * the committer may return at once, so the leader touches nothing of it
 * after storing state except the futex wake (harmless on a stale address). */
struct lmdb_req {
	struct kv_txn *t;
	int rc;
	int64_t version;
	_Atomic uint32_t state;  /* REQ_*; futex word */
	struct lmdb_req *next;
};

/* A reset read-only txn kept for reuse, with the cursor its last user
 * opened (NULL: none), which LMDB lets a renewed read txn take over
 * (mdb_cursor_renew): the range reads of the next txn then cost no
 * mdb_cursor_open's malloc and mdb_cursor_close's free. */
struct pooled_read {
	MDB_txn *r;
	MDB_cursor *cur;
};

/* Ends a pooled read handle for good (the cursor first: a read-only txn's
 * cursors are closed explicitly). */
static void pooled_read_abort(struct pooled_read *pr)
{
	if (pr->cur)
		mdb_cursor_close(pr->cur);
	mdb_txn_abort(pr->r);
	pr->cur = NULL;
	pr->r = NULL;
}

struct lmdb_engine {
	struct kv_engine base;
	MDB_env *env;
	MDB_dbi dbi;
	char *path;
	enum lmdb_sync sync;
	int writemap;                   /* MDB_WRITEMAP: batches apply flat (no nested txns) */
	uint64_t map_size;
	uint64_t psize;                 /* LMDB page size */
	uint64_t alloc_end;             /* writemap: file bytes known allocated (leader only) */
	int lock_fd;                    /* lock.mdb, open until the engine closes; -1 if none */
	/* LMDB's writer mutex word in lock.mdb, mapped read-only (see "Waits
	 * and the block hint"); NULL when its place could not be confirmed:
	 * then every write txn counts as a wait. */
	const _Atomic uint32_t *wlock;
	void *wlock_map;
	/* lock.mdb for wlock_map, open until the engine closes: closing any
	 * descriptor of the file drops this process's fcntl locks on it,
	 * LMDB's included (as for lock_fd); -1 if none */
	int wlock_fd;
	int counted;                    /* counted in lmdb_nopen */
	unsigned env_flags;             /* mdb_env_open flags, for reopening */
	uint64_t readers;               /* max_readers */
	int online;                     /* compact=1: online compaction (see compact_online) */
	/* Versions are id_base + LMDB's txn id: a compacting copy restarts
	 * LMDB's count, so an online compaction raises id_base to keep the
	 * engine's versions increasing. Written only while no txn is open
	 * and no batch runs (compact_online). */
	_Atomic int64_t id_base;

	pthread_mutex_t pool_mu;        /* guards pool, npool, nactive, swapping */
	struct pooled_read pool[LMDB_POOL_MAX]; /* reset read-only handles */
	int npool;
	int nactive;                    /* txns holding a read handle of env */
	int swapping;                   /* compact_online: txn_begin waits on swap_cv */
	pthread_cond_t swap_cv;         /* nactive fell to 0, or swapping ended */

	pthread_mutex_t gc_mu;          /* guards the fields down to last_ns */
	struct lmdb_req *q_head, *q_tail;
	int qlen;
	int leading;                    /* a thread is gathering or applying a batch */
	int compacting;                 /* compact_online holds leading: commits fail */
	int open_rw;                    /* read-write txns begun, not yet queued or freed */
	int gathering;                  /* the leader waits on lead_cv */
	pthread_cond_t lead_cv;         /* signalled when gathering may stop */
	int target;                     /* committers seen at the previous batch's end */
	uint64_t last_ns;               /* how long the previous batch took */
	uint64_t wait_max_ns;           /* cap on gathering (group_wait_us) */

	atomic_ullong nbatches, ntxns;  /* group-commit statistics */
	uint64_t kill_in_write, nwrites; /* test hook (kill_in_write); leader only */
	uint64_t sync_fail, nsync_calls; /* test hook (CFS_TEST_LMDB_SYNC_FAIL); sync_mu */
	int sync_err;                   /* ERROR state: the first failed sync's -errno,
					 * returned by every later flush; sync_mu */
	/* -EIO once a sync of the store failed, here or in another process
	 * (sync_sticky, failed_elsewhere): every commit is refused from then
	 * on; 0 before. Set once, never cleared: a reopened engine is new. */
	_Atomic int write_err;
	uint64_t failed_seen;           /* sync.failed's token at open, 0: none
	                                 * (failed_elsewhere) */
	int failed_fd;                  /* sync.failed, open with an OFD lock
	                                 * while this engine, whose sync failed,
	                                 * is open (mark_failed); -1 */
	uint64_t readers_checked_ns;    /* last stale-reader check (batch_begin); leader only */

	/* sync=window (see "Windowed sync" below). */
	_Atomic int64_t committed_id;   /* newest write txn id committed (page cache) */
	_Atomic int64_t synced_id;      /* newest write txn id known on disk */
	pthread_mutex_t sync_mu;        /* one fdatasync at a time; guards sync_stop */
	pthread_cond_t sync_cv;         /* wakes the sync thread early (stop) */
	pthread_t sync_th;
	int sync_started, sync_stop;
	uint32_t sync_ms;               /* background sync period */
	atomic_ullong nsyncs;           /* fdatasyncs done by flush or the sync thread */
	int sync_lock_fd;               /* sync.lock (see "one background syncer"); -1 */
	int sync_owner;                 /* holds sync.lock: the background syncer */

	/* Online compaction (bg thread, or kv_lmdb_compact). */
	pthread_mutex_t compact_mu;     /* one compaction at a time */
	uint64_t next_check_ns;         /* bg thread: next look at the free list */
	uint64_t next_allowed_ns;       /* bound on the share of time spent stalled */
	uint64_t prev_nfree;            /* free pages at the previous look (compact_mu) */
	uint64_t ask_since_ns;          /* compact.want written then; 0: not asking (compact_mu) */
	atomic_ullong ncompactions;
	atomic_ullong last_stall_ns;
};

enum lrec_kind { LREC_KEY, LREC_RANGE };

/* One recorded read: what must still hold at commit. */
struct lrec {
	enum lrec_kind kind;
	struct kv_slice b, e;   /* KEY: b is the key; RANGE: [b, e), e.n==0 unbounded */
	int found;              /* KEY */
	struct kv_slice val;    /* KEY, when found */
	const struct kv_pair *kvs; /* RANGE: pairs seen, in scan order */
	int n;
	int reverse;
};

struct lmdb_txn {
	MDB_txn *r;          /* read snapshot */
	MDB_cursor *cur;     /* lazily opened on r */
	int64_t rid;         /* snapshot's txn id */
	int counted;         /* counted in open_rw */
	struct lrec *rec;    /* KV_MAX_READ_CONFLICTS entries, lazily in arena */
	int nrec;
};

static int lmdb_err(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_READERS_FULL:
	case MDB_MAP_RESIZED:
		return -CFS_EUNAVAIL;
	case MDB_TXN_FULL:
	case MDB_BAD_VALSIZE:
		return -CFS_ETOOLARGE;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_PANIC:
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
	case MDB_BAD_TXN:
		return -EIO;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

/* The engine's version of LMDB txn T (see id_base). */
static int64_t gid(struct lmdb_engine *e, MDB_txn *t)
{
	return atomic_load_explicit(&e->id_base, memory_order_relaxed) + (int64_t)mdb_txn_id(t);
}

static MDB_val mv(struct kv_slice s)
{
	return (MDB_val){ s.n, (void *)s.p };
}

static struct kv_slice sl(MDB_val v)
{
	return (struct kv_slice){ v.mv_data, v.mv_size };
}

/* ---- windowed sync ------------------------------------------------------ */

/* sync=window. Commits write their pages with pwrite and no fdatasync
 * (MDB_NOSYNC), so a committed txn is in the kernel's page cache: it
 * survives the death of this process (kill -9), not an OS crash or power
 * loss. A background thread makes every commit durable within sync_ms
 * (one fdatasync of the data file per period, only when something was
 * committed), and kv_flush makes everything committed so far durable
 * before it returns (fsync(2) through the mount). As LMDB documents for
 * MDB_NOSYNC, what a power loss inside the window keeps is the state of
 * some earlier commit only if the file system preserves write order;
 * sync=full (a sync per group commit) is the mode without that caveat.
 * After a failed sync every later flush fails (sync_sticky).
 *
 * committed_id/synced_id are LMDB write txn ids: a flush that finds
 * synced_id >= what is committed when it takes sync_mu has nothing to do,
 * so concurrent flushes queued on sync_mu share one fdatasync.
 *
 * Several processes. Another process (a mount running meta in-process,
 * meta_local.h) commits into the same file, and a flush here must cover
 * its commits too: fsync(2) through the mount reaches the meta service's
 * kv_flush, which may have committed nothing itself since its last sync.
 * So the target is the newer of this process's committed_id and the
 * environment's last txn id (LMDB's meta page, shared by every process);
 * mdb_env_sync syncs the whole file whoever wrote it. e->env is read
 * under sync_mu (compact_online swaps it under that lock). */
/* mdb_env_sync(e->env, 1) under sync_mu; every sync of the engine goes
 * through here. Test hook (CFS_TEST_LMDB_SYNC_FAIL=N): the Nth fails with
 * EIO without syncing, as after a writeback error whose pages the kernel
 * dropped. */
static int env_sync(struct lmdb_engine *e)
{
	if (e->sync_fail && ++e->nsync_calls == e->sync_fail)
		return EIO;
	return mdb_env_sync(e->env, 1);
}

/* Under sync_mu: the result of a sync that returned RC, given the ones
 * before. A failed sync puts the engine in an ERROR state (fsyncgate):
 * Linux reports a writeback error to one fsync of a file description and
 * may have dropped the pages it could not write, so a later sync that
 * succeeds does not make them durable. Every later flush returns the
 * first error until the engine is reopened, and every later commit is
 * refused (refuse_writes): a commit after the failure would write a new
 * root that may point at pages the disk never got, and a later sync that
 * succeeds (ours, or the kernel's own writeback) would make that root
 * durable, i.e. a store that reads back corrupt after a power loss or
 * once the clean-marked pages are evicted. Syncs still run. */
static void refuse_writes(struct lmdb_engine *e, int rc, const char *why);
static void mark_failed(struct lmdb_engine *e);

static int sync_sticky(struct lmdb_engine *e, int rc)
{
	if (rc && !e->sync_err) {
		e->sync_err = rc;
		refuse_writes(e, rc, "a sync of the store failed");
		mark_failed(e);
	}
	return e->sync_err;
}

/* Several processes. The other processes on the environment (a mount
 * running meta in-process) commit into the same file, mostly without
 * syncing it themselves (the background syncer is one process), so they
 * would not see the error. The engine that saw it writes a token of the
 * failure (its CLOCK_REALTIME ns, mixed with its pid) into
 * DIR/sync.failed, and every engine's background thread looks at that
 * file each period (a stat, and an 8-byte read when it exists): one that
 * finds a token other than the one it found at open (none, or an older
 * failure's) refuses writes from then on; an engine opened after the
 * failure (the restarted meta) found that token at open and ignores it,
 * unless the engine that wrote it is still open (its OFD lock on the file,
 * held until it closes or its process dies: failed_holder): then the new
 * engine (a mount starting meta in-process beside the failed meta
 * service) refuses writes from its open.
 * A token, not a time compared with the open's: a clock stepped back
 * between the failure and the restart does not stop the restarted meta.
 * The file stays as a record for the operator. A commit that another process
 * makes between the failure and its next look (one period) is taken, as
 * is one of this process that raced with the failing sync: the error
 * itself arrives up to a period after the writeback failed, so a window
 * of that order is left either way. */
#define SYNC_FAILED_FILE "sync.failed"

static void refuse_writes(struct lmdb_engine *e, int rc, const char *why)
{
	int expect = 0;

	if (!atomic_compare_exchange_strong_explicit(&e->write_err, &expect, -EIO,
	                                             memory_order_release, memory_order_relaxed))
		return;
	LOG_ERR("kv",
	        "lmdb: %s (%s): path=%s: writes are refused with EIO from now on, "
	        "reads go on; the pages it could not write may be lost, so no commit may "
	        "follow them. Remedy: repair the disk, then restart meta (the store "
	        "reopens with what its file holds; commits since the last good sync "
	        "may be missing)",
	        why, cfs_strerror(rc), e->path);
}

/* Under sync_mu, after this engine's sync failed: tells the others. */
static void mark_failed(struct lmdb_engine *e)
{
	char p[PATH_MAX];
	struct timespec ts;
	uint64_t t;
	int fd;

	clock_gettime(CLOCK_REALTIME, &ts);
	t = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
	t += !t; /* 0 reads as "none" */
	if ((size_t)snprintf(p, sizeof(p), "%s/" SYNC_FAILED_FILE, e->path) >= sizeof(p))
		return;
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || pwrite(fd, &t, sizeof(t), 0) != (ssize_t)sizeof(t))
		LOG_ERR("kv",
		        "lmdb: cannot write %s: %s: other processes on the store "
		        "go on writing",
		        p, cfs_strerror(-errno));
	/* Held while this engine is open: an engine opened meanwhile finds
	 * the failure is not of a store since reopened (failed_holder). */
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fd >= 0 && e->failed_fd < 0 && fcntl(fd, F_OFD_SETLK, &fl) == 0)
		e->failed_fd = fd;
	else if (fd >= 0)
		close(fd);
}

/* 1 when an engine whose sync of the store failed is open now (in any
 * process: its lock on DIR/sync.failed, mark_failed), else 0. */
static int failed_holder(struct lmdb_engine *e)
{
	char p[PATH_MAX];
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
	int fd, held = 0;

	if ((size_t)snprintf(p, sizeof(p), "%s/" SYNC_FAILED_FILE, e->path) >= sizeof(p))
		return 0;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fcntl(fd, F_OFD_GETLK, &fl) == 0)
		held = fl.l_type != F_UNLCK;
	close(fd);
	return held;
}

/* The token in DIR/sync.failed, or 0 (no file, or not written yet). */
static uint64_t failed_token(struct lmdb_engine *e)
{
	char p[PATH_MAX];
	struct stat st;
	uint64_t t = 0;
	int fd;

	if ((size_t)snprintf(p, sizeof(p), "%s/" SYNC_FAILED_FILE, e->path) >= sizeof(p) ||
	    stat(p, &st))
		return 0;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (pread(fd, &t, sizeof(t), 0) != (ssize_t)sizeof(t))
		t = 0;
	close(fd);
	return t;
}

/* Background thread: another process's sync of the store failed after
 * this engine opened (see SYNC_FAILED_FILE). */
static void failed_elsewhere(struct lmdb_engine *e)
{
	uint64_t t;

	if (atomic_load_explicit(&e->write_err, memory_order_relaxed))
		return;
	t = failed_token(e);
	if (t && t != e->failed_seen)
		refuse_writes(e, -EIO, "another process's sync of the store failed");
}

static int window_sync(struct lmdb_engine *e)
{
	MDB_envinfo info;
	int rc = 0;

	pthread_mutex_lock(&e->sync_mu);
	/* What was committed when the sync starts is covered by it. */
	int64_t target = atomic_load_explicit(&e->committed_id, memory_order_acquire);
	if (e->env && !mdb_env_info(e->env, &info)) {
		int64_t any = atomic_load_explicit(&e->id_base, memory_order_relaxed) +
			      (int64_t)info.me_last_txnid;
		if (any > target)
			target = any;
	}
	if (e->env && atomic_load_explicit(&e->synced_id, memory_order_acquire) < target) {
		rc = env_sync(e);
		if (rc == 0) {
			atomic_store_explicit(&e->synced_id, target, memory_order_release);
			atomic_fetch_add_explicit(&e->nsyncs, 1, memory_order_relaxed);
		} else {
			rc = lmdb_err(rc); /* logged by sync_sticky */
		}
	}
	rc = sync_sticky(e, rc);
	pthread_mutex_unlock(&e->sync_mu);
	return rc;
}

/* One background syncer per store. Every process that has the environment
 * open with sync=window (the meta service, and a mount running meta
 * in-process) would otherwise fdatasync the same file every period. The
 * background sync is done by the engine that holds an exclusive flock on
 * DIR/sync.lock: the first to take it keeps it until it closes (or its
 * process dies: the kernel drops the lock), and the others try again every
 * period, so within one period of the holder's end another engine syncs.
 * The holder's window_sync targets LMDB's last txn id, so it covers every
 * process's commits; each process's kv_flush (fsync) still syncs itself.
 * With `chainfs up` meta opens first and holds it; when meta is down, the
 * mount's engine takes it over and its commits stay within the window.
 * Called by the sync thread only. If the lock file cannot be opened the
 * engine syncs (the old behaviour: never less durable).
 *
 * A holder that is alive but does not sync (SIGSTOP, a debugger, a sync
 * thread stuck) keeps the lock, and the others' commits would stay in the
 * page cache for as long as it lasts: the in-process meta acknowledges
 * them without the service. So the holder writes a heartbeat into
 * sync.lock after every background sync (sync_beat: the CLOCK_MONOTONIC
 * time the sync started; everything committed before it is durable), and
 * an engine that does not hold the lock syncs itself at its period while
 * that heartbeat is older than SYNC_BEAT_LATE periods, and at least
 * SYNC_BEAT_LATE_MIN_MS (or unreadable): a holder's late sync on a loaded
 * host costs an extra fdatasync, not a missing one. With the default
 * 100 ms period a stopped holder's share of the window is then 400 ms at
 * most, instead of unbounded. */
#define SYNC_BEAT_LATE 3
#define SYNC_BEAT_LATE_MIN_MS 250

static void sync_beat(struct lmdb_engine *e, uint64_t t)
{
	if (e->sync_owner && pwrite(e->sync_lock_fd, &t, sizeof(t), 0) != (ssize_t)sizeof(t))
		LOG_WARN("kv", "lmdb: sync.lock heartbeat: path=%s: %s", e->path,
			 cfs_strerror(-errno));
}

static int sync_holder(struct lmdb_engine *e)
{
	if (e->sync_owner)
		return 1;
	if (e->sync_lock_fd < 0) {
		char p[PATH_MAX];
		if ((size_t)snprintf(p, sizeof(p), "%s/sync.lock", e->path) >= sizeof(p))
			return 1;
		e->sync_lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (e->sync_lock_fd < 0)
			return 1;
	}
	if (flock(e->sync_lock_fd, LOCK_EX | LOCK_NB)) {
		uint64_t beat;
		if (errno != EWOULDBLOCK ||
		    pread(e->sync_lock_fd, &beat, sizeof(beat), 0) != (ssize_t)sizeof(beat))
			return 1;
		uint64_t late_ms = (uint64_t)SYNC_BEAT_LATE * e->sync_ms;
		if (late_ms < SYNC_BEAT_LATE_MIN_MS)
			late_ms = SYNC_BEAT_LATE_MIN_MS;
		/* A beat from the future (another boot's): late too. */
		return clock_mono_ns() - beat > late_ms * 1000000u;
	}
	e->sync_owner = 1;
	LOG_INFO("kv", "lmdb: background sync of %s by this process (pid %d)", e->path,
		 (int)getpid());
	return 1;
}

int kv_lmdb_sync_owner(kv_engine *base)
{
	struct lmdb_engine *e = (struct lmdb_engine *)base;
	return base->ops == &kv_lmdb_ops && e->sync_owner;
}

static void compact_tick(struct lmdb_engine *e);

/* The background thread: the window's sync (sync=window) and the online
 * compaction's look at the free list (compact=1). */
static void *sync_main(void *arg)
{
	struct lmdb_engine *e = arg;
	int window = e->sync == LMDB_SYNC_WINDOW;
	uint64_t period = (uint64_t)(window ? e->sync_ms : 100) * 1000000u;

	pthread_mutex_lock(&e->sync_mu);
	while (!e->sync_stop) {
		struct timespec ts;
		uint64_t until = clock_mono_ns() + period;
		ts.tv_sec = (time_t)(until / 1000000000u);
		ts.tv_nsec = (long)(until % 1000000000u);
		pthread_cond_timedwait(&e->sync_cv, &e->sync_mu, &ts);
		if (e->sync_stop)
			break;
		pthread_mutex_unlock(&e->sync_mu);
		failed_elsewhere(e);
		if (window && sync_holder(e)) {
			uint64_t t = clock_mono_ns();
			if (window_sync(e) == 0)
				sync_beat(e, t);
		}
		if (e->online)
			compact_tick(e);
		pthread_mutex_lock(&e->sync_mu);
	}
	pthread_mutex_unlock(&e->sync_mu);
	return NULL;
}

static int lmdb_flush(struct kv_engine *base)
{
	struct lmdb_engine *e = (struct lmdb_engine *)base;

	switch (e->sync) {
	case LMDB_SYNC_FULL:
		return 0; /* every commit was durable when it returned */
	case LMDB_SYNC_NOMETA: {
		int rc;
		pthread_mutex_lock(&e->sync_mu); /* e->env is stable (compact_online) */
		rc = sync_sticky(e, lmdb_err(env_sync(e)));
		pthread_mutex_unlock(&e->sync_mu);
		return rc;
	}
	default:
		return window_sync(e);
	}
}

void kv_lmdb_sync_stats(kv_engine *base, int64_t *committed, int64_t *synced, uint64_t *syncs)
{
	struct lmdb_engine *e = (struct lmdb_engine *)base;

	*committed = *synced = 0;
	*syncs = 0;
	if (base->ops != &kv_lmdb_ops)
		return;
	*committed = atomic_load_explicit(&e->committed_id, memory_order_acquire);
	*synced = atomic_load_explicit(&e->synced_id, memory_order_acquire);
	*syncs = atomic_load_explicit(&e->nsyncs, memory_order_relaxed);
}

/* ---- compaction at open ------------------------------------------------- */

/* Why compact: LMDB 0.9 reuses free pages oldest first. After a large
 * delete (rm -rf of many files, inline data above all) the free list holds
 * thousands of pages that the sync wrote back long ago, and every commit
 * takes its pages from them: it dirties several cold pages (a write fault
 * or a page-cache write of a clean page, and its writeback later) where a
 * fresh store re-dirties the few pages the previous commits freed. Creates
 * then cost several times the CPU until the old list is used up. LMDB 0.9
 * cannot change that order, but a compacting copy (MDB_CP_COMPACT) has no
 * free list, so compact=1 (the default) rewrites the file at open when the
 * free list holds at least COMPACT_MIN_FREE pages and more pages than the
 * data. The copy reads only the used pages (milliseconds for meta's usual
 * tens of MiB).
 *
 * Crash safety: the copy goes to data.mdb.compact, is fsynced, renamed
 * over data.mdb, and the directory is fsynced: a crash at any point leaves
 * the old or the new file, each complete (the copy is of the last commit,
 * page cache included); a left-over data.mdb.compact is removed at the
 * next open. Nothing is acknowledged before open returns.
 *
 * Exclusion: only while this process holds LMDB's own exclusive lock (a
 * write lock on byte 0 of lock.mdb, which every LMDB opener takes or else
 * waits for in shared mode), so no other process has the environment open
 * or can open it meanwhile; the copy itself opens the file MDB_NOLOCK. The
 * lock descriptor stays open until the engine closes: closing any
 * descriptor of lock.mdb drops all of this process's locks on it (POSIX),
 * LMDB's included. LMDB's own open in this process then finds the lock
 * exclusive (same process), reinitialises lock.mdb for the new file and
 * downgrades to shared. For the same reason nothing is compacted while
 * another engine is open in this process (lmdb_nopen). */

static pthread_mutex_t lmdb_open_mu = PTHREAD_MUTEX_INITIALIZER;
static int lmdb_nopen; /* engines open in this process; guarded by lmdb_open_mu */

/* Pages on the free list of R's snapshot (FREE_DBI is dbi 0; each record
 * is an ID list whose first word is its length). */
static int count_free(MDB_txn *r, uint64_t *out)
{
	MDB_cursor *c;
	MDB_val k, v;
	uint64_t n = 0;
	int rc = mdb_cursor_open(r, 0, &c);

	if (rc)
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		size_t len;
		memcpy(&len, v.mv_data, sizeof(len));
		n += len;
	}
	mdb_cursor_close(c);
	*out = n;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Caller holds lmdb_open_mu and no engine of this process is open. Takes
 * e->lock_fd (see above) and compacts e->path's data.mdb if it pays.
 * Failures leave the original file in place: they are logged, not
 * returned, and the open goes on. */
static void compact_at_open(struct lmdb_engine *e)
{
	char data[PATH_MAX], tmp[PATH_MAX], lock[PATH_MAX];
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	MDB_env *env = NULL;
	MDB_txn *r = NULL;
	MDB_envinfo info;
	uint64_t nfree = 0, total = 0, t0 = clock_mono_ns();
	struct stat st;
	const char *what = NULL;
	int fd = -1, rc = 0;

	if ((size_t)snprintf(data, sizeof(data), "%s/data.mdb", e->path) >= sizeof(data) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/data.mdb.compact", e->path) >= sizeof(tmp) ||
	    (size_t)snprintf(lock, sizeof(lock), "%s/lock.mdb", e->path) >= sizeof(lock) ||
	    stat(data, &st))
		return; /* a new environment (or one LMDB's open will report on) */
	e->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (e->lock_fd < 0)
		return;
	if (fcntl(e->lock_fd, F_SETLK, &fl)) {
		/* Another process has the environment open: leave it be. */
		close(e->lock_fd);
		e->lock_fd = -1;
		return;
	}
	if (unlink(tmp) == 0)
		LOG_NOTICE("kv", "lmdb: removed an interrupted compaction: %s", tmp);
	if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_mapsize(env, (size_t)e->map_size)) ||
	    (rc = mdb_env_open(env, e->path, MDB_NOLOCK | MDB_RDONLY, 0644)) ||
	    (rc = mdb_env_info(env, &info)) || (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &r)) ||
	    (rc = count_free(r, &nfree))) {
		what = "read free list";
		goto out;
	}
	mdb_txn_abort(r);
	r = NULL;
	total = (uint64_t)info.me_last_pgno + 1;
	if (nfree < COMPACT_MIN_FREE || nfree * 2 <= total)
		goto out;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = errno;
		what = "create copy";
		goto out;
	}
	if ((rc = mdb_env_copyfd2(env, fd, MDB_CP_COMPACT))) {
		what = "copy";
		goto out;
	}
	if (fsync(fd) || close(fd)) {
		rc = errno;
		fd = -1;
		what = "sync copy";
		goto out;
	}
	fd = -1;
	mdb_env_close(env);
	env = NULL;
	if (rename(tmp, data)) {
		rc = errno;
		what = "rename copy";
		goto out;
	}
	{
		int dfd = open(e->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		/* The old and the new file are both whole: a lost rename is
		 * only a compaction to do again. */
		if (dfd >= 0) {
			if (fsync(dfd))
				LOG_WARN("kv", "lmdb: compaction: fsync %s: %s", e->path,
					 cfs_strerror(-errno));
			close(dfd);
		}
	}
	LOG_NOTICE("kv", "lmdb: compacted: path=%s free_pages=%llu of %llu ms=%llu", e->path,
		   (unsigned long long)nfree, (unsigned long long)total,
		   (unsigned long long)((clock_mono_ns() - t0) / 1000000u));
	return;
out:
	if (what)
		LOG_WARN("kv", "lmdb: compaction skipped: path=%s: %s: %s", e->path, what,
			 mdb_strerror(rc));
	if (r)
		mdb_txn_abort(r);
	if (fd >= 0)
		close(fd);
	if (env)
		mdb_env_close(env);
	if (what)
		unlink(tmp);
}

/* ---- online compaction -------------------------------------------------- */

/* compact_at_open helps only after a restart. A running engine whose free
 * list dominates (the same rule) and whose live pages are few enough that
 * the copy is short is compacted in place:
 *
 *   1. writers are held: the compaction takes the group-commit leadership,
 *      so no batch runs; queued commits and those arriving meanwhile fail
 *      with -CFS_ECONFLICT (nothing applied; kv_run begins them again);
 *   2. readers are held: new txns wait in txn_begin, and the open ones are
 *      waited for (up to COMPACT_DRAIN_MS, else nothing is done): their
 *      values point into the old map, which must stay until they end;
 *   3. the old file is synced (so whichever file a crash leaves holds every
 *      commit), and LMDB's exclusive lock is taken (it fails, and nothing
 *      is done, while another process has the environment open);
 *   4. compacting copy to data.mdb.compact, fsync, rename over data.mdb,
 *      directory fsync, close the old environment, open the new one;
 *   5. versions go on from the old environment's (id_base), and writers and
 *      readers resume.
 *
 * A crash (of the process or the OS) at any step leaves data.mdb either
 * the old file or the new one, both complete and synced, plus at most a
 * stale copy that the next open removes; the directory fsync is done
 * before any commit to the new file is acknowledged, so the rename cannot
 * be lost behind one. The stall is the drain plus the copy: the size cap
 * keeps it short, and it is logged. */

/* Tests: SIGKILL the process at step N of compact_online (0: never). */
int kv_lmdb_crash_step;
int kv_lmdb_compact_drain_ms = COMPACT_DRAIN_MS;

static void crash_at(int step)
{
	if (kv_lmdb_crash_step == step)
		raise(SIGKILL);
}

/* Stale lock file. LMDB keeps the last txn id in lock.mdb (mti_txnid)
 * and every txn picks its meta page by that id's parity; the process that
 * opens the environment alone (LMDB's exclusive lock) sets it from the
 * data file, the others trust it. A compaction replaces data.mdb (its
 * copy restarts the count at 1) while it holds the exclusive lock, and
 * then closes and reopens. A process that began opening meanwhile (a
 * mount starting, or reopening after the hand-off, meta_local.c) waits in
 * LMDB's open for the shared lock, gets it the moment the old environment
 * closes, and then neither it nor the compacting engine opens alone: both
 * would read the new file through the old id, and a write txn on the
 * wrong meta page (the empty one when the old id is even) commits over the
 * whole database. The id in lock.mdb is never above the newest meta page
 * of the data file (a commit writes the page, then the id), so a read txn
 * whose id is above it shows the stale state before anything is written:
 * the opener closes and tries again after a short random pause, and the
 * first process that then opens alone sets the id right. Up to
 * STALE_TRIES_MS, then EAGAIN. */
#define STALE_TRIES_MS 2000

/* Opens e->path as the engine's environment (e->env_flags, map size,
 * readers) and its main DB. */
static int open_env(struct lmdb_engine *e, MDB_env **envp, MDB_dbi *dbi)
{
	uint64_t until = clock_mono_ns() + (uint64_t)STALE_TRIES_MS * 1000000u;
	unsigned seed = (unsigned)getpid() ^ (unsigned)until;
	MDB_env *env;
	MDB_txn *txn;
	MDB_envinfo info;
	uint64_t lock_id = 0;
	int rc, dead, stale, tries = 0;

again:
	env = NULL;
	txn = NULL;
	dead = stale = 0;
	if ((rc = mdb_env_create(&env)))
		return rc;
	if ((rc = mdb_env_set_mapsize(env, (size_t)e->map_size)) ||
	    (rc = mdb_env_set_maxreaders(env, (unsigned)e->readers)) ||
	    (rc = mdb_env_open(env, e->path, e->env_flags, 0644)))
		goto fail;
	/* Slots of crashed processes would otherwise pin old pages forever. */
	mdb_reader_check(env, &dead);
	if (dead)
		LOG_NOTICE("kv", "lmdb: cleared stale readers: path=%s count=%d", e->path, dead);
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) || (rc = mdb_env_info(env, &info)))
		goto fail;
	lock_id = (uint64_t)mdb_txn_id(txn);
	if (lock_id > (uint64_t)info.me_last_txnid) {
		stale = 1;
		rc = EAGAIN;
		goto fail;
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, dbi)))
		goto fail;
	mdb_txn_commit(txn);
	*envp = env;
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	if (stale) {
		if (!tries++)
			LOG_NOTICE("kv", "lmdb: open %s: lock file's txn %llu is past the data "
				   "file's %llu (opened during a compaction): opening again",
				   e->path, (unsigned long long)lock_id,
				   (unsigned long long)info.me_last_txnid);
		if (clock_mono_ns() < until) {
			clock_sleep_ms(5 + rand_r(&seed) % 20);
			goto again;
		}
	}
	return rc;
}

static void req_wake(_Atomic uint32_t *w, uint32_t v);

/* Gives the group-commit leadership taken by compact_online back. */
static void compact_release(struct lmdb_engine *e)
{
	struct lmdb_req *next;

	pthread_mutex_lock(&e->gc_mu);
	e->compacting = 0;
	next = e->q_head;
	if (!next)
		e->leading = 0;
	pthread_mutex_unlock(&e->gc_mu);
	if (next)
		req_wake(&next->state, REQ_LEAD);
}

/* Caller holds pool_mu with swapping set: let txns begin again. */
static void swap_end(struct lmdb_engine *e)
{
	e->swapping = 0;
	pthread_cond_broadcast(&e->swap_cv);
}

/* Pages on the free list and in the file, of the last commit. The walk
 * reads one freeDB record per txn whose freed pages are not reused yet:
 * a few on a store without a large free list, thousands (about a
 * millisecond) right after a large delete. */
static int free_pages(struct lmdb_engine *e, uint64_t *nfree, uint64_t *total)
{
	MDB_envinfo info;
	MDB_txn *r = NULL;
	int rc;

	if ((rc = mdb_env_info(e->env, &info)))
		return rc;
	*total = (uint64_t)info.me_last_pgno + 1;
	*nfree = 0;
	if (*total < COMPACT_ONLINE_MIN_FREE)
		return 0; /* cannot qualify: skip the walk */
	if ((rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &r)))
		return rc;
	rc = count_free(r, nfree);
	mdb_txn_abort(r);
	return rc;
}

/* Hand-off. A process running meta in-process (meta_local.h) keeps the
 * environment open, and LMDB's shared lock with it, so step 3 would fail
 * for as long as that process runs. So when the background check finds a
 * qualifying, settled free list and another process holds the lock, the
 * engine writes DIR/compact.want; a process that watches for it (the
 * mount's in-process meta, meta_local.c) sends its calls to the meta
 * service over RPC meanwhile, closes the environment and reopens it once
 * the file is gone. The engine compacts at its next check once the lock
 * is free (the free list need not be settled then: the other process's
 * work now comes through this engine), and removes the file when it has
 * compacted, when the list no longer qualifies, or after COMPACT_ASK_MS
 * without the lock (a process that does not watch: asked again only
 * after COMPACT_ASK_BACKOFF_MS). A watcher ignores a want older than
 * WANT_STALE_MS (meta_local.c: this engine died asking).
 * compact_mu held. */
static void ask_end(struct lmdb_engine *e)
{
	char p[PATH_MAX];

	if (!e->ask_since_ns)
		return;
	e->ask_since_ns = 0;
	if ((size_t)snprintf(p, sizeof(p), "%s/compact.want", e->path) < sizeof(p))
		unlink(p);
}

static void ask_others(struct lmdb_engine *e)
{
	uint64_t now = clock_mono_ns();
	char p[PATH_MAX];

	if (!e->ask_since_ns) {
		int fd;
		if ((size_t)snprintf(p, sizeof(p), "%s/compact.want", e->path) >= sizeof(p) ||
		    (fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
			return;
		futimens(fd, NULL); /* a stale file of a dead engine: fresh again */
		close(fd);
		e->ask_since_ns = now;
		LOG_INFO("kv", "lmdb: online compaction: asking the other processes to close %s",
			 e->path);
		return;
	}
	if (now - e->ask_since_ns > (uint64_t)COMPACT_ASK_MS * 1000000u) {
		LOG_NOTICE("kv", "lmdb: online compaction put off: another process keeps %s open",
			   e->path);
		ask_end(e);
		e->next_allowed_ns = now + (uint64_t)COMPACT_ASK_BACKOFF_MS * 1000000u;
	}
}

/* 1 if compacted, 0 if not (the free list does not qualify under MODE,
 * or not possible now: another process has the environment, txns stayed
 * open, batches went on), or an LMDB error / -errno. Never called with a
 * txn of this engine open in the calling thread. */
static int compact_online(struct lmdb_engine *e, enum compact_mode mode)
{
	char data[PATH_MAX], tmp[PATH_MAX];
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	uint64_t nfree = 0, total = 0, t0, stall, drained;
	struct lmdb_req *q;
	MDB_envinfo info;
	MDB_env *nenv = NULL;
	MDB_dbi ndbi = 0;
	const char *what = NULL;
	int64_t last;
	int rc = 0, fd = -1, sole, swapped = 0, held = 0, others = 0;
	uint64_t tstep[5] = { 0 };

	if (e->lock_fd < 0 ||
	    (size_t)snprintf(data, sizeof(data), "%s/data.mdb", e->path) >= sizeof(data) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/data.mdb.compact", e->path) >= sizeof(tmp))
		return 0;
	pthread_mutex_lock(&e->compact_mu);
	if (!e->env || (rc = free_pages(e, &nfree, &total)))
		goto out;
	{
		int grew = nfree > e->prev_nfree;
		e->prev_nfree = nfree;
		/* Once asked, the others' work comes through here: the list
		 * may grow and still be worth compacting now. */
		if (mode != COMPACT_FORCE &&
		    (nfree < COMPACT_ONLINE_MIN_FREE || nfree * COMPACT_ONLINE_FRAC < total ||
		     (total - nfree) * e->psize > COMPACT_ONLINE_MAX ||
		     (mode == COMPACT_SETTLED && grew && !e->ask_since_ns)))
			goto out;
	}
	/* Another engine of this process could be on the same environment,
	 * which LMDB's locks cannot tell (compact_at_open). */
	pthread_mutex_lock(&lmdb_open_mu);
	sole = lmdb_nopen == 1;
	pthread_mutex_unlock(&lmdb_open_mu);
	if (!sole)
		goto out;
	/* Cheap look first, so that a shared environment never holds commits
	 * up (the exclusive lock below decides; this only avoids the stall). */
	{
		struct flock gl = fl;
		if (fcntl(e->lock_fd, F_GETLK, &gl))
			goto out;
		if (gl.l_type != F_UNLCK) {
			others = 1;
			goto out;
		}
	}

	/* 0. Write the dirty pages back before commits are held, so that the
	 * sync of step 3 has little left (sync=window may leave up to a
	 * window's worth; sync=none all since the last compaction). e->env
	 * is stable: only this function, under compact_mu, replaces it. */
	pthread_mutex_lock(&e->sync_mu);
	/* A failure here is reported by no later sync (the kernel tells one
	 * fsync only): remembered (sync_sticky), and step 3 stops on it. */
	(void)sync_sticky(e, lmdb_err(env_sync(e)));
	pthread_mutex_unlock(&e->sync_mu);

	/* 1. Writers: new commits fail from now on; the leader finishes what
	 * was queued before and leaves leadership to us. */
	t0 = clock_mono_ns();
	held = 1;
	pthread_mutex_lock(&e->gc_mu);
	e->compacting = 1;
	{
		uint64_t until = t0 + (uint64_t)kv_lmdb_compact_drain_ms * 1000000u;
		struct timespec ts = { (time_t)(until / 1000000000u), (long)(until % 1000000000u) };
		while (e->leading &&
		       pthread_cond_timedwait(&e->lead_cv, &e->gc_mu, &ts) != ETIMEDOUT)
			;
	}
	if (e->leading) {
		e->compacting = 0;
		pthread_mutex_unlock(&e->gc_mu);
		what = "batches went on";
		goto out;
	}
	e->leading = 1;
	q = e->q_head;
	e->q_head = e->q_tail = NULL;
	e->qlen = 0;
	pthread_mutex_unlock(&e->gc_mu);
	while (q) {
		struct lmdb_req *n = q->next;
		q->rc = -CFS_ECONFLICT;
		req_wake(&q->state, REQ_DONE);
		q = n;
	}

	/* 2. Readers. */
	pthread_mutex_lock(&e->pool_mu);
	e->swapping = 1;
	{
		uint64_t until = t0 + (uint64_t)kv_lmdb_compact_drain_ms * 1000000u;
		struct timespec ts = { (time_t)(until / 1000000000u), (long)(until % 1000000000u) };
		while (e->nactive > 0 &&
		       pthread_cond_timedwait(&e->swap_cv, &e->pool_mu, &ts) != ETIMEDOUT)
			;
	}
	if (e->nactive > 0) {
		swap_end(e);
		pthread_mutex_unlock(&e->pool_mu);
		compact_release(e);
		what = "txns stayed open";
		rc = 0;
		goto out;
	}
	for (int i = 0; i < e->npool; i++)
		pooled_read_abort(&e->pool[i]);
	e->npool = 0;
	pthread_mutex_unlock(&e->pool_mu);
	drained = clock_mono_ns() - t0;

	/* 3. */
	pthread_mutex_lock(&e->sync_mu);
	if ((rc = env_sync(e)) || e->sync_err) {
		if (rc)
			(void)sync_sticky(e, lmdb_err(rc));
		else
			rc = EIO; /* step 0 failed: no copy of pages that may be lost */
		what = "sync";
		goto resume;
	}
	tstep[0] = clock_mono_ns();
	if (fcntl(e->lock_fd, F_SETLK, &fl)) {
		rc = 0;
		what = NULL; /* another process has it open: leave it be */
		others = 1;
		goto resume;
	}
	if ((rc = mdb_env_info(e->env, &info))) {
		what = "env info";
		goto unlock;
	}
	last = atomic_load_explicit(&e->id_base, memory_order_relaxed) + (int64_t)info.me_last_txnid;

	/* 4. */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = errno;
		what = "create copy";
		goto unlock;
	}
	if ((rc = mdb_env_copyfd2(e->env, fd, MDB_CP_COMPACT))) {
		what = "copy";
		goto unlock;
	}
	tstep[1] = clock_mono_ns();
	crash_at(1);
	if (fsync(fd)) {
		rc = errno;
		what = "sync copy";
		goto unlock;
	}
	close(fd);
	fd = -1;
	tstep[2] = clock_mono_ns();
	crash_at(2);
	if (rename(tmp, data)) {
		rc = errno;
		what = "rename copy";
		goto unlock;
	}
	crash_at(3);
	{
		int dfd = open(e->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd))
			LOG_ERR("kv", "lmdb: compaction: fsync %s: %s", e->path, cfs_strerror(-errno));
		if (dfd >= 0)
			close(dfd);
	}
	tstep[3] = clock_mono_ns();
	crash_at(4);
	/* Closing drops every lock of this process on lock.mdb (ours too);
	 * data.mdb is the new file already, so whoever opens next sees it. */
	mdb_env_close(e->env);
	e->env = NULL;
	swapped = 1;
	crash_at(5);
	rc = open_env(e, &nenv, &ndbi);
	if (rc) {
		/* Nothing to go back to: txns fail with -EIO from now on. */
		LOG_ERR("kv", "lmdb: compaction: reopen %s: %s", e->path, mdb_strerror(rc));
		what = "reopen";
		goto resume;
	}
	e->env = nenv;
	e->dbi = ndbi;
	e->alloc_end = 0; /* writemap: reserve room in the new file again */
	if (!mdb_env_info(nenv, &info))
		atomic_store_explicit(&e->id_base, last - (int64_t)info.me_last_txnid,
				      memory_order_relaxed);
	atomic_store_explicit(&e->committed_id, last, memory_order_release);
	atomic_store_explicit(&e->synced_id, last, memory_order_release);
	tstep[4] = clock_mono_ns();
	crash_at(6);
	goto resume;
unlock:
	fl.l_type = F_RDLCK; /* back to LMDB's shared lock */
	if (fcntl(e->lock_fd, F_SETLK, &fl))
		LOG_ERR("kv", "lmdb: compaction: relock %s: %s", e->path, cfs_strerror(-errno));
	if (fd >= 0)
		close(fd);
	fd = -1;
	unlink(tmp);
resume:
	pthread_mutex_unlock(&e->sync_mu);
	pthread_mutex_lock(&e->pool_mu);
	swap_end(e);
	pthread_mutex_unlock(&e->pool_mu);
	compact_release(e);
	if (swapped && e->env) {
		stall = clock_mono_ns() - t0;
		atomic_store_explicit(&e->last_stall_ns, stall, memory_order_relaxed);
		if (mode == COMPACT_SETTLED)
			e->next_allowed_ns = clock_mono_ns() + stall * COMPACT_DUTY;
		atomic_fetch_add_explicit(&e->ncompactions, 1, memory_order_relaxed);
		LOG_NOTICE("kv",
			   "lmdb: compacted online: path=%s free_pages=%llu of %llu stall_ms=%llu (drain %llu, sync %llu, copy %llu, fsync %llu, rename %llu, reopen %llu)",
			   e->path, (unsigned long long)nfree, (unsigned long long)total,
			   (unsigned long long)(stall / 1000000u),
			   (unsigned long long)(drained / 1000000u),
			   (unsigned long long)((tstep[0] - t0 - drained) / 1000000u),
			   (unsigned long long)((tstep[1] - tstep[0]) / 1000000u),
			   (unsigned long long)((tstep[2] - tstep[1]) / 1000000u),
			   (unsigned long long)((tstep[3] - tstep[2]) / 1000000u),
			   (unsigned long long)((tstep[4] - tstep[3]) / 1000000u));
		ask_end(e);
		pthread_mutex_unlock(&e->compact_mu);
		return 1;
	}
out:
	if (held) {
		/* Commits were held and nothing came of it: the same bound. */
		stall = clock_mono_ns() - t0;
		atomic_store_explicit(&e->last_stall_ns, stall, memory_order_relaxed);
		if (mode == COMPACT_SETTLED)
			e->next_allowed_ns = clock_mono_ns() + stall * COMPACT_DUTY;
	}
	if (what)
		LOG_WARN("kv", "lmdb: online compaction skipped: path=%s: %s: %s", e->path, what,
			 rc > 0 ? mdb_strerror(rc) : "");
	if (others && mode == COMPACT_SETTLED)
		ask_others(e);
	else
		ask_end(e);
	pthread_mutex_unlock(&e->compact_mu);
	return rc > 0 ? lmdb_err(rc) : rc;
}

int kv_lmdb_compact_check_ms = COMPACT_CHECK_MS;

/* Background thread: look at the free list now and then. */
static void compact_tick(struct lmdb_engine *e)
{
	uint64_t now = clock_mono_ns();
	int ms = kv_lmdb_compact_check_ms;

	if (ms <= 0 || now < e->next_check_ns || now < e->next_allowed_ns)
		return;
	e->next_check_ns = now + (uint64_t)ms * 1000000u;
	compact_online(e, COMPACT_SETTLED);
}

int kv_lmdb_compact(kv_engine *base, int force)
{
	if (base->ops != &kv_lmdb_ops)
		return 0;
	return compact_online((struct lmdb_engine *)base, force ? COMPACT_FORCE : COMPACT_RULE);
}

void kv_lmdb_compact_stats(kv_engine *base, uint64_t *count, uint64_t *last_stall_ns)
{
	struct lmdb_engine *e = (struct lmdb_engine *)base;

	*count = *last_stall_ns = 0;
	if (base->ops != &kv_lmdb_ops)
		return;
	*count = atomic_load_explicit(&e->ncompactions, memory_order_relaxed);
	*last_stall_ns = atomic_load_explicit(&e->last_stall_ns, memory_order_relaxed);
}

/* ---- open / close ------------------------------------------------------- */

/* ---- Waits and the block hint ----
 *
 * A committer may run in a FUSE thread that reads /dev/fuse for the others
 * (the mount's in-process meta, meta_local.h; fuse_loop.h): right before
 * it waits it calls block_hint_wait (block_hint.h) so that another thread
 * reads meanwhile, and only then, since handing the reading over costs
 * ~16 us per request. The waits: a follower's (another thread leads its
 * batch), the leader's gathering, LMDB's writer lock held by another
 * process (the meta service, another mount), a synchronous commit
 * (sync=full or nometa: an fdatasync), and a begin during an online
 * compaction's swap.
 *
 * LMDB has no try-lock for its writer lock, so whether another process
 * holds it is read from the lock itself: a process-shared robust
 * pthread mutex in lock.mdb (LMDB 0.9 on Linux: MDB_txninfo's second
 * cache line, WLOCK_OFF), whose first word glibc keeps at 0 when free and
 * at the owner's thread id otherwise. The place is confirmed at open by
 * taking the lock and finding this thread's id there; where it is not (a
 * different LMDB build), every write txn counts as a wait. The read is a
 * hint: a writer that takes the lock right after it makes this one wait
 * without having handed over, for that writer's one batch. */
#define WLOCK_OFF 64
#define WLOCK_MAGIC 0xBEEFC0DEu  /* MDB_MAGIC, the lock file's first word */
#define WLOCK_TID_MASK 0x3fffffffu /* without FUTEX_WAITERS, FUTEX_OWNER_DIED */

static void wlock_probe(struct lmdb_engine *e)
{
	char lock[PATH_MAX];
	MDB_txn *w = NULL;
	int fd;

	if ((size_t)snprintf(lock, sizeof(lock), "%s/lock.mdb", e->path) >= sizeof(lock) ||
	    (fd = open(lock, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	e->wlock_fd = fd; /* closed with the engine (see wlock_fd) */
	void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return;
	const _Atomic uint32_t *word = (const _Atomic uint32_t *)((char *)m + WLOCK_OFF);
	uint32_t tid = (uint32_t)syscall(SYS_gettid);
	int ok = *(const uint32_t *)m == WLOCK_MAGIC && !mdb_txn_begin(e->env, NULL, 0, &w) &&
		 (atomic_load_explicit(word, memory_order_relaxed) & WLOCK_TID_MASK) == tid;
	if (w)
		mdb_txn_abort(w);
	if (!ok) {
		munmap(m, 4096);
		LOG_NOTICE("kv", "lmdb: writer lock not found in %s: every write counts as a wait",
			   lock);
		return;
	}
	e->wlock_map = m;
	e->wlock = word;
}

/* Right before the leader takes LMDB's writer lock and commits: hands a
 * FUSE thread's reading over when that will wait (see above). */
static void wait_hint_write(struct lmdb_engine *e)
{
	if (!e->wlock || e->sync == LMDB_SYNC_FULL || e->sync == LMDB_SYNC_NOMETA ||
	    atomic_load_explicit(e->wlock, memory_order_relaxed))
		block_hint_wait();
}

static void lmdb_close(struct kv_engine *base)
{
	struct lmdb_engine *e = (struct lmdb_engine *)base;

	if (e->sync_started) {
		pthread_mutex_lock(&e->sync_mu);
		e->sync_stop = 1;
		pthread_cond_signal(&e->sync_cv);
		pthread_mutex_unlock(&e->sync_mu);
		pthread_join(e->sync_th, NULL);
	}
	if (e->env && e->sync == LMDB_SYNC_WINDOW)
		window_sync(e);
	ask_end(e); /* the sync thread is gone: no compaction runs */
	for (int i = 0; i < e->npool; i++)
		pooled_read_abort(&e->pool[i]);
	if (e->env)
		mdb_env_close(e->env);
	if (e->lock_fd >= 0)
		close(e->lock_fd); /* after LMDB's: see compact_at_open */
	if (e->wlock_map)
		munmap(e->wlock_map, 4096);
	if (e->wlock_fd >= 0)
		close(e->wlock_fd); /* after LMDB's (see wlock_fd) */
	if (e->sync_lock_fd >= 0)
		close(e->sync_lock_fd); /* after the last sync: another engine takes over */
	if (e->failed_fd >= 0)
		close(e->failed_fd);
	if (e->counted) {
		pthread_mutex_lock(&lmdb_open_mu);
		lmdb_nopen--;
		pthread_mutex_unlock(&lmdb_open_mu);
	}
	pthread_mutex_destroy(&e->pool_mu);
	pthread_mutex_destroy(&e->gc_mu);
	pthread_mutex_destroy(&e->sync_mu);
	pthread_mutex_destroy(&e->compact_mu);
	pthread_cond_destroy(&e->lead_cv);
	pthread_cond_destroy(&e->sync_cv);
	pthread_cond_destroy(&e->swap_cv);
	free(e->path);
	free(e);
}

static int lmdb_open(const struct kv_url *u, struct kv_engine **out, char *err, size_t errlen)
{
	static const char *const allowed[] = { "sync", "map_size", "max_readers", "group_wait_us",
					       "sync_ms", "writemap", "compact", NULL };
	struct lmdb_engine *e;
	uint64_t map = LMDB_DEFAULT_MAP, readers = LMDB_DEFAULT_READERS, wait_us = 2000;
	uint64_t sync_ms = 100, writemap = 0, compact = 1;
	const char *sync;
	unsigned flags = MDB_NOTLS;
	int rc;

	if (u->authority[0])
		return kv_errf(err, errlen, -EINVAL,
			       "kv: lmdb URL needs an absolute path (lmdb:///dir), got host '%s'",
			       u->authority);
	if (u->path[0] != '/')
		return kv_errf(err, errlen, -EINVAL, "kv: lmdb URL has no path (lmdb:///dir)");
	if ((rc = kv_url_check_opts(u, allowed, err, errlen)) ||
	    (rc = kv_url_opt_size(u, "map_size", &map, err, errlen)) ||
	    (rc = kv_url_opt_size(u, "max_readers", &readers, err, errlen)) ||
	    (rc = kv_url_opt_size(u, "group_wait_us", &wait_us, err, errlen)) ||
	    (rc = kv_url_opt_size(u, "sync_ms", &sync_ms, err, errlen)) ||
	    (rc = kv_url_opt_size(u, "writemap", &writemap, err, errlen)) ||
	    (rc = kv_url_opt_size(u, "compact", &compact, err, errlen)))
		return rc;
	if (writemap > 1 || compact > 1)
		return kv_errf(err, errlen, -EINVAL, "kv: lmdb writemap and compact must be 0 or 1");
	if (sync_ms < 1 || sync_ms > 60000)
		return kv_errf(err, errlen, -EINVAL, "kv: lmdb sync_ms must be 1..60000");
	if (wait_us > 1000000)
		return kv_errf(err, errlen, -EINVAL, "kv: lmdb group_wait_us must be <= 1000000");
	if (readers < 1 || readers > 1 << 20 || map < (1 << 20))
		return kv_errf(err, errlen, -EINVAL,
			       "kv: lmdb max_readers must be 1..1048576 and map_size >= 1M");
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->lock_fd = -1;
	e->wlock_fd = -1;
	e->sync_lock_fd = -1;
	e->failed_fd = -1;
	pthread_mutex_init(&e->pool_mu, NULL);
	pthread_mutex_init(&e->gc_mu, NULL);
	pthread_mutex_init(&e->sync_mu, NULL);
	pthread_mutex_init(&e->compact_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->lead_cv, &ca);
	pthread_cond_init(&e->sync_cv, &ca);
	pthread_cond_init(&e->swap_cv, &ca);
	pthread_condattr_destroy(&ca);
	e->wait_max_ns = wait_us * 1000;
	e->sync_ms = (uint32_t)sync_ms;
	const char *kw = getenv("CFS_TEST_LMDB_KILL_IN_WRITE");
	e->kill_in_write = kw ? strtoull(kw, NULL, 10) : 0;
	const char *sf = getenv("CFS_TEST_LMDB_SYNC_FAIL");
	e->sync_fail = sf ? strtoull(sf, NULL, 10) : 0;
	e->map_size = map;
	if (writemap) {
		e->writemap = 1;
		flags |= MDB_WRITEMAP;
	}
	sync = kv_url_opt(u, "sync");
	if (!sync || !strcmp(sync, "full")) {
		e->sync = LMDB_SYNC_FULL;
	} else if (!strcmp(sync, "nometa")) {
		e->sync = LMDB_SYNC_NOMETA;
		flags |= MDB_NOMETASYNC;
	} else if (!strcmp(sync, "none") || !strcmp(sync, "relaxed")) {
		e->sync = LMDB_SYNC_NONE;
		flags |= MDB_NOSYNC;
	} else if (!strcmp(sync, "window")) {
		e->sync = LMDB_SYNC_WINDOW;
		flags |= MDB_NOSYNC;
	} else {
		rc = kv_errf(err, errlen, -EINVAL,
			     "kv: lmdb sync=%s: want full, window, nometa or none (alias relaxed)",
			     sync);
		goto fail;
	}
	e->path = strdup(u->path);
	if (!e->path) {
		rc = -ENOMEM;
		goto fail;
	}
	if (mkdir(e->path, 0755) && errno != EEXIST) {
		rc = kv_errf(err, errlen, -errno, "kv: lmdb: cannot create %s: %s", e->path,
			     cfs_strerror(-errno));
		goto fail;
	}
	e->failed_seen = failed_token(e); /* an earlier failure's: not ours */
	if (e->failed_seen && failed_holder(e))
		refuse_writes(e, -EIO, "a sync of the store failed in an engine still open on it");
	e->env_flags = flags;
	e->readers = readers;
	e->online = (int)compact;
	pthread_mutex_lock(&lmdb_open_mu);
	if (compact && lmdb_nopen == 0)
		compact_at_open(e);
	rc = open_env(e, &e->env, &e->dbi);
	if (!rc) {
		lmdb_nopen++;
		e->counted = 1;
	}
	pthread_mutex_unlock(&lmdb_open_mu);
	if (rc) {
		rc = kv_errf(err, errlen, lmdb_err(rc), "kv: lmdb: open %s: %s", e->path,
			     mdb_strerror(rc));
		goto fail;
	}
	{
		MDB_stat st;
		e->psize = mdb_env_stat(e->env, &st) ? 4096 : st.ms_psize;
	}
	wlock_probe(e);
	if (compact && e->lock_fd < 0) {
		char lock[PATH_MAX];
		snprintf(lock, sizeof(lock), "%s/lock.mdb", e->path);
		e->lock_fd = open(lock, O_RDWR | O_CLOEXEC); /* see compact_online */
	}
	if (e->sync == LMDB_SYNC_WINDOW || e->online) {
		if ((rc = pthread_create(&e->sync_th, NULL, sync_main, e))) {
			rc = kv_errf(err, errlen, -rc, "kv: lmdb: sync thread: %s",
				     cfs_strerror(-rc));
			goto fail;
		}
		e->sync_started = 1;
	}
	*out = &e->base;
	return 0;
fail:
	lmdb_close(&e->base);
	return rc;
}

/* ---- txn ---------------------------------------------------------------- */

/* A txn_begin that failed gives its count back. */
static void active_put(struct lmdb_engine *e)
{
	pthread_mutex_lock(&e->pool_mu);
	if (--e->nactive == 0 && e->swapping)
		pthread_cond_broadcast(&e->swap_cv);
	pthread_mutex_unlock(&e->pool_mu);
}

static int lmdb_txn_begin(struct kv_txn *t)
{
	struct lmdb_engine *e = (struct lmdb_engine *)t->eng;
	struct lmdb_txn *p = kv_txn_priv(t);
	MDB_txn *r = NULL;
	MDB_cursor *cur = NULL;
	int rc, tries;

	pthread_mutex_lock(&e->pool_mu);
	if (e->swapping)
		block_hint_wait(); /* an online compaction's swap (see "Waits") */
	while (e->swapping)
		pthread_cond_wait(&e->swap_cv, &e->pool_mu);
	if (!e->env) {
		pthread_mutex_unlock(&e->pool_mu);
		return -EIO; /* a failed online compaction could not reopen it */
	}
	e->nactive++;
	if (e->npool) {
		struct pooled_read *pr = &e->pool[--e->npool];
		r = pr->r;
		cur = pr->cur;
	}
	pthread_mutex_unlock(&e->pool_mu);
	for (tries = 0;; tries++) {
		rc = r ? mdb_txn_renew(r) : mdb_txn_begin(e->env, NULL, MDB_RDONLY, &r);
		if (rc != MDB_READERS_FULL || tries)
			break;
		int dead = 0;
		mdb_reader_check(e->env, &dead);
		LOG_WARN("kv", "lmdb: reader table full: path=%s stale_cleared=%d", e->path, dead);
	}
	if (rc) {
		if (rc == MDB_MAP_RESIZED)
			LOG_ERR("kv", "lmdb: map grown by another process: path=%s: reopen with a larger map_size",
				e->path);
		if (cur)
			mdb_cursor_close(cur);
		if (r)
			mdb_txn_abort(r);
		active_put(e);
		return lmdb_err(rc);
	}
	if (cur && mdb_cursor_renew(r, cur)) {
		mdb_cursor_close(cur); /* read_cursor opens another if needed */
		cur = NULL;
	}
	p->r = r;
	p->cur = cur;
	p->rid = gid(e, r);
	if (!(t->flags & KV_RDONLY)) {
		pthread_mutex_lock(&e->gc_mu);
		e->open_rw++;
		pthread_mutex_unlock(&e->gc_mu);
		p->counted = 1;
	}
	return 0;
}

/* Caller holds gc_mu: one fewer txn may still join the batch. */
static void uncount(struct lmdb_engine *e, struct lmdb_txn *p)
{
	if (!p->counted)
		return;
	p->counted = 0;
	e->open_rw--;
	if (e->gathering &&
	    ((e->open_rw == 0 && e->qlen >= e->target) || e->qlen >= LMDB_BATCH_MAX))
		pthread_cond_broadcast(&e->lead_cv); /* compact_online waits on it too */
}

static void lmdb_txn_free(struct kv_txn *t)
{
	struct lmdb_engine *e = (struct lmdb_engine *)t->eng;
	struct lmdb_txn *p = kv_txn_priv(t);

	if (p->counted) {
		pthread_mutex_lock(&e->gc_mu);
		uncount(e, p);
		pthread_mutex_unlock(&e->gc_mu);
	}
	if (!p->r) {
		if (p->cur)
			mdb_cursor_close(p->cur);
		p->cur = NULL;
		return;
	}
	mdb_txn_reset(p->r);
	struct pooled_read pr = { p->r, p->cur };
	pthread_mutex_lock(&e->pool_mu);
	if (e->npool < LMDB_POOL_MAX)
		e->pool[e->npool++] = pr;
	else
		pooled_read_abort(&pr); /* under pool_mu: the env must outlive it */
	p->r = NULL;
	p->cur = NULL;
	if (--e->nactive == 0 && e->swapping)
		pthread_cond_broadcast(&e->swap_cv);
	pthread_mutex_unlock(&e->pool_mu);
}

static int lmdb_read_version(struct kv_txn *t, int64_t *v)
{
	*v = ((struct lmdb_txn *)kv_txn_priv(t))->rid;
	return 0;
}

static struct lrec *rec_new(struct kv_txn *t)
{
	struct lmdb_txn *p = kv_txn_priv(t);

	if (!p->rec) {
		p->rec = kv_arena_alloc(&t->arena, sizeof(*p->rec) * KV_MAX_READ_CONFLICTS);
		if (!p->rec)
			return NULL;
	}
	/* kv.c caps entries at KV_MAX_READ_CONFLICTS; each makes <= 1 record. */
	if (p->nrec == KV_MAX_READ_CONFLICTS)
		return NULL;
	return &p->rec[p->nrec++];
}

static int lmdb_get(struct kv_txn *t, struct kv_slice key, int conflict, struct kv_slice *val)
{
	struct lmdb_engine *e = (struct lmdb_engine *)t->eng;
	struct lmdb_txn *p = kv_txn_priv(t);
	MDB_val k = mv(key), v;
	int rc = mdb_get(p->r, e->dbi, &k, &v);

	if (rc && rc != MDB_NOTFOUND)
		return lmdb_err(rc);
	*val = rc ? (struct kv_slice){ NULL, 0 } : sl(v);
	if (conflict) {
		struct lrec *r = rec_new(t);
		if (!r)
			return -CFS_ETOOLARGE;
		r->kind = LREC_KEY;
		if (kv_arena_dup(&t->arena, key, &r->b))
			return -ENOMEM;
		r->found = !rc;
		r->val = *val;
	}
	return !rc;
}

/* Scans [b, e) of snapshot/txn TXN with cursor C: up to LIMIT pairs into
 * *out (arena), ascending or descending. */
static int scan(struct kv_txn *t, MDB_cursor *c, struct kv_slice b, struct kv_slice e,
		int limit, int reverse, struct kv_range *out)
{
	struct kv_pair *kvs = NULL;
	int n = 0, cap = 0, rc;
	MDB_val k, v;

	out->has_more = 0;
	if (!reverse) {
		k = mv(b);
		rc = b.n ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(c, &k, &v, MDB_FIRST);
	} else if (e.n) {
		k = mv(e);
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (!rc)
			rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
		else if (rc == MDB_NOTFOUND)
			rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
	} else {
		rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
	}
	while (!rc) {
		if (reverse ? (b.n && kv_key_cmp(sl(k), b) < 0) : (e.n && kv_key_cmp(sl(k), e) >= 0))
			break;
		if (n == limit) {
			out->has_more = 1;
			break;
		}
		if (n == cap) {
			int ncap = cap ? cap * 2 : 16;
			struct kv_pair *nk = kv_arena_grow(&t->arena, kvs, sizeof(*kvs) * (size_t)cap,
							   sizeof(*kvs) * (size_t)ncap);
			if (!nk)
				return -ENOMEM;
			kvs = nk;
			cap = ncap;
		}
		kvs[n].key = sl(k);
		kvs[n].val = sl(v);
		n++;
		rc = mdb_cursor_get(c, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
	}
	if (rc && rc != MDB_NOTFOUND)
		return lmdb_err(rc);
	out->kvs = kvs;
	out->n = n;
	return 0;
}

static int read_cursor(struct kv_txn *t, MDB_cursor **c)
{
	struct lmdb_engine *e = (struct lmdb_engine *)t->eng;
	struct lmdb_txn *p = kv_txn_priv(t);
	int rc;

	if (!p->cur && (rc = mdb_cursor_open(p->r, e->dbi, &p->cur)))
		return lmdb_err(rc);
	*c = p->cur;
	return 0;
}

/* Records that [b, e) held exactly R's pairs (scan order per REVERSE). */
static int rec_range(struct kv_txn *t, struct kv_slice b, struct kv_slice e,
		     const struct kv_range *r, int reverse)
{
	struct lrec *x = rec_new(t);

	if (!x)
		return -CFS_ETOOLARGE;
	x->kind = LREC_RANGE;
	x->kvs = r->kvs;
	x->n = r->n;
	x->reverse = reverse;
	if (r->has_more && reverse) {
		x->b = r->kvs[r->n - 1].key; /* map memory of our snapshot */
		if (kv_arena_dup(&t->arena, e, &x->e))
			return -ENOMEM;
	} else if (r->has_more) {
		struct kv_slice last = r->kvs[r->n - 1].key;
		char *a = kv_arena_alloc(&t->arena, last.n + 1);
		if (!a || kv_arena_dup(&t->arena, b, &x->b))
			return -ENOMEM;
		memcpy(a, last.p, last.n);
		a[last.n] = 0;
		x->e = (struct kv_slice){ a, last.n + 1 };
	} else if (kv_arena_dup(&t->arena, b, &x->b) || kv_arena_dup(&t->arena, e, &x->e)) {
		return -ENOMEM;
	}
	return 0;
}

static int lmdb_get_range(struct kv_txn *t, struct kv_slice b, struct kv_slice e, int limit,
			  int reverse, int conflict, struct kv_range *out)
{
	MDB_cursor *c = NULL;
	int rc = read_cursor(t, &c);

	if (rc || (rc = scan(t, c, b, e, limit, reverse, out)))
		return rc;
	return conflict ? rec_range(t, b, e, out, reverse) : 0;
}

static int lmdb_add_conflict(struct kv_txn *t, struct kv_slice b, struct kv_slice e, int single)
{
	struct kv_range r;
	struct kv_slice v;
	MDB_cursor *c = NULL;
	int rc;

	if (single)
		return (rc = lmdb_get(t, b, 1, &v)) < 0 ? rc : 0;
	if ((rc = read_cursor(t, &c)) || (rc = scan(t, c, b, e, INT_MAX, 0, &r)))
		return rc;
	return rec_range(t, b, e, &r, 0);
}

/* ---- commit ------------------------------------------------------------- */

static int same(struct kv_slice a, struct kv_slice b)
{
	return a.n == b.n && (!a.n || !memcmp(a.p, b.p, a.n));
}

/* 0 if range record X matches [x->b, x->e) in write txn cursor C now:
 * the same pairs, none more (an insert), none fewer (a delete). */
static int validate_range(MDB_cursor *c, const struct lrec *x)
{
	MDB_val k = mv(x->b), v;
	int rc, j = 0;

	rc = x->b.n ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (!rc && (!x->e.n || kv_key_cmp(sl(k), x->e) < 0)) {
		const struct kv_pair *a;
		if (j == x->n)
			return -CFS_ECONFLICT;
		a = &x->kvs[x->reverse ? x->n - 1 - j : j];
		if (!same(a->key, sl(k)) || !same(a->val, sl(v)))
			return -CFS_ECONFLICT;
		j++;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (rc && rc != MDB_NOTFOUND)
		return lmdb_err(rc);
	return j == x->n ? 0 : -CFS_ECONFLICT;
}

/* 0 if every recorded read of T still holds in write txn W, else
 * -CFS_ECONFLICT (or an LMDB error). */
static int validate(struct lmdb_engine *e, MDB_txn *w, struct kv_txn *t)
{
	struct lmdb_txn *p = kv_txn_priv(t);
	MDB_cursor *c = NULL;
	int rc = 0;

	for (int i = 0; i < p->nrec && !rc; i++) {
		const struct lrec *x = &p->rec[i];
		if (x->kind == LREC_KEY) {
			MDB_val k = mv(x->b), v;
			int g = mdb_get(w, e->dbi, &k, &v);
			if (g && g != MDB_NOTFOUND)
				rc = lmdb_err(g);
			else if ((!g) != x->found || (x->found && !same(sl(v), x->val)))
				rc = -CFS_ECONFLICT;
			continue;
		}
		if (!c && (rc = mdb_cursor_open(w, e->dbi, &c))) {
			rc = lmdb_err(rc);
			break;
		}
		rc = validate_range(c, x);
	}
	if (c)
		mdb_cursor_close(c);
	return rc;
}

static int apply(struct lmdb_engine *e, MDB_txn *w, const struct kv_wbuf *wb)
{
	MDB_cursor *c = NULL;
	int rc = 0;

	for (int i = 0; i < wb->nranges && !rc; i++) {
		const struct kv_wrange *r = &wb->ranges[i];
		MDB_val k, v;
		if (!c && (rc = mdb_cursor_open(w, e->dbi, &c)))
			break;
		for (;;) {
			k = mv(r->begin);
			rc = r->begin.n ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
					: mdb_cursor_get(c, &k, &v, MDB_FIRST);
			if (rc || (r->end.n && kv_key_cmp(sl(k), r->end) >= 0))
				break;
			if ((rc = mdb_cursor_del(c, 0)))
				break;
		}
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	for (int i = 0; i < wb->npts && !rc; i++) {
		const struct kv_wpoint *pt = &wb->pts[i];
		MDB_val k = mv(pt->key), v;
		uint8_t sum[8];
		switch (pt->op) {
		case KV_WOP_SET:
			v = mv(pt->val);
			rc = mdb_put(w, e->dbi, &k, &v, 0);
			break;
		case KV_WOP_CLEAR:
			rc = mdb_del(w, e->dbi, &k, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
			break;
		case KV_WOP_ADD:
		case KV_WOP_MAX: {
			/* Read and rewrite through one cursor: the put then
			 * needs no second search from the root (a directory's
			 * counters are two of an entry change's five or six
			 * writes). */
			int found;
			if (!c && (rc = mdb_cursor_open(w, e->dbi, &c)))
				break;
			rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
			if (rc && rc != MDB_NOTFOUND)
				break;
			found = !rc;
			kv_point_apply(pt->op, v.mv_data, found ? v.mv_size : 0, found, pt->delta, sum);
			v = (MDB_val){ 8, sum };
			k = mv(pt->key);
			rc = mdb_cursor_put(c, &k, &v, found ? MDB_CURRENT : 0);
			break;
		}
		}
	}
	if (c)
		mdb_cursor_close(c);
	return rc ? lmdb_err(rc) : 0;
}

/* Commits W, which carries APPLIED members of B; fills rc (on failure)
 * and version of each member that succeeded so far. */
/* Tests (CFS_TEST_LMDB_KILL_IN_WRITE=N, read at open): SIGKILL this process
 * in its Nth batch, holding LMDB's writer lock with the batch's pages
 * written but not committed (test_integ_metalocal: another process must
 * then take the lock and find the store intact). */
static void kill_in_write(struct lmdb_engine *e)
{
	if (e->kill_in_write && ++e->nwrites == e->kill_in_write)
		raise(SIGKILL);
}

static void commit_batch(struct lmdb_engine *e, MDB_txn *w, int64_t id, struct lmdb_req **b,
			 int n, int applied)
{
	int rc;

	if (!applied) {
		mdb_txn_abort(w);
		return;
	}
	/* A sync failed while the batch was built (sync_sticky): its root
	 * must not be written; nothing of it is applied. */
	rc = atomic_load_explicit(&e->write_err, memory_order_acquire);
	if (rc) {
		mdb_txn_abort(w);
		for (int i = 0; i < n; i++)
			if (!b[i]->rc)
				b[i]->rc = rc;
		return;
	}
	kill_in_write(e);
	rc = mdb_txn_commit(w);
	if (rc) {
		/* LMDB restores the old meta page on a failed commit, but a
		 * failed sync may still have reached the disk in part: the
		 * outcome is unknown, the environment is unusable (MDB_PANIC)
		 * until reopened. */
		int code = rc == MDB_MAP_FULL ? -ENOSPC : -CFS_EMAYBE;
		LOG_ERR("kv", "lmdb: commit: path=%s: %s", e->path, mdb_strerror(rc));
		for (int i = 0; i < n; i++)
			if (!b[i]->rc)
				b[i]->rc = code;
		return;
	}
	atomic_store_explicit(&e->committed_id, id, memory_order_release);
	atomic_fetch_add_explicit(&e->nbatches, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->ntxns, (unsigned long long)applied, memory_order_relaxed);
	for (int i = 0; i < n; i++)
		b[i]->version = id;
}

/* writemap=1: makes sure the next batch cannot store into a hole (see
 * WM_ROOM). Called by the leader holding write txn W, so LMDB's used end
 * is stable. 0, or -ENOSPC when the disk cannot back a batch. */
static int wm_room(struct lmdb_engine *e, MDB_txn *w)
{
	MDB_envinfo info;
	uint64_t used, end;
	mdb_filehandle_t fd;

	(void)w;
	if (mdb_env_info(e->env, &info) || mdb_env_get_fd(e->env, &fd))
		return 0;
	used = ((uint64_t)info.me_last_pgno + 1) * e->psize;
	if (used + WM_NEED <= e->alloc_end || e->alloc_end >= e->map_size)
		return 0;
	end = used + WM_ROOM < e->map_size ? used + WM_ROOM : e->map_size;
	if (fallocate(fd, 0, (off_t)used, (off_t)(end - used)) == 0) {
		e->alloc_end = end;
		return 0;
	}
	/* A disk nearly full: what one batch needs is enough to go on. */
	end = used + WM_NEED < e->map_size ? used + WM_NEED : e->map_size;
	if (errno == ENOSPC && fallocate(fd, 0, (off_t)used, (off_t)(end - used)) == 0) {
		e->alloc_end = end;
		return 0;
	}
	if (errno == EOPNOTSUPP) {
		/* No way to reserve: behave as before the guard. */
		LOG_WARN("kv", "lmdb: writemap: %s cannot preallocate; a full disk will stop the process",
			 e->path);
		e->alloc_end = e->map_size;
		return 0;
	}
	LOG_ERR("kv", "lmdb: writemap: cannot reserve %llu bytes past %llu: path=%s: %s",
		(unsigned long long)(end - used), (unsigned long long)used, e->path,
		cfs_strerror(-errno));
	return -ENOSPC;
}

/* Begins the write txn of batch B (N members) in *W; on failure every
 * member gets the error and the result is nonzero. */
static int batch_begin(struct lmdb_engine *e, struct lmdb_req **b, int n, MDB_txn **w)
{
	/* A process that shares the environment (meta_local.h) and died in
	 * a read txn leaves its reader slot at the txn id it read, and LMDB
	 * reuses no page freed after that: every commit would take fresh
	 * pages until a restart. LMDB clears such slots only when asked
	 * (open_env, a full reader table), so the leader asks at most once
	 * per READER_CHECK_NS: a scan of the table and one lock probe per
	 * process in it. */
	uint64_t now = clock_mono_ns();
	if (now - e->readers_checked_ns >= READER_CHECK_NS) {
		int dead = 0;
		e->readers_checked_ns = now;
		mdb_reader_check(e->env, &dead);
		if (dead)
			LOG_NOTICE("kv", "lmdb: cleared stale readers: path=%s count=%d", e->path,
				   dead);
	}
	int rc = mdb_txn_begin(e->env, NULL, 0, w);
	if (rc) {
		LOG_ERR("kv", "lmdb: write txn: path=%s: %s", e->path, mdb_strerror(rc));
		for (int i = 0; i < n; i++)
			b[i]->rc = lmdb_err(rc);
	}
	return rc;
}

/* run_batch for MDB_WRITEMAP, where LMDB has no nested txns: every member
 * is validated and applied straight in the one write txn. Validation only
 * reads, so a member that conflicts leaves W as it was; a member whose
 * apply fails (map full, I/O error) may have left part of its writes in
 * W, so the whole write txn is dropped and, if the batch had more than
 * one member, each member runs again alone (its own write txn): the
 * failure then stays with the member that caused it. */
static void run_batch_flat(struct lmdb_engine *e, struct lmdb_req **b, int n)
{
	MDB_txn *w = NULL;
	int rc, dirty = 0, applied = 0;
	int64_t id;

	if (batch_begin(e, b, n, &w))
		return;
	if ((rc = wm_room(e, w))) {
		mdb_txn_abort(w);
		for (int i = 0; i < n; i++)
			b[i]->rc = rc;
		return;
	}
	id = gid(e, w);
	for (int i = 0; i < n; i++) {
		struct kv_txn *t = b[i]->t;
		struct lmdb_txn *p = kv_txn_priv(t);

		rc = 0;
		/* alone: nothing committed since its snapshot, no earlier member
		 * wrote (kv_run_stats.alone); a failed commit is not reported */
		t->alone = !dirty && id == p->rid + 1;
		if (!t->alone)
			rc = validate(e, w, t);
		b[i]->rc = rc;
		if (rc)
			continue;
		rc = apply(e, w, &t->wb);
		if (rc) {
			mdb_txn_abort(w);
			if (rc == -ENOSPC)
				LOG_ERR("kv", "lmdb: database full: path=%s: raise map_size (URL option)",
					e->path);
			if (n == 1) {
				b[0]->rc = rc;
				return;
			}
			for (int j = 0; j < n; j++) {
				b[j]->rc = 0;
				run_batch_flat(e, &b[j], 1);
			}
			return;
		}
		dirty = 1;
		applied++;
	}
	commit_batch(e, w, id, b, n, applied);
}

/* Applies the batch B (N requests) in one write txn; fills each rc/version. */
static void run_batch(struct lmdb_engine *e, struct lmdb_req **b, int n)
{
	MDB_txn *w = NULL;
	int rc, dirty = 0, applied = 0;
	int64_t id;

	if (e->writemap) {
		run_batch_flat(e, b, n);
		return;
	}

	if (batch_begin(e, b, n, &w))
		return;
	id = gid(e, w);
	for (int i = 0; i < n; i++) {
		struct kv_txn *t = b[i]->t;
		struct lmdb_txn *p = kv_txn_priv(t);
		MDB_txn *c = NULL;

		rc = mdb_txn_begin(e->env, w, 0, &c);
		if (rc) {
			b[i]->rc = lmdb_err(rc);
			continue;
		}
		rc = 0;
		t->alone = !dirty && id == p->rid + 1; /* as in run_batch_flat */
		if (!t->alone)
			rc = validate(e, c, t);
		if (!rc)
			rc = apply(e, c, &t->wb);
		if (!rc) {
			rc = lmdb_err(mdb_txn_commit(c));
		} else {
			mdb_txn_abort(c);
		}
		if (rc == -ENOSPC)
			LOG_ERR("kv", "lmdb: database full: path=%s: raise map_size (URL option)",
				e->path);
		b[i]->rc = rc;
		if (!rc) {
			dirty = 1;
			applied++;
		}
	}
	commit_batch(e, w, id, b, n, applied);
}

/* Caller is the leader and holds gc_mu. Waits, up to half the previous
 * batch's duration (capped by group_wait_us), while the queue is shorter
 * than the number of committers seen last time (those in the previous
 * batch plus those queued behind it) or other read-write txns are still
 * open: their commits are coming and can share this batch's sync. Without
 * the wait, many committers split into two cohorts that alternate, each
 * paying a full sync for half of them. A lone committer never waits; one
 * next to a long-open read-write txn waits at most half a batch time. */
static void gather(struct lmdb_engine *e)
{
	uint64_t wait = e->last_ns / 2 < e->wait_max_ns ? e->last_ns / 2 : e->wait_max_ns;
	struct timespec ts;
	uint64_t until;

	if (!wait || e->qlen >= LMDB_BATCH_MAX || (e->open_rw == 0 && e->qlen >= e->target))
		return;
	block_hint_wait(); /* see "Waits and the block hint" */
	until = clock_mono_ns() + wait;
	ts.tv_sec = (time_t)(until / 1000000000u);
	ts.tv_nsec = (long)(until % 1000000000u);
	e->gathering = 1;
	while (e->qlen < LMDB_BATCH_MAX && (e->open_rw > 0 || e->qlen < e->target)) {
		if (pthread_cond_timedwait(&e->lead_cv, &e->gc_mu, &ts) == ETIMEDOUT)
			break;
	}
	e->gathering = 0;
}

static void req_wake(_Atomic uint32_t *w, uint32_t v)
{
	atomic_store_explicit(w, v, memory_order_release);
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static uint32_t req_wait(_Atomic uint32_t *w)
{
	uint32_t v;

	while ((v = atomic_load_explicit(w, memory_order_acquire)) == REQ_WAIT)
		syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, REQ_WAIT, NULL, NULL, 0);
	return v;
}

/* Queues T; the first committer to find no leader leads: it gathers and
 * applies a batch, then hands leadership to the oldest queued committer
 * (whose request is not in its batch) and wakes its batch. Followers sleep
 * on a futex of their own, not on the queue mutex, so waking a batch costs
 * one syscall per member and no mutex convoy. */
static int lmdb_commit(struct kv_txn *t, int64_t *version)
{
	struct lmdb_engine *e = (struct lmdb_engine *)t->eng;
	struct lmdb_txn *p = kv_txn_priv(t);
	struct lmdb_req req = { .t = t };
	struct lmdb_req *batch[LMDB_BATCH_MAX];
	int lead;

	atomic_init(&req.state, REQ_WAIT);
	int werr = atomic_load_explicit(&e->write_err, memory_order_acquire);
	pthread_mutex_lock(&e->gc_mu);
	if (werr) {
		/* A sync failed (sync_sticky): nothing applied. */
		uncount(e, p);
		pthread_mutex_unlock(&e->gc_mu);
		*version = -1;
		return werr;
	}
	if (e->compacting) {
		/* Its snapshot is of the environment being replaced: nothing
		 * was applied; kv_run begins it again on the new one. */
		uncount(e, p);
		pthread_mutex_unlock(&e->gc_mu);
		*version = -1;
		return -CFS_ECONFLICT;
	}
	if (e->q_tail)
		e->q_tail->next = &req;
	else
		e->q_head = &req;
	e->q_tail = &req;
	e->qlen++;
	uncount(e, p);
	lead = !e->leading;
	e->leading = 1;
	pthread_mutex_unlock(&e->gc_mu);
	if (!lead) {
		block_hint_wait(); /* another thread's batch (see "Waits") */
		if (req_wait(&req.state) == REQ_DONE)
			goto out;
	}
	/* We lead (e->leading is ours) and our request is still queued. */
	for (;;) {
		struct lmdb_req *next = NULL;
		uint64_t t0;
		int n = 0, mine = 0, calls = 0;
		uint64_t bytes = 0;

		pthread_mutex_lock(&e->gc_mu);
		gather(e);
		while (e->q_head && n < LMDB_BATCH_MAX) {
			const struct kv_wbuf *wb = &e->q_head->t->wb;
			if (e->writemap && n &&
			    (calls + wb->ncalls > WM_BATCH_CALLS || bytes + wb->bytes > WM_BATCH_BYTES))
				break; /* the rest is the next batch (WM_NEED) */
			calls += wb->ncalls;
			bytes += wb->bytes;
			mine |= e->q_head == &req;
			batch[n++] = e->q_head;
			e->q_head = e->q_head->next;
		}
		e->qlen -= n;
		if (!e->q_head)
			e->q_tail = NULL;
		pthread_mutex_unlock(&e->gc_mu);
		wait_hint_write(e);
		t0 = clock_mono_ns();
		run_batch(e, batch, n);
		t0 = clock_mono_ns() - t0;
		pthread_mutex_lock(&e->gc_mu);
		e->target = n + e->qlen;
		e->last_ns = t0;
		if (mine) {
			next = e->q_head; /* it leads next; leading stays set */
			if (!next) {
				e->leading = 0;
				if (e->compacting)
					pthread_cond_broadcast(&e->lead_cv);
			}
		}
		pthread_mutex_unlock(&e->gc_mu);
		for (int i = 0; i < n; i++)
			if (batch[i] != &req)
				req_wake(&batch[i]->state, REQ_DONE);
		if (mine) {
			if (next)
				req_wake(&next->state, REQ_LEAD);
			break;
		}
		/* More than a batch was queued before us: lead again. */
	}
out:
	*version = req.version;
	return req.rc;
}

static int lmdb_write_error(struct kv_engine *base)
{
	struct lmdb_engine *e = (struct lmdb_engine *)base;

	return atomic_load_explicit(&e->write_err, memory_order_acquire);
}

void kv_lmdb_stats(kv_engine *base, uint64_t *batches, uint64_t *txns)
{
	struct lmdb_engine *e = (struct lmdb_engine *)base;

	*batches = *txns = 0;
	if (base->ops != &kv_lmdb_ops)
		return;
	*batches = atomic_load_explicit(&e->nbatches, memory_order_relaxed);
	*txns = atomic_load_explicit(&e->ntxns, memory_order_relaxed);
}

const struct kv_backend_ops kv_lmdb_ops = {
	.scheme = "lmdb",
	.txn_priv_size = sizeof(struct lmdb_txn),
	.open = lmdb_open,
	.close = lmdb_close,
	.txn_begin = lmdb_txn_begin,
	.txn_free = lmdb_txn_free,
	.read_version = lmdb_read_version,
	.get = lmdb_get,
	.get_range = lmdb_get_range,
	.add_conflict = lmdb_add_conflict,
	.commit = lmdb_commit,
	.reports_alone = 1,
	.flush = lmdb_flush,
	.write_error = lmdb_write_error,
};
