/* test_rand.h - xorshift64 (Marsaglia 2003): a seeded, reproducible
 * stream of pseudo-random numbers for test data, so a failing run can be
 * repeated byte for byte. Not for anything secret. The caller owns the
 * state (one per thread); a state of 0 stays 0. */
#ifndef CFS_TESTS_TEST_RAND_H
#define CFS_TESTS_TEST_RAND_H

#include <stddef.h>
#include <stdint.h>

/* Advances *S and returns the new value. */
static inline uint64_t test_rand_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* N bytes at P from the stream *S: the low byte of one step each. */
static inline void test_rand_fill(uint64_t *s, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)test_rand_next(s);
}

#endif
