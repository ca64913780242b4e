/* test_testenv.c - the test harness's own port helper (testenv.h):
 * ports handed to tests are distinct, below the ephemeral range, and
 * never handed to another test process while leased (ctest runs two
 * tests at once; a port probed free is free for anyone until its server
 * binds it, or while a test restarts that server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ports_leased),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
