/* kv_mem.c - in-memory backend for tests (mem://?faults=RATE&seed=N).
 *
 * How it works. The committed state is an immutable, reference-counted
 * snapshot: a sorted array of pointers to immutable, reference-counted
 * entries (key and value in one allocation). A txn holds a reference to
 * the snapshot current at begin and reads it without locks; returned
 * slices point into its entries, which live as long as the snapshot.
 * Commit takes the engine mutex, validates the txn's recorded reads against
 * the current snapshot by value (as kv_lmdb.c does, so phantoms and
 * deletes are caught), and publishes a new snapshot built by merging the
 * old array with the write buffer (O(keys) per commit: fine for tests).
 *
 * Faults. With faults=RATE, each backend read fails with probability
 * RATE/4 (-CFS_ECONFLICT or -CFS_ETOOOLD; a quarter, so txns with many
 * reads still get through), and each commit with probability RATE
 * fails with -CFS_ECONFLICT, -CFS_ETOOOLD or -CFS_EMAYBE; a -CFS_EMAYBE
 * commit applied the txn or not with even odds, so callers see both
 * outcomes of "maybe committed". seed=N makes the fault sequence depend
 * only on N and the order of calls.
 *
 * Invariants: e->cur changes only under e->mu; a snapshot and its entries
 * are never modified after publication; refs count txns plus the engine.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "kv/kv.h"
#include "kv/kv_int.h"

struct mem_ent {
	atomic_int refs;
	size_t kn, vn;
	unsigned char d[]; /* key then value */
};

struct mem_snap {
	atomic_int refs;
	int64_t version;
	int n;
	struct mem_ent **ents; /* sorted by key */
};

struct mem_engine {
	struct kv_engine base;
	pthread_mutex_t mu;   /* guards cur and rng */
	struct mem_snap *cur;
	double faults;        /* probability per read / commit */
	uint64_t rng;
};

enum mrec_kind { MREC_KEY, MREC_RANGE };

struct mrec {
	enum mrec_kind kind;
	struct kv_slice b, e;
	int found;
	struct kv_slice val;
	const struct kv_pair *kvs;
	int n;
	int reverse;
};

struct mem_txn {
	struct mem_snap *s;
	struct mrec *rec; /* KV_MAX_READ_CONFLICTS, lazily in the arena */
	int nrec;
};

static struct kv_slice ent_key(const struct mem_ent *x)
{
	return (struct kv_slice){ x->d, x->kn };
}

static struct kv_slice ent_val(const struct mem_ent *x)
{
	return (struct kv_slice){ x->d + x->kn, x->vn };
}

static struct mem_ent *ent_new(struct kv_slice k, struct kv_slice v)
{
	struct mem_ent *x = malloc(sizeof(*x) + k.n + v.n);

	if (!x)
		return NULL;
	atomic_init(&x->refs, 1);
	x->kn = k.n;
	x->vn = v.n;
	memcpy(x->d, k.p, k.n);
	if (v.n)
		memcpy(x->d + k.n, v.p, v.n);
	return x;
}

static void ent_put(struct mem_ent *x)
{
	if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) == 1)
		free(x);
}

static void snap_put(struct mem_snap *s)
{
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (int i = 0; i < s->n; i++)
		ent_put(s->ents[i]);
	free(s->ents);
	free(s);
}

/* Uniform double in [0,1); caller holds mu. */
static double rnd(struct mem_engine *e)
{
	uint64_t x = e->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	e->rng = x;
	return (double)(x >> 11) / (double)(1ull << 53);
}

/* A fault code for a read (0: none). */
static int read_fault(struct mem_engine *e)
{
	int rc = 0;

	if (e->faults <= 0)
		return 0;
	pthread_mutex_lock(&e->mu);
	if (rnd(e) < e->faults / 4)
		rc = rnd(e) < 0.5 ? -CFS_ECONFLICT : -CFS_ETOOOLD;
	pthread_mutex_unlock(&e->mu);
	return rc;
}

static void mem_close(struct kv_engine *base)
{
	struct mem_engine *e = (struct mem_engine *)base;

	snap_put(e->cur);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

static int mem_open(const struct kv_url *u, struct kv_engine **out, char *err, size_t errlen)
{
	static const char *const allowed[] = { "faults", "seed", NULL };
	const char *f = kv_url_opt(u, "faults");
	uint64_t seed = 1;
	struct mem_engine *e;
	double rate = 0;
	char *end;
	int rc;

	if (u->authority[0] || (u->path[0] && strcmp(u->path, "/")))
		return kv_errf(err, errlen, -EINVAL, "kv: mem URL takes no host or path (mem://?faults=R)");
	if ((rc = kv_url_check_opts(u, allowed, err, errlen)) ||
	    (rc = kv_url_opt_size(u, "seed", &seed, err, errlen)))
		return rc;
	if (f) {
		rate = strtod(f, &end);
		if (end == f || *end || !(rate >= 0 && rate <= 1))
			return kv_errf(err, errlen, -EINVAL, "kv: mem faults=%s: want a rate in [0,1]",
				       f);
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cur = calloc(1, sizeof(*e->cur));
	if (!e->cur) {
		free(e);
		return -ENOMEM;
	}
	atomic_init(&e->cur->refs, 1);
	pthread_mutex_init(&e->mu, NULL);
	e->faults = rate;
	e->rng = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
	*out = &e->base;
	return 0;
}

static int mem_txn_begin(struct kv_txn *t)
{
	struct mem_engine *e = (struct mem_engine *)t->eng;
	struct mem_txn *p = kv_txn_priv(t);

	pthread_mutex_lock(&e->mu);
	p->s = e->cur;
	atomic_fetch_add_explicit(&p->s->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&e->mu);
	return 0;
}

static void mem_txn_free(struct kv_txn *t)
{
	struct mem_txn *p = kv_txn_priv(t);

	snap_put(p->s);
	p->s = NULL;
}

static int mem_read_version(struct kv_txn *t, int64_t *v)
{
	*v = ((struct mem_txn *)kv_txn_priv(t))->s->version;
	return 0;
}

/* First index of S whose key is >= K. */
static int lower(const struct mem_snap *s, struct kv_slice k)
{
	int lo = 0, hi = s->n;

	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (kv_key_cmp(ent_key(s->ents[mid]), k) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct mrec *rec_new(struct kv_txn *t)
{
	struct mem_txn *p = kv_txn_priv(t);

	if (!p->rec && !(p->rec = kv_arena_alloc(&t->arena, sizeof(*p->rec) * KV_MAX_READ_CONFLICTS)))
		return NULL;
	return p->nrec < KV_MAX_READ_CONFLICTS ? &p->rec[p->nrec++] : NULL;
}

static int snap_get(const struct mem_snap *s, struct kv_slice key, struct kv_slice *val)
{
	int i = lower(s, key);

	if (i < s->n && !kv_key_cmp(ent_key(s->ents[i]), key)) {
		*val = ent_val(s->ents[i]);
		return 1;
	}
	*val = (struct kv_slice){ NULL, 0 };
	return 0;
}

static int mem_get(struct kv_txn *t, struct kv_slice key, int conflict, struct kv_slice *val)
{
	struct mem_txn *p = kv_txn_priv(t);
	int rc = read_fault((struct mem_engine *)t->eng), found;
	struct mrec *r;

	if (rc)
		return rc;
	found = snap_get(p->s, key, val);
	if (!conflict)
		return found;
	if (!(r = rec_new(t)))
		return -CFS_ETOOLARGE;
	r->kind = MREC_KEY;
	r->found = found;
	r->val = *val;
	return kv_arena_dup(&t->arena, key, &r->b) ? -ENOMEM : found;
}

/* Index range [*lo, *hi) of S inside [b, e). */
static void bounds(const struct mem_snap *s, struct kv_slice b, struct kv_slice e, int *lo, int *hi)
{
	*lo = b.n ? lower(s, b) : 0;
	*hi = e.n ? lower(s, e) : s->n;
	if (*hi < *lo)
		*hi = *lo;
}

static int scan(struct kv_txn *t, struct kv_slice b, struct kv_slice e, int limit, int reverse,
		struct kv_range *out)
{
	const struct mem_snap *s = ((struct mem_txn *)kv_txn_priv(t))->s;
	int lo, hi, n;

	bounds(s, b, e, &lo, &hi);
	n = hi - lo < limit ? hi - lo : limit;
	out->has_more = hi - lo > n;
	out->n = n;
	out->kvs = kv_arena_alloc(&t->arena, sizeof(*out->kvs) * (size_t)(n ? n : 1));
	if (!out->kvs)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		const struct mem_ent *x = s->ents[reverse ? hi - 1 - i : lo + i];
		out->kvs[i].key = ent_key(x);
		out->kvs[i].val = ent_val(x);
	}
	return 0;
}

static int rec_range(struct kv_txn *t, struct kv_slice b, struct kv_slice e,
		     const struct kv_range *r, int reverse)
{
	struct mrec *x = rec_new(t);

	if (!x)
		return -CFS_ETOOLARGE;
	x->kind = MREC_RANGE;
	x->kvs = r->kvs;
	x->n = r->n;
	x->reverse = reverse;
	if (kv_arena_dup(&t->arena, b, &x->b) || kv_arena_dup(&t->arena, e, &x->e))
		return -ENOMEM;
	if (r->has_more && reverse) {
		x->b = r->kvs[r->n - 1].key;
	} else if (r->has_more) {
		struct kv_slice last = r->kvs[r->n - 1].key;
		char *a = kv_arena_alloc(&t->arena, last.n + 1);
		if (!a)
			return -ENOMEM;
		memcpy(a, last.p, last.n);
		a[last.n] = 0;
		x->e = (struct kv_slice){ a, last.n + 1 };
	}
	return 0;
}

static int mem_get_range(struct kv_txn *t, struct kv_slice b, struct kv_slice e, int limit,
			 int reverse, int conflict, struct kv_range *out)
{
	int rc = read_fault((struct mem_engine *)t->eng);

	if (rc || (rc = scan(t, b, e, limit, reverse, out)))
		return rc;
	return conflict ? rec_range(t, b, e, out, reverse) : 0;
}

static int mem_add_conflict(struct kv_txn *t, struct kv_slice b, struct kv_slice e, int single)
{
	struct mem_txn *p = kv_txn_priv(t);
	struct kv_range r;
	struct kv_slice v;
	struct mrec *x;
	int rc;

	if (single) {
		if (!(x = rec_new(t)))
			return -CFS_ETOOLARGE;
		x->kind = MREC_KEY;
		x->found = snap_get(p->s, b, &v);
		x->val = v;
		return kv_arena_dup(&t->arena, b, &x->b) ? -ENOMEM : 0;
	}
	if ((rc = scan(t, b, e, INT_MAX, 0, &r)))
		return rc;
	return rec_range(t, b, e, &r, 0);
}

static int same(struct kv_slice a, struct kv_slice b)
{
	return a.n == b.n && (!a.n || !memcmp(a.p, b.p, a.n));
}

/* Caller holds mu. 0 if T's recorded reads all hold in S. */
static int validate(const struct mem_snap *s, struct kv_txn *t)
{
	struct mem_txn *p = kv_txn_priv(t);

	if (s == p->s)
		return 0;
	for (int i = 0; i < p->nrec; i++) {
		const struct mrec *x = &p->rec[i];
		struct kv_slice v;
		int lo, hi;

		if (x->kind == MREC_KEY) {
			int found = snap_get(s, x->b, &v);
			if (found != x->found || (found && !same(v, x->val)))
				return -CFS_ECONFLICT;
			continue;
		}
		bounds(s, x->b, x->e, &lo, &hi);
		if (hi - lo != x->n)
			return -CFS_ECONFLICT;
		for (int j = 0; j < x->n; j++) {
			const struct kv_pair *a = &x->kvs[x->reverse ? x->n - 1 - j : j];
			if (!same(a->key, ent_key(s->ents[lo + j])) ||
			    !same(a->val, ent_val(s->ents[lo + j])))
				return -CFS_ECONFLICT;
		}
	}
	return 0;
}

/* New snapshot: S with W applied. NULL on ENOMEM. */
static struct mem_snap *apply(const struct mem_snap *s, const struct kv_wbuf *w)
{
	struct mem_snap *ns = calloc(1, sizeof(*ns));
	int i = 0, j = 0, n = 0;

	if (!ns || !(ns->ents = malloc(sizeof(*ns->ents) * (size_t)(s->n + w->npts + 1)))) {
		free(ns);
		return NULL;
	}
	atomic_init(&ns->refs, 1);
	ns->version = s->version + 1;
	while (i < s->n || j < w->npts) {
		struct mem_ent *old = i < s->n ? s->ents[i] : NULL;
		const struct kv_wpoint *pt = j < w->npts ? &w->pts[j] : NULL;
		int c = old && pt ? kv_key_cmp(ent_key(old), pt->key) : old ? -1 : 1;
		struct mem_ent *x = NULL;
		uint8_t sum[8];

		if (c < 0) {
			i++;
			if (kv_wbuf_cleared(w, ent_key(old)))
				continue;
			atomic_fetch_add_explicit(&old->refs, 1, memory_order_relaxed);
			ns->ents[n++] = old;
			continue;
		}
		j++;
		if (c == 0)
			i++;
		if (pt->op == KV_WOP_CLEAR)
			continue;
		if (pt->op == KV_WOP_SET) {
			x = ent_new(pt->key, pt->val);
		} else {
			/* No ADD point lies in a cleared range (kv_int.h). */
			struct kv_slice base = c == 0 ? ent_val(old) : (struct kv_slice){ NULL, 0 };
			kv_point_apply(pt->op, base.p, base.n, c == 0, pt->delta, sum);
			x = ent_new(pt->key, kv_mem(sum, 8));
		}
		if (!x) {
			ns->n = n;
			snap_put(ns);
			return NULL;
		}
		ns->ents[n++] = x;
	}
	ns->n = n;
	return ns;
}

static int mem_commit(struct kv_txn *t, int64_t *version)
{
	struct mem_engine *e = (struct mem_engine *)t->eng;
	struct mem_snap *old, *ns;
	int rc = 0, fault = 0;

	pthread_mutex_lock(&e->mu);
	if (e->faults > 0 && rnd(e) < e->faults) {
		double r = rnd(e);
		fault = r < 0.25 ? -CFS_ECONFLICT : r < 0.5 ? -CFS_ETOOOLD : -CFS_EMAYBE;
		/* Half the maybe-committed faults really commit. */
		if (fault != -CFS_EMAYBE || r < 0.75) {
			pthread_mutex_unlock(&e->mu);
			return fault;
		}
	}
	old = e->cur;
	rc = validate(old, t);
	if (!rc) {
		ns = apply(old, &t->wb);
		if (!ns) {
			rc = -ENOMEM;
		} else {
			e->cur = ns;
			*version = ns->version;
			snap_put(old);
		}
	}
	pthread_mutex_unlock(&e->mu);
	return rc ? rc : fault;
}

const struct kv_backend_ops kv_mem_ops = {
	.scheme = "mem",
	.txn_priv_size = sizeof(struct mem_txn),
	.open = mem_open,
	.close = mem_close,
	.txn_begin = mem_txn_begin,
	.txn_free = mem_txn_free,
	.read_version = mem_read_version,
	.get = mem_get,
	.get_range = mem_get_range,
	.add_conflict = mem_add_conflict,
	.commit = mem_commit,
};
