/* test_dircache.c - the lookup's one-hold check of a complete directory
 * (fuse/dircache.h dircache_begin_absent) against the three calls it
 * stands for: dircache_begin's generation, dircache_absent's answer, and
 * the note of a name known absent only when asked (a negative entry may
 * be cached). No mount and no meta: the poll does not run within the
 * test (one every minute), and nothing is told to a kernel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fuse/dircache.h"

#define POLL_MS 60000

static void test_begin_absent_matches_the_three_calls(void **state)
{
	dircache *dc;
	assert_int_equal(dircache_new(NULL, NULL, POLL_MS, 0, &dc), 0);
	uint64_t gen = 7;
	int cache = 7;

	/* a directory this mount did not make: not known, gen as begin's */
	assert_int_equal(dircache_begin_absent(dc, 10, "a", 1, &gen, &cache), 0);
	assert_true(gen == dircache_begin(dc, 10));
	assert_int_equal(cache, 0);

	/* one it made: every name absent, noted (cacheable) when asked */
	dircache_dir_made(dc, 20);
	assert_int_equal(dircache_begin_absent(dc, 20, "a", 1, &gen, &cache), 1);
	assert_int_equal(cache, 1);
	assert_true(gen == dircache_begin(dc, 20));
	assert_int_equal(dircache_absent(dc, 20, "a"), 1); /* noting does not add it */
	/* not asked to note: known absent, nothing to cache */
	assert_int_equal(dircache_begin_absent(dc, 20, "b", 0, &gen, &cache), 1);
	assert_int_equal(cache, 0);

	/* a name this mount added there is not absent any more */
	dircache_own_begin(dc);
	dircache_own_end(dc, 20, "c", 1);
	assert_int_equal(dircache_begin_absent(dc, 20, "c", 1, &gen, &cache), 0);
	assert_int_equal(cache, 0);
	assert_true(gen == dircache_begin(dc, 20));
	assert_int_equal(dircache_absent(dc, 20, "c"), 0);

	/* incomplete (a rename): nothing known absent */
	dircache_incomplete(dc, 20);
	assert_int_equal(dircache_begin_absent(dc, 20, "d", 1, &gen, &cache), 0);

	assert_int_equal(dircache_stop(dc, 5000), 0);
	dircache_free(dc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_begin_absent_matches_the_three_calls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
