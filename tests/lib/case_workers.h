/* case_workers.h - runs a cmocka test's cases in several processes at
 * once.
 *
 * For tests whose cases each start their own cluster and spend most of
 * their time waiting on it (failure detection, fault holds, resync):
 * test_craq spends ~94 % of its run asleep. Include after <cmocka.h>.
 */
#ifndef CFS_TESTS_CASE_WORKERS_H
#define CFS_TESTS_CASE_WORKERS_H

#include <stddef.h>

/* Runs TESTS[0..N) (no group setup or teardown) in WORKERS forked
 * processes, $CFS_TEST_WORKERS if set (>= 1). Each worker takes the next
 * case not yet taken, in TESTS order, and runs it as a group of one, so
 * the cases must not depend on each other's state (each starts what it
 * uses, as cmocka's own run in one process does not require). Every line
 * a worker prints comes out on stdout prefixed "[wK] " as it is printed.
 * A worker dies with this process (ctest's timeout), and its servers
 * with it (testenv_spawn). A process a case forks ends by exec or _exit:
 * one that returns into the case loop (a failed assertion, a crash under
 * cmocka's handlers) exits there with 125, taking no case. With one
 * worker, or a cmocka filter set (FILTERED: the test's argv[1], to rerun
 * one case), runs them in this process as cmocka_run_group_tests would.
 * Returns 0 when every case passed, else nonzero. Call from main before
 * any thread starts. */
int case_workers_run(const char *group, const struct CMUnitTest *tests, size_t n, int workers,
                     int filtered);

#endif
