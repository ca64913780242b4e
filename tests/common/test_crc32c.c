/* test_crc32c.c - known vectors (RFC 3720 B.4), hardware == table path at
 * every length and alignment, and incremental == one-shot. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"

static void test_vectors(void **state)
{
	(void)state;
	uint8_t buf[32];
	assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c_sw(0, "123456789", 9), 0xE3069283u);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(crc32c(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(crc32c(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(crc32c(0, buf, 32), 0x46DD794Eu);
	assert_int_equal(crc32c(0, NULL, 0), 0);
}

static void test_paths_agree(void **state)
{
	(void)state;
	uint8_t data[1100];
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (size_t i = 0; i < sizeof(data); i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		data[i] = (uint8_t)x;
	}
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len + off <= sizeof(data); len += 37)
			assert_int_equal(crc32c(0, data + off, len), crc32c_sw(0, data + off, len));
	uint32_t whole = crc32c(0, data, sizeof(data));
	uint32_t part = crc32c(crc32c(0, data, 333), data + 333, sizeof(data) - 333);
	assert_int_equal(whole, part);
}

/* Lengths past the three-stream thresholds (3 x 256 and 3 x 8192 bytes)
 * exercise the stream join; the table path is the reference. */
static void test_long_buffers(void **state)
{
	(void)state;
	size_t n = 200000;
	uint8_t *data = malloc(n);
	assert_non_null(data);
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		data[i] = (uint8_t)x;
	}
	static const size_t lens[] = { 767, 768, 769, 24575, 24576, 24577, 24576 + 768,
				       65536, 131072 + 5, 200000 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		for (size_t off = 0; off < 3; off++)
			if (lens[i] + off <= n)
				assert_int_equal(crc32c(7, data + off, lens[i]),
						 crc32c_sw(7, data + off, lens[i]));
	free(data);
}

/* crc32c_combine against the CRC of the concatenation (the oracle), for
 * split points from 0 to past the 3-way block sizes. */
static void test_combine(void **state)
{
	(void)state;
	static uint8_t buf[3 * 8192 + 77];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + (i >> 7));
	size_t cuts[] = { 0, 1, 7, 255, 256, 4096, 8191, 8192, 20000, sizeof(buf) };
	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		size_t a = cuts[k], b = sizeof(buf) - a;
		uint32_t ca = crc32c(0, buf, a), cb = crc32c(0, buf + a, b);
		assert_int_equal(crc32c_combine(ca, cb, b), crc32c(0, buf, sizeof(buf)));
	}
	/* Chunk-sized pieces (the ring read fold) and odd lengths above them:
	 * every bit of the length picks an operator of its own. */
	size_t big = (2u << 20) + 4099;
	uint8_t *p = malloc(big);
	assert_non_null(p);
	for (size_t i = 0; i < big; i++)
		p[i] = (uint8_t)(i * 2654435761u >> 13);
	size_t bcuts[] = { 1, 65536, 1u << 20, (1u << 20) + 1, (1u << 20) + 4099, big - 1 };
	uint32_t whole = crc32c(0, p, big);
	for (size_t k = 0; k < sizeof(bcuts) / sizeof(bcuts[0]); k++) {
		size_t a = bcuts[k], b = big - a;
		uint32_t ca = crc32c(0, p, a), cb = crc32c(0, p + a, b);
		assert_int_equal(crc32c_combine(ca, cb, b), whole);
	}
	free(p);
}

/* crc32c_pages against one crc32c per piece: every count of whole pages
 * around the four-at-once groups, a short last piece, a misaligned
 * start, odd page sizes (the portable loop), and the table path. */
static void test_pages(void **state)
{
	(void)state;
	size_t n = 11 * 4096 + 1;
	uint8_t *p = malloc(n);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 2654435761u >> 11);
	uint32_t got[16];
	size_t lens[] = { 1, 4095, 4096, 4097, 3 * 4096, 4 * 4096, 4 * 4096 + 9, 5 * 4096,
			  8 * 4096, 9 * 4096 - 1, 11 * 4096 };
	for (size_t off = 0; off < 2; off++)
		for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
			size_t len = lens[k];
			size_t pages = (len + 4095) / 4096;
			memset(got, 0, sizeof(got));
			crc32c_pages(p + off, len, 4096, got);
			for (size_t i = 0; i < pages; i++) {
				size_t pl = len - i * 4096 < 4096 ? len - i * 4096 : 4096;
				assert_int_equal(got[i], crc32c(0, p + off + i * 4096, pl));
				assert_int_equal(got[i], crc32c_sw(0, p + off + i * 4096, pl));
			}
			assert_int_equal(got[pages], 0); /* nothing past the last piece */
		}
	size_t odd[] = { 12, 100, 4104 };
	for (size_t k = 0; k < sizeof(odd) / sizeof(odd[0]); k++) {
		size_t pg = odd[k], len = n < 15 * pg ? n : 15 * pg;
		crc32c_pages(p, len, pg, got);
		for (size_t i = 0; i * pg < len; i++) {
			size_t pl = len - i * pg < pg ? len - i * pg : pg;
			assert_int_equal(got[i], crc32c(0, p + i * pg, pl));
		}
	}
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_paths_agree),
		cmocka_unit_test(test_long_buffers),
		cmocka_unit_test(test_combine),
		cmocka_unit_test(test_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
