/* test_clock.c - clock_after_ms: the absolute deadline a condition wait
 * takes, with the nanoseconds carried into seconds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>

#include "common/clock.h"

static uint64_t ts_ns(struct timespec ts)
{
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Every result is normalised (0 <= tv_nsec < 1e9) and MS later than a
 * reading taken just before, for amounts that carry into the next second
 * and for whole seconds and more. */
static void test_after_ms_normalised(void **state)
{
	(void)state;
	static const uint64_t ms[] = { 0, 1, 999, 1000, 1001, 1999, 86400001 };
	static const clockid_t clk[] = { CLOCK_MONOTONIC, CLOCK_REALTIME };
	for (int c = 0; c < 2; c++)
		for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
			for (int k = 0; k < 200; k++) { /* k: many nanosecond phases */
				struct timespec now;
				clock_gettime(clk[c], &now);
				struct timespec at = clock_after_ms(clk[c], ms[i]);
				assert_true(at.tv_nsec >= 0 && at.tv_nsec < 1000000000L);
				uint64_t d = ts_ns(at) - ts_ns(now);
				assert_true(d >= ms[i] * 1000000u);
				assert_true(d < ms[i] * 1000000u + 1000000000u); /* a loaded host */
			}
		}
}

/* A timed wait on a monotonic condition variable ends near the deadline. */
static void test_after_ms_timedwait(void **state)
{
	(void)state;
	pthread_condattr_t a;
	pthread_cond_t cv;
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &a);
	uint64_t t0 = clock_mono_ms();
	struct timespec ts = clock_after_ms(CLOCK_MONOTONIC, 120);
	int rc = 0;
	pthread_mutex_lock(&mu);
	while (rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&cv, &mu, &ts);
	pthread_mutex_unlock(&mu);
	assert_true(clock_mono_ms() - t0 >= 119);
	pthread_cond_destroy(&cv);
	pthread_condattr_destroy(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_after_ms_normalised),
		cmocka_unit_test(test_after_ms_timedwait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
