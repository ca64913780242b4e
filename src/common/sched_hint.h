/* sched_hint.h - asks the kernel to run the calling thread soon after it
 * wakes.
 *
 * WHY. A metadata call through the mount is a chain of short hand-offs
 * (application -> FUSE thread -> RPC to meta -> meta's loop -> back), each
 * a wake-up of a thread that then runs for 5-50 us. On a machine whose
 * CPUs are busy with other work, Linux's EEVDF scheduler lets the task
 * already running finish its slice (0.75-3 ms by default) before a woken
 * thread of the default slice runs, unless the woken one's deadline is
 * earlier; every hand-off of the chain may then wait that long, and the
 * chain's rate fell to a third on a loaded 2-core host while its CPU per
 * operation did not change (issue 13). A thread that asks for a short
 * slice (sched_attr.sched_runtime for SCHED_OTHER, Linux >= 6.12) gets an
 * early deadline and preempts at wake-up; its share of the CPU (its
 * weight) is unchanged, it is only cut into shorter turns.
 *
 * Environment: CFS_SLICE_US=N asks for N microseconds (the kernel clamps
 * to 100..100000); 0 leaves the kernel's default. Default 100.
 * Threads: any; affects only the calling thread (threads it creates
 * later inherit it). Errors (older kernels, seccomp) are ignored: the
 * hint is an optimisation only.
 */
#ifndef CFS_COMMON_SCHED_HINT_H
#define CFS_COMMON_SCHED_HINT_H

/* For event loops and request handlers whose turns are short. */
void sched_hint_latency(void);

/* The calling thread's slice in ns as the kernel shows it (se.slice in
 * /proc/self/task/TID/sched), or -1 when it does not (older kernels). */
long long sched_hint_slice_ns(void);

/* How much the host's tasks waited for a CPU lately: the "some avg10"
 * of the kernel's CPU pressure (PSI), the share of the last ~10 s in
 * which at least one runnable task was waiting, in hundredths of a
 * percent (0..10000); -1 when the kernel does not say (no
 * /proc/pressure/cpu: PSI off, before Linux 4.20). A thread that hands
 * its work to another thread and then sleeps is cheaper on an idle host,
 * but on a busy one it pays to be asleep and woken wherever a CPU is
 * free: this tells the two apart. One read of a procfs file (a few us):
 * callers cache it. Any thread. */
int sched_hint_cpu_pressure(void);

/* The same from TEXT, the contents of a PSI file ("some avg10=1.23 ...");
 * -1 when it has no "some" line with avg10. */
int sched_hint_parse_pressure(const char *text);

#endif
