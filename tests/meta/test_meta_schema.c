/* test_meta_schema.c - record codecs, keys and layouts of the meta service:
 * round trips, rejection of damaged bytes, key order, the shuffle's test
 * vectors and layout validation messages. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/status.h"
#include "meta/layout.h"
#include "meta/schema.h"

static void make_file(struct meta_inode *in)
{
	memset(in, 0, sizeof(*in));
	in->ino = 12345;
	in->type = META_T_FILE;
	in->mode = 04755;
	in->uid = 1000;
	in->gid = 100;
	in->nlink = 3;
	in->size = 1ULL << 40;
	in->atime = -5;
	in->mtime = 1700000000123456789LL;
	in->ctime = 42;
	in->truncate_ver = 7;
	in->chains_used = 2;
	in->has_layout = 1;
	in->layout = (struct meta_layout){ .chunk_size = 1 << 20, .stripe = 3, .table_id = 9,
					   .seed = 0xABCDEF0123456789ULL, .nchains = 3,
					   .chains = { 5, 6, 7 } };
}

static void test_inode_roundtrip(void **state)
{
	static struct meta_inode in, out;
	struct buf b = BUF_INIT;
	make_file(&in);
	assert_int_equal(meta_inode_encode(&in, &b), 0);
	assert_int_equal(meta_inode_decode(b.data, b.len, &out), 0);
	assert_int_equal(out.ino, in.ino);
	assert_int_equal(out.type, META_T_FILE);
	assert_int_equal(out.mode, 04755);
	assert_int_equal(out.nlink, 3);
	assert_true(out.size == in.size);
	assert_true(out.atime == -5 && out.mtime == in.mtime && out.ctime == 42);
	assert_int_equal(out.truncate_ver, 7);
	assert_int_equal(out.layout.stripe, 3);
	assert_int_equal(out.layout.chains[2], 7);
	assert_true(out.layout.seed == in.layout.seed);

	/* symlink and directory shapes */
	memset(&in, 0, sizeof(in));
	in.ino = 9;
	in.type = META_T_SYMLINK;
	in.mode = 0777;
	in.nlink = 1;
	strcpy(in.target, "../a/b");
	in.target_len = 6;
	assert_int_equal(meta_inode_encode(&in, &b), 0);
	assert_int_equal(meta_inode_decode(b.data, b.len, &out), 0);
	assert_string_equal(out.target, "../a/b");
	in.type = META_T_DIR;
	in.parent = 1;
	in.has_layout = 1;
	in.layout = (struct meta_layout){ .chunk_size = 65536, .stripe = 1, .table_id = 1 };
	assert_int_equal(meta_inode_encode(&in, &b), 0);
	assert_int_equal(meta_inode_decode(b.data, b.len, &out), 0);
	assert_int_equal(out.parent, 1);
	assert_int_equal(out.layout.nchains, 0);

	/* a character device keeps its rdev; a record of a type that needs
	 * rdev but ends before it is corrupt */
	memset(&in, 0, sizeof(in));
	in.ino = 10;
	in.type = META_T_CHR;
	in.mode = 0600;
	in.nlink = 1;
	in.rdev = 0x10305;
	assert_int_equal(meta_inode_encode(&in, &b), 0);
	assert_int_equal(meta_inode_decode(b.data, b.len, &out), 0);
	assert_int_equal(out.type, META_T_CHR);
	assert_true(out.rdev == 0x10305);
	in.type = META_T_FIFO;
	in.rdev = 0;
	assert_int_equal(meta_inode_encode(&in, &b), 0);
	assert_int_equal(meta_inode_decode(b.data, b.len, &out), 0);
	assert_int_equal(out.type, META_T_FIFO);
	buf_fini(&b);
}

/* meta_inode_copy gives the value (what encoding it writes) of each inode
 * shape, and leaves DST's bytes past the value alone (what makes it cheaper
 * than a struct copy). */
static void test_inode_copy(void **state)
{
	static struct meta_inode in, out;
	struct buf a = BUF_INIT, b = BUF_INIT;
	for (int shape = 0; shape < 4; shape++) {
		make_file(&in);
		if (shape == 1) {
			in.type = META_T_SYMLINK;
			in.has_layout = 0;
			in.chains_used = 0;
			memcpy(in.target, "../x/y", 7);
			in.target_len = 6;
		} else if (shape == 2) {
			in.type = META_T_DIR;
			in.parent = 1;
			in.chains_used = 0;
			in.layout.nchains = 0;
		} else if (shape == 3) {
			in.type = META_T_CHR;
			in.has_layout = 0;
			in.chains_used = 0;
			in.rdev = 0x10305;
		}
		memset(&out, 0x5A, sizeof(out));
		meta_inode_copy(&out, &in);
		assert_int_equal(meta_inode_encode(&in, &a), 0);
		assert_int_equal(meta_inode_encode(&out, &b), 0);
		assert_int_equal(a.len, b.len);
		assert_memory_equal(a.data, b.data, a.len);
		assert_int_equal(out.target[out.target_len], 0);
		assert_int_equal((uint8_t)out.target[out.target_len + 1], 0x5A);
		if (out.has_layout)
			assert_true(out.layout.chains[out.layout.nchains] == 0x5A5A5A5Au);
		else
			assert_int_equal(out.layout.nchains, 0);
	}
	buf_fini(&a);
	buf_fini(&b);
}

/* Every single-byte change and every truncation of an encoded record is
 * rejected with -CFS_ECORRUPT (the CRC covers every byte). */
static void test_inode_damage(void **state)
{
	static struct meta_inode in, out;
	struct buf b = BUF_INIT;
	make_file(&in);
	assert_int_equal(meta_inode_encode(&in, &b), 0);
	for (size_t i = 0; i < b.len; i++) {
		b.data[i] ^= 0x5A;
		assert_int_equal(meta_inode_decode(b.data, b.len, &out), -CFS_ECORRUPT);
		b.data[i] ^= 0x5A;
	}
	for (size_t n = 0; n < b.len; n++)
		assert_int_equal(meta_inode_decode(b.data, n, &out), -CFS_ECORRUPT);
	assert_int_equal(meta_inode_decode(NULL, 0, &out), -CFS_ECORRUPT);
	buf_fini(&b);
}

static void test_small_records(void **state)
{
	struct buf b = BUF_INIT;
	struct meta_dentry d = { 77, META_T_DIR }, d2;
	assert_int_equal(meta_dentry_encode(&d, &b), 0);
	assert_int_equal(meta_dentry_decode(b.data, b.len, &d2), 0);
	assert_int_equal(d2.ino, 77);
	assert_int_equal(d2.type, META_T_DIR);
	/* an inode record is not a dentry */
	b.data[3] = 'I';
	assert_int_equal(meta_dentry_decode(b.data, b.len, &d2), -CFS_ECORRUPT);

	struct meta_gc_rec g = { 5, 6, 7, 8 }, g2;
	assert_int_equal(meta_gc_encode(&g, &b), 0);
	assert_int_equal(meta_gc_decode(b.data, b.len, &g2), 0);
	assert_int_equal(g2.claim_owner, 7);

	struct meta_idem_rec r = { 3, -ENOENT, 9, 10, 11 }, r2;
	assert_int_equal(meta_idem_encode(&r, &b), 0);
	assert_int_equal(meta_idem_decode(b.data, b.len, &r2), 0);
	assert_int_equal(r2.result, -ENOENT);
	assert_int_equal(r2.aux, 10);

	struct meta_session_rec s = { 1, 2, 3 }, s2;
	assert_int_equal(meta_session_encode(&s, &b), 0);
	assert_int_equal(meta_session_decode(b.data, b.len, &s2), 0);
	assert_int_equal(s2.session, 2);

	const uint8_t *v;
	uint32_t n;
	assert_int_equal(meta_xattr_encode("hello", 5, &b), 0);
	assert_int_equal(meta_xattr_decode(b.data, b.len, &v, &n), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(v, "hello", 5);
	assert_int_equal(meta_xattr_encode("x", META_XATTR_VALUE_MAX + 1, &b), -EINVAL);

	uint64_t next;
	assert_int_equal(meta_idalloc_encode(4096, &b), 0);
	assert_int_equal(meta_idalloc_decode(b.data, b.len, &next), 0);
	assert_int_equal(next, 4096);
	assert_int_equal(meta_idalloc_encode(3, &b), 0);
	assert_int_equal(meta_idalloc_decode(b.data, b.len, &next), -CFS_ECORRUPT);
	buf_fini(&b);
}

/* Dentries of one directory sort together and by name; ids sort
 * numerically (big-endian). */
static void test_key_order(void **state)
{
	struct meta_key a, b, lo, hi;
	meta_key_dentry(&a, 255, "zzz", 3);
	meta_key_dentry(&b, 256, "aaa", 3);
	assert_true(memcmp(a.b, b.b, 12) < 0);
	meta_key_dir_range(&lo, &hi, 255);
	assert_true(memcmp(lo.b, a.b, lo.n) == 0);
	assert_true(memcmp(a.b, hi.b, hi.n) < 0);
	assert_true(memcmp(b.b, hi.b, hi.n) >= 0);
	meta_key_inode(&a, 1);
	assert_int_equal(a.n, 12);
	assert_memory_equal(a.b, "INOD\0\0\0\0\0\0\0\1", 12);
	meta_key_prefix_range(&lo, &hi, "INOD");
	assert_memory_equal(hi.b, "INOE", 4);
}

static void test_shuffle_vectors(void **state)
{
	uint64_t s = 0;
	assert_true(meta_splitmix64(&s) == 0xE220A8397B1DCDAFULL);
	assert_true(meta_splitmix64(&s) == 0x6E789E6AA1B965F4ULL);
	assert_true(meta_splitmix64(&s) == 0x06C45D188009454FULL);
	uint32_t p[16];
	static const uint32_t v0[8] = { 2, 5, 0, 3, 4, 6, 1, 7 };
	static const uint32_t v42[5] = { 1, 2, 0, 4, 3 };
	static const uint32_t vdb[16] = { 10, 13, 2, 8, 4, 12, 6, 5, 9, 7, 3, 0, 1, 15, 14, 11 };
	meta_layout_perm(0, 8, p);
	assert_memory_equal(p, v0, sizeof(v0));
	meta_layout_perm(42, 5, p);
	assert_memory_equal(p, v42, sizeof(v42));
	meta_layout_perm(0xDEADBEEFULL, 16, p);
	assert_memory_equal(p, vdb, sizeof(vdb));
	meta_layout_perm(1, 1, p);
	assert_int_equal(p[0], 0);
	/* every perm is a permutation */
	for (uint32_t n = 1; n <= 64; n++) {
		uint32_t q[64];
		uint8_t seen[64] = { 0 };
		meta_layout_perm(n * 7919ULL, n, q);
		for (uint32_t i = 0; i < n; i++) {
			assert_true(q[i] < n);
			assert_false(seen[q[i]]);
			seen[q[i]] = 1;
		}
	}
}

static int table(void *arg, uint32_t id, uint32_t *chains, uint32_t cap)
{
	if (id != 3)
		return -ENOENT;
	for (uint32_t i = 0; i < 5 && i < cap; i++)
		chains[i] = 10 + i;
	return 5;
}

static int big_calls; /* calls of big_table */

/* Table 7: 300 chains 1000..1299 (past meta_layout_assign's stack copy);
 * table 8: 5 chains 20..24. Counts its calls. */
static int big_table(void *arg, uint32_t id, uint32_t *chains, uint32_t cap)
{
	big_calls++;
	uint32_t n = id == 7 ? 300 : id == 8 ? 5 : 0;
	if (!n)
		return -ENOENT;
	uint32_t base = id == 7 ? 1000 : 20;
	for (uint32_t i = 0; i < n && i < cap; i++)
		chains[i] = base + i;
	return (int)n;
}

/* meta_layout_assign asks the view once for a table that fits its stack
 * copy (the lock of every create's routing lookup), and takes a larger
 * table whole. */
static void test_layout_assign_table_size(void **state)
{
	struct meta_chain_view v = { NULL, big_table };
	struct meta_layout l = { .chunk_size = 1 << 20, .stripe = 3, .table_id = 8 }, f;
	char err[128];
	big_calls = 0;
	assert_int_equal(meta_layout_assign(&l, &v, 4, 1, &f, err, sizeof(err)), 0);
	assert_int_equal(big_calls, 1);
	assert_int_equal(f.chains[0], 24);
	assert_int_equal(f.chains[1], 20);
	assert_int_equal(f.chains[2], 21);
	/* 298, 299, then 0: the whole 300-chain table, not its first 256 */
	l.table_id = 7;
	assert_int_equal(meta_layout_assign(&l, &v, 298, 1, &f, err, sizeof(err)), 0);
	assert_int_equal(f.chains[0], 1298);
	assert_int_equal(f.chains[1], 1299);
	assert_int_equal(f.chains[2], 1000);
	l.table_id = 9;
	assert_int_equal(meta_layout_assign(&l, &v, 0, 1, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown chain table 9"));
	l.table_id = 8;
	l.stripe = 6;
	assert_int_equal(meta_layout_assign(&l, &v, 0, 1, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "larger than chain table"));
}

static void test_layout_validate(void **state)
{
	struct meta_chain_view v = { NULL, table };
	struct meta_layout l = { .chunk_size = 1 << 20, .stripe = 2, .table_id = 3 }, f;
	char err[128];
	assert_int_equal(meta_layout_validate(&l, &v, err, sizeof(err)), 0);
	l.chunk_size = 3 << 16;
	assert_int_equal(meta_layout_validate(&l, &v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a power of two"));
	l.chunk_size = 32768;
	assert_int_equal(meta_layout_validate(&l, &v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "out of range"));
	l.chunk_size = 128u << 20;
	assert_int_equal(meta_layout_validate(&l, &v, err, sizeof(err)), -EINVAL);
	l.chunk_size = 64u << 20;
	assert_int_equal(meta_layout_validate(&l, &v, err, sizeof(err)), 0);
	l.stripe = 0;
	assert_int_equal(meta_layout_validate(&l, &v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "stripe size 0"));
	l.stripe = 6;
	assert_int_equal(meta_layout_validate(&l, &v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "larger than chain table"));
	l.stripe = 2;
	l.table_id = 4;
	assert_int_equal(meta_layout_validate(&l, &v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown chain table 4"));

	/* round robin: cursor 4 over 5 chains with stripe 3 -> 14, 10, 11 */
	l.table_id = 3;
	l.stripe = 3;
	assert_int_equal(meta_layout_assign(&l, &v, 4, 99, &f, err, sizeof(err)), 0);
	assert_int_equal(f.nchains, 3);
	assert_int_equal(f.chains[0], 14);
	assert_int_equal(f.chains[1], 10);
	assert_int_equal(f.chains[2], 11);
	assert_true(f.seed == 99);
	uint32_t p[3];
	meta_layout_perm(99, 3, p);
	for (uint32_t i = 0; i < 9; i++)
		assert_int_equal(meta_layout_chain(&f, p, i), f.chains[p[i % 3]]);

	uint8_t id[META_CHUNK_ID_LEN];
	meta_chunk_id(0x0102030405060708ULL, 0x0A0B0C0D, id);
	assert_memory_equal(id, "\1\2\3\4\5\6\7\x08\x0A\x0B\x0C\x0D", 12);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inode_roundtrip),
		cmocka_unit_test(test_inode_copy),
		cmocka_unit_test(test_inode_damage),
		cmocka_unit_test(test_small_records),
		cmocka_unit_test(test_key_order),
		cmocka_unit_test(test_shuffle_vectors),
		cmocka_unit_test(test_layout_validate),
		cmocka_unit_test(test_layout_assign_table_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
