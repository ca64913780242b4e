/* case_workers.c - cmocka cases over several processes (case_workers.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "case_workers.h"
#include "testenv.h"

#define MAX_WORKERS 8

struct cw_out {
	int fd;
	size_t len;
	char line[4096];
};

static void cw_emit(int k, const char *p, size_t n)
{
	printf("[w%d] %.*s\n", k, (int)n, p);
}

/* Appends N bytes of worker K's output, printing each whole line. */
static void cw_take(struct cw_out *o, int k, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' || o->len == sizeof(o->line)) {
			cw_emit(k, o->line, o->len);
			o->len = 0;
			if (p[i] == '\n')
				continue;
		}
		o->line[o->len++] = p[i];
	}
}

static void cw_worker(const char *group, const struct CMUnitTest *tests, size_t n,
                      atomic_size_t *next, pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(127);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid_t self = getpid();
	int failed = 0;
	for (size_t i; (i = atomic_fetch_add(next, 1)) < n;) {
		char name[256];
		snprintf(name, sizeof(name), "%s %s", group, tests[i].name);
		failed += _cmocka_run_group_tests(name, &tests[i], 1, NULL, NULL);
		/* A process the case forked (test_chunk_crash's writer) that
		 * fails an assertion, or crashes under cmocka's signal
		 * handlers, longjmps back into cmocka and returns here. Taking
		 * the next case, it would run it where nothing checks it (its
		 * forker kills it: the case lost, the test passing); exiting,
		 * it would run testenv's atexit cleanup on this worker's
		 * servers. It ends now, nonzero for whoever waits on it. */
		if (getpid() != self) {
			fprintf(stderr,
			        "case_workers: a child forked by %s returned into the case loop\n",
			        name);
			_exit(125);
		}
	}
	fflush(stdout);
	/* exit, not _exit: testenv's atexit cleanup and LeakSanitizer run */
	exit(failed ? 1 : 0);
}

int case_workers_run(const char *group, const struct CMUnitTest *tests, size_t n, int workers,
                     int filtered)
{
	const char *env = getenv("CFS_TEST_WORKERS");
	if (env && atoi(env) >= 1)
		workers = atoi(env);
	if (workers > MAX_WORKERS)
		workers = MAX_WORKERS;
	if (workers > (int)n)
		workers = (int)n;
	if (workers <= 1 || filtered)
		return _cmocka_run_group_tests(group, tests, n, NULL, NULL);

	atomic_size_t *next =
	    mmap(NULL, sizeof(*next), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (next == MAP_FAILED) {
		perror("case_workers: mmap");
		return 1;
	}
	atomic_init(next, 0);
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid(), pid[MAX_WORKERS];
	static struct cw_out out[MAX_WORKERS];
	struct pollfd pfd[MAX_WORKERS];
	for (int k = 0; k < workers; k++) {
		int p[2];
		if (pipe(p) != 0) {
			perror("case_workers: pipe");
			abort();
		}
		pid[k] = fork();
		if (pid[k] < 0) {
			perror("case_workers: fork");
			abort();
		}
		if (pid[k] == 0) {
			close(p[0]);
			for (int j = 0; j < k; j++)
				close(out[j].fd);
			dup2(p[1], 1);
			dup2(p[1], 2);
			close(p[1]);
			cw_worker(group, tests, n, next, parent);
		}
		close(p[1]);
		out[k].fd = p[0];
		out[k].len = 0;
		pfd[k] = (struct pollfd){.fd = p[0], .events = POLLIN};
	}
	printf("[==========] %zu case(s) of %s in %d worker processes\n", n, group, workers);
	fflush(stdout);
	for (int open = workers; open > 0;) {
		if (poll(pfd, (nfds_t)workers, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("case_workers: poll");
			abort();
		}
		for (int k = 0; k < workers; k++) {
			if (pfd[k].fd < 0 || !pfd[k].revents)
				continue;
			char buf[4096];
			ssize_t r = read(pfd[k].fd, buf, sizeof(buf));
			if (r > 0) {
				cw_take(&out[k], k, buf, (size_t)r);
			} else if (r == 0 || errno != EINTR) {
				if (out[k].len)
					cw_emit(k, out[k].line, out[k].len);
				close(pfd[k].fd);
				pfd[k].fd = -1;
				open--;
			}
		}
		fflush(stdout);
	}
	int bad = 0;
	for (int k = 0; k < workers; k++) {
		int st = 0;
		while (waitpid(pid[k], &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("[  FAILED  ] worker %d: %s %d\n", k,
			       WIFEXITED(st) ? "exit status" : "signal",
			       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			bad = 1;
		}
	}
	/* Every case ran when no worker died before taking the next. */
	size_t taken = atomic_load(next);
	if (taken < n) {
		printf("[  FAILED  ] %zu case(s) of %s never ran\n", n - taken, group);
		bad = 1;
	}
	printf("[==========] %s: %s\n", group, bad ? "FAILED" : "all cases passed");
	munmap(next, sizeof(*next));
	return bad;
}
