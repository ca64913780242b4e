/* bench_fio.h - the fio baseline that bench groups measure against, and
 * the child-process capture it needs. Both block; call from the bench's
 * main thread. */
#ifndef CFS_CLI_BENCH_FIO_H
#define CFS_CLI_BENCH_FIO_H

/* Runs ARGV[0] with ARGV and returns its stdout (malloc'd, NUL-terminated;
 * caller frees), or NULL when it could not run or exited non-zero. */
char *bench_run_capture(char *const argv[]);

/* IOPS of fio (io_uring, O_DIRECT) on DIR/fio.dat of SIZE_MB MiB with RW
 * ("write", "read", "randread"...), block size BS and depth QD; randread
 * runs SECONDS time-based, the others once over the file. EXTRA is one more
 * fio argument or NULL. Returns -1 after a message prefixed by WHO when fio
 * fails (not installed, bad directory). */
double bench_fio_iops(const char *who, const char *dir, unsigned size_mb, unsigned seconds,
		      const char *rw, const char *bs, unsigned qd, const char *extra);

/* CPU time (utime + stime) of process PID so far, in seconds, or -1. */
double bench_proc_cpu(int pid);

#endif
