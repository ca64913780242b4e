/* test_stor_backoff.c - the rejoin backoff of a replica fenced for a full
 * disk (storage_targets.c stor_nospace_*, docs/operations.md "A full
 * disk"): 2 s doubling per fence up to 60 s, and back to 2 s once the
 * replica has served 60 s in one go. Before the reset existed, a replica
 * that had once reached 60 s waited the full minute at every later fence,
 * however long it had served in between (test_reset_after_serving). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "storage/storage_int.h"

static void test_doubling(void **state)
{
	(void)state;
	struct stor_target t;
	memset(&t, 0, sizeof(t));
	const uint32_t want[] = { 2000, 4000, 8000, 16000, 32000, 60000, 60000 };
	uint64_t now = 1000;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(stor_nospace_fenced(&t, now), want[i]);
		assert_int_equal(atomic_load(&t.nospace_until), now + want[i]);
		now += 500;
	}
}

static void test_reset_after_serving(void **state)
{
	(void)state;
	struct stor_target t;
	memset(&t, 0, sizeof(t));
	uint64_t now = 5000;
	for (int i = 0; i < 6; i++)
		stor_nospace_fenced(&t, now);
	assert_int_equal(atomic_load(&t.nospace_backoff_ms), 60000);
	/* serving 59 s, a break, then 59 s again: no reset */
	for (uint64_t ms = 0; ms <= 59000; ms += 1000)
		assert_false(stor_nospace_served(&t, 1, now + ms));
	assert_false(stor_nospace_served(&t, 0, now + 59500));
	now += 60000;
	for (uint64_t ms = 0; ms <= 59000; ms += 1000)
		assert_false(stor_nospace_served(&t, 1, now + ms));
	assert_int_equal(atomic_load(&t.nospace_backoff_ms), 60000);
	/* 60 s in one go: reset once, and the next fence waits 2 s */
	assert_true(stor_nospace_served(&t, 1, now + 60000));
	assert_false(stor_nospace_served(&t, 1, now + 61000));
	assert_int_equal(atomic_load(&t.nospace_backoff_ms), 0);
	assert_int_equal(stor_nospace_fenced(&t, now + 62000), 2000);
	/* the fence stops the serving clock: serving right after does not reset */
	assert_false(stor_nospace_served(&t, 1, now + 64000));
	assert_false(stor_nospace_served(&t, 1, now + 100000));
	assert_int_equal(stor_nospace_fenced(&t, now + 101000), 4000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doubling),
		cmocka_unit_test(test_reset_after_serving),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
