/* meta_kvcache.c - the KVCache index over the KV store (meta_kvcache.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/cfs_assert.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/status.h"
#include "common/wire.h"
#include "meta/layout.h"
#include "meta/meta_kvcache.h"

/* Keys per txn, from the KV limits (kv.h: 64 writes, 64 read conflicts):
 * reserve reads <= 6 per key plus its group's token record; its writes:
 * <= 3 to take a slot (a dead writer's reservation with its token
 * record's update, or an evicted entry), <= 1 per stale index record (at
 * most 2 per key), 2 for the reservation (record, expiry index), and one
 * token record per txn: 8 x 7 + 1 + 7 = 64. Delete 4 per key, plus its
 * result record and the expiry of at most DELRES_GC_PER_TXN old ones (2
 * writes each): 12 x 4 + 2 + 4 + 7 = 61. Touch 3, plus at most 7 per txn
 * for its counters (applied once per txn, txn_flush).
 * A publish writes 5 per key, or 9 when it replaces an expired entry: its
 * txn stops taking keys when the next might pass PUBLISH_WRITES. */
#define RESERVE_PER_TXN 8
#define PUBLISH_PER_TXN 10
#define PUBLISH_WRITES 56
#define DELETE_PER_TXN 12
#define TOUCH_PER_TXN 16
#define RECLAIM_PER_TXN 12
#define RATE_KEEP_S 60 /* eviction-rate buckets older than this are dropped */
/* A DELETE's result record answers its resends for this long: well past
 * meta_client's budget for one call over all its attempts (30 s). */
#define DELRES_KEEP_MS 120000u
#define DELRES_GC_PER_TXN 2 /* expired result records dropped per delete txn */
/* An NS_DELETE's tombstone answers its resends as long (same budget). */
#define NSDEL_KEEP_MS DELRES_KEEP_MS
#define NSDEL_GC_PER_TXN 2 /* expired tombstones dropped per namespace delete */
#define DROPS_MAX 16        /* reservations one txn may end (>= every group size) */
_Static_assert(DROPS_MAX >= RESERVE_PER_TXN && DROPS_MAX >= PUBLISH_PER_TXN &&
		       DROPS_MAX >= DELETE_PER_TXN && DROPS_MAX >= RECLAIM_PER_TXN,
	       "a txn ends at most one reservation per key of its group");
#define KEYBUF (4 + 8 + KVC_KEY_MAX + 16)
#define SHARDS 8
#define HWM_SHARDS 8 /* never-used slot counters per namespace */
#define DEFAULT_LEASE_MS 30000u
#define DEFAULT_TOUCH_MS 1000u

enum { CNT_USED = 'U', CNT_EVICT = 'V', CNT_RECLAIM = 'R', CNT_LOST = 'X', CNT_EXPIRE = 'T' };
#define NCNT 5
static const char CNT_KINDS[NCNT] = { CNT_USED, CNT_EVICT, CNT_RECLAIM, CNT_LOST, CNT_EXPIRE };

struct key {
	uint8_t b[KEYBUF];
	uint32_t n;
};

static struct kv_slice ks(const struct key *k) { return kv_mem(k->b, k->n); }

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* PREFIX ns [a [b]] [bytes] */
static void mk(struct key *k, const char pfx[4], uint64_t ns, int na, uint64_t a, uint64_t b,
	       const void *bytes, size_t n)
{
	memcpy(k->b, pfx, 4);
	put_be64(k->b + 4, ns);
	k->n = 12;
	if (na >= 1) {
		put_be64(k->b + k->n, a);
		k->n += 8;
	}
	if (na >= 2) {
		put_be64(k->b + k->n, b);
		k->n += 8;
	}
	if (n) {
		memcpy(k->b + k->n, bytes, n);
		k->n += (uint32_t)n;
	}
}

/* [begin, end) of every key PREFIX ns ... (ids are < UINT64_MAX). */
static void mk_range(struct key *b, struct key *e, const char pfx[4], uint64_t ns)
{
	mk(b, pfx, ns, 0, 0, 0, NULL, 0);
	mk(e, pfx, ns + 1, 0, 0, 0, NULL, 0);
}

static uint64_t now_ms(void) { return clock_wall_ns() / 1000000u; }

/* A random seed for one call (struct op rng). */
static uint64_t rnd64(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = clock_mono_ns() * 0x9e3779b97f4a7c15ull;
	return v;
}

/* ---- records: magic u32, body, crc32c u32 ---- */

#define MAGIC_NS 0x4e4b4643u  /* "CFKN" */
#define MAGIC_ENT 0x454b4643u /* "CFKE" */
#define MAGIC_RES 0x524b4643u /* "CFKR" */
#define MAGIC_TOK 0x4f4b4643u /* "CFKO" */
#define MAGIC_DEL 0x444b4643u /* "CFKD" */
#define MAGIC_TOMB 0x5a4b4643u /* "CFKZ" */

static int rec_finish(struct buf *b, struct wire_writer *w)
{
	if (w->err)
		return w->err;
	wire_put_u32(w, crc32c(0, b->data, b->len));
	return w->err;
}

static int rec_open(struct wire_reader *r, struct kv_slice v, uint32_t magic)
{
	uint32_t m, c;
	if (v.n < 8)
		return -CFS_ECORRUPT;
	const uint8_t *p = v.p;
	c = wire_load_u32(p + v.n - 4);
	if (crc32c(0, p, v.n - 4) != c)
		return -CFS_ECORRUPT;
	wire_reader_init(r, p, v.n - 4);
	wire_get_u32(r, &m);
	return m == magic ? 0 : -CFS_ECORRUPT;
}

struct entry {
	uint64_t slot, version, last_used;
	uint32_t len, crc;
	uint64_t expiry; /* ms since the epoch; 0: no TTL (appended: absent in older records) */
};

static int ent_encode(struct buf *b, const struct entry *e)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, MAGIC_ENT);
	wire_put_u64(&w, e->slot);
	wire_put_u64(&w, e->version);
	wire_put_u32(&w, e->len);
	wire_put_u32(&w, e->crc);
	wire_put_u64(&w, e->last_used);
	wire_put_u64(&w, e->expiry);
	return rec_finish(b, &w);
}

static int ent_decode(struct kv_slice v, struct entry *e)
{
	struct wire_reader r;
	int rc = rec_open(&r, v, MAGIC_ENT);
	if (rc)
		return rc;
	wire_get_u64(&r, &e->slot);
	wire_get_u64(&r, &e->version);
	wire_get_u32(&r, &e->len);
	wire_get_u32(&r, &e->crc);
	wire_get_u64(&r, &e->last_used);
	e->expiry = 0;
	if (!r.err && wire_left(&r) >= 8)
		wire_get_u64(&r, &e->expiry);
	return r.err ? -CFS_ECORRUPT : 0;
}

struct resv {
	uint64_t version, owner, expiry;
	uint32_t len;
	uint64_t token; /* the put's token (appended: 0 in older records) */
	uint32_t idx;   /* the key's index in that put's RESERVE */
	uint32_t group; /* first index of the RESERVE txn that made it: its token
			   record is KVCO ns token group (appended; older
			   records had one token record per key: group = idx) */
};

static int res_encode(struct buf *b, const struct resv *x)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, MAGIC_RES);
	wire_put_u64(&w, x->version);
	wire_put_u64(&w, x->owner);
	wire_put_u64(&w, x->expiry);
	wire_put_u32(&w, x->len);
	wire_put_u64(&w, x->token);
	wire_put_u32(&w, x->idx);
	wire_put_u32(&w, x->group);
	return rec_finish(b, &w);
}

static int res_decode(struct kv_slice v, struct resv *x)
{
	struct wire_reader r;
	int rc = rec_open(&r, v, MAGIC_RES);
	if (rc)
		return rc;
	wire_get_u64(&r, &x->version);
	wire_get_u64(&r, &x->owner);
	wire_get_u64(&r, &x->expiry);
	wire_get_u32(&r, &x->len);
	x->token = 0;
	x->idx = 0;
	if (!r.err && wire_left(&r) >= 12) {
		wire_get_u64(&r, &x->token);
		wire_get_u32(&r, &x->idx);
	}
	x->group = x->idx;
	if (!r.err && wire_left(&r) >= 4)
		wire_get_u32(&r, &x->group);
	return r.err ? -CFS_ECORRUPT : 0;
}

/* Token record of one RESERVE txn (KVCO ns token group): the keys of the
 * group that hold a reservation of that put, as (index in the batch,
 * slot). Layout: magic u32, n u32 (<= RESERVE_PER_TXN), n x (idx u32,
 * slot u64), crc32c u32. A listed slot is the put's only while its
 * reservation record names the same token, index and group: the record
 * lists the live reservations and goes with the last of them, but a
 * reader checks each against its reservation anyway.
 * A 16-byte value is a per-key token record of the previous format
 * (slot, version; its group is the key's index): decoded as an empty
 * list, so it goes with its reservation. */
struct tokrec {
	uint32_t n;
	uint32_t idx[RESERVE_PER_TXN];
	uint64_t slot[RESERVE_PER_TXN];
};

static int tok_encode(struct buf *b, const struct tokrec *r)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, MAGIC_TOK);
	wire_put_u32(&w, r->n);
	for (uint32_t i = 0; i < r->n; i++) {
		wire_put_u32(&w, r->idx[i]);
		wire_put_u64(&w, r->slot[i]);
	}
	return rec_finish(b, &w);
}

static int tok_decode(struct kv_slice v, struct tokrec *out)
{
	struct wire_reader r;
	out->n = 0;
	if (v.n == 16)
		return 0; /* the previous format's per-key record */
	int rc = rec_open(&r, v, MAGIC_TOK);
	if (rc)
		return rc;
	wire_get_u32(&r, &out->n);
	if (r.err || out->n > RESERVE_PER_TXN)
		return -CFS_ECORRUPT;
	for (uint32_t i = 0; i < out->n; i++) {
		wire_get_u32(&r, &out->idx[i]);
		wire_get_u64(&r, &out->slot[i]);
	}
	return r.err ? -CFS_ECORRUPT : 0;
}

/* Result record of one DELETE txn (KVCD ns token first): what the txn
 * answered, so a resend of the call answers the same instead of running
 * again. Layout: magic u32, expiry u64 (ms), n u32 (<= DELETE_PER_TXN),
 * n x status u8 (KVC_ST_OK or KVC_ST_ABSENT), crc32c u32. KVCG ns expiry
 * token first orders them for their removal after DELRES_KEEP_MS. */
struct delres {
	uint64_t expiry;
	uint32_t n;
	uint8_t st[DELETE_PER_TXN];
};

static int del_encode(struct buf *b, const struct delres *d)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, MAGIC_DEL);
	wire_put_u64(&w, d->expiry);
	wire_put_u32(&w, d->n);
	for (uint32_t i = 0; i < d->n; i++)
		wire_put_u8(&w, d->st[i]);
	return rec_finish(b, &w);
}

static int del_decode(struct kv_slice v, struct delres *d)
{
	struct wire_reader r;
	int rc = rec_open(&r, v, MAGIC_DEL);
	if (rc)
		return rc;
	wire_get_u64(&r, &d->expiry);
	wire_get_u32(&r, &d->n);
	if (r.err || d->n > DELETE_PER_TXN)
		return -CFS_ECORRUPT;
	for (uint32_t i = 0; i < d->n; i++)
		wire_get_u8(&r, &d->st[i]);
	for (uint32_t i = 0; !r.err && i < d->n; i++)
		if (d->st[i] != KVC_ST_OK && d->st[i] != KVC_ST_ABSENT)
			return -CFS_ECORRUPT;
	return r.err ? -CFS_ECORRUPT : 0;
}

/* The namespace record reuses the message codec's namespace fields; its
 * token field holds the token of the NS_CREATE that made it (0: none), so
 * a resend of that create is told apart from another create. */
static int ns_encode(struct buf *b, const struct kvc_ns *ns, uint64_t token)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, MAGIC_NS);
	struct kvc_msg m = { .type = META_RPC_KVC_NS_GET, .ns = *ns, .token = token };
	if (kvc_msg_encode(b, &m))
		return -ENOMEM;
	return rec_finish(b, &w);
}

/* The message-codec part of a namespace record or tombstone, the rest of
 * R. TOKEN (may be NULL) gets the message's token. */
static int ns_msg_decode(struct wire_reader *r, struct kvc_ns *ns, uint64_t *token)
{
	struct kvc_msg *m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	int rc = kvc_msg_decode(r->p, wire_left(r), m);
	if (rc == 0)
		*ns = m->ns;
	if (rc == 0 && token)
		*token = m->token;
	kvc_msg_fini(m);
	free(m);
	return rc == -ENOMEM ? rc : rc ? -CFS_ECORRUPT : 0;
}

/* TOKEN (may be NULL) gets the creating call's token. */
static int ns_decode(struct kv_slice v, struct kvc_ns *ns, uint64_t *token)
{
	struct wire_reader r;
	int rc = rec_open(&r, v, MAGIC_NS);
	return rc ? rc : ns_msg_decode(&r, ns, token);
}

/* Tombstone of one NS_DELETE with a token (KVCZ 0 token name): the
 * namespace it deleted, so a resend of the call answers that instead of
 * -ENOENT, and deletes nothing (not a namespace of the name made since).
 * Layout: magic u32, expiry u64 (ms), the namespace in the message codec
 * (as in the namespace record), crc32c u32. KVCY 0 expiry token name
 * orders them for their removal after NSDEL_KEEP_MS. */
static int tomb_encode(struct buf *b, uint64_t expiry, const struct kvc_ns *ns)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, MAGIC_TOMB);
	wire_put_u64(&w, expiry);
	struct kvc_msg m = { .type = META_RPC_KVC_NS_GET, .ns = *ns };
	if (w.err || kvc_msg_encode(b, &m))
		return -ENOMEM;
	return rec_finish(b, &w);
}

static int tomb_decode(struct kv_slice v, uint64_t *expiry, struct kvc_ns *ns)
{
	struct wire_reader r;
	int rc = rec_open(&r, v, MAGIC_TOMB);
	if (rc)
		return rc;
	wire_get_u64(&r, expiry);
	return r.err ? -CFS_ECORRUPT : ns_msg_decode(&r, ns, NULL);
}

/* ---- shared txn steps ---- */

struct op {
	const struct kvc_msg *req;
	struct kvc_msg *resp;
	struct kvc_ns ns;
	uint32_t from, to; /* item range of this txn (a txn fn may lower to) */
	uint64_t now;
	int64_t cnt[NCNT]; /* counter deltas of this txn attempt (txn_flush) */
	/* Reservations with a token this txn attempt ended: their token
	 * records are updated once per record at its end (txn_flush). */
	struct {
		uint64_t token, slot;
		uint32_t group;
	} drops[DROPS_MAX];
	int ndrops;
	uint32_t freed;    /* reclaim passes: how many slots this txn freed */
	uint32_t *touch;   /* LOOKUP: indexes of the hits due a recency write */
	uint64_t rng;      /* splitmix64 state, seeded once per call (op_rnd) */
	char *err;
	size_t errlen;
};

/* Random numbers of a call: versions, namespace ids, counter shards, where
 * a free-set scan starts. A splitmix64 stream from one getrandom seed per
 * call: the getrandom syscall per number was 6.7% of meta's CPU during
 * puts into a full namespace. Distinct within a call, and as unlikely to
 * meet another call's as independent random numbers. */
static uint64_t op_rnd(struct op *o) { return meta_splitmix64(&o->rng); }

static int load_ns(kv_txn *t, uint64_t id, struct kvc_ns *ns)
{
	struct key k;
	struct kv_slice v;
	mk(&k, "KVCI", id, 0, 0, 0, NULL, 0);
	int rc = kv_get(t, ks(&k), 0, &v);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return -ENOENT;
	return ns_decode(v, ns, NULL);
}

static int count_add(kv_txn *t, uint64_t ns, int kind, int64_t d, uint64_t rnd)
{
	struct key k;
	uint8_t tail[2] = { (uint8_t)kind, (uint8_t)(rnd % SHARDS) };
	mk(&k, "KVCC", ns, 0, 0, 0, tail, 2);
	return kv_atomic_add(t, ks(&k), d);
}

/* Counter changes are summed per txn attempt and written once at its end
 * (txn_flush): one atomic add per kind instead of one per key keeps a
 * batch's txn under the write limit; so are token record updates. A txn
 * fn that changes either calls txn_begin first (kv_run may run it again
 * after a conflict) and txn_flush last. */
static void txn_begin(struct op *o)
{
	memset(o->cnt, 0, sizeof(o->cnt));
	o->ndrops = 0;
}

static void cnt(struct op *o, int kind, int64_t d)
{
	for (int i = 0; i < NCNT; i++)
		if (CNT_KINDS[i] == kind)
			o->cnt[i] += d;
}

/* KVCW ns second: evictions in that second (kv_atomic_add), the window
 * stats sums for evict_recent. Buckets older than RATE_KEEP_S go in the
 * same txn, so the set stays small. */
static int rate_add(kv_txn *t, uint64_t ns, uint64_t now_ms_, int64_t n)
{
	struct key k, b;
	uint64_t sec = now_ms_ / 1000;
	mk(&k, "KVCW", ns, 1, sec, 0, NULL, 0);
	int rc = kv_atomic_add(t, ks(&k), n);
	if (rc || sec <= RATE_KEEP_S)
		return rc;
	mk(&b, "KVCW", ns, 0, 0, 0, NULL, 0);
	mk(&k, "KVCW", ns, 1, sec - RATE_KEEP_S, 0, NULL, 0);
	return kv_clear_range(t, ks(&b), ks(&k));
}

static int count_write(kv_txn *t, struct op *o)
{
	for (int i = 0; i < NCNT; i++) {
		if (!o->cnt[i])
			continue;
		int rc = count_add(t, o->ns.id, CNT_KINDS[i], o->cnt[i], op_rnd(o));
		if (!rc && CNT_KINDS[i] == CNT_EVICT && o->cnt[i] > 0)
			rc = rate_add(t, o->ns.id, o->now, o->cnt[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* Sum of the kv_atomic_add values (int64 LE) of R, 0 if negative. */
static uint64_t sum_counters(const struct kv_range *r)
{
	int64_t s = 0;
	for (int i = 0; i < r->n; i++) {
		int64_t v = 0;
		for (size_t j = 0; j < r->kvs[i].val.n && j < 8; j++)
			v |= (int64_t)((uint64_t)((const uint8_t *)r->kvs[i].val.p)[j] << (8 * j));
		s += v;
	}
	return s < 0 ? 0 : (uint64_t)s;
}

static int count_get(kv_txn *t, uint64_t ns, int kind, uint64_t *out)
{
	struct key b, e;
	uint8_t tb[1] = { (uint8_t)kind }, te[1] = { (uint8_t)(kind + 1) };
	struct kv_range r;
	mk(&b, "KVCC", ns, 0, 0, 0, tb, 1);
	mk(&e, "KVCC", ns, 0, 0, 0, te, 1);
	int rc = kv_get_range(t, ks(&b), ks(&e), 0, 1, 0, &r);
	if (rc)
		return rc;
	*out = sum_counters(&r);
	return 0;
}

static int free_slot(kv_txn *t, uint64_t ns, uint64_t slot)
{
	struct key k;
	mk(&k, "KVCF", ns, 1, slot, 0, NULL, 0);
	return kv_set(t, ks(&k), kv_mem("", 0));
}

/* The token record of a RESERVE txn: KVCO ns token group (struct tokrec). */
static void mk_tok(struct key *k, uint64_t ns, uint64_t token, uint32_t group)
{
	mk(k, "KVCO", ns, 2, token, group, NULL, 0);
}

/* Reads the token record of (TOKEN, GROUP) into R: 1, 0 when absent, <0. */
static int tok_get(kv_txn *t, uint64_t ns, uint64_t token, uint32_t group, struct tokrec *r)
{
	struct key k;
	struct kv_slice v;
	mk_tok(&k, ns, token, group);
	int rc = kv_get(t, ks(&k), 0, &v);
	if (rc <= 0)
		return rc;
	rc = tok_decode(v, r);
	return rc ? rc : 1;
}

/* Writes R as the token record of (TOKEN, GROUP), or clears it when R
 * lists nothing. */
static int tok_put(kv_txn *t, uint64_t ns, uint64_t token, uint32_t group,
		   const struct tokrec *r)
{
	struct key k;
	mk_tok(&k, ns, token, group);
	if (!r->n)
		return kv_clear(t, ks(&k));
	struct buf b = BUF_INIT;
	int rc = tok_encode(&b, r);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

/* The KVCE value: the reservation's token and group (12 bytes), or empty
 * for a reservation without a token, so the reclaim passes, which read
 * only the expiry index, find the token record too. */
static void tok_of_expiry(struct kv_slice v, uint64_t *token, uint32_t *group)
{
	*token = v.n == 12 ? wire_load_u64(v.p) : 0;
	*group = v.n == 12 ? wire_load_u32((const uint8_t *)v.p + 8) : 0;
}

/* Drops the reservation of SLOT (its record and expiry index entry). Its
 * token record (TOKEN, GROUP) loses the slot at the txn's end (txn_flush),
 * once per record however many of its slots the txn drops. */
static int drop_resv(kv_txn *t, struct op *o, uint64_t slot, uint64_t expiry, uint64_t token,
		     uint32_t group)
{
	struct key k;
	uint64_t ns = o->ns.id;
	mk(&k, "KVCR", ns, 1, slot, 0, NULL, 0);
	int rc = kv_clear(t, ks(&k));
	mk(&k, "KVCE", ns, 2, expiry, slot, NULL, 0);
	if (!rc)
		rc = kv_clear(t, ks(&k));
	if (rc || !token)
		return rc;
	ASSERT(o->ndrops < DROPS_MAX);
	o->drops[o->ndrops].token = token;
	o->drops[o->ndrops].group = group;
	o->drops[o->ndrops].slot = slot;
	o->ndrops++;
	return 0;
}

/* Takes the slots this txn dropped out of their token records: one read
 * and one write (update, or clear when none is left) per record. */
static int tok_flush(kv_txn *t, struct op *o)
{
	for (int i = 0; i < o->ndrops; i++) {
		int seen = 0;
		for (int j = 0; j < i && !seen; j++)
			seen = o->drops[j].token == o->drops[i].token &&
			       o->drops[j].group == o->drops[i].group;
		if (seen)
			continue;
		struct tokrec r;
		int rc = tok_get(t, o->ns.id, o->drops[i].token, o->drops[i].group, &r);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		uint32_t n = 0;
		for (uint32_t e = 0; e < r.n; e++) {
			int gone = 0;
			for (int j = i; j < o->ndrops && !gone; j++)
				gone = o->drops[j].token == o->drops[i].token &&
				       o->drops[j].group == o->drops[i].group &&
				       o->drops[j].slot == r.slot[e];
			if (!gone) {
				r.idx[n] = r.idx[e];
				r.slot[n++] = r.slot[e];
			}
		}
		if (n == r.n && n)
			continue;
		r.n = n;
		if ((rc = tok_put(t, o->ns.id, o->drops[i].token, o->drops[i].group, &r)))
			return rc;
	}
	return 0;
}

/* The deferred writes of a txn attempt (txn_begin): token records, then
 * counters. */
static int txn_flush(kv_txn *t, struct op *o)
{
	int rc = tok_flush(t, o);
	return rc ? rc : count_write(t, o);
}

/* Writes reservation X of SLOT with its expiry index entry (whose value
 * names the token record, if any; the caller writes that record). */
static int put_resv(kv_txn *t, uint64_t ns, uint64_t slot, const struct resv *x)
{
	struct buf b = BUF_INIT;
	struct key k;
	uint8_t ev[12];
	int rc = res_encode(&b, x);
	mk(&k, "KVCR", ns, 1, slot, 0, NULL, 0);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem(b.data, b.len));
	buf_fini(&b);
	wire_store_u64(ev, x->token);
	wire_store_u32(ev + 8, x->group);
	mk(&k, "KVCE", ns, 2, x->expiry, slot, NULL, 0);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem(ev, x->token ? 12 : 0));
	return rc;
}

static int get_entry(kv_txn *t, uint64_t ns, const struct kvc_item *it, int snapshot,
		     struct entry *e)
{
	struct key k;
	struct kv_slice v;
	mk(&k, "KVCK", ns, 0, 0, 0, it->key, it->key_len);
	int rc = kv_get(t, ks(&k), snapshot, &v);
	if (rc <= 0)
		return rc;
	rc = ent_decode(v, e);
	return rc ? rc : 1;
}

static int put_entry(kv_txn *t, uint64_t ns, const struct kvc_item *it, const struct entry *e)
{
	struct key k;
	struct buf b = BUF_INIT;
	int rc = ent_encode(&b, e);
	mk(&k, "KVCK", ns, 0, 0, 0, it->key, it->key_len);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem(b.data, b.len));
	buf_fini(&b);
	mk(&k, "KVCL", ns, 2, e->last_used, e->slot, NULL, 0);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem(it->key, it->key_len));
	if (rc || !e->expiry)
		return rc;
	mk(&k, "KVCT", ns, 2, e->expiry, e->slot, NULL, 0);
	return kv_set(t, ks(&k), kv_mem(it->key, it->key_len));
}

static int del_entry(kv_txn *t, uint64_t ns, const struct kvc_item *it, const struct entry *e)
{
	struct key k;
	mk(&k, "KVCK", ns, 0, 0, 0, it->key, it->key_len);
	int rc = kv_clear(t, ks(&k));
	mk(&k, "KVCL", ns, 2, e->last_used, e->slot, NULL, 0);
	if (!rc)
		rc = kv_clear(t, ks(&k));
	if (rc || !e->expiry)
		return rc;
	mk(&k, "KVCT", ns, 2, e->expiry, e->slot, NULL, 0);
	return kv_clear(t, ks(&k));
}

static int expired(const struct entry *e, uint64_t now) { return e->expiry && e->expiry <= now; }

/* Removes the entry of KEY (KEY_LEN bytes) named by an index record
 * IDX_KEY (LRU: last_used WHEN and SLOT; TTL (BY_TTL): expiry WHEN and
 * SLOT): 1 when the entry matched and is gone (SLOT is the caller's), 0
 * when the record was stale (only the record is dropped), <0 on error. */
static int take_entry(kv_txn *t, uint64_t ns, const void *key, uint32_t key_len, uint64_t slot,
		      uint64_t when, int by_ttl, struct kv_slice idx_key)
{
	struct kvc_item it = { .key = key, .key_len = key_len };
	struct entry e;
	int rc = get_entry(t, ns, &it, 0, &e);
	if (rc < 0)
		return rc;
	if (rc == 0 || e.slot != slot || (by_ttl ? e.expiry : e.last_used) != when)
		return kv_clear(t, idx_key);
	rc = del_entry(t, ns, &it, &e);
	return rc ? rc : 1;
}

/* Reads up to LIMIT expiry index records PFX of namespace NS (KVCE:
 * reservations, KVCT: entries) whose time is below UNTIL, into R. */
static int get_expiring(kv_txn *t, const char pfx[4], uint64_t ns, uint64_t until, int limit,
			struct kv_range *r)
{
	struct key b, e;
	mk(&b, pfx, ns, 0, 0, 0, NULL, 0);
	mk(&e, pfx, ns, 1, until, 0, NULL, 0);
	return kv_get_range(t, ks(&b), ks(&e), limit, 0, 0, r);
}

/* Drops the reservation that the expiry record KV (KVCE) lists; its slot
 * in *SLOT. 0 or <0. */
static int drop_listed_resv(kv_txn *t, struct op *o, const struct kv_pair *kv, uint64_t *slot)
{
	if (kv->key.n != 28)
		return -CFS_ECORRUPT;
	const uint8_t *kp = kv->key.p;
	uint64_t tok;
	uint32_t grp;
	*slot = get_be64(kp + 20);
	tok_of_expiry(kv->val, &tok, &grp);
	return drop_resv(t, o, *slot, get_be64(kp + 12), tok, grp);
}

/* take_entry for the entry that the index record KV (KVCT when BY_TTL,
 * else KVCL) lists; its slot in *SLOT. */
static int take_listed_entry(kv_txn *t, uint64_t ns, const struct kv_pair *kv, int by_ttl,
			     uint64_t *slot)
{
	if (kv->key.n != 28 || kv->val.n < 1 || kv->val.n > KVC_KEY_MAX)
		return -CFS_ECORRUPT;
	const uint8_t *kp = kv->key.p;
	*slot = get_be64(kp + 20);
	return take_entry(t, ns, kv->val.p, (uint32_t)kv->val.n, *slot, get_be64(kp + 12), by_ttl,
			  kv->key);
}

/* Takes the entries that the index records of R list (KVCT when BY_TTL:
 * expired, else KVCL: evicted) and appends their slots to SLOTS at *GOT.
 * 0 or <0. */
static int take_listed_entries(kv_txn *t, struct op *o, const struct kv_range *r, int by_ttl,
			       uint64_t *slots, int *got)
{
	for (int i = 0; i < r->n; i++) {
		uint64_t slot;
		int rc = take_listed_entry(t, o->ns.id, &r->kvs[i], by_ttl, &slot);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			cnt(o, CNT_USED, -1);
			cnt(o, by_ttl ? CNT_EXPIRE : CNT_EVICT, 1);
			slots[(*got)++] = slot;
		}
	}
	return 0;
}

/* ---- operations ---- */


static int valid_name(const uint8_t *p, uint32_t n)
{
	if (n < 1 || n > KVC_NAME_MAX)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (!(p[i] >= 'a' && p[i] <= 'z') && !(p[i] >= 'A' && p[i] <= 'Z') &&
		    !(p[i] >= '0' && p[i] <= '9') && p[i] != '-' && p[i] != '_' && p[i] != '.')
			return 0;
	return 1;
}

/* The parameters a create sets (not its id and time). */
static int ns_same(const struct kvc_ns *a, const struct kvc_ns *b)
{
	if (a->page_size != b->page_size || a->nslots != b->nslots || a->nslabs != b->nslabs ||
	    a->slots_per_slab != b->slots_per_slab || a->touch_ms != b->touch_ms ||
	    a->lease_ms != b->lease_ms || a->ttl_ms != b->ttl_ms ||
	    a->durability != b->durability || strcmp(a->dir, b->dir))
		return 0;
	for (uint32_t i = 0; i < a->nslabs && i < KVC_SLABS_MAX; i++)
		if (a->slab_ino[i] != b->slab_ino[i])
			return 0;
	return 1;
}

/* Creates the namespace. An existing one is -EEXIST unless it was made by
 * this very call (a resend: same token, same parameters), which answers
 * the namespace as the first attempt did. */
static int ns_create_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	struct key k;
	struct kv_slice v;
	uint8_t idb[8];
	mk(&k, "KVCN", 0, 0, 0, 0, o->req->name, o->req->name_len);
	int rc = kv_get(t, ks(&k), 0, &v);
	if (rc < 0)
		return rc;
	if (rc > 0) {
		struct kvc_ns *had = malloc(sizeof(*had));
		uint64_t tok = 0;
		if (!had)
			return -ENOMEM;
		mk(&k, "KVCI", v.n == 8 ? wire_load_u64(v.p) : 0, 0, 0, 0, NULL, 0);
		rc = v.n == 8 ? kv_get(t, ks(&k), 0, &v) : -CFS_ECORRUPT;
		if (rc > 0)
			rc = ns_decode(v, had, &tok);
		else if (rc == 0)
			rc = -CFS_ECORRUPT;
		if (!rc)
			rc = o->req->token && tok == o->req->token && ns_same(had, &o->ns) ? 0
											: -EEXIST;
		if (!rc)
			o->ns = *had;
		free(had);
		return rc;
	}
	o->ns.id = op_rnd(o) >> 1 | 1; /* never 0, never UINT64_MAX */
	o->ns.created = (int64_t)clock_wall_ns();
	wire_store_u64(idb, o->ns.id);
	rc = kv_set(t, ks(&k), kv_mem(idb, 8));
	struct buf b = BUF_INIT;
	if (!rc)
		rc = ns_encode(&b, &o->ns, o->req->token);
	mk(&k, "KVCI", o->ns.id, 0, 0, 0, NULL, 0);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

static int ns_find(kv_txn *t, const uint8_t *name, uint32_t n, struct kvc_ns *ns)
{
	struct key k;
	struct kv_slice v;
	mk(&k, "KVCN", 0, 0, 0, 0, name, n);
	int rc = kv_get(t, ks(&k), 0, &v);
	if (rc < 0)
		return rc;
	if (rc == 0 || v.n != 8)
		return rc == 0 ? -ENOENT : -CFS_ECORRUPT;
	return load_ns(t, wire_load_u64(v.p), ns);
}

static int ns_get_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	return ns_find(t, o->req->name, o->req->name_len, &o->ns);
}

static int clear_all(kv_txn *t, uint64_t ns, int keep_counters)
{
	static const char *const pf[] = { "KVCK", "KVCL", "KVCF", "KVCR", "KVCE",
					  "KVCT", "KVCO", "KVCD", "KVCG" };
	struct key b, e;
	int rc = 0;
	for (size_t i = 0; i < sizeof(pf) / sizeof(pf[0]) && !rc; i++) {
		mk_range(&b, &e, pf[i], ns);
		rc = kv_clear_range(t, ks(&b), ks(&e));
	}
	if (!rc && keep_counters) {
		uint8_t tb[1] = { CNT_USED }, te[1] = { CNT_USED + 1 };
		mk(&b, "KVCC", ns, 0, 0, 0, tb, 1);
		mk(&e, "KVCC", ns, 0, 0, 0, te, 1);
		rc = kv_clear_range(t, ks(&b), ks(&e));
	} else if (!rc) {
		mk_range(&b, &e, "KVCC", ns);
		rc = kv_clear_range(t, ks(&b), ks(&e));
		mk_range(&b, &e, "KVCW", ns);
		if (!rc)
			rc = kv_clear_range(t, ks(&b), ks(&e));
	}
	mk_range(&b, &e, "KVCH", ns);
	return rc ? rc : kv_clear_range(t, ks(&b), ks(&e));
}

static void mk_tomb(struct key *k, uint64_t token, const void *name, uint32_t n)
{
	mk(k, "KVCZ", 0, 1, token, 0, name, n);
}

/* Writes this NS_DELETE's tombstone (with its expiry index entry) and
 * drops up to NSDEL_GC_PER_TXN tombstones past their time, read with a
 * snapshot read as delres_write does (two deleters dropping the same one
 * do not conflict). */
static int tomb_write(kv_txn *t, struct op *o)
{
	uint64_t expiry = o->now + NSDEL_KEEP_MS;
	struct buf b = BUF_INIT;
	struct key k, e;
	struct kv_range r;
	int rc = tomb_encode(&b, expiry, &o->ns);
	mk_tomb(&k, o->req->token, o->req->name, o->req->name_len);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem(b.data, b.len));
	buf_fini(&b);
	mk(&k, "KVCY", 0, 2, expiry, o->req->token, o->req->name, o->req->name_len);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem("", 0));
	mk(&k, "KVCY", 0, 0, 0, 0, NULL, 0);
	mk(&e, "KVCY", 0, 1, o->now, 0, NULL, 0);
	if (!rc)
		rc = kv_get_range(t, ks(&k), ks(&e), NSDEL_GC_PER_TXN, 1, 0, &r);
	for (int i = 0; !rc && i < r.n; i++) {
		const uint8_t *kp = r.kvs[i].key.p;
		uint32_t kn = r.kvs[i].key.n;
		if (kn < 29 || kn > 28 + KVC_NAME_MAX)
			return -CFS_ECORRUPT;
		mk_tomb(&e, get_be64(kp + 20), kp + 28, kn - 28);
		if (!(rc = kv_clear(t, r.kvs[i].key)))
			rc = kv_clear(t, ks(&e));
	}
	return rc;
}

/* Deletes the namespace and everything of it. With a token (the call's,
 * the same in every attempt) a tombstone keeps what the delete answered
 * for NSDEL_KEEP_MS: a resend finds it first and answers the same
 * namespace without running again, so it neither reports -ENOENT nor
 * deletes a namespace of the name created since. A delete with no token
 * or another one goes the usual way. */
static int ns_delete_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	struct key k;
	struct kv_slice v;
	int rc;
	if (o->req->token) {
		uint64_t expiry = 0;
		mk_tomb(&k, o->req->token, o->req->name, o->req->name_len);
		int found = rc = kv_get(t, ks(&k), 0, &v);
		if (rc < 0 || (found && (rc = tomb_decode(v, &expiry, &o->ns))))
			return rc;
		if (found && expiry > o->now)
			return 0;
	}
	rc = ns_find(t, o->req->name, o->req->name_len, &o->ns);
	if (rc)
		return rc;
	rc = clear_all(t, o->ns.id, 0);
	mk(&k, "KVCI", o->ns.id, 0, 0, 0, NULL, 0);
	if (!rc)
		rc = kv_clear(t, ks(&k));
	mk(&k, "KVCN", 0, 0, 0, 0, o->req->name, o->req->name_len);
	if (!rc)
		rc = kv_clear(t, ks(&k));
	return rc || !o->req->token ? rc : tomb_write(t, o);
}

static int ns_load_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	return load_ns(t, o->req->ns_id, &o->ns);
}

static int clear_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	int rc = load_ns(t, o->req->ns_id, &o->ns);
	return rc ? rc : clear_all(t, o->ns.id, 1);
}

/* The namespace record and every entry of [from, to) in one multi-key
 * read (kv_get_multi): on etcd one round trip instead of one per key. */
static int lookup_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	uint32_t n = o->to - o->from;
	struct key *k = malloc(sizeof(*k) * ((size_t)n + 1));
	struct kv_slice *keys = malloc(sizeof(*keys) * 2 * ((size_t)n + 1));
	int *found = malloc(sizeof(int) * ((size_t)n + 1));
	int rc = k && keys && found ? 0 : -ENOMEM;
	struct kv_slice *vals = keys ? keys + n + 1 : NULL;
	if (!rc) {
		mk(&k[0], "KVCI", o->req->ns_id, 0, 0, 0, NULL, 0);
		keys[0] = ks(&k[0]);
		for (uint32_t j = 0; j < n; j++) {
			const struct kvc_item *q = &o->req->items[o->from + j];
			mk(&k[j + 1], "KVCK", o->req->ns_id, 0, 0, 0, q->key, q->key_len);
			keys[j + 1] = ks(&k[j + 1]);
		}
		rc = kv_get_multi(t, (int)n + 1, keys, 1, vals, found);
	}
	if (!rc)
		rc = found[0] ? ns_decode(vals[0], &o->ns, NULL) : -ENOENT;
	for (uint32_t j = 0; !rc && j < n; j++) {
		struct kvc_item *it = &o->resp->items[o->from + j];
		struct entry e;
		*it = (struct kvc_item){ .status = KVC_ST_ABSENT };
		if (!found[j + 1])
			continue;
		if ((rc = ent_decode(vals[j + 1], &e)))
			break;
		if (!expired(&e, o->now))
			*it = (struct kvc_item){ .status = KVC_ST_OK, .slot = e.slot,
						 .version = e.version, .len = e.len, .crc = e.crc,
						 .last_used = e.last_used };
	}
	free(k);
	free(keys);
	free(found);
	return rc;
}

/* Moves each hit of [from, to) of o->touch (the hits the lookup found
 * older than touch_ms) still at the version looked up to now in the LRU
 * index: the entry is rewritten and its LRU record moved (3 writes; the
 * TTL record does not change). */
static int touch_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	struct key ek[TOUCH_PER_TXN];
	struct kv_slice keys[TOUCH_PER_TXN] = { { 0 } }, vals[TOUCH_PER_TXN];
	int found[TOUCH_PER_TXN], n = (int)(o->to - o->from);
	/* The entries in one multi-key read (etcd: one round trip, not one
	 * per key). */
	for (int j = 0; j < n; j++) {
		const struct kvc_item *q = &o->req->items[o->touch[o->from + (uint32_t)j]];
		mk(&ek[j], "KVCK", o->ns.id, 0, 0, 0, q->key, q->key_len);
		keys[j] = ks(&ek[j]);
	}
	int rc = kv_get_multi(t, n, keys, 0, vals, found);
	if (rc)
		return rc;
	for (int j = 0; j < n; j++) {
		uint32_t i = o->touch[o->from + (uint32_t)j];
		const struct kvc_item *q = &o->req->items[i], *h = &o->resp->items[i];
		struct entry e;
		struct key k;
		if (!found[j])
			continue;
		if ((rc = ent_decode(vals[j], &e)))
			return rc;
		if (e.version != h->version || e.last_used >= o->now)
			continue;
		mk(&k, "KVCL", o->ns.id, 2, e.last_used, e.slot, NULL, 0);
		if ((rc = kv_clear(t, ks(&k))))
			return rc;
		e.last_used = o->now;
		struct buf b = BUF_INIT;
		rc = ent_encode(&b, &e);
		mk(&k, "KVCK", o->ns.id, 0, 0, 0, q->key, q->key_len);
		if (!rc)
			rc = kv_set(t, ks(&k), kv_mem(b.data, b.len));
		buf_fini(&b);
		mk(&k, "KVCL", o->ns.id, 2, e.last_used, e.slot, NULL, 0);
		if (!rc)
			rc = kv_set(t, ks(&k), kv_mem(q->key, q->key_len));
		if (rc)
			return rc;
	}
	return 0;
}

/* Takes up to WANT slots for reservations: expired reservations first (a
 * dead writer's), then entries past their TTL, then the free set (from a
 * random point, so concurrent writers rarely read the same free key),
 * then never-used slots, then the least recently used entries (evicted).
 * Returns how many it put in SLOTS, or <0. */
static int take_slots(kv_txn *t, struct op *o, uint64_t *slots, int want)
{
	uint64_t ns = o->ns.id;
	struct key b, e;
	struct kv_range r;
	int got = 0, rc;

	/* 1. expired reservations (a killed writer's slots) */
	rc = get_expiring(t, "KVCE", ns, o->now, want, &r);
	if (rc)
		return rc;
	for (int i = 0; i < r.n && got < want; i++) {
		uint64_t slot;
		if ((rc = drop_listed_resv(t, o, &r.kvs[i], &slot)))
			return rc;
		cnt(o, CNT_RECLAIM, 1);
		slots[got++] = slot;
	}
	/* 2. entries past their TTL */
	if (got < want) {
		rc = get_expiring(t, "KVCT", ns, o->now + 1, want - got, &r);
		if (rc)
			return rc;
		if ((rc = take_listed_entries(t, o, &r, 1, slots, &got)))
			return rc;
	}
	/* 3. free set */
	uint64_t start = op_rnd(o) % o->ns.nslots;
	for (int pass = 0; pass < 2 && got < want; pass++) {
		if (pass == 0) {
			mk(&b, "KVCF", ns, 1, start, 0, NULL, 0);
			mk(&e, "KVCF", ns + 1, 0, 0, 0, NULL, 0);
		} else {
			mk(&b, "KVCF", ns, 0, 0, 0, NULL, 0);
			mk(&e, "KVCF", ns, 1, start, 0, NULL, 0);
		}
		rc = kv_get_range(t, ks(&b), ks(&e), want - got, 0, 0, &r);
		if (rc)
			return rc;
		for (int i = 0; i < r.n; i++) {
			if (r.kvs[i].key.n != 20)
				return -CFS_ECORRUPT;
			slots[got++] = get_be64((const uint8_t *)r.kvs[i].key.p + 12);
			if ((rc = kv_clear(t, r.kvs[i].key)))
				return rc;
		}
		if (pass == 0 && start == 0)
			break;
	}
	/* 4. never-used slots: HWM_SHARDS counters, shard h hands out slots
	 * h, h + S, h + 2S, ... so concurrent writers filling a fresh
	 * namespace rarely touch the same counter (one hot key made every
	 * reserve conflict). Full shards are seen with snapshot reads; the
	 * shard taken from is read again with a conflict. */
	if (got < want) {
		unsigned h0 = (unsigned)(op_rnd(o) % HWM_SHARDS);
		for (unsigned j = 0; j < HWM_SHARDS && got < want; j++) {
			uint8_t sh = (uint8_t)((h0 + j) % HWM_SHARDS), hb[8];
			uint64_t cap = o->ns.nslots > sh ? (o->ns.nslots - sh + HWM_SHARDS - 1) / HWM_SHARDS : 0;
			struct kv_slice v;
			uint64_t next = 0;
			mk(&b, "KVCH", ns, 0, 0, 0, &sh, 1);
			rc = kv_get(t, ks(&b), 1, &v);
			if (rc < 0)
				return rc;
			if (rc && v.n == 8)
				next = wire_load_u64(v.p);
			if (next >= cap)
				continue;
			if ((rc = kv_get(t, ks(&b), 0, &v)) < 0)
				return rc;
			next = rc && v.n == 8 ? wire_load_u64(v.p) : 0;
			uint64_t n0 = next;
			while (got < want && next < cap)
				slots[got++] = next++ * HWM_SHARDS + sh;
			if (next != n0) {
				wire_store_u64(hb, next);
				if ((rc = kv_set(t, ks(&b), kv_mem(hb, 8))))
					return rc;
			}
		}
	}
	/* 5. evict the least recently used */
	if (got < want) {
		mk_range(&b, &e, "KVCL", ns);
		rc = kv_get_range(t, ks(&b), ks(&e), want - got, 0, 0, &r);
		if (rc)
			return rc;
		if ((rc = take_listed_entries(t, o, &r, 0, slots, &got)))
			return rc;
	}
	return got;
}

/* Reads the reservation of SLOT; 1 when it is there with VERSION. */
static int my_resv(kv_txn *t, uint64_t ns, uint64_t slot, uint64_t version, struct resv *x)
{
	struct key k;
	struct kv_slice v;
	mk(&k, "KVCR", ns, 1, slot, 0, NULL, 0);
	int rc = kv_get(t, ks(&k), 0, &v);
	if (rc <= 0)
		return rc;
	rc = res_decode(v, x);
	return rc ? rc : x->version == version;
}

/* Reserves a slot for each key of [from, to) without a live entry. The
 * group's entries, and with a token the group's token record, are one
 * multi-key read (etcd: one round trip). A token record is there when a
 * RESERVE of this put already ran this group (a resend): each key it
 * lists whose reservation still names this put gets that slot and
 * version again, its lease renewed, and nothing new is taken for it.
 * The group's token record then lists every reservation the put holds in
 * the group: one write per txn, where it was one record per key. */
static int reserve_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	uint32_t need[RESERVE_PER_TXN];
	uint64_t slots[RESERVE_PER_TXN];
	struct key k[RESERVE_PER_TXN + 1];
	struct kv_slice keys[RESERVE_PER_TXN + 1], vals[RESERVE_PER_TXN + 1];
	int found[RESERVE_PER_TXN + 1], done[RESERVE_PER_TXN] = { 0 };
	uint64_t token = o->req->token;
	uint32_t n = o->to - o->from;
	struct tokrec old = { 0 }, now = { 0 };
	int m = 0, had = 0, rc = load_ns(t, o->req->ns_id, &o->ns);
	if (rc)
		return rc;
	txn_begin(o);
	uint32_t lease = o->req->lease_ms ? o->req->lease_ms : o->ns.lease_ms;
	for (uint32_t j = 0; j < n; j++) {
		const struct kvc_item *q = &o->req->items[o->from + j];
		mk(&k[j], "KVCK", o->ns.id, 0, 0, 0, q->key, q->key_len);
		keys[j] = ks(&k[j]);
	}
	if (token) {
		mk_tok(&k[n], o->ns.id, token, o->from);
		keys[n] = ks(&k[n]);
	}
	if ((rc = kv_get_multi(t, (int)n + (token ? 1 : 0), keys, 0, vals, found)))
		return rc;
	if (token && found[n]) {
		if ((rc = tok_decode(vals[n], &old)))
			return rc;
		had = 1;
	}
	for (uint32_t e = 0; e < old.n; e++) {
		uint32_t i = old.idx[e];
		uint64_t slot = old.slot[e];
		struct resv x;
		struct key ek;
		struct kv_slice rv;
		if (i < o->from || i >= o->to || done[i - o->from] || slot >= o->ns.nslots)
			continue;
		mk(&ek, "KVCR", o->ns.id, 1, slot, 0, NULL, 0);
		if ((rc = kv_get(t, ks(&ek), 0, &rv)) < 0)
			return rc;
		if (rc == 0)
			continue; /* published, released or reclaimed */
		if ((rc = res_decode(rv, &x)))
			return rc;
		if (x.token != token || x.idx != i || x.group != o->from)
			continue; /* reclaimed and taken by another put */
		mk(&ek, "KVCE", o->ns.id, 2, x.expiry, slot, NULL, 0);
		if ((rc = kv_clear(t, ks(&ek))))
			return rc;
		x.expiry = o->now + lease;
		if ((rc = put_resv(t, o->ns.id, slot, &x)))
			return rc;
		o->resp->items[i] = (struct kvc_item){ .status = KVC_ST_OK, .slot = slot,
						       .version = x.version, .len = x.len };
		done[i - o->from] = 1;
		now.idx[now.n] = i;
		now.slot[now.n++] = slot;
	}
	for (uint32_t j = 0; j < n; j++) {
		uint32_t i = o->from + j;
		struct kvc_item *it = &o->resp->items[i];
		struct entry e;
		if (done[j])
			continue;
		if (found[j]) {
			if ((rc = ent_decode(vals[j], &e)))
				return rc;
			if (!expired(&e, o->now)) {
				*it = (struct kvc_item){ .status = KVC_ST_EXISTS, .slot = e.slot,
							 .version = e.version, .len = e.len };
				continue;
			}
		}
		need[m++] = i;
	}
	int got = m ? take_slots(t, o, slots, m) : 0;
	if (got < 0)
		return got;
	for (int j = 0; j < m; j++) {
		struct kvc_item *it = &o->resp->items[need[j]];
		if (j >= got) {
			*it = (struct kvc_item){ .status = -ENOSPC };
			continue;
		}
		struct resv x = { .version = op_rnd(o) | 1, .owner = o->req->owner,
				  .expiry = o->now + lease, .len = o->req->items[need[j]].len,
				  .token = token, .idx = need[j], .group = o->from };
		if ((rc = put_resv(t, o->ns.id, slots[j], &x)))
			return rc;
		*it = (struct kvc_item){ .status = KVC_ST_OK, .slot = slots[j],
					 .version = x.version, .len = x.len };
		now.idx[now.n] = need[j];
		now.slot[now.n++] = slots[j];
	}
	/* The records of reservations taken back go first: this group's own
	 * record, written last, is then the truth whatever they touched. A
	 * resend that found its reservations as they were writes nothing. */
	if ((rc = tok_flush(t, o)))
		return rc;
	int same = had && now.n == old.n;
	for (uint32_t e = 0; same && e < now.n; e++)
		same = now.idx[e] == old.idx[e] && now.slot[e] == old.slot[e];
	for (int d = 0; same && d < o->ndrops; d++)
		same = o->drops[d].token != token || o->drops[d].group != o->from;
	if (token && !same && (now.n || had) &&
	    (rc = tok_put(t, o->ns.id, token, o->from, &now)))
		return rc;
	return count_write(t, o);
}

/* Publishes [from, to), stopping early (o->to lowered) when the next key
 * could pass the txn's write budget (a key replacing an expired entry
 * writes 9, others at most 5). */
static int publish_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	int rc = load_ns(t, o->req->ns_id, &o->ns);
	if (rc)
		return rc;
	txn_begin(o);
	uint32_t ttl = o->req->ttl_ms ? o->req->ttl_ms : o->ns.ttl_ms, writes = 0;
	/* The group's entries and reservations in one multi-key read (etcd:
	 * one round trip, not two per key). An item whose key or slot an
	 * earlier item of the group has (its writes may have changed them)
	 * reads them again one by one, after those writes. */
	struct key k[2 * PUBLISH_PER_TXN];
	struct kv_slice keys[2 * PUBLISH_PER_TXN] = { { 0 } }, vals[2 * PUBLISH_PER_TXN];
	int got[2 * PUBLISH_PER_TXN], nk = 0;
	for (uint32_t i = o->from; i < o->to; i++) {
		const struct kvc_item *q = &o->req->items[i];
		mk(&k[nk], "KVCK", o->ns.id, 0, 0, 0, q->key, q->key_len);
		keys[nk] = ks(&k[nk]);
		nk++;
		mk(&k[nk], "KVCR", o->ns.id, 1, q->slot, 0, NULL, 0);
		keys[nk] = ks(&k[nk]);
		nk++;
	}
	if ((rc = kv_get_multi(t, nk, keys, 0, vals, got)))
		return rc;
	for (uint32_t i = o->from; i < o->to; i++) {
		const struct kvc_item *q = &o->req->items[i];
		struct kvc_item *it = &o->resp->items[i];
		struct entry e;
		struct resv x;
		int j = 2 * (int)(i - o->from), mine = 0, again = 0;
		if (writes + 9 > PUBLISH_WRITES) {
			o->to = i;
			break;
		}
		*it = (struct kvc_item){ .slot = q->slot, .version = q->version, .len = q->len };
		for (uint32_t p = o->from; p < i && !again; p++) {
			const struct kvc_item *a = &o->req->items[p];
			again = a->slot == q->slot ||
				(a->key_len == q->key_len && !memcmp(a->key, q->key, q->key_len));
		}
		if (again) {
			rc = get_entry(t, o->ns.id, q, 0, &e);
			if (rc < 0)
				return rc;
			mine = q->slot < o->ns.nslots ? my_resv(t, o->ns.id, q->slot, q->version, &x)
						      : 0;
		} else {
			rc = got[j] ? ent_decode(vals[j], &e) : 0;
			if (rc < 0)
				return rc;
			rc = got[j];
			if (q->slot < o->ns.nslots && got[j + 1]) {
				mine = res_decode(vals[j + 1], &x);
				if (!mine)
					mine = x.version == q->version;
			}
		}
		if (mine < 0)
			return mine;
		int found = rc == 1;
		if (found && e.version == q->version)
			continue; /* a resend of a publish that applied */
		if (found && !expired(&e, o->now)) {
			it->status = KVC_ST_EXISTS;
			if (mine && ((rc = drop_resv(t, o, q->slot, x.expiry, x.token, x.group)) ||
				     (rc = free_slot(t, o->ns.id, q->slot))))
				return rc;
			if (mine)
				cnt(o, CNT_LOST, 1);
			writes += 3;
			continue;
		}
		if (!mine) {
			it->status = -ESTALE; /* lease expired and reclaimed, or cleared */
			continue;
		}
		if (found) {
			/* The old value's time is up: it goes, ours replaces it. */
			if ((rc = del_entry(t, o->ns.id, q, &e)) ||
			    (rc = free_slot(t, o->ns.id, e.slot)))
				return rc;
			writes += 4;
			cnt(o, CNT_USED, -1);
			cnt(o, CNT_EXPIRE, 1);
		}
		e = (struct entry){ .slot = q->slot, .version = q->version, .len = q->len,
				    .crc = q->crc, .last_used = o->now,
				    .expiry = ttl ? o->now + ttl : 0 };
		if ((rc = put_entry(t, o->ns.id, q, &e)) ||
		    (rc = drop_resv(t, o, q->slot, x.expiry, x.token, x.group)))
			return rc;
		writes += 5;
		cnt(o, CNT_USED, 1);
	}
	return txn_flush(t, o);
}

/* Drops the reservations (slot, version) of [from, to) that are still
 * there; SRC holds the items (the request's for RELEASE, the reply's when
 * a failed RESERVE gives back what its earlier txns took). */
static int unreserve(kv_txn *t, struct op *o, const struct kvc_item *src, int only_ok)
{
	int rc = load_ns(t, o->req->ns_id, &o->ns);
	if (rc)
		return rc;
	txn_begin(o);
	for (uint32_t i = o->from; i < o->to; i++) {
		const struct kvc_item *q = &src[i];
		struct resv x;
		if (only_ok && q->status != KVC_ST_OK)
			continue;
		if (!only_ok)
			o->resp->items[i] = (struct kvc_item){ .status = KVC_ST_ABSENT };
		if (q->slot >= o->ns.nslots)
			continue;
		int mine = my_resv(t, o->ns.id, q->slot, q->version, &x);
		if (mine < 0)
			return mine;
		if (mine && ((rc = drop_resv(t, o, q->slot, x.expiry, x.token, x.group)) ||
			     (rc = free_slot(t, o->ns.id, q->slot))))
			return rc;
		if (mine && !only_ok)
			o->resp->items[i].status = KVC_ST_OK;
	}
	return txn_flush(t, o);
}

static int release_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	return unreserve(t, o, o->req->items, 0);
}

static int unreserve_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	return unreserve(t, o, o->resp->items, 1);
}

static void mk_delres(struct key *k, uint64_t ns, uint64_t token, uint32_t first)
{
	mk(k, "KVCD", ns, 2, token, first, NULL, 0);
}

/* Writes the result record of this DELETE txn (with its expiry index
 * entry) and drops up to DELRES_GC_PER_TXN records past their time. The
 * old ones are read with a snapshot read: two deletes dropping the same
 * record do not conflict (a clear of a gone key is harmless). */
static int delres_write(kv_txn *t, struct op *o)
{
	struct delres d = { .expiry = o->now + DELRES_KEEP_MS, .n = o->to - o->from };
	struct buf b = BUF_INIT;
	struct key k, e;
	struct kv_range r;
	uint8_t first[8];
	for (uint32_t i = 0; i < d.n; i++)
		d.st[i] = (uint8_t)o->resp->items[o->from + i].status;
	int rc = del_encode(&b, &d);
	mk_delres(&k, o->ns.id, o->req->token, o->from);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem(b.data, b.len));
	buf_fini(&b);
	put_be64(first, o->from);
	mk(&k, "KVCG", o->ns.id, 2, d.expiry, o->req->token, first, 8);
	if (!rc)
		rc = kv_set(t, ks(&k), kv_mem("", 0));
	mk(&k, "KVCG", o->ns.id, 0, 0, 0, NULL, 0);
	mk(&e, "KVCG", o->ns.id, 1, o->now, 0, NULL, 0);
	if (!rc)
		rc = kv_get_range(t, ks(&k), ks(&e), DELRES_GC_PER_TXN, 1, 0, &r);
	for (int i = 0; !rc && i < r.n; i++) {
		const uint8_t *kp = r.kvs[i].key.p;
		if (r.kvs[i].key.n != 36)
			return -CFS_ECORRUPT;
		mk_delres(&e, o->ns.id, get_be64(kp + 20), (uint32_t)get_be64(kp + 28));
		if (!(rc = kv_clear(t, r.kvs[i].key)))
			rc = kv_clear(t, ks(&e));
	}
	return rc;
}

/* Deletes the keys of [from, to). With a token (the call's, the same in
 * every attempt), the txn's answers are kept in a result record for
 * DELRES_KEEP_MS: a resend of the call finds it and answers the same
 * without running again, so a key the first attempt deleted is OK, not
 * absent, and a key put again since is not deleted by the resend. */
static int delete_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	int rc = load_ns(t, o->req->ns_id, &o->ns);
	if (rc)
		return rc;
	txn_begin(o);
	if (o->req->token) {
		struct key k;
		struct kv_slice v;
		struct delres d;
		d.n = 0; /* read only after a record decoded; GCC cannot see that */
		mk_delres(&k, o->ns.id, o->req->token, o->from);
		if ((rc = kv_get(t, ks(&k), 0, &v)) < 0)
			return rc;
		if (rc && (rc = del_decode(v, &d)))
			return rc;
		/* A record of another count is not this call's: run it. */
		if (v.n && d.n == o->to - o->from) {
			for (uint32_t i = 0; i < d.n; i++)
				o->resp->items[o->from + i] =
					(struct kvc_item){ .status = d.st[i] };
			return 0;
		}
	}
	for (uint32_t i = o->from; i < o->to; i++) {
		const struct kvc_item *q = &o->req->items[i];
		struct entry e;
		rc = get_entry(t, o->ns.id, q, 0, &e);
		if (rc < 0)
			return rc;
		/* An expired entry is gone for readers: absent, but freed now. */
		int found = rc == 1, dead = found && expired(&e, o->now);
		o->resp->items[i] = (struct kvc_item){
			.status = found && !dead ? KVC_ST_OK : KVC_ST_ABSENT };
		if (!found)
			continue;
		if ((rc = del_entry(t, o->ns.id, q, &e)) || (rc = free_slot(t, o->ns.id, e.slot)))
			return rc;
		cnt(o, CNT_USED, -1);
		if (dead)
			cnt(o, CNT_EXPIRE, 1);
	}
	if (o->req->token && (rc = delres_write(t, o)))
		return rc;
	return txn_flush(t, o);
}

/* One reclaim step: up to RECLAIM_PER_TXN expired reservations, else up
 * to RECLAIM_PER_TXN entries past their TTL, go to the free set. o->freed
 * says how many (RECLAIM_PER_TXN: call again). */
static int reclaim_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	struct kv_range r;
	int rc = load_ns(t, o->req->ns_id, &o->ns);
	if (rc)
		return rc;
	txn_begin(o);
	o->freed = 0;
	rc = get_expiring(t, "KVCE", o->ns.id, o->now, RECLAIM_PER_TXN, &r);
	if (rc)
		return rc;
	for (int i = 0; i < r.n; i++) {
		uint64_t slot;
		if ((rc = drop_listed_resv(t, o, &r.kvs[i], &slot)) ||
		    (rc = free_slot(t, o->ns.id, slot)))
			return rc;
		cnt(o, CNT_RECLAIM, 1);
		o->freed++;
	}
	if (!r.n) {
		rc = get_expiring(t, "KVCT", o->ns.id, o->now + 1, RECLAIM_PER_TXN, &r);
		if (rc)
			return rc;
		for (int i = 0; i < r.n; i++) {
			uint64_t slot;
			rc = take_listed_entry(t, o->ns.id, &r.kvs[i], 1, &slot);
			if (rc < 0)
				return rc;
			if (rc == 1) {
				if ((rc = free_slot(t, o->ns.id, slot)))
					return rc;
				cnt(o, CNT_USED, -1);
				cnt(o, CNT_EXPIRE, 1);
			}
			o->freed++;
		}
	}
	return txn_flush(t, o);
}

static int count_range(kv_txn *t, const char pfx[4], uint64_t ns, uint64_t *out)
{
	struct key b, e;
	struct kv_slice bs, es;
	struct kv_range r;
	mk_range(&b, &e, pfx, ns);
	bs = ks(&b);
	es = ks(&e);
	*out = 0;
	for (;;) {
		int rc = kv_get_range(t, bs, es, 4096, 1, 0, &r);
		if (rc)
			return rc;
		*out += (uint64_t)r.n;
		if (!r.has_more)
			return 0;
		if ((rc = kv_range_continue(t, &r, 0, &bs, &es)))
			return rc;
	}
}

/* Evictions in the KVC_RATE_WINDOW_S seconds up to NOW_MS_'s (the
 * current second included, so a burst shows at once). */
static int rate_get(kv_txn *t, uint64_t ns, uint64_t now_ms_, uint64_t *out)
{
	struct key b, e;
	struct kv_range r;
	uint64_t sec = now_ms_ / 1000, w = KVC_RATE_WINDOW_S - 1;
	mk(&b, "KVCW", ns, 1, sec > w ? sec - w : 0, 0, NULL, 0);
	mk(&e, "KVCW", ns, 1, sec + 1, 0, NULL, 0);
	int rc = kv_get_range(t, ks(&b), ks(&e), 0, 1, 0, &r);
	if (rc)
		return rc;
	*out = sum_counters(&r);
	return 0;
}

static int stats_fn(kv_txn *t, void *arg)
{
	struct op *o = arg;
	struct kvc_stats *s = &o->resp->stats;
	struct key k;
	struct kv_slice v;
	int rc = load_ns(t, o->req->ns_id, &o->ns);
	if (rc)
		return rc;
	memset(s, 0, sizeof(*s));
	for (uint8_t sh = 0; sh < HWM_SHARDS; sh++) {
		mk(&k, "KVCH", o->ns.id, 0, 0, 0, &sh, 1);
		rc = kv_get(t, ks(&k), 1, &v);
		if (rc < 0)
			return rc;
		if (rc && v.n == 8)
			s->hwm += wire_load_u64(v.p);
	}
	if ((rc = count_get(t, o->ns.id, CNT_USED, &s->used)) ||
	    (rc = count_get(t, o->ns.id, CNT_EVICT, &s->evictions)) ||
	    (rc = count_get(t, o->ns.id, CNT_RECLAIM, &s->reclaimed)) ||
	    (rc = count_get(t, o->ns.id, CNT_LOST, &s->lost)) ||
	    (rc = count_get(t, o->ns.id, CNT_EXPIRE, &s->expired)) ||
	    (rc = rate_get(t, o->ns.id, o->now, &s->evict_recent)) ||
	    (rc = count_range(t, "KVCR", o->ns.id, &s->reserved)) ||
	    (rc = count_range(t, "KVCF", o->ns.id, &s->free)))
		return rc;
	return 0;
}

/* ---- entry point ---- */

static int run(kv_engine *kv, unsigned flags, kv_txn_fn fn, struct op *o)
{
	struct kv_run_opts ro = { .flags = flags, .idempotent = 0, .max_retries = 40 };
	return kv_run(kv, &ro, fn, o, NULL);
}

/* Recency is best effort: a touch that conflicts (another reader touched
 * the same keys) is dropped after one quick retry instead of backing off. */
static int run_touch(kv_engine *kv, struct op *o)
{
	struct kv_run_opts ro = { .max_retries = 1, .backoff_min_us = 50, .backoff_max_us = 200 };
	return kv_run(kv, &ro, touch_fn, o, NULL);
}

/* Runs FN over the items in groups of up to PER (FN may end a group
 * early by lowering o->to, after at least one item). On failure o->from
 * is the first item of the group that failed: the groups before it
 * committed. */
static int run_groups(kv_engine *kv, kv_txn_fn fn, struct op *o, uint32_t per)
{
	for (uint32_t i = 0; i < o->req->n; i = o->to) {
		o->from = i;
		o->to = i + per < o->req->n ? i + per : o->req->n;
		o->now = clock_wall_ns() / 1000000u;
		int rc = run(kv, 0, fn, o);
		if (rc)
			return rc;
		if (o->to <= i)
			return -EIO; /* no progress: cannot happen with a sane budget */
	}
	return 0;
}

/* A RESERVE whose group FAILED_AT failed: the reservations its earlier
 * groups committed are dropped again at once, since the caller only sees
 * the error and would leave them to their lease. Best effort (the lease
 * still covers a failure here). */
static void unreserve_before(kv_engine *kv, struct op *o, uint32_t failed_at)
{
	for (uint32_t i = 0; i < failed_at; i += DELETE_PER_TXN) {
		o->from = i;
		o->to = i + DELETE_PER_TXN < failed_at ? i + DELETE_PER_TXN : failed_at;
		run(kv, 0, unreserve_fn, o);
	}
}

static int check_ns(const struct kvc_ns *ns, char *err, size_t errlen)
{
	const char *why = NULL;
	if (ns->page_size < KVC_PAGE_MIN || ns->page_size > KVC_PAGE_MAX ||
	    (ns->page_size & (ns->page_size - 1)))
		why = "page size must be a power of two from 64K to 16M";
	else if (ns->nslots == 0 || ns->nslots > (1ull << 40))
		why = "slot count out of range";
	else if (ns->nslabs == 0 || ns->nslabs > KVC_SLABS_MAX)
		why = "slab count out of range (1..1024)";
	else if (ns->slots_per_slab == 0 || ns->slots_per_slab * ns->nslabs < ns->nslots ||
		 ns->slots_per_slab > (UINT64_MAX / ns->page_size))
		why = "slabs do not hold the slots";
	else if (ns->durability > KVC_DUR_MAX)
		why = "durability must be sync (0) or cache (1)";
	if (why)
		snprintf(err, errlen, "%s", why);
	return why ? -EINVAL : 0;
}

static int check_items(const struct kvc_msg *m, int want_key, char *err, size_t errlen)
{
	if (m->n > KVC_BATCH_MAX) {
		snprintf(err, errlen, "batch of %u over the limit of %u", m->n, KVC_BATCH_MAX);
		return -EINVAL;
	}
	for (uint32_t i = 0; want_key && i < m->n; i++)
		if (m->items[i].key_len < 1 || m->items[i].key_len > KVC_KEY_MAX) {
			snprintf(err, errlen, "item %u: key of %u bytes (1..%u)", i,
				 m->items[i].key_len, KVC_KEY_MAX);
			return -EINVAL;
		}
	return 0;
}

int meta_kvc_serve(kv_engine *kv, const struct kvc_msg *req, struct kvc_msg *resp, char *err,
		   size_t errlen)
{
	struct op *o = calloc(1, sizeof(*o));
	int rc = 0;
	if (!o)
		return -ENOMEM;
	memset(resp, 0, sizeof(*resp));
	resp->type = req->type;
	o->req = req;
	o->resp = resp;
	o->err = err;
	o->errlen = errlen;
	o->now = now_ms();
	o->rng = rnd64();
	switch (req->type) {
	case META_RPC_KVC_NS_CREATE:
	case META_RPC_KVC_NS_GET:
	case META_RPC_KVC_NS_DELETE:
		if (!valid_name(req->name, req->name_len)) {
			snprintf(err, errlen, "namespace name: 1..%d of [A-Za-z0-9._-]",
				 KVC_NAME_MAX);
			rc = -EINVAL;
			break;
		}
		if (req->type == META_RPC_KVC_NS_CREATE) {
			o->ns = req->ns;
			if (!o->ns.touch_ms)
				o->ns.touch_ms = DEFAULT_TOUCH_MS;
			if (!o->ns.lease_ms)
				o->ns.lease_ms = DEFAULT_LEASE_MS;
			/* ttl_ms as given: 0 is no TTL */
			if (!(rc = check_ns(&o->ns, err, errlen)))
				rc = run(kv, 0, ns_create_fn, o);
		} else {
			rc = run(kv, req->type == META_RPC_KVC_NS_GET ? KV_RDONLY : 0,
				 req->type == META_RPC_KVC_NS_GET ? ns_get_fn : ns_delete_fn, o);
		}
		if (!rc)
			resp->ns = o->ns;
		break;
	case META_RPC_KVC_CLEAR:
		rc = run(kv, 0, clear_fn, o);
		break;
	case META_RPC_KVC_STATS:
		if (req->flags & KVC_STATS_RECLAIM)
			do {
				o->now = now_ms();
				rc = run(kv, 0, reclaim_fn, o);
			} while (!rc && o->freed == RECLAIM_PER_TXN);
		o->now = now_ms();
		if (!rc)
			rc = run(kv, KV_RDONLY, stats_fn, o);
		if (!rc)
			resp->ns = o->ns;
		break;
	case META_RPC_KVC_LOOKUP:
	case META_RPC_KVC_RESERVE:
	case META_RPC_KVC_PUBLISH:
	case META_RPC_KVC_DELETE:
	case META_RPC_KVC_RELEASE: {
		int keys = req->type != META_RPC_KVC_RELEASE;
		if ((rc = check_items(req, keys, err, errlen)))
			break;
		resp->n = req->n;
		if (req->n) {
			resp->items = calloc(req->n, sizeof(*resp->items));
			if (!resp->items) {
				rc = -ENOMEM;
				break;
			}
			resp->items_owned = 1;
		}
		if (req->type == META_RPC_KVC_LOOKUP) {
			o->from = 0;
			o->to = req->n;
			rc = run(kv, KV_RDONLY, lookup_fn, o);
			if (!rc && (req->flags & KVC_LOOKUP_TOUCH)) {
				/* Best effort: a lost touch only ages a key early.
				 * Only the hits due one get a write txn: a batch of
				 * fresh hits (the common case for hot keys) writes
				 * nothing, where it used to run one empty write txn
				 * per 16 keys. */
				uint32_t nt = 0;
				o->touch = malloc(sizeof(*o->touch) * req->n);
				for (uint32_t i = 0; o->touch && i < req->n; i++) {
					const struct kvc_item *h = &resp->items[i];
					if (h->status == KVC_ST_OK &&
					    h->last_used + o->ns.touch_ms <= o->now)
						o->touch[nt++] = i;
				}
				for (uint32_t i = 0; i < nt; i += TOUCH_PER_TXN) {
					o->from = i;
					o->to = i + TOUCH_PER_TXN < nt ? i + TOUCH_PER_TXN : nt;
					o->now = now_ms();
					run_touch(kv, o);
				}
				free(o->touch);
				o->touch = NULL;
			}
			break;
		}
		if (req->type == META_RPC_KVC_RESERVE || req->type == META_RPC_KVC_PUBLISH) {
			/* The page size bounds values; read it once for the check. */
			if ((rc = run(kv, KV_RDONLY, ns_load_fn, o)))
				break;
			for (uint32_t i = 0; i < req->n; i++)
				if (req->items[i].len > o->ns.page_size) {
					snprintf(err, errlen,
						 "item %u: value of %u bytes over the page size %u",
						 i, req->items[i].len, o->ns.page_size);
					rc = -EINVAL;
					break;
				}
			if (rc)
				break;
		}
		rc = run_groups(kv,
				req->type == META_RPC_KVC_RESERVE   ? reserve_fn
				: req->type == META_RPC_KVC_PUBLISH ? publish_fn
				: req->type == META_RPC_KVC_DELETE  ? delete_fn
								    : release_fn,
				o,
				req->type == META_RPC_KVC_RESERVE   ? RESERVE_PER_TXN
				: req->type == META_RPC_KVC_PUBLISH ? PUBLISH_PER_TXN
								    : DELETE_PER_TXN);
		if (rc && req->type == META_RPC_KVC_RESERVE && o->from)
			unreserve_before(kv, o, o->from);
		break;
	}
	default:
		rc = -CFS_EBADMSG_TYPE;
	}
	if (rc)
		kvc_msg_fini(resp);
	free(o);
	return rc;
}
