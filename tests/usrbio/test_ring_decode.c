/* test_ring_decode.c - the daemon's decoders of application-written bytes
 * (src/usrbio/ring_decode.h): each SQE check with its errno, the buffer
 * range check at its edges, and registration names in 3FS's format
 * (accepted forms and every malformed one we could think of). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "usrbio/ring_abi.h"
#include "usrbio/ring_decode.h"

static struct cfs_ring_sqe good(void)
{
	struct cfs_ring_sqe s;
	memset(&s, 0, sizeof(s));
	s.buf_id[0] = 0xab;
	s.buf_off = 4096;
	s.file_off = 1 << 20;
	s.len = 8192;
	s.userdata = 77;
	s.reg = 3;
	s.index = 5;
	s.op = CFS_OP_READ;
	return s;
}

static void test_sqe(void **state)
{
	struct usrbio_sqe o;
	struct cfs_ring_sqe s = good();
	assert_int_equal(usrbio_decode_sqe(&s, 8, 1, &o), 0);
	assert_int_equal(o.buf_id[0], 0xab);
	assert_int_equal(o.buf_off, 4096);
	assert_int_equal(o.file_off, 1 << 20);
	assert_int_equal(o.len, 8192);
	assert_int_equal(o.userdata, 77);
	assert_int_equal(o.reg, 3);
	assert_int_equal(o.index, 5);
	assert_int_equal(usrbio_decode_sqe(&s, 5, 1, &o), -EINVAL); /* index == entries */
	assert_int_equal(o.userdata, 77); /* still filled for the completion */
	assert_int_equal(usrbio_decode_sqe(&s, 8, 0, &o), -EINVAL); /* direction */
	s.op = 9;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 1, &o), -EINVAL);
	s = good();
	s.len = 0;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 1, &o), -EINVAL);
	s.len = CFS_IO_MAX_LEN + 1;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 1, &o), -EINVAL);
	s.len = CFS_IO_MAX_LEN;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 1, &o), 0);
	s = good();
	s.file_off = UINT64_MAX - 10;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 1, &o), -EFBIG);
	s = good();
	s.reserved = 1;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 1, &o), -EINVAL);
	s = good();
	s.op = CFS_OP_WRITE;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 0, &o), 0);
	assert_false(o.has_crc);
	/* A write may carry its bytes' CRC32C; a read may not. */
	s.op = CFS_OP_WRITE | CFS_OP_F_CRC;
	s.reserved = 0xdeadbeef;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 0, &o), 0);
	assert_true(o.has_crc);
	assert_int_equal(o.op, CFS_OP_WRITE);
	assert_int_equal(o.crc, 0xdeadbeef);
	s.reserved = 0; /* a CRC of 0 is a CRC like any other */
	assert_int_equal(usrbio_decode_sqe(&s, 8, 0, &o), 0);
	assert_true(o.has_crc);
	s = good();
	s.op = CFS_OP_READ | CFS_OP_F_CRC;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 1, &o), -EINVAL);
	s.op = CFS_OP_WRITE | CFS_OP_F_CRC | 0x200u;
	assert_int_equal(usrbio_decode_sqe(&s, 8, 0, &o), -EINVAL);
}

static void test_range(void **state)
{
	assert_int_equal(usrbio_check_range(100, 0, 100), 0);
	assert_int_equal(usrbio_check_range(100, 99, 1), 0);
	assert_int_equal(usrbio_check_range(100, 99, 2), -EFAULT);
	assert_int_equal(usrbio_check_range(100, 101, 0), -EFAULT);
	assert_int_equal(usrbio_check_range(100, UINT64_MAX, 2), -EFAULT);
	assert_int_equal(usrbio_check_range(UINT64_MAX, 2, UINT64_MAX), -EFAULT);
}

#define ID "00112233445566778899aabbccddeeff"

static void test_names(void **state)
{
	struct usrbio_name n;
	assert_int_equal(usrbio_parse_name(ID, &n), 0);
	assert_false(n.is_ring);
	assert_int_equal(n.id[0], 0x00);
	assert_int_equal(n.id[15], 0xff);
	assert_int_equal(usrbio_parse_name(ID ".b4096", &n), 0);
	assert_int_equal(n.block_size, 4096);
	assert_int_equal(usrbio_parse_name(ID ".r-16.ph.t10.f11", &n), 0);
	assert_true(n.is_ring && n.for_read);
	assert_int_equal(n.io_depth, -16);
	assert_int_equal(n.priority, -1);
	assert_int_equal(n.timeout_ms, 10);
	assert_int_equal(n.flags, 3);
	assert_int_equal(usrbio_parse_name(ID ".w0.t0", &n), 0);
	assert_true(n.is_ring && !n.for_read);
	assert_int_equal(usrbio_parse_name(ID ".w8.pl.t0.f1", &n), 0);
	assert_int_equal(n.priority, 1);
	/* The dashed UUID form names the same id (3FS's hf3fs_fuse.io). */
	struct usrbio_name d;
	assert_int_equal(usrbio_parse_name("00112233-4455-6677-8899-aabbccddeeff.b4096", &d), 0);
	assert_int_equal(usrbio_parse_name(ID ".b4096", &n), 0);
	assert_memory_equal(d.id, n.id, 16);
	assert_int_equal(d.block_size, 4096);
	static const char *bad[] = {
	    "", "submit-ios", "0011", ID "x", ID ".", ID ".r", ID ".r1.r1", ID ".q1", ID ".b0",
	    ID ".b-1", ID ".t5", ID ".r1.t-1", ID ".r1.f", ID ".r1.f2", ID ".r1.px", ID ".r1.phh",
	    ID ".r99999999999999999999", ID ".r70000", "0g112233445566778899aabbccddeeff",
	    ID ".r1.t1.t1", ID "..r1", "00112233-44556677-8899-aabbccddeeff",
	    "00112233-4455-6677-8899aabbccddeeff0", "00112233-4455-6677-8899-aabbccddeef",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (usrbio_parse_name(bad[i], &n) != -EINVAL)
			fail_msg("accepted bad name '%s'", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sqe),
	    cmocka_unit_test(test_range),
	    cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
