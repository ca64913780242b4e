/* mgmtd_client.c - registration, heartbeats, fencing and the routing cache.
 *
 * Two threads share one mgmtd_conn (redirects, failover). State under mu:
 * node id, target reports, last successful heartbeat time, the current
 * snapshot. The heartbeat thread's wait is bounded by the next heartbeat
 * time and by the moment the node would become fenced, so on_fence fires
 * on time even when no heartbeat can be sent; an RPC in progress delays it
 * by at most its timeout (fence_ms / 4).
 *
 * Shutdown: stop is set, the conn is cancelled (blocked calls return
 * -ECANCELED at once), both threads are joined, then the conn is freed.
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
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "common/xalloc.h"
#include "mgmtd/mgmtd_client.h"
#include "mgmtd/mgmtd_conn.h"
#include "net/rpc_proto.h"

#define M        "mgmtd-client"
#define RETRY_MS 200 /* pause after a failed long-poll */

struct mgmtd_routing {
	atomic_int refs;
	struct route_info ri;
};

struct mgmtd_client {
	struct mgmtd_conn *conn;
	enum route_node_type type;
	char addr[ROUTE_ADDR_MAX + 1];
	uint32_t hb_ms, fence_ms, poll_ms;
	mgmtd_routing_fn on_routing;
	mgmtd_fence_fn on_fence;
	void *cb_arg;
	pthread_t hb_thread, rt_thread;
	bool hb_started, rt_started;

	pthread_mutex_t mu;
	pthread_cond_t cv;             /* wakes the heartbeat thread */
	pthread_cond_t changed;        /* registration or routing changed */
	bool stop;                     /* mu */
	bool reports_dirty;            /* mu: send a heartbeat now */
	uint32_t node_id;              /* mu */
	uint64_t incarnation;          /* random, fixed for this client's life (REGISTER) */
	bool registered;               /* mu: mgmtd knows us (else register) */
	uint64_t last_ok_ms;           /* mu: send time of the last success; 0: none */
	uint64_t last_reply_ms;        /* mu: arrival time of that success's reply */
	struct mgmtd_target_report *t; /* mu */
	size_t n_t;                    /* mu */
	struct mgmtd_routing *snap;    /* mu: newest, one reference held */
};

/* ---- snapshots ---- */

const struct route_info *mgmtd_routing_info(const struct mgmtd_routing *snap)
{
	return &snap->ri;
}

uint64_t mgmtd_routing_version(const struct mgmtd_routing *snap)
{
	return snap->ri.version;
}

struct mgmtd_routing *mgmtd_routing_get(struct mgmtd_routing *snap)
{
	atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
	return snap;
}

void mgmtd_routing_put(struct mgmtd_routing *snap)
{
	if (!snap || atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel) != 1)
		return;
	route_info_fini(&snap->ri);
	free(snap);
}

/* ---- helpers ---- */

static bool fenced_locked(const struct mgmtd_client *c, uint64_t now)
{
	if (!c->type)
		return false;
	return !c->last_ok_ms || now > c->last_ok_ms + c->fence_ms;
}

static int check_reports(const struct mgmtd_target_report *t, size_t n)
{
	if (n > MGMTD_MAX_NODE_TARGETS)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!t[i].slot || t[i].slot > ROUTE_SLOT_MAX ||
		    !chain_local_state_valid(t[i].local_state))
			return -EINVAL;
	return 0;
}

/* ---- heartbeat thread ---- */

/* One register or heartbeat exchange. 0 on success. */
static int heartbeat_once(struct mgmtd_client *c, uint64_t seq)
{
	struct buf req = BUF_INIT, resp = BUF_INIT;
	char err[256];
	pthread_mutex_lock(&c->mu);
	bool reg = !c->registered;
	uint32_t id = c->node_id;
	size_t n = c->n_t;
	struct mgmtd_target_report *t = n ? xmalloc(n * sizeof(*t)) : NULL;
	if (n)
		memcpy(t, c->t, n * sizeof(*t));
	c->reports_dirty = false;
	pthread_mutex_unlock(&c->mu);

	int rc;
	if (reg) {
		struct mgmtd_register_req q = {c->type,     id, c->addr, (uint32_t)strlen(c->addr),
		                               (uint32_t)n, t,  c->incarnation};
		rc = mgmtd_register_encode(&req, &q);
	} else {
		struct mgmtd_heartbeat_req q = {id, seq, (uint32_t)n, t};
		rc = mgmtd_heartbeat_encode(&req, &q);
	}
	uint32_t timeout = c->fence_ms / 4 > 100 ? c->fence_ms / 4 : 100;
	uint64_t start = clock_mono_ms();
	if (!rc)
		rc =
		    mgmtd_conn_call(c->conn, reg ? RPC_MSG_MGMTD_REGISTER : RPC_MSG_MGMTD_HEARTBEAT,
		                    req.data, (uint32_t)req.len, timeout, &resp, err, sizeof(err));
	pthread_mutex_lock(&c->mu);
	if (!rc && reg && resp.len >= 4) {
		c->node_id = wire_load_u32(resp.data);
		c->registered = true;
		LOG_INFO(M, "registered: node=%u type=%s", c->node_id,
		         route_node_type_name(c->type));
		pthread_cond_broadcast(&c->changed);
	} else if (!rc && reg) {
		rc = -CFS_EPROTO;
	}
	if (!rc) {
		c->last_ok_ms = start;
		c->last_reply_ms = clock_mono_ms();
	}
	if (rc == -ENOENT && !reg) {
		/* mgmtd lost the node (a wiped store): register again. */
		c->registered = false;
		c->reports_dirty = true;
	}
	pthread_mutex_unlock(&c->mu);
	if (rc && rc != -ECANCELED)
		LOG_DEBUG(M, "%s failed: %s", reg ? "register" : "heartbeat", err);
	free(t);
	buf_fini(&req);
	buf_fini(&resp);
	return rc;
}

static void *hb_main(void *arg)
{
	struct mgmtd_client *c = arg;
	bool fenced = true; /* as reported to on_fence; starts fenced, unreported */
	uint64_t seq = 0, next_hb = 0;

	for (;;) {
		uint64_t now = clock_mono_ms();
		pthread_mutex_lock(&c->mu);
		bool stop = c->stop, dirty = c->reports_dirty;
		pthread_mutex_unlock(&c->mu);
		if (stop)
			break;
		if (now >= next_hb || dirty) {
			next_hb = now + c->hb_ms;
			heartbeat_once(c, ++seq);
		}
		now = clock_mono_ms();
		pthread_mutex_lock(&c->mu);
		bool f = fenced_locked(c, now);
		uint64_t wake = next_hb;
		if (!f && c->last_ok_ms + c->fence_ms + 1 < wake)
			wake = c->last_ok_ms + c->fence_ms + 1;
		pthread_mutex_unlock(&c->mu);
		if (f != fenced) {
			fenced = f;
			if (f)
				LOG_WARN(M, "fenced: no heartbeat reached mgmtd for %u ms",
				         c->fence_ms);
			else
				LOG_INFO(M, "unfenced");
			if (c->on_fence)
				c->on_fence(c->cb_arg, f);
		}
		pthread_mutex_lock(&c->mu);
		if (!c->stop && !c->reports_dirty && wake > now) {
			struct timespec ts = clock_after_ms(CLOCK_MONOTONIC, wake - now);
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
		pthread_mutex_unlock(&c->mu);
	}
	return NULL;
}

/* ---- routing thread ---- */

static void *rt_main(void *arg)
{
	struct mgmtd_client *c = arg;
	struct buf req = BUF_INIT, resp = BUF_INIT;
	char err[256];

	for (;;) {
		pthread_mutex_lock(&c->mu);
		bool stop = c->stop;
		uint64_t known = c->snap ? c->snap->ri.version : 0;
		pthread_mutex_unlock(&c->mu);
		if (stop)
			break;
		struct mgmtd_routing_req q = {known, c->poll_ms};
		buf_reset(&req);
		mgmtd_routing_req_encode(&req, &q);
		int rc =
		    mgmtd_conn_call(c->conn, RPC_MSG_MGMTD_GET_ROUTING, req.data, (uint32_t)req.len,
		                    c->poll_ms + 3000, &resp, err, sizeof(err));
		struct mgmtd_routing_resp r;
		if (!rc)
			rc = mgmtd_routing_resp_decode(resp.data, resp.len, &r);
		struct mgmtd_routing *snap = NULL;
		if (!rc && r.changed) {
			snap = xcalloc(1, sizeof(*snap));
			atomic_init(&snap->refs, 1);
			rc = route_info_decode(r.info, r.info_len, &snap->ri);
			if (rc) {
				snprintf(err, sizeof(err), "bad routing info from mgmtd: %s",
				         cfs_strerror(rc));
				free(snap);
				snap = NULL;
			}
		}
		if (rc) {
			if (rc == -ECANCELED)
				break;
			LOG_DEBUG(M, "routing poll failed: %s", err);
			pthread_mutex_lock(&c->mu);
			if (!c->stop) {
				struct timespec ts = clock_after_ms(CLOCK_MONOTONIC, RETRY_MS);
				pthread_cond_timedwait(&c->changed, &c->mu, &ts);
			}
			pthread_mutex_unlock(&c->mu);
			continue;
		}
		if (!snap)
			continue;
		pthread_mutex_lock(&c->mu);
		struct mgmtd_routing *old = c->snap;
		if (old && snap->ri.version <= old->ri.version) {
			/* Versions never go back; a store restored from backup
			 * would, and then the newest one still wins here. */
			LOG_WARN(M, "routing version went back: %" PRIu64 " -> %" PRIu64,
			         old->ri.version, snap->ri.version);
		}
		c->snap = snap;
		pthread_cond_broadcast(&c->changed);
		pthread_mutex_unlock(&c->mu);
		mgmtd_routing_put(old);
		if (c->on_routing)
			c->on_routing(c->cb_arg, snap);
	}
	buf_fini(&req);
	buf_fini(&resp);
	return NULL;
}

/* ---- public ---- */

int mgmtd_client_new(const struct mgmtd_client_opts *o, struct mgmtd_client **out, char *err,
                     size_t errlen)
{
	if (o->type && (o->type < ROUTE_NODE_MGMTD || o->type > ROUTE_NODE_CLIENT || !o->addr ||
	                !*o->addr || strlen(o->addr) > ROUTE_ADDR_MAX)) {
		snprintf(err, errlen, "mgmtd client: a valid node type and address are needed");
		return -EINVAL;
	}
	if (o->node_id > ROUTE_NODE_ID_MAX || check_reports(o->targets, o->n_targets)) {
		snprintf(err, errlen, "mgmtd client: bad node id or target reports");
		return -EINVAL;
	}
	struct mgmtd_client *c = xcalloc(1, sizeof(*c));
	/* Reconnect to a mgmtd that comes back within a heartbeat period: the
	 * default backoff (up to 5 s) could outlast a short heartbeat timeout
	 * and get every node failed by a restarted mgmtd. */
	struct mgmtd_conn_opts co = {o->mgmtd_addrs, o->n_mgmtd,    o->cluster_id,
	                             o->secret,      o->secret_len, 0,
	                             o->heartbeat_ms ? o->heartbeat_ms : 1000};
	int rc = mgmtd_conn_new(&co, &c->conn, err, errlen);
	if (rc) {
		free(c);
		return rc;
	}
	c->type = o->type;
	if (o->addr)
		snprintf(c->addr, sizeof(c->addr), "%s", o->addr);
	c->node_id = o->node_id;
	/* Names this process to mgmtd across retries of its REGISTER; zero
	 * means "none", so keep drawing until it is not. */
	while (!c->incarnation && getrandom(&c->incarnation, sizeof(c->incarnation), 0) < 0)
		c->incarnation = ((uint64_t)clock_mono_ns() << 16) ^ (uint64_t)getpid();
	c->hb_ms = o->heartbeat_ms ? o->heartbeat_ms : 1000;
	c->fence_ms = o->fence_ms ? o->fence_ms : 5000;
	c->poll_ms = o->poll_wait_ms ? o->poll_wait_ms : 5000;
	c->on_routing = o->on_routing;
	c->on_fence = o->on_fence;
	c->cb_arg = o->cb_arg;
	if (o->n_targets) {
		c->t = xmalloc(o->n_targets * sizeof(*c->t));
		memcpy(c->t, o->targets, o->n_targets * sizeof(*c->t));
		c->n_t = o->n_targets;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, &ca);
	pthread_cond_init(&c->changed, &ca);
	pthread_condattr_destroy(&ca);
	if (c->type) {
		rc = -pthread_create(&c->hb_thread, NULL, hb_main, c);
		c->hb_started = !rc;
	}
	if (!rc) {
		rc = -pthread_create(&c->rt_thread, NULL, rt_main, c);
		c->rt_started = !rc;
	}
	if (rc) {
		snprintf(err, errlen, "mgmtd client: cannot start threads: %s", cfs_strerror(rc));
		mgmtd_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void mgmtd_client_free(struct mgmtd_client *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_broadcast(&c->cv);
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->mu);
	mgmtd_conn_cancel(c->conn);
	if (c->hb_started)
		pthread_join(c->hb_thread, NULL);
	if (c->rt_started)
		pthread_join(c->rt_thread, NULL);
	mgmtd_conn_free(c->conn);
	mgmtd_routing_put(c->snap);
	free(c->t);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->changed);
	free(c);
}

uint32_t mgmtd_client_node_id(struct mgmtd_client *c)
{
	pthread_mutex_lock(&c->mu);
	uint32_t id = c->registered || c->last_ok_ms ? c->node_id : 0;
	pthread_mutex_unlock(&c->mu);
	return id;
}

bool mgmtd_client_fenced(struct mgmtd_client *c)
{
	pthread_mutex_lock(&c->mu);
	bool f = fenced_locked(c, clock_mono_ms());
	pthread_mutex_unlock(&c->mu);
	return f;
}

uint64_t mgmtd_client_last_reply_ms(struct mgmtd_client *c)
{
	pthread_mutex_lock(&c->mu);
	uint64_t ms = c->last_reply_ms;
	pthread_mutex_unlock(&c->mu);
	return ms;
}

uint32_t mgmtd_client_fence_ms(const struct mgmtd_client *c)
{
	return c->fence_ms;
}

static int wait_changed(struct mgmtd_client *c, bool (*ok)(struct mgmtd_client *, uint64_t),
                        uint64_t arg, uint32_t timeout_ms)
{
	struct timespec ts = clock_after_ms(CLOCK_MONOTONIC, timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&c->mu);
	while (!ok(c, arg) && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&c->changed, &c->mu, &ts);
	bool done = ok(c, arg);
	pthread_mutex_unlock(&c->mu);
	return done ? 0 : -CFS_ETIMEDOUT;
}

static bool is_registered(struct mgmtd_client *c, uint64_t unused)
{
	return c->registered;
}

static bool has_version(struct mgmtd_client *c, uint64_t v)
{
	return c->snap && c->snap->ri.version >= v;
}

int mgmtd_client_wait_registered(struct mgmtd_client *c, uint32_t timeout_ms)
{
	return wait_changed(c, is_registered, 0, timeout_ms);
}

int mgmtd_client_wait_routing(struct mgmtd_client *c, uint64_t min_version, uint32_t timeout_ms)
{
	return wait_changed(c, has_version, min_version ? min_version : 1, timeout_ms);
}

int mgmtd_client_set_targets(struct mgmtd_client *c, const struct mgmtd_target_report *t, size_t n)
{
	if (check_reports(t, n))
		return -EINVAL;
	struct mgmtd_target_report *copy = n ? xmalloc(n * sizeof(*copy)) : NULL;
	if (n)
		memcpy(copy, t, n * sizeof(*copy));
	pthread_mutex_lock(&c->mu);
	free(c->t);
	c->t = copy;
	c->n_t = n;
	c->reports_dirty = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

struct mgmtd_routing *mgmtd_client_routing(struct mgmtd_client *c)
{
	pthread_mutex_lock(&c->mu);
	struct mgmtd_routing *s = c->snap ? mgmtd_routing_get(c->snap) : NULL;
	pthread_mutex_unlock(&c->mu);
	return s;
}
