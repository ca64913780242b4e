/* test_integ_truncate.c - truncate, O_TRUNC and statfs through a real mount.
 *
 * These operations need the meta service to reach storage (removing and
 * shortening chunks, capacity for statfs), so they live apart from the
 * POSIX suite. Covered: ftruncate shrinking across chunk boundaries (the
 * kept bytes survive, the cut ones read as zeros once the file grows
 * again), extending (reads zeros), truncate(2) by path, open with O_TRUNC
 * of a file written by this client and still open elsewhere, and statfs
 * (capacity reported, name length 255).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "integ_env.h"

static struct integ env;

static void fill(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 7 + 1);
}

static void test_ftruncate(void **state)
{
	char f[1024];
	const size_t n = (3u << 20) + 500; /* 4 chunks of 1 MiB */
	uint8_t *data = malloc(n), *back = malloc(n);
	assert_true(data && back);
	fill(data, n);
	integ_path(&env, "trunc", f, sizeof(f));
	int fd = open(f, O_CREAT | O_RDWR, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, n, 0), (ssize_t)n);
	/* Shrink into the second chunk. */
	const off_t cut = (1 << 20) + 1000;
	assert_int_equal(ftruncate(fd, cut), 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((long long)st.st_size, (long long)cut);
	assert_int_equal(pread(fd, back, n, 0), (ssize_t)cut);
	assert_memory_equal(back, data, (size_t)cut);
	/* Grow again: everything past the cut reads as zeros. */
	assert_int_equal(ftruncate(fd, (off_t)n), 0);
	assert_int_equal(pread(fd, back, n, 0), (ssize_t)n);
	assert_memory_equal(back, data, (size_t)cut);
	for (size_t i = (size_t)cut; i < n; i++)
		if (back[i]) {
			fprintf(stderr, "byte %zu is %u after shrink and grow\n", i, back[i]);
			fail();
		}
	/* And writing past the end after a truncate lands where it should. */
	assert_int_equal(ftruncate(fd, 10), 0);
	assert_int_equal(pwrite(fd, "tail", 4, 20), 4);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((long long)st.st_size, 24);
	assert_int_equal(pread(fd, back, 100, 0), 24);
	assert_memory_equal(back, data, 10);
	assert_memory_equal(back + 20, "tail", 4);
	assert_int_equal(close(fd), 0);
	assert_int_equal(truncate(f, 5), 0);
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal((long long)st.st_size, 5);
	free(data);
	free(back);
}

static void test_o_trunc(void **state)
{
	char f[1024], buf[64];
	integ_path(&env, "otrunc", f, sizeof(f));
	int fd = open(f, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	assert_int_equal(close(fd), 0);
	int keep = open(f, O_RDONLY);
	assert_true(keep >= 0);
	fd = open(f, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "ab", 2), 2);
	assert_int_equal(close(fd), 0);
	assert_int_equal(pread(keep, buf, sizeof(buf), 0), 2);
	assert_memory_equal(buf, "ab", 2);
	close(keep);
	/* The shell's `>` on an existing file. */
	fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(close(fd), 0);
	struct stat st;
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal((long long)st.st_size, 0);
}

static void test_statfs(void **state)
{
	struct statvfs sv;
	assert_int_equal(statvfs(env.mnt, &sv), 0);
	assert_true(sv.f_blocks > 0);
	assert_true(sv.f_bfree <= sv.f_blocks);
	assert_int_equal((int)sv.f_namemax, 255);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ftruncate),
	    cmocka_unit_test(test_o_trunc),
	    cmocka_unit_test(test_statfs),
	};
	return integ_main(&env, "integ-trunc", tests, sizeof(tests) / sizeof(tests[0]));
}
