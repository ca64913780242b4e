/* chunk_engine.h - the chunk engine of one storage target (a directory on
 * one disk): chunk data in size-class block files, metadata in LMDB.
 *
 * Asynchronous interface for servers: fill a struct chunk_op, call
 * chunk_engine_submit, and op->done(op) is called exactly once with
 * op->result set. The callback runs on one of the engine's own threads
 * (the I/O thread for reads, queries and requests failed before any I/O;
 * the commit thread for writes and removes that reached the metadata
 * commit). It must not block: a server posts the result to its event loop.
 * chunk_engine_submit itself never blocks on I/O (it queues and wakes the
 * I/O thread), so event-loop threads may call it, and so may callbacks.
 *
 * Synchronous wrappers (chunk_engine_write/read/...) submit and wait; they
 * are for tools and tests and must not be called from a callback.
 *
 * Semantics: a write to a chunk is applied copy-on-write (or, for an
 * append that fits the block, in place past the committed end; or, for a
 * small overwrite or a small append inside the block, journaled in the
 * metadata and then written in place)
 * and is durable when it completes (with cfg.sync; a CHUNK_WF_NOFLUSH write
 * only against process crashes, see there). Mutations of one chunk are
 * serialised in submission order per chunk; reads see the last completed
 * write. Data is verified against per-page CRC32C on every read; a mismatch
 * fails that range with -CFS_ECORRUPT, is logged and counted.
 */
#ifndef CFS_STORAGE_CHUNK_ENGINE_H
#define CFS_STORAGE_CHUNK_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/chunk_format.h"

struct chunk_fixed;

struct chunk_engine;

struct chunk_engine_cfg {
	const char *dir;                  /* target directory (created if absent) */
	uint64_t capacity;                /* bytes of data files allowed; 0 = the filesystem's */
	uint64_t meta_map_bytes;          /* LMDB map size (sparse) */
	int sync;                         /* 1: fdatasync data and sync metadata before acking */
	unsigned ring_entries;            /* io_uring depth: I/Os in flight */
	unsigned commit_window_us;        /* max wait for in-flight writes to join a commit */
	double compact_threshold;         /* compact a class whose occupancy is below this */
	unsigned compact_interval_ms;     /* background compactor period; 0 = off */
	uint64_t compact_bytes_per_sec;   /* compactor data rate cap */
	size_t buf_cache_bytes;           /* idle aligned buffers kept */
	uint32_t journal_max;             /* overwrites of up to this many bytes (whole
					   * pages) inside a chunk at least twice as
					   * long are journaled and applied in place;
					   * 0: always copy-on-write */
	unsigned retire_ms;               /* applied journals leave the metadata in a
					   * batch once the oldest waited this long ... */
	unsigned retire_max;              /* ... or this many gathered (chunk_engine.c
					   * "lazy retirement"); 0 (both): at once */
	uint32_t cached_read_max;         /* reads of up to this many bytes (whole
					   * pages) go through the page cache
					   * (chunk_engine.c "page-cache reads");
					   * 0: every read is O_DIRECT */
	uint64_t idle_keep_bytes;         /* emptied allocation groups kept written
					   * for reuse instead of punched
					   * (chunk_alloc_set_idle_max); 0: punch */
	int record_overlap;               /* with sync: a write's batch record is
					   * written while its data write runs,
					   * not after it (chunk_engine.c "record
					   * beside data"); 0: after */
	int shared_flush;                 /* with sync: a batch whose writes all went
					   * into blocks known written is made
					   * durable by a device flush shared with
					   * the other targets on the filesystem
					   * (chunk_flush.h) instead of fdatasyncs
					   * of its files (default on;
					   * CFS_CHUNK_SHARED_FLUSH=0 in the
					   * environment: off) */
	int flush_prefix;                 /* with shared_flush: writes ending inside
					   * a block's known-written prefix
					   * (chunk_alloc_written_upto) share the
					   * flush too, not only those into blocks
					   * written whole (default off: slower for
					   * 4 KiB random writes on one disk, see
					   * docs/kvcache.md; CFS_CHUNK_FLUSH_PREFIX=1
					   * in the environment: on) */
	const char *flush_group_dir;      /* where flush groups meet; NULL: /dev/shm */
	unsigned shared_flush_wait_ms;    /* longest wait for another member's flush;
					   * then the batch syncs its own files and
					   * the target syncs alone for 5 s */
	int commit_pipeline;              /* a batch's unlocks and callbacks run on
					   * a thread of their own while the commit
					   * thread starts the next batch
					   * (chunk_engine.c "commit pipeline";
					   * default off: it did not pay;
					   * CFS_CHUNK_COMMIT_PIPELINE=1 in the
					   * environment: on) */
	struct chunk_fixed *fixed;        /* borrowed, may be NULL: memory whose
					   * pieces data writes from it register
					   * with the ring as fixed buffers
					   * (chunk_fixed.h; chunk_engine.c "fixed
					   * buffers"); outlives the engine.
					   * CFS_CHUNK_FIXED=0 in the environment
					   * at open: not used */
};

/* Fills defaults: sync on, 64 GiB map, 256 ring entries, no commit
 * window (CFS_CHUNK_COMMIT_WINDOW_US=N: N us), callbacks on the commit
 * thread (CFS_CHUNK_COMMIT_PIPELINE=1: on a thread of their own), compaction below
 * 50% every 1000 ms at up to 64 MiB/s, 256 MiB buffer cache, overwrites
 * up to 64 KiB journaled, journals retired after 100 ms or 512 of them,
 * reads up to 64 KiB through the page cache, 1 GiB of emptied groups kept
 * for reuse, records beside data (CFS_CHUNK_OVERLAP=0 in the environment:
 * after it), shared flush in the group of the filesystem (/dev/shm),
 * waiting at most 200 ms for another member (CFS_CHUNK_SHARED_FLUSH=0:
 * none). */
void chunk_engine_cfg_default(struct chunk_engine_cfg *cfg);

/* Opens the target, rebuilding the allocator from the metadata (and giving
 * back space of groups that a crash left reserved but empty). 0, -errno,
 * or -CFS_ECORRUPT (a data file or the store is not ours). */
int chunk_engine_open(const struct chunk_engine_cfg *cfg, struct chunk_engine **out);
/* Waits for submitted operations to complete, stops the threads, closes.
 * NULL-safe. Not from a callback. */
void chunk_engine_close(struct chunk_engine *e);

/* What a chunk's metadata says (for replies, queries and resync). */
struct chunk_info {
	uint32_t len;          /* bytes */
	uint32_t crc;          /* CRC32C of the whole chunk */
	uint32_t chain_ver;    /* chain version of the last update */
	uint64_t commit_ver;   /* committed version */
	uint64_t pending_ver;  /* pending version (== commit_ver when none) */
	struct chunk_pos pos;  /* where the block lives (admin tools, tests) */
};

/* One range of a batched read. DST receives min(len, chunk_len - off)
 * bytes; RESULT is that count (0 past the end), -ENOENT (no such chunk) or
 * -CFS_ECORRUPT. A DST aligned to 4 KiB with OFF and the count multiples
 * of 4 KiB is filled by the disk directly, without a bounce copy. */
struct chunk_read_range {
	struct chunk_id id;     /* in */
	uint32_t off;           /* in: offset in the chunk */
	uint32_t len;           /* in: bytes wanted */
	void *dst;              /* in: borrowed, >= len bytes, until done */
	int result;             /* out */
	struct chunk_info info; /* out: the chunk's metadata when result >= 0 */
	uint32_t crc;           /* out: CRC32C of the result bytes when result > 0 */
};

enum chunk_op_type {
	CHUNK_OP_WRITE,      /* id, off, len, data, update_ver, chain_ver -> info */
	CHUNK_OP_READ,       /* ranges, nranges -> per-range results */
	CHUNK_OP_REMOVE,     /* chunks id.ino, indexes [id.idx, end_idx) -> result = count */
	CHUNK_OP_QUERY,      /* id -> info (-ENOENT if absent) */
	CHUNK_OP_QUERY_LAST, /* id.ino -> id.idx and info of its last chunk, or -ENOENT */
};

struct chunk_op {
	enum chunk_op_type type;
	void (*done)(struct chunk_op *op); /* called once, engine thread */
	void *arg;                         /* caller's, untouched */
	struct chunk_id id;
	uint32_t off;                      /* WRITE: offset in the chunk */
	uint32_t len;                      /* WRITE: bytes, > 0, off + len <= 64 MiB */
	const void *data;                  /* WRITE: borrowed until done */
	uint64_t update_ver;               /* WRITE: 0 = commit_ver + 1, else must equal it */
	uint32_t chain_ver;                /* WRITE: rejected if below the chunk's */
	uint32_t end_idx;                  /* REMOVE: one past the last index */
	struct chunk_read_range *ranges;   /* READ: borrowed until done */
	size_t nranges;                    /* READ */
	int result;                        /* out: >= 0 or -errno / -CFS_E* */
	struct chunk_info info;            /* out: WRITE, QUERY, QUERY_LAST */
	uint32_t flags;                    /* WRITE: CHUNK_WF_* */
	/* WRITE, optional: the CRC32C of each CHUNK_PAGE of data (the last
	 * page may be short) and of all of data, as the caller computed them
	 * checking the data (chunk_crc_pages); only for off % CHUNK_PAGE == 0.
	 * The engine then takes them instead of a second pass where the new
	 * image is exactly data. Borrowed until done. */
	const uint32_t *page_crc;
	uint32_t data_crc;
};

enum chunk_write_flags {
	/* The chunk becomes exactly [0, len) = data (off must be 0), whatever
	 * it held; a nonzero update_ver is taken as the new version as is.
	 * For CRAQ resync and writes widened for a syncing replica. */
	CHUNK_WF_REPLACE = 1 << 0,
	/* A replica's apply of a write its head admitted: allocates down to
	 * the lower free-space floor (the disk-full rule below). */
	CHUNK_WF_FORWARDED = 1 << 1,
	/* data's CRC (data_crc) was not checked by the caller: the engine
	 * checks it on its I/O thread before it writes or commits anything
	 * of the write (page_crc must be NULL); a mismatch fails the write
	 * with -CFS_ECHECKSUM, the chunk unchanged. Lets a CRAQ member send
	 * its forward while its own copy is checked (craq_write.c). */
	CHUNK_WF_VERIFY = 1 << 2,
	/* Cache mode (KVCache namespaces with --durability cache): with
	 * cfg.sync, the write is acknowledged once its data write completed
	 * (O_DIRECT) and its metadata record is written, without an
	 * fdatasync or device flush for it, when its whole batch is such
	 * writes into blocks known written (chunk_engine.c noflush_batch);
	 * otherwise it commits as any write. After kill -9 it is as durable
	 * as any write; after power loss it may read back as its previous
	 * version or fail its CRC (-CFS_ECORRUPT), never as wrong bytes. */
	CHUNK_WF_NOFLUSH = 1 << 3,
};

/* The disk-full rule (docs/operations.md "A full disk"). A new block is
 * reserved only while the target's filesystem keeps a floor free for the
 * metadata store and deletes: at a head (and for compaction) the floor is
 * 1/16 of the filesystem, clamped to [CHUNK_KEEP_MIN, CHUNK_KEEP_MAX]; for
 * a forwarded write (CHUNK_WF_FORWARDED) half of that, so a replica about
 * as full as its head takes every write the head took. Past the floor a
 * write fails with -ENOSPC and nothing else changes: reads go on, and
 * freeing chunks (deletes) makes room again. */
#define CHUNK_KEEP_MIN (8ULL << 20)
#define CHUNK_KEEP_MAX (1ULL << 30)
/* While less than the head floor + this is free, a CRAQ head applies a
 * write before it forwards it (not both at once): an -ENOSPC then leaves
 * nothing on the successors, so the head answers it instead of fencing. */
#define CHUNK_PIPELINE_ROOM (512ULL << 20)
#define CHUNK_SPACE_POLL_MS 100

/* True while the filesystem's free space (read at most every
 * CHUNK_SPACE_POLL_MS) is below the head floor + CHUNK_PIPELINE_ROOM. Any
 * thread; cheap. */
bool chunk_engine_space_low(struct chunk_engine *e);
/* True while at least twice the head floor is free: a target fenced for a
 * full disk may rejoin (mgmtd_link.c). Any thread. */
bool chunk_engine_has_room(struct chunk_engine *e);

/* Queues OP (borrowed until done). Errors of the operation arrive through
 * op->done: -EINVAL (bad arguments), -ENOSPC (no block or metadata space),
 * -CFS_ECHAIN_VERSION (stale chain version), -CFS_ECONFLICT (update_ver is
 * not commit_ver + 1), -CFS_ECORRUPT (old data needed by a partial write
 * failed its CRC), -EIO, -ESHUTDOWN (engine closing or in ERROR state after
 * a failed sync). Any thread. */
void chunk_engine_submit(struct chunk_engine *e, struct chunk_op *op);

/* Split-phase read of one range, for a caller that does the disk I/O on
 * its own io_uring (an RPC loop thread answering reads without a hand-off
 * to the I/O thread). chunk_engine_read_prep looks RR's chunk up and pins
 * its block: it returns 0 when RR->result is already final (no such chunk,
 * nothing to read, corrupt metadata, no memory) and nothing is held; 2 when
 * the chunk is in the middle of a journaled overwrite's in-place write:
 * nothing is held, read the range through chunk_engine_submit instead (the
 * engine parks it until the write ends); or 1:
 * then the caller reads IO->len bytes of IO->fd at IO->file_off into
 * IO->buf (O_DIRECT and aligned, or with IO->cached a buffered fd, which
 * the caller may first try with preadv2(RWF_NOWAIT)) and passes the read's result (bytes or
 * -errno) to chunk_engine_read_end, which verifies the page CRCs, fills
 * RR->dst (a bounce copy when it was not aligned), sets RR->result and
 * unpins. Between the two the caller must keep IO and RR alive and the
 * engine open. Any thread, without blocking on I/O (takes the engine's
 * metadata lock briefly; read_end of a cached read whose CRCs fail re-reads
 * the range O_DIRECT before calling it corrupt, a blocking read on that
 * rare path); the engine's own reads use the same pair. */
#define CHUNK_READ_PC_WIN 16u /* pages: reads up to 64 KiB decode no page CRC array */
struct chunk_read_io {
	int fd;              /* out of prep: what to read */
	uint64_t file_off;
	void *buf;
	uint64_t len;
	/* engine's, between prep and end */
	struct chunk_meta meta;
	int pooled;          /* buf is an engine bounce buffer */
	int cached;          /* fd is the buffered one (page cache) ... */
	int dfd;             /* ... and this the O_DIRECT one, for a re-check */
	uint64_t rd_off;     /* chunk offset of buf[0] */
	uint32_t n;          /* bytes for the caller */
	/* The range's page CRCs when meta.page_crc is NULL (a range of at
	 * most CHUNK_READ_PC_WIN pages: prep decodes only those); pc_win[i]
	 * is page pc_first + i's. */
	uint32_t pc_first;
	uint32_t pc_win[CHUNK_READ_PC_WIN];
};
int chunk_engine_read_prep(struct chunk_engine *e, struct chunk_read_range *rr,
			   struct chunk_read_io *io);
void chunk_engine_read_end(struct chunk_engine *e, struct chunk_read_range *rr,
			   struct chunk_read_io *io, int res);
/* The caller's preadv2(RWF_NOWAIT) try of a cached read (IO->cached) HIT
 * (all bytes) or missed. While fewer than half of them hit, prep hands
 * most small reads out O_DIRECT instead (chunk_engine.c "page-cache
 * reads", common/cache_probe.h). Any thread. */
void chunk_engine_read_probed(struct chunk_engine *e, int hit);

/* Short-circuit reads (docs/rpc.md "Short-circuit reads"): a same-host
 * client reads a chunk's block file itself while nothing may change the
 * bytes. FN(ARG, E, ID) runs under the engine's metadata lock whenever a
 * mutation (write, remove, compaction move) takes ID's chunk lock, before
 * it changes anything of the chunk, its metadata or its block: it must
 * revoke every mapping of ID, quickly and without calling into the
 * engine. Set it before mappings are made. Any thread. */
typedef void (*chunk_engine_mut_fn)(void *arg, struct chunk_engine *e, struct chunk_id id);
void chunk_engine_set_mut_hook(struct chunk_engine *e, chunk_engine_mut_fn fn, void *arg);
/* Maps committed chunk ID for direct reads: under the same lock as the
 * hook, with no mutation of ID in flight (else -EBUSY) and the chunk
 * present (-ENOENT) with sane metadata (-CFS_ECORRUPT), calls
 * PUBLISH(ARG, META) (it must not call into the engine; its error is
 * returned), then fills *META (caller frees with chunk_meta_fini), *FD
 * (the block file's O_DIRECT descriptor, the engine's: borrowed, for
 * fstat), *BLOCK_OFF (the block's first byte in it) and PATH (the file's
 * path). So every mutation of ID after the publish runs the hook. Any
 * thread; no disk I/O beyond LMDB's mapped pages. */
int chunk_engine_sc_map(struct chunk_engine *e, struct chunk_id id,
			int (*publish)(void *arg, const struct chunk_meta *m), void *arg,
			struct chunk_meta *meta, int *fd, uint64_t *block_off, char *path,
			size_t pathlen);

/* Synchronous helpers: results as the op's. Any thread except callbacks. */
int chunk_engine_write(struct chunk_engine *e, struct chunk_id id, uint32_t off, uint32_t len,
		       const void *data, uint64_t update_ver, uint32_t chain_ver,
		       struct chunk_info *info);
/* Returns 0 (each range has its own result) or an op-level error. */
int chunk_engine_read(struct chunk_engine *e, struct chunk_read_range *ranges, size_t n);
/* Returns the number of chunks removed. */
int chunk_engine_remove(struct chunk_engine *e, uint64_t ino, uint32_t begin, uint32_t end);
int chunk_engine_query(struct chunk_engine *e, struct chunk_id id, struct chunk_info *info);
/* As chunk_engine_query, answered on the calling thread without a trip
 * through the I/O thread: a metadata lookup under the engine's lock (no
 * disk I/O beyond LMDB's mapped pages). -ESHUTDOWN once the engine stops.
 * Any thread, including op callbacks. */
int chunk_engine_query_now(struct chunk_engine *e, struct chunk_id id, struct chunk_info *info);
int chunk_engine_query_last(struct chunk_engine *e, uint64_t ino, uint32_t *idx,
			    struct chunk_info *info);

struct chunk_engine_stat {
	uint64_t capacity;        /* configured, else the filesystem's size */
	uint64_t used;            /* bytes reserved in data files, idle groups not
				   * counted (they are free space for chunks) */
	uint64_t idle;            /* bytes of emptied groups kept for reuse */
	uint64_t recycled_groups; /* idle groups written again */
	uint64_t chunks;          /* chunks in the metadata */
	uint64_t used_blocks;     /* allocated blocks (chunks + writes in flight + pinned) */
	uint64_t corrupt_reads;   /* ranges failed with -CFS_ECORRUPT */
	uint64_t stale_cached_reads; /* page-cache reads whose CRCs failed where the
				      * direct re-read passed (expected 0) */
	uint64_t cached_probes;   /* page-cache probes reported (chunk_engine_read_probed) */
	uint64_t cached_hits;     /* ... of which hit */
	uint64_t direct_small_reads; /* reads of at most cached_read_max sent O_DIRECT
				      * because probes were missing */
	uint64_t open_errors;     /* metadata records skipped at open */
	uint64_t compact_moves;   /* chunks moved by compaction */
	uint64_t punched_groups;  /* groups given back with punch-hole */
	uint64_t data_syncs;      /* fdatasync calls on data files before commits */
	uint64_t journals_retired; /* journals dropped after their pages were synced */
	/* Group commit: batches of requests committed, the requests in them,
	 * and the commit thread's time holding batches open for data writes
	 * in flight (the window), committing them (record, data wait, syncs)
	 * and in the data files' fdatasync alone. */
	uint64_t commit_batches;
	uint64_t commit_writes;
	uint64_t window_wait_us;
	uint64_t commit_us;
	uint64_t sync_us;
	uint64_t joint_syncs; /* data fdatasyncs issued at once with others of
			       * their batch (io_uring; CFS_CHUNK_SYNC_SERIAL=1
			       * in the environment at open: none) */
	/* Shared flush (cfg.shared_flush): device flushes this target made
	 * for its group, and batches another target's flush covered. */
	uint64_t group_led;
	uint64_t group_covered;
	uint64_t group_timeouts; /* waits for the group that timed out: the
				  * batch synced its own files (fallback) */
	/* Latency of copy-on-write writes committed after their data write
	 * (the bulk of large writes), summed per stage over stage_n writes:
	 * submit -> data write issued (inbox, lock, lookup, allocation),
	 * -> data write done, -> taken into a batch (waiting for the commit
	 * thread), -> called back (window, commit, flush, unlock). */
	uint64_t stage_n;
	uint64_t stage_pre_us;
	uint64_t stage_io_us;
	uint64_t stage_queue_us;
	uint64_t stage_commit_us;
	/* Time spent unlocking and calling back committed batches (on the
	 * callback thread with cfg.commit_pipeline, else on the commit
	 * thread, which then starts no batch meanwhile), and the batches a
	 * commit started while an earlier batch's callbacks still ran. */
	uint64_t callback_us;
	uint64_t overlapped_batches;
	/* Cache mode (CHUNK_WF_NOFLUSH): batches committed without any
	 * fdatasync or flush, and the writes in them. */
	uint64_t noflush_batches;
	uint64_t noflush_writes;
	/* Data writes submitted from registered pieces of cfg.fixed
	 * (IORING_OP_WRITE_FIXED: no page pinning per write), and pieces
	 * registered with the ring. */
	uint64_t fixed_writes;
	uint64_t fixed_regs;
	/* Slots holding a registered piece now (their pages stay pinned). */
	uint64_t fixed_held;
};
/* Counters and sizes; cheap, no I/O. Any thread. */
void chunk_engine_get_stat(struct chunk_engine *e, struct chunk_engine_stat *out);
/* The sizes mgmtd is told (chunk_engine_stat's capacity and used) without
 * waiting: -EBUSY at once, *CAPACITY and *USED untouched, while another
 * thread holds the engine's mutex (which its I/O thread can hold across a
 * disk call that hangs); else 0. For threads that serve more than this
 * engine (the storage service's mgmtd link). Any thread. */
int chunk_engine_sizes_nowait(struct chunk_engine *e, uint64_t *capacity, uint64_t *used);

/* Calls FN for each chunk with FROM <= id < TO from one metadata snapshot
 * (a dump for resync). FN returns nonzero to stop. Reads metadata only, may
 * touch the disk: not from an event loop. 0, FN's value, or -errno. */
typedef int (*chunk_engine_iter_fn)(void *arg, struct chunk_id id, const struct chunk_info *info);
int chunk_engine_iterate(struct chunk_engine *e, struct chunk_id from, struct chunk_id to,
			 chunk_engine_iter_fn fn, void *arg);

/* One compaction step, synchronously: if a class is sparser than the
 * threshold, moves the live chunks out of its emptiest group. Returns the
 * number of chunks moved (0: nothing to do) or -errno. Not from callbacks. */
int chunk_engine_compact(struct chunk_engine *e);

/* Consistency check for tests and admin tools, with no operation in
 * flight: *CHUNKS = chunks in the metadata; *DOUBLED = blocks claimed by
 * two chunks, or claimed by a chunk the allocator does not give them to;
 * *LEAKED = allocated blocks no chunk claims. 0 or -errno. */
int chunk_engine_check(struct chunk_engine *e, uint64_t *chunks, uint64_t *leaked, uint64_t *doubled);

#endif
