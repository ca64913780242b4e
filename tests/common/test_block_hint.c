/* test_block_hint.c - block_hint_wait runs the calling thread's hook only:
 * not another thread's, nothing on a thread that set none, nothing once
 * cleared. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>

#include "common/block_hint.h"

static __thread int calls_here;
static int calls_a, calls_b;

static void hook_a(void)
{
	calls_a++;
	calls_here++;
}

static void hook_b(void)
{
	calls_b++;
	calls_here++;
}

static void *other_main(void *arg)
{
	int *seen = arg;
	block_hint_wait(); /* the main thread's hook is not this thread's */
	seen[0] = calls_here;
	block_hint_set(hook_b);
	block_hint_wait();
	block_hint_wait();
	seen[1] = calls_here;
	return NULL;
}

static void test_thread_local(void **state)
{
	(void)state;
	block_hint_wait(); /* none set: nothing runs */
	assert_int_equal(calls_a + calls_b, 0);
	block_hint_set(hook_a);
	block_hint_wait();
	assert_int_equal(calls_a, 1);

	int seen[2] = {-1, -1};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, other_main, seen), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(seen[0], 0);
	assert_int_equal(seen[1], 2);
	assert_int_equal(calls_b, 2);
	assert_int_equal(calls_a, 1); /* the other thread's hook did not touch ours */

	block_hint_wait();
	assert_int_equal(calls_a, 2);
	assert_int_equal(calls_here, 2);
	block_hint_set(NULL);
	block_hint_wait();
	assert_int_equal(calls_a, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thread_local),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
