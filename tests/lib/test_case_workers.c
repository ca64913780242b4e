/* test_case_workers.c - case_workers_run (case_workers.h): every case runs
 * in a worker, never in a process a case forked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "case_workers.h"

#define NCASES 4

/* ran_by[k]: the parent of the process that ran case k (shared memory). */
static volatile pid_t *ran_by;

static void mark(int k)
{
	ran_by[k] = getppid();
}

/* A forked helper fails an assertion (cmocka longjmps it back into the
 * case loop it was forked in); the case waits for it to end. */
static void test_child_fails(void **state)
{
	(void)state;
	mark(0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		fail_msg("the forked helper fails (expected)");
	int st = 0;
	uint64_t until = clock_mono_ms() + 20000;
	while (waitpid(pid, &st, WNOHANG) == 0 && clock_mono_ms() < until)
		clock_sleep_ms(20);
	if (clock_mono_ms() >= until) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	/* It exits, nonzero: a helper that ends otherwise is seen to. */
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
}

/* Busy while the helper above fails, so the next case is still free. */
static void test_slow(void **state)
{
	(void)state;
	clock_sleep_ms(2000);
	mark(1);
}

static void test_next(void **state)
{
	(void)state;
	mark(2);
}

static void test_last(void **state)
{
	(void)state;
	mark(3);
}

int main(void)
{
	ran_by = mmap(NULL, NCASES * sizeof(*ran_by), PROT_READ | PROT_WRITE,
	              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ran_by == MAP_FAILED)
		return 1;
	const struct CMUnitTest tests[NCASES] = {
	    cmocka_unit_test(test_child_fails),
	    cmocka_unit_test(test_slow),
	    cmocka_unit_test(test_next),
	    cmocka_unit_test(test_last),
	};
	unsetenv("CFS_TEST_WORKERS"); /* this tests the workers */
	int rc = case_workers_run("test_case_workers", tests, NCASES, 2, 0);
	/* Each case ran in a worker, a child of this process. */
	for (int k = 0; k < NCASES; k++)
		if (ran_by[k] != getpid()) {
			printf(
			    "case %d ran in a process whose parent is %d, not in a worker of %d\n",
			    k, (int)ran_by[k], (int)getpid());
			rc = 1;
		}
	return rc;
}
