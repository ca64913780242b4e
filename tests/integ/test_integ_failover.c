/* test_integ_failover.c - kill -9 of a storage service under a fio verify run.
 *
 * With the cluster up, fio writes two 48 MiB files through the mount with
 * --verify=crc32c, beside a job of 4 KiB random writes and one of 4 KiB
 * appends (each write durable when it returns); shortly after it starts, storage2 (one replica of both
 * chains) is killed with SIGKILL. Writes stall until mgmtd fails the node
 * and takes its targets out of the chains, then go on with the other two
 * replicas: fio must finish without a verify error. `chainfs up` then
 * starts just the missing storage service; its targets must resync and
 * every chain member be serving again (polled via `chainfs admin
 * list-chains`, bounded), after which a read-only fio verify pass over the
 * same files must succeed too.
 *
 * Then mgmtd is killed with SIGKILL: files are created, written and read
 * through the mount for longer than mgmtd's heartbeat timeout, and `up`
 * brings mgmtd back (test_kill9_mgmtd).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "integ_env.h"
#include "testenv.h"

static struct integ env;

static void test_kill9_storage_during_fio(void **state)
{
	char dir[1024], dirarg[1100], log[700];
	integ_path(&env, "fio", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(dirarg, sizeof(dirarg), "--directory=%s", dir);
	snprintf(log, sizeof(log), "%s/fio.out", env.dir);
	/* Global options first; then the 1 MiB writers and two small-write
	 * jobs (4 KiB random overwrites of a laid-out file, 4 KiB appends):
	 * the journaled, lazily retired path of the chunk engine. */
	char *fio[] = {"fio",
	               dirarg,
	               "--nrfiles=1",
	               "--ioengine=psync",
	               "--direct=1",
	               "--verify=crc32c",
	               "--do_verify=1",
	               "--verify_fatal=1",
	               "--name=kill",
	               "--numjobs=2",
	               "--size=48M",
	               "--bs=1M",
	               "--rw=write",
	               "--name=small",
	               "--size=3M",
	               "--bs=4k",
	               "--rw=randwrite",
	               "--name=append",
	               "--size=2M",
	               "--bs=4k",
	               "--rw=write",
	               NULL};
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp("fio", fio);
		_exit(127);
	}
	clock_sleep_ms(400);
	integ_kill9(&env, "storage2");
	int st = 0;
	uint64_t deadline = clock_mono_ms() + 180000;
	while (waitpid(pid, &st, WNOHANG) != pid) {
		if (clock_mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			fail_msg("fio did not finish within 180 s after the kill");
		}
		clock_sleep_ms(50);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "fio failed:\n");
		integ_print_file(log);
	}
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* Bring the dead service back: `up` starts just what is missing. */
	integ_up_serving(&env, "up-again", 120000);

	char *verify[] = {"fio",
	                  dirarg,
	                  "--nrfiles=1",
	                  "--ioengine=psync",
	                  "--direct=1",
	                  "--verify=crc32c",
	                  "--verify_only",
	                  "--verify_fatal=1",
	                  "--name=kill",
	                  "--numjobs=2",
	                  "--size=48M",
	                  "--bs=1M",
	                  "--rw=read",
	                  "--name=small",
	                  "--size=3M",
	                  "--bs=4k",
	                  "--rw=randwrite",
	                  "--name=append",
	                  "--size=2M",
	                  "--bs=4k",
	                  "--rw=read",
	                  NULL};
	snprintf(log, sizeof(log), "%s/fio-verify.out", env.dir);
	assert_int_equal(integ_run(verify, NULL, log, 120000), 0);
}

static void pattern(uint8_t *buf, uint32_t seed, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12));
}

/* PATH holds exactly the N bytes of SEED's pattern. */
static void read_check(const char *path, uint32_t seed, size_t n)
{
	uint8_t *buf = malloc(n), *got = malloc(n + 1);
	pattern(buf, seed, n);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, got, n + 1), (ssize_t)n);
	close(fd);
	assert_memory_equal(buf, got, n);
	free(buf);
	free(got);
}

/* Writes SEED's pattern to PATH through the mount, fsyncs, reads back. */
static void write_check(const char *path, uint32_t seed, size_t n)
{
	uint8_t *buf = malloc(n);
	pattern(buf, seed, n);
	integ_write_file(path, buf, n);
	free(buf);
	read_check(path, seed, n);
}

/* kill -9 mgmtd: the mount goes on creating, writing and reading files
 * for longer than mgmtd's heartbeat timeout T (10 s; services would have
 * fenced at T/2 without their peers' word); `chainfs up` restarts mgmtd,
 * which recovers the cluster from its KV store, and every file written
 * meanwhile reads back. */
static void test_kill9_mgmtd(void **state)
{
	char dir[1024], path[1200];
	integ_path(&env, "no-mgmtd", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	integ_kill9(&env, "mgmtd");
	uint64_t start = clock_mono_ms();
	uint32_t n = 0;
	while (clock_mono_ms() < start + 13000) {
		snprintf(path, sizeof(path), "%s/f%u", dir, n);
		write_check(path, n, (size_t)3 << 20);
		n++;
		clock_sleep_ms(200);
	}
	assert_true(n >= 5);
	integ_up_serving(&env, "up-mgmtd", 60000);
	for (uint32_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%u", dir, i);
		read_check(path, i, (size_t)3 << 20);
	}
	snprintf(path, sizeof(path), "%s/after", dir);
	write_check(path, 7, (size_t)1 << 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill9_storage_during_fio),
	    cmocka_unit_test(test_kill9_mgmtd),
	};
	return integ_main(&env, "integ-failover", tests, sizeof(tests) / sizeof(tests[0]));
}
