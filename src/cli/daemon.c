/* daemon.c - stop-signal handling shared by the service subcommands
 * (daemon.h). */
#include <signal.h>

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
