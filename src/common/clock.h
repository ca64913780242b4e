/* clock.h - monotonic and wall time. */
#ifndef CFS_COMMON_CLOCK_H
#define CFS_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic nanoseconds (CLOCK_MONOTONIC); for deadlines and intervals. */
uint64_t clock_mono_ns(void);
static inline uint64_t clock_mono_ms(void) { return clock_mono_ns() / 1000000u; }
/* Wall-clock nanoseconds since the epoch; for timestamps only. */
uint64_t clock_wall_ns(void);
/* The moment MS milliseconds from now on clock CLK, as the absolute time
 * pthread_cond_timedwait takes: CLOCK_REALTIME for a condition variable
 * with default attributes, CLOCK_MONOTONIC for one made with
 * pthread_condattr_setclock(CLOCK_MONOTONIC). */
struct timespec clock_after_ms(clockid_t clk, uint64_t ms);
/* Sleeps for MS milliseconds, resuming after signals. */
void clock_sleep_ms(uint64_t ms);

#endif
