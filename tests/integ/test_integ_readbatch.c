/* test_integ_readbatch.c - many small random reads at once through the
 * mount: combined into batched storage RPCs, checked byte for byte against
 * a copy on the local disk, also while a storage service dies (issue 12).
 *
 * A 24 MiB file of seeded random bytes is written through the mount and
 * the same bytes to a file in the test's directory on the local disk (the
 * oracle). READERS threads then read 4 KiB blocks at random offsets with
 * O_DIRECT (every read reaches the mount, and up to READERS are in flight
 * there at once) and compare each with pread of the oracle.
 *
 * test_batched_reads_match_local_disk: the reads of BATCH_MS are counted
 * against the requests the three storage services received meanwhile
 * (`chainfs admin rpc-stats`): fewer requests than reads means concurrent
 * reads to one service shared RPCs (storage_client.c "read combining").
 * The file was written with O_DIRECT, so the services' page-cache probes
 * miss and their small reads switch to O_DIRECT (chunk_engine.c
 * "page-cache reads"), one in eight still probed: both ways are read.
 *
 * test_kill9_storage_under_batched_reads: storage2 (a replica of every
 * chain) is killed with SIGKILL while the readers go on; for KILL_MS after
 * it every read returns the oracle's bytes or fails with a clear error
 * (EIO), never wrong bytes, and reads keep completing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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
#include "integ_env.h"
#include "testenv.h"

#define FILE_MB 24
#define BLK 4096
#define READERS 16
#define BATCH_MS 1500
#define BEFORE_KILL_MS 500
#define KILL_MS 3000

static struct integ env;
static char dat[1100], oracle[1100];

static _Atomic int stop;

struct reader {
	pthread_t t;
	unsigned seed;
	uint64_t ok;        /* reads that returned the oracle's bytes */
	uint64_t eio;       /* reads that failed with EIO */
	int err;            /* first other failure: -errno, or 1 for wrong bytes */
	uint64_t wrong_off; /* where the wrong bytes were */
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	int fd = open(dat, O_RDONLY | O_DIRECT);
	int ofd = open(oracle, O_RDONLY);
	void *buf = NULL;
	uint8_t want[BLK];
	if (fd < 0 || ofd < 0 || posix_memalign(&buf, BLK, BLK)) {
		r->err = -EIO;
		goto out;
	}
	while (!atomic_load(&stop)) {
		uint64_t off = (uint64_t)(rand_r(&r->seed) % (FILE_MB * 256)) * BLK;
		ssize_t got = pread(fd, buf, BLK, (off_t)off);
		if (got < 0 && errno == EIO) {
			r->eio++;
			continue;
		}
		if (got != BLK) {
			r->err = got < 0 ? -errno : -EMSGSIZE;
			break;
		}
		if (pread(ofd, want, BLK, (off_t)off) != BLK) {
			r->err = -EIO;
			break;
		}
		if (memcmp(buf, want, BLK)) {
			r->err = 1;
			r->wrong_off = off;
			break;
		}
		r->ok++;
	}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	if (ofd >= 0)
		close(ofd);
	return NULL;
}

/* Requests storage service N (1-based) has received, from rpc-stats. */
static unsigned long long storage_requests(int n)
{
	char key[32];
	snprintf(key, sizeof(key), "storage%d_port", n);
	return integ_role_requests(&env, key);
}

static void readers_start(struct reader *rd, unsigned seed)
{
	atomic_store(&stop, 0);
	for (int i = 0; i < READERS; i++) {
		memset(&rd[i], 0, sizeof(rd[i]));
		rd[i].seed = seed + (unsigned)i;
		assert_int_equal(pthread_create(&rd[i].t, NULL, reader_main, &rd[i]), 0);
	}
}

/* Joins the readers; the sums of their counts; asserts none saw wrong
 * bytes or an unclear error. */
static void readers_stop(struct reader *rd, uint64_t *ok, uint64_t *eio)
{
	atomic_store(&stop, 1);
	*ok = *eio = 0;
	int err = 0;
	uint64_t wrong_off = 0;
	for (int i = 0; i < READERS; i++) {
		pthread_join(rd[i].t, NULL);
		*ok += rd[i].ok;
		*eio += rd[i].eio;
		if (rd[i].err && !err) {
			err = rd[i].err;
			wrong_off = rd[i].wrong_off;
		}
	}
	if (err == 1)
		fprintf(stderr, "readbatch: wrong bytes at offset %llu\n",
		        (unsigned long long)wrong_off);
	assert_int_equal(err, 0);
}

static void test_batched_reads_match_local_disk(void **state)
{
	(void)state;
	integ_path(&env, "readbatch.dat", dat, sizeof(dat));
	snprintf(oracle, sizeof(oracle), "%s/readbatch.oracle", env.dir);
	size_t len = (size_t)FILE_MB << 20;
	uint8_t *data = malloc(len);
	assert_non_null(data);
	unsigned seed = 20261203;
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(rand_r(&seed) >> 7);
	int fd = open(dat, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int ofd = open(oracle, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0 && ofd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(write(ofd, data, len), (ssize_t)len);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(close(fd), 0);
	assert_int_equal(close(ofd), 0);
	free(data);

	unsigned long long before = 0, after = 0;
	for (int n = 1; n <= 3; n++)
		before += storage_requests(n);
	struct reader rd[READERS];
	readers_start(rd, 777);
	clock_sleep_ms(BATCH_MS);
	uint64_t ok, eio;
	readers_stop(rd, &ok, &eio);
	for (int n = 1; n <= 3; n++)
		after += storage_requests(n);
	unsigned long long req = after - before;
	fprintf(stderr, "readbatch: %llu reads (%llu EIO) with %d readers, %llu storage requests\n",
	        (unsigned long long)ok, (unsigned long long)eio, READERS, req);
	assert_int_equal(eio, 0); /* every service is up: no read may fail */
	assert_true(ok > 200);
	/* The rpc-stats calls themselves are a handful of those requests. */
	assert_true(req < ok);
}

static void test_kill9_storage_under_batched_reads(void **state)
{
	(void)state;
	struct reader rd[READERS];
	readers_start(rd, 4242);
	clock_sleep_ms(BEFORE_KILL_MS);
	int spid = integ_role_pid(&env, "storage2");
	assert_true(spid > 0);
	assert_int_equal(kill(spid, SIGKILL), 0);
	uint64_t t0 = clock_mono_ms();
	clock_sleep_ms(KILL_MS);
	uint64_t ok, eio;
	readers_stop(rd, &ok, &eio);
	fprintf(stderr, "readbatch: storage2 killed; %llu reads right, %llu EIO in %llu ms\n",
	        (unsigned long long)ok, (unsigned long long)eio,
	        (unsigned long long)(clock_mono_ms() - t0 + BEFORE_KILL_MS));
	assert_true(ok > 100);        /* reads went on with two replicas */
	assert_true(eio * 10 <= ok);  /* a failure is rare (and never wrong bytes) */
	assert_true(integ_pid_alive(spid) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_batched_reads_match_local_disk),
	    cmocka_unit_test(test_kill9_storage_under_batched_reads),
	};
	return integ_main(&env, "integ-readbatch", tests, sizeof(tests) / sizeof(tests[0]));
}
