/* test_cache_probe.c - the page-cache probe policy (common/cache_probe.h):
 * warm while probes hit; cold (one read in CACHE_PROBE_SAMPLE probes)
 * after a window of mostly misses whose hit rate did not rise; a set that
 * starts cold but warms (hit rate rising window by window) keeps probing;
 * a cold probe comes back once its sampled probes hit; without the rise
 * test a rising rate below the bar goes cold. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cache_probe.h"

/* Runs READS reads: each wanted probe hits when HIT_PER_MILLE of the
 * window's probes so far would have hit (an evenly spread rate). Returns
 * how many probed. */
static uint32_t run(struct cache_probe *cp, uint32_t reads, uint32_t hit_per_mille)
{
	uint32_t probed = 0;
	for (uint32_t i = 0; i < reads; i++) {
		if (!cache_probe_wanted(cp))
			continue;
		probed++;
		cache_probe_report(cp, (probed * hit_per_mille) / 1000 !=
		                           ((probed - 1) * hit_per_mille) / 1000);
	}
	return probed;
}

static void test_warm_stays_warm(void **state)
{
	(void)state;
	struct cache_probe cp;
	cache_probe_init(&cp, 0, CACHE_PROBE_RISE);
	assert_int_equal(run(&cp, 5 * CACHE_PROBE_WINDOW, 1000), 5 * CACHE_PROBE_WINDOW);
	/* a hit rate of 60 %, steady: still above the bar */
	assert_int_equal(run(&cp, 5 * CACHE_PROBE_WINDOW, 600), 5 * CACHE_PROBE_WINDOW);
	assert_false(atomic_load(&cp.cold));
	assert_int_equal(atomic_load(&cp.direct), 0);
}

static void test_flat_misses_go_cold(void **state)
{
	(void)state;
	struct cache_probe cp;
	cache_probe_init(&cp, 0, CACHE_PROBE_RISE);
	/* 10 % hits, flat: the first window rose from nothing, so cold
	 * after the second */
	assert_int_equal(run(&cp, CACHE_PROBE_WINDOW, 100), CACHE_PROBE_WINDOW);
	assert_false(atomic_load(&cp.cold));
	assert_int_equal(run(&cp, CACHE_PROBE_WINDOW, 100), CACHE_PROBE_WINDOW);
	assert_true(atomic_load(&cp.cold));
	uint32_t reads = 8 * CACHE_PROBE_SAMPLE * CACHE_PROBE_WINDOW;
	uint32_t probed = run(&cp, reads, 100);
	assert_int_equal(probed, reads / CACHE_PROBE_SAMPLE);
	assert_int_equal(atomic_load(&cp.direct), reads - probed);
	assert_true(atomic_load(&cp.cold));
}

static void test_rising_keeps_probing(void **state)
{
	(void)state;
	struct cache_probe cp;
	cache_probe_init(&cp, 0, CACHE_PROBE_RISE);
	/* a set that fits, warming after a drop of caches: 3 % more hits
	 * each window from 3 %, all below the 50 % bar */
	for (uint32_t w = 0; w < 15; w++) {
		assert_int_equal(run(&cp, CACHE_PROBE_WINDOW, 30 + 30 * w), CACHE_PROBE_WINDOW);
		assert_false(atomic_load(&cp.cold));
	}
	assert_int_equal(atomic_load(&cp.direct), 0);
}

static void test_cold_comes_back(void **state)
{
	(void)state;
	struct cache_probe cp;
	cache_probe_init(&cp, 0, CACHE_PROBE_RISE);
	run(&cp, CACHE_PROBE_WINDOW, 0);
	assert_true(atomic_load(&cp.cold));
	run(&cp, CACHE_PROBE_SAMPLE * CACHE_PROBE_WINDOW, 0);
	assert_true(atomic_load(&cp.cold));
	/* the working set now fits and is cached: one window of sampled
	 * probes that hit brings every read back to the cache */
	run(&cp, CACHE_PROBE_SAMPLE * CACHE_PROBE_WINDOW, 1000);
	assert_false(atomic_load(&cp.cold));
	assert_int_equal(run(&cp, 100, 1000), 100);
}

/* Without CACHE_PROBE_RISE (the chunk engine: windows of 256) the bar
 * alone decides: a window below it turns the probe cold even when its
 * hit rate rose, and half the window hitting brings it back. */
static void test_no_rise_test(void **state)
{
	(void)state;
	struct cache_probe cp;
	cache_probe_init(&cp, 256, 0);
	assert_int_equal(run(&cp, 256, 300), 256); /* up 30 points from nothing */
	assert_true(atomic_load(&cp.cold));
	for (uint32_t w = 0; w < 4; w++) { /* 30 % .. 45 %, rising */
		assert_int_equal(run(&cp, CACHE_PROBE_SAMPLE * 256, 300 + 50 * w), 256);
		assert_true(atomic_load(&cp.cold));
	}
	assert_int_equal(atomic_load(&cp.direct), 4 * (CACHE_PROBE_SAMPLE - 1) * 256);
	run(&cp, CACHE_PROBE_SAMPLE * 256, 500);
	assert_false(atomic_load(&cp.cold));
	assert_int_equal(run(&cp, 100, 0), 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_warm_stays_warm),
	    cmocka_unit_test(test_flat_misses_go_cold),
	    cmocka_unit_test(test_rising_keeps_probing),
	    cmocka_unit_test(test_cold_comes_back),
	    cmocka_unit_test(test_no_rise_test),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
