/* rpc_server.c - the RPC server: accept, handshake, dispatch, replies.
 *
 * THREADS. N loops, each on its own thread. The listener lives on loop 0;
 * each accepted connection is handed, by message, to the next loop round
 * robin and stays there. A request (struct rpc_req) is created on that loop
 * and holds a reference on its connection until its reply has been written
 * or dropped, so a reply made on any thread, at any time before
 * rpc_server_free, finds valid memory: rpc_reply builds the frame on the
 * caller's thread and posts it to the loop, where it is queued, or dropped
 * if the connection closed meanwhile. A plain reply (no bulk callback, no
 * pooled bulk, not -CFS_EPROTO, not one-way) made on another thread while
 * the connection is open, reading and has nothing queued is written by
 * that thread itself under the connection's send lock (rpc_int.h): that
 * saves the loop's wake-up per reply of a worker pool. What it cannot
 * write at once is queued for the loop.
 *
 * HANDSHAKE (server side of rpc_proto.h):
 *   HS_HELLO --HELLO ok--> send CHALLENGE --> HS_AUTH --AUTH proof ok-->
 *   send AUTH_OK --> CONN_READY (limits raised to the configured maxima).
 * Any other frame, a wrong cluster id, major or proof is refused with an
 * error reply and a WARN line naming the peer and the reason; then the
 * connection closes. No handler runs before CONN_READY, and until then a
 * frame may carry at most 4 KiB of payload and no bulk.
 *
 * BULK. A request's bulk goes into memory the handler's bulk_dest names, or
 * else into a buffer from a small per-loop pool of recently freed blocks
 * (power-of-two sizes, at most 8 blocks and 64 MiB per loop), returned to
 * the pool when the request is released unless rpc_req_take_bulk took it.
 *
 * BACKPRESSURE. A connection stops reading while it has max_inflight
 * unreplied requests or max_outq queued reply bytes, and resumes when
 * replies drain; a client that never reads its replies therefore holds at
 * most that much server memory.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "common/xalloc.h"
#include "net/auth.h"
#include "net/rpc_int.h"
#include "net/rpc_proto.h"

/* How long a listen on a port in use is retried (rpc_server_start). */
#define RPC_BIND_RETRY_MS 5000

enum hs_step { HS_HELLO, HS_AUTH };

/* A worker writes its reply itself only while at most this many requests
 * of the connection are unreplied (its own included): with more, the loop
 * sends their replies in one writev (one wake-up of the client for many). */
#define DIRECT_MAX_UNREPLIED 1

struct srv_conn;

#define POOL_SLOTS 8
#define POOL_MAX_BYTES (64ull << 20)
#define POOL_MIN_BLOCK (64u << 10)

/* Recently freed bulk buffers of one loop, reused so a steady stream of
 * large requests does not pay mmap and page faults for every one. */
struct bulk_pool {
	void *blk[POOL_SLOTS];
	uint64_t cap[POOL_SLOTS];
	int n;
	uint64_t bytes;
};

struct srv_loop {
	struct loop *l;
	struct rpc_server *s;
	struct srv_conn *conns;  /* open connections, for shutdown; loop-owned */
	struct loop_msg stop_msg;
	bool stopped;            /* stop_on_loop ran; loop-owned */
	struct bulk_pool pool;   /* loop-owned */
};

/* A buffer of at least LEN bytes; *CAP gets its real size. NULL on ENOMEM. */
static void *pool_get(struct bulk_pool *bp, uint64_t len, uint64_t *cap)
{
	for (int i = 0; i < bp->n; i++) {
		if (bp->cap[i] >= len && bp->cap[i] / 2 < len) {
			void *b = bp->blk[i];
			*cap = bp->cap[i];
			bp->bytes -= bp->cap[i];
			bp->n--;
			bp->blk[i] = bp->blk[bp->n];
			bp->cap[i] = bp->cap[bp->n];
			return b;
		}
	}
	uint64_t c = POOL_MIN_BLOCK;
	while (c < len)
		c *= 2;
	*cap = c;
	return malloc(c);
}

static void pool_put(struct bulk_pool *bp, void *b, uint64_t cap)
{
	if (bp->n == POOL_SLOTS || bp->bytes + cap > POOL_MAX_BYTES) {
		free(b);
		return;
	}
	bp->blk[bp->n] = b;
	bp->cap[bp->n++] = cap;
	bp->bytes += cap;
}

static void pool_fini(struct bulk_pool *bp)
{
	while (bp->n)
		free(bp->blk[--bp->n]);
	bp->bytes = 0;
}

struct rpc_server {
	struct rpc_opts o;              /* limits with defaults applied */
	uint8_t secret[AUTH_SECRET_MAX];
	size_t secret_len;
	char cluster_id[RPC_CLUSTER_ID_MAX + 1];
	size_t cluster_id_len;
	struct rpc_handler tab[RPC_TYPE_MAX];
	int nloops;
	struct srv_loop *loops;
	int started;
	struct xport *lst;              /* listener, owned by loop 0 */
	struct loop_io lst_io;
	struct xport *lst_local;        /* same-host unix listener (transport.h) or
					   NULL; owned by loop 0 */
	struct loop_io lst_local_io;
	uint16_t port;
	atomic_uint next_loop;
	struct rpc_counters ctr;
};

struct srv_conn {
	struct rpc_conn c;
	struct srv_loop *sl;
	struct srv_conn *prev, *next; /* sl->conns */
	struct loop_msg adopt_msg;
	enum hs_step hs;
	uint8_t cnonce[RPC_NONCE_LEN];
	uint8_t snonce[RPC_NONCE_LEN];
	atomic_uint unreplied;        /* requests created and not yet replied */
	struct rpc_req *cur;          /* request being received */
	void *udata;                  /* rpc_req_set_conn_data */
	void (*udata_free)(void *);
};

struct rpc_req {
	struct rpc_out out;        /* the reply frame */
	struct loop_msg msg;       /* carries the reply to the loop */
	struct srv_conn *sc;
	struct frame_hdr h;        /* request header */
	const struct rpc_handler *hd;
	int handled;               /* the handler ran */
	uint8_t *bulk;             /* received bulk */
	uint64_t bulk_len;
	int bulk_owned;            /* bulk came from the loop's pool (malloc'ed) */
	uint64_t bulk_cap;         /* its allocated size */
	int auto_status;           /* nonzero: reply this without the handler */
	uint8_t *reply_payload;    /* owned */
	void (*bulk_done)(void *);
	void *bulk_done_arg;
	char peer[XPORT_ADDRSTRLEN];
	uint32_t plen;
	uint8_t payload[];
};

/* ---- requests ---- */

static void req_free(struct rpc_req *r)
{
	if (r->bulk_done)
		r->bulk_done(r->bulk_done_arg);
	struct srv_conn *sc = r->sc;
	if (r->bulk_owned)
		pool_put(&sc->sl->pool, r->bulk, r->bulk_cap);
	else if (r->bulk && !r->handled)
		r->hd->bulk_drop(r, r->bulk, r->hd->arg);
	free(r->reply_payload);
	free(r);
	conn_unref(&sc->c);
}

static void maybe_resume(struct srv_conn *sc)
{
	struct rpc_conn *c = &sc->c;
	struct rpc_server *s = sc->sl->s;
	/* Under the send lock, so a direct reply (which decrements unreplied
	 * under it, and only while reading is not paused) cannot slip between
	 * the check and the pause. */
	pthread_mutex_lock(c->omu);
	int pause = atomic_load(&sc->unreplied) >= s->o.max_inflight || c->outq_bytes >= s->o.max_outq;
	int change = pause != c->read_paused && c->state != CONN_CLOSED;
	if (change)
		c->read_paused = pause;
	pthread_mutex_unlock(c->omu);
	if (change)
		conn_update_events(c);
}

static void reply_written(struct rpc_out *o, int status)
{
	req_free(container_of(o, struct rpc_req, out));
}

static void reply_on_loop(struct loop_msg *m)
{
	struct rpc_req *r = m->arg;
	struct srv_conn *sc = r->sc;
	int proto = (int32_t)wire_load_u32(r->out.hdr + 20) == -CFS_EPROTO;

	atomic_fetch_sub(&sc->unreplied, 1);
	if (sc->c.state == CONN_CLOSED || (r->h.flags & FRAME_F_ONEWAY)) {
		req_free(r);
		maybe_resume(sc);
		return;
	}
	conn_send(&sc->c, &r->out);
	if (proto) {
		atomic_fetch_add_explicit(&sc->c.ctr->bad_input, 1, memory_order_relaxed);
		LOG_WARN("rpc", "bad input: peer=%s type=%s reason=handler could not decode",
			 sc->c.peer, rpc_msg_name(r->h.type));
		pthread_mutex_lock(sc->c.omu);
		sc->c.closing = 1;
		pthread_mutex_unlock(sc->c.omu);
		sc->c.close_err = -CFS_EPROTO;
		loop_timer_arm(sc->c.loop, &sc->c.timer, clock_mono_ns() + 1000000000ull);
		conn_update_events(&sc->c);
	}
	maybe_resume(sc);
}

uint16_t rpc_req_type(const struct rpc_req *req) { return req->h.type; }
int rpc_req_oneway(const struct rpc_req *req) { return !!(req->h.flags & FRAME_F_ONEWAY); }
const char *rpc_req_peer(const struct rpc_req *req) { return req->peer; }
struct loop *rpc_req_loop(const struct rpc_req *req) { return req->sc->c.loop; }

const uint8_t *rpc_req_payload(const struct rpc_req *req, uint32_t *len)
{
	*len = req->plen;
	return req->payload;
}

const uint8_t *rpc_req_bulk(const struct rpc_req *req, uint64_t *len)
{
	*len = req->bulk ? req->bulk_len : 0;
	return req->bulk;
}

void *rpc_req_take_bulk(struct rpc_req *req, uint64_t *len)
{
	if (!req->bulk_owned) {
		*len = 0;
		return NULL;
	}
	void *b = req->bulk;
	*len = req->bulk_len;
	req->bulk = NULL;
	req->bulk_owned = 0;
	return b;
}

void rpc_reply_bulk(struct rpc_req *req, int status, const void *payload, uint32_t len,
		    const void *bulk, uint64_t bulk_len, void (*done)(void *), void *done_arg)
{
	uint16_t flags = FRAME_F_RESPONSE;
	uint32_t crc = 0;

	req->bulk_done = done;
	req->bulk_done_arg = done_arg;
	req->out.payload = NULL;
	req->out.plen = 0;
	if (len) {
		req->reply_payload = malloc(len);
		if (req->reply_payload) {
			memcpy(req->reply_payload, payload, len);
			req->out.payload = req->reply_payload;
			req->out.plen = len;
		} else if (!status) {
			status = -ENOMEM;
		}
	}
	req->out.bulk = bulk;
	req->out.blen = bulk ? bulk_len : 0;
	if (req->out.blen && (req->h.flags & FRAME_F_BULK_CRC)) {
		flags |= FRAME_F_BULK_CRC;
		crc = crc32c(0, bulk, bulk_len);
	}
	req->out.done = reply_written;
	conn_out_hdr(&req->out, req->h.type, flags, req->h.req_id, status, crc);
	req->msg.fn = reply_on_loop;
	req->msg.arg = req;
	struct srv_conn *sc = req->sc;
	struct rpc_conn *c = &sc->c;
	if (loop_in_thread(c->loop)) {
		reply_on_loop(&req->msg);
		return;
	}
	/* trylock: a busy lock means the loop or another thread is writing;
	 * the loop then batches this reply with the others. */
	if (!done && !req->bulk_owned && !(req->h.flags & FRAME_F_ONEWAY) &&
	    status != -CFS_EPROTO && atomic_load(&sc->unreplied) <= DIRECT_MAX_UNREPLIED &&
	    !pthread_mutex_trylock(c->omu)) {
		if (c->state == CONN_READY && !c->closing && !c->read_paused && !c->oq_head) {
			atomic_fetch_sub(&sc->unreplied, 1);
			int whole = conn_send_direct_locked(c, &req->out);
			pthread_mutex_unlock(c->omu);
			if (whole)
				req_free(req); /* no pooled bulk, no callback: any thread */
			return;
		}
		pthread_mutex_unlock(c->omu);
	}
	loop_post(c->loop, &req->msg);
}

void rpc_reply(struct rpc_req *req, int status, const void *payload, uint32_t len)
{
	rpc_reply_bulk(req, status, payload, len, NULL, 0, NULL, NULL);
}

void rpc_reply_error(struct rpc_req *req, int status, const char *text)
{
	struct buf b = BUF_INIT;
	struct rpc_error e = { (const uint8_t *)text, (uint32_t)strlen(text) };
	if (rpc_error_encode(&b, &e))
		buf_reset(&b);
	rpc_reply(req, status, b.data, (uint32_t)b.len);
	buf_fini(&b);
}

/* ---- handshake ---- */

static int hs_refuse(struct srv_conn *sc, int status, const char *why)
{
	struct rpc_conn *c = &sc->c;
	atomic_fetch_add_explicit(&c->ctr->auth_fail, 1, memory_order_relaxed);
	LOG_WARN("rpc", "auth refused: peer=%s reason=%s", c->peer, why);
	conn_refuse(c, c->h.req_id, c->h.type, status, why);
	return -1;
}

static int hs_frame(struct srv_conn *sc, const uint8_t *p, uint32_t len)
{
	struct rpc_conn *c = &sc->c;
	struct rpc_server *s = sc->sl->s;
	struct buf b = BUF_INIT;
	int rc;

	if (sc->hs == HS_HELLO) {
		struct rpc_hello m;
		if (c->h.type != RPC_MSG_HELLO)
			return hs_refuse(sc, -CFS_EAUTH, "first message is not HELLO");
		if (rpc_hello_decode(p, len, &m))
			return hs_refuse(sc, -CFS_EPROTO, "undecodable HELLO");
		if (m.major != RPC_PROTO_MAJOR) {
			char why[64];
			snprintf(why, sizeof(why), "protocol major %u, server speaks %u", m.major,
				 RPC_PROTO_MAJOR);
			return hs_refuse(sc, -CFS_EVERSION, why);
		}
		if (m.cluster_id_len != s->cluster_id_len ||
		    CRYPTO_memcmp(m.cluster_id, s->cluster_id, s->cluster_id_len))
			return hs_refuse(sc, -CFS_EAUTH, "cluster id mismatch");
		memcpy(sc->cnonce, m.nonce, RPC_NONCE_LEN);
		struct rpc_challenge ch = { RPC_PROTO_MAJOR, RPC_PROTO_MINOR,
					    m.features & RPC_FEATURES_ALL, { 0 } };
		if (auth_nonce(sc->snonce))
			return hs_refuse(sc, -EIO, "no random bytes for a nonce");
		memcpy(ch.nonce, sc->snonce, RPC_NONCE_LEN);
		rc = rpc_challenge_encode(&b, &ch);
		if (!rc)
			rc = conn_send_copy(c, RPC_MSG_CHALLENGE, FRAME_F_RESPONSE, c->h.req_id, 0,
					    b.data, (uint32_t)b.len);
		buf_fini(&b);
		if (rc)
			conn_close(c, rc, LOG_LVL_WARN, "no memory in handshake");
		sc->hs = HS_AUTH;
		return rc;
	}
	struct rpc_proof pr;
	if (c->h.type != RPC_MSG_AUTH)
		return hs_refuse(sc, -CFS_EAUTH, "second message is not AUTH");
	if (rpc_proof_decode(p, len, &pr))
		return hs_refuse(sc, -CFS_EPROTO, "undecodable AUTH");
	rc = auth_verify(s->secret, s->secret_len, AUTH_ROLE_CLIENT, s->cluster_id,
			 s->cluster_id_len, sc->cnonce, sc->snonce, pr.mac);
	if (rc)
		return hs_refuse(sc, -CFS_EAUTH, rc == -CFS_EAUTH ? "wrong secret (bad proof)"
								   : "proof check failed");
	if (auth_proof(s->secret, s->secret_len, AUTH_ROLE_SERVER, s->cluster_id,
		       s->cluster_id_len, sc->cnonce, sc->snonce, pr.mac))
		return hs_refuse(sc, -EIO, "cannot compute server proof");
	rc = rpc_proof_encode(&b, &pr);
	if (!rc)
		rc = conn_send_copy(c, RPC_MSG_AUTH_OK, FRAME_F_RESPONSE, c->h.req_id, 0, b.data,
				    (uint32_t)b.len);
	buf_fini(&b);
	if (rc) {
		conn_close(c, rc, LOG_LVL_WARN, "no memory in handshake");
		return rc;
	}
	c->state = CONN_READY;
	c->lim.max_payload = s->o.max_payload;
	c->lim.max_bulk = s->o.max_bulk;
	loop_timer_cancel(c->loop, &c->timer);
	LOG_DEBUG("rpc", "authenticated: peer=%s", c->peer);
	return 0;
}

/* ---- frames ---- */

static int srv_on_header(struct rpc_conn *c, const struct frame_hdr *h)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, c);
	struct rpc_server *s = sc->sl->s;

	if (h->flags & FRAME_F_RESPONSE) {
		conn_bad_input(c, -CFS_EPROTO, "response sent to a server");
		return -1;
	}
	if (c->state != CONN_READY)
		return 0;
	if (h->type >= RPC_TYPE_MAX || !s->tab[h->type].fn) {
		/* Answer first so the caller gets a precise error, then close:
		 * the rest of the frame is never read. */
		atomic_fetch_add_explicit(&c->ctr->bad_input, 1, memory_order_relaxed);
		LOG_WARN("rpc", "bad input: peer=%s type=%s reason=unknown message type", c->peer,
			 rpc_msg_name(h->type));
		conn_refuse(c, h->req_id, h->type, -CFS_EBADMSG_TYPE, "unknown message type");
		return -1;
	}
	return 0;
}

static int srv_on_payload(struct rpc_conn *c, const uint8_t *p, uint32_t len)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, c);
	struct rpc_server *s = sc->sl->s;

	if (c->state != CONN_READY)
		return 0;
	struct rpc_req *r = calloc(1, sizeof(*r) + len);
	if (!r) {
		conn_close(c, -ENOMEM, LOG_LVL_WARN, "no memory for a request");
		return -ENOMEM;
	}
	memcpy(r->payload, p, len);
	r->plen = len;
	r->h = c->h;
	r->sc = sc;
	r->hd = &s->tab[c->h.type];
	memcpy(r->peer, c->peer, sizeof(r->peer));
	conn_ref(c);
	atomic_fetch_add(&sc->unreplied, 1);
	sc->cur = r;
	if (c->h.bulk_len) {
		r->bulk_len = c->h.bulk_len;
		if (r->hd->bulk_dest)
			r->bulk = r->hd->bulk_dest(r, r->bulk_len, r->hd->arg);
		if (!r->bulk) {
			r->bulk = pool_get(&sc->sl->pool, r->bulk_len, &r->bulk_cap);
			r->bulk_owned = r->bulk != NULL;
		}
		if (!r->bulk)
			r->auto_status = -ENOMEM;
		c->dest = r->bulk;
	}
	return 0;
}

static int srv_on_frame(struct rpc_conn *c, const uint8_t *p, uint32_t len, int bulk_status)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, c);
	struct rpc_server *s = sc->sl->s;

	if (c->state != CONN_READY)
		return hs_frame(sc, p, len);
	struct rpc_req *r = sc->cur;
	sc->cur = NULL;
	if (bulk_status && !r->auto_status)
		r->auto_status = bulk_status;
	if (r->auto_status) {
		rpc_reply_error(r, r->auto_status, r->auto_status == -ENOMEM
						  ? "server out of memory for the bulk"
						  : "request bulk failed its CRC32C");
		return 0;
	}
	atomic_fetch_add_explicit(&s->ctr.requests, 1, memory_order_relaxed);
	maybe_resume(sc);
	r->handled = 1;
	r->hd->fn(r, r->hd->arg);
	return c->state == CONN_CLOSED ? -CFS_ECLOSED : 0;
}

static void srv_on_close(struct rpc_conn *c, int err)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, c);
	if (sc->cur) {
		struct rpc_req *r = sc->cur;
		sc->cur = NULL;
		atomic_fetch_sub(&sc->unreplied, 1);
		req_free(r);
	}
	struct srv_loop *sl = sc->sl;
	if (sc->prev)
		sc->prev->next = sc->next;
	else
		sl->conns = sc->next;
	if (sc->next)
		sc->next->prev = sc->prev;
	sc->prev = sc->next = NULL;
}

static void srv_on_drain(struct rpc_conn *c)
{
	maybe_resume(container_of(c, struct srv_conn, c));
}

static void srv_on_free(struct rpc_conn *c)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, c);
	if (sc->udata_free)
		sc->udata_free(sc->udata);
	conn_fini(c);
	free(sc);
}

static void srv_on_connected(struct rpc_conn *c, int err) {}

int rpc_req_take_fd(struct rpc_req *req)
{
	struct rpc_conn *c = &req->sc->c;
	if (c->state == CONN_CLOSED || !c->x)
		return -EBADF;
	int fd = xport_fd_take(c->x);
	return fd == -EOPNOTSUPP ? -EBADF : fd;
}

void *rpc_req_conn_data(const struct rpc_req *req) { return req->sc->udata; }

int rpc_req_set_conn_data(struct rpc_req *req, void *data, void (*free_fn)(void *))
{
	struct srv_conn *sc = req->sc;
	if (sc->udata || sc->udata_free)
		return -EEXIST;
	sc->udata = data;
	sc->udata_free = free_fn;
	return 0;
}

static const struct conn_ops srv_ops = {
	.on_connected = srv_on_connected,
	.on_header = srv_on_header,
	.on_payload = srv_on_payload,
	.on_frame = srv_on_frame,
	.on_close = srv_on_close,
	.on_drain = srv_on_drain,
	.on_free = srv_on_free,
};

/* ---- accept and lifecycle ---- */

struct adopt {
	struct loop_msg m;
	struct srv_loop *sl;
	struct xport *x;
	char peer[XPORT_ADDRSTRLEN];
};

static void adopt_on_loop(struct loop_msg *m)
{
	struct adopt *a = m->arg;
	struct srv_loop *sl = a->sl;
	if (sl->stopped) {
		/* Accepted while the server stopped: the listener's loop may
		 * queue this behind its own stop message. */
		a->x->ops->close(a->x);
		free(a);
		return;
	}
	struct srv_conn *sc = xcalloc(1, sizeof(*sc));

	sc->sl = sl;
	if (conn_init(&sc->c, sl->l, a->x, CONN_HANDSHAKE, &srv_ops, &sl->s->ctr, a->peer, NULL)) {
		LOG_WARN("rpc", "accept: peer=%s reason=cannot register the connection", a->peer);
		free(sc);
		free(a);
		return;
	}
	free(a);
	sc->next = sl->conns;
	if (sl->conns)
		sl->conns->prev = sc;
	sl->conns = sc;
	loop_timer_arm(sl->l, &sc->c.timer,
		       clock_mono_ns() + (uint64_t)sl->s->o.handshake_ms * 1000000u);
}

static void lst_io(struct loop_io *io, uint32_t events)
{
	struct rpc_server *s = io->arg;
	int local = io == &s->lst_local_io;
	struct xport *lst = local ? s->lst_local : s->lst;
	for (int i = 0; i < 64; i++) {
		struct xport *x;
		struct sockaddr_in peer;
		int rc = lst->ops->accept(lst, &x, &peer);
		if (rc == -EAGAIN)
			return;
		if (rc) {
			/* EMFILE and friends: retried on the next readiness event. */
			LOG_WARN("rpc", "accept failed: err=%s", cfs_errname(rc));
			return;
		}
		atomic_fetch_add_explicit(&s->ctr.accepted, 1, memory_order_relaxed);
		if (local)
			atomic_fetch_add_explicit(&s->ctr.accepted_local, 1, memory_order_relaxed);
		unsigned k = atomic_fetch_add_explicit(&s->next_loop, 1, memory_order_relaxed);
		struct adopt *a = xmalloc(sizeof(*a));
		a->sl = &s->loops[k % (unsigned)s->nloops];
		a->x = x;
		if (local)
			xport_unix_peer_str(x, a->peer);
		else
			xport_addr_str(&peer, a->peer);
		a->m.fn = adopt_on_loop;
		a->m.arg = a;
		loop_post(a->sl->l, &a->m);
	}
}

static void stats_handle(struct rpc_req *req, void *arg);

int rpc_server_new(const struct rpc_opts *opts, struct rpc_server **out)
{
	struct rpc_opts o;
	if (rpc_opts_init(&o, opts))
		return -EINVAL;
	struct rpc_server *s = xcalloc(1, sizeof(*s));
	s->o = o;
	memcpy(s->secret, opts->secret, opts->secret_len);
	s->secret_len = opts->secret_len;
	s->cluster_id_len = strlen(opts->cluster_id);
	memcpy(s->cluster_id, opts->cluster_id, s->cluster_id_len);
	s->o.cluster_id = s->cluster_id;
	s->o.secret = s->secret;
	s->nloops = s->o.nthreads;
	s->loops = xcalloc((size_t)s->nloops, sizeof(*s->loops));
	for (int i = 0; i < s->nloops; i++) {
		int rc = loop_new(&s->loops[i].l);
		if (rc) {
			rpc_server_free(s);
			return rc;
		}
		s->loops[i].s = s;
	}
	s->tab[RPC_MSG_STATS] = (struct rpc_handler){ .fn = stats_handle, .arg = s };
	*out = s;
	return 0;
}

int rpc_server_handle(struct rpc_server *s, uint16_t type, const struct rpc_handler *h)
{
	if (s->started || type >= RPC_TYPE_MAX || type <= RPC_MSG_AUTH_OK || !h->fn ||
	    (h->bulk_dest && !h->bulk_drop))
		return -EINVAL;
	s->tab[type] = *h;
	return 0;
}

/* The same-host listener beside the TCP one, named from BOUND (the port
 * really bound). Best effort: without it clients use TCP, so a name taken
 * for longer than a second only costs speed. */
static void listen_local(struct rpc_server *s, const struct sockaddr_in *bound)
{
	char as[XPORT_ADDRSTRLEN];
	struct sockaddr_in name = *bound;
	/* A server on every address (0.0.0.0) is the one a client of this host
	 * reaches at 127.0.0.1:PORT: named so, local clients of it find it. */
	if (name.sin_addr.s_addr == htonl(INADDR_ANY))
		name.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bound = &name;
	/* As for TCP: a predecessor killed with kill -9 may hold the name for
	 * a moment while its threads exit. */
	uint64_t give_up = clock_mono_ms() + 1000;
	int rc;
	while ((rc = xport_unix.listen(bound, 512, &s->lst_local)) == -EADDRINUSE &&
	       clock_mono_ms() < give_up)
		clock_sleep_ms(100);
	if (!rc) {
		s->lst_local_io.fn = lst_io;
		s->lst_local_io.arg = s;
		rc = loop_fd_add(s->loops[0].l, s->lst_local->ops->fd(s->lst_local), LOOP_IN,
				 &s->lst_local_io);
		if (rc) {
			s->lst_local->ops->close(s->lst_local);
			s->lst_local = NULL;
		}
	}
	if (rc)
		LOG_WARN("rpc", "no same-host socket: addr=%s err=%s (clients use TCP)",
			 xport_addr_str(bound, as), cfs_errname(rc));
}

int rpc_server_start(struct rpc_server *s, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	int rc = xport_addr_parse(addr, &sa, err, errlen);
	if (rc)
		return rc;
	if (s->started) {
		snprintf(err, errlen, "server already started");
		return -EINVAL;
	}
	/* A process killed with kill -9 shows as a zombie (what `chainfs up`
	 * and tests take for "gone") while its other threads still exit and
	 * hold its listening socket: a restart right then failed with
	 * EADDRINUSE. Retry a port that is in use for a bounded time. */
	uint64_t give_up = clock_mono_ms() + RPC_BIND_RETRY_MS;
	while ((rc = xport_tcp.listen(&sa, 512, &s->lst)) == -EADDRINUSE && sa.sin_port &&
	       clock_mono_ms() < give_up)
		clock_sleep_ms(100);
	if (rc) {
		snprintf(err, errlen, "listen on %s: %s", addr, cfs_strerror(rc));
		return rc;
	}
	struct sockaddr_in bound;
	if (!s->lst->ops->local_addr(s->lst, &bound))
		s->port = ntohs(bound.sin_port);
	else
		bound = sa;
	s->lst_io.fn = lst_io;
	s->lst_io.arg = s;
	rc = loop_fd_add(s->loops[0].l, s->lst->ops->fd(s->lst), LOOP_IN, &s->lst_io);
	if (!rc && !s->o.no_local_socket)
		listen_local(s, &bound);
	for (int i = 0; !rc && i < s->nloops; i++) {
		rc = loop_thread_start(s->loops[i].l, "rpc-srv");
		if (!rc)
			s->started = i + 1;
	}
	if (rc) {
		snprintf(err, errlen, "starting server threads: %s", cfs_strerror(rc));
		return rc;
	}
	LOG_INFO("rpc", "listening: addr=%s port=%u threads=%d local=%s", addr, s->port, s->nloops,
		 s->lst_local ? "unix" : "off");
	return 0;
}

uint16_t rpc_server_port(const struct rpc_server *s) { return s->port; }

void rpc_server_stats(const struct rpc_server *s, struct rpc_stats *out)
{
	out->accepted = atomic_load(&s->ctr.accepted);
	out->auth_fail = atomic_load(&s->ctr.auth_fail);
	out->bad_input = atomic_load(&s->ctr.bad_input);
	out->requests = atomic_load(&s->ctr.requests);
	out->handshake_timeout = atomic_load(&s->ctr.handshake_timeout);
	out->bulk_copied = atomic_load(&s->ctr.bulk_copied);
	out->accepted_local = atomic_load(&s->ctr.accepted_local);
	out->replies_by_caller = 0;
}

/* STATS: the counters above, for `chainfs admin rpc-stats` and tests. */
static void stats_handle(struct rpc_req *req, void *arg)
{
	struct rpc_server *s = arg;
	struct rpc_stats st;
	rpc_server_stats(s, &st);
	struct rpc_stats_resp m = { .accepted = st.accepted, .auth_fail = st.auth_fail,
				    .bad_input = st.bad_input, .requests = st.requests,
				    .handshake_timeout = st.handshake_timeout,
				    .accepted_local = st.accepted_local };
	struct buf b = BUF_INIT;
	int rc = rpc_stats_resp_encode(&b, &m);
	rpc_reply(req, rc, b.data, rc ? 0 : (uint32_t)b.len);
	buf_fini(&b);
}

static void stop_on_loop(struct loop_msg *m)
{
	struct srv_loop *sl = m->arg;
	struct rpc_server *s = sl->s;
	sl->stopped = true;
	if (sl == &s->loops[0] && s->lst) {
		loop_fd_del(sl->l, s->lst->ops->fd(s->lst));
		s->lst->ops->close(s->lst);
		s->lst = NULL;
	}
	if (sl == &s->loops[0] && s->lst_local) {
		loop_fd_del(sl->l, s->lst_local->ops->fd(s->lst_local));
		s->lst_local->ops->close(s->lst_local);
		s->lst_local = NULL;
	}
	while (sl->conns)
		conn_close(&sl->conns->c, -CFS_ECLOSED, LOG_LVL_DEBUG, "server shutting down");
}

void rpc_server_free(struct rpc_server *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->started; i++) {
		struct srv_loop *sl = &s->loops[i];
		sl->stop_msg.fn = stop_on_loop;
		sl->stop_msg.arg = sl;
		loop_post(sl->l, &sl->stop_msg);
		loop_thread_stop(sl->l);
	}
	if (s->lst)
		s->lst->ops->close(s->lst);
	if (s->lst_local)
		s->lst_local->ops->close(s->lst_local);
	for (int i = 0; i < s->nloops; i++) {
		loop_free(s->loops[i].l);
		pool_fini(&s->loops[i].pool);
	}
	free(s->loops);
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
	free(s);
}
