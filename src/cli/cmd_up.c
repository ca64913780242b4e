/* cmd_up.c - `chainfs up` / `chainfs down`: a whole cluster on one machine.
 *
 *   chainfs up --dir D --mount M      start (or restart) the cluster in D
 *   chainfs down --dir D              unmount and stop exactly what up started
 *
 * `up` runs every role as a background process of this same binary, on
 * 127.0.0.1, with its output in D/logs/<role>.log and its pid in
 * D/pids/<role>.pid:
 *
 *   mgmtd      lmdb store in D/mgmtd
 *   storageN   N = 1..3, targets D/storageN/target1, target2
 *   meta       lmdb store in D/meta, registered with mgmtd; started after
 *              the chain table exists, because its first start formats
 *              the root directory with chain table 1 as default layout
 *   mount      the FUSE mount at M
 *
 * D/cluster.conf records what a restart needs: cluster id, ports, mount
 * point, and which one-time steps are done (one "key = value" per line);
 * D/secret holds the cluster secret (mode 0600). On a fresh D, up
 * generates both, runs `admin init-cluster` and, once the storage targets
 * registered, `admin create-chain-table --replicas 3`, recording each step
 * so that an interrupted first `up` resumes where it stopped. On a D that
 * holds a cluster it starts the same roles on the recorded ports over the
 * existing data, keeping those still running (so after one storage service
 * died, `up` starts just that one). Each start waits, polling with a
 * bound, for the role's port (or the mount) to come up; a process that
 * exits first fails `up` with its exit status and the tail of its log,
 * after stopping what this run started (c->started).
 *
 * A pid file holds "pid starttime" (field 22 of /proc/PID/stat), so down
 * never signals a process that merely reuses a recorded pid. down sends
 * SIGTERM, waits up to --stop-ms, then SIGKILLs.
 *
 * How up judges a role (issue 16): by its process (the pid file) and its
 * own health check (its port answers; for the mount, the kernel's mount
 * table lists it), never by a call on the mount point: a stat of a FUSE
 * mount blocks while meta is down, and taking that for "mount gone" once
 * made up stop a healthy mount. A running role is never stopped, only
 * reported when its check fails. The one mount up cleans is a stale one:
 * listed in /proc/self/mountinfo as fuse.chainfs, its recorded process
 * dead, and a stat in a child (bounded) fails with ENOTCONN ("Transport
 * endpoint is not connected"): fusermount3 -uz, then a new mount.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cfg.h"
#include "common/hex.h"
#include "common/procstat.h"
#include "net/transport.h"

#define UP_STORAGE  3
#define UP_TARGETS  2
#define UP_REPLICAS 3

struct up_conf {
	char *dir;
	char *mount;
	int64_t timeout_ms;
	int64_t stop_ms;
	char *log_level;
	char *mount_opts;
	char *storage_opts;
	char *meta_sync;
	int meta_writemap;
	int64_t inline_max;
	int no_local_socket;
	int meta_local;
	int fuse_uring;
};

static const struct cfg_opt up_opts[] = {
    {"dir", CFG_STR, "./chainfs-data", 0, 0, offsetof(struct up_conf, dir),
     "directory holding the cluster's data, logs, pids and config"},
    {"mount", CFG_STR, "", 0, 0, offsetof(struct up_conf, mount),
     "mount point (default: the one recorded in DIR, else ./mnt)"},
    {"timeout-ms", CFG_INT, "60000", 1000, 3600000, offsetof(struct up_conf, timeout_ms),
     "how long each role may take to come up"},
    {"stop-ms", CFG_INT, "10000", 100, 600000, offsetof(struct up_conf, stop_ms),
     "how long a stopping role gets after SIGTERM before SIGKILL"},
    {"log-level", CFG_STR, "info", 0, 0, offsetof(struct up_conf, log_level),
     "log level of the started roles"},
    {"mount-opts", CFG_STR, "", 0, 0, offsetof(struct up_conf, mount_opts),
     "extra arguments for chainfs mount, space-separated (e.g. --keep-cache-ro)"},
    {"storage-opts", CFG_STR, "", 0, 0, offsetof(struct up_conf, storage_opts),
     "extra arguments for each chainfs storage, space-separated (e.g. --cached-read-max=0)"},
    {"meta-sync", CFG_STR, "window", 0, 0, offsetof(struct up_conf, meta_sync),
     "metadata durability: window (each change survives a crash of any process at once, "
     "and power loss once synced: within 100 ms, or when fsync returns) or full (a disk "
     "sync before every change returns)"},
    {"meta-writemap", CFG_BOOL, "true", 0, 0, offsetof(struct up_conf, meta_writemap),
     "meta's LMDB with writemap=1: commits store into the map instead of a pwrite per "
     "dirty page (1.4-2x creates and unlinks); data.mdb becomes a sparse file of the map "
     "size (64 GiB) with 32 MiB allocated ahead; false: pwrite (kv.h)"},
    {"inline-max", CFG_SIZE, "64K", 0, 65536, offsetof(struct up_conf, inline_max),
     "meta's --inline-max: files up to this long keep their bytes in the metadata store "
     "(0: off; docs/inline-data.md)"},
    {"fuse-uring", CFG_BOOL, "false", 0, 0, offsetof(struct up_conf, fuse_uring),
     "start the mount with --fuse-uring (FUSE requests over io_uring where the kernel "
     "allows it)"},
    {"no-local-socket", CFG_BOOL, "false", 0, 0, offsetof(struct up_conf, no_local_socket),
     "the roles started now (and the mount) talk TCP only, without the same-host unix "
     "socket (sets CFS_NO_LOCAL_SOCKET=1 for them; for measurement and debugging)"},
    {"meta-local", CFG_BOOL, "true", 0, 0, offsetof(struct up_conf, meta_local),
     "the mount runs metadata reads, namespace changes and the store-only forms of open, "
     "close and setattr itself on meta's LMDB store "
     "(mount --meta-local with meta's store URL; no RPC hop; the meta service keeps the "
     "rest, syncs the store and compacts it); --no-meta-local or CFS_META_LOCAL=0: every "
     "metadata call over RPC"},
    CFG_END};

/* What D/cluster.conf records. */
struct cluster {
	char dir[PATH_MAX];
	char cluster_id[64];
	char mount[PATH_MAX];
	unsigned mgmtd_port, meta_port;
	unsigned storage_port[UP_STORAGE];
	int nstorage;           /* storage services (UP_STORAGE) */
	int initialised;        /* admin init-cluster succeeded */
	int table_created;      /* admin create-chain-table succeeded */
	const char *started[8]; /* roles this run started, to undo on failure */
	int nstarted;
};

static char self_exe[PATH_MAX];

static void pathf(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, cap, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap)
		out[cap - 1] = 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	pathf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int port_open(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0)
		return 0;
	/* Bounded: a listener that never accepts (its backlog full) would
	 * hold a blocking connect for minutes. */
	int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (!ok && errno == EINPROGRESS) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int e = 0;
		socklen_t el = sizeof(e);
		ok = poll(&p, 1, 1000) == 1 &&
		     getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0;
	}
	close(fd);
	return ok;
}

/* 1 when PID holds a socket listening on loopback (or any address) PORT:
 * its inode in /proc/net/tcp is one of PID's open files. -1 when
 * /proc/net/tcp cannot be read (the caller trusts port_open alone). */
static int port_owned_by(pid_t pid, unsigned port)
{
	char line[512], want_lo[32], want_any[32], path[64];
	unsigned long inodes[16];
	int ni = 0;
	FILE *f = fopen("/proc/net/tcp", "r");
	if (!f)
		return -1;
	snprintf(want_lo, sizeof(want_lo), "0100007F:%04X", port);
	snprintf(want_any, sizeof(want_any), "00000000:%04X", port);
	while (ni < 16 && fgets(line, sizeof(line), f)) {
		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
		char local[64], st[8];
		unsigned long ino;
		if (sscanf(line, " %*s %63s %*s %7s %*s %*s %*s %*s %*s %lu", local, st, &ino) == 3 &&
		    !strcmp(st, "0A") && (!strcmp(local, want_lo) || !strcmp(local, want_any)))
			inodes[ni++] = ino;
	}
	fclose(f);
	pathf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = ni ? opendir(path) : NULL;
	int owned = 0;
	for (struct dirent *de; d && !owned && (de = readdir(d));) {
		char fdp[PATH_MAX], tgt[64];
		pathf(fdp, sizeof(fdp), "%s/%s", path, de->d_name);
		ssize_t n = readlink(fdp, tgt, sizeof(tgt) - 1);
		if (n <= 0)
			continue;
		tgt[n] = 0;
		for (int i = 0; i < ni && !owned; i++) {
			char sock[40];
			snprintf(sock, sizeof(sock), "socket:[%lu]", inodes[i]);
			owned = !strcmp(tgt, sock);
		}
	}
	if (d)
		closedir(d);
	return owned;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* Reads DIR/pids/ROLE.pid (its path into PIDF): the pid and the start
 * time recorded into *PID and *START. -1 when there is no such file, 1
 * when the recorded process lives, else 0. */
static int read_role_pid(const char *dir, const char *role, char pidf[PATH_MAX], int *pid,
                         unsigned long long *start)
{
	*pid = 0;
	*start = 0;
	pathf(pidf, PATH_MAX, "%s/pids/%s.pid", dir, role);
	FILE *f = fopen(pidf, "r");
	if (!f)
		return -1;
	int ok = fscanf(f, "%d %llu", pid, start) == 2;
	fclose(f);
	return ok && *pid > 1 && procstat_running_since(*pid, *start);
}

/* The value of option NAME ("--kv") on the command line of process PID
 * ("--kv V" or "--kv=V") into OUT: 1, or 0 when the process or the option
 * is not there (or the value does not fit). */
static int proc_opt(int pid, const char *name, char *out, size_t cap)
{
	char p[64], buf[8192];
	size_t n, nl = strlen(name);
	int found = 0;
	pathf(p, sizeof(p), "/proc/%d/cmdline", pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	for (size_t i = 0; i < n && !found; i += strlen(buf + i) + 1) {
		const char *a = buf + i, *v = NULL;
		if (!strcmp(a, name) && i + nl + 1 < n)
			v = a + nl + 1;
		else if (!strncmp(a, name, nl) && a[nl] == '=')
			v = a + nl + 1;
		if (v && strlen(v) < cap) {
			memcpy(out, v, strlen(v) + 1);
			found = 1;
		}
	}
	return found;
}

/* The pid of ROLE recorded under DIR while that process lives, else 0. */
static int role_pid(const char *dir, const char *role)
{
	char pidf[PATH_MAX];
	int pid;
	unsigned long long start;
	return read_role_pid(dir, role, pidf, &pid, &start) == 1 ? pid : 0;
}

static void print_log_tail(const char *log)
{
	char line[1024];
	char *ring[15] = {0};
	int n = 0;
	FILE *f = fopen(log, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		free(ring[n % 15]);
		ring[n % 15] = strdup(line);
		n++;
	}
	fclose(f);
	fprintf(stderr, "---- last lines of %s ----\n", log);
	for (int i = n > 15 ? n - 15 : 0; i < n; i++)
		fputs(ring[i % 15] ? ring[i % 15] : "", stderr);
	fprintf(stderr, "----\n");
	for (int i = 0; i < 15; i++)
		free(ring[i]);
}

/* ARGV (48 slots) for running this binary with ARGS (NULL-terminated; past
 * 46 dropped), NULL-terminated. */
static void self_argv(char *argv[48], char *const args[])
{
	int n = 0;
	argv[n++] = self_exe;
	for (int i = 0; args[i] && n < 47; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
}

/* Starts ROLE (argv[0] is the subcommand) in the background with its
 * output appended to D/logs/ROLE.log and its pid in D/pids/ROLE.pid. */
static pid_t spawn_role(struct cluster *c, const char *role, char *const args[])
{
	char log[PATH_MAX], pidf[PATH_MAX];
	char *argv[48];
	self_argv(argv, args);
	pathf(log, sizeof(log), "%s/logs/%s.log", c->dir, role);
	pathf(pidf, sizeof(pidf), "%s/pids/%s.pid", c->dir, role);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		setsid();
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int nul = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (nul >= 0)
			dup2(nul, 0);
		/* A role keeps no descriptor of whoever ran up: an inherited
		 * file on the mount would hold it busy for the role's life. */
		close_range(3, ~0U, 0);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(self_exe, argv);
		_exit(127);
	}
	struct procstat ps = { 0 };
	for (int i = 0; i < 100 && procstat_read(pid, &ps) < 0; i++)
		sleep_ms(1);
	unsigned long long start = ps.start;
	if (c->nstarted < (int)(sizeof(c->started) / sizeof(c->started[0])))
		c->started[c->nstarted++] = role;
	FILE *f = fopen(pidf, "w");
	if (f) {
		fprintf(f, "%d %llu\n", (int)pid, start);
		fclose(f);
	}
	return pid;
}

/* The health note for a running role: "" when its check passes, else why
 * it is kept anyway (up never stops a running role: a paused or busy one
 * comes back by itself, and stopping a mount loses its open files). PORT
 * 0: a mount, whose check (listed in the kernel's table) up made before. */
static const char *health_note(int pid, unsigned port)
{
	struct procstat ps;
	if (procstat_read(pid, &ps) == 0 && ps.state == 'T')
		return "; stopped (SIGSTOP?), kept";
	if (port && !port_open(port))
		return "; not answering on its port, kept";
	if (port && !port_owned_by(pid, port))
		return "; its port answers for another process, kept";
	return "";
}

/* Our direct child has exited (reaps it; *status gets the wait status). */
static int child_exited(pid_t pid, int *status)
{
	return waitpid(pid, status, WNOHANG) == pid;
}

/* Waits until COND holds or PID exits or the bound passes. 0, or -1 with
 * the reason and the log tail printed. */
static int wait_up(const struct cluster *c, const char *role, pid_t pid, long long timeout_ms,
                   int (*cond)(pid_t pid, const void *arg), const void *arg)
{
	char log[PATH_MAX];
	long long deadline = now_ms() + timeout_ms;
	pathf(log, sizeof(log), "%s/logs/%s.log", c->dir, role);
	for (;;) {
		if (cond(pid, arg))
			return 0;
		int st;
		if (child_exited(pid, &st)) {
			if (WIFSIGNALED(st))
				fprintf(
				    stderr,
				    "chainfs up: %s was killed by signal %d (%s) during start\n",
				    role, WTERMSIG(st), strsignal(WTERMSIG(st)));
			else
				fprintf(stderr,
				        "chainfs up: %s exited with status %d during start\n", role,
				        WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			print_log_tail(log);
			return -1;
		}
		if (now_ms() > deadline) {
			fprintf(stderr, "chainfs up: %s did not come up within %lld ms\n", role,
			        timeout_ms);
			print_log_tail(log);
			return -1;
		}
		sleep_ms(50);
	}
}

/* The role's port answers and the role itself listens there. A port that
 * answers for another process (it took the port while the role was
 * down) once made up report a storage service as started whose bind had
 * failed with EADDRINUSE: up printed success, the service was gone. */
static int cond_port(pid_t pid, const void *arg)
{
	unsigned port = *(const unsigned *)arg;
	return port_open(port) && port_owned_by(pid, port) != 0;
}

/* Undoes mountinfo's octal escapes (\040 for a space...) in place. */
static void mountinfo_unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* 1 when the absolute path MNT is a mount point in the kernel's mount table
 * (FSTYPE, CAP bytes, gets its type, e.g. "fuse.chainfs"), 0 when not.
 * Reads /proc/self/mountinfo only: never touches the file system at MNT,
 * so it cannot block on a FUSE mount whose daemon waits for meta. The last
 * entry wins (a mount stacked over another). */
static int mount_listed(const char *mnt, char *fstype, size_t cap)
{
	char line[2 * PATH_MAX + 512];
	int found = 0;
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root mountpoint opts [optional...] - fstype src sopts */
		char *save = NULL, *tok = strtok_r(line, " ", &save);
		char *mp = NULL;
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		mp = tok;
		if (!mp)
			continue;
		mountinfo_unescape(mp);
		if (strcmp(mp, mnt) != 0)
			continue;
		while ((tok = strtok_r(NULL, " ", &save)) && strcmp(tok, "-") != 0)
			;
		tok = tok ? strtok_r(NULL, " ", &save) : NULL;
		found = 1;
		if (fstype && cap)
			pathf(fstype, cap, "%s", tok ? tok : "?");
	}
	fclose(f);
	return found;
}

/* Probes MNT with a stat in a child process, bounded by TIMEOUT_MS (the
 * child is killed after it: FUSE waits are killable). Returns 0 when the
 * stat answered, -errno when it failed, -ETIMEDOUT when it did not answer
 * (a live FUSE daemon waiting for its backend). */
static int probe_stat(const char *mnt, int timeout_ms)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* Forced: the kernel answers a plain stat from the root's cached
		 * attributes while they are valid, and a dead mount's root then
		 * looks alive (seen after a mount died inside an LMDB write). */
		struct statx st;
		if (statx(AT_FDCWD, mnt, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &st) == 0)
			_exit(0);
		_exit(errno > 0 && errno < 255 ? errno : 254);
	}
	long long deadline = now_ms() + timeout_ms;
	int st;
	for (;;) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? -WEXITSTATUS(st) : -EIO;
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			/* A child in an uninterruptible FUSE wait dies only when the
			 * request ends: do not wait for it (init reaps it later). */
			for (int i = 0; i < 100 && waitpid(pid, NULL, WNOHANG) == 0; i++)
				sleep_ms(10);
			return -ETIMEDOUT;
		}
		sleep_ms(10);
	}
}

static int cond_mounted(pid_t pid, const void *arg)
{
	struct stat st;
	const char *m = arg;
	(void)pid;
	/* Listed first: before the mount exists the stat is of the plain
	 * directory; meta is up (started before the mount), so it answers. */
	return mount_listed(m, NULL, 0) && stat(m, &st) == 0 && st.st_ino == 1;
}

/* The absolute path of MNT without resolving its last component: the
 * parent is resolved with realpath (it is not on the mount), the name is
 * appended. A realpath of a FUSE mount point would stat it, and block. */
static int abs_mount_path(const char *mnt, char *out, size_t cap)
{
	char tmp[PATH_MAX], parent[PATH_MAX];
	pathf(tmp, sizeof(tmp), "%s", mnt);
	size_t l = strlen(tmp);
	while (l > 1 && tmp[l - 1] == '/')
		tmp[--l] = 0;
	char *slash = strrchr(tmp, '/');
	const char *name = slash ? slash + 1 : tmp;
	if (!*name || !strcmp(name, ".") || !strcmp(name, "..")) {
		if (!realpath(mnt, out))
			return -errno;
		return 0;
	}
	if (slash == tmp)
		pathf(parent, sizeof(parent), "/");
	else if (slash) {
		*slash = 0;
		if (!realpath(tmp, parent))
			return -errno;
	} else if (!realpath(".", parent))
		return -errno;
	if (strlen(parent) + 1 + strlen(name) + 1 > cap)
		return -ENAMETOOLONG;
	pathf(out, cap, "%s%s%s", parent, strcmp(parent, "/") ? "/" : "", name);
	return 0;
}

/* Runs `chainfs ARGS...` in the foreground, output to OUT (may be NULL:
 * inherit). Returns its exit status, or -1. */
static int run_cmd(const char *out, char *const args[])
{
	char *argv[48];
	self_argv(argv, args);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (out) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
		}
		execv(self_exe, argv);
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int conf_save(const struct cluster *c)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	pathf(path, sizeof(path), "%s/cluster.conf", c->dir);
	pathf(tmp, sizeof(tmp), "%s/cluster.conf.tmp", c->dir);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "# written by chainfs up; read by chainfs up and down\n");
	fprintf(f, "cluster_id = %s\nmount = %s\nmgmtd_port = %u\nmeta_port = %u\n", c->cluster_id,
	        c->mount, c->mgmtd_port, c->meta_port);
	fprintf(f, "storage = %d\n", c->nstorage);
	for (int i = 0; i < c->nstorage; i++)
		fprintf(f, "storage%d_port = %u\n", i + 1, c->storage_port[i]);
	fprintf(f, "initialised = %d\n", c->initialised);
	fprintf(f, "table_created = %d\n", c->table_created);
	if (fclose(f) != 0)
		return -EIO;
	return rename(tmp, path) < 0 ? -errno : 0;
}

/* 1 loaded, 0 no cluster in DIR, <0 unreadable. */
static int conf_load(struct cluster *c)
{
	char path[PATH_MAX], line[PATH_MAX + 64];
	pathf(path, sizeof(path), "%s/cluster.conf", c->dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (fgets(line, sizeof(line), f)) {
		char key[64], val[PATH_MAX];
		if (line[0] == '#' || sscanf(line, "%63s = %4095[^\n]", key, val) != 2)
			continue;
		int idx;
		if (!strcmp(key, "cluster_id"))
			pathf(c->cluster_id, sizeof(c->cluster_id), "%s", val);
		else if (!strcmp(key, "mount"))
			pathf(c->mount, sizeof(c->mount), "%s", val);
		else if (!strcmp(key, "mgmtd_port"))
			c->mgmtd_port = (unsigned)atoi(val);
		else if (!strcmp(key, "meta_port"))
			c->meta_port = (unsigned)atoi(val);
		else if (!strcmp(key, "storage"))
			c->nstorage = atoi(val);
		else if (!strcmp(key, "initialised"))
			c->initialised = atoi(val);
		else if (!strcmp(key, "table_created"))
			c->table_created = atoi(val);
		else if (sscanf(key, "storage%d_port", &idx) == 1 && idx >= 1 && idx <= UP_STORAGE)
			c->storage_port[idx - 1] = (unsigned)atoi(val);
	}
	fclose(f);
	if (c->nstorage < 0 || c->nstorage > UP_STORAGE)
		c->nstorage = 0;
	return *c->cluster_id && c->mgmtd_port && c->meta_port ? 1 : -EINVAL;
}

static int write_secret(const char *dir)
{
	char path[PATH_MAX];
	uint8_t raw[32];
	pathf(path, sizeof(path), "%s/secret", dir);
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -EIO;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 && errno == EEXIST)
		return 0; /* left by an `up` that failed before cluster.conf: keep it */
	if (fd < 0)
		return -errno;
	char hex[65];
	hex_encode(raw, sizeof(raw), hex);
	dprintf(fd, "%s\n", hex);
	return close(fd) < 0 ? -errno : 0;
}

/* Stops the process recorded in D/pids/ROLE.pid: SIGTERM, then SIGKILL
 * after STOP_MS. Returns 1 when one was stopped, 0 when none was running. */
static int stop_role(const char *dir, const char *role, long long stop_ms)
{
	char pidf[PATH_MAX];
	int pid;
	unsigned long long start;
	int alive = read_role_pid(dir, role, pidf, &pid, &start);
	if (alive < 0)
		return 0;
	int stopped = 0;
	if (alive) {
		kill(pid, SIGTERM);
		long long deadline = now_ms() + stop_ms;
		while (procstat_running_since(pid, start) && now_ms() < deadline) {
			waitpid(pid, NULL, WNOHANG);
			sleep_ms(20);
		}
		if (procstat_running_since(pid, start)) {
			fprintf(stderr,
			        "chainfs down: %s (pid %d) ignored SIGTERM for %lld ms: "
			        "SIGKILL\n",
			        role, pid, stop_ms);
			kill(pid, SIGKILL);
			for (int i = 0; i < 250 && procstat_running_since(pid, start); i++)
				sleep_ms(20);
		}
		waitpid(pid, NULL, WNOHANG);
		stopped = 1;
	}
	unlink(pidf);
	return stopped;
}

static void unmount_at(const char *mnt)
{
	if (!*mnt || !mount_listed(mnt, NULL, 0))
		return;
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_WRONLY);
		if (nul >= 0)
			dup2(nul, 2);
		execlp("fusermount3", "fusermount3", "-u", "-z", mnt, (char *)NULL);
		execlp("umount", "umount", "-l", mnt, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* Stops every role recorded under DIR, mount first, mgmtd last; meta
 * before storage, since its GC and truncates call storage. */
static int stop_all(const char *dir, const char *mnt, long long stop_ms)
{
	static const char *const order[] = {"mount",    "meta",     "storage1",
	                                    "storage2", "storage3", "mgmtd"};
	int n = 0;
	/* The mount process exits by itself once unmounted; count it too. */
	char pidf[PATH_MAX];
	int pid = 0;
	unsigned long long start = 0;
	pathf(pidf, sizeof(pidf), "%s/pids/mount.pid", dir);
	FILE *f = fopen(pidf, "r");
	if (f) {
		if (fscanf(f, "%d %llu", &pid, &start) == 2 && pid > 1 && procstat_running_since(pid, start))
			n++;
		fclose(f);
	}
	unmount_at(mnt);
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (stop_role(dir, order[i], stop_ms) && i > 0)
			n++;
	return n;
}

static int start_cluster(struct cluster *c, const struct up_conf *uc)
{
	char mg_addr[64], listen[64], secret[PATH_MAX], kv[PATH_MAX + 16], out[PATH_MAX];
	pathf(secret, sizeof(secret), "%s/secret", c->dir);
	pathf(mg_addr, sizeof(mg_addr), "127.0.0.1:%u", c->mgmtd_port);

	/* mgmtd */
	pathf(kv, sizeof(kv), "lmdb://%s/mgmtd", c->dir);
	if (role_pid(c->dir, "mgmtd")) {
		int pid = role_pid(c->dir, "mgmtd");
		printf("  mgmtd     %-21s already running (pid %d)%s\n", mg_addr, pid,
		       health_note(pid, c->mgmtd_port));
	} else {
		char *a[] = {"mgmtd",       "--kv",          kv,
		             "--listen",    mg_addr,         "--cluster-id",
		             c->cluster_id, "--secret-file", secret,
		             "--log-level", uc->log_level,   NULL};
		pid_t pid = spawn_role(c, "mgmtd", a);
		if (pid < 0 || wait_up(c, "mgmtd", pid, uc->timeout_ms, cond_port, &c->mgmtd_port))
			return -1;
		printf("  mgmtd     %-21s pid %d  log %s/logs/mgmtd.log\n", mg_addr, (int)pid,
		       c->dir);
	}
	if (!c->initialised) {
		pathf(out, sizeof(out), "%s/logs/admin.log", c->dir);
		char *a[] = {"admin",       "init-cluster",  "--mgmtd", mg_addr, "--cluster-id",
		             c->cluster_id, "--secret-file", secret,    NULL};
		if (run_cmd(out, a) != 0) {
			fprintf(stderr, "chainfs up: admin init-cluster failed\n");
			print_log_tail(out);
			return -1;
		}
		c->initialised = 1;
		conf_save(c);
	}

	/* storage */
	static const char *const storage_roles[UP_STORAGE] = {"storage1", "storage2", "storage3"};
	for (int i = 0; i < c->nstorage; i++) {
		char t1[PATH_MAX], t2[PATH_MAX], targets[2 * PATH_MAX + 2];
		const char *role = storage_roles[i];
		pathf(t1, sizeof(t1), "%s/%s/target1", c->dir, role);
		pathf(t2, sizeof(t2), "%s/%s/target2", c->dir, role);
		if (mkdir_p(t1, 0755) < 0 || mkdir_p(t2, 0755) < 0) {
			fprintf(stderr, "chainfs up: cannot create %s: %s\n", t1, strerror(errno));
			return -1;
		}
		pathf(targets, sizeof(targets), "%s,%s", t1, t2);
		pathf(listen, sizeof(listen), "127.0.0.1:%u", c->storage_port[i]);
		if (role_pid(c->dir, role)) {
			int pid = role_pid(c->dir, role);
			printf("  %-9s %-21s already running (pid %d)%s\n", role, listen, pid,
			       health_note(pid, c->storage_port[i]));
			continue;
		}
		char *a[32] = {"storage",      "--targets",   targets,         "--listen", listen,
		               "--cluster-id", c->cluster_id, "--secret-file", secret,     "--mgmtd",
		               mg_addr,        "--log-level", uc->log_level,   NULL};
		int na = 13;
		char extra[1024];
		pathf(extra, sizeof(extra), "%s", uc->storage_opts);
		for (char *save = NULL, *t = strtok_r(extra, " ", &save); t && na < 31;
		     t = strtok_r(NULL, " ", &save))
			a[na++] = t;
		a[na] = NULL;
		pid_t pid = spawn_role(c, role, a);
		if (pid < 0 ||
		    wait_up(c, role, pid, uc->timeout_ms, cond_port, &c->storage_port[i]))
			return -1;
		printf("  %-9s %-21s pid %d  log %s/logs/%s.log\n", role, listen, (int)pid, c->dir,
		       role);
	}
	if (!c->table_created) {
		/* The targets register with mgmtd in the background: retry until
		 * all of them are there to build the chains from. */
		pathf(out, sizeof(out), "%s/logs/admin.log", c->dir);
		char *a[] = {"admin",
		             "create-chain-table",
		             "--replicas",
		             "3",
		             "--mgmtd",
		             mg_addr,
		             "--cluster-id",
		             c->cluster_id,
		             "--secret-file",
		             secret,
		             NULL};
		long long deadline = now_ms() + uc->timeout_ms;
		int rc;
		while ((rc = run_cmd(out, a)) != 0 && now_ms() < deadline)
			sleep_ms(500);
		if (rc != 0) {
			fprintf(stderr,
			        "chainfs up: admin create-chain-table --replicas 3 failed\n");
			print_log_tail(out);
			return -1;
		}
		c->table_created = 1;
		conf_save(c);
		printf("  chain table 1: replication %d over %d storage targets\n", UP_REPLICAS,
		       c->nstorage * UP_TARGETS);
	}

	/* meta */
	if (strcmp(uc->meta_sync, "window") && strcmp(uc->meta_sync, "full")) {
		fprintf(stderr, "chainfs up: --meta-sync must be window or full\n");
		return -1;
	}
	pathf(kv, sizeof(kv), "lmdb://%s/meta?sync=%s%s", c->dir, uc->meta_sync,
	      uc->meta_writemap ? "&writemap=1" : "");
	pathf(listen, sizeof(listen), "127.0.0.1:%u", c->meta_port);
	/* The in-process meta opens meta's store with meta's own URL and
	 * inline threshold: a meta already running keeps the ones it was
	 * started with, whatever this run's --meta-sync or --inline-max say,
	 * so they are read from its command line. kv_ok: KV is meta's URL. */
	char inline_max[24];
	int kv_ok = 1;
	pathf(inline_max, sizeof(inline_max), "%lld", (long long)uc->inline_max);
	if (role_pid(c->dir, "meta")) {
		int pid = role_pid(c->dir, "meta");
		printf("  meta      %-21s already running (pid %d)%s\n", listen, pid,
		       health_note(pid, c->meta_port));
		kv_ok = proc_opt(pid, "--kv", kv, sizeof(kv));
		if (kv_ok && !proc_opt(pid, "--inline-max", inline_max, sizeof(inline_max)))
			pathf(inline_max, sizeof(inline_max), "64K"); /* meta's default */
	} else {
		/* Files spread over every chain of the table by default. */
		char stripe[16];
		pathf(stripe, sizeof(stripe), "%d", c->nstorage * UP_TARGETS / UP_REPLICAS);
		char *a[] = {"meta",        "--kv",          kv,
		             "--listen",    listen,          "--cluster-id",
		             c->cluster_id, "--secret-file", secret,
		             "--mgmtd",     mg_addr,         "--stripe",
		             stripe,        "--log-level",   uc->log_level,
		             "--storage",   "chains",        "--inline-max",
		             inline_max,    NULL};
		pid_t pid = spawn_role(c, "meta", a);
		if (pid < 0 || wait_up(c, "meta", pid, uc->timeout_ms, cond_port, &c->meta_port))
			return -1;
		printf("  meta      %-21s pid %d  log %s/logs/meta.log\n", listen, (int)pid,
		       c->dir);
	}

	/* mount */
	if (role_pid(c->dir, "mount")) {
		int pid = role_pid(c->dir, "mount");
		printf("  mount     %-21s already running (pid %d)%s\n", c->mount, pid,
		       health_note(pid, 0));
	} else {
		char logf[PATH_MAX];
		char *a[40];
		int n = 0;
		pathf(logf, sizeof(logf), "%s/logs/mount.log", c->dir);
		a[n++] = "mount";
		a[n++] = "--mgmtd";
		a[n++] = mg_addr;
		a[n++] = "--cluster-id";
		a[n++] = c->cluster_id;
		a[n++] = "--secret-file";
		a[n++] = secret;
		a[n++] = "--log-level";
		a[n++] = uc->log_level;
		char extra[1024];
		pathf(extra, sizeof(extra), "%s", uc->mount_opts);
		for (char *save = NULL, *t = strtok_r(extra, " ", &save); t && n < 32;
		     t = strtok_r(NULL, " ", &save))
			a[n++] = t;
		if (uc->fuse_uring)
			a[n++] = "--fuse-uring";
		/* CFS_META_LOCAL=0 turns the in-process meta off, 1 on; the
		 * mount reads the same switch. Only over an LMDB store on this
		 * host (up starts meta here); etcd-backed meta stays on RPC. */
		const char *ml_env = getenv("CFS_META_LOCAL");
		int meta_local = ml_env ? strcmp(ml_env, "0") != 0 : uc->meta_local;
		if (meta_local && (!kv_ok || strncmp(kv, "lmdb://", 7))) {
			printf("  mount: metadata over RPC (meta's store URL is not known or "
			       "not LMDB)\n");
			meta_local = 0;
		}
		if (meta_local) {
			a[n++] = "--meta-local";
			a[n++] = kv;
			a[n++] = "--meta-local-inline-max";
			a[n++] = inline_max;
		}
		a[n++] = c->mount;
		a[n] = NULL;
		pid_t pid = spawn_role(c, "mount", a);
		if (pid < 0 || wait_up(c, "mount", pid, uc->timeout_ms, cond_mounted, c->mount))
			return -1;
		printf("  mount     %-21s pid %d  log %s\n", c->mount, (int)pid, logf);
	}
	return 0;
}

/* Parses the options of "chainfs CMD" (OPTS, no positional arguments) in
 * ARGV into CONF (zeroed by the caller). 1: parsed, CONF owns its strings
 * (cfg_free); 0: the command ends with exit status *STATUS: 0 after
 * --help, 2 after a usage error reported on stderr. */
static int parse_args(const char *cmd, const struct cfg_opt *opts, void *conf, int argc,
                      char **argv, int *status)
{
	char err[512];
	int npos = 0;
	int rc = cfg_parse(opts, conf, argc, argv, &npos, err, sizeof(err));
	*status = rc == 1 ? 0 : 2;
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "chainfs %s: %s\n", cmd, err);
		return 0;
	}
	if (npos) {
		fprintf(stderr, "chainfs %s: unexpected argument '%s'\n", cmd, argv[0]);
		cfg_free(opts, conf);
		return 0;
	}
	return 1;
}

int cli_up(int argc, char **argv)
{
	struct up_conf uc;
	struct cluster c;
	int rc, ret;

	memset(&uc, 0, sizeof(uc));
	memset(&c, 0, sizeof(c));
	if (!parse_args("up", up_opts, &uc, argc, argv, &ret))
		return ret;
	ret = 1;
	if (uc.no_local_socket)
		setenv("CFS_NO_LOCAL_SOCKET", "1", 1); /* inherited by every role started */
	setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines interleave with errors */
	ssize_t sl = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (sl <= 0) {
		fprintf(stderr, "chainfs up: cannot find my own executable: %s\n", strerror(errno));
		goto out;
	}
	self_exe[sl] = 0;
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		fprintf(
		    stderr,
		    "chainfs up: FUSE is not available: /dev/fuse: %s (load the fuse "
		    "kernel module; in a container, pass --device /dev/fuse and CAP_SYS_ADMIN)\n",
		    strerror(errno));
		goto out;
	}
	if ((rc = mkdir_p(uc.dir, 0755)) < 0 || !realpath(uc.dir, c.dir)) {
		fprintf(stderr, "chainfs up: --dir %s: %s\n", uc.dir,
		        strerror(rc < 0 ? -rc : errno));
		goto out;
	}
	rc = conf_load(&c);
	if (rc < 0) {
		fprintf(stderr, "chainfs up: %s/cluster.conf is unreadable or incomplete: %s\n",
		        c.dir, strerror(-rc));
		goto out;
	}
	int fresh = rc == 0;
	const char *mnt = *uc.mount ? uc.mount : (*c.mount ? c.mount : "./mnt");
	char mabs[PATH_MAX], fstype[64] = "";
	if ((rc = abs_mount_path(mnt, mabs, sizeof(mabs))) < 0) {
		fprintf(stderr, "chainfs up: --mount %s: %s\n", mnt, strerror(-rc));
		goto out;
	}
	int mounted = mount_listed(mabs, fstype, sizeof(fstype));
	int mount_pid = fresh ? 0 : role_pid(c.dir, "mount");
	if (mounted && !mount_pid) {
		/* Our mount process is dead. A chainfs mount left behind by it
		 * answers ENOTCONN at once: clean it. Anything else mounted
		 * there (or a live mount of another process) is not ours. */
		int probe = strcmp(fstype, "fuse.chainfs") == 0 ? probe_stat(mabs, 2000) : 0;
		if (probe == -ENOTCONN || probe == -ECONNABORTED) {
			printf("  mount     %s: stale mount of a dead mount process: "
			       "fusermount3 -uz\n",
			       mabs);
			unmount_at(mabs);
			mounted = mount_listed(mabs, NULL, 0);
		}
		if (mounted) {
			fprintf(stderr,
			        "chainfs up: mount point %s is busy: something else is mounted "
			        "there (%s; fusermount3 -u %s)\n",
			        mabs, *fstype ? fstype : "?", mabs);
			goto out;
		}
	}
	if (!mounted && ((rc = mkdir_p(mabs, 0755)) < 0)) {
		fprintf(stderr, "chainfs up: --mount %s: %s\n", mnt, strerror(-rc));
		goto out;
	}
	pathf(c.mount, sizeof(c.mount), "%s", mabs);
	char sub[PATH_MAX];
	pathf(sub, sizeof(sub), "%s/pids", c.dir);
	mkdir_p(sub, 0755);
	pathf(sub, sizeof(sub), "%s/logs", c.dir);
	mkdir_p(sub, 0755);
	/* A mount process whose mount is gone from the kernel's table
	 * (unmounted by hand) is stopped and started again; every other role
	 * still running is kept, and only the missing ones are started. */
	if (mount_pid && !mounted)
		stop_role(c.dir, "mount", uc.stop_ms);
	if (fresh) {
		uint8_t r[6];
		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
			fprintf(stderr, "chainfs up: getrandom failed\n");
			goto out;
		}
		pathf(c.cluster_id, sizeof(c.cluster_id), "cfs-%02x%02x%02x%02x%02x%02x", r[0],
		      r[1], r[2], r[3], r[4], r[5]);
		if ((rc = write_secret(c.dir)) < 0) {
			fprintf(stderr, "chainfs up: cannot write %s/secret: %s\n", c.dir,
			        strerror(-rc));
			goto out;
		}
		uint16_t ports[2 + UP_STORAGE] = { 0 };
		(void)xport_free_ports(ports, 2 + UP_STORAGE);
		c.mgmtd_port = ports[0];
		c.meta_port = ports[1];
		c.nstorage = UP_STORAGE;
		for (int i = 0; i < c.nstorage; i++)
			c.storage_port[i] = ports[2 + i];
	} else if (c.nstorage != UP_STORAGE) {
		fprintf(stderr, "chainfs up: %s/cluster.conf records %d storage services, not %d\n",
		        c.dir, c.nstorage, UP_STORAGE);
		goto out;
	}
	if ((rc = conf_save(&c)) < 0) {
		fprintf(stderr, "chainfs up: cannot write %s/cluster.conf: %s\n", c.dir,
		        strerror(-rc));
		goto out;
	}
	printf("%s cluster %s in %s:\n", fresh ? "starting new" : "restarting", c.cluster_id,
	       c.dir);
	if (start_cluster(&c, &uc) < 0) {
		fprintf(stderr, "chainfs up: stopping what this run started\n");
		for (int i = c.nstarted - 1; i >= 0; i--) {
			if (!strcmp(c.started[i], "mount"))
				unmount_at(c.mount);
			stop_role(c.dir, c.started[i], uc.stop_ms);
		}
		goto out;
	}
	printf("ChainFS is mounted on %s\n", c.mount);
	printf("stop it with: chainfs down --dir %s\n", c.dir);
	ret = 0;
out:
	cfg_free(up_opts, &uc);
	return ret;
}

struct down_conf {
	char *dir;
	int64_t stop_ms;
};

static const struct cfg_opt down_opts[] = {
    {"dir", CFG_STR, "./chainfs-data", 0, 0, offsetof(struct down_conf, dir),
     "the directory chainfs up ran in"},
    {"stop-ms", CFG_INT, "10000", 100, 600000, offsetof(struct down_conf, stop_ms),
     "how long to wait after SIGTERM before SIGKILL"},
    CFG_END};

int cli_down(int argc, char **argv)
{
	struct down_conf dc;
	struct cluster c;
	int rc, ret;

	memset(&dc, 0, sizeof(dc));
	memset(&c, 0, sizeof(c));
	if (!parse_args("down", down_opts, &dc, argc, argv, &ret))
		return ret;
	ret = 1;
	if (!realpath(dc.dir, c.dir)) {
		fprintf(stderr, "chainfs down: --dir %s: %s\n", dc.dir, strerror(errno));
		goto out;
	}
	rc = conf_load(&c);
	if (rc <= 0) {
		fprintf(stderr, "chainfs down: no cluster in %s (no cluster.conf)\n", c.dir);
		goto out;
	}
	int n = stop_all(c.dir, c.mount, dc.stop_ms);
	printf("unmounted %s; stopped %d process%s of cluster %s\n", c.mount, n, n == 1 ? "" : "es",
	       c.cluster_id);
	ret = 0;
out:
	cfg_free(down_opts, &dc);
	return ret;
}
