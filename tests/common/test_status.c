/* test_status.c - every ChainFS code has a name and a message; errno codes
 * of either sign read like strerror. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "common/status.h"

static void test_cfs_codes_named(void **state)
{
	(void)state;
	for (int c = CFS_EBASE; c < CFS_ELAST; c++) {
		assert_string_not_equal(cfs_strerror(-c), "unknown error");
		assert_true(strncmp(cfs_errname(c), "CFS_E", 5) == 0);
		assert_string_equal(cfs_strerror(c), cfs_strerror(-c));
	}
	/* Codes must stay inside the pointer-error window. */
	assert_true(CFS_ELAST < 4095);
	assert_true(CFS_EBASE > 133); /* above every Linux errno */
}

static void test_errno_codes(void **state)
{
	(void)state;
	assert_string_equal(cfs_strerror(-ENOENT), "No such file or directory");
	assert_string_equal(cfs_errname(-ENOENT), "ENOENT");
	assert_string_equal(cfs_strerror(0), "success");
	assert_string_equal(cfs_strerror(-999), "unknown error");
	assert_string_equal(cfs_errname(-2999), "EUNKNOWN");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cfs_codes_named),
		cmocka_unit_test(test_errno_codes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
