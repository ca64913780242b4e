/* test_integ_fuseuring.c - a mount serving its FUSE requests over io_uring
 * (`chainfs mount --fuse-uring`, src/fuse/fuse_uring.h), started beside
 * the cluster's own mount with the fuse module's enable_uring set to Y
 * (the previous value is restored at exit):
 * - the mount says it serves over the ring, and at unmount that it
 *   answered requests there; reads and writes at random offsets (also from
 *   several threads at once), creates, renames, unlinks, a directory
 *   listing and a large sequential file match the local disk (the oracle),
 *   also as seen through the cluster's other mount;
 * - kill -9 of the mount with ring requests in flight: the readers fail
 *   instead of hanging, and a new --fuse-uring mount on the same point
 *   serves the same bytes.
 * Skipped where the kernel has no FUSE over io_uring or the parameter
 * cannot be written.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "integ_env.h"
#include "testenv.h"

#define PARAM    "/sys/module/fuse/parameters/enable_uring"
#define RAND_LEN (8u << 20)
#define SEQ_LEN  ((48u << 20) + 4321)
#define NFILES   120

static struct integ env;
static char saved_param = 0; /* 'Y'/'N' before the test changed it; 0: unchanged */

static void restore_param(void)
{
	if (!saved_param)
		return;
	int fd = open(PARAM, O_WRONLY);
	if (fd >= 0) {
		if (write(fd, &saved_param, 1) != 1)
			perror(PARAM);
		close(fd);
	}
	saved_param = 0;
}

/* Sets enable_uring=Y, or skips the test when that is not possible. */
static void enable_uring(void)
{
	char cur = 0;
	int fd = open(PARAM, O_RDONLY);
	if (fd < 0 || read(fd, &cur, 1) != 1) {
		if (fd >= 0)
			close(fd);
		fprintf(stderr, "no %s: the kernel has no FUSE over io_uring\n", PARAM);
		skip();
	}
	close(fd);
	fd = open(PARAM, O_WRONLY);
	if (fd < 0 || write(fd, "Y", 1) != 1) {
		if (fd >= 0)
			close(fd);
		fprintf(stderr, "cannot write %s: %s\n", PARAM, strerror(errno));
		skip();
	}
	close(fd);
	if (!saved_param) {
		saved_param = cur;
		atexit(restore_param);
	}
}

/* Occurrences of NEEDLE in DIR/mount2.log, and the number after the last
 * one in *NUM_BEFORE (the count "N requests served" ends with). */
static int log_count(const char *needle, unsigned long long *num_before)
{
	char path[700], line[2048];
	snprintf(path, sizeof(path), "%s/mount2.log", env.dir);
	FILE *f = fopen(path, "r");
	int n = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, needle);
		if (!p)
			continue;
		n++;
		if (num_before) {
			/* the number right before NEEDLE */
			char *q = p;
			while (q > line && q[-1] == ' ')
				q--;
			while (q > line && q[-1] >= '0' && q[-1] <= '9')
				q--;
			*num_before = strtoull(q, NULL, 10);
		}
	}
	if (f)
		fclose(f);
	return n;
}

/* Waits (INIT comes after the mount is visible) until the mount logged
 * that it serves over the ring for the WANT-th time. */
static void wait_serving(int want)
{
	for (int i = 0; i < 1000 && log_count("serving over io_uring", NULL) < want; i++) {
		struct stat st;
		char p[700];
		snprintf(p, sizeof(p), "%s/mnt2", env.dir);
		stat(p, &st); /* a request makes the kernel send INIT if not yet */
		clock_sleep_ms(20);
	}
	assert_int_equal(log_count("serving over io_uring", NULL), want);
}

static void pwrite_all(int fd, const void *b, size_t n, off_t off)
{
	assert_int_equal(pwrite(fd, b, n, off), (ssize_t)n);
}

static void same_range(int a, int b, off_t off, size_t n)
{
	char *x = malloc(n), *y = malloc(n);
	assert_non_null(x);
	assert_non_null(y);
	ssize_t ra = pread(a, x, n, off), rb = pread(b, y, n, off);
	assert_int_equal(ra, rb);
	assert_true(ra >= 0);
	assert_memory_equal(x, y, (size_t)ra);
	free(x);
	free(y);
}

struct rd {
	const char *path;
	const uint8_t *want;
	unsigned seed;
	int bad;
	int n;
};

/* Random reads from one thread, each checked against WANT. */
static void *reader(void *arg)
{
	struct rd *r = arg;
	int fd = open(r->path, O_RDONLY);
	char buf[65536];
	if (fd < 0) {
		r->bad++;
		return NULL;
	}
	uint64_t until = clock_mono_ms() + 1500;
	while (clock_mono_ms() < until) {
		size_t len = 1 + rand_r(&r->seed) % sizeof(buf);
		off_t off = rand_r(&r->seed) % (RAND_LEN - len);
		if (pread(fd, buf, len, off) != (ssize_t)len || memcmp(buf, r->want + off, len))
			r->bad++;
		r->n++;
	}
	close(fd);
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names in DIR, joined by '/'. */
static void listing(const char *dir, char *out, size_t cap)
{
	char *names[2 * NFILES + 8];
	int n = 0;
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		assert_true(n < (int)(sizeof(names) / sizeof(names[0])));
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
	size_t used = 0;
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		used += (size_t)snprintf(out + used, cap - used, "%s/", names[i]);
		assert_true(used < cap);
		free(names[i]);
	}
}

static void both(const char *mnt, const char *orc, const char *rel, char *m, char *o)
{
	snprintf(m, 800, "%s/%s", mnt, rel);
	snprintf(o, 800, "%s/%s", orc, rel);
}

static void test_ring_matches_disk(void **state)
{
	(void)state;
	enable_uring();
	char mnt2[600], orc[600], m[800], o[800];
	pid_t pid = integ_mount2_start_args(&env, mnt2, sizeof(mnt2), "--fuse-uring");
	wait_serving(1);
	snprintf(orc, sizeof(orc), "%s/oracle", env.dir);
	assert_int_equal(mkdir(orc, 0755), 0);
	char mw[700];
	snprintf(mw, sizeof(mw), "%s/w", mnt2);
	assert_int_equal(mkdir(mw, 0755), 0);

	/* random-offset writes, checked by reads as they go */
	unsigned seed = 12345;
	both(mw, orc, "rand", m, o);
	int fm = open(m, O_RDWR | O_CREAT, 0644), fo = open(o, O_RDWR | O_CREAT, 0644);
	assert_true(fm >= 0 && fo >= 0);
	uint8_t *buf = malloc(128 << 10);
	assert_non_null(buf);
	for (int i = 0; i < 300; i++) {
		size_t len = 1 + rand_r(&seed) % (128 << 10);
		off_t off = rand_r(&seed) % (RAND_LEN - len);
		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)rand_r(&seed);
		pwrite_all(fm, buf, len, off);
		pwrite_all(fo, buf, len, off);
		if (i % 10 == 9) {
			size_t rl = 1 + rand_r(&seed) % (128 << 10);
			same_range(fm, fo, rand_r(&seed) % RAND_LEN, rl);
		}
	}
	assert_int_equal(ftruncate(fo, RAND_LEN), 0);
	assert_int_equal(ftruncate(fm, RAND_LEN), 0);
	same_range(fm, fo, 0, RAND_LEN);
	close(fm);

	/* several threads reading at once: replies from many threads, over
	 * both queues */
	uint8_t *want = malloc(RAND_LEN);
	assert_non_null(want);
	assert_int_equal(pread(fo, want, RAND_LEN, 0), (ssize_t)RAND_LEN);
	close(fo);
	pthread_t th[4];
	struct rd rds[4];
	for (int i = 0; i < 4; i++) {
		rds[i] = (struct rd){m, want, 7u + (unsigned)i, 0, 0};
		assert_int_equal(pthread_create(&th[i], NULL, reader, &rds[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(rds[i].bad, 0);
		assert_true(rds[i].n > 0);
	}
	free(want);

	/* creates, renames, unlinks, a subdirectory */
	both(mw, orc, "sub", m, o);
	assert_int_equal(mkdir(m, 0755), 0);
	assert_int_equal(mkdir(o, 0755), 0);
	for (int i = 0; i < NFILES; i++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "f%03d", i);
		both(mw, orc, rel, m, o);
		for (int side = 0; side < 2; side++) {
			int fd = open(side ? o : m, O_WRONLY | O_CREAT | O_EXCL, 0644);
			assert_true(fd >= 0);
			memset(buf, 'a' + i % 26, (size_t)i * 37);
			pwrite_all(fd, buf, (size_t)i * 37, 0);
			close(fd);
		}
	}
	for (int i = 0; i < NFILES; i++) {
		char rel[64], rel2[64], m2p[800], o2p[800];
		snprintf(rel, sizeof(rel), "f%03d", i);
		both(mw, orc, rel, m, o);
		if (i % 5 == 0) {
			assert_int_equal(unlink(m), 0);
			assert_int_equal(unlink(o), 0);
		} else if (i % 3 == 0) {
			if (i % 2)
				snprintf(rel2, sizeof(rel2), "sub/r%03d", i);
			else
				snprintf(rel2, sizeof(rel2), "r%03d", i);
			both(mw, orc, rel2, m2p, o2p);
			assert_int_equal(rename(m, m2p), 0);
			assert_int_equal(rename(o, o2p), 0);
		}
	}
	char lm[8192], lo[8192];
	listing(mw, lm, sizeof(lm));
	listing(orc, lo, sizeof(lo));
	assert_string_equal(lm, lo);
	both(mw, orc, "sub", m, o);
	listing(m, lm, sizeof(lm));
	listing(o, lo, sizeof(lo));
	assert_string_equal(lm, lo);
	for (int i = 1; i < NFILES; i += 7) {
		char rel[64];
		if (i % 5 == 0)
			continue;
		if (i % 3)
			snprintf(rel, sizeof(rel), "f%03d", i);
		else if (i % 2)
			snprintf(rel, sizeof(rel), "sub/r%03d", i);
		else
			snprintf(rel, sizeof(rel), "r%03d", i);
		both(mw, orc, rel, m, o);
		int a = open(m, O_RDONLY), b = open(o, O_RDONLY);
		assert_true(a >= 0 && b >= 0);
		same_range(a, b, 0, (size_t)NFILES * 37);
		close(a);
		close(b);
	}

	/* a large sequential file in 1 MiB writes */
	both(mw, orc, "seq", m, o);
	fm = open(m, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fm >= 0 && fo >= 0);
	for (off_t off = 0; off < SEQ_LEN; off += 128 << 10) {
		size_t len = SEQ_LEN - off < (128u << 10) ? SEQ_LEN - off : 128u << 10;
		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)(off / 4096 + k * 7);
		pwrite_all(fm, buf, len, off);
		pwrite_all(fo, buf, len, off);
	}
	assert_int_equal(fsync(fm), 0);
	close(fm);
	close(fo);
	assert_true(integ_file_crc(o) >= 0);
	assert_int_equal(integ_file_crc(m), integ_file_crc(o));
	free(buf);

	integ_mount2_stop(&pid);
	unsigned long long served = 0;
	assert_int_equal(log_count("requests served over the ring", &served), 1);
	fprintf(stderr, "requests served over the ring: %llu\n", served);
	assert_true(served > 1000);
	/* the cluster's own mount (over /dev/fuse) sees the same bytes */
	integ_path(&env, "w/seq", m, sizeof(m));
	assert_int_equal(integ_file_crc(m), integ_file_crc(o));
	integ_path(&env, "w/rand", m, sizeof(m));
	snprintf(o, sizeof(o), "%s/rand", orc);
	assert_int_equal(integ_file_crc(m), integ_file_crc(o));
}

static void test_ring_kill9_restart(void **state)
{
	(void)state;
	enable_uring();
	char mnt2[600], m[700], o[700];
	pid_t pid = integ_mount2_start_args(&env, mnt2, sizeof(mnt2), "--fuse-uring");
	wait_serving(2);
	snprintf(m, sizeof(m), "%s/w/seq", mnt2);
	snprintf(o, sizeof(o), "%s/oracle/seq", env.dir);
	/* readers in child processes: a request of theirs is in flight over
	 * the ring when the mount dies */
	pid_t kids[4];
	for (int i = 0; i < 4; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			int fd = open(m, O_RDONLY);
			char b[65536];
			unsigned s = (unsigned)i;
			uint64_t until = clock_mono_ms() + 20000;
			while (fd >= 0 && clock_mono_ms() < until)
				if (pread(fd, b, sizeof(b), rand_r(&s) % (SEQ_LEN - sizeof(b))) < 0)
					_exit(0); /* the mount went away: what we wait for */
			_exit(fd < 0 ? 2 : 1);
		}
	}
	clock_sleep_ms(500);
	assert_int_equal(kill(pid, SIGKILL), 0);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	/* no reader hangs: each gets an error well before its 20 s end */
	uint64_t until = clock_mono_ms() + 15000;
	for (int i = 0; i < 4; i++) {
		pid_t r = 0;
		while ((r = waitpid(kids[i], &st, WNOHANG)) == 0 && clock_mono_ms() < until)
			clock_sleep_ms(20);
		if (r == 0) {
			for (int k = i; k < 4; k++)
				kill(kids[k], SIGKILL);
			fail_msg("reader %d still blocked 15 s after kill -9 of the mount", i);
		}
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	/* the dead mount's point: detach it, mount again over the ring */
	assert_int_equal(umount2(mnt2, MNT_DETACH), 0);
	pid = integ_mount2_start_args(&env, mnt2, sizeof(mnt2), "--fuse-uring");
	wait_serving(3);
	assert_int_equal(integ_file_crc(m), integ_file_crc(o));
	integ_mount2_stop(&pid);
	unsigned long long served = 0;
	assert_int_equal(log_count("requests served over the ring", &served), 2);
	assert_true(served > 0);
	restore_param();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ring_matches_disk),
	    cmocka_unit_test(test_ring_kill9_restart),
	};
	return integ_main(&env, "fuseuring", tests, sizeof(tests) / sizeof(tests[0]));
}
