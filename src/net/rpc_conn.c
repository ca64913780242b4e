/* rpc_conn.c - the framing engine of one RPC connection (rpc_int.h).
 *
 * RECEIVE. A state machine per connection: RX_HDR (48 bytes) -> RX_PAYLOAD
 * (payload_len bytes) -> RX_BULK (bulk_len bytes) -> RX_HDR. Small frames
 * are parsed in place from a 64 KiB receive buffer, so one read() can carry
 * many of them. A payload larger than the buffer grows it (never beyond the
 * negotiated max_payload). Bulk goes where the role points c->dest: once the
 * bytes already read ahead are used, it is read with readv() straight into
 * the destination, the receive buffer as a second iovec to catch the next
 * frame's start. So at most one read-ahead's worth (< 64 KiB) of a bulk is
 * copied; everything else lands in place. A frame with FRAME_F_BULK_CRC has
 * its bulk CRC32C computed as it arrives.
 *
 * SEND. Frames queue as struct rpc_out (header copy, payload, bulk, all
 * borrowed until done()). Queueing posts one flush message to the owner
 * loop, which runs at the end of the iteration, so frames produced by a
 * batch of events leave in one writev of up to 64 iovecs. Another thread
 * may write a frame itself (conn_send_direct_locked) while it holds *omu
 * and the queue is empty: that saves waking the loop (an eventfd write and
 * a context switch) per request. Whatever it cannot write at once is
 * queued and left to the loop, so order on the wire stays the order of
 * queueing. done() callbacks never run under *omu (they may send again).
 *
 * CALLER RECEIVE. A thread blocked on its own request (rpc_call) may
 * read the reply itself instead of waiting for the loop to read it and
 * wake it: one wake-up (the loop's) less per call. The receive side
 * (rbuf, phase, dest...) is then shared: rx_mu is held by whoever reads or
 * parses, the loop around every read batch and close, a caller around
 * each non-blocking read and parse, never across poll(). rx_caller names
 * the side that waits for bytes: while it is set, the loop's epoll entry
 * has no LOOP_IN, only LOOP_PEER_CLOSE (edge-triggered), and an event the
 * loop got anyway is left to the caller (rx_left makes the release hand
 * reading back to the loop, in case it was the peer's close). When the
 * caller lets go with no reply expected, LOOP_IN stays off (rx_idle) until
 * the next request goes out (conn_rx_arm_locked), so a thread that calls,
 * reads, and calls again costs no epoll_ctl at all. A close the caller
 * meets (EOF, bad input) is not done on its thread: it is recorded
 * (rx_defer) and posted to the loop at release. A close the loop makes
 * while a caller waits in poll() shuts the socket down to wake it and
 * leaves the fd open (x_orphan) for the caller to close, so the caller
 * never polls or reads a reused fd.
 *
 *   loop reads (LOOP_IN) --claim--> caller reads (LOOP_PEER_CLOSE)
 *        ^                              | release: replies still expected,
 *        |  request issued              |          or an event was left
 *   idle (LOOP_PEER_CLOSE) <--release---+ release: nothing expected
 *
 * CLOSE. conn_close runs once: it removes the fd, fails queued frames with
 * -CFS_ECLOSED, lets the role fail what it holds, and drops the "open"
 * reference. The memory is freed when the last reference goes, from a
 * message the loop runs after the current batch of fd events, so no event
 * of the same epoll batch can name freed memory.
 *
 * INVARIANTS. Only the loop thread touches a connection, except the send
 * side under *omu and the receive side under rx_mu (rpc_int.h). rpos <= rlen <= rcap. In RX_BULK, got < h.bulk_len. outq_bytes is the unwritten byte
 * count of the queue.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "common/cfs_assert.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "net/auth.h"
#include "net/rpc_int.h"
#include "net/rpc_proto.h"

#define IOV_MAX_BATCH 64
#define READS_PER_EVENT 16
/* Bulk segments one readv fills at most (scattered destinations). */
#define RX_BULK_IOV 16
/* A bulk at least this long makes the connection read frame starts
 * exactly (rx_hint): a read into rbuf that runs past the payload takes up
 * to RPC_RBUF_LEN bytes of the bulk with it, which are then copied to the
 * destination (a 64 KiB page read or write was copied almost whole). */
#define RX_HINT_BULK (16 * 1024)

static void conn_io(struct loop_io *io, uint32_t events);

int rpc_opts_init(struct rpc_opts *o, const struct rpc_opts *src)
{
	if (!src->cluster_id || strlen(src->cluster_id) > RPC_CLUSTER_ID_MAX)
		return -EINVAL;
	if (!src->secret || src->secret_len < AUTH_SECRET_MIN || src->secret_len > AUTH_SECRET_MAX)
		return -EINVAL;
	*o = *src;
	if (o->nthreads <= 0)
		o->nthreads = 1;
	if (!o->max_payload)
		o->max_payload = 16u << 20;
	if (!o->max_bulk)
		o->max_bulk = 64ull << 20;
	if (!o->max_outq)
		o->max_outq = 64ull << 20;
	if (!o->max_inflight)
		o->max_inflight = 4096;
	if (!o->timeout_ms)
		o->timeout_ms = 10000;
	if (!o->handshake_ms)
		o->handshake_ms = 5000;
	if (o->conns_per_peer <= 0)
		o->conns_per_peer = 1;
	/* The switch for every role at once (`chainfs up --no-local-socket`
	 * sets it for the services it starts): measurement and debugging. */
	const char *e = getenv("CFS_NO_LOCAL_SOCKET");
	if (e && *e && strcmp(e, "0"))
		o->no_local_socket = 1;
	return 0;
}

void conn_ref(struct rpc_conn *c) { atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed); }

static void conn_free_msg(struct loop_msg *m)
{
	struct rpc_conn *c = m->arg;
	c->ops->on_free(c);
}

void conn_unref(struct rpc_conn *c)
{
	int old = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
	ASSERT(old > 0);
	if (old != 1)
		return;
	c->free_msg.fn = conn_free_msg;
	c->free_msg.arg = c;
	loop_post(c->loop, &c->free_msg);
}

void conn_fini(struct rpc_conn *c)
{
	free(c->rbuf);
	c->rbuf = NULL;
	buf_fini(&c->pcopy);
	if (c->x_orphan) {
		c->x_orphan->ops->close(c->x_orphan);
		c->x_orphan = NULL;
	}
	pthread_mutex_destroy(&c->rx_mu);
	pthread_mutex_destroy(&c->omu_own);
}

void conn_rx_lock(struct rpc_conn *c)
{
	if (!c->rx_loop_depth++)
		pthread_mutex_lock(&c->rx_mu);
}

void conn_rx_unlock(struct rpc_conn *c)
{
	ASSERT(c->rx_loop_depth > 0);
	if (!--c->rx_loop_depth)
		pthread_mutex_unlock(&c->rx_mu);
}

static void conn_timer_fire(struct loop_timer *t)
{
	struct rpc_conn *c = t->arg;
	if (c->closing)
		conn_close(c, c->close_err, LOG_LVL_INFO, "refused peer did not read the refusal");
	else if (c->state == CONN_CONNECTING)
		conn_close(c, -CFS_ETIMEDOUT, LOG_LVL_WARN, "connect timed out");
	else {
		/* A peer that connected and never finished the handshake
		 * (half-open flood, scanner): counted, its slot freed. */
		atomic_fetch_add_explicit(&c->ctr->handshake_timeout, 1, memory_order_relaxed);
		conn_close(c, -CFS_ETIMEDOUT, LOG_LVL_WARN, "handshake timed out");
	}
}

int conn_init(struct rpc_conn *c, struct loop *loop, struct xport *x, enum conn_state state,
	      const struct conn_ops *ops, struct rpc_counters *ctr, const char *peer,
	      pthread_mutex_t *omu)
{
	pthread_mutex_init(&c->omu_own, NULL);
	pthread_mutex_init(&c->rx_mu, NULL);
	atomic_init(&c->rx_caller, 0);
	c->omu = omu ? omu : &c->omu_own;
	c->loop = loop;
	c->x = x;
	c->fd = x->ops->fd(x);
	c->io.fn = conn_io;
	c->io.arg = c;
	c->ops = ops;
	c->ctr = ctr;
	c->state = state;
	atomic_init(&c->refs, 1);
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->lim.max_payload = RPC_HS_MAX_PAYLOAD;
	c->lim.max_bulk = 0;
	c->rbuf = malloc(RPC_RBUF_LEN);
	c->rcap = RPC_RBUF_LEN;
	c->phase = RX_HDR;
	buf_init(&c->pcopy);
	c->timer = (struct loop_timer)LOOP_TIMER_INIT(conn_timer_fire, c);
	c->events = state == CONN_CONNECTING ? LOOP_OUT : LOOP_IN;
	int rc = c->rbuf ? loop_fd_add(loop, c->fd, c->events, &c->io) : -ENOMEM;
	if (rc) {
		x->ops->close(x);
		c->x = NULL;
		c->state = CONN_CLOSED;
		conn_fini(c);
	}
	return rc;
}

/* Registers the events C needs now. *omu held; 0 or -errno. */
static int update_events_locked(struct rpc_conn *c)
{
	if (c->state == CONN_CLOSED)
		return 0;
	uint32_t want;
	if (c->state == CONN_CONNECTING) {
		want = LOOP_OUT;
	} else {
		int blocked = c->out_blocked && c->oq_head;
		int reading = !c->read_paused && !c->closing;
		int loop_reads = reading && !atomic_load(&c->rx_caller) && !c->rx_idle;
		want = (loop_reads ? LOOP_IN : reading ? LOOP_PEER_CLOSE : 0) |
		       (blocked ? LOOP_OUT : 0);
	}
	if (want == c->events)
		return 0;
	c->events = want;
	return loop_fd_mod(c->loop, c->fd, want, &c->io);
}

void conn_update_events(struct rpc_conn *c)
{
	if (c->state == CONN_CLOSED)
		return;
	pthread_mutex_lock(c->omu);
	int rc = update_events_locked(c);
	pthread_mutex_unlock(c->omu);
	if (rc)
		conn_close(c, rc, LOG_LVL_ERR, "epoll_ctl failed");
}

static void close_msg_fn(struct loop_msg *m)
{
	struct rpc_conn *c = m->arg;
	conn_close(c, c->defer_err, c->defer_lvl, c->defer_why);
	conn_unref(c);
}

/* Any thread, *omu held: the loop closes C soon with ERR/LVL/WHY (a
 * string literal). */
static void post_close_locked(struct rpc_conn *c, int err, int lvl, const char *why)
{
	if (c->close_posted || c->state == CONN_CLOSED)
		return;
	c->close_posted = 1;
	c->defer_err = err;
	c->defer_lvl = lvl;
	c->defer_why = why;
	conn_ref(c);
	c->close_msg.fn = close_msg_fn;
	c->close_msg.arg = c;
	loop_post(c->loop, &c->close_msg);
}

void conn_close(struct rpc_conn *c, int err, int lvl, const char *why)
{
	if (c->state == CONN_CLOSED)
		return;
	if (atomic_load(&c->rx_caller) && !loop_in_thread(c->loop)) {
		/* The receiving caller met it (rx_mu held): the loop closes at
		 * its release. Parsing stops here. */
		if (!c->rx_defer) {
			c->rx_defer = 1;
			c->rxd_err = err;
			c->rxd_lvl = lvl;
			c->rxd_why = why;
		}
		return;
	}
	LOG(lvl, "rpc", "close: peer=%s reason=%s err=%s", c->peer, why, cfs_errname(err));
	conn_rx_lock(c);
	/* Under *omu: a thread writing directly checks the state and uses x
	 * under the same lock, so it never writes to a closed (reused) fd. */
	pthread_mutex_lock(c->omu);
	c->state = CONN_CLOSED;
	loop_fd_del(c->loop, c->fd);
	if (atomic_load(&c->rx_caller)) {
		/* A caller may be in poll() on the fd: wake it, and leave the
		 * close to it (conn_rx_release). */
		shutdown(c->fd, SHUT_RDWR);
		c->x_orphan = c->x;
	} else {
		c->x->ops->close(c->x);
	}
	c->x = NULL;
	struct rpc_out *q = c->oq_head;
	c->oq_head = c->oq_tail = NULL;
	c->outq_bytes = 0;
	pthread_mutex_unlock(c->omu);
	loop_timer_cancel(c->loop, &c->timer);
	conn_ref(c);
	while (q) {
		struct rpc_out *o = q;
		q = o->next;
		o->done(o, -CFS_ECLOSED);
	}
	c->ops->on_close(c, err);
	conn_rx_unlock(c);
	conn_unref(c);
	conn_unref(c); /* the "open" reference */
}

void conn_bad_input(struct rpc_conn *c, int err, const char *why)
{
	if (c->state == CONN_CLOSED)
		return;
	atomic_fetch_add_explicit(&c->ctr->bad_input, 1, memory_order_relaxed);
	LOG_WARN("rpc", "bad input: peer=%s type=%s reason=%s err=%s", c->peer,
		 rpc_msg_name(c->h.type), why, cfs_errname(err));
	conn_close(c, err, LOG_LVL_INFO, "bad input");
}

void conn_out_hdr(struct rpc_out *o, uint16_t type, uint16_t flags, uint64_t req_id,
		  int32_t status, uint32_t bulk_crc)
{
	struct frame_hdr h = {
		.flags = flags, .type = type, .req_id = req_id, .status = status,
		.payload_len = o->plen, .bulk_len = o->blen, .bulk_crc = bulk_crc,
	};
	frame_encode(&h, o->hdr);
	o->off = 0;
	o->next = NULL;
}

static void flush(struct rpc_conn *c);

static void flush_msg(struct loop_msg *m)
{
	struct rpc_conn *c = m->arg;
	pthread_mutex_lock(c->omu);
	c->flush_posted = 0;
	pthread_mutex_unlock(c->omu);
	if (c->state != CONN_CLOSED && c->state != CONN_CONNECTING)
		flush(c);
	conn_unref(c);
}

static void post_flush_locked(struct rpc_conn *c)
{
	c->flush_posted = 1;
	conn_ref(c);
	c->flush_msg.fn = flush_msg;
	c->flush_msg.arg = c;
	loop_post(c->loop, &c->flush_msg);
}

static void enqueue_locked(struct rpc_conn *c, struct rpc_out *o)
{
	o->next = NULL;
	if (c->oq_tail)
		c->oq_tail->next = o;
	else
		c->oq_head = o;
	c->oq_tail = o;
	c->outq_bytes += rpc_out_len(o) - o->off;
}

/* 0, or -CFS_ECLOSED (done not called: the caller calls it unlocked). */
static int send_locked(struct rpc_conn *c, struct rpc_out *o)
{
	if (c->state == CONN_CLOSED)
		return -CFS_ECLOSED;
	enqueue_locked(c, o);
	if (!c->flush_posted && !c->out_blocked)
		post_flush_locked(c);
	return 0;
}

void conn_send(struct rpc_conn *c, struct rpc_out *o)
{
	pthread_mutex_lock(c->omu);
	int rc = send_locked(c, o);
	pthread_mutex_unlock(c->omu);
	if (rc)
		o->done(o, rc);
}

void conn_send_locked(struct rpc_conn *c, struct rpc_out *o)
{
	/* The callers check the state under the same lock. */
	ASSERT(c->state != CONN_CLOSED);
	send_locked(c, o);
}

static int fill_iov(const struct rpc_out *o, struct iovec *iov, int room);

int conn_send_direct_locked(struct rpc_conn *c, struct rpc_out *o)
{
	ASSERT(c->state != CONN_CLOSED);
	if (c->oq_head) {
		send_locked(c, o);
		return 0;
	}
	struct iovec iov[3];
	int n = fill_iov(o, iov, 3);
	ssize_t w = c->x->ops->writev(c->x, iov, n);
	if (w > 0 && (uint64_t)w == rpc_out_len(o) - o->off)
		return 1;
	/* Partial write, EAGAIN or an error: the loop writes the rest (and
	 * closes the connection if the error repeats). */
	if (w > 0)
		o->off += (uint64_t)w;
	enqueue_locked(c, o);
	if (!c->flush_posted)
		post_flush_locked(c);
	return 0;
}

static int unqueue_locked(struct rpc_conn *c, struct rpc_out *o);

int conn_unqueue(struct rpc_conn *c, struct rpc_out *o)
{
	pthread_mutex_lock(c->omu);
	int rc = unqueue_locked(c, o);
	pthread_mutex_unlock(c->omu);
	return rc;
}

static int unqueue_locked(struct rpc_conn *c, struct rpc_out *o)
{
	struct rpc_out *prev = NULL;
	for (struct rpc_out *it = c->oq_head; it; prev = it, it = it->next) {
		if (it != o)
			continue;
		if (o->off)
			return -EBUSY;
		if (prev)
			prev->next = o->next;
		else
			c->oq_head = o->next;
		if (c->oq_tail == o)
			c->oq_tail = prev;
		c->outq_bytes -= rpc_out_len(o);
		o->next = NULL;
		return 0;
	}
	return -ENOENT;
}

struct copy_out {
	struct rpc_out o;
	uint8_t payload[];
};

static void copy_out_done(struct rpc_out *o, int status)
{
	free(container_of(o, struct copy_out, o));
}

int conn_send_copy(struct rpc_conn *c, uint16_t type, uint16_t flags, uint64_t req_id,
		   int32_t status, const void *payload, uint32_t plen)
{
	struct copy_out *co = malloc(sizeof(*co) + plen);
	if (!co)
		return -ENOMEM;
	if (plen)
		memcpy(co->payload, payload, plen);
	co->o.payload = co->payload;
	co->o.plen = plen;
	co->o.bulk = NULL;
	co->o.blen = 0;
	co->o.done = copy_out_done;
	conn_out_hdr(&co->o, type, flags, req_id, status, 0);
	conn_send(c, &co->o);
	return 0;
}

void conn_refuse(struct rpc_conn *c, uint64_t req_id, uint16_t type, int status,
		 const char *text)
{
	struct buf b = BUF_INIT;
	struct rpc_error e = { (const uint8_t *)text, (uint32_t)strlen(text) };

	if (c->state == CONN_CLOSED || c->closing)
		return;
	LOG_DEBUG("rpc", "refused: peer=%s type=%s status=%s reason=%s", c->peer,
		  rpc_msg_name(type), cfs_errname(status), text);
	if (rpc_error_encode(&b, &e) ||
	    conn_send_copy(c, type, FRAME_F_RESPONSE, req_id, status, b.data, (uint32_t)b.len)) {
		buf_fini(&b);
		conn_close(c, -ENOMEM, LOG_LVL_WARN, "no memory for a refusal");
		return;
	}
	buf_fini(&b);
	pthread_mutex_lock(c->omu);
	c->closing = 1;
	pthread_mutex_unlock(c->omu);
	c->close_err = status;
	loop_timer_arm(c->loop, &c->timer, clock_mono_ns() + 1000000000ull);
	conn_update_events(c);
}

/* Consumes N written bytes from the head of the queue; frames written
 * whole are appended at **DONE for done() after *omu is released. */
static void advance(struct rpc_conn *c, uint64_t n, struct rpc_out ***done)
{
	c->outq_bytes -= n;
	while (n) {
		struct rpc_out *o = c->oq_head;
		uint64_t left = rpc_out_len(o) - o->off;
		if (n < left) {
			o->off += n;
			return;
		}
		n -= left;
		/* Written whole: a caller receiving the reply may look (*omu). */
		o->off = rpc_out_len(o);
		c->oq_head = o->next;
		if (!c->oq_head)
			c->oq_tail = NULL;
		o->next = NULL;
		**done = o;
		*done = &o->next;
	}
}

static int fill_iov(const struct rpc_out *o, struct iovec *iov, int room)
{
	const void *base[3] = { o->hdr, o->payload, o->bulk };
	uint64_t len[3] = { FRAME_HDR_LEN, o->plen, o->blen };
	uint64_t skip = o->off;
	int n = 0;
	for (int i = 0; i < 3 && n < room; i++) {
		if (skip >= len[i]) {
			skip -= len[i];
			continue;
		}
		iov[n].iov_base = (uint8_t *)base[i] + skip;
		iov[n].iov_len = len[i] - skip;
		skip = 0;
		n++;
	}
	return n;
}

static void flush(struct rpc_conn *c)
{
	struct iovec iov[IOV_MAX_BATCH];
	struct rpc_out *written = NULL, **wtail = &written;
	int failed = 0;

	conn_ref(c);
	pthread_mutex_lock(c->omu);
	c->out_blocked = 0;
	while (c->oq_head && c->state != CONN_CLOSED) {
		int n = 0;
		uint64_t total = 0;
		for (struct rpc_out *o = c->oq_head; o && n + 3 <= IOV_MAX_BATCH; o = o->next) {
			int k = fill_iov(o, iov + n, IOV_MAX_BATCH - n);
			for (int i = n; i < n + k; i++)
				total += iov[i].iov_len;
			n += k;
		}
		ssize_t w = c->x->ops->writev(c->x, iov, n);
		if (w == -EAGAIN) {
			c->out_blocked = 1;
			break;
		}
		if (w < 0) {
			failed = 1;
			break;
		}
		advance(c, (uint64_t)w, &wtail);
		if ((uint64_t)w < total) {
			c->out_blocked = 1;
			break;
		}
	}
	pthread_mutex_unlock(c->omu);
	while (written) {
		struct rpc_out *o = written;
		written = o->next;
		o->done(o, 0);
	}
	if (failed)
		conn_close(c, -CFS_ECLOSED, LOG_LVL_INFO, "write failed");
	if (c->state != CONN_CLOSED) {
		pthread_mutex_lock(c->omu);
		int empty = !c->oq_head;
		pthread_mutex_unlock(c->omu);
		if (empty && c->closing)
			conn_close(c, c->close_err, LOG_LVL_INFO, "refused");
		else {
			conn_update_events(c);
			c->ops->on_drain(c);
		}
	}
	conn_unref(c);
}

/* Makes room for LEN contiguous unparsed bytes at rbuf. 0 or -ENOMEM. */
static int rbuf_room(struct rpc_conn *c, size_t len)
{
	if (c->rpos) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	if (len <= c->rcap)
		return 0;
	uint8_t *n = realloc(c->rbuf, len);
	if (!n)
		return -ENOMEM;
	c->rbuf = n;
	c->rcap = len;
	return 0;
}

/* Back to the default buffer after a large payload, when nothing is pending. */
static void rbuf_shrink(struct rpc_conn *c)
{
	if (c->rcap <= RPC_RBUF_LEN || c->rlen - c->rpos > RPC_RBUF_LEN)
		return;
	if (rbuf_room(c, 0))
		return;
	uint8_t *n = realloc(c->rbuf, RPC_RBUF_LEN);
	if (n) {
		c->rbuf = n;
		c->rcap = RPC_RBUF_LEN;
	}
}

/* Where bulk byte OFF lands; *ROOM: bytes contiguous from there (0 past
 * the last segment of a scattered destination). */
static uint8_t *bulk_at(const struct rpc_conn *c, uint64_t off, uint64_t *room)
{
	if (!c->dest_niov) {
		*room = UINT64_MAX;
		return c->dest + off;
	}
	for (int i = 0; i < c->dest_niov; i++) {
		if (off < c->dest_iov[i].iov_len) {
			*room = c->dest_iov[i].iov_len - off;
			return (uint8_t *)c->dest_iov[i].iov_base + off;
		}
		off -= c->dest_iov[i].iov_len;
	}
	*room = 0;
	return NULL;
}

static void bulk_take(struct rpc_conn *c, const uint8_t *src, uint64_t n, int copy)
{
	while (c->dest && n) {
		uint64_t room;
		uint8_t *p = bulk_at(c, c->got, &room);
		if (!room)
			break; /* past a scattered destination: the role checked the cap */
		uint64_t k = n < room ? n : room;
		if (copy) {
			memcpy(p, src, k);
			src += k;
			atomic_fetch_add_explicit(&c->ctr->bulk_copied, k, memory_order_relaxed);
		}
		if (c->h.flags & FRAME_F_BULK_CRC)
			c->crc = crc32c(c->crc, p, k);
		c->got += k;
		n -= k;
	}
	c->got += n;
}

static int frame_done(struct rpc_conn *c, const uint8_t *p, uint32_t len)
{
	int bulk_status = 0;
	if ((c->h.flags & FRAME_F_BULK_CRC) && c->dest && c->crc != c->h.bulk_crc)
		bulk_status = -CFS_ECHECKSUM;
	c->phase = RX_HDR;
	c->dest = NULL;
	c->dest_niov = 0;
	int rc = c->ops->on_frame(c, p, len, bulk_status);
	/* A big payload copy is not kept around between frames. */
	if (c->pcopy.cap > RPC_RBUF_LEN)
		buf_fini(&c->pcopy);
	return rc;
}

/* Parses what is buffered. Returns 0, or <0 once the connection closed. */
static int parse(struct rpc_conn *c)
{
	for (;;) {
		if (c->state == CONN_CLOSED || c->rx_defer)
			return -CFS_ECLOSED;
		size_t avail = c->rlen - c->rpos;
		const uint8_t *p = c->rbuf + c->rpos;
		int rc;

		switch (c->phase) {
		case RX_HDR:
			if (c->read_paused || c->closing || avail < FRAME_HDR_LEN)
				return 0;
			rc = frame_decode(p, avail, &c->lim, &c->h);
			if (rc) {
				c->h.type = wire_load_u16(p + 8);
				conn_bad_input(c, rc, rc == -CFS_EPROTO ? "bad magic or flags"
						: rc == -CFS_EVERSION ? "unsupported frame version"
						: rc == -CFS_ECHECKSUM ? "header checksum mismatch"
						: "payload or bulk over the limit");
				return rc;
			}
			c->rpos += FRAME_HDR_LEN;
			c->phase = RX_PAYLOAD;
			c->dest = NULL;
			c->dest_niov = 0;
			c->got = 0;
			c->crc = 0;
			rc = c->ops->on_header(c, &c->h);
			if (rc)
				return rc;
			break;
		case RX_PAYLOAD:
			if (avail < c->h.payload_len) {
				if (rbuf_room(c, c->h.payload_len)) {
					conn_close(c, -ENOMEM, LOG_LVL_WARN, "no memory for a payload");
					return -ENOMEM;
				}
				return 0;
			}
			c->rpos += c->h.payload_len;
			rc = c->ops->on_payload(c, p, c->h.payload_len);
			if (rc)
				return rc;
			if (!c->h.bulk_len) {
				c->rx_hint = 0;
				rc = frame_done(c, p, c->h.payload_len);
				if (rc)
					return rc;
				rbuf_shrink(c);
				break;
			}
			c->rx_hint = c->h.bulk_len >= RX_HINT_BULK ? c->h.payload_len + 1 : 0;
			buf_reset(&c->pcopy);
			if (buf_append(&c->pcopy, p, c->h.payload_len)) {
				conn_close(c, -ENOMEM, LOG_LVL_WARN, "no memory for a payload");
				return -ENOMEM;
			}
			c->phase = RX_BULK;
			break;
		case RX_BULK: {
			uint64_t take = c->h.bulk_len - c->got;
			if (take > avail)
				take = avail;
			bulk_take(c, p, take, 1);
			c->rpos += take;
			if (c->got < c->h.bulk_len)
				return 0;
			rc = frame_done(c, c->pcopy.data, c->h.payload_len);
			if (rc)
				return rc;
			break;
		}
		}
	}
}

/* One read: straight into the bulk destination when in RX_BULK with
 * nothing buffered, else into the receive buffer. >0, 0 (EOF), <0.
 * *SHORT is set when fewer bytes came than there was room for: the socket
 * is drained, and level-triggered epoll reports anything that comes later,
 * so the caller can skip the read that would only return EAGAIN. */
static ssize_t read_some(struct rpc_conn *c, int *short_read)
{
	struct iovec iov[RX_BULK_IOV + 1];
	if (c->phase == RX_BULK && c->dest && c->rpos == c->rlen) {
		/* The bulk's remaining segments (up to RX_BULK_IOV), then the
		 * receive buffer for what follows. */
		uint64_t left = c->h.bulk_len - c->got, want = 0, off = c->got;
		int k = 0;
		while (k < RX_BULK_IOV && want < left) {
			uint64_t room;
			uint8_t *p = bulk_at(c, off, &room);
			if (!room)
				break;
			if (room > left - want)
				room = left - want;
			iov[k].iov_base = p;
			iov[k++].iov_len = room;
			want += room;
			off += room;
		}
		c->rpos = c->rlen = 0;
		iov[k].iov_base = c->rbuf;
		iov[k].iov_len = c->rcap;
		/* What follows a big bulk is likely another frame like this one:
		 * take only its header and payload (rx_hint), not its bulk. */
		if (c->rx_hint && FRAME_HDR_LEN + (size_t)(c->rx_hint - 1) < c->rcap)
			iov[k].iov_len = FRAME_HDR_LEN + (size_t)(c->rx_hint - 1);
		uint64_t tail = iov[k++].iov_len;
		ssize_t n = c->x->ops->readv(c->x, iov, k);
		*short_read = n > 0 && (uint64_t)n < want + tail;
		if (n > 0) {
			uint64_t in_place = (uint64_t)n < want ? (uint64_t)n : want;
			bulk_take(c, NULL, in_place, 0);
			c->rlen = (size_t)((uint64_t)n - in_place);
		}
		return n;
	}
	if (c->rpos == c->rlen)
		c->rpos = c->rlen = 0;
	if (c->rlen == c->rcap && rbuf_room(c, 0))
		return -ENOMEM;
	iov[0].iov_base = c->rbuf + c->rlen;
	iov[0].iov_len = c->rcap - c->rlen;
	/* After a frame with a big bulk, stop at the end of what is likely
	 * the next frame's payload (the same length as the last one's), and
	 * in the payload phase of a frame with a bulk at the payload's end:
	 * the bulk then comes through the branch above. One more read when
	 * the guess is short; a few bytes copied when it is long. */
	size_t stop = 0;
	if (c->phase == RX_PAYLOAD && c->h.bulk_len)
		stop = c->rpos + c->h.payload_len;
	else if (c->phase == RX_HDR && c->rx_hint)
		stop = c->rpos + FRAME_HDR_LEN + (c->rx_hint - 1);
	if (stop > c->rlen && stop - c->rlen < iov[0].iov_len)
		iov[0].iov_len = stop - c->rlen;
	ssize_t n = c->x->ops->readv(c->x, iov, 1);
	*short_read = n > 0 && (size_t)n < iov[0].iov_len;
	if (n > 0)
		c->rlen += (size_t)n;
	return n;
}

/* Up to READS_PER_EVENT reads and their parsing; rx_mu held. On the loop
 * it stops when a caller takes the receive side over; on a caller's
 * thread a close is deferred (conn_close). 0, or -CFS_ECLOSED when C is
 * closed or closing. */
static int read_batch(struct rpc_conn *c, int on_loop)
{
	for (int i = 0; i < READS_PER_EVENT; i++) {
		if (c->state == CONN_CLOSED || c->rx_defer)
			return -CFS_ECLOSED;
		if (c->read_paused || c->closing)
			return 0;
		if (on_loop && atomic_load(&c->rx_caller)) {
			c->rx_left = 1;
			return 0;
		}
		int short_read = 0;
		ssize_t n = read_some(c, &short_read);
		if (n == -EAGAIN)
			return 0;
		if (n == 0) {
			conn_close(c, -CFS_ECLOSED, LOG_LVL_DEBUG, "peer closed the connection");
			return -CFS_ECLOSED;
		}
		if (n < 0) {
			conn_close(c, -CFS_ECLOSED, LOG_LVL_INFO, "read failed");
			return -CFS_ECLOSED;
		}
		if (parse(c))
			return -CFS_ECLOSED;
		if (short_read)
			return 0;
	}
	return 0;
}

static void on_readable(struct rpc_conn *c)
{
	conn_rx_lock(c);
	read_batch(c, 1);
	conn_rx_unlock(c);
}

int conn_rx_claim_locked(struct rpc_conn *c)
{
	/* close_posted: a caller met a close the loop has yet to carry out;
	 * claiming again would only meet it again. */
	if (c->state != CONN_READY || c->read_paused || c->closing || c->close_posted ||
	    !c->ops->rx_expecting ||
	    atomic_load(&c->rx_caller) || loop_in_thread(c->loop))
		return 0;
	atomic_store(&c->rx_caller, 1);
	if (update_events_locked(c)) {
		atomic_store(&c->rx_caller, 0);
		post_close_locked(c, -CFS_ECLOSED, LOG_LVL_ERR, "epoll_ctl failed");
		return 0;
	}
	conn_ref(c);
	return 1;
}

int conn_rx_step(struct rpc_conn *c, int timeout_ms)
{
	/* The fd stays open while this thread receives (x_orphan). */
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
	int n = poll(&pfd, 1, timeout_ms);
	if (n <= 0)
		return 0; /* timeout or EINTR: the caller checks its clock */
	pthread_mutex_lock(&c->rx_mu);
	int rc = read_batch(c, 0);
	pthread_mutex_unlock(&c->rx_mu);
	return rc;
}

int conn_rx_release(struct rpc_conn *c, void *pass_arg)
{
	struct xport *orphan = NULL;
	int passed = 0;
	pthread_mutex_lock(&c->rx_mu);
	pthread_mutex_lock(c->omu);
	ASSERT(atomic_load(&c->rx_caller));
	if (c->state == CONN_CLOSED) {
		atomic_store(&c->rx_caller, 0);
		orphan = c->x_orphan;
		c->x_orphan = NULL;
	} else if (c->rx_defer) {
		atomic_store(&c->rx_caller, 0);
		post_close_locked(c, c->rxd_err, c->rxd_lvl, c->rxd_why);
	} else if (c->ops->rx_pass && !c->read_paused && !c->closing && c->ops->rx_expecting(c) &&
		   c->ops->rx_pass(c, pass_arg)) {
		/* rx_caller stays set: the events stay as they are, and an
		 * event the loop left is the next receiver's to read. */
		passed = 1;
	} else {
		atomic_store(&c->rx_caller, 0);
		c->rx_idle = !c->rx_left && !c->ops->rx_expecting(c);
		if (update_events_locked(c))
			post_close_locked(c, -CFS_ECLOSED, LOG_LVL_ERR, "epoll_ctl failed");
	}
	c->rx_left = 0;
	pthread_mutex_unlock(c->omu);
	pthread_mutex_unlock(&c->rx_mu);
	if (orphan)
		orphan->ops->close(orphan);
	if (!passed)
		conn_unref(c);
	return passed;
}

void conn_rx_arm_locked(struct rpc_conn *c)
{
	if (!c->rx_idle)
		return;
	c->rx_idle = 0;
	if (update_events_locked(c))
		post_close_locked(c, -CFS_ECLOSED, LOG_LVL_ERR, "epoll_ctl failed");
}

static void conn_io(struct loop_io *io, uint32_t events)
{
	struct rpc_conn *c = io->arg;

	if (c->state == CONN_CLOSED)
		return;
	conn_ref(c);
	if (c->state == CONN_CONNECTING) {
		if (events & (LOOP_OUT | LOOP_ERR)) {
			int rc = c->x->ops->connect_finish(c->x);
			if (!rc) {
				c->state = CONN_HANDSHAKE;
				conn_update_events(c);
			}
			c->ops->on_connected(c, rc);
		}
		conn_unref(c);
		return;
	}
	if ((events & LOOP_ERR) && (c->closing || c->read_paused)) {
		conn_close(c, c->closing ? c->close_err : -CFS_ECLOSED, LOG_LVL_INFO,
			   "peer hung up");
		conn_unref(c);
		return;
	}
	if (events & LOOP_OUT)
		flush(c);
	if (events & (LOOP_IN | LOOP_ERR))
		on_readable(c);
	conn_unref(c);
}
