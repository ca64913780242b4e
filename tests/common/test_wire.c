/* test_wire.c - LE codecs round-trip, and every truncation fails cleanly
 * with a latched error instead of reading past the end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/buf.h"
#include "common/status.h"
#include "common/wire.h"

static size_t encode_sample(struct buf *b)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u8(&w, 0xab);
	wire_put_u16(&w, 0xbeef);
	wire_put_u32(&w, 0xdeadbeefu);
	wire_put_u64(&w, 0x0123456789abcdefull);
	wire_put_i32(&w, -5);
	wire_put_i64(&w, -7);
	wire_put_blob(&w, "hello", 5);
	assert_int_equal(w.err, 0);
	return b->len;
}

static int decode_sample(const uint8_t *p, size_t n)
{
	struct wire_reader r;
	uint8_t a; uint16_t b; uint32_t c; uint64_t d; int32_t e; int64_t f;
	const uint8_t *s; uint32_t slen;
	wire_reader_init(&r, p, n);
	wire_get_u8(&r, &a);
	wire_get_u16(&r, &b);
	wire_get_u32(&r, &c);
	wire_get_u64(&r, &d);
	wire_get_i32(&r, &e);
	wire_get_i64(&r, &f);
	wire_get_blob(&r, 16, &s, &slen);
	if (r.err)
		return r.err;
	assert_int_equal(a, 0xab);
	assert_int_equal(b, 0xbeef);
	assert_int_equal(c, 0xdeadbeefu);
	assert_true(d == 0x0123456789abcdefull);
	assert_int_equal(e, -5);
	assert_true(f == -7);
	assert_int_equal(slen, 5);
	assert_memory_equal(s, "hello", 5);
	return 0;
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	size_t n = encode_sample(&b);
	assert_int_equal(n, 1 + 2 + 4 + 8 + 4 + 8 + 4 + 5);
	/* Little-endian on the wire regardless of host. */
	assert_int_equal(b.data[1], 0xef);
	assert_int_equal(b.data[2], 0xbe);
	assert_int_equal(decode_sample(b.data, b.len), 0);
	buf_fini(&b);
}

static void test_every_truncation_fails(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	size_t n = encode_sample(&b);
	for (size_t cut = 0; cut < n; cut++)
		assert_int_equal(decode_sample(b.data, cut), -CFS_EPROTO);
	buf_fini(&b);
}

static void test_blob_limit_and_latch(void **state)
{
	(void)state;
	uint8_t raw[8] = { 4, 0, 0, 0, 'a', 'b', 'c', 'd' };
	struct wire_reader r;
	const uint8_t *s;
	uint32_t len;
	wire_reader_init(&r, raw, sizeof(raw));
	assert_int_equal(wire_get_blob(&r, 3, &s, &len), -CFS_EPROTO);
	assert_null(s);
	/* Latched: later reads fail even though bytes remain. */
	uint8_t x = 1;
	assert_int_equal(wire_get_u8(&r, &x), -CFS_EPROTO);
	assert_int_equal(x, 0);
}

static void test_big_endian_keys(void **state)
{
	(void)state;
	uint8_t a[8], b[8];
	wire_store_be64(a, 255);
	wire_store_be64(b, 256);
	assert_true(memcmp(a, b, 8) < 0); /* byte order follows numeric order */
	assert_true(wire_load_be64(b) == 256);
	wire_store_be32(a, 0x01020304);
	assert_int_equal(a[0], 1);
	assert_int_equal(wire_load_be32(a), 0x01020304);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_every_truncation_fails),
		cmocka_unit_test(test_blob_limit_and_latch),
		cmocka_unit_test(test_big_endian_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
