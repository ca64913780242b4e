/* test_storage_shm_combined.c - combined reads over shared memory
 * (storage_client.c "read combining", sc_shm.h): concurrent small reads
 * to one same-host service share read RPCs, and such a combined RPC goes
 * over shared memory like a lone read, its bytes copied out of the arena
 * into each caller's memory. A real `chainfs storage` on 127.0.0.1.
 *
 *   match   READERS threads read small ranges (single, and pairs of
 *           ranges in scattered memory; some run past a chunk's end) at
 *           random: every byte equals the model, every CRC matches the
 *           bytes; the counters show that reads were combined and that
 *           every read RPC but those sent before the arena was
 *           registered went over shared memory
 *   kill9   the service is SIGKILLed under the readers and restarted on
 *           its port: meanwhile reads fail with an error, never with
 *           wrong bytes; afterwards every read is right again and goes
 *           over shared memory (registered again on the new connection)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "stor_cluster.h"
#include "storage_client/storage_client.h"
#include "testenv.h"

#define NCH 4
#define CHLEN (1u << 20)
#define READERS 16
#define MAXLEN (16u << 10)

static uint8_t *model[NCH];
static uint32_t mlen[NCH];
static const char *addr;
static struct storage_client *cl;
static _Atomic int stop;

struct reader {
	pthread_t t;
	uint64_t seed;
	uint64_t ok, failed; /* reads right / failed with an error */
	int wrong;           /* a read returned bytes that are not the model's */
};

static struct reader readers[READERS]; /* the threads of readers_run */

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* What a read of [OFF, OFF+LEN) of chunk I returns. */
static int expect(int i, uint32_t off, uint32_t len)
{
	if (off >= mlen[i])
		return 0;
	return (int)(mlen[i] - off < len ? mlen[i] - off : len);
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	/* Two ranges apart in memory: a pair is scattered (no bounce). */
	uint8_t *buf = malloc(3 * (size_t)MAXLEN);
	while (buf && !atomic_load(&stop) && !r->wrong) {
		int nb = rnd(&r->seed) % 4 == 0 ? 2 : 1;
		struct storage_read rd[2];
		for (int q = 0; q < nb; q++) {
			int i = (int)(rnd(&r->seed) % NCH);
			uint32_t len = 1 + (uint32_t)(rnd(&r->seed) % MAXLEN);
			uint32_t off = (uint32_t)(rnd(&r->seed) % (mlen[i] + 2000));
			rd[q] = (struct storage_read){ .loc = { .addr = addr, .target = 1 }, .ino = 9,
						       .idx = (uint32_t)i, .off = off, .len = len,
						       .dst = buf + (size_t)q * 2 * MAXLEN };
			memset(rd[q].dst, 0xee, len);
		}
		if (storage_client_read(cl, rd, (size_t)nb, 0)) {
			r->failed++;
			continue;
		}
		for (int q = 0; q < nb; q++) {
			int i = (int)rd[q].idx, want = expect(i, rd[q].off, rd[q].len);
			if (rd[q].result < 0) {
				r->failed++;
				continue;
			}
			if (rd[q].result != want ||
			    (want > 0 && (memcmp(rd[q].dst, model[i] + rd[q].off, (size_t)want) ||
					  rd[q].crc != crc32c(0, rd[q].dst, (size_t)want)))) {
				print_message("wrong: idx %d off %u len %u got %d want %d\n", i,
					      rd[q].off, rd[q].len, rd[q].result, want);
				r->wrong = 1;
				break;
			}
			r->ok++;
		}
	}
	free(buf);
	return NULL;
}

static void readers_run(uint64_t seed, uint32_t ms)
{
	atomic_store(&stop, 0);
	for (int i = 0; i < READERS; i++) {
		memset(&readers[i], 0, sizeof(readers[i]));
		readers[i].seed = seed * 1000003u + (uint64_t)i + 1;
		assert_int_equal(pthread_create(&readers[i].t, NULL, reader_main, &readers[i]), 0);
	}
	clock_sleep_ms(ms);
}

static void readers_stop(uint64_t *ok, uint64_t *failed)
{
	atomic_store(&stop, 1);
	int wrong = 0;
	*ok = *failed = 0;
	for (int i = 0; i < READERS; i++) {
		pthread_join(readers[i].t, NULL);
		*ok += readers[i].ok;
		*failed += readers[i].failed;
		wrong |= readers[i].wrong;
	}
	assert_int_equal(wrong, 0);
}

static void setup_chunks(struct stor_cluster *sc, const char *tag)
{
	stor_cluster_init(sc, tag, 1, 1, 4000);
	stor_cluster_start_storage(sc, 0);
	addr = sc->node[0].addr;
	cl = stor_cluster_client();
	uint64_t s = 0x2545f4914f6cdd1dull;
	for (int i = 0; i < NCH; i++) {
		mlen[i] = i == 0 ? CHLEN : CHLEN / 2 + (uint32_t)(rnd(&s) % (CHLEN / 2));
		model[i] = malloc(CHLEN);
		assert_non_null(model[i]);
		for (uint32_t k = 0; k < mlen[i]; k++)
			model[i][k] = (uint8_t)rnd(&s);
		struct storage_loc loc = { .addr = addr, .target = 1 };
		assert_int_equal(storage_client_write(cl, &loc, 9, (uint32_t)i, 0, mlen[i], model[i],
						      0, NULL),
				 0);
	}
}

static void teardown_chunks(struct stor_cluster *sc)
{
	storage_client_free(cl);
	cl = NULL;
	for (int i = 0; i < NCH; i++)
		free(model[i]);
	stor_cluster_signal(sc, 0, SIGTERM);
	stor_cluster_fini(sc);
}

static void test_match(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup_chunks(&sc, "shm-comb");
	uint64_t ok, failed;
	readers_run(1, 1500);
	readers_stop(&ok, &failed);
	struct storage_client_stats st;
	storage_client_get_stats(cl, &st);
	print_message("%llu reads right, %llu failed; %llu RPCs carried %llu groups; "
		      "%llu over shared memory, %llu fallbacks, %llu quarantined\n",
		      (unsigned long long)ok, (unsigned long long)failed,
		      (unsigned long long)st.read_rpcs, (unsigned long long)st.read_groups,
		      (unsigned long long)st.shm_reads, (unsigned long long)st.shm_fallbacks,
		      (unsigned long long)st.shm_quarantined);
	assert_int_equal(failed, 0);
	assert_true(ok > 500);
	/* Reads were combined ... */
	assert_true(st.read_groups > st.read_rpcs);
	/* ... and every RPC but those sent before the registration came
	 * back went over shared memory, combined ones included. */
	assert_true(st.read_rpcs - st.shm_reads <= st.shm_fallbacks);
	assert_true(st.shm_fallbacks <= 2 * READERS);
	assert_int_equal(st.shm_quarantined, 0);
	teardown_chunks(&sc);
}

static void test_kill9(void **state)
{
	(void)state;
	struct stor_cluster sc;
	setup_chunks(&sc, "shm-comb-kill");
	uint64_t ok, failed;
	readers_run(2, 400);
	stor_cluster_signal(&sc, 0, SIGKILL);
	clock_sleep_ms(300);
	stor_cluster_start_storage(&sc, 0);
	clock_sleep_ms(300);
	readers_stop(&ok, &failed);
	print_message("killed and restarted: %llu reads right, %llu failed\n",
		      (unsigned long long)ok, (unsigned long long)failed);
	/* The restarted service serves: wait for one right read, then
	 * every read must be right, over shared memory again. */
	uint8_t *b = malloc(4096);
	struct storage_read one;
	uint64_t t0 = clock_mono_ms();
	do {
		one = (struct storage_read){ .loc = { .addr = addr, .target = 1 }, .ino = 9,
					     .idx = 0, .off = 0, .len = 4096, .dst = b };
		storage_client_read(cl, &one, 1, 0);
	} while (one.result != 4096 && clock_mono_ms() - t0 < 20000);
	assert_int_equal(one.result, 4096);
	assert_memory_equal(b, model[0], 4096);
	free(b);
	struct storage_client_stats st0, st;
	storage_client_get_stats(cl, &st0);
	readers_run(3, 1000);
	readers_stop(&ok, &failed);
	storage_client_get_stats(cl, &st);
	print_message("after the restart: %llu reads right, %llu failed, %llu of %llu RPCs "
		      "over shared memory\n",
		      (unsigned long long)ok, (unsigned long long)failed,
		      (unsigned long long)(st.shm_reads - st0.shm_reads),
		      (unsigned long long)(st.read_rpcs - st0.read_rpcs));
	assert_int_equal(failed, 0);
	assert_true(ok > 300);
	assert_true(st.shm_reads - st0.shm_reads + 2 * READERS >= st.read_rpcs - st0.read_rpcs);
	teardown_chunks(&sc);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_kill9),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
