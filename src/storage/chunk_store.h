/* chunk_store.h - the per-target chunk metadata store (LMDB).
 *
 * Maps struct chunk_id -> struct chunk_meta. Writes go through a batch (one
 * LMDB write transaction) so a group of chunk updates, and with them the
 * allocator state that is derived from them, commit atomically and durably
 * with one sync. Reads use short read-only transactions and never block on
 * writers.
 *
 * Threads: any thread may call the read functions concurrently. One batch
 * at a time may be open (LMDB has a single writer); the batch belongs to the
 * thread that began it.
 */
#ifndef CFS_STORAGE_CHUNK_STORE_H
#define CFS_STORAGE_CHUNK_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "storage/chunk_format.h"

struct chunk_store;
struct chunk_batch;

/* Opens (creating) the store in directory DIR (must exist). MAP_BYTES caps
 * its size; SYNC 0 skips fsync at commit (tests only: a machine crash may
 * then lose recent commits, a process crash loses nothing).
 * Returns 0, -errno, or -CFS_ECORRUPT when the files are not a store. */
int chunk_store_open(const char *dir, uint64_t map_bytes, int sync, struct chunk_store **out);
/* Checks that the data META describes is on disk (open-time replay of the
 * log's last record, chunk_store.c): 0 when it is; -ENOMEM, -EMFILE or
 * -ENFILE when it could not be checked (the open then fails with that
 * error, the log untouched); any other nonzero value when it is not (the
 * record is dropped as never acknowledged). */
typedef int (*chunk_store_verify_fn)(void *arg, struct chunk_id id, const struct chunk_meta *meta);
/* As chunk_store_open; VERIFY (may be NULL: not checked) is called during
 * the open for each chunk the log's last record puts. */
int chunk_store_open_verified(const char *dir, uint64_t map_bytes, int sync,
			      chunk_store_verify_fn verify, void *arg, struct chunk_store **out);
/* Read-only view for inspection (fsck), safe beside a running target:
 * LMDB read-only plus the log's records in memory; nothing is written,
 * no batch may be begun. Errors as chunk_store_open. */
int chunk_store_open_snapshot(const char *dir, uint64_t map_bytes, struct chunk_store **out);
/* NULL-safe. No batch may be open. Checkpoints the log into LMDB. */
void chunk_store_close(struct chunk_store *s);

/* Looks up ID. 0 with *OUT filled (caller runs chunk_meta_fini), -ENOENT,
 * -CFS_ECORRUPT (value does not decode), -ENOMEM or -EIO. */
int chunk_store_get(struct chunk_store *s, struct chunk_id id, struct chunk_meta *out);
/* A reusable read handle for one thread's many point lookups (saves the
 * transaction setup of chunk_store_get). Owned by one thread at a time. */
struct chunk_store_reader;
/* 0 or -errno. */
int chunk_store_reader_new(struct chunk_store *s, struct chunk_store_reader **out);
void chunk_store_reader_free(struct chunk_store_reader *r); /* NULL-safe */
/* As chunk_store_get, on a fresh snapshot. */
int chunk_store_reader_get(struct chunk_store_reader *r, struct chunk_id id, struct chunk_meta *out);
/* As chunk_store_reader_get for a read of pages [FIRST, FIRST + COUNT)
 * only: the value is checked whole, but OUT->page_crc stays NULL and PC
 * (COUNT entries) gets those pages' CRCs (chunk_meta_decode_pages). */
int chunk_store_reader_get_pages(struct chunk_store_reader *r, struct chunk_id id, uint32_t first,
				 uint32_t count, struct chunk_meta *out, uint32_t *pc);

/* Last chunk (highest index) of inode INO: 0 with *ID and *OUT filled,
 * -ENOENT when the inode has no chunk, or an error as chunk_store_get. */
int chunk_store_last(struct chunk_store *s, uint64_t ino, struct chunk_id *id, struct chunk_meta *out);

/* Called per chunk by chunk_store_scan; the meta is borrowed for the call.
 * DECODE_ERR is 0 or -CFS_ECORRUPT (then META is zeroed). Return nonzero to
 * stop the scan (that value is returned by chunk_store_scan). */
typedef int (*chunk_store_scan_fn)(void *arg, struct chunk_id id, const struct chunk_meta *meta,
				   int decode_err);
/* Calls FN for every chunk with FROM <= id < TO, in id order, inside one
 * read snapshot. Returns 0, FN's nonzero value, or -errno. */
int chunk_store_scan(struct chunk_store *s, struct chunk_id from, struct chunk_id to,
		     chunk_store_scan_fn fn, void *arg);
/* Number of chunks in the store. */
uint64_t chunk_store_count(struct chunk_store *s);

/* Opens the write batch. 0 or -errno. */
int chunk_store_batch_begin(struct chunk_store *s, struct chunk_batch **out);
/* Reads ID as the batch sees it (its own puts included). As chunk_store_get. */
int chunk_store_batch_get(struct chunk_batch *b, struct chunk_id id, struct chunk_meta *out);
/* 0, -ENOSPC (store full: abort the batch), -ENOMEM or -EIO. */
int chunk_store_batch_put(struct chunk_batch *b, struct chunk_id id, const struct chunk_meta *m);
/* Deleting an absent id is not an error. Errors as batch_put. */
int chunk_store_batch_del(struct chunk_batch *b, struct chunk_id id);
/* WAL mode (opened with sync): writes B's record to the log, not yet
 * durable; no change may be added after it. Otherwise a no-op. 0 or
 * -errno (abort B then): -ENOSPC/-ENOMEM only from before the record's
 * seq was spent (a due checkpoint, the buffer); a failed record write is
 * -EIO, after which no further record may be written to this store (the
 * next one would carry a seq that ends the replay): the caller stops the
 * store's writes (the engine's ERROR state). The same holds for any
 * failure after this returned 0 (the data sync, batch_commit_flushed). */
int chunk_store_batch_write(struct chunk_batch *b);
/* As chunk_store_batch_commit. FLUSHED 1: the caller has called fdatasync
 * on a file of the log's filesystem after chunk_store_batch_write
 * returned, so the record is durable and the commit needs no flush of
 * its own. Changes are visible to readers only after it returns 0. */
int chunk_store_batch_commit_flushed(struct chunk_batch *b, int flushed);
/* Batch owner thread, no batch open: checkpoints the log into LMDB when
 * it is due. 0 or -errno (the changes stay in the log and overlay). */
int chunk_store_maintain(struct chunk_store *s);
struct chunk_store_stat {
	int wal;                /* batches go through the log */
	uint64_t wal_syncs;     /* fdatasyncs of the log itself */
	uint64_t checkpoints;   /* overlay written into LMDB */
	uint64_t pending;       /* overlay entries not yet in LMDB */
};
/* Counters; the batch owner's thread (others may read torn values). */
void chunk_store_get_stat(struct chunk_store *s, struct chunk_store_stat *out);
/* Walks a log image (DATA, SIZE bytes) as open replays it, decoding every
 * value: the run's record and change counts; 0 or -CFS_ECORRUPT (a
 * record with a good CRC whose changes do not parse). For fsck and the
 * fuzz target. */
int chunk_store_wal_decode(const void *data, size_t size, uint64_t *records, uint64_t *changes);
/* Commits and frees B. 0, -ENOSPC or -EIO; B is gone either way, and on
 * error nothing of it was applied. */
int chunk_store_batch_commit(struct chunk_batch *b);
/* Discards B. NULL-safe. */
void chunk_store_batch_abort(struct chunk_batch *b);

#endif
