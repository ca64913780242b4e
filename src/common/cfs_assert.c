/* cfs_assert.c - the failure path of ASSERT (cfs_assert.h). Writes with
 * plain stdio so it works even when the log module is the thing broken. */
#include <stdio.h>
#include <stdlib.h>

#include "common/cfs_assert.h"
#include "common/log.h"

void cfs_assert_fail(const char *expr, const char *file, int line, const char *func)
{
	log_write(LOG_LVL_ERR, "assert", "%s:%d: %s: assertion failed: %s", file, line, func, expr);
	fprintf(stderr, "chainfs: %s:%d: %s: assertion failed: %s\n", file, line, func, expr);
	abort();
}
