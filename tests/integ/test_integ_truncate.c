/* test_integ_truncate.c - truncate, O_TRUNC and statfs through a real mount.
 *
 * These operations need the meta service to reach storage (removing and
 * shortening chunks, capacity for statfs), so they live apart from the
 * POSIX suite. Covered: ftruncate shrinking across chunk boundaries (the
 * kept bytes survive, the cut ones read as zeros once the file grows
 * again), extending (reads zeros), truncate(2) by path, open with O_TRUNC
 * of a file written by this client and still open elsewhere, and statfs
 * (capacity reported, name length 255). A writer that goes on writing
 * after another mount's truncate it has not heard of: what it wrote past
 * the cut extends the file, also when it hears of the truncate before it
 * reports (meta_file.c "Length", file_io.c stale_len).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "integ_env.h"

static struct integ env;
static pid_t mount2_pid;
static char mnt2[600];

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

/* Opens with O_TRUNC of one file from several threads of one mount at
 * once: the kernel holds no inode lock over an open, so their truncates
 * are on meta together and their cuts may reach a chain's head in the
 * other order than their request seqs. Every open succeeds (with the
 * cuts' storage key on a channel per inode, the lower seq's was refused
 * as a late copy and the open failed with EIO). */
#define OTRUNC_THREADS 4
#define OTRUNC_ROUNDS  60

struct otrunc_arg {
	const char *path;
	int failed, err;
};

static void *otrunc_thread(void *p)
{
	struct otrunc_arg *a = p;
	for (int i = 0; i < OTRUNC_ROUNDS && !a->failed; i++) {
		int fd = open(a->path, O_WRONLY | O_TRUNC);
		if (fd < 0) {
			a->failed = 1;
			a->err = errno;
			break;
		}
		if (write(fd, "x", 1) != 1 || close(fd) != 0) {
			a->failed = 1;
			a->err = errno;
		}
	}
	return NULL;
}

static void test_o_trunc_concurrent(void **state)
{
	char f[1024];
	integ_path(&env, "otrunc-conc", f, sizeof(f));
	/* past the inline threshold: a file in chunks (it stays so) */
	const size_t n = 2u << 20;
	uint8_t *data = malloc(n);
	assert_non_null(data);
	fill(data, n);
	int fd = open(f, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
	free(data);
	pthread_t th[OTRUNC_THREADS];
	struct otrunc_arg a[OTRUNC_THREADS];
	for (int i = 0; i < OTRUNC_THREADS; i++) {
		a[i] = (struct otrunc_arg){.path = f};
		assert_int_equal(pthread_create(&th[i], NULL, otrunc_thread, &a[i]), 0);
	}
	int failed = 0;
	for (int i = 0; i < OTRUNC_THREADS; i++) {
		pthread_join(th[i], NULL);
		if (a[i].failed) {
			fprintf(stderr, "thread %d: %s\n", i, strerror(a[i].err));
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

static void test_statfs(void **state)
{
	struct statvfs sv;
	assert_int_equal(statvfs(env.mnt, &sv), 0);
	assert_true(sv.f_blocks > 0);
	assert_true(sv.f_bfree <= sv.f_blocks);
	assert_int_equal((int)sv.f_namemax, 255);
}

static void test_write_after_unheard_truncate(void **state)
{
	const size_t C = 1u << 20;
	char f[1024], f2[1024];
	uint8_t *data = malloc(2 * C), *back = malloc(3 * C + 100);
	assert_true(data && back);
	fill(data, 2 * C);
	mount2_pid = integ_mount2_start(&env, mnt2, sizeof(mnt2));
	integ_path(&env, "unheard", f, sizeof(f));
	snprintf(f2, sizeof(f2), "%s/unheard", mnt2);
	int fd = open(f, O_CREAT | O_RDWR, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, 2 * C, 0), (ssize_t)(2 * C));
	assert_int_equal(fsync(fd), 0);
	/* the other mount cuts to half a MiB; the writer, not told, writes
	 * 100 bytes at 3 MiB */
	assert_int_equal(truncate(f2, C / 2), 0);
	assert_int_equal(pwrite(fd, data + 7, 100, 3 * C), 100);
	/* it hears of the truncate before it reports: a read past the end it
	 * knows, once the attributes are older than the attr timeout (1 s),
	 * asks meta */
	usleep(1200 * 1000);
	assert_true(pread(fd, back, 16, 4 * C) >= 0);
	assert_int_equal(close(fd), 0);
	/* both mounts see 3 MiB + 100: the cut bytes as zeros, the new ones.
	 * The release's report may come from the mount's closer after
	 * close(2) returned, and each mount caches attributes for 1 s: poll
	 * (a loaded host), the size must come within 15 s and stay. */
	struct stat st;
	for (int i = 0; i < 150; i++) {
		assert_int_equal(stat(f2, &st), 0);
		if (st.st_size == (off_t)(3 * C + 100))
			break;
		usleep(100 * 1000);
	}
	assert_int_equal((long long)st.st_size, (long long)(3 * C + 100));
	for (int i = 0; i < 150; i++) {
		assert_int_equal(stat(f, &st), 0);
		if (st.st_size == (off_t)(3 * C + 100))
			break;
		usleep(100 * 1000);
	}
	assert_int_equal((long long)st.st_size, (long long)(3 * C + 100));
	fd = open(f2, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, back, 3 * C + 100, 0), (ssize_t)(3 * C + 100));
	assert_int_equal(close(fd), 0);
	assert_memory_equal(back, data, C / 2);
	for (size_t i = C / 2; i < 3 * C; i++)
		if (back[i]) {
			fail_msg("byte %zu is %u, not zero", i, back[i]);
			break;
		}
	assert_memory_equal(back + 3 * C, data + 7, 100);
	integ_mount2_stop(&mount2_pid);
	free(data);
	free(back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ftruncate),
	    cmocka_unit_test(test_o_trunc),
	    cmocka_unit_test(test_o_trunc_concurrent),
	    cmocka_unit_test(test_statfs),
	    cmocka_unit_test(test_write_after_unheard_truncate),
	};
	int rc = integ_main(&env, "integ-trunc", tests, sizeof(tests) / sizeof(tests[0]));
	integ_mount2_stop(&mount2_pid);
	return rc;
}
