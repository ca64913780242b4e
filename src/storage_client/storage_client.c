/* storage_client.c - the storage client (storage_client.h).
 *
 * Each call resolves its location to (server address, target id, chain
 * version) from the routing cache (a mgmtd_client that does not register)
 * or takes it as given, sends one RPC per server and retries retryable
 * failures with backoff inside the caller's budget. After an error that
 * means "your routing is old" the retry first waits (bounded by the
 * backoff) for a newer routing version.
 *
 * Exactly-once writes: each calling thread gets its own channel number (so
 * a channel never has two writes in flight) and numbers its writes; a
 * retried write keeps its (channel, seq) and the chain head answers a
 * repeat from its cache.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "storage_client/storage_client.h"
#include "storage_client/sc_direct.h"
#include "storage_client/sc_shm.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/status.h"
#include "mgmtd/mgmtd_client.h"
#include "net/rpc.h"

#define BACKOFF_MIN_MS 20
#define BACKOFF_MAX_MS 500

/* Replica avoidance (see "node avoidance" below). A server whose
 * connection failed or whose request timed out is skipped by chain reads
 * for AVOID_MS, or until a request to it succeeds. The RPC client's
 * longest pause between connect attempts is the same, so when the window
 * ends the next read to that server connects at once (and fails at once
 * on a dead node) instead of queueing behind a connect backoff. */
#define AVOID_MS 1000
#define AVOID_MAX 16
/* Retries without a pause after a server failure: enough to try the
 * other two replicas of an R = 3 chain. */
#define FAST_RETRIES 2
/* Short-circuit reads of a chunk (direct_pick) that stay on one same-host
 * replica before the chunk's choice moves to the next one. */
#define DIRECT_SPREAD_RUN 64
/* Read counters for that, shared by the chunks hashing to one. */
#define DIRECT_SPREAD_SLOTS 4096
/* Consecutive chunks of a file that start on one replica (position in
 * their chains). */
#define DIRECT_EXTENT 64
/* Threads that retry failed async reads with the blocking path. */
#define SLOW_THREADS 8
struct aread;
struct avoid_ent {
	char addr[ROUTE_ADDR_MAX + 1];
	uint64_t until_ms;
};

/* Read combining (see "read combining" below): groups queued for one server. */
struct readq {
	char addr[ROUTE_ADDR_MAX + 1];
	uint32_t flags;
	unsigned inflight;              /* read RPCs in flight; under c->rq_mu */
	struct read_group *head, *tail; /* queued groups; under c->rq_mu */
	struct readq *next;
};

struct storage_client {
	struct rpc_client *rpc;
	struct sc_shm *shm;      /* same-host shared-memory reads and writes; NULL: off */
	struct sc_direct *dr;    /* short-circuit reads (sc_direct.h); NULL: off */
	struct mgmtd_client *mc; /* NULL without mgmtd addresses */
	uint32_t timeout_ms;
	uint32_t budget_ms;
	uint64_t client_id;
	_Atomic uint64_t rr;     /* replica rotation for reads */
	_Atomic uint32_t dr_reads[DIRECT_SPREAD_SLOTS]; /* short-circuit picks per chunk hash */
	pthread_mutex_t rq_mu;   /* read combining queues */
	struct readq *rq;        /* per (server, flags); freed with the client */
	_Atomic uint64_t read_rpcs, read_groups;
	pthread_mutex_t av_mu;       /* guards av[] */
	struct avoid_ent av[AVOID_MAX];
	_Atomic uint32_t n_av;       /* entries in use; 0 skips the lock on reads */
	_Atomic uint64_t avoided_picks;
	/* Async reads that need retries (see storage_client_read_async). */
	pthread_mutex_t slow_mu;
	pthread_cond_t slow_cv;
	struct aread *slow_head, *slow_tail;
	pthread_t slow_th[SLOW_THREADS];
	int slow_n, slow_idle, slow_stop;
};

void storage_client_get_stats(struct storage_client *c, struct storage_client_stats *out)
{
	out->read_rpcs = atomic_load(&c->read_rpcs);
	out->read_groups = atomic_load(&c->read_groups);
	out->avoided_picks = atomic_load(&c->avoided_picks);
	struct sc_shm_stats ss;
	sc_shm_get_stats(c->shm, &ss);
	out->shm_reads = ss.reads;
	out->shm_fallbacks = ss.fallbacks;
	out->shm_quarantined = ss.quarantined;
	out->shm_writes = ss.writes;
	out->shm_write_fallbacks = ss.write_fallbacks;
	out->shm_direct_reads = ss.direct_reads;
	out->shm_direct_writes = ss.direct_writes;
	out->shm_direct_lost = ss.direct_lost;
	out->shm_unregs = ss.unregs;
	struct sc_direct_stats ds;
	sc_direct_get_stats(c->dr, &ds);
	out->sc_reads = ds.reads;
	out->sc_fallbacks = ds.fallbacks;
	out->sc_misses = ds.misses;
	out->sc_maps = ds.maps;
	out->sc_map_rpcs = ds.map_rpcs;
	out->sc_map_many = ds.map_many;
	out->sc_stale = ds.stale;
	out->sc_corrupt = ds.corrupt;
	out->sc_dead = ds.dead;
	out->sc_regs = ds.regs;
	out->sc_tables = ds.tables;
	out->sc_keys = ds.keys;
	out->sc_key_evictions = ds.key_evictions;
	out->sc_files = ds.files;
	out->sc_cached_direct = ds.cached_direct;
}

void storage_client_set_will_block(struct storage_client *c, void (*fn)(void))
{
	sc_direct_set_will_block(c->dr, fn);
}

void storage_client_set_sc_test_mid(struct storage_client *c,
				    void (*fn)(uint64_t ino, uint32_t idx))
{
	sc_direct_set_test_mid(c->dr, fn);
}

int storage_client_sc_test_bad_map(struct storage_client *c, const char *addr)
{
	return c->dr ? sc_direct_test_bad_map(c->dr, addr) : -EOPNOTSUPP;
}

static _Atomic uint64_t next_channel = 1;
static __thread const struct storage_client *tl_client;
static __thread uint64_t tl_channel, tl_seq;

static void next_seq(const struct storage_client *c, uint64_t *channel, uint64_t *seq)
{
	if (tl_client != c || !tl_channel) {
		tl_client = c;
		tl_channel = atomic_fetch_add(&next_channel, 1);
		tl_seq = 0;
	}
	*channel = tl_channel;
	*seq = ++tl_seq;
}

int storage_client_new(const struct storage_client_opts *o, struct storage_client **out,
		       char *err, size_t errlen)
{
	struct storage_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->timeout_ms = o->timeout_ms ? o->timeout_ms : 10000;
	c->budget_ms = o->retry_budget_ms ? o->retry_budget_ms : 30000;
	c->client_id = o->client_id;
	pthread_mutex_init(&c->rq_mu, NULL);
	pthread_mutex_init(&c->av_mu, NULL);
	pthread_mutex_init(&c->slow_mu, NULL);
	pthread_cond_init(&c->slow_cv, NULL);
	while (!c->client_id)
		if (getrandom(&c->client_id, sizeof(c->client_id), 0) != sizeof(c->client_id))
			c->client_id = clock_wall_ns();
	struct rpc_opts ro = { .cluster_id = o->cluster_id, .secret = o->secret,
			       .secret_len = o->secret_len,
			       .nthreads = o->threads > 0 ? o->threads : 2,
			       .max_bulk = 256u << 20, .timeout_ms = c->timeout_ms,
			       .conns_per_peer = o->conns_per_peer > 0 ? o->conns_per_peer : 2,
			       .max_backoff_ms = AVOID_MS };
	int rc = rpc_client_new(&ro, &c->rpc);
	if (rc) {
		snprintf(err, errlen, "rpc client: %s", cfs_strerror(rc));
		goto fail;
	}
	c->shm = sc_shm_new(&ro); /* NULL: reads use the socket only */
	c->dr = sc_direct_new(&ro, o->short_read);
	if (o->n_mgmtd) {
		struct mgmtd_client_opts mo = { .mgmtd_addrs = o->mgmtd_addrs,
						.n_mgmtd = o->n_mgmtd,
						.cluster_id = o->cluster_id, .secret = o->secret,
						.secret_len = o->secret_len, .poll_wait_ms = 2000 };
		if ((rc = mgmtd_client_new(&mo, &c->mc, err, errlen)))
			goto fail;
	}
	*out = c;
	return 0;
fail:
	storage_client_free(c);
	return rc;
}

int storage_client_mem_add(struct storage_client *c, int fd, void *base, uint64_t size)
{
	return sc_shm_mem_add(c->shm, fd, base, size);
}

int storage_client_mem_del(struct storage_client *c, const void *base)
{
	return sc_shm_mem_del(c->shm, base);
}

void storage_client_free(struct storage_client *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->slow_mu);
	c->slow_stop = 1;
	pthread_cond_broadcast(&c->slow_cv);
	pthread_mutex_unlock(&c->slow_mu);
	for (int i = 0; i < c->slow_n; i++)
		pthread_join(c->slow_th[i], NULL);
	pthread_mutex_destroy(&c->slow_mu);
	pthread_cond_destroy(&c->slow_cv);
	mgmtd_client_free(c->mc);
	rpc_client_free(c->rpc);
	sc_shm_free(c->shm);
	sc_direct_free(c->dr);
	while (c->rq) {
		struct readq *q = c->rq;
		c->rq = q->next;
		free(q);
	}
	pthread_mutex_destroy(&c->rq_mu);
	pthread_mutex_destroy(&c->av_mu);
	free(c);
}

uint64_t storage_client_routing_version(struct storage_client *c)
{
	struct mgmtd_routing *snap = c->mc ? mgmtd_client_routing(c->mc) : NULL;
	uint64_t v = snap ? mgmtd_routing_version(snap) : 0;
	mgmtd_routing_put(snap);
	return v;
}

int storage_client_wait_routing(struct storage_client *c, uint64_t v, uint32_t timeout_ms)
{
	if (!c->mc)
		return -EINVAL;
	return mgmtd_client_wait_routing(c->mc, v, timeout_ms);
}

/* ---- node avoidance ----
 * A kill -9 of a storage service leaves it SERVING in the routing until
 * mgmtd's heartbeat timeout; a read sent there meanwhile fails (closed or
 * refused connection) and, without this, its retries kept landing on it
 * (one in R by rotation) behind the RPC client's connect backoff: stalls
 * of about 2 s. Now the failure marks the server, chain reads pick among
 * the other SERVING replicas while the mark lasts, and the failed read
 * retries at once. Only the choice of replica changes: writes still go
 * to the head under CRAQ's rules. */

/* Errors that say the server (not the request) is in trouble. */
static bool node_error(int err)
{
	switch (err) {
	case -CFS_ETIMEDOUT:
	case -CFS_ECLOSED:
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -EPIPE:
	case -EHOSTUNREACH:
	case -ENOTCONN:
	case -ETIMEDOUT:
		return true;
	default:
		return false;
	}
}

/* Marks ADDR avoided for AVOID_MS from now (a full table drops the entry
 * that ends first). */
/* A server address into DST (CAP bytes, cut to fit): snprintf's "%s"
 * without the format machinery, which showed in the per-read profile. */
static void addr_copy(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = 0;
}

static void avoid_mark(struct storage_client *c, const char *addr)
{
	uint64_t now = clock_mono_ms();
	pthread_mutex_lock(&c->av_mu);
	uint32_t n = atomic_load(&c->n_av), k = n, old = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (!strcmp(c->av[i].addr, addr)) {
			k = i;
			break;
		}
		if (c->av[i].until_ms < c->av[old].until_ms)
			old = i;
	}
	if (k == n && n == AVOID_MAX)
		k = old;
	addr_copy(c->av[k].addr, sizeof(c->av[k].addr), addr);
	c->av[k].until_ms = now + AVOID_MS;
	if (k == n)
		atomic_store(&c->n_av, n + 1);
	pthread_mutex_unlock(&c->av_mu);
}

/* Drops ADDR's mark (a request to it succeeded) and expired ones. */
static void avoid_clear(struct storage_client *c, const char *addr)
{
	if (!atomic_load_explicit(&c->n_av, memory_order_relaxed))
		return;
	uint64_t now = clock_mono_ms();
	pthread_mutex_lock(&c->av_mu);
	uint32_t n = atomic_load(&c->n_av);
	for (uint32_t i = 0; i < n;) {
		if ((addr && !strcmp(c->av[i].addr, addr)) || c->av[i].until_ms <= now)
			c->av[i] = c->av[--n];
		else
			i++;
	}
	atomic_store(&c->n_av, n);
	pthread_mutex_unlock(&c->av_mu);
}

/* Whether ADDR is marked now. Caller holds av_mu. */
static bool avoid_has(const struct storage_client *c, const char *addr, uint64_t now)
{
	uint32_t n = atomic_load(&c->n_av);
	for (uint32_t i = 0; i < n; i++)
		if (c->av[i].until_ms > now && !strcmp(c->av[i].addr, addr))
			return true;
	return false;
}

/* Where to send a request for LOC now. */
struct dest {
	char addr[ROUTE_ADDR_MAX + 1];
	uint32_t target, chain, chain_ver;
	uint64_t routing_ver; /* the routing it came from (0: direct) */
};

/* Replicas one read found corrupt (-CFS_ECORRUPT: the service's CRC check
 * of its stored data failed); the read's retries go to the others. FIRST
 * (0: none): the replica whose copy a short-circuit read found a bad page
 * in (SC_DIRECT_CORRUPT); the read's next RPC goes there while it is
 * SERVING, so its service checks the chunk itself, reports it and repairs
 * it (craq_repair.c), and an -CFS_ECORRUPT then sends it on to another. */
struct read_avoid {
	uint32_t target[CHAIN_MAX_TARGETS];
	uint32_t n;
	uint32_t first;
};

static bool avoided(const struct read_avoid *a, uint32_t target)
{
	for (uint32_t i = 0; a && i < a->n; i++)
		if (a->target[i] == target)
			return true;
	return false;
}

/* AVOID (reads only; may be NULL): targets to skip. When every SERVING
 * replica is in it, the chunk is corrupt everywhere: -CFS_ECORRUPT. */
static int resolve(struct storage_client *c, const struct storage_loc *loc, bool write,
		   struct dest *d, const struct read_avoid *avoid)
{
	memset(d, 0, sizeof(*d));
	if (!loc->chain) {
		if (!loc->addr)
			return -EINVAL;
		addr_copy(d->addr, sizeof(d->addr), loc->addr);
		d->target = loc->target;
		return 0;
	}
	if (!c->mc)
		return -EINVAL;
	if (loc->addr && loc->target && !write) {
		/* Pinned to one replica (checks, tools): any version will do. */
		addr_copy(d->addr, sizeof(d->addr), loc->addr);
		d->target = loc->target;
		d->chain = loc->chain;
		return 0;
	}
	struct mgmtd_routing *snap = mgmtd_client_routing(c->mc);
	if (!snap) {
		mgmtd_client_wait_routing(c->mc, 1, 1000);
		snap = mgmtd_client_routing(c->mc);
		if (!snap)
			return -CFS_EUNAVAIL;
	}
	const struct route_info *ri = mgmtd_routing_info(snap);
	const struct route_chain *ch = route_find_chain(ri, loc->chain);
	int rc = 0;
	d->routing_ver = mgmtd_routing_version(snap);
	if (!ch) {
		rc = -ENOENT;
		goto out;
	}
	uint32_t pick = UINT32_MAX;
	if (write) {
		if (ch->m[0].state == CHAIN_PS_SERVING)
			pick = 0;
	} else {
		uint32_t serving[CHAIN_MAX_TARGETS], ns = 0, skipped = 0;
		for (uint32_t i = 0; i < ch->n; i++) {
			if (ch->m[i].state != CHAIN_PS_SERVING)
				continue;
			if (avoided(avoid, ch->m[i].target_id))
				skipped++;
			else if (avoid && avoid->first && avoid->first == ch->m[i].target_id)
				pick = i;
			else
				serving[ns++] = i;
		}
		if (pick != UINT32_MAX)
			ns = 0; /* FIRST, serving and not avoided */
		if (ns > 1 && atomic_load_explicit(&c->n_av, memory_order_relaxed)) {
			/* Prefer replicas on servers not marked by a recent
			 * failure; with all of them marked, use them all. */
			uint32_t ok[CHAIN_MAX_TARGETS], nok = 0;
			uint64_t now = clock_mono_ms();
			pthread_mutex_lock(&c->av_mu);
			for (uint32_t j = 0; j < ns; j++) {
				const struct route_target *tj =
					route_find_target(ri, ch->m[serving[j]].target_id);
				const struct route_node *nj =
					tj ? route_find_node(ri, tj->node_id) : NULL;
				if (!nj || !avoid_has(c, nj->addr, now))
					ok[nok++] = serving[j];
			}
			pthread_mutex_unlock(&c->av_mu);
			if (nok && nok < ns) {
				memcpy(serving, ok, nok * sizeof(ok[0]));
				ns = nok;
				atomic_fetch_add(&c->avoided_picks, 1);
			}
		}
		if (ns)
			pick = serving[atomic_fetch_add(&c->rr, 1) % ns];
		else if (skipped && pick == UINT32_MAX) {
			rc = -CFS_ECORRUPT;
			goto out;
		}
	}
	if (pick == UINT32_MAX) {
		rc = -CFS_EUNAVAIL; /* no serving target: wait for recovery */
		goto out;
	}
	const struct route_target *t = route_find_target(ri, ch->m[pick].target_id);
	const struct route_node *n = t ? route_find_node(ri, t->node_id) : NULL;
	if (!n) {
		rc = -CFS_EUNAVAIL;
		goto out;
	}
	addr_copy(d->addr, sizeof(d->addr), n->addr);
	d->target = t->id;
	d->chain = ch->id;
	d->chain_ver = ch->version;
out:
	mgmtd_routing_put(snap);
	return rc;
}

static bool routing_error(int err)
{
	return err == -CFS_ECHAIN_VERSION || err == -CFS_ENOT_HEAD || err == -ENODEV ||
	       err == -ENOENT;
}

static bool retryable(int err, bool chain)
{
	switch (err) {
	case -CFS_ENOT_COMMITTED:
	case -CFS_ETIMEDOUT:
	case -CFS_ECLOSED:
	case -CFS_EUNAVAIL:
	case -CFS_EFENCED:
	case -CFS_ECHECKSUM:
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -EPIPE:
	case -EHOSTUNREACH:
	case -ENOTCONN:
		return true;
	case -CFS_ECHAIN_VERSION:
	case -CFS_ENOT_HEAD:
	case -ENODEV:
		return chain;
	default:
		return false;
	}
}

/* Sleeps before attempt ATTEMPT (1, 2, ...), waiting for newer routing
 * instead when ERR says ours is stale. false when the budget is spent. */
static bool backoff(struct storage_client *c, uint64_t start_ms, int attempt, int err,
		    uint64_t routing_ver)
{
	uint64_t ms = BACKOFF_MIN_MS;
	for (int i = 1; i < attempt && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	uint64_t now = clock_mono_ms();
	if (now + ms > start_ms + c->budget_ms)
		return false;
	if (c->mc && routing_ver && routing_error(err))
		mgmtd_client_wait_routing(c->mc, routing_ver + 1, (uint32_t)ms);
	else
		clock_sleep_ms(ms);
	return true;
}

static int call(struct storage_client *c, const char *addr, uint16_t type, const struct buf *pl,
		const void *bulk, uint64_t bulk_len, struct buf *resp)
{
	struct rpc_peer *p;
	char err[128];
	int rc = rpc_client_peer(c->rpc, addr, &p, err, sizeof(err));
	if (rc)
		return rc;
	struct rpc_call cl = { .type = type, .payload = pl->data, .payload_len = (uint32_t)pl->len,
			       .bulk = bulk, .bulk_len = bulk_len };
	buf_reset(resp);
	rc = rpc_call(p, &cl, resp, NULL);
	if (node_error(rc))
		avoid_mark(c, addr);
	return rc;
}

/* The write; GIVEN: CRC came from the caller, not from a pass over DATA. */
static int write_crc(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
                     uint32_t idx, uint32_t off, uint32_t len, const void *data, uint32_t crc,
                     int given, uint32_t flags, struct sto_write_resp *out)
{
	if (!len || !data || (flags & ~(uint32_t)(STO_WF_REPLACE | STO_WF_NOFLUSH | STO_WF_IF_ABSENT)))
		return -EINVAL;
	struct sto_write_req m = {.ino = ino,
	                          .idx = idx,
	                          .off = off,
	                          .len = len,
	                          .crc = crc,
	                          .flags = flags,
	                          .client = c->client_id};
	next_seq(c, &m.channel, &m.seq);
	struct buf pl, resp;
	buf_init(&pl);
	buf_init(&resp);
	uint64_t start = clock_mono_ms();
	int rc;
	for (int attempt = 1;; attempt++) {
		struct dest d;
		rc = resolve(c, loc, true, &d, NULL);
		if (!rc) {
			m.target = d.target;
			m.chain = d.chain;
			m.chain_ver = d.chain_ver;
			buf_reset(&pl);
			if ((rc = sto_write_req_encode(&pl, &m)))
				break;
			/* Same host: the data goes through the shared-memory
			 * arena; otherwise (or when the arena path declines)
			 * over the socket, same request. */
			int fallback = 1;
			if (c->shm) {
				rc = sc_shm_write(c->shm, d.addr, &m, data, &resp, &fallback);
				if (!fallback && node_error(rc))
					avoid_mark(c, d.addr);
			}
			if (fallback)
				rc = call(c, d.addr, STO_MSG_WRITE, &pl, data, len, &resp);
		}
		if (!rc) {
			struct sto_write_resp r;
			rc = sto_write_resp_decode(resp.data, resp.len, &r);
			if (!rc && out)
				*out = r;
			break;
		}
		/* A caller's CRC that its bytes do not match fails the same
		 * way on every attempt. */
		if (rc == -CFS_ECHECKSUM && given && crc32c(0, data, len) != crc)
			break;
		if (!retryable(rc, loc->chain != 0) || !backoff(c, start, attempt, rc, d.routing_ver))
			break;
	}
	buf_fini(&pl);
	buf_fini(&resp);
	return rc;
}

int storage_client_write(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
                         uint32_t idx, uint32_t off, uint32_t len, const void *data, uint32_t flags,
                         struct sto_write_resp *out)
{
	if (!len || !data)
		return -EINVAL;
	return write_crc(c, loc, ino, idx, off, len, data, crc32c(0, data, len), 0, flags, out);
}

int storage_client_write_crc(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
                             uint32_t idx, uint32_t off, uint32_t len, const void *data,
                             uint32_t crc, uint32_t flags, struct sto_write_resp *out)
{
	return write_crc(c, loc, ino, idx, off, len, data, crc, 1, flags, out);
}

/* Encodes request ARG for D into PL: call_loc's ENCODE. */
typedef int (*loc_encode_fn)(struct buf *pl, void *arg, const struct dest *d);

/* A request of TYPE to LOC (a write: its chain's head) with LEN bytes of
 * bulk DATA (none: NULL, 0), encoded by ENCODE for each attempt's
 * destination and retried as retryable() and backoff() say; the reply's
 * payload in RESP. */
static int call_loc(struct storage_client *c, const struct storage_loc *loc, bool write,
		    uint16_t type, loc_encode_fn encode, void *arg, const void *data, uint32_t len,
		    struct buf *resp)
{
	struct buf pl;
	buf_init(&pl);
	uint64_t start = clock_mono_ms();
	int rc;
	for (int attempt = 1;; attempt++) {
		struct dest d;
		rc = resolve(c, loc, write, &d, NULL);
		if (!rc) {
			buf_reset(&pl);
			if ((rc = encode(&pl, arg, &d)))
				break;
			rc = call(c, d.addr, type, &pl, data, len, resp);
		}
		if (!rc || !retryable(rc, loc->chain != 0) ||
		    !backoff(c, start, attempt, rc, d.routing_ver))
			break;
	}
	buf_fini(&pl);
	return rc;
}

static int write_if_encode(struct buf *pl, void *arg, const struct dest *d)
{
	struct sto_write_if_req *m = arg;
	m->target = d->target;
	m->chain = d->chain;
	m->chain_ver = d->chain_ver;
	return sto_write_if_req_encode(pl, m);
}

int storage_client_write_if(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
                            uint32_t idx, uint32_t len, const void *data, uint64_t expect,
                            uint32_t expect_len, uint32_t expect_crc, struct sto_write_resp *out)
{
	return storage_client_write_if_at(c, loc, ino, idx, len, data, expect, expect_len,
	                                  expect_crc, 0, out);
}

int storage_client_write_if_at(struct storage_client *c, const struct storage_loc *loc,
                               uint64_t ino, uint32_t idx, uint32_t len, const void *data,
                               uint64_t expect, uint32_t expect_len, uint32_t expect_crc,
                               uint64_t create_ver, struct sto_write_resp *out)
{
	if (!len || !data || !loc->chain || (create_ver && expect != STO_WIF_ABSENT) ||
	    create_ver > STO_WIF_CREATE_VER_MAX)
		return -EINVAL;
	struct sto_write_if_req m = {.ino = ino,
	                             .idx = idx,
	                             .len = len,
	                             .crc = crc32c(0, data, len),
	                             .flags = STO_WF_REPLACE,
	                             .update_ver = create_ver,
	                             .client = c->client_id,
	                             .expect = expect,
	                             .expect_len = expect_len,
	                             .expect_crc = expect_crc};
	/* One key for every attempt: a refusal or a landing is answered
	 * again from the head's exactly-once cache. */
	next_seq(c, &m.channel, &m.seq);
	struct buf resp;
	buf_init(&resp);
	int rc = call_loc(c, loc, true, STO_MSG_WRITE_IF, write_if_encode, &m, data, len, &resp);
	if (!rc) {
		struct sto_write_resp r;
		rc = sto_write_resp_decode(resp.data, resp.len, &r);
		if (!rc && out)
			*out = r;
	}
	buf_fini(&resp);
	return rc;
}

static int remove_encode(struct buf *pl, void *arg, const struct dest *d)
{
	struct sto_remove_req *m = arg;
	m->target = d->target;
	m->chain = d->chain;
	m->chain_ver = d->chain_ver;
	return sto_remove_req_encode(pl, m);
}

/* KEY, or the client's own next one, into *CLIENT, *CHANNEL, *SEQ. */
static void op_key(const struct storage_client *c, const struct storage_op_key *key,
                   uint64_t *client, uint64_t *channel, uint64_t *seq)
{
	if (key) {
		*client = key->client;
		*channel = key->channel;
		*seq = key->seq;
		return;
	}
	*client = c->client_id;
	next_seq(c, channel, seq);
}

int storage_client_remove(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
			  uint32_t begin, uint32_t end, uint32_t *removed)
{
	return storage_client_remove_as(c, loc, ino, begin, end, removed, NULL);
}

int storage_client_remove_as(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
                             uint32_t begin, uint32_t end, uint32_t *removed,
                             const struct storage_op_key *key)
{
	struct sto_remove_req m = {.ino = ino, .begin = begin, .end = end};
	op_key(c, key, &m.client, &m.channel, &m.seq);
	struct buf resp;
	buf_init(&resp);
	int rc = call_loc(c, loc, true, STO_MSG_REMOVE, remove_encode, &m, NULL, 0, &resp);
	if (!rc) {
		struct sto_remove_resp r;
		rc = sto_remove_resp_decode(resp.data, resp.len, &r);
		if (!rc && removed)
			*removed = r.removed;
	}
	buf_fini(&resp);
	return rc;
}

static int truncate_encode(struct buf *pl, void *arg, const struct dest *d)
{
	struct sto_truncate_req *m = arg;
	m->target = d->target;
	m->chain = d->chain;
	m->chain_ver = d->chain_ver;
	return sto_truncate_req_encode(pl, m);
}

/* The cut as a read then a replace, for direct addressing (no chain,
 * tests and single services) and a chain whose head predates
 * STO_TRUNCATE: nothing orders it against writes of the chunk (a write
 * acknowledged between the read and the replace is undone). */
static int truncate_direct(struct storage_client *c, const struct storage_loc *loc,
			   uint64_t ino, uint32_t idx, uint32_t len)
{
	void *buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	struct storage_read r = { .loc = *loc, .ino = ino, .idx = idx, .len = len, .dst = buf };
	if (loc->chain)
		r.loc.addr = NULL, r.loc.target = 0; /* any serving replica */
	int rc = storage_client_read(c, &r, 1, 0);
	if (!rc && r.result < 0)
		rc = r.result;
	if (!rc && (uint32_t)r.result == len) {
		struct sto_query_resp q;
		rc = storage_client_query(c, &r.loc, ino, idx, 0, &q);
		if (!rc && q.len > len)
			rc = storage_client_write(c, loc, ino, idx, 0, len, buf, STO_WF_REPLACE, NULL);
	}
	free(buf);
	return rc;
}

int storage_client_truncate(struct storage_client *c, const struct storage_loc *loc,
			    uint64_t ino, uint32_t idx, uint32_t len)
{
	return storage_client_truncate_as(c, loc, ino, idx, len, NULL);
}

int storage_client_truncate_as(struct storage_client *c, const struct storage_loc *loc,
                               uint64_t ino, uint32_t idx, uint32_t len,
                               const struct storage_op_key *key)
{
	if (len == 0) {
		uint32_t removed = 0;
		int rc = storage_client_remove_as(c, loc, ino, idx, idx + 1, &removed, key);
		return rc ? rc : removed ? 0 : -ENOENT;
	}
	if (!loc->chain)
		return truncate_direct(c, loc, ino, idx, len);
	struct sto_truncate_req m = {.ino = ino, .idx = idx, .len = len};
	op_key(c, key, &m.client, &m.channel, &m.seq);
	struct buf resp;
	buf_init(&resp);
	int rc = call_loc(c, loc, true, STO_MSG_TRUNCATE, truncate_encode, &m, NULL, 0, &resp);
	if (!rc) {
		struct sto_write_resp r;
		rc = sto_write_resp_decode(resp.data, resp.len, &r);
	}
	buf_fini(&resp);
	/* A head from before STO_TRUNCATE (a rolling upgrade): the cut as
	 * such a client made it, rather than a failed truncate. */
	if (rc == -CFS_EBADMSG_TYPE)
		rc = truncate_direct(c, loc, ino, idx, len);
	return rc;
}

static int query_encode(struct buf *pl, void *arg, const struct dest *d)
{
	struct sto_query_req *m = arg;
	m->target = d->target;
	m->chain = d->chain;
	return sto_query_req_encode(pl, m);
}

int storage_client_query(struct storage_client *c, const struct storage_loc *loc, uint64_t ino,
			 uint32_t idx, int last, struct sto_query_resp *out)
{
	struct sto_query_req m = { .ino = ino, .idx = idx, .last = last ? 1 : 0 };
	struct buf resp;
	buf_init(&resp);
	int rc = call_loc(c, loc, false, STO_MSG_QUERY, query_encode, &m, NULL, 0, &resp);
	if (!rc)
		rc = sto_query_resp_decode(resp.data, resp.len, out);
	buf_fini(&resp);
	return rc;
}

int storage_client_stat(struct storage_client *c, const char *addr, uint32_t target,
			struct sto_stat_resp *out)
{
	struct sto_stat_req m = { .target = target };
	struct buf pl, resp;
	buf_init(&pl);
	buf_init(&resp);
	int rc = sto_stat_req_encode(&pl, &m);
	if (!rc)
		rc = call(c, addr, STO_MSG_STAT, &pl, NULL, 0, &resp);
	if (!rc)
		rc = sto_stat_resp_decode(resp.data, resp.len, out);
	buf_fini(&pl);
	buf_fini(&resp);
	return rc;
}

/* ---- batched reads ---- */

struct read_group {
	struct storage_client *c;
	char addr[ROUTE_ADDR_MAX + 1];
	size_t *idx;                /* indexes into the caller's array */
	size_t n;
	struct sto_read_range *rr;
	uint8_t *bounce;            /* NULL when the reply lands in the caller's memory */
	struct iovec *iov;          /* or: one segment per range (dst, len), read into
				       straight from the socket when the group is an RPC
				       of its own; NULL when contiguous or bounced */
	int niov;
	uint64_t cap;
	uint64_t routing_ver;
	int status;
	struct sto_read_res *res;   /* the reply's n results, decoded when it came (status
				       0): res_in, or from the heap (group_res_free) */
	struct sto_read_res res_in[2];
	uint64_t bulk_len;
	struct read_batch *batch;
	void *dst0;                 /* the first range's dst: the bulk's home without bounce */
	const uint8_t *shm_src;     /* the reply's bytes in the shared-memory arena (sc_shm),
				       copied out and given back by read_group_finish */
	int shm_copied;             /* a combined reply that came over shared memory was
				       copied to this group's memory (read_rpc_split): no
				       wire in between, RES.crc is the service's */
	int shm_inplace;            /* answered over SHM_READV: every range's bytes are
				       at its dst already */
	struct read_group *qnext;   /* read combining queue (struct readq) */
	/* Set for an async read: called instead of signalling a batch. */
	void (*on_done)(struct read_group *g);
};

struct read_batch {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t left;
};

static void read_group_signal(struct read_group *g)
{
	if (g->on_done) {
		g->on_done(g);
		return;
	}
	struct read_batch *b = g->batch;
	pthread_mutex_lock(&b->mu);
	if (--b->left == 0)
		pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

/* Room for G's N results: its own array when they fit (most reads are
 * one range: no allocation), else the heap. NULL only without memory. */
static struct sto_read_res *group_res_room(struct read_group *g)
{
	g->res = g->n <= sizeof(g->res_in) / sizeof(g->res_in[0]) ? g->res_in
								   : calloc(g->n, sizeof(*g->res));
	return g->res;
}

static void group_res_free(struct read_group *g)
{
	if (g->res != g->res_in)
		free(g->res);
	g->res = NULL;
}

static void read_group_done(void *arg, const struct rpc_result *res)
{
	struct read_group *g = arg;
	g->status = res->status;
	g->bulk_len = res->bulk_len;
	if (!res->status) {
		/* Decoded here, while the payload is there: no copy of it. */
		struct sto_read_resp resp;
		int rc = group_res_room(g) ? sto_read_resp_decode(res->payload, res->payload_len,
								 &resp, g->res, g->n)
					   : -ENOMEM;
		if (!rc && resp.n != g->n)
			rc = -CFS_EPROTO;
		if (rc) {
			group_res_free(g);
			g->status = rc;
		}
	}
	read_group_signal(g);
}

/* Places group G's reply into the callers' buffers and sets results. */
static void read_group_place(struct read_group *g, struct storage_read *r)
{
	if (g->status) {
		for (size_t k = 0; k < g->n; k++)
			r[g->idx[k]].result = g->status;
		return;
	}
	const struct sto_read_res *res = g->res;
	int rc = 0;
	/* Compact offsets of each range's bytes in the bulk. */
	uint64_t pos = 0;
	for (size_t k = 0; !rc && k < g->n; k++) {
		int32_t got = res[k].result;
		if (got > 0 && ((uint32_t)got > g->rr[k].len || pos + (uint64_t)got > g->bulk_len))
			rc = -CFS_EPROTO;
		if (got > 0)
			pos += (uint64_t)got;
	}
	/* Scattered in place: every range's bytes are at its dst when every
	 * range came back whole; otherwise the compact bulk is gathered back
	 * into one bounce buffer and placed as below. */
	if (!rc && g->niov && pos != g->cap && !g->shm_src) {
		uint8_t *tmp = malloc(pos ? pos : 1);
		if (!tmp)
			rc = -ENOMEM;
		for (uint64_t at = 0, i = 0; tmp && at < pos; i++) {
			uint64_t k = g->iov[i].iov_len < pos - at ? g->iov[i].iov_len : pos - at;
			memcpy(tmp + at, g->iov[i].iov_base, k);
			at += k;
		}
		g->bounce = tmp;
	}
	if (rc) {
		for (size_t k = 0; k < g->n; k++)
			r[g->idx[k]].result = rc;
		return;
	}
	/* Back to front: with the caller's contiguous memory as the bulk
	 * buffer, range k's compact bytes sit at or before its dst and after
	 * every earlier range's, so moving the last first never clobbers. */
	for (size_t k = g->n; k-- > 0;) {
		struct storage_read *x = &r[g->idx[k]];
		int32_t got = res[k].result;
		if (got <= 0) {
			x->result = got;
			/* No bytes from an existing chunk (a range at or past
			 * its end) still says its version (not 0, "absent") */
			x->crc = 0;
			x->commit_ver = got == 0 ? res[k].commit_ver : 0;
			continue;
		}
		pos -= (uint64_t)got;
		const uint8_t *src = (g->bounce ? g->bounce : (uint8_t *)r[g->idx[0]].dst) + pos;
		if (g->niov && !g->bounce)
			src = x->dst; /* landed in place */
		if (g->shm_src && g->shm_inplace) {
			x->result = got; /* SHM_READV: the service put them at dst */
		} else if (g->shm_src) {
			/* No wire in between: the service copied these bytes out of
			 * its buffer after checking their page CRCs, and only we
			 * touch the arena; RES.crc is theirs (docs/rpc.md). When
			 * they landed in the caller's memory (shm_src == dst0),
			 * back to front as above. */
			if (g->shm_src + pos != x->dst)
				memmove(x->dst, g->shm_src + pos, (size_t)got);
			x->result = got;
		} else {
			if (src != x->dst)
				memmove(x->dst, src, (size_t)got);
			/* Copied out of the arena (read_rpc_split): as above. */
			if (g->shm_copied)
				x->result = got;
			else
				x->result = crc32c(0, x->dst, (size_t)got) == res[k].crc
						    ? got
						    : -CFS_ECHECKSUM;
		}
		x->crc = res[k].crc;
		x->commit_ver = res[k].commit_ver;
	}
}

static void read_group_finish(struct read_group *g, struct storage_read *r)
{
	read_group_place(g, r);
	group_res_free(g);
	if (g->shm_src) {
		sc_shm_release(g->c->shm, g->shm_src, g->cap);
		g->shm_src = NULL;
	}
}

/* ---- read combining ----
 * Concurrent reads to one server share RPCs: while READQ_INFLIGHT read
 * RPCs are in flight to a server, further read groups (from any thread)
 * queue, and the completion of an in-flight RPC sends everything queued
 * for that server as ONE read request (up to STO_MAX_BATCH ranges). The
 * server then takes one wake-up, one disk submission and one reply for
 * them all, and the client one. A lone reader never waits (its RPC goes
 * at once); replica choice happened before (resolve), so combining keeps
 * the rotation over serving replicas. An RPC error reaches every group in
 * it, which retries as it would alone. Queues are per (server, flags).
 * Large reads (over READQ_SMALL) never queue; they go at once. */
#define READQ_INFLIGHT 2
/* Only groups of at most this many bytes queue: a combined reply is copied
 * out of one buffer, which small reads do not notice and large ones would. */
#define READQ_SMALL (128u << 10)
/* A group of at least this many ranges never queues: its own RPC already
 * shares one server wake-up, disk submission and reply among them, and
 * queueing it would only hold its reads off the disk until an RPC in
 * flight returns, then send it with others as one request that waits for
 * the slowest read of all. */
#define READQ_ALONE 8u

/* One read RPC: a single group's, or several groups' combined. */
struct read_rpc {
	struct storage_client *c;
	struct readq *q;
	struct read_group **g;  /* ng groups, in request order: &g1 or the heap */
	struct read_group *g1;  /* the array of a lone group's RPC (no allocation) */
	size_t ng;
	size_t nr;              /* ranges over all groups */
	uint8_t *bounce;        /* combined over the socket: the reply bulk, then copied out */
	const uint8_t *shm;     /* combined over shared memory: the reply's compact bytes
				   in the arena, copied out, then given back */
	uint64_t cap;
	int no_shm;             /* the shared-memory attempt said "use the socket" */
};

/* Hands a combined reply to each group as if it had been its own: its
 * results re-encoded, its compact bytes at its destination. */
static void read_rpc_split(struct read_rpc *x, const struct rpc_result *res)
{
	const uint8_t *src = x->shm ? x->shm : x->bounce;
	int st = res->status;
	struct sto_read_res *rs = NULL;
	struct sto_read_resp resp;
	if (!st) {
		rs = calloc(x->nr, sizeof(*rs));
		st = !rs ? -ENOMEM
			 : sto_read_resp_decode(res->payload, res->payload_len, &resp, rs, x->nr);
		if (!st && resp.n != x->nr)
			st = -CFS_EPROTO;
	}
	uint64_t pos = 0;
	size_t k = 0;
	for (size_t q = 0; q < x->ng; q++) {
		struct read_group *g = x->g[q];
		g->status = st;
		if (!st) {
			uint64_t bytes = 0;
			for (size_t i = 0; i < g->n; i++)
				if (rs[k + i].result > 0)
					bytes += (uint64_t)rs[k + i].result;
			if (bytes > g->cap || pos + bytes > res->bulk_len) {
				g->status = -CFS_EPROTO;
			} else if (!group_res_room(g)) {
				g->status = -ENOMEM;
			} else {
				memcpy(g->res, rs + k, g->n * sizeof(*rs));
				g->bulk_len = bytes;
				if (g->niov) /* scattered: each segment in turn */
					for (uint64_t at = 0, i = 0; at < bytes; i++) {
						uint64_t m = g->iov[i].iov_len < bytes - at
								     ? g->iov[i].iov_len
								     : bytes - at;
						memcpy(g->iov[i].iov_base, src + pos + at, m);
						at += m;
					}
				else
					memcpy(g->bounce ? g->bounce : g->dst0, src + pos, bytes);
				g->shm_copied = x->shm != NULL;
			}
			pos += bytes;
		}
		k += g->n; /* before the signal: the caller may reuse G once woken */
		read_group_signal(g);
	}
	free(rs);
}

static void read_rpc_send(struct read_rpc *x);
static void read_rpc_done(void *arg, const struct rpc_result *res);

/* A read RPC (one group or combined) answered over shared memory (sc_shm.h). */
static void read_rpc_shm_done(void *arg, const struct rpc_result *res, const uint8_t *data)
{
	struct read_rpc *x = arg;
	if (!data && res->status == -EAGAIN) {
		x->g[0]->shm_inplace = 0;
		x->no_shm = 1;
		read_rpc_send(x);
		return;
	}
	/* The bytes are in the arena, compact: as a bulk of at most cap. */
	struct rpc_result r2 = *res;
	r2.bulk_len = data ? x->cap : 0;
	if (x->ng == 1)
		x->g[0]->shm_src = data;
	else
		x->shm = data;
	read_rpc_done(x, &r2);
}

static void read_rpc_done(void *arg, const struct rpc_result *res)
{
	struct read_rpc *x = arg;
	struct storage_client *c = x->c;
	if (x->ng == 1 && !x->bounce && !x->shm)
		read_group_done(x->g[0], res);
	else
		read_rpc_split(x, res);
	if (x->shm)
		sc_shm_release(c->shm, x->shm, x->cap);
	x->shm = NULL;
	/* Pass this RPC's slot to what queued meanwhile. */
	struct readq *q = x->q;
	free(x->bounce);
	if (x->g != &x->g1)
		free(x->g);
	x->bounce = NULL;
	x->g = NULL;
	x->ng = x->nr = 0;
	x->cap = 0;
	x->no_shm = 0;
	pthread_mutex_lock(&c->rq_mu);
	while (q->head && x->nr + q->head->n <= STO_MAX_BATCH && x->cap < (4u << 20)) {
		struct read_group *g = q->head;
		q->head = g->qnext;
		if (!q->head)
			q->tail = NULL;
		struct read_group **ng = realloc(x->g, (x->ng + 1) * sizeof(*ng));
		if (!ng) {
			g->qnext = q->head; /* back to the front */
			q->head = g;
			if (!q->tail)
				q->tail = g;
			break;
		}
		x->g = ng;
		x->g[x->ng++] = g;
		x->nr += g->n;
		x->cap += g->cap;
	}
	if (!x->ng)
		q->inflight--;
	pthread_mutex_unlock(&c->rq_mu);
	if (x->ng)
		read_rpc_send(x);
	else
		free(x);
}

/* Sends X (its groups set); on a local failure every group gets the error
 * and the slot goes on through read_rpc_done. */
static void read_rpc_send(struct read_rpc *x)
{
	struct storage_client *c = x->c;
	struct sto_read_range *rr = NULL;
	int rc = 0;
	if (x->ng > 1) {
		rr = malloc(x->nr * sizeof(*rr));
		if (!rr)
			rc = -ENOMEM;
		for (size_t q = 0, k = 0; !rc && q < x->ng; k += x->g[q]->n, q++)
			memcpy(rr + k, x->g[q]->rr, x->g[q]->n * sizeof(*rr));
	}
	struct read_group *g0 = x->g[0];
	size_t ng = x->ng; /* X may be gone once rpc_call_async accepted it */
	struct buf pl;
	buf_init(&pl);
	struct sto_read_req m = { .flags = x->q->flags, .n = (uint32_t)x->nr,
				  .r = x->ng > 1 ? rr : g0->rr };
	if (!rc && x->nr > STO_MAX_BATCH)
		rc = -EINVAL;
	struct rpc_peer *p = NULL;
	char err[128];
	/* A lone scattered group to a server on this host, its memory added
	 * with storage_client_mem_add: SHM_READV puts each range straight at
	 * its place there. */
	if (!rc && x->ng == 1 && c->shm && !x->no_shm && g0->niov && !g0->bounce) {
		g0->shm_inplace = 1;
		if (!sc_shm_readv(c->shm, x->q->addr, &m, g0->iov, g0->niov, read_rpc_shm_done, x)) {
			atomic_fetch_add(&c->read_rpcs, 1);
			atomic_fetch_add(&c->read_groups, 1);
			buf_fini(&pl);
			return;
		}
		g0->shm_inplace = 0;
	}
	/* A server on this host: over shared memory. A lone group's bytes go
	 * straight into the caller's memory when it is contiguous there and
	 * was added with storage_client_mem_add; a combined reply's land in
	 * the arena, from which read_rpc_split copies each group's out (no
	 * socket copies, no bounce buffer). */
	if (!rc && c->shm && !x->no_shm &&
	    !sc_shm_read(c->shm, x->q->addr, &m, x->cap,
			 ng == 1 && !g0->bounce && !g0->niov ? g0->dst0 : NULL, read_rpc_shm_done,
			 x)) {
		atomic_fetch_add(&c->read_rpcs, 1);
		atomic_fetch_add(&c->read_groups, ng);
		buf_fini(&pl);
		free(rr);
		return;
	}
	/* Over the socket (encoded only now: sc_shm_read encodes its own). */
	if (!rc)
		rc = sto_read_req_encode(&pl, &m);
	if (!rc && ng > 1 && !(x->bounce = malloc(x->cap ? x->cap : 1)))
		rc = -ENOMEM;
	if (!rc)
		rc = rpc_client_peer(c->rpc, x->q->addr, &p, err, sizeof(err));
	if (!rc) {
		struct rpc_call cl = { .type = STO_MSG_READ, .payload = pl.data,
				       .payload_len = (uint32_t)pl.len,
				       .resp_bulk = x->bounce ? x->bounce
						: g0->bounce ? g0->bounce : g0->dst0,
				       .resp_bulk_cap = x->cap, .done = read_rpc_done, .arg = x };
		if (!x->bounce && g0->niov) {
			cl.resp_iov = g0->iov;
			cl.resp_niov = g0->niov;
		}
		rc = rpc_call_async(p, &cl);
	}
	if (!rc) {
		atomic_fetch_add(&c->read_rpcs, 1);
		atomic_fetch_add(&c->read_groups, ng);
	}
	buf_fini(&pl);
	free(rr);
	if (rc) {
		struct rpc_result res = { .status = rc };
		read_rpc_done(x, &res);
	}
}

/* Sends group G to its server now, or queues it behind the RPCs in
 * flight there. Its completion arrives through read_group_signal. */
static void read_dispatch(struct storage_client *c, struct read_group *g, uint32_t flags)
{
	pthread_mutex_lock(&c->rq_mu);
	struct readq *q = c->rq;
	while (q && (q->flags != flags || strcmp(q->addr, g->addr)))
		q = q->next;
	if (!q && (q = calloc(1, sizeof(*q)))) {
		addr_copy(q->addr, sizeof(q->addr), g->addr);
		q->flags = flags;
		q->next = c->rq;
		c->rq = q;
	}
	if (!q) {
		pthread_mutex_unlock(&c->rq_mu);
		g->status = -ENOMEM;
		read_group_signal(g);
		return;
	}
	g->qnext = NULL;
	if (q->inflight >= READQ_INFLIGHT && g->n < READQ_ALONE && g->cap <= READQ_SMALL) {
		if (q->tail)
			q->tail->qnext = g;
		else
			q->head = g;
		q->tail = g;
		pthread_mutex_unlock(&c->rq_mu);
		return;
	}
	q->inflight++;
	pthread_mutex_unlock(&c->rq_mu);
	struct read_rpc *x = malloc(sizeof(*x));
	if (!x) {
		pthread_mutex_lock(&c->rq_mu);
		q->inflight--;
		pthread_mutex_unlock(&c->rq_mu);
		g->status = -ENOMEM;
		read_group_signal(g);
		return;
	}
	*x = (struct read_rpc){ .c = c, .q = q, .g1 = g, .ng = 1, .nr = g->n, .cap = g->cap };
	x->g = &x->g1;
	read_rpc_send(x);
}

/* Where a short-circuit read of R (sc_direct.h) would go: a standalone
 * target, or one of the SERVING replicas of its chain that may serve one
 * (not in AVOID, which may be NULL). 0: none. The replica is chosen by
 * extent of chunks, and a chunk's choice moves on to the next replica after every
 * DIRECT_SPREAD_RUN reads of it (a counter per chunk hash): the chunks'
 * reads spread over the same-host replicas, a chunk read a few times
 * (sequential reads) keeps one mapping, and every copy of a chunk read
 * again and again is read in turn, so a bad page in any of them is found
 * (SC_DIRECT_CORRUPT) and repaired by its service; such a chunk gets a
 * mapping at each replica. ALT (may be NULL; then ALT_TARGET too): the
 * replica of the chunk's previous run (empty: none), which
 * sc_direct_read_async_alt reads while the chosen one's mapping is made. */
static int direct_pick(struct storage_client *c, const struct storage_read *r,
		       const struct read_avoid *avoid, char *addr, size_t addrlen,
		       uint32_t *target, uint32_t *chain, char *alt, uint32_t *alt_target)
{
	if (!c->dr || !r->len || r->len > SC_DIRECT_MAX)
		return 0;
	addr[0] = 0;
	if (alt)
		alt[0] = 0;
	if (!r->loc.chain) { /* a standalone service's target */
		if (!r->loc.addr)
			return 0;
		addr_copy(addr, addrlen, r->loc.addr);
		*target = r->loc.target;
		*chain = 0;
		return 1;
	}
	if (r->loc.addr || !c->mc)
		return 0; /* pinned to a replica (checks, tools): over RPC */
	struct mgmtd_routing *snap = mgmtd_client_routing(c->mc);
	if (!snap)
		return 0;
	const struct route_info *ri = mgmtd_routing_info(snap);
	const struct route_chain *ch = route_find_chain(ri, r->loc.chain);
	const struct route_target *ct[CHAIN_MAX_TARGETS];
	const struct route_node *cn[CHAIN_MAX_TARGETS];
	uint32_t nc = 0;
	for (uint32_t i = 0; ch && i < ch->n && nc < CHAIN_MAX_TARGETS; i++) {
		if (ch->m[i].state != CHAIN_PS_SERVING || avoided(avoid, ch->m[i].target_id))
			continue;
		const struct route_target *t = route_find_target(ri, ch->m[i].target_id);
		const struct route_node *nd = t ? route_find_node(ri, t->node_id) : NULL;
		if (nd) {
			ct[nc] = t;
			cn[nc++] = nd;
		}
	}
	if (nc) {
		/* Home replica by extent of DIRECT_EXTENT chunks, so a file read
		 * in order reads each target's block file in order as before;
		 * the read counter by chunk. */
		uint64_t hx = (r->ino ^ (uint64_t)(r->idx / DIRECT_EXTENT) * 0xC2B2AE3D27D4EB4Full) *
			      0x9E3779B97F4A7C15ull;
		uint64_t h = (r->ino ^ (uint64_t)r->idx * 0xC2B2AE3D27D4EB4Full) * 0x9E3779B97F4A7C15ull;
		/* Async reads through the page cache (sc_direct_caches; only
		 * the async call passes ALT) stay on the home replica: moving
		 * on would cache the chunk once per replica (3x the memory for
		 * the same hits). Blocking and batch reads (sequential reads
		 * through the mount: O_DIRECT) still move on, so they still
		 * read every copy in turn. */
		uint32_t run = alt && sc_direct_caches(c->dr)
				       ? 0
				       : atomic_fetch_add_explicit(
						 &c->dr_reads[(h >> 32) % DIRECT_SPREAD_SLOTS], 1,
						 memory_order_relaxed) / DIRECT_SPREAD_RUN;
		uint32_t k = (uint32_t)(((hx >> 16) % nc + run % nc) % nc);
		/* The one the chunk's reads came from before this run: ALT. */
		uint32_t kp = (k + nc - 1) % nc;
		/* The chosen one if it may serve, else the next that may. */
		for (uint32_t j = 0; j < nc; j++, k = (k + 1) % nc)
			if (sc_direct_usable(c->dr, cn[k]->addr)) {
				addr_copy(addr, addrlen, cn[k]->addr);
				*target = ct[k]->id;
				*chain = ch->id;
				break;
			}
		if (alt && addr[0] && run && kp != k) {
			addr_copy(alt, addrlen, cn[kp]->addr);
			*alt_target = ct[kp]->id;
		}
	}
	mgmtd_routing_put(snap);
	return addr[0] != 0;
}

/* Short-circuit read of R (not from a target in AVOID, may be NULL),
 * waiting for it: an enum sc_direct_res; *TARGET the target read. */
static int direct_try(struct storage_client *c, struct storage_read *r,
		      const struct read_avoid *avoid, uint32_t *target)
{
	char addr[ROUTE_ADDR_MAX + 1];
	uint32_t chain;
	if (!direct_pick(c, r, avoid, addr, sizeof(addr), target, &chain, NULL, NULL))
		return SC_DIRECT_RPC;
	return sc_direct_read(c->dr, addr, *target, chain, r);
}

/* Short-circuit reads of the N ranges of R that may take them, all at
 * once (sc_direct_read_batch); DONE[i] the enum sc_direct_res of each
 * (SC_DIRECT_RPC for those not tried), TGT[i] the target read. */
static void direct_batch(struct storage_client *c, struct storage_read *r, size_t n,
			 int8_t *done, uint32_t *tgt)
{
	struct dsc {
		char addr[ROUTE_ADDR_MAX + 1];
	};
	struct sc_direct_item *it = c->dr ? calloc(n, sizeof(*it)) : NULL;
	struct dsc *a = it ? calloc(n, sizeof(*a)) : NULL;
	size_t *at = a ? calloc(n, sizeof(*at)) : NULL;
	size_t k = 0;
	for (size_t i = 0; at && i < n; i++)
		if (direct_pick(c, &r[i], NULL, a[k].addr, sizeof(a[k].addr), &it[k].target,
				&it[k].chain, NULL, NULL)) {
			it[k].addr = a[k].addr;
			it[k].r = &r[i];
			at[k++] = i;
		}
	if (k)
		sc_direct_read_batch(c->dr, it, k);
	for (size_t j = 0; j < k; j++) {
		done[at[j]] = (int8_t)it[j].ok;
		tgt[at[j]] = it[j].target;
	}
	free(at);
	free(a);
	free(it);
}

/* storage_client_read; AV0 (may be NULL; then N == 1): R[0]'s replicas
 * known corrupt already (an async read's, retried here). */
static int read_sync(struct storage_client *c, struct storage_read *r, size_t n, uint32_t flags,
		     const struct read_avoid *av0)
{
	if (n == 0)
		return 0;
	if (!r)
		return -EINVAL;
	int8_t *todo = calloc(n, sizeof(*todo)); /* 0 done, 1 send, 2 retry later */
	uint32_t *tgt = calloc(n, sizeof(*tgt));  /* the target each read went to */
	struct read_avoid *avoid = NULL;          /* allocated at the first corrupt replica */
	struct read_group *g = calloc(n, sizeof(*g));
	size_t *idx = calloc(n, sizeof(*idx));
	struct sto_read_range *rr = calloc(n, sizeof(*rr));
	if (av0 && n == 1 && (avoid = calloc(1, sizeof(*avoid))))
		avoid[0] = *av0;
	int ret = 0;
	if (!todo || !g || !idx || !rr || !tgt || (av0 && !avoid)) {
		ret = -ENOMEM;
		goto out;
	}
	/* Short-circuit first: a lone range waits for the disk here; a
	 * batch's ranges (USRBIO, KVCache, the mount's split reads) are all
	 * in flight at once. What it does not take goes over RPC; a range
	 * whose copy had a bad page goes to that replica first. */
	size_t left = 0;
	if (n == 1)
		todo[0] = (int8_t)direct_try(c, &r[0], avoid, &tgt[0]);
	else
		direct_batch(c, r, n, todo, tgt);
	for (size_t i = 0; i < n; i++) {
		if (todo[i] == SC_DIRECT_CORRUPT && !avoid)
			avoid = calloc(n, sizeof(*avoid));
		if (todo[i] == SC_DIRECT_CORRUPT && avoid)
			avoid[i].first = tgt[i];
		todo[i] = todo[i] != SC_DIRECT_DONE;
		left += (size_t)todo[i];
	}
	if (!left)
		goto out;
	uint64_t start = clock_mono_ms();
	int fast = 0; /* retries sent without a pause (see node avoidance) */
	struct read_batch batch = { .left = 0 };
	pthread_mutex_init(&batch.mu, NULL);
	pthread_cond_init(&batch.cv, NULL);
	for (int attempt = 1;; attempt++) {
		/* Resolve and group by server, keeping caller order inside a group. */
		size_t ng = 0, used = 0;
		int last_err = 0;
		uint64_t rv = 0;
		struct dest *dd = calloc(n, sizeof(*dd));
		if (!dd)
			break;
		for (size_t i = 0; i < n; i++) {
			if (!todo[i])
				continue;
			int rc = resolve(c, &r[i].loc, false, &dd[i], avoid ? &avoid[i] : NULL);
			tgt[i] = dd[i].target;
			if (avoid)
				avoid[i].first = 0; /* tried once: later attempts rotate */
			if (rc) {
				r[i].result = rc;
				last_err = rc;
				if (dd[i].routing_ver > rv)
					rv = dd[i].routing_ver;
				todo[i] = retryable(rc, r[i].loc.chain != 0) ? 2 : 0;
			}
		}
		for (size_t i = 0; i < n; i++) {
			if (todo[i] != 1 || dd[i].addr[0] == 0)
				continue;
			size_t k = 0;
			while (k < ng && strcmp(g[k].addr, dd[i].addr))
				k++;
			if (k == ng) {
				memset(&g[ng], 0, sizeof(g[ng]));
				addr_copy(g[ng].addr, sizeof(g[ng].addr), dd[i].addr);
				ng++;
			}
		}
		/* Lay out each group's index and range arrays in one pass each. */
		for (size_t k = 0; k < ng; k++) {
			g[k].idx = idx + used;
			g[k].rr = rr + used;
			for (size_t i = 0; i < n; i++) {
				if (todo[i] != 1 || dd[i].addr[0] == 0 || strcmp(g[k].addr, dd[i].addr))
					continue;
				g[k].idx[g[k].n] = i;
				g[k].rr[g[k].n] = (struct sto_read_range){
					.target = dd[i].target, .chain = dd[i].chain,
					.chain_ver = dd[i].chain_ver, .ino = r[i].ino,
					.idx = r[i].idx, .off = r[i].off, .len = r[i].len };
				if (dd[i].routing_ver > g[k].routing_ver)
					g[k].routing_ver = dd[i].routing_ver;
				g[k].n++;
				used++;
			}
		}
		free(dd);
		/* Send: groups of at most STO_MAX_BATCH ranges (split further). */
		batch.left = ng;
		for (size_t k = 0; k < ng; k++) {
			struct read_group *x = &g[k];
			x->c = c;
			x->batch = &batch;
			bool contig = true;
			x->cap = 0;
			for (size_t q = 0; q < x->n; q++) {
				x->cap += x->rr[q].len;
				if (q && (uint8_t *)r[x->idx[q]].dst !=
						 (uint8_t *)r[x->idx[q - 1]].dst + x->rr[q - 1].len)
					contig = false;
			}
			x->bounce = NULL;
			x->status = 0;
			/* Local failures go to x->status here; once dispatched,
			 * x->status belongs to the RPC's completion, which may run on
			 * a loop thread before read_dispatch returns. */
			x->dst0 = r[x->idx[0]].dst;
			x->res = NULL;
			x->bulk_len = 0;
			x->iov = NULL;
			x->niov = 0;
			int rc = 0;
			/* Not contiguous: the reply is scattered straight into
			 * the ranges' memory (no bounce buffer, no copy). */
			if (!contig && !(x->iov = malloc(x->n * sizeof(*x->iov))))
				rc = -ENOMEM;
			for (size_t q = 0; !contig && x->iov && q < x->n; q++)
				x->iov[x->niov++] = (struct iovec){ r[x->idx[q]].dst, x->rr[q].len };
			if (!rc && x->n > STO_MAX_BATCH)
				rc = -EINVAL;
			if (rc) {
				x->status = rc;
				pthread_mutex_lock(&batch.mu);
				batch.left--;
				pthread_mutex_unlock(&batch.mu);
			} else {
				read_dispatch(c, x, flags);
			}
		}
		pthread_mutex_lock(&batch.mu);
		while (batch.left)
			pthread_cond_wait(&batch.cv, &batch.mu);
		pthread_mutex_unlock(&batch.mu);
		bool again = false, all_node = true;
		for (size_t k = 0; k < ng; k++) {
			read_group_finish(&g[k], r);
			/* The whole group shares its server's fate: one RPC. */
			if (node_error(g[k].status))
				avoid_mark(c, g[k].addr);
			else if (!g[k].status)
				avoid_clear(c, g[k].addr);
			free(g[k].bounce);
			free(g[k].iov);
			g[k].bounce = NULL;
			g[k].iov = NULL;
			g[k].niov = 0;
			for (size_t q = 0; q < g[k].n; q++) {
				size_t i = g[k].idx[q];
				int res = r[i].result;
				todo[i] = res < 0 && retryable(res, r[i].loc.chain != 0);
				/* A corrupt replica of a chain read (not one pinned to a
				 * replica): read another one. The service that found it
				 * reports and repairs it (craq_repair.c). */
				if (res == -CFS_ECORRUPT && r[i].loc.chain && !r[i].loc.addr) {
					if (!avoid)
						avoid = calloc(n, sizeof(*avoid));
					if (avoid && avoid[i].n < CHAIN_MAX_TARGETS &&
					    !avoided(&avoid[i], tgt[i])) {
						avoid[i].target[avoid[i].n++] = tgt[i];
						todo[i] = 1;
					}
				}
				if (todo[i]) {
					all_node &= (node_error(res) || res == -CFS_ECORRUPT) &&
						    r[i].loc.chain && !r[i].loc.addr;
					last_err = res;
					if (g[k].routing_ver > rv)
						rv = g[k].routing_ver;
				}
			}
		}
		for (size_t i = 0; i < n; i++) {
			if (todo[i] == 2) {
				todo[i] = 1;
				all_node = false;
			}
			again |= todo[i] != 0;
		}
		if (!again)
			break;
		/* Every retry is a chain read whose server failed (it is marked)
		 * or whose replica was corrupt (it is avoided): go to another
		 * replica now, a few times, before pausing as for any other
		 * error. */
		if (all_node && fast < FAST_RETRIES && clock_mono_ms() < start + c->budget_ms) {
			fast++;
			attempt--; /* the pauses after these start from the shortest */
			continue;
		}
		if (!backoff(c, start, attempt, last_err, rv))
			break;
	}
	pthread_mutex_destroy(&batch.mu);
	pthread_cond_destroy(&batch.cv);
out:
	free(avoid);
	free(tgt);
	free(todo);
	free(g);
	free(idx);
	free(rr);
	return ret;
}

int storage_client_read(struct storage_client *c, struct storage_read *r, size_t n,
			uint32_t flags)
{
	return read_sync(c, r, n, flags, NULL);
}

/* ---- async reads ----
 * One range, one attempt from the caller's thread: resolve, dispatch (read
 * combining applies), and the completion on the RPC loop thread finishes
 * the read and calls the caller back, so the thread that issued it never
 * waits and no thread is woken just to hand the result over. A read whose
 * attempt failed with an error the blocking path would retry goes to a
 * small pool of threads that run storage_client_read on it (retries,
 * replica avoidance, backoff), then call back from there. */
struct aread {
	struct read_group g;    /* first: on_done gets &g */
	size_t idx0;            /* g.idx: the one range, index 0 */
	struct sto_read_range rr;
	struct read_avoid av;   /* FIRST for the attempt; a corrupt replica for the retries */
	struct storage_read *r;
	uint32_t flags;
	void (*done)(void *arg);
	void *arg;
	struct aread *next;     /* slow queue */
};

static void *slow_main(void *arg)
{
	struct storage_client *c = arg;
	pthread_mutex_lock(&c->slow_mu);
	for (;;) {
		struct aread *a = c->slow_head;
		if (!a) {
			if (c->slow_stop)
				break;
			c->slow_idle++;
			pthread_cond_wait(&c->slow_cv, &c->slow_mu);
			c->slow_idle--;
			continue;
		}
		c->slow_head = a->next;
		if (!c->slow_head)
			c->slow_tail = NULL;
		pthread_mutex_unlock(&c->slow_mu);
		read_sync(c, a->r, 1, a->flags, &a->av);
		a->done(a->arg);
		free(a);
		pthread_mutex_lock(&c->slow_mu);
	}
	pthread_mutex_unlock(&c->slow_mu);
	return NULL;
}

/* Queues A for the blocking path; starts a thread when none is idle. */
static void slow_push(struct storage_client *c, struct aread *a)
{
	a->next = NULL;
	pthread_mutex_lock(&c->slow_mu);
	if (c->slow_tail)
		c->slow_tail->next = a;
	else
		c->slow_head = a;
	c->slow_tail = a;
	if (!c->slow_idle && c->slow_n < SLOW_THREADS &&
	    !pthread_create(&c->slow_th[c->slow_n], NULL, slow_main, c))
		c->slow_n++;
	pthread_cond_signal(&c->slow_cv);
	int none = c->slow_n == 0;
	if (none) { /* no thread at all: run it here (blocking, but it is rare) */
		c->slow_head = c->slow_tail = NULL;
	}
	pthread_mutex_unlock(&c->slow_mu);
	if (none) {
		read_sync(c, a->r, 1, a->flags, &a->av);
		a->done(a->arg);
		free(a);
	}
}

static void aread_done(struct read_group *g)
{
	struct aread *a = (struct aread *)g;
	struct storage_client *c = g->c;
	struct storage_read *r = a->r;
	read_group_finish(g, r);
	if (node_error(g->status))
		avoid_mark(c, g->addr);
	else if (!g->status)
		avoid_clear(c, g->addr);
	int res = r->result;
	bool corrupt = res == -CFS_ECORRUPT && r->loc.chain && !r->loc.addr;
	if (corrupt && !avoided(&a->av, a->rr.target) && a->av.n < CHAIN_MAX_TARGETS)
		a->av.target[a->av.n++] = a->rr.target; /* the retries read the others */
	if (res < 0 && (retryable(res, r->loc.chain != 0) || corrupt)) {
		slow_push(c, a);
		return;
	}
	a->done(a->arg);
	free(a);
}

/* A short-circuit read in flight (storage_client_read_async). */
struct dread {
	struct storage_client *c;
	struct storage_read *r;
	uint32_t flags;
	uint32_t target;
	void (*done)(void *arg);
	void *arg;
};

static int read_async_rpc(struct storage_client *c, struct storage_read *r, uint32_t flags,
			  uint32_t first, void (*done)(void *arg), void *arg);

/* On the short-circuit path's completion thread (or the caller's). OK:
 * an enum sc_direct_res; a bad page sends the RPC to the same target. */
static void dread_done(void *arg, int ok)
{
	struct dread *x = arg;
	int rc = ok == SC_DIRECT_DONE
			 ? 0
			 : read_async_rpc(x->c, x->r, x->flags,
					  ok == SC_DIRECT_CORRUPT ? x->target : 0, x->done, x->arg);
	if (ok == SC_DIRECT_DONE)
		x->done(x->arg);
	else if (rc) {
		x->r->result = rc;
		x->done(x->arg);
	}
	free(x);
}

int storage_client_read_async(struct storage_client *c, struct storage_read *r, uint32_t flags,
			      void (*done)(void *arg), void *arg)
{
	if (!r || !done || !r->len)
		return -EINVAL;
	char addr[ROUTE_ADDR_MAX + 1], alt[ROUTE_ADDR_MAX + 1];
	uint32_t target, chain, alt_target = 0;
	if (direct_pick(c, r, NULL, addr, sizeof(addr), &target, &chain, alt, &alt_target)) {
		struct dread *x = malloc(sizeof(*x));
		if (x) {
			*x = (struct dread){ .c = c, .r = r, .flags = flags, .done = done,
					     .arg = arg };
			/* A chunk whose reads just moved on reads its previous
			 * replica until the new one's mapping is there. */
			if (sc_direct_read_async_alt(c->dr, addr, target, alt[0] ? alt : NULL,
						     alt_target, chain, r, dread_done, x,
						     &x->target))
				return 0;
			free(x);
		}
	}
	return read_async_rpc(c, r, flags, 0, done, arg);
}

/* storage_client_read_async over RPC; FIRST (0: none) as read_avoid's. */
static int read_async_rpc(struct storage_client *c, struct storage_read *r, uint32_t flags,
			  uint32_t first, void (*done)(void *arg), void *arg)
{
	struct aread *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->r = r;
	a->flags = flags;
	a->done = done;
	a->arg = arg;
	a->av.first = first;
	struct dest d;
	int rc = resolve(c, &r->loc, false, &d, &a->av);
	a->av.first = 0; /* tried once: the retries rotate */
	if (rc) {
		r->result = rc;
		if (retryable(rc, r->loc.chain != 0))
			slow_push(c, a);
		else {
			done(arg);
			free(a);
		}
		return 0;
	}
	struct read_group *g = &a->g;
	g->c = c;
	addr_copy(g->addr, sizeof(g->addr), d.addr);
	g->idx = &a->idx0;
	g->n = 1;
	a->rr = (struct sto_read_range){ .target = d.target, .chain = d.chain,
					 .chain_ver = d.chain_ver, .ino = r->ino, .idx = r->idx,
					 .off = r->off, .len = r->len };
	g->rr = &a->rr;
	g->cap = r->len;
	g->routing_ver = d.routing_ver;
	g->dst0 = r->dst;
	g->on_done = aread_done;
	read_dispatch(c, g, flags);
	return 0;
}
