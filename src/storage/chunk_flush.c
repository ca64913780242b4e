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
 *   lock
 *   if done > s: covered        -- a flush with ticket > s completed
 *   else: started = t = started + 1; fdatasync(flush file); done = t if it worked
 *   unlock
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
 * Power loss: everything a call covered is on stable storage when the
 * device honours cache flushes (for a virtual disk: its host too); a cache
 * that drops flushed data loses acknowledged puts with or without groups.
 * Kill -9 of any process loses nothing either way: completed writes are in
 * the kernel's or the device's hands, not the process's.
 *
 * Errors. A failed flush leaves the device cache in an unknown state, so
 * it bumps err_seq, and every member whose call saw err_seq move fails too
 * (its target enters ERROR state), covered or not.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/xalloc.h"
#include "storage/chunk_flush.h"

#define FLUSH_MAGIC      0x46534643u /* "CFSF" */
#define FLUSH_FILE_BYTES 4096

/* The mapped file. A new file is all zeros: a valid empty state (magic is
 * set by whoever maps it first; a reader never depends on it). */
struct flush_shared {
	_Atomic uint32_t magic;
	uint32_t pad;
	_Atomic uint64_t started;
	_Atomic uint64_t done;
	_Atomic uint64_t err_seq;
};

struct chunk_flush_group {
	int lock_fd;             /* the group file; its flock elects the leader */
	int flush_fd;            /* DIR/.flush: its fdatasync is the flush */
	struct flush_shared *sh; /* mapped FLUSH_FILE_BYTES of lock_fd */
	atomic_uint_fast64_t led, covered, wait_us;
};

int chunk_flush_group_open(const char *dir, const char *group_dir, struct chunk_flush_group **out)
{
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

int chunk_flush_group_flush(struct chunk_flush_group *g)
{
	uint64_t t0 = clock_mono_ns();
	uint64_t err0 = atomic_load(&g->sh->err_seq);
	uint64_t s = atomic_load(&g->sh->started);
	int rc;
	while ((rc = flock(g->lock_fd, LOCK_EX)) && errno == EINTR)
		;
	if (rc) {
		rc = -errno;
		goto out;
	}
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
	if (!rc && atomic_load(&g->sh->err_seq) != err0)
		rc = -EIO;
out:
	atomic_fetch_add_explicit(&g->wait_us, (clock_mono_ns() - t0) / 1000, memory_order_relaxed);
	return rc;
}

void chunk_flush_group_stat(struct chunk_flush_group *g, struct chunk_flush_stat *out)
{
	out->led = atomic_load(&g->led);
	out->covered = atomic_load(&g->covered);
	out->wait_us = atomic_load(&g->wait_us);
}
