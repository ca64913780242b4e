/* bench_fio.h - the fio baseline that bench groups measure against, and
 * the child-process capture it needs. Both block; call from the bench's
 * main thread. */
#ifndef CFS_CLI_BENCH_FIO_H
#define CFS_CLI_BENCH_FIO_H

#include <stdio.h>

#define BENCH_FIO_MAX_QD 256
#define BENCH_FIO_MAX_ROUNDS 16

/* The options of the benches that run beside fio on one directory
 * (bench chunk, bench storage). */
struct bench_fio_opts {
	const char *dir;
	unsigned size_mb;  /* data set */
	unsigned qd_seq;   /* 1 MiB phases */
	unsigned qd_rand;  /* 4 KiB random phases */
	unsigned seconds;  /* random phases' length */
	unsigned rounds;
	int sync;          /* 0 with --nosync */
	unsigned replicas; /* --replicas R (bench storage): 0 when not given */
	int page_cache;    /* --page-cache: the engine's small reads may use the page
			      cache (its default); 0: every read O_DIRECT, as fio's */
};

/* Parses ARGV into *O: --dir (required), --size-mb, --qd-seq, --qd-rand
 * (each 1..BENCH_FIO_MAX_QD), --seconds, --rounds (1..BENCH_FIO_MAX_ROUNDS),
 * --nosync, --page-cache, --help, and --replicas (at most MAX_REPLICAS) unless
 * MAX_REPLICAS is 0, over the defaults 1024 MiB, 8, 32, 10 s, 3 rounds,
 * sync on, no replicas, page cache off. Returns -1 when the bench should run, else its
 * exit status: 0 after printing USAGE to stdout for --help, 2 after
 * printing it to stderr for a bad or missing option. */
int bench_fio_opts_parse(int argc, char **argv, unsigned max_replicas, void (*usage)(FILE *),
			 struct bench_fio_opts *o);

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
/* bench_fio_iops with EXTRA a NULL-terminated list of up to 8 more fio
 * arguments (NULL: none). With --numjobs and --group_reporting the IOPS
 * are the jobs' sum. */
double bench_fio_iops_argv(const char *who, const char *dir, unsigned size_mb, unsigned seconds,
			   const char *rw, const char *bs, unsigned qd, const char *const *extra);

/* CPU time (utime + stime) of process PID so far, in seconds, or -1. */
double bench_proc_cpu(int pid);

#endif
