/* test_integ_bigdir.c - a directory of 100,000 entries through a real
 * mount started by `chainfs up` (issue 7's POSIX suite; its own program so
 * ctest runs it beside the others: it takes about two minutes here).
 *
 * Each create costs about 1.1 ms on this 2-core machine: the kernel holds
 * the directory lock across a create, so creates in one directory reach
 * the mount one at a time, and each is a negative lookup, a create and a
 * session close, two of them durable meta transactions. Creates from 8
 * threads still overlap the round trips the kernel does not serialise.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "integ_env.h"
#include "testenv.h"

static struct integ env;

static void p(const char *rel, char *out)
{
	integ_path(&env, rel, out, 1024);
}

/* Creators of test_bigdir: thread T makes entries T, T + N, T + 2N, ... */
#define BIGDIR_THREADS 8
struct bigdir_job {
	const char *dir;
	int first, want;
	pthread_t th;
	int failed; /* the entry index whose create failed + 1 */
};

static void *bigdir_creator(void *arg)
{
	struct bigdir_job *j = arg;
	char f[1200];
	for (int i = j->first; i < j->want && !j->failed; i += BIGDIR_THREADS) {
		snprintf(f, sizeof(f), "%s/entry-%06d", j->dir, i);
		int fd = open(f, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			j->failed = i + 1;
		else
			close(fd);
	}
	return NULL;
}

/* A directory of 100,000 files (10,000 in sanitizer builds; see
 * CMakeLists.txt; CFS_INTEG_BIGDIR=N for another size),
 * made by 8 threads at once, as a data loader's workers would. Then one
 * readdir pass must list every entry exactly once, as a regular file. */
static void test_bigdir(void **state)
{
	char d[1024];
	int want = CFS_BIGDIR_ENTRIES;
	const char *env_n = getenv("CFS_INTEG_BIGDIR");
	if (env_n && atoi(env_n) > 0)
		want = atoi(env_n);
	p("bigdir", d);
	assert_int_equal(mkdir(d, 0755), 0);
	uint64_t t0 = clock_mono_ms();
	struct bigdir_job jobs[BIGDIR_THREADS];
	for (int t = 0; t < BIGDIR_THREADS; t++) {
		jobs[t] = (struct bigdir_job){ .dir = d, .first = t, .want = want };
		assert_int_equal(pthread_create(&jobs[t].th, NULL, bigdir_creator, &jobs[t]), 0);
	}
	for (int t = 0; t < BIGDIR_THREADS; t++) {
		pthread_join(jobs[t].th, NULL);
		if (jobs[t].failed)
			print_message("create of entry %d failed\n", jobs[t].failed - 1);
		assert_int_equal(jobs[t].failed, 0);
	}
	print_message("bigdir: %d creates in %llu ms\n", want,
		      (unsigned long long)(clock_mono_ms() - t0));
	uint8_t *seen = calloc((size_t)want, 1);
	assert_non_null(seen);
	DIR *dir = opendir(d);
	assert_non_null(dir);
	int n = 0, dots = 0;
	for (struct dirent *de; (de = readdir(dir));) {
		int k;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) {
			dots++;
			continue;
		}
		assert_int_equal(sscanf(de->d_name, "entry-%d", &k), 1);
		assert_true(k >= 0 && k < want);
		assert_int_equal(seen[k], 0);
		seen[k] = 1;
		assert_int_equal(de->d_type, DT_REG);
		n++;
	}
	closedir(dir);
	free(seen);
	assert_int_equal(dots, 2);
	assert_int_equal(n, want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bigdir),
	};
	return integ_main(&env, "integ-bigdir", tests, sizeof(tests) / sizeof(tests[0]));
}
