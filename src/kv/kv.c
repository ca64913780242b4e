/* kv.c - the backend-independent half of the KV interface.
 *
 * How it works. kv_open parses the URL and hands it to the backend whose
 * scheme matches. A txn is one allocation: struct kv_txn (state, sticky
 * error, arena, write buffer) followed by the backend's private area.
 *
 * Writes never reach the backend before commit: they go to the write
 * buffer (kv_int.h describes its net form), which answers later reads
 * (read-your-writes). Point reads consult the buffer first and only ask
 * the backend when the buffer does not decide the answer. Range reads ask
 * the backend for stored pairs window by window and merge the buffered
 * points into each window; a window ends at the last stored pair returned
 * (or at the range end), so every buffered point is merged exactly once and
 * the backend records conflicts only on what was examined.
 *
 * Invariants: t->err != 0 means poisoned (every call returns it);
 * t->wb.ncalls <= KV_MAX_WRITES; t->nconflicts <= KV_MAX_READ_CONFLICTS
 * unless poisoned with -CFS_ETOOLARGE; every slice handed to the caller is
 * in the arena or backend memory that lives until kv_txn_free.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/block_hint.h"
#include "common/clock.h"
#include "common/hex.h"
#include "common/status.h"
#include "kv/kv.h"
#include "kv/kv_int.h"

static const struct kv_backend_ops *const backends[] = {
	&kv_lmdb_ops,
	&kv_mem_ops,
#ifdef KV_HAVE_ETCD
	&kv_etcd_ops,
#endif
};

/* ---- errors, URL -------------------------------------------------------- */

int kv_errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Percent-decoded copy of [p, p+n) or NULL (ENOMEM, or *bad set on a
 * malformed escape). */
static char *url_dup(const char *p, size_t n, int *bad)
{
	char *s = malloc(n + 1);
	size_t j = 0;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '%') {
			int h, l;
			if (i + 2 >= n) {
				*bad = 1;
				free(s);
				return NULL;
			}
			h = hex_digit(p[i + 1]);
			l = hex_digit(p[i + 2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0)) {
				*bad = 1;
				free(s);
				return NULL;
			}
			s[j++] = (char)(h << 4 | l);
			i += 2;
		} else {
			s[j++] = p[i];
		}
	}
	s[j] = 0;
	return s;
}

void kv_url_fini(struct kv_url *u)
{
	if (!u)
		return;
	free(u->scheme);
	free(u->authority);
	free(u->path);
	for (int i = 0; i < u->nopts; i++) {
		free(u->opts[i].key);
		free(u->opts[i].val);
	}
	memset(u, 0, sizeof(*u));
}

int kv_url_parse(const char *url, struct kv_url *u, char *err, size_t errlen)
{
	const char *p, *sep, *q, *a_end;
	int bad = 0;

	memset(u, 0, sizeof(*u));
	if (!url)
		return kv_errf(err, errlen, -EINVAL, "kv: no URL given");
	sep = strstr(url, "://");
	if (!sep || sep == url)
		return kv_errf(err, errlen, -EINVAL,
			       "kv: URL '%s' has no scheme (want lmdb:///path, etcd://h:p/prefix or mem://)",
			       url);
	for (p = url; p < sep; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return kv_errf(err, errlen, -EINVAL, "kv: bad scheme in URL '%s'", url);
	p = sep + 3;
	q = strchr(p, '?');
	a_end = p + strcspn(p, "/?");
	u->scheme = url_dup(url, (size_t)(sep - url), &bad);
	u->authority = url_dup(p, (size_t)(a_end - p), &bad);
	u->path = url_dup(a_end, (size_t)((q ? q : a_end + strlen(a_end)) - a_end), &bad);
	if (!u->scheme || !u->authority || !u->path)
		goto fail;
	while (q) {
		const char *o = q + 1, *next = strchr(o, '&'), *oe, *eq;

		oe = next ? next : o + strlen(o);
		q = next;
		if (oe == o)
			continue;
		if (u->nopts == KV_URL_MAX_OPTS) {
			kv_url_fini(u);
			return kv_errf(err, errlen, -EINVAL, "kv: more than %d options in URL",
				       KV_URL_MAX_OPTS);
		}
		eq = memchr(o, '=', (size_t)(oe - o));
		u->opts[u->nopts].key = url_dup(o, (size_t)((eq ? eq : oe) - o), &bad);
		u->opts[u->nopts].val = eq ? url_dup(eq + 1, (size_t)(oe - eq - 1), &bad)
					   : url_dup("", 0, &bad);
		u->nopts++;
		if (!u->opts[u->nopts - 1].key || !u->opts[u->nopts - 1].val)
			goto fail;
	}
	return 0;
fail:
	kv_url_fini(u);
	if (bad)
		return kv_errf(err, errlen, -EINVAL, "kv: bad %%-escape in URL '%s'", url);
	return kv_errf(err, errlen, -ENOMEM, "kv: out of memory parsing URL");
}

const char *kv_url_opt(const struct kv_url *u, const char *key)
{
	for (int i = u->nopts - 1; i >= 0; i--)
		if (!strcmp(u->opts[i].key, key))
			return u->opts[i].val;
	return NULL;
}

int kv_url_check_opts(const struct kv_url *u, const char *const *allowed, char *err,
		      size_t errlen)
{
	for (int i = 0; i < u->nopts; i++) {
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			if (!strcmp(*a, u->opts[i].key))
				ok = 1;
		if (!ok)
			return kv_errf(err, errlen, -EINVAL, "kv: unknown option '%s' for %s://",
				       u->opts[i].key, u->scheme);
	}
	return 0;
}

int kv_url_opt_size(const struct kv_url *u, const char *key, uint64_t *out, char *err,
		    size_t errlen)
{
	const char *v = kv_url_opt(u, key);
	char *end;
	unsigned long long x;
	int shift = 0;

	if (!v)
		return 0;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (end == v || errno || *v == '-')
		goto bad;
	switch (*end) {
	case 0: break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: goto bad;
	}
	if (*end || (shift && x > (UINT64_MAX >> shift)))
		goto bad;
	*out = (uint64_t)x << shift;
	return 0;
bad:
	return kv_errf(err, errlen, -EINVAL, "kv: option %s=%s is not a size", key, v);
}

/* ---- arena -------------------------------------------------------------- */

struct kv_arena_chunk {
	struct kv_arena_chunk *next;
	size_t size;
	_Alignas(16) char data[];
};

void kv_arena_init(struct kv_arena *a)
{
	a->head = NULL;
	a->cur = a->end = NULL;
}

void kv_arena_fini(struct kv_arena *a)
{
	struct kv_arena_chunk *c = a->head, *n;

	for (; c; c = n) {
		n = c->next;
		free(c);
	}
	kv_arena_init(a);
}

static size_t align16(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

void *kv_arena_alloc(struct kv_arena *a, size_t n)
{
	struct kv_arena_chunk *c;
	size_t sz;
	void *p;

	n = align16(n ? n : 1);
	if ((size_t)(a->end - a->cur) >= n) {
		p = a->cur;
		a->cur += n;
		return p;
	}
	sz = n > 3072 ? n : 4096 - sizeof(*c);
	if (a->head && a->head->size >= 4096 && n <= a->head->size * 2)
		sz = a->head->size * 2 > sz ? a->head->size * 2 : sz;
	if (sz > ((size_t)1 << 24) && sz > n)
		sz = n;
	c = malloc(sizeof(*c) + sz);
	if (!c)
		return NULL;
	c->next = a->head;
	c->size = sz;
	a->head = c;
	a->cur = c->data + n;
	a->end = c->data + sz;
	return c->data;
}

void *kv_arena_grow(struct kv_arena *a, void *p, size_t oldn, size_t newn)
{
	void *q;

	if (p && (char *)p + align16(oldn ? oldn : 1) == a->cur &&
	    (size_t)(a->end - (char *)p) >= align16(newn)) {
		a->cur = (char *)p + align16(newn);
		return p;
	}
	q = kv_arena_alloc(a, newn);
	if (q && p && oldn)
		memcpy(q, p, oldn < newn ? oldn : newn);
	return q;
}

int kv_arena_dup(struct kv_arena *a, struct kv_slice s, struct kv_slice *out)
{
	void *p;

	if (!s.n) {
		*out = (struct kv_slice){ NULL, 0 };
		return 0;
	}
	p = kv_arena_alloc(a, s.n);
	if (!p)
		return -ENOMEM;
	memcpy(p, s.p, s.n);
	*out = (struct kv_slice){ p, s.n };
	return 0;
}

/* ---- keys and the write buffer ------------------------------------------ */

int kv_key_cmp(struct kv_slice a, struct kv_slice b)
{
	size_t n = a.n < b.n ? a.n : b.n;
	int c = n ? memcmp(a.p, b.p, n) : 0;

	if (c)
		return c;
	return a.n < b.n ? -1 : a.n > b.n;
}

int kv_in_range(struct kv_slice k, struct kv_slice b, struct kv_slice e)
{
	return kv_key_cmp(k, b) >= 0 && (!e.n || kv_key_cmp(k, e) < 0);
}

/* First index whose key is >= KEY. */
static int wbuf_lower(const struct kv_wbuf *w, struct kv_slice key)
{
	int lo = 0, hi = w->npts;

	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (kv_key_cmp(w->pts[mid].key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int kv_wbuf_find(const struct kv_wbuf *w, struct kv_slice key)
{
	int i = wbuf_lower(w, key);

	return i < w->npts && !kv_key_cmp(w->pts[i].key, key) ? i : -1;
}

int kv_wbuf_cleared(const struct kv_wbuf *w, struct kv_slice key)
{
	for (int i = 0; i < w->nranges; i++)
		if (kv_in_range(key, w->ranges[i].begin, w->ranges[i].end))
			return 1;
	return 0;
}

void kv_point_apply(enum kv_wop op, const void *base, size_t n, int found, int64_t operand,
		    uint8_t out8[8])
{
	uint64_t v = 0;

	if (op == KV_WOP_ADD) {
		kv_add_apply(base, n, found, operand, out8);
		return;
	}
	if (found)
		for (size_t i = 0; i < n && i < 8; i++)
			v |= (uint64_t)((const uint8_t *)base)[i] << (8 * i);
	if (!found || (int64_t)v < operand)
		v = (uint64_t)operand;
	for (int i = 0; i < 8; i++)
		out8[i] = (uint8_t)(v >> (8 * i));
}

void kv_add_apply(const void *base, size_t n, int found, int64_t delta, uint8_t out8[8])
{
	uint64_t v = 0;

	if (found)
		for (size_t i = 0; i < n && i < 8; i++)
			v |= (uint64_t)((const uint8_t *)base)[i] << (8 * i);
	v += (uint64_t)delta;
	for (int i = 0; i < 8; i++)
		out8[i] = (uint8_t)(v >> (8 * i));
}

/* ---- engine ------------------------------------------------------------- */

int kv_open(const char *url, kv_engine **out, char *err, size_t errlen)
{
	struct kv_url u;
	struct kv_engine *e = NULL;
	int rc;

	if (err && errlen)
		err[0] = 0;
	rc = kv_url_parse(url, &u, err, errlen);
	if (rc)
		return rc;
	rc = kv_errf(err, errlen, -EINVAL, "kv: unknown scheme '%s://' (want lmdb, etcd or mem)",
		     u.scheme);
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		if (strcmp(backends[i]->scheme, u.scheme))
			continue;
		rc = backends[i]->open(&u, &e, err, errlen);
		if (!rc) {
			e->ops = backends[i];
			*out = e;
		}
		break;
	}
	kv_url_fini(&u);
	return rc;
}

void kv_close(kv_engine *e)
{
	if (e)
		e->ops->close(e);
}

int kv_flush(kv_engine *e)
{
	return e->ops->flush ? e->ops->flush(e) : 0;
}

int kv_write_error(kv_engine *e)
{
	return e && e->ops->write_error ? e->ops->write_error(e) : 0;
}

void kv_cancel(kv_engine *e)
{
	if (e && e->ops->cancel)
		e->ops->cancel(e);
}

const char *kv_engine_name(const kv_engine *e)
{
	return e->ops->scheme;
}

/* ---- txn ---------------------------------------------------------------- */

static size_t txn_head_size(void)
{
	return (sizeof(struct kv_txn) + 15) & ~(size_t)15;
}

/* THE THREAD'S SPARE TXN. A txn record (5 KiB with the lmdb backend's
 * private area) and its arena's chunks (a 5 KiB inode record, then a
 * 10 KiB chunk for the rest) are past glibc's thread cache: every begin
 * and free of a namespace change went through _int_malloc's large-bin path
 * (which consolidates the fast bins first) and _int_free's locked path,
 * three times, and a create through the mount's in-process meta runs two
 * txns. kv_txn_free keeps the last txn of the thread, with its newest
 * arena chunk when that is at most SPARE_CHUNK_MAX, for the thread's next
 * kv_begin with the same private size; the key's destructor frees it when
 * the thread ends. Only memory is reused: begin initialises every field
 * as for a new record, and the kept chunk is empty again. */
#define SPARE_CHUNK_MAX (32u << 10)

static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static int spare_ok;
static __thread struct kv_txn *spare_txn;
static __thread size_t spare_size; /* txn_head_size() + priv size of SPARE_TXN */

static void spare_free(void *p)
{
	struct kv_txn *t = p;
	if (t == spare_txn)
		spare_txn = NULL;
	kv_arena_fini(&t->arena);
	free(t);
}

static void spare_init(void)
{
	spare_ok = pthread_key_create(&spare_key, spare_free) == 0;
#if defined(__SANITIZE_ADDRESS__)
	spare_ok = 0; /* ASan builds: every txn fresh, so a use after free shows */
#endif
}

/* A txn record of SIZE bytes: the thread's spare (its arena holding the
 * kept chunk, empty) or a new one (arena empty). */
static struct kv_txn *txn_alloc(size_t size)
{
	struct kv_txn *t = spare_txn;
	if (t && spare_size == size) {
		spare_txn = NULL;
		pthread_setspecific(spare_key, NULL);
		return t;
	}
	t = malloc(size);
	if (t)
		kv_arena_init(&t->arena);
	return t;
}

/* Frees T (its backend state released) or keeps it as the thread's spare. */
static void txn_release(struct kv_txn *t)
{
	pthread_once(&spare_once, spare_init);
	if (spare_txn || !spare_ok) {
		kv_arena_fini(&t->arena);
		free(t);
		return;
	}
	/* keep the newest chunk (the largest) if small enough, emptied */
	struct kv_arena_chunk *keep = t->arena.head;
	if (keep && keep->size > SPARE_CHUNK_MAX)
		keep = NULL;
	struct kv_arena_chunk *c = t->arena.head, *n;
	for (; c; c = n) {
		n = c->next;
		if (c != keep)
			free(c);
	}
	kv_arena_init(&t->arena);
	if (keep) {
		keep->next = NULL;
		t->arena.head = keep;
		t->arena.cur = keep->data;
		t->arena.end = keep->data + keep->size;
	}
	if (pthread_setspecific(spare_key, t)) {
		spare_free(t);
		return;
	}
	spare_txn = t;
	spare_size = txn_head_size() + t->eng->ops->txn_priv_size;
}

int kv_begin(kv_engine *e, unsigned flags, kv_txn **out)
{
	size_t psz = e->ops->txn_priv_size;
	struct kv_txn *t;
	int rc;

	if (flags & ~(unsigned)KV_RDONLY)
		return -EINVAL;
	/* The write buffer is large and needs no zeroing beyond its counts. */
	t = txn_alloc(txn_head_size() + psz);
	if (!t)
		return -ENOMEM;
	t->eng = e;
	t->flags = flags;
	t->state = KV_TXN_OPEN;
	t->err = 0;
	t->nconflicts = 0;
	t->alone = 0;
	t->wb.npts = t->wb.nranges = t->wb.ncalls = 0;
	t->wb.bytes = 0;
	memset(kv_txn_priv(t), 0, psz);
	rc = e->ops->txn_begin(t);
	if (rc) {
		txn_release(t);
		return rc;
	}
	*out = t;
	return 0;
}

void kv_txn_free(kv_txn *t)
{
	if (!t)
		return;
	t->eng->ops->txn_free(t);
	txn_release(t);
}

static int poison(struct kv_txn *t, int err)
{
	if (!t->err)
		t->err = err;
	return t->err;
}

/* Returns nonzero (the code to return) if T may not take another call. */
static int txn_check(struct kv_txn *t)
{
	if (t->state != KV_TXN_OPEN)
		return -EINVAL;
	return t->err;
}

static int key_ok(struct kv_slice k)
{
	return k.n >= 1 && k.n <= KV_MAX_KEY && k.p;
}

static int bound_ok(struct kv_slice k)
{
	return k.n <= KV_MAX_KEY + 1 && (k.p || !k.n);
}

/* Counts N read-conflict entries, poisoning past the limit. */
static int count_conflicts(struct kv_txn *t, int n)
{
	if (t->nconflicts + n > KV_MAX_READ_CONFLICTS) {
		t->nconflicts = KV_MAX_READ_CONFLICTS + 1;
		return poison(t, -CFS_ETOOLARGE);
	}
	t->nconflicts += n;
	return 0;
}

int kv_reports_alone(const kv_engine *e)
{
	return e->ops->reports_alone;
}

int kv_read_version(kv_txn *t, int64_t *version)
{
	int rc = txn_check(t);

	if (rc)
		return rc;
	rc = t->eng->ops->read_version(t, version);
	return rc < 0 ? poison(t, rc) : 0;
}

struct kv_slice kv_key_after(kv_txn *t, struct kv_slice key)
{
	char *p = kv_arena_alloc(&t->arena, key.n + 1);

	if (!p) {
		poison(t, -ENOMEM);
		return (struct kv_slice){ NULL, 0 };
	}
	if (key.n)
		memcpy(p, key.p, key.n);
	p[key.n] = 0;
	return (struct kv_slice){ p, key.n + 1 };
}

/* The value of pending ADD or MAX point PT over stored value BASE, in the arena. */
static int add_value(struct kv_txn *t, const struct kv_wpoint *pt, struct kv_slice base,
		     int found, struct kv_slice *val)
{
	uint8_t *v = kv_arena_alloc(&t->arena, 8);

	if (!v)
		return -ENOMEM;
	kv_point_apply(pt->op, base.p, base.n, found, pt->delta, v);
	*val = (struct kv_slice){ v, 8 };
	return 0;
}

int kv_get(kv_txn *t, struct kv_slice key, int snapshot, struct kv_slice *val)
{
	int rc = txn_check(t), conflict, idx = -1;
	struct kv_slice base;

	*val = (struct kv_slice){ NULL, 0 };
	if (rc)
		return rc;
	if (!key_ok(key))
		return poison(t, -EINVAL);
	conflict = !(t->flags & KV_RDONLY) && !snapshot;
	if (!(t->flags & KV_RDONLY)) {
		idx = kv_wbuf_find(&t->wb, key);
		if (idx >= 0 && t->wb.pts[idx].op == KV_WOP_SET) {
			*val = t->wb.pts[idx].val;
			return 1;
		}
		if (idx >= 0 && t->wb.pts[idx].op == KV_WOP_CLEAR)
			return 0;
		if (idx < 0 && kv_wbuf_cleared(&t->wb, key))
			return 0;
	}
	if (conflict && (rc = count_conflicts(t, 1)))
		return rc;
	rc = t->eng->ops->get(t, key, conflict, &base);
	if (rc < 0)
		return poison(t, rc);
	if (idx >= 0) {
		int r2 = add_value(t, &t->wb.pts[idx], base, rc, val);
		return r2 ? poison(t, r2) : 1;
	}
	if (rc)
		*val = base;
	return rc;
}

int kv_get_multi(kv_txn *t, int n, const struct kv_slice *keys, int snapshot,
		 struct kv_slice *vals, int *found)
{
	int rc = txn_check(t), conflict;

	if (rc)
		return rc;
	if (n < 0 || (n && (!keys || !vals || !found)))
		return poison(t, -EINVAL);
	for (int i = 0; i < n; i++) {
		vals[i] = (struct kv_slice){ NULL, 0 };
		found[i] = 0;
		if (!key_ok(keys[i]))
			return poison(t, -EINVAL);
	}
	if (!n)
		return 0;
	conflict = !(t->flags & KV_RDONLY) && !snapshot;
	/* Keys the txn's own writes answer stay here; the rest go to the
	 * backend in one call (ask[] their indexes, wi[] their write point
	 * or -1). Scratch lives in the arena: a txn's reads are few. */
	int *ask = kv_arena_alloc(&t->arena, sizeof(int) * 2 * (size_t)n);
	struct kv_slice *ak = kv_arena_alloc(&t->arena, sizeof(*ak) * 2 * (size_t)n);
	int *af = kv_arena_alloc(&t->arena, sizeof(int) * (size_t)n);
	if (!ask || !ak || !af)
		return poison(t, -ENOMEM);
	int *wi = ask + n, nask = 0;
	struct kv_slice *av = ak + n;
	for (int i = 0; i < n; i++) {
		int idx = -1;
		if (!(t->flags & KV_RDONLY)) {
			idx = kv_wbuf_find(&t->wb, keys[i]);
			if (idx >= 0 && t->wb.pts[idx].op == KV_WOP_SET) {
				vals[i] = t->wb.pts[idx].val;
				found[i] = 1;
				continue;
			}
			if ((idx >= 0 && t->wb.pts[idx].op == KV_WOP_CLEAR) ||
			    (idx < 0 && kv_wbuf_cleared(&t->wb, keys[i])))
				continue;
		}
		ask[nask] = i;
		wi[nask] = idx;
		ak[nask++] = keys[i];
	}
	if (!nask)
		return 0;
	if (conflict && (rc = count_conflicts(t, nask)))
		return rc;
	if (t->eng->ops->get_multi) {
		rc = t->eng->ops->get_multi(t, nask, ak, conflict, av, af);
	} else {
		for (int j = 0; j < nask && rc >= 0; j++) {
			rc = t->eng->ops->get(t, ak[j], conflict, &av[j]);
			af[j] = rc > 0;
		}
		rc = rc < 0 ? rc : 0;
	}
	if (rc < 0)
		return poison(t, rc);
	for (int j = 0; j < nask; j++) {
		int i = ask[j];
		if (wi[j] >= 0) {
			int r2 = add_value(t, &t->wb.pts[wi[j]], av[j], af[j], &vals[i]);
			if (r2)
				return poison(t, r2);
			found[i] = 1;
		} else if (af[j]) {
			vals[i] = av[j];
			found[i] = 1;
		}
	}
	return 0;
}

/* Growable output array of a range read, in the arena. */
struct range_out {
	struct kv_pair *kvs;
	int n, cap;
};

static int out_push(struct kv_txn *t, struct range_out *o, struct kv_slice k, struct kv_slice v)
{
	if (o->n == o->cap) {
		int ncap = o->cap ? o->cap * 2 : 16;
		struct kv_pair *p = kv_arena_grow(&t->arena, o->kvs, sizeof(*p) * (size_t)o->cap,
						  sizeof(*p) * (size_t)ncap);
		if (!p)
			return -ENOMEM;
		o->kvs = p;
		o->cap = ncap;
	}
	o->kvs[o->n].key = k;
	o->kvs[o->n].val = v;
	o->n++;
	return 0;
}

/* Emits, in scan direction, the merge of stored pairs RAW with the buffered
 * points inside the window [wb, we), stopping at WANT pairs. Sets *cut when
 * it stopped with window items left. */
static int merge_window(struct kv_txn *t, const struct kv_range *raw, struct kv_slice wb,
			struct kv_slice we, int reverse, int want, struct range_out *o, int *cut)
{
	const struct kv_wbuf *w = &t->wb;
	int lo = wbuf_lower(w, wb), hi = we.n ? wbuf_lower(w, we) : w->npts;
	int pi = reverse ? hi - 1 : lo, ri = 0, rc;

	*cut = 0;
	while (ri < raw->n || (reverse ? pi >= lo : pi < hi)) {
		const struct kv_wpoint *pt = NULL;
		const struct kv_pair *rp = NULL;
		struct kv_slice v;
		int c;

		if (ri < raw->n)
			rp = &raw->kvs[ri];
		if (reverse ? pi >= lo : pi < hi)
			pt = &w->pts[pi];
		if (rp && pt)
			c = kv_key_cmp(rp->key, pt->key) * (reverse ? -1 : 1);
		else
			c = rp ? -1 : 1;
		if (o->n >= want) {
			*cut = 1;
			return 0;
		}
		if (c < 0) {
			ri++;
			if (kv_wbuf_cleared(w, rp->key))
				continue;
			if ((rc = out_push(t, o, rp->key, rp->val)))
				return rc;
			continue;
		}
		pi += reverse ? -1 : 1;
		if (c == 0)
			ri++;
		if (pt->op == KV_WOP_CLEAR)
			continue;
		if (pt->op == KV_WOP_SET) {
			v = pt->val;
		} else if ((rc = add_value(t, pt, c == 0 ? rp->val : (struct kv_slice){ NULL, 0 },
					   c == 0, &v))) {
			return rc;
		}
		if ((rc = out_push(t, o, pt->key, v)))
			return rc;
	}
	return 0;
}

static int range_read(struct kv_txn *t, struct kv_slice begin, struct kv_slice end, int limit,
		      int snapshot, int reverse, struct kv_range *out)
{
	const struct kv_backend_ops *ops = t->eng->ops;
	int conflict = !(t->flags & KV_RDONLY) && !snapshot;
	int want = limit > 0 ? limit : INT_MAX, rc, cut;
	struct range_out o = { NULL, 0, 0 };
	struct kv_slice cb = begin, ce = end;

	/* Fast path: nothing buffered can change what the backend returns. */
	if ((t->flags & KV_RDONLY) || (!t->wb.npts && !t->wb.nranges)) {
		if (conflict && (rc = count_conflicts(t, 1)))
			return rc;
		rc = ops->get_range(t, begin, end, want, reverse, conflict, out);
		if (rc < 0)
			return rc;
		return conflict ? count_conflicts(t, out->n) : 0;
	}
	for (;;) {
		struct kv_range raw;
		struct kv_slice wb, we;

		if (conflict && (rc = count_conflicts(t, 1)))
			return rc;
		rc = ops->get_range(t, cb, ce, want - o.n, reverse, conflict, &raw);
		if (rc < 0)
			return rc;
		if (conflict && (rc = count_conflicts(t, raw.n)))
			return rc;
		wb = cb;
		we = ce;
		if (raw.has_more) {
			struct kv_slice last = raw.kvs[raw.n - 1].key;
			if (reverse) {
				wb = last;
			} else {
				we = kv_key_after(t, last);
				if (!we.p)
					return -ENOMEM;
			}
		}
		rc = merge_window(t, &raw, wb, we, reverse, want, &o, &cut);
		if (rc)
			return rc;
		if (cut || (o.n >= want && raw.has_more)) {
			out->has_more = 1;
			break;
		}
		if (!raw.has_more) {
			out->has_more = 0;
			/* Reaching the limit exactly at the window end: nothing
			 * remains, the window was the rest of the range. */
			break;
		}
		if (reverse)
			ce = wb;
		else
			cb = we;
	}
	out->kvs = o.kvs;
	out->n = o.n;
	return 0;
}

int kv_get_range(kv_txn *t, struct kv_slice begin, struct kv_slice end, int limit,
		 int snapshot, int reverse, struct kv_range *out)
{
	int rc = txn_check(t);

	out->kvs = NULL;
	out->n = 0;
	out->has_more = 0;
	if (rc)
		return rc;
	if (!bound_ok(begin) || !bound_ok(end))
		return poison(t, -EINVAL);
	if (begin.n && end.n) {
		int c = kv_key_cmp(begin, end);
		if (c > 0)
			return poison(t, -EINVAL);
		if (c == 0)
			return 0;
	}
	rc = range_read(t, begin, end, limit, snapshot, reverse, out);
	if (rc) {
		out->kvs = NULL;
		out->n = 0;
		out->has_more = 0;
		return poison(t, rc);
	}
	return 0;
}

int kv_range_continue(kv_txn *t, const struct kv_range *r, int reverse,
		      struct kv_slice *begin, struct kv_slice *end)
{
	int rc = txn_check(t);

	if (rc)
		return rc;
	if (!r->n)
		return -EINVAL;
	if (reverse) {
		*end = r->kvs[r->n - 1].key;
		return 0;
	}
	*begin = kv_key_after(t, r->kvs[r->n - 1].key);
	return begin->p ? 0 : -ENOMEM;
}

int kv_add_read_conflict(kv_txn *t, struct kv_slice key)
{
	int rc = txn_check(t);

	if (rc)
		return rc;
	if (!key_ok(key))
		return poison(t, -EINVAL);
	if (t->flags & KV_RDONLY)
		return 0;
	if ((rc = count_conflicts(t, 1)))
		return rc;
	rc = t->eng->ops->add_conflict(t, key, (struct kv_slice){ NULL, 0 }, 1);
	return rc < 0 ? poison(t, rc) : 0;
}

int kv_add_read_conflict_range(kv_txn *t, struct kv_slice begin, struct kv_slice end)
{
	int rc = txn_check(t);

	if (rc)
		return rc;
	if (!bound_ok(begin) || !bound_ok(end) ||
	    (begin.n && end.n && kv_key_cmp(begin, end) > 0))
		return poison(t, -EINVAL);
	if (t->flags & KV_RDONLY)
		return 0;
	if (begin.n && end.n && !kv_key_cmp(begin, end))
		return 0;
	if ((rc = count_conflicts(t, 1)))
		return rc;
	rc = t->eng->ops->add_conflict(t, begin, end, 0);
	return rc < 0 ? poison(t, rc) : 0;
}

/* Common checks for a write call adding BYTES to the txn. */
static int write_check(struct kv_txn *t, size_t bytes)
{
	int rc = txn_check(t);

	if (rc)
		return rc;
	if (t->flags & KV_RDONLY)
		return poison(t, -EROFS);
	if (t->wb.ncalls + 1 > KV_MAX_WRITES || t->wb.bytes + bytes > KV_MAX_TXN_BYTES)
		return poison(t, -CFS_ETOOLARGE);
	return 0;
}

/* Sets the point for KEY (inserting it in order), copying key and VAL. */
static int put_point(struct kv_txn *t, struct kv_slice key, enum kv_wop op,
		     struct kv_slice val, int64_t delta)
{
	struct kv_wbuf *w = &t->wb;
	int i = wbuf_lower(w, key);
	struct kv_wpoint *pt;

	if (i == w->npts || kv_key_cmp(w->pts[i].key, key)) {
		/* ncalls bounds npts, so there is room. */
		memmove(&w->pts[i + 1], &w->pts[i], sizeof(w->pts[0]) * (size_t)(w->npts - i));
		w->npts++;
		if (kv_arena_dup(&t->arena, key, &w->pts[i].key)) {
			memmove(&w->pts[i], &w->pts[i + 1],
				sizeof(w->pts[0]) * (size_t)(--w->npts - i));
			return poison(t, -ENOMEM);
		}
	}
	pt = &w->pts[i];
	pt->op = op;
	pt->delta = delta;
	pt->val = (struct kv_slice){ NULL, 0 };
	if (op == KV_WOP_SET && kv_arena_dup(&t->arena, val, &pt->val)) {
		pt->op = KV_WOP_CLEAR; /* keep the buffer well-formed; txn is dead */
		return poison(t, -ENOMEM);
	}
	if (op == KV_WOP_SET && !pt->val.p)
		pt->val.p = ""; /* an empty value still reads as present */
	w->ncalls++;
	return 0;
}

int kv_set(kv_txn *t, struct kv_slice key, struct kv_slice val)
{
	int rc = write_check(t, key.n + val.n);

	if (rc)
		return rc;
	if (!key_ok(key) || val.n > KV_MAX_VALUE || (val.n && !val.p))
		return poison(t, val.n > KV_MAX_VALUE ? -CFS_ETOOLARGE : -EINVAL);
	t->wb.bytes += key.n + val.n;
	return put_point(t, key, KV_WOP_SET, val, 0);
}

int kv_clear(kv_txn *t, struct kv_slice key)
{
	int rc = write_check(t, key.n);

	if (rc)
		return rc;
	if (!key_ok(key))
		return poison(t, -EINVAL);
	t->wb.bytes += key.n;
	return put_point(t, key, KV_WOP_CLEAR, (struct kv_slice){ NULL, 0 }, 0);
}

int kv_clear_range(kv_txn *t, struct kv_slice begin, struct kv_slice end)
{
	struct kv_wbuf *w = &t->wb;
	struct kv_wrange *r;
	int rc = write_check(t, begin.n + end.n), j = 0;

	if (rc)
		return rc;
	if (!bound_ok(begin) || !bound_ok(end) ||
	    (begin.n && end.n && kv_key_cmp(begin, end) > 0))
		return poison(t, -EINVAL);
	w->ncalls++;
	w->bytes += begin.n + end.n;
	if (begin.n && end.n && !kv_key_cmp(begin, end))
		return 0;
	r = &w->ranges[w->nranges];
	if (kv_arena_dup(&t->arena, begin, &r->begin) || kv_arena_dup(&t->arena, end, &r->end))
		return poison(t, -ENOMEM);
	w->nranges++;
	/* Points written earlier inside the range are superseded by it. */
	for (int i = 0; i < w->npts; i++)
		if (!kv_in_range(w->pts[i].key, begin, end))
			w->pts[j++] = w->pts[i];
	w->npts = j;
	return 0;
}

/* kv_atomic_add and kv_atomic_max: OP with OPERAND on KEY. */
static int atomic_op(kv_txn *t, struct kv_slice key, enum kv_wop op, int64_t operand)
{
	int rc = write_check(t, key.n + 8), idx;
	struct kv_wpoint *pt;
	uint8_t v[8];

	if (rc)
		return rc;
	if (!key_ok(key))
		return poison(t, -EINVAL);
	idx = kv_wbuf_find(&t->wb, key);
	pt = idx >= 0 ? &t->wb.pts[idx] : NULL;
	if (pt && (pt->op == KV_WOP_ADD || pt->op == KV_WOP_MAX) && pt->op != op)
		return poison(t, -EINVAL); /* add then max (or back): not one op */
	t->wb.bytes += key.n + 8;
	if (pt && pt->op == op) {
		int64_t c = op == KV_WOP_ADD ? (int64_t)((uint64_t)pt->delta + (uint64_t)operand)
					     : (pt->delta > operand ? pt->delta : operand);
		return put_point(t, key, op, (struct kv_slice){ NULL, 0 }, c);
	}
	if (pt || kv_wbuf_cleared(&t->wb, key)) {
		/* The base is known inside the txn: fold into a SET. */
		int found = pt && pt->op == KV_WOP_SET;
		kv_point_apply(op, found ? pt->val.p : NULL, found ? pt->val.n : 0, found, operand,
			       v);
		return put_point(t, key, KV_WOP_SET, kv_mem(v, 8), 0);
	}
	return put_point(t, key, op, (struct kv_slice){ NULL, 0 }, operand);
}

int kv_atomic_add(kv_txn *t, struct kv_slice key, int64_t delta)
{
	return atomic_op(t, key, KV_WOP_ADD, delta);
}

int kv_atomic_max(kv_txn *t, struct kv_slice key, int64_t value)
{
	return atomic_op(t, key, KV_WOP_MAX, value);
}

int kv_commit(kv_txn *t, int64_t *version)
{
	int64_t v = -1;
	int rc = txn_check(t);

	if (version)
		*version = -1;
	if (rc) {
		t->state = KV_TXN_DONE;
		return rc;
	}
	t->state = KV_TXN_DONE;
	if ((t->flags & KV_RDONLY) || !t->wb.ncalls)
		return 0;
	rc = t->eng->ops->commit(t, &v);
	if (rc)
		return rc;
	if (version)
		*version = v;
	return 0;
}

/* ---- retry driver ------------------------------------------------------- */

int kv_is_retryable(int err, int idempotent)
{
	return err == -CFS_ECONFLICT || err == -CFS_ETOOOLD || err == -CFS_EUNAVAIL ||
	       (err == -CFS_EMAYBE && idempotent);
}

/* Per-thread xorshift state for backoff jitter; no shared state. */
static __thread uint64_t jitter_state;

static uint64_t jitter_next(void)
{
	uint64_t x = jitter_state;

	if (!x)
		x = clock_mono_ns() ^ ((uint64_t)(uintptr_t)&jitter_state << 17) ^ 0x9e3779b97f4a7c15ull;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	jitter_state = x;
	return x;
}

int kv_run(kv_engine *e, const struct kv_run_opts *opts, kv_txn_fn fn, void *arg,
	   struct kv_run_stats *stats)
{
	struct kv_run_opts o = opts ? *opts : (struct kv_run_opts){ 0 };
	uint64_t backoff;
	int rc = 0, attempt;

	if (o.max_retries <= 0)
		o.max_retries = 20;
	if (o.backoff_min_us <= 0)
		o.backoff_min_us = 100;
	if (o.backoff_max_us <= 0)
		o.backoff_max_us = 100000;
	if (o.backoff_max_us < o.backoff_min_us)
		o.backoff_max_us = o.backoff_min_us;
	backoff = (uint64_t)o.backoff_min_us;
	if (stats) {
		stats->retries = 0;
		stats->version = -1;
		stats->alone = 0;
	}
	for (attempt = 0;; attempt++) {
		kv_txn *t = NULL;
		int64_t v = -1;
		int alone = 0;

		rc = kv_begin(e, o.flags, &t);
		if (!rc) {
			rc = fn(t, arg);
			if (rc > 0)
				rc = -EINVAL; /* a body must return 0 or <0 */
			if (!rc)
				rc = kv_commit(t, &v);
			alone = !rc && v >= 0 && t->alone;
			kv_txn_free(t);
		}
		if (stats)
			stats->retries = attempt;
		if (!rc) {
			if (stats) {
				stats->version = v;
				stats->alone = alone;
			}
			return 0;
		}
		if (!kv_is_retryable(rc, o.idempotent) || attempt >= o.max_retries)
			return rc;
		{
			/* Full jitter in [backoff/2, backoff]: spreads retries of
			 * txns that conflicted with each other. */
			uint64_t us = backoff / 2 + jitter_next() % (backoff / 2 + 1);
			struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };
			block_hint_wait(); /* a FUSE thread lets another read meanwhile */
			while (nanosleep(&ts, &ts) && errno == EINTR)
				;
		}
		backoff *= 2;
		if (backoff > (uint64_t)o.backoff_max_us)
			backoff = (uint64_t)o.backoff_max_us;
	}
}
