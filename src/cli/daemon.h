/* daemon.h - how every chainfs service process waits for its stop signal.
 *
 * A service blocks SIGINT and SIGTERM before it starts any thread, so every
 * thread inherits the mask and only the main thread's sigwait takes them:
 * no handler runs in the middle of a loop thread's work. */
#ifndef CFS_CLI_DAEMON_H
#define CFS_CLI_DAEMON_H

#include <signal.h>

/* Blocks SIGINT and SIGTERM in the calling thread (and the threads it
 * starts afterwards) and ignores SIGPIPE; fills SET for
 * cli_daemon_wait_stop. Call before the first thread starts. */
void cli_daemon_block_signals(sigset_t *set);
/* Waits for a signal of SET, logs "ROLE: stopping: signal=N" and returns
 * the signal. */
int cli_daemon_wait_stop(const sigset_t *set, const char *role);
/* Startup guard: between these two calls (around a service's _new, which
 * may block for a KV's whole timeout, e.g. etcd cut off) a thread takes the
 * signals of SET and exits the process at once (status 0) on one: nothing
 * is served or held yet. After _end the signals go to
 * cli_daemon_wait_stop again (one that raced with the end is re-raised). */
void cli_daemon_guard_start(const sigset_t *set, const char *role);
void cli_daemon_guard_end(void);

#endif
