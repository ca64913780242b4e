/* stor_ring.c - per-loop-thread io_uring for run-to-completion reads (see
 * stor_ring.h). One ring per (service, loop thread): the thread-local
 * pointer is checked against the service so several services in one
 * process (tests) keep their own. The service lists its rings (rings_mu)
 * only to free them at the end.
 */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "net/loop.h"
#include "storage/storage_int.h"
#include "storage/stor_ring.h"

#define RING_ENTRIES 256u
/* stor_ring_submit_soon sends at once when this many reads are queued. */
#define RING_SUBMIT_BATCH 8u

struct stor_ring {
	struct io_uring ring;
	struct loop_io lio;
	struct storage_service *s;
	struct loop *loop;
	unsigned queued;    /* prepared, not yet submitted */
	unsigned inflight;  /* submitted, not yet reaped */
	struct loop_msg submit_msg; /* end-of-iteration submit (stor_ring_submit_soon) */
	int submit_posted;          /* submit_msg is queued on the loop */
	struct stor_ring *next; /* s->rings, under s->rings_mu */
};

static __thread struct stor_ring *tls_ring;

static void ring_reap(struct loop_io *lio, uint32_t events)
{
	(void)events;
	struct stor_ring *r = lio->arg;
	struct io_uring_cqe *cqe;
	/* Reads queued by the requests this iteration received before now go
	 * to the disk first, not after the CRC checks and replies below. */
	stor_ring_submit(r);
	/* One at a time: a callback may answer and free the request that owns
	 * the io, never the ring. */
	while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
		struct stor_ring_io *io = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
		r->inflight--;
		io->done(io, res);
	}
}

struct stor_ring *stor_ring_get(struct storage_service *s, struct loop *loop)
{
	if (tls_ring && tls_ring->s == s)
		return tls_ring;
	if (!loop || !loop_in_thread(loop))
		return NULL;
	struct stor_ring *r = xcalloc(1, sizeof(*r));
	/* CQ twice the SQ: RING_ENTRIES in flight never overflow it. */
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE, .cq_entries = 2 * RING_ENTRIES };
	int rc = io_uring_queue_init_params(RING_ENTRIES, &r->ring, &p);
	if (rc) {
		LOG_WARN("storage", "no loop io_uring, reads go through the engine: err=%s",
			 cfs_strerror(rc));
		free(r);
		return NULL;
	}
	r->s = s;
	r->loop = loop;
	r->lio = (struct loop_io){ .fn = ring_reap, .arg = r };
	if ((rc = loop_fd_add(loop, r->ring.ring_fd, LOOP_IN, &r->lio))) {
		io_uring_queue_exit(&r->ring);
		free(r);
		return NULL;
	}
	pthread_mutex_lock(&s->rings_mu);
	r->next = s->rings;
	s->rings = r;
	pthread_mutex_unlock(&s->rings_mu);
	/* A thread serves one service's loop for life: the first ring made
	 * on it is the one it keeps. */
	tls_ring = r;
	return r;
}

unsigned stor_ring_room(const struct stor_ring *r)
{
	return RING_ENTRIES - r->queued - r->inflight;
}

void stor_ring_read(struct stor_ring *r, struct stor_ring_io *io, int fd, void *buf,
		    uint64_t len, uint64_t off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	if (!sqe) { /* cannot happen within stor_ring_room; stay correct anyway */
		stor_ring_submit(r);
		sqe = io_uring_get_sqe(&r->ring);
	}
	io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
	io_uring_sqe_set_data(sqe, io);
	r->queued++;
}

void stor_ring_submit(struct stor_ring *r)
{
	while (r->queued) {
		int rc = io_uring_submit(&r->ring);
		if (rc > 0) {
			r->queued -= (unsigned)rc;
			r->inflight += (unsigned)rc;
		} else if (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			LOG_ERR("storage", "loop io_uring submit failed: err=%s", cfs_strerror(rc));
			break;
		}
	}
}

static void submit_msg_run(struct loop_msg *m)
{
	struct stor_ring *r = m->arg;
	r->submit_posted = 0;
	stor_ring_submit(r);
}

void stor_ring_submit_soon(struct stor_ring *r)
{
	if (r->queued >= RING_SUBMIT_BATCH) {
		stor_ring_submit(r);
		return;
	}
	if (!r->queued || r->submit_posted)
		return;
	/* Posted from the owner thread: no wake-up, it runs when this
	 * iteration's events are handled (loop.c), with whatever the other
	 * requests of the iteration queued. */
	r->submit_posted = 1;
	r->submit_msg.fn = submit_msg_run;
	r->submit_msg.arg = r;
	loop_post(r->loop, &r->submit_msg);
}

void stor_rings_free(struct storage_service *s)
{
	pthread_mutex_lock(&s->rings_mu);
	struct stor_ring *r = s->rings;
	s->rings = NULL;
	pthread_mutex_unlock(&s->rings_mu);
	while (r) {
		struct stor_ring *next = r->next;
		if (r->inflight)
			LOG_WARN("storage", "loop io_uring closed with reads in flight: n=%u",
				 r->inflight);
		io_uring_queue_exit(&r->ring);
		free(r);
		r = next;
	}
}
