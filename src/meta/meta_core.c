/* meta_core.c - the meta instance: ids, transactions, idempotency, records,
 * permission rules and name rules shared by every operation.
 *
 * Inode ids. The allocator record IDAL holds the next unallocated id. An
 * instance takes id_batch ids at once in its own transaction (retried even
 * after a maybe-committed outcome: a range taken twice just leaves a gap,
 * never a duplicate) and hands them out under a local mutex, so the
 * allocator key is written once per batch, not once per create.
 *
 * Idempotency records are keyed IDEM + client + seq and written in the same
 * transaction as the change they record; the check is a conflict read, so a
 * retry racing its own first attempt is serialized behind it.
 *
 * Permission rules follow POSIX (and Linux where POSIX leaves room): the
 * owner class, then the group class (primary or supplementary gid), then
 * other; uid 0 passes read and write checks, and execute only on
 * directories or when some execute bit is set.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "meta/meta_int.h"

static const struct kv_run_opts RUN_RO = { .flags = KV_RDONLY, .max_retries = 40 };

int64_t meta_now(meta_ctx *m)
{
	return m->o.now_ns ? m->o.now_ns() : (int64_t)clock_wall_ns();
}

uint64_t meta_random(meta_ctx *m)
{
	uint64_t s = atomic_fetch_add_explicit(&m->rng, 0x9E3779B97F4A7C15ULL,
					       memory_order_relaxed);
	return meta_splitmix64(&s);
}

int meta_new(kv_engine *kv, const struct meta_opts *o, meta_ctx **out)
{
	const struct meta_layout *l = &o->root_layout;
	if (!kv || o->instance_id == 0)
		return -EINVAL;
	if (!meta_layout_chunk_ok(l->chunk_size) || l->stripe == 0 ||
	    l->stripe > META_MAX_STRIPE) {
		LOG_ERR("meta", "bad root layout: chunk=%u stripe=%u", l->chunk_size, l->stripe);
		return -EINVAL;
	}
	meta_ctx *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->kv = kv;
	m->o = *o;
	m->o.root_layout.nchains = 0;
	if (!m->o.id_batch)
		m->o.id_batch = 1024;
	if (!m->o.gc_claim_ns)
		m->o.gc_claim_ns = 60LL * 1000000000LL;
	/* Test hook: a converter stalled past its claim is reached without
	 * waiting out the full lease (test_integ_idata's stalled_* cases);
	 * never longer than the lease clients plan for (file_io_idata.c). */
	const char *tl = getenv("CFS_TEST_IDATA_LEASE_MS");
	long tlv = tl ? strtol(tl, NULL, 10) : 0;
	if (!m->o.idata_lease_ns && tlv >= 1000 && tlv <= META_IDATA_LEASE_NS / 1000000) {
		m->o.idata_lease_ns = tlv * 1000000LL;
		LOG_WARN("meta",
		         "inline conversion claim %ld ms (CFS_TEST_IDATA_LEASE_MS, a test hook)",
		         tlv);
	}
	if (!m->o.idata_lease_ns)
		m->o.idata_lease_ns = META_IDATA_LEASE_NS;
	pthread_mutex_init(&m->id_lock, NULL);
	uint64_t seed = clock_mono_ns() ^ (o->instance_id * 0xD1B54A32D192ED03ULL) ^
			(uint64_t)(uintptr_t)m;
	atomic_init(&m->rng, seed);
	atomic_init(&m->chain_cursor, meta_splitmix64(&seed));
	atomic_init(&m->txns, 0);
	atomic_init(&m->retries, 0);
	atomic_init(&m->failures, 0);
	/* Shards only where atomic ops conflict (schema.h, DSTA). */
	m->dsta_shards = strcmp(kv_engine_name(kv), "etcd") ? 1 : META_DSTA_SHARDS;
	*out = m;
	return 0;
}

void meta_free(meta_ctx *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->id_lock);
	free(m);
}

/* The txn the calling thread's body runs in, so that meta_may can read
 * an ACL on its slow path without every caller passing the txn. */
static __thread kv_txn *cur_txn;

struct run_tramp {
	kv_txn_fn fn;
	void *arg;
};

static int run_tramp_body(kv_txn *t, void *arg)
{
	struct run_tramp *r = arg;
	kv_txn *prev = cur_txn;
	cur_txn = t;
	int rc = r->fn(t, r->arg);
	cur_txn = prev;
	return rc;
}

int meta_run_alone(meta_ctx *m, const struct kv_run_opts *o, kv_txn_fn fn, void *arg,
		   int *alone)
{
	struct kv_run_stats st = { 0, -1, 0 };
	struct run_tramp tr = { fn, arg };
	int rc = kv_run(m->kv, o, run_tramp_body, &tr, &st);
	atomic_fetch_add_explicit(&m->txns, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->retries, (uint64_t)st.retries, memory_order_relaxed);
	if (rc < 0)
		atomic_fetch_add_explicit(&m->failures, 1, memory_order_relaxed);
	if (alone)
		*alone = rc == 0 && st.alone;
	return rc;
}

int meta_run(meta_ctx *m, const struct kv_run_opts *o, kv_txn_fn fn, void *arg)
{
	return meta_run_alone(m, o, fn, arg, NULL);
}

void meta_get_stats(meta_ctx *m, struct meta_stats *out)
{
	out->txns = atomic_load_explicit(&m->txns, memory_order_relaxed);
	out->retries = atomic_load_explicit(&m->retries, memory_order_relaxed);
	out->failures = atomic_load_explicit(&m->failures, memory_order_relaxed);
}

int meta_run_rw_alone(meta_ctx *m, const struct meta_req *rq, kv_txn_fn fn, void *arg,
		      int *alone)
{
	struct kv_run_opts o = { .idempotent = rq && rq->seq, .max_retries = 40 };
	return meta_run_alone(m, &o, fn, arg, alone);
}

int meta_run_rw(meta_ctx *m, const struct meta_req *rq, kv_txn_fn fn, void *arg)
{
	return meta_run_rw_alone(m, rq, fn, arg, NULL);
}

int meta_run_ro(meta_ctx *m, kv_txn_fn fn, void *arg)
{
	return meta_run(m, &RUN_RO, fn, arg);
}

/* ---- records ---- */

int meta_get_inode(kv_txn *t, uint64_t ino, int snapshot, struct meta_inode *out)
{
	struct meta_key k;
	struct kv_slice v;
	if (ino == 0)
		return -ENOENT;
	meta_key_inode(&k, ino);
	int rc = kv_get(t, kv_mem(k.b, k.n), snapshot, &v);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return -ENOENT;
	rc = meta_inode_decode(v.p, v.n, out);
	if (rc == 0 && out->ino != ino)
		rc = -CFS_ECORRUPT;
	if (rc)
		LOG_WARN("meta", "corrupt inode record: ino=%llu len=%zu",
			 (unsigned long long)ino, v.n);
	return rc;
}

int meta_put_inode(kv_txn *t, const struct meta_inode *in)
{
	struct meta_key k;
	struct buf b = BUF_INIT;
	meta_key_inode(&k, in->ino);
	int rc = meta_inode_encode(in, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

int meta_get_dentry(kv_txn *t, uint64_t parent, struct meta_name name, int snapshot,
		    struct meta_dentry *out)
{
	struct meta_key k;
	struct kv_slice v;
	meta_key_dentry(&k, parent, name.p, name.n);
	int rc = kv_get(t, kv_mem(k.b, k.n), snapshot, &v);
	if (rc <= 0)
		return rc;
	rc = meta_dentry_decode(v.p, v.n, out);
	if (rc) {
		LOG_WARN("meta", "corrupt dentry record: parent=%llu name=%.*s",
			 (unsigned long long)parent, (int)name.n, name.p);
		return rc;
	}
	return 1;
}

int meta_put_dentry(kv_txn *t, uint64_t parent, struct meta_name name, uint64_t ino,
		    uint8_t type)
{
	struct meta_key k;
	struct buf b = BUF_INIT;
	struct meta_dentry d = { .ino = ino, .type = type };
	meta_key_dentry(&k, parent, name.p, name.n);
	int rc = meta_dentry_encode(&d, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

int meta_del_dentry(kv_txn *t, uint64_t parent, struct meta_name name)
{
	struct meta_key k;
	meta_key_dentry(&k, parent, name.p, name.n);
	return kv_clear(t, kv_mem(k.b, k.n));
}

int meta_dir_nonempty(kv_txn *t, uint64_t dir)
{
	struct meta_key b, e;
	struct kv_range r;
	meta_key_dir_range(&b, &e, dir);
	int rc = kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 1, 0, 0, &r);
	if (rc < 0)
		return rc;
	return r.n > 0;
}

static int64_t dirstat_val(struct kv_slice v);

/* The latest entry-change time of DIR (0: none), a snapshot read. */
static int dir_time(kv_txn *t, uint64_t dir, int64_t *out)
{
	struct meta_key b, e;
	struct kv_range r;
	meta_key_dirstat_kind_range(&b, &e, dir, META_DSTA_TIME);
	int rc = kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), META_DSTA_SHARDS, 1, 0, &r);
	*out = 0;
	for (int i = 0; rc == 0 && i < r.n; i++) {
		int64_t v = dirstat_val(r.kvs[i].val);
		if (v > *out)
			*out = v;
	}
	return rc;
}

/* DIR's counters as meta_dir_stat folds them: the sum of its link shards
 * (*LINKS) and the latest of its time shards (*LAST, 0: none), one
 * snapshot range read over all its DSTA keys. */
static int dir_counters(kv_txn *t, uint64_t dir, int64_t *links, int64_t *last)
{
	struct meta_key b, e;
	struct kv_range r;
	*links = *last = 0;
	meta_key_dirstat_range(&b, &e, dir);
	/* L and T sort before V: 2 * SHARDS holds every L and T shard */
	int rc = kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 2 * META_DSTA_SHARDS, 1, 0,
			      &r);
	if (rc < 0)
		return rc;
	for (int i = 0; i < r.n; i++) {
		struct kv_slice k = r.kvs[i].key;
		int64_t v = dirstat_val(r.kvs[i].val);
		if (k.n != 14)
			continue;
		switch (((const uint8_t *)k.p)[12]) {
		case META_DSTA_LINKS:
			*links += v;
			break;
		case META_DSTA_TIME:
			if (v > *last)
				*last = v;
			break;
		}
	}
	return 0;
}

/* Folds counters LINKS and LAST (dir_counters) into the directory IN. */
static void dir_fold(struct meta_inode *in, int64_t links, int64_t last)
{
	if (last > in->mtime)
		in->mtime = last;
	if (last > in->ctime)
		in->ctime = last;
	if (links) {
		int64_t n = (int64_t)in->nlink + links;
		in->nlink = n < 2 ? 2 : n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
	}
}

int meta_dir_changed(meta_ctx *m, kv_txn *t, uint64_t dir, int64_t now, int subdirs)
{
	return meta_dir_changed_stat(m, t, dir, now, subdirs, NULL);
}

int meta_dir_changed_stat(meta_ctx *m, kv_txn *t, uint64_t dir, int64_t now, int subdirs,
			  struct meta_inode *in)
{
	struct meta_key k;
	int64_t last, links = 0;
	int wrote_time = 0;
	uint8_t shard = m->dsta_shards > 1 ? (uint8_t)(meta_random(m) % m->dsta_shards) : 0;
	/* Directory times are as fine as the kernel's own file timestamps,
	 * which come from the coarse clock (one tick): when an entry change
	 * of the last META_DIR_TIME_GRAIN_NS already set the time, a busy
	 * directory's creates skip the write (the single LMDB writer, etcd's
	 * compare) and read the time only. With IN, the same read takes the
	 * link shards too, so that IN gets what meta_dir_stat would read
	 * after these writes (max and add over the same snapshot) without a
	 * second range read. */
	int rc = in ? dir_counters(t, dir, &links, &last) : dir_time(t, dir, &last);
	if (rc == 0 && last < now - META_DIR_TIME_GRAIN_NS) {
		meta_key_dirstat(&k, dir, META_DSTA_TIME, shard);
		rc = kv_atomic_max(t, kv_mem(k.b, k.n), now);
		wrote_time = 1;
	}
	if (rc == 0 && subdirs) {
		meta_key_dirstat(&k, dir, META_DSTA_LINKS, shard);
		rc = kv_atomic_add(t, kv_mem(k.b, k.n), subdirs);
	}
	if (rc == 0) {
		meta_key_dirstat(&k, dir, META_DSTA_VERSION, shard);
		rc = kv_atomic_add(t, kv_mem(k.b, k.n), 1);
	}
	if (rc == 0 && in && in->type == META_T_DIR)
		dir_fold(in, links + subdirs, wrote_time && now > last ? now : last);
	return rc;
}

int meta_dir_bump(meta_ctx *m, kv_txn *t, uint64_t dir)
{
	struct meta_key k;
	uint8_t shard = m->dsta_shards > 1 ? (uint8_t)(meta_random(m) % m->dsta_shards) : 0;
	meta_key_dirstat(&k, dir, META_DSTA_VERSION, shard);
	return kv_atomic_add(t, kv_mem(k.b, k.n), 1);
}

struct dir_versions_arg {
	const uint64_t *dirs;
	size_t n;
	uint64_t *out;
};

int meta_dir_version(kv_txn *t, uint64_t dir, uint64_t *out)
{
	struct meta_key b, e;
	struct kv_range r;
	meta_key_dirstat_kind_range(&b, &e, dir, META_DSTA_VERSION);
	int rc = kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), META_DSTA_SHARDS, 1, 0, &r);
	if (rc < 0)
		return rc;
	uint64_t v = 0;
	for (int j = 0; j < r.n; j++)
		v += (uint64_t)dirstat_val(r.kvs[j].val);
	*out = v;
	return 0;
}

static int dir_versions_body(kv_txn *t, void *arg)
{
	struct dir_versions_arg *a = arg;
	for (size_t i = 0; i < a->n; i++) {
		int rc = meta_dir_version(t, a->dirs[i], &a->out[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int meta_dir_versions(meta_ctx *m, const uint64_t *dirs, size_t n, uint64_t *out)
{
	struct dir_versions_arg a = { dirs, n, out };
	return meta_run_ro(m, dir_versions_body, &a);
}

static int64_t dirstat_val(struct kv_slice v)
{
	uint64_t x = 0;
	for (size_t i = 0; i < v.n && i < 8; i++)
		x |= (uint64_t)((const uint8_t *)v.p)[i] << (8 * i);
	return (int64_t)x;
}

int meta_dir_stat(kv_txn *t, struct meta_inode *in)
{
	int64_t links, last;
	if (in->type != META_T_DIR)
		return 0;
	int rc = dir_counters(t, in->ino, &links, &last);
	if (rc == 0)
		dir_fold(in, links, last);
	return rc;
}

int meta_dir_stat_clear(kv_txn *t, uint64_t dir)
{
	struct meta_key b, e;
	meta_key_dirstat_range(&b, &e, dir);
	return kv_clear_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n));
}

int meta_dir_time_clear(kv_txn *t, uint64_t dir)
{
	struct meta_key b, e;
	meta_key_dirstat_kind_range(&b, &e, dir, META_DSTA_TIME);
	return kv_clear_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n));
}

int meta_gc_enqueue(meta_ctx *m, kv_txn *t, uint64_t ino)
{
	struct meta_key k;
	struct buf b = BUF_INIT;
	struct meta_gc_rec g = { .ino = ino, .enqueued = meta_now(m) };
	meta_key_gc(&k, ino);
	int rc = meta_gc_encode(&g, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

/* ---- idempotency ---- */

/* The client's floor seq (0: no floor record). SNAPSHOT 0: a conflict
 * read, so two raises of one floor cannot both commit (it only grows). A
 * refusal or a raise-or-not decision needs none: the floor only grows, and
 * a stale copy racing the raise that deletes its record conflicts on that
 * record (meta_idem_check reads it with a conflict). So the requests of a
 * busy client do not abort each other each time its floor moves. */
static int idem_floor(kv_txn *t, uint64_t client, int snapshot, uint64_t *floor)
{
	struct meta_key k;
	struct kv_slice v;
	struct meta_idem_rec r;
	*floor = 0;
	meta_key_idem(&k, client, 0);
	int rc = kv_get(t, kv_mem(k.b, k.n), snapshot, &v);
	if (rc <= 0)
		return rc;
	rc = meta_idem_decode(v.p, v.n, &r);
	if (rc)
		return rc;
	if (r.op != META_OP_FLOOR) {
		LOG_ERR("meta", "idempotency floor of client %llu has op %u",
			(unsigned long long)client, r.op);
		return -CFS_ECORRUPT;
	}
	*floor = r.aux;
	return 0;
}

/* A seq below the floor but within the window: a stale copy (meta.h). */
static int below_floor(uint64_t seq, uint64_t floor)
{
	return seq < floor && floor - seq < META_IDEM_FLOOR_WINDOW;
}

int meta_idem_check(kv_txn *t, const struct meta_req *rq, uint32_t op,
		    struct meta_idem_rec *rec)
{
	struct meta_key k;
	struct kv_slice v;
	uint64_t floor;
	if (!rq || !rq->seq)
		return 0;
	meta_key_idem(&k, rq->client, rq->seq);
	int rc = kv_get(t, kv_mem(k.b, k.n), 0, &v);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		if ((rc = idem_floor(t, rq->client, 1, &floor)))
			return rc;
		/* an O_TRUNC's record: the floor of its open's seq */
		if (below_floor(rq->seq & ~META_SEQ_OTRUNC, floor)) {
			LOG_DEBUG("meta", "stale request refused: client=%llu seq=%llu floor=%llu",
				  (unsigned long long)rq->client, (unsigned long long)rq->seq,
				  (unsigned long long)floor);
			return -ETIMEDOUT;
		}
		return 0;
	}
	rc = meta_idem_decode(v.p, v.n, rec);
	if (rc)
		return rc;
	if (rec->op != op) {
		/* The client reused a sequence number for another request. */
		LOG_WARN("meta", "request id reused: client=%llu seq=%llu op=%u was=%u",
			 (unsigned long long)rq->client, (unsigned long long)rq->seq, op,
			 rec->op);
		return -EINVAL;
	}
	return 1;
}

int meta_idem_replay(kv_txn *t, const struct meta_req *rq, uint32_t op, uint64_t ino,
		     struct meta_idem_rec *rec, struct meta_inode *in)
{
	int rc = meta_idem_check(t, rq, op, rec);
	if (rc != 1)
		return rc;
	rc = meta_get_inode(t, ino, 1, in);
	return rc && rc != -ENOENT ? rc : 1; /* gone since: a replay all the same */
}

static int idem_set(kv_txn *t, const struct meta_key *k, const struct meta_idem_rec *r)
{
	struct buf b = BUF_INIT;
	int rc = meta_idem_encode(r, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k->b, k->n), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

/* Raises RQ's client floor to rq->low once it lags by a step, deleting
 * the records below (one range clear: one write on every backend).
 * Nobody else writes those records, and a stale copy of one conflicts on
 * the floor instead. */
static int idem_raise_floor(meta_ctx *m, kv_txn *t, const struct meta_req *rq)
{
	struct meta_key b, e, fk;
	uint64_t floor, start;
	int rc = idem_floor(t, rq->client, 1, &floor);
	if (rc == 0 && (rq->low <= floor || (floor && rq->low - floor < META_IDEM_FLOOR_STEP)))
		return 0;
	if (rc || (rc = idem_floor(t, rq->client, 0, &floor)))
		return rc;
	if (rq->low <= floor)
		return 0;
	/* No floor yet (or one of another incarnation far below): nothing of
	 * this incarnation lies further down than the window. */
	start = rq->low - floor > META_IDEM_FLOOR_WINDOW ? rq->low - META_IDEM_FLOOR_WINDOW
							 : floor;
	if (start == 0)
		start = 1; /* seq 0 is the floor record itself */
	meta_key_idem(&b, rq->client, start);
	meta_key_idem(&e, rq->client, rq->low);
	if ((rc = kv_clear_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n))) < 0)
		return rc;
	/* and the records of those requests' O_TRUNCs (meta_otrunc_req) */
	meta_key_idem(&b, rq->client, start | META_SEQ_OTRUNC);
	meta_key_idem(&e, rq->client, rq->low | META_SEQ_OTRUNC);
	if ((rc = kv_clear_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n))) < 0)
		return rc;
	struct meta_idem_rec f = { .op = META_OP_FLOOR, .aux = rq->low, .written = meta_now(m) };
	meta_key_idem(&fk, rq->client, 0);
	return idem_set(t, &fk, &f);
}

int meta_idem_put(meta_ctx *m, kv_txn *t, const struct meta_req *rq, uint32_t op, int result,
		  uint64_t ino, uint64_t aux)
{
	struct meta_key k;
	if (!rq || !rq->seq)
		return 0;
	struct meta_idem_rec r = { .op = op, .result = result, .ino = ino, .aux = aux,
				   .written = meta_now(m) };
	meta_key_idem(&k, rq->client, rq->seq);
	int rc = idem_set(t, &k, &r);
	if (rc == 0 && rq->low && rq->low <= rq->seq)
		rc = idem_raise_floor(m, t, rq);
	return rc;
}

struct prune_arg {
	meta_ctx *m;
	int64_t cutoff;
	struct meta_key from;   /* resume point of this batch */
	struct meta_key next;   /* resume point after it: set by the body, adopted
				 * only once the batch committed */
	int done, deleted;
};

/* One batch: scan up to 48 records from the resume point, delete the
 * expired ones. Deleting an expired record needs no conflict: nobody
 * reads a record that old. */
static int prune_body(kv_txn *t, void *arg)
{
	struct prune_arg *a = arg;
	struct meta_key b, e;
	struct kv_range r;
	meta_key_prefix_range(&b, &e, "IDEM");
	struct kv_slice begin = a->from.n ? kv_mem(a->from.b, a->from.n) : kv_mem(b.b, b.n);
	a->deleted = 0;
	int rc = kv_get_range(t, begin, kv_mem(e.b, e.n), 48, 1, 0, &r);
	if (rc < 0)
		return rc;
	for (int i = 0; i < r.n; i++) {
		struct meta_idem_rec rec;
		if (meta_idem_decode(r.kvs[i].val.p, r.kvs[i].val.n, &rec) == 0 &&
		    rec.written >= a->cutoff)
			continue;
		rc = kv_clear(t, r.kvs[i].key);
		if (rc < 0)
			return rc;
		a->deleted++;
	}
	a->done = !r.has_more;
	a->next = a->from;
	if (r.n > 0) {
		struct kv_slice last = r.kvs[r.n - 1].key;
		if (last.n + 1 > sizeof(a->next.b))
			return -CFS_ECORRUPT;
		memcpy(a->next.b, last.p, last.n);
		a->next.b[last.n] = 0;
		a->next.n = (uint32_t)last.n + 1;
	}
	return 0;
}

int meta_idem_prune(meta_ctx *m, int64_t ttl_ns)
{
	struct prune_arg a = { .m = m, .cutoff = meta_now(m) - ttl_ns };
	int total = 0;
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	while (!a.done) {
		int rc = meta_run(m, &o, prune_body, &a);
		if (rc < 0)
			return rc;
		total += a.deleted;
		a.from = a.next;
	}
	return total;
}

/* ---- inode ids ---- */

struct idal_arg {
	uint32_t batch;
	uint64_t first;
};

static int idal_body(kv_txn *t, void *arg)
{
	struct idal_arg *a = arg;
	struct meta_key k;
	struct kv_slice v;
	struct buf b = BUF_INIT;
	uint64_t next = META_FIRST_INO;
	meta_key_idalloc(&k);
	int rc = kv_get(t, kv_mem(k.b, k.n), 0, &v);
	if (rc < 0)
		return rc;
	if (rc == 1 && (rc = meta_idalloc_decode(v.p, v.n, &next)) < 0) {
		LOG_ERR("meta", "corrupt inode id allocator record");
		return rc;
	}
	a->first = next;
	rc = meta_idalloc_encode(next + a->batch, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

int meta_alloc_ino(meta_ctx *m, uint64_t *ino)
{
	int rc = 0;
	pthread_mutex_lock(&m->id_lock);
	if (m->id_next == m->id_end) {
		struct idal_arg a = { .batch = m->o.id_batch };
		struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
		rc = meta_run(m, &o, idal_body, &a);
		if (rc == 0) {
			m->id_next = a.first;
			m->id_end = a.first + a.batch;
		}
	}
	if (rc == 0)
		*ino = m->id_next++;
	pthread_mutex_unlock(&m->id_lock);
	return rc;
}

struct statfs_arg {
	uint64_t next;
};

static int statfs_body(kv_txn *t, void *arg)
{
	struct statfs_arg *a = arg;
	struct meta_key k;
	struct kv_slice v;
	meta_key_idalloc(&k);
	a->next = META_FIRST_INO;
	int rc = kv_get(t, kv_mem(k.b, k.n), 1, &v);
	if (rc == 1)
		rc = meta_idalloc_decode(v.p, v.n, &a->next);
	return rc < 0 ? rc : 0;
}

int meta_statfs(meta_ctx *m, struct meta_statfs *out)
{
	struct statfs_arg a;
	memset(out, 0, sizeof(*out));
	if (m->o.storage.capacity) {
		int rc = m->o.storage.capacity(m->o.storage.arg, &out->total_bytes,
					       &out->free_bytes);
		if (rc < 0)
			return rc;
	}
	int rc = meta_run_ro(m, statfs_body, &a);
	if (rc < 0)
		return rc;
	out->ids_allocated = a.next - META_FIRST_INO;
	return 0;
}

/* ---- format ---- */

struct format_arg {
	meta_ctx *m;
};

static int format_body(kv_txn *t, void *arg)
{
	struct format_arg *a = arg;
	struct meta_inode root;
	int rc = meta_get_inode(t, META_ROOT_INO, 0, &root);
	if (rc != -ENOENT)
		return rc;
	int64_t now = meta_now(a->m);
	memset(&root, 0, offsetof(struct meta_inode, layout));
	root.ino = META_ROOT_INO;
	root.type = META_T_DIR;
	root.mode = 0755;
	root.nlink = 2;
	root.parent = META_ROOT_INO;
	root.atime = root.mtime = root.ctime = now;
	root.has_layout = 1;
	root.layout = a->m->o.root_layout;
	root.layout.nchains = 0;
	root.target_len = 0;
	return meta_put_inode(t, &root);
}

int meta_format(meta_ctx *m)
{
	struct format_arg a = { m };
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	return meta_run(m, &o, format_body, &a);
}

uint32_t meta_chains_hint(const struct meta_inode *in, uint64_t size)
{
	uint64_t chunks = (size + in->layout.chunk_size - 1) / in->layout.chunk_size;
	uint64_t h = in->chains_used ? in->chains_used : 1;
	while (h < chunks && h < in->layout.stripe)
		h *= 2;
	return (uint32_t)(h < in->layout.stripe ? h : in->layout.stripe);
}

/* ---- permissions and names ---- */

int meta_in_group(const struct meta_cred *c, uint32_t gid)
{
	if (c->gid == gid)
		return 1;
	for (uint32_t i = 0; i < c->ngroups; i++)
		if (c->groups[i] == gid)
			return 1;
	return 0;
}

int meta_may(const struct meta_inode *in, const struct meta_cred *c, int mask)
{
	if (c->uid == 0) {
		if (!(mask & 1) || in->type == META_T_DIR || (in->mode & 0111))
			return 0;
		return -EACCES;
	}
	unsigned bits;
	if (c->uid == in->uid)
		bits = (in->mode >> 6) & 7;
	else if (meta_in_group(c, in->gid))
		bits = (in->mode >> 3) & 7;
	else
		bits = in->mode & 7;
	if (!((unsigned)mask & ~bits))
		return 0;
	/* Denied by the mode: an access ACL may still grant it (named users
	 * and groups; meta_acl.c). Read only on this slow path. */
	return cur_txn ? meta_acl_may(cur_txn, in, c, mask) : -EACCES;
}

int meta_sticky_ok(const struct meta_inode *dir, const struct meta_inode *victim,
		   const struct meta_cred *c)
{
	if (!(dir->mode & 01000) || c->uid == 0 || c->uid == victim->uid || c->uid == dir->uid)
		return 0;
	return -EPERM;
}

int meta_check_parent(const struct meta_inode *dir, const struct meta_cred *c, int mask)
{
	if (dir->type != META_T_DIR)
		return -ENOTDIR;
	if (dir->nlink == 0)
		return -ENOENT;
	return meta_may(dir, c, mask);
}

int meta_parent_dentry(kv_txn *t, uint64_t parent, const struct meta_cred *c, int mask,
		       struct meta_name name, struct meta_inode *dir, struct meta_dentry *d)
{
	int rc;
	if ((rc = meta_get_inode(t, parent, 0, dir)))
		return rc;
	if ((rc = meta_check_parent(dir, c, mask)))
		return rc;
	return meta_get_dentry(t, parent, name, 0, d);
}

int meta_check_name(struct meta_name name, enum meta_name_use use)
{
	if (name.n == 0 || !name.p)
		return -EINVAL;
	if (name.n > META_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name.p, '/', name.n) || memchr(name.p, 0, name.n))
		return -EINVAL;
	int dots = (name.n == 1 && name.p[0] == '.') ||
		   (name.n == 2 && name.p[0] == '.' && name.p[1] == '.');
	if (dots && use == META_NAME_NEW)
		return -EEXIST;
	if (dots && use == META_NAME_REMOVE)
		return -EINVAL;
	return 0;
}
