/* testenv.c - process, port and directory helpers for tests (testenv.h).
 *
 * Children are tracked in a small table; testenv_cleanup() (registered with
 * atexit on first use) SIGKILLs any still running, so a failing assertion
 * that longjmps out of a test cannot leave servers behind. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "net/transport.h"
#include "testenv.h"

#define MAX_CHILDREN 256
#define MAX_DIRS 64

static pid_t children[MAX_CHILDREN];
static int nchildren;
static char *dirs[MAX_DIRS];
static int ndirs;
static int registered;

static void ensure_registered(void)
{
	if (!registered) {
		registered = 1;
		atexit(testenv_cleanup);
	}
}

static void die(const char *what)
{
	fprintf(stderr, "testenv: %s: %s\n", what, strerror(errno));
	abort();
}

char *testenv_tmpdir(const char *tag)
{
	ensure_registered();
	const char *base = getenv("TMPDIR");
	char tmpl[512];
	snprintf(tmpl, sizeof(tmpl), "%s/cfs-%s-XXXXXX", base && *base ? base : "/tmp", tag);
	if (!mkdtemp(tmpl))
		die("mkdtemp");
	char *p = strdup(tmpl);
	if (!p)
		die("strdup");
	if (ndirs < MAX_DIRS)
		dirs[ndirs++] = strdup(p);
	return p;
}

/* Ports for the servers tests start come from below the kernel's
 * ephemeral range, claimed through a directory of lease files shared by
 * every test process on the machine. A port probed free in the ephemeral
 * range (bind to 0, close) is free for anyone until the server binds it,
 * and again while a test has that server down to restart it: ctest runs
 * two tests at once, and another test's probe (or `chainfs up`'s) could
 * be handed the same port in that window (`chainfs up` once saw a
 * storage service's port answered by another process). Below the range
 * neither bind(0) nor connect() hands ports out, and the lease keeps any
 * other test from the port for PORT_LEASE_S (longer than a test's
 * ctest timeout) whatever its servers do meanwhile. */
#define PORT_LEASE_DIR "/tmp/cfs-test-ports"
#define PORT_LEASE_S   (20 * 60)
#define PORT_SPAN      XPORT_PORT_BAND

/* 1 when nothing is bound to PORT on 127.0.0.1 right now. */
static int port_bindable(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* Takes PORT's lease when no test holds it: 1 when taken. The file's
 * lock orders two processes claiming it at once; its mtime is the lease. */
static int port_lease(uint16_t port)
{
	char path[64];
	snprintf(path, sizeof(path), PORT_LEASE_DIR "/%u", (unsigned)port);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		return 0; /* another user's lease, or no directory */
	int taken = 0;
	struct stat st;
	if (flock(fd, LOCK_EX) == 0 && fstat(fd, &st) == 0 &&
	    (st.st_size == 0 || time(NULL) - st.st_mtime >= PORT_LEASE_S)) {
		char pid[24];
		int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
		taken = ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) == n;
		(void)fchmod(fd, 0666); /* other users' tests may take it later */
	}
	close(fd); /* drops the lock */
	return taken;
}

uint16_t testenv_free_port(void)
{
	unsigned lo = xport_ephemeral_low();
	if (lo > PORT_SPAN + 1024 && (mkdir(PORT_LEASE_DIR, 01777) == 0 || errno == EEXIST)) {
		(void)chmod(PORT_LEASE_DIR, 01777);
		static unsigned next;
		if (!next)
			next = (unsigned)getpid() * 2654435761u ^ (unsigned)clock_mono_ns();
		for (int tries = 0; tries < PORT_SPAN; tries++) {
			uint16_t port = (uint16_t)(lo - PORT_SPAN + next++ % PORT_SPAN);
			if (port_bindable(port) && port_lease(port) && port_bindable(port))
				return port;
		}
	}
	/* No range below the ephemeral one, or no lease directory: a port
	 * the kernel says is free, never the same one twice in this process. */
	uint16_t port;
	errno = -xport_free_ports(&port, 1);
	if (errno)
		die("bind");
	return port;
}

const char *testenv_chainfs(void)
{
	const char *p = getenv("CFS_BIN");
	return p && *p ? p : "./chainfs";
}

pid_t testenv_spawn(char *const argv[], const char *logpath)
{
	ensure_registered();
	if (nchildren >= MAX_CHILDREN) {
		fprintf(stderr, "testenv: too many children\n");
		abort();
	}
	/* A test that dies by a signal (a crash, ctest's timeout) runs no
	 * atexit hook: its servers lived on, holding ports and CPU for the
	 * rest of the suite (a crashed ASan run left a 4-process cluster).
	 * The kernel kills them when the spawning thread ends: only for the
	 * main thread, whose end is the process's. */
	pid_t parent = getpid();
	int main_thread = (pid_t)syscall(SYS_gettid) == parent;
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (main_thread && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
			_exit(127); /* the test is already gone */
		if (logpath) {
			int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
				close(fd);
			}
		}
		execvp(argv[0], argv);
		fprintf(stderr, "testenv: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	children[nchildren++] = pid;
	return pid;
}

int testenv_run(char *const argv[], const char *cwd, const char *logpath, int timeout_ms)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (logpath) {
			int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
		}
		if (cwd && chdir(cwd) < 0)
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st = 0;
	uint64_t deadline = clock_mono_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		if (clock_mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			fprintf(stderr, "%s: killed after %d ms\n", argv[0], timeout_ms);
			return -1;
		}
		clock_sleep_ms(10);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int testenv_read_file(const char *path, char *out, size_t outlen)
{
	out[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(out, 1, outlen - 1, f);
	out[n] = 0;
	fclose(f);
	return (int)n;
}

int testenv_admin_v(const struct testenv_admin *a, char *out, size_t outlen, const char *cmd,
		    va_list ap)
{
	char *argv[32];
	int n = 0;
	argv[n++] = (char *)testenv_chainfs();
	argv[n++] = "admin";
	argv[n++] = (char *)cmd;
	argv[n++] = "--mgmtd";
	argv[n++] = (char *)a->mgmtd;
	argv[n++] = "--cluster-id";
	argv[n++] = (char *)a->cluster_id;
	argv[n++] = "--secret-file";
	argv[n++] = (char *)a->secret_path;
	if (a->timeout_ms) {
		argv[n++] = "--timeout-ms";
		argv[n++] = (char *)a->timeout_ms;
	}
	for (const char *x; (x = va_arg(ap, const char *)) && n < 31;)
		argv[n++] = (char *)x;
	argv[n] = NULL;
	unlink(a->log);
	int st = testenv_run(argv, NULL, a->log, 20000);
	if (out && outlen)
		testenv_read_file(a->log, out, outlen);
	return st;
}

void testenv_write_secret(const char *dir, const char *secret, char *path, size_t cap)
{
	snprintf(path, cap, "%s/secret", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t n = strlen(secret);
	if (fd < 0 || write(fd, secret, n) != (ssize_t)n || write(fd, "\n", 1) != 1 ||
	    close(fd) < 0)
		die(path);
}

int testenv_file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[2048];
	int found = 0;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

static int forget(pid_t pid)
{
	for (int i = 0; i < nchildren; i++) {
		if (children[i] == pid) {
			children[i] = children[--nchildren];
			return 1;
		}
	}
	return 0;
}

int testenv_alive(pid_t pid)
{
	for (int i = 0; i < nchildren; i++) {
		if (children[i] != pid)
			continue;
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == 0)
			return 1;
		forget(pid);
		return 0;
	}
	return 0;
}

/* 1 when every thread of PID is stopped (or gone), 0 while one still runs.
 * kill(SIGSTOP) returns before the stop takes effect: one thread of the
 * target is picked to begin the group stop when it next runs, and until it
 * has, the others go on serving. On a loaded host that is milliseconds, in
 * which a "paused" server still answered a test's next request. */
static int all_stopped(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return 1;
	int stopped = 1;
	struct dirent *de;
	while (stopped && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char sp[384], buf[512];
		snprintf(sp, sizeof(sp), "%s/%s/stat", path, de->d_name);
		int fd = open(sp, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* the thread exited */
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		/* "tid (comm) S ...": comm may hold ')' and spaces */
		const char *p = strrchr(buf, ')');
		char st = p && p[1] == ' ' ? p[2] : '?';
		stopped = st == 'T' || st == 't' || st == 'Z' || st == 'X';
	}
	closedir(d);
	return stopped;
}

int testenv_stop(pid_t pid)
{
	if (kill(pid, SIGSTOP))
		return -1;
	return testenv_wait(all_stopped, &pid, 10000) ? 0 : -1;
}

int testenv_kill(pid_t pid, int sig)
{
	int ours = 0;
	for (int i = 0; i < nchildren; i++)
		ours |= children[i] == pid;
	if (!ours)
		return -1;
	if (sig == SIGSTOP)
		return testenv_stop(pid);
	kill(pid, sig);
	if (sig != SIGKILL && sig != SIGTERM && sig != SIGINT)
		return 0;
	uint64_t deadline = clock_mono_ms() + 10000;
	int st = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			break;
		if (clock_mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		clock_sleep_ms(10);
	}
	forget(pid);
	return st;
}

int testenv_wait(int (*cond)(void *arg), void *arg, int timeout_ms)
{
	uint64_t deadline = clock_mono_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (cond(arg))
			return 1;
		if (clock_mono_ms() >= deadline)
			return 0;
		clock_sleep_ms(20);
	}
}

int testenv_port_open(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void rm_rf(const char *path)
{
	char cmd[4200];
	if (strchr(path, '\'') || strncmp(path, "/", 1))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	int rc = system(cmd);
	(void)rc;
}

void testenv_cleanup(void)
{
	while (nchildren > 0) {
		pid_t pid = children[--nchildren];
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	const char *keep = getenv("CFS_KEEP_TMP");
	for (int i = 0; i < ndirs; i++) {
		if (!keep || !*keep)
			rm_rf(dirs[i]);
		free(dirs[i]);
	}
	ndirs = 0;
}

struct maps_vma {
	unsigned long long start, end, off; /* off: file offset at start */
};

static int vma_cmp(const void *a, const void *b)
{
	const struct maps_vma *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* 1 when the pathname of maps entry LINE is exactly WANT, the kernel's
 * " (deleted)" after it allowed (an unlinked file or a memfd). */
static int maps_path_is(const char *line, const char *want)
{
	int at = -1;
	if (sscanf(line, "%*s %*s %*s %*s %*s %n", &at) < 0 || at < 0)
		return 0;
	const char *path = line + at;
	size_t n = strlen(want);
	if (strncmp(path, want, n))
		return 0;
	path += n;
	if (!strncmp(path, " (deleted)", 10))
		path += 10;
	return *path == '\n' || *path == '\0';
}

/* Mappings of PID whose maps entry mentions NEEDLE (EXACT 0) or whose
 * pathname is NEEDLE (EXACT 1). */
static int maps_count(pid_t pid, const char *needle, int exact)
{
	char p[64], line[1024];
	snprintf(p, sizeof(p), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(p, "r");
	if (!f)
		die(p);
	/* The kernel writes maps a page at a time and lets the address space
	 * change in between, so a mapping beside a concurrently split or
	 * merged one may be listed twice, as the same range or as a range
	 * and its pieces (proc(5); seen on 6.18 while the service mapped
	 * buffers: 2 and then 3 entries for one mapping); and one mapping
	 * may be split into neighbouring areas. Count a mapping once:
	 * entries that overlap, or touch with the file offsets running on,
	 * are one. */
	struct maps_vma *v = NULL;
	size_t n = 0;
	while (fgets(line, sizeof(line), f)) {
		struct maps_vma e;
		if (!(exact ? maps_path_is(line, needle) : strstr(line, needle) != NULL) ||
		    sscanf(line, "%llx-%llx %*s %llx", &e.start, &e.end, &e.off) != 3)
			continue;
		struct maps_vma *grown = realloc(v, (n + 1) * sizeof(*v));
		if (!grown)
			die("realloc");
		v = grown;
		v[n++] = e;
	}
	fclose(f);
	if (n)
		qsort(v, n, sizeof(*v), vma_cmp);
	int count = 0;
	unsigned long long end = 0, off_end = 0;
	for (size_t i = 0; i < n; i++) {
		int same =
		    count && (v[i].start < end || (v[i].start == end && v[i].off == off_end));
		if (!same) {
			count++;
			end = v[i].end;
			off_end = v[i].off + (v[i].end - v[i].start);
		} else if (v[i].end > end) {
			off_end = v[i].off + (v[i].end - v[i].start);
			end = v[i].end;
		}
	}
	free(v);
	return count;
}

int testenv_maps_count(pid_t pid, const char *needle)
{
	return maps_count(pid, needle, 0);
}

int testenv_memfd_maps_count(pid_t pid, const char *name)
{
	char want[300];
	snprintf(want, sizeof(want), "/memfd:%s", name);
	return maps_count(pid, want, 1);
}

/* Flips the 8 bytes at MARKER + 100 in file PATH when it holds MARKER
 * (read in 1 MiB windows overlapping by the marker's length): 1 when it
 * did, 0 when PATH does not hold it, -1 when the flip failed. */
static int flip_in_file(const char *path, const char *marker)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	size_t ml = strlen(marker), cap = 1 << 20;
	char *buf = malloc(cap + ml);
	int flipped = buf ? 0 : -1;
	for (off_t pos = 0; buf;) {
		ssize_t r = pread(fd, buf, cap + ml, pos);
		if (r <= 0)
			break;
		char *hit = memmem(buf, (size_t)r, marker, ml);
		if (hit) {
			off_t at = pos + (hit - buf) + 100;
			uint8_t b[8];
			flipped = -1;
			if (pread(fd, b, 8, at) == 8) {
				for (int i = 0; i < 8; i++)
					b[i] ^= 0xA5;
				if (pwrite(fd, b, 8, at) == 8 && fsync(fd) == 0)
					flipped = 1;
			}
			break;
		}
		if ((size_t)r < cap + ml)
			break;
		pos += (off_t)cap;
	}
	free(buf);
	close(fd);
	return flipped;
}

int testenv_flip_marker(const char *dir, const char *marker)
{
	DIR *d = opendir(dir);
	int flipped = 0;
	if (!d)
		return 0;
	for (struct dirent *de; !flipped && (de = readdir(d));) {
		if (de->d_name[0] == '.')
			continue;
		char path[1400];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct stat st;
		if (lstat(path, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			flipped = testenv_flip_marker(path, marker);
		else if (S_ISREG(st.st_mode) && !strstr(de->d_name, ".mdb") &&
		         strcmp(de->d_name, "wal") != 0)
			flipped = flip_in_file(path, marker);
	}
	closedir(d);
	return flipped;
}
