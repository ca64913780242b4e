/* meta_service.c - the metadata-service instance: RPC handlers, worker
 * pool, background thread (meta_service.h).
 *
 * Request path:
 *
 *   loop thread: handler() ---push---> queue ---pop---> worker thread:
 *                (no decode, no KV)                      decode, meta_*() op,
 *                                                        encode, rpc_reply()
 *
 * The queue is a bounded ring guarded by mu; a full queue or a stopping
 * service answers -CFS_EUNAVAIL at once, which clients treat as "try another
 * instance". Workers own per-thread scratch (an inode, a readdir array, an
 * xattr buffer, the reply buffer), so the steady state allocates nothing
 * per request except the RPC layer's own. INFO and ECHO need no KV and are
 * answered on the loop thread (ECHO is the transport baseline of `chainfs
 * bench meta`).
 *
 * Inline reads. On a KV engine whose reads never wait on anything but the
 * memory map (lmdb: a read txn is a snapshot of the map, no lock held
 * against writers), read-only operations (lookup, getattr, access,
 * readlink, readdir, getxattr, listxattr, layout get) run on the loop
 * thread itself, with scratch taken from a small pool (one per loop
 * thread): that saves the two thread hand-offs (loop -> worker -> loop) of
 * the queued path, which dominate a stat. Mutations, statfs and sync (they
 * commit or call storage) and every operation on etcd (reads are HTTP
 * calls) keep going through the queue. A request that finds the pool
 * empty is queued.
 *
 * Inline mutations. When the engine is lmdb and its commits do not wait for
 * the disk (sync=window, the `chainfs up` default, or none), the namespace
 * mutations that touch nothing but the KV (create, mkdir, mknod, unlink,
 * rmdir, rename, link, symlink: meta_ns.c) run on the loop thread the same
 * way: a commit then costs a memory copy, not a sync, and the worker
 * hand-off was most of a create's time (`chainfs bench meta`, 1 client:
 * creates x4..x7). setattr (truncate calls storage), close (may query
 * storage), locks, sync and everything on sync=full or etcd stay queued.
 *
 * Errors: a payload that does not decode is answered -CFS_EPROTO with a
 * message naming the message type (the RPC layer then closes that
 * connection, as for any protocol error); a field over its POSIX limit is
 * answered with that errno; every operation error goes back as -errno /
 * -CFS_E* with the operation's name and cfs_strerror text. The process
 * never exits on a request.
 *
 * Invariants: every request popped by a worker or rejected by a handler is
 * replied to exactly once; rpc_server_free runs only after the workers
 * have drained the queue and exited (handlers reject once `stopping` is
 * set, under mu).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "common/xalloc.h"
#include "kv/kv.h"
#include "meta/meta.h"
#include "meta/meta_dispatch.h"
#include "meta/meta_kvc_proto.h"
#include "meta/meta_kvcache.h"
#include "meta/meta_lock.h"
#include "meta/meta_proto.h"
#include "meta/meta_service.h"
#include "meta/meta_storage.h"
#include "mgmtd/mgmtd_client.h"
#include "mgmtd/routing.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"

#define MAX_TABLES 16
#define IDEM_PRUNE_EVERY_NS (60LL * 1000000000LL)
#define GC_COALESCE_MS 50     /* a kicked GC waits this long for more files (bg_main) */
#define KICK_HELD_MAX 64      /* GC_KICKs held for their reply (gc_kick_handler) */
#define GC_STEPS_PER_PASS 256 /* GC batches per pass (each up to GC_BATCH files) */
#define GC_BATCH 16
/* How long a stop waits for the workers and the background thread before
 * it cancels every KV call (kv_cancel): cut off from etcd, each call would
 * fail over between members for its op timeout and be retried by kv_run,
 * and SIGTERM would wait for every queued request that way (as in
 * mgmtd_service.c). kv_cancel ends a call in flight within about a second,
 * so a stop takes about 2 s at most in any state. */
#define STOP_KV_GRACE_MS 1000
#define SUSPECTS_MAX 4096 /* clients with sessions whose node routing does not list */

struct chain_table_spec {
	uint32_t id, first, count;
};

/* A managed client id with sessions that routing did not list (see
 * "Dead clients" at prune_sessions). */
struct suspect {
	uint64_t client;
	uint64_t since_ms; /* mono ms of the first pass that missed it */
	int seen;          /* met in the current pass */
};

struct worker {
	struct meta_service *svc;
	pthread_t th;
	struct meta_scratch sc; /* meta_dispatch's scratch */
};

struct meta_service {
	kv_engine *kv;
	meta_ctx *meta;
	struct rpc_server *rpc;
	uint64_t instance_id;
	int nworkers;
	struct worker **workers;

	pthread_mutex_t inline_mu; /* guards inline_free, inline_nfree */
	struct worker **inline_free; /* scratch of loop threads running inline reads */
	int ninline, inline_nfree;   /* pool size (0: inline reads off), free count */

	pthread_mutex_t mu;        /* guards the queue fields and stopping */
	pthread_cond_t cv;         /* workers wait for requests */
	struct rpc_req **ring;     /* queue_max slots */
	uint32_t cap, head, len;
	int idle;                  /* workers waiting on cv */
	int stopping;

	pthread_t bg;              /* background thread */
	pthread_mutex_t bg_mu;     /* guards bg_stop, gc_kicked */
	pthread_cond_t bg_cv;
	int bg_stop;
	int gc_kicked;             /* an op may have queued a file for GC */
	struct rpc_req *kick_held[KICK_HELD_MAX]; /* GC_KICKs answered when GC next starts */
	int nkick_held;
	int bg_started;
	uint32_t bg_interval_ms;
	int gc_enabled;            /* a storage service is wired */
	struct meta_chains *chains_store; /* META_STORAGE_CHAINS; freed after bg and workers */

	struct chain_table_spec tables[MAX_TABLES];
	int ntables;
	struct mgmtd_client *mgmtd; /* NULL: static tables, no session pruning */

	/* Dead-client session pruning; bg thread only. */
	uint32_t session_check_ms;  /* period of a check */
	uint32_t absent_grace_ms;   /* an unlisted node counts dead after this */
	uint64_t last_check_ms;     /* mono ms of the last check */
	struct suspect *suspects;   /* SUSPECTS_MAX slots */
	size_t nsuspects;
	int suspects_full_warned;

	_Atomic uint64_t bad_requests; /* payloads that failed to decode */
	/* CFS_TEST_META_TIMEDOUT=TYPE (test hook, 0: off): the first request
	 * of TYPE is answered -CFS_ETIMEDOUT without running, as meta's own
	 * "resend this" answers (meta_attr.c setattr_body) */
	uint16_t timedout_type;
	atomic_int timedout_fired;
};

/* ---- chain-table view: routing from mgmtd, else static ---- */

static int view_table(void *arg, uint32_t table_id, uint32_t *chains, uint32_t cap)
{
	struct meta_service *s = arg;
	if (s->mgmtd)
		return meta_routing_table(s->mgmtd, table_id, chains, cap);
	for (int i = 0; i < s->ntables; i++) {
		const struct chain_table_spec *t = &s->tables[i];
		if (t->id != table_id)
			continue;
		for (uint32_t k = 0; k < t->count && k < cap; k++)
			chains[k] = t->first + k;
		return (int)t->count;
	}
	return -ENOENT;
}

/* "ID:FIRST-LAST[,ID:FIRST-LAST...]" */
static int parse_tables(struct meta_service *s, const char *spec, char *err, size_t errlen)
{
	const char *p = spec;
	s->ntables = 0;
	while (*p) {
		unsigned id, first, last;
		int used = 0;
		if (s->ntables == MAX_TABLES ||
		    sscanf(p, "%u:%u-%u%n", &id, &first, &last, &used) != 3 || last < first ||
		    last - first >= 65536 || id == 0 || first == 0) {
			snprintf(err, errlen, "bad --chain-tables '%s': want ID:FIRST-LAST[,...] "
				 "(at most %d tables, ids > 0)", spec, MAX_TABLES);
			return -EINVAL;
		}
		s->tables[s->ntables++] = (struct chain_table_spec){ id, first, last - first + 1 };
		p += used;
		if (*p == ',')
			p++;
		else if (*p) {
			snprintf(err, errlen, "bad --chain-tables '%s': junk at '%s'", spec, p);
			return -EINVAL;
		}
	}
	return 0;
}

/* Fills *ST with the storage service of O->storage and sets s->gc_enabled
 * when GC can make progress. Chains need the mgmtd client (start_mgmtd
 * first). 0 or <0 with a message in ERR. */
static int storage_for(struct meta_service *s, const struct meta_service_opts *o,
		       struct meta_storage *st, char *err, size_t errlen)
{
	if (o->storage == META_STORAGE_CHAINS) {
		const char *addrs[16];
		char list[1024], *save = NULL;
		size_t n = 0;
		if (!s->mgmtd) {
			snprintf(err, errlen, "storage chains needs mgmtd addresses");
			return -EINVAL;
		}
		snprintf(list, sizeof(list), "%s", o->mgmtd);
		for (char *t = strtok_r(list, ",", &save); t && n < 16;
		     t = strtok_r(NULL, ",", &save))
			addrs[n++] = t;
		struct meta_chains_opts co = {
			.cluster_id = o->cluster_id, .secret = o->secret,
			.secret_len = o->secret_len, .mgmtd_addrs = addrs, .n_mgmtd = n,
			.mgmtd = s->mgmtd,
		};
		int rc = meta_chains_new(&co, &s->chains_store, err, errlen);
		if (rc)
			return rc;
		*st = meta_chains_storage(s->chains_store);
		s->gc_enabled = 1;
		return 0;
	}
	s->gc_enabled = 0;
	*st = meta_storage_none();
	return 0;
}

/* ---- request execution (worker threads) ---- */

static void reply_err(struct rpc_req *req, const char *op, int rc, const char *detail)
{
	char text[RPC_ERROR_TEXT_MAX];
	snprintf(text, sizeof(text), "%s: %s%s%s", op, cfs_strerror(rc), detail ? ": " : "",
		 detail ? detail : "");
	rpc_reply_error(req, rc, text);
}


/* Wakes the background thread for GC after an operation that can queue a
 * file (unlink, rename over a file), so space comes back within a GC
 * batch's time instead of at the next pass. Cheap when GC is already
 * awake: one flag. A close that lets an unlinked file go is left to the
 * next pass (bg_interval_ms): waking GC at every close costs a claim
 * scan per file written. */
static void gc_kick(struct meta_service *s, uint16_t type)
{
	if (!s->gc_enabled || (type != META_RPC_UNLINK && type != META_RPC_UNLINK_DIR &&
				type != META_RPC_RENAME && type != META_RPC_GC_KICK))
		return;
	/* A GC pass clears gc_kicked under bg_mu before it reads the queue, so
	 * a kick that finds it set is still served by a pass that starts
	 * after the kick's change committed (GC_KICK relies on it). */
	pthread_mutex_lock(&s->bg_mu);
	if (!s->gc_kicked) {
		s->gc_kicked = 1;
		pthread_cond_signal(&s->bg_cv);
	}
	pthread_mutex_unlock(&s->bg_mu);
}

/* KVCache index messages (250..259, meta_kvcache.h): their own codec and
 * operations; the worker only decodes, runs and replies. */
static void serve_kvc(struct worker *w, struct rpc_req *req, uint16_t type)
{
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	const char *op = kvc_rpc_name(type);
	struct kvc_msg m, r;
	char err[256] = "";
	int rc = kvc_msg_decode(p, plen, &m);
	if (rc == 0 && m.type != type)
		rc = -CFS_EPROTO;
	if (rc) {
		if (rc == -CFS_EPROTO)
			atomic_fetch_add_explicit(&w->svc->bad_requests, 1, memory_order_relaxed);
		reply_err(req, op, rc, rc == -CFS_EPROTO ? "malformed payload" : NULL);
		kvc_msg_fini(&m);
		return;
	}
	rc = meta_kvc_serve(w->svc->kv, &m, &r, err, sizeof(err));
	if (rc) {
		reply_err(req, op, rc, *err ? err : NULL);
	} else {
		buf_reset(&w->sc.out);
		rc = kvc_msg_encode(&w->sc.out, &r);
		if (rc == 0)
			rpc_reply(req, 0, w->sc.out.data, (uint32_t)w->sc.out.len);
		else
			reply_err(req, op, rc, "encoding the reply");
		kvc_msg_fini(&r);
	}
	kvc_msg_fini(&m);
}

/* The reply text of a request refused because the store takes no writes
 * (kv_write_error: lmdb after a failed sync of its file, kv_lmdb.c
 * sync_sticky). The service stays up: reads are answered as before. */
static void writes_refused(char *err, size_t errlen, uint16_t type)
{
	snprintf(err, errlen,
	         "%s: meta refuses writes: a sync of its metadata store failed (disk I/O "
	         "error), so later commits could become durable on top of lost pages; "
	         "reads go on; restart meta once the disk is repaired (see its log)",
	         meta_rpc_name(type));
}

/* Serves REQ on W. KV_ONLY (a loop thread: read_handler): only a request
 * that touches nothing but the KV runs; another form of its type (a create
 * that may truncate an existing file on storage) is left untouched and
 * META_DISPATCH_PASS returned, for a worker. Else 0. */
static int serve(struct worker *w, struct rpc_req *req, int kv_only)
{
	char err[RPC_ERROR_TEXT_MAX];
	uint16_t type = rpc_req_type(req);
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	int malformed, rc;

	if (kvc_rpc_name(type)) {
		serve_kvc(w, req, type);
		return 0;
	}
	if (type == w->svc->timedout_type && !atomic_exchange(&w->svc->timedout_fired, 1)) {
		LOG_NOTICE("meta", "test hook: %s answered -CFS_ETIMEDOUT", meta_rpc_name(type));
		rpc_reply_error(req, -CFS_ETIMEDOUT, "test hook: CFS_TEST_META_TIMEDOUT");
		return 0;
	}
	if (meta_rpc_is_mutation(type) && kv_write_error(w->svc->kv)) {
		writes_refused(err, sizeof(err), type);
		rpc_reply_error(req, -EIO, err);
		return 0;
	}
	if (kv_only)
		rc = meta_dispatch_kv_only(w->svc->meta, &w->sc, type, p, plen, err, sizeof(err),
					   &malformed);
	else
		rc = meta_dispatch(w->svc->meta, &w->sc, type, p, plen, err, sizeof(err),
				   &malformed);
	if (rc == META_DISPATCH_PASS)
		return rc;
	if (rc == -EIO && kv_write_error(w->svc->kv))
		writes_refused(err, sizeof(err), type); /* a write of a request typed read-only */
	if (malformed) {
		atomic_fetch_add_explicit(&w->svc->bad_requests, 1, memory_order_relaxed);
		LOG_WARN("meta", "malformed request: peer=%s type=%s len=%u", rpc_req_peer(req),
			 meta_rpc_name(type), plen);
	}
	if (rc) {
		rpc_reply_error(req, rc, err);
		return 0;
	}
	rpc_reply(req, 0, w->sc.out.data, (uint32_t)w->sc.out.len);
	gc_kick(w->svc, type);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct meta_service *s = w->svc;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->len && !s->stopping) {
			s->idle++;
			pthread_cond_wait(&s->cv, &s->mu);
			s->idle--;
		}
		if (!s->len)
			break;
		struct rpc_req *req = s->ring[s->head];
		s->head = (s->head + 1) % s->cap;
		s->len--;
		pthread_mutex_unlock(&s->mu);
		serve(w, req, 0);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---- loop-thread handlers ---- */

static void queue_handler(struct rpc_req *req, void *arg)
{
	struct meta_service *s = arg;
	pthread_mutex_lock(&s->mu);
	if (s->stopping || s->len == s->cap) {
		int stopping = s->stopping;
		pthread_mutex_unlock(&s->mu);
		rpc_reply_error(req, -CFS_EUNAVAIL, stopping ? "meta: instance stopping"
							     : "meta: request queue full");
		return;
	}
	s->ring[(s->head + s->len) % s->cap] = req;
	s->len++;
	if (s->idle)
		pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Read-only operations on the loop thread (see "Inline reads"). */
static void read_handler(struct rpc_req *req, void *arg)
{
	struct meta_service *s = arg;
	struct worker *w = NULL;
	pthread_mutex_lock(&s->inline_mu);
	if (s->inline_nfree)
		w = s->inline_free[--s->inline_nfree];
	pthread_mutex_unlock(&s->inline_mu);
	if (!w) {
		queue_handler(req, arg);
		return;
	}
	int rc = serve(w, req, 1);
	pthread_mutex_lock(&s->inline_mu);
	s->inline_free[s->inline_nfree++] = w;
	pthread_mutex_unlock(&s->inline_mu);
	if (rc == META_DISPATCH_PASS)
		queue_handler(req, arg);
}

/* 1 when URL names an lmdb environment whose commits do not fsync
 * (sync=window, none or relaxed; kv.h). */
static int lmdb_commit_is_fast(const char *url)
{
	const char *q = url ? strchr(url, '?') : NULL;
	if (!q || strncmp(url, "lmdb://", 7))
		return 0;
	for (const char *p = q + 1; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (!strncmp(p, "sync=", 5)) {
			const char *v = p + 5;
			size_t n = strcspn(v, "&");
			return (n == 6 && !strncmp(v, "window", 6)) || (n == 4 && !strncmp(v, "none", 4)) ||
			       (n == 7 && !strncmp(v, "relaxed", 7));
		}
	}
	return 0;
}

static void info_handler(struct rpc_req *req, void *arg)
{
	struct meta_service *s = arg;
	struct meta_rpc_resp r = { .type = META_RPC_INFO, .instance_id = s->instance_id,
				   .threads = (uint32_t)s->nworkers,
				   .info_flags = kv_write_error(s->kv) ? META_INFO_F_NO_WRITES : 0 };
	struct buf b = BUF_INIT;
	if (meta_rpc_resp_encode(&b, &r))
		rpc_reply_error(req, -ENOMEM, "INFO: out of memory");
	else
		rpc_reply(req, 0, b.data, (uint32_t)b.len);
	buf_fini(&b);
}

/* GC_KICK (meta_proto.h) from a mount whose in-process meta committed an
 * unlink or rename: the same wake-up as after our own (gc_kick), on the
 * loop thread (one flag under bg_mu). The reply waits until the GC pass
 * that covers the kick starts (bg_main answers the held kicks when it
 * clears gc_kicked): the mount keeps one kick in flight, so it then kicks
 * about once per GC pass instead of once per round trip while it deletes
 * (a kick per few unlinks cost the FUSE thread a send and meta's loop a
 * wake-up each). The payload is not read: there is nothing in it but the
 * header, and a kick is harmless. */
static void gc_kick_handler(struct rpc_req *req, void *arg)
{
	struct meta_service *s = arg;
	pthread_mutex_lock(&s->bg_mu);
	if (s->gc_enabled && s->bg_started && !s->bg_stop && s->nkick_held < KICK_HELD_MAX) {
		s->kick_held[s->nkick_held++] = req;
		req = NULL;
	}
	pthread_mutex_unlock(&s->bg_mu);
	gc_kick(s, META_RPC_GC_KICK);
	if (req)
		rpc_reply(req, 0, NULL, 0);
}

/* Answers the held GC_KICKs; called with bg_mu held, returns with it. */
static void answer_kicks_locked(struct meta_service *s)
{
	struct rpc_req *r[KICK_HELD_MAX];
	int n = s->nkick_held;
	if (!n)
		return;
	memcpy(r, s->kick_held, (size_t)n * sizeof(r[0]));
	s->nkick_held = 0;
	pthread_mutex_unlock(&s->bg_mu);
	for (int i = 0; i < n; i++)
		rpc_reply(r[i], 0, NULL, 0);
	pthread_mutex_lock(&s->bg_mu);
}

static void echo_handler(struct rpc_req *req, void *arg)
{
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	struct rpc_echo_req m;
	struct buf b = BUF_INIT;
	uint64_t blen = 0;
	if (rpc_echo_req_decode(p, plen, &m)) {
		rpc_reply_error(req, -CFS_EPROTO, "ECHO: malformed payload");
		return;
	}
	rpc_req_bulk(req, &blen);
	struct rpc_echo_resp r = { m.data, m.data_len, blen };
	if (rpc_echo_resp_encode(&b, &r))
		rpc_reply_error(req, -ENOMEM, "ECHO: out of memory");
	else
		rpc_reply(req, 0, b.data, (uint32_t)b.len);
	buf_fini(&b);
}

/* ---- dead clients' write sessions (background thread) ----
 *
 * Dead clients. A managed client (id <= META_CLIENT_NODE_MAX, its mgmtd
 * node id) is dead when the routing snapshot shows its node FAILED: mgmtd
 * has then seen no heartbeat for its timeout T. A node routing does not
 * list at all is either one mgmtd lost or one that registered after our
 * snapshot was taken (a mount opens files right after registering, and our
 * long-poll trails mgmtd by up to a round trip). So an unlisted node counts
 * dead only after every check for absent_grace_ms (2 x fence_ms, i.e. T by
 * the fence_ms = T/2 convention) missed it; a listed node clears it. Checks
 * run only while the instance is not fenced (its snapshot is fresh): a
 * fenced instance does not prune and forgets its suspects, so the grace
 * starts again from the first fresh snapshot. Unmanaged ids are never dead.
 * As in 3FS, a client cut off from mgmtd for longer than T is treated as
 * dead even if it still runs: its sessions go, and a file it had open and
 * that was unlinked may be reclaimed under it (its later close is a no-op).
 */

struct prune_ctx {
	struct meta_service *s;
	const struct route_info *ri;
	uint64_t now_ms;
};

static int client_dead(void *arg, uint64_t client)
{
	struct prune_ctx *p = arg;
	struct meta_service *s = p->s;
	if (client == 0 || client > META_CLIENT_NODE_MAX)
		return 0;
	const struct route_node *n = route_find_node(p->ri, (uint32_t)client);
	if (n)
		return n->state == ROUTE_NODE_FAILED;
	struct suspect *x = NULL;
	for (size_t i = 0; i < s->nsuspects && !x; i++)
		if (s->suspects[i].client == client)
			x = &s->suspects[i];
	if (!x) {
		if (s->nsuspects == SUSPECTS_MAX) {
			if (!s->suspects_full_warned++)
				LOG_WARN("meta", "session prune: more than %d unlisted clients hold "
					 "sessions; the rest wait", SUSPECTS_MAX);
			return 0;
		}
		x = &s->suspects[s->nsuspects++];
		*x = (struct suspect){ client, p->now_ms, 0 };
	}
	x->seen = 1;
	return p->now_ms - x->since_ms >= s->absent_grace_ms;
}

static void prune_sessions(struct meta_service *s)
{
	uint64_t now = clock_mono_ms();
	if (!s->mgmtd || now - s->last_check_ms < s->session_check_ms)
		return;
	s->last_check_ms = now;
	struct mgmtd_routing *snap = mgmtd_client_fenced(s->mgmtd) ? NULL
								     : mgmtd_client_routing(s->mgmtd);
	if (!snap) {
		s->nsuspects = 0;
		return;
	}
	struct prune_ctx p = { s, mgmtd_routing_info(snap), now };
	int rc = meta_session_prune(s->meta, client_dead, &p);
	if (rc < 0)
		LOG_WARN("meta", "session prune failed: %s", cfs_strerror(rc));
	else if (rc > 0)
		LOG_NOTICE("meta", "session prune: dropped=%d routing_version=%" PRIu64, rc,
			   mgmtd_routing_version(snap));
	/* A dead client's file locks go with its sessions (meta_lock.h). */
	rc = meta_lock_prune(s->meta, client_dead, &p);
	if (rc < 0)
		LOG_WARN("meta", "lock prune failed: %s", cfs_strerror(rc));
	else if (rc > 0)
		LOG_NOTICE("meta", "lock prune: dropped=%d routing_version=%" PRIu64, rc,
			   mgmtd_routing_version(snap));
	mgmtd_routing_put(snap);
	/* Keep only suspects met in this pass (the others got a node or lost
	 * their sessions). */
	size_t k = 0;
	for (size_t i = 0; i < s->nsuspects; i++)
		if (s->suspects[i].seen) {
			s->suspects[k] = s->suspects[i];
			s->suspects[k++].seen = 0;
		}
	s->nsuspects = k;
}

/* ---- background thread ---- */

/* Checked between GC steps: each may wait on storage, and stop must not
 * wait for a whole pass. */
static int bg_stopping(struct meta_service *s)
{
	pthread_mutex_lock(&s->bg_mu);
	int stop = s->bg_stop;
	pthread_mutex_unlock(&s->bg_mu);
	return stop;
}

/* Runs GC batches until the queue has nothing eligible or a pass's cap is
 * reached; 1 when it stopped at the cap (more work is waiting). */
static int gc_pass(struct meta_service *s)
{
	for (int i = 0; s->gc_enabled && i < GC_STEPS_PER_PASS && !bg_stopping(s); i++) {
		int rc = meta_gc_batch(s->meta, GC_BATCH);
		if (rc < 0)
			LOG_WARN("meta", "gc step failed: %s", cfs_strerror(rc));
		if (rc <= 0)
			return 0;
	}
	return s->gc_enabled;
}

/* Every bg_interval_ms: session prune, GC, idempotency prune. In between,
 * a kick (gc_kick) or a GC pass that hit its cap runs GC again at once. */
static void *bg_main(void *arg)
{
	struct meta_service *s = arg;
	uint64_t last_prune = clock_mono_ns();
	uint64_t last_pass = clock_mono_ns();
	int more = 0;
	pthread_mutex_lock(&s->bg_mu);
	while (!s->bg_stop) {
		if (!more && !s->gc_kicked) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)s->bg_interval_ms * 1000000u;
			ts.tv_sec += (time_t)(ns / 1000000000u);
			ts.tv_nsec = (long)(ns % 1000000000u);
			pthread_cond_timedwait(&s->bg_cv, &s->bg_mu, &ts);
		}
		/* A kick starts GC GC_COALESCE_MS later, not at once: a
		 * delete-heavy client then gets its files collected GC_BATCH at
		 * a time (three txns and one set of removal threads per batch)
		 * instead of one by one, each competing with its next unlink.
		 * gc_kicked stays set meanwhile, so further kicks do not wake
		 * us; stop does. */
		if (s->gc_kicked && !more && !s->bg_stop) {
			struct timespec dl;
			clock_gettime(CLOCK_REALTIME, &dl);
			uint64_t ns = (uint64_t)dl.tv_nsec + (uint64_t)GC_COALESCE_MS * 1000000u;
			dl.tv_sec += (time_t)(ns / 1000000000u);
			dl.tv_nsec = (long)(ns % 1000000000u);
			while (!s->bg_stop &&
			       pthread_cond_timedwait(&s->bg_cv, &s->bg_mu, &dl) != ETIMEDOUT)
				;
		}
		if (s->bg_stop)
			break;
		s->gc_kicked = 0;
		/* the pass below reads the queue after every held kick's change */
		answer_kicks_locked(s);
		pthread_mutex_unlock(&s->bg_mu);
		if (kv_write_error(s->kv)) {
			/* The store takes no writes (logged by the KV when it
			 * began): every pass would fail; nothing to do until a
			 * restart. */
			more = 0;
			pthread_mutex_lock(&s->bg_mu);
			continue;
		}
		/* a wait that timed out ends a period (give it 10% for the
		 * prune's own time, which started the period late) */
		int full = clock_mono_ns() - last_pass >= (uint64_t)s->bg_interval_ms * 900000u;
		if (full) {
			prune_sessions(s);
			last_pass = clock_mono_ns();
		}
		more = gc_pass(s);
		if (full && clock_mono_ns() - last_prune >= (uint64_t)IDEM_PRUNE_EVERY_NS) {
			int rc = meta_idem_prune(s->meta, META_IDEM_TTL_NS);
			if (rc < 0)
				LOG_WARN("meta", "idempotency prune failed: %s", cfs_strerror(rc));
			else if (rc > 0)
				LOG_INFO("meta", "idempotency prune: deleted=%d", rc);
			last_prune = clock_mono_ns();
		}
		pthread_mutex_lock(&s->bg_mu);
	}
	answer_kicks_locked(s); /* bg_stop is set: the handler holds no more */
	pthread_mutex_unlock(&s->bg_mu);
	return NULL;
}

/* ---- lifecycle ---- */

#define MGMTD_WAIT_MS 10000

/* Registers with mgmtd and waits (bounded) for the first routing info, so
 * the root layout can be checked against real chain tables. The advertised
 * address needs the bound port, so with port 0 and no --advertise the
 * listen port must be given explicitly. */
static int start_mgmtd(struct meta_service *s, const struct meta_service_opts *o, char *err,
		       size_t errlen)
{
	const char *addrs[16];
	char list[1024], *save = NULL;
	size_t n = 0;
	const char *adv = o->advertise && *o->advertise ? o->advertise : o->listen;
	const char *colon = strrchr(adv, ':');
	if (!colon || !strcmp(colon, ":0")) {
		snprintf(err, errlen, "with --mgmtd, give --listen a fixed port or --advertise "
			 "ip:port (got '%s')", adv);
		return -EINVAL;
	}
	snprintf(list, sizeof(list), "%s", o->mgmtd);
	for (char *t = strtok_r(list, ",", &save); t && n < 16; t = strtok_r(NULL, ",", &save))
		addrs[n++] = t;
	struct mgmtd_client_opts mo = {
		.mgmtd_addrs = addrs, .n_mgmtd = n, .cluster_id = o->cluster_id,
		.secret = o->secret, .secret_len = o->secret_len, .type = ROUTE_NODE_META,
		.addr = adv, .fence_ms = o->fence_ms, .heartbeat_ms = o->heartbeat_ms,
	};
	int rc = mgmtd_client_new(&mo, &s->mgmtd, err, errlen);
	if (rc)
		return rc;
	if (mgmtd_client_wait_registered(s->mgmtd, MGMTD_WAIT_MS) ||
	    mgmtd_client_wait_routing(s->mgmtd, 1, MGMTD_WAIT_MS)) {
		snprintf(err, errlen, "mgmtd %s: no registration or routing within %d ms",
			 o->mgmtd, MGMTD_WAIT_MS);
		return -CFS_ETIMEDOUT;
	}
	LOG_NOTICE("meta", "registered with mgmtd: node=%u addr=%s",
		   mgmtd_client_node_id(s->mgmtd), adv);
	return 0;
}

uint16_t meta_service_port(const struct meta_service *s) { return rpc_server_port(s->rpc); }
uint64_t meta_service_instance(const struct meta_service *s) { return s->instance_id; }

int meta_service_start(const struct meta_service_opts *o, struct meta_service **out,
		       char *err, size_t errlen)
{
	struct meta_service *s = NULL;
	int rc;

	if (!o->kv_url || !o->listen || !o->cluster_id || !o->secret) {
		snprintf(err, errlen, "kv url, listen address, cluster id and secret are required");
		return -EINVAL;
	}
	s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->bg_mu, NULL);
	pthread_cond_init(&s->bg_cv, NULL);
	pthread_mutex_init(&s->inline_mu, NULL);
	s->cap = o->queue_max ? o->queue_max : 65536;
	s->ring = xcalloc(s->cap, sizeof(*s->ring));
	s->bg_interval_ms = o->bg_interval_ms ? o->bg_interval_ms : 1000;
	/* Test hook: a long period tells a kicked GC from the periodic one
	 * (test_integ_metalocal gc_kick). */
	const char *tbg = getenv("CFS_TEST_META_BG_MS");
	if (tbg && atoi(tbg) > 0)
		s->bg_interval_ms = (uint32_t)atoi(tbg);
	const char *tto = getenv("CFS_TEST_META_TIMEDOUT");
	if (tto && atoi(tto) > 0 && atoi(tto) < RPC_TYPE_MAX)
		s->timedout_type = (uint16_t)atoi(tto);
	s->session_check_ms = o->session_check_ms ? o->session_check_ms : 5000;
	s->absent_grace_ms = 2 * (o->fence_ms ? o->fence_ms : 5000);
	s->last_check_ms = clock_mono_ms();
	s->suspects = xcalloc(SUSPECTS_MAX, sizeof(*s->suspects));
	s->instance_id = o->instance_id;
	while (!s->instance_id) {
		if (getrandom(&s->instance_id, sizeof(s->instance_id), 0) !=
		    (ssize_t)sizeof(s->instance_id)) {
			snprintf(err, errlen, "no entropy for an instance id");
			rc = -EIO;
			goto fail;
		}
	}
	rc = parse_tables(s, o->chain_tables ? o->chain_tables : "", err, errlen);
	if (rc)
		goto fail;

	rc = kv_open(o->kv_url, &s->kv, err, errlen);
	if (rc)
		goto fail;
	struct meta_opts mo = {
		.instance_id = s->instance_id,
		.root_layout = { .chunk_size = o->chunk_size, .stripe = o->stripe,
				 .table_id = o->table_id },
		.chains = { s, view_table },
		.idata_max = o->idata_max <= META_IDATA_MAX ? o->idata_max : META_IDATA_MAX,
	};
	char lerr[256];
	if (o->mgmtd && *o->mgmtd) {
		rc = start_mgmtd(s, o, err, errlen);
		if (rc)
			goto fail;
	}
	rc = storage_for(s, o, &mo.storage, err, errlen);
	if (rc)
		goto fail;
	if (meta_layout_validate(&mo.root_layout, &mo.chains, lerr, sizeof(lerr))) {
		snprintf(err, errlen, "bad root layout: %s", lerr);
		rc = -EINVAL;
		goto fail;
	}
	rc = meta_new(s->kv, &mo, &s->meta);
	if (rc) {
		snprintf(err, errlen, "meta instance: %s", cfs_strerror(rc));
		goto fail;
	}
	rc = meta_format(s->meta);
	if (rc) {
		snprintf(err, errlen, "formatting the root on %s: %s", o->kv_url, cfs_strerror(rc));
		goto fail;
	}

	struct rpc_opts ro = { .cluster_id = o->cluster_id, .secret = o->secret,
			       .secret_len = o->secret_len,
			       .nthreads = o->loop_threads > 0 ? o->loop_threads : 1 };
	rc = rpc_server_new(&ro, &s->rpc);
	if (rc) {
		snprintf(err, errlen, "rpc server: %s", cfs_strerror(rc));
		goto fail;
	}
	struct rpc_handler hq = { .fn = queue_handler, .arg = s };
	struct rpc_handler hr = { .fn = read_handler, .arg = s };
	struct rpc_handler hi = { .fn = info_handler, .arg = s };
	struct rpc_handler he = { .fn = echo_handler, .arg = s };
	struct rpc_handler hk = { .fn = gc_kick_handler, .arg = s };
	if (o->inline_reads == META_INLINE_AUTO && !strcmp(kv_engine_name(s->kv), "lmdb")) {
		s->ninline = ro.nthreads;
		s->inline_free = xcalloc((size_t)s->ninline, sizeof(*s->inline_free));
		for (int i = 0; i < s->ninline; i++) {
			struct worker *w = xcalloc(1, sizeof(*w));
			w->svc = s;
			buf_init(&w->sc.out);
			s->inline_free[s->inline_nfree++] = w;
		}
	}
	rpc_server_handle(s->rpc, RPC_MSG_ECHO, &he);
	rpc_server_handle(s->rpc, META_RPC_INFO, &hi);
	rpc_server_handle(s->rpc, META_RPC_GC_KICK, &hk);
	int inline_writes = s->ninline && lmdb_commit_is_fast(o->kv_url);
	for (uint16_t t = META_RPC_FIRST + 1; t <= META_RPC_LAST; t++)
		rpc_server_handle(s->rpc, t, s->ninline && (meta_type_read_only(t) ||
							   (inline_writes && meta_type_kv_only_mutation(t)))
					     ? &hr : &hq);
	for (uint16_t t = META_RPC_FSYNC; t <= META_RPC_LAST_240; t++)
		rpc_server_handle(s->rpc, t, &hq);
	rpc_server_handle(s->rpc, META_RPC_DIRVER, s->ninline ? &hr : &hq);
	rpc_server_handle(s->rpc, META_RPC_LOOKUP_PLUS, s->ninline ? &hr : &hq);
	rpc_server_handle(s->rpc, META_RPC_DIRLIST, s->ninline ? &hr : &hq);
	/* CLOSE_MANY only clears session keys: inline like the namespace
	 * mutations when commits do not wait for the disk. */
	rpc_server_handle(s->rpc, META_RPC_CLOSE_MANY, inline_writes ? &hr : &hq);
	rpc_server_handle(s->rpc, META_RPC_LOOKUP_PLUSD, s->ninline ? &hr : &hq);
	for (uint16_t t = META_RPC_FIRST_265; t <= META_RPC_LAST_265; t++)
		rpc_server_handle(s->rpc, t, inline_writes && meta_type_kv_only_mutation(t) ? &hr : &hq);
	/* Inline data: a read and a write touch only the KV, like the
	 * namespace calls above; a conversion step goes to the workers. */
	rpc_server_handle(s->rpc, META_RPC_IDATA_READ, s->ninline ? &hr : &hq);
	rpc_server_handle(s->rpc, META_RPC_IDATA_WRITE, inline_writes ? &hr : &hq);
	rpc_server_handle(s->rpc, META_RPC_IDATA_CONVERT, &hq);
	for (uint16_t t = META_RPC_LOCK_FIRST; t <= META_RPC_LOCK_LAST; t++)
		rpc_server_handle(s->rpc, t, &hq);
	/* KVCache LOOKUP on the loop thread when commits do not wait for the
	 * disk, like the namespace calls above: a batch is one short read txn
	 * (plus, for hits due one, a best-effort recency write), and the
	 * handoff to a worker (queue, wake-up, two switches) gave the top
	 * entries of a perf profile of lookups (docs/kvcache.md). */
	for (uint16_t t = META_RPC_KVC_FIRST; t <= META_RPC_KVC_LAST; t++)
		rpc_server_handle(s->rpc, t,
				  t == META_RPC_KVC_LOOKUP && inline_writes ? &hr : &hq);

	s->nworkers = o->workers > 0 ? o->workers : 16;
	s->workers = xcalloc((size_t)s->nworkers, sizeof(*s->workers));
	for (int i = 0; i < s->nworkers; i++) {
		struct worker *w = xcalloc(1, sizeof(*w));
		w->svc = s;
		buf_init(&w->sc.out);
		s->workers[i] = w;
		if (pthread_create(&w->th, NULL, worker_main, w)) {
			free(w);
			s->workers[i] = NULL;
			snprintf(err, errlen, "cannot start worker threads");
			rc = -EAGAIN;
			goto fail;
		}
	}
	if (pthread_create(&s->bg, NULL, bg_main, s)) {
		snprintf(err, errlen, "cannot start the background thread");
		rc = -EAGAIN;
		goto fail;
	}
	s->bg_started = 1;
	rc = rpc_server_start(s->rpc, o->listen, err, errlen);
	if (rc)
		goto fail;
	if (!s->gc_enabled)
		LOG_NOTICE("meta", "storage: none: chunk removal, truncate, length queries and "
			   "capacity fail with EOPNOTSUPP; unlinked files wait in the GC queue");
	else
		LOG_NOTICE("meta", "storage: chains from mgmtd routing; GC every %u ms",
			   s->bg_interval_ms);
	LOG_NOTICE("meta", "serving: instance=%016" PRIx64 " kv=%s port=%u workers=%d "
		   "inline_reads=%s", s->instance_id, kv_engine_name(s->kv),
		   rpc_server_port(s->rpc), s->nworkers, s->ninline ? "on" : "off");
	*out = s;
	return 0;
fail:
	meta_service_stop(s);
	return rc;
}

/* Cancels the KV of a stop that takes longer than STOP_KV_GRACE_MS. */
struct stop_guard {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	kv_engine *kv;
};

static void *stop_guard_main(void *arg)
{
	struct stop_guard *g = arg;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)STOP_KV_GRACE_MS * 1000000u;
	ts.tv_sec += (time_t)(ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	pthread_mutex_lock(&g->mu);
	while (!g->done && pthread_cond_timedwait(&g->cv, &g->mu, &ts) != ETIMEDOUT)
		;
	int cancel = !g->done;
	pthread_mutex_unlock(&g->mu);
	if (cancel) {
		LOG_WARN("meta", "stopping: the KV did not answer within %d ms, cancelling its calls",
			 STOP_KV_GRACE_MS);
		kv_cancel(g->kv);
	}
	return NULL;
}

void meta_service_stop(struct meta_service *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (s->meta) {
		struct meta_stats ms;
		meta_get_stats(s->meta, &ms);
		LOG_NOTICE("meta", "stopping: txns=%" PRIu64 " retries=%" PRIu64 " failures=%" PRIu64
			   " malformed=%" PRIu64, ms.txns, ms.retries, ms.failures,
			   atomic_load_explicit(&s->bad_requests, memory_order_relaxed));
	}
	struct stop_guard g = { .kv = s->kv };
	pthread_mutex_init(&g.mu, NULL);
	pthread_cond_init(&g.cv, NULL);
	pthread_t guard;
	int guarded = s->kv && !pthread_create(&guard, NULL, stop_guard_main, &g);
	for (int i = 0; s->workers && i < s->nworkers; i++) {
		if (!s->workers[i])
			continue;
		pthread_join(s->workers[i]->th, NULL);
		buf_fini(&s->workers[i]->sc.out);
		free(s->workers[i]);
	}
	free(s->workers);
	if (s->bg_started) {
		pthread_mutex_lock(&s->bg_mu);
		s->bg_stop = 1;
		pthread_cond_signal(&s->bg_cv);
		pthread_mutex_unlock(&s->bg_mu);
		pthread_join(s->bg, NULL);
	}
	rpc_server_free(s->rpc);
	/* every thread that calls the KV is gone: the guard may not cancel
	 * anything any more (the KV is closed below) */
	if (guarded) {
		pthread_mutex_lock(&g.mu);
		g.done = 1;
		pthread_cond_signal(&g.cv);
		pthread_mutex_unlock(&g.mu);
		pthread_join(guard, NULL);
	}
	pthread_mutex_destroy(&g.mu);
	pthread_cond_destroy(&g.cv);
	/* Loop threads are gone: the whole pool is back. */
	for (int i = 0; i < s->inline_nfree; i++) {
		buf_fini(&s->inline_free[i]->sc.out);
		free(s->inline_free[i]);
	}
	free(s->inline_free);
	meta_free(s->meta);
	meta_chains_free(s->chains_store);
	mgmtd_client_free(s->mgmtd);
	kv_close(s->kv);
	free(s->ring);
	free(s->suspects);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->bg_mu);
	pthread_cond_destroy(&s->bg_cv);
	pthread_mutex_destroy(&s->inline_mu);
	free(s);
}
