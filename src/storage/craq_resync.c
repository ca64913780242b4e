/* craq_resync.c - bringing a SYNCING successor up to date, and the two
 * messages a syncing target answers (DUMP, SYNC_DONE).
 *
 * The predecessor of a SYNCING target (the last SERVING one) runs a pass
 * on that target's resync worker, blocking calls allowed:
 *   1. DUMP: page through the successor's chunk metadata of the chain.
 *   2. Wait for the chain ops in flight (they may have skipped the
 *      successor under older routing), then walk our own metadata (one
 *      snapshot) and merge by chunk id:
 *        ours only, or (length, crc, committed version) differ
 *                                -> send the whole chunk as a replace
 *                                   write carrying our version
 *        theirs only             -> remove it there
 *      Each chunk is handled under its chunk lock, re-reading our copy,
 *      so a client write racing with the pass is either before (we send
 *      its result) or after (it reaches the successor as a full replace,
 *      because writes to a SYNCING successor are widened).
 *   3. SYNC_DONE: the successor reports UPTODATE; mgmtd makes it SERVING.
 *      Not when this target fenced itself since the pass began (a failed
 *      op or a stalled disk, craq_write.c: its copy may not be the
 *      chain's), and a successor that fenced itself refuses it: either
 *      way until mgmtd has moved the fenced one out, the chain version
 *      the message carries still matches.
 * A failure aborts the pass; the next link tick starts a new one.
 *
 * Workers: one thread per target runs that target's passes (and its
 * repairs, craq_repair.c). The link thread offers each worker every
 * routing snapshot it acts on (craq_resync_offer) and never waits for a
 * pass: a worker holds the newest offer only, so at most one pass per
 * target is in flight and the next starts from the newest routing. A pass
 * from a target whose disk hangs (before the watchdog fenced it) waits in
 * that engine, and only that target's worker with it: the node's other
 * targets go on changing state and resyncing (test_craq.c
 * resync_hung_sibling). A worker's routing may be older than its
 * target's state (a fence and a rejoin since): a pass starts only from a
 * target UPTODATE at the fence generation it then watches
 * (resync_stale_pass). The pass ends at the next chunk once the service
 * stops or the target fenced itself; craq_resync_stop joins the workers,
 * so a worker inside a hung engine call holds the stop until that call
 * returns, as the engine's own close (which waits for its requests) does.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "storage/stor_fault.h"
#include "storage/storage_int.h"

#define SYNC_CALL_MS 10000

struct ent_vec {
	struct sto_dump_ent *e;
	size_t n, cap;
};

static void vec_push(struct ent_vec *v, const struct sto_dump_ent *e)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 256;
		v->e = xrealloc(v->e, v->cap * sizeof(*v->e));
	}
	v->e[v->n++] = *e;
}

static int collect_local(void *arg, struct chunk_id id, const struct chunk_info *info)
{
	struct sto_dump_ent e = { .ino = id.ino, .idx = id.idx, .len = info->len,
				  .crc = info->crc, .chain_ver = info->chain_ver,
				  .commit_ver = info->commit_ver };
	vec_push(arg, &e);
	return 0;
}

static int call(struct storage_service *s, const char *addr, uint16_t type, struct buf *payload,
		const void *bulk, uint64_t bulk_len, struct buf *resp)
{
	struct rpc_peer *p;
	char err[128];
	int rc = rpc_client_peer(s->cli, addr, &p, err, sizeof(err));
	if (rc)
		return rc;
	struct rpc_call c = { .type = type, .timeout_ms = SYNC_CALL_MS, .payload = payload->data,
			      .payload_len = (uint32_t)payload->len, .bulk = bulk,
			      .bulk_len = bulk_len };
	return rpc_call(p, &c, resp, NULL);
}

static int dump_remote(struct storage_service *s, const char *addr, uint32_t target,
		       uint32_t chain, struct ent_vec *out)
{
	struct sto_dump_req q = { .target = target, .chain = chain, .max = STO_MAX_DUMP };
	struct sto_dump_ent *ents = xcalloc(STO_MAX_DUMP, sizeof(*ents));
	struct buf pl, resp;
	buf_init(&pl);
	buf_init(&resp);
	int rc;
	for (;;) {
		buf_reset(&pl);
		buf_reset(&resp);
		sto_dump_req_encode(&pl, &q);
		if ((rc = call(s, addr, STO_MSG_DUMP, &pl, NULL, 0, &resp)))
			break;
		struct sto_dump_resp r;
		if ((rc = sto_dump_resp_decode(resp.data, resp.len, &r, ents, STO_MAX_DUMP)))
			break;
		for (uint32_t i = 0; i < r.n; i++)
			vec_push(out, &ents[i]);
		if (!r.more || r.n == 0)
			break;
		q.from_ino = ents[r.n - 1].ino;
		q.from_idx = ents[r.n - 1].idx + 1;
		if (q.from_idx == 0)
			q.from_ino++;
	}
	buf_fini(&pl);
	buf_fini(&resp);
	free(ents);
	return rc;
}

/* Removes ID at the successor. */
static int remove_remote(struct storage_service *s, const char *addr, uint32_t succ,
			 uint32_t chain, uint32_t chain_ver, struct chunk_id id)
{
	struct buf pl, resp;
	buf_init(&pl);
	buf_init(&resp);
	struct sto_remove_req m = { .target = succ, .chain = chain, .chain_ver = chain_ver,
				    .ino = id.ino, .begin = id.idx, .end = id.idx + 1,
				    .flags = STO_WF_FORWARDED | STO_WF_SYNC };
	sto_remove_req_encode(&pl, &m);
	int rc = call(s, addr, STO_MSG_REMOVE, &pl, NULL, 0, &resp);
	buf_fini(&pl);
	buf_fini(&resp);
	return rc;
}

static bool gone(int rc, const struct chunk_info *info)
{
	return rc == -ENOENT || (rc == 0 && info->len == 0);
}

/* Makes the successor's copy of ID equal ours (under the chunk lock). */
static int sync_chunk(struct storage_service *s, struct stor_target *t, const char *addr,
		      uint32_t succ, uint32_t chain, uint32_t chain_ver, struct chunk_id id)
{
	struct buf pl, resp;
	buf_init(&pl);
	buf_init(&resp);
	void *data = NULL;
	craq_lock_wait(t->locks, id);
	struct chunk_info info;
	int rc = chunk_engine_query(t->eng, id, &info);
	if (gone(rc, &info)) {
		rc = remove_remote(s, addr, succ, chain, chain_ver, id);
		goto out;
	}
	if (rc)
		goto out;
	data = stor_alloc_aligned(info.len);
	if (!data) {
		rc = -ENOMEM;
		goto out;
	}
	struct chunk_read_range rr = { .id = id, .off = 0, .len = info.len, .dst = data };
	if ((rc = chunk_engine_read(t->eng, &rr, 1)) || (rc = rr.result) < 0)
		goto out;
	struct sto_write_req m = { .target = succ, .chain = chain, .chain_ver = chain_ver,
				   .ino = id.ino, .idx = id.idx, .off = 0, .len = (uint32_t)rr.result,
				   .crc = crc32c(0, data, (size_t)rr.result),
				   .update_ver = info.commit_ver,
				   .flags = STO_WF_FORWARDED | STO_WF_REPLACE | STO_WF_SYNC };
	sto_write_req_encode(&pl, &m);
	stor_fault_pause(s, t, "faultinj_resync_send_delay");
	rc = call(s, addr, STO_MSG_WRITE, &pl, data, m.len, &resp);
	/* Had a remove taken ID here, and at the successor, while our copy
	 * was on its way, the copy would land after it and bring the chunk
	 * back there alone. Removes lock each chunk they remove now (so one
	 * waits for us), but a range remove of an older service locked only
	 * its first: gone now, remove it there again. */
	if (!rc && gone(chunk_engine_query(t->eng, id, &info), &info))
		rc = remove_remote(s, addr, succ, chain, chain_ver, id);
out:
	craq_unlock(t->locks, id);
	free(data);
	buf_fini(&pl);
	buf_fini(&resp);
	return rc;
}

/* Whether two copies agree. The stored chain version is not compared: it
 * records the routing version the forward carried, which may differ
 * between replicas of one update when routing changed in flight; equal
 * version, length and CRC mean equal contents. */
static bool same(const struct sto_dump_ent *a, const struct sto_dump_ent *b)
{
	return a->len == b->len && a->crc == b->crc && a->commit_ver == b->commit_ver;
}

static int cmp_ent(const struct sto_dump_ent *a, const struct sto_dump_ent *b)
{
	return chunk_id_cmp((struct chunk_id){ a->ino, a->idx }, (struct chunk_id){ b->ino, b->idx });
}

static int sync_one(struct storage_service *s, struct stor_target *t, const struct route_info *ri,
		    const struct route_chain *c, uint32_t succ)
{
	const struct route_target *st = route_find_target(ri, succ);
	const char *a = st ? stor_node_addr(ri, st->node_id) : NULL;
	if (!a)
		return -CFS_EUNAVAIL;
	char addr[ROUTE_ADDR_MAX + 1];
	snprintf(addr, sizeof(addr), "%s", a);
	uint64_t t0 = clock_mono_ms();
	/* A fence of T from here on (its op failed, or its disk stalled) ends
	 * the pass without SYNC_DONE: T stopped serving because its copy may
	 * not be the chain's, so what it sent proves nothing. */
	uint32_t gen = atomic_load(&t->fence_gen);
	/* Serving at GEN: the worker's routing may predate a fence and a
	 * rejoin of T (the link thread's, concurrent with the worker): T,
	 * started again but not yet resynced, is ONLINE with a copy that
	 * missed writes, and a SYNC_DONE from it at that routing's chain
	 * version would be taken by a successor not yet shown the change. A
	 * fence from here on changes fence_gen (checked below). */
	if (!atomic_load(&t->started) || atomic_load(&t->local_state) != CHAIN_LS_UPTODATE) {
		LOG_INFO("craq",
		         "resync not started: chain=%u target=%u: target %u is not serving "
		         "(fenced or moved out since the routing of the pass)",
		         c->id, succ, stor_target_id(s, t));
		return -CFS_EUNAVAIL;
	}
	struct ent_vec remote = { 0 }, local = { 0 };
	int rc = dump_remote(s, addr, succ, c->id, &remote);
	/* A chain op in flight may have chosen its successor from routing
	 * older than ours, where this one was not SYNCING yet (so it skipped
	 * it), and not have applied yet: our snapshot would miss its write and
	 * the successor never get it. Every op holds its chunk lock until both
	 * its apply and its forward ended, and one that forwards after this
	 * point reads routing at least as new as SNAP: so once the locks held
	 * now were released, every such apply is in the snapshot below. */
	if (!rc)
		craq_locks_drain(t->locks);
	/* Fault injection: the listing held while the file exists, as by a
	 * disk that hangs (test_craq.c resync_hung_sibling). */
	if (!rc)
		stor_fault_hold(s, t, "faultinj_resync_list_hold");
	if (!rc)
		rc = chunk_engine_iterate(t->eng, (struct chunk_id){ 0, 0 },
					  (struct chunk_id){ UINT64_MAX, UINT32_MAX }, collect_local,
					  &local);
	size_t i = 0, j = 0, sent = 0, removed = 0;
	while (!rc && !atomic_load(&s->stopping) && atomic_load(&t->fence_gen) == gen &&
	       (i < local.n || j < remote.n)) {
		int d = i >= local.n ? 1 : j >= remote.n ? -1 : cmp_ent(&local.e[i], &remote.e[j]);
		const struct sto_dump_ent *e = d <= 0 ? &local.e[i] : &remote.e[j];
		if (d != 0 || !same(&local.e[i], &remote.e[j])) {
			rc = sync_chunk(s, t, addr, succ, c->id, c->version,
					(struct chunk_id){ e->ino, e->idx });
			if (d > 0)
				removed++;
			else
				sent++;
		}
		if (d <= 0)
			i++;
		if (d >= 0)
			j++;
	}
	if (!rc && atomic_load(&s->stopping))
		rc = -CFS_EUNAVAIL;
	if (!rc && stor_fault_take(s, t, "faultinj_resync_done_fence"))
		craq_fence_target(s, t, "fault injection: just before SYNC_DONE");
	/* As at the pass's start (worker_main): a node that lost mgmtd during
	 * a long pass does not vouch for a chain version it may no longer
	 * hold; the next pass after it is back sends SYNC_DONE. */
	if (!rc &&
	    (!atomic_load(&t->started) || atomic_load(&t->fence_gen) != gen ||
	     atomic_load(&t->local_state) != CHAIN_LS_UPTODATE || mgmtd_client_fenced(s->mc)))
		rc = -CFS_EUNAVAIL;
	if (!rc) {
		struct buf pl, resp;
		buf_init(&pl);
		buf_init(&resp);
		struct sto_sync_done_req m = { .target = succ, .chain = c->id,
					       .chain_ver = c->version };
		sto_sync_done_req_encode(&pl, &m);
		rc = call(s, addr, STO_MSG_SYNC_DONE, &pl, NULL, 0, &resp);
		buf_fini(&pl);
		buf_fini(&resp);
	}
	if (rc)
		LOG_INFO("craq", "resync aborted: chain=%u target=%u err=%s", c->id, succ,
			 cfs_strerror(rc));
	else
		LOG_NOTICE("craq",
			   "resync done: chain=%u target=%u local=%zu remote=%zu sent=%zu "
			   "removed=%zu ms=%llu",
			   c->id, succ, local.n, remote.n, sent, removed,
			   (unsigned long long)(clock_mono_ms() - t0));
	free(remote.e);
	free(local.e);
	return rc;
}

/* Syncs the SYNCING successor of T in SNAP, if T is its predecessor. */
static void resync_target(struct storage_service *s, struct stor_target *t,
                          struct mgmtd_routing *snap)
{
	const struct route_info *ri = mgmtd_routing_info(snap);
	if (!atomic_load(&t->started))
		return;
	const struct route_target *rt = route_find_target(ri, stor_target_id(s, t));
	const struct route_chain *c =
	    rt && rt->chain_id ? route_find_chain(ri, rt->chain_id) : NULL;
	if (!c)
		return;
	for (uint32_t i = 0; i + 1 < c->n; i++) {
		if (c->m[i].target_id != rt->id || c->m[i].state != CHAIN_PS_SERVING)
			continue;
		uint32_t j = i + 1;
		while (j < c->n && c->m[j].state != CHAIN_PS_SERVING &&
		       c->m[j].state != CHAIN_PS_SYNCING)
			j++;
		if (j >= c->n || c->m[j].state != CHAIN_PS_SYNCING)
			continue;
		/* Done at this version already: mgmtd has not yet turned
		 * the successor's UPTODATE into SERVING. */
		if (t->synced_target == c->m[j].target_id && t->synced_chain_ver == c->version)
			continue;
		/* Fault injection: the worker held between its routing and
		 * the pass (test_craq.c resync_stale_pass). */
		stor_fault_hold(s, t, "faultinj_resync_pass_hold");
		if (!sync_one(s, t, ri, c, c->m[j].target_id)) {
			t->synced_target = c->m[j].target_id;
			t->synced_chain_ver = c->version;
		}
	}
}

/* One target's worker (the header comment has the rules). */
struct resync_worker {
	struct storage_service *s;
	struct stor_target *t;
	pthread_t thr;
	bool started;               /* thr runs (join at stop) */
	pthread_mutex_t mu;         /* guards next, stop; never held over a pass */
	pthread_cond_t cv;          /* an offer or the stop */
	struct mgmtd_routing *next; /* the newest offer not yet taken (a reference) */
	bool stop;
};

struct craq_resync {
	size_t n; /* = s->nt */
	struct resync_worker w[];
};

static void *worker_main(void *arg)
{
	struct resync_worker *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->next && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop)
			break;
		struct mgmtd_routing *snap = w->next;
		w->next = NULL;
		pthread_mutex_unlock(&w->mu);
		/* Offered unfenced; no pass starts once that changed. */
		if (!atomic_load(&w->s->stopping) && !mgmtd_client_fenced(w->s->mc)) {
			resync_target(w->s, w->t, snap);
			craq_repair_pass(w->s, w->t, snap);
		}
		mgmtd_routing_put(snap);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int craq_resync_start(struct storage_service *s)
{
	struct craq_resync *r = xcalloc(1, sizeof(*r) + s->nt * sizeof(r->w[0]));
	s->resync = r;
	for (size_t k = 0; k < s->nt; k++) {
		struct resync_worker *w = &r->w[k];
		w->s = s;
		w->t = &s->t[k];
		pthread_mutex_init(&w->mu, NULL);
		pthread_cond_init(&w->cv, NULL);
		r->n = k + 1;
		if (pthread_create(&w->thr, NULL, worker_main, w))
			return -EAGAIN;
		w->started = true;
	}
	return 0;
}

void craq_resync_offer(struct storage_service *s, struct mgmtd_routing *snap)
{
	struct craq_resync *r = s->resync;
	for (size_t k = 0; r && k < r->n; k++) {
		struct resync_worker *w = &r->w[k];
		struct mgmtd_routing *ref = mgmtd_routing_get(snap);
		pthread_mutex_lock(&w->mu);
		struct mgmtd_routing *old = w->next;
		w->next = ref;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
		mgmtd_routing_put(old);
	}
}

void craq_resync_stop(struct storage_service *s)
{
	struct craq_resync *r = s->resync;
	if (!r)
		return;
	for (size_t k = 0; k < r->n; k++) {
		struct resync_worker *w = &r->w[k];
		pthread_mutex_lock(&w->mu);
		w->stop = true;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
	for (size_t k = 0; k < r->n; k++) {
		struct resync_worker *w = &r->w[k];
		if (w->started)
			pthread_join(w->thr, NULL);
		mgmtd_routing_put(w->next);
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
	}
	free(r);
	s->resync = NULL;
}

/* ---- the syncing side ----
 *
 * DUMP answers run on the listing pool (craq_list.c), not on the
 * scheduler thread, and not on the receiving target's resync worker:
 * that one may be inside a repair's peer read (10 s calls), which a DUMP
 * must not queue behind. At most DUMP_QUEUE_MAX of a target's DUMPs wait
 * behind its running listing; more are answered -CFS_EUNAVAIL at once
 * (the sender's pass aborts and the next one asks again). The listing
 * counts as local engine work for the I/O watchdog: a SYNCING target
 * whose listing hangs fences itself like one whose apply hangs, so mgmtd
 * moves it out and its chain's one SYNCING place goes to another
 * returning member; it rejoins once the listing returned. */

#define DUMP_QUEUE_MAX 4

struct dump_job {
	struct craq_list_job lj; /* first: the pool's job is the dump_job */
	struct storage_service *s;
	struct rpc_req *req;
	struct stor_target *t;
	struct sto_dump_req m;
	struct ent_vec v;
	bool more;
	struct stor_io_ent io; /* the listing, for the I/O watchdog */
};

static int dump_collect(void *arg, struct chunk_id id, const struct chunk_info *info)
{
	struct dump_job *j = arg;
	if (j->v.n == j->m.max) {
		j->more = true;
		return 1;
	}
	return collect_local(&j->v, id, info);
}

static void dump_finish(struct dump_job *j, int rc)
{
	if (rc < 0) {
		rpc_reply_error(j->req, rc,
		                rc == -CFS_EUNAVAIL ? "dump: stopping"
		                                    : "dump: metadata scan failed");
	} else {
		struct sto_dump_resp r = { .more = j->more, .n = (uint32_t)j->v.n, .e = j->v.e };
		struct buf b;
		buf_init(&b);
		sto_dump_resp_encode(&b, &r);
		rpc_reply(j->req, 0, b.data, (uint32_t)b.len);
		buf_fini(&b);
	}
	stor_end(j->s);
	free(j->v.e);
	free(j);
}

static void dump_run(struct craq_list_job *lj)
{
	struct dump_job *j = (struct dump_job *)lj;
	/* Fault injection: the listing held while the file exists, as by a
	 * disk that hangs (test_craq.c dump_hung_sibling). */
	stor_io_begin(j->t, &j->io);
	stor_fault_hold(j->s, j->t, "faultinj_dump_hold");
	int rc = -CFS_EUNAVAIL;
	if (!atomic_load(&j->s->stopping))
		rc = chunk_engine_iterate(
		    j->t->eng, (struct chunk_id){j->m.from_ino, j->m.from_idx},
		    (struct chunk_id){UINT64_MAX, UINT32_MAX}, dump_collect, j);
	stor_io_end(j->t, &j->io);
	dump_finish(j, rc);
}

static void dump_drop(struct craq_list_job *lj)
{
	dump_finish((struct dump_job *)lj, -CFS_EUNAVAIL);
}

void craq_dump_handle(struct storage_service *s, struct rpc_req *req)
{
	struct sto_dump_req m;
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	if (sto_dump_req_decode(p, plen, &m)) {
		rpc_reply_error(req, -CFS_EPROTO, "dump: malformed request");
		return;
	}
	struct stor_target *t = stor_target_by_id(s, m.target);
	if (!t) {
		rpc_reply_error(req, -ENODEV, "dump: no such target");
		return;
	}
	int err = fence_witness_admit(s);
	if (err) {
		rpc_reply_error(req, err, "dump: not serving");
		return;
	}
	struct dump_job *j = xcalloc(1, sizeof(*j));
	j->lj = (struct craq_list_job){.t = t, .run = dump_run, .drop = dump_drop};
	j->s = s;
	j->req = req;
	j->t = t;
	j->m = m;
	if (craq_list_queue(s, &j->lj, DUMP_QUEUE_MAX)) {
		/* The target's listings are stuck (a hung disk): the sender's
		 * pass ends and the next one asks again. */
		free(j);
		rpc_reply_error(req, -CFS_EUNAVAIL, "dump: target's listings busy");
		stor_end(s);
	}
}

void craq_sync_done_handle(struct storage_service *s, struct rpc_req *req)
{
	struct sto_sync_done_req m;
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	if (sto_sync_done_req_decode(p, plen, &m)) {
		rpc_reply_error(req, -CFS_EPROTO, "sync-done: malformed request");
		return;
	}
	struct stor_target *t = stor_target_by_id(s, m.target);
	struct mgmtd_routing *snap = s->mc ? mgmtd_client_routing(s->mc) : NULL;
	const struct route_chain *c = snap ? route_find_chain(mgmtd_routing_info(snap), m.chain)
					   : NULL;
	/* Only from a pass at our chain version: one that began before this
	 * target last left the chain (and missed writes) proves nothing. */
	int err = -CFS_ECHAIN_VERSION;
	for (uint32_t i = 0; t && c && c->version == m.chain_ver && i < c->n; i++)
		if (c->m[i].target_id == m.target && c->m[i].state == CHAIN_PS_SYNCING)
			err = 0;
	uint64_t rver = snap ? mgmtd_routing_info(snap)->version : 0;
	mgmtd_routing_put(snap);
	if (err) {
		rpc_reply_error(req, err, "sync-done: target is not syncing in that chain");
		return;
	}
	/* A target that fenced itself (an op failed or its disk stalled)
	 * reports OFFLINE until it rejoined through resync: a pass that ends
	 * meanwhile, before mgmtd moved it out, must not turn that into
	 * UPTODATE. A fence after the store stores OFFLINE over it. */
	pthread_mutex_lock(&t->state_mu);
	bool fenced = !atomic_load(&t->started) ||
		      atomic_load(&t->local_state) == CHAIN_LS_OFFLINE;
	if (!fenced) {
		atomic_store(&t->local_state, CHAIN_LS_UPTODATE);
		t->uptodate_rver = rver;
	}
	pthread_mutex_unlock(&t->state_mu);
	if (fenced) {
		rpc_reply_error(req, -CFS_EUNAVAIL, "sync-done: target fenced itself");
		return;
	}
	LOG_NOTICE("craq", "sync done: target=%u chain=%u", m.target, m.chain);
	/* Fault injection: held between the store and the report
	 * (test_craq.c link_old_routing). */
	stor_fault_pause(s, t, "faultinj_sync_done_hold");
	/* States only, touching no engine (test_craq.c sync_done_stat_hold:
	 * this once waited on a hung disk's engine mutex). The sizes (shown,
	 * not acted on) wait for the next report that reads them. */
	mgmtd_link_report_state(s);
	rpc_reply(req, 0, NULL, 0);
}
