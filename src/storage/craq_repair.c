/* craq_repair.c - a replica whose chunk data failed its CRC is repaired
 * from a good replica of the same chain (issue 16, "a corrupted replica
 * makes reads fail").
 *
 * Design: the service that finds the corruption repairs itself, by pull.
 *   1. The read path (storage_service.c read_finish) answers the range with
 *      -CFS_ECORRUPT, as before (the client then reads another replica:
 *      storage_client.c), and calls craq_repair_note: count, log the chunk
 *      (target, chain, inode, index) once, queue it, kick the mgmtd link
 *      thread.
 *   2. The chunk's target's resync worker (craq_resync.c; blocking calls
 *      allowed, after its resync pass, woken by the link thread) runs
 *      craq_repair_pass: for each queued chunk, under the chunk's CRAQ lock
 *      on this target (chain writes to it wait meanwhile), it reads the
 *      whole chunk from another SERVING replica of the chain (a read pinned
 *      to that replica, strict: a chunk with a write in flight there answers
 *      "not committed" and the repair is retried on a later pass) and, when
 *      that copy has exactly our committed version and its bytes match the
 *      peer's CRC, rewrites our copy as a replace carrying that same version
 *      (copy-on-write: the bad block is released). A newer version at the
 *      peer means a write is on its way to us, which replaces the chunk
 *      anyway; we retry until the versions agree or the attempts run out.
 *   3. The result is logged (repaired / gave up) and counted.
 * Why not mark the whole target for resync: resync compares metadata
 * (length, CRC, version), which a flipped data byte leaves intact, so it
 * would not resend the chunk; and a resync takes every chain of the target
 * out of service for one bad block.
 *
 * Threads: craq_repair_note from any thread (engine callbacks included:
 * it only takes a mutex); craq_repair_pass on the target's resync worker
 * only, so a repair waiting on one hung disk holds back no other target.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "storage/stor_fault.h"
#include "storage/storage_int.h"
#include "storage/storage_targets.h"

/* The queue's size; each target may hold a share of it (craq_repair_new). */
#define REPAIR_QUEUE_MAX 1024
/* Passes (one per 200 ms link tick, or a kick, unless the last is still
 * running): ~60 s, so a chunk that a
 * busy writer keeps locked at every peer ("not committed") is still
 * repaired once the writes pause. */
#define REPAIR_ATTEMPTS  300
#define REPAIR_CALL_MS   10000

struct repair_ent {
	uint32_t target, chain;
	struct chunk_id id;
	uint32_t attempts;
	char why[96]; /* the last attempt's reason, for the give-up line */
};

/* One per service (storage_service.repair). Each target may hold at most
 * SHARE entries (its fair share of MAX): a target whose repairs are stuck
 * (a hung disk, no serving peer) and keeps being read finds its own
 * entries at its share and the others' reports still queued
 * (test_craq.c repair_queue_share). A chunk not queued is counted as
 * dropped and logged; a later read of it reports it again. */
struct craq_repair {
	pthread_mutex_t mu; /* guards q, n */
	struct repair_ent *q;
	size_t n, max, share;
	_Atomic uint64_t seen, repaired, failed, dropped;
};

struct craq_repair *craq_repair_new(size_t max, size_t ntargets)
{
	struct craq_repair *r = xcalloc(1, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->max = max ? max : REPAIR_QUEUE_MAX;
	r->share = ntargets > 1 ? r->max / ntargets : r->max;
	if (!r->share)
		r->share = 1;
	r->q = xcalloc(r->max, sizeof(*r->q));
	return r;
}

/* Whether one more entry of TARGET fits (under mu). */
static bool has_room(const struct craq_repair *r, uint32_t target)
{
	size_t mine = 0;
	for (size_t i = 0; i < r->n; i++)
		mine += r->q[i].target == target;
	return r->n < r->max && mine < r->share;
}

void craq_repair_free(struct craq_repair *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r->q);
	free(r);
}

void craq_repair_stats(struct storage_service *s, struct craq_repair_stats *out)
{
	struct craq_repair *r = s->repair;
	out->corrupt_seen = atomic_load(&r->seen);
	out->repaired = atomic_load(&r->repaired);
	out->failed = atomic_load(&r->failed);
	out->dropped = atomic_load(&r->dropped);
}

void craq_repair_note(struct storage_service *s, struct stor_target *t, uint32_t chain,
                      struct chunk_id id)
{
	struct craq_repair *rq = s->repair;
	uint32_t target = stor_target_id(s, t);
	int queued = 0, known = 0;
	atomic_fetch_add(&rq->seen, 1);
	pthread_mutex_lock(&rq->mu);
	for (size_t i = 0; i < rq->n && !known; i++)
		known = rq->q[i].target == target && !chunk_id_cmp(rq->q[i].id, id);
	if (!known && has_room(rq, target)) {
		rq->q[rq->n++] = (struct repair_ent){.target = target, .chain = chain, .id = id};
		queued = 1;
	}
	pthread_mutex_unlock(&rq->mu);
	if (known)
		return;
	if (!queued) {
		atomic_fetch_add(&rq->dropped, 1);
		LOG_ERR("craq",
		        "corrupt chunk: target=%u chain=%u ino=%llu idx=%u: repair queue full "
		        "(this target's share)",
		        target, chain, (unsigned long long)id.ino, id.idx);
		return;
	}
	LOG_ERR("craq",
	        "corrupt chunk: target=%u chain=%u ino=%llu idx=%u: readers use the other "
	        "replicas; repairing from one",
	        target, chain, (unsigned long long)id.ino, id.idx);
	if (s->mc)
		mgmtd_link_kick(s);
}

struct wait_op {
	struct chunk_op op;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
};

static void wait_done(struct chunk_op *op)
{
	struct wait_op *w = (struct wait_op *)op;
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Replaces chunk ID with LEN bytes of DATA at version VER. */
static int replace_local(struct stor_target *t, struct chunk_id id, const void *data, uint32_t len,
                         uint64_t ver, uint32_t chain_ver)
{
	struct wait_op w = {.op = {.type = CHUNK_OP_WRITE,
	                           .done = wait_done,
	                           .id = id,
	                           .off = 0,
	                           .len = len,
	                           .data = data,
	                           .update_ver = ver,
	                           .chain_ver = chain_ver,
	                           .flags = CHUNK_WF_REPLACE}};
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	chunk_engine_submit(t->eng, &w.op);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	return w.op.result < 0 ? w.op.result : 0;
}

/* Reads the whole chunk (LEN bytes) from replica PEER at ADDR. 0 with the
 * bytes in DST and the version in *VER, or an error (-CFS_ENOT_COMMITTED:
 * a write is in flight there; -CFS_ECHECKSUM: the bytes did not match). */
static int read_peer(struct storage_service *s, const char *addr, uint32_t peer, uint32_t chain,
                     uint32_t chain_ver, struct chunk_id id, uint32_t len, void *dst, uint64_t *ver)
{
	struct sto_read_range r = {.target = peer,
	                           .chain = chain,
	                           .chain_ver = chain_ver,
	                           .ino = id.ino,
	                           .idx = id.idx,
	                           .off = 0,
	                           .len = len};
	struct sto_read_req m = {.flags = 0, .n = 1, .r = &r};
	struct buf pl, resp;
	buf_init(&pl);
	buf_init(&resp);
	struct rpc_peer *p;
	char err[128];
	uint64_t got = 0;
	int rc = sto_read_req_encode(&pl, &m);
	if (!rc)
		rc = rpc_client_peer(s->cli, addr, &p, err, sizeof(err));
	if (!rc) {
		struct rpc_call c = {.type = STO_MSG_READ,
		                     .timeout_ms = REPAIR_CALL_MS,
		                     .payload = pl.data,
		                     .payload_len = (uint32_t)pl.len,
		                     .resp_bulk = dst,
		                     .resp_bulk_cap = len};
		rc = rpc_call(p, &c, &resp, &got);
	}
	struct sto_read_res res;
	struct sto_read_resp rr;
	if (!rc)
		rc = sto_read_resp_decode(resp.data, resp.len, &rr, &res, 1) || rr.n != 1
		         ? -CFS_EPROTO
		         : 0;
	if (!rc && res.result < 0)
		rc = res.result;
	if (!rc && ((uint32_t)res.result != len || got != len))
		rc = -CFS_ECONFLICT; /* the peer's chunk has another length: a newer write */
	if (!rc && crc32c(0, dst, len) != res.crc)
		rc = -CFS_ECHECKSUM;
	if (!rc)
		*ver = res.commit_ver;
	buf_fini(&pl);
	buf_fini(&resp);
	return rc;
}

/* 1 repaired (or nothing left to repair), 0 try again later, <0 give up. */
static int repair_one(struct storage_service *s, const struct route_info *ri, struct repair_ent *e)
{
	struct stor_target *t = stor_target_by_id(s, e->target);
	const struct route_chain *ch = route_find_chain(ri, e->chain);
	if (!t || !ch)
		return -ENOENT;
	int rc = 0;
	void *data = NULL;
	craq_lock_wait(t->locks, e->id);
	struct chunk_info info;
	rc = chunk_engine_query(t->eng, e->id, &info);
	if (rc == -ENOENT) {
		rc = 1; /* removed meanwhile */
		goto out;
	}
	if (rc < 0)
		goto out; /* unreadable metadata: not this repair's business */
	/* Is our copy still bad? (A write since may have replaced it.) */
	data = stor_alloc_aligned(info.len ? info.len : 1);
	if (!data) {
		rc = 0;
		goto out;
	}
	struct chunk_read_range lr = {.id = e->id, .off = 0, .len = info.len, .dst = data};
	if (chunk_engine_read(t->eng, &lr, 1) == 0 && lr.result == (int)info.len) {
		rc = 1;
		goto out;
	}
	rc = 0;
	for (uint32_t i = 0; i < ch->n && rc == 0; i++) {
		uint32_t peer = ch->m[i].target_id;
		if (peer == e->target || ch->m[i].state != CHAIN_PS_SERVING)
			continue;
		const struct route_target *rt = route_find_target(ri, peer);
		const char *addr = rt ? stor_node_addr(ri, rt->node_id) : NULL;
		if (!addr)
			continue;
		uint64_t ver = 0;
		int r = read_peer(s, addr, peer, ch->id, ch->version, e->id, info.len, data, &ver);
		if (r)
			snprintf(e->why, sizeof(e->why), "target %u: %s", peer, cfs_strerror(r));
		else if (ver != info.commit_ver)
			snprintf(e->why, sizeof(e->why), "target %u has version %llu, we %llu",
			         peer, (unsigned long long)ver,
			         (unsigned long long)info.commit_ver);
		if (r == 0 && ver == info.commit_ver) {
			r = replace_local(t, e->id, data, info.len, ver, ch->version);
			if (r == 0) {
				rc = 1;
				LOG_NOTICE("craq",
				           "repaired chunk: target=%u chain=%u ino=%llu idx=%u "
				           "from target %u (version %llu, %u bytes)",
				           e->target, ch->id, (unsigned long long)e->id.ino,
				           e->id.idx, peer, (unsigned long long)ver, info.len);
			}
		}
	}
out:
	craq_unlock(t->locks, e->id);
	free(data);
	return rc;
}

void craq_repair_pass(struct storage_service *s, struct stor_target *t, struct mgmtd_routing *snap)
{
	struct craq_repair *rq = s->repair;
	struct repair_ent batch[64];
	size_t n = 0, kept = 0;
	uint32_t target = stor_target_id(s, t);
	/* Fault injection: T's repairs held while the file exists, its
	 * entries left queued, as by a hung disk (test_craq.c
	 * repair_queue_share). */
	stor_fault_hold(s, t, "faultinj_repair_hold");
	pthread_mutex_lock(&rq->mu);
	for (size_t i = 0; i < rq->n; i++) {
		if (rq->q[i].target == target && n < 64)
			batch[n++] = rq->q[i];
		else
			rq->q[kept++] = rq->q[i];
	}
	rq->n = kept;
	pthread_mutex_unlock(&rq->mu);
	const struct route_info *ri = mgmtd_routing_info(snap);
	for (size_t i = 0; i < n && !atomic_load(&s->stopping); i++) {
		struct repair_ent *e = &batch[i];
		int rc = repair_one(s, ri, e);
		if (rc == 1) {
			atomic_fetch_add(&rq->repaired, 1);
			continue;
		}
		if (rc == 0 && ++e->attempts < REPAIR_ATTEMPTS) {
			pthread_mutex_lock(&rq->mu);
			bool requeued = has_room(rq, target);
			if (requeued)
				rq->q[rq->n++] = *e;
			pthread_mutex_unlock(&rq->mu);
			if (requeued)
				continue;
			/* Counted and said like a first report that found the
			 * queue full: the chunk stays corrupt on this replica. */
			atomic_fetch_add(&rq->dropped, 1);
			LOG_ERR("craq",
			        "corrupt chunk: target=%u chain=%u ino=%llu idx=%u: repair queue "
			        "full (this target's share), not retried",
			        e->target, e->chain, (unsigned long long)e->id.ino, e->id.idx);
			continue;
		}
		atomic_fetch_add(&rq->failed, 1);
		LOG_ERR("craq",
		        "corrupt chunk NOT repaired: target=%u chain=%u ino=%llu idx=%u (%s): "
		        "readers use the other replicas; resync the target to rebuild it",
		        e->target, e->chain, (unsigned long long)e->id.ino, e->id.idx,
		        rc < 0      ? cfs_strerror(rc)
		        : e->why[0] ? e->why
		                    : "no serving peer");
	}
}
