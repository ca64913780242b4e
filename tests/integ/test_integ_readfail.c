/* test_integ_readfail.c - a storage service dies under readers: how long
 * does one read stall? (issue 12, replica avoidance)
 *
 * A 16 MiB file is written through the mount (the oracle is its known
 * pattern). Two reader threads then read 4 KiB blocks at random offsets
 * with O_DIRECT (each read reaches the mount process) and check every
 * byte. After a second of normal reads storage2, a replica of every
 * chain, is killed with SIGKILL; the readers go on for READ_AFTER_MS,
 * well inside mgmtd's heartbeat timeout, so the dead service is still
 * SERVING in the routing the whole time and only the storage client's
 * own reaction (retry on another replica at once, avoid the failed
 * server for a while) keeps reads moving. Asserts: no read fails or
 * returns wrong bytes, reads kept completing after the kill, and the
 * longest read after the kill is below STALL_BOUND_MS (it was about 2 s
 * when retries waited for the connect backoff to the dead server). The
 * median read latency before the kill is printed beside it.
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

#define FILE_MB 16
#define BLK 4096
#define READERS 2
#define READ_BEFORE_MS 1000
#define READ_AFTER_MS 4000
#define STALL_BOUND_MS 500
#define MAX_SAMPLES 200000

static struct integ env;

static _Atomic int phase; /* 0 before the kill, 1 after, 2 stop */

struct reader {
	pthread_t t;
	char path[1100];
	unsigned seed;
	uint32_t *lat_us[2]; /* per phase */
	size_t n[2];
	uint64_t max_us[2];
	int err;             /* first failure: -errno, or 1 for wrong bytes */
};

/* The byte at file offset OFF. */
static uint8_t pattern(uint64_t off)
{
	return (uint8_t)((off >> 12) * 131 + (off & 4095) * 7);
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	int fd = open(r->path, O_RDONLY | O_DIRECT);
	if (fd < 0) {
		r->err = -errno;
		return NULL;
	}
	void *buf = NULL;
	if (posix_memalign(&buf, BLK, BLK)) {
		r->err = -ENOMEM;
		close(fd);
		return NULL;
	}
	int ph;
	while ((ph = atomic_load(&phase)) < 2) {
		uint64_t off = (uint64_t)(rand_r(&r->seed) % (FILE_MB * 256)) * BLK;
		uint64_t t0 = clock_mono_ns();
		ssize_t got = pread(fd, buf, BLK, (off_t)off);
		uint64_t us = (clock_mono_ns() - t0) / 1000;
		if (got != BLK) {
			r->err = got < 0 ? -errno : -EIO;
			break;
		}
		for (int i = 0; i < BLK; i++)
			if (((uint8_t *)buf)[i] != pattern(off + (uint64_t)i)) {
				r->err = 1;
				break;
			}
		if (r->err)
			break;
		/* A read that started before the kill and ended after counts
		 * as after: it is the one that may have met the dead server. */
		int at = atomic_load(&phase) >= 1 ? 1 : ph;
		if (r->n[at] < MAX_SAMPLES)
			r->lat_us[at][r->n[at]++] = (uint32_t)us;
		if (us > r->max_us[at])
			r->max_us[at] = us;
	}
	free(buf);
	close(fd);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void test_kill9_storage_under_readers(void **state)
{
	(void)state;
	char path[1100];
	integ_path(&env, "readfail.dat", path, sizeof(path));
	size_t len = (size_t)FILE_MB << 20;
	uint8_t *data = malloc(len);
	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = pattern(i);
	integ_write_file(path, data, len);
	free(data);

	struct reader rd[READERS];
	memset(rd, 0, sizeof(rd));
	atomic_store(&phase, 0);
	for (int i = 0; i < READERS; i++) {
		snprintf(rd[i].path, sizeof(rd[i].path), "%s", path);
		rd[i].seed = 12345u + (unsigned)i;
		for (int p = 0; p < 2; p++) {
			rd[i].lat_us[p] = calloc(MAX_SAMPLES, sizeof(uint32_t));
			assert_non_null(rd[i].lat_us[p]);
		}
		assert_int_equal(pthread_create(&rd[i].t, NULL, reader_main, &rd[i]), 0);
	}
	clock_sleep_ms(READ_BEFORE_MS);
	int spid = integ_role_pid(&env, "storage2");
	assert_int_equal(kill(spid, SIGKILL), 0);
	atomic_store(&phase, 1);
	clock_sleep_ms(READ_AFTER_MS);
	atomic_store(&phase, 2);

	uint64_t max_after = 0;
	size_t n[2] = {0, 0};
	uint32_t *all[2];
	for (int p = 0; p < 2; p++) {
		all[p] = calloc((size_t)READERS * MAX_SAMPLES, sizeof(uint32_t));
		assert_non_null(all[p]);
	}
	int err = 0;
	for (int i = 0; i < READERS; i++) {
		pthread_join(rd[i].t, NULL);
		if (rd[i].err && !err)
			err = rd[i].err;
		if (rd[i].max_us[1] > max_after)
			max_after = rd[i].max_us[1];
		for (int p = 0; p < 2; p++) {
			memcpy(all[p] + n[p], rd[i].lat_us[p], rd[i].n[p] * sizeof(uint32_t));
			n[p] += rd[i].n[p];
			free(rd[i].lat_us[p]);
		}
	}
	for (int p = 0; p < 2; p++)
		qsort(all[p], n[p], sizeof(uint32_t), cmp_u32);
	fprintf(stderr,
		"readfail: before kill: %zu reads, median %u us, p99 %u us; after kill: %zu "
		"reads, median %u us, p99 %u us, longest %llu us (bound %d ms)\n",
		n[0], n[0] ? all[0][n[0] / 2] : 0, n[0] ? all[0][n[0] * 99 / 100] : 0, n[1],
		n[1] ? all[1][n[1] / 2] : 0, n[1] ? all[1][n[1] * 99 / 100] : 0,
		(unsigned long long)max_after, STALL_BOUND_MS);
	free(all[0]);
	free(all[1]);
	assert_int_equal(err, 0);
	assert_true(n[0] > 0);
	assert_true(n[1] > 10);
	assert_true(max_after < (uint64_t)STALL_BOUND_MS * 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill9_storage_under_readers),
	};
	return integ_main(&env, "integ-readfail", tests, sizeof(tests) / sizeof(tests[0]));
}
