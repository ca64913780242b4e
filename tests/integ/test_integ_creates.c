/* test_integ_creates.c - the create / close path through the mount (issue
 * 13; fuse_fs.c file_drop, fuse/closer.h, meta_close_many):
 * - create + close(2) of an empty file costs one meta request (the
 *   create); the session's end goes out later with others in one
 *   CLOSE_MANY. Asserted with meta's request counter (before the change:
 *   two per file, CREATE and CLOSE);
 * - the deferred closes land: fsck finds no write session left once the
 *   files are closed (also after a kill -9 of meta with closes queued);
 * - a second mount sees each file and its length right after close(2):
 *   empty, inline (<= 64 KiB) and chunked files, and a file written
 *   through a dup'd descriptor after the first close(2) flushed;
 * - locks taken on a created file go at close: the other mount gets them
 *   at once (POSIX: any close of the file; flock: the last close), also
 *   a lock taken through another descriptor when the create's own,
 *   never written, is closed (what rules out FOPEN_NOFLUSH for creates);
 * - kill -9 of meta right after creates returned: every file is there
 *   after `chainfs up` restarts it;
 * - 8 threads, each in its own directory, creating, writing, renaming and
 *   unlinking through the mount end with the same names and bytes as the
 *   same operations on the local disk (the oracle), seen from both mounts;
 * - a small chunked file read at random in tiny pieces (git's index-pack;
 *   file_io fetches it whole) returns the right bytes, a rewrite through
 *   the other mount is seen within the read-ahead staleness bound, and
 *   this mount's own write at once;
 * - creates in a directory another mount made cost one request each after
 *   the first (the mount lists the directory: DIRLIST, one or two pages),
 *   and a change by the other mount there is still seen within the
 *   dircache's bound; a create of a name it made fails with EEXIST.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "integ_env.h"
#include "testenv.h"

#define ATTR_BOUND_MS 1000 /* the mount's attr timeout: how long a cached size may stay */

static struct integ env;
static pid_t mount2_pid;
static char mnt2[600];

static void write_len(const char *path, size_t len)
{
	char *b = malloc(len ? len : 1);
	assert_non_null(b);
	for (size_t i = 0; i < len; i++)
		b[i] = (char)('a' + i % 23);
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
	assert_true(fd >= 0);
	if (len)
		assert_int_equal(write(fd, b, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	free(b);
}

static void expect_size(const char *path, off_t len)
{
	struct stat st;
	if (stat(path, &st) != 0)
		fail_msg("%s: %s", path, strerror(errno));
	if (st.st_size != len)
		fail_msg("%s: size %lld, expected %lld", path, (long long)st.st_size,
		         (long long)len);
}

/* Write sessions left in meta, from `chainfs fsck` (it reads the KV while
 * the cluster runs); polled up to 10 s for SESSIONS (the closes are
 * deferred by design, and after a meta restart they wait for it). */
static unsigned long long sessions_become(unsigned long long want)
{
	char log[700], line[1024];
	snprintf(log, sizeof(log), "%s/fsck-sessions.out", env.dir);
	unsigned long long s = ~0ull;
	for (int i = 0; i < 20; i++) {
		s = (unsigned long long)integ_fsck_sessions(&env);
		if (s == want)
			break;
		clock_sleep_ms(500);
	}
	if (s != want) { /* what fsck said, for the failure message */
		FILE *f = fopen(log, "r");
		while (f && fgets(line, sizeof(line), f))
			print_message("fsck: %s", line);
		if (f)
			fclose(f);
	}
	return s;
}

static void test_start_mount2(void **state)
{
	mount2_pid = integ_mount2_start(&env, mnt2, sizeof(mnt2));
}

/* Creates empty files DIR/f0 .. DIR/f(N-1): open(O_CREAT | O_EXCL) and
 * close(2) each. */
static void create_empty(const char *dir, int n)
{
	char p[800];
	for (int i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%s/f%d", dir, i);
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
		assert_true(fd >= 0);
		assert_int_equal(close(fd), 0);
	}
}

/* The most meta requests N creates + close(2) taking MS ms may cost: N
 * creates; a CLOSE_MANY per 48 sessions or per 50 ms window (fuse_fs.c
 * FUSEFS_CLOSE_WINDOW_MS), the directory polls of both mounts every
 * 100 ms, the rpc-stats call. Windows and polls run on their own clocks,
 * so a partial one at each end counts (a 43 ms loop once saw 210 against
 * a bound that rounded them down). One CREATE and one CLOSE per file
 * before: 2N, over this bound while the loop takes under ~9 s. */
static unsigned long long creates_bound(int n, uint64_t ms)
{
	return (unsigned long long)n + (unsigned long long)n / 48 + 1 + ms / 50 + 1 +
	       2 * (ms / 100 + 1) + 5;
}

static void test_create_close_costs_one_request(void **state)
{
	enum { N = 200 };
	char d[700], p[800];
	integ_path(&env, "c1", d, sizeof(d));
	assert_int_equal(mkdir(d, 0755), 0);
	uint64_t t0 = clock_mono_ns();
	unsigned long long before = integ_meta_requests(&env);
	create_empty(d, N);
	unsigned long long used = integ_meta_requests(&env) - before;
	/* the whole window of the two readings (integ_env.h) */
	uint64_t ms = (clock_mono_ns() - t0) / 1000000u;
	print_message("%llu meta requests for %d creates + close(2) in %llu ms\n", used, N,
	              (unsigned long long)ms);
	unsigned long long bound = creates_bound(N, ms);
	if (used > bound)
		fail_msg("%llu meta requests for %d creates + close in %llu ms (at most %llu)", used,
		         N, (unsigned long long)ms, bound);
	/* every file is there, empty, on the other mount too */
	for (int i = 0; i < N; i += 17) {
		snprintf(p, sizeof(p), "%s/c1/f%d", mnt2, i);
		expect_size(p, 0);
	}
	assert_int_equal(sessions_become(0), 0);
}

/* NAME's path on this mount (A) and on the second one (B), 800 bytes each. */
static void both_paths(const char *name, char *a, char *b)
{
	snprintf(a, 800, "%s/%s", env.mnt, name);
	snprintf(b, 800, "%s/%s", mnt2, name);
}

static void test_lengths_seen_after_close(void **state)
{
	static const size_t lens[] = { 0, 1, 4096, 65536, 65537, 300000 };
	char a[800], b[800];
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		snprintf(a, sizeof(a), "%s/len%zu", env.mnt, i);
		snprintf(b, sizeof(b), "%s/len%zu", mnt2, i);
		write_len(a, lens[i]);
		expect_size(b, (off_t)lens[i]);
		expect_size(a, (off_t)lens[i]);
	}
	/* a close(2) flushes, then the file grows through a dup'd descriptor:
	 * the last close reports the new length */
	both_paths("dup", a, b);
	int fd = open(a, O_CREAT | O_EXCL | O_WRONLY, 0644);
	assert_true(fd >= 0);
	int fd2 = dup(fd);
	assert_true(fd2 >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	assert_int_equal(close(fd), 0);
	expect_size(b, 10);
	char big[100000];
	memset(big, 'z', sizeof(big));
	assert_int_equal(write(fd2, big, sizeof(big)), (ssize_t)sizeof(big));
	assert_int_equal(close(fd2), 0);
	expect_size(a, 10 + (off_t)sizeof(big));
	clock_sleep_ms(ATTR_BOUND_MS + 200); /* mount 2's kernel cached size 10 */
	expect_size(b, 10 + (off_t)sizeof(big));
}

/* This process holds a write lock on the file; FB, the other mount's
 * descriptor of it, cannot take one until CLOSING is closed, and then
 * can at once (close(2) of any descriptor drops the process's POSIX
 * locks). Closes CLOSING, OTHER and FB. */
static void assert_close_drops_lock(int fb, int closing, int other)
{
	struct flock w = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	assert_int_equal(fcntl(fb, F_SETLK, &w), -1);
	assert_true(errno == EAGAIN || errno == EACCES);
	assert_int_equal(close(closing), 0);
	assert_int_equal(fcntl(fb, F_SETLK, &w), 0);
	w.l_type = F_UNLCK;
	assert_int_equal(fcntl(fb, F_SETLK, &w), 0);
	assert_int_equal(close(other), 0);
	assert_int_equal(close(fb), 0);
}

static void test_locks_dropped_at_close(void **state)
{
	char a[800], b[800];
	both_paths("lk", a, b);
	/* flock: goes with the last close of the description */
	int fa = open(a, O_CREAT | O_EXCL | O_RDWR, 0644);
	assert_true(fa >= 0);
	assert_int_equal(flock(fa, LOCK_EX | LOCK_NB), 0);
	int fb = open(b, O_RDWR);
	assert_true(fb >= 0);
	assert_int_equal(flock(fb, LOCK_EX | LOCK_NB), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	assert_int_equal(close(fa), 0);
	/* the kernel sends release after close(2) returned: a short bound */
	int got = -1;
	for (int i = 0; i < 200 && got != 0; i++) {
		got = flock(fb, LOCK_EX | LOCK_NB);
		if (got != 0)
			clock_sleep_ms(10);
	}
	assert_int_equal(got, 0);
	assert_int_equal(flock(fb, LOCK_UN), 0);
	/* POSIX: any close(2) of the file drops the process's locks, at once */
	fa = open(a, O_RDWR);
	assert_true(fa >= 0);
	int fa2 = open(a, O_RDONLY);
	assert_true(fa2 >= 0);
	struct flock w = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	assert_int_equal(fcntl(fa, F_SETLK, &w), 0);
	assert_close_drops_lock(fb, fa2, fa);
}

/* A create's handle carries no lock and, when nothing is written through
 * it, no length: skipping its FLUSH (FOPEN_NOFLUSH) looks free, but a
 * POSIX lock the process takes later through another descriptor must
 * still go when the create's descriptor is closed, and only FLUSH tells
 * the mount (fuse_fs.c op_flush "Why every close flushes"). */
static void test_create_fd_close_drops_other_fds_lock(void **state)
{
	char a[800], b[800];
	both_paths("lkc", a, b);
	int fc = open(a, O_CREAT | O_EXCL | O_WRONLY, 0644);
	assert_true(fc >= 0);
	int fo = open(a, O_RDWR);
	assert_true(fo >= 0);
	struct flock w = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	assert_int_equal(fcntl(fo, F_SETLK, &w), 0);
	int fb = open(b, O_RDWR);
	assert_true(fb >= 0);
	/* closing the create's descriptor, never written, drops it */
	assert_close_drops_lock(fb, fc, fo);
}

static void test_kill9_meta_after_creates(void **state)
{
	enum { N = 40 };
	char d[700], p[800];
	integ_path(&env, "k9", d, sizeof(d));
	assert_int_equal(mkdir(d, 0755), 0);
	for (int i = 0; i < N; i++) {
		snprintf(p, sizeof(p), "%s/f%d", d, i);
		write_len(p, i % 3 == 0 ? 0 : (size_t)i * 100);
	}
	/* meta dies right after the last create returned, its session
	 * close still queued in the mount */
	integ_kill9(&env, "meta");
	assert_int_equal(integ_up_again(&env, "up-meta"), 0);
	for (int i = 0; i < N; i++) {
		snprintf(p, sizeof(p), "%s/k9/f%d", mnt2, i);
		expect_size(p, i % 3 == 0 ? 0 : (off_t)i * 100);
	}
	/* the closes queued across the restart land too */
	assert_int_equal(sessions_become(0), 0);
}

/* One thread's share of test_threads_in_dirs: in ROOT/dK, files created
 * with distinct contents, every third renamed, every fifth unlinked, a
 * rename over an existing name. The same calls run on the mount and on
 * the local disk; each must give the same result there. */
struct tdir_arg {
	char root[700];
	int k;
	int errors;
};

#define TDIR_FILES 60

static void *tdir_main(void *arg)
{
	struct tdir_arg *a = arg;
	char d[800], p[900], q[900], buf[256];
	snprintf(d, sizeof(d), "%s/d%d", a->root, a->k);
	if (mkdir(d, 0755) != 0)
		a->errors++;
	for (int i = 0; i < TDIR_FILES; i++) {
		snprintf(p, sizeof(p), "%s/f%d", d, i);
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0) {
			a->errors++;
			continue;
		}
		int n = snprintf(buf, sizeof(buf), "thread %d file %d\n", a->k, i);
		for (int j = n; j < (int)sizeof(buf); j++)
			buf[j] = (char)('a' + (j * 5 + i + a->k) % 26);
		size_t len = (size_t)n + (size_t)(i % 4) * 50; /* sizes differ too */
		if (write(fd, buf, len) != (ssize_t)len)
			a->errors++;
		close(fd);
		if (i % 3 == 0) {
			snprintf(q, sizeof(q), "%s/r%d", d, i);
			if (rename(p, q) != 0)
				a->errors++;
		}
		if (i % 5 == 4 && unlink(i % 3 == 0 ? q : p) != 0)
			a->errors++;
	}
	/* a rename over an existing name replaces it */
	snprintf(p, sizeof(p), "%s/f1", d);
	snprintf(q, sizeof(q), "%s/f2", d);
	if (rename(p, q) != 0)
		a->errors++;
	return NULL;
}

/* "name:crc" lines of DIR's entries, sorted, into OUT. */
static void dir_digest(const char *dir, char *out, size_t cap)
{
	char names[TDIR_FILES + 8][64];
	int n = 0;
	DIR *dh = opendir(dir);
	assert_non_null(dh);
	struct dirent *de;
	while ((de = readdir(dh))) {
		if (de->d_name[0] == '.')
			continue;
		assert_true(n < TDIR_FILES + 8);
		assert_true(strlen(de->d_name) < sizeof(names[0]));
		snprintf(names[n++], sizeof(names[0]), "%.63s", de->d_name);
	}
	closedir(dh);
	qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	size_t at = 0;
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		char p[PATH_MAX + 80];
		int w = snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		assert_true(w > 0 && (size_t)w < sizeof(p));
		at += (size_t)snprintf(out + at, cap - at, "%s:%lld\n", names[i],
		                       (long long)integ_file_crc(p));
		assert_true(at < cap);
	}
}

static void test_threads_in_dirs(void **state)
{
	enum { T = 8 };
	char local[700], m1[700], m2[800];
	snprintf(local, sizeof(local), "%s/oracle-threads", env.dir);
	integ_path(&env, "threads", m1, sizeof(m1));
	snprintf(m2, sizeof(m2), "%s/threads", mnt2);
	assert_int_equal(mkdir(local, 0755), 0);
	assert_int_equal(mkdir(m1, 0755), 0);
	const char *roots[2] = { local, m1 };
	for (int r = 0; r < 2; r++) {
		struct tdir_arg a[T];
		pthread_t th[T];
		for (int k = 0; k < T; k++) {
			snprintf(a[k].root, sizeof(a[k].root), "%s", roots[r]);
			a[k].k = k;
			a[k].errors = 0;
			assert_int_equal(pthread_create(&th[k], NULL, tdir_main, &a[k]), 0);
		}
		for (int k = 0; k < T; k++) {
			pthread_join(th[k], NULL);
			assert_int_equal(a[k].errors, 0);
		}
	}
	static char want[8192], got[8192], got2[8192];
	clock_sleep_ms(ATTR_BOUND_MS + 200); /* mount 2's caches */
	for (int k = 0; k < T; k++) {
		char dl[800], d1[800], d2[900];
		snprintf(dl, sizeof(dl), "%s/d%d", local, k);
		snprintf(d1, sizeof(d1), "%s/d%d", m1, k);
		snprintf(d2, sizeof(d2), "%s/d%d", m2, k);
		dir_digest(dl, want, sizeof(want));
		dir_digest(d1, got, sizeof(got));
		dir_digest(d2, got2, sizeof(got2));
		assert_string_equal(got, want);
		assert_string_equal(got2, want);
	}
}

/* Small random reads of a chunked file of under 1 MiB through the mount. */
static void test_small_file_random_reads(void **state)
{
	enum { LEN = 700 * 1000, READS = 400 };
	char a[800], b[800];
	integ_path(&env, "pack", a, sizeof(a));
	snprintf(b, sizeof(b), "%s/pack", mnt2);
	uint8_t *v1 = malloc(LEN), *v2 = malloc(LEN);
	assert_non_null(v1);
	assert_non_null(v2);
	for (size_t i = 0; i < LEN; i++) {
		v1[i] = (uint8_t)(i * 7 + i / 251);
		v2[i] = (uint8_t)(i * 13 + 5 + i / 257);
	}
	int fd = open(a, O_CREAT | O_EXCL | O_RDWR, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, v1, LEN), LEN);
	/* read back at random through the same descriptor, as index-pack */
	unsigned seed = 9;
	uint8_t r[64];
	for (int i = 0; i < READS; i++) {
		seed = seed * 1103515245u + 12345u;
		off_t off = 1 + (off_t)((seed >> 4) % (LEN - 64));
		assert_int_equal(pread(fd, r, 40, off), 40);
		assert_memory_equal(r, v1 + off, 40);
	}
	/* the other mount rewrites it: seen here within the staleness
	 * bound (read_ahead_ttl_ms, 500 ms by default) */
	int fb = open(b, O_WRONLY);
	assert_true(fb >= 0);
	assert_int_equal(pwrite(fb, v2, LEN, 0), LEN);
	assert_int_equal(close(fb), 0);
	clock_sleep_ms(700);
	for (int i = 0; i < READS / 4; i++) {
		seed = seed * 1103515245u + 12345u;
		off_t off = 1 + (off_t)((seed >> 4) % (LEN - 64));
		assert_int_equal(pread(fd, r, 40, off), 40);
		assert_memory_equal(r, v2 + off, 40);
	}
	/* this mount's own write: at once */
	assert_int_equal(pwrite(fd, v1 + 5000, 40, 5000), 40);
	assert_int_equal(pread(fd, r, 40, 5000), 40);
	assert_memory_equal(r, v1 + 5000, 40);
	assert_int_equal(close(fd), 0);
	free(v1);
	free(v2);
}

/* Creates in a directory this mount did not make (issue 13, dircache.h
 * "LISTED DIRECTORIES"): the first lookup of an absent name there lists
 * the directory (DIRLIST), and the lookups before later creates are
 * answered by the mount: N creates cost N requests and a few, not 2N
 * (a LOOKUP and a CREATE each). NPRE entries made by the other mount
 * first; with more than 1024 of them the listing takes two pages, and a
 * name of the second page must still be found. */
static void creates_in_foreign_dir(const char *rel, int npre)
{
	enum { N = 200 };
	char d2[700], d[700], p[800];
	snprintf(d2, sizeof(d2), "%.600s/%s", mnt2, rel);
	assert_int_equal(mkdir(d2, 0755), 0);
	for (int i = 0; i < npre; i++) {
		snprintf(p, sizeof(p), "%s/pre%05d", d2, i);
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
		assert_true(fd >= 0);
		assert_int_equal(close(fd), 0);
	}
	integ_path(&env, rel, d, sizeof(d));
	struct stat st;
	/* this mount may know its parent wholly (listed): the other mount's
	 * mkdir is seen within the dircache's bound */
	uint64_t w0 = clock_mono_ns();
	while (stat(d, &st) != 0) {
		if (clock_mono_ns() - w0 > 10000000000ull)
			fail_msg("%s not seen 10 s after the other mount made it", d);
		clock_sleep_ms(20);
	}
	unsigned long long drops = integ_cache_drops();
	uint64_t t0 = clock_mono_ns();
	unsigned long long before = integ_meta_requests_settled(&env, 4, &t0);
	create_empty(d, N);
	unsigned long long used = integ_meta_requests(&env) - before;
	uint64_t ms = (clock_mono_ns() - t0) / 1000000u;
	print_message("%llu meta requests for %d creates in a directory of %d made elsewhere "
	              "in %llu ms\n", used, N, npre, (unsigned long long)ms);
	/* plus the first name's LOOKUP and the listing's pages */
	unsigned long long bound = creates_bound(N, ms) + 1 + (unsigned long long)npre / 1024 + 1;
	if (used > bound && integ_cache_drops() == drops)
		fail_msg("%llu meta requests for %d creates in a listed directory in %llu ms "
		         "(at most %llu)", used, N, (unsigned long long)ms, bound);
	/* every name listed is still found here, the last page's too */
	for (int i = 0; i < npre; i += npre / 7 + 1) {
		snprintf(p, sizeof(p), "%s/pre%05d", d, i);
		assert_int_equal(stat(p, &st), 0);
	}
	if (npre) {
		snprintf(p, sizeof(p), "%s/pre%05d", d, npre - 1);
		assert_int_equal(stat(p, &st), 0);
	}
}

static void test_creates_in_foreign_dir(void **state)
{
	creates_in_foreign_dir("fd1", 20);
}

static void test_creates_in_foreign_dir_two_pages(void **state)
{
	creates_in_foreign_dir("fd2", 1100);
}

/* A name the other mount adds to a directory this mount knows wholly
 * (listed above) is seen here within the dircache's bound (a poll
 * interval and a round trip; 10 s allowed for a loaded machine), though
 * this mount answered its absence itself just before; and a create here
 * of a name the other mount just made fails with EEXIST at once. */
static void test_listed_dir_coherent(void **state)
{
	char p[800], p2[800];
	struct stat st;
	for (int round = 0; round < 3; round++) {
		snprintf(p, sizeof(p), "%s/fd1/late%d", env.mnt, round);
		snprintf(p2, sizeof(p2), "%s/fd1/late%d", mnt2, round);
		assert_int_equal(stat(p, &st), -1);
		assert_int_equal(errno, ENOENT);
		int fd = open(p2, O_CREAT | O_EXCL | O_WRONLY, 0644);
		assert_true(fd >= 0);
		assert_int_equal(close(fd), 0);
		/* EEXIST first: meta decides a create, whatever this mount knew */
		fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd >= 0)
			close(fd);
		assert_int_equal(fd, -1);
		assert_int_equal(errno, EEXIST);
		/* a fresh absent name, then the other mount creates it */
		snprintf(p, sizeof(p), "%s/fd1/later%d", env.mnt, round);
		snprintf(p2, sizeof(p2), "%s/fd1/later%d", mnt2, round);
		assert_int_equal(stat(p, &st), -1);
		fd = open(p2, O_CREAT | O_EXCL | O_WRONLY, 0644);
		assert_true(fd >= 0);
		assert_int_equal(close(fd), 0);
		uint64_t t0 = clock_mono_ns();
		while (stat(p, &st) != 0) {
			if (clock_mono_ns() - t0 > 10000000000ull)
				fail_msg("%s not seen 10 s after the other mount made it", p);
			clock_sleep_ms(20);
		}
		print_message("other mount's name seen after %llu ms\n",
		              (unsigned long long)((clock_mono_ns() - t0) / 1000000u));
		/* and a name it removes goes too */
		assert_int_equal(unlink(p2), 0);
		t0 = clock_mono_ns();
		while (stat(p, &st) == 0) {
			if (clock_mono_ns() - t0 > 10000000000ull)
				fail_msg("%s still seen 10 s after the other mount removed it", p);
			clock_sleep_ms(20);
		}
		/* this mount creates the name again: allowed, and the other sees it */
		int fd2 = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
		assert_true(fd2 >= 0);
		assert_int_equal(close(fd2), 0);
	}
}

static void test_stop_mount2(void **state)
{
	integ_mount2_stop(&mount2_pid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_mount2),
		cmocka_unit_test(test_create_close_costs_one_request),
		cmocka_unit_test(test_lengths_seen_after_close),
		cmocka_unit_test(test_locks_dropped_at_close),
		cmocka_unit_test(test_create_fd_close_drops_other_fds_lock),
		cmocka_unit_test(test_kill9_meta_after_creates),
		cmocka_unit_test(test_threads_in_dirs),
		cmocka_unit_test(test_small_file_random_reads),
		cmocka_unit_test(test_creates_in_foreign_dir),
		cmocka_unit_test(test_creates_in_foreign_dir_two_pages),
		cmocka_unit_test(test_listed_dir_coherent),
		cmocka_unit_test(test_stop_mount2),
	};
	int rc = integ_main(&env, "creates", tests, sizeof(tests) / sizeof(tests[0]));
	integ_mount2_stop(&mount2_pid);
	return rc;
}
