/* rpc_client.c - the RPC client: peers, connection pools, calls.
 *
 * SHAPE. A client owns N loop threads. A peer (one server address) owns
 * conns_per_peer slots; each slot is bound to one loop for life and holds
 * at most one live connection plus a wait list of requests that arrived
 * while it was connecting. A call picks a slot round robin; if the caller
 * is not that slot's loop thread, the request travels there by message.
 *
 * A REQUEST (struct pend) moves NEW -> WAIT (slot not ready) -> QUEUED (frame
 * in the connection's send queue, id in its table) -> SENT -> finished.
 * Request ids are (generation << 32 | table index): the index finds the
 * entry in O(1) and the generation makes a late reply to a recycled index
 * miss, so it is dropped. Each request has a deadline timer on its loop;
 * pend_finish is the only way out of every state, and it runs done() once
 * and frees the request.
 *
 * CONNECTING. slot_connect starts a non-blocking connect; on success the
 * client sends HELLO, answers CHALLENGE with AUTH, and checks the server's
 * AUTH_OK proof (mutual authentication) before the slot's wait list is
 * issued. A failure before CONN_READY fails the wait list with its reason
 * and doubles the slot's backoff (100 ms .. max_backoff_ms, 5 s by
 * default); the next request after
 * the backoff retries. A connection that was ready and then dropped
 * reconnects at once on the next request.
 *
 * DIRECT SEND. A caller that is not the slot's loop thread sends its own
 * request when it can: under the slot's mutex (which is also the
 * connection's send lock) it finds a ready connection with an empty send
 * queue, takes a table entry and writes the frame with one writev on the
 * non-blocking socket. That saves a loop wake-up (eventfd write, context
 * switch) per call. A partial write
 * leaves the rest queued for the loop. The request's deadline timer lives
 * in the loop's heap, which only the loop may touch, so the caller puts it
 * on the slot's "no timer" list instead; a sweep timer on the loop (every
 * SWEEP_MS while calls flow, stopped after a second without any) arms the
 * real timers of those still unanswered, so a deadline fires at most
 * SWEEP_MS late. A call takes the old path (a loop message) while the
 * sweep is off, the connection is not ready, its queue is not empty, the
 * lock is busy (another thread is sending: the loop then batches),
 * requests are in flight already (DIRECT_MAX_INFLIGHT: the loop batches
 * them) while the loop is awake, or a posted request has not reached the
 * loop yet; the last keeps one thread's calls in the order it made them.
 * While the slot's loop sleeps in epoll_wait (loop_idle), a blocking
 * caller (rpc_call) sends directly however many are in flight: posting would cost the eventfd
 * write and the loop's wake-up that batching saves, and with blocking
 * callers that read their own replies the loop sleeps most of the time
 * (issue 13, `chainfs bench meta --clients 8`: the client's CPU per
 * create 9-14 -> 5-8 us, per stat 7-10 -> 6-8 us, its context switches
 * per op 1.8-2.2 -> 1.5-1.6; docs/rpc.md "Threads and wake-ups"). An
 * awake loop still gets the request and sends it in its batch. With idle_conn_first
 * (rpc.h) a call first looks, in slot order, for a slot whose connection
 * has nothing in flight and sends there directly; only when none is free
 * does it take the round-robin slot as above. Several blocking callers
 * then each have a connection (and read their own reply) instead of
 * meeting on one and going through the loop.
 *
 * OWN REPLIES. A blocking rpc_call that sent its request directly also
 * takes over the connection's receive side when no other thread has it
 * (rpc_conn.c CALLER RECEIVE): it waits in poll() on the socket and reads
 * and parses what comes on its own thread, so its reply wakes it directly
 * instead of waking the loop, which then wakes the caller (two context
 * switches and an epoll round per call become one). Replies to other
 * requests that it reads are completed from there too: a blocking
 * caller's waiter is signalled at once, an async request's done() is
 * posted to the loop with a copy of the payload (done() still runs on a
 * loop thread); bulk goes into the request's buffer exactly as when the
 * loop reads. A request completed this way leaves the table under the
 * slot mutex as PEND_DONE; the loop frees it (pend_reap) unless nothing of
 * it is left there (its timer never armed, its frame written by the
 * caller). The caller gives the receive side back when its reply came,
 * when its connection closed, or at its deadline; the loop's timer then
 * fails it as before. A deadline, a close or a shutdown on the loop takes
 * the receive lock, so it never races a caller filling a buffer; a close
 * the caller meets (EOF, malformed reply) is carried out by the loop.
 *
 * LEADERS (CFS_RPC_LEADERS=1; off by default, see docs/rpc.md "Threads
 * and wake-ups" for the figures). A blocking caller whose reply has not
 * come and who would sleep takes the receive side itself when no other
 * caller has it (from the loop too, which then leaves out EPOLLIN), reads,
 * and completes what it reads as above. Others sleep on the slot's list
 * of blocked callers (under the slot mutex). When its own reply came, the
 * reader passes the receive side, with its connection reference, to a
 * listed caller whose reply has not come (SC_LEAD, one FUTEX_WAKE), or,
 * with none listed, back to the loop (conn_rx_release, rx_pass), so a
 * connection with replies expected always has a reader. A listed caller
 * leaves only after taking itself off the list under the mutex, where it
 * also finds a passed receive side, so none is lost. Callers also send
 * directly whatever is in flight. Requests a caller completed that the
 * loop must free (their timers) go on a reap list the loop drains in one
 * message per REAP_BATCH, at the next posted request or sweep.
 *
 * INVARIANTS. Slots, connections and requests are touched only by their
 * loop thread, except what the slot's mutex guards (struct cslot) and the
 * receive side, which the thread holding the connection's rx_mu owns (the
 * loop or a caller; lock order rx_mu, then the slot mutex). A pend is in
 * exactly one of: the caller's hands (NEW), the slot wait list (WAIT), the
 * connection table (QUEUED/SENT), or on its way to pend_reap (DONE); a
 * QUEUED/SENT pend may also be on the slot's "no timer" list. Callbacks
 * (done) never run under the slot's mutex.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "net/auth.h"
#include "net/rpc_int.h"
#include "net/rpc_proto.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SWEEP_MS 10           /* arms the timers of directly sent requests */
#define SWEEP_IDLE_STOP 100   /* sweeps without a direct send before it stops */
/* Direct sends only while fewer requests than this are in flight on the
 * connection: with more, the loop is awake for their replies anyway and
 * sends queued requests in one writev (one wake-up of the server for
 * many); measured with `chainfs bench meta --clients 1,8`. */
#define DIRECT_MAX_INFLIGHT 1
/* A thread reading its own reply re-checks whether it was completed
 * elsewhere (timeout, close) at least this often. */
#define OWN_POLL_MS 100
/* Requests completed by caller threads that the loop frees in one
 * message (LEADERS): posting each woke the loop once per reply. */
#define REAP_BATCH 32

/* PEND_DONE: completed by a caller thread that read its reply (OWN
 * REPLIES); out of the table, waiting for the loop to free it. */
enum pend_where { PEND_NEW, PEND_WAIT, PEND_QUEUED, PEND_SENT, PEND_DONE };

struct cli_loop {
	struct loop *l;
	struct rpc_client *cl;
	struct loop_msg stop_msg;
};

struct cli_conn;

struct cslot {
	struct rpc_peer *p;
	struct cli_loop *lp;
	struct cli_conn *conn;        /* live connection or NULL */
	/* mu guards: ready, nt_head, sweep_on, direct_sent, the send
	 * side of the connection (its *omu), its request table (tab, freeidx,
	 * nfree, gen) and pend->where of its requests. */
	pthread_mutex_t mu;
	struct cli_conn *ready;       /* conn once CONN_READY, for direct sends */
	struct pend *nt_head;         /* directly sent, timer not yet armed */
	int sweep_on;                 /* the sweep timer runs: direct sends allowed */
	uint32_t direct_sent;         /* direct sends since the last sweep */
	atomic_uint posted;           /* requests posted, not yet on the loop */
	int sweep_idle;               /* loop only */
	struct loop_timer sweep;
	struct pend *wait_head, *wait_tail;
	uint32_t nwait;
	uint32_t backoff_ms;          /* 0 after a successful handshake */
	uint64_t next_try;            /* monotonic ns before which no connect starts */
	struct loop_timer retry;
	/* LEADERS, under mu: */
	struct sync_call *lw_head;    /* blocked callers that may take the receive side */
	struct pend *reap_head;       /* completed by a caller; the loop frees them */
	uint32_t nreap;
	int reap_posted;
	struct loop_msg reap_msg;
};

struct rpc_peer {
	struct rpc_peer *next;        /* client's list, under cl->mu */
	struct rpc_client *cl;
	struct sockaddr_in addr;
	char name[XPORT_ADDRSTRLEN];
	int nslots;
	struct cslot *slots;
	atomic_uint rr;
};

struct rpc_client {
	struct rpc_opts o;
	uint8_t secret[AUTH_SECRET_MAX];
	char cluster_id[RPC_CLUSTER_ID_MAX + 1];
	size_t cluster_id_len;
	int nloops;
	struct cli_loop *loops;
	pthread_mutex_t mu;           /* guards peers */
	struct rpc_peer *peers;
	unsigned next_loop;           /* loop of the next new slot, under mu */
	atomic_bool closing;
	int leaders;                  /* LEADERS on (CFS_RPC_LEADERS=1) */
	uint32_t direct_max;          /* direct sends while fewer are in flight */
	int direct_idle;              /* direct sends past direct_max while the
					 slot's loop is idle (DIRECT SEND) */
	struct rpc_counters ctr;
};

/* Doubles the slot's pause before the next connect, within
 * [BACKOFF_MIN_MS, the client's max_backoff_ms]. */
static void back_off(struct cslot *s)
{
	uint32_t max = s->p->cl->o.max_backoff_ms ? s->p->cl->o.max_backoff_ms : BACKOFF_MAX_MS;
	s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (s->backoff_ms > max)
		s->backoff_ms = max > BACKOFF_MIN_MS ? max : BACKOFF_MIN_MS;
}

struct cli_conn {
	struct rpc_conn c;
	struct cslot *slot;
	int hs_step;                  /* 0: await CHALLENGE, 1: await AUTH_OK, 2: ready */
	uint8_t cnonce[RPC_NONCE_LEN], snonce[RPC_NONCE_LEN];
	struct pend **tab;            /* in-flight requests by index */
	uint32_t *freeidx;            /* stack of free indexes */
	uint32_t nfree, cap;
	uint32_t gen;
	struct pend *cur;             /* request whose reply is being received */
	int cur_status;
};

struct pend {
	struct rpc_out out;
	struct loop_msg msg;
	struct loop_timer timer;
	struct cslot *slot;
	struct cli_conn *cc;          /* set while QUEUED/SENT */
	struct pend *next;            /* wait list */
	struct pend *nt_prev, *nt_next; /* slot's "no timer" list, under mu */
	int on_nt;
	enum pend_where where;
	int timed_out;                /* deadline passed while half-written */
	int oneway;
	uint64_t id;
	uint32_t idx;
	uint64_t deadline;
	uint32_t flags;
	uint16_t type;
	const uint8_t *bulk;
	uint64_t blen;
	uint32_t bulk_crc;
	uint8_t *resp_bulk;
	uint64_t resp_cap;
	const struct iovec *resp_iov; /* scattered reply bulk (resp_bulk = its first base) */
	int resp_niov;
	rpc_done_fn done;
	void *arg;
	int send_fd;                  /* RPC_CALL_SEND_FD: borrowed */
	/* completed off the loop (PEND_DONE): what done() gets there */
	int fin_status;
	uint8_t *fin_payload;         /* malloc'ed copy or NULL */
	uint32_t fin_plen;
	uint64_t fin_bulk;
	uint32_t plen;
	uint8_t payload[];
};

/* The blocking wrapper's state, on the caller's stack. The caller sleeps
 * on a futex of its own (state), not a condition variable: waking it is
 * one FUTEX_WAKE, and only when it sleeps. With a mutex and condvar the
 * woken caller often ran on the other CPU at once, found the mutex still
 * held by the thread that signalled it and slept again, costing a second
 * wake-up and two more context switches per call (perf: __lll_lock_wake
 * under cli_on_frame, `chainfs bench rpc --rows sync` 3 csw per call with
 * 4 threads). */
enum { SC_SLEEPING = 1, SC_DONE = 2, SC_LEAD = 4 };
struct sync_call {
	_Atomic uint32_t state;       /* SC_* bits; SC_DONE published after the result */
	int status;
	struct buf *resp;
	uint64_t bulk_len;
	/* LEADERS (under the slot's mu): on the slot's list of blocked callers
	 * while listed; with SC_LEAD set (under mu too), the connection
	 * whose receive side was passed to this caller. */
	struct sync_call *lw_prev, *lw_next;
	int listed;
	struct cli_conn *lead_cc;
};

static void sync_done(void *arg, const struct rpc_result *res);

static void slot_connect(struct cslot *s);

/* ---- completion ---- */

static void nt_push(struct cslot *s, struct pend *p)
{
	p->nt_prev = NULL;
	p->nt_next = s->nt_head;
	if (s->nt_head)
		s->nt_head->nt_prev = p;
	s->nt_head = p;
	p->on_nt = 1;
}

static void nt_remove(struct cslot *s, struct pend *p)
{
	if (!p->on_nt)
		return;
	if (p->nt_prev)
		p->nt_prev->nt_next = p->nt_next;
	else
		s->nt_head = p->nt_next;
	if (p->nt_next)
		p->nt_next->nt_prev = p->nt_prev;
	p->on_nt = 0;
}

static void pend_finish(struct pend *p, int status, const uint8_t *payload, uint32_t plen,
			uint64_t bulk_len)
{
	struct cslot *s = p->slot;
	loop_timer_cancel(s->lp->l, &p->timer);
	if (p->cc) {
		struct cli_conn *cc = p->cc;
		pthread_mutex_lock(&s->mu);
		if (!p->oneway) {
			cc->tab[p->idx] = NULL;
			cc->freeidx[cc->nfree++] = p->idx;
		}
		nt_remove(s, p);
		pthread_mutex_unlock(&s->mu);
	}
	if (p->done) {
		struct rpc_result res = { status, payload, plen, bulk_len };
		p->done(p->arg, &res);
	}
	free(p);
}

/* Loop: frees a request a caller thread completed (pend_finish_offloop),
 * running its done() here when it is not a blocking call's. */
static void pend_reap(struct loop_msg *m)
{
	struct pend *p = m->arg;
	loop_timer_cancel(p->slot->lp->l, &p->timer);
	if (p->done) {
		struct rpc_result res = { p->fin_status, p->fin_payload, p->fin_plen, p->fin_bulk };
		p->done(p->arg, &res);
	}
	free(p->fin_payload);
	free(p);
}

/* Loop: frees the requests on S's reap list (pend_finish_offloop). */
static void reap_drain(struct cslot *s)
{
	pthread_mutex_lock(&s->mu);
	struct pend *p = s->reap_head;
	s->reap_head = NULL;
	s->nreap = 0;
	s->reap_posted = 0;
	pthread_mutex_unlock(&s->mu);
	while (p) {
		struct pend *next = p->next;
		loop_timer_cancel(s->lp->l, &p->timer);
		free(p);
		p = next;
	}
}

static void reap_msg_fn(struct loop_msg *m) { reap_drain(m->arg); }

/* pend_finish on a caller thread that received P's reply (rx_mu held).
 * A blocking call's waiter is told at once; any other done() runs on the
 * loop (rpc.h), with a copy of the payload. P is freed here only when the
 * loop holds nothing of it: no timer armed and its frame's done() run. */
static void pend_finish_offloop(struct pend *p, int status, const uint8_t *payload,
				uint32_t plen, uint64_t bulk_len)
{
	struct cslot *s = p->slot;
	struct cli_conn *cc = p->cc;
	pthread_mutex_lock(&s->mu);
	cc->tab[p->idx] = NULL;
	cc->freeidx[cc->nfree++] = p->idx;
	int mine = p->on_nt && p->where == PEND_SENT;
	nt_remove(s, p);
	p->where = PEND_DONE;
	pthread_mutex_unlock(&s->mu);
	atomic_fetch_add_explicit(&s->p->cl->ctr.replies_by_caller, 1, memory_order_relaxed);
	if (p->done == sync_done) {
		struct rpc_result res = { status, payload, plen, bulk_len };
		sync_done(p->arg, &res);
		if (mine) {
			free(p);
			return;
		}
		p->done = NULL;
		/* Only memory and a timer are left: freed with others in one
		 * loop message, not a loop wake-up per reply. */
		pthread_mutex_lock(&s->mu);
		p->next = s->reap_head;
		s->reap_head = p;
		int post = ++s->nreap >= REAP_BATCH && !s->reap_posted;
		if (post)
			s->reap_posted = 1;
		pthread_mutex_unlock(&s->mu);
		if (post)
			loop_post(s->lp->l, &s->reap_msg);
		return;
	} else {
		if (plen) {
			p->fin_payload = malloc(plen);
			if (p->fin_payload)
				memcpy(p->fin_payload, payload, plen);
			else if (!status)
				status = -ENOMEM;
		}
		p->fin_plen = p->fin_payload ? plen : 0;
		p->fin_status = status;
		p->fin_bulk = bulk_len;
	}
	p->msg.fn = pend_reap;
	p->msg.arg = p;
	loop_post(s->lp->l, &p->msg);
}

/* Fails every request waiting on S. The list is detached first: a done()
 * that retries adds to a fresh list instead of being failed again here. */
static void fail_wait(struct cslot *s, int err)
{
	struct pend *p = s->wait_head;
	s->wait_head = s->wait_tail = NULL;
	s->nwait = 0;
	while (p) {
		struct pend *next = p->next;
		pend_finish(p, err, NULL, 0, 0);
		p = next;
	}
}

/* ---- issuing ---- */

static void req_out_done(struct rpc_out *o, int status)
{
	struct pend *p = container_of(o, struct pend, out);
	if (p->oneway) {
		loop_timer_cancel(p->slot->lp->l, &p->timer);
		pthread_mutex_lock(&p->slot->mu);
		nt_remove(p->slot, p);
		pthread_mutex_unlock(&p->slot->mu);
		free(p);
		return;
	}
	/* On failure the connection is closing; on_close finishes the request.
	 * Under the lock: a caller may be reading the reply already, and may
	 * have completed it (PEND_DONE: the loop frees it after this). */
	if (!status) {
		pthread_mutex_lock(&p->slot->mu);
		if (p->where == PEND_QUEUED)
			p->where = PEND_SENT;
		pthread_mutex_unlock(&p->slot->mu);
	}
}

/* Takes a table entry for P and fills its frame. Slot mutex held. 0, or
 * -CFS_EUNAVAIL when the table is full. */
static int issue_prep_locked(struct cli_conn *cc, struct pend *p)
{
	uint16_t flags = p->oneway ? FRAME_F_ONEWAY : 0;

	if (!p->oneway) {
		if (!cc->nfree)
			return -CFS_EUNAVAIL;
		p->idx = cc->freeidx[--cc->nfree];
		if (++cc->gen == 0)
			cc->gen = 1;
		p->id = (uint64_t)cc->gen << 32 | p->idx;
		cc->tab[p->idx] = p;
	}
	if (p->flags & RPC_CALL_BULK_CRC)
		flags |= FRAME_F_BULK_CRC;
	/* Queued on the endpoint before the frame, so it rides on the write
	 * of the frame's first byte or an earlier one (transport.h). A TCP
	 * connection cannot carry it: the server then finds none. */
	if (p->flags & RPC_CALL_SEND_FD)
		(void)xport_fd_send(cc->c.x, p->send_fd);
	p->cc = cc;
	p->where = PEND_QUEUED;
	p->out.payload = p->payload;
	p->out.plen = p->plen;
	p->out.bulk = p->bulk;
	p->out.blen = p->blen;
	p->out.done = req_out_done;
	conn_out_hdr(&p->out, p->type, flags, p->oneway ? 0 : p->id, 0,
		     p->blen && (flags & FRAME_F_BULK_CRC) ? p->bulk_crc : 0);
	return 0;
}

/* Loop thread, slot mutex held, CC ready. 0 or -CFS_EUNAVAIL (P untouched:
 * the caller finishes it after unlocking). */
static int conn_issue_locked(struct cli_conn *cc, struct pend *p)
{
	int rc = issue_prep_locked(cc, p);
	if (!rc) {
		conn_send_locked(&cc->c, &p->out);
		if (!p->oneway)
			conn_rx_arm_locked(&cc->c);
	}
	return rc;
}

static void conn_issue(struct cli_conn *cc, struct pend *p)
{
	struct cslot *s = cc->slot;
	pthread_mutex_lock(&s->mu);
	int rc = cc->c.state == CONN_CLOSED ? -CFS_ECLOSED : conn_issue_locked(cc, p);
	pthread_mutex_unlock(&s->mu);
	if (rc)
		pend_finish(p, rc, NULL, 0, 0);
}

static void pend_timeout_locked(struct pend *p);

static void pend_timeout(struct loop_timer *t)
{
	struct pend *p = t->arg;
	/* A request a caller completed may wait for the loop to free it
	 * (reap list) after its connection is gone: touch nothing of it. */
	pthread_mutex_lock(&p->slot->mu);
	int done = p->where == PEND_DONE;
	pthread_mutex_unlock(&p->slot->mu);
	if (done)
		return;
	/* A caller thread may be receiving on the connection: the receive
	 * lock keeps it from completing P or filling P's buffer meanwhile. */
	struct rpc_conn *c = p->cc ? &p->cc->c : NULL;
	if (c)
		conn_rx_lock(c);
	pend_timeout_locked(p);
	if (c)
		conn_rx_unlock(c);
}

static void pend_timeout_locked(struct pend *p)
{
	struct cslot *s = p->slot;

	pthread_mutex_lock(&s->mu);
	enum pend_where where = p->where;
	pthread_mutex_unlock(&s->mu);
	switch (where) {
	case PEND_DONE:
		return; /* a caller completed it; pend_reap frees it */
	case PEND_NEW:
		break;
	case PEND_WAIT: {
		struct pend **pp = &s->wait_head, *prev = NULL;
		while (*pp && *pp != p) {
			prev = *pp;
			pp = &(*pp)->next;
		}
		if (*pp) {
			*pp = p->next;
			if (s->wait_tail == p)
				s->wait_tail = prev;
			s->nwait--;
		}
		pend_finish(p, -CFS_ETIMEDOUT, NULL, 0, 0);
		return;
	}
	case PEND_QUEUED: {
		int rc = conn_unqueue(&p->cc->c, &p->out);
		if (rc == -EBUSY) {
			p->timed_out = 1;
			conn_close(&p->cc->c, -CFS_ECLOSED, LOG_LVL_WARN,
				   "request deadline passed while its frame was being written");
			return;
		}
		if (p->oneway) {
			free(p);
			return;
		}
		pend_finish(p, -CFS_ETIMEDOUT, NULL, 0, 0);
		return;
	}
	case PEND_SENT:
		if (p->cc->cur == p) {
			/* The rest of its reply is read and dropped: the caller's
			 * buffer is theirs again once done() runs. */
			p->cc->cur = NULL;
			p->cc->c.dest = NULL;
			p->cc->c.dest_niov = 0;
		}
		pend_finish(p, -CFS_ETIMEDOUT, NULL, 0, 0);
		return;
	}
}

/* Starts the slot's sweep (loop thread) so callers may send directly. */
static void sweep_start(struct cslot *s)
{
	pthread_mutex_lock(&s->mu);
	int was = s->sweep_on;
	s->sweep_on = 1;
	pthread_mutex_unlock(&s->mu);
	if (!was) {
		s->sweep_idle = 0;
		loop_timer_arm(s->lp->l, &s->sweep, clock_mono_ns() + SWEEP_MS * 1000000ull);
	}
}

static void slot_sweep(struct loop_timer *t)
{
	struct cslot *s = t->arg;
	struct loop *l = s->lp->l;

	pthread_mutex_lock(&s->mu);
	while (s->nt_head) {
		struct pend *p = s->nt_head;
		nt_remove(s, p);
		loop_timer_arm(l, &p->timer, p->deadline);
	}
	if (s->direct_sent)
		s->sweep_idle = 0;
	else if (++s->sweep_idle >= SWEEP_IDLE_STOP)
		s->sweep_on = 0;
	s->direct_sent = 0;
	int on = s->sweep_on;
	pthread_mutex_unlock(&s->mu);
	reap_drain(s);
	if (on)
		loop_timer_arm(l, &s->sweep, clock_mono_ns() + SWEEP_MS * 1000000ull);
}

static void pend_start(struct pend *p)
{
	struct cslot *s = p->slot;
	struct rpc_client *cl = s->p->cl;

	if (atomic_load_explicit(&cl->closing, memory_order_acquire)) {
		if (p->oneway)
			free(p);
		else
			pend_finish(p, -CFS_ECLOSED, NULL, 0, 0);
		return;
	}
	loop_timer_arm(s->lp->l, &p->timer, p->deadline);
	if (s->conn && s->conn->c.state == CONN_READY) {
		conn_issue(s->conn, p);
		sweep_start(s);
		return;
	}
	if (s->nwait >= cl->o.max_inflight) {
		pend_finish(p, -CFS_EUNAVAIL, NULL, 0, 0);
		return;
	}
	p->where = PEND_WAIT;
	p->next = NULL;
	if (s->wait_tail)
		s->wait_tail->next = p;
	else
		s->wait_head = p;
	s->wait_tail = p;
	s->nwait++;
	if (!s->conn)
		slot_connect(s);
}

static void pend_start_msg(struct loop_msg *m)
{
	struct pend *p = m->arg;
	struct cslot *s = p->slot;
	/* Issued before the count drops, so a later direct send from the
	 * thread that posted P cannot overtake it. */
	pend_start(p);
	atomic_fetch_sub(&s->posted, 1);
	reap_drain(s);
}

/* ---- connection role ---- */

static int send_msg(struct cli_conn *cc, uint16_t type, uint64_t id,
		    int (*enc)(struct buf *, const void *), const void *m)
{
	struct buf b = BUF_INIT;
	int rc = enc(&b, m);
	if (!rc)
		rc = conn_send_copy(&cc->c, type, 0, id, 0, b.data, (uint32_t)b.len);
	buf_fini(&b);
	if (rc)
		conn_close(&cc->c, rc, LOG_LVL_WARN, "no memory in handshake");
	return rc;
}

static int enc_hello(struct buf *b, const void *m) { return rpc_hello_encode(b, m); }
static int enc_proof(struct buf *b, const void *m) { return rpc_proof_encode(b, m); }

static void cli_on_connected(struct rpc_conn *c, int err)
{
	struct cli_conn *cc = container_of(c, struct cli_conn, c);
	struct rpc_client *cl = cc->slot->p->cl;

	if (err) {
		conn_close(c, err, LOG_LVL_INFO, "connect failed");
		return;
	}
	struct rpc_hello h = { RPC_PROTO_MAJOR, RPC_PROTO_MINOR, RPC_FEATURES_ALL,
			       (const uint8_t *)cl->cluster_id, (uint32_t)cl->cluster_id_len, { 0 } };
	if (auth_nonce(cc->cnonce)) {
		conn_close(c, -EIO, LOG_LVL_ERR, "no random bytes for a nonce");
		return;
	}
	memcpy(h.nonce, cc->cnonce, RPC_NONCE_LEN);
	send_msg(cc, RPC_MSG_HELLO, 1, enc_hello, &h);
}

static int hs_fail(struct cli_conn *cc, int err, const char *why)
{
	LOG_WARN("rpc", "handshake failed: peer=%s reason=%s", cc->c.peer, why);
	conn_close(&cc->c, err, LOG_LVL_INFO, why);
	return -1;
}

static int hs_frame(struct cli_conn *cc, const uint8_t *p, uint32_t len)
{
	struct rpc_conn *c = &cc->c;
	struct rpc_client *cl = cc->slot->p->cl;
	struct cslot *s = cc->slot;

	if (c->h.status) {
		struct rpc_error e;
		char why[160];
		int st = c->h.status;
		if (st >= 0 || st < -4095)
			st = -CFS_EPROTO;
		if (rpc_error_decode(p, len, &e))
			e.text_len = 0;
		snprintf(why, sizeof(why), "server refused: %s: %.*s", cfs_errname(st),
			 (int)(e.text_len > 100 ? 100 : e.text_len), e.text_len ? (const char *)e.text : "");
		return hs_fail(cc, st, why);
	}
	if (cc->hs_step == 0) {
		struct rpc_challenge ch;
		if (c->h.type != RPC_MSG_CHALLENGE || rpc_challenge_decode(p, len, &ch))
			return hs_fail(cc, -CFS_EPROTO, "bad CHALLENGE");
		if (ch.major != RPC_PROTO_MAJOR)
			return hs_fail(cc, -CFS_EVERSION, "server speaks another protocol major");
		memcpy(cc->snonce, ch.nonce, RPC_NONCE_LEN);
		struct rpc_proof pr;
		if (auth_proof(cl->secret, cl->o.secret_len, AUTH_ROLE_CLIENT, cl->cluster_id,
			       cl->cluster_id_len, cc->cnonce, cc->snonce, pr.mac))
			return hs_fail(cc, -EIO, "cannot compute proof");
		cc->hs_step = 1;
		return send_msg(cc, RPC_MSG_AUTH, 2, enc_proof, &pr);
	}
	struct rpc_proof pr;
	if (c->h.type != RPC_MSG_AUTH_OK || rpc_proof_decode(p, len, &pr))
		return hs_fail(cc, -CFS_EPROTO, "bad AUTH_OK");
	if (auth_verify(cl->secret, cl->o.secret_len, AUTH_ROLE_SERVER, cl->cluster_id,
			cl->cluster_id_len, cc->cnonce, cc->snonce, pr.mac))
		return hs_fail(cc, -CFS_EAUTH, "server failed to prove the cluster secret");
	cc->hs_step = 2;
	c->lim.max_payload = cl->o.max_payload;
	c->lim.max_bulk = cl->o.max_bulk;
	loop_timer_cancel(c->loop, &c->timer);
	s->backoff_ms = 0;
	s->next_try = 0;
	LOG_DEBUG("rpc", "connected: peer=%s", c->peer);
	/* The wait list is queued before callers may send directly, so it
	 * keeps its place ahead of them. */
	struct pend *refused = NULL;
	pthread_mutex_lock(&s->mu);
	c->state = CONN_READY;
	while (s->wait_head) {
		struct pend *w = s->wait_head;
		s->wait_head = w->next;
		if (!s->wait_head)
			s->wait_tail = NULL;
		s->nwait--;
		if (conn_issue_locked(cc, w)) {
			w->next = refused;
			refused = w;
		}
	}
	s->ready = cc;
	pthread_mutex_unlock(&s->mu);
	while (refused) {
		struct pend *w = refused;
		refused = w->next;
		pend_finish(w, -CFS_EUNAVAIL, NULL, 0, 0);
	}
	sweep_start(s);
	return 0;
}

static int cli_on_header(struct rpc_conn *c, const struct frame_hdr *h)
{
	struct cli_conn *cc = container_of(c, struct cli_conn, c);

	if (!(h->flags & FRAME_F_RESPONSE)) {
		conn_bad_input(c, -CFS_EPROTO, "request sent to a client");
		return -1;
	}
	cc->cur = NULL;
	cc->cur_status = 0;
	if (c->state != CONN_READY)
		return 0;
	uint32_t idx = (uint32_t)h->req_id;
	pthread_mutex_lock(&cc->slot->mu);
	struct pend *p = idx < cc->cap ? cc->tab[idx] : NULL;
	if (p && p->id != h->req_id)
		p = NULL;
	/* A frame the loop wrote whole may not have had its done() yet. */
	int unsent = p && p->where != PEND_SENT && p->out.off < rpc_out_len(&p->out);
	pthread_mutex_unlock(&cc->slot->mu);
	if (unsent) {
		conn_bad_input(c, -CFS_EPROTO, "reply before its request was written");
		return -1;
	}
	cc->cur = p;
	if (p && h->bulk_len && (!p->resp_bulk || h->bulk_len > p->resp_cap))
		cc->cur_status = -EMSGSIZE;
	return 0;
}

static int cli_on_payload(struct rpc_conn *c, const uint8_t *p, uint32_t len)
{
	struct cli_conn *cc = container_of(c, struct cli_conn, c);
	if (cc->cur && !cc->cur_status && c->h.bulk_len) {
		c->dest = cc->cur->resp_bulk;
		c->dest_iov = cc->cur->resp_iov;
		c->dest_niov = cc->cur->resp_niov;
	}
	return 0;
}

static int cli_on_frame(struct rpc_conn *c, const uint8_t *p, uint32_t len, int bulk_status)
{
	struct cli_conn *cc = container_of(c, struct cli_conn, c);

	if (c->state != CONN_READY)
		return hs_frame(cc, p, len);
	struct pend *pd = cc->cur;
	cc->cur = NULL;
	if (!pd)
		return 0; /* reply to a request that already timed out */
	int st = cc->cur_status ? cc->cur_status : bulk_status ? bulk_status : c->h.status;
	/* The server closes a connection after answering -CFS_EPROTO or
	 * -CFS_EBADMSG_TYPE; closing now sends the caller's next request over
	 * a fresh one. No direct send may use it from the moment done() runs. */
	int doomed = c->h.status == -CFS_EPROTO || c->h.status == -CFS_EBADMSG_TYPE;
	if (doomed) {
		pthread_mutex_lock(&cc->slot->mu);
		if (cc->slot->ready == cc)
			cc->slot->ready = NULL;
		pthread_mutex_unlock(&cc->slot->mu);
	}
	if (loop_in_thread(c->loop))
		pend_finish(pd, st, p, len, cc->cur_status ? 0 : c->h.bulk_len);
	else
		pend_finish_offloop(pd, st, p, len, cc->cur_status ? 0 : c->h.bulk_len);
	if (doomed)
		conn_close(c, -CFS_ECLOSED, LOG_LVL_INFO, "server reported a malformed request");
	return c->state == CONN_CLOSED || c->rx_defer ? -CFS_ECLOSED : 0;
}

static void cli_on_close(struct rpc_conn *c, int err)
{
	struct cli_conn *cc = container_of(c, struct cli_conn, c);
	struct cslot *s = cc->slot;
	int was_ready = c->state == CONN_CLOSED && cc->hs_step == 2;

	/* Detach first, so requests that done() callbacks issue below go to a
	 * new connection (after the backoff) rather than to this dead one. */
	cc->cur = NULL;
	if (s->conn == cc)
		s->conn = NULL;
	pthread_mutex_lock(&s->mu);
	if (s->ready == cc)
		s->ready = NULL;
	pthread_mutex_unlock(&s->mu);
	if (!was_ready) {
		back_off(s);
		s->next_try = clock_mono_ns() + (uint64_t)s->backoff_ms * 1000000u;
	}
	fail_wait(s, err);
	for (uint32_t i = 0; i < cc->cap; i++) {
		/* No caller adds to a closed connection's table. */
		pthread_mutex_lock(&s->mu);
		struct pend *p = cc->tab[i];
		pthread_mutex_unlock(&s->mu);
		if (p)
			pend_finish(p, p->timed_out ? -CFS_ETIMEDOUT : -CFS_ECLOSED, NULL, 0, 0);
	}
}

static void cli_on_drain(struct rpc_conn *c) {}

/* Slot mutex (*omu) held: requests in flight wait for replies. */
static int cli_rx_expecting(struct rpc_conn *c)
{
	struct cli_conn *cc = container_of(c, struct cli_conn, c);
	return cc->nfree < cc->cap;
}

static void lw_remove(struct cslot *s, struct sync_call *w)
{
	if (!w->listed)
		return;
	if (w->lw_prev)
		w->lw_prev->lw_next = w->lw_next;
	else
		s->lw_head = w->lw_next;
	if (w->lw_next)
		w->lw_next->lw_prev = w->lw_prev;
	w->listed = 0;
}

static void lw_push(struct cslot *s, struct sync_call *w)
{
	w->lw_prev = NULL;
	w->lw_next = s->lw_head;
	if (s->lw_head)
		s->lw_head->lw_prev = w;
	s->lw_head = w;
	w->listed = 1;
}

/* Slot mutex and rx_mu held (conn_rx_release), replies expected: passes
 * the receive side to a blocked caller still waiting for its reply
 * (LEADERS). *ARG gets its futex word when it sleeps; the releasing
 * thread wakes it after unlocking. */
static int cli_rx_pass(struct rpc_conn *c, void *arg)
{
	struct cli_conn *cc = container_of(c, struct cli_conn, c);
	struct cslot *s = cc->slot;
	if (!arg || s->ready != cc)
		return 0;
	struct sync_call *w = s->lw_head;
	while (w && (atomic_load_explicit(&w->state, memory_order_acquire) & SC_DONE))
		w = w->lw_next;
	if (!w)
		return 0;
	lw_remove(s, w);
	w->lead_cc = cc;
	atomic_fetch_add_explicit(&s->p->cl->ctr.rx_passes, 1, memory_order_relaxed);
	uint32_t old = atomic_fetch_or_explicit(&w->state, SC_LEAD, memory_order_acq_rel);
	*(_Atomic uint32_t **)arg = old & SC_SLEEPING ? &w->state : NULL;
	return 1;
}

static void cli_on_free(struct rpc_conn *c)
{
	struct cli_conn *cc = container_of(c, struct cli_conn, c);
	conn_fini(c);
	free(cc->tab);
	free(cc->freeidx);
	free(cc);
}

static const struct conn_ops cli_ops = {
	.on_connected = cli_on_connected,
	.on_header = cli_on_header,
	.on_payload = cli_on_payload,
	.on_frame = cli_on_frame,
	.on_close = cli_on_close,
	.on_drain = cli_on_drain,
	.on_free = cli_on_free,
	.rx_expecting = cli_rx_expecting,
	.rx_pass = cli_rx_pass,
};

static void slot_retry(struct loop_timer *t)
{
	struct cslot *s = t->arg;
	if (!s->conn && s->wait_head)
		slot_connect(s);
}

static void slot_connect(struct cslot *s)
{
	struct rpc_client *cl = s->p->cl;
	struct loop *l = s->lp->l;
	uint64_t now = clock_mono_ns();

	if (now < s->next_try) {
		if (!loop_timer_armed(&s->retry))
			loop_timer_arm(l, &s->retry, s->next_try);
		return;
	}
	struct xport *x = NULL;
	int rc = xport_connect_prefer_local(&s->p->addr, !cl->o.no_local_socket, &x);
	if (rc && rc != -EINPROGRESS) {
		LOG_INFO("rpc", "connect failed: peer=%s err=%s", s->p->name, cfs_errname(rc));
		back_off(s);
		s->next_try = now + (uint64_t)s->backoff_ms * 1000000u;
		fail_wait(s, rc);
		return;
	}
	atomic_fetch_add_explicit(&cl->ctr.accepted, 1, memory_order_relaxed);
	if (x->ops == &xport_unix)
		atomic_fetch_add_explicit(&cl->ctr.accepted_local, 1, memory_order_relaxed);
	struct cli_conn *cc = xcalloc(1, sizeof(*cc));
	cc->slot = s;
	cc->cap = cl->o.max_inflight;
	cc->tab = xcalloc(cc->cap, sizeof(*cc->tab));
	cc->freeidx = xmalloc(cc->cap * sizeof(*cc->freeidx));
	for (uint32_t i = 0; i < cc->cap; i++)
		cc->freeidx[i] = cc->cap - 1 - i;
	cc->nfree = cc->cap;
	rc = conn_init(&cc->c, l, x, rc ? CONN_CONNECTING : CONN_HANDSHAKE, &cli_ops, &cl->ctr,
		       s->p->name, &s->mu);
	if (rc) {
		free(cc->tab);
		free(cc->freeidx);
		free(cc);
		fail_wait(s, rc);
		return;
	}
	s->conn = cc;
	loop_timer_arm(l, &cc->c.timer, now + (uint64_t)cl->o.handshake_ms * 1000000u);
	if (cc->c.state == CONN_HANDSHAKE)
		cli_on_connected(&cc->c, 0);
}

/* ---- public API ---- */

int rpc_client_new(const struct rpc_opts *opts, struct rpc_client **out)
{
	struct rpc_opts o;
	if (rpc_opts_init(&o, opts))
		return -EINVAL;
	struct rpc_client *cl = xcalloc(1, sizeof(*cl));
	cl->o = o;
	memcpy(cl->secret, opts->secret, opts->secret_len);
	cl->cluster_id_len = strlen(opts->cluster_id);
	memcpy(cl->cluster_id, opts->cluster_id, cl->cluster_id_len);
	cl->o.secret = cl->secret;
	cl->o.cluster_id = cl->cluster_id;
	const char *e = getenv("CFS_RPC_LEADERS");
	cl->leaders = e && *e && strcmp(e, "0");
	/* With LEADERS a caller's own send saves the loop's wake-up, and
	 * a caller reads the replies: the loop's batching no longer pays
	 * (`chainfs bench rpc --rows sync`, 4 threads: direct sends bounded
	 * 3.5-3.7 context switches per call, unbounded 2.1-2.2). */
	cl->direct_max = cl->leaders ? UINT32_MAX : DIRECT_MAX_INFLIGHT;
	/* CFS_RPC_DIRECT_MAX=N (1..4096; experiment, unset by default): a
	 * caller sends its request itself while fewer than N are in flight
	 * on the connection (DIRECT_MAX_INFLIGHT otherwise); docs/rpc.md
	 * "Threads and wake-ups" has what it measured. */
	const char *dm = getenv("CFS_RPC_DIRECT_MAX");
	if (dm && !cl->leaders) {
		long v = strtol(dm, NULL, 10);
		if (v >= 1 && v <= 4096)
			cl->direct_max = (uint32_t)v;
	}
	/* CFS_RPC_DIRECT_IDLE=0 (for A/B only): no direct sends past
	 * direct_max while the slot's loop is idle (DIRECT SEND). */
	const char *di = getenv("CFS_RPC_DIRECT_IDLE");
	cl->direct_idle = !(di && !strcmp(di, "0"));
	pthread_mutex_init(&cl->mu, NULL);
	cl->loops = xcalloc((size_t)o.nthreads, sizeof(*cl->loops));
	int rc = 0;
	for (int i = 0; i < o.nthreads && !rc; i++) {
		cl->loops[i].cl = cl;
		rc = loop_new(&cl->loops[i].l);
		if (!rc) {
			rc = loop_thread_start(cl->loops[i].l, "rpc-cli");
			if (rc) {
				loop_free(cl->loops[i].l);
				cl->loops[i].l = NULL;
			}
		}
		if (!rc)
			cl->nloops = i + 1;
	}
	if (rc) {
		rpc_client_free(cl);
		return rc;
	}
	*out = cl;
	return 0;
}

static void cli_stop_on_loop(struct loop_msg *m)
{
	struct cli_loop *lp = m->arg;
	struct rpc_client *cl = lp->cl;
	/* Peers are only ever prepended, so the chain from a snapshot of the
	 * head is immutable; walking it unlocked lets done() callbacks run
	 * without cl->mu held. */
	pthread_mutex_lock(&cl->mu);
	struct rpc_peer *head = cl->peers;
	pthread_mutex_unlock(&cl->mu);
	for (struct rpc_peer *p = head; p; p = p->next) {
		for (int i = 0; i < p->nslots; i++) {
			struct cslot *s = &p->slots[i];
			if (s->lp != lp)
				continue;
			loop_timer_cancel(lp->l, &s->retry);
			loop_timer_cancel(lp->l, &s->sweep);
			pthread_mutex_lock(&s->mu);
			s->sweep_on = 0;
			pthread_mutex_unlock(&s->mu);
			if (s->conn)
				conn_close(&s->conn->c, -CFS_ECLOSED, LOG_LVL_DEBUG, "client shutting down");
			fail_wait(s, -CFS_ECLOSED);
			reap_drain(s);
		}
	}
}

void rpc_client_stats(const struct rpc_client *c, struct rpc_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->accepted = atomic_load(&c->ctr.accepted);
	out->accepted_local = atomic_load(&c->ctr.accepted_local);
	out->bad_input = atomic_load(&c->ctr.bad_input);
	out->replies_by_caller = atomic_load(&c->ctr.replies_by_caller);
	out->rx_passes = atomic_load(&c->ctr.rx_passes);
}

void rpc_client_free(struct rpc_client *cl)
{
	if (!cl)
		return;
	atomic_store_explicit(&cl->closing, true, memory_order_release);
	for (int i = 0; i < cl->nloops; i++) {
		struct cli_loop *lp = &cl->loops[i];
		lp->stop_msg.fn = cli_stop_on_loop;
		lp->stop_msg.arg = lp;
		loop_post(lp->l, &lp->stop_msg);
		loop_thread_stop(lp->l);
		loop_free(lp->l);
	}
	while (cl->peers) {
		struct rpc_peer *p = cl->peers;
		cl->peers = p->next;
		for (int i = 0; i < p->nslots; i++)
			pthread_mutex_destroy(&p->slots[i].mu);
		free(p->slots);
		free(p);
	}
	free(cl->loops);
	pthread_mutex_destroy(&cl->mu);
	OPENSSL_cleanse(cl->secret, sizeof(cl->secret));
	free(cl);
}

int rpc_client_peer(struct rpc_client *cl, const char *addr, struct rpc_peer **out,
		    char *err, size_t errlen)
{
	struct sockaddr_in sa;
	int rc = xport_addr_parse(addr, &sa, err, errlen);
	if (rc)
		return rc;
	pthread_mutex_lock(&cl->mu);
	struct rpc_peer *p;
	for (p = cl->peers; p; p = p->next)
		if (p->addr.sin_addr.s_addr == sa.sin_addr.s_addr && p->addr.sin_port == sa.sin_port)
			break;
	if (!p) {
		p = xcalloc(1, sizeof(*p));
		p->cl = cl;
		p->addr = sa;
		xport_addr_str(&sa, p->name);
		p->nslots = cl->o.conns_per_peer;
		p->slots = xcalloc((size_t)p->nslots, sizeof(*p->slots));
		for (int i = 0; i < p->nslots; i++) {
			struct cslot *s = &p->slots[i];
			s->p = p;
			/* Spread a peer's slots, and successive peers, over the loops. */
			s->lp = &cl->loops[cl->next_loop++ % (unsigned)cl->nloops];
			s->retry = (struct loop_timer)LOOP_TIMER_INIT(slot_retry, s);
			s->sweep = (struct loop_timer)LOOP_TIMER_INIT(slot_sweep, s);
			s->reap_msg.fn = reap_msg_fn;
			s->reap_msg.arg = s;
			pthread_mutex_init(&s->mu, NULL);
		}
		p->next = cl->peers;
		cl->peers = p;
	}
	pthread_mutex_unlock(&cl->mu);
	*out = p;
	return 0;
}

/* Sends CALL (see rpc_call_async). With OWN (a blocking call), *OWN gets
 * the connection when the calling thread sent the request itself and took
 * over the connection's receive side to read the reply (OWN REPLIES);
 * it must then conn_rx_release it. */
static int submit(struct rpc_peer *peer, const struct rpc_call *call, int oneway,
		  struct cli_conn **own, struct cslot **slot)
{
	struct rpc_client *cl = peer->cl;

	/* Refusing here, not through done(), keeps a callback that retries on
	 * -CFS_ECLOSED from recursing while the client shuts down. */
	if (atomic_load_explicit(&cl->closing, memory_order_acquire))
		return -CFS_ECLOSED;
	if (call->payload_len > cl->o.max_payload || call->bulk_len > cl->o.max_bulk ||
	    (call->payload_len && !call->payload) || (call->bulk_len && !call->bulk) ||
	    (!oneway && !call->done))
		return -EINVAL;
	struct pend *p = malloc(sizeof(*p) + call->payload_len);
	if (!p)
		return -ENOMEM;
	memset(p, 0, sizeof(*p));
	if (call->payload_len)
		memcpy(p->payload, call->payload, call->payload_len);
	p->plen = call->payload_len;
	p->type = call->type;
	p->flags = call->flags;
	p->oneway = oneway;
	p->bulk = call->bulk;
	p->blen = call->bulk_len;
	if (p->blen && (p->flags & RPC_CALL_BULK_CRC))
		p->bulk_crc = crc32c(0, p->bulk, p->blen);
	p->resp_bulk = call->resp_bulk;
	p->resp_cap = call->resp_bulk_cap;
	if (call->resp_niov > 0) {
		p->resp_iov = call->resp_iov;
		p->resp_niov = call->resp_niov;
		p->resp_bulk = call->resp_iov[0].iov_base;
		p->resp_cap = 0;
		for (int i = 0; i < call->resp_niov; i++)
			p->resp_cap += call->resp_iov[i].iov_len;
	}
	p->done = oneway ? NULL : call->done;
	p->arg = call->arg;
	p->send_fd = call->send_fd;
	uint32_t tmo = call->timeout_ms ? call->timeout_ms : cl->o.timeout_ms;
	p->deadline = clock_mono_ns() + (uint64_t)tmo * 1000000u;
	p->timer = (struct loop_timer)LOOP_TIMER_INIT(pend_timeout, p);
	unsigned k = atomic_fetch_add_explicit(&peer->rr, 1, memory_order_relaxed);
	struct cslot *rs = &peer->slots[k % (unsigned)peer->nslots];
	p->slot = rs;
	if (slot)
		*slot = rs;
	struct loop *l = rs->lp->l;
	if (loop_in_thread(l)) {
		pend_start(p);
		return 0;
	}
	/* With idle_conn_first, first the slots in order whose connection has
	 * nothing in flight; then (or else) the round-robin one as always. */
	int nidle = cl->o.idle_conn_first ? peer->nslots : 0;
	for (int t = 0; t <= nidle; t++) {
		struct cslot *s = t < nidle ? &peer->slots[t] : rs;
		uint32_t max = t < nidle ? 1 : cl->direct_max;
		/* Blocking callers only: a burst of async calls from one
		 * thread still reaches the server in the loop's one writev. */
		if (t >= nidle && own && cl->direct_idle && loop_idle(s->lp->l))
			max = UINT32_MAX;
		/* trylock: when another thread is sending (or the loop is
		 * reading a reply), the loop message path batches this
		 * request with others in one writev instead of making the
		 * threads queue on the lock. */
		if (atomic_load(&s->posted) || pthread_mutex_trylock(&s->mu))
			continue;
		struct cli_conn *cc = s->ready;
		p->slot = s;
		if (cc && cc->c.state == CONN_READY && s->sweep_on && !cc->c.oq_head &&
		    cc->cap - cc->nfree < max && !issue_prep_locked(cc, p)) {
			if (slot)
				*slot = s;
			/* Direct send (see DIRECT SEND). */
			s->direct_sent++;
			if (conn_send_direct_locked(&cc->c, &p->out)) {
				if (oneway) {
					pthread_mutex_unlock(&s->mu);
					free(p);
					return 0;
				}
				p->where = PEND_SENT;
			}
			nt_push(s, p);
			if (!oneway) {
				if (own && conn_rx_claim_locked(&cc->c))
					*own = cc;
				else
					conn_rx_arm_locked(&cc->c);
			}
			pthread_mutex_unlock(&s->mu);
			return 0;
		}
		p->slot = rs;
		pthread_mutex_unlock(&s->mu);
	}
	atomic_fetch_add(&rs->posted, 1);
	p->msg.fn = pend_start_msg;
	p->msg.arg = p;
	loop_post(l, &p->msg);
	return 0;
}

int rpc_call_async(struct rpc_peer *peer, const struct rpc_call *call)
{
	return submit(peer, call, 0, NULL, NULL);
}

int rpc_notify(struct rpc_peer *peer, uint16_t type, const void *payload, uint32_t len)
{
	struct rpc_call c = { .type = type, .payload = payload, .payload_len = len };
	return submit(peer, &c, 1, NULL, NULL);
}

static void sync_done(void *arg, const struct rpc_result *res)
{
	struct sync_call *sc = arg;
	sc->status = res->status;
	sc->bulk_len = res->bulk_len;
	if (sc->resp) {
		buf_reset(sc->resp);
		if (res->payload_len && buf_append(sc->resp, res->payload, res->payload_len) &&
		    !sc->status)
			sc->status = -ENOMEM;
	}
	/* SC may be gone once SC_DONE is visible (the caller returns): only
	 * its address is used after the exchange, and a wake of a futex word
	 * that was reused is a spurious wake-up its new waiter tolerates. */
	if (atomic_fetch_or_explicit(&sc->state, SC_DONE, memory_order_acq_rel) & SC_SLEEPING)
		syscall(SYS_futex, &sc->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static int sync_is_done(struct sync_call *sc)
{
	return atomic_load_explicit(&sc->state, memory_order_acquire) & SC_DONE;
}

/* Sleeps until SC's state has one of the bits in UNTIL (or a spurious
 * wake-up: the caller re-checks). */
static void sync_sleep(struct sync_call *sc, uint32_t until)
{
	uint32_t st = atomic_load_explicit(&sc->state, memory_order_acquire);
	if (st & until)
		return;
	if (!(st & SC_SLEEPING)) {
		if (!atomic_compare_exchange_strong_explicit(&sc->state, &st, st | SC_SLEEPING,
							     memory_order_acq_rel,
							     memory_order_acquire))
			return;
		st |= SC_SLEEPING;
	}
	/* EAGAIN (state moved on), EINTR and spurious wake-ups re-check. */
	syscall(SYS_futex, &sc->state, FUTEX_WAIT_PRIVATE, st, NULL, NULL, 0);
	atomic_fetch_and_explicit(&sc->state, ~(uint32_t)SC_SLEEPING, memory_order_acq_rel);
}

/* Sleeps until sync_done ran for SC. */
static void sync_wait(struct sync_call *sc)
{
	while (!sync_is_done(sc))
		sync_sleep(sc, SC_DONE);
}

/* The calling thread reads replies on CC (claimed by submit, or passed to
 * it) until its own arrived, the connection closed, or DEADLINE passed
 * (the loop's timer then completes the call), and gives the receive side
 * back: to a blocked caller when LEADERS is on and one waits, else to the
 * loop. */
static void read_own(struct cli_conn *cc, struct sync_call *sc, uint64_t deadline, int pass)
{
	while (!sync_is_done(sc)) {
		uint64_t now = clock_mono_ns();
		if (now >= deadline)
			break;
		uint64_t ms = (deadline - now + 999999) / 1000000;
		if (conn_rx_step(&cc->c, ms > OWN_POLL_MS ? OWN_POLL_MS : (int)ms))
			break;
	}
	_Atomic uint32_t *wake = NULL;
	if (conn_rx_release(&cc->c, pass ? &wake : NULL) && wake)
		syscall(SYS_futex, wake, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* LEADERS: a blocking caller whose reply has not come reads the
 * connection itself when nobody else does (the loop gives EPOLLIN up, as
 * for OWN REPLIES), completing what it reads; else it waits on S's list,
 * from where a reader letting go passes it the receive side (SC_LEAD).
 * The list and SC_LEAD change only under S's mutex, and a caller leaves
 * only after taking itself off the list under it, so a passed receive
 * side always reaches a live caller, which reads or passes it on. Past
 * its deadline a caller neither reads nor lists itself: it waits for the
 * loop's timer to fail the call. */
static void sync_wait_lead(struct sync_call *sc, struct cslot *s, uint64_t deadline)
{
	int listed_ever = 0;
	for (;;) {
		if (!listed_ever && sync_is_done(sc))
			return; /* never listed: nothing can be passed to it */
		struct cli_conn *cc = NULL;
		int live = clock_mono_ns() < deadline;
		pthread_mutex_lock(&s->mu);
		uint32_t st = atomic_load_explicit(&sc->state, memory_order_acquire);
		if (st & SC_LEAD) {
			atomic_fetch_and_explicit(&sc->state, ~(uint32_t)SC_LEAD, memory_order_acq_rel);
			cc = sc->lead_cc;
		} else if (st & SC_DONE) {
			lw_remove(s, sc);
			pthread_mutex_unlock(&s->mu);
			return;
		} else if (live && s->ready && conn_rx_claim_locked(&s->ready->c)) {
			cc = s->ready;
			lw_remove(s, sc);
		} else if (live && !sc->listed) {
			lw_push(s, sc);
			listed_ever = 1;
		} else if (!live) {
			lw_remove(s, sc);
		}
		pthread_mutex_unlock(&s->mu);
		if (cc)
			read_own(cc, sc, deadline, 1);
		else
			sync_sleep(sc, SC_DONE | SC_LEAD);
	}
}

int rpc_call(struct rpc_peer *peer, const struct rpc_call *call, struct buf *resp,
	     uint64_t *bulk_len)
{
	struct rpc_client *cl = peer->cl;
	for (int i = 0; i < cl->nloops; i++)
		if (loop_in_thread(cl->loops[i].l))
			return -EDEADLK;
	struct sync_call sc = { .state = 0, .resp = resp };
	struct rpc_call c = *call;
	c.done = sync_done;
	c.arg = &sc;
	uint32_t tmo = call->timeout_ms ? call->timeout_ms : cl->o.timeout_ms;
	uint64_t deadline = clock_mono_ns() + (uint64_t)tmo * 1000000u;
	struct cli_conn *own = NULL;
	struct cslot *s = NULL;
	int rc = submit(peer, &c, 0, &own, &s);
	if (!rc) {
		if (own)
			read_own(own, &sc, deadline, cl->leaders);
		if (cl->leaders)
			sync_wait_lead(&sc, s, deadline);
		else
			sync_wait(&sc);
		rc = sc.status;
		if (bulk_len)
			*bulk_len = sc.bulk_len;
	}
	return rc;
}
