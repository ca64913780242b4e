/* test_sched_hint.c - sched_hint_latency gives the calling thread (only)
 * the short slice CFS_SLICE_US asks for, keeps its nice value, and leaves
 * the kernel default with CFS_SLICE_US=0. Skipped where the kernel has no
 * custom slices (before Linux 6.12: no se.slice in /proc/.../sched, or a
 * slice asked for directly does not show there). sched_hint_parse_pressure
 * and sched_hint_cpu_pressure read the kernel's CPU pressure. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/sched_hint.h"

struct probe {
	const char *env; /* CFS_SLICE_US for the hint; NULL: unset */
	int nice;        /* set on the thread before the hint */
	long long before, after, other;
	int nice_after;
};

static pthread_mutex_t env_mu = PTHREAD_MUTEX_INITIALIZER;

static void *probe_main(void *arg)
{
	struct probe *p = arg;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	if (p->nice)
		assert_int_equal(setpriority(PRIO_PROCESS, (id_t)tid, p->nice), 0);
	p->before = sched_hint_slice_ns();
	pthread_mutex_lock(&env_mu);
	if (p->env)
		setenv("CFS_SLICE_US", p->env, 1);
	else
		unsetenv("CFS_SLICE_US");
	sched_hint_latency();
	unsetenv("CFS_SLICE_US");
	pthread_mutex_unlock(&env_mu);
	p->after = sched_hint_slice_ns();
	p->nice_after = getpriority(PRIO_PROCESS, (id_t)tid);
	return NULL;
}

static void run_probe(struct probe *p)
{
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, probe_main, p), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	p->other = sched_hint_slice_ns(); /* the main thread is untouched */
}

/* The kernel's struct sched_attr, first version. */
struct attr0 {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t prio;
	uint64_t runtime, deadline, period;
};

static void *direct_main(void *arg)
{
	struct attr0 a;
	memset(&a, 0, sizeof(a));
	if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) == 0) {
		a.size = sizeof(a);
		a.runtime = 250000;
		if (syscall(SYS_sched_setattr, 0, &a, 0) == 0)
			*(long long *)arg = sched_hint_slice_ns();
	}
	return NULL;
}

/* 1 when this kernel shows custom slices: a 250 us slice set directly
 * (not through the code under test) reads back. */
static int slices_supported(void)
{
	long long got = -1;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, direct_main, &got), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	return got == 250000;
}

static void test_default_hint(void **state)
{
	(void)state;
	if (!slices_supported())
		skip();
	struct probe p = {.env = NULL};
	run_probe(&p);
	assert_int_equal(p.after, 100000);
	assert_int_equal(p.other, p.before);
}

static void test_env_slice_and_nice_kept(void **state)
{
	(void)state;
	if (!slices_supported())
		skip();
	struct probe p = {.env = "400", .nice = 5};
	run_probe(&p);
	assert_int_equal(p.after, 400000);
	assert_int_equal(p.nice_after, 5);
}

static void test_env_zero_leaves_default(void **state)
{
	(void)state;
	if (!slices_supported())
		skip();
	struct probe p = {.env = "0"};
	run_probe(&p);
	assert_int_equal(p.after, p.before);
}

/* sched_hint_parse_pressure reads "some avg10" in hundredths of a
 * percent and refuses text without it. */
static void test_parse_pressure(void **state)
{
	(void)state;
	assert_int_equal(sched_hint_parse_pressure("some avg10=78.02 avg60=58.95 avg300=47.50 "
	                                           "total=11649048864\n"
	                                           "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
	                 7802);
	assert_int_equal(sched_hint_parse_pressure("some avg10=0.00 avg60=0.00\n"), 0);
	assert_int_equal(sched_hint_parse_pressure("some avg10=100.00 avg60=99.5\n"), 10000);
	assert_int_equal(sched_hint_parse_pressure("some avg10=5 avg60=1\n"), 500);
	assert_int_equal(sched_hint_parse_pressure("some avg10=19.9 avg60=1\n"), 1990);
	assert_int_equal(sched_hint_parse_pressure("full avg10=3.00 avg60=0.00\n"), -1);
	assert_int_equal(sched_hint_parse_pressure("some avg60=3.00\n"), -1);
	assert_int_equal(sched_hint_parse_pressure("some avg10=x\n"), -1);
	assert_int_equal(sched_hint_parse_pressure("some avg10=1000.00\n"), -1);
	assert_int_equal(sched_hint_parse_pressure(""), -1);
	/* the live file, where there is one, parses */
	if (access("/proc/pressure/cpu", R_OK) == 0) {
		int p = sched_hint_cpu_pressure();
		assert_true(p >= 0 && p <= 10000);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_hint),
		cmocka_unit_test(test_env_slice_and_nice_kept),
		cmocka_unit_test(test_env_zero_leaves_default),
		cmocka_unit_test(test_parse_pressure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
