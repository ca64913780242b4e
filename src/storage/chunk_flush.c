/* chunk_flush.c - flush groups: one device cache flush covers the commit
 * batches of every target on a filesystem that asked for one before it
 * started.
 *
 * Why. A target's commit batch is durable after a flush of the device
 * cache that followed its data writes and its log record (chunk_store.c
 * "Why one flush is enough"). Each target paid its own: an fdatasync of
 * each data file the batch wrote. With the three replicas of a chain (and
 * the six targets of `chainfs up`) on one disk, every target's flushes
 * empty the same device cache, and the block layer merges only those that
 * wait at the same moment. A group lets a target whose flush is due ride
 * on one that another target started after it asked.
 *
 * Shared state: a small file (chainfs-flush-<major>-<minor>, in /dev/shm
 * by default) mapped by every member, and an exclusive flock on it held by
 * the member flushing. Every member opens the file itself, so two targets
 * of one process are two open file descriptions whose flocks exclude each
 * other like those of two processes, and the kernel drops the lock of a
 * member killed mid-flush.
 *
 *   started   ticket of the last flush begun (incremented under the lock,
 *             before its fdatasync is called)
 *   done      ticket of the last flush that completed without error
 *             (stored under the lock after its fdatasync returned 0;
 *             tickets complete in order, one leader at a time, so it only
 *             grows)
 *   err_seq   counts failed flushes
 *
 * PROTOCOL (chunk_flush_group_flush), called by a commit thread once the
 * writes it needs durable have completed:
 *
 *   s = started                 -- read after those writes completed
 *   until the deadline:
 *     if done > s: covered      -- a flush with ticket > s completed
 *     try the lock (no wait):
 *       got it, done > s: covered
 *       got it: started = t = started + 1; fdatasync(flush file);
 *               done = t if it worked; unlock; gen++, wake the waiters
 *       held: sleep on gen (futex, at most POLL_MS: a leader killed
 *             mid-flush wakes nobody, its lock goes with it)
 *   deadline passed: -ETIMEDOUT, the caller syncs its own files
 *
 * BOUNDED WAIT. A member's wait for another member's flush ends after
 * wait_ms. Without the bound, a member stopped while it held the lock
 * (SIGSTOP, a debugger, a VM pause of one process's cgroup) stalled every
 * target of the disk, in every process; now each of them waits wait_ms
 * and then makes its batch durable the way it would without a group
 * (fdatasync of its files, or its log), which does not depend on any
 * other member. Only the wait for ANOTHER member is bounded: a member
 * that leads runs its own fdatasync to the end, as the per-file path
 * would. done is read without the lock: it is stored (after a
 * successful fdatasync) by the leader and only grows, so done > s read
 * at any moment means the same as under the lock.
 *
 * THE FLUSH. The leader calls fdatasync on its own flush file (DIR/.flush:
 * 4 KiB written and synced when the member joined, never written again).
 * Nothing of that file is dirty and its last metadata change is long
 * committed, so ext4 (ext4_sync_file) writes nothing and issues a device
 * cache flush itself (blkdev_issue_flush: the inode's transaction has
 * committed, so no commit will send one); every ext4 fdatasync ends with
 * a flush issued after it was called, which chunk_store.c relies on
 * already. It is a flush of the whole device, not of the file.
 *
 * DURABILITY ARGUMENT. A ticket t > s was handed out after the caller read
 * s (started only grows), so its fdatasync was called after the caller's
 * writes had completed, and done >= t > s means it returned 0. A completed
 * O_DIRECT write is in the device's cache, and a flush issued after it
 * makes it durable whatever file it belongs to - provided it needs no
 * metadata to be read back. That holds for overwrites of blocks whose
 * extents are already written, and for the metadata log (written into
 * preallocated, written zeros). It does NOT hold for a write into
 * fallocated (unwritten) space or a hole: ext4 records the extent
 * conversion in its journal, which this flush does not commit. So the
 * engine asks the group only for writes into blocks it knows to be written
 * (chunk_alloc_written); a batch with any other write fdatasyncs that
 * write's file itself, which commits the conversion and whose flush covers
 * the rest of the batch too. data=ordered concerns buffered data only,
 * which the engine does not write. A leader killed after taking its ticket
 * never sets done: the next caller finds done <= s and flushes itself. A
 * member killed while it waited acknowledged nothing.
 *
 * WHICH FILESYSTEMS. The flush must be a device cache flush although the
 * flush file is clean. ext4 (ext4_sync_file) and XFS (xfs_file_fsync: "we
 * might have to flush the data device cache here" when the log force was a
 * no-op) issue one; btrfs, for one, may return from an fdatasync of a file
 * with nothing to log without flushing. So a group opens only on ext4 and
 * XFS (chunk_flush_fs_ok); elsewhere the engine syncs its files.
 *
 * Power loss: everything a call covered is on stable storage when the
 * device honours cache flushes (for a virtual disk: its host too); a cache
 * that drops flushed data loses acknowledged puts with or without groups.
 * Kill -9 of any process loses nothing either way: completed writes are in
 * the kernel's or the device's hands, not the process's.
 *
 * Errors. A failed flush leaves the device cache in an unknown state, so
 * it bumps err_seq, and every member whose call saw err_seq move fails too
 * (its target enters ERROR state), covered or not. "Saw it move" counts
 * from before the member's first write of the batch was submitted (the
 * caller's sample, SINCE), not from the call: the call comes after the
 * writes completed, and a flush that failed between the first write's
 * completion and the call may have lost it, while the flush that then
 * covers the call succeeds:
 *
 *   target A                          target B (leader)
 *   write W1 completes (dev cache)
 *                                     flush F1 (ticket s), fails: err_seq++
 *   last write completes
 *   call: s' = started (>= s)
 *   leads F2 (ticket > s'), it works
 *   err_seq unchanged since the call: W1 acknowledged, maybe lost
 *
 * As the kernel's errseq_sample/errseq_check. A member's failed fdatasync
 * of its own files is a failed flush of the disk too
 * (chunk_flush_group_failed).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/xalloc.h"
#include "storage/chunk_flush.h"

#define FLUSH_MAGIC      0x46534643u /* "CFSF" */
#define FLUSH_FILE_BYTES 4096
#define POLL_MS          5 /* longest sleep between looks at the lock */

/* The mapped file. A new file is all zeros: a valid empty state (magic is
 * set by whoever maps it first; a reader never depends on it). */
struct flush_shared {
	_Atomic uint32_t magic;
	uint32_t pad;
	_Atomic uint64_t started;
	_Atomic uint64_t done;
	_Atomic uint64_t err_seq;
	_Atomic uint32_t gen;     /* bumped after every release of the lock by a
	                           * leader: the futex word waiters sleep on */
	_Atomic uint32_t waiting; /* members between their sample of started and
	                           * their return; tests watch it, nothing else
	                           * reads it (a member killed meanwhile leaves
	                           * it one too high) */
};

struct chunk_flush_group {
	int lock_fd;             /* the group file; its flock elects the leader */
	int flush_fd;            /* DIR/.flush: its fdatasync is the flush */
	struct flush_shared *sh; /* mapped FLUSH_FILE_BYTES of lock_fd */
	atomic_uint_fast64_t led, covered, wait_us, timeouts;
};

#define EXT4_MAGIC 0xEF53u
#define XFS_MAGIC  0x58465342u

int chunk_flush_fs_ok(const char *dir)
{
	struct statfs sf;
	if (statfs(dir, &sf))
		return -errno;
	uint32_t t = (uint32_t)sf.f_type;
	return t == EXT4_MAGIC || t == XFS_MAGIC ? 0 : -EOPNOTSUPP;
}

int chunk_flush_group_open(const char *dir, const char *group_dir, struct chunk_flush_group **out)
{
	int fs = chunk_flush_fs_ok(dir);
	if (fs)
		return fs;
	struct chunk_flush_group *g = xcalloc(1, sizeof(*g));
	int err = 0;
	struct stat st;
	char path[4096];
	g->lock_fd = -1;
	snprintf(path, sizeof(path), "%s/.flush", dir);
	g->flush_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (g->flush_fd < 0 || fstat(g->flush_fd, &st)) {
		err = -errno;
		goto fail;
	}
	if (st.st_size < FLUSH_FILE_BYTES) {
		/* Written (not fallocated) and synced once, so that its
		 * fdatasync has nothing of its own left to write. */
		static const char zeros[FLUSH_FILE_BYTES];
		if (pwrite(g->flush_fd, zeros, sizeof(zeros), 0) != (ssize_t)sizeof(zeros) ||
		    fsync(g->flush_fd)) {
			err = errno ? -errno : -EIO;
			goto fail;
		}
	}
	snprintf(path, sizeof(path), "%s/chainfs-flush-%u-%u", group_dir ? group_dir : "/dev/shm",
	         major(st.st_dev), minor(st.st_dev));
	g->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	struct stat lst;
	if (g->lock_fd < 0 || fstat(g->lock_fd, &lst)) {
		err = -errno;
		goto fail;
	}
	/* Growing it is idempotent: every member may race to do it. */
	if (lst.st_size < FLUSH_FILE_BYTES && ftruncate(g->lock_fd, FLUSH_FILE_BYTES)) {
		err = -errno;
		goto fail;
	}
	void *p = mmap(NULL, FLUSH_FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, g->lock_fd, 0);
	if (p == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	g->sh = p;
	atomic_store(&g->sh->magic, FLUSH_MAGIC);
	*out = g;
	return 0;
fail:
	chunk_flush_group_close(g);
	return err;
}

void chunk_flush_group_close(struct chunk_flush_group *g)
{
	if (!g)
		return;
	if (g->sh)
		munmap(g->sh, FLUSH_FILE_BYTES);
	if (g->lock_fd >= 0)
		close(g->lock_fd);
	if (g->flush_fd >= 0)
		close(g->flush_fd);
	free(g);
}

/* Sleeps until *WORD is no longer VAL, a wake, or MS milliseconds. The
 * mapping is MAP_SHARED, so the futex is shared across processes. */
static void futex_wait_ms(_Atomic uint32_t *word, uint32_t val, unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	(void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word)
{
	(void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* The leader's part: under the lock, flush unless a flush that started
 * after S completed meanwhile. Releases the lock and wakes the waiters. */
static int lead(struct chunk_flush_group *g, uint64_t s)
{
	int rc = 0;
	if (atomic_load(&g->sh->done) > s) {
		atomic_fetch_add_explicit(&g->covered, 1, memory_order_relaxed);
	} else {
		uint64_t t = atomic_load(&g->sh->started) + 1;
		atomic_store(&g->sh->started, t);
		rc = fdatasync(g->flush_fd) ? -errno : 0;
		if (!rc)
			atomic_store(&g->sh->done, t);
		else
			atomic_fetch_add(&g->sh->err_seq, 1);
		atomic_fetch_add_explicit(&g->led, 1, memory_order_relaxed);
	}
	(void)flock(g->lock_fd, LOCK_UN); /* closing would drop it anyway */
	atomic_fetch_add(&g->sh->gen, 1);
	futex_wake_all(&g->sh->gen);
	return rc;
}

uint64_t chunk_flush_group_sample(struct chunk_flush_group *g)
{
	return atomic_load(&g->sh->err_seq);
}

int chunk_flush_group_check(struct chunk_flush_group *g, uint64_t since)
{
	return atomic_load(&g->sh->err_seq) != since ? -EIO : 0;
}

void chunk_flush_group_failed(struct chunk_flush_group *g)
{
	atomic_fetch_add(&g->sh->err_seq, 1);
}

int chunk_flush_group_flush(struct chunk_flush_group *g, unsigned wait_ms, uint64_t since)
{
	uint64_t t0 = clock_mono_ns(), deadline = t0 + (uint64_t)wait_ms * 1000000;
	uint64_t err0 = since;
	uint64_t s = atomic_load(&g->sh->started);
	int rc = 0;
	atomic_fetch_add(&g->sh->waiting, 1);
	for (;;) {
		uint32_t gen = atomic_load(&g->sh->gen);
		if (atomic_load(&g->sh->done) > s) {
			atomic_fetch_add_explicit(&g->covered, 1, memory_order_relaxed);
			break;
		}
		if (!flock(g->lock_fd, LOCK_EX | LOCK_NB)) {
			rc = lead(g, s);
			break;
		}
		if (errno != EWOULDBLOCK && errno != EINTR) {
			rc = -errno;
			break;
		}
		uint64_t now = clock_mono_ns();
		if (now >= deadline) {
			atomic_fetch_add_explicit(&g->timeouts, 1, memory_order_relaxed);
			rc = -ETIMEDOUT;
			break;
		}
		uint64_t left_ms = (deadline - now + 999999) / 1000000;
		futex_wait_ms(&g->sh->gen, gen, left_ms < POLL_MS ? (unsigned)left_ms : POLL_MS);
	}
	atomic_fetch_sub(&g->sh->waiting, 1);
	if (!rc && atomic_load(&g->sh->err_seq) != err0)
		rc = -EIO;
	atomic_fetch_add_explicit(&g->wait_us, (clock_mono_ns() - t0) / 1000, memory_order_relaxed);
	return rc;
}

void chunk_flush_group_stat(struct chunk_flush_group *g, struct chunk_flush_stat *out)
{
	out->led = atomic_load(&g->led);
	out->covered = atomic_load(&g->covered);
	out->wait_us = atomic_load(&g->wait_us);
	out->timeouts = atomic_load(&g->timeouts);
}
