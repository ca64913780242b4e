/* fence_witness.c - when may a storage service serve without mgmtd?
 *
 * The hazard fencing guards against: mgmtd is alive, we are cut off from
 * it, it declares us failed after T and lets our chains go on without us,
 * and a client still holding the old routing reads stale data from us.
 * So a service that has not heard from mgmtd for fence_ms (T/2) stops.
 *
 * But when mgmtd itself is down, nobody can change routing, and stopping
 * every storage service turns a lost manager into a lost file system. We
 * tell the two cases apart by asking the peers that could take over our
 * chains: the nodes of every SERVING or SYNCING member of each chain that
 * holds one of our targets. If every one of them answers (WITNESS) that it
 * lost mgmtd too (no reply for fence_ms/2 or more) and holds our routing
 * version, no member of those chains can be serving a newer routing, so we
 * keep serving on the one we have, for the shortest promise they gave.
 * One peer that still reaches mgmtd, does not answer, or has another
 * routing version, and we fence at T/2 as before. A chain with no other
 * serving member needs no witness: no one else can serve it.
 *
 * The promise closes the race where a witness regains mgmtd right after
 * answering: a peer that promised does not serve until the promise ran
 * out if it heard from mgmtd, or got a newer routing version, after
 * promising. The asker's permission ends no later than that promise (it
 * counts from before its request was sent, the peer from after it was
 * received), so a routing change that excludes us can only be served once
 * we have stopped. Members that are OFFLINE, WAITING or LASTSRV need not
 * be asked: the state machine makes none of them SERVING without a resync
 * from a serving member, and those are all asked.
 *
 * The witness thread asks while our contact is older than fence_ms/2, so
 * a valid permission is in place before the fence time, every W/4; a
 * permission lasts W = 2 heartbeats (at least 400 ms).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "storage/storage_int.h"

#define MIN_PERMIT_MS 400u

/* Since mgmtd last answered us; UINT64_MAX: never. */
static uint64_t contact_age(uint64_t reply_ms, uint64_t now)
{
	return reply_ms ? (now > reply_ms ? now - reply_ms : 0) : UINT64_MAX;
}

static uint64_t routing_version(struct storage_service *s)
{
	struct mgmtd_routing *snap = mgmtd_client_routing(s->mc);
	uint64_t v = snap ? mgmtd_routing_version(snap) : 0;
	mgmtd_routing_put(snap);
	return v;
}

bool fence_witness_fenced(struct storage_service *s)
{
	if (!s->mc)
		return false;
	struct fence_witness *w = &s->fw;
	uint64_t now = clock_mono_ms();
	if (!mgmtd_client_fenced(s->mc)) {
		if (now >= atomic_load(&w->promise_until))
			return false;
		/* We promised a peer not to serve anything newer than the
		 * routing it holds: heard from mgmtd since, we might. */
		return mgmtd_client_last_reply_ms(s->mc) > atomic_load(&w->promise_made) ||
		       routing_version(s) > atomic_load(&w->promise_version);
	}
	if (now >= atomic_load(&w->permit_until))
		return true;
	return routing_version(s) != atomic_load(&w->permit_version);
}

int fence_witness_admit(struct storage_service *s)
{
	int err = stor_begin(s);
	if (!err && fence_witness_fenced(s)) {
		stor_end(s);
		err = -CFS_EFENCED;
	}
	return err;
}

void fence_witness_handle(struct storage_service *s, struct rpc_req *req)
{
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	struct sto_witness_req q;
	if (sto_witness_req_decode(p, len, &q)) {
		rpc_reply_error(req, -CFS_EPROTO, "witness: malformed request");
		return;
	}
	if (!s->mc) {
		rpc_reply_error(req, -ENODEV, "witness: this service runs without mgmtd");
		return;
	}
	struct fence_witness *w = &s->fw;
	uint64_t now = clock_mono_ms();
	struct sto_witness_resp r = { .contact_age_ms =
					      contact_age(mgmtd_client_last_reply_ms(s->mc), now),
				      .routing_version = routing_version(s) };
	if (r.contact_age_ms >= w->fence_ms / 2 && r.routing_version == q.routing_version) {
		r.promise_ms = w->permit_ms;
		atomic_store(&w->promise_version, r.routing_version);
		atomic_store(&w->promise_made, now);
		atomic_store(&w->promise_until, now + w->permit_ms);
	}
	struct buf b;
	buf_init(&b);
	sto_witness_resp_encode(&b, &r);
	rpc_reply(req, 0, b.data, (uint32_t)b.len);
	buf_fini(&b);
}

static bool own_target(struct storage_service *s, uint32_t id)
{
	return stor_target_by_id(s, id) != NULL;
}

/* The nodes whose word we need: see the file comment. */
static size_t peer_nodes(struct storage_service *s, const struct route_info *ri, uint32_t *out,
			 size_t cap)
{
	size_t n = 0;
	uint32_t self = mgmtd_client_node_id(s->mc);
	for (size_t i = 0; i < ri->n_chains; i++) {
		const struct route_chain *c = &ri->chains[i];
		bool ours = false;
		for (uint32_t k = 0; k < c->n; k++)
			ours |= own_target(s, c->m[k].target_id);
		for (uint32_t k = 0; ours && k < c->n; k++) {
			if (c->m[k].state != CHAIN_PS_SERVING && c->m[k].state != CHAIN_PS_SYNCING)
				continue;
			const struct route_target *t = route_find_target(ri, c->m[k].target_id);
			if (!t || t->node_id == self)
				continue;
			bool seen = false;
			for (size_t j = 0; j < n; j++)
				seen |= out[j] == t->node_id;
			if (!seen && n < cap)
				out[n++] = t->node_id;
		}
	}
	return n;
}

/* One round of questions. The permit's length, or 0 with WHY filled. */
static uint32_t ask_peers(struct storage_service *s, struct mgmtd_routing *snap, char *why,
			  size_t whylen)
{
	const struct route_info *ri = mgmtd_routing_info(snap);
	uint32_t peers[256];
	size_t n = peer_nodes(s, ri, peers, 256);
	uint32_t permit = s->fw.permit_ms;
	struct sto_witness_req q = { .node = mgmtd_client_node_id(s->mc),
				     .routing_version = ri->version };
	struct buf pl, resp;
	buf_init(&pl);
	buf_init(&resp);
	sto_witness_req_encode(&pl, &q);
	for (size_t i = 0; i < n && permit; i++) {
		const char *addr = stor_node_addr(ri, peers[i]);
		struct rpc_peer *p;
		char err[128];
		int rc = addr ? rpc_client_peer(s->cli, addr, &p, err, sizeof(err)) : -ENOENT;
		struct sto_witness_resp r = { 0 };
		if (!rc) {
			struct rpc_call c = { .type = STO_MSG_WITNESS, .timeout_ms = permit / 2,
					      .payload = pl.data, .payload_len = (uint32_t)pl.len };
			buf_reset(&resp);
			rc = rpc_call(p, &c, &resp, NULL);
		}
		if (!rc)
			rc = sto_witness_resp_decode(resp.data, resp.len, &r);
		if (rc) {
			snprintf(why, whylen, "node %u does not answer: %s", peers[i],
				 cfs_strerror(rc));
			permit = 0;
		} else if (!r.promise_ms) {
			if (r.routing_version != ri->version)
				snprintf(why, whylen, "node %u holds routing version %" PRIu64,
					 peers[i], r.routing_version);
			else
				snprintf(why, whylen, "node %u heard from mgmtd %" PRIu64 " ms ago",
					 peers[i], r.contact_age_ms);
			permit = 0;
		} else if (r.promise_ms < permit) {
			permit = r.promise_ms;
		}
	}
	buf_fini(&pl);
	buf_fini(&resp);
	return permit;
}

static void *witness_main(void *arg)
{
	struct storage_service *s = arg;
	struct fence_witness *w = &s->fw;
	enum { IN_CONTACT, PERMITTED, REFUSED } mode = IN_CONTACT; /* for the log only */
	while (!atomic_load(&s->stopping)) {
		uint64_t start = clock_mono_ms();
		struct mgmtd_routing *snap = mgmtd_client_routing(s->mc);
		if (snap && contact_age(mgmtd_client_last_reply_ms(s->mc), start) >=
				    w->fence_ms / 2) {
			char why[256] = "";
			uint32_t permit = ask_peers(s, snap, why, sizeof(why));
			atomic_store(&w->permit_version, mgmtd_routing_version(snap));
			atomic_store(&w->permit_until, permit ? start + permit : 0);
			if (permit && mode != PERMITTED)
				LOG_WARN("storage", "mgmtd unreachable, and so it is for every chain "
						    "peer: serving on routing version %" PRIu64,
					 mgmtd_routing_version(snap));
			else if (!permit && mode != REFUSED)
				LOG_WARN("storage", "mgmtd unreachable, and a chain peer reaches it or "
						    "cannot be asked (%s): fenced at T/2", why);
			mode = permit ? PERMITTED : REFUSED;
		} else if (mode != IN_CONTACT) {
			mode = IN_CONTACT;
			LOG_NOTICE("storage", "mgmtd reachable again");
		}
		mgmtd_routing_put(snap);
		pthread_mutex_lock(&w->mu);
		if (!atomic_load(&s->stopping)) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)(w->permit_ms / 4) * 1000000ull;
			ts.tv_sec += (time_t)(ns / 1000000000ull);
			ts.tv_nsec = (long)(ns % 1000000000ull);
			pthread_cond_timedwait(&w->cv, &w->mu, &ts);
		}
		pthread_mutex_unlock(&w->mu);
	}
	return NULL;
}

int fence_witness_start(struct storage_service *s, uint32_t heartbeat_ms)
{
	struct fence_witness *w = &s->fw;
	w->fence_ms = mgmtd_client_fence_ms(s->mc);
	w->permit_ms = 2 * (heartbeat_ms ? heartbeat_ms : 1000);
	if (w->permit_ms < MIN_PERMIT_MS)
		w->permit_ms = MIN_PERMIT_MS;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->inited = true;
	if (pthread_create(&w->thr, NULL, witness_main, s))
		return -EAGAIN;
	w->started = true;
	return 0;
}

void fence_witness_stop(struct storage_service *s)
{
	struct fence_witness *w = &s->fw;
	if (!w->inited)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->mu);
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thr, NULL);
		w->started = false;
	}
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	w->inited = false;
}
