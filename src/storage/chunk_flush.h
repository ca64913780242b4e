/* chunk_flush.h - one device cache flush shared by the targets on a disk.
 *
 * Targets whose data lie on one filesystem (several targets of a storage
 * service, or of several services, on one disk) each make their commit
 * batches durable with a flush of the device cache. A flush group lets
 * them share those flushes: a commit thread that needs one waits for a
 * flush that STARTED after it asked, leading one itself when none is due;
 * every target that asked while it ran is covered by the next one
 * together. The flush covers completed writes that need no journal commit
 * (overwrites of written blocks, the metadata log), not extent
 * conversions. chunk_flush.c has the protocol and the durability argument.
 */
#ifndef CFS_STORAGE_CHUNK_FLUSH_H
#define CFS_STORAGE_CHUNK_FLUSH_H

#include <stdint.h>

struct chunk_flush_group;

/* Flush counters of one member (chunk_engine_stat). */
struct chunk_flush_stat {
	uint64_t led;     /* flushes this member made */
	uint64_t covered; /* flushes this member asked for that another member's
	                   * flush covered */
	uint64_t wait_us; /* time spent in chunk_flush_group_flush */
	uint64_t timeouts; /* calls that gave up waiting (-ETIMEDOUT) */
};

/* 0 when DIR lies on a filesystem whose fdatasync of a clean file flushes
 * the device cache (ext4, XFS: what a group's flush relies on),
 * -EOPNOTSUPP on any other, -errno if DIR cannot be examined. */
int chunk_flush_fs_ok(const char *dir);

/* Joins the flush group of the filesystem holding DIR (a target's data
 * directory; DIR/.flush is created and written once, the file whose
 * fdatasync is this member's flush). The group's shared state is the file
 * GROUP_DIR/chainfs-flush-<major>-<minor> (created 0600 if absent; GROUP_DIR
 * NULL: /dev/shm), one per filesystem; members find each other by it, in
 * any process of the same user. *OUT is the caller's (chunk_flush_group_
 * close). 0 or -errno (no such directory, GROUP_DIR unusable, -EOPNOTSUPP:
 * DIR's filesystem is not one chunk_flush_fs_ok accepts). */
int chunk_flush_group_open(const char *dir, const char *group_dir, struct chunk_flush_group **out);

/* Leaves the group. NULL-safe. No flush may be running on G. */
void chunk_flush_group_close(struct chunk_flush_group *g);

/* The group's count of failed flushes now (err_seq), as the kernel's
 * errseq_sample: taken before the first write that a later flush must
 * make durable is submitted, and handed to chunk_flush_group_flush or
 * chunk_flush_group_check, which fail if any flush of the disk failed
 * since. Any thread; a load of the shared page. */
uint64_t chunk_flush_group_sample(struct chunk_flush_group *g);

/* -EIO if a flush of the disk failed in the group (any member, any
 * process) since SINCE (chunk_flush_group_sample), else 0. Any thread. */
int chunk_flush_group_check(struct chunk_flush_group *g, uint64_t since);

/* A member's own sync of its files on the disk failed (an fdatasync, whose
 * last step is a device cache flush): counted as a failed flush, so every
 * member with writes out since then fails as well. Any thread. */
void chunk_flush_group_failed(struct chunk_flush_group *g);

/* Returns once a device cache flush that started after this call began
 * has completed without error (made by this or another member), so every
 * write to the device that completed before the call and needs no journal
 * commit to be read back (an overwrite of written extents, a metadata log
 * record) is durable; extent conversions are not (chunk_flush.c). 0, or
 * -errno: the covering flush failed, or any member's flush failed since
 * SINCE (chunk_flush_group_sample, taken before the caller's first write
 * was submitted: a flush that failed while the writes ran, before this
 * call, may have lost those that had completed; conservative: whether it
 * did is unknown); -ETIMEDOUT: for WAIT_MS no such flush completed and
 * another member held the lock all along (stopped, or slow): nothing was
 * made durable for the caller, who must sync its own files (and check
 * SINCE after). One caller at a time per G (the target's commit thread).
 * The wait for other members is bounded by WAIT_MS; a flush this call
 * leads runs to its end. */
int chunk_flush_group_flush(struct chunk_flush_group *g, unsigned wait_ms, uint64_t since);

/* Copies G's counters. Any thread. */
void chunk_flush_group_stat(struct chunk_flush_group *g, struct chunk_flush_stat *out);

#endif
