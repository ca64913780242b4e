/* test_log.c - level filtering happens before formatting, the sink sees
 * module-tagged lines, and a file sink gets whole lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "testenv.h"

static char last[512];
static int calls;

static void sink(void *arg, enum log_level lvl, const char *module, const char *line)
{
	(void)arg;
	(void)lvl;
	(void)module;
	snprintf(last, sizeof(last), "%s", line);
	calls++;
}

static int evaluated;
static int side_effect(void) { return ++evaluated; }

static void test_levels_and_sink(void **state)
{
	(void)state;
	log_set_sink(sink, NULL);
	log_set_level(LOG_LVL_WARN);
	LOG_INFO("net", "dropped %d", side_effect());
	assert_int_equal(calls, 0);
	assert_int_equal(evaluated, 0); /* arguments not evaluated below threshold */
	LOG_WARN("net", "conn: closed: peer=%s", "127.0.0.1:1");
	assert_int_equal(calls, 1);
	assert_non_null(strstr(last, "WARN net: conn: closed: peer=127.0.0.1:1"));
	enum log_level l;
	assert_int_equal(log_parse_level("debug", &l), 0);
	assert_int_equal(l, LOG_LVL_DEBUG);
	assert_int_equal(log_parse_level("loud", &l), -EINVAL);
}

static void test_file(void **state)
{
	(void)state;
	char *dir = testenv_tmpdir("log");
	char path[512];
	snprintf(path, sizeof(path), "%s/x.log", dir);
	assert_int_equal(log_open_file(path), 0);
	log_set_level(LOG_LVL_INFO);
	LOG_INFO("kv", "commit: n=%d", 3);
	FILE *f = fopen(path, "r");
	char line[256] = "";
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_non_null(strstr(line, "INFO kv: commit: n=3\n"));
	assert_int_equal(log_open_file("/nonexistent/dir/x.log"), -ENOENT);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_and_sink),
		cmocka_unit_test(test_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
