/* test_kv_url.c - kv_url_parse (kv_int.h): the parts of a KV URL,
 * percent-decoded, and bad escapes refused with a message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "kv/kv_int.h"

static void test_parts_decoded(void **state)
{
	(void)state;
	struct kv_url u;
	char err[256] = "";
	assert_int_equal(kv_url_parse("lmdb:///tmp/a%20b%2Fc?map_size=1%30g&sync=none&flag", &u,
				      err, sizeof(err)), 0);
	assert_string_equal(u.scheme, "lmdb");
	assert_string_equal(u.authority, "");
	assert_string_equal(u.path, "/tmp/a b/c");
	assert_int_equal(u.nopts, 3);
	assert_string_equal(kv_url_opt(&u, "map_size"), "10g");
	assert_string_equal(kv_url_opt(&u, "sync"), "none");
	assert_string_equal(kv_url_opt(&u, "flag"), "");
	assert_null(kv_url_opt(&u, "other"));
	kv_url_fini(&u);
	assert_int_equal(kv_url_parse("etcd://h1:2379,h%32:2379/pre%7efix", &u, err, sizeof(err)),
			 0);
	assert_string_equal(u.authority, "h1:2379,h2:2379");
	assert_string_equal(u.path, "/pre~fix");
	kv_url_fini(&u);
	/* a repeated key: the last wins (meta_local.c appends compact=0 to
	 * meta's URL whatever it says) */
	assert_int_equal(kv_url_parse("lmdb:///tmp/x?compact=1&sync=window&compact=0", &u, err,
				      sizeof(err)), 0);
	assert_string_equal(kv_url_opt(&u, "compact"), "0");
	kv_url_fini(&u);
}

/* A short, non-hex or NUL escape is -EINVAL with a message; nothing is
 * left allocated (ASan builds). */
static void test_bad_escapes(void **state)
{
	(void)state;
	static const char *const bad[] = { "lmdb:///tmp/x%2", "lmdb:///tmp/x%g0", "lmdb:///tmp/%00",
					   "mem://?k=%", "mem://?%zz=1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kv_url u;
		char err[256] = "";
		assert_int_equal(kv_url_parse(bad[i], &u, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "%-escape"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parts_decoded),
		cmocka_unit_test(test_bad_escapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
