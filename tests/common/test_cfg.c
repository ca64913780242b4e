/* test_cfg.c - defaults, file, flags (flags win), bounds, sizes, unknown
 * keys with file:line, positional arguments. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg.h"
#include "testenv.h"

struct conf {
	char *listen;
	int64_t threads;
	int64_t chunk;
	int verbose;
};

static const struct cfg_opt opts[] = {
	{ "listen", CFG_STR, "127.0.0.1:9000", 0, 0, offsetof(struct conf, listen), "address" },
	{ "threads", CFG_INT, "2", 1, 64, offsetof(struct conf, threads), "loop threads" },
	{ "chunk-size", CFG_SIZE, "1M", 65536, 1 << 26, offsetof(struct conf, chunk), "chunk" },
	{ "verbose", CFG_BOOL, "false", 0, 0, offsetof(struct conf, verbose), "more logs" },
	CFG_END,
};

static int parse(int argc, char **argv, struct conf *c, int *npos, char *err)
{
	memset(c, 0, sizeof(*c));
	return cfg_parse(opts, c, argc, argv, npos, err, 256);
}

static void test_defaults_and_flags(void **state)
{
	(void)state;
	struct conf c;
	char err[256];
	int npos;
	char *argv[] = { "x", "pos1", "--threads", "8", "--chunk-size=4M", "--verbose", "pos2", NULL };
	assert_int_equal(parse(7, argv, &c, &npos, err), 0);
	assert_string_equal(c.listen, "127.0.0.1:9000");
	assert_int_equal(c.threads, 8);
	assert_int_equal(c.chunk, 4 << 20);
	assert_int_equal(c.verbose, 1);
	assert_int_equal(npos, 2);
	assert_string_equal(argv[0], "pos1");
	assert_string_equal(argv[1], "pos2");
	cfg_free(opts, &c);
	assert_null(c.listen);
}

static void test_errors(void **state)
{
	(void)state;
	struct conf c;
	char err[256];
	int npos;
	char *a1[] = { "x", "--threads=100", NULL };
	assert_int_equal(parse(2, a1, &c, &npos, err), -EINVAL);
	assert_non_null(strstr(err, "outside"));
	/* the strings set before the error are freed by cfg_parse */
	assert_null(c.listen);
	cfg_free(opts, &c);
	char *a2[] = { "x", "--bogus=1", NULL };
	assert_int_equal(parse(2, a2, &c, &npos, err), -EINVAL);
	assert_non_null(strstr(err, "--bogus"));
	cfg_free(opts, &c);
	char *a3[] = { "x", "--chunk-size=12Q", NULL };
	assert_int_equal(parse(2, a3, &c, &npos, err), -EINVAL);
	cfg_free(opts, &c);
	char *a4[] = { "x", "--threads", NULL };
	assert_int_equal(parse(2, a4, &c, &npos, err), -EINVAL);
	cfg_free(opts, &c);
}

static void test_file_then_flags(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("cfg");
	char path[512];
	snprintf(path, sizeof(path), "%s/a.conf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "# comment\n[storage]\nlisten = 127.0.0.1:7000\nthreads = 4\n");
	fclose(f);
	struct conf c;
	char err[256];
	int npos;
	char *argv[] = { "x", "--config", path, "--threads=6", NULL };
	assert_int_equal(parse(4, argv, &c, &npos, err), 0);
	assert_string_equal(c.listen, "127.0.0.1:7000");
	assert_int_equal(c.threads, 6);
	assert_int_equal(npos, 0);
	cfg_free(opts, &c);

	f = fopen(path, "a");
	fprintf(f, "\nspeling = 3\n");
	fclose(f);
	assert_int_equal(parse(4, argv, &c, &npos, err), -EINVAL);
	assert_non_null(strstr(err, ":6: unknown key 'speling'"));
	cfg_free(opts, &c);
	free(dir);
}

static void test_sizes(void **state)
{
	(void)state;
	int64_t v;
	assert_int_equal(cfg_parse_size("64K", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(cfg_parse_size("2GiB", &v), 0);
	assert_true(v == 2LL << 30);
	assert_int_equal(cfg_parse_size("-1", &v), -EINVAL);
	assert_int_equal(cfg_parse_size("99999999999T", &v), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_flags),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_file_then_flags),
		cmocka_unit_test(test_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
