/* test_iobuf.c - the I/O buffer pool (common/iobuf.h): buffers are
 * page-aligned, writable over IOBUF_SIZE and distinct while handed out; a
 * buffer put back is handed out again (no new mapping); at most
 * IOBUF_KEEP idle buffers stay mapped after any number were out at once;
 * gets and puts from several threads keep the count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>

#include "common/iobuf.h"

static void test_aligned_distinct(void **state)
{
	(void)state;
	void *b[5];
	for (int i = 0; i < 5; i++) {
		b[i] = iobuf_get();
		assert_non_null(b[i]);
		assert_int_equal((uintptr_t)b[i] % 4096, 0);
		memset(b[i], i + 1, IOBUF_SIZE);
	}
	for (int i = 0; i < 5; i++) {
		const uint8_t *p = b[i];
		assert_int_equal(p[0], i + 1);
		assert_int_equal(p[IOBUF_SIZE - 1], i + 1); /* no other buffer overlaps */
	}
	for (int i = 0; i < 5; i++)
		iobuf_put(b[i]);
	iobuf_put(NULL);
}

/* The one put last comes out next, and no mapping is made for it. */
static void test_reuse(void **state)
{
	(void)state;
	void *a = iobuf_get();
	assert_non_null(a);
	size_t m = iobuf_mapped();
	iobuf_put(a);
	void *b = iobuf_get();
	assert_ptr_equal(a, b);
	assert_int_equal(iobuf_mapped(), m);
	iobuf_put(b);
}

/* Many out at once, all put back: only IOBUF_KEEP stay mapped. */
static void test_bounded(void **state)
{
	(void)state;
	enum { N = 3 * IOBUF_KEEP + 1 };
	static void *b[N];
	for (int i = 0; i < N; i++) {
		b[i] = iobuf_get();
		assert_non_null(b[i]);
		((uint8_t *)b[i])[4096] = 1;
	}
	assert_true(iobuf_mapped() >= N);
	for (int i = 0; i < N; i++)
		iobuf_put(b[i]);
	assert_int_equal(iobuf_mapped(), IOBUF_KEEP);
}

static void *churn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++) {
		void *x = iobuf_get(), *y = iobuf_get();
		if (!x || !y)
			return (void *)1;
		((volatile uint8_t *)x)[0] = 1;
		((volatile uint8_t *)y)[IOBUF_SIZE - 1] = 2;
		iobuf_put(x);
		iobuf_put(y);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn, NULL), 0);
	for (int i = 0; i < 4; i++) {
		void *rc;
		assert_int_equal(pthread_join(t[i], &rc), 0);
		assert_null(rc);
	}
	/* all back: none out, so at most the kept ones mapped */
	assert_true(iobuf_mapped() <= IOBUF_KEEP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aligned_distinct),
		cmocka_unit_test(test_reuse),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
