/* test_short_read.c - short-circuit reads (docs/rpc.md "Short-circuit
 * reads", storage_client/sc_direct.c, storage/stor_sc.c).
 *
 *   engine_hooks  the engine's side alone: a chunk mapped with
 *                 chunk_engine_sc_map gets the mutation hook before a
 *                 write, a compaction move and a remove change it, and no
 *                 mapping is made while a journal is pending
 *   race          a real `chainfs storage` (standalone) and a client with
 *                 CFS_SHORT_READ=1: READERS threads read single pages
 *                 (blocking and async), runs of pages up to a whole chunk
 *                 (into aligned memory: O_DIRECT straight there; and
 *                 unaligned: through a bounce buffer) and batches of such
 *                 runs over several chunks (the USRBIO/KVCache ring path:
 *                 all on the client's io_uring at once) while
 *                 writers rewrite whole chunks (copy-on-write), overwrite a
 *                 few pages (journaled), remove and rewrite chunks (freed
 *                 blocks get reused; the service's compactor moves
 *                 chunks): every page read is a page some write wrote
 *                 there, never older than the last acknowledged write of
 *                 it; most reads were short-circuit
 *   kill9         the service is SIGKILLed under short-circuit readers and
 *                 restarted: reads fail or are right, never wrong; then
 *                 short-circuit again
 *   kill9_fast    the same with a 3 s lease (CFS_TEST_SC_LEASE_MS) and the
 *                 restart at once: the new service opens the target, so
 *                 acknowledges a rewrite, only after the old lease ran
 *                 out, and no read of an old mapping returns the version
 *                 before that rewrite once it was acknowledged (no read
 *                 polls the service's pidfd since 2026-12-06)
 *   kill9_legacy  the same against a service acting as one before the
 *                 lease records (CFS_TEST_SC_LEGACY): its restart does
 *                 not wait, and the client, finding no STO_SC_RECORDED
 *                 in the table, polls the pidfd after each read: right
 *   corrupt       a page of a chunk's block is damaged on disk: the short-
 *                 circuit read sees the CRC mismatch and the RPC read that
 *                 follows reports -CFS_ECORRUPT, through the blocking call
 *                 and through the async one into a page-aligned buffer
 *                 (where the O_DIRECT read lands before the check); so does
 *                 a whole-chunk read and a batch's range holding the page,
 *                 while the batch's other range is read short-circuit and
 *                 right
 *   chain_corrupt a 3-replica chain on three services of this host: a page of
 *                 the copy at a replica other than the chain's first is
 *                 damaged on disk; reads of it (the blocking call, then
 *                 the async one into a page-aligned buffer, then a batch)
 *                 are repeated until the short-circuit replica choice
 *                 reaches that copy: every read returns the right bytes,
 *                 the damaged copy's own service logs "corrupt chunk"
 *                 (the RPC read went to that target) and repairs it, no
 *                 other service reports it, and a read pinned to that
 *                 replica returns the right bytes afterwards
 *   shapes        async reads of a chunk whose length ends inside a page:
 *                 aligned and unaligned buffers, whole pages, ranges inside
 *                 a page, across the chunk's end, past it, in batches of
 *                 many in flight: right bytes, length and CRC every time,
 *                 all short-circuit
 *   evict         a service with 4 map slots per table (CFS_TEST_SC_SLOTS)
 *                 and 16 chunks read round after round: every read needs
 *                 a slot some other chunk holds, so the service evicts a
 *                 mapping per map and the client, finding its mapping
 *                 stale, maps again; the reads stay short-circuit (before
 *                 eviction a full table refused the map and every read
 *                 after the 4th went over RPC) and right
 *   key_cap       a client keeping at most 8 chunk records a server
 *                 (CFS_TEST_SC_KEYS) reads 48 chunks three times over
 *                 (blocking, async, batches): never more than 8 kept, the
 *                 evicted ones mapped again, reads short-circuit and right
 *                 (before, a client kept one record a chunk ever read)
 *   cached        (only in the runs without CFS_SHORT_READ_CACHED=0,
 *                 test_short_read_cached, which also runs the others but
 *                 chain_corrupt: that mode keeps a chunk's async reads on
 *                 one replica)
 *                 async reads through the page cache: the first read of a
 *                 page misses and fills the cache, the next is answered
 *                 from it before the call returns; a rewrite is read
 *                 right; a page damaged on disk (out of the cache) and one
 *                 damaged in the cache and on disk are never answered
 *                 (-CFS_ECORRUPT), the cached one counted corrupt once,
 *                 after the O_DIRECT read confirmed it
 *   cached_cold   (the same runs) the adaptive probe (common/cache_probe.h,
 *                 CFS_SHORT_READ_PROBE_WINDOW=64): after windows of
 *                 misses 7 reads in 8 of a cached page go O_DIRECT without
 *                 a probe (right bytes), and a window of sampled hits
 *                 brings the probing back
 *   map_many      (a client with CFS_SC_MAP_MANY=1, off by default)
 *                 a batch over chunks already mapped, chunks never mapped
 *                 and absent chunks maps the unmapped ones with one
 *                 SC_MAP_MANY (no SC_MAP): right bytes, the absent ones
 *                 answered as absent, then every range short-circuit; a
 *                 request of more than STO_SC_MAP_MANY_MAX entries is
 *                 refused (-E2BIG, with the limit in its text); a client
 *                 with CFS_SC_MAP_MANY=4 maps them in requests of 4
 *   map_many_old  the same against a service that does not know
 *                 SC_MAP_MANY (CFS_TEST_SC_NO_MANY=1): the client's one
 *                 SC_MAP_MANY is refused, it maps one by one from then on
 *                 (none of the next batch tries SC_MAP_MANY), the reads
 *                 are right and short-circuit again
 * Only in test_short_read_reclaim (CFS_TEST_SC_OFF_MS set: a short
 * hold-off after a service is found dead, instead of 10 s):
 *   old_table     a read paused between its halves (the mid-read hook)
 *                 on the table of a service that is then killed and
 *                 restarted, and finishing after the client registered
 *                 with the new one: the read goes over RPC and is right,
 *                 the old table stays mapped while the read is inside it
 *                 and goes when it is done, and the client neither counts
 *                 the new service dead nor registers again (commit
 *                 5f59cf9; before it this sent the peer into its hold-off
 *                 and then to another registration)
 *   holdoff       a map refused by the client itself (the data file the
 *                 service named is another inode: replaced) puts the
 *                 service on hold; at the end of each hold-off the client
 *                 maps on its table again, without a new registration
 *                 (one on the same connection was only ever refused,
 *                 -ESTALE, and registered again and again); with the file
 *                 back, reads are short-circuit on the first table
 *   conn_dropped  the short-circuit connection ends under a live service
 *                 (a malformed map it answers -CFS_EPROTO and closes on):
 *                 reads of the chunk mapped before become short-circuit
 *                 again on a second table (before the 2026-12-05 review
 *                 they stayed on RPC: nothing mapped, nothing registered)
 *   restarts      the service is killed and restarted 70 times (more than
 *                 sc_direct.c's SD_MAX_TABS, 64): after every restart
 *                 reads are short-circuit again, one table stays mapped,
 *                 and the last restart's reads are still short-circuit
 *                 (before old tables were freed, the 64th registration
 *                 was the last)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/status.h"
#include "mgmtd/mgmtd_client.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"
#include "storage/storage_proto.h"
#include "storage/chunk_engine.h"
#include "case_workers.h"
#include "stor_cluster.h"
#include "storage_client/storage_client.h"
#include "testenv.h"

#define PG 4096u
#define NCH 6
#define NPG 64 /* 256 KiB chunks */
#define CHLEN (NPG * PG)
#define READERS 8
#define INO 77

static const char *addr;
static struct storage_client *cl;
static _Atomic int stop;
static _Atomic uint32_t issued[NCH][NPG]; /* newest version sent to a page */
static _Atomic uint32_t acked[NCH][NPG];  /* newest version acknowledged */
static _Atomic uint32_t rm_issued[NCH], rm_done[NCH];

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Page P of chunk I at version V: a tag, then bytes from a seed. */
static void page_fill(uint8_t *b, uint32_t i, uint32_t p, uint32_t v)
{
	uint64_t s = ((uint64_t)i << 40 | (uint64_t)p << 20 | v) * 0x9E3779B97F4A7C15ull | 1;
	uint32_t tag[4] = { 0x5c5c5c5c, i, p, v };
	memcpy(b, tag, sizeof(tag));
	for (uint32_t k = sizeof(tag); k < PG; k += 8) {
		uint64_t x = rnd(&s);
		memcpy(b + k, &x, 8);
	}
}

/* The version of a page that is exactly one some write made, else -1. */
static int64_t page_version(const uint8_t *b, uint32_t i, uint32_t p)
{
	uint32_t tag[4];
	memcpy(tag, b, sizeof(tag));
	if (tag[0] != 0x5c5c5c5c || tag[1] != i || tag[2] != p)
		return -1;
	uint8_t want[PG];
	page_fill(want, i, p, tag[3]);
	return memcmp(want, b, PG) ? -1 : (int64_t)tag[3];
}

static void setup(struct stor_cluster *sc, const char *tag)
{
	stor_cluster_init(sc, tag, 1, 1, 4000);
	stor_cluster_start_storage(sc, 0);
	addr = sc->node[0].addr;
	cl = stor_cluster_client();
	memset(issued, 0, sizeof(issued));
	memset(acked, 0, sizeof(acked));
	memset(rm_issued, 0, sizeof(rm_issued));
	memset(rm_done, 0, sizeof(rm_done));
}

static void teardown(struct stor_cluster *sc)
{
	storage_client_free(cl);
	cl = NULL;
	stor_cluster_signal(sc, 0, SIGTERM);
	stor_cluster_fini(sc);
}

/* Writes pages [P0, P0+N) of chunk I at version V; 0 or the error. */
static int write_pages(uint32_t i, uint32_t p0, uint32_t n, uint32_t v)
{
	uint8_t *b = malloc((size_t)n * PG);
	for (uint32_t k = 0; k < n; k++) {
		page_fill(b + (size_t)k * PG, i, p0 + k, v);
		atomic_store(&issued[i][p0 + k], v);
	}
	struct storage_loc loc = { .addr = addr, .target = 1 };
	int rc = storage_client_write(cl, &loc, INO, i, p0 * PG, n * PG, b, 0, NULL);
	free(b);
	if (!rc)
		for (uint32_t k = 0; k < n; k++)
			atomic_store(&acked[i][p0 + k], v);
	return rc;
}

/* Writes every page of chunk 0 at version 2, retrying for up to 20 s while
 * a restarted service comes back; asserts it was acknowledged. */
static void rewrite_chunk0_after_restart(void)
{
	uint64_t t0 = clock_mono_ms();
	int rc;
	do {
		rc = write_pages(0, 0, NPG, 2);
	} while (rc && clock_mono_ms() - t0 < 20000);
	assert_int_equal(rc, 0);
}

struct worker {
	pthread_t t;
	uint64_t seed;
	uint32_t chunk;          /* writers: the chunk they own */
	uint64_t ok, failed, missing;
	int wrong;
};

static void *writer_main(void *arg)
{
	struct worker *w = arg;
	uint32_t i = w->chunk, v = 1;
	struct storage_loc loc = { .addr = addr, .target = 1 };
	while (!atomic_load(&stop) && !w->wrong) {
		uint64_t op = rnd(&w->seed) % 10;
		v++;
		int rc;
		if (op < 4) {
			rc = write_pages(i, 0, NPG, v); /* copy-on-write */
		} else if (op < 9) {
			uint32_t n = 1 + (uint32_t)(rnd(&w->seed) % 4);
			uint32_t p0 = (uint32_t)(rnd(&w->seed) % (NPG - n));
			rc = write_pages(i, p0, n, v); /* journaled */
		} else {
			atomic_fetch_add(&rm_issued[i], 1);
			rc = storage_client_remove(cl, &loc, INO, i, i + 1, NULL);
			if (!rc)
				rc = write_pages(i, 0, NPG, v);
			atomic_fetch_add(&rm_done[i], 1);
		}
		if (rc)
			w->failed++;
		else
			w->ok++;
	}
	return NULL;
}

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
};

static void wake(void *arg)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Half the reads the blocking way, half through the async call (the
 * mount's 4 KiB reads: its own ring of O_DIRECT reads). */
static int read_one(struct storage_read *r, uint64_t *seed)
{
	if (rnd(seed) % 2)
		return storage_client_read(cl, r, 1, 0);
	struct waiter w = { .done = 0 };
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	int rc = storage_client_read_async(cl, r, 0, wake, &w);
	pthread_mutex_lock(&w.mu);
	while (!rc && !w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	return rc;
}

/* Checks the N pages of R (from page P0 of chunk I) against the model:
 * LO/HI the acknowledged/issued versions taken around the read, RM0/RM1
 * the removes done before / issued after. 1 right, 0 missing (a remove
 * was under way), -1 wrong (printed). */
static int check_run(const struct storage_read *r, uint32_t i, uint32_t p0, uint32_t n,
		     const uint32_t *lo, const uint32_t *hi, uint32_t rm0, uint32_t rm1)
{
	if (r->result == -ENOENT || r->result == 0) {
		for (uint32_t k = 0; k < n; k++)
			if (rm1 == rm0 && lo[k]) {
				print_message("chunk %u page %u missing, no remove under way\n", i,
					      p0 + k);
				return -1;
			}
		return 0;
	}
	if (r->result != (int)(n * PG) || r->crc != crc32c(0, r->dst, n * PG)) {
		print_message("wrong: chunk %u pages %u+%u result %d crc %s\n", i, p0, n, r->result,
			      r->result > 0 && r->crc != crc32c(0, r->dst, (size_t)r->result) ? "bad"
											: "ok");
		return -1;
	}
	for (uint32_t k = 0; k < n; k++) {
		int64_t v = page_version((const uint8_t *)r->dst + (size_t)k * PG, i, p0 + k);
		if (v < 0 || (uint32_t)v < lo[k] || (uint32_t)v > hi[k]) {
			print_message("wrong: chunk %u page %u (of %u+%u) version %lld, acked %u "
				      "issued %u\n", i, p0 + k, p0, n, (long long)v, lo[k], hi[k]);
			return -1;
		}
	}
	return 1;
}

#define BATCH_MAX 6

/* One reader step: a single page (blocking or async), a run of pages up
 * to the whole chunk, or a batch of runs; SHIFT 0 puts them in page-
 * aligned memory, 16 in memory O_DIRECT cannot take (bounce buffer). */
static void *reader_main(void *arg)
{
	struct worker *w = arg;
	uint8_t *mem = aligned_alloc(PG, (size_t)BATCH_MAX * CHLEN + PG);
	while (!atomic_load(&stop) && !w->wrong) {
		uint64_t kind = rnd(&w->seed) % 4;
		size_t shift = rnd(&w->seed) % 3 == 0 ? 16 : 0;
		size_t nr = kind == 3 ? 2 + rnd(&w->seed) % (BATCH_MAX - 1) : 1;
		struct storage_read r[BATCH_MAX];
		uint32_t ci[BATCH_MAX], p0[BATCH_MAX], np[BATCH_MAX], rm0[BATCH_MAX];
		uint32_t lo[BATCH_MAX][NPG], hi[BATCH_MAX][NPG];
		size_t at = shift;
		for (size_t j = 0; j < nr; j++) {
			ci[j] = (uint32_t)(rnd(&w->seed) % NCH);
			np[j] = kind < 2 ? 1 : 1 + (uint32_t)(rnd(&w->seed) % NPG);
			p0[j] = (uint32_t)(rnd(&w->seed) % (NPG - np[j] + 1));
			if (kind == 2 && rnd(&w->seed) % 2) { /* the whole chunk */
				np[j] = NPG;
				p0[j] = 0;
			}
			for (uint32_t k = 0; k < np[j]; k++)
				lo[j][k] = atomic_load(&acked[ci[j]][p0[j] + k]);
			rm0[j] = atomic_load(&rm_done[ci[j]]);
			r[j] = (struct storage_read){ .loc = { .addr = addr, .target = 1 }, .ino = INO,
						      .idx = ci[j], .off = p0[j] * PG,
						      .len = np[j] * PG, .dst = mem + at };
			memset(mem + at, 0xee, (size_t)np[j] * PG);
			at += (size_t)np[j] * PG;
		}
		int rc = kind < 2 ? read_one(&r[0], &w->seed) : storage_client_read(cl, r, nr, 0);
		if (rc) {
			w->failed++;
			continue;
		}
		for (size_t j = 0; j < nr && !w->wrong; j++) {
			for (uint32_t k = 0; k < np[j]; k++)
				hi[j][k] = atomic_load(&issued[ci[j]][p0[j] + k]);
			uint32_t rm1 = atomic_load(&rm_issued[ci[j]]);
			if (r[j].result < 0 && r[j].result != -ENOENT) {
				w->failed++;
				continue;
			}
			int c = check_run(&r[j], ci[j], p0[j], np[j], lo[j], hi[j], rm0[j], rm1);
			if (c < 0)
				w->wrong = 1;
			else if (c == 0)
				w->missing++;
			else
				w->ok++;
		}
	}
	free(mem);
	return NULL;
}

static void test_race(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup(&sc, "short-race");
	for (uint32_t i = 0; i < NCH; i++)
		assert_int_equal(write_pages(i, 0, NPG, 1), 0);
	struct worker wr[NCH], rd[READERS];
	memset(wr, 0, sizeof(wr));
	memset(rd, 0, sizeof(rd));
	atomic_store(&stop, 0);
	for (int i = 0; i < READERS; i++) {
		rd[i].seed = 0x1234567ull * (uint64_t)(i + 1);
		assert_int_equal(pthread_create(&rd[i].t, NULL, reader_main, &rd[i]), 0);
	}
	/* Readers alone first: every chunk gets mapped. */
	clock_sleep_ms(500);
	for (int i = 0; i < NCH; i++) {
		wr[i].seed = 0x9876543ull * (uint64_t)(i + 1);
		wr[i].chunk = (uint32_t)i;
		assert_int_equal(pthread_create(&wr[i].t, NULL, writer_main, &wr[i]), 0);
	}
	/* Alternate: writers on, then a pause for the mappings to come back,
	 * so stale mappings are both made and used. */
	clock_sleep_ms(6000);
	atomic_store(&stop, 1);
	uint64_t rok = 0, rfail = 0, miss = 0, wok = 0, wfail = 0;
	int wrong = 0;
	for (int i = 0; i < NCH; i++) {
		pthread_join(wr[i].t, NULL);
		wok += wr[i].ok;
		wfail += wr[i].failed;
	}
	for (int i = 0; i < READERS; i++) {
		pthread_join(rd[i].t, NULL);
		rok += rd[i].ok;
		rfail += rd[i].failed;
		miss += rd[i].missing;
		wrong |= rd[i].wrong;
	}
	struct storage_client_stats st;
	storage_client_get_stats(cl, &st);
	print_message("writes %llu ok %llu failed; reads %llu right, %llu failed, %llu missing; "
		      "short-circuit %llu, fallbacks %llu (misses %llu), maps %llu, stale %llu\n",
		      (unsigned long long)wok, (unsigned long long)wfail, (unsigned long long)rok,
		      (unsigned long long)rfail, (unsigned long long)miss,
		      (unsigned long long)st.sc_reads, (unsigned long long)st.sc_fallbacks,
		      (unsigned long long)st.sc_misses, (unsigned long long)st.sc_maps,
		      (unsigned long long)st.sc_stale);
	assert_int_equal(wrong, 0);
	assert_int_equal(wfail, 0);
	assert_true(wok > 50);
	assert_true(rok > 1000);
	/* The path was used, and mappings were revoked under the readers.
	 * Not a share of the reads: how many find their mapping between two
	 * writes depends on how fast writes commit against how fast mappings
	 * come back, i.e. on the host (12-15 % here in release; 4.7 % in an
	 * ASan CI run at load 20, which an earlier "> 5 %" failed on). */
	assert_true(st.sc_reads > 50);
	assert_true(st.sc_maps > NCH);
	/* Quiet again: every read is right and short-circuit. Journals of
	 * the last writes retire within retire_ms (100 ms) and the mappings
	 * come back on the next reads: on a loaded machine (ASan, two tests
	 * at once) that can take longer than one window, so up to ten
	 * windows of 800 ms; every read in all of them must be right. */
	struct storage_client_stats st0;
	int quiet_ok = 0;
	for (int round = 0; round < 10 && !quiet_ok; round++) {
		clock_sleep_ms(400);
		storage_client_get_stats(cl, &st0);
		atomic_store(&stop, 0);
		for (int i = 0; i < READERS; i++) {
			rd[i].ok = 0;
			assert_int_equal(pthread_create(&rd[i].t, NULL, reader_main, &rd[i]), 0);
		}
		clock_sleep_ms(800);
		atomic_store(&stop, 1);
		rok = 0;
		for (int i = 0; i < READERS; i++) {
			pthread_join(rd[i].t, NULL);
			rok += rd[i].ok;
			wrong |= rd[i].wrong;
		}
		storage_client_get_stats(cl, &st);
		print_message("quiet: %llu reads right, %llu short-circuit\n", (unsigned long long)rok,
			      (unsigned long long)(st.sc_reads - st0.sc_reads));
		assert_int_equal(wrong, 0);
		quiet_ok = rok > 0 && st.sc_reads - st0.sc_reads >= rok / 2;
	}
	assert_true(quiet_ok);
	teardown(&sc);
}

/* kill -9 of the service under READERS short-circuit readers, DEAD_MS
 * without it, a restart and a rewrite of chunk 0 to version 2 (an old
 * mapping of it still trusted would return version 1); readers go on
 * for 800 ms after that write and until the new service's mappings
 * served 100 reads (bounded: a loaded machine once managed only 97 in a
 * fixed 800 ms). LEASE (NULL: the default) is CFS_TEST_SC_LEASE_MS and
 * LEGACY CFS_TEST_SC_LEGACY for the service. Asserts no wrong read and
 * short-circuit reads before and after; the ms from the kill to the
 * rewrite's acknowledgement. */
static uint64_t kill9_run(const char *tag, uint64_t dead_ms, const char *lease, bool legacy)
{
	struct stor_cluster sc;
	if (lease)
		setenv("CFS_TEST_SC_LEASE_MS", lease, 1); /* read by the service it starts */
	if (legacy)
		setenv("CFS_TEST_SC_LEGACY", "1", 1);
	setup(&sc, tag);
	for (uint32_t i = 0; i < NCH; i++)
		assert_int_equal(write_pages(i, 0, NPG, 1), 0);
	struct worker rd[READERS];
	memset(rd, 0, sizeof(rd));
	atomic_store(&stop, 0);
	for (int i = 0; i < READERS; i++) {
		rd[i].seed = 0x7777ull * (uint64_t)(i + 1);
		assert_int_equal(pthread_create(&rd[i].t, NULL, reader_main, &rd[i]), 0);
	}
	/* 500 ms of reads, and until 100 went short-circuit (asserted
	 * below), bounded: a loaded machine once made none in a fixed 500. */
	struct storage_client_stats st0, st;
	uint64_t t1 = clock_mono_ms();
	do {
		clock_sleep_ms(50);
		storage_client_get_stats(cl, &st0);
	} while ((clock_mono_ms() - t1 < 500 || st0.sc_reads <= 100) && clock_mono_ms() - t1 < 20000);
	uint64_t killed = clock_mono_ms();
	stor_cluster_signal(&sc, 0, SIGKILL);
	clock_sleep_ms(dead_ms);
	stor_cluster_start_storage(&sc, 0);
	rewrite_chunk0_after_restart();
	uint64_t acked_ms = clock_mono_ms() - killed;
	t1 = clock_mono_ms();
	for (;;) {
		clock_sleep_ms(50);
		storage_client_get_stats(cl, &st);
		uint64_t ms = clock_mono_ms() - t1;
		if ((ms >= 800 && st.sc_reads > st0.sc_reads + 100) || ms >= 20000)
			break;
	}
	atomic_store(&stop, 1);
	uint64_t ok = 0, failed = 0;
	int wrong = 0;
	for (int i = 0; i < READERS; i++) {
		pthread_join(rd[i].t, NULL);
		ok += rd[i].ok;
		failed += rd[i].failed;
		wrong |= rd[i].wrong;
	}
	storage_client_get_stats(cl, &st);
	print_message("rewrite acknowledged %llu ms after the kill; reads %llu right, %llu failed; "
		      "short-circuit %llu -> %llu, dead %llu, stale %llu\n",
		      (unsigned long long)acked_ms, (unsigned long long)ok,
		      (unsigned long long)failed, (unsigned long long)st0.sc_reads,
		      (unsigned long long)st.sc_reads, (unsigned long long)st.sc_dead,
		      (unsigned long long)st.sc_stale);
	teardown(&sc);
	setenv("CFS_TEST_SC_LEASE_MS", "0", 1);
	setenv("CFS_TEST_SC_LEGACY", "0", 1);
	assert_int_equal(wrong, 0);
	assert_true(st0.sc_reads > 100);
	/* The new service's mappings are used again. */
	assert_true(st.sc_reads > st0.sc_reads + 100);
	return acked_ms;
}

static void test_kill9(void **state)
{
	(void)state;
	kill9_run("short-kill", 300, NULL, false);
}

/* kill -9 under short-circuit readers and an immediate restart, with a
 * lease (3 s) long enough that the restarted service could take a write
 * while the old table's lease still holds. No read checks the service's
 * pidfd any more (sc_direct.c "A READ"): what keeps a read of an old
 * mapping from returning version 1 after the new service acknowledged
 * version 2 is that service waiting out its predecessor's lease before
 * it opens the target (stor_sc.c "A SUCCESSOR"). Without that wait the
 * write was acknowledged 0.34 s after the kill and readers of the old
 * mapping see version 1 for 3 s (wrong). */
#define FAST_LEASE_MS 3000
static void test_kill9_fast(void **state)
{
	(void)state;
	uint64_t acked_ms = kill9_run("short-fast", 0, "3000", false);
	/* The new service waited out the old lease (renewed every 50 ms; a
	 * ticker late by up to a second on a loaded host still passes). */
	assert_true(acked_ms >= FAST_LEASE_MS - 1000);
}

/* The same against a service that records no leases (CFS_TEST_SC_LEGACY,
 * one from before 2026-12-06, whose restart does not wait): the client
 * sees no STO_SC_RECORDED in the table and checks the pidfd after each
 * read, so no read returns version 1 after version 2's acknowledgement
 * (trusting the lease alone, a reader did: the new client against the
 * old binary failed test_restarts, 2026-12-06). */
static void test_kill9_legacy(void **state)
{
	(void)state;
	kill9_run("short-legacy", 0, "3000", true); /* its restart does not wait */
}

/* Short-circuit reads of every page of chunk 0, each checked against
 * version V; how many went short-circuit. */
static uint64_t read_chunk0(uint32_t v)
{
	uint8_t *b = aligned_alloc(PG, PG);
	struct storage_client_stats s0, s1;
	storage_client_get_stats(cl, &s0);
	for (uint32_t p = 0; p < NPG; p++) {
		struct storage_read r = { .loc = { .addr = addr, .target = 1 }, .ino = INO, .idx = 0,
					  .off = p * PG, .len = PG, .dst = b };
		assert_int_equal(storage_client_read(cl, &r, 1, 0), 0);
		assert_int_equal(r.result, (int)PG);
		assert_int_equal(page_version(b, 0, p), v);
	}
	free(b);
	storage_client_get_stats(cl, &s1);
	return s1.sc_reads - s0.sc_reads;
}

/* kill -9 while no read runs, and a restart after the lease of the old
 * service's table ran out: reads short-circuit again. No read raced the
 * kill to find the server dead (its pidfd, after a read's I/O), so only
 * the expired lease says so; taken for a mere stale table, every read
 * went over RPC for good (seen in test_kill9 under load: 57698 stale
 * reads and 9 short-circuit ones in 20 s after the restart). */
static void test_kill9_idle(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup(&sc, "short-idle");
	assert_int_equal(write_pages(0, 0, NPG, 1), 0);
	uint64_t t0 = clock_mono_ms(), n = 0;
	while (n == 0 && clock_mono_ms() - t0 < 20000) /* the first read maps */
		n = read_chunk0(1);
	assert_true(n > 0);
	stor_cluster_signal(&sc, 0, SIGKILL);
	clock_sleep_ms(1000); /* the lease (250 ms, stor_sc.c) runs out */
	stor_cluster_start_storage(&sc, 0);
	rewrite_chunk0_after_restart();
	t0 = clock_mono_ms();
	n = 0;
	while (n < NPG && clock_mono_ms() - t0 < 30000)
		n += read_chunk0(2);
	struct storage_client_stats st;
	storage_client_get_stats(cl, &st);
	print_message("%llu short-circuit reads after the restart in %llu ms; stale %llu, "
		      "dead %llu\n", (unsigned long long)n,
		      (unsigned long long)(clock_mono_ms() - t0), (unsigned long long)st.sc_stale,
		      (unsigned long long)st.sc_dead);
	assert_true(n >= NPG);
	teardown(&sc);
}

static int64_t find_page(const char *dir, const uint8_t *bytes, char *path, size_t pathlen);

/* Reads page P of chunk I (expecting version V); whether it was a
 * short-circuit read. */
static bool read_page_sc(uint32_t i, uint32_t p, uint32_t v)
{
	uint8_t *b = aligned_alloc(PG, PG);
	struct storage_client_stats s0, s1;
	storage_client_get_stats(cl, &s0);
	struct storage_read r = { .loc = { .addr = addr, .target = 1 }, .ino = INO, .idx = i,
				  .off = p * PG, .len = PG, .dst = b };
	assert_int_equal(storage_client_read(cl, &r, 1, 0), 0);
	assert_int_equal(r.result, (int)PG);
	assert_int_equal(page_version(b, i, p), v);
	free(b);
	storage_client_get_stats(cl, &s1);
	return s1.sc_reads > s0.sc_reads;
}

/* Reads page P of chunk I (version V) until a read is short-circuit, for
 * up to 20 s; whether one was. */
static bool until_sc(uint32_t i, uint32_t p, uint32_t v)
{
	uint64_t t0 = clock_mono_ms();
	while (clock_mono_ms() - t0 < 20000) {
		if (read_page_sc(i, p, v))
			return true;
		clock_sleep_ms(5);
	}
	return false;
}

/* The mid-read hook (storage_client_set_sc_test_mid): once armed, the
 * next blocking read of chunk 0 waits between its halves until mid_go. */
static _Atomic int mid_armed, mid_paused, mid_go;

static void mid_hook(uint64_t ino, uint32_t idx)
{
	int one = 1;
	if (ino != INO || idx != 0 || !atomic_compare_exchange_strong(&mid_armed, &one, 0))
		return;
	atomic_store(&mid_paused, 1);
	while (!atomic_load(&mid_go))
		clock_sleep_ms(1);
}

struct mid_read {
	pthread_t t;
	int rc, result;
	int64_t ver;
};

static void *mid_main(void *arg)
{
	struct mid_read *m = arg;
	uint8_t *b = aligned_alloc(PG, PG);
	struct storage_read r = { .loc = { .addr = addr, .target = 1 }, .ino = INO, .idx = 0,
				  .off = 0, .len = PG, .dst = b };
	m->rc = storage_client_read(cl, &r, 1, 0);
	m->result = r.result;
	m->ver = page_version(b, 0, 0);
	free(b);
	return NULL;
}

static void test_old_table(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup(&sc, "short-oldtab");
	storage_client_set_sc_test_mid(cl, mid_hook);
	assert_int_equal(write_pages(0, 0, NPG, 1), 0);
	assert_int_equal(write_pages(1, 0, NPG, 1), 0);
	assert_true(until_sc(0, 0, 1));
	assert_true(until_sc(1, 0, 1));
	struct storage_client_stats s0, s1, s2, s3;
	storage_client_get_stats(cl, &s0);
	assert_int_equal(s0.sc_regs, 1);
	assert_int_equal(s0.sc_tables, 1);
	/* A read of chunk 0 stops between its halves, on the first table. */
	atomic_store(&mid_paused, 0);
	atomic_store(&mid_go, 0);
	atomic_store(&mid_armed, 1);
	struct mid_read m = { .rc = -1 };
	assert_int_equal(pthread_create(&m.t, NULL, mid_main, &m), 0);
	uint64_t t0 = clock_mono_ms();
	while (!atomic_load(&mid_paused) && clock_mono_ms() - t0 < 20000)
		clock_sleep_ms(1);
	assert_true(atomic_load(&mid_paused));
	/* Its service is killed and restarted; reads of chunk 1 find it dead
	 * (counted once), wait out the hold-off (CFS_TEST_SC_OFF_MS) and
	 * register with the new service. */
	stor_cluster_signal(&sc, 0, SIGKILL);
	stor_cluster_start_storage(&sc, 0);
	assert_true(until_sc(1, 0, 1));
	storage_client_get_stats(cl, &s1);
	print_message("registered %llu tables, %llu mapped, dead %llu\n",
		      (unsigned long long)s1.sc_regs, (unsigned long long)s1.sc_tables,
		      (unsigned long long)s1.sc_dead);
	assert_int_equal(s1.sc_regs, 2);
	assert_int_equal(s1.sc_tables, 2); /* the paused read is still inside the first */
	assert_true(s1.sc_dead > s0.sc_dead);
	/* The paused read goes on: its table's server is dead, so it reads
	 * over RPC, and it must not count the peer (on the new table) dead. */
	atomic_store(&mid_go, 1);
	pthread_join(m.t, NULL);
	assert_int_equal(m.rc, 0);
	assert_int_equal(m.result, (int)PG);
	assert_int_equal(m.ver, 1);
	storage_client_get_stats(cl, &s2);
	print_message("after the paused read: registered %llu, mapped %llu, dead %llu\n",
		      (unsigned long long)s2.sc_regs, (unsigned long long)s2.sc_tables,
		      (unsigned long long)s2.sc_dead);
	assert_int_equal(s2.sc_dead, s1.sc_dead);
	assert_int_equal(s2.sc_tables, 1); /* the first table went with its last read */
	/* No hold-off and no new registration: the next read of chunk 1 is
	 * short-circuit at once. */
	assert_true(read_page_sc(1, 1, 1));
	storage_client_get_stats(cl, &s3);
	assert_int_equal(s3.sc_regs, 2);
	assert_int_equal(s3.sc_dead, s1.sc_dead);
	storage_client_set_sc_test_mid(cl, NULL);
	teardown(&sc);
}

static void test_holdoff(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup(&sc, "short-holdoff");
	assert_int_equal(write_pages(0, 0, NPG, 1), 0);
	uint8_t *pg = malloc(PG);
	page_fill(pg, 0, 0, 1);
	char path[1500], hidden[1600];
	assert_true(find_page(sc.node[0].dirs[0], pg, path, sizeof(path)) >= 0);
	free(pg);
	/* Another file in its place: the service still names it (it checks
	 * the path exists, and the device and inode of its own descriptor),
	 * the client finds another inode there and refuses it (-EACCES). */
	snprintf(hidden, sizeof(hidden), "%s.hidden", path);
	assert_int_equal(rename(path, hidden), 0);
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	/* Each read maps, refuses the file, and puts the service on hold
	 * (CFS_TEST_SC_OFF_MS); the next read is after the hold-off. */
	for (int i = 0; i < 3; i++) {
		assert_false(read_page_sc(0, 0, 1));
		clock_sleep_ms(1100); /* and the chunk's own retry time (1 s) */
	}
	struct storage_client_stats st;
	storage_client_get_stats(cl, &st);
	print_message("file away: registered %llu, mapped %llu, maps %llu, fallbacks %llu\n",
		      (unsigned long long)st.sc_regs, (unsigned long long)st.sc_tables,
		      (unsigned long long)st.sc_maps, (unsigned long long)st.sc_fallbacks);
	assert_int_equal(st.sc_regs, 1);
	assert_int_equal(rename(hidden, path), 0);
	assert_true(until_sc(0, 0, 1));
	storage_client_get_stats(cl, &st);
	assert_int_equal(st.sc_regs, 1);
	assert_int_equal(st.sc_tables, 1);
	teardown(&sc);
}

/* A connection that ends while its service lives (here: a malformed map
 * request, which the service answers -CFS_EPROTO and then closes the
 * connection on): the service drops the table (lease 0, every slot
 * bumped) and the client's next map is answered -ESTALE on the new
 * connection. Before 2026-12-05 a read of a chunk mapped before found
 * the lease run out and the service alive, kept its mapping and read
 * over RPC, and so did every later read of it: with no other chunk to
 * map, nothing ever registered a new table. */
static void test_conn_dropped(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup(&sc, "short-conndrop");
	assert_int_equal(write_pages(0, 0, NPG, 1), 0);
	assert_true(until_sc(0, 0, 1));
	struct storage_client_stats s0, s1;
	storage_client_get_stats(cl, &s0);
	assert_int_equal(s0.sc_regs, 1);
	assert_int_equal(storage_client_sc_test_bad_map(cl, addr), -CFS_EPROTO);
	/* Only chunk 0, mapped before, is read: short-circuit again on a
	 * new table (after the chunk's map retry time, 1 s). The service
	 * drops the table after it closed the connection, on its own time
	 * (slower under ASan): a read before that is still short-circuit on
	 * the old table, rightly (lease and slot still good), so wait for
	 * the new table rather than for the first short-circuit read. */
	uint64_t t0 = clock_mono_ms();
	bool again = false;
	while (!again && clock_mono_ms() - t0 < 20000) {
		bool sc_read = read_page_sc(0, 1, 1);
		storage_client_get_stats(cl, &s1);
		again = sc_read && s1.sc_regs >= 2;
		if (!again)
			clock_sleep_ms(5);
	}
	assert_true(again);
	storage_client_get_stats(cl, &s1);
	print_message("after the drop: registered %llu, mapped %llu, maps %llu, stale %llu\n",
		      (unsigned long long)s1.sc_regs, (unsigned long long)s1.sc_tables,
		      (unsigned long long)s1.sc_maps, (unsigned long long)s1.sc_stale);
	assert_int_equal(s1.sc_regs, 2);
	teardown(&sc);
}

#define RESTARTS 70

static void test_restarts(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup(&sc, "short-restarts");
	assert_int_equal(write_pages(0, 0, NPG, 1), 0);
	assert_true(until_sc(0, 0, 1));
	uint64_t t0 = clock_mono_ms();
	for (uint32_t i = 0; i < RESTARTS; i++) {
		stor_cluster_signal(&sc, 0, SIGKILL);
		stor_cluster_start_storage(&sc, 0);
		/* A new version each time: a read trusted on an old table
		 * would return the one before. */
		uint64_t t1 = clock_mono_ms();
		int rc;
		do {
			rc = write_pages(0, 0, NPG, i + 2);
		} while (rc && clock_mono_ms() - t1 < 20000);
		assert_int_equal(rc, 0);
		bool ok = until_sc(0, i % NPG, i + 2);
		if (!ok) {
			struct storage_client_stats st;
			storage_client_get_stats(cl, &st);
			print_message("restart %u: no short-circuit read; registered %llu, "
				      "mapped %llu\n", i, (unsigned long long)st.sc_regs,
				      (unsigned long long)st.sc_tables);
		}
		assert_true(ok);
	}
	struct storage_client_stats st;
	storage_client_get_stats(cl, &st);
	print_message("%d restarts in %llu ms: registered %llu tables, %llu mapped, dead %llu\n",
		      RESTARTS, (unsigned long long)(clock_mono_ms() - t0),
		      (unsigned long long)st.sc_regs, (unsigned long long)st.sc_tables,
		      (unsigned long long)st.sc_dead);
	assert_true(st.sc_regs > 64);
	assert_int_equal(st.sc_tables, 1);
	/* Still short-circuit, every page. */
	assert_int_equal(read_chunk0(RESTARTS + 1), NPG);
	teardown(&sc);
}

/* Offset of the page holding BYTES (PG of them) in any data file under
 * DIR, with its path in PATH; -1 if none. */
static int64_t find_page(const char *dir, const uint8_t *bytes, char *path, size_t pathlen)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	struct dirent *e;
	int64_t found = -1;
	while (found < 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char sub[1400];
		snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR) {
			found = find_page(sub, bytes, path, pathlen);
			continue;
		}
		int fd = open(sub, O_RDONLY);
		uint8_t b[PG];
		for (off_t o = 0; fd >= 0 && pread(fd, b, PG, o) == (ssize_t)PG; o += PG)
			if (!memcmp(b, bytes, PG)) {
				found = o;
				snprintf(path, pathlen, "%s", sub);
				break;
			}
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return found;
}

/* Flips one byte inside the page holding BYTES under DIR (asserting it is
 * there), durably; with DROP out of the page cache too, so the next read of
 * that copy comes from disk, else the damaged page stays cached. Either
 * way the next read of it fails its CRC. */
static void damage_page_cached(const char *dir, const uint8_t *bytes, bool drop)
{
	char path[1400];
	int64_t off = find_page(dir, bytes, path, sizeof(path));
	assert_true(off >= 0);
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	uint8_t x = 0xa5;
	assert_int_equal(pwrite(fd, &x, 1, off + 100), 1);
	assert_int_equal(fdatasync(fd), 0);
	if (drop)
		(void)posix_fadvise(fd, off, PG, POSIX_FADV_DONTNEED);
	close(fd);
}

static void damage_page(const char *dir, const uint8_t *bytes)
{
	damage_page_cached(dir, bytes, true);
}

static void test_corrupt(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup(&sc, "short-corrupt");
	assert_int_equal(write_pages(0, 0, NPG, 1), 0);
	uint8_t *b = aligned_alloc(PG, PG);
	struct storage_read r = { .loc = { .addr = addr, .target = 1 }, .ino = INO, .idx = 0,
				  .off = 5 * PG, .len = PG, .dst = b };
	assert_int_equal(storage_client_read(cl, &r, 1, 0), 0);
	assert_int_equal(r.result, (int)PG);
	struct storage_client_stats st;
	storage_client_get_stats(cl, &st);
	assert_int_equal(st.sc_reads, 1);
	damage_page(sc.node[0].dirs[0], b);
	r.result = 0;
	assert_int_equal(storage_client_read(cl, &r, 1, 0), 0);
	storage_client_get_stats(cl, &st);
	print_message("after damage: result %d, short-circuit corrupt %llu\n", r.result,
		      (unsigned long long)st.sc_corrupt);
	assert_int_equal(r.result, -CFS_ECORRUPT);
	assert_true(st.sc_corrupt >= 1);
	assert_int_equal(st.sc_reads, 1);
	/* The async call reads whole pages straight into an aligned buffer:
	 * the damaged page lands there, fails its CRC and is not answered. */
	uint64_t corrupt0 = st.sc_corrupt;
	memset(b, 0, PG);
	r.result = 0;
	struct waiter w = { .done = 0 };
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	assert_int_equal(storage_client_read_async(cl, &r, 0, wake, &w), 0);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	storage_client_get_stats(cl, &st);
	assert_int_equal(r.result, -CFS_ECORRUPT);
	assert_true(st.sc_corrupt > corrupt0);
	assert_int_equal(st.sc_reads, 1);
	/* A whole-chunk read over the page, then a batch: the damaged chunk
	 * and a sound one (read short-circuit, right). */
	assert_int_equal(write_pages(1, 0, NPG, 1), 0);
	uint8_t *big = aligned_alloc(PG, 2 * CHLEN);
	struct storage_read rb[2] = {
		{ .loc = { .addr = addr, .target = 1 }, .ino = INO, .idx = 0, .off = 0,
		  .len = CHLEN, .dst = big },
		{ .loc = { .addr = addr, .target = 1 }, .ino = INO, .idx = 1, .off = 0,
		  .len = CHLEN, .dst = big + CHLEN },
	};
	assert_int_equal(storage_client_read(cl, rb, 1, 0), 0);
	assert_int_equal(rb[0].result, -CFS_ECORRUPT);
	corrupt0 = st.sc_corrupt;
	rb[0].result = 0;
	assert_int_equal(storage_client_read(cl, rb, 2, 0), 0);
	storage_client_get_stats(cl, &st);
	print_message("batch after damage: results %d %d, short-circuit %llu, corrupt %llu\n",
		      rb[0].result, rb[1].result, (unsigned long long)st.sc_reads,
		      (unsigned long long)st.sc_corrupt);
	assert_int_equal(rb[0].result, -CFS_ECORRUPT);
	assert_int_equal(rb[1].result, (int)CHLEN);
	assert_int_equal(rb[1].crc, crc32c(0, big + CHLEN, CHLEN));
	for (uint32_t k = 0; k < NPG; k++)
		assert_int_equal(page_version(big + CHLEN + (size_t)k * PG, 1, k), 1);
	assert_true(st.sc_corrupt >= corrupt0 + 2);
	assert_int_equal(st.sc_reads, 2); /* chunk 1's */
	free(big);
	free(b);
	teardown(&sc);
}

/* The async call on R through C, waited for; R->result. SYNC: DONE ran before the
 * call returned. */
static int async_read_on(struct storage_client *c, struct storage_read *r, bool *sync)
{
	struct waiter w = { .done = 0 };
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	r->result = 0;
	assert_int_equal(storage_client_read_async(c, r, 0, wake, &w), 0);
	pthread_mutex_lock(&w.mu);
	*sync = w.done;
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	return r->result;
}

static int async_read(struct storage_read *r, bool *sync)
{
	return async_read_on(cl, r, sync);
}

static bool cached_mode(void)
{
	const char *e = getenv("CFS_SHORT_READ_CACHED");
	return !e || strcmp(e, "0");
}

static void test_cached(void **state)
{
	(void)state;
	if (!cached_mode())
		skip();
	struct stor_cluster sc;
	setup(&sc, "short-cached");
	assert_int_equal(write_pages(0, 0, NPG, 1), 0);
	assert_int_equal(write_pages(1, 0, NPG, 1), 0);
	uint8_t *b = aligned_alloc(PG, PG), *want = malloc(PG);
	struct storage_read r = { .loc = { .addr = addr, .target = 1 }, .ino = INO, .idx = 0,
				  .off = 5 * PG, .len = PG, .dst = b };
	struct storage_client_stats st;
	bool sync;
	/* The first read misses (the chunk file was written O_DIRECT) and
	 * fills the cache; a later one hits (a few tries: a loaded machine
	 * may reclaim the page meanwhile). */
	assert_int_equal(async_read(&r, &sync), (int)PG);
	assert_int_equal(page_version(b, 0, 5), 1);
	int hits = 0;
	for (int i = 0; i < 20 && hits < 2; i++) {
		memset(b, 0, PG);
		assert_int_equal(async_read(&r, &sync), (int)PG);
		assert_int_equal(page_version(b, 0, 5), 1);
		assert_int_equal(r.crc, crc32c(0, b, PG));
		hits += sync;
	}
	storage_client_get_stats(cl, &st);
	print_message("cached: reads %llu hits %d\n", (unsigned long long)st.sc_reads, hits);
	assert_true(hits >= 1);
	/* A cached page rewritten (journaled, in place): the new bytes. */
	r.idx = 1;
	assert_int_equal(async_read(&r, &sync), (int)PG);
	assert_int_equal(async_read(&r, &sync), (int)PG);
	assert_int_equal(page_version(b, 1, 5), 1);
	assert_int_equal(write_pages(1, 5, 1, 2), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(async_read(&r, &sync), (int)PG);
		assert_int_equal(page_version(b, 1, 5), 2);
	}
	/* Damaged on disk, out of the cache: the miss's read finds it. */
	r.idx = 0;
	page_fill(want, 0, 20, 1);
	damage_page(sc.node[0].dirs[0], want);
	r.off = 20 * PG;
	uint64_t c0 = st.sc_corrupt;
	assert_int_equal(async_read(&r, &sync), -CFS_ECORRUPT);
	storage_client_get_stats(cl, &st);
	assert_true(st.sc_corrupt > c0);
	/* Damaged in the cache and on disk: a sound page read into the cache,
	 * then changed through a buffered write, which stays cached. */
	r.off = 9 * PG;
	int again = 0;
	for (int i = 0; i < 20 && !again; i++) {
		assert_int_equal(async_read(&r, &sync), (int)PG);
		again = sync;
	}
	assert_true(again);
	memcpy(want, b, PG);
	damage_page_cached(sc.node[0].dirs[0], want, false);
	storage_client_get_stats(cl, &st);
	c0 = st.sc_corrupt;
	uint64_t reads0 = st.sc_reads;
	memset(b, 0, PG);
	assert_int_equal(async_read(&r, &sync), -CFS_ECORRUPT);
	storage_client_get_stats(cl, &st);
	print_message("cached damage: corrupt %llu -> %llu\n", (unsigned long long)c0,
		      (unsigned long long)st.sc_corrupt);
	assert_int_equal(st.sc_corrupt, c0 + 1);
	assert_int_equal(st.sc_reads, reads0);
	free(want);
	free(b);
	teardown(&sc);
}

/* Drops every file under DIR from the page cache. */
static void drop_cache_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char sub[1400];
		snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR) {
			drop_cache_dir(sub);
			continue;
		}
		int fd = open(sub, O_RDONLY);
		if (fd >= 0) {
			(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			close(fd);
		}
	}
	if (d)
		closedir(d);
}

#define COLD_WIN 64

static void test_cached_cold(void **state)
{
	(void)state;
	if (!cached_mode())
		skip();
	struct stor_cluster sc;
	setenv("CFS_SHORT_READ_PROBE_WINDOW", "64", 1); /* read when the client starts */
	setup(&sc, "short-cold");
	unsetenv("CFS_SHORT_READ_PROBE_WINDOW");
	assert_int_equal(write_pages(0, 0, NPG, 1), 0);
	uint8_t *b = aligned_alloc(PG, PG), *want = malloc(PG);
	struct storage_read r = { .loc = { .addr = addr, .target = 1 }, .ino = INO, .idx = 0,
				  .len = PG, .dst = b };
	bool sync;
	/* Reads that miss (the files dropped from the cache before each;
	 * the kernel's read-ahead of a miss may still make a few hit) until
	 * the policy turns cold: a read goes O_DIRECT without a probe. */
	struct storage_client_stats st;
	storage_client_get_stats(cl, &st);
	assert_int_equal(st.sc_cached_direct, 0);
	for (uint32_t i = 0; i < 40 * COLD_WIN && !st.sc_cached_direct; i++) {
		drop_cache_dir(sc.node[0].dirs[0]);
		r.off = (uint64_t)(i * 7 % NPG) * PG;
		assert_int_equal(async_read(&r, &sync), (int)PG);
		assert_int_equal(page_version(b, 0, i * 7 % NPG), 1);
		storage_client_get_stats(cl, &st);
	}
	assert_true(st.sc_cached_direct > 0);
	/* Page 5 in the cache (a buffered read of its block file): cold,
	 * only the sampled probes (1 in 8) answer it at once. */
	char path[1400];
	page_fill(want, 0, 5, 1);
	int64_t off = find_page(sc.node[0].dirs[0], want, path, sizeof(path));
	assert_true(off >= 0);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, PG, off), (ssize_t)PG);
	close(fd);
	r.off = 5 * PG;
	uint64_t d0 = st.sc_cached_direct;
	for (int i = 0; i < COLD_WIN; i++) {
		memset(b, 0, PG);
		assert_int_equal(async_read(&r, &sync), (int)PG);
		assert_int_equal(page_version(b, 0, 5), 1);
		assert_int_equal(r.crc, crc32c(0, b, PG));
	}
	storage_client_get_stats(cl, &st);
	print_message("cold: %llu of %d reads O_DIRECT without a probe\n",
		      (unsigned long long)(st.sc_cached_direct - d0), COLD_WIN);
	assert_true(st.sc_cached_direct - d0 >= COLD_WIN * 3 / 4);
	/* The sampled probes hit: after a window of them every read probes
	 * again. */
	for (int i = 0; i < 8 * COLD_WIN + 8; i++)
		assert_int_equal(async_read(&r, &sync), (int)PG);
	storage_client_get_stats(cl, &st);
	d0 = st.sc_cached_direct;
	for (int i = 0; i < 20; i++) {
		assert_int_equal(async_read(&r, &sync), (int)PG);
		assert_int_equal(page_version(b, 0, 5), 1);
	}
	storage_client_get_stats(cl, &st);
	assert_int_equal(st.sc_cached_direct, d0);
	free(want);
	free(b);
	teardown(&sc);
}

/* ---- a damaged copy at a chain's non-first replica ---- */

/* Lines of LOG holding NEEDLE and NEEDLE2. */
static int log_count(const char *log, const char *needle, const char *needle2)
{
	FILE *f = fopen(log, "r");
	char line[2048];
	int n = 0;
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, needle) && strstr(line, needle2);
	if (f)
		fclose(f);
	return n;
}

struct repaired_arg {
	const char *log, *what;
};

static int repaired_in(void *arg)
{
	struct repaired_arg *a = arg;
	return log_count(a->log, "repaired chunk:", a->what) > 0;
}

enum { CC_SYNC, CC_ASYNC, CC_BATCH };

/* Times a reading thread was about to wait (storage_client_set_will_block). */
static _Atomic int cc_waits;

static void cc_will_block(void) { atomic_fetch_add(&cc_waits, 1); }

/* One read of page 5 of chunk IDX of CHAIN the way MODE says (a batch
 * adds page 0 of chunk IDX + 1): asserts every byte. */
static void cc_read(struct storage_client *c, uint32_t chain, uint32_t idx, int mode, uint8_t *b)
{
	struct storage_read r[2] = {
		{ .loc = { .chain = chain }, .ino = INO, .idx = idx, .off = 5 * PG, .len = PG,
		  .dst = b },
		{ .loc = { .chain = chain }, .ino = INO, .idx = idx + 1, .off = 0, .len = PG,
		  .dst = b + PG },
	};
	memset(b, 0, 2 * PG);
	if (mode == CC_ASYNC) {
		bool sync;
		async_read_on(c, &r[0], &sync);
	} else {
		assert_int_equal(storage_client_read(c, r, mode == CC_BATCH ? 2 : 1, 0), 0);
	}
	assert_int_equal(r[0].result, (int)PG);
	assert_int_equal(page_version(b, idx, 5), 1);
	assert_int_equal(r[0].crc, crc32c(0, b, PG));
	if (mode == CC_BATCH) {
		assert_int_equal(r[1].result, (int)PG);
		assert_int_equal(page_version(b + PG, idx + 1, 0), 1);
	}
}

static void test_chain_corrupt(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "short-chain", 3, 1, 4000);
	stor_cluster_start_mgmtd(&sc);
	char out[4096], err[256];
	assert_int_equal(stor_cluster_admin(&sc, out, sizeof(out), "init-cluster", NULL), 0);
	for (int i = 0; i < 3; i++)
		stor_cluster_start_storage(&sc, i);
	const char *maddr[1] = { sc.mgmtd_addr };
	struct mgmtd_client_opts mo = { .mgmtd_addrs = maddr, .n_mgmtd = 1,
					.cluster_id = SC_CLUSTER, .secret = (const uint8_t *)SC_SECRET,
					.secret_len = strlen(SC_SECRET), .poll_wait_ms = 1000 };
	struct mgmtd_client *obs;
	assert_int_equal(mgmtd_client_new(&mo, &obs, err, sizeof(err)), 0);
	uint64_t deadline = clock_mono_ms() + 30000;
	int ntargets = 0;
	while (ntargets != 3 && clock_mono_ms() < deadline) {
		struct mgmtd_routing *snap = mgmtd_client_routing(obs);
		ntargets = snap ? (int)mgmtd_routing_info(snap)->n_targets : 0;
		mgmtd_routing_put(snap);
		if (ntargets != 3)
			clock_sleep_ms(50);
	}
	assert_int_equal(ntargets, 3);
	assert_int_equal(stor_cluster_admin(&sc, out, sizeof(out), "create-chain-table",
					    "--replicas", "3", NULL), 0);
	const uint32_t chain = 1000001;
	struct storage_client_opts co = { .cluster_id = SC_CLUSTER,
					  .secret = (const uint8_t *)SC_SECRET,
					  .secret_len = strlen(SC_SECRET), .mgmtd_addrs = maddr,
					  .n_mgmtd = 1, .timeout_ms = 5000, .retry_budget_ms = 30000,
					  .short_read = 1 };
	struct storage_client *c;
	assert_int_equal(storage_client_new(&co, &c, err, sizeof(err)), 0);
	struct storage_loc loc = { .chain = chain };
	uint8_t *w = malloc(CHLEN);
	for (uint32_t i = 0; i < 5; i++) {
		for (uint32_t k = 0; k < NPG; k++)
			page_fill(w + (size_t)k * PG, i, k, 1);
		assert_int_equal(storage_client_write(c, &loc, INO, i, 0, CHLEN, w, 0, NULL), 0);
	}
	free(w);
	/* The async reads of a chunk move from replica to replica without
	 * waiting for the next one's mapping (it is made in the background
	 * while the previous replica serves): of 3 x 64 + 16 async reads of
	 * chunk 4, only the first waits (its first mapping), once every
	 * service is registered (chunk 3's reads). */
	uint8_t *b4 = aligned_alloc(PG, 2 * PG);
	for (int k = 0; k < 3 * 64; k++)
		cc_read(c, chain, 3, CC_ASYNC, b4);
	struct storage_client_stats s40, s4;
	storage_client_get_stats(c, &s40);
	storage_client_set_will_block(c, cc_will_block);
	atomic_store(&cc_waits, 0);
	for (int k = 0; k < 3 * 64 + 16; k++)
		cc_read(c, chain, 4, CC_ASYNC, b4);
	storage_client_set_will_block(c, NULL);
	storage_client_get_stats(c, &s4);
	print_message("chunk 4: %d waits, %llu maps, %llu short-circuit reads\n",
		      atomic_load(&cc_waits), (unsigned long long)(s4.sc_maps - s40.sc_maps),
		      (unsigned long long)(s4.sc_reads - s40.sc_reads));
	assert_true(atomic_load(&cc_waits) <= 2); /* a refused first map may retry once */
	assert_true(s4.sc_maps - s40.sc_maps >= 3);  /* every replica's copy was mapped */
	assert_true(s4.sc_reads - s40.sc_reads > 150);
	free(b4);
	/* The chain's second replica (not the first SERVING one, which the
	 * short-circuit path used to read alone) and its service. */
	uint32_t bad_target = 0;
	int bad = -1;
	deadline = clock_mono_ms() + 30000;
	while (bad < 0 && clock_mono_ms() < deadline) {
		struct mgmtd_routing *snap = mgmtd_client_routing(obs);
		const struct route_info *ri = snap ? mgmtd_routing_info(snap) : NULL;
		const struct route_chain *ch = ri ? route_find_chain(ri, chain) : NULL;
		int serving = 0;
		for (uint32_t k = 0; ch && k < ch->n; k++)
			serving += ch->m[k].state == CHAIN_PS_SERVING;
		if (ch && ch->n == 3 && serving == 3) {
			const struct route_target *t = route_find_target(ri, ch->m[1].target_id);
			const struct route_node *nd = t ? route_find_node(ri, t->node_id) : NULL;
			for (int i = 0; nd && i < 3; i++)
				if (!strcmp(nd->addr, sc.node[i].addr))
					bad = i;
			bad_target = ch->m[1].target_id;
		}
		mgmtd_routing_put(snap);
		if (bad < 0)
			clock_sleep_ms(50);
	}
	assert_true(bad >= 0);
	uint8_t *b = aligned_alloc(PG, 2 * PG);
	static const char *const names[] = { "blocking", "async", "batch" };
	for (int mode = CC_SYNC; mode <= CC_BATCH; mode++) {
		/* Chunk MODE (the batch also reads chunk 3, sound), so each
		 * round damages a copy no repair has touched. */
		uint32_t idx = (uint32_t)mode;
		/* First every replica's copy read short-circuit (its mapping
		 * made: a chunk just written may be refused one for a moment,
		 * and that read goes over RPC, maybe to the damaged copy). */
		struct storage_client_stats sw0, sw;
		storage_client_get_stats(c, &sw0);
		for (int k = 0; k < 3 * 64; k++)
			cc_read(c, chain, idx, mode, b);
		storage_client_get_stats(c, &sw);
		assert_true(sw.sc_reads - sw0.sc_reads > 150);
		uint8_t pg[PG];
		page_fill(pg, idx, 5, 1);
		char what[64];
		damage_page(sc.node[bad].dirs[0], pg);
		snprintf(what, sizeof(what), "ino=%u idx=%u", INO, idx);
		struct storage_client_stats st0, st;
		storage_client_get_stats(c, &st0);
		/* The replica choice of a chunk moves on after every 64 reads of
		 * it: 3 x 64 reads reach every copy. */
		int n = 0;
		while (n < 400 && !log_count(sc.node[bad].log, "corrupt chunk:", what)) {
			cc_read(c, chain, idx, mode, b);
			n++;
		}
		storage_client_get_stats(c, &st);
		print_message("%s: %d reads until target %u reported it; short-circuit reads %llu, "
			      "corrupt %llu\n", names[mode], n, bad_target,
			      (unsigned long long)(st.sc_reads - st0.sc_reads),
			      (unsigned long long)(st.sc_corrupt - st0.sc_corrupt));
		assert_true(log_count(sc.node[bad].log, "corrupt chunk:", what) >= 1);
		assert_true(st.sc_corrupt > st0.sc_corrupt);
		assert_true(st.sc_reads > st0.sc_reads);
		for (int i = 0; i < 3; i++)
			if (i != bad)
				assert_int_equal(log_count(sc.node[i].log, "corrupt chunk", what), 0);
		struct repaired_arg ra = { .log = sc.node[bad].log, .what = what };
		assert_true(testenv_wait(repaired_in, &ra, 30000));
		/* The copy on disk is right again: read it from that replica. */
		struct storage_loc pin = { .chain = chain, .addr = sc.node[bad].addr,
					   .target = bad_target };
		struct storage_read r = { .loc = pin, .ino = INO, .idx = idx, .off = 0,
					  .len = 8 * PG, .dst = malloc(8 * PG) };
		assert_int_equal(storage_client_read(c, &r, 1, 0), 0);
		assert_int_equal(r.result, (int)(8 * PG));
		assert_int_equal(page_version((uint8_t *)r.dst + 5 * PG, idx, 5), 1);
		free(r.dst);
		for (int k = 0; k < 200; k++)
			cc_read(c, chain, idx, mode, b);
		assert_int_equal(log_count(sc.node[bad].log, "corrupt chunk:", what), 1);
	}
	free(b);
	storage_client_free(c);
	mgmtd_client_free(obs);
	for (int i = 0; i < 3; i++)
		stor_cluster_signal(&sc, i, SIGTERM);
	stor_cluster_fini(&sc);
}

/* ---- async reads of every shape ---- */

#define SH_LEN (10 * PG + 100) /* the chunk ends 100 bytes into page 10 */
#define SH_N 48                /* reads in flight at once */

struct sh_read {
	struct storage_read r;
	uint8_t *mem, *dst;
	struct waiter *w;
	_Atomic int *left;
};

static void sh_done(void *arg)
{
	struct sh_read *x = arg;
	if (atomic_fetch_sub(x->left, 1) == 1)
		wake(x->w);
}

static void test_shapes(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup(&sc, "short-shapes");
	uint8_t *data = malloc(SH_LEN);
	for (uint32_t k = 0; k < SH_LEN; k++)
		data[k] = (uint8_t)(k * 7 + k / 251);
	struct storage_loc loc = { .addr = addr, .target = 1 };
	assert_int_equal(storage_client_write(cl, &loc, INO, 0, 0, SH_LEN, data, 0, NULL), 0);
	/* The first read maps the chunk; journals retire within 100 ms. */
	struct storage_client_stats st0, st;
	for (int tries = 0; tries < 100; tries++) {
		uint8_t *b = aligned_alloc(PG, PG);
		struct storage_read r = { .loc = loc, .ino = INO, .idx = 0, .len = PG, .dst = b };
		assert_int_equal(storage_client_read(cl, &r, 1, 0), 0);
		free(b);
		storage_client_get_stats(cl, &st0);
		if (st0.sc_reads)
			break;
		clock_sleep_ms(50);
	}
	assert_true(st0.sc_reads > 0);
	/* (offset, length, buffer misalignment) */
	static const uint32_t shp[][3] = {
		{ 0, PG, 0 },           { 3 * PG, PG, 0 },       { 2 * PG, 3 * PG, 0 },
		{ 3 * PG, PG, 8 },      { 5 * PG + 10, 200, 0 }, { 9 * PG, 2 * PG, 0 },
		{ 10 * PG, PG, 0 },     { 10 * PG + 50, 50, 0 }, { 7 * PG + 1, PG, 0 },
		{ 11 * PG, PG, 0 },     { 8 * PG, 3 * PG, 16 },  { 4 * PG, 4 * PG, 0 },
	};
	const size_t nshp = sizeof(shp) / sizeof(shp[0]);
	struct sh_read x[SH_N];
	for (int round = 0; round < 8; round++) {
		struct waiter w = { .done = 0 };
		pthread_mutex_init(&w.mu, NULL);
		pthread_cond_init(&w.cv, NULL);
		_Atomic int left = SH_N;
		for (int i = 0; i < SH_N; i++) {
			const uint32_t *s = shp[(size_t)(i + round) % nshp];
			x[i].mem = aligned_alloc(PG, 5 * PG);
			x[i].dst = x[i].mem + s[2];
			memset(x[i].mem, 0xee, 5 * PG);
			x[i].w = &w;
			x[i].left = &left;
			x[i].r = (struct storage_read){ .loc = loc, .ino = INO, .idx = 0,
							.off = s[0], .len = s[1], .dst = x[i].dst };
		}
		for (int i = 0; i < SH_N; i++)
			assert_int_equal(storage_client_read_async(cl, &x[i].r, 0, sh_done, &x[i]), 0);
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		for (int i = 0; i < SH_N; i++) {
			struct storage_read *r = &x[i].r;
			uint32_t want = r->off >= SH_LEN ? 0
					: SH_LEN - r->off < r->len ? SH_LEN - r->off : r->len;
			if (r->result == -ENOENT)
				r->result = 0;
			assert_int_equal(r->result, (int)want);
			assert_memory_equal(x[i].dst, data + (r->off < SH_LEN ? r->off : 0), want);
			if (want)
				assert_int_equal(r->crc, crc32c(0, x[i].dst, want));
			/* nothing written before the buffer */
			for (uint8_t *q = x[i].mem; q < x[i].dst; q++)
				assert_int_equal(*q, 0xee);
			free(x[i].mem);
		}
		pthread_mutex_destroy(&w.mu);
		pthread_cond_destroy(&w.cv);
	}
	storage_client_get_stats(cl, &st);
	print_message("shapes: %llu short-circuit, %llu fallbacks\n",
		      (unsigned long long)(st.sc_reads - st0.sc_reads),
		      (unsigned long long)(st.sc_fallbacks - st0.sc_fallbacks));
	/* nothing changed the chunk: every read was short-circuit */
	assert_int_equal(st.sc_reads - st0.sc_reads, 8 * SH_N);
	assert_int_equal(st.sc_fallbacks, st0.sc_fallbacks);
	free(data);
	teardown(&sc);
}

/* ---- map slot eviction ---- */

/* Reads page 0 of chunk 0 of INO at LOC into B until a read is short-
 * circuit (pending journals refuse a map: 5 s at most); the client's
 * stats then in *ST. */
static void until_first_sc(const struct storage_loc *loc, uint64_t ino, uint8_t *b,
			   struct storage_client_stats *st)
{
	for (int tries = 0; tries < 100; tries++) {
		struct storage_read r = { .loc = *loc, .ino = ino, .idx = 0, .len = PG, .dst = b };
		assert_int_equal(storage_client_read(cl, &r, 1, 0), 0);
		storage_client_get_stats(cl, st);
		if (st->sc_reads)
			break;
		clock_sleep_ms(50);
	}
	assert_true(st->sc_reads > 0);
}

#define EV_SLOTS "4"
#define EV_CH 16
#define EV_ROUNDS 3

static void test_evict(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setenv("CFS_TEST_SC_SLOTS", EV_SLOTS, 1);
	setup(&sc, "short-evict");
	setenv("CFS_TEST_SC_SLOTS", "0", 1);
	uint8_t *pg = malloc(2 * PG);
	struct storage_loc loc = { .addr = addr, .target = 1 };
	for (uint32_t i = 0; i < EV_CH; i++) {
		page_fill(pg, i, 0, 1);
		page_fill(pg + PG, i, 1, 1);
		assert_int_equal(storage_client_write(cl, &loc, INO + 1, i, 0, 2 * PG, pg, 0, NULL),
				 0);
	}
	uint8_t *b = aligned_alloc(PG, 2 * PG);
	struct storage_client_stats st0, st;
	until_first_sc(&loc, INO + 1, b, &st0);
	for (int round = 0; round < EV_ROUNDS; round++)
		for (uint32_t i = 0; i < EV_CH; i++) {
			memset(b, 0, 2 * PG);
			struct storage_read r = { .loc = loc, .ino = INO + 1, .idx = i,
						  .len = 2 * PG, .dst = b };
			assert_int_equal(storage_client_read(cl, &r, 1, 0), 0);
			assert_int_equal(r.result, 2 * PG);
			assert_int_equal(page_version(b, i, 0), 1);
			assert_int_equal(page_version(b + PG, i, 1), 1);
		}
	storage_client_get_stats(cl, &st);
	uint64_t sc_reads = st.sc_reads - st0.sc_reads, maps = st.sc_maps - st0.sc_maps;
	print_message("evict: %llu of %d reads short-circuit, %llu maps, %llu fallbacks\n",
		      (unsigned long long)sc_reads, EV_ROUNDS * EV_CH, (unsigned long long)maps,
		      (unsigned long long)(st.sc_fallbacks - st0.sc_fallbacks));
	/* A cyclic pass over 16 chunks through 4 slots misses every time:
	 * each read maps (a lease lapse on a loaded machine may send a few
	 * over RPC, so not all). */
	assert_true(sc_reads >= (uint64_t)(EV_ROUNDS * EV_CH) * 3 / 4);
	assert_true(maps + 1 >= sc_reads); /* chunk 0 was mapped before */
	/* A key whose slot went to another chunk is freed then: about one a
	 * slot stays (a refused map's keeps its retry time a while), not one
	 * a chunk ever read (16 before 2026-12-06). */
	print_message("evict: %llu keys kept\n", (unsigned long long)st.sc_keys);
	assert_true(st.sc_keys <= 2 * (uint64_t)atoi(EV_SLOTS));
	free(b);
	free(pg);
	teardown(&sc);
}

/* ---- the bound on kept chunk records ---- */

#define KC_KEYS "8"
#define KC_CH 48
#define KC_BATCH 4

/* Checks KC_BATCH one-page reads of chunks [I, I + KC_BATCH) of INO + 3
 * in B (each chunk's page 0, version 1). */
static void kc_check(const uint8_t *b, const struct storage_read *r, uint32_t i, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++) {
		assert_int_equal(r[j].result, PG);
		assert_int_equal(page_version(b + (size_t)j * PG, i + j, 0), 1);
	}
}

static void test_key_cap(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setenv("CFS_TEST_SC_KEYS", KC_KEYS, 1); /* read when the client is made */
	setup(&sc, "short-keycap");
	setenv("CFS_TEST_SC_KEYS", "0", 1);
	const uint64_t cap = (uint64_t)atoi(KC_KEYS);
	uint8_t *pg = malloc(PG);
	struct storage_loc loc = { .addr = addr, .target = 1 };
	for (uint32_t i = 0; i < KC_CH; i++) {
		page_fill(pg, i, 0, 1);
		assert_int_equal(storage_client_write(cl, &loc, INO + 3, i, 0, PG, pg, 0, NULL), 0);
	}
	uint8_t *b = aligned_alloc(PG, KC_BATCH * PG);
	struct storage_client_stats st0, st;
	until_first_sc(&loc, INO + 3, b, &st0);
	/* Every chunk, far more than the cap, three times over: one by one
	 * (blocking), one by one (async), then in batches; the cap holds
	 * after every read and the bytes are right. */
	uint64_t max_keys = 0;
	for (int round = 0; round < 3; round++)
		for (uint32_t i = 0; i < KC_CH; i += round == 2 ? KC_BATCH : 1) {
			uint32_t n = round == 2 ? KC_BATCH : 1;
			struct storage_read r[KC_BATCH];
			memset(b, 0, KC_BATCH * PG);
			for (uint32_t j = 0; j < n; j++)
				r[j] = (struct storage_read){ .loc = loc, .ino = INO + 3, .idx = i + j,
							      .len = PG, .dst = b + (size_t)j * PG };
			if (round == 1) {
				bool sync;
				assert_int_equal(async_read(&r[0], &sync), PG);
			} else {
				assert_int_equal(storage_client_read(cl, r, n, 0), 0);
			}
			kc_check(b, r, i, n);
			storage_client_get_stats(cl, &st);
			if (st.sc_keys > max_keys)
				max_keys = st.sc_keys;
		}
	storage_client_get_stats(cl, &st);
	uint64_t reads = 2 * KC_CH + KC_CH, sc_reads = st.sc_reads - st0.sc_reads;
	print_message("key_cap: %llu of %llu reads short-circuit, keys at most %llu (cap %llu), "
		      "%llu evicted, %llu data files open\n",
		      (unsigned long long)sc_reads, (unsigned long long)reads,
		      (unsigned long long)max_keys, (unsigned long long)cap,
		      (unsigned long long)st.sc_key_evictions, (unsigned long long)st.sc_files);
	assert_true(max_keys <= cap); /* 48 before 2026-12-06: one a chunk ever read */
	assert_true(max_keys > 0);
	assert_true(st.sc_key_evictions >= KC_CH - cap);
	/* the evicted chunks were mapped again: still short-circuit (a lease
	 * lapse on a loaded machine may send a few over RPC) */
	assert_true(sc_reads >= reads * 3 / 4);
	assert_true(st.sc_files >= 1);
	free(b);
	free(pg);
	teardown(&sc);
}

/* ---- batched maps (SC_MAP_MANY) ---- */

#define MM_CH 12
#define MM_ABSENT 2

/* Reads chunks [FIRST, FIRST + MM_CH) of INO + 2 (2 pages each, as
 * written) and MM_ABSENT absent ones in one batch; checks the bytes;
 * returns how many were short-circuit. */
static uint64_t mm_batch(uint32_t first)
{
	struct storage_loc loc = { .addr = addr, .target = 1 };
	size_t n = MM_CH + MM_ABSENT;
	uint8_t *buf = aligned_alloc(PG, n * 2 * PG);
	struct storage_read r[MM_CH + MM_ABSENT];
	for (size_t i = 0; i < n; i++)
		r[i] = (struct storage_read){ .loc = loc, .ino = INO + 2,
					      .idx = i < MM_CH ? first + (uint32_t)i
							       : 5000 + (uint32_t)i,
					      .len = 2 * PG, .dst = buf + i * 2 * PG };
	struct storage_client_stats st0, st;
	storage_client_get_stats(cl, &st0);
	assert_int_equal(storage_client_read(cl, r, n, 0), 0);
	storage_client_get_stats(cl, &st);
	for (size_t i = 0; i < MM_CH; i++) {
		assert_int_equal(r[i].result, 2 * PG);
		assert_int_equal(page_version(buf + i * 2 * PG, r[i].idx, 0), 1);
		assert_int_equal(page_version(buf + i * 2 * PG + PG, r[i].idx, 1), 1);
	}
	for (size_t i = MM_CH; i < n; i++)
		assert_true(r[i].result == -ENOENT || r[i].result == 0);
	free(buf);
	return st.sc_reads - st0.sc_reads;
}

static void mm_write(uint32_t first)
{
	uint8_t *pg = malloc(2 * PG);
	struct storage_loc loc = { .addr = addr, .target = 1 };
	for (uint32_t i = first; i < first + MM_CH; i++) {
		page_fill(pg, i, 0, 1);
		page_fill(pg + PG, i, 1, 1);
		assert_int_equal(storage_client_write(cl, &loc, INO + 2, i, 0, 2 * PG, pg, 0, NULL),
				 0);
	}
	free(pg);
}

/* Batches until one is all short-circuit (journals retire within ~100 ms;
 * a lease lapse on a loaded machine may send a range over RPC). */
static void mm_until_all(uint32_t first)
{
	uint64_t got = 0;
	for (int tries = 0; tries < 100 && got < MM_CH; tries++) {
		got = mm_batch(first);
		if (got < MM_CH)
			clock_sleep_ms(30);
	}
	assert_int_equal(got, MM_CH);
}

static void map_many_run(bool old)
{
	struct stor_cluster sc;
	if (old)
		setenv("CFS_TEST_SC_NO_MANY", "1", 1); /* read by the service it starts */
	setenv("CFS_SC_MAP_MANY", "1", 1);              /* read by the client it makes */
	setup(&sc, old ? "short-many-old" : "short-many");
	setenv("CFS_SC_MAP_MANY", "0", 1);
	if (old)
		setenv("CFS_TEST_SC_NO_MANY", "0", 1);
	mm_write(0);
	clock_sleep_ms(300); /* journals retired: maps are not refused busy */
	/* Chunks 0 and 1 mapped first (single reads: one SC_MAP each). */
	struct storage_loc loc = { .addr = addr, .target = 1 };
	uint8_t *b = aligned_alloc(PG, 2 * PG);
	struct storage_client_stats st0, st;
	for (int tries = 0; tries < 100; tries++) {
		storage_client_get_stats(cl, &st0);
		for (uint32_t i = 0; i < 2; i++) {
			struct storage_read r = { .loc = loc, .ino = INO + 2, .idx = i, .len = PG,
						  .dst = b };
			assert_int_equal(storage_client_read(cl, &r, 1, 0), 0);
		}
		storage_client_get_stats(cl, &st);
		if (st.sc_reads - st0.sc_reads == 2)
			break;
		clock_sleep_ms(50);
	}
	free(b);
	/* The mixed batch: 2 mapped, 10 not, 2 absent. */
	storage_client_get_stats(cl, &st0);
	uint64_t first = mm_batch(0);
	storage_client_get_stats(cl, &st);
	print_message("map_many%s: first batch %llu of %d short-circuit, %llu SC_MAP_MANY, "
		      "%llu SC_MAP, %llu maps\n", old ? " (old server)" : "",
		      (unsigned long long)first, MM_CH,
		      (unsigned long long)(st.sc_map_many - st0.sc_map_many),
		      (unsigned long long)(st.sc_map_rpcs - st0.sc_map_rpcs),
		      (unsigned long long)(st.sc_maps - st0.sc_maps));
	assert_int_equal(st.sc_map_many - st0.sc_map_many, 1);
	if (!old) {
		/* The 10 unmapped chunks in that one request, none alone; the
		 * absent ones refused in it (-ENOENT) and read over RPC. */
		assert_int_equal(st.sc_map_rpcs, st0.sc_map_rpcs);
		assert_true(st.sc_maps - st0.sc_maps >= 1);
	}
	mm_until_all(0);
	if (old) {
		/* Remembered: the next batch of new chunks maps one by one. */
		mm_write(100);
		clock_sleep_ms(300);
		storage_client_get_stats(cl, &st0);
		mm_until_all(100);
		storage_client_get_stats(cl, &st);
		assert_int_equal(st.sc_map_many, st0.sc_map_many);
		assert_true(st.sc_map_rpcs - st0.sc_map_rpcs >= MM_CH);
	} else {
		storage_client_get_stats(cl, &st);
		assert_int_equal(st.sc_map_rpcs, st0.sc_map_rpcs);
		/* Too many entries: refused as a whole, with the limit named. */
		struct rpc_opts ro = { .cluster_id = SC_CLUSTER,
				       .secret = (const uint8_t *)SC_SECRET,
				       .secret_len = strlen(SC_SECRET) };
		struct rpc_client *rc;
		assert_int_equal(rpc_client_new(&ro, &rc), 0);
		struct rpc_peer *p;
		char err[128];
		assert_int_equal(rpc_client_peer(rc, addr, &p, err, sizeof(err)), 0);
		struct sto_sc_map_ent *e = calloc(STO_SC_MAP_MANY_MAX + 1, sizeof(*e));
		for (uint32_t i = 0; i <= STO_SC_MAP_MANY_MAX; i++)
			e[i] = (struct sto_sc_map_ent){ .target = 1, .ino = INO + 2, .idx = i };
		struct sto_sc_map_many_req q = { .region = 1, .n = STO_SC_MAP_MANY_MAX + 1, .e = e };
		struct buf pl, resp;
		buf_init(&pl);
		buf_init(&resp);
		assert_int_equal(sto_sc_map_many_req_encode(&pl, &q), 0);
		struct rpc_call call = { .type = STO_MSG_SC_MAP_MANY, .payload = pl.data,
					 .payload_len = (uint32_t)pl.len, .timeout_ms = 5000 };
		assert_int_equal(rpc_call(p, &call, &resp, NULL), -E2BIG);
		struct rpc_error re;
		if (resp.len && !rpc_error_decode(resp.data, resp.len, &re)) {
			print_message("too many: %.*s\n", (int)re.text_len, (const char *)re.text);
			assert_non_null(memmem(re.text, re.text_len, "at most 256", 11));
		}
		buf_fini(&pl);
		buf_fini(&resp);
		free(e);
		rpc_client_free(rc);
		/* Groups (CFS_SC_MAP_MANY=4): 12 new chunks, then the 2 absent
		 * ones, in requests of at most 4: 4 requests, no single map. */
		setenv("CFS_SC_MAP_MANY", "4", 1);
		struct storage_client *c1 = cl;
		cl = stor_cluster_client();
		setenv("CFS_SC_MAP_MANY", "0", 1);
		mm_write(200);
		clock_sleep_ms(300);
		storage_client_get_stats(cl, &st0);
		uint64_t got = mm_batch(200);
		storage_client_get_stats(cl, &st);
		print_message("map_many groups of 4: %llu of %d short-circuit, %llu SC_MAP_MANY, "
			      "%llu SC_MAP\n", (unsigned long long)got, MM_CH,
			      (unsigned long long)(st.sc_map_many - st0.sc_map_many),
			      (unsigned long long)(st.sc_map_rpcs - st0.sc_map_rpcs));
		assert_int_equal(st.sc_map_many - st0.sc_map_many, (MM_CH + 3) / 4 + 1);
		assert_int_equal(st.sc_map_rpcs, st0.sc_map_rpcs);
		mm_until_all(200);
		storage_client_free(cl);
		cl = c1;
	}
	teardown(&sc);
}

static void test_map_many(void **state)
{
	(void)state;
	map_many_run(false);
}

static void test_map_many_old(void **state)
{
	(void)state;
	map_many_run(true);
}

/* ---- the engine's hooks ---- */

static int hooked[8];

static void hook(void *arg, struct chunk_engine *e, struct chunk_id id)
{
	(void)arg;
	(void)e;
	if (id.ino == 5 && id.idx < 8)
		hooked[id.idx]++;
}

static int publish(void *arg, const struct chunk_meta *m)
{
	(*(int *)arg)++;
	return m->len ? 0 : -EINVAL;
}

static int map(struct chunk_engine *e, uint32_t idx, int *published)
{
	struct chunk_meta meta;
	int fd;
	uint64_t boff;
	char path[1024];
	int rc = chunk_engine_sc_map(e, (struct chunk_id){ 5, idx }, publish, published, &meta, &fd,
				     &boff, path, sizeof(path));
	if (!rc) {
		assert_true(fd >= 0);
		assert_true(strstr(path, "/data/c") != NULL);
		chunk_meta_fini(&meta);
	}
	return rc;
}

static void test_engine_hooks(void **state)
{
	(void)state;
	char dir[] = "/tmp/cfs-shortrd-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct chunk_engine_cfg cfg;
	chunk_engine_cfg_default(&cfg);
	cfg.dir = dir;
	cfg.sync = 0;
	cfg.compact_interval_ms = 0;
	cfg.compact_threshold = 0.9;
	cfg.retire_ms = 60000; /* journals stay pending until the close */
	cfg.retire_max = 100000;
	cfg.meta_map_bytes = 64ull << 20;
	struct chunk_engine *e;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	chunk_engine_set_mut_hook(e, hook, NULL);
	uint8_t *buf = calloc(1, 64 << 10);
	/* Two allocation groups (256 blocks each) of 64 KiB chunks. */
	for (uint32_t i = 0; i < 300; i++)
		assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, i }, 0, 64 << 10, buf, 0,
						    0, NULL),
				 0);
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(hooked[i], 1); /* each write took the lock once */
	int published = 0;
	assert_int_equal(map(e, 7, &published), 0);
	assert_int_equal(published, 1);
	assert_int_equal(map(e, 999, &published), -ENOENT);
	/* A small overwrite is journaled: the hook runs, and while the
	 * journal is in the metadata no mapping is made. */
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 7 }, 4096, 4096, buf, 0, 0,
					    NULL),
			 0);
	assert_int_equal(hooked[7], 2);
	assert_int_equal(map(e, 7, &published), -EBUSY);
	/* Removes run it: the first group keeps chunk 0 only ... */
	assert_int_equal(chunk_engine_remove(e, 5, 1, 256), 255);
	for (uint32_t i = 1; i < 7; i++)
		assert_int_equal(hooked[i], 2);
	assert_int_equal(hooked[7], 3);
	/* ... so compaction moves chunk 0, running the hook first. */
	assert_int_equal(map(e, 0, &published), 0);
	int before = hooked[0];
	int moved = chunk_engine_compact(e);
	print_message("compaction moved %d chunks\n", moved);
	assert_true(moved >= 1);
	assert_true(hooked[0] > before);
	chunk_engine_close(e);
	free(buf);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* e.g. test_short_read test_kill9 */
	/* Short-circuit reads on for every client of every test, set before
	 * any thread runs: setenv and unsetenv may move the environment
	 * under another thread's getenv (a connection's, rpc_conn.c). */
	setenv("CFS_SHORT_READ", "1", 1);
	setenv("CFS_TEST_SC_SLOTS", "0", 1); /* test_evict changes only its value */
	/* test_key_cap changes only its value; one set outside runs every
	 * test before it with that bound (a stress of the key eviction) */
	setenv("CFS_TEST_SC_KEYS", "0", 0);
	setenv("CFS_TEST_SC_NO_MANY", "0", 1); /* test_map_many_old changes only its value */
	setenv("CFS_SC_MAP_MANY", "0", 1);     /* (off by default) map_many_run turns it on */
	setenv("CFS_TEST_SC_LEASE_MS", "0", 1); /* test_kill9_fast changes only its value */
	setenv("CFS_TEST_SC_LEGACY", "0", 1);   /* test_kill9_legacy changes only its value */
	stor_cluster_id();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_engine_hooks),
		cmocka_unit_test(test_race),
		cmocka_unit_test(test_kill9),
		cmocka_unit_test(test_kill9_idle),
		cmocka_unit_test(test_kill9_fast),
		cmocka_unit_test(test_kill9_legacy),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_chain_corrupt),
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_evict),
		cmocka_unit_test(test_key_cap),
		cmocka_unit_test(test_map_many),
		cmocka_unit_test(test_map_many_old),
		cmocka_unit_test(test_cached),
		cmocka_unit_test(test_cached_cold),
	};
	/* The cached mode keeps a chunk's async reads on one replica, so
	 * they do not reach the other copies (chain_corrupt's premise). */
	const struct CMUnitTest cached[] = {
		cmocka_unit_test(test_race),    cmocka_unit_test(test_kill9),
		cmocka_unit_test(test_kill9_fast), cmocka_unit_test(test_kill9_legacy),
		cmocka_unit_test(test_corrupt), cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_evict),   cmocka_unit_test(test_key_cap),
		cmocka_unit_test(test_cached),
		cmocka_unit_test(test_cached_cold),
	};
	/* With a short hold-off (test_short_read_reclaim). */
	const struct CMUnitTest reclaim[] = {
		cmocka_unit_test(test_old_table),
		cmocka_unit_test(test_holdoff),
		cmocka_unit_test(test_conn_dropped),
		cmocka_unit_test(test_restarts),
	};
	/* Each case starts its own service and client (ports leased per
	 * machine, so the workers never share one): two at a time overlap
	 * one's waits (leases, restarts, hold-offs) with the other's work. */
#define RUN(t) case_workers_run(#t, t, sizeof(t) / sizeof(t[0]), 2, argc > 1)
	int rc = getenv("CFS_TEST_SC_OFF_MS") ? RUN(reclaim)
	         : cached_mode()              ? RUN(cached)
	                                      : RUN(tests);
#undef RUN
	testenv_cleanup();
	return rc;
}
