/* cfs_assert.h - always-on invariant checks (STYLE.md §4).
 *
 * ASSERT guards invariants whose failure means corruption: it logs
 * file:line and the expression, then aborts. DEBUG_ASSERT is for expensive
 * checks, compiled in when CFS_DEBUG_ASSERT is defined (CI does). Never use
 * either on bytes from a peer or the disk: validate and return an error.
 */
#ifndef CFS_COMMON_ASSERT_H
#define CFS_COMMON_ASSERT_H

void cfs_assert_fail(const char *expr, const char *file, int line, const char *func)
	__attribute__((noreturn));

#define ASSERT(e) \
	((e) ? (void)0 : cfs_assert_fail(#e, __FILE__, __LINE__, __func__))

#ifdef CFS_DEBUG_ASSERT
#define DEBUG_ASSERT(e) ASSERT(e)
#else
#define DEBUG_ASSERT(e) ((void)sizeof(e))
#endif

#endif
