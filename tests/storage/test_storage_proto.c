/* test_storage_proto.c - storage message codecs: round trips of every
 * message, every truncation rejected, counts over the caller's array or
 * the protocol limit rejected, unknown trailing bytes skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_roundtrip),
		cmocka_unit_test(test_read_batch),
		cmocka_unit_test(test_others),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
