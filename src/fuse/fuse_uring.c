/* fuse_uring.c - FUSE requests over io_uring (fuse_uring.h).
 *
 * An entry's memory: HDR (the kernel's fuse_uring_req_header, own page)
 * and REGION = SLACK bytes then the payload buffer the kernel fills. A
 * request reaches libfuse as one contiguous buffer, as a read of
 * /dev/fuse returns it: its fuse_in_header and per-opcode header are
 * copied into the slack right before the payload (at most 168 bytes), so
 * a 1 MiB WRITE is not copied again.
 *
 * The reply goes into the payload, which may still hold the request (a
 * name, write data) while its handler runs: such a reply given before the
 * handler returned is staged aside and copied in at the commit.
 *
 * REFS of an entry in userspace: 2 from the fetch (the processing thread
 * and the reply); whoever drops the last commits.
 */
#define FUSE_USE_VERSION 312
#include "fuse/fuse_uring.h"

#include <errno.h>
#include <fuse3/fuse_lowlevel.h>
#include <linux/fuse.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "common/log.h"
#include "fuse/fuse_uring_abi.h"

#define FR_SLACK     4096
#define FR_STAGE     4096 /* replies staged without malloc */
#define FR_EFD_TAG   1    /* user_data of the queue's eventfd read */
#define FR_TSTRIPES  16   /* locks over the table's buckets */
#define FR_HDR_BYTES 4096

enum { FR_PENDING, FR_ON, FR_OFF };

struct furing_ent {
	struct fr_queue *q;
	struct fuse_uring_req_header *hdr;
	char *region; /* FR_SLACK + payload_cap, mmap'd */
	char *payload;
	struct iovec iov[2];
	uint64_t unique, commit_id;
	int in_payload; /* the request's bytes occupy the payload */
	_Atomic int refs;
	int last_cmd;             /* to resubmit when the kernel says EAGAIN */
	struct furing_ent *cnext; /* fr_queue.commits */
	size_t reply_len;         /* payload bytes of the reply */
	char *staged;             /* reply bytes to copy in at the commit, or NULL */
	char stage[FR_STAGE];
	struct furing_ent *hnext; /* r->table chain, while awaiting a reply */
};

struct fr_queue {
	struct furing *r;
	int qid;
	struct io_uring ring; /* submitted to and reaped by the queue's reader only */
	int ring_ok;
	int efd; /* written to wake a reader waiting on the ring */
	uint64_t efd_val;
	_Atomic(struct furing_ent *) commits; /* replies the reader is to submit */
	_Atomic int sleeping;                 /* the reader waits in io_uring_enter */
	struct furing_ent *ents;
};

struct furing {
	int devfd, depth;
	int ncpu; /* the kernel's queues (possible CPUs) */
	int nq;   /* our rings: PER_CPU per kernel queue */
	int per_cpu;
	size_t payload_cap;
	pthread_mutex_t mu;               /* STATE */
	pthread_mutex_t tmu[FR_TSTRIPES]; /* the table's buckets, striped */
	pthread_cond_t cv;                /* STATE left PENDING */
	_Atomic int state;
	_Atomic int stopping;
	struct furing_ent **table;
	size_t tmask;
	_Atomic uint64_t served;
	struct fr_queue *qs;
};

/* nr_cpu_ids: the kernel keeps one queue per possible CPU. */
static int possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
	char line[256];
	int max = -1;
	if (f && fgets(line, sizeof(line), f)) {
		for (char *save = NULL, *t = strtok_r(line, ",\n", &save); t;
		     t = strtok_r(NULL, ",\n", &save)) {
			int a, b;
			int n = sscanf(t, "%d-%d", &a, &b);
			if (n == 2 && b > max)
				max = b;
			else if (n == 1 && a > max)
				max = a;
		}
	}
	if (f)
		fclose(f);
	return max >= 0 ? max + 1 : get_nprocs_conf();
}

int furing_new(int devfd, int depth, furing **out)
{
	furing *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->devfd = devfd;
	r->depth = depth > 0 ? depth : 32;
	r->ncpu = possible_cpus();
	if (r->ncpu < 1)
		r->ncpu = 1;
	/* Experiment (off by default): CFS_FUSE_URING_RINGS_PER_CPU=N gives
	 * each kernel queue N rings of one entry, each served by one thread,
	 * so a thread's own commit fetches its next request. */
	const char *pc = getenv("CFS_FUSE_URING_RINGS_PER_CPU");
	r->per_cpu = pc ? atoi(pc) : 1;
	if (r->per_cpu < 1 || r->per_cpu > 256)
		r->per_cpu = 1;
	if (r->per_cpu > 1)
		r->depth = 1;
	r->nq = r->ncpu * r->per_cpu;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	for (int i = 0; i < FR_TSTRIPES; i++)
		pthread_mutex_init(&r->tmu[i], NULL);
	size_t tn = 1;
	while (tn < (size_t)r->nq * (size_t)r->depth * 2)
		tn <<= 1;
	r->tmask = tn - 1;
	r->table = calloc(tn, sizeof(*r->table));
	r->qs = calloc((size_t)r->nq, sizeof(*r->qs));
	if (!r->table || !r->qs) {
		furing_free(r);
		return -ENOMEM;
	}
	for (int i = 0; i < r->nq; i++) {
		r->qs[i].r = r;
		r->qs[i].qid = i % r->ncpu;
		r->qs[i].efd = -1;
	}
	*out = r;
	return 0;
}

static void fr_queue_free(furing *r, struct fr_queue *q)
{
	if (q->ring_ok)
		io_uring_queue_exit(&q->ring);
	q->ring_ok = 0;
	if (q->efd >= 0)
		close(q->efd);
	q->efd = -1;
	if (q->ents) {
		for (int i = 0; i < r->depth; i++) {
			struct furing_ent *e = &q->ents[i];
			if (e->hdr)
				munmap(e->hdr, FR_HDR_BYTES);
			if (e->region)
				munmap(e->region, FR_SLACK + r->payload_cap);
			if (e->staged && e->staged != e->stage)
				free(e->staged);
		}
		free(q->ents);
		q->ents = NULL;
	}
}

void furing_free(furing *r)
{
	if (!r)
		return;
	for (int i = 0; r->qs && i < r->nq; i++)
		fr_queue_free(r, &r->qs[i]);
	for (int i = 0; i < FR_TSTRIPES; i++)
		pthread_mutex_destroy(&r->tmu[i]);
	free(r->qs);
	free(r->table);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

void furing_init_reply(furing *r, struct fuse_init_out *o)
{
	o->flags |= FUSE_INIT_EXT;
	o->flags2 |= (uint32_t)(FUSE_OVER_IO_URING >> 32);
	/* fs/fuse/dev_uring.c fuse_uring_create: the payload buffer must
	 * hold max(FUSE_MIN_READ_BUFFER, max_write, max_pages pages) */
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (o->flags & FUSE_MAX_PAGES) ? o->max_pages : 32;
	size_t cap = 8192;
	if (o->max_write > cap)
		cap = o->max_write;
	if (pages * page > cap)
		cap = pages * page;
	r->payload_cap = (cap + page - 1) / page * page;
}

uint64_t furing_served(const furing *r)
{
	return atomic_load(&((furing *)r)->served);
}

int furing_nqueues(const furing *r)
{
	return r->nq;
}

int furing_queue_threads(const furing *r)
{
	return r->per_cpu > 1 ? 1 : 0;
}

static void fr_prep_cmd(struct io_uring_sqe *sqe, struct furing_ent *e, int cmd_op)
{
	memset(sqe, 0, 128); /* SQE128: the command area is the second half */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = e->q->r->devfd;
	sqe->cmd_op = (uint32_t)cmd_op;
	io_uring_sqe_set_data(sqe, e);
	e->last_cmd = cmd_op;
	struct fuse_uring_cmd_req *cr = (struct fuse_uring_cmd_req *)sqe->cmd;
	cr->qid = (uint16_t)e->q->qid;
	if (cmd_op == FUSE_IO_URING_CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)e->iov;
		sqe->len = FUSE_URING_IOV_SEGS;
	} else {
		cr->commit_id = e->commit_id;
	}
}

/* Queues E's command CMD_OP in its ring's SQ (the reader's thread, or
 * before the readers start). 0, or -EBUSY when the SQ is full. */
static int fr_prep(struct furing_ent *e, int cmd_op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->q->ring);
	if (!sqe)
		return -EBUSY;
	fr_prep_cmd(sqe, e, cmd_op);
	return 0;
}

static void fr_wake(struct fr_queue *q)
{
	uint64_t one = 1;
	if (write(q->efd, &one, sizeof(one)) < 0)
		LOG_WARN("fuse", "fuse-uring: waking queue %d: %s", q->qid, strerror(errno));
}

/* The reply is in E: hand it to the queue's reader, which submits it
 * with its next wait (one io_uring_enter commits what came meanwhile and
 * waits), waking it when it sleeps. Only the reader submits, so the
 * kernel's work for the entry's next request (task work of the
 * submitting thread) runs in the thread that waits for it, instead of
 * interrupting an RPC thread (and then waking the reader as well). */
static void fr_commit(struct furing_ent *e)
{
	if (e->staged) {
		memcpy(e->payload, e->staged, e->reply_len);
		if (e->staged != e->stage)
			free(e->staged);
		e->staged = NULL;
	}
	e->hdr->ring_ent_in_out.payload_sz = (uint32_t)e->reply_len;
	struct fr_queue *q = e->q;
	atomic_fetch_add(&q->r->served, 1);
	struct furing_ent *head = atomic_load(&q->commits);
	do
		e->cnext = head;
	while (!atomic_compare_exchange_weak(&q->commits, &head, e));
	if (atomic_exchange(&q->sleeping, 0))
		fr_wake(q);
}

static void fr_unref(struct furing_ent *e)
{
	if (atomic_fetch_sub(&e->refs, 1) == 1)
		fr_commit(e);
}

static int fr_setup_queue(furing *r, struct fr_queue *q)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
	p.cq_entries = (unsigned)r->depth * 2 + 4;
	/* every entry's command, the eventfd read, and slack */
	int rc = io_uring_queue_init_params((unsigned)r->depth * 2 + 4, &q->ring, &p);
	if (rc < 0)
		return rc;
	q->ring_ok = 1;
	q->efd = eventfd(0, EFD_CLOEXEC);
	if (q->efd < 0)
		return -errno;
	q->ents = calloc((size_t)r->depth, sizeof(*q->ents));
	if (!q->ents)
		return -ENOMEM;
	for (int i = 0; i < r->depth; i++) {
		struct furing_ent *e = &q->ents[i];
		e->q = q;
		/* pages, untouched until a request lands: 1 MiB payloads cost
		 * memory only where requests that large came */
		void *h = mmap(NULL, FR_HDR_BYTES, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		void *g = mmap(NULL, FR_SLACK + r->payload_cap, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (h == MAP_FAILED || g == MAP_FAILED) {
			if (h != MAP_FAILED)
				munmap(h, FR_HDR_BYTES);
			if (g != MAP_FAILED)
				munmap(g, FR_SLACK + r->payload_cap);
			return -ENOMEM;
		}
		e->hdr = h;
		e->region = g;
		e->payload = e->region + FR_SLACK;
		e->iov[0] = (struct iovec){e->hdr, sizeof(*e->hdr)};
		e->iov[1] = (struct iovec){e->payload, r->payload_cap};
	}
	return 0;
}

/* Queues the read of Q's eventfd (a write wakes the reader). */
static int fr_arm_efd(struct fr_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, q->efd, &q->efd_val, sizeof(q->efd_val), 0);
	io_uring_sqe_set_data64(sqe, FR_EFD_TAG);
	return 0;
}

/* Submits the REGISTERs of Q; a refusal comes back at once as a CQE
 * (the command fails at issue), a success only when a request comes. */
static int fr_register_queue(furing *r, struct fr_queue *q)
{
	for (int i = 0; i < r->depth; i++)
		if (fr_prep(&q->ents[i], FUSE_IO_URING_CMD_REGISTER) < 0)
			return -EIO;
	int rc = fr_arm_efd(q);
	if (rc < 0)
		return rc;
	rc = io_uring_submit(&q->ring);
	if (rc < 0)
		return rc;
	struct io_uring_cqe *cqe;
	if (io_uring_peek_cqe(&q->ring, &cqe) == 0 && cqe->res < 0)
		return cqe->res;
	return 0;
}

void furing_start(furing *r)
{
	int rc = 0;
	if (!r->payload_cap)
		rc = -EPROTO; /* no INIT reply seen */
	for (int i = 0; rc == 0 && i < r->nq; i++) {
		rc = fr_setup_queue(r, &r->qs[i]);
		if (rc == 0)
			rc = fr_register_queue(r, &r->qs[i]);
	}
	pthread_mutex_lock(&r->mu);
	r->state = rc == 0 ? FR_ON : FR_OFF;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (rc == 0) {
		LOG_NOTICE("fuse",
		           "fuse-uring: serving over io_uring: %d queues x %d rings x %d entries "
		           "of %zu KiB",
		           r->ncpu, r->per_cpu, r->depth, r->payload_cap >> 10);
		return;
	}
	/* A refused REGISTER also makes the kernel drop the connection's ring
	 * mode (dev_uring.c: fc->io_uring = 0): requests keep coming over
	 * /dev/fuse. */
	LOG_WARN("fuse", "fuse-uring: the kernel refused it (%s%s): serving over /dev/fuse",
	         strerror(-rc),
	         rc == -EOPNOTSUPP ? "; /sys/module/fuse/parameters/enable_uring is N" : "");
	/* the queues' memory goes with furing_free: a stop may be waking
	 * them meanwhile */
}

static void fr_table_put(furing *r, struct furing_ent *e)
{
	size_t b = (size_t)(e->unique >> 1) & r->tmask;
	pthread_mutex_t *mu = &r->tmu[b % FR_TSTRIPES];
	pthread_mutex_lock(mu);
	e->hnext = r->table[b];
	r->table[b] = e;
	pthread_mutex_unlock(mu);
}

static struct furing_ent *fr_table_take(furing *r, uint64_t unique)
{
	size_t b = (size_t)(unique >> 1) & r->tmask;
	struct furing_ent *e;
	pthread_mutex_t *mu = &r->tmu[b % FR_TSTRIPES];
	pthread_mutex_lock(mu);
	struct furing_ent **pp = &r->table[b];
	while ((e = *pp) && e->unique != unique)
		pp = &e->hnext;
	if (e)
		*pp = e->hnext;
	pthread_mutex_unlock(mu);
	return e;
}

ssize_t furing_reply(furing *r, const struct iovec *iov, int count)
{
	if (!r || count < 1 || iov[0].iov_len < sizeof(struct fuse_out_header))
		return 0;
	const struct fuse_out_header *oh = iov[0].iov_base;
	if (oh->unique == 0 || atomic_load(&r->state) != FR_ON)
		return 0; /* a notification, or no ring */
	struct furing_ent *e = fr_table_take(r, oh->unique);
	if (!e)
		return 0;
	size_t n = 0;
	for (int i = 1; i < count; i++)
		n += iov[i].iov_len;
	int32_t err = oh->error;
	if (n > r->payload_cap) {
		LOG_WARN("fuse", "fuse-uring: a reply of %zu bytes exceeds the %zu-byte buffer", n,
		         r->payload_cap);
		err = -EIO;
		n = 0;
	}
	struct fuse_out_header *out = (struct fuse_out_header *)e->hdr->in_out;
	out->unique = oh->unique;
	out->error = err;
	out->len = (uint32_t)(sizeof(*out) + n);
	char *dst = e->payload;
	if (n && e->in_payload && atomic_load(&e->refs) == 2) {
		/* the handler still runs and may read its request there */
		dst = n <= FR_STAGE ? e->stage : malloc(n);
		if (!dst) {
			out->error = -ENOMEM;
			n = 0;
		}
		e->staged = dst;
	}
	size_t off = 0;
	for (int i = 1; i < count && dst; i++) {
		memcpy(dst + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	e->reply_len = n;
	fr_unref(e);
	return (ssize_t)(sizeof(*out) + n);
}

void furing_done(furing *r, struct furing_ent *e)
{
	(void)r;
	fr_unref(e);
}

/* Turns E's fetched request into BUF. 0, or -EPROTO when the kernel's
 * header does not add up. */
static int fr_take_request(furing *r, struct furing_ent *e, struct fuse_buf *buf)
{
	struct fuse_in_header h;
	memcpy(&h, e->hdr->in_out, sizeof(h));
	uint32_t psz = e->hdr->ring_ent_in_out.payload_sz;
	e->commit_id = e->hdr->ring_ent_in_out.commit_id;
	e->unique = h.unique;
	e->staged = NULL;
	e->reply_len = 0;
	if (h.len < sizeof(h) + (size_t)psz || psz > r->payload_cap ||
	    h.len - sizeof(h) - psz > FUSE_URING_OP_IN_OUT_SZ)
		return -EPROTO;
	size_t opsz = h.len - sizeof(h) - psz;
	char *start = e->payload - sizeof(h) - opsz;
	memcpy(start, &h, sizeof(h));
	memcpy(start + sizeof(h), e->hdr->op_in, opsz);
	e->in_payload = psz > 0;
	atomic_store(&e->refs, 2);
	memset(buf, 0, sizeof(*buf));
	buf->mem = start;
	buf->size = h.len;
	buf->fd = -1;
	return 0;
}

int furing_receive(furing *r, int qi, struct furing_ent **ent, struct fuse_buf *buf)
{
	pthread_mutex_lock(&r->mu);
	while (r->state == FR_PENDING && !atomic_load(&r->stopping))
		pthread_cond_wait(&r->cv, &r->mu);
	int state = r->state;
	pthread_mutex_unlock(&r->mu);
	if (atomic_load(&r->stopping))
		return -ESHUTDOWN;
	if (state != FR_ON)
		return -EOPNOTSUPP;
	struct fr_queue *q = &r->qs[qi];
	for (;;) {
		if (atomic_load(&r->stopping))
			return -ESHUTDOWN;
		/* the replies handed over since the last wait */
		struct furing_ent *c = atomic_exchange(&q->commits, NULL);
		int committed = c != NULL;
		for (; c; c = c->cnext)
			if (fr_prep(c, FUSE_IO_URING_CMD_COMMIT_AND_FETCH) < 0) {
				io_uring_submit(&q->ring);
				fr_prep(c, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
			}
		struct io_uring_cqe *cqe;
		if (io_uring_peek_cqe(&q->ring, &cqe) != 0) {
			/* Dekker with fr_commit: it pushes then looks at
			 * SLEEPING, this sets SLEEPING then looks at COMMITS */
			atomic_store(&q->sleeping, 1);
			if (atomic_load(&q->commits) || atomic_load(&r->stopping)) {
				atomic_store(&q->sleeping, 0);
				continue;
			}
			int rc = io_uring_submit_and_wait(&q->ring, 1);
			atomic_store(&q->sleeping, 0);
			if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
				LOG_WARN("fuse", "fuse-uring: queue %d: %s", qi, strerror(-rc));
				return -ESHUTDOWN;
			}
			continue;
		}
		/* commits go out before a request that may take long (the
		 * eventfd read can wait for the next wait) */
		if (committed)
			io_uring_submit(&q->ring);
		uint64_t tag = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(&q->ring, cqe);
		if (atomic_load(&r->stopping))
			return -ESHUTDOWN;
		if (tag == FR_EFD_TAG) {
			if (res < 0 && res != -EAGAIN && res != -EINTR)
				LOG_WARN("fuse", "fuse-uring: queue %d eventfd: %s", qi,
				         strerror(-res));
			fr_arm_efd(q);
			continue;
		}
		struct furing_ent *e = (struct furing_ent *)(uintptr_t)tag;
		if (res == -EAGAIN || res == -EINTR) {
			fr_prep(e, e->last_cmd);
			continue;
		}
		if (res < 0) {
			/* the connection ends (unmount, abort): every entry
			 * comes back this way */
			if (res != -ENOTCONN && res != -ECANCELED)
				LOG_WARN("fuse", "fuse-uring: queue %d: %s", qi, strerror(-res));
			return -ESHUTDOWN;
		}
		if (fr_take_request(r, e, buf) < 0) {
			LOG_WARN("fuse", "fuse-uring: malformed request on queue %d", qi);
			struct fuse_out_header *out = (struct fuse_out_header *)e->hdr->in_out;
			out->unique = e->unique;
			out->error = -EIO;
			out->len = sizeof(*out);
			e->reply_len = 0;
			fr_commit(e);
			continue;
		}
		fr_table_put(r, e);
		*ent = e;
		return 0;
	}
}

void furing_stop(furing *r)
{
	if (!r)
		return;
	atomic_store(&r->stopping, 1);
	pthread_mutex_lock(&r->mu);
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (int i = 0; i < r->nq; i++)
		if (r->qs[i].efd >= 0)
			fr_wake(&r->qs[i]);
}
