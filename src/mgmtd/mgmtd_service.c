/* mgmtd_service.c - the cluster manager: RPC handlers and the worker.
 *
 * Threads. RPC handlers run on the server's loop threads and never block:
 * they answer reads (routing long-polls) and heartbeats that change nothing
 * from the published state, and queue everything else for the worker. The
 * worker thread is the only writer of state. Each round it
 *   1. runs an election step every lease/3 (mgmtd_store_elect); on
 *      becoming primary it loads the state from the KV store, gives every
 *      node a fresh heartbeat grace period and bumps the routing version;
 *   2. as primary: copies the published state, applies the queued
 *      requests and the heartbeat timeouts to the copy, runs the chain
 *      state machine (route_info_update_chains), writes the difference to
 *      the KV store (mgmtd_store_commit, which re-checks the lease in every
 *      txn), and only then publishes the copy and answers the requests and
 *      the long-polls waiting for a newer version;
 *   3. answers long-polls whose wait ran out.
 * A failed commit or renewal makes the service step down (it forgets its
 * state and reloads it when it is primary again), so the published state
 * is always what the KV store holds.
 *
 * Locking. mu guards role, term, primary_addr, pub, pub_enc, the liveness
 * table, the work queue and the waiter list. pub is immutable once
 * published; the worker reads it without mu (it is the only writer).
 *
 * Liveness. Heartbeat times live only in memory (a per-node table beside
 * pub): a new primary starts every node's timer at takeover. A worker round
 * that starts long after the previous one (the process was stopped) also
 * restarts the timers, so a paused mgmtd does not fail every node when it
 * resumes.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "common/xalloc.h"
#include "kv/kv.h"
#include "mgmtd/chain_table.h"
#include "mgmtd/mgmtd_proto.h"
#include "mgmtd/mgmtd_service.h"
#include "mgmtd/mgmtd_store.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"

#define M                "mgmtd"
#define TICK_MS          50 /* worker round when idle */
#define MAX_POLL_WAIT_MS 60000
#define ERR_LEN          256

enum role { ROLE_STANDBY, ROLE_PRIMARY };

struct work {
	struct work *next;
	struct rpc_req *req;
	uint16_t type;
	union {
		struct mgmtd_register_req reg;
		struct mgmtd_heartbeat_req hb;
		struct {
			uint32_t replicas;
			uint64_t seed;
		} table;
		struct {
			uint32_t target;
			uint8_t off;
		} set;
	} u;
	char addr[ROUTE_ADDR_MAX + 1];
	struct mgmtd_target_report *t; /* owned copy of the reports */
	int status;                    /* outcome while the round runs */
	char errtext[ERR_LEN];         /* error text for a non-zero status */
	struct buf resp;               /* reply payload on success */
};

struct waiter {
	struct waiter *next;
	struct rpc_req *req;
	uint64_t known;
	uint64_t deadline_ms; /* monotonic */
};

struct live {
	uint32_t node_id;
	uint64_t last_ms;     /* monotonic time of the last heartbeat */
	uint64_t incarnation; /* of the process that registered it; 0: unknown */
};

struct mgmtd_service {
	kv_engine *kv;
	struct rpc_server *srv;
	pthread_t worker;
	char cluster_id[MGMTD_CLUSTER_ID_MAX + 1];
	char addr[ROUTE_ADDR_MAX + 1];
	uint32_t hb_timeout_ms, lease_ms;
	uint64_t holder;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;                             /* mu: the worker must exit */
	bool closing;                          /* mu: handlers answer at once */
	enum role role;                        /* mu */
	uint64_t term;                         /* mu (written by the worker) */
	uint64_t lease_until_ms;               /* mu: monotonic end of our lease as we
	                                          know it (its start + lease_ms) */
	char primary_addr[ROUTE_ADDR_MAX + 1]; /* mu: "" when unknown */
	struct mgmtd_state *pub;               /* mu to swap; NULL unless primary */
	struct buf pub_enc;                    /* mu: route_info_encode(pub) */
	struct live *live;                     /* mu: sorted by node id */
	size_t n_live, cap_live;
	struct work *q_head, *q_tail; /* mu */
	struct waiter *waiters;       /* mu */
	bool stopped;                 /* mu: mgmtd_service_free is past its KV calls */
};

/* How long a stop may wait for the KV (the worker's round, the lease
 * release) before it cancels every KV call: cut off from etcd, each call
 * would otherwise fail over between members for its op timeout, retried by
 * kv_run, and SIGTERM would take minutes. kv_cancel ends a call in flight
 * within about a second, so a stop takes at most about 2 s in any state. */
#define STOP_KV_GRACE_MS 1000

/* ---- liveness table (mu held) ---- */

static struct live *live_find(struct mgmtd_service *m, uint32_t id, bool create)
{
	size_t lo = 0, hi = m->n_live;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (m->live[mid].node_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < m->n_live && m->live[lo].node_id == id)
		return &m->live[lo];
	if (!create)
		return NULL;
	if (m->n_live == m->cap_live) {
		m->cap_live = m->cap_live ? 2 * m->cap_live : 64;
		m->live = xrealloc(m->live, m->cap_live * sizeof(*m->live));
	}
	memmove(m->live + lo + 1, m->live + lo, (m->n_live - lo) * sizeof(*m->live));
	m->n_live++;
	m->live[lo] = (struct live){id, clock_mono_ms(), 0};
	return &m->live[lo];
}

static void live_reset_all(struct mgmtd_service *m, uint64_t now)
{
	for (size_t i = 0; i < m->n_live; i++)
		m->live[i].last_ms = now;
}

/* ---- replies ---- */

static void reply_not_primary(struct mgmtd_service *m, struct rpc_req *req)
{
	rpc_reply_error(req, -CFS_ENOT_PRIMARY, m->primary_addr);
}

static void reply_routing(struct mgmtd_service *m, struct rpc_req *req, bool changed)
{
	struct buf b = BUF_INIT;
	struct mgmtd_routing_resp r = {.version = m->pub->ri.version, .changed = changed};
	if (changed) {
		r.info = m->pub_enc.data;
		r.info_len = (uint32_t)m->pub_enc.len;
	}
	if (mgmtd_routing_resp_encode(&b, &r))
		rpc_reply_error(req, -ENOMEM, "out of memory encoding routing info");
	else
		rpc_reply(req, 0, b.data, (uint32_t)b.len);
	buf_fini(&b);
}

/* Answers every queued request and waiter with STATUS (mu held). */
static void drain_locked(struct mgmtd_service *m, int status)
{
	for (struct work *w = m->q_head, *nx; w; w = nx) {
		nx = w->next;
		if (status == -CFS_ENOT_PRIMARY)
			reply_not_primary(m, w->req);
		else
			rpc_reply_error(w->req, status, "mgmtd is shutting down");
		free(w->t);
		buf_fini(&w->resp);
		free(w);
	}
	m->q_head = m->q_tail = NULL;
	for (struct waiter *w = m->waiters, *nx; w; w = nx) {
		nx = w->next;
		if (status == -CFS_ENOT_PRIMARY)
			reply_not_primary(m, w->req);
		else
			rpc_reply_error(w->req, status, "mgmtd is shutting down");
		free(w);
	}
	m->waiters = NULL;
}

/* ---- RPC handlers (loop threads) ---- */

static void enqueue_locked(struct mgmtd_service *m, struct work *w)
{
	if (m->q_tail)
		m->q_tail->next = w;
	else
		m->q_head = w;
	m->q_tail = w;
	pthread_cond_broadcast(&m->cv);
}

/* Common gate: answers and returns false when this service cannot serve. */
static bool gate_locked(struct mgmtd_service *m, struct rpc_req *req)
{
	if (m->closing) {
		rpc_reply_error(req, -CFS_EUNAVAIL, "mgmtd is shutting down");
		return false;
	}
	/* Past our lease, another mgmtd may be primary: stop answering even
	 * before the worker notices (it may be slow in a KV call). */
	if (m->role != ROLE_PRIMARY || !m->pub || clock_mono_ms() >= m->lease_until_ms) {
		reply_not_primary(m, req);
		return false;
	}
	return true;
}

static enum chain_local_state effective_ls(const struct mgmtd_state *s, uint32_t tid,
                                           enum chain_local_state reported)
{
	return mgmtd_state_admin_off(s, tid) ? CHAIN_LS_OFFLINE : reported;
}

/* True when the heartbeat changes nothing the routing info shows. */
static bool heartbeat_is_noop(const struct mgmtd_state *s, const struct mgmtd_heartbeat_req *hb)
{
	const struct route_node *n = route_find_node(&s->ri, hb->node_id);
	if (!n || n->state != ROUTE_NODE_ACTIVE)
		return false;
	for (uint32_t i = 0; i < hb->n; i++) {
		uint32_t tid = route_target_id(hb->node_id, hb->t[i].slot);
		const struct route_target *t = route_find_target(&s->ri, tid);
		if (!t || t->node_id != hb->node_id ||
		    t->local_state != effective_ls(s, tid, hb->t[i].local_state))
			return false;
	}
	return true;
}

static void on_mutating(struct rpc_req *req, void *arg)
{
	struct mgmtd_service *m = arg;
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	struct work *w = xcalloc(1, sizeof(*w));
	struct wire_reader r;
	int rc = 0;

	w->req = req;
	w->type = rpc_req_type(req);
	buf_init(&w->resp);
	switch (w->type) {
	case RPC_MSG_MGMTD_REGISTER:
		w->t = xcalloc(MGMTD_MAX_NODE_TARGETS, sizeof(*w->t));
		w->u.reg.t = w->t;
		rc = mgmtd_register_decode(p, len, &w->u.reg);
		if (!rc) {
			memcpy(w->addr, w->u.reg.addr, w->u.reg.addr_len);
			w->addr[w->u.reg.addr_len] = 0;
			w->u.reg.addr = w->addr;
		}
		break;
	case RPC_MSG_MGMTD_HEARTBEAT:
		w->t = xcalloc(MGMTD_MAX_NODE_TARGETS, sizeof(*w->t));
		w->u.hb.t = w->t;
		rc = mgmtd_heartbeat_decode(p, len, &w->u.hb);
		break;
	case RPC_MSG_MGMTD_INIT_CLUSTER:
		break;
	case RPC_MSG_MGMTD_CREATE_TABLE:
		wire_reader_init(&r, p, len);
		wire_get_u32(&r, &w->u.table.replicas);
		wire_get_u64(&r, &w->u.table.seed);
		rc = r.err;
		break;
	case RPC_MSG_MGMTD_SET_TARGET:
		wire_reader_init(&r, p, len);
		wire_get_u32(&r, &w->u.set.target);
		wire_get_u8(&r, &w->u.set.off);
		rc = r.err || w->u.set.off > 1 ? -CFS_EPROTO : 0;
		break;
	default:
		rc = -CFS_EPROTO;
	}
	if (rc) {
		LOG_WARN(M, "bad request: type=%s peer=%s", rpc_msg_name(w->type),
		         rpc_req_peer(req));
		rpc_reply_error(req, -CFS_EPROTO, "malformed mgmtd request");
		free(w->t);
		free(w);
		return;
	}
	pthread_mutex_lock(&m->mu);
	if (!gate_locked(m, req)) {
		free(w->t);
		free(w);
	} else if (w->type == RPC_MSG_MGMTD_HEARTBEAT && heartbeat_is_noop(m->pub, &w->u.hb)) {
		/* The common case: renew the node's lease and answer here. */
		live_find(m, w->u.hb.node_id, true)->last_ms = clock_mono_ms();
		uint8_t v[8];
		wire_store_u64(v, m->pub->ri.version);
		rpc_reply(req, 0, v, sizeof(v));
		free(w->t);
		free(w);
	} else {
		enqueue_locked(m, w);
	}
	pthread_mutex_unlock(&m->mu);
}

static void on_get_routing(struct rpc_req *req, void *arg)
{
	struct mgmtd_service *m = arg;
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	struct mgmtd_routing_req q;
	if (mgmtd_routing_req_decode(p, len, &q)) {
		rpc_reply_error(req, -CFS_EPROTO, "malformed routing request");
		return;
	}
	pthread_mutex_lock(&m->mu);
	if (gate_locked(m, req)) {
		/* Any difference, not just newer: a client that saw a version
		 * this store never reached (a store restored from a backup) must
		 * still get the current info rather than wait forever. */
		if (q.known_version == 0 || m->pub->ri.version != q.known_version) {
			reply_routing(m, req, true);
		} else if (q.wait_ms == 0) {
			reply_routing(m, req, false);
		} else {
			struct waiter *w = xcalloc(1, sizeof(*w));
			w->req = req;
			w->known = q.known_version;
			w->deadline_ms =
			    clock_mono_ms() +
			    (q.wait_ms < MAX_POLL_WAIT_MS ? q.wait_ms : MAX_POLL_WAIT_MS);
			w->next = m->waiters;
			m->waiters = w;
		}
	}
	pthread_mutex_unlock(&m->mu);
}

/* ---- applying requests to a working copy (worker) ---- */

static uint32_t next_node_id(const struct route_info *ri)
{
	return ri->n_nodes ? ri->nodes[ri->n_nodes - 1].id + 1 : 1;
}

/* Applies a node's target reports. Returns true when the routing info
 * changed in a way readers must see (a new target, a local state). */
static bool apply_reports(struct mgmtd_state *s, uint32_t node_id,
                          const struct mgmtd_target_report *t, uint32_t n)
{
	bool changed = false;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t tid = route_target_id(node_id, t[i].slot);
		enum chain_local_state ls = effective_ls(s, tid, t[i].local_state);
		struct route_target *x = (struct route_target *)route_find_target(&s->ri, tid);
		if (!x) {
			struct route_target nt = {.id = tid,
			                          .node_id = node_id,
			                          .local_state = ls,
			                          .pub_state = CHAIN_PS_OFFLINE,
			                          .capacity = t[i].capacity,
			                          .used = t[i].used};
			if (route_info_add_target(&s->ri, &nt) == 0)
				changed = true;
			continue;
		}
		if (x->node_id != node_id)
			continue; /* a target id is its node's for life */
		if (x->local_state != ls)
			changed = true;
		x->local_state = ls;
		x->capacity = t[i].capacity;
		x->used = t[i].used;
	}
	return changed;
}

static void set_node(struct mgmtd_state *s, uint32_t id, enum route_node_type type,
                     enum route_node_state st, const char *addr, bool *changed)
{
	struct route_node *n = (struct route_node *)route_find_node(&s->ri, id);
	if (!n) {
		struct route_node nn = {.id = id, .type = type, .state = st};
		snprintf(nn.addr, sizeof(nn.addr), "%s", addr);
		route_info_add_node(&s->ri, &nn);
		*changed = true;
		return;
	}
	if (n->state != st || (addr && strcmp(n->addr, addr))) {
		n->state = st;
		if (addr)
			snprintf(n->addr, sizeof(n->addr), "%s", addr);
		*changed = true;
	}
}

__attribute__((format(printf, 3, 4))) static void work_fail(struct work *w, int status,
                                                            const char *fmt, ...)
{
	va_list ap;
	w->status = status;
	va_start(ap, fmt);
	vsnprintf(w->errtext, sizeof(w->errtext), fmt, ap);
	va_end(ap);
}

/* The node a process of INCARNATION registered as TYPE, or 0. The table
 * lives in memory: after a restart of mgmtd a lost reply can still cost a
 * second node id (rare: the restart has to fall between the two tries). */
static uint32_t incarnation_node(struct mgmtd_service *m, const struct mgmtd_state *s,
                                 uint64_t incarnation, enum route_node_type type)
{
	uint32_t id = 0;
	if (!incarnation)
		return 0;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n_live && !id; i++)
		if (m->live[i].incarnation == incarnation)
			id = m->live[i].node_id;
	pthread_mutex_unlock(&m->mu);
	const struct route_node *n = id ? route_find_node(&s->ri, id) : NULL;
	return n && n->type == type ? id : 0;
}

static void apply_register(struct mgmtd_service *m, struct mgmtd_state *s, struct work *w,
                           bool *changed)
{
	struct mgmtd_register_req *q = &w->u.reg;
	if (!s->initialised) {
		work_fail(w, -ENOENT,
		          "cluster %s is not initialised: run chainfs admin init-cluster",
		          m->cluster_id);
		return;
	}
	uint32_t id = q->node_id;
	if (id) {
		const struct route_node *n = route_find_node(&s->ri, id);
		if (n && n->type != q->type) {
			work_fail(w, -EEXIST, "node id taken by a node of type %s",
			          route_node_type_name(n->type));
			return;
		}
	} else if ((id = incarnation_node(m, s, q->incarnation, q->type)) != 0) {
		/* The same process again: its first REGISTER went through
		 * but the reply did not reach it (a timeout under load). A
		 * second node id would leave a phantom node with the same
		 * targets in the routing. */
		LOG_INFO(M, "register: node=%u registers again (its reply was lost)", id);
	} else {
		id = next_node_id(&s->ri);
		if (id > ROUTE_NODE_ID_MAX) {
			work_fail(w, -ENOSPC, "%s", "no node id left");
			return;
		}
	}
	set_node(s, id, q->type, ROUTE_NODE_ACTIVE, q->addr, changed);
	if (apply_reports(s, id, q->t, q->n))
		*changed = true;
	pthread_mutex_lock(&m->mu);
	struct live *l = live_find(m, id, true);
	l->last_ms = clock_mono_ms();
	l->incarnation = q->incarnation;
	pthread_mutex_unlock(&m->mu);
	struct wire_writer ww;
	wire_writer_init(&ww, &w->resp);
	wire_put_u32(&ww, id);
	LOG_INFO(M, "register: node=%u type=%s addr=%s targets=%u", id,
	         route_node_type_name(q->type), q->addr, q->n);
}

static void apply_heartbeat(struct mgmtd_service *m, struct mgmtd_state *s, struct work *w,
                            bool *changed)
{
	struct mgmtd_heartbeat_req *q = &w->u.hb;
	const struct route_node *n = route_find_node(&s->ri, q->node_id);
	if (!n) {
		work_fail(w, -ENOENT, "%s", "unknown node: register first");
		return;
	}
	if (n->state == ROUTE_NODE_DISABLED) {
		work_fail(w, -EPERM, "%s", "node is disabled");
		return;
	}
	if (n->state != ROUTE_NODE_ACTIVE)
		LOG_NOTICE(M, "node back: node=%u", q->node_id);
	set_node(s, q->node_id, n->type, ROUTE_NODE_ACTIVE, NULL, changed);
	if (apply_reports(s, q->node_id, q->t, q->n))
		*changed = true;
	pthread_mutex_lock(&m->mu);
	live_find(m, q->node_id, true)->last_ms = clock_mono_ms();
	pthread_mutex_unlock(&m->mu);
}

static void apply_set_target(struct mgmtd_state *s, struct work *w, bool *changed)
{
	struct route_target *t = (struct route_target *)route_find_target(&s->ri, w->u.set.target);
	if (!t) {
		work_fail(w, -ENOENT, "%s", "no such target");
		return;
	}
	if (mgmtd_state_set_admin_off(s, t->id, w->u.set.off) && w->u.set.off) {
		t->local_state = CHAIN_LS_OFFLINE;
		*changed = true;
	}
	/* Back online: the node's next heartbeat reports the real local state. */
	LOG_NOTICE(M, "admin: target=%u %s", t->id, w->u.set.off ? "offline" : "online");
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Builds a chain table over the storage targets that are in no chain yet. */
static void apply_create_table(struct mgmtd_state *s, struct work *w, bool *changed)
{
	struct route_info *ri = &s->ri;
	uint32_t table_id = ri->n_tables ? 0 : 1;
	for (size_t i = 0; i < ri->n_tables; i++)
		if (ri->tables[i].id >= table_id)
			table_id = ri->tables[i].id + 1;
	if (table_id > ROUTE_TABLE_ID_MAX) {
		work_fail(w, -ENOSPC, "%s", "no table id left");
		return;
	}

	struct ctab_node *nodes = xcalloc(ri->n_nodes ? ri->n_nodes : 1, sizeof(*nodes));
	uint32_t *tids = xcalloc(ri->n_targets ? ri->n_targets : 1, sizeof(*tids));
	size_t nn = 0, nt = 0;
	for (size_t i = 0; i < ri->n_nodes; i++) {
		if (ri->nodes[i].type != ROUTE_NODE_STORAGE)
			continue;
		size_t first = nt;
		for (size_t j = 0; j < ri->n_targets; j++)
			if (ri->targets[j].node_id == ri->nodes[i].id && !ri->targets[j].chain_id)
				tids[nt++] = ri->targets[j].id;
		if (nt == first)
			continue;
		qsort(tids + first, nt - first, sizeof(*tids), cmp_u32);
		nodes[nn++] =
		    (struct ctab_node){ri->nodes[i].id, (uint32_t)(nt - first), tids + first};
	}
	struct ctab_params p = {table_id, w->u.table.replicas, w->u.table.seed, nn, nodes};
	ctab *ct = NULL;
	char err[ERR_LEN];
	int rc = ctab_generate(&p, &ct, err, sizeof(err));
	if (rc) {
		work_fail(w, rc, "cannot build the chain table: %s", err);
		goto out;
	}
	uint32_t nc = ctab_chains(ct), r = ctab_replicas(ct);
	uint32_t *ids = xcalloc(nc, sizeof(*ids));
	for (uint32_t i = 0; i < nc; i++) {
		struct route_chain c = {.id = ctab_chain_id(ct, i), .version = 1, .n = r};
		const uint32_t *ts = ctab_chain_targets(ct, i);
		for (uint32_t k = 0; k < r; k++) {
			c.m[k] = (struct route_chain_member){ts[k], CHAIN_PS_SERVING};
			struct route_target *t =
			    (struct route_target *)route_find_target(ri, ts[k]);
			t->chain_id = c.id;
			t->pub_state = CHAIN_PS_SERVING;
		}
		route_info_add_chain(ri, &c);
		ids[i] = c.id;
	}
	route_info_add_table(ri, table_id, 1, ids, nc);
	free(ids);
	*changed = true;

	/* The report: the balance figures (the '#' lines of ctab_print). */
	char *text = NULL;
	size_t tlen = 0;
	FILE *f = open_memstream(&text, &tlen);
	struct buf rep = BUF_INIT;
	if (f) {
		ctab_print(ct, f, 0);
		fclose(f);
		for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
			nl = strchr(line, '\n');
			size_t ll = nl ? (size_t)(nl - line) + 1 : strlen(line);
			if (line[0] == '#' && rep.len + ll < MGMTD_REPORT_MAX)
				buf_append(&rep, line, ll);
		}
		free(text);
	}
	struct mgmtd_table_resp tr = {table_id, nc, (const char *)rep.data, (uint32_t)rep.len};
	mgmtd_table_resp_encode(&w->resp, &tr);
	buf_fini(&rep);
	LOG_NOTICE(M, "chain table created: table=%u chains=%u replicas=%u", table_id, nc, r);
out:
	ctab_free(ct);
	free(tids);
	free(nodes);
}

/* ---- worker ---- */

static void publish(struct mgmtd_service *m, struct mgmtd_state *s)
{
	struct buf enc = BUF_INIT;
	if (route_info_encode(&s->ri, &enc)) {
		LOG_ERR(M, "out of memory encoding the routing info");
		abort();
	}
	pthread_mutex_lock(&m->mu);
	struct mgmtd_state *old = m->pub;
	m->pub = s;
	buf_fini(&m->pub_enc);
	m->pub_enc = enc;
	/* Wake the long-polls that wait for a newer version. */
	for (struct waiter **pp = &m->waiters; *pp;) {
		struct waiter *w = *pp;
		if (s->ri.version != w->known) {
			*pp = w->next;
			reply_routing(m, w->req, true);
			free(w);
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&m->mu);
	if (old) {
		mgmtd_state_fini(old);
		free(old);
	}
}

static void step_down(struct mgmtd_service *m, const char *why, int rc)
{
	LOG_WARN(M, "stepping down: %s: %s", why, cfs_strerror(rc));
	pthread_mutex_lock(&m->mu);
	struct mgmtd_state *old = m->pub;
	m->role = ROLE_STANDBY;
	m->pub = NULL;
	buf_fini(&m->pub_enc);
	m->primary_addr[0] = 0;
	drain_locked(m, -CFS_ENOT_PRIMARY);
	pthread_mutex_unlock(&m->mu);
	if (old) {
		mgmtd_state_fini(old);
		free(old);
	}
}

/* Commits NEW_S against the published state; on success publishes it
 * (taking it) and returns 0; on failure steps down and frees it. */
static int commit_publish(struct mgmtd_service *m, struct mgmtd_state *new_s)
{
	struct mgmtd_batch *b = mgmtd_batch_new();
	int rc = mgmtd_batch_diff(b, m->pub, new_s, m->cluster_id);
	size_t n = mgmtd_batch_len(b);
	if (!rc && n)
		rc = mgmtd_store_commit(m->kv, m->holder, m->term, 0, b);
	mgmtd_batch_free(b);
	if (!rc && !n) {
		mgmtd_state_fini(new_s);
		free(new_s);
		return 0;
	}
	if (rc) {
		mgmtd_state_fini(new_s);
		free(new_s);
		step_down(m, "commit failed", rc);
		return rc;
	}
	publish(m, new_s);
	return 0;
}

static void become_primary(struct mgmtd_service *m, const struct mgmtd_lease *l)
{
	char err[ERR_LEN];
	struct mgmtd_state *s = xcalloc(1, sizeof(*s));
	int rc = mgmtd_store_load(m->kv, m->cluster_id, s, err, sizeof(err));
	if (rc) {
		LOG_ERR(M, "cannot load state, releasing the lease: %s", err);
		free(s);
		mgmtd_store_release(m->kv, m->holder);
		return;
	}
	pthread_mutex_lock(&m->mu);
	m->term = l->term;
	m->n_live = 0;
	uint64_t now = clock_mono_ms();
	for (size_t i = 0; i < s->ri.n_nodes; i++)
		live_find(m, s->ri.nodes[i].id, true)->last_ms = now;
	pthread_mutex_unlock(&m->mu);

	/* Publish the loaded state as the base, then bump the version so that
	 * every client refetches from the new primary. */
	struct mgmtd_state *next = xcalloc(1, sizeof(*next));
	mgmtd_state_copy(next, s);
	next->ri.version++;
	pthread_mutex_lock(&m->mu);
	m->pub = s;
	pthread_mutex_unlock(&m->mu);
	if (commit_publish(m, next))
		return;
	pthread_mutex_lock(&m->mu);
	m->role = ROLE_PRIMARY;
	snprintf(m->primary_addr, sizeof(m->primary_addr), "%s", m->addr);
	pthread_mutex_unlock(&m->mu);
	LOG_NOTICE(M, "primary: term=%" PRIu64 " routing_version=%" PRIu64 " nodes=%zu chains=%zu",
	           l->term, m->pub->ri.version, m->pub->ri.n_nodes, m->pub->ri.n_chains);
}

static void elect(struct mgmtd_service *m)
{
	struct mgmtd_lease l;
	uint64_t start = clock_mono_ms();
	int rc = mgmtd_store_elect(m->kv, m->holder, m->addr, m->lease_ms, 0, &l);
	pthread_mutex_lock(&m->mu);
	enum role role = m->role;
	uint64_t term = m->term;
	pthread_mutex_unlock(&m->mu);
	if (rc < 0) {
		/* The worker steps down when lease_until_ms passes unrenewed. */
		LOG_WARN(M, "lease step failed: %s", cfs_strerror(rc));
		return;
	}
	if (rc == 1) {
		pthread_mutex_lock(&m->mu);
		m->lease_until_ms = start + m->lease_ms;
		pthread_mutex_unlock(&m->mu);
		if (role == ROLE_PRIMARY && term == l.term)
			return;
		if (role == ROLE_PRIMARY)
			step_down(m, "lease term changed", -CFS_ENOT_PRIMARY);
		become_primary(m, &l);
		return;
	}
	if (role == ROLE_PRIMARY)
		step_down(m, "lease taken by another mgmtd", -CFS_ENOT_PRIMARY);
	pthread_mutex_lock(&m->mu);
	snprintf(m->primary_addr, sizeof(m->primary_addr), "%s", l.addr);
	pthread_mutex_unlock(&m->mu);
}

static void reply_work(struct mgmtd_service *m, struct work *w, uint64_t version)
{
	if (w->status) {
		rpc_reply_error(w->req, w->status, w->errtext);
	} else {
		struct wire_writer ww;
		wire_writer_init(&ww, &w->resp);
		if (w->type == RPC_MSG_MGMTD_REGISTER || w->type == RPC_MSG_MGMTD_HEARTBEAT ||
		    w->type == RPC_MSG_MGMTD_SET_TARGET)
			wire_put_u64(&ww, version);
		rpc_reply(w->req, 0, w->resp.data, (uint32_t)w->resp.len);
	}
}

static void free_work_list(struct work *w)
{
	for (struct work *nx; w; w = nx) {
		nx = w->next;
		free(w->t);
		buf_fini(&w->resp);
		free(w);
	}
}

/* True when an active node of the published state missed its heartbeats. */
static bool any_timeout(struct mgmtd_service *m, uint64_t now)
{
	bool any = false;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; m->pub && i < m->pub->ri.n_nodes && !any; i++) {
		const struct route_node *n = &m->pub->ri.nodes[i];
		struct live *l = live_find(m, n->id, true);
		any = n->state == ROUTE_NODE_ACTIVE && now > l->last_ms + m->hb_timeout_ms;
	}
	pthread_mutex_unlock(&m->mu);
	return any;
}

/* One primary round: queued requests + timeouts -> commit -> publish. */
static void primary_round(struct mgmtd_service *m, struct work *q, uint64_t now)
{
	if (!q && !any_timeout(m, now))
		return;
	struct mgmtd_state *s = xcalloc(1, sizeof(*s));
	bool changed = false;
	mgmtd_state_copy(s, m->pub);

	for (struct work *w = q; w; w = w->next) {
		switch (w->type) {
		case RPC_MSG_MGMTD_REGISTER:
			apply_register(m, s, w, &changed);
			break;
		case RPC_MSG_MGMTD_HEARTBEAT:
			apply_heartbeat(m, s, w, &changed);
			break;
		case RPC_MSG_MGMTD_SET_TARGET:
			apply_set_target(s, w, &changed);
			break;
		case RPC_MSG_MGMTD_CREATE_TABLE:
			apply_create_table(s, w, &changed);
			break;
		case RPC_MSG_MGMTD_INIT_CLUSTER: {
			uint8_t created = !s->initialised;
			s->initialised = true;
			buf_append(&w->resp, &created, 1);
			break;
		}
		}
	}
	/* Heartbeat timeouts. */
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < s->ri.n_nodes; i++) {
		struct route_node *n = &s->ri.nodes[i];
		struct live *l = live_find(m, n->id, true);
		if (n->state == ROUTE_NODE_ACTIVE && now > l->last_ms + m->hb_timeout_ms) {
			LOG_WARN(M, "node failed: node=%u addr=%s silent_ms=%" PRIu64, n->id,
			         n->addr, now - l->last_ms);
			n->state = ROUTE_NODE_FAILED;
			changed = true;
		}
	}
	pthread_mutex_unlock(&m->mu);
	if (changed)
		s->ri.version++;
	int nch = route_info_update_chains(&s->ri);
	if (nch < 0)
		LOG_ERR(M, "chain update failed: %s", cfs_strerror(nch));
	else if (nch > 0)
		LOG_NOTICE(M, "chains changed: count=%d routing_version=%" PRIu64, nch,
		           s->ri.version);

	if (commit_publish(m, s) == 0) {
		pthread_mutex_lock(&m->mu);
		uint64_t v = m->pub->ri.version;
		for (struct work *w = q; w; w = w->next)
			reply_work(m, w, v);
		pthread_mutex_unlock(&m->mu);
	} else {
		pthread_mutex_lock(&m->mu);
		for (struct work *w = q; w; w = w->next)
			reply_not_primary(m, w->req);
		pthread_mutex_unlock(&m->mu);
	}
	free_work_list(q);
}

static void expire_waiters(struct mgmtd_service *m, uint64_t now)
{
	pthread_mutex_lock(&m->mu);
	for (struct waiter **pp = &m->waiters; *pp;) {
		struct waiter *w = *pp;
		if (now >= w->deadline_ms && m->pub) {
			*pp = w->next;
			reply_routing(m, w->req, false);
			free(w);
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&m->mu);
}

static void *worker_main(void *arg)
{
	struct mgmtd_service *m = arg;
	uint64_t last_elect = 0, last_round = clock_mono_ms();
	uint32_t elect_every = m->lease_ms / 3 ? m->lease_ms / 3 : 1;

	for (;;) {
		pthread_mutex_lock(&m->mu);
		if (!m->q_head && !m->stop) {
			struct timespec ts = clock_after_ms(CLOCK_MONOTONIC, TICK_MS);
			pthread_cond_timedwait(&m->cv, &m->mu, &ts);
		}
		bool stop = m->stop;
		struct work *q = m->q_head;
		m->q_head = m->q_tail = NULL;
		uint64_t now = clock_mono_ms();
		if (now - last_round > m->hb_timeout_ms / 2) {
			/* We were not running (SIGSTOP, swap): nobody could reach us,
			 * so silence is not the nodes' fault. */
			LOG_WARN(M, "worker paused for %" PRIu64 " ms: restarting heartbeat timers",
			         now - last_round);
			live_reset_all(m, now);
		}
		last_round = now;
		pthread_mutex_unlock(&m->mu);
		if (stop) {
			pthread_mutex_lock(&m->mu);
			for (struct work *w = q; w; w = w->next)
				rpc_reply_error(w->req, -CFS_EUNAVAIL, "mgmtd is shutting down");
			pthread_mutex_unlock(&m->mu);
			free_work_list(q);
			break;
		}
		if (now - last_elect >= elect_every || !last_elect) {
			last_elect = now;
			elect(m);
		}
		pthread_mutex_lock(&m->mu);
		bool expired = m->role == ROLE_PRIMARY && clock_mono_ms() >= m->lease_until_ms;
		pthread_mutex_unlock(&m->mu);
		if (expired)
			step_down(m, "lease not renewed in time", -CFS_ENOT_PRIMARY);
		pthread_mutex_lock(&m->mu);
		bool primary = m->role == ROLE_PRIMARY && m->pub;
		if (!primary) {
			for (struct work *w = q; w; w = w->next)
				reply_not_primary(m, w->req);
		}
		pthread_mutex_unlock(&m->mu);
		if (!primary) {
			free_work_list(q);
			continue;
		}
		primary_round(m, q, clock_mono_ms());
		expire_waiters(m, clock_mono_ms());
	}
	return NULL;
}

/* ---- lifecycle ---- */

int mgmtd_service_new(const struct mgmtd_service_opts *o, struct mgmtd_service **out, char *err,
                      size_t errlen)
{
	struct mgmtd_service *m = NULL;
	int rc;
	if (!o->kv_url || !o->listen || !o->cluster_id || !*o->cluster_id ||
	    strlen(o->cluster_id) > MGMTD_CLUSTER_ID_MAX || !o->secret) {
		snprintf(err, errlen,
		         "mgmtd: kv url, listen address, cluster id and secret are required");
		return -EINVAL;
	}
	m = xcalloc(1, sizeof(*m));
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, &ca);
	pthread_condattr_destroy(&ca);
	buf_init(&m->pub_enc);
	snprintf(m->cluster_id, sizeof(m->cluster_id), "%s", o->cluster_id);
	m->hb_timeout_ms = o->heartbeat_timeout_ms ? o->heartbeat_timeout_ms : 10000;
	m->lease_ms = o->lease_ms ? o->lease_ms : 5000;
	if (getrandom(&m->holder, sizeof(m->holder), 0) != sizeof(m->holder) || !m->holder)
		m->holder = clock_wall_ns() ^ ((uint64_t)getpid() << 32);

	rc = kv_open(o->kv_url, &m->kv, err, errlen);
	if (rc)
		goto fail;
	struct rpc_opts ro = {.cluster_id = o->cluster_id,
	                      .secret = o->secret,
	                      .secret_len = o->secret_len,
	                      .nthreads = o->rpc_threads > 0 ? o->rpc_threads : 1};
	rc = rpc_server_new(&ro, &m->srv);
	if (rc) {
		snprintf(err, errlen, "mgmtd: rpc server: %s", cfs_strerror(rc));
		goto fail;
	}
	static const uint16_t mutating[] = {RPC_MSG_MGMTD_REGISTER, RPC_MSG_MGMTD_HEARTBEAT,
	                                    RPC_MSG_MGMTD_INIT_CLUSTER, RPC_MSG_MGMTD_CREATE_TABLE,
	                                    RPC_MSG_MGMTD_SET_TARGET};
	const struct rpc_handler hm = {.fn = on_mutating, .arg = m};
	const struct rpc_handler hr = {.fn = on_get_routing, .arg = m};
	for (size_t i = 0; i < sizeof(mutating) / sizeof(mutating[0]); i++)
		rpc_server_handle(m->srv, mutating[i], &hm);
	rpc_server_handle(m->srv, RPC_MSG_MGMTD_GET_ROUTING, &hr);
	rc = rpc_server_start(m->srv, o->listen, err, errlen);
	if (rc)
		goto fail;
	if (o->advertise && *o->advertise) {
		snprintf(m->addr, sizeof(m->addr), "%s", o->advertise);
	} else {
		const char *colon = strrchr(o->listen, ':');
		int hl = colon ? (int)(colon - o->listen) : (int)strlen(o->listen);
		snprintf(m->addr, sizeof(m->addr), "%.*s:%u", hl, o->listen,
		         rpc_server_port(m->srv));
	}
	rc = -pthread_create(&m->worker, NULL, worker_main, m);
	if (rc) {
		snprintf(err, errlen, "mgmtd: cannot start the worker: %s", cfs_strerror(rc));
		goto fail;
	}
	LOG_INFO(M,
	         "started: addr=%s kv=%s holder=%016" PRIx64 " heartbeat_timeout_ms=%u "
	         "lease_ms=%u",
	         m->addr, kv_engine_name(m->kv), m->holder, m->hb_timeout_ms, m->lease_ms);
	*out = m;
	return 0;
fail:
	rpc_server_free(m->srv);
	kv_close(m->kv);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m);
	return rc;
}

/* Cancels the KV once the stop took STOP_KV_GRACE_MS (see there). */
static void *stop_watchdog(void *arg)
{
	struct mgmtd_service *m = arg;
	struct timespec ts = clock_after_ms(CLOCK_MONOTONIC, STOP_KV_GRACE_MS);
	pthread_mutex_lock(&m->mu);
	while (!m->stopped && pthread_cond_timedwait(&m->cv, &m->mu, &ts) != ETIMEDOUT)
		;
	bool cancel = !m->stopped;
	pthread_mutex_unlock(&m->mu);
	if (cancel) {
		LOG_WARN(M, "stopping: the KV did not answer within %d ms, cancelling its calls "
		            "(the lease is not released; it expires)", STOP_KV_GRACE_MS);
		kv_cancel(m->kv);
	}
	return NULL;
}

void mgmtd_service_free(struct mgmtd_service *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->stop = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	pthread_t wd;
	bool have_wd = pthread_create(&wd, NULL, stop_watchdog, m) == 0;
	pthread_join(m->worker, NULL);
	pthread_mutex_lock(&m->mu);
	m->closing = true;
	drain_locked(m, -CFS_EUNAVAIL);
	bool primary = m->role == ROLE_PRIMARY;
	pthread_mutex_unlock(&m->mu);
	rpc_server_free(m->srv);
	if (primary)
		mgmtd_store_release(m->kv, m->holder);
	pthread_mutex_lock(&m->mu);
	m->stopped = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (have_wd)
		pthread_join(wd, NULL);
	if (m->pub) {
		mgmtd_state_fini(m->pub);
		free(m->pub);
	}
	buf_fini(&m->pub_enc);
	free(m->live);
	kv_close(m->kv);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m);
}

uint16_t mgmtd_service_port(const struct mgmtd_service *m)
{
	return rpc_server_port(m->srv);
}

bool mgmtd_service_is_primary(struct mgmtd_service *m)
{
	pthread_mutex_lock(&m->mu);
	bool p = m->role == ROLE_PRIMARY && m->pub;
	pthread_mutex_unlock(&m->mu);
	return p;
}
