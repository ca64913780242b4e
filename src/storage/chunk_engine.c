/* chunk_engine.c - one target's chunk engine: request state machines over
 * io_uring, group commit of metadata, block lifetimes, compaction.
 *
 * Threads (per engine):
 *   I/O thread     owns the io_uring. Takes requests from the inbox, looks
 *                  up metadata, allocates blocks, submits O_DIRECT reads and
 *                  writes (many in flight), verifies CRCs, completes reads.
 *   commit thread  takes every write/remove whose data I/O is done,
 *                  writes all their metadata changes as ONE batch (with
 *                  cfg.sync: one record in the store's write-ahead log,
 *                  then an fdatasync of each data file the batch wrote
 *                  (all at once, sync_fds),
 *                  whose device flush makes the data and the record
 *                  durable together: one flush per batch, chunk_store.c;
 *                  with cfg.shared_flush a batch that only overwrote
 *                  blocks known written rides on a device flush shared
 *                  with the disk's other targets instead, chunk_flush.c;
 *                  a batch of cache-mode writes into such blocks,
 *                  CHUNK_WF_NOFLUSH, skips the flush: noflush_batch),
 *                  then releases old blocks,
 *                  unlocks chunks and calls back. While it commits, the
 *                  I/O thread keeps submitting: group commit. After the
 *                  callbacks it checkpoints the log into LMDB when due.
 *   callback thread  (cfg.commit_pipeline, started and joined by the
 *                  commit thread) unlocks and calls back committed
 *                  batches while the commit thread commits the next one
 *                  ("commit pipeline" at done_main).
 *   compactor      optional; wakes every compact_interval_ms and moves live
 *                  chunks out of sparse groups through ordinary requests,
 *                  one chunk at a time, sleeping to hold its byte rate.
 *
 * Request life (write):
 *
 *   submit -> inbox -> LOCK --(chunk busy)--> parked on the chunk lock
 *                        |                        | (previous holder done)
 *                        v                        v
 *                      PREPARE: lookup base meta, version checks, pick
 *                        |  in-place append or copy-on-write, allocate
 *                        v
 *                      [READ_OLD: read the old pages the new image keeps]
 *                        v
 *                      WRITE: write the new image -> commit queue
 *                        v
 *                      COMMIT (commit thread): one LMDB txn for the batch;
 *                      release the old block, unlock, callback
 *
 * RECORD BESIDE DATA (cfg.record_overlap, with sync; CFS_CHUNK_OVERLAP=0
 * turns it off). A write's new metadata (block, length, page CRCs) is
 * final before its data write is issued, so the write joins the commit
 * queue at once (early) instead of when its data write completes: the
 * commit thread writes the batch's log record while the data writes run,
 * waits for them (wait_data), then flushes once. At queue depth 1 the
 * record write and the commit thread's wake-up leave the write's latency
 * (they overlap the data write). A write goes early only on a target
 * writing one at a time (no other data write in flight, and none for
 * EARLY_QUIET_MS): with several at once, an early write's batch closes
 * at its first write and splits what the group commit window
 * (commit_main) would have gathered into one flush, so those keep the
 * old order. Why it is safe: an acknowledgement still
 * follows a flush issued after both the record and the data completed,
 * and the next record is written only after that flush, so only the log's
 * last record can name data that is not on disk - now also after kill -9
 * alone (a data write still queued in the ring is never issued), which is
 * why open verifies the last record in every boot (chunk_store.c). A data
 * write, data sync or log write that fails after its record was written
 * (or while it was being written) puts the target in ERROR state, even
 * for -ENOSPC: no later record may follow that one (its seq is spent, and
 * a record with a gap in the seqs ends the replay). Compaction moves keep the
 * old order (record after data).
 *
 * Small overwrites and appends (journaled): a write inside the committed
 * length whose pages span at most cfg.journal_max bytes and at most half
 * the chunk, or an append of at most cfg.journal_max / 4 bytes that
 * continues the chunk inside its block, is neither copy-on-write (which
 * reads and writes the whole chunk) nor written before its commit:
 *
 *   PREPARE -> [READ_OLD: only the partial first/last page]
 *     -> build the new pages; the new metadata (same block, new page CRCs,
 *        whole CRC folded from them) CARRIES those pages as its journal
 *     -> COMMIT: the journal is durable with the metadata, in the same LMDB
 *        batch and sync as every other write of the group
 *     -> APPLY (I/O thread): once the old version's readers are gone, write
 *        the pages in place; then unlock and call back
 *     -> RETIRE: a later batch fdatasyncs the block's file and rewrites the
 *        metadata without the journal (lazily, many at once: see
 *        retire_due). A write to a chunk whose journal has not retired
 *        either carries it on (the new journal is the union of both, when
 *        they touch and fit journal_max: consecutive small appends) or
 *        has its batch sync the block's file before the new metadata
 *        drops it (sync_batch_data).
 *
 *   A crash before the commit leaves the old metadata and an untouched
 *   block; after it, open rewrites every journal still in the metadata in
 *   place (idempotent), syncs, and drops them. So a chunk is old or new.
 *   Readers never see the apply half done: the chunk is marked `applying`
 *   under mu before the commit starts, a read that looks the chunk up while
 *   it is marked parks (rwait) until the apply ends, and the apply waits
 *   for readers that pinned the old version before the mark (their block
 *   references) to finish. A retiree is queued before the chunk unlocks;
 *   whichever batch drops a journal from the metadata (its retirement, or
 *   the chunk's next mutation) syncs the block's file first, unless the
 *   new metadata carries the journal on.
 *
 * Invariants:
 *   - Committed metadata only ever points at blocks whose data write has
 *     completed (and, with sync, is durable: fdatasync of its file or a
 *     device flush; except a cache-mode batch, CHUNK_WF_NOFLUSH: durable
 *     at the device's next flush, see noflush_batch). Allocation is in
 *     memory; the allocator is rebuilt from metadata at open, so a crash
 *     anywhere loses at most the uncommitted blocks, which are then free.
 *   - A chunk has at most one mutation (write, remove, move) in flight:
 *     the per-chunk lock table, under mu.
 *   - A block is reused only after metadata stopped pointing at it AND its
 *     reader references dropped (chunk_alloc pfree); readers take their
 *     reference under mu in the same critical section as the metadata
 *     lookup, and the commit thread releases old blocks under mu only after
 *     the new metadata is committed, so a reader either sees the new
 *     metadata or pins the old block before it can be freed.
 *   - A journaled overwrite writes in place only after its metadata (which
 *     holds the new pages) is committed; see above.
 *   - In-place append writes only at and after the committed length: it
 *     rewrites the partial last page with the same bytes it already holds
 *     and leaves the metadata (length, CRCs) as they were until the commit,
 *     so a crash or a concurrent reader sees exactly the old chunk.
 *
 * Locks: mu guards the allocator, the lock table and the store reader;
 * qmu the inbox and the request count; cmu the commit queue; dmu the
 * committed batches waiting for callbacks. Never two at once except
 * mu -> qmu (a chunk unlock queues the next waiter).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/cfg.h"
#include "common/cache_probe.h"
#include "common/cfs_assert.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "storage/chunk_alloc.h"
#include "storage/chunk_buf.h"
#include "storage/chunk_crc.h"
#include "storage/chunk_engine.h"
#include "storage/chunk_fixed.h"
#include "storage/chunk_flush.h"
#include "storage/chunk_store.h"

#define SYNC_RING_ENTRIES 64 /* fdatasyncs of one batch in flight at once */
#define CR_WINDOW 256 /* page-cache probes per decision ("page-cache reads") */
#define LOCK_BUCKETS 1024
#define FIXED_SLOTS 64 /* registered pieces per ring (chunk_fixed.h: 4 MiB apart) */
/* A write goes early ("record beside data") only when no write of the
 * last this many ms found another data write in flight on the target. */
#define EARLY_QUIET_MS 100
#define FLUSH_SOLO_MS 5000 /* syncing alone after a flush group wait timed out */
#define ALIGN_UP(x) (((uint64_t)(x) + CHUNK_PAGE - 1) & ~(uint64_t)(CHUNK_PAGE - 1))
#define ALIGN_DOWN(x) ((uint64_t)(x) & ~(uint64_t)(CHUNK_PAGE - 1))

enum req_kind { RQ_WRITE, RQ_READ, RQ_REMOVE, RQ_QUERY, RQ_QUERY_LAST, RQ_MOVE };
enum req_state { RS_START, RS_LOCKING, RS_READ_OLD, RS_WRITE, RS_COMMIT, RS_APPLY };

struct req;

/* What a write I/O is (struct iox.write; 0 for reads). */
enum {
	IO_DATA = 1,  /* a mutation's data write, queued for commit when done */
	IO_APPLY = 2, /* a journal applied after its commit, which no commit waits for */
	IO_EARLY = 3, /* a write's data write, already in the commit queue ("record
		       * beside data"): its completion only marks the request */
};

/* One I/O in flight; user_data of its SQE. */
struct iox {
	struct req *r;    /* owning request */
	size_t idx;       /* range index for reads */
	uint64_t want;    /* bytes expected */
	int write;        /* IO_DATA (counted in data_writes), IO_EARLY or IO_APPLY */
};

/* One metadata change of a commit. */
struct centry {
	struct chunk_id id;
	int exists;              /* the chunk had metadata when locked (base) */
	int has_base;            /* ... and owns base.pos, which is ref'ed */
	int bad_meta;            /* remove only: the value does not decode */
	struct chunk_meta base;  /* metadata the change was computed from */
	int has_new;             /* 0: delete */
	struct chunk_meta nmeta; /* the new metadata */
	int alloc_new;           /* nmeta.pos was allocated for this change */
	int result;              /* 0 or why this change was not applied */
};

/* Per range of a read. */
struct rsub {
	struct iox io;
	struct chunk_read_io x;
	struct rsub *wnext;      /* parked on a chunk being journal-applied */
};

/* How a synced batch in a flush group is made durable (test hook). */
enum flush_path { FP_ANY, FP_SHARED, FP_FILES };

struct req {
	/* Write stage clocks (CLOCK_MONOTONIC ns, 0 = not reached): submit,
	 * data write issued, queued for commit, taken into a batch. */
	uint64_t t_submit_ns, t_io_ns, t_q_ns, t_take_ns;
	enum req_kind kind;
	enum req_state state;
	struct chunk_op *op;    /* caller's op; NULL for compaction moves */
	struct req *next;       /* inbox, lock waiters, commit queue */
	int err;                /* first error */
	int nio;                /* I/Os in flight */
	/* mutations */
	struct centry *ces;     /* changes (1 for write/move, n for remove) */
	size_t nce;
	size_t nlocked;         /* chunk locks held: ces[0..nlocked) */
	/* write / move */
	struct iox io;
	uint8_t *buf;           /* image buffer */
	size_t buf_size;        /* its pool size; 0 when it is the caller's data */
	uint64_t img_start;     /* chunk offset of buf[0] */
	uint64_t img_end;       /* aligned end of the image */
	int need_old;           /* image keeps old bytes: read them first */
	int in_place;           /* append inside the current block */
	int journal;            /* small overwrite or append: journaled, applied in place */
	int jrnl_owned;         /* ces[0].nmeta.jrnl is its own buffer (a union
				   with the base's journal), not buf */
	int early;              /* in the commit queue while its data write runs */
	int data_pending;       /* early: the data write has not completed; under cmu */
	int data_err;           /* early: how it failed (0: ok); under cmu */
	uint32_t *vcrc;         /* CHUNK_WF_VERIFY: data's page CRCs from the check */
	/* flush group (e->flush): its err_seq before the first write of the
	 * request was submitted (chunk_flush_group_sample; fseq_set) */
	uint64_t fseq;
	int fseq_set;
	/* move */
	struct chunk_pos move_from; /* where the compactor saw the chunk */
	/* read */
	struct rsub *subs;
};

struct lock_ent {
	struct chunk_id id;
	struct lock_ent *next;     /* bucket chain */
	struct req *wait_head;     /* requests waiting for the chunk, FIFO */
	struct req *wait_tail;
	/* A journaled overwrite of this chunk is committed or committing but
	 * not yet applied in place: reads park on rwait until it is. */
	int applying;
	struct rsub *rwait;        /* parked read ranges */
	struct req *apply_wait;    /* the overwrite, waiting for pinned readers */
};

/* A journaled overwrite applied in place: once its data file is synced, its
 * journal can leave the chunk's metadata. */
struct retiree {
	struct chunk_id id;
	uint64_t ver;              /* commit_ver the journal belongs to */
	struct chunk_pos pos;
	uint32_t jend;             /* the journal's end in the block (its apply's) */
	uint64_t fseq;             /* flush group: the apply's req->fseq (fseq_set) */
	int fseq_set;              /* 0: replayed at open (synced there) or no group */
	struct retiree *next;
};

/* A committed batch waiting for its unlocks and callbacks ("commit
 * pipeline"): ERR is its commit's outcome. */
struct done_batch {
	struct req *list;
	int err;
	struct done_batch *next;
};

/* A slot of the ring's registered buffer table (see "fixed buffers"). */
struct fixed_slot {
	uint64_t id;    /* chunk_fixed range; 0: empty */
	uint64_t piece; /* chunk_fixed_piece.piece */
	uint64_t used;  /* fixed_tick at its last use: the oldest is evicted */
};

struct chunk_engine {
	struct chunk_engine_cfg cfg;
	char *dir;                          /* owned copy of cfg.dir */
	struct chunk_store *store;
	struct chunk_alloc *alloc;          /* under mu */
	struct chunk_store_reader *reader;  /* under mu */
	struct chunk_bufpool *pool;
	pthread_mutex_t mu;
	struct lock_ent *locks[LOCK_BUCKETS]; /* under mu */

	pthread_mutex_t qmu;
	pthread_cond_t idle_cv;             /* nreqs reached 0 */
	struct req *inbox_head, *inbox_tail;/* under qmu */
	uint64_t nreqs;                     /* submitted, not yet called back; under qmu */
	int efd;                            /* eventfd waking the I/O thread */
	uint64_t efd_val;                   /* read target of the armed eventfd read */
	struct io_uring ring;               /* I/O thread only */
	pthread_t io_tid;
	atomic_int io_stop;

	pthread_mutex_t cmu;
	pthread_cond_t ccv;
	struct req *commit_head, *commit_tail; /* under cmu */
	int commit_stop;                       /* under cmu */
	struct retiree *retire_head;           /* under cmu */
	size_t retire_n;                       /* entries on retire_head; under cmu */
	uint64_t retire_since_ms;              /* when the oldest was queued; under cmu */
	atomic_int data_writes;                /* mutation data writes in flight (IO_DATA) */
	atomic_int early_writes;               /* IO_EARLY data writes in flight */
	pthread_t commit_tid;
	struct io_uring sync_ring;             /* commit thread: a batch's fdatasyncs */
	int sync_ring_ok;                      /* 0: they run one after another */
	int sync_ring_broken;                  /* a submit or wait failed: serial */
	/* Commit pipeline (cfg.commit_pipeline): committed batches handed to
	 * the callback thread, which the commit thread starts and joins. */
	pthread_mutex_t dmu;
	pthread_cond_t dcv;
	struct done_batch *done_head, *done_tail; /* under dmu */
	int done_stop;                         /* under dmu */
	atomic_int done_pending;               /* batches handed over, not yet called back */
	int done_tid_ok;                       /* commit thread: the callback thread runs */

	pthread_t comp_tid;
	int comp_started;
	pthread_mutex_t compmu;
	pthread_cond_t compcv;
	int comp_stop;                      /* under compmu */

	atomic_int failed;                  /* ERROR state: -errno after a failed sync */
	/* CFS_TEST_CRASH_RECORD=N (tests only): the Nth early data write is
	 * never issued, and the process _exits once its batch's record is
	 * written: a crash with a record on disk whose data never was. */
	unsigned test_crash_record;
	/* CFS_TEST_SYNC_ENOSPC=N (tests only): the Nth batch's data sync
	 * fails with -ENOSPC after its record was written. */
	unsigned test_sync_enospc, test_syncs; /* commit thread */
	/* CFS_TEST_GROUP_FLUSH_FAIL=N (tests only): in a flush group, the Nth
	 * synced batch finds that a flush of the disk failed after its writes
	 * completed and before its own flush (as another member's would):
	 * the batch must fail. CFS_TEST_GROUP_FLUSH_FAIL_PATH=shared or files
	 * counts only the batches that ride on the group's flush, or only
	 * those that sync their files. */
	unsigned test_flush_fail, test_flushes; /* commit thread */
	enum flush_path test_flush_path;
	uint64_t beside_ms;                 /* I/O thread: when a write last found
					     * another data write in flight */
	unsigned test_early_seen;           /* I/O thread */
	int wal_same_fs;                    /* data files and metadata log share a
					     * filesystem: a data fdatasync flushes both */
	struct chunk_flush_group *flush;    /* cfg.shared_flush: the data files'
					     * filesystem's flush group; NULL: none */
	uint64_t flush_solo_until_ms;       /* commit thread: after a wait for the
					     * group timed out, sync alone until then */
	atomic_uint_fast64_t flush_fallbacks; /* group waits that timed out */
	uint64_t keep_head, keep_replica;   /* free-space floors (chunk_engine_space_low) */
	atomic_uint_fast64_t space_free;    /* filesystem bytes free, as last seen */
	atomic_uint_fast64_t space_ms;      /* when space_free was read (monotonic) */
	atomic_uint_fast64_t corrupt_reads, compact_moves, open_errors, stale_cached_reads;
	atomic_uint_fast64_t data_syncs, journals_retired;
	/* Group commit and write stage counters (chunk_engine_stat). */
	atomic_uint_fast64_t commit_batches, commit_reqs, window_wait_us, commit_us, sync_us;
	atomic_uint_fast64_t joint_syncs;
	atomic_uint_fast64_t stage_n, stage_pre_us, stage_io_us, stage_queue_us, stage_commit_us;
	atomic_uint_fast64_t callback_us, overlapped_batches;
	atomic_uint_fast64_t noflush_batches, noflush_writes; /* cache mode (noflush_batch) */
	/* Fixed buffers (cfg.fixed): the pieces registered with ring; I/O
	 * thread only, but for the counters. */
	int fixed_on;
	uint64_t fixed_gen;                    /* chunk_fixed_gen when last purged */
	uint64_t fixed_tick;
	struct fixed_slot fslot[FIXED_SLOTS];
	atomic_uint_fast64_t fixed_writes, fixed_regs, fixed_held;
	/* Page-cache probes ("page-cache reads": when the cache pays). */
	struct cache_probe cr;              /* its .direct: small reads sent O_DIRECT */
	atomic_uint_fast64_t cr_probes_total, cr_hits_total;
	chunk_engine_mut_fn mut_fn;         /* under mu: short-circuit revocation */
	void *mut_arg;
};

static void advance(struct chunk_engine *e, struct req *r);

static void retire_free(struct retiree *t)
{
	while (t) {
		struct retiree *next = t->next;
		free(t);
		t = next;
	}
}

/* The engine whose I/O thread this is (NULL on other threads): a push from
 * the I/O thread itself needs no wake-up, its loop drains the inbox next. */
static __thread struct chunk_engine *tls_io_engine;

/* ---- inbox and completion ---------------------------------------------- */

static void inbox_push(struct chunk_engine *e, struct req *r)
{
	pthread_mutex_lock(&e->qmu);
	int was_empty = !e->inbox_head;
	r->next = NULL;
	if (e->inbox_tail)
		e->inbox_tail->next = r;
	else
		e->inbox_head = r;
	e->inbox_tail = r;
	pthread_mutex_unlock(&e->qmu);
	/* The I/O thread drains the inbox before it waits again. */
	if (was_empty && tls_io_engine != e) {
		uint64_t one = 1;
		if (write(e->efd, &one, sizeof(one)) < 0)
			LOG_WARN("chunk", "eventfd write failed: err=%s", cfs_strerror(errno));
	}
}

static void req_free(struct chunk_engine *e, struct req *r)
{
	if (r->journal && !r->jrnl_owned)
		r->ces[0].nmeta.jrnl = NULL; /* borrowed r->buf */
	for (size_t i = 0; i < r->nce; i++) {
		chunk_meta_fini(&r->ces[i].base);
		chunk_meta_fini(&r->ces[i].nmeta);
	}
	free(r->ces);
	free(r->vcrc);
	if (r->buf_size)
		chunk_buf_put(e->pool, r->buf, r->buf_size);
	free(r->subs);
	free(r);
}

/* Calls back and forgets R. Any engine thread; no engine lock held. */
static void add_us(atomic_uint_fast64_t *to, uint64_t from_ns, uint64_t to_ns)
{
	atomic_fetch_add_explicit(to, (to_ns - from_ns) / 1000, memory_order_relaxed);
}

/* Where a copy-on-write write's latency went (chunk_engine_stat stage_*). */
static void note_stages(struct chunk_engine *e, const struct req *r)
{
	add_us(&e->stage_pre_us, r->t_submit_ns, r->t_io_ns);
	add_us(&e->stage_io_us, r->t_io_ns, r->t_q_ns);
	add_us(&e->stage_queue_us, r->t_q_ns, r->t_take_ns);
	add_us(&e->stage_commit_us, r->t_take_ns, clock_mono_ns());
	atomic_fetch_add_explicit(&e->stage_n, 1, memory_order_relaxed);
}

static void complete(struct chunk_engine *e, struct req *r, int result)
{
	struct chunk_op *op = r->op;
	if (r->kind == RQ_WRITE && r->t_io_ns && r->t_q_ns && r->t_take_ns)
		note_stages(e, r);
	req_free(e, r);
	op->result = result;
	op->done(op);
	pthread_mutex_lock(&e->qmu);
	if (--e->nreqs == 0)
		pthread_cond_broadcast(&e->idle_cv);
	pthread_mutex_unlock(&e->qmu);
}

/* ---- chunk locks (under mu) ------------------------------------------ */

static unsigned lock_bucket(struct chunk_id id)
{
	uint64_t h = (id.ino * 0x9e3779b97f4a7c15ull) ^ (id.idx * 0xc2b2ae3d27d4eb4full);
	return (unsigned)(h >> 40) % LOCK_BUCKETS;
}

/* 1: R now holds ID's lock. 0: R is queued and will come back through the
 * inbox holding it. */
static int lock_try(struct chunk_engine *e, struct chunk_id id, struct req *r)
{
	unsigned b = lock_bucket(id);
	for (struct lock_ent *l = e->locks[b]; l; l = l->next) {
		if (!chunk_id_cmp(l->id, id)) {
			r->next = NULL;
			if (l->wait_tail)
				l->wait_tail->next = r;
			else
				l->wait_head = r;
			l->wait_tail = r;
			return 0;
		}
	}
	struct lock_ent *l = xcalloc(1, sizeof(*l));
	l->id = id;
	l->next = e->locks[b];
	e->locks[b] = l;
	/* Direct readers must stop before anything of the chunk changes;
	 * while this entry exists no new mapping is made (sc_map). */
	if (e->mut_fn)
		e->mut_fn(e->mut_arg, e, id);
	return 1;
}

/* ID's lock entry, or NULL when nobody holds its lock. */
static struct lock_ent *lock_find(struct chunk_engine *e, struct chunk_id id)
{
	for (struct lock_ent *l = e->locks[lock_bucket(id)]; l; l = l->next)
		if (!chunk_id_cmp(l->id, id))
			return l;
	return NULL;
}

static void unlock_chunk(struct chunk_engine *e, struct chunk_id id)
{
	unsigned b = lock_bucket(id);
	for (struct lock_ent **pp = &e->locks[b]; *pp; pp = &(*pp)->next) {
		struct lock_ent *l = *pp;
		if (chunk_id_cmp(l->id, id))
			continue;
		struct req *w = l->wait_head;
		if (w) {
			l->wait_head = w->next;
			if (!l->wait_head)
				l->wait_tail = NULL;
			inbox_push(e, w);
		} else {
			*pp = l->next;
			free(l);
		}
		return;
	}
	ASSERT(!"unlock of an unlocked chunk");
}

/* ---- I/O submission ---------------------------------------------------- */

static struct io_uring_sqe *get_sqe(struct chunk_engine *e)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
	while (!sqe) {
		io_uring_submit(&e->ring);
		sqe = io_uring_get_sqe(&e->ring);
	}
	return sqe;
}

/* FIXED BUFFERS. A data write whose bytes lie in cfg.fixed (the
 * service's write arena, a predecessor's arena it maps) goes out as
 * IORING_OP_WRITE_FIXED from a piece of that memory registered with the
 * ring, so the kernel does not pin its pages for every write (sp30's
 * profile: 4.8 % of the cluster's CPU in one-job 1 MiB writes). A piece
 * is registered the first time a write comes from it (its pages are in
 * memory then: the data was just copied there) into one of FIXED_SLOTS
 * slots, evicting the least recently used.
 *
 * Why a slot may be replaced: the kernel binds a request to the slot's
 * buffer when it first issues it, and a replaced buffer stays pinned
 * until the requests bound to it complete; an SQE still in the
 * submission queue is not bound yet, so every queued SQE is submitted
 * before a slot changes (when some stay queued, the slot stays as it is
 * and the write goes out plain). A piece is named by its range's id, never
 * reused, so a range removed and another mapped at the same address
 * never matches the first one's registration (whose pages it holds);
 * the slots of removed ranges are emptied once the I/O thread sees
 * chunk_fixed_gen move: at its next wake-up, which chunk_fixed_remove
 * causes (chunk_fixed_watch), since the slot keeps the range's pages
 * pinned (a departed predecessor's arena) even if no write comes again. */
static void fixed_count(struct chunk_engine *e)
{
	uint64_t n = 0;
	for (int i = 0; i < FIXED_SLOTS; i++)
		n += e->fslot[i].id != 0;
	atomic_store_explicit(&e->fixed_held, n, memory_order_relaxed);
}

static int fixed_set(struct chunk_engine *e, int i, void *base, uint64_t len)
{
	struct iovec iov = { .iov_base = base, .iov_len = len };
	io_uring_submit(&e->ring); /* bind the queued SQEs first (above) */
	if (io_uring_sq_ready(&e->ring))
		return -EBUSY; /* some stayed queued (-EBUSY, -EAGAIN): slot unchanged */
	int rc = io_uring_register_buffers_update_tag(&e->ring, (unsigned)i, &iov, NULL, 1);
	if (rc != 1 && base) {
		/* Writes still go out, pinning their pages as before. The
		 * kernel kept the slot's old piece: so does fslot[i], so that
		 * it is let go once its range is removed. */
		LOG_WARN("chunk", "fixed buffer refused, writes pin their pages: target=%s err=%s",
			 e->dir, cfs_strerror(rc < 0 ? rc : -EIO));
		e->fixed_on = 0;
		return rc < 0 ? rc : -EIO;
	}
	e->fslot[i].id = 0;
	fixed_count(e);
	return 0;
}

/* Empties the slots of ranges removed since the last look. I/O thread. */
static void fixed_purge(struct chunk_engine *e)
{
	uint64_t g = chunk_fixed_gen(e->cfg.fixed);
	if (g == e->fixed_gen)
		return;
	e->fixed_gen = g;
	for (int i = 0; i < FIXED_SLOTS; i++)
		if (e->fslot[i].id && !chunk_fixed_live(e->cfg.fixed, e->fslot[i].id) &&
		    fixed_set(e, i, NULL, 0))
			e->fixed_gen = 0; /* retried at the next look */
}

/* chunk_fixed_watch: wakes the I/O thread, which then purges. */
static void fixed_wake(void *arg)
{
	struct chunk_engine *e = arg;
	uint64_t one = 1;
	if (write(e->efd, &one, sizeof(one)) < 0)
		LOG_WARN("chunk", "eventfd write failed: err=%s", cfs_strerror(errno));
}

/* The slot holding [BUF, BUF + LEN) registered, or -1 (a plain write). */
static int fixed_slot(struct chunk_engine *e, const void *buf, uint64_t len)
{
	fixed_purge(e);
	struct chunk_fixed_piece pc;
	if (!e->fixed_on || chunk_fixed_find(e->cfg.fixed, buf, len, &pc))
		return -1;
	int v = 0;
	for (int i = 0; i < FIXED_SLOTS; i++) {
		struct fixed_slot *s = &e->fslot[i];
		if (s->id == pc.id && s->piece == pc.piece) {
			s->used = ++e->fixed_tick;
			return i;
		}
		if (e->fslot[v].id && (!s->id || s->used < e->fslot[v].used))
			v = i;
	}
	if (fixed_set(e, v, pc.base, pc.len))
		return -1;
	e->fslot[v] = (struct fixed_slot){ .id = pc.id, .piece = pc.piece, .used = ++e->fixed_tick };
	fixed_count(e);
	atomic_fetch_add_explicit(&e->fixed_regs, 1, memory_order_relaxed);
	return v;
}

static void submit_io(struct chunk_engine *e, struct iox *io, int write, int fd, void *buf,
		      uint64_t len, uint64_t off)
{
	int slot = write && e->fixed_on ? fixed_slot(e, buf, len) : -1;
	struct io_uring_sqe *sqe = get_sqe(e);
	if (slot >= 0) {
		io_uring_prep_write_fixed(sqe, fd, buf, (unsigned)len, off, slot);
		atomic_fetch_add_explicit(&e->fixed_writes, 1, memory_order_relaxed);
	} else if (write) {
		io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
	} else
		io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
	io_uring_sqe_set_data(sqe, io);
	io->want = len;
	io->write = write;
	io->r->nio++;
	if (write && e->flush && !io->r->fseq_set) {
		/* Before the write can complete: a flush of the disk that fails
		 * from now on may lose it (chunk_flush.c "Errors"). */
		io->r->fseq = chunk_flush_group_sample(e->flush);
		io->r->fseq_set = 1;
	}
	if (write == IO_DATA) {
		io->r->t_io_ns = clock_mono_ns();
		atomic_fetch_add_explicit(&e->data_writes, 1, memory_order_relaxed);
	}
}

static void log_corrupt(struct chunk_engine *e, struct chunk_id id, uint32_t page, const char *what)
{
	atomic_fetch_add_explicit(&e->corrupt_reads, 1, memory_order_relaxed);
	LOG_ERR("chunk", "corrupt data: target=%s chunk=%llu:%u page=%u during=%s", e->dir,
		(unsigned long long)id.ino, id.idx, page, what);
}

/* Page CRCs computed at once by bad_page (its stack). */
#define CE_CRC_BATCH 64u

/* The first of pages [first, first + count) of a chunk of LEN bytes held
 * in BUF (BUF = page first) whose bytes fail its CRC (PC[i]: page first +
 * i's), or UINT32_MAX: each page up to the length (a page past it whole),
 * several pages at once (crc32c_pages). */
static uint32_t bad_page(uint32_t len, const uint32_t *pc, const uint8_t *buf, uint32_t first,
			 uint32_t count)
{
	uint32_t got[CE_CRC_BATCH];
	for (uint32_t p = first, k; p < first + count; p += k) {
		uint64_t start = (uint64_t)p * CHUNK_PAGE;
		k = first + count - p < CE_CRC_BATCH ? first + count - p : CE_CRC_BATCH;
		uint64_t bytes = (uint64_t)k * CHUNK_PAGE;
		const uint8_t *at = buf + (start - (uint64_t)first * CHUNK_PAGE);
		if (start >= len) { /* one at a time, as before: none at the length */
			k = 1;
			got[0] = crc32c(0, at, start == len ? 0 : CHUNK_PAGE);
		} else {
			if (len - start < bytes) {
				bytes = len - start; /* the last page short */
				k = (uint32_t)((bytes + CHUNK_PAGE - 1) / CHUNK_PAGE);
			}
			crc32c_pages(at, bytes, CHUNK_PAGE, got);
		}
		for (uint32_t i = 0; i < k; i++)
			if (got[i] != pc[p - first + i])
				return p + i;
	}
	return UINT32_MAX;
}

/* Checks pages [first, first + count) of M held in BUF (BUF = page first). */
static int verify_pages(struct chunk_engine *e, struct chunk_id id, const struct chunk_meta *m,
			const uint8_t *buf, uint32_t first, uint32_t count, const char *what)
{
	uint32_t p = bad_page(m->len, m->page_crc + first, buf, first, count);
	if (p != UINT32_MAX) {
		log_corrupt(e, id, p, what);
		return -CFS_ECORRUPT;
	}
	return 0;
}

static void fill_info(struct chunk_info *info, const struct chunk_meta *m)
{
	info->len = m->len;
	info->crc = m->crc;
	info->chain_ver = m->chain_ver;
	info->commit_ver = m->commit_ver;
	info->pending_ver = m->pending_ver;
	info->pos = m->pos;
}

/* ---- reads --------------------------------------------------------------- */

static void journal_apply(struct chunk_engine *e, struct req *r);

/* Drops a read's pin on ID's block POS; any thread (reads also end on
 * storage loop threads, chunk_engine_read_end). The last reader of the old
 * version to go lets a journaled overwrite waiting for it proceed: through
 * the inbox, because the in-place write goes to the I/O thread's ring. */
static void unpin(struct chunk_engine *e, struct chunk_id id, struct chunk_pos pos)
{
	struct req *w = NULL;
	pthread_mutex_lock(&e->mu);
	chunk_alloc_unref(e->alloc, pos);
	struct lock_ent *l = lock_find(e, id);
	if (l && l->apply_wait && chunk_alloc_refs(e->alloc, pos) <= 1) {
		w = l->apply_wait;
		l->apply_wait = NULL;
	}
	pthread_mutex_unlock(&e->mu);
	if (w)
		inbox_push(e, w); /* state RS_APPLY: advance() runs journal_apply */
}

static void read_unpin(struct chunk_engine *e, struct chunk_id id, struct chunk_read_io *io)
{
	unpin(e, id, io->meta.pos);
	chunk_meta_fini(&io->meta);
}

void chunk_engine_read_probed(struct chunk_engine *e, int hit)
{
	atomic_fetch_add_explicit(&e->cr_probes_total, 1, memory_order_relaxed);
	if (hit)
		atomic_fetch_add_explicit(&e->cr_hits_total, 1, memory_order_relaxed);
	cache_probe_report(&e->cr, hit);
}

int chunk_engine_read_prep(struct chunk_engine *e, struct chunk_read_range *rr,
			   struct chunk_read_io *io)
{
	memset(io, 0, sizeof(*io));
	io->fd = -1;
	pthread_mutex_lock(&e->mu);
	struct lock_ent *l = lock_find(e, rr->id);
	if (l && l->applying) {
		/* Its metadata may say new while the block still holds old
		 * pages: such a read waits inside the engine (start_range). */
		pthread_mutex_unlock(&e->mu);
		return 2;
	}
	/* Only the page CRCs of the range (a 4 KiB read of a 1 MiB chunk needs
	 * one of 256): the whole record's decode, its allocation and copy, took
	 * ~5 % of the server's CPU per 4 KiB read (bench storage, batched). */
	uint32_t first = rr->off / CHUNK_PAGE;
	uint64_t count = rr->len ? ((uint64_t)rr->off + rr->len + CHUNK_PAGE - 1) / CHUNK_PAGE - first
				 : 0;
	int err = count && count <= CHUNK_READ_PC_WIN
			  ? chunk_store_reader_get_pages(e->reader, rr->id, first, (uint32_t)count,
							 &io->meta, io->pc_win)
			  : chunk_store_reader_get(e->reader, rr->id, &io->meta);
	io->pc_first = first;
	if (!err && chunk_alloc_owns(e->alloc, io->meta.pos, rr->id)) {
		chunk_alloc_ref(e->alloc, io->meta.pos);
	} else if (!err) {
		chunk_meta_fini(&io->meta);
		err = -CFS_ECORRUPT;
	}
	pthread_mutex_unlock(&e->mu);
	if (err) {
		if (err == -CFS_ECORRUPT)
			log_corrupt(e, rr->id, 0, "metadata");
		rr->result = err;
		return 0;
	}
	fill_info(&rr->info, &io->meta);
	if (rr->off >= io->meta.len || rr->len == 0) {
		rr->result = 0;
		read_unpin(e, rr->id, io);
		return 0;
	}
	io->n = io->meta.len - rr->off < rr->len ? io->meta.len - rr->off : rr->len;
	io->rd_off = ALIGN_DOWN(rr->off);
	io->len = ALIGN_UP((uint64_t)rr->off + io->n) - io->rd_off;
	if (rr->off % CHUNK_PAGE == 0 && io->n % CHUNK_PAGE == 0 &&
	    (uintptr_t)rr->dst % CHUNK_PAGE == 0) {
		io->buf = rr->dst;
	} else {
		io->buf = chunk_buf_get(e->pool, io->len);
		if (!io->buf) {
			rr->result = -ENOMEM;
			read_unpin(e, rr->id, io);
			return 0;
		}
		io->pooled = 1;
	}
	uint64_t boff;
	io->fd = chunk_alloc_fd(e->alloc, io->meta.pos, &boff);
	io->file_off = boff + io->rd_off;
	io->dfd = io->fd;
	if (io->len <= e->cfg.cached_read_max && cache_probe_wanted(&e->cr)) {
		int bfd = chunk_alloc_cached_fd(e->alloc, io->meta.pos);
		if (bfd >= 0) {
			io->fd = bfd;
			io->cached = 1;
		}
	}
	return 1;
}

/* The page CRCs a read's metadata holds, from page PAGE on (at most the
 * read's window when prep decoded only that: chunk_store_reader_get_pages). */
static const uint32_t *io_pcs(const struct chunk_read_io *io, uint32_t page)
{
	return io->meta.page_crc ? io->meta.page_crc + page : io->pc_win + (page - io->pc_first);
}

/* CRC32C of the N bytes at chunk offset OFF (in DST) of a chunk of LEN
 * bytes, folded from the verified page CRCs (PC[0]: the page of OFF) when
 * the range starts on a page and ends on one or at the chunk's end: no
 * second pass over the data for the reply's CRC. */
static uint32_t range_crc(uint32_t len, const uint32_t *pc, uint64_t off, uint32_t n,
			  const void *dst)
{
	uint64_t end = off + n;
	if (off % CHUNK_PAGE || (end % CHUNK_PAGE && end != len))
		return crc32c(0, dst, n);
	uint32_t crc = 0;
	for (uint64_t p = off / CHUNK_PAGE, i = 0; p * CHUNK_PAGE < end; p++, i++) {
		uint64_t plen = end - p * CHUNK_PAGE < CHUNK_PAGE ? end - p * CHUNK_PAGE : CHUNK_PAGE;
		crc = i == 0 ? pc[0] : chunk_crc_combine(crc, pc[i], plen);
	}
	return crc;
}

/* Page-cache reads. A read of at most cfg.cached_read_max bytes goes
 * through the data file's buffered fd (chunk_alloc_cached_fd) instead of
 * O_DIRECT, so a block read often is served from memory, as a local file
 * system's would be. The rule: such a read returns the bytes of the version
 * its pinned metadata names, as the direct read would, because
 *   - every write of a data file is O_DIRECT or a hole punch, after which
 *     the kernel drops the cached pages of that range (a buffered read
 *     racing the write either had its page inserted before that drop,
 *     which then waits for it and removes it, or reads the disk after the
 *     write), and nothing maps or dirties these pages;
 *   - the engine never writes bytes a pinned reader may read: new versions
 *     go to a free block (copy-on-write), a journal is applied in place
 *     only after the old version's readers left, and an in-place append
 *     writes past the committed length (its partial last page with the
 *     bytes it already holds);
 *   - the page CRCs are still checked against that metadata, and a cached
 *     read that fails them is read again O_DIRECT (which also writes back
 *     any dirty cached page first) before the range is called corrupt; if
 *     the direct read passes, the cached pages are dropped and counted
 *     (stale_cached_reads): a corrupt block on disk is still reported.
 * When the cache pays: a hit (the caller's preadv2(RWF_NOWAIT) probe) is
 * the cheapest read there is, but a miss costs the probe, a page-cache
 * insertion and later reclaim on top of the disk read: with 4 x 1 GiB
 * files read at random (fio 4 x QD 16) and the cache mostly cold, storage
 * CPU per read was 26-27 us with every small read probed against 17-18 us
 * all O_DIRECT. So the caller reports each probe (chunk_engine_read_probed)
 * to the target's common/cache_probe.h policy, the mount's too: when fewer
 * than half of a window of CR_WINDOW probes hit, small reads go O_DIRECT
 * except one in eight, which still probes and fills the cache: a working
 * set that fits in memory warms up (at an eighth of the rate) and brings
 * probing back at the next window. Unlike the mount's, the policy has no
 * rise test (a window whose hit rate rose keeps probing): in a window of
 * 256 a point is below the sampling noise, so it would keep too-large
 * sets probing in a third of their windows, and a window long enough for
 * it (16384) would react 64 times slower. Either way the bytes are the
 * same (the rule above). */
static bool pages_match(const struct chunk_read_io *io, uint32_t first, uint32_t count)
{
	return bad_page(io->meta.len, io_pcs(io, first), io->buf, first, count) == UINT32_MAX;
}

/* true when the cached bytes passed their page CRCs (no need to check
 * them again); false leaves the decision to the caller's page check of IO->buf. */
static bool recheck_cached(struct chunk_engine *e, struct chunk_read_range *rr,
			   struct chunk_read_io *io, uint32_t first)
{
	uint32_t count = (uint32_t)(io->len / CHUNK_PAGE);
	if (pages_match(io, first, count))
		return true;
	/* The caller's page check decides on the direct bytes. IO->buf is
	 * aligned (prep bounces unaligned ranges), as O_DIRECT needs. */
	ssize_t got = pread(io->dfd, io->buf, io->len, (off_t)io->file_off);
	if (got != (ssize_t)io->len) {
		memset(io->buf, 0, io->len); /* fails the check: reported corrupt */
		return false;
	}
	if (!pages_match(io, first, count))
		return false; /* corrupt on disk too */
	(void)posix_fadvise(io->fd, (off_t)io->file_off, (off_t)io->len, POSIX_FADV_DONTNEED);
	atomic_fetch_add_explicit(&e->stale_cached_reads, 1, memory_order_relaxed);
	LOG_WARN("chunk", "cached read failed its CRCs, the direct read passed: target=%s "
		 "chunk=%llu:%u", e->dir, (unsigned long long)rr->id.ino, rr->id.idx);
	return true;
}

void chunk_engine_read_end(struct chunk_engine *e, struct chunk_read_range *rr,
			   struct chunk_read_io *io, int res)
{
	if (res < 0 || (uint64_t)res != io->len) {
		LOG_ERR("chunk", "read failed: target=%s chunk=%llu:%u res=%d", e->dir,
			(unsigned long long)rr->id.ino, rr->id.idx, res);
		rr->result = res < 0 ? res : -EIO;
	} else {
		uint32_t first = (uint32_t)(io->rd_off / CHUNK_PAGE);
		uint32_t bad = io->cached && recheck_cached(e, rr, io, first)
				       ? UINT32_MAX
				       : bad_page(io->meta.len, io_pcs(io, first), io->buf, first,
						  (uint32_t)(io->len / CHUNK_PAGE));
		if (bad != UINT32_MAX) {
			log_corrupt(e, rr->id, bad, "read");
			rr->result = -CFS_ECORRUPT;
		} else {
			if (io->pooled)
				memcpy(rr->dst, (uint8_t *)io->buf + (rr->off - io->rd_off), io->n);
			rr->result = (int)io->n;
			rr->crc = range_crc(io->meta.len, io_pcs(io, (uint32_t)(rr->off / CHUNK_PAGE)),
					    rr->off, io->n, rr->dst);
		}
	}
	if (io->pooled)
		chunk_buf_put(e->pool, io->buf, io->len);
	io->buf = NULL;
	io->pooled = 0;
	read_unpin(e, rr->id, io);
}

/* Starts range I of read R (I/O thread): looks up and pins the chunk, then
 * reads its pages, or parks the range while a journaled overwrite of the
 * chunk is being applied in place (its metadata may already say new while
 * the block still holds old pages); journal_done starts it again. */
static void start_range(struct chunk_engine *e, struct req *r, size_t i)
{
	struct chunk_read_range *rr = &r->op->ranges[i];
	struct rsub *s = &r->subs[i];
	s->io.r = r;
	s->io.idx = i;
	for (;;) {
		int rc = chunk_engine_read_prep(e, rr, &s->x);
		if (rc == 1)
			submit_io(e, &s->io, 0, s->x.fd, s->x.buf, s->x.len, s->x.file_off);
		if (rc != 2)
			return;
		pthread_mutex_lock(&e->mu);
		struct lock_ent *l = lock_find(e, rr->id);
		if (l && l->applying) {
			s->wnext = l->rwait;
			l->rwait = s;
			r->nio++; /* keeps R alive until the range is resumed */
			pthread_mutex_unlock(&e->mu);
			return;
		}
		pthread_mutex_unlock(&e->mu); /* the apply ended meanwhile: look again */
	}
}

static void start_read(struct chunk_engine *e, struct req *r)
{
	struct chunk_op *op = r->op;
	r->subs = xcalloc(op->nranges, sizeof(*r->subs));
	for (size_t i = 0; i < op->nranges; i++)
		start_range(e, r, i);
	if (r->nio == 0)
		complete(e, r, 0);
}

void chunk_engine_set_mut_hook(struct chunk_engine *e, chunk_engine_mut_fn fn, void *arg)
{
	pthread_mutex_lock(&e->mu);
	e->mut_fn = fn;
	e->mut_arg = arg;
	pthread_mutex_unlock(&e->mu);
}

int chunk_engine_sc_map(struct chunk_engine *e, struct chunk_id id,
			int (*publish)(void *arg, const struct chunk_meta *m), void *arg,
			struct chunk_meta *meta, int *fd, uint64_t *block_off, char *path,
			size_t pathlen)
{
	memset(meta, 0, sizeof(*meta));
	pthread_mutex_lock(&e->mu);
	int err = lock_find(e, id) ? -EBUSY : chunk_store_reader_get(e->reader, id, meta);
	if (!err && (!chunk_alloc_owns(e->alloc, meta->pos, id) || meta->jrnl_len))
		err = meta->jrnl_len ? -EBUSY : -CFS_ECORRUPT;
	if (!err)
		err = publish(arg, meta);
	if (!err) {
		*fd = chunk_alloc_fd(e->alloc, meta->pos, block_off);
		chunk_alloc_path(e->alloc, meta->pos, path, pathlen);
	}
	pthread_mutex_unlock(&e->mu);
	if (err)
		chunk_meta_fini(meta);
	return err;
}

/* ---- mutations ------------------------------------------------------------ */

/* Undoes what a mutation holds before its commit, then calls back. */
static void fail_mutation(struct chunk_engine *e, struct req *r, int err)
{
	pthread_mutex_lock(&e->mu);
	for (size_t i = 0; i < r->nce; i++) {
		struct centry *c = &r->ces[i];
		if (c->alloc_new) {
			chunk_alloc_release(e->alloc, c->nmeta.pos);
			c->alloc_new = 0;
		}
		if (c->has_base) {
			chunk_alloc_unref(e->alloc, c->base.pos);
			c->has_base = 0;
		}
	}
	for (size_t i = 0; i < r->nlocked; i++)
		unlock_chunk(e, r->ces[i].id);
	pthread_mutex_unlock(&e->mu);
	complete(e, r, err);
}

static void to_commit(struct chunk_engine *e, struct req *r)
{
	r->state = RS_COMMIT;
	r->next = NULL;
	r->t_q_ns = clock_mono_ns();
	pthread_mutex_lock(&e->cmu);
	if (e->commit_tail)
		e->commit_tail->next = r;
	else
		e->commit_head = r;
	e->commit_tail = r;
	pthread_mutex_unlock(&e->cmu);
	/* After the unlock (here and in handle_cqe): woken while we still held
	 * cmu, the commit thread ran only to block on it again and be woken
	 * once more by our unlock, often preempting us for it (about 0.4 of
	 * its 6 switches per write, bench/history.md cw32). */
	pthread_cond_signal(&e->ccv);
}

/* Looks up the base of ces[i] (its lock held) and pins its block. */
static int load_base(struct chunk_engine *e, struct centry *c)
{
	pthread_mutex_lock(&e->mu);
	int err = chunk_store_reader_get(e->reader, c->id, &c->base);
	int owned = !err && chunk_alloc_owns(e->alloc, c->base.pos, c->id);
	if (owned)
		chunk_alloc_ref(e->alloc, c->base.pos);
	pthread_mutex_unlock(&e->mu);
	c->exists = !err;
	c->has_base = owned;
	if (err == -CFS_ECORRUPT)
		log_corrupt(e, c->id, 0, "metadata");
	else if (!err && !owned)
		log_corrupt(e, c->id, 0, "block ownership");
	return err == -ENOENT ? 0 : err;
}

static int alloc_block(struct chunk_engine *e, struct centry *c, uint64_t len, uint64_t keep)
{
	pthread_mutex_lock(&e->mu);
	int err = chunk_alloc_get_keep(e->alloc, chunk_class_for(len), c->id, keep,
				       &c->nmeta.pos);
	pthread_mutex_unlock(&e->mu);
	if (!err)
		c->alloc_new = 1;
	return err;
}

static int get_buf(struct chunk_engine *e, struct req *r, uint64_t n)
{
	r->buf = chunk_buf_get(e->pool, n);
	if (!r->buf)
		return -ENOMEM;
	r->buf_size = n;
	return 0;
}

/* Reads LEN bytes of the current block of R's chunk, from R's image
 * start on, into R's buffer: the old pages a write's new image keeps, or
 * a compaction move's whole chunk. R goes on when the read completes. */
static void read_old(struct chunk_engine *e, struct req *r, uint64_t len)
{
	uint64_t boff;
	int fd = chunk_alloc_fd(e->alloc, r->ces[0].base.pos, &boff);
	r->state = RS_READ_OLD;
	r->io.r = r;
	submit_io(e, &r->io, 0, fd, r->buf, len, boff + r->img_start);
}

/* Write prepare: the chunk lock is held. */
static void write_prepare(struct chunk_engine *e, struct req *r)
{
	struct chunk_op *op = r->op;
	struct centry *c = &r->ces[0];
	int err = atomic_load(&e->failed);
	if (err || (err = load_base(e, c)))
		goto fail;
	int replace = (op->flags & CHUNK_WF_REPLACE) != 0;
	if (replace && op->off) {
		err = -EINVAL;
		goto fail;
	}
	uint64_t old_len = c->exists && !replace ? c->base.len : 0;
	if (c->exists && op->chain_ver < c->base.chain_ver) {
		err = -CFS_ECHAIN_VERSION;
		goto fail;
	}
	uint64_t ver = (c->exists ? c->base.commit_ver : 0) + 1;
	if (replace && op->update_ver)
		ver = op->update_ver;
	if (op->update_ver && op->update_ver != ver) {
		err = -CFS_ECONFLICT;
		goto fail;
	}
	uint64_t end = (uint64_t)op->off + op->len;
	uint64_t new_len = end > old_len ? end : old_len;
	if (c->exists && !c->has_base && !replace && (op->off > 0 || end < old_len)) {
		/* The old block is not trustworthy: only a full rewrite helps. */
		err = -CFS_ECORRUPT;
		goto fail;
	}
	c->has_new = 1;
	c->nmeta.len = (uint32_t)new_len;
	c->nmeta.chain_ver = op->chain_ver;
	c->nmeta.commit_ver = c->nmeta.pending_ver = ver;
	uint64_t jstart = ALIGN_DOWN(op->off), jend = ALIGN_UP(end);
	r->journal = !replace && c->has_base && end <= old_len &&
		     jend - jstart <= e->cfg.journal_max && (jend - jstart) * 2 <= ALIGN_UP(old_len);
	/* A small append that continues the chunk inside its block (a log or
	 * a pack file written 4 KiB at a time) is journaled too: one metadata
	 * commit instead of a data write, a data sync and the commit. */
	if (!r->journal && !replace && c->has_base && old_len > 0 && op->off <= old_len &&
	    end > old_len && jend - jstart <= e->cfg.journal_max / 4 &&
	    new_len <= chunk_class_size(c->base.pos.cls))
		r->journal = 1;
	if (r->journal) {
		/* Small overwrite: only its pages are read (the partial edges)
		 * and written, through the journal (see journal_image). */
		c->nmeta.pos = c->base.pos;
		r->img_start = jstart;
		r->img_end = jend;
		r->need_old = op->off % CHUNK_PAGE || (end % CHUNK_PAGE && end < old_len);
		if (!r->need_old && op->len % CHUNK_PAGE == 0 &&
		    (uintptr_t)op->data % CHUNK_PAGE == 0)
			r->buf = (uint8_t *)op->data;
		else if ((err = get_buf(e, r, jend - jstart)))
			goto fail;
		if (r->need_old) {
			read_old(e, r, jend - jstart);
			return;
		}
		advance(e, r);
		return;
	}
	r->in_place = !replace && c->has_base && op->off >= old_len &&
		      new_len <= chunk_class_size(c->base.pos.cls);
	if (r->in_place) {
		c->nmeta.pos = c->base.pos;
		r->img_start = ALIGN_DOWN(old_len);
		r->need_old = old_len % CHUNK_PAGE != 0;
	} else {
		if ((err = alloc_block(e, c, new_len, (op->flags & CHUNK_WF_FORWARDED) ?
							     e->keep_replica : e->keep_head)))
			goto fail;
		r->img_start = 0;
		r->need_old = !replace && c->has_base && (op->off > 0 || end < old_len);
	}
	r->img_end = ALIGN_UP(new_len);
	int zero_copy = !r->need_old && op->off == r->img_start && end == new_len &&
			op->len % CHUNK_PAGE == 0 && (uintptr_t)op->data % CHUNK_PAGE == 0;
	if (zero_copy) {
		r->buf = (uint8_t *)op->data;
	} else if ((err = get_buf(e, r, r->img_end - r->img_start))) {
		goto fail;
	}
	if (r->need_old) {
		read_old(e, r, r->in_place ? CHUNK_PAGE : ALIGN_UP(old_len));
		return;
	}
	advance(e, r);
	return;
fail:
	fail_mutation(e, r, err);
}

/* Journaled overwrite: builds the new pages and the metadata that carries
 * them, and queues the commit. No data is written before the commit: the
 * pages reach the block in place only after the metadata (with the pages
 * in it) is durable, see journal_apply. */
static void journal_image(struct chunk_engine *e, struct req *r)
{
	struct chunk_op *op = r->op;
	struct centry *c = &r->ces[0];
	uint64_t len = c->nmeta.len; /* > base.len for an append */
	uint32_t first = (uint32_t)(r->img_start / CHUNK_PAGE);
	uint32_t count = (uint32_t)((r->img_end - r->img_start) / CHUNK_PAGE);
	/* Old pages in the image: an append's new pages have no old CRC. */
	uint32_t old_count = c->base.npages > first ? c->base.npages - first : 0;
	if (old_count > count)
		old_count = count;
	int err;
	if (r->need_old &&
	    (err = verify_pages(e, c->id, &c->base, r->buf, first, old_count, "write")))
		goto fail;
	if (r->buf != op->data) {
		memcpy(r->buf + (op->off - r->img_start), op->data, op->len);
		if (r->img_end > len)
			memset(r->buf + (len - r->img_start), 0, r->img_end - len);
	}
	c->nmeta.npages = chunk_npages(len);
	c->nmeta.page_crc = malloc(4 * (size_t)c->nmeta.npages);
	if (!c->nmeta.page_crc) {
		err = -ENOMEM;
		goto fail;
	}
	memcpy(c->nmeta.page_crc, c->base.page_crc, 4 * (size_t)c->base.npages);
	for (uint32_t p = first; p < first + count; p++) {
		uint64_t start = (uint64_t)p * CHUNK_PAGE;
		size_t n = len - start < CHUNK_PAGE ? len - start : CHUNK_PAGE;
		c->nmeta.page_crc[p] = crc32c(0, r->buf + (start - r->img_start), n);
	}
	/* The whole-chunk CRC, folded from the page CRCs (table lookups: chunk_crc.c). */
	uint32_t crc = 0;
	for (uint32_t p = 0; p < c->nmeta.npages; p++) {
		uint64_t start = (uint64_t)p * CHUNK_PAGE;
		crc = chunk_crc_combine(crc, c->nmeta.page_crc[p],
					len - start < CHUNK_PAGE ? len - start : CHUNK_PAGE);
	}
	c->nmeta.crc = crc;
	c->nmeta.jrnl_off = (uint32_t)r->img_start;
	c->nmeta.jrnl_len = (uint32_t)(r->img_end - r->img_start);
	c->nmeta.jrnl = r->buf; /* borrowed: req_free clears it */
	const struct chunk_meta *b = &c->base;
	uint64_t bs = b->jrnl_off, be = bs + b->jrnl_len;
	uint64_t us = bs < r->img_start ? bs : r->img_start;
	uint64_t ue = be > r->img_end ? be : r->img_end;
	if (b->jrnl_len && bs <= r->img_end && be >= r->img_start && ue - us <= e->cfg.journal_max) {
		/* The base's journal has not retired yet (lazy retirement) and
		 * touches this one: the new journal is their union, so it
		 * still holds the base's pages and this batch needs no sync of
		 * the block (consecutive small appends each cost one commit).
		 * Pages the write covers take its bytes; the others keep the
		 * base journal's, which are their current contents. */
		uint8_t *u = malloc(ue - us);
		if (!u) {
			err = -ENOMEM;
			goto fail;
		}
		memcpy(u + (bs - us), b->jrnl, b->jrnl_len);
		memcpy(u + (r->img_start - us), r->buf, r->img_end - r->img_start);
		c->nmeta.jrnl_off = (uint32_t)us;
		c->nmeta.jrnl_len = (uint32_t)(ue - us);
		c->nmeta.jrnl = u;
		r->jrnl_owned = 1;
	}
	r->state = RS_WRITE;
	to_commit(e, r);
	return;
fail:
	fail_mutation(e, r, err);
}

/* After the commit of journaled overwrite R (I/O thread): once no reader
 * holds the old version's pages, writes the new pages in place. Readers
 * that looked the chunk up since the commit began are parked (applying). */
static void journal_apply(struct chunk_engine *e, struct req *r)
{
	struct centry *c = &r->ces[0];
	pthread_mutex_lock(&e->mu);
	if (chunk_alloc_refs(e->alloc, c->base.pos) > 1) {
		/* Our own pin is one; unpin() resumes us at the last reader. */
		lock_find(e, c->id)->apply_wait = r;
		pthread_mutex_unlock(&e->mu);
		return;
	}
	pthread_mutex_unlock(&e->mu);
	uint64_t boff;
	int fd = chunk_alloc_fd(e->alloc, c->base.pos, &boff);
	r->io.r = r;
	submit_io(e, &r->io, IO_APPLY, fd, r->buf, r->img_end - r->img_start, boff + r->img_start);
}

/* The in-place write of journaled overwrite R ended (ERR), or its commit
 * failed (ERR): queues the journal for retirement, unparks the readers,
 * unlocks the chunk and calls back. I/O thread. */
static void journal_done(struct chunk_engine *e, struct req *r, int err)
{
	struct centry *c = &r->ces[0];
	if (!err && !r->err) {
		/* Before the unlock: the next mutation of this chunk then
		 * commits in a batch that syncs this block's file and drops the
		 * journal (never a later one). */
		struct retiree *t = xmalloc(sizeof(*t));
		t->id = c->id;
		t->ver = c->nmeta.commit_ver;
		t->pos = c->nmeta.pos;
		t->jend = c->nmeta.jrnl_off + c->nmeta.jrnl_len;
		t->fseq = r->fseq;
		t->fseq_set = r->fseq_set;
		pthread_mutex_lock(&e->cmu);
		if (!e->retire_head) {
			/* An idle commit thread starts its retire timer. */
			e->retire_since_ms = clock_mono_ms();
			pthread_cond_signal(&e->ccv);
		}
		t->next = e->retire_head;
		e->retire_head = t;
		e->retire_n++;
		pthread_mutex_unlock(&e->cmu);
	}
	if (!err)
		err = r->err;
	pthread_mutex_lock(&e->mu);
	struct lock_ent *l = lock_find(e, c->id);
	struct rsub *w = l->rwait;
	l->rwait = NULL;
	l->applying = 0;
	l->apply_wait = NULL;
	chunk_alloc_unref(e->alloc, c->base.pos);
	c->has_base = 0;
	unlock_chunk(e, c->id);
	pthread_mutex_unlock(&e->mu);
	if (!err)
		fill_info(&r->op->info, &c->nmeta);
	complete(e, r, err);
	while (w) {
		struct rsub *next = w->wnext;
		struct req *q = w->io.r;
		w->wnext = NULL;
		q->nio--;
		start_range(e, q, w->io.idx);
		if (q->nio == 0)
			complete(e, q, 0);
		w = next;
	}
}

/* Builds the new image and metadata, then submits the data write. */
static void write_image(struct chunk_engine *e, struct req *r)
{
	struct chunk_op *op = r->op;
	struct centry *c = &r->ces[0];
	if (op->flags & CHUNK_WF_VERIFY) {
		/* Nothing of this write is on disk or in a batch yet. The page
		 * CRCs of the check serve as the caller's would (given below). */
		uint32_t crc;
		if (op->off % CHUNK_PAGE == 0 && (r->vcrc = malloc(4 * (size_t)chunk_npages(op->len))))
			crc = chunk_crc_pages(op->data, op->len, r->vcrc);
		else
			crc = crc32c(0, op->data, op->len);
		if (crc != op->data_crc) {
			fail_mutation(e, r, -CFS_ECHECKSUM);
			return;
		}
	}
	if (r->journal) {
		journal_image(e, r);
		return;
	}
	uint64_t old_len = c->has_base ? c->base.len : 0;
	uint64_t new_len = c->nmeta.len;
	int err;
	if (r->need_old) {
		uint32_t first = (uint32_t)(r->img_start / CHUNK_PAGE);
		uint32_t count = r->in_place ? 1 : chunk_npages(old_len);
		if ((err = verify_pages(e, c->id, &c->base, r->buf, first, count, "write")))
			goto fail;
	}
	if (r->buf != op->data) {
		uint64_t keep = r->need_old ? old_len - r->img_start : 0;
		memset(r->buf + keep, 0, r->img_end - r->img_start - keep);
		memcpy(r->buf + (op->off - r->img_start), op->data, op->len);
	}
	c->nmeta.npages = chunk_npages(new_len);
	c->nmeta.page_crc = malloc(4 * (size_t)c->nmeta.npages);
	if (!c->nmeta.page_crc) {
		err = -ENOMEM;
		goto fail;
	}
	uint32_t first = (uint32_t)(r->img_start / CHUNK_PAGE);
	/* The image is exactly the caller's data (zero copy: it starts at
	 * img_start, a page boundary, and ends the chunk): its page CRCs are
	 * the ones the caller computed checking it. */
	const uint32_t *pcrc = op->page_crc ? op->page_crc : r->vcrc;
	int given = pcrc && r->buf == op->data;
	if (given) {
		memcpy(c->nmeta.page_crc + first, pcrc, 4 * (size_t)chunk_npages(op->len));
		DEBUG_ASSERT(chunk_crc_pages(r->buf, op->len, c->nmeta.page_crc + first) ==
			     op->data_crc);
	}
	if (r->in_place) {
		memcpy(c->nmeta.page_crc, c->base.page_crc, 4 * (size_t)first);
		if (given) {
			c->nmeta.crc = chunk_crc_combine(c->base.crc, op->data_crc, op->len);
		} else {
			chunk_crc_pages(r->buf, new_len - r->img_start, c->nmeta.page_crc + first);
			c->nmeta.crc = crc32c(c->base.crc, r->buf + (old_len - r->img_start),
					      new_len - old_len);
		}
	} else {
		c->nmeta.crc = given ? op->data_crc
				     : chunk_crc_pages(r->buf, new_len, c->nmeta.page_crc);
	}
	uint64_t boff;
	int fd = chunk_alloc_fd(e->alloc, c->nmeta.pos, &boff);
	r->io.r = r;
	bool alone = !atomic_load(&e->data_writes) && !atomic_load(&e->early_writes);
	uint64_t now_ms = clock_mono_ms();
	if (!alone)
		e->beside_ms = now_ms;
	if (e->cfg.record_overlap && e->cfg.sync && alone && now_ms - e->beside_ms >= EARLY_QUIET_MS) {
		/* RECORD BESIDE DATA: the metadata is final now, so the write
		 * joins the commit queue at once and its batch's log record is
		 * written while the data write runs (commit_main). Only for a
		 * target writing one at a time: beside others, the group
		 * commit window gathers more writes into one flush. */
		r->early = 1;
		atomic_fetch_add_explicit(&e->early_writes, 1, memory_order_relaxed);
		r->data_pending = 1;
		if (e->test_crash_record && ++e->test_early_seen == e->test_crash_record)
			r->io.want = 0; /* test: this data write is never issued */
		else
			submit_io(e, &r->io, IO_EARLY, fd, r->buf, r->img_end - r->img_start,
				  boff + r->img_start);
		to_commit(e, r);
		return;
	}
	r->state = RS_WRITE;
	submit_io(e, &r->io, IO_DATA, fd, r->buf, r->img_end - r->img_start, boff + r->img_start);
	return;
fail:
	fail_mutation(e, r, err);
}

/* Compaction move prepare: the chunk lock is held. */
static void move_prepare(struct chunk_engine *e, struct req *r)
{
	struct centry *c = &r->ces[0];
	int err = atomic_load(&e->failed);
	if (err || (err = load_base(e, c)))
		goto fail;
	if (!c->has_base || !chunk_pos_eq(c->base.pos, r->move_from)) {
		fail_mutation(e, r, 1); /* already moved, rewritten or removed: skip */
		return;
	}
	if ((err = chunk_meta_copy(&c->nmeta, &c->base)) || (err = alloc_block(e, c, c->base.len, e->keep_head)))
		goto fail;
	/* The journal is applied in the block being copied (the chunk lock
	 * was free): the copy carries no journal. */
	free(c->nmeta.jrnl);
	c->nmeta.jrnl = NULL;
	c->nmeta.jrnl_off = c->nmeta.jrnl_len = 0;
	c->has_new = 1;
	r->img_start = 0;
	r->img_end = ALIGN_UP(c->base.len);
	if ((err = get_buf(e, r, r->img_end ? r->img_end : CHUNK_PAGE)))
		goto fail;
	read_old(e, r, r->img_end);
	return;
fail:
	fail_mutation(e, r, err);
}

static void move_write(struct chunk_engine *e, struct req *r)
{
	struct centry *c = &r->ces[0];
	int err = verify_pages(e, c->id, &c->base, r->buf, 0, c->base.npages, "compaction");
	if (err) {
		fail_mutation(e, r, err);
		return;
	}
	uint64_t boff;
	int fd = chunk_alloc_fd(e->alloc, c->nmeta.pos, &boff);
	r->state = RS_WRITE;
	submit_io(e, &r->io, IO_DATA, fd, r->buf, r->img_end, boff);
}

/* Remove: collects the chunks of the range, then locks them in order. */
static int collect_cb(void *arg, struct chunk_id id, const struct chunk_meta *m, int derr)
{
	struct req *r = arg;
	if ((r->nce & (r->nce - 1)) == 0 || r->nce == 0)
		r->ces = xrealloc(r->ces, (r->nce ? r->nce * 2 : 1) * sizeof(*r->ces));
	memset(&r->ces[r->nce], 0, sizeof(r->ces[0]));
	r->ces[r->nce].id = id;
	r->nce++;
	return 0;
}

static void remove_lock_next(struct chunk_engine *e, struct req *r)
{
	while (r->nlocked < r->nce) {
		pthread_mutex_lock(&e->mu);
		int got = lock_try(e, r->ces[r->nlocked].id, r);
		pthread_mutex_unlock(&e->mu);
		if (!got)
			return; /* comes back through the inbox holding it */
		r->nlocked++;
	}
	for (size_t i = 0; i < r->nce; i++) {
		struct centry *c = &r->ces[i];
		int err = load_base(e, c);
		if (err == -CFS_ECORRUPT) {
			/* Undecodable metadata can still be removed (its block, if
			 * any, was never marked in use). */
			c->exists = c->bad_meta = 1;
		} else if (err) {
			fail_mutation(e, r, err);
			return;
		}
	}
	to_commit(e, r);
}

static void start_query(struct chunk_engine *e, struct req *r)
{
	struct chunk_op *op = r->op;
	struct chunk_meta m;
	int err;
	if (r->kind == RQ_QUERY) {
		pthread_mutex_lock(&e->mu);
		err = chunk_store_reader_get(e->reader, op->id, &m);
		pthread_mutex_unlock(&e->mu);
	} else {
		err = chunk_store_last(e->store, op->id.ino, &op->id, &m);
	}
	if (!err) {
		fill_info(&op->info, &m);
		chunk_meta_fini(&m);
	}
	complete(e, r, err);
}

/* Runs R's next step on the I/O thread. */
static void advance(struct chunk_engine *e, struct req *r)
{
	switch (r->kind) {
	case RQ_READ:
		start_read(e, r);
		return;
	case RQ_QUERY:
	case RQ_QUERY_LAST:
		start_query(e, r);
		return;
	case RQ_REMOVE:
		if (r->state == RS_START) {
			r->state = RS_LOCKING;
			struct chunk_id to = { r->op->id.ino, r->op->end_idx };
			int err = chunk_store_scan(e->store, r->op->id, to, collect_cb, r);
			if (err) {
				fail_mutation(e, r, err);
				return;
			}
		} else {
			r->nlocked++; /* woken holding ces[nlocked]'s lock */
		}
		remove_lock_next(e, r);
		return;
	case RQ_WRITE:
	case RQ_MOVE:
		break;
	}
	switch (r->state) {
	case RS_START:
		r->state = RS_LOCKING;
		pthread_mutex_lock(&e->mu);
		int got = lock_try(e, r->ces[0].id, r);
		pthread_mutex_unlock(&e->mu);
		if (!got)
			return;
		/* fall through */
	case RS_LOCKING:
		r->nlocked = 1;
		r->state = RS_READ_OLD;
		if (r->kind == RQ_WRITE)
			write_prepare(e, r);
		else
			move_prepare(e, r);
		return;
	case RS_READ_OLD:
		if (r->kind == RQ_WRITE)
			write_image(e, r);
		else
			move_write(e, r);
		return;
	case RS_WRITE:
		to_commit(e, r);
		return;
	case RS_APPLY:
		if (r->err)
			journal_done(e, r, 0);
		else
			journal_apply(e, r);
		return;
	case RS_COMMIT:
		break;
	}
	ASSERT(!"bad request state");
}

static void handle_cqe(struct chunk_engine *e, struct io_uring_cqe *cqe)
{
	struct iox *io = io_uring_cqe_get_data(cqe);
	struct req *r = io->r;
	r->nio--;
	if (io->write == IO_EARLY) {
		/* The commit thread owns R from here (it may free it at once). */
		int err = cqe->res < 0 ? cqe->res : (uint64_t)cqe->res != io->want ? -EIO : 0;
		atomic_fetch_sub_explicit(&e->early_writes, 1, memory_order_relaxed);
		pthread_mutex_lock(&e->cmu);
		r->data_err = err;
		r->data_pending = 0;
		pthread_mutex_unlock(&e->cmu);
		pthread_cond_signal(&e->ccv); /* R may be gone: only E's fields */
		return;
	}
	if (io->write == IO_DATA &&
	    atomic_fetch_sub_explicit(&e->data_writes, 1, memory_order_relaxed) == 1) {
		/* The commit thread may be holding a batch open for us (the
		 * lock orders the signal after its look at data_writes). */
		pthread_mutex_lock(&e->cmu);
		pthread_mutex_unlock(&e->cmu);
		pthread_cond_signal(&e->ccv);
	}
	if (r->kind == RQ_READ) {
		chunk_engine_read_end(e, &r->op->ranges[io->idx], &r->subs[io->idx].x, cqe->res);
		if (r->nio == 0)
			complete(e, r, 0);
		return;
	}
	if (r->state == RS_APPLY) {
		int err = cqe->res < 0 ? cqe->res : (uint64_t)cqe->res != io->want ? -EIO : 0;
		if (err) {
			/* Committed pages half written: the journal in the metadata
			 * rewrites them at the next open. Stop serving until then. */
			LOG_ERR("chunk", "journal apply failed, target enters ERROR state: target=%s "
				"chunk=%llu:%u err=%s", e->dir, (unsigned long long)r->ces[0].id.ino,
				r->ces[0].id.idx, cfs_strerror(err));
			int zero = 0;
			atomic_compare_exchange_strong(&e->failed, &zero, err);
		}
		journal_done(e, r, err);
		return;
	}
	if (cqe->res < 0 || (uint64_t)cqe->res != io->want) {
		int err = cqe->res < 0 ? cqe->res : -EIO;
		LOG_ERR("chunk", "data I/O failed: target=%s chunk=%llu:%u state=%d err=%s", e->dir,
			(unsigned long long)r->ces[0].id.ino, r->ces[0].id.idx, r->state,
			cfs_strerror(err));
		fail_mutation(e, r, err);
		return;
	}
	advance(e, r);
}

static void *io_main(void *arg)
{
	struct chunk_engine *e = arg;
	int armed = 0;
	tls_io_engine = e;
	for (;;) {
		if (!armed) {
			struct io_uring_sqe *sqe = get_sqe(e);
			io_uring_prep_read(sqe, e->efd, &e->efd_val, sizeof(e->efd_val), 0);
			io_uring_sqe_set_data(sqe, NULL);
			armed = 1;
		}
		pthread_mutex_lock(&e->qmu);
		struct req *list = e->inbox_head;
		e->inbox_head = e->inbox_tail = NULL;
		pthread_mutex_unlock(&e->qmu);
		while (list) {
			struct req *r = list;
			list = r->next;
			advance(e, r);
		}
		if (e->cfg.fixed)
			fixed_purge(e);
		if (atomic_load(&e->io_stop))
			break;
		pthread_mutex_lock(&e->qmu);
		int more = e->inbox_head != NULL;
		pthread_mutex_unlock(&e->qmu);
		int rc = more ? io_uring_submit(&e->ring) : io_uring_submit_and_wait(&e->ring, 1);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			LOG_ERR("chunk", "io_uring submit failed: target=%s err=%s", e->dir, cfs_strerror(rc));
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		io_uring_for_each_cqe(&e->ring, head, cqe) {
			n++;
			if (!io_uring_cqe_get_data(cqe))
				armed = 0;
			else
				handle_cqe(e, cqe);
		}
		io_uring_cq_advance(&e->ring, n);
	}
	return NULL;
}

/* ---- commit thread ------------------------------------------------------ */

static int same_meta(const struct chunk_meta *a, const struct chunk_meta *b)
{
	return chunk_pos_eq(a->pos, b->pos) && a->len == b->len &&
	       a->commit_ver == b->commit_ver;
}

/* Makes the data of every write in LIST durable before its metadata
 * commits: one fdatasync per data file the batch wrote, so a batch of N
 * writes pays one device flush per file instead of N (a flush empties the
 * whole device cache, however little of it one write filled). */
static void note_fd(int *fds, size_t *n, bool *all, int fd)
{
	bool seen = false;
	for (size_t k = 0; k < *n && !seen; k++)
		seen = fds[k] == fd;
	if (!seen && *n == 64)
		*all = true; /* a batch over 64 files: sync every file */
	else if (!seen)
		fds[(*n)++] = fd;
}

/* fdatasync of the N files FDS, all at once (io_uring, sync_ring): a
 * batch of small writes spans several data files of its size class, and
 * one after another each paid a whole device flush (about 2 ms here, 2-3
 * per batch of 64 KiB puts); concurrent flushes overlap and the block
 * layer merges those pending together. Every file's sync has completed
 * when this returns, as with the serial calls. 0 or the first -errno. */
static int sync_fds(struct chunk_engine *e, const int *fds, size_t n)
{
	int err = 0;
	size_t k = 0;
	while (n - k > 1 && e->sync_ring_ok && !e->sync_ring_broken && !err) {
		unsigned m = 0;
		struct io_uring_sqe *sqe;
		for (; k < n && m < SYNC_RING_ENTRIES && (sqe = io_uring_get_sqe(&e->sync_ring));
		     k++, m++)
			io_uring_prep_fsync(sqe, fds[k], IORING_FSYNC_DATASYNC);
		if (!m)
			break; /* cannot happen: every SQE was reaped */
		atomic_fetch_add_explicit(&e->joint_syncs, m, memory_order_relaxed);
		unsigned sent = 0;
		while (sent < m) {
			int rc = io_uring_submit(&e->sync_ring);
			if (rc == 0 || (rc < 0 && rc != -EINTR && rc != -EAGAIN)) {
				rc = rc ? rc : -EIO; /* 0: none taken, cannot happen */
				/* SQEs left in the ring: the ring is no longer
				 * usable, and whether those files were synced is
				 * unknown; the batch fails (target ERROR). */
				e->sync_ring_broken = 1;
				LOG_ERR("chunk", "sync ring submit failed: target=%s err=%s", e->dir,
					cfs_strerror(rc));
				return rc;
			}
			if (rc > 0)
				sent += (unsigned)rc;
		}
		for (unsigned i = 0; i < m; i++) {
			struct io_uring_cqe *cqe;
			int rc;
			while ((rc = io_uring_wait_cqe(&e->sync_ring, &cqe)) == -EINTR)
				;
			if (rc < 0) {
				e->sync_ring_broken = 1;
				LOG_ERR("chunk", "sync ring wait failed: target=%s err=%s", e->dir,
					cfs_strerror(rc));
				return rc;
			}
			if (cqe->res < 0 && !err)
				err = cqe->res;
			io_uring_cqe_seen(&e->sync_ring, cqe);
		}
	}
	for (; k < n && !err; k++)
		if (fdatasync(fds[k]))
			err = -errno;
	return err;
}

/* A block the batch wrote or applied pages in (POS), up to END bytes from
 * its start: its file joins the batch's fdatasyncs (FDS), unless GROUP
 * (the engine is in a flush group and not syncing alone) and the block is
 * known written up to END (chunk_alloc_written_upto: the whole block, or a
 * prefix a block filled from its start has), so that the write was a
 * plain overwrite: then a device flush shared with the other targets of
 * the disk covers it (*SHARED; chunk_flush.c), and its file goes to SFDS,
 * synced only if the wait for the group times out. In a group, under mu. */
static void note_block(struct chunk_engine *e, bool group, int *fds, size_t *n, bool *all,
		       int *sfds, size_t *sn, bool *sall, bool *shared, struct chunk_pos pos,
		       uint64_t end)
{
	uint64_t off;
	int fd = chunk_alloc_fd(e->alloc, pos, &off);
	uint64_t known = group ? chunk_alloc_written_upto(e->alloc, pos) : 0;
	if (known && end <= known) {
		*shared = true;
		note_fd(sfds, sn, sall, fd);
	} else {
		note_fd(fds, n, all, fd);
	}
}

/* Whether R wrote the whole of its new block (a copy-on-write image or a
 * move from offset 0 to the block's end). */
static bool whole_block(const struct req *r, const struct centry *c)
{
	return c->has_new && !r->journal && r->img_start == 0 &&
	       r->img_end >= chunk_class_size(c->nmeta.pos.cls);
}

/* Test hook (test_flush_fail): a flush of the disk fails now, after the
 * batch's writes completed and before its flush (by PATH). */
static void test_flush_point(struct chunk_engine *e, enum flush_path path)
{
	if (e->test_flush_fail && (e->test_flush_path == FP_ANY || e->test_flush_path == path) &&
	    ++e->test_flushes == e->test_flush_fail)
		chunk_flush_group_failed(e->flush);
}

/* ... and the in-place pages of the journals the batch retires (RET). A
 * journaled overwrite wrote nothing before its commit: its journal is in
 * the metadata. In a flush group, writes into blocks known written share
 * one device flush with the other targets of the disk instead, and so
 * does the log record alone (chunk_flush.c); the files of any other write
 * are synced here, which flushes the device after those writes too.
 * Returns how many files it synced (1 for a shared flush), or -errno. */
static int sync_batch_data(struct chunk_engine *e, struct req *list, struct retiree *ret,
                           uint64_t since)
{
	int fds[64], sfds[64];
	size_t n = 0, sn = 0;
	bool all = false, sall = false, shared = false;
	bool group = e->flush && clock_mono_ms() >= e->flush_solo_until_ms;
	if (e->flush) /* the written bits change under mu (chunk_alloc_release) */
		pthread_mutex_lock(&e->mu);
	for (struct req *r = list; r && !all; r = r->next)
		for (size_t i = 0; i < r->nce && !all; i++) {
			struct centry *c = &r->ces[i];
			/* A journal still in the base (lazy retirement) that the
			 * new metadata drops: its pages were applied in place but
			 * may not be durable there yet. */
			if (c->exists && c->base.jrnl_len && c->has_new && r->journal &&
			    !r->jrnl_owned)
				note_block(e, group, fds, &n, &all, sfds, &sn, &sall, &shared,
					   c->base.pos,
					   (uint64_t)c->base.jrnl_off + c->base.jrnl_len);
			if (!c->has_new || r->journal)
				continue;
			note_block(e, group, fds, &n, &all, sfds, &sn, &sall, &shared, c->nmeta.pos,
				   r->img_end);
		}
	for (struct retiree *t = ret; t && !all; t = t->next)
		note_block(e, group, fds, &n, &all, sfds, &sn, &sall, &shared, t->pos, t->jend);
	if (e->flush)
		pthread_mutex_unlock(&e->mu);
	if (group && !n && !all && (shared || e->wal_same_fs)) {
		test_flush_point(e, FP_SHARED);
		int err = chunk_flush_group_flush(e->flush, e->cfg.shared_flush_wait_ms, since);
		if (err != -ETIMEDOUT)
			return err ? err : 1;
		/* Another member held the group's lock for the whole wait
		 * (stopped, or its flush slow): nothing was flushed for us.
		 * Make the batch durable without the group: its files' own
		 * fdatasyncs (each flushes the device after the record and
		 * the data), or, with none, the store syncs its log (0).
		 * Then sync alone for a while, so a stopped member costs
		 * one wait per FLUSH_SOLO_MS, not one per batch. */
		atomic_fetch_add_explicit(&e->flush_fallbacks, 1, memory_order_relaxed);
		e->flush_solo_until_ms = clock_mono_ms() + FLUSH_SOLO_MS;
		LOG_WARN("chunk", "shared flush wait timed out after %u ms, syncing alone for %u ms: "
			 "target=%s", e->cfg.shared_flush_wait_ms, FLUSH_SOLO_MS, e->dir);
		memcpy(fds, sfds, sn * sizeof(*fds));
		n = sn;
		all = sall;
	}
	/* Otherwise the shared blocks' files need no sync of their own: the
	 * flush that ends each fdatasync below covers their overwrites. */
	int *every = NULL;
	if (all) {
		every = xmalloc(CHUNK_NCLASS * CHUNK_MAX_FILES * sizeof(*every));
		pthread_mutex_lock(&e->mu);
		n = chunk_alloc_fds(e->alloc, every, CHUNK_NCLASS * CHUNK_MAX_FILES);
		pthread_mutex_unlock(&e->mu);
	}
	if (e->flush && n)
		test_flush_point(e, FP_FILES);
	int err = n ? sync_fds(e, all ? every : fds, n) : 0;
	atomic_fetch_add_explicit(&e->data_syncs, n, memory_order_relaxed);
	free(every);
	if (e->flush && n) {
		/* The group's other members: a failed sync here is a failed
		 * flush of their disk too; and one of theirs since this batch's
		 * first write may have lost its completed writes, which our
		 * syncs cannot bring back (chunk_flush.c "Errors"). */
		if (err)
			chunk_flush_group_failed(e->flush);
		else if ((err = chunk_flush_group_check(e->flush, since)))
			LOG_ERR("chunk",
			        "a flush of the disk failed while the batch's writes "
			        "ran: target=%s",
			        e->dir);
	}
	if (!err && n) {
		/* (Recorded without a flush group too: cache-mode writes,
		 * noflush_batch, skip their sync only into such blocks.)
		 * Every block this batch wrote from its start, or from the end
		 * of its known written prefix, is now written that far for the
		 * filesystem, its extent conversions committed by the sync of
		 * its file (synced here: in FDS): later writes and applies
		 * inside that prefix may share flushes. A block of a chunk
		 * grown by appends or random writes past its end fills from
		 * its start (an append writes the gap too), one prefix after
		 * another. */
		pthread_mutex_lock(&e->mu);
		for (struct req *r = list; r; r = r->next)
			for (size_t i = 0; i < r->nce; i++) {
				const struct centry *c = &r->ces[i];
				if (!c->has_new || r->journal || r->img_end <= r->img_start)
					continue;
				if (whole_block(r, c)) {
					chunk_alloc_set_written(e->alloc, c->nmeta.pos);
					continue;
				}
				if (!e->cfg.flush_prefix)
					continue;
				uint64_t off;
				int fd = chunk_alloc_fd(e->alloc, c->nmeta.pos, &off);
				bool synced = all;
				for (size_t k = 0; k < n && !synced; k++)
					synced = fds[k] == fd;
				if (synced && (r->img_start == 0 ||
					       chunk_alloc_written_upto(e->alloc, c->nmeta.pos) >=
						       r->img_start))
					chunk_alloc_set_written_upto(e->alloc, c->nmeta.pos,
								     r->img_end);
			}
		pthread_mutex_unlock(&e->mu);
	}
	return err ? err : (int)n;
}

/* Drops the journal of T's chunk from its metadata if it is still the
 * one T applied (a later mutation in this batch or before replaced it).
 * 1 when it dropped it, 0 when there was nothing to drop, or -errno. */
static int retire_one(struct chunk_batch *b, const struct retiree *t)
{
	struct chunk_meta cur;
	int err = chunk_store_batch_get(b, t->id, &cur);
	if (err)
		return err == -ENOENT || err == -CFS_ECORRUPT ? 0 : err;
	if (cur.jrnl_len && cur.commit_ver == t->ver && chunk_pos_eq(cur.pos, t->pos)) {
		free(cur.jrnl);
		cur.jrnl = NULL;
		cur.jrnl_len = cur.jrnl_off = 0;
		err = chunk_store_batch_put(b, t->id, &cur);
		if (!err)
			err = 1;
	}
	chunk_meta_fini(&cur);
	return err;
}

/* Waits until the data write of every early request in LIST completed.
 * Returns the first failure, 0 when all landed. Commit thread. */
static int wait_data(struct chunk_engine *e, struct req *list)
{
	int err = 0;
	pthread_mutex_lock(&e->cmu);
	for (struct req *r = list; r; r = r->next) {
		if (!r->early)
			continue;
		while (r->data_pending)
			pthread_cond_wait(&e->ccv, &e->cmu);
		if (!err)
			err = r->data_err;
	}
	pthread_mutex_unlock(&e->cmu);
	return err;
}

/* CACHE-MODE WRITES (CHUNK_WF_NOFLUSH; KVCache namespaces created with
 * --durability cache, docs/kvcache.md "Durability"). True when the batch
 * LIST (no retirees: RET NULL) holds only writes that asked for no flush,
 * none journaled, none dropping a journal of its base, and each into a
 * block known written up to the end of its image (chunk_alloc_written_upto,
 * as the shared flush decides it: a plain overwrite, which needs no ext4
 * journal commit to be readable after a crash of the machine, so no
 * extent state of the filesystem rides on the flush we skip). Such a
 * batch is committed without any fdatasync or device flush: its data
 * writes have completed (O_DIRECT, in the device's cache), its record is
 * written (O_DIRECT; beside the data for an early write, wait_data then
 * waits for both), and it enters the overlay. Any other
 * batch, a mixed one included, syncs as before, and its flush (a device
 * cache flush, whatever form it takes) makes every earlier batch's record
 * and data durable too, those of cache-mode batches included.
 *
 * What holds after kill -9 of any process (the machine stays up): the
 * same as for synced batches. Completed O_DIRECT writes are in the
 * device (or its cache), which a process's death does not touch; the
 * record is written only after the batch's data writes completed
 * (wait_data), and the next record only after this batch committed, so
 * the log's last record alone may name a data write never issued (record
 * beside data), which open verifies as before.
 *
 * What power loss (or a crash of the machine) can do: every cache-mode
 * batch after the last flush of the device may lose its record, its data,
 * or either one alone. Replay takes the records as a run of consecutive
 * seqs, so what comes back is the state after some prefix of the batches
 * (records are written one after another; one lost ends the run). In that
 * prefix a chunk a cache-mode batch wrote may name a block whose data did
 * not reach the media (it holds older bytes, another chunk's, or zeros);
 * only the last record is verified at open, so such a chunk comes back
 * with metadata whose page CRCs its block fails. Every read verifies the
 * page CRCs (-CFS_ECORRUPT, never the wrong bytes; craq_repair.c repairs
 * the replica from a good one where there is one), and a chunk whose record
 * was lost reads as its previous version. The allocator is rebuilt from
 * the metadata as always, so no block is ever owned twice. Chunks written
 * by synced batches keep their guarantee: a synced batch is acknowledged
 * after a flush that followed every earlier record and data write, so the
 * prefix that comes back reaches at least past it. */
static bool noflush_batch(struct chunk_engine *e, struct req *list, struct retiree *ret)
{
	if (ret || !list)
		return false;
	/* The flags first, without mu: every synced batch comes here, and
	 * almost none of them is a cache-mode one. */
	for (struct req *r = list; r; r = r->next) {
		if (r->kind != RQ_WRITE || !r->op || !(r->op->flags & CHUNK_WF_NOFLUSH) ||
		    r->journal || r->nce != 1)
			return false;
		const struct centry *c = &r->ces[0];
		if (!c->has_new || (c->exists && c->base.jrnl_len))
			return false;
	}
	bool ok = true;
	pthread_mutex_lock(&e->mu); /* the written bits change under mu */
	for (struct req *r = list; r && ok; r = r->next)
		if (chunk_alloc_written_upto(e->alloc, r->ces[0].nmeta.pos) < r->img_end)
			ok = false;
	pthread_mutex_unlock(&e->mu);
	return ok;
}

/* The oldest flush-group sample of the batch's writes (LIST's requests,
 * RET's applies, NOW for the record it is about to write): a failed
 * flush of the disk after it fails the batch (chunk_flush.c "Errors"). */
static uint64_t batch_fseq(struct req *list, struct retiree *ret, uint64_t now)
{
	uint64_t since = now;
	for (struct req *r = list; r; r = r->next)
		if (r->fseq_set && r->fseq < since)
			since = r->fseq;
	for (struct retiree *t = ret; t; t = t->next)
		if (t->fseq_set && t->fseq < since)
			since = t->fseq;
	return since;
}

static int apply_batch(struct chunk_engine *e, struct req *list, struct retiree *ret)
{
	struct chunk_batch *b;
	uint64_t since = e->flush ? batch_fseq(list, ret, chunk_flush_group_sample(e->flush)) : 0;
	int err = chunk_store_batch_begin(e->store, &b);
	if (err)
		return err;
	uint64_t retired = 0;
	for (struct retiree *t = ret; t; t = t->next) {
		if ((err = retire_one(b, t)) < 0) {
			chunk_store_batch_abort(b);
			return err;
		}
		retired += (uint64_t)err;
		err = 0;
	}
	for (struct req *r = list; r; r = r->next) {
		for (size_t i = 0; i < r->nce; i++) {
			struct centry *c = &r->ces[i];
			struct chunk_meta cur;
			int gerr = chunk_store_batch_get(b, c->id, &cur);
			int match = gerr == -ENOENT ? !c->exists
						    : !gerr && c->exists && same_meta(&cur, &c->base);
			if (c->bad_meta)
				match = gerr == -CFS_ECORRUPT;
			if (!gerr)
				chunk_meta_fini(&cur);
			if (!match) {
				/* Cannot happen while every mutation holds the chunk lock;
				 * refuse rather than leak or double-use a block. */
				LOG_ERR("chunk", "commit conflict: target=%s chunk=%llu:%u", e->dir,
					(unsigned long long)c->id.ino, c->id.idx);
				c->result = -CFS_ECONFLICT;
				continue;
			}
			if (c->has_new)
				err = chunk_store_batch_put(b, c->id, &c->nmeta);
			else if (c->exists)
				err = chunk_store_batch_del(b, c->id);
			if (err) {
				chunk_store_batch_abort(b);
				return err;
			}
		}
	}
	/* ONE FLUSH PER BATCH (chunk_store.c, write-ahead log): the batch's
	 * metadata record is written first, then the data files' fdatasync
	 * makes both it and the data durable; only with no data file to sync
	 * does the store sync its log itself. */
	if ((err = chunk_store_batch_write(b))) {
		chunk_store_batch_abort(b);
		return err;
	}
	for (struct req *r = list; e->test_crash_record && r; r = r->next)
		if (r->early && r->io.want == 0)
			_exit(77); /* test: the record is written, its data never was */
	/* Early writes: the record went out beside their data; the flush
	 * below must follow the data too. A data write that failed leaves a
	 * record naming data that is not there: only the replay rule (the
	 * last record is verified) may decide about it, so no later record
	 * may be written: ERROR state (-EIO even for a short write). */
	if ((err = wait_data(e, list))) {
		chunk_store_batch_abort(b);
		LOG_ERR("chunk", "data write of a logged batch failed: target=%s err=%s", e->dir,
			cfs_strerror(err));
		return err == -ENOSPC ? -EIO : err;
	}
	int synced = 0;
	if (e->cfg.sync && noflush_batch(e, list, ret)) {
		/* Cache mode: no fdatasync, no flush, no log sync (above). */
		uint64_t nw = 0;
		for (struct req *r = list; r; r = r->next)
			nw++;
		atomic_fetch_add_explicit(&e->noflush_batches, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&e->noflush_writes, nw, memory_order_relaxed);
		err = chunk_store_batch_commit_flushed(b, 1);
		return err;
	}
	if (e->cfg.sync) {
		uint64_t t0 = clock_mono_ns();
		if (e->test_sync_enospc && ++e->test_syncs == e->test_sync_enospc)
			synced = -ENOSPC;
		else
			synced = sync_batch_data(e, list, ret, since);
		add_us(&e->sync_us, t0, clock_mono_ns());
		if (synced < 0) {
			/* The record is written and its seq spent: a later
			 * record at this offset would carry a seq one too high
			 * and end the replay there, losing every batch after
			 * it, so no later record may follow: never the
			 * retryable -ENOSPC, ERROR state (-EIO). */
			chunk_store_batch_abort(b);
			LOG_ERR("chunk", "data sync of a logged batch failed: target=%s err=%s", e->dir,
				cfs_strerror(synced));
			return synced == -ENOSPC ? -EIO : synced;
		}
	}
	err = chunk_store_batch_commit_flushed(b, synced > 0 && e->wal_same_fs);
	if (!err)
		atomic_fetch_add_explicit(&e->journals_retired, retired, memory_order_relaxed);
	return err;
}

/* After the commit (ERR = its outcome): block bookkeeping and unlocks. */
static int finalize(struct chunk_engine *e, struct req *r, int err)
{
	int result = 0, removed = 0;
	if (r->journal) {
		/* Same block, still pinned and locked until the in-place write. */
		return err ? err : r->ces[0].result;
	}
	for (size_t i = 0; i < r->nce; i++) {
		struct centry *c = &r->ces[i];
		int ok = !err && !c->result;
		if (ok && c->has_new) {
			if (c->has_base && c->alloc_new)
				chunk_alloc_release(e->alloc, c->base.pos);
		} else if (ok && c->exists) {
			if (c->has_base)
				chunk_alloc_release(e->alloc, c->base.pos);
			removed++;
		} else if (c->alloc_new) {
			chunk_alloc_release(e->alloc, c->nmeta.pos);
		}
		if (c->has_base)
			chunk_alloc_unref(e->alloc, c->base.pos);
		c->has_base = c->alloc_new = 0;
		if (!ok && !result)
			result = err ? err : c->result;
	}
	for (size_t i = 0; i < r->nlocked; i++)
		unlock_chunk(e, r->ces[i].id);
	if (r->kind == RQ_REMOVE)
		return err ? err : removed;
	if (!result && r->kind == RQ_WRITE)
		fill_info(&r->op->info, &r->ces[0].nmeta);
	if (!result && r->kind == RQ_MOVE)
		atomic_fetch_add_explicit(&e->compact_moves, 1, memory_order_relaxed);
	return result;
}

/* LAZY RETIREMENT. A journal applied in place stays in its chunk's
 * metadata until a batch retires it, and retiring costs that batch an
 * fdatasync of the block's file before its commit. Retiring with every
 * batch made each batch of small overwrites pay a data sync besides the
 * metadata commit; instead journals retire together once cfg.retire_max have
 * gathered or the oldest waited cfg.retire_ms (or at close), so most batches
 * sync only the metadata. A chunk whose journal is still unretired when
 * its next mutation commits is covered by sync_batch_data: that batch
 * syncs the block's file whenever the new metadata no longer carries the
 * old journal, so the pages it held are durable in place first. Under
 * cmu. */
static bool retire_due(const struct chunk_engine *e)
{
	return e->retire_head && (e->retire_n >= e->cfg.retire_max ||
				  clock_mono_ms() - e->retire_since_ms >= e->cfg.retire_ms);
}

/* After a batch's commit (ERR its outcome): block bookkeeping, unlocks
 * and callbacks, in batch order; journaled overwrites go on to their
 * apply. The commit thread, or the callback thread in the pipeline. */
static void finish_batch(struct chunk_engine *e, struct req *list, int err)
{
	uint64_t t0 = clock_mono_ns();
	int results[64];
	struct req *r = list;
	while (r) {
		struct req *chunk_head = r;
		size_t n = 0;
		pthread_mutex_lock(&e->mu);
		for (; r && n < 64; r = r->next)
			results[n++] = finalize(e, r, err);
		pthread_mutex_unlock(&e->mu);
		struct req *q = chunk_head;
		for (size_t i = 0; i < n; i++) {
			struct req *next = q->next;
			if (q->journal) {
				/* Applied in place by the I/O thread, which
				 * calls back (or undoes, on error). */
				q->err = results[i];
				q->state = RS_APPLY;
				inbox_push(e, q);
			} else {
				complete(e, q, results[i]);
			}
			q = next;
		}
	}
	add_us(&e->callback_us, t0, clock_mono_ns());
}

/* COMMIT PIPELINE (cfg.commit_pipeline). Calling a batch back (finalize
 * under mu, then each request's callback: CRAQ forwards and replies, a
 * socket write each) took the commit thread about as long as the commit
 * itself, and writes that completed meanwhile waited for it before their
 * own batch could even start (the "queue" stage). So the commit thread
 * hands the committed batch to a thread of its own and takes the next
 * batch at once: its record and flush overlap the previous batch's
 * callbacks. Nothing about durability changes: a batch is handed over
 * only after its commit (record and flush) completed, so every callback
 * still follows the flush of its own batch, and batches are called back
 * in commit order (one callback thread, FIFO). A chunk stays locked
 * until its batch's finalize, so no later batch can hold a mutation of a
 * chunk whose earlier mutation is still being called back. */
static void *done_main(void *arg)
{
	struct chunk_engine *e = arg;
	pthread_mutex_lock(&e->dmu);
	for (;;) {
		while (!e->done_head && !e->done_stop)
			pthread_cond_wait(&e->dcv, &e->dmu);
		struct done_batch *d = e->done_head;
		if (!d)
			break; /* stop, and nothing left */
		e->done_head = d->next;
		if (!e->done_head)
			e->done_tail = NULL;
		pthread_mutex_unlock(&e->dmu);
		finish_batch(e, d->list, d->err);
		free(d);
		atomic_fetch_sub(&e->done_pending, 1);
		pthread_mutex_lock(&e->dmu);
	}
	pthread_mutex_unlock(&e->dmu);
	return NULL;
}

static void hand_over(struct chunk_engine *e, struct req *list, int err)
{
	struct done_batch *d = xmalloc(sizeof(*d));
	*d = (struct done_batch){ .list = list, .err = err };
	atomic_fetch_add(&e->done_pending, 1);
	pthread_mutex_lock(&e->dmu);
	if (e->done_tail)
		e->done_tail->next = d;
	else
		e->done_head = d;
	e->done_tail = d;
	pthread_cond_signal(&e->dcv);
	pthread_mutex_unlock(&e->dmu);
}

static void *commit_main(void *arg)
{
	struct chunk_engine *e = arg;
	pthread_t done_tid;
	if (e->cfg.commit_pipeline) {
		int perr = pthread_create(&done_tid, NULL, done_main, e);
		e->done_tid_ok = !perr;
		if (perr) /* as correct, only without the overlap */
			LOG_WARN("chunk", "no callback thread, calling back on the commit thread: "
				 "target=%s err=%s", e->dir, cfs_strerror(-perr));
	}
	for (;;) {
		pthread_mutex_lock(&e->cmu);
		while (!e->commit_head && !e->commit_stop && !retire_due(e)) {
			if (!e->retire_head) {
				pthread_cond_wait(&e->ccv, &e->cmu);
				continue;
			}
			/* Idle with journals applied: retire them when due. */
			struct timespec ts;
			uint64_t at = e->retire_since_ms + e->cfg.retire_ms;
			ts.tv_sec = (time_t)(at / 1000);
			ts.tv_nsec = (long)(at % 1000) * 1000000;
			pthread_cond_timedwait(&e->ccv, &e->cmu, &ts);
		}
		/* Group commit window (cfg.commit_window_us, none by default:
		 * with flush groups the wait cost more than the flushes it
		 * saved): while other data writes are still in flight, wait
		 * (bounded) so they share this commit's syncs. */
		if (e->commit_head && e->cfg.commit_window_us && atomic_load(&e->data_writes) > 0) {
			uint64_t t0 = clock_mono_ns();
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)e->cfg.commit_window_us * 1000;
			ts.tv_sec += (time_t)(ns / 1000000000);
			ts.tv_nsec = (long)(ns % 1000000000);
			while (atomic_load(&e->data_writes) > 0 && !e->commit_stop &&
			       pthread_cond_timedwait(&e->ccv, &e->cmu, &ts) != ETIMEDOUT)
				;
			add_us(&e->window_wait_us, t0, clock_mono_ns());
		}
		/* Journals applied so far retire with this batch: taken with
		 * the list, so any later mutation of their chunks is in it or
		 * after it. */
		struct req *list = e->commit_head;
		e->commit_head = e->commit_tail = NULL;
		struct retiree *ret = NULL;
		if (e->commit_stop || retire_due(e)) {
			ret = e->retire_head;
			e->retire_head = NULL;
			e->retire_n = 0;
		}
		int stop = e->commit_stop;
		pthread_mutex_unlock(&e->cmu);
		if (!list && !ret && stop)
			break;
		uint64_t t_take = clock_mono_ns(), nlist = 0;
		for (struct req *r = list; r; r = r->next, nlist++)
			r->t_take_ns = t_take;
		if (nlist) {
			atomic_fetch_add_explicit(&e->commit_batches, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&e->commit_reqs, nlist, memory_order_relaxed);
			if (atomic_load(&e->done_pending))
				atomic_fetch_add_explicit(&e->overlapped_batches, 1,
							  memory_order_relaxed);
		}
		/* Readers of a journaled chunk park from before its metadata
		 * commits until its pages are in place (journal_done). */
		pthread_mutex_lock(&e->mu);
		for (struct req *r = list; r; r = r->next)
			if (r->journal)
				lock_find(e, r->ces[0].id)->applying = 1;
		pthread_mutex_unlock(&e->mu);
		int err = atomic_load(&e->failed);
		if (!err)
			err = apply_batch(e, list, ret);
		add_us(&e->commit_us, t_take, clock_mono_ns());
		/* Whatever failed, no early data write may still be reading
		 * a buffer that finalize and the callbacks give back. */
		int derr = wait_data(e, list);
		if (!err && derr)
			err = -EIO; /* cannot happen: apply_batch waited */
		if (err == -ENOSPC && ret) {
			/* Still applied in place: retire them with a later batch. */
			struct retiree *t = ret;
			size_t n = 1;
			for (; t->next; t = t->next)
				n++;
			pthread_mutex_lock(&e->cmu);
			if (!e->retire_head)
				e->retire_since_ms = clock_mono_ms();
			t->next = e->retire_head;
			e->retire_head = ret;
			e->retire_n += n;
			pthread_mutex_unlock(&e->cmu);
			ret = NULL;
		}
		retire_free(ret);
		if (err && err != -ENOSPC && !atomic_load(&e->failed)) {
			/* The data or metadata state on disk is now uncertain. */
			LOG_ERR("chunk", "commit failed, target enters ERROR state: target=%s err=%s",
				e->dir, cfs_strerror(err));
			atomic_store(&e->failed, err);
		}
		if (list && e->done_tid_ok)
			hand_over(e, list, err);
		else
			finish_batch(e, list, err);
		/* After the callbacks: a due checkpoint delays no answer. */
		if (!atomic_load(&e->failed))
			(void)chunk_store_maintain(e->store);
	}
	if (e->done_tid_ok) {
		pthread_mutex_lock(&e->dmu);
		e->done_stop = 1;
		pthread_cond_signal(&e->dcv);
		pthread_mutex_unlock(&e->dmu);
		pthread_join(done_tid, NULL);
		e->done_tid_ok = 0;
	}
	return NULL;
}

/* ---- public ------------------------------------------------------------- */

static uint64_t space_free(struct chunk_engine *e)
{
	uint64_t now = clock_mono_ms();
	if (now - atomic_load(&e->space_ms) >= CHUNK_SPACE_POLL_MS) {
		struct statvfs sv;
		if (!statvfs(e->dir, &sv))
			atomic_store(&e->space_free, (uint64_t)sv.f_bavail * sv.f_frsize);
		atomic_store(&e->space_ms, now ? now : 1);
	}
	return atomic_load(&e->space_free);
}

bool chunk_engine_space_low(struct chunk_engine *e)
{
	return space_free(e) < e->keep_head + CHUNK_PIPELINE_ROOM;
}

bool chunk_engine_has_room(struct chunk_engine *e)
{
	return space_free(e) >= 2 * e->keep_head;
}


void chunk_engine_cfg_default(struct chunk_engine_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->meta_map_bytes = UINT64_C(64) << 30;
	cfg->sync = 1;
	cfg->ring_entries = 256;
	/* No window by default: with flush groups an extra batch's flush is
	 * shared, and holding a batch open for writes in flight only added
	 * its wait to every write in it (docs/kvcache.md "commit window"). */
	cfg->commit_window_us = 0;
	cfg->compact_threshold = 0.5;
	cfg->compact_interval_ms = 1000;
	cfg->compact_bytes_per_sec = UINT64_C(64) << 20;
	cfg->buf_cache_bytes = (size_t)256 << 20;
	cfg->journal_max = 64 << 10;
	cfg->retire_ms = 100;
	cfg->retire_max = 512;
	cfg->cached_read_max = 64 << 10;
	cfg->idle_keep_bytes = UINT64_C(1) << 30;
	const char *ov = getenv("CFS_CHUNK_OVERLAP");
	cfg->record_overlap = !(ov && !strcmp(ov, "0"));
	const char *sf = getenv("CFS_CHUNK_SHARED_FLUSH");
	cfg->shared_flush = !(sf && !strcmp(sf, "0"));
	cfg->shared_flush_wait_ms = 200;
	const char *cp = getenv("CFS_CHUNK_COMMIT_PIPELINE");
	cfg->commit_pipeline = cp && !strcmp(cp, "1");
	const char *cw = getenv("CFS_CHUNK_COMMIT_WINDOW_US");
	int64_t cwv;
	if (cw && *cw) {
		/* A window past a second would stall every write behind it; a
		 * value that is not a number must not silently become one. */
		if (cfg_parse_size(cw, &cwv) == 0 && cwv <= 1000000)
			cfg->commit_window_us = (unsigned)cwv;
		else
			LOG_WARN("chunk", "CFS_CHUNK_COMMIT_WINDOW_US='%s' is not a number of "
					  "microseconds up to 1000000; keeping %u",
				 cw, cfg->commit_window_us);
	}
	const char *fp = getenv("CFS_CHUNK_FLUSH_PREFIX");
	cfg->flush_prefix = fp && !strcmp(fp, "1");
}

static void op_fail_now(struct chunk_op *op, int err)
{
	op->result = err;
	op->done(op);
}

void chunk_engine_submit(struct chunk_engine *e, struct chunk_op *op)
{
	struct req *r = xcalloc(1, sizeof(*r));
	r->op = op;
	r->t_submit_ns = clock_mono_ns();
	r->state = RS_START;
	switch (op->type) {
	case CHUNK_OP_WRITE:
		if (!op->len || !op->data || (uint64_t)op->off + op->len > CHUNK_MAX_SIZE) {
			free(r);
			op_fail_now(op, -EINVAL);
			return;
		}
		r->kind = RQ_WRITE;
		break;
	case CHUNK_OP_READ:
		r->kind = RQ_READ;
		break;
	case CHUNK_OP_REMOVE:
		r->kind = RQ_REMOVE;
		if (op->end_idx <= op->id.idx) {
			free(r);
			op_fail_now(op, 0);
			return;
		}
		break;
	case CHUNK_OP_QUERY:
		r->kind = RQ_QUERY;
		break;
	case CHUNK_OP_QUERY_LAST:
		r->kind = RQ_QUERY_LAST;
		break;
	default:
		free(r);
		op_fail_now(op, -EINVAL);
		return;
	}
	if (r->kind == RQ_WRITE) {
		r->ces = xcalloc(1, sizeof(*r->ces));
		r->nce = 1;
		r->ces[0].id = op->id;
	}
	pthread_mutex_lock(&e->qmu);
	int stopping = atomic_load(&e->io_stop);
	if (!stopping)
		e->nreqs++;
	pthread_mutex_unlock(&e->qmu);
	if (stopping) {
		req_free(e, r);
		op_fail_now(op, -ESHUTDOWN);
		return;
	}
	inbox_push(e, r);
}

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
};

static void waiter_done(struct chunk_op *op)
{
	struct waiter *w = op->arg;
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int run_sync(struct chunk_engine *e, struct chunk_op *op)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	op->done = waiter_done;
	op->arg = &w;
	chunk_engine_submit(e, op);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return op->result;
}

int chunk_engine_write(struct chunk_engine *e, struct chunk_id id, uint32_t off, uint32_t len,
		       const void *data, uint64_t update_ver, uint32_t chain_ver,
		       struct chunk_info *info)
{
	struct chunk_op op = { .type = CHUNK_OP_WRITE, .id = id, .off = off, .len = len,
			       .data = data, .update_ver = update_ver, .chain_ver = chain_ver };
	int rc = run_sync(e, &op);
	if (!rc && info)
		*info = op.info;
	return rc;
}

int chunk_engine_read(struct chunk_engine *e, struct chunk_read_range *ranges, size_t n)
{
	struct chunk_op op = { .type = CHUNK_OP_READ, .ranges = ranges, .nranges = n };
	return run_sync(e, &op);
}

int chunk_engine_remove(struct chunk_engine *e, uint64_t ino, uint32_t begin, uint32_t end)
{
	struct chunk_op op = { .type = CHUNK_OP_REMOVE, .id = { ino, begin }, .end_idx = end };
	return run_sync(e, &op);
}

int chunk_engine_query(struct chunk_engine *e, struct chunk_id id, struct chunk_info *info)
{
	struct chunk_op op = { .type = CHUNK_OP_QUERY, .id = id };
	int rc = run_sync(e, &op);
	if (!rc)
		*info = op.info;
	return rc;
}

int chunk_engine_query_now(struct chunk_engine *e, struct chunk_id id, struct chunk_info *info)
{
	if (atomic_load(&e->io_stop))
		return -ESHUTDOWN;
	/* The same lookup as start_query's, on the caller's thread: the
	 * inbox adds no ordering a query needs (it reads committed metadata,
	 * whatever else is queued), only a wake-up of the I/O thread. */
	struct chunk_meta m;
	pthread_mutex_lock(&e->mu);
	int err = chunk_store_reader_get(e->reader, id, &m);
	pthread_mutex_unlock(&e->mu);
	if (!err) {
		fill_info(info, &m);
		chunk_meta_fini(&m);
	}
	return err;
}

int chunk_engine_query_last(struct chunk_engine *e, uint64_t ino, uint32_t *idx,
			    struct chunk_info *info)
{
	struct chunk_op op = { .type = CHUNK_OP_QUERY_LAST, .id = { ino, 0 } };
	int rc = run_sync(e, &op);
	if (!rc) {
		*idx = op.id.idx;
		*info = op.info;
	}
	return rc;
}

/* The capacity the engine reports: its configured one, else its file
 * system's size. */
static uint64_t engine_capacity(const struct chunk_engine *e)
{
	if (e->cfg.capacity)
		return e->cfg.capacity;
	struct statvfs sv;
	return statvfs(e->dir, &sv) ? 0 : (uint64_t)sv.f_blocks * sv.f_frsize;
}

int chunk_engine_sizes_nowait(struct chunk_engine *e, uint64_t *capacity, uint64_t *used)
{
	struct chunk_alloc_stat as;
	if (pthread_mutex_trylock(&e->mu))
		return -EBUSY;
	chunk_alloc_get_stat(e->alloc, &as);
	pthread_mutex_unlock(&e->mu);
	*capacity = engine_capacity(e);
	*used = as.reserved_bytes - as.idle_bytes;
	return 0;
}

void chunk_engine_get_stat(struct chunk_engine *e, struct chunk_engine_stat *out)
{
	struct chunk_alloc_stat as;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&e->mu);
	chunk_alloc_get_stat(e->alloc, &as);
	pthread_mutex_unlock(&e->mu);
	out->capacity = engine_capacity(e);
	out->used = as.reserved_bytes - as.idle_bytes;
	out->idle = as.idle_bytes;
	out->recycled_groups = as.recycled_groups;
	out->chunks = chunk_store_count(e->store);
	for (unsigned i = 0; i < CHUNK_NCLASS; i++)
		out->used_blocks += as.used_blocks[i];
	out->punched_groups = as.punched_groups;
	out->corrupt_reads = atomic_load(&e->corrupt_reads);
	out->stale_cached_reads = atomic_load(&e->stale_cached_reads);
	out->cached_probes = atomic_load(&e->cr_probes_total);
	out->cached_hits = atomic_load(&e->cr_hits_total);
	out->direct_small_reads = atomic_load(&e->cr.direct);
	out->open_errors = atomic_load(&e->open_errors);
	out->compact_moves = atomic_load(&e->compact_moves);
	out->data_syncs = atomic_load(&e->data_syncs);
	out->journals_retired = atomic_load(&e->journals_retired);
	out->commit_batches = atomic_load(&e->commit_batches);
	out->commit_writes = atomic_load(&e->commit_reqs);
	out->window_wait_us = atomic_load(&e->window_wait_us);
	out->commit_us = atomic_load(&e->commit_us);
	out->sync_us = atomic_load(&e->sync_us);
	out->joint_syncs = atomic_load(&e->joint_syncs);
	if (e->flush) {
		struct chunk_flush_stat fs;
		chunk_flush_group_stat(e->flush, &fs);
		out->group_led = fs.led;
		out->group_covered = fs.covered;
		out->group_timeouts = atomic_load(&e->flush_fallbacks);
	}
	out->stage_n = atomic_load(&e->stage_n);
	out->stage_pre_us = atomic_load(&e->stage_pre_us);
	out->stage_io_us = atomic_load(&e->stage_io_us);
	out->stage_queue_us = atomic_load(&e->stage_queue_us);
	out->stage_commit_us = atomic_load(&e->stage_commit_us);
	out->callback_us = atomic_load(&e->callback_us);
	out->overlapped_batches = atomic_load(&e->overlapped_batches);
	out->noflush_batches = atomic_load(&e->noflush_batches);
	out->noflush_writes = atomic_load(&e->noflush_writes);
	out->fixed_writes = atomic_load(&e->fixed_writes);
	out->fixed_regs = atomic_load(&e->fixed_regs);
	out->fixed_held = atomic_load(&e->fixed_held);
}

struct iter_ctx {
	chunk_engine_iter_fn fn;
	void *arg;
};

static int iter_cb(void *arg, struct chunk_id id, const struct chunk_meta *m, int derr)
{
	struct iter_ctx *c = arg;
	if (derr)
		return 0; /* counted and logged at open; unreadable, not dumpable */
	struct chunk_info info;
	fill_info(&info, m);
	return c->fn(c->arg, id, &info);
}

int chunk_engine_iterate(struct chunk_engine *e, struct chunk_id from, struct chunk_id to,
			 chunk_engine_iter_fn fn, void *arg)
{
	struct iter_ctx c = { fn, arg };
	return chunk_store_scan(e->store, from, to, iter_cb, &c);
}

static void move_done(struct chunk_op *op)
{
	waiter_done(op);
}

int chunk_engine_compact(struct chunk_engine *e)
{
	unsigned cls;
	uint32_t gid;
	struct chunk_pos pos[CHUNK_GROUP_BLOCKS];
	struct chunk_id ids[CHUNK_GROUP_BLOCKS];
	pthread_mutex_lock(&e->mu);
	int found = chunk_alloc_pick_sparse(e->alloc, e->cfg.compact_threshold, &cls, &gid);
	size_t n = found ? chunk_alloc_group_live(e->alloc, cls, gid, pos, ids, CHUNK_GROUP_BLOCKS) : 0;
	pthread_mutex_unlock(&e->mu);
	if (!found)
		return 0;
	int moved = 0, err = 0;
	for (size_t i = 0; i < n && !err; i++) {
		uint64_t t0 = clock_mono_ns();
		struct req *r = xcalloc(1, sizeof(*r));
		struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
		r->kind = RQ_MOVE;
		r->state = RS_START;
		struct chunk_op *op = xcalloc(1, sizeof(*op));
		r->op = op;
		op->done = move_done;
		op->arg = &w;
		r->move_from = pos[i];
		r->ces = xcalloc(1, sizeof(*r->ces));
		r->nce = 1;
		r->ces[0].id = ids[i];
		pthread_mutex_lock(&e->qmu);
		e->nreqs++;
		pthread_mutex_unlock(&e->qmu);
		inbox_push(e, r);
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		if (op->result < 0 && op->result != -CFS_ECORRUPT)
			err = op->result;
		else if (op->result == 0)
			moved++;
		free(op);
		/* Throttle: hold the configured byte rate over the block size. */
		uint64_t bytes = chunk_class_size(cls);
		if (e->cfg.compact_bytes_per_sec) {
			uint64_t want_ns = bytes * 1000000000ull / e->cfg.compact_bytes_per_sec;
			uint64_t took = clock_mono_ns() - t0;
			if (took < want_ns)
				clock_sleep_ms((want_ns - took) / 1000000 + 1);
		}
	}
	pthread_mutex_lock(&e->mu);
	chunk_alloc_unfreeze(e->alloc, cls, gid);
	pthread_mutex_unlock(&e->mu);
	if (moved)
		LOG_INFO("chunk", "compacted group: target=%s class=%u group=%u moved=%d", e->dir, cls,
			 gid, moved);
	return err ? err : moved;
}

static void *compact_main(void *arg)
{
	struct chunk_engine *e = arg;
	pthread_mutex_lock(&e->compmu);
	while (!e->comp_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)e->cfg.compact_interval_ms * 1000000;
		ts.tv_sec += (time_t)(ns / 1000000000);
		ts.tv_nsec = (long)(ns % 1000000000);
		pthread_cond_timedwait(&e->compcv, &e->compmu, &ts);
		if (e->comp_stop)
			break;
		pthread_mutex_unlock(&e->compmu);
		int rc = chunk_engine_compact(e);
		if (rc < 0)
			LOG_WARN("chunk", "compaction step failed: target=%s err=%s", e->dir, cfs_strerror(rc));
		pthread_mutex_lock(&e->compmu);
	}
	pthread_mutex_unlock(&e->compmu);
	return NULL;
}

struct check_ctx {
	struct chunk_engine *e;
	uint64_t *keys; /* encoded positions */
	size_t n, cap;
	uint64_t missing;
};

static uint64_t pos_key(struct chunk_pos p)
{
	return (uint64_t)p.cls << 56 | (uint64_t)p.file << 40 | p.block;
}

static int check_cb(void *arg, struct chunk_id id, const struct chunk_meta *m, int derr)
{
	struct check_ctx *c = arg;
	if (derr)
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 1024;
		c->keys = xrealloc(c->keys, c->cap * sizeof(*c->keys));
	}
	c->keys[c->n++] = pos_key(m->pos);
	if (!chunk_alloc_owns(c->e->alloc, m->pos, id))
		c->missing++;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int chunk_engine_check(struct chunk_engine *e, uint64_t *chunks, uint64_t *leaked, uint64_t *doubled)
{
	struct check_ctx c = { .e = e };
	pthread_mutex_lock(&e->mu);
	int err = chunk_store_scan(e->store, (struct chunk_id){ 0, 0 },
				   (struct chunk_id){ UINT64_MAX, UINT32_MAX }, check_cb, &c);
	uint64_t used = chunk_alloc_used_total(e->alloc);
	pthread_mutex_unlock(&e->mu);
	if (err) {
		free(c.keys);
		return err;
	}
	if (c.n)
		qsort(c.keys, c.n, sizeof(*c.keys), cmp_u64);
	uint64_t dup = 0;
	for (size_t i = 1; i < c.n; i++)
		dup += c.keys[i] == c.keys[i - 1];
	free(c.keys);
	*chunks = c.n;
	*doubled = dup + c.missing;
	uint64_t distinct = c.n - dup - c.missing;
	*leaked = used > distinct ? used - distinct : 0;
	return 0;
}

struct open_ctx {
	struct chunk_engine *e;
	struct retiree *replayed; /* journals rewritten in place */
};

/* Writes a committed journal's pages in place (idempotent: they may be
 * there already, in part or whole, from before the crash). */
static int replay_journal(struct chunk_engine *e, struct chunk_id id, const struct chunk_meta *m)
{
	void *buf;
	if (posix_memalign(&buf, CHUNK_PAGE, m->jrnl_len))
		return -ENOMEM;
	memcpy(buf, m->jrnl, m->jrnl_len);
	uint64_t boff;
	int fd = chunk_alloc_fd(e->alloc, m->pos, &boff);
	ssize_t n = pwrite(fd, buf, m->jrnl_len, (off_t)(boff + m->jrnl_off));
	int err = n < 0 ? -errno : (size_t)n != m->jrnl_len ? -EIO : 0;
	free(buf);
	if (err)
		LOG_ERR("chunk", "journal replay failed: target=%s chunk=%llu:%u err=%s", e->dir,
			(unsigned long long)id.ino, id.idx, cfs_strerror(err));
	return err;
}

static int open_cb(void *arg, struct chunk_id id, const struct chunk_meta *m, int derr)
{
	struct open_ctx *oc = arg;
	struct chunk_engine *e = oc->e;
	int err = derr ? derr : chunk_alloc_mark(e->alloc, m->pos, id);
	if (err) {
		atomic_fetch_add_explicit(&e->open_errors, 1, memory_order_relaxed);
		LOG_ERR("chunk", "bad chunk metadata at open: target=%s chunk=%llu:%u err=%s", e->dir,
			(unsigned long long)id.ino, id.idx,
			err == -EEXIST ? "block claimed twice" : cfs_strerror(err));
		if (err != -EEXIST && err != -CFS_ECORRUPT)
			return err;
		return 0;
	}
	if (m->jrnl_len) {
		if ((err = replay_journal(e, id, m)))
			return err;
		struct retiree *t = xmalloc(sizeof(*t));
		t->id = id;
		t->ver = m->commit_ver;
		t->pos = m->pos;
		t->jend = m->jrnl_off + m->jrnl_len;
		t->fseq = 0;
		t->fseq_set = 0;
		t->next = oc->replayed;
		oc->replayed = t;
	}
	return 0;
}

/* After the replay: makes the pages durable, then drops the journals. */
static int retire_replayed(struct chunk_engine *e, struct retiree *list)
{
	int err = 0;
	if (!list)
		return 0;
	size_t max = CHUNK_NCLASS * CHUNK_MAX_FILES, n;
	int *fds = xmalloc(max * sizeof(*fds));
	n = chunk_alloc_fds(e->alloc, fds, max);
	for (size_t k = 0; k < n && !err; k++)
		if (fdatasync(fds[k]))
			err = -errno;
	free(fds);
	struct chunk_batch *b;
	if (!err && !(err = chunk_store_batch_begin(e->store, &b))) {
		for (struct retiree *t = list; t && !err; t = t->next) {
			int rr = retire_one(b, t);
			err = rr < 0 ? rr : 0;
		}
		if (err)
			chunk_store_batch_abort(b);
		else
			err = chunk_store_batch_commit(b);
	}
	size_t cnt = 0;
	for (struct retiree *t = list; t; t = t->next)
		cnt++;
	retire_free(list);
	if (!err)
		LOG_INFO("chunk", "journals replayed: target=%s chunks=%zu", e->dir, cnt);
	return err;
}

/* chunk_store_verify_fn: reads M's block from disk (its file opened by
 * path: the allocator has not opened files yet), lays M's journal over
 * it, and checks every page CRC. O_DIRECT: the page cache of a data file
 * may hold stale pages (the buffered read fds, chunk_alloc_cached_fd,
 * race with direct writes), and a stale page here would drop an
 * acknowledged record. */
static int verify_on_disk(void *arg, struct chunk_id id, const struct chunk_meta *m)
{
	struct chunk_engine *e = arg;
	if (!m->len)
		return 0;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/data/c%02u/f%03u", e->dir, m->pos.cls, m->pos.file);
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint64_t size = (uint64_t)m->npages * CHUNK_PAGE;
	void *mem;
	if (posix_memalign(&mem, CHUNK_PAGE, size)) {
		close(fd);
		return -ENOMEM;
	}
	uint8_t *buf = mem;
	off_t at = (off_t)(CHUNK_FILE_HDR + (uint64_t)m->pos.block * chunk_class_size(m->pos.cls));
	ssize_t n = pread(fd, buf, size, at);
	int err = n < 0 ? -errno : (uint64_t)n < m->len ? -EIO : 0;
	close(fd);
	if (!err && m->jrnl_len && m->jrnl_off + (uint64_t)m->jrnl_len <= size)
		memcpy(buf + m->jrnl_off, m->jrnl, m->jrnl_len);
	for (uint32_t p = 0; p < m->npages && !err; p++) {
		uint64_t start = (uint64_t)p * CHUNK_PAGE;
		size_t len = m->len - start < CHUNK_PAGE ? m->len - start : CHUNK_PAGE;
		if (crc32c(0, buf + start, len) != m->page_crc[p])
			err = -CFS_ECORRUPT;
	}
	free(mem);
	if (err)
		LOG_WARN("chunk", "logged chunk not on disk: target=%s chunk=%llu:%u err=%s", e->dir,
			 (unsigned long long)id.ino, id.idx, cfs_strerror(err));
	return err;
}

int chunk_engine_open(const struct chunk_engine_cfg *cfg, struct chunk_engine **out)
{
	char path[PATH_MAX];
	if (!cfg->dir || (mkdir(cfg->dir, 0755) && errno != EEXIST))
		return cfg->dir ? -errno : -EINVAL;
	snprintf(path, sizeof(path), "%s/meta", cfg->dir);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -errno;
	struct chunk_engine *e = xcalloc(1, sizeof(*e));
	e->cfg = *cfg;
	e->dir = xstrdup(cfg->dir);
	const char *tcr = getenv("CFS_TEST_CRASH_RECORD");
	e->test_crash_record = tcr ? (unsigned)strtoul(tcr, NULL, 10) : 0;
	const char *tse = getenv("CFS_TEST_SYNC_ENOSPC");
	e->test_sync_enospc = tse ? (unsigned)strtoul(tse, NULL, 10) : 0;
	const char *tff = getenv("CFS_TEST_GROUP_FLUSH_FAIL");
	e->test_flush_fail = tff ? (unsigned)strtoul(tff, NULL, 10) : 0;
	const char *tfp = getenv("CFS_TEST_GROUP_FLUSH_FAIL_PATH");
	e->test_flush_path = !tfp                     ? FP_ANY
	                     : !strcmp(tfp, "shared") ? FP_SHARED
	                     : !strcmp(tfp, "files")  ? FP_FILES
	                                              : FP_ANY;
	e->cfg.dir = e->dir;
	if (!e->cfg.ring_entries)
		e->cfg.ring_entries = 256;
	e->efd = -1;
	/* No rise test: at CR_WINDOW probes it would be sampling noise
	 * (common/cache_probe.h). */
	cache_probe_init(&e->cr, CR_WINDOW, 0);
	pthread_mutex_init(&e->mu, NULL);
	pthread_mutex_init(&e->qmu, NULL);
	pthread_cond_init(&e->idle_cv, NULL);
	pthread_mutex_init(&e->cmu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->ccv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&e->compmu, NULL);
	pthread_cond_init(&e->compcv, NULL);
	pthread_mutex_init(&e->dmu, NULL);
	pthread_cond_init(&e->dcv, NULL);
	int err = chunk_alloc_open(cfg->dir, cfg->capacity, &e->alloc);
	if (err)
		goto fail;
	chunk_alloc_set_idle_max(e->alloc, cfg->idle_keep_bytes);
	if ((err = chunk_store_open_verified(path, cfg->meta_map_bytes, cfg->sync, verify_on_disk, e,
					     &e->store)))
		goto fail;
	char dpath[PATH_MAX];
	struct stat mst, dst;
	snprintf(dpath, sizeof(dpath), "%s/data", cfg->dir);
	e->wal_same_fs = !stat(path, &mst) && !stat(dpath, &dst) && mst.st_dev == dst.st_dev;
	if (cfg->sync && cfg->shared_flush) {
		/* Without a group the files are synced one by one: as durable. */
		int ferr = chunk_flush_group_open(dpath, cfg->flush_group_dir, &e->flush);
		if (ferr == -EOPNOTSUPP)
			LOG_INFO("chunk", "no shared flush on this filesystem, syncing files: target=%s",
				 e->dir);
		else if (ferr)
			LOG_WARN("chunk", "no shared flush, syncing files: target=%s err=%s", e->dir,
				 cfs_strerror(ferr));
	}
	struct statvfs sv;
	if (!statvfs(cfg->dir, &sv)) {
		/* The floors of the disk-full rule (chunk_engine.h). */
		uint64_t total = (uint64_t)sv.f_blocks * sv.f_frsize;
		e->keep_head = total / 16;
		if (e->keep_head < CHUNK_KEEP_MIN)
			e->keep_head = CHUNK_KEEP_MIN;
		if (e->keep_head > CHUNK_KEEP_MAX)
			e->keep_head = CHUNK_KEEP_MAX;
		e->keep_replica = e->keep_head / 2;
	}
	struct open_ctx oc = { e, NULL };
	err = chunk_store_scan(e->store, (struct chunk_id){ 0, 0 },
			       (struct chunk_id){ UINT64_MAX, UINT32_MAX }, open_cb, &oc);
	if (!err)
		err = retire_replayed(e, oc.replayed);
	else
		retire_free(oc.replayed);
	if (err || (err = chunk_alloc_open_done(e->alloc)))
		goto fail;
	if ((err = chunk_store_reader_new(e->store, &e->reader)))
		goto fail;
	e->pool = chunk_bufpool_new(cfg->buf_cache_bytes);
	e->efd = eventfd(0, EFD_CLOEXEC);
	if (e->efd < 0) {
		err = -errno;
		goto fail;
	}
	if ((err = io_uring_queue_init(e->cfg.ring_entries, &e->ring, 0)))
		goto fail;
	const char *fx = getenv("CFS_CHUNK_FIXED");
	if (cfg->fixed && !(fx && !strcmp(fx, "0"))) {
		/* Refused (an old kernel): writes pin their pages as before. */
		int rc = io_uring_register_buffers_sparse(&e->ring, FIXED_SLOTS);
		e->fixed_on = rc == 0;
		if (rc)
			LOG_INFO("chunk", "no fixed buffers: target=%s err=%s", e->dir,
				 cfs_strerror(rc));
	}
	/* Without it (io_uring refused a second ring) a batch's files are
	 * synced one after another, as durable, only slower. */
	const char *ss = getenv("CFS_CHUNK_SYNC_SERIAL");
	e->sync_ring_ok = !(ss && !strcmp(ss, "1")) &&
			  !io_uring_queue_init(SYNC_RING_ENTRIES, &e->sync_ring, 0);
	if ((err = -pthread_create(&e->commit_tid, NULL, commit_main, e))) {
		io_uring_queue_exit(&e->ring);
		if (e->sync_ring_ok)
			io_uring_queue_exit(&e->sync_ring);
		goto fail;
	}
	if ((err = -pthread_create(&e->io_tid, NULL, io_main, e))) {
		pthread_mutex_lock(&e->cmu);
		e->commit_stop = 1;
		pthread_cond_signal(&e->ccv);
		pthread_mutex_unlock(&e->cmu);
		pthread_join(e->commit_tid, NULL);
		io_uring_queue_exit(&e->ring);
		if (e->sync_ring_ok)
			io_uring_queue_exit(&e->sync_ring);
		goto fail;
	}
	if (cfg->compact_interval_ms && cfg->compact_threshold > 0 &&
	    !pthread_create(&e->comp_tid, NULL, compact_main, e))
		e->comp_started = 1;
	if (e->fixed_on)
		chunk_fixed_watch(cfg->fixed, fixed_wake, e);
	LOG_INFO("chunk", "target open: dir=%s chunks=%llu open_errors=%llu", e->dir,
		 (unsigned long long)chunk_store_count(e->store),
		 (unsigned long long)atomic_load(&e->open_errors));
	*out = e;
	return 0;
fail:
	LOG_ERR("chunk", "target open failed: dir=%s err=%s", cfg->dir, cfs_strerror(err));
	chunk_flush_group_close(e->flush);
	if (e->efd >= 0)
		close(e->efd);
	chunk_bufpool_free(e->pool);
	chunk_store_reader_free(e->reader);
	chunk_alloc_close(e->alloc);
	chunk_store_close(e->store);
	free(e->dir);
	free(e);
	return err;
}

/* One line per target at close: what a write's latency was made of over
 * the target's life (docs/kvcache.md "Where a put's latency goes"). */
static void log_commit_stat(struct chunk_engine *e)
{
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	if (!st.commit_batches)
		return;
	uint64_t n = st.stage_n ? st.stage_n : 1;
	LOG_INFO("chunk", "group commit: target=%s batches=%llu writes=%llu data_syncs=%llu joint=%llu "
		 "flush_led=%llu flush_covered=%llu flush_timeouts=%llu "
		 "noflush_batches=%llu noflush_writes=%llu fixed_writes=%llu fixed_regs=%llu "
		 "window_ms=%llu commit_ms=%llu sync_ms=%llu callback_ms=%llu overlapped=%llu "
		 "cow_writes=%llu avg_us: pre=%llu "
		 "io=%llu queue=%llu commit=%llu", e->dir, (unsigned long long)st.commit_batches,
		 (unsigned long long)st.commit_writes, (unsigned long long)st.data_syncs,
		 (unsigned long long)st.joint_syncs, (unsigned long long)st.group_led,
		 (unsigned long long)st.group_covered, (unsigned long long)st.group_timeouts,
		 (unsigned long long)st.noflush_batches, (unsigned long long)st.noflush_writes,
		 (unsigned long long)st.fixed_writes, (unsigned long long)st.fixed_regs,
		 (unsigned long long)st.window_wait_us / 1000, (unsigned long long)st.commit_us / 1000,
		 (unsigned long long)st.sync_us / 1000, (unsigned long long)st.callback_us / 1000,
		 (unsigned long long)st.overlapped_batches, (unsigned long long)st.stage_n,
		 (unsigned long long)(st.stage_pre_us / n), (unsigned long long)(st.stage_io_us / n),
		 (unsigned long long)(st.stage_queue_us / n),
		 (unsigned long long)(st.stage_commit_us / n));
}

void chunk_engine_close(struct chunk_engine *e)
{
	if (!e)
		return;
	chunk_fixed_unwatch(e->cfg.fixed, e); /* no wake-up once efd is closed */
	if (e->comp_started) {
		pthread_mutex_lock(&e->compmu);
		e->comp_stop = 1;
		pthread_cond_signal(&e->compcv);
		pthread_mutex_unlock(&e->compmu);
		pthread_join(e->comp_tid, NULL);
	}
	pthread_mutex_lock(&e->qmu);
	while (e->nreqs)
		pthread_cond_wait(&e->idle_cv, &e->qmu);
	atomic_store(&e->io_stop, 1);
	pthread_mutex_unlock(&e->qmu);
	uint64_t one = 1;
	if (write(e->efd, &one, sizeof(one)) < 0)
		LOG_WARN("chunk", "eventfd write failed: err=%s", cfs_strerror(errno));
	pthread_join(e->io_tid, NULL);
	pthread_mutex_lock(&e->cmu);
	e->commit_stop = 1;
	pthread_cond_signal(&e->ccv);
	pthread_mutex_unlock(&e->cmu);
	pthread_join(e->commit_tid, NULL);
	log_commit_stat(e);
	chunk_flush_group_close(e->flush);
	io_uring_queue_exit(&e->ring);
	if (e->sync_ring_ok)
		io_uring_queue_exit(&e->sync_ring);
	close(e->efd);
	for (unsigned b = 0; b < LOCK_BUCKETS; b++)
		ASSERT(!e->locks[b]);
	chunk_store_reader_free(e->reader);
	chunk_alloc_close(e->alloc);
	chunk_store_close(e->store);
	chunk_bufpool_free(e->pool);
	pthread_mutex_destroy(&e->mu);
	pthread_mutex_destroy(&e->qmu);
	pthread_cond_destroy(&e->idle_cv);
	pthread_mutex_destroy(&e->cmu);
	pthread_cond_destroy(&e->ccv);
	pthread_mutex_destroy(&e->compmu);
	pthread_cond_destroy(&e->compcv);
	pthread_mutex_destroy(&e->dmu);
	pthread_cond_destroy(&e->dcv);
	free(e->dir);
	free(e);
}
