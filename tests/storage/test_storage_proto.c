/* test_storage_proto.c - storage message codecs: round trips of every
 * message, every truncation rejected, counts over the caller's array or
 * the protocol limit rejected, unknown trailing bytes skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "storage/storage_proto.h"

static void test_write_roundtrip(void **state)
{
	(void)state;
	static const struct sto_write_req m = { .target = 3001, .chain = 1000002, .chain_ver = 7, .ino = 1ull << 40,
				   .idx = 9, .off = 4096, .len = 65536, .crc = 0xdeadbeef,
				   .update_ver = 12, .flags = STO_WF_FORWARDED, .client = 5,
				   .channel = 6, .seq = 77 };
	struct buf b;
	buf_init(&b);
	assert_int_equal(sto_write_req_encode(&b, &m), 0);
	struct sto_write_req d;
	memset(&d, 0, sizeof(d));
	assert_int_equal(sto_write_req_decode(b.data, b.len, &d), 0);
	assert_memory_equal(&m, &d, sizeof(m));
	for (size_t cut = 0; cut < b.len; cut++)
		assert_int_equal(sto_write_req_decode(b.data, cut, &d), -CFS_EPROTO);
	/* A newer peer's appended field is skipped. */
	uint8_t extra = 0xaa;
	buf_append(&b, &extra, 1);
	assert_int_equal(sto_write_req_decode(b.data, b.len, &d), 0);
	assert_int_equal(d.seq, 77);
	buf_fini(&b);
}

/* WRITE_IF is a WRITE's fields then u64 expect, u32 len, u32 crc: a prefix of it is a
 * WRITE (a service reading it as one would drop the condition; it
 * therefore has its own type), and a cut anywhere is refused. */
static void test_write_if_roundtrip(void **state)
{
	(void)state;
	static const struct sto_write_if_req m = {.target = 3001, .chain = 1000002, .chain_ver = 7,
	                                          .ino = 1ull << 40, .len = 65536, .crc = 0xdeadbeef,
	                                          .flags = STO_WF_REPLACE, .client = 5, .channel = 6,
	                                          .seq = 77, .expect = 1ull << 33,
	                                          .expect_len = 4096, .expect_crc = 0x1234};
	struct buf b;
	buf_init(&b);
	assert_int_equal(sto_write_if_req_encode(&b, &m), 0);
	struct sto_write_if_req d;
	memset(&d, 0, sizeof(d));
	assert_int_equal(sto_write_if_req_decode(b.data, b.len, &d), 0);
	assert_memory_equal(&m, &d, sizeof(m));
	for (size_t cut = 0; cut < b.len; cut++)
		assert_int_equal(sto_write_if_req_decode(b.data, cut, &d), -CFS_EPROTO);
	struct sto_write_req w;
	assert_int_equal(sto_write_req_decode(b.data, b.len, &w), 0);
	assert_int_equal(w.seq, 77);
	assert_int_equal(b.len, 72 + 16);
	buf_fini(&b);
}

static void test_read_batch(void **state)
{
	(void)state;
	static struct sto_read_range r[3] = {
		{ 1, 0, 0, 10, 0, 0, 4096 }, { 2, 5, 1, 11, 1, 4096, 1 }, { 1, 0, 0, 12, 2, 0, 1u << 20 },
	};
	struct sto_read_req m = { .flags = STO_RF_RELAXED, .n = 3, .r = r };
	struct buf b;
	buf_init(&b);
	assert_int_equal(sto_read_req_encode(&b, &m), 0);
	struct sto_read_range out[3];
	memset(out, 0, sizeof(out));
	struct sto_read_req d;
	assert_int_equal(sto_read_req_decode(b.data, b.len, &d, out, 3), 0);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.flags, STO_RF_RELAXED);
	assert_memory_equal(out, r, sizeof(r));
	assert_int_equal(sto_read_req_decode(b.data, b.len, &d, out, 2), -CFS_EPROTO);
	for (size_t cut = 0; cut < b.len; cut++)
		assert_int_equal(sto_read_req_decode(b.data, cut, &d, out, 3), -CFS_EPROTO);
	buf_fini(&b);
	struct sto_read_res res[2] = { { 4096, 1, 2 }, { -CFS_ENOT_COMMITTED, 0, 0 } }, rout[2];
	struct sto_read_resp rr = { .n = 2, .r = res }, rd;
	buf_init(&b);
	assert_int_equal(sto_read_resp_encode(&b, &rr), 0);
	assert_int_equal(sto_read_resp_decode(b.data, b.len, &rd, rout, 2), 0);
	assert_int_equal(rout[1].result, -CFS_ENOT_COMMITTED);
	assert_int_equal(rout[0].commit_ver, 2);
	buf_fini(&b);
}

static void test_others(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	static const struct sto_remove_req rm = { 1, 2, 3, 4, 5, 6, STO_WF_SYNC, 7, 8, 9 };
	struct sto_remove_req rmd;
	memset(&rmd, 0, sizeof(rmd));
	assert_int_equal(sto_remove_req_encode(&b, &rm), 0);
	assert_int_equal(sto_remove_req_decode(b.data, b.len, &rmd), 0);
	assert_memory_equal(&rm, &rmd, sizeof(rm));
	buf_reset(&b);
	struct sto_query_resp q = { 1, 2, 3, 4, 5, 6 }, qd;
	assert_int_equal(sto_query_resp_encode(&b, &q), 0);
	assert_int_equal(sto_query_resp_decode(b.data, b.len, &qd), 0);
	assert_memory_equal(&q, &qd, sizeof(q));
	buf_reset(&b);
	struct sto_dump_req dq = { 1, 2, 3, 4, 0 }, dqd;
	assert_int_equal(sto_dump_req_encode(&b, &dq), 0);
	assert_int_equal(sto_dump_req_decode(b.data, b.len, &dqd), -CFS_EPROTO); /* max 0 */
	buf_reset(&b);
	dq.max = STO_MAX_DUMP;
	assert_int_equal(sto_dump_req_encode(&b, &dq), 0);
	assert_int_equal(sto_dump_req_decode(b.data, b.len, &dqd), 0);
	buf_reset(&b);
	struct sto_dump_ent e[2] = { { 1, 2, 3, 4, 5, 6 }, { 7, 8, 9, 10, 11, 12 } }, eo[2];
	struct sto_dump_resp dr = { 1, 2, e }, drd;
	assert_int_equal(sto_dump_resp_encode(&b, &dr), 0);
	assert_int_equal(sto_dump_resp_decode(b.data, b.len, &drd, eo, 2), 0);
	assert_int_equal(drd.more, 1);
	assert_memory_equal(e, eo, sizeof(e));
	assert_int_equal(sto_dump_resp_decode(b.data, b.len, &drd, eo, 1), -CFS_EPROTO);
	buf_fini(&b);
}

/* The bytes on the wire, built here field by field from the catalog in
 * net/rpc_proto.h and not from the field lists in storage_proto.h, so a
 * reordered, resized or dropped field in a list fails this test. */
struct golden {
	uint8_t b[256];
	size_t n;
};

static void g_le(struct golden *g, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		g->b[g->n++] = (uint8_t)(v >> (8 * i));
}

static void assert_golden(const struct buf *b, const struct golden *g)
{
	assert_int_equal(b->len, g->n);
	assert_memory_equal(b->data, g->b, g->n);
}

/* SC_MAP_MANY: entries and per-entry answers round-trip; more than
 * STO_SC_MAP_MANY_MAX entries, or more than the caller's room, do not
 * decode; a mapped entry must hold a well-formed SC_MAP answer; the
 * fuzz corpus's files decode (tests/fuzz/corpus/storage_proto). */
static void test_sc_map_many(void **state)
{
	(void)state;
	struct sto_sc_map_ent e[3] = { { 1, 0, 77, 0 }, { 1, 0, 77, 1 }, { 2, 5, 78, 9 } }, e2[3];
	struct sto_sc_map_many_req q = { .region = 7, .n = 3, .e = e }, q2;
	struct buf b;
	buf_init(&b);
	assert_int_equal(sto_sc_map_many_req_encode(&b, &q), 0);
	assert_int_equal(b.len, 12 + 3 * 20);
	assert_int_equal(sto_sc_map_many_req_decode(b.data, b.len, &q2, e2, 3), 0);
	assert_int_equal(q2.region, 7);
	assert_int_equal(q2.n, 3);
	assert_int_equal(e2[2].chain, 5);
	assert_int_equal(e2[2].ino, 78);
	assert_int_equal(e2[2].idx, 9);
	assert_int_equal(sto_sc_map_many_req_decode(b.data, b.len, &q2, e2, 2), -CFS_EPROTO);
	assert_int_equal(sto_sc_map_many_req_decode(b.data, b.len - 1, &q2, e2, 3), -CFS_EPROTO);
	b.len = 0;
	struct sto_sc_map_ent *big = calloc(STO_SC_MAP_MANY_MAX + 1, sizeof(*big));
	q = (struct sto_sc_map_many_req){ .region = 7, .n = STO_SC_MAP_MANY_MAX + 1, .e = big };
	assert_int_equal(sto_sc_map_many_req_encode(&b, &q), 0);
	assert_int_equal(sto_sc_map_many_req_decode(b.data, b.len, &q2, big, STO_SC_MAP_MANY_MAX + 1),
			 -CFS_EPROTO);
	free(big);

	/* answers: one mapping, one absent, one past the budget */
	struct sto_sc_map_fix f = { .slot = 3, .seq = 9, .pid = 1234, .dev = 2049, .inode = 555,
				    .file_off = 40960, .len = 8192, .commit_ver = 42, .npages = 2 };
	uint32_t crcs[2] = { 0x11111111, 0x22222222 };
	struct buf one;
	buf_init(&one);
	assert_int_equal(sto_sc_map_resp_encode(&one, &f, crcs, "/tmp/x/data/c0"), 0);
	b.len = 0;
	assert_int_equal(sto_sc_map_many_resp_head_encode(&b, 3), 0);
	assert_int_equal(sto_sc_map_many_res_encode(&b, 0, one.data, (uint32_t)one.len), 0);
	assert_int_equal(sto_sc_map_many_res_encode(&b, -ENOENT, "", 0), 0);
	assert_int_equal(sto_sc_map_many_res_encode(&b, -EMSGSIZE, "", 0), 0);
	struct sto_sc_map_many_res r[3];
	struct sto_sc_map_many_resp m;
	assert_int_equal(sto_sc_map_many_resp_decode(b.data, b.len, &m, r, 3), 0);
	assert_int_equal(m.n, 3);
	assert_int_equal(r[0].result, 0);
	assert_int_equal(r[1].result, -ENOENT);
	assert_int_equal(r[2].result, -EMSGSIZE);
	struct sto_sc_map_resp mr;
	assert_int_equal(sto_sc_map_resp_decode(r[0].body, r[0].len, &mr), 0);
	assert_int_equal(mr.f.slot, 3);
	assert_int_equal(mr.f.seq, 9);
	assert_int_equal(mr.path_len, strlen("/tmp/x/data/c0"));
	assert_int_equal(sto_sc_map_many_resp_decode(b.data, b.len, &m, r, 2), -CFS_EPROTO);
	/* a "mapped" entry whose body is no SC_MAP answer */
	b.len = 0;
	assert_int_equal(sto_sc_map_many_resp_head_encode(&b, 1), 0);
	assert_int_equal(sto_sc_map_many_res_encode(&b, 0, one.data, (uint32_t)one.len - 1), 0);
	assert_int_equal(sto_sc_map_many_resp_decode(b.data, b.len, &m, r, 3), -CFS_EPROTO);
	buf_fini(&one);

	/* the corpus files (first byte: the fuzz target's selector) */
	char src[1024];
	snprintf(src, sizeof(src), "%s", __FILE__); /* .../tests/storage/test_storage_proto.c */
	char *cut = strstr(src, "/tests/storage/");
	if (cut) {
		*cut = 0;
		static const char *const names[] = { "sc_map_many_req", "sc_map_many_resp" };
		for (int i = 0; i < 2; i++) {
			char path[1200];
			snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/storage_proto/%s", src,
				 names[i]);
			FILE *fp = fopen(path, "rb");
			assert_non_null(fp);
			uint8_t raw[4096];
			size_t len = fread(raw, 1, sizeof(raw), fp);
			fclose(fp);
			assert_true(len > 1 && raw[0] == 0xf7);
			int rc = i ? sto_sc_map_many_resp_decode(raw + 1, len - 1, &m, r, 3)
				   : sto_sc_map_many_req_decode(raw + 1, len - 1, &q2, e2, 3);
			assert_int_equal(rc, 0);
		}
	}
	buf_fini(&b);
}

static void test_wire_layout(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);

	/* 300 WRITE req: tgt (target chain chain_ver), u64 ino, u32 idx off len crc,
	 * u64 update_ver, u32 flags, eo (u64 client channel seq). */
	const struct sto_write_req w = { .target = 0x01020304, .chain = 0x05060708, .chain_ver = 9,
					 .ino = 0x1112131415161718ull, .idx = 0x21, .off = 0x22,
					 .len = 0x23, .crc = 0x24, .update_ver = 0x3132333435363738ull,
					 .flags = 0x41, .client = 0x51, .channel = 0x52, .seq = 0x53 };
	struct golden g = { .n = 0 };
	g_le(&g, 0x01020304, 4), g_le(&g, 0x05060708, 4), g_le(&g, 9, 4);
	g_le(&g, 0x1112131415161718ull, 8);
	g_le(&g, 0x21, 4), g_le(&g, 0x22, 4), g_le(&g, 0x23, 4), g_le(&g, 0x24, 4);
	g_le(&g, 0x3132333435363738ull, 8), g_le(&g, 0x41, 4);
	g_le(&g, 0x51, 8), g_le(&g, 0x52, 8), g_le(&g, 0x53, 8);
	assert_int_equal(sto_write_req_encode(&b, &w), 0);
	assert_golden(&b, &g);

	/* 301 READ req: u32 flags, u32 n, n x (tgt, u64 ino, u32 idx off len). */
	struct sto_read_range rr = { .target = 1, .chain = 2, .chain_ver = 3, .ino = 4, .idx = 5, .off = 6, .len = 7 };
	struct sto_read_req rq = { .flags = STO_RF_RELAXED, .n = 1, .r = &rr };
	g.n = 0;
	g_le(&g, STO_RF_RELAXED, 4), g_le(&g, 1, 4);
	g_le(&g, 1, 4), g_le(&g, 2, 4), g_le(&g, 3, 4), g_le(&g, 4, 8);
	g_le(&g, 5, 4), g_le(&g, 6, 4), g_le(&g, 7, 4);
	buf_reset(&b);
	assert_int_equal(sto_read_req_encode(&b, &rq), 0);
	assert_golden(&b, &g);

	/* 301 READ resp: u32 n, n x (i32 result, u32 crc, u64 commit_ver). */
	struct sto_read_res rs = { .result = -5, .crc = 0x99, .commit_ver = 0x1234 };
	struct sto_read_resp rp = { .n = 1, .r = &rs };
	g.n = 0;
	g_le(&g, 1, 4), g_le(&g, (uint32_t)-5, 4), g_le(&g, 0x99, 4), g_le(&g, 0x1234, 8);
	buf_reset(&b);
	assert_int_equal(sto_read_resp_encode(&b, &rp), 0);
	assert_golden(&b, &g);

	/* 303 QUERY req: u32 target, u32 chain, u64 ino, u32 idx, u8 last. */
	const struct sto_query_req q = { .target = 7, .chain = 8, .ino = 9, .idx = 10, .last = 1 };
	g.n = 0;
	g_le(&g, 7, 4), g_le(&g, 8, 4), g_le(&g, 9, 8), g_le(&g, 10, 4), g_le(&g, 1, 1);
	buf_reset(&b);
	assert_int_equal(sto_query_req_encode(&b, &q), 0);
	assert_golden(&b, &g);

	/* 305 DUMP resp: u8 more, u32 n, n x (u64 ino, u32 idx len crc chain_ver, u64 commit_ver). */
	struct sto_dump_ent e = { .ino = 1, .idx = 2, .len = 3, .crc = 4, .chain_ver = 5, .commit_ver = 6 };
	struct sto_dump_resp d = { .more = 1, .n = 1, .e = &e };
	g.n = 0;
	g_le(&g, 1, 1), g_le(&g, 1, 4), g_le(&g, 1, 8);
	g_le(&g, 2, 4), g_le(&g, 3, 4), g_le(&g, 4, 4), g_le(&g, 5, 4), g_le(&g, 6, 8);
	buf_reset(&b);
	assert_int_equal(sto_dump_resp_encode(&b, &d), 0);
	assert_golden(&b, &g);

	/* 307 WITNESS resp: u64 contact age, u64 routing version, u32 promise. */
	const struct sto_witness_resp wr = { .contact_age_ms = 11, .routing_version = 12, .promise_ms = 13 };
	g.n = 0;
	g_le(&g, 11, 8), g_le(&g, 12, 8), g_le(&g, 13, 4);
	buf_reset(&b);
	assert_int_equal(sto_witness_resp_encode(&b, &wr), 0);
	assert_golden(&b, &g);
	buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_roundtrip),
		cmocka_unit_test(test_write_if_roundtrip),
		cmocka_unit_test(test_read_batch),
		cmocka_unit_test(test_others),
		cmocka_unit_test(test_wire_layout),
		cmocka_unit_test(test_sc_map_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
