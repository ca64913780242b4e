/* test_hex.c - hex digits both ways. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/hex.h"

/* Every char value: 0-9, a-f and A-F give their value, the rest -1. */
static void test_digit(void **state)
{
	(void)state;
	for (int c = -128; c < 256; c++) {
		char s[2] = { (char)c, 0 };
		char *end;
		long ref = strtol(s, &end, 16);
		int is_hex = c > 0 && c < 128 && *end == 0 && c != ' ' && c != '+' && c != '-';
		assert_int_equal(hex_digit(c), is_hex ? (int)ref : -1);
	}
	assert_int_equal(hex_digit('F'), 15);
	assert_int_equal(hex_digit('g'), -1);
}

/* Lowercase, two digits a byte, NUL-terminated; digits read back. */
static void test_encode(void **state)
{
	(void)state;
	const uint8_t in[] = { 0x00, 0x0f, 0xa5, 0xff, 0x10 };
	char out[2 * sizeof(in) + 1];
	memset(out, 'x', sizeof(out));
	hex_encode(in, sizeof(in), out);
	assert_string_equal(out, "000fa5ff10");
	for (size_t i = 0; i < sizeof(in); i++)
		assert_int_equal(hex_digit(out[2 * i]) << 4 | hex_digit(out[2 * i + 1]), in[i]);
	hex_encode(in, 0, out);
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digit),
		cmocka_unit_test(test_encode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
