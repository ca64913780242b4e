/* meta_lock.c - advisory file locks in the KV store (meta_lock.h).
 *
 * The table of one inode is kept as one array in "table order": holders
 * (client, owner, kind) in the order they first locked the file, each
 * holder's locks contiguous and sorted by start. A POSIX set rebuilds the
 * holder's group (kept parts, split parts, the new lock grown by merging)
 * in place of the old group, or appends a new group at the end; that is
 * the list order fs/locks.c keeps (posix_lock_inode inserts a new owner's
 * locks at the tail and keeps one owner's locks together by start), so
 * F_GETLK reports the same conflicting lock the local kernel would.
 *
 * Key: "LOCK" ino(8, big-endian). Record ("CFSL", framing as schema.h):
 *   u32 count, then count x { client u64, owner u64, pid u32, kind u8,
 *   type u8, u16 0, start u64, end u64 }, then the CRC32C.
 * An empty table is no record (the key is cleared), so files never locked
 * or fully unlocked cost nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "meta/meta_int.h"
#include "meta/meta_lock.h"

static const char MAGIC_LOCK[4] = { 'C', 'F', 'S', 'L' };
#define LOCK_REC_VERSION 1
#define LOCK_REC_HDR 8
#define LOCK_WIRE 40 /* bytes per lock in the record */

/* ---- the table ---- */

void meta_lock_table_free(struct meta_lock_table *t)
{
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

static int same_holder(const struct meta_lock *a, const struct meta_lock *b)
{
	return a->client == b->client && a->owner == b->owner && a->kind == b->kind;
}

static int overlaps(const struct meta_lock *a, const struct meta_lock *b)
{
	return a->start <= b->end && b->start <= a->end;
}

/* END + 1 without wrapping: a range to the end touches everything after. */
static uint64_t next_after(uint64_t end)
{
	return end == META_LOCK_EOF ? META_LOCK_EOF : end + 1;
}

/* Overlapping or adjacent ([0,9] and [10,19]): same-type locks merge. */
static int touches(const struct meta_lock *a, const struct meta_lock *b)
{
	return a->start <= next_after(b->end) && b->start <= next_after(a->end);
}

static int conflicts(const struct meta_lock *held, const struct meta_lock *req)
{
	if (held->kind != req->kind || same_holder(held, req))
		return 0;
	if (held->type != META_LOCK_WR && req->type != META_LOCK_WR)
		return 0;
	return req->kind == META_LOCK_FLOCK || overlaps(held, req);
}

int meta_lock_table_test(const struct meta_lock_table *t, const struct meta_lock *l,
			 struct meta_lock *out)
{
	if (l->type == META_LOCK_UN)
		return 0;
	for (size_t i = 0; i < t->n; i++)
		if (conflicts(&t->v[i], l)) {
			if (out)
				*out = t->v[i];
			return 1;
		}
	return 0;
}

static int reserve(struct meta_lock_table *t, size_t n)
{
	if (n <= t->cap)
		return 0;
	size_t nc = t->cap ? t->cap : 8;
	while (nc < n)
		nc *= 2;
	struct meta_lock *v = realloc(t->v, nc * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->v = v;
	t->cap = nc;
	return 0;
}

static int by_start(const void *a, const void *b)
{
	const struct meta_lock *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Replaces the holder group [first, first + old) of T with the NEW_N locks
 * in NEWV (sorted here), keeping the rest of the table in order. */
static int replace_group(struct meta_lock_table *t, size_t first, size_t old,
			 struct meta_lock *newv, size_t new_n)
{
	size_t total = t->n - old + new_n;
	if (total > META_LOCK_MAX)
		return -ENOLCK;
	int rc = reserve(t, total);
	if (rc)
		return rc;
	qsort(newv, new_n, sizeof(*newv), by_start);
	memmove(t->v + first + new_n, t->v + first + old, (t->n - first - old) * sizeof(*t->v));
	memcpy(t->v + first, newv, new_n * sizeof(*newv));
	t->n = total;
	return 0;
}

static int apply_posix(struct meta_lock_table *t, const struct meta_lock *l)
{
	size_t first = t->n, old = 0;
	for (size_t i = 0; i < t->n; i++)
		if (same_holder(&t->v[i], l)) {
			if (!old)
				first = i;
			old++;
		}
	/* The group is contiguous by construction; a record that breaks this
	 * was rejected by the decoder. */
	struct meta_lock *nv = malloc((old + 2) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	size_t nn = 0;
	struct meta_lock add = *l;
	/* Grow the new lock over same-type neighbours first (they cover no
	 * other-type lock of the holder, whose locks never overlap). */
	for (int changed = 1; changed && l->type != META_LOCK_UN;) {
		changed = 0;
		for (size_t i = first; i < first + old; i++) {
			const struct meta_lock *y = &t->v[i];
			if (y->type == add.type && touches(y, &add) &&
			    (y->start < add.start || y->end > add.end)) {
				if (y->start < add.start)
					add.start = y->start;
				if (y->end > add.end)
					add.end = y->end;
				changed = 1;
			}
		}
	}
	for (size_t i = first; i < first + old; i++) {
		const struct meta_lock *y = &t->v[i];
		if (l->type != META_LOCK_UN && y->type == add.type && touches(y, &add))
			continue; /* merged into ADD */
		if (!overlaps(y, l)) {
			nv[nn++] = *y;
			continue;
		}
		if (y->start < l->start) { /* left part survives */
			nv[nn] = *y;
			nv[nn++].end = l->start - 1;
		}
		if (y->end > l->end) { /* right part survives */
			nv[nn] = *y;
			nv[nn++].start = l->end + 1;
		}
	}
	if (l->type != META_LOCK_UN) {
		add.pid = l->pid;
		nv[nn++] = add;
	}
	/* A split of one lock adds one: nn <= old + 2. */
	int rc = replace_group(t, first, old, nv, nn);
	free(nv);
	return rc;
}

int meta_lock_table_apply(struct meta_lock_table *t, const struct meta_lock *l,
			  struct meta_lock *conflict)
{
	int rc = meta_lock_check(l);
	if (rc)
		return rc;
	if (l->kind == META_LOCK_FLOCK) {
		struct meta_lock w = *l;
		w.start = 0;
		w.end = META_LOCK_EOF;
		for (size_t i = 0; i < t->n; i++) {
			if (!same_holder(&t->v[i], &w))
				continue;
			if (t->v[i].type == w.type)
				return 0;
			/* Conversion: drop first (see meta_lock.h). */
			memmove(t->v + i, t->v + i + 1, (t->n - i - 1) * sizeof(*t->v));
			t->n--;
			break;
		}
		if (w.type == META_LOCK_UN)
			return 0;
		if (meta_lock_table_test(t, &w, conflict))
			return -EAGAIN;
		if (t->n >= META_LOCK_MAX)
			return -ENOLCK;
		if ((rc = reserve(t, t->n + 1)))
			return rc;
		t->v[t->n++] = w;
		return 0;
	}
	if (meta_lock_table_test(t, l, conflict))
		return -EAGAIN;
	return apply_posix(t, l);
}

size_t meta_lock_table_drop(struct meta_lock_table *t, uint64_t client, uint64_t owner,
			    int any_owner, unsigned kinds)
{
	size_t k = 0, n0 = t->n;
	for (size_t i = 0; i < t->n; i++) {
		const struct meta_lock *x = &t->v[i];
		if (x->client == client && (any_owner || x->owner == owner) &&
		    (kinds & META_LOCK_KIND_BIT(x->kind)))
			continue;
		t->v[k++] = *x;
	}
	t->n = k;
	return n0 - k;
}

/* ---- record ---- */

int meta_lock_encode(const struct meta_lock_table *t, struct buf *b)
{
	struct wire_writer w;
	buf_reset(b);
	wire_writer_init(&w, b);
	wire_put_bytes(&w, MAGIC_LOCK, 4);
	wire_put_u16(&w, LOCK_REC_VERSION);
	wire_put_u16(&w, 0);
	wire_put_u32(&w, (uint32_t)t->n);
	for (size_t i = 0; i < t->n; i++) {
		const struct meta_lock *x = &t->v[i];
		wire_put_u64(&w, x->client);
		wire_put_u64(&w, x->owner);
		wire_put_u32(&w, x->pid);
		wire_put_u8(&w, x->kind);
		wire_put_u8(&w, x->type);
		wire_put_u16(&w, 0);
		wire_put_u64(&w, x->start);
		wire_put_u64(&w, x->end);
	}
	if (w.err)
		return w.err;
	wire_put_u32(&w, crc32c(0, b->data, b->len));
	return w.err;
}

int meta_lock_decode(const void *p, size_t n, struct meta_lock_table *t)
{
	const uint8_t *b = p;
	struct wire_reader r;
	uint32_t cnt = 0;
	meta_lock_table_free(t);
	if (!p || n < LOCK_REC_HDR + 4 || memcmp(b, MAGIC_LOCK, 4) != 0 ||
	    wire_load_u32(b + n - 4) != crc32c(0, b, n - 4) ||
	    wire_load_u16(b + 4) < LOCK_REC_VERSION)
		return -CFS_ECORRUPT;
	wire_reader_init(&r, b + LOCK_REC_HDR, n - LOCK_REC_HDR - 4);
	if (wire_get_u32(&r, &cnt) || cnt > META_LOCK_MAX || cnt > wire_left(&r) / LOCK_WIRE)
		return -CFS_ECORRUPT;
	if (cnt && reserve(t, cnt))
		return -ENOMEM;
	for (uint32_t i = 0; i < cnt; i++) {
		struct meta_lock *x = &t->v[i];
		uint16_t pad = 0;
		wire_get_u64(&r, &x->client);
		wire_get_u64(&r, &x->owner);
		wire_get_u32(&r, &x->pid);
		wire_get_u8(&r, &x->kind);
		wire_get_u8(&r, &x->type);
		wire_get_u16(&r, &pad);
		wire_get_u64(&r, &x->start);
		wire_get_u64(&r, &x->end);
		if (r.err || meta_lock_check(x) || x->type == META_LOCK_UN)
			goto bad;
		/* Holder groups are contiguous and sorted: a holder seen
		 * before must be the previous entry's, at a later start. */
		if (i && same_holder(&t->v[i - 1], x)) {
			if (t->v[i - 1].end >= x->start)
				goto bad;
		} else {
			for (uint32_t j = 0; j < i; j++)
				if (same_holder(&t->v[j], x))
					goto bad;
		}
	}
	t->n = cnt;
	return 0;
bad:
	meta_lock_table_free(t);
	return -CFS_ECORRUPT;
}

/* ---- transactions ---- */

static void lock_key(struct meta_key *k, uint64_t ino)
{
	memcpy(k->b, "LOCK", 4);
	wire_store_be64(k->b + 4, ino);
	k->n = 12;
}

/* Reads INO's table into T (empty when absent). */
static int load(kv_txn *t, uint64_t ino, int snapshot, struct meta_lock_table *tab)
{
	struct meta_key k;
	struct kv_slice v;
	lock_key(&k, ino);
	meta_lock_table_free(tab);
	int rc = kv_get(t, kv_mem(k.b, k.n), snapshot, &v);
	if (rc <= 0)
		return rc;
	rc = meta_lock_decode(v.p, v.n, tab);
	if (rc == -CFS_ECORRUPT)
		LOG_WARN("meta", "lock table of ino=%llu fails its checks",
			 (unsigned long long)ino);
	return rc;
}

static int store(kv_txn *t, uint64_t ino, const struct meta_lock_table *tab)
{
	struct meta_key k;
	lock_key(&k, ino);
	if (tab->n == 0)
		return kv_clear(t, kv_mem(k.b, k.n));
	struct buf b = BUF_INIT;
	int rc = meta_lock_encode(tab, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

struct lock_arg {
	uint64_t ino;
	const struct meta_lock *l;
	struct meta_lock conflict;
	int result;            /* of the table operation */
	uint64_t client, owner; /* release */
	int any_owner;
	unsigned kinds;
	size_t dropped;
	meta_client_dead_fn is_dead; /* prune */
	void *dead_arg;
	struct meta_lock *out; /* list */
	size_t cap;
};

static int set_body(kv_txn *t, void *arg)
{
	struct lock_arg *a = arg;
	struct meta_lock_table tab = { 0 };
	int rc = load(t, a->ino, 0, &tab);
	if (rc < 0)
		goto out;
	size_t n0 = tab.n;
	a->result = meta_lock_table_apply(&tab, a->l, &a->conflict);
	/* A failed flock conversion still dropped the old lock: store it. */
	if (a->result == 0 || (a->result == -EAGAIN && tab.n != n0))
		rc = store(t, a->ino, &tab);
	else
		rc = 0;
out:
	meta_lock_table_free(&tab);
	return rc;
}

static const struct kv_run_opts RUN_LOCK = { .idempotent = 1, .max_retries = 40 };

int meta_lock_set(meta_ctx *m, uint64_t ino, const struct meta_lock *l,
		  struct meta_lock *conflict)
{
	/* Idempotent without a request record: applying one holder's lock
	 * twice gives the state of applying it once. */
	struct lock_arg a = { .ino = ino, .l = l };
	int rc = meta_lock_check(l);
	if (rc)
		return rc;
	rc = meta_run(m, &RUN_LOCK, set_body, &a);
	if (rc)
		return rc;
	if (a.result == -EAGAIN && conflict)
		*conflict = a.conflict;
	return a.result;
}

static int get_body(kv_txn *t, void *arg)
{
	struct lock_arg *a = arg;
	struct meta_lock_table tab = { 0 };
	int rc = load(t, a->ino, 1, &tab);
	if (rc >= 0) {
		a->result = meta_lock_table_test(&tab, a->l, &a->conflict);
		if (a->out) {
			for (size_t i = 0; i < tab.n && i < a->cap; i++)
				a->out[i] = tab.v[i];
			a->dropped = tab.n;
		}
		rc = 0;
	}
	meta_lock_table_free(&tab);
	return rc;
}

int meta_lock_get(meta_ctx *m, uint64_t ino, const struct meta_lock *l, struct meta_lock *out)
{
	struct lock_arg a = { .ino = ino, .l = l };
	int rc = meta_lock_check(l);
	if (rc)
		return rc;
	rc = meta_run_ro(m, get_body, &a);
	if (rc)
		return rc;
	if (a.result == 1 && out)
		*out = a.conflict;
	return a.result;
}

int meta_lock_list(meta_ctx *m, uint64_t ino, struct meta_lock *out, size_t cap)
{
	struct meta_lock none = { .kind = META_LOCK_POSIX, .type = META_LOCK_UN };
	struct lock_arg a = { .ino = ino, .l = &none, .out = out, .cap = cap };
	int rc = meta_run_ro(m, get_body, &a);
	return rc ? rc : (int)a.dropped;
}

static int release_body(kv_txn *t, void *arg)
{
	struct lock_arg *a = arg;
	struct meta_lock_table tab = { 0 };
	a->dropped = 0;
	int rc = load(t, a->ino, 0, &tab);
	if (rc >= 0) {
		rc = 0;
		if (a->is_dead) {
			size_t k = 0;
			for (size_t i = 0; i < tab.n; i++)
				if (!a->is_dead(a->dead_arg, tab.v[i].client))
					tab.v[k++] = tab.v[i];
			a->dropped = tab.n - k;
			tab.n = k;
		} else {
			a->dropped = meta_lock_table_drop(&tab, a->client, a->owner, a->any_owner,
							  a->kinds);
		}
		if (a->dropped)
			rc = store(t, a->ino, &tab);
	}
	meta_lock_table_free(&tab);
	return rc;
}

int meta_lock_release(meta_ctx *m, uint64_t ino, uint64_t client, uint64_t owner,
		      int any_owner, unsigned kinds)
{
	struct lock_arg a = { .ino = ino, .client = client, .owner = owner,
			      .any_owner = any_owner, .kinds = kinds };
	int rc = meta_run(m, &RUN_LOCK, release_body, &a);
	return rc ? rc : (int)a.dropped;
}

/* ---- dead clients ---- */

struct scan_arg {
	meta_client_dead_fn is_dead;
	void *dead_arg;
	uint64_t *inos;
	size_t n, cap;
};

static int scan_body(kv_txn *t, void *arg)
{
	struct scan_arg *a = arg;
	struct meta_key b, e;
	struct kv_range r;
	struct meta_lock_table tab = { 0 };
	a->n = 0;
	meta_key_prefix_range(&b, &e, "LOCK");
	int rc = kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 0, 1, 0, &r);
	for (int i = 0; rc == 0 && i < r.n; i++) {
		if (r.kvs[i].key.n != 12 || meta_lock_decode(r.kvs[i].val.p, r.kvs[i].val.n, &tab))
			continue;
		int dead = 0;
		for (size_t j = 0; j < tab.n && !dead; j++)
			dead = a->is_dead(a->dead_arg, tab.v[j].client);
		if (!dead)
			continue;
		if (a->n == a->cap) {
			size_t nc = a->cap ? a->cap * 2 : 64;
			uint64_t *v = realloc(a->inos, nc * sizeof(*v));
			if (!v) {
				rc = -ENOMEM;
				break;
			}
			a->inos = v;
			a->cap = nc;
		}
		a->inos[a->n++] = wire_load_be64((const uint8_t *)r.kvs[i].key.p + 4);
	}
	meta_lock_table_free(&tab);
	return rc;
}

int meta_lock_prune(meta_ctx *m, meta_client_dead_fn is_dead, void *arg)
{
	struct scan_arg s = { .is_dead = is_dead, .dead_arg = arg };
	int rc = meta_run_ro(m, scan_body, &s);
	size_t total = 0;
	for (size_t i = 0; rc == 0 && i < s.n; i++) {
		struct lock_arg a = { .ino = s.inos[i], .is_dead = is_dead, .dead_arg = arg };
		rc = meta_run(m, &RUN_LOCK, release_body, &a);
		total += a.dropped;
	}
	free(s.inos);
	return rc ? rc : (int)total;
}
