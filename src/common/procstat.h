/* procstat.h - a process as Linux's /proc/PID/stat shows it: its state,
 * CPU time and start time. For telling whether a pid still names the
 * process that was started (pids are reused: compare the start time) and
 * whether it still runs (a zombie has exited), and for CPU seconds per
 * operation in benches. Any thread. */
#ifndef CFS_COMMON_PROCSTAT_H
#define CFS_COMMON_PROCSTAT_H

struct procstat {
	char state;                      /* 'R', 'S', 'D', ...; 'Z' zombie, 'X' dead */
	unsigned long long utime, stime; /* CPU time, clock ticks (sysconf(_SC_CLK_TCK)) */
	unsigned long long start;        /* start time, clock ticks since boot */
};

/* Reads process PID's stat line into *OUT: 0; -ENOENT when there is no
 * such process (or pid <= 0); -EIO when the line does not parse. */
int procstat_read(int pid, struct procstat *out);
/* 1 while PID exists and has not exited (not a zombie, not dead). */
int procstat_running(int pid);
/* procstat_running, and PID's start time is START: still the process
 * that was started then, not a later one given the same pid. */
int procstat_running_since(int pid, unsigned long long start);

#endif
