/* mgmtd_store.c - mgmtd state in the KV store; the primary lease.
 *
 * A state change is turned into a batch of record writes by diffing the
 * old and new state (mgmtd_batch_diff); the batch is committed in txns of
 * at most MGMTD_BATCH_PER_TXN writes, each of which first reads the lease
 * key without the snapshot flag. Reading it makes the txn conflict with a
 * concurrent takeover, and checking holder, term and expiry makes a
 * deposed primary's txn abort, so only the lease holder ever writes state.
 * All writes are plain sets of whole records, so a batch txn is idempotent
 * and kv_run may retry it on -CFS_EMAYBE.
 *
 * Loading reads every "MGMT/" range in one read-only txn (no limits apply
 * to reads there), rebuilds the routing info, derives each target's chain
 * and public state from the chains, and checks it with route_info_check.
 *
 * A new chain table is larger than one txn (a 6x5 R=3 table writes 30
 * targets, 10 chains and the table). The diff puts the table record after
 * its chains and targets, so a primary that dies half way leaves chains
 * that no table names: loading ignores them (and targets take their chain
 * from the chains that are loaded), so the half-made table is not there,
 * and creating it again overwrites the leftovers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/status.h"
#include "common/wire.h"
#include "common/xalloc.h"
#include "mgmtd/mgmtd_store.h"

#define K_CLUSTER "MGMT/cluster"
#define K_LEASE   "MGMT/lease"
#define K_VERSION "MGMT/version"
#define P_NODE    "MGMT/node/"
#define P_TGT     "MGMT/tgt/"
#define P_CHAIN   "MGMT/chain/"
#define P_TABLE   "MGMT/table/"
#define P_ADMIN   "MGMT/admin/"
#define KEY_MAX   32

static uint64_t now_or(uint64_t now_ms)
{
	return now_ms ? now_ms : clock_wall_ns() / 1000000u;
}

/* ---- state ---- */

void mgmtd_state_init(struct mgmtd_state *s)
{
	memset(s, 0, sizeof(*s));
	route_info_init(&s->ri);
}

void mgmtd_state_fini(struct mgmtd_state *s)
{
	if (!s)
		return;
	route_info_fini(&s->ri);
	free(s->admin_off);
	s->admin_off = NULL;
	s->n_admin_off = 0;
	s->initialised = false;
}

static void *dup_arr(const void *p, size_t n, size_t size)
{
	if (!n)
		return NULL;
	void *d = xmalloc(n * size);
	memcpy(d, p, n * size);
	return d;
}

void mgmtd_state_copy(struct mgmtd_state *dst, const struct mgmtd_state *src)
{
	const struct route_info *a = &src->ri;
	struct route_info *b = &dst->ri;
	mgmtd_state_init(dst);
	b->version = a->version;
	b->n_nodes = a->n_nodes;
	b->n_targets = a->n_targets;
	b->n_chains = a->n_chains;
	b->n_tables = a->n_tables;
	b->nodes = dup_arr(a->nodes, a->n_nodes, sizeof(*a->nodes));
	b->targets = dup_arr(a->targets, a->n_targets, sizeof(*a->targets));
	b->chains = dup_arr(a->chains, a->n_chains, sizeof(*a->chains));
	b->tables = dup_arr(a->tables, a->n_tables, sizeof(*a->tables));
	for (size_t i = 0; i < a->n_tables; i++)
		b->tables[i].chains =
		    dup_arr(a->tables[i].chains, a->tables[i].n, sizeof(uint32_t));
	dst->admin_off = dup_arr(src->admin_off, src->n_admin_off, sizeof(uint32_t));
	dst->n_admin_off = src->n_admin_off;
	dst->initialised = src->initialised;
}

static size_t admin_pos(const struct mgmtd_state *s, uint32_t id, bool *found)
{
	size_t lo = 0, hi = s->n_admin_off;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->admin_off[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < s->n_admin_off && s->admin_off[lo] == id;
	return lo;
}

bool mgmtd_state_admin_off(const struct mgmtd_state *s, uint32_t target_id)
{
	bool found;
	admin_pos(s, target_id, &found);
	return found;
}

int mgmtd_state_set_admin_off(struct mgmtd_state *s, uint32_t target_id, bool off)
{
	bool found;
	size_t at = admin_pos(s, target_id, &found);
	if (found == off)
		return 0;
	if (off) {
		s->admin_off = xrealloc(s->admin_off, (s->n_admin_off + 1) * sizeof(uint32_t));
		memmove(s->admin_off + at + 1, s->admin_off + at,
		        (s->n_admin_off - at) * sizeof(uint32_t));
		s->admin_off[at] = target_id;
		s->n_admin_off++;
	} else {
		memmove(s->admin_off + at, s->admin_off + at + 1,
		        (s->n_admin_off - at - 1) * sizeof(uint32_t));
		s->n_admin_off--;
	}
	return 1;
}

/* ---- batches ---- */

struct batch_op {
	uint8_t key[KEY_MAX];
	size_t klen;
	struct buf val; /* sealed value; unused for a clear */
	bool clear;
};

struct mgmtd_batch {
	struct batch_op *ops;
	size_t n, cap;
};

struct mgmtd_batch *mgmtd_batch_new(void)
{
	return xcalloc(1, sizeof(struct mgmtd_batch));
}

void mgmtd_batch_free(struct mgmtd_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		buf_fini(&b->ops[i].val);
	free(b->ops);
	free(b);
}

size_t mgmtd_batch_len(const struct mgmtd_batch *b)
{
	return b->n;
}

static struct batch_op *batch_add(struct mgmtd_batch *b, const char *prefix, const uint8_t *id,
                                  size_t idlen)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->ops = xrealloc(b->ops, b->cap * sizeof(*b->ops));
	}
	struct batch_op *op = &b->ops[b->n++];
	size_t pl = strlen(prefix);
	memset(op, 0, sizeof(*op));
	memcpy(op->key, prefix, pl);
	if (idlen)
		memcpy(op->key + pl, id, idlen);
	op->klen = pl + idlen;
	buf_init(&op->val);
	return op;
}

/* Seals REC as KIND into a new op for PREFIX+ID. */
static int batch_put(struct mgmtd_batch *b, const char *prefix, const uint8_t *id, size_t idlen,
                     enum route_rec kind, const struct buf *rec)
{
	struct batch_op *op = batch_add(b, prefix, id, idlen);
	return route_seal(kind, rec->data, rec->len, &op->val);
}

static int put_id(struct mgmtd_batch *b, const char *prefix, uint32_t id, enum route_rec kind,
                  const struct buf *rec)
{
	uint8_t k[4];
	wire_store_be32(k, id);
	return batch_put(b, prefix, k, 4, kind, rec);
}

static bool target_differs(const struct route_target *a, const struct route_target *b)
{
	return a->node_id != b->node_id || a->chain_id != b->chain_id ||
	       a->local_state != b->local_state || a->pub_state != b->pub_state ||
	       a->capacity != b->capacity || a->used != b->used;
}

int mgmtd_batch_diff(struct mgmtd_batch *b, const struct mgmtd_state *old_s,
                     const struct mgmtd_state *new_s, const char *cluster_id)
{
	const struct route_info *o = &old_s->ri, *n = &new_s->ri;
	struct buf rec = BUF_INIT;
	int rc = 0;

	if (new_s->initialised && !old_s->initialised) {
		struct wire_writer w;
		wire_writer_init(&w, &rec);
		wire_put_blob(&w, cluster_id, (uint32_t)strlen(cluster_id));
		wire_put_u64(&w, now_or(0));
		rc = w.err ? w.err : batch_put(b, K_CLUSTER, NULL, 0, ROUTE_REC_CLUSTER, &rec);
	}
	for (size_t i = 0; !rc && i < n->n_nodes; i++) {
		const struct route_node *x = &n->nodes[i], *y = route_find_node(o, x->id);
		if (y && y->type == x->type && y->state == x->state && !strcmp(y->addr, x->addr))
			continue;
		buf_reset(&rec);
		rc = route_node_encode(x, &rec);
		if (!rc)
			rc = put_id(b, P_NODE, x->id, ROUTE_REC_NODE, &rec);
	}
	for (size_t i = 0; !rc && i < n->n_targets; i++) {
		const struct route_target *x = &n->targets[i], *y = route_find_target(o, x->id);
		if (y && !target_differs(x, y))
			continue;
		buf_reset(&rec);
		rc = route_target_encode(x, &rec);
		if (!rc)
			rc = put_id(b, P_TGT, x->id, ROUTE_REC_TARGET, &rec);
	}
	for (size_t i = 0; !rc && i < n->n_chains; i++) {
		const struct route_chain *x = &n->chains[i], *y = route_find_chain(o, x->id);
		if (y && y->version == x->version && y->n == x->n &&
		    !memcmp(y->m, x->m, x->n * sizeof(x->m[0])))
			continue;
		buf_reset(&rec);
		rc = route_chain_encode(x, &rec);
		if (!rc)
			rc = put_id(b, P_CHAIN, x->id, ROUTE_REC_CHAIN, &rec);
	}
	for (size_t i = 0; !rc && i < n->n_tables; i++) {
		const struct route_table *x = &n->tables[i];
		bool have = false;
		for (size_t j = 0; j < o->n_tables && !have; j++)
			have = o->tables[j].id == x->id && o->tables[j].version == x->version;
		if (have)
			continue;
		uint8_t k[8];
		wire_store_be32(k, x->id);
		wire_store_be32(k + 4, x->version);
		buf_reset(&rec);
		rc = route_table_encode(x, &rec);
		if (!rc)
			rc = batch_put(b, P_TABLE, k, 8, ROUTE_REC_TABLE, &rec);
	}
	for (size_t i = 0; !rc && i < new_s->n_admin_off; i++) {
		if (mgmtd_state_admin_off(old_s, new_s->admin_off[i]))
			continue;
		uint8_t one = 1;
		buf_reset(&rec);
		rc = buf_append(&rec, &one, 1);
		if (!rc)
			rc = put_id(b, P_ADMIN, new_s->admin_off[i], ROUTE_REC_ADMIN, &rec);
	}
	for (size_t i = 0; !rc && i < old_s->n_admin_off; i++) {
		if (mgmtd_state_admin_off(new_s, old_s->admin_off[i]))
			continue;
		uint8_t k[4];
		wire_store_be32(k, old_s->admin_off[i]);
		batch_add(b, P_ADMIN, k, 4)->clear = true;
	}
	if (!rc && (n->version != o->version || mgmtd_batch_len(b))) {
		struct wire_writer w;
		buf_reset(&rec);
		wire_writer_init(&w, &rec);
		wire_put_u64(&w, n->version);
		rc = w.err ? w.err : batch_put(b, K_VERSION, NULL, 0, ROUTE_REC_VERSION, &rec);
	}
	buf_fini(&rec);
	return rc;
}

/* ---- lease ---- */

int mgmtd_lease_encode(const struct mgmtd_lease *l, struct buf *out)
{
	struct buf rec = BUF_INIT;
	struct wire_writer w;
	wire_writer_init(&w, &rec);
	wire_put_u64(&w, l->holder);
	wire_put_u64(&w, l->term);
	wire_put_u64(&w, l->expiry_ms);
	wire_put_blob(&w, l->addr, (uint32_t)strlen(l->addr));
	int rc = w.err ? w.err : route_seal(ROUTE_REC_LEASE, rec.data, rec.len, out);
	buf_fini(&rec);
	return rc;
}

int mgmtd_lease_decode(const uint8_t *p, size_t n, struct mgmtd_lease *out)
{
	const uint8_t *rec, *addr = NULL;
	size_t len;
	uint32_t alen = 0;
	memset(out, 0, sizeof(*out));
	int rc = route_unseal(p, n, ROUTE_REC_LEASE, &rec, &len);
	if (rc)
		return rc;
	struct wire_reader r;
	wire_reader_init(&r, rec, len);
	wire_get_u64(&r, &out->holder);
	wire_get_u64(&r, &out->term);
	wire_get_u64(&r, &out->expiry_ms);
	wire_get_blob(&r, ROUTE_ADDR_MAX, &addr, &alen);
	if (r.err || memchr(addr, 0, alen)) {
		memset(out, 0, sizeof(*out));
		return -CFS_EPROTO;
	}
	memcpy(out->addr, addr, alen);
	out->addr[alen] = 0;
	return 0;
}

/* Reads the lease in T (recording a read conflict). 1 found, 0 absent,
 * -CFS_ECORRUPT unreadable, or a KV error. */
static int read_lease(kv_txn *t, struct mgmtd_lease *l)
{
	struct kv_slice v;
	int rc = kv_get(t, kv_str(K_LEASE), 0, &v);
	if (rc <= 0) {
		memset(l, 0, sizeof(*l));
		return rc;
	}
	return mgmtd_lease_decode(v.p, v.n, l) ? -CFS_ECORRUPT : 1;
}

struct elect_ctx {
	uint64_t holder, now;
	uint32_t lease_ms;
	const char *addr;
	struct mgmtd_lease out;
	int primary;
};

static int elect_fn(kv_txn *t, void *arg)
{
	struct elect_ctx *c = arg;
	struct mgmtd_lease l;
	int rc = read_lease(t, &l);
	if (rc < 0 && rc != -CFS_ECORRUPT)
		return rc;
	bool mine = rc == 1 && l.holder == c->holder;
	if (rc == 1 && !mine && l.expiry_ms > c->now) {
		c->out = l;
		c->primary = 0;
		return 0;
	}
	struct mgmtd_lease n = {.holder = c->holder, .expiry_ms = c->now + c->lease_ms};
	n.term = mine ? l.term : l.term + 1;
	snprintf(n.addr, sizeof(n.addr), "%s", c->addr);
	struct buf v = BUF_INIT;
	rc = mgmtd_lease_encode(&n, &v);
	if (!rc)
		rc = kv_set(t, kv_str(K_LEASE), kv_mem(v.data, v.len));
	buf_fini(&v);
	c->out = n;
	c->primary = 1;
	return rc;
}

int mgmtd_store_elect(kv_engine *e, uint64_t holder, const char *addr, uint32_t lease_ms,
                      uint64_t now_ms, struct mgmtd_lease *out)
{
	struct elect_ctx c = {
	    .holder = holder, .now = now_or(now_ms), .lease_ms = lease_ms, .addr = addr};
	struct kv_run_opts o = {.idempotent = 1};
	int rc = kv_run(e, &o, elect_fn, &c, NULL);
	if (rc)
		return rc;
	*out = c.out;
	return c.primary;
}

static int release_fn(kv_txn *t, void *arg)
{
	struct mgmtd_lease l;
	int rc = read_lease(t, &l);
	if (rc != 1 || l.holder != *(uint64_t *)arg)
		return rc < 0 && rc != -CFS_ECORRUPT ? rc : 0;
	/* Expire it rather than delete it: the term must keep increasing. */
	struct buf v = BUF_INIT;
	l.expiry_ms = 0;
	rc = mgmtd_lease_encode(&l, &v);
	if (!rc)
		rc = kv_set(t, kv_str(K_LEASE), kv_mem(v.data, v.len));
	buf_fini(&v);
	return rc;
}

int mgmtd_store_release(kv_engine *e, uint64_t holder)
{
	struct kv_run_opts o = {.idempotent = 1};
	return kv_run(e, &o, release_fn, &holder, NULL);
}

/* ---- commit ---- */

struct commit_ctx {
	uint64_t holder, term, now;
	const struct batch_op *ops;
	size_t n;
};

static int commit_fn(kv_txn *t, void *arg)
{
	struct commit_ctx *c = arg;
	struct mgmtd_lease l;
	int rc = read_lease(t, &l);
	if (rc < 0 && rc != -CFS_ECORRUPT)
		return rc;
	if (rc != 1 || l.holder != c->holder || l.term != c->term || l.expiry_ms <= c->now)
		return -CFS_ENOT_PRIMARY;
	for (size_t i = 0; i < c->n; i++) {
		const struct batch_op *op = &c->ops[i];
		if (op->clear)
			kv_clear(t, kv_mem(op->key, op->klen));
		else
			kv_set(t, kv_mem(op->key, op->klen), kv_mem(op->val.data, op->val.len));
	}
	return 0;
}

int mgmtd_store_commit(kv_engine *e, uint64_t holder, uint64_t term, uint64_t now_ms,
                       const struct mgmtd_batch *b)
{
	struct kv_run_opts o = {.idempotent = 1};
	size_t i = 0;
	while (i < b->n) {
		/* Group by count and bytes so no txn passes a kv.h limit. */
		size_t j = i, bytes = 0;
		while (j < b->n && j - i < MGMTD_BATCH_PER_TXN &&
		       bytes + b->ops[j].klen + b->ops[j].val.len < KV_MAX_TXN_BYTES / 2) {
			bytes += b->ops[j].klen + b->ops[j].val.len;
			j++;
		}
		if (j == i)
			j = i + 1;
		struct commit_ctx c = {holder, term, now_or(now_ms), b->ops + i, j - i};
		int rc = kv_run(e, &o, commit_fn, &c, NULL);
		if (rc)
			return rc;
		i = j;
	}
	return 0;
}

/* ---- load ---- */

struct load_ctx {
	const char *cluster_id;
	struct mgmtd_state *s;
	char *err;
	size_t errlen;
};

static int range_of(kv_txn *t, const char *prefix, struct kv_range *r)
{
	char end[KEY_MAX];
	size_t pl = strlen(prefix);
	memcpy(end, prefix, pl);
	end[pl - 1]++; /* "MGMT/node/" -> "MGMT/node0": just past the prefix */
	return kv_get_range(t, kv_mem(prefix, pl), kv_mem(end, pl), 0, 1, 0, r);
}

static int corrupt(struct load_ctx *c, const struct kv_slice *key, const char *what)
{
	snprintf(c->err, c->errlen, "mgmtd store: bad %s record at key '%.*s...'", what,
	         (int)(key->n < 16 ? key->n : 16), (const char *)key->p);
	return -CFS_ECORRUPT;
}

static bool in_a_table(const struct route_info *ri, uint32_t chain)
{
	for (size_t i = 0; i < ri->n_tables; i++)
		for (uint32_t k = 0; k < ri->tables[i].n; k++)
			if (ri->tables[i].chains[k] == chain)
				return true;
	return false;
}

static int load_fn(kv_txn *t, void *arg)
{
	struct load_ctx *c = arg;
	struct mgmtd_state *s = c->s;
	struct kv_slice v;
	struct kv_range r;
	const uint8_t *rec;
	size_t len;
	int rc;

	mgmtd_state_fini(s);
	mgmtd_state_init(s);
	rc = kv_get(t, kv_str(K_CLUSTER), 1, &v);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		const uint8_t *id = NULL;
		uint32_t idlen = 0;
		struct wire_reader wr;
		struct kv_slice k = kv_str(K_CLUSTER);
		if (route_unseal(v.p, v.n, ROUTE_REC_CLUSTER, &rec, &len))
			return corrupt(c, &k, "cluster");
		wire_reader_init(&wr, rec, len);
		wire_get_blob(&wr, MGMTD_CLUSTER_ID_MAX, &id, &idlen);
		if (wr.err)
			return corrupt(c, &k, "cluster");
		if (idlen != strlen(c->cluster_id) || memcmp(id, c->cluster_id, idlen)) {
			snprintf(c->err, c->errlen,
			         "mgmtd store: the KV store belongs to cluster '%.*s', not '%s'",
			         (int)idlen, (const char *)id, c->cluster_id);
			return -EINVAL;
		}
		s->initialised = true;
	}
	rc = kv_get(t, kv_str(K_VERSION), 1, &v);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		struct kv_slice k = kv_str(K_VERSION);
		if (route_unseal(v.p, v.n, ROUTE_REC_VERSION, &rec, &len) || len < 8)
			return corrupt(c, &k, "version");
		s->ri.version = wire_load_u64(rec);
	}
	if ((rc = range_of(t, P_NODE, &r)))
		return rc;
	for (int i = 0; i < r.n; i++) {
		struct route_node n;
		if (route_unseal(r.kvs[i].val.p, r.kvs[i].val.n, ROUTE_REC_NODE, &rec, &len) ||
		    route_node_decode(rec, len, &n) || route_info_add_node(&s->ri, &n))
			return corrupt(c, &r.kvs[i].key, "node");
	}
	if ((rc = range_of(t, P_TGT, &r)))
		return rc;
	for (int i = 0; i < r.n; i++) {
		struct route_target x;
		if (route_unseal(r.kvs[i].val.p, r.kvs[i].val.n, ROUTE_REC_TARGET, &rec, &len) ||
		    route_target_decode(rec, len, &x))
			return corrupt(c, &r.kvs[i].key, "target");
		x.chain_id = 0; /* chains decide; see below */
		x.pub_state = CHAIN_PS_OFFLINE;
		if (route_info_add_target(&s->ri, &x))
			return corrupt(c, &r.kvs[i].key, "target");
	}
	if ((rc = range_of(t, P_TABLE, &r)))
		return rc;
	for (int i = 0; i < r.n; i++) {
		struct route_table tb;
		if (route_unseal(r.kvs[i].val.p, r.kvs[i].val.n, ROUTE_REC_TABLE, &rec, &len) ||
		    route_table_decode(rec, len, &tb))
			return corrupt(c, &r.kvs[i].key, "table");
		rc = route_info_add_table(&s->ri, tb.id, tb.version, tb.chains, tb.n);
		route_table_fini(&tb);
		if (rc)
			return corrupt(c, &r.kvs[i].key, "table");
	}
	if ((rc = range_of(t, P_CHAIN, &r)))
		return rc;
	for (int i = 0; i < r.n; i++) {
		struct route_chain ch;
		if (route_unseal(r.kvs[i].val.p, r.kvs[i].val.n, ROUTE_REC_CHAIN, &rec, &len) ||
		    route_chain_decode(rec, len, &ch))
			return corrupt(c, &r.kvs[i].key, "chain");
		if (!in_a_table(&s->ri, ch.id))
			continue; /* a table creation that did not finish */
		if (route_info_add_chain(&s->ri, &ch))
			return corrupt(c, &r.kvs[i].key, "chain");
		for (uint32_t m = 0; m < ch.n; m++) {
			struct route_target *x =
			    (struct route_target *)route_find_target(&s->ri, ch.m[m].target_id);
			if (!x)
				return corrupt(c, &r.kvs[i].key, "chain (missing target)");
			x->chain_id = ch.id;
			x->pub_state = ch.m[m].state;
		}
	}
	if ((rc = range_of(t, P_ADMIN, &r)))
		return rc;
	for (int i = 0; i < r.n; i++) {
		if (r.kvs[i].key.n != strlen(P_ADMIN) + 4)
			return corrupt(c, &r.kvs[i].key, "admin");
		mgmtd_state_set_admin_off(
		    s, wire_load_be32((const uint8_t *)r.kvs[i].key.p + strlen(P_ADMIN)), true);
	}
	char why[200];
	if (route_info_check(&s->ri, why, sizeof(why))) {
		snprintf(c->err, c->errlen, "mgmtd store: inconsistent state: %s", why);
		return -CFS_ECORRUPT;
	}
	return 0;
}

int mgmtd_store_load(kv_engine *e, const char *cluster_id, struct mgmtd_state *out, char *err,
                     size_t errlen)
{
	char dummy[8];
	struct load_ctx c = {cluster_id, out, err ? err : dummy, err ? errlen : sizeof(dummy)};
	struct kv_run_opts o = {.flags = KV_RDONLY, .idempotent = 1};
	mgmtd_state_init(out);
	c.err[0] = 0;
	int rc = kv_run(e, &o, load_fn, &c, NULL);
	if (rc) {
		if (!c.err[0])
			snprintf(c.err, c.errlen, "mgmtd store: load failed: %s", cfs_strerror(rc));
		mgmtd_state_fini(out);
		mgmtd_state_init(out);
	}
	return rc;
}
