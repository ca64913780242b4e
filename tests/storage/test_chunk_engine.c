/* test_chunk_engine.c - the chunk engine through its public API: read and
 * write, copy-on-write and in-place append, class growth, versions, remove
 * and queries, reads racing overwrites (block reference counts), corrupt
 * data, a full target, compaction under concurrent reads, restart, writes
 * the engine checks the CRC of (CHUNK_WF_VERIFY). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "storage/chunk_engine.h"
#include "storage/chunk_fixed.h"
#include "storage/chunk_flush.h"
#include "../lib/testenv.h"
#include "engine_test.h"

#define KB 1024u
#define MB (1024u * 1024u)

static struct chunk_engine *open_engine_bg(const char *dir, int sync, uint64_t capacity,
					   unsigned compact_ms)
{
	struct chunk_engine_cfg cfg;
	chunk_engine_cfg_default(&cfg);
	cfg.dir = dir;
	cfg.sync = sync;
	cfg.capacity = capacity;
	cfg.compact_interval_ms = compact_ms;
	cfg.meta_map_bytes = 256u * MB;
	cfg.buf_cache_bytes = 16u * MB;
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	return e;
}

static struct chunk_engine *open_engine(const char *dir, int sync, uint64_t capacity)
{
	return open_engine_bg(dir, sync, capacity, 0);
}

/* Reads [off, off+len) of ID and compares with EXPECT. */
static void expect_range(struct chunk_engine *e, struct chunk_id id, uint32_t off, uint32_t len,
			 const uint8_t *expect, int want)
{
	uint8_t *dst = malloc(len + 1);
	struct chunk_read_range rr = { .id = id, .off = off, .len = len, .dst = dst };
	assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
	assert_int_equal(rr.result, want);
	if (want > 0) {
		assert_memory_equal(dst, expect, (size_t)want);
		/* The reply's CRC, folded from the page CRCs of the range. */
		assert_int_equal(rr.crc, crc32c(0, dst, (size_t)want));
	}
	free(dst);
}

/* Writes LEN bytes of pattern SEED (made in W) at OFF of chunk ID, chain
 * version 1, and the same bytes into MODEL at OFF; the chunk's info in
 * *INFO (may be NULL). */
static void model_write(struct chunk_engine *e, struct chunk_id id, uint8_t *model, uint8_t *w,
			uint32_t off, uint32_t len, uint32_t seed, struct chunk_info *info)
{
	fill(w, len, seed);
	memcpy(model + off, w, len);
	assert_int_equal(chunk_engine_write(e, id, off, len, w, 0, 1, info), 0);
}

static void test_basic(void **state)
{
	char *dir = testenv_tmpdir("engine_basic");
	struct chunk_engine *e = open_engine(dir, 1, 0);
	uint8_t *a = malloc(100 * KB);
	fill(a, 100 * KB, 1);
	struct chunk_info info;
	struct chunk_id id = { 42, 0 };
	assert_int_equal(chunk_engine_write(e, id, 0, 100 * KB, a, 0, 1, &info), 0);
	assert_int_equal(info.len, 100 * KB);
	assert_int_equal(info.commit_ver, 1);
	assert_int_equal(info.pos.cls, 1); /* 100 KiB -> 128 KiB block */
	expect_range(e, id, 0, 100 * KB, a, 100 * KB);
	expect_range(e, id, 777, 5000, a + 777, 5000);
	expect_range(e, id, 99 * KB, 4 * KB, a + 99 * KB, KB); /* clipped at the end */
	expect_range(e, id, 100 * KB, 10, NULL, 0);
	expect_range(e, (struct chunk_id){ 42, 9 }, 0, 10, NULL, -ENOENT);
	/* A batch with two ranges of different chunks. */
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 42, 3 }, 0, 10 * KB, a, 0, 1, NULL), 0);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 43, 0 }, 0, 10 * KB, a, 0, 1, NULL), 0);
	uint8_t d1[64], d2[64];
	struct chunk_read_range rr[2] = { { .id = { 42, 3 }, .off = 10, .len = 64, .dst = d1 },
					  { .id = { 43, 0 }, .off = 20, .len = 64, .dst = d2 } };
	assert_int_equal(chunk_engine_read(e, rr, 2), 0);
	assert_int_equal(rr[0].result, 64);
	assert_int_equal(rr[1].result, 64);
	assert_memory_equal(d1, a + 10, 64);
	assert_memory_equal(d2, a + 20, 64);
	/* Queries. */
	uint32_t idx;
	assert_int_equal(chunk_engine_query_last(e, 42, &idx, &info), 0);
	assert_int_equal(idx, 3);
	assert_int_equal(info.len, 10 * KB);
	assert_int_equal(chunk_engine_query_last(e, 41, &idx, &info), -ENOENT);
	assert_int_equal(chunk_engine_query_last(e, 44, &idx, &info), -ENOENT);
	assert_int_equal(chunk_engine_query(e, id, &info), 0);
	assert_int_equal(info.len, 100 * KB);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.chunks, 3);
	assert_true(st.used > 0 && st.capacity > st.used);
	/* Versions: explicit update_ver must be commit_ver + 1; stale chain
	 * versions are refused. */
	assert_int_equal(chunk_engine_write(e, id, 0, 10, a, 5, 1, NULL), -CFS_ECONFLICT);
	assert_int_equal(chunk_engine_write(e, id, 0, 10, a, 2, 1, &info), 0);
	assert_int_equal(info.commit_ver, 2);
	/* The CRAQ head's lookup on its own thread answers as the queued
	 * query does (the version it forwards is commit_ver + 1). */
	struct chunk_info now, queued;
	assert_int_equal(chunk_engine_query_now(e, id, &now), 0);
	assert_int_equal(chunk_engine_query(e, id, &queued), 0);
	assert_int_equal(now.commit_ver, 2);
	assert_int_equal(now.commit_ver, queued.commit_ver);
	assert_int_equal(now.chain_ver, queued.chain_ver);
	assert_int_equal(now.len, queued.len);
	assert_int_equal(now.crc, queued.crc);
	assert_int_equal(chunk_engine_query_now(e, (struct chunk_id){ 42, 9 }, &now), -ENOENT);
	assert_int_equal(chunk_engine_write(e, id, 0, 10, a, 0, 3, NULL), 0);
	assert_int_equal(chunk_engine_write(e, id, 0, 10, a, 0, 2, NULL), -CFS_ECHAIN_VERSION);
	assert_int_equal(chunk_engine_write(e, id, 64 * MB - 1, 2, a, 0, 3, NULL), -EINVAL);
	/* Remove one, then a range. */
	assert_int_equal(chunk_engine_remove(e, 43, 0, 1), 1);
	expect_range(e, (struct chunk_id){ 43, 0 }, 0, 10, NULL, -ENOENT);
	assert_int_equal(chunk_engine_remove(e, 42, 0, 100), 2);
	assert_int_equal(chunk_engine_query_last(e, 42, &idx, &info), -ENOENT);
	assert_clean(e, 0);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.used, 0); /* every group punched */
	chunk_engine_close(e);
	free(a);
	free(dir);
}

static void test_cow_append_grow(void **state)
{
	char *dir = testenv_tmpdir("engine_cow");
	struct chunk_engine *e = open_engine(dir, 0, 0);
	size_t max = 9 * MB;
	uint8_t *model = calloc(1, max), *w = malloc(max);
	struct chunk_id id = { 7, 1 };
	struct chunk_info i1, i2;
	fill(model, 10000, 5);
	assert_int_equal(chunk_engine_write(e, id, 0, 10000, model, 0, 1, &i1), 0);
	/* Append within the 64 KiB block: same position (in place), with an
	 * unaligned start that rewrites the partial last page. */
	model_write(e, id, model, w, 10000, 3000, 6, &i2);
	assert_true(chunk_pos_eq(i1.pos, i2.pos));
	expect_range(e, id, 0, 13000, model, 13000);
	/* Append with a gap: zeros in between. */
	model_write(e, id, model, w, 20000, 100, 7, &i2);
	assert_true(chunk_pos_eq(i1.pos, i2.pos));
	expect_range(e, id, 0, 20100, model, 20100);
	/* Small partial overwrite: journaled, then applied in the same block. */
	model_write(e, id, model, w, 500, 50, 8, &i2);
	assert_true(chunk_pos_eq(i1.pos, i2.pos));
	expect_range(e, id, 0, 20100, model, 20100);
	/* A partial overwrite of more than half the chunk: copy-on-write to a
	 * new block. */
	model_write(e, id, model, w, 100, 12000, 10, &i2);
	assert_false(i2.pos.block == i1.pos.block && i2.pos.file == i1.pos.file);
	expect_range(e, id, 0, 20100, model, 20100);
	/* Growth past the block: moves to the class that holds it (9 MiB ->
	 * 16 MiB block, a per-block fallocate class). */
	model_write(e, id, model, w, 20100, (uint32_t)(max - 20100), 9, &i2);
	assert_int_equal(i2.pos.cls, 8);
	assert_int_equal(i2.len, max);
	expect_range(e, id, 0, (uint32_t)max, model, (int)max);
	expect_range(e, id, 5 * MB + 3, 100, model + 5 * MB + 3, 100);
	/* An aligned full overwrite from an aligned buffer (the zero-copy path). */
	void *al = NULL;
	assert_int_equal(posix_memalign(&al, 4096, MB), 0);
	fill(al, MB, 10);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 7, 2 }, 0, MB, al, 0, 1, &i2), 0);
	void *rd = NULL;
	assert_int_equal(posix_memalign(&rd, 4096, MB), 0);
	struct chunk_read_range rr = { .id = { 7, 2 }, .off = 0, .len = MB, .dst = rd };
	assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
	assert_int_equal(rr.result, MB);
	assert_memory_equal(rd, al, MB);
	assert_clean(e, 2);
	chunk_engine_close(e);
	/* Restart: the same data and a clean allocator. */
	e = open_engine(dir, 0, 0);
	assert_clean(e, 2);
	expect_range(e, id, 0, (uint32_t)max, model, (int)max);
	chunk_engine_close(e);
	free(al);
	free(rd);
	free(model);
	free(w);
	free(dir);
}

/* Readers race overwrites of the same chunk: every read returns one whole
 * version (first 4 bytes name the seed), never torn or corrupt, because a
 * reader pins the block it looked up until its I/O is done. */
struct race {
	struct chunk_engine *e;
	atomic_int stop;
	int reads, bad;
};

static void *race_reader(void *arg)
{
	struct race *r = arg;
	uint8_t *buf = malloc(256 * KB), *exp = malloc(256 * KB);
	while (!atomic_load(&r->stop)) {
		struct chunk_read_range rr = { .id = { 9, 0 }, .off = 0, .len = 256 * KB, .dst = buf };
		if (chunk_engine_read(r->e, &rr, 1) || rr.result != (int)(256 * KB)) {
			r->bad++;
			continue;
		}
		uint32_t seed;
		memcpy(&seed, buf, 4);
		fill(exp, 256 * KB, seed);
		memcpy(exp, &seed, 4);
		if (memcmp(exp, buf, 256 * KB))
			r->bad++;
		r->reads++;
	}
	free(buf);
	free(exp);
	return NULL;
}

static void test_read_races_overwrite(void **state)
{
	char *dir = testenv_tmpdir("engine_race");
	struct race r = { .e = open_engine(dir, 0, 0) };
	uint8_t *w = malloc(256 * KB);
	uint32_t seed = 1;
	fill(w, 256 * KB, seed);
	memcpy(w, &seed, 4);
	assert_int_equal(chunk_engine_write(r.e, (struct chunk_id){ 9, 0 }, 0, 256 * KB, w, 0, 1, NULL), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, race_reader, &r), 0);
	uint64_t deadline = clock_mono_ms() + 1500;
	int writes = 0;
	while (clock_mono_ms() < deadline && writes < 400) {
		seed++;
		fill(w, 256 * KB, seed);
		memcpy(w, &seed, 4);
		assert_int_equal(chunk_engine_write(r.e, (struct chunk_id){ 9, 0 }, 0, 256 * KB, w, 0, 1, NULL), 0);
		writes++;
	}
	atomic_store(&r.stop, 1);
	pthread_join(t, NULL);
	assert_int_equal(r.bad, 0);
	assert_true(r.reads > 0 && writes > 10);
	assert_clean(r.e, 1);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(r.e, &st);
	assert_int_equal(st.used_blocks, 1); /* every old block came back */
	chunk_engine_close(r.e);
	free(w);
	free(dir);
}

/* A metadata record that goes bad in LMDB after the target opened (the
 * disk under the map hands back other bytes) fails every read of it:
 * values read from LMDB keep their CRC check on each read, small reads
 * included (only the overlay's, checked once on entry, skip it). Flipped:
 * the chain version, which no other check of a read would notice. */
static void test_record_bad_while_open(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("engine_badrec");
	struct chunk_engine *e = open_engine(dir, 1, 0);
	uint8_t a[20000];
	fill(a, sizeof(a), 7);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 6, 0 }, 0, sizeof(a), a, 0, 1, NULL), 0);
	chunk_engine_close(e); /* the overlay goes to LMDB */
	e = open_engine(dir, 1, 0);
	expect_range(e, (struct chunk_id){ 6, 0 }, 4096, 4096, a + 4096, 4096);
	char path[512];
	snprintf(path, sizeof(path), "%s/meta/data.mdb", dir);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	off_t fsize = lseek(fd, 0, SEEK_END);
	uint8_t *img = malloc((size_t)fsize);
	assert_int_equal(pread(fd, img, (size_t)fsize, 0), fsize);
	int flipped = 0;
	for (off_t i = 0; i + 24 < fsize; i++)
		if (!memcmp(img + i, "CFSM", 4)) {
			uint8_t b = img[i + 20] ^ 0xff;
			assert_int_equal(pwrite(fd, &b, 1, i + 20), 1);
			flipped++;
		}
	assert_int_equal(flipped, 1);
	close(fd);
	free(img);
	log_set_level(LOG_LVL_ERR - 1); /* the corruption line is expected */
	expect_range(e, (struct chunk_id){ 6, 0 }, 4096, 4096, NULL, -CFS_ECORRUPT);
	expect_range(e, (struct chunk_id){ 6, 0 }, 0, 20000, NULL, -CFS_ECORRUPT);
	log_set_level(LOG_LVL_INFO);
	chunk_engine_close(e);
	free(dir);
}

static void test_corruption(void **state)
{
	char *dir = testenv_tmpdir("engine_corrupt");
	struct chunk_engine *e = open_engine(dir, 1, 0);
	uint8_t a[3][20000];
	struct chunk_info info[3];
	for (int i = 0; i < 3; i++) {
		fill(a[i], sizeof(a[i]), 100 + i);
		assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, i }, 0, sizeof(a[i]), a[i], 0, 1,
						    &info[i]), 0);
	}
	chunk_engine_close(e);
	/* Flip one byte of chunk 1's data on disk. */
	char path[512];
	snprintf(path, sizeof(path), "%s/data/c%02u/f%03u", dir, info[1].pos.cls, info[1].pos.file);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	off_t off = 4096 + (off_t)info[1].pos.block * 65536 + 12345;
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x01;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
	log_set_level(LOG_LVL_ERR - 1); /* the corruption lines are expected */
	e = open_engine(dir, 1, 0);
	expect_range(e, (struct chunk_id){ 5, 1 }, 0, 20000, NULL, -CFS_ECORRUPT);
	expect_range(e, (struct chunk_id){ 5, 1 }, 12300, 100, NULL, -CFS_ECORRUPT);
	/* Pages that do not hold the flipped byte still verify. */
	expect_range(e, (struct chunk_id){ 5, 1 }, 0, 4096, a[1], 4096);
	expect_range(e, (struct chunk_id){ 5, 0 }, 0, 20000, a[0], 20000);
	expect_range(e, (struct chunk_id){ 5, 2 }, 0, 20000, a[2], 20000);
	/* Each page alone, aligned and not: a small read decodes only its
	 * pages' CRCs (chunk_store_reader_get_pages), which must be the right
	 * ones; the page with the flipped byte fails alone. */
	for (uint32_t p = 0; p < 5; p++) {
		uint32_t len = p == 4 ? 20000 - 4 * 4096 : 4096;
		expect_range(e, (struct chunk_id){ 5, 2 }, p * 4096, len, a[2] + p * 4096, (int)len);
		expect_range(e, (struct chunk_id){ 5, 2 }, p * 4096 + 7, len - 7, a[2] + p * 4096 + 7,
			     (int)len - 7);
		expect_range(e, (struct chunk_id){ 5, 1 }, p * 4096, len, a[1] + p * 4096,
			     p == 3 ? -CFS_ECORRUPT : (int)len);
	}
	/* A partial overwrite that needs the bad page: refused, not
	 * propagated (journaled: only the pages it touches are read)... */
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 1 }, 12300, 10, a[0], 0, 1, NULL),
			 -CFS_ECORRUPT);
	/* ... one that does not need it goes through and leaves it bad. */
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 1 }, 0, 10, a[0], 0, 1, NULL), 0);
	expect_range(e, (struct chunk_id){ 5, 1 }, 0, 10, a[0], 10);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.corrupt_reads, 4);
	expect_range(e, (struct chunk_id){ 5, 1 }, 12300, 100, NULL, -CFS_ECORRUPT);
	/* A full overwrite repairs it; the engine stayed usable throughout. */
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 1 }, 0, 20000, a[0], 0, 1, NULL), 0);
	expect_range(e, (struct chunk_id){ 5, 1 }, 0, 20000, a[0], 20000);
	assert_clean(e, 3);
	/* A lost data file: the chunk in it is reported corrupt (not trusted,
	 * not asserted on), the rest of the target works, a full rewrite or a
	 * remove clears it. */
	uint8_t *big = calloc(1, 200000);
	fill(big, 200000, 9);
	struct chunk_info bi;
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 9 }, 0, 200000, big, 0, 1, &bi), 0);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 10 }, 0, 200000, big, 0, 1, NULL), 0);
	chunk_engine_close(e);
	snprintf(path, sizeof(path), "%s/data/c%02u/f%03u", dir, bi.pos.cls, bi.pos.file);
	assert_int_equal(unlink(path), 0);
	e = open_engine(dir, 1, 0);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.open_errors, 2);
	expect_range(e, (struct chunk_id){ 5, 9 }, 0, 100, NULL, -CFS_ECORRUPT);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 9 }, 10, 10, big, 0, 1, NULL),
			 -CFS_ECORRUPT);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 9 }, 0, 200000, big, 0, 1, NULL), 0);
	expect_range(e, (struct chunk_id){ 5, 9 }, 0, 200000, big, 200000);
	assert_int_equal(chunk_engine_remove(e, 5, 10, 11), 1);
	expect_range(e, (struct chunk_id){ 5, 0 }, 0, 20000, a[0], 20000);
	assert_clean(e, 4);
	chunk_engine_close(e);
	/* Corrupt metadata values (every record in the LMDB file): reads say
	 * so, the records can still be removed, the target stays usable. */
	snprintf(path, sizeof(path), "%s/meta/data.mdb", dir);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	off_t fsize = lseek(fd, 0, SEEK_END);
	uint8_t *img = malloc((size_t)fsize);
	assert_int_equal(pread(fd, img, (size_t)fsize, 0), fsize);
	int flipped = 0;
	for (off_t i = 0; i + 24 < fsize; i++) {
		if (!memcmp(img + i, "CFSM", 4)) {
			img[i + 20] ^= 0xff;
			flipped++;
		}
	}
	assert_true(flipped >= 4);
	assert_int_equal(pwrite(fd, img, (size_t)fsize, 0), fsize);
	close(fd);
	free(img);
	e = open_engine(dir, 1, 0);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.open_errors, 4);
	expect_range(e, (struct chunk_id){ 5, 0 }, 0, 100, NULL, -CFS_ECORRUPT);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 0 }, 0, 10, big, 0, 1, NULL),
			 -CFS_ECORRUPT);
	assert_int_equal(chunk_engine_remove(e, 5, 0, 100), 4);
	expect_range(e, (struct chunk_id){ 5, 0 }, 0, 100, NULL, -ENOENT);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 0 }, 0, 20000, a[0], 0, 1, NULL), 0);
	expect_range(e, (struct chunk_id){ 5, 0 }, 0, 20000, a[0], 20000);
	log_set_level(LOG_LVL_INFO);
	assert_clean(e, 1);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.used_blocks, 1);
	chunk_engine_close(e);
	free(big);
	free(dir);
}

static void test_enospc(void **state)
{
	char *dir = testenv_tmpdir("engine_enospc");
	/* Two 64 KiB-class groups (2 x 16 MiB). */
	struct chunk_engine *e = open_engine(dir, 0, 32u * MB);
	uint8_t *a = malloc(64 * KB);
	fill(a, 64 * KB, 3);
	uint32_t n = 0;
	int rc;
	while ((rc = chunk_engine_write(e, (struct chunk_id){ 1, n }, 0, 64 * KB, a, 0, 1, NULL)) == 0 &&
	       n < 1000)
		n++;
	assert_int_equal(rc, -ENOSPC);
	assert_int_equal(n, 512);
	/* Growing a chunk needs a bigger block: also refused, and the chunk is
	 * unchanged. */
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 1, 0 }, 64 * KB, 10, a, 0, 1, NULL),
			 -ENOSPC);
	expect_range(e, (struct chunk_id){ 1, 0 }, 0, 64 * KB, a, 64 * KB);
	expect_range(e, (struct chunk_id){ 1, 511 }, 0, 64 * KB, a, 64 * KB);
	/* Free the first group's chunks: it is punched and writes work again. */
	assert_int_equal(chunk_engine_remove(e, 1, 0, 256), 256);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.used, 16u * MB);
	/* A 128 KiB-class group (32 MiB) does not fit whole any more: its
	 * blocks are reserved one by one from the 16 MiB left. */
	uint8_t *b = malloc(100 * KB);
	fill(b, 100 * KB, 4);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 2, 1 }, 0, 100 * KB, b, 0, 1, NULL), 0);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.used, 16u * MB + 128 * KB);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 2, 0 }, 0, 64 * KB, a, 0, 1, NULL), 0);
	expect_range(e, (struct chunk_id){ 2, 0 }, 0, 64 * KB, a, 64 * KB);
	expect_range(e, (struct chunk_id){ 2, 1 }, 0, 100 * KB, b, 100 * KB);
	assert_clean(e, 258);
	chunk_engine_close(e);
	free(b);
	free(a);
	free(dir);
}

/* A real full filesystem (a 40 MiB tmpfs): fallocate's ENOSPC reaches the
 * writer, data stays readable, freed space is usable again. Needs root
 * (CI has it) and O_DIRECT on tmpfs; skipped without either. */
static char *fullfs_mounted; /* for the teardown when an assertion fails */

static int fullfs_teardown(void **state)
{
	if (fullfs_mounted)
		umount2(fullfs_mounted, MNT_DETACH);
	fullfs_mounted = NULL;
	return 0;
}

static void test_real_enospc(void **state)
{
	char *dir = testenv_tmpdir("engine_fullfs");
	if (mount("tmpfs", dir, "tmpfs", 0, "size=40m")) {
		print_message("skipped: cannot mount tmpfs: %s\n", strerror(errno));
		free(dir);
		skip();
	}
	char probe[512];
	snprintf(probe, sizeof(probe), "%s/probe", dir);
	int fd = open(probe, O_RDWR | O_CREAT | O_DIRECT, 0644);
	if (fd < 0) {
		print_message("skipped: no O_DIRECT on tmpfs: %s\n", strerror(errno));
		umount2(dir, MNT_DETACH);
		free(dir);
		skip();
	}
	close(fd);
	unlink(probe);
	fullfs_mounted = dir;
	log_set_level(LOG_LVL_ERR);
	struct chunk_engine *e = open_engine(dir, 1, 0);
	uint8_t *a = malloc(64 * KB);
	fill(a, 64 * KB, 77);
	uint32_t n = 0;
	int rc;
	while ((rc = chunk_engine_write(e, (struct chunk_id){ 6, n }, 0, 64 * KB, a, 0, 1, NULL)) == 0 &&
	       n < 2000)
		n++;
	assert_int_equal(rc, -ENOSPC);
	assert_true(n >= 256 && n <= 640);
	for (uint32_t i = 0; i < n; i += 17)
		expect_range(e, (struct chunk_id){ 6, i }, 0, 64 * KB, a, 64 * KB);
	assert_int_equal(chunk_engine_remove(e, 6, 0, 256), 256);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 6, 5000 }, 0, 64 * KB, a, 0, 1, NULL), 0);
	expect_range(e, (struct chunk_id){ 6, 5000 }, 0, 64 * KB, a, 64 * KB);
	assert_clean(e, n - 256 + 1);
	chunk_engine_close(e);
	log_set_level(LOG_LVL_INFO);
	fullfs_mounted = NULL;
	assert_int_equal(umount2(dir, MNT_DETACH), 0);
	free(a);
	free(dir);
}

/* Compaction: three groups thinned to a third each are merged while a
 * reader keeps checking every surviving chunk. */
struct comp_reader {
	struct chunk_engine *e;
	atomic_int stop;
	int reads, bad;
};

static void *comp_read_main(void *arg)
{
	struct comp_reader *c = arg;
	uint8_t buf[64 * KB], exp[64 * KB];
	uint32_t i = 0;
	while (!atomic_load(&c->stop)) {
		uint32_t idx = (i++ * 3) % 768;
		struct chunk_read_range rr = { .id = { 3, idx }, .off = 0, .len = sizeof(buf), .dst = buf };
		fill(exp, sizeof(exp), idx);
		if (chunk_engine_read(c->e, &rr, 1) || rr.result != (int)sizeof(buf) ||
		    memcmp(buf, exp, sizeof(buf)))
			c->bad++;
		c->reads++;
	}
	return NULL;
}

static void test_compaction(void **state)
{
	char *dir = testenv_tmpdir("engine_compact");
	log_set_level(LOG_LVL_WARN);
	struct chunk_engine *e = open_engine(dir, 0, 0);
	uint8_t a[64 * KB];
	for (uint32_t i = 0; i < 768; i++) {
		fill(a, sizeof(a), i);
		assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 3, i }, 0, sizeof(a), a, 0, 1, NULL), 0);
	}
	for (uint32_t i = 0; i < 768; i++)
		if (i % 3)
			assert_int_equal(chunk_engine_remove(e, 3, i, i + 1), 1);
	struct chunk_engine_stat st0, st1;
	chunk_engine_get_stat(e, &st0);
	assert_int_equal(st0.used, 3u * 16 * MB);
	struct comp_reader c = { .e = e };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, comp_read_main, &c), 0);
	int moved = 0, rc, steps = 0;
	while ((rc = chunk_engine_compact(e)) > 0 && steps++ < 10)
		moved += rc;
	clock_sleep_ms(50);
	atomic_store(&c.stop, 1);
	pthread_join(t, NULL);
	assert_true(rc >= 0);
	print_message("compaction: moved=%d rc=%d steps=%d\n", moved, rc, steps);
	assert_true(moved >= 85);
	assert_int_equal(c.bad, 0);
	assert_true(c.reads > 0);
	chunk_engine_get_stat(e, &st1);
	assert_true(st1.used < st0.used);
	assert_true(st1.compact_moves >= (uint64_t)moved);
	assert_true(st1.punched_groups > st0.punched_groups);
	for (uint32_t i = 0; i < 768; i += 3) {
		fill(a, sizeof(a), i);
		expect_range(e, (struct chunk_id){ 3, i }, 0, sizeof(a), a, sizeof(a));
	}
	assert_clean(e, 256);
	chunk_engine_close(e);
	log_set_level(LOG_LVL_INFO);
	free(dir);
}

/* The background compactor finds a sparse class on its own, moves chunks
 * (throttled) and gives the emptied group back. */
static void test_background_compactor(void **state)
{
	char *dir = testenv_tmpdir("engine_bgcompact");
	log_set_level(LOG_LVL_WARN);
	struct chunk_engine *e = open_engine_bg(dir, 0, 0, 20);
	uint8_t a[64 * KB];
	for (uint32_t i = 0; i < 512; i++) {
		fill(a, sizeof(a), i);
		assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 4, i }, 0, sizeof(a), a, 0, 1, NULL), 0);
	}
	assert_int_equal(chunk_engine_remove(e, 4, 0, 200), 200);
	assert_int_equal(chunk_engine_remove(e, 4, 300, 512), 212);
	/* 100 live blocks in 2 groups: occupancy 20%. */
	struct chunk_engine_stat st;
	uint64_t deadline = clock_mono_ms() + 20000;
	do {
		clock_sleep_ms(20);
		chunk_engine_get_stat(e, &st);
	} while (st.used > 16u * MB && clock_mono_ms() < deadline);
	assert_int_equal(st.used, 16u * MB);
	assert_true(st.compact_moves > 0);
	chunk_engine_close(e);
	e = open_engine(dir, 0, 0);
	for (uint32_t i = 200; i < 300; i++) {
		fill(a, sizeof(a), i);
		expect_range(e, (struct chunk_id){ 4, i }, 0, sizeof(a), a, sizeof(a));
	}
	assert_clean(e, 100);
	chunk_engine_close(e);
	log_set_level(LOG_LVL_INFO);
	free(dir);
}

/* Submits OP: async_write_op's write. */
static void async_write(struct chunk_engine *e, struct chunk_op *op, struct async_ctx *c,
			struct chunk_id id, uint32_t off, uint32_t len, const uint8_t *data)
{
	async_write_op(op, c, id, off, len, data);
	chunk_engine_submit(e, op);
}

/* The asynchronous interface: many writes in flight at once, then a
 * batched read, callbacks counted. */
static void test_async(void **state)
{
	char *dir = testenv_tmpdir("engine_async");
	struct chunk_engine *e = open_engine(dir, 1, 0);
	enum { N = 64 };
	static struct chunk_op ops[N];
	static uint8_t data[N][8192];
	struct async_ctx c = ASYNC_CTX_INIT;
	for (int i = 0; i < N; i++) {
		fill(data[i], sizeof(data[i]), 1000 + i);
		/* Two writes per chunk id: they serialise on the chunk lock. */
		async_write(e, &ops[i], &c, (struct chunk_id){ 11, (uint32_t)(i / 2) },
			    (uint32_t)(i % 2) * 8192, 8192, data[i]);
	}
	assert_int_equal(async_wait(&c, N), 0);
	static uint8_t out[N / 2][16384];
	struct chunk_read_range rr[N / 2];
	for (int i = 0; i < N / 2; i++)
		rr[i] = (struct chunk_read_range){ .id = { 11, (uint32_t)i }, .off = 0, .len = 16384,
						   .dst = out[i] };
	assert_int_equal(chunk_engine_read(e, rr, N / 2), 0);
	for (int i = 0; i < N / 2; i++) {
		assert_int_equal(rr[i].result, 16384);
		assert_int_equal(rr[i].info.commit_ver, 2);
		assert_memory_equal(out[i], data[2 * i], 8192);
		assert_memory_equal(out[i] + 8192, data[2 * i + 1], 8192);
	}
	assert_clean(e, N / 2);
	chunk_engine_close(e);
	free(dir);
}

/* The small test engine at DIR, writing a batch's record only after its
 * data (no overlap), no background compaction. */
static void no_overlap_cfg(struct chunk_engine_cfg *cfg, const char *dir)
{
	chunk_engine_cfg_default(cfg);
	cfg->dir = dir;
	cfg->meta_map_bytes = 256u * MB;
	cfg->buf_cache_bytes = 16u * MB;
	cfg->compact_interval_ms = 0;
	cfg->record_overlap = 0;
}

static struct chunk_engine *open_no_overlap(const char *dir)
{
	struct chunk_engine_cfg cfg;
	no_overlap_cfg(&cfg, dir);
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	return e;
}

/* The group commit counters (chunk_engine_stat): N new chunks written at
 * once, records after data (so no write goes early and every one is a
 * copy-on-write data write): every write is counted once in some batch,
 * each batch synced its data, every write's stages were summed, and the
 * flush time lies within the commit time. */
static void test_commit_stats(void **state)
{
	char *dir = testenv_tmpdir("engine_commit_stats");
	struct chunk_engine *e = open_no_overlap(dir);
	enum { N = 32 };
	static struct chunk_op ops[N];
	static uint8_t data[N][65536];
	struct async_ctx c = ASYNC_CTX_INIT;
	for (int i = 0; i < N; i++) {
		fill(data[i], sizeof(data[i]), 3000 + i);
		async_write(e, &ops[i], &c, (struct chunk_id){ 12, (uint32_t)i }, 0, sizeof(data[i]),
			    data[i]);
	}
	assert_int_equal(async_wait(&c, N), 0);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.commit_writes, N);
	assert_in_range(st.commit_batches, 1, N);
	assert_true(st.data_syncs >= st.commit_batches);
	assert_int_equal(st.stage_n, N);
	assert_true(st.sync_us <= st.commit_us);
	assert_true(st.stage_commit_us > 0);
	assert_clean(e, N);
	chunk_engine_close(e);
	free(dir);
}

/* One round: 3 new chunks in each of 3 size classes (3 data files),
 * submitted at once, so batches span several files. */
enum { SYNC_ROUND = 9 };
static void sync_round(struct chunk_engine *e, int round, uint8_t (*data)[256 * 1024])
{
	static struct chunk_op ops[SYNC_ROUND];
	struct async_ctx c = ASYNC_CTX_INIT;
	for (int i = 0; i < SYNC_ROUND; i++) {
		uint32_t len = (64u * KB) << (i % 3);
		fill(data[i], len, (uint32_t)(round * 100 + i));
		async_write(e, &ops[i], &c, (struct chunk_id){ 13, (uint32_t)i }, 0, len, data[i]);
	}
	assert_int_equal(async_wait(&c, SYNC_ROUND), 0);
}

static void expect_round(struct chunk_engine *e, uint8_t (*data)[256 * 1024])
{
	for (int i = 0; i < SYNC_ROUND; i++)
		expect_range(e, (struct chunk_id){ 13, (uint32_t)i }, 0, (64u * KB) << (i % 3),
			     data[i], (int)((64u * KB) << (i % 3)));
}

/* A batch over several data files syncs them at once (joint_syncs), and
 * every write is back after a reopen; CFS_CHUNK_SYNC_SERIAL=1 syncs them
 * one by one (no joint syncs), the data as durable. Rounds repeat until a
 * batch held two files, which concurrent submissions make near certain
 * (one round, barring a stall between the submissions). */
static void test_joint_syncs(void **state)
{
	char *dir = testenv_tmpdir("engine_joint_syncs");
	static uint8_t data[SYNC_ROUND][256 * 1024];
	struct chunk_engine *e = open_no_overlap(dir);
	struct chunk_engine_stat st;
	int round = 0;
	do {
		sync_round(e, round++, data);
		chunk_engine_get_stat(e, &st);
	} while (!st.joint_syncs && round < 50);
	assert_true(st.joint_syncs >= 2);
	assert_true(st.data_syncs >= st.joint_syncs);
	chunk_engine_close(e);
	e = open_no_overlap(dir);
	expect_round(e, data);
	assert_clean(e, SYNC_ROUND);
	chunk_engine_close(e);
	free(dir);

	dir = testenv_tmpdir("engine_serial_syncs");
	setenv("CFS_CHUNK_SYNC_SERIAL", "1", 1);
	e = open_no_overlap(dir);
	unsetenv("CFS_CHUNK_SYNC_SERIAL");
	for (round = 0; round < 3; round++)
		sync_round(e, round, data);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.joint_syncs, 0);
	assert_true(st.data_syncs >= 3);
	chunk_engine_close(e);
	e = open_no_overlap(dir);
	expect_round(e, data);
	chunk_engine_close(e);
	free(dir);
}

/* Opens an engine on DIR (records after data, no_overlap_cfg) in the
 * flush group met in GDIR, with WAIT_MS as its bounded wait (0: the
 * default). Skips the test where groups are refused: they need ext4 or
 * XFS (chunk_flush.c). */
static struct chunk_engine *open_grouped(const char *dir, const char *gdir, unsigned wait_ms)
{
	if (chunk_flush_fs_ok(dir) == -EOPNOTSUPP)
		skip();
	struct chunk_engine_cfg cfg;
	no_overlap_cfg(&cfg, dir);
	cfg.shared_flush = 1;
	cfg.flush_group_dir = gdir;
	if (wait_ms)
		cfg.shared_flush_wait_ms = wait_ms;
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	return e;
}

/* Writes sync rounds from *ROUND on until a batch led a group flush (at
 * most 8 rounds in all) and asserts one did; *ST holds the stats after. */
static void rounds_until_led(struct chunk_engine *e, int *round,
                             uint8_t data[SYNC_ROUND][256 * 1024], struct chunk_engine_stat *st)
{
	do {
		sync_round(e, (*round)++, data);
		chunk_engine_get_stat(e, st);
	} while (!st->group_led && *round < 8);
	assert_true(st->group_led > 0);
}

/* Closes E, reopens DIR without the group and checks every round's bytes
 * and that no block leaked; frees DIR and GDIR. */
static void close_expect_rounds(struct chunk_engine *e, char *dir, char *gdir,
                                uint8_t data[SYNC_ROUND][256 * 1024])
{
	chunk_engine_close(e);
	e = open_no_overlap(dir);
	expect_round(e, data);
	assert_clean(e, SYNC_ROUND);
	chunk_engine_close(e);
	free(gdir);
	free(dir);
}

/* Shared flush (cfg.shared_flush, chunk_flush.h): writes into blocks the
 * engine does not know to be written (every block of a new group) sync
 * their files themselves, and never ask the group; once a block was
 * written whole and synced, a later copy-on-write write landing in it
 * asks the group instead (a copy-on-write round frees the previous
 * round's blocks, which the round after reuses). Every round reads back
 * after a reopen without the group. */
static void test_shared_flush(void **state)
{
	char *dir = testenv_tmpdir("engine_shared_flush");
	char *gdir = testenv_tmpdir("engine_shared_flush_group");
	static uint8_t data[SYNC_ROUND][256 * 1024];
	struct chunk_engine *e = open_grouped(dir, gdir, 0);
	struct chunk_engine_stat st;
	sync_round(e, 0, data);
	chunk_engine_get_stat(e, &st);
	assert_true(st.data_syncs > 0);
	assert_int_equal(st.group_led + st.group_covered, 0);
	int round = 1;
	rounds_until_led(e, &round, data, &st);
	assert_int_equal(st.group_covered, 0); /* alone in its group */
	for (int k = 0; k < 3; k++)
		sync_round(e, round++, data);
	close_expect_rounds(e, dir, gdir, data);
}

/* Written prefix (chunk_alloc_written_upto): a chunk grown by small writes
 * past its end fills its block from the start, and once its file was
 * synced after those writes, the retirement of a small overwrite inside
 * that prefix rides on the group's flush (no data sync of its own), while
 * a write past the prefix still syncs its file (an unwritten extent's
 * conversion needs the file's own sync). Reads back after a reopen. */
static void test_shared_flush_prefix(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("engine_flush_prefix");
	char *gdir = testenv_tmpdir("engine_flush_prefix_group");
	setenv("CFS_CHUNK_FLUSH_PREFIX", "1", 1); /* read by chunk_engine_cfg_default */
	struct chunk_engine *e = open_grouped(dir, gdir, 0);
	unsetenv("CFS_CHUNK_FLUSH_PREFIX");
	static uint8_t model[64 * 1024], w[4096];
	struct chunk_id id = { 7, 0 };
	struct chunk_engine_stat s0, s1;
	model_write(e, id, model, w, 0, 4096, 1, NULL); /* new block: [0, 4K) */
	chunk_engine_get_stat(e, &s0);
	assert_true(s0.data_syncs > 0);
	/* Past the end, a gap: [4K, 20K) written in place, past the prefix. */
	model_write(e, id, model, w, 16384, 4096, 2, NULL);
	chunk_engine_get_stat(e, &s1);
	assert_true(s1.data_syncs > s0.data_syncs);
	/* Small overwrites inside [0, 20K) (journaled, apart so neither
	 * carries the other's journal on): each one's journal leaves the
	 * metadata with the next write or the retire timer, its block's
	 * pages covered by a shared flush. */
	chunk_engine_get_stat(e, &s0);
	model_write(e, id, model, w, 8192, 4096, 3, NULL);
	model_write(e, id, model, w, 0, 4096, 4, NULL);
	model_write(e, id, model, w, 12288, 4096, 5, NULL);
	chunk_engine_get_stat(e, &s1);
	assert_int_equal(s1.data_syncs, s0.data_syncs);
	assert_true(s1.group_led + s1.group_covered > s0.group_led + s0.group_covered);
	/* Past the prefix again: its own sync. */
	model_write(e, id, model, w, 36864, 4096, 6, NULL);
	chunk_engine_get_stat(e, &s0);
	assert_true(s0.data_syncs > s1.data_syncs);
	expect_range(e, id, 0, 40960, model, 40960);
	chunk_engine_close(e);
	e = open_no_overlap(dir);
	expect_range(e, id, 0, 40960, model, 40960);
	assert_clean(e, 1);
	chunk_engine_close(e);
	free(gdir);
	free(dir);
}

/* The bounded wait (cfg.shared_flush_wait_ms): while another member holds
 * the group's lock for longer than the wait (here the test holds it, as a
 * stopped member would), a batch that would ride on the group's flush
 * syncs its own files instead (group_timeouts, data_syncs grow) and its
 * writes complete; the target then syncs alone for a while. Every round
 * reads back after a reopen without the group. */
static void test_shared_flush_fallback(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("engine_flush_fallback");
	char *gdir = testenv_tmpdir("engine_flush_fallback_group");
	static uint8_t data[SYNC_ROUND][256 * 1024];
	struct chunk_engine *e = open_grouped(dir, gdir, 20);
	struct chunk_engine_stat st;
	int round = 0;
	rounds_until_led(e, &round, data, &st);
	assert_int_equal(st.group_timeouts, 0);
	/* The group's file (one per filesystem in GDIR): hold its lock. */
	char cmd[4200], path[4096];
	snprintf(cmd, sizeof(cmd), "ls %s/chainfs-flush-*", gdir);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(path, sizeof(path), p));
	pclose(p);
	path[strcspn(path, "\n")] = 0;
	int lk = open(path, O_RDWR);
	assert_true(lk >= 0);
	assert_int_equal(flock(lk, LOCK_EX), 0);
	uint64_t syncs0 = st.data_syncs, led0 = st.group_led;
	do {
		sync_round(e, round++, data);
		chunk_engine_get_stat(e, &st);
	} while (!st.group_timeouts && round < 16);
	assert_true(st.group_timeouts >= 1);
	assert_true(st.data_syncs > syncs0);
	assert_int_equal(st.group_led, led0);
	sync_round(e, round++, data); /* alone now: no wait */
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.group_led, led0);
	assert_int_equal(flock(lk, LOCK_UN), 0);
	close(lk);
	close_expect_rounds(e, dir, gdir, data);
}

/* A flush of the disk that fails after a batch's writes completed and
 * before the batch's own flush (another member's, on the same disk:
 * CFS_TEST_GROUP_FLUSH_FAIL=1 with _PATH) fails that batch with -EIO and
 * puts the target in ERROR state: the failed flush may have lost the
 * writes that had completed, and the batch's own flush, which works,
 * cannot tell. PATH "files": the batch syncs its files (blocks not known
 * written: the first round); "shared": it rides on the group's flush
 * (rounds until one does). Before, neither failed: the group's error
 * count was read when the batch asked for its flush (after the failure),
 * and not at all after file syncs; au27's audit, chunk_flush.c "Errors". */
static void flush_failed_between(const char *path)
{
	char tag[64];
	snprintf(tag, sizeof(tag), "engine_flush_between_%s", path);
	char *dir = testenv_tmpdir(tag);
	snprintf(tag, sizeof(tag), "engine_flush_between_%s_g", path);
	char *gdir = testenv_tmpdir(tag);
	static uint8_t data[SYNC_ROUND][256 * 1024];
	static struct chunk_op ops[SYNC_ROUND];
	setenv("CFS_TEST_GROUP_FLUSH_FAIL", "1", 1);
	setenv("CFS_TEST_GROUP_FLUSH_FAIL_PATH", path, 1);
	struct chunk_engine *e = open_grouped(dir, gdir, 0);
	unsetenv("CFS_TEST_GROUP_FLUSH_FAIL");
	unsetenv("CFS_TEST_GROUP_FLUSH_FAIL_PATH");
	int failed = 0, eio = 0;
	for (int round = 0; round < 8 && !failed; round++) {
		struct async_ctx c = ASYNC_CTX_INIT;
		for (int i = 0; i < SYNC_ROUND; i++) {
			uint32_t len = (64u * KB) << (i % 3);
			fill(data[i], len, (uint32_t)(round * 100 + i));
			async_write(e, &ops[i], &c, (struct chunk_id){13, (uint32_t)i}, 0, len,
			            data[i]);
		}
		failed = async_wait(&c, SYNC_ROUND);
		for (int i = 0; i < SYNC_ROUND; i++)
			eio += ops[i].result == -EIO;
	}
	assert_true(failed > 0);
	assert_true(eio > 0);
	/* ERROR state: nothing is acknowledged after it. */
	struct async_ctx c = ASYNC_CTX_INIT;
	async_write(e, &ops[0], &c, (struct chunk_id){14, 0}, 0, 64u * KB, data[0]);
	assert_int_equal(async_wait(&c, 1), 1);
	chunk_engine_close(e);
	free(gdir);
	free(dir);
}

static void test_shared_flush_failed_between(void **state)
{
	(void)state;
	flush_failed_between("files");
	flush_failed_between("shared");
}

/* One cache-mode round: 4 chunks of 64 KiB (whole blocks) written at
 * once, FLAGS on every write (CHUNK_WF_NOFLUSH or 0). */
enum { NF_N = 4, NF_LEN = 64 * 1024 };
static void noflush_round(struct chunk_engine *e, int round, uint32_t flags,
			  uint8_t (*data)[NF_LEN])
{
	static struct chunk_op ops[NF_N];
	struct async_ctx c = ASYNC_CTX_INIT;
	for (int i = 0; i < NF_N; i++) {
		fill(data[i], NF_LEN, (uint32_t)(round * 100 + i));
		async_write_op(&ops[i], &c, (struct chunk_id){ 17, (uint32_t)i }, 0, NF_LEN,
			       data[i]);
		ops[i].flags = flags;
		chunk_engine_submit(e, &ops[i]);
	}
	assert_int_equal(async_wait(&c, NF_N), 0);
}


/* A write callback that holds its thread until the test releases it, as
 * a slow CRAQ forward or reply would. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int entered, released, result;
};

static void gate_done(struct chunk_op *op)
{
	struct gate *g = op->arg;
	pthread_mutex_lock(&g->mu);
	g->entered = 1;
	g->result = op->result;
	pthread_cond_broadcast(&g->cv);
	while (!g->released)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

/* Syncs and flushes the engine counted as done for its batches. */
static uint64_t flushes_done(const struct chunk_engine_stat *st)
{
	return st->data_syncs + st->group_led + st->group_covered;
}

/* Cache mode (CHUNK_WF_NOFLUSH, chunk_engine.c noflush_batch), with and
 * without a flush group: writes into blocks not yet known written sync
 * (the first rounds: fresh blocks); once the copy-on-write rounds reuse
 * blocks written and synced before, a round whose batches are all
 * NOFLUSH makes no data fdatasync and no flush of the group (led or
 * covered). Plain writes (flags 0) into the same blocks sync every
 * batch. A mixed batch (a plain write and a NOFLUSH one taken together,
 * the commit thread held by a callback meanwhile) syncs. Everything
 * reads back after a clean reopen. */
static void noflush_case(const char *dir, const char *gdir)
{
	static uint8_t data[NF_N][NF_LEN];
	struct chunk_engine_cfg cfg;
	no_overlap_cfg(&cfg, dir);
	cfg.shared_flush = gdir != NULL;
	cfg.flush_group_dir = gdir;
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	struct chunk_engine_stat st0, st;
	/* Fresh blocks: nothing known written, every batch syncs. */
	chunk_engine_get_stat(e, &st0);
	noflush_round(e, 0, CHUNK_WF_NOFLUSH, data);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.noflush_batches, 0);
	assert_true(st.data_syncs > st0.data_syncs);
	/* Reused blocks: rounds until one was NOFLUSH only. */
	int round = 1, clean = 0;
	for (; round < 24 && !clean; round++) {
		chunk_engine_get_stat(e, &st0);
		noflush_round(e, round, CHUNK_WF_NOFLUSH, data);
		chunk_engine_get_stat(e, &st);
		uint64_t batches = st.commit_batches - st0.commit_batches;
		uint64_t nf = st.noflush_batches - st0.noflush_batches;
		assert_true(nf <= batches);
		if (nf == batches) {
			clean = 1;
			assert_int_equal(st.data_syncs, st0.data_syncs);
			assert_int_equal(st.group_led, st0.group_led);
			assert_int_equal(st.group_covered, st0.group_covered);
			assert_int_equal(st.noflush_writes - st0.noflush_writes, NF_N);
		}
	}
	assert_true(clean);
	/* Plain writes into the same (known written) blocks: every batch
	 * syncs (files, or the group's flush). */
	chunk_engine_get_stat(e, &st0);
	noflush_round(e, round++, 0, data);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.noflush_batches, st0.noflush_batches);
	assert_true(flushes_done(&st) - flushes_done(&st0) >=
		    st.commit_batches - st0.commit_batches);
	/* A mixed batch: hold the commit thread in a callback, queue a plain
	 * write and a NOFLUSH one, release. */
	for (int k = 0; k < 2; k++) /* blocks for both known written again */
		noflush_round(e, round++, CHUNK_WF_NOFLUSH, data);
	struct gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0 };
	static uint8_t gd[NF_LEN];
	fill(gd, NF_LEN, 4242);
	struct chunk_op opg = { .type = CHUNK_OP_WRITE, .done = gate_done, .arg = &g,
				.id = { 17, 9 }, .len = NF_LEN, .data = gd, .chain_ver = 1 };
	chunk_engine_submit(e, &opg);
	pthread_mutex_lock(&g.mu);
	while (!g.entered)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	assert_int_equal(g.result, 0);
	chunk_engine_get_stat(e, &st0);
	static struct chunk_op mops[2];
	struct async_ctx c = ASYNC_CTX_INIT;
	for (int i = 0; i < 2; i++) {
		fill(data[i], NF_LEN, (uint32_t)(round * 100 + i));
		async_write_op(&mops[i], &c, (struct chunk_id){ 17, (uint32_t)i }, 0, NF_LEN,
			       data[i]);
		mops[i].flags = i ? CHUNK_WF_NOFLUSH : 0;
		chunk_engine_submit(e, &mops[i]);
	}
	clock_sleep_ms(500); /* both data writes done and queued */
	pthread_mutex_lock(&g.mu);
	g.released = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	assert_int_equal(async_wait(&c, 2), 0);
	chunk_engine_get_stat(e, &st);
	if (st.commit_batches - st0.commit_batches == 1) { /* one mixed batch */
		assert_int_equal(st.noflush_batches, st0.noflush_batches);
		assert_true(flushes_done(&st) > flushes_done(&st0));
	}
	chunk_engine_close(e);
	e = open_no_overlap(dir);
	for (int i = 0; i < NF_N; i++)
		expect_range(e, (struct chunk_id){ 17, (uint32_t)i }, 0, NF_LEN, data[i], NF_LEN);
	expect_range(e, (struct chunk_id){ 17, 9 }, 0, NF_LEN, gd, NF_LEN);
	assert_clean(e, NF_N + 1);
	chunk_engine_close(e);
}

static void test_noflush(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("engine_noflush");
	noflush_case(dir, NULL);
	free(dir);
	dir = testenv_tmpdir("engine_noflush_grouped");
	char *gdir = testenv_tmpdir("engine_noflush_group");
	if (chunk_flush_fs_ok(dir) != -EOPNOTSUPP)
		noflush_case(dir, gdir);
	free(gdir);
	free(dir);
}

/* One round of the commit pipeline test on a fresh engine at DIR with
 * cfg.commit_pipeline = PIPELINE: write A, whose callback blocks; while it
 * blocks, write B to another chunk. */
static void pipeline_round(const char *dir, int pipeline, const uint8_t *a, const uint8_t *b)
{
	struct chunk_engine_cfg cfg;
	no_overlap_cfg(&cfg, dir);
	cfg.commit_pipeline = pipeline;
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	struct gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0 };
	struct chunk_op opa = { .type = CHUNK_OP_WRITE, .done = gate_done, .arg = &g,
				.id = { 16, 0 }, .len = 64 * KB, .data = a, .chain_ver = 1 };
	chunk_engine_submit(e, &opa);
	pthread_mutex_lock(&g.mu);
	while (!g.entered)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	assert_int_equal(g.result, 0);
	/* A's batch is committed (its flush counted before its callback);
	 * every flush counted from here on is of a batch taken after B was
	 * submitted, i.e. after B's data write completed. */
	struct chunk_engine_stat st0, st;
	chunk_engine_get_stat(e, &st0);
	struct chunk_op opb;
	struct async_ctx c = ASYNC_CTX_INIT;
	async_write(e, &opb, &c, (struct chunk_id){ 16, 1 }, 0, 64 * KB, b);
	/* With the pipeline B's batch commits while A's callback holds the
	 * callback thread (bounded at 30 s for a loaded machine); without it
	 * the commit thread is the one held, and nothing commits. */
	uint64_t until = clock_mono_ms() + (pipeline ? 30000 : 300);
	do {
		usleep(1000);
		chunk_engine_get_stat(e, &st);
	} while (!(st.commit_writes > st0.commit_writes && flushes_done(&st) > flushes_done(&st0)) &&
		 clock_mono_ms() < until);
	if (pipeline) {
		assert_int_equal(st.commit_writes, st0.commit_writes + 1);
		assert_true(flushes_done(&st) > flushes_done(&st0));
		assert_true(st.overlapped_batches >= 1);
	} else {
		assert_int_equal(st.commit_writes, st0.commit_writes);
		assert_int_equal(st.overlapped_batches, 0);
	}
	/* B is acknowledged only after A (commit order), so not yet. */
	pthread_mutex_lock(&c.mu);
	assert_int_equal(c.done, 0);
	pthread_mutex_unlock(&c.mu);
	pthread_mutex_lock(&g.mu);
	g.released = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	assert_int_equal(async_wait(&c, 1), 0);
	/* Acknowledged after a flush that began after its write. */
	chunk_engine_get_stat(e, &st);
	assert_true(flushes_done(&st) > flushes_done(&st0));
	assert_true(st.callback_us > 0);
	chunk_engine_close(e);
	e = open_no_overlap(dir);
	expect_range(e, (struct chunk_id){ 16, 0 }, 0, 64 * KB, a, 64 * KB);
	expect_range(e, (struct chunk_id){ 16, 1 }, 0, 64 * KB, b, 64 * KB);
	assert_clean(e, 2);
	chunk_engine_close(e);
}

/* The commit pipeline (cfg.commit_pipeline): a write that completes while
 * an earlier batch is being called back commits at once, in a flush
 * counted after it was submitted, and is acknowledged after that flush
 * and after the earlier batch's callbacks; with the pipeline off the
 * commit thread calls back itself and commits nothing meanwhile. Both
 * read back after a reopen. */
static void test_commit_pipeline(void **state)
{
	(void)state;
	static uint8_t a[64 * KB], b[64 * KB];
	fill(a, sizeof(a), 4001);
	fill(b, sizeof(b), 4002);
	char *dir = testenv_tmpdir("engine_commit_pipeline");
	pipeline_round(dir, 1, a, b);
	free(dir);
	dir = testenv_tmpdir("engine_commit_serial");
	pipeline_round(dir, 0, a, b);
	free(dir);
}

/* CFS_CHUNK_COMMIT_WINDOW_US sets the commit window (default none; a
 * value that is not microseconds up to a second is refused); with
 * 0 no batch is held open for writes in flight (window_wait_us stays 0
 * under concurrent writes), every write still commits and reads back. */
static void test_commit_window_env(void **state)
{
	(void)state;
	struct chunk_engine_cfg cfg;
	unsetenv("CFS_CHUNK_COMMIT_WINDOW_US");
	chunk_engine_cfg_default(&cfg);
	assert_int_equal(cfg.commit_window_us, 0);
	setenv("CFS_CHUNK_COMMIT_WINDOW_US", "2500", 1);
	chunk_engine_cfg_default(&cfg);
	assert_int_equal(cfg.commit_window_us, 2500);
	/* Not a number, or past a second: refused with a warning, default kept. */
	setenv("CFS_CHUNK_COMMIT_WINDOW_US", "10ms", 1);
	chunk_engine_cfg_default(&cfg);
	assert_int_equal(cfg.commit_window_us, 0);
	setenv("CFS_CHUNK_COMMIT_WINDOW_US", "2000000", 1);
	chunk_engine_cfg_default(&cfg);
	assert_int_equal(cfg.commit_window_us, 0);
	setenv("CFS_CHUNK_COMMIT_WINDOW_US", "0", 1);
	char *dir = testenv_tmpdir("engine_commit_window");
	no_overlap_cfg(&cfg, dir);
	unsetenv("CFS_CHUNK_COMMIT_WINDOW_US");
	assert_int_equal(cfg.commit_window_us, 0);
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	enum { N = 16 };
	static struct chunk_op ops[N];
	static uint8_t data[N][65536];
	struct async_ctx c = ASYNC_CTX_INIT;
	for (int i = 0; i < N; i++) {
		fill(data[i], sizeof(data[i]), 5000 + i);
		async_write(e, &ops[i], &c, (struct chunk_id){ 17, (uint32_t)i }, 0, sizeof(data[i]),
			    data[i]);
	}
	assert_int_equal(async_wait(&c, N), 0);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.commit_writes, N);
	assert_int_equal(st.window_wait_us, 0);
	for (int i = 0; i < N; i++)
		expect_range(e, (struct chunk_id){ 17, (uint32_t)i }, 0, sizeof(data[i]), data[i],
			     (int)sizeof(data[i]));
	assert_clean(e, N);
	chunk_engine_close(e);
	free(dir);
}

/* Reads RR the way a storage loop thread does (chunk_engine_read_prep, a
 * preadv2 RWF_NOWAIT on a cached fd, else a blocking pread, then
 * chunk_engine_read_end); returns whether the bytes came from the cache. */
static int split_read(struct chunk_engine *e, struct chunk_read_range *rr)
{
	struct chunk_read_io io;
	int rc = chunk_engine_read_prep(e, rr, &io);
	if (rc == 2) { /* mid journal apply: the engine parks it */
		assert_int_equal(chunk_engine_read(e, rr, 1), 0);
		return 0;
	}
	if (rc != 1)
		return 0;
	struct iovec iov = { io.buf, io.len };
	ssize_t got = io.cached ? preadv2(io.fd, &iov, 1, (off_t)io.file_off, RWF_NOWAIT) : -1;
	int hit = got == (ssize_t)io.len;
	if (io.cached) /* as the storage loop reports its probes */
		chunk_engine_read_probed(e, hit);
	if (!hit)
		got = pread(io.fd, io.buf, io.len, (off_t)io.file_off);
	chunk_engine_read_end(e, rr, &io, (int)got);
	return hit;
}

static void expect_split(struct chunk_engine *e, struct chunk_id id, uint32_t off, uint32_t len,
			 const uint8_t *expect, int want, int *hits)
{
	uint8_t *dst = malloc(len + 1);
	struct chunk_read_range rr = { .id = id, .off = off, .len = len, .dst = dst };
	*hits += split_read(e, &rr);
	assert_int_equal(rr.result, want);
	if (want > 0) {
		assert_memory_equal(dst, expect, (size_t)want);
		/* The reply's CRC, folded from the page CRCs of the range. */
		assert_int_equal(rr.crc, crc32c(0, dst, (size_t)want));
	}
	free(dst);
}

static int op_wait(struct chunk_engine *e, struct chunk_op *op)
{
	struct async_ctx c = ASYNC_CTX_INIT;
	op->done = async_done;
	op->arg = &c;
	chunk_engine_submit(e, op);
	async_wait(&c, 1);
	return op->result;
}

/* CHUNK_WF_VERIFY (a CRAQ member's apply whose CRC the engine checks
 * while the member forwards): a write whose data_crc its bytes do not match
 * fails with -CFS_ECHECKSUM and changes nothing, whether the chunk is new
 * (copy-on-write into a fresh block), an in-place append, a journaled
 * overwrite or at an unaligned offset; a right CRC writes as usual, its
 * page CRCs taken from the check (reads verify them). */
static void test_verify(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("engine_verify");
	struct chunk_engine *e = open_engine(dir, 1, 0);
	const uint32_t n = 1 * MB;
	uint8_t *a = malloc(n), *b = malloc(n);
	fill(a, n, 7);
	fill(b, n, 8);
	struct chunk_id id = { 77, 0 };
	struct chunk_op op = { .type = CHUNK_OP_WRITE, .id = id, .off = 0, .len = n, .data = a,
			       .flags = CHUNK_WF_VERIFY, .data_crc = crc32c(0, a, n) ^ 1 };
	assert_int_equal(op_wait(e, &op), -CFS_ECHECKSUM);
	expect_range(e, id, 0, 10, NULL, -ENOENT);
	op.data_crc ^= 1;
	assert_int_equal(op_wait(e, &op), 0);
	assert_int_equal(op.info.commit_ver, 1);
	assert_int_equal(op.info.crc, crc32c(0, a, n));
	expect_range(e, id, 0, n, a, (int)n);
	/* Overwrite (journaled: one page), unaligned write, append: each
	 * refused with a wrong CRC, the chunk as it was. */
	struct { uint32_t off, len; } w[] = { { 8 * KB, 4 * KB }, { 1000, 3000 }, { n - 4 * KB, 8 * KB } };
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		struct chunk_op o = { .type = CHUNK_OP_WRITE, .id = id, .off = w[i].off,
				      .len = w[i].len, .data = b, .flags = CHUNK_WF_VERIFY,
				      .data_crc = crc32c(0, b, w[i].len) ^ 1 };
		assert_int_equal(op_wait(e, &o), -CFS_ECHECKSUM);
		struct chunk_info info;
		assert_int_equal(chunk_engine_query(e, id, &info), 0);
		assert_int_equal(info.commit_ver, 1);
		assert_int_equal(info.len, n);
		expect_range(e, id, 0, n, a, (int)n);
	}
	struct chunk_op o = { .type = CHUNK_OP_WRITE, .id = id, .off = 1000, .len = 3000,
			      .data = b, .flags = CHUNK_WF_VERIFY, .data_crc = crc32c(0, b, 3000) };
	assert_int_equal(op_wait(e, &o), 0);
	memcpy(a + 1000, b, 3000);
	expect_range(e, id, 0, n, a, (int)n);
	assert_clean(e, 1);
	chunk_engine_close(e);
	free(a);
	free(b);
	free(dir);
}

/* Small reads through the page cache (chunk_engine.c "page-cache reads"):
 * with every page of a chunk cached, a copy-on-write overwrite, a
 * journaled overwrite, an in-place append, a replace that shortens the
 * chunk (truncate, resync), a remove and a new chunk in the freed block
 * are each read back with the new bytes, through both the engine and the
 * split read a storage loop does; no read needed the direct re-check
 * (stale_cached_reads stays 0: the kernel dropped what the direct writes
 * changed). Then a byte flipped on disk under warm cached pages (an
 * O_DIRECT write, as a bad disk would hand back) is still reported corrupt,
 * and a target with cached reads off reads the same bytes. */
static void test_cached_reads(void **state)
{
	char *dir = testenv_tmpdir("engine_cached");
	struct chunk_engine *e = open_engine(dir, 0, 0);
	enum { LEN = 60 * KB };
	uint8_t *model = malloc(LEN + 8 * KB), *tmp = malloc(LEN + 8 * KB);
	struct chunk_id id = { 77, 0 };
	fill(model, LEN, 1);
	assert_int_equal(chunk_engine_write(e, id, 0, LEN, model, 0, 1, NULL), 0);
	int hits = 0;
	uint32_t len = LEN;
	for (int round = 0; round < 6; round++) {
		/* Warm every page: the second pass must hit the cache. */
		for (int pass = 0; pass < 2; pass++)
			for (uint32_t off = 0; off < len; off += 4 * KB)
				expect_split(e, id, off, 4 * KB, model + off,
					     (int)(len - off < 4 * KB ? len - off : 4 * KB), &hits);
		expect_range(e, id, 0, len, model, (int)len);
		switch (round) {
		case 0: /* whole overwrite: copy-on-write into another block */
			fill(model, len, 2);
			assert_int_equal(chunk_engine_write(e, id, 0, len, model, 0, 1, NULL), 0);
			break;
		case 1: /* small overwrite: journaled, applied in place */
			model_write(e, id, model, tmp, 8 * KB, 4 * KB, 3, NULL);
			break;
		case 2: /* unaligned small overwrite across a page boundary */
			model_write(e, id, model, tmp, 4 * KB - 50, 100, 4, NULL);
			break;
		case 3: /* append inside the block (its partial last page rewritten) */
			model_write(e, id, model, tmp, len, 3000, 5, NULL);
			len += 3000;
			break;
		case 4: { /* replace with a shorter image: a truncate, a resync */
			len = 10 * KB + 123;
			fill(model, len, 6);
			struct chunk_op op = { .type = CHUNK_OP_WRITE, .id = id, .off = 0, .len = len,
					       .data = model, .chain_ver = 1,
					       .flags = CHUNK_WF_REPLACE };
			assert_int_equal(op_wait(e, &op), 0);
			expect_range(e, id, len, 4 * KB, NULL, 0);
			break;
		}
		case 5: { /* remove; a new chunk of the class takes the freed block */
			assert_int_equal(chunk_engine_remove(e, id.ino, 0, 1), 1);
			expect_split(e, id, 0, 4 * KB, NULL, -ENOENT, &hits);
			id = (struct chunk_id){ 78, 0 };
			fill(model, len, 7);
			assert_int_equal(chunk_engine_write(e, id, 0, len, model, 0, 1, NULL), 0);
			break;
		}
		}
		for (uint32_t off = 0; off < len; off += 4 * KB)
			expect_split(e, id, off, 4 * KB, model + off,
				     (int)(len - off < 4 * KB ? len - off : 4 * KB), &hits);
		expect_range(e, id, 0, len, model, (int)len);
	}
	assert_true(hits > 0); /* the cached path was taken */
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.stale_cached_reads, 0);
	assert_int_equal(st.corrupt_reads, 0);

	/* A flipped byte written to the disk under warm pages. */
	struct chunk_info info;
	assert_int_equal(chunk_engine_query(e, id, &info), 0);
	for (int pass = 0; pass < 2; pass++)
		expect_split(e, id, 4 * KB, 4 * KB, model + 4 * KB, 4 * KB, &hits);
	char path[512];
	snprintf(path, sizeof(path), "%s/data/c%02u/f%03u", dir, info.pos.cls, info.pos.file);
	int fd = open(path, O_RDWR | O_DIRECT);
	assert_true(fd >= 0);
	uint8_t *page = aligned_alloc(4096, 4096);
	assert_non_null(page);
	off_t poff = 4096 + (off_t)info.pos.block * 65536 + 4096;
	assert_int_equal(pread(fd, page, 4096, poff), 4096);
	page[17] ^= 0x40;
	assert_int_equal(pwrite(fd, page, 4096, poff), 4096);
	close(fd);
	free(page);
	log_set_level(LOG_LVL_ERR - 1); /* the corruption lines are expected */
	expect_split(e, id, 4 * KB, 4 * KB, NULL, -CFS_ECORRUPT, &hits);
	expect_range(e, id, 4 * KB, 100, NULL, -CFS_ECORRUPT);
	expect_split(e, id, 0, 4 * KB, model, 4 * KB, &hits); /* its neighbour is fine */
	log_set_level(LOG_LVL_WARN);
	chunk_engine_close(e);

	/* Cached reads off: every read O_DIRECT, the same bytes. */
	struct chunk_engine_cfg cfg;
	chunk_engine_cfg_default(&cfg);
	cfg.dir = dir;
	cfg.meta_map_bytes = 256u * MB;
	cfg.buf_cache_bytes = 16u * MB;
	cfg.cached_read_max = 0;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	int before = hits;
	expect_split(e, id, 8 * KB, 2 * KB, model + 8 * KB, 2 * KB, &hits);
	assert_int_equal(hits, before);
	chunk_engine_close(e);
	free(model);
	free(tmp);
	free(dir);
}

/* Reads prep hands out after a window of probes of which HITS hit: how
 * many of N 4 KiB reads came out cached, each read back and checked. */
static int cached_of(struct chunk_engine *e, struct chunk_id id, const uint8_t *model, int hits,
		     int n)
{
	for (int i = 0; i < 256; i++) /* CR_WINDOW probes */
		chunk_engine_read_probed(e, i < hits);
	int cached = 0;
	uint8_t *dst = aligned_alloc(4096, 4 * KB);
	assert_non_null(dst);
	for (int i = 0; i < n; i++) {
		uint32_t off = (uint32_t)(i % 15) * 4 * KB;
		struct chunk_read_range rr = { .id = id, .off = off, .len = 4 * KB, .dst = dst };
		struct chunk_read_io io;
		assert_int_equal(chunk_engine_read_prep(e, &rr, &io), 1);
		cached += io.cached;
		ssize_t got = pread(io.fd, io.buf, io.len, (off_t)io.file_off);
		chunk_engine_read_end(e, &rr, &io, (int)got);
		assert_int_equal(rr.result, 4 * KB);
		assert_memory_equal(dst, model + off, 4 * KB);
	}
	free(dst);
	return cached;
}

/* When the page cache pays (chunk_engine.c "page-cache reads"): after a
 * window of probes that missed, small reads go O_DIRECT but one in eight
 * (which still probes, so a warming cache is noticed); after a window
 * that hit, every small read is cached again. Same bytes either way. */
static void test_cached_reads_adapt(void **state)
{
	char *dir = testenv_tmpdir("engine_cached_adapt");
	struct chunk_engine *e = open_engine(dir, 0, 0);
	enum { LEN = 60 * KB };
	uint8_t *model = malloc(LEN);
	struct chunk_id id = { 91, 0 };
	fill(model, LEN, 9);
	assert_int_equal(chunk_engine_write(e, id, 0, LEN, model, 0, 1, NULL), 0);
	assert_int_equal(cached_of(e, id, model, 256, 16), 16); /* probes hit: all cached */
	assert_int_equal(cached_of(e, id, model, 0, 16), 2);    /* probes missed: 1 in 8 */
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.direct_small_reads, 14);
	assert_int_equal(st.cached_probes, 512);
	assert_int_equal(st.cached_hits, 256);
	/* Half the window hitting is enough to probe every read again. */
	for (int i = 0; i < 128; i++)
		chunk_engine_read_probed(e, 0);
	assert_int_equal(cached_of(e, id, model, 256, 16), 16);
	assert_int_equal(st.corrupt_reads, 0);
	chunk_engine_close(e);
	free(model);
	free(dir);
}

/* The engine's probe (common/cache_probe.h without its rise test): a
 * window below half goes O_DIRECT even when its hit rate rose over the
 * window before, which the mount's probe would take for a warming set. */
static void test_cached_reads_no_rise(void **state)
{
	char *dir = testenv_tmpdir("engine_cached_norise");
	struct chunk_engine *e = open_engine(dir, 0, 0);
	enum { LEN = 60 * KB };
	uint8_t *model = malloc(LEN);
	struct chunk_id id = { 92, 0 };
	fill(model, LEN, 10);
	assert_int_equal(chunk_engine_write(e, id, 0, LEN, model, 0, 1, NULL), 0);
	assert_int_equal(cached_of(e, id, model, 0, 16), 2);   /* cold */
	assert_int_equal(cached_of(e, id, model, 100, 16), 2); /* 0 -> 39 %: still cold */
	assert_int_equal(cached_of(e, id, model, 120, 16), 2); /* -> 47 % */
	assert_int_equal(cached_of(e, id, model, 128, 16), 16); /* half: probing again */
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.direct_small_reads, 3 * 14);
	assert_int_equal(st.cached_probes, 4 * 256);
	assert_int_equal(st.cached_hits, 348);
	assert_int_equal(st.corrupt_reads, 0);
	chunk_engine_close(e);
	free(model);
	free(dir);
}

/* An engine in DIR that writes through the fixed-buffer set F. */
static struct chunk_engine *fixed_engine(const char *dir, struct chunk_fixed *f)
{
	struct chunk_engine_cfg cfg;
	no_overlap_cfg(&cfg, dir);
	cfg.fixed = f;
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	return e;
}

/* SZ bytes of shared anonymous memory, as a service's arena is. */
static uint8_t *fixed_anon(size_t sz)
{
	uint8_t *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	return p;
}

/* Fills 64 KiB at P with pattern SEED and writes them as chunk ID. */
static void fixed_write64k(struct chunk_engine *e, struct chunk_id id, uint8_t *p, int seed)
{
	fill(p, 64 * KB, seed);
	assert_int_equal(chunk_engine_write(e, id, 0, 64 * KB, p, 0, 1, NULL), 0);
}

/* Chunk ID reads back as 64 KiB of pattern SEED. */
static void fixed_expect64k(struct chunk_engine *e, struct chunk_id id, int seed)
{
	static uint8_t model[64 * KB];
	fill(model, sizeof(model), seed);
	expect_range(e, id, 0, sizeof(model), model, (int)sizeof(model));
}

/* Fixed buffers (chunk_fixed.h): writes from a registered range go out
 * as WRITE_FIXED from one registered piece (two 1 MiB writes starting in
 * the same 4 MiB piece, one crossing into the next piece's start,
 * register it once) and read back as written; a write from other memory
 * does not. Then the range is removed, unmapped and other bytes mapped
 * at the SAME address as a new range: a write from there must write the
 * new bytes, not those of the pages the engine registered for the old
 * range (which an address-keyed registration does: the read then fails
 * its CRC check). */
static void test_fixed_buffers(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("engine_fixed");
	const size_t sz = 16u * MB;
	uint8_t *base = fixed_anon(sz);
	struct chunk_fixed *f = chunk_fixed_new();
	uint64_t id = chunk_fixed_add(f, base, sz);
	assert_true(id > 0);
	struct chunk_engine *e = fixed_engine(dir, f);
	uint8_t *a = base + 4 * MB, *b = base + 7 * MB + 512 * KB;
	fill(a, MB, 11);
	fill(b, MB, 12);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 10, 0 }, 0, MB, a, 0, 1, NULL), 0);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 10, 1 }, 0, MB, b, 0, 1, NULL), 0);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.fixed_writes, 2);
	assert_int_equal(st.fixed_regs, 1);
	uint8_t *heap = aligned_alloc(4096, MB);
	fill(heap, MB, 13);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 10, 2 }, 0, MB, heap, 0, 1, NULL), 0);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.fixed_writes, 2);
	uint8_t *model = malloc(MB);
	fill(model, MB, 11);
	expect_range(e, (struct chunk_id){ 10, 0 }, 0, MB, model, (int)MB);
	fill(model, MB, 12);
	expect_range(e, (struct chunk_id){ 10, 1 }, 0, MB, model, (int)MB);
	fill(model, MB, 13);
	expect_range(e, (struct chunk_id){ 10, 2 }, 0, MB, model, (int)MB);

	chunk_fixed_remove(f, id);
	assert_false(chunk_fixed_live(f, id));
	uint8_t *again = mmap(base, sz, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	assert_ptr_equal(again, base);
	uint64_t id2 = chunk_fixed_add(f, base, sz);
	assert_true(id2 > 0 && id2 != id);
	fill(a, MB, 14);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 10, 3 }, 0, MB, a, 0, 1, NULL), 0);
	fill(model, MB, 14);
	expect_range(e, (struct chunk_id){ 10, 3 }, 0, MB, model, (int)MB);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.fixed_writes, 3);
	assert_int_equal(st.fixed_regs, 2);
	/* A write too long for the piece it starts in goes out plain. */
	fill(b, 5 * MB, 15);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 10, 4 }, 0, 5 * MB, b, 0, 1, NULL),
			 0);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.fixed_writes, 3);
	chunk_engine_close(e);
	chunk_fixed_free(f);
	munmap(base, sz);
	free(heap);
	free(model);
	free(dir);
}


/* More pieces than the ring has slots (64): writes from 70 pieces in
 * turn evict the least recently used registrations, a write from the
 * first piece again registers it anew, and every chunk reads back as
 * written (a slot matched to the wrong piece writes other bytes than
 * the ones whose CRCs the engine stored: the read fails). */
static void test_fixed_evict(void **state)
{
	(void)state;
	enum { NP = 70 };
	char *dir = testenv_tmpdir("engine_fixed_evict");
	const size_t sz = (size_t)NP * CHUNK_FIXED_PIECE;
	uint8_t *base = fixed_anon(sz);
	struct chunk_fixed *f = chunk_fixed_new();
	assert_true(chunk_fixed_add(f, base, sz) > 0);
	struct chunk_engine *e = fixed_engine(dir, f);
	for (uint32_t k = 0; k < NP; k++)
		fixed_write64k(e, (struct chunk_id){20, k}, base + k * CHUNK_FIXED_PIECE,
		               100 + (int)k);
	fixed_write64k(e, (struct chunk_id){21, 0}, base, 300);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.fixed_writes, NP + 1);
	assert_int_equal(st.fixed_regs, NP + 1);
	for (uint32_t k = 0; k < NP; k++)
		fixed_expect64k(e, (struct chunk_id){20, k}, 100 + (int)k);
	fixed_expect64k(e, (struct chunk_id){21, 0}, 300);
	chunk_engine_close(e);
	chunk_fixed_free(f);
	munmap(base, sz);
	free(dir);
}

/* Writes from more pieces than the ring has slots, queued in ONE pass of
 * the I/O thread (submitted from a callback on it, so its loop finds them
 * all in the inbox at once): the 65th piece evicts the slot of the first
 * write while that write's SQE would still sit in the submission queue
 * unless fixed_set submitted it first. An SQE issued after its slot
 * changed binds the new piece: the first write then fails -EFAULT (its
 * address lies outside that piece). Every write succeeds and reads back. */
enum { FQ_N = 66 };
struct fixed_queued {
	struct chunk_engine *e;
	uint8_t *base;
	struct async_ctx c;
	struct chunk_op ops[FQ_N];
};

static void fixed_queued_go(struct chunk_op *op)
{
	struct fixed_queued *q = op->arg;
	for (uint32_t k = 0; k < FQ_N; k++) {
		async_write_op(&q->ops[k], &q->c, (struct chunk_id){ 22, k }, 0, 64 * KB,
			       q->base + k * CHUNK_FIXED_PIECE);
		chunk_engine_submit(q->e, &q->ops[k]);
	}
}

static void test_fixed_queued(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("engine_fixed_queued");
	const size_t sz = (size_t)FQ_N * CHUNK_FIXED_PIECE;
	uint8_t *base = fixed_anon(sz);
	struct chunk_fixed *f = chunk_fixed_new();
	assert_true(chunk_fixed_add(f, base, sz) > 0);
	static struct fixed_queued q = { .c = ASYNC_CTX_INIT };
	q.base = base;
	q.e = fixed_engine(dir, f);
	for (uint32_t k = 0; k < FQ_N; k++)
		fill(base + k * CHUNK_FIXED_PIECE, 64 * KB, 400 + k);
	struct chunk_op go = { .type = CHUNK_OP_QUERY, .done = fixed_queued_go, .arg = &q,
			       .id = { 22, 1000 } };
	chunk_engine_submit(q.e, &go);
	assert_int_equal(async_wait(&q.c, FQ_N), 0);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(q.e, &st);
	assert_int_equal(st.fixed_writes, FQ_N);
	assert_int_equal(st.fixed_regs, FQ_N);
	for (uint32_t k = 0; k < FQ_N; k++)
		fixed_expect64k(q.e, (struct chunk_id){22, k}, 400 + (int)k);
	chunk_engine_close(q.e);
	chunk_fixed_free(f);
	munmap(base, sz);
	free(dir);
}

/* A piece the kernel refuses to register (here: a read-only mapping, which
 * io_uring cannot pin for writing; in service RLIMIT_MEMLOCK without
 * CAP_IPC_LOCK, or an old kernel) costs nothing but the fixed path: the
 * write goes out plain and succeeds, and reads back as written. A write
 * naming the slot anyway would fail -EFAULT (an empty slot). */
static void test_fixed_refused(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("engine_fixed_refused");
	const size_t sz = 8u * MB;
	int fd = memfd_create("fixed-refused", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)sz), 0);
	uint8_t *rw = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	uint8_t *ro = mmap(NULL, sz, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(rw != MAP_FAILED && ro != MAP_FAILED);
	struct chunk_fixed *f = chunk_fixed_new();
	assert_true(chunk_fixed_add(f, ro, sz) > 0);
	struct chunk_engine *e = fixed_engine(dir, f);
	log_set_level(LOG_LVL_ERR); /* the refusal's warning */
	fill(rw, 64 * KB, 500);
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 23, 0 }, 0, 64 * KB, ro, 0, 1, NULL),
			 0);
	log_set_level(LOG_LVL_INFO);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.fixed_writes, 0);
	assert_int_equal(st.fixed_regs, 0);
	fixed_expect64k(e, (struct chunk_id){23, 0}, 500);
	chunk_engine_close(e);
	chunk_fixed_free(f);
	munmap(rw, sz);
	munmap(ro, sz);
	close(fd);
	free(dir);
}

/* A removed range's pieces are let go without another write: a slot
 * keeps its pages pinned (a departed predecessor's 256 MiB arena), so
 * the engine must not wait for a write that may never come on an idle
 * target. chunk_fixed_remove wakes the I/O thread, which empties the
 * slot; then a write from a new range registers anew. */
static void test_fixed_departed(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("engine_fixed_departed");
	const size_t sz = 8u * MB;
	uint8_t *base = fixed_anon(sz);
	struct chunk_fixed *f = chunk_fixed_new();
	uint64_t id = chunk_fixed_add(f, base, sz);
	struct chunk_engine *e = fixed_engine(dir, f);
	fixed_write64k(e, (struct chunk_id){24, 0}, base, 600);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.fixed_writes, 1);
	assert_int_equal(st.fixed_held, 1);
	chunk_fixed_remove(f, id);
	munmap(base, sz);
	uint64_t deadline = clock_mono_ms() + 5000;
	do {
		clock_sleep_ms(5);
		chunk_engine_get_stat(e, &st);
	} while (st.fixed_held && clock_mono_ms() < deadline);
	assert_int_equal(st.fixed_held, 0);
	uint8_t *other = fixed_anon(sz);
	assert_true(chunk_fixed_add(f, other, sz) > 0);
	fixed_write64k(e, (struct chunk_id){24, 1}, other, 601);
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.fixed_writes, 2);
	assert_int_equal(st.fixed_held, 1);
	fixed_expect64k(e, (struct chunk_id){24, 0}, 600);
	fixed_expect64k(e, (struct chunk_id){24, 1}, 601);
	chunk_engine_close(e);
	chunk_fixed_free(f);
	munmap(other, sz);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_cow_append_grow),
		cmocka_unit_test(test_read_races_overwrite),
		cmocka_unit_test(test_corruption),
		cmocka_unit_test(test_record_bad_while_open),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test_teardown(test_real_enospc, fullfs_teardown),
		cmocka_unit_test(test_compaction),
		cmocka_unit_test(test_background_compactor),
		cmocka_unit_test(test_async),
		cmocka_unit_test(test_commit_stats),
		cmocka_unit_test(test_joint_syncs),
		cmocka_unit_test(test_shared_flush),
		cmocka_unit_test(test_shared_flush_fallback),
		cmocka_unit_test(test_shared_flush_failed_between),
		cmocka_unit_test(test_commit_pipeline),
		cmocka_unit_test(test_noflush),
		cmocka_unit_test(test_commit_window_env),
		cmocka_unit_test(test_shared_flush_prefix),
		cmocka_unit_test(test_cached_reads),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_cached_reads_adapt),
		cmocka_unit_test(test_cached_reads_no_rise),
		cmocka_unit_test(test_fixed_buffers),
		cmocka_unit_test(test_fixed_evict),
		cmocka_unit_test(test_fixed_queued),
		cmocka_unit_test(test_fixed_refused),
		cmocka_unit_test(test_fixed_departed),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
