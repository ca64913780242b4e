/* lmdb_holder.h - a child process that holds an LMDB environment's writer
 * lock, for tests of what waits on it (kv_lmdb.c "Waits and the block
 * hint", test_integ_metalocal).
 *
 * Threads: call from the test's main thread (it forks). */
#ifndef CFS_TESTS_LMDB_HOLDER_H
#define CFS_TESTS_LMDB_HOLDER_H

#include <sys/types.h>

/* Forks a child that opens the environment in directory PATH with LMDB
 * itself and begins a write txn; returns the child's pid once it holds
 * the lock, or -1 (then nothing is left running). The child aborts the
 * txn and exits 0 when a byte comes on the pipe whose write end is put in
 * *RELEASE (the caller closes it), or after HOLD_MS; it exits nonzero if
 * it could not take the lock. The caller reaps it. */
pid_t lmdb_hold_writer(const char *path, int hold_ms, int *release);

#endif
