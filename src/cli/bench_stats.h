/* bench_stats.h - summaries of a bench's rounds. Benches alternate
 * rounds of each side on a shared machine and report a middle value, so
 * that one round slowed by another tenant does not decide the row. */
#ifndef CFS_CLI_BENCH_STATS_H
#define CFS_CLI_BENCH_STATS_H

/* The median of the N values V (the mean of the two middle ones when N is
 * even; 0 when N is 0). Sorts V in place. */
double bench_median(double *v, unsigned n);

#endif
