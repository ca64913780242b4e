/* test_chunk_format.c - on-disk record codecs and chunk CRC folding. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/status.h"
#include "storage/chunk_crc.h"
#include "storage/chunk_format.h"

static void test_key_order(void **state)
{
	uint8_t a[CHUNK_KEY_LEN], b[CHUNK_KEY_LEN];
	chunk_key_encode((struct chunk_id){ 1, 0xffffffffu }, a);
	chunk_key_encode((struct chunk_id){ 2, 0 }, b);
	assert_true(memcmp(a, b, CHUNK_KEY_LEN) < 0);
	chunk_key_encode((struct chunk_id){ 7, 255 }, a);
	chunk_key_encode((struct chunk_id){ 7, 256 }, b);
	assert_true(memcmp(a, b, CHUNK_KEY_LEN) < 0);
	struct chunk_id id;
	assert_int_equal(chunk_key_decode(b, CHUNK_KEY_LEN, &id), 0);
	assert_true(id.ino == 7 && id.idx == 256);
	assert_int_equal(chunk_key_decode(b, 11, &id), -CFS_ECORRUPT);
}

static void test_meta_roundtrip(void **state)
{
	uint32_t pc[3] = { 11, 22, 33 };
	struct chunk_meta m = { .pos = { 3, 200, 70000 }, .len = 9000, .crc = 0xdeadbeef,
				.chain_ver = 5, .commit_ver = 9, .pending_ver = 10, .npages = 3,
				.page_crc = pc };
	uint8_t buf[256];
	size_t n = chunk_meta_size(&m);
	assert_int_equal(n, 40 + 12 + 4);
	chunk_meta_encode(&m, buf);
	struct chunk_meta d;
	assert_int_equal(chunk_meta_decode(buf, n, &d), 0);
	assert_int_equal(d.pos.cls, 3);
	assert_int_equal(d.pos.file, 200);
	assert_int_equal(d.pos.block, 70000);
	assert_int_equal(d.len, 9000);
	assert_int_equal(d.crc, 0xdeadbeef);
	assert_int_equal(d.commit_ver, 9);
	assert_int_equal(d.pending_ver, 10);
	assert_int_equal(d.page_crc[2], 33);
	chunk_meta_fini(&d);
	/* Every single-byte flip is detected. */
	for (size_t i = 0; i < n; i++) {
		buf[i] ^= 0x40;
		assert_int_equal(chunk_meta_decode(buf, n, &d), -CFS_ECORRUPT);
		buf[i] ^= 0x40;
	}
	assert_int_equal(chunk_meta_decode(buf, n - 1, &d), -CFS_ECORRUPT);
	/* A length larger than the block is refused even with a valid CRC. */
	m.pos.cls = 0;
	m.len = 70000;
	m.npages = chunk_npages(70000);
	m.page_crc = calloc(m.npages, 4);
	uint8_t big[1024];
	chunk_meta_encode(&m, big);
	assert_int_equal(chunk_meta_decode(big, chunk_meta_size(&m), &d), -CFS_ECORRUPT);
	free(m.page_crc);
}

/* A read's decode (chunk_meta_decode_pages): the same fields and checks
 * as the whole decode, only the window's page CRCs, none past the chunk. */
static void test_meta_pages(void **state)
{
	(void)state;
	uint32_t pc[5] = { 11, 22, 33, 44, 55 };
	struct chunk_meta m = { .pos = { 3, 200, 70000 }, .len = 4 * 4096 + 100, .crc = 7,
				.chain_ver = 5, .commit_ver = 9, .pending_ver = 10, .npages = 5,
				.page_crc = pc };
	uint8_t buf[256];
	size_t n = chunk_meta_size(&m);
	chunk_meta_encode(&m, buf);
	struct chunk_meta d, w;
	uint32_t win[4] = { 0, 0, 0, 0xabcd };
	assert_int_equal(chunk_meta_decode(buf, n, &d), 0);
	assert_int_equal(chunk_meta_decode_pages(buf, n, 2, 4, &w, win), 0);
	assert_null(w.page_crc);
	assert_null(w.jrnl);
	assert_int_equal(w.len, d.len);
	assert_int_equal(w.npages, 5);
	assert_int_equal(w.commit_ver, 9);
	assert_int_equal(w.pending_ver, 10);
	assert_int_equal(w.chain_ver, 5);
	assert_true(chunk_pos_eq(w.pos, d.pos));
	assert_int_equal(win[0], 33); /* pages 2, 3, 4 */
	assert_int_equal(win[1], 44);
	assert_int_equal(win[2], 55);
	assert_int_equal(win[3], 0xabcd); /* page 5 does not exist: untouched */
	chunk_meta_fini(&d);
	/* The whole record is still checked: a flip outside the window too. */
	for (size_t i = 0; i < n; i++) {
		buf[i] ^= 0x40;
		assert_int_equal(chunk_meta_decode_pages(buf, n, 2, 1, &w, win), -CFS_ECORRUPT);
		buf[i] ^= 0x40;
	}
	assert_int_equal(chunk_meta_decode_pages(buf, n - 1, 0, 1, &w, win), -CFS_ECORRUPT);
}

/* Version 2: a journal of pages rides along; the same checks apply, and
 * journal fields that do not fit the chunk are refused. */
static void test_meta_journal(void **state)
{
	uint32_t pc[3] = { 11, 22, 33 };
	static uint8_t pages[8192], buf[16384];
	for (size_t i = 0; i < sizeof(pages); i++)
		pages[i] = (uint8_t)(i * 7);
	struct chunk_meta m = { .pos = { 0, 1, 5 }, .len = 10000, .crc = 1, .commit_ver = 3,
				.pending_ver = 3, .npages = 3, .page_crc = pc, .jrnl_off = 4096,
				.jrnl_len = 8192, .jrnl = pages };
	size_t n = chunk_meta_size(&m);
	assert_int_equal(n, 40 + 12 + 8 + 8192 + 4);
	chunk_meta_encode(&m, buf);
	assert_int_equal(buf[4], 2);
	struct chunk_meta d, c;
	assert_int_equal(chunk_meta_decode(buf, n, &d), 0);
	assert_int_equal(d.jrnl_off, 4096);
	assert_int_equal(d.jrnl_len, 8192);
	assert_memory_equal(d.jrnl, pages, 8192);
	assert_int_equal(chunk_meta_copy(&c, &d), 0);
	assert_memory_equal(c.jrnl, pages, 8192);
	chunk_meta_fini(&c);
	chunk_meta_fini(&d);
	for (size_t i = 0; i < n; i += 97) {
		buf[i] ^= 0x40;
		assert_int_equal(chunk_meta_decode(buf, n, &d), -CFS_ECORRUPT);
		buf[i] ^= 0x40;
	}
	/* Past the chunk's pages, or not page aligned: refused. */
	m.jrnl_off = 8192;
	chunk_meta_encode(&m, buf);
	assert_int_equal(chunk_meta_decode(buf, n, &d), -CFS_ECORRUPT);
	m.jrnl_off = 100;
	chunk_meta_encode(&m, buf);
	assert_int_equal(chunk_meta_decode(buf, n, &d), -CFS_ECORRUPT);
	/* Without a journal the value is version 1, as older binaries wrote. */
	m.jrnl_len = 0;
	chunk_meta_encode(&m, buf);
	assert_int_equal(buf[4], 1);
	assert_int_equal(chunk_meta_size(&m), 40 + 12 + 4);
}

static void test_file_hdr(void **state)
{
	struct chunk_file_hdr h = { 10, 255 }, d;
	uint8_t buf[CHUNK_FILE_HDR_USED];
	chunk_file_hdr_encode(&h, buf);
	assert_int_equal(chunk_file_hdr_decode(buf, sizeof(buf), &d), 0);
	assert_int_equal(d.cls, 10);
	assert_int_equal(d.file, 255);
	buf[6] = 11;
	assert_int_equal(chunk_file_hdr_decode(buf, sizeof(buf), &d), -CFS_ECORRUPT);
}

static void test_classes(void **state)
{
	assert_int_equal(chunk_class_for(1), 0);
	assert_int_equal(chunk_class_for(65536), 0);
	assert_int_equal(chunk_class_for(65537), 1);
	assert_int_equal(chunk_class_for(1 << 20), 4);
	assert_int_equal(chunk_class_for(64u << 20), 10);
}

static void test_crc_fold(void **state)
{
	size_t len = 5 * CHUNK_PAGE + 123;
	uint8_t *d = malloc(len);
	for (size_t i = 0; i < len; i++)
		d[i] = (uint8_t)(i * 31 + 7);
	uint32_t pc[6];
	assert_int_equal(chunk_crc_pages(d, len, pc), crc32c(0, d, len));
	assert_int_equal(pc[5], crc32c(0, d + 5 * CHUNK_PAGE, 123));
	assert_int_equal(chunk_crc_combine(crc32c(0, d, 1000), crc32c(0, d + 1000, 777), 777),
			 crc32c(0, d, 1777));
	free(d);
	/* The page fold (tables per byte) against the general combine, over
	 * CRCs whose bytes take many values, and a whole 1 MiB piece. */
	uint32_t x = 0x9e3779b9u;
	for (int i = 0; i < 2000; i++) {
		x = x * 1664525u + 1013904223u;
		assert_int_equal(chunk_crc_combine(x, ~x, CHUNK_PAGE),
				 crc32c_combine(x, ~x, CHUNK_PAGE));
	}
	len = 1u << 20;
	d = malloc(len);
	uint32_t *pm = malloc(4 * (len / CHUNK_PAGE));
	for (size_t i = 0; i < len; i++)
		d[i] = (uint8_t)((i * 2654435761u) >> 13);
	assert_int_equal(chunk_crc_pages(d, len, pm), crc32c(0, d, len));
	assert_int_equal(pm[255], crc32c(0, d + 255 * CHUNK_PAGE, CHUNK_PAGE));
	free(pm);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_order), cmocka_unit_test(test_meta_roundtrip),
		cmocka_unit_test(test_meta_pages),
		cmocka_unit_test(test_meta_journal),
		cmocka_unit_test(test_file_hdr), cmocka_unit_test(test_classes),
		cmocka_unit_test(test_crc_fold),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
