/* fuzz_kv_txn.c - differential fuzzing of the KV write buffer and merge.
 *
 * The input is a program of txn operations over a small key space (39
 * keys: "a".."ccc"), run against a mem:// engine and, in parallel, a naive
 * model (an array of optional values per key). Every read compares the
 * engine's answer with the model's: point gets (read-your-writes, pending
 * atomic adds), and range reads walked to the end with a small limit,
 * forward or reverse, through kv_range_continue (the merge of stored pairs
 * with buffered sets, clears, clear_ranges and adds, window by window).
 * Commits and aborts move the model's committed state. The write limit is
 * exercised too: the 65th write must fail with -CFS_ETOOLARGE.
 * Any mismatch aborts (a crash for libFuzzer and for the replay test).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "kv/kv.h"

#define NK 39

struct model {
	int has[NK];
	uint8_t val[NK][8];
	int len[NK];
};

static void key_of(int id, char *k, size_t *n)
{
	/* ids ordered like kv_key_cmp: depth-first over "abc" */
	static char keys[NK][4];
	static size_t lens[NK];
	static int built;

	if (!built) {
		int i = 0;
		for (int a = 0; a < 3; a++) {
			keys[i][0] = (char)('a' + a);
			lens[i++] = 1;
			for (int b = 0; b < 3; b++) {
				keys[i][0] = (char)('a' + a);
				keys[i][1] = (char)('a' + b);
				lens[i++] = 2;
				for (int c = 0; c < 3; c++) {
					keys[i][0] = (char)('a' + a);
					keys[i][1] = (char)('a' + b);
					keys[i][2] = (char)('a' + c);
					lens[i++] = 3;
				}
			}
		}
		built = 1;
	}
	memcpy(k, keys[id], lens[id]);
	*n = lens[id];
}

#define CHECK(c)                                                              \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "fuzz_kv_txn: %s:%d: %s\n", __FILE__, \
				__LINE__, #c);                                \
			abort();                                              \
		}                                                             \
	} while (0)

struct in {
	const uint8_t *p;
	size_t n;
};

static int next(struct in *in)
{
	if (!in->n)
		return -1;
	in->n--;
	return *in->p++;
}

static int key_id_of(struct kv_slice s)
{
	char k[4];
	size_t n;

	for (int i = 0; i < NK; i++) {
		key_of(i, k, &n);
		if (n == s.n && !memcmp(k, s.p, n))
			return i;
	}
	return -1;
}

/* Range bound: id -1 means unbounded. */
static struct kv_slice bound(int id, char *buf)
{
	size_t n;

	if (id < 0)
		return kv_mem(NULL, 0);
	key_of(id, buf, &n);
	return kv_mem(buf, n);
}

static void check_range(kv_txn *t, const struct model *m, int b, int e, int limit, int reverse)
{
	char bb[4], eb[4];
	struct kv_slice bs = bound(b, bb), es = bound(e, eb);
	int want[NK], nw = 0, got = 0;
	struct kv_range r;

	for (int i = 0; i < NK; i++) {
		int id = reverse ? NK - 1 - i : i;
		if ((b < 0 || id >= b) && (e < 0 || id < e) && m->has[id])
			want[nw++] = id;
	}
	for (int rounds = 0; rounds <= NK + 1; rounds++) {
		CHECK(kv_get_range(t, bs, es, limit, 1, reverse, &r) == 0);
		CHECK(limit <= 0 || r.n <= limit);
		for (int i = 0; i < r.n; i++, got++) {
			int id = key_id_of(r.kvs[i].key);
			CHECK(got < nw && id == want[got]);
			CHECK((int)r.kvs[i].val.n == m->len[id]);
			CHECK(!m->len[id] || !memcmp(r.kvs[i].val.p, m->val[id], (size_t)m->len[id]));
		}
		if (!r.has_more)
			break;
		CHECK(r.n > 0);
		CHECK(kv_range_continue(t, &r, reverse, &bs, &es) == 0);
	}
	CHECK(got == nw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct model committed, cur;
	kv_engine *e;
	kv_txn *t;
	char err[128];
	int writes = 0, op;

	if (kv_open("mem://", &e, err, sizeof(err)))
		abort();
	memset(&committed, 0, sizeof(committed));
	cur = committed;
	CHECK(kv_begin(e, 0, &t) == 0);
	while ((op = next(&in)) >= 0) {
		int a = next(&in), b = next(&in);
		char kb[4];
		size_t kn;
		int id = (a < 0 ? 0 : a) % NK, rc = 0;

		key_of(id, kb, &kn);
		switch (op % 8) {
		case 0: { /* set, value of 0..3 bytes */
			uint8_t v[3] = { (uint8_t)b, (uint8_t)(b * 7), (uint8_t)(b * 13) };
			int vn = b < 0 ? 0 : b % 4;
			rc = kv_set(t, kv_mem(kb, kn), kv_mem(v, (size_t)vn));
			if (writes < KV_MAX_WRITES) {
				cur.has[id] = 1;
				cur.len[id] = vn;
				memcpy(cur.val[id], v, (size_t)vn);
			}
			break;
		}
		case 1:
			rc = kv_clear(t, kv_mem(kb, kn));
			if (writes < KV_MAX_WRITES)
				cur.has[id] = 0;
			break;
		case 2: { /* clear_range [id, id2) or to the end */
			int id2 = b < 0 ? -1 : b % (NK + 1) - 1;
			char eb[4];
			if (id2 >= 0 && id2 < id) {
				int x = id2;
				id2 = id;
				id = x;
				key_of(id, kb, &kn);
			}
			rc = kv_clear_range(t, kv_mem(kb, kn), bound(id2, eb));
			for (int i = id; writes < KV_MAX_WRITES && i < (id2 < 0 ? NK : id2); i++)
				cur.has[i] = 0;
			break;
		}
		case 3: { /* atomic add of a small delta */
			int64_t d = (int8_t)(b < 0 ? 1 : b);
			rc = kv_atomic_add(t, kv_mem(kb, kn), d);
			if (writes < KV_MAX_WRITES) {
				uint64_t x = 0;
				if (cur.has[id])
					for (int i = 0; i < cur.len[id] && i < 8; i++)
						x |= (uint64_t)cur.val[id][i] << (8 * i);
				x += (uint64_t)d;
				for (int i = 0; i < 8; i++)
					cur.val[id][i] = (uint8_t)(x >> (8 * i));
				cur.has[id] = 1;
				cur.len[id] = 8;
			}
			break;
		}
		case 4: { /* point get */
			struct kv_slice v;
			int g = kv_get(t, kv_mem(kb, kn), 1, &v);
			CHECK(g == cur.has[id]);
			if (g) {
				CHECK((int)v.n == cur.len[id]);
				CHECK(!v.n || !memcmp(v.p, cur.val[id], v.n));
			}
			continue;
		}
		case 5: { /* range walk with continuation */
			int lim = b < 0 ? 0 : b % 6, e2 = b < 0 ? -1 : (b >> 3) % (NK + 1) - 1;
			int lo = id, hi = e2;
			if (hi >= 0 && hi < lo) {
				lo = e2;
				hi = id;
			}
			if (b >= 0 && (b & 0x80))
				lo = -1;
			check_range(t, &cur, lo, hi, lim, b >= 0 && (b & 0x40));
			continue;
		}
		case 6: /* commit */
			rc = kv_commit(t, NULL);
			CHECK(rc == 0);
			committed = cur;
			kv_txn_free(t);
			CHECK(kv_begin(e, 0, &t) == 0);
			writes = 0;
			continue;
		default: /* abort */
			kv_txn_free(t);
			cur = committed;
			CHECK(kv_begin(e, 0, &t) == 0);
			writes = 0;
			continue;
		}
		writes++;
		if (writes > KV_MAX_WRITES) {
			CHECK(rc == -CFS_ETOOLARGE);
			/* The txn is poisoned: every call now fails the same way. */
			kv_txn_free(t);
			cur = committed;
			CHECK(kv_begin(e, 0, &t) == 0);
			writes = 0;
		} else {
			CHECK(rc == 0);
		}
	}
	kv_txn_free(t);
	kv_close(e);
	return 0;
}
