/* test_procstat.c - /proc/PID/stat read right: this process, a process
 * whose name holds spaces and parentheses, a zombie, and no process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/procstat.h"

static void test_self(void **state)
{
	(void)state;
	struct procstat a, b;
	assert_int_equal(procstat_read(getpid(), &a), 0);
	assert_int_equal(a.state, 'R'); /* it is reading its own stat */
	assert_true(a.start > 0);
	/* Burn some CPU: utime + stime grows, the start time stays. */
	volatile unsigned long x = 0;
	for (unsigned long i = 0; i < 300000000ul; i++)
		x += i;
	assert_int_equal(procstat_read(getpid(), &b), 0);
	assert_true(b.utime + b.stime > a.utime + a.stime);
	assert_true(b.start == a.start);
	assert_true(procstat_running(getpid()));
	assert_true(procstat_running_since(getpid(), a.start));
	assert_false(procstat_running_since(getpid(), a.start + 1));
}

/* A child named "a) b (c" (prctl): fields are found after the last ')'.
 * Once it has exited it is a zombie (not running) until reaped, then gone. */
static void test_child_zombie_gone(void **state)
{
	(void)state;
	int pp[2];
	assert_int_equal(pipe(pp), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c;
		prctl(PR_SET_NAME, "a) b (c", 0, 0, 0);
		close(pp[1]);
		if (read(pp[0], &c, 1) < 0) /* until the parent says exit */
			_exit(2);
		_exit(0);
	}
	close(pp[0]);
	struct procstat me, ch;
	assert_int_equal(procstat_read(getpid(), &me), 0);
	/* The child may not have renamed itself yet: wait for its sleep. */
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(procstat_read(pid, &ch), 0);
		if (ch.state == 'S')
			break;
		usleep(1000);
	}
	assert_int_equal(ch.state, 'S');
	assert_true(ch.start >= me.start);
	assert_true(procstat_running_since(pid, ch.start));
	close(pp[1]); /* the child reads EOF and exits */
	for (int i = 0; i < 1000 && procstat_running(pid); i++)
		usleep(1000);
	assert_false(procstat_running(pid));
	assert_int_equal(procstat_read(pid, &ch), 0);
	assert_int_equal(ch.state, 'Z');
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(procstat_read(pid, &ch), -ENOENT);
	assert_int_equal(procstat_read(0, &ch), -ENOENT);
	assert_int_equal(procstat_read(-1, &ch), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self),
		cmocka_unit_test(test_child_zombie_gone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
