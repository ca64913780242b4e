/* test_integ_outage.c - meta goes away under a working mount (issue 16,
 * "fix first" #1 and #2).
 *
 * test_up_after_meta_kill9: regression test. `chainfs up` after a kill -9
 * of meta used to stat the mount point, which blocks while meta is down;
 * it took the failure for "mount gone", stopped the healthy mount process
 * and then failed to mount over the stale kernel mount ("Transport
 * endpoint is not connected"). Now: meta is killed while a reader keeps
 * the mount busy, `up` restarts only meta, the same mount process keeps
 * running and serves old and new files.
 *
 * test_up_cleans_stale_mount: the mount process itself is killed -9; its
 * kernel mount answers ENOTCONN; `up` cleans it (fusermount3 -uz) and
 * mounts again, and the files are there.
 *
 * test_meta_kill_during_ops: regression test. fsync, close and open once
 * returned ECONNREFUSED / ECONNABORTED / ETIMEDOUT to applications while
 * meta restarted. Four writer threads create, write, fsync and close files
 * while meta is killed -9 twice and restarted by `up` a few seconds later;
 * no call may fail (meta is back well within the mount's 60 s bound), so no
 * socket errno ever reaches the writers, and every acknowledged file reads
 * back whole.
 *
 * test_close_needs_no_meta: a file written and fsynced (meta has its
 * length) is held open by a process that forks while meta is paused
 * (SIGSTOP); the child's close of the inherited descriptor (what exec
 * does to every descriptor) returns at once instead of waiting for meta,
 * and after SIGCONT a write that moves the length is still reported on
 * close (another stat sees it).
 *
 * test_meta_down_past_bound: a second mount with --meta-wait-ms 3000; meta
 * is killed and kept down: create, lookup and fsync through that mount fail
 * with EIO after about the bound (not a socket errno, not forever), and so
 * does a write that converts an inline file (its MARK finds meta gone:
 * once the bound, not once per retry of the converter); after `up` the
 * same mount works again and the inline file converts with its bytes.
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "integ_env.h"
#include "testenv.h"

static struct integ env;

static void pattern(uint8_t *buf, uint32_t seed, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12));
}

/* 0 when PATH holds exactly the N bytes of SEED's pattern, else -1. */
static int check_file(const char *path, uint32_t seed, size_t n)
{
	uint8_t *want = malloc(n), *got = malloc(n + 1);
	int ok = -1;
	pattern(want, seed, n);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r = read(fd, got, n + 1);
		ok = r == (ssize_t)n && memcmp(want, got, n) == 0 ? 0 : -1;
		close(fd);
	}
	free(want);
	free(got);
	return ok;
}

/* Writes SEED's pattern to PATH: open, write, fsync, close. 0 or -errno
 * of the first call that failed. */
static int write_file(const char *path, uint32_t seed, size_t n)
{
	uint8_t *buf = malloc(n);
	int rc = 0;
	pattern(buf, seed, n);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (write(fd, buf, n) != (ssize_t)n)
		rc = -errno;
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
out:
	free(buf);
	return rc;
}

static int stat_blocks_reader(void)
{
	/* A child that keeps looking at the mount while meta is down, as a
	 * shell or a file manager would: up must not be confused by it. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct stat st;
		char p[1100];
		for (int i = 0;; i++) {
			snprintf(p, sizeof(p), "%s/busy-%d", env.mnt, i);
			stat(p, &st);
			stat(env.mnt, &st);
			usleep(50000);
		}
	}
	return pid;
}

static void test_up_after_meta_kill9(void **state)
{
	char path[1100];
	integ_path(&env, "before-meta-kill", path, sizeof(path));
	assert_int_equal(write_file(path, 1, 100000), 0);
	int mount_pid = integ_role_pid(&env, "mount"), meta_pid = integ_role_pid(&env, "meta");
	int reader = stat_blocks_reader();
	clock_sleep_ms(200);
	assert_int_equal(kill(meta_pid, SIGKILL), 0);
	clock_sleep_ms(1500); /* the reader's stats now wait for meta */
	assert_int_equal(integ_up_again(&env, "up-after-meta-kill"), 0);
	char log[700];
	snprintf(log, sizeof(log), "%s/up-after-meta-kill.out", env.dir);
	assert_true(testenv_file_has(log, "mount") && testenv_file_has(log, "already running"));
	assert_int_equal(integ_role_pid(&env, "mount"), mount_pid);
	assert_true(integ_pid_alive(mount_pid));
	assert_int_not_equal(integ_role_pid(&env, "meta"), meta_pid);
	kill(reader, SIGKILL);
	waitpid(reader, NULL, 0);
	/* The same mount serves the old file and takes a new one. */
	assert_int_equal(check_file(path, 1, 100000), 0);
	integ_path(&env, "after-meta-kill", path, sizeof(path));
	assert_int_equal(write_file(path, 2, 200000), 0);
	assert_int_equal(check_file(path, 2, 200000), 0);
	assert_int_equal(integ_role_pid(&env, "mount"), mount_pid);
}

static void test_up_cleans_stale_mount(void **state)
{
	char path[1100];
	struct stat st;
	integ_path(&env, "before-mount-kill", path, sizeof(path));
	assert_int_equal(write_file(path, 3, 50000), 0);
	int mount_pid = integ_role_pid(&env, "mount");
	assert_int_equal(kill(mount_pid, SIGKILL), 0);
	for (int i = 0; i < 100 && integ_pid_alive(mount_pid); i++)
		clock_sleep_ms(20);
	assert_int_equal(stat(env.mnt, &st), -1);
	assert_true(errno == ENOTCONN || errno == ECONNABORTED); /* a dead FUSE connection */
	assert_int_equal(integ_up_again(&env, "up-after-mount-kill"), 0);
	assert_int_not_equal(integ_role_pid(&env, "mount"), mount_pid);
	assert_int_equal(stat(env.mnt, &st), 0);
	assert_int_equal((int)st.st_ino, 1);
	assert_int_equal(check_file(path, 3, 50000), 0);
}

/* ---- writers under meta kills ---- */

#define NWRITERS  4
#define MAX_FILES 4096

struct writer {
	pthread_t th;
	int id;
	char dir[1100];
	uint32_t acked; /* files 0..acked-1 fully written, fsynced, closed */
	int errs[8];    /* errnos seen (first 8) */
	int nerr;
	uint64_t worst_ms; /* slowest whole file */
};

/* The writers run in a child process: a process that holds files open on
 * the mount must not fork+exec `chainfs up` while meta is down, because
 * exec closes its copies of those descriptors, each close is a FUSE flush,
 * and a flush waits for meta -- the meta this very `up` is about to start
 * (the same holds for any program: keep mount files out of the process that
 * restarts the cluster). State is shared through an anonymous mapping. */
struct shared {
	atomic_int stop;
	struct writer w[NWRITERS];
};

static struct shared *sh;

static size_t file_len(int w, uint32_t i)
{
	return 4096 + ((size_t)(w * 7919 + i * 104729) % (300 * 1024));
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	char path[1200];
	while (!atomic_load(&sh->stop) && w->acked < MAX_FILES) {
		snprintf(path, sizeof(path), "%s/f%u", w->dir, w->acked);
		uint64_t t0 = clock_mono_ms();
		int rc = write_file(path, (uint32_t)(w->id * 100000 + w->acked),
		                    file_len(w->id, w->acked));
		uint64_t dt = clock_mono_ms() - t0;
		if (dt > w->worst_ms)
			w->worst_ms = dt;
		if (rc < 0) {
			if (w->nerr < 8)
				w->errs[w->nerr] = -rc;
			w->nerr++;
			clock_sleep_ms(50);
			continue; /* not acknowledged: the same name again */
		}
		w->acked++;
	}
	return NULL;
}

static void test_meta_kill_during_ops(void **state)
{
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	struct writer *w = sh->w;
	for (int i = 0; i < NWRITERS; i++) {
		w[i].id = i;
		char rel[64];
		snprintf(rel, sizeof(rel), "outage-w%d", i);
		integ_path(&env, rel, w[i].dir, sizeof(w[i].dir));
		assert_int_equal(mkdir(w[i].dir, 0755), 0);
	}
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		for (int i = 0; i < NWRITERS; i++)
			if (pthread_create(&w[i].th, NULL, writer_main, &w[i]))
				_exit(2);
		for (int i = 0; i < NWRITERS; i++)
			pthread_join(w[i].th, NULL);
		_exit(0);
	}
	for (int cycle = 0; cycle < 2; cycle++) {
		clock_sleep_ms(1500);
		integ_kill9(&env, "meta");
		clock_sleep_ms(3000); /* writers wait on meta meanwhile */
		assert_int_equal(integ_up_again(&env, "up-during-writes"), 0);
	}
	clock_sleep_ms(2000);
	atomic_store(&sh->stop, 1);
	int st = 0;
	assert_int_equal(waitpid(child, &st, 0), child);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	uint32_t total = 0;
	uint64_t worst = 0;
	int errs = 0;
	for (int i = 0; i < NWRITERS; i++) {
		total += w[i].acked;
		errs += w[i].nerr;
		if (w[i].worst_ms > worst)
			worst = w[i].worst_ms;
		for (int k = 0; k < w[i].nerr && k < 8; k++)
			fprintf(stderr, "writer %d saw errno %d (%s)\n", i, w[i].errs[k],
			        strerror(w[i].errs[k]));
	}
	fprintf(stderr,
	        "meta outage: %u files acknowledged, %d failed calls, slowest file %llu ms\n",
	        total, errs, (unsigned long long)worst);
	assert_int_equal(errs, 0);
	assert_true(total >= NWRITERS * 2);
	/* Every acknowledged file holds, and nothing unacknowledged exists
	 * beyond the one name each writer was on. */
	for (int i = 0; i < NWRITERS; i++)
		for (uint32_t k = 0; k < w[i].acked; k++) {
			char path[1200];
			snprintf(path, sizeof(path), "%s/f%u", w[i].dir, k);
			if (check_file(path, (uint32_t)(i * 100000 + k), file_len(i, k)) != 0)
				fail_msg("acknowledged %s is missing or wrong", path);
		}
	munmap(sh, sizeof(*sh));
}

/* ---- a second mount with a short bound ---- */

static char mnt2[1100];

static int mounted2(void *arg)
{
	struct stat st;
	return stat(mnt2, &st) == 0 && st.st_ino == 1;
}

static void test_close_needs_no_meta(void **state)
{
	(void)state;
	char path[1100];
	integ_path(&env, "close-no-meta", path, sizeof(path));
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	char buf[8192];
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	assert_int_equal(fsync(fd), 0);
	int meta_pid = integ_role_pid(&env, "meta");
	assert_int_equal(testenv_stop(meta_pid), 0);
	uint64_t t0 = clock_mono_ms();
	pid_t child = fork();
	if (child == 0)
		_exit(close(fd) == 0 ? 0 : 1);
	int st = 0;
	for (int i = 0; i < 300 && waitpid(child, &st, WNOHANG) == 0; i++)
		clock_sleep_ms(10);
	uint64_t dt = clock_mono_ms() - t0;
	int done = waitpid(child, &st, WNOHANG) == child || WIFEXITED(st);
	kill(meta_pid, SIGCONT);
	if (!done)
		waitpid(child, &st, 0);
	print_message("child's close with meta paused: %llu ms\n", (unsigned long long)dt);
	assert_true(dt < 2500);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* a new length still goes to meta at close */
	assert_int_equal(pwrite(fd, buf, sizeof(buf), sizeof(buf)), (ssize_t)sizeof(buf));
	assert_int_equal(close(fd), 0);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, 2 * (off_t)sizeof(buf));
}

static void test_meta_down_past_bound(void **state)
{
	char port[32], id[128], mg[64], secret[700], log[700], path[1200];
	integ_conf_get(&env, "mgmtd_port", port, sizeof(port));
	integ_conf_get(&env, "cluster_id", id, sizeof(id));
	snprintf(mg, sizeof(mg), "127.0.0.1:%s", port);
	snprintf(secret, sizeof(secret), "%s/secret", env.data);
	snprintf(log, sizeof(log), "%s/mount2.log", env.dir);
	snprintf(mnt2, sizeof(mnt2), "%s/mnt2", env.dir);
	assert_int_equal(mkdir(mnt2, 0755), 0);
	char *argv[] = {(char *)testenv_chainfs(),
	                "mount",
	                "--mgmtd",
	                mg,
	                "--cluster-id",
	                id,
	                "--secret-file",
	                secret,
	                "--meta-wait-ms",
	                "3000",
	                "--timeout-ms",
	                "1000",
	                mnt2,
	                NULL};
	pid_t m2 = testenv_spawn(argv, log);
	assert_true(testenv_wait(mounted2, NULL, 60000));

	/* A file open for writing when meta goes. */
	snprintf(path, sizeof(path), "%s/open-before", mnt2);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "abcdef", 6), 6);
	/* An inline file (its bytes in meta) open for writing: a write past
	 * the inline bound converts it, and the conversion's first call to
	 * meta (MARK) is what finds meta gone. */
	snprintf(path, sizeof(path), "%s/inline-before", mnt2);
	int fdi = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fdi >= 0);
	assert_int_equal(write(fdi, "0123456789", 10), 10);
	integ_kill9(&env, "meta");

	uint64_t t0 = clock_mono_ms();
	snprintf(path, sizeof(path), "%s/new-while-down", mnt2);
	int fd2 = open(path, O_WRONLY | O_CREAT, 0644);
	int e = errno;
	uint64_t dt = clock_mono_ms() - t0;
	fprintf(stderr, "create with meta down: %s after %llu ms\n", fd2 < 0 ? strerror(e) : "ok",
	        (unsigned long long)dt);
	assert_int_equal(fd2, -1);
	assert_int_equal(e, EIO);
	assert_true(dt >= 2500 && dt < 15000);

	/* The conversion's MARK failed once meta_client spent the bound: the
	 * write fails then too, not after as many bounds as the converter
	 * has retries (it sent MARK 6 times: some 18 s here). */
	t0 = clock_mono_ms();
	ssize_t wn = pwrite(fdi, "x", 1, 1 << 20);
	e = errno;
	dt = clock_mono_ms() - t0;
	fprintf(stderr, "inline conversion with meta down: %s after %llu ms\n",
	        wn < 0 ? strerror(e) : "ok", (unsigned long long)dt);
	assert_int_equal(wn, -1);
	assert_int_equal(e, EIO);
	assert_true(dt >= 2500 && dt < 9000);

	struct stat st;
	snprintf(path, sizeof(path), "%s/no-such-name", mnt2);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(errno, EIO);
	t0 = clock_mono_ms();
	assert_int_equal(fsync(fd), -1);
	e = errno;
	fprintf(stderr, "fsync with meta down: %s after %llu ms\n", strerror(e),
	        (unsigned long long)(clock_mono_ms() - t0));
	assert_int_equal(e, EIO);

	/* Meta back: the same mount works again. */
	assert_int_equal(integ_up_again(&env, "up-after-bound"), 0);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(close(fd), 0);
	snprintf(path, sizeof(path), "%s/after-bound", mnt2);
	assert_int_equal(write_file(path, 9, 10000), 0);
	assert_int_equal(check_file(path, 9, 10000), 0);
	snprintf(path, sizeof(path), "%s/open-before", mnt2);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((int)st.st_size, 6);
	/* the failed conversion left the inline file whole; now it converts */
	assert_int_equal(pwrite(fdi, "x", 1, 1 << 20), 1);
	assert_int_equal(fstat(fdi, &st), 0);
	assert_int_equal((long long)st.st_size, (1 << 20) + 1);
	char head[10];
	assert_int_equal(pread(fdi, head, sizeof(head), 0), (ssize_t)sizeof(head));
	assert_memory_equal(head, "0123456789", sizeof(head));
	assert_int_equal(close(fdi), 0);

	char *um[] = {"fusermount3", "-u", mnt2, NULL};
	assert_int_equal(integ_run(um, NULL, NULL, 30000), 0);
	for (int i = 0; i < 500 && testenv_alive(m2); i++)
		clock_sleep_ms(20);
	if (testenv_alive(m2))
		testenv_kill(m2, SIGKILL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_up_after_meta_kill9),
	    cmocka_unit_test(test_up_cleans_stale_mount),
	    cmocka_unit_test(test_meta_kill_during_ops),
	    cmocka_unit_test(test_close_needs_no_meta),
	    cmocka_unit_test(test_meta_down_past_bound),
	};
	return integ_main(&env, "integ-outage", tests, sizeof(tests) / sizeof(tests[0]));
}
