/* test_etcd_parse.c - the etcd client's reply decoders on good and bad
 * bytes (no cluster needed).
 *
 * A reply comes from a peer, so a malformed one must give -CFS_EPROTO and
 * leave nothing allocated, never crash: wrong JSON types, bad base64 (bad
 * characters, bad length), missing keys, unknown txn response kinds,
 * numbers that overflow. Good replies decode binary keys and values, int64
 * fields sent as strings, uint64 member ids and proto3's omitted defaults.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/status.h"
#include "kv/etcd_client.h"

static int range(const char *json, struct etcdc_range_res *r)
{
	return etcdc_parse_range_reply(json, strlen(json), r);
}

static int txn(const char *json, struct etcdc_txn_res *r)
{
	return etcdc_parse_txn_reply(json, strlen(json), r);
}

static void test_range_good(void **state)
{
	(void)state;
	struct etcdc_range_res r;
	/* key "\0\xff" = "AP8=", value "abc" = "YWJj"; member id > INT64_MAX */
	const char *j = "{\"header\":{\"member_id\":\"12378412519364637080\",\"revision\":\"42\"},"
			"\"kvs\":[{\"key\":\"AP8=\",\"create_revision\":\"5\",\"mod_revision\":"
			"\"41\",\"version\":\"3\",\"value\":\"YWJj\",\"lease\":\"7\"},"
			"{\"key\":\"YQ==\"}],\"more\":true,\"count\":\"9\"}";
	assert_int_equal(range(j, &r), 0);
	assert_int_equal(r.revision, 42);
	assert_true(r.member_id == 12378412519364637080ull);
	assert_true(r.more);
	assert_int_equal(r.count, 9);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.kvs[0].key_len, 2);
	assert_memory_equal(r.kvs[0].key, "\0\xff", 2);
	assert_int_equal(r.kvs[0].val_len, 3);
	assert_memory_equal(r.kvs[0].val, "abc", 3);
	assert_int_equal(r.kvs[0].create_rev, 5);
	assert_int_equal(r.kvs[0].mod_rev, 41);
	assert_int_equal(r.kvs[0].version, 3);
	assert_int_equal(r.kvs[0].lease, 7);
	/* omitted fields are proto3 zero values */
	assert_int_equal(r.kvs[1].key_len, 1);
	assert_null(r.kvs[1].val);
	assert_int_equal(r.kvs[1].mod_rev, 0);
	etcdc_range_res_fini(&r);
	assert_int_equal(range("{}", &r), 0);
	assert_int_equal(r.n, 0);
	assert_false(r.more);
	etcdc_range_res_fini(&r);
}

static void test_range_bad(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"[]",
		"nonsense",
		"{\"kvs\":",
		"{\"kvs\":{}}",
		"{\"kvs\":[1]}",
		"{\"kvs\":[{}]}",
		"{\"kvs\":[{\"key\":3}]}",
		"{\"kvs\":[{\"key\":\"@@@@\"}]}",
		"{\"kvs\":[{\"key\":\"YQ=\"}]}",
		"{\"kvs\":[{\"key\":\"YQ==\",\"value\":\"Y\"}]}",
		"{\"kvs\":[{\"key\":\"YQ==\"},{\"key\":\"!!!!\"}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct etcdc_range_res r;
		int rc = range(bad[i], &r);
		if (rc != -CFS_EPROTO)
			fail_msg("reply %zu '%s' gave %d", i, bad[i], rc);
		assert_null(r.kvs);
		assert_null(r.mem);
	}
	/* numbers that do not fit read as 0, not garbage */
	struct etcdc_range_res r;
	assert_int_equal(range("{\"header\":{\"revision\":\"99999999999999999999\"},"
			       "\"count\":\"12x\"}", &r), 0);
	assert_int_equal(r.revision, 0);
	assert_int_equal(r.count, 0);
	etcdc_range_res_fini(&r);
}

static void test_txn(void **state)
{
	(void)state;
	struct etcdc_txn_res t;
	const char *j = "{\"header\":{\"revision\":\"8\"},\"succeeded\":true,\"responses\":["
			"{\"response_range\":{\"kvs\":[{\"key\":\"YQ==\",\"mod_revision\":\"3\"}],"
			"\"count\":\"1\"}},{\"response_put\":{}},"
			"{\"response_delete_range\":{\"deleted\":\"2\"}}]}";
	assert_int_equal(txn(j, &t), 0);
	assert_int_equal(t.revision, 8);
	assert_true(t.succeeded);
	assert_int_equal(t.nops, 3);
	assert_int_equal(t.ops[0].type, ETCDC_OP_RANGE);
	assert_int_equal(t.ops[0].range.n, 1);
	assert_int_equal(t.ops[0].range.kvs[0].mod_rev, 3);
	assert_int_equal(t.ops[1].type, ETCDC_OP_PUT);
	assert_int_equal(t.ops[2].type, ETCDC_OP_DELETE);
	assert_int_equal(t.ops[2].deleted, 2);
	etcdc_txn_res_fini(&t);
	/* succeeded omitted = false (proto3) */
	assert_int_equal(txn("{\"header\":{\"revision\":\"8\"}}", &t), 0);
	assert_false(t.succeeded);
	etcdc_txn_res_fini(&t);
	static const char *const bad[] = {
		"{\"responses\":{}}",
		"{\"responses\":[{\"response_other\":{}}]}",
		"{\"responses\":[7]}",
		"{\"responses\":[{\"response_put\":{}},{\"response_range\":{\"kvs\":[{\"key\":\"*\"}]}}]}",
		"{\"responses\":[{\"response_range\":{\"kvs\":\"x\"}}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = txn(bad[i], &t);
		if (rc != -CFS_EPROTO)
			fail_msg("txn reply %zu '%s' gave %d", i, bad[i], rc);
		assert_null(t.ops);
		assert_int_equal(t.nops, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_range_good),
		cmocka_unit_test(test_range_bad),
		cmocka_unit_test(test_txn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
