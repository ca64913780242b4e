/* meta_client.c - blocking metadata-service client with failover
 * (meta_client.h).
 *
 * One call:
 *   1. fill the request (credentials, request id: mutations take the next
 *      seq of this client once, before the first encoded attempt; a direct
 *      in-process call, which writes no idempotency record, takes none)
 *      and encode it once;
 *   2. order the instances: routed calls (sync, close) put the rendezvous
 *      owner of the inode first; others start at a round-robin position.
 *      Instances marked down are tried last;
 *   3. send with rpc_call; a reply (success or an operation error) ends the
 *      call; a failover error moves on to the next instance, and marks the
 *      one that failed down for down_ms unless it answered the error itself
 *      and is in service (instance_suspect: its -CFS_ETIMEDOUT asks for a
 *      resend, it is not dead); when a whole round failed, back off
 *      (10 ms doubling to 200 ms) and start again until retry_ms is spent.
 *      No attempt outlives the budget: its deadline is the smaller of its
 *      timeout and what is left.
 * Because the request id is fixed in step 1, a resend after the first
 * instance committed and died finds the idempotency record and returns the
 * recorded result.
 *
 * Slow, not dead. An attempt that timed out on an instance gives the next
 * attempt on that instance, within the same call, twice the time (timeout_ms,
 * 2x, 4x ... up to what is left of retry_ms). A request the instance needs
 * longer than timeout_ms for (a LOOKUP_PLUS of 128 entries is 256 etcd
 * reads: over 5 s on a loaded host) used to time out on every attempt and
 * be resent until the budget was spent (chaos: single stats of 29-60 s
 * after a fault had recovered, each resend adding the same work to the
 * instance's queue); now it gets through on the second or third attempt,
 * and an instance that is really gone is still left after timeout_ms when
 * there is another one.
 *
 * Reconnects. The RPC client's pause between connect attempts to an
 * instance is capped at RECONNECT_MAX_MS (its default is 5 s), so that a
 * call waits at most that long for a restarted instance once it listens
 * again; a refused connect to a live host costs a round trip.
 *
 * State: the instance table only grows. meta_client_new fills the first
 * slots; meta_client_add_addr (under add_mu) fills slot n and then
 * publishes n + 1 with a release store, so a caller that loads n with
 * acquire sees every slot below it fully initialised, and a slot never
 * changes index or goes away (a meta that left routing just fails and is
 * marked down). Each pass over the table loads n once and uses that
 * snapshot throughout, so an instance added meanwhile is simply not part
 * of that pass. Per instance only down_until (atomic) and id (learned with
 * INFO, atomic) change. The counters are atomics. The request sequence
 * and the list of mutations awaiting a reply (seq_mu) are the one other
 * shared state: a seq is drawn and listed under one lock, so the lowest
 * listed seq, sent with every mutation as its idem_low, is never above a
 * seq that some thread has drawn but not sent yet (meta refuses copies
 * below the floor that idem_low raises; meta.h "Bound").
 *
 * GC kicks. A meta service wakes its GC right after an unlink or rename it
 * ran (meta_service.c gc_kick); one the in-process instance ran (set_local)
 * is unknown to it, and the file's space would wait for its background
 * pass (up to 1 s). So after each such call that succeeded locally, a
 * GC_KICK goes to one instance, asynchronously: the caller never waits for
 * it. At most one is in flight; calls made meanwhile only mark it dirty,
 * and its completion sends one more. That loses no change: the kick sent
 * after a change committed is served by a GC pass that reads the queue
 * after that commit (gc_kick). Meta answers a kick when the GC pass that
 * covers it starts (50 ms later, or after the pass under way), so while
 * the mount deletes it kicks about once per pass. A failed kick is dropped
 * (the background pass remains; a dirty one is sent again); an instance
 * that does not know the type ("bad type", an old meta) turns kicks off
 * for good.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "client/meta_client.h"
#include "common/block_hint.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/wire.h"
#include "meta/meta_proto.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"

#define NAME_SEND_MAX 4096 /* longer names fail locally: no server would take them */
#define INFO_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 200
#define RECONNECT_MAX_MS 500 /* the RPC client's longest pause between connects */
#define ATTEMPT_MIN_MS 50    /* an attempt shorter than this is not worth sending */

struct instance {
	struct rpc_peer *peer;          /* owned by the rpc client */
	char addr[META_CLIENT_ADDR_MAX]; /* as given, for de-duplication */
	_Atomic uint64_t id;            /* instance id from INFO; 0: unknown */
	_Atomic uint64_t down_until;    /* mono ns; 0: up */
	_Atomic uint32_t fails;         /* consecutive failovers away from it */
};

struct meta_client {
	struct rpc_client *rpc;
	uint64_t client_id;
	uint32_t timeout_ms, retry_ms, down_ms;
	_Atomic size_t n;   /* slots [0, n) are initialised; see "State" */
	pthread_mutex_t add_mu; /* serialises meta_client_add_addr */
	struct instance inst[META_CLIENT_MAX_ADDRS];
	pthread_mutex_t seq_mu;
	uint64_t seq;       /* last seq drawn */
	uint64_t *awaited;  /* seqs of mutations awaiting a reply, ascending */
	size_t nawaited, capawaited;
	_Atomic uint64_t rr;
	_Atomic uint64_t calls, resends, failovers;
	_Atomic int no_dir_replies; /* meta answered CREATE_DIR/UNLINK_DIR "bad type" */
	_Atomic int no_close_many;  /* meta answered CLOSE_MANY "bad type" */
	meta_client_local_fn local;  /* in-process instance, or NULL */
	meta_client_local_req_fn local_req; /* its direct calls, or NULL */
	void *local_arg;
	_Atomic int kick;            /* GC kicks: enum kick_state */
	_Atomic int no_gc_kick;      /* meta answered GC_KICK "bad type" */
	struct buf kick_req;         /* the encoded GC_KICK; set with local */
};

/* See "GC kicks". */
enum kick_state { KICK_IDLE, KICK_SENT, KICK_SENT_DIRTY };
#define KICK_TIMEOUT_MS 5000 /* a kick not answered by then (a long GC pass) ends */

static __thread char last_err[RPC_ERROR_TEXT_MAX + 1];

const char *meta_client_last_error(void) { return last_err; }

uint64_t meta_client_id(const meta_client *c) { return c->client_id; }

void meta_client_get_stats(meta_client *c, struct meta_client_stats *out)
{
	out->calls = atomic_load_explicit(&c->calls, memory_order_relaxed);
	out->resends = atomic_load_explicit(&c->resends, memory_order_relaxed);
	out->failovers = atomic_load_explicit(&c->failovers, memory_order_relaxed);
}

int meta_client_new(const struct meta_client_opts *o, meta_client **out, char *err,
		    size_t errlen)
{
	meta_client *c = NULL;
	int rc;

	if (!o->addrs || o->naddrs == 0 || o->naddrs > META_CLIENT_MAX_ADDRS) {
		snprintf(err, errlen, "need 1..%d meta addresses", META_CLIENT_MAX_ADDRS);
		return -EINVAL;
	}
	for (size_t i = 0; i < o->naddrs; i++) {
		if (!o->addrs[i] || strlen(o->addrs[i]) >= META_CLIENT_ADDR_MAX) {
			snprintf(err, errlen, "bad meta address");
			return -EINVAL;
		}
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->add_mu, NULL);
	pthread_mutex_init(&c->seq_mu, NULL);
	atomic_init(&c->n, 0);
	c->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
	c->retry_ms = o->retry_ms ? o->retry_ms : 30000;
	c->down_ms = o->down_ms ? o->down_ms : 1000;
	c->client_id = o->client_id;
	if (!c->client_id) {
		if (getrandom(&c->client_id, sizeof(c->client_id), 0) != sizeof(c->client_id)) {
			snprintf(err, errlen, "no entropy for a client id");
			rc = -EIO;
			goto fail;
		}
		/* Above every node id: an unmanaged client (meta.h). */
		c->client_id |= META_CLIENT_NODE_MAX + 1;
	}
	/* Sequences start at a random point, so a request id (client, seq)
	 * stays unique even if a client id comes back (a wiped mgmtd store
	 * hands node ids out anew while meta keeps the old holder's
	 * idempotency records for 30 min). */
	uint64_t seq0;
	if (getrandom(&seq0, sizeof(seq0), 0) != sizeof(seq0)) {
		snprintf(err, errlen, "no entropy for a request sequence");
		rc = -EIO;
		goto fail;
	}
	c->seq = seq0 >> 2;
	atomic_init(&c->rr, 0);
	struct rpc_opts ro = { .cluster_id = o->cluster_id, .secret = o->secret,
			       .secret_len = o->secret_len,
			       .nthreads = o->loop_threads > 0 ? o->loop_threads : 1,
			       .timeout_ms = c->timeout_ms,
			       .max_backoff_ms = RECONNECT_MAX_MS,
			       .conns_per_peer = o->conns_per_peer > 0 ? o->conns_per_peer : 1,
			       .idle_conn_first = o->idle_conn_first };
	rc = rpc_client_new(&ro, &c->rpc);
	if (rc) {
		snprintf(err, errlen, "rpc client: %s", cfs_strerror(rc));
		goto fail;
	}
	for (size_t i = 0; i < o->naddrs; i++) {
		rc = rpc_client_peer(c->rpc, o->addrs[i], &c->inst[i].peer, err, errlen);
		if (rc)
			goto fail;
		snprintf(c->inst[i].addr, sizeof(c->inst[i].addr), "%s", o->addrs[i]);
		atomic_init(&c->inst[i].id, 0);
		atomic_init(&c->inst[i].down_until, 0);
		atomic_init(&c->inst[i].fails, 0);
	}
	/* No other thread has C yet, but callers read n with acquire. */
	atomic_store_explicit(&c->n, o->naddrs, memory_order_release);
	*out = c;
	return 0;
fail:
	meta_client_free(c);
	return rc;
}

void meta_client_free(meta_client *c)
{
	if (!c)
		return;
	rpc_client_free(c->rpc); /* completes a kick in flight (kick_done) */
	buf_fini(&c->kick_req);
	pthread_mutex_destroy(&c->add_mu);
	pthread_mutex_destroy(&c->seq_mu);
	free(c->awaited);
	free(c);
}

/* The number of initialised slots; see "State" in the file comment. */
static size_t ninst(meta_client *c)
{
	return atomic_load_explicit(&c->n, memory_order_acquire);
}

size_t meta_client_naddrs(meta_client *c) { return ninst(c); }

int meta_client_add_addr(meta_client *c, const char *addr)
{
	char err[128];
	struct rpc_peer *peer;

	if (!addr || !*addr || strlen(addr) >= META_CLIENT_ADDR_MAX)
		return -EINVAL;
	pthread_mutex_lock(&c->add_mu);
	/* Only adders write n, and they hold add_mu: relaxed is enough here. */
	size_t n = atomic_load_explicit(&c->n, memory_order_relaxed);
	int rc = 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(c->inst[i].addr, addr) == 0) {
			rc = 1;
			goto out;
		}
	/* Parses ADDR; returns the existing peer for an address spelt
	 * differently ("127.0.0.1:07000"), which is the same instance. */
	rc = rpc_client_peer(c->rpc, addr, &peer, err, sizeof(err));
	if (rc) {
		rc = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (c->inst[i].peer == peer) {
			rc = 1;
			goto out;
		}
	if (n >= META_CLIENT_MAX_ADDRS) {
		rc = -ENOSPC;
		goto out;
	}
	struct instance *in = &c->inst[n];
	in->peer = peer;
	snprintf(in->addr, sizeof(in->addr), "%s", addr);
	atomic_store_explicit(&in->id, 0, memory_order_relaxed);
	atomic_store_explicit(&in->down_until, 0, memory_order_relaxed);
	atomic_store_explicit(&in->fails, 0, memory_order_relaxed);
	atomic_store_explicit(&c->n, n + 1, memory_order_release);
out:
	pthread_mutex_unlock(&c->add_mu);
	return rc;
}

/* Errors after which the same request may go to another instance. */
static int failover_error(int rc)
{
	switch (rc) {
	case -CFS_ETIMEDOUT: case -CFS_ECLOSED: case -CFS_EUNAVAIL: case -CFS_EFENCED:
	case -CFS_ECONFLICT: case -CFS_ETOOOLD: case -ECONNREFUSED: case -ECONNRESET:
	case -ECONNABORTED: case -EPIPE: case -ETIMEDOUT: case -EHOSTUNREACH:
	case -ENETUNREACH: case -EHOSTDOWN: case -ENOTCONN:
		return 1;
	}
	return 0;
}

/* 1 when failover error RC (RESP: what came back) says the instance may
 * be gone: the client measured the timeout, lost the connection, or the
 * instance answered that it is out of service (stopping, fenced). An
 * error the instance sent otherwise (its error payload came back: meta
 * answers with rpc_reply_error), such as its -CFS_ETIMEDOUT that asks
 * for a resend (meta_attr.c setattr_body) or a store conflict, came from
 * a live instance within its timeout: the request is resent under its seq
 * (meta's idempotency records make that safe), but the instance is not
 * marked down, nor its timeout doubled. */
static int instance_suspect(int rc, const struct buf *resp)
{
	struct rpc_error e;
	if (!failover_error(rc))
		return 0;
	if (rc == -CFS_EUNAVAIL || rc == -CFS_EFENCED || !resp->len)
		return 1;
	return rpc_error_decode(resp->data, resp->len, &e) != 0;
}

static void note_error(int rc, const struct buf *resp)
{
	struct rpc_error e;
	last_err[0] = 0;
	if (resp->len && rpc_error_decode(resp->data, resp->len, &e) == 0) {
		size_t n = e.text_len < RPC_ERROR_TEXT_MAX ? e.text_len : RPC_ERROR_TEXT_MAX;
		memcpy(last_err, e.text, n);
		last_err[n] = 0;
	} else if (rc) {
		snprintf(last_err, sizeof(last_err), "%s", cfs_strerror(rc));
	}
}

void meta_client_set_local(meta_client *c, meta_client_local_fn fn, void *arg)
{
	c->local = fn;
	c->local_arg = arg;
	if (!fn)
		c->local_req = NULL;
	buf_reset(&c->kick_req);
	if (fn) {
		struct meta_rpc_req *m = calloc(1, sizeof(*m));
		if (m) {
			m->type = META_RPC_GC_KICK;
			if (meta_rpc_req_encode(&c->kick_req, m))
				buf_reset(&c->kick_req); /* no kicks: the background pass remains */
			free(m);
		}
	}
}

void meta_client_set_local_req(meta_client *c, meta_client_local_req_fn fn)
{
	c->local_req = c->local ? fn : NULL;
}

int meta_client_has_local(const meta_client *c)
{
	return c->local != NULL;
}

static int is_down(meta_client *c, size_t i, uint64_t now)
{
	return atomic_load_explicit(&c->inst[i].down_until, memory_order_relaxed) > now;
}

/* The skip period doubles with consecutive failures (down_ms .. 16x), so a
 * dead instance costs a probe now and then, not one per call. */
static void mark_down(meta_client *c, size_t i)
{
	uint32_t f = atomic_fetch_add_explicit(&c->inst[i].fails, 1, memory_order_relaxed);
	uint64_t ms = (uint64_t)c->down_ms << (f < 4 ? f : 4);
	atomic_store_explicit(&c->inst[i].down_until, clock_mono_ns() + ms * 1000000u,
			      memory_order_relaxed);
	atomic_fetch_add_explicit(&c->failovers, 1, memory_order_relaxed);
}

/* Learns the ids of instances that do not have one yet (routed calls). */
static void learn_ids(meta_client *c)
{
	uint64_t now = clock_mono_ns();
	size_t n = ninst(c);
	for (size_t i = 0; i < n; i++) {
		if (atomic_load_explicit(&c->inst[i].id, memory_order_relaxed) || is_down(c, i, now))
			continue;
		struct meta_rpc_req *m = calloc(1, sizeof(*m));
		struct buf req = BUF_INIT, resp = BUF_INIT;
		if (!m)
			return;
		m->type = META_RPC_INFO;
		if (meta_rpc_req_encode(&req, m) == 0) {
			struct rpc_call call = { .type = META_RPC_INFO, .timeout_ms = INFO_TIMEOUT_MS,
						 .payload = req.data, .payload_len = (uint32_t)req.len };
			int rc = rpc_call(c->inst[i].peer, &call, &resp, NULL);
			struct meta_rpc_resp r = { .type = META_RPC_INFO };
			if (rc == 0 && meta_rpc_resp_decode(resp.data, resp.len, &r) == 0 &&
			    r.instance_id)
				atomic_store_explicit(&c->inst[i].id, r.instance_id,
						      memory_order_relaxed);
			else if (instance_suspect(rc, &resp))
				mark_down(c, i);
		}
		buf_fini(&req);
		buf_fini(&resp);
		free(m);
	}
}

/* Fills ORDER with every instance index: the rendezvous owner of ROUTE (if
 * nonzero and known) first, then round robin, down instances last.
 * Returns how many (the n it loaded: instances added later wait for the
 * next round). */
static size_t order_instances(meta_client *c, uint64_t route, size_t *order)
{
	uint64_t now = clock_mono_ns();
	size_t n = ninst(c);
	size_t k = 0, first = n;
	if (route) {
		uint64_t ids[META_CLIENT_MAX_ADDRS];
		size_t idx[META_CLIENT_MAX_ADDRS], m = 0;
		for (size_t i = 0; i < n; i++) {
			uint64_t id = atomic_load_explicit(&c->inst[i].id, memory_order_relaxed);
			if (id && !is_down(c, i, now)) {
				ids[m] = id;
				idx[m++] = i;
			}
		}
		uint64_t owner = meta_rendezvous(route, ids, m);
		for (size_t j = 0; j < m; j++)
			if (ids[j] == owner)
				first = idx[j];
		if (first < n)
			order[k++] = first;
	}
	size_t start = (size_t)(atomic_fetch_add_explicit(&c->rr, 1, memory_order_relaxed) % n);
	for (int pass = 0; pass < 2; pass++) {
		for (size_t j = 0; j < n; j++) {
			size_t i = (start + j) % n;
			if (i == first || is_down(c, i, now) != pass)
				continue;
			order[k++] = i;
		}
	}
	return k;
}

static void send_kick(meta_client *c);

/* Completion of a GC_KICK (client loop thread). */
static void kick_done(void *arg, const struct rpc_result *res)
{
	meta_client *c = arg;
	int st = KICK_SENT;
	if (res->status == -CFS_EBADMSG_TYPE)
		atomic_store_explicit(&c->no_gc_kick, 1, memory_order_relaxed);
	if (atomic_compare_exchange_strong(&c->kick, &st, KICK_IDLE))
		return;
	/* Dirty: a change committed after the kick left; it needs its own
	 * (refused with -CFS_ECLOSED while rpc_client_free runs). */
	atomic_store(&c->kick, KICK_SENT);
	send_kick(c);
}

/* Sends a GC_KICK with c->kick == KICK_SENT; back to KICK_IDLE when it
 * cannot go. Never waits. */
static void send_kick(meta_client *c)
{
	size_t order[META_CLIENT_MAX_ADDRS];
	if (!atomic_load_explicit(&c->no_gc_kick, memory_order_relaxed) && c->kick_req.len &&
	    order_instances(c, 0, order)) {
		struct rpc_call call = { .type = META_RPC_GC_KICK, .timeout_ms = KICK_TIMEOUT_MS,
					 .payload = c->kick_req.data,
					 .payload_len = (uint32_t)c->kick_req.len,
					 .done = kick_done, .arg = c };
		if (rpc_call_async(c->inst[order[0]].peer, &call) == 0)
			return;
	}
	atomic_store(&c->kick, KICK_IDLE);
}

/* After TYPE succeeded in the in-process instance: a GC kick when it may
 * have queued a file (the service's own rule, meta_service.c gc_kick). */
static void kick_gc(meta_client *c, uint16_t type)
{
	if (type != META_RPC_UNLINK && type != META_RPC_UNLINK_DIR && type != META_RPC_RENAME)
		return;
	int st = atomic_load(&c->kick);
	for (;;) {
		if (st == KICK_SENT_DIRTY)
			return;
		int next = st == KICK_IDLE ? KICK_SENT : KICK_SENT_DIRTY;
		if (atomic_compare_exchange_weak(&c->kick, &st, next)) {
			if (next == KICK_SENT)
				send_kick(c);
			return;
		}
	}
}

/* Sends the encoded request of TYPE with failover (through the
 * in-process instance first when TRY_LOCAL); on success the reply payload
 * is in RESP. Returns 0 or the final error. */
static int send_ex(meta_client *c, uint16_t type, const struct buf *req, uint64_t route,
		   struct buf *resp, int try_local)
{
	uint64_t deadline = clock_mono_ns() + (uint64_t)c->retry_ms * 1000000u;
	uint32_t backoff = BACKOFF_MIN_MS;
	size_t order[META_CLIENT_MAX_ADDRS];
	uint32_t tmo[META_CLIENT_MAX_ADDRS]; /* this call's next attempt timeout per instance */
	int rc = -CFS_EUNAVAIL, attempts = 0;

	atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
	if (c->local && try_local) {
		rc = c->local(c->local_arg, type, req->data, req->len, resp, last_err,
			      sizeof(last_err));
		if (rc <= 0 && !failover_error(rc)) {
			if (rc == 0) {
				last_err[0] = 0;
				kick_gc(c, type);
			}
			return rc;
		}
		/* not run here, or the store was busy: the instances answer */
	}
	/* A round trip from here on: a FUSE thread lets another read the
	 * next request meanwhile (block_hint.h; a call run in-process above
	 * handed over only where it waited, if at all). */
	block_hint_wait();
	/* Every slot, not just [0, n): an instance added during the call
	 * joins at the next round with the base timeout. */
	for (size_t i = 0; i < META_CLIENT_MAX_ADDRS; i++)
		tmo[i] = c->timeout_ms;
	if (route)
		learn_ids(c);
	for (;;) {
		size_t k = order_instances(c, route, order);
		for (size_t j = 0; j < k; j++) {
			size_t i = order[j];
			uint64_t now = clock_mono_ns();
			uint64_t left_ms = now < deadline ? (deadline - now) / 1000000u : 0;
			if (attempts && left_ms < ATTEMPT_MIN_MS)
				goto out;
			struct rpc_call call = { .type = type, .payload = req->data,
						 .payload_len = (uint32_t)req->len,
						 .timeout_ms = tmo[i] < left_ms ? tmo[i]
									: (uint32_t)left_ms };
			if (!call.timeout_ms)
				call.timeout_ms = ATTEMPT_MIN_MS;
			if (attempts++)
				atomic_fetch_add_explicit(&c->resends, 1, memory_order_relaxed);
			buf_reset(resp);
			rc = rpc_call(c->inst[i].peer, &call, resp, NULL);
			if (!failover_error(rc)) {
				if (atomic_load_explicit(&c->inst[i].fails, memory_order_relaxed))
					atomic_store_explicit(&c->inst[i].fails, 0,
							      memory_order_relaxed);
				if (rc)
					note_error(rc, resp);
				return rc;
			}
			if (!instance_suspect(rc, resp)) {
				atomic_store_explicit(&c->inst[i].fails, 0, memory_order_relaxed);
			} else {
				/* Slow, not dead (see the file comment). */
				if (rc == -CFS_ETIMEDOUT && tmo[i] < UINT32_MAX / 2)
					tmo[i] *= 2;
				mark_down(c, i);
			}
			if (clock_mono_ns() >= deadline)
				goto out;
		}
		if (clock_mono_ns() + (uint64_t)backoff * 1000000u >= deadline)
			break;
		clock_sleep_ms(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
out:
	note_error(rc, resp);
	return rc;
}

static int send_with_failover(meta_client *c, uint16_t type, const struct buf *req,
			      uint64_t route, struct buf *resp)
{
	return send_ex(c, type, req, route, resp, 1);
}

int meta_client_call_raw(meta_client *c, uint16_t type, const struct buf *req,
			 struct buf *resp)
{
	return send_with_failover(c, type, req, 0, resp);
}

/* Draws the next seq for a mutation and lists it as awaited; *LOW is the
 * lowest awaited seq (0 when the list could not grow: meta then keeps the
 * client's records to the TTL, and seq_done must not be called). */
static uint64_t seq_draw(meta_client *c, uint64_t *low)
{
	pthread_mutex_lock(&c->seq_mu);
	uint64_t seq = ++c->seq;
	*low = 0;
	if (c->nawaited == c->capawaited) {
		size_t cap = c->capawaited ? c->capawaited * 2 : 16;
		uint64_t *p = realloc(c->awaited, cap * sizeof(*p));
		if (p) {
			c->awaited = p;
			c->capawaited = cap;
		}
	}
	if (c->nawaited < c->capawaited) {
		c->awaited[c->nawaited++] = seq; /* drawn in order: stays ascending */
		*low = c->awaited[0];
	}
	pthread_mutex_unlock(&c->seq_mu);
	return seq;
}

/* SEQ has its reply or was given up on: no attempt of it is sent again. */
static void seq_done(meta_client *c, uint64_t seq)
{
	pthread_mutex_lock(&c->seq_mu);
	for (size_t i = 0; i < c->nawaited; i++) {
		if (c->awaited[i] == seq) {
			memmove(&c->awaited[i], &c->awaited[i + 1],
				(c->nawaited - i - 1) * sizeof(*c->awaited));
			c->nawaited--;
			break;
		}
	}
	pthread_mutex_unlock(&c->seq_mu);
}

/* The whole call: header, encode, send, decode into R (whose caller
 * pointers are set). KEEP (may be NULL) takes the reply buffer, so that
 * R's borrowed data stays valid until the caller frees KEEP. */
static int call_keep(meta_client *c, const struct meta_cred *cr, struct meta_rpc_req *m,
		     struct meta_rpc_resp *r, uint64_t route, struct buf *keep)
{
	struct buf req = BUF_INIT, resp = BUF_INIT;
	int rc;

	if (m->name.n > NAME_SEND_MAX || m->name2.n > NAME_SEND_MAX)
		return -ENAMETOOLONG;
	if (cr) {
		if (cr->ngroups > META_RPC_GROUPS_MAX)
			return -EINVAL;
		m->uid = cr->uid;
		m->gid = cr->gid;
		m->ngroups = cr->ngroups;
		if (cr->ngroups)
			memcpy(m->groups, cr->groups, cr->ngroups * sizeof(uint32_t));
	}
	m->client = c->client_id;
	m->seq = m->idem_low = 0;
	/* A direct call (meta_local.h): no bytes either way. It answers
	 * as send_ex's in-process call would, and what it passes on (1) or
	 * fails over goes the encoded way, not to the instance again. It
	 * writes no idempotency record (its caller never sends it again), so
	 * the seq is drawn only for the encoded way, after it: two lock pairs
	 * fewer per in-process mutation (bench/history.md, dl27). */
	int try_local = 1;
	if (c->local_req) {
		r->type = m->type;
		rc = c->local_req(c->local_arg, m, r, last_err, sizeof(last_err));
		if (rc <= 0 && !failover_error(rc)) {
			atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
			if (rc == 0) {
				last_err[0] = 0;
				kick_gc(c, m->type);
			}
			if (keep)
				*keep = resp;
			return rc;
		}
		try_local = rc == 1;
	}
	if (meta_rpc_is_mutation(m->type))
		m->seq = seq_draw(c, &m->idem_low);
	rc = meta_rpc_req_encode(&req, m);
	if (rc == 0)
		rc = send_ex(c, m->type, &req, route, &resp, try_local);
	if (m->idem_low)
		seq_done(c, m->seq);
	if (rc == 0) {
		r->type = m->type;
		rc = meta_rpc_resp_decode(resp.data, resp.len, r);
		if (rc && rc != -ENOMEM)
			rc = -CFS_EPROTO;
	}
	buf_fini(&req);
	if (keep)
		*keep = resp;
	else
		buf_fini(&resp);
	return rc;
}

static int call(meta_client *c, const struct meta_cred *cr, struct meta_rpc_req *m,
		struct meta_rpc_resp *r, uint64_t route)
{
	return call_keep(c, cr, m, r, route, NULL);
}

/* Copies reply data into the caller's buffer (NUL-terminated when it fits
 * and TERMINATE); returns SIZE. */
static int copy_out(const struct meta_rpc_resp *r, uint64_t size, void *buf, size_t cap,
		    int terminate)
{
	if (cap && r->data_len > cap)
		return -ERANGE;
	if (cap && r->data_len)
		memcpy(buf, r->data, r->data_len);
	if (terminate && r->data_len < cap)
		((char *)buf)[r->data_len] = 0;
	return size > INT32_MAX ? -E2BIG : (int)size;
}

/* A zeroed request of TYPE on the heap (it holds the group array). */
static struct meta_rpc_req *req_new(uint16_t type)
{
	struct meta_rpc_req *m = calloc(1, sizeof(*m));
	if (m)
		m->type = type;
	return m;
}

#define REQ(m, type)                          \
	struct meta_rpc_req *m = req_new(type); \
	if (!m)                                 \
		return -ENOMEM

int meta_client_ping(meta_client *c)
{
	struct buf req = BUF_INIT, resp = BUF_INIT;
	struct rpc_echo_req e = { 0, 0, (const uint8_t *)"ping", 4 };
	int rc = rpc_echo_req_encode(&req, &e);
	if (rc == 0)
		rc = send_with_failover(c, RPC_MSG_ECHO, &req, 0, &resp);
	buf_fini(&req);
	buf_fini(&resp);
	return rc;
}

/* Calls returning an inode (OUT may be NULL: a scratch inode is used). */
static int call_inode(meta_client *c, const struct meta_cred *cr, struct meta_rpc_req *m,
		      struct meta_inode *out, uint64_t *session)
{
	struct meta_rpc_resp r = { .inode = out };
	int rc = call(c, cr, m, &r, 0);
	if (rc == 0 && session)
		*session = r.session;
	free(m);
	return rc;
}

static int call_plain(meta_client *c, const struct meta_cred *cr, struct meta_rpc_req *m,
		      struct meta_rpc_resp *r, uint64_t route)
{
	struct meta_rpc_resp tmp = { 0 };
	int rc = call(c, cr, m, r ? r : &tmp, route);
	free(m);
	return rc;
}

/* Calls that take an inode and a name and answer nothing more (RMDIR,
 * UNLINK, REMOVEXATTR). */
static int name_call(meta_client *c, const struct meta_cred *cr, uint16_t type, uint64_t ino,
		     struct meta_name name)
{
	REQ(m, type);
	m->ino = ino;
	m->name = name;
	return call_plain(c, cr, m, NULL, 0);
}

int meta_client_lookup(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		       struct meta_name name, struct meta_inode *out)
{
	REQ(m, META_RPC_LOOKUP);
	m->ino = parent;
	m->name = name;
	return call_inode(c, cr, m, out, NULL);
}

int meta_client_getattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			struct meta_inode *out)
{
	REQ(m, META_RPC_GETATTR);
	m->ino = ino;
	return call_inode(c, cr, m, out, NULL);
}

int meta_client_access(meta_client *c, const struct meta_cred *cr, uint64_t ino, int mask)
{
	REQ(m, META_RPC_ACCESS);
	m->ino = ino;
	m->flags = (uint32_t)mask;
	return call_plain(c, cr, m, NULL, 0);
}

int meta_client_setattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			const struct meta_setattr *sa, struct meta_inode *out)
{
	REQ(m, META_RPC_SETATTR);
	m->ino = ino;
	m->sa = *sa;
	return call_inode(c, cr, m, out, NULL);
}

int meta_client_statfs(meta_client *c, const struct meta_cred *cr, struct meta_statfs *out)
{
	struct meta_rpc_resp r = { 0 };
	REQ(m, META_RPC_STATFS);
	int rc = call_plain(c, cr, m, &r, 0);
	if (rc == 0)
		*out = r.statfs;
	return rc;
}

int meta_client_create(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		       struct meta_name name, uint32_t mode, unsigned flags,
		       struct meta_inode *out, uint64_t *session)
{
	REQ(m, META_RPC_CREATE);
	m->ino = parent;
	m->name = name;
	m->mode = mode;
	m->flags = flags;
	return call_inode(c, cr, m, out, session);
}

int meta_client_create_dir(meta_client *c, const struct meta_cred *cr, uint64_t parent,
			   struct meta_name name, uint32_t mode, unsigned flags,
			   struct meta_inode *out, uint64_t *session, struct meta_inode *dir)
{
	dir->ino = 0;
	if (!atomic_load_explicit(&c->no_dir_replies, memory_order_relaxed)) {
		struct meta_rpc_resp r = { .inode = out, .dir = dir };
		/* on the stack: 1.3 KiB, past glibc's thread cache (every create
		 * through the mount comes here) */
		struct meta_rpc_req m = { .type = META_RPC_CREATE_DIR, .ino = parent, .name = name,
					  .mode = mode, .flags = flags };
		int rc = call(c, cr, &m, &r, 0);
		if (rc != -CFS_EBADMSG_TYPE) {
			if (rc == 0 && session)
				*session = r.session;
			if (rc)
				dir->ino = 0;
			return rc;
		}
		atomic_store_explicit(&c->no_dir_replies, 1, memory_order_relaxed);
		dir->ino = 0;
	}
	return meta_client_create(c, cr, parent, name, mode, flags, out, session);
}

int meta_client_open(meta_client *c, const struct meta_cred *cr, uint64_t ino, unsigned flags,
		     struct meta_inode *out, uint64_t *session)
{
	REQ(m, META_RPC_OPEN);
	m->ino = ino;
	m->flags = flags;
	return call_inode(c, cr, m, out, session);
}

/* Calls whose reply may carry inline bytes: copied into D (may be NULL)
 * before the reply buffer goes; *has (may be NULL) says whether they came. */
static int call_idata(meta_client *c, const struct meta_cred *cr, struct meta_rpc_req *m,
		      struct meta_inode *out, uint64_t *session, struct meta_idata_out *d,
		      int *has)
{
	struct meta_rpc_resp r = { .inode = out };
	struct buf keep = BUF_INIT;
	int rc = call_keep(c, cr, m, &r, 0, &keep);
	if (has)
		*has = 0;
	if (rc == 0 && session)
		*session = r.session;
	if (rc == 0 && r.has_idata && d) {
		if (r.idata_len)
			memcpy(d->buf, r.idata, r.idata_len);
		d->len = r.idata_len;
		d->ver = r.idata_ver;
		d->flags = r.idata_flags;
		if (has)
			*has = 1;
	}
	buf_fini(&keep);
	free(m);
	return rc;
}

int meta_client_open_idata(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			   unsigned flags, struct meta_inode *out, uint64_t *session,
			   struct meta_idata_out *d, int *has)
{
	REQ(m, META_RPC_OPEN);
	m->ino = ino;
	m->flags = flags | META_O_IDATA;
	return call_idata(c, cr, m, out, session, d, has);
}

int meta_client_idata_write(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			    uint64_t off, const void *data, size_t len, struct meta_inode *out)
{
	if (len > META_IDATA_MAX)
		return -CFS_ENOTINLINE;
	REQ(m, META_RPC_IDATA_WRITE);
	m->ino = ino;
	m->off = off;
	m->data = data;
	m->data_len = (uint32_t)len;
	return call_inode(c, cr, m, out, NULL);
}

int meta_client_idata_read(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			   struct meta_inode *out, struct meta_idata_out *d, int *has)
{
	REQ(m, META_RPC_IDATA_READ);
	m->ino = ino;
	return call_idata(c, cr, m, out, NULL, d, has);
}

int meta_client_idata_begin(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			    struct meta_inode *out, struct meta_idata_out *d)
{
	int has = 0;
	REQ(m, META_RPC_IDATA_CONVERT);
	m->ino = ino;
	m->count = META_RPC_IDATA_BEGIN;
	int rc = call_idata(c, cr, m, out, NULL, d, &has);
	return rc == 0 && !has ? -CFS_EPROTO : rc;
}

int meta_client_idata_commit(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			     uint64_t ver, unsigned flags, struct meta_inode *out)
{
	REQ(m, META_RPC_IDATA_CONVERT);
	m->ino = ino;
	m->count = META_RPC_IDATA_COMMIT;
	m->flags = flags;
	m->ver = ver;
	return call_inode(c, cr, m, out, NULL);
}

/* SYNC (QUERY) and FSYNC: LEN (may be NULL) the length the client knows;
 * *SIZE (may be NULL) the size in the reply. */
static int sync_call(meta_client *c, const struct meta_cred *cr, uint16_t type, uint64_t ino,
		     const struct meta_length *len, int query, uint64_t *size)
{
	struct meta_rpc_resp r = { 0 };
	REQ(m, type);
	m->ino = ino;
	m->has_len = len != NULL;
	if (len)
		m->len = *len;
	m->query = query ? 1 : 0;
	int rc = call_plain(c, cr, m, &r, ino);
	if (rc == 0 && size)
		*size = r.size;
	return rc;
}

int meta_client_sync(meta_client *c, const struct meta_cred *cr, uint64_t ino,
		     const struct meta_length *len, int query, uint64_t *size)
{
	return sync_call(c, cr, META_RPC_SYNC, ino, len, query, size);
}

/* CLOSE of SESSION with FLAGS (META_CLOSE_*); LEN may be NULL. */
static int close_call(meta_client *c, const struct meta_cred *cr, uint64_t ino,
		      uint64_t session, unsigned flags, const struct meta_length *len)
{
	REQ(m, META_RPC_CLOSE);
	m->ino = ino;
	m->ino2 = session;
	m->flags = flags;
	m->has_len = len != NULL;
	if (len)
		m->len = *len;
	return call_plain(c, cr, m, NULL, ino);
}

int meta_client_close(meta_client *c, const struct meta_cred *cr, uint64_t ino, uint64_t session,
		      const struct meta_length *len)
{
	return close_call(c, cr, ino, session, 0, len);
}

int meta_client_close_known(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			    uint64_t session, const struct meta_length *len)
{
	return close_call(c, cr, ino, session, META_CLOSE_LEN_KNOWN, len);
}

int meta_client_close_many(meta_client *c, const uint64_t *pairs, int n)
{
	if (n < 1 || n > META_CLOSE_MANY_MAX)
		return -EINVAL;
	struct meta_cred cr = { 0, 0, 0, NULL };
	int rc = -CFS_EBADMSG_TYPE;
	if (!atomic_load_explicit(&c->no_close_many, memory_order_relaxed)) {
		uint8_t data[16 * META_CLOSE_MANY_MAX];
		for (int i = 0; i < 2 * n; i++)
			wire_store_u64(data + 8 * i, pairs[i]);
		REQ(m, META_RPC_CLOSE_MANY);
		m->data = data;
		m->data_len = (uint32_t)(16 * n);
		rc = call_plain(c, &cr, m, NULL, 0);
		if (rc == -CFS_EBADMSG_TYPE)
			atomic_store_explicit(&c->no_close_many, 1, memory_order_relaxed);
	}
	if (rc != -CFS_EBADMSG_TYPE)
		return rc;
	rc = 0;
	for (int i = 0; i < n; i++) {
		int r = meta_client_close_known(c, &cr, pairs[2 * i], pairs[2 * i + 1], NULL);
		if (r < 0 && rc == 0)
			rc = r;
	}
	return rc;
}

int meta_client_fsync(meta_client *c, const struct meta_cred *cr, uint64_t ino,
		      const struct meta_length *len, uint64_t *size)
{
	return sync_call(c, cr, META_RPC_FSYNC, ino, len, 0, size);
}

int meta_client_mkdir(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		      struct meta_name name, uint32_t mode, struct meta_inode *out)
{
	REQ(m, META_RPC_MKDIR);
	m->ino = parent;
	m->name = name;
	m->mode = mode;
	return call_inode(c, cr, m, out, NULL);
}

int meta_client_mknod(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		      struct meta_name name, uint32_t mode, uint64_t rdev, struct meta_inode *out)
{
	REQ(m, META_RPC_MKNOD);
	m->ino = parent;
	m->name = name;
	m->mode = mode;
	m->rdev = rdev;
	return call_inode(c, cr, m, out, NULL);
}

int meta_client_rmdir(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		      struct meta_name name)
{
	return name_call(c, cr, META_RPC_RMDIR, parent, name);
}

int meta_client_unlink(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		       struct meta_name name)
{
	return name_call(c, cr, META_RPC_UNLINK, parent, name);
}

int meta_client_unlink_dir(meta_client *c, const struct meta_cred *cr, uint64_t parent,
			   struct meta_name name, struct meta_inode *dir)
{
	dir->ino = 0;
	if (!atomic_load_explicit(&c->no_dir_replies, memory_order_relaxed)) {
		struct meta_rpc_resp r = { .dir = dir };
		/* on the stack, as meta_client_create_dir's (every unlink
		 * through the mount comes here) */
		struct meta_rpc_req m = { .type = META_RPC_UNLINK_DIR, .ino = parent, .name = name };
		int rc = call(c, cr, &m, &r, 0);
		if (rc != -CFS_EBADMSG_TYPE) {
			if (rc)
				dir->ino = 0;
			return rc;
		}
		atomic_store_explicit(&c->no_dir_replies, 1, memory_order_relaxed);
		dir->ino = 0;
	}
	return meta_client_unlink(c, cr, parent, name);
}

int meta_client_rename(meta_client *c, const struct meta_cred *cr, uint64_t sparent,
		       struct meta_name sname, uint64_t dparent, struct meta_name dname,
		       unsigned flags)
{
	REQ(m, META_RPC_RENAME);
	m->ino = sparent;
	m->name = sname;
	m->ino2 = dparent;
	m->name2 = dname;
	m->flags = flags;
	return call_plain(c, cr, m, NULL, 0);
}

int meta_client_link(meta_client *c, const struct meta_cred *cr, uint64_t ino, uint64_t parent,
		     struct meta_name name, struct meta_inode *out)
{
	REQ(m, META_RPC_LINK);
	m->ino = ino;
	m->ino2 = parent;
	m->name = name;
	return call_inode(c, cr, m, out, NULL);
}

int meta_client_symlink(meta_client *c, const struct meta_cred *cr, uint64_t parent,
			struct meta_name name, struct meta_name target, struct meta_inode *out)
{
	if (target.n > NAME_SEND_MAX)
		return -ENAMETOOLONG;
	REQ(m, META_RPC_SYMLINK);
	m->ino = parent;
	m->name = name;
	m->data = (const uint8_t *)target.p;
	m->data_len = (uint32_t)target.n;
	return call_inode(c, cr, m, out, NULL);
}

int meta_client_readlink(meta_client *c, const struct meta_cred *cr, uint64_t ino, char *buf,
			 size_t cap)
{
	struct meta_rpc_resp r = { 0 };
	struct buf keep = BUF_INIT;
	REQ(m, META_RPC_READLINK);
	m->ino = ino;
	int rc = call_keep(c, cr, m, &r, 0, &keep);
	free(m);
	if (rc == 0) {
		size_t n = r.data_len < cap ? r.data_len : cap;
		if (n)
			memcpy(buf, r.data, n);
		if (r.data_len < cap)
			buf[r.data_len] = 0;
		rc = (int)r.data_len;
	}
	buf_fini(&keep);
	return rc;
}

/* READDIR and DIRLIST share the request and the reply's entries; DIRLIST
 * adds the directory's change count read in the same snapshot. */
static int dir_page(meta_client *c, const struct meta_cred *cr, uint16_t op, uint64_t dir,
		    struct meta_name cursor, struct meta_dirent *ents, int max, int *n, int *eof,
		    uint64_t *ver)
{
	if (max <= 0)
		return -EINVAL;
	struct meta_rpc_resp r = { .ents = ents, .ents_cap = max };
	REQ(m, op);
	m->ino = dir;
	m->name = cursor;
	m->count = (uint32_t)(max > META_RPC_READDIR_MAX ? META_RPC_READDIR_MAX : max);
	int rc = call_plain(c, cr, m, &r, 0);
	if (rc == 0) {
		*n = r.n;
		*eof = r.eof;
		if (ver)
			*ver = r.dir_ver;
	}
	return rc;
}

int meta_client_readdir(meta_client *c, const struct meta_cred *cr, uint64_t dir,
			struct meta_name cursor, struct meta_dirent *ents, int max, int *n,
			int *eof)
{
	return dir_page(c, cr, META_RPC_READDIR, dir, cursor, ents, max, n, eof, NULL);
}

int meta_client_dir_list(meta_client *c, const struct meta_cred *cr, uint64_t dir,
			 struct meta_name cursor, struct meta_dirent *ents, int max, int *n,
			 int *eof, uint64_t *ver)
{
	return dir_page(c, cr, META_RPC_DIRLIST, dir, cursor, ents, max, n, eof, ver);
}

int meta_client_setxattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			 struct meta_name name, const void *val, size_t len, unsigned flags)
{
	if (len > UINT32_MAX)
		return -E2BIG;
	REQ(m, META_RPC_SETXATTR);
	m->ino = ino;
	m->name = name;
	m->data = val;
	m->data_len = (uint32_t)len;
	m->flags = flags;
	return call_plain(c, cr, m, NULL, 0);
}

/* Calls whose reply data is copied into BUF (CAP bytes; -ERANGE when it
 * does not fit, 0: just the size); returns the reply's size. */
static int call_copy(meta_client *c, const struct meta_cred *cr, struct meta_rpc_req *m,
		     void *buf, size_t cap)
{
	struct meta_rpc_resp r = { 0 };
	struct buf keep = BUF_INIT;
	int rc = call_keep(c, cr, m, &r, 0, &keep);
	free(m);
	if (rc == 0)
		rc = copy_out(&r, r.size, buf, cap, 0);
	buf_fini(&keep);
	return rc;
}

int meta_client_getxattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			 struct meta_name name, void *buf, size_t cap)
{
	REQ(m, META_RPC_GETXATTR);
	m->ino = ino;
	m->name = name;
	m->count = cap > META_XATTR_VALUE_MAX ? META_XATTR_VALUE_MAX : (uint32_t)cap;
	return call_copy(c, cr, m, buf, cap);
}

int meta_client_listxattr(meta_client *c, const struct meta_cred *cr, uint64_t ino, char *buf,
			  size_t cap)
{
	REQ(m, META_RPC_LISTXATTR);
	m->ino = ino;
	m->count = cap > META_RPC_LIST_MAX ? META_RPC_LIST_MAX : (uint32_t)cap;
	return call_copy(c, cr, m, buf, cap);
}

int meta_client_removexattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			    struct meta_name name)
{
	return name_call(c, cr, META_RPC_REMOVEXATTR, ino, name);
}

int meta_client_layout_get(meta_client *c, const struct meta_cred *cr, uint64_t ino, int *has,
			   struct meta_layout *out)
{
	struct meta_rpc_resp r = { .layout = out };
	REQ(m, META_RPC_LAYOUT_GET);
	m->ino = ino;
	int rc = call_plain(c, cr, m, &r, 0);
	if (rc == 0)
		*has = r.has_layout;
	return rc;
}

int meta_client_layout_set(meta_client *c, const struct meta_cred *cr, uint64_t dir,
			   uint32_t chunk_size, uint32_t stripe, uint32_t table_id)
{
	REQ(m, META_RPC_LAYOUT_SET);
	m->ino = dir;
	m->chunk_size = chunk_size;
	m->stripe = stripe;
	m->table_id = table_id;
	return call_plain(c, cr, m, NULL, 0);
}

/* ---- file locks ---- */

int meta_client_lock_set(meta_client *c, uint64_t ino, const struct meta_lock *l)
{
	REQ(m, META_RPC_LOCK_SET);
	m->ino = ino;
	m->lock = *l;
	return call_plain(c, NULL, m, NULL, 0);
}

int meta_client_lock_get(meta_client *c, uint64_t ino, const struct meta_lock *l,
			 struct meta_lock *out)
{
	struct meta_rpc_resp r = { 0 };
	REQ(m, META_RPC_LOCK_GET);
	m->ino = ino;
	m->lock = *l;
	int rc = call_plain(c, NULL, m, &r, 0);
	if (rc < 0)
		return rc;
	if (r.has_lock && out)
		*out = r.lock;
	return r.has_lock;
}

int meta_client_lock_release(meta_client *c, uint64_t ino, uint64_t owner, unsigned kinds)
{
	REQ(m, META_RPC_LOCK_RELEASE);
	m->ino = ino;
	m->lock.owner = owner;
	m->flags = kinds;
	return call_plain(c, NULL, m, NULL, 0);
}

/* LOOKUP_PLUS with FN, or LOOKUP_PLUSD with FND. */
static int lookup_plus_call(meta_client *c, const struct meta_cred *cr, uint64_t dir,
			    struct meta_name start, int max, meta_plus_fn fn, meta_plusd_fn fnd,
			    void *arg, int *eof)
{
	*eof = 0;
	if (max <= 0 || max > META_PLUS_MAX)
		return -EINVAL;
	struct meta_rpc_resp r = { 0 };
	struct buf keep = BUF_INIT;
	struct meta_inode *in = malloc(sizeof(*in));
	struct meta_rpc_req *m = req_new(fnd ? META_RPC_LOOKUP_PLUSD : META_RPC_LOOKUP_PLUS);
	if (!in || !m) {
		free(in);
		free(m);
		return -ENOMEM;
	}
	m->ino = dir;
	m->name = start;
	m->count = (uint32_t)max;
	int rc = call_keep(c, cr, m, &r, 0, &keep);
	if (rc == 0) {
		/* the decoder checked every entry: next cannot fail here */
		const uint8_t *p = r.data, *bytes = NULL;
		size_t left = r.data_len;
		struct meta_dirent de;
		struct meta_idata_out d = { 0 };
		for (int i = 0; i < r.n && rc == 0; i++) {
			rc = fnd ? meta_rpc_plusd_next(&p, &left, &de, in, &bytes, &d.len)
			         : meta_rpc_plus_next(&p, &left, &de, in);
			d.buf = (uint8_t *)(uintptr_t)bytes;
			if (rc == 0)
				rc = fnd ? fnd(arg, &de, in, bytes ? &d : NULL) : fn(arg, &de, in);
		}
		if (rc > 0)
			rc = 0;
		*eof = rc == 0 && r.eof;
	}
	buf_fini(&keep);
	free(m);
	free(in);
	return rc;
}

int meta_client_lookup_plus(meta_client *c, const struct meta_cred *cr, uint64_t dir,
			    struct meta_name start, int max, meta_plus_fn fn, void *arg,
			    int *eof)
{
	return lookup_plus_call(c, cr, dir, start, max, fn, NULL, arg, eof);
}

int meta_client_lookup_plus_idata(meta_client *c, const struct meta_cred *cr, uint64_t dir,
				  struct meta_name start, int max, meta_plusd_fn fn, void *arg,
				  int *eof)
{
	return lookup_plus_call(c, cr, dir, start, max, NULL, fn, arg, eof);
}

int meta_client_dir_versions(meta_client *c, const uint64_t *dirs, size_t n, uint64_t *out)
{
	if (n > META_RPC_DIRVER_MAX)
		return -EINVAL;
	uint8_t *in = malloc(n ? 8 * n : 1);
	if (!in)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		wire_store_u64(in + 8 * i, dirs[i]);
	struct meta_cred cr = { 0, 0, 0, NULL };
	struct meta_rpc_resp r = { 0 };
	struct buf keep = BUF_INIT;
	struct meta_rpc_req *m = req_new(META_RPC_DIRVER);
	if (!m) {
		free(in);
		return -ENOMEM;
	}
	m->data = in;
	m->data_len = (uint32_t)(8 * n);
	int rc = call_keep(c, &cr, m, &r, 0, &keep);
	if (rc == 0 && r.data_len != 8 * n)
		rc = -CFS_EPROTO;
	for (size_t i = 0; rc == 0 && i < n; i++)
		out[i] = wire_load_u64(r.data + 8 * i);
	buf_fini(&keep);
	free(m);
	free(in);
	return rc;
}
