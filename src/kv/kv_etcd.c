/* kv_etcd.c - the etcd backend of the transactional KV interface.
 *
 * URL: etcd://host:port[,host:port...]/prefix[?timeout_ms=N&op_timeout_ms=N
 * &connect_timeout_ms=N]. Every key k is stored as "/prefix/" + k, so
 * clusters with different prefixes never see each other's keys (the
 * trailing '/' keeps "/a" and "/ab" apart). timeout_ms bounds one HTTP
 * request (default 5000), op_timeout_ms one operation including failover
 * between members (default 10000).
 *
 * How a txn works (optimistic, validated by etcd at commit):
 *  - Read version. The first read is linearizable; the store revision in
 *    its reply header becomes R. Every later read asks for revision R
 *    (serializable: answered by the member locally, which is exact because
 *    MVCC history at R never changes once applied).
 *  - Conflict set. It is kept directly as etcd compares:
 *      point read of k that saw mod revision m (0 = absent): MOD(k) == m;
 *      range read over the examined part [b, e):        MOD([b,e)) < R+1,
 *        which fails on an insert or an update in the range after R, plus
 *        MOD(k) == m for every key the read returned, because a deleted
 *        key is no longer in the range and cannot fail a range compare;
 *      explicit key / range conflicts are read (keys only) at R and
 *        recorded the same way, so deletions are caught there too;
 *      an atomic add or max reads its key at R at commit: MOD(k) == m.
 *  - Commit. One /v3/kv/txn: compare = the conflict set, success = the
 *    write buffer (cleared ranges as delete_range, merged and split around
 *    points written in them, because etcd rejects a put inside a deleted
 *    range of the same txn; then puts and point deletes). succeeded=false
 *    is -CFS_ECONFLICT. Transport errors, timeouts and a leader lost after
 *    the request left are -CFS_EMAYBE (etcd_client.c decides).
 * Validating "nothing read changed between R and commit" makes the txn
 * serializable at its commit revision: every value and every range it read
 * at R is still what the store holds just before the commit applies.
 *
 * Limits. etcd accepts at most 128 compares and 128 ops per txn (default
 * --max-txn-ops). kv.c caps read-conflict entries at 64, counting a range
 * as 1 + the pairs it returned: that equals the compares recorded here.
 * Above those, explicit conflict ranges add one compare per key present in
 * them and atomic adds one per key; a txn whose compares would pass 128
 * fails with -CFS_ETOOLARGE at the call that passes it (or at commit for
 * adds). Write ops: at most 64 calls give at most 64 ranges + points; after
 * merging, each point splits at most one range, so ops stay <= 128.
 * Deletion detection therefore costs one compare per returned key: keep
 * conflict ranges small (kv.h says the same for every backend).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "kv/etcd_client.h"
#include "kv/etcd_engine.h"
#include "kv/kv_int.h"

#define ETCD_MAX_CMPS 128
#define ETCD_MAX_OPS 128

struct etcd_engine {
	struct kv_engine base; /* first: kv.c casts */
	struct etcdc *cli;
	char *prefix;          /* "/name/" */
	size_t prefix_len;
	char *prefix_end;      /* first key after every prefixed key */
};

/* Backend part of a txn (kv_txn_priv); one thread at a time. */
struct etcd_txn {
	int64_t rev;            /* read revision R; 0 until the first read */
	struct etcdc_cmp *cmps; /* conflict set; keys live in the txn arena */
	size_t ncmps, cap;
};

static struct etcd_engine *eng_of(struct kv_txn *t)
{
	return (struct etcd_engine *)t->eng;
}

static struct etcd_txn *priv_of(struct kv_txn *t)
{
	return kv_txn_priv(t);
}

/* ---- engine ------------------------------------------------------------- */

static int opt_int(const struct kv_url *u, const char *key, int *out, char *err, size_t errlen)
{
	const char *v = kv_url_opt(u, key);
	if (!v)
		return 0;
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < 1 || x > 3600000)
		return kv_errf(err, errlen, -EINVAL, "etcd: option %s=%s: want 1..3600000 ms", key, v);
	*out = (int)x;
	return 0;
}

static void etcd_close(struct kv_engine *e)
{
	struct etcd_engine *ee = (struct etcd_engine *)e;
	if (!ee)
		return;
	etcdc_close(ee->cli);
	free(ee->prefix);
	free(ee->prefix_end);
	free(ee);
}

static void etcd_cancel(struct kv_engine *e)
{
	etcdc_cancel(((struct etcd_engine *)e)->cli);
}

static int etcd_open(const struct kv_url *u, struct kv_engine **out, char *err, size_t errlen)
{
	static const char *const allowed[] = { "timeout_ms", "op_timeout_ms", "connect_timeout_ms",
					       NULL };
	struct etcdc_opts o = { 0 };
	int rc = kv_url_check_opts(u, allowed, err, errlen);
	if (!rc)
		rc = opt_int(u, "timeout_ms", &o.attempt_timeout_ms, err, errlen);
	if (!rc)
		rc = opt_int(u, "op_timeout_ms", &o.op_timeout_ms, err, errlen);
	if (!rc)
		rc = opt_int(u, "connect_timeout_ms", &o.connect_timeout_ms, err, errlen);
	if (rc)
		return rc;
	if (!*u->authority)
		return kv_errf(err, errlen, -EINVAL, "etcd: URL has no host:port list");
	size_t plen = strlen(u->path);
	while (plen && u->path[plen - 1] == '/')
		plen--;
	if (plen <= 1)
		return kv_errf(err, errlen, -EINVAL,
			       "etcd: URL needs a key prefix: etcd://host:port/prefix");

	struct etcd_engine *ee = xcalloc(1, sizeof(*ee));
	ee->prefix_len = plen + 1;
	ee->prefix = xmalloc(ee->prefix_len + 1);
	memcpy(ee->prefix, u->path, plen);
	ee->prefix[plen] = '/';
	ee->prefix[plen + 1] = 0;
	ee->prefix_end = xstrdup(ee->prefix);
	ee->prefix_end[plen] = '/' + 1;
	rc = etcdc_open(u->authority, &o, &ee->cli, err, errlen);
	if (rc)
		goto fail;
	/* Prove a member answers now, so a wrong address fails at open. */
	struct etcdc_range_req rq = { .key = ee->prefix, .key_len = ee->prefix_len,
				      .count_only = true };
	struct etcdc_range_res rr;
	rc = etcdc_range(ee->cli, &rq, &rr);
	etcdc_range_res_fini(&rr);
	if (rc) {
		kv_errf(err, errlen, rc, "etcd: no member of %s answered: %s", u->authority,
			cfs_strerror(rc));
		goto fail;
	}
	*out = &ee->base;
	return 0;
fail:
	etcd_close(&ee->base);
	return rc;
}

/* ---- txn helpers -------------------------------------------------------- */

/* prefix + key (+ a 0 byte when AFTER) in the arena. */
static int pkey(struct kv_txn *t, struct kv_slice k, bool after, struct kv_slice *out)
{
	struct etcd_engine *ee = eng_of(t);
	size_t n = ee->prefix_len + k.n + (after ? 1 : 0);
	char *p = kv_arena_alloc(&t->arena, n);
	if (!p)
		return -ENOMEM;
	memcpy(p, ee->prefix, ee->prefix_len);
	if (k.n)
		memcpy(p + ee->prefix_len, k.p, k.n);
	if (after)
		p[n - 1] = 0;
	*out = kv_mem(p, n);
	return 0;
}

/* Prefixed [begin, end) for a kv range (empty bounds = whole key space). */
static int prange(struct kv_txn *t, struct kv_slice b, struct kv_slice e, struct kv_slice *pb,
		  struct kv_slice *pe)
{
	struct etcd_engine *ee = eng_of(t);
	int rc = pkey(t, b, false, pb);
	if (rc)
		return rc;
	if (!e.n) {
		*pe = kv_mem(ee->prefix_end, ee->prefix_len);
		return 0;
	}
	return pkey(t, e, false, pe);
}

static int push_cmp(struct kv_txn *t, const struct etcdc_cmp *c)
{
	struct etcd_txn *x = priv_of(t);
	if (!c->end)
		for (size_t i = 0; i < x->ncmps; i++) {
			const struct etcdc_cmp *o = &x->cmps[i];
			if (!o->end && o->target == c->target && o->result == c->result &&
			    o->num == c->num && o->key_len == c->key_len &&
			    !memcmp(o->key, c->key, c->key_len))
				return 0;
		}
	if (x->ncmps >= ETCD_MAX_CMPS)
		return -CFS_ETOOLARGE;
	if (x->ncmps == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 16;
		struct etcdc_cmp *n = realloc(x->cmps, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		x->cmps = n;
		x->cap = cap;
	}
	x->cmps[x->ncmps++] = *c;
	return 0;
}

/* Records MOD(key) == mod; KEY must live in the arena. */
static int cmp_key(struct kv_txn *t, const void *key, size_t n, int64_t mod)
{
	struct etcdc_cmp c = { .key = key, .key_len = n, .target = ETCDC_CMP_MOD,
			       .result = ETCDC_CMP_EQUAL, .num = mod };
	return push_cmp(t, &c);
}

/* Reads [pb, pe) (or the key pb when PE is NULL) at R, fixing R on the
 * first read. LIMIT 0 = all. */
static int read_at(struct kv_txn *t, struct kv_slice pb, const struct kv_slice *pe,
		   int64_t limit, bool reverse, bool keys_only, struct etcdc_range_res *res)
{
	struct etcd_txn *x = priv_of(t);
	struct etcdc_range_req rq = {
		.key = pb.p, .key_len = pb.n,
		.end = pe ? pe->p : NULL, .end_len = pe ? pe->n : 0,
		.revision = x->rev, .limit = limit,
		.sort = reverse ? ETCDC_SORT_DESCEND : ETCDC_SORT_NONE,
		.keys_only = keys_only, .serializable = x->rev != 0,
	};
	int rc = etcdc_range(eng_of(t)->cli, &rq, res);
	if (rc)
		return rc;
	if (!x->rev) {
		if (res->revision <= 0) {
			etcdc_range_res_fini(res);
			return -CFS_EPROTO;
		}
		x->rev = res->revision;
	}
	return 0;
}

/* Copies etcd pair KV (prefixed key) into the arena as a kv_pair. */
static int copy_pair(struct kv_txn *t, const struct etcdc_kv *kv, struct kv_pair *out)
{
	struct etcd_engine *ee = eng_of(t);
	if (kv->key_len < ee->prefix_len || memcmp(kv->key, ee->prefix, ee->prefix_len))
		return -CFS_EPROTO;
	int rc = kv_arena_dup(&t->arena, kv_mem(kv->key + ee->prefix_len,
						kv->key_len - ee->prefix_len), &out->key);
	if (!rc)
		rc = kv_arena_dup(&t->arena, kv_mem(kv->val, kv->val_len), &out->val);
	if (!rc && !out->val.p) /* an empty value still needs a non-NULL pointer */
		out->val.p = "";
	return rc;
}

/* ---- txn ops ------------------------------------------------------------ */

static int etcd_txn_begin(struct kv_txn *t)
{
	(void)t; /* R is fixed by the first read: nothing to do before it */
	return 0;
}

static void etcd_txn_free(struct kv_txn *t)
{
	struct etcd_txn *x = priv_of(t);
	free(x->cmps);
	x->cmps = NULL;
	x->ncmps = x->cap = 0;
}

static int etcd_read_version(struct kv_txn *t, int64_t *version)
{
	struct etcd_txn *x = priv_of(t);
	if (!x->rev) {
		struct etcd_engine *ee = eng_of(t);
		struct etcdc_range_res res;
		struct etcdc_range_req rq = { .key = ee->prefix, .key_len = ee->prefix_len,
					      .count_only = true };
		int rc = etcdc_range(ee->cli, &rq, &res);
		int64_t rev = res.revision;
		etcdc_range_res_fini(&res);
		if (rc)
			return rc;
		if (rev <= 0)
			return -CFS_EPROTO;
		x->rev = rev;
	}
	*version = x->rev;
	return 0;
}

static int etcd_get(struct kv_txn *t, struct kv_slice key, int conflict, struct kv_slice *val)
{
	struct kv_slice pk;
	struct etcdc_range_res res;
	int rc = pkey(t, key, false, &pk);
	if (rc)
		return rc;
	rc = read_at(t, pk, NULL, 0, false, false, &res);
	if (rc)
		return rc;
	int found = 0;
	int64_t mod = 0;
	if (res.n) {
		struct kv_pair p;
		rc = copy_pair(t, &res.kvs[0], &p);
		if (!rc && kv_key_cmp(p.key, key))
			rc = -CFS_EPROTO;
		if (!rc) {
			*val = p.val;
			mod = res.kvs[0].mod_rev;
			found = 1;
		}
	} else {
		*val = kv_mem(NULL, 0);
	}
	etcdc_range_res_fini(&res);
	if (!rc && conflict)
		rc = cmp_key(t, pk.p, pk.n, mod);
	return rc ? rc : found;
}

/* KEYS in one /v3/kv/txn of Range ops per ETCD_MAX_OPS keys, at R (the
 * first chunk fixes R when no read did yet: a read-only txn's reply
 * header is the revision its ranges read at). Same answers and compares
 * as etcd_get per key; N round trips become one. */
static int etcd_get_multi(struct kv_txn *t, int n, const struct kv_slice *keys, int conflict,
			  struct kv_slice *vals, int *found)
{
	struct etcd_txn *x = priv_of(t);
	struct etcdc_op *ops = malloc(sizeof(*ops) * (size_t)(n < ETCD_MAX_OPS ? n : ETCD_MAX_OPS));
	struct kv_slice *pk = kv_arena_alloc(&t->arena, sizeof(*pk) * (size_t)n);
	int rc = ops && pk ? 0 : -ENOMEM;
	for (int i = 0; !rc && i < n; i++)
		rc = pkey(t, keys[i], false, &pk[i]);
	for (int at = 0; !rc && at < n;) {
		int k = n - at < ETCD_MAX_OPS ? n - at : ETCD_MAX_OPS;
		for (int j = 0; j < k; j++)
			ops[j] = (struct etcdc_op){ .type = ETCDC_OP_RANGE, .key = pk[at + j].p,
						    .key_len = pk[at + j].n, .revision = x->rev,
						    .serializable = x->rev != 0 };
		struct etcdc_txn_res res;
		rc = etcdc_txn(eng_of(t)->cli, NULL, 0, ops, (size_t)k, NULL, 0, &res);
		if (rc)
			break;
		if (!res.succeeded || res.nops != (size_t)k || (!x->rev && res.revision <= 0))
			rc = -CFS_EPROTO;
		if (!rc && !x->rev)
			x->rev = res.revision;
		for (int j = 0; !rc && j < k; j++) {
			const struct etcdc_op_res *o = &res.ops[j];
			int i = at + j;
			int64_t mod = 0;
			vals[i] = kv_mem(NULL, 0);
			found[i] = 0;
			if (o->type != ETCDC_OP_RANGE || o->range.n > 1) {
				rc = -CFS_EPROTO;
			} else if (o->range.n) {
				struct kv_pair p;
				rc = copy_pair(t, &o->range.kvs[0], &p);
				if (!rc && kv_key_cmp(p.key, keys[i]))
					rc = -CFS_EPROTO;
				if (!rc) {
					vals[i] = p.val;
					found[i] = 1;
					mod = o->range.kvs[0].mod_rev;
				}
			}
			if (!rc && conflict)
				rc = cmp_key(t, pk[i].p, pk[i].n, mod);
		}
		etcdc_txn_res_fini(&res);
		at += k;
	}
	free(ops);
	return rc;
}

/* Records the range compare over [pb, pe) and one MOD == m per key in RES. */
static int cmp_range(struct kv_txn *t, struct kv_slice pb, struct kv_slice pe,
		     const struct etcdc_range_res *res)
{
	struct etcd_txn *x = priv_of(t);
	if (kv_key_cmp(pb, pe) >= 0)
		return 0;
	struct etcdc_cmp c = { .key = pb.p, .key_len = pb.n, .end = pe.p, .end_len = pe.n,
			       .target = ETCDC_CMP_MOD, .result = ETCDC_CMP_LESS,
			       .num = x->rev + 1 };
	int rc = push_cmp(t, &c);
	for (size_t i = 0; !rc && i < res->n; i++) {
		struct kv_slice k;
		rc = kv_arena_dup(&t->arena, kv_mem(res->kvs[i].key, res->kvs[i].key_len), &k);
		if (!rc)
			rc = cmp_key(t, k.p, k.n, res->kvs[i].mod_rev);
	}
	return rc;
}

static int etcd_get_range(struct kv_txn *t, struct kv_slice begin, struct kv_slice end,
			  int limit, int reverse, int conflict, struct kv_range *out)
{
	struct kv_slice pb, pe;
	struct etcdc_range_res res;
	int rc = prange(t, begin, end, &pb, &pe);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	if (kv_key_cmp(pb, pe) >= 0)
		return 0;
	rc = read_at(t, pb, &pe, limit == INT_MAX ? 0 : limit, reverse, false, &res);
	if (rc)
		return rc;
	if (res.n > (size_t)INT_MAX || (limit != INT_MAX && res.n > (size_t)limit)) {
		rc = -CFS_EPROTO;
		goto out;
	}
	if (res.n) {
		out->kvs = kv_arena_alloc(&t->arena, res.n * sizeof(*out->kvs));
		if (!out->kvs) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; !rc && i < res.n; i++) {
		rc = copy_pair(t, &res.kvs[i], &out->kvs[i]);
		if (!rc && !kv_in_range(out->kvs[i].key, begin, end))
			rc = -CFS_EPROTO;
	}
	if (rc)
		goto out;
	out->n = (int)res.n;
	out->has_more = res.more && res.n;
	if (conflict) {
		struct kv_slice cb = pb, ce = pe;
		if (out->has_more) {
			const struct etcdc_kv *last = &res.kvs[res.n - 1];
			struct kv_slice lk = kv_mem(last->key + eng_of(t)->prefix_len,
						    last->key_len - eng_of(t)->prefix_len);
			if (reverse)
				rc = pkey(t, lk, false, &cb);
			else
				rc = pkey(t, lk, true, &ce);
		}
		if (!rc)
			rc = cmp_range(t, cb, ce, &res);
	}
out:
	etcdc_range_res_fini(&res);
	return rc;
}

static int etcd_add_conflict(struct kv_txn *t, struct kv_slice begin, struct kv_slice end,
			     int single)
{
	struct etcd_txn *x = priv_of(t);
	struct kv_slice pb, pe;
	struct etcdc_range_res res;
	int rc;
	if (single) {
		rc = pkey(t, begin, false, &pb);
		if (!rc)
			rc = read_at(t, pb, NULL, 0, false, true, &res);
		if (rc)
			return rc;
		rc = cmp_key(t, pb.p, pb.n, res.n ? res.kvs[0].mod_rev : 0);
		etcdc_range_res_fini(&res);
		return rc;
	}
	rc = prange(t, begin, end, &pb, &pe);
	if (rc || kv_key_cmp(pb, pe) >= 0)
		return rc;
	/* The keys present at R are needed to catch their deletion; read one
	 * more than the compare budget left so "too many" is visible. */
	int64_t room = ETCD_MAX_CMPS - (int64_t)x->ncmps - 1;
	if (room < 0)
		return -CFS_ETOOLARGE;
	rc = read_at(t, pb, &pe, room + 1, false, true, &res);
	if (rc)
		return rc;
	rc = (int64_t)res.n > room ? -CFS_ETOOLARGE : cmp_range(t, pb, pe, &res);
	etcdc_range_res_fini(&res);
	return rc;
}

/* ---- commit ------------------------------------------------------------- */

struct prange_s {
	struct kv_slice b, e; /* prefixed, b < e */
};

static int prange_cmp(const void *a, const void *b)
{
	return kv_key_cmp(((const struct prange_s *)a)->b, ((const struct prange_s *)b)->b);
}

static int push_op(struct etcdc_op *ops, size_t *n, const struct etcdc_op *op)
{
	if (*n >= ETCD_MAX_OPS)
		return -CFS_ETOOLARGE;
	ops[(*n)++] = *op;
	return 0;
}

/* Emits delete_range ops for the union of the buffered cleared ranges,
 * with every buffered point cut out (etcd refuses a put inside a deleted
 * range of the same txn; a point delete there is harmless but cut too). */
static int emit_deletes(struct kv_txn *t, struct etcdc_op *ops, size_t *nops)
{
	const struct kv_wbuf *w = &t->wb;
	struct prange_s rs[KV_MAX_WRITES];
	int nr = 0, rc = 0;
	for (int i = 0; i < w->nranges; i++) {
		rc = prange(t, w->ranges[i].begin, w->ranges[i].end, &rs[nr].b, &rs[nr].e);
		if (rc)
			return rc;
		if (kv_key_cmp(rs[nr].b, rs[nr].e) < 0)
			nr++;
	}
	qsort(rs, (size_t)nr, sizeof(rs[0]), prange_cmp);
	int m = 0;
	for (int i = 0; i < nr; i++) {
		if (m && kv_key_cmp(rs[i].b, rs[m - 1].e) <= 0) {
			if (kv_key_cmp(rs[i].e, rs[m - 1].e) > 0)
				rs[m - 1].e = rs[i].e;
		} else {
			rs[m++] = rs[i];
		}
	}
	/* Points are sorted by key, and so are the disjoint ranges. */
	int pi = 0;
	for (int i = 0; i < m; i++) {
		struct kv_slice cur = rs[i].b;
		for (; pi < w->npts; pi++) {
			struct kv_slice pk, pk1;
			rc = pkey(t, w->pts[pi].key, false, &pk);
			if (rc)
				return rc;
			if (kv_key_cmp(pk, rs[i].b) < 0)
				continue;
			if (kv_key_cmp(pk, rs[i].e) >= 0)
				break;
			if (kv_key_cmp(cur, pk) < 0) {
				struct etcdc_op op = { .type = ETCDC_OP_DELETE, .key = cur.p,
						       .key_len = cur.n, .end = pk.p,
						       .end_len = pk.n };
				rc = push_op(ops, nops, &op);
				if (rc)
					return rc;
			}
			rc = pkey(t, w->pts[pi].key, true, &pk1);
			if (rc)
				return rc;
			cur = pk1;
		}
		if (kv_key_cmp(cur, rs[i].e) < 0) {
			struct etcdc_op op = { .type = ETCDC_OP_DELETE, .key = cur.p, .key_len = cur.n,
					       .end = rs[i].e.p, .end_len = rs[i].e.n };
			rc = push_op(ops, nops, &op);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* Emits the point writes; an atomic add reads its base at R (recording
 * MOD == m, which is what makes it safe as a read-modify-write). */
static int emit_points(struct kv_txn *t, struct etcdc_op *ops, size_t *nops)
{
	const struct kv_wbuf *w = &t->wb;
	for (int i = 0; i < w->npts; i++) {
		const struct kv_wpoint *p = &w->pts[i];
		struct kv_slice pk;
		int rc = pkey(t, p->key, false, &pk);
		if (rc)
			return rc;
		struct etcdc_op op = { .key = pk.p, .key_len = pk.n };
		switch (p->op) {
		case KV_WOP_SET:
			op.type = ETCDC_OP_PUT;
			op.val = p->val.p;
			op.val_len = p->val.n;
			break;
		case KV_WOP_CLEAR:
			op.type = ETCDC_OP_DELETE;
			break;
		case KV_WOP_ADD:
		case KV_WOP_MAX: {
			struct etcdc_range_res res;
			uint8_t *v8 = kv_arena_alloc(&t->arena, 8);
			if (!v8)
				return -ENOMEM;
			rc = read_at(t, pk, NULL, 0, false, false, &res);
			if (rc)
				return rc;
			kv_point_apply(p->op, res.n ? res.kvs[0].val : NULL,
				       res.n ? res.kvs[0].val_len : 0, res.n != 0, p->delta, v8);
			rc = cmp_key(t, pk.p, pk.n, res.n ? res.kvs[0].mod_rev : 0);
			etcdc_range_res_fini(&res);
			if (rc)
				return rc;
			op.type = ETCDC_OP_PUT;
			op.val = v8;
			op.val_len = 8;
			break;
		}
		default:
			return -EINVAL;
		}
		rc = push_op(ops, nops, &op);
		if (rc)
			return rc;
	}
	return 0;
}

static int etcd_commit(struct kv_txn *t, int64_t *version)
{
	struct etcd_txn *x = priv_of(t);
	struct etcdc_op *ops = calloc(ETCD_MAX_OPS, sizeof(*ops));
	struct etcdc_txn_res res = { 0 };
	size_t nops = 0;
	if (!ops)
		return -ENOMEM;
	int rc = emit_deletes(t, ops, &nops);
	if (!rc)
		rc = emit_points(t, ops, &nops);
	if (!rc)
		rc = etcdc_txn(eng_of(t)->cli, x->cmps, x->ncmps, ops, nops, NULL, 0, &res);
	if (!rc) {
		if (!res.succeeded)
			rc = -CFS_ECONFLICT;
		else if (version)
			*version = res.revision;
	}
	etcdc_txn_res_fini(&res);
	free(ops);
	return rc;
}

const struct kv_backend_ops kv_etcd_ops = {
	.scheme = "etcd",
	.txn_priv_size = sizeof(struct etcd_txn),
	.open = etcd_open,
	.close = etcd_close,
	.txn_begin = etcd_txn_begin,
	.txn_free = etcd_txn_free,
	.read_version = etcd_read_version,
	.get = etcd_get,
	.get_multi = etcd_get_multi,
	.get_range = etcd_get_range,
	.add_conflict = etcd_add_conflict,
	.commit = etcd_commit,
	.cancel = etcd_cancel,
};

int kv_etcd_client(kv_engine *e, struct etcdc **cli, const char **prefix, size_t *prefix_len)
{
	if (!e || e->ops != &kv_etcd_ops)
		return -EINVAL;
	struct etcd_engine *ee = (struct etcd_engine *)e;
	*cli = ee->cli;
	*prefix = ee->prefix;
	*prefix_len = ee->prefix_len;
	return 0;
}
