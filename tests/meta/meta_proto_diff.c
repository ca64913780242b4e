/* meta_proto_diff.c - differential check of the meta codecs: another
 * revision's meta_proto.c (compiled with its symbols renamed old_*, against
 * this tree's meta_proto.h) against this tree's. Built and run by
 * scripts/meta-proto-diff.sh REV; not part of the CMake build (it needs the
 * other revision's file).
 *
 * For every named type (both sides must name the same ones) and a set of
 * unknown ones, random requests and replies are encoded by both and must
 * give the same bytes and return code; every encoding, each of its truncations, byte
 * mutations and appended bytes, plus the fuzz corpus, decode through both
 * with the same return code, decoded struct and caller memory (error paths
 * included); what decodes re-encodes to the same bytes. Use it when a
 * switch-style message from another branch becomes a table row: the bytes
 * must not move. Known difference: this tree's encoders refuse a type
 * without a row (-EINVAL, nothing appended). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

#include "common/buf.h"
#include "meta/meta_proto.h"

const char *old_meta_rpc_name(uint16_t type);
int old_meta_rpc_is_mutation(uint16_t type);
int old_meta_rpc_req_encode(struct buf *b, const struct meta_rpc_req *m);
int old_meta_rpc_req_decode(uint16_t type, const void *p, size_t n, struct meta_rpc_req *m);
int old_meta_rpc_resp_encode(struct buf *b, const struct meta_rpc_resp *m);
int old_meta_rpc_resp_decode(const void *p, size_t n, struct meta_rpc_resp *m);
int old_meta_rpc_plus_put(struct buf *b, const struct meta_dirent *de, const struct meta_inode *in);
int old_meta_rpc_plus_next(const uint8_t **p, size_t *n, struct meta_dirent *de,
			   struct meta_inode *in);

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static uint64_t rn(uint64_t n) { return n ? rnd() % n : 0; }
static uint64_t rval(void)
{
	switch (rn(6)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return rn(300);
	case 3: return UINT64_MAX - rn(3);
	default: return rnd();
	}
}

static long n_unknown, n_enc, n_dec, n_dec_ok, n_names;
static long ok_req[65536], ok_resp[65536];
static uint64_t hash = 1469598103934665603ull;
static void hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) { hash ^= b[i]; hash *= 1099511628211ull; }
}

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

static uint8_t pool[1 << 17];
static char namebuf[4][5000];

static const uint16_t types_extra[] = { 0, 199, 225, 229, 233, 239, 241, 243, 250, 259, 263, 264, 268, 279, 300, 65535 };
static uint16_t all_types[64];
static int ntypes;

static void rand_inode(struct meta_inode *in)
{
	memset(in, 0, sizeof(*in));
	in->ino = rval();
	in->type = (uint8_t)(rn(8) ? 1 + rn(7) : rn(256));
	in->mode = (uint32_t)rval(); in->uid = (uint32_t)rval(); in->gid = (uint32_t)rval();
	in->nlink = (uint32_t)rval(); in->size = rval();
	in->atime = (int64_t)rval(); in->mtime = (int64_t)rval(); in->ctime = (int64_t)rval();
	in->truncate_ver = rval(); in->chains_used = (uint32_t)rval(); in->parent = rval();
	in->has_layout = (int)rn(3);
	in->idata = (int)rn(3);
	in->layout.chunk_size = (uint32_t)rval(); in->layout.stripe = (uint32_t)rval();
	in->layout.table_id = (uint32_t)rval(); in->layout.seed = rval();
	in->layout.nchains = (uint32_t)(rn(10) ? rn(5) : rn(400));
	for (int i = 0; i < META_MAX_STRIPE; i++) in->layout.chains[i] = (uint32_t)rnd();
	in->target_len = (uint32_t)(rn(10) ? rn(20) : rn(5000));
	for (uint32_t i = 0; i < sizeof(in->target); i++) in->target[i] = (char)('a' + rn(26));
	in->rdev = rval();
}

static struct meta_name rand_name(int k)
{
	size_t n = rn(8) ? rn(20) : rn(300);
	for (size_t i = 0; i < n; i++) namebuf[k][i] = (char)('a' + rn(26));
	return (struct meta_name){ namebuf[k], n };
}

static void rand_req(uint16_t t, struct meta_rpc_req *m)
{
	memset(m, 0, sizeof(*m));
	m->type = t;
	m->uid = (uint32_t)rval(); m->gid = (uint32_t)rval();
	m->ngroups = (uint32_t)(rn(10) ? rn(4) : rn(300));
	for (int i = 0; i < META_RPC_GROUPS_MAX; i++) m->groups[i] = (uint32_t)rnd();
	m->client = rval(); m->seq = rval(); m->ino = rval(); m->ino2 = rval();
	m->name = rand_name(0); m->name2 = rand_name(1);
	m->mode = (uint32_t)rval(); m->flags = (uint32_t)rval();
	m->count = (uint32_t)(rn(3) ? rn(4) : rval());
	m->rdev = rval();
	m->data_len = (uint32_t)(rn(8) ? rn(40) : rn(sizeof(pool)));
	if (rn(4) == 0) m->data_len &= ~7u;
	m->data = rn(20) ? pool + rn(64) : NULL;
	if (!m->data) m->data_len = 0;
	m->has_len = (int)rn(3);
	m->len.length = rval(); m->len.truncate_ver = rval();
	m->query = (int)rn(3);
	m->sa = (struct meta_setattr){ (unsigned)rval(), (uint32_t)rval(), (uint32_t)rval(),
				       (uint32_t)rval(), rval(), (int64_t)rval(), (int64_t)rval(),
				       (int64_t)rval() };
	m->chunk_size = (uint32_t)rval(); m->stripe = (uint32_t)rval(); m->table_id = (uint32_t)rval();
	m->lock = (struct meta_lock){ rval(), rval(), (uint32_t)rval(), (uint8_t)rn(4), (uint8_t)rn(4),
				      rn(2) ? rn(100) : rval(), rn(2) ? 100 + rn(100) : rval() };
	m->off = rval(); m->ver = rval();
}

static struct meta_inode g_in, g_dir;
static struct meta_dirent g_ents[8];
static struct meta_layout g_lay;
static struct buf g_plus;

static void rand_resp(uint16_t t, struct meta_rpc_resp *r)
{
	memset(r, 0, sizeof(*r));
	r->type = t;
	rand_inode(&g_in);
	rand_inode(&g_dir);
	r->inode = rn(30) ? &g_in : NULL;
	r->dir = rn(30) ? &g_dir : NULL;
	r->session = rval(); r->size = rval();
	r->data_len = (uint32_t)(rn(8) ? rn(40) : rn(sizeof(pool)));
	if (rn(4) == 0) r->data_len &= ~7u;
	r->data = pool + rn(64);
	r->n = (int)rn(6);
	for (int i = 0; i < 8; i++) {
		g_ents[i].ino = rval();
		g_ents[i].type = (uint8_t)rn(5);
		g_ents[i].name_len = (uint8_t)rn(rn(10) ? 20 : 256);
		for (int j = 0; j < g_ents[i].name_len; j++) g_ents[i].name[j] = (char)('a' + rn(26));
		g_ents[i].name[g_ents[i].name_len] = 0;
	}
	r->ents = g_ents;
	r->eof = (int)rn(3);
	r->statfs = (struct meta_statfs){ rval(), rval(), rval() };
	r->has_layout = (int)rn(3);
	rand_inode(&g_dir); /* fresh layout source */
	g_lay = g_dir.layout;
	rand_inode(&g_dir);
	r->layout = &g_lay;
	r->instance_id = rval(); r->threads = (uint32_t)rval();
	r->has_lock = (int)rn(3);
	r->lock = (struct meta_lock){ rval(), rval(), (uint32_t)rval(), (uint8_t)rn(4), (uint8_t)rn(4),
				      rn(2) ? rn(100) : rval(), rn(2) ? 100 + rn(100) : rval() };
	r->has_idata = (int)rn(3);
	r->idata_ver = rval(); r->idata_flags = (uint32_t)rval();
	r->idata = pool + rn(64);
	r->idata_len = (uint32_t)(rn(8) ? rn(40) : rn(70000));
	if (t == META_RPC_LOOKUP_PLUS && rn(4)) {
		/* well-formed entries so that the decoders accept it */
		buf_reset(&g_plus);
		int k = (int)rn(4);
		for (int i = 0; i < k; i++) {
			struct meta_inode in;
			struct meta_dirent de = g_ents[i];
			rand_inode(&in);
			in.type = (uint8_t)(1 + rn(6));
			if (in.layout.nchains > META_MAX_STRIPE) in.layout.nchains = 2;
			if (in.target_len > META_SYMLINK_MAX) in.target_len = 3;
			if (de.name_len == 0) de.name_len = 1;
			if (old_meta_rpc_plus_put(&g_plus, &de, &in)) FAIL("plus_put");
		}
		r->data = g_plus.data;
		r->data_len = (uint32_t)g_plus.len;
		r->n = rn(5) ? k : (int)rn(5);
	}
}

/* ---- decode comparison ---- */

static struct meta_rpc_req q_old, q_new;
static void cmp_req_decode(uint16_t t, const uint8_t *p, size_t n)
{
	int a = old_meta_rpc_req_decode(t, p, n, &q_old);
	int b = meta_rpc_req_decode(t, p, n, &q_new);
	n_dec++;
	if (a != b)
		FAIL("req decode type %u len %zu: old %d new %d", t, n, a, b);
	if (memcmp(&q_old, &q_new, sizeof(q_old)))
		FAIL("req decode type %u len %zu rc %d: structs differ", t, n, a);
	if (a)
		return;
	n_dec_ok++;
	ok_req[t]++;
	struct buf b1 = BUF_INIT, b2 = BUF_INIT;
	a = old_meta_rpc_req_encode(&b1, &q_old);
	b = meta_rpc_req_encode(&b2, &q_new);
	if (a != b || b1.len != b2.len || (b1.len && memcmp(b1.data, b2.data, b1.len)))
		FAIL("req re-encode type %u differs", t);
	buf_fini(&b1);
	buf_fini(&b2);
}

static struct meta_inode c_in, c_dir, s_in, s_dir;
static struct meta_dirent c_ents[8], s_ents[8];
static struct meta_layout c_lay, s_lay;

static void caller_fill(void)
{
	memset(&c_in, 0xA5, sizeof(c_in));
	memset(&c_dir, 0x5A, sizeof(c_dir));
	memset(c_ents, 0x3C, sizeof(c_ents));
	memset(&c_lay, 0xC3, sizeof(c_lay));
}

static void cmp_resp_decode(uint16_t t, const uint8_t *p, size_t n, int variant)
{
	struct meta_rpc_resp ro, rn_;
	for (int k = 0; k < 2; k++) {
		struct meta_rpc_resp *r = k ? &rn_ : &ro;
		memset(r, 0x77, sizeof(*r));
		r->type = t;
		r->inode = variant & 1 ? NULL : &c_in;
		r->dir = variant & 2 ? NULL : &c_dir;
		r->layout = variant & 4 ? NULL : &c_lay;
		r->ents = variant & 8 ? NULL : c_ents;
		r->ents_cap = variant & 16 ? 2 : 8;
	}
	caller_fill();
	int a = old_meta_rpc_resp_decode(p, n, &ro);
	s_in = c_in; s_dir = c_dir; s_lay = c_lay; memcpy(s_ents, c_ents, sizeof(s_ents));
	caller_fill();
	int b = meta_rpc_resp_decode(p, n, &rn_);
	n_dec++;
	if (a != b)
		FAIL("resp decode type %u len %zu variant %d: old %d new %d", t, n, variant, a, b);
	if (memcmp(&ro, &rn_, sizeof(ro)))
		FAIL("resp decode type %u len %zu variant %d rc %d: structs differ", t, n, variant, a);
	if (memcmp(&s_in, &c_in, sizeof(c_in)) || memcmp(&s_dir, &c_dir, sizeof(c_dir)) ||
	    memcmp(&s_lay, &c_lay, sizeof(c_lay)) || memcmp(s_ents, c_ents, sizeof(c_ents)))
		FAIL("resp decode type %u len %zu variant %d rc %d: caller memory differs", t, n, variant, a);
	if (a)
		return;
	n_dec_ok++;
	ok_resp[t]++;
	if (variant & 15) /* a NULL caller pointer: nothing to re-encode from */
		return;
	struct buf b1 = BUF_INIT, b2 = BUF_INIT;
	a = old_meta_rpc_resp_encode(&b1, &ro);
	b = meta_rpc_resp_encode(&b2, &rn_);
	if (a != b || b1.len != b2.len || (b1.len && memcmp(b1.data, b2.data, b1.len)))
		FAIL("resp re-encode type %u differs (%d %d)", t, a, b);
	buf_fini(&b1);
	buf_fini(&b2);
}

static void mutations(uint16_t t, int resp, const uint8_t *p, size_t n)
{
	static uint8_t tmp[1 << 18];
	if (n > sizeof(tmp)) n = sizeof(tmp);
	/* every truncation (long messages: the first 600 and a sample) */
	for (size_t l = 0; l <= n; l++) {
		if (l > 600 && l != n && rn(64)) continue;
		if (resp) cmp_resp_decode(t, p, l, (int)rn(32));
		else cmp_req_decode(t, p, l);
	}
	/* byte mutations */
	for (int k = 0; k < 24 && n; k++) {
		memcpy(tmp, p, n);
		size_t i = rn(n);
		static const uint8_t vals[] = { 0, 1, 2, 3, 7, 8, 0x7f, 0x80, 0xff };
		tmp[i] = rn(2) ? vals[rn(sizeof(vals))] : (uint8_t)rnd();
		if (rn(3) == 0) tmp[rn(n)] = (uint8_t)rnd();
		size_t l = rn(4) ? n : rn(n + 1);
		if (resp) cmp_resp_decode(t, tmp, l, (int)rn(32));
		else cmp_req_decode(t, tmp, l);
	}
	/* appended trailing bytes */
	if (n) memcpy(tmp, p, n);
	for (int k = 0; k < 12 && n + k < sizeof(tmp); k++) tmp[n + k] = (uint8_t)rn(3);
	for (int k = 1; k < 12; k++) {
		if (resp) cmp_resp_decode(t, tmp, n + k, (int)rn(32));
		else cmp_req_decode(t, tmp, n + k);
	}
}

static void corpus(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	static uint8_t data[1 << 18];
	int files = 0;
	if (!d) FAIL("corpus %s", dir);
	while ((e = readdir(d))) {
		char path[4096];
		if (e->d_name[0] == '.') continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		FILE *f = fopen(path, "rb");
		if (!f) continue;
		size_t n = fread(data, 1, sizeof(data), f);
		fclose(f);
		files++;
		if (n < 2) continue;
		/* every type, both directions */
		for (int i = 0; i < ntypes; i++) {
			cmp_req_decode(all_types[i], data + 2, n - 2);
			for (int v = 0; v < 32; v += 3) cmp_resp_decode(all_types[i], data + 2, n - 2, v);
		}
		mutations(all_types[0], data[1] & 1, data + 2, n - 2);
	}
	closedir(d);
	printf("corpus files: %d\n", files);
}

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 200;
	for (size_t i = 0; i < sizeof(pool); i++) pool[i] = (uint8_t)rnd();
	/* names and mutation flags of every 16-bit type */
	for (uint32_t t = 0; t <= 65535; t++) {
		const char *a = old_meta_rpc_name((uint16_t)t), *b = meta_rpc_name((uint16_t)t);
		if ((a == NULL) != (b == NULL) || (a && strcmp(a, b)))
			FAIL("name of %u: %s vs %s", t, a ? a : "-", b ? b : "-");
		if (old_meta_rpc_is_mutation((uint16_t)t) != meta_rpc_is_mutation((uint16_t)t))
			FAIL("is_mutation of %u", t);
		if (a && ntypes < 64) all_types[ntypes++] = (uint16_t)t;
		n_names++;
	}
	printf("types with a name: %d\n", ntypes);
	int nall = ntypes;
	for (size_t i = 0; i < sizeof(types_extra) / sizeof(types_extra[0]); i++)
		all_types[nall++] = types_extra[i];

	long per_type_req[64] = { 0 }, per_type_resp[64] = { 0 };
	for (int ti = 0; ti < nall; ti++) {
		uint16_t t = all_types[ti];
		for (int it = 0; it < iters; it++) {
			static struct meta_rpc_req m;
			struct meta_rpc_resp r;
			struct buf b1 = BUF_INIT, b2 = BUF_INIT;
			rand_req(t, &m);
			int a = old_meta_rpc_req_encode(&b1, &m);
			int b = meta_rpc_req_encode(&b2, &m);
			n_enc++;
			if (!meta_rpc_name(t)) {
				if (b != -EINVAL || b2.len) FAIL("unknown req type %u encoded", t);
				n_unknown++;
			} else if (a != b || b1.len != b2.len || (b1.len && memcmp(b1.data, b2.data, b1.len)))
				FAIL("req encode type %u iter %d: rc %d/%d len %zu/%zu", t, it, a, b, b1.len, b2.len);
			hash_bytes(&t, 2); hash_bytes(&a, sizeof(a)); hash_bytes(b1.data, b1.len);
			if (!a) per_type_req[ti]++;
			if (it % 4 == 0) mutations(t, 0, b1.data, b1.len);
			else cmp_req_decode(t, b1.data, b1.len);
			buf_fini(&b1);
			buf_fini(&b2);

			rand_resp(t, &r);
			a = old_meta_rpc_resp_encode(&b1, &r);
			b = meta_rpc_resp_encode(&b2, &r);
			n_enc++;
			if (!meta_rpc_name(t)) {
				if (b != -EINVAL || b2.len) FAIL("unknown resp type %u encoded", t);
				n_unknown++;
			} else if (a != b || b1.len != b2.len || (b1.len && memcmp(b1.data, b2.data, b1.len)))
				FAIL("resp encode type %u iter %d: rc %d/%d len %zu/%zu", t, it, a, b, b1.len, b2.len);
			hash_bytes(&t, 2); hash_bytes(&a, sizeof(a)); hash_bytes(b1.data, b1.len);
			if (!a) per_type_resp[ti]++;
			if (it % 4 == 0) mutations(t, 1, b1.data, b1.len);
			else for (int v = 0; v < 32; v += 5) cmp_resp_decode(t, b1.data, b1.len, v);
			buf_fini(&b1);
			buf_fini(&b2);
		}
	}
	for (int ti = 0; ti < nall; ti++)
		if (ti < ntypes && (!per_type_req[ti] || !per_type_resp[ti]))
			FAIL("type %u: no successful encode (req %ld resp %ld)", all_types[ti],
			     per_type_req[ti], per_type_resp[ti]);
	/* LOOKUP_PLUS entries directly */
	for (int it = 0; it < iters * 20; it++) {
		struct meta_inode in, o1, o2;
		struct meta_dirent de = g_ents[it % 8], d1, d2;
		struct buf b1 = BUF_INIT, b2 = BUF_INIT;
		rand_inode(&in);
		if (rn(2)) { in.type = (uint8_t)(1 + rn(6)); in.layout.nchains %= 5; in.target_len %= 9; }
		int a = old_meta_rpc_plus_put(&b1, &de, &in), b = meta_rpc_plus_put(&b2, &de, &in);
		n_enc++;
		if (a != b || b1.len != b2.len || memcmp(b1.data, b2.data, b1.len))
			FAIL("plus_put differs");
		for (size_t l = 0; l <= b1.len; l += 1 + rn(8)) {
			const uint8_t *p1 = b1.data, *p2 = b1.data;
			size_t n1 = l, n2 = l;
			memset(&o1, 0x11, sizeof(o1)); memset(&o2, 0x11, sizeof(o2));
			memset(&d1, 0x22, sizeof(d1)); memset(&d2, 0x22, sizeof(d2));
			a = old_meta_rpc_plus_next(&p1, &n1, &d1, &o1);
			b = meta_rpc_plus_next(&p2, &n2, &d2, &o2);
			n_dec++;
			if (a != b || p1 != p2 || n1 != n2 || memcmp(&o1, &o2, sizeof(o1)) || memcmp(&d1, &d2, sizeof(d1)))
				FAIL("plus_next differs at len %zu", l);
		}
		buf_fini(&b1); buf_fini(&b2);
	}
	if (argc > 2)
		corpus(argv[2]);
	printf("types compared: %d named + %zu unknown; encodings compared: %ld; decodes compared: %ld (%ld accepted)\n",
	       ntypes, sizeof(types_extra) / sizeof(types_extra[0]), n_enc, n_dec, n_dec_ok);
	for (int ti = 0; ti < ntypes; ti++) {
		printf("%s:%ld/%ld ", meta_rpc_name(all_types[ti]), ok_req[all_types[ti]], ok_resp[all_types[ti]]);
		if (!ok_req[all_types[ti]] || !ok_resp[all_types[ti]])
			FAIL("\ntype %u never decoded successfully", all_types[ti]);
	}
	printf("\n");
	printf("unknown-type encodes refused by the new code (old: header bytes or empty): %ld\n", n_unknown);
	printf("hash of old encodings: %016llx\n", (unsigned long long)hash);
	return 0;
}
