/* test_testenv.c - the test harness's own helpers (testenv.h): ports handed to
 * tests are distinct, below the ephemeral range, and
 * never handed to another test process while leased (ctest runs two
 * tests at once; a port probed free is free for anyone until its server
 * binds it, or while a test restarts that server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/procstat.h"
#include "testenv.h"

#define N 16

static unsigned ephemeral_low(void)
{
	unsigned lo = 0, hi = 0;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%u %u", &lo, &hi), 2);
	fclose(f);
	return lo;
}

static void test_ports_leased(void **state)
{
	(void)state;
	uint16_t p[N];
	unsigned lo = ephemeral_low();
	/* The child forked after the first port walks the same candidates
	 * as this process: without the lease it would be handed the very
	 * ports this process takes while it waits. */
	p[0] = testenv_free_port();
	int go[2], back[2];
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(back), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c;
		close(go[1]);
		close(back[0]);
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		for (int i = 0; i < 4 * N; i++) {
			uint16_t q = testenv_free_port();
			if (write(back[1], &q, sizeof(q)) != (ssize_t)sizeof(q))
				_exit(2);
		}
		_exit(0);
	}
	close(go[0]);
	close(back[1]);
	for (int i = 1; i < N; i++)
		p[i] = testenv_free_port();
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < i; j++)
			assert_int_not_equal(p[i], p[j]);
		if (lo > 13024) {
			assert_true(p[i] < lo); /* not where bind(0) or connect() pick */
			char path[64];
			struct stat st;
			snprintf(path, sizeof(path), "/tmp/cfs-test-ports/%u", p[i]);
			assert_int_equal(stat(path, &st), 0);
			assert_true(st.st_size > 0);
		}
	}
	assert_int_equal(write(go[1], "g", 1), 1);
	close(go[1]);
	uint16_t q;
	int got = 0;
	while (read(back[0], &q, sizeof(q)) == (ssize_t)sizeof(q)) {
		got++;
		for (int i = 0; i < N; i++)
			if (q == p[i])
				fail_msg("port %u handed to this process and to another", q);
	}
	close(back[0]);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(got, 4 * N);
}

/* One mapping split into three areas (mprotect of its middle page) is
 * one mapping; a second mapping of the same memfd elsewhere is another. */
static void test_maps_count(void **state)
{
	(void)state;
	long pg = sysconf(_SC_PAGESIZE);
	int fd = memfd_create("cfs-maps-count", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 * pg), 0);
	uint8_t *a = mmap(NULL, (size_t)(4 * pg), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(a != MAP_FAILED);
	assert_int_equal(testenv_maps_count(getpid(), "cfs-maps-count"), 1);
	assert_int_equal(mprotect(a + pg, (size_t)pg, PROT_READ), 0);
	assert_int_equal(testenv_maps_count(getpid(), "cfs-maps-count"), 1);
	uint8_t *b = mmap(NULL, (size_t)pg, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(b != MAP_FAILED);
	assert_int_equal(testenv_maps_count(getpid(), "cfs-maps-count"), 2);
	munmap(b, (size_t)pg);
	munmap(a, (size_t)(4 * pg));
	assert_int_equal(testenv_maps_count(getpid(), "cfs-maps-count"), 0);
	close(fd);
}

/* A memfd's mappings are told from files whose path holds its name (a
 * cluster's temp dir "cfs-TAG-XXXXXX" continues TAG with random letters:
 * counting "shm-unreg-b" by substring took the service's LMDB files in
 * "cfs-shm-unreg-bQ3x.." for 2 leaked mappings) and from memfds whose
 * name continues it. */
static void test_memfd_maps_count(void **state)
{
	(void)state;
	long pg = sysconf(_SC_PAGESIZE);
	int fd = memfd_create("cfs-memfd-n", MFD_CLOEXEC);
	int fx = memfd_create("cfs-memfd-nx", MFD_CLOEXEC);
	char dir[] = "/tmp/cfs-memfd-nXXXXXX", path[64];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/data", dir);
	int ff = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && fx >= 0 && ff >= 0);
	assert_int_equal(ftruncate(fd, pg), 0);
	assert_int_equal(ftruncate(fx, pg), 0);
	assert_int_equal(ftruncate(ff, pg), 0);
	void *a = mmap(NULL, (size_t)pg, PROT_READ, MAP_SHARED, fd, 0);
	void *x = mmap(NULL, (size_t)pg, PROT_READ, MAP_SHARED, fx, 0);
	void *f = mmap(NULL, (size_t)pg, PROT_READ, MAP_SHARED, ff, 0);
	assert_true(a != MAP_FAILED && x != MAP_FAILED && f != MAP_FAILED);
	assert_int_equal(testenv_maps_count(getpid(), "cfs-memfd-n"), 3);
	assert_int_equal(testenv_memfd_maps_count(getpid(), "cfs-memfd-n"), 1);
	unlink(path); /* listed " (deleted)" now, as a memfd always is */
	assert_int_equal(testenv_memfd_maps_count(getpid(), "cfs-memfd-n"), 1);
	munmap(a, (size_t)pg);
	assert_int_equal(testenv_memfd_maps_count(getpid(), "cfs-memfd-n"), 0);
	assert_int_equal(testenv_memfd_maps_count(getpid(), "cfs-memfd-nx"), 1);
	munmap(x, (size_t)pg);
	munmap(f, (size_t)pg);
	close(fd);
	close(fx);
	close(ff);
	rmdir(dir);
}

/* A test process killed outright (no atexit) takes its servers along. */
static void test_spawned_die_with_test(void **state)
{
	(void)state;
	int pp[2];
	assert_int_equal(pipe(pp), 0);
	pid_t t = fork();
	assert_true(t >= 0);
	if (t == 0) {
		close(pp[0]);
		char *argv[] = { "sleep", "60", NULL };
		pid_t c = testenv_spawn(argv, NULL);
		if (write(pp[1], &c, sizeof(c)) != (ssize_t)sizeof(c))
			_exit(2);
		raise(SIGKILL);
	}
	close(pp[1]);
	pid_t c = 0;
	assert_int_equal(read(pp[0], &c, sizeof(c)), (ssize_t)sizeof(c));
	close(pp[0]);
	int st;
	assert_int_equal(waitpid(t, &st, 0), t);
	assert_true(WIFSIGNALED(st));
	int gone = 0;
	for (int i = 0; i < 500 && !gone; i++) {
		gone = !procstat_running(c);
		if (!gone)
			usleep(10000);
	}
	if (!gone)
		kill(c, SIGKILL);
	assert_true(gone);
}

/* testenv_run: the exit status, the output in the file (appended), a
 * command past its deadline killed (-1), one that cannot start 127. */
static void test_run(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("run");
	char log[600], out[64];
	snprintf(log, sizeof(log), "%s/out", dir);
	char *echo[] = { "sh", "-c", "echo one; echo two >&2; exit 3", NULL };
	assert_int_equal(testenv_run(echo, NULL, log, 10000), 3);
	char *pwd[] = { "sh", "-c", "pwd", NULL };
	assert_int_equal(testenv_run(pwd, "/", log, 10000), 0);
	assert_int_equal(testenv_read_file(log, out, sizeof(out)), 10);
	assert_string_equal(out, "one\ntwo\n/\n");
	assert_int_equal(testenv_read_file(log, out, 4), 3);
	assert_string_equal(out, "one");
	char *slow[] = { "sleep", "30", NULL };
	assert_int_equal(testenv_run(slow, NULL, NULL, 100), -1);
	char *none[] = { "/nonexistent/cfs-no-such-binary", NULL };
	assert_int_equal(testenv_run(none, NULL, NULL, 10000), 127);
	snprintf(log, sizeof(log), "%s/missing", dir);
	assert_int_equal(testenv_read_file(log, out, sizeof(out)), -1);
	assert_string_equal(out, "");
	assert_false(testenv_file_has(log, "one")); /* missing file */
	free(dir);
}

/* testenv_file_has: a string on any line, not one across lines, not one
 * that is not there. */
static void test_file_has(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("file_has");
	char path[600];
	snprintf(path, sizeof(path), "%s/log", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("first line\nsecond: needle here\nthird\n", f);
	fclose(f);
	assert_true(testenv_file_has(path, "needle here"));
	assert_true(testenv_file_has(path, "third"));
	assert_false(testenv_file_has(path, "line\nsecond"));
	assert_false(testenv_file_has(path, "absent"));
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ports_leased),
		cmocka_unit_test(test_maps_count),
		cmocka_unit_test(test_memfd_maps_count),
		cmocka_unit_test(test_spawned_die_with_test),
		cmocka_unit_test(test_run),
		cmocka_unit_test(test_file_has),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
