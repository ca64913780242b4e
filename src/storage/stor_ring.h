/* stor_ring.h - an io_uring owned by an RPC loop thread, for the reads the
 * storage service answers without a hand-off (run to completion).
 *
 * A read request is decoded, checked, submitted to the disk and answered
 * on the one loop thread that received it: the ring's fd is watched by the
 * loop (readable when completions wait), so a completion wakes that loop
 * like an incoming request and is reaped there. The engine's I/O thread
 * and its inbox are not involved (chunk_engine_read_prep/_end do the
 * metadata lookup, pinning and CRC checks).
 *
 * Threads: stor_ring_get, stor_ring_read and the done callbacks run on the
 * loop thread that owns the ring, only. stor_rings_free after the loops
 * stopped. Errors: a ring that cannot be made (io_uring refused, fd limit)
 * gives NULL and the caller takes the engine's path.
 */
#ifndef CFS_STORAGE_STOR_RING_H
#define CFS_STORAGE_STOR_RING_H

#include <stdint.h>

struct storage_service;
struct loop;
struct stor_ring;

struct stor_ring_io {
	/* Called on the owning loop thread with the read's result (bytes or
	 * -errno). The io is the caller's; borrowed until then. */
	void (*done)(struct stor_ring_io *io, int res);
};

/* The calling loop thread's ring for S, made and watched by LOOP on first
 * use; NULL when none can be made. Loop thread only. */
struct stor_ring *stor_ring_get(struct storage_service *s, struct loop *loop);
/* Free submission slots (reads that can be queued before the ring is full). */
unsigned stor_ring_room(const struct stor_ring *r);
/* Queues a read of LEN bytes at OFF of FD into BUF; sent at the next
 * stor_ring_submit. The caller checked stor_ring_room first. */
void stor_ring_read(struct stor_ring *r, struct stor_ring_io *io, int fd, void *buf,
		    uint64_t len, uint64_t off);
/* Sends the queued reads to the kernel (one system call). */
void stor_ring_submit(struct stor_ring *r);
/* Sends the queued reads now if there are enough of them for one system
 * call, else at the end of the loop's current iteration (after the other
 * requests it received in the same wake-up queued theirs): one
 * io_uring_enter and one device notification for all of them instead of
 * one each. Loop thread only. */
void stor_ring_submit_soon(struct stor_ring *r);
/* Frees S's rings, waiting for reads still in the kernel. After the loop
 * threads stopped. */
void stor_rings_free(struct storage_service *s);

#endif
