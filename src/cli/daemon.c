/* daemon.c - stop-signal handling shared by the service subcommands
 * (daemon.h). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "cli/daemon.h"
#include "common/log.h"

void cli_daemon_block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	/* A peer that closes mid-reply must cost an EPIPE, not the process. */
	signal(SIGPIPE, SIG_IGN);
}

int cli_daemon_wait_stop(const sigset_t *set, const char *role)
{
	int sig = 0;
	sigwait(set, &sig);
	LOG_NOTICE(role, "stopping: signal=%d", sig);
	return sig;
}

/* The startup guard: one thread takes the stop signals while the service
 * starts (cli_daemon_guard_start .. _end). */
static struct {
	pthread_t thr;
	sigset_t set;
	const char *role;
	atomic_bool started;
	bool running;
} guard;

static void *guard_main(void *arg)
{
	(void)arg;
	struct timespec tick = { 0, 50 * 1000000L };
	while (!atomic_load(&guard.started)) {
		int sig = sigtimedwait(&guard.set, NULL, &tick);
		if (sig <= 0)
			continue;
		if (atomic_load(&guard.started)) {
			/* Too late to handle here: pending for the main sigwait. */
			kill(getpid(), sig);
			break;
		}
		/* Nothing is served or held yet (no lease, no registration):
		 * stopping now loses nothing, and the start may block for
		 * its KV's whole timeout. */
		LOG_NOTICE(guard.role, "stopping during startup: signal=%d", sig);
		_exit(0);
	}
	return NULL;
}

void cli_daemon_guard_start(const sigset_t *set, const char *role)
{
	guard.set = *set;
	guard.role = role;
	atomic_store(&guard.started, false);
	guard.running = pthread_create(&guard.thr, NULL, guard_main, NULL) == 0;
}

void cli_daemon_guard_end(void)
{
	atomic_store(&guard.started, true);
	if (guard.running)
		pthread_join(guard.thr, NULL);
	guard.running = false;
}
