/* test_integ_metaroute.c - a mount learns the meta instances that register
 * after it started, and fails over to them.
 *
 * test_late_meta_failover: regression test. `chainfs mount` took the
 * active metas from routing once, at start-up, so a mount started while
 * only meta1 had registered never used meta2 and stalled on every
 * operation once meta1 was killed (netns chaos harness). Here `chainfs up`
 * starts one meta and the mount (which reads meta from routing); then a
 * second `chainfs meta` on the same LMDB environment registers with mgmtd.
 * The mount logs that it learned it (within a few seconds: routing long
 * polls). meta1 is killed -9; creating, writing, listing and reading files
 * through the mount then all succeed within BOUND_MS, checked against the
 * bytes written (the mount's --meta-wait-ms is 60 s: the old mount either
 * failed them after that or waited for meta1 to come back). meta1 is then
 * restarted (`chainfs up`) and meta2 stopped by pid.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "integ_env.h"
#include "testenv.h"

/* What the operations after the kill may take: a failover is a refused or
 * closed connection and a resend, with room for ASan on a loaded host. */
#define BOUND_MS 10000
#define LEARN_MS 20000
#define FILE_LEN (64 * 1024)

static struct integ env;
static pid_t meta2;

struct log_wait {
	char path[700];
	char needle[128];
};

static int log_has(void *arg)
{
	struct log_wait *w = arg;
	return testenv_file_has(w->path, w->needle);
}

static int port_open(void *arg)
{
	return testenv_port_open(*(uint16_t *)arg);
}

/* meta1's command line (from /proc) with --listen replaced by LISTEN, in
 * ARGV (pointers into BUF). */
static void meta2_argv(const char *listen, char *buf, size_t cap, char **argv, int max)
{
	char path[64];
	int pid = integ_role_pid(&env, "meta");
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t len = fread(buf, 1, cap - 1, f);
	fclose(f);
	assert_true(len > 0);
	buf[len] = 0;
	int n = 0;
	argv[n++] = (char *)testenv_chainfs();
	int swap = 0;
	for (size_t off = strlen(buf) + 1; off < len && n < max - 1; off += strlen(buf + off) + 1) {
		argv[n++] = swap ? (char *)listen : buf + off;
		swap = !strcmp(buf + off, "--listen");
	}
	argv[n] = NULL;
	assert_string_equal(argv[1], "meta");
	int listened = 0;
	for (int i = 1; i < n; i++)
		listened |= argv[i] == listen;
	assert_true(listened);
}

static void write_pattern(const char *path, uint32_t seed)
{
	static uint8_t b[FILE_LEN];
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, sizeof(b)), (ssize_t)sizeof(b));
	assert_int_equal(close(fd), 0);
}

static void check_pattern(const char *path, uint32_t seed)
{
	static uint8_t b[FILE_LEN + 1];
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, b, sizeof(b)), FILE_LEN);
	close(fd);
	for (size_t i = 0; i < FILE_LEN; i++)
		if (b[i] != (uint8_t)((i * 2654435761u + seed) >> 13))
			fail_msg("%s: wrong byte at %zu", path, i);
}

static void test_late_meta_failover(void **state)
{
	(void)state;
	char p[1100], listen[32], buf[8192], log2[700];
	char *argv[64];
	integ_path(&env, "before", p, sizeof(p));
	write_pattern(p, 1);

	uint16_t port2 = testenv_free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", (unsigned)port2);
	meta2_argv(listen, buf, sizeof(buf), argv, 64);
	snprintf(log2, sizeof(log2), "%s/meta2.log", env.dir);
	meta2 = testenv_spawn(argv, log2);
	assert_true(meta2 > 0);
	assert_true(testenv_wait(port_open, &port2, LEARN_MS));

	struct log_wait w;
	snprintf(w.path, sizeof(w.path), "%s/logs/mount.log", env.data);
	snprintf(w.needle, sizeof(w.needle), "meta instance %s joined", listen);
	uint64_t t0 = clock_mono_ms();
	assert_true(testenv_wait(log_has, &w, LEARN_MS));
	fprintf(stderr, "mount learned meta2 %s after %llu ms\n", listen,
	        (unsigned long long)(clock_mono_ms() - t0));

	integ_kill9(&env, "meta");
	t0 = clock_mono_ms();
	integ_path(&env, "after", p, sizeof(p));
	write_pattern(p, 2);
	integ_path(&env, "dir", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	integ_path(&env, "before", p, sizeof(p));
	check_pattern(p, 1);
	integ_path(&env, "after", p, sizeof(p));
	check_pattern(p, 2);
	integ_path(&env, "", p, sizeof(p));
	DIR *d = opendir(p);
	assert_non_null(d);
	int seen = 0;
	for (struct dirent *de; (de = readdir(d));)
		seen += !strcmp(de->d_name, "before") + !strcmp(de->d_name, "after") +
		        !strcmp(de->d_name, "dir");
	closedir(d);
	assert_int_equal(seen, 3);
	uint64_t took = clock_mono_ms() - t0;
	fprintf(stderr, "operations with meta1 killed took %llu ms\n", (unsigned long long)took);
	assert_true(took < BOUND_MS);

	/* Back to the cluster `chainfs down` knows: meta1 up, meta2 stopped. */
	assert_int_equal(integ_up_again(&env, "up-again"), 0);
	testenv_kill(meta2, SIGTERM);
	for (int i = 0; i < 500 && testenv_alive(meta2); i++)
		clock_sleep_ms(20);
	assert_false(testenv_alive(meta2));
	meta2 = 0;
	assert_false(testenv_file_has(log2, "ERROR: AddressSanitizer"));
	assert_false(testenv_file_has(log2, "runtime error:"));
}

static void drop_meta2(void)
{
	if (meta2 > 0)
		testenv_kill(meta2, SIGKILL);
}

int main(void)
{
	atexit(drop_meta2);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_late_meta_failover),
	};
	return integ_main(&env, "integ-metaroute", tests, sizeof(tests) / sizeof(tests[0]));
}
