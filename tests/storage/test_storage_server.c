/* test_storage_server.c - `chainfs storage` standalone (issue 4), as a
 * real process on 127.0.0.1, driven by the storage client over real RPC.
 *   rw_model     random writes (new chunks, appends, partial overwrites,
 *                replaces) mirrored in memory; every chunk read back byte
 *                for byte, singly and in one batch (adjacent buffers, so
 *                straight into the caller's memory, and scattered ones)
 *   remove_query query last chunk / length, remove one and a range, stat
 *   corrupt      flip a byte of a block on disk: the read fails with
 *                -CFS_ECORRUPT at the client, the server counts it
 *   concurrent_batches  16 threads of single small reads (aligned and
 *                not, past the end, a missing chunk, a corrupt page) on
 *                two targets: reads share RPCs (read combining) and each
 *                gets exactly its own bytes or error
 *   batches_go_at_once  4 threads each reading 8 ranges per call (the
 *                batched phase of bench storage): every call is its own
 *                RPC, none waits behind the RPCs in flight to be sent
 *                combined with another (which held its reads off the
 *                disk), and each gets its own bytes
 *   overwrite_race  4 KiB overwrites (journaled in the engine, applied in
 *                place after their commit) while threads read the same
 *                pages on the server's loop-thread ring: every page read
 *                is one whole version, never an error or a torn mix
 *   bad_input    garbage bytes on a raw socket, malformed and inconsistent
 *                storage requests (clear errors), a bad data CRC: the
 *                server stays up and keeps serving
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "storage_client/storage_client.h"
#include "common/crc32c.h"
#include "common/status.h"
#include "net/rpc.h"
#include "stor_cluster.h"
#include "test_rand.h"
#include "testenv.h"

#define NCHUNK 12
#define MAXLEN (3u << 20)

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void)
{
	return test_rand_next(&rnd_state);
}

static void fill(uint8_t *p, size_t n)
{
	test_rand_fill(&rnd_state, p, n);
}

struct model {
	uint8_t *data[NCHUNK];
	uint32_t len[NCHUNK];
};

static void test_rw_model(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "stor-rw", 1, 2, 4000);
	stor_cluster_start_storage(&sc, 0);
	struct storage_client *c = stor_cluster_client();
	struct model m = { 0 };
	uint8_t *buf = malloc(MAXLEN);
	for (int i = 0; i < NCHUNK; i++)
		m.data[i] = calloc(1, MAXLEN);
	for (int step = 0; step < 120; step++) {
		int i = (int)(rnd() % NCHUNK);
		struct storage_loc loc = { .addr = sc.node[0].addr, .target = 1 + (uint32_t)(i % 2) };
		uint32_t off, len, flags = 0;
		switch (rnd() % 4) {
		case 0: /* append */
			off = m.len[i];
			len = 1 + (uint32_t)(rnd() % 200000);
			break;
		case 1: /* replace */
			off = 0;
			len = 1 + (uint32_t)(rnd() % (1u << 20));
			flags = STO_WF_REPLACE;
			break;
		default: /* overwrite inside or across the end */
			off = m.len[i] ? (uint32_t)(rnd() % m.len[i]) : 0;
			len = 1 + (uint32_t)(rnd() % 300000);
			break;
		}
		if (off + len > MAXLEN)
			len = MAXLEN - off;
		if (!len)
			continue;
		fill(buf, len);
		struct sto_write_resp wr;
		int rc = storage_client_write(c, &loc, 7, (uint32_t)i, off, len, buf, flags, &wr);
		assert_int_equal(rc, 0);
		if (flags & STO_WF_REPLACE) {
			memset(m.data[i], 0, MAXLEN);
			m.len[i] = 0;
		}
		memcpy(m.data[i] + off, buf, len);
		if (off + len > m.len[i])
			m.len[i] = off + len;
		assert_int_equal(wr.len, m.len[i]);
		assert_int_equal(wr.crc, crc32c(0, m.data[i], m.len[i]));
	}
	/* One at a time, with an offset and a length past the end. */
	for (int i = 0; i < NCHUNK; i++) {
		struct storage_read r = { .loc = { .addr = sc.node[0].addr, .target = 1 + (uint32_t)(i % 2) },
					  .ino = 7, .idx = (uint32_t)i, .off = 1, .len = MAXLEN - 1,
					  .dst = buf };
		assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
		if (!m.len[i]) {
			assert_int_equal(r.result, -ENOENT);
			continue;
		}
		assert_int_equal(r.result, (int)m.len[i] - 1);
		assert_memory_equal(buf, m.data[i] + 1, m.len[i] - 1);
	}
	/* One batch of every chunk over both targets, adjacent buffers sized
	 * exactly: data lands in place. Then scattered buffers. */
	uint64_t total = 0;
	for (int i = 0; i < NCHUNK; i++)
		total += m.len[i];
	uint8_t *big = malloc(total + 1);
	struct storage_read rs[NCHUNK];
	uint64_t pos = 0;
	for (int i = 0; i < NCHUNK; i++) {
		rs[i] = (struct storage_read){ .loc = { .addr = sc.node[0].addr, .target = 1 + (uint32_t)(i % 2) },
					       .ino = 7, .idx = (uint32_t)i, .len = m.len[i] ? m.len[i] : 1,
					       .dst = big + pos };
		pos += m.len[i];
	}
	assert_int_equal(storage_client_read(c, rs, NCHUNK, 0), 0);
	for (int i = 0; i < NCHUNK; i++) {
		if (!m.len[i])
			continue;
		assert_int_equal(rs[i].result, (int)m.len[i]);
		assert_memory_equal(rs[i].dst, m.data[i], m.len[i]);
	}
	uint8_t *scat[NCHUNK];
	for (int i = 0; i < NCHUNK; i++) {
		scat[i] = malloc(MAXLEN);
		rs[i].dst = scat[i];
		rs[i].len = MAXLEN; /* short reads at the chunk ends */
		rs[i].off = 0;
	}
	assert_int_equal(storage_client_read(c, rs, NCHUNK, 0), 0);
	for (int i = 0; i < NCHUNK; i++) {
		if (m.len[i]) {
			assert_int_equal(rs[i].result, (int)m.len[i]);
			assert_memory_equal(scat[i], m.data[i], m.len[i]);
		}
		free(scat[i]);
	}
	free(big);
	for (int i = 0; i < NCHUNK; i++)
		free(m.data[i]);
	free(buf);
	storage_client_free(c);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

static void test_remove_query(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "stor-rq", 1, 1, 4000);
	stor_cluster_start_storage(&sc, 0);
	struct storage_client *c = stor_cluster_client();
	struct storage_loc loc = { .addr = sc.node[0].addr, .target = 1 };
	uint8_t data[10000];
	fill(data, sizeof(data));
	for (uint32_t i = 0; i < 6; i++)
		assert_int_equal(storage_client_write(c, &loc, 42, i, 0, 1000 + i, data, 0, NULL), 0);
	struct sto_query_resp q;
	assert_int_equal(storage_client_query(c, &loc, 42, 0, 1, &q), 0);
	assert_int_equal(q.idx, 5);
	assert_int_equal(q.len, 1005);
	assert_int_equal(q.crc, crc32c(0, data, 1005));
	assert_int_equal(storage_client_query(c, &loc, 42, 2, 0, &q), 0);
	assert_int_equal(q.len, 1002);
	assert_int_equal(q.commit_ver, 1);
	assert_int_equal(storage_client_query(c, &loc, 43, 0, 1, &q), -ENOENT);
	struct sto_stat_resp st;
	assert_int_equal(storage_client_stat(c, loc.addr, 1, &st), 0);
	assert_int_equal(st.chunks, 6);
	assert_true(st.used > 0);
	assert_true(st.capacity > st.used);
	uint32_t removed = 0;
	assert_int_equal(storage_client_remove(c, &loc, 42, 5, 6, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(storage_client_query(c, &loc, 42, 0, 1, &q), 0);
	assert_int_equal(q.idx, 4);
	assert_int_equal(storage_client_remove(c, &loc, 42, 1, 100, &removed), 0);
	assert_int_equal(removed, 4);
	uint8_t out[2000];
	struct storage_read r = { .loc = loc, .ino = 42, .idx = 3, .len = 100, .dst = out };
	assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
	assert_int_equal(r.result, -ENOENT);
	r.idx = 0;
	assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
	assert_int_equal(r.result, 100);
	assert_memory_equal(out, data, 100);
	assert_int_equal(storage_client_stat(c, loc.addr, 1, &st), 0);
	assert_int_equal(st.chunks, 1);
	assert_int_equal(storage_client_stat(c, loc.addr, 9, &st), -ENODEV);
	/* No bytes of an existing chunk (a range at or past its end) come
	 * with its version: 0 is what callers take for "absent" (a
	 * converter's chunk 0, cmd_mount.c sto_chunk_ver) */
	assert_int_equal(storage_client_write(c, &loc, 42, 0, 0, 10, data, 0, NULL), 0);
	assert_int_equal(storage_client_query(c, &loc, 42, 0, 0, &q), 0);
	assert_int_equal(q.len, 1000);
	assert_true(q.commit_ver > 1);
	for (uint32_t off = 1000; off <= 5000; off += 4000) {
		r = (struct storage_read){
		    .loc = loc, .ino = 42, .idx = 0, .off = off, .len = 100, .dst = out};
		assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
		assert_int_equal(r.result, 0);
		assert_int_equal(r.commit_ver, q.commit_ver);
	}
	/* a cut to 0 removes the chunk (no chunk of 0 bytes remains) */
	assert_int_equal(storage_client_truncate(c, &loc, 42, 0, 0), 0);
	assert_int_equal(storage_client_query(c, &loc, 42, 0, 0, &q), -ENOENT);
	r.off = 0;
	assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
	assert_int_equal(r.result, -ENOENT);
	assert_int_equal(r.commit_ver, 0);
	storage_client_free(c);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

/* Flips one byte at OFF in every data file under DIR/data. */
static int flip_data_files(const char *dir, long off)
{
	int n = 0;
	char path[1024];
	for (int cls = 0; cls < 11; cls++) {
		snprintf(path, sizeof(path), "%s/data/c%02d", dir, cls);
		DIR *d = opendir(path);
		if (!d)
			continue;
		for (struct dirent *e; (e = readdir(d));) {
			if (e->d_name[0] != 'f')
				continue;
			char fp[1300];
			snprintf(fp, sizeof(fp), "%s/%s", path, e->d_name);
			int fd = open(fp, O_RDWR);
			if (fd < 0)
				continue;
			uint8_t b;
			if (pread(fd, &b, 1, off) == 1) {
				b ^= 0xff;
				if (pwrite(fd, &b, 1, off) == 1)
					n++;
			}
			fsync(fd);
			close(fd);
		}
		closedir(d);
	}
	return n;
}

static void test_corrupt(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "stor-crc", 1, 1, 4000);
	stor_cluster_start_storage(&sc, 0);
	struct storage_client *c = stor_cluster_client();
	struct storage_loc loc = { .addr = sc.node[0].addr, .target = 1 };
	uint8_t data[20000], out[20000];
	fill(data, sizeof(data));
	assert_int_equal(storage_client_write(c, &loc, 5, 0, 0, sizeof(data), data, 0, NULL), 0);
	/* The only chunk is block 0 of its class: just past the file header. */
	assert_true(flip_data_files(sc.node[0].dirs[0], 4096 + 5000) >= 1);
	struct storage_read r = { .loc = loc, .ino = 5, .idx = 0, .len = sizeof(out), .dst = out };
	assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
	assert_int_equal(r.result, -CFS_ECORRUPT);
	/* A range of pages that are intact still reads. */
	r = (struct storage_read){ .loc = loc, .ino = 5, .idx = 0, .off = 12288, .len = 4096, .dst = out };
	assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
	assert_int_equal(r.result, 4096);
	assert_memory_equal(out, data + 12288, 4096);
	struct sto_stat_resp st;
	assert_int_equal(storage_client_stat(c, loc.addr, 1, &st), 0);
	assert_true(st.corrupt_reads >= 1);
	/* A full rewrite heals the chunk. */
	assert_int_equal(storage_client_write(c, &loc, 5, 0, 0, sizeof(data), data, STO_WF_REPLACE, NULL), 0);
	r = (struct storage_read){ .loc = loc, .ino = 5, .idx = 0, .len = sizeof(out), .dst = out };
	assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
	assert_int_equal(r.result, (int)sizeof(data));
	storage_client_free(c);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

/* ---- concurrent reads: combined into shared RPCs ---- */

#define CB_THREADS 16
#define CB_READS 300
#define CB_GOOD 6
#define CB_GOOD_LEN (200u << 10)
#define CB_BAD_LEN 20000u

struct cb_env {
	struct storage_loc loc1, loc2;
	struct storage_client *c;
	uint8_t *good[CB_GOOD];
	uint8_t *bad;
	_Atomic int failures;
};

struct cb_thread {
	struct cb_env *e;
	uint64_t seed;
};

static void *cb_reader(void *arg)
{
	struct cb_thread *t = arg;
	struct cb_env *e = t->e;
	uint8_t *out = malloc(16384);
	for (int i = 0; i < CB_READS; i++) {
		uint64_t x = test_rand_next(&t->seed);
		int kind = (int)(x % 20);
		struct storage_read r = { .dst = out };
		const uint8_t *model = NULL;
		uint32_t clen = 0;
		int want_corrupt = 0;
		if (kind < 17) { /* a good chunk: aligned 4 KiB or any range */
			uint32_t k = (uint32_t)(test_rand_next(&t->seed) % CB_GOOD);
			r.loc = e->loc1;
			r.ino = 7;
			r.idx = k;
			clen = CB_GOOD_LEN;
			model = e->good[k];
			if (kind < 9) {
				r.off = (uint32_t)(test_rand_next(&t->seed) % (CB_GOOD_LEN / 4096 + 1)) * 4096;
				r.len = 4096;
			} else {
				r.off = (uint32_t)(test_rand_next(&t->seed) % (CB_GOOD_LEN + 100));
				r.len = 1 + (uint32_t)(test_rand_next(&t->seed) % 16384);
			}
		} else if (kind < 19) { /* the corrupt chunk: page 1 is bad */
			r.loc = e->loc2;
			r.ino = 9;
			r.idx = 0;
			clen = CB_BAD_LEN;
			model = e->bad;
			uint32_t page = (uint32_t)(test_rand_next(&t->seed) % 5);
			r.off = page * 4096;
			r.len = 4096;
			want_corrupt = page == 1;
		} else { /* no such chunk */
			r.loc = e->loc1;
			r.ino = 10;
			r.idx = (uint32_t)(test_rand_next(&t->seed) % 4);
			r.len = 4096;
		}
		int rc = storage_client_read(e->c, &r, 1, 0);
		int ok;
		if (!model)
			ok = rc == 0 && r.result == -ENOENT;
		else if (want_corrupt)
			ok = rc == 0 && r.result == -CFS_ECORRUPT;
		else {
			uint32_t n = r.off >= clen ? 0 : (clen - r.off < r.len ? clen - r.off : r.len);
			ok = rc == 0 && r.result == (int)n && !memcmp(out, model + r.off, n);
		}
		if (!ok) {
			print_message("read ino=%llu idx=%u off=%u len=%u: rc=%d result=%d\n",
				      (unsigned long long)r.ino, r.idx, r.off, r.len, rc, r.result);
			atomic_fetch_add(&e->failures, 1);
		}
	}
	free(out);
	return NULL;
}

/* Many threads reading single small ranges at once from one server (two
 * targets): their reads share RPCs (read combining in the client, one
 * request and one disk submission at the server), and each still gets
 * exactly its own bytes, its own -ENOENT, and its own -CFS_ECORRUPT when
 * its page of the corrupt chunk is bad while its batch-mates succeed. */
static void test_concurrent_batches(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "stor-batch", 1, 2, 4000);
	stor_cluster_start_storage(&sc, 0);
	struct cb_env e = { .loc1 = { .addr = sc.node[0].addr, .target = 1 },
			    .loc2 = { .addr = sc.node[0].addr, .target = 2 } };
	e.c = stor_cluster_client();
	for (int k = 0; k < CB_GOOD; k++) {
		e.good[k] = malloc(CB_GOOD_LEN);
		fill(e.good[k], CB_GOOD_LEN);
		assert_int_equal(storage_client_write(e.c, &e.loc1, 7, (uint32_t)k, 0, CB_GOOD_LEN,
						      e.good[k], 0, NULL), 0);
	}
	e.bad = malloc(CB_BAD_LEN);
	fill(e.bad, CB_BAD_LEN);
	assert_int_equal(storage_client_write(e.c, &e.loc2, 9, 0, 0, CB_BAD_LEN, e.bad, 0, NULL), 0);
	/* Target 2 holds only that chunk: block 0 of its class, page 1. */
	assert_true(flip_data_files(sc.node[0].dirs[1], 4096 + 5000) >= 1);
	struct storage_client_stats before, after;
	storage_client_get_stats(e.c, &before);
	pthread_t th[CB_THREADS];
	struct cb_thread ta[CB_THREADS];
	for (int i = 0; i < CB_THREADS; i++) {
		ta[i] = (struct cb_thread){ .e = &e, .seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1) };
		assert_int_equal(pthread_create(&th[i], NULL, cb_reader, &ta[i]), 0);
	}
	for (int i = 0; i < CB_THREADS; i++)
		pthread_join(th[i], NULL);
	storage_client_get_stats(e.c, &after);
	assert_int_equal(atomic_load(&e.failures), 0);
	uint64_t rpcs = after.read_rpcs - before.read_rpcs;
	uint64_t groups = after.read_groups - before.read_groups;
	print_message("%llu reads in %llu read RPCs\n", (unsigned long long)groups,
		      (unsigned long long)rpcs);
	assert_int_equal(groups, CB_THREADS * CB_READS);
	assert_true(rpcs < groups); /* some were combined */
	for (int k = 0; k < CB_GOOD; k++)
		free(e.good[k]);
	free(e.bad);
	storage_client_free(e.c);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

/* ---- overwrite_race ---- */

#define OR_PAGES 16
#define OR_WRITES 1500
#define OR_READERS 3

struct or_env {
	struct storage_client *c;
	struct storage_loc loc;
	atomic_int stop, failures;
	atomic_long reads;
};

/* Page P at generation G: G in the first 8 bytes, the rest a function of
 * both, so a page made of two versions cannot pass the check. */
static void or_page(uint8_t *b, uint32_t p, uint64_t g)
{
	uint64_t x = (g + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)p << 32);
	memcpy(b, &g, 8);
	for (size_t i = 8; i < 4096; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
}

static int or_check(const uint8_t *b, uint32_t p)
{
	uint64_t g;
	uint8_t want[4096];
	memcpy(&g, b, 8);
	or_page(want, p, g);
	return !memcmp(b, want, 4096);
}

static void *or_reader(void *arg)
{
	struct or_env *e = arg;
	uint8_t *out = malloc(2 * 4096);
	uint64_t seed = (uint64_t)(uintptr_t)out | 1;
	while (!atomic_load(&e->stop)) {
		uint32_t p = (uint32_t)(test_rand_next(&seed) % (OR_PAGES - 1));
		uint32_t np = 1 + (uint32_t)(test_rand_next(&seed) % 2);
		struct storage_read r = { .loc = e->loc, .ino = 11, .idx = 0, .off = p * 4096,
					  .len = np * 4096, .dst = out };
		int rc = storage_client_read(e->c, &r, 1, 0);
		int ok = rc == 0 && r.result == (int)(np * 4096);
		for (uint32_t k = 0; ok && k < np; k++)
			ok = or_check(out + k * 4096, p + k);
		if (!ok) {
			print_message("read page %u x%u: rc=%d result=%d\n", p, np, rc, r.result);
			atomic_fetch_add(&e->failures, 1);
		}
		atomic_fetch_add(&e->reads, 1);
	}
	free(out);
	return NULL;
}

static void test_overwrite_race(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "stor-owrace", 1, 1, 4000);
	stor_cluster_start_storage(&sc, 0);
	struct or_env e = { .loc = { .addr = sc.node[0].addr, .target = 1 } };
	e.c = stor_cluster_client();
	uint8_t *img = malloc(OR_PAGES * 4096);
	for (uint32_t p = 0; p < OR_PAGES; p++)
		or_page(img + p * 4096, p, 0);
	assert_int_equal(storage_client_write(e.c, &e.loc, 11, 0, 0, OR_PAGES * 4096, img, 0, NULL),
			 0);
	pthread_t th[OR_READERS];
	for (int i = 0; i < OR_READERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, or_reader, &e), 0);
	uint64_t seed = 12345;
	uint8_t page[4096];
	for (uint64_t g = 1; g <= OR_WRITES; g++) {
		uint32_t p = (uint32_t)(test_rand_next(&seed) % OR_PAGES);
		or_page(page, p, g);
		assert_int_equal(storage_client_write(e.c, &e.loc, 11, 0, p * 4096, 4096, page, 0,
						      NULL), 0);
	}
	atomic_store(&e.stop, 1);
	for (int i = 0; i < OR_READERS; i++)
		pthread_join(th[i], NULL);
	print_message("%ld reads during %d overwrites\n", atomic_load(&e.reads), OR_WRITES);
	assert_int_equal(atomic_load(&e.failures), 0);
	assert_true(atomic_load(&e.reads) > 0);
	free(img);
	storage_client_free(e.c);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

static int raw_call(struct rpc_client *rc, const char *addr, uint16_t type, const void *pl,
		    uint32_t plen, const void *bulk, uint64_t blen)
{
	struct rpc_peer *p;
	char err[128];
	assert_int_equal(rpc_client_peer(rc, addr, &p, err, sizeof(err)), 0);
	struct rpc_call call = { .type = type, .payload = pl, .payload_len = plen, .bulk = bulk,
				 .bulk_len = blen, .timeout_ms = 5000 };
	struct buf resp;
	buf_init(&resp);
	int r = rpc_call(p, &call, &resp, NULL);
	buf_fini(&resp);
	return r;
}

static void test_bad_input(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "stor-bad", 1, 1, 4000);
	stor_cluster_start_storage(&sc, 0);
	/* Garbage on a raw socket, several times. */
	for (int k = 0; k < 5; k++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(sc.node[0].port) };
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		uint8_t junk[4096];
		fill(junk, sizeof(junk));
		ssize_t w = write(fd, junk, sizeof(junk));
		(void)w;
		close(fd);
	}
	struct rpc_opts ro = { .cluster_id = SC_CLUSTER, .secret = (const uint8_t *)SC_SECRET,
			       .secret_len = strlen(SC_SECRET) };
	struct rpc_client *rc;
	assert_int_equal(rpc_client_new(&ro, &rc), 0);
	const char *addr = sc.node[0].addr;
	uint8_t junk[7] = { 1, 2, 3, 4, 5, 6, 7 };
	assert_int_equal(raw_call(rc, addr, STO_MSG_WRITE, junk, sizeof(junk), NULL, 0), -CFS_EPROTO);
	assert_int_equal(raw_call(rc, addr, STO_MSG_READ, junk, sizeof(junk), NULL, 0), -CFS_EPROTO);
	assert_int_equal(raw_call(rc, addr, STO_MSG_REMOVE, junk, 3, NULL, 0), -CFS_EPROTO);
	assert_int_equal(raw_call(rc, addr, STO_MSG_QUERY, junk, 2, NULL, 0), -CFS_EPROTO);
	assert_int_equal(raw_call(rc, addr, 399, junk, 2, NULL, 0), -CFS_EBADMSG_TYPE);
	/* Well-formed but wrong: bad CRC, length mismatch, off past 64 MiB,
	 * unknown target, a batch naming too many ranges. */
	uint8_t data[4096];
	fill(data, sizeof(data));
	struct sto_write_req w = { .target = 1, .ino = 1, .idx = 0, .off = 0, .len = sizeof(data),
				   .crc = crc32c(0, data, sizeof(data)) ^ 1 };
	struct buf b;
	buf_init(&b);
	sto_write_req_encode(&b, &w);
	assert_int_equal(raw_call(rc, addr, STO_MSG_WRITE, b.data, (uint32_t)b.len, data, sizeof(data)),
			 -CFS_ECHECKSUM);
	w.crc ^= 1;
	w.len = 100;
	buf_reset(&b);
	sto_write_req_encode(&b, &w);
	assert_int_equal(raw_call(rc, addr, STO_MSG_WRITE, b.data, (uint32_t)b.len, data, sizeof(data)),
			 -EINVAL);
	w.len = sizeof(data);
	w.off = (64u << 20) - 10;
	buf_reset(&b);
	sto_write_req_encode(&b, &w);
	assert_int_equal(raw_call(rc, addr, STO_MSG_WRITE, b.data, (uint32_t)b.len, data, sizeof(data)),
			 -EINVAL);
	w.off = 0;
	w.target = 77;
	buf_reset(&b);
	sto_write_req_encode(&b, &w);
	assert_int_equal(raw_call(rc, addr, STO_MSG_WRITE, b.data, (uint32_t)b.len, data, sizeof(data)),
			 -ENODEV);
	uint8_t many[8] = { 0, 0, 0, 0, 0xff, 0xff, 0, 0 }; /* flags 0, n = 65535 */
	assert_int_equal(raw_call(rc, addr, STO_MSG_READ, many, sizeof(many), NULL, 0), -CFS_EPROTO);
	buf_fini(&b);
	rpc_client_free(rc);
	/* Still up and serving. */
	assert_true(testenv_alive(sc.node[0].pid));
	struct storage_client *c = stor_cluster_client();
	struct storage_loc loc = { .addr = addr, .target = 1 };
	assert_int_equal(storage_client_write(c, &loc, 1, 1, 0, sizeof(data), data, 0, NULL), 0);
	uint8_t out[4096];
	struct storage_read r = { .loc = loc, .ino = 1, .idx = 1, .len = sizeof(out), .dst = out };
	assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
	assert_int_equal(r.result, (int)sizeof(out));
	assert_memory_equal(out, data, sizeof(out));
	storage_client_free(c);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

static int exited(void *arg) { return !testenv_alive(*(pid_t *)arg); }

/* Target ids follow the --targets order; a restart with the directories
 * swapped would serve each target's chunks under the other's id, so the
 * service refuses to start. */
static void test_target_order(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "stor-order", 1, 2, 4000);
	stor_cluster_start_storage(&sc, 0);
	stor_cluster_signal(&sc, 0, SIGTERM);
	char targets[1500];
	snprintf(targets, sizeof(targets), "%s,%s", sc.node[0].dirs[1], sc.node[0].dirs[0]);
	char *argv[] = { (char *)testenv_chainfs(), "storage", "--targets", targets, "--listen",
			 sc.node[0].addr, "--cluster-id", SC_CLUSTER, "--secret-file",
			 sc.secret_path, NULL };
	pid_t pid = testenv_spawn(argv, sc.node[0].log);
	assert_true(testenv_wait(exited, &pid, 10000));
	assert_false(testenv_port_open(sc.node[0].port));
	/* The right order still starts. */
	stor_cluster_start_storage(&sc, 0);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

/* ---- batches of ranges: each call its own RPC ---- */

#define BG_THREADS 4
#define BG_CALLS 120
#define BG_RANGES 8

struct bg_env {
	struct storage_loc loc;
	struct storage_client *c;
	uint8_t *good[CB_GOOD];
	_Atomic int failures;
};

struct bg_thread {
	struct bg_env *e;
	uint64_t seed;
};

static void *bg_reader(void *arg)
{
	struct bg_thread *t = arg;
	struct bg_env *e = t->e;
	uint8_t *out = malloc(BG_RANGES * 4096);
	for (int i = 0; i < BG_CALLS; i++) {
		struct storage_read r[BG_RANGES];
		for (int k = 0; k < BG_RANGES; k++) {
			uint64_t x = test_rand_next(&t->seed);
			r[k] = (struct storage_read){ .loc = e->loc, .ino = 7,
						      .idx = (uint32_t)(x % CB_GOOD),
						      .off = (uint32_t)((x >> 8) % (CB_GOOD_LEN / 4096)) * 4096,
						      .len = 4096, .dst = out + 4096 * k };
		}
		int rc = storage_client_read(e->c, r, BG_RANGES, 0);
		for (int k = 0; k < BG_RANGES; k++)
			if (rc || r[k].result != 4096 ||
			    memcmp(r[k].dst, e->good[r[k].idx] + r[k].off, 4096)) {
				print_message("batch read idx=%u off=%u: rc=%d result=%d\n", r[k].idx,
					      r[k].off, rc, r[k].result);
				atomic_fetch_add(&e->failures, 1);
			}
	}
	free(out);
	return NULL;
}

/* 4 threads x 8 ranges per call, as bench storage's batched phase: before,
 * two of the four calls waited while two RPCs were in flight and then went
 * as one request of 16 that waited for the slowest of 16 reads, so fewer
 * reads were at the disk than the callers had asked for (186 RPCs for 480
 * calls). Now every call of 8 ranges goes at once. */
static void test_batches_go_at_once(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "stor-bgo", 1, 1, 4000);
	stor_cluster_start_storage(&sc, 0);
	struct bg_env e = { .loc = { .addr = sc.node[0].addr, .target = 1 } };
	e.c = stor_cluster_client();
	for (int k = 0; k < CB_GOOD; k++) {
		e.good[k] = malloc(CB_GOOD_LEN);
		fill(e.good[k], CB_GOOD_LEN);
		assert_int_equal(storage_client_write(e.c, &e.loc, 7, (uint32_t)k, 0, CB_GOOD_LEN,
						      e.good[k], 0, NULL), 0);
	}
	struct storage_client_stats before, after;
	storage_client_get_stats(e.c, &before);
	pthread_t th[BG_THREADS];
	struct bg_thread ta[BG_THREADS];
	for (int i = 0; i < BG_THREADS; i++) {
		ta[i] = (struct bg_thread){ .e = &e, .seed = 0xD1B54A32D192ED03ull * (uint64_t)(i + 1) };
		assert_int_equal(pthread_create(&th[i], NULL, bg_reader, &ta[i]), 0);
	}
	for (int i = 0; i < BG_THREADS; i++)
		pthread_join(th[i], NULL);
	storage_client_get_stats(e.c, &after);
	assert_int_equal(atomic_load(&e.failures), 0);
	uint64_t rpcs = after.read_rpcs - before.read_rpcs;
	uint64_t groups = after.read_groups - before.read_groups;
	print_message("%llu batches in %llu read RPCs\n", (unsigned long long)groups,
		      (unsigned long long)rpcs);
	assert_int_equal(groups, BG_THREADS * BG_CALLS);
	assert_int_equal(rpcs, groups);
	for (int k = 0; k < CB_GOOD; k++)
		free(e.good[k]);
	storage_client_free(e.c);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rw_model),
		cmocka_unit_test(test_remove_query),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_concurrent_batches),
		cmocka_unit_test(test_batches_go_at_once),
		cmocka_unit_test(test_overwrite_race),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_target_order),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
