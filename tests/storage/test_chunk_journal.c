/* test_chunk_journal.c - small overwrites of the chunk engine (journaled in
 * the metadata, applied in place; see chunk_engine.c): random overwrite
 * patterns against an in-memory model (with a restart in the middle and
 * many writes in flight), readers racing overwrites never see a mix of old
 * and new pages, and a journal committed but not applied before a crash is
 * applied at the next open; journals retire lazily, but never drop pages
 * that are not durable in place (test_lazy_retire). Kill -9 during a stream of small overwrites is
 * in test_chunk_crash.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "storage/chunk_crc.h"
#include "storage/chunk_engine.h"
#include "storage/chunk_store.h"
#include "../lib/testenv.h"
#include "engine_test.h"

#define KB 1024u
#define MB (1024u * 1024u)

static struct chunk_engine *open_engine(const char *dir, int sync)
{
	struct chunk_engine_cfg cfg;
	chunk_engine_cfg_default(&cfg);
	cfg.dir = dir;
	cfg.sync = sync;
	cfg.compact_interval_ms = 0;
	cfg.meta_map_bytes = 256u * MB;
	cfg.buf_cache_bytes = 16u * MB;
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	return e;
}

/* ---- random overwrites against a model ---------------------------------- */

#define NCH 4
static const uint32_t init_len[NCH] = { 1 * MB, 100000, 64 * KB, 9000 };

struct mchunk {
	uint8_t *data; /* 2 MiB */
	uint32_t len;
};

static void model_apply(struct mchunk *m, uint32_t off, const uint8_t *d, uint32_t len)
{
	if (off > m->len)
		memset(m->data + m->len, 0, off - m->len);
	memcpy(m->data + off, d, len);
	if (off + len > m->len)
		m->len = off + len;
}

static void verify_all(struct chunk_engine *e, struct mchunk *m, uint8_t *buf, uint32_t *rng)
{
	for (int k = 0; k < NCH; k++) {
		struct chunk_read_range rr = { .id = { 3, (uint32_t)k }, .off = 0, .len = 2 * MB, .dst = buf };
		assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
		assert_int_equal(rr.result, (int)m[k].len);
		assert_memory_equal(buf, m[k].data, m[k].len);
		assert_int_equal(rr.info.crc, crc32c(0, m[k].data, m[k].len));
		/* An unaligned piece (a bounce-buffer read). */
		*rng = *rng * 1103515245u + 12345u;
		uint32_t off = (*rng >> 4) % m[k].len, len = 1 + (*rng >> 9) % 9999;
		if (off + len > m[k].len)
			len = m[k].len - off;
		rr = (struct chunk_read_range){ .id = { 3, (uint32_t)k }, .off = off, .len = len,
						.dst = buf };
		assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
		assert_int_equal(rr.result, (int)len);
		assert_memory_equal(buf, m[k].data + off, len);
	}
}

static void test_model_overwrites(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("journal_model");
	struct chunk_engine *e = open_engine(dir, 0);
	struct mchunk m[NCH];
	uint8_t *w = malloc(2 * MB), *buf = aligned_alloc(4096, 2 * MB);
	uint32_t rng = 12345;
	for (int k = 0; k < NCH; k++) {
		m[k].data = calloc(1, 2 * MB);
		m[k].len = 0;
		fill(w, init_len[k], 50 + k);
		assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 3, (uint32_t)k }, 0, init_len[k],
						    w, 0, 1, NULL), 0);
		model_apply(&m[k], 0, w, init_len[k]);
	}
	int same_block = 0, small = 0;
	for (int n = 0; n < 1500; n++) {
		rng = rng * 1103515245u + 12345u;
		int k = (int)((rng >> 8) % NCH);
		uint32_t r2 = rng * 2654435761u, kind = (r2 >> 3) % 20, off, len;
		uint32_t cur = m[k].len;
		if (kind < 16) { /* small overwrite inside the chunk */
			off = r2 % cur;
			len = 1 + (r2 >> 11) % (kind < 8 ? 4096 : 20000);
			if (off + len > cur)
				len = cur - off;
			if (kind % 4 == 0) { /* page aligned, whole pages */
				off &= ~4095u;
				len = (len + 4095u) & ~4095u;
				if (off + len > cur)
					len = cur - off;
			}
		} else if (kind < 18) { /* straddles the end: copy-on-write */
			off = cur - 1 - r2 % (cur < 3000 ? cur : 3000);
			len = 1 + (r2 >> 13) % 6000;
		} else if (kind < 19) { /* append */
			off = cur;
			len = 1 + (r2 >> 13) % 5000;
		} else { /* full rewrite, back to the initial size */
			off = 0;
			len = init_len[k];
		}
		if (off + len > 2 * MB)
			continue;
		fill(w, len, 1000 + (uint32_t)n);
		struct chunk_info before, after;
		assert_int_equal(chunk_engine_query(e, (struct chunk_id){ 3, (uint32_t)k }, &before), 0);
		assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 3, (uint32_t)k }, off, len, w, 0,
						    1, &after), 0);
		model_apply(&m[k], off, w, len);
		assert_int_equal(after.len, m[k].len);
		assert_int_equal(after.crc, crc32c(0, m[k].data, m[k].len));
		assert_int_equal(after.commit_ver, before.commit_ver + 1);
		if (kind < 16) {
			small++;
			same_block += chunk_pos_eq(before.pos, after.pos);
		}
		if (n % 100 == 99)
			verify_all(e, m, buf, &rng);
		if (n == 700) { /* restart: journals left in the metadata replay */
			chunk_engine_close(e);
			e = open_engine(dir, 0);
			verify_all(e, m, buf, &rng);
			assert_clean(e, NCH);
		}
	}
	print_message("small overwrites %d, applied in place %d\n", small, same_block);
	/* Most small overwrites are journaled (not those over half a chunk,
	 * frequent on the 9000-byte one). */
	assert_true(same_block * 2 >= small);
	/* Many overwrites in flight, several per chunk: applied in submission
	 * order per chunk, all in one go. */
	enum { N = 96 };
	static struct chunk_op ops[N];
	static uint8_t data[N][6000];
	struct async_ctx c = ASYNC_CTX_INIT;
	for (int i = 0; i < N; i++) {
		int k = i % 2;
		rng = rng * 1103515245u + 12345u;
		uint32_t len = 1 + (rng >> 7) % 6000, off = (rng >> 3) % (m[k].len - len);
		if (i % 3 == 0)
			off &= ~4095u, len = 4096;
		fill(data[i], len, 7000 + i);
		async_write_op(&ops[i], &c, (struct chunk_id){ 3, (uint32_t)k }, off, len, data[i]);
		model_apply(&m[k], off, data[i], len);
	}
	for (int i = 0; i < N; i++)
		chunk_engine_submit(e, &ops[i]);
	assert_int_equal(async_wait(&c, N), 0);
	verify_all(e, m, buf, &rng);
	assert_clean(e, NCH);
	chunk_engine_close(e);
	e = open_engine(dir, 0);
	verify_all(e, m, buf, &rng);
	assert_clean(e, NCH);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(e, &st);
	assert_int_equal(st.corrupt_reads, 0);
	chunk_engine_close(e);
	for (int k = 0; k < NCH; k++)
		free(m[k].data);
	free(w);
	free(buf);
	free(dir);
}

/* ---- readers racing small overwrites -------------------------------------- */

/* Regions of chunk {4,0} (256 KiB) that every write rewrites whole with
 * one 32-bit value repeated: R is 4 aligned pages, S unaligned at both
 * ends. A read of a region must see one value (old or new, never a mix),
 * never older than one it saw before. */
#define R_OFF (64 * KB)
#define R_LEN (16 * KB)
#define S_OFF 100000u
#define S_LEN 10000u

struct race {
	struct chunk_engine *e;
	atomic_int stop;
	atomic_uint reads, torn;
};

static void stamp(uint8_t *p, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i += 4)
		memcpy(p + i, &v, 4);
}

/* The value of a region, or UINT32_MAX when it is not uniform. */
static uint32_t uniform(const uint8_t *p, size_t n)
{
	uint32_t v, x;
	memcpy(&v, p, 4);
	for (size_t i = 4; i < n; i += 4) {
		memcpy(&x, p + i, 4);
		if (x != v)
			return UINT32_MAX;
	}
	return v;
}

static void *race_reader(void *arg)
{
	struct race *rc = arg;
	uint8_t *r = aligned_alloc(4096, R_LEN), *s = malloc(S_LEN), *g = aligned_alloc(4096, 4096);
	uint8_t guard[4096];
	fill(guard, sizeof(guard), 77);
	uint32_t last_r = 0, last_s = 0;
	while (!atomic_load(&rc->stop)) {
		/* One op, three ranges: two regions and an untouched page. */
		struct chunk_read_range rr[3] = {
			{ .id = { 4, 0 }, .off = R_OFF, .len = R_LEN, .dst = r },
			{ .id = { 4, 0 }, .off = S_OFF, .len = S_LEN, .dst = s },
			{ .id = { 4, 0 }, .off = 0, .len = 4096, .dst = g },
		};
		assert_int_equal(chunk_engine_read(rc->e, rr, 3), 0);
		assert_int_equal(rr[0].result, R_LEN);
		assert_int_equal(rr[1].result, S_LEN);
		assert_int_equal(rr[2].result, 4096);
		uint32_t vr = uniform(r, R_LEN), vs = uniform(s, S_LEN);
		if (vr == UINT32_MAX || vs == UINT32_MAX || vr < last_r || vs < last_s ||
		    memcmp(g, guard, 4096))
			atomic_fetch_add(&rc->torn, 1);
		last_r = vr;
		last_s = vs;
		atomic_fetch_add(&rc->reads, 1);
	}
	free(r);
	free(s);
	free(g);
	return NULL;
}

static void test_readers_never_torn(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("journal_race");
	struct race rc = { .e = open_engine(dir, 0) };
	uint8_t *img = aligned_alloc(4096, 256 * KB);
	fill(img, 256 * KB, 77); /* page 0 = the readers' guard */
	stamp(img + R_OFF, R_LEN, 0);
	stamp(img + S_OFF, S_LEN, 0);
	struct chunk_info i0, i1;
	assert_int_equal(chunk_engine_write(rc.e, (struct chunk_id){ 4, 0 }, 0, 256 * KB, img, 0, 1, &i0), 0);
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_reader, &rc), 0);
	uint8_t *wr = aligned_alloc(4096, R_LEN), *ws = malloc(S_LEN);
	uint64_t t0 = clock_mono_ms();
	uint32_t v = 0;
	while (clock_mono_ms() - t0 < 2000 || atomic_load(&rc.reads) < 200) {
		v++;
		stamp(wr, R_LEN, v);
		stamp(ws, S_LEN, v);
		assert_int_equal(chunk_engine_write(rc.e, (struct chunk_id){ 4, 0 }, R_OFF, R_LEN, wr, 0, 1,
						    &i1), 0);
		assert_int_equal(chunk_engine_write(rc.e, (struct chunk_id){ 4, 0 }, S_OFF, S_LEN, ws, 0, 1,
						    &i1), 0);
		assert_true(chunk_pos_eq(i0.pos, i1.pos)); /* journaled, in place */
		if (clock_mono_ms() - t0 > 20000)
			break;
	}
	atomic_store(&rc.stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	print_message("overwrites %u, reads %u, torn %u\n", v, atomic_load(&rc.reads),
		      atomic_load(&rc.torn));
	assert_int_equal(atomic_load(&rc.torn), 0);
	assert_true(v >= 50);
	struct chunk_engine_stat st;
	chunk_engine_get_stat(rc.e, &st);
	assert_int_equal(st.corrupt_reads, 0);
	assert_clean(rc.e, 1);
	chunk_engine_close(rc.e);
	free(img);
	free(wr);
	free(ws);
	free(dir);
}

/* ---- a journal committed but never applied ---------------------------------- */

static void test_replay_at_open(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("journal_replay");
	struct chunk_engine *e = open_engine(dir, 1);
	uint32_t len = 50000;
	uint8_t *model = malloc(len), *page = aligned_alloc(4096, 8192);
	fill(model, len, 5);
	struct chunk_id id = { 6, 2 };
	assert_int_equal(chunk_engine_write(e, id, 0, len, model, 0, 1, NULL), 0);
	chunk_engine_close(e);
	/* What a crash right after the commit leaves: metadata that describes
	 * pages 2-3 as new and carries them, a block still holding the old. */
	char meta[512];
	snprintf(meta, sizeof(meta), "%s/meta", dir);
	struct chunk_store *s;
	assert_int_equal(chunk_store_open(meta, 256u * MB, 1, &s), 0);
	struct chunk_batch *b;
	struct chunk_meta m;
	assert_int_equal(chunk_store_batch_begin(s, &b), 0);
	assert_int_equal(chunk_store_batch_get(b, id, &m), 0);
	assert_int_equal(m.jrnl_len, 0);
	fill(page, 8192, 99);
	memcpy(model + 8192, page, 8192);
	m.page_crc[2] = crc32c(0, page, 4096);
	m.page_crc[3] = crc32c(0, page + 4096, 4096);
	m.crc = crc32c(0, model, len);
	m.commit_ver++;
	m.pending_ver = m.commit_ver;
	m.jrnl_off = 8192;
	m.jrnl_len = 8192;
	m.jrnl = page;
	assert_int_equal(chunk_store_batch_put(b, id, &m), 0);
	m.jrnl = NULL;
	chunk_meta_fini(&m);
	assert_int_equal(chunk_store_batch_commit(b), 0);
	chunk_store_close(s);
	e = open_engine(dir, 1);
	uint8_t *out = malloc(len);
	struct chunk_read_range rr = { .id = id, .off = 0, .len = len, .dst = out };
	assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
	assert_int_equal(rr.result, (int)len);
	assert_memory_equal(out, model, len);
	assert_int_equal(rr.info.crc, crc32c(0, model, len));
	assert_clean(e, 1);
	chunk_engine_close(e);
	/* ... and the journal left the metadata once it was in place. */
	assert_int_equal(chunk_store_open(meta, 256u * MB, 1, &s), 0);
	assert_int_equal(chunk_store_get(s, id, &m), 0);
	assert_int_equal(m.jrnl_len, 0);
	assert_int_equal(m.crc, crc32c(0, model, len));
	chunk_meta_fini(&m);
	chunk_store_close(s);
	free(model);
	free(page);
	free(out);
	free(dir);
}

/* ---- lazy retirement ------------------------------------------------------ */

static struct chunk_engine *open_engine_retire(const char *dir, unsigned retire_ms)
{
	struct chunk_engine_cfg cfg;
	chunk_engine_cfg_default(&cfg);
	cfg.dir = dir;
	cfg.compact_interval_ms = 0;
	cfg.meta_map_bytes = 256u * MB;
	cfg.buf_cache_bytes = 16u * MB;
	cfg.retire_ms = retire_ms;
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	return e;
}

static uint64_t jrnl_len_of(struct chunk_store *s, struct chunk_id id)
{
	struct chunk_meta m;
	assert_int_equal(chunk_store_get(s, id, &m), 0);
	uint64_t n = m.jrnl_len;
	chunk_meta_fini(&m);
	return n;
}

/* Small overwrites of distinct chunks commit without syncing any data file
 * (their journals wait to retire together); an overwrite of a chunk whose
 * journal has not retired yet syncs that chunk's block file in its own
 * batch before the new metadata drops the old journal (else a power loss
 * could lose the old pages: in place but not durable, journal gone);
 * journals retire on their own once due, and the data reads back as the
 * model throughout and after a reopen. */
static void test_lazy_retire(void **state)
{
	(void)state;
	enum { N = 6, LEN = 256 * KB };
	char *dir = testenv_tmpdir("journal_lazy");
	struct chunk_engine *e = open_engine_retire(dir, 60000);
	uint8_t *model[N], *page = aligned_alloc(4096, 8192), *out = malloc(LEN);
	for (int i = 0; i < N; i++) {
		model[i] = malloc(LEN);
		fill(model[i], LEN, 100 + (uint32_t)i);
		struct chunk_id id = { 9, (uint32_t)i };
		assert_int_equal(chunk_engine_write(e, id, 0, LEN, model[i], 0, 1, NULL), 0);
	}
	struct chunk_engine_stat s0, s1, s2;
	chunk_engine_get_stat(e, &s0);
	for (int i = 0; i < N; i++) {
		fill(page, 4096, 200 + (uint32_t)i);
		memcpy(model[i] + 8192, page, 4096);
		struct chunk_id id = { 9, (uint32_t)i };
		assert_int_equal(chunk_engine_write(e, id, 8192, 4096, page, 0, 1, NULL), 0);
	}
	chunk_engine_get_stat(e, &s1);
	assert_int_equal(s1.data_syncs, s0.data_syncs); /* metadata syncs only */
	assert_int_equal(s1.journals_retired, s0.journals_retired);
	/* Chunk 0 again, other pages: its unretired journal's block is synced. */
	fill(page, 8192, 300);
	memcpy(model[0] + 65536, page, 8192);
	struct chunk_id id0 = { 9, 0 };
	assert_int_equal(chunk_engine_write(e, id0, 65536, 8192, page, 0, 1, NULL), 0);
	chunk_engine_get_stat(e, &s2);
	/* In a flush group (the default; CFS_CHUNK_SHARED_FLUSH=0: none) the
	 * block, written whole and synced before, needs only a device flush:
	 * the group's. */
	assert_true(s2.data_syncs + s2.group_led + s2.group_covered >
		    s1.data_syncs + s1.group_led + s1.group_covered);
	for (int i = 0; i < N; i++) {
		struct chunk_read_range rr = { .id = { 9, (uint32_t)i }, .off = 0, .len = LEN, .dst = out };
		assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
		assert_int_equal(rr.result, LEN);
		assert_memory_equal(out, model[i], LEN);
		assert_int_equal(rr.info.crc, crc32c(0, model[i], LEN));
	}
	chunk_engine_close(e); /* retires what is left */
	char meta[512];
	snprintf(meta, sizeof(meta), "%s/meta", dir);
	struct chunk_store *s;
	assert_int_equal(chunk_store_open(meta, 256u * MB, 1, &s), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(jrnl_len_of(s, (struct chunk_id){ 9, (uint32_t)i }), 0);
	chunk_store_close(s);
	/* A short retire delay: an idle engine retires on its own. */
	e = open_engine_retire(dir, 20);
	chunk_engine_get_stat(e, &s0);
	fill(page, 4096, 400);
	memcpy(model[1] + 4096, page, 4096);
	struct chunk_id id1 = { 9, 1 };
	assert_int_equal(chunk_engine_write(e, id1, 4096, 4096, page, 0, 1, NULL), 0);
	uint64_t t0 = clock_mono_ms();
	do {
		chunk_engine_get_stat(e, &s1);
		if (s1.journals_retired > s0.journals_retired)
			break;
		usleep(5000);
	} while (clock_mono_ms() - t0 < 10000);
	assert_true(s1.journals_retired > s0.journals_retired);
	assert_true(s1.data_syncs > s0.data_syncs);
	for (int i = 0; i < N; i++) {
		struct chunk_read_range rr = { .id = { 9, (uint32_t)i }, .off = 0, .len = LEN, .dst = out };
		assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
		assert_int_equal(rr.result, LEN);
		assert_memory_equal(out, model[i], LEN);
	}
	assert_clean(e, N);
	chunk_engine_close(e);
	for (int i = 0; i < N; i++)
		free(model[i]);
	free(page);
	free(out);
	free(dir);
}

/* Small appends (a pack file or a log written a few KiB at a time) are
 * journaled, consecutive ones in one journal (the union with the base's
 * unretired journal): a stream of them syncs a data file far less than
 * once per append, and the chunk reads back as the model, CRC included,
 * before and after a reopen (which replays what was not retired). */
static void test_append_journal(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("journal_append");
	struct chunk_engine *e = open_engine_retire(dir, 60000);
	enum { CAP = 200 * 1024 };
	uint8_t *model = malloc(CAP), *data = malloc(16384), *out = malloc(CAP);
	uint32_t len = 5000, rng = 77;
	fill(model, len, 1);
	struct chunk_id id = { 11, 0 };
	assert_int_equal(chunk_engine_write(e, id, 0, len, model, 0, 1, NULL), 0);
	struct chunk_engine_stat s0, s1;
	chunk_engine_get_stat(e, &s0);
	int n = 0;
	while (len < 60000) {
		rng = rng * 1103515245u + 12345u;
		/* 4 KiB-aligned appends mostly, some odd sizes and overlaps. */
		uint32_t back = (rng >> 8) % 4 == 0 ? (rng >> 12) % 64 : 0;
		uint32_t alen = (rng >> 16) % 3 == 0 ? 1 + (rng >> 4) % 9000 : 4096;
		uint32_t off = len - (back < len ? back : 0);
		fill(data, alen, 1000 + (uint32_t)n);
		memcpy(model + off, data, alen);
		if (off + alen > len)
			len = off + alen;
		assert_int_equal(chunk_engine_write(e, id, off, alen, data, 0, 1, NULL), 0);
		n++;
		struct chunk_read_range rr = { .id = id, .off = 0, .len = CAP, .dst = out };
		assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
		assert_int_equal(rr.result, (int)len);
		assert_memory_equal(out, model, len);
		assert_int_equal(rr.info.crc, crc32c(0, model, len));
	}
	chunk_engine_get_stat(e, &s1);
	/* One sync per ~16 KiB-64 KiB of journal (and per move to a larger
	 * block), not one per append. */
	assert_true(n >= 10);
	assert_true(s1.data_syncs - s0.data_syncs <= (uint64_t)n / 2);
	chunk_engine_close(e); /* retires the journal (kill -9 with it
				* unretired: test_chunk_crash test_kill9_small) */
	e = open_engine_retire(dir, 60000);
	struct chunk_read_range rr = { .id = id, .off = 0, .len = CAP, .dst = out };
	assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
	assert_int_equal(rr.result, (int)len);
	assert_memory_equal(out, model, len);
	assert_clean(e, 1);
	chunk_engine_close(e);
	free(model);
	free(data);
	free(out);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model_overwrites),
		cmocka_unit_test(test_readers_never_torn),
		cmocka_unit_test(test_replay_at_open),
		cmocka_unit_test(test_lazy_retire),
		cmocka_unit_test(test_append_journal),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
