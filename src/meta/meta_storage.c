/* meta_storage.c - struct meta_storage over storage chains (meta_storage.h).
 *
 * Each meta.h storage call maps onto one or a few storage_client calls with
 * chain addressing, so writes and removes go through the chain head and
 * replicate like client writes, and queries go to a serving replica:
 *
 *   remove_chunks(chain, ino, first)  STO_REMOVE [first, UINT32_MAX) at the head
 *   gc_remove_chunks                  the same on a client of its own with a 2 s
 *                                     timeout and budget
 *   truncate_chunk(chain, ino, i, n)  storage_client_truncate: STO_TRUNCATE to the
 *                                     chain's head, which cuts the chunk under its
 *                                     lock and replicates the cut like a write
 *   query_last_chunk(chain, ino)      STO_QUERY with last = 1
 *   capacity                          per chain the smallest member's capacity
 *                                     and free bytes (a chain holds one copy per
 *                                     member), summed; each member's usage from
 *                                     STO_STAT (cached 1 s): routing has the
 *                                     usage a target reported when it joined or
 *                                     changed state, not its current one (df
 *                                     showed 0 used), routing's as a fallback
 *
 * Absent chunks are success everywhere: a remove of nothing removes 0, a
 * truncate of an absent chunk (-ENOENT) is 0, and a query that finds no
 * chunk of the inode (-ENOENT) reports "none" (0). This makes GC and
 * truncate retries idempotent. The remove range stops short of chunk index
 * UINT32_MAX, which no file reaches (meta refuses lengths whose chunk index
 * does not fit in u32 before it gets there).
 *
 * A truncate's cuts (remove_chunks, truncate_chunk with a meta_cut_key)
 * go under an exactly-once key made from the client's request, not the
 * storage client's own (meta_cut_storage_key; craq_write.c "Late cuts"): a late cut
 * from a run of the request that lost the race with another run is
 * answered by the head's cache instead of being applied.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "storage_client/storage_client.h"
#include "common/clock.h"
#include "common/status.h"
#include "meta/meta_storage.h"
#include "mgmtd/routing.h"

struct meta_chains {
	struct storage_client *sc;
	/* GC's removals: short per-attempt timeout and retry budget, since a
	 * failed removal is retried at the next GC pass anyway, and a service
	 * stopping must not wait out a long budget behind an unreachable
	 * chain. */
	struct storage_client *gc_sc;
	struct mgmtd_client *mgmtd;
	pthread_mutex_t cap_mu;    /* guards the three below */
	uint64_t cap_ms;           /* mono ms of the cached figures; 0: none */
	uint64_t cap_total, cap_free;
};

#define CAPACITY_CACHE_MS 1000

#define GC_TIMEOUT_MS 2000
#define GC_RETRY_BUDGET_MS 2000

int meta_chains_new(const struct meta_chains_opts *o, struct meta_chains **out, char *err,
		    size_t errlen)
{
	if (!o->mgmtd || !o->n_mgmtd) {
		snprintf(err, errlen, "chain storage needs mgmtd (routing gives the chains)");
		return -EINVAL;
	}
	struct meta_chains *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "chain storage: out of memory");
		return -ENOMEM;
	}
	struct storage_client_opts so = {
		.cluster_id = o->cluster_id, .secret = o->secret, .secret_len = o->secret_len,
		.mgmtd_addrs = o->mgmtd_addrs, .n_mgmtd = o->n_mgmtd,
		.timeout_ms = o->timeout_ms ? o->timeout_ms : 5000,
		.retry_budget_ms = o->retry_budget_ms ? o->retry_budget_ms : 15000,
	};
	int rc = storage_client_new(&so, &c->sc, err, errlen);
	if (rc) {
		free(c);
		return rc;
	}
	so.timeout_ms = so.timeout_ms < GC_TIMEOUT_MS ? so.timeout_ms : GC_TIMEOUT_MS;
	so.retry_budget_ms = GC_RETRY_BUDGET_MS;
	rc = storage_client_new(&so, &c->gc_sc, err, errlen);
	if (rc) {
		storage_client_free(c->sc);
		free(c);
		return rc;
	}
	c->mgmtd = o->mgmtd;
	pthread_mutex_init(&c->cap_mu, NULL);
	*out = c;
	return 0;
}

void meta_chains_free(struct meta_chains *c)
{
	if (!c)
		return;
	storage_client_free(c->sc);
	storage_client_free(c->gc_sc);
	pthread_mutex_destroy(&c->cap_mu);
	free(c);
}

static int chains_remove(void *arg, uint32_t chain, uint64_t ino, uint32_t first,
                         const struct meta_cut_key *key)
{
	struct meta_chains *c = arg;
	struct storage_loc loc = { .chain = chain };
	struct storage_op_key k;
	if (first == UINT32_MAX)
		return 0;
	return storage_client_remove_as(c->sc, &loc, ino, first, UINT32_MAX, NULL,
	                                meta_cut_storage_key(key, 0, &k));
}

static int chains_gc_remove(void *arg, uint32_t chain, uint64_t ino, uint32_t first)
{
	struct meta_chains *c = arg;
	struct storage_loc loc = { .chain = chain };
	if (first == UINT32_MAX)
		return 0;
	return storage_client_remove(c->gc_sc, &loc, ino, first, UINT32_MAX, NULL);
}

static int chains_truncate(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t len,
                           const struct meta_cut_key *key)
{
	struct meta_chains *c = arg;
	struct storage_loc loc = { .chain = chain };
	struct storage_op_key k;
	int rc = storage_client_truncate_as(c->sc, &loc, ino, index, len,
	                                    meta_cut_storage_key(key, 1, &k));
	return rc == -ENOENT ? 0 : rc;
}

static int chains_query(void *arg, uint32_t chain, uint64_t ino, uint32_t *index, uint32_t *len)
{
	struct meta_chains *c = arg;
	struct storage_loc loc = { .chain = chain };
	struct sto_query_resp q;
	int rc = storage_client_query(c->sc, &loc, ino, 0, 1, &q);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	*index = q.idx;
	*len = q.len;
	return 1;
}

/* TARGET's capacity and usage now (STO_STAT on the GC client: short
 * timeout), or routing's figures when it does not answer. */
static void target_usage(struct meta_chains *c, const struct route_info *ri,
			 const struct route_target *t, uint64_t *cap, uint64_t *used)
{
	const struct route_node *n = route_find_node(ri, t->node_id);
	struct sto_stat_resp st;
	*cap = t->capacity;
	*used = t->used;
	if (n && n->addr[0] && t->pub_state != CHAIN_PS_OFFLINE &&
	    storage_client_stat(c->gc_sc, n->addr, t->id, &st) == 0) {
		*cap = st.capacity;
		*used = st.used;
	}
}

static int chains_capacity(void *arg, uint64_t *total, uint64_t *free_bytes)
{
	struct meta_chains *c = arg;
	*total = *free_bytes = 0;
	pthread_mutex_lock(&c->cap_mu);
	if (c->cap_ms && clock_mono_ms() - c->cap_ms < CAPACITY_CACHE_MS) {
		*total = c->cap_total;
		*free_bytes = c->cap_free;
		pthread_mutex_unlock(&c->cap_mu);
		return 0;
	}
	pthread_mutex_unlock(&c->cap_mu);
	struct mgmtd_routing *snap = mgmtd_client_routing(c->mgmtd);
	if (!snap)
		return -CFS_EUNAVAIL;
	const struct route_info *ri = mgmtd_routing_info(snap);
	for (size_t i = 0; i < ri->n_chains; i++) {
		const struct route_chain *ch = &ri->chains[i];
		uint64_t cap = UINT64_MAX, fr = UINT64_MAX;
		for (uint32_t k = 0; k < ch->n; k++) {
			const struct route_target *t = route_find_target(ri, ch->m[k].target_id);
			if (!t)
				continue;
			uint64_t tcap, tused;
			target_usage(c, ri, t, &tcap, &tused);
			uint64_t f = tcap > tused ? tcap - tused : 0;
			cap = tcap < cap ? tcap : cap;
			fr = f < fr ? f : fr;
		}
		if (cap != UINT64_MAX) {
			*total += cap;
			*free_bytes += fr;
		}
	}
	mgmtd_routing_put(snap);
	pthread_mutex_lock(&c->cap_mu);
	c->cap_ms = clock_mono_ms();
	c->cap_total = *total;
	c->cap_free = *free_bytes;
	pthread_mutex_unlock(&c->cap_mu);
	return 0;
}

struct meta_storage meta_chains_storage(struct meta_chains *c)
{
	return (struct meta_storage){ c, chains_remove, chains_truncate, chains_query,
				      chains_capacity, chains_gc_remove };
}

int meta_routing_table(void *mgmtd, uint32_t table_id, uint32_t *chains, uint32_t cap)
{
	struct mgmtd_routing *snap = mgmtd_client_routing(mgmtd);
	const struct route_table *t;
	int rc = -ENOENT;
	if (!snap)
		return -ENOENT;
	t = route_find_table(mgmtd_routing_info(snap), table_id);
	if (t && t->n <= INT32_MAX) {
		for (uint32_t k = 0; k < t->n && k < cap; k++)
			chains[k] = t->chains[k];
		rc = (int)t->n;
	}
	mgmtd_routing_put(snap);
	return rc;
}

static int none_remove(void *arg, uint32_t chain, uint64_t ino, uint32_t first,
                       const struct meta_cut_key *key)
{
	return -EOPNOTSUPP;
}

static int none_truncate(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t len,
                         const struct meta_cut_key *key)
{
	return -EOPNOTSUPP;
}

static int none_query(void *arg, uint32_t chain, uint64_t ino, uint32_t *index, uint32_t *len)
{
	return -EOPNOTSUPP;
}

static int none_capacity(void *arg, uint64_t *total, uint64_t *free_bytes)
{
	return -EOPNOTSUPP;
}

struct meta_storage meta_storage_none(void)
{
	return (struct meta_storage){ NULL, none_remove, none_truncate, none_query, none_capacity,
				      NULL };
}
