/* chunk_alloc.h - block allocator of one target: 11 size classes, each with
 * up to 256 data files carved into groups of 256 blocks.
 *
 * State is in memory only and is rebuilt at open from the chunk metadata
 * (chunk_alloc_mark for each chunk, then chunk_alloc_open_done), so it can
 * never disagree with what is committed. Blocks carry reader reference
 * counts: releasing a block a reader still holds only marks it, and it is
 * freed when the last reference goes.
 *
 * Not thread-safe: the engine calls everything under its mutex. Functions
 * that return an fd borrow it for as long as the allocator is open.
 */
#ifndef CFS_STORAGE_CHUNK_ALLOC_H
#define CFS_STORAGE_CHUNK_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "storage/chunk_format.h"

struct chunk_alloc;

struct chunk_alloc_stat {
	uint64_t reserved_bytes;              /* fallocated data-file bytes */
	uint64_t used_blocks[CHUNK_NCLASS];   /* allocated blocks per class */
	uint64_t groups[CHUNK_NCLASS];        /* reserved groups per class */
	uint64_t punched_groups;              /* groups given back so far */
	uint64_t idle_bytes;                  /* of reserved_bytes: empty groups kept
					       * written for reuse (chunk_alloc_set_idle_max) */
	uint64_t recycled_groups;             /* idle groups taken again so far */
};

/* Opens the allocator over DIR/data (created if absent). CAPACITY caps the
 * reserved bytes (0: no cap beyond the filesystem). 0 or -errno. */
int chunk_alloc_open(const char *dir, uint64_t capacity, struct chunk_alloc **out);
/* Closes the files. NULL-safe. */
void chunk_alloc_close(struct chunk_alloc *a);
/* Up to MAX bytes of emptied groups (classes up to 1 MiB, reserved whole)
 * stay fallocated and are handed out again before any other empty group,
 * instead of being punched at once: their blocks were written, so writing
 * them again is a plain overwrite for the filesystem, without the extent
 * conversion (and its metadata sync) a write into fallocated space costs.
 * They are punched when a reservation fails for room (capacity, the
 * keep_free floor or the filesystem), and are not kept while the
 * filesystem has less than MAX + 1 GiB free; they count in reserved_bytes and
 * in idle_bytes. 0 (the default): every emptied group is punched. */
void chunk_alloc_set_idle_max(struct chunk_alloc *a, uint64_t max);

/* Rebuild at open: records that ID's committed metadata uses POS.
 * 0; -EEXIST if POS is already taken (two chunks claim it); -CFS_ECORRUPT
 * when POS is outside any data file; -errno opening the file. */
int chunk_alloc_mark(struct chunk_alloc *a, struct chunk_pos pos, struct chunk_id id);
/* Ends the rebuild: gives back (punch-hole) space of groups that hold no
 * chunk, left over from writes a crash cut short. 0 or -errno. */
int chunk_alloc_open_done(struct chunk_alloc *a);

/* Allocates a block of class CLS for a new version of chunk ID (recorded as
 * the block's owner), preferring
 * the fullest non-frozen group with a free block, then an idle group
 * (chunk_alloc_set_idle_max); reserves a new group (or,
 * for classes above 1 MiB, the block) with fallocate when none has one.
 * 0, or -ENOSPC (capacity or filesystem full), -EMFILE (all files' groups
 * in use), -errno. */
int chunk_alloc_get(struct chunk_alloc *a, unsigned cls, struct chunk_id id, struct chunk_pos *out);
/* chunk_alloc_get that also fails with -ENOSPC (before any fallocate)
 * when a reservation would leave less than KEEP_FREE bytes free on the
 * filesystem (statvfs f_bavail); 0: no such floor. A block of an already
 * reserved group needs no reservation and is given regardless. */
int chunk_alloc_get_keep(struct chunk_alloc *a, unsigned cls, struct chunk_id id,
			 uint64_t keep_free, struct chunk_pos *out);
/* 1 if POS is allocated to chunk ID. Metadata that fails this (its data
 * file was missing at open, or another chunk claimed the block first) must
 * not be used to touch the block. */
int chunk_alloc_owns(struct chunk_alloc *a, struct chunk_pos pos, struct chunk_id id);
/* The block at POS is no longer referenced by metadata (or a failed write
 * gives it back): freed now, or when its last reader reference drops.
 * Punches the group (or large block) once nothing in it is left. */
void chunk_alloc_release(struct chunk_alloc *a, struct chunk_pos pos);
/* Reader references on an allocated block. */
void chunk_alloc_ref(struct chunk_alloc *a, struct chunk_pos pos);
void chunk_alloc_unref(struct chunk_alloc *a, struct chunk_pos pos);
/* Reader references POS's block holds now (0 for a block without any). */
uint32_t chunk_alloc_refs(struct chunk_alloc *a, struct chunk_pos pos);

/* File descriptor (O_DIRECT) and byte offset of POS's block. */
int chunk_alloc_fd(struct chunk_alloc *a, struct chunk_pos pos, uint64_t *off);
/* The path of POS's data file into BUF (short-circuit reads). */
void chunk_alloc_path(struct chunk_alloc *a, struct chunk_pos pos, char *buf, size_t n);
/* A buffered (page cache), read-only fd of the same file as chunk_alloc_fd,
 * readahead off; -1 when it could not be opened. Only for reads: every
 * write goes through the O_DIRECT fd, and the kernel drops cached pages of
 * a range a direct write or a hole punch changes, so what this fd reads
 * is what the direct fd would (chunk_engine.c "page-cache reads"). */
int chunk_alloc_cached_fd(struct chunk_alloc *a, struct chunk_pos pos);
/* WRITTEN BLOCKS (chunk_flush.h). 1 if the whole of POS's block was written
 * and made durable with an fdatasync of its file since the allocator
 * opened, and not punched since: a write into it is a plain overwrite,
 * which needs no journal commit (no unwritten-extent conversion, no block
 * allocation) to be durable, only a device flush issued after it
 * completed. 0 when unknown (every block at open). */
int chunk_alloc_written(struct chunk_alloc *a, struct chunk_pos pos);
/* Records that POS's whole block was written and synced as above. The
 * caller knows that fdatasync of its file completed after the write did.
 * A no-op unless POS is allocated. */
void chunk_alloc_set_written(struct chunk_alloc *a, struct chunk_pos pos);
/* WRITTEN PREFIX: the same knowledge for the first bytes of a block, for a
 * block filled from its start a piece at a time (a chunk grown by small
 * appends, or by random writes past its end, writes the gap too): a write
 * or an in-place apply that ends inside the prefix is a plain overwrite.
 * Returns the bytes from POS's block start known written and synced: the
 * class size when the whole block is (chunk_alloc_written), 0 when
 * unknown. Cleared when the block is punched, kept while a freed block
 * stays reserved (its extents stay written). Under the caller's lock, as
 * the rest of the allocator. */
uint64_t chunk_alloc_written_upto(struct chunk_alloc *a, struct chunk_pos pos);
/* Records that [0, END) of POS's block was written and an fdatasync of its
 * file completed after those writes did. Raises the prefix, never lowers
 * it; counts whole pages only; END >= the class size is
 * chunk_alloc_set_written. A no-op unless POS is allocated. */
void chunk_alloc_set_written_upto(struct chunk_alloc *a, struct chunk_pos pos, uint64_t end);
/* 1 if POS's block is allocated. */
int chunk_alloc_is_used(struct chunk_alloc *a, struct chunk_pos pos);
/* Total allocated blocks over all classes. */
uint64_t chunk_alloc_used_total(struct chunk_alloc *a);
void chunk_alloc_get_stat(struct chunk_alloc *a, struct chunk_alloc_stat *out);
/* Opened data files' fds, for a sync pass: fills up to MAX, returns count. */
size_t chunk_alloc_fds(struct chunk_alloc *a, int *fds, size_t max);

/* Compaction: if class occupancy (used blocks / blocks of non-empty
 * groups) is below THRESHOLD and at least two groups are non-empty, freezes
 * the emptiest group (no more allocations from it) and returns 1 with its
 * class and number; 0 when nothing is sparse enough. */
int chunk_alloc_pick_sparse(struct chunk_alloc *a, double threshold, unsigned *cls, uint32_t *gid);
/* Live blocks of a frozen group: fills up to MAX positions and owners,
 * returns the count. */
size_t chunk_alloc_group_live(struct chunk_alloc *a, unsigned cls, uint32_t gid,
			      struct chunk_pos *pos, struct chunk_id *ids, size_t max);
/* Makes the group allocatable again. */
void chunk_alloc_unfreeze(struct chunk_alloc *a, unsigned cls, uint32_t gid);

#endif
