/* bench_mtcreate.h - metadata phases from several threads, each in its own
 * directory: the "mtcreate" phase of chainfs bench fuse (issue 13: 8
 * threads in 8 directories create >= 3x what one thread does). */
#ifndef CFS_CLI_BENCH_MTCREATE_H
#define CFS_CLI_BENCH_MTCREATE_H

enum bench_mt_phase { BENCH_MT_CREATE, BENCH_MT_STAT, BENCH_MT_UNLINK, BENCH_MT_NPHASES };

/* Rates (ops/s) of one run; -1 for a phase that failed or did not run. */
struct bench_mt_rates {
	double ops[BENCH_MT_NPHASES];
};

/* Makes DIR/mt.d0000 .. DIR/mt.d<DIRS-1> (DIR must exist), then times three
 * phases over FILES files: open(O_CREAT|O_EXCL|O_WRONLY)+close, stat,
 * unlink. File i lives in directory i % DIRS and is handled by thread
 * i % THREADS, so with THREADS == DIRS every thread works in a directory
 * of its own, and with one thread the same files go round the directories.
 * All threads start each phase together; a phase's time runs until the
 * last thread ends it. Everything created is removed, also after a failure.
 * THREADS 1..256, DIRS 1..10000, FILES >= 1. Blocks; spawns THREADS threads
 * per phase. Returns 0, or -errno after a message naming the path. */
int bench_mtcreate_run(const char *dir, long long files, int threads, int dirs,
                       struct bench_mt_rates *out);

/* The phase's name for tables ("create", "stat", "unlink"). */
const char *bench_mtcreate_phase_name(enum bench_mt_phase ph);

#endif
