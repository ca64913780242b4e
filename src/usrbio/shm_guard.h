/* shm_guard.h - keeps the mount daemon alive when an application shrinks
 * shared memory the daemon has mapped.
 *
 * The daemon maps application-owned /dev/shm files. If the owner
 * truncates one, the daemon's next touch of the lost pages raises SIGBUS.
 * The guard's SIGBUS handler looks the faulting address up in a fixed,
 * lock-free table of guarded regions; when it is inside one, it maps
 * anonymous zero pages over the whole region (MAP_FIXED), marks the region
 * poisoned and returns, so the access completes harmlessly; the server
 * fails later I/Os on that region with -EFAULT. A fault anywhere else is
 * re-raised with the default action (a real bug still crashes). This is
 * what Wayland compositors do for client shm pools.
 *
 * Threads: every function is thread-safe; the handler is async-signal-safe.
 */
#ifndef CFS_USRBIO_SHM_GUARD_H
#define CFS_USRBIO_SHM_GUARD_H

#include <stddef.h>

/* Installs the SIGBUS handler (idempotent). 0 or -errno. */
int shm_guard_install(void);
/* Guards [BASE, BASE+SIZE). Returns a slot >= 0, or -ENOSPC. */
int shm_guard_add(void *base, size_t size);
/* Stops guarding SLOT (call before munmap). Negative slots are ignored. */
void shm_guard_remove(int slot);
/* 1 once a fault hit SLOT's region. */
int shm_guard_poisoned(int slot);

#endif
