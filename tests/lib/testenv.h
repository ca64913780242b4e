/* testenv.h - shared helpers for unit and integration tests.
 *
 * Tests are cmocka binaries (include <cmocka.h> after the usual
 * <stdarg.h>/<stddef.h>/<setjmp.h>/<stdint.h>). These helpers give each test
 * a private work directory, free loopback ports, child processes started by
 * exec and stopped by pid, and polling waits instead of sleeps.
 * Every process a test starts is recorded and killed by testenv_cleanup()
 * (also registered with atexit), so nothing outlives a failed test.
 */
#ifndef CFS_TESTS_TESTENV_H
#define CFS_TESTS_TESTENV_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Creates a fresh directory under $TMPDIR (or /tmp) named after TAG and
 * returns its path (static storage per call is not kept: caller frees).
 * Removed by testenv_cleanup() unless CFS_KEEP_TMP is set. Aborts on error. */
char *testenv_tmpdir(const char *tag);
/* Returns a port on 127.0.0.1 for a server the test starts: below the
 * kernel's ephemeral range, bindable a moment ago, and leased to this
 * test for 20 minutes against every other test process on the machine
 * (lease files in /tmp/cfs-test-ports), so no other test is handed it
 * while this one's server starts or is down for a restart. Falls back to
 * xport_free_ports when there is no room below the range or no lease
 * directory. Not thread-safe. Aborts on error. */
uint16_t testenv_free_port(void);
/* Path of the chainfs binary under test ($CFS_BIN, else ./chainfs). */
const char *testenv_chainfs(void);
/* Starts ARGV[0] with ARGV, stdout+stderr appended to LOGPATH (may be NULL
 * for inherit). Returns the pid; aborts when fork/exec fails. The pid is
 * recorded for cleanup. Started from the main thread, the child is also
 * killed (SIGKILL) when the test process dies without cleanup (a crash). */
pid_t testenv_spawn(char *const argv[], const char *logpath);
/* Runs ARGV to its end (argv[0] a path or a name on $PATH), stdout+stderr
 * appended to LOGPATH (may be NULL: inherit), in CWD (may be NULL); kills
 * it (SIGKILL, with a line on stderr) when it runs past TIMEOUT_MS. Returns
 * the exit status, or -1 (killed, or not exited). Not recorded for cleanup:
 * the call waits for it. Aborts when fork fails. */
int testenv_run(char *const argv[], const char *cwd, const char *logpath, int timeout_ms);
/* Up to OUTLEN - 1 bytes of PATH into OUT, NUL-terminated; returns the
 * count, or -1 (OUT empty) when PATH cannot be opened. OUTLEN > 0. */
int testenv_read_file(const char *path, char *out, size_t outlen);
/* Where `chainfs admin` finds a cluster, for testenv_admin_v. */
struct testenv_admin {
	const char *mgmtd;       /* --mgmtd ADDR[,ADDR...] */
	const char *cluster_id;  /* --cluster-id */
	const char *secret_path; /* --secret-file */
	const char *timeout_ms;  /* --timeout-ms, or NULL: admin's default */
	const char *log;         /* the command's output (replaced each call) */
};
/* Runs `chainfs admin CMD --mgmtd ... [--timeout-ms T] ARGS...` (AP: up
 * to 20 more const char * arguments, then NULL) to its end, at most 20 s,
 * with its output in A->log and, when OUT is not NULL, up to OUTLEN - 1
 * bytes of it in OUT. Returns the exit status, or -1 (killed). */
int testenv_admin_v(const struct testenv_admin *a, char *out, size_t outlen, const char *cmd,
		    va_list ap);
/* Writes the cluster secret SECRET and a newline (which readers drop:
 * net/auth.h) to DIR/secret, mode 0600, and its path into PATH (CAP
 * bytes): the file every --secret-file argument of a test names. Aborts
 * when it cannot be written. */
void testenv_write_secret(const char *dir, const char *secret, char *path, size_t cap);
/* 1 when a line of file PATH holds NEEDLE (no newline in it; a line is
 * searched in pieces of up to 2 KiB, so a needle across a piece boundary
 * of a longer line is missed), 0 otherwise or when PATH cannot be opened.
 * For logs: whether a process said something yet. */
int testenv_file_has(const char *path, const char *needle);
/* Sends SIG to PID and, for SIGKILL/SIGTERM, reaps it (waits up to 10 s);
 * for SIGSTOP, waits (up to 10 s) until every thread of PID is stopped, so
 * the process answers nothing after this returns. Returns the wait status
 * (0 for SIGSTOP), or -1 when the process was not ours or did not stop. */
int testenv_kill(pid_t pid, int sig);
/* Stops PID (SIGSTOP, any process) and waits up to 10 s until every
 * thread of it is stopped: kill() returns before a group stop takes
 * effect, and until it has the process may still answer requests. 0, or
 * -1 when the signal failed or the stop did not happen in time. */
int testenv_stop(pid_t pid);
/* 1 while PID is a live child of ours (not yet reaped). */
int testenv_alive(pid_t pid);
/* Polls COND(ARG) every 20 ms until it returns nonzero or TIMEOUT_MS passes.
 * Returns 1 if the condition became true, 0 on timeout. */
int testenv_wait(int (*cond)(void *arg), void *arg, int timeout_ms);
/* How many mappings of /proc/PID/maps mention NEEDLE (e.g. a memfd's
 * name: is that shared memory still mapped there); entries that overlap
 * (a listing racing a split or merge) or continue one another (a split
 * mapping) count once. Aborts when the file cannot be opened. */
int testenv_maps_count(pid_t pid, const char *needle);
/* testenv_maps_count of the mappings of memfd NAME only (pathname
 * "/memfd:NAME"): a needle alone also matches any file whose path holds
 * it, e.g. the LMDB files under a cluster's temp dir when its random
 * suffix continues NAME ("cfs-shm-unreg-bXXXXX" for "shm-unreg-b"). */
int testenv_memfd_maps_count(pid_t pid, const char *name);
/* Damages stored data the way a bad disk would: flips 8 bytes 100 bytes
 * past MARKER in the first file under DIR (depth first; LMDB files and
 * the WAL passed over) that holds it, and fsyncs it. 1 when one was
 * flipped, 0 when none holds MARKER, -1 when the flip failed. */
int testenv_flip_marker(const char *dir, const char *marker);
/* 1 when something accepts TCP connections on 127.0.0.1:PORT. */
int testenv_port_open(uint16_t port);
/* Kills every recorded child (SIGKILL) and removes temp dirs. */
void testenv_cleanup(void);

#endif
